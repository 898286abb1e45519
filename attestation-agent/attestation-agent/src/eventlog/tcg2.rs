//! TCG2 crypto-agile event log entries (TCG PC Client Platform Firmware Profile,
//! `TCG_PCR_EVENT2`), as the AAEL file stores them and as a CC event log (ACPI CCEL
//! followed by the AAEL) carries them. All integers are little-endian:
//!
//! `u32 MR index` · `u32 event type` · `u32 digest count` · count × (`u16 algorithm id` ·
//! digest) · `u32 event size` · event.
//!
//! The parsers take untrusted bytes: every length is checked against the bytes present
//! before it is used, nothing is allocated from a length field, and an error names the
//! byte offset where parsing stopped.

use std::fmt;

use attester::HashAlgorithm;
use sha2::{Digest, Sha256, Sha384, Sha512};

use protos::{AaelEvent, DecodeError};

#[cfg(any(test, fuzzing))]
/// `EV_NO_ACTION`: the Spec ID header event.
pub(crate) const EV_NO_ACTION: u32 = 0x3;
/// `EV_EVENT_TAG`: the event type of AAEL entries.
pub(crate) const EV_EVENT_TAG: u32 = 0x6;

/// `TPM_ALG_SHA1`
pub(crate) const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_SHA256`
pub(crate) const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_SHA384`
pub(crate) const TPM_ALG_SHA384: u16 = 0x000C;
/// `TPM_ALG_SHA512`
pub(crate) const TPM_ALG_SHA512: u16 = 0x000D;
/// `TPM_ALG_SM3_256`
pub(crate) const TPM_ALG_SM3_256: u16 = 0x0012;

#[cfg(any(test, fuzzing))]
/// Signature of the Spec ID header event (`TCG_EfiSpecIDEvent`).
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// The TPM algorithm id of a register hash algorithm.
pub(crate) fn tpm_algorithm_id(algorithm: HashAlgorithm) -> u16 {
    match algorithm {
        HashAlgorithm::Sha256 => TPM_ALG_SHA256,
        HashAlgorithm::Sha384 => TPM_ALG_SHA384,
        HashAlgorithm::Sha512 => TPM_ALG_SHA512,
        HashAlgorithm::Sm3 => TPM_ALG_SM3_256,
    }
}

/// The register hash algorithm of a TPM algorithm id (SHA-1 is no register algorithm).
pub(crate) fn algorithm_of_tpm_id(id: u16) -> Option<HashAlgorithm> {
    match id {
        TPM_ALG_SHA256 => Some(HashAlgorithm::Sha256),
        TPM_ALG_SHA384 => Some(HashAlgorithm::Sha384),
        TPM_ALG_SHA512 => Some(HashAlgorithm::Sha512),
        TPM_ALG_SM3_256 => Some(HashAlgorithm::Sm3),
        _ => None,
    }
}

/// Digest length of `algorithm` in bytes.
pub(crate) fn digest_len(algorithm: HashAlgorithm) -> usize {
    match algorithm {
        HashAlgorithm::Sha256 | HashAlgorithm::Sm3 => 32,
        HashAlgorithm::Sha384 => 48,
        HashAlgorithm::Sha512 => 64,
    }
}

/// `algorithm` over `data`.
pub(crate) fn digest(algorithm: HashAlgorithm, data: &[u8]) -> Vec<u8> {
    match algorithm {
        HashAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
        HashAlgorithm::Sha384 => Sha384::digest(data).to_vec(),
        HashAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
        HashAlgorithm::Sm3 => sm3::Sm3::digest(data).to_vec(),
    }
}

/// The value of a register after extending `current` with `event_digest`:
/// `H(current ‖ event_digest)`.
pub(crate) fn extended_value(
    algorithm: HashAlgorithm,
    current: &[u8],
    event_digest: &[u8],
) -> Vec<u8> {
    digest(algorithm, &[current, event_digest].concat())
}

/// One digest of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tcg2Digest {
    /// TPM algorithm id (`TPM_ALG_*`).
    pub algorithm_id: u16,
    /// The digest.
    pub digest: Vec<u8>,
}

/// One crypto-agile event log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tcg2Event {
    /// Measurement register index (PCR, or CC MR index).
    pub mr_index: u32,
    /// Event type (`EV_*`).
    pub event_type: u32,
    /// The digests of the event, one per algorithm.
    pub digests: Vec<Tcg2Digest>,
    /// The event data.
    pub event: Vec<u8>,
}

impl Tcg2Event {
    /// The AAEL entry recording that `digest` of `event` was extended into register
    /// `mr_index` with `algorithm`.
    pub(crate) fn aael(
        mr_index: u32,
        algorithm: HashAlgorithm,
        digest: Vec<u8>,
        event: &AaelEvent,
    ) -> Self {
        Self {
            mr_index,
            event_type: EV_EVENT_TAG,
            digests: vec![Tcg2Digest {
                algorithm_id: tpm_algorithm_id(algorithm),
                digest,
            }],
            event: event.encode(),
        }
    }

    /// The entry as stored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let digests_len: usize = self.digests.iter().map(|d| 2 + d.digest.len()).sum();
        let mut bytes = Vec::with_capacity(16 + digests_len + self.event.len());
        bytes.extend_from_slice(&self.mr_index.to_le_bytes());
        bytes.extend_from_slice(&self.event_type.to_le_bytes());
        // entries hold at most a handful of digests and events of at most a few MiB
        bytes.extend_from_slice(&len_u32(self.digests.len()).to_le_bytes());
        for d in &self.digests {
            bytes.extend_from_slice(&d.algorithm_id.to_le_bytes());
            bytes.extend_from_slice(&d.digest);
        }
        bytes.extend_from_slice(&len_u32(self.event.len()).to_le_bytes());
        bytes.extend_from_slice(&self.event);
        bytes
    }

    /// The AAEL event of an `EV_EVENT_TAG` entry with the AAEL tag.
    pub(crate) fn aael_event(&self) -> Result<AaelEvent, NotAnAaelEntry> {
        if self.event_type != EV_EVENT_TAG {
            return Err(NotAnAaelEntry::EventType {
                found: self.event_type,
            });
        }
        AaelEvent::decode(&self.event).map_err(NotAnAaelEntry::Event)
    }

    /// The digest for `algorithm_id`, if the entry has one.
    #[cfg(test)]
    pub(crate) fn digest_for(&self, algorithm_id: u16) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.algorithm_id == algorithm_id)
            .map(|d| d.digest.as_slice())
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Why an entry is not an AAEL entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotAnAaelEntry {
    /// Not `EV_EVENT_TAG`.
    #[error("event type {found:#x} is not EV_EVENT_TAG ({EV_EVENT_TAG:#x})")]
    EventType {
        /// the type found
        found: u32,
    },
    /// The tagged event is not an AAEL event.
    #[error(transparent)]
    Event(DecodeError),
}

/// Digest sizes by TPM algorithm id: what a parser needs to step over digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DigestSizes(Vec<(u16, usize)>);

impl DigestSizes {
    /// The sizes of SHA-1, SHA-256, SHA-384, SHA-512 and SM3-256 (an AAEL file has no
    /// header declaring them).
    pub(crate) fn well_known() -> Self {
        Self(vec![
            (TPM_ALG_SHA1, 20),
            (TPM_ALG_SHA256, 32),
            (TPM_ALG_SHA384, 48),
            (TPM_ALG_SHA512, 64),
            (TPM_ALG_SM3_256, 32),
        ])
    }

    /// The size of `algorithm_id`'s digests.
    pub(crate) fn size_of(&self, algorithm_id: u16) -> Option<usize> {
        self.0
            .iter()
            .find(|(id, _)| *id == algorithm_id)
            .map(|(_, size)| *size)
    }
}

#[cfg(any(test, fuzzing))]
/// The Spec ID header (`TCG_EfiSpecIDEvent`) that opens a TCG2 event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpecIdEvent {
    /// MR index field of the header event.
    pub mr_index: u32,
    /// `platformClass`
    pub platform_class: u32,
    /// `specVersionMajor`, `specVersionMinor`, `specErrata`
    pub spec_version: (u8, u8, u8),
    /// `uintnSize`
    pub uintn_size: u8,
    /// `(algorithm id, digest size)` for each algorithm the log uses.
    pub algorithms: Vec<(u16, u16)>,
    /// `vendorInfo`
    pub vendor_info: Vec<u8>,
}

#[cfg(any(test, fuzzing))]
impl SpecIdEvent {
    /// The digest sizes the header declares.
    pub(crate) fn digest_sizes(&self) -> DigestSizes {
        DigestSizes(
            self.algorithms
                .iter()
                .map(|&(id, size)| (id, usize::from(size)))
                .collect(),
        )
    }
}

#[cfg(any(test, fuzzing))]
/// A CC event log: the Spec ID header and the entries that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventLog {
    /// The header.
    pub spec_id: SpecIdEvent,
    /// The entries, in order (the header not included).
    pub events: Vec<Tcg2Event>,
}

/// What is wrong at the place a parser stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseErrorKind {
    /// The bytes end inside a field.
    #[error("the log ends inside the {field} ({needed} bytes needed, {available} left)")]
    Truncated {
        /// the field
        field: &'static str,
        /// bytes the field needs
        needed: usize,
        /// bytes left
        available: usize,
    },
    /// A digest of an algorithm whose size is unknown.
    #[error("digest algorithm {algorithm_id:#06x} is not declared by the log header")]
    UnknownAlgorithm {
        /// the TPM algorithm id
        algorithm_id: u16,
    },
    #[cfg(any(test, fuzzing))]
    /// The log does not open with a Spec ID header event.
    #[error("the log does not start with an EV_NO_ACTION \"Spec ID Event03\" header")]
    NoSpecIdHeader,
    #[cfg(any(test, fuzzing))]
    /// The Spec ID header declares no algorithm or a zero-sized one.
    #[error("the Spec ID header declares {0}")]
    BadSpecIdHeader(&'static str),
}

/// Where and why a parser stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event log byte {offset}: {kind}")]
pub(crate) struct ParseError {
    /// Byte offset of the entry (or header) that could not be parsed.
    pub offset: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ParseErrorKind> {
        let available = self.bytes.len() - self.pos;
        if n > available {
            return Err(ParseErrorKind::Truncated {
                field,
                needed: n,
                available,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    #[cfg(any(test, fuzzing))]
    fn u8(&mut self, field: &'static str) -> Result<u8, ParseErrorKind> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, ParseErrorKind> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ParseErrorKind> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `u32` length followed by that many bytes.
    fn sized(&mut self, field: &'static str) -> Result<&'a [u8], ParseErrorKind> {
        let len = self.u32(field)?;
        // a length beyond usize is beyond the bytes present too
        self.take(usize::try_from(len).unwrap_or(usize::MAX), field)
    }

    fn remaining(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }
}

fn parse_entry_at(reader: &mut Reader<'_>, sizes: &DigestSizes) -> Result<Tcg2Event, ParseError> {
    let offset = reader.pos;
    let at = |kind| ParseError { offset, kind };
    let mr_index = reader.u32("MR index").map_err(at)?;
    let event_type = reader.u32("event type").map_err(at)?;
    let count = reader.u32("digest count").map_err(at)?;
    // every digest takes at least its 2-byte id: no allocation beyond the bytes present
    let mut digests = Vec::with_capacity(
        usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(reader.remaining().len() / 2),
    );
    for _ in 0..count {
        let algorithm_id = reader.u16("digest algorithm").map_err(at)?;
        let size = sizes
            .size_of(algorithm_id)
            .ok_or(at(ParseErrorKind::UnknownAlgorithm { algorithm_id }))?;
        let digest = reader.take(size, "digest").map_err(at)?.to_vec();
        digests.push(Tcg2Digest {
            algorithm_id,
            digest,
        });
    }
    let event = reader.sized("event").map_err(at)?.to_vec();
    Ok(Tcg2Event {
        mr_index,
        event_type,
        digests,
        event,
    })
}

/// Parses one entry at the start of `bytes`; returns it and its length.
pub(crate) fn parse_entry(
    bytes: &[u8],
    sizes: &DigestSizes,
) -> Result<(Tcg2Event, usize), ParseError> {
    let mut reader = Reader { bytes, pos: 0 };
    let event = parse_entry_at(&mut reader, sizes)?;
    Ok((event, reader.pos))
}

/// Parses a buffer that holds whole entries and nothing else (an AAEL file).
pub(crate) fn parse_entries(
    bytes: &[u8],
    sizes: &DigestSizes,
) -> Result<Vec<Tcg2Event>, ParseError> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut events = Vec::new();
    while !reader.remaining().is_empty() {
        events.push(parse_entry_at(&mut reader, sizes)?);
    }
    Ok(events)
}

#[cfg(any(test, fuzzing))]
fn parse_spec_id(reader: &mut Reader<'_>) -> Result<SpecIdEvent, ParseError> {
    let at = |kind| ParseError { offset: 0, kind };
    // TCG_PCR_EVENT: the SHA-1 format the header event keeps for old parsers
    let mr_index = reader.u32("header MR index").map_err(at)?;
    if reader.u32("header event type").map_err(at)? != EV_NO_ACTION {
        return Err(at(ParseErrorKind::NoSpecIdHeader));
    }
    reader.take(20, "header SHA-1 digest").map_err(at)?;
    let event = reader.sized("header event").map_err(at)?;
    if !event.starts_with(SPEC_ID_SIGNATURE) {
        return Err(at(ParseErrorKind::NoSpecIdHeader));
    }
    let mut spec = Reader {
        bytes: event,
        pos: SPEC_ID_SIGNATURE.len(),
    };
    let platform_class = spec.u32("platform class").map_err(at)?;
    let minor = spec.u8("spec version").map_err(at)?;
    let major = spec.u8("spec version").map_err(at)?;
    let errata = spec.u8("spec errata").map_err(at)?;
    let uintn_size = spec.u8("uintn size").map_err(at)?;
    let count = spec.u32("algorithm count").map_err(at)?;
    let mut algorithms = Vec::new();
    for _ in 0..count {
        let id = spec.u16("algorithm id").map_err(at)?;
        let size = spec.u16("digest size").map_err(at)?;
        if size == 0 {
            return Err(at(ParseErrorKind::BadSpecIdHeader("a zero digest size")));
        }
        algorithms.push((id, size));
    }
    if algorithms.is_empty() {
        return Err(at(ParseErrorKind::BadSpecIdHeader("no digest algorithm")));
    }
    let vendor_len = spec.u8("vendor info size").map_err(at)?;
    let vendor_info = spec
        .take(usize::from(vendor_len), "vendor info")
        .map_err(at)?
        .to_vec();
    Ok(SpecIdEvent {
        mr_index,
        platform_class,
        spec_version: (major, minor, errata),
        uintn_size,
        algorithms,
        vendor_info,
    })
}

#[cfg(any(test, fuzzing))]
/// Whether the bytes left end the log: nothing, an MR index of `0xFFFFFFFF` (the
/// terminator an AAEL-carrying CC event log ends with, and the erased-flash filler of a
/// firmware log), or only zero padding.
fn at_end(rest: &[u8]) -> bool {
    rest.is_empty() || rest.starts_with(&[0xff; 4]) || rest.iter().all(|&b| b == 0)
}

#[cfg(any(test, fuzzing))]
/// Parses a CC event log: the Spec ID header, then crypto-agile entries up to the end of
/// the bytes, an MR index of `0xFFFFFFFF` (the terminator), or zero padding.
pub(crate) fn parse_event_log(bytes: &[u8]) -> Result<EventLog, ParseError> {
    let mut reader = Reader { bytes, pos: 0 };
    let spec_id = parse_spec_id(&mut reader)?;
    let sizes = spec_id.digest_sizes();
    let mut events = Vec::new();
    while !at_end(reader.remaining()) {
        events.push(parse_entry_at(&mut reader, &sizes)?);
    }
    Ok(EventLog { spec_id, events })
}

impl fmt::Display for Tcg2Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#06x}:{}",
            self.algorithm_id,
            hex::encode(&self.digest)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine};

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/eventlog");

    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!("{VECTORS}/{name}")).unwrap()
    }

    fn expected(name: &str) -> Vec<serde_json::Value> {
        let json: serde_json::Value =
            serde_json::from_slice(&vector(&format!("{name}_out.json"))).unwrap();
        json["uefi_event_logs"].as_array().unwrap().clone()
    }

    /// Event type names as the expected parses spell them.
    fn type_name(event_type: u32) -> &'static str {
        match event_type {
            0x1 => "EV_POST_CODE",
            0x4 => "EV_SEPARATOR",
            0x6 => "EV_EVENT_TAG",
            0xA => "EV_PLATFORM_CONFIG_FLAGS",
            0xD => "EV_IPL",
            0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
            0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
            0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
            0x8000_0006 => "EV_EFI_GPT_EVENT",
            0x8000_0007 => "EV_EFI_ACTION",
            0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            0x8000_000B => "EV_EFI_HANDOFF_TABLES2",
            0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
            _ => "unknown",
        }
    }

    fn check_against_expected(name: &str) -> EventLog {
        let log = parse_event_log(&vector(name)).unwrap();
        assert_eq!(log.spec_id.algorithms, vec![(TPM_ALG_SHA384, 48)]);
        assert_eq!(log.spec_id.spec_version, (2, 0, 0));
        assert_eq!(log.spec_id.uintn_size, 2);
        let expected = expected(name);
        assert_eq!(log.events.len(), expected.len(), "{name}");
        for (i, (event, want)) in log.events.iter().zip(&expected).enumerate() {
            assert_eq!(
                u64::from(event.mr_index),
                want["index"].as_u64().unwrap(),
                "{name} #{i}"
            );
            assert_eq!(
                type_name(event.event_type),
                want["type_name"],
                "{name} #{i}"
            );
            assert_eq!(event.digests.len(), 1, "{name} #{i}");
            assert_eq!(want["digests"][0]["alg"], "SHA-384");
            assert_eq!(
                hex::encode(&event.digests[0].digest),
                want["digests"][0]["digest"],
                "{name} #{i}"
            );
            assert_eq!(STANDARD.encode(&event.event), want["event"], "{name} #{i}");
            let matches = digest(HashAlgorithm::Sha384, &event.event) == event.digests[0].digest;
            assert_eq!(
                matches,
                want["digest_matches_event"].as_bool().unwrap(),
                "{name} #{i}"
            );
        }
        log
    }

    #[test]
    fn ccel_with_aael_matches_the_expected_parse() {
        let log = check_against_expected("CCEL_AAEL_alibabacloud");
        let aael: Vec<(u32, AaelEvent)> = log
            .events
            .iter()
            .filter_map(|e| e.aael_event().ok().map(|a| (e.mr_index, a)))
            .collect();
        let want: Vec<_> = expected("CCEL_AAEL_alibabacloud")
            .into_iter()
            .filter(|e| e["details"]["unicode_name"] == "AAEL")
            .collect();
        assert_eq!(aael.len(), 2);
        assert_eq!(aael.len(), want.len());
        for ((mr_index, event), want) in aael.iter().zip(&want) {
            // CC MR 4 is RTMR3, where PCR 17 maps
            assert_eq!(*mr_index, 4);
            assert_eq!(event.text(), want["details"]["string"]);
            assert_eq!(event.domain(), want["details"]["data"]["domain"]);
            assert_eq!(event.operation(), want["details"]["data"]["operation"]);
        }
        assert_eq!(aael[0].1.content(), "some-content");
        assert_eq!(
            aael[1].1.content(),
            r#"{"key": "value", "nested-key": {"sub-key": "value"}}"#
        );
        // our encoder writes these two entries byte for byte as the agent that made the
        // vector did
        let bytes = vector("CCEL_AAEL_alibabacloud");
        for e in log.events.iter().filter(|e| e.aael_event().is_ok()) {
            let event = e.aael_event().unwrap();
            let rebuilt = Tcg2Event::aael(
                e.mr_index,
                HashAlgorithm::Sha384,
                digest(HashAlgorithm::Sha384, &event.encode()),
                &event,
            )
            .encode();
            assert_eq!(&rebuilt, &e.encode());
            assert!(bytes
                .windows(rebuilt.len())
                .any(|w| w == rebuilt.as_slice()));
        }
        // the AAEL part is the tail before the 8 x 0xFF terminator: it parses as an
        // AAEL file on its own
        let first_aael = bytes
            .windows(4)
            .position(|w| w == b"LEAA")
            .map(|p| p - 4 - 48 - 2 - 12)
            .unwrap();
        assert_eq!(&bytes[bytes.len() - 8..], &[0xff; 8]);
        let aael_file = &bytes[first_aael..bytes.len() - 8];
        let entries = parse_entries(aael_file, &DigestSizes::well_known()).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.aael_event().is_ok()));
    }

    #[test]
    fn firmware_ccel_matches_the_expected_parse() {
        let log = check_against_expected("CCEL_data_ovmf");
        // OVMF's own tagged events are not AAEL events
        let tagged: Vec<_> = log
            .events
            .iter()
            .filter(|e| e.event_type == EV_EVENT_TAG)
            .collect();
        assert_eq!(tagged.len(), 2);
        for e in tagged {
            assert!(matches!(
                e.aael_event(),
                Err(NotAnAaelEntry::Event(DecodeError::WrongTag { .. }))
            ));
        }
        assert_eq!(
            log.events[0].aael_event(),
            Err(NotAnAaelEntry::EventType { found: 0x8000_000B })
        );
    }

    #[test]
    fn digest_vectors() {
        let event = AaelEvent::new("domain", "operation", "content")
            .unwrap()
            .encode();
        assert_eq!(
            hex::encode(digest(HashAlgorithm::Sha256, &event)),
            "46df8dacf00a07d34a83cdf56d7978697790787cf2ba1432ef7c38f22cd96351"
        );
        assert_eq!(
            hex::encode(digest(HashAlgorithm::Sha384, &event)),
            "dad5f0e226318ffa9839b75a472c6aa7fdb5834949d0a0a22990cf04d5692440fb00f3aa0609db7e49cd8d793f670d02"
        );
        assert_eq!(
            hex::encode(digest(HashAlgorithm::Sha512, &event)),
            "b708d222ca8bd44dfe6ba0c4ca2cbb72379276fba8091025217064be45a813e5d6124ccf073219edb617d1faf007d55061465bdf34b7437dbdc9a7405bd4e9c0"
        );
        // SM3("abc"), GB/T 32905-2016 appendix A
        assert_eq!(
            hex::encode(digest(HashAlgorithm::Sm3, b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        for alg in [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
            HashAlgorithm::Sm3,
        ] {
            assert_eq!(digest(alg, b"").len(), digest_len(alg));
            assert_eq!(algorithm_of_tpm_id(tpm_algorithm_id(alg)), Some(alg));
            assert_eq!(
                DigestSizes::well_known().size_of(tpm_algorithm_id(alg)),
                Some(digest_len(alg))
            );
        }
        assert_eq!(algorithm_of_tpm_id(TPM_ALG_SHA1), None);
        assert_eq!(
            extended_value(HashAlgorithm::Sha256, &[0; 32], &[1; 32]),
            digest(HashAlgorithm::Sha256, &[[0u8; 32], [1u8; 32]].concat())
        );
    }

    #[test]
    fn aael_entry_layout() {
        let event = AaelEvent::new("domain", "operation", "content").unwrap();
        let d = digest(HashAlgorithm::Sha256, &event.encode());
        let bytes = Tcg2Event::aael(17, HashAlgorithm::Sha256, d.clone(), &event).encode();
        let mut want = Vec::new();
        want.extend_from_slice(&17u32.to_le_bytes());
        want.extend_from_slice(&6u32.to_le_bytes());
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&[0x0b, 0x00]);
        want.extend_from_slice(&d);
        want.extend_from_slice(&32u32.to_le_bytes());
        want.extend_from_slice(b"LEAA");
        want.extend_from_slice(&24u32.to_le_bytes());
        want.extend_from_slice(b"domain operation content");
        assert_eq!(bytes, want);
        let (parsed, len) = parse_entry(&bytes, &DigestSizes::well_known()).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(parsed.aael_event().unwrap(), event);
        assert_eq!(parsed.digest_for(TPM_ALG_SHA256), Some(d.as_slice()));
        assert_eq!(parsed.digest_for(TPM_ALG_SHA384), None);
        assert_eq!(
            parsed.digests[0].to_string(),
            format!("0x000b:{}", hex::encode(&d))
        );
    }

    fn sample_entries() -> Vec<u8> {
        let a = AaelEvent::new("d", "o", "first").unwrap();
        let b = AaelEvent::new("d", "o", "second").unwrap();
        [
            Tcg2Event::aael(4, HashAlgorithm::Sha384, vec![1; 48], &a).encode(),
            Tcg2Event::aael(4, HashAlgorithm::Sha384, vec![2; 48], &b).encode(),
        ]
        .concat()
    }

    #[test]
    fn truncation_anywhere_is_an_error_never_a_panic() {
        let bytes = sample_entries();
        let sizes = DigestSizes::well_known();
        assert_eq!(parse_entries(&bytes, &sizes).unwrap().len(), 2);
        let first_len = parse_entry(&bytes, &sizes).unwrap().1;
        for cut in 1..bytes.len() {
            let result = parse_entries(&bytes[..cut], &sizes);
            if cut == first_len {
                assert_eq!(result.unwrap().len(), 1);
                continue;
            }
            let err = result.unwrap_err();
            assert!(
                matches!(err.kind, ParseErrorKind::Truncated { .. }),
                "cut {cut}: {err}"
            );
            assert_eq!(err.offset, if cut < first_len { 0 } else { first_len });
        }
    }

    #[test]
    fn oversized_lengths_and_unknown_algorithms() {
        let sizes = DigestSizes::well_known();
        let bytes = sample_entries();
        // an event size of 4 GiB - 1 with a few bytes present
        let mut huge = bytes.clone();
        let size_at = 12 + 2 + 48;
        huge[size_at..size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = parse_entries(&huge, &sizes).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(matches!(
            err.kind,
            ParseErrorKind::Truncated {
                field: "event",
                needed,
                ..
            } if needed == u32::MAX as usize
        ));
        // a digest count of 4 billion: stops at the first digest that is not there
        let mut many = bytes.clone();
        many[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = parse_entries(&many, &sizes).unwrap_err();
        assert!(
            matches!(
                err.kind,
                ParseErrorKind::UnknownAlgorithm { .. } | ParseErrorKind::Truncated { .. }
            ),
            "{err}"
        );
        // an algorithm nobody declared
        let mut unknown = bytes.clone();
        unknown[12..14].copy_from_slice(&0x0099u16.to_le_bytes());
        assert_eq!(
            parse_entries(&unknown, &sizes).unwrap_err(),
            ParseError {
                offset: 0,
                kind: ParseErrorKind::UnknownAlgorithm {
                    algorithm_id: 0x0099
                }
            }
        );
        let text = parse_entries(&unknown, &sizes).unwrap_err().to_string();
        assert!(text.contains("0x0099"), "{text}");
    }

    #[test]
    fn the_header_is_required_and_checked() {
        let bytes = vector("CCEL_AAEL_alibabacloud");
        // an AAEL file alone has no header
        assert_eq!(
            parse_event_log(&sample_entries()).unwrap_err().kind,
            ParseErrorKind::NoSpecIdHeader
        );
        let mut wrong_signature = bytes.clone();
        wrong_signature[0x20] = b'X';
        assert_eq!(
            parse_event_log(&wrong_signature).unwrap_err().kind,
            ParseErrorKind::NoSpecIdHeader
        );
        // the header's algorithm list: count 0, then a zero size
        let mut no_algorithms = bytes.clone();
        no_algorithms[0x38..0x3c].copy_from_slice(&0u32.to_le_bytes());
        assert!(parse_event_log(&no_algorithms).is_err());
        let mut zero_size = bytes.clone();
        zero_size[0x3e..0x40].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(
            parse_event_log(&zero_size).unwrap_err().kind,
            ParseErrorKind::BadSpecIdHeader("a zero digest size")
        );
        // the header declares SHA-384 only: a SHA-256 entry is refused
        let mut sha256_entry = bytes.clone();
        let first = 0x41 + 12; // after the header: the first entry's algorithm id
        sha256_entry[first..first + 2].copy_from_slice(&TPM_ALG_SHA256.to_le_bytes());
        let err = parse_event_log(&sha256_entry).unwrap_err();
        assert_eq!(err.offset, 0x41);
        assert_eq!(
            err.kind,
            ParseErrorKind::UnknownAlgorithm {
                algorithm_id: TPM_ALG_SHA256
            }
        );
        for cut in [0, 3, 8, 27, 31, 40, 0x40] {
            assert!(parse_event_log(&bytes[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn terminators_end_the_log() {
        let bytes = vector("CCEL_AAEL_alibabacloud");
        let n = parse_event_log(&bytes).unwrap().events.len();
        let body = &bytes[..bytes.len() - 8];
        assert_eq!(parse_event_log(body).unwrap().events.len(), n);
        let zero_padded = [body, &[0u8; 100]].concat();
        assert_eq!(parse_event_log(&zero_padded).unwrap().events.len(), n);
        // garbage after the last entry is an error, not silently ignored
        let garbage = [body, &[1u8; 10]].concat();
        assert!(parse_event_log(&garbage).is_err());
    }

    /// Deterministic mutation fuzzing: byte flips and splices of the real vector must
    /// give a result or an error, never a panic or a runaway allocation.
    #[test]
    fn mutated_logs_never_panic() {
        let bytes = vector("CCEL_AAEL_alibabacloud");
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let sizes = DigestSizes::well_known();
        for _ in 0..3000 {
            let mut m = bytes.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() % m.len() as u64) as usize;
                m[at] = next() as u8;
            }
            let cut = (next() % (m.len() as u64 + 1)) as usize;
            let _ = parse_event_log(&m[..cut]);
            let _ = parse_entries(&m[cut..], &sizes);
            for e in parse_event_log(&m).map(|l| l.events).unwrap_or_default() {
                let _ = e.aael_event();
            }
        }
    }
}
