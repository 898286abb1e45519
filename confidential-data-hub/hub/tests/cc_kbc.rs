//! `cc_kbc` end to end with real components: the test KBS (`testkit`), the real
//! `attestation-agent` binary (sample attester, `[token_configs.kbs]` pointing at the KBS)
//! and the real `confidential-data-hub` binary, driven over ttRPC as kata-agent does. The
//! KBS's counters show how many attestations each step cost.

#![cfg(feature = "kbs")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    os::unix::fs::MetadataExt,
    path::PathBuf,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

mod common;

use common::{connect, get_resource, resource, status_of, wait_for_file, Guest};
use protos::api_ttrpc;
use testkit::{
    kbs::{Access, KbsConfig, MissingResource, TestKbs},
    process::{free_port, Daemon},
};

const SECRET: &[u8] = b"cc_kbc end-to-end secret \x00\x01\xff";
const PASSWORD: &[u8] = b"registry password";

/// One AA + CDH pair with `cc_kbc`, in a temporary guest directory.
struct CcGuest {
    guest: Guest,
}

impl CcGuest {
    fn new() -> Self {
        Self {
            guest: Guest::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.guest.path(name)
    }

    fn kbs_dir(&self) -> PathBuf {
        self.path("kbs")
    }

    fn start_aa(&self, kbs_url: &str) -> Daemon {
        self.guest
            .start_aa(&format!("[token_configs.kbs]\nurl = \"{kbs_url}\"\n"))
    }

    /// The CDH command with `cc_kbc` for `kbs_url` and `credentials` (`uri`, file name under
    /// the credentials directory).
    fn cdh_command(&self, kbs_url: &str, credentials: &[(&str, &str)]) -> Command {
        let mut config = format!(
            "[aa]\naa_socket = \"unix://{}\"\n[kbc]\nname = \"cc_kbc\"\nurl = \"{kbs_url}\"\n",
            self.guest.aa_sock().display()
        );
        for (uri, name) in credentials {
            config.push_str(&format!(
                "[[credentials]]\nresource_uri = \"{uri}\"\npath = \"{}\"\n",
                self.kbs_dir().join(name).display()
            ));
        }
        self.guest.cdh_command(&config)
    }

    fn start_cdh(&self, kbs_url: &str, credentials: &[(&str, &str)]) -> Daemon {
        self.guest.spawn_cdh(self.cdh_command(kbs_url, credentials))
    }

    async fn resources(&self) -> api_ttrpc::GetResourceServiceClient {
        api_ttrpc::GetResourceServiceClient::new(connect(&self.guest.cdh_addr()).await)
    }

    /// Waits until `name` exists under the credentials directory.
    async fn wait_for_credential(&self, name: &str, cdh: &Daemon) -> PathBuf {
        let path = self.kbs_dir().join(name);
        wait_for_file(&path, cdh).await;
        path
    }
}

async fn start_kbs(config: KbsConfig) -> TestKbs {
    let kbs = TestKbs::start(config).await.unwrap();
    kbs.put_resource("default/key/1", SECRET);
    kbs.put_resource("default/cred/pw", PASSWORD);
    kbs.put_resource("default/key/denied", b"never served".to_vec());
    kbs.set_access("default/key/denied", Access::Deny);
    kbs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_attestation_serves_every_request_until_the_kbs_refuses_the_token() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let guest = CcGuest::new();
    let aa = guest.start_aa(&kbs.url());
    let cdh = guest.start_cdh(&kbs.url(), &[]);
    let resources = Arc::new(guest.resources().await);
    assert_eq!(
        kbs.counters().auth,
        0,
        "nothing is fetched before it is asked for"
    );

    // 100 concurrent first requests: exactly one attestation
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let resources = resources.clone();
            // the host of a resource URI is ignored: the configured KBS answers
            let uri = if i % 2 == 0 {
                "kbs:///default/key/1"
            } else {
                "kbs://other.example:8080/default/key/1"
            };
            tokio::spawn(async move { get_resource(&resources, uri).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), SECRET, "{}", cdh.stderr());
    }
    let counters = kbs.counters();
    assert_eq!((counters.auth, counters.attest_ok), (1, 1), "{counters:?}");
    // concurrent reads of one resource share the KBS request in flight
    assert!(
        (1..=10).contains(&counters.resource_ok),
        "{} KBS requests for 100 concurrent reads",
        counters.resource_ok
    );

    // a second call: the token is reused, no new /auth
    assert_eq!(
        resource(&resources, "kbs:///default/cred/pw").await,
        PASSWORD
    );
    assert_eq!(kbs.counters().auth, 1);

    // the KBS no longer honours the token: exactly one new attestation (AA is told to
    // refresh rather than hand out its cached token again), then success
    kbs.revoke_tokens();
    assert_eq!(
        resource(&resources, "kbs:///default/key/1").await,
        SECRET,
        "{}\n{}",
        cdh.stderr(),
        aa.stderr()
    );
    let counters = kbs.counters();
    assert_eq!((counters.auth, counters.attest_ok), (2, 2), "{counters:?}");

    // a policy denial: PERMISSION_DENIED after at most the one re-attestation that proves
    // the token was not the problem; asking again costs no attestation at all
    let (code, message) = status_of(get_resource(&resources, "kbs:///default/key/denied").await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{message}");
    assert!(
        message.starts_with(
            "[CDH] [ERROR]: getting resource failed: access to resource kbs:///default/key/denied denied: "
        ),
        "{message}"
    );
    assert!(message.contains("PolicyDeny"), "{message}");
    assert_eq!(kbs.counters().attest_ok, 3);
    for _ in 0..5 {
        let (code, _) = status_of(get_resource(&resources, "kbs:///default/key/denied").await);
        assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    }
    assert_eq!(kbs.counters().attest_ok, 3);

    // a missing resource, which trustee (and this KBS) answers 401 as well
    let (code, message) = status_of(get_resource(&resources, "kbs:///default/key/missing").await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{message}");
    assert!(message.contains("PluginInternalError"), "{message}");
    let (code, _) = status_of(get_resource(&resources, "kbs:///default/key/missing").await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert_eq!(kbs.counters().attest_ok, 4);

    // the token still serves allowed resources
    assert_eq!(resource(&resources, "kbs:///default/key/1").await, SECRET);
    assert_eq!(kbs.counters().attest_ok, 4);
    // no secret in what the daemons log
    for log in [cdh.stderr(), aa.stderr()] {
        assert!(!log.contains("PRIVATE KEY"));
        assert!(!log.contains("end-to-end secret"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_provisioned_from_the_kbs_at_start() {
    let kbs = start_kbs(KbsConfig {
        missing_resource: MissingResource::NotFound,
        ..Default::default()
    })
    .await;
    let guest = CcGuest::new();
    let _aa = guest.start_aa(&kbs.url());
    let cdh = guest.start_cdh(
        &kbs.url(),
        &[
            ("kbs:///default/key/missing", "missing"),
            ("kbs:///default/cred/pw", "registry/pw"),
            ("kbs:///default/key/1", "key1"),
        ],
    );
    let key1 = guest.wait_for_credential("key1", &cdh).await;
    let pw = guest.kbs_dir().join("registry/pw");
    assert_eq!(std::fs::read(&pw).unwrap(), PASSWORD);
    assert_eq!(std::fs::read(&key1).unwrap(), SECRET);
    for file in [&pw, &key1] {
        assert_eq!(std::fs::metadata(file).unwrap().mode() & 0o777, 0o600);
    }
    assert!(!guest.kbs_dir().join("missing").exists());
    assert!(
        cdh.stderr().contains("kbs:///default/key/missing"),
        "{}",
        cdh.stderr()
    );
    // one attestation for all three
    assert_eq!(kbs.counters().attest_ok, 1);

    // GetResource reuses the provisioning token; a 404 is NOT_FOUND without re-attesting
    let resources = guest.resources().await;
    assert_eq!(resource(&resources, "kbs:///default/key/1").await, SECRET);
    let (code, message) = status_of(get_resource(&resources, "kbs:///default/key/missing").await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{message}");
    assert_eq!(
        message,
        "[CDH] [ERROR]: getting resource failed: resource kbs:///default/key/missing not found"
    );
    let counters = kbs.counters();
    assert_eq!((counters.auth, counters.attest_ok), (1, 1), "{counters:?}");
    assert_eq!(cdh.stop().unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kbs_that_is_down_does_not_delay_the_socket() {
    let port = free_port().unwrap();
    let kbs_url = format!("http://127.0.0.1:{port}");
    let guest = CcGuest::new();
    let _aa = guest.start_aa(&kbs_url);

    let started = Instant::now();
    let mut child = guest
        .cdh_command(&kbs_url, &[("kbs:///default/key/1", "key1")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(guest.path("cdh.stderr")).unwrap())
        .spawn()
        .unwrap();
    while !testkit::process::unix_socket_accepts(&guest.guest.cdh_sock()) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no socket within 1 s: {}",
            std::fs::read_to_string(guest.path("cdh.stderr")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stderr = || std::fs::read_to_string(guest.path("cdh.stderr")).unwrap();

    // requests fail with a message saying what happened, and the daemon keeps serving
    let resources = guest.resources().await;
    let (code, message) = status_of(get_resource(&resources, "kbs:///default/key/1").await);
    assert_eq!(code, ttrpc::Code::INTERNAL, "{message}");
    assert!(
        message.starts_with(
            "[CDH] [ERROR]: getting resource failed: fetching resource kbs:///default/key/1 from the KBS failed: "
        ),
        "{message}"
    );
    assert!(message.contains("attestation agent"), "{message}");
    assert!(child.try_wait().unwrap().is_none(), "{}", stderr());

    // the KBS comes up on its address: the next request attests and succeeds
    let kbs = start_kbs(KbsConfig {
        port,
        ..Default::default()
    })
    .await;
    assert_eq!(
        resource(&resources, "kbs:///default/key/1").await,
        SECRET,
        "{}",
        stderr()
    );
    assert_eq!(kbs.counters().attest_ok, 1);
    testkit::process::send_signal(child.id(), "TERM").unwrap();
    assert!(child.wait().unwrap().success(), "{}", stderr());
}
