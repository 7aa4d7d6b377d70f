//! The public API: the custom resources of `iam.kubeop.dev/v1alpha1` and the types
//! they share. Field docs become the CRD descriptions that `kubectl explain` shows.

mod account;
mod common;
mod group;
mod policy;
mod role;
mod tenancy;
mod user;

pub use account::*;
pub use common::*;
pub use group::*;
pub use policy::*;
pub use role::*;
pub use tenancy::*;
pub use user::*;

/// API group of every kind.
pub const GROUP: &str = "iam.kubeop.dev";
/// Finalizer that keeps a CR until its IAM entity is cleaned up (or retained).
pub const FINALIZER: &str = "iam.kubeop.dev/finalizer";
/// Annotation that allows taking over an IAM entity that already exists.
pub const ADOPT_ANNOTATION: &str = "iam.kubeop.dev/adopt";
/// Annotation whose change rotates the access key once.
pub const ROTATE_KEY_ANNOTATION: &str = "iam.kubeop.dev/rotate-access-key";
/// Annotation whose change resets the console password once.
pub const RESET_PASSWORD_ANNOTATION: &str = "iam.kubeop.dev/reset-console-password";
/// IAM tag that records which CR owns an IAM user or policy.
pub const OWNER_TAG: &str = "iam.kubeop.dev/owner";
/// IAM tag by which an administrator consents to an existing user or policy being adopted
/// by one namespace: `<cluster>/<namespace>`.
pub const ADOPTABLE_BY_TAG: &str = "iam.kubeop.dev/adoptable-by";
