//! Pure planning functions: given the spec and the observed IAM state, what to change.

use crate::iam::PolicyVersion;
use std::collections::{BTreeMap, BTreeSet};

/// IAM keeps at most this many versions of a managed policy.
pub const MAX_POLICY_VERSIONS: usize = 5;

/// Changes that turn `current` tags into `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TagPlan {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl TagPlan {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

pub fn plan_tags(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> TagPlan {
    TagPlan {
        set: desired
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        remove: current
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect(),
    }
}

/// Exclusive list reconciliation: what to add and what to remove so `current` equals
/// `desired`. `key` normalises items (IAM names are case-insensitive).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetPlan {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl SetPlan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

pub fn plan_set(current: &[String], desired: &[String], case_insensitive: bool) -> SetPlan {
    let key = |s: &String| {
        if case_insensitive {
            s.to_lowercase()
        } else {
            s.clone()
        }
    };
    let cur: BTreeSet<String> = current.iter().map(key).collect();
    let want: BTreeSet<String> = desired.iter().map(key).collect();
    let mut add: Vec<String> = Vec::new();
    for d in desired {
        if !cur.contains(&key(d)) && !add.iter().any(|a| key(a) == key(d)) {
            add.push(d.clone());
        }
    }
    SetPlan {
        add,
        remove: current
            .iter()
            .filter(|c| !want.contains(&key(c)))
            .cloned()
            .collect(),
    }
}

/// The version to delete before creating a new one: the oldest non-default version, once
/// IAM's limit is reached.
pub fn version_to_prune(versions: &[PolicyVersion]) -> Option<&PolicyVersion> {
    if versions.len() < MAX_POLICY_VERSIONS {
        return None;
    }
    versions
        .iter()
        .filter(|v| !v.is_default)
        .min_by_key(|v| (v.created, version_number(&v.version_id)))
}

fn version_number(id: &str) -> u64 {
    id.trim_start_matches('v').parse().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tag_plan_sets_changed_and_removes_extra() {
        let plan = plan_tags(
            &map(&[("a", "1"), ("b", "2"), ("x", "9")]),
            &map(&[("a", "1"), ("b", "3"), ("c", "4")]),
        );
        assert_eq!(plan.set, map(&[("b", "3"), ("c", "4")]));
        assert_eq!(plan.remove, strings(&["x"]));
        assert!(plan_tags(&map(&[("a", "1")]), &map(&[("a", "1")])).is_empty());
    }

    #[test]
    fn set_plan_is_exclusive() {
        let plan = plan_set(&strings(&["a", "b"]), &strings(&["b", "c", "c"]), false);
        assert_eq!(plan.add, strings(&["c"]));
        assert_eq!(plan.remove, strings(&["a"]));
        assert!(plan_set(&strings(&["A"]), &strings(&["a"]), true).is_empty());
        assert!(!plan_set(&strings(&["A"]), &strings(&["a"]), false).is_empty());
    }

    fn version(id: &str, default: bool, secs: i64) -> PolicyVersion {
        PolicyVersion {
            version_id: id.into(),
            is_default: default,
            created: Timestamp::from_second(secs).unwrap(),
        }
    }

    #[test]
    fn prunes_oldest_non_default_only_at_the_limit() {
        let mut versions = vec![
            version("v1", true, 10),
            version("v2", false, 20),
            version("v3", false, 30),
            version("v4", false, 40),
        ];
        assert!(version_to_prune(&versions).is_none());
        versions.push(version("v5", false, 50));
        assert_eq!(version_to_prune(&versions).unwrap().version_id, "v2");
        // Same timestamps: lowest version number first.
        let same: Vec<_> = (1..=5)
            .map(|i| version(&format!("v{i}"), i == 5, 7))
            .collect();
        assert_eq!(version_to_prune(&same).unwrap().version_id, "v1");
    }
}
