//! What the API server itself refuses: the CRDs' schema and CEL rules, applied with kubectl
//! against a real kube-apiserver. Every rule has a manifest that breaks it and must be
//! refused with the rule's message, and the values at each limit must be accepted.

mod support;

use serde_json::{Value, json};
use support::cluster::ControlPlane;

const DOC: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}"#;

fn doc() -> Value {
    serde_json::from_str(DOC).unwrap()
}

/// An object of `kind` named `name` with `spec` (merged over a minimal valid spec).
fn object(kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    let mut base = match kind {
        "IamPolicy" => json!({"document": doc()}),
        _ => json!({}),
    };
    if let (Some(base), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    json!({
        "apiVersion": "iam.kubeop.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": base,
    })
}

fn n_tags(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect())
}

/// One manifest and what the API server must answer: `None` accepted, `Some(text)` refused
/// with an error that contains `text`.
struct Case {
    what: &'static str,
    kind: &'static str,
    name: String,
    spec: Value,
    refused_with: Option<&'static str>,
}

fn ok(what: &'static str, kind: &'static str, spec: Value) -> Case {
    Case {
        what,
        kind,
        name: String::new(),
        spec,
        refused_with: None,
    }
}

fn bad(what: &'static str, kind: &'static str, spec: Value, message: &'static str) -> Case {
    Case {
        refused_with: Some(message),
        ..ok(what, kind, spec)
    }
}

impl Case {
    fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

fn tag_cases(kind: &'static str) -> Vec<Case> {
    vec![
        ok("49 tags", kind, json!({"tags": n_tags(49)})),
        bad(
            "50 tags",
            kind,
            json!({"tags": n_tags(50)}),
            "spec.tags: Too many: 50: must have at most 49 items",
        ),
        bad(
            "52 tags",
            kind,
            json!({"tags": n_tags(52)}),
            "must have at most 49 items",
        ),
        ok(
            "128-character key, 256-character value, empty value",
            kind,
            json!({"tags": {"k".repeat(128): "v".repeat(256), "empty": ""}}),
        ),
        ok(
            "Unicode letters, digits, spaces and _.:/=+-@",
            kind,
            json!({"tags": {"Cost Center_1.a:b/c=d+e-f@g": "Ünïcödé 中文 ٣ x"}}),
        ),
        bad(
            "129-character key",
            kind,
            json!({"tags": {"k".repeat(129): "v"}}),
            "each tag key must be 1 to 128 characters long",
        ),
        bad(
            "empty key",
            kind,
            json!({"tags": {"": "v"}}),
            "each tag key must be 1 to 128 characters long",
        ),
        bad(
            "257-character value",
            kind,
            json!({"tags": {"k": "v".repeat(257)}}),
            "spec.tags.k: Too long: may not be more than 256",
        ),
        bad(
            "key with *",
            kind,
            json!({"tags": {"a*b": "v"}}),
            "tag keys may contain only Unicode letters, digits, spaces and _ . : / = + - @",
        ),
        bad(
            "value with !",
            kind,
            json!({"tags": {"k": "v!"}}),
            "spec.tags.k: Invalid value",
        ),
        bad(
            "key starting with aws:",
            kind,
            json!({"tags": {"aws:cloudformation:stack-name": "v"}}),
            "tag keys starting with aws: (in any case) are reserved by AWS",
        ),
        bad(
            "key starting with AWS:",
            kind,
            json!({"tags": {"AWS:x": "v"}}),
            "tag keys starting with aws: (in any case) are reserved by AWS",
        ),
        ok(
            "aws: not at the start",
            kind,
            json!({"tags": {"x-aws:y": "v", "aws": "v"}}),
        ),
        bad(
            "the owner tag",
            kind,
            json!({"tags": {"iam.kubeop.dev/owner": "c/ns/n"}}),
            "iam.kubeop.dev/owner is the tag the operator sets itself",
        ),
        bad(
            "the owner tag in another case",
            kind,
            json!({"tags": {"IAM.kubeop.dev/Owner": "c/ns/n"}}),
            "iam.kubeop.dev/owner is the tag the operator sets itself",
        ),
    ]
}

fn cases() -> Vec<Case> {
    let long = |n: usize| "a".repeat(n);
    let mut cases = Vec::new();
    cases.extend(tag_cases("IamPolicy"));
    cases.extend(tag_cases("IamUser"));
    cases.extend([
        bad(
            "user tag keys that differ only in case",
            "IamUser",
            json!({"tags": {"Team": "a", "team": "b"}}),
            "IAM treats a user's tag keys without regard to case",
        ),
        ok(
            "policy tag keys that differ only in case",
            "IamPolicy",
            json!({"tags": {"Team": "a", "team": "b"}}),
        ),
        // Names.
        ok("64-character userName", "IamUser", json!({"userName": long(64)})),
        bad(
            "65-character userName",
            "IamUser",
            json!({"userName": long(65)}),
            "spec.userName: Too long: may not be more than 64",
        ),
        bad(
            "userName with !",
            "IamUser",
            json!({"userName": "a!"}),
            "spec.userName: Invalid value",
        ),
        ok("64-character metadata.name", "IamUser", json!({})).named(long(64)),
        bad(
            "65-character metadata.name without userName",
            "IamUser",
            json!({}),
            "metadata.name is longer than IAM's 64-character user name limit: set spec.userName",
        )
        .named(long(65)),
        ok(
            "65-character metadata.name with userName",
            "IamUser",
            json!({"userName": "short"}),
        )
        .named(format!("{}-b", long(63))),
        ok(
            "128-character groupName",
            "IamGroup",
            json!({"groupName": long(128)}),
        ),
        bad(
            "129-character groupName",
            "IamGroup",
            json!({"groupName": long(129)}),
            "spec.groupName: Too long: may not be more than 128",
        ),
        bad(
            "129-character metadata.name without groupName",
            "IamGroup",
            json!({}),
            "metadata.name is longer than IAM's 128-character group name limit: set spec.groupName",
        )
        .named(long(129)),
        ok(
            "membership in a group with a 128-character name",
            "IamUser",
            json!({"groups": [{"groupName": long(128)}]}),
        ),
        bad(
            "membership in a group with a 129-character name",
            "IamUser",
            json!({"groups": [{"groupName": long(129)}]}),
            "Too long: may not be more than 128",
        ),
        ok(
            "128-character policyName",
            "IamPolicy",
            json!({"policyName": long(128)}),
        ),
        bad(
            "129-character policyName",
            "IamPolicy",
            json!({"policyName": long(129)}),
            "spec.policyName: Too long: may not be more than 128",
        ),
        bad(
            "129-character metadata.name without policyName",
            "IamPolicy",
            json!({}),
            "metadata.name is longer than IAM's 128-character policy name limit: set spec.policyName",
        )
        .named(long(129)),
        ok(
            "128-character inline policy name",
            "IamGroup",
            json!({"inlinePolicies": [{"name": long(128), "document": doc()}]}),
        ),
        bad(
            "129-character inline policy name",
            "IamUser",
            json!({"inlinePolicies": [{"name": long(129), "document": doc()}]}),
            "Too long: may not be more than 128",
        ),
        bad(
            "2049-character policy ARN",
            "IamUser",
            json!({"policies": [{"arn": format!("arn:aws:iam::aws:policy/{}", long(2049 - 24))}]}),
            "Too long: may not be more than 2048",
        ),
        // Paths.
        ok("path /", "IamUser", json!({"path": "/"})),
        ok(
            "512-character path",
            "IamUser",
            json!({"path": format!("/{}/", long(510))}),
        ),
        bad(
            "513-character path",
            "IamGroup",
            json!({"path": format!("/{}/", long(511))}),
            "spec.path: Too long: may not be more than 512",
        ),
        bad(
            "path with an empty segment",
            "IamUser",
            json!({"path": "//"}),
            "spec.path: Invalid value",
        ),
        ok(
            "user path with * (printable ASCII)",
            "IamUser",
            json!({"path": "/a*b/"}),
        ),
        bad(
            "policy path with *",
            "IamPolicy",
            json!({"path": "/a*b/"}),
            "spec.path: Invalid value",
        ),
        ok(
            "policy path of several segments",
            "IamPolicy",
            json!({"path": "/team-a/x.y,z+@=_/"}),
        ),
        // Description.
        ok(
            "1000-character description",
            "IamPolicy",
            json!({"description": long(1000)}),
        ),
        bad(
            "1001-character description",
            "IamPolicy",
            json!({"description": long(1001)}),
            "spec.description: Too long: may not be more than 1000",
        ),
        // Credential Secrets.
        bad(
            "access-key and console Secret named alike",
            "IamUser",
            json!({"accessKey": {"enabled": true, "secretName": "creds"}, "console": {"enabled": true, "secretName": "creds"}}),
            "the access-key Secret and the console Secret must have different names",
        ),
        bad(
            "console Secret named like the default access-key Secret",
            "IamUser",
            json!({"console": {"enabled": true, "secretName": "clash-aws-credentials"}}),
            "the access-key Secret and the console Secret must have different names",
        )
        .named("clash"),
        bad(
            "access-key Secret named like the default console Secret",
            "IamUser",
            json!({"accessKey": {"enabled": true, "secretName": "clash2-console"}}),
            "the access-key Secret and the console Secret must have different names",
        )
        .named("clash2"),
        ok(
            "distinct Secret names",
            "IamUser",
            json!({"accessKey": {"enabled": true, "secretName": "key"}, "console": {"enabled": true, "secretName": "console"}}),
        ),
        ok(
            "default Secret names",
            "IamUser",
            json!({"accessKey": {"enabled": true}, "console": {"enabled": true}}),
        ),
        // Rotation.
        bad(
            "rotateAfter 0s",
            "IamUser",
            json!({"accessKey": {"enabled": true, "rotateAfter": "0s"}}),
            "rotateAfter must be at least 1h",
        ),
        bad(
            "rotateAfter 59m59s",
            "IamUser",
            json!({"accessKey": {"enabled": true, "rotateAfter": "59m59s", "gracePeriod": "1m"}}),
            "rotateAfter must be at least 1h",
        ),
        ok(
            "rotateAfter 1h with a shorter grace",
            "IamUser",
            json!({"accessKey": {"enabled": true, "rotateAfter": "1h", "gracePeriod": "59m59s"}}),
        ),
        bad(
            "rotateAfter equal to the default grace of 24h",
            "IamUser",
            json!({"accessKey": {"enabled": true, "rotateAfter": "24h"}}),
            "rotateAfter must be longer than gracePeriod (24h when unset)",
        ),
        ok(
            "rotateAfter just over the default grace",
            "IamUser",
            json!({"accessKey": {"enabled": true, "rotateAfter": "24h1s"}}),
        ),
        bad(
            "rotateAfter shorter than gracePeriod",
            "IamUser",
            json!({"accessKey": {"enabled": true, "rotateAfter": "2h", "gracePeriod": "3h"}}),
            "rotateAfter must be longer than gracePeriod",
        ),
        ok(
            "gracePeriod 720h",
            "IamUser",
            json!({"accessKey": {"enabled": true, "rotateAfter": "2160h", "gracePeriod": "720h"}}),
        ),
        bad(
            "gracePeriod 720h1s",
            "IamUser",
            json!({"accessKey": {"enabled": true, "gracePeriod": "720h1s"}}),
            "gracePeriod must be at most 720h",
        ),
    ]);
    cases
}

#[test]
fn admission_refuses_what_iam_would_and_accepts_the_limits() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("admission");
    let mut failures = Vec::new();
    let all = cases();
    for (i, case) in all.iter().enumerate() {
        let name = if case.name.is_empty() {
            format!("case-{i}")
        } else {
            case.name.clone()
        };
        let manifest = object(case.kind, &ns, &name, case.spec.clone());
        let out = cp.apply(&manifest.to_string());
        let stderr = String::from_utf8_lossy(&out.stderr);
        match (case.refused_with, out.status.success()) {
            (None, true) => {}
            (None, false) => failures.push(format!(
                "{} ({}): refused, should be accepted: {stderr}",
                case.what, case.kind
            )),
            (Some(message), true) => failures.push(format!(
                "{} ({}): accepted, should be refused with {message:?}",
                case.what, case.kind
            )),
            (Some(message), false) if !stderr.contains(message) => failures.push(format!(
                "{} ({}): refused, but without {message:?}: {stderr}",
                case.what, case.kind
            )),
            (Some(_), false) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
