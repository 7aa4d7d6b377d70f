use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// Limits of IAM's own API (botocore's `iam/2010-05-08/service-2.json`); `tests/crds.rs`
// checks every one of them against that model. Patterns are Go (RE2) regular expressions,
// as the API server evaluates them.

/// IAM user names (`userNameType`): characters of `A-Za-z0-9+=,.@_-`.
pub const USER_NAME_PATTERN: &str = r"^[\w+=,.@-]+$";
/// Longest IAM user name.
pub const USER_NAME_MAX: usize = 64;
/// IAM group names (`groupNameType`): characters of `A-Za-z0-9+=,.@_-`.
pub const GROUP_NAME_PATTERN: &str = r"^[\w+=,.@-]+$";
/// Longest IAM group name.
pub const GROUP_NAME_MAX: usize = 128;
/// IAM policy names, managed and inline (`policyNameType`).
pub const POLICY_NAME_PATTERN: &str = r"^[\w+=,.@-]+$";
/// Longest IAM policy name.
pub const POLICY_NAME_MAX: usize = 128;
/// Paths of users and groups (`pathType`): `/` or `/segment/.../` of printable ASCII.
pub const PATH_PATTERN: &str = r"^(?:(/)|(/[\x21-\x7E]+/))$";
/// Paths of managed policies (`policyPathType`): `/` or `/segment/.../` where a segment
/// holds only `A-Za-z0-9.,+@=_-`.
pub const POLICY_PATH_PATTERN: &str = r"^((/[A-Za-z0-9\.,\+@=_-]+)*)/$";
/// Longest IAM path.
pub const PATH_MAX: usize = 512;
/// Longest managed-policy description (`policyDescriptionType`).
pub const DESCRIPTION_MAX: usize = 1000;
/// Tag keys (`tagKeyType`): Unicode letters, digits, separators and `_.:/=+-@`.
pub const TAG_KEY_PATTERN: &str = r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$";
/// Longest tag key.
pub const TAG_KEY_MAX: usize = 128;
/// Tag values (`tagValueType`): like keys, and may be empty.
pub const TAG_VALUE_PATTERN: &str = r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$";
/// Longest tag value.
pub const TAG_VALUE_MAX: usize = 256;
/// Tags IAM allows on one user or policy (`tagListType`).
pub const IAM_MAX_TAGS: usize = 50;
/// Tags a spec may declare: IAM's limit less the operator's own owner tag.
pub const MAX_SPEC_TAGS: usize = IAM_MAX_TAGS - 1;
/// Tag-key prefix that AWS reserves, in any case.
pub const RESERVED_TAG_PREFIX: &str = "aws:";

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
    /// ARN of a managed policy, e.g. `arn:aws:iam::aws:policy/ReadOnlyAccess` (20-2048
    /// characters, IAM's limit for an ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^arn:aws[a-z-]*:iam::(aws|\d{12}):policy/.+$"),
        length(min = 20, max = 2048)
    )]
    pub arn: Option<String>,
}

/// An inline policy embedded in the user or group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct InlinePolicy {
    /// Name of the inline policy, unique within its user or group: 1-128 characters of
    /// `A-Za-z0-9+=,.@_-`.
    #[schemars(pattern(POLICY_NAME_PATTERN), length(min = 1, max = POLICY_NAME_MAX))]
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

/// Tags as a string map. IAM allows 50 per user or policy; the operator keeps one of them
/// for its own owner tag, so a spec declares at most 49.
pub type Tags = BTreeMap<String, String>;

/// CEL rules, with their messages, that every `spec.tags` map obeys. Map keys cannot carry
/// a schema, so their limits are rules; the API server estimates a key's size as zero, so
/// these stay far below its cost limit.
fn tag_rules() -> Vec<serde_json::Value> {
    let rule = |rule: String, message: &str| serde_json::json!({"rule": rule, "message": message});
    vec![
        rule(
            format!("self.all(k, size(k) >= 1 && size(k) <= {TAG_KEY_MAX})"),
            "each tag key must be 1 to 128 characters long (IAM's limit); shorten or rename the key",
        ),
        rule(
            format!(
                "self.all(k, k.matches('{}'))",
                TAG_KEY_PATTERN.replace('\\', "\\\\")
            ),
            "tag keys may contain only Unicode letters, digits, spaces and _ . : / = + - @ (IAM's tag key pattern); rename the key",
        ),
        rule(
            format!("self.all(k, !k.lowerAscii().startsWith('{RESERVED_TAG_PREFIX}'))"),
            "tag keys starting with aws: (in any case) are reserved by AWS; rename the key",
        ),
        rule(
            format!("!self.exists(k, k.lowerAscii() == '{}')", super::OWNER_TAG),
            "iam.kubeop.dev/owner is the tag the operator sets itself to record ownership; remove it from spec.tags",
        ),
    ]
}

/// Schema of `spec.tags` on an IamPolicy.
pub(crate) fn policy_tags_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    tags_schema(tag_rules())
}

/// Schema of `spec.tags` on an IamUser: IAM compares a user's tag keys without regard to
/// case, so two keys that differ only in case would overwrite each other.
pub(crate) fn user_tags_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut rules = tag_rules();
    rules.push(serde_json::json!({
        "rule": "self.all(a, self.all(b, a == b || a.lowerAscii() != b.lowerAscii()))",
        "message": "IAM treats a user's tag keys without regard to case: keep only one of the keys that differ only in case",
    }));
    tags_schema(rules)
}

fn tags_schema(rules: Vec<serde_json::Value>) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": MAX_SPEC_TAGS,
        "additionalProperties": {
            "type": "string",
            "maxLength": TAG_VALUE_MAX,
            "pattern": TAG_VALUE_PATTERN,
        },
        "x-kubernetes-validations": rules,
    })
}

/// Status fields that every kind shares.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];
}
