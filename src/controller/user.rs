//! IamUser: identity, tags, permissions boundary, group memberships and permissions, then
//! its credentials (`super::credentials`).

use super::credentials::{self, CredentialStep};
use super::permissions::Use;
use super::plan::{plan_set, plan_tags};
use super::self_management::{self, SelfManagement};
use super::tenancy::Tenancy;
use super::{Engine, Reason, Synced, check_adopted_path, check_owner, desired_tags, permissions};
use crate::api::{DeletionPolicy, IamUser, IamUserStatus};
use crate::error::{Error, Result};
use crate::iam::{IamError, Principal, UserInfo, gone, optional};
use crate::k8s::{Journal, SecretStore};
use crate::limits::{self, InlineOwner};
use kube::ResourceExt;

/// Finds the user this CR manages. With a tenancy (reconciling), an unowned user may be
/// adopted with consent; without (cleaning up, or the rules unknown), only this resource's
/// own user is found.
async fn observe(
    engine: &Engine,
    tenancy: Option<&Tenancy>,
    obj: &IamUser,
    status: &IamUserStatus,
) -> Result<Option<UserInfo>> {
    let name = obj.iam_name();
    let Some(info) = optional(engine.iam.get_user(&name).await)? else {
        return Ok(None);
    };
    let known = status.user_id.as_deref() == Some(info.id.as_str());
    check_owner(
        obj,
        tenancy,
        "user",
        &name,
        &info.tags,
        &engine.owner_of(obj),
        known,
    )?;
    if !known {
        check_adopted_path("user", &name, &info.path, &obj.spec.path)?;
    }
    Ok(Some(info))
}

/// The boundary the user gets, and a refusal to report. A boundary the tenancy forces wins
/// and is applied whatever the spec says (a spec naming another one is reported, not
/// obeyed); otherwise the spec's, if the rules allow it.
async fn desired_boundary(
    engine: &Engine,
    tenancy: &Tenancy,
    obj: &IamUser,
) -> Result<(Option<String>, Option<String>)> {
    let namespace = obj.namespace().unwrap_or_default();
    let spec = obj.spec.permissions_boundary.as_ref();
    match (&tenancy.boundary, spec) {
        (Some(forced), None) => Ok((Some(forced.clone()), None)),
        (Some(forced), Some(b)) => {
            let differs =
                match permissions::resolve_policy(engine, tenancy, &namespace, b, Use::Boundary)
                    .await
                {
                    Ok(Ok(arn)) => arn != *forced,
                    _ => true,
                };
            let refusal = differs.then(|| format!(
                "spec.permissionsBoundary differs from the boundary {forced} that {} forces; the forced one is applied: remove spec.permissionsBoundary or set it to the forced one",
                tenancy.source
            ));
            Ok((Some(forced.clone()), refusal))
        }
        (None, Some(b)) => {
            match permissions::resolve_policy(engine, tenancy, &namespace, b, Use::Boundary).await?
            {
                Ok(arn) => Ok((Some(arn), None)),
                Err(refused) => Err(Error::InvalidSpec(format!(
                    "spec.permissionsBoundary: {refused}"
                ))),
            }
        }
        (None, None) => Ok((None, None)),
    }
}

/// Group names the user may be in, and the refusals. A group joined by name must be
/// allowed by the tenancy, must not be another namespace's, and (with the flags) must
/// grant nothing denied or escalating.
async fn desired_groups(
    engine: &Engine,
    tenancy: &Tenancy,
    obj: &IamUser,
) -> Result<(Vec<String>, Vec<String>)> {
    let namespace = obj.namespace().unwrap_or_default();
    let (mut groups, mut refused) = (Vec::new(), Vec::new());
    for membership in &obj.spec.groups {
        match (&membership.group_ref, &membership.group_name) {
            (Some(r), _) => groups.push(engine.deps.group_name(&namespace, &r.name).await?),
            (None, Some(name)) => {
                let Some(group) = optional(engine.iam.get_group(name).await)? else {
                    return Err(Error::DependencyNotReady(format!(
                        "IAM group {name} does not exist"
                    )));
                };
                // The IamGroup that holds the group's id manages it; one that merely names
                // it (and was refused) does not.
                let managed_by = engine.deps.group_claimed_by(&group.id, "", "").await?;
                if let Err(r) = tenancy.check_joinable(name, managed_by.as_deref()) {
                    refused.push(r);
                    continue;
                }
                if tenancy.screens_joined_groups()
                    && let Err(r) = permissions::check_joined_group(engine, tenancy, name).await?
                {
                    refused.push(r);
                    continue;
                }
                groups.push(name.clone());
            }
            (None, None) => {
                return Err(Error::InvalidSpec(
                    "a groups entry needs groupRef or groupName".into(),
                ));
            }
        }
    }
    Ok((groups, refused))
}

/// What the user is to be granted: its groups, its policies (with the operator's own for
/// a console the tenancy allows), and the refusals.
struct Wanted {
    groups: Vec<String>,
    refused: Vec<String>,
    grants: permissions::Grants,
    /// The operator's self-management policy, made to exist before it is attached.
    self_management: Option<SelfManagement>,
}

async fn desired_grants(engine: &Engine, tenancy: &Tenancy, obj: &IamUser) -> Result<Wanted> {
    let namespace = obj.namespace().unwrap_or_default();
    let (groups, refused) = desired_groups(engine, tenancy, obj).await?;
    let mut grants = permissions::decide(
        engine,
        tenancy,
        &namespace,
        &obj.spec.policies,
        &obj.spec.inline_policies,
    )
    .await?;
    // Granted by the operator itself, for a console the tenancy allows.
    let mut self_management = None;
    if tenancy.console {
        let (account, partition) = engine.account().await?;
        self_management =
            self_management::desired(obj, tenancy.access_keys, (&account, &partition));
        match &self_management {
            // It grants iam:ChangePassword too: IAMUserChangePassword would only take one
            // of the user's ten managed-policy slots.
            Some(wanted) => grants.arns.push(wanted.arn.clone()),
            None => grants
                .arns
                .extend(change_password_policy(engine, obj).await?),
        }
    }
    Ok(Wanted {
        groups,
        refused,
        grants,
        self_management,
    })
}

/// A user who must reset the console password at first sign-in needs permission to do it:
/// when the account password policy does not grant it, `IAMUserChangePassword` is part of
/// the user's managed policies (so the exclusive list keeps it rather than removing it).
async fn change_password_policy(engine: &Engine, obj: &IamUser) -> Result<Option<String>> {
    let needs_reset = obj
        .spec
        .console
        .as_ref()
        .is_some_and(|c| c.enabled && c.password_reset_required.unwrap_or(true));
    if !needs_reset {
        return Ok(None);
    }
    let allowed = engine
        .iam
        .password_policy()
        .await?
        .is_some_and(|p| p.allow_users_to_change_password);
    if allowed {
        return Ok(None);
    }
    let (_, partition) = engine.account().await?;
    Ok(Some(format!(
        "arn:{partition}:iam::aws:policy/IAMUserChangePassword"
    )))
}

/// The user's pipeline: observe (ownership is decided first, and nothing at all happens to a
/// user that is not this resource's) → identity (create, tags, boundary, groups, policies)
/// → credentials. The credential step runs whenever the user exists, even if the identity
/// step failed, so that disabling a credential, ending a grace period or replacing a
/// revoked one never waits on an unrelated error; only a first credential waits for the
/// identity to converge. The identity step's error, the cause, is reported first.
pub async fn reconcile(
    engine: &Engine,
    obj: &IamUser,
    status: &mut IamUserStatus,
    journal: &dyn Journal<IamUserStatus>,
    secrets: &dyn SecretStore,
) -> Result<Synced> {
    let mut synced = Synced::default();
    // The rules, and the identity (account) to act as: without them nothing is done.
    let (tenancy, engine) = &engine.for_tenant(obj).await?;
    // A user this resource has not created yet (no id in status) is prepared before it is
    // observed: while a dependency is not Ready, the retries cost no IAM read.
    let prepared = match status.user_id {
        None => Some(prepare(engine, tenancy, obj, true).await?),
        Some(_) => None,
    };
    // Observed before anything is written, even a user this resource never created:
    // whether the name is someone else's user is decided by a read, never by attempting a
    // write to it (not even a CreateUser that IAM would refuse). This GetUser is the one
    // read a new user costs; everything else about a user this reconcile creates is known
    // from IAM's answer to the create.
    let existing = observe(engine, Some(tenancy), obj, status).await?;
    let mut found = Found {
        present: existing.is_some(),
        created: false,
    };
    let identity = sync_identity(
        engine,
        tenancy,
        obj,
        status,
        (existing, prepared),
        &mut found,
        &mut synced,
    )
    .await;
    let name = obj.iam_name();
    let credentials = if found.present || identity.is_ok() {
        let key_refusal = match tenancy.max_access_keys {
            Some(_) if !holds_key(status) => {
                let namespace = obj.namespace().unwrap_or_default();
                let usage = engine.deps.usage(&namespace, &obj.name_any()).await?;
                tenancy
                    .check_quota("access keys", tenancy.max_access_keys, usage.access_keys)
                    .err()
            }
            _ => None,
        };
        let mut step = CredentialStep {
            engine,
            obj,
            user: &name,
            status,
            journal,
            secrets,
            may_issue: identity.is_ok(),
            created: found.created,
            keys_allowed: tenancy.access_keys,
            key_refusal,
            console_allowed: tenancy.console,
            rules: tenancy.source.clone(),
        };
        credentials::sync(&mut step, &mut synced).await
    } else {
        Ok(())
    };
    identity?;
    credentials?;
    Ok(synced)
}

/// What the identity step found: whether the user existed before this reconcile, and
/// whether this reconcile created it. IAM's success answer to CreateUser is authoritative
/// for "the user is empty": no groups, policies, access keys or login profile, so none of
/// them is read back (a read right after the creation could even lag it).
struct Found {
    present: bool,
    created: bool,
}

/// Whether the user has a published access key (quotas count it already).
fn holds_key(status: &IamUserStatus) -> bool {
    status
        .access_key
        .as_ref()
        .is_some_and(|a| a.access_key_id.is_some())
}

/// What the spec asks for, checked and resolved: the boundary, and (for a user to be
/// created) the groups and grants.
struct Prepared {
    boundary: Option<String>,
    boundary_refusal: Option<String>,
    grants: Option<Wanted>,
}

/// Checks the spec and resolves its boundary and, with `grants`, its groups and grants.
/// For a user to be created, they are resolved first: a dependency not Ready yet stops the
/// reconcile before any write (and, for a user this resource never created, before any
/// read), and the retry once it is Ready creates the user knowing it empty, rather than
/// reading back every aspect of a user created by the attempt that had to wait. For an
/// existing user, the groups and grants after its boundary and tags (a forced boundary
/// never waits on a group). Nothing is granted before the boundary is in place.
async fn prepare(
    engine: &Engine,
    tenancy: &Tenancy,
    obj: &IamUser,
    grants: bool,
) -> Result<Prepared> {
    tenancy
        .check_path(&obj.spec.path)
        .map_err(Error::InvalidSpec)?;
    limits::check_user_tags(&obj.spec.tags)
        .and_then(|()| limits::check_owner_tag_value(&engine.owner_of(obj)))
        .map_err(Error::InvalidSpec)?;
    permissions::check_inline_size(InlineOwner::User, &obj.spec.inline_policies)?;
    let (boundary, boundary_refusal) = desired_boundary(engine, tenancy, obj).await?;
    let grants = match grants {
        true => Some(desired_grants(engine, tenancy, obj).await?),
        false => None,
    };
    Ok(Prepared {
        boundary,
        boundary_refusal,
        grants,
    })
}

/// Brings the user's identity and permissions in line with the spec, fail-closed: the
/// forced boundary is in place before anything is granted, and what the tenancy refuses is
/// removed (the exclusive lists are applied with the allowed part only) before the
/// refusals are reported. Starts from the user as observed (`None`: missing) and, for a
/// user this resource has not created yet, the spec prepared before it was observed.
async fn sync_identity(
    engine: &Engine,
    tenancy: &Tenancy,
    obj: &IamUser,
    status: &mut IamUserStatus,
    (existing, prepared): (Option<UserInfo>, Option<Prepared>),
    found: &mut Found,
    synced: &mut Synced,
) -> Result<()> {
    let namespace = obj.namespace().unwrap_or_default();
    let Prepared {
        boundary,
        boundary_refusal,
        grants: mut resolved,
    } = match prepared {
        Some(p) => p,
        None => prepare(engine, tenancy, obj, existing.is_none()).await?,
    };

    let name = obj.iam_name();
    let tags = desired_tags(&obj.spec.tags, &engine.owner_of(obj));
    let info = match existing {
        Some(info) => info,
        None => {
            if tenancy.max_users.is_some() {
                let usage = engine.deps.usage(&namespace, &obj.name_any()).await?;
                tenancy
                    .check_quota("IAM users", tenancy.max_users, usage.users)
                    .map_err(Error::InvalidSpec)?;
            }
            match engine
                .iam
                .create_user(&name, &obj.spec.path, &tags, boundary.as_deref())
                .await
            {
                Ok(info) => {
                    synced.note(Reason::Created, format!("Created IAM user {name}"));
                    found.created = true;
                    info
                }
                Err(IamError::NotFound(m) | IamError::Invalid(m)) => {
                    return Err(Error::InvalidSpec(format!(
                        "cannot create IAM user {name}: {m}"
                    )));
                }
                // It did not exist when observed: created since, most likely by this very
                // call retried by the SDK after a lost response. Observed now, ownership
                // decided from its tags.
                Err(IamError::AlreadyExists(m)) => {
                    match observe(engine, Some(tenancy), obj, status).await? {
                        Some(info) => {
                            found.present = true;
                            info
                        }
                        // Listed as existing by the write, not yet by the read (IAM's
                        // reads lag its writes): the next reconcile looks again.
                        None => {
                            return Err(Error::Iam(IamError::Transient(format!(
                                "IAM user {name} exists ({m}) but cannot be read yet; checking whose it is"
                            ))));
                        }
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
    };
    status.arn = Some(info.arn.clone());
    status.user_id = Some(info.id.clone());

    // The boundary first: before any tag, group or policy is granted.
    if info.permissions_boundary != boundary {
        match &boundary {
            Some(arn) => engine
                .iam
                .put_permissions_boundary(&name, arn)
                .await
                .map_err(|e| match e {
                    IamError::NotFound(m) | IamError::Invalid(m) => {
                        Error::InvalidSpec(format!("cannot set permissions boundary {arn}: {m}"))
                    }
                    other => other.into(),
                })?,
            None => gone(engine.iam.delete_permissions_boundary(&name).await)?,
        }
        synced.note(
            Reason::Updated,
            match &boundary {
                Some(arn) => format!("Set permissions boundary {arn}"),
                None => "Removed permissions boundary".to_string(),
            },
        );
    }

    let tag_plan = plan_tags(&info.tags, &tags);
    if !tag_plan.remove.is_empty() {
        engine.iam.untag_user(&name, &tag_plan.remove).await?;
    }
    if !tag_plan.set.is_empty() {
        engine.iam.tag_user(&name, &tag_plan.set).await?;
    }
    if !tag_plan.is_empty() {
        synced.note(Reason::Updated, format!("Updated tags of IAM user {name}"));
    }

    // Only now, with the boundary in place, anything is granted.
    let Wanted {
        groups,
        mut refused,
        mut grants,
        self_management,
    } = match resolved.take() {
        Some(r) => r,
        None => desired_grants(engine, tenancy, obj).await?,
    };
    let current_groups = match found.created {
        true => Vec::new(),
        false => engine.iam.list_groups_for_user(&name).await?,
    };
    let plan = plan_set(&current_groups, &groups, true);
    // Leave groups first: IAM caps memberships per user (10 by default), so at the cap a
    // swapped group could never be joined while the old one is still there.
    for group in &plan.remove {
        gone(engine.iam.remove_user_from_group(&name, group).await)?;
        synced.note(Reason::Updated, format!("Removed from group {group}"));
    }
    for group in &plan.add {
        engine
            .iam
            .add_user_to_group(&name, group)
            .await
            .map_err(|e| match e {
                IamError::NotFound(_) => {
                    Error::DependencyNotReady(format!("IAM group {group} does not exist"))
                }
                other => other.into(),
            })?;
        synced.note(Reason::Updated, format!("Added to group {group}"));
    }

    let released = self_management_policy(engine, self_management.as_ref(), status, synced).await?;
    let current = match found.created {
        true => permissions::Current::Empty,
        false => permissions::Current::Read,
    };
    permissions::sync_from(
        engine,
        Principal::User(&name),
        &grants.arns,
        &grants.inline,
        current,
        synced,
    )
    .await?;
    // Detached (switched off, or another variant): deleted once no user has it.
    if let Some(old) = released {
        self_management::release(engine, &old).await?;
    }
    refused.extend(boundary_refusal);
    refused.append(&mut grants.refused);
    grants.refused = refused;
    grants.refusal()
}

/// The operator's self-management policy for `mfa`/`selfService`: recorded in status first,
/// so that a change of it in IAM (e.g. someone else's policy of that name deleted) wakes
/// this user through the drift scan even while it is refused; then made to exist as written,
/// before it is attached. Returns the policy it replaces, to release once detached.
async fn self_management_policy(
    engine: &Engine,
    wanted: Option<&SelfManagement>,
    status: &mut IamUserStatus,
    synced: &mut Synced,
) -> Result<Option<String>> {
    let previous = status
        .console
        .as_mut()
        .and_then(|c| c.self_management_policy.take());
    if let Some(wanted) = wanted {
        // `Some` only with console access, which the console status stands for.
        status
            .console
            .get_or_insert_default()
            .self_management_policy = Some(wanted.arn.clone());
        self_management::ensure(engine, wanted, synced).await?;
    }
    Ok(previous.filter(|p| wanted.is_none_or(|w| &w.arn != p)))
}

/// The finalizer's IAM work, in the order IAM demands: keys, login profile, MFA devices,
/// signing certificates, SSH keys, service credentials, groups, policies, the user. Works
/// for users changed outside the operator too.
///
/// `Retain` keeps the IAM user with its groups and policies. Its credentials stay usable as
/// long as someone can hold them: the Secrets are kept (no longer owned by the IamUser).
/// When the whole namespace is being deleted the Secrets go with it, so the access keys and
/// the login profile this resource created are deleted too: a credential nobody holds is
/// only a liability.
pub async fn cleanup(engine: &Engine, obj: &IamUser, secrets: &dyn SecretStore) -> Result<()> {
    let (_, engine) = &engine.for_tenant(obj).await?;
    if engine.deletion_policy(obj.spec.deletion_policy) != DeletionPolicy::Retain {
        delete_in_iam(engine, obj).await?;
    } else if secrets.namespace_terminating().await? {
        revoke_published_credentials(engine, obj).await?;
    }
    credentials::release(engine, obj, secrets).await
}

/// Deletes the keys and the login profile this resource created (and nothing else).
async fn revoke_published_credentials(engine: &Engine, obj: &IamUser) -> Result<()> {
    let status = obj.status.clone().unwrap_or_default();
    let Some(info) = super::ours_to_delete(observe(engine, None, obj, &status).await)? else {
        return Ok(());
    };
    if let Some(keys) = &status.access_key {
        for id in [&keys.access_key_id, &keys.previous_access_key_id]
            .into_iter()
            .flatten()
        {
            gone(engine.iam.delete_access_key(&info.name, id).await)?;
        }
    }
    if status.console.is_some() {
        gone(engine.iam.delete_login_profile(&info.name).await)?;
    }
    Ok(())
}

async fn delete_in_iam(engine: &Engine, obj: &IamUser) -> Result<()> {
    let status = obj.status.clone().unwrap_or_default();
    let Some(info) = super::ours_to_delete(observe(engine, None, obj, &status).await)? else {
        return Ok(());
    };
    let name = &info.name;
    for key in engine.iam.list_access_keys(name).await? {
        gone(engine.iam.delete_access_key(name, &key.id).await)?;
    }
    gone(engine.iam.delete_login_profile(name).await)?;
    engine.iam.delete_other_credentials(name).await?;
    for group in engine.iam.list_groups_for_user(name).await? {
        gone(engine.iam.remove_user_from_group(name, &group).await)?;
    }
    permissions::remove_all(engine, Principal::User(name)).await?;
    if let Some(arn) = status.console.and_then(|c| c.self_management_policy) {
        self_management::release(engine, &arn).await?;
    }
    gone(engine.iam.delete_user(name).await)?;
    Ok(())
}
