//! Shared by the KMS provider tests (`aws`, `aliyun`, `ehsm`): the calls each of them makes
//! against its provider's test server. Every item is used by every one of those tests.

use kms::{Annotations, Getter, KmsError, KmsProviders, ProviderSettings};
use serde_json::{Map, Value};

/// `value`, a JSON object literal, as provider settings or annotations.
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("{other} is not an object"),
    }
}

/// The secret `name` as `getter` reads it; the read must succeed.
pub(crate) async fn secret(getter: &dyn Getter, name: &str, annotations: &Annotations) -> Vec<u8> {
    getter.get_secret(name, annotations).await.unwrap().to_vec()
}

/// `plaintext` encrypted with `provider`'s key `key_id`, and the annotations to decrypt it.
pub(crate) async fn encrypt(
    kms: &KmsProviders,
    provider: &str,
    settings: &ProviderSettings,
    plaintext: &[u8],
    key_id: &str,
) -> (Vec<u8>, Annotations) {
    kms.encrypter(provider, settings)
        .await
        .unwrap()
        .encrypt(plaintext, key_id)
        .await
        .unwrap()
}

/// Encrypts `plaintext` with `provider`'s key `key_id` and checks that it decrypts back with
/// the annotations the encrypter returned; the ciphertext and those annotations.
pub(crate) async fn round_trip(
    kms: &KmsProviders,
    provider: &str,
    settings: &ProviderSettings,
    key_id: &str,
    plaintext: &[u8],
) -> (Vec<u8>, Annotations) {
    let (ciphertext, annotations) = encrypt(kms, provider, settings, plaintext, key_id).await;
    assert_ne!(ciphertext, plaintext);
    let decrypter = kms.decrypter(provider, settings).await.unwrap();
    let decrypted = decrypter
        .decrypt(&ciphertext, key_id, &annotations)
        .await
        .unwrap();
    assert_eq!(decrypted.as_slice(), plaintext);
    (ciphertext, annotations)
}

/// The error of decrypting `ciphertext` with a decrypter built now, so that it reads the
/// credential files as they are at this point; building it must succeed.
pub(crate) async fn decrypt_err(
    kms: &KmsProviders,
    provider: &str,
    settings: &ProviderSettings,
    ciphertext: &[u8],
    key_id: &str,
    annotations: &Annotations,
) -> KmsError {
    kms.decrypter(provider, settings)
        .await
        .unwrap()
        .decrypt(ciphertext, key_id, annotations)
        .await
        .unwrap_err()
}
