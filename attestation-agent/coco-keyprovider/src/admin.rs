//! The KBS admin key and the tokens it signs.
//!
//! Trustee authorizes `POST /kbs/v0/resource/…` with `Authorization: Bearer <JWT>` verified
//! against its admin public key (`auth_public_key`, or a persona's `public_key_path`) by
//! jwt-simple: header `{"alg":"EdDSA","typ":"JWT"}`, claims with `exp` (and `nbf`, `iat`
//! when present) checked with a 15-minute tolerance. Upstream's coco-keyprovider signs
//! jwt-simple's `Claims::create(2 h)`: `{"iat":now,"exp":now+7200,"nbf":now}`; so does this
//! one. The key is the Ed25519 PKCS#8 `PRIVATE KEY` PEM that `openssl genpkey -algorithm
//! ed25519` writes (trustee's documented way to make the admin key pair).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::Signer;
use zeroize::Zeroizing;

/// Lifetime of an admin token (upstream's).
pub(crate) const ADMIN_TOKEN_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);

/// Largest key file read.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// Why the admin key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AdminKeyError {
    /// The file cannot be read.
    #[error("reading the admin private key {path}: {reason}")]
    Read {
        /// the file
        path: String,
        /// what happened
        reason: String,
    },
    /// The file is not an Ed25519 PKCS#8 PEM.
    #[error("the admin private key {0} is not an Ed25519 PKCS#8 PEM (make one with `openssl genpkey -algorithm ed25519`)")]
    NotEd25519(String),
}

/// The Ed25519 admin key (wiped on drop).
pub struct AdminKey {
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminKey")
            .field("public", &hex::encode(self.key.verifying_key().as_bytes()))
            .finish()
    }
}

impl AdminKey {
    /// Parses an Ed25519 `PRIVATE KEY` PEM; `origin` names it in errors.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, AdminKeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map(|key| Self { key })
            .map_err(|_| AdminKeyError::NotEd25519(origin.to_string()))
    }

    /// Reads the PEM file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, AdminKeyError> {
        let shown = path.display().to_string();
        let read_error = |reason: String| AdminKeyError::Read {
            path: shown.clone(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| read_error(e.to_string()))?
            .len();
        if len > MAX_KEY_FILE_LEN {
            return Err(read_error(format!("{len} bytes is too large for a key")));
        }
        let pem = Zeroizing::new(std::fs::read(path).map_err(|e| read_error(e.to_string()))?);
        let pem =
            std::str::from_utf8(&pem).map_err(|_| AdminKeyError::NotEd25519(shown.clone()))?;
        Self::from_pem(pem, &shown)
    }

    /// A key from its 32-byte seed (tests).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// The public key as an SPKI `PUBLIC KEY` PEM (what the KBS is configured with).
    pub fn public_key_pem(&self) -> String {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        self.key
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap_or_default()
    }

    /// An admin token issued `now`: `{"alg":"EdDSA","typ":"JWT"}`,
    /// `{"iat":now,"exp":now+2h,"nbf":now}`.
    pub fn token_at(&self, now: SystemTime) -> String {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT"});
        let claims = serde_json::json!({
            "iat": now,
            "exp": now + ADMIN_TOKEN_LIFETIME.as_secs(),
            "nbf": now,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// A token issued now.
    pub fn token(&self) -> String {
        self.token_at(SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ed25519_dalek::Verifier;

    /// RFC 8032 §7.1 test 1 key as PKCS#8 (RFC 8410 §10.3 layout).
    const RFC8032_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

    #[test]
    fn tokens_are_eddsa_jwts_with_upstreams_claims() {
        let key = AdminKey::from_pem(RFC8032_KEY_PEM, "t").unwrap();
        assert!(key
            .public_key_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        let token = key.token_at(UNIX_EPOCH + Duration::from_secs(1_000));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let json = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        assert_eq!(
            json(parts[0]),
            serde_json::json!({"alg": "EdDSA", "typ": "JWT"})
        );
        assert_eq!(
            json(parts[1]),
            serde_json::json!({"iat": 1000, "exp": 8200, "nbf": 1000})
        );
        let signature =
            ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
                .unwrap();
        // RFC 8032 test 1 public key
        let public = ed25519_dalek::VerifyingKey::from_bytes(
            &hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap()
                .try_into()
                .unwrap(),
        )
        .unwrap();
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn other_keys_and_files_are_refused() {
        for bad in [
            "",
            "not a pem",
            // a P-256 PKCS#8 key
            "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPrH/91NaJSM+ivBt\n3GssxEdcnUO+zS7i7LKQ1ygukjihRANCAARbX245h9tUENV3xGeVIJEEa/bRXSSN\nPybmtwjx14RpC0es/rRwYEzM8OZsB+xs9oqpsOHu1neoy7CB5dVInfHY\n-----END PRIVATE KEY-----\n",
            // a public key
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n",
            &RFC8032_KEY_PEM[..60],
        ] {
            assert!(
                matches!(AdminKey::from_pem(bad, "t"), Err(AdminKeyError::NotEd25519(_))),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            AdminKey::from_file(&dir.path().join("absent.pem")),
            Err(AdminKeyError::Read { .. })
        ));
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; 70_000]).unwrap();
        assert!(matches!(
            AdminKey::from_file(&big),
            Err(AdminKeyError::Read { .. })
        ));
        let binary = dir.path().join("binary.pem");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            AdminKey::from_file(&binary),
            Err(AdminKeyError::NotEd25519(_))
        ));
        let good = dir.path().join("good.pem");
        std::fs::write(&good, RFC8032_KEY_PEM).unwrap();
        assert!(AdminKey::from_file(&good).is_ok());
        assert!(!format!("{:?}", AdminKey::from_file(&good).unwrap()).contains("BEGIN"));
    }
}
