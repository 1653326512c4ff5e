//! Mail-side helpers for `tests/outbound_mail.rs` and `benches/smtp_send.rs`:
//!
//! - the real mail stack: `scripts/mailstack.sh up` once per process ([`stack`]), loud on failure;
//! - reading mailboxes over IMAPS (Dovecot, CA-verified) through `imap_fetch.py` ([`fetch`],
//!   [`count`], [`wait_for_mail`], [`delete`]);
//! - a delivered message split into the trace fields Postfix and Dovecot added, the message as
//!   the client sent it, its header fields and its body ([`Mail`]);
//! - Postfix fault control: [`PostfixDown`] stops it and starts it again on drop; the
//!   [`postfix_shared`] / [`postfix_exclusive`] lock keeps the tests that need Postfix running
//!   away from the tests that stop it;
//! - a fake SMTP server that hangs up after the message data ([`FakeSmtp`]);
//! - a `regmail serve` configured for mail ([`MailDaemon`], [`MailConfig`]) that records every
//!   API answer, so a test can search all of them for secrets.
//!
//! Needs `crate::common` (tests/common/mod.rs) for spawning the binary and the CLI.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

/// The repository (for `scripts/mailstack.sh` and the IMAP helper).
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The registrar's e-mail interface password the test daemons are given: distinctive, so a
/// leak is found by a plain substring search.
pub const REGISTRAR_PASSWORD: &str = "R01-pass-Zq8w!";
/// The agreement number of the test configuration.
pub const AGREEMENT: &str = "RP/01/00";
/// The registrar's gateway mailbox.
pub const ROBOT: &str = "robot@registrar.test";
/// Our callback mailbox (From of every request; the SMTP AUTH user).
pub const CALLBACK: &str = "gateway@gateway.test";
/// The BCC mailbox.
pub const COPIES: &str = "copies@gateway.test";
/// A virtual-domain address without a mailbox: 550 at RCPT.
pub const NOBODY: &str = "nobody@gateway.test";

// ---- the mail stack ---------------------------------------------------------------------------

/// The running mail stack: the `KEY=value` lines of `scripts/mailstack.sh env`.
#[derive(Debug)]
pub struct Stack {
    vars: HashMap<String, String>,
}

impl Stack {
    /// A variable of `mailstack.sh env` (panics when missing: the script changed).
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("scripts/mailstack.sh env has no {key}: {:?}", self.vars))
    }

    /// The test CA that signed the server certificate.
    pub fn ca_file(&self) -> &str {
        self.var("MAILSTACK_CA_FILE")
    }

    /// The password of a mailbox user (full address).
    pub fn password_of(&self, user: &str) -> &str {
        let key = self
            .vars
            .iter()
            .find(|(k, v)| k.ends_with("_USER") && v.as_str() == user)
            // strip_suffix, not trim_end_matches: user@ has the key MAILSTACK_USER_USER.
            .map(|(k, _)| k.strip_suffix("_USER").unwrap_or(k).to_owned())
            .unwrap_or_else(|| panic!("{user} is not a mailbox of the test mail stack"));
        self.var(&format!("{key}_PASSWORD"))
    }

    /// The SMTP AUTH password of the callback user.
    pub fn smtp_password(&self) -> &str {
        self.password_of(CALLBACK)
    }
}

fn mailstack(args: &[&str]) -> Result<String, String> {
    let script = format!("{REPO}/scripts/mailstack.sh");
    let out = Command::new(&script)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{script} {}` failed with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();

/// Brings the mail stack up (once per process: `scripts/mailstack.sh up` is idempotent) and
/// returns its settings. Panics loudly when it cannot: these tests never skip.
pub fn stack() -> &'static Stack {
    let r = STACK.get_or_init(|| {
        let t = Instant::now();
        mailstack(&["up"])?;
        let env = mailstack(&["env"])?;
        let vars: HashMap<String, String> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let py = Command::new("python3")
            .arg("--version")
            .output()
            .map_err(|e| format!("python3 is needed to read mailboxes over IMAP: {e}"))?;
        if !py.status.success() {
            return Err("python3 --version failed; python3 reads the mailboxes".into());
        }
        eprintln!("mail stack up in {:?}", t.elapsed());
        Ok(Stack { vars })
    });
    match r {
        Ok(s) => s,
        Err(e) => panic!("the mail stack is not available, so the mail tests cannot run:\n{e}"),
    }
}

// ---- Postfix: the lock and the fault ----------------------------------------------------------

static POSTFIX: RwLock<()> = RwLock::new(());

/// Held by every test that needs Postfix running: many at once.
pub fn postfix_shared() -> RwLockReadGuard<'static, ()> {
    POSTFIX.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by a test that stops Postfix: alone.
pub fn postfix_exclusive() -> RwLockWriteGuard<'static, ()> {
    POSTFIX.write().unwrap_or_else(PoisonError::into_inner)
}

/// Postfix stopped by this test; started again by [`PostfixDown::start`] or, whatever happens
/// to the test, on drop. Hold [`postfix_exclusive`] while it exists (declare the lock first, so
/// it is released after this guard restarted Postfix).
pub struct PostfixDown {
    down: bool,
}

impl PostfixDown {
    /// Stops Postfix (Dovecot keeps running).
    pub fn stop() -> PostfixDown {
        stack();
        mailstack(&["stop-postfix"]).unwrap_or_else(|e| panic!("{e}"));
        PostfixDown { down: true }
    }

    /// Starts Postfix again (and flushes its queue).
    pub fn start(&mut self) {
        if self.down {
            self.down = false;
            mailstack(&["start-postfix"]).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

impl Drop for PostfixDown {
    fn drop(&mut self) {
        if self.down {
            self.down = false;
            if let Err(e) = mailstack(&["start-postfix"]).or_else(|_| mailstack(&["up"])) {
                eprintln!("!!! could not start Postfix again after a fault test: {e}");
            }
        }
    }
}

// ---- IMAP -------------------------------------------------------------------------------------

/// Which messages of a mailbox.
#[derive(Debug, Clone)]
pub enum Search {
    /// Subject contains the text (IMAP `HEADER Subject`, a substring match).
    Subject(String),
    /// The header field contains the text.
    Header(String, String),
    /// Every message.
    All,
}

impl Search {
    /// Messages whose Message-ID field contains `id`.
    pub fn message_id(id: &str) -> Search {
        Search::Header("Message-ID".into(), id.into())
    }
    /// Messages whose Subject contains `text`.
    pub fn subject(text: &str) -> Search {
        Search::Subject(text.into())
    }
}

fn imap(user: &str, search: &Search, extra: &[&str]) -> (Vec<Vec<u8>>, usize) {
    let s = stack();
    let script = format!("{REPO}/tests/support_mail/imap_fetch.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args(["--user", user, "--password", s.password_of(user)])
        .args(["--ca", s.ca_file()])
        .args(["--host", s.var("MAILSTACK_HOST")])
        .args(["--port", s.var("MAILSTACK_IMAPS_PORT")]);
    match search {
        Search::Subject(t) => {
            cmd.args(["--subject", t]);
        }
        Search::Header(n, v) => {
            cmd.args(["--header", n, v]);
        }
        Search::All => {
            cmd.arg("--all");
        }
    }
    cmd.args(extra);
    // The stack is shared by everything on this machine: another test may restart Dovecot
    // under us, so a failed session is tried again a few times before it counts.
    let mut failures = Vec::new();
    for attempt in 0..4 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500 * attempt));
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 {script}: {e}"));
        if out.status.success() {
            return parse_imap_output(&out.stdout)
                .unwrap_or_else(|e| panic!("imap_fetch.py answered something unexpected: {e}"));
        }
        failures.push(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    panic!(
        "reading {user}'s mailbox over IMAP failed {} times:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn parse_imap_output(mut buf: &[u8]) -> Result<(Vec<Vec<u8>>, usize), String> {
    let mut msgs = Vec::new();
    loop {
        let nl = buf.iter().position(|b| *b == b'\n').ok_or("no END line")?;
        let line = std::str::from_utf8(&buf[..nl]).map_err(|e| e.to_string())?;
        buf = &buf[nl + 1..];
        if let Some(n) = line.strip_prefix("MSG ") {
            let n: usize = n.parse().map_err(|_| format!("bad line {line:?}"))?;
            if buf.len() < n + 1 {
                return Err(format!("message of {n} octets is cut short"));
            }
            msgs.push(buf[..n].to_vec());
            buf = &buf[n + 1..];
        } else if let Some(n) = line.strip_prefix("END ") {
            return Ok((msgs, n.parse().map_err(|_| format!("bad line {line:?}"))?));
        } else {
            return Err(format!("unexpected line {line:?}"));
        }
    }
}

/// Every message of `user`'s INBOX matching `search`, oldest first.
pub fn fetch(user: &str, search: &Search) -> Vec<Mail> {
    imap(user, search, &[])
        .0
        .into_iter()
        .map(Mail::parse)
        .collect()
}

/// How many messages of `user`'s INBOX match `search`.
pub fn count(user: &str, search: &Search) -> usize {
    imap(user, search, &["--count-only"]).1
}

/// Expunges the matching messages of `user`'s INBOX; returns how many there were.
pub fn delete(user: &str, search: &Search) -> usize {
    imap(user, search, &["--count-only", "--delete"]).1
}

/// Polls `user`'s INBOX until at least `at_least` messages match; returns them all. Panics after
/// `timeout` with what was found.
pub fn wait_for_mail(user: &str, search: &Search, at_least: usize, timeout: Duration) -> Vec<Mail> {
    let start = Instant::now();
    loop {
        if count(user, search) >= at_least {
            return fetch(user, search);
        }
        if start.elapsed() > timeout {
            let n = count(user, search);
            panic!(
                "{user}'s INBOX holds {n} message(s) matching {search:?} after {timeout:?}; expected at least {at_least}\n--- mail logs ---\n{}",
                mailstack(&["logs", "15"]).unwrap_or_else(|e| e)
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Waits for the first matching message, then `grace` more, and returns the final count: for
/// "exactly one copy" checks.
pub fn settled_count(user: &str, search: &Search, timeout: Duration, grace: Duration) -> usize {
    wait_for_mail(user, search, 1, timeout);
    std::thread::sleep(grace);
    count(user, search)
}

// ---- messages ---------------------------------------------------------------------------------

/// A message as delivered (or as written by the `dir` transport).
#[derive(Debug, Clone)]
pub struct Mail {
    /// The raw bytes.
    pub raw: Vec<u8>,
    /// The trace fields Postfix and Dovecot prepend on delivery (Return-Path, Delivered-To,
    /// Received), unfolded.
    pub trace: Vec<(String, String)>,
    /// The message as the client sent it: `raw` without the leading trace fields.
    pub sent: Vec<u8>,
    /// The header fields of `sent`, unfolded, in order.
    pub headers: Vec<(String, String)>,
    /// The body of `sent` (after the first empty line).
    pub body: Vec<u8>,
}

fn unfold(lines: &[&[u8]]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for l in lines {
        let text = String::from_utf8_lossy(l);
        if text.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(text.trim());
            }
        } else if let Some((k, v)) = text.split_once(':') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        } else {
            out.push((text.into_owned(), String::new()));
        }
    }
    out
}

impl Mail {
    /// Splits a message.
    pub fn parse(raw: Vec<u8>) -> Mail {
        // Header lines up to the empty line (lines end in CRLF; a bare LF is tolerated here and
        // reported by the line checks of the tests).
        let mut lines: Vec<(usize, &[u8])> = Vec::new();
        let mut pos = 0;
        let mut body_start = raw.len();
        while pos < raw.len() {
            let end = raw[pos..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(raw.len(), |i| pos + i + 1);
            let line = &raw[pos..end];
            let content = line
                .strip_suffix(b"\n")
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .unwrap_or(line);
            if content.is_empty() {
                body_start = end;
                break;
            }
            lines.push((pos, content));
            pos = end;
        }
        // Leading trace fields: a field name line plus its continuation lines.
        let is_trace = |l: &[u8]| {
            let l = String::from_utf8_lossy(l).to_ascii_lowercase();
            l.starts_with("return-path:")
                || l.starts_with("delivered-to:")
                || l.starts_with("received:")
        };
        let mut first_sent = lines.len();
        let mut in_trace = false;
        for (i, (_, l)) in lines.iter().enumerate() {
            if l.starts_with(b" ") || l.starts_with(b"\t") {
                if in_trace {
                    continue;
                }
                first_sent = i;
                break;
            }
            if is_trace(l) {
                in_trace = true;
                continue;
            }
            first_sent = i;
            break;
        }
        let sent_offset = lines.get(first_sent).map_or(0, |(p, _)| *p);
        let trace_lines: Vec<&[u8]> = lines[..first_sent].iter().map(|(_, l)| *l).collect();
        let header_lines: Vec<&[u8]> = lines[first_sent..].iter().map(|(_, l)| *l).collect();
        Mail {
            trace: unfold(&trace_lines),
            headers: unfold(&header_lines),
            sent: raw[sent_offset..].to_vec(),
            body: raw[body_start..].to_vec(),
            raw,
        }
    }

    /// The values of every header field named `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the header field `name` when it occurs exactly once.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.all(name).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The value of a trace field (`Delivered-To`).
    pub fn trace_field(&self, name: &str) -> Vec<&str> {
        self.trace
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

// ---- a fake SMTP server -----------------------------------------------------------------------

/// How a [`FakeSmtp`] behaves.
#[derive(Debug, Clone)]
pub struct FakeScript {
    /// Offer 8BITMIME in the EHLO answer.
    pub eight_bit_mime: bool,
    /// The answer to the final `.` of the n-th message (the last entry for all later ones):
    /// None closes the connection without a reply.
    pub after_data: Vec<Option<String>>,
}

impl Default for FakeScript {
    fn default() -> Self {
        FakeScript {
            eight_bit_mime: true,
            after_data: vec![None],
        }
    }
}

/// An SMTP server on 127.0.0.1. By default it accepts everything up to the message data, reads
/// the data to the final `.`, then closes the connection without a reply: the mail link breaks
/// after the data was sent (RFC 5321 §4.1.1.4), so the client cannot know whether the message
/// went. [`FakeScript`] changes that.
pub struct FakeSmtp {
    /// Its port.
    pub port: u16,
    /// Every message data received (dot-stuffed, without the final `.` line).
    pub messages: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every command line received.
    pub commands: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeSmtp {
    /// Starts the server with the default script (hang up after the data).
    pub fn start() -> FakeSmtp {
        FakeSmtp::start_with(FakeScript::default())
    }

    /// Starts the server with `script`.
    pub fn start_with(script: FakeScript) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake SMTP server");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local_addr").port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, c, s) = (messages.clone(), commands.clone(), stop.clone());
        let script = Arc::new(script);
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (m, c, script) = (m.clone(), c.clone(), script.clone());
                        std::thread::spawn(move || {
                            let _ = fake_session(stream, &script, &m, &c);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeSmtp {
            port,
            messages,
            commands,
            stop,
        }
    }

    /// The messages received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn fake_session(
    stream: TcpStream,
    script: &FakeScript,
    messages: &Mutex<Vec<Vec<u8>>>,
    commands: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 fake.test ESMTP fake\r\n")?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_owned();
        commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cmd.clone());
        let verb = cmd
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" if script.eight_bit_mime => {
                w.write_all(b"250-fake.test\r\n250 8BITMIME\r\n")?;
            }
            "EHLO" => w.write_all(b"250 fake.test\r\n")?,
            "HELO" => w.write_all(b"250 fake.test\r\n")?,
            "MAIL" | "RCPT" | "RSET" | "NOOP" => w.write_all(b"250 2.0.0 Ok\r\n")?,
            "QUIT" => {
                w.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            "DATA" => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(&line);
                }
                let n = {
                    let mut all = messages.lock().unwrap_or_else(PoisonError::into_inner);
                    all.push(data);
                    all.len()
                };
                let answer = script
                    .after_data
                    .get(n - 1)
                    .or(script.after_data.last())
                    .cloned()
                    .flatten();
                match answer {
                    Some(reply) => w.write_all(format!("{reply}\r\n").as_bytes())?,
                    None => {
                        // No reply to the final ".": the connection just ends.
                        let _ = w.shutdown(std::net::Shutdown::Both);
                        return Ok(());
                    }
                }
            }
            _ => w.write_all(b"502 5.5.2 Command not recognized\r\n")?,
        }
    }
}

// ---- a regmail daemon configured for mail ------------------------------------------------------

/// Where the test daemon's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Postfix submission: 127.0.0.1:587, STARTTLS verified with the test CA (name
    /// mail.gateway.test), AUTH as the callback user.
    Submission,
    /// Postfix on 127.0.0.1:25, plain, no AUTH (the benchmark).
    Relay25,
    /// A fake server on this port, plain, no AUTH.
    Fake(u16),
    /// The `dir` transport into `<tmp>/outbox-mail`.
    Dir,
}

/// The test daemon's mail settings.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The transport.
    pub out: Out,
    /// `registrar.gateway`.
    pub gateway: String,
    /// `registrar.bcc` (None: no BCC).
    pub bcc: Option<String>,
    /// `registrar.charset` (None: the profile's koi8-r).
    pub charset: Option<String>,
    /// `registrar.pay_type`.
    pub pay_type: Option<String>,
    /// `[log] filter`.
    pub log_filter: String,
    /// `outbound.retry_initial`, `outbound.retry_max`.
    pub retry: (String, String),
    /// More configuration text appended as is (e.g. a `[notices]` section).
    pub extra: String,
    /// Environment variables for the daemon process (e.g. `REGMAIL_TEST_CLOCK`); read at every
    /// (re)start, so a test may change them between restarts.
    pub env: Vec<(String, String)>,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            out: Out::Submission,
            gateway: ROBOT.into(),
            bcc: Some(COPIES.into()),
            charset: None,
            pay_type: None,
            log_filter: "info".into(),
            retry: ("500ms".into(), "2s".into()),
            extra: String::new(),
            env: Vec::new(),
        }
    }
}

fn toml_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

impl MailConfig {
    fn text(&self, dir: &Path, port: u16) -> String {
        let p = |name: &str| toml_str(&dir.join(name).display().to_string());
        let mut t = String::new();
        t += &format!(
            "[store]\npath = {}\ncache_capacity_mb = 16\n\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {}\n\n",
            p("store"),
            p("api-token")
        );
        t += "[registrar]\n";
        t += &format!("gateway = {}\n", toml_str(&self.gateway));
        t += &format!("callback = {}\n", toml_str(CALLBACK));
        if let Some(b) = &self.bcc {
            t += &format!("bcc = {}\n", toml_str(b));
        }
        t += &format!("agreement = {}\n", toml_str(AGREEMENT));
        t += &format!("password_file = {}\n", p("registrar-password"));
        if let Some(c) = &self.charset {
            t += &format!("charset = {}\n", toml_str(c));
        }
        if let Some(pt) = &self.pay_type {
            t += &format!("pay_type = {}\n", toml_str(pt));
        }
        t += "\n[outbound]\n";
        match self.out {
            Out::Dir => t += &format!("transport = \"dir\"\ndir = {}\n", p("outbox-mail")),
            _ => t += "transport = \"smtp\"\n",
        }
        t += &format!(
            "retry_initial = {}\nretry_max = {}\n\n",
            toml_str(&self.retry.0),
            toml_str(&self.retry.1)
        );
        match self.out {
            Out::Submission => {
                let s = stack();
                t += &format!(
                    "[smtp]\nhost = {}\nport = {}\ntls = \"starttls\"\ntls_server_name = {}\nca_file = {}\nusername = {}\npassword_file = {}\ntimeout = \"10s\"\n\n",
                    toml_str(s.var("MAILSTACK_HOST")),
                    s.var("MAILSTACK_SUBMISSION_PORT"),
                    toml_str(s.var("MAILSTACK_TLS_SERVER_NAME")),
                    toml_str(s.ca_file()),
                    toml_str(CALLBACK),
                    p("smtp-password"),
                );
            }
            Out::Relay25 => {
                let s = stack();
                t += &format!(
                    "[smtp]\nhost = {}\nport = {}\ntls = \"none\"\ntimeout = \"10s\"\n\n",
                    toml_str(s.var("MAILSTACK_HOST")),
                    s.var("MAILSTACK_SMTP_PORT"),
                );
            }
            Out::Fake(port) => {
                t += &format!(
                    "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout = \"5s\"\n\n"
                );
            }
            Out::Dir => {}
        }
        t += &format!("[log]\nfilter = {}\n", toml_str(&self.log_filter));
        t += &self.extra;
        t
    }
}

/// `regmail serve` on a temporary directory with a mail configuration, talked to over HTTP.
/// Every API answer body is kept ([`MailDaemon::answers`]).
pub struct MailDaemon {
    dir: tempfile::TempDir,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The API token.
    pub token: String,
    /// The configuration it was started with.
    pub config: MailConfig,
    port: u16,
    child: Option<Child>,
    agent: ureq::Agent,
    answers: Mutex<Vec<String>>,
}

impl MailDaemon {
    /// Starts a daemon (the mail stack is brought up first unless the transport is a fake
    /// server or a directory).
    pub fn start(config: MailConfig) -> MailDaemon {
        if matches!(config.out, Out::Submission | Out::Relay25) {
            stack();
        }
        let dir = tempfile::Builder::new()
            .prefix("regmail-mail-")
            .tempdir()
            .expect("tempdir");
        let token = common::random_token();
        std::fs::write(dir.path().join("api-token"), format!("{token}\n")).expect("token");
        common::write_secret(
            &dir.path().join("registrar-password"),
            &format!("{REGISTRAR_PASSWORD}\n"),
        );
        if config.out == Out::Submission {
            common::write_secret(
                &dir.path().join("smtp-password"),
                &format!("{}\n", stack().smtp_password()),
            );
        }
        let config_path = dir.path().join("regmail.toml");
        let mut d = MailDaemon {
            dir,
            config_path,
            token,
            config,
            port: 0,
            child: None,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
            answers: Mutex::new(Vec::new()),
        };
        d.launch(true);
        d
    }

    fn launch(&mut self, new_port: bool) {
        assert!(self.child.is_none(), "the daemon is already running");
        for attempt in 0..3 {
            if new_port || attempt > 0 {
                self.port = common::free_port();
                std::fs::write(
                    &self.config_path,
                    self.config.text(self.dir.path(), self.port),
                )
                .expect("write config");
            }
            let mut child =
                common::spawn_serve_env(&self.config_path, &self.log_path(), &self.config.env);
            match self.wait_ready(&mut child) {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if attempt < 2 && self.stderr().contains("cannot listen") {
                        continue;
                    }
                    panic!(
                        "the daemon did not come up: {why}\n--- config ---\n{}\n--- daemon stderr ---\n{}",
                        common::read(&self.config_path),
                        self.stderr()
                    );
                }
            }
        }
    }

    fn wait_ready(&self, child: &mut Child) -> Result<(), String> {
        let start = Instant::now();
        let url = format!("{}/healthz", self.base());
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("it exited with {status}"));
            }
            if let Ok(mut r) = self.agent.get(&url).call()
                && r.status().as_u16() == 200
                && r.body_mut()
                    .read_to_string()
                    .unwrap_or_default()
                    .contains("ok")
            {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("GET /healthz did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the `dir` transport writes.
    pub fn outbox_dir(&self) -> PathBuf {
        self.dir.path().join("outbox-mail")
    }

    /// The daemon's stdout and stderr (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// Everything the daemon wrote so far.
    pub fn stderr(&self) -> String {
        common::read(&self.log_path())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        let mut c = self.child.take().expect("the daemon is not running");
        c.kill().expect("SIGKILL the daemon");
        c.wait().expect("reap the daemon");
    }

    /// Starts it again on the same store, configuration and port.
    pub fn restart(&mut self) {
        self.launch(false);
    }

    /// Every API answer body received so far.
    pub fn answers(&self) -> Vec<String> {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Any call; returns the status and the raw body (which is recorded).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        let url = format!("{}{path}", self.base());
        let auth = format!("Bearer {}", self.token);
        let result = match method {
            "GET" => self.agent.get(&url).header("Authorization", &auth).call(),
            "POST" => {
                let rb = self.agent.post(&url).header("Authorization", &auth);
                match body {
                    Some(b) => rb.send_json(b),
                    None => rb.send_empty(),
                }
            }
            "PUT" => {
                let rb = self.agent.put(&url).header("Authorization", &auth);
                match body {
                    Some(b) => rb.send_json(b),
                    None => rb.send_empty(),
                }
            }
            other => panic!("method {other} is not supported"),
        };
        let mut resp = result.unwrap_or_else(|e| {
            panic!(
                "{method} {path} failed at the HTTP level: {e}\n--- daemon stderr ---\n{}",
                self.stderr()
            )
        });
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body failed: {e}"));
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text.clone());
        (status, text)
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let (s, t) = self.call("GET", path, None);
        (s, Self::json(&t))
    }

    /// `GET path`, asserting 200.
    pub fn get_ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// `GET path` as text, asserting 200.
    pub fn get_text(&self, path: &str) -> String {
        let (s, t) = self.call("GET", path, None);
        assert_eq!(s, 200, "GET {path}: {t}");
        t
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, t) = self.call("POST", path, Some(body));
        (s, Self::json(&t))
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, t) = self.call("PUT", path, Some(body));
        (s, Self::json(&t))
    }

    /// `POST path`, asserting `status`.
    pub fn post_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        let (s, v) = self.post(path, body);
        assert_eq!(s, status, "POST {path} {body}: {v}");
        v
    }

    /// `GET /v1/requests/{id}`.
    pub fn request(&self, id: &str) -> Value {
        self.get_ok(&format!("/v1/requests/{id}"))
    }

    /// Polls request `id` until its state is one of `states`; panics after `timeout`.
    pub fn wait_request(&self, id: &str, states: &[&str], timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let r = self.request(id);
            if states.iter().any(|s| r["state"] == *s) {
                return r;
            }
            if start.elapsed() > timeout {
                panic!(
                    "request {id} is {} after {timeout:?}, expected one of {states:?}: {r}\n--- its log ---\n{}\n--- daemon stderr ---\n{}",
                    r["state"],
                    self.get_ok(&format!("/v1/requests/{id}/log")),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls `cond` every 25 ms up to `timeout`; panics with `what`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- daemon stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The whole action log (`GET /v1/log`, paged).
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

    /// Log entries of request `id` with action `action`.
    pub fn log_of(&self, id: &str, action: &str) -> Vec<Value> {
        let v = self.get_ok(&format!("/v1/requests/{id}/log?limit=1000"));
        v["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect()
    }

    /// `GET /v1/stats`.
    pub fn stats(&self) -> Value {
        self.get_ok("/v1/stats")
    }

    /// Runs the operator CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> common::CliOutput {
        common::run_cli(&self.config_path, args)
    }

    /// Every place a secret of this daemon shows up: its stderr lines, action-log entries and
    /// API answers (plain, and base64 forms an SMTP AUTH exchange would carry).
    pub fn secret_leaks(&self) -> Vec<String> {
        let mut secrets: Vec<(String, String)> = vec![(
            "the registrar password".into(),
            REGISTRAR_PASSWORD.to_owned(),
        )];
        secrets.push((
            "the registrar password (base64)".into(),
            base64(REGISTRAR_PASSWORD.as_bytes()),
        ));
        if self.config.out == Out::Submission {
            let pw = stack().smtp_password().to_owned();
            secrets.push((
                "the SMTP password (base64 AUTH PLAIN)".into(),
                base64(format!("\0{CALLBACK}\0{pw}").as_bytes()),
            ));
            secrets.push(("the SMTP password (base64)".into(), base64(pw.as_bytes())));
            secrets.push(("the SMTP password".into(), pw));
        }
        let mut found = Vec::new();
        for (n, line) in self.stderr().lines().enumerate() {
            for (what, s) in &secrets {
                if line.contains(s.as_str()) {
                    found.push(format!("{what} in daemon stderr line {}: {line}", n + 1));
                }
            }
        }
        for e in self.full_log() {
            let text = e.to_string();
            for (what, s) in &secrets {
                if text.contains(s.as_str()) {
                    found.push(format!("{what} in action-log entry {text}"));
                }
            }
        }
        for a in self.answers() {
            for (what, s) in &secrets {
                if a.contains(s.as_str()) {
                    found.push(format!("{what} in an API answer: {a}"));
                }
            }
        }
        found
    }

    /// Panics when [`MailDaemon::secret_leaks`] finds anything.
    pub fn assert_no_secrets(&self) {
        let leaks = self.secret_leaks();
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    }
}

impl Drop for MailDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.stderr();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!(
                "--- daemon stderr, last lines ({}) ---\n{tail}\n--- end ---",
                self.log_path().display()
            );
        }
    }
}

/// Standard base64 (RFC 4648 §4) with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads a whole file (panics with its name).
pub fn read_bytes(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    v
}
