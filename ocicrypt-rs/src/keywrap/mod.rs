//! Key wrappers: each protects the private layer options for its recipients and stores the
//! result in its own annotation, `org.opencontainers.image.enc.keys.<scheme>`, as
//! comma-separated base64 values (one per wrapping).

#[cfg(feature = "keywrap-jwe")]
pub mod jwe;
#[cfg(feature = "keywrap-keyprovider")]
pub mod keyprovider;
#[cfg(feature = "keywrap-pkcs7")]
pub mod pkcs7;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use zeroize::Zeroizing;

use crate::bytes::{decode_b64, STD};
use crate::error::{Error, Result, UnwrapAttempt};
use crate::spec::ANNOTATION_KEYS_PREFIX;

/// Most wrapped keys accepted in one annotation.
pub const MAX_WRAPPED_KEYS_PER_ANNOTATION: usize = 256;
/// Largest annotation value accepted for wrapped keys.
pub const MAX_WRAPPED_KEYS_ANNOTATION_LEN: usize = 4 * 1024 * 1024;

/// One key wrapping scheme with its keys.
#[async_trait::async_trait]
pub trait KeyWrapper: Send + Sync + std::fmt::Debug {
    /// The scheme: `jwe`, `pkcs7` or `provider.<name>`.
    fn scheme(&self) -> &str;

    /// The annotation this wrapper reads and writes.
    fn annotation(&self) -> String {
        format!("{ANNOTATION_KEYS_PREFIX}{}", self.scheme())
    }

    /// Whether this wrapper has recipients to wrap for.
    fn can_wrap(&self) -> bool;

    /// Whether this wrapper has the means (keys, a provider) to unwrap.
    fn can_unwrap(&self) -> bool;

    /// Wraps the private options JSON for all recipients; the bytes are base64-encoded
    /// into the annotation.
    async fn wrap_keys(&self, opts_data: &[u8]) -> Result<Vec<u8>>;

    /// Unwraps one (base64-decoded) annotation value into the private options JSON.
    async fn unwrap_key(&self, packet: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
}

/// The wrapped keys one annotation carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKeys {
    /// annotation name
    pub annotation: String,
    /// scheme (annotation name without the prefix)
    pub scheme: String,
    /// the base64-decoded values, in order
    pub packets: Vec<Vec<u8>>,
}

fn valid_scheme(scheme: &str) -> bool {
    !scheme.is_empty()
        && scheme.len() <= 128
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Reads every `org.opencontainers.image.enc.keys.*` annotation into its packets.
pub fn parse_wrapped_keys<I, K, V>(annotations: I) -> Result<Vec<WrappedKeys>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = Vec::new();
    for (name, value) in annotations {
        let (name, value) = (name.as_ref(), value.as_ref());
        let Some(scheme) = name.strip_prefix(ANNOTATION_KEYS_PREFIX) else {
            continue;
        };
        let invalid = |reason: String| Error::InvalidAnnotation {
            annotation: name.chars().take(200).collect(),
            reason,
        };
        if !valid_scheme(scheme) {
            return Err(invalid(
                "the scheme is empty or has characters outside [A-Za-z0-9._-]".into(),
            ));
        }
        if value.len() > MAX_WRAPPED_KEYS_ANNOTATION_LEN {
            return Err(invalid(format!(
                "{} bytes, more than the {MAX_WRAPPED_KEYS_ANNOTATION_LEN} accepted",
                value.len()
            )));
        }
        let mut packets = Vec::new();
        for (index, part) in value.split(',').enumerate() {
            if index >= MAX_WRAPPED_KEYS_PER_ANNOTATION {
                return Err(invalid(format!(
                    "more than {MAX_WRAPPED_KEYS_PER_ANNOTATION} wrapped keys"
                )));
            }
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            packets.push(
                decode_b64(part).ok_or_else(|| invalid(format!("value {index} is not base64")))?,
            );
        }
        if packets.is_empty() {
            continue;
        }
        out.push(WrappedKeys {
            annotation: name.to_string(),
            scheme: scheme.to_string(),
            packets,
        });
    }
    Ok(out)
}

/// The key wrappers in use, tried in the order they were added.
#[derive(Debug, Default, Clone)]
pub struct KeyWrappers {
    wrappers: Vec<Arc<dyn KeyWrapper>>,
}

impl KeyWrappers {
    /// No wrappers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a wrapper.
    pub fn add(&mut self, wrapper: impl KeyWrapper + 'static) -> &mut Self {
        self.wrappers.push(Arc::new(wrapper));
        self
    }

    /// Adds a shared wrapper.
    pub fn add_shared(&mut self, wrapper: Arc<dyn KeyWrapper>) -> &mut Self {
        self.wrappers.push(wrapper);
        self
    }

    /// The wrappers.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn KeyWrapper>> {
        self.wrappers.iter()
    }

    /// Wraps `opts_data` with every wrapper that has recipients, appending to any wrapped
    /// keys already in `existing` (comma-separated), and returns the annotations to set.
    pub async fn wrap(
        &self,
        opts_data: &[u8],
        existing: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for wrapper in self.wrappers.iter().filter(|w| w.can_wrap()) {
            let annotation = wrapper.annotation();
            let wrapped = STD.encode(wrapper.wrap_keys(opts_data).await?);
            let value = match out.get(&annotation).or(existing.get(&annotation)) {
                Some(prev) if !prev.is_empty() => format!("{prev},{wrapped}"),
                _ => wrapped,
            };
            out.insert(annotation, value);
        }
        if out.is_empty() {
            return Err(Error::NoRecipients);
        }
        Ok(out)
    }

    /// Unwraps the private options JSON from a layer's annotations with the first wrapper
    /// and wrapped key that work.
    pub async fn unwrap<I, K, V>(&self, annotations: I) -> Result<Zeroizing<Vec<u8>>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let wrapped = parse_wrapped_keys(annotations)?;
        let mut attempts = Vec::new();
        for wrapper in self.wrappers.iter().filter(|w| w.can_unwrap()) {
            let scheme = wrapper.scheme();
            for keys in wrapped.iter().filter(|k| k.scheme == scheme) {
                for (index, packet) in keys.packets.iter().enumerate() {
                    match wrapper.unwrap_key(packet).await {
                        Ok(opts) => return Ok(opts),
                        Err(error) => {
                            tracing::debug!(annotation = %keys.annotation, index, %error, "wrapped key did not unwrap");
                            attempts.push(UnwrapAttempt {
                                annotation: keys.annotation.clone(),
                                index,
                                error: Box::new(error),
                            });
                        }
                    }
                }
            }
        }
        if attempts.is_empty() {
            return Err(Error::NoMatchingKeyWrapper {
                present: wrapped.into_iter().map(|k| k.annotation).collect(),
            });
        }
        Err(Error::KeyUnwrap { attempts })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wrapped_keys_parse_comma_separated_values() {
        let mut a = BTreeMap::new();
        a.insert(
            "org.opencontainers.image.enc.keys.jwe".to_string(),
            "AQI=, AwQ=".to_string(),
        );
        a.insert(
            "org.opencontainers.image.enc.keys.provider.attestation-agent".to_string(),
            "BQ==".to_string(),
        );
        a.insert(
            "org.opencontainers.image.enc.pubopts".to_string(),
            "e30=".to_string(),
        );
        a.insert("other".to_string(), "x".to_string());
        let parsed = parse_wrapped_keys(&a).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].scheme, "jwe");
        assert_eq!(parsed[0].packets, vec![vec![1, 2], vec![3, 4]]);
        assert_eq!(parsed[1].scheme, "provider.attestation-agent");
    }

    #[test]
    fn wrapped_keys_reject_bad_annotations() {
        let bad = |k: &str, v: &str| parse_wrapped_keys([(k, v)]);
        assert!(matches!(
            bad("org.opencontainers.image.enc.keys.jwe", "!!"),
            Err(Error::InvalidAnnotation { .. })
        ));
        assert!(matches!(
            bad("org.opencontainers.image.enc.keys.", "AA=="),
            Err(Error::InvalidAnnotation { .. })
        ));
        assert!(matches!(
            bad("org.opencontainers.image.enc.keys.a/../b", "AA=="),
            Err(Error::InvalidAnnotation { .. })
        ));
        let many = vec!["AA=="; MAX_WRAPPED_KEYS_PER_ANNOTATION + 1].join(",");
        assert!(matches!(
            bad("org.opencontainers.image.enc.keys.jwe", &many),
            Err(Error::InvalidAnnotation { .. })
        ));
        let huge = "A".repeat(MAX_WRAPPED_KEYS_ANNOTATION_LEN + 1);
        assert!(matches!(
            bad("org.opencontainers.image.enc.keys.jwe", &huge),
            Err(Error::InvalidAnnotation { .. })
        ));
        assert!(bad("org.opencontainers.image.enc.keys.jwe", ",,")
            .unwrap()
            .is_empty());
    }
}
