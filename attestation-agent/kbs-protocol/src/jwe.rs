//! Decryption of the KBS's resource reply: a JWE in flattened JSON serialization, opened
//! with the TEE key by the workspace's `jose` crate.
//!
//! Key management `ECDH-ES+A256KW` (P-256/P-521), `RSA-OAEP-256` (constant-time, in
//! AWS-LC), `ML-KEM-768+A192KW` (trustee's experimental post-quantum wrapping), and
//! `RSA1_5` only when explicitly allowed; content encryption `A256GCM` only. The AAD is the
//! `protected` member exactly as received (RFC 7516 §5.2).

use jose::{Flattened, Jwe};
use zeroize::Zeroizing;

use crate::keypair::TeeKeyPair;
use crate::wire::JweResponse;

pub use jose::{JweError, JweOptions};

impl TeeKeyPair {
    /// Decrypts a resource reply wrapped for this key.
    pub fn decrypt_jwe(
        &self,
        jwe: &JweResponse,
        options: JweOptions,
    ) -> Result<Zeroizing<Vec<u8>>, JweError> {
        Jwe::from_flattened(Flattened {
            protected: &jwe.protected,
            encrypted_key: &jwe.encrypted_key,
            iv: &jwe.iv,
            ciphertext: &jwe.ciphertext,
            tag: &jwe.tag,
            aad: jwe.aad.as_deref(),
        })?
        .decrypt_recipient(0, self.decryption_key(), options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn captured_jwe() -> JweResponse {
        serde_json::from_str(include_str!(
            "../../../testdata/wire/05-resource-response-jwe.json"
        ))
        .unwrap()
    }

    #[test]
    fn captured_trustee_reply_is_refused_cleanly_for_a_foreign_key() {
        // The capture's TEE private key was not recorded: a different P-256 key must fail
        // at the key unwrap (not panic, not decrypt), P-521 with WrongCurve, RSA with mismatch.
        let p256 = TeeKeyPair::generate(crate::TeeKeyAlgorithm::EcP256).unwrap();
        assert_eq!(
            p256.decrypt_jwe(&captured_jwe(), JweOptions::default()),
            Err(JweError::KeyUnwrap)
        );
        let p521 = TeeKeyPair::generate(crate::TeeKeyAlgorithm::EcP521).unwrap();
        assert!(matches!(
            p521.decrypt_jwe(&captured_jwe(), JweOptions::default()),
            Err(JweError::WrongCurve {
                expected: "P-521",
                ..
            })
        ));
    }

    /// The wire members reach the decoder as received (header checks are `jose`'s tests).
    #[test]
    fn malformed_wire_members_give_typed_errors() {
        let key = TeeKeyPair::generate(crate::TeeKeyAlgorithm::EcP256).unwrap();
        let opts = JweOptions::default();
        let mut bad = captured_jwe();
        bad.protected.push('=');
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::Base64 {
                member: "protected"
            })
        );
        let mut bad = captured_jwe();
        bad.tag = "!!".into();
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::Base64 { member: "tag" })
        );
        let mut bad = captured_jwe();
        bad.aad = Some("%".into());
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::Base64 { member: "aad" })
        );
        let mut bad = captured_jwe();
        bad.iv = URL_SAFE_NO_PAD.encode([0u8; 16]);
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::BadLength {
                member: "iv",
                expected: 12,
                found: 16
            })
        );
        let mut bad = captured_jwe();
        bad.encrypted_key = URL_SAFE_NO_PAD.encode([0u8; 8]);
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::BadLength {
                member: "encrypted_key",
                expected: 40,
                found: 8
            })
        );
        let rsa = TeeKeyPair::generate(crate::TeeKeyAlgorithm::Rsa2048).unwrap();
        assert!(matches!(
            rsa.decrypt_jwe(&captured_jwe(), opts),
            Err(JweError::KeyMismatch { key: "RSA", .. })
        ));
    }
}
