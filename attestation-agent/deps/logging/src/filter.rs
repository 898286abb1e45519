//! `RUST_LOG`-style filters: `level` and `target=level` directives, comma-separated.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;

/// The level names, in the order `trace` (most) to `off` (nothing).
const LEVELS: [(&str, LevelFilter); 6] = [
    ("trace", LevelFilter::TRACE),
    ("debug", LevelFilter::DEBUG),
    ("info", LevelFilter::INFO),
    ("warn", LevelFilter::WARN),
    ("error", LevelFilter::ERROR),
    ("off", LevelFilter::OFF),
];

/// Why a filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// No directive at all (an empty string, or an empty one between commas).
    #[error("{filter:?} has an empty directive: write a level (trace, debug, info, warn, error, off) or `target=level`")]
    Empty {
        /// the whole filter
        filter: String,
    },
    /// A directive that is neither a level nor `target=level` with a level.
    #[error("{directive:?} in {filter:?} is not a log level (trace, debug, info, warn, error, off) or a `target=level` directive")]
    BadDirective {
        /// the whole filter
        filter: String,
        /// the refused part
        directive: String,
    },
}

/// A parsed filter: an optional default level and per-target levels (a target matches
/// itself and the module paths below it). Level names are case-insensitive. A bare word
/// that is not a level is refused (tracing would take it as a target name, but
/// `level = "loud"` is a mistake), as are `EnvFilter`'s span and field selectors.
#[derive(Debug, Clone)]
pub struct LogFilter(Targets);

impl LogFilter {
    /// Everything at `level` and above.
    pub(crate) fn level(level: tracing::Level) -> Self {
        Self(Targets::new().with_default(level))
    }

    pub(crate) fn into_targets(self) -> Targets {
        self.0
    }

    #[cfg(test)]
    fn would_enable(&self, target: &str, level: &tracing::Level) -> bool {
        self.0.would_enable(target, level)
    }
}

fn level(word: &str) -> Option<LevelFilter> {
    LEVELS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, level)| *level)
}

/// A Rust module path or crate name (what `target` holds), nothing else.
fn is_target(word: &str) -> bool {
    !word.is_empty()
        && word.split("::").all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

impl FromStr for LogFilter {
    type Err = FilterError;

    fn from_str(filter: &str) -> Result<Self, Self::Err> {
        let mut targets = Targets::new();
        for directive in filter.split(',').map(str::trim) {
            if directive.is_empty() {
                return Err(FilterError::Empty {
                    filter: filter.to_string(),
                });
            }
            let bad = || FilterError::BadDirective {
                filter: filter.to_string(),
                directive: directive.to_string(),
            };
            targets = match directive.split_once('=') {
                None => targets.with_default(level(directive).ok_or_else(bad)?),
                Some((target, word)) => {
                    let target = target.trim();
                    if !is_target(target) {
                        return Err(bad());
                    }
                    targets.with_target(target, level(word.trim()).ok_or_else(bad)?)
                }
            };
        }
        Ok(Self(targets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn parse(text: &str) -> LogFilter {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
    }

    #[test]
    fn levels_and_target_directives_parse() {
        let f = parse("info");
        assert!(f.would_enable("any", &Level::INFO));
        assert!(!f.would_enable("any", &Level::DEBUG));

        let f = parse("warn,attestation_agent=debug, ttrpc = error");
        assert!(f.would_enable("attestation_agent::config", &Level::DEBUG));
        assert!(!f.would_enable("attestation_agent", &Level::TRACE));
        assert!(!f.would_enable("ttrpc::server", &Level::WARN));
        assert!(f.would_enable("ttrpc", &Level::ERROR));
        assert!(f.would_enable("hyper", &Level::WARN));
        assert!(!f.would_enable("hyper", &Level::INFO));

        // targets only: everything else is off
        let f = parse("kbs_protocol=trace");
        assert!(f.would_enable("kbs_protocol::http", &Level::TRACE));
        assert!(!f.would_enable("image_rs", &Level::ERROR));

        let f = parse("off");
        assert!(!f.would_enable("any", &Level::ERROR));
    }

    #[test]
    fn level_names_are_case_insensitive() {
        for (text, on, off) in [
            ("TRACE", Level::TRACE, None),
            ("Debug", Level::DEBUG, Some(Level::TRACE)),
            ("iNfO", Level::INFO, Some(Level::DEBUG)),
            ("WARN", Level::WARN, Some(Level::INFO)),
            ("Error", Level::ERROR, Some(Level::WARN)),
            ("x=DEBUG", Level::DEBUG, Some(Level::TRACE)),
        ] {
            let f = parse(text);
            assert!(f.would_enable("x", &on), "{text}");
            if let Some(off) = off {
                assert!(!f.would_enable("x", &off), "{text}");
            }
        }
        assert!(!parse("OFF").would_enable("x", &Level::ERROR));
    }

    #[test]
    fn garbage_is_refused_with_its_kind() {
        for empty in ["", " ", "info,", ",info", "info,,warn"] {
            assert!(
                matches!(empty.parse::<LogFilter>(), Err(FilterError::Empty { .. })),
                "{empty:?}"
            );
        }
        for (text, part) in [
            ("loud", "loud"),
            ("=info", "=info"),
            ("ttrpc=loud", "ttrpc=loud"),
            ("cdh=", "cdh="),
            ("3", "3"),
            ("a=b=info", "a=b=info"),
            ("info,my crate=debug", "my crate=debug"),
            ("x[{field}]=debug", "x[{field}]=debug"),
            ("x::=debug", "x::=debug"),
            ("x=debug\u{0}", "x=debug\u{0}"),
        ] {
            match text.parse::<LogFilter>() {
                Err(FilterError::BadDirective { directive, .. }) => {
                    assert_eq!(directive, part, "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let long = format!("{}=info", "a".repeat(100_000));
        assert!(long.parse::<LogFilter>().is_ok());
    }
}
