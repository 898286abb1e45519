//! JWE interoperability with the real skopeo (containers/ocicrypt), both directions, and
//! tampering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use ocicrypt_rs::keywrap::jwe::{JweError, JweKeyWrapper, KeyAlgorithm};
use ocicrypt_rs::keywrap::KeyWrappers;
use ocicrypt_rs::Error;
use ocicrypt_rs::{decrypt_image, encrypt_image, LayoutReference};
use ocicrypt_rs::{parse_private_key, parse_public_key};

struct Shared {
    _dir: tempfile::TempDir,
    keys: Keys,
    plain: PathBuf,
    plain_layers: Vec<String>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let keys = make_keys(dir.path());
        let plain = dir.path().join("plain");
        let plain_layers = make_layout(dir.path(), &plain, "v1");
        Shared {
            _dir: dir,
            keys,
            plain,
            plain_layers,
        }
    })
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

fn decrypting(keys: &[&Path]) -> KeyWrappers {
    let mut jwe = JweKeyWrapper::new();
    for k in keys {
        jwe.add_private_key(parse_private_key(&std::fs::read(k).unwrap(), None).unwrap());
    }
    let mut w = KeyWrappers::new();
    w.add(jwe);
    w
}

fn encrypting(pubs: &[&Path]) -> KeyWrappers {
    let mut jwe = JweKeyWrapper::new();
    for k in pubs {
        jwe.add_recipient_from_bytes(&std::fs::read(k).unwrap())
            .unwrap();
    }
    let mut w = KeyWrappers::new();
    w.add(jwe);
    w
}

/// skopeo gzips the uncompressed layer before encrypting it; the compressed ones keep
/// their exact bytes.
fn assert_layers_restored(layout: &Path, original: &[String]) {
    let layers = layers(layout, Some("v1"));
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0]["digest"], original[0]);
    assert_eq!(layers[0]["mediaType"], GZIP);
    assert_eq!(layers[1]["digest"], original[1]);
    assert_eq!(layers[1]["mediaType"], ZSTD);
    for l in &layers {
        let digest = l["digest"].as_str().unwrap();
        assert_eq!(
            format!("sha256:{}", sha256_hex(&blob(layout, digest))),
            digest
        );
        assert!(l.get("annotations").is_none_or(|a| a
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("org.opencontainers.image.enc."))));
    }
}

async fn skopeo_encrypts_ours_decrypts(pubkey: &Path, privkey: &Path) {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("enc");
    skopeo_copy(
        &[flag(
            "encryption-key",
            Path::new(&format!("jwe:{}", pubkey.display())),
        )],
        &oci(&s.plain, "v1"),
        &oci(&enc, "v1"),
    );
    let enc_layers = layers(&enc, Some("v1"));
    assert_eq!(enc_layers[0]["mediaType"], format!("{GZIP}+encrypted"));
    assert_eq!(enc_layers[1]["mediaType"], format!("{ZSTD}+encrypted"));
    let dec = dir.path().join("dec");
    let summary = decrypt_image(
        &LayoutReference::parse(&oci(&enc, "v1")).unwrap(),
        &LayoutReference::parse(&oci(&dec, "v1")).unwrap(),
        &decrypting(&[privkey]),
    )
    .await
    .unwrap();
    assert_eq!(summary.layers_changed, 3);
    assert_layers_restored(&dec, &s.plain_layers);
}

#[tokio::test]
async fn skopeo_jwe_rsa_decrypts_with_ours() {
    let k = &shared().keys;
    skopeo_encrypts_ours_decrypts(&k.rsa_pub, &k.rsa_priv).await;
}

#[tokio::test]
async fn skopeo_jwe_ec_decrypts_with_ours() {
    let k = &shared().keys;
    skopeo_encrypts_ours_decrypts(&k.ec_pub, &k.ec_priv_pkcs8).await;
}

#[tokio::test]
async fn skopeo_two_recipients_general_serialization_decrypts_with_either_key() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("enc");
    skopeo_copy(
        &[
            format!("--encryption-key=jwe:{}", s.keys.rsa_pub.display()),
            format!("--encryption-key=jwe:{}", s.keys.ec_pub.display()),
        ],
        &oci(&s.plain, "v1"),
        &oci(&enc, "v1"),
    );
    for key in [&s.keys.rsa_priv, &s.keys.ec_priv_pkcs8] {
        let dec = dir.path().join(format!(
            "dec-{}",
            key.file_name().unwrap().to_string_lossy()
        ));
        decrypt_image(
            &LayoutReference::parse(&oci(&enc, "v1")).unwrap(),
            &LayoutReference::parse(&oci(&dec, "v1")).unwrap(),
            &decrypting(&[key]),
        )
        .await
        .unwrap();
        assert_layers_restored(&dec, &s.plain_layers);
    }
}

async fn ours_encrypts_skopeo_decrypts(pubs: &[&Path], privs: &[&Path]) {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("enc");
    let summary = encrypt_image(
        &LayoutReference::parse(&oci(&s.plain, "v1")).unwrap(),
        &LayoutReference::parse(&oci(&enc, "v1")).unwrap(),
        &encrypting(pubs),
    )
    .await
    .unwrap();
    assert_eq!(summary.layers_changed, 3);
    let enc_layers = layers(&enc, Some("v1"));
    assert_eq!(enc_layers[2]["mediaType"], format!("{TAR}+encrypted"));
    for l in &enc_layers {
        assert!(l["annotations"]["org.opencontainers.image.enc.keys.jwe"].is_string());
        assert!(l["annotations"]["org.opencontainers.image.enc.pubopts"].is_string());
    }
    for key in privs {
        let dec = dir.path().join(format!(
            "dec-{}",
            key.file_name().unwrap().to_string_lossy()
        ));
        skopeo_copy(
            &[flag("decryption-key", key)],
            &oci(&enc, "v1"),
            &oci(&dec, "v1"),
        );
        let layers = layers(&dec, Some("v1"));
        // Uncompressed layers stay uncompressed with ours; skopeo decrypts them as they are.
        let digests: Vec<_> = layers
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            digests, s.plain_layers,
            "layer digests after skopeo decrypts"
        );
    }
}

#[tokio::test]
async fn ours_jwe_rsa_decrypts_with_skopeo() {
    let k = &shared().keys;
    ours_encrypts_skopeo_decrypts(&[&k.rsa_pub], &[&k.rsa_priv]).await;
}

#[tokio::test]
async fn ours_jwe_ec_decrypts_with_skopeo() {
    let k = &shared().keys;
    ours_encrypts_skopeo_decrypts(&[&k.ec_pub], &[&k.ec_priv_pkcs8]).await;
}

#[tokio::test]
async fn ours_two_recipients_decrypt_with_skopeo_for_each() {
    let k = &shared().keys;
    ours_encrypts_skopeo_decrypts(&[&k.rsa_pub, &k.ec_pub], &[&k.rsa_priv, &k.ec_priv_pkcs8]).await;
}

#[tokio::test]
async fn rsa_oaep_256_and_p384_p521_round_trip_through_layouts() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    sh(&format!(
        "cd {d}; for c in secp384r1 secp521r1; do openssl ecparam -name $c -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out $c.pem; openssl pkey -in $c.pem -pubout -out $c-pub.pem; done
         openssl pkcs8 -topk8 -v2 aes256 -passout pass:s3cret -in {} -out rsa-enc.pem",
        s.keys.rsa_priv.display()
    ));
    let mut jwe = JweKeyWrapper::new();
    let rsa_pub = parse_public_key(&std::fs::read(&s.keys.rsa_pub).unwrap()).unwrap();
    jwe.add_recipient_with_algorithm(rsa_pub, KeyAlgorithm::RsaOaep256)
        .unwrap();
    for c in ["secp384r1", "secp521r1"] {
        jwe.add_recipient_from_bytes(
            &std::fs::read(dir.path().join(format!("{c}-pub.pem"))).unwrap(),
        )
        .unwrap();
    }
    let mut w = KeyWrappers::new();
    w.add(jwe);
    let enc = dir.path().join("enc");
    encrypt_image(
        &LayoutReference::parse(&oci(&s.plain, "v1")).unwrap(),
        &LayoutReference::parse(&oci(&enc, "v1")).unwrap(),
        &w,
    )
    .await
    .unwrap();
    for (key, password) in [
        ("secp384r1.pem", None),
        ("secp521r1.pem", None),
        ("rsa-enc.pem", Some(&b"s3cret"[..])),
    ] {
        let mut jwe = JweKeyWrapper::new();
        jwe.add_private_key(
            parse_private_key(&std::fs::read(dir.path().join(key)).unwrap(), password).unwrap(),
        );
        let mut w = KeyWrappers::new();
        w.add(jwe);
        let dec = dir.path().join(format!("dec-{key}"));
        decrypt_image(
            &LayoutReference::parse(&oci(&enc, "v1")).unwrap(),
            &LayoutReference::parse(&oci(&dec, "v1")).unwrap(),
            &w,
        )
        .await
        .unwrap();
        let digests: Vec<_> = layers(&dec, Some("v1"))
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(digests, s.plain_layers);
    }
}

/// An encrypted copy made by skopeo, for the tampering tests.
fn skopeo_encrypted(dir: &Path) -> PathBuf {
    let s = shared();
    let enc = dir.join("enc");
    skopeo_copy(
        &[format!("--encryption-key=jwe:{}", s.keys.rsa_pub.display())],
        &oci(&s.plain, "v1"),
        &oci(&enc, "v1"),
    );
    enc
}

/// Rewrites layer 0 of the manifest (and index.json) after `edit` changed it.
fn edit_layer0(layout: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut m = manifest(layout, Some("v1"));
    edit(&mut m["layers"][0]);
    let bytes = serde_json::to_vec(&m).unwrap();
    let hex = sha256_hex(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"] = format!("sha256:{hex}").into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

async fn decrypt_fails(enc: &Path, dec: &Path) -> Error {
    let err = decrypt_image(
        &LayoutReference::parse(&oci(enc, "v1")).unwrap(),
        &LayoutReference::parse(&oci(dec, "v1")).unwrap(),
        &decrypting(&[&shared().keys.rsa_priv]),
    )
    .await
    .unwrap_err();
    assert!(
        !dec.join("index.json").exists(),
        "a failed decryption must not publish an image"
    );
    let leftover: Vec<_> = std::fs::read_dir(dec.join("blobs/sha256"))
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(
        leftover.iter().all(|n| *n == 0),
        "a failed decryption must not leave blobs behind"
    );
    err
}

#[tokio::test]
async fn flipped_ciphertext_bit_is_an_hmac_error() {
    let dir = tempfile::tempdir().unwrap();
    let enc = skopeo_encrypted(dir.path());
    let layer = &layers(&enc, Some("v1"))[0];
    let path = enc.join("blobs/sha256").join(
        layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let mut data = std::fs::read(&path).unwrap();
    data[100] ^= 0x04;
    std::fs::write(&path, &data).unwrap();
    let err = decrypt_fails(&enc, &dir.path().join("dec")).await;
    assert!(matches!(err, Error::HmacMismatch), "{err}");
}

#[tokio::test]
async fn flipped_hmac_is_an_hmac_error() {
    let dir = tempfile::tempdir().unwrap();
    let enc = skopeo_encrypted(dir.path());
    edit_layer0(&enc, |l| {
        let a = &mut l["annotations"]["org.opencontainers.image.enc.pubopts"];
        let mut pubopts =
            ocicrypt_rs::PublicLayerBlockCipherOptions::from_annotation(a.as_str().unwrap())
                .unwrap();
        pubopts.hmac[5] ^= 0x01;
        *a = pubopts.to_annotation().unwrap().into();
    });
    let err = decrypt_fails(&enc, &dir.path().join("dec")).await;
    assert!(matches!(err, Error::HmacMismatch), "{err}");
}

/// Flips one bit in a field of the (flattened) JWE of layer 0.
fn flip_jwe_field(enc: &Path, field: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    edit_layer0(enc, |l| {
        let a = &mut l["annotations"]["org.opencontainers.image.enc.keys.jwe"];
        let mut jwe: serde_json::Value =
            serde_json::from_slice(&b64.decode(a.as_str().unwrap()).unwrap()).unwrap();
        let mut bytes = url.decode(jwe[field].as_str().unwrap()).unwrap();
        bytes[3] ^= 0x20;
        jwe[field] = url.encode(bytes).into();
        *a = b64.encode(serde_json::to_vec(&jwe).unwrap()).into();
    });
}

#[tokio::test]
async fn flipped_jwe_tag_is_a_content_authentication_error() {
    let dir = tempfile::tempdir().unwrap();
    let enc = skopeo_encrypted(dir.path());
    flip_jwe_field(&enc, "tag");
    let err = decrypt_fails(&enc, &dir.path().join("dec")).await;
    let Error::KeyUnwrap { attempts } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(*attempts[0].error, Error::Jwe(JweError::Decrypt)),
        "{err}"
    );
}

#[tokio::test]
async fn flipped_wrapped_key_is_a_key_unwrap_error() {
    let dir = tempfile::tempdir().unwrap();
    let enc = skopeo_encrypted(dir.path());
    flip_jwe_field(&enc, "encrypted_key");
    let err = decrypt_fails(&enc, &dir.path().join("dec")).await;
    let Error::KeyUnwrap { attempts } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(*attempts[0].error, Error::Jwe(JweError::NoMatchingKey(_))),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_key_and_missing_wrapper_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let enc = skopeo_encrypted(dir.path());
    let err = decrypt_image(
        &LayoutReference::parse(&oci(&enc, "v1")).unwrap(),
        &LayoutReference::parse(&oci(&dir.path().join("dec"), "v1")).unwrap(),
        &decrypting(&[&shared().keys.ec_priv_pkcs8]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::KeyUnwrap { .. }), "{err}");
    let err = decrypt_image(
        &LayoutReference::parse(&oci(&enc, "v1")).unwrap(),
        &LayoutReference::parse(&oci(&dir.path().join("dec2"), "v1")).unwrap(),
        &KeyWrappers::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::NoMatchingKeyWrapper { present } if present == &["org.opencontainers.image.enc.keys.jwe"]),
        "{err}"
    );
}

#[tokio::test]
async fn async_decrypt_layer_streams_a_skopeo_layer() {
    use tokio::io::AsyncReadExt;
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let enc = skopeo_encrypted(dir.path());
    let layer = &layers(&enc, Some("v1"))[1];
    let annotations: std::collections::BTreeMap<String, String> =
        serde_json::from_value(layer["annotations"].clone()).unwrap();
    let path = enc.join("blobs/sha256").join(
        layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let file = tokio::fs::File::open(&path).await.unwrap();
    let decryption = ocicrypt_rs::async_decrypt_layer(
        file,
        layer["mediaType"].as_str().unwrap(),
        &annotations,
        &decrypting(&[&s.keys.rsa_priv]),
    )
    .await
    .unwrap();
    assert_eq!(decryption.media_type, ZSTD);
    assert_eq!(decryption.digest, s.plain_layers[1]);
    let mut reader = decryption.reader.verify_digest();
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).await.unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&plain)), s.plain_layers[1]);
    assert_eq!(reader.finish().await.unwrap().size, plain.len() as u64);
}
