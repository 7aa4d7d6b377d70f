//! The operator's own policies that let console users manage their own credentials:
//! AWS's documented "manage your own credentials on the Security credentials page" policy,
//! with (`mfa.required`) or without (`selfService`) its "deny everything else without MFA"
//! statement. [`desired`] and [`document`] decide (pure); [`ensure`] creates or repairs
//! the customer-managed policy that the user's exclusive attachments then include.
//!
//! Decisions:
//! - A customer-managed policy, not an inline one: the MFA document is larger than IAM's
//!   2,048-character budget for a user's inline policies together.
//! - One policy per IAM path: the documented resource `user/${aws:username}` matches only
//!   users at path `/`; a user's ARN carries its path, so the resource must too. IAM
//!   policy names are unique in an account whatever their path, so the name carries a
//!   digest of the path.
//! - Access-key self-service is included only where the namespace's rules allow access
//!   keys: otherwise the person could make keys the platform team forbade.
//! - `iam:ChangePassword` and `iam:GetAccountPasswordPolicy` are usable before MFA is set
//!   up, unlike in AWS's example: the operator requires a password reset at first sign-in,
//!   which the example would block.
//! - The policy carries the operator's owner tag; a policy of that name without it (a
//!   tenant's, made to be attached in its place) is never attached or changed.

use super::{Engine, Reason, Synced, policy};
use crate::api::{IamUser, OWNER_TAG};
use crate::document;
use crate::error::{Error, Result};
use crate::iam::{IamError, optional};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What a console user's self-management policy must be.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfManagement {
    pub arn: String,
    pub name: String,
    pub path: String,
    pub document: Value,
}

/// The policy the user needs, if any: with `mfa.required` the MFA-enforcing one, else
/// with `selfService` the plain one. `access_keys`: whether the rules allow access keys.
pub fn desired(
    obj: &IamUser,
    access_keys: bool,
    (account, partition): (&str, &str),
) -> Option<SelfManagement> {
    let console = obj.spec.console.as_ref().filter(|c| c.enabled)?;
    let require_mfa = console.mfa.as_ref().is_some_and(|m| m.required);
    if !require_mfa && !console.self_service {
        return None;
    }
    let path = obj.spec.path.clone();
    let kind = match require_mfa {
        true => "mfa-required",
        false => "self-service",
    };
    let keys = match access_keys {
        true => "",
        false => "-no-access-keys",
    };
    let name = format!("iam-operator-{kind}{keys}-{:016x}", fnv1a(&path));
    Some(SelfManagement {
        arn: policy::policy_arn(partition, account, &path, &name),
        name,
        document: document(partition, &path, require_mfa, access_keys),
        path,
    })
}

/// The spec setting an operator-written self-management policy stands for, recognised by
/// its name: what reads IAM back into specs prints the setting, not an attachment that the
/// namespace's rules would refuse.
pub fn setting_of(policy_arn: &str) -> Option<&'static str> {
    let name = policy_arn.rsplit('/').next()?;
    if name.starts_with("iam-operator-mfa-required-") {
        Some("spec.console.mfa.required: true")
    } else if name.starts_with("iam-operator-self-service-") {
        Some("spec.console.selfService: true")
    } else {
        None
    }
}

/// A stable 64-bit digest (FNV-1a): names must not change between versions of the
/// operator, so not the standard library's randomly seeded hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The policy document for users at `path`.
pub fn document(partition: &str, path: &str, require_mfa: bool, access_keys: bool) -> Value {
    let own_user = format!("arn:{partition}:iam::*:user{path}${{aws:username}}");
    let mut statements = vec![
        json!({
            "Sid": "AllowViewAccountInfo",
            "Effect": "Allow",
            "Action": ["iam:GetAccountPasswordPolicy", "iam:ListVirtualMFADevices"],
            "Resource": "*"
        }),
        json!({
            "Sid": "AllowManageOwnPasswords",
            "Effect": "Allow",
            "Action": ["iam:ChangePassword", "iam:GetUser", "iam:GetLoginProfile"],
            "Resource": own_user
        }),
    ];
    if access_keys {
        statements.push(json!({
            "Sid": "AllowManageOwnAccessKeys",
            "Effect": "Allow",
            "Action": [
                "iam:CreateAccessKey",
                "iam:DeleteAccessKey",
                "iam:ListAccessKeys",
                "iam:UpdateAccessKey",
                "iam:GetAccessKeyLastUsed"
            ],
            "Resource": own_user
        }));
    }
    statements.push(json!({
        "Sid": "AllowManageOwnVirtualMFADevice",
        "Effect": "Allow",
        "Action": ["iam:CreateVirtualMFADevice"],
        "Resource": format!("arn:{partition}:iam::*:mfa/*")
    }));
    statements.push(json!({
        "Sid": "AllowManageOwnUserMFA",
        "Effect": "Allow",
        "Action": [
            "iam:DeactivateMFADevice",
            "iam:EnableMFADevice",
            "iam:GetMFADevice",
            "iam:ListMFADevices",
            "iam:ResyncMFADevice"
        ],
        "Resource": own_user
    }));
    if require_mfa {
        statements.push(json!({
            "Sid": "DenyAllExceptListedIfNoMFA",
            "Effect": "Deny",
            "NotAction": [
                "iam:ChangePassword",
                "iam:CreateVirtualMFADevice",
                "iam:EnableMFADevice",
                "iam:GetAccountPasswordPolicy",
                "iam:GetMFADevice",
                "iam:GetUser",
                "iam:ListMFADevices",
                "iam:ListVirtualMFADevices",
                "iam:ResyncMFADevice",
                "sts:GetSessionToken"
            ],
            "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The owner tag value of the operator's own policies: no resource has it (`-` is not a
/// namespace name).
fn owner(engine: &Engine) -> String {
    engine.settings.owner("-", "self-management")
}

/// Makes the policy exist with exactly its document. A policy of that name that is not the
/// operator's is refused, never changed or attached.
pub async fn ensure(engine: &Engine, wanted: &SelfManagement, synced: &mut Synced) -> Result<()> {
    let arn = &wanted.arn;
    let rendered = document::render(&wanted.document);
    let owner = owner(engine);
    let Some(info) = optional(engine.iam.get_policy(arn).await)? else {
        let tags = BTreeMap::from([(OWNER_TAG.to_string(), owner)]);
        let description =
            "Managed by iam-operator: lets console users manage their own credentials";
        return match engine
            .iam
            .create_policy(
                &wanted.name,
                &wanted.path,
                Some(description),
                &rendered,
                &tags,
            )
            .await
        {
            Ok(_) => {
                synced.note(Reason::Updated, format!("Created IAM policy {arn}"));
                Ok(())
            }
            // Another user's reconcile created it meanwhile (or this call's lost first
            // attempt did): the next reconcile checks whose it is.
            Err(IamError::AlreadyExists(m)) => Err(Error::Iam(IamError::Transient(format!(
                "IAM policy {arn} was created while this reconcile ran ({m}); checking whose it is"
            )))),
            Err(other) => Err(other.into()),
        };
    };
    if info.tags.get(OWNER_TAG) != Some(&owner) {
        return Err(Error::NameConflict(format!(
            "IAM policy {arn} exists but was not written by this operator (its {OWNER_TAG} tag is not {owner}); the operator attaches only the self-management policy it wrote: delete that policy in IAM"
        )));
    }
    let current = engine
        .iam
        .get_policy_version(arn, &info.default_version_id)
        .await?;
    if !document::parse(&current).is_some_and(|d| document::equivalent(&d, &wanted.document)) {
        policy::replace_default_version(engine, arn, &rendered).await?;
        synced.note(
            Reason::Updated,
            format!("Restored IAM policy {arn}, changed outside the operator"),
        );
    }
    Ok(())
}

/// Deletes the operator's policy at `arn` once nothing is attached to it (called when a user
/// stops using it), so that deleting every console user leaves nothing behind. Attached
/// meanwhile by another user's reconcile, it stays (IAM refuses the deletion); deleted
/// just before another user attaches it, that user's next attempt writes it again.
pub async fn release(engine: &Engine, arn: &str) -> Result<()> {
    let Some(info) = optional(engine.iam.get_policy(arn).await)? else {
        return Ok(());
    };
    if info.tags.get(OWNER_TAG) != Some(&owner(engine)) {
        return Ok(());
    }
    let used = engine.iam.list_entities_for_policy(arn).await?;
    if !(used.users.is_empty() && used.groups.is_empty() && used.roles.is_empty()) {
        return Ok(());
    }
    match policy::delete_with_versions(engine, arn).await {
        Ok(()) | Err(IamError::NotFound(_) | IamError::Conflict(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ConsoleMfaSpec, ConsoleSpec, IamUserSpec};

    fn user(console: ConsoleSpec) -> IamUser {
        let spec: IamUserSpec = serde_json::from_value(json!({"path": "/team-a/"})).unwrap();
        let mut obj = IamUser::new("alice", spec);
        obj.spec.console = Some(console);
        obj
    }

    fn console(enabled: bool, mfa: bool, self_service: bool) -> ConsoleSpec {
        ConsoleSpec {
            enabled,
            mfa: Some(ConsoleMfaSpec { required: mfa }),
            self_service,
            ..Default::default()
        }
    }

    #[test]
    fn mfa_required_gets_the_deny_unless_signed_in_with_mfa() {
        let wanted = desired(
            &user(console(true, true, false)),
            true,
            ("123456789012", "aws"),
        )
        .unwrap();
        assert!(wanted.name.starts_with("iam-operator-mfa-required-"));
        assert_eq!(wanted.path, "/team-a/");
        let statements = wanted.document["Statement"].as_array().unwrap();
        let deny = statements.last().unwrap();
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(
            deny["Condition"],
            json!({"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}})
        );
        // Before MFA is set up, the first password can still be changed.
        let allowed: Vec<&str> = deny["NotAction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for action in [
            "iam:ChangePassword",
            "iam:EnableMFADevice",
            "sts:GetSessionToken",
        ] {
            assert!(allowed.contains(&action), "{action}");
        }
        // Every user-scoped statement names the user at its path.
        for s in statements
            .iter()
            .filter(|s| s["Sid"] != "AllowViewAccountInfo")
        {
            let resource = s["Resource"].as_str().unwrap();
            assert!(
                resource == "*"
                    || resource == "arn:aws:iam::*:mfa/*"
                    || resource == "arn:aws:iam::*:user/team-a/${aws:username}",
                "{resource}"
            );
        }
    }

    #[test]
    fn self_service_has_no_deny_and_keys_only_where_allowed() {
        let wanted = desired(
            &user(console(true, false, true)),
            true,
            ("123456789012", "aws"),
        )
        .unwrap();
        assert!(wanted.name.starts_with("iam-operator-self-service-"));
        let sids: Vec<&str> = wanted.document["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert!(!sids.contains(&"DenyAllExceptListedIfNoMFA"));
        assert!(sids.contains(&"AllowManageOwnAccessKeys"));
        let without_keys = desired(
            &user(console(true, false, true)),
            false,
            ("123456789012", "aws"),
        )
        .unwrap();
        assert!(without_keys.name.contains("-no-access-keys-"));
        assert!(
            !without_keys.document["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["Sid"] == "AllowManageOwnAccessKeys")
        );
    }

    #[test]
    fn nothing_without_console_or_either_setting() {
        assert_eq!(
            desired(
                &user(console(false, true, true)),
                true,
                ("123456789012", "aws")
            ),
            None
        );
        assert_eq!(
            desired(
                &user(console(true, false, false)),
                true,
                ("123456789012", "aws")
            ),
            None
        );
    }

    #[test]
    fn names_differ_by_path_and_fit_iam() {
        let a = desired(
            &user(console(true, true, false)),
            false,
            ("123456789012", "aws"),
        )
        .unwrap();
        let mut other = user(console(true, true, false));
        other.spec.path = "/team-b/".into();
        let b = desired(&other, false, ("123456789012", "aws")).unwrap();
        assert_ne!(a.name, b.name);
        assert!(a.name.len() <= 128);
        assert!(
            a.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        );
        assert_eq!(setting_of(&a.arn), Some("spec.console.mfa.required: true"));
        assert_eq!(setting_of("arn:aws:iam::aws:policy/ReadOnlyAccess"), None);
        // Stable across builds: the name of an existing policy never changes.
        assert_eq!(fnv1a("/"), 0xaf63_a24c_8601_89fe);
    }
}
