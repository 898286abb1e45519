//! ttRPC clients of the confidential data hub ([`CdhClient`]) and of the attestation
//! agent ([`AaClient`], the suite's one typed agent client from `protos`): one method per
//! RPC, a per-call timeout, one reconnect for calls that may be repeated, and errors that
//! carry the server's status code and message. The `cdh-tool` and `aa-client` binaries are
//! their command lines.

use std::{collections::HashMap, time::Duration};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use protos::{api, api_ttrpc, keyprovider, keyprovider_ttrpc, Connection};
use serde::Deserialize;
use zeroize::Zeroizing;

/// The outcome of `ExtendRuntimeMeasurement`.
pub(crate) use protos::attestation_agent::RuntimeMeasurementResult;
pub use protos::AaClient;
/// Why a call failed.
pub use protos::CallError as ClientError;

/// The CDH socket kata-agent uses.
pub const DEFAULT_CDH_SOCKET: &str = crate::config::DEFAULT_SOCKET;
/// The attestation agent's socket.
pub const DEFAULT_AA_SOCKET: &str = crate::config::DEFAULT_AA_SOCKET;
/// Per-call limit unless the caller says otherwise (upstream's client timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(50);

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

/// A client of the confidential data hub; clones share the connection.
#[derive(Debug, Clone)]
pub struct CdhClient {
    connection: Connection,
    timeout: Duration,
}

impl CdhClient {
    /// Connects to the hub at `addr` (`unix:///…`); `timeout` bounds the connection and
    /// each call.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        let connection = Connection::new(addr);
        connection.connect(timeout).await?;
        Ok(Self {
            connection,
            timeout,
        })
    }

    /// `GetResource`: the resource named by a `kbs://` URI.
    pub async fn get_resource(&self, uri: &str) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let req = api::GetResourceRequest {
            ResourcePath: uri.to_string(),
            ..Default::default()
        };
        let mut answer = self
            .connection
            .call("GetResource", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    api_ttrpc::GetResourceServiceClient::new(client)
                        .get_resource(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(Zeroizing::new(std::mem::take(&mut answer.Resource)))
    }

    /// `UnsealSecret`: the plaintext of a sealed secret.
    pub async fn unseal_secret(&self, secret: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let req = api::UnsealSecretInput {
            secret: secret.to_vec(),
            ..Default::default()
        };
        let mut answer = self
            .connection
            .call("UnsealSecret", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    api_ttrpc::SealedSecretServiceClient::new(client)
                        .unseal_secret(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(Zeroizing::new(std::mem::take(&mut answer.plaintext)))
    }

    /// `KeyProviderService.UnWrapKey`: the keyprovider answer to a keyprovider request.
    pub async fn unwrap_key(&self, request: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let req = keyprovider::KeyProviderKeyWrapProtocolInput {
            KeyProviderKeyWrapProtocolInput: request.to_vec(),
            ..Default::default()
        };
        let mut answer = self
            .connection
            .call("UnWrapKey", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    keyprovider_ttrpc::KeyProviderServiceClient::new(client)
                        .un_wrap_key(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(Zeroizing::new(std::mem::take(
            &mut answer.KeyProviderKeyWrapProtocolOutput,
        )))
    }

    /// `KeyProviderService.WrapKey` (the hub refuses it; here for completeness of the tool).
    pub async fn wrap_key(&self, request: &[u8]) -> Result<Vec<u8>, ClientError> {
        let req = keyprovider::KeyProviderKeyWrapProtocolInput {
            KeyProviderKeyWrapProtocolInput: request.to_vec(),
            ..Default::default()
        };
        self.connection
            .call("WrapKey", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    keyprovider_ttrpc::KeyProviderServiceClient::new(client)
                        .wrap_key(ctx, req)
                        .await
                }
            })
            .await
            .map(|answer| answer.KeyProviderKeyWrapProtocolOutput)
    }

    /// `PullImage`: pulls `image_url` into `bundle_path`; the manifest digest. Sent at most
    /// once: a pull writes the bundle and is measured.
    pub async fn pull_image(
        &self,
        image_url: &str,
        bundle_path: &str,
    ) -> Result<String, ClientError> {
        let req = api::ImagePullRequest {
            image_url: image_url.to_string(),
            bundle_path: bundle_path.to_string(),
            ..Default::default()
        };
        self.connection
            .call_once("PullImage", self.timeout, |client, ctx| async move {
                api_ttrpc::ImagePullServiceClient::new(client)
                    .pull_image(ctx, &req)
                    .await
            })
            .await
            .map(|answer| answer.manifest_digest)
    }

    /// `SecureMount`, sent at most once (it mounts).
    pub async fn secure_mount(
        &self,
        volume_type: &str,
        options: HashMap<String, String>,
        flags: Vec<String>,
        mount_point: &str,
    ) -> Result<(), ClientError> {
        let req = api::SecureMountRequest {
            volume_type: volume_type.to_string(),
            options,
            flags,
            mount_point: mount_point.to_string(),
            ..Default::default()
        };
        self.connection
            .call_once("SecureMount", self.timeout, |client, ctx| async move {
                api_ttrpc::SecureMountServiceClient::new(client)
                    .secure_mount(ctx, &req)
                    .await
            })
            .await
            .map(|_| ())
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
