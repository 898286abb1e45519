//! The write-ahead record (`.wal_event_entry`): what the agent was about to measure, written
//! before the register is extended and removed once the log entry is appended.
//!
//! Format (ours; only this agent reads it, and only on the boot that wrote it), integers
//! little-endian:
//!
//! `"AAELWAL1"` · `u64 log offset` · `u64 PCR requested` · `u8 register read (0|1)` ·
//! [`u64 register index` · `u16 TPM algorithm id` · `u16 value length` · value] ·
//! `u32 text length` · event text.

use attester::RegisterValue;
use protos::{AaelEvent, EventError, MAX_EVENT_TEXT_LEN};

use super::tcg2::{algorithm_of_tpm_id, digest_len, tpm_algorithm_id};

const MAGIC: &[u8; 8] = b"AAELWAL1";

/// Largest record: header, the longest register value, the longest event text.
pub(crate) const MAX_WAL_LEN: usize = 8 + 8 + 8 + 1 + 8 + 2 + 2 + 64 + 4 + MAX_EVENT_TEXT_LEN;

/// Why a write-ahead record cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    /// Not written by this agent (or by another version of it).
    #[error(
        "it does not start with the marker {:?}",
        String::from_utf8_lossy(MAGIC)
    )]
    Magic,
    /// The record ends early.
    #[error("it ends inside the {0}")]
    Truncated(&'static str),
    /// A field holds an impossible value.
    #[error("its {0} is invalid")]
    Invalid(&'static str),
    /// Bytes follow the record.
    #[error("{0} bytes follow the record")]
    TrailingBytes(usize),
    /// The event text is not a valid event.
    #[error("its event text is invalid: {0}")]
    Event(#[from] EventError),
}

/// A pending measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalRecord {
    /// Length of the log before the entry (where the entry goes).
    pub(crate) log_offset: u64,
    /// The PCR the request named (or the configured default).
    pub(crate) pcr: u64,
    /// The register as read just before the extend, when the platform can read it.
    pub(crate) before: Option<RegisterValue>,
    /// The event.
    pub(crate) event: AaelEvent,
}

impl WalRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        let text = self.event.text();
        let mut out = Vec::with_capacity(64 + text.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.log_offset.to_le_bytes());
        out.extend_from_slice(&self.pcr.to_le_bytes());
        match &self.before {
            None => out.push(0),
            Some(before) => {
                out.push(1);
                out.extend_from_slice(&before.register_index.to_le_bytes());
                out.extend_from_slice(&tpm_algorithm_id(before.algorithm).to_le_bytes());
                // register values are checked against their algorithm's size (<= 64)
                let len = u16::try_from(before.value.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&before.value);
            }
        }
        // event text is bounded by MAX_EVENT_TEXT_LEN
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, WalError> {
        let mut rest = bytes;
        let mut take = |n: usize, what: &'static str| -> Result<&[u8], WalError> {
            if rest.len() < n {
                return Err(WalError::Truncated(what));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        if take(8, "marker")? != MAGIC {
            return Err(WalError::Magic);
        }
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let log_offset = u64_of(take(8, "log offset")?);
        let pcr = u64_of(take(8, "PCR")?);
        let before = match take(1, "register flag")?[0] {
            0 => None,
            1 => {
                let register_index = u64_of(take(8, "register index")?);
                let id = take(2, "register algorithm")?;
                let algorithm = algorithm_of_tpm_id(u16::from_le_bytes([id[0], id[1]]))
                    .ok_or(WalError::Invalid("register algorithm"))?;
                let len = take(2, "register value length")?;
                let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
                if len != digest_len(algorithm) {
                    return Err(WalError::Invalid("register value length"));
                }
                let value = take(len, "register value")?.to_vec();
                Some(RegisterValue {
                    register_index,
                    algorithm,
                    value,
                })
            }
            _ => return Err(WalError::Invalid("register flag")),
        };
        let len = take(4, "event text length")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_EVENT_TEXT_LEN)
            .ok_or(WalError::Invalid("event text length"))?;
        let text = take(len, "event text")?;
        let text = std::str::from_utf8(text).map_err(|_| WalError::Invalid("event text"))?;
        let event = AaelEvent::parse_text(text)?;
        if !rest.is_empty() {
            return Err(WalError::TrailingBytes(rest.len()));
        }
        Ok(Self {
            log_offset,
            pcr,
            before,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attester::HashAlgorithm;

    fn record(before: bool) -> WalRecord {
        WalRecord {
            log_offset: 0x0102_0304_0506_0708,
            pcr: 17,
            before: before.then(|| RegisterValue {
                register_index: 4,
                algorithm: HashAlgorithm::Sha384,
                value: vec![0xab; 48],
            }),
            event: AaelEvent::new("d", "op", "some content").unwrap(),
        }
    }

    #[test]
    fn round_trip_and_layout() {
        for before in [false, true] {
            let r = record(before);
            let bytes = r.encode();
            assert_eq!(WalRecord::decode(&bytes).unwrap(), r);
            assert_eq!(&bytes[..8], b"AAELWAL1");
            assert_eq!(&bytes[8..16], &0x0102_0304_0506_0708_u64.to_le_bytes());
            assert_eq!(&bytes[16..24], &17u64.to_le_bytes());
            assert_eq!(bytes[24], u8::from(before));
            assert!(bytes.ends_with(b"d op some content"));
            assert!(bytes.len() <= MAX_WAL_LEN);
        }
        let bytes = record(true).encode();
        assert_eq!(&bytes[25..33], &4u64.to_le_bytes());
        assert_eq!(&bytes[33..35], &[0x0c, 0x00]);
        assert_eq!(&bytes[35..37], &48u16.to_le_bytes());
    }

    #[test]
    fn every_truncation_is_refused() {
        for before in [false, true] {
            let bytes = record(before).encode();
            for cut in 0..bytes.len() {
                let err = WalRecord::decode(&bytes[..cut]).unwrap_err();
                assert!(matches!(err, WalError::Truncated(_)), "cut {cut}: {err}");
            }
        }
    }

    #[test]
    fn bad_fields_are_refused() {
        let good = record(true).encode();
        let with = |at: usize, patch: &[u8]| {
            let mut b = good.clone();
            b[at..at + patch.len()].copy_from_slice(patch);
            WalRecord::decode(&b).unwrap_err()
        };
        assert_eq!(with(0, b"XXELWAL1"), WalError::Magic);
        assert_eq!(with(24, &[2]), WalError::Invalid("register flag"));
        assert_eq!(
            with(33, &[0x04, 0x00]),
            WalError::Invalid("register algorithm")
        );
        assert_eq!(
            with(35, &[32, 0]),
            WalError::Invalid("register value length")
        );
        let text_len_at = 37 + 48;
        assert_eq!(
            with(text_len_at, &u32::MAX.to_le_bytes()),
            WalError::Invalid("event text length")
        );
        assert_eq!(
            with(text_len_at + 4, &[0xff]),
            WalError::Invalid("event text")
        );
        assert!(matches!(
            with(text_len_at + 4, b"d\top"),
            WalError::Event(EventError::Whitespace { .. })
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            WalRecord::decode(&trailing).unwrap_err(),
            WalError::TrailingBytes(1)
        );
        // upstream's format (BE offset, expected value, text) is not taken for ours
        let upstream = [&0u64.to_be_bytes()[..], &[0u8; 48], b"d op c"].concat();
        assert_eq!(WalRecord::decode(&upstream).unwrap_err(), WalError::Magic);
    }
}
