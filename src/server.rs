//! What every latchkey gRPC server has besides its own services: health (Check and
//! Watch) tied to the database, reflection v1 and v1alpha, and a graceful shutdown that
//! drains in-flight calls within a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tonic_reflection::server::{v1, v1alpha};

use crate::db::{DbPool, monitor_health};

/// The health service of one server and the names it reports on.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<&'static str>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

/// The gRPC health service, as mounted on a router.
pub type HealthService =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

impl Health {
    /// A health service that reports on `services` (full gRPC service names) and on the
    /// server as a whole; everything starts NOT_SERVING until the database answers.
    pub async fn new(services: Vec<&'static str>) -> (Self, HealthService) {
        let reporter = HealthReporter::new();
        for service in std::iter::once("").chain(services.iter().copied()) {
            reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        let server = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        (Self { reporter, services }, server)
    }

    /// Follows the database's reachability until aborted.
    pub fn spawn_monitor(&self, pool: DbPool, interval: Duration) -> JoinHandle<()> {
        tokio::spawn(monitor_health(
            pool,
            self.reporter.clone(),
            self.services.clone(),
            interval,
        ))
    }

    /// Reports NOT_SERVING everywhere, so load balancers stop sending work.
    pub async fn stop_serving(&self) {
        for service in std::iter::once("").chain(self.services.iter().copied()) {
            self.reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Server reflection in both protocol versions, so grpcurl and the Python and Node
/// reflection clients all work. Lists `services` (those this server serves) and health.
pub fn reflection(
    services: &[&'static str],
) -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    ServerError,
> {
    let builder = || {
        services.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health"),
            |builder, service| builder.with_service_name(*service),
        )
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// Runs a server until `shutdown` resolves, then lets in-flight calls finish for at most
/// `grace`. `serve` receives the signal to hand to tonic's `serve_with_*_shutdown`.
/// `on_stop` runs as soon as shutdown begins (to report NOT_SERVING, stop workers).
pub async fn serve_with_grace<S, Fut, Stop>(
    serve: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_stop: Stop,
    grace: Duration,
) -> Result<(), ServerError>
where
    S: FnOnce(BoxFuture<'static, ()>) -> Fut,
    Fut: Future<Output = Result<(), tonic::transport::Error>>,
    Stop: Future<Output = ()> + Send + 'static,
{
    let stopping = Arc::new(Notify::new());
    let signal = {
        let stopping = Arc::clone(&stopping);
        Box::pin(async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight calls");
            on_stop.await;
            stopping.notify_one();
        })
    };
    let server = serve(signal);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.map_err(ServerError::from),
        () = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown grace expired; abandoning calls still running");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The connections a server accepts on `listener`, with Nagle's algorithm off: a unary
/// answer is written as headers and data, then trailers, and with Nagle on the trailers
/// wait for the client's delayed ACK (40 ms) before they leave.
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<Connection>> + Send + 'static {
    use futures_util::TryStreamExt;
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map_ok(Connection)
}

/// An accepted connection that does not offer vectored writes. h2 then copies DATA
/// payloads of up to 1 KiB into its write buffer, where with vectored writes it sends
/// any payload over 256 bytes from its own buffer and flushes before the frames after
/// it: every answer of that size cost two writes (headers and data, then trailers), and
/// the answers a batch releases together could not share one.
#[derive(Debug)]
pub struct Connection(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}
