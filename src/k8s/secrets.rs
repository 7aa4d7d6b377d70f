//! The Secrets credentials are published in (an IamUser's access key and console password,
//! an IamRole's session credentials): a port ([`SecretStore`]) the credential protocols
//! use, and its Kubernetes implementation ([`KubeSecrets`]), owned by the object the
//! credentials belong to.

use super::FIELD_MANAGER;
use crate::api::IamUser;
use crate::error::{Error, Result};
use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap};
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

/// A key of a Secret that the operator only reads: one a person created, such as a chosen
/// console password. The value stays in a `SecretString` (redacted `Debug`).
#[derive(Debug)]
pub enum InputKey {
    /// The Secret does not exist.
    NoSecret,
    /// The Secret exists without that key.
    NoKey,
    /// The value is not UTF-8 text.
    NotText,
    Value(SecretString),
}

/// The Secrets of one owner (an IamUser or an IamRole). Every method refuses to touch a
/// Secret that this owner did not create, except [`SecretStore::read_input`], which only
/// reads.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The Secret if it exists; one created by someone else is a `SecretConflict`.
    async fn get(&self, name: &str) -> Result<Option<StoredSecret>>;
    /// Creates or replaces the Secret; `dry_run` only validates the write.
    async fn put(&self, name: &str, secret: &StoredSecret, dry_run: bool) -> Result<()>;
    /// Deletes the Secret if it is this owner's.
    async fn delete(&self, name: &str) -> Result<()>;
    /// Keeps the Secret but stops it being garbage-collected with its owner.
    async fn orphan(&self, name: &str) -> Result<()>;
    /// Whether the namespace is being deleted, so that no Secret can be kept in it.
    async fn namespace_terminating(&self) -> Result<bool>;
    /// A key of a Secret in the owner's namespace that a person created (an input such as
    /// a chosen password): read, never owned or written. The default reads through
    /// [`Self::get`], for stores whose Secrets are all readable that way (in-memory ones).
    async fn read_input(&self, name: &str, key: &str) -> Result<InputKey> {
        Ok(match self.get(name).await? {
            None => InputKey::NoSecret,
            Some(secret) => match secret.data.get(key) {
                Some(v) => InputKey::Value(SecretString::from(v.to_string())),
                None => InputKey::NoKey,
            },
        })
    }
}

/// Annotation carrying the id of the operator's write that produced a Secret's version.
const WRITE_ID: &str = "iam.kubeop.dev/write-id";

/// The Secret writes this operator just made, so that their watch events wake nobody: the
/// reconcile that wrote them already accounts for them. Each write carries a fresh id in
/// an annotation, registered *before* the write is sent, because the watch event can arrive
/// before the write's response does; once the response is in, its `resourceVersion` is
/// recorded too, so a later edit that kept the annotation is not mistaken for the write.
#[derive(Default)]
pub struct OwnWrites(Mutex<HashMap<String, Option<String>>>);

impl OwnWrites {
    fn begin(&self, id: &str) {
        if let Ok(mut own) = self.0.lock() {
            // Events can be missed (a relist shows only the latest version); stay bounded.
            if own.len() > 10_000 {
                own.clear();
            }
            own.insert(id.to_string(), None);
        }
    }

    fn written(&self, id: &str, resource_version: Option<String>) {
        if let Ok(mut own) = self.0.lock()
            && let Some(rv) = own.get_mut(id)
        {
            *rv = resource_version;
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut own) = self.0.lock() {
            own.remove(id);
        }
    }

    /// Whether this event shows a Secret exactly as this operator wrote it (consumed once).
    pub fn is_own(&self, meta: &ObjectMeta) -> bool {
        let Some(id) = meta.annotations.as_ref().and_then(|a| a.get(WRITE_ID)) else {
            return false;
        };
        let Ok(mut own) = self.0.lock() else {
            return false;
        };
        match own.get(id) {
            Some(Some(rv)) if Some(rv) != meta.resource_version.as_ref() => false,
            Some(_) => own.remove(id).is_some(),
            None => false,
        }
    }
}

/// The Kubernetes Secrets of one object, owned by it (owner reference with its uid).
pub struct KubeSecrets {
    api: Api<Secret>,
    owner: OwnerReference,
    namespace: Option<String>,
    own_writes: Arc<OwnWrites>,
}

impl KubeSecrets {
    pub fn new(client: kube::Client, obj: &IamUser, own_writes: Arc<OwnWrites>) -> Self {
        Self::for_owner(client, obj, own_writes)
    }

    /// The Secrets of any namespaced object (same labels, field manager, owner reference
    /// and own-write records as an IamUser's).
    pub fn for_owner<K>(client: kube::Client, obj: &K, own_writes: Arc<OwnWrites>) -> Self
    where
        K: Resource<DynamicType = ()>,
    {
        let namespace = obj.namespace();
        Self {
            api: Api::namespaced(client, namespace.as_deref().unwrap_or_default()),
            owner: OwnerReference {
                api_version: K::api_version(&()).into_owned(),
                kind: K::kind(&()).into_owned(),
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
                "Secret {name} already exists and was not created for this {}; delete it or choose another secretName",
                self.owner.kind
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
        let write_id = format!("{:016x}", rand::random::<u64>());
        let mut annotations = secret.annotations.clone();
        if !dry_run {
            annotations.insert(WRITE_ID.to_string(), write_id.clone());
        }
        let rendered = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: self.namespace.clone(),
                labels: Some([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into()),
                annotations: Some(annotations),
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
        if dry_run {
            self.api.patch(name, &params, &Patch::Apply(&body)).await?;
            return Ok(());
        }
        self.own_writes.begin(&write_id);
        match self.api.patch(name, &params, &Patch::Apply(&body)).await {
            Ok(written) => {
                self.own_writes
                    .written(&write_id, written.metadata.resource_version);
                Ok(())
            }
            Err(e) => {
                self.own_writes.forget(&write_id);
                Err(e.into())
            }
        }
    }

    async fn read_input(&self, name: &str, key: &str) -> Result<InputKey> {
        let Some(secret) = self.api.get_opt(name).await? else {
            return Ok(InputKey::NoSecret);
        };
        let Some(value) = secret.data.and_then(|mut data| data.remove(key)) else {
            return Ok(InputKey::NoKey);
        };
        Ok(match String::from_utf8(value.0) {
            Ok(text) => InputKey::Value(SecretString::from(text)),
            Err(_) => InputKey::NotText,
        })
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

    fn meta(id: Option<&str>, rv: &str) -> ObjectMeta {
        ObjectMeta {
            annotations: id.map(|id| [(WRITE_ID.to_string(), id.to_string())].into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        }
    }

    #[test]
    fn own_writes_are_recognised_even_before_their_response_and_only_once() {
        let own = OwnWrites::default();
        own.begin("a");
        // The watch event arrives before the write's response.
        assert!(own.is_own(&meta(Some("a"), "7")));
        assert!(!own.is_own(&meta(Some("a"), "7")), "consumed once");
        // After the response: only that version is the write; an edit keeping the
        // annotation is not.
        own.begin("b");
        own.written("b", Some("9".into()));
        assert!(!own.is_own(&meta(Some("b"), "10")));
        assert!(own.is_own(&meta(Some("b"), "9")));
        assert!(!own.is_own(&meta(None, "9")));
        assert!(!own.is_own(&meta(Some("unknown"), "9")));
    }

    #[test]
    fn secret_data_debug_shows_keys_only() {
        let data = SecretData([("password".to_string(), "hunter2-secret".to_string())].into());
        let shown = format!("{data:?}");
        assert!(shown.contains("password"));
        assert!(!shown.contains("hunter2"));
    }
}
