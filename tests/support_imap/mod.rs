//! Reply-side helpers for `tests/inbound_imap.rs` and `benches/imap_intake.rs`: the real
//! Dovecot of `scripts/mailstack.sh` seen from the registrar's side.
//!
//! - the gateway mailbox (regmail's callback inbox): one test at a time ([`exclusive`]), reset
//!   at the start of every test ([`reset_gateway`]), read and changed with `doveadm` (status,
//!   UIDs, flags, copy, UIDVALIDITY) and filled with `scripts/mailstack.sh inject` or SMTP;
//! - registrar replies in the wording of the shipped rules ([`Reply`]);
//! - a minimal SMTP client for Postfix on 127.0.0.1:25 ([`smtp_send`]);
//! - a plain IMAP client (async-imap over STARTTLS, verified with the test CA) for APPEND and
//!   for the benchmark's baseline fetch ([`PlainImap`]);
//! - `regmail serve` with `[inbound] source = "imap"` and the `dir` transport ([`ImapDaemon`]).
//!
//! Needs `crate::common` (spawning the binary) and `crate::support_mail` (bringing the stack up).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common;
use crate::support_mail;

/// regmail's callback mailbox (the IMAP login of every test daemon).
pub const GATEWAY: &str = "gateway@gateway.test";
/// The registrar's robot (the only configured sender).
pub const ROBOT: &str = "robot@registrar.test";
/// Another mailbox of the stack (a forged sender's real address).
pub const OTHER: &str = "other@gateway.test";
/// Where regmail moves what it processed.
pub const PROCESSED: &str = "Processed";
/// The host part of our Message-IDs.
pub const MID_HOST: &str = "gateway.test";

/// The repository.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

// ---- the shared mailbox ------------------------------------------------------------------------

static GATEWAY_LOCK: Mutex<()> = Mutex::new(());

/// The file lock the end-to-end tests (tests/support_e2e) take for the shared mailboxes, in the
/// temporary directory: taken here too, so that this binary, the benchmark and tests/e2e.rs never
/// use the gateway mailbox at the same time.
pub const CROSS_PROCESS_LOCK: &str = "regmail-e2e.lock";

/// The gateway mailbox, held: one test at a time in this process (a mutex) and across processes
/// (an exclusive `flock` on [`CROSS_PROCESS_LOCK`]).
pub struct Exclusive {
    _flock: std::fs::File,
    _lock: MutexGuard<'static, ()>,
}

/// Held by every test that uses the gateway mailbox (all of them): one at a time, also against
/// other test binaries and the benchmark.
pub fn exclusive() -> Exclusive {
    let lock = GATEWAY_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let path = std::env::temp_dir().join(CROSS_PROCESS_LOCK);
    let flock = std::fs::File::create(&path)
        .unwrap_or_else(|e| panic!("cannot create the lock file {}: {e}", path.display()));
    flock
        .lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    Exclusive {
        _flock: flock,
        _lock: lock,
    }
}

/// The stack, up (once per process; panics loudly when it cannot come up).
pub fn stack() -> &'static support_mail::Stack {
    support_mail::stack()
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{what}` failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `doveadm ARGS` (as root, like the script); Err with its output on failure.
pub fn try_doveadm(args: &[&str]) -> Result<String, String> {
    run(
        Command::new("doveadm").args(args),
        &format!("doveadm {}", args.join(" ")),
    )
}

/// `doveadm ARGS`, panicking on failure.
pub fn doveadm(args: &[&str]) -> String {
    try_doveadm(args).unwrap_or_else(|e| panic!("{e}"))
}

/// `scripts/mailstack.sh ARGS`, panicking on failure.
pub fn mailstack(args: &[&str]) -> String {
    let script = format!("{REPO}/scripts/mailstack.sh");
    run(
        Command::new(&script).args(args),
        &format!("{script} {}", args.join(" ")),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Empties the gateway's INBOX and Processed mailboxes (expunge: the servers keep running and
/// INBOX keeps its UIDVALIDITY).
pub fn reset_gateway() {
    stack();
    doveadm(&["expunge", "-u", GATEWAY, "mailbox", "INBOX", "all"]);
    if status(PROCESSED).is_some() {
        doveadm(&["expunge", "-u", GATEWAY, "mailbox", PROCESSED, "all"]);
    }
}

/// A mailbox's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Messages in it.
    pub messages: u32,
    /// Its UIDVALIDITY.
    pub uidvalidity: u32,
    /// Its UIDNEXT.
    pub uidnext: u32,
}

fn flow_fields(line: &str) -> Vec<(String, String)> {
    // `doveadm -f flow`: `key=value key=value`, the values of the fields asked for here have no
    // spaces except flags, which come last.
    let mut out: Vec<(String, String)> = Vec::new();
    for part in line.split(' ') {
        match part.split_once('=') {
            Some((k, v)) if !k.is_empty() && !k.starts_with('\\') => {
                out.push((k.to_owned(), v.to_owned()))
            }
            _ => {
                if let Some(last) = out.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(part);
                }
            }
        }
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The gateway mailbox's counters; None when it does not exist.
pub fn status(mailbox: &str) -> Option<Status> {
    let out = try_doveadm(&[
        "-f",
        "flow",
        "mailbox",
        "status",
        "-u",
        GATEWAY,
        "messages uidvalidity uidnext",
        mailbox,
    ])
    .ok()?;
    let f = flow_fields(out.trim());
    let num = |k: &str| -> u32 {
        field(&f, k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("doveadm mailbox status said {out:?}: no {k}"))
    };
    Some(Status {
        messages: num("messages"),
        uidvalidity: num("uidvalidity"),
        uidnext: num("uidnext"),
    })
}

/// Messages in a gateway mailbox (0 when it does not exist).
pub fn count(mailbox: &str) -> u32 {
    status(mailbox).map_or(0, |s| s.messages)
}

/// One message as `doveadm fetch` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its UID.
    pub uid: u32,
    /// Its Message-ID header, as written.
    pub message_id: String,
    /// Its flags, space separated (`\Recent`, `\Seen`, ...).
    pub flags: String,
}

/// Every message of a gateway mailbox (empty when it does not exist).
pub fn list(mailbox: &str) -> Vec<Listed> {
    let Ok(out) = try_doveadm(&[
        "-f",
        "flow",
        "fetch",
        "-u",
        GATEWAY,
        "uid hdr.message-id flags",
        "mailbox",
        mailbox,
        "all",
    ]) else {
        return Vec::new();
    };
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f = flow_fields(l.trim());
            Listed {
                uid: field(&f, "uid")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("doveadm fetch said {l:?}")),
                message_id: field(&f, "hdr.message-id").unwrap_or("").trim().to_owned(),
                flags: field(&f, "flags").unwrap_or("").trim().to_owned(),
            }
        })
        .collect()
}

/// Copies the message `uid` of gateway mailbox `from` into `to` (a new UID there, same bytes).
pub fn copy(from: &str, uid: u32, to: &str) {
    doveadm(&[
        "copy",
        "-u",
        GATEWAY,
        to,
        "mailbox",
        from,
        "uid",
        &uid.to_string(),
    ]);
}

/// Sets the UIDVALIDITY of a gateway mailbox.
pub fn set_uidvalidity(mailbox: &str, v: u32) {
    doveadm(&[
        "mailbox",
        "update",
        "-u",
        GATEWAY,
        "--uid-validity",
        &v.to_string(),
        mailbox,
    ]);
}

/// Stores a raw message in the gateway's INBOX with `scripts/mailstack.sh inject` (doveadm save).
pub fn inject(raw: &[u8]) {
    let script = format!("{REPO}/scripts/mailstack.sh");
    let mut child = Command::new(&script)
        .args(["inject", GATEWAY, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(raw)
        .expect("write the message to mailstack.sh inject");
    let out = child.wait_with_output().expect("wait for mailstack.sh");
    assert!(
        out.status.success(),
        "mailstack.sh inject failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `cond` every 25 ms up to `timeout`; panics with `what` and `context()`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

// ---- registrar replies -------------------------------------------------------------------------

/// A reply as the registrar's robot would write it (UTF-8 text, 8bit, CRLF).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The whole From field value.
    pub from: String,
    /// Subject.
    pub subject: String,
    /// Message-ID without brackets.
    pub message_id: String,
    /// In-Reply-To (with brackets, as our API shows our ids).
    pub in_reply_to: Option<String>,
    /// Extra header lines, put first (like trace fields of a second delivery).
    pub extra_headers: Vec<String>,
    /// Body text (LF line ends, turned into CRLF).
    pub body: String,
}

/// A fresh Message-ID on the registrar's host.
pub fn registrar_message_id(tag: &str) -> String {
    format!("{tag}.{}@registrar.test", uuid::Uuid::new_v4().simple())
}

impl Reply {
    /// A reply from the robot with our token `[RM-<token>]` in the Subject.
    pub fn to_request(request: &Value, body: &str) -> Reply {
        let token = request["token"].as_str().expect("request token");
        Reply {
            from: format!("R01 Robot <{ROBOT}>"),
            subject: format!(
                "Re: {} [RM-{token}]",
                request["kind"].as_str().unwrap_or("")
            ),
            message_id: registrar_message_id("reply"),
            in_reply_to: None,
            extra_headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    /// The acknowledgement "Task N queued", tied by the Subject token.
    pub fn ack(request: &Value, task: &str) -> Reply {
        Reply::to_request(
            request,
            &format!("Hello!\n\nTask {task} queued.\n\n--\nR01 robot\n"),
        )
    }

    /// The client completion with its nic_hdl, tied by In-Reply-To only (no token in Subject).
    pub fn client_registered(request: &Value, task: &str, handle: &str) -> Reply {
        let mut r = Reply::to_request(
            request,
            &format!("Task {task}: person registered.\nnic_hdl: {handle}\n"),
        );
        r.subject = "Re: NEW CLIENT".into();
        r.in_reply_to = Some(request["message_id"].as_str().expect("message_id").into());
        r
    }

    /// The domain completion "Domain D has been registered till DD.MM.YYYY", tied by
    /// In-Reply-To only.
    pub fn domain_registered(request: &Value, domain: &str, till: &str) -> Reply {
        let mut r = Reply::to_request(
            request,
            &format!("Domain {domain} has been registered till {till}.\n"),
        );
        r.subject = "Re: NEW DOMAIN".into();
        r.in_reply_to = Some(request["message_id"].as_str().expect("message_id").into());
        r
    }

    /// The raw message.
    pub fn bytes(&self) -> Vec<u8> {
        let mut h = String::new();
        for x in &self.extra_headers {
            h += x;
            h += "\r\n";
        }
        h += &format!("From: {}\r\nTo: {GATEWAY}\r\n", self.from);
        h += &format!("Subject: {}\r\n", self.subject);
        h += "Date: Mon, 23 Nov 2026 12:00:00 +0300\r\n";
        h += &format!("Message-ID: <{}>\r\n", self.message_id);
        if let Some(irt) = &self.in_reply_to {
            h += &format!("In-Reply-To: {irt}\r\nReferences: {irt}\r\n");
        }
        h += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";
        let body = self.body.replace("\r\n", "\n").replace('\n', "\r\n");
        let mut v = h.into_bytes();
        v.extend_from_slice(body.as_bytes());
        v
    }
}

// ---- SMTP ------------------------------------------------------------------------------------

fn smtp_read(r: &mut BufReader<TcpStream>, expect: char, what: &str) -> Result<String, String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)
            .map_err(|e| format!("SMTP {what}: {e}"))?;
        if line.is_empty() {
            return Err(format!("SMTP {what}: connection closed after {all:?}"));
        }
        all += &line;
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            break;
        }
    }
    if all.starts_with(expect) {
        Ok(all)
    } else {
        Err(format!("SMTP {what}: unexpected answer {all:?}"))
    }
}

/// Sends `raw` from `from` to `to` through Postfix on 127.0.0.1:25 (plain, no AUTH); returns
/// when Postfix accepted the data (`250` after the final dot).
pub fn smtp_send(from: &str, to: &str, raw: &[u8]) {
    let s = stack();
    let addr = format!(
        "{}:{}",
        s.var("MAILSTACK_HOST"),
        s.var("MAILSTACK_SMTP_PORT")
    );
    let result = (|| -> Result<(), String> {
        let stream = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let mut w = stream.try_clone().map_err(|e| e.to_string())?;
        let mut r = BufReader::new(stream);
        let cmd = |w: &mut TcpStream,
                   r: &mut BufReader<TcpStream>,
                   line: &str,
                   expect: char|
         -> Result<String, String> {
            w.write_all(format!("{line}\r\n").as_bytes())
                .map_err(|e| format!("SMTP {line}: {e}"))?;
            smtp_read(r, expect, line)
        };
        smtp_read(&mut r, '2', "greeting")?;
        cmd(&mut w, &mut r, "EHLO registrar.test", '2')?;
        cmd(&mut w, &mut r, &format!("MAIL FROM:<{from}>"), '2')?;
        cmd(&mut w, &mut r, &format!("RCPT TO:<{to}>"), '2')?;
        cmd(&mut w, &mut r, "DATA", '3')?;
        let mut data = Vec::with_capacity(raw.len() + 16);
        for line in raw.split_inclusive(|b| *b == b'\n') {
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        w.write_all(&data).map_err(|e| format!("SMTP data: {e}"))?;
        smtp_read(&mut r, '2', "end of data")?;
        let _ = cmd(&mut w, &mut r, "QUIT", '2');
        Ok(())
    })();
    if let Err(e) = result {
        panic!(
            "sending through Postfix failed: {e}\n--- mail logs ---\n{}",
            mailstack(&["logs", "15"])
        );
    }
}

// ---- a plain IMAP client ---------------------------------------------------------------------

type TlsSession = async_imap::Session<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A plain IMAP client on the gateway mailbox: STARTTLS on 143 verified with the test CA, LOGIN,
/// nothing else. Blocking (it owns a current-thread runtime).
pub struct PlainImap {
    rt: tokio::runtime::Runtime,
    session: Option<TlsSession>,
}

fn tls_connector(ca_file: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_file).unwrap_or_else(|e| panic!("cannot read {ca_file}: {e}"));
    for cert in rustls_pemfile::certs(&mut std::io::Cursor::new(pem)) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("add the test CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

impl PlainImap {
    /// Connects (STARTTLS) and logs in as `user`.
    pub fn connect(user: &str) -> PlainImap {
        let s = stack();
        let host = s.var("MAILSTACK_HOST").to_owned();
        let port: u16 = s.var("MAILSTACK_IMAP_PORT").parse().expect("IMAP port");
        let name = s.var("MAILSTACK_TLS_SERVER_NAME").to_owned();
        let connector = tls_connector(s.ca_file());
        let password = s.password_of(user).to_owned();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let user = user.to_owned();
        let session = rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .expect("connect to IMAP");
            let mut client = async_imap::Client::new(tcp);
            client
                .read_response()
                .await
                .expect("IMAP greeting")
                .expect("IMAP greeting");
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .expect("STARTTLS");
            let tcp = client.into_inner();
            let server_name =
                rustls::pki_types::ServerName::try_from(name).expect("TLS server name");
            let tls = connector
                .connect(server_name, tcp)
                .await
                .expect("TLS handshake with Dovecot");
            async_imap::Client::new(tls)
                .login(&user, &password)
                .await
                .map_err(|(e, _)| e)
                .expect("IMAP LOGIN")
        });
        PlainImap {
            rt,
            session: Some(session),
        }
    }

    fn session(&mut self) -> &mut TlsSession {
        self.session.as_mut().expect("logged in")
    }

    /// APPENDs raw messages to `mailbox` (no flags).
    pub fn append_all(&mut self, mailbox: &str, messages: &[Vec<u8>]) {
        let PlainImap { rt, session } = self;
        let session = session.as_mut().expect("logged in");
        rt.block_on(async {
            for m in messages {
                session
                    .append(mailbox, None, None, m)
                    .await
                    .expect("IMAP APPEND");
            }
        });
    }

    /// SELECT, then the UIDs and sizes (`UID FETCH 1:* (UID RFC822.SIZE)`), then one
    /// `UID FETCH <uid> (UID BODY.PEEK[])` per message, as regmail's sweep does (without storing
    /// or moving). Returns the bodies.
    pub fn fetch_each(&mut self, mailbox: &str) -> Vec<Vec<u8>> {
        use futures::TryStreamExt;
        let PlainImap { rt, session } = self;
        let session = session.as_mut().expect("logged in");
        rt.block_on(async {
            session.select(mailbox).await.expect("SELECT");
            let sizes: Vec<_> = session
                .uid_fetch("1:*", "(UID RFC822.SIZE)")
                .await
                .expect("UID FETCH sizes")
                .try_collect()
                .await
                .expect("UID FETCH sizes");
            let mut uids: Vec<u32> = sizes.iter().filter_map(|f| f.uid).collect();
            uids.sort_unstable();
            let mut out = Vec::with_capacity(uids.len());
            for uid in uids {
                let got: Vec<_> = session
                    .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                    .await
                    .expect("UID FETCH")
                    .try_collect()
                    .await
                    .expect("UID FETCH");
                let body = got
                    .iter()
                    .find(|f| f.uid == Some(uid))
                    .and_then(|f| f.body())
                    .unwrap_or_else(|| panic!("no body for UID {uid}"));
                out.push(body.to_vec());
            }
            out
        })
    }

    /// SELECT, then every message in one `UID FETCH 1:* (UID BODY.PEEK[])`. Returns the bodies.
    pub fn fetch_bulk(&mut self, mailbox: &str) -> Vec<Vec<u8>> {
        use futures::TryStreamExt;
        let PlainImap { rt, session } = self;
        let session = session.as_mut().expect("logged in");
        rt.block_on(async {
            session.select(mailbox).await.expect("SELECT");
            let got: Vec<_> = session
                .uid_fetch("1:*", "(UID BODY.PEEK[])")
                .await
                .expect("UID FETCH")
                .try_collect()
                .await
                .expect("UID FETCH");
            got.iter()
                .filter_map(|f| f.body().map(<[u8]>::to_vec))
                .collect()
        })
    }

    /// SELECTs `mailbox`, starts IDLE, says so on `ready`, and returns when the server reports
    /// a change (the time it came), or None after `timeout`. Ends the session.
    pub fn idle_once(
        mut self,
        mailbox: &str,
        ready: std::sync::mpsc::Sender<()>,
        timeout: Duration,
    ) -> Option<Instant> {
        use async_imap::extensions::idle::IdleResponse;
        let mut session = self.session.take().expect("logged in");
        self.rt.block_on(async move {
            session.select(mailbox).await.expect("SELECT");
            let mut idle = session.idle();
            idle.init().await.expect("IDLE");
            let (fut, _stop) = idle.wait_with_timeout(timeout);
            let _ = ready.send(());
            let woke = match fut.await.expect("IDLE wait") {
                IdleResponse::NewData(_) => Some(Instant::now()),
                _ => None,
            };
            if let Ok(mut s) = idle.done().await {
                let _ = s.logout().await;
            }
            woke
        })
    }

    /// LOGOUT.
    pub fn logout(mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = self.rt.block_on(async move { s.logout().await });
        }
    }
}

// ---- a fake IMAP server -----------------------------------------------------------------------

/// A minimal IMAP server on 127.0.0.1 (no TLS) with an empty INBOX that, while a client IDLEs,
/// sends `* OK Still here` every `keepalive` (as Dovecot does every
/// `imap_idle_notify_interval`, 2 minutes by default). Counts the commands it received.
pub struct FakeImap {
    /// Its port.
    pub port: u16,
    /// Every command line received (tag removed), in order, with the time it came.
    pub commands: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeImap {
    /// Starts the server.
    pub fn start(keepalive: Duration) -> FakeImap {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake IMAP");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local_addr").port();
        let commands: Arc<Mutex<Vec<(Instant, String)>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (cmds, st) = (commands.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (cmds, st) = (cmds.clone(), st.clone());
                        std::thread::spawn(move || {
                            let _ = fake_imap_session(stream, keepalive, &cmds, &st);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeImap {
            port,
            commands,
            stop,
        }
    }

    /// The commands received so far (verb and arguments, without the tag).
    pub fn commands(&self) -> Vec<(Instant, String)> {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeImap {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn fake_imap_session(
    stream: TcpStream,
    keepalive: Duration,
    commands: &Mutex<Vec<(Instant, String)>>,
    stop: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    stream.set_nonblocking(false)?;
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let send = |w: &Mutex<TcpStream>, text: &str| -> std::io::Result<()> {
        w.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(text.as_bytes())
    };
    let idling = Arc::new(AtomicBool::new(false));
    {
        let (w, idling) = (writer.clone(), idling.clone());
        std::thread::spawn(move || {
            let mut last = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(20));
                if !idling.load(Ordering::Relaxed) {
                    last = Instant::now();
                    continue;
                }
                if last.elapsed() >= keepalive {
                    last = Instant::now();
                    let ok = w
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .write_all(b"* OK Still here\r\n");
                    if ok.is_err() {
                        return;
                    }
                }
            }
        });
    }
    send(
        &writer,
        "* OK [CAPABILITY IMAP4rev1 IDLE MOVE UIDPLUS] fake IMAP ready\r\n",
    )?;
    let mut r = BufReader::new(stream);
    let mut line = Vec::new();
    let mut idle_tag: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if let Some(tag) = idle_tag.take() {
            idling.store(false, Ordering::Relaxed);
            commands
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((Instant::now(), text.clone()));
            send(&writer, &format!("{tag} OK Idle completed\r\n"))?;
            continue;
        }
        let (tag, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let verb = rest.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let logged = if verb == "LOGIN" {
            "LOGIN ***".to_owned()
        } else {
            rest.to_owned()
        };
        commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((Instant::now(), logged));
        let answer = match verb.as_str() {
            "CAPABILITY" => {
                format!("* CAPABILITY IMAP4rev1 IDLE MOVE UIDPLUS\r\n{tag} OK done\r\n")
            }
            "SELECT" | "EXAMINE" => format!(
                "* FLAGS (\\Seen \\Deleted)\r\n* 0 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 4242] ok\r\n* OK [UIDNEXT 1] ok\r\n{tag} OK [READ-WRITE] done\r\n"
            ),
            "IDLE" => {
                idle_tag = Some(tag.to_owned());
                idling.store(true, Ordering::Relaxed);
                "+ idling\r\n".to_owned()
            }
            "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
            _ => format!("{tag} OK done\r\n"),
        };
        send(&writer, &answer)?;
    }
    Ok(())
}

// ---- regmail with the IMAP source --------------------------------------------------------------

/// What a test wants of its daemon.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// `[imap] idle`.
    pub idle: bool,
    /// `[imap] poll_interval`.
    pub poll_interval: String,
    /// `[imap] command_timeout`.
    pub command_timeout: String,
    /// `[inbound] max_message_bytes` (None: the default).
    pub max_message_bytes: Option<u64>,
    /// `[log] filter`.
    pub log_filter: String,
    /// Another IMAP server on 127.0.0.1 without TLS (a [`FakeImap`] port); None: Dovecot.
    pub plain_port: Option<u16>,
    /// `[registrar] gateway` (None: the registrar's mailbox, robot@registrar.test).
    pub gateway: Option<String>,
    /// Lines added to `[registrar]` (e.g. `authentication = "dkim"`).
    pub registrar_extra: String,
    /// Lines added to `[inbound]`, and tables after it (e.g. `[[inbound.dkim_keys]]`).
    pub inbound_extra: String,
    /// Requests go out through Postfix (submission 587, STARTTLS + AUTH as the gateway user)
    /// instead of into a directory.
    pub smtp: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            plain_port: None,
            idle: true,
            poll_interval: "2s".into(),
            command_timeout: "10s".into(),
            max_message_bytes: None,
            log_filter: "info".into(),
            gateway: None,
            registrar_extra: String::new(),
            inbound_extra: String::new(),
            smtp: false,
        }
    }
}

fn toml_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

impl ImapConfig {
    fn text(&self, dir: &Path, port: u16) -> String {
        let s = stack();
        let p = |name: &str| toml_str(&dir.join(name).display().to_string());
        let mut t = format!(
            "[store]\npath = {}\ncache_capacity_mb = 16\n\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {}\n\n",
            p("store"),
            p("api-token")
        );
        t += &format!(
            "[registrar]\ngateway = {}\ncallback = {}\nmessage_id_host = {}\nsenders = [{}]\n{}\n",
            toml_str(self.gateway.as_deref().unwrap_or(ROBOT)),
            toml_str(GATEWAY),
            toml_str(MID_HOST),
            toml_str(ROBOT),
            self.registrar_extra
        );
        if self.smtp {
            t += &format!(
                "agreement = \"RP/01/00\"\npassword_file = {}\n\n[outbound]\ntransport = \"smtp\"\nretry_initial = \"500ms\"\nretry_max = \"2s\"\n\n[smtp]\nhost = {}\nport = {}\ntls = \"starttls\"\ntls_server_name = {}\nca_file = {}\nusername = {}\npassword_file = {}\ntimeout = \"10s\"\n\n",
                p("registrar-password"),
                toml_str(s.var("MAILSTACK_HOST")),
                s.var("MAILSTACK_SUBMISSION_PORT"),
                toml_str(s.var("MAILSTACK_TLS_SERVER_NAME")),
                toml_str(s.ca_file()),
                toml_str(GATEWAY),
                p("imap-password"),
            );
        } else {
            t += &format!(
                "[outbound]\ntransport = \"dir\"\ndir = {}\nretry_initial = \"500ms\"\nretry_max = \"2s\"\n\n",
                p("outbox-mail")
            );
        }
        t += "[inbound]\nsource = \"imap\"\n";
        if let Some(n) = self.max_message_bytes {
            t += &format!("max_message_bytes = {n}\n");
        }
        t += &self.inbound_extra;
        let (port, tls) = match self.plain_port {
            Some(p) => (p.to_string(), "none"),
            None => (s.var("MAILSTACK_IMAP_PORT").to_owned(), "starttls"),
        };
        t += &format!(
            "\n[imap]\nhost = {}\nport = {port}\ntls = \"{tls}\"\ntls_server_name = {}\nca_file = {}\nusername = {}\npassword_file = {}\nmailbox = \"INBOX\"\nprocessed_mailbox = {}\nidle = {}\npoll_interval = {}\ncommand_timeout = {}\n\n",
            toml_str(s.var("MAILSTACK_HOST")),
            toml_str(s.var("MAILSTACK_TLS_SERVER_NAME")),
            toml_str(s.ca_file()),
            toml_str(GATEWAY),
            p("imap-password"),
            toml_str(PROCESSED),
            self.idle,
            toml_str(&self.poll_interval),
            toml_str(&self.command_timeout),
        );
        t += &format!("[log]\nfilter = {}\n", toml_str(&self.log_filter));
        t
    }
}

/// `regmail serve` reading the gateway mailbox over IMAP, writing requests into a directory.
pub struct ImapDaemon {
    dir: tempfile::TempDir,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The API token.
    pub token: String,
    /// What it was started with.
    pub config: ImapConfig,
    port: u16,
    child: Option<Child>,
    agent: ureq::Agent,
    /// Extra environment for the next launches.
    pub env: Vec<(String, String)>,
}

impl ImapDaemon {
    /// Starts a daemon (the mail stack is brought up first).
    pub fn start(config: ImapConfig) -> ImapDaemon {
        let d = ImapDaemon::create(config);
        let mut d = d;
        d.launch(true);
        d
    }

    /// Prepares the directory (token, password, config) without starting.
    pub fn create(config: ImapConfig) -> ImapDaemon {
        let s = stack();
        let dir = tempfile::Builder::new()
            .prefix("regmail-imap-")
            .tempdir()
            .expect("tempdir");
        let token = common::random_token();
        std::fs::write(dir.path().join("api-token"), format!("{token}\n")).expect("token");
        common::write_secret(
            &dir.path().join("imap-password"),
            &format!("{}\n", s.password_of(GATEWAY)),
        );
        common::write_secret(
            &dir.path().join("registrar-password"),
            "registrar-secret-i9a\n",
        );
        let config_path = dir.path().join("regmail.toml");
        ImapDaemon {
            dir,
            config_path,
            token,
            config,
            port: 0,
            env: Vec::new(),
            child: None,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
        }
    }

    fn launch(&mut self, new_port: bool) {
        assert!(self.child.is_none(), "the daemon is already running");
        for attempt in 0..3 {
            if new_port || attempt > 0 || self.port == 0 {
                self.port = common::free_port();
                std::fs::write(
                    &self.config_path,
                    self.config.text(self.dir.path(), self.port),
                )
                .expect("write config");
            }
            let mut child = common::spawn_serve_env(&self.config_path, &self.log_path(), &self.env);
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
            if start.elapsed() > Duration::from_secs(20) {
                return Err("GET /healthz did not answer within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it (again) on the same store, configuration and port.
    pub fn restart(&mut self) {
        self.launch(false);
    }

    /// Waits up to `timeout` for the daemon to exit by itself (e.g. at a `REGMAIL_CRASH_AT`
    /// point); true if it did.
    pub fn exited_within(&mut self, timeout: Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return true;
        };
        if common::wait_exit(c, timeout).is_some() {
            self.child = None;
            return true;
        }
        false
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        let mut c = self.child.take().expect("the daemon is not running");
        c.kill().expect("SIGKILL the daemon");
        c.wait().expect("reap the daemon");
    }

    /// SIGTERM, and wait (at most 20 s) for a clean exit.
    pub fn stop(&mut self) {
        let mut c = self.child.take().expect("the daemon is not running");
        let st = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(st.success(), "kill -TERM failed");
        match common::wait_exit(&mut c, Duration::from_secs(20)) {
            Some(s) => assert!(s.success(), "the daemon exited with {s} after SIGTERM"),
            None => {
                let _ = c.kill();
                let _ = c.wait();
                panic!("the daemon did not stop within 20 s of SIGTERM");
            }
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
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

    /// The last `n` lines the daemon wrote.
    pub fn stderr_tail(&self, n: usize) -> String {
        let log = self.stderr();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Any call: status and body text.
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
            other => panic!("method {other} is not supported"),
        };
        let mut resp = result.unwrap_or_else(|e| {
            panic!(
                "{method} {path} failed at the HTTP level: {e}\n--- daemon stderr ---\n{}",
                self.stderr_tail(40)
            )
        });
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body failed: {e}"));
        (status, text)
    }

    /// `GET path` (unauthenticated paths too: the token is simply sent).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let (s, t) = self.call("GET", path, None);
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    /// `GET path`, asserting 200.
    pub fn get_ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// `POST path`.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, t) = self.call("POST", path, Some(body));
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    /// `POST path`, asserting a 2xx answer.
    pub fn post_2xx(&self, path: &str, body: &Value) -> Value {
        let (s, v) = self.post(path, body);
        assert!((200..300).contains(&s), "POST {path} {body}: {s} {v}");
        v
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

    /// Polls request `id` until it is in `state`; panics after `timeout`.
    pub fn wait_request(&self, id: &str, state: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let r = self.request(id);
            if r["state"] == state {
                return r;
            }
            if start.elapsed() > timeout {
                panic!(
                    "request {id} is {} after {timeout:?}, expected {state}: {r}\n--- its log ---\n{}\n--- inbox ---\n{}\n--- gateway INBOX: {:?}, Processed: {:?}\n--- daemon stderr ---\n{}",
                    r["state"],
                    self.get_ok(&format!("/v1/requests/{id}/log?limit=1000")),
                    self.get_ok("/v1/inbox"),
                    list("INBOX"),
                    list(PROCESSED),
                    self.stderr_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls `cond` every 25 ms up to `timeout`; panics with `what` and the daemon's log.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) {
        wait_until(
            what,
            timeout,
            || cond(self),
            || {
                format!(
                    "--- inbox ---\n{}\n--- gateway INBOX: {:?}\n--- daemon stderr ---\n{}",
                    self.get_ok("/v1/inbox"),
                    list("INBOX"),
                    self.stderr_tail(60)
                )
            },
        );
    }

    /// Inbox records (`GET /v1/inbox`, optionally `?state=`).
    pub fn inbox(&self, state: Option<&str>) -> Vec<Value> {
        let path = match state {
            Some(s) => format!("/v1/inbox?state={s}&limit=10000"),
            None => "/v1/inbox?limit=10000".to_owned(),
        };
        self.get_ok(&path)["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The inbox record of the message with this Message-ID (without brackets); panics unless
    /// there is exactly one.
    pub fn inbox_by_mid(&self, mid: &str) -> Value {
        let all: Vec<Value> = self
            .inbox(None)
            .into_iter()
            .filter(|m| m["message_id"] == mid)
            .collect();
        assert_eq!(
            all.len(),
            1,
            "expected one inbox record for Message-ID {mid}: {all:?}"
        );
        all[0].clone()
    }

    /// Waits until the message with this Message-ID has a settled record; returns it.
    pub fn wait_settled(&self, mid: &str, timeout: Duration) -> Value {
        let mut found = Value::Null;
        self.wait_until(
            &format!("message {mid} to be settled"),
            timeout,
            |d| match d
                .inbox(None)
                .into_iter()
                .find(|m| m["message_id"] == mid && m["state"] != "Pending")
            {
                Some(m) => {
                    found = m;
                    true
                }
                None => false,
            },
        );
        found
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
        self.get_ok(&format!("/v1/requests/{id}/log?limit=1000"))["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect()
    }

    /// Creates a person client `client` and a paid order for `domain`: the client's
    /// registration request goes out (dir transport). Returns that request once it is Sent.
    pub fn person_with_order(&self, client: &str, domain: &str) -> Value {
        self.post_2xx("/v1/clients", &common::person(client));
        self.post_2xx("/v1/domains", &common::order(domain, client, true));
        let c = self.get_ok(&format!("/v1/clients/{client}"));
        let id = c["open_request"]
            .as_str()
            .unwrap_or_else(|| panic!("client {client} has no open request: {c}"))
            .to_owned();
        self.wait_request(&id, "Sent", Duration::from_secs(10))
    }

    /// Imports a client with a handle once (`client`), then orders `domain` for it, paid: the
    /// domain request goes out. Returns that request once it is Sent.
    pub fn imported_with_order(&self, client: &str, handle: &str, domain: &str) -> Value {
        let (s, _) = self.get(&format!("/v1/clients/{client}"));
        if s == 404 {
            self.post_2xx("/v1/clients", &common::imported(client, handle));
        }
        self.post_2xx("/v1/domains", &common::order(domain, client, true));
        let d = self.get_ok(&format!("/v1/domains/{domain}"));
        let id = d["open_request"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("domain {domain} has no open request: {d}"))
            .to_owned();
        self.wait_request(&id, "Sent", Duration::from_secs(10))
    }

    /// The request e-mail the `dir` transport wrote for request `r`.
    pub fn mail_of(&self, r: &Value) -> String {
        let token = r["token"].as_str().expect("request token");
        let path = self.outbox_dir().join(format!("{token}.eml"));
        let mut s = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut s))
            .unwrap_or_else(|e| panic!("no message {} for request {r}: {e}", path.display()));
        String::from_utf8_lossy(&s).into_owned()
    }

    /// How many lines of the daemon's log contain `needle`.
    pub fn log_lines(&self, needle: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for ImapDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- daemon stderr, last lines ({}) ---\n{}\n--- end ---",
                self.log_path().display(),
                self.stderr_tail(80)
            );
        }
    }
}

/// An empty object, for POSTs without a body.
pub fn empty() -> Value {
    json!({})
}
