//! Log setup shared by the binaries: events go to stderr, filtered by `RUST_LOG` or by the
//! binary's default. Filters are `tracing_subscriber`'s `Targets` (`level`,
//! `target=level`, comma-separated), which need no regex engine, unlike `EnvFilter`.
#![forbid(unsafe_code)]

mod filter;

/// Log filters and why one does not parse.
pub use filter::{FilterError, LogFilter};

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Level used when even the binary's default filter is unusable.
const LAST_RESORT: tracing::Level = tracing::Level::INFO;

/// Sends events to stderr, filtered by `RUST_LOG` when it is set and valid, else by
/// `default` (a filter such as `info` or `warn,my_crate=debug`). A bad `RUST_LOG` is
/// reported as a warning, never fatal: logs must not stop a daemon from starting.
pub fn init(default: &str) {
    let mut complaints = Vec::new();
    let from_env = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match directives.parse::<LogFilter>() {
            Ok(filter) => Some(filter),
            Err(e) => {
                complaints.push(format!("RUST_LOG ignored, using {default:?}: {e}"));
                None
            }
        },
        _ => None,
    };
    let filter = match from_env {
        Some(filter) => filter,
        None => default.parse().unwrap_or_else(|e| {
            complaints.push(format!("log filter ignored, using {LAST_RESORT}: {e}"));
            LogFilter::level(LAST_RESORT)
        }),
    };
    // The warnings below pass whatever level the filter chose.
    let mut targets = filter.into_targets();
    if !complaints.is_empty() {
        targets = targets.with_target(module_path!(), tracing::Level::WARN);
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // Fails only when a subscriber is already set (a second call): that one stays.
    let _ = tracing_subscriber::registry()
        .with(targets)
        .with(stderr)
        .try_init();
    for complaint in complaints {
        tracing::warn!("{complaint}");
    }
}
