//! The credential protocol of an IamUser against the IAM emulator over HTTP, with the
//! Secrets and the status journal in memory: incident response (keys deactivated and login
//! profiles deleted out of band), credentials that act whatever else is blocked, keys
//! duplicated by a retried call, and credentials the operator did not create.

mod support;

use iam_operator::api::{
    AccessKeySpec, ConsoleSpec, IamUser, IamUserSpec, LocalObjectRef, PolicyAttachment,
};
use iam_operator::controller::{Reason, Synced};
use iam_operator::error::Error;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;
use support::{World, meta, read};

fn user_cr(name: &str) -> IamUser {
    let mut u = IamUser::new(
        name,
        IamUserSpec {
            user_name: None,
            path: "/".into(),
            tags: Default::default(),
            permissions_boundary: None,
            groups: Vec::new(),
            policies: Vec::new(),
            inline_policies: Vec::new(),
            access_key: Some(AccessKeySpec {
                enabled: true,
                secret_name: None,
                rotate_after: None,
                grace_period: None,
            }),
            console: None,
            deletion_policy: None,
        },
    );
    u.metadata = meta("team-a", name);
    u.metadata.uid = Some(format!("uid-{name}"));
    u
}

async fn reconcile(w: &World, u: &mut IamUser) -> Result<Synced, Error> {
    support::reconcile_user(w, u).await
}

fn reasons(synced: &Synced) -> Vec<Reason> {
    synced.changes.iter().map(|c| c.reason).collect()
}

fn published(w: &World, u: &IamUser) -> String {
    let name = format!("{}-aws-credentials", u.metadata.name.as_deref().unwrap());
    w.secrets.value(&name, "AWS_ACCESS_KEY_ID").unwrap()
}

async fn deactivate(w: &World, user: &str, id: &str) {
    w.aws
        .update_access_key()
        .user_name(user)
        .access_key_id(id)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
}

fn ids(keys: &std::collections::BTreeMap<String, bool>) -> BTreeSet<String> {
    keys.keys().cloned().collect()
}

#[tokio::test]
async fn a_key_deactivated_out_of_band_is_replaced_and_deleted_never_reactivated() {
    let w = World::start().await;
    let mut u = user_cr("bob");
    reconcile(&w, &mut u).await.unwrap();
    let leaked = published(&w, &u);

    // A responder deactivates the published key.
    deactivate(&w, "bob", &leaked).await;
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert!(
        reasons(&synced).contains(&Reason::AccessKeyRevoked),
        "{synced:?}"
    );
    let fresh = published(&w, &u);
    assert_ne!(fresh, leaked, "a fresh key is published");
    let keys = read::access_keys(&w.aws, "bob").await;
    assert_eq!(ids(&keys), BTreeSet::from([fresh.clone()]), "{keys:?}");
    assert!(keys[&fresh], "the fresh key is Active");
    let st = u.status.as_ref().unwrap().access_key.clone().unwrap();
    let revoked = st.last_revoked.unwrap();
    assert_eq!(revoked.access_key_id, leaked);
    assert_eq!(revoked.replaced_by, fresh);
    // Nothing ever reactivated it.
    let calls = w.emulator.calls().await;
    assert_eq!(
        calls.get("UpdateAccessKey").copied().unwrap_or(0),
        1,
        "only the responder's deactivation: {calls:?}"
    );
    // And the next reconcile is quiet.
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert!(synced.changes.is_empty(), "{synced:?}");
}

#[tokio::test]
async fn a_previous_key_deactivated_during_its_grace_is_deleted_at_once() {
    let w = World::start().await;
    let mut u = user_cr("carla");
    reconcile(&w, &mut u).await.unwrap();
    let old = published(&w, &u);
    u.metadata.annotations = Some(
        [(
            iam_operator::api::ROTATE_KEY_ANNOTATION.to_string(),
            "1".to_string(),
        )]
        .into(),
    );
    reconcile(&w, &mut u).await.unwrap();
    let new = published(&w, &u);
    assert_eq!(
        ids(&read::access_keys(&w.aws, "carla").await),
        BTreeSet::from([old.clone(), new.clone()]),
        "the previous key is in its grace period"
    );
    deactivate(&w, "carla", &old).await;
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(
        ids(&read::access_keys(&w.aws, "carla").await),
        BTreeSet::from([new])
    );
}

#[tokio::test]
async fn a_login_profile_deleted_out_of_band_gets_a_fresh_password_never_the_old_one() {
    let w = World::start().await;
    let mut u = user_cr("dora");
    u.spec.access_key = None;
    u.spec.console = Some(ConsoleSpec {
        enabled: true,
        secret_name: None,
        password_reset_required: Some(false),
        initial_password_secret_ref: None,
    });
    reconcile(&w, &mut u).await.unwrap();
    let old = w.secrets.value("dora-console", "password").unwrap();
    w.aws
        .delete_login_profile()
        .user_name("dora")
        .send()
        .await
        .unwrap();

    let synced = reconcile(&w, &mut u).await.unwrap();
    assert!(
        reasons(&synced).contains(&Reason::ConsolePasswordRevoked),
        "{synced:?}"
    );
    let fresh = w.secrets.value("dora-console", "password").unwrap();
    assert_ne!(fresh, old, "the deleted password is never set again");
    assert!(
        w.aws
            .get_login_profile()
            .user_name("dora")
            .send()
            .await
            .is_ok()
    );
    assert!(
        u.status
            .as_ref()
            .and_then(|s| s.console.as_ref())
            .and_then(|c| c.password_revoked_at.as_ref())
            .is_some()
    );
    // The messages never carry the password.
    for change in &synced.changes {
        assert!(!change.message.contains(&fresh) && !change.message.contains(&old));
    }
}

#[tokio::test]
async fn credentials_are_disabled_and_grace_ends_while_a_dependency_is_not_ready() {
    let w = World::start().await;
    let mut u = user_cr("erin");
    u.spec.console = Some(ConsoleSpec {
        enabled: true,
        secret_name: None,
        password_reset_required: Some(false),
        initial_password_secret_ref: None,
    });
    reconcile(&w, &mut u).await.unwrap();
    let first = published(&w, &u);
    // Rotate, then make the identity step block on an IamPolicy that is not Ready.
    u.metadata.annotations = Some(
        [(
            iam_operator::api::ROTATE_KEY_ANNOTATION.to_string(),
            "1".to_string(),
        )]
        .into(),
    );
    reconcile(&w, &mut u).await.unwrap();
    let second = published(&w, &u);
    u.spec.policies = vec![PolicyAttachment {
        policy_ref: Some(LocalObjectRef {
            name: "not-there".into(),
        }),
        arn: None,
    }];
    // The grace period ends while blocked.
    let mut st = u.status.clone().unwrap();
    let ak = st.access_key.as_mut().unwrap();
    ak.previous_key_expires_at = Some(Time(Timestamp::now() - SignedDuration::from_secs(1)));
    u.status = Some(st);
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "DependencyNotReady", "{err}");
    assert_eq!(
        ids(&read::access_keys(&w.aws, "erin").await),
        BTreeSet::from([second.clone()]),
        "the previous key is deleted when its grace ends, whatever else is blocked"
    );
    assert_ne!(first, second);

    // Disabling both credentials takes effect while still blocked.
    u.spec.access_key.as_mut().unwrap().enabled = false;
    u.spec.console.as_mut().unwrap().enabled = false;
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "DependencyNotReady", "{err}");
    assert!(read::access_keys(&w.aws, "erin").await.is_empty());
    assert!(
        w.aws
            .get_login_profile()
            .user_name("erin")
            .send()
            .await
            .is_err(),
        "console access is removed"
    );
    assert!(
        w.secrets
            .value("erin-aws-credentials", "AWS_ACCESS_KEY_ID")
            .is_none()
    );
    assert!(w.secrets.value("erin-console", "password").is_none());
}

#[tokio::test]
async fn no_first_credential_is_issued_while_the_identity_is_blocked() {
    let w = World::start().await;
    let mut u = user_cr("fay");
    // The user exists (created by an earlier, successful reconcile without credentials).
    u.spec.access_key = None;
    reconcile(&w, &mut u).await.unwrap();
    u.spec.access_key = Some(AccessKeySpec {
        enabled: true,
        secret_name: None,
        rotate_after: None,
        grace_period: None,
    });
    u.spec.policies = vec![PolicyAttachment {
        policy_ref: Some(LocalObjectRef {
            name: "not-there".into(),
        }),
        arn: None,
    }];
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "DependencyNotReady", "{err}");
    assert!(read::access_keys(&w.aws, "fay").await.is_empty());
}

/// A lost response to CreateAccessKey: the key exists in IAM but its secret was never
/// seen. The SDK must not retry (that would make a second key), and the next reconcile
/// deletes the unpublished key before publishing a new one.
#[tokio::test]
async fn a_key_whose_create_response_was_lost_is_deleted_and_never_duplicated() {
    let w = World::start().await;
    reqwest::Client::new()
        .post(format!("{}/_emulator/faults", w.emulator.url))
        .json(&serde_json::json!({"action": "CreateAccessKey", "drop": "close", "count": 1}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut u = user_cr("gus");
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(
        err.severity(),
        iam_operator::error::Severity::Transient,
        "{err}"
    );
    let calls = w.emulator.calls().await;
    assert_eq!(
        calls["CreateAccessKey"], 1,
        "one attempt, no retry: {calls:?}"
    );
    let lost = read::access_keys(&w.aws, "gus").await;
    assert_eq!(lost.len(), 1, "the lost response's key exists: {lost:?}");
    assert!(
        u.status
            .as_ref()
            .unwrap()
            .access_key
            .as_ref()
            .unwrap()
            .creating_since
            .is_some(),
        "the intent stays pending"
    );

    let synced = reconcile(&w, &mut u).await.unwrap();
    assert!(
        reasons(&synced).contains(&Reason::AccessKeysDeleted),
        "{synced:?}"
    );
    let live = published(&w, &u);
    assert_eq!(
        ids(&read::access_keys(&w.aws, "gus").await),
        BTreeSet::from([live.clone()])
    );
    assert!(!lost.contains_key(&live));
}

#[tokio::test]
async fn keys_and_login_profiles_made_outside_the_operator_are_reported_never_touched() {
    let w = World::start().await;
    let mut u = user_cr("hal");
    reconcile(&w, &mut u).await.unwrap();
    let foreign = w
        .aws
        .create_access_key()
        .user_name("hal")
        .send()
        .await
        .unwrap()
        .access_key()
        .unwrap()
        .access_key_id()
        .to_string();
    w.aws
        .create_login_profile()
        .user_name("hal")
        .password("Out-of-band-Passw0rd!")
        .send()
        .await
        .unwrap();

    let synced = reconcile(&w, &mut u).await.unwrap();
    assert!(
        reasons(&synced).contains(&Reason::UnmanagedCredentials),
        "{synced:?}"
    );
    let unmanaged = u
        .status
        .as_ref()
        .unwrap()
        .unmanaged_credentials
        .clone()
        .unwrap();
    assert_eq!(unmanaged.access_key_ids, vec![foreign.clone()]);
    assert!(unmanaged.login_profile);
    assert!(
        read::access_keys(&w.aws, "hal")
            .await
            .contains_key(&foreign)
    );
    // Reported once, not on every reconcile.
    let synced = reconcile(&w, &mut u).await.unwrap();
    assert!(synced.changes.is_empty(), "{synced:?}");

    // Console enabled over a login profile it did not create: refused, password untouched.
    u.spec.console = Some(ConsoleSpec {
        enabled: true,
        secret_name: None,
        password_reset_required: Some(false),
        initial_password_secret_ref: None,
    });
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert_eq!(err.reason(), "NameConflict", "{err}");
    assert!(err.to_string().contains("login profile"), "{err}");
    let calls = w.emulator.calls().await;
    assert!(!calls.contains_key("UpdateLoginProfile"), "{calls:?}");
    assert!(w.secrets.value("hal-console", "password").is_none());
}

#[tokio::test]
async fn an_intent_that_cannot_be_recorded_creates_nothing() {
    let w = World::start().await;
    let mut u = user_cr("ivy");
    w.users_journal
        .fail_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    reconcile(&w, &mut u).await.unwrap_err();
    assert!(
        read::access_keys(&w.aws, "ivy").await.is_empty(),
        "no key without a recorded intent"
    );
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(read::access_keys(&w.aws, "ivy").await.len(), 1);
}

#[tokio::test]
async fn quotas_refuse_a_new_user_or_a_first_key_beyond_the_tenancys_limit() {
    let w = World::start().await;
    w.tenancy(serde_json::json!({"namespaceSelector": {}, "path": "/", "maxUsers": 2, "maxAccessKeys": 1}));
    // Two other IamUsers of the namespace exist, one of them holds a key.
    *w.deps.usage.lock().unwrap() = iam_operator::k8s::Usage {
        users: 2,
        access_keys: 1,
    };
    let mut u = user_cr("quinn");
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(err.to_string().contains("2 IAM users"), "{err}");
    assert!(!read::user_exists(&w.aws, "quinn").await);

    // Room for the user, but not for its key: the user is created, no key is issued.
    *w.deps.usage.lock().unwrap() = iam_operator::k8s::Usage {
        users: 1,
        access_keys: 1,
    };
    let err = reconcile(&w, &mut u).await.unwrap_err();
    assert!(err.to_string().contains("1 access keys"), "{err}");
    assert!(read::user_exists(&w.aws, "quinn").await);
    assert!(read::access_keys(&w.aws, "quinn").await.is_empty());

    // Once there is room, the key comes.
    *w.deps.usage.lock().unwrap() = iam_operator::k8s::Usage {
        users: 1,
        access_keys: 0,
    };
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(read::access_keys(&w.aws, "quinn").await.len(), 1);
}

/// A tenancy policy naming a role: the namespace's objects are managed as that role (STS
/// AssumeRole with the external id), not with the operator's own credentials.
#[tokio::test]
async fn a_tenants_objects_are_managed_as_the_role_its_tenancy_names() {
    let w = World::start().await;
    w.tenancy(serde_json::json!({
        "namespaceSelector": {},
        "path": "/",
        "roleArn": "arn:aws:iam::123456789012:role/tenant-a",
        "externalId": "tenant-a-external-id"
    }));
    let mut u = user_cr("rhea");
    reconcile(&w, &mut u).await.unwrap();
    assert_eq!(read::access_keys(&w.aws, "rhea").await.len(), 1);

    let by_key = w.emulator.calls_by_access_key().await;
    let sts = reqwest::get(format!(
        "{}/_emulator/calls?by=access-key&service=sts",
        w.emulator.url
    ))
    .await
    .unwrap()
    .json::<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>>()
    .await
    .unwrap();
    assert_eq!(
        sts.get("testing").and_then(|c| c.get("AssumeRole")),
        Some(&1),
        "the operator's own key assumed the role once: {sts:?}"
    );
    let own = by_key.get("testing").cloned().unwrap_or_default();
    assert!(
        !own.contains_key("CreateUser") && !own.contains_key("CreateAccessKey"),
        "the operator's own key wrote to IAM: {own:?}"
    );
    let assumed: Vec<_> = by_key
        .iter()
        .filter(|(key, calls)| *key != "testing" && calls.contains_key("CreateUser"))
        .collect();
    assert_eq!(
        assumed.len(),
        1,
        "one session key created the user: {by_key:?}"
    );
    // A second reconcile reuses the cached session.
    reconcile(&w, &mut u).await.unwrap();
    let sts: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
        reqwest::get(format!(
            "{}/_emulator/calls?by=access-key&service=sts",
            w.emulator.url
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sts.get("testing").and_then(|c| c.get("AssumeRole")),
        Some(&1),
        "{sts:?}"
    );
}
