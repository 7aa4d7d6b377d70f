//! Kubernetes adapters the reconcile logic uses: the Secrets credentials are published in,
//! the fenced status journal, and lookups of the objects a resource depends on. Each is a
//! trait with its Kubernetes implementation, so the reconcile logic also runs against
//! in-memory ones in tests.

pub mod deps;
pub mod journal;
pub mod secrets;

pub use deps::{Dependencies, KubeDependencies, Selection, Usage};
pub use journal::{Journal, StatusWriter};
pub use secrets::{InputKey, KubeSecrets, OwnWrites, SecretData, SecretStore, StoredSecret};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "iam-operator";

/// A namespaced Kubernetes kind the adapters read and write.
pub trait NamespacedKind:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
{
}

impl<K> NamespacedKind for K where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
{
}
