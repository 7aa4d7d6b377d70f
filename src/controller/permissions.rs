//! Managed-policy attachments and inline policies of a user or group: exclusive lists kept
//! equal to the spec. Shared by the IamGroup and IamUser controllers.

use super::plan::plan_set;
use super::{Engine, Reason, Synced};
use crate::api::{InlinePolicy, PolicyAttachment};
use crate::document;
use crate::error::{Error, Result};
use crate::iam::{IamError, Principal, gone};
use crate::limits::{self, InlineOwner};

/// Resolves an attachment to a policy ARN and applies `--deny-policy-arn`.
pub async fn resolve_policy(
    engine: &Engine,
    namespace: &str,
    attachment: &PolicyAttachment,
) -> Result<String> {
    let arn = match (&attachment.policy_ref, &attachment.arn) {
        (Some(r), _) => engine.deps.policy_arn(namespace, &r.name).await?,
        (None, Some(arn)) => arn.clone(),
        (None, None) => {
            return Err(Error::InvalidSpec(
                "a policy entry needs policyRef or arn".into(),
            ));
        }
    };
    check_denied(engine, &arn, "")?;
    Ok(arn)
}

/// Rejects a policy ARN the operator is configured never to grant.
pub fn check_denied(engine: &Engine, arn: &str, via: &str) -> Result<()> {
    match engine.settings.deny_policy_arns.denies(arn) {
        Some(pattern) => Err(Error::InvalidSpec(format!(
            "policy {arn}{via} is denied by the operator (--deny-policy-arn {pattern}); remove it from the spec"
        ))),
        None => Ok(()),
    }
}

/// IAM's limit on the size of a principal's inline policies together, checked before any
/// of them is written.
pub fn check_inline_size(owner: InlineOwner, inline: &[InlinePolicy]) -> Result<()> {
    limits::check_inline_policies(owner, inline.iter().map(|p| (p.name.as_str(), &p.document)))
        .map_err(Error::InvalidSpec)
}

/// Makes the principal's managed attachments and inline policies exactly the desired ones.
/// Notes what changed, for events.
pub async fn sync(
    engine: &Engine,
    principal: Principal<'_>,
    desired_arns: &[String],
    inline: &[InlinePolicy],
    synced: &mut Synced,
) -> Result<()> {
    let current = engine.iam.list_attached_policies(principal).await?;
    let plan = plan_set(&current, desired_arns, false);
    // Detach first: IAM caps attachments per principal (10 by default), so at the cap a
    // swapped policy could never be attached while the old one is still there.
    for arn in &plan.remove {
        gone(engine.iam.detach_policy(principal, arn).await)?;
        synced.note(Reason::Updated, format!("Detached {arn}"));
    }
    for arn in &plan.add {
        engine
            .iam
            .attach_policy(principal, arn)
            .await
            .map_err(|e| match e {
                IamError::NotFound(m) | IamError::Invalid(m) => {
                    Error::InvalidSpec(format!("cannot attach {arn}: {m}"))
                }
                other => other.into(),
            })?;
        synced.note(Reason::Updated, format!("Attached {arn}"));
    }

    let names = engine.iam.list_inline_policies(principal).await?;
    // Delete first, for the same reason: IAM caps the total size of a principal's inline
    // policies.
    for name in names
        .iter()
        .filter(|n| !inline.iter().any(|p| &p.name == *n))
    {
        gone(engine.iam.delete_inline_policy(principal, name).await)?;
        synced.note(Reason::Updated, format!("Deleted inline policy {name}"));
    }
    for policy in inline {
        document::validate(&policy.document)
            .map_err(|m| Error::InvalidSpec(format!("inline policy {}: {m}", policy.name)))?;
        let exists = names.iter().any(|n| n == &policy.name);
        if exists {
            let text = engine
                .iam
                .get_inline_policy(principal, &policy.name)
                .await?;
            if document::parse(&text).is_some_and(|d| document::equivalent(&d, &policy.document)) {
                continue;
            }
        }
        engine
            .iam
            .put_inline_policy(principal, &policy.name, &document::render(&policy.document))
            .await
            .map_err(|e| match e {
                IamError::MalformedPolicy(m) => {
                    Error::InvalidSpec(format!("IAM rejected inline policy {}: {m}", policy.name))
                }
                other => other.into(),
            })?;
        synced.note(
            Reason::Updated,
            format!("Put inline policy {}", policy.name),
        );
    }
    Ok(())
}

/// Detaches every managed policy and deletes every inline policy.
pub async fn remove_all(engine: &Engine, principal: Principal<'_>) -> Result<()> {
    for arn in engine.iam.list_attached_policies(principal).await? {
        gone(engine.iam.detach_policy(principal, &arn).await)?;
    }
    for name in engine.iam.list_inline_policies(principal).await? {
        gone(engine.iam.delete_inline_policy(principal, &name).await)?;
    }
    Ok(())
}
