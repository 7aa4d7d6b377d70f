//! The CRDs checked in under `crds/` and the chart's `files/crds/` are exactly what the
//! types generate.

use iam_operator::crds::render_all;

#[test]
fn checked_in_crds_match_the_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["crds", "charts/iam-operator/files/crds"] {
        for (file, yaml) in render_all().unwrap() {
            let on_disk = std::fs::read_to_string(root.join(dir).join(file)).unwrap_or_default();
            assert!(
                on_disk == yaml,
                "{dir}/{file} is out of date: run `cargo run --bin crdgen -- crds charts/iam-operator/files/crds`"
            );
        }
    }
}

#[test]
fn every_schema_property_has_a_description() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, p) in props {
                let here = format!("{path}.{k}");
                // metadata and apiVersion/kind are Kubernetes' own fields.
                let own = !matches!(k.as_str(), "metadata" | "apiVersion" | "kind")
                    && !here.contains(".conditions");
                if own && p.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, p, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for (file, yaml) in render_all().unwrap() {
        let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            walk(file, &version["schema"]["openAPIV3Schema"], &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The CRDs' limits against IAM's own API model.
//
// botocore ships IAM's model (`botocore/data/iam/2010-05-08/service-2.json.gz`); each CRD
// field that becomes an IAM request parameter must carry the model's limits, so that
// admission refuses exactly what IAM would:
//
// - `min`/`max` of a string shape are the field's `minLength`/`maxLength` (absent = 0 /
//   unbounded on both sides); `max` of a list shape is the map's `maxProperties` (tags:
//   one less, see below).
// - The model's patterns are Java regular expressions that must match the whole value;
//   the CRD's are Go (RE2) ones, anchored. The mapping is textual: every `\uHHHH` of the
//   model becomes `/` for U+002F and `\xHH` otherwise (RE2 has no `\u`), and the result
//   P is anchored as `^P$`, or as `^(?:P)$` when P contains a `|` (so that the anchors
//   bind the whole alternation).
// - IAM's ARN shape has no pattern; the CRD narrows ARNs to managed-policy ARNs, so only
//   their lengths are compared.
// - Tag keys live in a map, whose keys a structural schema cannot constrain, so their
//   length and pattern are CEL rules (`self.all(k, ...)`) that must hold the same values.
// - spec.tags holds at most the model's tag-list max less one: the operator adds its own
//   owner tag.
// ---------------------------------------------------------------------------------------

use serde_json::Value;

/// IAM's model, read through the emulator's python (the venv that holds botocore).
fn iam_model() -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = std::process::Command::new("bash")
        .arg(root.join("scripts/emulator.sh"))
        .arg("python")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/emulator.sh python");
    assert!(py.status.success(), "installing the emulator's venv failed");
    let python = String::from_utf8(py.stdout).unwrap().trim().to_string();
    let script = "import botocore, gzip, os, sys\n\
        p = os.path.join(os.path.dirname(botocore.__file__), 'data', 'iam', '2010-05-08', 'service-2.json.gz')\n\
        sys.stdout.write(gzip.open(p).read().decode())";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "reading botocore's IAM model failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The shape of `operation`'s input member `member`.
fn model_shape<'a>(model: &'a Value, operation: &str, member: &str) -> &'a Value {
    let input = model["operations"][operation]["input"]["shape"]
        .as_str()
        .unwrap_or_else(|| panic!("no operation {operation} in the model"));
    let shape = model["shapes"][input]["members"][member]["shape"]
        .as_str()
        .unwrap_or_else(|| panic!("no member {member} in {operation}"));
    &model["shapes"][shape]
}

/// A model pattern as the CRD writes it (see the mapping above).
fn go_pattern(model_pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = model_pattern;
    while let Some(i) = rest.find("\\u") {
        out.push_str(&rest[..i]);
        let hex = &rest[i + 2..i + 6];
        let code = u32::from_str_radix(hex, 16).unwrap();
        match code {
            0x2F => out.push('/'),
            0..=0xFF => out.push_str(&format!("\\x{code:02X}")),
            _ => out.push_str(&format!("\\x{{{code:04X}}}")),
        }
        rest = &rest[i + 6..];
    }
    out.push_str(rest);
    if out.contains('|') {
        format!("^(?:{out})$")
    } else {
        format!("^{out}$")
    }
}

#[test]
fn model_patterns_map_to_go_patterns() {
    assert_eq!(
        go_pattern(r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)"),
        r"^(?:(/)|(/[\x21-\x7E]+/))$"
    );
    assert_eq!(go_pattern(r"[\w+=,.@-]+"), r"^[\w+=,.@-]+$");
    assert_eq!(
        go_pattern(r"[\u0009\u0020-\u00FF\u0100]"),
        r"^[\x09\x20-\xFF\x{0100}]$"
    );
}

/// The schema of every CRD, by file name: `spec.versions[0].schema.openAPIV3Schema`.
fn crd_schemas() -> std::collections::BTreeMap<&'static str, Value> {
    iam_operator::crds::render_all()
        .unwrap()
        .into_iter()
        .map(|(file, yaml)| {
            let crd: Value = serde_yaml::from_str(&yaml).unwrap();
            (
                file,
                crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
            )
        })
        .collect()
}

/// The schema at a dotted path below the root; `[]` steps into list items.
fn field<'a>(root: &'a Value, path: &str) -> &'a Value {
    let mut v = root;
    for part in path.split('.') {
        let (name, items) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (part, false),
        };
        v = &v["properties"][name];
        if items {
            v = &v["items"];
        }
        assert!(!v.is_null(), "no field {path}");
    }
    v
}

/// Which CRD string fields carry which IAM parameter: (file, field, operation, member).
const STRING_FIELDS: &[(&str, &str, &str, &str)] = &[
    ("iamusers.yaml", "spec.userName", "CreateUser", "UserName"),
    ("iamusers.yaml", "spec.path", "CreateUser", "Path"),
    (
        "iamusers.yaml",
        "spec.groups[].groupName",
        "AddUserToGroup",
        "GroupName",
    ),
    (
        "iamusers.yaml",
        "spec.inlinePolicies[].name",
        "PutUserPolicy",
        "PolicyName",
    ),
    (
        "iamusers.yaml",
        "spec.policies[].arn",
        "AttachUserPolicy",
        "PolicyArn",
    ),
    (
        "iamusers.yaml",
        "spec.permissionsBoundary.arn",
        "PutUserPermissionsBoundary",
        "PermissionsBoundary",
    ),
    ("iamusers.yaml", "spec.tags.*", "TagUser", "Tags"),
    (
        "iamgroups.yaml",
        "spec.groupName",
        "CreateGroup",
        "GroupName",
    ),
    ("iamgroups.yaml", "spec.path", "CreateGroup", "Path"),
    (
        "iamgroups.yaml",
        "spec.inlinePolicies[].name",
        "PutGroupPolicy",
        "PolicyName",
    ),
    (
        "iamgroups.yaml",
        "spec.policies[].arn",
        "AttachGroupPolicy",
        "PolicyArn",
    ),
    (
        "iampolicies.yaml",
        "spec.policyName",
        "CreatePolicy",
        "PolicyName",
    ),
    ("iampolicies.yaml", "spec.path", "CreatePolicy", "Path"),
    (
        "iampolicies.yaml",
        "spec.description",
        "CreatePolicy",
        "Description",
    ),
    ("iampolicies.yaml", "spec.tags.*", "TagPolicy", "Tags"),
    ("iamroles.yaml", "spec.roleName", "CreateRole", "RoleName"),
    ("iamroles.yaml", "spec.path", "CreateRole", "Path"),
    (
        "iamroles.yaml",
        "spec.description",
        "CreateRole",
        "Description",
    ),
    (
        "iamroles.yaml",
        "spec.inlinePolicies[].name",
        "PutRolePolicy",
        "PolicyName",
    ),
    (
        "iamroles.yaml",
        "spec.policies[].arn",
        "AttachRolePolicy",
        "PolicyArn",
    ),
    (
        "iamroles.yaml",
        "spec.permissionsBoundary.arn",
        "PutRolePermissionsBoundary",
        "PermissionsBoundary",
    ),
    ("iamroles.yaml", "spec.tags.*", "TagRole", "Tags"),
];

/// Fields with length or pattern limits that are not IAM parameters (Kubernetes names,
/// Go durations).
const NOT_IAM_FIELDS: &[&str] = &[
    "spec.policies[].policyRef.name",
    "spec.permissionsBoundary.policyRef.name",
    "spec.groups[].groupRef.name",
    "spec.accessKey.secretName",
    "spec.accessKey.rotateAfter",
    "spec.accessKey.gracePeriod",
    "spec.console.secretName",
    // A Kubernetes Secret's name and data key (the chosen console password's place).
    "spec.console.initialPasswordSecretRef.name",
    "spec.console.initialPasswordSecretRef.key",
    // IamTenancyPolicy: a path template (`{namespace}`) and lists of globs and patterns,
    // none of them sent to IAM as written.
    "iamtenancypolicies.yaml spec.path",
    "iamtenancypolicies.yaml spec.allowedPolicyArns",
    "iamtenancypolicies.yaml spec.allowedGroups",
    "iamtenancypolicies.yaml spec.screenedActions",
    "iamtenancypolicies.yaml spec.allowedTrustPrincipals",
    // IamRole: Kubernetes names, Go durations (IAM takes seconds), and trust-policy
    // content that IAM receives inside a document, not as a parameter.
    "spec.maxSessionDuration",
    "spec.sessionCredentials.secretName",
    "spec.sessionCredentials.duration",
    "spec.trust.serviceAccounts",
    "spec.trust.serviceAccounts[].name",
    "spec.trust.podIdentity.serviceAccounts",
    "spec.trust.podIdentity.serviceAccounts[].name",
    "spec.trust.awsPrincipals",
    "spec.trust.awsPrincipals[].principal",
    "spec.trust.awsPrincipals[].externalId",
    // IamAccountSettings' alias: IAM's pattern has a lookahead the API server cannot
    // run; checked by `account_alias_limits_match_iams_model` instead.
    "iamaccountsettings.yaml spec.accountAlias",
    // STS AssumeRole parameters, not IAM's.
    "iamtenancypolicies.yaml spec.roleArn",
    "iamtenancypolicies.yaml spec.externalId",
];

/// The schema of a string field; `tags.*` is the schema of a tag value.
fn string_schema<'a>(root: &'a Value, path: &str) -> &'a Value {
    match path.strip_suffix(".*") {
        Some(map) => &field(root, map)["additionalProperties"],
        None => field(root, path),
    }
}

#[test]
fn crd_string_limits_match_iams_model() {
    let model = iam_model();
    let schemas = crd_schemas();
    let mut mismatches = Vec::new();
    for (file, path, operation, member) in STRING_FIELDS {
        let mut shape = model_shape(&model, operation, member);
        if path.ends_with(".*") {
            // A tag value: the list's member is the Tag structure.
            let tag = shape["member"]["shape"].as_str().unwrap();
            let value = model["shapes"][tag]["members"]["Value"]["shape"]
                .as_str()
                .unwrap();
            shape = &model["shapes"][value];
        }
        let schema = string_schema(&schemas[file], path);
        let narrowed = path.ends_with(".arn");
        let want = (
            shape["min"].as_u64().unwrap_or(0),
            shape["max"].as_u64(),
            shape["pattern"].as_str().map(go_pattern),
        );
        let got = (
            schema["minLength"].as_u64().unwrap_or(0),
            schema["maxLength"].as_u64(),
            schema["pattern"]
                .as_str()
                .filter(|_| !narrowed)
                .map(String::from),
        );
        if want != got {
            mismatches.push(format!(
                "{file} {path} ({operation}.{member}): CRD has (minLength, maxLength, pattern) {got:?}, IAM's model says {want:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn crd_tag_limits_match_iams_model() {
    let model = iam_model();
    let schemas = crd_schemas();
    for (file, operation) in [
        ("iamusers.yaml", "TagUser"),
        ("iampolicies.yaml", "TagPolicy"),
    ] {
        let list = model_shape(&model, operation, "Tags");
        let tags = field(&schemas[file], "spec.tags");
        let iam_max = list["max"].as_u64().unwrap();
        assert_eq!(
            tags["maxProperties"].as_u64(),
            Some(iam_max - 1),
            "{file}: spec.tags must allow IAM's {iam_max} tags less the owner tag"
        );
        let tag = list["member"]["shape"].as_str().unwrap();
        let key = &model["shapes"][model["shapes"][tag]["members"]["Key"]["shape"]
            .as_str()
            .unwrap()];
        let rules: Vec<&str> = tags["x-kubernetes-validations"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: spec.tags has no CEL rules"))
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        let length = format!(
            "self.all(k, size(k) >= {} && size(k) <= {})",
            key["min"].as_u64().unwrap_or(0),
            key["max"].as_u64().unwrap()
        );
        // CEL string literal: backslashes doubled.
        let pattern = format!(
            "self.all(k, k.matches('{}'))",
            go_pattern(key["pattern"].as_str().unwrap()).replace('\\', "\\\\")
        );
        for want in [length, pattern] {
            assert!(
                rules.contains(&want.as_str()),
                "{file}: spec.tags lacks the key rule {want:?} that IAM's model implies; it has {rules:#?}"
            );
        }
    }
}

#[test]
fn default_names_are_bounded_by_iams_name_limits() {
    let model = iam_model();
    let schemas = crd_schemas();
    for (file, field, operation, member) in [
        ("iamusers.yaml", "userName", "CreateUser", "UserName"),
        ("iamgroups.yaml", "groupName", "CreateGroup", "GroupName"),
        (
            "iampolicies.yaml",
            "policyName",
            "CreatePolicy",
            "PolicyName",
        ),
    ] {
        let max = model_shape(&model, operation, member)["max"]
            .as_u64()
            .unwrap();
        let want = format!("has(self.spec.{field}) || size(self.metadata.name) <= {max}");
        let rules = schemas[file]["x-kubernetes-validations"]
            .as_array()
            .unwrap();
        assert!(
            rules.iter().any(|r| r["rule"] == want.as_str()),
            "{file}: no root rule {want:?} bounding metadata.name by IAM's {operation}.{member} limit"
        );
    }
}

#[test]
fn every_limited_field_is_checked_against_the_model() {
    fn walk(path: &str, v: &Value, out: &mut Vec<String>) {
        let limited = [
            "pattern",
            "maxLength",
            "minLength",
            "maxItems",
            "maxProperties",
        ]
        .iter()
        .any(|k| v.get(k).is_some());
        if limited {
            out.push(path.to_string());
        }
        if let Some(props) = v.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&here, p, out);
            }
        }
        if let Some(items) = v.get("items") {
            walk(&format!("{path}[]"), items, out);
        }
        if let Some(values) = v.get("additionalProperties").filter(|a| a.is_object()) {
            walk(&format!("{path}.*"), values, out);
        }
    }
    // List sizes are IAM quotas (groups per user, attached policies) or the operator's own
    // bound, not parameters of one request; tag maps are checked by their own test.
    let list_bounds = [
        "spec.groups",
        "spec.policies",
        "spec.inlinePolicies",
        "spec.tags",
    ];
    let mut unchecked = Vec::new();
    for (file, schema) in crd_schemas() {
        let mut limited = Vec::new();
        walk("", &schema["properties"]["spec"], &mut limited);
        for path in limited.iter().map(|p| {
            format!(
                "spec{}",
                if p.is_empty() {
                    String::new()
                } else {
                    format!(".{p}")
                }
            )
        }) {
            let known = STRING_FIELDS
                .iter()
                .any(|(f, p, _, _)| *f == file && *p == path)
                || NOT_IAM_FIELDS.contains(&path.as_str())
                || NOT_IAM_FIELDS.contains(&format!("{file} {path}").as_str())
                || list_bounds.contains(&path.as_str());
            if !known {
                unchecked.push(format!("{file} {path}"));
            }
        }
    }
    assert!(
        unchecked.is_empty(),
        "limited fields missing from the model cross-check (add them to STRING_FIELDS or NOT_IAM_FIELDS): {unchecked:?}"
    );
}

/// The account alias: IAM's pattern (a lookahead, which Go's RE2 lacks) and the CRD's
/// pattern plus the controller's minimum length of 3 accept the same aliases. Both are
/// run by Python's `re`, which has lookaheads.
#[test]
fn account_alias_limits_match_iams_model() {
    let model = iam_model();
    let shape = model_shape(&model, "CreateAccountAlias", "AccountAlias");
    let schemas = crd_schemas();
    let schema = field(&schemas["iamaccountsettings.yaml"], "spec.accountAlias");
    assert_eq!(shape["max"].as_u64(), schema["maxLength"].as_u64());
    assert_eq!(shape["min"].as_u64(), Some(3), "the controller checks 3");
    let samples = [
        "abc",
        "a-b",
        "a-b-c",
        "ab",
        "a",
        "a--b",
        "-ab",
        "ab-",
        "Abc",
        "a_b",
        "a.b",
        "0aa",
        "a1-2b",
        &"a".repeat(63),
        &"a".repeat(64),
    ];
    let script = format!(
        "import re, sys, json\nm = re.compile({:?})\nc = re.compile({:?})\nfor s in json.loads(sys.argv[1]):\n    print(s, bool(m.match(s)), bool(c.match(s)) and 3 <= len(s) <= {})",
        shape["pattern"].as_str().unwrap(),
        schema["pattern"].as_str().unwrap(),
        schema["maxLength"].as_u64().unwrap(),
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = std::process::Command::new("bash")
        .arg(root.join("scripts/emulator.sh"))
        .arg("python")
        .output()
        .unwrap();
    let python = String::from_utf8(py.stdout).unwrap().trim().to_string();
    let out = std::process::Command::new(python)
        .args(["-c", &script, &serde_json::to_string(&samples).unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let differ: Vec<&str> = text
        .lines()
        .filter(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            parts[1] != parts[2]
        })
        .collect();
    assert_eq!(text.lines().count(), samples.len());
    assert!(
        differ.is_empty(),
        "IAM vs CRD (alias, IAM, CRD): {differ:?}"
    );
    // An empty alias (remove the account's alias) is the CRD's own addition.
    assert!(schema["pattern"].as_str().unwrap().starts_with("^$|"));
}

/// The password policy's integer ranges are IAM's.
#[test]
fn password_policy_ranges_match_iams_model() {
    let model = iam_model();
    let schemas = crd_schemas();
    let mut mismatches = Vec::new();
    for (path, member) in [
        (
            "spec.passwordPolicy.minimumPasswordLength",
            "MinimumPasswordLength",
        ),
        ("spec.passwordPolicy.maxPasswordAge", "MaxPasswordAge"),
        (
            "spec.passwordPolicy.passwordReusePrevention",
            "PasswordReusePrevention",
        ),
    ] {
        let shape = model_shape(&model, "UpdateAccountPasswordPolicy", member);
        let schema = field(&schemas["iamaccountsettings.yaml"], path);
        // The CRD writes integer bounds as floats (`128.0`).
        let want = (shape["min"].as_f64(), shape["max"].as_f64());
        let got = (schema["minimum"].as_f64(), schema["maximum"].as_f64());
        if want != got {
            mismatches.push(format!("{path}: CRD {got:?}, IAM's model {want:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
