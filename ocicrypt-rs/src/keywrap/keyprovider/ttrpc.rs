//! The `ttrpc` transport (`/keyprovider.KeyProviderService/{WrapKey,UnWrapKey}` over a unix
//! socket) and a ttRPC service that answers it with a [`KeyProviderHandler`].

use std::sync::Arc;
use std::time::Duration;

use protos::keyprovider::{KeyProviderKeyWrapProtocolInput, KeyProviderKeyWrapProtocolOutput};
use protos::keyprovider_ttrpc::{
    create_key_provider_service, KeyProviderService, KeyProviderServiceClient,
};
use zeroize::{Zeroize, Zeroizing};

use super::{handle_request, KeyProviderHandler};

pub(super) async fn call(
    addr: &str,
    request: &[u8],
    wrap: bool,
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let connect = ttrpc::r#async::Client::connect(addr);
    let client = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let client = KeyProviderServiceClient::new(client);
    let mut req = KeyProviderKeyWrapProtocolInput {
        KeyProviderKeyWrapProtocolInput: request.to_vec(),
        ..Default::default()
    };
    let nanos = i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX);
    let ctx = ttrpc::context::with_timeout(nanos);
    let result = if wrap {
        client.wrap_key(ctx, &req).await
    } else {
        client.un_wrap_key(ctx, &req).await
    };
    // The request of a wrap carries the layer key.
    req.KeyProviderKeyWrapProtocolInput.zeroize();
    let mut response = result.map_err(|e| e.to_string())?;
    Ok(Zeroizing::new(std::mem::take(
        &mut response.KeyProviderKeyWrapProtocolOutput,
    )))
}

/// A ttRPC `keyprovider.KeyProviderService` backed by a [`KeyProviderHandler`].
#[derive(Debug, Clone)]
pub struct TtrpcKeyProviderService {
    handler: Arc<dyn KeyProviderHandler>,
}

impl TtrpcKeyProviderService {
    /// Serves `handler`.
    pub fn new(handler: Arc<dyn KeyProviderHandler>) -> Self {
        TtrpcKeyProviderService { handler }
    }

    /// The service map for `protos::server::start`.
    pub fn into_service(self) -> std::collections::HashMap<String, ttrpc::r#async::Service> {
        create_key_provider_service(Arc::new(self))
    }

    async fn answer(
        &self,
        req: KeyProviderKeyWrapProtocolInput,
    ) -> ttrpc::Result<KeyProviderKeyWrapProtocolOutput> {
        match handle_request(self.handler.as_ref(), &req.KeyProviderKeyWrapProtocolInput).await {
            Ok(out) => Ok(KeyProviderKeyWrapProtocolOutput {
                KeyProviderKeyWrapProtocolOutput: out.to_vec(),
                ..Default::default()
            }),
            Err(e) => {
                tracing::warn!(error = %e, "keyprovider request failed");
                Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    ttrpc::Code::INTERNAL,
                    e.to_string(),
                )))
            }
        }
    }
}

#[async_trait::async_trait]
impl KeyProviderService for TtrpcKeyProviderService {
    async fn wrap_key(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        req: KeyProviderKeyWrapProtocolInput,
    ) -> ttrpc::Result<KeyProviderKeyWrapProtocolOutput> {
        self.answer(req).await
    }

    async fn un_wrap_key(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        req: KeyProviderKeyWrapProtocolInput,
    ) -> ttrpc::Result<KeyProviderKeyWrapProtocolOutput> {
        self.answer(req).await
    }
}
