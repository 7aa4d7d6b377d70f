//! What GitOps tools make of the objects' health, on real objects: the control plane, the
//! IAM emulator and the operator binary bring every kind into every state it can reach,
//! then each live object goes through the Argo CD health checks in
//! `integrations/argocd/resource_customizations` (run by `tools/health` with Argo CD's Lua
//! VM setup), kstatus (`sigs.k8s.io/cli-utils`, what Flux's health checks use) and
//! `kubectl wait --for=condition=Ready`.
//!
//! `UPDATE_HEALTH_FIXTURES=1` writes the captured objects as the Argo CD test fixtures
//! (`testdata/<state>.yaml`) and their `health_test.yaml`; the committed ones were made so.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator, tool};
use support::emulator::{Emulator, repo_root};

const KINDS: [&str; 6] = [
    "IamPolicy",
    "IamGroup",
    "IamUser",
    "IamRole",
    "IamTenancyPolicy",
    "IamAccountSettings",
];
/// The IamAccountSettings that owns the emulator's account, and a second one it refuses.
const ACCOUNT_SETTINGS: &str = "health-account";
const SECOND_SETTINGS: &str = "health-account-second";
/// Fixed so that regenerated fixtures differ only where the objects do.
const NS: &str = "argocd-health";
const PREFIX: &str = "/health/";
const FINALIZER: &str = "iam.kubeop.dev/finalizer";
/// A finalizer this test holds on the IamTenancyPolicy (the operator puts none there).
const HOLD: &str = "health.kubeop.dev/hold";
const TENANCY: &str = "argocd-health-fixture";
const TENANCY_MESSAGE: &str =
    "Applied: the operator reads it for the namespaces it selects and reports no status on it";

fn customizations() -> PathBuf {
    repo_root().join("integrations/argocd/resource_customizations/iam.kubeop.dev")
}

/// Runs the health tool with `stdin`; returns stdout, or panics with its output.
fn health_tool(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(tool("health"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run health (built by scripts/build-tools.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "health {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// (status, message) from one of the tool's JSON answers.
fn verdict(json: &str) -> (String, String) {
    let v: Value = serde_json::from_str(json).unwrap();
    let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    (field("status"), field("message"))
}

fn argocd(kind: &str, obj: &Value) -> (String, String) {
    let script = customizations().join(kind).join("health.lua");
    verdict(&health_tool(
        &["argocd", script.to_str().unwrap()],
        &obj.to_string(),
    ))
}

fn kstatus(obj: &Value) -> (String, String) {
    verdict(&health_tool(&["kstatus"], &obj.to_string()))
}

fn resource(kind: &str) -> String {
    format!("{}.iam.kubeop.dev", kind.to_lowercase())
}

/// The object as `kubectl get -o yaml` shows it (the fixtures' text) and as JSON.
fn get_yaml(cp: &ControlPlane, kind: &str, name: &str) -> (Value, String) {
    let mut args = vec!["get", "-o", "yaml"];
    let res = resource(kind);
    args.extend([res.as_str(), name]);
    // Cluster-scoped kinds.
    if kind != "IamTenancyPolicy" && kind != "IamAccountSettings" {
        args.extend(["-n", NS]);
    }
    let text = cp.kubectl_ok(&args);
    (serde_yaml::from_str(&text).unwrap(), text)
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn message_of(obj: &Value, type_: &str) -> String {
    condition(obj, type_)
        .and_then(|c| c["message"].as_str())
        .unwrap_or_else(|| panic!("no {type_} condition: {obj:#}"))
        .to_string()
}

/// Polls `kind/name` until `done` holds for it.
fn wait_for(
    cp: &ControlPlane,
    op: &Operator,
    kind: &str,
    name: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> (Value, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (obj, yaml) = get_yaml(cp, kind, name);
        if done(&obj) {
            return (obj, yaml);
        }
        assert!(
            Instant::now() < deadline,
            "{kind}/{name} never became {what}: {obj:#}\noperator log:\n{}",
            support::cluster::tail(&op.logs(), 40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn is_true(obj: &Value, type_: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == "True")
}

fn ready_reason(obj: &Value) -> String {
    condition(obj, "Ready")
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// One live object in one state and what each tool must say of it.
struct Case {
    kind: &'static str,
    state: &'static str,
    obj: Value,
    yaml: String,
    argocd: (&'static str, String),
    kstatus: &'static str,
    /// kstatus' message when it comes from one of our conditions (else kstatus' own text).
    kstatus_message: Option<String>,
}

fn manifest(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{spec}"
    )
}

fn policy(name: &str, path: &str) -> String {
    manifest(
        "IamPolicy",
        name,
        &format!(
            "  path: {path}\n  document:\n    Version: '2012-10-17'\n    Statement:\n      - {{Effect: Allow, Action: ['s3:GetObject'], Resource: ['arn:aws:s3:::health/*']}}\n"
        ),
    )
}

fn group(name: &str, path: &str, policy_ref: &str) -> String {
    manifest(
        "IamGroup",
        name,
        &format!("  path: {path}\n  policies:\n    - policyRef: {{name: {policy_ref}}}\n"),
    )
}

fn user(name: &str, path: &str, policy_ref: &str) -> String {
    manifest(
        "IamUser",
        name,
        &format!("  path: {path}\n  policies:\n    - policyRef: {{name: {policy_ref}}}\n"),
    )
}

/// A role for EKS Pod Identity (no OIDC provider needed) attaching `policy_ref`.
fn role(name: &str, path: &str, policy_ref: &str) -> String {
    manifest(
        "IamRole",
        name,
        &format!(
            "  path: {path}\n  trust:\n    podIdentity: {{}}\n  policies:\n    - policyRef: {{name: {policy_ref}}}\n"
        ),
    )
}

fn generation_message(obj: &Value) -> String {
    let generation = obj["metadata"]["generation"].as_i64().unwrap();
    match obj["status"]["observedGeneration"].as_i64() {
        Some(seen) => format!(
            "Waiting for the operator to observe generation {generation} (last observed {seen})"
        ),
        None => format!("Waiting for the operator to observe generation {generation}"),
    }
}

fn deletion_message(finalizer: &str) -> String {
    format!("Deletion in progress; waiting for finalizers: {finalizer}")
}

#[test]
fn every_kind_in_every_state_argocd_kstatus_and_kubectl_wait_agree() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    cp.kubectl_ok(&["create", "namespace", NS]);
    let mut op = Operator::start(
        cp,
        &emulator.url,
        &[
            "--watch-namespace",
            NS,
            "--iam-path-prefix",
            PREFIX,
            "--drift-scan-interval",
            "0s",
        ],
        &[],
    );

    // A tenancy policy that selects no namespace: it exists, nothing more happens to it.
    cp.apply_ok(&format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamTenancyPolicy\nmetadata: {{name: {TENANCY}}}\nspec:\n  namespaceSelector:\n    matchLabels: {{iam.kubeop.dev/tenant: nobody}}\n"
        ),
    );
    // Ready: a policy, a group and a user attaching it. Waiting: a group and a user whose
    // policy does not exist. Stalled: each kind with a path outside --iam-path-prefix,
    // which the operator refuses.
    for m in [
        policy("reader", "/health/"),
        group("readers", "/health/", "reader"),
        user("alice", "/health/", "reader"),
        role("app", "/health/", "reader"),
        group("waiting", "/health/", "not-yet"),
        user("waiting", "/health/", "not-yet"),
        role("waiting", "/health/", "not-yet"),
        policy("outside", "/elsewhere/"),
        group("outside", "/elsewhere/", "reader"),
        user("outside", "/elsewhere/", "reader"),
        role("outside", "/elsewhere/", "reader"),
    ] {
        cp.apply_ok(&m);
    }

    let mut cases = Vec::new();
    for kind in ["IamPolicy", "IamGroup", "IamUser", "IamRole"] {
        let name = match kind {
            "IamPolicy" => "reader",
            "IamGroup" => "readers",
            "IamRole" => "app",
            _ => "alice",
        };
        let (obj, yaml) = wait_for(cp, &op, kind, name, "Ready", |o| is_true(o, "Ready"));
        assert_eq!(ready_reason(&obj), "UpToDate", "{obj:#}");
        // kubectl wait agrees once Ready.
        cp.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "-n",
            NS,
            "--timeout=30s",
            &format!("{}/{name}", resource(kind)),
        ]);
        cases.push(Case {
            kind,
            state: "ready",
            argocd: ("Healthy", message_of(&obj, "Ready")),
            kstatus: "Current",
            kstatus_message: None,
            obj,
            yaml,
        });
    }
    for kind in ["IamGroup", "IamUser", "IamRole"] {
        let (obj, yaml) = wait_for(cp, &op, kind, "waiting", "waiting for its policy", |o| {
            ready_reason(o) == "DependencyNotReady" && is_true(o, "Reconciling")
        });
        assert!(
            message_of(&obj, "Reconciling").contains("not-yet"),
            "{obj:#}"
        );
        cases.push(Case {
            kind,
            state: "dependency-wait",
            argocd: ("Progressing", message_of(&obj, "Reconciling")),
            kstatus: "InProgress",
            kstatus_message: Some(message_of(&obj, "Reconciling")),
            obj,
            yaml,
        });
    }
    for kind in ["IamPolicy", "IamGroup", "IamUser", "IamRole"] {
        let (obj, yaml) = wait_for(cp, &op, kind, "outside", "Stalled", |o| {
            is_true(o, "Stalled")
        });
        assert_eq!(ready_reason(&obj), "InvalidSpec", "{obj:#}");
        assert!(
            message_of(&obj, "Stalled").contains("outside /health/"),
            "{obj:#}"
        );
        // kubectl wait does not mistake a stalled object for a Ready one: it times out.
        let out = cp.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "-n",
            NS,
            "--timeout=3s",
            &format!("{}/outside", resource(kind)),
        ]);
        assert!(
            !out.status.success(),
            "kubectl wait succeeded on a stalled {kind}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("timed out"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cases.push(Case {
            kind,
            state: "stalled",
            argocd: ("Degraded", message_of(&obj, "Stalled")),
            kstatus: "Failed",
            kstatus_message: Some(message_of(&obj, "Stalled")),
            obj,
            yaml,
        });
    }
    let (tenancy, tenancy_yaml) = get_yaml(cp, "IamTenancyPolicy", TENANCY);
    assert!(
        tenancy.get("status").is_none(),
        "the operator now writes IamTenancyPolicy status; its health check must read it: {tenancy:#}"
    );
    cases.push(Case {
        kind: "IamTenancyPolicy",
        state: "applied",
        argocd: ("Healthy", TENANCY_MESSAGE.to_string()),
        kstatus: "Current",
        kstatus_message: None,
        obj: tenancy,
        yaml: tenancy_yaml,
    });

    // IamAccountSettings: the first object owns the account (Ready); a second is refused.
    let account_settings = |name: &str, alias: &str| {
        format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamAccountSettings\nmetadata: {{name: {name}}}\nspec:\n  accountAlias: {alias}\n"
        )
    };
    cp.apply_ok(&account_settings(ACCOUNT_SETTINGS, "health-dev"));
    let (obj, yaml) = wait_for(
        cp,
        &op,
        "IamAccountSettings",
        ACCOUNT_SETTINGS,
        "Ready",
        |o| is_true(o, "Ready"),
    );
    assert_eq!(ready_reason(&obj), "UpToDate", "{obj:#}");
    cases.push(Case {
        kind: "IamAccountSettings",
        state: "ready",
        argocd: ("Healthy", message_of(&obj, "Ready")),
        kstatus: "Current",
        kstatus_message: None,
        obj,
        yaml,
    });
    cp.apply_ok(&account_settings(SECOND_SETTINGS, "health-other"));
    let (obj, yaml) = wait_for(
        cp,
        &op,
        "IamAccountSettings",
        SECOND_SETTINGS,
        "Stalled",
        |o| is_true(o, "Stalled"),
    );
    assert_eq!(ready_reason(&obj), "NameConflict", "{obj:#}");
    cases.push(Case {
        kind: "IamAccountSettings",
        state: "stalled",
        argocd: ("Degraded", message_of(&obj, "Stalled")),
        kstatus: "Failed",
        kstatus_message: Some(message_of(&obj, "Stalled")),
        obj,
        yaml,
    });

    // With the operator stopped nothing is observed: a changed spec stays unobserved, a new
    // object gets no status, and a deleted one is held by the operator's finalizer.
    op.stop();
    for (kind, name, patch) in [
        (
            "IamPolicy",
            "reader",
            r#"{"spec":{"tags":{"changed":"second"}}}"#,
        ),
        (
            "IamGroup",
            "readers",
            r#"{"spec":{"policies":[{"policyRef":{"name":"reader"}},{"arn":"arn:aws:iam::aws:policy/ReadOnlyAccess"}]}}"#,
        ),
        (
            "IamUser",
            "alice",
            r#"{"spec":{"tags":{"changed":"second"}}}"#,
        ),
        (
            "IamRole",
            "app",
            r#"{"spec":{"tags":{"changed":"second"}}}"#,
        ),
    ] {
        cp.kubectl_ok(&[
            "patch",
            &resource(kind),
            name,
            "-n",
            NS,
            "--type",
            "merge",
            "-p",
            patch,
        ]);
        let (obj, yaml) = get_yaml(cp, kind, name);
        let generation = obj["metadata"]["generation"].as_i64().unwrap();
        let seen = obj["status"]["observedGeneration"].as_i64().unwrap();
        assert!(generation > seen, "{obj:#}");
        // Still Ready=True from the last generation it saw: only the generation tells.
        assert!(is_true(&obj, "Ready"), "{obj:#}");
        cases.push(Case {
            kind,
            state: "spec-changed",
            argocd: ("Progressing", generation_message(&obj)),
            kstatus: "InProgress",
            kstatus_message: None,
            obj,
            yaml,
        });
    }
    cp.kubectl_ok(&[
        "patch",
        &resource("IamAccountSettings"),
        ACCOUNT_SETTINGS,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"accountAlias":"health-changed"}}"#,
    ]);
    let (obj, yaml) = get_yaml(cp, "IamAccountSettings", ACCOUNT_SETTINGS);
    assert!(is_true(&obj, "Ready"), "{obj:#}");
    cases.push(Case {
        kind: "IamAccountSettings",
        state: "spec-changed",
        argocd: ("Progressing", generation_message(&obj)),
        kstatus: "InProgress",
        kstatus_message: None,
        obj,
        yaml,
    });
    cp.apply_ok(&account_settings("health-account-fresh", "health-fresh"));
    let (obj, yaml) = get_yaml(cp, "IamAccountSettings", "health-account-fresh");
    assert!(obj.get("status").is_none(), "{obj:#}");
    cases.push(Case {
        kind: "IamAccountSettings",
        state: "no-status",
        argocd: ("Progressing", generation_message(&obj)),
        kstatus: "Current",
        kstatus_message: None,
        obj,
        yaml,
    });
    for m in [
        policy("fresh", "/health/"),
        group("fresh", "/health/", "reader"),
        user("fresh", "/health/", "reader"),
        role("fresh", "/health/", "reader"),
    ] {
        cp.apply_ok(&m);
    }
    for kind in ["IamPolicy", "IamGroup", "IamUser", "IamRole"] {
        let (obj, yaml) = get_yaml(cp, kind, "fresh");
        assert!(obj.get("status").is_none(), "{obj:#}");
        cases.push(Case {
            kind,
            state: "no-status",
            argocd: ("Progressing", generation_message(&obj)),
            // kstatus cannot tell an object no controller has seen from one that needs no
            // controller: without status it says Current (see docs/gitops.md).
            kstatus: "Current",
            kstatus_message: None,
            obj,
            yaml,
        });
    }
    for (kind, name) in [
        ("IamPolicy", "reader"),
        ("IamGroup", "readers"),
        ("IamUser", "alice"),
        ("IamRole", "app"),
    ] {
        cp.kubectl_ok(&["delete", &resource(kind), name, "-n", NS, "--wait=false"]);
        let (obj, yaml) = get_yaml(cp, kind, name);
        assert!(obj["metadata"]["deletionTimestamp"].is_string(), "{obj:#}");
        cases.push(Case {
            kind,
            state: "deleting",
            argocd: ("Progressing", deletion_message(FINALIZER)),
            kstatus: "Terminating",
            kstatus_message: None,
            obj,
            yaml,
        });
    }
    cp.kubectl_ok(&[
        "patch",
        &resource("IamTenancyPolicy"),
        TENANCY,
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"metadata":{{"finalizers":["{HOLD}"]}}}}"#),
    ]);
    cp.kubectl_ok(&[
        "delete",
        &resource("IamTenancyPolicy"),
        TENANCY,
        "--wait=false",
    ]);
    let (obj, yaml) = get_yaml(cp, "IamTenancyPolicy", TENANCY);
    cases.push(Case {
        kind: "IamTenancyPolicy",
        state: "deleting",
        argocd: ("Progressing", deletion_message(HOLD)),
        kstatus: "Terminating",
        kstatus_message: None,
        obj,
        yaml,
    });
    cp.kubectl_ok(&[
        "patch",
        &resource("IamTenancyPolicy"),
        TENANCY,
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);

    // The operator puts no finalizer on IamAccountSettings: this test holds one.
    cp.kubectl_ok(&[
        "patch",
        &resource("IamAccountSettings"),
        ACCOUNT_SETTINGS,
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"metadata":{{"finalizers":["{HOLD}"]}}}}"#),
    ]);
    cp.kubectl_ok(&[
        "delete",
        &resource("IamAccountSettings"),
        ACCOUNT_SETTINGS,
        "--wait=false",
    ]);
    let (obj, yaml) = get_yaml(cp, "IamAccountSettings", ACCOUNT_SETTINGS);
    cases.push(Case {
        kind: "IamAccountSettings",
        state: "deleting",
        argocd: ("Progressing", deletion_message(HOLD)),
        kstatus: "Terminating",
        kstatus_message: None,
        obj,
        yaml,
    });
    cp.kubectl_ok(&[
        "patch",
        &resource("IamAccountSettings"),
        ACCOUNT_SETTINGS,
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    cp.kubectl_ok(&[
        "delete",
        &resource("IamAccountSettings"),
        SECOND_SETTINGS,
        "health-account-fresh",
        "--ignore-not-found",
    ]);

    // Every live object through the Argo CD check and kstatus.
    let mut failures = Vec::new();
    for c in &cases {
        let got_argocd = argocd(c.kind, &c.obj);
        let got_kstatus = kstatus(&c.obj);
        println!(
            "{:<16} {:<15} argocd: {:<11} {:?}\n{:<16} {:<15} kstatus: {:<10} {:?}",
            c.kind, c.state, got_argocd.0, got_argocd.1, "", "", got_kstatus.0, got_kstatus.1
        );
        if (got_argocd.0.as_str(), &got_argocd.1) != (c.argocd.0, &c.argocd.1) {
            failures.push(format!(
                "{} {}: Argo CD said {got_argocd:?}, expected {:?}",
                c.kind, c.state, c.argocd
            ));
        }
        if got_kstatus.0 != c.kstatus
            || c.kstatus_message
                .as_ref()
                .is_some_and(|m| *m != got_kstatus.1)
        {
            failures.push(format!(
                "{} {}: kstatus said {got_kstatus:?}, expected {} {:?}",
                c.kind, c.state, c.kstatus, c.kstatus_message
            ));
        }
    }
    // Every kind reached its states.
    let mut states: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in &cases {
        states.entry(c.kind).or_default().push(c.state);
    }
    println!("states per kind: {states:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    if std::env::var("UPDATE_HEALTH_FIXTURES").as_deref() == Ok("1") {
        write_fixtures(&cases);
    }
    cp.kubectl_ok(&["delete", "namespace", NS, "--wait=false"]);
}

/// Writes each captured object as `testdata/<state>.yaml`, the text `kubectl get -o yaml`
/// gave (managedFields, the only noise, are already left out by kubectl) and each kind's `health_test.yaml` with the
/// expectations checked above.
fn write_fixtures(cases: &[Case]) {
    for kind in KINDS {
        let dir = customizations().join(kind);
        let testdata = dir.join("testdata");
        let _ = std::fs::remove_dir_all(&testdata);
        std::fs::create_dir_all(&testdata).unwrap();
        let mut tests = String::from(
            "# Made by UPDATE_HEALTH_FIXTURES=1 cargo test --features failpoints --test health\n# from objects the operator brought into each state; checked by `health argocd-test`.\ntests:\n",
        );
        for c in cases.iter().filter(|c| c.kind == kind) {
            let file = format!("testdata/{}.yaml", c.state);
            std::fs::write(dir.join(&file), &c.yaml).unwrap();
            tests.push_str(&format!(
                "- healthStatus:\n    status: {}\n    message: {}\n  inputPath: {file}\n",
                c.argocd.0,
                serde_json::to_string(&c.argocd.1).unwrap()
            ));
        }
        std::fs::write(dir.join("health_test.yaml"), tests).unwrap();
    }
    println!("fixtures written under {}", customizations().display());
}

/// The committed fixtures pass through Argo CD's VM setup, with the standard libraries off
/// (argocd-cm's default) and on (Argo CD's own test runner), and every fixture is tested.
#[test]
fn committed_fixtures_pass_argocd_health_tests() {
    // Builds the tools (the health tool among them) once for this test binary.
    ControlPlane::shared();
    let out = Command::new(tool("health"))
        .arg("argocd-test")
        .arg(customizations())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in KINDS {
        let testdata = customizations().join(kind).join("testdata");
        let files: Vec<_> = std::fs::read_dir(&testdata)
            .unwrap_or_else(|e| panic!("{}: {e}", testdata.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!files.is_empty(), "no fixtures for {kind}");
        for f in files {
            let line = format!("PASS {kind} testdata/{f}: ");
            assert!(
                stdout.lines().any(|l| l.starts_with(&line)),
                "fixture {kind}/testdata/{f} is not tested or does not pass"
            );
        }
    }
}

/// docs/gitops.md's argocd-cm snippet carries each health.lua verbatim.
#[test]
fn gitops_doc_carries_each_health_check_verbatim() {
    let doc = std::fs::read_to_string(repo_root().join("docs/gitops.md")).unwrap();
    for kind in KINDS {
        let script =
            std::fs::read_to_string(customizations().join(kind).join("health.lua")).unwrap();
        let key = format!("  resource.customizations.health.iam.kubeop.dev_{kind}: |");
        let mut lines = doc.lines().skip_while(|l| *l != key);
        assert!(lines.next().is_some(), "docs/gitops.md has no `{key}`");
        let mut body = String::new();
        for line in lines {
            if line.is_empty() {
                body.push('\n');
            } else if let Some(rest) = line.strip_prefix("    ") {
                body.push_str(rest);
                body.push('\n');
            } else {
                break;
            }
        }
        assert_eq!(
            body.trim_end(),
            script.trim_end(),
            "docs/gitops.md's {kind} health check differs from {kind}/health.lua"
        );
    }
}
