//! kube-runtime wiring: finalizers, status writes, events, backoff, dependency watches.

use super::{Dependencies, Engine, Synced};
use crate::api::{FINALIZER, IamGroup, IamGroupStatus, IamPolicy, IamUser};
use crate::error::{Error, Result, Severity};
use crate::metrics::Metrics;
use crate::status::{ObjectStatus, Summary, apply_summary};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "iam-operator";

/// Shared by all reconciles.
pub struct Context {
    pub engine: Engine,
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    failures: Mutex<HashMap<String, u32>>,
    /// `namespace/name@resourceVersion` of the Secrets this operator just wrote.
    own_writes: Mutex<HashSet<String>>,
}

impl Context {
    pub fn new(engine: Engine, client: Client, metrics: Arc<Metrics>) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER));
        Self {
            engine,
            client,
            recorder,
            metrics,
            failures: Mutex::new(HashMap::new()),
            own_writes: Mutex::new(HashSet::new()),
        }
    }

    /// Remembers a Secret version this operator wrote, so its watch event wakes nobody: the
    /// reconcile that wrote it already accounts for it.
    pub fn wrote(&self, secret: &k8s_openapi::api::core::v1::Secret) {
        if let Ok(mut own) = self.own_writes.lock() {
            // Events can be missed (a relist shows only the latest version); stay bounded.
            if own.len() > 10_000 {
                own.clear();
            }
            own.insert(secret_version(secret));
        }
    }

    /// Whether this event shows a Secret exactly as this operator wrote it (consumed once).
    fn is_own_write(&self, secret: &k8s_openapi::api::core::v1::Secret) -> bool {
        self.own_writes
            .lock()
            .is_ok_and(|mut own| own.remove(&secret_version(secret)))
    }

    /// Per-object exponential backoff with jitter: 1s, 2s, 4s … capped at 5 minutes.
    fn backoff(&self, key: &str) -> Duration {
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

    fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

fn secret_version(secret: &k8s_openapi::api::core::v1::Secret) -> String {
    format!(
        "{}/{}@{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any(),
        secret.resource_version().unwrap_or_default()
    )
}

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
    async fn sync(ctx: &Context, obj: &Self, status: &mut Self::Status) -> Result<Synced>;
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()>;
}

#[async_trait]
impl Managed for IamPolicy {
    type Status = crate::api::IamPolicyStatus;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn sync(ctx: &Context, obj: &Self, status: &mut Self::Status) -> Result<Synced> {
        super::policy::sync(&ctx.engine, obj, status).await
    }
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()> {
        super::policy::cleanup(&ctx.engine, obj).await
    }
}

#[async_trait]
impl Managed for IamGroup {
    type Status = crate::api::IamGroupStatus;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn sync(ctx: &Context, obj: &Self, status: &mut Self::Status) -> Result<Synced> {
        super::group::sync(&ctx.engine, obj, status).await
    }
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()> {
        super::group::cleanup(&ctx.engine, obj).await
    }
}

#[async_trait]
impl Managed for IamUser {
    type Status = crate::api::IamUserStatus;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn sync(ctx: &Context, obj: &Self, status: &mut Self::Status) -> Result<Synced> {
        let mut synced = super::user::sync(&ctx.engine, obj, status).await?;
        crate::credentials::sync(ctx, obj, status, &mut synced).await?;
        Ok(synced)
    }
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()> {
        super::user::cleanup(&ctx.engine, obj).await?;
        crate::credentials::release(ctx, obj).await
    }
}

/// Error surfaced to kube-runtime (already reported in status and events).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReconcileError(String);

fn key<K: Managed>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Writes a status mid-reconcile (an intent to create a key or a group), before the final
/// write.
pub async fn write_status<K: Managed>(client: &Client, obj: &K, status: &K::Status) -> Result<()> {
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    patch_status(&api, obj, status).await
}

async fn patch_status<K: Managed>(api: &Api<K>, obj: &K, status: &K::Status) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Event reason of a change note (notes start with what happened).
fn change_reason(note: &str) -> &'static str {
    const REASONS: [(&str, &str); 10] = [
        ("Created", "Created"),
        ("Rotated access key", "AccessKeyRotated"),
        ("Published new access key", "AccessKeyReplaced"),
        ("Published access key", "AccessKeyPublished"),
        ("Reactivated", "AccessKeyReactivated"),
        ("Deleted access keys", "AccessKeysDeleted"),
        ("Deleted the access key", "AccessKeyDisabled"),
        ("Set a new console password", "ConsolePasswordSet"),
        ("Set the console password", "ConsolePasswordSet"),
        ("Deleted console access", "ConsoleDisabled"),
    ];
    REASONS
        .iter()
        .find(|(prefix, _)| note.starts_with(prefix))
        .map_or("Updated", |(_, reason)| reason)
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

/// Runs the kind's sync, then writes status (only when it changed) and events.
async fn apply<K: Managed>(api: &Api<K>, ctx: &Context, obj: &K) -> Result<Action, ReconcileError> {
    let before = obj.current_status().cloned().unwrap_or_default();
    let mut status = before.clone();
    let result = K::sync(ctx, obj, &mut status).await;
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
    if status != before
        && let Err(e) = patch_status(api, obj, &status).await
    {
        return Err(ReconcileError(format!("writing status: {e}")));
    }
    ctx.metrics
        .reconciled(K::kind(&()).as_ref(), &summary.reason);
    match result {
        Ok(synced) => {
            ctx.succeeded(&key(obj));
            for change in &synced.changes {
                publish(ctx, obj, EventType::Normal, change_reason(change), change).await;
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
            tracing::info!(reason = err.reason(), message = %summary.message, "not ready");
            let resync = ctx.engine.settings.resync_interval;
            match severity {
                Severity::Transient => Err(ReconcileError(summary.message)),
                // A dependency's change triggers us through the watch; this is a backstop.
                Severity::Waiting => Ok(Action::requeue(resync.min(Duration::from_secs(60)))),
                // Needs a human: retry slowly, or at once on the next spec change.
                Severity::Stalled => Ok(Action::requeue(resync.min(Duration::from_secs(600)))),
            }
        }
    }
}

async fn cleanup<K: Managed>(
    api: &Api<K>,
    ctx: &Context,
    obj: &K,
) -> Result<Action, ReconcileError> {
    match K::cleanup(ctx, obj).await {
        Ok(()) => {
            ctx.succeeded(&key(obj));
            Ok(Action::await_change())
        }
        Err(err) => {
            let mut status = obj.current_status().cloned().unwrap_or_default();
            let summary = Summary::progressing("Deleting", format!("deleting: {err}"));
            apply_summary(
                &mut status,
                &summary,
                obj.meta().generation,
                Timestamp::now(),
            );
            if Some(&status) != obj.current_status() {
                let _ = patch_status(api, obj, &status).await;
            }
            Err(ReconcileError(summary.message))
        }
    }
}

async fn reconcile<K: Managed>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = tracing::info_span!("reconcile", kind = %K::kind(&()), namespace = %namespace, name = %obj.name_any());
    let _guard = span.enter();
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalized::Apply(obj) => apply(&api, &ctx, &obj).await,
            Finalized::Cleanup(obj) => cleanup(&api, &ctx, &obj).await,
        }
    })
    .await
    .map_err(|e| ReconcileError(e.to_string()));
    ctx.metrics
        .observe_duration(K::kind(&()).as_ref(), started.elapsed());
    result
}

fn error_policy<K: Managed>(obj: Arc<K>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&key(obj.as_ref()));
    tracing::warn!(error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Reads dependencies from the Kubernetes API.
pub struct KubeDependencies {
    pub client: Client,
    /// The watched namespaces (empty: all), the scope of the operator's RBAC.
    pub namespaces: Vec<String>,
}

/// Whether a dependency reports Ready for its current generation.
fn ready_now<K: Managed>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_none()
        && obj.current_status().is_some_and(|s| {
            s.conditions().iter().any(|c| {
                c.type_ == crate::status::READY
                    && c.status == "True"
                    && c.observed_generation == obj.meta().generation
            })
        })
}

async fn ready_dependency<K: Managed>(client: &Client, namespace: &str, name: &str) -> Result<K> {
    let kind = K::kind(&());
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await? {
        None => Err(Error::DependencyNotReady(format!(
            "waiting for {kind} {name}: it does not exist"
        ))),
        Some(obj) if !ready_now(&obj) => Err(Error::DependencyNotReady(format!(
            "waiting for {kind} {name} to be Ready"
        ))),
        Some(obj) => Ok(obj),
    }
}

#[async_trait]
impl Dependencies for KubeDependencies {
    async fn policy_arn(&self, namespace: &str, name: &str) -> Result<String> {
        let policy: IamPolicy = ready_dependency(&self.client, namespace, name).await?;
        policy.status.and_then(|s| s.arn).ok_or_else(|| {
            Error::DependencyNotReady(format!("waiting for IamPolicy {name} to have an ARN"))
        })
    }

    async fn group_name(&self, namespace: &str, name: &str) -> Result<String> {
        let group: IamGroup = ready_dependency(&self.client, namespace, name).await?;
        Ok(group.iam_name())
    }

    async fn group_claimed_by(
        &self,
        group_id: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>> {
        let apis: Vec<Api<IamGroup>> = if self.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        for api in apis {
            for g in api.list(&Default::default()).await? {
                let ns = g.namespace().unwrap_or_default();
                let claims =
                    g.status.as_ref().and_then(|s| s.group_id.as_deref()) == Some(group_id);
                if claims && (ns.as_str(), g.name_any().as_str()) != (namespace, name) {
                    return Ok(Some(format!("{ns}/{}", g.name_any())));
                }
            }
        }
        Ok(None)
    }

    async fn record_group_status(&self, group: &IamGroup, status: &IamGroupStatus) -> Result<()> {
        write_status(&self.client, group, status).await
    }
}

fn refs_policy(attachments: &[crate::api::PolicyAttachment], name: &str) -> bool {
    attachments
        .iter()
        .any(|a| a.policy_ref.as_ref().is_some_and(|r| r.name == name))
}

/// A controller for `K` that reconciles on changes of spec (generation), annotations (the
/// rotate/reset/adopt triggers), finalizers and deletion, but not on its own status writes:
/// those would double every reconcile and its IAM reads. Requeues, watched objects and the
/// drift scan (through the returned [`Wake`]) still trigger as usual.
fn controller<K: Managed>(api: Api<K>, config: &ControllerConfig) -> (Controller<K>, Wake<K>) {
    let (reader, writer) = kube::runtime::reflector::store();
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let ctl = Controller::for_stream(changes, reader)
        .with_config(config.clone())
        .reconcile_on(rx);
    let wake = Wake {
        store: ctl.store(),
        tx,
    };
    (ctl, wake)
}

/// Wakes the objects of one controller that the drift scan found changed in IAM.
struct Wake<K: Managed> {
    store: kube::runtime::reflector::Store<K>,
    tx: futures::channel::mpsc::UnboundedSender<ObjectRef<K>>,
}

impl<K: Managed> Wake<K> {
    fn matching(&self, changed: impl Fn(&K) -> bool) {
        for obj in self.store.state() {
            if changed(&obj) {
                let _ = self.tx.unbounded_send(ObjectRef::from_obj(obj.as_ref()));
            }
        }
    }
}

/// Every interval, snapshots the account and wakes the objects whose IAM entity changed
/// since the previous pass (the first pass is the baseline).
async fn drift_scan(
    ctx: Arc<Context>,
    interval: Duration,
    wakes: Vec<(Wake<IamPolicy>, Wake<IamGroup>, Wake<IamUser>)>,
) {
    let mut previous = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = match ctx.engine.iam.account_snapshot().await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "drift scan failed; per-object resyncs continue");
                continue;
            }
        };
        if let Some(before) = &previous {
            let changed = super::drift::changed(before, &now);
            if !changed.is_empty() {
                tracing::info!(?changed, "drift scan: IAM changed");
            }
            for (policies, groups, users) in &wakes {
                policies.matching(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.arn.as_ref())
                        .is_some_and(|arn| changed.policies.contains(arn))
                });
                groups.matching(|g| changed.groups.contains(&g.iam_name()));
                users.matching(|u| changed.users.contains(&u.iam_name()));
            }
        }
        previous = Some(now);
    }
}

/// Everything the operator runs: one controller per kind (per watched namespace).
/// `drift_scan_interval` of zero turns the drift scan off.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: &[String],
    concurrency: u16,
    drift_scan_interval: Duration,
) {
    let client = ctx.client.clone();
    let config = ControllerConfig::default().concurrency(concurrency);
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    let mut all = Vec::new();
    let mut wakes = Vec::new();
    for ns in scopes {
        let api = |c: &Client| -> (Api<IamPolicy>, Api<IamGroup>, Api<IamUser>) {
            match &ns {
                Some(ns) => (
                    Api::namespaced(c.clone(), ns),
                    Api::namespaced(c.clone(), ns),
                    Api::namespaced(c.clone(), ns),
                ),
                None => (
                    Api::all(c.clone()),
                    Api::all(c.clone()),
                    Api::all(c.clone()),
                ),
            }
        };
        let (policies, groups, users) = api(&client);
        let wc = watcher::Config::default();

        let (policy_ctl, policy_wake) = controller(policies.clone(), &config);
        let policy_ctl = policy_ctl
            .shutdown_on_signal()
            .run(
                reconcile::<IamPolicy>,
                error_policy::<IamPolicy>,
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));

        let (group_ctl, group_wake) = controller(groups.clone(), &config);
        let group_store = group_ctl.store();
        let group_ctl = group_ctl
            .watches(policies.clone(), wc.clone(), move |p: IamPolicy| {
                let ns = p.namespace();
                let name = p.name_any();
                group_store
                    .state()
                    .into_iter()
                    .filter(|g| g.namespace() == ns && refs_policy(&g.spec.policies, &name))
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            })
            .shutdown_on_signal()
            .run(reconcile::<IamGroup>, error_policy::<IamGroup>, ctx.clone())
            .for_each(|_| futures::future::ready(()));

        let (user_ctl, user_wake) = controller(users.clone(), &config);
        wakes.push((policy_wake, group_wake, user_wake));
        let by_policy = user_ctl.store();
        let by_group = user_ctl.store();
        let user_ctl = user_ctl
            .owns_stream({
                let secrets = match &ns {
                    Some(ns) => {
                        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
                    }
                    None => Api::all(client.clone()),
                };
                let ctx = ctx.clone();
                // A lost, edited or deleted Secret wakes its IamUser; the operator's own
                // writes do not (they would cost a second reconcile of every user).
                watcher(
                    secrets,
                    watcher::Config::default().labels(crate::credentials::MANAGED_BY_SELECTOR),
                )
                .default_backoff()
                .touched_objects()
                .try_filter(move |s| futures::future::ready(!ctx.is_own_write(s)))
            })
            .watches(policies, wc.clone(), move |p: IamPolicy| {
                let ns = p.namespace();
                let name = p.name_any();
                by_policy
                    .state()
                    .into_iter()
                    .filter(|u| {
                        u.namespace() == ns
                            && (refs_policy(&u.spec.policies, &name)
                                || u.spec
                                    .permissions_boundary
                                    .as_ref()
                                    .is_some_and(|b| refs_policy(std::slice::from_ref(b), &name)))
                    })
                    .map(|u| ObjectRef::from_obj(u.as_ref()))
                    .collect::<Vec<_>>()
            })
            .watches(groups, wc, move |g: IamGroup| {
                let ns = g.namespace();
                let name = g.name_any();
                by_group
                    .state()
                    .into_iter()
                    .filter(|u| {
                        u.namespace() == ns
                            && u.spec
                                .groups
                                .iter()
                                .any(|m| m.group_ref.as_ref().is_some_and(|r| r.name == name))
                    })
                    .map(|u| ObjectRef::from_obj(u.as_ref()))
                    .collect::<Vec<_>>()
            })
            .shutdown_on_signal()
            .run(reconcile::<IamUser>, error_policy::<IamUser>, ctx.clone())
            .for_each(|_| futures::future::ready(()));

        all.push(Box::pin(async move {
            futures::join!(policy_ctl, group_ctl, user_ctl);
        })
            as std::pin::Pin<
                Box<dyn std::future::Future<Output = ()> + Send>,
            >);
    }
    let controllers = futures::future::join_all(all);
    if drift_scan_interval.is_zero() {
        controllers.await;
        return;
    }
    // The scan never ends by itself; the controllers end on a shutdown signal.
    tokio::select! {
        _ = controllers => {}
        _ = drift_scan(ctx, drift_scan_interval, wakes) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::change_reason;

    #[test]
    fn lost_key_and_rotation_events_have_their_own_reasons() {
        assert_eq!(
            change_reason("Published new access key A in Secret s and deleted lost key B"),
            "AccessKeyReplaced"
        );
        assert_eq!(
            change_reason("Published access key A in Secret s"),
            "AccessKeyPublished"
        );
        assert_eq!(
            change_reason("Rotated access key (x): ..."),
            "AccessKeyRotated"
        );
        assert_eq!(
            change_reason("Attached arn:aws:iam::aws:policy/X"),
            "Updated"
        );
    }
}
