//! The key provider: wraps a layer's private options (its symmetric key, digest and nonce)
//! with a key-encryption key (KEK) into an annotation packet, and registers the KEK in the
//! KBS so that the confidential data hub can fetch it after attestation.
//!
//! The packet is v2 (`{"version":"0.1.0","kid":"kbs:///<repo>/<type>/<tag>","wrapped_data",
//! "provider":"kbs","iv","wrap_type"}`), which the hub reads, as it reads v1; unlike
//! upstream's, `kid` is always a full `kbs:///` URI (upstream writes `/default/image-kek/…`
//! for generated kids, which the hub cannot unwrap), the IV is always random (upstream's
//! sample mode uses a zero IV with a fixed key), and A256CTR gets its 16-byte IV.
//!
//! KEK choice: `keypath` (a 32-byte file), else a random KEK, which is only useful if the
//! KBS receives it: without KBS registration a random KEK is refused rather than thrown
//! away (upstream encrypts the image for a key nobody has). A random KEK is made once per
//! `keyid` and reused for the next layers and images with that `keyid` (upstream makes a
//! new one per layer and overwrites the resource, so all but the last layer of an image
//! become undecryptable); a KEK already stored under a kid is not sent again. A KBS that
//! refuses the KEK fails the wrap (upstream ignores the answer).

use std::collections::HashMap;
use std::path::Path;

use kbs_protocol::KbsAdminClient;
use kbs_protocol::ResourceUri;
use ocicrypt_rs::keywrap::keyprovider::AnnotationPacket;
use ocicrypt_rs::keywrap::keyprovider::{
    KeyProviderError, KeyProviderHandler, KeyUnwrapRequest, KeyWrapRequest,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::Mutex;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::admin::AdminKey;
use crate::params::{Algorithm, ParamsError, WrapParams};

/// KEK length (AES-256).
pub(crate) const KEK_LEN: usize = 32;

/// upstream's sample KEK (also sample_kbc's), used for `sample=true`
pub(crate) const SAMPLE_KEK: [u8; KEK_LEN] = [
    0xd9, 0x9b, 0x77, 0x05, 0xb0, 0xba, 0x7a, 0x16, 0x82, 0x95, 0xb3, 0xa3, 0x36, 0x72, 0x70, 0xb0,
    0xdd, 0x9b, 0x37, 0x1b, 0xf5, 0x14, 0xca, 0x8b, 0x9b, 0xa7, 0xf0, 0xa3, 0x37, 0x11, 0xda, 0xea,
];
/// upstream's kid for `sample=true`
pub(crate) const SAMPLE_KID: &str = "kbs:///default/test-key/1";
/// repository/type of generated kids: `kbs:///default/image-kek/<uuid>`
pub(crate) const GENERATED_KID_PREFIX: &str = "kbs:///default/image-kek/";

/// What the refusal of `UnWrapKey` says.
pub(crate) const UNWRAP_REFUSED: &str = "coco-keyprovider only wraps layer keys (WrapKey); layers are unwrapped in the confidential guest by the confidential data hub, after attestation";

/// Why a layer key was not wrapped.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// Bad parameters.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The `keypath` file.
    #[error("KEK file {path}: {reason}")]
    KekFile {
        /// the file
        path: String,
        /// what is wrong
        reason: String,
    },
    /// A random KEK with nowhere to keep it.
    #[error("no keypath given and no KBS to register a generated KEK in: the image would be encrypted for a key nobody has; pass keypath=<32-byte file>, or start coco-keyprovider with --kbs and --auth-private-key")]
    KekWouldBeLost,
    /// The KBS did not store the KEK.
    #[error("registering the KEK {kid} in the KBS failed: {source}")]
    Register {
        /// the kid
        kid: String,
        /// the KBS client's error
        source: Box<kbs_protocol::Error>,
    },
    /// The random source failed.
    #[error("the random source failed: {0}")]
    Random(String),
    /// Sealing the packet failed.
    #[error("wrapping the layer options failed: {0}")]
    Seal(String),
}

/// The KBS to register KEKs in, and the admin key that authorizes it.
#[derive(Debug)]
pub struct Registrar {
    client: KbsAdminClient,
    key: AdminKey,
    url: String,
}

impl Registrar {
    /// Registers KEKs at the KBS `url` (trusting `extra_root_certs_pem` besides the public
    /// roots) with tokens signed by `key`.
    pub fn new(
        url: &str,
        extra_root_certs_pem: &[String],
        key: AdminKey,
    ) -> Result<Self, kbs_protocol::Error> {
        Ok(Self {
            client: KbsAdminClient::new(url, extra_root_certs_pem)?,
            key,
            url: url.to_string(),
        })
    }

    /// The same with a short timeout and a single try (tests).
    #[cfg(test)]
    pub(crate) fn for_tests(url: &str, key: AdminKey) -> Result<Self, kbs_protocol::Error> {
        Ok(Self {
            client: KbsAdminClient::with_timeouts(url, &[], std::time::Duration::from_secs(10), 1)?,
            key,
            url: url.to_string(),
        })
    }

    /// The KBS URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// coco-keyprovider's [`KeyProviderHandler`].
pub struct CocoKeyProvider {
    registrar: Option<Registrar>,
    /// KEKs stored in the KBS by this process, by kid; held across the whole
    /// choose-register step so that concurrent wraps agree on one KEK per kid.
    registered: Mutex<HashMap<String, Zeroizing<[u8; KEK_LEN]>>>,
}

// Written out so that the registered KEKs never reach a log.
impl std::fmt::Debug for CocoKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CocoKeyProvider")
            .field("registrar", &self.registrar)
            .finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, WrapError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    OsRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|e| WrapError::Random(e.to_string()))?;
    Ok(bytes)
}

/// `kbs:///default/image-kek/<random UUID v4>`
fn generated_kid() -> Result<ResourceUri, WrapError> {
    let mut b = *random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    ResourceUri::parse(&format!("{GENERATED_KID_PREFIX}{uuid}"))
        .map_err(|e| WrapError::Seal(e.to_string()))
}

/// Reads a 32-byte KEK file.
fn read_kek(path: &Path) -> Result<Zeroizing<[u8; KEK_LEN]>, WrapError> {
    let bad = |reason: String| WrapError::KekFile {
        path: path.display().to_string(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if len != KEK_LEN as u64 {
        return Err(bad(format!("{len} bytes; a KEK has exactly {KEK_LEN}")));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| bad(e.to_string()))?);
    let mut kek = Zeroizing::new([0u8; KEK_LEN]);
    if bytes.len() != KEK_LEN {
        return Err(bad(format!(
            "{} bytes; a KEK has exactly {KEK_LEN}",
            bytes.len()
        )));
    }
    kek.copy_from_slice(&bytes);
    Ok(kek)
}

impl CocoKeyProvider {
    /// A provider registering KEKs through `registrar` (none: KEKs come from `keypath`).
    pub fn new(registrar: Option<Registrar>) -> Self {
        Self {
            registrar,
            registered: Mutex::new(HashMap::new()),
        }
    }

    /// Wraps `optsdata` as `params` say; returns the annotation packet.
    pub async fn wrap(
        &self,
        params: &WrapParams,
        optsdata: &[u8],
    ) -> Result<AnnotationPacket, WrapError> {
        let algorithm = params.algorithm;
        if params.sample {
            warn!("wrapping with the sample KEK ({SAMPLE_KID}): anyone can decrypt this layer");
            return seal(SAMPLE_KID, &SAMPLE_KEK, optsdata, algorithm);
        }
        let kid = match &params.keyid {
            Some(kid) => kid.clone(),
            None => generated_kid()?,
        };
        let kid_text = kid.to_string();
        let given = match &params.keypath {
            Some(path) => Some(read_kek(path)?),
            None => None,
        };
        let Some(registrar) = &self.registrar else {
            let kek = given.ok_or(WrapError::KekWouldBeLost)?;
            info!(kid = %kid_text, algorithm = algorithm.name(), "layer key wrapped with the KEK from keypath (not registered: no --kbs)");
            return seal(&kid_text, &kek, optsdata, algorithm);
        };
        let mut registered = self.registered.lock().await;
        let known = registered.get(&kid_text);
        let kek = match (given, known) {
            (Some(given), Some(known)) if *given == **known => given,
            (Some(given), known) => {
                if known.is_some() {
                    warn!(kid = %kid_text, "a different KEK replaces the one this provider registered under this kid: layers wrapped with the old one will no longer open");
                }
                self.register(registrar, &kid, &given).await?;
                given
            }
            (None, Some(known)) => known.clone(),
            (None, None) => {
                let fresh = random_bytes::<KEK_LEN>()?;
                self.register(registrar, &kid, &fresh).await?;
                fresh
            }
        };
        registered.insert(kid_text.clone(), kek.clone());
        drop(registered);
        info!(kid = %kid_text, algorithm = algorithm.name(), kbs = registrar.url(), "layer key wrapped; its KEK is in the KBS");
        seal(&kid_text, &kek, optsdata, algorithm)
    }

    async fn register(
        &self,
        registrar: &Registrar,
        kid: &ResourceUri,
        kek: &[u8; KEK_LEN],
    ) -> Result<(), WrapError> {
        registrar
            .client
            .set_resource(kid, kek, &registrar.key.token())
            .await
            .map_err(|source| WrapError::Register {
                kid: kid.to_string(),
                source: Box::new(source),
            })?;
        info!(kid = %kid, kbs = registrar.url(), "KEK registered in the KBS");
        Ok(())
    }
}

fn seal(
    kid: &str,
    kek: &[u8; KEK_LEN],
    optsdata: &[u8],
    algorithm: Algorithm,
) -> Result<AnnotationPacket, WrapError> {
    AnnotationPacket::seal(kid, kek, optsdata, algorithm.wrap_type())
        .map_err(|e| WrapError::Seal(e.to_string()))
}

#[async_trait::async_trait]
impl KeyProviderHandler for CocoKeyProvider {
    async fn wrap_key(&self, request: KeyWrapRequest) -> Result<Vec<u8>, KeyProviderError> {
        let refuse = |e: WrapError| {
            warn!(error = %e, "WrapKey refused");
            KeyProviderError::Handler(format!("coco-keyprovider: {e}"))
        };
        let params = WrapParams::from_request(&request.parameters)
            .map_err(|e| refuse(WrapError::Params(e)))?;
        let packet = self
            .wrap(&params, &request.optsdata)
            .await
            .map_err(refuse)?;
        Ok(packet.to_json()?)
    }

    async fn unwrap_key(
        &self,
        _request: KeyUnwrapRequest,
    ) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        Err(KeyProviderError::Handler(UNWRAP_REFUSED.into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OPTS: &[u8] =
        br#"{"symkey":"AAEC","digest":"sha256:00","cipheroptions":{"nonce":"AA=="}}"#;

    #[tokio::test]
    async fn without_a_kbs_only_keypath_and_sample_keks_are_used() {
        let provider = CocoKeyProvider::new(None);
        let err = provider
            .wrap(&WrapParams::parse("keyid=kbs:///a/b/c").unwrap(), OPTS)
            .await
            .unwrap_err();
        assert!(matches!(err, WrapError::KekWouldBeLost), "{err}");
        assert!(matches!(
            provider.wrap(&WrapParams::default(), OPTS).await,
            Err(WrapError::KekWouldBeLost)
        ));

        let dir = tempfile::tempdir().unwrap();
        let kek_file = dir.path().join("kek");
        std::fs::write(&kek_file, [9u8; 32]).unwrap();
        for algorithm in Algorithm::ALL {
            let params = WrapParams::parse(&format!(
                "keypath={}::keyid=/default/key/k1::algorithm={}",
                kek_file.display(),
                algorithm.name()
            ))
            .unwrap();
            let packet = provider.wrap(&params, OPTS).await.unwrap();
            assert_eq!(packet.kid, "kbs:///default/key/k1");
            assert_eq!(packet.wrap_type.as_deref(), Some(algorithm.name()));
            assert_eq!(packet.version.as_deref(), Some("0.1.0"));
            assert_eq!(packet.provider.as_deref(), Some("kbs"));
            assert_eq!(packet.open(&[9u8; 32]).unwrap().as_slice(), OPTS);
            assert!(packet.open(&[8u8; 32]).is_err() || algorithm == Algorithm::A256Ctr);
        }

        // no keyid: a generated full URI
        let params = WrapParams::parse(&format!("keypath={}", kek_file.display())).unwrap();
        let a = provider.wrap(&params, OPTS).await.unwrap();
        let b = provider.wrap(&params, OPTS).await.unwrap();
        assert!(a.kid.starts_with(GENERATED_KID_PREFIX), "{}", a.kid);
        assert_ne!(a.kid, b.kid);
        let uuid = a.kid.trim_start_matches(GENERATED_KID_PREFIX);
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        ResourceUri::parse(&a.kid).unwrap();

        // sample: upstream's KEK and kid, a random IV each time
        let sample = WrapParams::parse("sample=true").unwrap();
        let s1 = provider.wrap(&sample, OPTS).await.unwrap();
        let s2 = provider.wrap(&sample, OPTS).await.unwrap();
        assert_eq!(s1.kid, SAMPLE_KID);
        assert_eq!(s1.open(&SAMPLE_KEK).unwrap().as_slice(), OPTS);
        assert_ne!(s1.iv, s2.iv);
        assert_ne!(s1.iv.as_deref(), Some(&[0u8; 12][..]));
    }

    #[tokio::test]
    async fn debug_output_shows_no_key_material() {
        let seed = [3u8; 32];
        let registrar =
            Registrar::for_tests("http://127.0.0.1:1", AdminKey::from_seed(&seed)).unwrap();
        let provider = CocoKeyProvider::new(Some(registrar));
        provider
            .registered
            .lock()
            .await
            .insert("kbs:///a/b/c".into(), Zeroizing::new([0xabu8; KEK_LEN]));
        let shown = format!("{provider:?}");
        assert!(shown.contains("http://127.0.0.1:1"), "{shown}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("abab"),
            "{shown}"
        );
        assert!(!shown.contains(&hex::encode(seed)), "{shown}");
    }

    #[tokio::test]
    async fn bad_kek_files_are_refused() {
        let provider = CocoKeyProvider::new(None);
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in [
            ("short", vec![1u8; 31]),
            ("long", vec![1u8; 33]),
            ("empty", vec![]),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let params = WrapParams::parse(&format!("keypath={}", path.display())).unwrap();
            assert!(
                matches!(
                    provider.wrap(&params, OPTS).await,
                    Err(WrapError::KekFile { .. })
                ),
                "{name}"
            );
        }
        let params = WrapParams::parse("keypath=/nonexistent/kek").unwrap();
        assert!(matches!(
            provider.wrap(&params, OPTS).await,
            Err(WrapError::KekFile { .. })
        ));
        let params = WrapParams::parse(&format!("keypath={}", dir.path().display())).unwrap();
        assert!(matches!(
            provider.wrap(&params, OPTS).await,
            Err(WrapError::KekFile { .. })
        ));
    }
}
