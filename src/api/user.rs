use super::common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An IAM user: identity, group memberships, permissions and credentials.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "iam.kubeop.dev",
    version = "v1alpha1",
    kind = "IamUser",
    namespaced,
    status = "IamUserStatus",
    shortname = "iamuser",
    shortname = "iamusers",
    category = "iam",
    doc = "IamUser declares an AWS IAM user, its groups, policies and credentials.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.arn"),
    printcolumn(name = "Key-Age", type_ = "date", json_path = ".status.accessKey.createdAt"),
    printcolumn(name = "MFA", type_ = "boolean", json_path = ".status.console.mfaActive"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.userName) == has(oldSelf.spec.userName)").message("spec.userName is immutable"),
    validation = Rule::new("has(self.spec.userName) || size(self.metadata.name) <= 64").message("metadata.name is longer than IAM's 64-character user name limit: set spec.userName to a shorter name").field_path(".spec.userName"),
    validation = Rule::new("(has(self.spec.accessKey) && has(self.spec.accessKey.secretName) ? self.spec.accessKey.secretName : self.metadata.name + '-aws-credentials') != (has(self.spec.console) && has(self.spec.console.secretName) ? self.spec.console.secretName : self.metadata.name + '-console')").message("the access-key Secret and the console Secret must have different names, or their writers overwrite each other: change spec.accessKey.secretName or spec.console.secretName (defaults: <metadata.name>-aws-credentials and <metadata.name>-console)").field_path(".spec.console.secretName")
)]
#[serde(rename_all = "camelCase")]
pub struct IamUserSpec {
    /// Name of the user in IAM: 1-64 characters of `A-Za-z0-9+=,.@_-`. Defaults to
    /// `metadata.name` (which then must be at most 64 characters). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(USER_NAME_PATTERN), length(min = 1, max = USER_NAME_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("userName is immutable"))]
    pub user_name: Option<String>,
    /// IAM path of the user: `/` or `/segment/.../` of printable ASCII, at most 512
    /// characters. Must sit under the operator's `--iam-path-prefix`. Immutable.
    #[serde(default = "default_path")]
    #[schemars(pattern(PATH_PATTERN), length(min = 1, max = PATH_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("path is immutable"))]
    pub path: String,
    /// Tags of the user: at most 49, because IAM allows 50 and the operator adds its own
    /// `iam.kubeop.dev/owner` tag (which a spec may not set). Keys are 1-128 and values
    /// 0-256 Unicode letters, digits, spaces and `_.:/=+-@`; keys must not start with `aws:`
    /// and, as IAM compares a user's tag keys without regard to case, must differ in more
    /// than case.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    #[schemars(schema_with = "user_tags_schema")]
    pub tags: Tags,
    /// Permissions boundary of the user: a managed policy by `arn` or an IamPolicy in this
    /// namespace by `policyRef`. Removing it removes the boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<PolicyAttachment>,
    /// Group memberships. Exclusive: the user is removed from groups not listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub groups: Vec<GroupMembership>,
    /// Managed policies attached directly to the user (attaching to groups is preferred).
    /// Exclusive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub policies: Vec<PolicyAttachment>,
    /// Inline policies of the user, unique by name. Exclusive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub inline_policies: Vec<InlinePolicy>,
    /// Programmatic access: an access key published in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<AccessKeySpec>,
    /// AWS Management Console access: a login profile whose password is published in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleSpec>,
    /// `Delete` removes the user and all its credentials from IAM when this resource is
    /// deleted; `Retain` leaves them (and keeps the credential Secrets). Defaults to the
    /// operator's `--default-deletion-policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// A group the user belongs to: exactly one of `groupRef` (an IamGroup in this namespace)
/// or `groupName` (an IAM group not managed here).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.groupRef) != has(self.groupName)").message("set exactly one of groupRef or groupName"))]
pub struct GroupMembership {
    /// An IamGroup in the same namespace; joined once it is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_ref: Option<LocalObjectRef>,
    /// Name of an IAM group that is not managed by a resource in this namespace (1-128
    /// characters of `A-Za-z0-9+=,.@_-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(GROUP_NAME_PATTERN), length(min = 1, max = GROUP_NAME_MAX))]
    pub group_name: Option<String>,
}

/// Access key settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.rotateAfter) || duration(self.rotateAfter) >= duration('1h')").message("rotateAfter must be at least 1h: a shorter period replaces the key before its consumers can use it").field_path(".rotateAfter"),
    validation = Rule::new("!has(self.gracePeriod) || duration(self.gracePeriod) <= duration('720h')").message("gracePeriod must be at most 720h (30 days): shorten it").field_path(".gracePeriod"),
    validation = Rule::new("!has(self.rotateAfter) || duration(self.rotateAfter) > duration(has(self.gracePeriod) ? self.gracePeriod : '24h')").message("rotateAfter must be longer than gracePeriod (24h when unset), or each rotation cuts the previous key's grace short: raise rotateAfter or lower gracePeriod").field_path(".rotateAfter")
)]
pub struct AccessKeySpec {
    /// Whether the user has an operator-managed access key. Disabling deletes the key and
    /// its Secret.
    pub enabled: bool,
    /// Name of the Secret that receives `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and a
    /// `credentials` INI file. Defaults to `<metadata.name>-aws-credentials`; must differ
    /// from the console Secret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub secret_name: Option<String>,
    /// Rotate the key when it is older than this (Go duration, e.g. `2160h`): at least `1h`
    /// and longer than `gracePeriod`. Unset: rotate only when the
    /// `iam.kubeop.dev/rotate-access-key` annotation changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 64)
    )]
    pub rotate_after: Option<String>,
    /// How long the previous key stays Active after a rotation so running consumers can
    /// reload (Go duration), at most `720h` (30 days). Default `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 64)
    )]
    pub grace_period: Option<String>,
}

/// Console access settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleSpec {
    /// Whether the user can sign in to the console. Disabling deletes the login profile and
    /// its Secret.
    pub enabled: bool,
    /// Name of the Secret that receives `username`, `password` and `consoleUrl`. Defaults to
    /// `<metadata.name>-console`; must differ from the access-key Secret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub secret_name: Option<String>,
    /// Require a new password at first sign-in. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_reset_required: Option<bool>,
    /// Multi-factor authentication for the person who signs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<ConsoleMfaSpec>,
    /// Let the person manage their own password, MFA devices and (where the namespace's
    /// rules allow access keys) access keys, with AWS's documented self-service permissions
    /// and no MFA requirement: for accounts that enforce MFA elsewhere. `mfa.required`
    /// includes these permissions. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_service: bool,
    /// A password chosen by a person instead of a generated one: a key of a Secret in this
    /// namespace (the console's "custom password"). Used for the first password and for
    /// each reset requested with the `iam.kubeop.dev/reset-console-password` annotation;
    /// later edits of that Secret change nothing until the next reset. Checked against the
    /// account password policy (IAM's default policy when the account has none) before
    /// anything is written; it must also differ from the user name and contain no tab or
    /// line break. The console Secret (`secretName`) still receives `username`, `password`
    /// and `consoleUrl`. A login profile deleted outside the operator, or a lost console
    /// Secret, gets a generated password: the chosen one is never set again then. Keep
    /// `passwordResetRequired` at its default `true`, so that the person replaces it at
    /// first sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_password_secret_ref: Option<PasswordSecretRef>,
}

/// MFA settings of a console user.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleMfaSpec {
    /// Require MFA: the person enrols their own virtual MFA device (an authenticator app)
    /// and, until they sign in with it, can do nothing but set up MFA and change their
    /// password. Implemented with AWS's documented policy (an operator-owned managed policy
    /// per IAM path, attached while this is `true`). It applies to every credential of
    /// the user: an access key then works only through `sts:GetSessionToken` with an MFA
    /// code. The MFA seed never leaves IAM and the person's device.
    #[serde(default)]
    pub required: bool,
}

/// A key of a Secret in the IamUser's namespace that holds a chosen password.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSecretRef {
    /// Name of the Secret (in the IamUser's namespace). The operator only reads it.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
    /// Key of the Secret's data that holds the password.
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: String,
}

/// Observed state of an IamUser.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamUserStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` conditions (kstatus convention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// ARN of the user once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// IAM's unique id of the user (`AIDA...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The published access key (never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<AccessKeyStatus>,
    /// The published console credentials (never the password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleStatus>,
    /// Credentials on the IAM user that this resource did not create (made outside the
    /// operator). The operator never uses, changes or deletes them; they are listed so
    /// that they get noticed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged_credentials: Option<UnmanagedCredentials>,
}

/// Credentials found on a managed user that the operator did not create.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnmanagedCredentials {
    /// Ids of access keys this resource did not create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_key_ids: Vec<String>,
    /// Whether the user has a console login profile this resource did not create.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub login_profile: bool,
}

/// A published key that was deactivated or deleted outside the operator (a responder's
/// answer to a leak): treated as compromised, replaced, and never reactivated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedKey {
    /// Id of the revoked key (deleted once its replacement was published).
    pub access_key_id: String,
    /// When the operator found it revoked and replaced it.
    pub revoked_at: Time,
    /// Id of the key published in its place.
    pub replaced_by: String,
}

/// Observed state of the access key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyStatus {
    /// Id of the key published in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// When IAM created the published key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    /// The Secret that holds the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The key replaced by the last rotation; still Active until `previousKeyExpiresAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_access_key_id: Option<String>,
    /// When the previous key is deactivated and deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_expires_at: Option<Time>,
    /// Value of the rotate annotation that the published key answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_token: Option<String>,
    /// Set while a key is being created (the intent, recorded before IAM is called):
    /// keys that did not exist before it and are not published are leftovers of an
    /// interrupted creation and are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating_since: Option<Time>,
    /// Ids of the keys that existed when the last creation started. Kept after it, so a
    /// key that creation made but did not publish (an interrupted attempt, or a call
    /// retried after its response was lost) is recognised and deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_before_creation: Option<Vec<String>>,
    /// The last published key found deactivated or deleted outside the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revoked: Option<RevokedKey>,
}

/// Observed state of console access.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleStatus {
    /// The Secret that holds the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// When the current password was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_set_at: Option<Time>,
    /// Value of the reset annotation that the current password answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_token: Option<String>,
    /// When the login profile was last found deleted outside the operator, and a fresh
    /// password issued in place of the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_revoked_at: Option<Time>,
    /// Whether the user has at least one MFA device enabled.
    #[serde(default)]
    pub mfa_active: bool,
    /// The MFA devices enabled on the user, as IAM lists them at each reconcile (serial
    /// numbers only: seeds never leave IAM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mfa_devices: Vec<MfaDeviceStatus>,
    /// ARN of the operator-owned policy attached for `mfa.required` or `selfService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_management_policy: Option<String>,
}

/// An MFA device enabled on the user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaDeviceStatus {
    /// The device's serial number: a virtual device's ARN, or a hardware device's serial.
    pub serial_number: String,
    /// When it was enabled on the user.
    pub enabled_at: Time,
}

impl IamUser {
    /// The IAM user name: `spec.userName` or `metadata.name`.
    pub fn iam_name(&self) -> String {
        self.spec
            .user_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
