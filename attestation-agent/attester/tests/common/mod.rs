//! Test support: a real software TPM (swtpm) on loopback, and tpm2-tools against it.

#![allow(dead_code)]

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// A swtpm process started by the test and killed (by its pid) when dropped.
pub(crate) struct Swtpm {
    child: Child,
    port: u16,
    state: tempfile::TempDir,
}

fn free_port_pair() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl Swtpm {
    /// Starts a fresh TPM 2.0 (manufactured on first start, startup-clear done).
    pub(crate) fn start() -> Swtpm {
        for _ in 0..5 {
            let state = tempfile::tempdir().unwrap();
            let port = free_port_pair();
            let child = Command::new("swtpm")
                .arg("socket")
                .arg("--tpm2")
                .arg("--tpmstate")
                .arg(format!("dir={}", state.path().display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--flags")
                .arg("not-need-init,startup-clear")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("swtpm must be installed (apt-get install swtpm swtpm-tools tpm2-tools)");
            let mut swtpm = Swtpm { child, port, state };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return swtpm;
                }
                if swtpm.child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("swtpm did not start");
    }

    /// The TCTI configuration for tss-esapi and tpm2-tools.
    pub(crate) fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Runs a tpm2-tools command against this TPM; panics with its stderr on failure.
    pub(crate) fn tool(&self, dir: &Path, args: &[&str]) -> Output {
        let output = Command::new(args[0])
            .args(&args[1..])
            .current_dir(dir)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (install tpm2-tools)", args[0]));
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Flushes every transient object and session (there is no resource manager).
    pub(crate) fn flush(&self, dir: &Path) {
        self.tool(dir, &["tpm2_flushcontext", "-t"]);
        self.tool(dir, &["tpm2_flushcontext", "-s"]);
    }

    /// Creates an RSA EK and an RSASSA-SHA256 AK under it, makes the AK persistent at
    /// `handle`, and writes its public key (PEM) to `<dir>/<ak_pem>`.
    pub(crate) fn persist_ak(&self, dir: &Path, ak_pem: &str, handle: &str) {
        self.tool(
            dir,
            &["tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"],
        );
        self.flush(dir);
        self.tool(
            dir,
            &[
                "tpm2_createak",
                "-C",
                "ek.ctx",
                "-c",
                "ak.ctx",
                "-G",
                "rsa",
                "-g",
                "sha256",
                "-s",
                "rsassa",
                "-u",
                ak_pem,
                "-f",
                "pem",
                "-n",
                "ak.name",
            ],
        );
        self.flush(dir);
        self.tool(dir, &["tpm2_evictcontrol", "-c", "ak.ctx", handle]);
        self.flush(dir);
    }

    /// `tpm2_checkquote` of `<dir>/quote.msg` and `<dir>/quote.sig` (a TPMT_SIGNATURE)
    /// against the AK in `<dir>/ak.pem` and `nonce`; panics when it does not verify.
    pub(crate) fn checkquote(&self, dir: &Path, nonce: &[u8]) {
        self.tool(
            dir,
            &[
                "tpm2_checkquote",
                "-u",
                "ak.pem",
                "-m",
                "quote.msg",
                "-s",
                "quote.sig",
                "-g",
                "sha256",
                "-q",
                &hex::encode(nonce),
            ],
        );
    }

    /// The transient handles loaded in the TPM.
    pub(crate) fn transient_handles(&self, dir: &Path) -> String {
        let out = self.tool(dir, &["tpm2_getcap", "handles-transient"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// SHA-256 PCR `index` as tpm2_pcrread prints it (lowercase hex).
    pub(crate) fn pcrread(&self, dir: &Path, index: u32) -> String {
        let out = self.tool(dir, &["tpm2_pcrread", &format!("sha256:{index}")]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(&index.to_string()))
            .unwrap_or_else(|| panic!("no PCR {index} in {text}"));
        line.split(':')
            .nth(1)
            .unwrap()
            .trim()
            .trim_start_matches("0x")
            .to_lowercase()
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.state.path().to_path_buf()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PEM "PUBLIC KEY" text of a DER SubjectPublicKeyInfo.
pub(crate) fn spki_pem(der: &[u8]) -> String {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}
