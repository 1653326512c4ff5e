//! Liveness of the workers (for the systemd watchdog), readiness facts and the counters that
//! `/metrics` exports. Workers beat; a worker that has not beaten within its allowance is
//! stuck, and then the daemon stops sending WATCHDOG=1 so systemd restarts it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

/// One worker's heartbeat.
#[derive(Debug)]
pub struct Worker {
    /// Its name (api, outbox, intake, scheduler).
    pub name: &'static str,
    last_beat_ms: AtomicI64,
    allowance_ms: i64,
    /// Fault injection for the watchdog test: beats are ignored after this time.
    frozen_after_ms: Option<i64>,
}

/// Fault injection for tests: `REGMAIL_TEST_FREEZE_WORKER=<name>:<seconds>` makes that worker
/// stop beating that many seconds after start, as a hung worker would.
pub const FREEZE_ENV: &str = "REGMAIL_TEST_FREEZE_WORKER";

impl Worker {
    /// Records progress now.
    pub fn beat(&self) {
        let now = Timestamp::now().as_millisecond();
        if self.frozen_after_ms.is_some_and(|t| now >= t) {
            return;
        }
        self.last_beat_ms.store(now, Ordering::Relaxed);
    }
    /// Milliseconds since the last beat.
    pub fn silent_for_ms(&self, now: Timestamp) -> i64 {
        now.as_millisecond() - self.last_beat_ms.load(Ordering::Relaxed)
    }
    /// True when it beat within its allowance.
    pub fn alive(&self, now: Timestamp) -> bool {
        self.silent_for_ms(now) <= self.allowance_ms
    }
}

/// Upper bounds (seconds) of the reply-to-status latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Health and counters shared by the daemon's parts.
#[derive(Debug, Default)]
pub struct Health {
    workers: Mutex<Vec<Arc<Worker>>>,
    /// SMTP (or other transport) failures.
    pub transport_errors: AtomicU64,
    /// Messages handed to the transport successfully.
    pub transport_sent: AtomicU64,
    /// Last transport success and failure (ms since the epoch; 0 = never).
    pub transport_last_ok_ms: AtomicI64,
    /// See `transport_last_ok_ms`.
    pub transport_last_error_ms: AtomicI64,
    /// IMAP (or Maildir) errors.
    pub source_errors: AtomicU64,
    /// Last successful IMAP poll or Maildir sweep (ms since the epoch; 0 = never).
    pub source_last_ok_ms: AtomicI64,
    /// Reply-to-status latency: counts per bucket (cumulative buckets are computed on export).
    pub latency_counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observed latencies, in microseconds.
    pub latency_sum_us: AtomicU64,
}

impl Health {
    /// Registers a worker that must beat at least every `allowance`.
    pub fn worker(&self, name: &'static str, allowance: Duration) -> Arc<Worker> {
        let now = Timestamp::now().as_millisecond();
        let frozen_after_ms = std::env::var(FREEZE_ENV).ok().and_then(|v| {
            let (n, secs) = v.split_once(':')?;
            (n == name)
                .then(|| secs.parse::<i64>().ok())
                .flatten()
                .map(|s| now + s * 1000)
        });
        let w = Arc::new(Worker {
            name,
            last_beat_ms: AtomicI64::new(now),
            allowance_ms: allowance.as_millis() as i64,
            frozen_after_ms,
        });
        if let Ok(mut g) = self.workers.lock() {
            g.push(w.clone());
        }
        w
    }

    /// The workers that are stuck now (empty: all alive).
    pub fn stuck(&self, now: Timestamp) -> Vec<String> {
        self.workers
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|w| !w.alive(now))
                    .map(|w| format!("{} (silent {} s)", w.name, w.silent_for_ms(now) / 1000))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records a transport result.
    pub fn transport_result(&self, ok: bool) {
        let now = Timestamp::now().as_millisecond();
        if ok {
            self.transport_sent.fetch_add(1, Ordering::Relaxed);
            self.transport_last_ok_ms.store(now, Ordering::Relaxed);
        } else {
            self.transport_errors.fetch_add(1, Ordering::Relaxed);
            self.transport_last_error_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Records a source result.
    pub fn source_result(&self, ok: bool) {
        if ok {
            self.source_last_ok_ms
                .store(Timestamp::now().as_millisecond(), Ordering::Relaxed);
        } else {
            self.source_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the time from a reply's arrival to its status change.
    pub fn observe_latency(&self, seconds: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_counts[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_does_not_beat_is_stuck() {
        let h = Health::default();
        let w = h.worker("outbox", Duration::from_millis(100));
        w.beat();
        assert!(h.stuck(Timestamp::now()).is_empty());
        let later = Timestamp::now() + jiff::SignedDuration::from_secs(1);
        assert_eq!(h.stuck(later).len(), 1);
    }

    #[test]
    fn latency_lands_in_its_bucket() {
        let h = Health::default();
        h.observe_latency(0.3);
        h.observe_latency(100.0);
        assert_eq!(h.latency_counts[3].load(Ordering::Relaxed), 1);
        assert_eq!(
            h.latency_counts[LATENCY_BUCKETS.len()].load(Ordering::Relaxed),
            1
        );
    }
}
