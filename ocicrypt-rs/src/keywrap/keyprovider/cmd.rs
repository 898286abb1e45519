//! The `cmd` transport: the request on stdin, the response on stdout.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::{CommandConfig, MAX_MESSAGE_LEN};

/// Most of the provider's stderr quoted in an error.
const STDERR_EXCERPT: u64 = 2048;

pub(super) async fn call(
    cmd: &CommandConfig,
    request: &[u8],
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut child = tokio::process::Command::new(&cmd.path)
        .args(cmd.args.iter().flatten())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd.path))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("child pipes unavailable".into());
    };
    let exchange = async {
        let write = async {
            stdin.write_all(request).await?;
            stdin.shutdown().await?;
            drop(stdin);
            Ok::<_, std::io::Error>(())
        };
        let mut out = Zeroizing::new(Vec::new());
        let mut err = Vec::new();
        let mut stdout = stdout.take(MAX_MESSAGE_LEN as u64 + 1);
        let mut stderr = stderr.take(STDERR_EXCERPT);
        let read_out = stdout.read_to_end(&mut out);
        let read_err = stderr.read_to_end(&mut err);
        let (w, o, e) = tokio::join!(write, read_out, read_err);
        // A provider may exit without reading its input; its answer still counts.
        if let Err(e) = w {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(format!("writing the request: {e}"));
            }
        }
        o.map_err(|e| format!("reading the response: {e}"))?;
        let _ = e;
        let status = child.wait().await.map_err(|e| format!("waiting: {e}"))?;
        Ok::<_, String>((status, out, err))
    };
    let (status, out, err) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{} gave no answer within {timeout:?}", cmd.path))??;
    if !status.success() {
        return Err(format!(
            "{} exited with {status}: {}",
            cmd.path,
            String::from_utf8_lossy(&err).trim()
        ));
    }
    if out.len() > MAX_MESSAGE_LEN {
        return Err(format!("response larger than {MAX_MESSAGE_LEN} bytes"));
    }
    Ok(out)
}
