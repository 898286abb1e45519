//! The payload of a sealed secret (spec 5.3): `{"version":"0.1.0","type":"vault"|"envelope",…}`.

use kms::{Annotations, ProviderSettings};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::UnsealError;

/// The only payload version.
pub(super) const SECRET_VERSION: &str = "0.1.0";

/// A secret held by a secret store: `provider` fetches `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultSecret {
    /// what the provider calls the secret (a resource URI for `kbs`)
    pub name: String,
    /// the secret store: `kbs`, `offline_fs`, `aws`, …
    pub provider: String,
    /// public settings of the provider (e.g. `{"region":…}` for `aws`)
    #[serde(default)]
    pub provider_settings: ProviderSettings,
    /// per-secret parameters of the provider
    #[serde(default)]
    pub annotations: Annotations,
}

/// A secret carried encrypted: a data key wrapped by a KMS key (`key_id` at `provider`)
/// encrypts the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSecret {
    /// the KMS key that wrapped the data key
    pub key_id: String,
    /// standard base64 of the wrapped data key
    pub encrypted_key: String,
    /// standard base64 of the encrypted secret
    pub encrypted_data: String,
    /// `A256GCM` or `A256CTR`
    pub wrap_type: String,
    /// standard base64 of the IV of `encrypted_data`
    pub iv: String,
    /// the KMS: `offline_fs`, `aws`, …
    pub provider: String,
    /// public settings of the KMS
    #[serde(default)]
    pub provider_settings: ProviderSettings,
    /// parameters the KMS needs to decrypt (e.g. an encryption context)
    #[serde(default)]
    pub annotations: Annotations,
}

/// What the secret is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SecretContent {
    /// `"type": "vault"`
    Vault(VaultSecret),
    /// `"type": "envelope"`
    Envelope(EnvelopeSecret),
}

/// A sealed secret's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretPayload {
    /// `0.1.0`
    pub version: String,
    /// the secret
    #[serde(flatten)]
    pub content: SecretContent,
}

impl SecretPayload {
    /// A version `0.1.0` payload.
    pub fn new(content: SecretContent) -> Self {
        Self {
            version: SECRET_VERSION.into(),
            content,
        }
    }

    /// Parses a payload, with a distinct error for a missing or unsupported version, a
    /// missing or unknown type, and fields of the wrong shape.
    pub fn parse(bytes: &[u8]) -> Result<Self, UnsealError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| UnsealError::PayloadNotJson(e.to_string()))?;
        let Value::Object(object) = &value else {
            return Err(UnsealError::PayloadNotJson(
                "the payload is not a JSON object".into(),
            ));
        };
        match object.get("version") {
            None => return Err(UnsealError::MissingVersion),
            Some(Value::String(version)) if version == SECRET_VERSION => {}
            Some(Value::String(version)) => {
                return Err(UnsealError::UnsupportedVersion(
                    version.chars().take(32).collect(),
                ))
            }
            Some(other) => return Err(UnsealError::UnsupportedVersion(other.to_string())),
        }
        let kind = match object.get("type") {
            None => return Err(UnsealError::MissingType),
            Some(Value::String(kind)) if kind == "vault" || kind == "envelope" => kind.clone(),
            Some(Value::String(kind)) => {
                return Err(UnsealError::UnknownType(kind.chars().take(32).collect()))
            }
            Some(other) => return Err(UnsealError::UnknownType(other.to_string())),
        };
        serde_json::from_value(value).map_err(|e| UnsealError::InvalidPayload {
            kind,
            reason: e.to_string(),
        })
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(name: &str, provider: &str) -> SecretPayload {
        SecretPayload::new(SecretContent::Vault(VaultSecret {
            name: name.into(),
            provider: provider.into(),
            provider_settings: ProviderSettings::new(),
            annotations: Annotations::new(),
        }))
    }

    #[test]
    fn the_sample_payloads_parse() {
        assert_eq!(
            SecretPayload::parse(include_bytes!("../../tests/data/vault-1.json")).unwrap(),
            vault("xxx", "aliyun")
        );
        assert_eq!(
            SecretPayload::parse(include_bytes!("../../tests/data/vault-2.json")).unwrap(),
            vault("kbs:///one/2/trois", "kbs")
        );
        assert_eq!(
            SecretPayload::parse(include_bytes!("../../tests/data/envelope-1.json")).unwrap(),
            SecretPayload::new(SecretContent::Envelope(EnvelopeSecret {
                key_id: "xxx".into(),
                encrypted_key: "yyy".into(),
                encrypted_data: "zzz".into(),
                wrap_type: "A256GCM".into(),
                iv: "www".into(),
                provider: "aliyun".into(),
                provider_settings: ProviderSettings::new(),
                annotations: Annotations::new(),
            }))
        );
    }

    #[test]
    fn serialization_matches_the_samples() {
        for sample in [
            &include_bytes!("../../tests/data/vault-1.json")[..],
            include_bytes!("../../tests/data/vault-2.json"),
            include_bytes!("../../tests/data/envelope-1.json"),
        ] {
            let parsed = SecretPayload::parse(sample).unwrap();
            let ours: Value = serde_json::from_slice(&parsed.to_json().unwrap()).unwrap();
            let theirs: Value = serde_json::from_slice(sample).unwrap();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn malformed_payloads_have_distinct_errors() {
        let check = |json: &str, expected: &dyn Fn(&UnsealError) -> bool| {
            let err = SecretPayload::parse(json.as_bytes()).unwrap_err();
            assert!(expected(&err), "{json}: {err:?}");
        };
        check("", &|e| matches!(e, UnsealError::PayloadNotJson(_)));
        check(r#"{"version":"0.1.0""#, &|e| {
            matches!(e, UnsealError::PayloadNotJson(_))
        });
        check(r#"["0.1.0","vault"]"#, &|e| {
            matches!(e, UnsealError::PayloadNotJson(_))
        });
        check(r#"{"type":"vault"}"#, &|e| {
            matches!(e, UnsealError::MissingVersion)
        });
        check(
            r#"{"version":"0.2.0","type":"vault"}"#,
            &|e| matches!(e, UnsealError::UnsupportedVersion(v) if v == "0.2.0"),
        );
        check(
            r#"{"version":1,"type":"vault"}"#,
            &|e| matches!(e, UnsealError::UnsupportedVersion(v) if v == "1"),
        );
        check(r#"{"version":"0.1.0"}"#, &|e| {
            matches!(e, UnsealError::MissingType)
        });
        check(
            r#"{"version":"0.1.0","type":"kms"}"#,
            &|e| matches!(e, UnsealError::UnknownType(t) if t == "kms"),
        );
        check(
            r#"{"version":"0.1.0","type":"Vault"}"#,
            &|e| matches!(e, UnsealError::UnknownType(t) if t == "Vault"),
        );
        check(
            r#"{"version":"0.1.0","type":"vault","provider":"kbs"}"#,
            &|e| matches!(e, UnsealError::InvalidPayload { kind, reason } if kind == "vault" && reason.contains("name")),
        );
        check(
            r#"{"version":"0.1.0","type":"vault","name":7,"provider":"kbs"}"#,
            &|e| matches!(e, UnsealError::InvalidPayload { .. }),
        );
        check(
            r#"{"version":"0.1.0","type":"envelope","key_id":"k","provider":"offline_fs"}"#,
            &|e| matches!(e, UnsealError::InvalidPayload { kind, .. } if kind == "envelope"),
        );
        check(
            r#"{"version":"0.1.0","type":"vault","name":"n","provider":"kbs","annotations":[]}"#,
            &|e| matches!(e, UnsealError::InvalidPayload { .. }),
        );
    }

    #[test]
    fn settings_and_annotations_are_optional() {
        let parsed = SecretPayload::parse(
            br#"{"version":"0.1.0","type":"vault","name":"n","provider":"kbs","extra":1}"#,
        )
        .unwrap();
        assert_eq!(parsed, vault("n", "kbs"));
    }
}
