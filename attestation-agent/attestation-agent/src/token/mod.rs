//! GetToken: token plugins chosen by name (`kbs`, `coco_as`), each compiled in by the cargo
//! feature of the same name and configured by `[token_configs.<name>]`.

#[cfg(feature = "coco_as")]
pub(crate) mod coco_as;
#[cfg(feature = "kbs")]
pub(crate) mod kbs;

use std::{collections::HashMap, fmt, str::FromStr};

use crate::AaError;

/// ttRPC request metadata asking GetToken for a token newer than any the caller has seen.
/// The confidential data hub sends it after the KBS refused a cached token with 401;
/// upstream agents ignore metadata, so the request stays wire-compatible.
pub use protos::{TOKEN_REFRESH_METADATA_KEY, TOKEN_REFRESH_METADATA_VALUE};

/// Longest token type echoed back in an error message.
const MAX_ECHOED_TYPE_CHARS: usize = 64;

/// A token plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// `kbs`: an attestation token from the KBS (RCAR) and the TEE key it binds.
    Kbs,
    /// `coco_as`: an attestation token from a CoCo attestation service.
    CocoAs,
}

impl TokenType {
    /// Every token plugin, in the order `--version` lists them.
    pub const ALL: [TokenType; 2] = [TokenType::Kbs, TokenType::CocoAs];

    /// The name callers pass to GetToken (also the cargo feature and config section).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Kbs => "kbs",
            TokenType::CocoAs => "coco_as",
        }
    }

    /// Whether this build has the plugin.
    pub fn is_compiled(self) -> bool {
        match self {
            TokenType::Kbs => cfg!(feature = "kbs"),
            TokenType::CocoAs => cfg!(feature = "coco_as"),
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenType {
    type Err = AaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TokenType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| AaError::UnknownTokenType {
                token_type: s.chars().take(MAX_ECHOED_TYPE_CHARS).collect(),
            })
    }
}

/// The token plugins compiled into this build.
pub(crate) fn compiled_token_plugins() -> Vec<TokenType> {
    TokenType::ALL
        .into_iter()
        .filter(|t| t.is_compiled())
        .collect()
}

/// Whether GetToken may answer from its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenRefresh {
    /// A cached token that is still fresh is fine.
    #[default]
    UseCached,
    /// The caller's token was refused: hand back one obtained after this request.
    Force,
}

impl TokenRefresh {
    /// [`TokenRefresh::Force`] when ttRPC request metadata carries
    /// `coco-token-refresh: 1` (key matched case-insensitively).
    pub fn from_metadata(metadata: &HashMap<String, Vec<String>>) -> Self {
        let forced = metadata
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(TOKEN_REFRESH_METADATA_KEY))
            .flat_map(|(_, values)| values)
            .any(|value| value.trim() == TOKEN_REFRESH_METADATA_VALUE);
        if forced {
            TokenRefresh::Force
        } else {
            TokenRefresh::UseCached
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_exactly() {
        assert_eq!("kbs".parse::<TokenType>().unwrap(), TokenType::Kbs);
        assert_eq!("coco_as".parse::<TokenType>().unwrap(), TokenType::CocoAs);
        for bad in ["", "KBS", "coco-as", " kbs", "kbs\0", "offline_fs_kbc"] {
            let err = bad.parse::<TokenType>().unwrap_err();
            assert!(
                matches!(err, AaError::UnknownTokenType { ref token_type } if token_type == bad),
                "{bad:?}"
            );
            assert!(err.to_string().contains("kbs, coco_as"), "{err}");
        }
        // a hostile, huge name is not echoed back whole
        let huge = "x".repeat(100_000);
        let err = huge.parse::<TokenType>().unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn compiled_plugins_follow_the_features() {
        let expected: Vec<TokenType> = [
            (TokenType::Kbs, cfg!(feature = "kbs")),
            (TokenType::CocoAs, cfg!(feature = "coco_as")),
        ]
        .into_iter()
        .filter_map(|(t, on)| on.then_some(t))
        .collect();
        assert_eq!(compiled_token_plugins(), expected);
    }

    #[test]
    fn refresh_only_with_the_documented_metadata() {
        let md = |pairs: &[(&str, &[&str])]| -> HashMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect()
        };
        assert_eq!(
            TokenRefresh::from_metadata(&HashMap::new()),
            TokenRefresh::UseCached
        );
        for forced in [
            md(&[("coco-token-refresh", &["1"])]),
            md(&[("Coco-Token-Refresh", &[" 1 "])]),
            md(&[("coco-token-refresh", &["0", "1"])]),
            md(&[("trace-id", &["x"]), ("coco-token-refresh", &["1"])]),
        ] {
            assert_eq!(
                TokenRefresh::from_metadata(&forced),
                TokenRefresh::Force,
                "{forced:?}"
            );
        }
        for cached in [
            md(&[("coco-token-refresh", &["0"])]),
            md(&[("coco-token-refresh", &[])]),
            md(&[("coco-token-refresh", &["yes"])]),
            md(&[("coco-token-refresh-x", &["1"])]),
            md(&[("refresh", &["1"])]),
        ] {
            assert_eq!(
                TokenRefresh::from_metadata(&cached),
                TokenRefresh::UseCached,
                "{cached:?}"
            );
        }
    }
}
