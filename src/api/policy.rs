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
    validation = Rule::new("has(self.spec.description) == has(oldSelf.spec.description)").message("spec.description is immutable")
)]
#[serde(rename_all = "camelCase")]
pub struct IamPolicySpec {
    /// Name of the policy in IAM. Defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[\w+=,.@-]{1,128}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("policyName is immutable"))]
    pub policy_name: Option<String>,
    /// IAM path of the policy: `/` or `/segment/.../`. Must sit under the operator's
    /// `--iam-path-prefix`. Immutable.
    #[serde(default = "default_path")]
    #[schemars(regex(pattern = r"^(/|/[\x21-\x7E]*/)$"), length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("path is immutable"))]
    pub path: String,
    /// Human description of the policy. IAM cannot change it later, so it is immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("description is immutable"))]
    pub description: Option<String>,
    /// The IAM policy document.
    #[schemars(schema_with = "document_schema")]
    pub document: serde_json::Value,
    /// Tags of the policy. The operator adds its own `iam.kubeop.dev/owner` tag.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
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
