//! Starts the IAM emulator (moto + the strict plugin) as a child process on a free port.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

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

/// A running emulator; killed when dropped.
pub struct Emulator {
    pub url: String,
    child: Child,
}

impl Emulator {
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tools/iam-emulator/server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the IAM emulator");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("emulator did not report READY: {line:?}"))
            .to_string();
        Emulator { url, child }
    }

    /// Counts of IAM actions served so far.
    pub async fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        reqwest::get(format!("{}/_emulator/calls", self.url))
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
        reqwest::get(format!("{}/_emulator/calls?by=access-key", self.url))
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn reset_calls(&self) {
        reqwest::Client::new()
            .delete(format!("{}/_emulator/calls", self.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Makes the next `count` requests of `action` fail with the IAM error `code`.
    pub async fn fail(&self, action: &str, code: &str, status: u16, count: u32) {
        reqwest::Client::new()
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
        reqwest::Client::new()
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
    }
}
