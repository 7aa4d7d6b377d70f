//! Credentials published into Secrets: access keys ([`keys`]) and console passwords
//! ([`console`]) of IamUsers, and session credentials of IamRoles ([`session`]).
//!
//! A user's credential step runs whenever the IAM user exists and is this resource's, even
//! when the rest of the user is blocked (a dependency not Ready, a denied policy, an
//! AccessDenied): disabling a credential, ending a grace period, rotating and replacing a
//! revoked credential never wait on unrelated errors. Only a *first* credential waits until
//! the user's identity converged, so nothing is issued to a user whose guardrails failed.
//!
//! Secret values live in `SecretString`/`SecretData` (redacted `Debug`) until they are
//! written into the Secret; they never reach logs, events, status or errors.

pub mod console;
pub mod keys;
pub mod session;

use super::{Engine, Reason, Synced};
use crate::api::{DeletionPolicy, IamUser, IamUserStatus, MfaDeviceStatus, UnmanagedCredentials};
use crate::error::Result;
use crate::k8s::{Journal, SecretStore};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// Keys of the access-key Secret: id, secret, and an INI `credentials` file.
pub const KEY_SECRET_DATA: [&str; 3] =
    ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "credentials"];

pub fn access_key_secret_name(obj: &IamUser) -> String {
    obj.spec
        .access_key
        .as_ref()
        .and_then(|a| a.secret_name.clone())
        .unwrap_or_else(|| format!("{}-aws-credentials", obj.name_any()))
}

pub fn console_secret_name(obj: &IamUser) -> String {
    obj.spec
        .console
        .as_ref()
        .and_then(|c| c.secret_name.clone())
        .unwrap_or_else(|| format!("{}-console", obj.name_any()))
}

/// Everything one credential step works with.
pub struct CredentialStep<'a> {
    pub engine: &'a Engine,
    pub obj: &'a IamUser,
    /// The IAM user name.
    pub user: &'a str,
    pub status: &'a mut IamUserStatus,
    pub journal: &'a dyn Journal<IamUserStatus>,
    pub secrets: &'a dyn SecretStore,
    /// Whether a first credential may be issued (the identity step succeeded).
    pub may_issue: bool,
    /// Whether this reconcile created the user: IAM's answer to CreateUser says it has no
    /// access keys and no login profile, so they are not listed (see [`Self::access_keys`]).
    pub created: bool,
    /// Whether the tenancy allows access keys and console access at all. When it does not,
    /// existing ones are removed as if disabled, and the spec's request is reported.
    pub keys_allowed: bool,
    pub console_allowed: bool,
    /// Why a first access key may not be issued (a quota), if so.
    pub key_refusal: Option<String>,
    /// Where the rules come from, for messages.
    pub rules: String,
}

impl CredentialStep<'_> {
    /// The user's access keys: none for a user this reconcile created, else as IAM lists
    /// them. Only the create answer stands in for the listing, never a cached view: a key
    /// missed here could be orphaned or a third one attempted.
    async fn access_keys(&self) -> Result<Vec<crate::iam::AccessKeyInfo>> {
        if self.created {
            return Ok(Vec::new());
        }
        Ok(self.engine.iam.list_access_keys(self.user).await?)
    }

    /// Whether the user has a login profile: not for a user this reconcile created.
    async fn has_login_profile(&self) -> Result<bool> {
        if self.created {
            return Ok(false);
        }
        Ok(self.engine.iam.has_login_profile(self.user).await?)
    }

    /// A renamed access-key Secret: carry the published key over rather than losing it.
    async fn carry_over_renamed_secret(&self, old: Option<&str>, new: &str) -> Result<()> {
        let Some(old) = old.filter(|old| *old != new) else {
            return Ok(());
        };
        if let Some(old_secret) = self.secrets.get(old).await.ok().flatten()
            && self.secrets.get(new).await?.is_none()
        {
            let copy = crate::k8s::StoredSecret {
                data: old_secret.data,
                annotations: Default::default(),
            };
            self.secrets.put(new, &copy, false).await?;
            self.secrets.delete(old).await?;
        }
        Ok(())
    }
}

/// Publishes and maintains the user's credentials, and reports those it did not create.
/// Both credentials run even if the other fails; the first error is returned.
pub async fn sync(step: &mut CredentialStep<'_>, synced: &mut Synced) -> Result<()> {
    // Two credentials in one Secret would overwrite each other on every reconcile.
    crate::limits::check_secret_names(step.obj).map_err(crate::error::Error::InvalidSpec)?;
    let keys = keys::sync(step, synced).await;
    let console = match console::sync(step, synced).await {
        Ok(unmanaged) => observe_mfa(step).await.map(|()| unmanaged),
        Err(e) => Err(e),
    };
    let unmanaged = UnmanagedCredentials {
        access_key_ids: keys.as_ref().cloned().unwrap_or_default(),
        login_profile: console.as_ref().is_ok_and(|u| *u),
    };
    let known = step
        .status
        .unmanaged_credentials
        .clone()
        .unwrap_or_default();
    let new_keys: Vec<&String> = unmanaged
        .access_key_ids
        .iter()
        .filter(|k| !known.access_key_ids.contains(k))
        .collect();
    if !new_keys.is_empty() || (unmanaged.login_profile && !known.login_profile) {
        let mut what = Vec::new();
        if !new_keys.is_empty() {
            what.push(format!(
                "access keys {}",
                new_keys
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if unmanaged.login_profile {
            what.push("a console login profile".to_string());
        }
        synced.note(
            Reason::UnmanagedCredentials,
            format!(
                "IAM user {} has {} that this resource did not create; the operator never uses or deletes them: remove them in IAM if they are not wanted",
                step.user,
                what.join(" and ")
            ),
        );
    }
    // Keep the last known report while a step failed before it could observe.
    if keys.is_ok() && console.is_ok() {
        step.status.unmanaged_credentials =
            (!unmanaged.access_key_ids.is_empty() || unmanaged.login_profile).then_some(unmanaged);
    }
    keys?;
    console?;
    let wants = |enabled: Option<bool>| enabled.unwrap_or(false);
    let refused: Vec<&str> = [
        (wants(step.obj.spec.access_key.as_ref().map(|a| a.enabled)) && !step.keys_allowed)
            .then_some("access keys"),
        (wants(step.obj.spec.console.as_ref().map(|c| c.enabled)) && !step.console_allowed)
            .then_some("console access"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(refusal) = &step.key_refusal
        && step
            .status
            .access_key
            .as_ref()
            .is_none_or(|a| a.access_key_id.is_none())
        && step.obj.spec.access_key.as_ref().is_some_and(|a| a.enabled)
    {
        return Err(crate::error::Error::InvalidSpec(refusal.clone()));
    }
    if !refused.is_empty() {
        return Err(crate::error::Error::InvalidSpec(format!(
            "{} not allowed in this namespace by {}; disable it in the spec or ask the platform team",
            refused.join(" and "),
            step.rules
        )));
    }
    Ok(())
}

/// Reports a console user's MFA devices in status (serial numbers; IAM never reveals a
/// seed after the device was created). Not read for a user this reconcile created.
async fn observe_mfa(step: &mut CredentialStep<'_>) -> Result<()> {
    if step.status.console.is_none() {
        return Ok(());
    }
    let devices = match step.created {
        true => Vec::new(),
        false => step.engine.iam.list_mfa_devices(step.user).await?,
    };
    if let Some(console) = step.status.console.as_mut() {
        console.mfa_active = !devices.is_empty();
        console.mfa_devices = devices
            .into_iter()
            .map(|d| MfaDeviceStatus {
                serial_number: d.serial_number,
                enabled_at: Time(d.enabled_at),
            })
            .collect();
    }
    Ok(())
}

/// The finalizer's Kubernetes work after IAM cleanup: delete the credential Secrets, or
/// with `Retain` keep them (the credentials still work) by dropping the owner reference.
pub async fn release(engine: &Engine, obj: &IamUser, secrets: &dyn SecretStore) -> Result<()> {
    let retain = engine.deletion_policy(obj.spec.deletion_policy) == DeletionPolicy::Retain;
    let status = obj.status.clone().unwrap_or_default();
    let names = [
        status.access_key.and_then(|a| a.secret_name),
        status.console.and_then(|c| c.secret_name),
    ];
    for name in names.into_iter().flatten() {
        if retain {
            secrets.orphan(&name).await?;
        } else {
            secrets.delete(&name).await?;
        }
    }
    Ok(())
}
