//! Crash injection for the crash tests (credential protocol, group creation): when the
//! environment variable `IAM_OPERATOR_FAILPOINT` names a point, the process aborts there, as
//! a kill would. Compiled only with the `failpoints` feature (the test suite's); in any
//! other build `hit` does nothing, so no environment variable can crash the operator.

/// Aborts the process if `IAM_OPERATOR_FAILPOINT` equals `name`.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if std::env::var("IAM_OPERATOR_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint hit: aborting");
        std::process::abort();
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
