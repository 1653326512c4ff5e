//! The lifecycle preview (issue 11 part 4): everything the scheduler will do and send in the
//! next N days, per domain and recipient. It is computed by the same functions that act: the
//! domains due within the window come from the due-date index, are copied into a scratch
//! [`MemState`] with their reminder records, and each simulated day runs
//! [`crate::core::lifecycle::due_event`] and [`crate::core::apply`] on that copy, exactly as
//! the pass does on the store; each notice is fanned out with the store's own fan-out,
//! without writing anything. What the preview cannot know (a panel's renewal, a registrar's
//! reply) does not happen in it.

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::core::lifecycle::{ReminderOutcome, due_event};
use crate::core::{
    Ctx, DomainStatus, Effect, Event, IdSource, MemState, Policy, RequestId, StateView,
};
use crate::store::{Store, StoreError};

/// One recipient of a previewed notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewRecipient {
    /// `user:<client>/<user>`, `operator:<email>` or `endpoint:<id>`.
    pub recipient: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// E-mail address or URL.
    pub address: String,
}

/// One thing the scheduler will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewItem {
    /// The day it happens.
    pub date: String,
    /// The domain (punycode).
    pub domain: String,
    /// The client.
    pub client: String,
    /// `reminder`, `reminder_skipped`, `expire`, `delete` or `auto_renew`.
    pub action: String,
    /// What, in words (the action-log line it will write).
    pub detail: String,
    /// The notice type it sends, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Whom the notice reaches.
    pub recipients: Vec<PreviewRecipient>,
}

/// Ids for the scratch state: never written anywhere.
struct PreviewIds(u128);

impl IdSource for PreviewIds {
    fn request_id(&mut self) -> RequestId {
        self.0 += 1;
        RequestId(uuid::Uuid::from_u128(self.0))
    }
}

/// The most days a preview may cover.
pub const MAX_DAYS: u32 = 400;

/// What the lifecycle pass will do from `now` through `days` days later.
pub fn preview(
    store: &Store,
    policy: &Policy,
    now: Timestamp,
    days: u32,
) -> Result<Vec<PreviewItem>, StoreError> {
    let today = crate::core::today(now);
    let last = today
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .unwrap_or(today);
    let scan = store.due_by(last)?;
    let mut mem = MemState::default();
    for name in &scan.names {
        let Some(d) = store.domain(name)? else {
            continue;
        };
        if let Some(e) = d.expires {
            for m in store.reminder_marks(name, e)? {
                mem.reminders
                    .insert((m.domain.clone(), m.expires, m.offset), m);
            }
        }
        if let Some(c) = store.client(&d.client_id)? {
            mem.clients.insert(c.id.clone(), c);
        }
        mem.domains.insert(d.name.clone(), d);
    }
    let mut ids = PreviewIds(0);
    let mut out = Vec::new();
    for k in 0..=days {
        let at = now + SignedDuration::from_hours(24 * i64::from(k));
        let day = crate::core::today(at);
        let names: Vec<_> = mem.domains.keys().cloned().collect();
        for name in names {
            for _ in 0..8 {
                let Some(d) = mem.domains.get(&name).cloned() else {
                    break;
                };
                let handled: Vec<u16> = match d.expires {
                    Some(e) => mem
                        .reminder_marks(&name, e)
                        .map_err(|e| StoreError::Corrupt {
                            key: name.to_string(),
                            reason: e.to_string(),
                        })?
                        .into_iter()
                        .map(|(o, _)| o)
                        .collect(),
                    None => Vec::new(),
                };
                let Some(event) = due_event(&d, &handled, day, policy) else {
                    break;
                };
                let renew = matches!(event, Event::Renew { .. });
                let mut ctx = Ctx {
                    now: at,
                    ids: &mut ids,
                    policy,
                };
                let t = match crate::core::apply(&mem, event, &mut ctx) {
                    Ok(t) if !t.is_noop() => t,
                    _ => break,
                };
                mem.commit(&t);
                out.extend(describe(store, &t, &d, day, at, renew)?);
            }
        }
    }
    out.sort_by(|a, b| (&a.date, &a.domain).cmp(&(&b.date, &b.domain)));
    Ok(out)
}

fn describe(
    store: &Store,
    t: &crate::core::Transition,
    before: &crate::core::Domain,
    day: Date,
    at: Timestamp,
    renew: bool,
) -> Result<Vec<PreviewItem>, StoreError> {
    let item = |action: &str, detail: String| PreviewItem {
        date: day.to_string(),
        domain: before.name.to_string(),
        client: before.client_id.to_string(),
        action: action.to_owned(),
        detail,
        notice: None,
        recipients: Vec::new(),
    };
    let mut out = Vec::new();
    let notices: Vec<_> = t
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut main = None;
    for e in &t.effects {
        if let Effect::Reminder(m) = e {
            match &m.outcome {
                ReminderOutcome::Sent => {
                    main = Some(item(
                        "reminder",
                        format!("expiry reminder, {} days before {}", m.offset, m.expires),
                    ))
                }
                ReminderOutcome::Skipped { reason } => out.push(item(
                    "reminder_skipped",
                    format!(
                        "the {}-day reminder of {} is skipped: {reason}",
                        m.offset, m.expires
                    ),
                )),
            }
        }
    }
    for d in &t.domains {
        let line = t
            .log
            .iter()
            .rev()
            .find(|l| l.domain.as_ref() == Some(&d.name) && l.status_after.is_some())
            .map(|l| l.message.clone())
            .unwrap_or_default();
        match d.status {
            DomainStatus::Expired if before.status != DomainStatus::Expired => {
                main = Some(item("expire", line))
            }
            DomainStatus::Deleted if before.status != DomainStatus::Deleted => {
                main = Some(item("delete", line))
            }
            DomainStatus::Renewing if renew => main = Some(item("auto_renew", line)),
            _ => {}
        }
    }
    if let Some(mut m) = main {
        if let Some(n) = notices.first() {
            m.notice = Some(n.kind.clone());
            m.recipients = store
                .notice_targets(n, at)?
                .into_iter()
                .map(|t| PreviewRecipient {
                    recipient: t.recipient,
                    channel: t.channel.as_str().to_owned(),
                    address: t.address,
                })
                .collect();
        }
        out.push(m);
    }
    Ok(out)
}
