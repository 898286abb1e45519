//! The keyprovider key wrapper end to end: CoCo annotation packets written by an
//! independent implementation (`tests/tools/provider_encrypt.py`, python `cryptography`,
//! v1 and v2 packets), and wrap/unwrap through our own cmd, ttRPC and gRPC transports and
//! the in-process hook.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use ocicrypt_rs::keywrap::keyprovider::GrpcKeyProviderService;
use ocicrypt_rs::keywrap::keyprovider::TtrpcKeyProviderService;
use ocicrypt_rs::keywrap::keyprovider::{AnnotationPacket, KekKeyProvider, PacketError};
use ocicrypt_rs::keywrap::keyprovider::{
    CommandConfig, KeyProviderError, KeyProviderHandler, KeyProviderKeyWrapper,
    KeyProviderTransport, OcicryptConfig,
};
use ocicrypt_rs::keywrap::KeyWrappers;
use ocicrypt_rs::Error;
use ocicrypt_rs::{decrypt_image, encrypt_image, LayoutReference};

const KID: &str = "kbs:///default/key/1";
const ANNOTATION: &str = "org.opencontainers.image.enc.keys.provider.attestation-agent";

fn oci(dir: &Path) -> LayoutReference {
    LayoutReference::parse(&format!("oci:{}:v1", dir.display())).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    plain: PathBuf,
    original: Vec<String>,
    kek_file: PathBuf,
    kek: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let original = make_layout(dir.path(), &plain, "v1");
    let kek: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    let kek_file = dir.path().join("kek");
    std::fs::write(&kek_file, &kek).unwrap();
    Fixture {
        dir,
        plain,
        original,
        kek_file,
        kek,
    }
}

fn kek_provider(f: &Fixture) -> Arc<dyn KeyProviderHandler> {
    let mut p = KekKeyProvider::new();
    p.add_kek(KID, &f.kek).unwrap();
    Arc::new(p)
}

fn with(wrapper: KeyProviderKeyWrapper) -> KeyWrappers {
    let mut w = KeyWrappers::new();
    w.add(wrapper);
    w
}

fn digests(layout: &Path) -> Vec<String> {
    layers(layout, Some("v1"))
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The independent encryptor: python `cryptography`, no code shared with this crate.
fn provider_encrypt_tool() -> PathBuf {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/provider_encrypt.py");
    assert!(
        tool.is_file(),
        "{} is required by this test and is missing",
        tool.display()
    );
    require("python3");
    let ok = std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .unwrap();
    assert!(ok.success(), "python3 with the `cryptography` module is required (apt-get install -y python3-cryptography)");
    tool
}

fn cmd_transport(f: &Fixture) -> KeyProviderTransport {
    KeyProviderTransport::Cmd(CommandConfig {
        path: env!("CARGO_BIN_EXE_ocicrypt").to_string(),
        args: Some(vec![
            "keyprovider".into(),
            "--kek".into(),
            format!("{KID}={}", f.kek_file.display()),
        ]),
    })
}

#[tokio::test]
async fn coco_packets_v1_and_v2_unwrap_in_process_and_through_cmd() {
    let f = fixture();
    let tool = provider_encrypt_tool();
    for version in ["v1", "v2"] {
        let enc = f.dir.path().join(format!("enc-{version}"));
        run(std::process::Command::new("python3")
            .arg(&tool)
            .arg(&f.plain)
            .arg(&enc)
            .arg(&f.kek_file)
            .arg(KID)
            .arg(version));
        let packet = {
            use base64::Engine;
            let value = layers(&enc, None)[0]["annotations"][ANNOTATION]
                .as_str()
                .unwrap()
                .to_string();
            AnnotationPacket::parse(
                &base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(packet.kid, KID);
        assert_eq!(packet.version.is_some(), version == "v2");
        assert_eq!(packet.provider.as_deref() == Some("kbs"), version == "v2");
        let src = LayoutReference::parse(&format!("oci:{}", enc.display())).unwrap();
        let transports = [
            (
                "in-process",
                KeyProviderTransport::InProcess(kek_provider(&f)),
            ),
            ("cmd", cmd_transport(&f)),
        ];
        for (name, transport) in transports {
            let dec = f.dir.path().join(format!("dec-{version}-{name}"));
            let wrapper = KeyProviderKeyWrapper::new("attestation-agent", transport).unwrap();
            let summary = decrypt_image(&src, &oci(&dec), &with(wrapper))
                .await
                .unwrap();
            assert_eq!(summary.layers_changed, 3);
            assert_eq!(digests(&dec), f.original, "{version} through {name}");
        }
    }
    // The wrong KEK: a typed authentication error, nothing published.
    let mut wrong = KekKeyProvider::new();
    wrong.add_kek(KID, &[0u8; 32]).unwrap();
    let wrapper = KeyProviderKeyWrapper::new(
        "attestation-agent",
        KeyProviderTransport::InProcess(Arc::new(wrong)),
    )
    .unwrap();
    let src =
        LayoutReference::parse(&format!("oci:{}", f.dir.path().join("enc-v2").display())).unwrap();
    let dec = f.dir.path().join("dec-wrong");
    let err = decrypt_image(&src, &oci(&dec), &with(wrapper))
        .await
        .unwrap_err();
    let Error::KeyUnwrap { attempts } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            *attempts[0].error,
            Error::KeyProvider(KeyProviderError::Packet(PacketError::Authentication))
        ),
        "{err}"
    );
    assert!(!dec.join("index.json").exists());
}

async fn round_trip(
    f: &Fixture,
    label: &str,
    wrap: KeyProviderTransport,
    unwrap: KeyProviderTransport,
) {
    let enc = f.dir.path().join(format!("enc-{label}"));
    let wrapper = KeyProviderKeyWrapper::new("attestation-agent", wrap)
        .unwrap()
        .with_wrap_params(vec![format!("keyid={KID}::algorithm=A256GCM").into_bytes()]);
    encrypt_image(&oci(&f.plain), &oci(&enc), &with(wrapper))
        .await
        .unwrap();
    for layer in layers(&enc, Some("v1")) {
        use base64::Engine;
        let packet = base64::engine::general_purpose::STANDARD
            .decode(layer["annotations"][ANNOTATION].as_str().unwrap())
            .unwrap();
        let packet = AnnotationPacket::parse(&packet).unwrap();
        assert_eq!(packet.kid, KID);
        assert_eq!(packet.version.as_deref(), Some("0.1.0"));
    }
    let dec = f.dir.path().join(format!("dec-{label}"));
    let wrapper = KeyProviderKeyWrapper::new("attestation-agent", unwrap).unwrap();
    decrypt_image(&oci(&enc), &oci(&dec), &with(wrapper))
        .await
        .unwrap();
    assert_eq!(digests(&dec), f.original, "{label}");
}

#[tokio::test]
async fn wrap_and_unwrap_through_cmd_ttrpc_and_grpc() {
    let f = fixture();
    // ttRPC server
    let sock = format!("unix://{}/kp.sock", f.dir.path().display());
    let ttrpc_server = protos::server::start(
        &sock,
        [TtrpcKeyProviderService::new(kek_provider(&f)).into_service()],
    )
    .await
    .unwrap();
    // gRPC server
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let grpc_server = tokio::spawn(GrpcKeyProviderService::new(kek_provider(&f)).serve(
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));

    round_trip(&f, "cmd", cmd_transport(&f), cmd_transport(&f)).await;
    round_trip(
        &f,
        "ttrpc",
        KeyProviderTransport::Ttrpc(sock.clone()),
        KeyProviderTransport::Ttrpc(sock.clone()),
    )
    .await;
    round_trip(
        &f,
        "grpc",
        KeyProviderTransport::Grpc(grpc_addr.clone()),
        KeyProviderTransport::Grpc(format!("http://{grpc_addr}")),
    )
    .await;
    // across transports: wrapped by the cmd provider, unwrapped in process (what CDH does)
    round_trip(
        &f,
        "cmd-inproc",
        cmd_transport(&f),
        KeyProviderTransport::InProcess(kek_provider(&f)),
    )
    .await;

    // The config file route, as OCICRYPT_KEYPROVIDER_CONFIG names it.
    let config_path = f.dir.path().join("ocicrypt.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec(
            &serde_json::json!({"key-providers": {"attestation-agent": {"grpc": grpc_addr}}}),
        )
        .unwrap(),
    )
    .unwrap();
    let config = OcicryptConfig::from_file(&config_path).unwrap();
    let wrappers = config.key_wrappers(&BTreeMap::new()).unwrap();
    assert_eq!(wrappers.len(), 1);
    let dec = f.dir.path().join("dec-config");
    let mut w = KeyWrappers::new();
    w.add(wrappers.into_iter().next().unwrap());
    decrypt_image(&oci(&f.dir.path().join("enc-ttrpc")), &oci(&dec), &w)
        .await
        .unwrap();
    assert_eq!(digests(&dec), f.original);

    // A server-side failure is a typed transport error naming the provider.
    let mut other = KekKeyProvider::new();
    other.add_kek("kbs:///other/key/2", &[1u8; 32]).unwrap();
    let other_sock = format!("unix://{}/other.sock", f.dir.path().display());
    let other_server = protos::server::start(
        &other_sock,
        [TtrpcKeyProviderService::new(Arc::new(other)).into_service()],
    )
    .await
    .unwrap();
    let wrapper =
        KeyProviderKeyWrapper::new("attestation-agent", KeyProviderTransport::Ttrpc(other_sock))
            .unwrap();
    let err = decrypt_image(
        &oci(&f.dir.path().join("enc-ttrpc")),
        &oci(&f.dir.path().join("dec-x")),
        &with(wrapper),
    )
    .await
    .unwrap_err();
    let Error::KeyUnwrap { attempts } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(&*attempts[0].error, Error::KeyProvider(KeyProviderError::Transport { transport: "ttrpc", reason, .. }) if reason.contains("no key-encryption key")),
        "{err}"
    );

    other_server.stop().await.unwrap();
    ttrpc_server.stop().await.unwrap();
    let _ = stop_tx.send(());
    grpc_server.await.unwrap().unwrap();
}

#[tokio::test]
async fn broken_providers_are_typed_errors() {
    let f = fixture();
    let enc = f.dir.path().join("enc");
    let wrapper = KeyProviderKeyWrapper::new(
        "attestation-agent",
        KeyProviderTransport::InProcess(kek_provider(&f)),
    )
    .unwrap()
    .with_wrap_params(vec![]);
    encrypt_image(&oci(&f.plain), &oci(&enc), &with(wrapper))
        .await
        .unwrap();
    let cases = [
        ("/bin/false", vec![], "exited"),
        ("/bin/echo", vec!["not json".to_string()], "response"),
        ("/nonexistent/provider", vec![], "cannot start"),
    ];
    for (path, args, expect) in cases {
        let wrapper = KeyProviderKeyWrapper::new(
            "attestation-agent",
            KeyProviderTransport::Cmd(CommandConfig {
                path: path.into(),
                args: Some(args),
            }),
        )
        .unwrap();
        let err = decrypt_image(&oci(&enc), &oci(&f.dir.path().join("dec")), &with(wrapper))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expect), "{path}: {err}");
        assert!(matches!(err, Error::KeyUnwrap { .. }));
    }
    // Nothing listens: the ttRPC and gRPC transports fail cleanly.
    for transport in [
        KeyProviderTransport::Ttrpc(format!("unix://{}/none.sock", f.dir.path().display())),
        KeyProviderTransport::Grpc("127.0.0.1:1".into()),
    ] {
        let wrapper = KeyProviderKeyWrapper::new("attestation-agent", transport).unwrap();
        let err = decrypt_image(&oci(&enc), &oci(&f.dir.path().join("dec")), &with(wrapper))
            .await
            .unwrap_err();
        let Error::KeyUnwrap { attempts } = &err else {
            panic!("{err}")
        };
        assert!(
            matches!(
                &*attempts[0].error,
                Error::KeyProvider(KeyProviderError::Transport { .. })
            ),
            "{err}"
        );
    }
    // A provider of another name does not read this annotation.
    let wrapper =
        KeyProviderKeyWrapper::new("other", KeyProviderTransport::InProcess(kek_provider(&f)))
            .unwrap();
    let err = decrypt_image(&oci(&enc), &oci(&f.dir.path().join("dec")), &with(wrapper))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoMatchingKeyWrapper { .. }), "{err}");
    assert!(!f.dir.path().join("dec/index.json").exists());
}
