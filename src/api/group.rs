use super::common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An IAM group with its managed-policy attachments and inline policies. Membership is
/// declared on each IamUser (`spec.groups`), never here.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "iam.kubeop.dev",
    version = "v1alpha1",
    kind = "IamGroup",
    namespaced,
    status = "IamGroupStatus",
    shortname = "iamgroup",
    shortname = "iamgroups",
    category = "iam",
    doc = "IamGroup declares an AWS IAM group and the policies it grants.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.arn"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.groupName) == has(oldSelf.spec.groupName)").message("spec.groupName is immutable"),
    validation = Rule::new("has(self.spec.groupName) || size(self.metadata.name) <= 128").message("metadata.name is longer than IAM's 128-character group name limit: set spec.groupName to a shorter name").field_path(".spec.groupName")
)]
#[serde(rename_all = "camelCase")]
pub struct IamGroupSpec {
    /// Name of the group in IAM: 1-128 characters of `A-Za-z0-9+=,.@_-`. Defaults to
    /// `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(GROUP_NAME_PATTERN), length(min = 1, max = GROUP_NAME_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("groupName is immutable"))]
    pub group_name: Option<String>,
    /// IAM path of the group: `/` or `/segment/.../` of printable ASCII, at most 512
    /// characters. Must sit under the operator's `--iam-path-prefix`. Immutable.
    #[serde(default = "default_path")]
    #[schemars(pattern(PATH_PATTERN), length(min = 1, max = PATH_MAX))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("path is immutable"))]
    pub path: String,
    /// Managed policies attached to the group. Exclusive: attachments not listed here are
    /// detached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub policies: Vec<PolicyAttachment>,
    /// Inline policies of the group, unique by name. Exclusive: inline policies not listed
    /// here are deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub inline_policies: Vec<InlinePolicy>,
    /// `Delete` removes the group from IAM (members, attachments and inline policies first)
    /// when this resource is deleted; `Retain` leaves it. Defaults to the operator's
    /// `--default-deletion-policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// Observed state of an IamGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamGroupStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` conditions (kstatus convention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// ARN of the group once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// IAM's unique id of the group (`AGPA...`). Groups cannot be tagged, so this id is
    /// the record that the group belongs to this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Set while the group is being created: a group of this name created at or after this
    /// moment, at the spec's path and managed by no other IamGroup, is the one this resource
    /// created before an interruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating_since: Option<Time>,
}

impl IamGroup {
    /// The IAM group name: `spec.groupName` or `metadata.name`.
    pub fn iam_name(&self) -> String {
        self.spec
            .group_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
