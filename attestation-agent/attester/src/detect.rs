//! Platform detection: which attester speaks for this VM and which devices add evidence.
//!
//! Hardware attesters are compiled in by cargo features and probed in the documented order
//! tdx → sgx → az-tdx-vtpm → az-snp-vtpm → snp → csv → cca → se → tpm. When none matches,
//! the [`SamplePolicy`] decides: the agent falls back to the sample attester as upstream
//! does (kata's `qemu-coco-dev` guests have no TEE), with a warning that names the
//! fallback, unless strict mode refuses it; then detection fails with
//! [`AttesterError::NoTeeDetected`], naming the setting that refused it.

use std::collections::BTreeMap;

use tracing::{info, warn};

use crate::{
    Attester, AttesterError, Platform, SampleAttester, SampleDeviceAttester, Tee,
    SAMPLE_ATTESTER_ENV, SAMPLE_DEVICE_ENV,
};

/// The environment variables attesters and detection consult.
const CONSULTED_VARS: &[&str] = &[
    SAMPLE_ATTESTER_ENV,
    SAMPLE_DEVICE_ENV,
    // the agent eventlog embedded in TDX/CSV evidence
    "AAEL_PATH",
    // the TPM: a TCTI configuration, or a device path, and the AK's persistent handle
    "AA_TPM_TCTI",
    "AA_TPM_DEVICE",
    "AA_TPM_AK_HANDLE",
    // SGX in an Occlum enclave
    "OCCLUM",
    // the NVML library of the NVIDIA GPU attester
    "AA_NVML_LIBRARY",
];

/// A snapshot of the environment variables attesters read, so tests pass values in
/// instead of mutating the process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The consulted variables as the process sees them (non-UTF-8 values are skipped).
    pub fn from_process() -> Self {
        CONSULTED_VARS
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (*name, value)))
            .collect()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A boolean variable: unset, empty, `0`, `false`, `no`, `off` are false; `1`, `true`,
    /// `yes`, `on` are true (case-insensitive); anything else is an error rather than a guess.
    pub(crate) fn flag(&self, name: &'static str) -> Result<bool, AttesterError> {
        Ok(self.optional_flag(name)?.unwrap_or(false))
    }

    /// A boolean variable as [`Env::flag`] reads it, `None` when unset.
    pub(crate) fn optional_flag(&self, name: &'static str) -> Result<Option<bool>, AttesterError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        parse_flag(value)
            .map(Some)
            .ok_or_else(|| AttesterError::InvalidEnvFlag {
                name,
                value: value.to_string(),
            })
    }
}

/// A boolean setting as the agent reads it everywhere (environment, kernel parameters):
/// `1`/`true`/`yes`/`on` and empty/`0`/`false`/`no`/`off`, case-insensitive.
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "" | "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// Whether the sample attester may stand in when no TEE is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamplePolicy {
    /// Fall back to it unless `AA_SAMPLE_ATTESTER` says no: upstream's behaviour, the
    /// agent's default.
    FallBack,
    /// Use it only when `AA_SAMPLE_ATTESTER` says yes: the operator tools' default.
    OptIn,
    /// Allowed by an explicit setting, named here for the log.
    Allowed(String),
    /// Refused by an explicit setting (strict mode), named here for the error.
    Refused(String),
}

/// What detection may use besides the hardware.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// When the sample attester may stand in.
    pub sample: SamplePolicy,
    /// The environment (`AA_SAMPLE_ATTESTER`, `ENABLE_SAMPLE_DEVICE`, attester settings).
    pub env: Env,
}

impl SamplePolicy {
    /// The explicit decision: `Ok(setting)` when allowed, `Err(setting)` when refused.
    fn decide(&self, env: &Env) -> Result<Result<String, String>, AttesterError> {
        let from_env = env.optional_flag(SAMPLE_ATTESTER_ENV)?.map(|allowed| {
            let setting = format!(
                "{SAMPLE_ATTESTER_ENV}={}",
                env.get(SAMPLE_ATTESTER_ENV).unwrap_or_default()
            );
            if allowed {
                Ok(setting)
            } else {
                Err(setting)
            }
        });
        Ok(match self {
            SamplePolicy::Allowed(setting) => Ok(setting.clone()),
            SamplePolicy::Refused(setting) => Err(setting.clone()),
            SamplePolicy::FallBack => {
                from_env.unwrap_or_else(|| Ok("the default (as upstream)".to_string()))
            }
            SamplePolicy::OptIn => from_env
                .unwrap_or_else(|| Err(format!("the default ({SAMPLE_ATTESTER_ENV} unset)"))),
        })
    }
}

/// The attesters of this platform.
pub struct Detected {
    /// The attester of the VM itself (GetEvidence, GetTeeType).
    pub primary: Box<dyn Attester>,
    /// Device attesters (GetAdditionalEvidence, GetAdditionalTees), in probe order.
    pub additional: Vec<Box<dyn Attester>>,
}

impl std::fmt::Debug for Detected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let additional: Vec<Tee> = self.additional.iter().map(|a| a.tee()).collect();
        f.debug_struct("Detected")
            .field("primary", &self.primary.tee())
            .field("additional", &additional)
            .finish()
    }
}

/// A device attester could not produce evidence.
#[derive(Debug, thiserror::Error)]
#[error("getting additional {tee} device evidence: {source}")]
pub struct DeviceEvidenceError {
    /// the device's TEE
    pub tee: Tee,
    /// the cause
    #[source]
    pub source: AttesterError,
}

impl Detected {
    /// Evidence of every device over `report_data` as the JSON text
    /// `{"<tee>": <evidence>, ...}` (what `GetAdditionalEvidence` returns and what goes into
    /// the KBS's `additional_evidence`), or `""` when there are no devices.
    pub async fn additional_evidence(
        &self,
        report_data: &[u8],
    ) -> Result<String, DeviceEvidenceError> {
        if self.additional.is_empty() {
            return Ok(String::new());
        }
        let mut all = serde_json::Map::new();
        for device in &self.additional {
            let tee = device.tee();
            let evidence = device
                .get_evidence(report_data)
                .await
                .map_err(|source| DeviceEvidenceError { tee, source })?;
            all.insert(tee.to_string(), evidence);
        }
        Ok(serde_json::Value::Object(all).to_string())
    }
}

/// Looks for one TEE: `Ok(None)` when the platform does not have it.
type Probe = fn(&Platform, &Env) -> Result<Option<Box<dyn Attester>>, AttesterError>;

/// Hardware attesters of the VM in detection order; each entry is compiled in by its
/// cargo feature.
const PRIMARY_PROBES: &[(Tee, Probe)] = &[
    #[cfg(feature = "tdx-attester")]
    (Tee::Tdx, crate::tdx::probe),
    #[cfg(feature = "sgx-attester")]
    (Tee::Sgx, crate::sgx::probe),
    #[cfg(feature = "az-tdx-vtpm-attester")]
    (Tee::AzTdxVtpm, crate::azure::probe_tdx),
    #[cfg(feature = "az-snp-vtpm-attester")]
    (Tee::AzSnpVtpm, crate::azure::probe_snp),
    #[cfg(feature = "snp-attester")]
    (Tee::Snp, crate::snp::probe),
    #[cfg(feature = "csv-attester")]
    (Tee::Csv, crate::csv::probe),
    #[cfg(feature = "cca-attester")]
    (Tee::Cca, crate::cca::probe),
    #[cfg(feature = "se-attester")]
    (Tee::Se, crate::se::probe),
    #[cfg(feature = "tpm-attester")]
    (Tee::Tpm, crate::tpm::probe),
];

/// Device attesters, each added when its probe finds the device.
const DEVICE_PROBES: &[(Tee, Probe)] = &[
    (Tee::SampleDevice, probe_sample_device),
    #[cfg(feature = "nvidia-attester")]
    (Tee::Nvidia, crate::nvidia::probe),
    // A TPM next to another TEE, as upstream: only in builds without the TDX and Azure
    // attesters (whose platforms expose a vTPM that is part of their own evidence).
    #[cfg(all(
        feature = "tpm-attester",
        not(feature = "tdx-attester"),
        not(feature = "az-snp-vtpm-attester"),
        not(feature = "az-tdx-vtpm-attester")
    ))]
    (Tee::Tpm, crate::tpm::probe),
];

fn probe_sample_device(
    _platform: &Platform,
    env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    Ok(env
        .flag(SAMPLE_DEVICE_ENV)?
        .then(|| Box::new(SampleDeviceAttester) as Box<dyn Attester>))
}

/// The attesters compiled into this build: hardware ones in detection order, the sample
/// attester, then devices.
pub fn compiled_attesters() -> Vec<Tee> {
    let primary = PRIMARY_PROBES.iter().map(|(tee, _)| *tee);
    let devices = DEVICE_PROBES.iter().map(|(tee, _)| *tee);
    primary.chain([Tee::Sample]).chain(devices).collect()
}

/// Finds the primary attester and the device attesters of `platform`.
pub fn detect(platform: &Platform, options: &DetectOptions) -> Result<Detected, AttesterError> {
    detect_with(platform, options, PRIMARY_PROBES, DEVICE_PROBES)
}

fn detect_with(
    platform: &Platform,
    options: &DetectOptions,
    primary_probes: &[(Tee, Probe)],
    device_probes: &[(Tee, Probe)],
) -> Result<Detected, AttesterError> {
    // Decide first, so a malformed value is reported even on real hardware.
    let sample = options.sample.decide(&options.env)?;
    let mut primary = None;
    for (tee, probe) in primary_probes {
        if let Some(attester) = probe(platform, &options.env)? {
            info!(%tee, "TEE detected");
            primary = Some(attester);
            break;
        }
    }
    let primary = match primary {
        Some(attester) => attester,
        None => match sample {
            Ok(allowed_by) => {
                warn!(
                    allowed_by = %allowed_by,
                    "no TEE found: falling back to the sample attester, whose evidence proves \
                     nothing (the KBS decides whether to trust it); for strict mode set \
                     `[attester] allow_sample = false` or the kernel parameter aa.allow_sample=false"
                );
                Box::new(SampleAttester)
            }
            Err(refused_by) => {
                let hardware: Vec<&str> = primary_probes.iter().map(|(t, _)| t.as_str()).collect();
                return Err(AttesterError::NoTeeDetected {
                    compiled: if hardware.is_empty() {
                        "none".to_string()
                    } else {
                        hardware.join(", ")
                    },
                    refused_by,
                });
            }
        },
    };
    let mut additional = Vec::new();
    for (tee, probe) in device_probes {
        // the VM's own TEE is not also a device (a TPM primary is not an additional TPM)
        if *tee == primary.tee() {
            continue;
        }
        if let Some(attester) = probe(platform, &options.env)? {
            info!(%tee, "additional TEE device detected");
            additional.push(attester);
        }
    }
    Ok(Detected {
        primary,
        additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `true`: allowed by the config; `false`: the tools' opt-in default.
    fn options(allow_sample: bool, env: &[(&str, &str)]) -> DetectOptions {
        DetectOptions {
            sample: if allow_sample {
                SamplePolicy::Allowed("config".into())
            } else {
                SamplePolicy::OptIn
            },
            env: env.iter().copied().collect(),
        }
    }

    fn policy(sample: SamplePolicy, env: &[(&str, &str)]) -> DetectOptions {
        DetectOptions {
            sample,
            env: env.iter().copied().collect(),
        }
    }

    /// An empty fake root: no TEE interfaces at all, whatever the machine running the test.
    fn empty() -> (tempfile::TempDir, Platform) {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::new(dir.path());
        (dir, platform)
    }

    fn compiled_hardware() -> String {
        let names: Vec<&str> = PRIMARY_PROBES.iter().map(|(t, _)| t.as_str()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }

    fn tees(d: &Detected) -> (Tee, Vec<Tee>) {
        (
            d.primary.tee(),
            d.additional.iter().map(|a| a.tee()).collect(),
        )
    }

    #[test]
    fn nothing_found_and_nothing_allowed_is_an_error_that_says_what_to_do() {
        let (_dir, root) = empty();
        let err = detect(&root, &options(false, &[])).unwrap_err();
        assert!(
            matches!(err, AttesterError::NoTeeDetected { ref compiled, ref refused_by }
                if *compiled == compiled_hardware() && refused_by.contains("AA_SAMPLE_ATTESTER unset"))
        );
        let text = err.to_string();
        assert!(text.contains("no TEE found"), "{text}");
        assert!(text.contains("AA_SAMPLE_ATTESTER=1"), "{text}");
        assert!(text.contains("[attester] allow_sample = true"), "{text}");
        assert!(text.contains("aa.allow_sample=true"), "{text}");
        // an explicit "off" is not an opt-in either
        for off in ["0", "false", "", "no", "OFF"] {
            assert!(matches!(
                detect(&root, &options(false, &[(SAMPLE_ATTESTER_ENV, off)])),
                Err(AttesterError::NoTeeDetected { .. })
            ));
        }
    }

    #[test]
    fn the_agent_default_falls_back_unless_refused() {
        let (_dir, root) = empty();
        let d = detect(&root, &policy(SamplePolicy::FallBack, &[])).unwrap();
        assert_eq!(tees(&d), (Tee::Sample, vec![]));
        // AA_SAMPLE_ATTESTER=0 is an explicit refusal under the fallback default
        let err = detect(
            &root,
            &policy(SamplePolicy::FallBack, &[(SAMPLE_ATTESTER_ENV, "0")]),
        )
        .unwrap_err();
        assert!(
            matches!(err, AttesterError::NoTeeDetected { ref refused_by, .. } if refused_by == "AA_SAMPLE_ATTESTER=0"),
            "{err}"
        );
        // strict mode wins over the environment's opt-in
        let err = detect(
            &root,
            &policy(
                SamplePolicy::Refused("kernel parameter aa.allow_sample=false".into()),
                &[(SAMPLE_ATTESTER_ENV, "1")],
            ),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("refused by kernel parameter aa.allow_sample=false"),
            "{err}"
        );
        // and an explicit allow wins over the environment's refusal
        let d = detect(
            &root,
            &policy(
                SamplePolicy::Allowed("config".into()),
                &[(SAMPLE_ATTESTER_ENV, "0")],
            ),
        )
        .unwrap();
        assert_eq!(d.primary.tee(), Tee::Sample);
    }

    #[test]
    fn sample_by_env_or_config() {
        let (_dir, root) = empty();
        let d = detect(&root, &options(false, &[(SAMPLE_ATTESTER_ENV, "1")])).unwrap();
        assert_eq!(tees(&d), (Tee::Sample, vec![]));
        let d = detect(&root, &options(true, &[])).unwrap();
        assert_eq!(tees(&d), (Tee::Sample, vec![]));
        let d = detect(&root, &options(false, &[(SAMPLE_ATTESTER_ENV, "TRUE")])).unwrap();
        assert_eq!(d.primary.tee(), Tee::Sample);
    }

    #[test]
    fn sample_device_only_by_env() {
        let (_dir, root) = empty();
        let d = detect(&root, &options(true, &[(SAMPLE_DEVICE_ENV, "1")])).unwrap();
        assert_eq!(tees(&d), (Tee::Sample, vec![Tee::SampleDevice]));
        let d = detect(&root, &options(true, &[(SAMPLE_DEVICE_ENV, "0")])).unwrap();
        assert!(d.additional.is_empty());
        // the device alone does not make a primary TEE
        assert!(matches!(
            detect(&root, &options(false, &[(SAMPLE_DEVICE_ENV, "1")])),
            Err(AttesterError::NoTeeDetected { .. })
        ));
    }

    #[test]
    fn malformed_flags_are_errors_not_guesses() {
        let (_dir, root) = empty();
        for (name, value) in [(SAMPLE_ATTESTER_ENV, "2"), (SAMPLE_DEVICE_ENV, "enable")] {
            let err = detect(&root, &options(true, &[(name, value)])).unwrap_err();
            assert!(
                matches!(err, AttesterError::InvalidEnvFlag { name: n, value: ref v } if n == name && v == value),
                "{err}"
            );
            assert!(err.to_string().contains(name));
        }
    }

    struct Fake(Tee);
    #[async_trait::async_trait]
    impl Attester for Fake {
        fn tee(&self) -> Tee {
            self.0
        }
        async fn get_evidence(&self, _: &[u8]) -> Result<serde_json::Value, AttesterError> {
            Ok(serde_json::Value::Null)
        }
    }

    fn absent(_: &Platform, _: &Env) -> Result<Option<Box<dyn Attester>>, AttesterError> {
        Ok(None)
    }
    fn tdx(_: &Platform, _: &Env) -> Result<Option<Box<dyn Attester>>, AttesterError> {
        Ok(Some(Box::new(Fake(Tee::Tdx))))
    }
    fn snp(_: &Platform, _: &Env) -> Result<Option<Box<dyn Attester>>, AttesterError> {
        Ok(Some(Box::new(Fake(Tee::Snp))))
    }

    #[test]
    fn first_hardware_match_wins_and_beats_an_allowed_sample() {
        let (_dir, root) = empty();
        let probes: &[(Tee, Probe)] = &[(Tee::Sgx, absent), (Tee::Tdx, tdx), (Tee::Snp, snp)];
        let d = detect_with(&root, &options(true, &[]), probes, &[]).unwrap();
        assert_eq!(tees(&d), (Tee::Tdx, vec![]));
    }

    #[test]
    fn error_lists_the_compiled_hardware_attesters() {
        let (_dir, root) = empty();
        let probes: &[(Tee, Probe)] = &[(Tee::Tdx, absent), (Tee::Snp, absent)];
        let err = detect_with(&root, &options(false, &[]), probes, &[]).unwrap_err();
        assert!(err.to_string().contains("compiled in: tdx, snp"), "{err}");
    }

    #[test]
    fn compiled_list_has_the_hardware_and_sample_attesters() {
        let mut expected: Vec<Tee> = PRIMARY_PROBES.iter().map(|(t, _)| *t).collect();
        expected.push(Tee::Sample);
        expected.extend(DEVICE_PROBES.iter().map(|(t, _)| *t));
        assert_eq!(compiled_attesters(), expected);
        assert_eq!(
            expected[expected.len() - DEVICE_PROBES.len()],
            Tee::SampleDevice
        );
        #[cfg(not(any(
            feature = "tdx-attester",
            feature = "snp-attester",
            feature = "sgx-attester",
            feature = "cca-attester",
            feature = "se-attester",
            feature = "csv-attester",
            feature = "tpm-attester",
            feature = "az-snp-vtpm-attester",
            feature = "az-tdx-vtpm-attester",
            feature = "nvidia-attester"
        )))]
        assert_eq!(compiled_attesters(), vec![Tee::Sample, Tee::SampleDevice]);
        #[cfg(feature = "nvidia-attester")]
        {
            let all = compiled_attesters();
            let sample_device = all.iter().position(|t| *t == Tee::SampleDevice);
            assert_eq!(
                sample_device.and_then(|at| all.get(at + 1)),
                Some(&Tee::Nvidia)
            );
        }
    }

    /// A device whose evidence always fails.
    struct BrokenDevice;
    #[async_trait::async_trait]
    impl Attester for BrokenDevice {
        fn tee(&self) -> Tee {
            Tee::Nvidia
        }
        async fn get_evidence(&self, _: &[u8]) -> Result<serde_json::Value, AttesterError> {
            Err(AttesterError::InvalidEnvFlag {
                name: "X",
                value: "y".into(),
            })
        }
    }

    #[tokio::test]
    async fn additional_evidence_is_an_object_per_device_or_empty() {
        let none = Detected {
            primary: Box::new(SampleAttester),
            additional: vec![],
        };
        assert_eq!(none.additional_evidence(b"x").await.unwrap(), "");
        let one = Detected {
            primary: Box::new(SampleAttester),
            additional: vec![Box::new(SampleDeviceAttester)],
        };
        let text = one.additional_evidence(b"dev").await.unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"sampledevice": {"svn": "2", "report_data": "ZGV2"}})
        );
        let broken = Detected {
            primary: Box::new(SampleAttester),
            additional: vec![Box::new(SampleDeviceAttester), Box::new(BrokenDevice)],
        };
        let err = broken.additional_evidence(b"dev").await.unwrap_err();
        assert_eq!(err.tee, Tee::Nvidia);
        assert!(
            err.to_string()
                .starts_with("getting additional nvidia device evidence: "),
            "{err}"
        );
    }

    #[test]
    fn env_snapshot_only_holds_consulted_variables() {
        let env = Env::from_process();
        assert!(env
            .vars
            .keys()
            .all(|k| CONSULTED_VARS.contains(&k.as_str())));
        let env: Env = [("A", "x")].into_iter().collect();
        assert_eq!(env.get("A"), Some("x"));
        assert_eq!(env.get("B"), None);
    }
}
