use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// IAM user and group names: 1-64 characters of `A-Za-z0-9+=,.@_-`.
pub const USER_GROUP_NAME_PATTERN: &str = r"^[\w+=,.@-]{1,64}$";
/// IAM policy names (managed and inline): 1-128 characters of `A-Za-z0-9+=,.@_-`.
pub const POLICY_NAME_PATTERN: &str = r"^[\w+=,.@-]{1,128}$";
/// IAM paths: `/` or `/segment/.../`, at most 512 characters.
pub const PATH_PATTERN: &str = r"^(/|/[\x21-\x7E]*/)$";

pub(crate) fn default_path() -> String {
    "/".to_string()
}

/// What happens in IAM when the custom resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DeletionPolicy {
    /// Remove the IAM entity and everything attached to it.
    #[default]
    Delete,
    /// Leave the IAM entity (and, for users, the credential Secrets) untouched.
    Retain,
}

/// A reference to an object of the named kind in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectRef {
    /// `metadata.name` of the referenced object, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A managed policy to attach: exactly one of `policyRef` (an IamPolicy in this namespace)
/// or `arn` (any managed policy, e.g. an AWS-managed one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.policyRef) != has(self.arn)").message("set exactly one of policyRef or arn"))]
pub struct PolicyAttachment {
    /// An IamPolicy in the same namespace; attached once it is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<LocalObjectRef>,
    /// ARN of a managed policy, e.g. `arn:aws:iam::aws:policy/ReadOnlyAccess`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::(aws|\d{12}):policy/.+$"))]
    pub arn: Option<String>,
}

/// An inline policy embedded in the user or group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct InlinePolicy {
    /// Name of the inline policy, unique within its user or group.
    #[schemars(regex(pattern = r"^[\w+=,.@-]{1,128}$"))]
    pub name: String,
    /// The IAM policy document, as a YAML/JSON object (`Version`, `Statement`).
    #[schemars(schema_with = "document_schema")]
    pub document: serde_json::Value,
}

/// Schema of a free-form IAM policy document.
pub(crate) fn document_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "An IAM policy document as an object with `Version` and `Statement`, written as YAML or JSON. Compared semantically: key order and a single value versus a one-element list do not matter."
    })
}

/// Schema of a condition list: the standard `metav1.Condition`, merged by type.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// Tags as a string map; IAM allows at most 50 per entity.
pub type Tags = BTreeMap<String, String>;

/// Status fields that every kind shares.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];
}
