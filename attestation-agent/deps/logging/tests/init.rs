//! `init` in a child process (a subscriber can be set once per process): what reaches
//! stderr for a valid, an invalid and no `RUST_LOG`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const CHILD: &str = "LOGGING_TEST_CHILD_DEFAULT";

/// Runs `child` below in a fresh process with `default` and `rust_log`; returns stderr.
fn run(default: &str, rust_log: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, default)
        .env_remove("RUST_LOG");
    if let Some(value) = rust_log {
        cmd.env("RUST_LOG", value);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn child() {
    let Ok(default) = std::env::var(CHILD) else {
        return;
    };
    logging::init(&default);
    tracing::error!(target: "app", "event-error");
    tracing::info!(target: "app", "event-info");
    tracing::debug!(target: "app::inner", "event-debug");
}

#[test]
fn default_applies_without_rust_log() {
    let err = run("info", None);
    assert!(
        err.contains("event-error") && err.contains("event-info"),
        "{err}"
    );
    assert!(!err.contains("event-debug"), "{err}");
    assert!(
        !err.contains("\u{1b}["),
        "no colours when stderr is no terminal: {err:?}"
    );
}

#[test]
fn rust_log_overrides_the_default() {
    let err = run("error", Some("warn,app=debug"));
    assert!(
        err.contains("event-info") && err.contains("event-debug"),
        "{err}"
    );
    let err = run("info", Some("OFF"));
    assert!(err.is_empty(), "{err}");
}

#[test]
fn a_bad_rust_log_falls_back_with_a_warning() {
    let err = run("error", Some("app=loud"));
    assert!(err.contains("RUST_LOG ignored"), "{err}");
    assert!(err.contains("\"app=loud\""), "{err}");
    assert!(
        err.contains("event-error") && !err.contains("event-info"),
        "{err}"
    );
}

#[test]
fn a_bad_default_falls_back_to_info_with_a_warning() {
    let err = run("nonsense", None);
    assert!(err.contains("log filter ignored"), "{err}");
    assert!(
        err.contains("event-info") && !err.contains("event-debug"),
        "{err}"
    );
}
