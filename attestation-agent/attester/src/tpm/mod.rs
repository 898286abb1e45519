//! TPM 2.0: the layer shared by the `tpm` attester and the Azure vTPM attesters, and the
//! `tpm` attester itself.
//!
//! The TPM is reached through a TCTI: `AA_TPM_TCTI` (e.g. `swtpm:host=127.0.0.1,port=2321`
//! or `device:/dev/tpmrm0`), else `device:$AA_TPM_DEVICE`, else the first of
//! `/dev/tpmrm0`, `/dev/tpm0` that exists; device paths are taken under the platform root.
//! Every operation opens its own ESYS context and flushes the transient objects it created,
//! because a bare TPM (swtpm, `/dev/tpm0`) has no resource manager to clean up after us.
//! The TPM stack blocks, so all of this runs on tokio's blocking pool.

#[cfg(feature = "tpm-attester")]
mod attester;
mod device;

use std::str::FromStr;

#[cfg(feature = "tpm-attester")]
pub use attester::{probe, TpmEvidence, TpmQuote};
pub(crate) use device::QuoteParts;
pub(crate) use device::{AkSource, Tpm};

use sha2::{Digest, Sha256};

use crate::{
    support::{blocking, env_path},
    AttesterError, Env, ExtendedRegister, HashAlgorithm, InitDataResult, Platform, RegisterValue,
    RuntimeMeasurement, Tee,
};

/// Environment variable with a full TCTI configuration.
pub const TCTI_ENV: &str = "AA_TPM_TCTI";
/// Environment variable with a TPM device path.
pub(crate) const DEVICE_ENV: &str = "AA_TPM_DEVICE";
/// Environment variable with the AK's persistent handle (hex).
#[cfg(feature = "tpm-attester")]
pub const AK_HANDLE_ENV: &str = "AA_TPM_AK_HANDLE";
/// The AK handle used when `AA_TPM_AK_HANDLE` is not set (the Azure vTPM has its own).
#[cfg(feature = "tpm-attester")]
pub(crate) const DEFAULT_AK_HANDLE: u32 = 0x8101_0002;
/// Device nodes probed when nothing is configured, in order (the kernel resource manager
/// first).
pub(crate) const DEVICE_PATHS: [&str; 2] = ["/dev/tpmrm0", "/dev/tpm0"];
/// Number of PCRs quoted (all of the SHA-256 bank).
pub(crate) const PCR_COUNT: usize = 24;
/// The PCR initdata is extended into.
pub(crate) const INITDATA_PCR: u64 = 8;

/// Where the TPM is, as a TCTI configuration string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmLocation {
    tcti: String,
}

impl TpmLocation {
    /// The configured or present TPM, `None` when there is none.
    pub(crate) fn from_env(platform: &Platform, env: &Env) -> Result<Option<Self>, AttesterError> {
        if let Some(tcti) = env.get(TCTI_ENV) {
            let tcti = match tcti.strip_prefix("device:") {
                Some(path) if !path.is_empty() => {
                    format!("device:{}", env_path(platform, path).display())
                }
                _ => tcti.to_string(),
            };
            tss_esapi::tcti_ldr::TctiNameConf::from_str(&tcti).map_err(|e| {
                AttesterError::InvalidEnvValue {
                    name: TCTI_ENV,
                    value: tcti.clone(),
                    reason: format!(
                        "not a TCTI configuration ({e}); use e.g. device:/dev/tpmrm0 or \
                         swtpm:host=127.0.0.1,port=2321"
                    ),
                }
            })?;
            return Ok(Some(Self { tcti }));
        }
        if let Some(device) = env.get(DEVICE_ENV) {
            let path = env_path(platform, device);
            if !path.exists() {
                return Err(AttesterError::InvalidEnvValue {
                    name: DEVICE_ENV,
                    value: device.to_string(),
                    reason: format!("{} does not exist", path.display()),
                });
            }
            return Ok(Some(Self {
                tcti: format!("device:{}", path.display()),
            }));
        }
        Ok(DEVICE_PATHS
            .iter()
            .map(|path| platform.path(path))
            .find(|path| path.exists())
            .map(|path| Self {
                tcti: format!("device:{}", path.display()),
            }))
    }

    /// A location given directly as a TCTI string.
    pub fn from_tcti(tcti: impl Into<String>) -> Self {
        Self { tcti: tcti.into() }
    }

    /// The TCTI configuration string.
    pub(crate) fn tcti(&self) -> &str {
        &self.tcti
    }
}

/// The valid PCR index for runtime measurements.
fn pcr_index(tee: Tee, pcr: u64) -> Result<usize, AttesterError> {
    usize::try_from(pcr)
        .ok()
        .filter(|index| *index < PCR_COUNT)
        .ok_or(AttesterError::InvalidRegister {
            tee,
            index: pcr,
            valid: "PCR 0-23",
        })
}

/// Binds initdata by extending its SHA-256 digest into PCR 8, once: when PCR 8 already
/// holds exactly that one extend (an agent restart), nothing is extended again; when it holds
/// anything else, another initdata was bound and the digests mismatch.
pub(crate) async fn bind_init_data_pcr(
    tpm: &Tpm,
    tee: Tee,
    digest: &[u8],
) -> Result<InitDataResult, AttesterError> {
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| AttesterError::InitDataDigestSize {
            tee,
            len: digest.len(),
            register: "PCR 8",
            expected: "exactly 32 bytes (sha256)",
        })?;
    let mut extended_once = Sha256::new();
    extended_once.update([0u8; 32]);
    extended_once.update(digest);
    let expected: [u8; 32] = extended_once.finalize().into();
    let tpm = tpm.clone();
    blocking(tee, move || {
        let index = INITDATA_PCR as usize;
        let current = tpm.read_pcrs()?[index];
        if current == expected {
            return Ok(InitDataResult::Bound);
        }
        if current != [0; 32] {
            return Err(AttesterError::InitDataMismatch {
                tee,
                platform_hex: hex::encode(current),
                expected_hex: hex::encode(expected),
            });
        }
        tpm.extend_pcr(index, &digest)?;
        Ok(InitDataResult::Bound)
    })
    .await
}

/// Extends the SHA-256 digest of `event` into PCR `pcr` (the PCR index is the register).
pub(crate) async fn extend_event(
    tpm: &Tpm,
    tee: Tee,
    event: &[u8],
    pcr: u64,
) -> Result<RuntimeMeasurement, AttesterError> {
    let index = pcr_index(tee, pcr)?;
    let digest: [u8; 32] = Sha256::digest(event).into();
    let tpm = tpm.clone();
    blocking(tee, move || tpm.extend_pcr(index, &digest)).await?;
    Ok(RuntimeMeasurement::Extended(ExtendedRegister {
        register_index: pcr,
        algorithm: HashAlgorithm::Sha256,
        digest: digest.to_vec(),
    }))
}

/// The current value of SHA-256 PCR `pcr`.
pub(crate) async fn read_pcr(
    tpm: &Tpm,
    tee: Tee,
    pcr: u64,
) -> Result<Option<RegisterValue>, AttesterError> {
    let index = pcr_index(tee, pcr)?;
    let tpm = tpm.clone();
    let pcrs = blocking(tee, move || tpm.read_pcrs()).await?;
    Ok(Some(RegisterValue {
        register_index: pcr,
        algorithm: HashAlgorithm::Sha256,
        value: pcrs[index].to_vec(),
    }))
}

/// The AK handle from `AA_TPM_AK_HANDLE` (hex, with or without `0x`) or the default.
#[cfg(feature = "tpm-attester")]
pub(crate) fn ak_handle(env: &Env) -> Result<u32, AttesterError> {
    let Some(value) = env.get(AK_HANDLE_ENV) else {
        return Ok(DEFAULT_AK_HANDLE);
    };
    let digits = value
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X");
    let handle = u32::from_str_radix(digits, 16).map_err(|_| AttesterError::InvalidEnvValue {
        name: AK_HANDLE_ENV,
        value: value.to_string(),
        reason: "not a hexadecimal TPM handle like 0x81010002".to_string(),
    })?;
    if handle >> 24 != 0x81 {
        return Err(AttesterError::InvalidEnvValue {
            name: AK_HANDLE_ENV,
            value: value.to_string(),
            reason: "not a persistent handle (0x81xxxxxx)".to_string(),
        });
    }
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_from_environment_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::new(dir.path());
        assert_eq!(
            TpmLocation::from_env(&platform, &Env::default()).unwrap(),
            None
        );

        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::write(dir.path().join("dev/tpm0"), b"").unwrap();
        let found = TpmLocation::from_env(&platform, &Env::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            found.tcti(),
            format!("device:{}", dir.path().join("dev/tpm0").display())
        );
        std::fs::write(dir.path().join("dev/tpmrm0"), b"").unwrap();
        let found = TpmLocation::from_env(&platform, &Env::default())
            .unwrap()
            .unwrap();
        assert!(found.tcti().ends_with("dev/tpmrm0"), "{}", found.tcti());

        let env: Env = [(DEVICE_ENV, "/dev/tpm0")].into_iter().collect();
        let found = TpmLocation::from_env(&platform, &env).unwrap().unwrap();
        assert!(found.tcti().ends_with("dev/tpm0"));
        let env: Env = [(DEVICE_ENV, "/dev/tpm7")].into_iter().collect();
        let err = TpmLocation::from_env(&platform, &env).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");

        let env: Env = [(TCTI_ENV, "swtpm:host=127.0.0.1,port=2321")]
            .into_iter()
            .collect();
        let found = TpmLocation::from_env(&platform, &env).unwrap().unwrap();
        assert_eq!(found.tcti(), "swtpm:host=127.0.0.1,port=2321");
        let env: Env = [(TCTI_ENV, "device:/dev/tpm0")].into_iter().collect();
        let found = TpmLocation::from_env(&platform, &env).unwrap().unwrap();
        assert_eq!(
            found.tcti(),
            format!("device:{}", dir.path().join("dev/tpm0").display())
        );
        let env: Env = [(TCTI_ENV, "carrier-pigeon:x")].into_iter().collect();
        let err = TpmLocation::from_env(&platform, &env).unwrap_err();
        assert!(
            matches!(err, AttesterError::InvalidEnvValue { name: TCTI_ENV, .. }),
            "{err}"
        );
    }

    #[cfg(feature = "tpm-attester")]
    #[test]
    fn ak_handles_are_parsed_strictly() {
        assert_eq!(ak_handle(&Env::default()).unwrap(), 0x8101_0002);
        for (text, handle) in [
            ("0x81000003", 0x8100_0003),
            ("81010001", 0x8101_0001),
            (" 0X8101000A ", 0x8101_000A),
        ] {
            let env: Env = [(AK_HANDLE_ENV, text)].into_iter().collect();
            assert_eq!(ak_handle(&env).unwrap(), handle, "{text}");
        }
        for bad in ["", "zz", "0x", "0x01400001", "0x1_8101_0002", "810100020"] {
            let env: Env = [(AK_HANDLE_ENV, bad)].into_iter().collect();
            let err = ak_handle(&env).unwrap_err();
            assert!(
                matches!(
                    err,
                    AttesterError::InvalidEnvValue {
                        name: AK_HANDLE_ENV,
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }
}
