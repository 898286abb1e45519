//! The TEE key pair: generated inside the guest for each attestation, its public half sent
//! as the `tee-pubkey` JWK, its private half unwrapping the KBS's JWE replies.
//!
//! Key types: EC P-256 (the default) and P-521 (`ECDH-ES+A256KW`), RSA-2048
//! (`RSA-OAEP-256`), and ML-KEM-768 (`ML-KEM-768+A192KW`, trustee's experimental
//! post-quantum key, sent as the `AKP` JWK of draft-ietf-jose-pqc-kem).
//!
//! Key material is zeroized on drop (the RustCrypto secret key types wipe themselves, AWS-LC
//! wipes the RSA key when it frees it) and never appears in `Debug` output; PEM exports are returned in `Zeroizing` buffers. An
//! ML-KEM-768 key exports as PKCS#8 `PRIVATE KEY` with `id-alg-ml-kem-768` and the 64-byte
//! seed form of RFC 9935 (what OpenSSL 3.5+ and Python's `cryptography` write); upstream
//! cannot export it at all, so its AA cannot hand such a key to the data hub.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ml_kem::KeyExport;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::der::pem as pem_codec;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::wire::TeePubKey;

/// The JWE key-management algorithms announced for EC, RSA and ML-KEM-768 keys.
pub(crate) use jose::{ALG_ECDH_ES_A256KW, ALG_ML_KEM_768_A192KW, ALG_RSA_OAEP_256};
/// Bytes of an ML-KEM-768 encapsulation (public) key (FIPS 203).
#[cfg(test)]
const ML_KEM_768_PUBLIC_KEY_LEN: usize = 1184;
/// Bytes of an ML-KEM seed (`d || z`), the private key.
const ML_KEM_SEED_LEN: usize = 64;
/// PKCS#8 v1 `OneAsymmetricKey` of ML-KEM-768 in seed form up to the seed:
/// SEQUENCE { INTEGER 0, SEQUENCE { OID 2.16.840.1.101.3.4.4.2 }, OCTET STRING { [0] 64 bytes } }.
const ML_KEM_768_PKCS8_SEED_PREFIX: [u8; 22] = [
    0x30, 0x54, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
    0x04, 0x02, 0x04, 0x42, 0x80, 0x40,
];
/// `id-alg-ml-kem-768`
const ID_ALG_ML_KEM_768: p256::pkcs8::ObjectIdentifier =
    p256::pkcs8::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.2");

const RSA_BITS: usize = 2048;

/// Which key pair to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TeeKeyAlgorithm {
    #[default]
    EcP256,
    EcP521,
    Rsa2048,
    /// ML-KEM-768 (FIPS 203), replies wrapped with `ML-KEM-768+A192KW`.
    MlKem768,
}

impl TeeKeyAlgorithm {
    /// Configuration name: `ec-p256`, `ec-p521`, `rsa-2048` or `ml-kem-768`.
    pub fn name(self) -> &'static str {
        match self {
            TeeKeyAlgorithm::EcP256 => "ec-p256",
            TeeKeyAlgorithm::EcP521 => "ec-p521",
            TeeKeyAlgorithm::Rsa2048 => "rsa-2048",
            TeeKeyAlgorithm::MlKem768 => "ml-kem-768",
        }
    }
}

impl std::str::FromStr for TeeKeyAlgorithm {
    type Err = KeyError;

    /// Accepts the configuration names, the JOSE curve names and the JWE `alg` of the
    /// ML-KEM key, ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ec-p256" | "p-256" | "p256" | "ec" => Ok(TeeKeyAlgorithm::EcP256),
            "ec-p521" | "p-521" | "p521" => Ok(TeeKeyAlgorithm::EcP521),
            "rsa-2048" | "rsa2048" | "rsa" => Ok(TeeKeyAlgorithm::Rsa2048),
            "ml-kem-768" | "ml-kem-768+a192kw" | "mlkem768" => Ok(TeeKeyAlgorithm::MlKem768),
            _ => Err(KeyError::UnknownAlgorithm(s.to_string())),
        }
    }
}

impl std::fmt::Display for TeeKeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Key generation, import and export failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("unknown TEE key algorithm {0:?} (use ec-p256, ec-p521, rsa-2048 or ml-kem-768)")]
    UnknownAlgorithm(String),
    #[error("generating the {algorithm} TEE key failed: {reason}")]
    Generate {
        algorithm: TeeKeyAlgorithm,
        reason: String,
    },
    #[error("exporting the TEE key as PEM failed: {0}")]
    Export(String),
    #[error("the TEE key PEM is not a P-256/P-521 PKCS#8 or SEC1 key, an RSA PKCS#1/PKCS#8 key of at least 2048 bits, nor an ML-KEM-768 PKCS#8 key in seed form")]
    UnrecognizedPem,
}

pub(crate) enum KeyMaterial {
    P256(p256::SecretKey),
    P521(p521::SecretKey),
    Rsa(Box<RsaKey>),
    /// wipes itself on drop (ml-kem's `zeroize` feature)
    MlKem768(Box<ml_kem::DecapsulationKey768>),
}

/// An RSA TEE key (AWS-LC, constant-time decryption) and its public numbers for the JWK.
pub(crate) struct RsaKey {
    key: jose::RsaPrivateKey,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    fn new(key: jose::RsaPrivateKey) -> Result<Self, jose::RsaError> {
        let (n, e) = key.public_key().components()?;
        Ok(Self { key, n, e })
    }
}

/// The ML-KEM-768 key of a 64-byte seed `d || z` (FIPS 203 key generation).
fn ml_kem_768_from_seed(seed: &[u8; ML_KEM_SEED_LEN]) -> ml_kem::DecapsulationKey768 {
    let mut seed = ml_kem::Seed::from(*seed);
    let key = ml_kem::DecapsulationKey768::from_seed(seed);
    seed.as_mut_slice().zeroize();
    key
}

/// PKCS#8 DER of an ML-KEM-768 key in seed form.
fn ml_kem_768_to_pkcs8(key: &ml_kem::DecapsulationKey768) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let mut seed = key
        .to_seed()
        .ok_or_else(|| KeyError::Export("the ML-KEM-768 key has no seed".to_string()))?;
    let mut der = Zeroizing::new(Vec::with_capacity(
        ML_KEM_768_PKCS8_SEED_PREFIX.len() + ML_KEM_SEED_LEN,
    ));
    der.extend_from_slice(&ML_KEM_768_PKCS8_SEED_PREFIX);
    der.extend_from_slice(seed.as_slice());
    seed.as_mut_slice().zeroize();
    Ok(der)
}

/// An ML-KEM-768 key from a PKCS#8 PEM in seed form (`[0]` 64-byte seed); `None` for any
/// other key.
fn ml_kem_768_from_pkcs8_pem(pem: &str) -> Option<ml_kem::DecapsulationKey768> {
    let (label, der) = pem_codec::decode_vec(pem.as_bytes()).ok()?;
    let der = Zeroizing::new(der);
    if label != "PRIVATE KEY" {
        return None;
    }
    let info = p256::pkcs8::PrivateKeyInfo::try_from(der.as_slice()).ok()?;
    if info.algorithm.oid != ID_ALG_ML_KEM_768 || info.algorithm.parameters.is_some() {
        return None;
    }
    // ML-KEM-PrivateKey ::= CHOICE { seed [0] IMPLICIT OCTET STRING (SIZE (64)), ... }
    let seed: &[u8; ML_KEM_SEED_LEN] = match info.private_key {
        [0x80, 0x40, seed @ ..] => seed.try_into().ok()?,
        _ => return None,
    };
    let key = ml_kem_768_from_seed(seed);
    // A public key in a PKCS#8 v2 document must be the one the seed gives.
    if let Some(public) = info.public_key {
        if public != key.encapsulation_key().to_bytes().as_slice() {
            return None;
        }
    }
    Some(key)
}

/// An RSA key from a PEM block of `label` read by `read` (PKCS#1 or PKCS#8 DER).
fn rsa_from_pem(
    pem: &str,
    label: &str,
    read: fn(&[u8]) -> Result<jose::RsaPrivateKey, jose::RsaError>,
) -> Option<KeyMaterial> {
    let (found, der) = pem_codec::decode_vec(pem.as_bytes()).ok()?;
    let der = Zeroizing::new(der);
    if found != label {
        return None;
    }
    let key = RsaKey::new(read(&der).ok()?).ok()?;
    Some(KeyMaterial::Rsa(Box::new(key)))
}

/// A TEE key pair (private key material; zeroized on drop).
pub struct TeeKeyPair {
    pub(crate) material: KeyMaterial,
}

impl std::fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeKeyPair")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl TeeKeyPair {
    /// Generates a fresh key pair from the OS random source. RSA generation is CPU-heavy:
    /// call it from a blocking task on async paths.
    pub fn generate(algorithm: TeeKeyAlgorithm) -> Result<Self, KeyError> {
        let material = match algorithm {
            TeeKeyAlgorithm::EcP256 => KeyMaterial::P256(p256::SecretKey::random(&mut OsRng)),
            TeeKeyAlgorithm::EcP521 => KeyMaterial::P521(p521::SecretKey::random(&mut OsRng)),
            TeeKeyAlgorithm::Rsa2048 => KeyMaterial::Rsa(Box::new(
                jose::RsaPrivateKey::generate_2048()
                    .and_then(RsaKey::new)
                    .map_err(|e| KeyError::Generate {
                        algorithm,
                        reason: e.to_string(),
                    })?,
            )),
            TeeKeyAlgorithm::MlKem768 => {
                let mut seed = Zeroizing::new([0u8; ML_KEM_SEED_LEN]);
                OsRng
                    .try_fill_bytes(seed.as_mut())
                    .map_err(|e| KeyError::Generate {
                        algorithm,
                        reason: e.to_string(),
                    })?;
                KeyMaterial::MlKem768(Box::new(ml_kem_768_from_seed(&seed)))
            }
        };
        Ok(Self { material })
    }

    pub fn algorithm(&self) -> TeeKeyAlgorithm {
        match &self.material {
            KeyMaterial::P256(_) => TeeKeyAlgorithm::EcP256,
            KeyMaterial::P521(_) => TeeKeyAlgorithm::EcP521,
            KeyMaterial::Rsa(_) => TeeKeyAlgorithm::Rsa2048,
            KeyMaterial::MlKem768(_) => TeeKeyAlgorithm::MlKem768,
        }
    }

    /// The private key as `jose` uses it to open a reply.
    pub(crate) fn decryption_key(&self) -> jose::DecryptionKey<'_> {
        match &self.material {
            KeyMaterial::P256(key) => jose::DecryptionKey::P256(key),
            KeyMaterial::P521(key) => jose::DecryptionKey::P521(key),
            KeyMaterial::Rsa(key) => jose::DecryptionKey::Rsa(&key.key),
            KeyMaterial::MlKem768(key) => jose::DecryptionKey::MlKem768(key),
        }
    }

    /// The public key as the `tee-pubkey` JWK.
    pub fn public_jwk(&self) -> TeePubKey {
        // `uncompressed` is SEC1 `04 || x || y` with fixed-size coordinates.
        fn ec(crv: &str, uncompressed: &[u8]) -> TeePubKey {
            let coordinates = uncompressed.get(1..).unwrap_or_default();
            let (x, y) = coordinates.split_at(coordinates.len() / 2);
            TeePubKey::Ec {
                crv: crv.to_string(),
                alg: ALG_ECDH_ES_A256KW.to_string(),
                x: URL_SAFE_NO_PAD.encode(x),
                y: URL_SAFE_NO_PAD.encode(y),
            }
        }
        match &self.material {
            KeyMaterial::P256(key) => {
                ec("P-256", key.public_key().to_encoded_point(false).as_bytes())
            }
            KeyMaterial::P521(key) => {
                ec("P-521", key.public_key().to_encoded_point(false).as_bytes())
            }
            KeyMaterial::Rsa(key) => TeePubKey::Rsa {
                alg: ALG_RSA_OAEP_256.to_string(),
                n: URL_SAFE_NO_PAD.encode(&key.n),
                e: URL_SAFE_NO_PAD.encode(&key.e),
            },
            KeyMaterial::MlKem768(key) => TeePubKey::Akp {
                alg: ALG_ML_KEM_768_A192KW.to_string(),
                public: URL_SAFE_NO_PAD.encode(key.encapsulation_key().to_bytes()),
            },
        }
    }

    /// The private key as PEM, as AA's `GetToken("kbs")` returns it: EC keys as PKCS#8
    /// (`PRIVATE KEY`), RSA keys as PKCS#1 (`RSA PRIVATE KEY`), ML-KEM-768 keys as PKCS#8
    /// in seed form.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let export = |e: &dyn std::fmt::Display| KeyError::Export(e.to_string());
        match &self.material {
            KeyMaterial::P256(key) => key.to_pkcs8_pem(LineEnding::LF).map_err(|e| export(&e)),
            KeyMaterial::P521(key) => key.to_pkcs8_pem(LineEnding::LF).map_err(|e| export(&e)),
            KeyMaterial::Rsa(key) => {
                let der = key.key.to_pkcs1_der().map_err(|e| export(&e))?;
                pem_codec::encode_string("RSA PRIVATE KEY", LineEnding::LF, &der)
                    .map(Zeroizing::new)
                    .map_err(|e| export(&e))
            }
            KeyMaterial::MlKem768(key) => {
                let der = ml_kem_768_to_pkcs8(key)?;
                pem_codec::encode_string("PRIVATE KEY", LineEnding::LF, &der)
                    .map(Zeroizing::new)
                    .map_err(|e| export(&e))
            }
        }
    }

    /// Imports a private key PEM (PKCS#8 EC/RSA/ML-KEM-768, SEC1 EC, or PKCS#1 RSA), e.g.
    /// the `tee_keypair` of AA's token reply.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let material = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            rsa_from_pem(pem, "RSA PRIVATE KEY", jose::RsaPrivateKey::from_pkcs1_der)
        } else if pem.starts_with("-----BEGIN EC PRIVATE KEY-----") {
            p256::SecretKey::from_sec1_pem(pem)
                .map(KeyMaterial::P256)
                .or_else(|_| p521::SecretKey::from_sec1_pem(pem).map(KeyMaterial::P521))
                .ok()
        } else if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
            p256::SecretKey::from_pkcs8_pem(pem)
                .map(KeyMaterial::P256)
                .or_else(|_| p521::SecretKey::from_pkcs8_pem(pem).map(KeyMaterial::P521))
                .ok()
                .or_else(|| rsa_from_pem(pem, "PRIVATE KEY", jose::RsaPrivateKey::from_pkcs8_der))
                .or_else(|| {
                    ml_kem_768_from_pkcs8_pem(pem).map(|key| KeyMaterial::MlKem768(Box::new(key)))
                })
        } else {
            None
        };
        match material {
            Some(KeyMaterial::Rsa(key)) if key.key.bits() < RSA_BITS => {
                Err(KeyError::UnrecognizedPem)
            }
            Some(material) => Ok(Self { material }),
            None => Err(KeyError::UnrecognizedPem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `tee_keypair` that upstream AA returned in the capture (aa-token-response.json).
    const CAPTURED_AA_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPrH/91NaJSM+ivBt\n3GssxEdcnUO+zS7i7LKQ1ygukjihRANCAARbX245h9tUENV3xGeVIJEEa/bRXSSN\nPybmtwjx14RpC0es/rRwYEzM8OZsB+xs9oqpsOHu1neoy7CB5dVInfHY\n-----END PRIVATE KEY-----\n";

    #[test]
    fn imports_the_upstream_aa_key_and_matches_the_token_claims() {
        let key = TeeKeyPair::from_pem(CAPTURED_AA_KEY).unwrap();
        assert_eq!(key.algorithm(), TeeKeyAlgorithm::EcP256);
        // The tee-pubkey inside the token issued for that key (aa-token-response.json).
        assert_eq!(
            key.public_jwk(),
            TeePubKey::Ec {
                crv: "P-256".into(),
                alg: "ECDH-ES+A256KW".into(),
                x: "W19uOYfbVBDVd8RnlSCRBGv20V0kjT8m5rcI8deEaQs".into(),
                y: "R6z-tHBgTMzw5mwH7Gz2iqmw4e7Wd6jLsIHl1Uid8dg".into(),
            }
        );
        assert_eq!(key.to_pem().unwrap().as_str(), CAPTURED_AA_KEY);
    }

    #[test]
    fn ec_keys_round_trip_through_pem_and_have_fixed_size_coordinates() {
        for (alg, crv, len) in [
            (TeeKeyAlgorithm::EcP256, "P-256", 32),
            (TeeKeyAlgorithm::EcP521, "P-521", 66),
        ] {
            let key = TeeKeyPair::generate(alg).unwrap();
            let pem = key.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let back = TeeKeyPair::from_pem(&pem).unwrap();
            assert_eq!(back.public_jwk(), key.public_jwk());
            let TeePubKey::Ec {
                crv: c,
                alg: a,
                x,
                y,
            } = key.public_jwk()
            else {
                panic!("EC key expected");
            };
            assert_eq!(c, crv);
            assert_eq!(a, ALG_ECDH_ES_A256KW);
            assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap().len(), len);
            assert_eq!(URL_SAFE_NO_PAD.decode(y).unwrap().len(), len);
        }
    }

    #[test]
    fn rsa_key_exports_pkcs1_and_announces_oaep_256() {
        let key = TeeKeyPair::generate(TeeKeyAlgorithm::Rsa2048).unwrap();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let back = TeeKeyPair::from_pem(&pem).unwrap();
        assert_eq!(back.public_jwk(), key.public_jwk());
        let TeePubKey::Rsa { alg, n, e } = key.public_jwk() else {
            panic!("RSA key expected");
        };
        assert_eq!(alg, ALG_RSA_OAEP_256);
        assert_eq!(URL_SAFE_NO_PAD.decode(n).unwrap().len(), 256);
        assert_eq!(e, "AQAB");
        assert!(!format!("{key:?}").contains("BEGIN"));
    }

    #[test]
    fn bad_pem_is_refused() {
        for bad in [
            "",
            "not a pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            &CAPTURED_AA_KEY[..100],
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ] {
            assert!(matches!(
                TeeKeyPair::from_pem(bad),
                Err(KeyError::UnrecognizedPem)
            ));
        }
    }

    /// The key types wipe themselves when dropped; this pins that the claim stays true.
    #[test]
    fn key_material_types_zeroize_on_drop() {
        fn zeroizes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroizes_on_drop::<p256::SecretKey>();
        zeroizes_on_drop::<p521::SecretKey>();
        zeroizes_on_drop::<ml_kem::DecapsulationKey768>();
    }

    #[test]
    fn ml_kem_key_announces_an_akp_jwk_and_round_trips_through_pkcs8_seed_pem() {
        let key = TeeKeyPair::generate(TeeKeyAlgorithm::MlKem768).unwrap();
        assert_eq!(key.algorithm(), TeeKeyAlgorithm::MlKem768);
        let TeePubKey::Akp { alg, public } = key.public_jwk() else {
            panic!("AKP key expected, got {:?}", key.public_jwk());
        };
        assert_eq!(alg, ALG_ML_KEM_768_A192KW);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&public).unwrap().len(),
            ML_KEM_768_PUBLIC_KEY_LEN
        );
        // the JWK as trustee's kbs-types reads it
        let jwk = serde_json::to_value(key.public_jwk()).unwrap();
        assert_eq!(
            jwk,
            serde_json::json!({"kty": "AKP", "alg": "ML-KEM-768+A192KW", "pub": public})
        );

        let pem = key.to_pem().unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{}",
            pem.as_str()
        );
        let (_, der) = pem_codec::decode_vec(pem.as_bytes()).unwrap();
        assert_eq!(der.len(), 86);
        assert_eq!(&der[..22], &ML_KEM_768_PKCS8_SEED_PREFIX);
        let back = TeeKeyPair::from_pem(&pem).unwrap();
        assert_eq!(back.algorithm(), TeeKeyAlgorithm::MlKem768);
        assert_eq!(back.public_jwk(), key.public_jwk());
        assert!(!format!("{key:?}").contains("BEGIN"));
        // two keys differ
        let other = TeeKeyPair::generate(TeeKeyAlgorithm::MlKem768).unwrap();
        assert_ne!(other.public_jwk(), key.public_jwk());
    }

    #[test]
    fn malformed_ml_kem_pems_are_refused() {
        let key = TeeKeyPair::generate(TeeKeyAlgorithm::MlKem768).unwrap();
        let (_, der) = pem_codec::decode_vec(key.to_pem().unwrap().as_bytes()).unwrap();
        let pem =
            |der: &[u8]| pem_codec::encode_string("PRIVATE KEY", LineEnding::LF, der).unwrap();
        let mut ml_kem_512 = der.clone();
        ml_kem_512[17] = 0x01; // id-alg-ml-kem-512
        let mut expanded_tag = der.clone();
        expanded_tag[20] = 0x04; // an OCTET STRING, not the [0] seed
        let truncated_seed = {
            let mut d = der[..85].to_vec();
            d[1] = 0x53;
            d[19] = 0x41;
            d[21] = 0x3f;
            d
        };
        for bad in [
            pem(&ml_kem_512),
            pem(&expanded_tag),
            pem(&truncated_seed),
            pem(&der[..60]),
            pem_codec::encode_string("ENCRYPTED PRIVATE KEY", LineEnding::LF, &der).unwrap(),
        ] {
            assert!(
                matches!(TeeKeyPair::from_pem(&bad), Err(KeyError::UnrecognizedPem)),
                "{bad}"
            );
        }
    }

    #[test]
    fn algorithm_names_parse() {
        assert_eq!(
            "EC-P256".parse::<TeeKeyAlgorithm>().unwrap(),
            TeeKeyAlgorithm::EcP256
        );
        assert_eq!(
            "p-521".parse::<TeeKeyAlgorithm>().unwrap(),
            TeeKeyAlgorithm::EcP521
        );
        assert_eq!(
            "rsa-2048".parse::<TeeKeyAlgorithm>().unwrap(),
            TeeKeyAlgorithm::Rsa2048
        );
        for name in ["ml-kem-768", "ML-KEM-768+A192KW", "mlkem768"] {
            assert_eq!(
                name.parse::<TeeKeyAlgorithm>().unwrap(),
                TeeKeyAlgorithm::MlKem768
            );
        }
        assert_eq!(TeeKeyAlgorithm::MlKem768.to_string(), "ml-kem-768");
        for bad in ["ml-kem", "ml-kem-512", "ML-KEM-1024+A256KW", ""] {
            assert!(matches!(
                bad.parse::<TeeKeyAlgorithm>(),
                Err(KeyError::UnknownAlgorithm(_))
            ));
        }
    }
}
