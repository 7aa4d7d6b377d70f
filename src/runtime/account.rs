//! IamAccountSettings' wiring. The kind is cluster-scoped, so it has its own small
//! reconcile rather than `Managed` (namespaced only): no finalizer (deleting the object
//! leaves the account's settings as they are), status written with server-side apply,
//! and a requeue at the resync interval that repairs changes made outside the operator.

use super::context::Context;
use super::watch::watch;
use crate::api::{IamAccountSettings, IamAccountSettingsStatus};
use crate::controller::account;
use crate::k8s::FIELD_MANAGER;
use crate::status::{ObjectStatus, Summary, apply_summary};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use std::sync::Arc;

impl ObjectStatus for IamAccountSettingsStatus {
    fn conditions(&self) -> &Vec<Condition> {
        &self.conditions
    }
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn observed_generation_mut(&mut self) -> &mut Option<i64> {
        &mut self.observed_generation
    }
}

/// A failed reconcile, for kube-runtime's error policy.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccountError(String);

fn key(name: &str) -> String {
    format!("IamAccountSettings//{name}")
}

async fn reconcile(
    cached: Arc<IamAccountSettings>,
    ctx: Arc<Context>,
) -> Result<Action, AccountError> {
    let name = cached.name_any();
    let api: Api<IamAccountSettings> = Api::all(ctx.client.clone());
    let fresh = match api.get_opt(&name).await {
        Ok(Some(fresh)) => fresh,
        Ok(None) => {
            ctx.forget(&key(&name));
            return Ok(Action::await_change());
        }
        Err(e) => return Err(AccountError(format!("reading {name}: {e}"))),
    };
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(|e| AccountError(format!("listing IamAccountSettings: {e}")))?
        .items;
    let before = fresh.status.clone();
    let mut status = before.clone().unwrap_or_default();
    let result = account::reconcile(&ctx.engine, &fresh, &all, &mut status).await;
    let summary = match &result {
        Ok(_) => Summary::ready(
            "UpToDate",
            "the account's alias and password policy match the spec",
        ),
        Err(e) => Summary::from_error(e),
    };
    apply_summary(
        &mut status,
        &summary,
        fresh.meta().generation,
        Timestamp::now(),
    );
    if before.as_ref() != Some(&status) {
        let patch = serde_json::json!({
            "apiVersion": IamAccountSettings::api_version(&()),
            "kind": IamAccountSettings::kind(&()),
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| AccountError(format!("writing the status of {name}: {e}")))?;
    }
    match result {
        Ok(synced) => {
            // Logged, not published as events: an event of a cluster-scoped object goes
            // to the `default` namespace, which the chart's namespaced RBAC does not reach.
            for change in &synced.changes {
                tracing::info!(object = %name, reason = change.reason.as_str(), "{}", change.message);
            }
            ctx.forget(&key(&name));
            Ok(Action::requeue(
                synced
                    .requeue_after
                    .unwrap_or(ctx.engine.settings.resync_interval),
            ))
        }
        Err(_) => Err(AccountError(summary.message)),
    }
}

fn error_policy(obj: Arc<IamAccountSettings>, err: &AccountError, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&key(&obj.name_any()), false);
    tracing::warn!(error = %err, retry_in = ?delay, "reconcile of IamAccountSettings failed");
    Action::requeue(delay)
}

/// The controller of IamAccountSettings. Like the other kinds, it runs on spec changes,
/// not on its own status writes (two operators sharing a cluster would otherwise wake each
/// other without end); resyncs and retries requeue it. A second object for an account is
/// retried with the usual backoff, so it takes over within minutes of the first one's
/// deletion.
pub async fn run(ctx: Arc<Context>, config: ControllerConfig) {
    let api: Api<IamAccountSettings> = Api::all(ctx.client.clone());
    let (reader, writer) = kube::runtime::reflector::store();
    let changes = watch(api, watcher::Config::default())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(changes, reader)
        .with_config(config)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
