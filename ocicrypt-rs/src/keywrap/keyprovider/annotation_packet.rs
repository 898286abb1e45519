//! CoCo's annotation packets: what coco-keyprovider writes into
//! `org.opencontainers.image.enc.keys.provider.attestation-agent` and what the Confidential
//! Data Hub unwraps. v1 `{"kid","wrapped_data","iv","wrap_type"}`; v2 adds `version`,
//! `provider`, `provider_settings` and `annotations`. The private layer options are
//! encrypted with a key-encryption key (KEK) named by `kid` (a KBS resource URI).
//!
//! [`KekKeyProvider`] is a key provider over local KEK files: what an offline encryption
//! host needs, and the in-process hook a test or a CDH with a fetched KEK can use.

use std::collections::BTreeMap;

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit};
use ctr::cipher::{KeyIvInit, StreamCipher};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{KeyProviderError, KeyProviderHandler, KeyUnwrapRequest, KeyWrapRequest};
use crate::bytes::{b64, b64_opt};

/// Largest packet accepted.
pub(crate) const MAX_PACKET_LEN: usize = 1024 * 1024;

/// Why a packet could not be read, sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Not a packet.
    #[error("malformed annotation packet: {0}")]
    Malformed(String),
    /// `wrap_type` other than A256GCM / A256CTR.
    #[error("annotation packet wrap_type `{0}` is not supported (A256GCM, A256CTR are)")]
    UnsupportedWrapType(String),
    /// The KEK is not 32 bytes.
    #[error("the key-encryption key has {0} bytes; 32 are needed")]
    KekLength(usize),
    /// No KEK is known for the packet's `kid`.
    #[error("no key-encryption key for kid `{0}`")]
    UnknownKid(String),
    /// AES-GCM did not authenticate.
    #[error("annotation packet failed authentication: altered, or wrong key-encryption key")]
    Authentication,
}

/// The key-wrapping algorithm of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapType {
    /// AES-256-GCM, 12-byte IV (the default)
    A256Gcm,
    /// AES-256-CTR, 16-byte IV (no authentication)
    A256Ctr,
}

impl WrapType {
    fn name(self) -> &'static str {
        match self {
            WrapType::A256Gcm => "A256GCM",
            WrapType::A256Ctr => "A256CTR",
        }
    }
}

/// An annotation packet, v1 or v2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotationPacket {
    /// v2: `0.1.0`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// the KEK's id, e.g. `kbs:///default/key/1`
    pub kid: String,
    /// the encrypted private layer options
    #[serde(with = "b64")]
    pub wrapped_data: Vec<u8>,
    /// v2: who holds the KEK (`kbs` by default)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// the IV
    #[serde(with = "b64_opt", default, skip_serializing_if = "Option::is_none")]
    pub iv: Option<Vec<u8>>,
    /// `A256GCM` (default) or `A256CTR`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_type: Option<String>,
    /// v2: provider settings
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub provider_settings: Map<String, Value>,
    /// v2: extra annotations for the provider
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub annotations: Map<String, Value>,
}

impl AnnotationPacket {
    /// Parses a packet (the bytes of the keyprovider `annotation`).
    pub fn parse(data: &[u8]) -> Result<Self, PacketError> {
        if data.len() > MAX_PACKET_LEN {
            return Err(PacketError::Malformed(format!(
                "{} bytes is too large",
                data.len()
            )));
        }
        let packet: AnnotationPacket = crate::bytes::from_json_object(data)
            .map_err(|e| PacketError::Malformed(e.to_string()))?;
        if packet.kid.is_empty() {
            return Err(PacketError::Malformed("empty kid".into()));
        }
        Ok(packet)
    }

    /// Serializes the packet.
    pub fn to_json(&self) -> Result<Vec<u8>, PacketError> {
        serde_json::to_vec(self).map_err(|e| PacketError::Malformed(e.to_string()))
    }

    /// The wrap type, A256GCM when absent.
    pub fn wrap_type(&self) -> Result<WrapType, PacketError> {
        match self.wrap_type.as_deref() {
            None | Some("") | Some("A256GCM") => Ok(WrapType::A256Gcm),
            Some("A256CTR") => Ok(WrapType::A256Ctr),
            Some(other) => Err(PacketError::UnsupportedWrapType(
                other.chars().take(64).collect(),
            )),
        }
    }

    /// Encrypts `plaintext` (the private layer options) with `kek` into a v2 packet.
    pub fn seal(
        kid: &str,
        kek: &[u8],
        plaintext: &[u8],
        wrap_type: WrapType,
    ) -> Result<Self, PacketError> {
        let kek = kek_array(kek)?;
        let (iv, wrapped_data) = match wrap_type {
            WrapType::A256Gcm => {
                let mut iv = [0u8; 12];
                OsRng.fill_bytes(&mut iv);
                let sealed = Aes256Gcm::new(kek.as_ref().into())
                    .encrypt(&iv.into(), plaintext)
                    .map_err(|_| PacketError::Authentication)?;
                (iv.to_vec(), sealed)
            }
            WrapType::A256Ctr => {
                let mut iv = [0u8; 16];
                OsRng.fill_bytes(&mut iv);
                let mut data = plaintext.to_vec();
                ctr::Ctr128BE::<aes::Aes256>::new(kek.as_ref().into(), (&iv).into())
                    .apply_keystream(&mut data);
                (iv.to_vec(), data)
            }
        };
        Ok(AnnotationPacket {
            version: Some("0.1.0".into()),
            kid: kid.to_string(),
            wrapped_data,
            provider: Some("kbs".into()),
            iv: Some(iv),
            wrap_type: Some(wrap_type.name().into()),
            provider_settings: Map::new(),
            annotations: Map::new(),
        })
    }

    /// Decrypts the wrapped data with `kek`.
    pub fn open(&self, kek: &[u8]) -> Result<Zeroizing<Vec<u8>>, PacketError> {
        let kek = kek_array(kek)?;
        let iv = self
            .iv
            .as_deref()
            .ok_or_else(|| PacketError::Malformed("no iv".into()))?;
        match self.wrap_type()? {
            WrapType::A256Gcm => {
                let iv: [u8; 12] = iv.try_into().map_err(|_| {
                    PacketError::Malformed(format!("A256GCM iv of {} bytes", iv.len()))
                })?;
                Aes256Gcm::new(kek.as_ref().into())
                    .decrypt(&iv.into(), self.wrapped_data.as_slice())
                    .map(Zeroizing::new)
                    .map_err(|_| PacketError::Authentication)
            }
            WrapType::A256Ctr => {
                let iv: [u8; 16] = iv.try_into().map_err(|_| {
                    PacketError::Malformed(format!("A256CTR iv of {} bytes", iv.len()))
                })?;
                let mut data = Zeroizing::new(self.wrapped_data.clone());
                ctr::Ctr128BE::<aes::Aes256>::new(kek.as_ref().into(), (&iv).into())
                    .apply_keystream(&mut data);
                Ok(data)
            }
        }
    }
}

fn kek_array(kek: &[u8]) -> Result<Zeroizing<[u8; 32]>, PacketError> {
    let mut out = Zeroizing::new([0u8; 32]);
    if kek.len() != 32 {
        return Err(PacketError::KekLength(kek.len()));
    }
    out.copy_from_slice(kek);
    Ok(out)
}

/// A key provider holding KEKs by `kid`: unwraps packets for any known kid, wraps with
/// its default kid (or the `keyid=<kid>` parameter, as coco-keyprovider takes it).
#[derive(Clone, Default)]
pub struct KekKeyProvider {
    keks: BTreeMap<String, Zeroizing<Vec<u8>>>,
    default_kid: Option<String>,
    wrap_type: Option<WrapType>,
}

impl std::fmt::Debug for KekKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KekKeyProvider")
            .field("kids", &self.keks.keys().collect::<Vec<_>>())
            .field("default_kid", &self.default_kid)
            .finish()
    }
}

impl KekKeyProvider {
    /// No keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a 32-byte KEK for `kid`; the first one added is the default for wrapping.
    pub fn add_kek(&mut self, kid: &str, kek: &[u8]) -> Result<(), PacketError> {
        kek_array(kek)?;
        if self.default_kid.is_none() {
            self.default_kid = Some(kid.to_string());
        }
        self.keks
            .insert(kid.to_string(), Zeroizing::new(kek.to_vec()));
        Ok(())
    }

    /// Wraps with AES-256-CTR instead of AES-256-GCM.
    pub fn set_wrap_type(&mut self, wrap_type: WrapType) {
        self.wrap_type = Some(wrap_type);
    }

    /// The kid asked for in `keyid=<kid>` (coco-keyprovider's `k=v::k=v` parameters).
    fn requested_kid(parameters: &BTreeMap<String, Vec<Vec<u8>>>) -> Option<String> {
        parameters.values().flatten().find_map(|p| {
            let text = std::str::from_utf8(p).ok()?;
            text.split("::")
                .find_map(|kv| kv.strip_prefix("keyid=").map(str::to_string))
        })
    }
}

#[async_trait::async_trait]
impl KeyProviderHandler for KekKeyProvider {
    async fn wrap_key(&self, request: KeyWrapRequest) -> Result<Vec<u8>, KeyProviderError> {
        let kid = Self::requested_kid(&request.parameters)
            .or_else(|| self.default_kid.clone())
            .ok_or_else(|| KeyProviderError::Handler("no KEK configured".into()))?;
        let kek = self
            .keks
            .get(&kid)
            .ok_or_else(|| PacketError::UnknownKid(kid.clone()))?;
        let packet = AnnotationPacket::seal(
            &kid,
            kek,
            &request.optsdata,
            self.wrap_type.unwrap_or(WrapType::A256Gcm),
        )?;
        Ok(packet.to_json()?)
    }

    async fn unwrap_key(
        &self,
        request: KeyUnwrapRequest,
    ) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        let packet = AnnotationPacket::parse(&request.annotation)?;
        let kek = self
            .keks
            .get(&packet.kid)
            .ok_or_else(|| PacketError::UnknownKid(packet.kid.chars().take(200).collect()))?;
        Ok(packet.open(kek)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn packets_seal_open_and_detect_tampering() {
        let kek = [7u8; 32];
        for wt in [WrapType::A256Gcm, WrapType::A256Ctr] {
            let p = AnnotationPacket::seal("kbs:///default/key/1", &kek, b"{\"symkey\":\"x\"}", wt)
                .unwrap();
            let back = AnnotationPacket::parse(&p.to_json().unwrap()).unwrap();
            assert_eq!(back, p);
            assert_eq!(back.open(&kek).unwrap().as_slice(), b"{\"symkey\":\"x\"}");
        }
        let mut p = AnnotationPacket::seal("k", &kek, b"opts", WrapType::A256Gcm).unwrap();
        assert!(matches!(
            p.open(&[8u8; 32]),
            Err(PacketError::Authentication)
        ));
        assert!(matches!(
            p.open(&[8u8; 16]),
            Err(PacketError::KekLength(16))
        ));
        p.wrapped_data[0] ^= 1;
        assert!(matches!(p.open(&kek), Err(PacketError::Authentication)));
    }

    #[test]
    fn v1_packets_parse_with_defaults() {
        let p = AnnotationPacket::parse(
            br#"{"kid":"kbs:///default/key/1","wrapped_data":"AAAA","iv":"AAAAAAAAAAAAAAAA"}"#,
        )
        .unwrap();
        assert_eq!(p.version, None);
        assert_eq!(p.wrap_type().unwrap(), WrapType::A256Gcm);
        for bad in [
            &b""[..],
            br#"{"wrapped_data":"AAAA"}"#,
            br#"{"kid":"","wrapped_data":"AAAA"}"#,
            br#"{"kid":"k","wrapped_data":"%%"}"#,
            br#"{"kid":"k","wrapped_data":"AA","iv":7}"#,
            br#"{"kid":5,"wrapped_data":"AA"}"#,
            br#"["k","AA"]"#,
        ] {
            assert!(
                matches!(AnnotationPacket::parse(bad), Err(PacketError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let odd = AnnotationPacket::parse(br#"{"kid":"k","wrapped_data":"AA","wrap_type":"RSA"}"#)
            .unwrap();
        assert!(matches!(
            odd.open(&[0u8; 32]),
            Err(PacketError::Malformed(_)) | Err(PacketError::UnsupportedWrapType(_))
        ));
        let no_iv = AnnotationPacket::parse(br#"{"kid":"k","wrapped_data":"AA"}"#).unwrap();
        assert!(matches!(
            no_iv.open(&[0u8; 32]),
            Err(PacketError::Malformed(_))
        ));
    }
}
