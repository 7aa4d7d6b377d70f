//! Status writes fenced by `resourceVersion`. Status is the crash journal of the credential
//! and group-creation protocols, so a write computed from an outdated copy of the object
//! must fail rather than erase a newer intent: every write carries the `resourceVersion`
//! the reconcile started from (or its own last write), and the API server refuses it with
//! a conflict if the object changed in between. The reconcile then starts over from fresh
//! state.

use super::{FIELD_MANAGER, NamespacedKind};
use crate::error::Result;
use async_trait::async_trait;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use std::sync::Mutex;

/// Where a reconcile records its status, intents included, before acting on them.
#[async_trait]
pub trait Journal<S: Sync>: Send + Sync {
    /// Durably records `status`; fails (without writing) if the object changed since the
    /// reconcile read it.
    async fn record(&self, status: &S) -> Result<()>;
}

/// The status subresource of one object, written with server-side apply and the
/// `resourceVersion` as precondition.
pub struct StatusWriter<K> {
    api: Api<K>,
    name: String,
    resource_version: Mutex<Option<String>>,
    wrote: std::sync::atomic::AtomicBool,
}

impl<K: NamespacedKind> StatusWriter<K> {
    /// A writer fenced at the version of `obj`, the copy the reconcile works from.
    pub fn new(client: kube::Client, obj: &K) -> Self {
        Self {
            api: Api::namespaced(client, &obj.namespace().unwrap_or_default()),
            name: obj.name_any(),
            resource_version: Mutex::new(obj.resource_version()),
            wrote: Default::default(),
        }
    }

    /// Whether this writer has written a status (the object's copy is then outdated).
    pub fn wrote(&self) -> bool {
        self.wrote.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fence(&self) -> Option<String> {
        self.resource_version.lock().ok().and_then(|rv| rv.clone())
    }
}

#[async_trait]
impl<K: NamespacedKind, S: Serialize + Sync> Journal<S> for StatusWriter<K> {
    async fn record(&self, status: &S) -> Result<()> {
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"name": self.name, "resourceVersion": self.fence()},
            "status": status,
        });
        let written = self
            .api
            .patch_status(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        if let Ok(mut rv) = self.resource_version.lock() {
            *rv = written.resource_version();
        }
        self.wrote.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
