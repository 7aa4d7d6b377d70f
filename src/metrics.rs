//! Prometheus metrics and the HTTP server for `/metrics`, `/healthz` and `/readyz`.
//!
//! Every series a platform team alerts on (see `docs/observability.md`):
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `iam_operator_reconciles_total` | kind, reason | reconciles that ran to their status, by resulting Ready reason |
//! | `iam_operator_reconcile_errors_total` | kind, reason | reconciles that failed, by error class |
//! | `iam_operator_reconcile_duration_seconds` | kind | every reconcile, whatever its outcome |
//! | `iam_operator_object_condition` | kind, namespace, name, type, status, reason | 1 per condition an object has |
//! | `iam_operator_iam_calls_total` | operation, outcome | IAM request attempts (retries included) |
//! | `iam_operator_access_key_age_seconds` | namespace, name | age of an IamUser's published key |
//! | `iam_operator_access_key_rotation_period_seconds` | namespace, name | its `rotateAfter` |
//! | `iam_operator_access_keys_rotated_total` | | published keys replaced by a new one |
//! | `iam_operator_ready`, `iam_operator_leader`, `iam_operator_build_info` | | process state |
//!
//! Labels are bounded: kinds, reasons, IAM operations and outcomes are fixed sets, and the
//! per-object series (kind/namespace/name) exist once per object and go with it. No key id,
//! ARN or secret is ever a label.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// One condition of one object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    kind: String,
    namespace: String,
    name: String,
    #[prometheus(flatten)]
    condition: ConditionState,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionState {
    r#type: String,
    status: String,
    reason: String,
}

/// One IamUser.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UserLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Identifies one object for its per-object series.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ObjectKey {
    kind: String,
    namespace: String,
    name: String,
}

/// What the key gauges are computed from at each scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct KeyFacts {
    /// Unix seconds at which IAM created the published key.
    created: Option<i64>,
    rotation_period: Option<Duration>,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_errors: Family<ReconcileLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    iam_calls: Family<IamCallLabels, Counter>,
    keys_rotated: Counter,
    conditions: Family<ConditionLabels, Gauge>,
    key_age: Family<UserLabels, FloatGauge>,
    key_rotation_period: Family<UserLabels, FloatGauge>,
    ready_gauge: Gauge,
    leader: Gauge,
    /// The condition series each object has now, so a change or a deletion removes the
    /// old ones (the sums over them stay exact). The lock also serialises updates of
    /// `conditions`.
    objects: Mutex<HashMap<ObjectKey, Vec<ConditionState>>>,
    /// Published keys per IamUser; the age gauges are computed from them at each scrape.
    keys: Mutex<HashMap<UserLabels, KeyFacts>>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("iam_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_errors = Family::<ReconcileLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 12))
        });
        let iam_calls = Family::<IamCallLabels, Counter>::default();
        let keys_rotated = Counter::default();
        let conditions = Family::<ConditionLabels, Gauge>::default();
        let key_age = Family::<UserLabels, FloatGauge>::default();
        let key_rotation_period = Family::<UserLabels, FloatGauge>::default();
        let ready_gauge = Gauge::default();
        let leader = Gauge::default();
        // A gauge, not an OpenMetrics `info`: every text parser reads a gauge.
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register(
            "reconciles",
            "Reconciles that ran to their status (written, or already as computed), by kind and resulting Ready reason",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and error class (the Ready condition's reason)",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind, every outcome",
            durations.clone(),
        );
        registry.register(
            "iam_calls",
            "IAM API request attempts (retries included) by operation and outcome: success, throttled, not_found, access_denied, client_error, server_error, transport_error",
            iam_calls.clone(),
        );
        registry.register(
            "access_keys_rotated",
            "Published access keys replaced by a new one (rotation, a lost Secret, a revoked key)",
            keys_rotated.clone(),
        );
        registry.register(
            "object_condition",
            "1 for each condition (Ready, Reconciling, Stalled) an object has, with its status and reason; removed with the object",
            conditions.clone(),
        );
        registry.register(
            "access_key_age_seconds",
            "Seconds since IAM created the access key an IamUser publishes",
            key_age.clone(),
        );
        registry.register(
            "access_key_rotation_period_seconds",
            "The rotateAfter of an IamUser's access key (only for users that set it)",
            key_rotation_period.clone(),
        );
        registry.register(
            "ready",
            "1 while /readyz answers 200: initialised and, where this replica reconciles, its watches synced",
            ready_gauge.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica runs the controllers (holds the leader lease, or runs without election)",
            leader.clone(),
        );
        registry.register("build_info", "1, with the operator's version", build_info);
        Self {
            registry,
            reconciles,
            reconcile_errors,
            durations,
            iam_calls,
            keys_rotated,
            conditions,
            key_age,
            key_rotation_period,
            ready_gauge,
            leader,
            objects: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
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

    /// A reconcile that failed; `reason` is the error's class (`Throttled`,
    /// `DependencyNotReady`, `KubernetesError`...), the same word as the Ready reason.
    pub fn reconcile_failed(&self, kind: &str, reason: &str) {
        self.reconcile_errors
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

    /// Records the conditions an object's status now has, replacing its previous ones.
    pub fn object_conditions(&self, kind: &str, namespace: &str, name: &str, conds: &[Condition]) {
        let key = ObjectKey {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        let now: Vec<ConditionState> = conds
            .iter()
            .map(|c| ConditionState {
                r#type: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
            })
            .collect();
        let Ok(mut objects) = self.objects.lock() else {
            return;
        };
        let before = objects.insert(key.clone(), now.clone()).unwrap_or_default();
        for gone in before.into_iter().filter(|c| !now.contains(c)) {
            self.conditions.remove(&condition_labels(&key, gone));
        }
        for c in now {
            self.conditions
                .get_or_create(&condition_labels(&key, c))
                .set(1);
        }
    }

    /// Removes every series of an object that is gone.
    pub fn object_deleted(&self, kind: &str, namespace: &str, name: &str) {
        let key = ObjectKey {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        if let Ok(mut objects) = self.objects.lock()
            && let Some(before) = objects.remove(&key)
        {
            for c in before {
                self.conditions.remove(&condition_labels(&key, c));
            }
        }
        if kind == "IamUser" {
            self.access_key(namespace, name, None, None);
        }
    }

    /// The key an IamUser publishes: when IAM created it (`None`: no key) and the user's
    /// rotation period. The age itself is computed at each scrape.
    pub fn access_key(
        &self,
        namespace: &str,
        name: &str,
        created_unix: Option<i64>,
        rotation_period: Option<Duration>,
    ) {
        let user = UserLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        let Ok(mut keys) = self.keys.lock() else {
            return;
        };
        let facts = KeyFacts {
            created: created_unix,
            rotation_period,
        };
        if facts == KeyFacts::default() {
            keys.remove(&user);
        } else {
            keys.insert(user.clone(), facts);
        }
        if created_unix.is_none() {
            self.key_age.remove(&user);
        }
        match rotation_period {
            Some(p) => {
                self.key_rotation_period
                    .get_or_create(&user)
                    .set(p.as_secs_f64());
            }
            None => {
                self.key_rotation_period.remove(&user);
            }
        }
    }

    /// The ages of the published keys, as of now.
    fn refresh_key_ages(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Ok(keys) = self.keys.lock() {
            for (user, facts) in keys.iter() {
                if let Some(created) = facts.created {
                    // A clock behind IAM's would make a fresh key's age negative.
                    let age = now.saturating_sub(created).max(0);
                    self.key_age.get_or_create(user).set(age as f64);
                }
            }
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        self.ready_gauge.set(i64::from(ready));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn encode(&self) -> String {
        self.refresh_key_ages();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn condition_labels(key: &ObjectKey, condition: ConditionState) -> ConditionLabels {
    ConditionLabels {
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        condition,
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
/// `/healthz` answers while the process serves requests at all; `/readyz` answers 200 only
/// once [`Metrics::set_ready`] said so.
pub async fn serve(addr: std::net::SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let m = metrics.clone();
    let r = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if r.is_ready() {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    fn lines(m: &Metrics, prefix: &str) -> Vec<String> {
        m.encode()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn an_objects_condition_series_follow_its_status_and_go_with_it() {
        let m = Metrics::default();
        m.object_conditions(
            "IamUser",
            "ns",
            "a",
            &[
                cond("Ready", "False", "Throttled"),
                cond("Reconciling", "True", "Throttled"),
            ],
        );
        m.object_conditions("IamUser", "ns", "a", &[cond("Ready", "True", "UpToDate")]);
        assert_eq!(
            lines(&m, "iam_operator_object_condition{"),
            vec![
                r#"iam_operator_object_condition{kind="IamUser",namespace="ns",name="a",type="Ready",status="True",reason="UpToDate"} 1"#
            ]
        );
        m.object_deleted("IamUser", "ns", "a");
        assert!(lines(&m, "iam_operator_object_condition{").is_empty());
    }

    #[test]
    fn key_age_is_computed_at_scrape_and_removed_with_the_key() {
        let m = Metrics::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        m.access_key("ns", "u", Some(now - 100), Some(Duration::from_secs(3600)));
        let age: f64 = lines(&m, "iam_operator_access_key_age_seconds{")[0]
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((100.0..110.0).contains(&age), "{age}");
        assert_eq!(
            lines(&m, "iam_operator_access_key_rotation_period_seconds{"),
            vec![
                r#"iam_operator_access_key_rotation_period_seconds{namespace="ns",name="u"} 3600.0"#
            ]
        );
        m.access_key("ns", "u", None, None);
        assert!(lines(&m, "iam_operator_access_key_").is_empty());
    }
}
