//! Prometheus metrics and the HTTP server for `/metrics`, `/healthz` and `/readyz`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IamCallLabels {
    operation: String,
    outcome: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    iam_calls: Family<IamCallLabels, Counter>,
    keys_rotated: Counter,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("iam_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 12))
        });
        let iam_calls = Family::<IamCallLabels, Counter>::default();
        let keys_rotated = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and resulting Ready reason",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            durations.clone(),
        );
        registry.register(
            "iam_calls",
            "IAM API calls by operation and outcome",
            iam_calls.clone(),
        );
        registry.register(
            "access_keys_rotated",
            "Access keys replaced by rotation or loss",
            keys_rotated.clone(),
        );
        Self {
            registry,
            reconciles,
            durations,
            iam_calls,
            keys_rotated,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, kind: &str, reason: &str) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn observe_duration(&self, kind: &str, d: Duration) {
        self.durations
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(d.as_secs_f64());
    }

    pub fn iam_call(&self, operation: &str, outcome: &str) {
        self.iam_calls
            .get_or_create(&IamCallLabels {
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn key_rotated(&self) {
        self.keys_rotated.inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve(addr: std::net::SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let m = metrics.clone();
    let r = metrics.clone();
    let app = axum::Router::new()
        .route("/metrics", get(move || async move { m.encode() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if r.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
