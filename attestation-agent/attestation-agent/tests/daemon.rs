//! Runs the real `attestation-agent` binary and talks to it over ttRPC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::Read,
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use protos::{attestation_agent as aa, attestation_agent_ttrpc::AttestationAgentServiceClient};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(20);
const INITDATA: &str = "algorithm = \"sha384\"\nversion = \"0.1.0\"\n\n[data]\n\"aa.toml\" = '''\n[log]\nlevel = \"info\"\n'''\n";

/// The binary with a clean environment and a fake kernel command line in `dir`.
fn agent(dir: &Path) -> Command {
    let cmdline = dir.join("cmdline");
    std::fs::write(
        &cmdline,
        "console=ttyS0 agent.aa_kbc_params=offline_fs_kbc::\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attestation-agent"));
    for var in [
        "AA_SAMPLE_ATTESTER",
        "ENABLE_SAMPLE_DEVICE",
        "AA_KBC_PARAMS",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--kernel-cmdline")
        .arg(cmdline)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Waits for the child to exit (killing it after TIMEOUT); returns its status and stderr.
fn wait_exit(mut child: Child) -> (ExitStatus, String) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = stderr_of(&mut child);
            return (status, stderr);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("agent did not exit; stderr:\n{}", stderr_of(&mut child));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the socket accepts connections; fails early if the agent exits.
async fn wait_for_socket(child: &mut Child, socket: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("agent exited with {status}:\n{}", stderr_of(child));
        }
        if testkit::process::unix_socket_accepts(socket) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "socket {socket:?} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn client(socket: &Path) -> AttestationAgentServiceClient {
    let addr = format!("unix://{}", socket.display());
    AttestationAgentServiceClient::new(ttrpc::r#async::Client::connect(&addr).await.unwrap())
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(5_000_000_000)
}

/// The message of a failed call with status `code`.
fn status_message<T: std::fmt::Debug>(result: ttrpc::Result<T>, code: ttrpc::Code) -> String {
    match result {
        Err(ttrpc::Error::RpcStatus(status)) => {
            assert_eq!(status.code(), code, "{status:?}");
            status.message().to_string()
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

fn extend_request(
    domain: &str,
    operation: &str,
    content: &str,
    register_index: Option<u64>,
) -> aa::ExtendRuntimeMeasurementRequest {
    aa::ExtendRuntimeMeasurementRequest {
        Domain: domain.into(),
        Operation: operation.into(),
        Content: content.into(),
        RegisterIndex: register_index,
        ..Default::default()
    }
}

fn bind_request(digest: &[u8]) -> aa::BindInitDataRequest {
    aa::BindInitDataRequest {
        Digest: digest.to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn serves_evidence_over_ttrpc_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    // A stale socket left by a previous run must be replaced. It is a datagram socket: a
    // listening one could live on in a child another test is forking at this moment, take
    // this test's connections and reset them when that child execs.
    drop(UnixDatagram::bind(&socket).unwrap());
    assert!(socket.exists());
    let initdata = dir.path().join("initdata.toml");
    std::fs::write(&initdata, INITDATA).unwrap();

    let mut child = agent(dir.path())
        .env("AA_SAMPLE_ATTESTER", "1")
        .env("ENABLE_SAMPLE_DEVICE", "1")
        .arg("--attestation_sock")
        .arg(format!("unix://{}", socket.display()))
        .arg("--initdata-toml")
        .arg(&initdata)
        .spawn()
        .unwrap();
    wait_for_socket(&mut child, &socket).await;
    let c = client(&socket).await;

    let runtime_data: Vec<u8> = (100u8..148).collect();
    let reply = c
        .get_evidence(
            ctx(),
            &aa::GetEvidenceRequest {
                RuntimeData: runtime_data.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let evidence: serde_json::Value = serde_json::from_slice(&reply.Evidence).unwrap();
    assert_eq!(
        evidence,
        json!({"svn": "1", "report_data": STANDARD.encode(&runtime_data)})
    );

    let reply = c
        .get_additional_evidence(
            ctx(),
            &aa::GetAdditionalEvidenceRequest {
                RuntimeData: b"device nonce".to_vec(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let additional: serde_json::Value = serde_json::from_slice(&reply.Evidence).unwrap();
    assert_eq!(
        additional,
        json!({"sampledevice": {"svn": "2", "report_data": STANDARD.encode(b"device nonce")}})
    );

    let tee = c
        .get_tee_type(ctx(), &aa::GetTeeTypeRequest::new())
        .await
        .unwrap();
    assert_eq!(tee.tee, "sample");
    let tees = c
        .get_additional_tees(ctx(), &aa::GetAdditionalTeesRequest::new())
        .await
        .unwrap();
    assert_eq!(tees.additional_tees, vec!["sampledevice"]);

    // offline_fs_kbc on the command line: no KBS, so no KBS token (and a clear reason)
    let token = c
        .get_token(
            ctx(),
            &aa::GetTokenRequest {
                TokenType: "kbs".into(),
                ..Default::default()
            },
        )
        .await;
    match token {
        Err(ttrpc::Error::RpcStatus(status)) => {
            assert_eq!(status.code(), ttrpc::Code::INTERNAL, "{status:?}");
            let expected = if cfg!(feature = "kbs") {
                "no [token_configs.kbs] section"
            } else {
                "cargo feature `kbs`"
            };
            assert!(
                status.message().starts_with("GetToken failed: "),
                "{status:?}"
            );
            assert!(status.message().contains(expected), "{status:?}");
        }
        other => panic!("expected INTERNAL, got {other:?}"),
    }

    // the eventlog is off by default: NOT_ENABLED, before the request is even checked
    for request in [
        aa::ExtendRuntimeMeasurementRequest::new(),
        extend_request("bad domain", "op", "two\nlines", Some(99)),
    ] {
        let reply = c.extend_runtime_measurement(ctx(), &request).await.unwrap();
        assert_eq!(
            reply.Result.enum_value(),
            Ok(aa::RuntimeMeasurementResult::NOT_ENABLED)
        );
    }
    // the sample attester cannot bind initdata: a refusal, not a silent OK
    let message = status_message(
        c.bind_init_data(ctx(), &bind_request(&[7; 48])).await,
        ttrpc::Code::FAILED_PRECONDITION,
    );
    assert!(
        message.starts_with("BindInitData failed: sample cannot bind initdata"),
        "{message}"
    );
    drop(c);

    sigterm(&child);
    let (status, stderr) = wait_exit(child);
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(!socket.exists(), "socket left behind");
    // the sample attester cannot bind initdata: logged, not fatal
    assert!(stderr.contains("cannot bind initdata"), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

#[tokio::test]
async fn config_opt_in_without_devices() {
    let dir = tempfile::tempdir().unwrap();
    // the parent directory does not exist yet
    let socket = dir.path().join("run/attestation-agent/aa.sock");
    let config = dir.path().join("aa.toml");
    std::fs::write(
        &config,
        "[attester]\nallow_sample = true\n[log]\nlevel = \"info\"\nstyle = \"json\"\n",
    )
    .unwrap();
    let mut child = agent(dir.path())
        .arg("-a")
        .arg(format!("unix://{}", socket.display()))
        .arg("-c")
        .arg(&config)
        .arg("-i")
        .arg(STANDARD.encode([7u8; 48]))
        .spawn()
        .unwrap();
    wait_for_socket(&mut child, &socket).await;
    let c = client(&socket).await;
    let reply = c
        .get_additional_evidence(ctx(), &aa::GetAdditionalEvidenceRequest::new())
        .await
        .unwrap();
    assert!(reply.Evidence.is_empty());
    let tees = c
        .get_additional_tees(ctx(), &aa::GetAdditionalTeesRequest::new())
        .await
        .unwrap();
    assert!(tees.additional_tees.is_empty());
    let reply = c
        .get_evidence(ctx(), &aa::GetEvidenceRequest::new())
        .await
        .unwrap();
    let evidence: serde_json::Value = serde_json::from_slice(&reply.Evidence).unwrap();
    assert_eq!(evidence, json!({"svn": "1", "report_data": ""}));
    drop(c);

    sigterm(&child);
    let (status, stderr) = wait_exit(child);
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(!socket.exists());
    // the unknown key is a warning naming it, not a failure
    assert!(stderr.contains("log.style"), "{stderr}");
}

/// Runs the agent expecting it to fail at startup; returns its stderr.
fn fails(cmd: &mut Command, socket: &Path) -> String {
    let (status, stderr) = wait_exit(
        cmd.arg("-a")
            .arg(format!("unix://{}", socket.display()))
            .spawn()
            .unwrap(),
    );
    assert!(!status.success(), "unexpected success; stderr:\n{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!socket.exists(), "socket created by a failed start");
    stderr
}

#[tokio::test]
async fn no_tee_falls_back_to_the_sample_attester_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    let mut child = agent(dir.path())
        .arg("--attestation_sock")
        .arg(format!("unix://{}", socket.display()))
        .spawn()
        .unwrap();
    wait_for_socket(&mut child, &socket).await;
    let tee = client(&socket)
        .await
        .get_tee_type(ctx(), &aa::GetTeeTypeRequest::new())
        .await
        .unwrap();
    assert_eq!(tee.tee, "sample");
    sigterm(&child);
    let (status, stderr) = wait_exit(child);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("no TEE found: falling back to the sample attester"),
        "{stderr}"
    );
    assert!(stderr.contains("the default (as upstream)"), "{stderr}");
    assert!(stderr.contains("aa.allow_sample=false"), "{stderr}");
}

#[test]
fn strict_mode_refuses_the_sample_attester_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    let config = dir.path().join("aa.toml");
    std::fs::write(&config, "[attester]\nallow_sample = false\n").unwrap();
    // by the config file, even with the environment's opt-in
    let stderr = fails(
        agent(dir.path())
            .env("AA_SAMPLE_ATTESTER", "1")
            .arg("-c")
            .arg(&config),
        &socket,
    );
    assert!(stderr.contains("no TEE found"), "{stderr}");
    assert!(
        stderr.contains("refused by `[attester] allow_sample = false` in the config file"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_sample = true"), "{stderr}");
    assert!(stderr.contains("AA_SAMPLE_ATTESTER=1"), "{stderr}");
    // by the kernel parameter (the first one, as kata reads repeated parameters): the
    // agent's fake kernel command line, overwritten
    let cmdline = dir.path().join("cmdline");
    let mut cmd = agent(dir.path());
    std::fs::write(
        &cmdline,
        "quiet aa.allow_sample=false aa.allow_sample=true\n",
    )
    .unwrap();
    let stderr = fails(&mut cmd, &socket);
    assert!(
        stderr.contains("refused by kernel parameter aa.allow_sample=false"),
        "{stderr}"
    );
    // by the environment
    let mut cmd = agent(dir.path());
    let stderr = fails(cmd.env("AA_SAMPLE_ATTESTER", "0"), &socket);
    assert!(
        stderr.contains("refused by AA_SAMPLE_ATTESTER=0"),
        "{stderr}"
    );
    // a switch that is not a boolean is refused, not guessed
    let stderr = fails(
        agent(dir.path()).env("AA_SAMPLE_ATTESTER", "maybe"),
        &socket,
    );
    assert!(stderr.contains("AA_SAMPLE_ATTESTER"), "{stderr}");
    let mut cmd = agent(dir.path());
    std::fs::write(&cmdline, "aa.allow_sample=strict\n").unwrap();
    let stderr = fails(&mut cmd, &socket);
    assert!(
        stderr.contains("kernel parameter aa.allow_sample=strict is not a boolean"),
        "{stderr}"
    );
}

#[test]
fn malformed_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    let config = dir.path().join("aa.toml");
    std::fs::write(
        &config,
        "[attester]\nallow_sample = true\n[eventlog_config]\ninit_pcr = \"seventeen\"\n",
    )
    .unwrap();
    let stderr = fails(agent(dir.path()).arg("-c").arg(&config), &socket);
    assert!(stderr.contains("eventlog_config.init_pcr"), "{stderr}");
    assert!(stderr.contains("aa.toml"), "{stderr}");

    let json = dir.path().join("aa.json");
    std::fs::write(
        &json,
        r#"{"attester":{"allow_sample":true},"token_configs":{"kbs":{"url":"http://kbs","tee_key_algorithm":"RSA1_5"}}}"#,
    )
    .unwrap();
    let stderr = fails(agent(dir.path()).arg("--config-file").arg(&json), &socket);
    assert!(
        stderr.contains("token_configs.kbs.tee_key_algorithm"),
        "{stderr}"
    );

    let stderr = fails(
        agent(dir.path())
            .arg("-c")
            .arg(dir.path().join("missing.toml")),
        &socket,
    );
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

/// Starts `cmd` on `socket`, asks for a KBS token, stops the agent; returns the token
/// call's error message and the agent's stderr.
async fn kbs_token_error(cmd: &mut Command, socket: &Path) -> (String, String) {
    let mut child = cmd
        .arg("-a")
        .arg(format!("unix://{}", socket.display()))
        .spawn()
        .unwrap();
    wait_for_socket(&mut child, socket).await;
    let result = client(socket)
        .await
        .get_token(
            ctx(),
            &aa::GetTokenRequest {
                TokenType: "kbs".into(),
                ..Default::default()
            },
        )
        .await;
    let message = status_message(result, ttrpc::Code::INTERNAL);
    sigterm(&child);
    let (status, stderr) = wait_exit(child);
    assert!(status.success(), "{stderr}");
    (message, stderr)
}

/// What GetToken("kbs") says without a KBS.
const NO_KBS: &str = if cfg!(feature = "kbs") {
    "no [token_configs.kbs] section"
} else {
    "cargo feature `kbs`"
};

/// Upstream drops an unusable aa_kbc_params and starts without a KBS; the agent does too,
/// with one warning that names the value and its source.
#[tokio::test]
async fn malformed_aa_kbc_params_are_dropped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    let (message, stderr) =
        kbs_token_error(agent(dir.path()).env("AA_KBC_PARAMS", "cc_kbc"), &socket).await;
    assert!(message.contains(NO_KBS), "{message}");
    assert!(stderr.contains("ignoring aa_kbc_params"), "{stderr}");
    assert!(stderr.contains("AA_KBC_PARAMS"), "{stderr}");
    assert!(stderr.contains("<kbc>::<uri>"), "{stderr}");

    // the agent's fake kernel command line, overwritten with a bad parameter
    let mut cmd = agent(dir.path());
    std::fs::write(
        dir.path().join("cmdline"),
        "quiet agent.aa_kbc_params=cc_kbc::kbs-without-scheme\n",
    )
    .unwrap();
    let (message, stderr) = kbs_token_error(&mut cmd, &socket).await;
    assert!(message.contains(NO_KBS), "{message}");
    assert!(stderr.contains("kernel command line"), "{stderr}");
    assert!(stderr.contains("kbs-without-scheme"), "{stderr}");
}

#[test]
fn bad_initdata_fails() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    let initdata = dir.path().join("initdata.toml");
    std::fs::write(&initdata, INITDATA.replace("sha384", "sha-384")).unwrap();
    let stderr = fails(
        agent(dir.path())
            .env("AA_SAMPLE_ATTESTER", "1")
            .arg("-t")
            .arg(&initdata),
        &socket,
    );
    assert!(stderr.contains("`algorithm`"), "{stderr}");

    let stderr = fails(
        agent(dir.path())
            .env("AA_SAMPLE_ATTESTER", "1")
            .arg("-i")
            .arg("not base64!"),
        &socket,
    );
    assert!(stderr.contains("initdata digest"), "{stderr}");
}

#[test]
fn version_lists_the_attesters_and_token_plugins() {
    let out = Command::new(env!("CARGO_BIN_EXE_attestation-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let plugins: Vec<&str> = [
        ("kbs", cfg!(feature = "kbs")),
        ("coco_as", cfg!(feature = "coco_as")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let plugins = if plugins.is_empty() {
        "none".to_string()
    } else {
        plugins.join(", ")
    };
    assert_eq!(
        text.trim(),
        format!(
            "attestation-agent {} (attesters: sample, sampledevice; token plugins: {plugins})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// An agent with the eventlog on, its log in `dir/run/attestation-agent`.
fn eventlog_agent(dir: &Path, socket: &Path) -> Command {
    let config = dir.join("aa.toml");
    std::fs::write(
        &config,
        "[attester]\nallow_sample = true\n[eventlog_config]\nenable_eventlog = true\ninit_pcr = 17\n",
    )
    .unwrap();
    let mut cmd = agent(dir);
    cmd.arg("-c")
        .arg(&config)
        .arg("--eventlog-dir")
        .arg(dir.join("run/attestation-agent"))
        .arg("-a")
        .arg(format!("unix://{}", socket.display()));
    cmd
}

#[tokio::test]
async fn runtime_measurement_and_initdata_over_ttrpc() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    let log_dir = dir.path().join("run/attestation-agent");
    let mut child = eventlog_agent(dir.path(), &socket).spawn().unwrap();
    wait_for_socket(&mut child, &socket).await;
    let c = client(&socket).await;

    // the sample attester has no runtime-measurement registers: NOT_SUPPORTED, for the
    // default PCR and for an explicit PCR 0 alike
    for index in [None, Some(0), Some(23)] {
        let reply = c
            .extend_runtime_measurement(
                ctx(),
                &extend_request(
                    "github.com/confidential-containers",
                    "PullImage",
                    r#"{"digest":"sha256:00","image":"busybox"}"#,
                    index,
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            reply.Result.enum_value(),
            Ok(aa::RuntimeMeasurementResult::NOT_SUPPORTED),
            "{index:?}"
        );
    }
    // the log exists, holds nothing, and no write-ahead record is left
    assert_eq!(std::fs::read(log_dir.join("eventlog")).unwrap(), b"");
    assert!(!log_dir.join(".wal_event_entry").exists());

    // invalid events and registers are refused with INVALID_ARGUMENT and a reason
    for (request, reason) in [
        (extend_request("", "op", "c", None), "domain is empty"),
        (
            extend_request("my domain", "op", "c", None),
            "domain contains whitespace",
        ),
        (
            extend_request("d", "op\u{1}", "c", None),
            "control character U+0001",
        ),
        (
            extend_request("d", "op", "a\nb", None),
            "content contains a newline",
        ),
        (
            extend_request("d", "op", "c", Some(24)),
            "register index 24 is not a PCR",
        ),
    ] {
        let message = status_message(
            c.extend_runtime_measurement(ctx(), &request).await,
            ttrpc::Code::INVALID_ARGUMENT,
        );
        assert!(
            message.starts_with("ExtendRuntimeMeasurement failed: "),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }

    // BindInitData: a malformed digest, then a platform that cannot bind
    let message = status_message(
        c.bind_init_data(ctx(), &bind_request(b"")).await,
        ttrpc::Code::INVALID_ARGUMENT,
    );
    assert!(message.contains("initdata digest is 0 bytes"), "{message}");
    status_message(
        c.bind_init_data(ctx(), &bind_request(&[1; 65])).await,
        ttrpc::Code::INVALID_ARGUMENT,
    );
    let message = status_message(
        c.bind_init_data(ctx(), &bind_request(&[1; 32])).await,
        ttrpc::Code::FAILED_PRECONDITION,
    );
    assert!(message.contains("cannot bind initdata"), "{message}");
    assert_serving_sample(&c).await;
    drop(c);

    // one agent per eventlog: a second one refuses to start
    let other_socket = dir.path().join("other.sock");
    let (status, stderr) = wait_exit(eventlog_agent(dir.path(), &other_socket).spawn().unwrap());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("locked by another process"), "{stderr}");
    assert!(!other_socket.exists());

    sigterm(&child);
    let (status, stderr) = wait_exit(child);
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
}

#[tokio::test]
async fn interrupted_measurements_are_resolved_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    let log_dir = dir.path().join("run/attestation-agent");
    std::fs::create_dir_all(&log_dir).unwrap();

    // a record that is not ours (upstream's layout): the agent stops and says what to do
    let wal = log_dir.join(".wal_event_entry");
    std::fs::write(&wal, [&[0u8; 8][..], &[0; 48], b"d op c"].concat()).unwrap();
    let (status, stderr) = wait_exit(eventlog_agent(dir.path(), &socket).spawn().unwrap());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("opening the runtime eventlog"), "{stderr}");
    assert!(stderr.contains(".wal_event_entry"), "{stderr}");
    assert!(stderr.contains("Move it away"), "{stderr}");
    assert!(!socket.exists());
    assert!(wal.exists(), "a bad record must stay for inspection");

    // a valid record of an event the platform cannot measure: dropped, the agent serves
    let mut record = b"AAELWAL1".to_vec();
    record.extend_from_slice(&0u64.to_le_bytes());
    record.extend_from_slice(&17u64.to_le_bytes());
    record.push(0);
    record.extend_from_slice(&6u32.to_le_bytes());
    record.extend_from_slice(b"d op c");
    std::fs::write(&wal, record).unwrap();
    let mut child = eventlog_agent(dir.path(), &socket).spawn().unwrap();
    wait_for_socket(&mut child, &socket).await;
    assert!(!wal.exists());
    assert_eq!(std::fs::read(log_dir.join("eventlog")).unwrap(), b"");
    sigterm(&child);
    let (status, stderr) = wait_exit(child);
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("interrupted runtime measurement"),
        "{stderr}"
    );

    // a damaged log stops the agent too
    std::fs::write(log_dir.join("eventlog"), b"not an eventlog").unwrap();
    let (status, stderr) = wait_exit(eventlog_agent(dir.path(), &socket).spawn().unwrap());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
}

async fn assert_serving_sample(c: &AttestationAgentServiceClient) {
    let tee = c
        .get_tee_type(ctx(), &aa::GetTeeTypeRequest::new())
        .await
        .unwrap();
    assert_eq!(tee.tee, "sample");
}
