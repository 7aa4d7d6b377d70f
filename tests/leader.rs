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
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator};
use support::emulator::Emulator;

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

/// Polls `check` every 100 ms until it returns `Some`, or fails the test after `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    let took = wait_for("b to take over", Duration::from_secs(30), || async {
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
    let took = wait_for("b to take over", Duration::from_secs(30), || async {
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

/// A process stopped with SIGSTOP; continued when dropped, so that a failing test still
/// lets it take its SIGTERM.
struct Stopped(Option<u32>);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal(pid, "-STOP");
        Stopped(Some(pid))
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

/// The scenario: leader A is paused (SIGSTOP) past its lease and, as a paused node
/// often is, cut off from the API server; B takes over and applies a change; then A is
/// resumed. A still has the old spec in its cache and its per-object resync is overdue, so
/// it goes straight to IAM, and it cannot learn it lost the lease until its renewal times
/// out. Only the write fence stands between it and undoing B's change; the emulator counts
/// A's calls by its access key.
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
        "500ms",
        // Far shorter than the 1.5 s a renewal attempt may take: whatever A was doing when
        // it stopped, a resync of the policy starts while its renewal still hangs.
        "--resync-interval",
        "250ms",
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
    wait_for("A to lead", Duration::from_secs(60), || async {
        holder(&leases).await.filter(|h| h.starts_with("leader-a-"))
    })
    .await;
    let b = Operator::start(
        cp,
        &emulator.url,
        &args,
        &[("AWS_ACCESS_KEY_ID", "leaderB"), ("HOSTNAME", "leader-b")],
    );
    let out = cp.apply(&policy_manifest(&ns, "s3:GetObject"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arn = wait_for("the policy to be Ready", Duration::from_secs(60), || {
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

    // A is paused and cut off; B takes over and applies a change made meanwhile.
    let a_pid = a.pid().expect("A is running");
    let mut stopped = Stopped::stop(a_pid);
    relay.cut();
    let paused = Instant::now();
    wait_for("B to take over", Duration::from_secs(60), || async {
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
    let out = cp.apply(&policy_manifest(&ns, "s3:ListBucket"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("B to apply the change", Duration::from_secs(60), || {
        ready_arn(&policies, 2)
    })
    .await;
    assert_eq!(allowed_action(&aws, &arn).await, "s3:ListBucket");
    let calls = emulator.calls_by_access_key().await;
    assert!(
        writes_of(&calls, "leaderB").contains_key("CreatePolicyVersion"),
        "B did not apply the change: {calls:?}"
    );
    let a_writes_before = writes_of(&calls, "leaderA");

    // A resumes: it must end without one more IAM write.
    stopped.resume();
    wait_for("A to exit", Duration::from_secs(60), || async {
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
    assert_eq!(allowed_action(&aws, &arn).await, "s3:ListBucket");
    assert_eq!(
        holder(&leases).await.map(|h| h.starts_with("leader-b-")),
        Some(true)
    );
    a.stop();
    drop(b);
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
