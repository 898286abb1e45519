//! The TEE key pair: generated inside the guest for each attestation, its public half sent
//! as the `tee-pubkey` JWK, its private half unwrapping the KBS's JWE replies.
//!
//! Key material is zeroized on drop (the RustCrypto secret key types wipe themselves) and
//! never appears in `Debug` output; PEM exports are returned in `Zeroizing` buffers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand_core::OsRng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use crate::wire::TeePubKey;

/// JWE key-management algorithm announced for EC keys.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// JWE key-management algorithm announced for RSA keys.
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
/// Deprecated RSA PKCS#1 v1.5 key transport (accepted only when allowed in config).
pub const ALG_RSA1_5: &str = "RSA1_5";

const RSA_BITS: usize = 2048;

/// Which key pair to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TeeKeyAlgorithm {
    #[default]
    EcP256,
    EcP521,
    Rsa2048,
}

impl TeeKeyAlgorithm {
    /// Configuration name: `ec-p256`, `ec-p521` or `rsa-2048`.
    pub fn name(self) -> &'static str {
        match self {
            TeeKeyAlgorithm::EcP256 => "ec-p256",
            TeeKeyAlgorithm::EcP521 => "ec-p521",
            TeeKeyAlgorithm::Rsa2048 => "rsa-2048",
        }
    }
}

impl std::str::FromStr for TeeKeyAlgorithm {
    type Err = KeyError;

    /// Accepts the configuration names and the JOSE curve names, ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ec-p256" | "p-256" | "p256" | "ec" => Ok(TeeKeyAlgorithm::EcP256),
            "ec-p521" | "p-521" | "p521" => Ok(TeeKeyAlgorithm::EcP521),
            "rsa-2048" | "rsa2048" | "rsa" => Ok(TeeKeyAlgorithm::Rsa2048),
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
    #[error("unknown TEE key algorithm {0:?} (use ec-p256, ec-p521 or rsa-2048)")]
    UnknownAlgorithm(String),
    #[error("generating the {algorithm} TEE key failed: {reason}")]
    Generate {
        algorithm: TeeKeyAlgorithm,
        reason: String,
    },
    #[error("exporting the TEE key as PEM failed: {0}")]
    Export(String),
    #[error("the TEE key PEM is not a P-256/P-521 PKCS#8 or SEC1 key nor an RSA PKCS#1/PKCS#8 key of at least 2048 bits")]
    UnrecognizedPem,
}

pub(crate) enum KeyMaterial {
    P256(p256::SecretKey),
    P521(p521::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
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
                rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| KeyError::Generate {
                    algorithm,
                    reason: e.to_string(),
                })?,
            )),
        };
        Ok(Self { material })
    }

    pub fn algorithm(&self) -> TeeKeyAlgorithm {
        match &self.material {
            KeyMaterial::P256(_) => TeeKeyAlgorithm::EcP256,
            KeyMaterial::P521(_) => TeeKeyAlgorithm::EcP521,
            KeyMaterial::Rsa(_) => TeeKeyAlgorithm::Rsa2048,
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
                n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            },
        }
    }

    /// The private key as PEM, as AA's `GetToken("kbs")` returns it: EC keys as PKCS#8
    /// (`PRIVATE KEY`), RSA keys as PKCS#1 (`RSA PRIVATE KEY`).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let export = |e: &dyn std::fmt::Display| KeyError::Export(e.to_string());
        match &self.material {
            KeyMaterial::P256(key) => key.to_pkcs8_pem(LineEnding::LF).map_err(|e| export(&e)),
            KeyMaterial::P521(key) => key.to_pkcs8_pem(LineEnding::LF).map_err(|e| export(&e)),
            KeyMaterial::Rsa(key) => key.to_pkcs1_pem(LineEnding::LF).map_err(|e| export(&e)),
        }
    }

    /// Imports a private key PEM (PKCS#8 EC/RSA, SEC1 EC, or PKCS#1 RSA), e.g. the
    /// `tee_keypair` of AA's token reply.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let material = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                .ok()
                .map(|key| KeyMaterial::Rsa(Box::new(key)))
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
                .or_else(|| {
                    rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                        .ok()
                        .map(|key| KeyMaterial::Rsa(Box::new(key)))
                })
        } else {
            None
        };
        match material {
            Some(KeyMaterial::Rsa(key)) if key.size() * 8 < RSA_BITS => {
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
        zeroizes_on_drop::<rsa::RsaPrivateKey>();
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
        assert!(matches!(
            "ml-kem".parse::<TeeKeyAlgorithm>(),
            Err(KeyError::UnknownAlgorithm(_))
        ));
    }
}
