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
    /// `--deny-policy-arn`: never attached.
    pub deny_policy_arns: Globs,
    pub default_deletion_policy: DeletionPolicy,
    pub resync_interval: Duration,
    /// Whether namespaces no IamTenancyPolicy selects may adopt entities tagged adoptable
    /// by them (`--allow-adoption`).
    pub allow_adoption: bool,
    /// ARN of the cluster's IAM OIDC provider (`--oidc-provider-arn`), which IamRoles'
    /// `trust.serviceAccounts` federate through (IRSA). `None`: such roles are refused.
    pub oidc_provider_arn: Option<String>,
    /// The operator's own IAM principal (`--operator-principal-arn`, or resolved at start-up
    /// from `sts:GetCallerIdentity`), trusted by roles with session credentials.
    pub operator_principal_arn: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_name: "default".into(),
            iam_path_prefix: "/".into(),
            required_permissions_boundary: None,
            deny_policy_arns: Globs::default(),
            default_deletion_policy: DeletionPolicy::Delete,
            resync_interval: Duration::from_secs(600),
            allow_adoption: false,
            oidc_provider_arn: None,
            operator_principal_arn: None,
        }
    }
}

impl Settings {
    /// The owner tag value that marks an IAM entity as belonging to one CR.
    pub fn owner(&self, namespace: &str, name: &str) -> String {
        format!("{}/{}/{}", self.cluster_name, namespace, name)
    }
}

/// A list of globs (`*` matches any run of characters), e.g. the policy ARNs of
/// `--deny-policy-arn` or a tenancy policy's allow lists.
#[derive(Clone, Debug, Default)]
pub struct Globs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
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

    /// The first pattern that matches `text`, if any.
    pub fn matching(&self, text: &str) -> Option<&str> {
        self.set
            .matches(text)
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
        let d = Globs::new(&[
            "arn:aws:iam::aws:policy/AdministratorAccess".into(),
            "arn:aws:iam::*:policy/admin-*".into(),
        ])
        .unwrap();
        assert!(
            d.matching("arn:aws:iam::aws:policy/AdministratorAccess")
                .is_some()
        );
        assert_eq!(
            d.matching("arn:aws:iam::123456789012:policy/admin-x"),
            Some("arn:aws:iam::*:policy/admin-*")
        );
        assert!(
            d.matching("arn:aws:iam::aws:policy/ReadOnlyAccess")
                .is_none()
        );
    }

    #[test]
    fn owner_tags_name_cluster_namespace_and_object() {
        assert_eq!(Settings::default().owner("ns", "n"), "default/ns/n");
    }
}
