//! `iam-operator import`: YAML manifests for what an AWS account already has (users, groups,
//! customer-managed policies), ready to be adopted, or a new user with an existing user's
//! permissions (`--as`).
//!
//! Read-only against IAM: the code here reaches IAM only through [`AccountReader`], which
//! has read methods only, so no write can be issued from an import. Rendering ([`render`])
//! is pure: IAM data in, manifests out.

use crate::api::{
    ADOPT_ANNOTATION, ADOPTABLE_BY_TAG, DeletionPolicy, GroupMembership, IamGroup, IamGroupSpec,
    IamPolicy, IamPolicySpec, IamUser, IamUserSpec, InlinePolicy, LocalObjectRef, OWNER_TAG,
    PolicyAttachment,
};
use crate::controller::self_management;
use crate::iam::{
    AccountDetails, AwsIam, GroupDetails, IamResult, ManagedPolicyDetails, UserDetails,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};

/// What import may ask of IAM: reads only.
#[async_trait]
pub trait AccountReader: Send + Sync {
    async fn account_details(&self) -> IamResult<AccountDetails>;
}

#[async_trait]
impl AccountReader for AwsIam {
    async fn account_details(&self) -> IamResult<AccountDetails> {
        AwsIam::account_details(self).await
    }
}

/// Which kinds to import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Users,
    Groups,
    Policies,
    All,
}

/// Which entities of the chosen kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Exact IAM names (policy names for policies).
    Names(Vec<String>),
    /// Entities whose path starts with this prefix.
    PathPrefix(String),
    All,
}

/// Options of one import.
#[derive(Clone, Debug)]
pub struct Options {
    pub kind: Kind,
    pub selection: Selection,
    pub namespace: String,
    pub cluster_name: String,
    pub deletion_policy: DeletionPolicy,
}

/// A Kubernetes object name (DNS subdomain) for an IAM name: lowercase, characters other
/// than `[a-z0-9.-]` become `-`, no leading or trailing `-`/`.`.
pub fn k8s_name(iam_name: &str) -> String {
    let mapped: String = iam_name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c| c == '-' || c == '.');
    let mut name: String = trimmed.chars().take(253).collect();
    name = name.trim_end_matches(['-', '.']).to_string();
    if name.is_empty() {
        "imported".into()
    } else {
        name
    }
}

/// Kubernetes names for IAM names of one kind, unique: two IAM names that map to the same
/// Kubernetes name (`a_b`, `a-b`) get `-2`, `-3`... in IAM-name order.
fn names_for<'a>(iam_names: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut sorted: Vec<&str> = iam_names.collect();
    sorted.sort();
    let mut used = BTreeSet::new();
    let mut out = BTreeMap::new();
    for n in sorted {
        let base = k8s_name(n);
        let mut candidate = base.clone();
        let mut i = 2;
        while !used.insert(candidate.clone()) {
            candidate = format!("{base}-{i}");
            i += 1;
        }
        out.insert(n.to_string(), candidate);
    }
    out
}

fn selected(selection: &Selection, name: &str, path: &str) -> bool {
    match selection {
        Selection::Names(names) => names.iter().any(|n| n == name),
        Selection::PathPrefix(p) => path.starts_with(p.as_str()),
        Selection::All => true,
    }
}

/// One printed document: comment lines, then the object.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub comments: Vec<String>,
    pub object: serde_json::Value,
}

/// What an import prints, and what the administrator must do first.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub manifests: Vec<Manifest>,
    /// `aws iam tag-...` commands giving the consent the tenancy rules require.
    pub consent: Vec<String>,
}

fn document(text: &str, what: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what}: the document is not JSON: {e}"))
}

fn inline_policies(list: &[(String, String)], owner: &str) -> Result<Vec<InlinePolicy>, String> {
    let mut out = list
        .iter()
        .map(|(name, doc)| {
            Ok(InlinePolicy {
                name: name.clone(),
                document: document(doc, &format!("{owner} inline policy {name}"))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Resolves references: a customer policy imported in this run as `policyRef`, anything
/// else (AWS-managed, or not imported) by `arn`.
struct Refs {
    policies: BTreeMap<String, String>,
    groups: BTreeMap<String, String>,
}

impl Refs {
    fn policy(&self, arn: &str) -> PolicyAttachment {
        match self.policies.get(arn) {
            Some(name) => PolicyAttachment {
                policy_ref: Some(LocalObjectRef { name: name.clone() }),
                arn: None,
            },
            None => PolicyAttachment {
                policy_ref: None,
                arn: Some(arn.to_string()),
            },
        }
    }

    fn group(&self, group: &str) -> GroupMembership {
        match self.groups.get(group) {
            Some(name) => GroupMembership {
                group_ref: Some(LocalObjectRef { name: name.clone() }),
                group_name: None,
            },
            None => GroupMembership {
                group_ref: None,
                group_name: Some(group.to_string()),
            },
        }
    }

    fn policies(&self, arns: &[String]) -> Vec<PolicyAttachment> {
        let mut arns = arns.to_vec();
        arns.sort();
        arns.iter().map(|a| self.policy(a)).collect()
    }
}

fn to_value<T: serde::Serialize>(object: &T) -> Result<serde_json::Value, String> {
    let mut v = serde_json::to_value(object).map_err(|e| e.to_string())?;
    if let Some(map) = v.as_object_mut() {
        map.remove("status");
    }
    Ok(v)
}

fn metadata(meta: &mut kube::api::ObjectMeta, namespace: &str, adopt: bool) {
    meta.namespace = Some(namespace.to_string());
    if adopt {
        meta.annotations = Some(BTreeMap::from([(
            ADOPT_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
    }
}

/// Tags for an adopted user's or policy's spec: IAM's tags without the owner tag (the
/// operator sets it), plus the consent tag, so that the operator keeps it instead of
/// removing it as a tag the spec does not declare.
fn adopted_tags(tags: &BTreeMap<String, String>, consent: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = tags
        .iter()
        .filter(|(k, _)| k.as_str() != OWNER_TAG)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert(ADOPTABLE_BY_TAG.to_string(), consent.to_string());
    out
}

fn owned_warning(kind: &str, name: &str, tags: &BTreeMap<String, String>) -> Option<String> {
    tags.get(OWNER_TAG).map(|owner| {
        format!("WARNING: IAM {kind} {name} is already managed by {owner}; adopting it here will be refused (NameConflict).")
    })
}

/// Manifests for the selected entities of `account`.
pub fn render(account: &AccountDetails, opts: &Options) -> Result<Rendered, String> {
    let want = |k: Kind| opts.kind == k || opts.kind == Kind::All;
    let policies: Vec<&ManagedPolicyDetails> = if want(Kind::Policies) {
        account
            .policies
            .iter()
            .filter(|p| selected(&opts.selection, &p.name, &p.path))
            .collect()
    } else {
        vec![]
    };
    let groups: Vec<&GroupDetails> = if want(Kind::Groups) {
        account
            .groups
            .iter()
            .filter(|g| selected(&opts.selection, &g.name, &g.path))
            .collect()
    } else {
        vec![]
    };
    let users: Vec<&UserDetails> = if want(Kind::Users) {
        account
            .users
            .iter()
            .filter(|u| selected(&opts.selection, &u.name, &u.path))
            .collect()
    } else {
        vec![]
    };
    if let Selection::Names(names) = &opts.selection {
        let found: BTreeSet<&str> = policies
            .iter()
            .map(|p| p.name.as_str())
            .chain(groups.iter().map(|g| g.name.as_str()))
            .chain(users.iter().map(|u| u.name.as_str()))
            .collect();
        let missing: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !found.contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(format!("not found in IAM: {}", missing.join(", ")));
        }
    }
    let policy_names = names_for(policies.iter().map(|p| p.name.as_str()));
    let group_names = names_for(groups.iter().map(|g| g.name.as_str()));
    let user_names = names_for(users.iter().map(|u| u.name.as_str()));
    let refs = Refs {
        policies: policies
            .iter()
            .map(|p| (p.arn.clone(), policy_names[&p.name].clone()))
            .collect(),
        groups: group_names.clone(),
    };
    let consent_value = format!("{}/{}", opts.cluster_name, opts.namespace);
    let mut out = Rendered::default();

    for p in &policies {
        let name = &policy_names[&p.name];
        let mut obj = IamPolicy::new(
            name,
            IamPolicySpec {
                policy_name: (*name != p.name).then(|| p.name.clone()),
                path: p.path.clone(),
                description: p.description.clone(),
                document: document(&p.document, &format!("policy {}", p.name))?,
                tags: adopted_tags(&p.tags, &consent_value),
                deletion_policy: Some(opts.deletion_policy),
            },
        );
        metadata(&mut obj.metadata, &opts.namespace, true);
        let mut comments = vec![format!("IAM policy {} ({})", p.name, p.arn)];
        comments.extend(owned_warning("policy", &p.name, &p.tags));
        out.manifests.push(Manifest {
            comments,
            object: to_value(&obj)?,
        });
        out.consent.push(format!(
            "aws iam tag-policy --policy-arn '{}' --tags 'Key={ADOPTABLE_BY_TAG},Value={consent_value}'",
            p.arn
        ));
    }
    for g in &groups {
        let name = &group_names[&g.name];
        let mut obj = IamGroup::new(
            name,
            IamGroupSpec {
                group_name: (*name != g.name).then(|| g.name.clone()),
                path: g.path.clone(),
                policies: refs.policies(&g.attached),
                inline_policies: inline_policies(&g.inline, &format!("group {}", g.name))?,
                deletion_policy: Some(opts.deletion_policy),
            },
        );
        metadata(&mut obj.metadata, &opts.namespace, true);
        out.manifests.push(Manifest {
            comments: vec![
                format!("IAM group {}", g.name),
                format!(
                    "Groups carry no tags: adopting it needs an IamTenancyPolicy selecting namespace {} with adoption: true and {} in allowedGroups.",
                    opts.namespace, g.name
                ),
            ],
            object: to_value(&obj)?,
        });
    }
    for u in &users {
        let name = &user_names[&u.name];
        let mut groups: Vec<String> = u.groups.clone();
        groups.sort();
        let (attached, own) = without_self_management(&u.name, &u.attached);
        let mut obj = IamUser::new(
            name,
            IamUserSpec {
                user_name: (*name != u.name).then(|| u.name.clone()),
                path: u.path.clone(),
                tags: adopted_tags(&u.tags, &consent_value),
                permissions_boundary: u.permissions_boundary.as_deref().map(|b| refs.policy(b)),
                groups: groups.iter().map(|g| refs.group(g)).collect(),
                policies: refs.policies(&attached),
                inline_policies: inline_policies(&u.inline, &format!("user {}", u.name))?,
                access_key: None,
                console: None,
                deletion_policy: Some(opts.deletion_policy),
            },
        );
        metadata(&mut obj.metadata, &opts.namespace, true);
        let mut comments = vec![
            format!("IAM user {}", u.name),
            "Existing access keys and login profile are left alone: the operator lists them in status.unmanagedCredentials; spec.accessKey and spec.console are omitted.".to_string(),
        ];
        comments.extend(own);
        comments.extend(owned_warning("user", &u.name, &u.tags));
        out.manifests.push(Manifest {
            comments,
            object: to_value(&obj)?,
        });
        out.consent.push(format!(
            "aws iam tag-user --user-name '{}' --tags 'Key={ADOPTABLE_BY_TAG},Value={consent_value}'",
            u.name
        ));
    }
    Ok(out)
}

/// A new IamUser `new_name` with `source`'s groups, managed and inline policies and
/// boundary (the console's "copy permissions from existing user"): no adopt annotation, no
/// tags, no credentials. Groups and policies are referenced by IAM name and ARN.
pub fn render_copy(
    account: &AccountDetails,
    source: &str,
    new_name: &str,
    opts: &Options,
) -> Result<Rendered, String> {
    let u = account
        .users
        .iter()
        .find(|u| u.name == source)
        .ok_or_else(|| format!("IAM user {source} not found"))?;
    let refs = Refs {
        policies: BTreeMap::new(),
        groups: BTreeMap::new(),
    };
    let name = k8s_name(new_name);
    let mut groups = u.groups.clone();
    groups.sort();
    let (attached, own) = without_self_management(&u.name, &u.attached);
    let mut obj = IamUser::new(
        &name,
        IamUserSpec {
            user_name: (name != new_name).then(|| new_name.to_string()),
            path: u.path.clone(),
            tags: BTreeMap::new(),
            permissions_boundary: u.permissions_boundary.as_deref().map(|b| refs.policy(b)),
            groups: groups.iter().map(|g| refs.group(g)).collect(),
            policies: refs.policies(&attached),
            inline_policies: inline_policies(&u.inline, &format!("user {}", u.name))?,
            access_key: None,
            console: None,
            deletion_policy: Some(opts.deletion_policy),
        },
    );
    metadata(&mut obj.metadata, &opts.namespace, false);
    let mut comments = vec![format!(
        "New IAM user {new_name} with the permissions of {source} (groups, managed and inline policies, boundary)."
    )];
    comments.extend(own);
    Ok(Rendered {
        manifests: vec![Manifest {
            comments,
            object: to_value(&obj)?,
        }],
        consent: vec![],
    })
}

/// A user's attached policies without the operator's self-management ones, and a comment
/// for each of those naming the spec setting that stands for it.
fn without_self_management(user: &str, attached: &[String]) -> (Vec<String>, Vec<String>) {
    let mut comments = Vec::new();
    let mut kept = Vec::new();
    for arn in attached {
        match self_management::setting_of(arn) {
            Some(setting) => comments.push(format!(
                "IAM user {user} has the operator's self-management policy {arn}: not listed in spec.policies; set {setting} (with console access) to keep it."
            )),
            None => kept.push(arn.clone()),
        }
    }
    (kept, comments)
}

/// The `---`-separated YAML stream, with the adoption instructions at the top.
pub fn to_yaml(rendered: &Rendered, opts: &Options, adopting: bool) -> Result<String, String> {
    let mut out = String::new();
    if adopting {
        out.push_str(&format!(
            "# Generated by `iam-operator import`. To adopt these entities without recreating them:\n\
             # 1. The platform team allows adoption in namespace {ns}: an IamTenancyPolicy selecting it with\n\
             #    `adoption: true` (its path must cover the entities' paths; groups must be in allowedGroups),\n\
             #    or, for a namespace no policy selects, the operator flag --allow-adoption.\n\
             # 2. An administrator consents in AWS by tagging each user and policy\n\
             #    {ADOPTABLE_BY_TAG}={consent} (`iam-operator import --print-consent ...` prints the commands).\n\
             # 3. kubectl apply -f this file. The operator then writes exactly one thing per user and policy:\n\
             #    its ownership tag {OWNER_TAG}; nothing else changes in IAM (deletionPolicy: Retain keeps the\n\
             #    entities when these objects are deleted).\n",
            ns = opts.namespace,
            consent = format_args!("{}/{}", opts.cluster_name, opts.namespace),
        ));
    }
    for m in &rendered.manifests {
        out.push_str("---\n");
        for c in &m.comments {
            out.push_str(&format!("# {c}\n"));
        }
        out.push_str(&serde_yaml::to_string(&m.object).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountDetails {
        AccountDetails {
            users: vec![UserDetails {
                name: "Alice_Smith".into(),
                path: "/team/".into(),
                tags: BTreeMap::from([
                    ("team".to_string(), "a".to_string()),
                    (OWNER_TAG.to_string(), "x".to_string()),
                ]),
                permissions_boundary: Some("arn:aws:iam::123456789012:policy/team/boundary".into()),
                groups: vec!["devs".into(), "Outside".into()],
                attached: vec![
                    "arn:aws:iam::123456789012:policy/team/read".into(),
                    "arn:aws:iam::aws:policy/ReadOnlyAccess".into(),
                    "arn:aws:iam::123456789012:policy/team/iam-operator-mfa-required-0123456789abcdef".into(),
                ],
                inline: vec![(
                    "extra".into(),
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#.into(),
                )],
            }],
            groups: vec![
                GroupDetails {
                    name: "devs".into(),
                    path: "/team/".into(),
                    attached: vec!["arn:aws:iam::123456789012:policy/team/read".into()],
                    inline: vec![],
                },
                GroupDetails {
                    name: "Outside".into(),
                    path: "/other/".into(),
                    attached: vec![],
                    inline: vec![],
                },
            ],
            policies: vec![
                ManagedPolicyDetails {
                    arn: "arn:aws:iam::123456789012:policy/team/read".into(),
                    name: "read".into(),
                    path: "/team/".into(),
                    description: Some("reads".into()),
                    document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:List*","Resource":"*"}]}"#.into(),
                    tags: BTreeMap::new(),
                },
                ManagedPolicyDetails {
                    arn: "arn:aws:iam::123456789012:policy/team/boundary".into(),
                    name: "boundary".into(),
                    path: "/other/".into(),
                    description: None,
                    document: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
                    tags: BTreeMap::new(),
                },
            ],
        }
    }

    fn opts(kind: Kind, selection: Selection) -> Options {
        Options {
            kind,
            selection,
            namespace: "ns1".into(),
            cluster_name: "c1".into(),
            deletion_policy: DeletionPolicy::Retain,
        }
    }

    fn find<'a>(r: &'a Rendered, kind: &str, name: &str) -> &'a serde_json::Value {
        &r.manifests
            .iter()
            .find(|m| m.object["kind"] == kind && m.object["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {r:?}"))
            .object
    }

    #[test]
    fn names_are_mangled_to_valid_kubernetes_names_and_kept_unique() {
        assert_eq!(k8s_name("Alice_Smith"), "alice-smith");
        assert_eq!(k8s_name("a+b=c,d@e.f"), "a-b-c-d-e.f");
        assert_eq!(k8s_name("_x_"), "x");
        assert_eq!(k8s_name("@@"), "imported");
        let names = names_for(["a_b", "a-b", "A-B"].into_iter());
        let unique: BTreeSet<&String> = names.values().collect();
        assert_eq!(unique.len(), 3, "{names:?}");
        assert!(names.values().all(|n| n.starts_with("a-b")));
    }

    #[test]
    fn imported_refs_resolve_to_refs_and_others_to_names_and_arns() {
        let r = render(
            &account(),
            &opts(Kind::All, Selection::PathPrefix("/team/".into())),
        )
        .unwrap();
        let user = find(&r, "IamUser", "alice-smith");
        let spec = &user["spec"];
        assert_eq!(spec["userName"], "Alice_Smith");
        assert_eq!(
            spec["groups"],
            serde_json::json!([{"groupName": "Outside"}, {"groupRef": {"name": "devs"}}])
        );
        assert_eq!(
            spec["policies"],
            serde_json::json!([{"policyRef": {"name": "read"}}, {"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}])
        );
        // The boundary policy sits at /other/, not imported: by ARN.
        assert_eq!(
            spec["permissionsBoundary"],
            serde_json::json!({"arn": "arn:aws:iam::123456789012:policy/team/boundary"})
        );
        assert_eq!(
            spec["inlinePolicies"][0]["document"]["Statement"][0]["Action"],
            "s3:GetObject"
        );
        assert_eq!(spec["deletionPolicy"], "Retain");
        assert!(spec.get("accessKey").is_none() && spec.get("console").is_none());
        // Owner tag dropped (the operator sets it), consent tag kept.
        assert_eq!(
            spec["tags"],
            serde_json::json!({"team": "a", ADOPTABLE_BY_TAG: "c1/ns1"})
        );
        assert_eq!(user["metadata"]["annotations"][ADOPT_ANNOTATION], "true");
        assert_eq!(user["metadata"]["namespace"], "ns1");
        let group = find(&r, "IamGroup", "devs");
        assert!(group["spec"].get("groupName").is_none());
        assert_eq!(
            group["spec"]["policies"],
            serde_json::json!([{"policyRef": {"name": "read"}}])
        );
        let policy = find(&r, "IamPolicy", "read");
        assert_eq!(policy["spec"]["description"], "reads");
        assert_eq!(policy["spec"]["path"], "/team/");
        assert_eq!(
            policy["spec"]["document"]["Statement"][0]["Action"],
            "s3:List*"
        );
        assert_eq!(r.manifests.len(), 3, "/other/ entities are not selected");
        assert_eq!(r.consent.len(), 2);
        assert!(r.consent.iter().any(
            |c| c.contains("tag-user --user-name 'Alice_Smith'") && c.contains("Value=c1/ns1")
        ));
    }

    #[test]
    fn users_alone_reference_groups_and_policies_by_name_and_arn() {
        let r = render(
            &account(),
            &opts(Kind::Users, Selection::Names(vec!["Alice_Smith".into()])),
        )
        .unwrap();
        assert_eq!(r.manifests.len(), 1);
        let spec = &r.manifests[0].object["spec"];
        assert_eq!(
            spec["groups"],
            serde_json::json!([{"groupName": "Outside"}, {"groupName": "devs"}])
        );
        assert_eq!(
            spec["policies"][0],
            serde_json::json!({"arn": "arn:aws:iam::123456789012:policy/team/read"})
        );
        assert!(
            render(
                &account(),
                &opts(Kind::Users, Selection::Names(vec!["bob".into()]))
            )
            .is_err()
        );
    }

    #[test]
    fn deletion_policy_can_be_overridden_and_yaml_is_a_commented_stream() {
        let mut o = opts(Kind::All, Selection::All);
        o.deletion_policy = DeletionPolicy::Delete;
        let r = render(&account(), &o).unwrap();
        assert!(
            r.manifests
                .iter()
                .all(|m| m.object["spec"]["deletionPolicy"] == "Delete")
        );
        let yaml = to_yaml(&r, &o, true).unwrap();
        assert_eq!(
            yaml.matches("\n---\n").count() + usize::from(yaml.starts_with("---")),
            5
        );
        assert!(yaml.contains("# Existing access keys and login profile are left alone"));
        assert!(yaml.contains("WARNING: IAM user Alice_Smith is already managed by x"));
        for doc in yaml.split("---\n").skip(1) {
            let v: serde_json::Value = serde_yaml::from_str(doc).unwrap();
            assert_eq!(v["apiVersion"], "iam.kubeop.dev/v1alpha1");
            assert!(v.get("status").is_none());
        }
    }

    #[test]
    fn copy_makes_a_new_user_with_the_same_permissions_and_no_adoption() {
        let r = render_copy(
            &account(),
            "Alice_Smith",
            "bob",
            &opts(Kind::Users, Selection::All),
        )
        .unwrap();
        let obj = &r.manifests[0].object;
        assert_eq!(obj["metadata"]["name"], "bob");
        assert!(obj["metadata"].get("annotations").is_none());
        let spec = &obj["spec"];
        assert!(spec.get("userName").is_none());
        assert!(spec.get("tags").is_none());
        assert_eq!(spec["groups"].as_array().unwrap().len(), 2);
        // The operator's MFA policy becomes a note naming the setting, not an attachment.
        assert_eq!(spec["policies"].as_array().unwrap().len(), 2);
        assert!(
            r.manifests[0]
                .comments
                .iter()
                .any(|c| c.contains("spec.console.mfa.required: true")),
            "{:?}",
            r.manifests[0].comments
        );
        assert_eq!(spec["inlinePolicies"][0]["name"], "extra");
        assert_eq!(
            spec["permissionsBoundary"]["arn"],
            "arn:aws:iam::123456789012:policy/team/boundary"
        );
        assert!(
            render_copy(
                &account(),
                "nobody",
                "bob",
                &opts(Kind::Users, Selection::All)
            )
            .is_err()
        );
    }
}
