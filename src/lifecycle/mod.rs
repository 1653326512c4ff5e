//! The lifecycle pass (issue 11, DESIGN.md §9): the scheduler's part of a domain's life after
//! registration. It reads the due-date index up to today (never every domain), asks the pure
//! [`crate::core::lifecycle::due_event`] what is due for each domain found, and applies that
//! event through the store like any other: reminders, expiry, deletion, automatic renewal.
//! [`preview`] runs the same functions on a scratch copy of the due domains, day by day, and
//! reports what the pass would do and whom each notice would reach.

pub mod preview;

use std::collections::HashSet;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::lifecycle::{ReminderMark, ReminderOutcome, due_event};
use crate::core::{
    Client, ClientId, Ctx, Domain, DomainName, DomainStatus, Effect, Policy, Request, RequestId,
    StateView, Transition, ViewError,
};
use crate::idsource::UuidIds;
use crate::store::lifecycle::DueKey;
use crate::store::{ApplyError, Store, StoreError};

pub use preview::{PreviewItem, preview};

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// The day the pass ran for (UTC).
    pub day: String,
    /// Due-index keys read.
    pub keys_read: usize,
    /// Domains found due.
    pub due: usize,
    /// Events applied.
    pub events: usize,
    /// Reminders sent.
    pub reminders_sent: usize,
    /// Reminders recorded as skipped.
    pub reminders_skipped: usize,
    /// Domains that expired.
    pub expired: usize,
    /// Domains deleted.
    pub deleted: usize,
    /// Automatic renewals requested.
    pub renewals: usize,
    /// Events refused or failed (logged; the domain is looked at again tomorrow).
    pub failed: usize,
}

fn tally(report: &mut PassReport, before: Option<DomainStatus>, t: &Transition) {
    report.events += 1;
    for e in &t.effects {
        if let Effect::Reminder(m) = e {
            match m.outcome {
                ReminderOutcome::Sent => report.reminders_sent += 1,
                ReminderOutcome::Skipped { .. } => report.reminders_skipped += 1,
            }
        }
    }
    for d in &t.domains {
        match (before, d.status) {
            (Some(DomainStatus::Expired), DomainStatus::Expired) => {}
            (_, DomainStatus::Expired) => report.expired += 1,
            (Some(DomainStatus::Deleted), _) => {}
            (_, DomainStatus::Deleted) => report.deleted += 1,
            (Some(DomainStatus::Registered | DomainStatus::Expired), DomainStatus::Renewing) => {
                report.renewals += 1
            }
            _ => {}
        }
    }
}

/// Domains per bulk write of a round (one sled transaction each). 128 rather than 512: as fast
/// or faster at 1M (less garbage per commit for sled to free), and the writer lock is held a
/// quarter as long, so API writes wait less during a pass.
const CHUNK: usize = 128;

/// At most this many events per domain in one pass (a missed reminder, the expiry, ... after
/// downtime); a domain that still has something due is looked at again by the next pass.
const MAX_STEPS: usize = 8;

/// A domain a round looks at, and the day of the due key it was found under (the first
/// round reads it from the index; a later round's key is the one the round before wrote).
struct Due {
    name: DomainName,
    key: Option<Date>,
}

/// What a round decided for a domain it did not move on with an event.
struct Rounds<'a> {
    policy: &'a Policy,
    now: Timestamp,
    today: Date,
    /// Due keys to move after the chunk (each its own small write: `Store::move_due`): from
    /// the day read to the day the rules say, or out of the index.
    moves: Vec<(DomainName, Date, Option<Date>)>,
    /// The status of each item of the chunk before its event (for the report).
    before: Vec<Option<DomainStatus>>,
    /// Whether each item of the chunk still has something due today after its event
    /// (computed from the transition, as the store computes the item's new due key).
    more: Vec<bool>,
    failed: usize,
}

/// True when `d` still has something due on or before `today` after transition `t` (its
/// event): [`next_due`] on the domain and reminder records as `t` leaves them, the same rule
/// the store keeps the due index by. A moved expiry starts a series this pass has not read:
/// true, and the next round decides from the store.
fn more_due(
    d: &Domain,
    marks: &[ReminderMark],
    t: &Transition,
    policy: &Policy,
    today: Date,
) -> bool {
    let after = t.domains.iter().find(|x| x.name == d.name).unwrap_or(d);
    if after.expires != d.expires {
        return true;
    }
    let mut handled: Vec<u16> = marks.iter().map(|m| m.offset).collect();
    for e in &t.effects {
        if let Effect::Reminder(m) = e
            && m.domain == d.name
            && Some(m.expires) == after.expires
        {
            handled.push(m.offset);
        }
    }
    crate::core::lifecycle::next_due(after, &handled, policy).is_some_and(|at| at <= today)
}

impl Rounds<'_> {
    /// The transition of `name`'s due event on the committed state, or None (and what to do
    /// with its due key instead). A refused event is logged and looked at again tomorrow (its
    /// key stays where it is, on or before today, so the next pass reads it again); it does
    /// not touch the other domains of the chunk.
    fn decide(&mut self, store: &Store, i: usize, due: &Due) -> Option<Transition> {
        let today = self.today;
        let name = &due.name;
        let d = match store.domain(name) {
            Ok(Some(d)) => d,
            Ok(None) => {
                if let Some(from) = due.key {
                    self.moves.push((name.clone(), from, None));
                }
                return None;
            }
            Err(e) => {
                tracing::error!(domain = %name, error = %e, "reading a due domain failed");
                self.failed += 1;
                return None;
            }
        };
        let marks: Vec<ReminderMark> = match d.expires {
            Some(e) => match store.reminder_marks(name, e) {
                Ok(m) => m,
                Err(err) => {
                    tracing::error!(domain = %name, error = %err, "reading reminder records failed");
                    self.failed += 1;
                    return None;
                }
            },
            None => Vec::new(),
        };
        let handled: Vec<u16> = marks.iter().map(|m| m.offset).collect();
        let Some(event) = due_event(&d, &handled, today, self.policy) else {
            // Nothing due today after all (the index was ahead of the rules, e.g. after a
            // configuration change): put the key where the rules say.
            let next = crate::core::lifecycle::next_due(&d, &handled, self.policy)
                .map(|at| at.max(today.tomorrow().unwrap_or(today)));
            if let Some(from) = due.key {
                self.moves.push((name.clone(), from, next));
            }
            return None;
        };
        let mut ids = UuidIds;
        let mut ctx = Ctx {
            now: self.now,
            ids: &mut ids,
            policy: self.policy,
        };
        let what = format!("{event:?}");
        // The core reads the domain and its reminder records again: hand it the values just
        // read (under the writer lock, so still current) instead of reading sled twice.
        let view = Seen {
            store,
            domain: &d,
            marks: &marks,
        };
        match crate::core::apply(&view, event, &mut ctx) {
            Ok(t) if t.is_noop() => {
                // Decided already: nothing to do; the next pass looks again (no loop: a domain
                // with no event goes to no further round).
                None
            }
            Ok(t) => {
                if let Some(b) = self.before.get_mut(i) {
                    *b = Some(d.status);
                }
                if let Some(m) = self.more.get_mut(i) {
                    *m = more_due(&d, &marks, &t, self.policy, today);
                }
                Some(t)
            }
            Err(e) => {
                tracing::warn!(domain = %name, event = %what, error = %e, "lifecycle event refused; looked at again tomorrow");
                self.failed += 1;
                None
            }
        }
    }
}

/// The store seen by the core for one due domain: that domain and its reminder records as
/// the round just read them, everything else from the store.
struct Seen<'a> {
    store: &'a Store,
    domain: &'a Domain,
    marks: &'a [ReminderMark],
}

impl StateView for Seen<'_> {
    fn client(&self, id: &ClientId) -> Result<Option<Client>, ViewError> {
        StateView::client(self.store, id)
    }
    fn domain(&self, name: &DomainName) -> Result<Option<Domain>, ViewError> {
        if *name == self.domain.name {
            return Ok(Some(self.domain.clone()));
        }
        StateView::domain(self.store, name)
    }
    fn request(&self, id: RequestId) -> Result<Option<Request>, ViewError> {
        StateView::request(self.store, id)
    }
    fn domains_of_client(&self, id: &ClientId) -> Result<Vec<Domain>, ViewError> {
        StateView::domains_of_client(self.store, id)
    }
    fn handle_counter(&self) -> Result<u64, ViewError> {
        StateView::handle_counter(self.store)
    }
    fn reminder_marks(
        &self,
        domain: &DomainName,
        expires: Date,
    ) -> Result<Vec<(u16, ReminderOutcome)>, ViewError> {
        if *domain == self.domain.name && Some(expires) == self.domain.expires {
            return Ok(self
                .marks
                .iter()
                .map(|m| (m.offset, m.outcome.clone()))
                .collect());
        }
        StateView::reminder_marks(self.store, domain, expires)
    }
}

/// One lifecycle pass at `now`: every domain due on or before today, through the due-date
/// index only, in one batch (one flush at the end). The due events are applied in rounds:
/// each round computes one event per due domain on the committed state and writes a chunk of
/// [`CHUNK`] domains' transitions in one transaction ([`Store::apply_each`]); the domains that
/// had an event go on to the next round (several steps may be due after downtime), up to
/// [`MAX_STEPS`] rounds. The result is the same as applying the events domain by domain.
///
/// The first round is a pipeline over the machine's second core: one thread reads the due
/// index and warms the cache for a chunk ([`Store::warm_for_pass`]) while this one writes the
/// chunk before it. With 1M domains in the store and 64 MB of cache, most of a pass was page
/// misses and the index scan (issue 11's bench).
pub fn run_pass(store: &Store, policy: &Policy, now: Timestamp) -> Result<PassReport, StoreError> {
    let today = crate::core::today(now);
    let mut report = PassReport {
        day: today.to_string(),
        ..PassReport::default()
    };
    // When the store keeps its due index by the pass's own rules, a domain whose key moved past
    // today after its event has nothing more due today (`due_event` is Some exactly when
    // `next_due <= today`): it needs no further round, and no second read.
    let index_follows = store.keeps_due_by(policy);
    let written = store.batch(|| -> Result<(), StoreError> {
        // One chunk of a round: decide and write its events, move the keys of the domains
        // with nothing to write, and keep those with more due for the next round.
        let step = |chunk: &[Due],
                    report: &mut PassReport,
                    next: &mut Vec<Due>|
         -> Result<(), StoreError> {
            let mut r = Rounds {
                policy,
                now,
                today,
                moves: Vec::new(),
                before: vec![None; chunk.len()],
                more: vec![true; chunk.len()],
                failed: 0,
            };
            let applied = store
                .apply_each(chunk, now, |s, i, due| r.decide(s, i, due))
                .map_err(|e| match e {
                    ApplyError::Store(e) => e,
                    // apply_each refuses nothing itself: `decide` handles the core's
                    // refusals per domain.
                    ApplyError::Core(e) => StoreError::Corrupt {
                        key: "lifecycle pass".into(),
                        reason: e.to_string(),
                    },
                })?;
            report.failed += r.failed;
            for (name, from, to) in &r.moves {
                if let Err(e) = store.move_due(name, *from, *to) {
                    tracing::error!(domain = %name, error = %e, "moving a due-index key failed");
                }
            }
            for (i, t) in &applied {
                tally(report, r.before.get(*i).copied().flatten(), t);
                let Some(due) = chunk.get(*i) else {
                    continue;
                };
                if index_follows && !r.more.get(*i).copied().unwrap_or(true) {
                    continue;
                }
                next.push(Due {
                    name: due.name.clone(),
                    key: None,
                });
            }
            Ok(())
        };
        // Round one streams: a second thread reads the due index and, for each chunk of
        // CHUNK names, brings the pages its events will touch into the cache
        // (Store::warm_for_pass), while this thread writes the chunk before. Bounded: the
        // reader is at most two chunks ahead.
        let mut seen: HashSet<DomainName> = HashSet::new();
        let mut pending = Vec::new();
        let keys_read = std::thread::scope(|scope| -> Result<usize, StoreError> {
            let (ahead, chunks) = std::sync::mpsc::sync_channel::<Vec<DueKey>>(1);
            let reader = scope.spawn(move || -> Result<usize, StoreError> {
                let mut buf = Vec::with_capacity(CHUNK);
                let mut open = true;
                let keys = store.due_by_each(today, |key| {
                    buf.push(key);
                    if buf.len() == CHUNK {
                        let chunk = std::mem::take(&mut buf);
                        store.warm_for_pass(&chunk);
                        open = ahead.send(chunk).is_ok();
                    }
                    open
                })?;
                if open && !buf.is_empty() {
                    store.warm_for_pass(&buf);
                    let _ = ahead.send(buf);
                }
                Ok(keys)
            });
            let mut run = || -> Result<(), StoreError> {
                for chunk in chunks.iter() {
                    // A key the writes moved ahead within today's range comes back: the
                    // domain is already in the next round.
                    let chunk: Vec<Due> = chunk
                        .into_iter()
                        .filter(|k| seen.insert(k.name.clone()))
                        .map(|k| Due {
                            name: k.name,
                            key: Some(k.on),
                        })
                        .collect();
                    step(&chunk, &mut report, &mut pending)?;
                }
                Ok(())
            };
            let done = run();
            // Ends the reader (also after an error) before the scope waits for it.
            drop(chunks);
            let keys = match reader.join() {
                Ok(keys) => keys?,
                Err(_) => {
                    return Err(StoreError::Corrupt {
                        key: "lifecycle pass".into(),
                        reason: "the due-index reader panicked".into(),
                    });
                }
            };
            done.map(|()| keys)
        })?;
        report.keys_read = keys_read;
        report.due = seen.len();
        // Later rounds: the domains with more due after their first event (after downtime).
        for _ in 1..MAX_STEPS {
            if pending.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for chunk in pending.chunks(CHUNK) {
                step(chunk, &mut report, &mut next)?;
            }
            pending = next;
        }
        Ok(())
    })?;
    written?;
    if report.events > 0 || report.failed > 0 {
        tracing::info!(
            day = %report.day,
            due = report.due,
            reminders_sent = report.reminders_sent,
            reminders_skipped = report.reminders_skipped,
            expired = report.expired,
            deleted = report.deleted,
            renewals = report.renewals,
            failed = report.failed,
            "lifecycle pass"
        );
    }
    Ok(report)
}
