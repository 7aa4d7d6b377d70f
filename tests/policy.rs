//! IamPolicy reconcile logic against the IAM emulator over HTTP.

mod support;

use iam_operator::api::{
    ADOPT_ANNOTATION, ADOPTABLE_BY_TAG, DeletionPolicy, IamPolicy, IamPolicySpec, OWNER_TAG,
};
use iam_operator::controller::policy;
use iam_operator::error::Error;
use iam_operator::settings::Settings;
use serde_json::json;
use support::{World, meta};

fn doc(actions: serde_json::Value) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
}

fn policy_cr(name: &str) -> IamPolicy {
    let mut p = IamPolicy::new(
        name,
        IamPolicySpec {
            policy_name: None,
            path: "/".into(),
            description: Some("test policy".into()),
            document: doc(json!(["s3:GetObject"])),
            tags: [("team".to_string(), "a".to_string())].into(),
            deletion_policy: None,
        },
    );
    p.metadata = meta("team-a", name);
    p
}

/// Runs one reconcile and stores the status on the object, as the runtime would.
async fn reconcile(
    w: &World,
    p: &mut IamPolicy,
) -> Result<iam_operator::controller::Synced, Error> {
    let mut status = p.status.clone().unwrap_or_default();
    let r = policy::reconcile(&w.engine, p, &mut status).await;
    p.status = Some(status);
    r
}

async fn tags(w: &World, arn: &str) -> std::collections::BTreeMap<String, String> {
    w.aws
        .list_policy_tags()
        .policy_arn(arn)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

async fn versions(w: &World, arn: &str) -> Vec<(String, bool)> {
    let mut v: Vec<_> = w
        .aws
        .list_policy_versions()
        .policy_arn(arn)
        .send()
        .await
        .unwrap()
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap().to_string(), v.is_default_version()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn create_update_noop_and_prune() {
    let w = World::start().await;
    let mut p = policy_cr("reader");
    let synced = reconcile(&w, &mut p).await.unwrap();
    assert_eq!(
        synced.messages(),
        vec!["Created IAM policy reader".to_string()]
    );
    let status = p.status.clone().unwrap();
    let arn = status.arn.clone().unwrap();
    assert_eq!(arn, "arn:aws:iam::123456789012:policy/reader");
    assert!(!status.policy_id.unwrap().is_empty());
    assert_eq!(status.default_version_id.as_deref(), Some("v1"));
    let t = tags(&w, &arn).await;
    assert_eq!(t.get("team").map(String::as_str), Some("a"));
    assert_eq!(
        t.get(OWNER_TAG).map(String::as_str),
        Some("default/team-a/reader")
    );

    // A semantically equal document (reordered, single value) creates nothing.
    w.emulator.reset_calls().await;
    p.spec.document = json!({"Statement": {"Resource": ["*"], "Action": "s3:GetObject", "Effect": "Allow"}, "Version": "2012-10-17"});
    let synced = reconcile(&w, &mut p).await.unwrap();
    assert!(synced.changes.is_empty(), "{:?}", synced.changes);
    let calls = w.emulator.calls().await;
    assert!(!calls.contains_key("CreatePolicyVersion"), "{calls:?}");
    let writes: Vec<_> = calls
        .keys()
        .filter(|k| !k.starts_with("Get") && !k.starts_with("List"))
        .collect();
    assert!(
        writes.is_empty(),
        "a no-op reconcile wrote to IAM: {writes:?}"
    );

    // Each real change makes a new default version; IAM's limit of 5 prunes the oldest.
    for i in 2..=7 {
        p.spec.document = doc(json!([format!("s3:Action{i}")]));
        reconcile(&w, &mut p).await.unwrap();
        assert_eq!(
            p.status.as_ref().unwrap().default_version_id,
            Some(format!("v{i}"))
        );
    }
    let v = versions(&w, &arn).await;
    assert_eq!(v.len(), 5, "{v:?}");
    assert!(
        !v.iter().any(|(id, _)| id == "v1" || id == "v2"),
        "oldest not pruned: {v:?}"
    );
    assert!(v.contains(&("v7".to_string(), true)));
}

#[tokio::test]
async fn tag_drift_is_reverted_but_owner_tag_kept() {
    let w = World::start().await;
    let mut p = policy_cr("drift");
    reconcile(&w, &mut p).await.unwrap();
    let arn = p.status.as_ref().unwrap().arn.clone().unwrap();
    w.aws
        .tag_policy()
        .policy_arn(&arn)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("b")
                .build()
                .unwrap(),
        )
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("extra")
                .value("x")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    w.aws
        .untag_policy()
        .policy_arn(&arn)
        .tag_keys(OWNER_TAG)
        .send()
        .await
        .unwrap();
    let synced = reconcile(&w, &mut p).await.unwrap();
    assert_eq!(
        synced.messages(),
        vec!["Reverted tags of IAM policy drift".to_string()]
    );
    let t = tags(&w, &arn).await;
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t["team"], "a");
    assert_eq!(t[OWNER_TAG], "default/team-a/drift");
}

#[tokio::test]
async fn existing_policy_needs_adoption_and_foreign_owner_is_never_taken() {
    let w = World::start().await;
    w.aws
        .create_policy()
        .policy_name("taken")
        .policy_document(doc(json!("s3:*")).to_string())
        .send()
        .await
        .unwrap();
    let mut p = policy_cr("taken");
    let err = reconcile(&w, &mut p).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert!(
        err.to_string().contains("not managed by this resource"),
        "{err}"
    );
    // The annotation is a request; it needs adoption allowed and an administrator's tag.
    p.metadata
        .annotations
        .get_or_insert_default()
        .insert(ADOPT_ANNOTATION.into(), "true".into());
    let err = reconcile(&w, &mut p).await.unwrap_err();
    assert!(err.to_string().contains("adoption is not allowed"), "{err}");
    w.tenancy(json!({"namespaceSelector": {}, "path": "/", "adoption": true}));
    let err = reconcile(&w, &mut p).await.unwrap_err();
    assert!(err.to_string().contains("must tag it"), "{err}");
    // The conflicting policy was not modified.
    let arn = "arn:aws:iam::123456789012:policy/taken";
    let v = versions(&w, arn).await;
    assert_eq!(v.len(), 1);

    // Tagged adoptable by this namespace, it is adopted: document and tags converge.
    w.aws
        .tag_policy()
        .policy_arn(arn)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key(ADOPTABLE_BY_TAG)
                .value("default/team-a")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    reconcile(&w, &mut p).await.unwrap();
    let arn = p.status.as_ref().unwrap().arn.clone().unwrap();
    assert_eq!(versions(&w, &arn).await.len(), 2);
    assert_eq!(tags(&w, &arn).await[OWNER_TAG], "default/team-a/taken");

    // Another namespace's CR for the same name is a conflict even with the annotation.
    let mut other = policy_cr("taken");
    other.metadata = meta("team-b", "taken");
    other
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(ADOPT_ANNOTATION.into(), "true".into());
    let err = reconcile(&w, &mut other).await.unwrap_err();
    assert!(
        err.to_string().contains("owned by default/team-a/taken"),
        "{err}"
    );
    // And its cleanup leaves the first one's policy alone.
    policy::cleanup(&w.engine, &other).await.unwrap();
    assert!(w.aws.get_policy().policy_arn(&arn).send().await.is_ok());
}

#[tokio::test]
async fn malformed_document_is_invalid_spec_with_iams_message() {
    let w = World::start().await;
    let mut p = policy_cr("bad");
    p.spec.document = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]});
    let err = reconcile(&w, &mut p).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(
        err.to_string().starts_with("IAM rejected spec.document"),
        "{err}"
    );
    assert!(p.status.as_ref().unwrap().arn.is_none());

    p.spec.document = json!({"Version": "2012-10-17"});
    let err = reconcile(&w, &mut p).await.unwrap_err();
    assert!(err.to_string().contains("no Statement"), "{err}");
}

#[tokio::test]
async fn path_outside_prefix_is_rejected() {
    let w = World::with_settings(Settings {
        iam_path_prefix: "/k8s/".into(),
        ..Settings::default()
    })
    .await;
    let mut p = policy_cr("outside");
    let err = reconcile(&w, &mut p).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    p.spec.path = "/k8s/team-a/".into();
    reconcile(&w, &mut p).await.unwrap();
    assert_eq!(
        p.status.unwrap().arn.unwrap(),
        "arn:aws:iam::123456789012:policy/k8s/team-a/outside"
    );
}

#[tokio::test]
async fn delete_detaches_everywhere_and_removes_versions() {
    let w = World::start().await;
    let mut p = policy_cr("attached");
    reconcile(&w, &mut p).await.unwrap();
    p.spec.document = doc(json!("s3:PutObject"));
    reconcile(&w, &mut p).await.unwrap();
    let arn = p.status.as_ref().unwrap().arn.clone().unwrap();
    w.aws.create_user().user_name("u1").send().await.unwrap();
    w.aws.create_group().group_name("g1").send().await.unwrap();
    w.aws
        .create_role()
        .role_name("r1")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
        .unwrap();
    w.aws
        .attach_user_policy()
        .user_name("u1")
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    w.aws
        .attach_group_policy()
        .group_name("g1")
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    w.aws
        .attach_role_policy()
        .role_name("r1")
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();

    // The emulator refuses to delete an attached policy, as IAM does.
    let direct = w.aws.delete_policy().policy_arn(&arn).send().await;
    assert!(direct.is_err());

    policy::cleanup(&w.engine, &p).await.unwrap();
    assert!(w.aws.get_policy().policy_arn(&arn).send().await.is_err());
    let u = w
        .aws
        .list_attached_user_policies()
        .user_name("u1")
        .send()
        .await
        .unwrap();
    assert!(u.attached_policies().is_empty());
    // Idempotent: a second cleanup (e.g. after a crash) succeeds.
    policy::cleanup(&w.engine, &p).await.unwrap();
}

#[tokio::test]
async fn retain_leaves_the_policy() {
    let w = World::start().await;
    let mut p = policy_cr("kept");
    p.spec.deletion_policy = Some(DeletionPolicy::Retain);
    reconcile(&w, &mut p).await.unwrap();
    policy::cleanup(&w.engine, &p).await.unwrap();
    let arn = p.status.unwrap().arn.unwrap();
    assert!(w.aws.get_policy().policy_arn(&arn).send().await.is_ok());
}

#[tokio::test]
async fn throttling_is_transient() {
    let w = World::start().await;
    // More failures than the SDK's own retries, so the reconcile sees it.
    w.emulator.fail("CreatePolicy", "Throttling", 400, 10).await;
    let mut p = policy_cr("slow");
    let err = reconcile(&w, &mut p).await.unwrap_err();
    assert_eq!(err.reason(), "Throttled");
    assert_eq!(err.severity(), iam_operator::error::Severity::Transient);
}

#[tokio::test]
async fn iam_calls_are_counted_by_operation_and_outcome() {
    let emulator = support::emulator::Emulator::start();
    let metrics = std::sync::Arc::new(iam_operator::metrics::Metrics::default());
    let iam = iam_operator::iam::AwsIam::with_metrics(
        &support::sdk_config(&emulator.url),
        metrics.clone(),
    );
    use iam_operator::iam::Iam;
    iam.create_group("g", "/").await.unwrap();
    assert!(iam.get_group("missing").await.is_err());
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"iam_operator_iam_calls_total{operation="CreateGroup",outcome="success"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"iam_operator_iam_calls_total{operation="GetGroup",outcome="not_found"} 1"#
        ),
        "{text}"
    );
}

/// Deleting a policy still used as a permissions boundary says where it is used.
#[tokio::test]
async fn deleting_a_policy_used_as_a_boundary_says_so() {
    let w = World::start().await;
    let mut p = policy_cr("boundary");
    reconcile(&w, &mut p).await.unwrap();
    let arn = p.status.as_ref().unwrap().arn.clone().unwrap();
    w.aws
        .create_user()
        .user_name("bounded")
        .permissions_boundary(&arn)
        .send()
        .await
        .unwrap();
    let err = policy::cleanup(&w.engine, &p).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("as the permissions boundary of a user or role"),
        "{err}"
    );
    assert!(w.aws.get_policy().policy_arn(&arn).send().await.is_ok());
}
