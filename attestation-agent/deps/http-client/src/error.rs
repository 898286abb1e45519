/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An extra root certificate text holds no `CERTIFICATE` PEM block.
    #[error("extra root certificate #{index}: no PEM CERTIFICATE block found")]
    NoCertificate {
        /// position of the PEM text in the list given
        index: usize,
    },
    /// A `CERTIFICATE` block is not valid PEM (bad base64, unterminated).
    #[error("extra root certificate #{index}: bad PEM: {message}")]
    BadPem {
        /// position of the PEM text in the list given
        index: usize,
        /// what the PEM parser said
        message: String,
    },
    /// A certificate cannot be a trust anchor (not DER X.509, unsupported key).
    #[error("extra root certificate #{index}: unusable certificate: {message}")]
    BadCertificate {
        /// position of the PEM text in the list given
        index: usize,
        /// what the certificate parser said
        message: String,
    },
    /// The web PKI roots are off and no extra root was given: nothing could be trusted.
    #[error("no trusted root certificate: give at least one PEM root")]
    NoRoots,
    /// rustls refused the configuration (no usable protocol version).
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest refused the configuration (a bad proxy, no resolver).
    #[error("HTTP client setup: {0}")]
    Client(String),
}

impl Error {
    /// Whether the error is about a root certificate given by the caller.
    pub fn is_certificate(&self) -> bool {
        matches!(
            self,
            Self::NoCertificate { .. }
                | Self::BadPem { .. }
                | Self::BadCertificate { .. }
                | Self::NoRoots
        )
    }
}

/// `err` and its sources joined by `: ` (reqwest keeps the TLS, DNS and connection details
/// in the sources); a source whose text the message already holds is not repeated.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// Whether a rustls error sits anywhere in the chain of `err` (a handshake or certificate
/// failure). `io::Error` hides its inner error from `source()`, so it is opened as well.
pub fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if is_tls_failure(inner) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    }

    fn layer(
        text: &'static str,
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Layer {
        Layer { text, source }
    }

    #[test]
    fn error_chain_joins_sources_without_repeats() {
        let inner = layer("connection refused", None);
        let middle = layer("tcp connect error", Some(Box::new(inner)));
        let outer = layer("error sending request", Some(Box::new(middle)));
        assert_eq!(
            error_chain(&outer),
            "error sending request: tcp connect error: connection refused"
        );
        // a wrapper that already prints its source does not print it twice
        let inner = layer("timed out", None);
        let outer = layer("read: timed out", Some(Box::new(inner)));
        assert_eq!(error_chain(&outer), "read: timed out");
        assert_eq!(error_chain(&layer("alone", None)), "alone");
    }

    #[test]
    fn tls_failures_are_found_through_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls);
        let outer = layer("client error (Connect)", Some(Box::new(io)));
        assert!(is_tls_failure(&outer));
        assert!(is_tls_failure(&rustls::Error::DecryptError));

        let plain_io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let outer = layer("client error (Connect)", Some(Box::new(plain_io)));
        assert!(!is_tls_failure(&outer));
        let wrapped = std::io::Error::other(layer("dns error", None));
        assert!(!is_tls_failure(&wrapped));
    }
}
