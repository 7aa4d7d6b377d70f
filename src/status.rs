//! Conditions in the kstatus convention (`Ready`, `Reconciling`, `Stalled`) and the status
//! fields all kinds share.

use crate::error::{Error, Severity};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// The result of one reconcile, as the conditions will tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub ready: bool,
    pub reconciling: bool,
    pub stalled: bool,
    pub reason: String,
    pub message: String,
}

impl Summary {
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ready: true,
            reconciling: false,
            stalled: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn progressing(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            reconciling: true,
            stalled: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn from_error(err: &Error) -> Self {
        let message = err.to_string();
        let reason = err.reason();
        match err.severity() {
            Severity::Transient | Severity::Waiting => Self::progressing(reason, message),
            Severity::Stalled => Self {
                ready: false,
                reconciling: false,
                stalled: true,
                reason: reason.into(),
                message,
            },
        }
    }
}

/// Status fields every kind has.
pub trait ObjectStatus: Clone + PartialEq + Default {
    fn conditions(&self) -> &Vec<Condition>;
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation_mut(&mut self) -> &mut Option<i64>;
}

macro_rules! object_status {
    ($($t:ty),*) => {$(
        impl ObjectStatus for $t {
            fn conditions(&self) -> &Vec<Condition> { &self.conditions }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> { &mut self.conditions }
            fn observed_generation_mut(&mut self) -> &mut Option<i64> { &mut self.observed_generation }
        }
    )*};
}
object_status!(
    crate::api::IamPolicyStatus,
    crate::api::IamGroupStatus,
    crate::api::IamUserStatus
);

/// Sets a condition, keeping `lastTransitionTime` unless the status flips, so an unchanged
/// state produces an identical condition.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    let transition = match &existing {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let cond = Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: transition,
    };
    match existing {
        Some(c) => *c = cond,
        None => conditions.push(cond),
    }
}

/// Applies a summary to a status: Ready always present; Reconciling and Stalled present
/// only while true (kstatus "abnormal-true" polarity).
pub fn apply_summary<S: ObjectStatus>(
    status: &mut S,
    summary: &Summary,
    generation: Option<i64>,
    now: Timestamp,
) {
    *status.observed_generation_mut() = generation;
    let conditions = status.conditions_mut();
    set_condition(
        conditions,
        READY,
        summary.ready,
        &summary.reason,
        &summary.message,
        generation,
        now,
    );
    for (type_, on) in [
        (RECONCILING, summary.reconciling),
        (STALLED, summary.stalled),
    ] {
        if on {
            set_condition(
                conditions,
                type_,
                true,
                &summary.reason,
                &summary.message,
                generation,
                now,
            );
        } else {
            conditions.retain(|c| c.type_ != type_);
        }
    }
}

/// The Ready condition's reason, if any.
pub fn ready_reason<S: ObjectStatus>(status: &S) -> Option<(bool, &str)> {
    status
        .conditions()
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| (c.status == "True", c.reason.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IamPolicyStatus;

    #[test]
    fn unchanged_summary_gives_identical_status() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut s = IamPolicyStatus::default();
        apply_summary(&mut s, &Summary::ready("UpToDate", "ok"), Some(1), t0);
        let before = s.clone();
        apply_summary(&mut s, &Summary::ready("UpToDate", "ok"), Some(1), t1);
        assert_eq!(before, s);
    }

    #[test]
    fn stalled_then_ready_clears_stalled_and_moves_transition_time() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut s = IamPolicyStatus::default();
        let err = Error::InvalidSpec("bad".into());
        apply_summary(&mut s, &Summary::from_error(&err), Some(1), t0);
        assert!(
            s.conditions
                .iter()
                .any(|c| c.type_ == STALLED && c.status == "True")
        );
        assert_eq!(ready_reason(&s), Some((false, "InvalidSpec")));
        apply_summary(&mut s, &Summary::ready("UpToDate", "ok"), Some(2), t1);
        assert!(!s.conditions.iter().any(|c| c.type_ == STALLED));
        let ready = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.last_transition_time, Time(t1));
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn transient_errors_are_reconciling_not_stalled() {
        let err = Error::Iam(crate::iam::IamError::Throttled("slow down".into()));
        let s = Summary::from_error(&err);
        assert!(s.reconciling && !s.stalled && !s.ready);
        assert_eq!(s.reason, "Throttled");
    }
}
