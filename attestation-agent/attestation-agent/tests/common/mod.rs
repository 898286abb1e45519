//! Starting the real agent binary with a config file and talking to it over ttRPC.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use protos::{attestation_agent as aa, attestation_agent_ttrpc::AttestationAgentServiceClient};
use testkit::process::{Daemon, Ready};

/// kata-agent gives a daemon about 6 s to create its socket.
pub(crate) const SOCKET_DEADLINE: Duration = Duration::from_secs(6);

/// A running agent and the directory holding its socket, config and logs.
pub(crate) struct Agent {
    pub daemon: Daemon,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent with `[attester] allow_sample = true` plus `config`, and with
    /// `initdata` passed as `-t` when given; waits for its socket.
    pub(crate) async fn start(config: &str, initdata: Option<&str>) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("aa.sock");
        let config_path = dir.path().join("aa.toml");
        std::fs::write(
            &config_path,
            format!("[attester]\nallow_sample = true\n\n{config}"),
        )
        .unwrap();
        let cmdline = dir.path().join("cmdline");
        std::fs::write(&cmdline, "console=ttyS0\n").unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attestation-agent"));
        for var in [
            "AA_SAMPLE_ATTESTER",
            "ENABLE_SAMPLE_DEVICE",
            "AA_KBC_PARAMS",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        // debug logs on: they must not carry tokens or keys either
        cmd.env("RUST_LOG", "debug")
            .arg("--kernel-cmdline")
            .arg(&cmdline)
            .arg("-a")
            .arg(format!("unix://{}", socket.display()))
            .arg("-c")
            .arg(&config_path);
        if let Some(initdata) = initdata {
            let path = dir.path().join("initdata.toml");
            std::fs::write(&path, initdata).unwrap();
            cmd.arg("-t").arg(path);
        }
        let log_dir = dir.path().to_path_buf();
        let ready = Ready::Unix(socket.clone());
        // Daemon::spawn polls with blocking sleeps: keep it off the async workers that
        // serve the test KBS.
        let daemon = tokio::task::spawn_blocking(move || {
            Daemon::spawn("attestation-agent", cmd, &log_dir, ready, SOCKET_DEADLINE)
        })
        .await
        .unwrap()
        .unwrap();
        Agent {
            daemon,
            socket,
            dir,
        }
    }

    pub(crate) async fn client(&self) -> AttestationAgentServiceClient {
        client(&self.socket).await
    }

    /// Stops the agent with SIGTERM and returns its stderr.
    pub(crate) async fn stop(self) -> String {
        let Agent { daemon, dir, .. } = self;
        let stderr = daemon.stderr();
        let status = tokio::task::spawn_blocking(move || daemon.stop())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "exit {status}; stderr:\n{stderr}");
        drop(dir);
        stderr
    }
}

pub(crate) async fn client(socket: &Path) -> AttestationAgentServiceClient {
    let addr = format!("unix://{}", socket.display());
    AttestationAgentServiceClient::new(ttrpc::r#async::Client::connect(&addr).await.unwrap())
}

/// GetToken, with the forced-refresh metadata when `refresh`.
pub(crate) async fn get_token(
    client: &AttestationAgentServiceClient,
    token_type: &str,
    refresh: bool,
) -> ttrpc::Result<Vec<u8>> {
    let mut ctx = ttrpc::context::with_timeout(30_000_000_000);
    if refresh {
        ctx.add(
            attestation_agent::TOKEN_REFRESH_METADATA_KEY.to_string(),
            attestation_agent::TOKEN_REFRESH_METADATA_VALUE.to_string(),
        );
    }
    let request = aa::GetTokenRequest {
        TokenType: token_type.to_string(),
        ..Default::default()
    };
    client
        .get_token(ctx, &request)
        .await
        .map(|reply| reply.Token)
}

/// The INTERNAL status message of a failed call.
pub(crate) fn internal_message<T: std::fmt::Debug>(result: ttrpc::Result<T>) -> String {
    match result {
        Err(ttrpc::Error::RpcStatus(status)) => {
            assert_eq!(status.code(), ttrpc::Code::INTERNAL, "{status:?}");
            status.message().to_string()
        }
        other => panic!("expected INTERNAL, got {other:?}"),
    }
}

/// GetTeeType still answers (the socket is up and serving).
pub(crate) async fn assert_serving(client: &AttestationAgentServiceClient) {
    let tee = client
        .get_tee_type(
            ttrpc::context::with_timeout(5_000_000_000),
            &aa::GetTeeTypeRequest::new(),
        )
        .await
        .unwrap();
    assert_eq!(tee.tee, "sample");
}
