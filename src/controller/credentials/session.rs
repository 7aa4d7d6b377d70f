//! Session credentials of an IamRole (`spec.sessionCredentials`): the operator assumes the
//! role with its own identity (`sts:AssumeRole`) and publishes the temporary credentials in
//! a Secret, replacing them before they expire. [`decide`] decides (pure); [`reconcile`]
//! observes and applies; [`remove`] deletes (or keeps) the Secret.
//!
//! Unlike an access key, a session costs nothing and cannot be listed or revoked: a
//! session whose credentials were lost (the Secret write failed, the operator crashed) just
//! expires. So no intent is recorded before issuing: issue, publish, report.
//!
//! Secret values stay in `SecretString`/`SecretData` (redacted `Debug`) until they are
//! written into the Secret; they never reach logs, events, status or errors. The access
//! key id (`ASIA...`) is not secret: it is shown in status, as an access key's id is.

use crate::api::{IamRole, SessionCredentialsSpec, SessionCredentialsStatus};
use crate::error::{Error, Result};
use crate::iam::{Iam, SessionCredentials};
use crate::k8s::{SecretData, SecretStore, StoredSecret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::time::Duration;

/// Keys of the session Secret: the three environment variables the AWS SDKs and CLI read,
/// the expiry (RFC 3339), and an INI `credentials` file.
pub const SESSION_SECRET_DATA: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SESSION_EXPIRATION",
    "credentials",
];

/// Lifetime of a session when the spec does not say (STS's own default).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3600);
/// STS's bounds of `DurationSeconds`.
pub const MIN_DURATION: Duration = Duration::from_secs(900);
pub const MAX_DURATION: Duration = Duration::from_secs(43200);
/// Longest `RoleSessionName`.
const SESSION_NAME_MAX: usize = 64;

/// The Secret's name: `spec.sessionCredentials.secretName` or `<metadata.name>-aws-session`.
pub fn secret_name(obj: &IamRole) -> String {
    obj.spec
        .session_credentials
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| format!("{}-aws-session", obj.name_any()))
}

/// The session's lifetime from the spec, in whole seconds (what STS takes).
pub fn duration(spec: &SessionCredentialsSpec) -> Result<Duration, String> {
    let Some(text) = spec.duration.as_deref() else {
        return Ok(DEFAULT_DURATION);
    };
    let d = crate::limits::parse_duration("sessionCredentials.duration", text)?;
    let d = Duration::from_secs(d.as_secs());
    if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
        return Err(format!(
            "sessionCredentials.duration {text} is outside STS's limits of 15m to 12h: choose a duration in that range"
        ));
    }
    Ok(d)
}

/// `RoleSessionName` of an object: `<namespace>.<name>` (so CloudTrail shows which object
/// the session was for), characters outside `[\w+=,.@-]` replaced by `-`. Longer than 64
/// characters, it keeps its first 55 and adds a hash of the whole, so two long names do not
/// collide.
pub fn session_name(namespace: &str, name: &str) -> String {
    let full: String = format!("{namespace}.{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if full.len() <= SESSION_NAME_MAX {
        return full;
    }
    use std::hash::{DefaultHasher, Hash, Hasher};
    // A fixed hash (not randomly seeded) so the name is the same from run to run.
    let mut h = DefaultHasher::new();
    full.hash(&mut h);
    format!("{}-{:08x}", &full[..55], h.finish() as u32)
}

/// What [`decide`] needs of the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretView {
    /// `AWS_ACCESS_KEY_ID` as the Secret holds it.
    pub access_key_id: Option<String>,
    /// Whether it holds every key of [`SESSION_SECRET_DATA`].
    pub complete: bool,
}

impl SecretView {
    pub fn of(secret: &StoredSecret) -> Self {
        Self {
            access_key_id: secret.data.get(SESSION_SECRET_DATA[0]).map(str::to_string),
            complete: SESSION_SECRET_DATA
                .iter()
                .all(|k| secret.data.get(k).is_some_and(|v| !v.is_empty())),
        }
    }
}

/// Why new credentials are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// None were published yet (or the last ones were removed when they expired).
    NothingPublished,
    /// The Secret is gone (deleted, or renamed in the spec).
    SecretMissing,
    /// The Secret no longer holds the published credentials (edited).
    SecretChanged,
    /// `sessionCredentials.duration` changed.
    DurationChanged,
    /// Half of the published session's lifetime has passed.
    RefreshDue,
}

impl Why {
    /// A sentence for an event (no secret material).
    pub fn message(self) -> &'static str {
        match self {
            Why::NothingPublished => "Published session credentials",
            Why::SecretMissing => "Published session credentials again: their Secret was gone",
            Why::SecretChanged => {
                "Published session credentials again: their Secret had been edited"
            }
            Why::DurationChanged => {
                "Replaced the session credentials: sessionCredentials.duration changed"
            }
            Why::RefreshDue => {
                "Replaced the session credentials: half of their lifetime had passed"
            }
        }
    }
}

/// What to do with the published credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Issue(Why),
    /// They stay; look again at `requeue_at` (their refresh time).
    Keep {
        requeue_at: Timestamp,
    },
}

/// When credentials issued at `issued_at` that expire at `expires_at` are replaced: half
/// way through their lifetime. Half leaves the other half (at least 7.5 minutes, at STS's
/// 15-minute minimum) for retries when STS or the API server fails at refresh time, and
/// a consumer that re-reads the Secret (or the mounted file) periodically always has at
/// least that long before the credentials it holds expire.
pub fn refresh_at(issued_at: Timestamp, expires_at: Timestamp) -> Timestamp {
    let half = expires_at.duration_since(issued_at) / 2;
    issued_at.checked_add(half).unwrap_or(issued_at)
}

/// Whether the published credentials are (being) replaced: nothing published, the Secret
/// missing or not holding the published key, the duration changed, or the refresh time
/// reached. `want` is the spec's duration ([`duration`]).
pub fn decide(
    want: Duration,
    status: Option<&SessionCredentialsStatus>,
    secret: Option<&SecretView>,
    now: Timestamp,
) -> Decision {
    let published = status.and_then(|s| {
        Some((
            s.access_key_id.as_deref()?,
            s.issued_at.as_ref()?.0,
            s.expires_at.as_ref()?.0,
        ))
    });
    let Some((key_id, issued_at, expires_at)) = published else {
        return Decision::Issue(Why::NothingPublished);
    };
    let Some(secret) = secret else {
        return Decision::Issue(Why::SecretMissing);
    };
    if secret.access_key_id.as_deref() != Some(key_id) || !secret.complete {
        return Decision::Issue(Why::SecretChanged);
    }
    // `issued_at` is derived from STS's expiry (expiry - requested duration), so the
    // lifetime compares exactly, whatever the skew between this clock and STS's.
    if SignedDuration::try_from(want).ok() != Some(expires_at.duration_since(issued_at)) {
        return Decision::Issue(Why::DurationChanged);
    }
    let refresh = status
        .and_then(|s| s.refresh_at.as_ref())
        .map(|t| t.0)
        .unwrap_or_else(|| refresh_at(issued_at, expires_at));
    if now >= refresh {
        return Decision::Issue(Why::RefreshDue);
    }
    Decision::Keep {
        requeue_at: refresh,
    }
}

/// Whether the published credentials have expired at `now` (so they must not stay in the
/// Secret when no new ones can be issued).
pub fn expired(status: Option<&SessionCredentialsStatus>, now: Timestamp) -> bool {
    status
        .and_then(|s| s.expires_at.as_ref())
        .is_some_and(|t| now >= t.0)
}

/// The Secret's contents for `creds`.
pub fn secret_data(creds: &SessionCredentials) -> SecretData {
    let secret = creds.secret_access_key.expose_secret();
    let token = creds.session_token.expose_secret();
    let [id_key, secret_key, token_key, expiry_key, file_key] = SESSION_SECRET_DATA;
    SecretData(BTreeMap::from([
        (id_key.to_string(), creds.access_key_id.clone()),
        (secret_key.to_string(), secret.to_string()),
        (token_key.to_string(), token.to_string()),
        (expiry_key.to_string(), creds.expiration.to_string()),
        (file_key.to_string(), credentials_file(creds)),
    ]))
}

/// The INI `credentials` file the AWS SDKs and CLI read (`AWS_SHARED_CREDENTIALS_FILE`).
/// Session credentials need `aws_session_token` beside the key pair.
pub fn credentials_file(creds: &SessionCredentials) -> String {
    format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
        creds.access_key_id,
        creds.secret_access_key.expose_secret(),
        creds.session_token.expose_secret()
    )
}

/// Everything one session step works with.
pub struct SessionStep<'a> {
    /// The namespace's IAM port (`Engine::acting_for`): sessions are requested with the
    /// same identity as every other call for this namespace.
    pub iam: &'a dyn Iam,
    /// The IamRole's Secrets (`KubeSecrets::for_owner`).
    pub secrets: &'a dyn SecretStore,
    pub obj: &'a IamRole,
    /// ARN of the role in IAM (which must exist, with a trust allowing the operator).
    pub role_arn: &'a str,
    pub now: Timestamp,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct SessionOutcome {
    /// When to reconcile again at the latest: the refresh time; after a failure, the
    /// published credentials' expiry (so they are removed in time if STS still refuses).
    pub requeue_at: Option<Timestamp>,
    /// New credentials were published, and why (for an event).
    pub issued: Option<Why>,
    /// Credentials could not be issued (Ready False with this message). The message says
    /// whether the published ones stay valid or were removed.
    pub error: Option<Error>,
}

/// Publishes or refreshes the session credentials and updates `status` (the IamRole's
/// `status.sessionCredentials`). Call after the role and its trust are in place, when
/// `spec.sessionCredentials` is set. `Err` is a failure to read or write the Secret; a
/// refusal by STS is reported in [`SessionOutcome::error`] with `status` updated.
pub async fn reconcile(
    step: &SessionStep<'_>,
    status: &mut Option<SessionCredentialsStatus>,
) -> Result<SessionOutcome> {
    let spec = step
        .obj
        .spec
        .session_credentials
        .clone()
        .unwrap_or(SessionCredentialsSpec {
            secret_name: None,
            duration: None,
        });
    let want = duration(&spec).map_err(Error::InvalidSpec)?;
    let name = secret_name(step.obj);
    let secret = step.secrets.get(&name).await?;
    let view = secret.as_ref().map(SecretView::of);
    let why = match decide(want, status.as_ref(), view.as_ref(), step.now) {
        Decision::Keep { requeue_at } => {
            return Ok(SessionOutcome {
                requeue_at: Some(requeue_at),
                ..Default::default()
            });
        }
        Decision::Issue(why) => why,
    };
    let session = session_name(
        &step.obj.namespace().unwrap_or_default(),
        &step.obj.name_any(),
    );
    let creds = match step
        .iam
        .assume_role_session(step.role_arn, &session, want)
        .await
    {
        Ok(creds) => creds,
        Err(e) => return failed(step, status, &name, secret, e.into()).await,
    };
    step.secrets
        .put(
            &name,
            &StoredSecret {
                data: secret_data(&creds),
                annotations: Default::default(),
            },
            false,
        )
        .await?;
    // The old Secret of a renamed secretName: its credentials are replaced, not moved.
    if let Some(old) = status.as_ref().and_then(|s| s.secret_name.clone())
        && old != name
    {
        step.secrets.delete(&old).await?;
    }
    // Issued when STS says: its expiry minus the duration asked for (see `decide`).
    let expires_at = creds.expiration;
    let issued_at = SignedDuration::try_from(want)
        .ok()
        .and_then(|d| expires_at.checked_sub(d).ok())
        .unwrap_or(step.now);
    let refresh = refresh_at(issued_at, expires_at);
    tracing::info!(
        secret = %name,
        access_key_id = %creds.access_key_id,
        expires_at = %expires_at,
        refresh_at = %refresh,
        reason = ?why,
        "published session credentials"
    );
    *status = Some(SessionCredentialsStatus {
        secret_name: Some(name),
        access_key_id: Some(creds.access_key_id.clone()),
        issued_at: Some(Time(issued_at)),
        expires_at: Some(Time(expires_at)),
        refresh_at: Some(Time(refresh)),
    });
    Ok(SessionOutcome {
        requeue_at: Some(refresh),
        issued: Some(why),
        error: None,
    })
}

/// STS refused (or failed): keep credentials that still work, and requeue before they
/// expire; remove expired ones from the Secret, never leaving them there.
async fn failed(
    step: &SessionStep<'_>,
    status: &mut Option<SessionCredentialsStatus>,
    name: &str,
    secret: Option<StoredSecret>,
    error: Error,
) -> Result<SessionOutcome> {
    // When what is published expires: as status records it or, should status have been
    // lost after a publish, as the Secret says.
    let expiry = status
        .as_ref()
        .and_then(|s| s.expires_at.as_ref())
        .map(|t| t.0)
        .or_else(|| {
            let secret = secret.as_ref()?;
            secret.data.get(SESSION_SECRET_DATA[3])?.parse().ok()
        });
    let message = match expiry {
        Some(expires) if step.now < expires => {
            return Ok(SessionOutcome {
                requeue_at: Some(expires),
                issued: None,
                error: Some(with_message(
                    error,
                    format!("the published session credentials stay valid until {expires}"),
                )),
            });
        }
        Some(expires) => format!(
            "the session credentials expired at {expires} and were removed from Secret {name}"
        ),
        None => "no session credentials are published".to_string(),
    };
    // Remove the credential keys (an apply without them), keeping the Secret so that a
    // workload mounting it keeps starting; nothing that works is lost.
    let holds_credentials = secret
        .as_ref()
        .is_some_and(|s| SESSION_SECRET_DATA.iter().any(|k| s.data.get(k).is_some()));
    if holds_credentials {
        step.secrets
            .put(name, &StoredSecret::default(), false)
            .await?;
    }
    if let Some(st) = status.as_mut() {
        st.access_key_id = None;
        st.issued_at = None;
        st.refresh_at = None;
    }
    Ok(SessionOutcome {
        requeue_at: None,
        issued: None,
        error: Some(with_message(error, message)),
    })
}

/// `error` with a sentence appended, keeping its kind (and so its reason and severity).
fn with_message(error: Error, more: String) -> Error {
    use crate::iam::IamError as E;
    let add = |m: String| format!("{m}; {more}");
    match error {
        Error::Iam(e) => Error::Iam(match e {
            E::NotFound(m) => E::NotFound(add(m)),
            E::AlreadyExists(m) => E::AlreadyExists(add(m)),
            E::Conflict(m) => E::Conflict(add(m)),
            E::LimitExceeded(m) => E::LimitExceeded(add(m)),
            E::MalformedPolicy(m) => E::MalformedPolicy(add(m)),
            E::AccessDenied(m) => E::AccessDenied(add(m)),
            E::Throttled(m) => E::Throttled(add(m)),
            E::Transient(m) => E::Transient(add(m)),
            E::Invalid(m) => E::Invalid(add(m)),
        }),
        Error::InvalidSpec(m) => Error::InvalidSpec(add(m)),
        Error::NameConflict(m) => Error::NameConflict(add(m)),
        Error::DependencyNotReady(m) => Error::DependencyNotReady(add(m)),
        Error::SecretConflict(m) => Error::SecretConflict(add(m)),
        Error::LimitExceeded(m) => Error::LimitExceeded(add(m)),
        other @ Error::Kube(_) => other,
    }
}

/// Deletes the session Secret(s) when `spec.sessionCredentials` is removed, or when the
/// IamRole is deleted with `Delete`; with `retain` (the IamRole deleted with `Retain`) the
/// Secret is kept, without its owner reference so that it is not garbage-collected.
pub async fn remove(
    secrets: &dyn SecretStore,
    obj: &IamRole,
    status: Option<&SessionCredentialsStatus>,
    retain: bool,
) -> Result<()> {
    let mut names = vec![secret_name(obj)];
    if let Some(published) = status.and_then(|s| s.secret_name.clone())
        && !names.contains(&published)
    {
        names.push(published);
    }
    for name in &names {
        if retain {
            secrets.orphan(name).await?;
        } else {
            secrets.delete(name).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// Published at `issued` (seconds) for `lifetime`, key `ASIA1`.
    fn status(issued: i64, lifetime: i64) -> SessionCredentialsStatus {
        SessionCredentialsStatus {
            secret_name: Some("r-aws-session".into()),
            access_key_id: Some("ASIA1".into()),
            issued_at: Some(Time(at(issued))),
            expires_at: Some(Time(at(issued + lifetime))),
            refresh_at: Some(Time(refresh_at(at(issued), at(issued + lifetime)))),
        }
    }

    fn holding(id: &str) -> SecretView {
        SecretView {
            access_key_id: Some(id.into()),
            complete: true,
        }
    }

    #[test]
    fn refresh_is_at_half_the_lifetime() {
        assert_eq!(refresh_at(at(0), at(3600)), at(1800));
        assert_eq!(refresh_at(at(100), at(1000)), at(550));
    }

    #[test]
    fn nothing_published_issues() {
        assert_eq!(
            decide(HOUR, None, None, at(0)),
            Decision::Issue(Why::NothingPublished)
        );
        // Removed after expiry: the key id is gone from status.
        let mut cleared = status(0, 3600);
        cleared.access_key_id = None;
        assert_eq!(
            decide(HOUR, Some(&cleared), Some(&holding("ASIA1")), at(10)),
            Decision::Issue(Why::NothingPublished)
        );
    }

    #[test]
    fn a_missing_or_edited_secret_issues() {
        let st = status(0, 3600);
        assert_eq!(
            decide(HOUR, Some(&st), None, at(10)),
            Decision::Issue(Why::SecretMissing)
        );
        assert_eq!(
            decide(HOUR, Some(&st), Some(&holding("ASIA2")), at(10)),
            Decision::Issue(Why::SecretChanged)
        );
        let partial = SecretView {
            access_key_id: Some("ASIA1".into()),
            complete: false,
        };
        assert_eq!(
            decide(HOUR, Some(&st), Some(&partial), at(10)),
            Decision::Issue(Why::SecretChanged)
        );
    }

    #[test]
    fn a_changed_duration_issues() {
        let st = status(0, 3600);
        assert_eq!(
            decide(2 * HOUR, Some(&st), Some(&holding("ASIA1")), at(10)),
            Decision::Issue(Why::DurationChanged)
        );
        assert_eq!(
            decide(
                Duration::from_secs(900),
                Some(&st),
                Some(&holding("ASIA1")),
                at(10)
            ),
            Decision::Issue(Why::DurationChanged)
        );
    }

    #[test]
    fn credentials_are_kept_until_half_their_lifetime_then_replaced() {
        let st = status(0, 3600);
        let secret = holding("ASIA1");
        for now in [0, 10, 1799] {
            assert_eq!(
                decide(HOUR, Some(&st), Some(&secret), at(now)),
                Decision::Keep {
                    requeue_at: at(1800)
                },
                "at {now}s"
            );
        }
        for now in [1800, 3599, 3600, 99_999] {
            assert_eq!(
                decide(HOUR, Some(&st), Some(&secret), at(now)),
                Decision::Issue(Why::RefreshDue),
                "at {now}s"
            );
        }
        // A status without refreshAt (written by hand): computed the same way.
        let mut bare = st.clone();
        bare.refresh_at = None;
        assert_eq!(
            decide(HOUR, Some(&bare), Some(&secret), at(1799)),
            Decision::Keep {
                requeue_at: at(1800)
            }
        );
        assert_eq!(
            decide(HOUR, Some(&bare), Some(&secret), at(1800)),
            Decision::Issue(Why::RefreshDue)
        );
    }

    #[test]
    fn expiry_is_reached_at_expires_at() {
        let st = status(0, 3600);
        assert!(!expired(Some(&st), at(3599)));
        assert!(expired(Some(&st), at(3600)));
        assert!(!expired(None, at(99_999)));
    }

    fn creds() -> SessionCredentials {
        SessionCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: SecretString::from("s3cr3t/value+x"),
            session_token: SecretString::from("t0ken=="),
            expiration: "2027-01-15T10:30:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn the_credentials_file_holds_the_session_token() {
        assert_eq!(
            credentials_file(&creds()),
            "[default]\naws_access_key_id = ASIAEXAMPLE\naws_secret_access_key = s3cr3t/value+x\naws_session_token = t0ken==\n"
        );
        let data = secret_data(&creds());
        assert_eq!(data.0.keys().map(String::as_str).collect::<Vec<_>>(), {
            let mut keys = SESSION_SECRET_DATA.to_vec();
            keys.sort();
            keys
        });
        assert_eq!(
            data.get("AWS_SESSION_EXPIRATION"),
            Some("2027-01-15T10:30:00Z")
        );
        assert_eq!(data.get("AWS_SESSION_TOKEN"), Some("t0ken=="));
        assert_eq!(data.get("AWS_SECRET_ACCESS_KEY"), Some("s3cr3t/value+x"));
        assert!(
            SecretView::of(&StoredSecret {
                data,
                annotations: Default::default()
            })
            .complete
        );
        // Debug of the credentials never shows the secret or the token.
        let shown = format!("{:?}", creds());
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0ken"),
            "{shown}"
        );
    }

    #[test]
    fn session_names_are_valid_for_sts() {
        assert_eq!(session_name("team-a", "app"), "team-a.app");
        let long = session_name(&"n".repeat(63), &"x".repeat(63));
        assert_eq!(long.len(), 64);
        assert_ne!(long, session_name(&"n".repeat(63), &"y".repeat(63)));
        assert_eq!(session_name("a", "b c/d"), "a.b-c-d");
        let valid = |s: &str| {
            (2..=64).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        };
        assert!(valid(&long) && valid(&session_name("ns", "name")));
    }

    #[test]
    fn durations_default_to_an_hour_within_stss_limits() {
        let spec = |d: Option<&str>| SessionCredentialsSpec {
            secret_name: None,
            duration: d.map(str::to_string),
        };
        assert_eq!(duration(&spec(None)), Ok(HOUR));
        assert_eq!(duration(&spec(Some("90m"))), Ok(Duration::from_secs(5400)));
        assert_eq!(duration(&spec(Some("15m"))), Ok(MIN_DURATION));
        assert!(
            duration(&spec(Some("14m")))
                .unwrap_err()
                .contains("15m to 12h")
        );
        assert!(
            duration(&spec(Some("13h")))
                .unwrap_err()
                .contains("15m to 12h")
        );
        assert!(duration(&spec(Some("soon"))).is_err());
    }
}
