//! Managed-policy attachments and inline policies of a user or group: exclusive lists kept
//! equal to the spec. Shared by the IamGroup and IamUser controllers.

use super::plan::plan_set;
use super::tenancy::Tenancy;
use super::{Engine, Reason, Synced};
use crate::api::{InlinePolicy, OWNER_TAG, PolicyAttachment};
use crate::document;
use crate::error::{Error, Result};
use crate::iam::{IamError, Principal, gone, optional};
use crate::limits::{self, InlineOwner};

/// What a principal's spec may be granted under the tenancy rules, and what is refused.
/// The allowed part is applied as the exclusive lists, so a refused grant that is in place
/// (attached out of band, or allowed before the rules changed) is removed, not left; the
/// refusals are then reported (`Stalled`), naming each rule.
#[derive(Debug, Default)]
pub struct Grants {
    pub arns: Vec<String>,
    pub inline: Vec<InlinePolicy>,
    pub refused: Vec<String>,
}

impl Grants {
    /// The refusals as one error, if any.
    pub fn refusal(&self) -> Result<()> {
        match self.refused.as_slice() {
            [] => Ok(()),
            all => Err(Error::InvalidSpec(all.join("; "))),
        }
    }
}

/// What a managed policy is used as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Attached: it grants.
    Grant,
    /// A permissions boundary: it only narrows.
    Boundary,
}

/// Whether a managed policy attached by ARN may be granted: the attachment rules, and,
/// where the tenancy screens managed policies, its document. `Ok(Err)` is a refusal.
async fn check_managed(
    engine: &Engine,
    tenancy: &Tenancy,
    arn: &str,
    used_as: Use,
) -> Result<std::result::Result<(), String>> {
    // Read once: the owner tag of a customer policy, and the default version to screen.
    let screen = used_as == Use::Grant && tenancy.screens_managed_policies();
    let info = if screen || !arn.contains(":iam::aws:policy/") {
        optional(engine.iam.get_policy(arn).await)?
    } else {
        None
    };
    let owner = info
        .as_ref()
        .and_then(|p| p.tags.get(OWNER_TAG).map(String::as_str));
    if let Err(refused) = tenancy.check_attachable(arn, owner) {
        return Ok(Err(refused));
    }
    // A boundary only ever narrows what is granted: its document is not screened. A policy
    // that does not exist cannot be attached; IAM says so more clearly.
    let Some(info) = info.filter(|_| screen) else {
        return Ok(Ok(()));
    };
    let text = engine
        .iam
        .get_policy_version(arn, &info.default_version_id)
        .await?;
    let doc = document::parse(&text).unwrap_or(serde_json::Value::Null);
    Ok(tenancy.screen(&format!("managed policy {arn}"), &doc))
}

/// Resolves an attachment to a policy ARN and checks it against the tenancy rules: `Ok(Err)`
/// is a refusal, `Err` a failure to find out (e.g. a dependency not Ready). A policyRef is
/// the namespace's own IamPolicy, whose document is screened when it is reconciled.
pub async fn resolve_policy(
    engine: &Engine,
    tenancy: &Tenancy,
    namespace: &str,
    attachment: &PolicyAttachment,
    used_as: Use,
) -> Result<std::result::Result<String, String>> {
    match (&attachment.policy_ref, &attachment.arn) {
        (Some(r), _) => {
            let arn = engine.deps.policy_arn(namespace, &r.name).await?;
            let owner = engine.settings.owner(namespace, &r.name);
            Ok(tenancy.check_attachable(&arn, Some(&owner)).map(|()| arn))
        }
        (None, Some(arn)) => Ok(check_managed(engine, tenancy, arn, used_as)
            .await?
            .map(|()| arn.clone())),
        (None, None) => Err(Error::InvalidSpec(
            "a policy entry needs policyRef or arn".into(),
        )),
    }
}

/// Decides a principal's managed and inline policies under the tenancy rules.
pub async fn decide(
    engine: &Engine,
    tenancy: &Tenancy,
    namespace: &str,
    policies: &[PolicyAttachment],
    inline: &[InlinePolicy],
) -> Result<Grants> {
    let mut grants = Grants::default();
    for attachment in policies {
        match resolve_policy(engine, tenancy, namespace, attachment, Use::Grant).await? {
            Ok(arn) => grants.arns.push(arn),
            Err(refused) => grants.refused.push(refused),
        }
    }
    for policy in inline {
        match tenancy.screen(&format!("inline policy {}", policy.name), &policy.document) {
            Ok(()) => grants.inline.push(policy.clone()),
            Err(refused) => grants.refused.push(refused),
        }
    }
    Ok(grants)
}

/// Whether a group outside the namespace, joined by name, grants nothing the tenancy
/// refuses: its managed policies pass the attachment rules and, like its inline policies,
/// the escalation screening. Only with the flags: an allowedGroups entry is consent.
pub async fn check_joined_group(
    engine: &Engine,
    tenancy: &Tenancy,
    group: &str,
) -> Result<std::result::Result<(), String>> {
    let principal = Principal::Group(group);
    for arn in engine.iam.list_attached_policies(principal).await? {
        if let Err(refused) = check_managed(engine, tenancy, &arn, Use::Grant).await? {
            return Ok(Err(format!(
                "a policy reached through group {group} is refused: {refused}"
            )));
        }
    }
    for name in engine.iam.list_inline_policies(principal).await? {
        let text = engine.iam.get_inline_policy(principal, &name).await?;
        let doc = document::parse(&text).unwrap_or(serde_json::Value::Null);
        if let Err(refused) =
            tenancy.screen(&format!("inline policy {name} of group {group}"), &doc)
        {
            return Ok(Err(refused));
        }
    }
    Ok(Ok(()))
}

/// IAM's limit on the size of a principal's inline policies together, checked before any
/// of them is written.
pub fn check_inline_size(owner: InlineOwner, inline: &[InlinePolicy]) -> Result<()> {
    limits::check_inline_policies(owner, inline.iter().map(|p| (p.name.as_str(), &p.document)))
        .map_err(Error::InvalidSpec)
}

/// Where the principal's current attachments and inline policies come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Current {
    /// Listed from IAM.
    Read,
    /// None: the principal was created by this very reconcile (IAM's success answer to the
    /// create is authoritative for that), so listing them would only cost reads.
    Empty,
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
    sync_from(
        engine,
        principal,
        desired_arns,
        inline,
        Current::Read,
        synced,
    )
    .await
}

/// [`sync`], with the current state read from IAM or known to be empty.
pub async fn sync_from(
    engine: &Engine,
    principal: Principal<'_>,
    desired_arns: &[String],
    inline: &[InlinePolicy],
    current: Current,
    synced: &mut Synced,
) -> Result<()> {
    let fresh = current == Current::Empty;
    let current = match fresh {
        true => Vec::new(),
        false => engine.iam.list_attached_policies(principal).await?,
    };
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

    let names = match fresh {
        true => Vec::new(),
        false => engine.iam.list_inline_policies(principal).await?,
    };
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
