//! The `cc_eventlog` of TDX and CSV evidence: the firmware's ACPI CC event log (CCEL),
//! trimmed at its end marker, followed by the agent's own eventlog (AAEL) and an 8×0xFF
//! end marker, so a verifier replays firmware and runtime events in one pass.
//!
//! Without a CCEL, a TCG "Spec ID Event03" header declaring the digest sizes is put in
//! front of the AAEL (upstream wrote that header with a zeroed signature).

use std::path::PathBuf;

use crate::{
    support::{env_path, read_optional},
    AttesterError, Env, Platform, Tee,
};

/// The firmware's CC event log (ACPI table data).
pub(crate) const CCEL_PATH: &str = "/sys/firmware/acpi/tables/data/CCEL";
/// Environment variable naming the agent eventlog to embed.
pub(crate) const AAEL_PATH_ENV: &str = "AAEL_PATH";
/// Where the attestation agent writes its eventlog.
pub(crate) const DEFAULT_AAEL_PATH: &str = "/run/attestation-agent/eventlog";

/// Appended after the last event.
pub(crate) const END_MARKER: [u8; 8] = [0xFF; 8];

/// TCG event type of the Spec ID header.
const EV_NO_ACTION: u32 = 0x3;

/// The Spec ID header used when there is no CCEL: a TCG_PCClientPCREvent (PCR 0,
/// EV_NO_ACTION, zero SHA-1 digest, 37 bytes of event data) holding a TCG_EfiSpecIDEvent
/// with signature "Spec ID Event03", platform class 0, spec version 2.0 errata 0,
/// uintnSize 2 (UINT64), and two algorithms: SHA-384 (48-byte digests, TDX) and SM3
/// (32-byte digests, CSV); no vendor info.
pub(crate) const SPEC_ID_HEADER: [u8; 69] = [
    0x00, 0x00, 0x00, 0x00, // PCR index 0
    0x03, 0x00, 0x00, 0x00, // EV_NO_ACTION
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // SHA-1 digest (zero) ...
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ... 20 bytes
    0x25, 0x00, 0x00, 0x00, // event data size 37
    b'S', b'p', b'e', b'c', b' ', b'I', b'D', b' ', // signature ...
    b'E', b'v', b'e', b'n', b't', b'0', b'3', 0x00, // ... "Spec ID Event03\0"
    0x00, 0x00, 0x00, 0x00, // platform class 0
    0x00, // spec version minor 0
    0x02, // spec version major 2
    0x00, // errata 0
    0x02, // uintn size: UINT64
    0x02, 0x00, 0x00, 0x00, // two algorithms
    0x0C, 0x00, 0x30, 0x00, // SHA-384, 48 bytes
    0x12, 0x00, 0x20, 0x00, // SM3, 32 bytes
    0x00, // no vendor info
];

/// Why a CCEL could not be trimmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CcelError {
    /// The log ends inside a structure.
    #[error("the CC event log is truncated at byte {0}")]
    Truncated(usize),
    /// The first event is not the TCG Spec ID header.
    #[error("the CC event log does not start with a TCG \"Spec ID Event03\" EV_NO_ACTION event")]
    NoSpecIdEvent,
    /// An event names a digest algorithm the header does not declare.
    #[error("the CC event log uses digest algorithm {0:#06x} that its header does not declare")]
    UnknownAlgorithm(u16),
}

/// Reads a little-endian u32 at `at`.
fn u32_at(log: &[u8], at: usize) -> Result<u32, CcelError> {
    let bytes = log
        .get(at..at.checked_add(4).ok_or(CcelError::Truncated(at))?)
        .ok_or(CcelError::Truncated(at))?;
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(word))
}

/// Reads a little-endian u16 at `at`.
fn u16_at(log: &[u8], at: usize) -> Result<u16, CcelError> {
    let bytes = log
        .get(at..at.checked_add(2).ok_or(CcelError::Truncated(at))?)
        .ok_or(CcelError::Truncated(at))?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// `at + len`, refusing overflow.
fn advance(at: usize, len: usize) -> Result<usize, CcelError> {
    at.checked_add(len).ok_or(CcelError::Truncated(at))
}

/// The declared digest sizes of the Spec ID event data (TCG PFP 10.4.5.1).
fn digest_sizes(spec_id: &[u8]) -> Result<Vec<(u16, usize)>, CcelError> {
    const SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
    if spec_id.get(..16) != Some(&SIGNATURE[..]) {
        return Err(CcelError::NoSpecIdEvent);
    }
    let count = u32_at(spec_id, 24)? as usize;
    let mut sizes = Vec::new();
    let mut at = 28usize;
    for _ in 0..count {
        let alg = u16_at(spec_id, at)?;
        let size = u16_at(spec_id, advance(at, 2)?)? as usize;
        sizes.push((alg, size));
        at = advance(at, 4)?;
    }
    Ok(sizes)
}

/// The used part of a CCEL: everything before the first end marker (a u64 of all ones or
/// all zeros where the next event would start), or the whole log when it is full.
pub fn trim_ccel(ccel: &[u8]) -> Result<&[u8], CcelError> {
    // The first event has the SHA-1 only TCG_PCClientPCREvent layout.
    let event_type = u32_at(ccel, 4)?;
    if event_type != EV_NO_ACTION {
        return Err(CcelError::NoSpecIdEvent);
    }
    let data_size = u32_at(ccel, 28)? as usize;
    let data_start = 32usize;
    let data_end = advance(data_start, data_size)?;
    let spec_id = ccel
        .get(data_start..data_end)
        .ok_or(CcelError::Truncated(data_start))?;
    let sizes = digest_sizes(spec_id)?;

    // Then crypto-agile TCG_PCR_EVENT2 entries.
    let mut at = data_end;
    loop {
        if at == ccel.len() {
            return Ok(ccel);
        }
        if let Some(marker) = ccel.get(at..at.saturating_add(8)) {
            if marker.iter().all(|b| *b == 0xFF) || marker.iter().all(|b| *b == 0) {
                return Ok(&ccel[..at]);
            }
        }
        let digest_count = u32_at(ccel, advance(at, 8)?)?;
        let mut next = advance(at, 12)?;
        for _ in 0..digest_count {
            let alg = u16_at(ccel, next)?;
            let size = sizes
                .iter()
                .find(|(id, _)| *id == alg)
                .map(|(_, size)| *size)
                .ok_or(CcelError::UnknownAlgorithm(alg))?;
            next = advance(next, 2 + size)?;
        }
        let event_size = u32_at(ccel, next)? as usize;
        next = advance(advance(next, 4)?, event_size)?;
        if next > ccel.len() {
            return Err(CcelError::Truncated(at));
        }
        at = next;
    }
}

/// The AAEL file to embed: `AAEL_PATH` or the default, under the platform root.
pub(crate) fn aael_path(platform: &Platform, env: &Env) -> PathBuf {
    env_path(
        platform,
        env.get(AAEL_PATH_ENV).unwrap_or(DEFAULT_AAEL_PATH),
    )
}

/// The raw `cc_eventlog` bytes (before base64), or `None` when there is neither a CCEL nor
/// an AAEL.
pub(crate) fn cc_eventlog(
    platform: &Platform,
    aael: &std::path::Path,
    tee: Tee,
) -> Result<Option<Vec<u8>>, AttesterError> {
    let ccel_path = platform.path(CCEL_PATH);
    let mut log = match read_optional(tee, &ccel_path)? {
        Some(ccel) => trim_ccel(&ccel)
            .map_err(|e| AttesterError::Platform {
                tee,
                message: format!("{}: {e}", ccel_path.display()),
            })?
            .to_vec(),
        None => Vec::new(),
    };
    if let Some(agent_log) = read_optional(tee, aael)? {
        if log.is_empty() {
            log.extend_from_slice(&SPEC_ID_HEADER);
        }
        log.extend_from_slice(&agent_log);
    }
    if log.is_empty() {
        return Ok(None);
    }
    log.extend_from_slice(&END_MARKER);
    Ok(Some(log))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/eventlog");

    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!("{VECTORS}/{name}")).expect("recorded eventlog")
    }

    /// Counts the events of a trimmed log the way a verifier walks it.
    fn count_events(log: &[u8]) -> usize {
        let sizes = digest_sizes(&log[32..32 + u32_at(log, 28).unwrap() as usize]).unwrap();
        let mut at = 32 + u32_at(log, 28).unwrap() as usize;
        let mut n = 0;
        while at < log.len() {
            let count = u32_at(log, at + 8).unwrap();
            let mut next = at + 12;
            for _ in 0..count {
                let alg = u16_at(log, next).unwrap();
                next += 2 + sizes.iter().find(|(a, _)| *a == alg).unwrap().1;
            }
            next += 4 + u32_at(log, next).unwrap() as usize;
            at = next;
            n += 1;
        }
        assert_eq!(at, log.len());
        n
    }

    #[test]
    fn the_header_is_a_valid_spec_id_event() {
        assert_eq!(SPEC_ID_HEADER.len(), 69);
        assert_eq!(u32_at(&SPEC_ID_HEADER, 4).unwrap(), EV_NO_ACTION);
        assert_eq!(u32_at(&SPEC_ID_HEADER, 28).unwrap(), 37);
        assert_eq!(&SPEC_ID_HEADER[32..48], b"Spec ID Event03\0");
        assert_eq!(
            digest_sizes(&SPEC_ID_HEADER[32..]).unwrap(),
            vec![(0x0C, 48), (0x12, 32)]
        );
        assert_eq!(SPEC_ID_HEADER[68], 0, "no vendor info");
        // a header alone is a complete, empty log
        assert_eq!(trim_ccel(&SPEC_ID_HEADER).unwrap(), &SPEC_ID_HEADER[..]);
        let mut ended = SPEC_ID_HEADER.to_vec();
        ended.extend_from_slice(&END_MARKER);
        assert_eq!(trim_ccel(&ended).unwrap(), &SPEC_ID_HEADER[..]);
    }

    #[test]
    fn recorded_ccel_is_trimmed_at_its_end_marker() {
        let ccel = vector("CCEL_data_ovmf");
        let trimmed = trim_ccel(&ccel).unwrap();
        assert!(trimmed.len() < ccel.len());
        assert!(ccel[trimmed.len()..trimmed.len() + 8]
            .iter()
            .all(|b| *b == 0xFF || *b == 0));
        let expected: serde_json::Value =
            serde_json::from_slice(&vector("CCEL_data_ovmf_out.json")).unwrap();
        let events = expected["uefi_event_logs"].as_array().unwrap().len();
        assert_eq!(count_events(trimmed), events);
    }

    #[test]
    fn recorded_ccel_with_aael_keeps_every_event() {
        let log = vector("CCEL_AAEL_alibabacloud");
        let trimmed = trim_ccel(&log).unwrap();
        let expected: serde_json::Value =
            serde_json::from_slice(&vector("CCEL_AAEL_alibabacloud_out.json")).unwrap();
        let events = expected["uefi_event_logs"].as_array().unwrap().len();
        assert_eq!(count_events(trimmed), events);
    }

    #[test]
    fn malformed_logs_are_refused() {
        assert_eq!(trim_ccel(&[]), Err(CcelError::Truncated(4)));
        let mut not_spec = SPEC_ID_HEADER;
        not_spec[4] = 0x1;
        assert_eq!(trim_ccel(&not_spec), Err(CcelError::NoSpecIdEvent));
        let mut bad_signature = SPEC_ID_HEADER;
        bad_signature[32] = b'X';
        assert_eq!(trim_ccel(&bad_signature), Err(CcelError::NoSpecIdEvent));
        // header cut short
        assert!(matches!(
            trim_ccel(&SPEC_ID_HEADER[..50]),
            Err(CcelError::Truncated(_))
        ));
        // an event with an undeclared algorithm
        let mut log = SPEC_ID_HEADER.to_vec();
        log.extend_from_slice(&[3, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0x0B, 0x00]);
        log.extend_from_slice(&[0; 32]);
        log.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(trim_ccel(&log), Err(CcelError::UnknownAlgorithm(0x0B)));
        // an event whose data runs past the end
        let mut log = SPEC_ID_HEADER.to_vec();
        log.extend_from_slice(&[3, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0x0C, 0x00]);
        log.extend_from_slice(&[7; 48]);
        log.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F]);
        assert!(matches!(trim_ccel(&log), Err(CcelError::Truncated(_))));
        // a huge digest count cannot loop forever or overflow
        let mut log = SPEC_ID_HEADER.to_vec();
        log.extend_from_slice(&[3, 0, 0, 0, 6, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0C, 0x00]);
        assert!(matches!(trim_ccel(&log), Err(CcelError::Truncated(_))));
    }

    fn write(root: &std::path::Path, path: &str, bytes: &[u8]) {
        let full = Platform::new(root).path(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }

    #[test]
    fn eventlog_assembly_follows_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::new(dir.path());
        let env = Env::default();
        let aael = aael_path(&platform, &env);
        assert_eq!(aael, dir.path().join("run/attestation-agent/eventlog"));
        // nothing at all: null
        assert_eq!(cc_eventlog(&platform, &aael, Tee::Tdx).unwrap(), None);

        // AAEL only: header ‖ AAEL ‖ end marker
        write(dir.path(), DEFAULT_AAEL_PATH, b"AAEL-ENTRIES");
        let log = cc_eventlog(&platform, &aael, Tee::Tdx).unwrap().unwrap();
        assert_eq!(
            log,
            [&SPEC_ID_HEADER[..], b"AAEL-ENTRIES", &END_MARKER[..]].concat()
        );

        // CCEL (with trailing free space) and AAEL: trimmed CCEL ‖ AAEL ‖ end marker
        let mut ccel = SPEC_ID_HEADER.to_vec();
        ccel.extend_from_slice(&[0xFF; 100]);
        write(dir.path(), CCEL_PATH, &ccel);
        let log = cc_eventlog(&platform, &aael, Tee::Tdx).unwrap().unwrap();
        assert_eq!(
            log,
            [&SPEC_ID_HEADER[..], b"AAEL-ENTRIES", &END_MARKER[..]].concat()
        );

        // CCEL only
        std::fs::remove_file(&aael).unwrap();
        let log = cc_eventlog(&platform, &aael, Tee::Tdx).unwrap().unwrap();
        assert_eq!(log, [&SPEC_ID_HEADER[..], &END_MARKER[..]].concat());

        // a corrupt CCEL is an error naming the file
        write(dir.path(), CCEL_PATH, b"junk");
        let err = cc_eventlog(&platform, &aael, Tee::Tdx).unwrap_err();
        assert!(err.to_string().contains("CCEL"), "{err}");
    }

    #[test]
    fn aael_path_comes_from_the_environment_under_the_root() {
        let platform = Platform::new("/fake");
        let env: Env = [(AAEL_PATH_ENV, "/var/log/../aael")].into_iter().collect();
        assert_eq!(
            aael_path(&platform, &env),
            PathBuf::from("/fake/var/log/aael")
        );
    }
}
