//! End-to-end, as a user runs it: the real control plane, kubectl, the operator binary as
//! its own process, and the IAM emulator.
//!
//! Tests of this binary share one control plane and run in parallel, so each one works in
//! its own namespace with its own emulator and its own operator watching only that
//! namespace (the examples test owns `team-a`).

mod support;

use k8s_openapi::api::core::v1::Secret;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator, exit_of_unreachable, kubectl_with_operator, tail};
use support::emulator::{Emulator, repo_root};
use support::read;

const ACCOUNT: &str = "123456789012";
const OWNER_TAG: &str = "iam.kubeop.dev/owner";

#[test]
fn invalid_manifests_are_rejected_with_the_schemas_message() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("invalid");
    let policy = |name: &str, extra: &str| {
        format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamPolicy\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n  policyName: \"{name}\"\n  document: {{Version: '2012-10-17', Statement: []}}\n{extra}"
        )
    };
    let bad_name = cp.apply(&policy("has space", ""));
    assert!(!bad_name.status.success());
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("spec.policyName"));

    let bad_path = cp.apply(&policy("ok", "  path: no-slashes\n"));
    assert!(!bad_path.status.success());
    assert!(String::from_utf8_lossy(&bad_path.stderr).contains("spec.path"));

    assert!(cp.apply(&policy("first", "")).status.success());
    let renamed = cp.apply(&policy("second", ""));
    assert!(!renamed.status.success());
    assert!(String::from_utf8_lossy(&renamed.stderr).contains("policyName is immutable"));

    let both = format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamGroup\nmetadata: {{name: g, namespace: {ns}}}\nspec:\n  policies:\n    - arn: arn:aws:iam::aws:policy/ReadOnlyAccess\n      policyRef: {{name: x}}\n"
    );
    let out = cp.apply(&both);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exactly one of policyRef or arn"));
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The examples, applied dependents first, converge; their IAM entities and Secrets are
/// what the examples promise; deleting them leaves IAM empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_converge_and_clean_up() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let example = |file: &str| -> String {
        repo_root()
            .join("examples")
            .join(file)
            .to_string_lossy()
            .into_owned()
    };
    let ns = "team-a";
    cp.kubectl_ok(&["apply", "-f", &example("00-namespace.yaml")]);
    cp.kubectl_ok(&["apply", "-f", &example("05-tenancy.yaml")]);
    let op = Operator::start(cp, &emulator.url, &["--watch-namespace", ns], &[]);
    // Dependents first: the users arrive before their group, the group before its policy.
    for file in ["30-users.yaml", "20-group.yaml", "10-policy.yaml"] {
        cp.kubectl_ok(&["apply", "-f", &example(file)]);
    }
    wait_ready(cp, &op, ns, &["iampolicy,iamgroup,iamuser", "--all"], 180);

    // The policy, with the operator's owner tag next to the user's own.
    let policy_arn = cp.kubectl_ok(&[
        "get",
        "iampolicy",
        "s3-reader",
        "-n",
        ns,
        "-o",
        "jsonpath={.status.arn}",
    ]);
    assert_eq!(
        policy_arn,
        format!("arn:aws:iam::{ACCOUNT}:policy/team-a/team-a-s3-reader")
    );
    assert!(read::policy_exists(&aws, &policy_arn).await);
    let tags = read::policy_tags(&aws, &policy_arn).await;
    assert_eq!(
        tags.get(OWNER_TAG).map(String::as_str),
        Some("default/team-a/s3-reader"),
        "policy tags: {tags:?}"
    );
    assert_eq!(tags.get("team").map(String::as_str), Some("a"));

    // The group: both managed policies and the inline one.
    let group = "team-a-developers";
    assert_eq!(
        read::group_policies(&aws, group).await,
        BTreeSet::from([
            policy_arn.clone(),
            "arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()
        ])
    );
    assert_eq!(
        read::group_inline(&aws, group).await,
        BTreeSet::from(["deny-bucket-delete".to_string()])
    );

    // The users, both members of the group.
    assert_eq!(
        read::group_members(&aws, group).await,
        BTreeSet::from([
            "team-a-alice".to_string(),
            "team-a-bob".to_string(),
            "team-a-carol".to_string()
        ])
    );

    // The Secrets hold working material: each key id is a key of that user in IAM.
    let client = cp.client().await;
    for (secret, user) in [
        ("alice-aws-credentials", "team-a-alice"),
        ("bob-aws-credentials", "team-a-bob"),
    ] {
        let data = secret_data(&client, ns, secret).await;
        assert_eq!(
            data.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            BTreeSet::from(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "credentials"]),
            "keys of Secret {secret}"
        );
        let key_id = &data["AWS_ACCESS_KEY_ID"];
        let secret_key = &data["AWS_SECRET_ACCESS_KEY"];
        assert!(!secret_key.is_empty(), "empty secret key in {secret}");
        let ini = &data["credentials"];
        assert!(
            ini.contains("[default]") && ini.contains(key_id) && ini.contains(secret_key),
            "credentials file of {secret} does not hold the key: {ini}"
        );
        let keys = read::access_keys(&aws, user).await;
        assert!(
            keys.contains_key(key_id),
            "Secret {secret} publishes {key_id}, but {user}'s keys in IAM are {keys:?}"
        );
    }
    let console = secret_data(&client, ns, "alice-console").await;
    assert_eq!(
        console.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["consoleUrl", "password", "username"])
    );
    assert_eq!(console["username"], "team-a-alice");
    assert!(!console["password"].is_empty());
    assert!(
        console["consoleUrl"].starts_with("https://")
            && console["consoleUrl"].ends_with(".signin.aws.amazon.com/console"),
        "consoleUrl: {}",
        console["consoleUrl"]
    );
    aws.get_login_profile()
        .user_name("team-a-alice")
        .send()
        .await
        .expect("alice has a console login profile in IAM");
    // Carol must use MFA: the operator's self-management policy is attached.
    let carol_policy = cp.kubectl_ok(&[
        "get",
        "iamuser",
        "carol",
        "-n",
        ns,
        "-o",
        "jsonpath={.status.console.selfManagementPolicy}",
    ]);
    assert!(
        read::user_policies(&aws, "team-a-carol")
            .await
            .contains(&carol_policy),
        "carol's policy {carol_policy:?} is not attached"
    );

    // `kubectl get iam` lists the four objects.
    let listed = cp.kubectl_ok(&["get", "iam", "-n", ns, "-o", "name"]);
    let listed: BTreeSet<&str> = listed.lines().collect();
    assert_eq!(
        listed,
        BTreeSet::from([
            "iampolicy.iam.kubeop.dev/s3-reader",
            "iamgroup.iam.kubeop.dev/developers",
            "iamuser.iam.kubeop.dev/alice",
            "iamuser.iam.kubeop.dev/bob",
            "iamuser.iam.kubeop.dev/carol",
        ])
    );

    // Deleting the examples removes everything they created in IAM.
    let out = kubectl_with_operator(
        cp,
        &op,
        &[
            "delete",
            "-f",
            &example("30-users.yaml"),
            "-f",
            &example("20-group.yaml"),
            "-f",
            &example("10-policy.yaml"),
            "--wait",
            "--timeout=120s",
        ],
    );
    assert_ok(cp, &op, ns, "kubectl delete -f examples", &out);
    for user in ["team-a-alice", "team-a-bob", "team-a-carol"] {
        assert!(
            !read::user_exists(&aws, user).await,
            "IAM user {user} left behind"
        );
    }
    assert!(
        !read::group_exists(&aws, group).await,
        "IAM group {group} left behind"
    );
    for arn in [&policy_arn, &carol_policy] {
        assert!(
            !read::policy_exists(&aws, arn).await,
            "IAM policy {arn} left behind"
        );
    }
    cp.kubectl_ok(&["delete", "-f", &example("05-tenancy.yaml")]);
    cp.kubectl_ok(&["delete", "namespace", ns, "--wait=false"]);
}

/// Deleting a whole namespace completes (every finalizer is released) and its IAM entities
/// are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_releases_finalizers_and_cleans_iam() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("nsdel");
    let op = Operator::start(cp, &emulator.url, &["--watch-namespace", &ns], &[]);
    let (policy, group, user) = (
        format!("{ns}-reader"),
        format!("{ns}-devs"),
        format!("{ns}-carol"),
    );
    let manifest = format!(
        r#"apiVersion: iam.kubeop.dev/v1alpha1
kind: IamPolicy
metadata: {{name: reader, namespace: {ns}}}
spec:
  policyName: {policy}
  document:
    Version: "2012-10-17"
    Statement: [{{Effect: Allow, Action: "s3:GetObject", Resource: "*"}}]
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamGroup
metadata: {{name: devs, namespace: {ns}}}
spec:
  groupName: {group}
  policies: [{{policyRef: {{name: reader}}}}]
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamUser
metadata: {{name: carol, namespace: {ns}}}
spec:
  userName: {user}
  groups: [{{groupRef: {{name: devs}}}}]
  accessKey: {{enabled: true}}
"#
    );
    cp.apply_ok(&manifest);
    wait_ready(cp, &op, &ns, &["iampolicy,iamgroup,iamuser", "--all"], 180);
    let policy_arn = format!("arn:aws:iam::{ACCOUNT}:policy/{policy}");
    // Everything exists before the namespace goes, so "gone" below means cleaned up.
    assert!(read::policy_exists(&aws, &policy_arn).await);
    assert_eq!(
        read::group_members(&aws, &group).await,
        BTreeSet::from([user.clone()])
    );
    assert_eq!(read::access_keys(&aws, &user).await.len(), 1);

    let out = kubectl_with_operator(cp, &op, &["delete", "namespace", &ns, "--timeout=120s"]);
    assert_ok(cp, &op, &ns, "kubectl delete namespace", &out);
    assert!(
        !read::user_exists(&aws, &user).await,
        "IAM user {user} left behind"
    );
    assert!(
        !read::group_exists(&aws, &group).await,
        "IAM group {group} left behind"
    );
    assert!(
        !read::policy_exists(&aws, &policy_arn).await,
        "IAM policy {policy_arn} left behind"
    );
}

/// IAM groups carry no tags, so the operator asks the API server which IamGroup manages a
/// group: one in another namespace cannot adopt it, even with the adopt annotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopted_group_is_never_taken_from_another_namespace() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let (first, second) = (cp.namespace("claim-a"), cp.namespace("claim-b"));
    let scope = format!("{first},{second}");
    let op = Operator::start(cp, &emulator.url, &["--watch-namespace", &scope], &[]);
    let group = format!("{first}-shared");
    let manifest = |ns: &str, annotations: &str| {
        format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamGroup\nmetadata: {{name: shared, namespace: {ns}{annotations}}}\nspec:\n  groupName: {group}\n  policies: [{{arn: arn:aws:iam::aws:policy/ReadOnlyAccess}}]\n"
        )
    };
    cp.apply_ok(&manifest(&first, ""));
    wait_ready(cp, &op, &first, &["iamgroup/shared"], 60);
    // The second namespace may adopt that very group (its tenancy policy lists it): only
    // the other IamGroup's claim stands in the way.
    cp.kubectl_ok(&[
        "label",
        "namespace",
        &second,
        &format!("claim-test={second}"),
    ]);
    cp.apply_ok(&format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamTenancyPolicy\nmetadata: {{name: {second}}}\nspec:\n  namespaceSelector: {{matchLabels: {{claim-test: {second}}}}}\n  path: /\n  adoption: true\n  allowedGroups: [{group}]\n  allowedPolicyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]\n"
        ),
    );
    cp.apply_ok(&manifest(
        &second,
        ", annotations: {iam.kubeop.dev/adopt: \"true\"}",
    ));
    let stalled = kubectl_with_operator(
        cp,
        &op,
        &[
            "wait",
            "--for=condition=Stalled",
            "-n",
            &second,
            "--timeout=60s",
            "iamgroup/shared",
        ],
    );
    assert_ok(cp, &op, &second, "waiting for Stalled", &stalled);
    let ready = ready_condition(cp, &second, "iamgroup", "shared").unwrap();
    assert_eq!(ready["reason"], "NameConflict", "{ready}");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("{first}/shared")), "{message}");

    let out = kubectl_with_operator(
        cp,
        &op,
        &[
            "delete",
            "iamgroup",
            "shared",
            "-n",
            &second,
            "--timeout=60s",
        ],
    );
    assert_ok(cp, &op, &second, "deleting the second IamGroup", &out);
    assert!(read::group_exists(&aws, &group).await);
    assert_eq!(
        read::group_policies(&aws, &group).await,
        BTreeSet::from(["arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()])
    );
    cp.kubectl_ok(&["delete", "iamtenancypolicy", &second]);
    for ns in [&first, &second] {
        cp.kubectl_ok(&["delete", "namespace", ns, "--wait=false"]);
    }
}

/// Out-of-band changes are found by the bulk drift scan and repaired long before the
/// per-object resync (1h here); between scans IAM is read in bulk only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_scan_repairs_out_of_band_changes_between_resyncs() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("drift");
    let args = [
        "--watch-namespace",
        &ns,
        "--resync-interval",
        "1h",
        "--drift-scan-interval",
        "2s",
    ];
    let op = Operator::start(cp, &emulator.url, &args, &[]);
    let (group, user) = (format!("{ns}-devs"), format!("{ns}-erin"));
    const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    cp.apply_ok(&format!(
        r#"apiVersion: iam.kubeop.dev/v1alpha1
kind: IamGroup
metadata: {{name: devs, namespace: {ns}}}
spec:
  groupName: {group}
  policies: [{{arn: "{READ_ONLY}"}}]
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamUser
metadata: {{name: erin, namespace: {ns}}}
spec:
  userName: {user}
  groups: [{{groupRef: {{name: devs}}}}]
"#
    ));
    wait_ready(cp, &op, &ns, &["iamgroup/devs", "iamuser/erin"], 60);
    // A scan sees the operator's own changes once and wakes their objects, which then find
    // IAM as they want it. Those reconciles have run once a window of two whole scan
    // periods passes without one; only then does the quiet period start.
    let reconciles = || op.reconciles("IamGroup") + op.reconciles("IamUser");
    let settled_by = Instant::now() + Duration::from_secs(60);
    loop {
        let before = reconciles();
        let scans = scans_served(&emulator).await;
        wait_for_scans(&op, &emulator, scans + 3, settled_by).await;
        if reconciles() == before {
            break;
        }
        assert!(
            Instant::now() < settled_by,
            "the operator never stopped reconciling after its objects were Ready\n{}",
            tail(&op.logs(), 40)
        );
    }
    // The quiet period: two whole scan periods with nothing changed, in IAM or Kubernetes.
    let before = reconciles();
    emulator.reset_calls().await;
    wait_for_scans(&op, &emulator, 3, Instant::now() + Duration::from_secs(30)).await;
    let quiet = emulator.calls().await;
    assert_eq!(
        quiet.keys().map(String::as_str).collect::<Vec<_>>(),
        ["GetAccountAuthorizationDetails"],
        "between scans only the bulk read: {quiet:?}"
    );
    assert_eq!(
        reconciles(),
        before,
        "a scan that found no drift woke an object"
    );

    aws.detach_group_policy()
        .group_name(&group)
        .policy_arn(READ_ONLY)
        .send()
        .await
        .unwrap();
    aws.remove_user_from_group()
        .group_name(&group)
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let repaired = read::group_policies(&aws, &group).await
            == BTreeSet::from([READ_ONLY.to_string()])
            && read::group_members(&aws, &group).await == BTreeSet::from([user.clone()]);
        if repaired {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "out-of-band changes not repaired in 30s\n{}",
            tail(&op.logs(), 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Groups cannot be tagged: killed right after CreateGroup, the operator must still know
/// the group as its own when it comes back (the intent was recorded in status first).
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the failpoints feature: cargo test --features failpoints"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_created_just_before_a_crash_is_still_ours() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("group-crash");
    let group = format!("{ns}-devs");
    let watch = ["--watch-namespace", ns.as_str()];
    let crashing = Operator::start(
        cp,
        &emulator.url,
        &watch,
        &[("IAM_OPERATOR_FAILPOINT", "after-create-group")],
    );
    cp.apply_ok(&format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamGroup\nmetadata: {{name: devs, namespace: {ns}}}\nspec:\n  groupName: {group}\n  policies: [{{arn: arn:aws:iam::aws:policy/ReadOnlyAccess}}]\n"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !crashing.exited() {
        assert!(
            Instant::now() < deadline,
            "the operator never reached the failpoint"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(crashing);
    assert!(
        read::group_exists(&aws, &group).await,
        "the crash came after CreateGroup"
    );

    let op = Operator::start(cp, &emulator.url, &watch, &[]);
    wait_ready(cp, &op, &ns, &["iamgroup/devs"], 60);
    assert_eq!(
        read::group_policies(&aws, &group).await,
        BTreeSet::from(["arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()])
    );
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Pointed at a cluster that is not there, the operator exits at once with a clear message
/// instead of hanging or crash-looping silently.
#[test]
fn operator_exits_clearly_when_cluster_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        r#"apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
  - name: nobody
    user: {token: not-a-real-token}
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
"#,
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_iam-operator"))
        .args([
            "--metrics-bind-address",
            "127.0.0.1:0",
            "--health-probe-bind-address",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = exit_of_unreachable(child);
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(
        stderr.contains("cannot reach the Kubernetes API at https://127.0.0.1:1/"),
        "stderr does not say which API is unreachable: {stderr}"
    );
    assert!(
        stderr.contains("onnection refused"),
        "stderr does not give the cause: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Drift scans the emulator has served (one GetAccountAuthorizationDetails page each)
/// since its calls were last reset.
async fn scans_served(emulator: &Emulator) -> u64 {
    emulator
        .calls()
        .await
        .get("GetAccountAuthorizationDetails")
        .copied()
        .unwrap_or(0)
}

/// Waits until the emulator has served `count` drift scans; fails at `deadline`.
async fn wait_for_scans(op: &Operator, emulator: &Emulator, count: u64, deadline: Instant) {
    loop {
        let served = scans_served(emulator).await;
        if served >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{served} of {count} drift scans served by the deadline\n{}",
            tail(&op.logs(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Panics with the objects' state and the operator's log when `out` failed.
fn assert_ok(cp: &ControlPlane, op: &Operator, ns: &str, what: &str, out: &std::process::Output) {
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

/// The Ready condition of an object, as JSON, if it has one.
fn ready_condition(
    cp: &ControlPlane,
    ns: &str,
    kind: &str,
    name: &str,
) -> Option<serde_json::Value> {
    let out = cp.kubectl_ok(&["get", kind, name, "-n", ns, "-o", "json"]);
    let obj: serde_json::Value = serde_json::from_str(&out).unwrap();
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
}

/// A Secret's data as text.
async fn secret_data(client: &kube::Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ns);
    let secret = api
        .get_opt(name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("Secret {ns}/{name} does not exist"));
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}
