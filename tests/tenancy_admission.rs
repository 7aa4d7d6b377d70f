//! The chart's ValidatingAdmissionPolicy for IamTenancyPolicy against a real kube-apiserver:
//! rendered with helm, applied with kubectl. In a namespace an IamTenancyPolicy selects,
//! every rule has a manifest that breaks it, refused with the rule's hint, and one that
//! keeps it, accepted; a namespace no policy selects accepts what a selected one refuses
//! (the operator's flags decide there). No operator runs: the API server alone refuses.

mod support;

use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, tool};
use support::emulator::repo_root;

/// The chart's `iamPathPrefix` in these tests.
const PREFIX: &str = "/k8s/";
const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/boundaries/tenant-boundary";
/// How long a new admission policy, binding or parameter may take to take effect.
const TAKE_EFFECT: Duration = Duration::from_secs(90);
const DOC: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}"#;

/// `helm template` of the chart (the admission policy only, unless `args` say otherwise).
fn render(args: &[&str]) -> String {
    let out = Command::new(tool("helm"))
        .args(["template", "x"])
        .arg(repo_root().join("charts/iam-operator"))
        .args(args)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The shared control plane with the chart's admission policies applied, once; the API
/// server must accept them (it compiles every expression) and report no type warnings.
fn cluster() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let cp = ControlPlane::shared();
    INSTALLED.get_or_init(|| {
        let out = cp.apply(&render(&[
            "--show-only",
            "templates/admission-policy.yaml",
            "--set",
            &format!("iamPathPrefix={PREFIX}"),
        ]));
        assert!(
            out.status.success(),
            "the API server refused the admission policy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + TAKE_EFFECT;
        loop {
            let list: Value = serde_json::from_str(&cp.kubectl_ok(&[
                "get",
                "validatingadmissionpolicies",
                "-l",
                "app.kubernetes.io/instance=x",
                "-o",
                "json",
            ]))
            .unwrap();
            let items = list["items"].as_array().unwrap();
            assert_eq!(items.len(), 2, "{list}");
            if items.iter().all(|p| !p["status"]["typeChecking"].is_null()) {
                for p in items {
                    assert!(
                        p["status"]["typeChecking"]["expressionWarnings"].is_null(),
                        "type warnings: {}",
                        p["status"]
                    );
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no type checking reported within {TAKE_EFFECT:?}: {list}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    cp
}

/// A fresh namespace with `labels`.
fn namespace(cp: &ControlPlane, prefix: &str, labels: Value) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    apply(cp, &ns, false).unwrap();
    name
}

/// A label key no other test uses.
fn label(what: &str) -> String {
    format!("{what}-{}.tenancy.test/tenant", std::process::id())
}

/// kubectl apply of `manifest` (optionally a server-side dry run): `Err(stderr)` if refused.
fn apply(cp: &ControlPlane, manifest: &Value, dry_run: bool) -> Result<(), String> {
    let mut cmd = Command::new(tool("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .args(["apply", "-f", "-"]);
    if dry_run {
        cmd.arg("--dry-run=server");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An object of `kind` with `spec` (over a minimal valid one) and `annotations`.
fn object(kind: &str, ns: &str, name: &str, spec: Value, annotations: Value) -> Value {
    let mut base = match kind {
        "IamPolicy" => json!({"document": serde_json::from_str::<Value>(DOC).unwrap()}),
        _ => json!({}),
    };
    if let (Some(base), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    json!({
        "apiVersion": "iam.kubeop.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": base,
    })
}

/// An IamTenancyPolicy named `name` with `spec`.
fn tenancy_policy(cp: &ControlPlane, name: &str, spec: Value) {
    let policy = json!({
        "apiVersion": "iam.kubeop.dev/v1alpha1",
        "kind": "IamTenancyPolicy",
        "metadata": {"name": name},
        "spec": spec,
    });
    apply(cp, &policy, false).unwrap_or_else(|e| panic!("IamTenancyPolicy {name} refused: {e}"));
}

/// Waits until the admission policy refuses `bad` (a server-side dry run) with `hint`: a
/// new binding or IamTenancyPolicy takes a moment to reach the API server's admission.
fn wait_until_refused(cp: &ControlPlane, bad: &Value, hint: &str) {
    let deadline = Instant::now() + TAKE_EFFECT;
    loop {
        match apply(cp, bad, true) {
            Err(e) if e.contains(hint) => return,
            other => assert!(
                Instant::now() < deadline,
                "not refused with {hint:?} within {TAKE_EFFECT:?}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One manifest and the answer it must get: `None` accepted, `Some(hint)` refused with a
/// message containing `hint`.
struct Case {
    what: &'static str,
    kind: &'static str,
    spec: Value,
    annotations: Value,
    refused_with: Option<String>,
}

fn ok(what: &'static str, kind: &'static str, spec: Value) -> Case {
    Case {
        what,
        kind,
        spec,
        annotations: json!({}),
        refused_with: None,
    }
}

fn bad(what: &'static str, kind: &'static str, spec: Value, hint: impl Into<String>) -> Case {
    Case {
        refused_with: Some(hint.into()),
        ..ok(what, kind, spec)
    }
}

impl Case {
    fn annotated(mut self, annotations: Value) -> Self {
        self.annotations = annotations;
        self
    }

    fn manifest(&self, ns: &str, i: usize) -> Value {
        let name = format!("c{i}-{}", self.kind.to_lowercase());
        object(
            self.kind,
            ns,
            &name,
            self.spec.clone(),
            self.annotations.clone(),
        )
    }
}

/// Applies every case in `ns`; collects the mismatches.
fn check(cp: &ControlPlane, ns: &str, cases: &[Case], failures: &mut Vec<String>) {
    for (i, case) in cases.iter().enumerate() {
        let result = apply(cp, &case.manifest(ns, i), false);
        match (&case.refused_with, result) {
            (None, Ok(())) => {}
            (Some(hint), Err(e)) if e.contains(hint.as_str()) => {}
            (expected, got) => failures.push(format!(
                "{} in {ns}: expected {}, got {got:?}",
                case.what,
                expected
                    .as_ref()
                    .map_or("acceptance".to_string(), |h| format!("refusal with {h:?}"))
            )),
        }
    }
}

/// Applies the cases that a selected namespace refuses in `ns`: all must be accepted.
fn check_accepted(cp: &ControlPlane, ns: &str, cases: &[Case], failures: &mut Vec<String>) {
    for (i, case) in cases.iter().enumerate() {
        if case.refused_with.is_some()
            && let Err(e) = apply(cp, &case.manifest(ns, i), false)
        {
            failures.push(format!("{} in unselected {ns}: refused: {e}", case.what));
        }
    }
}

#[test]
fn the_chart_renders_no_admission_policy_when_disabled() {
    let text = render(&["--set", "admissionPolicy.enabled=false"]);
    assert!(text.contains("kind: Deployment"), "{text}");
    assert!(!text.contains("ValidatingAdmissionPolicy"), "{text}");
    let text = render(&[]);
    assert_eq!(
        text.matches("kind: ValidatingAdmissionPolicyBinding")
            .count(),
        2
    );
}

#[test]
fn a_selected_namespace_refuses_what_its_tenancy_policy_forbids() {
    let cp = cluster();
    let key = label("rules");
    let policy = format!("rules-{}", std::process::id());
    let ns = namespace(cp, "tenant", json!({&key: "yes", "tier": "gold"}));
    // Selected by the label but not by the expression, and not labelled at all.
    let bronze = namespace(cp, "bronze", json!({&key: "yes", "tier": "bronze"}));
    let plain = namespace(cp, "plain", json!({}));
    tenancy_policy(
        cp,
        &policy,
        json!({
            "namespaceSelector": {
                "matchLabels": {&key: "yes"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]
            },
            "path": "/k8s/tenants/{namespace}/",
            "allowedPolicyArns": [
                "arn:aws:iam::aws:policy/ReadOnly*",
                "arn:aws:iam::123456789012:policy/shared/*",
                "arn:aws:iam::123456789012:policy/team.a",
                "arn:aws:iam::*:policy/*/common-readonly",
                BOUNDARY
            ],
            "allowedGroups": ["shared-*", "ops?"],
            "allowedTrustPrincipals": [
                "arn:aws:iam::111122223333:role/ci-*",
                "arn:aws*:iam::444455556666:root"
            ],
            "permissionsBoundary": BOUNDARY,
            "accessKeys": false,
            "console": false,
            "sessionCredentials": false
        }),
    );
    let path = format!("/k8s/tenants/{ns}/");
    wait_until_refused(
        cp,
        &object(
            "IamUser",
            &ns,
            "probe",
            json!({"path": "/elsewhere/"}),
            json!({}),
        ),
        "is outside",
    );

    let named = format!("is named by IamTenancyPolicy {policy}");
    let irsa = json!({"serviceAccounts": [{"name": "app"}]});
    let not_allowed = format!("is not in allowedPolicyArns of IamTenancyPolicy {policy}");
    let cases = vec![
        // 1. The path.
        bad(
            "a user outside the namespace's path",
            "IamUser",
            json!({"path": "/k8s/other/"}),
            format!("spec.path /k8s/other/ is outside {path}, the IAM path of namespace {ns} (IamTenancyPolicy {policy})"),
        ),
        bad(
            "a user at the default path",
            "IamUser",
            json!({}),
            format!("is outside {path}"),
        ),
        bad(
            "a policy under the prefix but not the namespace's path",
            "IamPolicy",
            json!({"path": "/k8s/tenants/"}),
            format!("is outside {path}"),
        ),
        bad(
            "a group under another namespace's path",
            "IamGroup",
            json!({"path": format!("/k8s/tenants/{ns}x/")}),
            format!("is outside {path}"),
        ),
        ok("a user at the namespace's path", "IamUser", json!({"path": path})),
        ok(
            "a group under the namespace's path",
            "IamGroup",
            json!({"path": format!("{path}ops/")}),
        ),
        ok(
            "a policy under the namespace's path",
            "IamPolicy",
            json!({"path": format!("{path}app/"), "policyName": "app-reader"}),
        ),
        // 2. Managed policies by ARN.
        bad(
            "a group attaching AdministratorAccess",
            "IamGroup",
            json!({"path": path, "policies": [{"arn": "arn:aws:iam::aws:policy/AdministratorAccess"}]}),
            format!("policy arn:aws:iam::aws:policy/AdministratorAccess {not_allowed}"),
        ),
        bad(
            "a user attaching a policy a glob's `.` would match as a regex",
            "IamUser",
            json!({"path": path, "policies": [{"arn": "arn:aws:iam::123456789012:policy/teamXa"}]}),
            not_allowed.clone(),
        ),
        bad(
            "a user attaching a policy under another namespace's path",
            "IamUser",
            json!({"path": path, "policies": [{"arn": "arn:aws:iam::123456789012:policy/k8s/tenants/other/x"}]}),
            "remove it from the spec or ask the platform team to allow it",
        ),
        bad(
            "a glob must match the whole ARN",
            "IamGroup",
            json!({"path": path, "policies": [{"arn": "arn:aws:iam::123456789012:policy/x/shared/y"}]}),
            not_allowed.clone(),
        ),
        ok(
            "a group attaching allowed, own and referenced policies",
            "IamGroup",
            json!({"path": path, "policies": [
                {"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
                {"arn": "arn:aws:iam::123456789012:policy/shared/data/reader"},
                {"arn": "arn:aws:iam::123456789012:policy/team.a"},
                {"arn": "arn:aws:iam::210987654321:policy/anywhere/common-readonly"},
                {"arn": format!("arn:aws:iam::123456789012:policy{path}mine")},
                {"policyRef": {"name": "app-reader"}}
            ]}),
        ),
        // 3. Groups by name.
        bad(
            "a user joining a group not allowed",
            "IamUser",
            json!({"path": path, "groups": [{"groupName": "shared-readers"}, {"groupName": "admins"}]}),
            format!("IAM group admins is not in allowedGroups of IamTenancyPolicy {policy}; use a groupRef"),
        ),
        bad(
            "`?` stands for exactly one character",
            "IamUser",
            json!({"path": path, "groups": [{"groupName": "ops12"}]}),
            "IAM group ops12 is not in allowedGroups",
        ),
        ok(
            "a user joining allowed and own groups",
            "IamUser",
            json!({"path": path, "groups": [
                {"groupName": "shared-readers"}, {"groupName": "ops1"}, {"groupRef": {"name": "team"}}
            ]}),
        ),
        // 4. Credentials.
        bad(
            "a user with an access key",
            "IamUser",
            json!({"path": path, "accessKey": {"enabled": true}}),
            format!("access keys are not allowed in namespace {ns} by IamTenancyPolicy {policy}"),
        ),
        bad(
            "a user with console access",
            "IamUser",
            json!({"path": path, "console": {"enabled": true}}),
            format!("console access is not allowed in namespace {ns} by IamTenancyPolicy {policy}"),
        ),
        ok(
            "a user with both switched off",
            "IamUser",
            json!({"path": path, "accessKey": {"enabled": false}, "console": {"enabled": false}}),
        ),
        // 5. The forced boundary.
        bad(
            "a user with another boundary",
            "IamUser",
            json!({"path": path, "permissionsBoundary": {"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}}),
            format!("spec.permissionsBoundary differs from the boundary {BOUNDARY} that IamTenancyPolicy {policy} forces"),
        ),
        bad(
            "a user with a boundary by reference",
            "IamUser",
            json!({"path": path, "permissionsBoundary": {"policyRef": {"name": "app-reader"}}}),
            "spec.permissionsBoundary differs from the boundary",
        ),
        ok(
            "a user naming the forced boundary",
            "IamUser",
            json!({"path": path, "permissionsBoundary": {"arn": BOUNDARY}}),
        ),
        // 6. Adoption.
        bad("a user asking for adoption", "IamUser", json!({"path": path}),
            format!("adoption is not allowed in namespace {ns} by IamTenancyPolicy {policy}; remove the annotation iam.kubeop.dev/adopt"))
        .annotated(json!({"iam.kubeop.dev/adopt": "true"})),
        bad("a policy asking for adoption", "IamPolicy", json!({"path": path}), "adoption is not allowed")
            .annotated(json!({"iam.kubeop.dev/adopt": "true"})),
        ok("a user not asking for adoption", "IamUser", json!({"path": path}))
            .annotated(json!({"iam.kubeop.dev/adopt": "false"})),
        // 7. Policies the rules name.
        bad(
            "a policy named like the forced boundary",
            "IamPolicy",
            json!({"path": path, "policyName": "tenant-boundary"}),
            named.clone(),
        ),
        bad(
            "a policy an allowed glob names",
            "IamPolicy",
            json!({"path": path, "policyName": "common-readonly"}),
            format!("IAM policy common-readonly at path {path} {named}"),
        ),
        ok(
            "a policy named like an AWS-managed one",
            "IamPolicy",
            json!({"path": path, "policyName": "ReadOnlyAccess"}),
        ),
        // 8. Roles: the same path, policy and boundary rules, and who they may trust.
        bad(
            "a role outside the namespace's path",
            "IamRole",
            json!({"path": "/k8s/other/", "trust": irsa.clone()}),
            format!("spec.path /k8s/other/ is outside {path}"),
        ),
        bad(
            "a role attaching AdministratorAccess",
            "IamRole",
            json!({"path": path, "trust": irsa.clone(), "policies": [{"arn": "arn:aws:iam::aws:policy/AdministratorAccess"}]}),
            format!("policy arn:aws:iam::aws:policy/AdministratorAccess {not_allowed}"),
        ),
        bad(
            "a role with another boundary",
            "IamRole",
            json!({"path": path, "trust": irsa.clone(), "permissionsBoundary": {"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}}),
            format!("spec.permissionsBoundary differs from the boundary {BOUNDARY}"),
        ),
        bad(
            "a role trusting an account not allowed",
            "IamRole",
            json!({"path": path, "trust": {"awsPrincipals": [{"principal": "999999999999"}]}}),
            format!("AWS principal 999999999999 is not in allowedTrustPrincipals of IamTenancyPolicy {policy}; remove it from spec.trust.awsPrincipals"),
        ),
        bad(
            "a role trusting a role the glob does not cover",
            "IamRole",
            json!({"path": path, "trust": {"awsPrincipals": [
                {"principal": "arn:aws:iam::111122223333:role/ci-runner"},
                {"principal": "arn:aws:iam::111122223333:role/deploy"}
            ]}}),
            "AWS principal arn:aws:iam::111122223333:role/deploy is not in allowedTrustPrincipals",
        ),
        bad(
            "a role with session credentials",
            "IamRole",
            json!({"path": path, "trust": irsa.clone(), "sessionCredentials": {}}),
            format!("session credentials are not allowed in namespace {ns} by IamTenancyPolicy {policy}"),
        ),
        ok(
            "a role trusting its ServiceAccounts and allowed principals",
            "IamRole",
            json!({"path": path, "permissionsBoundary": {"arn": BOUNDARY}, "trust": {
                "serviceAccounts": [{"name": "app"}],
                "awsPrincipals": [
                    {"principal": "arn:aws:iam::111122223333:role/ci-runner", "externalId": "x1"},
                    {"principal": "444455556666"},
                    {"principal": "arn:aws:iam::444455556666:root"}
                ]
            }}),
        ),
    ];
    let mut failures = Vec::new();
    check(cp, &ns, &cases, &mut failures);
    check_accepted(cp, &bronze, &cases, &mut failures);
    check_accepted(cp, &plain, &cases, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn defaults_and_switches_of_a_tenancy_policy() {
    let cp = cluster();
    let key = label("defaults");
    let policy = format!("defaults-{}", std::process::id());
    let (frozen, tier) = (format!("frozen-{key}"), format!("tier-{key}"));
    let ns = namespace(cp, "dflt", json!({&key: ""}));
    let cold = namespace(cp, "frozen", json!({&key: "", &frozen: "x"}));
    let bronze = namespace(cp, "bronze", json!({&key: "", &tier: "bronze"}));
    tenancy_policy(
        cp,
        &policy,
        json!({
            "namespaceSelector": {"matchExpressions": [
                {"key": key, "operator": "Exists"},
                {"key": frozen, "operator": "DoesNotExist"},
                {"key": tier, "operator": "NotIn", "values": ["bronze"]}
            ]},
            "allowedPolicyArns": ["arn:aws:iam::aws:policy/job-function/*"],
            "adoption": true,
            "accessKeys": null
        }),
    );
    // No path: the chart's iamPathPrefix and the namespace.
    let path = format!("{PREFIX}{ns}/");
    wait_until_refused(
        cp,
        &object("IamUser", &ns, "probe", json!({"path": PREFIX}), json!({})),
        &format!("is outside {path}"),
    );
    let cases = vec![
        bad(
            "a user at the prefix itself",
            "IamUser",
            json!({"path": PREFIX}),
            format!("is outside {path}"),
        ),
        bad(
            "a boundary not allowed",
            "IamUser",
            json!({"path": path, "permissionsBoundary": {"arn": "arn:aws:iam::aws:policy/PowerUserAccess"}}),
            format!("policy arn:aws:iam::aws:policy/PowerUserAccess is not in allowedPolicyArns of IamTenancyPolicy {policy}"),
        ),
        bad(
            "no group may be joined by name without allowedGroups",
            "IamUser",
            json!({"path": path, "groups": [{"groupName": "anything"}]}),
            "IAM group anything is not in allowedGroups",
        ),
        ok(
            "keys, console, an allowed boundary and adoption",
            "IamUser",
            json!({
                "path": path,
                "accessKey": {"enabled": true},
                "console": {"enabled": true},
                "permissionsBoundary": {"arn": "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"}
            }),
        )
        .annotated(json!({"iam.kubeop.dev/adopt": "true"})),
    ];
    let mut failures = Vec::new();
    check(cp, &ns, &cases, &mut failures);
    check_accepted(cp, &cold, &cases, &mut failures);
    check_accepted(cp, &bronze, &cases, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn only_what_changes_is_judged() {
    let cp = cluster();
    let key = label("ratchet");
    let ns = namespace(cp, "ratchet", json!({}));
    // Made before any policy selects the namespace.
    let stray = object(
        "IamUser",
        &ns,
        "stray",
        json!({"path": "/elsewhere/"}),
        json!({}),
    );
    let adopted = object(
        "IamUser",
        &ns,
        "adopted",
        json!({"path": format!("{PREFIX}{ns}/")}),
        json!({"iam.kubeop.dev/adopt": "true"}),
    );
    apply(cp, &stray, false).unwrap();
    apply(cp, &adopted, false).unwrap();
    tenancy_policy(
        cp,
        &format!("ratchet-{}", std::process::id()),
        json!({"namespaceSelector": {"matchLabels": {&key: "on"}}}),
    );
    cp.kubectl_ok(&["label", "namespace", &ns, &format!("{key}=on")]);
    wait_until_refused(
        cp,
        &object(
            "IamUser",
            &ns,
            "probe",
            json!({"path": "/elsewhere/"}),
            json!({}),
        ),
        "is outside",
    );
    // What the operator writes, and a deletion, pass.
    for args in [
        vec!["annotate", "iamuser", "stray", "note=x"],
        vec![
            "patch",
            "iamuser",
            "stray",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["iam.kubeop.dev/finalizer"]}}"#,
        ],
        vec![
            "patch",
            "iamuser",
            "stray",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    ] {
        let mut args = args;
        args.extend(["-n", ns.as_str()]);
        cp.kubectl_ok(&args);
    }
    // A spec change is judged in full.
    let mut changed = stray.clone();
    changed["spec"]["tags"] = json!({"team": "a"});
    let err = apply(cp, &changed, false).unwrap_err();
    assert!(err.contains("is outside"), "{err}");
    // An adoption annotation made before the rules stays; a new one is refused.
    let mut changed = adopted.clone();
    changed["spec"]["tags"] = json!({"team": "a"});
    apply(cp, &changed, false).unwrap();
    let mut fresh = adopted.clone();
    fresh["metadata"]["name"] = json!("fresh");
    let err = apply(cp, &fresh, false).unwrap_err();
    assert!(err.contains("adoption is not allowed"), "{err}");
    cp.kubectl_ok(&["delete", "iamuser", "stray", "adopted", "-n", &ns]);
}

#[test]
fn a_tenancy_policy_the_operator_would_refuse_is_refused() {
    let cp = cluster();
    let key = label("own");
    let name = |what: &str| format!("{what}-{}", std::process::id());
    let selector = json!({"matchLabels": {&key: "never"}});
    let outside = json!({
        "apiVersion": "iam.kubeop.dev/v1alpha1",
        "kind": "IamTenancyPolicy",
        "metadata": {"name": name("outside")},
        "spec": {"namespaceSelector": selector, "path": "/other/{namespace}/"},
    });
    let deadline = Instant::now() + TAKE_EFFECT;
    let err = loop {
        match apply(cp, &outside, true) {
            Err(e) => break e,
            Ok(()) => assert!(Instant::now() < deadline, "not refused: {outside}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        err.contains(
            "spec.path /other/{namespace}/ is outside the operator's --iam-path-prefix /k8s/"
        ),
        "{err}"
    );
    let mut unparsable = outside.clone();
    unparsable["metadata"]["name"] = json!(name("unparsable"));
    unparsable["spec"] = json!({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}});
    let err = apply(cp, &unparsable, false).unwrap_err();
    assert!(
        err.contains("Exists or DoesNotExist without values"),
        "{err}"
    );
    let mut fine = outside.clone();
    fine["metadata"]["name"] = json!(name("fine"));
    fine["spec"]["path"] = json!("/k8s/t/{namespace}/");
    apply(cp, &fine, false).unwrap();
}

/// The largest lists the CRDs allow, with long but realistic values, stay within the API
/// server's CEL cost limit: refusals name the ARN, not an exceeded budget.
#[test]
fn the_largest_allow_lists_stay_within_the_cost_limit() {
    let cp = cluster();
    let key = label("cost");
    let ns = namespace(cp, "cost", json!({&key: "yes"}));
    let globs: Vec<String> = (0..100)
        .map(|i| format!("arn:aws:iam::123456789012:policy/shared/team-*-{i:02}-readonly?"))
        .collect();
    let groups: Vec<String> = (0..100).map(|i| format!("shared-*-{i:02}?")).collect();
    let principals: Vec<String> = (0..100)
        .map(|i| format!("arn:aws:iam::111122223333:role/ci/*-{i:02}-runner?"))
        .collect();
    tenancy_policy(
        cp,
        &format!("cost-{}", std::process::id()),
        json!({
            "namespaceSelector": {"matchLabels": {&key: "yes"}},
            "allowedPolicyArns": globs,
            "allowedGroups": groups,
            "allowedTrustPrincipals": principals,
        }),
    );
    // Each value matches only the last glob: every one is tried.
    let arn = |i: usize, end: &str| {
        format!(
            "arn:aws:iam::123456789012:policy/shared/team-platform-engineering-{i}-99-readonly{end}"
        )
    };
    let user = |name: &str, end: &str| {
        object(
            "IamUser",
            &ns,
            name,
            json!({
                "path": format!("{PREFIX}{ns}/"),
                "policies": (0..20).map(|i| json!({"arn": arn(i, end)})).collect::<Vec<_>>(),
                "permissionsBoundary": {"arn": arn(99, end)},
                "groups": (0..10).map(|i| json!({"groupName": format!("shared-platform-engineering-{i}-99{end}")})).collect::<Vec<_>>(),
            }),
            json!({}),
        )
    };
    wait_until_refused(
        cp,
        &user("probe", ""),
        "-99-readonly is not in allowedPolicyArns",
    );
    apply(cp, &user("big", "X"), false).unwrap();
    let role = |name: &str, end: &str| {
        object(
            "IamRole",
            &ns,
            name,
            json!({
                "path": format!("{PREFIX}{ns}/"),
                "policies": (0..20).map(|i| json!({"arn": arn(i, "X")})).collect::<Vec<_>>(),
                "trust": {"awsPrincipals": (0..20).map(|i| json!({
                    "principal": format!("arn:aws:iam::111122223333:role/ci/platform-engineering-{i}-99-runner{end}")
                })).collect::<Vec<_>>()},
            }),
            json!({}),
        )
    };
    wait_until_refused(
        cp,
        &role("probe-role", ""),
        "-99-runner is not in allowedTrustPrincipals",
    );
    apply(cp, &role("big-role", "X"), false).unwrap();
}
