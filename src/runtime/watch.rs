//! Watch streams that resume promptly once the API server is back.
//!
//! kube-runtime's `Controller` merges its trigger streams (its own watch and every
//! `watches`/`owns` stream) behind ONE backoff (client-go's 800 ms doubling to 30 s): an
//! error from any of them pauses all of them, and errors from different streams one after
//! the other keep doubling it. After a control-plane restart each watch of a controller
//! reports its failed reconnects and then a 410 Gone for its stale resourceVersion, in
//! turn; the user controller has five watches, so its triggers stayed paused for about
//! 30 s per watch, and the first change made after a restart was reconciled only after
//! 3 minutes (measured; see `tests/disruption.rs`).
//!
//! So every watch here backs off on its own ([`WatchBackoff`]), its errors are logged and
//! stop here (the controller's shared backoff never sees one), and a 410 Gone — the API
//! server answering, only the resourceVersion being too old — restarts the backoff, so the
//! relist it calls for follows at once instead of after the delay grown during the outage.

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

/// Exponential backoff with jitter for one watch: 800 ms doubling to 10 s (client-go starts
/// at 800 ms too, but caps at 30 s). A lower cap bounds how long a watch lags behind an API
/// server that came back to about 10 s; a retry is one cheap request, so even the
/// operator's dozen watches retrying every 10 s during an outage are a negligible load.
#[derive(Debug)]
pub struct WatchBackoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(800),
            max: Duration::from_secs(10),
            failures: 0,
        }
    }
}

impl WatchBackoff {
    /// The delay after `e`: a 410 Gone restarts the backoff first.
    fn after(&mut self, e: &watcher::Error) -> Duration {
        if gone(e) {
            self.reset();
        }
        self.next().unwrap_or(self.max)
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self
            .min
            .saturating_mul(2u32.saturating_pow(self.failures.min(16)))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        // Up to 25 % more, so that watches failing together do not retry in lockstep.
        let jitter = rand::random::<u64>() % (base.as_millis() as u64 / 4 + 1);
        Some(base + Duration::from_millis(jitter))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Whether the API server answered that the watch's resourceVersion is too old: it is up,
/// and the watcher relists on its next poll.
fn gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// `stream` (a watcher's events) with its own backoff after each error, reset by any event
/// and by a 410 Gone; errors are logged and never passed on.
pub fn resilient<T, S>(
    stream: S,
    watch: String,
    backoff: WatchBackoff,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send + 'static
where
    T: Send + 'static,
    S: Stream<Item = Result<T, watcher::Error>> + Send + 'static,
{
    let state = (stream.boxed(), backoff, watch);
    futures::stream::unfold(state, |(mut stream, mut backoff, watch)| async move {
        loop {
            match stream.next().await? {
                Ok(event) => {
                    backoff.reset();
                    return Some((Ok(event), (stream, backoff, watch)));
                }
                Err(e) => {
                    let delay = backoff.after(&e);
                    // A 410 is routine (the server's watch window moved on); only a
                    // failure to reach or watch the API server is a warning.
                    if gone(&e) {
                        tracing::info!(%watch, error = %e, retry_in = ?delay, "watch expired; relisting");
                    } else {
                        tracing::warn!(%watch, error = %e, retry_in = ?delay, "watch failed");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    })
}

/// A watcher on `api` with [`resilient`] error handling, named by its kind for the logs.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    resilient(watcher(api, config), kind, WatchBackoff::default())
}

/// `Controller::watches` with a [`watch`] instead of kube-runtime's bare watcher.
pub trait ResilientWatches<K: Resource> {
    fn watches_resilient<Other, I>(
        self,
        api: Api<Other>,
        config: watcher::Config,
        mapper: impl Fn(Other) -> I + Sync + Send + 'static,
    ) -> Self
    where
        Other: Clone + Resource + DeserializeOwned + Debug + Send + 'static,
        Other::DynamicType: Default + Debug + Clone,
        I: 'static + IntoIterator<Item = ObjectRef<K>>,
        I::IntoIter: Send;
}

impl<K> ResilientWatches<K> for Controller<K>
where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn watches_resilient<Other, I>(
        self,
        api: Api<Other>,
        config: watcher::Config,
        mapper: impl Fn(Other) -> I + Sync + Send + 'static,
    ) -> Self
    where
        Other: Clone + Resource + DeserializeOwned + Debug + Send + 'static,
        Other::DynamicType: Default + Debug + Clone,
        I: 'static + IntoIterator<Item = ObjectRef<K>>,
        I::IntoIter: Send,
    {
        self.watches_stream(watch(api, config).touched_objects(), mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_backoff_doubles_from_800ms_to_10s_and_resets() {
        let mut b = WatchBackoff::default();
        let delays: Vec<Duration> = (0..8).filter_map(|_| b.next()).collect();
        let base = [800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000];
        for (d, ms) in delays.iter().zip(base) {
            let ms = Duration::from_millis(ms);
            assert!(*d >= ms && *d <= ms + ms / 4, "{delays:?}");
        }
        b.reset();
        assert!(b.next().is_some_and(|d| d < Duration::from_secs(1)));
    }

    fn status(code: u16) -> kube::core::Status {
        kube::core::Status::failure("too old resource version", "Expired").with_code(code)
    }

    #[test]
    fn only_410_is_gone() {
        assert!(gone(&watcher::Error::WatchError(status(410).boxed())));
        assert!(!gone(&watcher::Error::WatchError(status(500).boxed())));
        let api = |code| kube::Error::Api(status(code).boxed());
        assert!(gone(&watcher::Error::WatchFailed(api(410))));
        assert!(!gone(&watcher::Error::InitialListFailed(api(503))));
    }

    #[test]
    fn a_410_gone_restarts_the_backoff_grown_during_an_outage() {
        let failed = watcher::Error::WatchError(status(503).boxed());
        let gone = watcher::Error::WatchError(status(410).boxed());
        let mut b = WatchBackoff::default();
        for _ in 0..6 {
            b.after(&failed);
        }
        assert!(b.after(&failed) >= Duration::from_secs(10));
        assert!(b.after(&gone) < Duration::from_secs(1));
        assert!(b.after(&failed) < Duration::from_secs(2));
    }

    /// Errors stop in the stream (after their delay); events pass.
    #[tokio::test]
    async fn errors_are_logged_and_swallowed() {
        let failed = || Err(watcher::Error::WatchError(status(503).boxed()));
        let items: Vec<Result<u32, watcher::Error>> =
            vec![failed(), Ok(1), failed(), failed(), Ok(2)];
        let fast = WatchBackoff {
            min: Duration::from_millis(1),
            max: Duration::from_millis(5),
            failures: 0,
        };
        let s = resilient(futures::stream::iter(items), "test".into(), fast);
        let out: Vec<Option<u32>> = s.map(|r| r.ok()).collect().await;
        assert_eq!(out, [Some(1), Some(2)]);
    }
}
