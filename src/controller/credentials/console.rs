//! Console access: a login profile whose password is published in a Secret. [`plan`]
//! decides (pure), [`sync`] observes and applies.
//!
//! The password goes into the Secret before IAM gets it, stamped with the moment it was
//! made; status records the stamp once IAM accepted it. A Secret whose stamp status does not
//! know yet holds a password IAM may not have (an interrupted attempt): it is set again. A
//! login profile that disappears after IAM had the password was deleted out of band — a
//! responder disabling a compromised sign-in — so the old password is never set again: a
//! fresh one is issued.

use super::CredentialStep;
use crate::api::{ConsoleStatus, RESET_PASSWORD_ANNOTATION};
use crate::controller::{Reason, Synced};
use crate::error::{Error, Result};
use crate::iam::{IamError, PasswordPolicy, gone};
use crate::k8s::{SecretData, StoredSecret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use rand::Rng;
use rand::seq::SliceRandom;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

/// Annotation on the console Secret matching `status.console.passwordSetAt` once IAM has
/// the password; a mismatch means the password still has to be set in IAM.
const PASSWORD_SET_AT: &str = "iam.kubeop.dev/password-set-at";
/// Symbols IAM accepts in passwords.
const SYMBOLS: &[u8] = b"!@#$%^&*()_+-=[]{}|'";

/// Why a new password is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    Enabled,
    SecretLost,
    ResetRequested,
    /// The login profile was deleted out of band after IAM had the password.
    Revoked,
}

impl Issue {
    fn why(self) -> &'static str {
        match self {
            Issue::Enabled => "console access enabled",
            Issue::SecretLost => "the console Secret was lost",
            Issue::ResetRequested => "password reset requested by annotation",
            Issue::Revoked => {
                "the login profile was deleted outside the operator; the old password is never set again"
            }
        }
    }
}

/// What the console step must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsolePlan {
    /// IAM has the Secret's password.
    Nothing,
    /// The Secret holds a password IAM may not have yet: set it.
    SetFromSecret,
    /// Issue a new password.
    Issue(Issue),
    /// A first password waits until the user's identity converged.
    Wait,
    /// A login profile exists that this resource did not create.
    Unmanaged,
}

/// Inputs of [`plan`].
pub struct ConsoleFacts<'a> {
    pub status: &'a ConsoleStatus,
    /// Whether the Secret holds a password, and its stamp (seconds).
    pub secret_password: bool,
    pub secret_stamp: Option<i64>,
    pub has_profile: bool,
    pub reset_token: Option<&'a str>,
    pub may_issue: bool,
}

pub fn plan(f: &ConsoleFacts) -> ConsolePlan {
    // `passwordSetAt` is a metav1.Time, stored with second precision.
    let set_at = f.status.password_set_at.as_ref().map(|t| t.0.as_second());
    let same_token = f.reset_token == f.status.reset_token.as_deref();
    match (f.secret_password, same_token) {
        (true, false) => ConsolePlan::Issue(Issue::ResetRequested),
        (true, true) if f.secret_stamp != set_at => ConsolePlan::SetFromSecret,
        (true, true) if !f.has_profile => ConsolePlan::Issue(Issue::Revoked),
        (true, true) => ConsolePlan::Nothing,
        (false, _) if set_at.is_some() => ConsolePlan::Issue(Issue::SecretLost),
        (false, _) if f.has_profile => ConsolePlan::Unmanaged,
        (false, _) if f.may_issue => ConsolePlan::Issue(Issue::Enabled),
        (false, _) => ConsolePlan::Wait,
    }
}

/// A password that satisfies `policy`: every character class IAM can require, drawn from
/// a cryptographically secure RNG.
pub fn generate_password(policy: Option<&PasswordPolicy>) -> SecretString {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGITS: &[u8] = b"23456789";
    let len = policy
        .map_or(0, |p| p.minimum_length as usize)
        .clamp(24, 128);
    let mut rng = rand::rng();
    let classes = [UPPER, LOWER, DIGITS, SYMBOLS];
    let mut chars: Vec<u8> = classes
        .iter()
        .map(|c| c[rng.random_range(0..c.len())])
        .collect();
    let all: Vec<u8> = classes.concat();
    while chars.len() < len {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    SecretString::from(String::from_utf8_lossy(&chars).into_owned())
}

/// The sign-in URL of an account, in its partition.
pub fn console_url(alias: &str, partition: &str) -> String {
    match partition {
        "aws-cn" => format!("https://{alias}.signin.amazonaws.cn/console"),
        "aws-us-gov" => format!("https://{alias}.signin.amazonaws-us-gov.com/console"),
        _ => format!("https://{alias}.signin.aws.amazon.com/console"),
    }
}

/// Observes the login profile, the Secret and the status, plans and applies. Returns
/// whether the user has a login profile this resource did not create.
pub async fn sync(step: &mut CredentialStep<'_>, synced: &mut Synced) -> Result<bool> {
    let obj = step.obj;
    let iam = step.engine.iam.clone();
    let user = step.user;
    let has_profile = step.has_login_profile().await?;
    let Some(spec) = obj
        .spec
        .console
        .as_ref()
        .filter(|c| c.enabled && step.console_allowed)
    else {
        if let Some(st) = step.status.console.take() {
            gone(iam.delete_login_profile(user).await)?;
            if let Some(secret) = st.secret_name {
                step.secrets.delete(&secret).await?;
            }
            synced.note(
                Reason::ConsoleDisabled,
                "Deleted console access and its Secret",
            );
            return Ok(false);
        }
        return Ok(has_profile);
    };
    let reset_required = spec.password_reset_required.unwrap_or(true);
    let name = super::console_secret_name(obj);
    let mut st = step.status.console.clone().unwrap_or_default();
    if let Some(old) = st.secret_name.clone().filter(|old| old != &name) {
        step.secrets.delete(&old).await?;
    }
    st.secret_name = Some(name.clone());
    let secret = step.secrets.get(&name).await?;
    let token = obj.annotations().get(RESET_PASSWORD_ANNOTATION).cloned();
    let stamp_text = secret
        .as_ref()
        .and_then(|s| s.annotations.get(PASSWORD_SET_AT).cloned());
    let password = secret
        .as_ref()
        .and_then(|s| s.data.get("password").map(str::to_string));
    let decision = plan(&ConsoleFacts {
        status: &st,
        secret_password: password.is_some(),
        secret_stamp: stamp_text
            .as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .map(|t| t.as_second()),
        has_profile,
        reset_token: token.as_deref(),
        may_issue: step.may_issue,
    });

    let (password, stamp, issued) = match decision {
        ConsolePlan::Nothing | ConsolePlan::Wait => {
            step.status.console = Some(st);
            return Ok(false);
        }
        ConsolePlan::Unmanaged => {
            step.status.console = Some(st);
            return Err(Error::NameConflict(format!(
                "IAM user {user} already has a console login profile that this resource did not create; the operator never takes over a password it did not issue: delete the login profile in IAM, or set console.enabled: false"
            )));
        }
        ConsolePlan::SetFromSecret => (
            SecretString::from(password.unwrap_or_default()),
            stamp_text.unwrap_or_default(),
            None,
        ),
        ConsolePlan::Issue(issue) => {
            let policy = iam.password_policy().await?;
            let stamp = Timestamp::now().to_string();
            let password = generate_password(policy.as_ref());
            let (account, partition) = step.engine.account().await?;
            let alias = iam.account_alias().await?.unwrap_or(account);
            let data = SecretData(BTreeMap::from([
                ("username".to_string(), user.to_string()),
                ("password".to_string(), password.expose_secret().to_string()),
                ("consoleUrl".to_string(), console_url(&alias, &partition)),
            ]));
            // The Secret first: a password IAM accepted must never exist only in IAM.
            step.secrets
                .put(
                    &name,
                    &StoredSecret {
                        data,
                        annotations: BTreeMap::from([(PASSWORD_SET_AT.to_string(), stamp.clone())]),
                    },
                    false,
                )
                .await?;
            (password, stamp, Some(issue))
        }
    };
    let result = if has_profile {
        iam.update_login_profile(user, &password, reset_required)
            .await
    } else {
        iam.create_login_profile(user, &password, reset_required)
            .await
    };
    result.map_err(|e| match e {
        IamError::Invalid(m) => {
            Error::InvalidSpec(format!("IAM rejected the generated console password: {m}"))
        }
        other => other.into(),
    })?;
    let now = stamp.parse::<Timestamp>().ok().map(Time);
    st.password_set_at = now.clone();
    st.reset_token = token;
    match issued {
        Some(Issue::Revoked) => {
            st.password_revoked_at = now;
            synced.note(
                Reason::ConsolePasswordRevoked,
                format!(
                    "Set a new console password in Secret {name} ({})",
                    Issue::Revoked.why()
                ),
            );
        }
        Some(issue) => synced.note(
            Reason::ConsolePasswordSet,
            format!(
                "Set a new console password in Secret {name} ({})",
                issue.why()
            ),
        ),
        None => synced.note(
            Reason::ConsolePasswordSet,
            format!("Set the console password from Secret {name}"),
        ),
    }
    step.status.console = Some(st);
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(status: &ConsoleStatus) -> ConsoleFacts<'_> {
        ConsoleFacts {
            status,
            secret_password: true,
            secret_stamp: Some(100),
            has_profile: true,
            reset_token: None,
            may_issue: true,
        }
    }

    fn set_at(secs: i64) -> ConsoleStatus {
        ConsoleStatus {
            password_set_at: Some(Time(Timestamp::from_second(secs).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn a_login_profile_deleted_out_of_band_gets_a_fresh_password_never_the_old_one() {
        let st = set_at(100);
        let mut f = facts(&st);
        assert_eq!(plan(&f), ConsolePlan::Nothing);
        f.has_profile = false;
        assert_eq!(plan(&f), ConsolePlan::Issue(Issue::Revoked));
    }

    #[test]
    fn an_interrupted_set_is_finished_from_the_secret() {
        let st = set_at(50);
        let mut f = facts(&st);
        f.has_profile = false;
        assert_eq!(plan(&f), ConsolePlan::SetFromSecret);
    }

    #[test]
    fn a_login_profile_this_resource_did_not_create_is_never_taken_over() {
        let st = ConsoleStatus::default();
        let mut f = facts(&st);
        f.secret_password = false;
        f.secret_stamp = None;
        assert_eq!(plan(&f), ConsolePlan::Unmanaged);
        f.has_profile = false;
        assert_eq!(plan(&f), ConsolePlan::Issue(Issue::Enabled));
        f.may_issue = false;
        assert_eq!(plan(&f), ConsolePlan::Wait);
    }

    #[test]
    fn lost_secret_and_reset_annotation_issue_new_passwords() {
        let st = set_at(100);
        let mut f = facts(&st);
        f.reset_token = Some("1");
        assert_eq!(plan(&f), ConsolePlan::Issue(Issue::ResetRequested));
        f.reset_token = None;
        f.secret_password = false;
        f.may_issue = false;
        assert_eq!(plan(&f), ConsolePlan::Issue(Issue::SecretLost));
    }

    #[test]
    fn console_urls_follow_the_partition() {
        assert_eq!(
            console_url("acme", "aws"),
            "https://acme.signin.aws.amazon.com/console"
        );
        assert_eq!(
            console_url("acme", "aws-cn"),
            "https://acme.signin.amazonaws.cn/console"
        );
        assert_eq!(
            console_url("acme", "aws-us-gov"),
            "https://acme.signin.amazonaws-us-gov.com/console"
        );
    }

    #[test]
    fn passwords_meet_the_policy_and_differ() {
        let policy = PasswordPolicy {
            minimum_length: 40,
            ..Default::default()
        };
        let p = generate_password(Some(&policy));
        let s = p.expose_secret();
        assert_eq!(s.len(), 40);
        assert!(s.bytes().any(|c| c.is_ascii_uppercase()));
        assert!(s.bytes().any(|c| c.is_ascii_lowercase()));
        assert!(s.bytes().any(|c| c.is_ascii_digit()));
        assert!(s.bytes().any(|c| SYMBOLS.contains(&c)));
        assert_ne!(s, generate_password(Some(&policy)).expose_secret());
        assert!(!format!("{p:?}").contains(s));
    }
}
