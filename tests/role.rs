//! IamRole: the reconcile logic against the IAM emulator over HTTP (trust policy, refusals,
//! exclusive policies, boundary, instance profile, deletion in IAM's order, Retain), and
//! end to end with the control plane and the operator binary (ServiceAccount annotation by
//! server-side apply, repair by the drift scan).

mod support;

use async_trait::async_trait;
use iam_operator::api::{
    DeletionPolicy, IamRole, IamRoleSpec, InlinePolicy, LocalObjectRef, OWNER_TAG,
    PolicyAttachment, RoleTrust,
};
use iam_operator::controller::role::{self, ServiceAccounts};
use iam_operator::controller::{Synced, role::trust};
use iam_operator::error::{Error, Result, Severity};
use iam_operator::settings::Settings;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator, kubectl_with_operator, tail};
use support::emulator::Emulator;
use support::{World, allow, meta, writes};

const OIDC: &str = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const POWER_USER: &str = "arn:aws:iam::aws:policy/PowerUserAccess";
const OPERATOR: &str = "arn:aws:iam::123456789012:role/iam-operator";

fn settings() -> Settings {
    Settings {
        oidc_provider_arn: Some(OIDC.into()),
        operator_principal_arn: Some(OPERATOR.into()),
        ..Settings::default()
    }
}

fn sa(name: &str) -> LocalObjectRef {
    LocalObjectRef { name: name.into() }
}

fn trust_of(value: Value) -> RoleTrust {
    serde_json::from_value(value).unwrap()
}

fn role_cr(ns: &str, name: &str, trust: RoleTrust) -> IamRole {
    let mut r = IamRole::new(
        name,
        IamRoleSpec {
            role_name: Some(format!("{ns}-{name}")),
            path: "/".into(),
            description: None,
            max_session_duration: None,
            tags: BTreeMap::from([("team".to_string(), "a".to_string())]),
            permissions_boundary: None,
            policies: Vec::new(),
            inline_policies: Vec::new(),
            trust,
            instance_profile: None,
            session_credentials: None,
            deletion_policy: None,
        },
    );
    r.metadata = meta(ns, name);
    r
}

fn by_arn(arn: &str) -> PolicyAttachment {
    PolicyAttachment {
        policy_ref: None,
        arn: Some(arn.into()),
    }
}

fn inline(name: &str, document: Value) -> InlinePolicy {
    InlinePolicy {
        name: name.into(),
        document,
    }
}

/// ServiceAccounts in memory: which exist, and the annotation each carries.
#[derive(Default)]
struct FakeAccounts {
    existing: Mutex<BTreeSet<String>>,
    annotated: Mutex<BTreeMap<String, String>>,
}

impl FakeAccounts {
    fn with(names: &[&str]) -> Self {
        let f = Self::default();
        f.existing
            .lock()
            .unwrap()
            .extend(names.iter().map(|n| n.to_string()));
        f
    }
    fn annotations(&self) -> BTreeMap<String, String> {
        self.annotated.lock().unwrap().clone()
    }
}

#[async_trait]
impl ServiceAccounts for FakeAccounts {
    async fn annotate(&self, name: &str, role_arn: &str) -> Result<bool> {
        if !self.existing.lock().unwrap().contains(name) {
            return Ok(false);
        }
        self.annotated
            .lock()
            .unwrap()
            .insert(name.into(), role_arn.into());
        Ok(true)
    }
    async fn unannotate(&self, name: &str) -> Result<()> {
        self.annotated.lock().unwrap().remove(name);
        Ok(())
    }
}

/// One reconcile, storing the status on the object as the runtime would.
async fn reconcile(w: &World, r: &mut IamRole, accounts: &FakeAccounts) -> Result<Synced> {
    let mut status = r.status.clone().unwrap_or_default();
    let result = role::reconcile(&w.engine, r, &mut status, accounts, &*w.secrets).await;
    r.status = Some(status);
    result
}

/// The trust policy IAM holds for `role`, parsed.
async fn trust_in_iam(w: &World, role: &str) -> Value {
    let out = w.aws.get_role().role_name(role).send().await.unwrap();
    let text = out.role().unwrap().assume_role_policy_document().unwrap();
    serde_json::from_str(&urlencoding::decode(text).unwrap()).unwrap()
}

async fn role_exists(w: &World, role: &str) -> bool {
    match w.aws.get_role().role_name(role).send().await {
        Ok(_) => true,
        Err(e) if support::code(&e).as_deref() == Some("NoSuchEntity") => false,
        Err(e) => panic!("GetRole {role}: {e:?}"),
    }
}

async fn attached(w: &World, role: &str) -> BTreeSet<String> {
    let out = w
        .aws
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap();
    out.attached_policies()
        .iter()
        .map(|p| p.policy_arn().unwrap().to_string())
        .collect()
}

async fn inline_names(w: &World, role: &str) -> BTreeSet<String> {
    let out = w
        .aws
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap();
    out.policy_names().iter().cloned().collect()
}

async fn boundary(w: &World, role: &str) -> Option<String> {
    let out = w.aws.get_role().role_name(role).send().await.unwrap();
    out.role()
        .unwrap()
        .permissions_boundary()
        .and_then(|b| b.permissions_boundary_arn())
        .map(str::to_string)
}

async fn profiles_of(w: &World, role: &str) -> BTreeSet<String> {
    let out = w
        .aws
        .list_instance_profiles_for_role()
        .role_name(role)
        .send()
        .await
        .unwrap();
    out.instance_profiles()
        .iter()
        .map(|p| p.instance_profile_name().to_string())
        .collect()
}

fn stalled_with(result: Result<Synced>, expected: &str) -> String {
    match result {
        Err(e @ Error::InvalidSpec(_)) => {
            assert_eq!(e.severity(), Severity::Stalled);
            let message = e.to_string();
            assert!(message.contains(expected), "{message}");
            message
        }
        other => panic!("expected InvalidSpec containing {expected:?}, got {other:?}"),
    }
}

/// The trust document for a ServiceAccount, exactly, as IAM holds it; the second pass
/// writes nothing.
#[tokio::test]
async fn irsa_trust_policy_is_exact_when_read_back() {
    let w = World::with_settings(settings()).await;
    let accounts = FakeAccounts::default();
    let mut r = role_cr(
        "team-a",
        "app",
        RoleTrust {
            service_accounts: vec![sa("app")],
            ..trust_of(json!({}))
        },
    );
    reconcile(&w, &mut r, &accounts).await.unwrap();
    assert_eq!(
        trust_in_iam(&w, "team-a-app").await,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": OIDC},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{ISSUER}:sub"): ["system:serviceaccount:team-a:app"],
                    format!("{ISSUER}:aud"): "sts.amazonaws.com"
                }}
            }]
        })
    );
    let status = r.status.clone().unwrap();
    assert_eq!(
        status.arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/team-a-app")
    );
    let out = w
        .aws
        .list_role_tags()
        .role_name("team-a-app")
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<_, _> = out
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_eq!(
        tags.get(OWNER_TAG).map(String::as_str),
        Some("default/team-a/app")
    );
    assert_eq!(tags.get("team").map(String::as_str), Some("a"));

    w.emulator.reset_calls().await;
    let second = reconcile(&w, &mut r, &accounts).await.unwrap();
    assert!(second.changes.is_empty(), "{:?}", second.messages());
    let calls = w.emulator.calls().await;
    assert!(writes(&calls).is_empty(), "second pass wrote: {calls:?}");
}

/// A raw document naming a ServiceAccount of another namespace is Stalled before anything
/// exists in IAM; so is a role needing the OIDC provider when the operator has none.
#[tokio::test]
async fn a_service_account_of_another_namespace_is_refused_and_nothing_is_created() {
    let w = World::with_settings(settings()).await;
    let accounts = FakeAccounts::default();
    let document = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": OIDC},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{ISSUER}:sub"): "system:serviceaccount:team-b:app"}}
    }]});
    let mut r = role_cr("team-a", "raw", trust_of(json!({"document": document})));
    w.emulator.reset_calls().await;
    let message = stalled_with(
        reconcile(&w, &mut r, &accounts).await,
        "reaches beyond namespace team-a",
    );
    assert!(message.contains("trust.document Statement[0]"), "{message}");
    // A wildcard reaching other namespaces is refused the same way.
    let document = json!({"Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": OIDC},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:*"}}
    }]});
    let mut wild = role_cr("team-a", "wild", trust_of(json!({"document": document})));
    stalled_with(
        reconcile(&w, &mut wild, &accounts).await,
        "reaches beyond namespace team-a",
    );
    assert!(!role_exists(&w, "team-a-raw").await);
    assert!(!role_exists(&w, "team-a-wild").await);
    let calls = w.emulator.calls().await;
    assert!(writes(&calls).is_empty(), "refused roles wrote: {calls:?}");

    // Without --oidc-provider-arn, ServiceAccounts cannot be trusted.
    let w = World::start().await;
    let mut r = role_cr(
        "team-a",
        "app",
        RoleTrust {
            service_accounts: vec![sa("app")],
            ..trust_of(json!({}))
        },
    );
    stalled_with(
        reconcile(&w, &mut r, &accounts).await,
        "--oidc-provider-arn",
    );
    assert!(!role_exists(&w, "team-a-app").await);
}

/// Cross-account principals: none with the flags, only the tenancy's allowed ones.
#[tokio::test]
async fn an_aws_principal_must_be_allowed_by_the_tenancy() {
    let w = World::with_settings(settings()).await;
    let accounts = FakeAccounts::default();
    let trust = trust_of(json!({"awsPrincipals": [
        {"principal": "arn:aws:iam::444455556666:role/ci-deploy", "externalId": "build-42"}
    ]}));
    let mut r = role_cr("team-a", "ci", trust);
    stalled_with(
        reconcile(&w, &mut r, &accounts).await,
        "trust.awsPrincipals[0].principal: AWS principal arn:aws:iam::444455556666:role/ci-deploy is not in allowedTrustPrincipals of the operator's flags",
    );
    assert!(!role_exists(&w, "team-a-ci").await);
    w.tenancy(json!({"namespaceSelector": {}, "path": "/", "allowedTrustPrincipals": ["arn:aws:iam::444455556666:role/other-*"]}));
    stalled_with(
        reconcile(&w, &mut r, &accounts).await,
        "allowedTrustPrincipals of IamTenancyPolicy tenancy",
    );
    assert!(!role_exists(&w, "team-a-ci").await);
    w.tenancy(json!({"namespaceSelector": {}, "path": "/", "allowedTrustPrincipals": ["arn:aws:iam::444455556666:role/ci-*"]}));
    reconcile(&w, &mut r, &accounts).await.unwrap();
    assert_eq!(
        trust_in_iam(&w, "team-a-ci").await["Statement"],
        json!([{
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::444455556666:role/ci-deploy"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "build-42"}}
        }])
    );
    // The rules narrow again: the principal is no longer trusted (fail closed: with
    // nothing left, the trust denies everyone) and the role is Stalled.
    w.tenancy(json!({"namespaceSelector": {}, "path": "/"}));
    stalled_with(
        reconcile(&w, &mut r, &accounts).await,
        "not in allowedTrustPrincipals",
    );
    assert_eq!(trust_in_iam(&w, "team-a-ci").await, trust::nobody());
}

/// Session credentials: the operator's own principal is trusted, unless the tenancy
/// forbids them.
#[tokio::test]
async fn session_credentials_trust_the_operator_unless_the_tenancy_forbids_them() {
    let w = World::with_settings(settings()).await;
    let accounts = FakeAccounts::default();
    let mut r = role_cr("team-a", "batch", trust_of(json!({"podIdentity": {}})));
    r.spec.session_credentials = Some(serde_json::from_value(json!({})).unwrap());
    w.tenancy(json!({"namespaceSelector": {}, "path": "/", "sessionCredentials": false}));
    stalled_with(
        reconcile(&w, &mut r, &accounts).await,
        "spec.sessionCredentials is not allowed in namespace team-a (IamTenancyPolicy tenancy sets sessionCredentials: false)",
    );
    assert!(!role_exists(&w, "team-a-batch").await);
    w.tenancy(json!({"namespaceSelector": {}, "path": "/"}));
    reconcile(&w, &mut r, &accounts).await.unwrap();
    assert_eq!(
        trust_in_iam(&w, "team-a-batch").await["Statement"],
        json!([
            {
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "team-a"}}
            },
            {"Effect": "Allow", "Principal": {"AWS": OPERATOR}, "Action": "sts:AssumeRole"}
        ])
    );
    // Dropped from the spec: the operator's statement goes.
    r.spec.session_credentials = None;
    reconcile(&w, &mut r, &accounts).await.unwrap();
    let statements = trust_in_iam(&w, "team-a-batch").await["Statement"].clone();
    assert_eq!(statements.as_array().map(Vec::len), Some(1), "{statements}");
}

/// Managed and inline policies are exclusive; out-of-band changes to them, to the trust
/// and to the forced boundary are reverted by the next reconcile.
#[tokio::test]
async fn policies_are_exclusive_and_out_of_band_changes_are_reverted() {
    let w = World::with_settings(Settings {
        required_permissions_boundary: Some(POWER_USER.into()),
        ..settings()
    })
    .await;
    let accounts = FakeAccounts::default();
    let mut r = role_cr("team-a", "app", trust_of(json!({"podIdentity": {}})));
    r.spec.policies = vec![by_arn(READ_ONLY)];
    r.spec.inline_policies = vec![inline("logs", allow(json!("logs:PutLogEvents")))];
    r.spec.description = Some("the app".into());
    r.spec.max_session_duration = Some("2h".into());
    let created = reconcile(&w, &mut r, &accounts).await.unwrap();
    assert!(
        created
            .messages()
            .contains(&"Created IAM role team-a-app".to_string()),
        "{:?}",
        created.messages()
    );
    let name = "team-a-app";
    assert_eq!(boundary(&w, name).await.as_deref(), Some(POWER_USER));
    assert_eq!(
        attached(&w, name).await,
        BTreeSet::from([READ_ONLY.to_string()])
    );
    assert_eq!(
        inline_names(&w, name).await,
        BTreeSet::from(["logs".to_string()])
    );
    let out = w.aws.get_role().role_name(name).send().await.unwrap();
    assert_eq!(out.role().unwrap().description(), Some("the app"));
    assert_eq!(out.role().unwrap().max_session_duration(), Some(7200));
    let built = trust_in_iam(&w, name).await;

    // Out of band: another policy attached, an extra inline policy, the trust opened to
    // everyone, the boundary removed.
    let other = w.create_policy("other", allow(json!("s3:*"))).await;
    w.aws
        .attach_role_policy()
        .role_name(name)
        .policy_arn(&other)
        .send()
        .await
        .unwrap();
    w.aws
        .put_role_policy()
        .role_name(name)
        .policy_name("extra")
        .policy_document(allow(json!("iam:*")).to_string())
        .send()
        .await
        .unwrap();
    w.aws
        .update_assume_role_policy()
        .role_name(name)
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    w.aws
        .delete_role_permissions_boundary()
        .role_name(name)
        .send()
        .await
        .unwrap();
    let repaired = reconcile(&w, &mut r, &accounts).await.unwrap();
    let messages = repaired.messages();
    for expected in [
        format!("Set permissions boundary {POWER_USER}"),
        format!("Detached {other}"),
        "Deleted inline policy extra".to_string(),
        "Updated trust policy of IAM role team-a-app".to_string(),
    ] {
        assert!(messages.contains(&expected), "{expected}: {messages:?}");
    }
    assert_eq!(boundary(&w, name).await.as_deref(), Some(POWER_USER));
    assert_eq!(
        attached(&w, name).await,
        BTreeSet::from([READ_ONLY.to_string()])
    );
    assert_eq!(
        inline_names(&w, name).await,
        BTreeSet::from(["logs".to_string()])
    );
    assert_eq!(trust_in_iam(&w, name).await, built);

    // Emptied in the spec: emptied in IAM.
    r.spec.policies.clear();
    r.spec.inline_policies.clear();
    reconcile(&w, &mut r, &accounts).await.unwrap();
    assert!(attached(&w, name).await.is_empty());
    assert!(inline_names(&w, name).await.is_empty());
}

/// A role name someone else holds is never taken (no adoption without consent).
#[tokio::test]
async fn an_existing_role_is_not_taken_over() {
    let w = World::with_settings(settings()).await;
    let accounts = FakeAccounts::default();
    w.aws
        .create_role()
        .role_name("team-a-app")
        .assume_role_policy_document(json!({"Version": "2012-10-17", "Statement": []}).to_string())
        .send()
        .await
        .unwrap();
    let mut r = role_cr("team-a", "app", trust_of(json!({"podIdentity": {}})));
    r.spec.policies = vec![by_arn(READ_ONLY)];
    match reconcile(&w, &mut r, &accounts).await {
        Err(Error::NameConflict(m)) => assert!(m.contains("already exists"), "{m}"),
        other => panic!("expected NameConflict, got {other:?}"),
    }
    assert!(attached(&w, "team-a-app").await.is_empty());
    // Its cleanup leaves it too.
    role::cleanup(&w.engine, &r, &accounts, &*w.secrets)
        .await
        .unwrap();
    assert!(role_exists(&w, "team-a-app").await);
}

/// The instance profile follows `instanceProfile`; deletion removes the role from every
/// instance profile, deletes its own, detaches and deletes policies, then the role — the
/// only order the emulator accepts (it refuses DeleteRole otherwise, as IAM does).
#[tokio::test]
async fn deletion_follows_iams_order_and_retain_leaves_the_role() {
    let w = World::with_settings(Settings {
        required_permissions_boundary: Some(POWER_USER.into()),
        ..settings()
    })
    .await;
    let accounts = FakeAccounts::with(&["app"]);
    let mut r = role_cr(
        "team-a",
        "app",
        trust_of(json!({"serviceAccounts": [{"name": "app"}], "annotateServiceAccounts": true})),
    );
    r.spec.policies = vec![by_arn(READ_ONLY)];
    r.spec.inline_policies = vec![inline("logs", allow(json!("logs:PutLogEvents")))];
    r.spec.instance_profile = Some(true);
    reconcile(&w, &mut r, &accounts).await.unwrap();
    let name = "team-a-app";
    let status = r.status.clone().unwrap();
    assert_eq!(
        status.instance_profile_arn.as_deref(),
        Some("arn:aws:iam::123456789012:instance-profile/team-a-app")
    );
    assert_eq!(
        profiles_of(&w, name).await,
        BTreeSet::from([name.to_string()])
    );
    assert_eq!(status.annotated_service_accounts, vec!["app".to_string()]);
    assert_eq!(
        accounts.annotations(),
        BTreeMap::from([("app".to_string(), status.arn.clone().unwrap())])
    );

    // Out of band: the role also in another profile.
    w.aws
        .create_instance_profile()
        .instance_profile_name("elsewhere")
        .send()
        .await
        .unwrap();
    w.aws
        .add_role_to_instance_profile()
        .instance_profile_name("elsewhere")
        .role_name(name)
        .send()
        .await
        .unwrap();
    // The emulator refuses to delete a role that still has what IAM requires gone first.
    let refused = w
        .aws
        .delete_role()
        .role_name(name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::code(&refused).as_deref(), Some("DeleteConflict"));

    // Retain: everything stays, the annotation too.
    let mut retained = r.clone();
    retained.spec.deletion_policy = Some(DeletionPolicy::Retain);
    w.emulator.reset_calls().await;
    role::cleanup(&w.engine, &retained, &accounts, &*w.secrets)
        .await
        .unwrap();
    assert!(writes(&w.emulator.calls().await).is_empty());
    assert!(role_exists(&w, name).await);
    assert_eq!(accounts.annotations().len(), 1);

    w.emulator.reset_calls().await;
    role::cleanup(&w.engine, &r, &accounts, &*w.secrets)
        .await
        .unwrap();
    assert!(!role_exists(&w, name).await);
    assert!(accounts.annotations().is_empty(), "annotation left");
    let calls = w.emulator.calls().await;
    let count = |action: &str| calls.get(action).copied().unwrap_or(0);
    assert_eq!(count("RemoveRoleFromInstanceProfile"), 2, "{calls:?}");
    assert_eq!(count("DeleteInstanceProfile"), 1, "{calls:?}");
    assert_eq!(count("DetachRolePolicy"), 1, "{calls:?}");
    assert_eq!(count("DeleteRolePolicy"), 1, "{calls:?}");
    assert_eq!(count("DeleteRole"), 1, "{calls:?}");
    // The profile the operator did not create is left, empty.
    let other = w
        .aws
        .get_instance_profile()
        .instance_profile_name("elsewhere")
        .send()
        .await
        .unwrap();
    assert!(other.instance_profile().unwrap().roles().is_empty());
    let own = w
        .aws
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await;
    assert_eq!(
        own.err().and_then(|e| support::code(&e)).as_deref(),
        Some("NoSuchEntity")
    );
}

/// `instanceProfile: false` removes the profile again.
#[tokio::test]
async fn instance_profile_is_created_and_removed() {
    let w = World::with_settings(settings()).await;
    let accounts = FakeAccounts::default();
    let mut r = role_cr("team-a", "ec2", trust_of(json!({"podIdentity": {}})));
    r.spec.instance_profile = Some(true);
    reconcile(&w, &mut r, &accounts).await.unwrap();
    assert_eq!(
        profiles_of(&w, "team-a-ec2").await,
        BTreeSet::from(["team-a-ec2".to_string()])
    );
    r.spec.instance_profile = Some(false);
    let synced = reconcile(&w, &mut r, &accounts).await.unwrap();
    assert!(
        synced
            .messages()
            .contains(&"Deleted instance profile team-a-ec2".to_string()),
        "{:?}",
        synced.messages()
    );
    assert!(profiles_of(&w, "team-a-ec2").await.is_empty());
    assert_eq!(r.status.unwrap().instance_profile_arn, None);
}

/// Annotations follow the list: a missing ServiceAccount is reported and waited for, never
/// created; one no longer listed loses the annotation.
#[tokio::test]
async fn service_account_annotations_follow_the_list() {
    let w = World::with_settings(settings()).await;
    let accounts = FakeAccounts::with(&["app", "worker"]);
    let mut r = role_cr(
        "team-a",
        "app",
        trust_of(json!({
            "serviceAccounts": [{"name": "app"}, {"name": "worker"}, {"name": "later"}],
            "annotateServiceAccounts": true
        })),
    );
    match reconcile(&w, &mut r, &accounts).await {
        Err(e @ Error::DependencyNotReady(_)) => {
            let m = e.to_string();
            assert!(
                m.contains("ServiceAccount later of namespace team-a does not exist"),
                "{m}"
            )
        }
        other => panic!("expected DependencyNotReady, got {other:?}"),
    }
    let arn = r.status.as_ref().unwrap().arn.clone().unwrap();
    assert_eq!(
        accounts.annotations(),
        BTreeMap::from([
            ("app".to_string(), arn.clone()),
            ("worker".to_string(), arn.clone())
        ])
    );
    assert!(!accounts.existing.lock().unwrap().contains("later"));
    accounts.existing.lock().unwrap().insert("later".into());
    reconcile(&w, &mut r, &accounts).await.unwrap();
    assert_eq!(
        r.status.as_ref().unwrap().annotated_service_accounts,
        vec!["app", "later", "worker"]
    );
    // worker dropped from the list, and annotation turned off for all.
    r.spec.trust.service_accounts = vec![sa("app"), sa("later")];
    reconcile(&w, &mut r, &accounts).await.unwrap();
    assert_eq!(
        accounts.annotations().keys().collect::<Vec<_>>(),
        ["app", "later"]
    );
    r.spec.trust.annotate_service_accounts = Some(false);
    reconcile(&w, &mut r, &accounts).await.unwrap();
    assert!(accounts.annotations().is_empty());
    assert!(r.status.unwrap().annotated_service_accounts.is_empty());
}

/// The trust builder's IRSA statement, with the provider's issuer as condition prefix.
#[test]
fn issuer_of_the_provider_is_the_condition_prefix() {
    assert_eq!(trust::issuer(OIDC), Some(ISSUER));
}

// End to end: the control plane, the operator binary and the emulator.

fn wait_ready(cp: &ControlPlane, op: &Operator, ns: &str, target: &str) {
    wait_ready_within(cp, op, ns, target, 90)
}

fn wait_ready_within(cp: &ControlPlane, op: &Operator, ns: &str, target: &str, secs: u64) {
    let timeout = format!("--timeout={secs}s");
    let out = kubectl_with_operator(
        cp,
        op,
        &["wait", "--for=condition=Ready", "-n", ns, &timeout, target],
    );
    if !out.status.success() {
        let state = cp.kubectl(&["get", "iam", "-n", ns, "-o", "yaml"]);
        panic!(
            "{target} not Ready: {}{}\n--- objects ---\n{}\n--- operator log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&state.stdout),
            tail(&op.logs(), 60)
        );
    }
}

/// The role ARN annotation of a ServiceAccount, and which field managers own it.
fn annotation(cp: &ControlPlane, ns: &str, name: &str) -> (Option<String>, Vec<String>) {
    let out = cp.kubectl_ok(&[
        "get",
        "serviceaccount",
        name,
        "-n",
        ns,
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let sa: Value = serde_json::from_str(&out).unwrap();
    let value = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        .as_str()
        .map(str::to_string);
    let managers = sa["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["fieldsV1"]["f:metadata"]["f:annotations"]
                .get("f:eks.amazonaws.com/role-arn")
                .is_some()
        })
        .filter_map(|m| m["manager"].as_str().map(str::to_string))
        .collect();
    (value, managers)
}

/// Polls `check` until it is true, failing with the operator's log after `within`.
async fn until(op: &Operator, what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            tail(&op.logs(), 60)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// IRSA end to end: the role reaches Ready with the exact trust, its ServiceAccount is
/// annotated by server-side apply under the operator's own field manager (a missing one
/// is waited for, never created), the drift scan repairs out-of-band changes long before
/// the resync, and the annotation goes when no longer wanted and on deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irsa_role_end_to_end_annotation_drift_and_deletion() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("role");
    let op = Operator::start(
        cp,
        &emulator.url,
        &[
            "--watch-namespace",
            &ns,
            "--oidc-provider-arn",
            OIDC,
            "--resync-interval",
            "1h",
            "--drift-scan-interval",
            "2s",
        ],
        &[],
    );
    let role = format!("{ns}-app");
    let manifest = |accounts: &str| {
        format!(
            r#"apiVersion: iam.kubeop.dev/v1alpha1
kind: IamRole
metadata: {{name: app, namespace: {ns}}}
spec:
  roleName: {role}
  trust:
    serviceAccounts: [{accounts}]
    annotateServiceAccounts: true
  policies: [{{arn: "{READ_ONLY}"}}]
  inlinePolicies:
    - name: logs
      document: {{Version: "2012-10-17", Statement: [{{Effect: Allow, Action: "logs:PutLogEvents", Resource: "*"}}]}}
"#
        )
    };
    // The role arrives before its ServiceAccount: it waits, and never creates it.
    cp.apply_ok(&manifest("{name: app}"));
    until(
        &op,
        "the role in IAM",
        Duration::from_secs(60),
        async || aws.get_role().role_name(&role).send().await.is_ok(),
    )
    .await;
    let get = cp.kubectl(&["get", "serviceaccount", "app", "-n", &ns]);
    assert!(
        !get.status.success(),
        "the operator created the ServiceAccount"
    );
    until(
        &op,
        "DependencyNotReady",
        Duration::from_secs(60),
        async || {
            cp.kubectl_ok(&[
                "get",
                "iamrole",
                "app",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
            ]) == "DependencyNotReady"
        },
    )
    .await;
    let get = cp.kubectl(&["get", "serviceaccount", "app", "-n", &ns]);
    assert!(
        !get.status.success(),
        "the operator created the ServiceAccount"
    );
    cp.apply_ok(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: app, namespace: {ns}}}\n"
    ));
    // Woken by the ServiceAccount watch: the backstop requeue of a waiting role is a
    // minute away.
    wait_ready_within(cp, &op, &ns, "iamrole/app", 20);
    let arn = cp.kubectl_ok(&[
        "get",
        "iamrole",
        "app",
        "-n",
        &ns,
        "-o",
        "jsonpath={.status.arn}",
    ]);
    assert_eq!(arn, format!("arn:aws:iam::123456789012:role/{role}"));
    let (value, managers) = annotation(cp, &ns, "app");
    assert_eq!(value.as_deref(), Some(arn.as_str()));
    assert_eq!(managers, vec!["iam-operator-role-arn".to_string()]);
    let out = aws.get_role().role_name(&role).send().await.unwrap();
    let trust: Value = serde_json::from_str(
        &urlencoding::decode(out.role().unwrap().assume_role_policy_document().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        trust,
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": OIDC},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{ISSUER}:sub"): [format!("system:serviceaccount:{ns}:app")],
                format!("{ISSUER}:aud"): "sts.amazonaws.com"
            }}
        }]})
    );

    // The operator's own writes are not drift. Once the role has settled (the scans have
    // seen what it wrote while it was created), a spec change costs one reconcile: the
    // scans after its writes (TagRole) find what the operator knows and wake nothing.
    let scans = async || {
        emulator
            .calls()
            .await
            .get("GetAccountAuthorizationDetails")
            .copied()
            .unwrap_or(0)
    };
    let settled_by = Instant::now() + Duration::from_secs(60);
    loop {
        let before = op.reconciles("IamRole");
        let served = scans().await;
        until(
            &op,
            "three drift scans",
            Duration::from_secs(30),
            async || scans().await >= served + 3,
        )
        .await;
        if op.reconciles("IamRole") == before {
            break;
        }
        assert!(
            Instant::now() < settled_by,
            "the role never settled\n{}",
            tail(&op.logs(), 40)
        );
    }
    let before = op.reconciles("IamRole");
    cp.apply_ok(&manifest("{name: app}").replace("  trust:\n", "  tags: {tier: web}\n  trust:\n"));
    until(&op, "the tag in IAM", Duration::from_secs(60), async || {
        let out = aws.list_role_tags().role_name(&role).send().await.unwrap();
        out.tags()
            .iter()
            .any(|t| t.key() == "tier" && t.value() == "web")
    })
    .await;
    let served = scans().await;
    until(
        &op,
        "three drift scans after the write",
        Duration::from_secs(30),
        async || scans().await >= served + 3,
    )
    .await;
    assert_eq!(
        op.reconciles("IamRole"),
        before + 1,
        "the drift scan took the operator's own write for drift\n{}",
        tail(&op.logs(), 40)
    );

    // Out of band: the managed policy detached, the inline one deleted, the trust opened.
    aws.detach_role_policy()
        .role_name(&role)
        .policy_arn(READ_ONLY)
        .send()
        .await
        .unwrap();
    aws.delete_role_policy()
        .role_name(&role)
        .policy_name("logs")
        .send()
        .await
        .unwrap();
    aws.update_assume_role_policy()
        .role_name(&role)
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    // Repaired by the drift scan (the resync is an hour away).
    until(
        &op,
        "the drift scan's repair",
        Duration::from_secs(60),
        async || {
            let attached = aws
                .list_attached_role_policies()
                .role_name(&role)
                .send()
                .await
                .unwrap();
            let inline = aws
                .list_role_policies()
                .role_name(&role)
                .send()
                .await
                .unwrap();
            let out = aws.get_role().role_name(&role).send().await.unwrap();
            let now: Value = serde_json::from_str(
                &urlencoding::decode(out.role().unwrap().assume_role_policy_document().unwrap())
                    .unwrap(),
            )
            .unwrap();
            attached.attached_policies().len() == 1
                && inline.policy_names() == ["logs"]
                && now == trust
        },
    )
    .await;

    // No longer listed (Pod Identity instead): the annotation goes, the ServiceAccount stays.
    cp.apply_ok(&manifest("").replace("    serviceAccounts: []\n", "    podIdentity: {}\n"));
    until(
        &op,
        "the annotation removed",
        Duration::from_secs(60),
        async || annotation(cp, &ns, "app").0.is_none(),
    )
    .await;
    wait_ready(cp, &op, &ns, "iamrole/app");
    // Listed again, then the IamRole deleted: annotation removed, role gone from IAM.
    cp.apply_ok(&manifest("{name: app}"));
    until(
        &op,
        "the annotation back",
        Duration::from_secs(60),
        async || annotation(cp, &ns, "app").0.as_deref() == Some(arn.as_str()),
    )
    .await;
    wait_ready(cp, &op, &ns, "iamrole/app");
    cp.kubectl_ok(&["delete", "iamrole", "app", "-n", &ns, "--timeout=60s"]);
    assert!(aws.get_role().role_name(&role).send().await.is_err());
    assert_eq!(annotation(cp, &ns, "app").0, None);
}
