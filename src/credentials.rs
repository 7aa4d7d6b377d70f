//! Credentials published into Secrets: access keys and console passwords.
//!
//! IAM reveals a secret access key once and allows two keys per user, so the access-key
//! protocol never loses one and never leaves one behind:
//! 1. before `CreateAccessKey`, the ids of the keys that already exist are recorded in
//!    status (the intent) and the Secret write is validated with a dry run;
//! 2. the new key goes into the Secret at once (server-side apply), then into status;
//! 3. on every reconcile, a key that is neither published nor listed in a pending intent
//!    was created by an interrupted attempt and is deleted; keys the operator never
//!    created are never touched, only counted against the limit;
//! 4. a Secret that is gone or whose key id was edited means the key is lost: a new one is
//!    published and the lost one deleted;
//! 5. rotation publishes a new key and keeps the previous one Active for the grace period,
//!    then deactivates and deletes it.
//!
//! Secret values live in [`SecretString`] (redacted `Debug`) until they are written into
//! the Secret; they never reach logs, events, status or errors.

use crate::api::{
    AccessKeyStatus, IamUser, IamUserStatus, RESET_PASSWORD_ANNOTATION, ROTATE_KEY_ANNOTATION,
};
use crate::controller::Synced;
use crate::controller::runtime::{Context, FIELD_MANAGER, write_status};
use crate::error::{Error, Result};
use crate::iam::{AccessKeyInfo, KeyStatus, NewAccessKey, PasswordPolicy, gone};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use rand::Rng;
use rand::seq::SliceRandom;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::time::Duration;

/// Label selector of the Secrets the operator writes.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=iam-operator";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "iam-operator");
/// Annotation on the console Secret matching `status.console.passwordSetAt` once IAM has
/// the password; a mismatch means the password still has to be set in IAM.
const PASSWORD_SET_AT: &str = "iam.kubeop.dev/password-set-at";
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Symbols IAM accepts in passwords.
const SYMBOLS: &[u8] = b"!@#$%^&*()_+-=[]{}|'";

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

/// Parses a Go-style duration (`90d` is not Go; `2160h`, `30m`, `1h30m` are).
pub fn parse_duration(s: &str) -> Result<Duration> {
    s.parse::<kube::core::Duration>()
        .map(Duration::from)
        .map_err(|e| Error::InvalidSpec(format!("invalid duration {s:?}: {e}")))
}

fn owned_by(secret: &Secret, obj: &IamUser) -> bool {
    let uid = obj.uid();
    secret
        .owner_references()
        .iter()
        .any(|r| Some(&r.uid) == uid.as_ref())
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

struct Secrets<'a> {
    api: Api<Secret>,
    obj: &'a IamUser,
    ctx: &'a Context,
}

impl<'a> Secrets<'a> {
    fn new(ctx: &'a Context, obj: &'a IamUser) -> Self {
        Self {
            api: Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default()),
            obj,
            ctx,
        }
    }

    /// The Secret if it exists; a Secret someone else created is a conflict.
    async fn get(&self, name: &str) -> Result<Option<Secret>> {
        match self.api.get_opt(name).await? {
            Some(s) if !owned_by(&s, self.obj) => Err(Error::SecretConflict(format!(
                "Secret {name} already exists and was not created for this IamUser; delete it or choose another secretName"
            ))),
            other => Ok(other),
        }
    }

    fn render(
        &self,
        name: &str,
        data: BTreeMap<String, ByteString>,
        annotations: BTreeMap<String, String>,
    ) -> Secret {
        let owner = OwnerReference {
            api_version: IamUser::api_version(&()).into_owned(),
            kind: IamUser::kind(&()).into_owned(),
            name: self.obj.name_any(),
            uid: self.obj.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: self.obj.namespace(),
                labels: Some([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into()),
                annotations: Some(annotations),
                owner_references: Some(vec![owner]),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Default::default()
        }
    }

    async fn apply(&self, secret: &Secret, dry_run: bool) -> Result<()> {
        let name = secret.name_any();
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        if dry_run {
            params = params.dry_run();
        }
        let mut body = serde_json::to_value(secret)
            .map_err(|_| Error::InvalidSpec(format!("cannot render Secret {name}")))?;
        body["apiVersion"] = "v1".into();
        body["kind"] = "Secret".into();
        let written = self.api.patch(&name, &params, &Patch::Apply(&body)).await?;
        if !dry_run {
            self.ctx.wrote(&written);
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        if let Some(s) = self.api.get_opt(name).await?
            && owned_by(&s, self.obj)
        {
            match self.api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Keeps a Secret but drops the owner reference so garbage collection leaves it.
    async fn orphan(&self, name: &str) -> Result<()> {
        if let Some(s) = self.api.get_opt(name).await?
            && owned_by(&s, self.obj)
        {
            let patch = serde_json::json!({"metadata": {"ownerReferences": null}});
            self.api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

fn keys_left(keys: &[AccessKeyInfo], plan: &KeyPlan) -> usize {
    keys.iter()
        .filter(|k| !plan.delete_first.contains(&k.id))
        .count()
}

fn key_secret_data(key: &NewAccessKey) -> BTreeMap<String, ByteString> {
    let secret = key.secret.expose_secret();
    let ini = format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.id, secret
    );
    [
        ("AWS_ACCESS_KEY_ID", key.id.clone()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ("credentials", ini),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect()
}

/// What the access-key step must do, decided from spec, status, the Secret and IAM.
#[derive(Debug, Default, PartialEq)]
pub struct KeyPlan {
    /// The key consumers hold: in the Secret, in IAM, and created by this resource.
    pub live: Option<String>,
    /// Keys to delete before anything else: orphans of interrupted creations, expired
    /// previous keys, and whatever must go to stay within two keys.
    pub delete_first: Vec<String>,
    /// Publish a new key, and why.
    pub create: Option<&'static str>,
    /// The published key whose Secret was lost or edited: deleted once a new key is out.
    pub lost: Option<String>,
    /// A published key replaced by an interrupted rotation: it becomes the previous key.
    pub demote: Option<String>,
    /// The published key was deactivated out of band: make it Active again.
    pub reactivate: Option<String>,
    /// Keys that are not this resource's, blocking creation at IAM's limit of two.
    pub blocking: Vec<String>,
}

/// Inputs of [`plan_keys`].
pub struct KeyFacts<'a> {
    pub keys: &'a [AccessKeyInfo],
    pub status: &'a AccessKeyStatus,
    /// Key id in the Secret, if the Secret exists.
    pub secret_key_id: Option<&'a str>,
    pub rotate_after: Option<Duration>,
    pub rotation_token: Option<&'a str>,
    pub now: Timestamp,
}

/// Pure decision of the access-key protocol. Never plans to delete a key this resource did
/// not create, and never lets the user exceed IAM's limit of two keys.
pub fn plan_keys(f: &KeyFacts) -> KeyPlan {
    let mut plan = KeyPlan::default();
    let find = |id: &str| f.keys.iter().find(|k| k.id == id);
    let published = f
        .status
        .access_key_id
        .as_deref()
        .filter(|id| find(id).is_some());
    let previous = f
        .status
        .previous_access_key_id
        .as_deref()
        .filter(|id| find(id).is_some());
    let before = f.status.keys_before_creation.as_ref();
    let from_intent = |id: &str| before.is_some_and(|b| !b.iter().any(|x| x == id));
    // With no record at all (status lost), the Secret this resource owns is trusted.
    let no_record = f.status.access_key_id.is_none() && previous.is_none() && before.is_none();
    let live = f
        .secret_key_id
        .filter(|id| find(id).is_some())
        .filter(|id| Some(*id) == published || from_intent(id) || no_record);
    plan.live = live.map(str::to_string);

    for k in f.keys {
        let id = Some(k.id.as_str());
        if id != live && id != published && id != previous && from_intent(&k.id) {
            plan.delete_first.push(k.id.clone());
        }
    }
    match (published, live) {
        (Some(p), Some(l)) if p != l => plan.demote = Some(p.to_string()),
        (Some(p), None) => plan.lost = Some(p.to_string()),
        _ => {}
    }
    if let (Some(prev), Some(expires)) = (previous, &f.status.previous_key_expires_at)
        && f.now >= expires.0
        && Some(prev) != live
    {
        plan.delete_first.push(prev.to_string());
    }

    match live.and_then(find) {
        None => plan.create = Some("no usable access key is published"),
        Some(k) => {
            if k.status == KeyStatus::Inactive {
                plan.reactivate = Some(k.id.clone());
            }
            let age = f.now.duration_since(k.created);
            let too_old = f
                .rotate_after
                .is_some_and(|max| SignedDuration::try_from(max).is_ok_and(|max| age >= max));
            if f.rotation_token.is_some() && f.rotation_token != f.status.rotation_token.as_deref()
            {
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
        // Make room with this resource's own keys: the previous one (a rotation cut short
        // beats exceeding the limit), then a lost one.
        for candidate in [previous.filter(|p| Some(*p) != live), plan.lost.as_deref()]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            if kept(&plan) >= 2 && !plan.delete_first.contains(&candidate) {
                plan.delete_first.push(candidate);
            }
        }
        if kept(&plan) >= 2 {
            plan.blocking = f
                .keys
                .iter()
                .filter(|k| {
                    let id = Some(k.id.as_str());
                    id != live && id != published && id != previous && !from_intent(&k.id)
                })
                .map(|k| k.id.clone())
                .collect();
            plan.create = None;
        }
    }
    plan.delete_first.sort();
    plan.delete_first.dedup();
    plan
}

async fn sync_access_key(
    ctx: &Context,
    obj: &IamUser,
    status: &mut IamUserStatus,
    synced: &mut Synced,
) -> Result<()> {
    let iam = &ctx.engine.iam;
    let user = obj.iam_name();
    let secrets = Secrets::new(ctx, obj);
    let spec = obj.spec.access_key.as_ref().filter(|a| a.enabled);
    let name = access_key_secret_name(obj);
    let Some(spec) = spec else {
        // Disabled: delete the keys this resource created and its Secret.
        if let Some(st) = status.access_key.take() {
            for id in [st.access_key_id, st.previous_access_key_id]
                .into_iter()
                .flatten()
            {
                gone(iam.delete_access_key(&user, &id).await)?;
            }
            if let Some(secret) = st.secret_name {
                secrets.delete(&secret).await?;
            }
            synced.note("Deleted the access key and its Secret");
        }
        return Ok(());
    };
    let rotate_after = spec
        .rotate_after
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    let grace = match spec.grace_period.as_deref() {
        Some(g) => parse_duration(g)?,
        None => DEFAULT_GRACE,
    };

    let mut st = status.access_key.clone().unwrap_or_default();
    // A renamed Secret: carry the published key over rather than losing it.
    if let Some(old) = st.secret_name.clone().filter(|old| old != &name)
        && let Some(old_secret) = secrets.get(&old).await.ok().flatten()
        && secrets.get(&name).await?.is_none()
    {
        let mut copy = secrets.render(
            &name,
            old_secret.data.clone().unwrap_or_default(),
            BTreeMap::new(),
        );
        copy.metadata.annotations = None;
        secrets.apply(&copy, false).await?;
        secrets.delete(&old).await?;
    }
    st.secret_name = Some(name.clone());
    let secret = secrets.get(&name).await?;
    let secret_key_id = secret
        .as_ref()
        .and_then(|s| secret_value(s, "AWS_ACCESS_KEY_ID"));
    let keys = iam.list_access_keys(&user).await?;
    let token = obj.annotations().get(ROTATE_KEY_ANNOTATION).cloned();
    let now = Timestamp::now();
    let plan = plan_keys(&KeyFacts {
        keys: &keys,
        status: &st,
        secret_key_id: secret_key_id.as_deref(),
        rotate_after,
        rotation_token: token.as_deref(),
        now,
    });

    if let Some(id) = &plan.reactivate {
        iam.update_access_key(&user, id, KeyStatus::Active).await?;
        synced.note(format!("Reactivated published access key {id}"));
    }
    for id in &plan.delete_first {
        // The previous key is deactivated first, so that it stops working at the end of
        // its grace period even if the delete fails and waits for a retry.
        if st.previous_access_key_id.as_ref() == Some(id) {
            gone(iam.update_access_key(&user, id, KeyStatus::Inactive).await)?;
        }
        gone(iam.delete_access_key(&user, id).await)?;
    }
    if !plan.delete_first.is_empty() {
        synced.note(format!(
            "Deleted access keys {}",
            plan.delete_first.join(", ")
        ));
    }
    // Forget a previous key that is gone, whether deleted just now or out of band.
    let exists = |id: &String| keys.iter().any(|k| &k.id == id) && !plan.delete_first.contains(id);
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
    }
    if let Some(prev) = &plan.demote {
        st.previous_access_key_id = Some(prev.clone());
        st.previous_key_expires_at = Some(Time(after(now, grace)));
    }
    st.keys_before_creation = None;
    st.creating_since = None;

    if !plan.blocking.is_empty() || (plan.create.is_some() && keys_left(&keys, &plan) >= 2) {
        status.access_key = Some(st);
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
        let placeholder = secrets.render(&name, BTreeMap::new(), BTreeMap::new());
        secrets.apply(&placeholder, true).await?;
        // Record the intent durably.
        st.keys_before_creation = Some(
            keys.iter()
                .filter(|k| !plan.delete_first.contains(&k.id))
                .map(|k| k.id.clone())
                .collect(),
        );
        st.creating_since = Some(Time(now));
        status.access_key = Some(st.clone());
        write_status(&ctx.client, obj, status).await?;
        crate::failpoint::hit("after-record-intent");

        let key = iam.create_access_key(&user).await.map_err(|e| match e {
            crate::iam::IamError::LimitExceeded(m) => Error::LimitExceeded(m),
            other => other.into(),
        })?;
        crate::failpoint::hit("after-create-access-key");
        secrets
            .apply(
                &secrets.render(&name, key_secret_data(&key), BTreeMap::new()),
                false,
            )
            .await?;
        crate::failpoint::hit("after-publish-access-key");
        let replaced = st.access_key_id.replace(key.id.clone());
        st.created_at = Some(Time(key.created));
        st.keys_before_creation = None;
        st.creating_since = None;
        st.rotation_token = token.clone();
        ctx.metrics.key_rotated();
        if let Some(lost) = &plan.lost {
            // Its Secret is gone or edited, so no consumer can reload it: delete it now.
            if !plan.delete_first.contains(lost) {
                gone(iam.delete_access_key(&user, lost).await)?;
            }
            synced.note(format!(
                "Published new access key {} in Secret {name} and deleted lost key {lost}",
                key.id
            ));
        } else if let Some(prev) = replaced.filter(|p| !plan.delete_first.contains(p)) {
            st.previous_access_key_id = Some(prev.clone());
            st.previous_key_expires_at = Some(Time(after(now, grace)));
            synced.note(format!(
                "Rotated access key ({why}): published {} in Secret {name}; {prev} stays Active until the grace period ends",
                key.id
            ));
        } else {
            synced.note(format!("Published access key {} in Secret {name}", key.id));
        }
    }

    if let (Some(_), Some(expires)) = (&st.previous_access_key_id, &st.previous_key_expires_at) {
        let left = expires.0.duration_since(now);
        synced.requeue_within(
            Duration::try_from(left)
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_secs(1)),
        );
    }
    if let (Some(max), Some(created)) = (rotate_after, &st.created_at) {
        let due = Duration::try_from(
            SignedDuration::try_from(max).unwrap_or(SignedDuration::MAX)
                - now.duration_since(created.0),
        )
        .unwrap_or(Duration::from_secs(1));
        synced.requeue_within(due.max(Duration::from_secs(1)));
    }
    status.access_key = Some(st);
    Ok(())
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

async fn sync_console(
    ctx: &Context,
    obj: &IamUser,
    status: &mut IamUserStatus,
    synced: &mut Synced,
) -> Result<()> {
    let iam = &ctx.engine.iam;
    let user = obj.iam_name();
    let secrets = Secrets::new(ctx, obj);
    let Some(spec) = obj.spec.console.as_ref().filter(|c| c.enabled) else {
        if let Some(st) = status.console.take() {
            gone(iam.delete_login_profile(&user).await)?;
            if let Some(secret) = st.secret_name {
                secrets.delete(&secret).await?;
            }
            synced.note("Deleted console access and its Secret");
        }
        return Ok(());
    };
    let reset_required = spec.password_reset_required.unwrap_or(true);
    let name = console_secret_name(obj);
    let mut st = status.console.clone().unwrap_or_default();
    if let Some(old) = st.secret_name.clone().filter(|old| old != &name) {
        secrets.delete(&old).await?;
    }
    st.secret_name = Some(name.clone());
    let secret = secrets.get(&name).await?;
    let has_profile = iam.has_login_profile(&user).await?;
    let token = obj.annotations().get(RESET_PASSWORD_ANNOTATION).cloned();
    // `status.console.passwordSetAt` is a metav1.Time, stored with second precision:
    // compare the Secret's stamp at that precision, or they never match again.
    let set_at = st.password_set_at.as_ref().map(|t| t.0.as_second());
    let secret_set_at = secret
        .as_ref()
        .and_then(|s| s.annotations().get(PASSWORD_SET_AT).cloned());
    let secret_stamp = secret_set_at
        .as_deref()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(|t| t.as_second());
    let password = secret.as_ref().and_then(|s| secret_value(s, "password"));

    let (password, stamp, why) = match password {
        // The Secret holds a password IAM may not have yet (interrupted before IAM
        // confirmed it, or the login profile was deleted out of band): set it again.
        Some(p) if token == st.reset_token && (secret_stamp != set_at || !has_profile) => (
            SecretString::from(p),
            secret_set_at.unwrap_or_default(),
            None,
        ),
        Some(_) if token == st.reset_token => {
            status.console = Some(st);
            return Ok(());
        }
        _ => {
            let policy = iam.password_policy().await?;
            let why = if secret.is_none() {
                if st.password_set_at.is_some() {
                    "the console Secret was lost"
                } else {
                    "console access enabled"
                }
            } else {
                "password reset requested by annotation"
            };
            let stamp = Timestamp::now().to_string();
            let password = generate_password(policy.as_ref());
            let (account, _) = ctx.engine.account().await?;
            let alias = iam.account_alias().await?.unwrap_or(account);
            let data: BTreeMap<String, ByteString> = [
                ("username", user.clone()),
                ("password", password.expose_secret().to_string()),
                (
                    "consoleUrl",
                    format!("https://{alias}.signin.aws.amazon.com/console"),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
            .collect();
            // The Secret first: a password IAM accepted must never exist only in IAM.
            secrets
                .apply(
                    &secrets.render(
                        &name,
                        data,
                        [(PASSWORD_SET_AT.to_string(), stamp.clone())].into(),
                    ),
                    false,
                )
                .await?;
            (password, stamp, Some(why))
        }
    };
    let result = if has_profile {
        iam.update_login_profile(&user, &password, reset_required)
            .await
    } else {
        iam.create_login_profile(&user, &password, reset_required)
            .await
    };
    result.map_err(|e| match e {
        crate::iam::IamError::Invalid(m) => {
            Error::InvalidSpec(format!("IAM rejected the generated console password: {m}"))
        }
        other => other.into(),
    })?;
    st.password_set_at = stamp.parse::<Timestamp>().ok().map(Time);
    st.reset_token = token;
    synced.note(match why {
        Some(why) => format!("Set a new console password in Secret {name} ({why})"),
        None => format!("Set the console password from Secret {name}"),
    });
    status.console = Some(st);
    Ok(())
}

/// Publishes and maintains the user's credentials.
pub async fn sync(
    ctx: &Context,
    obj: &IamUser,
    status: &mut IamUserStatus,
    synced: &mut Synced,
) -> Result<()> {
    sync_access_key(ctx, obj, status, synced).await?;
    sync_console(ctx, obj, status, synced).await
}

/// The finalizer's Kubernetes work after IAM cleanup: delete the credential Secrets, or
/// with `Retain` keep them (the credentials still work) by dropping the owner reference.
pub async fn release(ctx: &Context, obj: &IamUser) -> Result<()> {
    let secrets = Secrets::new(ctx, obj);
    let retain =
        ctx.engine.deletion_policy(obj.spec.deletion_policy) == crate::api::DeletionPolicy::Retain;
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
    fn first_key_is_created() {
        let plan = plan_keys(&facts(&[], &AccessKeyStatus::default(), None));
        assert!(plan.create.is_some());
        assert!(plan.delete_first.is_empty());
    }

    #[test]
    fn published_key_is_kept_and_foreign_key_untouched() {
        let keys = [key("A", 1), key("F", 2)];
        let st = published("A");
        let plan = plan_keys(&facts(&keys, &st, Some("A")));
        assert_eq!(
            plan,
            KeyPlan {
                live: Some("A".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn orphans_of_an_interrupted_creation_are_deleted_and_foreign_keys_are_not() {
        let keys = [key("A", 1), key("F", 2), key("ORPHAN", 3)];
        let st = AccessKeyStatus {
            keys_before_creation: Some(ids(&["A", "F"])),
            ..published("A")
        };
        let plan = plan_keys(&facts(&keys, &st, Some("A")));
        assert_eq!(plan.delete_first, ids(&["ORPHAN"]));
        assert!(plan.create.is_none());
    }

    #[test]
    fn crash_after_publish_adopts_the_secrets_key_and_keeps_the_old_one_in_grace() {
        let keys = [key("A", 1), key("NEW", 3)];
        let st = AccessKeyStatus {
            keys_before_creation: Some(ids(&["A"])),
            ..published("A")
        };
        let plan = plan_keys(&facts(&keys, &st, Some("NEW")));
        assert!(plan.create.is_none());
        assert!(plan.delete_first.is_empty());
        assert_eq!(plan.live.as_deref(), Some("NEW"));
        assert_eq!(plan.demote.as_deref(), Some("A"));
    }

    #[test]
    fn lost_secret_creates_a_new_key_and_deletes_the_lost_one_after() {
        let keys = [key("A", 1)];
        let st = published("A");
        let plan = plan_keys(&facts(&keys, &st, None));
        assert!(plan.create.is_some());
        assert!(plan.delete_first.is_empty());
        assert_eq!(plan.lost.as_deref(), Some("A"));
    }

    #[test]
    fn secret_edited_to_a_foreign_key_is_not_trusted() {
        let keys = [key("A", 1), key("F", 2)];
        let st = published("A");
        let plan = plan_keys(&facts(&keys, &st, Some("F")));
        assert!(plan.live.is_none());
        assert_eq!(plan.lost.as_deref(), Some("A"));
        // No room: the lost key goes first, the foreign key is never touched.
        assert_eq!(plan.delete_first, ids(&["A"]));
        assert!(plan.create.is_some());
    }

    #[test]
    fn two_foreign_keys_block_with_their_ids() {
        let keys = [key("F1", 1), key("F2", 2)];
        let plan = plan_keys(&facts(&keys, &AccessKeyStatus::default(), None));
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
        assert!(plan_keys(&f).create.is_some());
        f.rotate_after = Some(Duration::from_secs(50_000));
        assert!(plan_keys(&f).create.is_none());
        f.rotation_token = Some("2");
        assert!(plan_keys(&f).create.is_some());
    }

    #[test]
    fn previous_key_expires_after_grace_and_makes_room_for_the_next_rotation() {
        let keys = [key("OLD", 1), key("NEW", 2)];
        let mut st = AccessKeyStatus {
            previous_access_key_id: Some("OLD".into()),
            previous_key_expires_at: Some(Time(Timestamp::from_second(20_000).unwrap())),
            ..published("NEW")
        };
        assert!(
            plan_keys(&facts(&keys, &st, Some("NEW")))
                .delete_first
                .is_empty()
        );
        st.previous_key_expires_at = Some(Time(Timestamp::from_second(9_000).unwrap()));
        assert_eq!(
            plan_keys(&facts(&keys, &st, Some("NEW"))).delete_first,
            ids(&["OLD"])
        );
        // A rotation during grace cuts the grace short rather than exceeding two keys.
        st.previous_key_expires_at = Some(Time(Timestamp::from_second(20_000).unwrap()));
        let mut f = facts(&keys, &st, Some("NEW"));
        f.rotation_token = Some("again");
        let plan = plan_keys(&f);
        assert!(plan.create.is_some());
        assert_eq!(plan.delete_first, ids(&["OLD"]));
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
