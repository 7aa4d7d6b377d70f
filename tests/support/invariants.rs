//! End-state invariants of a namespace after the operator converged, computed from the
//! objects' specs (never from their status, which is what is being checked) and IAM as a
//! raw client reads it back. Every check returns the list of violations, so a test prints
//! all of them at once.
//!
//! The emulator is assumed to serve this namespace alone (one emulator per test): IAM must
//! hold exactly the entities the specs ask for, plus the ones a `Retain` deletion left.

use super::emulator::Emulator;
use super::read;
use iam_operator::api::{IamGroup, IamPolicy, IamUser, PolicyAttachment};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};

pub const ACCOUNT: &str = "123456789012";
/// The admin user an authenticated emulator starts with (not managed by any object).
pub const ADMIN: &str = "admin";

type Iam = aws_sdk_iam::Client;

/// An emulator that enforces AWS authentication (and IAM policies): the free requests
/// create [`ADMIN`] with AdministratorAccess and `keys` access keys (1 or 2) for it.
pub async fn authenticated_emulator(keys: usize) -> (Emulator, Vec<(String, String)>) {
    assert!((1..=2).contains(&keys), "IAM allows two keys per user");
    let free = (2 + keys).to_string();
    let emu = Emulator::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", &free)]);
    let anon = aws_sdk_iam::Client::new(&super::sdk_config(&emu.url));
    anon.create_user().user_name(ADMIN).send().await.unwrap();
    anon.attach_user_policy()
        .user_name(ADMIN)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    let mut creds = Vec::new();
    for _ in 0..keys {
        let out = anon
            .create_access_key()
            .user_name(ADMIN)
            .send()
            .await
            .unwrap();
        let key = out.access_key().unwrap();
        creds.push((
            key.access_key_id().to_string(),
            key.secret_access_key().to_string(),
        ));
    }
    // From now on only signed requests are served: the harness's default key is refused.
    let err = anon.list_users().send().await.unwrap_err();
    assert_eq!(
        super::code(&err).as_deref(),
        Some("InvalidClientTokenId"),
        "the emulator does not enforce authentication"
    );
    (emu, creds)
}

/// An SDK configuration signing with `creds`.
pub fn signed_config(url: &str, creds: &(String, String)) -> aws_config::SdkConfig {
    super::sdk_config(url)
        .into_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            aws_sdk_iam::config::Credentials::new(&creds.0, &creds.1, None, None, "tests"),
        ))
        .build()
}

/// The ARN STS reports for a key pair, or why it was refused.
pub async fn caller_arn(url: &str, id: &str, secret: &str) -> Result<String, String> {
    let sts = aws_sdk_sts::Client::new(&signed_config(url, &(id.to_string(), secret.to_string())));
    match sts.get_caller_identity().send().await {
        Ok(out) => Ok(out.arn().unwrap_or_default().to_string()),
        Err(e) => Err(super::code(&e).unwrap_or_else(|| format!("{e:?}"))),
    }
}

/// An IAM entity the test deleted the object of, and whether it asked to keep it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deleted {
    pub kind: &'static str,
    /// The IAM name (user, group or policy name).
    pub iam_name: String,
    pub retained: bool,
    /// Whether the object's status recorded the IAM entity when it was deleted. A retained
    /// entity must still exist only then: one never created stays absent, and one created
    /// by a call whose answer was lost in a crash may exist (Retain keeps what is there).
    pub created: bool,
}

/// What a namespace must look like once converged.
pub struct Expect<'a> {
    pub client: &'a Client,
    pub ns: &'a str,
    /// A client with admin rights on the emulator, to read IAM back.
    pub iam: &'a Iam,
    pub emulator_url: &'a str,
    /// Whether the emulator enforces authentication: then every published key must sign.
    pub authenticated: bool,
    /// Objects the test deleted (their IAM entities must be gone, or kept if retained).
    pub deleted: &'a [Deleted],
}

fn policy_arn(path: &str, name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:policy{path}{name}")
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// All IAM entities of the account: (users, groups, customer-managed policy names).
pub async fn iam_entities(iam: &Iam) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let mut users = BTreeSet::new();
    let mut pages = iam.list_users().into_paginator().send();
    while let Some(page) = pages.next().await {
        for u in page.unwrap().users() {
            users.insert(u.user_name().to_string());
        }
    }
    users.remove(ADMIN);
    let mut groups = BTreeSet::new();
    let mut pages = iam.list_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        for g in page.unwrap().groups() {
            groups.insert(g.group_name().to_string());
        }
    }
    let mut policies = BTreeSet::new();
    let mut pages = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for p in page.unwrap().policies() {
            policies.insert(p.policy_name().unwrap_or_default().to_string());
        }
    }
    (users, groups, policies)
}

/// The default version's document of a customer-managed policy, parsed.
async fn policy_document(iam: &Iam, arn: &str) -> Option<serde_json::Value> {
    let policy = iam.get_policy().policy_arn(arn).send().await.ok()?;
    let version = policy.policy()?.default_version_id()?.to_string();
    let out = iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version)
        .send()
        .await
        .ok()?;
    let doc = out.policy_version()?.document()?;
    serde_json::from_str(&urlencoding::decode(doc).ok()?).ok()
}

impl Expect<'_> {
    /// Every violation found; empty when the namespace is converged and consistent.
    pub async fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let policies: Vec<IamPolicy> = Api::namespaced(self.client.clone(), self.ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        let groups: Vec<IamGroup> = Api::namespaced(self.client.clone(), self.ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        let users: Vec<IamUser> = Api::namespaced(self.client.clone(), self.ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items;

        // No finalizer stuck: a deleted object is gone, not left terminating.
        for (kind, name, deleting) in policies
            .iter()
            .map(|o| {
                (
                    "IamPolicy",
                    o.name_any(),
                    o.metadata.deletion_timestamp.is_some(),
                )
            })
            .chain(groups.iter().map(|o| {
                (
                    "IamGroup",
                    o.name_any(),
                    o.metadata.deletion_timestamp.is_some(),
                )
            }))
            .chain(users.iter().map(|o| {
                (
                    "IamUser",
                    o.name_any(),
                    o.metadata.deletion_timestamp.is_some(),
                )
            }))
        {
            if deleting {
                v.push(format!(
                    "{kind} {name}: still terminating (finalizer stuck)"
                ));
            }
        }
        for d in self.deleted {
            let still = match d.kind {
                "IamUser" => users
                    .iter()
                    .any(|u| u.spec.iam_name_or(&u.name_any()) == d.iam_name),
                "IamGroup" => groups.iter().any(|g| g.iam_name() == d.iam_name),
                _ => policies.iter().any(|p| {
                    p.spec.policy_name.clone().unwrap_or_else(|| p.name_any()) == d.iam_name
                }),
            };
            if still {
                v.push(format!(
                    "{} {}: deleted, still in the API",
                    d.kind, d.iam_name
                ));
            }
        }

        // Every live object is Ready for its current generation.
        for p in &policies {
            let st = p.status.clone().unwrap_or_default();
            if !ready(&st.conditions) || st.observed_generation != p.metadata.generation {
                v.push(format!(
                    "IamPolicy {}: not Ready for its generation",
                    p.name_any()
                ));
            }
        }
        for g in &groups {
            let st = g.status.clone().unwrap_or_default();
            if !ready(&st.conditions) || st.observed_generation != g.metadata.generation {
                v.push(format!(
                    "IamGroup {}: not Ready for its generation",
                    g.name_any()
                ));
            }
        }
        for u in &users {
            let st = u.status.clone().unwrap_or_default();
            if !ready(&st.conditions) || st.observed_generation != u.metadata.generation {
                v.push(format!(
                    "IamUser {}: not Ready for its generation",
                    u.name_any()
                ));
            }
        }

        // IAM holds exactly what the specs ask for, plus what was retained.
        let policy_names: BTreeMap<String, String> = policies
            .iter()
            .map(|p| {
                let name = p.spec.policy_name.clone().unwrap_or_else(|| p.name_any());
                (p.name_any(), policy_arn(&p.spec.path, &name))
            })
            .collect();
        let group_names: BTreeMap<String, String> = groups
            .iter()
            .map(|g| (g.name_any(), g.iam_name()))
            .collect();
        let resolve = |a: &PolicyAttachment| -> String {
            match (&a.arn, &a.policy_ref) {
                (Some(arn), _) => arn.clone(),
                (None, Some(r)) => policy_names
                    .get(&r.name)
                    .cloned()
                    .unwrap_or_else(|| format!("<missing IamPolicy {}>", r.name)),
                (None, None) => "<empty attachment>".into(),
            }
        };
        let retained = |kind: &str, created: bool| -> BTreeSet<String> {
            self.deleted
                .iter()
                .filter(|d| d.kind == kind && d.retained && d.created == created)
                .map(|d| d.iam_name.clone())
                .collect()
        };
        let (iam_users, iam_groups, iam_policies) = iam_entities(self.iam).await;
        let mut want_users: BTreeSet<String> = users
            .iter()
            .map(|u| u.spec.iam_name_or(&u.name_any()))
            .collect();
        want_users.extend(retained("IamUser", true));
        let mut want_groups: BTreeSet<String> = group_names.values().cloned().collect();
        want_groups.extend(retained("IamGroup", true));
        let mut want_policies: BTreeSet<String> = policies
            .iter()
            .map(|p| p.spec.policy_name.clone().unwrap_or_else(|| p.name_any()))
            .collect();
        want_policies.extend(retained("IamPolicy", true));
        for (kind, want, have, may) in [
            ("users", &want_users, &iam_users, retained("IamUser", false)),
            (
                "groups",
                &want_groups,
                &iam_groups,
                retained("IamGroup", false),
            ),
            (
                "policies",
                &want_policies,
                &iam_policies,
                retained("IamPolicy", false),
            ),
        ] {
            let missing: Vec<_> = want.difference(have).collect();
            let extra: Vec<_> = have
                .difference(want)
                .filter(|n| !may.contains(*n))
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                v.push(format!(
                    "IAM {kind}: missing {missing:?}, not asked for (orphaned or not deleted) {extra:?}"
                ));
            }
        }

        // The detailed reads below assume the entities exist: while something above is
        // still off, the operator is still at work and they would race with it.
        if !v.is_empty() {
            return v;
        }
        for p in &policies {
            let arn = &policy_names[&p.name_any()];
            match policy_document(self.iam, arn).await {
                Some(doc) if doc == p.spec.document => {}
                other => v.push(format!(
                    "IamPolicy {}: IAM document {other:?} != spec {}",
                    p.name_any(),
                    p.spec.document
                )),
            }
        }
        for g in &groups {
            let name = g.iam_name();
            if !iam_groups.contains(&name) {
                continue;
            }
            let want: BTreeSet<String> = g.spec.policies.iter().map(resolve).collect();
            let have = read::group_policies(self.iam, &name).await;
            if want != have {
                v.push(format!(
                    "IamGroup {name}: attached {have:?} != spec {want:?}"
                ));
            }
            let want: BTreeMap<String, serde_json::Value> = g
                .spec
                .inline_policies
                .iter()
                .map(|i| (i.name.clone(), i.document.clone()))
                .collect();
            let mut have = BTreeMap::new();
            for i in read::group_inline(self.iam, &name).await {
                let doc = read::group_inline_doc(self.iam, &name, &i).await;
                have.insert(i, doc);
            }
            if want != have {
                v.push(format!("IamGroup {name}: inline {have:?} != spec {want:?}"));
            }
        }
        for u in &users {
            let name = u.spec.iam_name_or(&u.name_any());
            if !iam_users.contains(&name) {
                continue;
            }
            v.extend(self.user_violations(u, &name, &group_names, &resolve).await);
        }
        v
    }

    async fn user_violations(
        &self,
        u: &IamUser,
        name: &str,
        group_names: &BTreeMap<String, String>,
        resolve: &impl Fn(&PolicyAttachment) -> String,
    ) -> Vec<String> {
        let mut v = Vec::new();
        let want: BTreeSet<String> = u
            .spec
            .groups
            .iter()
            .map(|m| match (&m.group_name, &m.group_ref) {
                (Some(n), _) => n.clone(),
                (None, Some(r)) => group_names
                    .get(&r.name)
                    .cloned()
                    .unwrap_or_else(|| format!("<missing IamGroup {}>", r.name)),
                (None, None) => "<empty membership>".into(),
            })
            .collect();
        let have = read::user_groups(self.iam, name).await;
        if want != have {
            v.push(format!("IamUser {name}: groups {have:?} != spec {want:?}"));
        }
        let want: BTreeSet<String> = u.spec.policies.iter().map(resolve).collect();
        let have = read::user_policies(self.iam, name).await;
        if want != have {
            v.push(format!(
                "IamUser {name}: attached {have:?} != spec {want:?}"
            ));
        }
        let want: BTreeMap<String, serde_json::Value> = u
            .spec
            .inline_policies
            .iter()
            .map(|i| (i.name.clone(), i.document.clone()))
            .collect();
        let mut have = BTreeMap::new();
        for i in read::user_inline(self.iam, name).await {
            let doc = read::user_inline_doc(self.iam, name, &i).await;
            have.insert(i, doc);
        }
        if want != have {
            v.push(format!("IamUser {name}: inline {have:?} != spec {want:?}"));
        }

        // Keys: at most two, exactly the published one plus the previous one in grace.
        let keys = read::access_keys(self.iam, name).await;
        if keys.len() > 2 {
            v.push(format!("IamUser {name}: {} keys in IAM", keys.len()));
        }
        let wants_key = u.spec.access_key.as_ref().is_some_and(|k| k.enabled);
        let st = u
            .status
            .as_ref()
            .and_then(|s| s.access_key.clone())
            .unwrap_or_default();
        if !wants_key {
            if !keys.is_empty() {
                v.push(format!(
                    "IamUser {name}: keys {keys:?} without accessKey enabled"
                ));
            }
            return v;
        }
        let secret_name = u
            .spec
            .access_key
            .as_ref()
            .and_then(|k| k.secret_name.clone())
            .unwrap_or_else(|| format!("{}-aws-credentials", u.name_any()));
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), self.ns);
        let Some(secret) = secrets.get_opt(&secret_name).await.unwrap() else {
            v.push(format!("IamUser {name}: Secret {secret_name} missing"));
            return v;
        };
        let field = |k: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        };
        let (Some(id), Some(secret_key)) =
            (field("AWS_ACCESS_KEY_ID"), field("AWS_SECRET_ACCESS_KEY"))
        else {
            v.push(format!(
                "IamUser {name}: Secret {secret_name} lacks the key fields"
            ));
            return v;
        };
        let mut published: BTreeSet<String> = [id.clone()].into();
        published.extend(st.previous_access_key_id.clone());
        let have: BTreeSet<String> = keys.keys().cloned().collect();
        if have != published {
            v.push(format!(
                "IamUser {name}: IAM keys {have:?} != published {published:?} (Secret + previous in grace)"
            ));
        }
        if keys.get(&id) != Some(&true) {
            v.push(format!(
                "IamUser {name}: the Secret's key {id} is not Active in IAM"
            ));
        }
        if st.access_key_id.as_deref() != Some(id.as_str()) {
            v.push(format!(
                "IamUser {name}: status key {:?} != the Secret's key {id}",
                st.access_key_id
            ));
        }
        // A rotation asked for by annotation was carried out.
        let asked = u
            .annotations()
            .get(iam_operator::api::ROTATE_KEY_ANNOTATION);
        if asked.is_some() && asked != st.rotation_token.as_ref() {
            v.push(format!(
                "IamUser {name}: rotation {asked:?} asked, the published key answers {:?}",
                st.rotation_token
            ));
        }
        if self.authenticated {
            match caller_arn(self.emulator_url, &id, &secret_key).await {
                Ok(arn) if arn == format!("arn:aws:iam::{ACCOUNT}:user/{name}") => {}
                other => v.push(format!(
                    "IamUser {name}: the Secret's credentials do not sign as the user: {other:?}"
                )),
            }
        }
        v
    }
}

/// The IAM user name of a spec: `spec.userName` or the object's name.
pub trait UserName {
    fn iam_name_or(&self, object_name: &str) -> String;
}

impl UserName for iam_operator::api::IamUserSpec {
    fn iam_name_or(&self, object_name: &str) -> String {
        self.user_name
            .clone()
            .unwrap_or_else(|| object_name.to_string())
    }
}
