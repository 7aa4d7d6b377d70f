//! `iam-operator import` end to end: an account populated out of band, the real binary's
//! output applied with kubectl to the control plane, the operator adopting it.

mod support;

use iam_operator::iam::{AccountDetails, AwsIam};
use std::collections::BTreeMap;
use std::process::Command;
use support::cluster::{ControlPlane, Operator, kubectl_with_operator, tail};
use support::emulator::Emulator;
use support::{read, writes};

const ACCOUNT: &str = "123456789012";
const OWNER_TAG: &str = "iam.kubeop.dev/owner";
const CONSENT_TAG: &str = "iam.kubeop.dev/adoptable-by";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

fn doc(actions: &[&str]) -> String {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}).to_string()
}

/// An account as a team built it by hand: a user (whose name is not a Kubernetes name) in
/// a group, managed policies attached to both, inline policies, a boundary and tags.
async fn populate(aws: &aws_sdk_iam::Client) {
    use aws_sdk_iam::types::Tag;
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    for (name, actions, description) in [
        (
            "s3-read",
            &["s3:Get*", "s3:List*"][..],
            Some("reads buckets"),
        ),
        (
            "team-boundary",
            &["s3:*", "logs:*", "ec2:Describe*"][..],
            None,
        ),
    ] {
        aws.create_policy()
            .policy_name(name)
            .path("/acme/")
            .policy_document(doc(actions))
            .set_description(description.map(str::to_string))
            .tags(tag("team", "a"))
            .send()
            .await
            .unwrap();
    }
    let arn = |name: &str| format!("arn:aws:iam::{ACCOUNT}:policy/acme/{name}");
    aws.create_group()
        .group_name("Devs")
        .path("/acme/")
        .send()
        .await
        .unwrap();
    aws.attach_group_policy()
        .group_name("Devs")
        .policy_arn(arn("s3-read"))
        .send()
        .await
        .unwrap();
    aws.put_group_policy()
        .group_name("Devs")
        .policy_name("logs")
        .policy_document(doc(&["logs:Describe*"]))
        .send()
        .await
        .unwrap();
    aws.create_user()
        .user_name("Alice_Smith")
        .path("/acme/")
        .permissions_boundary(arn("team-boundary"))
        .tags(tag("team", "a"))
        .tags(tag("cost-center", "42"))
        .send()
        .await
        .unwrap();
    aws.add_user_to_group()
        .user_name("Alice_Smith")
        .group_name("Devs")
        .send()
        .await
        .unwrap();
    for policy in [arn("s3-read"), READ_ONLY.to_string()] {
        aws.attach_user_policy()
            .user_name("Alice_Smith")
            .policy_arn(policy)
            .send()
            .await
            .unwrap();
    }
    aws.put_user_policy()
        .user_name("Alice_Smith")
        .policy_name("extra")
        .policy_document(doc(&["ec2:DescribeInstances"]))
        .send()
        .await
        .unwrap();
}

/// The namespace's tenancy policy: adoption allowed, the account's path, its group, and
/// `extra` policy ARN globs. A customer policy named there can never be managed by an
/// IamPolicy, so the adoption test names none.
fn tenancy(cp: &ControlPlane, ns: &str, extra: &str) {
    cp.kubectl_ok(&["label", "namespace", ns, &format!("import-test={ns}")]);
    cp.apply_ok(&format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamTenancyPolicy\nmetadata: {{name: {ns}}}\nspec:\n  namespaceSelector: {{matchLabels: {{import-test: {ns}}}}}\n  path: /acme/\n  adoption: true\n  allowedGroups: [Devs]\n  allowedPolicyArns: ['{READ_ONLY}'{extra}]\n"
        ),
    );
}

/// Runs `iam-operator import ARGS` against the emulator; its stdout.
fn import(emulator: &Emulator, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_iam-operator"))
        .arg("import")
        .args(args)
        .env("AWS_ENDPOINT_URL", &emulator.url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("IAM_OPERATOR_CLUSTER_NAME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The account with the operator's owner tags left out, for before/after comparisons.
async fn account(emulator: &Emulator) -> AccountDetails {
    let iam = AwsIam::new(&support::sdk_config(&emulator.url));
    let mut details = iam.account_details().await.unwrap();
    for u in &mut details.users {
        u.tags.remove(OWNER_TAG);
        u.groups.sort();
        u.attached.sort();
        u.inline.sort();
    }
    for g in &mut details.groups {
        g.attached.sort();
        g.inline.sort();
    }
    for p in &mut details.policies {
        p.tags.remove(OWNER_TAG);
    }
    details.users.sort_by(|a, b| a.name.cmp(&b.name));
    details.groups.sort_by(|a, b| a.name.cmp(&b.name));
    details.policies.sort_by(|a, b| a.name.cmp(&b.name));
    details
}

/// The IAM write actions in the emulator's counts, with their counts.
fn write_counts(calls: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    writes(calls)
        .into_iter()
        .map(|k| {
            let n = calls[&k];
            (k, n)
        })
        .collect()
}

/// Imported, applied and adopted: every object Ready, and IAM unchanged but for the one
/// ownership tag per user and policy that adoption writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_account_is_adopted_with_only_ownership_tag_writes() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    populate(&aws).await;
    let ns = cp.namespace("import");
    tenancy(cp, &ns, "");

    // The administrator's consent, with the commands the import prints.
    let consent = import(
        &emulator,
        &["all", "--all", "--namespace", &ns, "--print-consent"],
    );
    let consent: Vec<&str> = consent.lines().collect();
    assert_eq!(consent.len(), 3, "{consent:?}");
    for line in &consent {
        assert!(line.contains(&format!("Value=default/{ns}")), "{line}");
        // Run as the administrator would, through the SDK (no aws CLI here).
        if let Some(user) = line.split("--user-name '").nth(1) {
            let user = user.split('\'').next().unwrap();
            aws.tag_user()
                .user_name(user)
                .tags(
                    aws_sdk_iam::types::Tag::builder()
                        .key(CONSENT_TAG)
                        .value(format!("default/{ns}"))
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        } else {
            let arn = line
                .split("--policy-arn '")
                .nth(1)
                .unwrap()
                .split('\'')
                .next()
                .unwrap();
            aws.tag_policy()
                .policy_arn(arn)
                .tags(
                    aws_sdk_iam::types::Tag::builder()
                        .key(CONSENT_TAG)
                        .value(format!("default/{ns}"))
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
    }
    let before = account(&emulator).await;

    emulator.reset_calls().await;
    let manifests = import(&emulator, &["all", "--all", "--namespace", &ns]);
    let import_calls = emulator.calls().await;
    assert!(
        writes(&import_calls).is_empty(),
        "import wrote to IAM: {import_calls:?}"
    );
    assert!(!import_calls.is_empty(), "import read nothing");
    // The user's name is not a Kubernetes name: mangled, with the IAM name kept.
    assert!(manifests.contains("name: alice-smith"), "{manifests}");
    assert!(manifests.contains("userName: Alice_Smith"), "{manifests}");
    assert!(manifests.contains("groupRef:"), "{manifests}");
    assert!(manifests.contains("policyRef:"), "{manifests}");
    assert_eq!(
        manifests.matches("\n  deletionPolicy: Retain").count(),
        4,
        "{manifests}"
    );

    let op = Operator::start(cp, &emulator.url, &["--watch-namespace", &ns], &[]);
    cp.apply_ok(&manifests);
    wait_ready(cp, &op, &ns, &["iampolicy,iamgroup,iamuser", "--all"], 180);
    // Let a second round of reconciles (status writes wake them) pass before counting.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let calls = emulator.calls().await;
    assert_eq!(
        write_counts(&calls),
        BTreeMap::from([("TagPolicy".to_string(), 2), ("TagUser".to_string(), 1)]),
        "adoption wrote more than the ownership tags: {calls:?}\n{}",
        tail(&op.logs(), 40)
    );
    let after = account(&emulator).await;
    assert_eq!(before, after, "IAM changed beyond the ownership tags");
    let owner = read::user_tags(&aws, "Alice_Smith").await;
    assert!(owner.contains_key(OWNER_TAG), "{owner:?}");
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `import user Alice_Smith --as bob`: a new user with Alice's permissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_user_gets_the_same_permissions() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    populate(&aws).await;
    let ns = cp.namespace("import-as");
    // The copy names the account's policies by ARN: the platform team allows them.
    tenancy(
        cp,
        &ns,
        &format!(", 'arn:aws:iam::{ACCOUNT}:policy/acme/*'"),
    );
    let manifest = import(
        &emulator,
        &["user", "Alice_Smith", "--as", "bob", "--namespace", &ns],
    );
    assert!(!manifest.contains("iam.kubeop.dev/adopt"), "{manifest}");
    let op = Operator::start(cp, &emulator.url, &["--watch-namespace", &ns], &[]);
    cp.apply_ok(&manifest);
    wait_ready(cp, &op, &ns, &["iamuser/bob"], 120);

    assert_eq!(
        read::user_groups(&aws, "bob").await,
        read::user_groups(&aws, "Alice_Smith").await
    );
    assert_eq!(
        read::user_policies(&aws, "bob").await,
        read::user_policies(&aws, "Alice_Smith").await
    );
    assert_eq!(read::user_policies(&aws, "bob").await.len(), 2);
    assert_eq!(
        read::user_inline_doc(&aws, "bob", "extra").await,
        read::user_inline_doc(&aws, "Alice_Smith", "extra").await
    );
    assert_eq!(
        read::user_boundary(&aws, "bob").await,
        Some(format!("arn:aws:iam::{ACCOUNT}:policy/acme/team-boundary"))
    );
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `kubectl wait --for=condition=Ready` on `targets` in `ns`; on failure, the objects and
/// the operator's log.
fn wait_ready(cp: &ControlPlane, op: &Operator, ns: &str, targets: &[&str], timeout_secs: u64) {
    let timeout = format!("--timeout={timeout_secs}s");
    let mut args = vec!["wait", "--for=condition=Ready", "-n", ns, timeout.as_str()];
    args.extend_from_slice(targets);
    let out = kubectl_with_operator(cp, op, &args);
    if !out.status.success() {
        let state = cp.kubectl(&["get", "iam", "-n", ns, "-o", "yaml"]);
        panic!(
            "waiting for Ready failed: {}{}\n--- objects ---\n{}\n--- operator log (tail) ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&state.stdout),
            tail(&op.logs(), 80)
        );
    }
}
