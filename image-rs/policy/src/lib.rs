//! The image signature policy of the guest: containers-policy.json evaluated as
//! containers/image does, plugged into image-rs through
//! [`image_rs::SignaturePolicy`].
//!
//! - Requirements: `insecureAcceptAnything`, `reject`, `signedBy` (GPG simple signing,
//!   verified with rPGP: primary keys and signing subkeys) and `sigstoreSigned` (cosign
//!   with a public key: ECDSA P-256/P-384, Ed25519, RSA). Keyless sigstore is refused when
//!   the policy is loaded.
//! - Scopes of `transports.docker`: exact reference, repository, parent namespaces, host,
//!   `*.domain`, `""`, then `default`. Every requirement of the chosen scope must pass.
//! - Each pull is judged for the reference the caller asked for **and** for the reference
//!   actually pulled (mirror, remapped location, search registry): both must be accepted.
//!   A reference with both a tag and a digest is judged under both identities.
//! - GPG signatures come from registries.d lookaside stores (`file://`, `http(s)://`) and
//!   the registry signature extension; cosign signatures from the `sha256-<hex>.sig` tag.
//!   A signature is accepted for the manifest digest, or for the digest of the index the
//!   manifest was selected from.
//! - Documents and keys fetched by URI (`kbs://` through the CDH, or local files) are
//!   reused for a bounded time ([`PolicyOptions::resource_ttl`]) and then fetched again.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use image_policy::{ContainersPolicy, DocumentSource, PolicyOptions};
//! let options = PolicyOptions::new(DocumentSource::Uri("kbs:///default/security-policy/test".into()));
//! let policy = ContainersPolicy::new(options, Arc::new(image_rs::LocalResources))?;
//! let client = image_rs::ImageClient::new(image_rs::ImageConfig::default())
//!     .await?
//!     .with_signature_policy(Arc::new(policy));
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod cache;
mod config;
mod cosign;
mod fetch;
mod gpg;
mod identity;
mod payload;
mod registries_d;
mod scope;
mod strict;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use image_rs::ImageConfig;
use image_rs::Reference;
use image_rs::ResourceProvider;
use image_rs::{Digest, Hasher};
use image_rs::{PolicyError, PolicyRequest, SignaturePolicy};
use tokio::sync::OnceCell;

use crate::cache::{Resources, TtlCache};
use crate::config::{Policy, Requirement};
use crate::cosign::CosignKey;
use crate::fetch::{CosignSignature, Found, SignatureFetcher};
use crate::gpg::Keyring;
use crate::identity::{DockerRef, SignedIdentity};
use crate::registries_d::RegistriesD;

/// How long fetched documents and keys are reused by default.
pub const DEFAULT_RESOURCE_TTL: Duration = Duration::from_secs(300);

/// Where a configuration document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentSource {
    /// the document itself
    Inline(String),
    /// a `kbs://` resource URI, a `file://` URL or an absolute path, fetched when needed
    /// and again after [`PolicyOptions::resource_ttl`]
    Uri(String),
}

/// Everything the policy needs besides the resource provider.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// containers-policy.json (`image_security_policy[_uri]`)
    pub policy: DocumentSource,
    /// registries.d YAML documents (`sigstore_config[_uri]`): lookaside stores
    pub registries_d: Vec<DocumentSource>,
    /// how long documents and keys fetched by URI are reused (also how long a registry's
    /// support of the signature extension is remembered)
    pub resource_ttl: Duration,
}

impl PolicyOptions {
    /// Options with `policy`, no lookaside configuration and the default TTL.
    pub fn new(policy: DocumentSource) -> Self {
        Self {
            policy,
            registries_d: Vec::new(),
            resource_ttl: DEFAULT_RESOURCE_TTL,
        }
    }

    /// The options the CDH `[image]` section asks for, or `None` when it configures no
    /// policy (then every image is accepted, as upstream). `image_security_policy_uri`
    /// wins over `image_security_policy`, `sigstore_config_uri` over `sigstore_config`.
    /// Registries and lookaside servers are reached with the settings of each pull
    /// (insecure registries, credentials, proxies, extra root certificates: see
    /// [`image_rs::PolicyRequest::repository`]), so nothing else is taken over.
    pub fn from_image_config(config: &ImageConfig) -> Option<Self> {
        let policy = match (
            &config.image_security_policy_uri,
            &config.image_security_policy,
        ) {
            (Some(uri), _) => DocumentSource::Uri(uri.clone()),
            (None, Some(inline)) => DocumentSource::Inline(inline.clone()),
            (None, None) => return None,
        };
        let registries_d = match (&config.sigstore_config_uri, &config.sigstore_config) {
            (Some(uri), _) => vec![DocumentSource::Uri(uri.clone())],
            (None, Some(inline)) => vec![DocumentSource::Inline(inline.clone())],
            (None, None) => Vec::new(),
        };
        Some(Self {
            policy,
            registries_d,
            resource_ttl: DEFAULT_RESOURCE_TTL,
        })
    }
}

/// Why a policy could not be set up or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyLoadError {
    /// the policy document is invalid
    #[error("invalid signature policy ({source_name}): {message}")]
    Policy {
        /// inline or the URI
        source_name: String,
        /// what is wrong
        message: String,
    },
    /// a registries.d document is invalid
    #[error("invalid sigstore/registries.d configuration ({source_name}): {message}")]
    RegistriesD {
        /// inline or the URI
        source_name: String,
        /// what is wrong
        message: String,
    },
    /// a key named by the policy cannot be fetched or parsed
    #[error("signature policy key {uri}: {message}")]
    Key {
        /// the key URI
        uri: String,
        /// what is wrong
        message: String,
    },
    /// a document could not be fetched
    #[error("cannot fetch {uri}: {message}")]
    Fetch {
        /// the URI
        uri: String,
        /// the provider's message
        message: String,
    },
}

/// containers-policy.json as a [`SignaturePolicy`] for image-rs.
#[derive(Debug)]
pub struct ContainersPolicy {
    options: PolicyOptions,
    resources: Resources,
    fetcher: SignatureFetcher,
    inline_policy: Option<Arc<Policy>>,
    policies: TtlCache<Policy>,
    registries: TtlCache<RegistriesD>,
    gpg_keys: TtlCache<Keyring>,
    cosign_keys: TtlCache<CosignKey>,
}

fn source_name(source: &DocumentSource) -> String {
    match source {
        DocumentSource::Inline(_) => "inline".into(),
        DocumentSource::Uri(uri) => uri.clone(),
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

impl ContainersPolicy {
    /// Sets the policy up. Inline documents are validated now; documents and keys named
    /// by URI are fetched at the first pull (or by [`ContainersPolicy::preload`]), so a
    /// KBS that is not reachable yet does not stop the caller from starting.
    pub fn new(
        options: PolicyOptions,
        resources: Arc<dyn ResourceProvider>,
    ) -> Result<Self, PolicyLoadError> {
        let inline_policy = match &options.policy {
            DocumentSource::Inline(text) => Some(Arc::new(
                Policy::parse(text.as_bytes()).map_err(|message| PolicyLoadError::Policy {
                    source_name: "inline".into(),
                    message,
                })?,
            )),
            DocumentSource::Uri(_) => None,
        };
        for source in &options.registries_d {
            if let DocumentSource::Inline(text) = source {
                RegistriesD::parse(text).map_err(|message| PolicyLoadError::RegistriesD {
                    source_name: "inline".into(),
                    message,
                })?;
            }
        }
        let ttl = options.resource_ttl;
        Ok(Self {
            resources: Resources::new(resources),
            fetcher: SignatureFetcher::new(ttl),
            inline_policy,
            policies: TtlCache::new(ttl),
            registries: TtlCache::new(ttl),
            gpg_keys: TtlCache::new(ttl),
            cosign_keys: TtlCache::new(ttl),
            options,
        })
    }

    /// Fetches and validates now every document and key the policy names (useful at
    /// startup to report configuration errors early).
    pub async fn preload(&self) -> Result<(), PolicyLoadError> {
        let policy = self.policy().await?;
        self.registries_d().await?;
        let mut gpg_uris = BTreeSet::new();
        let mut cosign_uris = BTreeSet::new();
        for requirement in policy.all_requirements() {
            match requirement {
                Requirement::SignedBy { key_uris, .. } => gpg_uris.extend(key_uris.iter().cloned()),
                Requirement::SigstoreSigned { key_uris, .. } => {
                    cosign_uris.extend(key_uris.iter().cloned())
                }
                _ => {}
            }
        }
        for uri in &gpg_uris {
            self.gpg_key(uri).await?;
        }
        for uri in &cosign_uris {
            self.cosign_key(uri).await?;
        }
        Ok(())
    }

    async fn fetch(&self, uri: &str) -> Result<Vec<u8>, PolicyLoadError> {
        self.resources
            .fetch(uri)
            .await
            .map_err(|message| PolicyLoadError::Fetch {
                uri: uri.to_string(),
                message,
            })
    }

    async fn policy(&self) -> Result<Arc<Policy>, PolicyLoadError> {
        let uri = match (&self.inline_policy, &self.options.policy) {
            (Some(policy), _) => return Ok(policy.clone()),
            (None, DocumentSource::Uri(uri)) => uri.as_str(),
            (None, DocumentSource::Inline(_)) => "inline",
        };
        self.policies
            .get_or_load(uri, || async {
                let bytes = self.fetch(uri).await?;
                Policy::parse(&bytes).map_err(|message| PolicyLoadError::Policy {
                    source_name: uri.to_string(),
                    message,
                })
            })
            .await
    }

    async fn registries_d(&self) -> Result<Arc<RegistriesD>, PolicyLoadError> {
        self.registries
            .get_or_load("registries.d", || async {
                let mut merged = RegistriesD::default();
                for source in &self.options.registries_d {
                    let name = source_name(source);
                    let invalid = |message: String| PolicyLoadError::RegistriesD {
                        source_name: name.clone(),
                        message,
                    };
                    let text = match source {
                        DocumentSource::Inline(text) => text.clone(),
                        DocumentSource::Uri(uri) => {
                            utf8(self.fetch(uri).await?).map_err(invalid)?
                        }
                    };
                    RegistriesD::parse(&text)
                        .and_then(|doc| merged.merge(doc))
                        .map_err(invalid)?;
                }
                Ok(merged)
            })
            .await
    }

    async fn gpg_key(&self, uri: &str) -> Result<Arc<Keyring>, PolicyLoadError> {
        self.gpg_keys
            .get_or_load(uri, || async {
                let bytes = self.fetch(uri).await.map_err(|e| e.to_string())?;
                Keyring::parse(&bytes)
            })
            .await
            .map_err(|message| PolicyLoadError::Key {
                uri: uri.to_string(),
                message,
            })
    }

    async fn cosign_key(&self, uri: &str) -> Result<Arc<CosignKey>, PolicyLoadError> {
        self.cosign_keys
            .get_or_load(uri, || async {
                let bytes = self.fetch(uri).await.map_err(|e| e.to_string())?;
                CosignKey::parse_pem(&bytes)
            })
            .await
            .map_err(|message| PolicyLoadError::Key {
                uri: uri.to_string(),
                message,
            })
    }
}

/// What was found for one kind of signature, fetched once per pull.
#[derive(Debug)]
struct Collected<T> {
    signatures: Vec<Found<T>>,
    errors: Vec<String>,
}

impl<T> Collected<T> {
    fn new() -> Self {
        Self {
            signatures: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// The image being judged and its signatures, fetched lazily and shared by all
/// requirements of one check.
struct Evidence<'a> {
    policy: &'a ContainersPolicy,
    request: &'a PolicyRequest<'a>,
    simple: OnceCell<Collected<Vec<u8>>>,
    cosign: OnceCell<Collected<CosignSignature>>,
}

impl<'a> Evidence<'a> {
    fn digests(&self) -> Vec<&'a Digest> {
        let mut digests = vec![self.request.manifest_digest];
        if let Some(index) = self.request.index_digest {
            digests.push(index);
        }
        digests
    }

    fn references(&self) -> Vec<&'a Reference> {
        let mut references = vec![self.request.pulled];
        if self.request.requested != self.request.pulled {
            references.push(self.request.requested);
        }
        references
    }

    async fn simple_signatures(&self) -> &Collected<Vec<u8>> {
        self.simple
            .get_or_init(|| async {
                let mut collected = Collected::new();
                match self.policy.registries_d().await {
                    Ok(config) => {
                        let mut stores = Vec::new();
                        for reference in self.references() {
                            if let Some(store) = config.lookaside_for(reference) {
                                let key = (store.base.clone(), reference.repository().to_string());
                                if !stores.iter().any(|(s, _): &(_, _)| *s == key) {
                                    stores.push((key, store));
                                }
                            }
                        }
                        for ((_, repository), store) in &stores {
                            for digest in self.digests() {
                                match self
                                    .policy
                                    .fetcher
                                    .lookaside(
                                        self.request.repository.client(),
                                        store,
                                        repository,
                                        digest,
                                    )
                                    .await
                                {
                                    Ok(found) => collected.signatures.extend(found),
                                    Err(e) => collected
                                        .errors
                                        .push(format!("lookaside ({}): {e}", store.scope)),
                                }
                            }
                        }
                    }
                    Err(e) => collected.errors.push(e.to_string()),
                }
                for digest in self.digests() {
                    match self
                        .policy
                        .fetcher
                        .extension(self.request.repository, digest)
                        .await
                    {
                        Ok(found) => collected.signatures.extend(found),
                        Err(e) => collected
                            .errors
                            .push(format!("registry signature extension: {e}")),
                    }
                }
                collected
            })
            .await
    }

    async fn cosign_signatures(&self) -> &Collected<CosignSignature> {
        self.cosign
            .get_or_init(|| async {
                let mut collected = Collected::new();
                for digest in self.digests() {
                    match self
                        .policy
                        .fetcher
                        .cosign(self.request.repository, digest)
                        .await
                    {
                        Ok(found) => collected.signatures.extend(found),
                        Err(e) => collected.errors.push(format!("cosign signature tag: {e}")),
                    }
                }
                collected
            })
            .await
    }

    /// Whether a signature of `signed` covers this image: the manifest (hashed with the
    /// signature's algorithm) or the index it was selected from.
    fn digest_matches(&self, signed: &Digest) -> Result<(), String> {
        let mut hasher = Hasher::new(signed.algorithm());
        hasher.update(self.request.manifest);
        if hasher.finish() == *signed || self.request.index_digest == Some(signed) {
            return Ok(());
        }
        Err(format!(
            "the signature is for {signed}, not for this image ({})",
            self.request.manifest_digest
        ))
    }
}

/// One requirement's verdict on the signatures found.
fn summarize(kind: &str, reasons: Vec<String>, fetch_errors: &[String]) -> String {
    let mut parts = Vec::new();
    if reasons.is_empty() {
        parts.push(format!(
            "a {kind} signature was required, but no signature exists"
        ));
    } else {
        parts.push(format!(
            "no {kind} signature was accepted: {}",
            reasons.join("; ")
        ));
    }
    if !fetch_errors.is_empty() {
        parts.push(format!(
            "signatures could not be read from: {}",
            fetch_errors.join("; ")
        ));
    }
    parts.join("; ")
}

impl ContainersPolicy {
    async fn evaluate(
        &self,
        requirement: &Requirement,
        intended: &DockerRef,
        evidence: &Evidence<'_>,
    ) -> Result<(), String> {
        match requirement {
            Requirement::InsecureAcceptAnything => Ok(()),
            Requirement::Reject => Err("the policy rejects this image".into()),
            Requirement::SignedBy {
                key_uris,
                key_data,
                identity,
            } => {
                let mut keyring = key_data.clone().unwrap_or_default();
                for uri in key_uris {
                    let keys = self.gpg_key(uri).await.map_err(|e| e.to_string())?;
                    keyring.extend(&keys);
                }
                let collected = evidence.simple_signatures().await;
                let now = SystemTime::now();
                let mut reasons = Vec::new();
                for found in &collected.signatures {
                    let verdict = keyring.verify(&found.value, now).and_then(|verified| {
                        let claims =
                            payload::parse(&verified.payload, payload::SIMPLE_SIGNING_TYPE)?;
                        evidence.digest_matches(&claims.digest)?;
                        check_identity(identity, intended, &claims.reference)?;
                        Ok(verified.signer)
                    });
                    match verdict {
                        Ok(signer) => {
                            tracing::debug!(source = %found.source, %signer, "GPG signature accepted");
                            return Ok(());
                        }
                        Err(why) => reasons.push(format!("{}: {why}", found.source)),
                    }
                }
                Err(summarize("GPG", reasons, &collected.errors))
            }
            Requirement::SigstoreSigned {
                key_uris,
                key_data,
                identity,
            } => {
                let mut keys: Vec<Arc<CosignKey>> =
                    key_data.iter().cloned().map(Arc::new).collect();
                for uri in key_uris {
                    keys.push(self.cosign_key(uri).await.map_err(|e| e.to_string())?);
                }
                let collected = evidence.cosign_signatures().await;
                let mut reasons = Vec::new();
                for found in &collected.signatures {
                    let verdict = verify_cosign(&keys, &found.value).and_then(|()| {
                        let claims = payload::parse(&found.value.payload, payload::COSIGN_TYPE)?;
                        evidence.digest_matches(&claims.digest)?;
                        check_identity(identity, intended, &claims.reference)
                    });
                    match verdict {
                        Ok(()) => {
                            tracing::debug!(source = %found.source, "cosign signature accepted");
                            return Ok(());
                        }
                        Err(why) => reasons.push(format!("{}: {why}", found.source)),
                    }
                }
                Err(summarize("cosign", reasons, &collected.errors))
            }
        }
    }
}

fn verify_cosign(keys: &[Arc<CosignKey>], signature: &CosignSignature) -> Result<(), String> {
    let Some(signature_b64) = &signature.signature_b64 else {
        return Err(format!(
            "no {} annotation",
            fetch::COSIGN_SIGNATURE_ANNOTATION
        ));
    };
    let mut reasons = Vec::new();
    for key in keys {
        match key.verify(&signature.payload, signature_b64) {
            Ok(()) => return Ok(()),
            Err(why) => reasons.push(why),
        }
    }
    Err(format!(
        "not signed by a trusted key ({})",
        reasons.join(", ")
    ))
}

fn check_identity(
    identity: &SignedIdentity,
    intended: &DockerRef,
    signed: &str,
) -> Result<(), String> {
    if identity.matches(intended, signed) {
        Ok(())
    } else {
        Err(format!(
            "the signature's identity {signed:?} is not accepted for {intended} ({identity:?})"
        ))
    }
}

#[async_trait::async_trait]
impl SignaturePolicy for ContainersPolicy {
    async fn check(&self, request: &PolicyRequest<'_>) -> Result<(), PolicyError> {
        let deny = |message: String| {
            tracing::warn!(requested = %request.requested, pulled = %request.pulled, %message, "image refused by the signature policy");
            PolicyError { message }
        };
        let policy = self
            .policy()
            .await
            .map_err(|e| deny(format!("the signature policy could not be loaded: {e}")))?;
        let evidence = Evidence {
            policy: self,
            request,
            simple: OnceCell::new(),
            cosign: OnceCell::new(),
        };
        let mut subjects = vec![("requested", request.requested)];
        if request.pulled != request.requested {
            subjects.push(("pulled", request.pulled));
        }
        for (role, reference) in subjects {
            let intended = DockerRef::of(reference);
            for selected in policy.select(reference) {
                for (number, requirement) in selected.requirements.iter().enumerate() {
                    if let Err(why) = self.evaluate(requirement, &intended, &evidence).await {
                        return Err(deny(format!(
                            "{role} reference {reference}: {} requirement {} ({}): {why}",
                            selected.scope,
                            number + 1,
                            requirement.type_name()
                        )));
                    }
                }
            }
        }
        tracing::debug!(requested = %request.requested, pulled = %request.pulled, digest = %request.manifest_digest, "image accepted by the signature policy");
        Ok(())
    }
}

/// Entry points for the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`): the
/// parsers of peer documents without the fetching around them.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use std::time::SystemTime;

    /// policy.json (with any inline `keyData`), then scope selection for a few references.
    pub fn policy_json(json: &[u8]) -> bool {
        let Ok(policy) = crate::config::Policy::parse(json) else {
            return false;
        };
        for name in [
            "docker.io/library/busybox:latest",
            "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost:5000/x",
        ] {
            if let Ok(reference) = image_rs::Reference::parse(name) {
                let _ = policy.select(&reference);
            }
        }
        true
    }

    /// One registries.d YAML document and the lookaside it picks for a reference.
    pub fn registries_d(text: &str) -> bool {
        let Ok(parsed) = crate::registries_d::RegistriesD::parse(text) else {
            return false;
        };
        if let Ok(reference) = image_rs::Reference::parse("example.com/ns/app:1") {
            let _ = parsed.lookaside_for(&reference);
        }
        true
    }

    /// A signature payload, as simple signing and as cosign.
    pub fn signature_payload(payload: &[u8]) -> bool {
        let simple = crate::payload::parse(payload, crate::payload::SIMPLE_SIGNING_TYPE).is_ok();
        let cosign = crate::payload::parse(payload, crate::payload::COSIGN_TYPE).is_ok();
        simple || cosign
    }

    /// A GPG keyring (binary or armored).
    pub fn gpg_keyring(data: &[u8]) -> bool {
        crate::gpg::Keyring::parse(data).is_ok()
    }

    /// A cosign public key (PEM).
    pub fn cosign_key(pem: &[u8]) -> bool {
        crate::cosign::CosignKey::parse_pem(pem).is_ok()
    }

    /// A keyring to check signature blobs against.
    #[derive(Debug)]
    pub struct Keyring(crate::gpg::Keyring);

    impl Keyring {
        /// Parses a keyring, `None` when it does not parse.
        pub fn parse(data: &[u8]) -> Option<Self> {
            crate::gpg::Keyring::parse(data).ok().map(Self)
        }

        /// Checks a signature blob (a signed OpenPGP message) and the payload it carries.
        pub fn verify(&self, blob: &[u8]) -> bool {
            match self.0.verify(blob, SystemTime::now()) {
                Ok(verified) => signature_payload(&verified.payload),
                Err(_) => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_the_cdh_image_section() {
        assert!(PolicyOptions::from_image_config(&ImageConfig::default()).is_none());
        let mut config = ImageConfig {
            image_security_policy: Some("{}".into()),
            sigstore_config: Some("default-docker: {}".into()),
            ..ImageConfig::default()
        };
        let options = PolicyOptions::from_image_config(&config).unwrap();
        assert_eq!(options.policy, DocumentSource::Inline("{}".into()));
        assert_eq!(
            options.registries_d,
            [DocumentSource::Inline("default-docker: {}".into())]
        );
        config.image_security_policy_uri = Some("kbs:///default/security-policy/test".into());
        config.sigstore_config_uri = Some("kbs:///default/sigstore-config/test".into());
        let options = PolicyOptions::from_image_config(&config).unwrap();
        assert_eq!(
            options.policy,
            DocumentSource::Uri("kbs:///default/security-policy/test".into())
        );
        assert_eq!(
            options.registries_d,
            [DocumentSource::Uri(
                "kbs:///default/sigstore-config/test".into()
            )]
        );
        assert_eq!(options.resource_ttl, DEFAULT_RESOURCE_TTL);
    }

    #[test]
    fn invalid_inline_documents_fail_at_construction() {
        let provider: Arc<dyn ResourceProvider> = Arc::new(image_rs::LocalResources);
        let err = ContainersPolicy::new(
            PolicyOptions::new(DocumentSource::Inline(r#"{"default":[]}"#.into())),
            provider.clone(),
        )
        .unwrap_err();
        assert!(matches!(err, PolicyLoadError::Policy { .. }), "{err}");
        let mut options = PolicyOptions::new(DocumentSource::Inline(
            r#"{"default":[{"type":"reject"}]}"#.into(),
        ));
        options.registries_d = vec![DocumentSource::Inline("default-docker: [".into())];
        let err = ContainersPolicy::new(options, provider).unwrap_err();
        assert!(matches!(err, PolicyLoadError::RegistriesD { .. }), "{err}");
    }
}
