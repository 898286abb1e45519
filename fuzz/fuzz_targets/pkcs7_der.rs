//! PKCS#7 EnvelopedData (the `pkcs7` key wrapper's packets) and X.509 certificates, in DER.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_rs::keywrap::pkcs7;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = pkcs7::parse(data) {
        // no key: every recipient is looked at and none opens
        assert!(envelope.decrypt(&[], &[]).is_err());
    }
    let _ = pkcs7::Certificate::parse(data);
    let wrapper = pkcs7::Pkcs7KeyWrapper::new();
    assert!(wrapper.unwrap(data).is_err());
});
