//! Reconcile errors and what each one means for the object's conditions.

use crate::iam::IamError;

/// Why a reconcile did not reach Ready. Messages are deterministic human sentences (no
/// timestamps or request ids) so an unchanged failure never rewrites status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Iam(#[from] IamError),
    #[error("Kubernetes API error: {}", kube_message(.0))]
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
            // Writing a Secret into a namespace being deleted: the namespace's deletion
            // removes this object too, so wait for that instead of retrying hot.
            Error::Kube(kube::Error::Api(s)) if namespace_terminating(s) => Severity::Waiting,
            Error::Kube(_) => Severity::Transient,
            Error::DependencyNotReady(_) => Severity::Waiting,
            _ => Severity::Stalled,
        }
    }
}

/// The API server's own sentence, not the whole Status object.
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// Whether the API server refused a write because the namespace is being deleted.
pub fn namespace_terminating(s: &kube::core::Status) -> bool {
    s.details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::core::response::{StatusCause, StatusDetails};

    #[test]
    fn kube_errors_show_the_servers_sentence_and_terminating_namespaces_wait() {
        let status = Status::failure(
            "secrets \"a\" is forbidden: unable to create new content in namespace x because it is being terminated",
            "Forbidden",
        )
        .with_code(403)
        .with_details(StatusDetails {
            name: "a".into(),
            group: String::new(),
            kind: "secrets".into(),
            uid: String::new(),
            causes: vec![StatusCause {
                reason: "NamespaceTerminating".into(),
                message: "namespace x is being terminated".into(),
                field: String::new(),
            }],
            retry_after_seconds: 0,
        });
        let err = Error::Kube(kube::Error::Api(status.boxed()));
        assert_eq!(
            err.to_string(),
            "Kubernetes API error: secrets \"a\" is forbidden: unable to create new content in namespace x because it is being terminated (403)"
        );
        assert_eq!(err.severity(), Severity::Waiting);
        let conflict = Status::failure("the object has been modified", "Conflict").with_code(409);
        let err = Error::Kube(kube::Error::Api(conflict.boxed()));
        assert_eq!(err.severity(), Severity::Transient);
    }
}
