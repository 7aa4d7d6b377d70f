//! Chaos: the operator is killed (SIGKILL) at random moments while many objects are
//! created, updated, rotated and deleted; after the kills it must converge to exactly what
//! the specs ask for (see `support::invariants`).
//!
//! Short form (CI): `CHAOS_KILLS` kills (default 15). Long form: `CHAOS_LONG=1` kills until
//! at least 200 kills landed mid-reconcile. `CHAOS_SEED` replays a run (the seed is printed).
//!
//! A kill *lands mid-reconcile* when an IAM write of the operator had reached the emulator
//! and had not been answered when SIGKILL was sent. The emulator delays every IAM request
//! by a fixed round trip (`LATENCY`, half before it is handled, half after) and counts
//! each request on arrival; the test reads the write count at `t0`, again just before the
//! kill, and kills. A write counted in between arrived after `t0`; if the kill was sent
//! less than `LATENCY` after `t0`, that write had not been answered (not even performed:
//! the first half of the delay comes before moto handles it). The operator writes to IAM
//! only inside reconciles (create/update) and finalizer cleanups (delete), so such a kill
//! interrupted one. The emulator still performs the write, whose answer nobody reads: a
//! lost response, as with a crash against AWS.

mod support;

use iam_operator::api::{IamGroup, IamPolicy, IamUser, ROTATE_KEY_ANNOTATION};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator};
use support::invariants::{self, Deleted, Expect};

/// Round trip of every IAM request while the operator is being killed.
const LATENCY: Duration = Duration::from_millis(600);
/// Between the two reads of the write count.
const WINDOW: Duration = Duration::from_millis(450);
const CONVERGE: Duration = Duration::from_secs(240);
const BASE_POLICIES: usize = 4;
const GROUPS: usize = 3;
const MAX_LIVE_USERS: usize = 12;
const ACTIONS: [&str; 6] = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "sqs:SendMessage",
    "sns:Publish",
    "ec2:DescribeInstances",
];

fn doc(action: &str) -> Value {
    support::allow(json!(action))
}

fn pick(rng: &mut StdRng, items: &[String], max: usize) -> Vec<String> {
    let n = rng.random_range(0..=max.min(items.len()));
    let mut v: Vec<String> = items.choose_multiple(rng, n).cloned().collect();
    v.sort();
    v
}

struct Chaos {
    client: kube::Client,
    ns: String,
    rng: StdRng,
    users: Vec<String>,
    temps: Vec<String>,
    next: usize,
    deleted: Vec<Deleted>,
    ops: std::collections::BTreeMap<&'static str, u32>,
}

impl Chaos {
    fn ssa() -> PatchParams {
        PatchParams::apply("chaos-test").force()
    }

    async fn policy(&mut self, name: &str, retain: bool) {
        let action = *ACTIONS.choose(&mut self.rng).unwrap();
        let mut spec = json!({"document": doc(action)});
        if retain {
            spec["deletionPolicy"] = json!("Retain");
        }
        let obj = json!({"apiVersion": "iam.kubeop.dev/v1alpha1", "kind": "IamPolicy",
            "metadata": {"name": name}, "spec": spec});
        let api: Api<IamPolicy> = Api::namespaced(self.client.clone(), &self.ns);
        api.patch(name, &Self::ssa(), &Patch::Apply(&obj))
            .await
            .unwrap();
    }

    async fn group(&mut self, name: &str) {
        let names: Vec<String> = (0..BASE_POLICIES).map(|i| format!("p{i}")).collect();
        let policies: Vec<Value> = pick(&mut self.rng, &names, 2)
            .into_iter()
            .map(|p| json!({"policyRef": {"name": p}}))
            .collect();
        let action = *ACTIONS.choose(&mut self.rng).unwrap();
        let obj = json!({"apiVersion": "iam.kubeop.dev/v1alpha1", "kind": "IamGroup",
            "metadata": {"name": name},
            "spec": {"policies": policies, "inlinePolicies": [{"name": "g", "document": doc(action)}]}});
        let api: Api<IamGroup> = Api::namespaced(self.client.clone(), &self.ns);
        api.patch(name, &Self::ssa(), &Patch::Apply(&obj))
            .await
            .unwrap();
    }

    /// Creates or changes a user: groups, policies and inline policy drawn at random.
    async fn user(&mut self, name: &str, retain: bool) {
        let groups: Vec<String> = (0..GROUPS).map(|i| format!("g{i}")).collect();
        let groups: Vec<Value> = pick(&mut self.rng, &groups, 2)
            .into_iter()
            .map(|g| json!({"groupRef": {"name": g}}))
            .collect();
        let names: Vec<String> = (0..BASE_POLICIES).map(|i| format!("p{i}")).collect();
        let policies: Vec<Value> = pick(&mut self.rng, &names, 2)
            .into_iter()
            .map(|p| json!({"policyRef": {"name": p}}))
            .collect();
        let action = *ACTIONS.choose(&mut self.rng).unwrap();
        let mut spec = json!({"groups": groups, "policies": policies,
            "inlinePolicies": [{"name": "own", "document": doc(action)}],
            "accessKey": {"enabled": true, "gracePeriod": "1h"}});
        if retain {
            spec["deletionPolicy"] = json!("Retain");
        }
        let obj = json!({"apiVersion": "iam.kubeop.dev/v1alpha1", "kind": "IamUser",
            "metadata": {"name": name}, "spec": spec});
        let api: Api<IamUser> = Api::namespaced(self.client.clone(), &self.ns);
        api.patch(name, &Self::ssa(), &Patch::Apply(&obj))
            .await
            .unwrap();
    }

    /// Whether the user was created with `deletionPolicy: Retain` (kept across updates).
    async fn retains(&self, name: &str) -> bool {
        let api: Api<IamUser> = Api::namespaced(self.client.clone(), &self.ns);
        api.get(name).await.unwrap().spec.deletion_policy
            == Some(iam_operator::api::DeletionPolicy::Retain)
    }

    /// Deletes a user; what must become of its IAM user.
    async fn delete_user(&self, name: &str) -> Deleted {
        let api: Api<IamUser> = Api::namespaced(self.client.clone(), &self.ns);
        let u = api.get(name).await.unwrap();
        api.delete(name, &DeleteParams::default()).await.unwrap();
        Deleted {
            kind: "IamUser",
            iam_name: name.to_string(),
            retained: u.spec.deletion_policy == Some(iam_operator::api::DeletionPolicy::Retain),
            created: u.status.and_then(|s| s.arn).is_some(),
        }
    }

    /// Deletes a policy; what must become of its IAM policy.
    async fn delete_policy(&self, name: &str) -> Deleted {
        let api: Api<IamPolicy> = Api::namespaced(self.client.clone(), &self.ns);
        let p = api.get(name).await.unwrap();
        api.delete(name, &DeleteParams::default()).await.unwrap();
        Deleted {
            kind: "IamPolicy",
            iam_name: name.to_string(),
            retained: p.spec.deletion_policy == Some(iam_operator::api::DeletionPolicy::Retain),
            created: p.status.and_then(|s| s.arn).is_some(),
        }
    }

    /// One random change to the namespace's objects.
    async fn step(&mut self, cycle: usize) {
        let op = *[
            "create-user",
            "create-user",
            "update-user",
            "rotate",
            "rotate",
            "delete-user",
            "update-policy",
            "update-group",
            "create-temp-policy",
            "delete-temp-policy",
        ]
        .choose(&mut self.rng)
        .unwrap();
        let op = match op {
            "create-user" if self.users.len() >= MAX_LIVE_USERS => "delete-user",
            "update-user" | "rotate" | "delete-user" if self.users.is_empty() => "create-user",
            "delete-temp-policy" if self.temps.is_empty() => "create-temp-policy",
            other => other,
        };
        match op {
            "create-user" => {
                let name = format!("u{}", self.next);
                self.next += 1;
                let retain = self.rng.random_bool(0.25);
                self.user(&name, retain).await;
                self.users.push(name);
            }
            "update-user" => {
                let name = self.users.choose(&mut self.rng).unwrap().clone();
                let retain = self.retains(&name).await;
                self.user(&name, retain).await;
            }
            "rotate" => {
                let name = self.users.choose(&mut self.rng).unwrap().clone();
                let patch = json!({"metadata": {"annotations": {ROTATE_KEY_ANNOTATION: format!("c{cycle}")}}});
                let api: Api<IamUser> = Api::namespaced(self.client.clone(), &self.ns);
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
            }
            "delete-user" => {
                let i = self.rng.random_range(0..self.users.len());
                let name = self.users.remove(i);
                let d = self.delete_user(&name).await;
                self.deleted.push(d);
            }
            "update-policy" => {
                let name = format!("p{}", self.rng.random_range(0..BASE_POLICIES));
                self.policy(&name, false).await;
            }
            "update-group" => {
                let name = format!("g{}", self.rng.random_range(0..GROUPS));
                self.group(&name).await;
            }
            "create-temp-policy" => {
                let name = format!("t{}", self.next);
                self.next += 1;
                let retain = self.rng.random_bool(0.3);
                self.policy(&name, retain).await;
                self.temps.push(name);
            }
            _ => {
                let i = self.rng.random_range(0..self.temps.len());
                let name = self.temps.remove(i);
                let d = self.delete_policy(&name).await;
                self.deleted.push(d);
            }
        }
        *self.ops.entry(op).or_default() += 1;
    }
}

/// IAM writes the emulator has received so far (every request counts on arrival).
async fn writes(emu: &support::emulator::Emulator) -> u64 {
    emu.calls()
        .await
        .iter()
        .filter(|(a, _)| !a.starts_with("Get") && !a.starts_with("List"))
        .map(|(_, n)| n)
        .sum()
}

async fn network(emu: &support::emulator::Emulator, body: Value) {
    reqwest::Client::new()
        .post(format!("{}/_emulator/network", emu.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kills_during_create_update_rotate_delete_converge_to_the_specs() {
    let long = std::env::var("CHAOS_LONG").is_ok_and(|v| v == "1");
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    // Long form: until this many kills landed mid-reconcile (at most 3× as many kills).
    let landed_target = if long { 200 } else { 0 };
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("chaos: seed {seed} (replay with CHAOS_SEED={seed}), long form: {long}");

    let cp = ControlPlane::shared();
    let ns = cp.namespace("chaos");
    let client = cp.client().await;
    let (emu, creds) = invariants::authenticated_emulator(1).await;
    let admin = creds[0].clone();
    let iam = aws_sdk_iam::Client::new(&invariants::signed_config(&emu.url, &admin));
    let envs = [
        ("AWS_ACCESS_KEY_ID", admin.0.as_str()),
        ("AWS_SECRET_ACCESS_KEY", admin.1.as_str()),
    ];
    let args = ["--watch-namespace", ns.as_str()];
    let mut chaos = Chaos {
        client: client.clone(),
        ns: ns.clone(),
        rng: StdRng::seed_from_u64(seed),
        users: Vec::new(),
        temps: Vec::new(),
        next: 0,
        deleted: Vec::new(),
        ops: Default::default(),
    };
    for i in 0..BASE_POLICIES {
        chaos.policy(&format!("p{i}"), false).await;
    }
    for i in 0..GROUPS {
        chaos.group(&format!("g{i}")).await;
    }
    for _ in 0..4 {
        chaos.step(0).await;
    }

    network(&emu, json!({"latency": {"ms": LATENCY.as_millis() as u64}})).await;
    let started = Instant::now();
    let (mut killed, mut landed, mut cycles) = (0usize, 0usize, 0usize);
    loop {
        let done = if long {
            landed >= landed_target || cycles >= 3 * landed_target
        } else {
            cycles >= kills
        };
        if done {
            break;
        }
        cycles += 1;
        for _ in 0..chaos.rng.random_range(2..=6) {
            chaos.step(cycles).await;
        }
        let mut op = Operator::start(cp, &emu.url, &args, &envs);
        let wait = Duration::from_millis(chaos.rng.random_range(500..3000));
        tokio::time::sleep(wait).await;
        let t0 = Instant::now();
        let before = writes(&emu).await;
        tokio::time::sleep(WINDOW).await;
        let after = writes(&emu).await;
        assert!(
            op.kill(),
            "cycle {cycles}: the operator was not running (it exited on its own)"
        );
        let since = t0.elapsed();
        killed += 1;
        let mid = after > before && since < LATENCY;
        if mid {
            landed += 1;
        }
        if long && cycles % 20 == 0 {
            println!(
                "chaos: {cycles} kills, {landed} mid-reconcile, {:?}",
                started.elapsed()
            );
        }
    }
    let killing = started.elapsed();
    println!(
        "chaos: {killed} kills in {killing:?}, {landed} landed mid-reconcile (an IAM write in flight), ops {:?}",
        chaos.ops
    );

    // Converge without latency and without kills.
    network(&emu, json!({"latency": null})).await;
    let op = Operator::start(cp, &emu.url, &args, &envs);
    let converging = Instant::now();
    let expect = Expect {
        client: &client,
        ns: &ns,
        iam: &iam,
        emulator_url: &emu.url,
        authenticated: true,
        deleted: &chaos.deleted,
    };
    let mut violations = expect.violations().await;
    while !violations.is_empty() && converging.elapsed() < CONVERGE {
        tokio::time::sleep(Duration::from_secs(2)).await;
        violations = expect.violations().await;
    }
    assert!(
        violations.is_empty(),
        "not converged after {CONVERGE:?} (seed {seed}):\n{}\ndeleted: {:?}",
        violations.join("\n"),
        chaos.deleted
    );
    let live = chaos.users.len();
    println!(
        "chaos: converged in {:?}: {live} live users, {} temp policies, {} deletions ({} retained); invariants hold",
        converging.elapsed(),
        chaos.temps.len(),
        chaos.deleted.len(),
        chaos.deleted.iter().filter(|d| d.retained).count()
    );

    // Everything deleted with the operator running: nothing left but the retained.
    for name in chaos.users.clone() {
        let d = chaos.delete_user(&name).await;
        chaos.deleted.push(d);
    }
    let groups: Api<IamGroup> = Api::namespaced(client.clone(), &ns);
    for i in 0..GROUPS {
        let name = format!("g{i}");
        groups
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        chaos.deleted.push(Deleted {
            kind: "IamGroup",
            iam_name: name,
            retained: false,
            created: true,
        });
    }
    for name in (0..BASE_POLICIES)
        .map(|i| format!("p{i}"))
        .chain(chaos.temps.clone())
    {
        let d = chaos.delete_policy(&name).await;
        chaos.deleted.push(d);
    }
    let expect = Expect {
        client: &client,
        ns: &ns,
        iam: &iam,
        emulator_url: &emu.url,
        authenticated: true,
        deleted: &chaos.deleted,
    };
    let deleting = Instant::now();
    let mut violations = expect.violations().await;
    while !violations.is_empty() && deleting.elapsed() < CONVERGE {
        tokio::time::sleep(Duration::from_secs(2)).await;
        violations = expect.violations().await;
    }
    assert!(
        violations.is_empty(),
        "deleting everything left (seed {seed}):\n{}",
        violations.join("\n")
    );
    println!(
        "chaos: all deleted in {:?}; IAM holds only the retained entities",
        deleting.elapsed()
    );
    if long {
        assert!(
            landed >= landed_target,
            "only {landed} of {killed} kills landed mid-reconcile (seed {seed})"
        );
    } else {
        // The short form must still interrupt reconciles, or it proves nothing.
        assert!(
            landed * 4 >= killed,
            "only {landed} of {killed} kills landed mid-reconcile (seed {seed})"
        );
    }
    drop(op);
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Each check of `support::invariants` catches the breakage it is about: a converged
/// namespace is broken one way at a time behind the (stopped) operator's back, and the
/// violation must be reported, then repaired before the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invariants_catch_each_kind_of_breakage() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("invariants");
    let client = cp.client().await;
    let (emu, creds) = invariants::authenticated_emulator(1).await;
    let admin = creds[0].clone();
    let iam = aws_sdk_iam::Client::new(&invariants::signed_config(&emu.url, &admin));
    let envs = [
        ("AWS_ACCESS_KEY_ID", admin.0.as_str()),
        ("AWS_SECRET_ACCESS_KEY", admin.1.as_str()),
    ];
    let args = ["--watch-namespace", ns.as_str()];
    let mut chaos = Chaos {
        client: client.clone(),
        ns: ns.clone(),
        rng: StdRng::seed_from_u64(7),
        users: Vec::new(),
        temps: Vec::new(),
        next: 0,
        deleted: Vec::new(),
        ops: Default::default(),
    };
    for i in 0..BASE_POLICIES {
        chaos.policy(&format!("p{i}"), false).await;
    }
    for i in 0..GROUPS {
        chaos.group(&format!("g{i}")).await;
    }
    // u0 with a group and a policy; u1 deleted (its IAM user goes); u2 deleted, retained.
    let fixed = |retain: bool| {
        let mut spec = json!({"groups": [{"groupRef": {"name": "g0"}}],
            "policies": [{"policyRef": {"name": "p0"}}],
            "inlinePolicies": [{"name": "own", "document": doc("s3:GetObject")}],
            "accessKey": {"enabled": true}});
        if retain {
            spec["deletionPolicy"] = json!("Retain");
        }
        spec
    };
    let users: Api<IamUser> = Api::namespaced(client.clone(), &ns);
    for (name, retain) in [("u0", false), ("u1", false), ("u2", true)] {
        let obj = json!({"apiVersion": "iam.kubeop.dev/v1alpha1", "kind": "IamUser",
            "metadata": {"name": name}, "spec": fixed(retain)});
        users
            .patch(name, &Chaos::ssa(), &Patch::Apply(&obj))
            .await
            .unwrap();
    }
    let mut op = Operator::start(cp, &emu.url, &args, &envs);
    let check = |deleted: Vec<Deleted>| {
        let (client, ns, iam, url) = (client.clone(), ns.clone(), iam.clone(), emu.url.clone());
        async move {
            Expect {
                client: &client,
                ns: &ns,
                iam: &iam,
                emulator_url: &url,
                authenticated: true,
                deleted: &deleted,
            }
            .violations()
            .await
        }
    };
    let converged = |deleted: Vec<Deleted>| async move {
        let started = Instant::now();
        loop {
            let v = check(deleted.clone()).await;
            if v.is_empty() {
                return;
            }
            assert!(started.elapsed() < CONVERGE, "not converged: {v:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    converged(Vec::new()).await;
    let d1 = chaos.delete_user("u1").await;
    let d2 = chaos.delete_user("u2").await;
    let deleted = vec![d1, d2];
    converged(deleted.clone()).await;
    op.stop();

    /// Asserts that the invariants report a violation containing `needle`.
    async fn caught<F: Future<Output = Vec<String>>>(what: &str, v: F, needle: &str) {
        let v = v.await;
        assert!(
            v.iter().any(|m| m.contains(needle)),
            "{what}: not caught (wanted {needle:?}): {v:?}"
        );
        println!("invariants: {what}: caught ({})", v.join("; "));
    }
    use std::future::Future;

    // A third key, one not published.
    let extra = iam
        .create_access_key()
        .user_name("u0")
        .send()
        .await
        .unwrap();
    let extra = extra.access_key().unwrap().access_key_id().to_string();
    caught("unpublished key", check(deleted.clone()), "!= published").await;
    iam.delete_access_key()
        .user_name("u0")
        .access_key_id(&extra)
        .send()
        .await
        .unwrap();
    assert_eq!(check(deleted.clone()).await, Vec::<String>::new());

    // A published key that does not sign (its secret garbled in the Secret).
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let good = secrets.get("u0-aws-credentials").await.unwrap();
    let bad = json!({"stringData": {"AWS_SECRET_ACCESS_KEY": "garbled"}});
    secrets
        .patch(
            "u0-aws-credentials",
            &PatchParams::default(),
            &Patch::Merge(&bad),
        )
        .await
        .unwrap();
    caught("unusable credential", check(deleted.clone()), "do not sign").await;
    let restore = json!({"data": good.data});
    secrets
        .patch(
            "u0-aws-credentials",
            &PatchParams::default(),
            &Patch::Merge(&restore),
        )
        .await
        .unwrap();
    assert_eq!(check(deleted.clone()).await, Vec::<String>::new());

    // Membership, attachment and inline policy changed out of band.
    iam.remove_user_from_group()
        .user_name("u0")
        .group_name("g0")
        .send()
        .await
        .unwrap();
    caught("lost membership", check(deleted.clone()), "groups").await;
    iam.add_user_to_group()
        .user_name("u0")
        .group_name("g0")
        .send()
        .await
        .unwrap();
    let p0 = format!("arn:aws:iam::{}:policy/p0", invariants::ACCOUNT);
    iam.detach_user_policy()
        .user_name("u0")
        .policy_arn(&p0)
        .send()
        .await
        .unwrap();
    caught("detached policy", check(deleted.clone()), "attached").await;
    iam.attach_user_policy()
        .user_name("u0")
        .policy_arn(&p0)
        .send()
        .await
        .unwrap();
    let put_inline = |action: &'static str| {
        let iam = iam.clone();
        async move {
            iam.put_user_policy()
                .user_name("u0")
                .policy_name("own")
                .policy_document(doc(action).to_string())
                .send()
                .await
                .unwrap();
        }
    };
    put_inline("s3:PutObject").await;
    caught("edited inline policy", check(deleted.clone()), "inline").await;
    put_inline("s3:GetObject").await;
    assert_eq!(check(deleted.clone()).await, Vec::<String>::new());

    // An IAM entity nobody asked for; a deleted one back; a retained one gone.
    iam.create_user().user_name("stray").send().await.unwrap();
    caught("stray user", check(deleted.clone()), "stray").await;
    iam.delete_user().user_name("stray").send().await.unwrap();
    iam.create_user().user_name("u1").send().await.unwrap();
    caught("deleted user still in IAM", check(deleted.clone()), "u1").await;
    iam.delete_user().user_name("u1").send().await.unwrap();
    let mut forgot = deleted.clone();
    forgot[1].retained = false;
    caught("retained user counted as deleted", check(forgot), "u2").await;
    assert_eq!(check(deleted.clone()).await, Vec::<String>::new());

    // A policy document changed out of band.
    iam.create_policy_version()
        .policy_arn(&p0)
        .policy_document(doc("iam:PassRole").to_string())
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    caught(
        "changed policy document",
        check(deleted.clone()),
        "IAM document",
    )
    .await;

    // A finalizer stuck on a deleted object.
    let hold =
        json!({"metadata": {"finalizers": ["iam.kubeop.dev/finalizer", "test.kubeop.dev/hold"]}});
    users
        .patch("u0", &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .unwrap();
    users.delete("u0", &Default::default()).await.unwrap();
    caught(
        "finalizer stuck",
        check(deleted.clone()),
        "still terminating",
    )
    .await;
    let release = json!({"metadata": {"finalizers": ["iam.kubeop.dev/finalizer"]}});
    users
        .patch("u0", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    // The operator finishes the deletion and repairs the policy document.
    let op = Operator::start(cp, &emu.url, &args, &envs);
    let mut all = deleted.clone();
    all.push(Deleted {
        kind: "IamUser",
        iam_name: "u0".into(),
        retained: false,
        created: true,
    });
    converged(all).await;
    drop(op);
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
