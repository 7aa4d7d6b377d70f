//! Scale benchmark: N IamUsers (each in a shared IamGroup that uses an IamPolicy, each with
//! an access key) applied at once to the real control plane, reconciled by the operator
//! binary against the IAM emulator. Reports time to all Ready, IAM calls per object to
//! converge, per detailed resync pass and per drift-scan pass, what that makes per hour
//! with the default intervals, and the operator's peak RSS.
//!
//!     cargo bench --bench scale                       # N=100
//!     BENCH_USERS=300 cargo bench --bench scale
//!
//! Under `cargo test` (no `--bench` argument) it runs once with N=5 as a smoke test, so the
//! harness itself cannot rot.

#[path = "../tests/support/mod.rs"]
mod support;

use iam_operator::api::IamUser;
use kube::Api;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator};
use support::emulator::Emulator;

/// Short intervals, so that a minute of steady state shows several passes of each.
const RESYNC: Duration = Duration::from_secs(30);
const DRIFT_SCAN: Duration = Duration::from_secs(10);
/// The operator's defaults, for the per-hour figure.
const DEFAULT_RESYNC_PER_HOUR: f64 = 1.0;
const DEFAULT_SCANS_PER_HOUR: f64 = 12.0;
/// The former default: a detailed resync every 10 minutes and no drift scan.
const FORMER_RESYNC_PER_HOUR: f64 = 6.0;

fn ready(u: &IamUser) -> bool {
    u.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.status == "True"
                && c.observed_generation == u.metadata.generation
        })
    }) && u
        .status
        .as_ref()
        .and_then(|s| s.access_key.as_ref())
        .is_some_and(|k| k.access_key_id.is_some())
}

fn total(calls: &BTreeMap<String, u64>) -> u64 {
    calls.values().sum()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn manifests(ns: &str, users: usize) -> String {
    let mut out = format!(
        r#"apiVersion: iam.kubeop.dev/v1alpha1
kind: IamPolicy
metadata: {{name: reader, namespace: {ns}}}
spec:
  policyName: {ns}-reader
  document: {{Version: "2012-10-17", Statement: [{{Effect: Allow, Action: "s3:GetObject", Resource: "*"}}]}}
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamGroup
metadata: {{name: devs, namespace: {ns}}}
spec:
  groupName: {ns}-devs
  policies: [{{policyRef: {{name: reader}}}}]
"#
    );
    for i in 0..users {
        out.push_str(&format!(
            r#"---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamUser
metadata: {{name: u{i}, namespace: {ns}}}
spec:
  userName: {ns}-u{i}
  groups: [{{groupRef: {{name: devs}}}}]
  tags: {{team: bench}}
  accessKey: {{enabled: true}}
"#
        ));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let users: usize = match std::env::var("BENCH_USERS") {
        Ok(n) => n.parse().expect("BENCH_USERS is a number"),
        Err(_) if benchmarking => 100,
        Err(_) => 5,
    };
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let ns = cp.namespace("bench");
    let resync = format!("{}s", RESYNC.as_secs());
    let scan = format!("{}s", DRIFT_SCAN.as_secs());
    let args = [
        "--watch-namespace",
        &ns,
        "--resync-interval",
        &resync,
        "--drift-scan-interval",
        &scan,
    ];
    let op = Operator::start(cp, &emulator.url, &args, &[]);
    let api: Api<IamUser> = Api::namespaced(cp.client().await, &ns);
    // Let the operator finish starting (CRD probe, watches) before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    emulator.reset_calls().await;

    let started = Instant::now();
    let out = cp.apply(&manifests(&ns, users));
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = started + Duration::from_secs(60 + 3 * users as u64);
    loop {
        let list = api.list(&Default::default()).await.expect("list IamUsers");
        if list.items.len() == users && list.items.iter().all(ready) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all {users} users Ready in time; operator log tail:\n{}",
            op.logs()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let to_ready = started.elapsed();
    let converge = emulator.calls().await;

    // Steady state: every object is re-checked in detail once per resync interval, and
    // the account is read in bulk once per drift-scan interval. A user's detailed check
    // lists its access keys exactly once, which counts those passes.
    tokio::time::sleep(DRIFT_SCAN).await; // the scan's first wake-up after the changes
    emulator.reset_calls().await;
    tokio::time::sleep(RESYNC * 2 + Duration::from_secs(5)).await;
    let steady = emulator.calls().await;
    let scan_calls = steady
        .get("GetAccountAuthorizationDetails")
        .copied()
        .unwrap_or(0);
    let detailed = total(&steady) - scan_calls;
    let passes = steady.get("ListAccessKeys").copied().unwrap_or(0) as f64 / users as f64;
    assert!(passes >= 1.0, "no resync pass in two intervals: {steady:?}");
    let scans = (RESYNC * 2 + Duration::from_secs(5)).as_secs_f64() / DRIFT_SCAN.as_secs_f64();
    let objects = (users + 2) as f64;
    let per_resync = detailed as f64 / passes;
    let per_scan = scan_calls as f64 / scans.floor();
    let pid = op.pid().expect("operator running");

    println!("scale benchmark: {users} IamUsers with access keys + 1 IamGroup + 1 IamPolicy");
    println!(
        "  time to all Ready:           {:.1} s",
        to_ready.as_secs_f64()
    );
    println!(
        "  IAM calls to converge:       {} ({:.1} per object)",
        total(&converge),
        total(&converge) as f64 / objects
    );
    println!(
        "  IAM calls per detailed resync pass: {per_resync:.0} ({:.1} per object)",
        per_resync / objects
    );
    println!(
        "  IAM calls per drift-scan pass:      {per_scan:.1} ({:.3} per object)",
        per_scan / objects
    );
    println!(
        "  steady-state IAM calls per hour, defaults (1h resync, 5m scan): {:.0}; former default (10m resync, no scan): {:.0}",
        per_resync * DEFAULT_RESYNC_PER_HOUR + per_scan * DEFAULT_SCANS_PER_HOUR,
        per_resync * FORMER_RESYNC_PER_HOUR
    );
    println!(
        "  operator peak RSS:           {:.1} MiB",
        peak_rss_mib(pid)
    );
    println!("  converge calls by action:    {converge:?}");
    println!("  steady calls by action:      {steady:?}");
    // Steady state must be reads only: a settled object is never rewritten.
    let writes = support::writes(&steady);
    assert!(writes.is_empty(), "writes in steady state: {writes:?}");
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
