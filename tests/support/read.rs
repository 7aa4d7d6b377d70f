//! Reading IAM back with a raw SDK client: what tests assert the operator did.

use super::code;
use std::collections::{BTreeMap, BTreeSet};

type Iam = aws_sdk_iam::Client;

/// `false` for NoSuchEntity; any other failure fails the test.
fn exists<T, E>(result: Result<T, aws_sdk_iam::error::SdkError<E>>, what: &str) -> bool
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::fmt::Debug,
{
    match result {
        Ok(_) => true,
        Err(e) if code(&e).as_deref() == Some("NoSuchEntity") => false,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

pub async fn user_exists(iam: &Iam, name: &str) -> bool {
    exists(iam.get_user().user_name(name).send().await, "GetUser")
}

pub async fn group_exists(iam: &Iam, name: &str) -> bool {
    exists(iam.get_group().group_name(name).send().await, "GetGroup")
}

pub async fn policy_exists(iam: &Iam, arn: &str) -> bool {
    exists(iam.get_policy().policy_arn(arn).send().await, "GetPolicy")
}

pub async fn policy_tags(iam: &Iam, arn: &str) -> BTreeMap<String, String> {
    let out = iam.list_policy_tags().policy_arn(arn).send().await.unwrap();
    out.tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// A user's tags, as ListUserTags reports them.
pub async fn user_tags(iam: &Iam, user: &str) -> BTreeMap<String, String> {
    let out = iam.list_user_tags().user_name(user).send().await.unwrap();
    out.tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// ARNs of the managed policies attached to a group.
pub async fn group_policies(iam: &Iam, group: &str) -> BTreeSet<String> {
    let out = iam
        .list_attached_group_policies()
        .group_name(group)
        .send()
        .await
        .unwrap();
    out.attached_policies()
        .iter()
        .map(|p| p.policy_arn().unwrap().to_string())
        .collect()
}

/// ARNs of the managed policies attached to a user.
pub async fn user_policies(iam: &Iam, user: &str) -> BTreeSet<String> {
    let out = iam
        .list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap();
    out.attached_policies()
        .iter()
        .map(|p| p.policy_arn().unwrap().to_string())
        .collect()
}

/// Names of a group's inline policies.
pub async fn group_inline(iam: &Iam, group: &str) -> BTreeSet<String> {
    let out = iam.list_group_policies().group_name(group).send().await;
    out.unwrap().policy_names().iter().cloned().collect()
}

/// Names of a user's inline policies.
pub async fn user_inline(iam: &Iam, user: &str) -> BTreeSet<String> {
    let out = iam.list_user_policies().user_name(user).send().await;
    out.unwrap().policy_names().iter().cloned().collect()
}

/// An inline policy document of a group, parsed.
pub async fn group_inline_doc(iam: &Iam, group: &str, name: &str) -> serde_json::Value {
    let out = iam
        .get_group_policy()
        .group_name(group)
        .policy_name(name)
        .send()
        .await
        .unwrap();
    serde_json::from_str(&urlencoding::decode(out.policy_document()).unwrap()).unwrap()
}

/// An inline policy document of a user, parsed.
pub async fn user_inline_doc(iam: &Iam, user: &str, name: &str) -> serde_json::Value {
    let out = iam
        .get_user_policy()
        .user_name(user)
        .policy_name(name)
        .send()
        .await
        .unwrap();
    serde_json::from_str(&urlencoding::decode(out.policy_document()).unwrap()).unwrap()
}

/// The groups a user is in.
pub async fn user_groups(iam: &Iam, user: &str) -> BTreeSet<String> {
    let out = iam.list_groups_for_user().user_name(user).send().await;
    out.unwrap()
        .groups()
        .iter()
        .map(|g| g.group_name().to_string())
        .collect()
}

/// The members of a group.
pub async fn group_members(iam: &Iam, group: &str) -> BTreeSet<String> {
    let out = iam.get_group().group_name(group).send().await.unwrap();
    out.users()
        .iter()
        .map(|u| u.user_name().to_string())
        .collect()
}

/// A user's permissions boundary ARN, as GetUser reports it.
pub async fn user_boundary(iam: &Iam, user: &str) -> Option<String> {
    let out = iam.get_user().user_name(user).send().await.unwrap();
    out.user()
        .unwrap()
        .permissions_boundary()
        .and_then(|b| b.permissions_boundary_arn())
        .map(str::to_string)
}

/// A user's access keys: id → Active?
pub async fn access_keys(iam: &Iam, user: &str) -> BTreeMap<String, bool> {
    let out = iam.list_access_keys().user_name(user).send().await.unwrap();
    out.access_key_metadata()
        .iter()
        .map(|k| {
            (
                k.access_key_id().unwrap().to_string(),
                k.status().map(|s| s.as_str()) == Some("Active"),
            )
        })
        .collect()
}
