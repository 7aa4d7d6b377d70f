//! What the operator's watches wake, and what they must not, proven against the real
//! operator binary running with its default resync (1h): nothing here can be explained by a
//! periodic retry.
//!
//! The operator re-checks an object waiting on a dependency after min(resync, 60 s) = 60 s
//! and scans IAM for drift every 5 minutes. Each "woken by a watch" test therefore demands
//! convergence within [`WOKEN_WITHIN`] of its trigger, which only the watch can deliver;
//! each "wakes nothing" test first proves that the reconcile it waits for has run, then
//! counts reconciles (from the operator's metrics) over a quiet period.

mod support;

use iam_operator::api::{IamGroup, IamPolicy, IamUser};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Resource;
use kube::api::{Api, DeleteParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator};
use support::emulator::Emulator;
use support::read;

/// How soon after its trigger a watch must have delivered: far below the 60 s after which
/// the operator re-checks a waiting object by itself, and the 1 h resync.
const WOKEN_WITHIN: Duration = Duration::from_secs(20);
/// How long an object's first reconciles may take to make it Ready.
const SETTLE: Duration = Duration::from_secs(60);
/// How long a spurious reconcile has to show up. One woken by a watch event runs within a
/// second of the write that caused it.
const QUIET: Duration = Duration::from_secs(10);
/// Reconciles it takes a new object to be Ready: the first adds the finalizer, the change
/// of finalizers wakes the second, which does the work and writes status.
const RECONCILES_TO_READY: u64 = 2;

/// One test's world: its namespace, its emulator, and an operator watching only that
/// namespace, with the default resync.
struct Env {
    cp: &'static ControlPlane,
    ns: String,
    client: kube::Client,
    aws: aws_sdk_iam::Client,
    op: Operator,
    /// Kept running for the operator (and its stderr printed if the test fails).
    _emulator: Emulator,
}

impl Env {
    async fn start(prefix: &str) -> Self {
        let cp = ControlPlane::shared();
        let emulator = Emulator::start();
        let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
        let ns = cp.namespace(prefix);
        let op = Operator::start(cp, &emulator.url, &["--watch-namespace", &ns], &[]);
        let client = cp.client().await;
        Env {
            cp,
            ns,
            client,
            aws,
            op,
            _emulator: emulator,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn apply(&self, manifest: &str) {
        let out = self.cp.apply(manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{manifest}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Polls `f` every 200 ms until it yields a value; fails after `timeout` with `what`,
    /// the objects' state and whether the operator still runs (its log is printed on drop).
    async fn within<T, F, Fut>(&self, what: &str, timeout: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if Instant::now() > deadline {
                let state = self
                    .cp
                    .kubectl(&["get", "iam", "-n", &self.ns, "-o", "yaml"]);
                panic!(
                    "not within {timeout:?}: {what} (operator exited: {})\n--- objects ---\n{}",
                    self.op.exited(),
                    String::from_utf8_lossy(&state.stdout)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The object once its Ready condition matches `status` (and `reason`, if given).
    async fn wait_condition<K>(
        &self,
        name: &str,
        status: &str,
        reason: Option<&str>,
        timeout: Duration,
    ) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + DeserializeOwned
            + Serialize,
    {
        let api = self.api::<K>();
        let what = format!(
            "{} {name} Ready={status}{}",
            K::kind(&()),
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        self.within(&what, timeout, || async {
            let obj = api.get_opt(name).await.unwrap()?;
            let ready = ready_condition(&obj)?;
            (ready["status"] == status && reason.is_none_or(|r| ready["reason"] == r))
                .then_some(obj)
        })
        .await
    }

    /// Waits until the object is Ready for its current generation: its last reconcile
    /// finished and saw IAM match its spec.
    async fn wait_ready<K>(&self, name: &str, timeout: Duration) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + DeserializeOwned
            + Serialize,
    {
        self.wait_condition(name, "True", None, timeout).await
    }

    /// Waits until the operator has finished `expected` reconciles of `kind`, then checks
    /// that it does no more for [`QUIET`]; fails on the first extra one.
    async fn reconciles_stay(&self, kind: &str, expected: u64, why: &str) {
        let what = format!("{expected} reconciles of {kind} counted");
        let seen = self
            .within(&what, SETTLE, || async {
                let n = self.op.reconciles(kind);
                (n >= expected).then_some(n)
            })
            .await;
        assert_eq!(seen, expected, "{kind} reconciled more often than {why}");
        let quiet_until = Instant::now() + QUIET;
        while Instant::now() < quiet_until {
            let n = self.op.reconciles(kind);
            assert_eq!(
                n, expected,
                "{kind} was reconciled again after {why}, with nothing changed"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The data key of a Secret, if the Secret exists.
    async fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let secret = self.api::<Secret>().get_opt(name).await.unwrap()?;
        let value = secret.data?.remove(key)?;
        Some(String::from_utf8(value.0).unwrap())
    }

    /// Events the operator published about `name` with `reason`.
    async fn events(&self, name: &str, reason: &str) -> Vec<Event> {
        self.api::<Event>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    fn done(self) {
        self.cp
            .kubectl_ok(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

/// The Ready condition of an object, as JSON, if it has one for the object's current
/// generation.
fn ready_condition<K: Resource + Serialize>(obj: &K) -> Option<serde_json::Value> {
    let value = serde_json::to_value(obj).unwrap();
    let generation = value["metadata"]["generation"].as_i64();
    value["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["observedGeneration"].as_i64() == generation)
        .cloned()
}

fn user_manifest(ns: &str, name: &str, iam_name: &str, spec: &str) -> String {
    format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  userName: {iam_name}\n{spec}"
    )
}

fn group_manifest(ns: &str, name: &str, iam_name: &str, spec: &str) -> String {
    format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamGroup\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  groupName: {iam_name}\n{spec}"
    )
}

fn policy_manifest(ns: &str, name: &str, iam_name: &str) -> String {
    format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  policyName: {iam_name}\n  document:\n    Version: \"2012-10-17\"\n    Statement: [{{Effect: Allow, Action: \"s3:GetObject\", Resource: \"*\"}}]\n"
    )
}

/// Asserts that a dependent object that waits for `dependency` became Ready within
/// [`WOKEN_WITHIN`] of the dependency, and well before the operator's own 60 s re-check of
/// a waiting object.
async fn woken_by_dependency<D, K>(env: &Env, dependent: &str, dependency: &str, manifest: &str)
where
    D: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize,
{
    let waiting: D = env
        .wait_condition(dependent, "False", Some("DependencyNotReady"), SETTLE)
        .await;
    // The reconcile that found it waiting is done; from it, the operator would look again
    // by itself only after 60 s.
    let seen_waiting = Instant::now();
    let ready = ready_condition(&waiting).unwrap();
    let message = ready["message"].as_str().unwrap_or_default();
    let kind = K::kind(&());
    assert!(
        message.contains(kind.as_ref()) && message.contains(dependency),
        "the message should name the missing {kind} {dependency}: {message}"
    );

    env.apply(manifest);
    env.wait_ready::<K>(dependency, Duration::from_secs(30))
        .await;
    let dependency_ready = Instant::now();
    env.wait_ready::<D>(dependent, WOKEN_WITHIN).await;
    let woken_after = dependency_ready.elapsed();
    let since_waiting = seen_waiting.elapsed();
    assert!(
        since_waiting < Duration::from_secs(55),
        "Ready {since_waiting:?} after waiting: the operator's 60 s re-check could explain it"
    );
    eprintln!(
        "{} {dependent} Ready {woken_after:?} after {kind} {dependency}, {since_waiting:?} after it waited",
        D::kind(&())
    );
}

/// An IamUser waiting for its group is woken by the IamGroup watch as soon as the group is
/// Ready, not by a periodic re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_waiting_for_its_group_is_woken_when_the_group_is_ready() {
    let env = Env::start("wake-group").await;
    let (group, user) = (format!("{}-late", env.ns), format!("{}-dave", env.ns));
    env.apply(&user_manifest(
        &env.ns,
        "dave",
        &user,
        "  groups: [{groupRef: {name: late-group}}]\n",
    ));
    woken_by_dependency::<IamUser, IamGroup>(
        &env,
        "dave",
        "late-group",
        &group_manifest(&env.ns, "late-group", &group, ""),
    )
    .await;
    assert_eq!(
        read::group_members(&env.aws, &group).await,
        BTreeSet::from([user])
    );
    env.done();
}

/// An IamGroup waiting for its policy is woken by the IamPolicy watch as soon as the policy
/// is Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_waiting_for_its_policy_is_woken_when_the_policy_is_ready() {
    let env = Env::start("wake-gpol").await;
    let (policy, group) = (format!("{}-late", env.ns), format!("{}-devs", env.ns));
    env.apply(&group_manifest(
        &env.ns,
        "devs",
        &group,
        "  policies: [{policyRef: {name: late-policy}}]\n",
    ));
    woken_by_dependency::<IamGroup, IamPolicy>(
        &env,
        "devs",
        "late-policy",
        &policy_manifest(&env.ns, "late-policy", &policy),
    )
    .await;
    assert_eq!(
        read::group_policies(&env.aws, &group).await,
        BTreeSet::from([format!("arn:aws:iam::123456789012:policy/{policy}")])
    );
    env.done();
}

/// An IamUser waiting for a policy it attaches is woken by the IamPolicy watch as soon as
/// the policy is Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_waiting_for_its_policy_is_woken_when_the_policy_is_ready() {
    let env = Env::start("wake-upol").await;
    let (policy, user) = (format!("{}-late", env.ns), format!("{}-erin", env.ns));
    env.apply(&user_manifest(
        &env.ns,
        "erin",
        &user,
        "  policies: [{policyRef: {name: late-policy}}]\n",
    ));
    woken_by_dependency::<IamUser, IamPolicy>(
        &env,
        "erin",
        "late-policy",
        &policy_manifest(&env.ns, "late-policy", &policy),
    )
    .await;
    assert_eq!(
        read::user_policies(&env.aws, &user).await,
        BTreeSet::from([format!("arn:aws:iam::123456789012:policy/{policy}")])
    );
    env.done();
}

/// Deleting an IamUser's access-key Secret wakes the user through the Secret watch: a new
/// key is published in a new Secret and the lost one is deleted in IAM, long before any
/// resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_secret_is_replaced_and_its_key_deleted_through_the_secret_watch() {
    let env = Env::start("lost-secret").await;
    let user = format!("{}-frank", env.ns);
    env.apply(&user_manifest(
        &env.ns,
        "frank",
        &user,
        "  accessKey: {enabled: true}\n",
    ));
    env.wait_ready::<IamUser>("frank", SETTLE).await;
    let secret = "frank-aws-credentials";
    let lost = env
        .secret_value(secret, "AWS_ACCESS_KEY_ID")
        .await
        .expect("the key's Secret once the user is Ready");
    let keys = read::access_keys(&env.aws, &user).await;
    assert!(
        keys.len() == 1 && keys.contains_key(&lost),
        "IAM should hold just the published key {lost}: {keys:?}"
    );

    env.api::<Secret>()
        .delete(secret, &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    let published = env
        .within(
            "a new key in a new Secret, the lost one deleted in IAM",
            WOKEN_WITHIN,
            || async {
                let id = env.secret_value(secret, "AWS_ACCESS_KEY_ID").await?;
                let keys = read::access_keys(&env.aws, &user).await;
                (id != lost && keys.len() == 1 && keys.contains_key(&id)).then_some(id)
            },
        )
        .await;
    eprintln!(
        "key {lost} replaced by {published} {:?} after its Secret was deleted",
        deleted.elapsed()
    );
    // The reconcile that replaced it says so once it is done.
    env.within(
        "an AccessKeyReplaced event naming the new key and the lost one",
        WOKEN_WITHIN,
        || async {
            env.events("frank", "AccessKeyReplaced")
                .await
                .into_iter()
                .filter_map(|e| e.note)
                .find(|n| n.contains(&published) && n.contains(&lost))
        },
    )
    .await;
    env.done();
}

/// Publishing an access key writes a Secret the operator watches; that write of its own,
/// and the user's own status writes, must not wake the user again. (A Secret event that
/// reaches the watch before the write's own response has been recorded is not recognised
/// as the operator's own: that race shows here as a third reconcile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_secret_and_status_writes_wake_no_second_reconcile() {
    let env = Env::start("own-writes").await;
    let user = format!("{}-gina", env.ns);
    env.apply(&user_manifest(
        &env.ns,
        "gina",
        &user,
        "  accessKey: {enabled: true}\n",
    ));
    // The reconcile that published the key has finished: Ready for this generation, the
    // event it publishes last is out, and the Secret it wrote holds the key.
    env.wait_ready::<IamUser>("gina", SETTLE).await;
    let published = env
        .within("the AccessKeyPublished event", SETTLE, || async {
            env.events("gina", "AccessKeyPublished").await.pop()
        })
        .await;
    let key = env
        .secret_value("gina-aws-credentials", "AWS_ACCESS_KEY_ID")
        .await
        .expect("the key's Secret");
    assert!(
        published.note.as_deref().unwrap_or_default().contains(&key),
        "{published:?}"
    );
    env.reconciles_stay(
        "IamUser",
        RECONCILES_TO_READY,
        "the one that wrote its Secret and status",
    )
    .await;
    assert_eq!(
        read::access_keys(&env.aws, &user)
            .await
            .into_keys()
            .collect::<Vec<_>>(),
        [key]
    );
    env.done();
}

/// An object's own status writes (Ready, and the intents a group journals while it works)
/// wake nothing: a policy and a group are each reconciled just as often as it takes to make
/// them Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_status_writes_wake_no_second_reconcile() {
    let env = Env::start("own-status").await;
    let (policy, group) = (format!("{}-reader", env.ns), format!("{}-ops", env.ns));
    env.apply(&format!(
        "{}---\n{}",
        policy_manifest(&env.ns, "reader", &policy),
        group_manifest(
            &env.ns,
            "ops",
            &group,
            "  policies: [{arn: \"arn:aws:iam::aws:policy/ReadOnlyAccess\"}]\n",
        )
    ));
    env.wait_ready::<IamPolicy>("reader", SETTLE).await;
    env.wait_ready::<IamGroup>("ops", SETTLE).await;
    env.reconciles_stay(
        "IamPolicy",
        RECONCILES_TO_READY,
        "the one that wrote its status",
    )
    .await;
    env.reconciles_stay(
        "IamGroup",
        RECONCILES_TO_READY,
        "the one that wrote its status",
    )
    .await;
    assert!(read::group_exists(&env.aws, &group).await);
    env.done();
}

/// A tenancy policy changed later applies to existing objects at once: its watch wakes
/// them. Here keys are withdrawn from a namespace whose user holds one; then the
/// namespace's label is removed, and the namespace watch puts it back under the flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tenancy_policy_applies_to_existing_objects_at_once() {
    let env = Env::start("tenancy").await;
    let ns = env.ns.clone();
    env.cp
        .kubectl_ok(&["label", "namespace", &ns, &format!("tenancy-test={ns}")]);
    let policy = |keys: bool| {
        format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamTenancyPolicy\nmetadata: {{name: {ns}}}\nspec:\n  namespaceSelector: {{matchLabels: {{tenancy-test: {ns}}}}}\n  path: /\n  accessKeys: {keys}\n"
        )
    };
    env.apply(&policy(true));
    let user = format!("{ns}-tia");
    env.apply(&format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata: {{name: tia, namespace: {ns}}}\nspec:\n  userName: {user}\n  accessKey: {{enabled: true}}\n"
    ));
    env.wait_ready::<IamUser>("tia", SETTLE).await;
    assert_eq!(read::access_keys(&env.aws, &user).await.len(), 1);

    env.apply(&policy(false));
    let changed = Instant::now();
    env.within(
        "the key withdrawn by the changed tenancy policy",
        WOKEN_WITHIN,
        || async {
            read::access_keys(&env.aws, &user)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let stalled = env
        .wait_condition::<IamUser>("tia", "False", Some("InvalidSpec"), WOKEN_WITHIN)
        .await;
    let message = ready_condition(&stalled).unwrap()["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap_or_default()
            .contains("access keys not allowed"),
        "{message}"
    );
    assert!(changed.elapsed() < WOKEN_WITHIN);

    // The namespace's label removed: no policy selects it any more, the operator's flags
    // (keys allowed) apply, and the namespace watch makes that take effect at once.
    env.cp
        .kubectl_ok(&["label", "namespace", &ns, "tenancy-test-"]);
    env.within(
        "a key issued under the flags after the relabel",
        WOKEN_WITHIN,
        || async { (read::access_keys(&env.aws, &user).await.len() == 1).then_some(()) },
    )
    .await;
    env.wait_ready::<IamUser>("tia", WOKEN_WITHIN).await;
    env.cp.kubectl_ok(&["delete", "iamtenancypolicy", &ns]);
    env.done();
}
