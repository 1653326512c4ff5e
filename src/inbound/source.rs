//! What the message sources share: the processor they hand stored messages to, their health,
//! and the Maildir source (the embedded default for machines without IMAP).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::health::{Health, Worker};
use crate::store::Store;
use crate::store::inbox::{InboxMessage, Received};

/// Processes a message already stored under `key`; `quarantine` forces quarantine with that
/// reason (e.g. a size found over the limit before fetching).
pub trait Processor: Send + Sync {
    /// Processes one stored message and settles it.
    fn process(&self, key: &str, quarantine: Option<&str>) -> Result<InboxMessage, String>;
    /// Records that the message under `key` has the same bytes as the one stored under
    /// `first` (fetched again under another key): it ends Ignored with that reason.
    fn record_copy(&self, key: &str, first: &str) -> Result<(), String>;
}

/// A source's heartbeat and results, feeding the daemon's [`Health`].
#[derive(Debug)]
pub struct SourceHealth {
    /// Shared counters.
    pub health: Arc<Health>,
    /// The intake worker's heartbeat.
    pub worker: Arc<Worker>,
    last_error: Mutex<Option<String>>,
}

impl SourceHealth {
    /// A source health for the `intake` worker.
    pub fn new(health: Arc<Health>, worker: Arc<Worker>) -> Self {
        SourceHealth {
            health,
            worker,
            last_error: Mutex::new(None),
        }
    }
    /// Records a successful sweep.
    pub fn success(&self) {
        self.worker.beat();
        self.health.source_result(true);
    }
    /// Records an error (the worker is alive, the source is not reachable).
    pub fn error(&self, e: &str) {
        self.worker.beat();
        self.health.source_result(false);
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e.to_owned());
        }
    }
    /// The last error.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }
}

/// A Maildir (`new/`, `cur/`, `tmp/`) read as the inbox; processed files move to
/// `.Processed/cur/` inside it (the Maildir++ sub-folder convention).
pub struct MaildirSource {
    /// The Maildir.
    pub dir: PathBuf,
    /// The store.
    pub store: Arc<Store>,
    /// What processes a stored message.
    pub processor: Arc<dyn Processor>,
    /// Largest message read whole.
    pub max_message_bytes: u64,
    /// How often to look.
    pub poll_interval: Duration,
    /// Health.
    pub health: Arc<SourceHealth>,
}

/// The unique part of a Maildir file name (before the `:2,` flags).
fn unique(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

impl MaildirSource {
    /// Creates the folders if missing.
    pub fn ensure_dirs(dir: &Path) -> std::io::Result<()> {
        for sub in [
            "new",
            "cur",
            "tmp",
            ".Processed/new",
            ".Processed/cur",
            ".Processed/tmp",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(())
    }

    /// One sweep: every file in `new/` and `cur/`, oldest name first. Returns how many.
    pub fn sweep(&self) -> Result<usize, String> {
        Self::ensure_dirs(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let rd = std::fs::read_dir(self.dir.join(sub))
                .map_err(|e| format!("{}: {e}", self.dir.join(sub).display()))?;
            for entry in rd.flatten() {
                if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    files.push(entry.path());
                }
            }
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        let mut n = 0;
        for path in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let base = format!("maildir/{}", unique(&name));
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let (bytes, quarantine) = if size > self.max_message_bytes {
                let head =
                    read_head(&path, 64 * 1024).map_err(|e| format!("{}: {e}", path.display()))?;
                (
                    head,
                    Some(format!(
                        "message of {size} octets is over the limit of {}",
                        self.max_message_bytes
                    )),
                )
            } else {
                (
                    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
                    None,
                )
            };
            let key = self.free_key(&base, &bytes)?;
            match self
                .store
                .receive(&key, &bytes, crate::clock::now())
                .map_err(|e| e.to_string())?
            {
                Received::New(_) => {
                    self.processor.process(&key, quarantine.as_deref())?;
                }
                Received::Known(first) => {
                    tracing::info!(%key, %first, "message stored before (same bytes); not applied again");
                    self.processor.record_copy(&key, &first)?;
                }
            }
            let target = free_target(&self.dir.join(".Processed/cur"), &name);
            std::fs::rename(&path, &target)
                .map_err(|e| format!("moving {} to {}: {e}", path.display(), target.display()))?;
            n += 1;
        }
        Ok(n)
    }

    /// The store key for a file: `maildir/<unique>`, or `maildir/<unique>~N` when that key
    /// already holds other bytes (a reused file name must never overwrite an earlier message).
    fn free_key(&self, base: &str, bytes: &[u8]) -> Result<String, String> {
        let mut key = base.to_owned();
        for n in 2.. {
            let held = self.store.raw_message(&key).map_err(|e| e.to_string())?;
            let known = self
                .store
                .inbox_message(&key)
                .map_err(|e| e.to_string())?
                .is_some();
            if !known || held.as_deref() == Some(bytes) {
                break;
            }
            key = format!("{base}~{n}");
        }
        Ok(key)
    }

    /// Runs until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        loop {
            if *stop.borrow() {
                return;
            }
            let m = me.clone();
            match tokio::task::spawn_blocking(move || m.sweep()).await {
                Ok(Ok(_)) => me.health.success(),
                Ok(Err(e)) => {
                    me.health.error(&e);
                    tracing::warn!(error = %e, "maildir sweep failed");
                }
                Err(e) => tracing::error!(error = %e, "maildir task failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(me.poll_interval) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// A name in `dir` that no file has yet: `name`, else `<unique>.dupN<:2,flags>` (rename(2)
/// would silently replace an earlier processed message of the same name).
fn free_target(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, flags) = match name.find(':') {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    (2u32..)
        .map(|n| dir.join(format!("{stem}.dup{n}{flags}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

fn read_head(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; n];
    let got = f.read(&mut buf)?;
    buf.truncate(got);
    Ok(buf)
}
