//! `bench rest_1000c_*`: 1,000 concurrent keep-alive clients for 30 s against the REST
//! shim, with `wrk` (Debian) on 127.0.0.1, first on `/cdh/resource/default/key/1` (cc_kbc
//! against testkit's KBS, token warmed by one read first), then on an unknown path.
//! Figures: failed requests of both runs (non-2xx answers on the resource, anything but
//! 404 on the unknown path, and every socket error or timeout), the resource run's
//! requests/s and p99 latency, and the peak RSS of the three daemons together (VmHWM).
//! `REST_LOAD_SECONDS` and `REST_LOAD_CONNECTIONS` change the load.
//! Needs release binaries (`make bench` builds them) and `ulimit -n` above the connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use testkit::{
    kbs::{KbsConfig, TestKbs},
    suite::{KbcSetup, Suite},
};

const RESOURCE: &str = "/cdh/resource/default/key/1";
const UNKNOWN: &str = "/no/such/endpoint";

/// What wrk reports for one run.
#[derive(Debug, Default)]
struct WrkRun {
    requests: u64,
    rps: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: u64,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `12.34ms`, `1.20s`, `850.00us` in milliseconds.
fn duration_ms(text: &str) -> f64 {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        panic!("unknown duration {text:?}")
    };
    number.parse::<f64>().unwrap() * scale
}

fn run_wrk(url: &str, connections: u64, seconds: u64) -> WrkRun {
    let out = Command::new("wrk")
        .args(["-t", "2", "-c", &connections.to_string()])
        .args([
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            "10s",
            "--latency",
        ])
        .arg(url)
        .output()
        .expect("wrk (Debian package wrk; scripts/install-test-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "wrk failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    let mut run = WrkRun::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["99%", latency] => run.p99_ms = duration_ms(latency),
            ["Requests/sec:", rps] => run.rps = rps.parse().unwrap(),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap(),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.non_2xx = n.parse().unwrap(),
            ["Socket", "errors:", rest @ ..] => {
                run.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    assert!(run.requests > 0, "no requests counted: {text}");
    run
}

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
