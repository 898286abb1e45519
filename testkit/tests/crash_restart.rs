//! Crashes and restarts of the KBS side of the suite, with the real daemons: the agent
//! killed with SIGKILL while the hub holds its token, and every daemon started while the
//! peers it needs (agent, hub, KBS) are down. Each failure is an answer within bounded
//! time, and the suite serves again as soon as the peers are back, without restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use testkit::{
    kbs::{KbsConfig, TestKbs},
    process::free_port,
    suite::{KbcSetup, Suite},
};

const PATH: &str = "/cdh/resource/default/key/1";
const SECRET: &[u8] = b"crash restart secret";
/// Every answer while a peer is down comes well within the 50 s callers allow.
const FAILURE_BOUND: Duration = Duration::from_secs(15);

fn read(suite: &Suite) -> (u16, String) {
    let (status, body) = tokio::task::block_in_place(|| suite.get(PATH)).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A read that fails, quickly, with a status that says the service is not available.
/// (The shim's body is upstream's fixed "Failed to get resource"; the cause is in the logs.)
fn failed_read(suite: &Suite, what: &str) {
    let started = Instant::now();
    let (status, body) = read(suite);
    let took = started.elapsed();
    assert!(took < FAILURE_BOUND, "{what}: the read took {took:?}");
    assert!(
        status >= 500 && status != 200,
        "{what}: expected a server-side failure, got {status}: {body}"
    );
}

fn ok_read(suite: &Suite, what: &str) {
    let (status, body) = read(suite);
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(body.as_bytes(), SECRET, "{what}");
}

async fn kbs_on(port: u16) -> TestKbs {
    let kbs = TestKbs::start(KbsConfig {
        port,
        ..KbsConfig::default()
    })
    .await
    .unwrap();
    kbs.put_resource("default/key/1", SECRET.to_vec());
    kbs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_not_needed_for_a_held_token_and_is_used_again_when_back() {
    let kbs = kbs_on(0).await;
    let suite = Suite::new(&KbcSetup::CcKbc {
        url: kbs.url(),
        ca_pem: None,
    })
    .unwrap();
    let [mut aa, cdh, asr] = suite.start_all().unwrap();
    ok_read(&suite, "first read");
    assert_eq!(kbs.counters().attest_ok, 1);

    aa.signal_and_wait("KILL", Duration::from_secs(5)).unwrap();
    // the hub's token is still valid: reads go on without the agent
    ok_read(&suite, "token held, agent dead");
    // the KBS refuses the token: a new one is needed, and the agent is gone
    kbs.revoke_tokens();
    failed_read(&suite, "token refused, agent dead");

    // the agent comes back on the same socket (its stale socket file still there)
    let _aa = tokio::task::block_in_place(|| suite.start_aa()).unwrap();
    ok_read(&suite, "agent back");
    ok_read(&suite, "agent back, token reused");
    assert_eq!(kbs.counters().attest_ok, 2);
    assert!(!cdh.stderr().contains("panicked"), "{}", cdh.stderr());
    drop(asr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_daemon_starts_while_its_peers_are_down_and_serves_when_they_are_back() {
    let kbs_port = free_port().unwrap();
    let suite = Suite::new(&KbcSetup::CcKbc {
        url: format!("http://127.0.0.1:{kbs_port}"),
        ca_pem: None,
    })
    .unwrap();
    // the REST shim first, alone
    let _asr = tokio::task::block_in_place(|| suite.start_asr()).unwrap();
    failed_read(&suite, "shim alone");

    // the hub, with neither agent nor KBS
    let _cdh = tokio::task::block_in_place(|| suite.start_cdh()).unwrap();
    failed_read(&suite, "hub without agent");

    // the agent, without KBS
    let _aa = tokio::task::block_in_place(|| suite.start_aa()).unwrap();
    failed_read(&suite, "agent without KBS");

    // the KBS last: served at once, no daemon restarted
    let kbs = kbs_on(kbs_port).await;
    ok_read(&suite, "all peers back");
    ok_read(&suite, "token reused");
    assert_eq!(kbs.counters().attest_ok, 1);

    // the KBS restarted with a new token key, down for a moment: one failure, then served
    let counters = kbs.counters();
    kbs.stop().await;
    failed_read(&suite, "KBS down with a token held");
    let kbs = kbs_on(kbs_port).await;
    ok_read(&suite, "KBS back");
    assert_eq!(counters.attest_ok + kbs.counters().attest_ok, 2);
}
