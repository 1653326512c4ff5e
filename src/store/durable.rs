//! Durability and the figures kept beside the data (issue 13).
//!
//! **Group commit.** Every write is one sled transaction, counted in `committed` when it
//! commits; the writer then calls [`Store::durable`] *after* releasing the writer lock. The
//! first caller takes the flush lock, notes how many writes are committed and flushes; callers
//! that queued behind it find their write already covered by that flush and return without one.
//! So each write is still on disk before its caller answers (the API's 2xx), but one `fsync`
//! serves every write that arrived while the previous one ran. sled's flush writes its whole
//! log up to the moment it is called, so a flush covers every transaction committed before.
//!
//! **Batches.** [`Store::batch`] runs a closure whose writes skip their own flush and are made
//! durable together at its end (the IMAP intake stores and settles a batch of messages this
//! way). A crash inside the batch loses only writes nobody was told about: the messages are
//! still on the server and their position was not saved.
//!
//! **Counters.** Domains per status and requests per state are kept in the `meta` tree under
//! `count\0d\0<status>` and `count\0r\0<state>`, updated in the same transaction as the entity,
//! so `/metrics`, `/v1/stats` and the readiness check read a few keys instead of scanning
//! indexes that grow with the portfolio. A store written before the counters existed gets them
//! counted once, at open.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use jiff::Timestamp;
use sled::Transactional;

use super::{Applied, ApplyError, Extra, Store, StoreError, be_u64, key_join};
use crate::core::{Domain, DomainStatus, Request, RequestState, Transition};

thread_local! {
    /// How deep this thread is inside [`Store::batch`].
    static BATCH_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Marks a store whose counters are kept (written once they are complete).
const META_COUNTERS: &[u8] = b"counters_v1";

/// The `meta` key of the number of domains in `status`.
pub(super) fn domain_count_key(status: DomainStatus) -> Vec<u8> {
    key_join(&[b"count", b"d", status.as_str().as_bytes()])
}

/// The `meta` key of the number of requests in `state`.
pub(super) fn request_count_key(state: RequestState) -> Vec<u8> {
    key_join(&[b"count", b"r", state.as_str().as_bytes()])
}

impl Store {
    /// Counts one committed write (called right after its transaction commits).
    pub(super) fn note_commit(&self) {
        self.committed.fetch_add(1, Ordering::SeqCst);
    }

    /// How many writes have committed since the store was opened: a progress mark for the
    /// watchdog (a worker waiting for a busy store is not hung while this grows).
    pub fn commits(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// Makes every write committed so far durable, sharing one flush with concurrent callers
    /// (group commit). Inside [`Store::batch`] it does nothing: the batch flushes at its end.
    pub(super) fn durable(&self) -> Result<(), StoreError> {
        if BATCH_DEPTH.with(Cell::get) > 0 {
            return Ok(());
        }
        self.flush_upto(self.committed.load(Ordering::SeqCst))
    }

    /// Makes every write whose effects another thread can already read durable, sharing the
    /// flush with concurrent writers (group commit). The outbox worker calls it before it
    /// sends what it read from the outbox: nothing goes to the registrar before the write that
    /// wants it is on disk (DESIGN.md §3, the transactional outbox).
    ///
    /// A transaction is visible to readers as soon as it commits, a moment before it counts
    /// itself ([`Store::note_commit`]); both happen under the writer lock. Taking that lock
    /// once (and letting it go at once) waits for any write in flight to count itself, so the
    /// ticket read after it covers everything the caller could have seen. When the group
    /// commit of the API writes already flushed it (the usual case), this returns without a
    /// flush; unlike [`Store::durable`] it flushes inside [`Store::batch`] too.
    pub fn sync_committed(&self) -> Result<(), StoreError> {
        drop(self.writer.lock().unwrap_or_else(|p| p.into_inner()));
        self.flush_upto(self.committed.load(Ordering::SeqCst))
    }

    /// Flushes unless a flush that started after `ticket` writes had committed already ran.
    fn flush_upto(&self, ticket: u64) -> Result<(), StoreError> {
        let mut flushed = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
        if *flushed >= ticket {
            // A flush that started after our commit already covered it.
            return Ok(());
        }
        let upto = self.committed.load(Ordering::SeqCst);
        self.db.flush()?;
        *flushed = upto;
        Ok(())
    }

    /// Runs `f` with every write it makes on this thread left unflushed, then flushes once.
    /// Use it where nobody is told of a single write before the whole batch is durable.
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> Result<R, StoreError> {
        struct Depth;
        impl Drop for Depth {
            fn drop(&mut self) {
                BATCH_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
            }
        }
        BATCH_DEPTH.with(|d| d.set(d.get() + 1));
        let out = {
            let _depth = Depth;
            f()
        };
        self.durable()?;
        Ok(out)
    }

    /// Writes a transition built by `build` from the store's current state, read under the
    /// writer lock (so nothing changes between the reading and the commit), then makes it
    /// durable. Used by bulk operations (the portfolio import) that build many entities at
    /// once with a pure core function instead of one event each.
    pub fn apply_built<E>(
        &self,
        build: impl FnOnce(&Store) -> Result<Transition, E>,
        now: Timestamp,
    ) -> Result<Result<Applied, E>, ApplyError> {
        let applied = {
            let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let t = match build(self) {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            self.write_transition(t, Extra::default(), now)?
        };
        self.durable()?;
        Ok(Ok(applied))
    }

    /// A counter kept in `meta` (0 when absent).
    pub(super) fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self.meta.get(key)?.map_or(0, |v| be_u64(&v)))
    }

    /// The counter values a transition leaves, given the entities' values before it. Read
    /// under the writer lock, written in the transition's transaction.
    pub(super) fn counter_updates(
        &self,
        t: &Transition,
        old_domains: &[Option<Domain>],
        old_requests: &[Option<Request>],
    ) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
        let mut delta: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (d, old) in t.domains.iter().zip(old_domains) {
            if let Some(o) = old {
                *delta.entry(domain_count_key(o.status)).or_default() -= 1;
            }
            *delta.entry(domain_count_key(d.status)).or_default() += 1;
        }
        for (r, old) in t.requests.iter().zip(old_requests) {
            if let Some(o) = old {
                *delta.entry(request_count_key(o.state)).or_default() -= 1;
            }
            *delta.entry(request_count_key(r.state)).or_default() += 1;
        }
        let mut out = Vec::new();
        for (k, d) in delta {
            if d == 0 {
                continue;
            }
            let now = self.counter(&k)? as i64;
            out.push((k, (now + d).max(0) as u64));
        }
        Ok(out)
    }

    /// Counts domains per status and requests per state once, for a store written before the
    /// counters were kept (or a new one).
    pub(super) fn ensure_counters(&self) -> Result<(), StoreError> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.meta.get(META_COUNTERS)?.is_some() {
            return Ok(());
        }
        let mut puts: Vec<(Vec<u8>, u64)> = Vec::new();
        for s in DomainStatus::ALL {
            let prefix = key_join(&[b"ds", s.as_str().as_bytes(), b""]);
            puts.push((
                domain_count_key(s),
                self.index.scan_prefix(prefix).count() as u64,
            ));
        }
        for s in RequestState::ALL {
            let prefix = key_join(&[b"rs", s.as_str().as_bytes(), b""]);
            puts.push((
                request_count_key(s),
                self.index.scan_prefix(prefix).count() as u64,
            ));
        }
        let result: Result<(), sled::transaction::TransactionError<String>> = (&self.meta,)
            .transaction(|(meta,)| {
                for (k, n) in &puts {
                    meta.insert(k.as_slice(), &n.to_be_bytes())?;
                }
                meta.insert(META_COUNTERS, &[1])?;
                Ok(())
            });
        result.map_err(|e| StoreError::Corrupt {
            key: "counters".into(),
            reason: e.to_string(),
        })?;
        self.db.flush()?;
        Ok(())
    }
}
