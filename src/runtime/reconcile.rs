//! One reconcile, the same for every kind: read the object fresh from the API server, run
//! the finalizer, hand the kind's pipeline a fenced status journal, then write status
//! (conditions included) and publish the changes as events.

use super::context::Context;
use crate::api::{FINALIZER, IamGroup, IamPolicy, IamUser};
use crate::controller::{Synced, group, policy, user};
use crate::error::{Result, Severity};
use crate::k8s::{Journal, KubeSecrets, StatusWriter};
use crate::metrics::Metrics;
use crate::status::{ObjectStatus, Summary, apply_summary};
use async_trait::async_trait;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A kind the operator reconciles.
#[async_trait]
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    type Status: ObjectStatus + Serialize + Debug + Send + Sync;
    fn current_status(&self) -> Option<&Self::Status>;
    async fn reconcile(
        ctx: &Context,
        obj: &Self,
        status: &mut Self::Status,
        journal: &dyn Journal<Self::Status>,
    ) -> Result<Synced>;
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()>;
    /// Kind-specific metrics from the status just written (the access key's age).
    fn observe(_metrics: &Metrics, _obj: &Self, _status: &Self::Status) {}
    /// A moment by which the object must be reconciled again even while it fails (session
    /// credentials that expire then and must not stay in their Secret past it).
    fn due(_status: &Self::Status) -> Option<Timestamp> {
        None
    }
}

/// `delay`, shortened to reach the object's due moment, if that is still ahead.
fn until_due<K: Managed>(status: Option<&K::Status>, delay: Duration) -> Duration {
    let ahead = status
        .and_then(K::due)
        .and_then(|due| Duration::try_from(due.duration_since(Timestamp::now())).ok())
        .filter(|d| !d.is_zero());
    ahead.map_or(delay, |d| delay.min(d))
}

#[async_trait]
impl Managed for IamPolicy {
    type Status = crate::api::IamPolicyStatus;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn reconcile(
        ctx: &Context,
        obj: &Self,
        status: &mut Self::Status,
        _journal: &dyn Journal<Self::Status>,
    ) -> Result<Synced> {
        policy::reconcile(&ctx.engine, obj, status).await
    }
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()> {
        policy::cleanup(&ctx.engine, obj).await
    }
}

#[async_trait]
impl Managed for IamGroup {
    type Status = crate::api::IamGroupStatus;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn reconcile(
        ctx: &Context,
        obj: &Self,
        status: &mut Self::Status,
        journal: &dyn Journal<Self::Status>,
    ) -> Result<Synced> {
        group::reconcile(&ctx.engine, obj, status, journal).await
    }
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()> {
        group::cleanup(&ctx.engine, obj).await
    }
}

#[async_trait]
impl Managed for IamUser {
    type Status = crate::api::IamUserStatus;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn reconcile(
        ctx: &Context,
        obj: &Self,
        status: &mut Self::Status,
        journal: &dyn Journal<Self::Status>,
    ) -> Result<Synced> {
        let secrets = KubeSecrets::new(ctx.client.clone(), obj, ctx.own_writes.clone());
        user::reconcile(&ctx.engine, obj, status, journal, &secrets).await
    }
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()> {
        let secrets = KubeSecrets::new(ctx.client.clone(), obj, ctx.own_writes.clone());
        user::cleanup(&ctx.engine, obj, &secrets).await
    }
    fn observe(metrics: &Metrics, obj: &Self, status: &Self::Status) {
        // Only a key the status says is published, and its creation time as IAM gave it.
        let created = status
            .access_key
            .as_ref()
            .filter(|k| k.access_key_id.is_some())
            .and_then(|k| k.created_at.as_ref())
            .map(|t| t.0.as_second());
        let enabled = obj.spec.access_key.as_ref().filter(|k| k.enabled);
        // An unparsable rotateAfter is reported by the reconcile itself (InvalidSpec).
        let period = enabled
            .and_then(|k| k.rotate_after.as_deref())
            .and_then(|t| crate::limits::parse_duration("rotateAfter", t).ok());
        metrics.access_key(
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
            created,
            period,
        );
    }
}

/// Error surfaced to kube-runtime (already reported in status and events).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ReconcileError {
    message: String,
    /// The API server could not be reached: retried soon, not charged to the object.
    unreachable: bool,
}

impl ReconcileError {
    fn new(message: String) -> Self {
        Self {
            message,
            unreachable: false,
        }
    }

    fn kube(message: String, e: &kube::Error) -> Self {
        Self {
            message,
            unreachable: unreachable(e),
        }
    }
}

/// Whether `e` says the API server could not be reached or is not serving (connection
/// refused or reset, TLS, a timeout; 503 while it starts or stops), rather than refusing
/// this object's request.
pub fn unreachable(e: &kube::Error) -> bool {
    match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        kube::Error::Api(s) => s.code == 503,
        _ => false,
    }
}

fn unreachable_error(e: &crate::error::Error) -> bool {
    matches!(e, crate::error::Error::Kube(k) if unreachable(k))
}

pub fn key<K: Managed>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

async fn publish<K: Managed>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: &str) {
    // kube's recorder folds events with the same reason and action into one series that
    // keeps the first note; the note as action keeps distinct changes distinct.
    let action: String = note.chars().take(128).collect();
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action,
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

/// Runs the kind's pipeline, then writes status (when it changed) and events.
async fn apply<K: Managed>(ctx: &Context, obj: &K) -> Result<Action, ReconcileError> {
    let journal = StatusWriter::new(ctx.client.clone(), obj);
    let before = obj.current_status().cloned().unwrap_or_default();
    let mut status = before.clone();
    let result = K::reconcile(ctx, obj, &mut status, &journal).await;
    let summary = match &result {
        Ok(_) => Summary::ready(
            "UpToDate",
            format!("IAM matches the spec of {}", obj.name_any()),
        ),
        Err(e) => Summary::from_error(e),
    };
    let previous = crate::status::ready_reason(&before).map(|(r, s)| (r, s.to_string()));
    apply_summary(
        &mut status,
        &summary,
        obj.meta().generation,
        Timestamp::now(),
    );
    let kind = K::kind(&());
    if (status != before || journal.wrote())
        && let Err(e) = journal.record(&status).await
    {
        // A conflict: the object changed since this reconcile read it; the retry starts
        // over from the API server's copy.
        ctx.metrics.reconcile_failed(&kind, e.reason());
        return Err(ReconcileError {
            unreachable: unreachable_error(&e),
            message: format!("writing status: {e}"),
        });
    }
    ctx.metrics.reconciled(&kind, &summary.reason);
    ctx.metrics.object_conditions(
        &kind,
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
        status.conditions(),
    );
    K::observe(&ctx.metrics, obj, &status);
    if let Err(err) = &result {
        ctx.metrics.reconcile_failed(&kind, err.reason());
    }
    match result {
        Ok(synced) => {
            ctx.forget(&key(obj));
            for change in &synced.changes {
                let type_ = if change.reason.is_warning() {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                publish(ctx, obj, type_, change.reason.as_str(), &change.message).await;
            }
            let mut after = ctx.engine.settings.resync_interval;
            if let Some(d) = synced.requeue_after {
                after = after.min(d);
            }
            Ok(Action::requeue(after))
        }
        Err(err) => {
            let changed = previous != Some((false, summary.reason.clone()));
            let severity = err.severity();
            if changed && severity != Severity::Transient {
                let type_ = if severity == Severity::Stalled {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                publish(ctx, obj, type_, err.reason(), &summary.message).await;
            }
            // One message: a `message` field next to the format string would be a second
            // "message" key in a JSON line.
            tracing::info!(reason = err.reason(), "not ready: {}", summary.message);
            let resync = ctx.engine.settings.resync_interval;
            match severity {
                Severity::Transient => Err(ReconcileError {
                    unreachable: unreachable_error(&err),
                    message: summary.message,
                }),
                // A dependency's change triggers us through the watch; this is a backstop.
                Severity::Waiting => Ok(Action::requeue(until_due::<K>(
                    Some(&status),
                    resync.min(Duration::from_secs(60)),
                ))),
                // Needs a human: retry slowly, or at once on the next spec change.
                Severity::Stalled => Ok(Action::requeue(until_due::<K>(
                    Some(&status),
                    resync.min(Duration::from_secs(600)),
                ))),
            }
        }
    }
}

async fn cleanup<K: Managed>(ctx: &Context, obj: &K) -> Result<Action, ReconcileError> {
    let kind = K::kind(&());
    let namespace = obj.namespace().unwrap_or_default();
    match K::cleanup(ctx, obj).await {
        Ok(()) => {
            ctx.forget(&key(obj));
            // The finalizer goes next: the object's series go with it.
            ctx.metrics
                .object_deleted(&kind, &namespace, &obj.name_any());
            Ok(Action::await_change())
        }
        Err(err) => {
            ctx.metrics.reconcile_failed(&kind, err.reason());
            let mut status = obj.current_status().cloned().unwrap_or_default();
            let summary = Summary::progressing("Deleting", format!("deleting: {err}"));
            apply_summary(
                &mut status,
                &summary,
                obj.meta().generation,
                Timestamp::now(),
            );
            let written = Some(&status) == obj.current_status() || {
                let journal = StatusWriter::new(ctx.client.clone(), obj);
                match journal.record(&status).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not write status");
                        false
                    }
                }
            };
            if written {
                ctx.metrics.object_conditions(
                    &kind,
                    &namespace,
                    &obj.name_any(),
                    status.conditions(),
                );
            }
            Err(ReconcileError {
                unreachable: unreachable_error(&err),
                message: summary.message,
            })
        }
    }
}

/// The reconcile kube-runtime calls. The watch cache may be older than the last status
/// write (the crash journal), so the object is read from the API server first; an object
/// that is gone takes its backoff state with it.
pub async fn reconcile<K: Managed>(
    cached: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let kind = K::kind(&());
    // `object`, not `name`: a JSON log line carries the span's own name under "name".
    let span = tracing::info_span!("reconcile", kind = %K::kind(&()), namespace = %namespace, object = %name);
    let result = async {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
        let fresh = match api.get_opt(&name).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => {
                ctx.forget(&key(cached.as_ref()));
                ctx.metrics.object_deleted(&kind, &namespace, &name);
                return Ok(Action::await_change());
            }
            Err(e) => {
                ctx.metrics.reconcile_failed(&kind, "KubernetesError");
                return Err(ReconcileError::kube(format!("reading {name}: {e}"), &e));
            }
        };
        finalizer(&api, FINALIZER, Arc::new(fresh), |event| async {
            match event {
                Finalized::Apply(obj) => apply(&ctx, obj.as_ref()).await,
                Finalized::Cleanup(obj) => cleanup(&ctx, obj.as_ref()).await,
            }
        })
        .await
        .map_err(|e| {
            // Apply and cleanup count their own failures; these are the finalizer's patches.
            if !matches!(
                e,
                kube::runtime::finalizer::Error::ApplyFailed(_)
                    | kube::runtime::finalizer::Error::CleanupFailed(_)
            ) {
                ctx.metrics.reconcile_failed(&kind, "KubernetesError");
            }
            let message = e.to_string();
            match e {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => ReconcileError {
                    message,
                    unreachable: e.unreachable,
                },
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e) => {
                    ReconcileError::kube(message, &e)
                }
                _ => ReconcileError::new(message),
            }
        })
    }
    .instrument(span)
    .await;
    ctx.metrics
        .observe_duration(K::kind(&()).as_ref(), started.elapsed());
    result
}

pub fn error_policy<K: Managed>(obj: Arc<K>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    let delay = until_due::<K>(
        obj.current_status(),
        ctx.backoff(&key(obj.as_ref()), err.unreachable),
    );
    tracing::warn!(error = %err, unreachable = err.unreachable, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{IamRole, IamRoleStatus, SessionCredentialsStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::SignedDuration;

    fn expiring_in(secs: i64) -> IamRoleStatus {
        IamRoleStatus {
            session_credentials: Some(SessionCredentialsStatus {
                expires_at: Some(Time(Timestamp::now() + SignedDuration::from_secs(secs))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_failing_role_is_retried_by_the_time_its_credentials_expire() {
        let long = Duration::from_secs(600);
        let soon = until_due::<IamRole>(Some(&expiring_in(30)), long);
        assert!(
            soon <= Duration::from_secs(30) && soon > Duration::from_secs(25),
            "{soon:?}"
        );
        // Past expiry (already handled) or nothing published: the usual delay.
        assert_eq!(until_due::<IamRole>(Some(&expiring_in(-5)), long), long);
        assert_eq!(
            until_due::<IamRole>(Some(&IamRoleStatus::default()), long),
            long
        );
        assert_eq!(until_due::<IamRole>(None, long), long);
        // A shorter backoff stays as it is.
        let short = Duration::from_secs(2);
        assert_eq!(until_due::<IamRole>(Some(&expiring_in(30)), short), short);
    }
}
