//! The `jwe` key wrapper: the private layer options encrypted as a JWE (RFC 7516) for one
//! or more recipients, content encryption `A256GCM`, with the workspace's `jose` crate.
//!
//! Reads compact, flattened and general JSON serializations with key management
//! `RSA-OAEP` (SHA-1, what skopeo writes), `RSA-OAEP-256`, `ECDH-ES` and
//! `ECDH-ES+A128KW/A192KW/A256KW` on P-256/384/521; `RSA1_5` is refused. Writes what go-jose
//! writes for containers/ocicrypt: flattened JSON with everything in the protected header
//! for one recipient, general JSON with per-recipient headers for several.

use jose::{DecryptionKey, JweOptions, RecipientKey};
use zeroize::Zeroizing;

use crate::keys::{PrivateKey, PublicKey};

pub use jose::{Jwe, JweError, KeyAlgorithm};
pub use jose::{MAX_JWE_LEN, MAX_RECIPIENTS};

/// containers/ocicrypt's choice for a key: RSA-OAEP for RSA, ECDH-ES+A256KW for EC.
pub fn default_algorithm(key: &PublicKey) -> KeyAlgorithm {
    match key {
        PublicKey::Rsa(_) => KeyAlgorithm::RsaOaep,
        _ => KeyAlgorithm::EcdhEsA256kw,
    }
}

fn recipient_key(key: &PublicKey) -> RecipientKey<'_> {
    match key {
        PublicKey::Rsa(k) => RecipientKey::Rsa(k),
        PublicKey::P256(k) => RecipientKey::P256(k),
        PublicKey::P384(k) => RecipientKey::P384(k),
        PublicKey::P521(k) => RecipientKey::P521(k),
    }
}

fn decryption_key(key: &PrivateKey) -> DecryptionKey<'_> {
    match key {
        PrivateKey::Rsa(k) => DecryptionKey::Rsa(k),
        PrivateKey::P256(k) => DecryptionKey::P256(k),
        PrivateKey::P384(k) => DecryptionKey::P384(k),
        PrivateKey::P521(k) => DecryptionKey::P521(k),
    }
}

/// Encrypts `plaintext` for `recipients` the way go-jose does for containers/ocicrypt.
pub fn encrypt(
    plaintext: &[u8],
    recipients: &[(PublicKey, KeyAlgorithm)],
) -> Result<Vec<u8>, JweError> {
    let recipients: Vec<_> = recipients
        .iter()
        .map(|(key, alg)| (recipient_key(key), *alg))
        .collect();
    let jwe = jose::encrypt(plaintext, &recipients)?;
    serde_json::to_vec(&jwe).map_err(|e| JweError::Encrypt(e.to_string()))
}

/// Decrypts `jwe` with the first of `keys` that opens a recipient (RSA1_5 refused).
pub fn decrypt(jwe: &Jwe, keys: &[PrivateKey]) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let keys: Vec<_> = keys.iter().map(decryption_key).collect();
    jwe.decrypt(&keys, JweOptions::default())
}

/// The JWE key wrapper: annotation `org.opencontainers.image.enc.keys.jwe`.
#[derive(Debug, Default, Clone)]
pub struct JweKeyWrapper {
    recipients: Vec<(PublicKey, KeyAlgorithm)>,
    private_keys: Vec<PrivateKey>,
}

impl JweKeyWrapper {
    /// A wrapper with no keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a recipient with containers/ocicrypt's default algorithm for its key type.
    pub fn add_recipient(&mut self, key: PublicKey) {
        let alg = default_algorithm(&key);
        self.recipients.push((key, alg));
    }

    /// Adds a recipient with an explicit algorithm (RSA-OAEP-256 for instance).
    pub fn add_recipient_with_algorithm(
        &mut self,
        key: PublicKey,
        alg: KeyAlgorithm,
    ) -> Result<(), JweError> {
        if alg == KeyAlgorithm::Rsa1_5 {
            return Err(JweError::Rsa1_5NotAllowed);
        }
        let fits = match &key {
            PublicKey::Rsa(_) => matches!(alg, KeyAlgorithm::RsaOaep | KeyAlgorithm::RsaOaep256),
            _ => alg == KeyAlgorithm::EcdhEsA256kw,
        };
        if !fits {
            return Err(JweError::KeyMismatch {
                alg: alg.name().into(),
                key: if matches!(key, PublicKey::Rsa(_)) {
                    "RSA"
                } else {
                    "EC"
                },
            });
        }
        self.recipients.push((key, alg));
        Ok(())
    }

    /// Adds a recipient from a key file (PEM, DER or JWK); a JWK's `alg` is honoured.
    pub fn add_recipient_from_bytes(&mut self, data: &[u8]) -> Result<(), crate::Error> {
        let key = crate::keys::parse_public_key(data)?;
        match crate::keys::jwk_algorithm(data) {
            Some(alg) => self.add_recipient_with_algorithm(key, KeyAlgorithm::from_name(&alg)?)?,
            None => self.add_recipient(key),
        }
        Ok(())
    }

    /// Adds a private key used to unwrap.
    pub fn add_private_key(&mut self, key: PrivateKey) {
        self.private_keys.push(key);
    }

    /// Whether the wrapper has recipients to wrap for.
    pub fn has_recipients(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// Whether the wrapper has private keys to unwrap with.
    pub fn has_private_keys(&self) -> bool {
        !self.private_keys.is_empty()
    }

    /// Encrypts `opts_data` for every recipient in one JWE.
    pub fn wrap(&self, opts_data: &[u8]) -> Result<Vec<u8>, JweError> {
        encrypt(opts_data, &self.recipients)
    }

    /// Decrypts a JWE with the configured private keys.
    pub fn unwrap(&self, jwe: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        decrypt(&Jwe::parse(jwe)?, &self.private_keys)
    }
}

#[async_trait::async_trait]
impl super::KeyWrapper for JweKeyWrapper {
    fn scheme(&self) -> &str {
        "jwe"
    }

    fn can_wrap(&self) -> bool {
        self.has_recipients()
    }

    fn can_unwrap(&self) -> bool {
        self.has_private_keys()
    }

    async fn wrap_keys(&self, opts_data: &[u8]) -> crate::Result<Vec<u8>> {
        Ok(self.wrap(opts_data)?)
    }

    async fn unwrap_key(&self, packet: &[u8]) -> crate::Result<Zeroizing<Vec<u8>>> {
        Ok(self.unwrap(packet)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_core::OsRng;

    fn keys() -> Vec<PrivateKey> {
        vec![
            PrivateKey::Rsa(Box::new(jose::RsaPrivateKey::generate_2048().unwrap())),
            PrivateKey::P256(p256::SecretKey::random(&mut OsRng)),
            PrivateKey::P384(p384::SecretKey::random(&mut OsRng)),
            PrivateKey::P521(p521::SecretKey::random(&mut OsRng)),
        ]
    }

    #[test]
    fn the_wrapper_round_trips_for_every_key_type() {
        let keys = keys();
        for key in &keys {
            let mut wrapper = JweKeyWrapper::new();
            wrapper.add_recipient(key.public_key());
            let jwe = wrapper.wrap(b"secret opts").unwrap();
            let parsed: serde_json::Value = serde_json::from_slice(&jwe).unwrap();
            assert!(
                parsed.get("recipients").is_none(),
                "one recipient is flattened"
            );
            let mut opener = JweKeyWrapper::new();
            opener.add_private_key(key.clone());
            assert_eq!(opener.unwrap(&jwe).unwrap().as_slice(), b"secret opts");
        }
        // several recipients: general serialization, each key opens it
        let mut wrapper = JweKeyWrapper::new();
        for key in &keys {
            wrapper.add_recipient(key.public_key());
        }
        wrapper
            .add_recipient_with_algorithm(keys[0].public_key(), KeyAlgorithm::RsaOaep256)
            .unwrap();
        let jwe = wrapper.wrap(b"multi").unwrap();
        assert_eq!(Jwe::parse(&jwe).unwrap().recipient_count(), 5);
        for key in &keys {
            assert_eq!(
                decrypt(&Jwe::parse(&jwe).unwrap(), std::slice::from_ref(key))
                    .unwrap()
                    .as_slice(),
                b"multi"
            );
        }
        let stranger = PrivateKey::P256(p256::SecretKey::random(&mut OsRng));
        assert!(matches!(
            decrypt(&Jwe::parse(&jwe).unwrap(), &[stranger]),
            Err(JweError::NoMatchingKey(_))
        ));
        assert!(matches!(
            JweKeyWrapper::new().unwrap(&jwe),
            Err(JweError::NoPrivateKeys)
        ));
    }

    #[test]
    fn unfit_or_refused_algorithms_are_errors() {
        let keys = keys();
        let mut wrapper = JweKeyWrapper::new();
        assert_eq!(
            wrapper.add_recipient_with_algorithm(keys[0].public_key(), KeyAlgorithm::Rsa1_5),
            Err(JweError::Rsa1_5NotAllowed)
        );
        assert!(matches!(
            wrapper.add_recipient_with_algorithm(keys[1].public_key(), KeyAlgorithm::RsaOaep),
            Err(JweError::KeyMismatch { key: "EC", .. })
        ));
        assert!(matches!(
            wrapper.add_recipient_with_algorithm(keys[0].public_key(), KeyAlgorithm::EcdhEsA256kw),
            Err(JweError::KeyMismatch { key: "RSA", .. })
        ));
        assert!(!wrapper.has_recipients());
        // a JWK naming RSA1_5 is refused when read as a recipient
        let (n, e) = match keys[0].public_key() {
            PublicKey::Rsa(k) => k.components().unwrap(),
            _ => unreachable!(),
        };
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwk = format!(
            r#"{{"kty":"RSA","alg":"RSA1_5","n":"{}","e":"{}"}}"#,
            b64.encode(n),
            b64.encode(e)
        );
        assert!(matches!(
            wrapper.add_recipient_from_bytes(jwk.as_bytes()),
            Err(crate::Error::Jwe(JweError::Rsa1_5NotAllowed))
        ));
    }
}
