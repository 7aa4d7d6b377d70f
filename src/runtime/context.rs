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
    failures: Mutex<HashMap<String, u32>>,
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
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Per-object exponential backoff with jitter: 1s, 2s, 4s … capped at 5 minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let attempts = self.failures.lock().map_or(1, |mut f| {
            let n = f.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        });
        let base = 2u64
            .saturating_pow(attempts.saturating_sub(1).min(9))
            .min(300);
        let jitter = rand::random::<u64>() % (base * 250 + 1);
        Duration::from_millis(base * 1000 + jitter)
    }

    /// Forgets an object's failures: it succeeded, or it is gone.
    pub fn forget(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}
