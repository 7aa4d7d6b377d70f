//! The write fence of leader election: an [`Iam`] that forwards reads and lets a write
//! through only while this replica holds the leader lease ([`LeaseGuard`]).
//!
//! The guard is checked before the write starts and again every time the call is polled,
//! so a write that has not gone out yet when the lease lapses (the process was stopped, or
//! the SDK is waiting to retry) is dropped instead of sent.

use super::{
    AccessKeyInfo, AccountPasswordPolicySpec, AccountSnapshot, GroupInfo, Iam, IamError, IamResult,
    InstanceProfileInfo, KeyStatus, MfaDevice, NewAccessKey, NewRole, PasswordPolicy,
    PolicyEntities, PolicyInfo, PolicyVersion, Principal, RoleInfo, SessionCredentials, UserInfo,
};
use crate::leader::LeaseGuard;
use async_trait::async_trait;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

/// Wraps another [`Iam`]; see the module documentation.
pub struct FencedIam {
    inner: Arc<dyn Iam>,
    guard: LeaseGuard,
}

impl FencedIam {
    pub fn new(inner: Arc<dyn Iam>, guard: LeaseGuard) -> Self {
        Self { inner, guard }
    }

    /// Runs the write `call` (named by its IAM action) only while the guard holds.
    async fn write<T>(
        &self,
        action: &'static str,
        call: impl Future<Output = IamResult<T>>,
    ) -> IamResult<T> {
        let mut call = std::pin::pin!(call);
        let mut started = false;
        std::future::poll_fn(|cx| {
            if !self.guard.holds() {
                let error = lease_lost(action, started);
                tracing::warn!(action, error = %error, "IAM write refused");
                return Poll::Ready(Err(error));
            }
            started = true;
            call.as_mut().poll(cx)
        })
        .await
    }
}

fn lease_lost(action: &str, started: bool) -> IamError {
    IamError::Transient(if started {
        format!(
            "{action} abandoned: this replica lost the leader lease while the call was under way (it may have taken effect)"
        )
    } else {
        format!("{action} refused: this replica lost the leader lease")
    })
}

#[async_trait]
impl Iam for FencedIam {
    async fn account(&self) -> IamResult<(String, String)> {
        self.inner.account().await
    }
    async fn account_alias(&self) -> IamResult<Option<String>> {
        self.inner.account_alias().await
    }
    async fn password_policy(&self) -> IamResult<Option<PasswordPolicy>> {
        self.inner.password_policy().await
    }
    async fn account_snapshot(&self) -> IamResult<AccountSnapshot> {
        self.inner.account_snapshot().await
    }

    async fn account_password_policy(&self) -> IamResult<Option<AccountPasswordPolicySpec>> {
        self.inner.account_password_policy().await
    }
    async fn update_account_password_policy(
        &self,
        policy: &AccountPasswordPolicySpec,
    ) -> IamResult<()> {
        self.write(
            "UpdateAccountPasswordPolicy",
            self.inner.update_account_password_policy(policy),
        )
        .await
    }
    async fn delete_account_password_policy(&self) -> IamResult<()> {
        self.write(
            "DeleteAccountPasswordPolicy",
            self.inner.delete_account_password_policy(),
        )
        .await
    }
    async fn create_account_alias(&self, alias: &str) -> IamResult<()> {
        self.write("CreateAccountAlias", self.inner.create_account_alias(alias))
            .await
    }
    async fn delete_account_alias(&self, alias: &str) -> IamResult<()> {
        self.write("DeleteAccountAlias", self.inner.delete_account_alias(alias))
            .await
    }
    async fn account_summary(&self) -> IamResult<BTreeMap<String, i32>> {
        self.inner.account_summary().await
    }

    async fn get_policy(&self, arn: &str) -> IamResult<PolicyInfo> {
        self.inner.get_policy(arn).await
    }
    async fn create_policy(
        &self,
        name: &str,
        path: &str,
        description: Option<&str>,
        document: &str,
        tags: &BTreeMap<String, String>,
    ) -> IamResult<PolicyInfo> {
        self.write(
            "CreatePolicy",
            self.inner
                .create_policy(name, path, description, document, tags),
        )
        .await
    }
    async fn list_policy_versions(&self, arn: &str) -> IamResult<Vec<PolicyVersion>> {
        self.inner.list_policy_versions(arn).await
    }
    async fn get_policy_version(&self, arn: &str, version_id: &str) -> IamResult<String> {
        self.inner.get_policy_version(arn, version_id).await
    }
    async fn create_policy_version(&self, arn: &str, document: &str) -> IamResult<String> {
        self.write(
            "CreatePolicyVersion",
            self.inner.create_policy_version(arn, document),
        )
        .await
    }
    async fn delete_policy_version(&self, arn: &str, version_id: &str) -> IamResult<()> {
        self.write(
            "DeletePolicyVersion",
            self.inner.delete_policy_version(arn, version_id),
        )
        .await
    }
    async fn tag_policy(&self, arn: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        self.write("TagPolicy", self.inner.tag_policy(arn, tags))
            .await
    }
    async fn untag_policy(&self, arn: &str, keys: &[String]) -> IamResult<()> {
        self.write("UntagPolicy", self.inner.untag_policy(arn, keys))
            .await
    }
    async fn list_entities_for_policy(&self, arn: &str) -> IamResult<PolicyEntities> {
        self.inner.list_entities_for_policy(arn).await
    }
    async fn detach_role_policy(&self, role: &str, arn: &str) -> IamResult<()> {
        self.write("DetachRolePolicy", self.inner.detach_role_policy(role, arn))
            .await
    }
    async fn delete_policy(&self, arn: &str) -> IamResult<()> {
        self.write("DeletePolicy", self.inner.delete_policy(arn))
            .await
    }

    async fn list_attached_policies(&self, principal: Principal<'_>) -> IamResult<Vec<String>> {
        self.inner.list_attached_policies(principal).await
    }
    async fn attach_policy(&self, principal: Principal<'_>, arn: &str) -> IamResult<()> {
        self.write("AttachPolicy", self.inner.attach_policy(principal, arn))
            .await
    }
    async fn detach_policy(&self, principal: Principal<'_>, arn: &str) -> IamResult<()> {
        self.write("DetachPolicy", self.inner.detach_policy(principal, arn))
            .await
    }
    async fn list_inline_policies(&self, principal: Principal<'_>) -> IamResult<Vec<String>> {
        self.inner.list_inline_policies(principal).await
    }
    async fn get_inline_policy(&self, principal: Principal<'_>, name: &str) -> IamResult<String> {
        self.inner.get_inline_policy(principal, name).await
    }
    async fn put_inline_policy(
        &self,
        principal: Principal<'_>,
        name: &str,
        document: &str,
    ) -> IamResult<()> {
        self.write(
            "PutInlinePolicy",
            self.inner.put_inline_policy(principal, name, document),
        )
        .await
    }
    async fn delete_inline_policy(&self, principal: Principal<'_>, name: &str) -> IamResult<()> {
        self.write(
            "DeleteInlinePolicy",
            self.inner.delete_inline_policy(principal, name),
        )
        .await
    }

    async fn get_group(&self, name: &str) -> IamResult<GroupInfo> {
        self.inner.get_group(name).await
    }
    async fn create_group(&self, name: &str, path: &str) -> IamResult<GroupInfo> {
        self.write("CreateGroup", self.inner.create_group(name, path))
            .await
    }
    async fn delete_group(&self, name: &str) -> IamResult<()> {
        self.write("DeleteGroup", self.inner.delete_group(name))
            .await
    }

    async fn get_user(&self, name: &str) -> IamResult<UserInfo> {
        self.inner.get_user(name).await
    }
    async fn create_user(
        &self,
        name: &str,
        path: &str,
        tags: &BTreeMap<String, String>,
        permissions_boundary: Option<&str>,
    ) -> IamResult<UserInfo> {
        self.write(
            "CreateUser",
            self.inner
                .create_user(name, path, tags, permissions_boundary),
        )
        .await
    }
    async fn delete_user(&self, name: &str) -> IamResult<()> {
        self.write("DeleteUser", self.inner.delete_user(name)).await
    }
    async fn tag_user(&self, name: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        self.write("TagUser", self.inner.tag_user(name, tags)).await
    }
    async fn untag_user(&self, name: &str, keys: &[String]) -> IamResult<()> {
        self.write("UntagUser", self.inner.untag_user(name, keys))
            .await
    }
    async fn put_permissions_boundary(&self, user: &str, arn: &str) -> IamResult<()> {
        self.write(
            "PutUserPermissionsBoundary",
            self.inner.put_permissions_boundary(user, arn),
        )
        .await
    }
    async fn delete_permissions_boundary(&self, user: &str) -> IamResult<()> {
        self.write(
            "DeleteUserPermissionsBoundary",
            self.inner.delete_permissions_boundary(user),
        )
        .await
    }
    async fn list_groups_for_user(&self, user: &str) -> IamResult<Vec<String>> {
        self.inner.list_groups_for_user(user).await
    }
    async fn add_user_to_group(&self, user: &str, group: &str) -> IamResult<()> {
        self.write("AddUserToGroup", self.inner.add_user_to_group(user, group))
            .await
    }
    async fn remove_user_from_group(&self, user: &str, group: &str) -> IamResult<()> {
        self.write(
            "RemoveUserFromGroup",
            self.inner.remove_user_from_group(user, group),
        )
        .await
    }

    async fn list_access_keys(&self, user: &str) -> IamResult<Vec<AccessKeyInfo>> {
        self.inner.list_access_keys(user).await
    }
    async fn create_access_key(&self, user: &str) -> IamResult<NewAccessKey> {
        self.write("CreateAccessKey", self.inner.create_access_key(user))
            .await
    }
    async fn update_access_key(&self, user: &str, id: &str, status: KeyStatus) -> IamResult<()> {
        self.write(
            "UpdateAccessKey",
            self.inner.update_access_key(user, id, status),
        )
        .await
    }
    async fn delete_access_key(&self, user: &str, id: &str) -> IamResult<()> {
        self.write("DeleteAccessKey", self.inner.delete_access_key(user, id))
            .await
    }
    async fn has_login_profile(&self, user: &str) -> IamResult<bool> {
        self.inner.has_login_profile(user).await
    }
    async fn list_mfa_devices(&self, user: &str) -> IamResult<Vec<MfaDevice>> {
        self.inner.list_mfa_devices(user).await
    }
    async fn create_login_profile(
        &self,
        user: &str,
        password: &SecretString,
        reset_required: bool,
    ) -> IamResult<()> {
        self.write(
            "CreateLoginProfile",
            self.inner
                .create_login_profile(user, password, reset_required),
        )
        .await
    }
    async fn update_login_profile(
        &self,
        user: &str,
        password: &SecretString,
        reset_required: bool,
    ) -> IamResult<()> {
        self.write(
            "UpdateLoginProfile",
            self.inner
                .update_login_profile(user, password, reset_required),
        )
        .await
    }
    async fn delete_login_profile(&self, user: &str) -> IamResult<()> {
        self.write("DeleteLoginProfile", self.inner.delete_login_profile(user))
            .await
    }

    async fn delete_other_credentials(&self, user: &str) -> IamResult<()> {
        self.write(
            "DeleteOtherCredentials",
            self.inner.delete_other_credentials(user),
        )
        .await
    }

    // Roles.
    async fn caller_arn(&self) -> IamResult<String> {
        self.inner.caller_arn().await
    }
    async fn get_role(&self, name: &str) -> IamResult<RoleInfo> {
        self.inner.get_role(name).await
    }
    async fn create_role(&self, role: &NewRole<'_>) -> IamResult<RoleInfo> {
        self.write("CreateRole", self.inner.create_role(role)).await
    }
    async fn update_role(
        &self,
        name: &str,
        description: &str,
        max_session_duration: i32,
    ) -> IamResult<()> {
        self.write(
            "UpdateRole",
            self.inner
                .update_role(name, description, max_session_duration),
        )
        .await
    }
    async fn update_assume_role_policy(&self, name: &str, document: &str) -> IamResult<()> {
        self.write(
            "UpdateAssumeRolePolicy",
            self.inner.update_assume_role_policy(name, document),
        )
        .await
    }
    async fn tag_role(&self, name: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        self.write("TagRole", self.inner.tag_role(name, tags)).await
    }
    async fn untag_role(&self, name: &str, keys: &[String]) -> IamResult<()> {
        self.write("UntagRole", self.inner.untag_role(name, keys))
            .await
    }
    async fn put_role_permissions_boundary(&self, role: &str, arn: &str) -> IamResult<()> {
        self.write(
            "PutRolePermissionsBoundary",
            self.inner.put_role_permissions_boundary(role, arn),
        )
        .await
    }
    async fn delete_role_permissions_boundary(&self, role: &str) -> IamResult<()> {
        self.write(
            "DeleteRolePermissionsBoundary",
            self.inner.delete_role_permissions_boundary(role),
        )
        .await
    }
    async fn delete_role(&self, name: &str) -> IamResult<()> {
        self.write("DeleteRole", self.inner.delete_role(name)).await
    }
    async fn get_instance_profile(&self, name: &str) -> IamResult<InstanceProfileInfo> {
        self.inner.get_instance_profile(name).await
    }
    async fn create_instance_profile(
        &self,
        name: &str,
        path: &str,
    ) -> IamResult<InstanceProfileInfo> {
        self.write(
            "CreateInstanceProfile",
            self.inner.create_instance_profile(name, path),
        )
        .await
    }
    async fn delete_instance_profile(&self, name: &str) -> IamResult<()> {
        self.write(
            "DeleteInstanceProfile",
            self.inner.delete_instance_profile(name),
        )
        .await
    }
    async fn add_role_to_instance_profile(&self, profile: &str, role: &str) -> IamResult<()> {
        self.write(
            "AddRoleToInstanceProfile",
            self.inner.add_role_to_instance_profile(profile, role),
        )
        .await
    }
    async fn remove_role_from_instance_profile(&self, profile: &str, role: &str) -> IamResult<()> {
        self.write(
            "RemoveRoleFromInstanceProfile",
            self.inner.remove_role_from_instance_profile(profile, role),
        )
        .await
    }
    async fn list_instance_profiles_for_role(
        &self,
        role: &str,
    ) -> IamResult<Vec<InstanceProfileInfo>> {
        self.inner.list_instance_profiles_for_role(role).await
    }

    // STS: a session is credentials issued, so it waits for the lease like a write.
    async fn assume_role_session(
        &self,
        role_arn: &str,
        session_name: &str,
        duration: std::time::Duration,
    ) -> IamResult<SessionCredentials> {
        self.write(
            "AssumeRole",
            self.inner
                .assume_role_session(role_arn, session_name, duration),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    /// Records the calls that reach it; every call succeeds with an empty answer where one
    /// can be made up, and is `NotFound` otherwise.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<&'static str>>,
    }

    impl Recorder {
        fn note(&self, call: &'static str) {
            self.calls.lock().unwrap().push(call);
        }
        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn missing<T>(what: &str) -> IamResult<T> {
        Err(IamError::NotFound(what.into()))
    }

    #[async_trait]
    impl Iam for Recorder {
        async fn account(&self) -> IamResult<(String, String)> {
            self.note("account");
            Ok(("123456789012".into(), "aws".into()))
        }
        async fn account_alias(&self) -> IamResult<Option<String>> {
            self.note("account_alias");
            Ok(None)
        }
        async fn password_policy(&self) -> IamResult<Option<PasswordPolicy>> {
            self.note("password_policy");
            Ok(None)
        }
        async fn account_snapshot(&self) -> IamResult<AccountSnapshot> {
            self.note("account_snapshot");
            Ok(AccountSnapshot::default())
        }
        async fn account_password_policy(&self) -> IamResult<Option<AccountPasswordPolicySpec>> {
            self.note("account_password_policy");
            Ok(None)
        }
        async fn update_account_password_policy(
            &self,
            _: &AccountPasswordPolicySpec,
        ) -> IamResult<()> {
            self.note("update_account_password_policy");
            Ok(())
        }
        async fn delete_account_password_policy(&self) -> IamResult<()> {
            self.note("delete_account_password_policy");
            Ok(())
        }
        async fn create_account_alias(&self, _: &str) -> IamResult<()> {
            self.note("create_account_alias");
            Ok(())
        }
        async fn delete_account_alias(&self, _: &str) -> IamResult<()> {
            self.note("delete_account_alias");
            Ok(())
        }
        async fn account_summary(&self) -> IamResult<BTreeMap<String, i32>> {
            self.note("account_summary");
            Ok(BTreeMap::new())
        }
        async fn get_policy(&self, _: &str) -> IamResult<PolicyInfo> {
            self.note("get_policy");
            missing("policy")
        }
        async fn create_policy(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: &str,
            _: &BTreeMap<String, String>,
        ) -> IamResult<PolicyInfo> {
            self.note("create_policy");
            missing("policy")
        }
        async fn list_policy_versions(&self, _: &str) -> IamResult<Vec<PolicyVersion>> {
            self.note("list_policy_versions");
            Ok(vec![])
        }
        async fn get_policy_version(&self, _: &str, _: &str) -> IamResult<String> {
            self.note("get_policy_version");
            Ok("{}".into())
        }
        async fn create_policy_version(&self, _: &str, _: &str) -> IamResult<String> {
            self.note("create_policy_version");
            Ok("v2".into())
        }
        async fn delete_policy_version(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("delete_policy_version");
            Ok(())
        }
        async fn tag_policy(&self, _: &str, _: &BTreeMap<String, String>) -> IamResult<()> {
            self.note("tag_policy");
            Ok(())
        }
        async fn untag_policy(&self, _: &str, _: &[String]) -> IamResult<()> {
            self.note("untag_policy");
            Ok(())
        }
        async fn list_entities_for_policy(&self, _: &str) -> IamResult<PolicyEntities> {
            self.note("list_entities_for_policy");
            Ok(PolicyEntities::default())
        }
        async fn detach_role_policy(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("detach_role_policy");
            Ok(())
        }
        async fn delete_policy(&self, _: &str) -> IamResult<()> {
            self.note("delete_policy");
            Ok(())
        }
        async fn list_attached_policies(&self, _: Principal<'_>) -> IamResult<Vec<String>> {
            self.note("list_attached_policies");
            Ok(vec![])
        }
        async fn attach_policy(&self, _: Principal<'_>, _: &str) -> IamResult<()> {
            self.note("attach_policy");
            Ok(())
        }
        async fn detach_policy(&self, _: Principal<'_>, _: &str) -> IamResult<()> {
            self.note("detach_policy");
            Ok(())
        }
        async fn list_inline_policies(&self, _: Principal<'_>) -> IamResult<Vec<String>> {
            self.note("list_inline_policies");
            Ok(vec![])
        }
        async fn get_inline_policy(&self, _: Principal<'_>, _: &str) -> IamResult<String> {
            self.note("get_inline_policy");
            Ok("{}".into())
        }
        async fn put_inline_policy(&self, _: Principal<'_>, _: &str, _: &str) -> IamResult<()> {
            self.note("put_inline_policy");
            Ok(())
        }
        async fn delete_inline_policy(&self, _: Principal<'_>, _: &str) -> IamResult<()> {
            self.note("delete_inline_policy");
            Ok(())
        }
        async fn get_group(&self, _: &str) -> IamResult<GroupInfo> {
            self.note("get_group");
            missing("group")
        }
        async fn create_group(&self, _: &str, _: &str) -> IamResult<GroupInfo> {
            self.note("create_group");
            missing("group")
        }
        async fn delete_group(&self, _: &str) -> IamResult<()> {
            self.note("delete_group");
            Ok(())
        }
        async fn get_user(&self, _: &str) -> IamResult<UserInfo> {
            self.note("get_user");
            missing("user")
        }
        async fn create_user(
            &self,
            _: &str,
            _: &str,
            _: &BTreeMap<String, String>,
            _: Option<&str>,
        ) -> IamResult<UserInfo> {
            self.note("create_user");
            missing("user")
        }
        async fn delete_user(&self, _: &str) -> IamResult<()> {
            self.note("delete_user");
            Ok(())
        }
        async fn tag_user(&self, _: &str, _: &BTreeMap<String, String>) -> IamResult<()> {
            self.note("tag_user");
            Ok(())
        }
        async fn untag_user(&self, _: &str, _: &[String]) -> IamResult<()> {
            self.note("untag_user");
            Ok(())
        }
        async fn put_permissions_boundary(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("put_permissions_boundary");
            Ok(())
        }
        async fn delete_permissions_boundary(&self, _: &str) -> IamResult<()> {
            self.note("delete_permissions_boundary");
            Ok(())
        }
        async fn list_groups_for_user(&self, _: &str) -> IamResult<Vec<String>> {
            self.note("list_groups_for_user");
            Ok(vec![])
        }
        async fn add_user_to_group(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("add_user_to_group");
            Ok(())
        }
        async fn remove_user_from_group(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("remove_user_from_group");
            Ok(())
        }
        async fn list_access_keys(&self, _: &str) -> IamResult<Vec<AccessKeyInfo>> {
            self.note("list_access_keys");
            Ok(vec![])
        }
        async fn create_access_key(&self, _: &str) -> IamResult<NewAccessKey> {
            self.note("create_access_key");
            missing("user")
        }
        async fn update_access_key(&self, _: &str, _: &str, _: KeyStatus) -> IamResult<()> {
            self.note("update_access_key");
            Ok(())
        }
        async fn delete_access_key(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("delete_access_key");
            Ok(())
        }
        async fn has_login_profile(&self, _: &str) -> IamResult<bool> {
            self.note("has_login_profile");
            Ok(false)
        }
        async fn list_mfa_devices(&self, _: &str) -> IamResult<Vec<MfaDevice>> {
            self.note("list_mfa_devices");
            Ok(Vec::new())
        }
        async fn create_login_profile(&self, _: &str, _: &SecretString, _: bool) -> IamResult<()> {
            self.note("create_login_profile");
            Ok(())
        }
        async fn update_login_profile(&self, _: &str, _: &SecretString, _: bool) -> IamResult<()> {
            self.note("update_login_profile");
            Ok(())
        }
        async fn delete_login_profile(&self, _: &str) -> IamResult<()> {
            self.note("delete_login_profile");
            Ok(())
        }
        async fn delete_other_credentials(&self, _: &str) -> IamResult<()> {
            self.note("delete_other_credentials");
            Ok(())
        }
        async fn caller_arn(&self) -> IamResult<String> {
            self.note("caller_arn");
            Ok("arn:aws:iam::123456789012:user/operator".into())
        }
        async fn get_role(&self, _: &str) -> IamResult<RoleInfo> {
            self.note("get_role");
            missing("role")
        }
        async fn create_role(&self, _: &NewRole<'_>) -> IamResult<RoleInfo> {
            self.note("create_role");
            missing("role")
        }
        async fn update_role(&self, _: &str, _: &str, _: i32) -> IamResult<()> {
            self.note("update_role");
            Ok(())
        }
        async fn update_assume_role_policy(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("update_assume_role_policy");
            Ok(())
        }
        async fn tag_role(&self, _: &str, _: &BTreeMap<String, String>) -> IamResult<()> {
            self.note("tag_role");
            Ok(())
        }
        async fn untag_role(&self, _: &str, _: &[String]) -> IamResult<()> {
            self.note("untag_role");
            Ok(())
        }
        async fn put_role_permissions_boundary(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("put_role_permissions_boundary");
            Ok(())
        }
        async fn delete_role_permissions_boundary(&self, _: &str) -> IamResult<()> {
            self.note("delete_role_permissions_boundary");
            Ok(())
        }
        async fn delete_role(&self, _: &str) -> IamResult<()> {
            self.note("delete_role");
            Ok(())
        }
        async fn get_instance_profile(&self, _: &str) -> IamResult<InstanceProfileInfo> {
            self.note("get_instance_profile");
            missing("instance profile")
        }
        async fn create_instance_profile(
            &self,
            _: &str,
            _: &str,
        ) -> IamResult<InstanceProfileInfo> {
            self.note("create_instance_profile");
            missing("instance profile")
        }
        async fn delete_instance_profile(&self, _: &str) -> IamResult<()> {
            self.note("delete_instance_profile");
            Ok(())
        }
        async fn add_role_to_instance_profile(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("add_role_to_instance_profile");
            Ok(())
        }
        async fn remove_role_from_instance_profile(&self, _: &str, _: &str) -> IamResult<()> {
            self.note("remove_role_from_instance_profile");
            Ok(())
        }
        async fn list_instance_profiles_for_role(
            &self,
            _: &str,
        ) -> IamResult<Vec<InstanceProfileInfo>> {
            self.note("list_instance_profiles_for_role");
            Ok(vec![])
        }
        async fn assume_role_session(
            &self,
            _: &str,
            _: &str,
            _: Duration,
        ) -> IamResult<SessionCredentials> {
            self.note("assume_role_session");
            missing("role")
        }
    }

    const READS: [&str; 23] = [
        "account",
        "account_alias",
        "password_policy",
        "account_snapshot",
        "account_password_policy",
        "account_summary",
        "get_policy",
        "list_policy_versions",
        "get_policy_version",
        "list_entities_for_policy",
        "list_attached_policies",
        "list_inline_policies",
        "get_inline_policy",
        "get_group",
        "get_user",
        "list_groups_for_user",
        "list_access_keys",
        "has_login_profile",
        "list_mfa_devices",
        "caller_arn",
        "get_role",
        "get_instance_profile",
        "list_instance_profiles_for_role",
    ];

    /// Calls every method of the port once, reads first; returns the outcome of each
    /// write by name.
    async fn call_everything(iam: &dyn Iam) -> Vec<(&'static str, IamResult<()>)> {
        let tags = BTreeMap::new();
        let password = SecretString::from("not-a-real-password");
        let user = Principal::User("u");
        let _ = iam.account().await;
        let _ = iam.account_alias().await;
        let _ = iam.password_policy().await;
        let _ = iam.account_snapshot().await;
        let _ = iam.account_password_policy().await;
        let _ = iam.account_summary().await;
        let _ = iam.get_policy("arn").await;
        let _ = iam.list_policy_versions("arn").await;
        let _ = iam.get_policy_version("arn", "v1").await;
        let _ = iam.list_entities_for_policy("arn").await;
        let _ = iam.list_attached_policies(user).await;
        let _ = iam.list_inline_policies(user).await;
        let _ = iam.get_inline_policy(user, "p").await;
        let _ = iam.get_group("g").await;
        let _ = iam.get_user("u").await;
        let _ = iam.list_groups_for_user("u").await;
        let _ = iam.list_access_keys("u").await;
        let _ = iam.has_login_profile("u").await;
        let _ = iam.list_mfa_devices("u").await;
        let _ = iam.caller_arn().await;
        let _ = iam.get_role("r").await;
        let _ = iam.get_instance_profile("r").await;
        let _ = iam.list_instance_profiles_for_role("r").await;
        let role = NewRole {
            name: "r",
            path: "/",
            trust_policy: "{}",
            description: None,
            max_session_duration: None,
            tags: &tags,
            permissions_boundary: None,
        };
        fn unit<T>(r: IamResult<T>) -> IamResult<()> {
            r.map(|_| ())
        }
        vec![
            (
                "create_policy",
                unit(iam.create_policy("p", "/", None, "{}", &tags).await),
            ),
            (
                "create_policy_version",
                unit(iam.create_policy_version("arn", "{}").await),
            ),
            (
                "delete_policy_version",
                iam.delete_policy_version("arn", "v1").await,
            ),
            ("tag_policy", iam.tag_policy("arn", &tags).await),
            ("untag_policy", iam.untag_policy("arn", &[]).await),
            (
                "detach_role_policy",
                iam.detach_role_policy("r", "arn").await,
            ),
            ("delete_policy", iam.delete_policy("arn").await),
            ("attach_policy", iam.attach_policy(user, "arn").await),
            ("detach_policy", iam.detach_policy(user, "arn").await),
            (
                "put_inline_policy",
                iam.put_inline_policy(user, "p", "{}").await,
            ),
            (
                "delete_inline_policy",
                iam.delete_inline_policy(user, "p").await,
            ),
            ("create_group", unit(iam.create_group("g", "/").await)),
            ("delete_group", iam.delete_group("g").await),
            (
                "create_user",
                unit(iam.create_user("u", "/", &tags, None).await),
            ),
            ("delete_user", iam.delete_user("u").await),
            ("tag_user", iam.tag_user("u", &tags).await),
            ("untag_user", iam.untag_user("u", &[]).await),
            (
                "put_permissions_boundary",
                iam.put_permissions_boundary("u", "arn").await,
            ),
            (
                "delete_permissions_boundary",
                iam.delete_permissions_boundary("u").await,
            ),
            ("add_user_to_group", iam.add_user_to_group("u", "g").await),
            (
                "remove_user_from_group",
                iam.remove_user_from_group("u", "g").await,
            ),
            ("create_access_key", unit(iam.create_access_key("u").await)),
            (
                "update_access_key",
                iam.update_access_key("u", "AKID", KeyStatus::Inactive)
                    .await,
            ),
            (
                "delete_access_key",
                iam.delete_access_key("u", "AKID").await,
            ),
            (
                "create_login_profile",
                iam.create_login_profile("u", &password, false).await,
            ),
            (
                "update_login_profile",
                iam.update_login_profile("u", &password, false).await,
            ),
            ("delete_login_profile", iam.delete_login_profile("u").await),
            (
                "delete_other_credentials",
                iam.delete_other_credentials("u").await,
            ),
            ("create_role", unit(iam.create_role(&role).await)),
            ("update_role", iam.update_role("r", "", 3600).await),
            (
                "update_assume_role_policy",
                iam.update_assume_role_policy("r", "{}").await,
            ),
            ("tag_role", iam.tag_role("r", &tags).await),
            ("untag_role", iam.untag_role("r", &[]).await),
            (
                "put_role_permissions_boundary",
                iam.put_role_permissions_boundary("r", "arn").await,
            ),
            (
                "delete_role_permissions_boundary",
                iam.delete_role_permissions_boundary("r").await,
            ),
            ("delete_role", iam.delete_role("r").await),
            (
                "create_instance_profile",
                unit(iam.create_instance_profile("r", "/").await),
            ),
            (
                "delete_instance_profile",
                iam.delete_instance_profile("r").await,
            ),
            (
                "add_role_to_instance_profile",
                iam.add_role_to_instance_profile("r", "r").await,
            ),
            (
                "remove_role_from_instance_profile",
                iam.remove_role_from_instance_profile("r", "r").await,
            ),
            (
                "update_account_password_policy",
                iam.update_account_password_policy(&AccountPasswordPolicySpec::default())
                    .await,
            ),
            (
                "delete_account_password_policy",
                iam.delete_account_password_policy().await,
            ),
            ("create_account_alias", iam.create_account_alias("a").await),
            ("delete_account_alias", iam.delete_account_alias("a").await),
            (
                "assume_role_session",
                unit(
                    iam.assume_role_session("arn", "s", Duration::from_secs(900))
                        .await,
                ),
            ),
        ]
    }

    fn fenced(guard: &LeaseGuard) -> (Arc<Recorder>, FencedIam) {
        let inner = Arc::new(Recorder::default());
        (inner.clone(), FencedIam::new(inner, guard.clone()))
    }

    #[tokio::test]
    async fn while_the_lease_is_held_every_call_goes_through() {
        let guard = LeaseGuard::new();
        guard.renewed(Instant::now(), Duration::from_secs(60));
        let (inner, iam) = fenced(&guard);
        let writes = call_everything(&iam).await;
        let calls = inner.calls();
        assert_eq!(&calls[..READS.len()], READS);
        let written: Vec<_> = writes.iter().map(|(name, _)| *name).collect();
        assert_eq!(&calls[READS.len()..], written);
        for (name, result) in writes {
            if let Err(e) = result {
                assert!(!e.to_string().contains("lease"), "{name}: {e}");
            }
        }
    }

    #[tokio::test]
    async fn without_the_lease_reads_go_through_and_every_write_is_refused() {
        for guard in [
            LeaseGuard::new(),
            {
                let lapsed = LeaseGuard::new();
                lapsed.renewed(Instant::now(), Duration::ZERO);
                lapsed
            },
            {
                let revoked = LeaseGuard::new();
                revoked.renewed(Instant::now(), Duration::from_secs(60));
                revoked.revoke();
                revoked
            },
        ] {
            let (inner, iam) = fenced(&guard);
            let writes = call_everything(&iam).await;
            assert_eq!(inner.calls(), READS, "only reads reach IAM");
            assert_eq!(writes.len(), 45);
            for (name, result) in writes {
                match result {
                    Err(IamError::Transient(m)) => {
                        assert!(m.contains("lost the leader lease"), "{name}: {m}")
                    }
                    other => panic!("{name} not refused: {other:?}"),
                }
            }
        }
    }

    /// A write still waiting (for an answer, or for the SDK's next retry) when the lease
    /// lapses is dropped at its next wake-up instead of going on.
    #[test]
    fn a_write_under_way_when_the_lease_lapses_is_abandoned() {
        let guard = LeaseGuard::new();
        guard.renewed(Instant::now(), Duration::from_secs(60));
        let iam = FencedIam::new(Arc::new(Recorder::default()), guard.clone());
        let polls = AtomicU32::new(0);
        let call = std::future::poll_fn(|_| {
            let n = polls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(n, 0, "polled again after the lease lapsed");
            Poll::<IamResult<()>>::Pending
        });
        let mut write = std::pin::pin!(iam.write("CreateAccessKey", call));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(write.as_mut().poll(&mut cx).is_pending());
        guard.revoke();
        match write.as_mut().poll(&mut cx) {
            Poll::Ready(Err(IamError::Transient(m))) => assert!(
                m.contains("CreateAccessKey abandoned") && m.contains("lost the leader lease"),
                "{m}"
            ),
            other => panic!("not abandoned: {other:?}"),
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    }
}
