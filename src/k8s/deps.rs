//! The objects a resource depends on (IamPolicy and IamGroup references in its namespace),
//! read from the Kubernetes API.

use super::NamespacedKind;
use crate::api::{IamGroup, IamPolicy, IamTenancyPolicy};
use crate::error::{Error, Result};
use crate::status::{ObjectStatus, READY};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::{Selector, SelectorExt};
use kube::{Client, Resource, ResourceExt};

/// Which tenancy policy governs a namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// No IamTenancyPolicy selects it: the operator's flags apply.
    Flags,
    /// One IamTenancyPolicy (its name and spec).
    Policy(String, Box<crate::api::IamTenancyPolicySpec>),
    /// Several select it: nothing is granted until one stops selecting it.
    Ambiguous(Vec<String>),
}

/// Resolves references to other objects in the same namespace. Production reads them from
/// the Kubernetes API; tests supply them directly.
#[async_trait]
pub trait Dependencies: Send + Sync {
    /// ARN of the Ready IamPolicy `name`, or `DependencyNotReady`.
    async fn policy_arn(&self, namespace: &str, name: &str) -> Result<String>;
    /// IAM name of the Ready IamGroup `name`, or `DependencyNotReady`.
    async fn group_name(&self, namespace: &str, name: &str) -> Result<String>;
    /// `namespace/name` of an IamGroup other than `namespace/name` that manages the IAM
    /// group with this id (its status records the id). Groups cannot be tagged, so this is
    /// how adoption avoids taking one twice, and how a group joined by name is known to be
    /// another namespace's.
    async fn group_claimed_by(
        &self,
        group_id: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>>;
    /// The IamTenancyPolicy that governs `namespace`.
    async fn tenancy(&self, namespace: &str) -> Result<Selection>;
    /// What the namespace's IamUsers other than `except` hold: users that exist in IAM and
    /// published access keys (for quotas).
    async fn usage(&self, namespace: &str, except: &str) -> Result<Usage>;
}

/// What a namespace's IamUsers hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub users: u32,
    pub access_keys: u32,
}

/// Reads dependencies from the Kubernetes API.
pub struct KubeDependencies {
    pub client: Client,
    /// The watched namespaces (empty: all), the scope of the operator's RBAC.
    pub namespaces: Vec<String>,
}

impl KubeDependencies {
    /// Every IamGroup the operator can see (the watched namespaces).
    async fn all_groups(&self) -> Result<Vec<IamGroup>> {
        let apis: Vec<Api<IamGroup>> = if self.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        let mut all = Vec::new();
        for api in apis {
            all.extend(api.list(&Default::default()).await?.items);
        }
        Ok(all)
    }
}

/// Whether a dependency reports Ready for its current generation.
pub fn ready_now<K: Resource>(obj: &K, status: Option<&impl ObjectStatus>) -> bool {
    obj.meta().deletion_timestamp.is_none()
        && status.is_some_and(|s| {
            s.conditions().iter().any(|c| {
                c.type_ == READY
                    && c.status == "True"
                    && c.observed_generation == obj.meta().generation
            })
        })
}

async fn get_dependency<K: NamespacedKind>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<K> {
    let kind = K::kind(&());
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name).await?.ok_or_else(|| {
        Error::DependencyNotReady(format!("waiting for {kind} {name}: it does not exist"))
    })
}

fn not_ready(kind: &str, name: &str) -> Error {
    Error::DependencyNotReady(format!("waiting for {kind} {name} to be Ready"))
}

#[async_trait]
impl Dependencies for KubeDependencies {
    async fn policy_arn(&self, namespace: &str, name: &str) -> Result<String> {
        let policy: IamPolicy = get_dependency(&self.client, namespace, name).await?;
        if !ready_now(&policy, policy.status.as_ref()) {
            return Err(not_ready("IamPolicy", name));
        }
        policy.status.and_then(|s| s.arn).ok_or_else(|| {
            Error::DependencyNotReady(format!("waiting for IamPolicy {name} to have an ARN"))
        })
    }

    async fn group_name(&self, namespace: &str, name: &str) -> Result<String> {
        let group: IamGroup = get_dependency(&self.client, namespace, name).await?;
        if !ready_now(&group, group.status.as_ref()) {
            return Err(not_ready("IamGroup", name));
        }
        Ok(group.iam_name())
    }

    async fn group_claimed_by(
        &self,
        group_id: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>> {
        for g in self.all_groups().await? {
            let ns = g.namespace().unwrap_or_default();
            let claims = g.status.as_ref().and_then(|s| s.group_id.as_deref()) == Some(group_id);
            if claims && (ns.as_str(), g.name_any().as_str()) != (namespace, name) {
                return Ok(Some(format!("{ns}/{}", g.name_any())));
            }
        }
        Ok(None)
    }

    async fn usage(&self, namespace: &str, except: &str) -> Result<Usage> {
        let users: Api<crate::api::IamUser> = Api::namespaced(self.client.clone(), namespace);
        let mut usage = Usage::default();
        for u in users.list(&Default::default()).await? {
            if u.name_any() == except {
                continue;
            }
            let status = u.status.unwrap_or_default();
            usage.users += u32::from(status.user_id.is_some());
            usage.access_keys +=
                u32::from(status.access_key.is_some_and(|a| a.access_key_id.is_some()));
        }
        Ok(usage)
    }

    async fn tenancy(&self, namespace: &str) -> Result<Selection> {
        let ns: Api<Namespace> = Api::all(self.client.clone());
        let labels = ns
            .get_opt(namespace)
            .await?
            .and_then(|n| n.metadata.labels)
            .unwrap_or_default();
        let policies: Api<IamTenancyPolicy> = Api::all(self.client.clone());
        let mut selecting = Vec::new();
        for p in policies.list(&Default::default()).await? {
            // A selector that cannot be parsed selects nothing it could grant: treat it as
            // selecting every namespace, so its error blocks rather than opens.
            let matches = Selector::try_from(p.spec.namespace_selector.clone())
                .map_or(true, |s| s.matches(&labels));
            if matches {
                selecting.push(p);
            }
        }
        Ok(match selecting.len() {
            0 => Selection::Flags,
            1 => {
                let p = selecting.remove(0);
                Selection::Policy(p.name_any(), Box::new(p.spec))
            }
            _ => Selection::Ambiguous(selecting.iter().map(|p| p.name_any()).collect()),
        })
    }
}
