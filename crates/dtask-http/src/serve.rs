//! Serving a router on a listener, with the connection-level bounds axum's
//! own `serve` does not set: a time limit on reading a request's head (a
//! slowloris client that trickles its headers is disconnected) and a bound
//! on HTTP/2 header lists; graceful shutdown on a signal.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// The connection-level settings of [`serve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long a client may take to send a request's whole head (request
    /// line and headers) on HTTP/1, from the connection or the previous
    /// response (default 10 s). Slower clients are disconnected.
    pub header_read_timeout: Duration,
    /// The largest HTTP/2 header list, in bytes (default 32 KiB).
    pub max_http2_header_bytes: u32,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_http2_header_bytes: 32 * 1024,
        }
    }
}

/// Serves `router` on `listener` (HTTP/1.1 with upgrades, and HTTP/2) until
/// `shutdown` completes, then stops accepting and waits for open
/// connections to finish.
///
/// ```no_run
/// # async fn run(router: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
/// dtask_http::serve(listener, router, dtask_http::ServeOptions::default(), ctrl_c).await
/// # }
/// ```
///
/// # Errors
/// Never for a failed connection (it is logged and dropped); only if the
/// listener itself fails in a way retrying cannot cure.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(options.max_http2_header_bytes);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_transient(&error) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(error) => return Err(error),
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Whether an `accept` error concerns one connection or the process's
/// resources, not the listener.
fn is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
    ) || error.raw_os_error().is_some_and(|code| matches!(code, 23 | 24)) // ENFILE, EMFILE
}
