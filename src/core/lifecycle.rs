//! The domain's life after registration (DESIGN.md §9, issue 11): expiry reminders, expiry
//! (the registrar parks the name), grace, deletion. Pure: the scheduler turns the clock into
//! events ([`due_event`]: `ReminderDue`, `ExpiryReached`, `GraceEnded`, or an automatic
//! `Renew`), and the core decides here, with the same state view and log as every other
//! event. The store keeps a due-date index from [`next_due`], so a pass reads only the domains
//! that have something to do.
//!
//! Dates are calendar days in UTC. A domain whose expiry date is `E` is paid through `E`: it
//! expires (Registered -> Expired, phase Parked) on `E + 1`; renewal is accepted through the
//! last day of grace `G = E + grace days`; it is deleted on `G + 1`. A reminder of offset `o`
//! is due on `E - o`.
//!
//! Exactly once: a reminder is keyed by (domain, expiry date, offset) and the key is written
//! in the same transaction as the notice it causes ([`Effect::Reminder`]). A moved expiry
//! starts a new series (the old keys name the old date). When several offsets are due at once
//! (downtime), only the latest (smallest offset) is sent; the older ones are recorded as
//! skipped, with the reason. A domain whose renewal is under way (Renewing) gets none: each due
//! offset is recorded as skipped.

use std::collections::BTreeMap;

use jiff::Span;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::event::{Event, RegistrarNotice};
use super::ids::DomainName;
use super::log::{Actor, Evidence, LogDraft};
use super::model::{Domain, DomainStatus, Phase};
use super::notice::{NoticeDraft, types};
use super::transition::{CoreError, Policy, Work};
use super::view::Effect;

/// The default reminder offsets, in days before expiry (the reseller programs' five).
pub const DEFAULT_REMINDER_DAYS: [u16; 5] = [90, 60, 30, 15, 1];
/// The default grace, in days after expiry, when neither the profile nor the configuration
/// says otherwise (issue 11: "give ten days to renew").
pub const DEFAULT_GRACE_DAYS: u16 = 10;

/// When automatic renewal asks for a renewal (`[renewal]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRenewRule {
    /// Ask this many days before expiry (later for TLDs in the renewal window).
    pub days_before: u16,
    /// Years per renewal.
    pub years: u8,
}

/// The lifecycle rules: reminder offsets, grace per TLD, automatic renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePolicy {
    /// Reminder offsets in days before expiry, largest first, no duplicates, each >= 1.
    pub reminder_days: Vec<u16>,
    /// Days of grace after expiry when the TLD has no rule of its own.
    pub grace_days: u16,
    /// Grace per TLD (punycode, lower case), from the registrar profile.
    pub tld_grace: BTreeMap<String, u16>,
    /// Automatic renewal of domains marked auto-renew (None: off).
    pub auto_renew: Option<AutoRenewRule>,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        LifecyclePolicy {
            reminder_days: DEFAULT_REMINDER_DAYS.to_vec(),
            grace_days: DEFAULT_GRACE_DAYS,
            tld_grace: BTreeMap::new(),
            auto_renew: None,
        }
    }
}

impl LifecyclePolicy {
    /// Days of grace for a name: its TLD's rule, else the default.
    pub fn grace_for(&self, name: &DomainName) -> u16 {
        self.tld_grace
            .get(name.tld())
            .copied()
            .unwrap_or(self.grace_days)
    }
}

/// What became of one reminder (domain, expiry date, offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReminderOutcome {
    /// The notice was written (and fanned out) in the same transaction.
    Sent,
    /// Not sent, and never will be; the reason says why.
    Skipped {
        /// Why (renewal under way, superseded after downtime, expired first).
        reason: String,
    },
}

/// The record of one reminder, written in the same transaction as its notice (or its skip).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderMark {
    /// The domain.
    pub domain: DomainName,
    /// The expiry date of the series.
    pub expires: Date,
    /// Days before expiry.
    pub offset: u16,
    /// Sent or skipped.
    pub outcome: ReminderOutcome,
    /// The day it was handled.
    pub on: Date,
}

/// Where a domain stands in its life after registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Registered (or in Error after a failed renewal, still held at the registrar): reminders
    /// run, then it expires.
    Active {
        /// Paid through this day.
        expires: Date,
    },
    /// A renewal is under way: due reminders are skipped; nothing expires meanwhile.
    Renewing {
        /// The expiry being renewed.
        expires: Date,
    },
    /// Expired (or a renewal during grace failed): deleted after `grace_ends`.
    InGrace {
        /// The old expiry.
        expires: Option<Date>,
        /// Last day a renewal is accepted.
        grace_ends: Date,
    },
    /// Nothing of the lifecycle applies (not registered yet, cancelled, deleted).
    Out,
}

/// The lifecycle stage of `d`.
pub fn stage(d: &Domain) -> Stage {
    match (d.status, d.expires, d.grace_ends) {
        (DomainStatus::Expired, e, Some(g)) => Stage::InGrace {
            expires: e,
            grace_ends: g,
        },
        (DomainStatus::Expired, Some(e), None) => Stage::InGrace {
            expires: Some(e),
            grace_ends: e,
        },
        (DomainStatus::Error, e, Some(g)) => Stage::InGrace {
            expires: e,
            grace_ends: g,
        },
        (DomainStatus::Registered | DomainStatus::Error, Some(e), None) => {
            Stage::Active { expires: e }
        }
        (DomainStatus::Renewing, Some(e), _) => Stage::Renewing { expires: e },
        _ => Stage::Out,
    }
}

fn plus(d: Date, days: i64) -> Date {
    d.checked_add(Span::new().days(days)).unwrap_or(d)
}

/// The day the reminder of `offset` days is due for expiry `expires`.
pub fn reminder_date(expires: Date, offset: u16) -> Date {
    plus(expires, -i64::from(offset))
}

/// The last day of grace for a domain expiring on `expires`.
pub fn grace_end(policy: &LifecyclePolicy, name: &DomainName, expires: Date) -> Date {
    plus(expires, i64::from(policy.grace_for(name)))
}

/// Days from `today` to `to` (negative when `to` is past).
pub fn days_between(today: Date, to: Date) -> i64 {
    today.until(to).map_or(0, |s| i64::from(s.get_days()))
}

/// The day automatic renewal asks for `d`'s renewal, if it applies: `days_before` days before
/// expiry, but not before the registry's renewal window opens (R01: .RU/.SU/.РФ not earlier
/// than 60 days before the end of the term, r01-email-interface.md); an Expired auto-renew
/// domain on its first day of grace.
pub fn auto_renew_date(d: &Domain, policy: &Policy) -> Option<Date> {
    let rule = policy.lifecycle.auto_renew?;
    if !d.auto_renew {
        return None;
    }
    let e = d.expires?;
    match d.status {
        DomainStatus::Registered => {
            let mut at = plus(e, -i64::from(rule.days_before));
            if policy.renew_window_tlds.iter().any(|t| t == d.name.tld()) {
                at = at.max(plus(e, -i64::from(policy.renew_window_days)));
            }
            Some(at)
        }
        DomainStatus::Expired => Some(plus(e, 1)),
        _ => None,
    }
}

/// Reminder offsets of `d`'s current series that are due by `today` and not handled yet,
/// smallest (latest) first.
fn due_unhandled(
    policy: &LifecyclePolicy,
    expires: Date,
    handled: &[u16],
    today: Date,
) -> Vec<u16> {
    let mut v: Vec<u16> = policy
        .reminder_days
        .iter()
        .copied()
        .filter(|o| !handled.contains(o) && reminder_date(expires, *o) <= today)
        .collect();
    v.sort_unstable();
    v
}

/// The next day something happens to `d` (a reminder, an automatic renewal, expiry, deletion),
/// given the offsets of its current series already handled. May be in the past: a pass then
/// handles it at once. `None`: nothing will happen without another event.
pub fn next_due(d: &Domain, handled: &[u16], policy: &Policy) -> Option<Date> {
    let lp = &policy.lifecycle;
    let reminders = |e: Date| {
        lp.reminder_days
            .iter()
            .filter(|o| !handled.contains(o))
            .map(|o| reminder_date(e, *o))
            .min()
    };
    let auto = auto_renew_date(d, policy);
    let candidates = match stage(d) {
        Stage::Active { expires } => {
            let auto = auto.filter(|_| d.status == DomainStatus::Registered);
            [reminders(expires), Some(plus(expires, 1)), auto]
        }
        Stage::Renewing { expires } => [reminders(expires), None, None],
        Stage::InGrace { grace_ends, .. } => {
            let auto = auto.filter(|_| d.status == DomainStatus::Expired);
            [Some(plus(grace_ends, 1)), auto, None]
        }
        Stage::Out => [None, None, None],
    };
    candidates.into_iter().flatten().min()
}

/// What the scheduler fires for `d` on `today`, if anything: the same candidates as
/// [`next_due`], in order of precedence (an automatic renewal first, then expiry or deletion,
/// then a reminder). Returns `Some` exactly when `next_due(d, handled) <= today`.
pub fn due_event(d: &Domain, handled: &[u16], today: Date, policy: &Policy) -> Option<Event> {
    if next_due(d, handled, policy).is_none_or(|at| at > today) {
        return None;
    }
    let name = d.name.clone();
    let auto = auto_renew_date(d, policy).filter(|at| *at <= today);
    let renew = |years| Event::Renew {
        domain: name.clone(),
        years,
        actor: Actor::Scheduler,
    };
    let years = policy.lifecycle.auto_renew.map_or(1, |r| r.years);
    match stage(d) {
        Stage::Active { expires } => {
            if auto.is_some() && d.status == DomainStatus::Registered {
                Some(renew(years))
            } else if today > expires {
                Some(Event::ExpiryReached { domain: name })
            } else {
                due_unhandled(&policy.lifecycle, expires, handled, today)
                    .first()
                    .map(|o| Event::ReminderDue {
                        domain: name.clone(),
                        expires,
                        offset: *o,
                    })
            }
        }
        Stage::Renewing { expires } => due_unhandled(&policy.lifecycle, expires, handled, today)
            .first()
            .map(|o| Event::ReminderDue {
                domain: name.clone(),
                expires,
                offset: *o,
            }),
        Stage::InGrace { grace_ends, .. } => {
            if auto.is_some() && d.status == DomainStatus::Expired && today <= grace_ends {
                Some(renew(years))
            } else if today > grace_ends {
                Some(Event::GraceEnded { domain: name })
            } else {
                None
            }
        }
        Stage::Out => None,
    }
}

fn reminder_notice(d: &Domain, expires: Date, offset: u16, today: Date) -> NoticeDraft {
    let mut data = BTreeMap::new();
    data.insert("domain".to_owned(), d.name.to_unicode());
    data.insert("expires".to_owned(), expires.to_string());
    data.insert(
        "days_left".to_owned(),
        days_between(today, expires).max(0).to_string(),
    );
    data.insert("offset".to_owned(), offset.to_string());
    NoticeDraft {
        kind: types::DOMAIN_EXPIRY_REMINDER.to_owned(),
        client: Some(d.client_id.clone()),
        domain: Some(d.name.clone()),
        data,
    }
}

impl Work<'_> {
    fn lifecycle_today(&self) -> Date {
        super::transition::today(self.now)
    }

    /// The offsets of `d`'s series for `expires` handled so far (this event's marks included).
    fn handled_offsets(&self, name: &DomainName, expires: Date) -> Result<Vec<u16>, CoreError> {
        let mut v: Vec<u16> = self
            .view
            .reminder_marks(name, expires)?
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        for e in &self.t.effects {
            if let Effect::Reminder(m) = e
                && &m.domain == name
                && m.expires == expires
            {
                v.push(m.offset);
            }
        }
        Ok(v)
    }

    /// Records a reminder's fate (its key, written with the transition) and logs it.
    fn mark_reminder(&mut self, d: &Domain, expires: Date, offset: u16, outcome: ReminderOutcome) {
        let today = self.lifecycle_today();
        let (action, message) = match &outcome {
            ReminderOutcome::Sent => (
                "domain.reminder_sent",
                format!(
                    "expiry reminder ({offset} days before {expires}) sent: {} days left",
                    days_between(today, expires).max(0)
                ),
            ),
            ReminderOutcome::Skipped { reason } => (
                "domain.reminder_skipped",
                format!("expiry reminder ({offset} days before {expires}) skipped: {reason}"),
            ),
        };
        self.t.log.push(LogDraft {
            at: self.now,
            actor: self.actor,
            action: action.into(),
            message,
            domain: Some(d.name.clone()),
            client: Some(d.client_id.clone()),
            request: d.open_request,
            status_before: None,
            status_after: None,
            evidence: Evidence::default(),
        });
        self.t.effects.push(Effect::Reminder(ReminderMark {
            domain: d.name.clone(),
            expires,
            offset,
            outcome,
            on: today,
        }));
    }

    /// `ReminderDue`: sends the latest due reminder of the domain's current series and records
    /// the older due ones as skipped; a Renewing domain gets none (each recorded as skipped).
    pub(super) fn reminder_due(
        &mut self,
        name: &DomainName,
        expires: Date,
        offset: u16,
    ) -> Result<(), CoreError> {
        let d = self.domain(name)?;
        let today = self.lifecycle_today();
        if d.expires != Some(expires) {
            // A moved expiry started a new series: the old one sends nothing more.
            return Ok(());
        }
        let handled = self.handled_offsets(name, expires)?;
        let due = due_unhandled(&self.policy.lifecycle, expires, &handled, today);
        if !due.contains(&offset) {
            // Handled already (at most once), or not due yet (a clock that went back).
            return Ok(());
        }
        match stage(&d) {
            Stage::Renewing { .. } => {
                let reason = match d.open_request {
                    Some(r) => format!("a renewal is under way (request {r})"),
                    None => "a renewal is under way".to_owned(),
                };
                for o in due {
                    self.mark_reminder(
                        &d,
                        expires,
                        o,
                        ReminderOutcome::Skipped {
                            reason: reason.clone(),
                        },
                    );
                }
            }
            Stage::Active { .. } if today <= expires => {
                let latest = due[0];
                for o in due.iter().rev().filter(|o| **o != latest) {
                    let reason = format!(
                        "missed (the scheduler did not run on {}); superseded by the {latest}-day reminder",
                        reminder_date(expires, *o)
                    );
                    self.mark_reminder(&d, expires, *o, ReminderOutcome::Skipped { reason });
                }
                self.mark_reminder(&d, expires, latest, ReminderOutcome::Sent);
                self.t
                    .effects
                    .push(Effect::Notify(reminder_notice(&d, expires, latest, today)));
            }
            _ => {
                return Err(CoreError::Illegal(format!(
                    "{name} is {}; no expiry reminder applies",
                    d.status.as_str()
                )));
            }
        }
        Ok(())
    }

    /// `ExpiryReached`: the expiry date passed without a renewal. The registrar parks the
    /// name; the customer hears (mandatory) that the site stopped and how many days remain.
    pub(super) fn expiry_reached(&mut self, name: &DomainName) -> Result<(), CoreError> {
        let mut d = self.domain(name)?;
        let today = self.lifecycle_today();
        let Stage::Active { expires } = stage(&d) else {
            return match d.status {
                // Already expired (a repeated pass, or the registrar said so first).
                DomainStatus::Expired | DomainStatus::Deleted => Ok(()),
                s => Err(CoreError::Illegal(format!(
                    "{name} is {}; only a Registered domain expires",
                    s.as_str()
                ))),
            };
        };
        if today <= expires {
            return Err(CoreError::Illegal(format!(
                "{name} is paid through {expires}; it does not expire before {}",
                plus(expires, 1)
            )));
        }
        let handled = self.handled_offsets(name, expires)?;
        for o in due_unhandled(&self.policy.lifecycle, expires, &handled, today)
            .into_iter()
            .rev()
        {
            let reason = "the domain expired before the reminder went out".to_owned();
            self.mark_reminder(&d, expires, o, ReminderOutcome::Skipped { reason });
        }
        let grace_ends = grace_end(&self.policy.lifecycle, name, expires);
        self.park(&mut d, expires, grace_ends, today);
        let msg = format!(
            "expired: paid through {expires}; parked by the registrar (the site has stopped); renewable until {grace_ends}"
        );
        self.put_domain(d, "domain.expired", msg, Evidence::default());
        Ok(())
    }

    fn park(&mut self, d: &mut Domain, expires: Date, grace_ends: Date, today: Date) {
        d.status = DomainStatus::Expired;
        d.phase = Phase::Parked;
        d.grace_ends = Some(grace_ends);
        d.open_request = None;
        d.last_error = None;
        let mut data = BTreeMap::new();
        data.insert("domain".to_owned(), d.name.to_unicode());
        data.insert("expires".to_owned(), expires.to_string());
        data.insert("grace_ends".to_owned(), grace_ends.to_string());
        data.insert(
            "days_left".to_owned(),
            (days_between(today, grace_ends) + 1).max(0).to_string(),
        );
        self.t.effects.push(Effect::Notify(NoticeDraft {
            kind: types::DOMAIN_EXPIRED.to_owned(),
            client: Some(d.client_id.clone()),
            domain: Some(d.name.clone()),
            data,
        }));
    }

    fn delete(&mut self, d: &mut Domain, on: Date) {
        d.status = DomainStatus::Deleted;
        d.phase = Phase::Deleted;
        d.deleted_on = Some(on);
        d.open_request = None;
        let mut data = BTreeMap::new();
        data.insert("domain".to_owned(), d.name.to_unicode());
        data.insert("deleted_on".to_owned(), on.to_string());
        self.t.effects.push(Effect::Notify(NoticeDraft {
            kind: types::DOMAIN_DELETED.to_owned(),
            client: Some(d.client_id.clone()),
            domain: Some(d.name.clone()),
            data,
        }));
    }

    /// `GraceEnded`: grace passed without a renewal; the registrar deletes the name. The
    /// customer gets the final (mandatory) notice; the name may be ordered again.
    pub(super) fn grace_ended(&mut self, name: &DomainName) -> Result<(), CoreError> {
        let mut d = self.domain(name)?;
        let today = self.lifecycle_today();
        let Stage::InGrace { grace_ends, .. } = stage(&d) else {
            return match d.status {
                DomainStatus::Deleted => Ok(()),
                s => Err(CoreError::Illegal(format!(
                    "{name} is {}; only an Expired domain is deleted when grace ends",
                    s.as_str()
                ))),
            };
        };
        if today <= grace_ends {
            return Err(CoreError::Illegal(format!(
                "{name} is renewable until {grace_ends}; it is not deleted before {}",
                plus(grace_ends, 1)
            )));
        }
        let on = plus(grace_ends, 1);
        self.delete(&mut d, on);
        let msg = format!("deleted: grace ended on {grace_ends} without a renewal");
        self.put_domain(d, "domain.deleted", msg, Evidence::default());
        Ok(())
    }

    /// A registrar notice (a reply rule's `expired` or `deleted` event): the registrar's word
    /// meets the same transitions as the clock's.
    pub(super) fn registrar_notice(
        &mut self,
        name: &DomainName,
        notice: RegistrarNotice,
        evidence: Evidence,
    ) -> Result<(), CoreError> {
        let mut d = self.domain(name)?;
        let today = self.lifecycle_today();
        let note_only = |w: &mut Self, d: &Domain, why: String| {
            w.t.log.push(LogDraft {
                at: w.now,
                actor: w.actor,
                action: "domain.registrar_notice".into(),
                message: why,
                domain: Some(d.name.clone()),
                client: Some(d.client_id.clone()),
                request: d.open_request,
                status_before: None,
                status_after: None,
                evidence: evidence.clone(),
            });
        };
        match notice {
            RegistrarNotice::Expired => match stage(&d) {
                Stage::Active { expires } => {
                    // The registrar's date wins over ours: expired now at the latest.
                    let base = expires.min(plus(today, -1));
                    let grace_ends = grace_end(&self.policy.lifecycle, name, base);
                    self.park(&mut d, expires, grace_ends, today);
                    let msg = format!(
                        "the registrar reports the domain expired; parked; renewable until {grace_ends}"
                    );
                    self.put_domain(d, "domain.expired", msg, evidence);
                }
                Stage::InGrace { .. } | Stage::Renewing { .. } => {
                    let why = format!(
                        "the registrar reports the domain expired; it is already {}: logged only",
                        d.status.as_str()
                    );
                    note_only(self, &d, why);
                }
                Stage::Out if d.status == DomainStatus::Deleted => {
                    note_only(
                        self,
                        &d,
                        "the registrar reports the domain expired; it is already Deleted: logged only"
                            .into(),
                    );
                }
                Stage::Out => {
                    return Err(CoreError::Illegal(format!(
                        "{name} is {}; an expiry notice applies only to a registered domain",
                        d.status.as_str()
                    )));
                }
            },
            RegistrarNotice::Deleted => match d.status {
                DomainStatus::Deleted => note_only(
                    self,
                    &d,
                    "the registrar reports the domain deleted; it is already Deleted: logged only"
                        .into(),
                ),
                DomainStatus::Registered
                | DomainStatus::Renewing
                | DomainStatus::Expired
                | DomainStatus::Error
                    if d.expires.is_some() =>
                {
                    self.delete(&mut d, today);
                    let msg = "the registrar reports the domain deleted".to_owned();
                    self.put_domain(d, "domain.deleted", msg, evidence);
                }
                s => {
                    return Err(CoreError::Illegal(format!(
                        "{name} is {}; a deletion notice applies only to a registered domain",
                        s.as_str()
                    )));
                }
            },
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
