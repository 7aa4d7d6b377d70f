//! The controllers. Each kind's module has a `sync` (observe → plan → apply against IAM)
//! and a `cleanup` (the finalizer's work); both take an [`Engine`] and no Kubernetes client,
//! so they run against the IAM emulator alone in tests. `runtime` wires them into
//! kube-runtime `Controller`s.

pub mod drift;
pub mod group;
pub mod permissions;
pub mod plan;
pub mod policy;
pub mod runtime;
pub mod user;

use crate::api::{ADOPT_ANNOTATION, DeletionPolicy, IamGroup, IamGroupStatus, OWNER_TAG};
use crate::error::{Error, Result};
use crate::iam::Iam;
use crate::settings::Settings;
use async_trait::async_trait;
use kube::ResourceExt;
use std::sync::Arc;

/// Resolves references to other objects in the same namespace. Production reads them from
/// the Kubernetes API; tests supply them directly.
#[async_trait]
pub trait Dependencies: Send + Sync {
    /// ARN of the Ready IamPolicy `name`, or `DependencyNotReady`.
    async fn policy_arn(&self, namespace: &str, name: &str) -> Result<String>;
    /// IAM name of the Ready IamGroup `name`, or `DependencyNotReady`.
    async fn group_name(&self, namespace: &str, name: &str) -> Result<String>;
    /// `namespace/name` of another IamGroup that already manages the IAM group with this
    /// id. Groups cannot be tagged, so this is how adoption avoids taking one twice.
    async fn group_claimed_by(
        &self,
        group_id: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>>;
    /// Writes an IamGroup's status in the middle of a reconcile (the intent to create).
    async fn record_group_status(&self, group: &IamGroup, status: &IamGroupStatus) -> Result<()>;
}

/// What every reconcile needs: the IAM port, the settings and the dependency resolver.
#[derive(Clone)]
pub struct Engine {
    pub iam: Arc<dyn Iam>,
    pub settings: Settings,
    pub deps: Arc<dyn Dependencies>,
}

/// What a successful sync reports for the Ready condition, plus notable changes for events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Synced {
    /// Things that changed in IAM, as short sentences (become Kubernetes events).
    pub changes: Vec<String>,
    /// Ask to be reconciled again after this long (e.g. a rotation grace period ending).
    pub requeue_after: Option<std::time::Duration>,
}

impl Synced {
    pub fn note(&mut self, change: impl Into<String>) {
        self.changes.push(change.into());
    }

    /// Requeues no later than `after`.
    pub fn requeue_within(&mut self, after: std::time::Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

impl Engine {
    pub fn owner_of<K: ResourceExt>(&self, obj: &K) -> String {
        self.settings
            .owner(&obj.namespace().unwrap_or_default(), &obj.name_any())
    }

    pub fn deletion_policy(&self, spec: Option<DeletionPolicy>) -> DeletionPolicy {
        spec.unwrap_or(self.settings.default_deletion_policy)
    }

    /// IAM account id and partition, for building ARNs.
    pub async fn account(&self) -> Result<(String, String)> {
        Ok(self.iam.account().await?)
    }
}

/// Whether the CR allows taking over an IAM entity that already exists.
pub fn adopt_allowed<K: ResourceExt>(obj: &K) -> bool {
    obj.annotations()
        .get(ADOPT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// An entity is taken over only where the spec says it is: the path is what
/// `--iam-path-prefix` guards, so adopting one elsewhere would step around that guardrail.
/// A conflict, not invalid input: cleanup then leaves the entity alone.
pub fn check_adopted_path(kind: &str, name: &str, actual: &str, spec: &str) -> Result<()> {
    if actual == spec {
        return Ok(());
    }
    Err(Error::NameConflict(format!(
        "IAM {kind} {name} exists at path {actual}, not at spec.path {spec}; declare it with spec.path {actual} to adopt it, or choose another name"
    )))
}

/// Ownership decision for a taggable entity (user or policy) found in IAM.
pub fn check_owner<K: ResourceExt>(
    obj: &K,
    kind: &str,
    iam_name: &str,
    owner_tag: Option<&String>,
    ours: &str,
    known: bool,
) -> Result<()> {
    match owner_tag {
        Some(tag) if tag == ours => Ok(()),
        Some(tag) => Err(Error::NameConflict(format!(
            "IAM {kind} {iam_name} is owned by {tag}; choose another name"
        ))),
        // Known: this CR created or adopted it before and the tag was removed out of band.
        None if known || adopt_allowed(obj) => Ok(()),
        None => Err(Error::NameConflict(format!(
            "IAM {kind} {iam_name} already exists and is not managed by this resource; set the annotation {ADOPT_ANNOTATION}: \"true\" to take it over, or choose another name"
        ))),
    }
}

/// The tags the operator keeps on a user or policy: the spec's plus its owner tag.
pub fn desired_tags(
    spec: &std::collections::BTreeMap<String, String>,
    owner: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut tags = spec.clone();
    tags.insert(OWNER_TAG.into(), owner.into());
    tags
}

/// What a cleanup may delete: the observed entity if it exists and belongs to this
/// resource; `None` when it is gone or owned by someone else (never touched).
pub fn ours_to_delete<T>(observed: Result<Option<T>>) -> Result<Option<T>> {
    match observed {
        Err(Error::NameConflict(_)) => Ok(None),
        other => other,
    }
}
