//! The notice engine's pure pieces (DESIGN.md §10, issue 10): the catalogue of notice types,
//! users/roles/subscriptions and the fan-out rules, e-mail rendering from templates, webhook
//! signing, one-click unsubscribe tokens. No I/O besides reading a template directory; the
//! channel drivers (e-mail, webhooks) live in `src/channels/`, the storage in
//! `src/store/notices.rs`, the routes in `src/api/notices.rs`.

pub mod catalogue;
pub mod model;
pub mod render;
pub mod rules;
pub mod sign;
pub mod templates;
pub mod unsubscribe;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Counters of one channel (for `/metrics`).
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// Successful attempts.
    pub sent: AtomicU64,
    /// Failed attempts.
    pub failed: AtomicU64,
    /// Sum of attempt latencies, ms.
    pub latency_ms: AtomicU64,
    /// Last successful attempt (Unix ms).
    pub last_ok_ms: AtomicU64,
    /// Last failed attempt (Unix ms).
    pub last_err_ms: AtomicU64,
}

impl ChannelStats {
    /// Records one attempt.
    pub fn record(&self, ok: bool, latency_ms: u64, now_ms: u64) {
        if ok {
            self.sent.fetch_add(1, Ordering::Relaxed);
            self.last_ok_ms.store(now_ms, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.last_err_ms.store(now_ms, Ordering::Relaxed);
        }
        self.latency_ms.fetch_add(latency_ms, Ordering::Relaxed);
    }
}

/// What the API and the channel drivers share: the current templates (replaced on reload),
/// the wake-ups of the channel workers, their counters.
#[derive(Debug, Clone)]
pub struct NoticeHub {
    /// The e-mail templates.
    pub templates: Arc<RwLock<Arc<templates::Templates>>>,
    /// Woken when e-mail deliveries are queued.
    pub wake_email: Arc<tokio::sync::Notify>,
    /// Woken when webhook deliveries are queued.
    pub wake_webhook: Arc<tokio::sync::Notify>,
    /// E-mail counters.
    pub email: Arc<ChannelStats>,
    /// Webhook counters.
    pub webhook: Arc<ChannelStats>,
}

impl NoticeHub {
    /// A hub with these templates.
    pub fn new(t: templates::Templates) -> Self {
        NoticeHub {
            templates: Arc::new(RwLock::new(Arc::new(t))),
            wake_email: Arc::default(),
            wake_webhook: Arc::default(),
            email: Arc::default(),
            webhook: Arc::default(),
        }
    }
    /// Wakes both channel workers.
    pub fn wake(&self) {
        self.wake_email.notify_one();
        self.wake_webhook.notify_one();
    }
    /// The current templates.
    pub fn templates(&self) -> Option<Arc<templates::Templates>> {
        self.templates.read().ok().map(|g| g.clone())
    }
}
