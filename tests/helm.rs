//! The Helm chart `charts/iam-operator`, installed for real: `helm lint`, the values
//! schema, `helm install` / `upgrade` / `uninstall` against the real control plane, the
//! Deployment under the `restricted` Pod Security Standard, and the operator binary run
//! with only the chart's RBAC (impersonating the release's ServiceAccount, with the
//! Deployment's environment), in cluster-wide and in watchNamespaces mode.
//!
//! No Pod ever runs here (no scheduler, no kubelet): the operator runs as a process with
//! the Pod's identity and settings instead. Tests run in parallel on one control plane;
//! each release has its own name and namespaces, so no cluster-scoped object (ClusterRole,
//! admission policy) is shared. The CRDs are shared by nature: the control plane starts
//! with them (from `crds/`), the cluster-wide release adopts them, the other releases
//! install with `crds.install=false`.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator, kubectl_with_operator, tail, tool};
use support::emulator::{Emulator, repo_root};
use support::read;

fn chart() -> PathBuf {
    repo_root().join("charts/iam-operator")
}

/// Operators with cluster-wide RBAC reconcile every namespace, so the tests that run an
/// operator take turns (helm and API-server checks still run in parallel).
static OPERATOR_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// helm

/// helm with its own config, cache and data directories (nothing of the user's), kept in
/// cargo's per-project scratch directory so runs leave nothing behind in /tmp.
fn helm_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-home")
}

fn helm(cp: Option<&ControlPlane>, args: &[&str]) -> Output {
    let home = helm_home();
    let mut cmd = Command::new(tool("helm"));
    cmd.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .args(args);
    if let Some(cp) = cp {
        cmd.arg("--kubeconfig").arg(&cp.kubeconfig);
    }
    cmd.output().expect("run helm")
}

/// helm that must succeed; prints and returns its output (stdout, then stderr).
fn helm_ok(cp: Option<&ControlPlane>, args: &[&str]) -> (String, String) {
    let out = helm(cp, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "helm {} failed:\n{stdout}{stderr}",
        args.join(" ")
    );
    // What helm said when it changed the cluster or judged the chart (for the test log).
    if ["install", "upgrade", "uninstall", "lint"].contains(&args[0]) {
        stdout
            .lines()
            .chain(stderr.lines())
            .for_each(|l| println!("[helm {}] {l}", args[0]));
    }
    (stdout, stderr)
}

/// helm that must fail; returns what it said (`helm lint` reports on stdout).
fn helm_fails(args: &[&str]) -> String {
    let out = helm(None, args);
    assert!(
        !out.status.success(),
        "helm {} succeeded, but it should have been refused:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm template` of `chart` with `args`, as YAML documents (comments-only ones dropped).
fn render(chart: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["template", "x", chart.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = helm(None, &all);
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    docs(&String::from_utf8(out.stdout).unwrap())
}

fn docs(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Option<Value>>(doc).unwrap())
        .filter(|v| v.get("kind").is_some())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

// ---------------------------------------------------------------------------------------
// Lint and values schema (no cluster)

#[test]
fn chart_lints_and_its_schema_rejects_wrong_values() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    helm_ok(None, &["lint", "--strict", chart]);
    helm_ok(
        None,
        &[
            "lint",
            "--strict",
            chart,
            "--set",
            "metrics.service.enabled=true,serviceMonitor.enabled=true,podDisruptionBudget.enabled=true",
            "--set",
            "prometheusRule.enabled=false,grafanaDashboard.enabled=false",
            "--set",
            "watchNamespaces={a,b},leaderElection.leaseDuration=30s",
        ],
    );
    // Each wrong value is refused by `helm template` and by `helm lint`, naming the value.
    for (set, says) in [
        ("replicaCount=abc", "/replicaCount"),
        ("leaderElect=maybe", "/leaderElect"),
        ("replicaCont=2", "'replicaCont' not allowed"),
        ("metrics.service.enable=true", "'enable' not allowed"),
        ("serviceMonitor.enabled=yes", "/serviceMonitor/enabled"),
        ("serviceMonitor.interval=1.5m", "/serviceMonitor/interval"),
        (
            "podDisruptionBudget.maxUnavailable=most",
            "/podDisruptionBudget/maxUnavailable",
        ),
        (
            "leaderElection.renewDeadline=10",
            "/leaderElection/renewDeadline",
        ),
        ("resyncInterval=1 hour", "/resyncInterval"),
        ("defaultDeletionPolicy=Keep", "/defaultDeletionPolicy"),
        ("iamPathPrefix=k8s/", "/iamPathPrefix"),
        ("crds.install=no", "/crds/install"),
        ("metrics.port=0", "/metrics/port"),
        (
            "serviceAccount.annotations.a=1",
            "/serviceAccount/annotations/a",
        ),
    ] {
        for verb in ["template", "lint"] {
            let stderr = helm_fails(&[verb, chart, "--set", set]);
            assert!(
                stderr.contains(says),
                "helm {verb} --set {set}: the error does not name {says:?}:\n{stderr}"
            );
        }
    }
    // The same schema accepts the values' other valid forms.
    for set in [
        "podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable=50%",
        "podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable=,podDisruptionBudget.minAvailable=1",
        "driftScanInterval=0s,resyncInterval=1h30m",
        "requiredPermissionsBoundary=arn:aws:iam::123456789012:policy/boundary",
    ] {
        helm_ok(None, &["template", "x", chart, "--set", set]);
    }
    // Both PDB bounds at once is a template error with the fix.
    let stderr = helm_fails(&[
        "template",
        chart,
        "--set",
        "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=1",
    ]);
    assert!(
        stderr.contains("set only one of minAvailable and maxUnavailable"),
        "{stderr}"
    );
}

/// Every value of values.yaml is in the schema, every object level of the schema refuses
/// unknown keys, and every property the schema names for an object of values.yaml is a
/// value there (so the defaults document every setting).
#[test]
fn every_value_is_in_the_schema() {
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();

    // Every object schema says what it does with keys it does not name.
    fn closed(path: &str, s: &Value, open: &mut Vec<String>) {
        if s["type"] == "object" && s.get("additionalProperties").is_none() {
            // Free-form parts of Kubernetes objects (checked by the API server) only.
            let free_form = [
                "/env[]/valueFrom",
                "/affinity/nodeAffinity",
                "/affinity/podAffinity",
                "/affinity/podAntiAffinity",
            ];
            if !free_form.contains(&path) {
                open.push(path.to_string());
            }
        }
        if let Some(props) = s["properties"].as_object() {
            for (k, p) in props {
                closed(&format!("{path}/{k}"), p, open);
            }
        }
        if s["items"].is_object() {
            closed(&format!("{path}[]"), &s["items"], open);
        }
    }
    let mut open = Vec::new();
    closed("", &schema, &mut open);
    assert!(
        open.is_empty(),
        "object schemas without additionalProperties: {open:?}"
    );

    // values.yaml → schema: every leaf (scalar, empty map, list) resolves.
    fn leaves(path: &str, v: &Value, schema: &Value, missing: &mut Vec<String>, count: &mut usize) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    let here = format!("{path}/{k}");
                    let sub = schema["properties"]
                        .get(k)
                        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                    match sub {
                        Some(sub) => leaves(&here, child, sub, missing, count),
                        None => missing.push(here),
                    }
                }
            }
            _ => {
                *count += 1;
                // The leaf's own schema must say its type.
                if schema.get("type").is_none() && schema.get("oneOf").is_none() {
                    missing.push(format!("{path} (no type)"));
                }
            }
        }
    }
    let (mut missing, mut count) = (Vec::new(), 0);
    leaves("", &values, &schema, &mut missing, &mut count);
    assert!(
        missing.is_empty(),
        "values not described by the schema: {missing:?}"
    );
    assert!(count > 40, "only {count} leaves found in values.yaml");

    // schema → values.yaml: every named property of an object that values.yaml holds.
    fn named(path: &str, s: &Value, v: &Value, absent: &mut Vec<String>) {
        if let (Some(props), Some(map)) = (s["properties"].as_object(), v.as_object()) {
            for (k, p) in props {
                match map.get(k) {
                    Some(child) => named(&format!("{path}/{k}"), p, child, absent),
                    None => absent.push(format!("{path}/{k}")),
                }
            }
        }
    }
    let mut absent = Vec::new();
    named("", &schema, &values, &mut absent);
    // Optional parts of a Kubernetes object in a list or free-form map are not defaults.
    absent.retain(|p| !p.starts_with("/affinity/"));
    assert!(
        absent.is_empty(),
        "schema properties without a default in values.yaml: {absent:?}"
    );
    assert_eq!(
        values["prometheusRule"],
        serde_yaml::from_str::<Value>("{enabled: false, labels: {}}").unwrap()
    );
    assert_eq!(
        values["grafanaDashboard"],
        serde_yaml::from_str::<Value>(
            r#"{enabled: false, labels: {grafana_dashboard: "1"}, namespace: ""}"#
        )
        .unwrap()
    );
}

/// The CRD templates are the generated CRDs (tests/crds.rs checks those against the
/// types) plus only Helm's keep policy and the chart's labels; crds.install=false renders
/// none.
#[test]
fn crd_templates_are_the_generated_crds_kept_by_helm() {
    let rendered = render(&chart(), &["--show-only", "templates/crds.yaml"]);
    let mut files: BTreeMap<String, Value> = BTreeMap::new();
    for (file, _) in iam_operator::crds::render_all().unwrap() {
        let text = std::fs::read_to_string(chart().join("files/crds").join(file)).unwrap();
        let crd: Value = serde_yaml::from_str(&text).unwrap();
        files.insert(crd["metadata"]["name"].as_str().unwrap().to_string(), crd);
    }
    assert_eq!(
        rendered.len(),
        files.len(),
        "CRDs rendered: {}",
        rendered.len()
    );
    for crd in &rendered {
        let name = crd["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            crd["metadata"]["annotations"],
            json!({"helm.sh/resource-policy": "keep"}),
            "{name}"
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
        let mut bare = crd.clone();
        let meta = bare["metadata"].as_object_mut().unwrap();
        meta.remove("annotations");
        meta.remove("labels");
        assert!(
            same(&bare, &files[name]),
            "{name}: the template changed more than metadata"
        );
    }
    let out = helm(
        None,
        &[
            "template",
            "x",
            chart().to_str().unwrap(),
            "--set",
            "crds.install=false",
        ],
    );
    assert!(out.status.success());
    let all = docs(&String::from_utf8(out.stdout).unwrap());
    assert!(find(&all, "CustomResourceDefinition").is_empty());
    assert!(find(&all, "Deployment").len() == 1);
}

/// Equal as JSON, numbers by value (Helm's YAML round trip writes `minimum: 0.0` as `0`;
/// the API server keeps JSON Schema bounds as float64 either way).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------
// Optional features

/// metrics.service, serviceMonitor and podDisruptionBudget: off by default; on, each
/// renders, fits the Pods it is for, and (but the ServiceMonitor, whose CRD this cluster
/// lacks) is accepted by the API server.
#[test]
fn optional_features_render_and_are_accepted() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("helm-opt");
    let base = render(&chart(), &["--namespace", &ns]);
    for kind in ["Service", "ServiceMonitor", "PodDisruptionBudget"] {
        assert!(find(&base, kind).is_empty(), "{kind} rendered by default");
    }

    let on = render(
        &chart(),
        &[
            "--namespace",
            &ns,
            "--set",
            "metrics.service.enabled=true,metrics.service.port=9090,metrics.port=9000",
            "--set",
            "serviceMonitor.enabled=true,serviceMonitor.interval=15s,serviceMonitor.labels.release=prom",
            "--set",
            "podDisruptionBudget.enabled=true",
        ],
    );
    let deployment = one(&on, "Deployment");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let matches = |selector: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| pod_labels[k] == *v)
    };
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 9000),
        "{container:?}"
    );
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "IAM_OPERATOR_METRICS_BIND_ADDRESS"
                && e["value"] == "0.0.0.0:9000")
    );

    let service = one(&on, "Service");
    assert!(matches(&service["spec"]["selector"]), "{service:?}");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}])
    );

    let pdb = one(&on, "PodDisruptionBudget");
    assert!(matches(&pdb["spec"]["selector"]["matchLabels"]));
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"].get("minAvailable").is_none());

    // The ServiceMonitor's shape (monitoring.coreos.com/v1): it selects the Service by
    // labels the Service has, in its namespace, and scrapes the Service's named port.
    let sm = one(&on, "ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["namespace"], ns.as_str());
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            service["metadata"]["labels"][k], *v,
            "Service lacks label {k}"
        );
    }
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"], json!([ns]));
    assert_eq!(
        sm["spec"]["endpoints"],
        // honorLabels: the per-object series' `namespace` label is the object's.
        json!([{"port": "metrics", "path": "/metrics", "honorLabels": true, "interval": "15s"}])
    );
    // serviceMonitor alone turns the Service on (it has nothing to scrape otherwise).
    let sm_only = render(&chart(), &["--set", "serviceMonitor.enabled=true"]);
    assert_eq!(find(&sm_only, "Service").len(), 1);

    // minAvailable instead of maxUnavailable.
    let min = render(
        &chart(),
        &[
            "--namespace",
            &ns,
            "--set",
            "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=50%,podDisruptionBudget.maxUnavailable=",
        ],
    );
    let min_pdb = one(&min, "PodDisruptionBudget");
    assert_eq!(min_pdb["spec"]["minAvailable"], "50%");
    assert!(min_pdb["spec"].get("maxUnavailable").is_none());

    // The API server accepts what it knows (a server-side dry run, nothing is stored);
    // the CRDs are covered by the real installs below.
    let known: Vec<String> = on
        .iter()
        .chain(std::iter::once(min_pdb))
        .filter(|d| d["kind"] != "ServiceMonitor" && d["kind"] != "CustomResourceDefinition")
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect();
    let out = kubectl_stdin(
        cp,
        &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
        &known.join("---\n"),
    );
    assert!(
        out.status.success(),
        "the API server refused the optional features: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = String::from_utf8_lossy(&out.stdout);
    for what in [
        "service/",
        "poddisruptionbudget.policy/",
        "deployment.apps/",
    ] {
        assert!(applied.contains(what), "{what} not applied: {applied}");
    }
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

// ---------------------------------------------------------------------------------------
// Installs

/// Cluster-wide: install into a namespace that enforces the `restricted` Pod Security
/// Standard (adopting the CRDs the cluster already has), run the operator on the examples
/// with only the chart's RBAC, upgrade a value and a CRD schema, uninstall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_release_installs_runs_upgrades_and_uninstalls() {
    let cp = ControlPlane::shared();
    let rel = format!("cw{}", std::process::id());
    let ns = restricted_namespace(cp, "helm-cw");

    // The CRDs were applied with kubectl before (as `crds/` is); Helm adopts objects that
    // carry its ownership metadata (the documented migration, docs/install.md).
    for crd in crd_names() {
        cp.kubectl_ok(&[
            "label",
            "crd",
            &crd,
            "app.kubernetes.io/managed-by=Helm",
            "--overwrite",
        ]);
        cp.kubectl_ok(&[
            "annotate",
            "crd",
            &crd,
            &format!("meta.helm.sh/release-name={rel}"),
            &format!("meta.helm.sh/release-namespace={ns}"),
            "--overwrite",
        ]);
    }
    let chart = chart();
    let (_, stderr) = helm_ok(
        Some(cp),
        &[
            "install",
            &rel,
            chart.to_str().unwrap(),
            "--namespace",
            &ns,
            "--set",
            OIDC_PROVIDER,
        ],
    );
    // The namespace also warns on restricted violations: creating the Deployment gave none.
    assert!(
        !stderr.contains("PodSecurity"),
        "the Deployment would violate the restricted Pod Security Standard: {stderr}"
    );
    let manifest = release_objects(cp, &rel, &ns);
    let kinds: BTreeSet<&str> = manifest.iter().map(|o| o.kind.as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "ValidatingAdmissionPolicy",
    ] {
        assert!(kinds.contains(kind), "the release has no {kind}: {kinds:?}");
    }
    for o in &manifest {
        assert!(o.exists(cp), "{o:?} is not in the API server");
    }
    for crd in crd_names() {
        let live: Value =
            serde_json::from_str(&cp.kubectl_ok(&["get", "crd", &crd, "-o", "json"])).unwrap();
        assert_eq!(
            live["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{crd}"
        );
        assert_eq!(
            live["metadata"]["annotations"]["meta.helm.sh/release-name"],
            rel.as_str()
        );
    }

    let deployment = live_deployment(cp, &ns);
    pod_security(cp, &ns, &deployment);

    // The operator, with the release's identity and the Deployment's settings.
    {
        let _turn = OPERATOR_TURN.lock().await;
        run_examples(cp, &ns, &deployment, "helm-cw-ex", false).await;
    }

    // helm upgrade with changed values: they reach the Deployment.
    let chart_s = chart.to_str().unwrap();
    helm_ok(
        Some(cp),
        &[
            "upgrade",
            &rel,
            chart_s,
            "--namespace",
            &ns,
            "--set",
            "leaderElection.leaseDuration=20s,resyncInterval=30m",
        ],
    );
    let env = container_env(&live_deployment(cp, &ns), &ns);
    assert_eq!(
        env.get("IAM_OPERATOR_LEADER_ELECTION_LEASE_DURATION")
            .map(String::as_str),
        Some("20s")
    );
    assert_eq!(
        env.get("IAM_OPERATOR_RESYNC_INTERVAL").map(String::as_str),
        Some("30m")
    );

    // helm upgrade with a new CRD schema (a copy of the chart with one more property):
    // the API server's CRD carries it.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&chart, copy.path());
    let users = copy.path().join("files/crds/iamusers.yaml");
    let mut crd: Value = serde_yaml::from_str(&std::fs::read_to_string(&users).unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object_mut()
        .unwrap()
        .insert(
            "upgradeProbe".into(),
            json!({"type": "string", "description": "Added by the chart upgrade test."}),
        );
    std::fs::write(&users, serde_yaml::to_string(&crd).unwrap()).unwrap();
    let (stdout, _) = helm_ok(
        Some(cp),
        &[
            "upgrade",
            &rel,
            copy.path().to_str().unwrap(),
            "--namespace",
            &ns,
            "--reuse-values",
        ],
    );
    assert!(stdout.contains("REVISION: 3"), "{stdout}");
    let probe =
        "{.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.upgradeProbe.type}";
    assert_eq!(
        cp.kubectl_ok(&[
            "get",
            "crd",
            "iamusers.iam.kubeop.dev",
            "-o",
            &format!("jsonpath={probe}")
        ]),
        "string",
        "the upgraded CRD lacks the new property"
    );
    // --reuse-values kept the previous upgrade's values.
    let env = container_env(&live_deployment(cp, &ns), &ns);
    assert_eq!(
        env.get("IAM_OPERATOR_RESYNC_INTERVAL").map(String::as_str),
        Some("30m")
    );

    // Turning crds.install off leaves the CRDs (keep policy); turning it on again takes
    // them back into the release (they still carry its ownership metadata).
    for (install, revision) in [("false", 4), ("true", 5)] {
        let (stdout, _) = helm_ok(
            Some(cp),
            &[
                "upgrade",
                &rel,
                copy.path().to_str().unwrap(),
                "--namespace",
                &ns,
                "--reuse-values",
                "--set",
                &format!("crds.install={install}"),
            ],
        );
        assert!(
            stdout.contains(&format!("REVISION: {revision}")),
            "{stdout}"
        );
        let in_release = release_objects(cp, &rel, &ns)
            .iter()
            .filter(|o| o.kind == "CustomResourceDefinition")
            .count();
        assert_eq!(
            in_release,
            if install == "true" {
                crd_names().len()
            } else {
                0
            }
        );
        for crd in crd_names() {
            cp.kubectl_ok(&["get", "crd", &crd]);
        }
    }

    // helm uninstall: the release's objects are gone, the CRDs stay (with the upgrade).
    let manifest = release_objects(cp, &rel, &ns);
    let (stdout, stderr) = helm_ok(Some(cp), &["uninstall", &rel, "--namespace", &ns, "--wait"]);
    let said = format!("{stdout}{stderr}");
    assert!(
        said.contains("These resources were kept due to the resource policy"),
        "{said}"
    );
    for crd in crd_names() {
        assert!(
            said.contains(&format!("[CustomResourceDefinition] {crd}")),
            "{crd} not reported kept: {said}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for o in &manifest {
        if o.kind == "CustomResourceDefinition" {
            assert!(o.exists(cp), "{o:?} deleted by helm uninstall");
            continue;
        }
        while o.exists(cp) {
            assert!(
                Instant::now() < deadline,
                "{o:?} left behind by helm uninstall"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    assert_eq!(
        cp.kubectl_ok(&[
            "get",
            "crd",
            "iamusers.iam.kubeop.dev",
            "-o",
            &format!("jsonpath={probe}")
        ]),
        "string"
    );
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// watchNamespaces: a Role and RoleBinding in each watched namespace and no cluster-wide
/// grant on the operator's kinds or Secrets; the API server grants exactly that; the
/// operator converges the examples in a watched namespace with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_release_gets_roles_in_its_namespaces_only() {
    let cp = ControlPlane::shared();
    let rel = format!("ns{}", std::process::id());
    let ns = restricted_namespace(cp, "helm-ns");
    let examples_ns = format!("helm-ns-ex-{}", std::process::id());
    let examples = examples_for(&examples_ns);
    // The examples' namespace first: the release puts a Role there.
    cp.apply_ok(&examples[0]);
    let other = cp.namespace("helm-ns-other");
    let unwatched = cp.namespace("helm-ns-unwatched");
    let chart = chart();
    let (_, stderr) = helm_ok(
        Some(cp),
        &[
            "install",
            &rel,
            chart.to_str().unwrap(),
            "--namespace",
            &ns,
            "--set",
            "crds.install=false",
            "--set",
            &format!("watchNamespaces={{{examples_ns},{other}}}"),
            "--set",
            OIDC_PROVIDER,
        ],
    );
    assert!(!stderr.contains("PodSecurity"), "{stderr}");

    // What the chart rendered.
    let manifest = release_objects(cp, &rel, &ns);
    let full = format!("{rel}-iam-operator");
    let roles: BTreeSet<(String, String)> = manifest
        .iter()
        .filter(|o| o.kind == "Role" || o.kind == "RoleBinding")
        .map(|o| (o.kind.clone(), o.namespace.clone().unwrap()))
        .collect();
    for watched in [&examples_ns, &other] {
        for kind in ["Role", "RoleBinding"] {
            assert!(
                roles.contains(&(kind.to_string(), watched.clone())),
                "no {kind} in {watched}: {roles:?}"
            );
        }
    }
    assert!(!roles.iter().any(|(_, n)| *n == unwatched));
    let cluster_roles: Vec<&str> = manifest
        .iter()
        .filter(|o| o.kind == "ClusterRole")
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(
        cluster_roles,
        vec![format!("{full}-tenancy")],
        "only the tenancy reads are cluster-wide"
    );
    assert!(
        manifest
            .iter()
            .all(|o| o.kind != "CustomResourceDefinition")
    );
    for o in &manifest {
        assert!(o.exists(cp), "{o:?} is not in the API server");
    }

    // What the API server grants the ServiceAccount.
    let sa = format!("system:serviceaccount:{ns}:{full}");
    for watched in [&examples_ns, &other] {
        granted(
            cp,
            &sa,
            &["watch", "iamusers.iam.kubeop.dev", "-n", watched],
        );
        granted(
            cp,
            &sa,
            &[
                "patch",
                "iamgroups.iam.kubeop.dev",
                "-n",
                watched,
                "--subresource",
                "status",
            ],
        );
        granted(cp, &sa, &["create", "secrets", "-n", watched]);
        assert!(
            !can_i(cp, &sa, &["update", "secrets", "-n", watched]),
            "update is never used"
        );
    }
    for elsewhere in [&unwatched, &ns] {
        assert!(
            !can_i(
                cp,
                &sa,
                &["list", "iamusers.iam.kubeop.dev", "-n", elsewhere]
            ),
            "{elsewhere}"
        );
        assert!(
            !can_i(cp, &sa, &["get", "secrets", "-n", elsewhere]),
            "{elsewhere}"
        );
    }
    assert!(!can_i(
        cp,
        &sa,
        &["list", "iamusers.iam.kubeop.dev", "--all-namespaces"]
    ));
    assert!(!can_i(cp, &sa, &["list", "secrets", "--all-namespaces"]));
    granted(cp, &sa, &["watch", "iamtenancypolicies.iam.kubeop.dev"]);
    granted(cp, &sa, &["list", "namespaces"]);
    granted(cp, &sa, &["update", &format!("leases/{full}"), "-n", &ns]);
    assert!(
        !can_i(cp, &sa, &["update", "leases/someone-else", "-n", &ns]),
        "only the release's Lease"
    );

    let deployment = live_deployment(cp, &ns);
    let env = container_env(&deployment, &ns);
    assert_eq!(
        env["IAM_OPERATOR_WATCH_NAMESPACE"],
        format!("{examples_ns},{other}")
    );
    {
        let _turn = OPERATOR_TURN.lock().await;
        run_examples(cp, &ns, &deployment, &examples_ns, true).await;
    }

    let (stdout, stderr) = helm_ok(Some(cp), &["uninstall", &rel, "--namespace", &ns, "--wait"]);
    assert!(!format!("{stdout}{stderr}").contains("kept due to the resource policy"));
    for o in &manifest {
        let deadline = Instant::now() + Duration::from_secs(60);
        while o.exists(cp) {
            assert!(
                Instant::now() < deadline,
                "{o:?} left behind by helm uninstall"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    for n in [&ns, &examples_ns, &other, &unwatched] {
        cp.kubectl_ok(&["delete", "namespace", n, "--wait=false"]);
    }
}

/// Whether the API server lets `user` do `args` (`kubectl auth can-i --as`).
fn can_i(cp: &ControlPlane, user: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", user];
    all.extend_from_slice(args);
    let out = cp.kubectl(&all);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Waits (30 s at most) until the API server lets `user` do `args`: a new RoleBinding
/// reaches the authorizer's cache shortly after it is created.
fn granted(cp: &ControlPlane, user: &str, args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !can_i(cp, user, args) {
        assert!(
            Instant::now() < deadline,
            "{user} may not {}",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------
// Pod Security

/// A namespace that enforces (and warns about) the `restricted` Pod Security Standard.
fn restricted_namespace(cp: &ControlPlane, prefix: &str) -> String {
    let ns = cp.namespace(prefix);
    cp.kubectl_ok(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    ns
}

/// The API server admits the Deployment's Pod in a `restricted` namespace, and refuses it
/// without runAsNonRoot (so the check can fail). Pod Security admission judges Pods only,
/// so the Pods are submitted with a server-side dry run; the ReplicaSet's real Pod (which
/// no scheduler places) is admitted too.
fn pod_security(cp: &ControlPlane, ns: &str, deployment: &Value) {
    let template = &deployment["spec"]["template"];
    let pod = |spec: &Value, name: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"test": "pod-security"}},
            "spec": spec,
        })
        .to_string()
    };
    let out = kubectl_stdin(
        cp,
        &["create", "--dry-run=server", "-f", "-"],
        &pod(&template["spec"], "compliant"),
    );
    assert!(
        out.status.success(),
        "the Deployment's Pod is refused in a restricted namespace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lax = template["spec"].clone();
    lax["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("runAsNonRoot");
    lax["containers"][0]["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("runAsNonRoot");
    let out = kubectl_stdin(
        cp,
        &["create", "--dry-run=server", "-f", "-"],
        &pod(&lax, "lax"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("violates PodSecurity \"restricted:latest\"")
            && stderr.contains("runAsNonRoot"),
        "a Pod without runAsNonRoot was not refused for it: {stderr}"
    );
    // The controller manager's ReplicaSet creates the real Pod, admitted like any other.
    let selector = format!(
        "app.kubernetes.io/instance={}",
        template["metadata"]["labels"]["app.kubernetes.io/instance"]
            .as_str()
            .unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pods = cp.kubectl_ok(&["get", "pods", "-n", ns, "-l", &selector, "-o", "name"]);
        if !pods.trim().is_empty() {
            break;
        }
        let rs = cp.kubectl(&[
            "get",
            "replicasets",
            "-n",
            ns,
            "-o",
            "jsonpath={.items[*].status.conditions}",
        ]);
        assert!(
            Instant::now() < deadline,
            "the ReplicaSet created no Pod: {}",
            String::from_utf8_lossy(&rs.stdout)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------------------------------
// The operator under the release's identity

/// The Helm value that lets the examples' IRSA role trust its ServiceAccount.
const OIDC_PROVIDER: &str = "oidcProviderArn=arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

/// The examples with their namespace (`team-a`) renamed to `ns`: the namespace, its
/// IamTenancyPolicy, then the objects, one manifest per file in order.
fn examples_for(ns: &str) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().replace("team-a", ns))
        .collect()
}

/// Runs the operator as the release's ServiceAccount with the Deployment's environment,
/// applies the examples (in `examples_ns`, created here unless `existing`) and waits for
/// them to be Ready; then deletes them through the operator's finalizers and checks IAM is
/// clean and nothing the operator asked for was forbidden.
async fn run_examples(
    cp: &ControlPlane,
    ns: &str,
    deployment: &Value,
    examples_ns: &str,
    existing: bool,
) {
    let examples_ns = if existing {
        examples_ns.to_string()
    } else {
        format!("{examples_ns}-{}", std::process::id())
    };
    let examples = examples_for(&examples_ns);
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));

    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let identity = format!("system:serviceaccount:{ns}:{sa}");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = impersonating_kubeconfig(&cp.kubeconfig, &identity, dir.path());
    // The kubeconfig really is the ServiceAccount, not the admin: it may not list ConfigMaps.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let as_sa = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let config_maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::all(as_sa);
    match config_maps.list(&Default::default()).await {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("impersonation not in effect, listing ConfigMaps gave {other:?}"),
    }

    let mut env: Vec<(String, String)> = container_env(deployment, ns).into_iter().collect();
    env.push(("KUBECONFIG".into(), kubeconfig.to_str().unwrap().into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The release's grants are in effect before the operator starts.
    for (verb, what) in [
        ("list", "iamusers.iam.kubeop.dev"),
        ("create", "events.events.k8s.io"),
    ] {
        granted(cp, &identity, &[verb, what, "-n", &examples_ns]);
    }
    let op = Operator::start(cp, &emulator.url, &[], &env);

    for manifest in &examples {
        cp.apply_ok(manifest);
    }
    wait_ready(
        cp,
        &op,
        &examples_ns,
        &["iampolicy,iamgroup,iamuser,iamrole", "--all"],
        180,
    );
    // The example's IRSA role annotated its ServiceAccount under the chart's RBAC.
    let role_arn = cp.kubectl_ok(&[
        "get",
        "iamrole",
        "app",
        "-n",
        &examples_ns,
        "-o",
        "jsonpath={.status.arn}",
    ]);
    assert!(
        role_arn.ends_with(&format!("role/{examples_ns}/{examples_ns}-app")),
        "{role_arn}"
    );
    assert_eq!(
        cp.kubectl_ok(&[
            "get",
            "serviceaccount",
            "app",
            "-n",
            &examples_ns,
            "-o",
            "jsonpath={.metadata.annotations.eks\\.amazonaws\\.com/role-arn}",
        ]),
        role_arn
    );
    let (alice, bob, carol) = (
        format!("{examples_ns}-alice"),
        format!("{examples_ns}-bob"),
        format!("{examples_ns}-carol"),
    );
    let group = format!("{examples_ns}-developers");
    assert_eq!(
        read::group_members(&aws, &group).await,
        BTreeSet::from([alice.clone(), bob.clone(), carol.clone()])
    );
    let client = cp.client().await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client, &examples_ns);
    let key = secrets.get("alice-aws-credentials").await.unwrap();
    let key_id = String::from_utf8(key.data.unwrap()["AWS_ACCESS_KEY_ID"].0.clone()).unwrap();
    assert!(read::access_keys(&aws, &alice).await.contains_key(&key_id));
    assert!(secrets.get_opt("alice-console").await.unwrap().is_some());
    // Leader election on: the release's Lease, in the release namespace.
    let lease = container_env(deployment, ns)["IAM_OPERATOR_LEADER_ELECTION_ID"].clone();
    cp.kubectl_ok(&["get", "lease", &lease, "-n", ns]);

    let out = kubectl_with_operator(
        cp,
        &op,
        &[
            "delete",
            "-n",
            &examples_ns,
            "iamrole,iamuser,iamgroup,iampolicy",
            "--all",
            "--timeout=120s",
        ],
    );
    assert_ok(cp, &op, &examples_ns, "kubectl delete", &out);
    for user in [&alice, &bob, &carol] {
        assert!(
            !read::user_exists(&aws, user).await,
            "IAM user {user} left behind"
        );
    }
    assert!(!read::group_exists(&aws, &group).await);
    let logs = op.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the operator was refused something under the chart's RBAC:\n{}",
        tail(&logs, 60)
    );
    cp.kubectl_ok(&[
        "delete",
        "iamtenancypolicy",
        &examples_ns,
        "--ignore-not-found",
    ]);
    if !existing {
        cp.kubectl_ok(&["delete", "namespace", &examples_ns, "--wait=false"]);
    }
}

/// The Deployment as the API server holds it, in `ns`.
fn live_deployment(cp: &ControlPlane, ns: &str) -> Value {
    let list: Value =
        serde_json::from_str(&cp.kubectl_ok(&["get", "deployments", "-n", ns, "-o", "json"]))
            .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    items[0].clone()
}

/// The operator container's environment as the Deployment sets it in `ns`.
fn container_env(deployment: &Value, ns: &str) -> BTreeMap<String, String> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        if let Some(value) = var["value"].as_str() {
            env.insert(name, value.to_string());
        } else if var["value"].is_null() && var.get("valueFrom").is_none() {
            env.insert(name, String::new());
        } else if var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" {
            env.insert(name, ns.to_string());
        } else {
            panic!("unexpected env var in the chart's Deployment: {var}");
        }
    }
    env
}

// ---------------------------------------------------------------------------------------
// Release objects

#[derive(Debug)]
struct Object {
    kind: String,
    api_version: String,
    name: String,
    namespace: Option<String>,
}

impl Object {
    fn exists(&self, cp: &ControlPlane) -> bool {
        let group = self.api_version.split_once('/').map_or("", |(g, _)| g);
        let resource = if group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{group}", self.kind)
        };
        let mut args = vec![
            "get",
            resource.as_str(),
            self.name.as_str(),
            "--ignore-not-found",
            "-o",
            "name",
        ];
        if let Some(ns) = &self.namespace {
            args.extend_from_slice(&["-n", ns]);
        }
        !cp.kubectl_ok(&args).trim().is_empty()
    }
}

/// The objects of a release (`helm get manifest`), namespaced ones with their namespace.
fn release_objects(cp: &ControlPlane, rel: &str, ns: &str) -> Vec<Object> {
    let out = helm(Some(cp), &["get", "manifest", rel, "--namespace", ns]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cluster_scoped = [
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    docs(&String::from_utf8(out.stdout).unwrap())
        .iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap().to_string();
            let namespace = (!cluster_scoped.contains(&kind.as_str())).then(|| {
                d["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(ns)
                    .to_string()
            });
            Object {
                api_version: d["apiVersion"].as_str().unwrap().to_string(),
                name: d["metadata"]["name"].as_str().unwrap().to_string(),
                kind,
                namespace,
            }
        })
        .collect()
}

fn crd_names() -> Vec<String> {
    iam_operator::crds::render_all()
        .unwrap()
        .into_iter()
        .map(|(_, yaml)| {
            let crd: Value = serde_yaml::from_str(&yaml).unwrap();
            crd["metadata"]["name"].as_str().unwrap().to_string()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Helpers

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn kubectl_stdin(cp: &ControlPlane, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Panics with the objects' state and the operator's log when `out` failed.
fn assert_ok(cp: &ControlPlane, op: &Operator, ns: &str, what: &str, out: &Output) {
    if out.status.success() {
        return;
    }
    let state = cp.kubectl(&["get", "iam", "-n", ns, "-o", "yaml"]);
    panic!(
        "{what} failed: {}{}\n--- objects ---\n{}\n--- operator log (tail) ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&state.stdout),
        tail(&op.logs(), 80)
    );
}

/// `kubectl wait --for=condition=Ready` on `targets` in `ns`.
fn wait_ready(cp: &ControlPlane, op: &Operator, ns: &str, targets: &[&str], timeout_secs: u64) {
    let timeout = format!("--timeout={timeout_secs}s");
    let mut args = vec!["wait", "--for=condition=Ready", "-n", ns, timeout.as_str()];
    args.extend_from_slice(targets);
    let out = kubectl_with_operator(cp, op, &args);
    assert_ok(cp, op, ns, &format!("kubectl {}", args.join(" ")), &out);
}

/// A copy of `admin` whose users impersonate `identity` (kubeconfig `as:`).
fn impersonating_kubeconfig(admin: &Path, identity: &str, dir: &Path) -> PathBuf {
    let mut config = kube::config::Kubeconfig::read_from(admin).unwrap();
    for user in &mut config.auth_infos {
        if let Some(info) = user.auth_info.as_mut() {
            info.impersonate = Some(identity.to_string());
        }
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}
