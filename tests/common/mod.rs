//! Test harness: runs the REAL `regmail` binary as a child process on a temporary directory
//! (config, token file, sled store, the daemon's stderr) and talks to it over real HTTP.
//!
//! Every test gets its own daemon on its own free port, so tests run in parallel. The child is
//! killed when the [`Daemon`] is dropped; if the test is failing at that moment, the daemon's
//! stderr is printed so the failure can be understood.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The in-process intake for mail corpora and DKIM test keys (issue 9).
pub mod intake;
/// Seeds a store directly with clients and domains in any status (the reports' tests).
pub mod seed;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_regmail");

/// How long a daemon may take to answer `/healthz` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variables that would change how the binary reads its configuration.
const SCRUBBED_ENV: &[&str] = &[
    "REGMAIL_API_TOKEN",
    "REGMAIL_CONFIG",
    "REGMAIL_API",
    "CREDENTIALS_DIRECTORY",
    "RUST_LOG",
];

/// Where the daemon's outbox worker puts requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outbound {
    /// The `dir` transport into `<tmp>/outbox-mail`: every queued request is "sent" at once
    /// as `<token>.eml`.
    #[default]
    Dir,
    /// The `dir` transport into a directory that cannot be created (its parent is a file),
    /// with a one-hour retry: every queued request stays Queued (after one
    /// `request.send_deferred` note), like a mail server that is down.
    Held,
}

/// What a test wants of its daemon's configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `[deadlines]` values (client_reply, domain_reply, renewal_reply), e.g. `"1s"`.
    pub deadlines: Option<(String, String, String)>,
    /// `[api] max_body_bytes`.
    pub max_body_bytes: Option<usize>,
    /// The outbound transport.
    pub outbound: Outbound,
    /// The daemon's descriptor limit (soft and hard `RLIMIT_NOFILE`), as `ulimit -n` would set.
    pub nofile: Option<u64>,
    /// Extra environment for the daemon.
    pub env: Vec<(String, String)>,
    /// TOML appended to the configuration, as is (whole sections, e.g. `[registrar]` keys;
    /// the harness writes `[store]`, `[api]`, `[outbound]`, `[deadlines]` and `[log]` itself).
    pub extra_config: String,
    /// `[log] filter` (default "info").
    pub log_filter: Option<String>,
    /// More `[api]` keys (e.g. `max_connections = 64`).
    pub extra_api: String,
    /// The umask the daemon is started with (regmail must keep its files private anyway).
    pub umask: Option<u32>,
}

impl Options {
    /// The same short reply deadline for every request kind.
    pub fn short_deadlines(d: &str) -> Options {
        Options {
            deadlines: Some((d.into(), d.into(), d.into())),
            ..Options::default()
        }
    }

    /// Requests stay Queued (see [`Outbound::Held`]).
    pub fn held() -> Options {
        Options {
            outbound: Outbound::Held,
            ..Options::default()
        }
    }
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub text: String,
}

impl Reply {
    /// The body as JSON; a body that is not JSON comes back as a JSON string holding the raw
    /// text, so that assertions on it fail with the text in the message.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| Value::String(self.text.clone()))
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the CLI printed and how it exited.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A body to send.
pub enum Body<'a> {
    /// No body.
    None,
    /// JSON.
    Json(&'a Value),
    /// Raw bytes with `Content-Length`.
    Raw(&'a [u8]),
}

/// A running (or stopped) daemon on its own temporary directory.
pub struct Daemon {
    dir: tempfile::TempDir,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The API token.
    pub token: String,
    port: u16,
    opts: Options,
    child: Option<Child>,
    agent: ureq::Agent,
    /// Secret leaks seen in API answers and CLI outputs so far (checked at drop).
    leaks: std::sync::Mutex<Vec<String>>,
}

/// The registrar password every harness daemon is configured with (`[registrar]
/// password_file`): a secret that must never show up in an API answer, a CLI output or a log
/// line (rule 4), checked by [`Daemon`] on every answer and at drop.
pub const REGISTRAR_SECRET: &str = "Hx7-harness-RegPw_q2v";

/// The forms a secret could leak in: plain, base64 (at each of the three alignments a longer
/// base64 text could put it), quoted-printable, hex, percent-encoding, KOI8-R and
/// windows-1251 bytes. `(what, bytes)`.
pub fn secret_forms(secret: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vec![("plain".into(), secret.as_bytes().to_vec())];
    for pad in 0..3usize {
        let mut bytes = vec![b'\0'; pad];
        bytes.extend_from_slice(secret.as_bytes());
        let enc = base64(&bytes);
        // Drop the characters that depend on the padding bytes and the trailing partial group.
        let skip = match pad {
            0 => 0,
            1 => 2,
            _ => 3,
        };
        let whole = (pad + secret.len()) / 3 * 4;
        if whole > skip + 8 {
            v.push((
                format!("base64 (offset {pad})"),
                enc.as_bytes()[skip..whole].to_vec(),
            ));
        }
    }
    let qp: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            }
        })
        .collect();
    if qp != secret {
        v.push(("quoted-printable".into(), qp.into_bytes()));
    }
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    v.push(("hex".into(), hex.clone().into_bytes()));
    v.push(("HEX".into(), hex.to_uppercase().into_bytes()));
    let pct = enc(secret);
    if pct != secret {
        v.push(("percent-encoded".into(), pct.into_bytes()));
    }
    for e in [encoding_rs::KOI8_R, encoding_rs::WINDOWS_1251] {
        let (b, _, bad) = e.encode(secret);
        if !bad && b.as_ref() != secret.as_bytes() {
            v.push((e.name().to_owned(), b.into_owned()));
        }
    }
    v
}

/// Standard base64 (RFC 4648 §4), written here so the check does not trust the code it checks.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Where any of `secrets` (`(name, value)`) shows up in `text`, in any of [`secret_forms`].
pub fn find_secrets(secrets: &[(String, String)], text: &[u8], place: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (name, value) in secrets {
        for (form, bytes) in secret_forms(value) {
            if let Some(at) = text
                .windows(bytes.len())
                .position(|w| w == bytes.as_slice())
            {
                let from = at.saturating_sub(300);
                let to = (at + bytes.len() + 100).min(text.len());
                let shown = String::from_utf8_lossy(&text[from..to]);
                found.push(format!("{name} ({form}) in {place}: ...{shown}..."));
            }
        }
    }
    found
}

/// A port that was free a moment ago (bound on 127.0.0.1:0 and released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A random token of 64 hex characters.
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// An HTTP agent that reports 4xx/5xx as answers and opens a fresh connection per request
/// (the daemon may close a kept-alive connection after an early error answer, see
/// `early_error_answers_leave_the_connection_usable_or_say_close` in tests/api.rs; a test
/// about one request must not fail on the previous one's connection).
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .build()
        .into()
}

/// Writes `regmail.toml` for a store in `dir` listening on `port`.
pub fn write_config(dir: &Path, port: u16, opts: &Options) -> PathBuf {
    write_config_named(dir, "regmail.toml", port, opts)
}

/// Writes the configuration file `name` in `dir`: the store `dir/store`, the token file
/// `dir/api-token`, the API on `127.0.0.1:port`.
pub fn write_config_named(dir: &Path, name: &str, port: u16, opts: &Options) -> PathBuf {
    let mut text = format!(
        "[store]\npath = \"{}\"\ncache_capacity_mb = 16\n\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n",
        dir.join("store").display(),
        dir.join("api-token").display(),
    );
    if let Some(n) = opts.max_body_bytes {
        text.push_str(&format!("max_body_bytes = {n}\n"));
    }
    text.push_str(&opts.extra_api);
    match opts.outbound {
        Outbound::Dir => text.push_str(&format!(
            "\n[outbound]\ntransport = \"dir\"\ndir = \"{}\"\n",
            dir.join("outbox-mail").display()
        )),
        Outbound::Held => {
            let blocker = dir.join("blocked");
            std::fs::write(
                &blocker,
                "a file where the outbox directory's parent should be\n",
            )
            .expect("write the outbox blocker");
            text.push_str(&format!(
                "\n[outbound]\ntransport = \"dir\"\ndir = \"{}\"\nretry_initial = \"1h\"\nretry_max = \"1h\"\n",
                blocker.join("outbox-mail").display()
            ));
        }
    }
    if let Some((c, d, r)) = &opts.deadlines {
        text.push_str(&format!(
            "\n[deadlines]\nclient_reply = \"{c}\"\ndomain_reply = \"{d}\"\nrenewal_reply = \"{r}\"\n"
        ));
    }
    // The registrar password comes as a systemd credential (`$CREDENTIALS_DIRECTORY/
    // registrar-password`, set by spawn_serve_with), so tests stay free to write `[registrar]`.
    let creds = dir.join("credentials");
    std::fs::create_dir_all(&creds).expect("credentials dir");
    write_secret(
        &creds.join("registrar-password"),
        &format!("{REGISTRAR_SECRET}\n"),
    );
    text.push_str(&opts.extra_config);
    text.push_str(&format!(
        "\n[log]\nfilter = \"{}\"\n",
        opts.log_filter.as_deref().unwrap_or("info")
    ));
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts `regmail serve --config <config>` with its stdout and stderr appended to `log`.
pub fn spawn_serve(config: &Path, log: &Path) -> Child {
    spawn_serve_with(config, log, &Options::default())
}

/// [`spawn_serve`] with extra environment variables (e.g. `REGMAIL_CRASH_AT`).
pub fn spawn_serve_env(config: &Path, log: &Path, env: &[(String, String)]) -> Child {
    let opts = Options {
        env: env.to_vec(),
        ..Options::default()
    };
    spawn_serve_with(config, log, &opts)
}

/// [`spawn_serve`] with the process settings of `opts` (descriptor limit, environment).
pub fn spawn_serve_with(config: &Path, log: &Path, opts: &Options) -> Child {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open daemon log");
    let err = out.try_clone().expect("clone log handle");
    let mut cmd = Command::new(BIN);
    // Relative default paths land in the test's directory, never in the source tree.
    if let Some(dir) = config.parent() {
        cmd.current_dir(dir);
    }
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    if let Some(dir) = config.parent()
        && dir.join("credentials").is_dir()
    {
        cmd.env("CREDENTIALS_DIRECTORY", dir.join("credentials"));
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    if let Some(mask) = opts.umask {
        use std::os::unix::process::CommandExt;
        // SAFETY: only umask(2), async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(mask as libc::mode_t);
                Ok(())
            });
        }
    }
    if let Some(n) = opts.nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit(2), async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn().expect("spawn regmail serve")
}

/// Waits up to `timeout` for a child to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Daemon {
    /// Starts a daemon with the default configuration.
    pub fn start() -> Daemon {
        Daemon::start_with(Options::default())
    }

    /// Starts a daemon with `opts`.
    pub fn start_with(opts: Options) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("regmail-test-")
            .tempdir()
            .expect("tempdir");
        let token = random_token();
        std::fs::write(dir.path().join("api-token"), format!("{token}\n")).expect("write token");
        let port = free_port();
        let config_path = write_config(dir.path(), port, &opts);
        let mut d = Daemon {
            dir,
            config_path,
            token,
            port,
            opts,
            child: None,
            agent: agent(Duration::from_secs(30)),
            leaks: std::sync::Mutex::default(),
        };
        d.launch();
        d
    }

    /// The temporary directory (config, token, store, daemon log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The store directory.
    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The file the daemon's stdout and stderr go to (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The child's pid (None when not running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the child process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        for attempt in 0..3 {
            let mut child = spawn_serve_with(&self.config_path, &self.log_path(), &self.opts);
            match self.wait_ready(&mut child) {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = self.stderr();
                    // The free port was taken by someone else in between: pick another.
                    if attempt < 2 && log.contains("cannot listen") {
                        self.port = free_port();
                        self.config_path = write_config(self.dir.path(), self.port, &self.opts);
                        continue;
                    }
                    panic!("the daemon did not come up: {why}\n--- daemon stderr ---\n{log}");
                }
            }
        }
    }

    fn wait_ready(&self, child: &mut Child) -> Result<(), String> {
        let quick = agent(Duration::from_secs(1));
        let start = Instant::now();
        let url = format!("{}/healthz", self.base());
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("it exited with {status}"));
            }
            if let Ok(mut r) = quick.get(&url).call()
                && r.status().as_u16() == 200
            {
                let body = r.body_mut().read_to_string().unwrap_or_default();
                if body.contains("ok") {
                    return Ok(());
                }
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "GET /healthz did not answer within {READY_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL (no chance to flush or clean up) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the daemon is not running");
        child.kill().expect("SIGKILL the daemon");
        child.wait().expect("reap the daemon");
    }

    /// Stops the daemon with SIGTERM and waits for it to exit (at most 15 s).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is not running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
        match wait_exit(&mut child, Duration::from_secs(15)) {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not stop within 15 s of SIGTERM\n--- daemon stderr ---\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Starts the daemon again on the same directory (same store, config and token).
    pub fn restart(&mut self) {
        self.launch();
    }

    /// Any request; `headers` come in addition to the token (unless `auth` is false).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        auth: bool,
    ) -> Reply {
        let url = format!("{}{path}", self.base());
        let bearer = format!("Bearer {}", self.token);
        let result = match method {
            "GET" => {
                let get = || {
                    let mut rb = self.agent.get(&url);
                    if auth {
                        rb = rb.header("Authorization", &bearer);
                    }
                    for (k, v) in headers {
                        rb = rb.header(*k, *v);
                    }
                    rb.call()
                };
                // A pooled keep-alive connection the server closed while it sat idle (the API
                // closes idle connections at its cap) fails on reuse: like any HTTP client, retry
                // the idempotent GET once on a new connection (RFC 9112 §9.3.1).
                match get() {
                    Err(ureq::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        get()
                    }
                    other => other,
                }
            }
            "POST" | "PUT" => {
                let mut rb = if method == "POST" {
                    self.agent.post(&url)
                } else {
                    self.agent.put(&url)
                };
                if auth {
                    rb = rb.header("Authorization", &bearer);
                }
                for (k, v) in headers {
                    rb = rb.header(*k, *v);
                }
                match body {
                    Body::None => rb.send_empty(),
                    Body::Json(v) => rb.send_json(v),
                    Body::Raw(b) => rb.content_type("application/json").send(b),
                }
            }
            "DELETE" => {
                let mut rb = self.agent.delete(&url);
                if auth {
                    rb = rb.header("Authorization", &bearer);
                }
                rb.call()
            }
            other => panic!("method {other} is not supported by the harness"),
        };
        let mut resp = result.unwrap_or_else(|e| {
            panic!(
                "{method} {path} failed at the HTTP level: {e}\n--- daemon stderr ---\n{}",
                self.stderr()
            )
        });
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body failed: {e}"));
        self.note_leaks(text.as_bytes(), &format!("the answer to {method} {path}"));
        Reply {
            status,
            headers,
            text,
        }
    }

    /// `GET path` with the token.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.call("GET", path, &[], Body::None, true);
        (r.status, r.json())
    }

    /// `POST path` with a JSON body and the token.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.call("POST", path, &[], Body::Json(body), true);
        (r.status, r.json())
    }

    /// `PUT path` with a JSON body and the token.
    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.call("PUT", path, &[], Body::Json(body), true);
        (r.status, r.json())
    }

    /// `GET path`, asserting 200.
    pub fn get_ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// `POST path`, asserting `status`.
    pub fn post_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        let (s, v) = self.post(path, body);
        assert_eq!(s, status, "POST {path} {body}: {v}");
        v
    }

    /// Writes raw bytes on a fresh TCP connection and reads until the server closes it (or 10 s
    /// pass). Returns the status code and the body text.
    pub fn raw(&self, request: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(request).expect("write raw request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if response_complete(&buf) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in the raw answer {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// `Authorization` header line for raw requests.
    pub fn auth_line(&self) -> String {
        format!("Authorization: Bearer {}\r\n", self.token)
    }

    /// Runs `regmail --config <config> <args>` (the operator CLI) and waits for it.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let out = run_cli(&self.config_path, args);
        let place = format!("the output of regmail {}", args.join(" "));
        self.note_leaks(out.stdout.as_bytes(), &place);
        self.note_leaks(out.stderr.as_bytes(), &place);
        out
    }

    /// The secrets this daemon holds: its API token and the registrar password.
    pub fn secrets(&self) -> Vec<(String, String)> {
        vec![
            ("the API token".into(), self.token.clone()),
            ("the registrar password".into(), REGISTRAR_SECRET.into()),
        ]
    }

    /// Records every secret found in `bytes` (checked at drop).
    pub fn note_leaks(&self, bytes: &[u8], place: &str) {
        let found = find_secrets(&self.secrets(), bytes, place);
        if !found.is_empty() {
            self.leaks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(found);
        }
    }

    /// Every secret leak seen so far: in API answers, CLI outputs and the daemon's log.
    pub fn secret_leaks(&self) -> Vec<String> {
        let mut all = self.leaks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        for (n, line) in log.split(|&b| b == b'\n').enumerate() {
            all.extend(find_secrets(
                &self.secrets(),
                line,
                &format!("daemon log line {}", n + 1),
            ));
        }
        all
    }

    /// Runs the CLI against this daemon with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        run_cli_env(&self.config_path, args, env)
    }

    /// The whole global log, paged through with `since`/`next`.
    pub fn full_log(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut since = 0u64;
        loop {
            let v = self.get_ok(&format!("/v1/log?since={since}&limit=1000"));
            let entries = v["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                return out;
            }
            since = v["next"].as_u64().expect("next");
            out.extend(entries);
        }
    }

    /// `GET /v1/stats`.
    pub fn stats(&self) -> Value {
        self.get_ok("/v1/stats")
    }

    /// Polls `cond` every 20 ms for up to 10 s; panics with `what` and the daemon's stderr.
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut(&Daemon) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > Duration::from_secs(10) {
                panic!(
                    "timed out after 10 s waiting for {what}\n--- daemon stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the outbox worker has handled every queued request (the outbox is empty)
    /// and the log has been quiet for 200 ms (a message the worker had in hand when its
    /// request left the outbox is still logged), so that nothing changes in the background
    /// any more. Only for [`Outbound::Dir`].
    pub fn settle(&self) {
        assert_eq!(
            self.opts.outbound,
            Outbound::Dir,
            "settle() needs Outbound::Dir"
        );
        let mut last = (Value::Null, Instant::now());
        self.wait_for("the outbox to drain and the log to be quiet", |d| {
            let s = d.stats();
            if s["outbox"] != 0 {
                return false;
            }
            if s["log_seq"] != last.0 {
                last = (s["log_seq"].clone(), Instant::now());
                return false;
            }
            last.1.elapsed() >= Duration::from_millis(200)
        });
    }

    /// Waits until request `id` is in `state`; returns the request.
    pub fn wait_request(&self, id: &str, state: &str) -> Value {
        self.wait_for(&format!("request {id} to be {state}"), |d| {
            d.get_ok(&format!("/v1/requests/{id}"))["state"] == state
        });
        self.get_ok(&format!("/v1/requests/{id}"))
    }

    /// The directory the `dir` transport writes to.
    pub fn outbox_dir(&self) -> PathBuf {
        self.dir.path().join("outbox-mail")
    }

    /// The messages the `dir` transport wrote: (token, content), sorted by token. Temporary
    /// files of an interrupted write (`.<token>.eml.tmp`) are left out.
    pub fn sent_mail(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.outbox_dir()) else {
            return out;
        };
        for e in rd {
            let e = e.expect("read outbox dir");
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(token) = name.strip_suffix(".eml")
                && !name.starts_with('.')
            {
                let bytes = std::fs::read(e.path()).expect("read .eml");
                out.push((
                    token.to_owned(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
        out.sort();
        out
    }

    /// The message written for request `r` (a request JSON); panics when there is none.
    pub fn mail_of(&self, r: &Value) -> String {
        let token = r["token"].as_str().expect("request token");
        let path = self.outbox_dir().join(format!("{token}.eml"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("no message {} for request {r}: {e}", path.display()));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The number of requests in `state` (via `GET /v1/requests?state=`).
    pub fn requests_in(&self, state: &str) -> Vec<Value> {
        let v = self.get_ok(&format!("/v1/requests?state={state}&limit=1000"));
        v["requests"].as_array().cloned().unwrap_or_default()
    }
}

/// True once `buf` holds a whole HTTP/1.1 response with a `Content-Length` body.
fn response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    matches!(len, Some(n) if body.len() >= n)
}

/// Runs `regmail --config <config> <args>`.
pub fn run_cli(config: &Path, args: &[&str]) -> CliOutput {
    run_cli_env(config, args, &[])
}

/// Runs the CLI with extra environment variables (e.g. `COLUMNS`).
pub fn run_cli_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = Command::new(BIN);
    if let Some(dir) = config.parent() {
        cmd.current_dir(dir);
    }
    cmd.arg("--config").arg(config).args(args);
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    cmd.env_remove("COLUMNS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run the regmail CLI");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Rule 4, over the whole suite: no secret in any answer, CLI output or log line.
        let leaks = self.secret_leaks();
        if !leaks.is_empty() && !std::thread::panicking() {
            panic!(
                "a secret leaked ({} places):\n{}",
                leaks.len(),
                leaks.join("\n")
            );
        }
        if std::thread::panicking() {
            eprintln!(
                "--- daemon stderr ({}) ---\n{}\n--- end of daemon stderr ---",
                self.log_path().display(),
                self.stderr()
            );
        }
    }
}

/// Writes a secret file private to the user (0600), as regmail requires of every secret file
/// it reads (`read_secret_file` refuses one that others can read).
pub fn write_secret(path: &Path, content: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("write secret file {}: {e}", path.display()));
    f.write_all(content.as_bytes()).expect("write secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// Reads a file to a string (empty when missing).
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

// ---- test data --------------------------------------------------------------------------------

/// A valid natural person client body.
pub fn person(id: &str) -> Value {
    json!({
        "id": id,
        "registrant": {
            "type": "person",
            "fio_ru": "Иванов Иван Иванович",
            "fio_en": "Ivan I Ivanov",
            "passport": ["4500 123456", "выдан ОВД Тверского р-на г. Москвы", "01.02.2003"],
            "birth_date": "1980-01-31",
            "postal_addr": ["101000, Москва, ул. Мясницкая, д. 1, кв. 2"],
            "phone": "+7 495 1234567",
            "email": "ivanov@example.com"
        }
    })
}

/// A valid organization client body.
pub fn organization(id: &str) -> Value {
    json!({
        "id": id,
        "registrant": {
            "type": "organization",
            "org_name_ru": "ООО \"Ромашка\"",
            "org_name_en": "Romashka LLC",
            "inn": "7701234567",
            "kpp": "770101001",
            "legal_addr": ["101000, Москва, ул. Мясницкая, д. 1"],
            "postal_addr": ["101000, Москва, а/я 1"],
            "phone": "+7 495 7654321",
            "email": "office@romashka.example"
        },
        "contact": {"name": "Petr Petrov", "email": "petr@romashka.example"}
    })
}

/// A person client the registrar already knows (imported with its handle).
pub fn imported(id: &str, handle: &str) -> Value {
    let mut v = person(id);
    v["handle"] = json!(handle);
    v
}

/// A domain order body.
pub fn order(domain: &str, client: &str, paid: bool) -> Value {
    json!({
        "domain": domain,
        "client_id": client,
        "years": 1,
        "nameservers": ["ns1.hoster.example", "ns2.hoster.example"],
        "order_id": format!("ord-{domain}"),
        "paid": paid
    })
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters stay).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The count for `name` in a `/v1/stats` list (`[["Queued", 1], ...]`).
pub fn count(stats: &Value, list: &str, name: &str) -> u64 {
    stats[list]
        .as_array()
        .and_then(|a| a.iter().find(|p| p[0] == name).and_then(|p| p[1].as_u64()))
        .unwrap_or_else(|| panic!("no {list}/{name} in stats {stats}"))
}
