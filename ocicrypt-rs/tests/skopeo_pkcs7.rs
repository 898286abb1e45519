//! PKCS#7 interoperability with the real skopeo (containers/ocicrypt via
//! go.mozilla.org/pkcs7), both directions, and tampering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use ocicrypt_rs::keywrap::pkcs7::{Certificate, Pkcs7Error, Pkcs7KeyWrapper};
use ocicrypt_rs::keywrap::KeyWrappers;
use ocicrypt_rs::parse_private_key;
use ocicrypt_rs::Error;
use ocicrypt_rs::{decrypt_image, encrypt_image, LayoutReference};

fn oci(dir: &Path, tag: &str) -> LayoutReference {
    LayoutReference::parse(&format!("oci:{}:{tag}", dir.display())).unwrap()
}

fn unwrapper(keys: &Keys, with_cert: bool) -> KeyWrappers {
    let mut p7 = Pkcs7KeyWrapper::new();
    p7.add_private_key(parse_private_key(&std::fs::read(&keys.cert_key).unwrap(), None).unwrap());
    if with_cert {
        p7.add_certificate(Certificate::parse(&std::fs::read(&keys.cert).unwrap()).unwrap());
    }
    let mut w = KeyWrappers::new();
    w.add(p7);
    w
}

fn digests(layout: &Path) -> Vec<String> {
    layers(layout, Some("v1"))
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn skopeo_pkcs7_decrypts_with_ours_and_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let keys = make_keys(dir.path());
    let plain = dir.path().join("plain");
    let original = make_layout(dir.path(), &plain, "v1");
    let enc = dir.path().join("enc");
    skopeo_copy(
        &[format!("--encryption-key=pkcs7:{}", keys.cert.display())],
        &format!("oci:{}:v1", plain.display()),
        &format!("oci:{}:v1", enc.display()),
    );
    for with_cert in [true, false] {
        let dec = dir.path().join(format!("dec-{with_cert}"));
        decrypt_image(
            &oci(&enc, "v1"),
            &oci(&dec, "v1"),
            &unwrapper(&keys, with_cert),
        )
        .await
        .unwrap();
        assert_eq!(digests(&dec)[..2], original[..2]);
    }
    // A certificate that names another recipient is refused, as containers/ocicrypt does.
    let other = tempfile::tempdir().unwrap();
    let other_keys = make_keys(other.path());
    let mut p7 = Pkcs7KeyWrapper::new();
    p7.add_private_key(parse_private_key(&std::fs::read(&keys.cert_key).unwrap(), None).unwrap());
    p7.add_certificate(Certificate::parse(&std::fs::read(&other_keys.cert).unwrap()).unwrap());
    let mut w = KeyWrappers::new();
    w.add(p7);
    let err = decrypt_image(&oci(&enc, "v1"), &oci(&dir.path().join("dec-x"), "v1"), &w)
        .await
        .unwrap_err();
    let Error::KeyUnwrap { attempts } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            *attempts[0].error,
            Error::Pkcs7(Pkcs7Error::NoMatchingKey(_))
        ),
        "{err}"
    );

    // Flip one bit of the GCM-sealed content (the last bytes of the packet).
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let layer = &layers(&enc, Some("v1"))[0];
    let mut packet = b64
        .decode(
            layer["annotations"]["org.opencontainers.image.enc.keys.pkcs7"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let last = packet.len() - 3;
    packet[last] ^= 0x01;
    let mut p7 = Pkcs7KeyWrapper::new();
    p7.add_private_key(parse_private_key(&std::fs::read(&keys.cert_key).unwrap(), None).unwrap());
    assert!(matches!(
        p7.unwrap(&packet),
        Err(Pkcs7Error::ContentAuthentication)
    ));
}

#[tokio::test]
async fn ours_pkcs7_decrypts_with_skopeo() {
    let dir = tempfile::tempdir().unwrap();
    let keys = make_keys(dir.path());
    let plain = dir.path().join("plain");
    let original = make_layout(dir.path(), &plain, "v1");
    let mut p7 = Pkcs7KeyWrapper::new();
    p7.add_recipient(Certificate::parse(&std::fs::read(&keys.cert).unwrap()).unwrap());
    let mut w = KeyWrappers::new();
    w.add(p7);
    let enc = dir.path().join("enc");
    encrypt_image(&oci(&plain, "v1"), &oci(&enc, "v1"), &w)
        .await
        .unwrap();
    for l in layers(&enc, Some("v1")) {
        assert!(l["annotations"]["org.opencontainers.image.enc.keys.pkcs7"].is_string());
    }
    let dec = dir.path().join("dec");
    skopeo_copy(
        &[
            flag("decryption-key", &keys.cert_key),
            flag("decryption-key", &keys.cert),
        ],
        &format!("oci:{}:v1", enc.display()),
        &format!("oci:{}:v1", dec.display()),
    );
    assert_eq!(digests(&dec), original);
    // ours reads ours too
    let dec2 = dir.path().join("dec2");
    decrypt_image(&oci(&enc, "v1"), &oci(&dec2, "v1"), &unwrapper(&keys, true))
        .await
        .unwrap();
    assert_eq!(digests(&dec2), original);
}
