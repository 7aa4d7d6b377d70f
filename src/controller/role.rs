//! IamRole: a role for workloads. Observe (ownership first) → guard (path, tags, trust,
//! session credentials allowed) → plan (the trust document, tags, sets: pure) → apply: the
//! forced boundary before anything is granted, then tags, description, trust, policies,
//! instance profile, and the ServiceAccount annotations.
//!
//! Session credentials (`spec.sessionCredentials`) come last, once the role and its trust
//! (with the operator's statement) are in place: `credentials::session` issues and
//! publishes them, and the role requeues itself at their refresh time.

pub mod trust;

use super::permissions::Use;
use super::plan::plan_tags;
use super::tenancy::Tenancy;
use super::{Engine, Reason, Synced, check_adopted_path, check_owner, desired_tags, permissions};
use crate::api::{DeletionPolicy, IamRole, IamRoleStatus, PolicyAttachment};
use crate::document;
use crate::error::{Error, Result};
use crate::iam::{IamError, NewRole, Principal, RoleInfo, gone, optional};
use crate::k8s::SecretStore;
use crate::limits::{self, InlineOwner};
use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

/// IAM's default longest session of a role, in seconds.
const DEFAULT_MAX_SESSION: i32 = 3600;

/// The namespace's ServiceAccounts, as far as a role annotates them
/// (`eks.amazonaws.com/role-arn`).
#[async_trait]
pub trait ServiceAccounts: Send + Sync {
    /// Sets the annotation to `role_arn` (only that field, under the operator's own field
    /// manager); `false` when the ServiceAccount does not exist (it is never created).
    async fn annotate(&self, name: &str, role_arn: &str) -> Result<bool>;
    /// Removes the annotation the operator set, if the ServiceAccount still exists.
    async fn unannotate(&self, name: &str) -> Result<()>;
}

/// Finds the role this CR manages; as for users, an unowned role may be adopted with
/// consent when reconciling, never when cleaning up.
async fn observe(
    engine: &Engine,
    tenancy: Option<&Tenancy>,
    obj: &IamRole,
    status: &IamRoleStatus,
) -> Result<Option<RoleInfo>> {
    let name = obj.iam_name();
    let Some(info) = optional(engine.iam.get_role(&name).await)? else {
        return Ok(None);
    };
    let known = status.role_id.as_deref() == Some(info.id.as_str());
    check_owner(
        obj,
        tenancy,
        "role",
        &name,
        &info.tags,
        &engine.owner_of(obj),
        known,
    )?;
    if !known {
        check_adopted_path("role", &name, &info.path, &obj.spec.path)?;
    }
    Ok(Some(info))
}

/// The boundary the role gets, and a refusal to report: the tenancy's forced boundary wins
/// over the spec's, as for users.
async fn desired_boundary(
    engine: &Engine,
    tenancy: &Tenancy,
    namespace: &str,
    spec: Option<&PolicyAttachment>,
) -> Result<(Option<String>, Option<String>)> {
    match (&tenancy.boundary, spec) {
        (Some(forced), None) => Ok((Some(forced.clone()), None)),
        (Some(forced), Some(b)) => {
            let differs =
                match permissions::resolve_policy(engine, tenancy, namespace, b, Use::Boundary)
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
            match permissions::resolve_policy(engine, tenancy, namespace, b, Use::Boundary).await? {
                Ok(arn) => Ok((Some(arn), None)),
                Err(refused) => Err(Error::InvalidSpec(format!(
                    "spec.permissionsBoundary: {refused}"
                ))),
            }
        }
        (None, None) => Ok((None, None)),
    }
}

/// The longest session in seconds (IAM: 1 to 12 hours).
fn max_session(obj: &IamRole) -> Result<i32> {
    let Some(text) = &obj.spec.max_session_duration else {
        return Ok(DEFAULT_MAX_SESSION);
    };
    let d = limits::parse_duration("spec.maxSessionDuration", text).map_err(Error::InvalidSpec)?;
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || !(3600..=43200).contains(&secs) {
        return Err(Error::InvalidSpec(format!(
            "spec.maxSessionDuration {text} must be whole seconds between 1h and 12h (IAM's limits)"
        )));
    }
    Ok(secs as i32)
}

/// The identity that will call `sts:AssumeRole` for the role's session credentials: the
/// role the operator acts as for the namespace, or the operator itself.
fn session_principal<'a>(
    engine: &'a Engine,
    tenancy: &'a Tenancy,
) -> std::result::Result<&'a str, String> {
    if let Some((role, _)) = &tenancy.role {
        return Ok(role);
    }
    engine.settings.operator_principal_arn.as_deref().ok_or_else(|| {
        "spec.sessionCredentials needs the operator's own IAM principal in the trust policy, but it is unknown (no --operator-principal-arn, and sts:GetCallerIdentity failed at start-up); ask the platform team to set --operator-principal-arn".to_string()
    })
}

/// The trust document of what the tenancy allows of the spec, and the refusals. A role
/// that does not exist yet is not created while anything is refused; an existing one gets
/// the allowed part (fail closed), then the refusals are reported.
async fn desired_trust(engine: &Engine, tenancy: &Tenancy, obj: &IamRole) -> Result<trust::Built> {
    let namespace = obj.namespace().unwrap_or_default();
    let mut refused = Vec::new();
    let session = match &obj.spec.session_credentials {
        None => None,
        Some(_) if !tenancy.session_credentials => {
            refused.push(format!(
                "spec.sessionCredentials is not allowed in namespace {namespace} ({} sets sessionCredentials: false); remove it, or use IRSA or Pod Identity",
                tenancy.source
            ));
            None
        }
        Some(_) => match session_principal(engine, tenancy) {
            Ok(principal) => Some(principal),
            Err(e) => {
                refused.push(e);
                None
            }
        },
    };
    let (_, partition) = engine.account().await?;
    let rules = trust::TrustRules {
        namespace: &namespace,
        partition: &partition,
        oidc_provider_arn: engine.settings.oidc_provider_arn.as_deref(),
        session_principal: session,
        allowed: &tenancy.allowed_trust_principals,
        source: &tenancy.source,
    };
    let mut built = trust::build_allowed(&obj.spec.trust, &rules);
    refused.append(&mut built.refused);
    built.refused = refused;
    Ok(built)
}

/// The role's pipeline; see the module documentation.
pub async fn reconcile(
    engine: &Engine,
    obj: &IamRole,
    status: &mut IamRoleStatus,
    accounts: &dyn ServiceAccounts,
    secrets: &dyn SecretStore,
) -> Result<Synced> {
    let mut synced = Synced::default();
    let (tenancy, engine) = &engine.for_tenant(obj).await?;
    tenancy
        .check_path(&obj.spec.path)
        .map_err(Error::InvalidSpec)?;
    limits::check_user_tags(&obj.spec.tags)
        .and_then(|()| limits::check_owner_tag_value(&engine.owner_of(obj)))
        .map_err(Error::InvalidSpec)?;
    permissions::check_inline_size(InlineOwner::Role, &obj.spec.inline_policies)?;
    let max_session = max_session(obj)?;
    let trust::Built {
        document: trust,
        refused: trust_refused,
    } = desired_trust(engine, tenancy, obj).await?;
    let trust_text = document::render(&trust);
    let namespace = obj.namespace().unwrap_or_default();
    let (boundary, boundary_refusal) = desired_boundary(
        engine,
        tenancy,
        &namespace,
        obj.spec.permissions_boundary.as_ref(),
    )
    .await?;

    let mut grants = permissions::decide(
        engine,
        tenancy,
        &namespace,
        &obj.spec.policies,
        &obj.spec.inline_policies,
    )
    .await?;
    let mut refused: Vec<String> = trust_refused;
    refused.extend(boundary_refusal);
    refused.append(&mut grants.refused);
    grants.refused = refused;

    let name = obj.iam_name();
    let tags = desired_tags(&obj.spec.tags, &engine.owner_of(obj));
    let description = obj.spec.description.clone().unwrap_or_default();
    let info = match observe(engine, Some(tenancy), obj, status).await? {
        Some(info) => info,
        None => {
            // Nothing is created while any part of the spec is refused: a role that
            // cannot be what was asked for is not made at all.
            grants.refusal()?;
            let new = NewRole {
                name: &name,
                path: &obj.spec.path,
                trust_policy: &trust_text,
                description: obj.spec.description.as_deref(),
                max_session_duration: Some(max_session),
                tags: &tags,
                // Created with the boundary: nothing is ever granted without it.
                permissions_boundary: boundary.as_deref(),
            };
            let info = engine.iam.create_role(&new).await.map_err(|e| match e {
                IamError::NotFound(m) | IamError::Invalid(m) | IamError::MalformedPolicy(m) => {
                    Error::InvalidSpec(format!("cannot create IAM role {name}: {m}"))
                }
                // Created since it was observed, most likely by this very call retried
                // after a lost response: the next reconcile decides from its tags.
                IamError::AlreadyExists(m) => Error::Iam(IamError::Transient(format!(
                    "IAM role {name} was created while this reconcile ran ({m}); checking whose it is"
                ))),
                other => other.into(),
            })?;
            synced.note(Reason::Created, format!("Created IAM role {name}"));
            status.trust_updated_at = Some(Time(Timestamp::now()));
            info
        }
    };
    status.arn = Some(info.arn.clone());
    status.role_id = Some(info.id.clone());

    // The boundary first: before any trust, tag or policy is granted.
    if info.permissions_boundary != boundary {
        match &boundary {
            Some(arn) => engine
                .iam
                .put_role_permissions_boundary(&name, arn)
                .await
                .map_err(|e| match e {
                    IamError::NotFound(m) | IamError::Invalid(m) => {
                        Error::InvalidSpec(format!("cannot set permissions boundary {arn}: {m}"))
                    }
                    other => other.into(),
                })?,
            None => gone(engine.iam.delete_role_permissions_boundary(&name).await)?,
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
        engine.iam.untag_role(&name, &tag_plan.remove).await?;
    }
    if !tag_plan.set.is_empty() {
        engine.iam.tag_role(&name, &tag_plan.set).await?;
    }
    if !tag_plan.is_empty() {
        synced.note(Reason::Updated, format!("Updated tags of IAM role {name}"));
    }

    if info.description.as_deref().unwrap_or_default() != description
        || info.max_session_duration.unwrap_or(DEFAULT_MAX_SESSION) != max_session
    {
        engine
            .iam
            .update_role(&name, &description, max_session)
            .await?;
        synced.note(
            Reason::Updated,
            format!("Updated description and session length of IAM role {name}"),
        );
    }

    // Semantic comparison: IAM reorders and reformats what it stores.
    let current_trust = document::parse(&info.trust_policy);
    if !current_trust.is_some_and(|d| document::equivalent(&d, &trust)) {
        engine
            .iam
            .update_assume_role_policy(&name, &trust_text)
            .await
            .map_err(|e| match e {
                IamError::MalformedPolicy(m) | IamError::Invalid(m) => {
                    Error::InvalidSpec(format!("IAM rejected the trust policy of {name}: {m}"))
                }
                other => other.into(),
            })?;
        status.trust_updated_at = Some(Time(Timestamp::now()));
        synced.note(
            Reason::Updated,
            format!("Updated trust policy of IAM role {name}"),
        );
    }

    permissions::sync(
        engine,
        Principal::Role(&name),
        &grants.arns,
        &grants.inline,
        &mut synced,
    )
    .await?;

    status.instance_profile_arn = sync_instance_profile(
        engine,
        obj,
        &name,
        obj.spec.instance_profile == Some(true),
        &mut synced,
    )
    .await?;

    let annotations = sync_annotations(obj, status, &info.arn, accounts, &mut synced).await;

    grants.refusal()?;
    annotations?;
    sync_session(engine, obj, status, &info.arn, secrets, &mut synced).await?;
    Ok(synced)
}

/// Session credentials: published and refreshed while the spec asks for them (the trust
/// built above lets the operator assume the role), their Secret deleted when it no longer
/// does. A refusal by STS fails the reconcile (Ready False) with its message, after the
/// step kept still-valid credentials or removed expired ones.
async fn sync_session(
    engine: &Engine,
    obj: &IamRole,
    status: &mut IamRoleStatus,
    role_arn: &str,
    secrets: &dyn SecretStore,
    synced: &mut Synced,
) -> Result<()> {
    use super::credentials::session;
    if obj.spec.session_credentials.is_none() {
        if let Some(published) = status.session_credentials.take() {
            session::remove(secrets, obj, Some(&published), false).await?;
            synced.note(
                Reason::SessionCredentialsRemoved,
                "Deleted the session credentials Secret: spec.sessionCredentials was removed",
            );
        }
        return Ok(());
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let step = session::SessionStep {
        iam: &*engine.iam,
        secrets,
        obj,
        role_arn,
        now,
    };
    let outcome = session::reconcile(&step, &mut status.session_credentials).await?;
    if let Some(at) = outcome.requeue_at {
        let after = std::time::Duration::try_from(at.duration_since(now))
            .unwrap_or(std::time::Duration::ZERO)
            .max(std::time::Duration::from_secs(1));
        synced.requeue_within(after);
    }
    if let Some(why) = outcome.issued {
        synced.note(Reason::SessionCredentialsPublished, why.message());
    }
    match outcome.error {
        Some(e) => Err(settling(e, status.trust_updated_at.as_ref(), now)),
        None => Ok(()),
    }
}

/// How long after the operator wrote a role's trust policy STS may still refuse because of
/// it: IAM is eventually consistent, and a new or changed trust usually applies within
/// seconds. A refusal then is retried with backoff, not reported as Stalled.
const TRUST_SETTLING: k8s_openapi::jiff::SignedDuration =
    k8s_openapi::jiff::SignedDuration::from_secs(120);

/// `AccessDenied` from `AssumeRole` shortly after the trust was written is transient.
fn settling(err: Error, trust_updated_at: Option<&Time>, now: Timestamp) -> Error {
    match err {
        Error::Iam(IamError::AccessDenied(m))
            if trust_updated_at.is_some_and(|t| now.duration_since(t.0) < TRUST_SETTLING) =>
        {
            Error::Iam(IamError::Transient(format!(
                "{m} (the role's trust policy was written moments ago and IAM may not apply it yet; retrying)"
            )))
        }
        other => other,
    }
}

/// Keeps the role in an instance profile of its own name and path when `wanted`, and in no
/// other. Returns the profile's ARN.
async fn sync_instance_profile(
    engine: &Engine,
    obj: &IamRole,
    role: &str,
    wanted: bool,
    synced: &mut Synced,
) -> Result<Option<String>> {
    let mut arn = None;
    for profile in engine.iam.list_instance_profiles_for_role(role).await? {
        if wanted && profile.name == role {
            arn = Some(profile.arn.clone());
            continue;
        }
        gone(
            engine
                .iam
                .remove_role_from_instance_profile(&profile.name, role)
                .await,
        )?;
        if profile.name == role {
            gone(engine.iam.delete_instance_profile(&profile.name).await)?;
            synced.note(
                Reason::Updated,
                format!("Deleted instance profile {}", profile.name),
            );
        } else {
            synced.note(
                Reason::Updated,
                format!("Removed from instance profile {}", profile.name),
            );
        }
    }
    if !wanted || arn.is_some() {
        return Ok(arn);
    }
    let profile = match optional(engine.iam.get_instance_profile(role).await)? {
        // A profile of that name holding another role is not this resource's to take.
        Some(p) if p.roles.iter().any(|r| r != role) => {
            return Err(Error::NameConflict(format!(
                "instance profile {role} exists and holds role {}; remove spec.instanceProfile or free the name",
                p.roles.join(", ")
            )));
        }
        Some(p) => p,
        None => {
            let p = engine
                .iam
                .create_instance_profile(role, &obj.spec.path)
                .await?;
            synced.note(Reason::Created, format!("Created instance profile {role}"));
            p
        }
    };
    engine
        .iam
        .add_role_to_instance_profile(&profile.name, role)
        .await?;
    synced.note(
        Reason::Updated,
        format!("Added role {role} to instance profile {}", profile.name),
    );
    Ok(Some(profile.arn))
}

/// The ServiceAccounts that should carry the role's ARN.
fn wanted_annotations(obj: &IamRole) -> Vec<String> {
    if obj.spec.trust.annotate_service_accounts != Some(true) {
        return Vec::new();
    }
    let mut names: Vec<String> = obj
        .spec
        .trust
        .service_accounts
        .iter()
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Annotates the listed ServiceAccounts that exist and removes the annotation from those no
/// longer listed; `status.annotatedServiceAccounts` records which carry it. A missing
/// ServiceAccount is waited for (its creation wakes the role), never created.
async fn sync_annotations(
    obj: &IamRole,
    status: &mut IamRoleStatus,
    role_arn: &str,
    accounts: &dyn ServiceAccounts,
    synced: &mut Synced,
) -> Result<()> {
    let wanted = wanted_annotations(obj);
    let previous = std::mem::take(&mut status.annotated_service_accounts);
    for name in previous.iter().filter(|n| !wanted.contains(n)) {
        if let Err(e) = accounts.unannotate(name).await {
            // Still ours to remove on the next attempt.
            status.annotated_service_accounts = previous.clone();
            return Err(e);
        }
        synced.note(
            Reason::Updated,
            format!("Removed the role annotation from ServiceAccount {name}"),
        );
    }
    let mut missing = Vec::new();
    for name in &wanted {
        match accounts.annotate(name, role_arn).await {
            Ok(true) => {
                status.annotated_service_accounts.push(name.clone());
                if !previous.contains(name) {
                    synced.note(
                        Reason::Updated,
                        format!("Annotated ServiceAccount {name} with the role's ARN"),
                    );
                }
            }
            Ok(false) => missing.push(name.clone()),
            Err(e) => {
                // What was annotated before stays recorded, so it can be removed later.
                for n in previous.iter().filter(|n| wanted.contains(n)) {
                    if !status.annotated_service_accounts.contains(n) {
                        status.annotated_service_accounts.push(n.clone());
                    }
                }
                return Err(e);
            }
        }
    }
    status.annotated_service_accounts.sort();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::DependencyNotReady(format!(
        "the role is in IAM, but ServiceAccount {} of namespace {} does not exist, so it is not annotated with eks.amazonaws.com/role-arn; create it (the operator never does)",
        missing.join(", "),
        obj.namespace().unwrap_or_default()
    )))
}

/// The finalizer's work. `Delete`: the role's instance profiles, managed and inline
/// policies, then the role, in the order IAM demands, and the ServiceAccount annotations.
/// `Retain` leaves the role and the annotations that point workloads at it.
pub async fn cleanup(
    engine: &Engine,
    obj: &IamRole,
    accounts: &dyn ServiceAccounts,
    secrets: &dyn SecretStore,
) -> Result<()> {
    // The session Secret: deleted with `Delete`, kept (without its owner) with `Retain`.
    let retain = engine.deletion_policy(obj.spec.deletion_policy) == DeletionPolicy::Retain;
    let published = obj
        .status
        .as_ref()
        .and_then(|s| s.session_credentials.as_ref());
    if obj.spec.session_credentials.is_some() || published.is_some() {
        super::credentials::session::remove(secrets, obj, published, retain).await?;
    }
    if retain {
        return Ok(());
    }
    let (_, engine) = &engine.for_tenant(obj).await?;
    let status = obj.status.clone().unwrap_or_default();
    for name in &status.annotated_service_accounts {
        accounts.unannotate(name).await?;
    }
    let Some(info) = super::ours_to_delete(observe(engine, None, obj, &status).await)? else {
        return Ok(());
    };
    let name = &info.name;
    for profile in engine.iam.list_instance_profiles_for_role(name).await? {
        gone(
            engine
                .iam
                .remove_role_from_instance_profile(&profile.name, name)
                .await,
        )?;
        // Only the role's own profile goes with it.
        if profile.name == *name {
            gone(engine.iam.delete_instance_profile(&profile.name).await)?;
        }
    }
    permissions::remove_all(engine, Principal::Role(name)).await?;
    gone(engine.iam.delete_role(name).await)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_right_after_the_trust_was_written_is_retried_not_stalled() {
        let now = Timestamp::now();
        let denied = || Error::Iam(IamError::AccessDenied("not authorized".into()));
        let written = |secs| Time(now - k8s_openapi::jiff::SignedDuration::from_secs(secs));
        let fresh = settling(denied(), Some(&written(5)), now);
        assert!(
            matches!(&fresh, Error::Iam(IamError::Transient(m)) if m.contains("not authorized")),
            "{fresh:?}"
        );
        assert!(matches!(
            settling(denied(), Some(&written(600)), now),
            Error::Iam(IamError::AccessDenied(_))
        ));
        assert!(matches!(
            settling(denied(), None, now),
            Error::Iam(IamError::AccessDenied(_))
        ));
        // Other failures are what they are.
        assert!(matches!(
            settling(Error::InvalidSpec("x".into()), Some(&written(5)), now),
            Error::InvalidSpec(_)
        ));
    }
}
