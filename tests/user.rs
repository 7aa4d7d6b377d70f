//! IamUser reconcile logic (identity, tags, boundary, groups, policies; not credentials)
//! against the IAM emulator over HTTP.

mod support;

use iam_operator::api::{
    ADOPT_ANNOTATION, DeletionPolicy, GroupMembership, IamUser, IamUserSpec, InlinePolicy,
    LocalObjectRef, OWNER_TAG, PolicyAttachment,
};
use iam_operator::controller::{Synced, user};
use iam_operator::error::{Error, Severity};
use iam_operator::settings::{Globs, Settings};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use support::{World, allow, meta, read, writes};

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const CHANGE_PASSWORD: &str = "arn:aws:iam::aws:policy/IAMUserChangePassword";
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const POWER_USER: &str = "arn:aws:iam::aws:policy/PowerUserAccess";

/// A valid OpenSSH RSA public key, for an out-of-band UploadSSHPublicKey.
const SSH_PUBLIC_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCp8FHDYm9RCJCIm4ZZJ5mqYnMfPQ6YwRFldYprwNibt6gV9arSnc2SdagR3KMyH996rjIvH0aCNPgv84jL+xjuEl2/656JjSbFXz658siCX+r/IJAPb+nasmedmeLzacQvjqt81lG3MxN9tIINv+NqaiD0pCVC/1NMLvqhvB7Vo1/dBaidXIJDlXtSW5kRKdn+dKaJrxsenzP6tFMTvZpoEXTok+FDUii4Dut3KBwAeLjedL5bV0QtWSxhrNFpOb9OnaHM5OyK1oPxL9uhk5Ag+DmcPlGb2B8cR87CB5nepnlAoGP1KUJt006RCs8KCsMYeMEocBCnHgGQLPXB4PtN test";

/// A valid self-signed X.509 certificate (valid until 2126), for UploadSigningCertificate.
const SIGNING_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIDGzCCAgOgAwIBAgIUPXa83sTfVFtSEPNrTyg1rt3QTecwDQYJKoZIhvcNAQEL
BQAwHDEaMBgGA1UEAwwRaWFtLW9wZXJhdG9yLXRlc3QwIBcNMjYxMTIzMTIxMTAy
WhgPMjEyNjEwMzAxMjExMDJaMBwxGjAYBgNVBAMMEWlhbS1vcGVyYXRvci10ZXN0
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAhdLhSVz8J7tinsn4DZls
qtCCRwZlIgsH4VXyoWZlamBHsmDfkUQRNCsIjC/cXsWR6YpqrpngG71mxDPsXVtq
IOxT2vK7VU2Zz5plNETeTJbZ9ydZ5unk08/CSQ0Wr0/ICAPONVrWTTapNwj33OaA
mjZBgdu7w0B6t3dN18PDxIifVMTPvKWHTjED/95BNZ9Sb1XtfCI5pwaDZ2QXEJQu
oEKmX1FoTxuX+X/cxzGlQlaI1hwYAQGVMu6Inw7Jbqhymoqy3B5K97i/c5TfIpxD
rKEi/eMIFMob+tp85BnagZyRqN43QHWYQZT6cnywYesMhv6UJ7Zl3jrSVW+BesjR
jQIDAQABo1MwUTAdBgNVHQ4EFgQUsNq6R8k6WwEAWvGzxXc6Hy0Iy/EwHwYDVR0j
BBgwFoAUsNq6R8k6WwEAWvGzxXc6Hy0Iy/EwDwYDVR0TAQH/BAUwAwEB/zANBgkq
hkiG9w0BAQsFAAOCAQEAR+MdGj3AsNJk5eeMGrTTLsWgqLeuY41nfKOYpBLlF5lI
DnszKTSPptZPy+BmrdxRySjIFdlpT6dOO8bqrals85CBxXHyAuurqbwwodDyVBS+
6tlXmg0EByTmNFv7vIX6cNZvvU7T4Ax82uCjwBppNISrkDZHw1V5BT59dY+rU7up
LSLmrLjU9dvEAia1C+hLUItAjwcIvgOFrvx9CgUE4E+3wpiuylOZN2RfUQ9ieCC4
xMO/f5l8sCGMeyy6AzEH3nJIfxN86Kgwy6dHlj5pIXWCbZG+IApf8ouZba9rHsSA
s/R0QwM1yVmogNRXCBOvsZkP4gWppNgHmWR5IxKYZA==
-----END CERTIFICATE-----
";

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

fn group_ref(name: &str) -> GroupMembership {
    GroupMembership {
        group_ref: Some(LocalObjectRef { name: name.into() }),
        group_name: None,
    }
}

fn group_name(name: &str) -> GroupMembership {
    GroupMembership {
        group_ref: None,
        group_name: Some(name.into()),
    }
}

fn inline(name: &str, document: serde_json::Value) -> InlinePolicy {
    InlinePolicy {
        name: name.into(),
        document,
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An IamUser `name` in `ns`, named `iam_name` in IAM, with one tag and nothing else.
fn user_cr(ns: &str, name: &str, iam_name: &str) -> IamUser {
    let mut u = IamUser::new(
        name,
        IamUserSpec {
            user_name: Some(iam_name.into()),
            path: "/".into(),
            tags: map(&[("team", "a")]),
            permissions_boundary: None,
            groups: Vec::new(),
            policies: Vec::new(),
            inline_policies: Vec::new(),
            access_key: None,
            console: None,
            deletion_policy: None,
        },
    );
    u.metadata = meta(ns, name);
    u
}

async fn reconcile(w: &World, u: &mut IamUser) -> Result<Synced, Error> {
    support::reconcile_user(w, u).await
}

/// An administrator's consent in IAM: the user may be adopted by `namespace`.
async fn tag_adoptable(w: &World, user: &str, by: &str) {
    w.aws
        .tag_user()
        .user_name(user)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key(iam_operator::api::ADOPTABLE_BY_TAG)
                .value(by)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn create_group(w: &World, name: &str) {
    w.aws.create_group().group_name(name).send().await.unwrap();
}

#[tokio::test]
async fn create_with_path_tags_and_owner_tag_then_noop() {
    let w = World::start().await;
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.path = "/team-a/".into();
    u.spec.tags = map(&[("team", "a"), ("cost-center", "42")]);
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        synced.messages(),
        vec!["Created IAM user alice".to_string()]
    );

    let out = w.aws.get_user().user_name("alice").send().await.unwrap();
    let iam = out.user().unwrap();
    assert_eq!(iam.path(), "/team-a/");
    assert_eq!(iam.arn(), "arn:aws:iam::123456789012:user/team-a/alice");
    let status = u.status.clone().unwrap();
    assert_eq!(status.arn.as_deref(), Some(iam.arn()));
    assert_eq!(status.user_id.as_deref(), Some(iam.user_id()));
    assert_eq!(
        read::user_tags(&w.aws, "alice").await,
        map(&[
            ("team", "a"),
            ("cost-center", "42"),
            (OWNER_TAG, "default/team-a/alice")
        ])
    );
    assert_eq!(read::user_boundary(&w.aws, "alice").await, None);

    // Nothing changed: a reconcile writes nothing.
    w.emulator.reset_calls().await;
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert!(synced.changes.is_empty(), "{:?}", synced.changes);
    let calls = w.emulator.calls().await;
    assert!(
        writes(&calls).is_empty(),
        "no-op reconcile wrote: {calls:?}"
    );
}

#[tokio::test]
async fn tag_drift_is_reverted_and_owner_tag_kept() {
    let w = World::start().await;
    let mut u = user_cr("team-a", "alice", "alice");
    reconcile(&w, &mut u).await.unwrap();
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    w.aws
        .tag_user()
        .user_name("alice")
        .tags(tag("team", "b"))
        .tags(tag("extra", "x"))
        .send()
        .await
        .unwrap();
    w.aws
        .untag_user()
        .user_name("alice")
        .tag_keys(OWNER_TAG)
        .send()
        .await
        .unwrap();

    // The owner tag is gone, but the user id in status still says it is ours.
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        synced.messages(),
        vec!["Updated tags of IAM user alice".to_string()]
    );
    assert_eq!(
        read::user_tags(&w.aws, "alice").await,
        map(&[("team", "a"), (OWNER_TAG, "default/team-a/alice")])
    );

    // A spec change of the tags is applied the same way.
    u.spec.tags = map(&[("env", "prod")]);
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_tags(&w.aws, "alice").await,
        map(&[("env", "prod"), (OWNER_TAG, "default/team-a/alice")])
    );
}

#[tokio::test]
async fn groups_from_ref_and_name_are_exclusive() {
    let w = World::start().await;
    create_group(&w, "team-a-devs").await;
    create_group(&w, "legacy-readers").await;
    create_group(&w, "other").await;
    w.deps.group("team-a", "devs", "team-a-devs");
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.groups = vec![group_ref("devs"), group_name("legacy-readers")];
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_groups(&w.aws, "alice").await,
        set(&["team-a-devs", "legacy-readers"])
    );

    // Out of band: added to another group, removed from a declared one.
    w.aws
        .add_user_to_group()
        .group_name("other")
        .user_name("alice")
        .send()
        .await
        .unwrap();
    w.aws
        .remove_user_from_group()
        .group_name("legacy-readers")
        .user_name("alice")
        .send()
        .await
        .unwrap();
    let synced = reconcile(&w, &mut u).await.unwrap();
    let changes: BTreeSet<_> = synced.messages().into_iter().collect();
    assert_eq!(
        changes,
        set(&["Added to group legacy-readers", "Removed from group other"])
    );
    assert_eq!(
        read::user_groups(&w.aws, "alice").await,
        set(&["team-a-devs", "legacy-readers"])
    );
    assert!(read::group_members(&w.aws, "other").await.is_empty());

    // Dropping a group from the spec leaves it.
    u.spec.groups = vec![group_name("legacy-readers")];
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_groups(&w.aws, "alice").await,
        set(&["legacy-readers"])
    );
}

#[tokio::test]
async fn group_names_compare_case_insensitively() {
    let w = World::start().await;
    create_group(&w, "Developers").await;
    w.deps.group("team-a", "devs", "Developers");
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.groups = vec![group_ref("devs")];
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_groups(&w.aws, "alice").await,
        set(&["Developers"])
    );

    // IAM names are case-insensitive: the same group spelled differently is already a
    // membership, so nothing is added or removed.
    w.deps.group("team-a", "devs", "developers");
    w.emulator.reset_calls().await;
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert!(synced.changes.is_empty(), "{:?}", synced.changes);
    let calls = w.emulator.calls().await;
    assert!(writes(&calls).is_empty(), "{calls:?}");
    assert_eq!(
        read::user_groups(&w.aws, "alice").await,
        set(&["Developers"])
    );
}

#[tokio::test]
async fn managed_and_inline_policies_are_exclusive() {
    let w = World::start().await;
    let reader = w
        .create_policy("s3-reader", allow(json!("s3:GetObject")))
        .await;
    w.deps.policy("team-a", "s3-reader", &reader);
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.policies = vec![by_ref("s3-reader"), by_arn(READ_ONLY)];
    let doc = allow(json!(["sqs:SendMessage", "sqs:ReceiveMessage"]));
    u.spec.inline_policies = vec![inline("queue", doc.clone())];
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_policies(&w.aws, "alice").await,
        set(&[&reader, READ_ONLY])
    );
    assert_eq!(read::user_inline(&w.aws, "alice").await, set(&["queue"]));
    assert_eq!(read::user_inline_doc(&w.aws, "alice", "queue").await, doc);

    // Drift: an extra attachment, a detached declared one, an extra inline policy, and the
    // declared inline policy rewritten.
    w.aws
        .attach_user_policy()
        .user_name("alice")
        .policy_arn(CHANGE_PASSWORD)
        .send()
        .await
        .unwrap();
    w.aws
        .detach_user_policy()
        .user_name("alice")
        .policy_arn(&reader)
        .send()
        .await
        .unwrap();
    for (name, d) in [
        ("sneaky", allow(json!("iam:*"))),
        ("queue", allow(json!("*"))),
    ] {
        w.aws
            .put_user_policy()
            .user_name("alice")
            .policy_name(name)
            .policy_document(d.to_string())
            .send()
            .await
            .unwrap();
    }
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_policies(&w.aws, "alice").await,
        set(&[&reader, READ_ONLY])
    );
    assert_eq!(read::user_inline(&w.aws, "alice").await, set(&["queue"]));
    assert_eq!(read::user_inline_doc(&w.aws, "alice", "queue").await, doc);

    // A reordered but equal document writes nothing.
    u.spec.inline_policies = vec![inline(
        "queue",
        json!({"Statement": {"Resource": "*", "Action": ["sqs:ReceiveMessage", "sqs:SendMessage"], "Effect": "Allow"}, "Version": "2012-10-17"}),
    )];
    w.emulator.reset_calls().await;
    reconcile(&w, &mut u).await.unwrap();
    let calls = w.emulator.calls().await;
    assert!(writes(&calls).is_empty(), "{calls:?}");

    // Emptying the spec empties IAM.
    u.spec.policies.clear();
    u.spec.inline_policies.clear();
    reconcile(&w, &mut u).await.unwrap();
    assert!(read::user_policies(&w.aws, "alice").await.is_empty());
    assert!(read::user_inline(&w.aws, "alice").await.is_empty());
}

#[tokio::test]
async fn permissions_boundary_set_changed_reverted_and_removed() {
    let w = World::start().await;
    let boundary = w.create_policy("team-boundary", allow(json!("s3:*"))).await;
    w.deps.policy("team-a", "boundary", &boundary);

    // From an ARN at creation.
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.permissions_boundary = Some(by_arn(POWER_USER));
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_boundary(&w.aws, "alice").await.as_deref(),
        Some(POWER_USER)
    );

    // Changed to a policyRef.
    u.spec.permissions_boundary = Some(by_ref("boundary"));
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        synced.messages(),
        vec![format!("Set permissions boundary {boundary}")]
    );
    assert_eq!(
        read::user_boundary(&w.aws, "alice").await,
        Some(boundary.clone())
    );

    // Changed out of band, and removed out of band: both reverted.
    w.aws
        .put_user_permissions_boundary()
        .user_name("alice")
        .permissions_boundary(READ_ONLY)
        .send()
        .await
        .unwrap();
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_boundary(&w.aws, "alice").await,
        Some(boundary.clone())
    );
    w.aws
        .delete_user_permissions_boundary()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_boundary(&w.aws, "alice").await,
        Some(boundary.clone())
    );

    // Removed from the spec: IAM drops it too.
    u.spec.permissions_boundary = None;
    w.emulator.reset_calls().await;
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        synced.messages(),
        vec!["Removed permissions boundary".to_string()]
    );
    let calls = w.emulator.calls().await;
    assert_eq!(calls.get("DeleteUserPermissionsBoundary"), Some(&1));
    assert_eq!(read::user_boundary(&w.aws, "alice").await, None);

    // A boundary that does not exist is the spec's fault.
    u.spec.permissions_boundary = Some(by_arn("arn:aws:iam::123456789012:policy/missing"));
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec", "{err}");
    assert_eq!(read::user_boundary(&w.aws, "alice").await, None);
}

#[tokio::test]
async fn required_permissions_boundary_is_enforced() {
    let w = World::with_settings(Settings {
        required_permissions_boundary: Some(POWER_USER.into()),
        allow_adoption: true,
        ..Settings::default()
    })
    .await;
    // None in the spec: the required one is set at creation.
    let mut u = user_cr("team-a", "alice", "alice");
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_boundary(&w.aws, "alice").await.as_deref(),
        Some(POWER_USER)
    );

    // Removed out of band: put back.
    w.aws
        .delete_user_permissions_boundary()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_boundary(&w.aws, "alice").await.as_deref(),
        Some(POWER_USER)
    );

    // A spec naming another boundary is refused, and the required one stays.
    u.spec.permissions_boundary = Some(by_arn(READ_ONLY));
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert_eq!(err.severity(), Severity::Stalled);
    assert!(err.to_string().contains(POWER_USER), "{err}");
    assert_eq!(
        read::user_boundary(&w.aws, "alice").await.as_deref(),
        Some(POWER_USER)
    );

    // Naming the required one is fine.
    u.spec.permissions_boundary = Some(by_arn(POWER_USER));
    reconcile(&w, &mut u).await.unwrap();

    // A pre-existing user without a boundary gets it on adoption.
    w.aws.create_user().user_name("bob").send().await.unwrap();
    tag_adoptable(&w, "bob", "default/team-a").await;
    let mut bob = user_cr("team-a", "bob", "bob");
    bob.metadata
        .annotations
        .get_or_insert_default()
        .insert(ADOPT_ANNOTATION.into(), "true".into());
    reconcile(&w, &mut bob).await.unwrap();
    assert_eq!(
        read::user_boundary(&w.aws, "bob").await.as_deref(),
        Some(POWER_USER)
    );
}

#[tokio::test]
async fn denied_policies_are_refused_directly_and_through_groups() {
    let w = World::with_settings(Settings {
        deny_policy_arns: Globs::new(&[ADMIN.into()]).unwrap(),
        ..Settings::default()
    })
    .await;
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.policies = vec![by_arn(READ_ONLY), by_arn(ADMIN)];
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert_eq!(err.severity(), Severity::Stalled);
    assert!(
        err.to_string()
            .contains(&format!("--deny-policy-arn {ADMIN}")),
        "{err}"
    );
    // The allowed part is granted, the denied policy never.
    assert_eq!(
        read::user_policies(&w.aws, "alice").await,
        set(&[READ_ONLY])
    );

    // A group not managed here that grants the denied policy is refused too.
    create_group(&w, "admins").await;
    w.aws
        .attach_group_policy()
        .group_name("admins")
        .policy_arn(ADMIN)
        .send()
        .await
        .unwrap();
    u.spec.policies = vec![by_arn(READ_ONLY)];
    u.spec.groups = vec![group_name("admins")];
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(err.to_string().contains("through group admins"), "{err}");
    assert!(err.to_string().contains(ADMIN), "{err}");
    assert!(read::group_members(&w.aws, "admins").await.is_empty());

    // An existing user is not put into it either.
    u.spec.groups.clear();
    reconcile(&w, &mut u).await.unwrap();
    u.spec.groups = vec![group_name("admins")];
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(read::user_groups(&w.aws, "alice").await.is_empty());
    assert_eq!(
        read::user_policies(&w.aws, "alice").await,
        set(&[READ_ONLY])
    );
}

#[tokio::test]
async fn missing_dependencies_wait_then_converge() {
    let w = World::start().await;
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.groups = vec![group_ref("devs")];
    u.spec.policies = vec![by_ref("reader")];
    u.spec.permissions_boundary = Some(by_ref("boundary"));

    let boundary = w.create_policy("boundary", allow(json!("*"))).await;
    let reader = w
        .create_policy("reader", allow(json!("s3:GetObject")))
        .await;
    create_group(&w, "team-a-devs").await;

    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(matches!(err, Error::DependencyNotReady(_)), "{err:?}");
    assert_eq!(err.severity(), Severity::Waiting);
    assert!(err.to_string().contains("boundary"), "{err}");
    w.deps.policy("team-a", "boundary", &boundary);

    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(matches!(err, Error::DependencyNotReady(_)), "{err:?}");
    assert!(err.to_string().contains("IamGroup devs"), "{err}");
    w.deps.group("team-a", "devs", "team-a-devs");

    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(matches!(err, Error::DependencyNotReady(_)), "{err:?}");
    assert!(err.to_string().contains("IamPolicy reader"), "{err}");
    w.deps.policy("team-a", "reader", &reader);

    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(read::user_boundary(&w.aws, "alice").await, Some(boundary));
    assert_eq!(
        read::user_groups(&w.aws, "alice").await,
        set(&["team-a-devs"])
    );
    assert_eq!(read::user_policies(&w.aws, "alice").await, set(&[&reader]));

    // A groupName that does not exist in IAM is waited for as well.
    u.spec.groups.push(group_name("later"));
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(matches!(err, Error::DependencyNotReady(_)), "{err:?}");
    assert!(err.to_string().contains("later"), "{err}");
    create_group(&w, "later").await;
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        read::user_groups(&w.aws, "alice").await,
        set(&["team-a-devs", "later"])
    );
}

#[tokio::test]
async fn existing_user_needs_adoption_with_consent() {
    let w = World::with_settings(Settings {
        allow_adoption: true,
        ..Settings::default()
    })
    .await;
    w.aws
        .create_user()
        .user_name("legacy")
        .send()
        .await
        .unwrap();
    w.aws
        .attach_user_policy()
        .user_name("legacy")
        .policy_arn(READ_ONLY)
        .send()
        .await
        .unwrap();
    let mut u = user_cr("team-a", "legacy", "legacy");
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert_eq!(err.severity(), Severity::Stalled);
    assert!(
        err.to_string().contains("not managed by this resource"),
        "{err}"
    );
    // Not modified, and deleting the CR leaves it.
    assert!(read::user_tags(&w.aws, "legacy").await.is_empty());
    assert_eq!(
        read::user_policies(&w.aws, "legacy").await,
        set(&[READ_ONLY])
    );
    user::cleanup(&w.engine, &u, w.secrets.as_ref())
        .await
        .unwrap();
    assert!(read::user_exists(&w.aws, "legacy").await);

    u.metadata
        .annotations
        .get_or_insert_default()
        .insert(ADOPT_ANNOTATION.into(), "true".into());
    // The annotation is a request: without an administrator's consent tag in IAM, nothing.
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(err.to_string().contains("must tag it"), "{err}");
    assert!(read::user_tags(&w.aws, "legacy").await.is_empty());
    // Consent for another namespace is no consent for this one.
    tag_adoptable(&w, "legacy", "default/team-b").await;
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(err.to_string().contains("must tag it"), "{err}");
    tag_adoptable(&w, "legacy", "default/team-a").await;
    reconcile(&w, &mut u).await.unwrap();
    // The consent tag is consumed: the user's tags are the spec's and the owner tag.
    assert_eq!(
        read::user_tags(&w.aws, "legacy").await,
        map(&[("team", "a"), (OWNER_TAG, "default/team-a/legacy")])
    );
    assert!(read::user_policies(&w.aws, "legacy").await.is_empty());

    // Adoption never reaches a user at another path than the spec's (the path is what
    // --iam-path-prefix guards).
    w.aws
        .create_user()
        .user_name("root-admin")
        .path("/admins/")
        .send()
        .await
        .unwrap();
    tag_adoptable(&w, "root-admin", "default/team-a").await;
    let mut admin = user_cr("team-a", "root-admin", "root-admin");
    admin
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(ADOPT_ANNOTATION.into(), "true".into());
    let err = reconcile(&w, &mut admin).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert!(err.to_string().contains("/admins/"), "{err}");
    assert!(
        !read::user_tags(&w.aws, "root-admin")
            .await
            .contains_key(OWNER_TAG)
    );
    user::cleanup(&w.engine, &admin, w.secrets.as_ref())
        .await
        .unwrap();
    assert!(read::user_exists(&w.aws, "root-admin").await);
}

#[tokio::test]
async fn same_user_name_in_two_namespaces_never_touches_the_first() {
    let w = World::start().await;
    create_group(&w, "a-devs").await;
    create_group(&w, "b-devs").await;
    let mut a = user_cr("team-a", "alice", "alice");
    a.spec.groups = vec![group_name("a-devs")];
    a.spec.policies = vec![by_arn(READ_ONLY)];
    reconcile(&w, &mut a).await.unwrap();
    let tags_before = read::user_tags(&w.aws, "alice").await;

    let mut b = user_cr("team-b", "alice", "alice");
    b.spec.tags = map(&[("team", "b")]);
    b.spec.groups = vec![group_name("b-devs")];
    b.spec.policies = vec![by_arn(CHANGE_PASSWORD)];
    // Even with the adopt annotation: the user carries another CR's owner tag.
    b.metadata
        .annotations
        .get_or_insert_default()
        .insert(ADOPT_ANNOTATION.into(), "true".into());
    w.emulator.reset_calls().await;
    let err = reconcile(&w, &mut b).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert!(
        err.to_string().contains("owned by default/team-a/alice"),
        "{err}"
    );
    let calls = w.emulator.calls().await;
    assert!(writes(&calls).is_empty(), "{calls:?}");
    assert!(b.status.as_ref().unwrap().user_id.is_none());
    assert_eq!(read::user_tags(&w.aws, "alice").await, tags_before);
    assert_eq!(read::user_groups(&w.aws, "alice").await, set(&["a-devs"]));
    assert_eq!(
        read::user_policies(&w.aws, "alice").await,
        set(&[READ_ONLY])
    );

    // Deleting the second CR leaves the first one's user alone.
    user::cleanup(&w.engine, &b, w.secrets.as_ref())
        .await
        .unwrap();
    assert!(read::user_exists(&w.aws, "alice").await);
    assert_eq!(read::user_tags(&w.aws, "alice").await, tags_before);
    assert_eq!(read::user_groups(&w.aws, "alice").await, set(&["a-devs"]));
    assert_eq!(
        read::user_policies(&w.aws, "alice").await,
        set(&[READ_ONLY])
    );

    // And the first one still reconciles cleanly.
    reconcile(&w, &mut a).await.unwrap();
}

/// IAM names are unique case-insensitively: `Carol` owned by one namespace is the user
/// another namespace gets when it asks for `carol`, and it is never touched.
#[tokio::test]
async fn a_name_differing_only_in_case_is_the_same_user() {
    let w = World::start().await;
    let mut a = user_cr("team-a", "carol", "Carol");
    a.spec.policies = vec![by_arn(READ_ONLY)];
    reconcile(&w, &mut a).await.unwrap();
    let tags_before = read::user_tags(&w.aws, "Carol").await;

    let mut b = user_cr("team-b", "carol", "carol");
    w.emulator.reset_calls().await;
    let err = reconcile(&w, &mut b).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert!(
        err.to_string().contains("owned by default/team-a/carol"),
        "{err}"
    );
    assert!(writes(&w.emulator.calls().await).is_empty());
    user::cleanup(&w.engine, &b, w.secrets.as_ref())
        .await
        .unwrap();
    assert!(read::user_exists(&w.aws, "Carol").await);
    assert_eq!(read::user_tags(&w.aws, "Carol").await, tags_before);
    let users = w.aws.list_users().send().await.unwrap();
    assert_eq!(users.users().len(), 1, "no second user beside Carol");
}

#[tokio::test]
async fn path_outside_prefix_is_invalid_spec() {
    let w = World::with_settings(Settings {
        iam_path_prefix: "/k8s/".into(),
        ..Settings::default()
    })
    .await;
    let mut u = user_cr("team-a", "alice", "alice");
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(err.to_string().contains("/k8s/"), "{err}");
    assert!(!read::user_exists(&w.aws, "alice").await);
    u.spec.path = "/k8s/team-a/".into();
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        u.status.unwrap().arn.unwrap(),
        "arn:aws:iam::123456789012:user/k8s/team-a/alice"
    );
}

/// Gives `user` one of everything IAM makes you remove before DeleteUser, out of band.
/// Returns the virtual MFA device's serial number.
async fn clutter(w: &World, user: &str) -> String {
    w.aws
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .unwrap();
    let inactive = w
        .aws
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .unwrap();
    w.aws
        .update_access_key()
        .user_name(user)
        .access_key_id(inactive.access_key().unwrap().access_key_id())
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    w.aws
        .create_login_profile()
        .user_name(user)
        .password("Aa1!aaaaaaaaaaaa")
        .send()
        .await
        .unwrap();
    w.aws
        .upload_ssh_public_key()
        .user_name(user)
        .ssh_public_key_body(SSH_PUBLIC_KEY)
        .send()
        .await
        .unwrap();
    w.aws
        .upload_signing_certificate()
        .user_name(user)
        .certificate_body(SIGNING_CERTIFICATE)
        .send()
        .await
        .unwrap();
    w.aws
        .create_service_specific_credential()
        .user_name(user)
        .service_name("codecommit.amazonaws.com")
        .send()
        .await
        .unwrap();
    let serial = w
        .aws
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(format!("{user}-mfa"))
        .send()
        .await
        .unwrap()
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_string();
    w.aws
        .enable_mfa_device()
        .user_name(user)
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    create_group(w, "oob-group").await;
    w.aws
        .add_user_to_group()
        .group_name("oob-group")
        .user_name(user)
        .send()
        .await
        .unwrap();
    w.aws
        .attach_user_policy()
        .user_name(user)
        .policy_arn(CHANGE_PASSWORD)
        .send()
        .await
        .unwrap();
    w.aws
        .put_user_policy()
        .user_name(user)
        .policy_name("oob-inline")
        .policy_document(allow(json!("s3:*")).to_string())
        .send()
        .await
        .unwrap();
    serial
}

#[tokio::test]
async fn delete_removes_a_user_changed_outside_the_operator() {
    let w = World::start().await;
    create_group(&w, "devs").await;
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.permissions_boundary = Some(by_arn(POWER_USER));
    u.spec.groups = vec![group_name("devs")];
    u.spec.policies = vec![by_arn(READ_ONLY)];
    u.spec.inline_policies = vec![inline("queue", allow(json!("sqs:*")))];
    reconcile(&w, &mut u).await.unwrap();
    let serial = clutter(&w, "alice").await;
    // The emulator refuses DeleteUser while any of it remains, as IAM does.
    assert!(w.aws.delete_user().user_name("alice").send().await.is_err());

    user::cleanup(&w.engine, &u, w.secrets.as_ref())
        .await
        .unwrap();
    assert!(!read::user_exists(&w.aws, "alice").await);
    // The virtual MFA device went with the user; the groups and policies stay.
    let devices = w.aws.list_virtual_mfa_devices().send().await.unwrap();
    assert!(
        !devices
            .virtual_mfa_devices()
            .iter()
            .any(|d| d.serial_number() == serial),
        "virtual MFA device {serial} left behind"
    );
    assert!(read::group_exists(&w.aws, "devs").await);
    assert!(read::group_exists(&w.aws, "oob-group").await);
    assert!(read::group_members(&w.aws, "oob-group").await.is_empty());
    assert!(
        w.aws
            .get_policy()
            .policy_arn(POWER_USER)
            .send()
            .await
            .is_ok()
    );

    // Idempotent: a second cleanup (e.g. after a crash) succeeds.
    user::cleanup(&w.engine, &u, w.secrets.as_ref())
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_after_a_partial_cleanup_finishes_the_job() {
    let w = World::start().await;
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.policies = vec![by_arn(READ_ONLY)];
    reconcile(&w, &mut u).await.unwrap();
    clutter(&w, "alice").await;
    // The first attempt stops at the very end (DeleteUser refused once), as if the
    // operator crashed there; everything before it is already gone.
    w.emulator
        .fail("DeleteUser", "DeleteConflict", 409, 1)
        .await;
    assert!(
        user::cleanup(&w.engine, &u, w.secrets.as_ref())
            .await
            .is_err()
    );
    assert!(read::user_exists(&w.aws, "alice").await);
    assert!(read::user_policies(&w.aws, "alice").await.is_empty());
    // The retry resumes from there.
    user::cleanup(&w.engine, &u, w.secrets.as_ref())
        .await
        .unwrap();
    assert!(!read::user_exists(&w.aws, "alice").await);
}

#[tokio::test]
async fn retain_leaves_the_user() {
    let w = World::start().await;
    create_group(&w, "devs").await;
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.deletion_policy = Some(DeletionPolicy::Retain);
    u.spec.groups = vec![group_name("devs")];
    u.spec.policies = vec![by_arn(READ_ONLY)];
    reconcile(&w, &mut u).await.unwrap();
    user::cleanup(&w.engine, &u, w.secrets.as_ref())
        .await
        .unwrap();
    assert!(read::user_exists(&w.aws, "alice").await);
    assert_eq!(read::user_groups(&w.aws, "alice").await, set(&["devs"]));
    assert_eq!(
        read::user_policies(&w.aws, "alice").await,
        set(&[READ_ONLY])
    );
}

#[tokio::test]
async fn swapping_a_group_at_the_membership_quota_converges() {
    let w = World::start().await;
    // IAM allows a user in 10 groups by default.
    let names: Vec<String> = (0..11).map(|i| format!("g{i:02}")).collect();
    for n in &names {
        create_group(&w, n).await;
    }
    let mut u = user_cr("team-a", "alice", "alice");
    u.spec.groups = names[..10].iter().map(|n| group_name(n)).collect();
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(read::user_groups(&w.aws, "alice").await.len(), 10);

    // Replacing one keeps the user at 10: leave the old group before joining the new one.
    u.spec.groups = names[1..].iter().map(|n| group_name(n)).collect();
    reconcile(&w, &mut u).await.unwrap();
    let want: BTreeSet<String> = names[1..].iter().cloned().collect();
    assert_eq!(read::user_groups(&w.aws, "alice").await, want);

    // Same for managed policies attached directly to the user.
    let mut arns = Vec::new();
    for i in 0..11 {
        arns.push(
            w.create_policy(&format!("p{i}"), allow(json!(format!("s3:Action{i}"))))
                .await,
        );
    }
    u.spec.policies = arns[..10].iter().map(|a| by_arn(a)).collect();
    reconcile(&w, &mut u).await.unwrap();
    u.spec.policies = arns[1..].iter().map(|a| by_arn(a)).collect();
    reconcile(&w, &mut u).await.unwrap();
    let want: BTreeSet<String> = arns[1..].iter().cloned().collect();
    assert_eq!(read::user_policies(&w.aws, "alice").await, want);
}
