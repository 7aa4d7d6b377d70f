use super::common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer-managed IAM policy. A document change creates a new default policy version
/// (IAM keeps five, the oldest non-default one is pruned); semantically equal documents
/// create nothing.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "iam.kubeop.dev",
    version = "v1alpha1",
    kind = "IamPolicy",
    namespaced,
    status = "IamPolicyStatus",
    shortname = "iampolicy",
    shortname = "iampolicies",
    category = "iam",
    doc = "IamPolicy declares a customer-managed AWS IAM policy.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.arn"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.policyName) == has(oldSelf.spec.policyName)").message("spec.policyName is immutable"),
    validation = Rule::new("has(self.spec.description) == has(oldSelf.spec.description)").message("spec.description is immutable"),
    validation = Rule::new("has(self.spec.policyName) || size(self.metadata.name) <= 128").message("metadata.name is longer than IAM's 128-character policy name limit: set spec.policyName to a shorter name").field_path(".spec.policyName")
)]
#[serde(rename_all = "camelCase")]
pub struct IamPolicySpec {
    /// Name of the policy in IAM: 1-128 characters of `A-Za-z0-9+=,.@_-`. Defaults to
    /// `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(POLICY_NAME_PATTERN), length(min = 1, max = POLICY_NAME_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("policyName is immutable"))]
    pub policy_name: Option<String>,
    /// IAM path of the policy: `/` or `/segment/.../` where each segment holds only
    /// `A-Za-z0-9.,+@=_-` (stricter than a user's or group's path), at most 512 characters.
    /// Must sit under the operator's `--iam-path-prefix`. Immutable.
    #[serde(default = "default_path")]
    #[schemars(pattern(POLICY_PATH_PATTERN), length(min = 1, max = PATH_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("path is immutable"))]
    pub path: String,
    /// Human description of the policy, at most 1000 characters. IAM cannot change it later,
    /// so it is immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DESCRIPTION_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("description is immutable"))]
    pub description: Option<String>,
    /// The IAM policy document.
    #[schemars(schema_with = "document_schema")]
    pub document: serde_json::Value,
    /// Tags of the policy: at most 49, because IAM allows 50 and the operator adds its own
    /// `iam.kubeop.dev/owner` tag (which a spec may not set). Keys are 1-128 and values
    /// 0-256 Unicode letters, digits, spaces and `_.:/=+-@`; keys must not start with `aws:`.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    #[schemars(schema_with = "policy_tags_schema")]
    pub tags: Tags,
    /// `Delete` removes the policy from IAM (after detaching it everywhere) when this
    /// resource is deleted; `Retain` leaves it. Defaults to the operator's
    /// `--default-deletion-policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// Observed state of an IamPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` conditions (kstatus convention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// ARN of the policy once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// IAM's unique id of the policy (`ANPA...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    /// The policy version that is currently the default, e.g. `v3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_version_id: Option<String>,
}

impl IamPolicy {
    /// The IAM policy name: `spec.policyName` or `metadata.name`.
    pub fn iam_name(&self) -> String {
        self.spec
            .policy_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
