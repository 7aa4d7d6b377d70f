//! Console access: a login profile whose password is published in a Secret. [`plan`]
//! decides (pure), [`sync`] observes and applies.
//!
//! The password goes into the Secret before IAM gets it, stamped with the moment it was
//! made; status records the stamp once IAM accepted it. A Secret whose stamp status does not
//! know yet holds a password IAM may not have (an interrupted attempt): it is set again. A
//! login profile that disappears after IAM had the password was deleted out of band — a
//! responder disabling a compromised sign-in — so the old password is never set again: a
//! fresh one is issued.
//!
//! A password chosen by a person (`spec.console.initialPasswordSecretRef`) takes the
//! generated one's place for the first password and for a reset requested by annotation
//! ([`source`]). It is read from the person's Secret only then, checked against the account
//! password policy ([`check_password`]) before anything is written, and from there on
//! follows the same protocol: copied into the console Secret first, then set in IAM.

use super::CredentialStep;
use crate::api::PasswordSecretRef;
use crate::api::{ConsoleStatus, RESET_PASSWORD_ANNOTATION};
use crate::controller::{Reason, Synced};
use crate::error::{Error, Result};
use crate::iam::{IamError, PasswordPolicy, gone};
use crate::k8s::{InputKey, SecretData, SecretStore, StoredSecret};
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

/// Where a new password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Made by the operator (following the account password policy).
    Generated,
    /// Chosen by a person, read from `spec.console.initialPasswordSecretRef`.
    Chosen,
}

/// Where the password issued for `issue` comes from. A chosen password is used for the
/// first password and for a reset the person asked for (having put the new value in the
/// referenced Secret: the console's "reset password, custom password").
///
/// Never for a login profile deleted outside the operator (`Revoked`) or a lost console
/// Secret (`SecretLost`): the referenced Secret still holds the first password, which the
/// person has replaced since (reset at first sign-in) and which sat readable in a Secret.
/// Setting it again would undo a responder's revocation with the very password that may
/// have leaked, or silently roll a person's own password back to one others know. These
/// get a generated password, announced in the event, as without a chosen one.
pub fn source(issue: Issue, chosen: bool) -> Source {
    match issue {
        Issue::Enabled | Issue::ResetRequested if chosen => Source::Chosen,
        Issue::Enabled | Issue::ResetRequested | Issue::SecretLost | Issue::Revoked => {
            Source::Generated
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
    /// Issue a new password, from that source.
    Issue(Issue, Source),
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
    /// Whether the spec names a chosen password (`initialPasswordSecretRef`).
    pub chosen: bool,
}

pub fn plan(f: &ConsoleFacts) -> ConsolePlan {
    // `passwordSetAt` is a metav1.Time, stored with second precision.
    let set_at = f.status.password_set_at.as_ref().map(|t| t.0.as_second());
    let same_token = f.reset_token == f.status.reset_token.as_deref();
    let issue = |why| ConsolePlan::Issue(why, source(why, f.chosen));
    match (f.secret_password, same_token) {
        (true, false) => issue(Issue::ResetRequested),
        (true, true) if f.secret_stamp != set_at => ConsolePlan::SetFromSecret,
        (true, true) if !f.has_profile => issue(Issue::Revoked),
        (true, true) => ConsolePlan::Nothing,
        (false, _) if set_at.is_some() => issue(Issue::SecretLost),
        (false, _) if f.has_profile => ConsolePlan::Unmanaged,
        (false, _) if f.may_issue => issue(Issue::Enabled),
        (false, _) => ConsolePlan::Wait,
    }
}

/// The requirements a chosen password does not meet, as phrases completing "it ...":
/// the account password policy, or IAM's default one when the account has none (8 to 128
/// characters, three of the four kinds uppercase, lowercase, digits and symbols), plus what
/// the operator adds: not the user name, no tab or line break (which nobody can type at
/// the console sign-in; usually a trailing newline from `echo` or a file), and only the
/// characters IAM accepts. Empty when it meets them all. The phrases never quote the
/// password, any part of it or its length.
pub fn check_password(password: &str, policy: Option<&PasswordPolicy>, user: &str) -> Vec<String> {
    const MAX: usize = 128;
    let length = password.chars().count();
    let upper = password.chars().any(|c| c.is_ascii_uppercase());
    let lower = password.chars().any(|c| c.is_ascii_lowercase());
    let digit = password.chars().any(|c| c.is_ascii_digit());
    let symbol = password.bytes().any(|c| SYMBOLS.contains(&c));
    let symbols = String::from_utf8_lossy(SYMBOLS);
    let minimum = policy.map_or(8, |p| p.minimum_length as usize);
    let mut unmet = Vec::new();
    if length == 0 {
        unmet.push("is empty".to_string());
    } else if length < minimum {
        unmet.push(format!(
            "is shorter than the minimum of {minimum} characters"
        ));
    }
    if length > MAX {
        unmet.push(format!("is longer than the maximum of {MAX} characters"));
    }
    match policy {
        Some(p) => {
            let required = [
                (
                    p.require_uppercase,
                    upper,
                    "an uppercase letter (A-Z)".to_string(),
                ),
                (
                    p.require_lowercase,
                    lower,
                    "a lowercase letter (a-z)".to_string(),
                ),
                (p.require_numbers, digit, "a digit (0-9)".to_string()),
                (
                    p.require_symbols,
                    symbol,
                    format!("a symbol (one of {symbols})"),
                ),
            ];
            unmet.extend(
                required
                    .into_iter()
                    .filter(|(required, has, _)| *required && !has)
                    .map(|(_, _, what)| format!("needs {what}")),
            );
        }
        None if [upper, lower, digit, symbol]
            .iter()
            .filter(|has| **has)
            .count()
            < 3 =>
        {
            unmet.push(format!(
                "needs characters of at least three of the four kinds uppercase letters (A-Z), lowercase letters (a-z), digits (0-9) and symbols ({symbols})"
            ));
        }
        None => {}
    }
    if !user.is_empty() && password.eq_ignore_ascii_case(user) {
        unmet.push("must differ from the IAM user name".to_string());
    }
    if password.contains(['\t', '\n', '\r']) {
        unmet.push(
            "contains a tab or line break, which cannot be typed at the console sign-in (a trailing newline from `echo` or a file is the usual cause: use `kubectl create secret generic --from-literal`)"
                .to_string(),
        );
    }
    if password
        .chars()
        .any(|c| !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
    {
        unmet.push(
            "contains characters IAM does not accept in passwords (only U+0020 to U+00FF)"
                .to_string(),
        );
    }
    unmet
}

/// Which policy [`check_password`] applied, for messages.
fn policy_name(policy: Option<&PasswordPolicy>) -> &'static str {
    match policy {
        Some(_) => "the account password policy",
        None => "IAM's default password policy (the account has none of its own)",
    }
}

/// Where a chosen password lives, for messages: `Secret <namespace>/<name> key <key>`.
fn chosen_place(namespace: &str, r: &PasswordSecretRef) -> String {
    format!("Secret {namespace}/{} key {}", r.name, r.key)
}

/// The message for a chosen password that does not meet the policy.
fn unmet_message(place: &str, policy: Option<&PasswordPolicy>, unmet: &[String]) -> String {
    format!(
        "the chosen console password in {place} does not meet {}: it {}; change the value in {place}",
        policy_name(policy),
        unmet.join("; it ")
    )
}

/// Reads and checks the chosen password. A missing Secret or key waits (the Secret watch
/// wakes the user when it appears); a value that cannot be used stalls, saying what to fix.
async fn read_chosen(
    secrets: &dyn SecretStore,
    place: (&str, &PasswordSecretRef),
    policy: Option<&PasswordPolicy>,
    user: &str,
) -> Result<SecretString> {
    let (namespace, r) = place;
    let at = chosen_place(namespace, r);
    match secrets.read_input(&r.name, &r.key).await? {
        InputKey::NoSecret => Err(Error::DependencyNotReady(format!(
            "waiting for the chosen console password: Secret {namespace}/{} does not exist; create it with the password under key {}",
            r.name, r.key
        ))),
        InputKey::NoKey => Err(Error::DependencyNotReady(format!(
            "waiting for the chosen console password: Secret {namespace}/{} has no key {}; add the password under that key",
            r.name, r.key
        ))),
        InputKey::NotText => Err(Error::InvalidSpec(format!(
            "the chosen console password in {at} is not UTF-8 text; change the value in {at}"
        ))),
        InputKey::Value(password) => {
            let unmet = check_password(password.expose_secret(), policy, user);
            if unmet.is_empty() {
                Ok(password)
            } else {
                Err(Error::InvalidSpec(unmet_message(&at, policy, &unmet)))
            }
        }
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
        chosen: spec.initial_password_secret_ref.is_some(),
    });
    let namespace = obj.namespace().unwrap_or_default();

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
        ConsolePlan::Issue(issue, source) => {
            let policy = iam.password_policy().await?;
            let password = match (source, &spec.initial_password_secret_ref) {
                (Source::Chosen, Some(r)) => {
                    // Checked before anything is written: a refused or missing password
                    // leaves the console Secret and IAM as they are.
                    match read_chosen(step.secrets, (&namespace, r), policy.as_ref(), user).await {
                        Ok(password) => password,
                        Err(e) => {
                            step.status.console = Some(st);
                            return Err(e);
                        }
                    }
                }
                _ => generate_password(policy.as_ref()),
            };
            let stamp = Timestamp::now().to_string();
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
            (password, stamp, Some((issue, source)))
        }
    };
    let result = if has_profile {
        iam.update_login_profile(user, &password, reset_required)
            .await
    } else {
        iam.create_login_profile(user, &password, reset_required)
            .await
    };
    match result {
        Ok(()) => {}
        Err(IamError::Invalid(m)) => {
            let chosen = match issued {
                Some((_, Source::Chosen)) => spec.initial_password_secret_ref.as_ref(),
                _ => None,
            };
            if issued.is_some() {
                // IAM refused the new password, so it does not have it: the console Secret
                // goes back to what IAM has (the previous password, or none). It never shows
                // a password that cannot work, and the next attempt issues again (reading a
                // chosen password anew, once the person fixed it) instead of setting the
                // refused one from the console Secret forever.
                match &secret {
                    Some(previous) => step.secrets.put(&name, previous, false).await?,
                    None => step.secrets.delete(&name).await?,
                }
            }
            step.status.console = Some(st);
            return Err(match (chosen, issued) {
                (Some(r), _) => refused_chosen(&iam, user, &namespace, r, &password, &m).await,
                (None, Some(_)) => {
                    Error::InvalidSpec(format!("IAM rejected the generated console password: {m}"))
                }
                // Finishing an interrupted attempt with the password the console Secret
                // holds (generated or chosen): only a new password can help.
                (None, None) => Error::InvalidSpec(format!(
                    "IAM rejected the console password in Secret {name} that an interrupted attempt left to be set: {m}; request a new password by changing the {RESET_PASSWORD_ANNOTATION} annotation"
                )),
            });
        }
        Err(other) => return Err(other.into()),
    }
    let now = stamp.parse::<Timestamp>().ok().map(Time);
    st.password_set_at = now.clone();
    st.reset_token = token;
    let from = match (issued, &spec.initial_password_secret_ref) {
        (Some((_, Source::Chosen)), Some(r)) => {
            format!(" chosen in {}", chosen_place(&namespace, r))
        }
        _ => String::new(),
    };
    match issued.map(|(issue, _)| issue) {
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
                "Set a new console password{from} in Secret {name} ({})",
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

/// IAM refused a chosen password that passed [`check_password`]: the account password
/// policy changed in between. Checked again against the policy as it is now, to name what
/// to fix as [`check_password`] does; IAM's own sentence (which never holds the password)
/// when even that finds nothing.
async fn refused_chosen(
    iam: &std::sync::Arc<dyn crate::iam::Iam>,
    user: &str,
    namespace: &str,
    r: &PasswordSecretRef,
    password: &SecretString,
    refusal: &str,
) -> Error {
    let at = chosen_place(namespace, r);
    if let Ok(policy) = iam.password_policy().await {
        let unmet = check_password(password.expose_secret(), policy.as_ref(), user);
        if !unmet.is_empty() {
            return Error::InvalidSpec(unmet_message(&at, policy.as_ref(), &unmet));
        }
    }
    Error::InvalidSpec(format!(
        "IAM refused the chosen console password in {at}: {refusal}; change the value in {at}"
    ))
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
            chosen: false,
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
        assert_eq!(
            plan(&f),
            ConsolePlan::Issue(Issue::Revoked, Source::Generated)
        );
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
        assert_eq!(
            plan(&f),
            ConsolePlan::Issue(Issue::Enabled, Source::Generated)
        );
        f.may_issue = false;
        assert_eq!(plan(&f), ConsolePlan::Wait);
    }

    #[test]
    fn lost_secret_and_reset_annotation_issue_new_passwords() {
        let st = set_at(100);
        let mut f = facts(&st);
        f.reset_token = Some("1");
        assert_eq!(
            plan(&f),
            ConsolePlan::Issue(Issue::ResetRequested, Source::Generated)
        );
        f.reset_token = None;
        f.secret_password = false;
        f.may_issue = false;
        assert_eq!(
            plan(&f),
            ConsolePlan::Issue(Issue::SecretLost, Source::Generated)
        );
    }

    #[test]
    fn a_chosen_password_is_used_for_the_first_password_and_requested_resets_only() {
        // First password: console enabled, no Secret, no login profile.
        let st = ConsoleStatus::default();
        let mut f = facts(&st);
        f.chosen = true;
        f.secret_password = false;
        f.secret_stamp = None;
        f.has_profile = false;
        assert_eq!(plan(&f), ConsolePlan::Issue(Issue::Enabled, Source::Chosen));
        // Not before the identity converged, chosen or not.
        f.may_issue = false;
        assert_eq!(plan(&f), ConsolePlan::Wait);

        // Settled: a reset by annotation takes the (new) chosen value.
        let st = set_at(100);
        let mut f = facts(&st);
        f.chosen = true;
        assert_eq!(plan(&f), ConsolePlan::Nothing);
        f.reset_token = Some("2");
        assert_eq!(
            plan(&f),
            ConsolePlan::Issue(Issue::ResetRequested, Source::Chosen)
        );
        // A login profile deleted out of band: generated, never the chosen one again.
        f.reset_token = None;
        f.has_profile = false;
        assert_eq!(
            plan(&f),
            ConsolePlan::Issue(Issue::Revoked, Source::Generated)
        );
        // A lost console Secret: generated too.
        f.has_profile = true;
        f.secret_password = false;
        f.secret_stamp = None;
        assert_eq!(
            plan(&f),
            ConsolePlan::Issue(Issue::SecretLost, Source::Generated)
        );
        // An interrupted attempt is finished from the console Secret, which holds the copy.
        let st = set_at(50);
        let mut f = facts(&st);
        f.chosen = true;
        assert_eq!(plan(&f), ConsolePlan::SetFromSecret);
        // Without a chosen password, everything is generated.
        for issue in [
            Issue::Enabled,
            Issue::ResetRequested,
            Issue::SecretLost,
            Issue::Revoked,
        ] {
            assert_eq!(source(issue, false), Source::Generated);
        }
    }

    fn policy(minimum_length: u32) -> PasswordPolicy {
        PasswordPolicy {
            minimum_length,
            require_symbols: true,
            require_numbers: true,
            require_uppercase: true,
            require_lowercase: true,
            allow_users_to_change_password: true,
        }
    }

    #[test]
    fn chosen_passwords_are_checked_against_the_account_policy() {
        let p = policy(14);
        assert!(check_password("Tr0ub4dor&3-horse", Some(&p), "alice").is_empty());
        assert_eq!(
            check_password("tr0ub4dor&3", Some(&p), "alice"),
            [
                "is shorter than the minimum of 14 characters",
                "needs an uppercase letter (A-Z)"
            ]
        );
        assert_eq!(
            check_password("TROUBADOR-HORSE-X", Some(&p), "alice"),
            ["needs a lowercase letter (a-z)", "needs a digit (0-9)"]
        );
        // Only IAM's symbols count as symbols.
        assert_eq!(
            check_password("Troubador3horse.x", Some(&p), "alice"),
            ["needs a symbol (one of !@#$%^&*()_+-=[]{}|')"]
        );
        // Requirements the policy leaves off are not asked for.
        let lax = PasswordPolicy {
            minimum_length: 6,
            ..Default::default()
        };
        assert!(check_password("abcdef", Some(&lax), "alice").is_empty());
        assert_eq!(check_password("", Some(&lax), "alice"), ["is empty"]);
        let long = "Aa1!".repeat(33);
        assert_eq!(
            check_password(&long, Some(&p), "alice"),
            ["is longer than the maximum of 128 characters"]
        );
    }

    #[test]
    fn without_an_account_policy_iams_default_applies() {
        // 8 to 128 characters, three of the four kinds.
        assert!(check_password("Horse4ever", None, "alice").is_empty());
        assert!(check_password("horse4ever!", None, "alice").is_empty());
        assert_eq!(
            check_password("Hrs4!", None, "alice"),
            ["is shorter than the minimum of 8 characters"]
        );
        let unmet = check_password("horsesforever", None, "alice");
        assert_eq!(unmet.len(), 1);
        assert!(unmet[0].starts_with("needs characters of at least three of the four kinds"));
        assert_eq!(check_password("horses4ever", None, "alice").len(), 1);
    }

    #[test]
    fn the_user_name_line_breaks_and_foreign_characters_are_refused_whatever_the_policy() {
        let lax = PasswordPolicy {
            minimum_length: 6,
            ..Default::default()
        };
        assert_eq!(
            check_password("Alice-Admin1", Some(&lax), "alice-admin1"),
            ["must differ from the IAM user name"]
        );
        let newline = check_password("Horse4ever!\n", None, "alice");
        assert_eq!(newline.len(), 1);
        assert!(newline[0].starts_with("contains a tab or line break"));
        assert_eq!(
            check_password("Horse4ever!\u{263a}", None, "alice"),
            ["contains characters IAM does not accept in passwords (only U+0020 to U+00FF)"]
        );
        // Latin-1 letters are IAM characters.
        assert!(check_password("Hörse4ever!", None, "alice").is_empty());
    }

    #[test]
    fn messages_name_the_place_and_the_requirements_never_the_password() {
        let p = policy(14);
        let password = "tr0ub4dor&3";
        let unmet = check_password(password, Some(&p), "alice");
        let r = PasswordSecretRef {
            name: "alice-first".into(),
            key: "password".into(),
        };
        let message = unmet_message(&chosen_place("team-a", &r), Some(&p), &unmet);
        assert_eq!(
            message,
            "the chosen console password in Secret team-a/alice-first key password does not meet the account password policy: it is shorter than the minimum of 14 characters; it needs an uppercase letter (A-Z); change the value in Secret team-a/alice-first key password"
        );
        // Neither the password, a part of it of 3 characters or more, nor its length.
        let chars: Vec<char> = password.chars().collect();
        for part in chars.windows(3) {
            let part: String = part.iter().collect();
            assert!(!message.contains(&part), "{part:?} in {message}");
        }
        assert!(!message.contains(&password.len().to_string()));
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
