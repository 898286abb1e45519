//! The `grpc` transport (`keyprovider.KeyProviderService` as containers/ocicrypt and
//! coco-keyprovider speak it) and a gRPC server backed by a [`KeyProviderHandler`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{handle_request, KeyProviderHandler};

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unused_qualifications
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/keyprovider.rs"));
}

use generated::key_provider_service_client::KeyProviderServiceClient;
use generated::key_provider_service_server::{KeyProviderService, KeyProviderServiceServer};
use generated::{KeyProviderKeyWrapProtocolInput, KeyProviderKeyWrapProtocolOutput};

/// `host:port` becomes `http://host:port`, as upstream does.
fn endpoint(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

pub(super) async fn call(
    addr: &str,
    request: &[u8],
    wrap: bool,
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(endpoint(addr))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let mut client = KeyProviderServiceClient::new(channel);
    let req = KeyProviderKeyWrapProtocolInput {
        key_provider_key_wrap_protocol_input: request.to_vec(),
    };
    let response = if wrap {
        client.wrap_key(req).await
    } else {
        client.un_wrap_key(req).await
    }
    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    Ok(Zeroizing::new(
        response.into_inner().key_provider_key_wrap_protocol_output,
    ))
}

/// A gRPC `keyprovider.KeyProviderService` backed by a [`KeyProviderHandler`].
#[derive(Debug, Clone)]
pub struct GrpcKeyProviderService {
    handler: Arc<dyn KeyProviderHandler>,
}

impl GrpcKeyProviderService {
    /// Serves `handler`.
    pub fn new(handler: Arc<dyn KeyProviderHandler>) -> Self {
        GrpcKeyProviderService { handler }
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(
                KeyProviderServiceServer::new(self),
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            )
            .await
    }

    async fn answer(
        &self,
        request: tonic::Request<KeyProviderKeyWrapProtocolInput>,
    ) -> Result<tonic::Response<KeyProviderKeyWrapProtocolOutput>, tonic::Status> {
        let input = request.into_inner().key_provider_key_wrap_protocol_input;
        match handle_request(self.handler.as_ref(), &input).await {
            Ok(out) => Ok(tonic::Response::new(KeyProviderKeyWrapProtocolOutput {
                key_provider_key_wrap_protocol_output: out.to_vec(),
            })),
            Err(e) => {
                tracing::warn!(error = %e, "keyprovider request failed");
                Err(tonic::Status::internal(e.to_string()))
            }
        }
    }
}

#[tonic::async_trait]
impl KeyProviderService for GrpcKeyProviderService {
    async fn wrap_key(
        &self,
        request: tonic::Request<KeyProviderKeyWrapProtocolInput>,
    ) -> Result<tonic::Response<KeyProviderKeyWrapProtocolOutput>, tonic::Status> {
        self.answer(request).await
    }

    async fn un_wrap_key(
        &self,
        request: tonic::Request<KeyProviderKeyWrapProtocolInput>,
    ) -> Result<tonic::Response<KeyProviderKeyWrapProtocolOutput>, tonic::Status> {
        self.answer(request).await
    }
}
