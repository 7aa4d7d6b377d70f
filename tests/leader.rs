//! Leader election against the real API server's Lease objects, and two operator processes
//! handing leadership over while one of them is paused.

mod support;

use iam_operator::api::IamPolicy;
use iam_operator::leader::{Elector, LeaseConfig};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator};
use support::emulator::Emulator;
use support::eventually;

const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(300);

fn config(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: ns.into(),
        name: "iam-operator".into(),
        identity: identity.into(),
        lease_duration: LEASE,
        renew_deadline: RENEW,
        retry_period: RETRY,
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("iam-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_a_lease_duration_unchanged_or_release() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("leader");
    let client = cp.client().await;
    let a = Elector::new(client.clone(), config(&ns, "a"));
    let b = Elector::new(client.clone(), config(&ns, "b"));
    assert!(a.try_acquire().await.unwrap());
    assert!(a.guard().holds());
    assert!(
        !b.try_acquire().await.unwrap(),
        "a second leader while the lease is fresh"
    );
    assert!(!b.guard().holds());
    assert!(a.try_acquire().await.unwrap(), "the leader renews");
    let renewed = Instant::now();

    // a stops renewing: b takes over once it has seen a's last record unchanged for a lease
    // duration, and not before; by then a's guard has long lapsed.
    let took = eventually("b to take over", Duration::from_secs(30), || async {
        b.try_acquire().await.unwrap().then(|| renewed.elapsed())
    })
    .await;
    assert!(took >= LEASE, "b took over after {took:?}");
    assert!(b.guard().holds());
    assert!(!a.guard().holds(), "a's guard outlived its renew deadline");
    assert!(!a.try_acquire().await.unwrap(), "a came back");
    assert!(!a.guard().holds());

    // Release hands over at once, and ends the releaser's guard.
    b.release().await;
    assert!(!b.guard().holds());
    assert!(a.try_acquire().await.unwrap());
    assert!(a.guard().holds());
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A renewTime far in the past (another node's clock is behind, or was) does not make the
/// lease free: the candidate still waits a lease duration of its own clock.
#[tokio::test]
async fn a_stale_renew_time_is_not_taken_for_expiry() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("leader-skew");
    let client = cp.client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let long_ago = MicroTime(Timestamp::from_second(946_684_800).unwrap()); // 2000-01-01
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some("iam-operator".into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some("elsewhere".into()),
                    lease_duration_seconds: Some(3),
                    acquire_time: Some(long_ago.clone()),
                    renew_time: Some(long_ago),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap();
    let b = Elector::new(client.clone(), config(&ns, "b"));
    let first_seen = Instant::now();
    assert!(
        !b.try_acquire().await.unwrap(),
        "took a lease judged by the holder's renewTime"
    );
    let took = eventually("b to take over", Duration::from_secs(30), || async {
        b.try_acquire().await.unwrap().then(|| first_seen.elapsed())
    })
    .await;
    assert!(took >= LEASE, "b took over after {took:?}");
    let lease = leases.get("iam-operator").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.lease_transitions, Some(1));
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The leader notices within a retry period that another replica holds the lease, and its
/// guard stops holding.
#[tokio::test]
async fn hold_returns_and_revokes_the_guard_when_another_replica_holds_the_lease() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("leader-hold");
    let client = cp.client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let a = Elector::new(client.clone(), config(&ns, "a"));
    assert!(a.try_acquire().await.unwrap());
    let mut lease = leases.get("iam-operator").await.unwrap();
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("usurper".into());
    }
    leases
        .replace("iam-operator", &PostParams::default(), &lease)
        .await
        .unwrap();
    tokio::time::timeout(RETRY + RENEW, a.hold())
        .await
        .expect("hold() did not return");
    assert!(!a.guard().holds());
    assert_eq!(holder(&leases).await.as_deref(), Some("usurper"));
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A TCP relay to the API server that can be cut like a network partition: from then on
/// no byte passes in either direction and new connections hang, so requests neither
/// succeed nor fail until the caller's own timeout.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let flag = flag.clone();
                std::thread::spawn(move || {
                    if flag.load(Ordering::SeqCst) {
                        hang(client);
                    }
                    let Ok(server) = TcpStream::connect(upstream) else {
                        return;
                    };
                    let (client2, server2) =
                        (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let up = flag.clone();
                    std::thread::spawn(move || pipe(client2, server2, &up));
                    pipe(server, client, &flag);
                });
            }
        });
        Relay { addr, cut }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

/// Keeps a connection open and silent until the test process ends.
fn hang(stream: TcpStream) -> ! {
    loop {
        std::thread::park();
        let _ = &stream;
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            hang(to);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The API server's address in the control plane's kubeconfig.
fn api_server(kubeconfig: &Path) -> SocketAddr {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let server = config.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .unwrap();
    server.strip_prefix("https://").unwrap().parse().unwrap()
}

/// A copy of `admin` that reaches the API server through `relay`.
fn kubeconfig_via(admin: &Path, relay: SocketAddr, dir: &Path) -> PathBuf {
    let mut config = kube::config::Kubeconfig::read_from(admin).unwrap();
    for cluster in &mut config.clusters {
        if let Some(c) = cluster.cluster.as_mut() {
            c.server = Some(format!("https://{relay}"));
        }
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// Whether every thread of process `pid` is stopped (state `T` in /proc).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks {
        let Ok(task) = task else { return false };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            return false;
        };
        // "tid (comm) S ...": the state follows the last ')', as comm may hold anything.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state != Some("T") {
            return false;
        }
        any = true;
    }
    any
}

/// A process stopped with SIGSTOP; continued when dropped, so that a failing test still
/// lets it take its SIGTERM.
struct Stopped(Option<u32>);

impl Stopped {
    /// Sends SIGSTOP and returns once every thread of the process has stopped.
    fn stop(pid: u32) -> Stopped {
        signal(pid, "-STOP");
        let stopped = Stopped(Some(pid));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "process {pid} did not stop within 10s of SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        stopped
    }
    fn resume(&mut self) {
        if let Some(pid) = self.0.take() {
            signal(pid, "-CONT");
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }
}

/// The IAM write calls (not `Get*`/`List*`) signed with `key`, by action.
fn writes_of(calls: &BTreeMap<String, BTreeMap<String, u64>>, key: &str) -> BTreeMap<String, u64> {
    calls
        .get(key)
        .map(|actions| {
            actions
                .iter()
                .filter(|(a, _)| !a.starts_with("Get") && !a.starts_with("List"))
                .map(|(a, n)| (a.clone(), *n))
                .collect()
        })
        .unwrap_or_default()
}

/// How many calls of `action` were signed with `key`.
fn count_of(calls: &BTreeMap<String, BTreeMap<String, u64>>, key: &str, action: &str) -> u64 {
    calls
        .get(key)
        .and_then(|actions| actions.get(action))
        .copied()
        .unwrap_or(0)
}

/// Makes the emulator answer the next call of `action`, whoever makes it, `delay` late. The
/// call is counted when it arrives, before the wait, and IAM acts on it after the wait.
async fn delay_next(emulator: &Emulator, action: &str, delay: Duration) {
    let delay_ms = u64::try_from(delay.as_millis()).unwrap();
    reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emulator.url))
        .json(&serde_json::json!({"action": action, "delay_ms": delay_ms, "count": 1}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

/// The emulator's faults not used up yet.
async fn pending_faults(emulator: &Emulator) -> Vec<serde_json::Value> {
    let body: serde_json::Value = reqwest::get(format!("{}/_emulator/faults", emulator.url))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    body["faults"].as_array().cloned().unwrap_or_default()
}

/// Polls every 10 ms until the emulator has counted more than `before` calls of `action`
/// signed with `key`. Returns when the last poll that did not see the call started (or
/// `since` if the first poll saw it): the call arrived after that.
async fn call_arrived(
    emulator: &Emulator,
    key: &str,
    action: &str,
    before: u64,
    since: Instant,
    timeout: Duration,
) -> Instant {
    let deadline = Instant::now() + timeout;
    let mut not_yet = since;
    loop {
        let asked = Instant::now();
        if count_of(&emulator.calls_by_access_key().await, key, action) > before {
            return not_yet;
        }
        not_yet = asked;
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {key} to call {action}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the Lease every 10 ms until its record changes, and checks that the holder whose
/// identity starts with `holder` renewed it. Returns when the last read that still saw the
/// previous record started: the renewal was written after that.
async fn next_renewal(leases: &Api<Lease>, holder: &str, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    let mut not_yet = Instant::now();
    let before = leases.get("iam-operator").await.unwrap().metadata;
    loop {
        let asked = Instant::now();
        let lease = leases.get("iam-operator").await.unwrap();
        if lease.metadata.resource_version != before.resource_version {
            let now = lease.spec.and_then(|s| s.holder_identity);
            assert!(
                now.as_deref().is_some_and(|h| h.starts_with(holder)),
                "the lease changed hands to {now:?} instead of being renewed by {holder}"
            );
            return not_yet;
        }
        not_yet = asked;
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {holder} to renew the lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn policy_manifest(ns: &str, action: &str) -> String {
    format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamPolicy\nmetadata: {{name: shared, namespace: {ns}}}\nspec:\n  policyName: {ns}-shared\n  document: {{Version: '2012-10-17', Statement: [{{Effect: Allow, Action: '{action}', Resource: '*'}}]}}\n"
    )
}

/// The ARN, once the IamPolicy is Ready for `generation`.
async fn ready_arn(policies: &Api<IamPolicy>, generation: i64) -> Option<String> {
    let policy = policies.get_opt("shared").await.ok()??;
    if policy.metadata.generation != Some(generation) {
        return None;
    }
    let status = policy.status?;
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    (ready && status.observed_generation == Some(generation))
        .then_some(status.arn)
        .flatten()
}

/// The action the policy's default version allows, as IAM has it.
async fn allowed_action(aws: &aws_sdk_iam::Client, arn: &str) -> String {
    let policy = aws.get_policy().policy_arn(arn).send().await.unwrap();
    let version = policy.policy().unwrap().default_version_id().unwrap();
    let out = aws
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version)
        .send()
        .await
        .unwrap();
    let text = out.policy_version().unwrap().document().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&urlencoding::decode(text).unwrap()).unwrap();
    doc["Statement"][0]["Action"].as_str().unwrap().to_string()
}

/// The operators' election timings: 4 s lease, 3 s renew deadline, 500 ms retry period.
const OPERATOR_RETRY: Duration = Duration::from_millis(500);
/// How late the emulator answers the call A is paused in; far longer than it takes to stop
/// A once the call arrived, far shorter than A stays stopped.
const HELD_ANSWER: Duration = Duration::from_secs(3);

/// The scenario: leader A is paused (SIGSTOP) in the middle of a reconcile, after
/// it decided to write to IAM and before it sent the write; B takes over and applies
/// changes; then A resumes and carries on where it stopped.
///
/// A applies a changed document: it reads the current version, finds that it differs (so
/// A has decided to write), lists the versions (to make room for the new one) and creates
/// the new version. The emulator holds A's answer to that list for a while; A is stopped
/// while it waits, so the answer lands in its socket while it is stopped, and on resume
/// nothing but the write fence stands between A and a CreatePolicyVersion that would undo
/// B's newer document. The emulator counts calls by access key, so A's calls are told
/// apart from B's.
///
/// A is also cut off from the API server while stopped, as a paused node often is. That
/// keeps it from learning through the API server that B holds the lease: its first renewal
/// after resuming hangs until its attempt timeout (1.5 s) instead of ending A within a
/// round trip, and its reconcile needs no API call between the answer and the write, so A
/// provably gets to the write before it exits. For the same reason A is stopped between
/// two renewals: a renewal under way when it stopped would time out the moment it resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_writes_nothing_to_iam_after_it_resumes() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("leader-pause");
    let client = cp.client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let policies: Api<IamPolicy> = Api::namespaced(client.clone(), &ns);
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let relay = Relay::start(api_server(&cp.kubeconfig));
    let dir = tempfile::tempdir().unwrap();
    let via_relay = kubeconfig_via(&cp.kubeconfig, relay.addr, dir.path());
    let via_relay = via_relay.to_str().unwrap();
    let retry = format!("{}ms", OPERATOR_RETRY.as_millis());
    let args = [
        "--watch-namespace",
        &ns,
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        "--leader-election-lease-duration",
        "4s",
        "--leader-election-renew-deadline",
        "3s",
        "--leader-election-retry-period",
        &retry,
        // The binary's default: no resync during the test, only spec changes start reconciles.
        "--resync-interval",
        "1h",
    ];

    // A leads and creates the policy.
    let mut a = Operator::start(
        cp,
        &emulator.url,
        &args,
        &[
            ("AWS_ACCESS_KEY_ID", "leaderA"),
            ("HOSTNAME", "leader-a"),
            ("KUBECONFIG", via_relay),
        ],
    );
    eventually("A to lead", Duration::from_secs(60), || async {
        holder(&leases).await.filter(|h| h.starts_with("leader-a-"))
    })
    .await;
    let b = Operator::start(
        cp,
        &emulator.url,
        &args,
        &[("AWS_ACCESS_KEY_ID", "leaderB"), ("HOSTNAME", "leader-b")],
    );
    cp.apply_ok(&policy_manifest(&ns, "s3:GetObject"));
    let arn = eventually("the policy to be Ready", Duration::from_secs(60), || {
        ready_arn(&policies, 1)
    })
    .await;
    let calls = emulator.calls_by_access_key().await;
    assert!(
        writes_of(&calls, "leaderA").contains_key("CreatePolicy"),
        "A did not create the policy: {calls:?}"
    );
    assert_eq!(
        writes_of(&calls, "leaderB"),
        BTreeMap::new(),
        "B wrote while A led"
    );
    assert_eq!(
        holder(&leases).await.map(|h| h.starts_with("leader-a-")),
        Some(true)
    );

    // A starts applying a change and waits for the held answer to its ListPolicyVersions.
    let lists_before = count_of(&calls, "leaderA", "ListPolicyVersions");
    delay_next(&emulator, "ListPolicyVersions", HELD_ANSWER).await;
    let changed = Instant::now();
    cp.apply_ok(&policy_manifest(&ns, "s3:ListBucket"));
    let asked_after = call_arrived(
        &emulator,
        "leaderA",
        "ListPolicyVersions",
        lists_before,
        changed,
        Duration::from_secs(60),
    )
    .await;
    let pending = pending_faults(&emulator).await;
    assert!(
        pending.is_empty(),
        "A's call did not take the delay: {pending:?}"
    );
    let calls = emulator.calls_by_access_key().await;
    assert_eq!(
        count_of(&calls, "leaderA", "ListPolicyVersions"),
        lists_before + 1,
        "{calls:?}"
    );
    assert_eq!(
        count_of(&calls, "leaderB", "ListPolicyVersions"),
        0,
        "the held answer may have been B's: {calls:?}"
    );

    // A is stopped right after a renewal (its elector then sleeps a retry period), while
    // the answer is still held, and cut off from the API server.
    let a_pid = a.pid().expect("A is running");
    let (mut stopped, renewed_after) = loop {
        assert!(
            asked_after.elapsed() < HELD_ANSWER - OPERATOR_RETRY,
            "found no moment between two renewals of A to stop it while its answer was held"
        );
        let renewed_after = next_renewal(&leases, "leader-a-", Duration::from_secs(10)).await;
        // Time for A to take in the renewal's answer before it stops.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if renewed_after.elapsed() < OPERATOR_RETRY / 2 {
            break (Stopped::stop(a_pid), renewed_after);
        }
    };
    let paused = Instant::now();
    relay.cut();
    assert!(
        paused - renewed_after < OPERATOR_RETRY,
        "A stopped {:?} after its last renewal, perhaps in the middle of the next",
        paused - renewed_after
    );
    assert!(
        paused - asked_after < HELD_ANSWER,
        "A stopped {:?} after its ListPolicyVersions arrived, perhaps after the answer",
        paused - asked_after
    );

    // B takes over and applies the change, then one more that A's pending write would undo.
    eventually("B to take over", Duration::from_secs(60), || async {
        holder(&leases).await.filter(|h| h.starts_with("leader-b-"))
    })
    .await;
    // A renewed at most a retry period (plus the call) before it stopped, and B waits a
    // whole lease duration (4 s) after it last saw a change.
    assert!(
        paused.elapsed() >= Duration::from_secs(3),
        "B took over {:?} after A stopped, before A's lease could run out",
        paused.elapsed()
    );
    eventually("B to apply the change", Duration::from_secs(60), || {
        ready_arn(&policies, 2)
    })
    .await;
    assert_eq!(allowed_action(&aws, &arn).await, "s3:ListBucket");
    cp.apply_ok(&policy_manifest(&ns, "s3:PutObject"));
    eventually(
        "B to apply the next change",
        Duration::from_secs(60),
        || ready_arn(&policies, 3),
    )
    .await;
    assert_eq!(allowed_action(&aws, &arn).await, "s3:PutObject");
    let calls = emulator.calls_by_access_key().await;
    assert_eq!(
        count_of(&calls, "leaderB", "CreatePolicyVersion"),
        2,
        "B did not apply both changes: {calls:?}"
    );
    let a_writes_before = writes_of(&calls, "leaderA");
    assert!(
        paused.elapsed() > HELD_ANSWER,
        "A's held answer may not have been sent before it resumes"
    );

    // A resumes inside its reconcile: the write it goes on to must be refused.
    stopped.resume();
    eventually("A to exit", Duration::from_secs(60), || async {
        a.exited().then_some(())
    })
    .await;
    let logs = a.logs();
    let calls = emulator.calls_by_access_key().await;
    assert_eq!(
        writes_of(&calls, "leaderA"),
        a_writes_before,
        "A wrote to IAM after it resumed. A's log:\n{logs}"
    );
    assert!(
        logs.contains("CreatePolicyVersion refused: this replica lost the leader lease"),
        "A never tried to write after it resumed, so this test proved nothing. A's log:\n{logs}"
    );
    assert!(
        logs.contains("lost the leader lease; exiting"),
        "A's log:\n{logs}"
    );
    assert_eq!(allowed_action(&aws, &arn).await, "s3:PutObject");
    assert_eq!(
        holder(&leases).await.map(|h| h.starts_with("leader-b-")),
        Some(true)
    );
    a.stop();
    drop(b);
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
