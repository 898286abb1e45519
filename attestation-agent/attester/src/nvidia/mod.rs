//! NVIDIA GPU attester (`nvidia-attester`): the confidential-computing evidence of every GPU
//! NVML lists (Hopper and Blackwell), sent as additional (device) evidence next to the
//! CPU's, in the layout trustee's `nvidia` verifier reads:
//!
//! ```json
//! {"device_evidence_list": [
//!   {"arch": "HOPPER", "uuid": "GPU-…", "evidence": "<base64 SPDM report>",
//!    "certificate": "<base64 PEM chain, leaf first>"}]}
//! ```
//!
//! The SPDM nonce is the first 32 bytes of the report data, zero-padded when shorter: the
//! verifier regularizes the expected report data to 32 bytes the same way and compares it
//! with the nonce of the report's GET_MEASUREMENTS request.
//!
//! NVML comes from the driver's `libnvidia-ml`, loaded at run time: `$AA_NVML_LIBRARY` when
//! set, else `libnvidia-ml.so.1` then `libnvidia-ml.so` by the loader's search
//! (`LD_LIBRARY_PATH`, the ld cache). A guest without the library, the driver, a GPU or
//! confidential computing has no NVIDIA device: detection leaves it out and says why.
//! NVIDIA's C SDK is not needed. The attester does not change the GPUs' ready state; that
//! stays with whoever decides the evidence is good.

mod nvml;

use std::{ffi::OsStr, sync::Arc};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{Attester, AttesterError, Env, Platform, Tee};
use nvml::{Nvml, NvmlError, Session, ERROR_NOT_SUPPORTED};

pub(crate) use nvml::NONCE_SIZE;

/// Environment variable naming the NVML library (a file name or a path).
pub const LIBRARY_ENV: &str = "AA_NVML_LIBRARY";
/// The libraries tried when [`LIBRARY_ENV`] is unset, in order.
pub(crate) const DEFAULT_LIBRARIES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];
/// `NVML_DEVICE_ARCH_HOPPER`.
const ARCH_HOPPER: u32 = 9;
/// `NVML_DEVICE_ARCH_BLACKWELL`.
const ARCH_BLACKWELL: u32 = 10;
/// More GPUs than any system holds: a larger count is a broken library, not a machine.
const MAX_GPUS: u32 = 64;
/// SPDM 1.1, the version of the GET_MEASUREMENTS request the report starts with.
const SPDM_VERSION: u8 = 0x11;
/// SPDMVersion, RequestResponseCode, Param1, Param2, then the nonce.
const REQUEST_NONCE_OFFSET: usize = 4;

/// Evidence of the NVIDIA devices, as trustee's `nvidia` verifier deserializes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NvidiaEvidence {
    /// One entry per GPU, in NVML's index order.
    pub(crate) device_evidence_list: Vec<DeviceEvidence>,
}

/// One GPU's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceEvidence {
    /// `HOPPER` or `BLACKWELL` (the verifier also accepts the capitalised names).
    pub(crate) arch: String,
    /// NVML's UUID of the GPU (`GPU-…`); informational, not part of the appraisal.
    pub(crate) uuid: String,
    /// Standard base64 of the raw attestation report (SPDM request, response, signature).
    pub(crate) evidence: String,
    /// Standard base64 of the PEM attestation certificate chain, leaf first.
    pub(crate) certificate: String,
}

/// Why this guest has no NVIDIA device to attest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoDevice {
    /// No NVML library could be loaded (no NVIDIA driver in this guest).
    #[error("no NVIDIA driver library: {0}")]
    Library(String),
    /// The library loaded but NVML did not start (driver not loaded, no permission).
    #[error("NVML did not initialise: {0}")]
    Driver(String),
    /// NVML lists no GPU.
    #[error("NVML lists no GPU")]
    NoGpu,
    /// The GPUs cannot produce confidential-computing evidence.
    #[error("the GPUs are not in confidential-computing mode: {0}")]
    NotConfidential(String),
}

/// The NVIDIA attester if this guest has a GPU to attest, else why not.
pub fn find(env: &Env) -> Result<NvidiaAttester, NoDevice> {
    let nvml = load(env)?;
    {
        let session = nvml
            .session()
            .map_err(|e| NoDevice::Driver(e.to_string()))?;
        let count = session
            .device_count()
            .map_err(|e| NoDevice::Driver(e.to_string()))?;
        if count == 0 {
            return Err(NoDevice::NoGpu);
        }
        match session.cc_state() {
            Ok(state) if state.enabled => {
                info!(
                    gpus = count,
                    library = %nvml.path().to_string_lossy(),
                    environment = state.environment,
                    dev_tools = state.dev_tools,
                    "NVIDIA GPUs in confidential-computing mode"
                );
            }
            Ok(_) => {
                return Err(NoDevice::NotConfidential(format!(
                    "NVML lists {count} GPU(s) with confidential computing off"
                )))
            }
            Err(e) if e.code() == Some(ERROR_NOT_SUPPORTED) => {
                return Err(NoDevice::NotConfidential(e.to_string()))
            }
            Err(e) => return Err(NoDevice::Driver(e.to_string())),
        }
    }
    Ok(NvidiaAttester {
        nvml: Arc::new(nvml),
    })
}

fn load(env: &Env) -> Result<Nvml, NoDevice> {
    if let Some(path) = env.get(LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return Nvml::load(OsStr::new(path))
            .map_err(|e| NoDevice::Library(format!("{LIBRARY_ENV}={path}: {e}")));
    }
    let mut failures = Vec::new();
    for name in DEFAULT_LIBRARIES {
        match Nvml::load(OsStr::new(name)) {
            Ok(nvml) => return Ok(nvml),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(NoDevice::Library(failures.join("; ")))
}

/// Detection's probe: the attester when there is a GPU to attest. No GPU is not an error:
/// the reason is logged and the guest simply has no NVIDIA device.
pub(crate) fn probe(
    _platform: &Platform,
    env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    // NVML talks to the driver through its own device nodes, not through the platform root.
    match find(env) {
        Ok(attester) => Ok(Some(Box::new(attester))),
        Err(reason @ (NoDevice::Library(_) | NoDevice::NoGpu)) => {
            info!(%reason, "no NVIDIA device");
            Ok(None)
        }
        Err(reason) => {
            warn!(%reason, "no NVIDIA device: GPU evidence will not be sent");
            Ok(None)
        }
    }
}

/// The SPDM nonce bound to `report_data`: its first 32 bytes, zero-padded when shorter,
/// exactly as the verifier regularizes the report data it expects.
pub(crate) fn nonce(report_data: &[u8]) -> [u8; NONCE_SIZE] {
    let mut nonce = [0u8; NONCE_SIZE];
    let len = report_data.len().min(NONCE_SIZE);
    nonce[..len].copy_from_slice(&report_data[..len]);
    nonce
}

/// Attests the NVIDIA GPUs through NVML.
#[derive(Debug, Clone)]
pub struct NvidiaAttester {
    nvml: Arc<Nvml>,
}

#[async_trait]
impl Attester for NvidiaAttester {
    fn tee(&self) -> Tee {
        Tee::Nvidia
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let nonce = nonce(report_data);
        let nvml = Arc::clone(&self.nvml);
        // report generation talks to every GPU's firmware: keep it off the async workers
        let evidence = tokio::task::spawn_blocking(move || collect(&nvml, &nonce))
            .await
            .map_err(|join| platform(format!("the NVML request did not complete: {join}")))??;
        serde_json::to_value(evidence).map_err(|e| platform(format!("encoding evidence: {e}")))
    }
}

fn platform(message: String) -> AttesterError {
    AttesterError::Platform {
        tee: Tee::Nvidia,
        message,
    }
}

fn backend(operation: String, source: NvmlError) -> AttesterError {
    AttesterError::Backend {
        tee: Tee::Nvidia,
        operation,
        source: Box::new(source),
    }
}

fn collect(nvml: &Nvml, nonce: &[u8; NONCE_SIZE]) -> Result<NvidiaEvidence, AttesterError> {
    let session = nvml
        .session()
        .map_err(|e| backend("initialising NVML".into(), e))?;
    let count = session
        .device_count()
        .map_err(|e| backend("counting the GPUs".into(), e))?;
    if count == 0 {
        return Err(platform(
            "NVML lists no GPU any more; restart the agent after changing the GPUs".into(),
        ));
    }
    if count > MAX_GPUS {
        return Err(platform(format!(
            "NVML lists {count} GPUs, more than the {MAX_GPUS} any system holds"
        )));
    }
    let state = session
        .cc_state()
        .map_err(|e| backend("reading the confidential-computing state".into(), e))?;
    if !state.enabled {
        return Err(platform(
            "confidential computing is off; the GPUs cannot be attested".into(),
        ));
    }
    let device_evidence_list = (0..count)
        .map(|index| device_evidence(&session, index, nonce))
        .collect::<Result<_, _>>()?;
    Ok(NvidiaEvidence {
        device_evidence_list,
    })
}

fn device_evidence(
    session: &Session<'_>,
    index: u32,
    nonce: &[u8; NONCE_SIZE],
) -> Result<DeviceEvidence, AttesterError> {
    let gpu = |what: &str| format!("{what} of GPU {index}");
    let device = session
        .device(index)
        .map_err(|e| backend(gpu("getting the handle"), e))?;
    let uuid = session
        .uuid(device)
        .map_err(|e| backend(gpu("reading the UUID"), e))?;
    let arch = match session
        .architecture(device)
        .map_err(|e| backend(gpu("reading the architecture"), e))?
    {
        ARCH_HOPPER => "HOPPER",
        ARCH_BLACKWELL => "BLACKWELL",
        other => {
            return Err(platform(format!(
                "GPU {index} ({uuid}) has NVML architecture {other}; only Hopper and \
                 Blackwell GPUs produce evidence the verifier appraises"
            )))
        }
    };
    let report = session
        .attestation_report(device, nonce)
        .map_err(|e| backend(gpu("getting the attestation report"), e))?;
    // A report over another nonce would only fail at the verifier; say so here instead.
    let request_nonce = (report.first() == Some(&SPDM_VERSION))
        .then(|| report.get(REQUEST_NONCE_OFFSET..REQUEST_NONCE_OFFSET + NONCE_SIZE))
        .flatten();
    if request_nonce != Some(nonce.as_slice()) {
        return Err(platform(format!(
            "GPU {index} ({uuid}) returned a {}-byte attestation report that is not an SPDM \
             1.1 report over the nonce asked for",
            report.len()
        )));
    }
    let chain = session
        .attestation_cert_chain(device)
        .map_err(|e| backend(gpu("getting the certificate chain"), e))?;
    if chain.is_empty() {
        return Err(platform(format!(
            "GPU {index} ({uuid}) returned an empty certificate chain"
        )));
    }
    Ok(DeviceEvidence {
        arch: arch.to_string(),
        uuid,
        evidence: STANDARD.encode(report),
        certificate: STANDARD.encode(chain),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_is_the_report_data_regularized_to_32_bytes() {
        let sha384: Vec<u8> = (0u8..48).collect();
        assert_eq!(nonce(&sha384).as_slice(), &sha384[..32]);
        let short = [7u8; 20];
        let mut padded = [0u8; 32];
        padded[..20].copy_from_slice(&short);
        assert_eq!(nonce(&short), padded);
        assert_eq!(nonce(&[]), [0u8; 32]);
        let exact = [9u8; 32];
        assert_eq!(nonce(&exact), exact);
    }

    #[test]
    fn a_missing_library_is_no_device() {
        let env: Env = [(LIBRARY_ENV, "/nonexistent/libnvidia-ml.so.1")]
            .into_iter()
            .collect();
        let err = find(&env).unwrap_err();
        assert!(
            matches!(&err, NoDevice::Library(text) if text.contains("/nonexistent/libnvidia-ml.so.1")),
            "{err}"
        );
        assert!(probe(&Platform::default(), &env).unwrap().is_none());
    }

    #[test]
    fn evidence_serializes_with_the_verifier_field_names() {
        let evidence = NvidiaEvidence {
            device_evidence_list: vec![DeviceEvidence {
                arch: "HOPPER".into(),
                uuid: "GPU-1".into(),
                evidence: "AA==".into(),
                certificate: "AQ==".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(&evidence).unwrap(),
            serde_json::json!({"device_evidence_list": [
                {"arch": "HOPPER", "uuid": "GPU-1", "evidence": "AA==", "certificate": "AQ=="}
            ]})
        );
    }
}
