//! The lifecycle pass (issue 11, DESIGN.md §9): the scheduler's part of a domain's life after
//! registration. It reads the due-date index up to today (never every domain), asks the pure
//! [`crate::core::lifecycle::due_event`] what is due for each domain found, and applies that
//! event through the store like any other: reminders, expiry, deletion, automatic renewal.
//! [`preview`] runs the same functions on a scratch copy of the due domains, day by day, and
//! reports what the pass would do and whom each notice would reach.

pub mod preview;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::lifecycle::{ReminderOutcome, due_event};
use crate::core::{Ctx, DomainName, DomainStatus, Effect, Policy};
use crate::idsource::UuidIds;
use crate::store::{Applied, Store, StoreError};

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

/// The calendar day of `now` in UTC (the core's `today`).
pub fn day_of(now: Timestamp) -> Date {
    now.to_zoned(jiff::tz::TimeZone::UTC).date()
}

fn tally(report: &mut PassReport, before: Option<DomainStatus>, applied: &Applied) {
    report.events += 1;
    for e in &applied.transition.effects {
        if let Effect::Reminder(m) = e {
            match m.outcome {
                ReminderOutcome::Sent => report.reminders_sent += 1,
                ReminderOutcome::Skipped { .. } => report.reminders_skipped += 1,
            }
        }
    }
    for d in &applied.transition.domains {
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

/// Moves one due domain on as far as today allows (several steps may be due: a missed
/// reminder and then the expiry, after downtime).
fn step(
    store: &Store,
    policy: &Policy,
    now: Timestamp,
    name: &DomainName,
    report: &mut PassReport,
) {
    let today = day_of(now);
    for _ in 0..8 {
        let d = match store.domain(name) {
            Ok(Some(d)) => d,
            Ok(None) => {
                let _ = store.set_due(name, None);
                return;
            }
            Err(e) => {
                tracing::error!(domain = %name, error = %e, "reading a due domain failed");
                report.failed += 1;
                return;
            }
        };
        let handled: Vec<u16> = match d.expires {
            Some(e) => match store.reminder_marks(name, e) {
                Ok(m) => m.into_iter().map(|m| m.offset).collect(),
                Err(err) => {
                    tracing::error!(domain = %name, error = %err, "reading reminder records failed");
                    report.failed += 1;
                    return;
                }
            },
            None => Vec::new(),
        };
        let Some(event) = due_event(&d, &handled, today, policy) else {
            // Nothing due today after all (the index was ahead of the rules, e.g. after a
            // configuration change): put the key where the rules say.
            let next = crate::core::lifecycle::next_due(&d, &handled, policy)
                .map(|at| at.max(today.tomorrow().unwrap_or(today)));
            if let Err(e) = store.set_due(name, next) {
                tracing::error!(domain = %name, error = %e, "moving a due-index key failed");
            }
            return;
        };
        let mut ids = UuidIds;
        let mut ctx = Ctx {
            now,
            ids: &mut ids,
            policy,
        };
        let what = format!("{event:?}");
        match store.apply(event, &mut ctx) {
            Ok(applied) if applied.transition.is_noop() => {
                // Decided already: nothing to do; try again tomorrow rather than loop.
                let _ = store.set_due(name, today.tomorrow().ok());
                return;
            }
            Ok(applied) => tally(report, Some(d.status), &applied),
            Err(e) => {
                tracing::warn!(domain = %name, event = %what, error = %e, "lifecycle event refused; looked at again tomorrow");
                report.failed += 1;
                let _ = store.set_due(name, today.tomorrow().ok());
                return;
            }
        }
    }
}

/// One lifecycle pass at `now`: every domain due on or before today, through the due-date
/// index only, in one batch (one flush at the end).
pub fn run_pass(store: &Store, policy: &Policy, now: Timestamp) -> Result<PassReport, StoreError> {
    let today = day_of(now);
    let scan = store.due_by(today)?;
    let mut report = PassReport {
        day: today.to_string(),
        keys_read: scan.keys_read,
        due: scan.names.len(),
        ..PassReport::default()
    };
    store.batch(|| {
        for name in &scan.names {
            step(store, policy, now, name, &mut report);
        }
    })?;
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
