//! The drift scan: one account-wide read of IAM per interval (a few paged
//! `GetAccountAuthorizationDetails` calls) instead of several reads per object. An entity
//! whose reported state changed since the previous pass wakes the resource that manages
//! it, whose reconcile then reads and repairs it in detail.
//!
//! What the authorization details do not show — access keys and login profiles — is left
//! to the per-object resync (`--resync-interval`): the credential report would show keys
//! too, but real IAM regenerates it at most every four hours, so a key deleted out of band
//! would be noticed no sooner than with an hourly resync, and less predictably.

use crate::iam::AccountSnapshot;
use std::collections::{BTreeMap, BTreeSet};

/// Entities new, changed or gone between two passes.
#[derive(Debug, Default, PartialEq)]
pub struct Changed {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// Policy ARNs.
    pub policies: BTreeSet<String>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.policies.is_empty()
    }
}

/// What changed between two passes. User and group names are reported lower-cased: IAM
/// names are case-insensitive, so `Carol` in IAM is the entity of a resource naming `carol`.
pub fn changed(before: &AccountSnapshot, after: &AccountSnapshot) -> Changed {
    fn diff(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeSet<String> {
        a.keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }
    let lower = |names: BTreeSet<String>| names.into_iter().map(|n| n.to_lowercase()).collect();
    Changed {
        users: lower(diff(&before.users, &after.users)),
        groups: lower(diff(&before.groups, &after.groups)),
        policies: diff(&before.policies, &after.policies),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(users: &[(&str, u64)], groups: &[(&str, u64)]) -> AccountSnapshot {
        let map = |v: &[(&str, u64)]| v.iter().map(|(k, f)| (k.to_string(), *f)).collect();
        AccountSnapshot {
            users: map(users),
            groups: map(groups),
            policies: BTreeMap::new(),
        }
    }

    #[test]
    fn changed_new_and_gone_entities_are_reported_unchanged_ones_not() {
        let before = snapshot(&[("alice", 1), ("bob", 2), ("gone", 3)], &[("devs", 7)]);
        let after = snapshot(&[("alice", 1), ("bob", 5), ("new", 4)], &[("devs", 7)]);
        let c = changed(&before, &after);
        assert_eq!(
            c.users,
            ["bob", "gone", "new"]
                .map(String::from)
                .into_iter()
                .collect()
        );
        assert!(c.groups.is_empty() && c.policies.is_empty());
        assert!(changed(&after, &after).is_empty());
        let c = changed(
            &snapshot(&[("Carol", 1)], &[]),
            &snapshot(&[("Carol", 2)], &[]),
        );
        assert!(
            c.users.contains("carol"),
            "names are matched case-insensitively"
        );
    }
}
