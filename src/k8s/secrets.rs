//! The Secrets an IamUser's credentials are published in: a port ([`SecretStore`]) the
//! credential protocol uses, and its Kubernetes implementation ([`KubeSecrets`]).

use super::FIELD_MANAGER;
use crate::api::IamUser;
use crate::error::{Error, Result};
use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// Label selector of the Secrets the operator writes.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=iam-operator";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "iam-operator");

/// Secret values by key. `Debug` shows the keys only, so a value can never reach a log
/// through a `{:?}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData(pub BTreeMap<String, String>);

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretData {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// A Secret as the credential protocol sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSecret {
    pub data: SecretData,
    pub annotations: BTreeMap<String, String>,
}

/// The Secrets of one IamUser. Every method refuses to touch a Secret that this IamUser did
/// not create.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The Secret if it exists; one created by someone else is a `SecretConflict`.
    async fn get(&self, name: &str) -> Result<Option<StoredSecret>>;
    /// Creates or replaces the Secret; `dry_run` only validates the write.
    async fn put(&self, name: &str, secret: &StoredSecret, dry_run: bool) -> Result<()>;
    /// Deletes the Secret if it is this IamUser's.
    async fn delete(&self, name: &str) -> Result<()>;
    /// Keeps the Secret but stops it being garbage-collected with the IamUser.
    async fn orphan(&self, name: &str) -> Result<()>;
    /// Whether the namespace is being deleted, so that no Secret can be kept in it.
    async fn namespace_terminating(&self) -> Result<bool>;
}

/// `namespace/name@resourceVersion` of the Secrets this operator just wrote, so that their
/// watch events wake nobody: the reconcile that wrote them already accounts for them.
#[derive(Default)]
pub struct OwnWrites(Mutex<HashSet<String>>);

impl OwnWrites {
    fn remember(&self, version: String) {
        if let Ok(mut own) = self.0.lock() {
            // Events can be missed (a relist shows only the latest version); stay bounded.
            if own.len() > 10_000 {
                own.clear();
            }
            own.insert(version);
        }
    }

    /// Whether this event shows a Secret exactly as this operator wrote it (consumed once).
    pub fn is_own(&self, meta: &ObjectMeta) -> bool {
        self.0
            .lock()
            .is_ok_and(|mut own| own.remove(&version(meta)))
    }
}

fn version(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}@{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.resource_version.as_deref().unwrap_or_default()
    )
}

/// The Kubernetes Secrets of one IamUser, owned by it (owner reference with its uid).
pub struct KubeSecrets {
    api: Api<Secret>,
    owner: OwnerReference,
    namespace: Option<String>,
    own_writes: Arc<OwnWrites>,
}

impl KubeSecrets {
    pub fn new(client: kube::Client, obj: &IamUser, own_writes: Arc<OwnWrites>) -> Self {
        let namespace = obj.namespace();
        Self {
            api: Api::namespaced(client, namespace.as_deref().unwrap_or_default()),
            owner: OwnerReference {
                api_version: IamUser::api_version(&()).into_owned(),
                kind: IamUser::kind(&()).into_owned(),
                name: obj.name_any(),
                uid: obj.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            namespace,
            own_writes,
        }
    }

    fn owned(&self, secret: &Secret) -> bool {
        secret
            .owner_references()
            .iter()
            .any(|r| r.uid == self.owner.uid)
    }

    async fn get_owned(&self, name: &str) -> Result<Option<Secret>> {
        Ok(self.api.get_opt(name).await?.filter(|s| self.owned(s)))
    }
}

#[async_trait]
impl SecretStore for KubeSecrets {
    async fn get(&self, name: &str) -> Result<Option<StoredSecret>> {
        let Some(secret) = self.api.get_opt(name).await? else {
            return Ok(None);
        };
        if !self.owned(&secret) {
            return Err(Error::SecretConflict(format!(
                "Secret {name} already exists and was not created for this IamUser; delete it or choose another secretName"
            )));
        }
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
            .collect();
        Ok(Some(StoredSecret {
            data: SecretData(data),
            annotations: secret.metadata.annotations.unwrap_or_default(),
        }))
    }

    async fn put(&self, name: &str, secret: &StoredSecret, dry_run: bool) -> Result<()> {
        let rendered = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: self.namespace.clone(),
                labels: Some([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into()),
                annotations: Some(secret.annotations.clone()),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                secret
                    .data
                    .0
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                    .collect(),
            ),
            ..Default::default()
        };
        let mut body = serde_json::to_value(&rendered)
            .map_err(|_| Error::InvalidSpec(format!("cannot render Secret {name}")))?;
        body["apiVersion"] = "v1".into();
        body["kind"] = "Secret".into();
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        if dry_run {
            params = params.dry_run();
        }
        let written = self.api.patch(name, &params, &Patch::Apply(&body)).await?;
        if !dry_run {
            self.own_writes.remember(version(&written.metadata));
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        if self.get_owned(name).await?.is_some() {
            match self.api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn namespace_terminating(&self) -> Result<bool> {
        // The API server refuses any new object in a terminating namespace with the cause
        // NamespaceTerminating; a dry-run create asks exactly that, with the RBAC the
        // operator already has and without writing anything.
        let probe = Secret {
            metadata: ObjectMeta {
                name: Some(format!("iam-operator-probe-{}", self.owner.uid)),
                namespace: self.namespace.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let params = kube::api::PostParams {
            dry_run: true,
            ..Default::default()
        };
        match self.api.create(&params, &probe).await {
            Ok(_) => Ok(false),
            Err(kube::Error::Api(s)) if crate::error::namespace_terminating(&s) => Ok(true),
            // It exists (it never should): the namespace accepted it, so it is not ending.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn orphan(&self, name: &str) -> Result<()> {
        if self.get_owned(name).await?.is_some() {
            let patch = serde_json::json!({"metadata": {"ownerReferences": null}});
            self.api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_debug_shows_keys_only() {
        let data = SecretData([("password".to_string(), "hunter2-secret".to_string())].into());
        let shown = format!("{data:?}");
        assert!(shown.contains("password"));
        assert!(!shown.contains("hunter2"));
    }
}
