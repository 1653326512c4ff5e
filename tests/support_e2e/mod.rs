//! Helpers for `tests/e2e.rs`: regmail (`regmail serve`) and the registrar sandbox
//! (`regmail sandbox`) as two separate processes talking through the real Postfix and Dovecot
//! of `scripts/mailstack.sh`:
//!
//! ```text
//!  regmail --SMTP 587 STARTTLS+AUTH as gateway--> Postfix --LMTP--> robot@registrar.test INBOX
//!  sandbox <--IMAP 143 STARTTLS as robot-- robot's INBOX (moves each request to "Processed")
//!  sandbox --SMTP 587 STARTTLS+AUTH as robot--> Postfix --LMTP--> gateway@gateway.test INBOX
//!  regmail <--IMAP 143 STARTTLS (IDLE) as gateway-- gateway's INBOX
//! ```
//!
//! The mailboxes are shared, so the tests are serialised ([`Session`]: a mutex in this process
//! and a file lock across processes, `regmail-e2e.lock` in the temporary directory, which
//! tests/support_imap takes too) and every test starts on emptied mailboxes.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common;

/// The repository.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The registrar's gateway mailbox (the sandbox reads it).
pub const ROBOT: &str = "robot@registrar.test";
/// Our callback mailbox (From of every request; regmail reads it).
pub const CALLBACK: &str = "gateway@gateway.test";
/// Agreement number of the tests.
pub const AGREEMENT: &str = "RP/01/00";
/// The e-mail interface password regmail sends and the sandbox expects.
pub const REGISTRAR_PASSWORD: &str = "e2e-R01-pass-7Hq!";

// ---- the mail stack -------------------------------------------------------------------------

/// Runs `scripts/mailstack.sh ARGS`; stdout on success.
pub fn mailstack(args: &[&str]) -> Result<String, String> {
    let script = format!("{REPO}/scripts/mailstack.sh");
    let out = Command::new(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{script} {}` failed with {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `scripts/mailstack.sh env`, after `up` (once per process).
pub fn stack() -> &'static HashMap<String, String> {
    static STACK: OnceLock<Result<HashMap<String, String>, String>> = OnceLock::new();
    let r = STACK.get_or_init(|| {
        let t = Instant::now();
        mailstack(&["up"])?;
        let env = mailstack(&["env"])?;
        eprintln!("mail stack up in {:?}", t.elapsed());
        Ok(env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect())
    });
    match r {
        Ok(v) => v,
        Err(e) => {
            panic!("the mail stack is not available; these tests need it and never skip:\n{e}")
        }
    }
}

/// A variable of `mailstack.sh env`.
pub fn var(key: &str) -> String {
    stack()
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("scripts/mailstack.sh env has no {key}"))
}

/// Messages in `user`'s `mailbox` (0 when the mailbox does not exist).
pub fn count(user: &str, mailbox: &str) -> usize {
    mailstack(&["count", user, mailbox])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn doveadm(args: &[&str]) -> Result<(), String> {
    let out = Command::new("doveadm")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run doveadm: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "doveadm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Empties the two mailboxes these tests use (every folder; `Processed` is deleted). Only
/// these two: other test programs may be using the rest of the stack meanwhile. UIDVALIDITY
/// stays, which does not matter: every test starts a fresh regmail store.
pub fn wipe() {
    for user in [ROBOT, CALLBACK] {
        doveadm(&["expunge", "-u", user, "mailbox", "*", "all"]).unwrap_or_else(|e| panic!("{e}"));
        let _ = doveadm(&["mailbox", "delete", "-u", user, "-r", "-s", "Processed"]);
    }
}

/// Every message in the registrar's mailbox (its INBOX, and `Processed` where the sandbox
/// moves what it has read): (Message-ID, Subject).
pub fn registrar_mailbox() -> Vec<(String, String)> {
    let out = Command::new("doveadm")
        .args([
            "fetch",
            "-u",
            ROBOT,
            "hdr.message-id hdr.subject",
            "mailbox",
            "*",
            "all",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run doveadm fetch");
    assert!(
        out.status.success(),
        "doveadm fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split('\x0c')
        .filter_map(|m| {
            let field = |name: &str| {
                m.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
            };
            let id = field("hdr.message-id:")?;
            Some((id, field("hdr.subject:").unwrap_or_default()))
        })
        .collect()
}

/// The messages of the registrar's mailbox that these tests sent: every test handle starts
/// with `E2E_` and every test domain holds `e2e`, and each test starts on wiped mailboxes, so
/// mail that other programs drop into the shared mailbox meanwhile is not counted.
pub fn mailed_by_tests() -> Vec<(String, String)> {
    let (ours, foreign): (Vec<_>, Vec<_>) = registrar_mailbox()
        .into_iter()
        .partition(|(_, subject)| subject.contains("E2E_") || subject.contains("e2e"));
    if !foreign.is_empty() {
        eprintln!(
            "note: {} message(s) from other programs in {ROBOT}'s mailbox (not counted)",
            foreign.len()
        );
    }
    ours
}

// ---- serialisation --------------------------------------------------------------------------

/// One test's hold on the shared mailboxes, and its temporary directory.
pub struct Session {
    _lock: MutexGuard<'static, ()>,
    _flock: File,
    dir: tempfile::TempDir,
    /// The test's name (for messages).
    pub name: &'static str,
    started: Instant,
}

impl Session {
    /// Takes the mailboxes (waiting for other tests), brings the stack up, wipes every mailbox.
    pub fn start(name: &'static str) -> Session {
        static SERIAL: Mutex<()> = Mutex::new(());
        let lock = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let flock = File::create(std::env::temp_dir().join("regmail-e2e.lock"))
            .expect("create the e2e lock file");
        flock.lock().expect("lock the e2e lock file");
        stack();
        wipe();
        let dir = tempfile::Builder::new()
            .prefix(&format!("regmail-e2e-{name}-"))
            .tempdir()
            .expect("tempdir");
        eprintln!(
            "== {name}: mailboxes wiped, files in {}",
            dir.path().display()
        );
        Session {
            _lock: lock,
            _flock: flock,
            dir,
            name,
            started: Instant::now(),
        }
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        eprintln!("== {}: done in {:.1} s", self.name, self.elapsed());
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = common::read(path);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn sigterm(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    match common::wait_exit(child, Duration::from_secs(15)) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not stop within 15 s of SIGTERM");
        }
    }
}

// ---- the sandbox ----------------------------------------------------------------------------

/// What a test wants of its sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxOpts {
    /// Extra top-level keys (`delay = "1s"`, `out_of_order = true`, ...).
    pub keys: String,
    /// Extra tables at the end (`[[drop]]` rules).
    pub tables: String,
    /// The registry file's initial content (JSON).
    pub registry: Option<Value>,
}

/// `regmail sandbox` as a child process.
pub struct Sandbox {
    child: Option<Child>,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its registry file.
    pub registry: PathBuf,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Sandbox {
    /// Writes the configuration and starts the sandbox; waits until it reads robot's INBOX.
    pub fn start(dir: &Path, opts: SandboxOpts) -> Sandbox {
        let registry = dir.join("sandbox-registry.json");
        if let Some(r) = &opts.registry {
            std::fs::write(&registry, serde_json::to_vec_pretty(r).unwrap()).unwrap();
        }
        let ca = var("MAILSTACK_CA_FILE");
        let tls_name = var("MAILSTACK_TLS_SERVER_NAME");
        let host = var("MAILSTACK_HOST");
        let robot_pw = var("MAILSTACK_ROBOT_PASSWORD");
        let text = format!(
            r#"# regmail sandbox for tests/e2e.rs
source = "imap"
poll_interval = "100ms"
reply = "smtp"
from = "{ROBOT}"
from_name = "R01 robot (sandbox)"
contacts = ["{CALLBACK}"]
agreement = "{AGREEMENT}"
password = {pw}
registry = {reg}
{delay}{keys}

[imap]
host = "{host}"
port = {imap_port}
tls = "starttls"
tls_server_name = "{tls_name}"
ca_file = {ca}
username = "{ROBOT}"
password = {robot_pw}
mailbox = "INBOX"
done_mailbox = "Processed"
command_timeout = "10s"

[smtp]
host = "{host}"
port = {smtp_port}
tls = "starttls"
tls_server_name = "{tls_name}"
ca_file = {ca}
username = "{ROBOT}"
password = {robot_pw}
timeout = "10s"

{tables}
"#,
            pw = toml_str(REGISTRAR_PASSWORD),
            reg = toml_str(&registry.display().to_string()),
            delay = if opts.keys.contains("delay") {
                ""
            } else {
                "delay = \"200ms\"\n"
            },
            keys = opts.keys,
            imap_port = var("MAILSTACK_IMAP_PORT"),
            smtp_port = var("MAILSTACK_SUBMISSION_PORT"),
            ca = toml_str(&ca),
            robot_pw = toml_str(&robot_pw),
            tables = opts.tables,
        );
        let config = dir.join("sandbox.toml");
        std::fs::write(&config, text).unwrap();
        let log = dir.join("sandbox.log");
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(common::BIN)
            .current_dir(dir)
            .arg("sandbox")
            .arg("--sandbox-config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn regmail sandbox");
        let mut s = Sandbox {
            child: Some(child),
            config,
            registry,
            log,
        };
        s.wait_log("reading requests over IMAP", Duration::from_secs(15));
        s
    }

    /// Waits until the sandbox's log holds `text`.
    pub fn wait_log(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if common::read(&self.log).contains(text) {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "the sandbox exited with {status}:\n{}",
                    common::read(&self.log)
                );
            }
            if start.elapsed() > timeout {
                panic!(
                    "the sandbox's log did not show {text:?} within {timeout:?}:\n{}",
                    common::read(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The registry file as JSON.
    pub fn registry(&self) -> Value {
        let bytes = std::fs::read(&self.registry).expect("read the sandbox registry");
        serde_json::from_slice(&bytes).expect("the sandbox registry is JSON")
    }

    /// A counter of the registry (`requests`, `refused`, `replies`, ...).
    pub fn counter(&self, name: &str) -> u64 {
        self.registry()["counters"][name].as_u64().unwrap_or(0)
    }

    /// Stops it with SIGTERM; its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("the sandbox is not running");
        sigterm(&mut c, "the sandbox")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- sandbox log (last lines of {}) ---\n{}\n--- end ---",
                self.log.display(),
                log_tail(&self.log, 60)
            );
        }
    }
}

// ---- regmail --------------------------------------------------------------------------------

/// `regmail serve` on SMTP + IMAP, as a child process, with an HTTP client for its API.
pub struct Regmail {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    token: String,
    agent: ureq::Agent,
    /// Its log.
    pub log: PathBuf,
}

/// `[deadlines]` for a test: (client, domain, renewal).
pub type Deadlines = (&'static str, &'static str, &'static str);

impl Regmail {
    /// Writes the configuration and starts `regmail serve`; waits for `/healthz`.
    pub fn start(dir: &Path, deadlines: Deadlines) -> Regmail {
        let token = common::random_token();
        std::fs::write(dir.join("api-token"), format!("{token}\n")).unwrap();
        common::write_secret(
            &dir.join("registrar-password"),
            &format!("{REGISTRAR_PASSWORD}\n"),
        );
        common::write_secret(
            &dir.join("mail-password"),
            &format!("{}\n", var("MAILSTACK_GATEWAY_PASSWORD")),
        );
        let log = dir.join("regmail.log");
        for _ in 0..3 {
            let port = common::free_port();
            let config = Self::write_config(dir, port, deadlines);
            let child = common::spawn_serve(&config, &log);
            let mut r = Regmail {
                child: Some(child),
                dir: dir.to_path_buf(),
                port,
                token: token.clone(),
                agent: common::agent(Duration::from_secs(30)),
                log: log.clone(),
            };
            match r.wait_ready() {
                Ok(()) => return r,
                Err(why) if common::read(&log).contains("cannot listen") => {
                    eprintln!("port {port} was taken ({why}); trying another");
                    if let Some(mut c) = r.child.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                }
                Err(why) => panic!("regmail did not come up: {why}\n{}", common::read(&log)),
            }
        }
        panic!("regmail did not come up on three ports");
    }

    fn write_config(dir: &Path, port: u16, (client, domain, renewal): Deadlines) -> PathBuf {
        let ca = toml_str(&var("MAILSTACK_CA_FILE"));
        let host = var("MAILSTACK_HOST");
        let tls_name = var("MAILSTACK_TLS_SERVER_NAME");
        let p = |name: &str| toml_str(&dir.join(name).display().to_string());
        let text = format!(
            r#"# regmail for tests/e2e.rs: requests by SMTP submission, replies over IMAP
[store]
path = {store}
cache_capacity_mb = 32

[api]
listen = "127.0.0.1:{port}"
token_file = {token}

[registrar]
gateway = "{ROBOT}"
callback = "{CALLBACK}"
agreement = "{AGREEMENT}"
password_file = {registrar_pw}
senders = ["{ROBOT}"]
handle_prefix = "E2E"

[outbound]
transport = "smtp"
retry_initial = "1s"
retry_max = "5s"

[smtp]
host = "{host}"
port = {smtp_port}
tls = "starttls"
tls_server_name = "{tls_name}"
ca_file = {ca}
username = "{CALLBACK}"
password_file = {mail_pw}
timeout = "10s"

[inbound]
source = "imap"

[imap]
host = "{host}"
port = {imap_port}
tls = "starttls"
tls_server_name = "{tls_name}"
ca_file = {ca}
username = "{CALLBACK}"
password_file = {mail_pw}
idle = true
poll_interval = "1s"
command_timeout = "10s"

[deadlines]
client_reply = "{client}"
domain_reply = "{domain}"
renewal_reply = "{renewal}"

[log]
filter = "info"
"#,
            store = p("store"),
            token = p("api-token"),
            registrar_pw = p("registrar-password"),
            mail_pw = p("mail-password"),
            smtp_port = var("MAILSTACK_SUBMISSION_PORT"),
            imap_port = var("MAILSTACK_IMAP_PORT"),
        );
        let path = dir.join("regmail.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let quick = common::agent(Duration::from_secs(1));
        let start = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("it exited with {status}"));
            }
            if let Ok(r) = quick.get(&format!("{}/healthz", self.base())).call()
                && r.status().as_u16() == 200
            {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(15) {
                return Err("GET /healthz did not answer within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base());
        let auth = format!("Bearer {}", self.token);
        let resp = match method {
            "GET" => self.agent.get(&url).header("Authorization", &auth).call(),
            "POST" => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body.cloned().unwrap_or_else(|| json!({}))),
            "PUT" => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(body.cloned().unwrap_or_else(|| json!({}))),
            other => panic!("method {other}"),
        };
        let mut resp = resp.unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}\n--- regmail log ---\n{}",
                log_tail(&self.log, 40)
            )
        });
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET path`, asserting 200.
    pub fn get(&self, path: &str) -> Value {
        let (s, v) = self.call("GET", path, None);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// `POST path`, asserting a 2xx answer.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let (s, v) = self.call("POST", path, Some(body));
        assert!((200..300).contains(&s), "POST {path} {body}: {s} {v}");
        v
    }

    /// `PUT path`, asserting 200.
    pub fn put(&self, path: &str, body: &Value) -> Value {
        let (s, v) = self.call("PUT", path, Some(body));
        assert_eq!(s, 200, "PUT {path} {body}: {v}");
        v
    }

    /// A domain's view.
    pub fn domain(&self, d: &str) -> Value {
        self.get(&format!("/v1/domains/{}", common::enc(d)))
    }

    /// A client's view.
    pub fn client(&self, id: &str) -> Value {
        self.get(&format!("/v1/clients/{}", common::enc(id)))
    }

    /// Every entry of a scoped log (`/v1/domains/X/log`, `/v1/clients/X/log`, `/v1/log`).
    pub fn log_of(&self, base: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut since = 0u64;
        let sep = if base.contains('?') { '&' } else { '?' };
        loop {
            let v = self.get(&format!("{base}{sep}since={since}&limit=1000"));
            let entries = v["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                return out;
            }
            since = v["next"].as_u64().expect("next");
            out.extend(entries);
        }
    }

    /// A domain's whole log.
    pub fn domain_log(&self, d: &str) -> Vec<Value> {
        self.log_of(&format!("/v1/domains/{}/log", common::enc(d)))
    }

    /// A client's whole log.
    pub fn client_log(&self, id: &str) -> Vec<Value> {
        self.log_of(&format!("/v1/clients/{}/log", common::enc(id)))
    }

    /// The whole global log.
    pub fn full_log(&self) -> Vec<Value> {
        self.log_of("/v1/log")
    }

    /// Requests in a state.
    pub fn requests_in(&self, state: &str) -> Vec<Value> {
        self.get(&format!("/v1/requests?state={state}&limit=1000"))["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `/v1/stats`.
    pub fn stats(&self) -> Value {
        self.get("/v1/stats")
    }

    /// Polls `cond` every 50 ms up to `timeout`; panics with `what`, regmail's log and `debug()`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Regmail) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nstats: {}\n--- regmail log (tail) ---\n{}",
                    self.stats(),
                    log_tail(&self.log, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until domain `d` has `status`; returns its view.
    pub fn wait_domain(&self, d: &str, status: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("{d} to be {status}"), timeout, |r| {
            let v = r.domain(d);
            if v["status"] == status {
                return true;
            }
            // A final state other than the one awaited: fail at once, with the log.
            let s = v["status"].as_str().unwrap_or_default();
            assert!(
                !(matches!(s, "Registered" | "Error")
                    && s != status
                    && v["open_request"].is_null()),
                "{d} became {s} while {status} was expected: {v}\n{}",
                show_log(&r.domain_log(d))
            );
            false
        });
        self.domain(d)
    }

    /// Waits until client `id` has `status`; returns its view.
    pub fn wait_client(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("client {id} to be {status}"), timeout, |r| {
            r.client(id)["status"] == status
        });
        self.client(id)
    }

    /// Stops it with SIGTERM; its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("regmail is not running");
        sigterm(&mut c, "regmail")
    }
}

impl Drop for Regmail {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- regmail log (last lines of {}) ---\n{}\n--- end ---",
                self.log.display(),
                log_tail(&self.log, 80)
            );
        }
    }
}

// ---- log assertions -------------------------------------------------------------------------

/// The action codes of log entries, in order.
pub fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A log as readable lines (for failure messages).
pub fn show_log(entries: &[Value]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{:>5} {:<9} {:<26} {} {}",
                e["seq"],
                e["actor"].as_str().unwrap_or_default(),
                e["action"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default(),
                e["evidence"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `expected` occur in `entries` in this order (others may come between).
pub fn assert_in_order(entries: &[Value], expected: &[&str], what: &str) {
    let acts = actions(entries);
    let mut it = acts.iter();
    for want in expected {
        assert!(
            it.any(|a| a == want),
            "{what}: the log lacks {want} (in order {expected:?}):\n{}",
            show_log(entries)
        );
    }
}

/// The first entry with this action.
pub fn entry<'a>(entries: &'a [Value], action: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("no {action} entry in:\n{}", show_log(entries)))
}

/// Today in UTC (regmail and the sandbox count dates in UTC).
pub fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// `date` plus `years` (as the sandbox computes expiry dates).
pub fn plus_years(date: jiff::civil::Date, years: i64) -> jiff::civil::Date {
    date.saturating_add(jiff::Span::new().years(years))
}

/// `date` plus `days`.
pub fn plus_days(date: jiff::civil::Date, days: i64) -> jiff::civil::Date {
    date.saturating_add(jiff::Span::new().days(days))
}
