//! The three real daemons (attestation-agent, confidential-data-hub, api-server-rest) wired
//! together on temporary sockets and a free loopback port, as kata-agent starts them, for
//! end-to-end tests and benchmarks.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine;

use crate::process::{free_port, workspace_bin, Daemon, Ready};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which KBC the data hub uses.
#[derive(Debug, Clone)]
pub enum KbcSetup {
    /// `offline_fs_kbc` serving these `repo/type/tag` → bytes entries.
    OfflineFs(Vec<(String, Vec<u8>)>),
    /// `cc_kbc` against a KBS at `url` (with its CA when it speaks https); the agent
    /// attests to the same KBS.
    CcKbc {
        /// KBS base URL
        url: String,
        /// PEM of the KBS's CA, for https
        ca_pem: Option<String>,
    },
}

/// Temporary runtime directory, configs and addresses of one suite.
#[derive(Debug)]
pub struct Suite {
    dir: tempfile::TempDir,
    /// attestation-agent socket path
    pub aa_sock: PathBuf,
    /// confidential-data-hub socket path
    pub cdh_sock: PathBuf,
    /// api-server-rest address
    pub asr: SocketAddr,
}

fn toml_string(s: &str) -> String {
    // TOML basic strings accept JSON string escapes.
    serde_json::Value::String(s.to_string()).to_string()
}

impl Suite {
    /// Writes the configs for `kbc`; starts nothing yet.
    pub fn new(kbc: &KbcSetup) -> io::Result<Suite> {
        let dir = tempfile::tempdir()?;
        let suite = Suite {
            aa_sock: dir.path().join("aa/attestation-agent.sock"),
            cdh_sock: dir.path().join("cdh.sock"),
            asr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            dir,
        };
        std::fs::write(suite.path("cmdline"), "console=ttyS0\n")?;
        let mut aa = String::from("[attester]\nallow_sample = true\n");
        let mut cdh = format!(
            "socket = \"unix://{}\"\n[aa]\naa_socket = \"unix://{}\"\n",
            suite.cdh_sock.display(),
            suite.aa_sock.display()
        );
        match kbc {
            KbcSetup::OfflineFs(entries) => {
                let map: serde_json::Map<String, serde_json::Value> = entries
                    .iter()
                    .map(|(k, v)| {
                        let b64 = base64::engine::general_purpose::STANDARD.encode(v);
                        (k.clone(), serde_json::Value::String(b64))
                    })
                    .collect();
                std::fs::write(
                    suite.path("resources.json"),
                    serde_json::Value::Object(map).to_string(),
                )?;
                cdh.push_str("[kbc]\nname = \"offline_fs_kbc\"\n");
            }
            KbcSetup::CcKbc { url, ca_pem } => {
                aa.push_str(&format!(
                    "[token_configs.kbs]\nurl = {}\n",
                    toml_string(url)
                ));
                cdh.push_str(&format!(
                    "[kbc]\nname = \"cc_kbc\"\nurl = {}\n",
                    toml_string(url)
                ));
                if let Some(pem) = ca_pem {
                    aa.push_str(&format!("cert = {}\n", toml_string(pem)));
                    cdh.push_str(&format!("kbs_cert = {}\n", toml_string(pem)));
                }
            }
        }
        std::fs::write(suite.path("aa.toml"), aa)?;
        std::fs::write(suite.path("cdh.toml"), cdh)?;
        Ok(suite)
    }

    /// A path inside the suite's runtime directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The runtime directory (daemon stderr files are kept there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the attestation agent with the sample attester allowed.
    pub fn start_aa(&self) -> io::Result<Daemon> {
        let mut cmd = Command::new(workspace_bin("attestation-agent")?);
        cmd.arg("-c")
            .arg(self.path("aa.toml"))
            .arg("--attestation_sock")
            .arg(format!("unix://{}", self.aa_sock.display()))
            .arg("--kernel-cmdline")
            .arg(self.path("cmdline"))
            .env_remove("AA_KBC_PARAMS")
            .env_remove("AA_SAMPLE_ATTESTER");
        Daemon::spawn(
            "attestation-agent",
            cmd,
            self.dir(),
            Ready::Unix(self.aa_sock.clone()),
            START_TIMEOUT,
        )
    }

    /// Starts the data hub; it never reads the real `/etc` stores or `/proc/cmdline`.
    pub fn start_cdh(&self) -> io::Result<Daemon> {
        let mut cmd = Command::new(workspace_bin("confidential-data-hub")?);
        cmd.arg("-c")
            .arg(self.path("cdh.toml"))
            .arg("--kernel-cmdline")
            .arg(self.path("cmdline"))
            .arg("--credentials-dir")
            .arg(self.path("kbs"))
            .arg("--offline-fs-kbc-keys")
            .arg(self.path("no-keys.json"))
            .arg("--offline-fs-kbc-resources")
            .arg(self.path("no-resources.json"))
            .env(
                "OFFLINE_FS_KBC_EXTRA_FILE_PATH",
                self.path("resources.json"),
            )
            .env_remove("AA_KBC_PARAMS")
            .env_remove("AA_SOCKET")
            .env_remove("KBS_CERT");
        Daemon::spawn(
            "confidential-data-hub",
            cmd,
            self.dir(),
            Ready::Unix(self.cdh_sock.clone()),
            START_TIMEOUT,
        )
    }

    /// Starts the agent, the hub and the REST shim, in kata's order.
    pub fn start_all(&self) -> io::Result<[Daemon; 3]> {
        Ok([self.start_aa()?, self.start_cdh()?, self.start_asr()?])
    }

    /// Starts the REST shim with every feature on.
    pub fn start_asr(&self) -> io::Result<Daemon> {
        let mut cmd = Command::new(workspace_bin("api-server-rest")?);
        cmd.arg("--bind")
            .arg(self.asr.to_string())
            .args(["--features", "all"])
            .arg("--cdh_addr")
            .arg(format!("unix://{}", self.cdh_sock.display()))
            .arg("--aa_addr")
            .arg(format!("unix://{}", self.aa_sock.display()));
        Daemon::spawn(
            "api-server-rest",
            cmd,
            self.dir(),
            Ready::Tcp(self.asr),
            START_TIMEOUT,
        )
    }

    /// One HTTP/1.1 GET to the REST shim; returns the status and the (de-chunked) body.
    pub fn get(&self, path: &str) -> io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(self.asr)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.asr
        )?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_response(&raw)
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad HTTP response: {what}"),
    )
}

/// Status and body of a complete HTTP/1.1 response (`Content-Length` or chunked).
pub fn parse_response(raw: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("head is not UTF-8"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let body = &raw[end + 4..];
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    Ok((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

fn dechunk(mut body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| bad("chunk size"))?;
        let size = usize::from_str_radix(size_text.trim(), 16).map_err(|_| bad("chunk size"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or_else(|| bad("truncated chunk"))?;
        out.extend_from_slice(chunk);
        body = body
            .get(size + 2..)
            .ok_or_else(|| bad("truncated chunk end"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_and_chunks() {
        let (status, body) =
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc").unwrap();
        assert_eq!((status, body.as_slice()), (200, b"abc".as_slice()));
        let (status, body) = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((status, body.as_slice()), (404, b"abcde".as_slice()));
        for bad in [
            b"HTTP/1.1 200 OK\r\n".as_slice(),
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert_eq!(
                parse_response(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidData
            );
        }
    }
}
