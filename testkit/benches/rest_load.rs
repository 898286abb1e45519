//! `bench rest_1000c_*`: 1,000 concurrent keep-alive clients for 30 s against the REST
//! shim, with `wrk` (Debian) on 127.0.0.1, first on `/cdh/resource/default/key/1` (cc_kbc
//! against testkit's KBS, token warmed by one read first), then on an unknown path.
//! Figures: failed requests of both runs (non-2xx answers on the resource, anything but
//! 404 on the unknown path, and every socket error or timeout), the resource run's
//! requests/s and p99 latency, and the peak RSS of the three daemons together (VmHWM).
//! `REST_LOAD_SECONDS` and `REST_LOAD_CONNECTIONS` change the load.
//! Needs release binaries (`make bench` builds them) and `ulimit -n` above the connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod wrk;

use testkit::{
    kbs::{KbsConfig, TestKbs},
    suite::{KbcSetup, Suite},
};
use wrk::{env_number, run_wrk};

const RESOURCE: &str = "/cdh/resource/default/key/1";
const UNKNOWN: &str = "/no/such/endpoint";

fn main() {
    let connections = env_number("REST_LOAD_CONNECTIONS", 1000);
    let seconds = env_number("REST_LOAD_SECONDS", 30);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kbs = runtime
        .block_on(TestKbs::start(KbsConfig::default()))
        .unwrap();
    kbs.put_resource("default/key/1", b"load secret".to_vec());
    let suite = Suite::new(&KbcSetup::CcKbc {
        url: kbs.url(),
        ca_pem: None,
    })
    .unwrap();
    let daemons = suite.start_all().unwrap();
    // warm: the token is fetched once, before the load
    let (status, body) = suite.get(RESOURCE).unwrap();
    assert_eq!((status, body.as_slice()), (200, b"load secret".as_slice()));

    let base = format!("http://{}", suite.asr);
    let resource = run_wrk(&format!("{base}{RESOURCE}"), connections, seconds);
    let unknown = run_wrk(&format!("{base}{UNKNOWN}"), connections, seconds);
    // every answer on the unknown path must be a 404 (wrk counts them as non-2xx)
    let (status, _) = suite.get(UNKNOWN).unwrap();
    assert_eq!(status, 404);
    let unknown_failed = unknown.socket_errors + unknown.requests.saturating_sub(unknown.non_2xx);

    let failed = resource.non_2xx + resource.socket_errors + unknown_failed;
    let peak_kib: u64 = daemons.iter().map(|d| d.status_kib("VmHWM").unwrap()).sum();
    eprintln!(
        "rest load: resource {resource:?}, unknown path {unknown:?}, KBS attestations {}",
        kbs.counters().attest_ok
    );
    println!("bench rest_1000c_failed: {failed} requests");
    println!("bench rest_1000c_rps: {:.0} requests/s", resource.rps);
    println!("bench rest_1000c_p99_ms: {:.1} ms", resource.p99_ms);
    println!(
        "bench rest_1000c_peak_rss_mib: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    for daemon in daemons.into_iter().rev() {
        daemon.stop().unwrap();
    }
}
