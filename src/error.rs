//! Reconcile errors and what each one means for the object's conditions.

use crate::iam::IamError;

/// Why a reconcile did not reach Ready. Messages are deterministic human sentences (no
/// timestamps or request ids) so an unchanged failure never rewrites status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Iam(#[from] IamError),
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{0}")]
    NameConflict(String),
    #[error("{0}")]
    DependencyNotReady(String),
    #[error("{0}")]
    SecretConflict(String),
    #[error("{0}")]
    LimitExceeded(String),
}

/// How a failure shows up: progress continues by itself, or a human must act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `Reconciling=True`; retried with backoff.
    Transient,
    /// `Ready=False` while waiting for another object; retried when it changes.
    Waiting,
    /// `Stalled=True`; retried slowly or on the next spec change.
    Stalled,
}

impl Error {
    /// Stable CamelCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Iam(e) => e.reason(),
            Error::Kube(_) => "KubernetesError",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::NameConflict(_) => "NameConflict",
            Error::DependencyNotReady(_) => "DependencyNotReady",
            Error::SecretConflict(_) => "SecretConflict",
            Error::LimitExceeded(_) => "LimitExceeded",
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            Error::Iam(e) if e.is_transient() => Severity::Transient,
            Error::Iam(IamError::NotFound(_)) => Severity::Transient,
            Error::Kube(_) => Severity::Transient,
            Error::DependencyNotReady(_) => Severity::Waiting,
            _ => Severity::Stalled,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
