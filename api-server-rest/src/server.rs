//! The HTTP/1 listener: one task per connection, bounded request heads, a header read
//! timeout, and a graceful stop that lets in-flight requests finish.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::net::TcpListener;

use crate::router::Router;

/// Read buffer limit per connection: a request head (request line and headers) that does
/// not fit is refused by hyper (414/431) before it reaches the router. hyper checks it
/// between reads, so the bound is approximate. Generous for runtime data, small enough
/// to bound memory per connection.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Time a client gets to send a complete request head.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for in-flight requests before giving up on them.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, waits up to
/// 10 s (`SHUTDOWN_GRACE`) for open requests and returns.
pub async fn serve(listener: TcpListener, router: Arc<Router>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = Arc::clone(&router);
        let service = service_fn(move |req| {
            let router = Arc::clone(&router);
            async move { Ok::<_, Infallible>(router.handle(peer, req).await) }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_REQUEST_HEAD);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; waiting for open requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {SHUTDOWN_GRACE:?}; closing their connections");
    }
}
