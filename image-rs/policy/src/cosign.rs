//! cosign key-based signatures: PEM public keys (ECDSA P-256 and P-384, Ed25519, RSA) and
//! the signature check sigstore's `LoadVerifier(key, SHA256)` does: ECDSA (ASN.1 DER) and
//! RSA PKCS#1 v1.5 over the SHA-256 of the payload, Ed25519 over the payload itself.

use base64::Engine;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest as _, Sha256};

/// A trusted cosign public key.
#[derive(Debug, Clone)]
pub(crate) enum CosignKey {
    /// ECDSA on P-256
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA on P-384 (SHA-256 digests, as cosign)
    P384(p384::ecdsa::VerifyingKey),
    /// Ed25519
    Ed25519(ed25519_dalek::VerifyingKey),
    /// RSA, PKCS#1 v1.5 with SHA-256
    Rsa(rsa::RsaPublicKey),
}

/// Smallest RSA modulus accepted.
const MIN_RSA_BITS: usize = 2048;

impl CosignKey {
    /// Parses one PEM public key (`-----BEGIN PUBLIC KEY-----`, or PKCS#1
    /// `-----BEGIN RSA PUBLIC KEY-----`).
    pub(crate) fn parse_pem(pem: &[u8]) -> Result<Self, String> {
        let text =
            std::str::from_utf8(pem).map_err(|_| "the public key is not PEM text".to_string())?;
        let text = text.trim();
        if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let key = rsa::RsaPublicKey::from_pkcs1_pem(text)
                .map_err(|e| format!("invalid PKCS#1 RSA public key: {e}"))?;
            return Self::rsa(key);
        }
        if !text.starts_with("-----BEGIN PUBLIC KEY-----") {
            return Err("not a PEM public key (expected -----BEGIN PUBLIC KEY-----)".into());
        }
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(CosignKey::P256(key));
        }
        if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(CosignKey::P384(key));
        }
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            return Ok(CosignKey::Ed25519(key));
        }
        match rsa::RsaPublicKey::from_public_key_pem(text) {
            Ok(key) => Self::rsa(key),
            Err(_) => Err(
                "unsupported or malformed public key (ECDSA P-256/P-384, Ed25519 and RSA are supported)".into(),
            ),
        }
    }

    fn rsa(key: rsa::RsaPublicKey) -> Result<Self, String> {
        use rsa::traits::PublicKeyParts;
        let bits = key.n().bits();
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "RSA key of {bits} bits is too small (at least {MIN_RSA_BITS})"
            ));
        }
        Ok(CosignKey::Rsa(key))
    }

    /// The algorithm, for messages.
    pub(crate) fn algorithm(&self) -> &'static str {
        match self {
            CosignKey::P256(_) => "ECDSA P-256",
            CosignKey::P384(_) => "ECDSA P-384",
            CosignKey::Ed25519(_) => "Ed25519",
            CosignKey::Rsa(_) => "RSA",
        }
    }

    /// Checks `signature_b64` (the `dev.cosignproject.cosign/signature` annotation) over
    /// `payload`.
    pub(crate) fn verify(&self, payload: &[u8], signature_b64: &str) -> Result<(), String> {
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|e| format!("signature annotation is not base64: {e}"))?;
        let failed = || format!("{} signature does not verify", self.algorithm());
        match self {
            CosignKey::P256(key) => {
                use p256::ecdsa::signature::Verifier;
                let sig =
                    p256::ecdsa::DerSignature::from_bytes(&signature).map_err(|_| failed())?;
                key.verify(payload, &sig).map_err(|_| failed())
            }
            CosignKey::P384(key) => {
                use p384::ecdsa::signature::hazmat::PrehashVerifier;
                let sig =
                    p384::ecdsa::DerSignature::from_bytes(&signature).map_err(|_| failed())?;
                let digest = Sha256::digest(payload);
                key.verify_prehash(&digest, &sig).map_err(|_| failed())
            }
            CosignKey::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(&signature).map_err(|_| failed())?;
                key.verify_strict(payload, &sig).map_err(|_| failed())
            }
            CosignKey::Rsa(key) => {
                let digest = Sha256::digest(payload);
                key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
                    .map_err(|_| failed())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEV4XAyO8AORhG/eFbPrfegV9A6KEg
1hbQaGTg+BTLMe18ShvY8hUTYbcP2BdsrUpR4wMdHgOgoT0jl55KsnC7vA==
-----END PUBLIC KEY-----";

    #[test]
    fn public_keys_parse_by_type_and_garbage_is_refused() {
        let key = CosignKey::parse_pem(P256_PUB.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), "ECDSA P-256");
        for bad in [
            "",
            "not pem",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----",
        ] {
            assert!(CosignKey::parse_pem(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(CosignKey::parse_pem(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn signatures_that_do_not_verify_are_refused() {
        let key = CosignKey::parse_pem(P256_PUB.as_bytes()).unwrap();
        assert!(key
            .verify(b"payload", "!!!")
            .unwrap_err()
            .contains("base64"));
        assert!(key
            .verify(b"payload", "AAAA")
            .unwrap_err()
            .contains("does not verify"));
        assert!(key.verify(b"payload", "").is_err());
    }
}
