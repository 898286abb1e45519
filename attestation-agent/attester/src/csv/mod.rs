//! Hygon CSV.
//!
//! The guest asks `/dev/csv-guest` for an attestation report over a one-page request
//! (`data[64] ‖ mnonce[16] ‖ SM3(data ‖ mnonce)`). The firmware XORs the report fields with a
//! random `anonce` and protects the signer part (PEK certificate, chip serial number) with
//! HMAC-SM3 keyed by our mnonce: the attester checks that MAC, then restores the PEK and the
//! serial number in the page, as trustee's CSV verifier expects.
//!
//! Evidence: `{"attestation_report": {"magic": [u8;16], "flags": u32, "data": [u8;4096]},
//! "cert_chain": {"pek": <certificate>}, "serial_number": [u8;64], "cc_eventlog": b64|null}`
//! in the serde shape of the csv-rs crate. (The optional HSK/CEK download from Hygon's KDS is
//! left to the verifier.)

mod ioctl;

use std::{fmt, io, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sm3::{Digest, Sm3};

pub(crate) use ioctl::CsvGuestIoctl;

use crate::{
    eventlog,
    support::{blocking, io_error, pad_report_data},
    Attester, AttesterError, Env, Platform, Tee,
};

/// The CSV guest device.
pub(crate) const DEVICE_PATH: &str = "/dev/csv-guest";
/// Bytes of report data a report binds.
pub(crate) const REPORT_DATA_SIZE: usize = 64;
/// The request and the report share one page.
pub(crate) const PAGE_SIZE: usize = 4096;
/// data ‖ mnonce ‖ SM3 hash.
pub(crate) const REQUEST_SIZE: usize = 64 + 16 + 32;

/// Offsets in the report page (TEE info, then the signer).
const REPORT_DATA: std::ops::Range<usize> = 64..128;
const MNONCE: std::ops::Range<usize> = 128..144;
const ANONCE: std::ops::Range<usize> = 188..192;
const PEK_CERT: std::ops::Range<usize> = 336..2420;
const SERIAL: std::ops::Range<usize> = 2420..2484;
const SIGNER_RESERVED: std::ops::Range<usize> = 2484..2516;
const SIGNER_MAC: std::ops::Range<usize> = 2516..2548;

const TEE: Tee = Tee::Csv;

/// The report request (`/dev/csv-guest` in a guest, recorded replies in tests).
pub(crate) trait CsvGuestDevice: Send + Sync + fmt::Debug {
    /// The 4096-byte report page for a request page start.
    fn attestation_report(&self, request: &[u8; REQUEST_SIZE]) -> io::Result<Vec<u8>>;
}

/// Why bytes are not a CSV report or certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// Wrong size.
    #[error("{what} is {len} bytes, not {expected}")]
    Size {
        /// what was parsed
        what: &'static str,
        /// its size
        len: usize,
        /// the size it must have
        expected: usize,
    },
    /// The firmware's answer does not belong to our request.
    #[error("the report does not answer our request: {0}")]
    Mismatch(&'static str),
}

/// `AttestationReportWrapper` of csv-rs: the report page as returned (signer restored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvReportWrapper {
    /// Zero for a legacy report.
    pub magic: Vec<u8>,
    /// Extension flags (0 for a legacy report).
    pub flags: u32,
    /// The 4096-byte report page.
    pub data: Vec<u8>,
}

/// Firmware version in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvFirmware {
    /// major
    pub(crate) major: u8,
    /// minor
    pub(crate) minor: u8,
}

/// An ECC public key of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvEccKey {
    /// curve id
    pub(crate) g: u32,
    /// x coordinate (72 bytes, little-endian, zero-padded)
    pub(crate) x: Vec<u8>,
    /// y coordinate
    pub(crate) y: Vec<u8>,
}

/// The public key of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvPubKey {
    /// key usage
    pub(crate) usage: u32,
    /// algorithm
    pub(crate) algo: u32,
    /// the key
    pub(crate) key: CsvEccKey,
}

/// The signed data of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvCertData {
    /// firmware version
    pub(crate) firmware: CsvFirmware,
    /// reserved
    pub(crate) reserved1: u16,
    /// the public key
    pub(crate) pubkey: CsvPubKey,
    /// bytes of `user_id` in use
    pub(crate) uid_size: u16,
    /// user id (254 bytes)
    pub(crate) user_id: Vec<u8>,
    /// sid (16 bytes)
    pub(crate) sid: Vec<u8>,
    /// reserved (608 bytes)
    pub(crate) reserved2: Vec<u8>,
}

/// The body of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvCertBody {
    /// format version
    pub(crate) ver: u32,
    /// signed data
    pub(crate) data: CsvCertData,
}

/// An ECDSA signature (72-byte r and s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvEcdsa {
    /// r
    pub(crate) r: Vec<u8>,
    /// s
    pub(crate) s: Vec<u8>,
}

/// A signature slot of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvSignature {
    /// key usage of the signer
    pub(crate) usage: u32,
    /// algorithm
    pub(crate) algo: u32,
    /// the signature
    pub(crate) signature: CsvEcdsa,
    /// reserved (368 bytes)
    #[serde(rename = "_reserved")]
    pub(crate) reserved: Vec<u8>,
}

/// A CSV certificate (2084 bytes), in the serde shape of csv-rs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvCertificate {
    /// the body
    pub(crate) body: CsvCertBody,
    /// two signature slots
    pub(crate) sigs: Vec<CsvSignature>,
}

/// Size of a CSV certificate.
pub(crate) const CERTIFICATE_SIZE: usize = 2084;

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

impl CsvCertificate {
    /// Parses the binary certificate.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, CsvError> {
        if bytes.len() != CERTIFICATE_SIZE {
            return Err(CsvError::Size {
                what: "a CSV certificate",
                len: bytes.len(),
                expected: CERTIFICATE_SIZE,
            });
        }
        let signature = |at: usize| CsvSignature {
            usage: le_u32(bytes, at),
            algo: le_u32(bytes, at + 4),
            signature: CsvEcdsa {
                r: bytes[at + 8..at + 80].to_vec(),
                s: bytes[at + 80..at + 152].to_vec(),
            },
            reserved: bytes[at + 152..at + 520].to_vec(),
        };
        Ok(Self {
            body: CsvCertBody {
                ver: le_u32(bytes, 0),
                data: CsvCertData {
                    firmware: CsvFirmware {
                        major: bytes[4],
                        minor: bytes[5],
                    },
                    reserved1: le_u16(bytes, 6),
                    pubkey: CsvPubKey {
                        usage: le_u32(bytes, 8),
                        algo: le_u32(bytes, 12),
                        key: CsvEccKey {
                            g: le_u32(bytes, 16),
                            x: bytes[20..92].to_vec(),
                            y: bytes[92..164].to_vec(),
                        },
                    },
                    uid_size: le_u16(bytes, 164),
                    user_id: bytes[166..420].to_vec(),
                    sid: bytes[420..436].to_vec(),
                    reserved2: bytes[436..1044].to_vec(),
                },
            },
            sigs: vec![signature(1044), signature(1564)],
        })
    }
}

/// The certificates sent along.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsvCertChain {
    /// The platform endorsement key certificate.
    pub(crate) pek: CsvCertificate,
}

/// CSV evidence as trustee's CSV verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvEvidence {
    /// The report page.
    pub attestation_report: CsvReportWrapper,
    // crate-private: the certificate layout is wire format, not API
    /// The PEK certificate.
    pub(crate) cert_chain: CsvCertChain,
    /// The chip serial number (64 bytes).
    pub serial_number: Vec<u8>,
    /// base64 of the CC eventlog, `null` without one.
    pub cc_eventlog: Option<String>,
}

fn xor_with(bytes: &mut [u8], anonce: [u8; 4]) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= anonce[i % 4];
    }
}

/// Checks that `page` answers the request `data`/`mnonce` (report data and mnonce echoed,
/// signer MAC keyed by the mnonce), then restores the PEK certificate and serial number
/// (XORed with the anonce by the firmware) and clears the signer's reserved bytes.
pub(crate) fn verify_and_restore(
    page: &mut [u8],
    data: &[u8; REPORT_DATA_SIZE],
    mnonce: &[u8; 16],
) -> Result<(), CsvError> {
    if page.len() != PAGE_SIZE {
        return Err(CsvError::Size {
            what: "the report page",
            len: page.len(),
            expected: PAGE_SIZE,
        });
    }
    let mut anonce = [0u8; 4];
    anonce.copy_from_slice(&page[ANONCE]);
    let mut echoed = page[MNONCE].to_vec();
    xor_with(&mut echoed, anonce);
    if echoed != mnonce {
        return Err(CsvError::Mismatch("the mnonce differs"));
    }
    let mut report_data = page[REPORT_DATA].to_vec();
    xor_with(&mut report_data, anonce);
    if report_data != data {
        return Err(CsvError::Mismatch("the report data differs"));
    }
    let mut mac = <Hmac<Sm3> as Mac>::new_from_slice(mnonce)
        .map_err(|_| CsvError::Mismatch("unusable mnonce"))?;
    mac.update(&page[PEK_CERT.start..SIGNER_RESERVED.end]);
    mac.verify_slice(&page[SIGNER_MAC])
        .map_err(|_| CsvError::Mismatch("the signer MAC does not verify"))?;
    xor_with(&mut page[PEK_CERT], anonce);
    xor_with(&mut page[SERIAL], anonce);
    page[SIGNER_RESERVED].fill(0);
    Ok(())
}

/// The evidence of a restored report page.
pub fn evidence_from_report(
    page: &[u8],
    cc_eventlog: Option<String>,
) -> Result<CsvEvidence, CsvError> {
    if page.len() != PAGE_SIZE {
        return Err(CsvError::Size {
            what: "the report page",
            len: page.len(),
            expected: PAGE_SIZE,
        });
    }
    Ok(CsvEvidence {
        attestation_report: CsvReportWrapper {
            magic: vec![0; 16],
            flags: 0,
            data: page.to_vec(),
        },
        cert_chain: CsvCertChain {
            pek: CsvCertificate::parse(&page[PEK_CERT])?,
        },
        serial_number: page[SERIAL].to_vec(),
        cc_eventlog,
    })
}

/// The request page start: data ‖ mnonce ‖ SM3(data ‖ mnonce).
pub(crate) fn request(data: &[u8; REPORT_DATA_SIZE], mnonce: &[u8; 16]) -> [u8; REQUEST_SIZE] {
    let mut request = [0u8; REQUEST_SIZE];
    request[..64].copy_from_slice(data);
    request[64..80].copy_from_slice(mnonce);
    let hash = Sm3::new()
        .chain_update(data)
        .chain_update(mnonce)
        .finalize();
    request[80..].copy_from_slice(&hash);
    request
}

/// The CSV attester.
#[derive(Debug, Clone)]
pub(crate) struct CsvAttester {
    platform: Platform,
    aael: PathBuf,
    device: Arc<dyn CsvGuestDevice>,
}

impl CsvAttester {
    /// The attester of this platform, using the kernel's `/dev/csv-guest`.
    pub(crate) fn new(platform: Platform, env: &Env) -> Self {
        let device = Arc::new(CsvGuestIoctl::new(platform.path(DEVICE_PATH)));
        Self::with_device(platform, env, device)
    }

    /// The attester with another report source (recorded replies in tests).
    pub(crate) fn with_device(
        platform: Platform,
        env: &Env,
        device: Arc<dyn CsvGuestDevice>,
    ) -> Self {
        let aael = eventlog::aael_path(&platform, env);
        Self {
            platform,
            aael,
            device,
        }
    }

    fn evidence(&self, data: [u8; REPORT_DATA_SIZE]) -> Result<CsvEvidence, AttesterError> {
        let mut mnonce = [0u8; 16];
        getrandom::getrandom(&mut mnonce).map_err(|e| AttesterError::Platform {
            tee: TEE,
            message: format!("no randomness for the request nonce: {e}"),
        })?;
        let path = self.platform.path(DEVICE_PATH);
        let mut page = self
            .device
            .attestation_report(&request(&data, &mnonce))
            .map_err(|e| io_error(TEE, "get an attestation report from", &path, e))?;
        let platform_error = |e: CsvError| AttesterError::Platform {
            tee: TEE,
            message: e.to_string(),
        };
        verify_and_restore(&mut page, &data, &mnonce).map_err(platform_error)?;
        let cc_eventlog =
            eventlog::cc_eventlog(&self.platform, &self.aael, TEE)?.map(|log| STANDARD.encode(log));
        evidence_from_report(&page, cc_eventlog).map_err(platform_error)
    }
}

/// Looks for Hygon CSV: `/dev/csv-guest`.
pub(crate) fn probe(
    platform: &Platform,
    env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    Ok(platform
        .path(DEVICE_PATH)
        .exists()
        .then(|| Box::new(CsvAttester::new(platform.clone(), env)) as Box<dyn Attester>))
}

#[async_trait]
impl Attester for CsvAttester {
    fn tee(&self) -> Tee {
        TEE
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let data = pad_report_data::<REPORT_DATA_SIZE>(TEE, report_data)?;
        let this = self.clone();
        let evidence = blocking(TEE, move || this.evidence(data)).await?;
        Ok(serde_json::json!(evidence))
    }
}

#[cfg(test)]
mod tests;
