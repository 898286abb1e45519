//! The real `coco-keyprovider` binary over gRPC (ocicrypt-rs's client, as `ocicrypt` and
//! skopeo call it), registering KEKs in testkit's KBS through trustee's admin API: every
//! `algorithm` value round-trips and an unknown one is refused; a wrong admin key is
//! refused by the KBS and reported; one KEK per keyid across layers; UnWrapKey refused;
//! flags checked at start; `-d` detaches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ocicrypt_rs::keywrap::keyprovider::AnnotationPacket;
use ocicrypt_rs::keywrap::keyprovider::{KeyProviderKeyWrapper, KeyProviderTransport};
use ocicrypt_rs::keywrap::KeyWrapper;
use testkit::kbs::{KbsConfig, TestKbs};
use testkit::process::{free_port, Daemon, Ready};

const BIN: &str = env!("CARGO_BIN_EXE_coco-keyprovider");
const OPTS: &[u8] = br#"{"symkey":"c3ltbWV0cmljIGtleSBvZiBhIGxheWVyIQ==","digest":"sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef","cipheroptions":{"nonce":"bm9uY2Ugb2YgYSBsYXllcg=="}}"#;

fn signing_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn public_pem(key: &ed25519_dalek::SigningKey) -> String {
    coco_keyprovider::AdminKey::from_seed(&key.to_bytes()).public_key_pem()
}

/// Writes `key` as the PKCS#8 PEM `openssl genpkey -algorithm ed25519` writes.
fn write_private_pem(dir: &Path, key: &ed25519_dalek::SigningKey) -> PathBuf {
    let path = dir.join("admin.pem");
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    std::fs::write(&path, pem.as_bytes()).unwrap();
    path
}

async fn kbs_with_admin(key: Option<&ed25519_dalek::SigningKey>) -> TestKbs {
    TestKbs::start(KbsConfig {
        admin_public_key: key.map(public_pem),
        ..KbsConfig::default()
    })
    .await
    .unwrap()
}

struct Provider {
    daemon: Option<Daemon>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Provider {
    /// Starts the binary with `args` on a free port; `admin` is written as `-a`.
    async fn start(kbs: Option<&TestKbs>, admin: Option<&ed25519_dalek::SigningKey>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
            .parse()
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("-s").arg(addr.to_string()).env("RUST_LOG", "debug");
        if let Some(kbs) = kbs {
            cmd.arg("--kbs").arg(kbs.url());
        }
        if let Some(key) = admin {
            cmd.arg("-a").arg(write_private_pem(dir.path(), key));
        }
        let log_dir = dir.path().to_path_buf();
        let daemon = tokio::task::spawn_blocking(move || {
            Daemon::spawn(
                "coco-keyprovider",
                cmd,
                &log_dir,
                Ready::Tcp(addr),
                Duration::from_secs(20),
            )
        })
        .await
        .unwrap()
        .unwrap();
        Self {
            daemon: Some(daemon),
            addr,
            _dir: dir,
        }
    }

    fn wrapper(&self, params: &str) -> KeyProviderKeyWrapper {
        KeyProviderKeyWrapper::new(
            "attestation-agent",
            KeyProviderTransport::Grpc(self.addr.to_string()),
        )
        .unwrap()
        .with_wrap_params(vec![params.as_bytes().to_vec()])
        .with_timeout(Duration::from_secs(30))
    }

    async fn wrap(&self, params: &str) -> Result<AnnotationPacket, String> {
        self.wrapper(params)
            .wrap_keys(OPTS)
            .await
            .map(|annotation| AnnotationPacket::parse(&annotation).unwrap())
            .map_err(|e| e.to_string())
    }

    fn stderr(&self) -> String {
        self.daemon.as_ref().unwrap().stderr()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.stop();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_round_trips_through_the_kbs_and_an_unknown_one_is_refused() {
    let admin = signing_key(1);
    let kbs = kbs_with_admin(Some(&admin)).await;
    let provider = Provider::start(Some(&kbs), Some(&admin)).await;

    for (tag, params, wrap_type) in [
        (
            "default-alg",
            "keyid=kbs:///default/key/default-alg",
            "A256GCM",
        ),
        (
            "gcm",
            "keyid=kbs:///default/key/gcm::algorithm=A256GCM",
            "A256GCM",
        ),
        (
            "ctr",
            "algorithm=A256CTR::keyid=/default/key/ctr",
            "A256CTR",
        ),
    ] {
        let packet = provider.wrap(params).await.unwrap();
        assert_eq!(packet.kid, format!("kbs:///default/key/{tag}"), "{params}");
        assert_eq!(packet.wrap_type.as_deref(), Some(wrap_type), "{params}");
        assert_eq!(packet.version.as_deref(), Some("0.1.0"));
        assert_eq!(packet.provider.as_deref(), Some("kbs"));
        let kek = kbs.resource(&format!("default/key/{tag}")).unwrap();
        assert_eq!(kek.len(), 32);
        assert_eq!(packet.open(&kek).unwrap().as_slice(), OPTS, "{params}");
    }
    // the admin requests were trustee's: octet-stream, EdDSA, upstream's 2-hour claims
    let writes = kbs.admin_writes();
    assert_eq!(writes.len(), 3);
    for write in &writes {
        assert_eq!(
            write.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(write.header["alg"], "EdDSA");
        let (iat, exp, nbf) = (
            write.claims["iat"].as_u64().unwrap(),
            write.claims["exp"].as_u64().unwrap(),
            write.claims["nbf"].as_u64().unwrap(),
        );
        assert_eq!((exp - iat, nbf), (7200, iat));
    }

    // unknown algorithm values: refused, nothing registered
    for bad in ["A128GCM", "a256ctr", "RSA-OAEP", ""] {
        let err = provider
            .wrap(&format!("keyid=kbs:///default/key/bad::algorithm={bad}"))
            .await
            .unwrap_err();
        assert!(
            err.contains("A256GCM (the default) or A256CTR"),
            "{bad}: {err}"
        );
    }
    assert_eq!(kbs.resource("default/key/bad"), None);
    assert_eq!(kbs.counters().resource_post, 3);
    assert!(provider.stderr().contains("WrapKey refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_of_one_keyid_share_one_kek_and_generated_kids_are_full_uris() {
    let admin = signing_key(2);
    let kbs = kbs_with_admin(Some(&admin)).await;
    let provider = Provider::start(Some(&kbs), Some(&admin)).await;

    let first = provider
        .wrap("keyid=kbs:///tenant/image/key")
        .await
        .unwrap();
    let second = provider
        .wrap("keyid=kbs:///tenant/image/key")
        .await
        .unwrap();
    assert_ne!(first.wrapped_data, second.wrapped_data);
    let kek = kbs.resource("tenant/image/key").unwrap();
    // both layers open with the KEK the KBS holds: it was registered once
    assert_eq!(first.open(&kek).unwrap().as_slice(), OPTS);
    assert_eq!(second.open(&kek).unwrap().as_slice(), OPTS);
    assert_eq!(kbs.counters().resource_post_ok, 1);

    // no keyid: kbs:///default/image-kek/<uuid>, registered under that path
    let generated = provider.wrap("").await.unwrap();
    let tag = generated
        .kid
        .strip_prefix("kbs:///default/image-kek/")
        .unwrap_or_else(|| panic!("{}", generated.kid));
    let kek = kbs.resource(&format!("default/image-kek/{tag}")).unwrap();
    assert_eq!(generated.open(&kek).unwrap().as_slice(), OPTS);

    // a keypath KEK is registered as it is
    let dir = tempfile::tempdir().unwrap();
    let kek_file = dir.path().join("kek");
    std::fs::write(&kek_file, [0x42u8; 32]).unwrap();
    let packet = provider
        .wrap(&format!(
            "keypath={}::keyid=kbs:///default/key/from-file",
            kek_file.display()
        ))
        .await
        .unwrap();
    assert_eq!(kbs.resource("default/key/from-file").unwrap(), [0x42u8; 32]);
    assert_eq!(packet.open(&[0x42u8; 32]).unwrap().as_slice(), OPTS);

    // UnWrapKey: a clear refusal
    let err = provider
        .wrapper("")
        .unwrap_key(&packet.to_json().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("only wraps layer keys"), "{err}");

    // parameters for another provider name: refused with the reason
    let other = KeyProviderKeyWrapper::new(
        "coco",
        KeyProviderTransport::Grpc(provider.addr.to_string()),
    )
    .unwrap()
    .with_wrap_params(vec![b"keyid=kbs:///a/b/c".to_vec()]);
    let err = other.wrap_keys(OPTS).await.unwrap_err().to_string();
    assert!(err.contains("provider:attestation-agent"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_key_is_refused_by_the_kbs_and_the_provider_reports_it() {
    let kbs = kbs_with_admin(Some(&signing_key(3))).await;
    let provider = Provider::start(Some(&kbs), Some(&signing_key(4))).await;
    let err = provider
        .wrap("keyid=kbs:///default/key/refused")
        .await
        .unwrap_err();
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("AdminAuthAccess"), "{err}");
    assert!(err.contains("kbs:///default/key/refused"), "{err}");
    assert_eq!(kbs.resource("default/key/refused"), None);
    let counters = kbs.counters();
    assert_eq!((counters.resource_post, counters.resource_post_ok), (1, 0));
    // the KEK was not kept: the next try registers again (and is refused again)
    assert!(provider
        .wrap("keyid=kbs:///default/key/refused")
        .await
        .is_err());
    assert_eq!(kbs.counters().resource_post, 2);
    drop(provider);

    // a KBS without an admin key refuses every token the same way
    let closed = kbs_with_admin(None).await;
    let provider = Provider::start(Some(&closed), Some(&signing_key(3))).await;
    let err = provider
        .wrap("keyid=kbs:///default/key/x")
        .await
        .unwrap_err();
    assert!(
        err.contains("401") && err.contains("AdminAuthAccess"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_kbs_only_keypath_keks_wrap() {
    let provider = Provider::start(None, None).await;
    let err = provider
        .wrap("keyid=kbs:///default/key/lost")
        .await
        .unwrap_err();
    assert!(err.contains("nobody has"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let kek_file = dir.path().join("kek");
    std::fs::write(&kek_file, [7u8; 32]).unwrap();
    let packet = provider
        .wrap(&format!(
            "keypath={}::keyid=/default/key/1",
            kek_file.display()
        ))
        .await
        .unwrap();
    assert_eq!(packet.kid, "kbs:///default/key/1");
    assert_eq!(packet.open(&[7u8; 32]).unwrap().as_slice(), OPTS);
    let sample = provider.wrap("sample=true").await.unwrap();
    assert_eq!(sample.kid, "kbs:///default/test-key/1");
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove(coco_keyprovider::daemon::CHILD_MARKER)
        .output()
        .unwrap()
}

#[test]
fn inconsistent_flags_stop_the_program_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap().to_string();
    let socket = format!("127.0.0.1:{port}");
    let key = write_private_pem(dir.path(), &signing_key(5));
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    for (args, expected) in [
        (
            vec!["-s", socket.as_str(), "--kbs", "http://127.0.0.1:1"],
            "--kbs needs --auth-private-key",
        ),
        (
            vec!["-s", socket.as_str(), "-a", key.to_str().unwrap()],
            "--auth-private-key needs --kbs",
        ),
        (
            vec![
                "-s",
                socket.as_str(),
                "--kbs",
                "http://127.0.0.1:1",
                "-a",
                not_a_key.to_str().unwrap(),
            ],
            "not an Ed25519 PKCS#8 PEM",
        ),
        (
            vec![
                "-s",
                socket.as_str(),
                "--kbs",
                "ftp://kbs",
                "-a",
                key.to_str().unwrap(),
            ],
            "invalid KBS URL",
        ),
        (vec!["-s", "localhost"], "invalid socket address"),
        (vec![], "--socket"),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn daemon_mode_detaches_and_records_its_pid() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let addr = format!("127.0.0.1:{}", free_port().unwrap());
    let out = run(&["-d", "--run-dir", run_dir.to_str().unwrap(), "-s", &addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let files = coco_keyprovider::daemon::DaemonFiles::in_dir(&run_dir);
    assert_eq!(
        std::fs::read_to_string(&files.pid).unwrap().trim(),
        pid.to_string()
    );
    let stop = || {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    };
    // the daemon serves after its parent exited
    if std::net::TcpStream::connect(&addr).is_err() {
        stop();
        panic!("the daemon does not listen on {addr}");
    }
    let log = std::fs::read_to_string(&files.stderr).unwrap();
    stop();
    assert!(
        log.contains("serving keyprovider.KeyProviderService"),
        "{log}"
    );
    // SIGTERM: a clean stop that removes the pid file
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while files.pid.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!files.pid.exists());
    assert!(std::fs::read_to_string(&files.stderr)
        .unwrap()
        .contains("SIGTERM received"));

    // a second daemon on the same (busy) port: the start fails where it was typed
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let out = run(&[
        "-d",
        "--run-dir",
        run_dir.to_str().unwrap(),
        "-s",
        &busy_addr,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listening on"), "{stderr}");
    assert!(!files.pid.exists());
}

/// The example provider config names the provider `attestation-agent` (the annotation the
/// data hub unwraps) and reaches the service over gRPC at the README's address.
#[test]
fn the_example_ocicrypt_config_reaches_this_service() {
    let config = ocicrypt_rs::keywrap::keyprovider::OcicryptConfig::parse(
        include_bytes!("../ocicrypt_keyprovider.conf"),
        "ocicrypt_keyprovider.conf",
    )
    .unwrap();
    assert_eq!(config.key_providers.len(), 1);
    let entry = &config.key_providers[coco_keyprovider::PROVIDER_NAME];
    assert_eq!(entry.grpc.as_deref(), Some("127.0.0.1:50000"));
    assert!(entry.cmd.is_none() && entry.ttrpc.is_none() && entry.native.is_none());
}
