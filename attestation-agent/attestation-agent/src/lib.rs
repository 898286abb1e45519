//! The Attestation Agent: evidence from the platform's attesters, initdata binding, tokens
//! (`kbs`, `coco_as`), and the ttRPC service kata-agent, the confidential data hub and
//! api-server-rest call.
//!
//! The binary (`src/main.rs`) only wires flags, config ([`LoadedConfig`], or
//! [`AaKbcParams`] without a config file), logging and the socket to [`AttestationAgent`]
//! and [`services`].
//!
//! Runtime measurements go to the eventlog (enabled by `[eventlog_config]
//! enable_eventlog`, in [`DEFAULT_EVENTLOG_DIR`]): [`AttestationAgent::init_eventlog`] opens
//! it (and recovers an interrupted measurement),
//! [`AttestationAgent::extend_runtime_measurement`] records [`AaelEvent`]s.
//!
//! Cargo features: `kbs` (GetToken("kbs"), default) and `coco_as` (GetToken("coco_as"),
//! default). A caller whose KBS token was refused asks GetToken for a newer one by sending
//! the ttRPC request metadata `coco-token-refresh: 1` ([`TOKEN_REFRESH_METADATA_KEY`],
//! [`TOKEN_REFRESH_METADATA_VALUE`]).

#![forbid(unsafe_code)]

mod config;
mod eventlog;
mod initdata;
mod kbc_params;
mod service;
mod token;

use std::{path::Path, sync::Arc};

use attester::{
    AttesterError, Detected, DeviceEvidenceError, ExtendedRegister, InitDataResult,
    RuntimeMeasurement, Tee,
};
use tokio::sync::Mutex;
use tracing::{debug, info};
use zeroize::Zeroizing;

/// The agent's configuration document and its sections.
pub use config::{
    AttesterConfig, CocoAsConfig, Config, ConfigError, ConfigFormat, EventlogConfig, KbsConfig,
    LoadedConfig, LogConfig, TeeKeyAlgorithm, TokenConfigs,
};
/// Runtime measurement events and the eventlog's errors and location.
pub use eventlog::{
    AaelEvent, EventError, EventField, EventlogError, WalError, DEFAULT_EVENTLOG_DIR,
};
/// The initdata document, its digest and how the daemon was given it.
pub use initdata::{InitData, InitDataAlgorithm, InitDataError, InitDataRequest};
/// `aa_kbc_params`, the KBS location when there is no config file.
pub use kbc_params::{
    AaKbcParams, KbcParamsError, KbcParamsOrigin, AA_KBC_PARAMS_ENV, DEFAULT_CMDLINE_PATH,
};
/// The ttRPC services serving an agent.
pub use service::services;
/// Why a GetToken("coco_as") failed.
#[cfg(feature = "coco_as")]
pub use token::coco_as::CocoAsError;
/// Token types and the token-refresh request of GetToken.
pub use token::{
    TokenRefresh, TokenType, TOKEN_REFRESH_METADATA_KEY, TOKEN_REFRESH_METADATA_VALUE,
};

use crate::{config::MAX_PCR, eventlog::AaEventlog, initdata::MAX_DIGEST_LEN};

/// The default ttRPC address (kata-agent passes the same explicitly).
pub const DEFAULT_SOCKET: &str =
    "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock";

/// `--version` text: crate version, the attesters and the token plugins compiled in.
pub fn version_text() -> String {
    let attesters: Vec<&str> = attester::compiled_attesters()
        .into_iter()
        .map(Tee::as_str)
        .collect();
    let plugins: Vec<&str> = token::compiled_token_plugins()
        .into_iter()
        .map(TokenType::as_str)
        .collect();
    format!(
        "{} (attesters: {}; token plugins: {})",
        env!("CARGO_PKG_VERSION"),
        attesters.join(", "),
        if plugins.is_empty() {
            "none".to_string()
        } else {
            plugins.join(", ")
        }
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
    #[error(transparent)]
    AdditionalEvidence(#[from] DeviceEvidenceError),
    /// The platform refused or does not hold the initdata digest.
    #[error("binding initdata on {tee}: {source}")]
    BindInitData {
        /// the attester's TEE
        tee: Tee,
        /// the cause (a mismatch shows both digests)
        source: AttesterError,
    },
    /// BindInitData was given no digest or something longer than any digest.
    #[error(
        "the initdata digest is {len} bytes; expected the 32, 48 or 64 bytes of the \
         sha256, sha384 or sha512 digest of the initdata document"
    )]
    InvalidInitDataDigest {
        /// bytes given
        len: usize,
    },
    /// The platform cannot bind initdata in the guest (BindInitData over ttRPC).
    #[error(
        "{tee} cannot bind initdata inside the guest (no register or report field holds \
         it); the initdata digest is not checked here, only by the verifier if at all"
    )]
    InitDataUnsupported {
        /// the attester's TEE
        tee: Tee,
    },
    /// Initdata is already bound to another digest.
    #[error(
        "initdata is already bound on {tee} to {bound_hex}, but the digest given is \
         {given_hex}; the initdata given is not the one this VM runs with"
    )]
    InitDataAlreadyBound {
        /// the attester's TEE
        tee: Tee,
        /// hex of the digest bound
        bound_hex: String,
        /// hex of the digest given
        given_hex: String,
    },
    /// ExtendRuntimeMeasurement was given an invalid event.
    #[error("invalid runtime event: {0}")]
    InvalidEvent(#[from] EventError),
    /// ExtendRuntimeMeasurement named a register that is no PCR.
    #[error("register index {index} is not a PCR; PCR indexes are 0..={MAX_PCR}")]
    InvalidRegisterIndex {
        /// the index given
        index: u64,
    },
    /// The eventlog is enabled in the config but [`AttestationAgent::init_eventlog`] was
    /// not called.
    #[error("the eventlog is enabled but was not opened (call AttestationAgent::init_eventlog)")]
    EventlogNotOpen,
    /// The eventlog could not be opened or could not record an event.
    #[error(transparent)]
    Eventlog(#[from] EventlogError),
    /// GetToken was asked for a token type that does not exist.
    #[error("unknown token type {token_type:?}; token types: kbs, coco_as")]
    UnknownTokenType {
        /// the requested type (at most 64 characters of it)
        token_type: String,
    },
    /// The token plugin was left out of this build.
    #[error(
        "token type `{token_type}` is not compiled into this attestation-agent \
         (it needs the cargo feature `{token_type}`)"
    )]
    TokenPluginNotCompiled {
        /// the plugin
        token_type: TokenType,
    },
    /// The config has no section for the token plugin.
    #[error("token type `{token_type}` is not configured: the attestation-agent config has no [token_configs.{token_type}] section{}",
        match token_type {
            TokenType::Kbs => " (without a config file, the kernel parameter agent.aa_kbc_params=cc_kbc::<KBS URL> sets it)",
            TokenType::CocoAs => "",
        })]
    MissingTokenConfig {
        /// the plugin
        token_type: TokenType,
    },
    /// The KBS gave no token (unreachable, refused the evidence, bad certificate, ...).
    #[cfg(feature = "kbs")]
    #[error("getting a token from the KBS at {url}: {source}")]
    KbsToken {
        /// the KBS URL
        url: String,
        /// the cause
        source: kbs_protocol::Error,
    },
    /// The TEE key could not be exported for the token reply.
    #[cfg(feature = "kbs")]
    #[error("encoding the KBS token reply: {0}")]
    KbsTokenReply(kbs_protocol::KeyError),
    /// The attestation service gave no token.
    #[cfg(feature = "coco_as")]
    #[error(transparent)]
    CocoAsToken(#[from] token::coco_as::CocoAsError),
}

/// What ExtendRuntimeMeasurement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeMeasurementOutcome {
    /// The event was extended into this register and logged.
    Recorded(ExtendedRegister),
    /// The platform has no runtime-measurement registers: nothing was recorded.
    NotSupported,
    /// `[eventlog_config] enable_eventlog` is off: nothing was recorded.
    NotEnabled,
}

/// The agent: configuration, the attesters of this platform, the initdata it was started
/// with, the eventlog, and its token sources (created on first use, so the socket never
/// waits for the network).
pub struct AttestationAgent {
    config: Config,
    attesters: Arc<Detected>,
    initdata: Option<InitData>,
    /// The initdata digest the platform holds, once bound (binding is done once: on
    /// TPM-style platforms it extends a PCR).
    bound_initdata: Mutex<Option<Vec<u8>>>,
    /// Open when `[eventlog_config] enable_eventlog` is on and `init_eventlog` ran.
    eventlog: Option<Mutex<AaEventlog>>,
    #[cfg(feature = "kbs")]
    kbs_tokens: token::kbs::KbsTokens,
    #[cfg(feature = "coco_as")]
    coco_as_tokens: token::coco_as::CocoAsTokens,
}

impl std::fmt::Debug for AttestationAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationAgent")
            .field("primary", &self.get_tee_type())
            .field("additional", &self.get_additional_tees())
            .field("initdata", &self.initdata.is_some())
            .field("eventlog", &self.eventlog.is_some())
            .finish_non_exhaustive()
    }
}

impl AttestationAgent {
    /// An agent for `config` using the `detected` attesters.
    pub fn new(config: Config, detected: Detected) -> Self {
        Self {
            config,
            attesters: Arc::new(detected),
            initdata: None,
            bound_initdata: Mutex::new(None),
            eventlog: None,
            #[cfg(feature = "kbs")]
            kbs_tokens: token::kbs::KbsTokens::default(),
            #[cfg(feature = "coco_as")]
            coco_as_tokens: token::coco_as::CocoAsTokens::default(),
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

    /// Binds the initdata digest with the primary attester (the startup `-t`/`-i` path:
    /// `Unsupported` is a result, not an error). A document is kept for the KBS handshake
    /// once bound (or when the platform cannot bind initdata at all).
    pub async fn bind_init_data(
        &mut self,
        request: InitDataRequest,
    ) -> Result<InitDataResult, AaError> {
        let result = self.bind_digest(&request.digest()).await?;
        if let InitDataRequest::Toml(initdata) = request {
            self.initdata = Some(initdata);
        }
        Ok(result)
    }

    /// BindInitData over ttRPC: succeeds only when the platform holds `digest`. A platform
    /// that cannot bind initdata is an error ([`AaError::InitDataUnsupported`]), and so is
    /// a digest other than one bound before ([`AaError::InitDataAlreadyBound`]).
    pub async fn bind_init_data_digest(&self, digest: &[u8]) -> Result<(), AaError> {
        if digest.is_empty() || digest.len() > MAX_DIGEST_LEN {
            return Err(AaError::InvalidInitDataDigest { len: digest.len() });
        }
        match self.bind_digest(digest).await? {
            InitDataResult::Bound => Ok(()),
            InitDataResult::Unsupported => Err(AaError::InitDataUnsupported {
                tee: self.get_tee_type(),
            }),
        }
    }

    /// Binds `digest` once; the same digest again is bound already, another is refused.
    async fn bind_digest(&self, digest: &[u8]) -> Result<InitDataResult, AaError> {
        let tee = self.get_tee_type();
        let mut bound = self.bound_initdata.lock().await;
        if let Some(bound) = bound.as_deref() {
            return if bound == digest {
                Ok(InitDataResult::Bound)
            } else {
                Err(AaError::InitDataAlreadyBound {
                    tee,
                    bound_hex: hex::encode(bound),
                    given_hex: hex::encode(digest),
                })
            };
        }
        let result = self
            .attesters
            .primary
            .bind_init_data(digest)
            .await
            .map_err(|source| AaError::BindInitData { tee, source })?;
        match result {
            InitDataResult::Bound => {
                info!(%tee, digest = %hex::encode(digest), "initdata bound");
                *bound = Some(digest.to_vec());
            }
            InitDataResult::Unsupported => info!(
                %tee,
                digest = %hex::encode(digest),
                "this TEE cannot bind initdata in the guest; the digest is not checked here"
            ),
        }
        Ok(result)
    }

    /// Opens the eventlog in `dir` (normally [`DEFAULT_EVENTLOG_DIR`]) when
    /// `[eventlog_config] enable_eventlog` is on, finishing a measurement a crash
    /// interrupted; does nothing otherwise.
    pub async fn init_eventlog(&mut self, dir: &Path) -> Result<(), AaError> {
        if !self.config.eventlog_config.enable_eventlog {
            return Ok(());
        }
        let log = AaEventlog::open(dir, self.attesters.primary.as_ref()).await?;
        self.eventlog = Some(Mutex::new(log));
        Ok(())
    }

    /// ExtendRuntimeMeasurement: records `<domain> <operation> <content>` in the register
    /// of PCR `register_index` (absent: `[eventlog_config] init_pcr`, absent too: the
    /// platform's default, [`attester::Attester::default_runtime_pcr`]). `NotEnabled` when
    /// the eventlog is off (checked before anything else), `NotSupported` when the platform
    /// has no runtime-measurement registers.
    pub async fn extend_runtime_measurement(
        &self,
        domain: &str,
        operation: &str,
        content: &str,
        register_index: Option<u64>,
    ) -> Result<RuntimeMeasurementOutcome, AaError> {
        if !self.config.eventlog_config.enable_eventlog {
            return Ok(RuntimeMeasurementOutcome::NotEnabled);
        }
        let event = AaelEvent::new(domain, operation, content)?;
        let pcr = register_index
            .or(self.config.eventlog_config.init_pcr)
            .unwrap_or_else(|| self.attesters.primary.default_runtime_pcr());
        if pcr > MAX_PCR {
            return Err(AaError::InvalidRegisterIndex { index: pcr });
        }
        let eventlog = self.eventlog.as_ref().ok_or(AaError::EventlogNotOpen)?;
        let measured = eventlog
            .lock()
            .await
            .extend(self.attesters.primary.as_ref(), &event, pcr)
            .await?;
        Ok(match measured {
            RuntimeMeasurement::Extended(register) => RuntimeMeasurementOutcome::Recorded(register),
            RuntimeMeasurement::NotSupported => {
                debug!(tee = %self.get_tee_type(), "no runtime-measurement registers");
                RuntimeMeasurementOutcome::NotSupported
            }
        })
    }

    /// Evidence of the primary TEE over `runtime_data`, as JSON bytes.
    pub async fn get_evidence(&self, runtime_data: &[u8]) -> Result<Vec<u8>, AaError> {
        let evidence = self
            .attesters
            .primary
            .get_evidence(runtime_data)
            .await
            .map_err(|source| AaError::Evidence {
                tee: self.get_tee_type(),
                source,
            })?;
        Ok(evidence.to_string().into_bytes())
    }

    /// Evidence of every device, `{"<tee>": <evidence>, ...}` as JSON bytes; empty bytes
    /// when there are no devices.
    pub async fn get_additional_evidence(&self, runtime_data: &[u8]) -> Result<Vec<u8>, AaError> {
        let evidence = self.attesters.additional_evidence(runtime_data).await?;
        Ok(evidence.into_bytes())
    }

    /// The primary TEE's wire name.
    pub fn get_tee_type(&self) -> Tee {
        self.attesters.primary.tee()
    }

    /// The device TEEs' wire names.
    pub fn get_additional_tees(&self) -> Vec<Tee> {
        self.attesters.additional.iter().map(|a| a.tee()).collect()
    }

    /// GetToken: the token of `token_type` (`kbs` or `coco_as`) as the bytes upstream's
    /// agent returns. `kbs` answers from the token cache unless `refresh` is
    /// [`TokenRefresh::Force`]; the reply holds the TEE private key, so it is wiped on drop.
    pub async fn get_token(
        &self,
        token_type: &str,
        refresh: TokenRefresh,
    ) -> Result<Zeroizing<Vec<u8>>, AaError> {
        match token_type.parse()? {
            TokenType::Kbs => self.kbs_token(refresh).await,
            TokenType::CocoAs => self.coco_as_token().await,
        }
    }

    #[cfg(feature = "kbs")]
    async fn kbs_token(&self, refresh: TokenRefresh) -> Result<Zeroizing<Vec<u8>>, AaError> {
        let config = self
            .config
            .token_configs
            .kbs
            .as_ref()
            .ok_or(AaError::MissingTokenConfig {
                token_type: TokenType::Kbs,
            })?;
        self.kbs_tokens
            .token(config, self.initdata.as_ref(), &self.attesters, refresh)
            .await
    }

    #[cfg(not(feature = "kbs"))]
    async fn kbs_token(&self, _refresh: TokenRefresh) -> Result<Zeroizing<Vec<u8>>, AaError> {
        Err(AaError::TokenPluginNotCompiled {
            token_type: TokenType::Kbs,
        })
    }

    #[cfg(feature = "coco_as")]
    async fn coco_as_token(&self) -> Result<Zeroizing<Vec<u8>>, AaError> {
        let config =
            self.config
                .token_configs
                .coco_as
                .as_ref()
                .ok_or(AaError::MissingTokenConfig {
                    token_type: TokenType::CocoAs,
                })?;
        Ok(self.coco_as_tokens.token(config, &self.attesters).await?)
    }

    #[cfg(not(feature = "coco_as"))]
    async fn coco_as_token(&self) -> Result<Zeroizing<Vec<u8>>, AaError> {
        Err(AaError::TokenPluginNotCompiled {
            token_type: TokenType::CocoAs,
        })
    }
}

/// Entry points for the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`): the
/// eventlog and initdata parsers, without the agent around them.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use crate::eventlog::tcg2::{parse_entries, parse_entry, parse_event_log, DigestSizes};

    /// A CC event log as the evidence carries it; whether it parses.
    pub fn ccel_event_log(data: &[u8]) -> bool {
        parse_event_log(data).is_ok()
    }

    /// The TCG2 encodings: a CC event log (Spec ID header and crypto-agile entries), a bare
    /// entry list and one entry. What parses must encode back to the bytes it came from;
    /// panics otherwise.
    pub fn tcg2_round_trips(data: &[u8]) {
        if let Ok(log) = parse_event_log(data) {
            let sizes = log.spec_id.digest_sizes();
            for event in &log.events {
                let encoded = event.encode();
                let (again, len) = parse_entry(&encoded, &sizes).expect("an encoded entry parses");
                assert_eq!(len, encoded.len());
                assert_eq!(again.encode(), encoded);
                let _ = event.aael_event();
            }
        }
        let sizes = DigestSizes::well_known();
        if let Ok(entries) = parse_entries(data, &sizes) {
            let encoded: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
            assert_eq!(encoded, data);
        }
        if let Ok((entry, len)) = parse_entry(data, &sizes) {
            assert_eq!(entry.encode(), &data[..len]);
        }
    }

    /// An initdata digest (base64 or hex text); whether it is accepted.
    pub fn initdata_digest(text: &str) -> bool {
        crate::initdata::decode_digest(text).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attester::{Attester, SampleAttester, SampleDeviceAttester};
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
                refused_by: "test".into(),
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
    fn version_names_the_attesters_and_token_plugins() {
        let v = version_text();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(v.contains("attesters: sample"), "{v}");
        let plugins = match (cfg!(feature = "kbs"), cfg!(feature = "coco_as")) {
            (true, true) => "token plugins: kbs, coco_as)",
            (true, false) => "token plugins: kbs)",
            (false, true) => "token plugins: coco_as)",
            (false, false) => "token plugins: none)",
        };
        assert!(v.ends_with(plugins), "{v}");
    }

    #[tokio::test]
    async fn unknown_token_types_are_refused() {
        let aa = agent(false);
        for bad in ["", "KBS", "sample", "kbs "] {
            let err = aa
                .get_token(bad, TokenRefresh::UseCached)
                .await
                .unwrap_err();
            assert!(
                matches!(err, AaError::UnknownTokenType { ref token_type } if token_type == bad),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn token_types_without_config_or_plugin_say_so() {
        let aa = agent(false);
        for (name, token_type, compiled) in [
            ("kbs", TokenType::Kbs, cfg!(feature = "kbs")),
            ("coco_as", TokenType::CocoAs, cfg!(feature = "coco_as")),
        ] {
            let err = aa.get_token(name, TokenRefresh::Force).await.unwrap_err();
            let text = err.to_string();
            if compiled {
                assert!(
                    matches!(err, AaError::MissingTokenConfig { token_type: t } if t == token_type),
                    "{err}"
                );
                assert!(text.contains(&format!("[token_configs.{name}]")), "{text}");
            } else {
                assert!(
                    matches!(err, AaError::TokenPluginNotCompiled { token_type: t } if t == token_type),
                    "{err}"
                );
                assert!(text.contains(&format!("cargo feature `{name}`")), "{text}");
            }
        }
    }

    mod runtime_measurement {
        use super::*;
        use crate::eventlog::{
            tcg2::{self, DigestSizes},
            test_tee::{MemoryTee, SharedTee},
            EventField, EVENTLOG_FILE_NAME,
        };
        use attester::HashAlgorithm;

        fn config(enabled: bool, init_pcr: u64) -> Config {
            let mut config = Config::default();
            config.eventlog_config.enable_eventlog = enabled;
            config.eventlog_config.init_pcr = Some(init_pcr);
            config
        }

        fn with_tee(config: Config) -> (AttestationAgent, Arc<MemoryTee>) {
            let tee = Arc::new(MemoryTee::new(HashAlgorithm::Sha384, true));
            let agent = AttestationAgent::new(
                config,
                Detected {
                    primary: Box::new(SharedTee(tee.clone())),
                    additional: vec![],
                },
            );
            (agent, tee)
        }

        fn logged(dir: &Path) -> Vec<(u32, String)> {
            let bytes = std::fs::read(dir.join(EVENTLOG_FILE_NAME)).unwrap();
            tcg2::parse_entries(&bytes, &DigestSizes::well_known())
                .unwrap()
                .iter()
                .map(|e| (e.mr_index, e.aael_event().unwrap().to_string()))
                .collect()
        }

        #[tokio::test]
        async fn not_enabled_is_checked_first() {
            let dir = tempfile::tempdir().unwrap();
            let (mut aa, tee) = with_tee(config(false, 17));
            aa.init_eventlog(dir.path()).await.unwrap();
            // nothing is opened or created when the eventlog is off
            assert!(!dir.path().join(EVENTLOG_FILE_NAME).exists());
            for (domain, operation, content, index) in
                [("d", "o", "c", None), ("bad domain", "o", "c\n", Some(99))]
            {
                assert_eq!(
                    aa.extend_runtime_measurement(domain, operation, content, index)
                        .await
                        .unwrap(),
                    RuntimeMeasurementOutcome::NotEnabled
                );
            }
            assert_eq!(tee.extends.load(std::sync::atomic::Ordering::SeqCst), 0);
        }

        #[tokio::test]
        async fn without_init_pcr_the_platform_default_register_is_used() {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config(true, 0);
            config.eventlog_config.init_pcr = None;
            // a platform whose default is PCR 8 (CC MR 3), not the usual 17 (CC MR 4)
            let mut tee = MemoryTee::new(HashAlgorithm::Sha384, true);
            tee.default_pcr = 8;
            let mut aa = AttestationAgent::new(
                config,
                Detected {
                    primary: Box::new(SharedTee(Arc::new(tee))),
                    additional: vec![],
                },
            );
            aa.init_eventlog(dir.path()).await.unwrap();
            let outcome = aa
                .extend_runtime_measurement("d", "o", "default", None)
                .await
                .unwrap();
            let RuntimeMeasurementOutcome::Recorded(register) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(register.register_index, 3);
            assert_eq!(logged(dir.path()), [(3, "d o default".to_string())]);
        }

        #[tokio::test]
        async fn register_index_absent_means_init_pcr_present_means_that_pcr() {
            let dir = tempfile::tempdir().unwrap();
            // init_pcr 8 maps to CC MR 3, PCR 0 and 17 to CC MR 4
            let (mut aa, tee) = with_tee(config(true, 8));
            aa.init_eventlog(dir.path()).await.unwrap();
            let outcome = aa
                .extend_runtime_measurement("d", "o", "default", None)
                .await
                .unwrap();
            let RuntimeMeasurementOutcome::Recorded(register) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(register.register_index, 3);
            aa.extend_runtime_measurement("d", "o", "zero", Some(0))
                .await
                .unwrap();
            aa.extend_runtime_measurement("d", "o", "seventeen", Some(17))
                .await
                .unwrap();
            assert_eq!(
                logged(dir.path()),
                vec![
                    (3, "d o default".to_string()),
                    (4, "d o zero".to_string()),
                    (4, "d o seventeen".to_string())
                ]
            );
            assert_eq!(tee.extends.load(std::sync::atomic::Ordering::SeqCst), 3);
        }

        #[tokio::test]
        async fn invalid_events_and_registers_are_refused() {
            let dir = tempfile::tempdir().unwrap();
            let (mut aa, tee) = with_tee(config(true, 17));
            aa.init_eventlog(dir.path()).await.unwrap();
            let err = aa
                .extend_runtime_measurement("my domain", "o", "c", None)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    AaError::InvalidEvent(EventError::Whitespace {
                        field: EventField::Domain,
                        offset: 2
                    })
                ),
                "{err}"
            );
            let err = aa
                .extend_runtime_measurement("d", "", "c", None)
                .await
                .unwrap_err();
            assert!(
                matches!(err, AaError::InvalidEvent(EventError::Empty { .. })),
                "{err}"
            );
            let err = aa
                .extend_runtime_measurement("d", "o", "a\nb", None)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    AaError::InvalidEvent(EventError::NewlineInContent { offset: 1 })
                ),
                "{err}"
            );
            let err = aa
                .extend_runtime_measurement("d", "o", "c", Some(24))
                .await
                .unwrap_err();
            assert!(
                matches!(err, AaError::InvalidRegisterIndex { index: 24 }),
                "{err}"
            );
            assert!(err.to_string().contains("0..=23"), "{err}");
            assert_eq!(tee.extends.load(std::sync::atomic::Ordering::SeqCst), 0);
            assert!(logged(dir.path()).is_empty());
        }

        #[tokio::test]
        async fn sample_answers_not_supported_and_an_unopened_log_is_an_error() {
            let dir = tempfile::tempdir().unwrap();
            let mut aa = AttestationAgent::new(
                config(true, 17),
                Detected {
                    primary: Box::new(attester::SampleAttester),
                    additional: vec![],
                },
            );
            let err = aa
                .extend_runtime_measurement("d", "o", "c", None)
                .await
                .unwrap_err();
            assert!(matches!(err, AaError::EventlogNotOpen), "{err}");
            aa.init_eventlog(dir.path()).await.unwrap();
            assert_eq!(
                aa.extend_runtime_measurement("d", "o", "c", None)
                    .await
                    .unwrap(),
                RuntimeMeasurementOutcome::NotSupported
            );
            assert!(logged(dir.path()).is_empty());
        }
    }

    mod bind_init_data_digest {
        use super::*;
        use std::sync::atomic::{AtomicUsize, Ordering};

        /// A platform that holds `digest` (when set) and counts bind calls.
        struct Counting {
            digest: Option<Vec<u8>>,
            calls: Arc<AtomicUsize>,
        }

        #[async_trait::async_trait]
        impl Attester for Counting {
            fn tee(&self) -> Tee {
                Tee::Tpm
            }
            async fn get_evidence(&self, _: &[u8]) -> Result<serde_json::Value, AttesterError> {
                Ok(json!({}))
            }
            async fn bind_init_data(&self, digest: &[u8]) -> Result<InitDataResult, AttesterError> {
                self.calls.fetch_add(1, Ordering::SeqCst);
                match &self.digest {
                    None => Ok(InitDataResult::Unsupported),
                    Some(held) if held == digest => Ok(InitDataResult::Bound),
                    Some(held) => Err(AttesterError::InitDataMismatch {
                        tee: Tee::Tpm,
                        platform_hex: hex::encode(held),
                        expected_hex: hex::encode(digest),
                    }),
                }
            }
        }

        fn counting(digest: Option<Vec<u8>>) -> (AttestationAgent, Arc<AtomicUsize>) {
            let calls = Arc::new(AtomicUsize::new(0));
            let aa = AttestationAgent::new(
                Config::default(),
                Detected {
                    primary: Box::new(Counting {
                        digest,
                        calls: calls.clone(),
                    }),
                    additional: vec![],
                },
            );
            (aa, calls)
        }

        #[tokio::test]
        async fn bound_once_then_only_the_same_digest() {
            let (aa, calls) = counting(Some(vec![0x11; 32]));
            aa.bind_init_data_digest(&[0x11; 32]).await.unwrap();
            // the same digest again: bound already, the platform is not asked (a TPM
            // would extend PCR 8 a second time)
            aa.bind_init_data_digest(&[0x11; 32]).await.unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            let err = aa.bind_init_data_digest(&[0x22; 32]).await.unwrap_err();
            assert!(
                matches!(err, AaError::InitDataAlreadyBound { tee: Tee::Tpm, .. }),
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains(&"11".repeat(32)), "{text}");
            assert!(text.contains(&"22".repeat(32)), "{text}");
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }

        #[tokio::test]
        async fn startup_binding_counts_as_bound() {
            let (mut aa, calls) = counting(Some(vec![0x11; 32]));
            aa.bind_init_data(InitDataRequest::Digest(vec![0x11; 32]))
                .await
                .unwrap();
            aa.bind_init_data_digest(&[0x11; 32]).await.unwrap();
            assert!(matches!(
                aa.bind_init_data_digest(&[0x33; 32]).await.unwrap_err(),
                AaError::InitDataAlreadyBound { .. }
            ));
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }

        #[tokio::test]
        async fn mismatch_unsupported_and_malformed() {
            let (aa, _) = counting(Some(vec![0x11; 48]));
            let err = aa.bind_init_data_digest(&[0x22; 48]).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    AaError::BindInitData {
                        source: AttesterError::InitDataMismatch { .. },
                        ..
                    }
                ),
                "{err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&"11".repeat(48)) && text.contains(&"22".repeat(48)),
                "{text}"
            );
            // a mismatch binds nothing: the right digest still binds
            aa.bind_init_data_digest(&[0x11; 48]).await.unwrap();

            let (aa, calls) = counting(None);
            let err = aa.bind_init_data_digest(&[1; 32]).await.unwrap_err();
            assert!(
                matches!(err, AaError::InitDataUnsupported { tee: Tee::Tpm }),
                "{err}"
            );
            // unsupported binds nothing either: asked again, the platform answers again
            aa.bind_init_data_digest(&[2; 32]).await.unwrap_err();
            assert_eq!(calls.load(Ordering::SeqCst), 2);
            for len in [0, 65, 1000] {
                let err = aa.bind_init_data_digest(&vec![1; len]).await.unwrap_err();
                assert!(
                    matches!(err, AaError::InvalidInitDataDigest { len: l } if l == len),
                    "{err}"
                );
            }
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        }
    }
}
