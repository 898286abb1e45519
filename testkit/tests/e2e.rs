//! End to end: the three real binaries on temporary sockets and a free loopback port, driven
//! over HTTP (as a workload container does) and directly over ttRPC (as kata-agent does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine;
use protos::{api, api_ttrpc, attestation_agent as aa, attestation_agent_ttrpc as aa_ttrpc};
use testkit::process::{free_port, workspace_bin, Daemon, Ready};

const SECRET: &[u8] = b"e2e secret \x00\x01\xff bytes";
const START: Duration = Duration::from_secs(20);

struct Suite {
    dir: tempfile::TempDir,
    aa_sock: PathBuf,
    cdh_sock: PathBuf,
    asr: SocketAddr,
}

impl Suite {
    fn new() -> Suite {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let suite = Suite {
            aa_sock: dir.path().join("aa/attestation-agent.sock"),
            cdh_sock: dir.path().join("cdh.sock"),
            asr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
        std::fs::write(
            suite.path("resources.json"),
            format!(r#"{{"default/key/1": "{b64}", "other/type/tag": "b3RoZXI="}}"#),
        )
        .unwrap();
        std::fs::write(suite.path("cmdline"), "console=ttyS0\n").unwrap();
        std::fs::write(suite.path("aa.toml"), "[attester]\nallow_sample = true\n").unwrap();
        std::fs::write(
            suite.path("cdh.toml"),
            format!(
                "socket = \"unix://{}\"\n[aa]\naa_socket = \"unix://{}\"\n[kbc]\nname = \"offline_fs_kbc\"\n",
                suite.cdh_sock.display(),
                suite.aa_sock.display()
            ),
        )
        .unwrap();
        suite
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_aa(&self) -> Daemon {
        let mut cmd = Command::new(workspace_bin("attestation-agent").unwrap());
        cmd.arg("-c")
            .arg(self.path("aa.toml"))
            .arg("--attestation_sock")
            .arg(format!("unix://{}", self.aa_sock.display()))
            .arg("--kernel-cmdline")
            .arg(self.path("cmdline"))
            .env_remove("AA_KBC_PARAMS")
            .env_remove("AA_SAMPLE_ATTESTER");
        Daemon::spawn(
            "aa",
            cmd,
            self.dir.path(),
            Ready::Unix(self.aa_sock.clone()),
            START,
        )
        .unwrap()
    }

    fn start_cdh(&self) -> Daemon {
        let mut cmd = Command::new(workspace_bin("confidential-data-hub").unwrap());
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
            .env_remove("AA_KBC_PARAMS");
        Daemon::spawn(
            "cdh",
            cmd,
            self.dir.path(),
            Ready::Unix(self.cdh_sock.clone()),
            START,
        )
        .unwrap()
    }

    fn start_asr(&self) -> Daemon {
        let mut cmd = Command::new(workspace_bin("api-server-rest").unwrap());
        cmd.arg("--bind")
            .arg(self.asr.to_string())
            .args(["--features", "all"])
            .arg("--cdh_addr")
            .arg(format!("unix://{}", self.cdh_sock.display()))
            .arg("--aa_addr")
            .arg(format!("unix://{}", self.aa_sock.display()));
        Daemon::spawn("asr", cmd, self.dir.path(), Ready::Tcp(self.asr), START).unwrap()
    }

    /// One HTTP/1.1 GET; returns status and body.
    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(self.asr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.asr
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> (u16, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw[end + 4..].to_vec();
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    (status, if chunked { dechunk(&body) } else { body })
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn ttrpc_ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(10_000_000_000)
}

async fn client(sock: &Path) -> ttrpc::r#async::Client {
    ttrpc::r#async::Client::connect(&format!("unix://{}", sock.display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_serve_resources_and_evidence_over_http_and_ttrpc() {
    let suite = Suite::new();
    let aa_daemon = suite.start_aa();
    let mut cdh_daemon = suite.start_cdh();
    let asr_daemon = suite.start_asr();

    // Over HTTP, as a workload container does.
    let (status, body) = tokio::task::block_in_place(|| suite.get("/cdh/resource/default/key/1"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, SECRET);

    let (status, body) =
        tokio::task::block_in_place(|| suite.get("/aa/evidence?runtime_data=e2e-runtime-data"));
    assert_eq!(status, 200);
    let evidence: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        evidence,
        serde_json::json!({"svn": "1", "report_data": "ZTJlLXJ1bnRpbWUtZGF0YQ=="})
    );

    let (status, body) = tokio::task::block_in_place(|| suite.get("/info"));
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["tee"], "sample");
    assert_eq!(info["feature"], "all");

    let (status, _) = tokio::task::block_in_place(|| suite.get("/cdh/resource/default/key/404"));
    assert_eq!(status, 404);
    let (status, _) = tokio::task::block_in_place(|| suite.get("/cdh/resource/../../etc/passwd"));
    assert!(status == 400 || status == 404, "{status}");

    // Directly over ttRPC, as kata-agent does.
    let cdh = api_ttrpc::GetResourceServiceClient::new(client(&suite.cdh_sock).await);
    let resource = cdh
        .get_resource(
            ttrpc_ctx(),
            &api::GetResourceRequest {
                ResourcePath: "kbs:///other/type/tag".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(resource.Resource, b"other");

    let agent = aa_ttrpc::AttestationAgentServiceClient::new(client(&suite.aa_sock).await);
    let evidence = agent
        .get_evidence(
            ttrpc_ctx(),
            &aa::GetEvidenceRequest {
                RuntimeData: vec![0xaa; 48],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let evidence: serde_json::Value = serde_json::from_slice(&evidence.Evidence).unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode([0xaa; 48]);
    assert_eq!(evidence["report_data"], expected.as_str());
    let tee = agent
        .get_tee_type(ttrpc_ctx(), &aa::GetTeeTypeRequest::new())
        .await
        .unwrap();
    assert_eq!(tee.tee, "sample");

    // The REST shim reconnects after the data hub restarts on the same socket.
    assert!(cdh_daemon
        .signal_and_wait("TERM", Duration::from_secs(10))
        .unwrap()
        .success());
    assert!(
        !suite.cdh_sock.exists(),
        "CDH removes its socket on SIGTERM"
    );
    let (status, _) = tokio::task::block_in_place(|| suite.get("/cdh/resource/default/key/1"));
    assert_eq!(status, 500, "backend down is a 500");
    let restarted = suite.start_cdh();
    let (status, body) = tokio::task::block_in_place(|| suite.get("/cdh/resource/default/key/1"));
    assert_eq!(status, 200);
    assert_eq!(body, SECRET);

    // Everything stops cleanly on SIGTERM and removes its socket.
    for daemon in [asr_daemon, restarted, aa_daemon] {
        let status = daemon.stop().unwrap();
        assert!(status.success(), "{status}");
    }
    assert!(!suite.aa_sock.exists());
    assert!(!suite.cdh_sock.exists());
}
