//! Starts the IAM emulator (moto + the strict plugin) as a child process on a free port.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long the emulator may take to report READY.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the emulator's stderr a failing test prints.
const STDERR_TAIL: usize = 100;

/// The first line `stream` yields within `timeout`, read on a thread of its own so that a
/// child that never writes (or never closes) cannot hang the test. `Err` says why not.
pub fn first_line_within(
    stream: impl Read + Send + 'static,
    timeout: Duration,
) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stream).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(line)) if line.is_empty() => Err("it closed its stdout without a line".into()),
        Ok(Ok(line)) => Ok(line),
        Ok(Err(e)) => Err(format!("reading its stdout failed: {e}")),
        Err(_) => Err(format!("no line on its stdout within {timeout:?}")),
    }
}

/// The last `lines` lines of the file at `path` (empty if it cannot be read).
pub fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The emulator's python, installing the venv once per test process if needed.
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/emulator.sh"))
            .arg("python")
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/emulator.sh python");
        assert!(out.status.success(), "installing the IAM emulator failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// A client for the emulator's control endpoints: no request may hang a test.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// A running emulator; killed when dropped. Its stderr goes to a file whose end is printed
/// when the test fails.
pub struct Emulator {
    pub url: String,
    child: Child,
    stderr: tempfile::TempPath,
}

impl Emulator {
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let stderr = tempfile::NamedTempFile::new()
            .expect("a file for the emulator's stderr")
            .into_temp_path();
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tools/iam-emulator/server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("open the emulator's stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the IAM emulator");
        let stdout = child.stdout.take().unwrap();
        let ready = first_line_within(stdout, START_TIMEOUT).and_then(|line| {
            line.trim()
                .strip_prefix("READY ")
                .map(str::to_string)
                .ok_or_else(|| format!("its first line is not READY: {line:?}"))
        });
        match ready {
            Ok(url) => Emulator { url, child, stderr },
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the IAM emulator did not start: {why}\n--- emulator stderr (tail) ---\n{}",
                    file_tail(&stderr, STDERR_TAIL)
                );
            }
        }
    }

    /// The end of what the emulator wrote to stderr so far.
    pub fn stderr_tail(&self, lines: usize) -> String {
        file_tail(&self.stderr, lines)
    }

    /// Counts of IAM actions served so far.
    pub async fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        http()
            .get(format!("{}/_emulator/calls", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Counts of IAM actions served so far, per SigV4 access key id.
    pub async fn calls_by_access_key(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> {
        http()
            .get(format!("{}/_emulator/calls?by=access-key", self.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn reset_calls(&self) {
        http()
            .delete(format!("{}/_emulator/calls", self.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Makes the next `count` requests of `action` fail with the IAM error `code`.
    pub async fn fail(&self, action: &str, code: &str, status: u16, count: u32) {
        http()
            .post(format!("{}/_emulator/faults", self.url))
            .json(&serde_json::json!({"action": action, "code": code, "status": status, "message": format!("injected {code}"), "count": count}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
}

impl Emulator {
    /// Removes every injected fault.
    pub async fn clear_faults(&self) {
        http()
            .delete(format!("{}/_emulator/faults", self.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- IAM emulator {} stderr (last {STDERR_TAIL} lines) ---\n{}\n--- end of emulator stderr ---",
                self.url,
                self.stderr_tail(STDERR_TAIL)
            );
        }
    }
}
