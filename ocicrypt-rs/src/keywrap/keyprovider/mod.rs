//! The `provider.<name>` key wrapper: the ocicrypt keyprovider protocol (spec 7.2, 5.5).
//!
//! The wrapper sends a JSON request (`{"op":"keywrap"|"keyunwrap",…}`) to a key provider
//! and gets back the wrapped annotation or the unwrapped private options. Transports:
//! `cmd` (stdin/stdout), `grpc` and `ttrpc` (`keyprovider.KeyProviderService`), and
//! [`KeyProviderTransport::InProcess`], a [`KeyProviderHandler`] called directly, so the
//! Confidential Data Hub can unwrap without calling its own socket.
//!
//! Providers are configured by the JSON file named by `OCICRYPT_KEYPROVIDER_CONFIG`
//! (`{"key-providers":{"<name>":{"cmd":{"path","args"}}|{"grpc":"host:port"}|{"ttrpc":"unix://…"}|{"native":"…"}}}`),
//! read by [`OcicryptConfig::from_env`] — the only place this crate reads that variable —
//! or by [`OcicryptConfig::from_file`] with a path the caller chose.
//!
//! The server side is here too: [`handle_request`] answers one protocol message with a
//! [`KeyProviderHandler`]; the ttRPC and gRPC service adapters use it.

mod annotation_packet;
#[cfg(feature = "keywrap-keyprovider-cmd")]
mod cmd;
#[cfg(feature = "keywrap-keyprovider-grpc")]
mod grpc;
#[cfg(feature = "keywrap-keyprovider-ttrpc")]
mod ttrpc;

/// CoCo's annotation packet: a layer key wrapped by a KBS-held key.
pub use annotation_packet::{AnnotationPacket, KekKeyProvider, PacketError, WrapType};
/// The gRPC `keyprovider.KeyProviderService` server adapter.
#[cfg(feature = "keywrap-keyprovider-grpc")]
pub use grpc::GrpcKeyProviderService;
/// The ttRPC `keyprovider.KeyProviderService` server adapter.
#[cfg(feature = "keywrap-keyprovider-ttrpc")]
pub use ttrpc::TtrpcKeyProviderService;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

pub use crate::bytes::Bytes;
use crate::bytes::{b64_opt, int_array_opt};

/// The environment variable naming the keyprovider config file.
pub const OCICRYPT_KEYPROVIDER_CONFIG: &str = "OCICRYPT_KEYPROVIDER_CONFIG";
/// `op` of a wrap request.
pub const OP_KEY_WRAP: &str = "keywrap";
/// `op` of an unwrap request.
pub const OP_KEY_UNWRAP: &str = "keyunwrap";
/// Per-call timeout of the transports (what upstream uses).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(50);
/// Largest protocol message or config file accepted.
pub const MAX_MESSAGE_LEN: usize = 4 * 1024 * 1024;

/// Why a keyprovider call or its configuration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProviderError {
    /// The config file cannot be read.
    #[error("keyprovider config {path}: {reason}")]
    Config {
        /// the file (or `<inline>`)
        path: String,
        /// what is wrong
        reason: String,
    },
    /// The provider named by an annotation is not configured.
    #[error("key provider `{0}` is not configured")]
    UnknownProvider(String),
    /// A `native` provider without an in-process handler.
    #[error(
        "key provider `{0}` is configured `native` but no in-process handler was registered for it"
    )]
    NoInProcessHandler(String),
    /// A protocol message does not parse or lacks a field.
    #[error("keyprovider protocol: {0}")]
    Protocol(String),
    /// The transport failed (spawn, connect, RPC status, timeout).
    #[error("keyprovider `{provider}` over {transport}: {reason}")]
    Transport {
        /// provider name
        provider: String,
        /// `cmd`, `grpc`, `ttrpc`
        transport: &'static str,
        /// what happened
        reason: String,
    },
    /// The handler refused or failed (server side, or in process).
    #[error("key provider handler: {0}")]
    Handler(String),
    /// An annotation packet is malformed or does not open.
    #[error(transparent)]
    Packet(#[from] annotation_packet::PacketError),
}

/// `EncryptConfig` as Go's ocicrypt serializes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptConfigJson {
    /// parameters per scheme / provider name
    #[serde(rename = "Parameters", default, deserialize_with = "null_as_default")]
    pub parameters: BTreeMap<String, Vec<Bytes>>,
    /// the decrypt config embedded in the encrypt config
    #[serde(
        rename = "DecryptConfig",
        default,
        deserialize_with = "null_as_default"
    )]
    pub decrypt_config: DecryptConfigJson,
}

/// `DecryptConfig` as Go's ocicrypt serializes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptConfigJson {
    /// parameters per scheme / provider name
    #[serde(rename = "Parameters", default, deserialize_with = "null_as_default")]
    pub parameters: BTreeMap<String, Vec<Bytes>>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `keywrapparams`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct KeyWrapParams {
    /// the encrypt config (parameters for the provider)
    #[serde(default)]
    pub ec: Option<EncryptConfigJson>,
    /// the private layer options to wrap
    #[serde(with = "b64_opt", default)]
    pub optsdata: Option<Vec<u8>>,
}

impl std::fmt::Debug for KeyWrapParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWrapParams")
            .field("ec", &self.ec)
            .field("optsdata", &self.optsdata.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Drop for KeyWrapParams {
    fn drop(&mut self) {
        if let Some(data) = &mut self.optsdata {
            data.zeroize();
        }
    }
}

/// `keyunwrapparams`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyUnwrapParams {
    /// the decrypt config (parameters for the provider)
    #[serde(default)]
    pub dc: Option<DecryptConfigJson>,
    /// the annotation bytes (the base64-decoded layer annotation value)
    #[serde(with = "b64_opt", default)]
    pub annotation: Option<Vec<u8>>,
}

/// The request of the keyprovider protocol.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyProviderKeyWrapProtocolInput {
    /// `keywrap` or `keyunwrap`
    #[serde(rename = "op")]
    pub operation: String,
    /// wrap parameters (always present, as Go writes and CDH requires)
    #[serde(rename = "keywrapparams", default)]
    pub key_wrap_params: KeyWrapParams,
    /// unwrap parameters
    #[serde(rename = "keyunwrapparams", default)]
    pub key_unwrap_params: KeyUnwrapParams,
}

/// `keywrapresults`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyWrapResults {
    /// the annotation bytes to base64 into the layer annotation
    #[serde(with = "int_array_opt", default)]
    pub annotation: Option<Vec<u8>>,
}

/// `keyunwrapresults`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct KeyUnwrapResults {
    /// the unwrapped private layer options
    #[serde(with = "int_array_opt", default)]
    pub optsdata: Option<Vec<u8>>,
}

impl std::fmt::Debug for KeyUnwrapResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyUnwrapResults")
            .field("optsdata", &self.optsdata.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Drop for KeyUnwrapResults {
    fn drop(&mut self) {
        if let Some(data) = &mut self.optsdata {
            data.zeroize();
        }
    }
}

/// The response of the keyprovider protocol. Byte fields are written as integer arrays
/// (what upstream's Rust peers read; Go reads both) and read in either form.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyProviderKeyWrapProtocolOutput {
    /// wrap results
    #[serde(rename = "keywrapresults", default)]
    pub key_wrap_results: KeyWrapResults,
    /// unwrap results
    #[serde(rename = "keyunwrapresults", default)]
    pub key_unwrap_results: KeyUnwrapResults,
}

fn protocol(what: &str) -> impl FnOnce(serde_json::Error) -> KeyProviderError + '_ {
    move |e| KeyProviderError::Protocol(format!("{what}: {e}"))
}

impl KeyProviderKeyWrapProtocolInput {
    /// Parses a request.
    pub fn from_json(data: &[u8]) -> Result<Self, KeyProviderError> {
        check_len(data)?;
        crate::bytes::from_json_object(data).map_err(protocol("request"))
    }

    /// Serializes a request.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        serde_json::to_writer(&mut *out, self).map_err(protocol("request"))?;
        Ok(out)
    }
}

impl KeyProviderKeyWrapProtocolOutput {
    /// Parses a response.
    pub fn from_json(data: &[u8]) -> Result<Self, KeyProviderError> {
        check_len(data)?;
        crate::bytes::from_json_object(data).map_err(protocol("response"))
    }

    /// Serializes a response.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        serde_json::to_writer(&mut *out, self).map_err(protocol("response"))?;
        Ok(out)
    }
}

fn check_len(data: &[u8]) -> Result<(), KeyProviderError> {
    if data.len() > MAX_MESSAGE_LEN {
        return Err(KeyProviderError::Protocol(format!(
            "message of {} bytes exceeds {MAX_MESSAGE_LEN}",
            data.len()
        )));
    }
    Ok(())
}

/// A wrap request as a handler sees it.
pub struct KeyWrapRequest {
    /// `ec.Parameters`: per provider name, the parameters given at encryption
    pub parameters: BTreeMap<String, Vec<Vec<u8>>>,
    /// the private layer options to wrap
    pub optsdata: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyWrapRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWrapRequest")
            .field("parameters", &self.parameters.keys().collect::<Vec<_>>())
            .field("optsdata", &"<redacted>")
            .finish()
    }
}

/// An unwrap request as a handler sees it.
#[derive(Debug)]
pub struct KeyUnwrapRequest {
    /// `dc.Parameters`
    pub parameters: BTreeMap<String, Vec<Vec<u8>>>,
    /// the annotation bytes the provider wrote when wrapping
    pub annotation: Vec<u8>,
}

/// A key provider implementation: the in-process hook, and what the servers call.
#[async_trait::async_trait]
pub trait KeyProviderHandler: Send + Sync + std::fmt::Debug {
    /// Wraps the private options; returns the annotation bytes.
    async fn wrap_key(&self, request: KeyWrapRequest) -> Result<Vec<u8>, KeyProviderError>;

    /// Unwraps an annotation; returns the private options.
    async fn unwrap_key(
        &self,
        request: KeyUnwrapRequest,
    ) -> Result<Zeroizing<Vec<u8>>, KeyProviderError>;
}

fn params(map: &BTreeMap<String, Vec<Bytes>>) -> BTreeMap<String, Vec<Vec<u8>>> {
    map.iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|b| b.0.clone()).collect()))
        .collect()
}

/// Answers one keyprovider protocol request with `handler` (server side).
pub async fn handle_request(
    handler: &dyn KeyProviderHandler,
    input: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
    let mut request = KeyProviderKeyWrapProtocolInput::from_json(input)?;
    let mut output = KeyProviderKeyWrapProtocolOutput::default();
    match request.operation.as_str() {
        OP_KEY_WRAP => {
            let optsdata = request
                .key_wrap_params
                .optsdata
                .take()
                .filter(|d| !d.is_empty())
                .ok_or_else(|| KeyProviderError::Protocol("keywrap without optsdata".into()))?;
            let parameters = request
                .key_wrap_params
                .ec
                .as_ref()
                .map(|ec| params(&ec.parameters))
                .unwrap_or_default();
            let annotation = handler
                .wrap_key(KeyWrapRequest {
                    parameters,
                    optsdata: Zeroizing::new(optsdata),
                })
                .await?;
            output.key_wrap_results.annotation = Some(annotation);
        }
        OP_KEY_UNWRAP => {
            let annotation = request
                .key_unwrap_params
                .annotation
                .take()
                .filter(|d| !d.is_empty())
                .ok_or_else(|| KeyProviderError::Protocol("keyunwrap without annotation".into()))?;
            let parameters = request
                .key_unwrap_params
                .dc
                .as_ref()
                .map(|dc| params(&dc.parameters))
                .unwrap_or_default();
            let optsdata = handler
                .unwrap_key(KeyUnwrapRequest {
                    parameters,
                    annotation,
                })
                .await?;
            output.key_unwrap_results.optsdata = Some(optsdata.to_vec());
        }
        other => {
            return Err(KeyProviderError::Protocol(format!(
                "unknown op `{}`",
                other.chars().take(64).collect::<String>()
            )))
        }
    }
    output.to_json()
}

/// `cmd` transport settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandConfig {
    /// executable
    pub path: String,
    /// arguments
    #[serde(default)]
    pub args: Option<Vec<String>>,
}

/// One provider's entry of the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProviderAttrs {
    /// stdin/stdout command
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<CommandConfig>,
    /// gRPC `host:port` (or `http://host:port`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    /// ttRPC `unix:///path`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttrpc: Option<String>,
    /// in-process provider: the handler must be registered by the program
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<String>,
}

/// The `OCICRYPT_KEYPROVIDER_CONFIG` file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcicryptConfig {
    /// providers by name
    #[serde(rename = "key-providers", default)]
    pub key_providers: BTreeMap<String, KeyProviderAttrs>,
}

fn valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl OcicryptConfig {
    /// Parses and validates a config document; `origin` names it in errors.
    pub fn parse(data: &[u8], origin: &str) -> Result<Self, KeyProviderError> {
        let bad = |reason: String| KeyProviderError::Config {
            path: origin.to_string(),
            reason,
        };
        if data.len() > MAX_MESSAGE_LEN {
            return Err(bad(format!("{} bytes is too large", data.len())));
        }
        let value: serde_json::Value =
            serde_json::from_slice(data).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        let config: OcicryptConfig = serde_json::from_value(value)
            .map_err(|e| bad(format!("not of the expected shape: {e}")))?;
        for (name, attrs) in &config.key_providers {
            if !valid_provider_name(name) {
                return Err(bad(format!(
                    "provider name `{name}` has characters outside [A-Za-z0-9._-]"
                )));
            }
            if attrs.cmd.as_ref().is_some_and(|c| c.path.is_empty()) {
                return Err(bad(format!("provider `{name}`: empty cmd path")));
            }
            if attrs.grpc.as_deref() == Some("") || attrs.ttrpc.as_deref() == Some("") {
                return Err(bad(format!("provider `{name}`: empty address")));
            }
            if *attrs == KeyProviderAttrs::default() {
                return Err(bad(format!(
                    "provider `{name}` has no cmd, grpc, ttrpc or native entry"
                )));
            }
        }
        Ok(config)
    }

    /// Reads the config file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, KeyProviderError> {
        let data = std::fs::read(path).map_err(|e| KeyProviderError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&data, &path.display().to_string())
    }

    /// Reads the file named by `OCICRYPT_KEYPROVIDER_CONFIG`; `None` when the variable is
    /// unset or empty. This is the only place the crate reads the environment.
    pub fn from_env() -> Result<Option<Self>, KeyProviderError> {
        match std::env::var_os(OCICRYPT_KEYPROVIDER_CONFIG) {
            Some(path) if !path.is_empty() => Self::from_file(Path::new(&path)).map(Some),
            _ => Ok(None),
        }
    }

    /// One key wrapper per configured provider. A handler in `in_process` replaces the
    /// configured transport of the provider with its name (and is required for `native`).
    pub fn key_wrappers(
        &self,
        in_process: &BTreeMap<String, Arc<dyn KeyProviderHandler>>,
    ) -> Result<Vec<KeyProviderKeyWrapper>, KeyProviderError> {
        let mut out = Vec::new();
        for (name, attrs) in &self.key_providers {
            let transport = match in_process.get(name) {
                Some(handler) => KeyProviderTransport::InProcess(handler.clone()),
                None => KeyProviderTransport::from_attrs(name, attrs)?,
            };
            out.push(KeyProviderKeyWrapper::new(name, transport)?);
        }
        for (name, handler) in in_process {
            if !self.key_providers.contains_key(name) {
                out.push(KeyProviderKeyWrapper::new(
                    name,
                    KeyProviderTransport::InProcess(handler.clone()),
                )?);
            }
        }
        Ok(out)
    }
}

/// How a provider is reached.
#[derive(Clone, Debug)]
pub enum KeyProviderTransport {
    /// a command speaking JSON on stdin/stdout
    #[cfg(feature = "keywrap-keyprovider-cmd")]
    Cmd(CommandConfig),
    /// gRPC `keyprovider.KeyProviderService` at `host:port` or `http://host:port`
    #[cfg(feature = "keywrap-keyprovider-grpc")]
    Grpc(String),
    /// ttRPC `keyprovider.KeyProviderService` at `unix:///path`
    #[cfg(feature = "keywrap-keyprovider-ttrpc")]
    Ttrpc(String),
    /// a handler in this process
    InProcess(Arc<dyn KeyProviderHandler>),
}

impl KeyProviderTransport {
    /// The transport of a config entry, with upstream's precedence cmd > grpc > ttrpc;
    /// an entry only this build cannot serve is an error naming the missing feature.
    pub fn from_attrs(name: &str, attrs: &KeyProviderAttrs) -> Result<Self, KeyProviderError> {
        #[cfg(not(all(
            feature = "keywrap-keyprovider-cmd",
            feature = "keywrap-keyprovider-grpc",
            feature = "keywrap-keyprovider-ttrpc"
        )))]
        let missing = |transport: &str| {
            KeyProviderError::Config {
            path: format!("provider `{name}`"),
            reason: format!("transport `{transport}` is not compiled in (cargo feature keywrap-keyprovider-{transport})"),
        }
        };
        if let Some(cmd) = &attrs.cmd {
            #[cfg(feature = "keywrap-keyprovider-cmd")]
            return Ok(KeyProviderTransport::Cmd(cmd.clone()));
            #[cfg(not(feature = "keywrap-keyprovider-cmd"))]
            {
                let _ = cmd;
                return Err(missing("cmd"));
            }
        }
        if let Some(addr) = &attrs.grpc {
            #[cfg(feature = "keywrap-keyprovider-grpc")]
            return Ok(KeyProviderTransport::Grpc(addr.clone()));
            #[cfg(not(feature = "keywrap-keyprovider-grpc"))]
            {
                let _ = addr;
                return Err(missing("grpc"));
            }
        }
        if let Some(addr) = &attrs.ttrpc {
            #[cfg(feature = "keywrap-keyprovider-ttrpc")]
            return Ok(KeyProviderTransport::Ttrpc(addr.clone()));
            #[cfg(not(feature = "keywrap-keyprovider-ttrpc"))]
            {
                let _ = addr;
                return Err(missing("ttrpc"));
            }
        }
        Err(KeyProviderError::NoInProcessHandler(name.to_string()))
    }

    fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "keywrap-keyprovider-cmd")]
            KeyProviderTransport::Cmd(_) => "cmd",
            #[cfg(feature = "keywrap-keyprovider-grpc")]
            KeyProviderTransport::Grpc(_) => "grpc",
            #[cfg(feature = "keywrap-keyprovider-ttrpc")]
            KeyProviderTransport::Ttrpc(_) => "ttrpc",
            KeyProviderTransport::InProcess(_) => "in-process",
        }
    }
}

/// The `provider.<name>` key wrapper.
#[derive(Clone, Debug)]
pub struct KeyProviderKeyWrapper {
    name: String,
    scheme: String,
    transport: KeyProviderTransport,
    wrap_params: Option<Vec<Vec<u8>>>,
    unwrap_params: Vec<Vec<u8>>,
    timeout: Duration,
}

impl KeyProviderKeyWrapper {
    /// A wrapper for provider `name` (annotation `…keys.provider.<name>`) that unwraps;
    /// call [`Self::with_wrap_params`] to make it wrap too.
    pub fn new(name: &str, transport: KeyProviderTransport) -> Result<Self, KeyProviderError> {
        if !valid_provider_name(name) {
            return Err(KeyProviderError::Config {
                path: "<provider name>".into(),
                reason: format!("`{name}` has characters outside [A-Za-z0-9._-]"),
            });
        }
        Ok(KeyProviderKeyWrapper {
            name: name.to_string(),
            scheme: format!("provider.{name}"),
            transport,
            wrap_params: None,
            unwrap_params: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Wraps layer keys with this provider, passing `params` (`ec.Parameters[<name>]`;
    /// what follows `provider:<name>:` on skopeo's command line).
    pub fn with_wrap_params(mut self, params: Vec<Vec<u8>>) -> Self {
        self.wrap_params = Some(params);
        self
    }

    /// Parameters sent as `dc.Parameters[<name>]` when unwrapping.
    pub fn with_unwrap_params(mut self, params: Vec<Vec<u8>>) -> Self {
        self.unwrap_params = params;
        self
    }

    /// Per-call timeout (default 50 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn call(
        &self,
        input: &KeyProviderKeyWrapProtocolInput,
        wrap: bool,
    ) -> Result<KeyProviderKeyWrapProtocolOutput, KeyProviderError> {
        let transport_err = |reason: String| KeyProviderError::Transport {
            provider: self.name.clone(),
            transport: self.transport.name(),
            reason,
        };
        let request = input.to_json()?;
        // `wrap` picks the RPC method; the cmd and in-process transports send `op` only.
        let _ = wrap;
        let response: Zeroizing<Vec<u8>> = match &self.transport {
            KeyProviderTransport::InProcess(handler) => {
                tokio::time::timeout(self.timeout, handle_request(handler.as_ref(), &request))
                    .await
                    .map_err(|_| transport_err(format!("no answer within {:?}", self.timeout)))??
            }
            #[cfg(feature = "keywrap-keyprovider-cmd")]
            KeyProviderTransport::Cmd(cmd) => cmd::call(cmd, &request, self.timeout)
                .await
                .map_err(transport_err)?,
            #[cfg(feature = "keywrap-keyprovider-grpc")]
            KeyProviderTransport::Grpc(addr) => grpc::call(addr, &request, wrap, self.timeout)
                .await
                .map_err(transport_err)?,
            #[cfg(feature = "keywrap-keyprovider-ttrpc")]
            KeyProviderTransport::Ttrpc(addr) => ttrpc::call(addr, &request, wrap, self.timeout)
                .await
                .map_err(transport_err)?,
        };
        KeyProviderKeyWrapProtocolOutput::from_json(&response)
    }
}

#[async_trait::async_trait]
impl super::KeyWrapper for KeyProviderKeyWrapper {
    fn scheme(&self) -> &str {
        &self.scheme
    }

    fn can_wrap(&self) -> bool {
        self.wrap_params.is_some()
    }

    fn can_unwrap(&self) -> bool {
        true
    }

    async fn wrap_keys(&self, opts_data: &[u8]) -> crate::Result<Vec<u8>> {
        let mut ec = EncryptConfigJson::default();
        ec.parameters.insert(
            self.name.clone(),
            self.wrap_params
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(Bytes)
                .collect(),
        );
        let input = KeyProviderKeyWrapProtocolInput {
            operation: OP_KEY_WRAP.into(),
            key_wrap_params: KeyWrapParams {
                ec: Some(ec),
                optsdata: Some(opts_data.to_vec()),
            },
            key_unwrap_params: KeyUnwrapParams::default(),
        };
        let mut output = self.call(&input, true).await?;
        Ok(output
            .key_wrap_results
            .annotation
            .take()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                KeyProviderError::Protocol(format!(
                    "provider `{}` returned no annotation",
                    self.name
                ))
            })?)
    }

    async fn unwrap_key(&self, packet: &[u8]) -> crate::Result<Zeroizing<Vec<u8>>> {
        let mut dc = DecryptConfigJson::default();
        if !self.unwrap_params.is_empty() {
            dc.parameters.insert(
                self.name.clone(),
                self.unwrap_params.iter().cloned().map(Bytes).collect(),
            );
        }
        let input = KeyProviderKeyWrapProtocolInput {
            operation: OP_KEY_UNWRAP.into(),
            key_wrap_params: KeyWrapParams::default(),
            key_unwrap_params: KeyUnwrapParams {
                dc: Some(dc),
                annotation: Some(packet.to_vec()),
            },
        };
        let mut output = self.call(&input, false).await?;
        Ok(output
            .key_unwrap_results
            .optsdata
            .take()
            .filter(|d| !d.is_empty())
            .map(Zeroizing::new)
            .ok_or_else(|| {
                KeyProviderError::Protocol(format!("provider `{}` returned no optsdata", self.name))
            })?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_are_what_go_ocicrypt_writes() {
        let mut dc = DecryptConfigJson::default();
        dc.parameters
            .insert("attestation-agent".into(), vec![Bytes(b"x".to_vec())]);
        let input = KeyProviderKeyWrapProtocolInput {
            operation: OP_KEY_UNWRAP.into(),
            key_wrap_params: KeyWrapParams::default(),
            key_unwrap_params: KeyUnwrapParams {
                dc: Some(dc),
                annotation: Some(b"{}".to_vec()),
            },
        };
        assert_eq!(
            String::from_utf8(input.to_json().unwrap().to_vec()).unwrap(),
            r#"{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":{"Parameters":{"attestation-agent":["eA=="]}},"annotation":"e30="}}"#
        );
    }

    #[test]
    fn responses_read_both_byte_forms_and_write_integer_arrays() {
        let a = KeyProviderKeyWrapProtocolOutput::from_json(
            br#"{"keyunwrapresults":{"optsdata":[123,125]}}"#,
        )
        .unwrap();
        let b = KeyProviderKeyWrapProtocolOutput::from_json(
            br#"{"keywrapresults":{"annotation":null},"keyunwrapresults":{"optsdata":"e30="}}"#,
        )
        .unwrap();
        assert_eq!(a.key_unwrap_results.optsdata.as_deref(), Some(&b"{}"[..]));
        assert_eq!(b.key_unwrap_results.optsdata.as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            String::from_utf8(a.to_json().unwrap().to_vec()).unwrap(),
            r#"{"keywrapresults":{"annotation":null},"keyunwrapresults":{"optsdata":[123,125]}}"#
        );
        for bad in [
            &br#"{"keyunwrapresults":{"optsdata":[300]}}"#[..],
            br#"{"keyunwrapresults":{"optsdata":{}}}"#,
            b"[",
            b"\"x\"",
        ] {
            assert!(matches!(
                KeyProviderKeyWrapProtocolOutput::from_json(bad),
                Err(KeyProviderError::Protocol(_))
            ));
        }
        let huge = vec![b' '; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            KeyProviderKeyWrapProtocolInput::from_json(&huge),
            Err(KeyProviderError::Protocol(_))
        ));
    }

    #[test]
    fn config_parses_and_rejects_malformed_files() {
        let c = OcicryptConfig::parse(
            br#"{"key-providers":{"attestation-agent":{"ttrpc":"unix:///run/cdh.sock"},"kp":{"cmd":{"path":"/bin/kp","args":["-x"]},"grpc":"127.0.0.1:1"}},"other":1}"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.key_providers.len(), 2);
        assert_eq!(
            c.key_providers["kp"].cmd.as_ref().unwrap().args.as_deref(),
            Some(&["-x".to_string()][..])
        );
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"key-providers":[]}"#,
            br#"{"key-providers":{"a":{}}}"#,
            br#"{"key-providers":{"a":{"cmd":{"path":""}}}}"#,
            br#"{"key-providers":{"a":{"grpc":""}}}"#,
            br#"{"key-providers":{"a":{"grpc":5}}}"#,
            br#"{"key-providers":{"../x":{"grpc":"h:1"}}}"#,
            br#"{"key-providers":{"a":{"cmd":"/bin/x"}}}"#,
        ] {
            assert!(
                matches!(
                    OcicryptConfig::parse(bad, "t"),
                    Err(KeyProviderError::Config { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            OcicryptConfig::from_file(Path::new("/nonexistent/ocicrypt.json")),
            Err(KeyProviderError::Config { .. })
        ));
        let native = OcicryptConfig::parse(
            br#"{"key-providers":{"n":{"native":"attestation-agent"}}}"#,
            "t",
        )
        .unwrap();
        assert!(matches!(
            native.key_wrappers(&BTreeMap::new()),
            Err(KeyProviderError::NoInProcessHandler(_))
        ));
    }
}
