//! Layer keys end to end: a layer encrypted with ocicrypt-rs through a keyprovider whose
//! key-encryption key (KEK) is also held by the hub's KBC, then decrypted by ocicrypt-rs
//! through the real `confidential-data-hub`'s ttRPC `UnWrapKey` — with `offline_fs_kbc`,
//! and with `cc_kbc` against the test KBS and the real attestation agent. Also the same
//! unwrapper in process, and the error codes of `WrapKey` and `UnWrapKey`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{Cursor, Read as _},
    sync::Arc,
};

use common::*;
use confidential_data_hub::{CdhClient, Config, Environment, Hub, HubDirs, LoadOptions};
use ocicrypt_rs::{
    decrypt_layer, encrypt_layer,
    keywrap::{
        keyprovider::{KekKeyProvider, KeyProviderKeyWrapper, KeyProviderTransport, WrapType},
        KeyWrappers,
    },
    EncryptedLayer,
};
use sha2::Digest as _;
use ttrpc::Code;

const PROVIDER: &str = "attestation-agent";
const MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const KID: &str = "kbs:///default/key/1";

fn kek() -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(13).wrapping_add(5))
        .collect()
}

fn layer_bytes() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect()
}

/// Encrypts `plain` with a provider holding `kek` under `kid`: the blob and descriptor.
async fn encrypt(
    plain: &[u8],
    kid: &str,
    kek: &[u8],
    wrap_type: WrapType,
) -> (Vec<u8>, EncryptedLayer) {
    let mut provider = KekKeyProvider::new();
    provider.add_kek(kid, kek).unwrap();
    provider.set_wrap_type(wrap_type);
    let mut wrappers = KeyWrappers::new();
    wrappers.add(
        KeyProviderKeyWrapper::new(
            PROVIDER,
            KeyProviderTransport::InProcess(Arc::new(provider)),
        )
        .unwrap()
        .with_wrap_params(vec![]),
    );
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(plain)));
    let mut encryption = encrypt_layer(Cursor::new(plain.to_vec()), MEDIA_TYPE, &digest).unwrap();
    let mut blob = Vec::new();
    encryption.read_to_end(&mut blob).unwrap();
    let layer = encryption.finalize(&wrappers).await.unwrap();
    (blob, layer)
}

/// Decrypts through `transport` (the hub's socket, or the hub in process).
async fn decrypt(
    blob: &[u8],
    layer: &EncryptedLayer,
    transport: KeyProviderTransport,
) -> ocicrypt_rs::Result<Vec<u8>> {
    let mut wrappers = KeyWrappers::new();
    wrappers.add(KeyProviderKeyWrapper::new(PROVIDER, transport).unwrap());
    let mut decryption = decrypt_layer(
        Cursor::new(blob.to_vec()),
        &layer.media_type,
        &layer.annotations,
        &wrappers,
    )
    .await?;
    assert_eq!(decryption.media_type, MEDIA_TYPE);
    let mut plain = Vec::new();
    decryption.reader.read_to_end(&mut plain)?;
    Ok(plain)
}

fn packet_of(layer: &EncryptedLayer) -> Vec<u8> {
    use base64::Engine as _;
    let value =
        &layer.annotations[&format!("org.opencontainers.image.enc.keys.provider.{PROVIDER}")];
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_wrapped_with_an_offline_fs_kek_decrypt_through_the_hub() {
    let guest = Guest::new();
    guest.set_resources(&[("default/key/1", &kek())]);
    let cdh = guest.start_cdh("");
    let plain = layer_bytes();

    for wrap_type in [WrapType::A256Gcm, WrapType::A256Ctr] {
        let (blob, layer) = encrypt(&plain, KID, &kek(), wrap_type).await;
        let packet: serde_json::Value = serde_json::from_slice(&packet_of(&layer)).unwrap();
        assert_eq!(packet["kid"], KID);
        let got = decrypt(&blob, &layer, KeyProviderTransport::Ttrpc(guest.cdh_addr()))
            .await
            .unwrap();
        assert!(got == plain, "{wrap_type:?}: decrypted layer differs");
    }

    // a KEK the KBC does not hold: UnWrapKey answers NOT_FOUND and decryption fails
    let (blob, layer) = encrypt(&plain, "kbs:///default/key/2", &kek(), WrapType::A256Gcm).await;
    let err = decrypt(&blob, &layer, KeyProviderTransport::Ttrpc(guest.cdh_addr()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("default/key/2"), "{err}");
    let client = CdhClient::connect(&guest.cdh_addr(), START).await.unwrap();
    let request = confidential_data_hub::unwrap_request_for_packet(&packet_of(&layer));
    let err = client.unwrap_key(&request).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NOT_FOUND), "{err}");

    // a KEK of the wrong value: the packet does not authenticate
    let (blob, layer) = encrypt(&plain, KID, &[9u8; 32], WrapType::A256Gcm).await;
    assert!(
        decrypt(&blob, &layer, KeyProviderTransport::Ttrpc(guest.cdh_addr()))
            .await
            .is_err()
    );
    let request = confidential_data_hub::unwrap_request_for_packet(&packet_of(&layer));
    let err = client.unwrap_key(&request).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::INTERNAL), "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");

    // malformed requests, and the hub never wraps
    let err = client
        .unwrap_key(b"{\"op\":\"keyunwrap\"}")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT), "{err}");
    let err = client.wrap_key(b"{}").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::FAILED_PRECONDITION), "{err}");
    assert!(err.to_string().contains("only unwraps layer keys"), "{err}");

    assert!(cdh.stop().unwrap().success());
}

#[tokio::test]
async fn the_hubs_unwrapper_decrypts_in_process() {
    let guest = Guest::new();
    guest.set_resources(&[("default/key/1", &kek())]);
    let mut options = LoadOptions::new(None, Environment::default());
    options.kernel_cmdline = guest.path("cmdline");
    options.credentials_dir = guest.path("kbs");
    options.offline_fs.keys_file = guest.path("no-keys.json");
    options.offline_fs.resources_file = guest.path("resources.json");
    let config = Config::load(&options).unwrap().config;
    let kbc = kms::new_kbc(&config.kbc.name, &config.kbc_params()).unwrap();
    let hub = Hub::with_dirs(
        config,
        kbc,
        HubDirs {
            sealed_secret_dir: guest.sealed_secret_dir(),
            kms_credential_dir: guest.kms_dir(),
        },
    );
    let plain = layer_bytes();
    let (blob, layer) = encrypt(&plain, KID, &kek(), WrapType::A256Gcm).await;
    let got = decrypt(
        &blob,
        &layer,
        KeyProviderTransport::InProcess(hub.key_unwrapper()),
    )
    .await
    .unwrap();
    assert!(got == plain);
}

#[cfg(feature = "kbs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_wrapped_with_a_kbs_kek_decrypt_through_cc_kbc() {
    use testkit::kbs::{KbsConfig, TestKbs};

    let kbs = TestKbs::start(KbsConfig::default()).await.unwrap();
    kbs.put_resource("default/key/1", kek());
    let guest = Guest::new();
    let aa_sock = guest.aa_sock();
    let _aa = guest.start_aa(&format!("[token_configs.kbs]\nurl = \"{}\"\n", kbs.url()));
    let config = format!(
        "[aa]\naa_socket = \"unix://{}\"\n[kbc]\nname = \"cc_kbc\"\nurl = \"{}\"\n",
        aa_sock.display(),
        kbs.url()
    );
    let _cdh = guest.spawn_cdh(guest.cdh_command(&config));

    let plain = layer_bytes();
    for wrap_type in [WrapType::A256Gcm, WrapType::A256Ctr, WrapType::A256Gcm] {
        let (blob, layer) = encrypt(&plain, KID, &kek(), wrap_type).await;
        let got = decrypt(&blob, &layer, KeyProviderTransport::Ttrpc(guest.cdh_addr()))
            .await
            .unwrap();
        assert!(got == plain, "{wrap_type:?}");
    }
    // three layers, one attestation: the hub's one KBC kept its token
    assert_eq!(kbs.counters().auth, 1, "{:?}", kbs.counters());
}
