//! The lifecycle's part of the store (issue 11). Keys in the `index` tree:
//!
//! - `lr\0<domain>\0<YYYY-MM-DD>\0<offset, 3 digits>` -> [`ReminderMark`]: a reminder of the
//!   series for that expiry date, sent or skipped. Written in the same transaction as its notice
//!   ([`crate::core::Effect::Reminder`]): the exactly-once key.
//! - `lx\0<YYYY-MM-DD>\0<domain>` -> (): the due-date index, the next day something happens to the
//!   domain ([`crate::core::lifecycle::next_due`]); a pass reads only keys up to today.
//! - `lz\0<domain>` -> `YYYY-MM-DD`: the domain's current `lx` date, to move it.
//!
//! Both are maintained by [`Store::lifecycle_writes`], called by every write of a domain
//! (events, the import, the pass itself) inside the same transaction.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;

use super::codec::{decode, encode};
use super::{Store, StoreError, Transition, key_join};
use crate::core::lifecycle::{ReminderMark, next_due};
use crate::core::{Domain, DomainName, Effect, NoticeDraft, Policy};
use crate::notices::catalogue::{self, Audience};
use crate::notices::model::Role;
use crate::notices::rules::{Target, fanout};

fn day(d: Date) -> String {
    d.strftime("%Y-%m-%d").to_string()
}

fn reminder_prefix(name: &DomainName, expires: Date) -> Vec<u8> {
    key_join(&[
        b"lr",
        name.as_str().as_bytes(),
        day(expires).as_bytes(),
        b"",
    ])
}

/// The key of one reminder record.
pub fn reminder_key(name: &DomainName, expires: Date, offset: u16) -> Vec<u8> {
    let mut k = reminder_prefix(name, expires);
    k.extend_from_slice(format!("{offset:03}").as_bytes());
    k
}

/// The due-index key of `name` on `date`.
pub fn due_key(date: Date, name: &DomainName) -> Vec<u8> {
    key_join(&[b"lx", day(date).as_bytes(), name.as_str().as_bytes()])
}

fn due_rev_key(name: &DomainName) -> Vec<u8> {
    key_join(&[b"lz", name.as_str().as_bytes()])
}

/// The domains a pass must look at, and what reading them cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueScan {
    /// Names whose due date is on or before the day asked, earliest first.
    pub names: Vec<DomainName>,
    /// Index keys read (the due ones plus the one past the end, if any).
    pub keys_read: usize,
}

impl Store {
    /// Sets the rules the store uses to keep the due-date index (the daemon's policy).
    pub fn set_policy(&self, policy: Policy) {
        if let Ok(mut p) = self.policy.write() {
            *p = policy;
        }
    }

    fn current_policy(&self) -> Policy {
        self.policy.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// The reminder records of `name`'s series for `expires`, by offset.
    pub fn reminder_marks(
        &self,
        name: &DomainName,
        expires: Date,
    ) -> Result<Vec<ReminderMark>, StoreError> {
        let mut out = Vec::new();
        for item in self.index.scan_prefix(reminder_prefix(name, expires)) {
            let (k, v) = item?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    /// Every reminder record of `name`, all series, oldest expiry first.
    pub fn reminder_history(&self, name: &DomainName) -> Result<Vec<ReminderMark>, StoreError> {
        let prefix = key_join(&[b"lr", name.as_str().as_bytes(), b""]);
        let mut out = Vec::new();
        for item in self.index.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    /// The domains due on or before `today` (the `lx` index up to that day, nothing else).
    pub fn due_by(&self, today: Date) -> Result<DueScan, StoreError> {
        let start = key_join(&[b"lx", b""]);
        let last = day(today);
        let mut scan = DueScan::default();
        for k in self.index.range(start.clone()..).keys() {
            let k = k?;
            scan.keys_read += 1;
            if !k.starts_with(&start) {
                break;
            }
            let rest = &k[start.len()..];
            let Some(cut) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            if &rest[..cut] > last.as_bytes() {
                break;
            }
            let name = String::from_utf8_lossy(&rest[cut + 1..]);
            match DomainName::parse(&name) {
                Ok(n) => scan.names.push(n),
                Err(e) => {
                    tracing::error!(key = %name, error = %e, "a due-index key names no domain")
                }
            }
        }
        Ok(scan)
    }

    /// The due date the index holds for `name`.
    pub fn due_date(&self, name: &DomainName) -> Result<Option<Date>, StoreError> {
        Ok(match self.index.get(due_rev_key(name))? {
            Some(v) => String::from_utf8_lossy(&v).parse().ok(),
            None => None,
        })
    }

    /// Moves `name`'s due date to `to` (None: out of the index), in its own write. The pass
    /// uses it for a domain it could not move on (a refused automatic renewal: tried again
    /// tomorrow) or whose key was stale.
    pub fn set_due(&self, name: &DomainName, to: Option<Date>) -> Result<(), StoreError> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.due_date(name)?;
        if old == to {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        if let Some(o) = old {
            batch.remove(due_key(o, name));
        }
        match to {
            Some(t) => {
                batch.insert(due_key(t, name), &[]);
                batch.insert(due_rev_key(name), day(t).as_bytes());
            }
            None => batch.remove(due_rev_key(name)),
        }
        self.index.apply_batch(batch)?;
        self.note_commit();
        drop(_guard);
        self.durable()
    }

    /// The `index` writes that keep the reminder records and the due-date index in step with
    /// a transition: its reminder marks, and for every domain it writes (or marks) the move of
    /// its `lx` key to [`next_due`]. Read under the writer lock, written in the transition's
    /// transaction. Returns (keys to remove, keys to put).
    #[allow(clippy::type_complexity)]
    pub(super) fn lifecycle_writes(
        &self,
        t: &Transition,
    ) -> Result<(Vec<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>), StoreError> {
        let mut del = Vec::new();
        let mut put = Vec::new();
        let mut new_marks: BTreeMap<(DomainName, Date), Vec<u16>> = BTreeMap::new();
        let mut touched: BTreeSet<DomainName> = t.domains.iter().map(|d| d.name.clone()).collect();
        for e in &t.effects {
            if let Effect::Reminder(m) = e {
                put.push((reminder_key(&m.domain, m.expires, m.offset), encode(m)));
                new_marks
                    .entry((m.domain.clone(), m.expires))
                    .or_default()
                    .push(m.offset);
                touched.insert(m.domain.clone());
            }
        }
        if touched.is_empty() {
            return Ok((del, put));
        }
        let policy = self.current_policy();
        for name in touched {
            let d: Option<Domain> = match t.domains.iter().find(|d| d.name == name) {
                Some(d) => Some(d.clone()),
                None => self.domain(&name)?,
            };
            let due = match &d {
                Some(d) => {
                    let mut handled: Vec<u16> = Vec::new();
                    if let Some(e) = d.expires {
                        // Only a domain with an expiry has reminders to look up.
                        if crate::core::lifecycle::stage(d) != crate::core::lifecycle::Stage::Out {
                            handled = self
                                .reminder_marks(&name, e)?
                                .into_iter()
                                .map(|m| m.offset)
                                .collect();
                        }
                        if let Some(more) = new_marks.get(&(name.clone(), e)) {
                            handled.extend(more);
                        }
                    }
                    next_due(d, &handled, &policy)
                }
                None => None,
            };
            let old = self.due_date(&name)?;
            if old == due {
                continue;
            }
            if let Some(o) = old {
                del.push(due_key(o, &name));
            }
            match due {
                Some(at) => {
                    put.push((due_key(at, &name), Vec::new()));
                    put.push((due_rev_key(&name), day(at).into_bytes()));
                }
                None => del.push(due_rev_key(&name)),
            }
        }
        Ok((del, put))
    }

    /// Whom a notice would reach, without writing anything: the same fan-out the store runs
    /// when the notice is written (for the lifecycle preview).
    pub fn notice_targets(
        &self,
        draft: &NoticeDraft,
        now: Timestamp,
    ) -> Result<Vec<Target>, StoreError> {
        let Some(nt) = catalogue::lookup(&draft.kind) else {
            return Ok(Vec::new());
        };
        let users = match (&draft.client, nt.audience) {
            (Some(c), Audience::Customer) => {
                let mut users = self.users_of(c.as_str())?;
                if !users.iter().any(|u| u.role == Role::Owner)
                    && let Some(owner) = self.owner_from_contact(c.as_str(), now)?
                {
                    users.push(owner);
                }
                users
            }
            _ => Vec::new(),
        };
        let operators = self.operators.read().map(|g| g.clone()).unwrap_or_default();
        Ok(fanout(nt, &users, &operators, &self.endpoints()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        ClientId, Contact, Ctx, DomainOrder, Event, Handle, IdSource, NewClient, Person,
        Registrant, RequestId, Resolution,
    };

    struct Ids(u128);
    impl IdSource for Ids {
        fn request_id(&mut self) -> RequestId {
            self.0 += 1;
            RequestId(uuid::Uuid::from_u128(self.0))
        }
    }

    fn apply(store: &Store, now: Timestamp, e: Event) {
        let policy = Policy::default();
        let mut ids = Ids(u128::from(store.log_seq().unwrap_or(0)) + 1000);
        let mut ctx = Ctx {
            now,
            ids: &mut ids,
            policy: &policy,
        };
        store.apply(e, &mut ctx).expect("apply");
    }

    #[test]
    fn the_due_index_follows_every_write_and_a_pass_reads_only_due_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s"), 8 << 20).expect("store");
        let policy = Policy::default();
        store.set_policy(policy.clone());
        let now: Timestamp = "2030-01-01T09:00:00Z".parse().expect("now");
        let today = jiff::civil::date(2030, 1, 1);
        apply(
            &store,
            now,
            Event::CreateClient(NewClient {
                id: ClientId::parse("c").expect("id"),
                registrant: Registrant::Person(Person {
                    fio_ru: "Иванов".into(),
                    fio_en: "Ivanov".into(),
                    passport: vec!["1".into()],
                    birth_date: jiff::civil::date(1980, 1, 1),
                    postal_addr: vec!["Москва".into()],
                    phone: "+7 495 1234567".into(),
                    fax: None,
                    email: "a@example.ru".into(),
                    is_protected: true,
                    is_resident: true,
                    inn: None,
                }),
                contact: Contact {
                    name: "I".into(),
                    email: "a@example.ru".into(),
                    phone: None,
                },
                existing_handle: Some(Handle::parse("C_1_1-GPT").expect("handle")),
            }),
        );
        let plus = |n: i64| today.checked_add(jiff::Span::new().days(n)).expect("date");
        for (name, e) in [("a.com", plus(100)), ("b.com", plus(200))] {
            apply(
                &store,
                now,
                Event::OrderDomain(DomainOrder {
                    name: DomainName::parse(name).expect("name"),
                    client_id: ClientId::parse("c").expect("id"),
                    years: 1,
                    nameservers: Vec::new(),
                    order_id: name.into(),
                    description: Vec::new(),
                    paid: true,
                    auto_renew: false,
                }),
            );
            apply(
                &store,
                now,
                Event::Resolve {
                    domain: DomainName::parse(name).expect("name"),
                    outcome: Resolution::Registered { expires: Some(e) },
                    note: "test".into(),
                },
            );
        }
        let a = DomainName::parse("a.com").expect("a");
        assert_eq!(store.due_date(&a).expect("due"), Some(plus(10)));
        // Nothing is due today: one key read (the first one, past today), nothing done.
        let r = crate::lifecycle::run_pass(&store, &policy, now).expect("pass");
        assert_eq!((r.due, r.keys_read, r.events), (0, 1, 0), "{r:?}");
        // On day 10 only a.com is due: its 90-day reminder goes, its key moves to day 40.
        let day10 = now + jiff::SignedDuration::from_hours(24 * 10);
        let r = crate::lifecycle::run_pass(&store, &policy, day10).expect("pass");
        assert_eq!((r.due, r.reminders_sent), (1, 1), "{r:?}");
        assert!(r.keys_read <= 2, "{r:?}");
        assert_eq!(store.due_date(&a).expect("due"), Some(plus(40)));
        let marks = store.reminder_marks(&a, plus(100)).expect("marks");
        assert_eq!(marks.len(), 1);
        assert_eq!(marks[0].offset, 90);
        // The preview from day 10 over 100 days: a.com's four other reminders, its expiry,
        // b.com's first reminder; nothing written.
        let p = crate::lifecycle::preview(&store, &policy, day10, 100).expect("preview");
        let of_a: Vec<&str> = p
            .iter()
            .filter(|i| i.domain == "a.com")
            .map(|i| i.action.as_str())
            .collect();
        assert_eq!(
            of_a,
            ["reminder", "reminder", "reminder", "reminder", "expire"]
        );
        assert!(
            p.iter()
                .any(|i| i.domain == "b.com" && i.action == "reminder")
        );
        assert_eq!(p[0].recipients[0].address, "a@example.ru");
        assert_eq!(store.due_date(&a).expect("due"), Some(plus(40)));
        assert_eq!(store.reminder_marks(&a, plus(100)).expect("marks").len(), 1);
    }
}
