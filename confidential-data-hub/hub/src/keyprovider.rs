//! Image layer-key unwrapping (spec 5.5, 7.2): the ocicrypt keyprovider
//! `keyprovider.KeyProviderService/UnWrapKey` of CoCo's `attestation-agent` provider.
//!
//! The request is the keyprovider JSON
//! `{"op":"keyunwrap","keyunwrapparams":{"annotation":<bytes>,…},…}` (byte fields as base64
//! strings or integer arrays); the annotation is an annotation packet v1
//! `{"kid","wrapped_data","iv","wrap_type"}` or v2 (adds `version` `0.1.0`, `provider`,
//! `provider_settings`, `annotations`). Provider `kbs` (the default): the key-encryption
//! key is the KBS resource named by `kid`, fetched through the process's KBC, and opens
//! `wrapped_data` with A256GCM (default) or A256CTR. Any other provider: its KMS decrypts
//! `wrapped_data` with key `kid`. The answer is `{"keyunwrapresults":{"optsdata":[…]}}`
//! with the private layer options as an integer array, as upstream writes it.
//!
//! [`LayerKeyUnwrapper`] is also an ocicrypt-rs [`KeyProviderHandler`], so an in-process
//! image puller unwraps with the same object (and the same KBC token) as the ttRPC
//! service. The hub never wraps keys: encryption happens on the host.

use std::sync::Arc;

use kbs_protocol::{ResourceUri, ResourceUriError};
use kms::{Kbc, KbcError, KmsError, KmsProviders, WrapError, WrapType, KBS_PROVIDER};
use ocicrypt_rs::keywrap::keyprovider::{
    AnnotationPacket, KeyProviderError, KeyProviderHandler, KeyProviderKeyWrapProtocolInput,
    KeyUnwrapRequest, KeyWrapRequest, PacketError, OP_KEY_UNWRAP,
};
use serde::Serialize;
use tracing::debug;
use zeroize::Zeroizing;

/// The annotation packet version v2 packets carry.
pub(crate) const PACKET_VERSION: &str = "0.1.0";

/// What the hub answers a wrap request with.
pub(crate) const WRAP_REFUSED: &str = "the confidential data hub only unwraps layer keys; wrap them where the image is encrypted (coco-keyprovider)";

/// Why a layer key was not unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum UnwrapKeyError {
    /// The request is not keyprovider JSON.
    #[error("UnWrapKey request is not keyprovider protocol JSON: {0}")]
    Request(KeyProviderError),
    /// `op` is not `keyunwrap`.
    #[error("UnWrapKey request has op `{0}`; expected keyunwrap")]
    WrongOperation(String),
    /// `keyunwrapparams.annotation` is missing or empty.
    #[error("UnWrapKey request has no keyunwrapparams.annotation")]
    MissingAnnotation,
    /// The annotation is not an annotation packet.
    #[error("{0}")]
    Packet(PacketError),
    /// A v2 packet of another version.
    #[error("annotation packet version `{0}` is not supported; expected 0.1.0")]
    UnsupportedPacketVersion(String),
    /// `wrap_type` is unknown.
    #[error("annotation packet wrap_type: {0}")]
    UnsupportedWrapType(WrapError),
    /// A `kbs` packet whose kid is not a resource URI.
    #[error("annotation packet kid `{kid}` is not a resource URI: {source}")]
    InvalidKid {
        /// the kid
        kid: String,
        /// the parser's complaint
        source: ResourceUriError,
    },
    /// A `kbs` packet without an IV.
    #[error("annotation packet for provider kbs has no iv")]
    MissingIv,
    /// The KBC did not deliver the key-encryption key.
    #[error("fetching the key-encryption key {kid}: {source}")]
    Kek {
        /// the kid
        kid: String,
        /// the KBC's error
        source: KbcError,
    },
    /// The key-encryption key does not open the packet.
    #[error("unwrapping with the key-encryption key {kid}: {source}")]
    Unwrap {
        /// the kid
        kid: String,
        /// what failed
        source: WrapError,
    },
    /// The packet's KMS provider could not be built or failed.
    #[error("{0}")]
    Provider(#[from] KmsError),
    /// Serializing the answer failed.
    #[error("serializing the UnWrapKey answer: {0}")]
    Output(serde_json::Error),
}

/// `{"keyunwrapresults":{"optsdata":[…]}}`
#[derive(Serialize)]
struct UnwrapOutput<'a> {
    keyunwrapresults: UnwrapResults<'a>,
}

#[derive(Serialize)]
struct UnwrapResults<'a> {
    // a byte slice serializes as an array of integers
    optsdata: &'a [u8],
}

/// Unwraps image layer keys with the process's KBC and KMS providers.
#[derive(Clone)]
pub struct LayerKeyUnwrapper {
    kbc: Arc<dyn Kbc>,
    kms: KmsProviders,
}

impl std::fmt::Debug for LayerKeyUnwrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerKeyUnwrapper")
            .field("kms", &self.kms)
            .finish_non_exhaustive()
    }
}

fn shown(text: &str) -> String {
    text.chars().take(200).collect()
}

impl LayerKeyUnwrapper {
    /// An unwrapper fetching key-encryption keys through `kbc` and decrypting other
    /// providers' packets through `kms`.
    pub fn new(kbc: Arc<dyn Kbc>, kms: KmsProviders) -> Self {
        Self { kbc, kms }
    }

    /// The private layer options in an annotation packet (the base64-decoded annotation).
    pub async fn unwrap_packet(&self, packet: &[u8]) -> Result<Zeroizing<Vec<u8>>, UnwrapKeyError> {
        let packet = AnnotationPacket::parse(packet).map_err(UnwrapKeyError::Packet)?;
        if let Some(version) = packet.version.as_deref() {
            if version != PACKET_VERSION {
                return Err(UnwrapKeyError::UnsupportedPacketVersion(shown(version)));
            }
        }
        match packet.provider.as_deref() {
            None | Some(KBS_PROVIDER) => self.unwrap_with_kbs_kek(&packet).await,
            Some(provider) => {
                let decrypter = self
                    .kms
                    .decrypter(provider, &packet.provider_settings)
                    .await?;
                Ok(decrypter
                    .decrypt(&packet.wrapped_data, &packet.kid, &packet.annotations)
                    .await?)
            }
        }
    }

    async fn unwrap_with_kbs_kek(
        &self,
        packet: &AnnotationPacket,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapKeyError> {
        let wrap_type = match packet.wrap_type.as_deref() {
            None | Some("") => WrapType::A256Gcm,
            Some(name) => name.parse().map_err(UnwrapKeyError::UnsupportedWrapType)?,
        };
        let iv = packet.iv.as_deref().ok_or(UnwrapKeyError::MissingIv)?;
        let uri = ResourceUri::parse(&packet.kid).map_err(|source| UnwrapKeyError::InvalidKid {
            kid: shown(&packet.kid),
            source,
        })?;
        let kek = self
            .kbc
            .get_resource(&uri)
            .await
            .map_err(|source| UnwrapKeyError::Kek {
                kid: uri.to_string(),
                source,
            })?;
        debug!(kid = %uri, %wrap_type, "unwrapping a layer key");
        kms::unwrap(wrap_type, &kek, iv, &packet.wrapped_data).map_err(|source| {
            UnwrapKeyError::Unwrap {
                kid: uri.to_string(),
                source,
            }
        })
    }

    /// Answers one `UnWrapKey` request: keyprovider JSON in, keyprovider JSON out.
    pub async fn handle_unwrap_request(
        &self,
        input: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapKeyError> {
        let mut request =
            KeyProviderKeyWrapProtocolInput::from_json(input).map_err(UnwrapKeyError::Request)?;
        if request.operation != OP_KEY_UNWRAP {
            return Err(UnwrapKeyError::WrongOperation(shown(&request.operation)));
        }
        let annotation = request
            .key_unwrap_params
            .annotation
            .take()
            .filter(|annotation| !annotation.is_empty())
            .ok_or(UnwrapKeyError::MissingAnnotation)?;
        let optsdata = self.unwrap_packet(&annotation).await?;
        let mut output = Zeroizing::new(Vec::with_capacity(optsdata.len() * 4 + 64));
        serde_json::to_writer(
            &mut *output,
            &UnwrapOutput {
                keyunwrapresults: UnwrapResults {
                    optsdata: &optsdata,
                },
            },
        )
        .map_err(UnwrapKeyError::Output)?;
        Ok(output)
    }
}

#[async_trait::async_trait]
impl KeyProviderHandler for LayerKeyUnwrapper {
    async fn wrap_key(&self, _request: KeyWrapRequest) -> Result<Vec<u8>, KeyProviderError> {
        Err(KeyProviderError::Handler(WRAP_REFUSED.into()))
    }

    async fn unwrap_key(
        &self,
        request: KeyUnwrapRequest,
    ) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        self.unwrap_packet(&request.annotation)
            .await
            .map_err(|e| KeyProviderError::Handler(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use ocicrypt_rs::keywrap::keyprovider::handle_request;

    use super::*;
    use crate::unwrap_key_code;

    /// upstream sample_kbc's hard-coded KEK, served here as `kbs:///default/key/1`
    const KEK_HEX: &str = "d99b7705b0ba7a168295b3a3367270b0dd9b371bf514ca8b9ba7f0a33711daea";
    const OPTS: &[u8] = br#"{"symkey":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","cipheroptions":{"nonce":"AAECAwQFBgcICQoLDA0ODw=="}}"#;
    /// `OPTS` wrapped by Python `cryptography` (AESGCM / AES-CTR), independently of us
    const GCM_WRAPPED: &str = "p/SVXdEtwMTVtqmvMQbYRwEtS3PZUXgR0R3v6Lv8dklvGOftufsIg6ueN0h8F64tDReatgOg8g6QsdkziUGQKV0N8el+RErnFS4oUYPus2eQKRu6kuCtPTJUHs9jnbj7U5htVmxb98YnDJJZEkAivwTFx8IySlwHsCoL8jT/1OcbxflOhQ2uhusEj2miZ68qJ8cdRv+iB6VEjSreq8G3xdLsqGWxKonIDO1fzopnhPrpC9wuvsya1YUNTzc7mCcZb+laTU3Hg3US7Jmxl5x6+y4=";
    const GCM_IV: &str = "AAECAwQFBgcICQoL";
    const CTR_WRAPPED: &str = "J/5G9mtgziBmHG4qCq9LiAqYRvaH41svTlTOKmgwjn/EzsHdZrnKQmUMTrSdU9tH5UYFnsWjz+VPBFZs6J4nkacWP6qZ5MxCJ7hK0IGI4KqmMWHcNkkAFB1+XX0JLjOxinBzyPA7hxd6YEV5BU7Ccwr2IX/cvsENHtX/nsz54INwO6tvvZKBsGDgcDRXLjFzBbXMBO/HH+gDpEe3FFYTuLLewLs3wXGw2EfVsvSUDS4MP26VxoyEK8uBS+C1ikptoA==";
    const CTR_IV: &str = "EBESExQVFhcYGRobHB0eHw==";

    #[derive(Debug)]
    struct MapKbc(HashMap<String, Vec<u8>>);

    #[async_trait::async_trait]
    impl Kbc for MapKbc {
        async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
            uri.repo_type_tag()
                .and_then(|(r, t, g)| self.0.get(&format!("{r}/{t}/{g}")))
                .map(|v| Zeroizing::new(v.clone()))
                .ok_or_else(|| KbcError::NotFound(uri.to_string()))
        }
    }

    fn unwrapper(dir: &std::path::Path) -> LayerKeyUnwrapper {
        let mut resources = HashMap::new();
        resources.insert("default/key/1".into(), hex::decode(KEK_HEX).unwrap());
        resources.insert("default/key/short".into(), vec![1u8; 16]);
        let offline = dir.join("offline_fs");
        std::fs::create_dir_all(&offline).unwrap();
        std::fs::write(
            offline.join("keys.json"),
            format!(r#"{{"kms-key": "{}"}}"#, STANDARD.encode([5u8; 32])),
        )
        .unwrap();
        LayerKeyUnwrapper::new(Arc::new(MapKbc(resources)), KmsProviders::new(dir))
    }

    fn request(packet: &[u8]) -> Vec<u8> {
        format!(
            r#"{{"op":"keyunwrap","keywrapparams":{{"ec":null,"optsdata":null}},"keyunwrapparams":{{"dc":{{"Parameters":{{"attestation-agent":["AA=="]}}}},"annotation":"{}"}}}}"#,
            STANDARD.encode(packet)
        )
        .into_bytes()
    }

    fn optsdata(answer: &[u8]) -> Vec<u8> {
        crate::client::optsdata_of_unwrap_answer(answer)
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn independently_wrapped_v1_and_v2_packets_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let unwrapper = unwrapper(dir.path());
        let packets = [
            format!(
                r#"{{"kid":"kbs:///default/key/1","wrapped_data":"{GCM_WRAPPED}","iv":"{GCM_IV}","wrap_type":"A256GCM"}}"#
            ),
            format!(
                r#"{{"kid":"kbs:///default/key/1","wrapped_data":"{CTR_WRAPPED}","iv":"{CTR_IV}","wrap_type":"A256CTR"}}"#
            ),
            format!(
                r#"{{"version":"0.1.0","provider":"kbs","kid":"kbs:///default/key/1","wrapped_data":"{GCM_WRAPPED}","iv":"{GCM_IV}","wrap_type":"A256GCM","provider_settings":{{}},"annotations":{{}}}}"#
            ),
            // v2 defaults: provider kbs, wrap type A256GCM
            format!(
                r#"{{"version":"0.1.0","kid":"kbs:///default/key/1","wrapped_data":"{GCM_WRAPPED}","iv":"{GCM_IV}"}}"#
            ),
        ];
        for packet in &packets {
            let answer = unwrapper
                .handle_unwrap_request(&request(packet.as_bytes()))
                .await
                .unwrap();
            assert_eq!(optsdata(&answer), OPTS, "{packet}");
        }
        // the answer is exactly upstream's shape: one key, optsdata an integer array
        let answer = unwrapper
            .handle_unwrap_request(&request(packets[0].as_bytes()))
            .await
            .unwrap();
        let expected = format!(
            r#"{{"keyunwrapresults":{{"optsdata":[{}]}}}}"#,
            OPTS.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
        );
        assert_eq!(String::from_utf8(answer.to_vec()).unwrap(), expected);
    }

    #[tokio::test]
    async fn requests_with_integer_array_bytes_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let packet = format!(
            r#"{{"kid":"kbs:///default/key/1","wrapped_data":"{GCM_WRAPPED}","iv":"{GCM_IV}"}}"#
        );
        let as_array = serde_json::json!({
            "op": "keyunwrap",
            "keywrapparams": {},
            "keyunwrapparams": {"annotation": packet.as_bytes()},
        });
        let answer = unwrapper(dir.path())
            .handle_unwrap_request(as_array.to_string().as_bytes())
            .await
            .unwrap();
        assert_eq!(optsdata(&answer), OPTS);
    }

    #[tokio::test]
    async fn other_providers_decrypt_through_their_kms() {
        let dir = tempfile::tempdir().unwrap();
        let unwrapper = unwrapper(dir.path());
        let iv = [3u8; 12];
        let mut wrapped = iv.to_vec();
        wrapped.extend(kms::wrap_with_iv(WrapType::A256Gcm, &[5u8; 32], &iv, OPTS).unwrap());
        let packet = serde_json::json!({
            "version": "0.1.0",
            "provider": "offline_fs",
            "kid": "kms-key",
            "wrapped_data": STANDARD.encode(&wrapped),
            "provider_settings": {},
            "annotations": {},
        })
        .to_string();
        assert_eq!(
            unwrapper
                .unwrap_packet(packet.as_bytes())
                .await
                .unwrap()
                .as_slice(),
            OPTS
        );
    }

    #[tokio::test]
    async fn bad_requests_and_packets_have_their_own_errors() {
        use ttrpc::Code;
        let dir = tempfile::tempdir().unwrap();
        let unwrapper = unwrapper(dir.path());
        let packet = |kid: &str, extra: &str| {
            request(
                format!(r#"{{"kid":"{kid}","wrapped_data":"{GCM_WRAPPED}"{extra}}}"#).as_bytes(),
            )
        };
        let iv = format!(r#","iv":"{GCM_IV}""#);
        type Row = (Vec<u8>, fn(&UnwrapKeyError) -> bool, Code);
        let cases: Vec<Row> = vec![
            (
                b"not json".to_vec(),
                |e| matches!(e, UnwrapKeyError::Request(_)),
                Code::INVALID_ARGUMENT,
            ),
            (
                b"[]".to_vec(),
                |e| matches!(e, UnwrapKeyError::Request(_)),
                Code::INVALID_ARGUMENT,
            ),
            (
                br#"{"op":"keywrap","keywrapparams":{"optsdata":"AA=="}}"#.to_vec(),
                |e| matches!(e, UnwrapKeyError::WrongOperation(op) if op == "keywrap"),
                Code::INVALID_ARGUMENT,
            ),
            (
                br#"{"op":"keyunwrap","keywrapparams":{},"keyunwrapparams":{}}"#.to_vec(),
                |e| matches!(e, UnwrapKeyError::MissingAnnotation),
                Code::INVALID_ARGUMENT,
            ),
            (
                br#"{"op":"keyunwrap","keyunwrapparams":{"annotation":"%%%"}}"#.to_vec(),
                |e| matches!(e, UnwrapKeyError::Request(_)),
                Code::INVALID_ARGUMENT,
            ),
            (
                request(b"{}"),
                |e| matches!(e, UnwrapKeyError::Packet(_)),
                Code::INVALID_ARGUMENT,
            ),
            (
                request(br#"{"kid":"k","wrapped_data":"AA","version":"0.2.0"}"#),
                |e| matches!(e, UnwrapKeyError::UnsupportedPacketVersion(v) if v == "0.2.0"),
                Code::INVALID_ARGUMENT,
            ),
            (
                packet(
                    "kbs:///default/key/1",
                    &format!(r#"{iv},"wrap_type":"RSA-OAEP""#),
                ),
                |e| matches!(e, UnwrapKeyError::UnsupportedWrapType(_)),
                Code::INVALID_ARGUMENT,
            ),
            (
                packet("kbs:///default/key/1", ""),
                |e| matches!(e, UnwrapKeyError::MissingIv),
                Code::INVALID_ARGUMENT,
            ),
            (
                packet("default/key/1", &iv),
                |e| matches!(e, UnwrapKeyError::InvalidKid { .. }),
                Code::INVALID_ARGUMENT,
            ),
            (
                packet("kbs:///default/../key", &iv),
                |e| matches!(e, UnwrapKeyError::InvalidKid { .. }),
                Code::INVALID_ARGUMENT,
            ),
            (
                packet("kbs:///default/key/2", &iv),
                |e| {
                    matches!(
                        e,
                        UnwrapKeyError::Kek {
                            source: KbcError::NotFound(_),
                            ..
                        }
                    )
                },
                Code::NOT_FOUND,
            ),
            (
                packet("kbs:///default/key/short", &iv),
                |e| {
                    matches!(
                        e,
                        UnwrapKeyError::Unwrap {
                            source: WrapError::KeyLength(16),
                            ..
                        }
                    )
                },
                Code::INTERNAL,
            ),
            (
                packet("kbs:///default/key/1", r#","iv":"AAAA""#),
                |e| {
                    matches!(
                        e,
                        UnwrapKeyError::Unwrap {
                            source: WrapError::IvLength { .. },
                            ..
                        }
                    )
                },
                Code::INVALID_ARGUMENT,
            ),
            (
                packet("kbs:///default/key/1", r#","iv":"AAECAwQFBgcICQoM""#),
                |e| {
                    matches!(
                        e,
                        UnwrapKeyError::Unwrap {
                            source: WrapError::Authentication,
                            ..
                        }
                    )
                },
                Code::INTERNAL,
            ),
            (
                packet(
                    "k",
                    &format!(r#"{iv},"version":"0.1.0","provider":"keyvault""#),
                ),
                |e| matches!(e, UnwrapKeyError::Provider(KmsError::UnknownProvider(_))),
                Code::INVALID_ARGUMENT,
            ),
            (
                packet("absent", r#","version":"0.1.0","provider":"offline_fs""#),
                |e| matches!(e, UnwrapKeyError::Provider(KmsError::NotFound { .. })),
                Code::NOT_FOUND,
            ),
        ];
        for (input, expect, code) in cases {
            let err = unwrapper.handle_unwrap_request(&input).await.unwrap_err();
            assert!(expect(&err), "{}: {err:?}", String::from_utf8_lossy(&input));
            assert_eq!(unwrap_key_code(&err), code, "{err}");
        }
    }

    #[tokio::test]
    async fn as_an_ocicrypt_handler_it_unwraps_and_never_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let unwrapper = unwrapper(dir.path());
        let packet = format!(
            r#"{{"kid":"kbs:///default/key/1","wrapped_data":"{GCM_WRAPPED}","iv":"{GCM_IV}"}}"#
        );
        let answer = handle_request(&unwrapper, &request(packet.as_bytes()))
            .await
            .unwrap();
        let parsed =
            ocicrypt_rs::keywrap::keyprovider::KeyProviderKeyWrapProtocolOutput::from_json(&answer)
                .unwrap();
        assert_eq!(parsed.key_unwrap_results.optsdata.as_deref(), Some(OPTS));

        let wrap =
            br#"{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{}},"optsdata":"e30="}}"#;
        let err = handle_request(&unwrapper, wrap).await.unwrap_err();
        assert!(err.to_string().contains("only unwraps layer keys"), "{err}");
    }
}
