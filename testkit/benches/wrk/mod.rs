//! `wrk` (Debian) driving for the load benches: one run, its figures parsed.

use std::process::Command;

/// What wrk reports for one run.
#[derive(Debug, Default)]
pub(crate) struct WrkRun {
    pub requests: u64,
    pub rps: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    /// connect, read and write errors and requests over wrk's `--timeout` (10 s)
    pub socket_errors: u64,
}

pub(crate) fn env_number(name: &str, default: u64) -> u64 {
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

pub(crate) fn run_wrk(url: &str, connections: u64, seconds: u64) -> WrkRun {
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
