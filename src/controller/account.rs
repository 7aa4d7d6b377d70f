//! IamAccountSettings: one account's alias and password policy. Observe (alias, password
//! policy, summary) → pure plan ([`plan`]) → apply, then the status (sign-in URL and the
//! account's posture from `GetAccountSummary`). Out-of-band changes are repaired at the
//! next resync: the runtime requeues every object at the resync interval.

use super::Engine;
use super::change::{Reason, Synced};
use crate::api::{
    AccountPasswordPolicySpec, AccountPosture, IamAccountSettings, IamAccountSettingsStatus,
};
use crate::controller::credentials::console::console_url;
use crate::error::{Error, Result};
use crate::iam::gone;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// IAM's default minimum length, reported when the policy sets none.
const DEFAULT_MINIMUM_LENGTH: i32 = 8;

/// What the account has now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub alias: Option<String>,
    pub password_policy: Option<AccountPasswordPolicySpec>,
}

/// One IAM write.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    DeleteAlias(String),
    CreateAlias(String),
    UpdatePasswordPolicy(AccountPasswordPolicySpec),
    DeletePasswordPolicy,
}

/// A policy as IAM reports it back: an unset minimum length reads as IAM's default.
fn normalized(p: &AccountPasswordPolicySpec) -> AccountPasswordPolicySpec {
    AccountPasswordPolicySpec {
        minimum_password_length: Some(p.minimum_password_length.unwrap_or(DEFAULT_MINIMUM_LENGTH)),
        ..p.clone()
    }
}

/// Checks IAM's rules the CRD schema cannot state (the alias's minimum length).
pub fn validate(obj: &IamAccountSettings) -> std::result::Result<(), String> {
    if let Some(alias) = obj.spec.account_alias.as_deref()
        && !alias.is_empty()
        && alias.len() < 3
    {
        return Err(format!(
            "accountAlias {alias:?} is shorter than IAM's minimum of 3 characters; use 3 to 63"
        ));
    }
    Ok(())
}

/// The writes that bring the account to the spec. `policy_managed`: a password policy was
/// applied by this object before, so its removal from the spec deletes it; one the
/// object never set is left alone.
pub fn plan(obj: &IamAccountSettings, observed: &Observed, policy_managed: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    match obj.spec.account_alias.as_deref() {
        None => {}
        Some("") => {
            if let Some(old) = &observed.alias {
                steps.push(Step::DeleteAlias(old.clone()));
            }
        }
        Some(want) if observed.alias.as_deref() != Some(want) => {
            // One alias per account: the old one goes first.
            if let Some(old) = &observed.alias {
                steps.push(Step::DeleteAlias(old.clone()));
            }
            steps.push(Step::CreateAlias(want.to_string()));
        }
        Some(_) => {}
    }
    match &obj.spec.password_policy {
        Some(want)
            if observed.password_policy.as_ref().map(normalized) != Some(normalized(want)) =>
        {
            steps.push(Step::UpdatePasswordPolicy(want.clone()));
        }
        Some(_) => {}
        None if policy_managed && observed.password_policy.is_some() => {
            steps.push(Step::DeletePasswordPolicy);
        }
        None => {}
    }
    steps
}

/// The posture from `GetAccountSummary`'s map.
pub fn posture(summary: &BTreeMap<String, i32>) -> AccountPosture {
    let get = |k: &str| summary.get(k).copied().unwrap_or(0);
    let root_mfa = get("AccountMFAEnabled") > 0;
    let users = get("Users");
    // MFADevicesInUse counts the root user's device too.
    let user_devices = get("MFADevicesInUse") - i32::from(root_mfa);
    AccountPosture {
        root_mfa_enabled: root_mfa,
        root_access_keys_present: get("AccountAccessKeysPresent") > 0,
        users,
        mfa_devices_in_use: get("MFADevicesInUse"),
        users_without_mfa: (users - user_devices.max(0)).max(0),
        groups: get("Groups"),
        roles: get("Roles"),
        policies: get("Policies"),
    }
}

/// The object that owns the account's settings among `all` (every IamAccountSettings):
/// the oldest, by creation time then name, so that a second one never takes over.
pub fn owner_of(all: &[IamAccountSettings]) -> Option<String> {
    all.iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .min_by_key(|o| {
            (
                o.metadata.creation_timestamp.clone().map(|t| t.0),
                o.name_any(),
            )
        })
        .map(ResourceExt::name_any)
}

/// Observes, plans and applies; fills `status` with what the account has afterwards.
pub async fn reconcile(
    engine: &Engine,
    obj: &IamAccountSettings,
    all: &[IamAccountSettings],
    status: &mut IamAccountSettingsStatus,
) -> Result<Synced> {
    let (account, partition) = engine.account().await?;
    status.account_id = Some(account.clone());
    if let Some(owner) = owner_of(all)
        && owner != obj.name_any()
    {
        return Err(Error::NameConflict(format!(
            "IamAccountSettings {owner} already manages account {account}; one object per account: delete this one or edit {owner}"
        )));
    }
    validate(obj).map_err(Error::InvalidSpec)?;
    let iam = &engine.iam;
    let observed = Observed {
        alias: iam.account_alias().await?,
        password_policy: iam.account_password_policy().await?,
    };
    let mut synced = Synced::default();
    for step in plan(obj, &observed, status.password_policy_managed) {
        match step {
            Step::DeleteAlias(alias) => {
                gone(iam.delete_account_alias(&alias).await)?;
                synced.note(Reason::Updated, format!("deleted account alias {alias}"));
            }
            Step::CreateAlias(alias) => {
                iam.create_account_alias(&alias).await?;
                synced.note(Reason::Updated, format!("set account alias {alias}"));
            }
            Step::UpdatePasswordPolicy(policy) => {
                iam.update_account_password_policy(&policy).await?;
                synced.note(Reason::Updated, "applied the account password policy");
            }
            Step::DeletePasswordPolicy => {
                gone(iam.delete_account_password_policy().await)?;
                synced.note(Reason::Updated, "deleted the account password policy");
            }
        }
    }
    status.password_policy_managed = obj.spec.password_policy.is_some();
    let alias = iam.account_alias().await?;
    status.sign_in_url = Some(console_url(
        alias.as_deref().unwrap_or(&account),
        &partition,
    ));
    status.account_alias = alias;
    status.posture = Some(posture(&iam.account_summary().await?));
    synced.requeue_within(engine.settings.resync_interval);
    Ok(synced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IamAccountSettingsSpec;

    fn settings(
        alias: Option<&str>,
        policy: Option<AccountPasswordPolicySpec>,
    ) -> IamAccountSettings {
        IamAccountSettings::new(
            "default",
            IamAccountSettingsSpec {
                account_alias: alias.map(str::to_string),
                password_policy: policy,
            },
        )
    }

    #[test]
    fn an_alias_is_replaced_old_one_first_and_left_alone_when_unset() {
        let now = Observed {
            alias: Some("old".into()),
            password_policy: None,
        };
        assert_eq!(
            plan(&settings(Some("new-one"), None), &now, false),
            vec![
                Step::DeleteAlias("old".into()),
                Step::CreateAlias("new-one".into())
            ]
        );
        assert_eq!(plan(&settings(Some("old"), None), &now, false), vec![]);
        assert_eq!(plan(&settings(None, None), &now, false), vec![]);
        assert_eq!(
            plan(&settings(Some(""), None), &now, false),
            vec![Step::DeleteAlias("old".into())]
        );
    }

    #[test]
    fn a_password_policy_is_kept_exactly_and_deleted_only_when_this_object_set_it() {
        let want = AccountPasswordPolicySpec {
            require_symbols: true,
            ..Default::default()
        };
        // IAM reports the default minimum length explicitly: no write.
        let same = Observed {
            alias: None,
            password_policy: Some(AccountPasswordPolicySpec {
                minimum_password_length: Some(8),
                ..want.clone()
            }),
        };
        assert_eq!(
            plan(&settings(None, Some(want.clone())), &same, false),
            vec![]
        );
        let drifted = Observed {
            alias: None,
            password_policy: Some(AccountPasswordPolicySpec::default()),
        };
        assert_eq!(
            plan(&settings(None, Some(want.clone())), &drifted, false),
            vec![Step::UpdatePasswordPolicy(want)]
        );
        assert_eq!(plan(&settings(None, None), &drifted, false), vec![]);
        assert_eq!(
            plan(&settings(None, None), &drifted, true),
            vec![Step::DeletePasswordPolicy]
        );
    }

    #[test]
    fn posture_counts_users_without_mfa_apart_from_root() {
        let summary = BTreeMap::from([
            ("AccountMFAEnabled".to_string(), 1),
            ("AccountAccessKeysPresent".to_string(), 0),
            ("Users".to_string(), 5),
            ("MFADevicesInUse".to_string(), 3),
        ]);
        let p = posture(&summary);
        assert!(p.root_mfa_enabled);
        assert!(!p.root_access_keys_present);
        assert_eq!(p.users_without_mfa, 3);
        assert_eq!(posture(&BTreeMap::new()).users_without_mfa, 0);
    }

    #[test]
    fn a_too_short_alias_is_refused() {
        assert!(validate(&settings(Some("ab"), None)).is_err());
        assert!(validate(&settings(Some("abc"), None)).is_ok());
        assert!(validate(&settings(Some(""), None)).is_ok());
    }
}
