//! `bench kbs_cold_fetch_ms` and `bench kbs_warm_fetch_ms`: latency of
//! `GET /cdh/resource/default/key/1` through the REST shim, the data hub (cc_kbc) and the
//! attestation agent against testkit's KBS on loopback. Cold: the fetch that runs the full
//! handshake (fresh agent and hub each run); warm: the token is reused. Median of the runs.
//! Needs release binaries (`cargo build --release --bins`; `make bench` does that).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use testkit::{
    kbs::{KbsConfig, TestKbs},
    suite::{KbcSetup, Suite},
};

const RUNS: usize = 21;
const PATH: &str = "/cdh/resource/default/key/1";

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

fn timed_fetch(suite: &Suite) -> Duration {
    let start = Instant::now();
    let (status, body) = suite.get(PATH).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"bench secret");
    elapsed
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| f == name);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kbs = runtime
        .block_on(TestKbs::start(KbsConfig::default()))
        .unwrap();
    kbs.put_resource("default/key/1", b"bench secret".to_vec());
    let suite = Suite::new(&KbcSetup::CcKbc {
        url: kbs.url(),
        ca_pem: None,
    })
    .unwrap();
    let _asr = suite.start_asr().unwrap();

    if wanted("kbs_cold_fetch_ms") {
        let mut cold = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let aa = suite.start_aa().unwrap();
            let cdh = suite.start_cdh().unwrap();
            cold.push(timed_fetch(&suite));
            cdh.stop().unwrap();
            aa.stop().unwrap();
        }
        let attestations = kbs.counters().attest_ok;
        assert!(
            attestations >= RUNS as u64,
            "{attestations} attestations for {RUNS} cold runs"
        );
        println!("bench kbs_cold_fetch_ms: {:.2} ms", median(cold));
    }
    if wanted("kbs_warm_fetch_ms") {
        let _aa = suite.start_aa().unwrap();
        let _cdh = suite.start_cdh().unwrap();
        timed_fetch(&suite);
        let before = kbs.counters().attest_ok;
        let warm: Vec<Duration> = (0..RUNS).map(|_| timed_fetch(&suite)).collect();
        assert_eq!(
            kbs.counters().attest_ok,
            before,
            "warm fetches must not attest"
        );
        println!("bench kbs_warm_fetch_ms: {:.2} ms", median(warm));
    }
    runtime.block_on(kbs.stop());
}
