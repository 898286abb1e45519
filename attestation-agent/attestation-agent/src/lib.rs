//! The Attestation Agent: evidence from the platform's attesters, initdata binding, tokens
//! (`kbs`, `coco_as`), and the ttRPC service kata-agent, the confidential data hub and
//! api-server-rest call.
//!
//! The binary (`src/main.rs`) only wires flags, config, logging and the socket to
//! [`AttestationAgent`] and [`service::services`].
//!
//! Cargo features: `kbs` (GetToken("kbs"), default) and `coco_as` (GetToken("coco_as"),
//! default). A caller whose KBS token was refused asks GetToken for a newer one by sending
//! the ttRPC request metadata `coco-token-refresh: 1` ([`TOKEN_REFRESH_METADATA_KEY`],
//! [`TOKEN_REFRESH_METADATA_VALUE`]).

#![forbid(unsafe_code)]

pub mod config;
pub mod initdata;
pub mod kbc_params;
pub mod service;
mod structured;
pub mod token;

use std::sync::Arc;

use attester::{AttesterError, Detected, DeviceEvidenceError, InitDataResult, Tee};
use tracing::info;
use zeroize::Zeroizing;

pub use token::{
    TokenRefresh, TokenType, TOKEN_REFRESH_METADATA_KEY, TOKEN_REFRESH_METADATA_VALUE,
};

use crate::{config::Config, initdata::InitData, initdata::InitDataRequest};

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

/// The agent: configuration, the attesters of this platform, the initdata it was started
/// with, and its token sources (created on first use, so the socket never waits for the
/// network).
pub struct AttestationAgent {
    config: Config,
    attesters: Arc<Detected>,
    initdata: Option<InitData>,
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

    /// Binds the initdata digest with the primary attester. A document is kept for the KBS
    /// handshake once bound (or when the platform cannot bind initdata at all).
    pub async fn bind_init_data(
        &mut self,
        request: InitDataRequest,
    ) -> Result<InitDataResult, AaError> {
        let digest = request.digest();
        let tee = self.get_tee_type();
        let result = self
            .attesters
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
}
