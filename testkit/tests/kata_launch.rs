//! The three daemons launched exactly as kata-agent launches them: from
//! `/usr/local/bin`, with kata's argv and environment, sockets under
//! `/run/confidential-containers`, each awaited with kata's 6 s limit, in that order.
//!
//! The launch runs in a private mount namespace (`unshare --mount`) with tmpfs on `/run`
//! and `/usr/local/bin` and an overlay on `/etc`, so the real paths are used without
//! touching the machine's. This machine has no TEE: the agent falls back to the sample
//! attester as upstream does. The REST shim binds kata's fixed 127.0.0.1:8006.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use protos::{api, api_ttrpc, attestation_agent as aa, attestation_agent_ttrpc as aa_ttrpc};
use testkit::{
    kata::{assert_launched_as_kata, PodInitdata, SOCKET_TIMEOUT_MS},
    kbs::{KbsConfig, TestKbs},
    process::workspace_bin,
    suite::parse_response,
};

const AA_SOCK: &str = "/run/confidential-containers/attestation-agent/attestation-agent.sock";
const CDH_SOCK: &str = "/run/confidential-containers/cdh.sock";
const SECRET: &[u8] = b"resource for a pod started as kata starts it";

/// Runs in the namespace: kata's launch sequence, then waits for stdin to close and stops
/// the daemons with SIGTERM.
const LAUNCH: &str = r#"
set -o errexit -o nounset -o pipefail
mount -t tmpfs tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /usr/local/bin
for b in attestation-agent confidential-data-hub api-server-rest; do
    install -m0755 "$BIN_DIR/$b" /usr/local/bin/$b
done
mkdir -p "$WORK/etc-upper" "$WORK/etc-work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$WORK/etc-upper,workdir=$WORK/etc-work" /etc
install -m0644 "$OCICRYPT_CONFIG" /etc/ocicrypt_config.json
initdata=/run/confidential-containers/initdata
if [[ -n "$INITDATA_DIR" ]]; then
    mkdir -p "$initdata"
    cp "$INITDATA_DIR"/* "$initdata"/
fi

now_ms() { date +%s%3N; }
pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait || true; }
trap stop EXIT
# kata-agent's wait: the path exists within the limit
await() {
    local what=$1 check=$2 start=$3
    until eval "$check"; do
        if (( $(now_ms) - start > KATA_SOCKET_TIMEOUT_MS )); then
            echo "timeout $what"
            exit 1
        fi
        sleep 0.02
    done
    echo "ready $what $(( $(now_ms) - start ))"
}
guest_env=(env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

aa=(/usr/local/bin/attestation-agent --attestation_sock unix:///run/confidential-containers/attestation-agent/attestation-agent.sock)
[[ -e $initdata/initdata.toml ]] && aa+=(--initdata-toml $initdata/initdata.toml)
[[ -e $initdata/aa.toml ]] && aa+=(-c $initdata/aa.toml)
start=$(now_ms)
"${guest_env[@]}" "${aa[@]}" 2>"$WORK/aa.log" &
pids+=($!)
await attestation-agent "[[ -S $AA_SOCK ]]" "$start"

cdh=(/usr/local/bin/confidential-data-hub)
[[ -e $initdata/cdh.toml ]] && cdh+=(-c $initdata/cdh.toml)
start=$(now_ms)
"${guest_env[@]}" OCICRYPT_KEYPROVIDER_CONFIG=/etc/ocicrypt_config.json "${cdh[@]}" 2>"$WORK/cdh.log" &
pids+=($!)
await confidential-data-hub "[[ -S $CDH_SOCK ]]" "$start"

start=$(now_ms)
"${guest_env[@]}" /usr/local/bin/api-server-rest --features "$REST_FEATURES" 2>"$WORK/asr.log" &
pids+=($!)
await api-server-rest "(exec 3<>/dev/tcp/127.0.0.1/8006) 2>/dev/null" "$start"
echo started
read -r _ || true
"#;

/// A launch in its own mount namespace.
struct Launch {
    child: Child,
    stdin: Option<ChildStdin>,
    work: tempfile::TempDir,
    /// socket-ready times reported by the launcher, in kata's order
    ready_ms: Vec<(String, u64)>,
}

impl Launch {
    fn start(initdata_dir: Option<&Path>, rest_features: &str) -> Launch {
        let work = tempfile::tempdir().unwrap();
        let bin_dir = workspace_bin("attestation-agent")
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "bash", "-c", LAUNCH])
            .env("BIN_DIR", bin_dir)
            .env("WORK", work.path())
            .env(
                "OCICRYPT_CONFIG",
                repo.join("confidential-data-hub/hub/src/image/ocicrypt_config.json"),
            )
            .env("INITDATA_DIR", initdata_dir.unwrap_or(Path::new("")))
            .env("REST_FEATURES", rest_features)
            .env("AA_SOCK", AA_SOCK)
            .env("CDH_SOCK", CDH_SOCK)
            .env("KATA_SOCKET_TIMEOUT_MS", SOCKET_TIMEOUT_MS.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut launch = Launch {
            child,
            stdin,
            work,
            ready_ms: Vec::new(),
        };
        loop {
            let Some(line) = lines.next() else {
                panic!(
                    "the launcher stopped before every daemon was ready (ready: {:?});\n{}",
                    launch.ready_ms,
                    launch.logs()
                );
            };
            let line = line.unwrap();
            if line == "started" {
                break;
            }
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["ready", name, ms] => launch
                    .ready_ms
                    .push((name.to_string(), ms.parse().unwrap())),
                _ => panic!("{line}\n{}", launch.logs()),
            }
        }
        eprintln!("socket-ready times (ms): {:?}", launch.ready_ms);
        launch
    }

    /// A path inside the launch's mount namespace, as seen from the test.
    fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.child.id()))
    }

    fn log(&self, daemon: &str) -> String {
        std::fs::read_to_string(self.work.path().join(format!("{daemon}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        ["aa", "cdh", "asr"]
            .map(|d| format!("--- {d} ---\n{}", self.log(d)))
            .join("\n")
    }

    /// Closes the launcher's stdin: it stops the daemons and exits.
    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "launcher: {status}\n{}", self.logs());
        self.logs()
    }
}

async fn ttrpc_client(path: &Path) -> ttrpc::r#async::Client {
    ttrpc::r#async::Client::connect(&format!("unix://{}", path.display()))
        .await
        .unwrap()
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(20_000_000_000)
}

fn rest_get(path: &str) -> (u16, Vec<u8>) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect("127.0.0.1:8006").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8006\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw).unwrap()
}

async fn tee_type(launch: &Launch) -> String {
    let client =
        aa_ttrpc::AttestationAgentServiceClient::new(ttrpc_client(&launch.inside(AA_SOCK)).await);
    client
        .get_tee_type(ctx(), &aa::GetTeeTypeRequest::new())
        .await
        .unwrap()
        .tee
}

fn assert_ready_in_order(launch: &Launch) {
    let ready: Vec<(&str, u64)> = launch
        .ready_ms
        .iter()
        .map(|(name, ms)| (name.as_str(), *ms))
        .collect();
    assert_launched_as_kata(&ready, &launch.logs());
}

/// Both launches use 127.0.0.1:8006 and the suite's real paths: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// kata's launch without initdata: no config files at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kata_launch_without_initdata_serves_sample_evidence() {
    let _serial = SERIAL.lock().await;
    let launch = tokio::task::block_in_place(|| Launch::start(None, "attestation"));
    assert_ready_in_order(&launch);
    assert_eq!(tee_type(&launch).await, "sample");

    let (status, body) = tokio::task::block_in_place(|| rest_get("/aa/evidence?runtime_data=kata"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let evidence: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(evidence["report_data"], "a2F0YQ==", "{evidence}");
    // resource endpoints are off with --features attestation
    let (status, _) = tokio::task::block_in_place(|| rest_get("/cdh/resource/default/key/1"));
    assert_eq!(status, 404);

    let logs = tokio::task::block_in_place(|| launch.stop());
    assert!(
        logs.contains("no TEE found: falling back to the sample attester"),
        "{logs}"
    );
}

/// kata's launch with initdata: `--initdata-toml` and `-c` for AA and CDH, both configs in
/// upstream's shape with empty certificates, a KBS resource through `cc_kbc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kata_launch_with_initdata_fetches_a_kbs_resource() {
    let _serial = SERIAL.lock().await;
    let kbs = TestKbs::start(KbsConfig::default()).await.unwrap();
    kbs.put_resource("default/key/1", SECRET);
    let url = kbs.url();
    let PodInitdata {
        aa_toml,
        cdh_toml,
        initdata,
    } = PodInitdata::new(&url);
    let files = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("initdata.toml", initdata.as_str()),
        ("aa.toml", aa_toml.as_str()),
        ("cdh.toml", cdh_toml.as_str()),
    ] {
        std::fs::write(files.path().join(name), text).unwrap();
    }

    let launch = tokio::task::block_in_place(|| Launch::start(Some(files.path()), "all"));
    assert_ready_in_order(&launch);
    assert_eq!(tee_type(&launch).await, "sample");

    // kata-agent's call: GetResource over the hub's socket
    let cdh =
        api_ttrpc::GetResourceServiceClient::new(ttrpc_client(&launch.inside(CDH_SOCK)).await);
    let reply = cdh
        .get_resource(
            ctx(),
            &api::GetResourceRequest {
                ResourcePath: "kbs:///default/key/1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.Resource, SECRET);
    // the initdata went to the KBS verbatim with the attestation
    assert_eq!(
        kbs.last_init_data().unwrap(),
        serde_json::json!({"format": "toml", "body": initdata})
    );

    // a workload's calls: the resource, and the token with its key (upstream's shape)
    let (status, body) = tokio::task::block_in_place(|| rest_get("/cdh/resource/default/key/1"));
    assert_eq!((status, body.as_slice()), (200, SECRET));
    let (status, body) = tokio::task::block_in_place(|| rest_get("/aa/token?token_type=kbs"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(token["token"].as_str().unwrap().split('.').count(), 3);
    assert!(token["tee_keypair"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN"));
    assert_eq!(kbs.counters().attest_ok, 1, "one attestation for the pod");

    let logs = tokio::task::block_in_place(|| launch.stop());
    assert!(!logs.contains("panicked"), "{logs}");
}
