use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::conditions_schema;

/// One AWS account's IAM settings, written by the platform team: the account alias (and so
/// the console sign-in URL) and the account password policy. Cluster-scoped; one object per
/// account the operator's identity lives in (name it `default`): a second one for the same
/// account is refused (Stalled) and changes nothing. Deleting the object leaves the
/// account's settings as they are. Not in the `iam` category.
// The lint mistakes the printer columns' repeated `type_` for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "iam.kubeop.dev",
    version = "v1alpha1",
    kind = "IamAccountSettings",
    plural = "iamaccountsettings",
    status = "IamAccountSettingsStatus",
    shortname = "iamaccount",
    doc = "IamAccountSettings states one AWS account's IAM alias and password policy.",
    printcolumn(name = "Alias", type_ = "string", json_path = ".status.accountAlias"),
    printcolumn(
        name = "Root-MFA",
        type_ = "boolean",
        json_path = ".status.posture.rootMfaEnabled"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IamAccountSettingsSpec {
    /// The account alias (one per account): lowercase letters, digits and single hyphens,
    /// 3 to 63 characters, not starting or ending with a hyphen. The console sign-in URL
    /// becomes `https://<alias>.signin.aws.amazon.com/console`. Set: any other alias is
    /// replaced. Unset: the account's alias is left as it is. To remove the alias, set
    /// `accountAlias: ""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // IAM's pattern has a lookahead, which the API server's RE2 lacks: this one is
    // equivalent but for the minimum length of 3, which the controller checks.
    #[schemars(regex(pattern = r"^$|^[a-z0-9](-?[a-z0-9])+$"), length(max = 63))]
    pub account_alias: Option<String>,
    /// The account password policy. Set: the account's policy is exactly this one (a field
    /// left out takes IAM's default, it is not left as it was). Removed from a spec that
    /// had it: the account password policy is deleted (IAM's defaults apply). Never set:
    /// the account's policy is left as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_policy: Option<AccountPasswordPolicySpec>,
}

/// The account password policy, as IAM's `UpdateAccountPasswordPolicy` takes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountPasswordPolicySpec {
    /// Minimum length of a password, 6 to 128. Default 8 (IAM's). Passwords the operator
    /// generates follow it (and are never shorter than 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 6, max = 128))]
    pub minimum_password_length: Option<i32>,
    /// Require at least one non-alphanumeric character. Default false.
    #[serde(default)]
    pub require_symbols: bool,
    /// Require at least one digit. Default false.
    #[serde(default)]
    pub require_numbers: bool,
    /// Require at least one uppercase letter. Default false.
    #[serde(default)]
    pub require_uppercase_characters: bool,
    /// Require at least one lowercase letter. Default false.
    #[serde(default)]
    pub require_lowercase_characters: bool,
    /// Whether users may change their own password (IAM attaches nothing for it: the
    /// account setting grants `iam:ChangePassword` on themselves). Default false.
    #[serde(default)]
    pub allow_users_to_change_password: bool,
    /// Days a password is valid, 1 to 1095. Unset: passwords do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1095))]
    pub max_password_age: Option<i32>,
    /// How many previous passwords a user may not reuse, 1 to 24. Unset: no restriction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 24))]
    pub password_reuse_prevention: Option<i32>,
    /// Whether an expired password can be changed only by an administrator. Default false.
    #[serde(default)]
    pub hard_expiry: bool,
}

/// Observed state of an IamAccountSettings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamAccountSettingsStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions (kstatus convention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The account these settings were applied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The account's alias as last read from IAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_alias: Option<String>,
    /// The console sign-in URL: the alias form when the account has one, else the
    /// account-id form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_url: Option<String>,
    /// Whether a password policy was applied by this object (so that removing
    /// `passwordPolicy` from the spec deletes it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_policy_managed: bool,
    /// The account's security posture, from `GetAccountSummary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture: Option<AccountPosture>,
}

/// What IAM's guide warns about, at a glance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountPosture {
    /// `AccountMFAEnabled`: the root user has an MFA device.
    pub root_mfa_enabled: bool,
    /// `AccountAccessKeysPresent`: the root user has access keys (it should not).
    pub root_access_keys_present: bool,
    /// `Users`: IAM users in the account.
    pub users: i32,
    /// `MFADevicesInUse`: MFA devices assigned to users (root included).
    pub mfa_devices_in_use: i32,
    /// Users without an MFA device, estimated as `Users - MFADevicesInUse` (root's device
    /// not counted), never below 0: exact when each user has at most one device; the
    /// summary has no per-user count and listing every user's devices would cost one call
    /// per user.
    pub users_without_mfa: i32,
    /// `Groups`: IAM groups in the account.
    pub groups: i32,
    /// `Roles`: IAM roles in the account.
    pub roles: i32,
    /// `Policies`: customer-managed policies in the account.
    pub policies: i32,
}
