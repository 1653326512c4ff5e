//! The sandbox's mail I/O: reading requests (an IMAP mailbox or a directory of .eml files) and
//! sending replies (SMTP submission or a Maildir).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use tokio::sync::watch;

use crate::inbound::imap::{ImapSettings, connect, with_deadline as deadline};
use crate::outbound::smtp::{SmtpSender, SmtpSettings};
use crate::outbound::{RenderedRequest, SendOutcome};

/// What the sources hand each request to.
pub trait Handler: Send {
    /// Handles one raw request e-mail; `origin` names it for logs.
    fn handle(&mut self, raw: &[u8], origin: &str) -> anyhow::Result<()>;
}

/// Reads the IMAP mailbox until `stop`: every message is fetched (BODY.PEEK[]), handled, then
/// moved to the done mailbox, so a restart never handles one twice. Reconnects with backoff.
pub async fn imap_source(
    s: &ImapSettings,
    handler: &mut dyn Handler,
    stop: &mut watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(500);
    while !*stop.borrow() {
        match imap_session(s, handler, stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "sandbox: IMAP session ended; reconnecting");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

async fn imap_session(
    s: &ImapSettings,
    handler: &mut dyn Handler,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let t = s.command_timeout;
    let mut session = connect(s).await?;
    let caps = deadline(t, "CAPABILITY", session.capabilities()).await?;
    let can_move = caps.has_str("MOVE");
    let _ = deadline(t, "CREATE", session.create(&s.processed_mailbox)).await;
    deadline(t, "SELECT", session.select(&s.mailbox)).await?;
    tracing::info!(host = %s.host, user = %s.username, mailbox = %s.mailbox, "sandbox: reading requests over IMAP");
    loop {
        let found = deadline(t, "UID SEARCH", session.uid_search("ALL")).await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        for uid in uids {
            let fetched: Vec<_> = {
                let stream = deadline(
                    t,
                    "UID FETCH",
                    session.uid_fetch(uid.to_string(), "(UID BODY.PEEK[])"),
                )
                .await?;
                deadline(t, "UID FETCH", stream.try_collect::<Vec<_>>()).await?
            };
            let body = fetched
                .iter()
                .find(|f| f.uid == Some(uid))
                .and_then(|f| f.body().map(<[u8]>::to_vec));
            match body {
                Some(raw) => handler
                    .handle(&raw, &format!("imap {}/{uid}", s.mailbox))
                    .map_err(|e| format!("handling {}/{uid}: {e:#}", s.mailbox))?,
                None => tracing::warn!(
                    uid,
                    "sandbox: the server returned no body; moved aside unread"
                ),
            }
            if can_move {
                deadline(
                    t,
                    "UID MOVE",
                    session.uid_mv(uid.to_string(), &s.processed_mailbox),
                )
                .await?;
            } else {
                deadline(
                    t,
                    "UID COPY",
                    session.uid_copy(uid.to_string(), &s.processed_mailbox),
                )
                .await?;
                let st = deadline(
                    t,
                    "UID STORE",
                    session.uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)"),
                )
                .await?;
                let _: Vec<_> = deadline(t, "UID STORE", st.try_collect::<Vec<_>>()).await?;
                let ex = deadline(t, "EXPUNGE", session.expunge()).await?;
                let _: Vec<_> = deadline(t, "EXPUNGE", ex.try_collect::<Vec<_>>()).await?;
            }
        }
        if *stop.borrow() {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(s.poll_interval) => {}
            _ = stop.changed() => {}
        }
        deadline(t, "NOOP", session.noop()).await?;
    }
}

/// Reads `dir` until `stop`: every `<name>.eml` (not a dot file: regmail's `dir` transport
/// writes `.<token>.eml.tmp` first, then renames) in name order, handled, then moved into
/// `dir/done/`.
pub async fn dir_source(
    dir: &Path,
    poll: Duration,
    handler: &mut dyn Handler,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let done = dir.join("done");
    std::fs::create_dir_all(&done)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", done.display()))?;
    tracing::info!(dir = %dir.display(), "sandbox: reading requests from a directory");
    loop {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".eml") && !n.starts_with('.'))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "sandbox: cannot read the request directory");
                Vec::new()
            }
        };
        files.sort();
        for path in files {
            let raw = match std::fs::read(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "sandbox: cannot read a request");
                    continue;
                }
            };
            handler.handle(&raw, &path.display().to_string())?;
            if let Some(name) = path.file_name() {
                std::fs::rename(&path, done.join(name)).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot move {} into {}: {e}",
                        path.display(),
                        done.display()
                    )
                })?;
            }
        }
        if *stop.borrow() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Where replies go.
pub enum Outbox {
    /// SMTP submission, one reused connection.
    Smtp(Box<SmtpSender>, String),
    /// A Maildir.
    Maildir(PathBuf),
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Outbox {
    /// SMTP with these settings.
    pub fn smtp(settings: SmtpSettings) -> Outbox {
        let host = format!("{}:{}", settings.host, settings.port);
        Outbox::Smtp(Box::new(SmtpSender::new(settings)), host)
    }

    /// For logs.
    pub fn describe(&self) -> String {
        match self {
            Outbox::Smtp(_, host) => format!("smtp {host}"),
            Outbox::Maildir(d) => format!("maildir {}", d.display()),
        }
    }

    /// Delivers one message; transient SMTP failures are retried a few times.
    pub async fn deliver(
        &mut self,
        from: &str,
        to: &str,
        subject: &str,
        bytes: &[u8],
    ) -> Result<String, String> {
        match self {
            Outbox::Maildir(dir) => write_maildir(dir, bytes),
            Outbox::Smtp(sender, _) => {
                let msg = RenderedRequest {
                    subject: subject.to_owned(),
                    from: from.parse().map_err(|e| format!("from {from:?}: {e}"))?,
                    recipients: vec![to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?],
                    bytes: bytes.to_vec(),
                    copy: String::new(),
                };
                let mut wait = Duration::from_millis(500);
                for attempt in 1..=6 {
                    match sender.send(&msg).await {
                        SendOutcome::Sent(reply) => return Ok(reply),
                        SendOutcome::Transient(e) if attempt < 6 => {
                            tracing::warn!(error = %e, attempt, "sandbox: sending a reply failed for now; retrying");
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                        SendOutcome::Transient(e) | SendOutcome::Permanent(e) => return Err(e),
                        SendOutcome::Unknown(e) => {
                            return Err(format!(
                                "{e} (it may have been delivered; not sent again)"
                            ));
                        }
                    }
                }
                Err("gave up".into())
            }
        }
    }

    /// Closes the SMTP connection.
    pub async fn close(&mut self) {
        if let Outbox::Smtp(s, _) = self {
            s.close().await;
        }
    }
}

/// Maildir delivery: write into `tmp/`, then rename into `new/` (the rename is atomic). Names
/// sort by time, so a reader taking `new/` in name order sees replies in sending order.
fn write_maildir(dir: &Path, bytes: &[u8]) -> Result<String, String> {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", dir.join(sub).display()))?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        "{}.M{:06}Q{n:06}P{}.regmail-sandbox",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    );
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &new)
        .map_err(|e| format!("cannot move {} to {}: {e}", tmp.display(), new.display()))?;
    Ok(format!("written to {}", new.display()))
}
