//! `bench kbs_slow_400c_*`: 400 concurrent keep-alive clients for 30 s reading
//! `/cdh/resource/default/key/1` through the REST shim in cc_kbc mode, with `wrk` (Debian)
//! on 127.0.0.1, against testkit's KBS throttled to 300 replies/s (token warmed by one read
//! first). Figures: failed reads (non-2xx answers, socket errors, reads over wrk's 10 s
//! timeout), reads/s, p99 latency, and the peak RSS of the three daemons together (VmHWM).
//! `KBS_SLOW_SECONDS`, `KBS_SLOW_CONNECTIONS` and `KBS_SLOW_REPLIES_PER_SEC` change the load.
//! Needs release binaries (`make bench` builds them) and `ulimit -n` above the connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod wrk;

use testkit::{
    kbs::{Faults, KbsConfig, TestKbs},
    suite::{KbcSetup, Suite},
};
use wrk::{env_number, run_wrk};

const RESOURCE: &str = "/cdh/resource/default/key/1";

fn main() {
    let connections = env_number("KBS_SLOW_CONNECTIONS", 400);
    let seconds = env_number("KBS_SLOW_SECONDS", 30);
    let rate = env_number("KBS_SLOW_REPLIES_PER_SEC", 300);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kbs = runtime
        .block_on(TestKbs::start(KbsConfig::default()))
        .unwrap();
    kbs.put_resource("default/key/1", b"slow secret".to_vec());
    kbs.set_faults(Faults {
        max_replies_per_sec: u32::try_from(rate).unwrap(),
        ..Faults::default()
    });
    let suite = Suite::new(&KbcSetup::CcKbc {
        url: kbs.url(),
        ca_pem: None,
    })
    .unwrap();
    let daemons = suite.start_all().unwrap();
    let (status, body) = suite.get(RESOURCE).unwrap();
    assert_eq!((status, body.as_slice()), (200, b"slow secret".as_slice()));
    let before = kbs.counters();
    let rss_before: Vec<u64> = daemons
        .iter()
        .map(|d| d.status_kib("VmRSS").unwrap())
        .collect();

    let run = run_wrk(
        &format!("http://{}{RESOURCE}", suite.asr),
        connections,
        seconds,
    );

    let after = kbs.counters();
    let failed = run.non_2xx + run.socket_errors;
    let peak_kib: u64 = daemons.iter().map(|d| d.status_kib("VmHWM").unwrap()).sum();
    let rss_after: Vec<u64> = daemons
        .iter()
        .map(|d| d.status_kib("VmRSS").unwrap())
        .collect();
    eprintln!(
        "slow KBS ({rate} replies/s): {run:?}; KBS resource replies {} for {} reads, \
         attestations {}; RSS KiB (aa, cdh, asr) before {rss_before:?}, after {rss_after:?}",
        after.resource_get - before.resource_get,
        run.requests,
        after.attest_ok - before.attest_ok,
    );
    println!("bench kbs_slow_400c_failed: {failed} requests");
    println!("bench kbs_slow_400c_rps: {:.0} requests/s", run.rps);
    println!("bench kbs_slow_400c_p99_ms: {:.1} ms", run.p99_ms);
    println!(
        "bench kbs_slow_400c_peak_rss_mib: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    for daemon in daemons.into_iter().rev() {
        daemon.stop().unwrap();
    }
    runtime.block_on(kbs.stop());
}
