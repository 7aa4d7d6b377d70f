//! Scale benchmark of the operator (not of the emulator): N IamUsers (each with an access
//! key, in one IamGroup that attaches one IamPolicy) created at once on the real control
//! plane and reconciled by the operator binary against the IAM emulator set up like IAM at
//! the network edge: 100 ms per round trip, served concurrently, and an account-wide token
//! bucket of 40 reads/s and 10 writes/s (see `NETWORK`).
//!
//! For each N it measures, in three phases:
//! 1. converge (drift scan every 10 s, resync at the default 1 h): time to all Ready next
//!    to the IAM-bound minimum, IAM calls per object (reads, writes, throttled), the
//!    per-second IAM rate, API-server requests per object, and the first drift-scan pass
//!    after the apply; the operator's peak RSS and CPU seconds;
//! 2. a detailed resync: a second operator started with the defaults reconciles every
//!    object in detail once (what an hourly resync does), counted call by call;
//! 3. steady state at the defaults (resync 1 h, drift scan 5 min), measured over
//!    `BENCH_STEADY_SECS` (default 300 s: one drift-scan pass, no resync).
//!
//! ```text
//! cargo bench --bench scale                      # N = 100 and 1000
//! BENCH_USERS=100 cargo bench --bench scale      # sizes, comma-separated
//! BENCH_STEADY_SECS=3600 BENCH_DIR=docs/benchmarks/steady-1h cargo bench --bench scale
//! ```
//!
//! A `--bench` run writes `docs/benchmarks/results.md` (the tables) and the SVG plots
//! next to it (into `BENCH_DIR` instead, when set). Under `cargo test` (no `--bench` argument) it runs once with N = 5 and short
//! intervals as a smoke test that also checks the drift scan: the pass right after the
//! apply costs the bulk read plus the one user changed out of band right after it was
//! reconciled, whose change is repaired.

#[path = "../tests/support/mod.rs"]
mod support;

use iam_operator::api::IamUser;
use kube::Api;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator};
use support::emulator::{Emulator, repo_root};

/// Round trip per IAM call, in ms. AWS IAM is served from us-east-1; from other regions
/// and through proxies, 50–300 ms round trips are usual; 100 ms is the middle of that.
const LATENCY_MS: u64 = 100;
/// Token buckets (rate per second, burst). AWS does not publish IAM's per-account request
/// limits; callers report throttling at a few tens of requests per second. 10 writes/s
/// makes the write-bound minimum measurable (303 s of writes at N = 1000), and 40 reads/s
/// leaves room for the reads a reconcile needs besides its writes, as in real accounts
/// where reads are throttled less than writes.
const READS: (f64, f64) = (40.0, 40.0);
const WRITES: (f64, f64) = (10.0, 10.0);
/// The longest chain of IAM calls that depend on each other: CreateUser (or
/// CreateGroup) → AddUserToGroup / CreateAccessKey; CreatePolicy → AttachGroupPolicy.
const CHAIN: u64 = 2;

fn network() -> String {
    serde_json::json!({
        "latency": {"ms": LATENCY_MS},
        "rateLimit": {
            "reads": {"rate": READS.0, "burst": READS.1},
            "writes": {"rate": WRITES.0, "burst": WRITES.1},
        },
    })
    .to_string()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

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

type Calls = BTreeMap<String, u64>;

fn total(calls: &Calls) -> u64 {
    calls.values().sum()
}

fn is_read(action: &str) -> bool {
    action.starts_with("Get") || action.starts_with("List")
}

fn reads(calls: &Calls) -> u64 {
    calls
        .iter()
        .filter(|(a, _)| is_read(a))
        .map(|(_, n)| n)
        .sum()
}

fn writes(calls: &Calls) -> u64 {
    total(calls) - reads(calls)
}

fn diff(after: &Calls, before: &Calls) -> Calls {
    after
        .iter()
        .map(|(a, n)| (a.clone(), n - before.get(a).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Peak resident set (VmHWM) in MiB and CPU seconds (user + system) of a process.
fn proc_usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3; utime and
    // stime are fields 14 and 15, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    (rss, ticks / hz)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `apiserver_request_total` by (verb, resource[/subresource]) for the resources the
/// operator reads and writes.
fn apiserver_requests(cp: &ControlPlane) -> BTreeMap<(String, String), u64> {
    let text = cp.kubectl_ok(&["get", "--raw", "/metrics"]);
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let resource = label("resource");
        if !(resource.starts_with("iam") || resource == "secrets" || resource == "events") {
            continue;
        }
        let sub = label("subresource");
        let key = if sub.is_empty() {
            resource
        } else {
            format!("{resource}/{sub}")
        };
        let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *out.entry((label("verb"), key)).or_insert(0) += n;
    }
    out
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

async fn emulator_json(url: &str, path: &str) -> serde_json::Value {
    http()
        .get(format!("{url}{path}"))
        .send()
        .await
        .expect("emulator answers")
        .json()
        .await
        .expect("emulator JSON")
}

async fn emulator_delete(url: &str, path: &str) {
    http()
        .delete(format!("{url}{path}"))
        .send()
        .await
        .expect("emulator answers")
        .error_for_status()
        .expect("emulator accepts");
}

/// Waits until the call counts have not changed for `quiet`, and returns them.
async fn settled(emulator: &Emulator, quiet: Duration) -> Calls {
    let mut last = emulator.calls().await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = emulator.calls().await;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return last;
        }
    }
}

/// Per-second IAM requests over a run, from `/_emulator/rate`.
#[derive(Default, Clone)]
struct Rate {
    /// (second from start, accepted reads, accepted writes, throttled)
    series: Vec<(f64, f64, f64, f64)>,
    throttled: u64,
}

fn rate(v: &serde_json::Value, since: u64) -> Rate {
    let n = |r: &serde_json::Value, k: &str| r.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    let series = v
        .get("series")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                n(r, "t") - since as f64,
                n(r, "reads"),
                n(r, "writes"),
                n(r, "throttledReads") + n(r, "throttledWrites"),
            )
        })
        .collect();
    let totals = v.get("totals").cloned().unwrap_or_default();
    Rate {
        series,
        throttled: (n(&totals, "throttledReads") + n(&totals, "throttledWrites")) as u64,
    }
}

struct Result {
    users: usize,
    objects: usize,
    to_ready: f64,
    minimum: f64,
    converge: Calls,
    throttled: u64,
    min_writes: u64,
    first_pass: Calls,
    /// Drift-scan passes compared in the first-pass window (from the operator's log).
    scan_passes: u64,
    /// The operator's log lines of that window about what the passes woke, and why.
    woken: Vec<String>,
    /// Access keys created after a failed attempt while converging (each is followed by a
    /// sweep: the user is reconciled again 30 s later), and how many of those came in the
    /// last 30 s before all were Ready (so that the sweep falls after it).
    sweeps: (usize, usize),
    resync: Calls,
    steady: Calls,
    steady_secs: u64,
    apiserver: BTreeMap<(String, String), u64>,
    rss_converge: f64,
    cpu_converge: f64,
    rss_all: f64,
    cpu_all: f64,
    rate: Rate,
    load: Vec<(String, String)>,
}

struct Intervals {
    converge_scan: Duration,
    steady: Option<Duration>,
}

#[allow(clippy::too_many_lines)]
async fn run(cp: &ControlPlane, emulator: &Emulator, users: usize, iv: &Intervals) -> Result {
    let mut loads = vec![("start".to_string(), load())];
    http()
        .post(format!("{}/_emulator/reset", emulator.url))
        .send()
        .await
        .expect("reset")
        .error_for_status()
        .expect("reset accepted");
    let ns = cp.namespace("bench");
    let scan = format!("{}s", iv.converge_scan.as_secs());
    let mut op = Operator::start(
        cp,
        &emulator.url,
        &["--watch-namespace", &ns, "--drift-scan-interval", &scan],
        &[("RUST_LOG", "info")],
    );
    let api: Api<IamUser> = Api::namespaced(cp.client().await, &ns);
    // Let the operator finish starting (CRD probe, watches, first scan) before the clock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let manifest = std::env::temp_dir().join(format!("{ns}.yaml"));
    std::fs::write(&manifest, manifests(&ns, users)).expect("write the manifests");
    let api_before = apiserver_requests(cp);
    emulator.reset_calls().await;
    emulator_delete(&emulator.url, "/_emulator/rate").await;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let started = Instant::now();
    // `create`: one POST per object, so the client's own requests are known exactly.
    cp.kubectl_ok(&["create", "-f", manifest.to_str().expect("utf-8 path")]);
    let deadline = started + Duration::from_secs(120 + 3 * users as u64);
    let mut polls = 0u64;
    loop {
        let list = api.list(&Default::default()).await.expect("list IamUsers");
        polls += 1;
        if list.items.len() == users && list.items.iter().all(ready) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all {users} users Ready in time; operator log tail:\n{}",
            support::cluster::tail(&op.logs(), 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let to_ready = started.elapsed().as_secs_f64();
    let sweep_line = "keys listed again later";
    let sweeps_all = op.logs().matches(sweep_line).count();
    let ready_at = k8s_openapi::jiff::Timestamp::now();
    let converge = emulator.calls().await;
    let rate_v = emulator_json(&emulator.url, "/_emulator/rate").await;
    let rate = rate(&rate_v, since);
    let api_after = apiserver_requests(cp);
    loads.push(("converged".into(), load()));
    let pid = op.pid().expect("operator running");
    let (rss_converge, cpu_converge) = proc_usage(pid);
    let mut apiserver: BTreeMap<(String, String), u64> = api_after
        .iter()
        .map(|(k, n)| (k.clone(), n - api_before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    // The benchmark's own requests: kubectl's POSTs and this loop's LISTs.
    for (kind, n) in [
        ("iampolicies", 1),
        ("iamgroups", 1),
        ("iamusers", users as u64),
    ] {
        if let Some(v) = apiserver.get_mut(&("POST".into(), kind.into())) {
            *v -= n.min(*v);
        }
    }
    if let Some(v) = apiserver.get_mut(&("LIST".into(), "iamusers".into())) {
        *v -= polls.min(*v);
    }
    apiserver.retain(|_, n| *n > 0);

    // The first drift-scan pass after the apply: from Ready until a pass has read the
    // account and what it woke has settled.
    let smoke = iv.steady.is_none();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let changed_user = format!("{ns}-u0");
    if smoke {
        // Out of band, right after the operator's own reconcile of that user, before
        // the pass: a change of what the drift scan sees.
        aws.remove_user_from_group()
            .user_name(&changed_user)
            .group_name(format!("{ns}-devs"))
            .send()
            .await
            .expect("out-of-band RemoveUserFromGroup");
    }
    let base = emulator.calls().await;
    let log_base = op.logs().len();
    let pass_deadline = Instant::now() + iv.converge_scan * 3;
    loop {
        let now = emulator.calls().await;
        if now.get("GetAccountAuthorizationDetails") > base.get("GetAccountAuthorizationDetails") {
            break;
        }
        assert!(Instant::now() < pass_deadline, "no drift-scan pass");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Quiet for less than the scan interval, so that the next pass does not keep it busy.
    let quiet = (iv.converge_scan / 2).min(Duration::from_secs(3));
    let first_pass = diff(&settled(emulator, quiet).await, &base);
    let first_pass: Calls = first_pass
        .into_iter()
        .filter(|(a, _)| a != "RemoveUserFromGroup" || !smoke)
        .collect();
    if smoke {
        // The change was found and repaired: the user is back in its group.
        let groups = aws
            .list_groups_for_user()
            .user_name(&changed_user)
            .send()
            .await
            .expect("ListGroupsForUser");
        assert!(
            groups
                .groups()
                .iter()
                .any(|g| g.group_name() == format!("{ns}-devs")),
            "the out-of-band change was not repaired; pass calls: {first_pass:?}"
        );
    }
    // The passes of the window, counted from the operator's log (a pass reads one page
    // per 1000 entities, so pages are not passes), and what they woke.
    let log = op.logs();
    let window = log.get(log_base..).unwrap_or_default();
    let scan_passes = window
        .lines()
        .filter(|l| l.contains("drift scan: pass compared"))
        .count()
        .max(1) as u64;
    // The sweeps scheduled in the last 30 s before Ready run in the window (by the log's
    // timestamps).
    let late_sweeps = late_lines(
        log.get(..log_base).unwrap_or_default(),
        sweep_line,
        ready_at,
        30,
    );
    let sweeps = (sweeps_all, late_sweeps);
    let woken: Vec<String> = window
        .lines()
        .filter(|l| l.contains("drift scan: woken"))
        .map(|l| l.trim().to_string())
        .collect();

    // A detailed resync of every object: a new operator with the defaults checks every
    // object in detail once when it starts (its drift scan's baseline pass included).
    let (rss_a, cpu_a) = proc_usage(pid);
    op.stop();
    loads.push(("resync".into(), load()));
    emulator.reset_calls().await;
    let args_b: Vec<&str> = match iv.steady {
        Some(_) => vec!["--watch-namespace", &ns],
        None => vec!["--watch-namespace", &ns, "--drift-scan-interval", &scan],
    };
    let op_b = Operator::start(cp, &emulator.url, &args_b, &[("RUST_LOG", "info")]);
    let resync_deadline = Instant::now() + Duration::from_secs(60 + users as u64);
    loop {
        let now = emulator.calls().await;
        if now.get("ListAccessKeys").copied().unwrap_or(0) >= users as u64 {
            break;
        }
        assert!(
            Instant::now() < resync_deadline,
            "the second operator did not check every user: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let resync_all = settled(emulator, quiet).await;
    let resync: Calls = resync_all
        .iter()
        .filter(|(a, _)| a.as_str() != "GetAccountAuthorizationDetails")
        .map(|(a, n)| (a.clone(), *n))
        .collect();

    // Steady state at the defaults.
    emulator.reset_calls().await;
    let steady_window = iv.steady.unwrap_or(iv.converge_scan * 2);
    loads.push(("steady".into(), load()));
    tokio::time::sleep(steady_window).await;
    let steady = emulator.calls().await;
    loads.push(("end".into(), load()));
    let pid_b = op_b.pid().expect("second operator running");
    let (rss_b, cpu_b) = proc_usage(pid_b);
    drop(op_b);
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
    let _ = std::fs::remove_file(&manifest);

    let objects = users + 2;
    let min_writes = 3 * users as u64 + 3;
    let bound = (min_writes as f64 - WRITES.1).max(0.0) / WRITES.0;
    let chain = (CHAIN * LATENCY_MS) as f64 / 1000.0;
    Result {
        users,
        objects,
        to_ready,
        minimum: bound.max(chain),
        converge,
        throttled: rate.throttled,
        min_writes,
        first_pass,
        scan_passes,
        woken,
        sweeps,
        resync,
        steady,
        steady_secs: steady_window.as_secs(),
        apiserver,
        rss_converge,
        cpu_converge,
        rss_all: rss_a.max(rss_b),
        cpu_all: cpu_a + cpu_b,
        rate,
        load: loads,
    }
}

/// How many lines containing `what` were logged in the `secs` seconds before `end` (by
/// the RFC 3339 timestamp that starts each operator log line).
fn late_lines(log: &str, what: &str, end: k8s_openapi::jiff::Timestamp, secs: i64) -> usize {
    let at = |l: &str| {
        l.split_whitespace()
            .next()
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
    };
    log.lines()
        .filter(|l| l.contains(what))
        .filter_map(at)
        .filter(|t| end.duration_since(*t).as_secs() < secs)
        .count()
}

fn fmt_calls(calls: &Calls) -> String {
    calls
        .iter()
        .map(|(a, n)| format!("{a} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report(results: &[Result], machine: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Network: {LATENCY_MS} ms per IAM round trip; token buckets {} reads/s (burst {}), {} writes/s (burst {}). Operator defaults (concurrency 4, resync 1 h, drift scan 5 min) except a 10 s drift scan while converging.\n\nMachine: {machine}\n",
        READS.0, READS.1, WRITES.0, WRITES.1
    );
    let _ = writeln!(
        md,
        "| N users (objects) | time to all Ready | IAM-bound minimum | ratio | target |\n|---|---|---|---|---|"
    );
    for r in results {
        let _ = writeln!(
            md,
            "| {} ({}) | {:.1} s | {:.1} s | {:.2} | ≤ 1.2 |",
            r.users,
            r.objects,
            r.to_ready,
            r.minimum,
            r.to_ready / r.minimum
        );
    }
    let _ = writeln!(
        md,
        "\nMinimum = max((writes the specs require − write burst) ÷ write rate, longest dependent chain {CHAIN} × {LATENCY_MS} ms). Writes the specs require: 3 per user (CreateUser with its tags, AddUserToGroup, CreateAccessKey) + CreatePolicy + CreateGroup + AttachGroupPolicy.\n"
    );
    let _ = writeln!(
        md,
        "| N | IAM calls to converge | per object: writes | minimum writes | reads beyond the writes (target ≤ 1) | throttled requests |\n|---|---|---|---|---|---|"
    );
    for r in results {
        let o = r.objects as f64;
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} |",
            r.users,
            total(&r.converge),
            writes(&r.converge) as f64 / o,
            r.min_writes as f64 / o,
            reads(&r.converge) as f64 / o,
            r.throttled
        );
    }
    let _ = writeln!(
        md,
        "\nCalls to converge by operation, per object (reads, then writes):\n\n| N | reads | writes |\n|---|---|---|"
    );
    for r in results {
        let o = r.objects as f64;
        let per = |read: bool| {
            r.converge
                .iter()
                .filter(|(a, _)| is_read(a) == read)
                .map(|(a, n)| format!("{a} {:.3}", *n as f64 / o))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(md, "| {} | {} | {} |", r.users, per(true), per(false));
    }
    let _ = writeln!(
        md,
        "\n| N | first drift-scan pass after the apply: calls per pass | per object | detailed resync: calls | per object | steady state at defaults: calls in window | writes | window |\n|---|---|---|---|---|---|---|---|"
    );
    for r in results {
        let o = r.objects as f64;
        // Per pass: every call of the window (the pages and any re-read), divided by the
        // passes the operator logged in it (normally one).
        let pass = total(&r.first_pass) as f64 / r.scan_passes as f64;
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.4} | {} | {:.2} | {} | {} | {} s |",
            r.users,
            pass,
            pass / o,
            total(&r.resync),
            total(&r.resync) as f64 / o,
            total(&r.steady),
            writes(&r.steady),
            r.steady_secs
        );
    }
    let _ = writeln!(
        md,
        "\n| N | API-server requests per object (converge) | operator peak RSS | operator CPU s (converge) | CPU s (whole run, both operators) |\n|---|---|---|---|---|"
    );
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.1} MiB | {:.1} | {:.1} |",
            r.users,
            r.apiserver.values().sum::<u64>() as f64 / r.objects as f64,
            r.rss_all.max(r.rss_converge),
            r.cpu_converge,
            r.cpu_all
        );
    }
    let _ = writeln!(md, "\nDetails:\n");
    for r in results {
        let _ = writeln!(md, "- N = {}:", r.users);
        let _ = writeln!(md, "  - converge calls: {}", fmt_calls(&r.converge));
        let _ = writeln!(
            md,
            "  - first drift-scan pass after the apply ({} pass(es) in the window, {} page(s) read): {}",
            r.scan_passes,
            r.first_pass
                .get("GetAccountAuthorizationDetails")
                .copied()
                .unwrap_or(0),
            fmt_calls(&r.first_pass)
        );
        let _ = writeln!(
            md,
            "  - access keys created after a failed attempt while converging (each followed by a full reconcile 30 s later): {}, of which in the last 30 s before Ready: {}",
            r.sweeps.0, r.sweeps.1
        );
        let _ = writeln!(
            md,
            "  - woken by that pass (operator log): {}",
            if r.woken.is_empty() {
                "nothing".to_string()
            } else {
                r.woken.join(" / ")
            }
        );
        let _ = writeln!(md, "  - detailed resync: {}", fmt_calls(&r.resync));
        let _ = writeln!(
            md,
            "  - steady state ({} s at the defaults): {}",
            r.steady_secs,
            if r.steady.is_empty() {
                "none".to_string()
            } else {
                fmt_calls(&r.steady)
            }
        );
        let api = r
            .apiserver
            .iter()
            .map(|((v, res), n)| format!("{v} {res} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(md, "  - API-server requests (converge): {api}");
        let loads = r
            .load
            .iter()
            .map(|(at, l)| format!("{at}: {l}"))
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(md, "  - load average (1, 5, 15 min) at {loads}");
    }
    md
}

// ---- SVG line charts, written by hand (no plotting dependency). ----

struct Series {
    name: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn svg_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h, l, r, t, b) = (760.0, 420.0, 70.0, 190.0, 40.0, 50.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = nice_max(all.clone().map(|p| p.0).fold(0.0, f64::max));
    let y_max = nice_max(all.map(|p| p.1).fold(0.0, f64::max) * 1.05);
    let x = |v: f64| l + v / x_max * pw;
    let y = |v: f64| t + ph - v / y_max * ph;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>
"#,
        l + pw / 2.0
    );
    for i in 0..=5 {
        let fx = x_max * i as f64 / 5.0;
        let fy = y_max * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{t}" x2="{:.1}" y2="{:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x(fx),
            x(fx),
            t + ph,
            x(fx),
            t + ph + 16.0,
            fx
        );
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            y(fy),
            l + pw,
            y(fy),
            l - 6.0,
            y(fy) + 4.0,
            fy
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{x_label}</text>
<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{y_label}</text>"##,
        l + pw / 2.0,
        h - 10.0,
        t + ph / 2.0,
        t + ph / 2.0
    );
    for (i, se) in series.iter().enumerate() {
        let pts = se
            .points
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect::<Vec<_>>()
            .join(" ");
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline points="{pts}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            se.color
        );
        if se.points.len() <= 12 {
            for (a, b) in &se.points {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
                    x(*a),
                    y(*b),
                    se.color
                );
            }
        }
        let ly = t + 14.0 + i as f64 * 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            l + pw + 10.0,
            l + pw + 34.0,
            se.color,
            l + pw + 40.0,
            ly + 4.0,
            se.name
        );
    }
    s.push_str("</svg>\n");
    s
}

fn write_plots(results: &[Result], dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let _ = std::fs::create_dir_all(dir);
    let ready = svg_chart(
        "Time to all Ready against N",
        "IamUsers (each with a key, in a group with a policy)",
        "seconds",
        &[
            Series {
                name: "measured".into(),
                color: "#1f77b4",
                dashed: false,
                points: results
                    .iter()
                    .map(|r| (r.users as f64, r.to_ready))
                    .collect(),
            },
            Series {
                name: "IAM-bound minimum".into(),
                color: "#d62728",
                dashed: true,
                points: results
                    .iter()
                    .map(|r| (r.users as f64, r.minimum))
                    .collect(),
            },
        ],
    );
    let path = dir.join("time-to-ready.svg");
    if std::fs::write(&path, ready).is_ok() {
        files.push(path);
    }
    for r in results {
        let end = r.rate.series.last().map_or(1.0, |p| p.0);
        let line = |v: f64| vec![(0.0, v), (end, v)];
        let chart = svg_chart(
            &format!("IAM requests per second while converging, N = {}", r.users),
            "seconds since the apply",
            "requests per second",
            &[
                Series {
                    name: "writes accepted".into(),
                    color: "#d62728",
                    dashed: false,
                    points: r.rate.series.iter().map(|p| (p.0, p.2)).collect(),
                },
                Series {
                    name: "write limit".into(),
                    color: "#d62728",
                    dashed: true,
                    points: line(WRITES.0),
                },
                Series {
                    name: "reads accepted".into(),
                    color: "#1f77b4",
                    dashed: false,
                    points: r.rate.series.iter().map(|p| (p.0, p.1)).collect(),
                },
                Series {
                    name: "read limit".into(),
                    color: "#1f77b4",
                    dashed: true,
                    points: line(READS.0),
                },
                Series {
                    name: "throttled".into(),
                    color: "#7f7f7f",
                    dashed: false,
                    points: r.rate.series.iter().map(|p| (p.0, p.3)).collect(),
                },
            ],
        );
        let path = dir.join(format!("iam-rate-n{}.svg", r.users));
        if std::fs::write(&path, chart).is_ok() {
            files.push(path);
        }
    }
    files
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|m| m.trim().to_string())
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {mem} memory, shared with other builds")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("BENCH_USERS") {
        Ok(n) => n
            .split(',')
            .map(|s| s.trim().parse().expect("BENCH_USERS: numbers"))
            .collect(),
        Err(_) if benchmarking => vec![100, 1000],
        Err(_) => vec![5],
    };
    let steady: u64 = std::env::var("BENCH_STEADY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let iv = if benchmarking {
        Intervals {
            converge_scan: Duration::from_secs(10),
            steady: Some(Duration::from_secs(steady)),
        }
    } else {
        Intervals {
            converge_scan: Duration::from_secs(4),
            steady: None,
        }
    };
    let cp = ControlPlane::shared();
    let net = network();
    let emulator = Emulator::start_with_env(&[("IAM_EMULATOR_NETWORK", &net)]);
    // BENCH_DIR: where a `--bench` run writes (e.g. a long steady-state run kept apart
    // from the main tables).
    let dir = if benchmarking {
        std::env::var("BENCH_DIR").map_or_else(
            |_| repo_root().join("docs/benchmarks"),
            |d| repo_root().join(d),
        )
    } else {
        std::env::temp_dir().join(format!("iam-operator-bench-{}", std::process::id()))
    };
    let mut results = Vec::new();
    for users in sizes {
        let r = run(cp, &emulator, users, &iv).await;
        println!(
            "N={users}: Ready in {:.1} s (minimum {:.1} s); converge {:?}; first pass {:?}; resync {} calls; steady {:?}; RSS {:.1} MiB",
            r.to_ready,
            r.minimum,
            r.converge,
            r.first_pass,
            total(&r.resync),
            r.steady,
            r.rss_all
        );
        results.push(r);
        // After every size, so that a long run that fails later keeps what it measured.
        let md = report(&results, &machine());
        println!("\n{md}");
        if benchmarking {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("results.md"), &md);
        }
        for f in write_plots(&results, &dir) {
            println!("wrote {}", f.display());
        }
    }

    // What must hold at any size: no writes in steady state, and the pass after the apply
    // reads the account in bulk; in the smoke, plus the one user changed out of band.
    for r in &results {
        let steady_writes: Vec<_> = r.steady.keys().filter(|a| !is_read(a)).collect();
        assert!(
            steady_writes.is_empty(),
            "writes in steady state: {:?}",
            r.steady
        );
        let woken_reads = total(&r.first_pass)
            - r.first_pass
                .get("GetAccountAuthorizationDetails")
                .copied()
                .unwrap_or(0);
        if benchmarking {
            println!(
                "N={}: calls beyond the bulk read in the pass after the apply: {woken_reads}",
                r.users
            );
        } else {
            // Users created while converging are not read back: what the create answer
            // says (no groups, policies, keys, login profile) is not listed per user (the
            // GetUser before the create stays: it decides whose the name is).
            for action in [
                "ListGroupsForUser",
                "ListAttachedUserPolicies",
                "ListAccessKeys",
                "GetLoginProfile",
            ] {
                let n = r.converge.get(action).copied().unwrap_or(0);
                assert!(
                    n < r.users as u64,
                    "{action} {n} times while converging {} new users: {:?}",
                    r.users,
                    r.converge
                );
            }
            // One user re-read and repaired (GetUser once, AddUserToGroup once), no other.
            assert_eq!(
                r.first_pass.get("GetUser").copied(),
                Some(1),
                "exactly one user re-read in the pass after the apply: {:?}",
                r.first_pass
            );
            assert_eq!(
                r.first_pass.get("AddUserToGroup").copied(),
                Some(1),
                "{:?}",
                r.first_pass
            );
            assert!(
                woken_reads <= 12,
                "the pass after the apply re-read more than the changed user: {:?}",
                r.first_pass
            );
        }
    }
}
