//! A real control plane (etcd, kube-apiserver, kube-controller-manager built from Go
//! modules by `scripts/build-tools.sh`) shared by the tests of one test binary, plus the
//! operator binary run as a separate process, as a user would run it.

use super::emulator::{first_line_within, repo_root};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the control plane may take to report READY.
const CONTROL_PLANE_START: Duration = Duration::from_secs(300);
/// How long a stopped operator may take to exit before it is killed.
const OPERATOR_STOP: Duration = Duration::from_secs(30);

/// Where `scripts/build-tools.sh` puts control-plane, kubectl and helm.
pub fn tool(name: &str) -> PathBuf {
    let cache = std::env::var("IAM_OPERATOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/iam-operator")
        });
    cache.join("bin").join(name)
}

fn build_tools() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/build-tools.sh"))
            .status()
            .expect("run scripts/build-tools.sh");
        assert!(status.success(), "building the control plane failed");
    });
}

/// Runs `program args` so that it is stopped (SIGTERM) when this test process exits,
/// however it exits: the wrapper waits on a pipe that only our death closes.
pub fn spawn_tied(program: &Path, args: &[&str], envs: &[(&str, &str)], stdout: Stdio) -> Child {
    let script = r#"p="$1"; shift; "$p" "$@" </dev/null & c=$!; trap 'kill -TERM $c 2>/dev/null; wait $c; exit' TERM INT; read -r _ || true; kill -TERM $c 2>/dev/null; wait $c; [ -z "${TIED_CLEANUP:-}" ] || rm -rf "$TIED_CLEANUP""#;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .arg("tied")
        .arg(program)
        .args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::inherit());
    cmd.spawn().expect("spawn process")
}

/// The shared control plane of this test binary.
pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    _child: Child,
}

impl ControlPlane {
    /// Starts once per test binary; stopped when the test process exits.
    pub fn shared() -> &'static ControlPlane {
        static CP: OnceLock<ControlPlane> = OnceLock::new();
        CP.get_or_init(|| {
            build_tools();
            // Removed by the wrapper once the control plane stops (statics are never dropped).
            let dir = tempfile::tempdir().unwrap().keep();
            let data = dir.join("data");
            let mut child = spawn_tied(
                &tool("control-plane"),
                &["--data-dir", data.to_str().unwrap()],
                &[("TIED_CLEANUP", dir.to_str().unwrap())],
                Stdio::piped(),
            );
            let line = first_line_within(child.stdout.take().unwrap(), CONTROL_PLANE_START)
                .unwrap_or_else(|why| panic!("the control plane did not start: {why}"));
            let kubeconfig = PathBuf::from(
                line.trim()
                    .strip_prefix("READY ")
                    .unwrap_or_else(|| panic!("control plane did not start: {line:?}")),
            );
            let cp = ControlPlane {
                kubeconfig,
                _child: child,
            };
            let out = cp.kubectl(&[
                "apply",
                "--server-side",
                "-f",
                repo_root().join("crds").to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "CRDs rejected: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = cp.kubectl(&[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ]);
            assert!(
                out.status.success(),
                "CRDs not established: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            cp
        })
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl apply of a manifest given as text.
    pub fn apply(&self, manifest: &str) -> Output {
        let mut child = Command::new(tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(manifest.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `kubectl apply`, which must succeed.
    pub fn apply_ok(&self, manifest: &str) {
        let out = self.apply(manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{manifest}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A kube client for the current test's runtime.
    pub async fn client(&self) -> kube::Client {
        // Test builds enable two TLS backends (reqwest's and the SDK's); pick one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// A fresh namespace for one test.
    pub fn namespace(&self, prefix: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }
}

/// The operator binary running as its own process against the control plane and the
/// emulator; stopped when dropped.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(
        cp: &ControlPlane,
        emulator_url: &str,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Operator {
        let log = tempfile::NamedTempFile::new()
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let log_file = std::fs::File::create(&log).unwrap();
        let mut args = vec![
            "--metrics-bind-address",
            "127.0.0.1:0",
            "--health-probe-bind-address",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra_args);
        let kubeconfig = cp.kubeconfig.to_str().unwrap().to_string();
        let mut all_envs = vec![
            ("KUBECONFIG", kubeconfig.as_str()),
            ("AWS_ENDPOINT_URL", emulator_url),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("RUST_LOG", "info,iam_operator=debug"),
        ];
        all_envs.extend_from_slice(envs);
        let child = spawn_tied(
            Path::new(env!("CARGO_BIN_EXE_iam-operator")),
            &args,
            &all_envs,
            Stdio::from(log_file),
        );
        Operator { child, log }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pid of the operator process itself (the wrapper's child), while it runs.
    pub fn pid(&self) -> Option<u32> {
        let wrapper = self.child.id();
        std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Whether the operator process has ended on its own (e.g. aborted at a failpoint).
    pub fn exited(&self) -> bool {
        self.pid().is_none()
    }

    /// Kills the operator with SIGKILL (no graceful shutdown), then reaps the wrapper.
    /// Returns whether a running operator was killed.
    pub fn kill(&mut self) -> bool {
        let killed = self.pid().is_some_and(|pid| {
            std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        });
        self.stop();
        killed
    }

    /// Stops the operator (SIGTERM through the wrapper) and waits for it; one that has not
    /// exited within 30 s is killed (SIGKILL) and that is logged.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + OPERATOR_STOP;
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                eprintln!("the operator did not stop within {OPERATOR_STOP:?}; killing it");
                if let Some(pid) = self.pid() {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }

    /// The operator's Prometheus metrics, read from the port it listens on (found through
    /// /proc, as the tests let it pick a free one). `None` until it serves them.
    pub fn metrics(&self) -> Option<String> {
        let port = self.listening_ports().into_iter().next()?;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.lines().next()?;
        if status.split_whitespace().nth(1) != Some("200") {
            return None;
        }
        Some(body.to_string())
    }

    /// Reconciles of `kind` the operator has finished so far (every outcome), from its
    /// `iam_operator_reconcile_duration_seconds` histogram; waits up to 30 s for the
    /// metrics endpoint.
    pub fn reconciles(&self, kind: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let metrics = loop {
            if let Some(m) = self.metrics() {
                break m;
            }
            assert!(
                Instant::now() < deadline,
                "the operator served no metrics within 30s (exited: {})",
                self.exited()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let series = format!("iam_operator_reconcile_duration_seconds_count{{kind=\"{kind}\"}}");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map_or(0, |v| v.trim().parse().unwrap_or(0))
    }

    /// TCP ports the operator process listens on.
    fn listening_ports(&self) -> Vec<u16> {
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return Vec::new();
        };
        let sockets: std::collections::HashSet<String> = fds
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|target| {
                let target = target.to_string_lossy().into_owned();
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_string(),
                )
            })
            .collect();
        let mut ports = Vec::new();
        for table in ["tcp", "tcp6"] {
            let text =
                std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
                if fields.len() > 9
                    && fields[3] == "0A"
                    && sockets.contains(fields[9])
                    && let Some(port) = fields[1]
                        .rsplit_once(':')
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
        ports
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
        // A failing test keeps what explains it: the end of the operator's log.
        if std::thread::panicking() {
            eprintln!(
                "--- operator log {} (last {LOG_TAIL} lines) ---\n{}\n--- end of operator log ---",
                self.log.display(),
                tail(&self.logs(), LOG_TAIL)
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Lines of a log a failing test prints.
pub const LOG_TAIL: usize = 200;

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a kubectl command that needs the operator (a wait, a delete behind finalizers), and
/// fails at once, with the operator's log, if the operator process ends meanwhile.
pub fn kubectl_with_operator(cp: &ControlPlane, op: &Operator, args: &[&str]) -> Output {
    let mut child = Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut gone_since: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if op.exited() {
            if gone_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the operator process exited during `kubectl {}`; its log:\n{}",
                    args.join(" "),
                    tail(&op.logs(), 80)
                );
            }
            gone_since.get_or_insert_with(Instant::now);
        } else {
            gone_since = None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits for an operator started against an unreachable cluster to give up, and returns
/// its exit status and stderr; fails the test if it still runs after 30 s.
pub fn exit_of_unreachable(mut child: Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the operator was still running 30s after start with an unreachable cluster");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

/// A TCP relay in front of an API server whose address may change: a dedicated control
/// plane picks new ports each time it starts, and the relay keeps one address for the
/// clients (the operator's kubeconfig points at it). While the upstream is down, new
/// connections are closed at once, as a refused connection would be.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    upstream: std::sync::Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>,
}

impl Relay {
    pub fn start(upstream: std::net::SocketAddr) -> Relay {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = std::sync::Arc::new(std::sync::Mutex::new(Some(upstream)));
        let target = upstream.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                // No upstream: the connection is closed at once, as a refused one.
                let Some(to) = *target.lock().unwrap() else {
                    continue;
                };
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(to) else {
                        return;
                    };
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    std::thread::spawn(move || relay_pipe(c2, s2));
                    relay_pipe(server, client);
                });
            }
        });
        Relay { addr, upstream }
    }

    /// From now on new connections go to `upstream`, or are refused (closed at once).
    /// Refusing while the control plane is down matters: its old port may be reused by
    /// another listener when it restarts, one that never answers TLS.
    pub fn point_to(&self, upstream: Option<std::net::SocketAddr>) {
        *self.upstream.lock().unwrap() = upstream;
    }
}

fn relay_pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // Both directions end together: a closed API server closes the client's connection.
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// The API server's address in a kubeconfig.
pub fn api_server(kubeconfig: &Path) -> std::net::SocketAddr {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let server = config.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .unwrap();
    server.strip_prefix("https://").unwrap().parse().unwrap()
}

/// A control plane of one test alone, which the test can stop (SIGTERM) and start again on
/// the same data directory (etcd's data, certificates and credentials survive). Clients
/// reach it through a [`Relay`], so its address stays the same across restarts:
/// `cp.kubeconfig` is the admin kubeconfig pointed at the relay.
pub struct RestartableControlPlane {
    pub cp: ControlPlane,
    pub relay: Relay,
    dir: tempfile::TempDir,
    running: bool,
}

impl RestartableControlPlane {
    pub fn start() -> RestartableControlPlane {
        build_tools();
        let dir = tempfile::tempdir().unwrap();
        let (child, admin) = Self::launch(dir.path());
        let relay = Relay::start(api_server(&admin));
        let kubeconfig = Self::via_relay(&admin, relay.addr, dir.path());
        let rcp = RestartableControlPlane {
            cp: ControlPlane {
                kubeconfig,
                _child: child,
            },
            relay,
            dir,
            running: true,
        };
        rcp.cp.kubectl_ok(&[
            "apply",
            "--server-side",
            "-f",
            repo_root().join("crds").to_str().unwrap(),
        ]);
        rcp.cp.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ]);
        rcp
    }

    fn launch(dir: &Path) -> (Child, PathBuf) {
        let data = dir.join("data");
        let mut child = spawn_tied(
            &tool("control-plane"),
            // With fsync off (the default, for speed) etcd may come back with its last
            // writes missing and reuse their revisions: watchers resuming from a revision
            // they saw would then skip the new writes. A real control plane keeps them.
            &["--data-dir", data.to_str().unwrap(), "--etcd-fsync"],
            &[],
            Stdio::piped(),
        );
        let line = first_line_within(child.stdout.take().unwrap(), CONTROL_PLANE_START)
            .unwrap_or_else(|why| panic!("the control plane did not start: {why}"));
        let admin = PathBuf::from(
            line.trim()
                .strip_prefix("READY ")
                .unwrap_or_else(|| panic!("control plane did not start: {line:?}")),
        );
        (child, admin)
    }

    fn via_relay(admin: &Path, relay: std::net::SocketAddr, dir: &Path) -> PathBuf {
        let mut config = kube::config::Kubeconfig::read_from(admin).unwrap();
        for cluster in &mut config.clusters {
            if let Some(c) = cluster.cluster.as_mut() {
                c.server = Some(format!("https://{relay}"));
            }
        }
        let path = dir.join("relay.kubeconfig");
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        path
    }

    /// Stops etcd, kube-apiserver and kube-controller-manager (SIGTERM) and waits for them.
    pub fn stop(&mut self) {
        assert!(self.running, "the control plane is not running");
        self.relay.point_to(None);
        drop(self.cp._child.stdin.take());
        let status = self.cp._child.wait().unwrap();
        assert!(status.success(), "the control plane exited with {status}");
        self.running = false;
    }

    /// Starts it again on the same data directory; the relay follows its new address.
    pub fn restart(&mut self) {
        assert!(!self.running, "the control plane is running");
        let (child, admin) = Self::launch(self.dir.path());
        self.relay.point_to(Some(api_server(&admin)));
        self.cp._child = child;
        self.running = true;
    }
}

impl Drop for RestartableControlPlane {
    fn drop(&mut self) {
        if self.running {
            drop(self.cp._child.stdin.take());
            let _ = self.cp._child.wait();
        }
    }
}
