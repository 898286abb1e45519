//! Thin ttRPC clients of the confidential data hub ([`CdhClient`]) and of the attestation
//! agent ([`AaClient`]): one method per RPC, a per-call timeout, and errors that carry the
//! server's status code and message. The `cdh-tool` and `aa-client` binaries are their
//! command lines.

use std::{collections::HashMap, time::Duration};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use protos::{
    api, api_ttrpc, attestation_agent as aa, attestation_agent_ttrpc as aa_ttrpc, keyprovider,
    keyprovider_ttrpc,
};
use serde::Deserialize;
use ttrpc::r#async::Client;
use zeroize::Zeroizing;

/// The CDH socket kata-agent uses.
pub const DEFAULT_CDH_SOCKET: &str = crate::config::DEFAULT_SOCKET;
/// The attestation agent's socket.
pub const DEFAULT_AA_SOCKET: &str = crate::config::DEFAULT_AA_SOCKET;
/// Per-call limit unless the caller says otherwise (upstream's client timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(50);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// the address
        addr: String,
        /// the cause
        source: ttrpc::Error,
    },
    /// The server answered with an error status.
    #[error("{method} failed with {code:?}: {message}")]
    Status {
        /// the RPC
        method: &'static str,
        /// the status code
        code: ttrpc::Code,
        /// the server's message
        message: String,
    },
    /// The call failed on the connection.
    #[error("{method} failed on the connection: {source}")]
    Transport {
        /// the RPC
        method: &'static str,
        /// the cause
        source: ttrpc::Error,
    },
    /// No answer in time.
    #[error("{method} got no answer within {timeout:?}")]
    Timeout {
        /// the RPC
        method: &'static str,
        /// the limit
        timeout: Duration,
    },
    /// The answer does not have the expected shape.
    #[error("{method} answered something unexpected: {reason}")]
    BadAnswer {
        /// the RPC
        method: &'static str,
        /// what is wrong
        reason: String,
    },
}

impl ClientError {
    /// The server's status code, if the server answered with one.
    pub fn code(&self) -> Option<ttrpc::Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

async fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
    let connect_err = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    tokio::time::timeout(timeout, Client::connect(addr))
        .await
        .map_err(|_| connect_err(ttrpc::Error::Others("connect timed out".into())))?
        .map_err(connect_err)
}

fn context(timeout: Duration) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX))
}

/// Runs one call with `timeout` and turns its failure into a [`ClientError`].
async fn call<T>(
    method: &'static str,
    timeout: Duration,
    future: impl std::future::Future<Output = ttrpc::Result<T>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, future).await {
        Err(_) => Err(ClientError::Timeout { method, timeout }),
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(ttrpc::Error::RpcStatus(status))) => Err(ClientError::Status {
            method,
            code: status.code(),
            message: status.message().to_string(),
        }),
        Ok(Err(source)) => Err(ClientError::Transport { method, source }),
    }
}

/// A keyprovider `keyunwrap` request for an annotation packet (the base64-decoded layer
/// annotation), as ocicrypt writes it.
pub fn unwrap_request_for_packet(packet: &[u8]) -> Vec<u8> {
    serde_json::json!({
        "op": "keyunwrap",
        "keywrapparams": {"ec": null, "optsdata": null},
        "keyunwrapparams": {"dc": null, "annotation": STANDARD.encode(packet)},
    })
    .to_string()
    .into_bytes()
}

#[derive(Deserialize)]
struct UnwrapAnswer {
    keyunwrapresults: UnwrapAnswerResults,
}

#[derive(Deserialize)]
struct UnwrapAnswerResults {
    optsdata: Vec<u8>,
}

/// The private layer options in an `UnWrapKey` answer
/// (`{"keyunwrapresults":{"optsdata":[…]}}`).
pub fn optsdata_of_unwrap_answer(answer: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    serde_json::from_slice::<UnwrapAnswer>(answer)
        .map(|a| Zeroizing::new(a.keyunwrapresults.optsdata))
        .map_err(|e| ClientError::BadAnswer {
            method: "UnWrapKey",
            reason: e.to_string(),
        })
}

/// A client of the confidential data hub.
#[derive(Clone)]
pub struct CdhClient {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for CdhClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdhClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CdhClient {
    /// Connects to the hub at `addr` (`unix:///…`); `timeout` bounds the connection and
    /// each call.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            client: connect(addr, timeout).await?,
            timeout,
        })
    }

    /// `GetResource`: the resource named by a `kbs://` URI.
    pub async fn get_resource(&self, uri: &str) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let client = api_ttrpc::GetResourceServiceClient::new(self.client.clone());
        let req = api::GetResourceRequest {
            ResourcePath: uri.to_string(),
            ..Default::default()
        };
        let mut answer = call(
            "GetResource",
            self.timeout,
            client.get_resource(context(self.timeout), &req),
        )
        .await?;
        Ok(Zeroizing::new(std::mem::take(&mut answer.Resource)))
    }

    /// `UnsealSecret`: the plaintext of a sealed secret.
    pub async fn unseal_secret(&self, secret: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let client = api_ttrpc::SealedSecretServiceClient::new(self.client.clone());
        let req = api::UnsealSecretInput {
            secret: secret.to_vec(),
            ..Default::default()
        };
        let mut answer = call(
            "UnsealSecret",
            self.timeout,
            client.unseal_secret(context(self.timeout), &req),
        )
        .await?;
        Ok(Zeroizing::new(std::mem::take(&mut answer.plaintext)))
    }

    /// `KeyProviderService.UnWrapKey`: the keyprovider answer to a keyprovider request.
    pub async fn unwrap_key(&self, request: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let client = keyprovider_ttrpc::KeyProviderServiceClient::new(self.client.clone());
        let req = keyprovider::KeyProviderKeyWrapProtocolInput {
            KeyProviderKeyWrapProtocolInput: request.to_vec(),
            ..Default::default()
        };
        let mut answer = call(
            "UnWrapKey",
            self.timeout,
            client.un_wrap_key(context(self.timeout), &req),
        )
        .await?;
        Ok(Zeroizing::new(std::mem::take(
            &mut answer.KeyProviderKeyWrapProtocolOutput,
        )))
    }

    /// `KeyProviderService.WrapKey` (the hub refuses it; here for completeness of the tool).
    pub async fn wrap_key(&self, request: &[u8]) -> Result<Vec<u8>, ClientError> {
        let client = keyprovider_ttrpc::KeyProviderServiceClient::new(self.client.clone());
        let req = keyprovider::KeyProviderKeyWrapProtocolInput {
            KeyProviderKeyWrapProtocolInput: request.to_vec(),
            ..Default::default()
        };
        call(
            "WrapKey",
            self.timeout,
            client.wrap_key(context(self.timeout), &req),
        )
        .await
        .map(|answer| answer.KeyProviderKeyWrapProtocolOutput)
    }

    /// `PullImage`: pulls `image_url` into `bundle_path`; the manifest digest.
    pub async fn pull_image(
        &self,
        image_url: &str,
        bundle_path: &str,
    ) -> Result<String, ClientError> {
        let client = api_ttrpc::ImagePullServiceClient::new(self.client.clone());
        let req = api::ImagePullRequest {
            image_url: image_url.to_string(),
            bundle_path: bundle_path.to_string(),
            ..Default::default()
        };
        call(
            "PullImage",
            self.timeout,
            client.pull_image(context(self.timeout), &req),
        )
        .await
        .map(|answer| answer.manifest_digest)
    }

    /// `SecureMount`.
    pub async fn secure_mount(
        &self,
        volume_type: &str,
        options: HashMap<String, String>,
        flags: Vec<String>,
        mount_point: &str,
    ) -> Result<(), ClientError> {
        let client = api_ttrpc::SecureMountServiceClient::new(self.client.clone());
        let req = api::SecureMountRequest {
            volume_type: volume_type.to_string(),
            options,
            flags,
            mount_point: mount_point.to_string(),
            ..Default::default()
        };
        call(
            "SecureMount",
            self.timeout,
            client.secure_mount(context(self.timeout), &req),
        )
        .await
        .map(|_| ())
    }
}

/// The outcome of `ExtendRuntimeMeasurement`.
pub use aa::RuntimeMeasurementResult;

/// A client of the attestation agent.
#[derive(Clone)]
pub struct AaClient {
    client: aa_ttrpc::AttestationAgentServiceClient,
    timeout: Duration,
}

impl std::fmt::Debug for AaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AaClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AaClient {
    /// Connects to the attestation agent at `addr` (`unix:///…`).
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            client: aa_ttrpc::AttestationAgentServiceClient::new(connect(addr, timeout).await?),
            timeout,
        })
    }

    /// `GetEvidence` for `runtime_data`.
    pub async fn get_evidence(&self, runtime_data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let req = aa::GetEvidenceRequest {
            RuntimeData: runtime_data.to_vec(),
            ..Default::default()
        };
        call(
            "GetEvidence",
            self.timeout,
            self.client.get_evidence(context(self.timeout), &req),
        )
        .await
        .map(|answer| answer.Evidence)
    }

    /// `GetAdditionalEvidence` for `runtime_data`.
    pub async fn get_additional_evidence(
        &self,
        runtime_data: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let req = aa::GetAdditionalEvidenceRequest {
            RuntimeData: runtime_data.to_vec(),
            ..Default::default()
        };
        call(
            "GetAdditionalEvidence",
            self.timeout,
            self.client
                .get_additional_evidence(context(self.timeout), &req),
        )
        .await
        .map(|answer| answer.Evidence)
    }

    /// `GetToken` of `token_type` (`kbs`, `coco_as`).
    pub async fn get_token(&self, token_type: &str) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let req = aa::GetTokenRequest {
            TokenType: token_type.to_string(),
            ..Default::default()
        };
        let mut answer = call(
            "GetToken",
            self.timeout,
            self.client.get_token(context(self.timeout), &req),
        )
        .await?;
        Ok(Zeroizing::new(std::mem::take(&mut answer.Token)))
    }

    /// `ExtendRuntimeMeasurement`; `register_index` `None` means AA's configured default.
    pub async fn extend_runtime_measurement(
        &self,
        domain: &str,
        operation: &str,
        content: &str,
        register_index: Option<u64>,
    ) -> Result<RuntimeMeasurementResult, ClientError> {
        let req = aa::ExtendRuntimeMeasurementRequest {
            Domain: domain.to_string(),
            Operation: operation.to_string(),
            Content: content.to_string(),
            RegisterIndex: register_index,
            ..Default::default()
        };
        let answer = call(
            "ExtendRuntimeMeasurement",
            self.timeout,
            self.client
                .extend_runtime_measurement(context(self.timeout), &req),
        )
        .await?;
        answer
            .Result
            .enum_value()
            .map_err(|unknown| ClientError::BadAnswer {
                method: "ExtendRuntimeMeasurement",
                reason: format!("unknown result {unknown}"),
            })
    }

    /// `BindInitData` with the initdata digest.
    pub async fn bind_init_data(&self, digest: &[u8]) -> Result<(), ClientError> {
        let req = aa::BindInitDataRequest {
            Digest: digest.to_vec(),
            ..Default::default()
        };
        call(
            "BindInitData",
            self.timeout,
            self.client.bind_init_data(context(self.timeout), &req),
        )
        .await
        .map(|_| ())
    }

    /// `GetTeeType`.
    pub async fn get_tee_type(&self) -> Result<String, ClientError> {
        call(
            "GetTeeType",
            self.timeout,
            self.client
                .get_tee_type(context(self.timeout), &aa::GetTeeTypeRequest::default()),
        )
        .await
        .map(|answer| answer.tee)
    }

    /// `GetAdditionalTees`.
    pub async fn get_additional_tees(&self) -> Result<Vec<String>, ClientError> {
        call(
            "GetAdditionalTees",
            self.timeout,
            self.client.get_additional_tees(
                context(self.timeout),
                &aa::GetAdditionalTeesRequest::default(),
            ),
        )
        .await
        .map(|answer| answer.additional_tees)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_requests_are_what_ocicrypt_sends() {
        let request = unwrap_request_for_packet(br#"{"kid":"k"}"#);
        let parsed =
            ocicrypt_rs::keywrap::keyprovider::KeyProviderKeyWrapProtocolInput::from_json(&request)
                .unwrap();
        assert_eq!(parsed.operation, "keyunwrap");
        assert_eq!(
            parsed.key_unwrap_params.annotation.as_deref(),
            Some(&br#"{"kid":"k"}"#[..])
        );
        let value: serde_json::Value = serde_json::from_slice(&request).unwrap();
        assert_eq!(value["keyunwrapparams"]["annotation"], "eyJraWQiOiJrIn0=");
        assert!(value["keywrapparams"].is_object());
    }

    #[test]
    fn unwrap_answers_are_integer_arrays() {
        assert_eq!(
            optsdata_of_unwrap_answer(br#"{"keyunwrapresults":{"optsdata":[123,125]}}"#)
                .unwrap()
                .as_slice(),
            b"{}"
        );
        for bad in [
            &b"{}"[..],
            b"[]",
            br#"{"keyunwrapresults":{"optsdata":"e30="}}"#,
        ] {
            assert!(matches!(
                optsdata_of_unwrap_answer(bad),
                Err(ClientError::BadAnswer { .. })
            ));
        }
    }
}
