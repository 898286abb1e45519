//! Layer annotations: wrapped-key annotations, pubopts, CoCo annotation packets, keyprovider
//! messages and PKCS#7 packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_rs::blockcipher::PublicLayerBlockCipherOptions;
use ocicrypt_rs::keywrap::keyprovider::annotation_packet::AnnotationPacket;
use ocicrypt_rs::keywrap::keyprovider::{KeyProviderKeyWrapProtocolInput, KeyProviderKeyWrapProtocolOutput, OcicryptConfig};
use ocicrypt_rs::keywrap::{parse_wrapped_keys, pkcs7};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // "name=value" lines as annotations
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = parse_wrapped_keys(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let _ = PublicLayerBlockCipherOptions::from_annotation(&text);
    if let Ok(packet) = AnnotationPacket::parse(data) {
        let _ = packet.open(&[7u8; 32]);
    }
    let _ = KeyProviderKeyWrapProtocolInput::from_json(data);
    let _ = KeyProviderKeyWrapProtocolOutput::from_json(data);
    let _ = OcicryptConfig::parse(data, "fuzz");
    if let Ok(env) = pkcs7::parse(data) {
        let _ = env.decrypt(&[], &[]);
    }
});
