//! The checks trustee's `nvidia` verifier (deps/verifier/src/nvidia, local mode) makes on
//! GPU evidence, written again from its code so the tests hold the attester to them:
//!
//! - the evidence is `{"device_evidence_list": [{arch, uuid, evidence, certificate}]}`,
//!   `evidence` hex or base64 of the raw report, `certificate` base64 of the PEM chain;
//! - the expected nonce is the report data regularized to 32 bytes (truncated or
//!   zero-padded);
//! - the report is a 37-byte SPDM 1.1 GET_MEASUREMENTS request followed by the response
//!   (DMTF measurement blocks, the nonce, NVIDIA's opaque data items, a 96-byte raw
//!   ECDSA P-384 signature);
//! - the signature verifies over SHA-384 of everything before it with the leaf key;
//! - the chain has at least two certificates, ends in NVIDIA's device root, each one is
//!   signed by the next, and the leaf's FWID equals the report's;
//! - the request nonce equals the expected nonce.
//!
//! trustee's local mode takes only Hopper; Blackwell evidence goes to NVIDIA's verifiers.
//! The same SPDM checks apply to it; its FWID sits in the leaf's DICE multi-TcbInfo
//! extension (2.23.133.5.4.1.1) instead of the TcbInfo one (2.23.133.5.4.1).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::STANDARD, Engine};
use p384::ecdsa::{signature::Verifier, Signature, VerifyingKey};
use serde_json::Value;
use x509_cert::{
    der::{oid::ObjectIdentifier, Decode, DecodePem, Encode},
    ext::pkix::BasicConstraints,
    Certificate,
};

const SPDM_VERSION: u8 = 0x11;
const NONCE_SIZE: usize = 32;
const REQUEST_SIZE: usize = 37;
const SIGNATURE_SIZE: usize = 96;
const DMTF_MEASUREMENT: u8 = 1;
const FWID_SIZE: usize = 48;
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const TCB_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.1");
const MULTI_TCB_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.1.1");
/// OID sha384, then an OCTET STRING of 48 bytes: a DICE FWID digest.
const SHA384_FWID_PREFIX: [u8; 13] = [
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x04, 0x30,
];

/// Why the verifier refuses evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Not the JSON layout, or a field that does not decode.
    Format(String),
    /// An architecture the verifier does not know.
    Arch(String),
    /// The report does not parse (truncated, wrong version, bad opaque data).
    Report(String),
    /// The report signature does not verify with the leaf key.
    Signature,
    /// The chain does not verify (too short, broken link, bad signature, expired).
    Chain(String),
    /// The chain does not end in NVIDIA's device root.
    UntrustedRoot,
    /// The leaf's FWID is not the report's.
    Fwid { certificate: String, report: String },
    /// The report carries another nonce.
    Nonce { report: String, expected: String },
}

/// What the verifier reports for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceClaims {
    pub arch: String,
    pub uuid: String,
    /// measurement index -> hex value
    pub measurements: BTreeMap<u8, String>,
    /// opaque data, by NVIDIA's names
    pub config: BTreeMap<String, Value>,
}

/// Appraises `evidence` against `report_data`, trusting `root_pem` as NVIDIA's device root.
pub(crate) fn appraise(
    evidence: &Value,
    report_data: &[u8],
    root_pem: &[u8],
) -> Result<Vec<DeviceClaims>, Reject> {
    let root = Certificate::from_pem(root_pem).map_err(|e| Reject::Format(e.to_string()))?;
    let list = evidence
        .get("device_evidence_list")
        .and_then(Value::as_array)
        .ok_or_else(|| Reject::Format("no device_evidence_list array".into()))?;
    let mut expected = report_data.to_vec();
    expected.resize(NONCE_SIZE, 0);
    list.iter()
        .map(|device| appraise_device(device, &expected, &root))
        .collect()
}

fn field<'a>(device: &'a Value, name: &str) -> Result<&'a str, Reject> {
    device
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Reject::Format(format!("{name} is not a string")))
}

fn appraise_device(
    device: &Value,
    expected_nonce: &[u8],
    root: &Certificate,
) -> Result<DeviceClaims, Reject> {
    let arch = field(device, "arch")?;
    let multi_tcb = match arch {
        "Hopper" | "HOPPER" => false,
        "Blackwell" | "BLACKWELL" => true,
        other => return Err(Reject::Arch(other.to_string())),
    };
    let uuid = device
        .get("uuid")
        .map(|u| u.as_str().map(str::to_string))
        .unwrap_or(Some("unknown".into()))
        .ok_or_else(|| Reject::Format("uuid is not a string".into()))?;
    let evidence = field(device, "evidence")?;
    let report = hex::decode(evidence)
        .or_else(|_| STANDARD.decode(evidence))
        .map_err(|e| Reject::Format(format!("evidence: {e}")))?;
    let pem = STANDARD
        .decode(field(device, "certificate")?)
        .map_err(|e| Reject::Format(format!("certificate: {e}")))?;

    let parsed = parse_report(&report)?;
    let chain = Certificate::load_pem_chain(&pem).map_err(|e| Reject::Chain(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| Reject::Chain("no certificate".into()))?;

    let signed = report
        .get(..parsed.size - SIGNATURE_SIZE)
        .ok_or_else(|| Reject::Report("signed data overflow".into()))?;
    let key = public_key(leaf)?;
    let signature = Signature::from_slice(&parsed.signature).map_err(|_| Reject::Signature)?;
    key.verify(signed, &signature)
        .map_err(|_| Reject::Signature)?;

    let fwid = parsed
        .config
        .get("fwid")
        .and_then(Value::as_str)
        .ok_or_else(|| Reject::Report("no fwid in the opaque data".into()))?;
    verify_chain(&chain, root, fwid, multi_tcb)?;

    if parsed.request_nonce != expected_nonce {
        return Err(Reject::Nonce {
            report: hex::encode(parsed.request_nonce),
            expected: hex::encode(expected_nonce),
        });
    }
    Ok(DeviceClaims {
        arch: arch.to_string(),
        uuid,
        measurements: parsed.measurements,
        config: parsed.config,
    })
}

struct Parsed {
    request_nonce: Vec<u8>,
    measurements: BTreeMap<u8, String>,
    config: BTreeMap<String, Value>,
    signature: Vec<u8>,
    /// request + response as parsed (trailing bytes are ignored, as trustee does)
    size: usize,
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize, what: &str) -> Result<&'a [u8], Reject> {
    let end = at
        .checked_add(len)
        .ok_or_else(|| Reject::Report(format!("{what} overflow")))?;
    let out = bytes
        .get(*at..end)
        .ok_or_else(|| Reject::Report(format!("{what} overflow")))?;
    *at = end;
    Ok(out)
}

fn le(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rev()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
}

fn parse_report(report: &[u8]) -> Result<Parsed, Reject> {
    let request = report
        .get(..REQUEST_SIZE)
        .ok_or_else(|| Reject::Report("attestation report data is too small".into()))?;
    if request[0] != SPDM_VERSION {
        return Err(Reject::Report(format!("SPDM version {:#x}", request[0])));
    }
    let request_nonce = request[4..36].to_vec();

    let response = &report[REQUEST_SIZE..];
    let mut at = 0;
    let header = take(response, &mut at, 8, "response header")?;
    if header[0] != SPDM_VERSION {
        return Err(Reject::Report(format!("SPDM version {:#x}", header[0])));
    }
    let blocks = usize::from(header[4]);
    let record_len = le(&header[5..8]);
    let record = take(response, &mut at, record_len, "MeasurementRecord")?;
    let measurements = parse_measurements(blocks, record)?;
    take(response, &mut at, NONCE_SIZE, "response nonce")?;
    let opaque_len = le(take(response, &mut at, 2, "OpaqueDataLength")?);
    let opaque = take(response, &mut at, opaque_len, "OpaqueData")?;
    let config = parse_opaque(opaque)?;
    let signature = take(response, &mut at, SIGNATURE_SIZE, "signature")?.to_vec();
    Ok(Parsed {
        request_nonce,
        measurements,
        config,
        signature,
        size: REQUEST_SIZE + at,
    })
}

fn parse_measurements(blocks: usize, record: &[u8]) -> Result<BTreeMap<u8, String>, Reject> {
    let mut out = BTreeMap::new();
    let mut at = 0;
    for _ in 0..blocks {
        let head = take(record, &mut at, 4, "MeasurementBlock")?;
        if head[1] != DMTF_MEASUREMENT {
            return Err(Reject::Report("measurement not in the DMTF layout".into()));
        }
        let block = take(record, &mut at, le(&head[2..4]), "Measurement")?;
        let mut inner = 0;
        let dmtf = take(block, &mut inner, 3, "DMTF measurement")?;
        let value = take(block, &mut inner, le(&dmtf[1..3]), "DMTF measurement")?;
        out.insert(head[0], hex::encode(value));
    }
    Ok(out)
}

/// NVIDIA's opaque data item names, by type (trustee's `OpaqueDataType`).
fn opaque_name(kind: usize) -> Option<&'static str> {
    Some(match kind {
        1 => "cert_issuer_name",
        2 => "cert_authority_key_identifier",
        3 => "driver_version",
        4 => "gpu_info",
        5 => "id_sku",
        6 => "vbios_version",
        7 => "manufacturer_id",
        8 => "tamper_detection",
        9 => "smc",
        10 => "vpr",
        11 => "nvdec0_status",
        12 => "measurement_count",
        13 => "cpr_info",
        14 => "board_id",
        15 => "chip_sku",
        16 => "chip_sku_mod",
        17 => "project",
        18 => "project_sku",
        19 => "project_sku_mod",
        20 => "fwid",
        21 => "protected_pcie_status",
        22 => "switch_pdi",
        23 => "floorswept_ports",
        24 => "position_id",
        25 => "lock_switch_status",
        32 => "gpu_link_conn",
        33 => "sys_enable_status",
        34 => "opaque_data_version",
        35 => "chip_info",
        36 => "feature_flag",
        _ => return None,
    })
}

fn parse_opaque(bytes: &[u8]) -> Result<BTreeMap<String, Value>, Reject> {
    let mut out = BTreeMap::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = take(bytes, &mut at, 4, "OpaqueData item header")?;
        let kind = le(&head[0..2]);
        let name = opaque_name(kind)
            .ok_or_else(|| Reject::Report(format!("invalid OpaqueDataType {kind}")))?;
        let data = take(bytes, &mut at, le(&head[2..4]), "OpaqueData")?;
        let value = match kind {
            3 | 15 | 16 | 17 | 18 | 35 => Value::String(
                String::from_utf8_lossy(data)
                    .trim_end_matches('\0')
                    .to_string(),
            ),
            6 => {
                let half = data.len() / 2;
                let head: Vec<String> = data[..half]
                    .iter()
                    .rev()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let tail = data
                    .get(half)
                    .ok_or_else(|| Reject::Report("invalid gpu vbios version".into()))?;
                Value::String(format!("{}.{tail:02x}", head.join(".")))
            }
            11 => match data {
                [0xaa] => "enabled".into(),
                [0x55] => "disabled".into(),
                _ => return Err(Reject::Report("invalid NVDEC0 status".into())),
            },
            12 => {
                if data.len() % 4 != 0 {
                    return Err(Reject::Report("measurement_count not 4-byte items".into()));
                }
                Value::from(data.len() / 4)
            }
            _ => Value::String(hex::encode(data)),
        };
        if out.insert(name.to_string(), value).is_some() {
            return Err(Reject::Report(format!("duplicated OpaqueDataType {name}")));
        }
    }
    if !out.contains_key("vbios_version") || !out.contains_key("driver_version") {
        return Err(Reject::Report(
            "both vbios_version and driver_version must be present".into(),
        ));
    }
    Ok(out)
}

fn public_key(cert: &Certificate) -> Result<VerifyingKey, Reject> {
    let point = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| Reject::Chain("public key is not whole bytes".into()))?;
    VerifyingKey::from_sec1_bytes(point).map_err(|e| Reject::Chain(format!("public key: {e}")))
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|ext| ext.extn_id == oid)
        .map(|ext| ext.extn_value.as_bytes())
}

fn leaf_fwid(leaf: &Certificate, multi_tcb: bool) -> Result<String, Reject> {
    if multi_tcb {
        let value = extension(leaf, MULTI_TCB_INFO)
            .ok_or_else(|| Reject::Chain("no multi-TcbInfo extension in the leaf".into()))?;
        let start = value
            .windows(SHA384_FWID_PREFIX.len())
            .position(|w| w == SHA384_FWID_PREFIX)
            .ok_or_else(|| Reject::Chain("no SHA-384 FWID in the leaf".into()))?;
        let at = start + SHA384_FWID_PREFIX.len();
        let fwid = value
            .get(at..at + FWID_SIZE)
            .ok_or_else(|| Reject::Chain("FWID overflow".into()))?;
        return Ok(hex::encode(fwid));
    }
    // trustee: the last 48 bytes of the TcbInfo extension
    let value = extension(leaf, TCB_INFO)
        .ok_or_else(|| Reject::Chain("FwId oid not found in the leaf".into()))?;
    let fwid = value
        .len()
        .checked_sub(FWID_SIZE)
        .and_then(|at| value.get(at..))
        .ok_or_else(|| Reject::Chain("unexpected fwid size".into()))?;
    Ok(hex::encode(fwid))
}

fn verify_chain(
    chain: &[Certificate],
    root: &Certificate,
    report_fwid: &str,
    multi_tcb: bool,
) -> Result<(), Reject> {
    if chain.len() < 2 {
        return Err(Reject::Chain(
            "the chain must hold at least the signing certificate and the root".into(),
        ));
    }
    let last = chain
        .last()
        .ok_or_else(|| Reject::Chain("no certificate".into()))?;
    let der = |c: &Certificate| c.to_der().map_err(|e| Reject::Chain(e.to_string()));
    if der(last)? != der(root)? {
        return Err(Reject::UntrustedRoot);
    }
    let fwid = leaf_fwid(&chain[0], multi_tcb)?;
    if fwid != report_fwid {
        return Err(Reject::Fwid {
            certificate: fwid,
            report: report_fwid.to_string(),
        });
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Reject::Chain(e.to_string()))?;
    for cert in chain {
        let validity = &cert.tbs_certificate.validity;
        if now < validity.not_before.to_unix_duration()
            || now > validity.not_after.to_unix_duration()
        {
            return Err(Reject::Chain(
                "a certificate is outside its validity".into(),
            ));
        }
    }
    for pair in chain.windows(2) {
        let (cert, issuer) = (&pair[0], &pair[1]);
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(Reject::Chain(format!(
                "{} is not issued by {}",
                cert.tbs_certificate.subject, issuer.tbs_certificate.subject
            )));
        }
        let is_ca = extension(issuer, BASIC_CONSTRAINTS)
            .and_then(|v| BasicConstraints::from_der(v).ok())
            .is_some_and(|bc| bc.ca);
        if !is_ca {
            return Err(Reject::Chain(format!(
                "{} is not a CA",
                issuer.tbs_certificate.subject
            )));
        }
        if cert.signature_algorithm.oid != ECDSA_WITH_SHA384 {
            return Err(Reject::Chain("not signed with ecdsa-with-SHA384".into()));
        }
        let signature = cert
            .signature
            .as_bytes()
            .and_then(|s| Signature::from_der(s).ok())
            .ok_or_else(|| Reject::Chain("malformed certificate signature".into()))?;
        let tbs = cert
            .tbs_certificate
            .to_der()
            .map_err(|e| Reject::Chain(e.to_string()))?;
        public_key(issuer)?.verify(&tbs, &signature).map_err(|_| {
            Reject::Chain(format!(
                "the signature of {} does not verify",
                cert.tbs_certificate.subject
            ))
        })?;
    }
    Ok(())
}
