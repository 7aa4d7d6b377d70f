//! Observability as a platform team meets it: the operator binary's `/metrics`, `/healthz`
//! and `/readyz` scraped over HTTP while it reconciles against the real control plane and
//! the IAM emulator (with injected throttling), its logs read from a file, and the chart's
//! alert rules and dashboard checked with Prometheus's own parsers (`tools/promcheck`)
//! against the series the running operator really exports.
//!
//! Each test works in its own namespace, with its own emulator and operator.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator, tool};
use support::emulator::{Emulator, repo_root};
use support::eventually;

/// How long objects may take to converge.
const CONVERGE: Duration = Duration::from_secs(120);

/// One sample of a scrape: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `/metrics` response.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
                    None => (series, ""),
                };
                let labels = labels
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect("label=\"value\"");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                Sample {
                    name: name.to_string(),
                    labels,
                    value: value.parse().expect("a numeric value"),
                }
            })
            .collect();
        Scrape { text, samples }
    }

    /// Samples of `name` whose labels include all of `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The sum of the matching samples; panics when there is none (the series is missing).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert!(
            !found.is_empty(),
            "no series {name}{labels:?} in the scrape:\n{}",
            self.excerpt("iam_operator_")
        );
        found.iter().map(|s| s.value).sum()
    }

    /// The sum of the matching samples, 0 when there is none.
    fn sum_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).iter().map(|s| s.value).sum()
    }

    /// The one sample of a series.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one series {name}{labels:?}, found {found:?}"
        );
        found[0].value
    }

    /// Names of every sample (suffixes such as `_total` or `_bucket` included).
    fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }

    fn excerpt(&self, prefix: &str) -> String {
        self.text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A free local port (bound, then released for the operator to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port`: status code and body, or `None` if nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, body.to_string()))
}

/// The operator's endpoints on the ports the test chose.
struct Endpoints {
    metrics: u16,
    probes: u16,
}

impl Endpoints {
    fn new() -> Self {
        Endpoints {
            metrics: free_port(),
            probes: free_port(),
        }
    }

    /// Flags that put the operator's servers on these ports (they override the ones
    /// `Operator::start` passes).
    fn args(&self) -> Vec<String> {
        vec![
            "--metrics-bind-address".into(),
            format!("127.0.0.1:{}", self.metrics),
            "--health-probe-bind-address".into(),
            format!("127.0.0.1:{}", self.probes),
        ]
    }

    fn scrape(&self) -> Scrape {
        let (status, body) = get(self.metrics, "/metrics").expect("/metrics answers");
        assert_eq!(status, 200, "/metrics: {body}");
        Scrape::parse(body)
    }

    fn probe(&self, path: &str) -> Option<u16> {
        get(self.probes, path).map(|(status, _)| status)
    }
}

/// An object as JSON, if it exists.
fn object(cp: &ControlPlane, ns: &str, kind: &str, name: &str) -> Option<serde_json::Value> {
    let out = cp.kubectl(&["get", kind, name, "-n", ns, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The status of condition `type_` of an object, with its reason.
fn condition(obj: &serde_json::Value, type_: &str) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

async fn wait_condition(
    cp: &ControlPlane,
    op: &Operator,
    ns: &str,
    kind: &str,
    name: &str,
    type_: &str,
    status: &str,
) -> serde_json::Value {
    let what = format!("{kind} {ns}/{name} {type_}={status}");
    let deadline = Instant::now() + CONVERGE;
    loop {
        if let Some(obj) = object(cp, ns, kind, name)
            && condition(&obj, type_).is_some_and(|(s, _)| s == status)
        {
            return obj;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}\n--- operator log ---\n{}",
            object(cp, ns, kind, name).map(|o| o["status"].clone()),
            support::cluster::tail(&op.logs(), 40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Counts of conditions, by (kind, type, status), over every object of `ns`, as the API
/// server holds them: the truth the per-object gauges must add up to.
fn conditions_in(cp: &ControlPlane, ns: &str) -> BTreeMap<(String, String, String), f64> {
    let mut counts = BTreeMap::new();
    for kind in ["IamPolicy", "IamGroup", "IamUser"] {
        let out = cp.kubectl_ok(&["get", &kind.to_lowercase(), "-n", ns, "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        for item in list["items"].as_array().unwrap() {
            for c in item["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
            {
                *counts
                    .entry((
                        kind.to_string(),
                        c["type"].as_str().unwrap().to_string(),
                        c["status"].as_str().unwrap().to_string(),
                    ))
                    .or_insert(0.0) += 1.0;
            }
        }
    }
    counts
}

/// The same counts from the scrape: `sum by (kind, type, status)
/// (iam_operator_object_condition{namespace=ns})`.
fn conditions_scraped(scrape: &Scrape, ns: &str) -> BTreeMap<(String, String, String), f64> {
    let mut counts = BTreeMap::new();
    for s in scrape.find("iam_operator_object_condition", &[("namespace", ns)]) {
        *counts
            .entry((
                s.labels["kind"].clone(),
                s.labels["type"].clone(),
                s.labels["status"].clone(),
            ))
            .or_insert(0.0) += s.value;
    }
    counts
}

fn key(kind: &str, type_: &str, status: &str) -> (String, String, String) {
    (kind.into(), type_.into(), status.into())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Seconds since the creation time of the key an IamUser's status says it publishes.
fn published_key(obj: &serde_json::Value) -> Option<(String, i64)> {
    let key = &obj["status"]["accessKey"];
    let id = key["accessKeyId"].as_str()?.to_string();
    let created: k8s_openapi::jiff::Timestamp = key["createdAt"].as_str()?.parse().ok()?;
    Some((id, created.as_second()))
}

/// Faults still armed in the emulator.
async fn faults_left(emulator: &Emulator) -> usize {
    let faults: serde_json::Value = reqwest::get(format!("{}/_emulator/faults", emulator.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    faults["faults"].as_array().map_or(0, Vec::len)
}

/// A ready user with a key, a Stalled user, a user whose creation IAM throttles: scraped,
/// every series a platform team alerts on has the value the cluster and IAM say it must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_series_match_conditions_errors_throttling_and_key_ages() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("obs");
    let ep = Endpoints::new();
    let mut args: Vec<String> = vec![
        "--watch-namespace".into(),
        ns.clone(),
        "--log-format".into(),
        "json".into(),
    ];
    args.extend(ep.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let op = Operator::start(cp, &emulator.url, &args, &[]);

    // Probes: alive, and ready once the watches have listed everything.
    eventually("/readyz answers 200", CONVERGE, || async {
        (ep.probe("/readyz") == Some(200)).then_some(())
    })
    .await;
    assert_eq!(get(ep.probes, "/healthz"), Some((200, "ok".to_string())));
    let first = ep.scrape();
    assert_eq!(first.value("iam_operator_ready", &[]), 1.0);
    assert_eq!(first.value("iam_operator_leader", &[]), 1.0);

    // A user created outside the operator: an IamUser naming it is a NameConflict (Stalled).
    let taken = format!("{ns}-taken");
    aws.create_user().user_name(&taken).send().await.unwrap();
    cp.apply_ok(&format!(
            r#"apiVersion: iam.kubeop.dev/v1alpha1
kind: IamPolicy
metadata: {{name: reader, namespace: {ns}}}
spec:
  document: {{Version: "2012-10-17", Statement: [{{Effect: Allow, Action: ["s3:GetObject"], Resource: ["*"]}}]}}
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamUser
metadata: {{name: alice, namespace: {ns}}}
spec:
  userName: {ns}-alice
  accessKey: {{enabled: true, rotateAfter: 48h}}
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamUser
metadata: {{name: squatter, namespace: {ns}}}
spec:
  userName: {taken}
"#
        ),
    );
    wait_condition(cp, &op, &ns, "iampolicy", "reader", "Ready", "True").await;
    wait_condition(cp, &op, &ns, "iamuser", "alice", "Ready", "True").await;
    let squatter = wait_condition(cp, &op, &ns, "iamuser", "squatter", "Stalled", "True").await;
    assert_eq!(
        condition(&squatter, "Ready"),
        Some(("False".into(), "NameConflict".into()))
    );

    // IAM throttles the next six CreateUser attempts: more than the SDK's five attempts in
    // one reconcile (`--iam-max-attempts`), so a reconcile fails with Throttled and a later
    // one succeeds.
    const THROTTLED: u32 = 6;
    emulator
        .fail("CreateUser", "Throttling", 400, THROTTLED)
        .await;
    cp.apply_ok(&format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata: {{name: bob, namespace: {ns}}}\nspec:\n  userName: {ns}-bob\n"
        ),
    );
    wait_condition(cp, &op, &ns, "iamuser", "bob", "Ready", "True").await;
    assert_eq!(faults_left(&emulator).await, 0, "every throttle was served");

    let scrape = ep.scrape();
    println!(
        "--- scrape after convergence (excerpt) ---\n{}",
        scrape
            .text
            .lines()
            .filter(|l| l.contains(&ns)
                || l.contains("CreateUser")
                || l.starts_with("iam_operator_reconcile_errors_total")
                || l.starts_with("iam_operator_access_keys_rotated_total")
                || l.starts_with("iam_operator_ready")
                || l.starts_with("iam_operator_leader"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // IAM calls: every throttled attempt counted as throttled, and the operator's count of
    // CreateUser attempts, by outcome, adds up to what the emulator served.
    let create_user = [("operation", "CreateUser")];
    assert_eq!(
        scrape.sum(
            "iam_operator_iam_calls_total",
            &[("operation", "CreateUser"), ("outcome", "throttled")]
        ),
        f64::from(THROTTLED)
    );
    assert_eq!(
        scrape.sum(
            "iam_operator_iam_calls_total",
            &[("operation", "CreateUser"), ("outcome", "success")]
        ),
        2.0,
        "alice and bob created once each"
    );
    // The emulator also served the test's own CreateUser of the squatted name.
    let served = emulator
        .calls()
        .await
        .get("CreateUser")
        .copied()
        .unwrap_or(0)
        - 1;
    assert_eq!(
        scrape.sum("iam_operator_iam_calls_total", &create_user),
        served as f64,
        "CreateUser attempts counted vs served"
    );
    assert!(
        scrape.sum_or_zero(
            "iam_operator_iam_calls_total",
            &[("operation", "GetUser"), ("outcome", "not_found")]
        ) >= 2.0,
        "looking up users before creating them finds none: not_found, not an error"
    );

    // Reconcile errors: the throttled reconcile of bob and the name conflict of squatter.
    assert!(
        scrape.sum(
            "iam_operator_reconcile_errors_total",
            &[("kind", "IamUser"), ("reason", "Throttled")]
        ) >= 1.0
    );
    assert!(
        scrape.sum(
            "iam_operator_reconcile_errors_total",
            &[("kind", "IamUser"), ("reason", "NameConflict")]
        ) >= 1.0
    );
    assert_eq!(
        scrape.sum_or_zero(
            "iam_operator_reconcile_errors_total",
            &[("kind", "IamPolicy")]
        ),
        0.0,
        "the policy never failed"
    );

    // Objects by condition: the per-object gauges add up to what the API server holds.
    let truth = conditions_in(cp, &ns);
    assert_eq!(conditions_scraped(&scrape, &ns), truth);
    assert_eq!(truth.get(&key("IamPolicy", "Ready", "True")), Some(&1.0));
    assert_eq!(truth.get(&key("IamUser", "Ready", "True")), Some(&2.0));
    assert_eq!(truth.get(&key("IamUser", "Ready", "False")), Some(&1.0));
    assert_eq!(truth.get(&key("IamUser", "Stalled", "True")), Some(&1.0));
    assert_eq!(
        scrape.value(
            "iam_operator_object_condition",
            &[("namespace", &ns), ("name", "squatter"), ("type", "Ready")]
        ),
        1.0
    );
    assert_eq!(
        scrape.find(
            "iam_operator_object_condition",
            &[("name", "squatter"), ("type", "Ready")]
        )[0]
        .labels["reason"],
        "NameConflict"
    );

    // Key age: seconds since the creation of the key alice's status publishes, growing;
    // bob has no key and no age.
    let alice = object(cp, &ns, "iamuser", "alice").unwrap();
    let (first_key, created) = published_key(&alice).expect("alice publishes a key");
    let alice_labels = [("namespace", ns.as_str()), ("name", "alice")];
    let age = scrape.value("iam_operator_access_key_age_seconds", &alice_labels);
    let expected = (unix_now() - created) as f64;
    assert!(
        age >= 0.0 && (age - expected).abs() <= 5.0,
        "key age {age}, created {expected}s ago"
    );
    assert_eq!(
        scrape.value(
            "iam_operator_access_key_rotation_period_seconds",
            &alice_labels
        ),
        48.0 * 3600.0
    );
    assert!(
        scrape
            .find("iam_operator_access_key_age_seconds", &[("name", "bob")])
            .is_empty()
    );
    assert_eq!(
        scrape.value("iam_operator_access_keys_rotated_total", &[]),
        0.0,
        "a first key is not a rotation"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = ep
        .scrape()
        .value("iam_operator_access_key_age_seconds", &alice_labels);
    assert!(
        later >= age + 2.0,
        "the key's age grows: {age} then {later}"
    );

    // A forced rotation: counted, and the age is the new key's.
    cp.kubectl_ok(&[
        "annotate",
        "-n",
        &ns,
        "iamuser/alice",
        "iam.kubeop.dev/rotate-access-key=1",
    ]);
    let (second_key, created) = eventually("alice's key rotated", CONVERGE, || async {
        object(cp, &ns, "iamuser", "alice")
            .as_ref()
            .and_then(published_key)
            .filter(|(id, _)| *id != first_key)
    })
    .await;
    let rotated = eventually("the rotation counted", CONVERGE, || async {
        let s = ep.scrape();
        (s.value("iam_operator_access_keys_rotated_total", &[]) == 1.0).then_some(s)
    })
    .await;
    let age = rotated.value("iam_operator_access_key_age_seconds", &alice_labels);
    let expected = (unix_now() - created) as f64;
    assert!(
        (age - expected).abs() <= 5.0,
        "after rotating to {second_key}: age {age}, created {expected}s ago"
    );

    // Deleting the Stalled object removes its series: the counts stay exact.
    cp.kubectl_ok(&["delete", "-n", &ns, "iamuser/squatter", "--timeout=60s"]);
    let after = eventually("squatter's series removed", CONVERGE, || async {
        let s = ep.scrape();
        s.find("iam_operator_object_condition", &[("name", "squatter")])
            .is_empty()
            .then_some(s)
    })
    .await;
    let truth = conditions_in(cp, &ns);
    assert_eq!(conditions_scraped(&after, &ns), truth);
    assert_eq!(truth.get(&key("IamUser", "Ready", "False")), None);
    assert_eq!(
        after.sum_or_zero(
            "iam_operator_object_condition",
            &[("namespace", &ns), ("type", "Stalled")]
        ),
        0.0
    );

    // Every metric the alert rules and the dashboard select is one this operator exports.
    let exported = after.names();
    let selected = promcheck();
    assert!(!selected.is_empty());
    let mut unknown = Vec::new();
    for (source, metric) in &selected {
        if metric != "up" && !exported.contains(metric) {
            unknown.push(format!("{source} selects {metric}"));
        }
    }
    assert!(
        unknown.is_empty(),
        "series the operator does not export:\n{}\nexported: {exported:?}",
        unknown.join("\n")
    );

    // JSON logs: one object per line, each with a level and a message, none coloured.
    let logs = op.logs();
    assert!(!logs.contains('\u{1b}'), "an ESC byte in the JSON log");
    let mut lines = 0;
    let mut in_reconcile = 0;
    let mut not_ready = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "no level: {line}");
        assert!(v["message"].is_string(), "no message: {line}");
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
        // A key twice in one object would lose one of its values in most log pipelines.
        if let Err(e) = serde_json::from_str::<NoDuplicateKeys>(line) {
            panic!("{e}: {line}");
        }
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("not ready: "))
        {
            not_ready += 1;
        }
        if v["span"]["kind"].is_string() && v["span"]["object"].is_string() {
            if in_reconcile < 2 {
                println!("{line}");
            }
            in_reconcile += 1;
        }
        lines += 1;
    }
    assert!(lines > 10, "only {lines} log lines");
    assert!(
        in_reconcile > 0,
        "no log line carries the reconcile's kind and object"
    );
    assert!(
        not_ready > 0,
        "no \"not ready: ...\" line for the stalled user"
    );
    println!("{lines} JSON log lines, {in_reconcile} within a reconcile");
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Deserialises any JSON value, refusing an object with a key twice (which `serde_json`
/// would accept, keeping the last value).
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = NoDuplicateKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<NoDuplicateKeys, A::Error> {
                let mut seen = BTreeSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<NoDuplicateKeys>()?;
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("key {key:?} twice")));
                    }
                }
                Ok(NoDuplicateKeys)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NoDuplicateKeys, A::Error> {
                while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
                Ok(NoDuplicateKeys)
            }
            fn visit_str<E>(self, _: &str) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_bool<E>(self, _: bool) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_i64<E>(self, _: i64) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_u64<E>(self, _: u64) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_f64<E>(self, _: f64) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_unit<E>(self) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Runs `promcheck` on the chart's alert rules and dashboard: it fails on anything
/// `promtool check rules` would refuse and on any expression that does not parse; returns
/// (rule or panel, metric) for every metric they select.
fn promcheck() -> Vec<(String, String)> {
    let files = repo_root().join("charts/iam-operator/files");
    let out = Command::new(tool("promcheck"))
        .arg("-rules")
        .arg(files.join("alerts.yaml"))
        .arg("-dashboard")
        .arg(files.join("dashboard.json"))
        .output()
        .expect("run promcheck (scripts/build-tools.sh builds it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promcheck refused the chart's rules or dashboard:\n{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let selected: Vec<(String, String)> = stdout
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let (kind, at, metric) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            (format!("{kind} {at}"), metric.to_string())
        })
        .collect();
    // Every rule of the file and every panel of the dashboard selects something.
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(files.join("alerts.yaml")).unwrap()).unwrap();
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            selected
                .iter()
                .any(|(at, _)| at.ends_with(&format!("/{name}"))),
            "promcheck reported nothing for rule {name}"
        );
    }
    selected
}

/// Text logs written to a file (not a terminal) carry no ANSI colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_in_a_file_have_no_colour_codes() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let ns = cp.namespace("obs-text");
    let ep = Endpoints::new();
    let mut args: Vec<String> = vec!["--watch-namespace".into(), ns.clone()];
    args.extend(ep.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let op = Operator::start(cp, &emulator.url, &args, &[]);
    cp.apply_ok(&format!(
            r#"apiVersion: iam.kubeop.dev/v1alpha1
kind: IamPolicy
metadata: {{name: reader, namespace: {ns}}}
spec:
  document: {{Version: "2012-10-17", Statement: [{{Effect: Allow, Action: ["s3:GetObject"], Resource: ["*"]}}]}}
---
apiVersion: iam.kubeop.dev/v1alpha1
kind: IamGroup
metadata: {{name: waiting, namespace: {ns}}}
spec:
  policies: [{{policyRef: {{name: missing}}}}]
"#
        ),
    );
    // The group waits for a policy that does not exist, and says so from within its
    // reconcile's span (the part a coloured log styles).
    wait_condition(cp, &op, &ns, "iampolicy", "reader", "Ready", "True").await;
    let group = wait_condition(cp, &op, &ns, "iamgroup", "waiting", "Ready", "False").await;
    assert_eq!(
        condition(&group, "Ready").map(|(_, reason)| reason),
        Some("DependencyNotReady".to_string())
    );
    // Waits on words a colourer leaves alone, then looks at the bytes.
    let logs = eventually(
        "a log line from the group's reconcile",
        CONVERGE,
        || async {
            let logs = op.logs();
            logs.lines()
                .any(|l| l.contains("IamGroup") && l.contains("not ready"))
                .then_some(logs)
        },
    )
    .await;
    let escapes = logs.bytes().filter(|b| *b == 0x1b).count();
    assert_eq!(
        escapes,
        0,
        "ANSI escapes in a log file:\n{}",
        support::cluster::tail(&logs, 10)
    );
    assert!(
        logs.contains(" INFO ") && logs.contains("iam-operator started"),
        "unexpected log:\n{logs}"
    );
    assert!(
        logs.contains("reconcile{kind=IamGroup"),
        "the reconcile's span is not in its log line:\n{}",
        support::cluster::tail(&logs, 10)
    );
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `/readyz` answers 200 only once the operator's watches have listed what it reconciles:
/// an operator that may not list IamUsers is alive (`/healthz`) but not ready, and
/// becomes ready once it may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_until_the_watches_can_list() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let ns = cp.namespace("obs-ready");
    let identity = format!("obs-limited-{ns}");
    // Everything the operator reads, except IamUsers: `kind` is Role or ClusterRole.
    let grant = |kind: &str, name: &str, rules: &str| {
        let (namespace, binding) = match kind {
            "Role" => (format!(", namespace: {ns}"), "RoleBinding"),
            _ => (String::new(), "ClusterRoleBinding"),
        };
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata: {{name: {name}{namespace}}}\nrules:\n{rules}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {binding}\nmetadata: {{name: {name}{namespace}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: {kind}, name: {name}}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {identity}}}]\n"
        )
    };
    let cluster_role = format!("{ns}-reader");
    cp.apply_ok(&grant(
            "ClusterRole",
            &cluster_role,
            "  - {apiGroups: [iam.kubeop.dev], resources: [iamtenancypolicies], verbs: [get, list, watch]}\n  - {apiGroups: [''], resources: [namespaces], verbs: [get, list, watch]}\n",
        ),
    );
    cp.apply_ok(&grant(
            "Role",
            "all-but-users",
            "  - {apiGroups: [iam.kubeop.dev], resources: [iampolicies, iamgroups, iamroles], verbs: [get, list, watch, patch]}\n  - {apiGroups: [iam.kubeop.dev], resources: [iampolicies/status, iamgroups/status, iamroles/status], verbs: [patch]}\n  - {apiGroups: [''], resources: [secrets, serviceaccounts], verbs: [get, list, watch]}\n  - {apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}\n",
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = kube::config::Kubeconfig::read_from(&cp.kubeconfig).unwrap();
    for user in &mut config.auth_infos {
        if let Some(info) = user.auth_info.as_mut() {
            info.impersonate = Some(identity.clone());
        }
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, serde_yaml::to_string(&config).unwrap()).unwrap();
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();

    let ep = Endpoints::new();
    let mut args: Vec<String> = vec!["--watch-namespace".into(), ns.clone()];
    args.extend(ep.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let op = Operator::start(cp, &emulator.url, &args, &[("KUBECONFIG", &kubeconfig)]);

    eventually("/healthz answers 200", CONVERGE, || async {
        (ep.probe("/healthz") == Some(200)).then_some(())
    })
    .await;
    // It started (the CRD check lists IamPolicies, which it may) and stays unready.
    eventually("the operator started", CONVERGE, || async {
        op.logs().contains("iam-operator started").then_some(())
    })
    .await;
    let unready_since = Instant::now();
    while unready_since.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            ep.probe("/readyz"),
            Some(503),
            "ready although IamUsers cannot be listed:\n{}",
            support::cluster::tail(&op.logs(), 20)
        );
        assert_eq!(ep.probe("/healthz"), Some(200));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(ep.scrape().value("iam_operator_ready", &[]), 0.0);

    cp.apply_ok(&grant(
        "Role",
        "users",
        "  - {apiGroups: [iam.kubeop.dev], resources: [iamusers], verbs: [get, list, watch]}\n",
    ));
    let granted = Instant::now();
    eventually(
        "/readyz answers 200 once IamUsers can be listed",
        Duration::from_secs(90),
        || async { (ep.probe("/readyz") == Some(200)).then_some(()) },
    )
    .await;
    println!(
        "ready {:?} after IamUsers could be listed",
        granted.elapsed()
    );
    assert_eq!(ep.scrape().value("iam_operator_ready", &[]), 1.0);
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
    cp.kubectl_ok(&[
        "delete",
        "clusterrole,clusterrolebinding",
        &cluster_role,
        "--wait=false",
    ]);
}

/// The chart renders the alert rules as a PrometheusRule and the dashboard as a ConfigMap,
/// each exactly the file it ships, with the chart's labels; neither by default.
#[test]
fn chart_renders_the_prometheus_rule_and_dashboard_only_when_enabled() {
    ControlPlane::shared(); // builds helm
    let chart = repo_root().join("charts/iam-operator");
    let render = |flags: &[&str]| -> Vec<serde_yaml::Value> {
        let out = Command::new(tool("helm"))
            .args(["template", "obs", chart.to_str().unwrap(), "-n", "ops"])
            .args(flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm template: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.split("\n---")
            .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
            .filter(|v| v.is_mapping())
            .collect()
    };
    let of_kind = |docs: &[serde_yaml::Value], kind: &str| -> Vec<serde_yaml::Value> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .cloned()
            .collect()
    };
    let default = render(&[]);
    assert!(of_kind(&default, "PrometheusRule").is_empty());
    assert!(
        of_kind(&default, "ConfigMap")
            .iter()
            .all(|c| c["data"].get("iam-operator.json").is_none())
    );

    let docs = render(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "grafanaDashboard.enabled=true",
        "--set-string",
        "grafanaDashboard.labels.grafana_dashboard=1",
        "--set",
        "grafanaDashboard.namespace=monitoring",
    ]);
    let files = chart.join("files");
    let rule = of_kind(&docs, "PrometheusRule")
        .pop()
        .expect("a PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "ops");
    let labels = &rule["metadata"]["labels"];
    assert_eq!(labels["release"], "kube-prometheus-stack");
    assert_eq!(labels["app.kubernetes.io/name"], "iam-operator");
    assert_eq!(labels["app.kubernetes.io/instance"], "obs");
    let alerts: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(files.join("alerts.yaml")).unwrap()).unwrap();
    assert_eq!(
        rule["spec"], alerts,
        "the PrometheusRule's spec is files/alerts.yaml"
    );

    let dashboard = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["data"].get("iam-operator.json").is_some())
        .expect("a ConfigMap with the dashboard");
    assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["metadata"]["labels"]["app.kubernetes.io/instance"],
        "obs"
    );
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("dashboard.json")).unwrap())
            .unwrap();
    let rendered: serde_json::Value =
        serde_json::from_str(dashboard["data"]["iam-operator.json"].as_str().unwrap()).unwrap();
    assert_eq!(rendered, shipped);
}
