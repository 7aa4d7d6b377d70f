//! The Kubernetes client: kube's defaults plus a deadline on every request that is not a
//! watch.
//!
//! kube sets no read timeout (`kube::Config::read_timeout` is `None`, so that long-lived
//! streams are not cut), and a request whose connection stops answering without being
//! closed (a network partition, a node gone) would wait for the kernel to give up on the
//! TCP connection, a quarter of an hour, holding one of the few reconcile workers all that
//! time. A connection that is closed or refused fails at once and needs none of this (as
//! in the control-plane restart test). Watches are exempt: they are meant to stay open for
//! minutes, and kube-runtime's watcher gives up on one that stays silent past its idle
//! timeout itself.

use futures::future::BoxFuture;
use http::{Request, Response};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{BoxError, Layer, Service};

/// How long a request that is not a watch may wait for the API server's response (its
/// headers; the body of a list follows them at once).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client from `config` whose requests other than watches fail after `timeout`.
pub fn client(config: kube::Config, timeout: Duration) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&RequestTimeout(timeout))
        .build())
}

/// Fails a request that is not a watch with [`TimedOut`] after its duration.
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeout(pub Duration);

impl<S> Layer<S> for RequestTimeout {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            timeout: self.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Timed<S> {
    inner: S,
    timeout: Duration,
}

/// The API server did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("the Kubernetes API server did not answer within {0:?}")]
pub struct TimedOut(Duration);

/// Whether the request is a watch (`?watch=true` or `?watch=1`), which stays open.
fn is_watch<B>(req: &Request<B>) -> bool {
    req.uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

impl<S, B, R> Service<Request<B>> for Timed<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<R>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let timeout = (!is_watch(&req)).then_some(self.timeout);
        let response = self.inner.call(req);
        Box::pin(async move {
            match timeout {
                None => response.await.map_err(Into::into),
                Some(t) => match tokio::time::timeout(t, response).await {
                    Ok(r) => r.map_err(Into::into),
                    Err(_) => Err(TimedOut(t).into()),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A server that never answers.
    #[derive(Clone)]
    struct Silent;

    impl Service<Request<()>> for Silent {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<Response<()>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            Box::pin(std::future::pending())
        }
    }

    fn get(uri: &str) -> Request<()> {
        Request::get(uri).body(()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_request_fails_after_the_timeout_but_a_watch_stays_open() {
        let t = Duration::from_millis(50);
        let mut svc = RequestTimeout(t).layer(Silent);
        let err = svc
            .call(get("/apis/iam.kubeop.dev/v1alpha1/namespaces/a/iamusers/u"))
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the Kubernetes API server did not answer within 50ms")
        );
        for watch in [
            "/apis/iam.kubeop.dev/v1alpha1/iamusers?watch=true&resourceVersion=1",
            "/api/v1/namespaces?allowWatchBookmarks=true&watch=1",
        ] {
            let open = tokio::time::timeout(10 * t, svc.call(get(watch))).await;
            assert!(open.is_err(), "{watch} was cut");
        }
    }
}
