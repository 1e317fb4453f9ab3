//! A service mounted before it can be built. A server binds its port and answers health
//! (NOT_SERVING) and reflection at once, while what its own service needs (the database,
//! a stored key) is still being waited for. A call to the service meanwhile waits a
//! little for it ([`Deferred::ready`]), then is refused, which clients retry, instead of
//! hanging on a port nothing reads: as a gRPC service, with `UNAVAILABLE`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::SetOnce;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::{Service, ServiceExt};

use crate::error::ApiError;

/// A service that answers once [`Deferred::set`] has given it what serves it; calls made
/// before wait up to `patience` for that.
pub struct Deferred<S> {
    inner: Arc<SetOnce<S>>,
    /// How long a call waits for the service before it is refused.
    patience: Duration,
    /// The `ErrorInfo` domain of the refusal: the server's name.
    domain: &'static str,
}

impl<S> Clone for Deferred<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            patience: self.patience,
            domain: self.domain,
        }
    }
}

impl<S> std::fmt::Debug for Deferred<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("ready", &self.inner.get().is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Deferred<S> {
    pub fn new(domain: &'static str, patience: Duration) -> Self {
        Self {
            inner: Arc::new(SetOnce::new()),
            patience,
            domain,
        }
    }

    /// Starts serving with `service`. Only the first call counts; it returns whether
    /// this was it.
    pub fn set(&self, service: S) -> bool {
        self.inner.set(service).is_ok()
    }

    /// What serves, once set; waits up to `patience` for it, `None` if it did not come.
    pub async fn ready(&self) -> Option<&S> {
        match self.inner.get() {
            Some(service) => Some(service),
            None => tokio::time::timeout(self.patience, self.inner.wait())
                .await
                .ok(),
        }
    }
}

impl<S: NamedService> NamedService for Deferred<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Deferred<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is the inner service's, awaited per call below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Some(service) = self.inner.get() {
            return Box::pin(service.clone().oneshot(request));
        }
        let this = self.clone();
        Box::pin(async move {
            match this.ready().await {
                Some(service) => service.clone().oneshot(request).await,
                None => {
                    let status = ApiError::unavailable(
                        "STARTING",
                        "the service is starting: it waits for its database",
                    )
                    .into_status(this.domain);
                    Ok(status.into_http())
                }
            }
        })
    }
}
