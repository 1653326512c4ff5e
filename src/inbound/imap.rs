//! The IMAP source (RFC 3501 / 9051) with async-imap over tokio-rustls. Position is (mailbox,
//! UIDVALIDITY, UID), never sequence numbers and never \Seen (DESIGN.md inv. 5). Messages are
//! fetched with BODY.PEEK[] (so nothing is marked read), stored durably, processed, and only
//! then moved to the processed mailbox (MOVE, RFC 6851, or COPY + \Deleted + UID EXPUNGE,
//! RFC 4315). IDLE (RFC 2177) is re-issued before 29 minutes, with a poll sweep as a safety net;
//! every command has a deadline; a broken connection is re-made with backoff.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::source::{Processor, SourceHealth};
use crate::store::Store;
use crate::tls::TlsMode;

/// `[imap]` settings.
#[derive(Clone)]
pub struct ImapSettings {
    /// Server host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// Certificate name to expect (default: host).
    pub tls_server_name: Option<String>,
    /// Extra trusted CA (PEM).
    pub ca_file: Option<PathBuf>,
    /// Login.
    pub username: String,
    /// Password.
    pub password: SecretString,
    /// Mailbox to read (INBOX).
    pub mailbox: String,
    /// Where processed messages go (Processed).
    pub processed_mailbox: String,
    /// Use IDLE when the server offers it.
    pub idle: bool,
    /// Poll sweep interval (also the longest IDLE wait).
    pub poll_interval: Duration,
    /// Deadline of every command.
    pub command_timeout: Duration,
    /// Messages larger than this (RFC822.SIZE) are not fetched whole but quarantined.
    pub max_message_bytes: u32,
}

impl std::fmt::Debug for ImapSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"********")
            .finish()
    }
}

/// A plain or TLS stream, so one session type serves every TLS mode.
#[derive(Debug)]
pub enum ImapConn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ImapConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ImapConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapConn::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub(crate) type Session = async_imap::Session<ImapConn>;

/// Builds a rustls client configuration: the system's roots plus an optional private CA.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut reader = std::io::Cursor::new(pem);
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs `f` with a deadline; a failure or a timeout becomes text naming `what`.
pub async fn with_deadline<T, E: std::fmt::Display>(
    t: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(t, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {}s", t.as_secs())),
    }
}

async fn tls_wrap(s: &ImapSettings, tcp: TcpStream) -> Result<ImapConn, String> {
    let config = tls_config(s.ca_file.as_deref())?;
    let name = s.tls_server_name.clone().unwrap_or_else(|| s.host.clone());
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| format!("TLS name {name:?}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS with {}: {e}", s.host))?;
    Ok(ImapConn::Tls(Box::new(tls)))
}

/// Connects, secures (implicit TLS, or STARTTLS as RFC 3501 §6.2.1 has it) and logs in.
pub async fn connect(s: &ImapSettings) -> Result<Session, String> {
    let t = s.command_timeout;
    let tcp = with_deadline(
        t,
        &format!("connecting to {}:{}", s.host, s.port),
        TcpStream::connect((s.host.as_str(), s.port)),
    )
    .await?;
    let conn = match s.tls {
        TlsMode::Tls => tls_wrap(s, tcp).await?,
        _ => ImapConn::Plain(tcp),
    };
    let mut client = async_imap::Client::new(conn);
    with_deadline(t, "reading the IMAP greeting", client.read_response()).await?;
    if s.tls == TlsMode::StartTls {
        // RFC 3501 §6.2.1: STARTTLS, then TLS, then no new greeting.
        with_deadline(
            t,
            "STARTTLS",
            client.run_command_and_check_ok("STARTTLS", None),
        )
        .await?;
        let ImapConn::Plain(tcp) = client.into_inner() else {
            return Err("STARTTLS on an encrypted connection".into());
        };
        client = async_imap::Client::new(tls_wrap(s, tcp).await?);
    }
    match tokio::time::timeout(t, client.login(&s.username, s.password.expose_secret())).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((e, _))) => Err(format!("IMAP login as {} failed: {e}", s.username)),
        Err(_) => Err("IMAP login: no answer".into()),
    }
}

/// The IMAP source.
pub struct ImapSource {
    /// Settings.
    pub settings: ImapSettings,
    /// The store.
    pub store: Arc<Store>,
    /// What processes a stored message.
    pub processor: Arc<dyn Processor>,
    /// Liveness and last success, for readiness and metrics.
    pub health: Arc<SourceHealth>,
}

impl ImapSource {
    /// Runs until `stop`: connect, sweep, IDLE or sleep, sweep again; reconnects with backoff.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        const FIRST_DELAY: Duration = Duration::from_millis(500);
        let mut delay = FIRST_DELAY;
        while !*stop.borrow() {
            let mut swept = false;
            match self.session_loop(&mut stop, &mut swept).await {
                Ok(()) => return,
                Err(e) => {
                    // A session that worked was not part of an outage: back off afresh.
                    if swept {
                        delay = FIRST_DELAY;
                    }
                    self.health.error(&e);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "IMAP session ended; reconnecting");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }

    async fn session_loop(
        &self,
        stop: &mut watch::Receiver<bool>,
        swept: &mut bool,
    ) -> Result<(), String> {
        let s = &self.settings;
        let t = s.command_timeout;
        let t0 = std::time::Instant::now();
        let mut session = connect(s).await?;
        tracing::debug!(
            us = t0.elapsed().as_micros() as u64,
            "IMAP connected and logged in"
        );
        let caps = with_deadline(t, "CAPABILITY", session.capabilities()).await?;
        let can_move = caps.has_str("MOVE");
        let can_idle = caps.has_str("IDLE") && s.idle;
        let uidplus = caps.has_str("UIDPLUS");
        // The processed mailbox may exist already; a failure here shows up at the first move.
        let _ = with_deadline(t, "CREATE", session.create(&s.processed_mailbox)).await;
        tracing::info!(host = %s.host, mailbox = %s.mailbox, idle = can_idle, "IMAP connected");
        loop {
            let mailbox = with_deadline(t, "SELECT", session.select(&s.mailbox)).await?;
            let uidvalidity = mailbox.uid_validity.unwrap_or(0);
            let start = match self
                .store
                .imap_position(&s.mailbox)
                .map_err(|e| e.to_string())?
            {
                Some((v, uid)) if v == uidvalidity => uid + 1,
                Some((v, _)) => {
                    // RFC 3501 §2.3.1.1: old UIDs mean nothing now. Everything is fetched again;
                    // content hashes make the messages already stored no-ops.
                    tracing::warn!(mailbox = %s.mailbox, old = v, new = uidvalidity, "UIDVALIDITY changed; re-reading the mailbox, nothing is applied twice");
                    1
                }
                None => 1,
            };
            self.sweep(&mut session, uidvalidity, start, can_move, uidplus)
                .await?;
            // A new UIDVALIDITY is saved even when the mailbox was empty, so it is reported once.
            let saved = self
                .store
                .imap_position(&s.mailbox)
                .map_err(|e| e.to_string())?;
            if saved.map(|(v, _)| v) != Some(uidvalidity) {
                self.store
                    .set_imap_position(&s.mailbox, uidvalidity, start.saturating_sub(1))
                    .map_err(|e| e.to_string())?;
            }
            *swept = true;
            self.health.success();
            if *stop.borrow() {
                let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
                return Ok(());
            }
            if can_idle {
                let mut handle = session.idle();
                with_deadline(t, "IDLE", handle.init()).await?;
                let wait = s.poll_interval.min(Duration::from_secs(28 * 60));
                let (fut, interrupt) = handle.wait_with_timeout(wait);
                // One overall deadline: async-imap's own timer restarts at every server
                // keepalive ("* OK Still here"), which would suppress the sweep and the
                // re-issue of IDLE (RFC 2177 asks for it before 29 minutes).
                let stopped = tokio::select! {
                    r = fut => { r.map_err(|e| format!("IDLE: {e}"))?; false }
                    _ = tokio::time::sleep(wait) => false,
                    _ = stop.changed() => true,
                };
                drop(interrupt);
                session = with_deadline(t, "DONE", handle.done()).await?;
                if stopped {
                    let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
                    return Ok(());
                }
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(s.poll_interval) => {}
                    _ = stop.changed() => {}
                }
                with_deadline(t, "NOOP", session.noop()).await?;
            }
        }
    }

    /// Fetches, stores, processes and moves every message from UID `start` on.
    async fn sweep(
        &self,
        session: &mut Session,
        uidvalidity: u32,
        start: u32,
        can_move: bool,
        uidplus: bool,
    ) -> Result<(), String> {
        let s = &self.settings;
        let t = s.command_timeout;
        let t0 = std::time::Instant::now();
        let sizes: Vec<(u32, u32)> = {
            let stream = with_deadline(
                t,
                "UID FETCH sizes",
                session.uid_fetch(format!("{start}:*"), "(UID RFC822.SIZE)"),
            )
            .await?;
            let fetched: Vec<_> =
                with_deadline(t, "UID FETCH sizes", stream.try_collect::<Vec<_>>()).await?;
            let mut v: Vec<(u32, u32)> = fetched
                .iter()
                .filter_map(|f| Some((f.uid?, f.size.unwrap_or(0))))
                .filter(|(uid, _)| *uid >= start)
                .collect();
            v.sort_unstable();
            v
        };
        tracing::debug!(
            messages = sizes.len(),
            us = t0.elapsed().as_micros() as u64,
            "IMAP sizes fetched"
        );
        self.sweep_batches(session, uidvalidity, &sizes, can_move, uidplus)
            .await
    }
}
