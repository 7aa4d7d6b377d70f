use super::common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// IAM role names (`roleNameType`): characters of `A-Za-z0-9+=,.@_-`.
pub const ROLE_NAME_PATTERN: &str = r"^[\w+=,.@-]+$";
/// Longest IAM role name.
pub const ROLE_NAME_MAX: usize = 64;
/// Role descriptions (`roleDescriptionType`): tab, line breaks and Latin-1 printables.
pub const ROLE_DESCRIPTION_PATTERN: &str = r"^[\x09\x0A\x0D\x20-\x7E\xA1-\xFF]*$";
/// Annotation IRSA's webhook reads on a ServiceAccount.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// An IAM role for workloads: who may assume it (trust), what it may do (managed and
/// inline policies, bounded by a permissions boundary), and optionally short-lived
/// credentials of it published in a Secret.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "iam.kubeop.dev",
    version = "v1alpha1",
    kind = "IamRole",
    namespaced,
    status = "IamRoleStatus",
    shortname = "iamrole",
    shortname = "iamroles",
    category = "iam",
    doc = "IamRole declares an AWS IAM role, who may assume it and what it may do.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.arn"),
    printcolumn(name = "Session-Expires", type_ = "date", json_path = ".status.sessionCredentials.expiresAt", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.roleName) == has(oldSelf.spec.roleName)").message("spec.roleName is immutable"),
    validation = Rule::new("has(self.spec.roleName) || size(self.metadata.name) <= 64").message("metadata.name is longer than IAM's 64-character role name limit: set spec.roleName to a shorter name").field_path(".spec.roleName")
)]
#[serde(rename_all = "camelCase")]
pub struct IamRoleSpec {
    /// Name of the role in IAM: 1-64 characters of `A-Za-z0-9+=,.@_-`. Defaults to
    /// `metadata.name` (which then must be at most 64 characters). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ROLE_NAME_PATTERN), length(min = 1, max = ROLE_NAME_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("roleName is immutable"))]
    pub role_name: Option<String>,
    /// IAM path of the role: `/` or `/segment/.../` of printable ASCII, at most 512
    /// characters. Must sit under the namespace's path. Immutable.
    #[serde(default = "default_path")]
    #[schemars(pattern(PATH_PATTERN), length(min = 1, max = PATH_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("path is immutable"))]
    pub path: String,
    /// Description of the role, at most 1000 characters (tab, line breaks and Latin-1
    /// printable characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ROLE_DESCRIPTION_PATTERN), length(max = DESCRIPTION_MAX))]
    pub description: Option<String>,
    /// Longest session of the role (Go duration), from `1h` to `12h`. Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 64)
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h') && duration(self) <= duration('12h')").message("maxSessionDuration must be between 1h and 12h (IAM's limits)"))]
    pub max_session_duration: Option<String>,
    /// Tags of the role: at most 49 (IAM allows 50; the operator adds its own
    /// `iam.kubeop.dev/owner` tag). Same rules as a user's tags.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    #[schemars(schema_with = "user_tags_schema")]
    pub tags: Tags,
    /// Permissions boundary of the role: a managed policy by `arn` or an IamPolicy in this
    /// namespace by `policyRef`. A boundary the namespace's tenancy policy forces applies
    /// regardless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<PolicyAttachment>,
    /// Managed policies attached to the role. Exclusive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub policies: Vec<PolicyAttachment>,
    /// Inline policies of the role, unique by name. Exclusive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub inline_policies: Vec<InlinePolicy>,
    /// Who may assume the role. The operator writes the role's trust policy from this.
    pub trust: RoleTrust,
    /// Whether the role has an instance profile of the same name and path (for EC2).
    /// Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<bool>,
    /// Short-lived credentials of the role, obtained by the operator with `sts:AssumeRole`
    /// and published in a Secret, for workloads that cannot use a web identity or EKS Pod
    /// Identity. The operator adds its own identity to the trust policy for this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_credentials: Option<SessionCredentialsSpec>,
    /// `Delete` removes the role from IAM (instance profile, attached and inline policies
    /// first) when this resource is deleted; `Retain` leaves it (and the session Secret).
    /// Defaults to the operator's `--default-deletion-policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// Who may assume the role: by intent (`serviceAccounts`, `podIdentity`, `awsPrincipals`,
/// combinable) or as a raw trust policy `document` (alone).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.document) || ((!has(self.serviceAccounts) || size(self.serviceAccounts) == 0) && !has(self.podIdentity) && (!has(self.awsPrincipals) || size(self.awsPrincipals) == 0))").message("trust.document replaces the intents: set either document or serviceAccounts/podIdentity/awsPrincipals, not both"),
    validation = Rule::new("has(self.document) || (has(self.serviceAccounts) && size(self.serviceAccounts) > 0) || has(self.podIdentity) || (has(self.awsPrincipals) && size(self.awsPrincipals) > 0)").message("trust must name who may assume the role: serviceAccounts, podIdentity, awsPrincipals or a document")
)]
pub struct RoleTrust {
    /// ServiceAccounts of this namespace that may assume the role through IRSA
    /// (`sts:AssumeRoleWithWebIdentity` via the cluster's OIDC provider, the operator's
    /// `--oidc-provider-arn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub service_accounts: Vec<LocalObjectRef>,
    /// Whether to annotate each of `serviceAccounts` with `eks.amazonaws.com/role-arn`
    /// (server-side apply of that one annotation; removed when no longer wanted). Default
    /// `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotate_service_accounts: Option<bool>,
    /// Trust for EKS Pod Identity (`pods.eks.amazonaws.com`), always restricted to sessions
    /// tagged with this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<PodIdentityTrust>,
    /// Other AWS principals (accounts or roles, e.g. for cross-account access). Each must
    /// be allowed by the namespace's tenancy policy (`allowedTrustPrincipals`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub aws_principals: Vec<AwsPrincipalTrust>,
    /// A raw trust policy document, for what the intents cannot say. Its principals are
    /// checked like the intents': ServiceAccounts of this namespace only, AWS principals the
    /// tenancy policy allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "document_schema")]
    pub document: Option<serde_json::Value>,
}

/// EKS Pod Identity trust.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityTrust {
    /// Restrict further to these ServiceAccounts of the namespace (session tag
    /// `kubernetes-service-account`). Empty: any ServiceAccount of the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub service_accounts: Vec<LocalObjectRef>,
}

/// An AWS principal that may assume the role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsPrincipalTrust {
    /// An account id (`123456789012`) or the ARN of an account root, role or user.
    #[schemars(
        regex(pattern = r"^(\d{12}|arn:aws[a-z-]*:iam::\d{12}:(root|role/.+|user/.+))$"),
        length(max = 2048)
    )]
    pub principal: String,
    /// Require this `sts:ExternalId` (the confused-deputy guard for third parties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224))]
    pub external_id: Option<String>,
    /// Require the caller to have signed in with MFA (`aws:MultiFactorAuthPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_mfa: Option<bool>,
}

/// Session credentials published in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCredentialsSpec {
    /// Name of the Secret that receives `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_SESSION_EXPIRATION` and a `credentials` INI file. Defaults
    /// to `<metadata.name>-aws-session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub secret_name: Option<String>,
    /// Lifetime of each session (Go duration), from `15m` to the role's
    /// `maxSessionDuration`. Default `1h`. The operator replaces the credentials when half
    /// of it has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 64)
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('15m') && duration(self) <= duration('12h')").message("duration must be between 15m and 12h (STS's limits)"))]
    pub duration: Option<String>,
}

/// Observed state of an IamRole.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamRoleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` conditions (kstatus convention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// ARN of the role once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// IAM's unique id of the role (`AROA...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    /// ARN of the role's instance profile, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    /// When the operator last wrote the role's trust policy. IAM applies a change within
    /// seconds; until then STS may still refuse the operator's `AssumeRole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_updated_at: Option<Time>,
    /// ServiceAccounts annotated with the role's ARN (so the annotation can be removed when
    /// no longer wanted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotated_service_accounts: Vec<String>,
    /// The published session credentials (never the secret or the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_credentials: Option<SessionCredentialsStatus>,
}

/// Observed state of published session credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCredentialsStatus {
    /// The Secret that holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Temporary access key id of the published session (`ASIA...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// When STS issued them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<Time>,
    /// When they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the operator replaces them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_at: Option<Time>,
}

impl IamRole {
    /// The IAM role name: `spec.roleName` or `metadata.name`.
    pub fn iam_name(&self) -> String {
        self.spec
            .role_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
