//! IamGroup: a group with exclusive managed and inline policies.

use super::tenancy::Tenancy;
use super::{Engine, Reason, Synced, adopt_requested, check_adopted_path, permissions};
use crate::api::{DeletionPolicy, IamGroup, IamGroupStatus};
use crate::error::{Error, Result};
use crate::iam::{GroupInfo, IamError, Principal, gone, optional};
use crate::k8s::Journal;
use crate::limits::InlineOwner;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

/// Groups cannot be tagged, so ownership is the group id recorded in status, or, after a
/// creation interrupted before the id was recorded, the intent recorded before it. With a
/// tenancy (reconciling), a group may also be adopted with its consent; without (cleaning
/// up), only this resource's own group is found.
async fn observe(
    engine: &Engine,
    tenancy: Option<&Tenancy>,
    obj: &IamGroup,
    status: &IamGroupStatus,
) -> Result<Option<GroupInfo>> {
    let name = obj.iam_name();
    let Some(info) = optional(engine.iam.get_group(&name).await)? else {
        return Ok(None);
    };
    let known = status.group_id.as_deref() == Some(info.id.as_str());
    // Margin for the clock difference between the operator and IAM.
    let skew = SignedDuration::from_secs(5);
    let interrupted = status
        .creating_since
        .as_ref()
        .is_some_and(|since| info.created >= since.0 - skew);
    if known {
        return Ok(Some(info));
    }
    if !interrupted {
        match tenancy {
            Some(t) => t
                .check_group_adoption(&name, adopt_requested(obj))
                .map_err(Error::NameConflict)?,
            None => {
                return Err(Error::NameConflict(format!(
                    "IAM group {name} is not managed by this resource"
                )));
            }
        }
    }
    check_adopted_path("group", &name, &info.path, &obj.spec.path)?;
    let namespace = obj.namespace().unwrap_or_default();
    if let Some(owner) = engine
        .deps
        .group_claimed_by(&info.id, &namespace, &obj.name_any())
        .await?
    {
        return Err(Error::NameConflict(format!(
            "IAM group {name} is managed by IamGroup {owner}; choose another name"
        )));
    }
    Ok(Some(info))
}

/// Observe → guard (path, ownership) → create if missing (intent journaled first) → keep
/// the attachments exactly the spec's.
pub async fn reconcile(
    engine: &Engine,
    obj: &IamGroup,
    status: &mut IamGroupStatus,
    journal: &dyn Journal<IamGroupStatus>,
) -> Result<Synced> {
    let (tenancy, engine) = &engine.for_tenant(obj).await?;
    tenancy
        .check_path(&obj.spec.path)
        .map_err(Error::InvalidSpec)?;
    permissions::check_inline_size(InlineOwner::Group, &obj.spec.inline_policies)?;
    let namespace = obj.namespace().unwrap_or_default();
    let grants = permissions::decide(
        engine,
        tenancy,
        &namespace,
        &obj.spec.policies,
        &obj.spec.inline_policies,
    )
    .await?;
    let mut synced = Synced::default();
    let name = obj.iam_name();
    let mut current = permissions::Current::Read;
    let info = match observe(engine, Some(tenancy), obj, status).await? {
        Some(info) => info,
        None => {
            // Groups cannot be tagged: record the intent first, so that a crash right after
            // CreateGroup leaves a group this resource still recognises as its own.
            status.creating_since = Some(Time(Timestamp::now()));
            journal.record(status).await?;
            let info = engine
                .iam
                .create_group(&name, &obj.spec.path)
                .await
                .map_err(|e| match e {
                    // It did not exist when observed: created since, most likely by this
                    // very call, retried by the SDK after a lost response. The intent just
                    // recorded lets the next reconcile recognise it; a group someone else
                    // created meanwhile is refused there as a name conflict.
                    IamError::AlreadyExists(m) => Error::Iam(IamError::Transient(format!(
                        "IAM group {name} was created while this reconcile ran ({m}); checking whose it is"
                    ))),
                    other => other.into(),
                })?;
            crate::failpoint::hit("after-create-group");
            synced.note(Reason::Created, format!("Created IAM group {name}"));
            // Just created: nothing attached, nothing to list.
            current = permissions::Current::Empty;
            info
        }
    };
    // Recorded before the attachments so a failure below keeps the ownership record.
    status.arn = Some(info.arn.clone());
    status.group_id = Some(info.id.clone());
    status.creating_since = None;
    permissions::sync_from(
        engine,
        Principal::Group(&name),
        &grants.arns,
        &grants.inline,
        current,
        &mut synced,
    )
    .await?;
    grants.refusal()?;
    Ok(synced)
}

/// The finalizer's work: remove members, attachments and inline policies, then the group.
pub async fn cleanup(engine: &Engine, obj: &IamGroup) -> Result<()> {
    if engine.deletion_policy(obj.spec.deletion_policy) == DeletionPolicy::Retain {
        return Ok(());
    }
    let (_, engine) = &engine.for_tenant(obj).await?;
    let status = obj.status.clone().unwrap_or_default();
    let Some(info) = super::ours_to_delete(observe(engine, None, obj, &status).await)? else {
        return Ok(());
    };
    for member in &info.members {
        gone(engine.iam.remove_user_from_group(member, &info.name).await)?;
    }
    permissions::remove_all(engine, Principal::Group(&info.name)).await?;
    gone(engine.iam.delete_group(&info.name).await)?;
    Ok(())
}
