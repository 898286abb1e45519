//! The `ocicrypt` command line: encrypt with it, decrypt with skopeo and with it.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

fn ocicrypt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocicrypt"))
}

#[test]
fn cli_encrypts_for_skopeo_and_decrypts_skopeo_images() {
    let dir = tempfile::tempdir().unwrap();
    let keys = make_keys(dir.path());
    let plain = dir.path().join("plain");
    let original = make_layout(dir.path(), &plain, "v1");
    let p = |name: &str| dir.path().join(name).display().to_string();

    let out = run(ocicrypt().args([
        "encrypt",
        "--key",
        &format!("jwe:{}", keys.rsa_pub.display()),
        "--key",
        &format!("pkcs7:{}", keys.cert.display()),
        "--input",
        &format!("oci:{}:v1", plain.display()),
        "--output",
        &format!("oci:{}:enc", p("enc")),
    ]));
    let digest = String::from_utf8(out).unwrap().trim().to_string();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("enc/index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "enc"
    );

    // skopeo decrypts it with the JWE key alone
    skopeo_copy(
        &[flag("decryption-key", &keys.rsa_priv)],
        &format!("oci:{}:enc", p("enc")),
        &format!("oci:{}:v1", p("sk-dec")),
    );
    let d: Vec<_> = layers(&dir.path().join("sk-dec"), Some("v1"))
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(d, original);

    // ours decrypts with a password-protected PKCS#8 copy of the key
    sh(&format!(
        "openssl pkcs8 -topk8 -v2 aes256 -passout pass:pw -in {} -out {}; printf 'pw\\n' > {}",
        keys.rsa_priv.display(),
        p("rsa-enc.pem"),
        p("pw")
    ));
    run(ocicrypt().args([
        "decrypt",
        "--key",
        &p("rsa-enc.pem"),
        "--password-file",
        &p("pw"),
        "--input",
        &format!("oci:{}:enc", p("enc")),
        "--output",
        &format!("oci:{}:v1", p("dec")),
    ]));
    let d: Vec<_> = layers(&dir.path().join("dec"), Some("v1"))
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(d, original);

    // and an image skopeo encrypted with pkcs7, decrypted with key + certificate
    skopeo_copy(
        &[format!("--encryption-key=pkcs7:{}", keys.cert.display())],
        &format!("oci:{}:v1", plain.display()),
        &format!("oci:{}:v1", p("sk-enc")),
    );
    run(ocicrypt().args([
        "decrypt",
        "--key",
        &keys.cert_key.display().to_string(),
        "--key",
        &keys.cert.display().to_string(),
        "--input",
        &format!("oci:{}:v1", p("sk-enc")),
        "--output",
        &format!("oci:{}:v1", p("dec7")),
    ]));
    let d: Vec<_> = layers(&dir.path().join("dec7"), Some("v1"))
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(d[..2], original[..2]);
}

#[test]
fn cli_reports_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    make_layout(dir.path(), &plain, "v1");
    let fails = |args: &[&str], expect: &str| {
        let out = ocicrypt().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    let input = format!("oci:{}:v1", plain.display());
    let output = format!("oci:{}/out:v1", dir.path().display());
    fails(
        &[
            "encrypt", "--key", "rot13:x", "--input", &input, "--output", &output,
        ],
        "unknown or not compiled-in scheme",
    );
    fails(
        &[
            "encrypt",
            "--key",
            "jwe:/nonexistent.pem",
            "--input",
            &input,
            "--output",
            &output,
        ],
        "cannot read key file",
    );
    fails(
        &[
            "encrypt",
            "--key",
            "provider:kp",
            "--input",
            &input,
            "--output",
            &output,
        ],
        "keyprovider config",
    );
    let pubkey = dir.path().join("junk.pem");
    std::fs::write(
        &pubkey,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    fails(
        &[
            "encrypt",
            "--key",
            &format!("jwe:{}", pubkey.display()),
            "--input",
            &input,
            "--output",
            &output,
        ],
        "key",
    );
    fails(
        &[
            "decrypt",
            "--key",
            &pubkey.display().to_string(),
            "--input",
            &input,
            "--output",
            &output,
        ],
        "key",
    );
    fails(
        &[
            "encrypt", "--key", "jwe:x", "--input", "oci:", "--output", &output,
        ],
        "no directory",
    );
    let bad_config = dir.path().join("bad.json");
    std::fs::write(&bad_config, "{\"key-providers\": 7}").unwrap();
    fails(
        &[
            "decrypt",
            "--key",
            "provider:kp",
            "--keyprovider-config",
            &bad_config.display().to_string(),
            "--input",
            &input,
            "--output",
            &output,
        ],
        "keyprovider config",
    );
    assert!(!dir.path().join("out/index.json").exists());
    // keyprovider mode with garbage on stdin
    let kek = dir.path().join("kek");
    std::fs::write(&kek, [1u8; 32]).unwrap();
    let mut child = ocicrypt()
        .args([
            "keyprovider",
            "--kek",
            &format!("kbs:///a/b/c={}", kek.display()),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"op\":\"explode\"}")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown op"));
}
