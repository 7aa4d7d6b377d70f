//! The access-key protocol: [`plan`] decides (pure), [`sync`] observes and applies.
//!
//! IAM reveals a secret access key once and allows two keys per user, so the protocol never
//! loses one and never leaves one behind:
//! 1. before `CreateAccessKey`, the ids of the keys that already exist and the moment are
//!    recorded in status (the intent, fenced by `resourceVersion`), and the Secret write is
//!    validated with a dry run;
//! 2. the new key goes into the Secret at once, then into status;
//! 3. `CreateAccessKey` is attempted once, never retried by the SDK (a retry after a lost
//!    response would make a second key whose secret nobody sees); a key that is neither
//!    published nor existed before the creation was made by a failed or interrupted
//!    attempt and is deleted. The record of the keys that existed before stays in status
//!    after the creation, so such a key is recognised even when IAM lists it late;
//! 4. a Secret that is gone or whose key id was edited means the key is lost: a new one is
//!    published and the lost one deleted;
//! 5. a published key found Inactive was deactivated out of band (a responder's answer to
//!    a leak): it is never reactivated; a fresh key is published and the revoked one
//!    deleted;
//! 6. rotation publishes a new key and keeps the previous one Active for the grace period,
//!    then deactivates and deletes it;
//! 7. keys the operator did not create are never touched: they are reported in status,
//!    and counted against IAM's limit of two.

use super::{CredentialStep, KEY_SECRET_DATA};
use crate::api::{AccessKeySpec, AccessKeyStatus, ROTATE_KEY_ANNOTATION, RevokedKey};
use crate::controller::{Reason, Synced};
use crate::error::{Error, Result};
use crate::iam::{AccessKeyInfo, IamError, KeyStatus, NewAccessKey, gone};
use crate::k8s::{SecretData, StoredSecret};
use crate::limits;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long after a creation that followed a failed attempt the keys are listed again: the
/// failed attempt may have made a key that IAM's reads, which lag its writes by seconds, did
/// not show yet.
const SWEEP_AFTER: Duration = Duration::from_secs(30);

/// How long after its creation the published key may still be missing from IAM's listings:
/// IAM's reads lag its writes (seconds in practice), so `ListAccessKeys` right after a
/// `CreateAccessKey` may not show the new key yet.
const LISTING_LAG: Duration = Duration::from_secs(30);

/// The keys as IAM lists them, plus the published key when the listing does not show it
/// yet: created by this resource less than [`LISTING_LAG`] ago, and still in the Secret. Without
/// it, a lagging listing would make the new key look deleted out of band, and the protocol
/// would publish yet another key and report a revocation that never happened. Also returns
/// when to look again, so a key really deleted that early is still found out.
pub fn with_unlisted_published(
    listed: Vec<AccessKeyInfo>,
    status: &AccessKeyStatus,
    secret_key_id: Option<&str>,
    now: Timestamp,
) -> (Vec<AccessKeyInfo>, Option<Duration>) {
    let (Some(id), Some(created)) = (status.access_key_id.as_deref(), &status.created_at) else {
        return (listed, None);
    };
    let age = now.duration_since(created.0);
    let recent = SignedDuration::try_from(LISTING_LAG).is_ok_and(|lag| age < lag);
    if !recent
        || status.creating_since.is_some()
        || secret_key_id != Some(id)
        || listed.iter().any(|k| k.id == id)
    {
        return (listed, None);
    }
    let mut keys = listed;
    keys.push(AccessKeyInfo {
        id: id.to_string(),
        // A key is created Active; only the operator deactivates its own keys, and it
        // never does so to the published one.
        status: KeyStatus::Active,
        created: created.0,
    });
    (keys, Some(until(now, after(created.0, LISTING_LAG))))
}

/// The timing of rotation, checked as admission does (for objects admitted before the
/// schema had these rules).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub rotate_after: Option<Duration>,
    pub grace: Duration,
}

impl Timing {
    pub fn from_spec(spec: &AccessKeySpec) -> Result<Self> {
        limits::check_access_key_timing(spec).map_err(Error::InvalidSpec)?;
        let parse = |field, text: &Option<String>| {
            text.as_deref()
                .map(|t| limits::parse_duration(field, t))
                .transpose()
                .map_err(Error::InvalidSpec)
        };
        Ok(Self {
            rotate_after: parse("rotateAfter", &spec.rotate_after)?,
            grace: parse("gracePeriod", &spec.grace_period)?
                .unwrap_or(limits::DEFAULT_GRACE_PERIOD),
        })
    }
}

/// What the access-key step must do.
#[derive(Debug, Default, PartialEq)]
pub struct KeyPlan {
    /// The key consumers hold: in the Secret, in IAM, and created by this resource.
    pub live: Option<String>,
    /// Keys to delete before anything else: leftovers of this resource's creations, expired
    /// or revoked previous keys, and whatever must go to stay within two keys.
    pub delete_first: Vec<String>,
    /// Publish a new key, and why.
    pub create: Option<&'static str>,
    /// The published key whose Secret was lost or edited: deleted once a new key is out.
    pub lost: Option<String>,
    /// The published key, deactivated out of band: deleted once a new key is out.
    pub revoked: Option<String>,
    /// The published key, deleted out of band: replaced, and said so.
    pub vanished: Option<String>,
    /// A published key replaced by an interrupted rotation: it becomes the previous key.
    pub demote: Option<String>,
    /// Keys this resource did not create; never touched.
    pub unmanaged: Vec<String>,
    /// Unmanaged keys that block creation at IAM's limit of two.
    pub blocking: Vec<String>,
}

/// Inputs of [`plan`].
pub struct KeyFacts<'a> {
    pub keys: &'a [AccessKeyInfo],
    pub status: &'a AccessKeyStatus,
    /// Key id in the Secret, if the Secret exists.
    pub secret_key_id: Option<&'a str>,
    pub rotate_after: Option<Duration>,
    pub rotation_token: Option<&'a str>,
    pub now: Timestamp,
    /// Whether a first key may be issued (the user's identity converged). Replacing a
    /// published key (rotation, lost or revoked) is always allowed.
    pub may_issue: bool,
}

/// Pure decision of the access-key protocol. Never plans to delete a key this resource did
/// not create, never reactivates a key, and never lets the user exceed two keys.
pub fn plan(f: &KeyFacts) -> KeyPlan {
    let mut plan = KeyPlan::default();
    let find = |id: &str| f.keys.iter().find(|k| k.id == id);
    let st = f.status;
    let published = st.access_key_id.as_deref().filter(|id| find(id).is_some());
    let previous = st
        .previous_access_key_id
        .as_deref()
        .filter(|id| find(id).is_some());
    let before = st.keys_before_creation.as_ref();
    let pending = st.creating_since.is_some();
    let existed_before = |id: &str| before.is_none_or(|b| b.iter().any(|x| x == id));
    // A key this resource's last creation made: any new key while the creation is
    // pending; afterwards, one created before the key it published (an attempt that failed
    // or was interrupted, listed late because IAM's reads lag). A key created at the same
    // time or later was made by someone else: IAM's timestamps have second precision, so a
    // key made outside the operator within the same second as its own is left alone.
    let published_at = st.created_at.as_ref().map(|t| t.0);
    let from_creation = |k: &AccessKeyInfo| {
        !existed_before(&k.id) && (pending || published_at.is_some_and(|at| k.created < at))
    };
    // With no record at all (status lost), the Secret this resource owns is trusted.
    let no_record = st.access_key_id.is_none() && previous.is_none() && before.is_none();
    let live = f
        .secret_key_id
        .and_then(find)
        .filter(|k| Some(k.id.as_str()) == published || (pending && from_creation(k)) || no_record);
    plan.live = live.map(|k| k.id.clone());
    let live_id = live.map(|k| k.id.as_str());
    let ours = |id: &str| Some(id) == live_id || Some(id) == published || Some(id) == previous;

    for k in f.keys {
        if ours(&k.id) {
            continue;
        }
        if from_creation(k) {
            plan.delete_first.push(k.id.clone());
        } else {
            plan.unmanaged.push(k.id.clone());
        }
    }
    match (published, live_id) {
        (Some(p), Some(l)) if p != l => plan.demote = Some(p.to_string()),
        (Some(p), None) => plan.lost = Some(p.to_string()),
        _ => {}
    }
    if let Some(prev) = previous.filter(|p| Some(*p) != live_id) {
        let expired = st
            .previous_key_expires_at
            .as_ref()
            .is_none_or(|t| f.now >= t.0);
        // Deactivated before its grace ended: not by this operator, so revoked.
        let revoked = find(prev).is_some_and(|k| k.status == KeyStatus::Inactive);
        if expired || revoked {
            plan.delete_first.push(prev.to_string());
        }
    }

    // The published key is gone from IAM: deleted outside the operator.
    if st.access_key_id.is_some() && published.is_none() && !pending {
        plan.vanished = st.access_key_id.clone();
    }
    match live {
        // Replacing a published key is always allowed; a first one needs may_issue.
        None if st.access_key_id.is_some() || f.may_issue => {
            plan.create = Some("no usable access key is published");
        }
        None => {}
        Some(k) if k.status == KeyStatus::Inactive => {
            plan.revoked = Some(k.id.clone());
            plan.create = Some("the published key was deactivated out of band");
        }
        Some(k) => {
            let age = f.now.duration_since(k.created);
            let too_old = f
                .rotate_after
                .is_some_and(|max| SignedDuration::try_from(max).is_ok_and(|max| age >= max));
            if f.rotation_token.is_some() && f.rotation_token != st.rotation_token.as_deref() {
                plan.create = Some("rotation requested by annotation");
            } else if too_old {
                plan.create = Some("the key is older than rotateAfter");
            }
        }
    }

    if plan.create.is_some() {
        let kept = |p: &KeyPlan| {
            f.keys
                .iter()
                .filter(|k| !p.delete_first.contains(&k.id))
                .count()
        };
        // Make room with this resource's own keys: a revoked one (it works no more), the
        // previous one (a rotation cut short beats exceeding the limit), then a lost one.
        let candidates = [
            plan.revoked.clone(),
            previous.filter(|p| Some(*p) != live_id).map(str::to_string),
            plan.lost.clone(),
        ];
        for candidate in candidates.into_iter().flatten() {
            if kept(&plan) >= 2 && !plan.delete_first.contains(&candidate) {
                plan.delete_first.push(candidate);
            }
        }
        if kept(&plan) >= 2 {
            plan.blocking = plan.unmanaged.clone();
            plan.create = None;
        }
    }
    plan.delete_first.sort();
    plan.delete_first.dedup();
    plan
}

/// How many times one reconcile sends CreateAccessKey while IAM answers `Throttling`.
const CREATE_KEY_TRIES: u32 = 4;

/// CreateAccessKey, sent again (after 0.5, 1 and 2 s, plus jitter) while IAM answers it
/// with `Throttling`. The IAM port sends it once, never retried by the SDK (a retry after
/// a lost response would make a second key); a throttled answer, though, is a refusal
/// given before IAM acts, so sending it again cannot make a second key. Without this, every
/// throttled CreateAccessKey failed the reconcile, and its retry read the whole user again.
async fn create_key(iam: &dyn crate::iam::Iam, user: &str) -> crate::iam::IamResult<NewAccessKey> {
    let mut tries = 1;
    loop {
        match iam.create_access_key(user).await {
            Err(IamError::Throttled(_)) if tries < CREATE_KEY_TRIES => {
                let base = 250u64 << tries;
                let jitter = rand::random::<u64>() % base;
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Whether a failed CreateAccessKey certainly made no key: IAM answered the single
/// attempt with a refusal it gives before acting (throttled, denied, no such user, invalid).
/// Anything else (a 5xx, a timeout, a lost response, IAM's limit hit by a key not listed
/// yet) may hide a key, and keeps the intent.
pub fn refused_without_effect(e: &IamError) -> bool {
    matches!(
        e,
        IamError::Throttled(_)
            | IamError::AccessDenied(_)
            | IamError::NotFound(_)
            | IamError::Invalid(_)
    )
}

fn keys_left(keys: &[AccessKeyInfo], plan: &KeyPlan) -> usize {
    keys.iter()
        .filter(|k| !plan.delete_first.contains(&k.id))
        .count()
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now))
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1))
}

fn secret_data(key: &NewAccessKey) -> SecretData {
    let secret = key.secret.expose_secret();
    let ini = format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.id, secret
    );
    let [id, secret_key, file] = KEY_SECRET_DATA;
    SecretData(BTreeMap::from([
        (id.to_string(), key.id.clone()),
        (secret_key.to_string(), secret.to_string()),
        (file.to_string(), ini),
    ]))
}

/// Removes every key this resource created, and its Secret (`accessKey.enabled: false`).
/// Keys left by an interrupted creation go too; keys it did not create stay.
async fn disable(
    step: &CredentialStep<'_>,
    st: AccessKeyStatus,
    synced: &mut Synced,
) -> Result<()> {
    let (iam, user) = (&step.engine.iam, step.user);
    let mut ids: Vec<String> = [st.access_key_id.clone(), st.previous_access_key_id.clone()]
        .into_iter()
        .flatten()
        .collect();
    if st.creating_since.is_some()
        && let Some(before) = &st.keys_before_creation
    {
        for k in step.access_keys().await? {
            if !before.contains(&k.id) && !ids.contains(&k.id) {
                ids.push(k.id);
            }
        }
    }
    for id in &ids {
        gone(iam.delete_access_key(user, id).await)?;
    }
    if let Some(secret) = &st.secret_name {
        step.secrets.delete(secret).await?;
    }
    synced.note(
        Reason::AccessKeyDisabled,
        "Deleted the access key and its Secret",
    );
    Ok(())
}

/// Observes the keys, the Secret and the status, plans, and applies. Returns the ids of
/// keys on the user that this resource did not create.
pub async fn sync(step: &mut CredentialStep<'_>, synced: &mut Synced) -> Result<Vec<String>> {
    let obj = step.obj;
    let spec = obj
        .spec
        .access_key
        .as_ref()
        .filter(|a| a.enabled && step.keys_allowed);
    let Some(spec) = spec else {
        if let Some(st) = step.status.access_key.take() {
            disable(step, st, synced).await?;
        }
        let keys = step.access_keys().await?;
        return Ok(keys.into_iter().map(|k| k.id).collect());
    };
    // An invalid timing still lets the protective actions run (previous keys expire,
    // revoked keys are replaced); only rotation by age waits for a fix.
    let (timing, timing_error) = match Timing::from_spec(spec) {
        Ok(t) => (t, None),
        Err(e) => (
            Timing {
                rotate_after: None,
                grace: limits::DEFAULT_GRACE_PERIOD,
            },
            Some(e),
        ),
    };
    let name = super::access_key_secret_name(obj);
    let mut st = step.status.access_key.clone().unwrap_or_default();
    // An intent still pending: the previous attempt failed or was interrupted.
    let after_failed_attempt = st.creating_since.is_some();
    step.carry_over_renamed_secret(st.secret_name.as_deref(), &name)
        .await?;
    st.secret_name = Some(name.clone());

    // Observe.
    let iam = step.engine.iam.clone();
    let user = step.user;
    let secret = step.secrets.get(&name).await?;
    let secret_key_id = secret
        .as_ref()
        .and_then(|s| s.data.get(KEY_SECRET_DATA[0]).map(str::to_string));
    let token = obj.annotations().get(ROTATE_KEY_ANNOTATION).cloned();
    let now = Timestamp::now();
    // A user created by this reconcile has no keys (IAM's answer to CreateUser says so);
    // whatever the status says was published belonged to a user of this name that is gone.
    let (keys, look_again) = match step.created {
        true => (Vec::new(), None),
        false => with_unlisted_published(
            step.access_keys().await?,
            &st,
            secret_key_id.as_deref(),
            now,
        ),
    };
    if let Some(after) = look_again {
        synced.requeue_within(after);
    }

    // Plan.
    let plan = plan(&KeyFacts {
        keys: &keys,
        status: &st,
        secret_key_id: secret_key_id.as_deref(),
        rotate_after: timing.rotate_after,
        rotation_token: token.as_deref(),
        now,
        may_issue: step.may_issue && step.key_refusal.is_none(),
    });

    // Apply: deletions first.
    for id in &plan.delete_first {
        // The previous key is deactivated first, so that it stops working at the end of
        // its grace period even if the delete fails and waits for a retry.
        if st.previous_access_key_id.as_ref() == Some(id) {
            gone(iam.update_access_key(user, id, KeyStatus::Inactive).await)?;
        }
        gone(iam.delete_access_key(user, id).await)?;
    }
    if !plan.delete_first.is_empty() {
        synced.note(
            Reason::AccessKeysDeleted,
            format!("Deleted access keys {}", plan.delete_first.join(", ")),
        );
    }
    let exists = |id: &String| keys.iter().any(|k| &k.id == id) && !plan.delete_first.contains(id);
    // Forget a previous key that is gone, whether deleted just now or out of band.
    if st
        .previous_access_key_id
        .as_ref()
        .is_some_and(|p| !exists(p))
    {
        st.previous_access_key_id = None;
        st.previous_key_expires_at = None;
    }
    // Adopt what the Secret holds (an interrupted creation that did publish).
    if let Some(id) = &plan.live
        && st.access_key_id.as_ref() != Some(id)
    {
        st.access_key_id = Some(id.clone());
        st.created_at = keys.iter().find(|k| &k.id == id).map(|k| Time(k.created));
        st.rotation_token = token.clone();
        st.creating_since = None;
    }
    if let Some(prev) = &plan.demote {
        st.previous_access_key_id = Some(prev.clone());
        st.previous_key_expires_at = Some(Time(after(now, timing.grace)));
    }
    if plan.create.is_none() {
        st.creating_since = None;
    }

    if !plan.blocking.is_empty() {
        step.status.access_key = Some(st);
        return Err(Error::LimitExceeded(format!(
            "IAM user {user} already has two access keys and {} not created by this resource; delete one so a key can be published",
            match plan.blocking.as_slice() {
                [one] => format!("{one} is"),
                many => format!("{} are", many.join(" and ")),
            }
        )));
    }

    if let Some(why) = plan.create {
        // Validate the Secret write before creating anything that must not be lost.
        step.secrets
            .put(&name, &StoredSecret::default(), true)
            .await?;
        // Record the intent durably; a conflict here means this reconcile worked from an
        // outdated copy: nothing has been created yet, and it starts over.
        st.keys_before_creation = Some(
            keys.iter()
                .filter(|k| !plan.delete_first.contains(&k.id))
                .map(|k| k.id.clone())
                .collect(),
        );
        st.creating_since = Some(Time(now));
        step.status.access_key = Some(st.clone());
        step.journal.record(step.status).await?;
        crate::failpoint::hit("after-record-intent");

        // The plan made room, so IAM's limit here means a key the listing did not show yet
        // (one a failed attempt made, listed late): the intent is pending, and the retry
        // finds and deletes that key.
        let key = match create_key(iam.as_ref(), user).await {
            Ok(key) => key,
            Err(e) => {
                if refused_without_effect(&e) {
                    // IAM refused the one attempt (the call is never retried): no key was
                    // made, so the intent is withdrawn (written with the status after this
                    // reconcile) and the next attempt is a plain one, without the sweep
                    // for keys of a failed attempt 30 s later. Should that status write
                    // fail, the intent stays and the sweep runs: the safe side.
                    st.creating_since = None;
                    st.keys_before_creation = None;
                    step.status.access_key = Some(st);
                }
                return Err(match e {
                    IamError::LimitExceeded(m) => Error::Iam(IamError::Transient(format!(
                        "IAM refused a new access key although only {} were listed ({m}); a key made by an earlier attempt is not listed yet, retrying",
                        keys_left(&keys, &plan)
                    ))),
                    other => other.into(),
                });
            }
        };
        crate::failpoint::hit("after-create-access-key");
        step.secrets
            .put(
                &name,
                &StoredSecret {
                    data: secret_data(&key),
                    annotations: BTreeMap::new(),
                },
                false,
            )
            .await?;
        crate::failpoint::hit("after-publish-access-key");
        let replaced = st.access_key_id.replace(key.id.clone());
        st.created_at = Some(Time(key.created));
        st.creating_since = None;
        st.rotation_token = token.clone();
        if replaced.is_some() {
            // A published key replaced (rotation, lost Secret, revoked key); not a first key.
            step.engine.metrics.key_rotated();
        }
        let retired = plan.revoked.as_ref().or(plan.lost.as_ref());
        if let Some(old) = retired {
            // Nobody can use it any more (revoked) or reload it (lost): delete it now.
            if !plan.delete_first.contains(old) {
                gone(iam.delete_access_key(user, old).await)?;
            }
        }
        if let Some(revoked) = &plan.revoked {
            st.last_revoked = Some(RevokedKey {
                access_key_id: revoked.clone(),
                revoked_at: Time(now),
                replaced_by: key.id.clone(),
            });
            synced.note(
                Reason::AccessKeyRevoked,
                format!(
                    "Access key {revoked} was deactivated outside the operator: treated as compromised, never reactivated; published new key {} in Secret {name} and deleted {revoked}",
                    key.id
                ),
            );
        } else if let Some(vanished) = &plan.vanished {
            st.last_revoked = Some(RevokedKey {
                access_key_id: vanished.clone(),
                revoked_at: Time(now),
                replaced_by: key.id.clone(),
            });
            synced.note(
                Reason::AccessKeyRevoked,
                format!(
                    "Access key {vanished} was deleted outside the operator: published new key {} in Secret {name}",
                    key.id
                ),
            );
        } else if let Some(lost) = &plan.lost {
            synced.note(
                Reason::AccessKeyReplaced,
                format!(
                    "Published new access key {} in Secret {name} and deleted lost key {lost}",
                    key.id
                ),
            );
        } else if let Some(prev) = replaced.filter(|p| !plan.delete_first.contains(p)) {
            st.previous_access_key_id = Some(prev.clone());
            st.previous_key_expires_at = Some(Time(after(now, timing.grace)));
            synced.note(
                Reason::AccessKeyRotated,
                format!(
                    "Rotated access key ({why}): published {} in Secret {name}; {prev} stays Active until the grace period ends",
                    key.id
                ),
            );
        } else {
            synced.note(
                Reason::AccessKeyPublished,
                format!("Published access key {} in Secret {name}", key.id),
            );
        }
    }

    // When to look again.
    if let (Some(_), Some(expires)) = (&st.previous_access_key_id, &st.previous_key_expires_at) {
        synced.requeue_within(until(now, expires.0));
    }
    if let (Some(max), Some(created)) = (timing.rotate_after, &st.created_at) {
        synced.requeue_within(until(now, after(created.0, max)));
    }
    if plan.create.is_some() && after_failed_attempt {
        // Logged: this later reconcile reads the whole user again, and is not drift.
        tracing::info!(
            user,
            after = ?SWEEP_AFTER,
            "access key created after a failed attempt: keys listed again later"
        );
        synced.requeue_within(SWEEP_AFTER);
    }
    let unmanaged = plan.unmanaged.clone();
    step.status.access_key = Some(st);
    match timing_error {
        Some(e) => Err(e),
        None => Ok(unmanaged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secs: i64) -> AccessKeyInfo {
        AccessKeyInfo {
            id: id.into(),
            status: KeyStatus::Active,
            created: Timestamp::from_second(secs).unwrap(),
        }
    }

    fn inactive(id: &str, secs: i64) -> AccessKeyInfo {
        AccessKeyInfo {
            status: KeyStatus::Inactive,
            ..key(id, secs)
        }
    }

    fn at(secs: i64) -> Option<Time> {
        Some(Time(Timestamp::from_second(secs).unwrap()))
    }

    fn facts<'a>(
        keys: &'a [AccessKeyInfo],
        status: &'a AccessKeyStatus,
        secret: Option<&'a str>,
    ) -> KeyFacts<'a> {
        KeyFacts {
            keys,
            status,
            secret_key_id: secret,
            rotate_after: None,
            rotation_token: None,
            now: Timestamp::from_second(10_000).unwrap(),
            may_issue: true,
        }
    }

    fn published(id: &str) -> AccessKeyStatus {
        AccessKeyStatus {
            access_key_id: Some(id.into()),
            ..Default::default()
        }
    }

    fn ids(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_refusals_given_before_acting_withdraw_the_intent() {
        for e in [
            IamError::Throttled("Rate exceeded".into()),
            IamError::AccessDenied("no".into()),
            IamError::NotFound("no user".into()),
            IamError::Invalid("bad".into()),
        ] {
            assert!(refused_without_effect(&e), "{e}");
        }
        // May hide a key: a 5xx or a lost response, or IAM's limit hit by a key that a
        // failed attempt made and the listing did not show yet.
        for e in [
            IamError::Transient("500".into()),
            IamError::LimitExceeded("two keys".into()),
            IamError::Conflict("?".into()),
        ] {
            assert!(!refused_without_effect(&e), "{e}");
        }
    }

    #[test]
    fn first_key_is_created_only_when_it_may_be_issued() {
        let st = AccessKeyStatus::default();
        let mut f = facts(&[], &st, None);
        assert!(plan(&f).create.is_some());
        f.may_issue = false;
        assert!(plan(&f).create.is_none());
    }

    #[test]
    fn published_key_is_kept_and_foreign_key_untouched_but_reported() {
        let keys = [key("A", 1), key("F", 2)];
        let st = published("A");
        let plan = plan(&facts(&keys, &st, Some("A")));
        assert_eq!(
            plan,
            KeyPlan {
                live: Some("A".into()),
                unmanaged: ids(&["F"]),
                ..Default::default()
            }
        );
    }

    #[test]
    fn orphans_of_an_interrupted_creation_are_deleted_and_foreign_keys_are_not() {
        let keys = [key("A", 1), key("F", 2), key("ORPHAN", 3)];
        let st = AccessKeyStatus {
            keys_before_creation: Some(ids(&["A", "F"])),
            creating_since: at(3),
            ..published("A")
        };
        let plan = plan(&facts(&keys, &st, Some("A")));
        assert_eq!(plan.delete_first, ids(&["ORPHAN"]));
        assert_eq!(plan.unmanaged, ids(&["F"]));
        assert!(plan.create.is_none());
    }

    #[test]
    fn a_key_of_a_failed_attempt_listed_late_is_deleted_after_the_creation_completed() {
        // An attempt whose response was lost made DUP, which IAM listed only after the
        // next attempt published NEW and completed the intent.
        let keys = [key("NEW", 500), key("DUP", 499)];
        let st = AccessKeyStatus {
            keys_before_creation: Some(vec![]),
            created_at: at(500),
            ..published("NEW")
        };
        let p = plan(&facts(&keys, &st, Some("NEW")));
        assert_eq!(p.delete_first, ids(&["DUP"]));
        assert!(p.unmanaged.is_empty());
        // A key someone creates later is theirs: reported, never deleted.
        let keys = [key("NEW", 500), key("LATER", 900)];
        let p = plan(&facts(&keys, &st, Some("NEW")));
        assert!(p.delete_first.is_empty());
        assert_eq!(p.unmanaged, ids(&["LATER"]));
        // Within the same second as the published key: not provably ours, left alone.
        let keys = [key("NEW", 500), key("SAME", 500)];
        let p = plan(&facts(&keys, &st, Some("NEW")));
        assert_eq!(p.unmanaged, ids(&["SAME"]));
    }

    #[test]
    fn a_new_key_a_lagging_listing_does_not_show_yet_is_neither_vanished_nor_replaced() {
        // NEW was published 2 s ago; IAM's listing still shows only the key before it.
        let st = AccessKeyStatus {
            keys_before_creation: Some(vec![]),
            created_at: at(9_998),
            ..published("NEW")
        };
        let now = Timestamp::from_second(10_000).unwrap();
        let (keys, again) = with_unlisted_published(vec![], &st, Some("NEW"), now);
        let p = plan(&facts(&keys, &st, Some("NEW")));
        assert_eq!(p.live.as_deref(), Some("NEW"));
        assert!(p.vanished.is_none() && p.create.is_none(), "{p:?}");
        assert_eq!(again, Some(Duration::from_secs(28)));
        // Long after its creation, a key IAM does not list was deleted out of band.
        let now = Timestamp::from_second(10_100).unwrap();
        let (keys, again) = with_unlisted_published(vec![], &st, Some("NEW"), now);
        assert!(keys.is_empty() && again.is_none());
        let p = plan(&facts(&keys, &st, Some("NEW")));
        assert_eq!(p.vanished.as_deref(), Some("NEW"));
        // A Secret that no longer holds it: lost, whatever the listing says.
        let now = Timestamp::from_second(10_000).unwrap();
        let (keys, _) = with_unlisted_published(vec![], &st, Some("OTHER"), now);
        assert!(keys.is_empty());
    }

    #[test]
    fn crash_after_publish_adopts_the_secrets_key_and_keeps_the_old_one_in_grace() {
        let keys = [key("A", 1), key("NEW", 3)];
        let st = AccessKeyStatus {
            keys_before_creation: Some(ids(&["A"])),
            creating_since: at(3),
            ..published("A")
        };
        let plan = plan(&facts(&keys, &st, Some("NEW")));
        assert!(plan.create.is_none());
        assert!(plan.delete_first.is_empty());
        assert_eq!(plan.live.as_deref(), Some("NEW"));
        assert_eq!(plan.demote.as_deref(), Some("A"));
    }

    #[test]
    fn a_secret_edited_to_a_later_key_is_not_adopted_once_the_creation_completed() {
        let keys = [key("A", 100), key("F", 900)];
        let st = AccessKeyStatus {
            keys_before_creation: Some(vec![]),
            created_at: at(100),
            ..published("A")
        };
        let plan = plan(&facts(&keys, &st, Some("F")));
        assert!(plan.live.is_none());
        assert_eq!(plan.lost.as_deref(), Some("A"));
        assert_eq!(plan.unmanaged, ids(&["F"]));
    }

    #[test]
    fn lost_secret_creates_a_new_key_and_deletes_the_lost_one_after() {
        let keys = [key("A", 1)];
        let st = published("A");
        let mut f = facts(&keys, &st, None);
        f.may_issue = false;
        let plan = plan(&f);
        assert!(plan.create.is_some(), "replacing is allowed while blocked");
        assert!(plan.delete_first.is_empty());
        assert_eq!(plan.lost.as_deref(), Some("A"));
    }

    #[test]
    fn a_deactivated_published_key_is_replaced_never_reactivated() {
        let keys = [inactive("A", 1)];
        let st = published("A");
        let mut f = facts(&keys, &st, Some("A"));
        f.may_issue = false;
        let plan = plan(&f);
        assert_eq!(plan.revoked.as_deref(), Some("A"));
        assert!(plan.create.is_some());
        // Room exists: the revoked key is deleted after the new one is published.
        assert!(plan.delete_first.is_empty());
    }

    #[test]
    fn a_revoked_key_makes_room_before_a_previous_key_in_grace() {
        let keys = [key("OLD", 1), inactive("NEW", 2)];
        let st = AccessKeyStatus {
            previous_access_key_id: Some("OLD".into()),
            previous_key_expires_at: at(20_000),
            ..published("NEW")
        };
        let plan = plan(&facts(&keys, &st, Some("NEW")));
        assert_eq!(plan.revoked.as_deref(), Some("NEW"));
        assert_eq!(plan.delete_first, ids(&["NEW"]));
        assert!(plan.create.is_some());
    }

    #[test]
    fn a_previous_key_deactivated_during_grace_is_deleted_at_once() {
        let keys = [inactive("OLD", 1), key("NEW", 2)];
        let st = AccessKeyStatus {
            previous_access_key_id: Some("OLD".into()),
            previous_key_expires_at: at(20_000),
            ..published("NEW")
        };
        let plan = plan(&facts(&keys, &st, Some("NEW")));
        assert_eq!(plan.delete_first, ids(&["OLD"]));
        assert!(plan.create.is_none());
    }

    #[test]
    fn a_published_key_deleted_out_of_band_is_replaced_and_reported() {
        let st = published("GONE");
        let mut f = facts(&[], &st, Some("GONE"));
        f.may_issue = false;
        let plan = plan(&f);
        assert_eq!(plan.vanished.as_deref(), Some("GONE"));
        assert!(plan.create.is_some());
    }

    #[test]
    fn secret_edited_to_a_foreign_key_is_not_trusted() {
        let keys = [key("A", 1), key("F", 2)];
        let st = published("A");
        let plan = plan(&facts(&keys, &st, Some("F")));
        assert!(plan.live.is_none());
        assert_eq!(plan.lost.as_deref(), Some("A"));
        // No room: the lost key goes first, the foreign key is never touched.
        assert_eq!(plan.delete_first, ids(&["A"]));
        assert!(plan.create.is_some());
    }

    #[test]
    fn two_foreign_keys_block_with_their_ids() {
        let keys = [key("F1", 1), key("F2", 2)];
        let st = AccessKeyStatus::default();
        let plan = plan(&facts(&keys, &st, None));
        assert!(plan.create.is_none());
        assert_eq!(plan.blocking, ids(&["F1", "F2"]));
        assert!(plan.delete_first.is_empty());
    }

    #[test]
    fn rotation_by_age_and_by_annotation() {
        let keys = [key("A", 1)];
        let st = published("A");
        let mut f = facts(&keys, &st, Some("A"));
        f.rotate_after = Some(Duration::from_secs(5_000));
        assert!(plan(&f).create.is_some());
        f.rotate_after = Some(Duration::from_secs(50_000));
        assert!(plan(&f).create.is_none());
        f.rotation_token = Some("2");
        assert!(plan(&f).create.is_some());
    }

    #[test]
    fn previous_key_expires_after_grace_and_makes_room_for_the_next_rotation() {
        let keys = [key("OLD", 1), key("NEW", 2)];
        let mut st = AccessKeyStatus {
            previous_access_key_id: Some("OLD".into()),
            previous_key_expires_at: at(20_000),
            ..published("NEW")
        };
        assert!(
            plan(&facts(&keys, &st, Some("NEW")))
                .delete_first
                .is_empty()
        );
        st.previous_key_expires_at = at(9_000);
        assert_eq!(
            plan(&facts(&keys, &st, Some("NEW"))).delete_first,
            ids(&["OLD"])
        );
        // A rotation during grace cuts the grace short rather than exceeding two keys.
        st.previous_key_expires_at = at(20_000);
        let mut f = facts(&keys, &st, Some("NEW"));
        f.rotation_token = Some("again");
        let p = plan(&f);
        assert!(p.create.is_some());
        assert_eq!(p.delete_first, ids(&["OLD"]));
    }

    fn spec(rotate: Option<&str>, grace: Option<&str>) -> AccessKeySpec {
        AccessKeySpec {
            enabled: true,
            secret_name: None,
            rotate_after: rotate.map(str::to_string),
            grace_period: grace.map(str::to_string),
        }
    }

    #[test]
    fn timing_refuses_rotation_storms_and_cut_grace() {
        assert!(Timing::from_spec(&spec(Some("2160h"), None)).is_ok());
        assert!(Timing::from_spec(&spec(None, Some("1h"))).is_ok());
        let msg = |r, g| Timing::from_spec(&spec(r, g)).unwrap_err().to_string();
        assert!(msg(Some("1s"), Some("1s")).contains("minimum of 1h"));
        assert!(msg(Some("0s"), None).contains("minimum of 1h"));
        assert!(msg(Some("2h"), None).contains("not longer than gracePeriod"));
        assert!(msg(Some("48h"), Some("48h")).contains("not longer than gracePeriod"));
        assert!(msg(None, Some("721h")).contains("720h"));
    }
}
