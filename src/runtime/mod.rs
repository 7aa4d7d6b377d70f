//! kube-runtime wiring: one controller per kind (per watched namespace), the watches that
//! wake a resource when something it depends on changes, and the drift-scan loop.
//!
//! Every watch goes through `watch::watch` or `.watches_resilient` (its own backoff, its
//! errors stopped there), never `Controller::watches`: kube-runtime pauses all of a
//! controller's triggers behind one backoff on any watch's error (see `watch`).
//!
//! Layering: `runtime` → `controller` (reconcile logic) → `iam` (IAM port) and `k8s`
//! (Kubernetes adapters) → `api` (types).

pub mod account;
pub mod client;
pub mod context;
mod known;
pub mod reconcile;
pub mod role;
mod watch;

pub use context::Context;
pub use reconcile::{Managed, ReconcileError};

use crate::api::{IamGroup, IamPolicy, IamRole, IamTenancyPolicy, IamUser};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::Api;
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Client, ResourceExt};
use reconcile::{error_policy, reconcile};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use watch::{ResilientWatches, WatchBackoff, watch};

/// Maps a changed IamTenancyPolicy to the objects it concerns: those in namespaces its
/// selector matches now or matched before the change (it may have stopped selecting some).
/// Each controller keeps its own record of the selectors it has seen.
fn governed_by<K: Managed>(
    store: kube::runtime::reflector::Store<K>,
    namespaces: kube::runtime::reflector::Store<PartialObjectMeta<Namespace>>,
) -> impl Fn(IamTenancyPolicy) -> Vec<ObjectRef<K>> + Send + Sync + 'static {
    let seen: Mutex<HashMap<String, LabelSelector>> = Mutex::new(HashMap::new());
    move |policy: IamTenancyPolicy| {
        let selector = policy.spec.namespace_selector.clone();
        let before = seen
            .lock()
            .ok()
            .and_then(|mut seen| seen.insert(policy.name_any(), selector.clone()));
        let selects = |s: &LabelSelector, labels: &std::collections::BTreeMap<String, String>| {
            // A selector that cannot be parsed selects everything (as the operator reads it).
            Selector::try_from(s.clone()).map_or(true, |s| s.matches(labels))
        };
        let concerned: HashSet<String> = namespaces
            .state()
            .iter()
            .filter(|ns| {
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                selects(&selector, &labels) || before.as_ref().is_some_and(|b| selects(b, &labels))
            })
            .map(|ns| ns.name_any())
            .collect();
        store
            .state()
            .iter()
            .filter(|o| o.namespace().is_some_and(|ns| concerned.contains(&ns)))
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }
}

/// Secret events, metadata only (the watch needs names, owners and versions, never the
/// payloads), without the operator's own writes (they would cost a second reconcile of
/// every owner). With the operator's label ([`crate::k8s::secrets::MANAGED_BY_SELECTOR`]):
/// its own Secrets, whose loss or edit wakes the owner (an IamRole's session credentials).
/// Without: every Secret in scope, for the user controller, which maps them itself
/// ([`user_secret_wakes`]: its own Secrets, and the Secret a user names as its chosen
/// console password) — one watch for both, not a second one on Secrets.
fn secret_events(
    client: &Client,
    ns: &Option<String>,
    ctx: &Arc<Context>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static
{
    let secrets: Api<PartialObjectMeta<Secret>> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctx = ctx.clone();
    watch(secrets, config)
        .touched_objects()
        .try_filter(move |s| futures::future::ready(!ctx.own_writes.is_own(&s.metadata)))
}

/// The users a Secret event wakes: its owner, for a Secret the operator manages (as
/// `owns_stream` would map it), and every user in its namespace whose
/// `spec.console.initialPasswordSecretRef` names it.
fn user_secret_wakes(
    secret: &PartialObjectMeta<Secret>,
    users: &[Arc<IamUser>],
) -> Vec<ObjectRef<IamUser>> {
    let ns = secret.namespace();
    let name = secret.name_any();
    let managed = crate::k8s::secrets::MANAGED_BY_SELECTOR
        .split_once('=')
        .is_some_and(|(k, v)| secret.labels().get(k).is_some_and(|l| l == v));
    let owners = secret
        .owner_references()
        .iter()
        .filter(|o| {
            managed
                && o.kind == <IamUser as kube::Resource>::kind(&())
                && o.api_version == <IamUser as kube::Resource>::api_version(&())
        })
        .map(|o| ObjectRef::<IamUser>::new(&o.name).within(ns.as_deref().unwrap_or_default()));
    let choosing = users
        .iter()
        .filter(|u| {
            u.namespace() == ns
                && u.spec
                    .console
                    .as_ref()
                    .and_then(|c| c.initial_password_secret_ref.as_ref())
                    .is_some_and(|r| r.name == name)
        })
        .map(|u| ObjectRef::from_obj(u.as_ref()));
    owners.chain(choosing).collect()
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
    let changes = watch(api, watcher::Config::default())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let (tx, rx) = futures::channel::mpsc::unbounded();
    // Every trigger stream backs off on its own (`watch`); this shared backoff only acts
    // for one that does not.
    let ctl = Controller::for_stream(changes, reader)
        .with_config(config.clone())
        .trigger_backoff(WatchBackoff::default())
        .reconcile_on(rx);
    let wake = Wake {
        store: ctl.store(),
        tx,
    };
    (ctl, wake)
}

/// Resolves once `store` has listed its objects (false if its watch ended first).
fn cache_synced<K: Managed>(
    store: kube::runtime::reflector::Store<K>,
) -> futures::future::BoxFuture<'static, bool> {
    Box::pin(async move {
        let synced = store.wait_until_ready().await.is_ok();
        tracing::info!(kind = %K::kind(&()), synced, "watch listed");
        synced
    })
}

/// Wakes objects of one controller from outside its watches: the drift scan (changed in
/// IAM) and the namespace watch (changed labels).
struct Wake<K: Managed> {
    store: kube::runtime::reflector::Store<K>,
    tx: futures::channel::mpsc::UnboundedSender<ObjectRef<K>>,
}

/// One wake per kind, per watched scope.
type Wakes = Vec<(
    Wake<IamPolicy>,
    Wake<IamGroup>,
    Wake<IamUser>,
    Wake<IamRole>,
)>;

/// Wakes every object of a namespace whose labels changed: they decide which
/// IamTenancyPolicy governs it.
fn wake_namespace(wakes: &Wakes, namespace: &str) {
    let here = |ns: Option<String>| ns.as_deref() == Some(namespace);
    for (policies, groups, users, roles) in wakes {
        policies.matching(|o| here(o.namespace()));
        groups.matching(|o| here(o.namespace()));
        users.matching(|o| here(o.namespace()));
        roles.matching(|o| here(o.namespace()));
    }
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

/// Every interval, snapshots the account and wakes the objects whose IAM entity drifted
/// (`controller::drift::drifted`: changed since the previous pass, or differs from what
/// the operator last wrote, and not what the operator last read or wrote). The first
/// pass is the baseline.
async fn drift_scan(ctx: Arc<Context>, interval: Duration, wakes: Arc<Wakes>) {
    let mut previous: Option<(crate::iam::AccountSnapshot, std::time::Instant)> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Taken before the first request: a write completing after this may not show.
        let started = std::time::Instant::now();
        let now = match ctx.engine.iam.account_snapshot().await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "drift scan failed; per-object resyncs continue");
                continue;
            }
        };
        if let Some((before, before_started)) = &previous {
            let changed = match ctx.known.lock() {
                Ok(known) => crate::controller::drift::drifted(
                    before,
                    &now,
                    &known,
                    (*before_started, started),
                ),
                // A reconcile panicked while recording: compare the passes only.
                Err(_) => crate::controller::drift::changed(before, &now),
            };
            if !changed.is_empty() {
                tracing::info!(?changed, "drift scan: IAM changed");
            }
            for (policies, groups, users, roles) in wakes.iter() {
                policies.matching(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.arn.as_ref())
                        .is_some_and(|arn| changed.policies.contains(arn))
                });
                // IAM names are case-insensitive; the scan reports them lower-cased.
                groups.matching(|g| changed.groups.contains(&g.iam_name().to_lowercase()));
                // A user is woken by its operator-owned self-management policy too: its
                // reconcile restores the policy's document.
                users.matching(|u| {
                    changed.users.contains(&u.iam_name().to_lowercase())
                        || u.status
                            .as_ref()
                            .and_then(|s| s.console.as_ref())
                            .and_then(|c| c.self_management_policy.as_ref())
                            .is_some_and(|arn| changed.policies.contains(arn))
                });
                roles.matching(|r| changed.roles.contains(&r.iam_name().to_lowercase()));
            }
        }
        previous = Some((now, started));
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
    // Namespace labels (metadata only): they decide which IamTenancyPolicy governs a
    // namespace, so a changed policy wakes only the objects it concerns, and a namespace
    // whose labels change has its objects checked again.
    let (namespace_labels, writer) = kube::runtime::reflector::store();
    let mut all = Vec::new();
    let mut wakes = Vec::new();
    // Readiness: every controller's cache has listed its objects once.
    let mut synced: Vec<futures::future::BoxFuture<'static, bool>> = Vec::new();
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

        // A changed IamTenancyPolicy applies to existing objects at once: it wakes the
        // objects of the namespaces it selects, or selected before the change.
        let tenancy: Api<IamTenancyPolicy> = Api::all(client.clone());

        let (policy_ctl, policy_wake) = controller(policies.clone(), &config);
        let policy_store = policy_ctl.store();
        synced.push(cache_synced(policy_ctl.store()));
        let policy_ctl = policy_ctl
            .watches_resilient(
                tenancy.clone(),
                wc.clone(),
                governed_by(policy_store, namespace_labels.clone()),
            )
            .shutdown_on_signal()
            .run(
                reconcile::<IamPolicy>,
                error_policy::<IamPolicy>,
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));

        let (group_ctl, group_wake) = controller(groups.clone(), &config);
        let group_store = group_ctl.store();
        synced.push(cache_synced(group_ctl.store()));
        let all_groups = group_ctl.store();
        let group_ctl = group_ctl
            .watches_resilient(
                tenancy.clone(),
                wc.clone(),
                governed_by(all_groups, namespace_labels.clone()),
            )
            .watches_resilient(policies.clone(), wc.clone(), move |p: IamPolicy| {
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

        let (role_ctl, role_wake) = controller(
            match &ns {
                Some(ns) => Api::<IamRole>::namespaced(client.clone(), ns),
                None => Api::<IamRole>::all(client.clone()),
            },
            &config,
        );
        synced.push(cache_synced(role_ctl.store()));
        let role_ctl = {
            let all_roles = role_ctl.store();
            let by_policy = role_ctl.store();
            let by_account = role_ctl.store();
            // Metadata only: a ServiceAccount's creation (or an edit of its annotations)
            // matters to the roles that annotate it, never its payload.
            let accounts: Api<PartialObjectMeta<ServiceAccount>> = match &ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            role_ctl
                .watches_resilient(
                    tenancy.clone(),
                    wc.clone(),
                    governed_by(all_roles, namespace_labels.clone()),
                )
                .watches_resilient(policies.clone(), wc.clone(), move |p: IamPolicy| {
                    let ns = p.namespace();
                    let name = p.name_any();
                    by_policy
                        .state()
                        .into_iter()
                        .filter(|r| {
                            r.namespace() == ns
                                && (refs_policy(&r.spec.policies, &name)
                                    || r.spec.permissions_boundary.as_ref().is_some_and(|b| {
                                        refs_policy(std::slice::from_ref(b), &name)
                                    }))
                        })
                        .map(|r| ObjectRef::from_obj(r.as_ref()))
                        .collect::<Vec<_>>()
                })
                .watches_resilient(
                    accounts,
                    wc.clone(),
                    move |sa: PartialObjectMeta<ServiceAccount>| {
                        let ns = sa.namespace();
                        let name = sa.name_any();
                        by_account
                            .state()
                            .into_iter()
                            .filter(|r| {
                                r.namespace() == ns
                                    && r.spec.trust.annotate_service_accounts == Some(true)
                                    && (r
                                        .spec
                                        .trust
                                        .service_accounts
                                        .iter()
                                        .any(|s| s.name == name)
                                        || r.status.as_ref().is_some_and(|s| {
                                            s.annotated_service_accounts.contains(&name)
                                        }))
                            })
                            .map(|r| ObjectRef::from_obj(r.as_ref()))
                            .collect::<Vec<_>>()
                    },
                )
                .owns_stream(secret_events(
                    &client,
                    &ns,
                    &ctx,
                    watcher::Config::default().labels(crate::k8s::secrets::MANAGED_BY_SELECTOR),
                ))
                .shutdown_on_signal()
                .run(reconcile::<IamRole>, error_policy::<IamRole>, ctx.clone())
                .for_each(|_| futures::future::ready(()))
        };

        let (user_ctl, user_wake) = controller(users.clone(), &config);
        synced.push(cache_synced(user_ctl.store()));
        wakes.push((policy_wake, group_wake, user_wake, role_wake));
        let by_policy = user_ctl.store();
        let by_group = user_ctl.store();
        let by_secret = user_ctl.store();
        let all_users = user_ctl.store();
        let user_ctl = user_ctl
            .watches_resilient(
                tenancy,
                wc.clone(),
                governed_by(all_users, namespace_labels.clone()),
            )
            .watches_stream(
                secret_events(&client, &ns, &ctx, watcher::Config::default()),
                move |s| user_secret_wakes(&s, &by_secret.state()),
            )
            .watches_resilient(policies, wc.clone(), move |p: IamPolicy| {
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
            .watches_resilient(groups, wc, move |g: IamGroup| {
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
            futures::join!(policy_ctl, group_ctl, user_ctl, role_ctl);
        })
            as std::pin::Pin<
                Box<dyn std::future::Future<Output = ()> + Send>,
            >);
    }
    let wakes = Arc::new(wakes);
    let namespace_watch = {
        let wakes = wakes.clone();
        let mut seen: HashMap<String, std::collections::BTreeMap<String, String>> = HashMap::new();
        watch(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .reflect(writer)
        .applied_objects()
        .for_each(move |ns| {
            if let Ok(ns) = ns {
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                let before = seen.insert(ns.name_any(), labels.clone());
                if before.is_some_and(|before| before != labels) {
                    wake_namespace(&wakes, &ns.name_any());
                }
            }
            futures::future::ready(())
        })
    };
    let controllers = futures::future::join_all(all);
    let readiness = {
        let metrics = ctx.metrics.clone();
        async move {
            if futures::future::join_all(synced)
                .await
                .into_iter()
                .all(|ok| ok)
            {
                tracing::info!("watches synced; ready");
                metrics.set_ready(true);
            }
            std::future::pending::<()>().await;
        }
    };
    // IamAccountSettings: cluster-scoped, one controller whatever the watched namespaces.
    let account_settings = account::run(ctx.clone(), config.clone());
    let drift = async {
        if drift_scan_interval.is_zero() {
            std::future::pending::<()>().await;
        }
        drift_scan(ctx, drift_scan_interval, wakes).await;
    };
    // The scan and the namespace watch never end by themselves; the controllers end on a
    // shutdown signal.
    tokio::select! {
        _ = controllers => {}
        _ = drift => {}
        _ = namespace_watch => {}
        _ = readiness => {}
        _ = account_settings => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ConsoleSpec, IamUserSpec, PasswordSecretRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    fn user(ns: &str, name: &str, chosen: Option<&str>) -> Arc<IamUser> {
        let spec: IamUserSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut u = IamUser::new(name, spec);
        u.metadata.namespace = Some(ns.into());
        u.spec.console = chosen.map(|secret| ConsoleSpec {
            enabled: true,
            initial_password_secret_ref: Some(PasswordSecretRef {
                name: secret.into(),
                key: "password".into(),
            }),
            ..Default::default()
        });
        Arc::new(u)
    }

    fn secret(
        ns: &str,
        name: &str,
        managed: bool,
        owner: Option<&str>,
    ) -> PartialObjectMeta<Secret> {
        let mut meta = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        };
        if managed {
            meta.labels =
                Some([("app.kubernetes.io/managed-by".into(), "iam-operator".into())].into());
        }
        meta.owner_references = owner.map(|o| {
            vec![OwnerReference {
                api_version: "iam.kubeop.dev/v1alpha1".into(),
                kind: "IamUser".into(),
                name: o.into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        });
        PartialObjectMeta {
            types: None,
            metadata: meta,
            _phantom: Default::default(),
        }
    }

    fn names(refs: Vec<ObjectRef<IamUser>>) -> Vec<String> {
        refs.into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect()
    }

    #[test]
    fn a_secret_wakes_its_owner_and_the_users_that_chose_a_password_in_it() {
        let users = [
            user("a", "alice", Some("first")),
            user("a", "bob", Some("other")),
            user("b", "carol", Some("first")),
            user("a", "dora", None),
        ];
        // A person's Secret: the users of its namespace naming it, nobody else.
        assert_eq!(
            names(user_secret_wakes(
                &secret("a", "first", false, None),
                &users
            )),
            ["a/alice"]
        );
        assert!(user_secret_wakes(&secret("a", "unrelated", false, None), &users).is_empty());
        // The operator's own Secret: its owner.
        assert_eq!(
            names(user_secret_wakes(
                &secret("a", "dora-console", true, Some("dora")),
                &users
            )),
            ["a/dora"]
        );
        // An owner reference without the operator's label is not the operator's Secret.
        assert!(user_secret_wakes(&secret("a", "x", false, Some("dora")), &users).is_empty());
    }
}
