//! The IAM port: the only code that talks to AWS IAM. Everything else sees the domain types
//! and the small [`IamError`] enum defined here; `aws.rs` implements the port over
//! `aws-sdk-iam`.

mod aws;
mod fenced;

pub use aws::{AssumedRoles, AwsIam};
pub use fenced::FencedIam;

pub use crate::api::AccountPasswordPolicySpec;
use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::sync::Arc;

/// IAM failures, reduced to what the controllers act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("malformed policy document: {0}")]
    MalformedPolicy(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("transient IAM failure: {0}")]
    Transient(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl IamError {
    /// Stable CamelCase label, used as condition reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            IamError::NotFound(_) => "NotFound",
            IamError::AlreadyExists(_) => "NameConflict",
            IamError::Conflict(_) => "Conflict",
            IamError::LimitExceeded(_) => "LimitExceeded",
            IamError::MalformedPolicy(_) => "InvalidSpec",
            IamError::AccessDenied(_) => "AccessDenied",
            IamError::Throttled(_) => "Throttled",
            IamError::Transient(_) => "TransientError",
            IamError::Invalid(_) => "InvalidSpec",
        }
    }

    /// Whether retrying without a spec change can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IamError::Throttled(_) | IamError::Transient(_) | IamError::Conflict(_)
        )
    }
}

pub type IamResult<T> = Result<T, IamError>;

/// IAM as other identities: a tenancy policy's role, assumed through STS.
#[async_trait]
pub trait Identities: Send + Sync {
    /// The IAM port acting as `role_arn` (session credentials cached and refreshed before
    /// they expire).
    async fn assume(&self, role_arn: &str, external_id: Option<&str>) -> Arc<dyn Iam>;
}

/// Turns `NotFound` into `None`, for reads of things that may not exist.
pub fn optional<T>(r: IamResult<T>) -> IamResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(IamError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Treats `NotFound` as done, for idempotent deletes.
pub fn gone(r: IamResult<()>) -> IamResult<()> {
    match r {
        Err(IamError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// A customer-managed policy as IAM reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInfo {
    pub arn: String,
    pub id: String,
    pub name: String,
    pub path: String,
    pub default_version_id: String,
    pub tags: BTreeMap<String, String>,
}

/// One version of a managed policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyVersion {
    pub version_id: String,
    pub is_default: bool,
    pub created: Timestamp,
}

/// Users, groups and roles a managed policy is attached to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyEntities {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

/// An IAM user as IAM reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub arn: String,
    pub id: String,
    pub name: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    pub permissions_boundary: Option<String>,
}

/// An IAM group as IAM reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub arn: String,
    pub id: String,
    pub name: String,
    pub path: String,
    pub created: Timestamp,
    pub members: Vec<String>,
}

/// An IAM role as IAM reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleInfo {
    pub arn: String,
    pub id: String,
    pub name: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    pub permissions_boundary: Option<String>,
    pub description: Option<String>,
    /// Longest session, in seconds.
    pub max_session_duration: Option<i32>,
    /// The trust (assume-role) policy, as JSON text.
    pub trust_policy: String,
}

/// What `CreateRole` sets.
#[derive(Debug, Clone, Copy)]
pub struct NewRole<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub trust_policy: &'a str,
    pub description: Option<&'a str>,
    pub max_session_duration: Option<i32>,
    pub tags: &'a BTreeMap<String, String>,
    pub permissions_boundary: Option<&'a str>,
}

/// An instance profile as IAM reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceProfileInfo {
    pub arn: String,
    pub name: String,
    pub path: String,
    /// Names of the roles in it (at most one).
    pub roles: Vec<String>,
}

/// A principal that managed and inline policies attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    User(&'a str),
    Group(&'a str),
    Role(&'a str),
}

/// Whether an access key can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

/// An access key without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessKeyInfo {
    pub id: String,
    pub status: KeyStatus,
    pub created: Timestamp,
}

/// An MFA device enabled on a user: its serial number (a virtual device's ARN or a
/// hardware device's serial), never its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct MfaDevice {
    pub serial_number: String,
    pub enabled_at: Timestamp,
}

/// A freshly created access key: the only moment IAM reveals the secret.
#[derive(Debug, Clone)]
pub struct NewAccessKey {
    pub id: String,
    pub secret: SecretString,
    pub created: Timestamp,
}

/// The account password policy, reduced to what password generation needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PasswordPolicy {
    pub minimum_length: u32,
    pub require_symbols: bool,
    pub require_numbers: bool,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub allow_users_to_change_password: bool,
}

/// What password generation and console users need of the account's whole policy.
impl From<&AccountPasswordPolicySpec> for PasswordPolicy {
    fn from(p: &AccountPasswordPolicySpec) -> Self {
        Self {
            // IAM's default minimum when the policy leaves it unset.
            minimum_length: p.minimum_password_length.unwrap_or(8).max(0) as u32,
            require_symbols: p.require_symbols,
            require_numbers: p.require_numbers,
            require_uppercase: p.require_uppercase_characters,
            require_lowercase: p.require_lowercase_characters,
            allow_users_to_change_password: p.allow_users_to_change_password,
        }
    }
}

/// What the drift scan compares between passes: a fingerprint of each user, group and
/// customer-managed policy over everything the account authorization details report
/// (path, memberships, attachments, inline documents, boundary, tags, default version).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountSnapshot {
    /// By user name.
    pub users: BTreeMap<String, u64>,
    /// By group name.
    pub groups: BTreeMap<String, u64>,
    /// By policy ARN.
    pub policies: BTreeMap<String, u64>,
    /// By role name (path, trust policy, attachments, inline documents, boundary, tags,
    /// instance profiles).
    pub roles: BTreeMap<String, u64>,
}

/// Temporary credentials of a role session (`sts:AssumeRole`). The secret and the token
/// stay in `SecretString` (redacted `Debug`) until they are written into a Secret.
#[derive(Debug, Clone)]
pub struct SessionCredentials {
    /// `ASIA...`: safe to show.
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: SecretString,
    /// When STS says they stop working.
    pub expiration: Timestamp,
}

/// The port. Every method is one logical IAM read or write; list methods return all pages.
#[async_trait]
pub trait Iam: Send + Sync {
    /// The account id and partition of the credentials in use.
    async fn account(&self) -> IamResult<(String, String)>;
    async fn account_alias(&self) -> IamResult<Option<String>>;
    async fn password_policy(&self) -> IamResult<Option<PasswordPolicy>>;
    /// Users, groups and customer-managed policies of the whole account in a few paged
    /// calls (`GetAccountAuthorizationDetails`), for the drift scan.
    async fn account_snapshot(&self) -> IamResult<AccountSnapshot>;

    // Account settings (IamAccountSettings).
    /// The whole account password policy; `None` when the account has none.
    async fn account_password_policy(&self) -> IamResult<Option<AccountPasswordPolicySpec>>;
    async fn update_account_password_policy(
        &self,
        policy: &AccountPasswordPolicySpec,
    ) -> IamResult<()>;
    async fn delete_account_password_policy(&self) -> IamResult<()>;
    async fn create_account_alias(&self, alias: &str) -> IamResult<()>;
    async fn delete_account_alias(&self, alias: &str) -> IamResult<()>;
    /// `GetAccountSummary`'s map (`AccountMFAEnabled`, `Users`, `MFADevicesInUse`, ...).
    async fn account_summary(&self) -> IamResult<BTreeMap<String, i32>>;

    // Managed policies.
    async fn get_policy(&self, arn: &str) -> IamResult<PolicyInfo>;
    async fn create_policy(
        &self,
        name: &str,
        path: &str,
        description: Option<&str>,
        document: &str,
        tags: &BTreeMap<String, String>,
    ) -> IamResult<PolicyInfo>;
    async fn list_policy_versions(&self, arn: &str) -> IamResult<Vec<PolicyVersion>>;
    /// The document of a version, as JSON text.
    async fn get_policy_version(&self, arn: &str, version_id: &str) -> IamResult<String>;
    async fn create_policy_version(&self, arn: &str, document: &str) -> IamResult<String>;
    async fn delete_policy_version(&self, arn: &str, version_id: &str) -> IamResult<()>;
    async fn tag_policy(&self, arn: &str, tags: &BTreeMap<String, String>) -> IamResult<()>;
    async fn untag_policy(&self, arn: &str, keys: &[String]) -> IamResult<()>;
    async fn list_entities_for_policy(&self, arn: &str) -> IamResult<PolicyEntities>;
    async fn detach_role_policy(&self, role: &str, arn: &str) -> IamResult<()>;
    async fn delete_policy(&self, arn: &str) -> IamResult<()>;

    // Managed and inline policies of users and groups.
    async fn list_attached_policies(&self, principal: Principal<'_>) -> IamResult<Vec<String>>;
    async fn attach_policy(&self, principal: Principal<'_>, arn: &str) -> IamResult<()>;
    async fn detach_policy(&self, principal: Principal<'_>, arn: &str) -> IamResult<()>;
    async fn list_inline_policies(&self, principal: Principal<'_>) -> IamResult<Vec<String>>;
    async fn get_inline_policy(&self, principal: Principal<'_>, name: &str) -> IamResult<String>;
    async fn put_inline_policy(
        &self,
        principal: Principal<'_>,
        name: &str,
        document: &str,
    ) -> IamResult<()>;
    async fn delete_inline_policy(&self, principal: Principal<'_>, name: &str) -> IamResult<()>;

    // Groups.
    async fn get_group(&self, name: &str) -> IamResult<GroupInfo>;
    async fn create_group(&self, name: &str, path: &str) -> IamResult<GroupInfo>;
    async fn delete_group(&self, name: &str) -> IamResult<()>;

    // Users.
    async fn get_user(&self, name: &str) -> IamResult<UserInfo>;
    async fn create_user(
        &self,
        name: &str,
        path: &str,
        tags: &BTreeMap<String, String>,
        permissions_boundary: Option<&str>,
    ) -> IamResult<UserInfo>;
    async fn delete_user(&self, name: &str) -> IamResult<()>;
    async fn tag_user(&self, name: &str, tags: &BTreeMap<String, String>) -> IamResult<()>;
    async fn untag_user(&self, name: &str, keys: &[String]) -> IamResult<()>;
    async fn put_permissions_boundary(&self, user: &str, arn: &str) -> IamResult<()>;
    async fn delete_permissions_boundary(&self, user: &str) -> IamResult<()>;
    async fn list_groups_for_user(&self, user: &str) -> IamResult<Vec<String>>;
    async fn add_user_to_group(&self, user: &str, group: &str) -> IamResult<()>;
    async fn remove_user_from_group(&self, user: &str, group: &str) -> IamResult<()>;

    // Credentials.
    async fn list_access_keys(&self, user: &str) -> IamResult<Vec<AccessKeyInfo>>;
    async fn create_access_key(&self, user: &str) -> IamResult<NewAccessKey>;
    async fn update_access_key(&self, user: &str, id: &str, status: KeyStatus) -> IamResult<()>;
    async fn delete_access_key(&self, user: &str, id: &str) -> IamResult<()>;
    /// Whether the user has a login profile (console password).
    async fn has_login_profile(&self, user: &str) -> IamResult<bool>;
    async fn create_login_profile(
        &self,
        user: &str,
        password: &SecretString,
        reset_required: bool,
    ) -> IamResult<()>;
    async fn update_login_profile(
        &self,
        user: &str,
        password: &SecretString,
        reset_required: bool,
    ) -> IamResult<()>;
    async fn delete_login_profile(&self, user: &str) -> IamResult<()>;
    /// The MFA devices enabled on the user.
    async fn list_mfa_devices(&self, user: &str) -> IamResult<Vec<MfaDevice>>;

    /// Removes every credential IAM requires gone before `DeleteUser` that the operator does
    /// not manage itself: MFA devices, signing certificates, SSH public keys and
    /// service-specific credentials.
    async fn delete_other_credentials(&self, user: &str) -> IamResult<()>;

    // Roles (IamRole). Their managed and inline policies go through `Principal::Role`.
    /// The ARN of the identity the operator's credentials belong to
    /// (`sts:GetCallerIdentity`).
    async fn caller_arn(&self) -> IamResult<String>;
    async fn get_role(&self, name: &str) -> IamResult<RoleInfo>;
    async fn create_role(&self, role: &NewRole<'_>) -> IamResult<RoleInfo>;
    /// Sets the description and the longest session of a role.
    async fn update_role(
        &self,
        name: &str,
        description: &str,
        max_session_duration: i32,
    ) -> IamResult<()>;
    async fn update_assume_role_policy(&self, name: &str, document: &str) -> IamResult<()>;
    async fn tag_role(&self, name: &str, tags: &BTreeMap<String, String>) -> IamResult<()>;
    async fn untag_role(&self, name: &str, keys: &[String]) -> IamResult<()>;
    async fn put_role_permissions_boundary(&self, role: &str, arn: &str) -> IamResult<()>;
    async fn delete_role_permissions_boundary(&self, role: &str) -> IamResult<()>;
    async fn delete_role(&self, name: &str) -> IamResult<()>;
    async fn get_instance_profile(&self, name: &str) -> IamResult<InstanceProfileInfo>;
    async fn create_instance_profile(
        &self,
        name: &str,
        path: &str,
    ) -> IamResult<InstanceProfileInfo>;
    async fn delete_instance_profile(&self, name: &str) -> IamResult<()>;
    async fn add_role_to_instance_profile(&self, profile: &str, role: &str) -> IamResult<()>;
    async fn remove_role_from_instance_profile(&self, profile: &str, role: &str) -> IamResult<()>;
    async fn list_instance_profiles_for_role(
        &self,
        role: &str,
    ) -> IamResult<Vec<InstanceProfileInfo>>;

    // STS.
    /// Credentials of a new session of the role `role_arn`, named `session_name` (1-64
    /// characters of `[\w+=,.@-]`), lasting `duration`, obtained with this port's own
    /// identity (the operator's, or the tenancy's role). `AccessDenied` when the role's
    /// trust policy does not allow that identity; `Invalid` when the duration exceeds the
    /// role's maximum. Issuing credentials is a write (fenced like one).
    async fn assume_role_session(
        &self,
        role_arn: &str,
        session_name: &str,
        duration: std::time::Duration,
    ) -> IamResult<SessionCredentials>;
}

// Account details: everything one `GetAccountAuthorizationDetails` pass reports (read-only).

/// A user with everything `GetAccountAuthorizationDetails` reports about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserDetails {
    pub name: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    pub permissions_boundary: Option<String>,
    pub groups: Vec<String>,
    /// ARNs of attached managed policies.
    pub attached: Vec<String>,
    /// Inline policies: name and decoded JSON document.
    pub inline: Vec<(String, String)>,
}

/// A group with its attachments and inline policies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupDetails {
    pub name: String,
    pub path: String,
    pub attached: Vec<String>,
    pub inline: Vec<(String, String)>,
}

/// A customer-managed policy with its default version's decoded document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedPolicyDetails {
    pub arn: String,
    pub name: String,
    pub path: String,
    pub description: Option<String>,
    pub document: String,
    pub tags: BTreeMap<String, String>,
}

/// Users, groups and customer-managed policies of an account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountDetails {
    pub users: Vec<UserDetails>,
    pub groups: Vec<GroupDetails>,
    pub policies: Vec<ManagedPolicyDetails>,
}
