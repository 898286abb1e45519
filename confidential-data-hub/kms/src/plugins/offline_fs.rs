//! Provider `offline_fs`: a KMS and secret store in local files, for guests without a
//! KMS and for tests. It is as trustworthy as the files: provision them into encrypted
//! guest memory (the default directory is under `/run`).
//!
//! # Format
//!
//! Both files live in `<kms credential dir>/offline_fs/` (by default
//! `/run/confidential-containers/cdh/kbs/kms-credential/offline_fs/`) and have the format of
//! the `offline_fs_kbc` stores: a JSON object of standard-base64 values, at most 16 MiB.
//!
//! - `secrets.json`: `{ "<secret name>": "<base64 secret>" }`, read by
//!   [`Getter::get_secret`] (vault secrets with `"provider": "offline_fs"`).
//! - `keys.json`: `{ "<key id>": "<base64 of a 32-byte AES-256 key>" }`, used by
//!   [`Decrypter::decrypt`] and [`Encrypter::encrypt`].
//!
//! A ciphertext is `iv (12 bytes) ‖ AES-256-GCM(key, iv, plaintext) ‖ tag (16 bytes)`.
//! Annotations are not used (encryption returns none). The files are read on every
//! request, so an operator can add keys without restarting the hub.

use std::path::PathBuf;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::{
    offline_fs::{load_store, OfflineFsError, StoreEntry},
    provider::Operation,
    wrap::{self, WrapType},
    Annotations, Decrypter, Encrypter, Getter, KmsError, OFFLINE_FS_PROVIDER,
};

/// The secret store file name.
pub(crate) const SECRETS_FILE: &str = "secrets.json";
/// The key store file name.
pub(crate) const KEYS_FILE: &str = "keys.json";

/// The `offline_fs` provider over one directory.
#[derive(Debug, Clone)]
pub(crate) struct OfflineFsKms {
    dir: PathBuf,
}

impl OfflineFsKms {
    /// The provider reading `dir/secrets.json` and `dir/keys.json`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The entry `name` of store `file`.
    async fn lookup(
        &self,
        file: &str,
        what: &'static str,
        name: &str,
        operation: Operation,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let path = self.dir.join(file);
        let entries: Option<Vec<StoreEntry>> =
            tokio::task::spawn_blocking(move || load_store(&path))
                .await
                .map_err(|e| KmsError::Service {
                    provider: OFFLINE_FS_PROVIDER.into(),
                    operation,
                    reason: format!("store reader task failed: {e}"),
                })?
                .map_err(|e: OfflineFsError| KmsError::Store(e))?;
        entries
            .into_iter()
            .flatten()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
            .ok_or_else(|| KmsError::NotFound {
                provider: OFFLINE_FS_PROVIDER.into(),
                what,
                name: name.chars().take(200).collect(),
            })
    }
}

fn crypto_error(key_id: &str, source: wrap::WrapError) -> KmsError {
    KmsError::Crypto {
        provider: OFFLINE_FS_PROVIDER.into(),
        key_id: key_id.chars().take(200).collect(),
        source,
    }
}

#[async_trait]
impl Getter for OfflineFsKms {
    async fn get_secret(
        &self,
        name: &str,
        _annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.lookup(SECRETS_FILE, "secret", name, Operation::GetSecret)
            .await
    }
}

#[async_trait]
impl Decrypter for OfflineFsKms {
    async fn decrypt(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        _annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let key = self
            .lookup(KEYS_FILE, "key", key_id, Operation::Decrypt)
            .await?;
        let iv_len = WrapType::A256Gcm.iv_len();
        if ciphertext.len() < iv_len {
            return Err(KmsError::InvalidRequest {
                provider: OFFLINE_FS_PROVIDER.into(),
                reason: format!(
                    "ciphertext of {} bytes is shorter than its {iv_len}-byte IV",
                    ciphertext.len()
                ),
            });
        }
        let (iv, wrapped) = ciphertext.split_at(iv_len);
        wrap::unwrap(WrapType::A256Gcm, &key, iv, wrapped).map_err(|e| crypto_error(key_id, e))
    }
}

#[async_trait]
impl Encrypter for OfflineFsKms {
    async fn encrypt(
        &self,
        plaintext: &[u8],
        key_id: &str,
    ) -> Result<(Vec<u8>, Annotations), KmsError> {
        let key = self
            .lookup(KEYS_FILE, "key", key_id, Operation::Encrypt)
            .await?;
        let (mut iv, wrapped) =
            wrap::wrap(WrapType::A256Gcm, &key, plaintext).map_err(|e| crypto_error(key_id, e))?;
        iv.extend_from_slice(&wrapped);
        Ok((iv, Annotations::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrap::WrapError;

    fn kms_with(files: &[(&str, &str)]) -> (tempfile::TempDir, OfflineFsKms) {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let kms = OfflineFsKms::new(dir.path());
        (dir, kms)
    }

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // bytes 0..32

    #[tokio::test]
    async fn secrets_are_looked_up_by_name() {
        let (_dir, kms) = kms_with(&[(
            SECRETS_FILE,
            r#"{"db-password": "aHVudGVyMg==", "kbs:///a/b/c": "eA=="}"#,
        )]);
        let none = Annotations::new();
        assert_eq!(
            kms.get_secret("db-password", &none)
                .await
                .unwrap()
                .as_slice(),
            b"hunter2"
        );
        assert_eq!(
            kms.get_secret("kbs:///a/b/c", &none)
                .await
                .unwrap()
                .as_slice(),
            b"x"
        );
        let err = kms.get_secret("other", &none).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(
            err.to_string(),
            "KMS provider `offline_fs` has no secret `other`"
        );
    }

    #[tokio::test]
    async fn missing_files_mean_not_found_and_broken_ones_are_errors() {
        let (dir, kms) = kms_with(&[]);
        let none = Annotations::new();
        assert!(kms.get_secret("a", &none).await.unwrap_err().is_not_found());
        assert!(kms
            .decrypt(&[0; 40], "k", &none)
            .await
            .unwrap_err()
            .is_not_found());

        std::fs::write(dir.path().join(SECRETS_FILE), "[1, 2]").unwrap();
        let err = kms.get_secret("a", &none).await.unwrap_err();
        assert!(
            matches!(err, KmsError::Store(OfflineFsError::NotAnObject { .. })),
            "{err}"
        );
        assert!(err
            .to_string()
            .starts_with("KMS provider `offline_fs`: store "));
    }

    #[tokio::test]
    async fn encrypt_then_decrypt_with_the_named_key() {
        let (_dir, kms) = kms_with(&[(
            KEYS_FILE,
            &format!(r#"{{"key-1": "{KEY_B64}", "short": "AAEC"}}"#),
        )]);
        let none = Annotations::new();
        let (ciphertext, annotations) = kms.encrypt(b"data key", "key-1").await.unwrap();
        assert!(annotations.is_empty());
        assert_eq!(ciphertext.len(), 12 + 8 + 16);
        assert_eq!(
            kms.decrypt(&ciphertext, "key-1", &none)
                .await
                .unwrap()
                .as_slice(),
            b"data key"
        );

        // the documented format, computed independently of `encrypt`
        let key: Vec<u8> = (0u8..32).collect();
        let iv = [7u8; 12];
        let mut independent = iv.to_vec();
        independent.extend(wrap::wrap_with_iv(WrapType::A256Gcm, &key, &iv, b"other").unwrap());
        assert_eq!(
            kms.decrypt(&independent, "key-1", &none)
                .await
                .unwrap()
                .as_slice(),
            b"other"
        );

        let mut tampered = ciphertext.clone();
        tampered[20] ^= 1;
        let err = kms.decrypt(&tampered, "key-1", &none).await.unwrap_err();
        assert!(
            matches!(
                err,
                KmsError::Crypto {
                    source: WrapError::Authentication,
                    ..
                }
            ),
            "{err}"
        );
        let err = kms
            .decrypt(&ciphertext[..5], "key-1", &none)
            .await
            .unwrap_err();
        assert!(matches!(err, KmsError::InvalidRequest { .. }), "{err}");
        let err = kms.decrypt(&ciphertext, "short", &none).await.unwrap_err();
        assert!(
            matches!(
                err,
                KmsError::Crypto {
                    source: WrapError::KeyLength(3),
                    ..
                }
            ),
            "{err}"
        );
        assert!(kms.encrypt(b"x", "nope").await.unwrap_err().is_not_found());
    }
}
