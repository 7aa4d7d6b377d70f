//! Crash injection for the crash tests (credential protocol, group creation): when the environment variable
//! `IAM_OPERATOR_FAILPOINT` names a point, the process aborts there, as a kill would.

/// Aborts the process if `IAM_OPERATOR_FAILPOINT` equals `name`.
pub fn hit(name: &str) {
    if std::env::var("IAM_OPERATOR_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint hit: aborting");
        std::process::abort();
    }
}
