//! Leader election against the real API server's Lease objects.

mod support;

use iam_operator::leader::{Elector, LeaseConfig};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use std::future::Future;
use std::time::{Duration, Instant};
use support::cluster::ControlPlane;

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
