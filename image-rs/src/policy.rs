//! The signature-policy hook: called for every pull with the requested reference, the
//! reference actually pulled (a mirror or a remapped location) and the manifest digest,
//! after the manifest is resolved and **before** any layer is fetched or reused from the
//! store. (Upstream built the bundle from its cache before the policy ran.)

use crate::reference::Reference;
use crate::registry::Repository;
use oci_model::Digest;

/// What the policy decides about.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// the reference the caller asked for
    pub requested: &'a Reference,
    /// the reference pulled (differs for mirrors and remapped registries)
    pub pulled: &'a Reference,
    /// digest of the image manifest
    pub manifest_digest: &'a Digest,
    /// digest of the index the manifest was selected from, if any
    pub index_digest: Option<&'a Digest>,
    /// the manifest bytes
    pub manifest: &'a [u8],
    /// the pull's session on the repository of `pulled`: signatures stored in the registry
    /// (cosign tags, the signature extension) are read through it, and other servers
    /// (lookaside stores) through its [`Repository::client`], so they are reached with
    /// the pull's own scheme (insecure registries), credentials, proxies and root CAs
    pub repository: &'a Repository,
}

/// A policy refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// why the image is refused
    pub message: String,
}

/// Decides whether an image may be used.
#[async_trait::async_trait]
pub trait SignaturePolicy: Send + Sync + std::fmt::Debug {
    /// `Ok` to allow, an error to refuse the pull.
    async fn check(&self, request: &PolicyRequest<'_>) -> Result<(), PolicyError>;
}

/// The default policy: every image is accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

#[async_trait::async_trait]
impl SignaturePolicy for AcceptAll {
    async fn check(&self, _request: &PolicyRequest<'_>) -> Result<(), PolicyError> {
        Ok(())
    }
}
