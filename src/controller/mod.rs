//! The reconcile logic of every kind, one pipeline each: observe IAM (and the cluster
//! through the `k8s` ports) → guard (ownership, guardrails, limits) → plan (pure functions
//! in `plan` and `credentials::keys`) → apply against IAM, with the changes returned as
//! typed [`Change`]s. Each kind's module has a `reconcile` and a `cleanup` (the
//! finalizer's work); both take an [`Engine`] and the `k8s` ports, never a Kubernetes
//! client, so they run against the IAM emulator and in-memory ports in tests. The runtime
//! wires them into kube-runtime controllers.

pub mod account;
pub mod change;
pub mod credentials;
pub mod drift;
pub mod group;
pub mod permissions;
pub mod plan;
pub mod policy;
pub mod role;
pub mod self_management;
pub mod tenancy;
pub mod user;

pub use change::{Change, Reason, Synced};

use crate::api::{ADOPT_ANNOTATION, DeletionPolicy, OWNER_TAG};
use crate::error::{Error, Result};
use crate::iam::Iam;
use crate::k8s::Dependencies;
use crate::metrics::Metrics;
use crate::settings::Settings;
use kube::ResourceExt;
use std::sync::Arc;

/// What every reconcile needs: the IAM port, the settings, the dependency resolver and the
/// metrics.
#[derive(Clone)]
pub struct Engine {
    pub iam: Arc<dyn Iam>,
    pub settings: Settings,
    pub deps: Arc<dyn Dependencies>,
    pub metrics: Arc<Metrics>,
    /// Other identities (tenants' roles); `None`: a tenancy naming a role is refused.
    pub identities: Option<Arc<dyn crate::iam::Identities>>,
}

impl Engine {
    pub fn owner_of<K: ResourceExt>(&self, obj: &K) -> String {
        self.settings
            .owner(&obj.namespace().unwrap_or_default(), &obj.name_any())
    }

    pub fn deletion_policy(&self, spec: Option<DeletionPolicy>) -> DeletionPolicy {
        spec.unwrap_or(self.settings.default_deletion_policy)
    }

    /// The rules of the namespace `obj` lives in (its IamTenancyPolicy, or the flags).
    pub async fn tenancy<K: ResourceExt>(&self, obj: &K) -> Result<tenancy::Tenancy> {
        let namespace = obj.namespace().unwrap_or_default();
        let selection = self.deps.tenancy(&namespace).await?;
        tenancy::Tenancy::new(&self.settings, &namespace, &selection).map_err(Error::InvalidSpec)
    }

    /// The engine acting for a tenant: as the role its tenancy names, if any.
    pub async fn acting_for(&self, tenancy: &tenancy::Tenancy) -> Result<Engine> {
        match (&tenancy.role, &self.identities) {
            (None, _) => Ok(self.clone()),
            (Some((role, external_id)), Some(identities)) => Ok(Engine {
                iam: identities.assume(role, external_id.as_deref()).await,
                ..self.clone()
            }),
            (Some((role, _)), None) => Err(Error::InvalidSpec(format!(
                "{} names the role {role}, but this operator cannot assume roles",
                tenancy.source
            ))),
        }
    }

    /// The tenancy of `obj` and the engine acting for it.
    pub async fn for_tenant<K: ResourceExt>(&self, obj: &K) -> Result<(tenancy::Tenancy, Engine)> {
        let tenancy = self.tenancy(obj).await?;
        let engine = self.acting_for(&tenancy).await?;
        Ok((tenancy, engine))
    }

    /// IAM account id and partition, for building ARNs.
    pub async fn account(&self) -> Result<(String, String)> {
        Ok(self.iam.account().await?)
    }
}

/// Whether the CR asks to take over an IAM entity that already exists (a request; the
/// tenancy rules and the administrator's tag in AWS decide).
pub fn adopt_requested<K: ResourceExt>(obj: &K) -> bool {
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

/// Ownership decision for a taggable entity (user or policy) found in IAM: its owner tag
/// names this resource, or this resource created it before (the tag was removed out of
/// band), or — when reconciling, never when cleaning up (`tenancy` is `None`) — it is
/// adopted with the tenancy's and the administrator's consent.
pub fn check_owner<K: ResourceExt>(
    obj: &K,
    tenancy: Option<&tenancy::Tenancy>,
    kind: &str,
    iam_name: &str,
    tags: &std::collections::BTreeMap<String, String>,
    ours: &str,
    known: bool,
) -> Result<()> {
    match tags.get(OWNER_TAG) {
        Some(tag) if tag == ours => Ok(()),
        Some(tag) => Err(Error::NameConflict(format!(
            "IAM {kind} {iam_name} is owned by {tag}; choose another name"
        ))),
        None if known => Ok(()),
        None => match tenancy {
            Some(t) => t
                .check_adoption(kind, iam_name, adopt_requested(obj), tags)
                .map_err(Error::NameConflict),
            None => Err(Error::NameConflict(format!(
                "IAM {kind} {iam_name} is not managed by this resource"
            ))),
        },
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
