//! A real webhook receiver for the notice tests and benchmark: `receiver.py` (Python's
//! http.server on 127.0.0.1) verifies every delivery with the `standardwebhooks` package from
//! PyPI and logs it; [`Receiver`] starts it, switches what it answers, reads its log, stops it.
//! `scripts/test-deps.sh` installs the package (idempotent); a receiver that cannot start fails
//! the test loudly.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common;

/// The repository.
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A running (or stopped) receiver.
pub struct Receiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The secret it verifies with.
    pub secret: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Makes sure the verifier is installed (scripts/test-deps.sh, idempotent).
pub fn ensure_verifier() {
    let st = Command::new(format!("{REPO}/scripts/test-deps.sh"))
        .status()
        .expect("run scripts/test-deps.sh");
    assert!(
        st.success(),
        "scripts/test-deps.sh failed: the standardwebhooks verifier is not available"
    );
}

impl Receiver {
    /// A receiver on a free port, not started yet; set [`Receiver::secret`] before starting.
    pub fn new() -> Receiver {
        ensure_verifier();
        Receiver {
            port: common::free_port(),
            secret: String::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        }
    }

    /// The URL to register.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log.jsonl")
    }

    /// Sets what it answers: status, delay in seconds, Retry-After.
    pub fn answer(&self, status: u16, delay: f64, retry_after: Option<u64>) {
        let m = json!({"status": status, "delay": delay, "retry_after": retry_after});
        let tmp = self.dir.path().join("mode.tmp");
        std::fs::write(&tmp, m.to_string()).expect("write mode");
        std::fs::rename(&tmp, self.dir.path().join("mode.json")).expect("rename mode");
    }

    /// Starts it and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "receiver already running");
        assert!(
            self.secret.starts_with("whsec_"),
            "set the receiver's secret first"
        );
        let child = Command::new("python3")
            .arg(format!("{REPO}/tests/support_webhooks/receiver.py"))
            .args(["--port", &self.port.to_string(), "--secret", &self.secret])
            .arg("--log")
            .arg(self.log_path())
            .arg("--mode")
            .arg(self.dir.path().join("mode.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn receiver.py");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the webhook receiver did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every log record so far.
    pub fn records(&self) -> Vec<Value> {
        common::read(&self.log_path())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Completed deliveries ("done" records).
    pub fn done(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == "done")
            .collect()
    }

    /// Waits until `cond` holds on the records.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let r = self.records();
            if cond(&r) {
                return r;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; receiver log: {r:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
