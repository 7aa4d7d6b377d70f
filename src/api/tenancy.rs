use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::conditions_schema;

/// What the namespaces it selects may get from IAM, written by the platform team. Every
/// namespace is a tenant: its IamPolicy, IamGroup and IamUser objects are requests, and
/// this policy decides what of them is granted. A namespace no policy selects gets the
/// operator's flags (`--iam-path-prefix`, `--required-permissions-boundary`,
/// `--deny-policy-arn`) with adoption off; a namespace two policies select gets nothing
/// until one of them stops selecting it. Not in the `iam` category: tenants list their own
/// objects with `kubectl get iam` and usually may not read cluster-scoped ones.
// The lint mistakes the printer columns' repeated `type_` for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "iam.kubeop.dev",
    version = "v1alpha1",
    kind = "IamTenancyPolicy",
    status = "IamTenancyPolicyStatus",
    shortname = "iamtenancy",
    doc = "IamTenancyPolicy states what the namespaces it selects may get from AWS IAM.",
    printcolumn(name = "Path", type_ = "string", json_path = ".spec.path"),
    printcolumn(
        name = "Boundary",
        type_ = "string",
        json_path = ".spec.permissionsBoundary"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IamTenancyPolicySpec {
    /// The namespaces this policy governs. An empty selector selects every namespace.
    pub namespace_selector: LabelSelector,
    /// IAM path every entity of a selected namespace lives under; `{namespace}` stands for
    /// the namespace's name. Default: `<--iam-path-prefix>{namespace}/`, one path per
    /// namespace, so tenants neither collide nor reach each other's entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/([\x21-\x2E\x30-\x7E]+/)*$"), length(max = 256))]
    pub path: Option<String>,
    /// ARN globs (`*` matches within an ARN) of managed policies the namespace may attach by
    /// `arn` or use as a boundary, e.g. `arn:aws:iam::aws:policy/ReadOnlyAccess`. Its own
    /// IamPolicies are always allowed; a customer policy another namespace owns never is,
    /// unless listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub allowed_policy_arns: Vec<String>,
    /// Name globs of IAM groups outside the namespace that its users may join by
    /// `groupName`. None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub allowed_groups: Vec<String>,
    /// ARN of a permissions boundary forced on every user of the namespace. It is applied
    /// before anything is granted and re-applied when removed outside the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    /// Whether users may have access keys. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_keys: Option<bool>,
    /// Whether users may have console access. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<bool>,
    /// ARN globs (`*` matches within an ARN) of AWS principals outside the operator that
    /// the namespace's IamRoles may trust (`trust.awsPrincipals`, or `AWS` principals of a
    /// raw trust document), e.g. `arn:aws:iam::111122223333:role/ci-*` for cross-account
    /// access. None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub allowed_trust_principals: Vec<String>,
    /// Whether IamRoles may have the operator publish session credentials
    /// (`spec.sessionCredentials`). Default `true`, as for access keys: session credentials
    /// expire within hours where an access key lives until it is rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_credentials: Option<bool>,
    /// Whether an existing IAM entity may be taken over with the annotation
    /// `iam.kubeop.dev/adopt: "true"`. Even then only a user or policy an administrator
    /// tagged `iam.kubeop.dev/adoptable-by=<cluster>/<namespace>` in AWS is taken over.
    /// Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adoption: Option<bool>,
    /// ARN of a role the operator assumes (STS `AssumeRole`) for this namespace's objects,
    /// so that they can live in another AWS account and AWS itself bounds what the operator
    /// may do for the tenant. Unset: the operator's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"))]
    pub role_arn: Option<String>,
    /// External id the role's trust policy requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224))]
    pub external_id: Option<String>,
    /// The most IAM users the namespace may have (IamUsers whose user exists). Unset: no
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_users: Option<u32>,
    /// The most access keys the namespace's users may hold together (one published key per
    /// IamUser; a previous key in its grace period does not count). Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_access_keys: Option<u32>,
    /// IAM action patterns that inline policies and IamPolicy documents of the namespace may
    /// not allow on broad resources (privilege escalation). Default: the operator's list
    /// (`iam:Create*`, `iam:Put*`, `iam:Attach*`, `iam:PassRole`, `sts:AssumeRole`, …).
    /// Not screened when a permissions boundary is forced: the boundary bounds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub screened_actions: Option<Vec<String>>,
}

/// Observed state of an IamTenancyPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamTenancyPolicyStatus {
    /// Conditions (kstatus convention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
