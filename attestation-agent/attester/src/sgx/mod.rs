//! Intel SGX enclaves running a LibOS: Gramine (`/dev/attestation` pseudo-files: write
//! `user_report_data`, read `quote`) or Occlum (`/dev/sgx` DCAP ioctls, selected by the
//! `OCCLUM` environment variable). Evidence: `{"quote": "<base64 DCAP quote>"}`.

mod ioctl;

use std::{fmt, io, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};

pub(crate) use ioctl::OcclumSgxIoctl;

use crate::{
    support::{blocking, io_error, pad_report_data, read_file},
    Attester, AttesterError, Env, Platform, Tee,
};

/// Set inside an Occlum enclave.
pub(crate) const OCCLUM_ENV: &str = "OCCLUM";
/// Gramine's attestation pseudo-filesystem.
pub(crate) const GRAMINE_DIR: &str = "/dev/attestation";
/// Occlum's SGX device.
pub(crate) const OCCLUM_DEVICE: &str = "/dev/sgx";
/// Bytes of report data an SGX report binds.
pub(crate) const REPORT_DATA_SIZE: usize = 64;
/// Report data in an SGX DCAP quote v3 (header 48 bytes, report body offset 320).
const QUOTE_REPORT_DATA: std::ops::Range<usize> = 368..432;

const TEE: Tee = Tee::Sgx;

/// Occlum's DCAP quote generation (`/dev/sgx` ioctls in an enclave, recorded replies in
/// tests).
pub(crate) trait OcclumDcap: Send + Sync + fmt::Debug {
    /// A DCAP quote binding `report_data`.
    fn quote(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>>;
}

/// SGX evidence as trustee's SGX verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxEvidence {
    /// base64 of the DCAP quote.
    pub quote: String,
}

#[derive(Debug, Clone)]
enum LibOs {
    Gramine(PathBuf),
    Occlum(Arc<dyn OcclumDcap>),
}

/// The SGX attester.
#[derive(Debug, Clone)]
pub(crate) struct SgxAttester {
    libos: LibOs,
}

impl SgxAttester {
    /// Gramine's `/dev/attestation` under the platform root.
    pub(crate) fn gramine(platform: &Platform) -> Self {
        Self {
            libos: LibOs::Gramine(platform.path(GRAMINE_DIR)),
        }
    }

    /// Occlum, through `device` (the `/dev/sgx` ioctls, or recorded replies in tests).
    pub(crate) fn occlum(device: Arc<dyn OcclumDcap>) -> Self {
        Self {
            libos: LibOs::Occlum(device),
        }
    }

    fn quote(&self, report_data: &[u8; REPORT_DATA_SIZE]) -> Result<Vec<u8>, AttesterError> {
        let quote = match &self.libos {
            LibOs::Gramine(dir) => {
                let input = dir.join("user_report_data");
                std::fs::write(&input, report_data)
                    .map_err(|e| io_error(TEE, "write", &input, e))?;
                read_file(TEE, &dir.join("quote"))?
            }
            LibOs::Occlum(device) => device.quote(report_data).map_err(|e| {
                io_error(
                    TEE,
                    "generate a DCAP quote through",
                    std::path::Path::new(OCCLUM_DEVICE),
                    e,
                )
            })?,
        };
        // a v3 quote must carry our report data
        if quote.get(..2) == Some(&[3u8, 0][..])
            && quote.get(QUOTE_REPORT_DATA) != Some(&report_data[..])
        {
            return Err(AttesterError::Platform {
                tee: TEE,
                message: "the SGX quote does not bind the requested report data".to_string(),
            });
        }
        Ok(quote)
    }
}

/// Looks for SGX: `OCCLUM` set (Occlum), or Gramine's `attestation_type` being `dcap`.
pub(crate) fn probe(
    platform: &Platform,
    env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    if env.get(OCCLUM_ENV).is_some() {
        let device = Arc::new(OcclumSgxIoctl::new(platform.path(OCCLUM_DEVICE)));
        return Ok(Some(Box::new(SgxAttester::occlum(device))));
    }
    let kind = platform.path(GRAMINE_DIR).join("attestation_type");
    Ok(match std::fs::read_to_string(kind) {
        Ok(kind) if kind.trim() == "dcap" => Some(Box::new(SgxAttester::gramine(platform))),
        _ => None,
    })
}

#[async_trait]
impl Attester for SgxAttester {
    fn tee(&self) -> Tee {
        TEE
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let report_data = pad_report_data::<REPORT_DATA_SIZE>(TEE, report_data)?;
        let this = self.clone();
        let quote = blocking(TEE, move || this.quote(&report_data)).await?;
        Ok(serde_json::json!(SgxEvidence {
            quote: STANDARD.encode(quote)
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    const QUOTE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/evidence/occlum_quote.dat"
    );

    fn quote_for(report_data: &[u8; 64]) -> Vec<u8> {
        let mut quote = std::fs::read(QUOTE).expect("recorded Occlum quote");
        quote[QUOTE_REPORT_DATA].copy_from_slice(report_data);
        quote
    }

    fn gramine_tree(quote: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let att = Platform::new(dir.path()).path(GRAMINE_DIR);
        std::fs::create_dir_all(&att).unwrap();
        std::fs::write(att.join("attestation_type"), "dcap").unwrap();
        std::fs::write(att.join("quote"), quote).unwrap();
        dir
    }

    fn padded(data: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..data.len()].copy_from_slice(data);
        out
    }

    #[tokio::test]
    async fn gramine_writes_the_report_data_and_returns_the_quote() {
        let quote = quote_for(&padded(b"nonce digest"));
        let dir = gramine_tree(&quote);
        let platform = Platform::new(dir.path());
        let attester = probe(&platform, &Env::default()).unwrap().unwrap();
        assert_eq!(attester.tee(), Tee::Sgx);
        let evidence = attester.get_evidence(b"nonce digest").await.unwrap();
        assert_eq!(evidence, json!({"quote": STANDARD.encode(&quote)}));
        assert_eq!(
            std::fs::read(platform.path(GRAMINE_DIR).join("user_report_data")).unwrap(),
            padded(b"nonce digest")
        );
        // a quote for other report data is refused; too much report data too
        let err = attester.get_evidence(b"other").await.unwrap_err();
        assert!(err.to_string().contains("does not bind"), "{err}");
        let err = attester.get_evidence(&[0; 65]).await.unwrap_err();
        assert!(
            matches!(err, AttesterError::ReportDataTooLong { .. }),
            "{err}"
        );
    }

    #[test]
    fn detection_needs_dcap_or_occlum() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::new(dir.path());
        assert!(probe(&platform, &Env::default()).unwrap().is_none());
        let att = platform.path(GRAMINE_DIR);
        std::fs::create_dir_all(&att).unwrap();
        std::fs::write(att.join("attestation_type"), "epid").unwrap();
        assert!(probe(&platform, &Env::default()).unwrap().is_none());
        std::fs::write(att.join("attestation_type"), "dcap\n").unwrap();
        assert!(probe(&platform, &Env::default()).unwrap().is_some());
        let occlum: Env = [(OCCLUM_ENV, "1")].into_iter().collect();
        let empty = tempfile::tempdir().unwrap();
        assert!(probe(&Platform::new(empty.path()), &occlum)
            .unwrap()
            .is_some());
    }

    #[derive(Debug)]
    struct RecordedOcclum {
        requests: Mutex<Vec<[u8; 64]>>,
    }

    impl OcclumDcap for RecordedOcclum {
        fn quote(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>> {
            self.requests.lock().unwrap().push(*report_data);
            Ok(quote_for(report_data))
        }
    }

    #[tokio::test]
    async fn occlum_quotes_through_its_device() {
        let device = Arc::new(RecordedOcclum {
            requests: Mutex::new(Vec::new()),
        });
        let attester = SgxAttester::occlum(device.clone());
        let evidence = attester.get_evidence(&[0xAB; 48]).await.unwrap();
        let expected = quote_for(&padded(&[0xAB; 48]));
        assert_eq!(evidence, json!({"quote": STANDARD.encode(expected)}));
        assert_eq!(*device.requests.lock().unwrap(), vec![padded(&[0xAB; 48])]);
        let parsed: SgxEvidence = serde_json::from_value(evidence).unwrap();
        assert!(!parsed.quote.is_empty());
    }

    #[tokio::test]
    async fn a_missing_gramine_quote_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::new(dir.path());
        std::fs::create_dir_all(platform.path(GRAMINE_DIR)).unwrap();
        let attester = SgxAttester::gramine(&platform);
        let err = attester.get_evidence(b"x").await.unwrap_err();
        assert!(matches!(err, AttesterError::Io { .. }), "{err}");
    }
}
