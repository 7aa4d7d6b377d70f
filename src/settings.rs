//! Operator-wide settings shared by every controller.

use crate::api::DeletionPolicy;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::time::Duration;

/// What the cluster admin configured with flags; see `README.md` for each.
#[derive(Clone, Debug)]
pub struct Settings {
    pub cluster_name: String,
    pub iam_path_prefix: String,
    pub required_permissions_boundary: Option<String>,
    pub deny_policy_arns: DenyList,
    pub default_deletion_policy: DeletionPolicy,
    pub resync_interval: Duration,
    /// Whether namespaces no IamTenancyPolicy selects may adopt entities tagged adoptable
    /// by them (`--allow-adoption`).
    pub allow_adoption: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_name: "default".into(),
            iam_path_prefix: "/".into(),
            required_permissions_boundary: None,
            deny_policy_arns: DenyList::default(),
            default_deletion_policy: DeletionPolicy::Delete,
            resync_interval: Duration::from_secs(600),
            allow_adoption: false,
        }
    }
}

impl Settings {
    /// The owner tag value that marks an IAM entity as belonging to one CR.
    pub fn owner(&self, namespace: &str, name: &str) -> String {
        format!("{}/{}/{}", self.cluster_name, namespace, name)
    }

    /// Checks that an IAM path sits under `--iam-path-prefix`.
    pub fn check_path(&self, path: &str) -> Result<(), String> {
        if path.starts_with(&self.iam_path_prefix) {
            Ok(())
        } else {
            Err(format!(
                "path {path} is outside the operator's IAM path prefix {}; use a path that starts with it",
                self.iam_path_prefix
            ))
        }
    }
}

/// Globs of policy ARNs that may never be attached (`--deny-policy-arn`).
#[derive(Clone, Debug, Default)]
pub struct DenyList {
    patterns: Vec<String>,
    set: GlobSet,
}

impl DenyList {
    pub fn new(patterns: &[String]) -> Result<Self, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(Glob::new(p)?);
        }
        Ok(Self {
            patterns: patterns.to_vec(),
            set: builder.build()?,
        })
    }

    /// The first pattern that denies `arn`, if any.
    pub fn denies(&self, arn: &str) -> Option<&str> {
        self.set
            .matches(arn)
            .first()
            .and_then(|i| self.patterns.get(*i))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_globs_match_whole_arns() {
        let d = DenyList::new(&[
            "arn:aws:iam::aws:policy/AdministratorAccess".into(),
            "arn:aws:iam::*:policy/admin-*".into(),
        ])
        .unwrap();
        assert!(
            d.denies("arn:aws:iam::aws:policy/AdministratorAccess")
                .is_some()
        );
        assert_eq!(
            d.denies("arn:aws:iam::123456789012:policy/admin-x"),
            Some("arn:aws:iam::*:policy/admin-*")
        );
        assert!(d.denies("arn:aws:iam::aws:policy/ReadOnlyAccess").is_none());
    }

    #[test]
    fn paths_must_sit_under_the_prefix() {
        let s = Settings {
            iam_path_prefix: "/k8s/".into(),
            ..Settings::default()
        };
        assert!(s.check_path("/k8s/team-a/").is_ok());
        assert!(s.check_path("/").unwrap_err().contains("/k8s/"));
        assert_eq!(s.owner("ns", "n"), "default/ns/n");
    }
}
