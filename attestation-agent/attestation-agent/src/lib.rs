//! The Attestation Agent: evidence from the platform's attesters, initdata binding, and
//! the ttRPC service kata-agent, the confidential data hub and api-server-rest call.
//!
//! The binary (`src/main.rs`) only wires flags, config, logging and the socket to
//! [`AttestationAgent`] and [`service::services`].

#![forbid(unsafe_code)]

pub mod config;
pub mod initdata;
pub mod kbc_params;
pub mod service;
mod structured;

use attester::{Attester, AttesterError, Detected, InitDataResult, Tee};
use tracing::info;

use crate::{config::Config, initdata::InitData, initdata::InitDataRequest};

/// The default ttRPC address (kata-agent passes the same explicitly).
pub const DEFAULT_SOCKET: &str =
    "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock";

/// `--version` text: crate version and the attesters compiled in.
pub fn version_text() -> String {
    let attesters: Vec<&str> = attester::compiled_attesters()
        .into_iter()
        .map(Tee::as_str)
        .collect();
    format!(
        "{} (attesters: {})",
        env!("CARGO_PKG_VERSION"),
        attesters.join(", ")
    )
}

/// Why an agent operation failed; the text names the step and the TEE.
#[derive(Debug, thiserror::Error)]
pub enum AaError {
    /// The primary attester could not produce evidence.
    #[error("getting {tee} evidence: {source}")]
    Evidence {
        /// the attester's TEE
        tee: Tee,
        /// the cause
        source: AttesterError,
    },
    /// A device attester could not produce evidence.
    #[error("getting additional {tee} device evidence: {source}")]
    AdditionalEvidence {
        /// the device's TEE
        tee: Tee,
        /// the cause
        source: AttesterError,
    },
    /// The platform refused or does not hold the initdata digest.
    #[error("binding initdata on {tee}: {source}")]
    BindInitData {
        /// the attester's TEE
        tee: Tee,
        /// the cause (a mismatch shows both digests)
        source: AttesterError,
    },
}

/// The agent: configuration, the attesters of this platform, and the initdata it was
/// started with.
pub struct AttestationAgent {
    config: Config,
    primary: Box<dyn Attester>,
    additional: Vec<Box<dyn Attester>>,
    initdata: Option<InitData>,
}

impl std::fmt::Debug for AttestationAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationAgent")
            .field("primary", &self.primary.tee())
            .field("additional", &self.get_additional_tees())
            .field("initdata", &self.initdata.is_some())
            .finish_non_exhaustive()
    }
}

impl AttestationAgent {
    /// An agent for `config` using the `detected` attesters.
    pub fn new(config: Config, detected: Detected) -> Self {
        Self {
            config,
            primary: detected.primary,
            additional: detected.additional,
            initdata: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The initdata document the agent was started with (`--initdata-toml`), kept verbatim.
    pub fn initdata(&self) -> Option<&InitData> {
        self.initdata.as_ref()
    }

    /// Binds the initdata digest with the primary attester. A document is kept for the KBS
    /// handshake once bound (or when the platform cannot bind initdata at all).
    pub async fn bind_init_data(
        &mut self,
        request: InitDataRequest,
    ) -> Result<InitDataResult, AaError> {
        let digest = request.digest();
        let tee = self.primary.tee();
        let result = self
            .primary
            .bind_init_data(&digest)
            .await
            .map_err(|source| AaError::BindInitData { tee, source })?;
        match result {
            InitDataResult::Bound => {
                info!(%tee, digest = %hex::encode(&digest), "initdata bound")
            }
            InitDataResult::Unsupported => info!(
                %tee,
                digest = %hex::encode(&digest),
                "this TEE cannot bind initdata in the guest; the digest is not checked here"
            ),
        }
        if let InitDataRequest::Toml(initdata) = request {
            self.initdata = Some(initdata);
        }
        Ok(result)
    }

    /// Evidence of the primary TEE over `runtime_data`, as JSON bytes.
    pub async fn get_evidence(&self, runtime_data: &[u8]) -> Result<Vec<u8>, AaError> {
        let evidence = self
            .primary
            .get_evidence(runtime_data)
            .await
            .map_err(|source| AaError::Evidence {
                tee: self.primary.tee(),
                source,
            })?;
        Ok(evidence.to_string().into_bytes())
    }

    /// Evidence of every device, `{"<tee>": <evidence>, ...}` as JSON bytes; empty bytes
    /// when there are no devices.
    pub async fn get_additional_evidence(&self, runtime_data: &[u8]) -> Result<Vec<u8>, AaError> {
        if self.additional.is_empty() {
            return Ok(Vec::new());
        }
        let mut all = serde_json::Map::new();
        for device in &self.additional {
            let tee = device.tee();
            let evidence = device
                .get_evidence(runtime_data)
                .await
                .map_err(|source| AaError::AdditionalEvidence { tee, source })?;
            all.insert(tee.to_string(), evidence);
        }
        Ok(serde_json::Value::Object(all).to_string().into_bytes())
    }

    /// The primary TEE's wire name.
    pub fn get_tee_type(&self) -> Tee {
        self.primary.tee()
    }

    /// The device TEEs' wire names.
    pub fn get_additional_tees(&self) -> Vec<Tee> {
        self.additional.iter().map(|a| a.tee()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attester::{SampleAttester, SampleDeviceAttester};
    use serde_json::json;

    fn agent(devices: bool) -> AttestationAgent {
        let additional: Vec<Box<dyn Attester>> = if devices {
            vec![Box::new(SampleDeviceAttester)]
        } else {
            vec![]
        };
        AttestationAgent::new(
            Config::default(),
            Detected {
                primary: Box::new(SampleAttester),
                additional,
            },
        )
    }

    #[tokio::test]
    async fn evidence_and_tees() {
        let aa = agent(true);
        let evidence = aa.get_evidence(b"runtime").await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&evidence).unwrap();
        assert_eq!(value, json!({"svn": "1", "report_data": "cnVudGltZQ=="}));
        let additional = aa.get_additional_evidence(b"dev").await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&additional).unwrap();
        assert_eq!(
            value,
            json!({"sampledevice": {"svn": "2", "report_data": "ZGV2"}})
        );
        assert_eq!(aa.get_tee_type(), Tee::Sample);
        assert_eq!(aa.get_additional_tees(), vec![Tee::SampleDevice]);
    }

    #[tokio::test]
    async fn no_devices_means_empty_additional_evidence() {
        let aa = agent(false);
        assert_eq!(
            aa.get_additional_evidence(b"x").await.unwrap(),
            Vec::<u8>::new()
        );
        assert!(aa.get_additional_tees().is_empty());
    }

    /// A platform that holds a fixed initdata digest.
    struct Holds(Vec<u8>);
    #[async_trait::async_trait]
    impl Attester for Holds {
        fn tee(&self) -> Tee {
            Tee::Tdx
        }
        async fn get_evidence(&self, _: &[u8]) -> Result<serde_json::Value, AttesterError> {
            Err(AttesterError::NoTeeDetected {
                compiled: "test".into(),
            })
        }
        async fn bind_init_data(&self, digest: &[u8]) -> Result<InitDataResult, AttesterError> {
            if digest == self.0 {
                Ok(InitDataResult::Bound)
            } else {
                Err(AttesterError::InitDataMismatch {
                    tee: Tee::Tdx,
                    platform_hex: hex::encode(&self.0),
                    expected_hex: hex::encode(digest),
                })
            }
        }
    }

    fn holding(digest: &[u8]) -> AttestationAgent {
        AttestationAgent::new(
            Config::default(),
            Detected {
                primary: Box::new(Holds(digest.to_vec())),
                additional: vec![],
            },
        )
    }

    const DOC: &str = "algorithm = \"sha256\"\nversion = \"0.1.0\"\n[data]\n";

    #[tokio::test]
    async fn initdata_is_bound_and_kept() {
        let initdata = InitData::parse(DOC.as_bytes().to_vec()).unwrap();
        let mut aa = holding(&initdata.digest());
        let result = aa
            .bind_init_data(InitDataRequest::Toml(initdata))
            .await
            .unwrap();
        assert_eq!(result, InitDataResult::Bound);
        assert_eq!(aa.initdata().unwrap().toml(), DOC);
    }

    #[tokio::test]
    async fn unsupported_initdata_is_not_an_error() {
        let mut aa = agent(false);
        let initdata = InitData::parse(DOC.as_bytes().to_vec()).unwrap();
        let result = aa
            .bind_init_data(InitDataRequest::Toml(initdata))
            .await
            .unwrap();
        assert_eq!(result, InitDataResult::Unsupported);
        assert_eq!(aa.initdata().unwrap().toml(), DOC);
        let result = aa
            .bind_init_data(InitDataRequest::Digest(vec![1; 32]))
            .await
            .unwrap();
        assert_eq!(result, InitDataResult::Unsupported);
    }

    #[tokio::test]
    async fn initdata_mismatch_shows_both_digests() {
        let mut aa = holding(&[0xaa; 48]);
        let err = aa
            .bind_init_data(InitDataRequest::Digest(vec![0xbb; 48]))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AaError::BindInitData {
                tee: Tee::Tdx,
                source: AttesterError::InitDataMismatch { .. }
            }
        ));
        let text = err.to_string();
        assert!(text.contains(&"aa".repeat(48)), "{text}");
        assert!(text.contains(&"bb".repeat(48)), "{text}");
        assert!(aa.initdata().is_none());
    }

    #[tokio::test]
    async fn evidence_errors_name_the_tee() {
        let aa = holding(&[]);
        let err = aa.get_evidence(b"x").await.unwrap_err();
        assert!(matches!(err, AaError::Evidence { tee: Tee::Tdx, .. }));
        assert!(
            err.to_string().starts_with("getting tdx evidence: "),
            "{err}"
        );
    }

    #[test]
    fn version_names_the_attesters() {
        let v = version_text();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(v.contains("sample"), "{v}");
    }
}
