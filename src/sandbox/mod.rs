//! `regmail sandbox`: a registrar simulator for rehearsals and tests, never the real registrar.
//!
//! It reads request e-mails from its own mailbox (IMAP) or a directory (what regmail's `dir`
//! transport writes), checks each one the way R01 documents its e-mail interface
//! (`request.rs`), judges every object against its small registry (`registrar.rs`,
//! `registry.rs`) and answers to the sender: first "queued as task N", then per object a
//! completion or an error, in wording that regmail's shipped reply rules recognise
//! (`replies.rs`). Delays, an error rate, duplicate and out-of-order replies and dropped replies
//! are configurable (`config.rs`), with a seeded generator so a rehearsal repeats.
//!
//! Layout: `config` (the TOML file), `request` (reading a request, pure), `registrar` (the
//! judgement, pure but for the seeded draws), `registry` (the JSON file), `replies` (wording and
//! bytes), `mail` (IMAP/directory in, SMTP/Maildir out), and here the loop that ties them.

pub mod config;
pub mod mail;
pub mod registrar;
pub mod registry;
pub mod replies;
pub mod request;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use config::SandboxConfig;
use config::{Sink, Source};
use mail::{Handler, Outbox};
use registrar::{Planned, Registrar};
use registry::Registry;
use replies::Style;

/// Runs the sandbox with the configuration file at `config` until SIGTERM or SIGINT.
pub fn main(config: &Path) -> anyhow::Result<()> {
    let cfg = SandboxConfig::load(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut task = tokio::spawn(run(cfg, stop_rx));
        let sig = tokio::select! {
            r = &mut task => return r.map_err(|e| anyhow::anyhow!("the sandbox task failed: {e}"))?,
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = sig, "sandbox: stopping");
        let _ = stop_tx.send(true);
        match tokio::time::timeout(Duration::from_secs(15), task).await {
            Ok(r) => r.map_err(|e| anyhow::anyhow!("the sandbox task failed: {e}"))?,
            Err(_) => anyhow::bail!("the sandbox did not stop within 15 s"),
        }
    })
}

/// What the sources call: judge, save the registry, log, schedule the replies.
struct Engine {
    registrar: Arc<Mutex<Registrar>>,
    registry_path: std::path::PathBuf,
    replies: mpsc::UnboundedSender<Planned>,
    scheduled: JoinSet<()>,
}

impl Handler for Engine {
    fn handle(&mut self, raw: &[u8], origin: &str) -> anyhow::Result<()> {
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        let handled = {
            let mut r = self
                .registrar
                .lock()
                .map_err(|_| anyhow::anyhow!("registrar lock poisoned"))?;
            let h = r.handle(raw, today);
            r.registry.save(&self.registry_path)?;
            h
        };
        tracing::info!(
            origin,
            replies = handled.replies.len(),
            "sandbox: {}",
            handled.summary
        );
        // Reap finished schedules so the set does not grow without bound.
        while self.scheduled.try_join_next().is_some() {}
        let tx = self.replies.clone();
        let start = tokio::time::Instant::now();
        self.scheduled.spawn(async move {
            for p in handled.replies {
                tokio::time::sleep_until(start + p.after).await;
                if tx.send(p).is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// Sends planned replies in the order they come, until the channel closes or `stop`.
async fn send_loop(
    mut outbox: Outbox,
    style: Style,
    mut rx: mpsc::UnboundedReceiver<Planned>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let p = tokio::select! {
            p = rx.recv() => match p { Some(p) => p, None => break },
            _ = stop.changed() => break,
        };
        let built = replies::build(&style, &p.letter, jiff::Timestamp::now());
        let what = p.letter.kind.name();
        match outbox
            .deliver(&style.from, &p.letter.to, &built.subject, &built.bytes)
            .await
        {
            Ok(detail) => {
                tracing::debug!(what, to = %p.letter.to, message_id = %built.message_id, duplicate = p.duplicate, %detail, "sandbox: reply sent")
            }
            Err(e) => {
                tracing::error!(what, to = %p.letter.to, error = %e, "sandbox: a reply could not be sent")
            }
        }
    }
    let left = rx.len();
    if left > 0 {
        tracing::info!(left, "sandbox: replies not sent because of the stop");
    }
    outbox.close().await;
}

/// Runs the sandbox until `stop` turns true (in-process use: `regmail demo`).
pub async fn run(cfg: SandboxConfig, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let registry = Registry::load(&cfg.registry)?;
    registry.save(&cfg.registry)?;
    let outbox = match &cfg.sink {
        Sink::Smtp(s) => Outbox::smtp(s.clone()),
        Sink::Maildir(d) => Outbox::Maildir(d.clone()),
    };
    let style = Style {
        from: cfg.from.clone(),
        from_name: cfg.from_name.clone(),
        threading: cfg.reply_threading,
        charset: cfg.reply_charset,
        auto_submitted: cfg.auto_submitted,
    };
    tracing::info!(
        replies = %outbox.describe(),
        registry = %cfg.registry.display(),
        handles = registry.handles.len(),
        domains = registry.domains.len(),
        from = %cfg.from,
        "sandbox: ready (a simulation of R01, never the real registrar)"
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = tokio::spawn(send_loop(outbox, style, rx, stop.clone()));
    let mut engine = Engine {
        registrar: Arc::new(Mutex::new(Registrar::new(cfg.clone(), registry))),
        registry_path: cfg.registry.clone(),
        replies: tx,
        scheduled: JoinSet::new(),
    };
    let result = match &cfg.source {
        Source::Imap(s) => {
            mail::imap_source(s, &mut engine, &mut stop).await;
            Ok(())
        }
        Source::Dir(d) => mail::dir_source(d, cfg.poll_interval, &mut engine, &mut stop).await,
    };
    let pending = engine.scheduled.len();
    engine.scheduled.abort_all();
    drop(engine);
    if pending > 0 {
        tracing::info!(
            pending,
            "sandbox: stopped with replies still scheduled; they are not sent"
        );
    }
    let _ = sender.await;
    tracing::info!("sandbox: stopped");
    result
}
