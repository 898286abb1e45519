//! The rustls side: trust anchors and the client configuration.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::Error;

/// Which server certificates are accepted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trust {
    /// Mozilla's roots are trusted (besides `extra_roots`)
    pub no_webpki: bool,
    /// PEM texts, each one or more `CERTIFICATE` blocks
    pub extra_roots: Vec<String>,
    /// any certificate (registries marked insecure); handshake signatures are still checked
    pub accept_any: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn root_store(trust: &Trust) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    if !trust.no_webpki {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for (index, pem) in trust.extra_roots.iter().enumerate() {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| Error::BadPem {
                index,
                message: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| Error::BadCertificate {
                index,
                message: e.to_string(),
            })?;
            found += 1;
        }
        if found == 0 {
            return Err(Error::NoCertificate { index });
        }
    }
    if roots.is_empty() {
        return Err(Error::NoRoots);
    }
    Ok(roots)
}

/// The rustls configuration for `trust`; the PEM roots are checked even with `accept_any`.
pub(crate) fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, Error> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let roots = root_store(trust)?;
    Ok(if trust.accept_any {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    })
}

/// Accepts any server certificate while still checking the handshake signatures, so the
/// session keys belong to the presented certificate.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn with_roots(no_webpki: bool, pems: &[&str]) -> Trust {
        Trust {
            no_webpki,
            extra_roots: pems.iter().map(|p| p.to_string()).collect(),
            accept_any: false,
        }
    }

    #[test]
    fn pem_roots_are_added_to_or_replace_the_web_pki() {
        let ca = ca_pem();
        let webpki = root_store(&with_roots(false, &[])).unwrap().len();
        assert_eq!(webpki, webpki_roots::TLS_SERVER_ROOTS.len());
        assert_eq!(
            root_store(&with_roots(false, &[&ca])).unwrap().len(),
            webpki + 1
        );
        assert_eq!(root_store(&with_roots(true, &[&ca])).unwrap().len(), 1);
        // two blocks in one text, and two texts
        let two = format!("{ca}\n{}", ca_pem());
        assert_eq!(
            root_store(&with_roots(true, &[&two, &ca])).unwrap().len(),
            3
        );
        assert!(client_config(&with_roots(true, &[&ca])).is_ok());
    }

    #[test]
    fn texts_without_a_certificate_block_are_refused() {
        let ca = ca_pem();
        for bad in [
            "",
            "garbage",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let err = root_store(&with_roots(false, &[&ca, bad])).unwrap_err();
            assert!(
                matches!(err, Error::NoCertificate { index: 1 }),
                "{bad:?}: {err}"
            );
            assert!(err.is_certificate());
        }
    }

    #[test]
    fn bad_certificate_blocks_are_refused() {
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let err = root_store(&with_roots(false, &[bad_base64])).unwrap_err();
        assert!(matches!(err, Error::BadPem { index: 0, .. }), "{err}");
        let unterminated = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        let err = root_store(&with_roots(false, &[unterminated])).unwrap_err();
        assert!(matches!(err, Error::BadPem { index: 0, .. }), "{err}");
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = root_store(&with_roots(false, &[not_der])).unwrap_err();
        assert!(
            matches!(err, Error::BadCertificate { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn no_roots_at_all_is_refused() {
        let err = client_config(&with_roots(true, &[])).unwrap_err();
        assert!(matches!(err, Error::NoRoots), "{err}");
    }
}
