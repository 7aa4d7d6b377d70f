//! Leader election against the real API server's Lease objects.

mod support;

use iam_operator::leader::{Elector, LeaseConfig};
use std::time::Duration;
use support::cluster::ControlPlane;

fn config(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: ns.into(),
        name: "iam-operator".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry_or_release() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("leader");
    let client = cp.client().await;
    let a = Elector::new(client.clone(), config(&ns, "a"));
    let b = Elector::new(client.clone(), config(&ns, "b"));
    assert!(a.try_acquire().await.unwrap());
    assert!(
        !b.try_acquire().await.unwrap(),
        "a second leader while the lease is fresh"
    );
    assert!(a.try_acquire().await.unwrap(), "the leader renews");
    // a stops renewing: after the lease duration b takes over, and a cannot come back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(b.try_acquire().await.unwrap());
    assert!(!a.try_acquire().await.unwrap());
    // Release hands over at once.
    b.release().await;
    assert!(a.try_acquire().await.unwrap());
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
