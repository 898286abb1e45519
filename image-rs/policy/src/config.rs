//! containers-policy.json, parsed as strictly as containers/image does it: `default`
//! required, unknown keys, unknown requirement types and duplicate keys refused, an empty
//! requirement list invalid; plus checks containers/image leaves to evaluation time (key
//! material and identities are validated at load, keyless sigstore is refused with a clear
//! message, a `docker` scope that can never match is an error).

use std::collections::BTreeMap;

use base64::Engine;
use image_rs::Reference;
use serde::Deserialize;
use serde_json::Value;

use crate::cosign::CosignKey;
use crate::gpg::Keyring;
use crate::identity::SignedIdentity;
use crate::{scope, strict};

/// The only transport image-rs pulls through.
pub(crate) const DOCKER_TRANSPORT: &str = "docker";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Option<Vec<RawRequirement>>,
    transports: Option<BTreeMap<String, BTreeMap<String, Vec<RawRequirement>>>>,
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawRequirement {
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything {},
    #[serde(rename = "reject")]
    Reject {},
    #[serde(rename = "signedBy")]
    SignedBy {
        #[serde(rename = "keyType")]
        key_type: String,
        #[serde(rename = "keyPath")]
        key_path: Option<String>,
        #[serde(rename = "keyPaths")]
        key_paths: Option<Vec<String>>,
        #[serde(rename = "keyData")]
        key_data: Option<String>,
        #[serde(rename = "signedIdentity")]
        signed_identity: Option<RawIdentity>,
    },
    #[serde(rename = "sigstoreSigned")]
    SigstoreSigned {
        #[serde(rename = "keyPath")]
        key_path: Option<String>,
        #[serde(rename = "keyPaths")]
        key_paths: Option<Vec<String>>,
        #[serde(rename = "keyData")]
        key_data: Option<String>,
        #[serde(rename = "keyDatas")]
        key_datas: Option<Vec<String>>,
        fulcio: Option<serde::de::IgnoredAny>,
        pki: Option<serde::de::IgnoredAny>,
        #[serde(rename = "rekorPublicKeyPath")]
        rekor_public_key_path: Option<serde::de::IgnoredAny>,
        #[serde(rename = "rekorPublicKeyPaths")]
        rekor_public_key_paths: Option<serde::de::IgnoredAny>,
        #[serde(rename = "rekorPublicKeyData")]
        rekor_public_key_data: Option<serde::de::IgnoredAny>,
        #[serde(rename = "rekorPublicKeyDatas")]
        rekor_public_key_datas: Option<serde::de::IgnoredAny>,
        #[serde(rename = "signedIdentity")]
        signed_identity: Option<RawIdentity>,
    },
    #[serde(rename = "signedBaseLayer")]
    SignedBaseLayer {
        #[serde(rename = "baseLayerIdentity")]
        _base_layer_identity: serde::de::IgnoredAny,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawIdentity {
    #[serde(rename = "matchExact")]
    MatchExact {},
    #[serde(rename = "matchRepoDigestOrExact")]
    MatchRepoDigestOrExact {},
    #[serde(rename = "matchRepository")]
    MatchRepository {},
    #[serde(rename = "exactReference")]
    ExactReference {
        #[serde(rename = "dockerReference")]
        docker_reference: String,
    },
    #[serde(rename = "exactRepository")]
    ExactRepository {
        #[serde(rename = "dockerRepository")]
        docker_repository: String,
    },
    #[serde(rename = "remapIdentity")]
    RemapIdentity {
        prefix: String,
        #[serde(rename = "signedPrefix")]
        signed_prefix: String,
    },
}

/// One requirement of a scope; every requirement of the scope must accept the image.
#[derive(Debug, Clone)]
pub(crate) enum Requirement {
    /// accepts every image
    InsecureAcceptAnything,
    /// refuses every image
    Reject,
    /// a GPG simple signature by one of the keys
    SignedBy {
        /// `keyPath`/`keyPaths`: fetched when needed (and again after the cache TTL)
        key_uris: Vec<String>,
        /// `keyData`: parsed at load
        key_data: Option<Keyring>,
        /// `signedIdentity`
        identity: SignedIdentity,
    },
    /// a cosign signature by one of the keys
    SigstoreSigned {
        /// `keyPath`/`keyPaths`
        key_uris: Vec<String>,
        /// `keyData`/`keyDatas`
        key_data: Vec<CosignKey>,
        /// `signedIdentity`
        identity: SignedIdentity,
    },
}

impl Requirement {
    /// The policy.json type name.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SignedBy { .. } => "signedBy",
            Requirement::SigstoreSigned { .. } => "sigstoreSigned",
        }
    }
}

/// A parsed, validated policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    default: Vec<Requirement>,
    docker: Vec<(String, Vec<Requirement>)>,
}

/// The requirements that apply to one identity and the scope that chose them.
#[derive(Debug)]
pub(crate) struct Selected<'a> {
    /// `transports.docker.<scope>` or `default`
    pub(crate) scope: String,
    /// the requirements
    pub(crate) requirements: &'a [Requirement],
}

fn decode_base64(what: &str, data: &str) -> Result<Vec<u8>, String> {
    let compact: String = data.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("{what} is not base64: {e}"))
}

/// `keyPath` values: a `kbs://` resource URI, a `file://` URL or an absolute path.
fn validate_key_uri(key: &str, value: &str) -> Result<String, String> {
    if value.starts_with("kbs://") || value.starts_with("kbs+") {
        return Ok(value.to_string());
    }
    let path = value.strip_prefix("file://").unwrap_or(value);
    if path.starts_with('/') && !path.split('/').any(|c| c == "..") {
        return Ok(value.to_string());
    }
    Err(format!(
        "{key} {value:?} must be an absolute path, a file:// URL or a kbs:// resource URI"
    ))
}

fn identity(raw: Option<RawIdentity>) -> Result<SignedIdentity, String> {
    let identity = match raw {
        None | Some(RawIdentity::MatchRepoDigestOrExact {}) => {
            SignedIdentity::MatchRepoDigestOrExact
        }
        Some(RawIdentity::MatchExact {}) => SignedIdentity::MatchExact,
        Some(RawIdentity::MatchRepository {}) => SignedIdentity::MatchRepository,
        Some(RawIdentity::ExactReference { docker_reference }) => {
            SignedIdentity::ExactReference(docker_reference)
        }
        Some(RawIdentity::ExactRepository { docker_repository }) => {
            SignedIdentity::ExactRepository(docker_repository)
        }
        Some(RawIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        }) => SignedIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        },
    };
    identity.validate()?;
    Ok(identity)
}

fn key_uris(
    key_path: Option<String>,
    key_paths: Option<Vec<String>>,
) -> Result<Vec<String>, String> {
    let mut uris = Vec::new();
    if let Some(path) = key_path {
        uris.push(validate_key_uri("keyPath", &path)?);
    }
    if let Some(paths) = key_paths {
        if paths.is_empty() {
            return Err("keyPaths is empty".into());
        }
        for path in paths {
            uris.push(validate_key_uri("keyPaths entry", &path)?);
        }
    }
    Ok(uris)
}

fn requirement(raw: RawRequirement) -> Result<Requirement, String> {
    match raw {
        RawRequirement::InsecureAcceptAnything {} => Ok(Requirement::InsecureAcceptAnything),
        RawRequirement::Reject {} => Ok(Requirement::Reject),
        RawRequirement::SignedBy {
            key_type,
            key_path,
            key_paths,
            key_data,
            signed_identity,
        } => {
            match key_type.as_str() {
                "GPGKeys" => {}
                "signedByGPGKeys" | "X509Certificates" | "signedByX509CAs" => {
                    return Err(format!(
                        "signedBy keyType {key_type:?} is refused: containers/image rejects every image under it; use GPGKeys"
                    ))
                }
                other => return Err(format!("signedBy: unknown keyType {other:?}")),
            }
            let sources = [key_path.is_some(), key_paths.is_some(), key_data.is_some()];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(
                    "signedBy: exactly one of keyPath, keyPaths and keyData must be specified"
                        .into(),
                );
            }
            let key_data = match key_data {
                Some(data) => {
                    let bytes = decode_base64("signedBy keyData", &data)?;
                    Some(Keyring::parse(&bytes).map_err(|e| format!("signedBy keyData: {e}"))?)
                }
                None => None,
            };
            Ok(Requirement::SignedBy {
                key_uris: key_uris(key_path, key_paths).map_err(|e| format!("signedBy: {e}"))?,
                key_data,
                identity: identity(signed_identity)
                    .map_err(|e| format!("signedBy signedIdentity: {e}"))?,
            })
        }
        RawRequirement::SigstoreSigned {
            key_path,
            key_paths,
            key_data,
            key_datas,
            fulcio,
            pki,
            rekor_public_key_path,
            rekor_public_key_paths,
            rekor_public_key_data,
            rekor_public_key_datas,
            signed_identity,
        } => {
            if fulcio.is_some() || pki.is_some() {
                return Err(
                    "sigstoreSigned: keyless verification (fulcio, pki) is not supported: trust a public key with keyPath or keyData"
                        .into(),
                );
            }
            if rekor_public_key_path.is_some()
                || rekor_public_key_paths.is_some()
                || rekor_public_key_data.is_some()
                || rekor_public_key_datas.is_some()
            {
                return Err(
                    "sigstoreSigned: Rekor transparency-log verification (rekorPublicKey*) is not supported: remove it to verify with the public key alone"
                        .into(),
                );
            }
            let sources = [
                key_path.is_some(),
                key_paths.is_some(),
                key_data.is_some(),
                key_datas.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(
                    "sigstoreSigned: exactly one of keyPath, keyPaths, keyData and keyDatas must be specified".into(),
                );
            }
            let mut keys = Vec::new();
            let datas = key_data
                .into_iter()
                .chain(key_datas.iter().flatten().cloned());
            if key_datas.as_ref().is_some_and(Vec::is_empty) {
                return Err("sigstoreSigned: keyDatas is empty".into());
            }
            for data in datas {
                let pem =
                    decode_base64("sigstoreSigned keyData (base64 of a PEM public key)", &data)?;
                keys.push(
                    CosignKey::parse_pem(&pem)
                        .map_err(|e| format!("sigstoreSigned keyData: {e}"))?,
                );
            }
            Ok(Requirement::SigstoreSigned {
                key_uris: key_uris(key_path, key_paths)
                    .map_err(|e| format!("sigstoreSigned: {e}"))?,
                key_data: keys,
                identity: identity(signed_identity)
                    .map_err(|e| format!("sigstoreSigned signedIdentity: {e}"))?,
            })
        }
        RawRequirement::SignedBaseLayer { .. } => {
            Err("signedBaseLayer is refused: containers/image rejects every image under it".into())
        }
    }
}

fn requirements(location: &str, raw: Vec<RawRequirement>) -> Result<Vec<Requirement>, String> {
    if raw.is_empty() {
        return Err(format!(
            "{location}: the list of requirements must not be empty"
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| requirement(r).map_err(|e| format!("{location}[{i}]: {e}")))
        .collect()
}

/// Every requirement and identity must be a JSON object (serde would also take arrays).
fn check_requirement_shapes(list: &Value, location: &str) -> Result<(), String> {
    for (i, requirement) in list.as_array().into_iter().flatten().enumerate() {
        let what = format!("{location}[{i}]");
        let fields = strict::object(requirement, &what)?;
        if let Some(identity) = fields.get("signedIdentity") {
            strict::object(identity, &format!("{what}.signedIdentity"))?;
        }
    }
    Ok(())
}

fn check_shapes(document: &Value) -> Result<(), String> {
    let top = strict::object(document, "the policy")?;
    if let Some(default) = top.get("default") {
        check_requirement_shapes(default, "default")?;
    }
    if let Some(transports) = top.get("transports") {
        for (transport, scopes) in strict::object(transports, "transports")? {
            for (scope_key, list) in strict::object(scopes, &format!("transports.{transport}"))? {
                check_requirement_shapes(list, &format!("transports.{transport}.{scope_key:?}"))?;
            }
        }
    }
    Ok(())
}

impl Policy {
    /// Parses and validates a policy.json document.
    pub(crate) fn parse(json: &[u8]) -> Result<Self, String> {
        let document = strict::parse_json(json)?;
        check_shapes(&document)?;
        let raw: RawPolicy = serde_json::from_value(document).map_err(|e| e.to_string())?;
        let default = requirements(
            "default",
            raw.default
                .ok_or_else(|| "the default policy is missing (\"default\")".to_string())?,
        )?;
        let mut docker = Vec::new();
        for (transport, scopes) in raw.transports.unwrap_or_default() {
            for (scope_key, raw_requirements) in scopes {
                let location = format!("transports.{transport}.{scope_key:?}");
                let parsed = requirements(&location, raw_requirements)?;
                if transport == DOCKER_TRANSPORT {
                    scope::validate_docker_scope(&scope_key)
                        .map_err(|e| format!("transports.docker: {e}"))?;
                    docker.push((scope_key, parsed));
                }
            }
        }
        Ok(Self { default, docker })
    }

    /// Every requirement of the `docker` transport and of `default`.
    pub(crate) fn all_requirements(&self) -> impl Iterator<Item = &Requirement> {
        self.default
            .iter()
            .chain(self.docker.iter().flat_map(|(_, r)| r.iter()))
    }

    fn scope(&self, key: &str) -> Option<&[Requirement]> {
        self.docker
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.as_slice())
    }

    /// The requirements for an image pulled as `reference`: for each exact identity of it
    /// (one, or two for a tag and digest reference), the most specific scope.
    pub(crate) fn select(&self, reference: &Reference) -> Vec<Selected<'_>> {
        let namespaces = scope::namespaces(&reference.name());
        let mut out: Vec<Selected<'_>> = Vec::new();
        for identity in scope::identities(reference) {
            let found = std::iter::once(&identity)
                .chain(namespaces.iter())
                .chain(std::iter::once(&String::new()))
                .find_map(|key| {
                    self.scope(key)
                        .map(|r| (format!("transports.docker.{key:?}"), r))
                });
            let (scope, requirements) =
                found.unwrap_or_else(|| ("default".to_string(), &self.default));
            if !out.iter().any(|s| s.scope == scope) {
                out.push(Selected {
                    scope,
                    requirements,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_of(policy: &Policy, reference: &str) -> Vec<String> {
        policy
            .select(&Reference::parse(reference).unwrap())
            .into_iter()
            .map(|s| s.scope)
            .collect()
    }

    #[test]
    fn scopes_take_precedence_from_specific_to_general() {
        let policy = Policy::parse(
            br#"{
              "default": [{"type": "reject"}],
              "transports": {
                "docker": {
                  "quay.io/org/app:v1": [{"type": "insecureAcceptAnything"}],
                  "quay.io/org/app": [{"type": "reject"}],
                  "quay.io/org": [{"type": "insecureAcceptAnything"}],
                  "quay.io": [{"type": "reject"}],
                  "*.example.com": [{"type": "insecureAcceptAnything"}],
                  "*.com": [{"type": "reject"}],
                  "": [{"type": "insecureAcceptAnything"}]
                },
                "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}
              }
            }"#,
        )
        .unwrap();
        assert_eq!(
            scope_of(&policy, "quay.io/org/app:v1"),
            [r#"transports.docker."quay.io/org/app:v1""#]
        );
        assert_eq!(
            scope_of(&policy, "quay.io/org/app:v2"),
            [r#"transports.docker."quay.io/org/app""#]
        );
        assert_eq!(
            scope_of(&policy, "quay.io/org/other/x:v2"),
            [r#"transports.docker."quay.io/org""#]
        );
        assert_eq!(
            scope_of(&policy, "quay.io/else:v1"),
            [r#"transports.docker."quay.io""#]
        );
        assert_eq!(
            scope_of(&policy, "reg.example.com:5000/a:v1"),
            [r#"transports.docker."*.example.com""#]
        );
        assert_eq!(
            scope_of(&policy, "a.b.example.com/x:v1"),
            [r#"transports.docker."*.example.com""#]
        );
        assert_eq!(
            scope_of(&policy, "other.com/x:v1"),
            [r#"transports.docker."*.com""#]
        );
        assert_eq!(scope_of(&policy, "busybox"), [r#"transports.docker."""#]);
        let d = format!("sha256:{}", "f".repeat(64));
        assert_eq!(
            scope_of(&policy, &format!("quay.io/org/app:v1@{d}")),
            [
                r#"transports.docker."quay.io/org/app:v1""#,
                r#"transports.docker."quay.io/org/app""#
            ]
        );
        let only_default =
            Policy::parse(br#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        assert_eq!(scope_of(&only_default, "quay.io/x:y"), ["default"]);
    }

    #[test]
    fn requirements_parse_with_defaults() {
        let key = base64::engine::general_purpose::STANDARD.encode(
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEV4XAyO8AORhG/eFbPrfegV9A6KEg\n1hbQaGTg+BTLMe18ShvY8hUTYbcP2BdsrUpR4wMdHgOgoT0jl55KsnC7vA==\n-----END PUBLIC KEY-----\n",
        );
        let policy = Policy::parse(
            format!(
                r#"{{"default":[
                  {{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/keys/a.gpg"}},
                  {{"type":"signedBy","keyType":"GPGKeys","keyPaths":["kbs:///default/gpg/1","file:///k.gpg"],
                    "signedIdentity":{{"type":"remapIdentity","prefix":"mirror.local","signedPrefix":"quay.io"}}}},
                  {{"type":"sigstoreSigned","keyData":"{key}","signedIdentity":{{"type":"matchRepository"}}}},
                  {{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign/pub"}}
                ]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let Requirement::SignedBy {
            key_uris, identity, ..
        } = &policy.default[0]
        else {
            panic!()
        };
        assert_eq!(key_uris, &["/etc/keys/a.gpg"]);
        assert_eq!(identity, &SignedIdentity::MatchRepoDigestOrExact);
        let Requirement::SignedBy {
            key_uris, identity, ..
        } = &policy.default[1]
        else {
            panic!()
        };
        assert_eq!(key_uris, &["kbs:///default/gpg/1", "file:///k.gpg"]);
        assert!(matches!(identity, SignedIdentity::RemapIdentity { .. }));
        let Requirement::SigstoreSigned {
            key_data, identity, ..
        } = &policy.default[2]
        else {
            panic!()
        };
        assert_eq!(key_data.len(), 1);
        assert_eq!(identity, &SignedIdentity::MatchRepository);
        let Requirement::SigstoreSigned {
            key_uris, identity, ..
        } = &policy.default[3]
        else {
            panic!()
        };
        assert_eq!(key_uris, &["kbs:///default/cosign/pub"]);
        assert_eq!(identity, &SignedIdentity::MatchRepoDigestOrExact);
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        let accept = r#"[{"type":"insecureAcceptAnything"}]"#;
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "EOF"),
            ("{".into(), "EOF"),
            ("[]".into(), "must be a JSON object"),
            (r#"[[{"type":"reject"}]]"#.into(), "must be a JSON object"),
            (r#"{"default":[["reject"]]}"#.into(), "must be a JSON object"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":["matchExact"]}]}"#.into(), "must be a JSON object"),
            ("{}".into(), "default policy is missing"),
            (r#"{"default":[]}"#.into(), "must not be empty"),
            (format!(r#"{{"default":{accept},"transports":{{"docker":{{"quay.io":[]}}}}}}"#), "must not be empty"),
            (format!(r#"{{"default":{accept},"extra":1}}"#), "unknown field"),
            (format!(r#"{{"default":{accept},"default":{accept}}}"#), "duplicate key"),
            (
                format!(r#"{{"default":{accept},"transports":{{"docker":{{"quay.io":{accept},"quay.io":{accept}}}}}}}"#),
                "duplicate key",
            ),
            (
                format!(r#"{{"default":{accept},"transports":{{"docker":{{}},"docker":{{}}}}}}"#),
                "duplicate key",
            ),
            (r#"{"default":[{"type":"acceptEverything"}]}"#.into(), "unknown variant"),
            (r#"{"default":[{}]}"#.into(), "missing field `type`"),
            (r#"{"default":[{"type":"reject","keyPath":"/x"}]}"#.into(), "unknown field"),
            (r#"{"default":[{"type":"insecureAcceptAnything","type":"reject"}]}"#.into(), "duplicate"),
            (r#"{"default":[{"type":"signedBy","keyPath":"/k"}]}"#.into(), "keyType"),
            (r#"{"default":[{"type":"signedBy","keyType":"X509Certificates","keyPath":"/k"}]}"#.into(), "is refused"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPG","keyPath":"/k"}]}"#.into(), "unknown keyType"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}"#.into(), "exactly one"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","keyData":"AA=="}]}"#.into(), "exactly one"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"relative.gpg"}]}"#.into(), "absolute path"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a/../etc/shadow"}]}"#.into(), "absolute path"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPaths":[]}]}"#.into(), "empty"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":5}]}"#.into(), "invalid type"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyData":"%%%"}]}"#.into(), "base64"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyData":"AAAA"}]}"#.into(), "keyData"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":{"type":"matchAll"}}]}"#.into(), "unknown variant"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":{"type":"exactReference"}}]}"#.into(), "dockerReference"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":{"type":"exactReference","dockerReference":"quay.io/x"}}]}"#.into(), "neither a tag"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":{"type":"matchExact","x":1}}]}"#.into(), "unknown field"),
            (r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":{"type":"remapIdentity","prefix":"busybox","signedPrefix":"quay.io"}}]}"#.into(), "prefix"),
            (r#"{"default":[{"type":"sigstoreSigned","fulcio":{"caPath":"/x"},"rekorPublicKeyPath":"/r"}]}"#.into(), "keyless"),
            (r#"{"default":[{"type":"sigstoreSigned","keyPath":"/k","rekorPublicKeyPath":"/r"}]}"#.into(), "Rekor"),
            (r#"{"default":[{"type":"sigstoreSigned","keyPath":"/k","keyData":"AA=="}]}"#.into(), "exactly one"),
            (r#"{"default":[{"type":"sigstoreSigned"}]}"#.into(), "exactly one"),
            (r#"{"default":[{"type":"sigstoreSigned","keyData":"bm90IGEga2V5"}]}"#.into(), "PEM"),
            (r#"{"default":[{"type":"sigstoreSigned","keyDatas":[]}]}"#.into(), "empty"),
            (r#"{"default":[{"type":"sigstoreSigned","keyPath":"/k","bogus":true}]}"#.into(), "unknown field"),
            (r#"{"default":[{"type":"signedBaseLayer","baseLayerIdentity":{"type":"matchExact"}}]}"#.into(), "is refused"),
            (format!(r#"{{"default":{accept},"transports":{{"docker":{{"busybox":{accept}}}}}}}"#), "registry host"),
            (format!(r#"{{"default":{accept},"transports":{{"docker":{{"docker.io/busybox:1":{accept}}}}}}}"#), "never matches"),
            (format!(r#"{{"default":{accept},"transports":{{"docker":{{"*.x.com/ns":{accept}}}}}}}"#), "wildcard"),
            (format!(r#"{{"default":{accept},"transports":{{"oci":{{"":[{{"type":"bogus"}}]}}}}}}"#), "unknown variant"),
            (format!(r#"{{"default":{accept},"transports":5}}"#), "a JSON object"),
        ];
        for (json, expected) in cases {
            let err = Policy::parse(json.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
        }
        assert!(Policy::parse(&[0xff, 0xfe]).is_err());
    }
}
