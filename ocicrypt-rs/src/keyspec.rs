//! Key wrappers from skopeo-style key arguments.
//!
//! Encryption (`--encryption-key`): `jwe:<public key file>`, `pkcs7:<certificate file>`,
//! `provider:<name>[:<parameters>]`. Decryption (`--decryption-key`): a private key file
//! (used by both `jwe` and `pkcs7`), a certificate file (selects the `pkcs7` recipient),
//! or `provider:<name>[:<parameters>]`. Provider names resolve through an
//! [`OcicryptConfig`](crate::keywrap::keyprovider::OcicryptConfig).

use std::path::Path;

use crate::error::{Error, Result};
use crate::keywrap::KeyWrappers;

use crate::keywrap::jwe::JweKeyWrapper;
use crate::keywrap::keyprovider::{KeyProviderError, KeyProviderKeyWrapper, OcicryptConfig};

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(Path::new(path)).map_err(|e| Error::KeyFile {
        path: path.to_string(),
        reason: format!("cannot read key file: {e}"),
    })
}

fn bad_spec(spec: &str, reason: &str) -> Error {
    Error::InvalidKeySpec {
        spec: spec.chars().take(200).collect(),
        reason: reason.to_string(),
    }
}

fn provider(
    spec: &str,
    config: Option<&OcicryptConfig>,
    wrap: bool,
) -> Result<KeyProviderKeyWrapper> {
    let rest = spec.strip_prefix("provider:").unwrap_or(spec);
    let (name, params) = match rest.split_once(':') {
        Some((name, params)) => (name, Some(params)),
        None => (rest, None),
    };
    let config = config.ok_or_else(|| {
        bad_spec(
            spec,
            "no keyprovider config (set OCICRYPT_KEYPROVIDER_CONFIG or pass one)",
        )
    })?;
    let attrs = config
        .key_providers
        .get(name)
        .ok_or_else(|| Error::KeyProvider(KeyProviderError::UnknownProvider(name.to_string())))?;
    let transport = crate::keywrap::keyprovider::KeyProviderTransport::from_attrs(name, attrs)?;
    let params: Vec<Vec<u8>> = params
        .map(|p| vec![p.as_bytes().to_vec()])
        .unwrap_or_default();
    let wrapper = KeyProviderKeyWrapper::new(name, transport)?;
    Ok(if wrap {
        wrapper.with_wrap_params(params)
    } else {
        wrapper.with_unwrap_params(params)
    })
}

/// Key wrappers that encrypt for the recipients named by `specs`.
pub fn encryption_wrappers(
    specs: &[String],
    config: Option<&OcicryptConfig>,
) -> Result<KeyWrappers> {
    let mut jwe = JweKeyWrapper::new();
    #[cfg(feature = "keywrap-pkcs7")]
    let mut pkcs7 = crate::keywrap::pkcs7::Pkcs7KeyWrapper::new();
    let mut wrappers = KeyWrappers::new();
    for spec in specs {
        let (scheme, value) = spec.split_once(':').ok_or_else(|| {
            bad_spec(
                spec,
                "expected jwe:<file>, pkcs7:<file> or provider:<name>[:<params>]",
            )
        })?;
        match scheme {
            "jwe" => jwe.add_recipient_from_bytes(&read(value)?)?,
            #[cfg(feature = "keywrap-pkcs7")]
            "pkcs7" => {
                pkcs7.add_recipient(crate::keywrap::pkcs7::Certificate::parse(&read(value)?)?)
            }
            "provider" => {
                wrappers.add(provider(spec, config, true)?);
            }
            _ => return Err(bad_spec(spec, "unknown or not compiled-in scheme")),
        }
    }
    if jwe.has_recipients() {
        wrappers.add(jwe);
    }
    #[cfg(feature = "keywrap-pkcs7")]
    if crate::keywrap::KeyWrapper::can_wrap(&pkcs7) {
        wrappers.add(pkcs7);
    }
    if wrappers.iter().next().is_none() {
        return Err(Error::NoRecipients);
    }
    Ok(wrappers)
}

/// Key wrappers that decrypt with the keys named by `specs`; `password` opens
/// password-protected (encrypted PKCS#8) private keys.
pub fn decryption_wrappers(
    specs: &[String],
    password: Option<&[u8]>,
    config: Option<&OcicryptConfig>,
) -> Result<KeyWrappers> {
    let mut jwe = JweKeyWrapper::new();
    #[cfg(feature = "keywrap-pkcs7")]
    let mut pkcs7 = crate::keywrap::pkcs7::Pkcs7KeyWrapper::new();
    let mut wrappers = KeyWrappers::new();
    for spec in specs {
        if spec.starts_with("provider:") {
            wrappers.add(provider(spec, config, false)?);
            continue;
        }
        let data = read(spec)?;
        #[cfg(feature = "keywrap-pkcs7")]
        if data
            .windows(27)
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            pkcs7.add_certificate(crate::keywrap::pkcs7::Certificate::parse(&data)?);
            continue;
        }
        let key = crate::keys::parse_private_key(&data, password)?;
        #[cfg(feature = "keywrap-pkcs7")]
        pkcs7.add_private_key(key.clone());
        jwe.add_private_key(key);
    }
    if jwe.has_private_keys() {
        wrappers.add(jwe);
    }
    #[cfg(feature = "keywrap-pkcs7")]
    if crate::keywrap::KeyWrapper::can_unwrap(&pkcs7) {
        wrappers.add(pkcs7);
    }
    Ok(wrappers)
}
