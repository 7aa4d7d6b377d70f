//! What all reconciles share: the engine, the Kubernetes client, the event recorder, the
//! metrics, per-object backoff, the record of the operator's own Secret writes, and what
//! the operator knows of IAM from its own calls (for the drift scan).

use crate::controller::Engine;
use crate::controller::drift::Known;
use crate::k8s::{FIELD_MANAGER, OwnWrites};
use crate::metrics::Metrics;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Context {
    pub engine: Engine,
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub own_writes: Arc<OwnWrites>,
    /// Filled by every IAM call of the engine (see `runtime::known`).
    pub known: Arc<Mutex<Known>>,
    failures: Backoffs,
}

impl Context {
    pub fn new(mut engine: Engine, client: Client) -> Self {
        let known = Arc::new(Mutex::new(Known::default()));
        engine.iam = Arc::new(super::known::KnowingIam::new(engine.iam, known.clone()));
        let recorder = Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER));
        Self {
            metrics: engine.metrics.clone(),
            engine,
            client,
            recorder,
            own_writes: Arc::new(OwnWrites::default()),
            known,
            failures: Backoffs::default(),
        }
    }

    /// The delay before an object that failed is retried (see [`Backoffs`]).
    pub fn backoff(&self, key: &str, unreachable: bool) -> Duration {
        self.failures.next(key, unreachable)
    }

    /// Forgets an object's failures: it succeeded, or it is gone.
    pub fn forget(&self, key: &str) {
        self.failures.forget(key);
    }
}

/// Per-object exponential backoff with jitter: 1s, 2s, 4s … capped at 5 minutes for the
/// object's own failures (IAM refusing, throttling, a conflict). A failure because the API
/// server could not be reached is no fault of the object: it is not counted as one, and
/// its own streak is capped at [`Backoffs::UNREACHABLE_MAX`], so that every object is
/// retried within seconds once the server is back instead of after the minutes its
/// backoff grew to during the outage (measured after a control-plane restart).
#[derive(Default)]
pub struct Backoffs(Mutex<HashMap<String, Failures>>);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Failures {
    own: u32,
    unreachable: u32,
}

impl Backoffs {
    pub const MAX: Duration = Duration::from_secs(300);
    pub const UNREACHABLE_MAX: Duration = Duration::from_secs(8);

    /// Counts one more failure of `key` and returns the delay before its retry.
    pub fn next(&self, key: &str, unreachable: bool) -> Duration {
        let (attempt, cap) = self.0.lock().map_or((1, Self::MAX), |mut f| {
            let f = f.entry(key.to_string()).or_default();
            if unreachable {
                f.unreachable = f.unreachable.saturating_add(1);
                (f.unreachable, Self::UNREACHABLE_MAX)
            } else {
                f.unreachable = 0;
                f.own = f.own.saturating_add(1);
                (f.own, Self::MAX)
            }
        });
        let base = 2u64
            .saturating_pow(attempt.saturating_sub(1).min(9))
            .min(cap.as_secs());
        let jitter = rand::random::<u64>() % (base * 250 + 1);
        Duration::from_millis(base * 1000 + jitter)
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut f) = self.0.lock() {
            f.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks each delay against its base in seconds (the jitter adds up to 25 %).
    fn assert_bases(delays: &[Duration], bases: &[u64]) {
        assert_eq!(delays.len(), bases.len());
        for (d, base) in delays.iter().zip(bases) {
            let ms = d.as_millis() as u64;
            assert!(
                ms >= base * 1000 && ms <= base * 1250,
                "{delays:?} against {bases:?}"
            );
        }
    }

    #[test]
    fn own_failures_double_up_to_five_minutes() {
        let b = Backoffs::default();
        let delays: Vec<Duration> = (0..11).map(|_| b.next("k", false)).collect();
        assert_bases(&delays, &[1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        b.forget("k");
        assert_bases(&[b.next("k", false)], &[1]);
    }

    #[test]
    fn an_unreachable_api_server_is_not_the_objects_fault() {
        let b = Backoffs::default();
        for _ in 0..3 {
            b.next("k", false);
        }
        // A long outage: retried every 8 s at most, whatever the object's own record.
        let outage: Vec<Duration> = (0..8).map(|_| b.next("k", true)).collect();
        assert_bases(&outage, &[1, 2, 4, 8, 8, 8, 8, 8]);
        // Its own failures resume where they were, not charged for the outage.
        assert_bases(&[b.next("k", false)], &[8]);
        // Other objects are unaffected.
        assert_bases(&[b.next("other", false)], &[1]);
    }
}
