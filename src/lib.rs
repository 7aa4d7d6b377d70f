//! iam-operator: Kubernetes controllers that keep AWS IAM policies, groups, users and their
//! credentials true to `iam.kubeop.dev/v1alpha1` custom resources.

pub mod api;
pub mod controller;
pub mod crds;
pub mod document;
pub mod error;
pub mod escalation;
pub mod failpoint;
pub mod iam;
pub mod import;
pub mod k8s;
pub mod leader;
pub mod limits;
pub mod metrics;
pub mod runtime;
pub mod settings;
pub mod status;
