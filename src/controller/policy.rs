//! IamPolicy: a customer-managed policy kept equal to the spec.

use super::plan::{plan_tags, version_to_prune};
use super::tenancy::Tenancy;
use super::{Engine, Reason, Synced, check_owner, desired_tags};
use crate::api::{DeletionPolicy, IamPolicy, IamPolicyStatus};
use crate::error::{Error, Result};
use crate::iam::{IamError, PolicyInfo, gone, optional};
use crate::{document, limits};

/// ARN IAM gives a customer-managed policy.
pub fn policy_arn(partition: &str, account: &str, path: &str, name: &str) -> String {
    format!("arn:{partition}:iam::{account}:policy{path}{name}")
}

/// Guard: the tenancy's path and escalation screening, and what IAM would refuse (or answer
/// less clearly), are refused before calling IAM.
fn guard(engine: &Engine, tenancy: &Tenancy, obj: &IamPolicy) -> Result<()> {
    tenancy
        .check_path(&obj.spec.path)
        .map_err(Error::InvalidSpec)?;
    document::validate(&obj.spec.document)
        .map_err(|m| Error::InvalidSpec(format!("spec.document: {m}")))?;
    limits::check_managed_policy(&obj.spec.document)
        .and_then(|()| limits::check_policy_tags(&obj.spec.tags))
        .and_then(|()| limits::check_owner_tag_value(&engine.owner_of(obj)))
        .and_then(|()| tenancy.screen("spec.document", &obj.spec.document))
        .map_err(Error::InvalidSpec)
}

/// Finds the policy this CR manages, if it exists and may be managed by it. With a tenancy
/// (reconciling), an unowned policy may be adopted with consent; without (cleaning up),
/// only this resource's own policy is found.
async fn observe(
    engine: &Engine,
    tenancy: Option<&Tenancy>,
    obj: &IamPolicy,
    status: &IamPolicyStatus,
) -> Result<Option<PolicyInfo>> {
    let name = obj.iam_name();
    let (account, partition) = engine.account().await?;
    let arn = policy_arn(&partition, &account, &obj.spec.path, &name);
    if tenancy.is_some_and(|t| t.protects(&arn)) {
        return Err(Error::NameConflict(format!(
            "policy {arn} is named by the tenancy rules (a forced permissions boundary or an allowed managed policy); a tenant's IamPolicy can never manage it: choose another name"
        )));
    }
    let known = status.arn.as_deref() == Some(arn.as_str());
    let Some(info) = optional(engine.iam.get_policy(&arn).await)? else {
        return Ok(None);
    };
    check_owner(
        obj,
        tenancy,
        "policy",
        &name,
        &info.tags,
        &engine.owner_of(obj),
        known,
    )?;
    Ok(Some(info))
}

/// Brings IAM in line with the spec and fills `status` with what IAM reports.
pub async fn reconcile(
    engine: &Engine,
    obj: &IamPolicy,
    status: &mut IamPolicyStatus,
) -> Result<Synced> {
    let (tenancy, engine) = &engine.for_tenant(obj).await?;
    guard(engine, tenancy, obj)?;
    let mut synced = Synced::default();
    let name = obj.iam_name();
    let tags = desired_tags(&obj.spec.tags, &engine.owner_of(obj));
    let rendered = document::render(&obj.spec.document);

    let info = match observe(engine, Some(tenancy), obj, status).await? {
        Some(info) => info,
        None => {
            let created = match engine
                .iam
                .create_policy(
                    &name,
                    &obj.spec.path,
                    obj.spec.description.as_deref(),
                    &rendered,
                    &tags,
                )
                .await
            {
                Ok(created) => created,
                // It did not exist when observed. At this very ARN it was created since,
                // most likely by this call's own first attempt, retried by the SDK after
                // a lost response: the next reconcile observes it and decides from its
                // tags whose it is. Only a policy of this name elsewhere is a conflict.
                Err(IamError::AlreadyExists(m)) => {
                    let (account, partition) = engine.account().await?;
                    let arn = policy_arn(&partition, &account, &obj.spec.path, &name);
                    return Err(match optional(engine.iam.get_policy(&arn).await)? {
                        Some(_) => Error::Iam(IamError::Transient(format!(
                            "IAM policy {name} was created while this reconcile ran ({m}); checking whose it is"
                        ))),
                        None => Error::NameConflict(format!(
                            "an IAM policy named {name} already exists at another path; choose another name"
                        )),
                    });
                }
                Err(IamError::MalformedPolicy(m)) => {
                    return Err(Error::InvalidSpec(format!(
                        "IAM rejected spec.document: {m}"
                    )));
                }
                Err(other) => return Err(other.into()),
            };
            synced.note(Reason::Created, format!("Created IAM policy {name}"));
            record(status, &created);
            return Ok(synced);
        }
    };

    let current = engine
        .iam
        .get_policy_version(&info.arn, &info.default_version_id)
        .await?;
    let mut default_version = info.default_version_id.clone();
    let same =
        document::parse(&current).is_some_and(|doc| document::equivalent(&doc, &obj.spec.document));
    if !same {
        default_version = replace_default_version(engine, &info.arn, &rendered)
            .await
            .map_err(|e| match e {
                IamError::MalformedPolicy(m) => {
                    Error::InvalidSpec(format!("IAM rejected spec.document: {m}"))
                }
                other => other.into(),
            })?;
        synced.note(
            Reason::Updated,
            format!("Updated IAM policy {name}: version {default_version} is the default"),
        );
    }

    let tag_plan = plan_tags(&info.tags, &tags);
    if !tag_plan.remove.is_empty() {
        engine.iam.untag_policy(&info.arn, &tag_plan.remove).await?;
    }
    if !tag_plan.set.is_empty() {
        engine.iam.tag_policy(&info.arn, &tag_plan.set).await?;
    }
    if !tag_plan.is_empty() {
        synced.note(
            Reason::Updated,
            format!("Reverted tags of IAM policy {name}"),
        );
    }

    record(
        status,
        &PolicyInfo {
            default_version_id: default_version,
            ..info
        },
    );
    Ok(synced)
}

/// Makes `document` the policy's default version, first pruning a version when IAM's cap
/// of five is reached. Returns the new default version's id.
pub async fn replace_default_version(
    engine: &Engine,
    arn: &str,
    document: &str,
) -> std::result::Result<String, IamError> {
    let versions = engine.iam.list_policy_versions(arn).await?;
    if let Some(old) = version_to_prune(&versions) {
        gone(engine.iam.delete_policy_version(arn, &old.version_id).await)?;
    }
    engine.iam.create_policy_version(arn, document).await
}

/// Deletes a policy that nothing is attached to: its non-default versions first, as IAM
/// requires.
pub async fn delete_with_versions(engine: &Engine, arn: &str) -> std::result::Result<(), IamError> {
    for version in engine.iam.list_policy_versions(arn).await? {
        if !version.is_default {
            gone(
                engine
                    .iam
                    .delete_policy_version(arn, &version.version_id)
                    .await,
            )?;
        }
    }
    engine.iam.delete_policy(arn).await
}

fn record(status: &mut IamPolicyStatus, info: &PolicyInfo) {
    status.arn = Some(info.arn.clone());
    status.policy_id = Some(info.id.clone());
    status.default_version_id = Some(info.default_version_id.clone());
}

/// The finalizer's work: detach the policy everywhere, delete its non-default versions and
/// the policy. Idempotent; a policy that is gone or not ours is left alone.
pub async fn cleanup(engine: &Engine, obj: &IamPolicy) -> Result<()> {
    if engine.deletion_policy(obj.spec.deletion_policy) == DeletionPolicy::Retain {
        return Ok(());
    }
    let (_, engine) = &engine.for_tenant(obj).await?;
    let status = obj.status.clone().unwrap_or_default();
    let Some(info) = super::ours_to_delete(observe(engine, None, obj, &status).await)? else {
        return Ok(());
    };
    let arn = &info.arn;
    let entities = engine.iam.list_entities_for_policy(arn).await?;
    for user in &entities.users {
        gone(
            engine
                .iam
                .detach_policy(crate::iam::Principal::User(user), arn)
                .await,
        )?;
    }
    for group in &entities.groups {
        gone(
            engine
                .iam
                .detach_policy(crate::iam::Principal::Group(group), arn)
                .await,
        )?;
    }
    for role in &entities.roles {
        gone(engine.iam.detach_role_policy(role, arn).await)?;
    }
    match gone(delete_with_versions(engine, arn).await) {
        // Attachments are gone by now: what remains is a use as a permissions boundary.
        Err(IamError::Conflict(m)) => Err(Error::Iam(IamError::Conflict(format!(
            "IAM policy {arn} is still in use, as the permissions boundary of a user or role; remove it from them (or their IamUser's spec.permissionsBoundary), then the deletion completes ({m})"
        )))),
        other => Ok(other?),
    }
}
