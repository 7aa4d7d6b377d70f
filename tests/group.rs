//! IamGroup reconcile logic against the IAM emulator over HTTP.

mod support;

use iam_operator::api::{
    ADOPT_ANNOTATION, DeletionPolicy, IamGroup, IamGroupSpec, IamGroupStatus, InlinePolicy,
    LocalObjectRef, PolicyAttachment,
};
use iam_operator::controller::{Synced, group};
use iam_operator::error::{Error, Severity};
use iam_operator::settings::{Globs, Settings};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;
use std::collections::BTreeSet;
use support::{World, allow, meta, read, writes};

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const CHANGE_PASSWORD: &str = "arn:aws:iam::aws:policy/IAMUserChangePassword";
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

fn by_arn(arn: &str) -> PolicyAttachment {
    PolicyAttachment {
        policy_ref: None,
        arn: Some(arn.into()),
    }
}

fn by_ref(name: &str) -> PolicyAttachment {
    PolicyAttachment {
        policy_ref: Some(LocalObjectRef { name: name.into() }),
        arn: None,
    }
}

fn inline(name: &str, document: serde_json::Value) -> InlinePolicy {
    InlinePolicy {
        name: name.into(),
        document,
    }
}

fn deny_delete() -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:DeleteBucket"], "Resource": "*"}]})
}

/// An IamGroup `name` in `ns` with no policies, named `iam_name` in IAM.
fn group_cr(ns: &str, name: &str, iam_name: &str) -> IamGroup {
    let mut g = IamGroup::new(
        name,
        IamGroupSpec {
            group_name: Some(iam_name.into()),
            path: "/".into(),
            policies: Vec::new(),
            inline_policies: Vec::new(),
            deletion_policy: None,
        },
    );
    g.metadata = meta(ns, name);
    g
}

/// The usual group of these tests: a policyRef, an AWS managed policy and an inline policy.
async fn developers(w: &World) -> (IamGroup, String) {
    let reader = w
        .create_policy("team-a-s3-reader", allow(json!("s3:GetObject")))
        .await;
    w.deps.policy("team-a", "s3-reader", &reader);
    let mut g = group_cr("team-a", "developers", "team-a-developers");
    g.spec.path = "/team-a/".into();
    g.spec.policies = vec![by_ref("s3-reader"), by_arn(READ_ONLY)];
    g.spec.inline_policies = vec![inline("deny-delete", deny_delete())];
    (g, reader)
}

/// Runs one reconcile and stores the status on the object, as the runtime would.
async fn reconcile(w: &World, g: &mut IamGroup) -> Result<Synced, Error> {
    let mut status = g.status.clone().unwrap_or_default();
    let r = group::reconcile(&w.engine, g, &mut status, w.groups_journal.as_ref()).await;
    g.status = Some(status);
    r
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn annotate_adopt(g: &mut IamGroup) {
    g.metadata
        .annotations
        .get_or_insert_default()
        .insert(ADOPT_ANNOTATION.into(), "true".into());
}

#[tokio::test]
async fn create_with_path_managed_and_inline_policies() {
    let w = World::start().await;
    let (mut g, reader) = developers(&w).await;
    let synced = reconcile(&w, &mut g).await.unwrap();
    assert!(
        synced
            .messages()
            .contains(&"Created IAM group team-a-developers".to_string()),
        "{:?}",
        synced.messages()
    );

    let out = w
        .aws
        .get_group()
        .group_name("team-a-developers")
        .send()
        .await
        .unwrap();
    let iam = out.group().unwrap();
    assert_eq!(iam.path(), "/team-a/");
    let status = g.status.clone().unwrap();
    assert_eq!(status.arn.as_deref(), Some(iam.arn()));
    assert_eq!(
        iam.arn(),
        "arn:aws:iam::123456789012:group/team-a/team-a-developers"
    );
    assert_eq!(status.group_id.as_deref(), Some(iam.group_id()));

    assert_eq!(
        read::group_policies(&w.aws, "team-a-developers").await,
        set(&[&reader, READ_ONLY])
    );
    assert_eq!(
        read::group_inline(&w.aws, "team-a-developers").await,
        set(&["deny-delete"])
    );
    assert_eq!(
        read::group_inline_doc(&w.aws, "team-a-developers", "deny-delete").await,
        deny_delete()
    );

    // A second reconcile with nothing changed writes nothing.
    w.emulator.reset_calls().await;
    let synced = reconcile(&w, &mut g).await.unwrap();
    assert!(synced.changes.is_empty(), "{:?}", synced.changes);
    let calls = w.emulator.calls().await;
    assert!(
        writes(&calls).is_empty(),
        "no-op reconcile wrote: {calls:?}"
    );
}

#[tokio::test]
async fn out_of_band_attachments_and_inline_policies_are_reverted() {
    let w = World::start().await;
    let (mut g, reader) = developers(&w).await;
    reconcile(&w, &mut g).await.unwrap();
    let name = "team-a-developers";

    // Someone attaches an extra policy, detaches a declared one, adds an inline policy and
    // rewrites the declared inline policy.
    w.aws
        .attach_group_policy()
        .group_name(name)
        .policy_arn(CHANGE_PASSWORD)
        .send()
        .await
        .unwrap();
    w.aws
        .detach_group_policy()
        .group_name(name)
        .policy_arn(READ_ONLY)
        .send()
        .await
        .unwrap();
    w.aws
        .put_group_policy()
        .group_name(name)
        .policy_name("sneaky")
        .policy_document(allow(json!("iam:*")).to_string())
        .send()
        .await
        .unwrap();
    w.aws
        .put_group_policy()
        .group_name(name)
        .policy_name("deny-delete")
        .policy_document(allow(json!("s3:*")).to_string())
        .send()
        .await
        .unwrap();

    let synced = reconcile(&w, &mut g).await.unwrap();
    let changes: BTreeSet<_> = synced.messages().into_iter().collect();
    assert_eq!(
        changes,
        set(&[
            &format!("Attached {READ_ONLY}"),
            &format!("Detached {CHANGE_PASSWORD}"),
            "Put inline policy deny-delete",
            "Deleted inline policy sneaky",
        ])
    );
    assert_eq!(
        read::group_policies(&w.aws, name).await,
        set(&[&reader, READ_ONLY])
    );
    assert_eq!(
        read::group_inline(&w.aws, name).await,
        set(&["deny-delete"])
    );
    assert_eq!(
        read::group_inline_doc(&w.aws, name, "deny-delete").await,
        deny_delete()
    );
}

#[tokio::test]
async fn spec_changes_are_applied_and_equal_documents_are_a_noop() {
    let w = World::start().await;
    let (mut g, reader) = developers(&w).await;
    reconcile(&w, &mut g).await.unwrap();
    let name = "team-a-developers";

    // A semantically equal document (key order, single value vs one-element list) writes
    // nothing.
    g.spec.inline_policies = vec![inline(
        "deny-delete",
        json!({"Statement": {"Resource": ["*"], "Action": ["s3:DeleteObject", "s3:DeleteBucket"], "Effect": "Deny"}, "Version": "2012-10-17"}),
    )];
    w.emulator.reset_calls().await;
    let synced = reconcile(&w, &mut g).await.unwrap();
    assert!(synced.changes.is_empty(), "{:?}", synced.changes);
    let calls = w.emulator.calls().await;
    assert!(
        writes(&calls).is_empty(),
        "equal document rewritten: {calls:?}"
    );

    // A changed document is put again; a removed attachment is detached, a new one attached;
    // a removed inline policy is deleted, a new one put.
    let changed = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}]});
    g.spec.inline_policies = vec![
        inline("deny-delete", changed.clone()),
        inline("extra", allow(json!("sqs:SendMessage"))),
    ];
    g.spec.policies = vec![by_ref("s3-reader"), by_arn(CHANGE_PASSWORD)];
    reconcile(&w, &mut g).await.unwrap();
    assert_eq!(
        read::group_policies(&w.aws, name).await,
        set(&[&reader, CHANGE_PASSWORD])
    );
    assert_eq!(
        read::group_inline(&w.aws, name).await,
        set(&["deny-delete", "extra"])
    );
    assert_eq!(
        read::group_inline_doc(&w.aws, name, "deny-delete").await,
        changed
    );

    g.spec.inline_policies.clear();
    g.spec.policies.clear();
    reconcile(&w, &mut g).await.unwrap();
    assert!(read::group_policies(&w.aws, name).await.is_empty());
    assert!(read::group_inline(&w.aws, name).await.is_empty());
}

#[tokio::test]
async fn delete_removes_members_attachments_inline_policies_and_group() {
    let w = World::start().await;
    let (mut g, reader) = developers(&w).await;
    reconcile(&w, &mut g).await.unwrap();
    let name = "team-a-developers";
    w.aws.create_user().user_name("bob").send().await.unwrap();
    w.aws
        .add_user_to_group()
        .group_name(name)
        .user_name("bob")
        .send()
        .await
        .unwrap();
    // The emulator refuses to delete a group that still has anything, as IAM does.
    assert!(w.aws.delete_group().group_name(name).send().await.is_err());

    group::cleanup(&w.engine, &g).await.unwrap();
    assert!(!read::group_exists(&w.aws, name).await);
    // The member user itself stays; only its membership went with the group.
    assert!(read::user_exists(&w.aws, "bob").await);
    assert!(read::user_groups(&w.aws, "bob").await.is_empty());
    // The referenced customer policy is not the group's to delete.
    assert!(w.aws.get_policy().policy_arn(&reader).send().await.is_ok());

    // Idempotent: a second cleanup (e.g. after a crash) succeeds.
    group::cleanup(&w.engine, &g).await.unwrap();
}

#[tokio::test]
async fn retain_leaves_the_group_untouched() {
    let w = World::start().await;
    let (mut g, reader) = developers(&w).await;
    g.spec.deletion_policy = Some(DeletionPolicy::Retain);
    reconcile(&w, &mut g).await.unwrap();
    group::cleanup(&w.engine, &g).await.unwrap();
    let name = "team-a-developers";
    assert!(read::group_exists(&w.aws, name).await);
    assert_eq!(
        read::group_policies(&w.aws, name).await,
        set(&[&reader, READ_ONLY])
    );
    assert_eq!(
        read::group_inline(&w.aws, name).await,
        set(&["deny-delete"])
    );
}

#[tokio::test]
async fn existing_group_needs_adoption_and_is_never_shared() {
    let w = World::start().await;
    w.aws
        .create_group()
        .group_name("legacy")
        .send()
        .await
        .unwrap();
    w.aws
        .put_group_policy()
        .group_name("legacy")
        .policy_name("old")
        .policy_document(allow(json!("s3:*")).to_string())
        .send()
        .await
        .unwrap();
    let mut g = group_cr("team-a", "legacy", "legacy");
    g.spec.policies = vec![by_arn(READ_ONLY)];

    let err = reconcile(&w, &mut g).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert_eq!(err.severity(), Severity::Stalled);
    assert!(
        err.to_string().contains("not managed by this resource"),
        "{err}"
    );
    // The annotation alone is a request, not consent: with the flags, no adoption.
    annotate_adopt(&mut g);
    let err = reconcile(&w, &mut g).await.unwrap_err();
    assert!(err.to_string().contains("adoption is not allowed"), "{err}");
    // Adoption allowed, but groups carry no consent tag: only allowedGroups consents.
    w.tenancy(json!({"namespaceSelector": {}, "path": "/", "adoption": true}));
    let err = reconcile(&w, &mut g).await.unwrap_err();
    assert!(err.to_string().contains("allowedGroups"), "{err}");
    g.metadata.annotations = None;
    // Not modified, not recorded as ours, and deleting the CR leaves it.
    assert!(read::group_policies(&w.aws, "legacy").await.is_empty());
    assert_eq!(read::group_inline(&w.aws, "legacy").await, set(&["old"]));
    assert!(g.status.as_ref().unwrap().group_id.is_none());
    group::cleanup(&w.engine, &g).await.unwrap();
    assert!(read::group_exists(&w.aws, "legacy").await);
    assert_eq!(read::group_inline(&w.aws, "legacy").await, set(&["old"]));

    // With the annotation, adoption allowed and the group listed, it is adopted and
    // converges to the spec.
    w.tenancy(
        json!({"namespaceSelector": {}, "path": "/", "adoption": true,
        "allowedGroups": ["legacy", "admins"],
        "allowedPolicyArns": [READ_ONLY]}),
    );
    annotate_adopt(&mut g);
    reconcile(&w, &mut g).await.unwrap();
    assert!(g.status.as_ref().unwrap().group_id.is_some());
    assert_eq!(
        read::group_policies(&w.aws, "legacy").await,
        set(&[READ_ONLY])
    );
    assert!(read::group_inline(&w.aws, "legacy").await.is_empty());

    // Adoption never reaches a group at another path than the spec's.
    w.aws
        .create_group()
        .group_name("admins")
        .path("/admins/")
        .send()
        .await
        .unwrap();
    let mut admins = group_cr("team-a", "admins", "admins");
    annotate_adopt(&mut admins);
    let err = reconcile(&w, &mut admins).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert!(err.to_string().contains("/admins/"), "{err}");
    group::cleanup(&w.engine, &admins).await.unwrap();
    assert!(read::group_exists(&w.aws, "admins").await);

    // Once adopted, the group is known by its id: the annotation is no longer needed.
    g.metadata.annotations = None;
    reconcile(&w, &mut g).await.unwrap();

    // A CR in another namespace declaring the same IAM name is a conflict, and neither its
    // reconcile nor its cleanup touches the first one's group.
    let mut other = group_cr("team-b", "legacy", "legacy");
    other.spec.inline_policies = vec![inline("b", allow(json!("ec2:*")))];
    let err = reconcile(&w, &mut other).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    group::cleanup(&w.engine, &other).await.unwrap();
    assert!(read::group_exists(&w.aws, "legacy").await);
    assert_eq!(
        read::group_policies(&w.aws, "legacy").await,
        set(&[READ_ONLY])
    );
    assert!(read::group_inline(&w.aws, "legacy").await.is_empty());

    // Even with the adopt annotation, a group another IamGroup manages is not taken twice.
    let id = g.status.as_ref().unwrap().group_id.clone().unwrap();
    w.deps
        .group_claims
        .lock()
        .unwrap()
        .insert(id, "team-a/legacy".into());
    annotate_adopt(&mut other);
    let err = reconcile(&w, &mut other).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert!(err.to_string().contains("team-a/legacy"), "{err}");
    group::cleanup(&w.engine, &other).await.unwrap();
    assert!(read::group_exists(&w.aws, "legacy").await);
    assert_eq!(
        read::group_policies(&w.aws, "legacy").await,
        set(&[READ_ONLY])
    );
    // The owner itself still reconciles.
    reconcile(&w, &mut g).await.unwrap();
}

#[tokio::test]
async fn intent_recorded_before_create_recognises_a_group_left_by_a_crash() {
    let w = World::start().await;
    let mut g = group_cr("team-a", "devs", "devs");
    reconcile(&w, &mut g).await.unwrap();
    // The intent was written (mid-reconcile) before CreateGroup, and cleared after.
    let recorded = w.groups_journal.recorded.lock().unwrap().clone();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(recorded[0].creating_since.is_some() && recorded[0].group_id.is_none());
    let st = g.status.clone().unwrap();
    assert!(st.creating_since.is_none() && st.group_id.is_some());

    // A crash right after CreateGroup: the group exists, status holds only the intent.
    let intent = Time(Timestamp::now());
    w.aws
        .create_group()
        .group_name("late")
        .send()
        .await
        .unwrap();
    let mut crashed = group_cr("team-a", "late", "late");
    crashed.spec.policies = vec![by_arn(READ_ONLY)];
    crashed.status = Some(IamGroupStatus {
        creating_since: Some(intent),
        ..Default::default()
    });
    reconcile(&w, &mut crashed).await.unwrap();
    let st = crashed.status.clone().unwrap();
    assert!(
        st.group_id.is_some() && st.creating_since.is_none(),
        "{st:?}"
    );
    assert_eq!(
        read::group_policies(&w.aws, "late").await,
        set(&[READ_ONLY])
    );

    // A group that existed well before the intent is someone else's.
    w.aws
        .create_group()
        .group_name("older")
        .send()
        .await
        .unwrap();
    let mut other = group_cr("team-a", "older", "older");
    other.status = Some(IamGroupStatus {
        creating_since: Some(Time(Timestamp::now() + SignedDuration::from_secs(60))),
        ..Default::default()
    });
    let err = reconcile(&w, &mut other).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert!(read::group_policies(&w.aws, "older").await.is_empty());
}

#[tokio::test]
async fn path_outside_prefix_is_invalid_spec() {
    let w = World::with_settings(Settings {
        iam_path_prefix: "/k8s/".into(),
        ..Settings::default()
    })
    .await;
    let mut g = group_cr("team-a", "devs", "devs");
    let err = reconcile(&w, &mut g).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert_eq!(err.severity(), Severity::Stalled);
    assert!(err.to_string().contains("/k8s/"), "{err}");
    assert!(!read::group_exists(&w.aws, "devs").await);

    g.spec.path = "/k8s/team-a/".into();
    reconcile(&w, &mut g).await.unwrap();
    assert_eq!(
        g.status.unwrap().arn.unwrap(),
        "arn:aws:iam::123456789012:group/k8s/team-a/devs"
    );
}

#[tokio::test]
async fn denied_policy_is_refused_and_detached() {
    let w = World::with_settings(Settings {
        deny_policy_arns: Globs::new(&[ADMIN.into()]).unwrap(),
        ..Settings::default()
    })
    .await;
    let mut g = group_cr("team-a", "admins", "admins");
    g.spec.policies = vec![by_arn(READ_ONLY), by_arn(ADMIN)];
    let err = reconcile(&w, &mut g).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert_eq!(err.severity(), Severity::Stalled);
    assert!(
        err.to_string()
            .contains(&format!("--deny-policy-arn {ADMIN}")),
        "{err}"
    );
    // The allowed part is granted, the denied policy never.
    assert_eq!(
        read::group_policies(&w.aws, "admins").await,
        set(&[READ_ONLY])
    );

    // Attached out of band, a denied policy is detached, not left in place.
    w.aws
        .attach_group_policy()
        .group_name("admins")
        .policy_arn(ADMIN)
        .send()
        .await
        .unwrap();
    let err = reconcile(&w, &mut g).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert_eq!(
        read::group_policies(&w.aws, "admins").await,
        set(&[READ_ONLY])
    );

    // A denied policy that reaches the group through a policyRef is refused too.
    w.deps.policy("team-a", "admin", ADMIN);
    g.spec.policies = vec![by_ref("admin")];
    let err = reconcile(&w, &mut g).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(read::group_policies(&w.aws, "admins").await.is_empty());
}

#[tokio::test]
async fn missing_policy_ref_waits_then_converges() {
    let w = World::start().await;
    let mut g = group_cr("team-a", "devs", "devs");
    g.spec.policies = vec![by_ref("s3-reader")];
    let err = reconcile(&w, &mut g).await.unwrap_err();
    assert!(matches!(err, Error::DependencyNotReady(_)), "{err:?}");
    assert_eq!(err.severity(), Severity::Waiting);
    assert!(err.to_string().contains("s3-reader"), "{err}");

    let reader = w
        .create_policy("s3-reader", allow(json!("s3:GetObject")))
        .await;
    w.deps.policy("team-a", "s3-reader", &reader);
    reconcile(&w, &mut g).await.unwrap();
    assert_eq!(read::group_policies(&w.aws, "devs").await, set(&[&reader]));
}

#[tokio::test]
async fn swapping_a_policy_at_the_attachment_quota_converges() {
    let w = World::start().await;
    // IAM allows 10 managed policies per group by default.
    let mut arns = Vec::new();
    for i in 0..11 {
        arns.push(
            w.create_policy(&format!("p{i}"), allow(json!(format!("s3:Action{i}"))))
                .await,
        );
    }
    let mut g = group_cr("team-a", "devs", "devs");
    g.spec.policies = arns[..10].iter().map(|a| by_arn(a)).collect();
    reconcile(&w, &mut g).await.unwrap();
    assert_eq!(read::group_policies(&w.aws, "devs").await.len(), 10);

    // Replacing one keeps the group at 10: the old one must go before the new one comes.
    g.spec.policies = arns[1..].iter().map(|a| by_arn(a)).collect();
    reconcile(&w, &mut g).await.unwrap();
    let want: BTreeSet<String> = arns[1..].iter().cloned().collect();
    assert_eq!(read::group_policies(&w.aws, "devs").await, want);

    // Same when the extra one was attached out of band while the group was at the quota.
    w.aws
        .detach_group_policy()
        .group_name("devs")
        .policy_arn(&arns[1])
        .send()
        .await
        .unwrap();
    w.aws
        .attach_group_policy()
        .group_name("devs")
        .policy_arn(&arns[0])
        .send()
        .await
        .unwrap();
    reconcile(&w, &mut g).await.unwrap();
    assert_eq!(read::group_policies(&w.aws, "devs").await, want);
}
