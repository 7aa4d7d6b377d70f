//! A hostile catalog, data-driven: every file in `tests/catalog/` is a YAML list of cases, each
//! a manifest a tenant might apply to take more than it was granted (names and paths,
//! oversize and non-IAM documents, wrong types, immutable fields, cross-namespace
//! references, every guardrail, Secret-name collisions, adoption, escalation through inline
//! policies and groups), with the outcome it must have:
//!
//! - `rejected`: the API server refuses it (CRD schema or CEL rule), with `message` in its
//!   answer. The ValidatingAdmissionPolicy is not installed here: the tenancy rules are the
//!   operator's to enforce.
//! - `refused`: the operator reports Ready=False for the current generation with `message`
//!   in the condition; with Stalled=True unless a `reason` (e.g. DependencyNotReady) is given.
//! - `accepted`: Ready=True for the current generation.
//!
//! IAM (GetAccountAuthorizationDetails, ListAccessKeys, GetLoginProfile, tags) and the
//! tenants' Secrets are snapshotted as a set of facts before the catalog, after it, and after
//! the catalog's objects are deleted. Every difference must be declared by a case (`iam`,
//! `creates`, `afterDelete`); an undeclared one is an unintended change, and must be none.
//!
//! The world: one operator (`--iam-path-prefix /k8s/`, AdministratorAccess denied) watching
//! three tenant namespaces. `tenant-a` is governed by an IamTenancyPolicy without a forced
//! boundary (escalation screening on, ReadOnlyAccess and groups `shared-*` allowed, keys yes,
//! console no, adoption no); `tenant-c` by one forcing the boundary `tenant-boundary`, with
//! adoption on (A forbids session credentials, neither allows AWS trust principals; the
//! operator knows the cluster's OIDC provider); `tenant-b` by the operator's flags. Before the catalog, an administrator made
//! a human admin, a break-glass user, users tagged adoptable by B and by C, the boundary, an
//! administrator's own Allow-* policy, groups `admins` (inline Allow *), `shared-readers`
//! (ReadOnlyAccess) and `ops-iam` (IAMFullAccess), a role `admin-ops` (AdministratorAccess);
//! tenant B made a policy, a group and a user
//! through the operator; tenant A holds an unrelated Secret `db-password`.

mod support;

use aws_sdk_iam::types::EntityType;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator};
use support::emulator::{Emulator, repo_root};

const NAMESPACES: [&str; 3] = ["tenant-a", "tenant-b", "tenant-c"];
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const OWNER_TAG: &str = "iam.kubeop.dev/owner";
const OIDC_PROVIDER: &str =
    "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/CATALOG";
/// How long one phase's objects may take to show their outcome.
const OUTCOME_WITHIN: Duration = Duration::from_secs(120);
/// How long the catalog's objects may take to be deleted (finalizers done).
const DELETED_WITHIN: Duration = Duration::from_secs(180);
/// Reasons of a refusal that a human must act on (the Stalled ones).
const STALLED_REASONS: [&str; 4] = [
    "InvalidSpec",
    "NameConflict",
    "SecretConflict",
    "LimitExceeded",
];

// ---------------------------------------------------------------------------------------
// The data

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Rejected,
    Refused,
    Accepted,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct Expect {
    outcome: Outcome,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// A second manifest for the same object, applied once the first one's outcome is in.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct Step {
    manifest: Value,
    expect: Expect,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    /// What the manifest tries, in a sentence.
    about: String,
    /// Cases of one phase are applied together; a phase starts when the previous one's
    /// outcomes are in (for cases that need another case's result to exist).
    #[serde(default = "first_phase")]
    phase: u8,
    manifest: Value,
    expect: Expect,
    #[serde(default)]
    update: Option<Step>,
    /// The IAM entity of the manifest is created (id, path and owner tag; for a policy its
    /// default version, document and owner tag), and deleted with the object.
    #[serde(default)]
    creates: bool,
    /// Further intended differences after the catalog: `+fact` or `-fact`, `*` matching any
    /// text.
    #[serde(default)]
    iam: Vec<String>,
    /// Intended differences from the first snapshot once the catalog's objects are deleted.
    #[serde(default)]
    after_delete: Vec<String>,
}

fn first_phase() -> u8 {
    1
}

fn load_catalog() -> Vec<Case> {
    let dir = repo_root().join("tests/catalog");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let list: Vec<Case> =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        cases.extend(list);
    }
    let mut names = BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name.clone()), "case {} twice", case.name);
    }
    cases
}

/// `${repeat N X}` inside a string becomes X repeated N times; a string that is exactly
/// `${tags N}` becomes N tags `k0: v` … .
fn expand(value: &Value) -> Value {
    match value {
        Value::String(s) => {
            if let Some(n) = s.strip_prefix("${tags ").and_then(|r| r.strip_suffix('}')) {
                let n: usize = n.parse().unwrap();
                return Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect());
            }
            let mut out = s.clone();
            while let Some(start) = out.find("${repeat ") {
                let end = start + out[start..].find('}').expect("unclosed ${repeat");
                let args: Vec<&str> = out[start + 9..end].split(' ').collect();
                let n: usize = args[0].parse().unwrap();
                out.replace_range(start..=end, &args[1].repeat(n));
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(expand).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), expand(v))).collect())
        }
        other => other.clone(),
    }
}

/// The manifest as applied: macros expanded, labelled as part of the catalog.
fn render(manifest: &Value) -> Value {
    let mut m = expand(manifest);
    let meta = m["metadata"].as_object_mut().expect("metadata");
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    labels["catalog"] = json!("true");
    m
}

/// kind, namespace, metadata.name.
fn identity(manifest: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&manifest["kind"]),
        s(&manifest["metadata"]["namespace"]),
        s(&manifest["metadata"]["name"]),
    )
}

/// The facts a created entity adds, from its manifest.
fn created_facts(manifest: &Value) -> Vec<String> {
    let m = expand(manifest);
    let (kind, ns, name) = identity(&m);
    let spec = &m["spec"];
    let path = spec["path"].as_str().unwrap_or("/");
    let owner = format!("{OWNER_TAG}=default/{ns}/{name}");
    match kind.as_str() {
        "IamUser" => {
            let iam = spec["userName"].as_str().unwrap_or(&name);
            vec![
                format!("+user {iam} id=* path={path}"),
                format!("+user {iam} tag {owner}"),
            ]
        }
        "IamGroup" => {
            let iam = spec["groupName"].as_str().unwrap_or(&name);
            vec![format!("+group {iam} id=* path={path}")]
        }
        "IamPolicy" => {
            let iam = spec["policyName"].as_str().unwrap_or(&name);
            vec![
                format!("+policy {iam} id=* path={path} default=v1"),
                format!("+policy {iam} tag {owner}"),
                format!("+policy {iam} document *"),
            ]
        }
        "IamRole" => {
            let iam = spec["roleName"].as_str().unwrap_or(&name);
            vec![format!("+role {iam} id=* path={path}")]
        }
        other => panic!("unknown kind {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Observing outcomes

fn api_resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "IamUser" => "iamusers",
        "IamGroup" => "iamgroups",
        "IamPolicy" => "iampolicies",
        "IamRole" => "iamroles",
        other => panic!("unknown kind {other}"),
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("iam.kubeop.dev", "v1alpha1", kind),
        plural,
    )
}

/// What an object shows: its Ready condition for the current generation, and Stalled.
#[derive(Debug, Clone, Default)]
struct Shown {
    ready: Option<String>,
    reason: String,
    message: String,
    stalled: bool,
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ready {
            None => write!(f, "no Ready condition for the current generation"),
            Some(status) => write!(
                f,
                "Ready={status} {}{}: {}",
                self.reason,
                if self.stalled { " (Stalled)" } else { "" },
                self.message
            ),
        }
    }
}

async fn shown(client: &kube::Client, kind: &str, ns: &str, name: &str) -> Option<Shown> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &api_resource(kind));
    let obj = api.get_opt(name).await.ok()??;
    let generation = obj.metadata.generation;
    let conditions = obj.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| conditions.iter().find(|c| c["type"] == t).cloned();
    let mut out = Shown::default();
    if let Some(ready) = find("Ready")
        && ready["observedGeneration"].as_i64() == generation
    {
        out.ready = ready["status"].as_str().map(str::to_string);
        out.reason = ready["reason"].as_str().unwrap_or_default().to_string();
        out.message = ready["message"].as_str().unwrap_or_default().to_string();
    }
    out.stalled = find("Stalled").is_some_and(|c| c["status"] == "True");
    Some(out)
}

/// The outcome an object shows, if it shows one yet.
fn outcome_of(shown: &Shown) -> Option<Outcome> {
    match shown.ready.as_deref() {
        Some("True") => Some(Outcome::Accepted),
        Some("False")
            if shown.stalled
                || STALLED_REASONS.contains(&shown.reason.as_str())
                || shown.reason == "DependencyNotReady" =>
        {
            Some(Outcome::Refused)
        }
        _ => None,
    }
}

fn meets(expect: &Expect, shown: &Shown) -> bool {
    let message_ok = expect
        .message
        .as_deref()
        .is_none_or(|m| shown.message.contains(m));
    match expect.outcome {
        Outcome::Accepted => shown.ready.as_deref() == Some("True"),
        Outcome::Refused => {
            shown.ready.as_deref() == Some("False")
                && message_ok
                && match &expect.reason {
                    Some(r) => &shown.reason == r,
                    None => shown.stalled && STALLED_REASONS.contains(&shown.reason.as_str()),
                }
        }
        Outcome::Rejected => false,
    }
}

/// One applied manifest and what came of it.
#[derive(Debug)]
struct Tried {
    case: String,
    step: &'static str,
    expected: Outcome,
    observed: Option<Outcome>,
    ok: bool,
    detail: String,
}

/// Applies one manifest; a rejection is decided at once, anything else is left pending.
fn apply(
    cp: &ControlPlane,
    case: &str,
    step: &'static str,
    manifest: &Value,
    expect: &Expect,
) -> Result<Tried, ()> {
    let out = cp.apply(&render(manifest).to_string());
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        if expect.outcome == Outcome::Rejected {
            return Ok(Tried {
                case: case.into(),
                step,
                expected: expect.outcome,
                observed: None,
                ok: false,
                detail: "admitted, expected a rejection".into(),
            });
        }
        return Err(());
    }
    let message_ok = expect.message.as_deref().is_none_or(|m| stderr.contains(m));
    Ok(Tried {
        case: case.into(),
        step,
        expected: expect.outcome,
        observed: Some(Outcome::Rejected),
        ok: expect.outcome == Outcome::Rejected && message_ok,
        detail: stderr,
    })
}

/// Polls the pending objects until each meets its expectation or the deadline passes.
async fn settle(
    client: &kube::Client,
    pending: Vec<(String, &'static str, Value, Expect)>,
) -> Vec<Tried> {
    let deadline = Instant::now() + OUTCOME_WITHIN;
    let mut left = pending;
    let mut done = Vec::new();
    loop {
        let mut still = Vec::new();
        for (case, step, manifest, expect) in left {
            let (kind, ns, name) = identity(&manifest);
            let s = shown(client, &kind, &ns, &name).await.unwrap_or_default();
            if meets(&expect, &s) {
                done.push(Tried {
                    case,
                    step,
                    expected: expect.outcome,
                    observed: outcome_of(&s),
                    ok: true,
                    detail: s.to_string(),
                });
            } else if Instant::now() > deadline {
                done.push(Tried {
                    case,
                    step,
                    expected: expect.outcome,
                    observed: outcome_of(&s),
                    ok: false,
                    detail: s.to_string(),
                });
            } else {
                still.push((case, step, manifest, expect));
            }
        }
        left = still;
        if left.is_empty() {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Snapshots

/// A policy document as canonical JSON (sorted keys), whether IAM returned it URL-encoded
/// or not.
fn document(text: &str) -> String {
    let parsed = serde_json::from_str::<Value>(text).ok().or_else(|| {
        urlencoding::decode(text)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    });
    match parsed {
        Some(v) => canonical(&v).to_string(),
        None => format!("unparsed:{text}"),
    }
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<_, _> =
                map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Everything the catalog could change, as facts: IAM users (id and path, tags, boundary,
/// groups, managed and inline policies, access keys, login profile), groups (id and path,
/// managed and inline policies), customer-managed policies (id, path, default version and
/// its document, tags), roles, and the Secrets of the tenant namespaces (owner and a hash of
/// their data).
async fn snapshot(iam: &aws_sdk_iam::Client, client: &kube::Client) -> BTreeSet<String> {
    let mut facts = BTreeSet::new();
    let pages = iam
        .get_account_authorization_details()
        .filter(EntityType::User)
        .filter(EntityType::Group)
        .filter(EntityType::Role)
        .filter(EntityType::LocalManagedPolicy)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .expect("GetAccountAuthorizationDetails");
    for page in pages {
        for u in page.user_detail_list() {
            let name = u.user_name().unwrap_or_default().to_string();
            facts.insert(format!(
                "user {name} id={} path={}",
                u.user_id().unwrap_or_default(),
                u.path().unwrap_or_default()
            ));
            for t in u.tags() {
                facts.insert(format!("user {name} tag {}={}", t.key(), t.value()));
            }
            for (k, v) in support::read::user_tags(iam, &name).await {
                facts.insert(format!("user {name} tag {k}={v}"));
            }
            if let Some(b) = u
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
            {
                facts.insert(format!("user {name} boundary {b}"));
            }
            if let Some(b) = support::read::user_boundary(iam, &name).await {
                facts.insert(format!("user {name} boundary {b}"));
            }
            for g in u.group_list() {
                facts.insert(format!("user {name} group {g}"));
            }
            for p in u.attached_managed_policies() {
                facts.insert(format!(
                    "user {name} policy {}",
                    p.policy_arn().unwrap_or_default()
                ));
            }
            for p in u.user_policy_list() {
                facts.insert(format!(
                    "user {name} inline {} {}",
                    p.policy_name().unwrap_or_default(),
                    document(p.policy_document().unwrap_or_default())
                ));
            }
            for (id, active) in support::read::access_keys(iam, &name).await {
                let status = if active { "Active" } else { "Inactive" };
                facts.insert(format!("user {name} key {id} {status}"));
            }
            match iam.get_login_profile().user_name(&name).send().await {
                Ok(out) => {
                    let created = out
                        .login_profile()
                        .map(|p| p.create_date().to_string())
                        .unwrap_or_default();
                    facts.insert(format!("user {name} login-profile created={created}"));
                }
                Err(e) if support::code(&e).as_deref() == Some("NoSuchEntity") => {}
                Err(e) => panic!("GetLoginProfile {name}: {e:?}"),
            }
        }
        for g in page.group_detail_list() {
            let name = g.group_name().unwrap_or_default().to_string();
            facts.insert(format!(
                "group {name} id={} path={}",
                g.group_id().unwrap_or_default(),
                g.path().unwrap_or_default()
            ));
            for p in g.attached_managed_policies() {
                facts.insert(format!(
                    "group {name} policy {}",
                    p.policy_arn().unwrap_or_default()
                ));
            }
            for p in g.group_policy_list() {
                facts.insert(format!(
                    "group {name} inline {} {}",
                    p.policy_name().unwrap_or_default(),
                    document(p.policy_document().unwrap_or_default())
                ));
            }
        }
        for r in page.role_detail_list() {
            facts.insert(format!(
                "role {} id={} path={}",
                r.role_name().unwrap_or_default(),
                r.role_id().unwrap_or_default(),
                r.path().unwrap_or_default()
            ));
        }
        for p in page.policies() {
            let name = p.policy_name().unwrap_or_default().to_string();
            let arn = p.arn().unwrap_or_default();
            if arn.contains(":iam::aws:policy/") {
                continue;
            }
            let default = p.default_version_id().unwrap_or_default();
            facts.insert(format!(
                "policy {name} id={} path={} default={default}",
                p.policy_id().unwrap_or_default(),
                p.path().unwrap_or_default()
            ));
            for v in p.policy_version_list() {
                if v.is_default_version() {
                    facts.insert(format!(
                        "policy {name} document {}",
                        document(v.document().unwrap_or_default())
                    ));
                }
            }
            for (k, v) in support::read::policy_tags(iam, arn).await {
                facts.insert(format!("policy {name} tag {k}={v}"));
            }
        }
    }
    let profiles = iam
        .list_instance_profiles()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("ListInstanceProfiles");
    for p in profiles {
        facts.insert(format!(
            "instance-profile {} id={} path={} roles={:?}",
            p.instance_profile_name(),
            p.instance_profile_id(),
            p.path(),
            p.roles().iter().map(|r| r.role_name()).collect::<Vec<_>>()
        ));
    }
    for ns in NAMESPACES {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        for s in api.list(&ListParams::default()).await.unwrap().items {
            let owner = s
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .map(|o| format!("{}/{}", o.kind, o.name))
                .unwrap_or_else(|| "none".into());
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            let data: BTreeMap<_, _> = s.data.clone().unwrap_or_default().into_iter().collect();
            for (k, v) in &data {
                k.hash(&mut hasher);
                v.0.hash(&mut hasher);
            }
            facts.insert(format!(
                "secret {ns}/{} owner={owner} keys={} data={:016x}",
                s.metadata.name.unwrap_or_default(),
                data.keys().cloned().collect::<Vec<_>>().join(","),
                hasher.finish()
            ));
        }
    }
    facts
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// The differences between two snapshots checked against the declared ones: the
/// differences no declaration covers, and the declarations (case, pattern) that matched
/// nothing.
fn check_diff(
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    declared: &[(String, String)],
) -> (Vec<String>, Vec<(String, String)>) {
    let added = after.difference(before).map(|f| format!("+{f}"));
    let removed = before.difference(after).map(|f| format!("-{f}"));
    let mut used = vec![false; declared.len()];
    let mut unintended = Vec::new();
    for diff in added.chain(removed) {
        let mut covered = false;
        for (i, (_, pattern)) in declared.iter().enumerate() {
            if glob(pattern, &diff) {
                used[i] = true;
                covered = true;
            }
        }
        if !covered {
            unintended.push(diff);
        }
    }
    let missing = declared
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(d, _)| d.clone())
        .collect();
    (unintended, missing)
}

// ---------------------------------------------------------------------------------------
// The world

/// The administrator's IAM, made out of band before the operator starts.
async fn administrators_world(iam: &aws_sdk_iam::Client) {
    let allow_all = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}).to_string();
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    // A human administrator: console, a key, AdministratorAccess, member of admins.
    iam.create_user()
        .user_name("human-admin")
        .send()
        .await
        .unwrap();
    iam.create_login_profile()
        .user_name("human-admin")
        .password("Adm1n-Passw0rd!x")
        .send()
        .await
        .unwrap();
    iam.create_access_key()
        .user_name("human-admin")
        .send()
        .await
        .unwrap();
    iam.attach_user_policy()
        .user_name("human-admin")
        .policy_arn(ADMIN)
        .send()
        .await
        .unwrap();
    // The break-glass user.
    iam.create_user()
        .user_name("break-glass")
        .tags(tag("purpose", "break-glass"))
        .send()
        .await
        .unwrap();
    iam.create_access_key()
        .user_name("break-glass")
        .send()
        .await
        .unwrap();
    iam.attach_user_policy()
        .user_name("break-glass")
        .policy_arn(ADMIN)
        .send()
        .await
        .unwrap();
    // Users an administrator consented to hand over: one to B, one to C.
    iam.create_user()
        .user_name("legacy-b")
        .path("/k8s/c/")
        .tags(tag("iam.kubeop.dev/adoptable-by", "default/tenant-b"))
        .send()
        .await
        .unwrap();
    iam.create_user()
        .user_name("legacy-c")
        .path("/k8s/c/")
        .tags(tag("iam.kubeop.dev/adoptable-by", "default/tenant-c"))
        .tags(tag("team", "legacy"))
        .send()
        .await
        .unwrap();
    // The boundary forced on C, at /k8s/ as an administrator would create it.
    let boundary = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"}]});
    iam.create_policy()
        .policy_name("tenant-boundary")
        .path("/k8s/")
        .policy_document(boundary.to_string())
        .send()
        .await
        .unwrap();
    // The administrator's own broad policy, untagged.
    iam.create_policy()
        .policy_name("org-admin")
        .policy_document(&allow_all)
        .send()
        .await
        .unwrap();
    // Groups: admins (inline Allow *), shared-readers (ReadOnlyAccess), ops-iam
    // (IAMFullAccess).
    iam.create_group()
        .group_name("admins")
        .send()
        .await
        .unwrap();
    iam.put_group_policy()
        .group_name("admins")
        .policy_name("everything")
        .policy_document(&allow_all)
        .send()
        .await
        .unwrap();
    iam.add_user_to_group()
        .group_name("admins")
        .user_name("human-admin")
        .send()
        .await
        .unwrap();
    iam.create_group()
        .group_name("shared-readers")
        .send()
        .await
        .unwrap();
    iam.attach_group_policy()
        .group_name("shared-readers")
        .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
        .send()
        .await
        .unwrap();
    iam.create_group()
        .group_name("ops-iam")
        .send()
        .await
        .unwrap();
    iam.attach_group_policy()
        .group_name("ops-iam")
        .policy_arn("arn:aws:iam::aws:policy/IAMFullAccess")
        .send()
        .await
        .unwrap();
    // A role of the administrators, untagged, with AdministratorAccess.
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]}).to_string();
    iam.create_role()
        .role_name("admin-ops")
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    iam.attach_role_policy()
        .role_name("admin-ops")
        .policy_arn(ADMIN)
        .send()
        .await
        .unwrap();
}

const TENANCY: &str = r#"
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamTenancyPolicy
metadata: {name: tenant-a}
spec:
  namespaceSelector: {matchLabels: {tenant: a}}
  path: /k8s/a/
  allowedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
  allowedGroups: ["shared-*"]
  accessKeys: true
  console: false
  adoption: false
  sessionCredentials: false
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamTenancyPolicy
metadata: {name: tenant-c}
spec:
  namespaceSelector: {matchLabels: {tenant: c}}
  path: /k8s/c/
  allowedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
  allowedGroups: ["shared-*"]
  permissionsBoundary: arn:aws:iam::123456789012:policy/k8s/tenant-boundary
  accessKeys: true
  console: true
  adoption: true
"#;

/// Tenant B's own objects, made through the operator before the catalog.
const TENANT_B: &str = r#"
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamPolicy
metadata: {name: b-shared, namespace: tenant-b}
spec:
  path: /k8s/b/
  document:
    Version: "2012-10-17"
    Statement: [{Effect: Allow, Action: "s3:GetObject", Resource: "arn:aws:s3:::tenant-b/*"}]
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamGroup
metadata: {name: b-team, namespace: tenant-b}
spec:
  path: /k8s/b/
  policies: [{policyRef: {name: b-shared}}]
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamUser
metadata: {name: b-user, namespace: tenant-b}
spec:
  path: /k8s/b/
  groups: [{groupRef: {name: b-team}}]
  accessKey: {enabled: true}
"#;

async fn wait_ready(client: &kube::Client, kind: &str, ns: &str, name: &str) {
    let deadline = Instant::now() + OUTCOME_WITHIN;
    loop {
        let s = shown(client, kind, ns, name).await.unwrap_or_default();
        if s.ready.as_deref() == Some("True") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} {ns}/{name} not Ready: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn catalog_objects_left(client: &kube::Client) -> Vec<String> {
    let mut left = Vec::new();
    for kind in ["IamUser", "IamGroup", "IamPolicy", "IamRole"] {
        for ns in NAMESPACES {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &api_resource(kind));
            let list = api
                .list(&ListParams::default().labels("catalog=true"))
                .await
                .unwrap();
            left.extend(list.items.iter().map(|o| {
                format!(
                    "{kind} {ns}/{}",
                    o.metadata.name.clone().unwrap_or_default()
                )
            }));
        }
    }
    left
}

// ---------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_catalog_is_refused_or_harmless_and_changes_nothing_else() {
    let cases = load_catalog();
    assert!(
        cases.len() >= 40,
        "the catalog has only {} cases",
        cases.len()
    );

    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let iam = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    for (ns, tenant) in [("tenant-a", "a"), ("tenant-b", "b"), ("tenant-c", "c")] {
        cp.apply_ok(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"tenant": tenant}}}).to_string(),
        );
    }
    cp.apply_ok(TENANCY);
    administrators_world(&iam).await;
    let watch = NAMESPACES.join(",");
    let op = Operator::start(
        cp,
        &emulator.url,
        &[
            "--iam-path-prefix",
            "/k8s/",
            "--deny-policy-arn",
            ADMIN,
            "--watch-namespace",
            &watch,
        ],
        // Roles trusting ServiceAccounts need the cluster's OIDC provider.
        &[("IAM_OPERATOR_OIDC_PROVIDER_ARN", OIDC_PROVIDER)],
    );
    let client = cp.client().await;
    cp.apply_ok(TENANT_B);
    for (kind, name) in [
        ("IamPolicy", "b-shared"),
        ("IamGroup", "b-team"),
        ("IamUser", "b-user"),
    ] {
        wait_ready(&client, kind, "tenant-b", name).await;
    }
    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "db-password",
        "-n",
        "tenant-a",
        "--from-literal=password=do-not-overwrite",
    ]);

    let before = snapshot(&iam, &client).await;
    for fact in [
        "user human-admin policy arn:aws:iam::aws:policy/AdministratorAccess",
        "group admins inline everything",
        "policy b-shared tag iam.kubeop.dev/owner=default/tenant-b/b-shared",
    ] {
        assert!(
            before.iter().any(|f| f.starts_with(fact)),
            "the first snapshot lacks {fact}:\n{}",
            before.iter().cloned().collect::<Vec<_>>().join("\n")
        );
    }

    // The catalog, phase by phase.
    let mut tried: Vec<Tried> = Vec::new();
    let phases: BTreeSet<u8> = cases.iter().map(|c| c.phase).collect();
    for phase in phases {
        let in_phase: Vec<&Case> = cases.iter().filter(|c| c.phase == phase).collect();
        let mut pending = Vec::new();
        for case in &in_phase {
            match apply(cp, &case.name, "apply", &case.manifest, &case.expect) {
                Ok(t) => tried.push(t),
                Err(()) => pending.push((
                    case.name.clone(),
                    "apply",
                    expand(&case.manifest),
                    case.expect.clone(),
                )),
            }
        }
        tried.extend(settle(&client, pending).await);
        let mut pending = Vec::new();
        for case in &in_phase {
            let Some(update) = &case.update else { continue };
            match apply(cp, &case.name, "update", &update.manifest, &update.expect) {
                Ok(t) => tried.push(t),
                Err(()) => pending.push((
                    case.name.clone(),
                    "update",
                    expand(&update.manifest),
                    update.expect.clone(),
                )),
            }
        }
        tried.extend(settle(&client, pending).await);
    }
    // Let retries of refused objects run once more before looking at IAM.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = snapshot(&iam, &client).await;

    let mut declared = Vec::new();
    for case in &cases {
        if case.creates {
            declared.extend(
                created_facts(&case.manifest)
                    .into_iter()
                    .map(|f| (case.name.clone(), f)),
            );
        }
        declared.extend(case.iam.iter().map(|f| (case.name.clone(), f.clone())));
    }
    let (unintended, missing) = check_diff(&before, &after, &declared);

    // Delete the catalog's objects: what they made goes, nothing else.
    for ns in NAMESPACES {
        cp.kubectl_ok(&[
            "delete",
            "iamusers,iamgroups,iampolicies,iamroles",
            "-n",
            ns,
            "-l",
            "catalog=true",
            "--wait=false",
        ]);
    }
    let deadline = Instant::now() + DELETED_WITHIN;
    let mut left = catalog_objects_left(&client).await;
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        left = catalog_objects_left(&client).await;
    }
    let deleted = snapshot(&iam, &client).await;
    let declared_after_delete: Vec<(String, String)> = cases
        .iter()
        .flat_map(|c| c.after_delete.iter().map(|f| (c.name.clone(), f.clone())))
        .collect();
    let (unintended_after_delete, missing_after_delete) =
        check_diff(&before, &deleted, &declared_after_delete);

    // The report.
    let by_name: BTreeMap<&str, &Case> = cases.iter().map(|c| (c.name.as_str(), c)).collect();
    println!(
        "\n=== hostile catalog: {} cases, {} manifests ===",
        cases.len(),
        tried.len()
    );
    for t in &tried {
        let verdict = if t.ok { "ok  " } else { "FAIL" };
        let observed = t
            .observed
            .map_or("undecided".to_string(), |o| format!("{o:?}").to_lowercase());
        println!(
            "{verdict} {:<34} {:<6} expected {:<8} observed {:<9} {}",
            t.case,
            t.step,
            format!("{:?}", t.expected).to_lowercase(),
            observed,
            by_name[t.case.as_str()].about
        );
        if !t.ok || std::env::var_os("CATALOG_VERBOSE").is_some() {
            println!("       -> {}", t.detail.replace('\n', " "));
        }
    }
    let wrong: Vec<&Tried> = tried.iter().filter(|t| !t.ok).collect();
    for u in &unintended {
        println!("UNINTENDED IAM/Secret change after the catalog: {u}");
    }
    for (case, pattern) in &missing {
        println!("MISSING intended change of {case}: {pattern}");
    }
    for u in &unintended_after_delete {
        println!("UNINTENDED difference after deleting the catalog: {u}");
    }
    for (case, pattern) in &missing_after_delete {
        println!("MISSING intended difference after deleting, of {case}: {pattern}");
    }
    for l in &left {
        println!("NOT DELETED within {DELETED_WITHIN:?}: {l}");
    }
    println!(
        "IAM and Secret facts: {} before, {} after the catalog ({} differences), {} after deleting it ({} differences from before)",
        before.len(),
        after.len(),
        after.symmetric_difference(&before).count(),
        deleted.len(),
        deleted.symmetric_difference(&before).count()
    );
    let count = |o: Outcome| tried.iter().filter(|t| t.observed == Some(o)).count();
    let undecided = tried.iter().filter(|t| t.observed.is_none()).count();
    println!(
        "tried: {}, rejected at admission: {}, stalled/refused: {}, harmless (accepted): {}, undecided: {}, unexpected outcomes: {}, unintended IAM changes: {}",
        tried.len(),
        count(Outcome::Rejected),
        count(Outcome::Refused),
        count(Outcome::Accepted),
        undecided,
        wrong.len(),
        unintended.len() + unintended_after_delete.len()
    );
    let ok = wrong.is_empty()
        && unintended.is_empty()
        && missing.is_empty()
        && unintended_after_delete.is_empty()
        && missing_after_delete.is_empty()
        && left.is_empty();
    if !ok {
        eprintln!(
            "--- operator log (tail) ---\n{}",
            support::cluster::tail(&op.logs(), 60)
        );
    }
    assert!(
        ok,
        "{} unexpected outcomes ({}), {} unintended changes, {} missing intended changes, {} unintended after deletion, {} objects not deleted",
        wrong.len(),
        wrong
            .iter()
            .map(|t| t.case.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        unintended.len(),
        missing.len(),
        unintended_after_delete.len(),
        left.len()
    );
}
