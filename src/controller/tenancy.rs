//! The guard step's rules: what one namespace (a tenant) may get from IAM, built from the
//! IamTenancyPolicy that selects it, or from the operator's flags when none does. Pure: the
//! pipelines observe IAM and ask these rules; every refusal names the rule and the fix.

use crate::api::ADOPTABLE_BY_TAG;
pub use crate::k8s::Selection;
use crate::settings::{Globs, Settings};
use std::collections::BTreeMap;

/// The effective rules for one namespace.
#[derive(Debug, Clone)]
pub struct Tenancy {
    pub namespace: String,
    /// Where the rules come from, for messages: "IamTenancyPolicy x" or "the operator's flags".
    pub source: String,
    /// The owner-tag prefix of this namespace's entities: `<cluster>/<namespace>/`.
    owner_prefix: String,
    /// The value of the adoption-consent tag that names this namespace.
    adoptable_by: String,
    /// Every entity path must start with it.
    pub path: String,
    /// Managed policies that may be attached; `None`: any not denied (flags).
    allowed_arns: Option<Globs>,
    /// `--deny-policy-arn`: never attached, whatever else allows it.
    deny: Globs,
    /// Groups outside the namespace that may be joined; `None`: any that no other namespace
    /// manages and that grants nothing denied or escalating (flags).
    allowed_groups: Option<Globs>,
    /// Boundary forced on every user.
    pub boundary: Option<String>,
    pub access_keys: bool,
    pub console: bool,
    pub adoption: bool,
    /// Action patterns screened in documents; empty when a boundary is forced.
    screened: Vec<String>,
    pub max_users: Option<u32>,
    pub max_access_keys: Option<u32>,
    /// The role (and external id) the operator assumes for this namespace, if any.
    pub role: Option<(String, Option<String>)>,
    /// AWS principals outside the operator its IamRoles may trust (none with the flags).
    pub allowed_trust_principals: Globs,
    /// Whether its IamRoles may have session credentials published.
    pub session_credentials: bool,
}

fn globs(patterns: &[String], field: &str, source: &str) -> Result<Globs, String> {
    Globs::new(patterns)
        .map_err(|e| format!("{source} has an invalid glob in {field}: {e}; fix the policy"))
}

impl Tenancy {
    /// The rules for `namespace` under `selection`.
    pub fn new(
        settings: &Settings,
        namespace: &str,
        selection: &Selection,
    ) -> Result<Self, String> {
        let owner_prefix = format!("{}/{namespace}/", settings.cluster_name);
        let adoptable_by = format!("{}/{namespace}", settings.cluster_name);
        let default_screened = || crate::escalation::default_screened();
        match selection {
            Selection::Ambiguous(names) => Err(format!(
                "namespace {namespace} is selected by several IamTenancyPolicies ({}); nothing is granted until exactly one selects it",
                names.join(", ")
            )),
            Selection::Flags => {
                let boundary = settings.required_permissions_boundary.clone();
                Ok(Self {
                    namespace: namespace.into(),
                    source: "the operator's flags".into(),
                    owner_prefix,
                    adoptable_by,
                    path: settings.iam_path_prefix.clone(),
                    allowed_arns: None,
                    deny: settings.deny_policy_arns.clone(),
                    allowed_groups: None,
                    screened: if boundary.is_some() {
                        Vec::new()
                    } else {
                        default_screened()
                    },
                    boundary,
                    access_keys: true,
                    console: true,
                    adoption: settings.allow_adoption,
                    max_users: None,
                    max_access_keys: None,
                    role: None,
                    allowed_trust_principals: Globs::default(),
                    session_credentials: true,
                })
            }
            Selection::Policy(name, spec) => {
                let source = format!("IamTenancyPolicy {name}");
                let path = match &spec.path {
                    Some(p) => p.replace("{namespace}", namespace),
                    None => format!("{}{namespace}/", settings.iam_path_prefix),
                };
                if !path.starts_with(&settings.iam_path_prefix) {
                    return Err(format!(
                        "{source} sets path {path}, outside the operator's --iam-path-prefix {}; fix the policy",
                        settings.iam_path_prefix
                    ));
                }
                let boundary = spec
                    .permissions_boundary
                    .clone()
                    .or_else(|| settings.required_permissions_boundary.clone());
                let screened = match (&boundary, &spec.screened_actions) {
                    (Some(_), _) => Vec::new(),
                    (None, Some(list)) => list.clone(),
                    (None, None) => default_screened(),
                };
                Ok(Self {
                    namespace: namespace.into(),
                    owner_prefix,
                    adoptable_by,
                    path,
                    allowed_arns: Some(globs(
                        &spec.allowed_policy_arns,
                        "allowedPolicyArns",
                        &source,
                    )?),
                    deny: settings.deny_policy_arns.clone(),
                    allowed_groups: Some(globs(&spec.allowed_groups, "allowedGroups", &source)?),
                    boundary,
                    access_keys: spec.access_keys.unwrap_or(true),
                    console: spec.console.unwrap_or(true),
                    adoption: spec.adoption.unwrap_or(false),
                    max_users: spec.max_users,
                    max_access_keys: spec.max_access_keys,
                    role: spec.role_arn.clone().map(|r| (r, spec.external_id.clone())),
                    allowed_trust_principals: globs(
                        &spec.allowed_trust_principals,
                        "allowedTrustPrincipals",
                        &source,
                    )?,
                    session_credentials: spec.session_credentials.unwrap_or(true),
                    screened,
                    source,
                })
            }
        }
    }

    /// An entity path must sit under the namespace's path.
    pub fn check_path(&self, path: &str) -> Result<(), String> {
        if path.starts_with(&self.path) {
            Ok(())
        } else {
            Err(format!(
                "path {path} is outside {}, the IAM path of namespace {} ({}); use a path that starts with it",
                self.path, self.namespace, self.source
            ))
        }
    }

    /// Whether an owner tag names an object of this namespace.
    pub fn owns(&self, owner_tag: &str) -> bool {
        owner_tag.starts_with(&self.owner_prefix)
    }

    /// Whether a managed policy may be attached (or used as a boundary). `owner` is the
    /// operator's owner tag of a customer policy, if it has one; a policy of this
    /// namespace is always allowed, one of another namespace only when listed.
    pub fn check_attachable(&self, arn: &str, owner: Option<&str>) -> Result<(), String> {
        if let Some(pattern) = self.deny.matching(arn) {
            return Err(format!(
                "policy {arn} is denied by the operator (--deny-policy-arn {pattern}); remove it from the spec"
            ));
        }
        let listed = self
            .allowed_arns
            .as_ref()
            .is_some_and(|a| a.matching(arn).is_some());
        match owner {
            Some(owner) if self.owns(owner) => Ok(()),
            Some(owner) if !listed => Err(format!(
                "policy {arn} belongs to {owner}, another tenant; a namespace may attach only its own IamPolicies and the policies {} allows",
                self.source
            )),
            _ if self.allowed_arns.is_none() || listed => Ok(()),
            _ => Err(format!(
                "policy {arn} is not in allowedPolicyArns of {}; remove it from the spec or ask the platform team to allow it",
                self.source
            )),
        }
    }

    /// Whether a group outside the namespace may be joined by name. `managed_by` is the
    /// IamGroup (`namespace/name`) that manages it, if any.
    pub fn check_joinable(&self, group: &str, managed_by: Option<&str>) -> Result<(), String> {
        if let Some(owner) = managed_by
            && !owner.starts_with(&format!("{}/", self.namespace))
        {
            return Err(format!(
                "IAM group {group} is managed by IamGroup {owner} in another namespace; join a group of this namespace with groupRef"
            ));
        }
        match &self.allowed_groups {
            Some(allowed) if allowed.matching(group).is_none() => Err(format!(
                "IAM group {group} is not in allowedGroups of {}; use a groupRef to an IamGroup of this namespace, or ask the platform team to allow it",
                self.source
            )),
            _ => Ok(()),
        }
    }

    /// Whether groups joined by name must have their permissions screened: with the flags
    /// no one vouched for them; an allowedGroups entry is the platform team's consent.
    pub fn screens_joined_groups(&self) -> bool {
        self.allowed_groups.is_none()
    }

    /// Whether managed policies attached by ARN have their documents screened too: with
    /// the flags nothing vouches for them; under a tenancy policy only listed ones can be
    /// attached, and the list is the platform team's consent.
    pub fn screens_managed_policies(&self) -> bool {
        self.allowed_arns.is_none() && !self.screened.is_empty()
    }

    /// Screens a policy document for privilege escalation; `what` names it in the message.
    pub fn screen(&self, what: &str, doc: &serde_json::Value) -> Result<(), String> {
        if self.screened.is_empty() {
            return Ok(());
        }
        let findings = crate::escalation::screen(doc, &self.screened);
        if findings.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}; privilege escalation is refused in namespace {} ({}) unless a permissions boundary is forced",
            crate::escalation::describe(what, &findings),
            self.namespace,
            self.source
        ))
    }

    /// Whether an existing, untagged-by-us entity may be taken over: the tenant asks with
    /// the annotation, the platform team allows adoption, and an administrator consented in
    /// AWS by tagging it adoptable by this namespace.
    pub fn check_adoption(
        &self,
        kind: &str,
        name: &str,
        requested: bool,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let consent = tags.get(ADOPTABLE_BY_TAG) == Some(&self.adoptable_by);
        match (requested, self.adoption, consent) {
            (true, true, true) => Ok(()),
            (false, _, _) => Err(format!(
                "IAM {kind} {name} already exists and is not managed by this resource; choose another name"
            )),
            (true, false, _) => Err(format!(
                "IAM {kind} {name} already exists; adoption is not allowed in namespace {} ({}); choose another name",
                self.namespace, self.source
            )),
            (true, true, false) => Err(format!(
                "IAM {kind} {name} already exists and is not tagged {ADOPTABLE_BY_TAG}={}; an administrator must tag it in IAM to consent to its adoption, or choose another name",
                self.adoptable_by
            )),
        }
    }

    /// Whether a policy ARN is named by the rules (the forced boundary, an allowed managed
    /// policy): such a policy is never adopted, changed or deleted through a tenant's object.
    pub fn protects(&self, arn: &str) -> bool {
        self.boundary.as_deref() == Some(arn)
            || self
                .allowed_arns
                .as_ref()
                .is_some_and(|a| a.matching(arn).is_some())
    }

    /// Whether one more user (or access key) fits the namespace's quota, given what its
    /// other IamUsers hold.
    pub fn check_quota(&self, what: &str, max: Option<u32>, held: u32) -> Result<(), String> {
        match max {
            Some(max) if held >= max => Err(format!(
                "namespace {} already has {held} {what}, the most {} allows ({max}); remove one or ask the platform team for more",
                self.namespace, self.source
            )),
            _ => Ok(()),
        }
    }

    /// Whether groups may be adopted: groups carry no tags, so no administrator consent can
    /// be read from AWS; only a tenancy policy's allowedGroups entry serves as consent.
    pub fn check_group_adoption(&self, name: &str, requested: bool) -> Result<(), String> {
        let consent = self
            .allowed_groups
            .as_ref()
            .is_some_and(|a| a.matching(name).is_some());
        match (requested, self.adoption, consent) {
            (true, true, true) => Ok(()),
            (false, _, _) => Err(format!(
                "IAM group {name} already exists and is not managed by this resource; choose another name"
            )),
            (true, false, _) => Err(format!(
                "IAM group {name} already exists; adoption is not allowed in namespace {} ({}); choose another name",
                self.namespace, self.source
            )),
            (true, true, false) => Err(format!(
                "IAM group {name} already exists; groups carry no tags, so only a group listed in allowedGroups of {} can be adopted; choose another name",
                self.source
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            cluster_name: "c1".into(),
            iam_path_prefix: "/k8s/".into(),
            deny_policy_arns: Globs::new(&["arn:aws:iam::aws:policy/AdministratorAccess".into()])
                .unwrap(),
            ..Settings::default()
        }
    }

    fn policy(spec: serde_json::Value) -> Selection {
        Selection::Policy("p".into(), Box::new(serde_json::from_value(spec).unwrap()))
    }

    #[test]
    fn flags_keep_todays_defaults_with_adoption_off_and_screening_on() {
        let t = Tenancy::new(&settings(), "team-a", &Selection::Flags).unwrap();
        assert!(t.check_path("/k8s/x/").is_ok());
        assert!(t.check_path("/other/").is_err());
        assert!(
            t.check_attachable("arn:aws:iam::aws:policy/ReadOnlyAccess", None)
                .is_ok()
        );
        assert!(
            t.check_attachable("arn:aws:iam::aws:policy/AdministratorAccess", None)
                .unwrap_err()
                .contains("--deny-policy-arn")
        );
        // Another tenant's customer policy, by ARN.
        let err = t
            .check_attachable("arn:aws:iam::1:policy/k8s/b/x", Some("c1/team-b/x"))
            .unwrap_err();
        assert!(err.contains("another tenant"), "{err}");
        assert!(
            t.check_attachable("arn:aws:iam::1:policy/k8s/a/x", Some("c1/team-a/x"))
                .is_ok()
        );
        assert!(!t.adoption);
        let allow_all =
            serde_json::json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}});
        assert!(t.screen("inline policy x", &allow_all).is_err());
    }

    #[test]
    fn a_forced_boundary_turns_screening_off() {
        let s = Settings {
            required_permissions_boundary: Some("arn:aws:iam::1:policy/b".into()),
            ..settings()
        };
        let t = Tenancy::new(&s, "team-a", &Selection::Flags).unwrap();
        let allow_all =
            serde_json::json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}});
        assert!(t.screen("x", &allow_all).is_ok());
        assert!(t.protects("arn:aws:iam::1:policy/b"));
    }

    #[test]
    fn a_policy_sets_path_allow_lists_and_switches() {
        let sel = policy(serde_json::json!({
            "namespaceSelector": {},
            "allowedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnly*"],
            "allowedGroups": ["shared-*"],
            "accessKeys": false,
            "adoption": true
        }));
        let t = Tenancy::new(&settings(), "team-a", &sel).unwrap();
        assert_eq!(t.path, "/k8s/team-a/");
        assert!(t.check_path("/k8s/team-b/").is_err());
        assert!(
            t.check_attachable("arn:aws:iam::aws:policy/ReadOnlyAccess", None)
                .is_ok()
        );
        assert!(
            t.check_attachable("arn:aws:iam::aws:policy/PowerUserAccess", None)
                .unwrap_err()
                .contains("allowedPolicyArns")
        );
        assert!(t.check_joinable("shared-readers", None).is_ok());
        assert!(
            t.check_joinable("admins", None)
                .unwrap_err()
                .contains("allowedGroups")
        );
        assert!(
            t.check_joinable("shared-x", Some("team-b/x"))
                .unwrap_err()
                .contains("another namespace")
        );
        assert!(!t.access_keys && t.console);
        assert!(t.protects("arn:aws:iam::aws:policy/ReadOnlyAccess"));
    }

    #[test]
    fn adoption_needs_request_permission_and_consent_in_aws() {
        let sel = policy(serde_json::json!({"namespaceSelector": {}, "adoption": true}));
        let t = Tenancy::new(&settings(), "team-a", &sel).unwrap();
        let consent = BTreeMap::from([(ADOPTABLE_BY_TAG.to_string(), "c1/team-a".to_string())]);
        let other = BTreeMap::from([(ADOPTABLE_BY_TAG.to_string(), "c1/team-b".to_string())]);
        assert!(t.check_adoption("user", "u", true, &consent).is_ok());
        assert!(t.check_adoption("user", "u", false, &consent).is_err());
        assert!(
            t.check_adoption("user", "u", true, &other)
                .unwrap_err()
                .contains("must tag it")
        );
        let flags = Tenancy::new(&settings(), "team-a", &Selection::Flags).unwrap();
        assert!(
            flags
                .check_adoption("user", "u", true, &consent)
                .unwrap_err()
                .contains("adoption is not allowed")
        );
    }

    #[test]
    fn two_policies_selecting_a_namespace_grant_nothing() {
        let err = Tenancy::new(
            &settings(),
            "team-a",
            &Selection::Ambiguous(vec!["a".into(), "b".into()]),
        )
        .unwrap_err();
        assert!(err.contains("a, b"), "{err}");
    }
}
