//! The lifecycle's part of the store (issue 11). Keys in the `index` tree:
//!
//! - `lr\0<domain>\0<YYYY-MM-DD>\0<offset, 3 digits>` -> [`ReminderMark`]: a reminder of the
//!   series for that expiry date, sent or skipped. Written in the same transaction as its notice
//!   ([`crate::core::Effect::Reminder`]): the exactly-once key.
//! - `lx\0<YYYY-MM-DD>\0<domain>` -> (): the due-date index, the next day something happens to the
//!   domain ([`crate::core::lifecycle::next_due`] of the domain and its reminder records, by the
//!   store's policy); a pass reads only keys up to today.
//!
//! The index is maintained by [`Store::lifecycle_writes`], called by every write of a domain
//! (events, the import, the pass itself) inside the same transaction: it computes the domain's
//! due date before and after the write from the records themselves, so no reverse key (domain
//! -> date) is kept. That was a sixth key for every imported domain and an eleventh insert for
//! every reminder (issue 13's keys-per-domain lever). A key the rules no longer put there (the
//! policy changed between two runs) is dropped by the pass on its day.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;

use super::codec::{decode, encode};
use super::{ApplyError, Extra, Store, StoreError, Transition, key_join};
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

/// One key of the due-date index: `name` is due on `on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueKey {
    /// The domain.
    pub name: DomainName,
    /// The day the key is filed under.
    pub on: Date,
}

/// The domains a pass must look at, and what reading them cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueScan {
    /// Names whose due date is on or before the day asked, earliest first, each once.
    pub names: Vec<DomainName>,
    /// The keys read, in order (a name may have two after a policy change).
    pub keys: Vec<DueKey>,
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

    /// True when the store keeps the due-date index by `policy` (the pass's rules).
    pub fn keeps_due_by(&self, policy: &Policy) -> bool {
        self.policy.read().is_ok_and(|p| *p == *policy)
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
        let mut keys = Vec::new();
        let keys_read = self.due_by_each(today, |k| {
            keys.push(k);
            true
        })?;
        let mut seen = std::collections::HashSet::new();
        let names = keys
            .iter()
            .filter(|k| seen.insert(k.name.clone()))
            .map(|k| k.name.clone())
            .collect();
        Ok(DueScan {
            names,
            keys,
            keys_read,
        })
    }

    /// Hands `each` the keys due on or before `today`, earliest first, as it reads them from
    /// the `lx` index (stopping early when `each` returns false); returns the keys read. The
    /// pass streams its first round this way, so the scan overlaps the writes.
    pub fn due_by_each(
        &self,
        today: Date,
        mut each: impl FnMut(DueKey) -> bool,
    ) -> Result<usize, StoreError> {
        let start = key_join(&[b"lx", b""]);
        let last = day(today);
        let mut keys_read = 0;
        for k in self.index.range(start.clone()..).keys() {
            let k = k?;
            keys_read += 1;
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
            let on = String::from_utf8_lossy(&rest[..cut]).parse::<Date>();
            match (DomainName::parse(&name), on) {
                (Ok(name), Ok(on)) => {
                    if !each(DueKey { name, on }) {
                        break;
                    }
                }
                (Err(e), _) => {
                    tracing::error!(key = %name, error = %e, "a due-index key names no domain")
                }
                (_, Err(e)) => {
                    tracing::error!(key = %name, error = %e, "a due-index key has no date")
                }
            }
        }
        Ok(keys_read)
    }

    /// Reads, and throws away, what a pass's event for each of `names` reads and writes: the
    /// domain, its reminder records and due key, its client and users, and the last keys of
    /// its log scopes (where the event's log index entries go). Run on a second thread one
    /// chunk ahead of the lifecycle pass, it brings those pages into
    /// sled's cache while the pass, which holds the writer lock, works on the chunk before.
    /// With 1M domains and a 64 MB cache, about a third of a pass was spent pulling pages
    /// from disk and decoding them. Changes nothing; errors are the pass's to report.
    pub fn warm_for_pass(&self, keys: &[DueKey]) {
        for DueKey { name, .. } in keys {
            let Ok(Some(d)) = self.domain(name) else {
                continue;
            };
            if let Some(e) = d.expires {
                let _ = self.index.scan_prefix(reminder_prefix(name, e)).count();
            }
            let _ = self.client(&d.client_id);
            let _ = self
                .users
                .scan_prefix(super::notices::users_prefix(d.client_id.as_str()))
                .count();
            for scope in [
                super::LogScope::Domain(d.name.clone()),
                super::LogScope::Client(d.client_id.clone()),
            ] {
                let _ = self
                    .log_index
                    .scan_prefix(super::log_scope_prefix(&scope))
                    .next_back();
            }
        }
    }

    /// The day `d` is due by the store's rules: [`next_due`] of the domain and its reminder
    /// records for its expiry (as committed, plus `more` offsets a write adds).
    fn due_of(
        &self,
        d: &Domain,
        more: &[u16],
        policy: &Policy,
    ) -> Result<Option<Date>, StoreError> {
        let mut handled: Vec<u16> = Vec::new();
        if let Some(e) = d.expires
            // Only a domain still in its life has reminders to look up.
            && crate::core::lifecycle::stage(d) != crate::core::lifecycle::Stage::Out
        {
            handled = self
                .reminder_marks(&d.name, e)?
                .into_iter()
                .map(|m| m.offset)
                .collect();
        }
        handled.extend_from_slice(more);
        Ok(next_due(d, &handled, policy))
    }

    /// The day the index holds `name` under by the store's rules (None: out of the index, or
    /// its key is not where the rules put it).
    pub fn due_date(&self, name: &DomainName) -> Result<Option<Date>, StoreError> {
        let Some(d) = self.domain(name)? else {
            return Ok(None);
        };
        Ok(match self.due_of(&d, &[], &self.current_policy())? {
            Some(at) if self.index.contains_key(due_key(at, name))? => Some(at),
            _ => None,
        })
    }

    /// Moves the due key of `name` filed under `from` to `to` (None: out of the index), in its
    /// own write. The pass uses it for a key the rules no longer put there (a domain gone, or
    /// nothing due on that day after a change of policy).
    pub fn move_due(
        &self,
        name: &DomainName,
        from: Date,
        to: Option<Date>,
    ) -> Result<(), StoreError> {
        if to == Some(from) {
            return Ok(());
        }
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        batch.remove(due_key(from, name));
        if let Some(t) = to {
            batch.insert(due_key(t, name), &[]);
        }
        self.index.apply_batch(batch)?;
        self.note_commit();
        drop(_guard);
        self.durable()
    }

    /// Files a due key for `name` on `on` as it is, whatever the rules say (tests: a stale key).
    #[cfg(test)]
    pub(crate) fn put_due_key(&self, name: &DomainName, on: Date) -> Result<(), StoreError> {
        self.index.insert(due_key(on, name), &[])?;
        Ok(())
    }

    /// Applies many independent transitions in ONE transaction (the lifecycle pass's bulk
    /// write, issue 11: one sled transaction per due domain cost ~1 ms each at 1M domains).
    /// Under the writer lock, `decide` builds item `i`'s transition from the committed state
    /// (None: nothing to write for it). The transitions are concatenated and written with one
    /// [`Store::write_transition`], so the notices, counters, reminder records and due-index
    /// moves of all of them land together, exactly as if each had been written alone.
    ///
    /// Independence: a transition that writes an entity (client, domain, request, reminder
    /// series) an earlier one in the same write also writes, or that allocates a handle, is
    /// not merged blindly: the writes gathered so far are committed first and `decide` is asked
    /// again for that item on the new state, so the result equals applying the items one by
    /// one in order. `decide` must read only entities its own transition writes (true of the
    /// lifecycle events: each reads its domain and that domain's reminder records).
    ///
    /// Returns the transitions written, with the item index each came from. Made durable
    /// after the writer lock is released (nothing inside [`Store::batch`]).
    pub fn apply_each<I>(
        &self,
        items: &[I],
        now: Timestamp,
        mut decide: impl FnMut(&Store, usize, &I) -> Option<Transition>,
    ) -> Result<Vec<(usize, Transition)>, ApplyError> {
        let mut done: Vec<(usize, Transition)> = Vec::new();
        {
            let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut pending: Vec<(usize, Transition)> = Vec::new();
            let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let Some(mut t) = decide(self, i, item) else {
                    continue;
                };
                let mut mine = written_keys(&t);
                let clash = t.handle_counter.is_some() || mine.iter().any(|k| keys.contains(k));
                if clash && !pending.is_empty() {
                    self.write_merged(&mut pending, now, &mut done)?;
                    keys.clear();
                    t = match decide(self, i, item) {
                        Some(t) => t,
                        None => continue,
                    };
                    mine = written_keys(&t);
                }
                let alone = t.handle_counter.is_some();
                keys.extend(mine);
                pending.push((i, t));
                if alone {
                    self.write_merged(&mut pending, now, &mut done)?;
                    keys.clear();
                }
            }
            if !pending.is_empty() {
                self.write_merged(&mut pending, now, &mut done)?;
            }
        }
        self.durable()?;
        Ok(done)
    }

    /// Writes `pending` as one concatenated transition and moves it to `done`.
    fn write_merged(
        &self,
        pending: &mut Vec<(usize, Transition)>,
        now: Timestamp,
        done: &mut Vec<(usize, Transition)>,
    ) -> Result<(), ApplyError> {
        let mut all = Transition::default();
        for (_, t) in pending.iter() {
            all.clients.extend(t.clients.iter().cloned());
            all.domains.extend(t.domains.iter().cloned());
            all.requests.extend(t.requests.iter().cloned());
            all.log.extend(t.log.iter().cloned());
            all.effects.extend(t.effects.iter().cloned());
            if t.handle_counter.is_some() {
                all.handle_counter = t.handle_counter;
            }
        }
        self.write_transition(all, Extra::default(), now)?;
        done.append(pending);
        Ok(())
    }

    /// The `index` writes that keep the reminder records and the due-date index in step with
    /// a transition: its reminder marks, and for every domain it writes (or marks) the move of
    /// its `lx` key from its due date before the write to its due date after ([`next_due`],
    /// computed both times from the records). `old_domains` are the committed versions of
    /// `t.domains`, in order. Read under the writer lock, written in the transition's
    /// transaction. Returns (keys to remove, keys to put).
    #[allow(clippy::type_complexity)]
    pub(super) fn lifecycle_writes(
        &self,
        t: &Transition,
        old_domains: &[Option<Domain>],
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
        // A bulk write (the pass's rounds) carries hundreds of domains: look them up by name.
        let mut written: BTreeMap<&DomainName, (&Domain, Option<&Domain>)> = BTreeMap::new();
        for (d, old) in t.domains.iter().zip(old_domains) {
            written.entry(&d.name).or_insert((d, old.as_ref()));
        }
        for name in touched {
            let (after, before): (Option<Domain>, Option<Domain>) = match written.get(&name) {
                Some((d, old)) => (Some((*d).clone()), old.cloned()),
                None => {
                    let d = self.domain(&name)?;
                    (d.clone(), d)
                }
            };
            // The committed reminder records of a series, read once per expiry date.
            let mut marks: BTreeMap<Date, Vec<u16>> = BTreeMap::new();
            let mut due = |d: &Domain, more: &[u16]| -> Result<Option<Date>, StoreError> {
                let mut handled = Vec::new();
                if let Some(e) = d.expires
                    // Only a domain still in its life has reminders to look up.
                    && crate::core::lifecycle::stage(d) != crate::core::lifecycle::Stage::Out
                {
                    let offsets = match marks.entry(e) {
                        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => v.insert(
                            self.reminder_marks(&d.name, e)?
                                .into_iter()
                                .map(|m| m.offset)
                                .collect(),
                        ),
                    };
                    handled.extend_from_slice(offsets);
                }
                handled.extend_from_slice(more);
                Ok(next_due(d, &handled, &policy))
            };
            let old_due = match &before {
                Some(d) => due(d, &[])?,
                None => None,
            };
            let new_due = match &after {
                Some(d) => {
                    let more = d
                        .expires
                        .and_then(|e| new_marks.get(&(name.clone(), e)))
                        .map_or(&[][..], |v| v.as_slice());
                    due(d, more)?
                }
                None => None,
            };
            if old_due == new_due {
                continue;
            }
            if let Some(o) = old_due {
                del.push(due_key(o, &name));
            }
            if let Some(at) = new_due {
                put.push((due_key(at, &name), Vec::new()));
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

/// The entities a transition writes, as tagged keys (for [`Store::apply_each`]'s
/// independence check).
fn written_keys(t: &Transition) -> Vec<Vec<u8>> {
    let tag = |c: u8, k: &[u8]| {
        let mut v = vec![c];
        v.extend_from_slice(k);
        v
    };
    let mut out = Vec::new();
    out.extend(
        t.clients
            .iter()
            .map(|c| tag(b'c', c.id.as_str().as_bytes())),
    );
    out.extend(
        t.domains
            .iter()
            .map(|d| tag(b'd', d.name.as_str().as_bytes())),
    );
    out.extend(t.requests.iter().map(|r| tag(b'r', r.id.as_bytes())));
    for e in &t.effects {
        match e {
            Effect::Reminder(m) => out.push(tag(b'd', m.domain.as_str().as_bytes())),
            Effect::Send(id)
            | Effect::Unsend(id)
            | Effect::ArmDeadline(id, _)
            | Effect::DisarmDeadline(id) => out.push(tag(b'r', id.as_bytes())),
            Effect::Notify(_) => {}
        }
    }
    out
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

/// A bulk pass ([`crate::lifecycle::run_pass`], rounds written with [`Store::apply_each`])
/// against the same events applied one by one, each in its own transaction, on a twin store.
#[cfg(test)]
mod bulk_tests {
    use super::*;
    use crate::core::lifecycle::{AutoRenewRule, due_event};
    use crate::core::{
        Client, ClientId, ClientStatus, Contact, Ctx, DomainStatus, Event, Handle, IdSource,
        Person, Phase, Registrant, RequestId,
    };
    use crate::store::LogScope;

    struct Ids(u128);
    impl IdSource for Ids {
        fn request_id(&mut self) -> RequestId {
            self.0 += 1;
            RequestId(uuid::Uuid::from_u128(self.0))
        }
    }

    fn plus(d: Date, n: i64) -> Date {
        d.checked_add(jiff::Span::new().days(n)).expect("date")
    }

    fn client(i: usize, now: Timestamp) -> Client {
        Client {
            id: ClientId::parse(&format!("c{i}")).expect("client id"),
            registrant: Registrant::Person(Person {
                fio_ru: "Иванов Иван".into(),
                fio_en: "Ivanov Ivan".into(),
                passport: vec!["4500 123456".into()],
                birth_date: jiff::civil::date(1980, 5, 17),
                postal_addr: vec!["Москва".into()],
                phone: "+7 495 1234567".into(),
                fax: None,
                email: format!("c{i}@customer.test"),
                is_protected: true,
                is_resident: true,
                inn: None,
            }),
            contact: Contact {
                name: format!("Client {i}"),
                email: format!("c{i}@customer.test"),
                phone: None,
            },
            status: ClientStatus::Registered,
            handle: Some(Handle::parse(&format!("B_{i}_1-GPT")).expect("handle")),
            open_request: None,
            last_error: None,
            created: now,
            updated: now,
        }
    }

    /// Domains in every situation a pass meets, `per` of each, three to a client.
    fn portfolio(today: Date, now: Timestamp, per: usize) -> Transition {
        let mut t = Transition::default();
        // (prefix, status, expiry offset from today, grace end offset, auto-renew)
        let kinds: [(&str, DomainStatus, i64, Option<i64>, bool); 7] = [
            ("first", DomainStatus::Registered, 90, None, false), // 90-day reminder
            ("missed", DomainStatus::Registered, 14, None, false), // 15 sent, 90/60/30 skipped
            ("expire", DomainStatus::Registered, -1, None, false), // expires, rest skipped
            ("chain", DomainStatus::Registered, -15, None, false), // expires, then deleted
            ("grace", DomainStatus::Expired, -20, Some(-10), false), // deleted
            ("auto", DomainStatus::Registered, 20, None, true),   // renewal, then skips
            ("later", DomainStatus::Registered, 200, None, false), // nothing due
        ];
        let mut n = 0;
        for (prefix, status, exp, grace, auto) in kinds {
            for i in 0..per {
                if n % 3 == 0 {
                    t.clients.push(client(n / 3, now));
                }
                t.domains.push(Domain {
                    name: DomainName::parse(&format!("{prefix}{i}.example")).expect("name"),
                    client_id: ClientId::parse(&format!("c{}", n / 3)).expect("client id"),
                    years: 1,
                    nameservers: Vec::new(),
                    order_id: format!("o{n}"),
                    description: Vec::new(),
                    paid: true,
                    auto_renew: auto,
                    expires: Some(plus(today, exp)),
                    grace_ends: grace.map(|g| plus(today, g)),
                    deleted_on: None,
                    status,
                    phase: if status == DomainStatus::Expired {
                        Phase::Parked
                    } else {
                        Phase::Done
                    },
                    open_request: None,
                    last_error: None,
                    created: now,
                    updated: now,
                });
                n += 1;
            }
        }
        t
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.lifecycle.auto_renew = Some(AutoRenewRule {
            days_before: 30,
            years: 1,
        });
        p
    }

    fn store_with(dir: &std::path::Path, t: Transition, now: Timestamp, same: bool) -> Store {
        let store = Store::open(dir, 8 << 20).expect("store");
        // `same`: the store keeps its due index by the pass's very policy (the daemon's case,
        // where the pass skips re-reading a domain whose key moved past today); otherwise by
        // an equal-for-the-lifecycle one, so the pass looks at each moved domain again.
        let mut p = policy();
        if !same {
            p.message_id_host = "other.invalid".into();
        }
        store.set_policy(p);
        store
            .apply_built(|_| Ok::<Transition, ()>(t), now)
            .expect("import")
            .expect("built");
        store
    }

    /// The pass as it was before the bulk rounds: each due domain moved on alone, one event
    /// and one transaction at a time.
    fn one_by_one(store: &Store, policy: &Policy, now: Timestamp) -> usize {
        let today = crate::core::today(now);
        let mut events = 0;
        let mut seen = std::collections::HashSet::new();
        for key in store.due_by(today).expect("scan").keys {
            let name = key.name;
            if !seen.insert(name.clone()) {
                continue;
            }
            for step in 0..8 {
                let d = store.domain(&name).expect("read").expect("domain");
                let handled: Vec<u16> = match d.expires {
                    Some(e) => store
                        .reminder_marks(&name, e)
                        .expect("marks")
                        .into_iter()
                        .map(|m| m.offset)
                        .collect(),
                    None => Vec::new(),
                };
                let Some(event) = due_event(&d, &handled, today, policy) else {
                    // The key read moves where the rules say (only the key read: after an
                    // event the store has filed the domain where the rules say already).
                    if step == 0 {
                        let next = crate::core::lifecycle::next_due(&d, &handled, policy)
                            .map(|at| at.max(today.tomorrow().unwrap_or(today)));
                        store.move_due(&name, key.on, next).expect("move due");
                    }
                    break;
                };
                let mut ids = crate::idsource::UuidIds;
                let mut ctx = Ctx {
                    now,
                    ids: &mut ids,
                    policy,
                };
                let applied = store.apply(event, &mut ctx).expect("apply");
                assert!(!applied.transition.is_noop());
                events += 1;
            }
        }
        events
    }

    /// Request ids are random in the pass: mask them in messages.
    fn mask(s: &str) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < s.len() {
            if let Some(w) = s.get(i..i + 36)
                && uuid::Uuid::parse_str(w).is_ok()
            {
                out.push_str("<id>");
                i += 36;
                continue;
            }
            let c = s[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8().max(1);
        }
        out
    }

    /// Everything a pass writes, without ids and sequence numbers (the order of writes differs:
    /// round by round instead of domain by domain).
    fn snapshot(store: &Store, names: &[DomainName]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            let d = store.domain(name).expect("read").expect("domain");
            out.push(format!(
                "{name}: {:?} {:?} expires={:?} grace={:?} deleted={:?} open={} due={:?}",
                d.status,
                d.phase,
                d.expires,
                d.grace_ends,
                d.deleted_on,
                d.open_request.is_some(),
                store.due_date(name).expect("due"),
            ));
            for m in store.reminder_history(name).expect("history") {
                out.push(format!(
                    "{name}: reminder {} {} {:?} on {}",
                    m.expires,
                    m.offset,
                    match &m.outcome {
                        crate::core::lifecycle::ReminderOutcome::Sent => "sent".to_owned(),
                        crate::core::lifecycle::ReminderOutcome::Skipped { reason } => mask(reason),
                    },
                    m.on
                ));
            }
            for e in store
                .log_of(&LogScope::Domain(name.clone()), 0, usize::MAX)
                .expect("log")
            {
                out.push(format!(
                    "{name}: log {:?} {} {} {:?}->{:?}",
                    e.entry.actor,
                    e.entry.action,
                    mask(&e.entry.message),
                    e.entry.status_before,
                    e.entry.status_after
                ));
            }
        }
        let mut notices: Vec<String> = store
            .notices_after(0, usize::MAX)
            .expect("notices")
            .into_iter()
            .map(|n| {
                let deliveries: Vec<String> = n
                    .deliveries
                    .iter()
                    .map(|id| {
                        let d = store.delivery(*id).expect("read").expect("delivery");
                        assert_eq!(d.notice, n.id);
                        format!(
                            "{:?} {} {} {:?}",
                            d.channel, d.recipient, d.address, d.state
                        )
                    })
                    .collect();
                format!(
                    "notice {} {:?} {:?} {:?} {:?}",
                    n.kind, n.client, n.domain, n.data, deliveries
                )
            })
            .collect();
        notices.sort();
        out.extend(notices);
        out.push(format!(
            "deliveries {}",
            store.all_deliveries().expect("d").len()
        ));
        let c = store.counts().expect("counts");
        out.push(format!(
            "counts {:?} {:?} outbox={} awaiting={} log_seq={}",
            c.domains, c.requests, c.outbox, c.awaiting_reply, c.log_seq
        ));
        let mut users: Vec<String> = store
            .all_users()
            .expect("users")
            .into_iter()
            .map(|u| format!("user {} {} {}", u.client, u.id, u.email))
            .collect();
        users.sort();
        out.extend(users);
        let scan = store.due_by(jiff::civil::date(2100, 1, 1));
        out.push(format!("due index {:?}", scan.expect("scan").keys));
        out
    }

    #[test]
    fn a_bulk_pass_writes_what_applying_the_events_one_by_one_writes() {
        bulk_equals_one_by_one(true);
    }

    #[test]
    fn a_bulk_pass_that_reads_every_moved_domain_again_writes_the_same() {
        bulk_equals_one_by_one(false);
    }

    fn bulk_equals_one_by_one(same: bool) {
        let now: Timestamp = "2030-01-01T09:00:00Z".parse().expect("now");
        let today = crate::core::today(now);
        // 7 situations x 80 domains: more than one chunk of 512 in the first round.
        let t = portfolio(today, now, 80);
        let names: Vec<DomainName> = t.domains.iter().map(|d| d.name.clone()).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let bulk = store_with(&dir.path().join("bulk"), t.clone(), now, same);
        let single = store_with(&dir.path().join("single"), t, now, same);
        assert_eq!(bulk.keeps_due_by(&policy()), same);
        // A stale due key (the index ahead of the rules, as after a change of policy) on both,
        // beside the domain's own key.
        let stale = DomainName::parse("later0.example").expect("name");
        for s in [&bulk, &single] {
            s.put_due_key(&stale, today).expect("stale key");
        }
        let before = snapshot(&bulk, &names);
        assert_eq!(before, snapshot(&single, &names));

        let r = crate::lifecycle::run_pass(&bulk, &policy(), now).expect("pass");
        let events = one_by_one(&single, &policy(), now);
        assert_eq!(r.events, events, "{r:?}");
        assert_eq!(r.failed, 0, "{r:?}");
        // Due: all but `later` (and the stale key). Events: first, missed, expire, grace one
        // each; chain two (expiry, then deletion); auto two (renewal, then its reminders skipped).
        assert_eq!(r.due, 6 * 80 + 1, "{r:?}");
        assert_eq!((r.expired, r.deleted, r.renewals), (160, 160, 80), "{r:?}");
        assert_eq!(r.reminders_sent, 160, "{r:?}");
        let after = snapshot(&bulk, &names);
        assert_ne!(after, before, "the pass changed nothing");
        let expected = snapshot(&single, &names);
        for (a, b) in after.iter().zip(&expected) {
            assert_eq!(a, b);
        }
        assert_eq!(after.len(), expected.len());
        // The stale key is gone; the domain's own key is where the rules say (the 90-day
        // reminder of day 110).
        assert_eq!(bulk.due_date(&stale).expect("due"), Some(plus(today, 110)));
        let keys = bulk.due_by(plus(today, 400)).expect("scan").keys;
        let of_stale: Vec<Date> = keys
            .iter()
            .filter(|k| k.name == stale)
            .map(|k| k.on)
            .collect();
        assert_eq!(of_stale, [plus(today, 110)]);

        // A second pass the same day finds nothing due on either.
        let again = crate::lifecycle::run_pass(&bulk, &policy(), now).expect("pass");
        assert_eq!((again.due, again.events), (0, 0), "{again:?}");
    }

    #[test]
    fn apply_each_rebuilds_a_transition_that_touches_what_the_chunk_already_writes() {
        let now: Timestamp = "2030-01-01T09:00:00Z".parse().expect("now");
        let today = crate::core::today(now);
        let t = portfolio(today, now, 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with(&dir.path().join("s"), t, now, true);
        let name = DomainName::parse("first0.example").expect("name");
        let expires = plus(today, 90);
        let policy = policy();
        // The same domain's reminder twice in one bulk write: the second is decided again after
        // the first is committed, finds it handled and writes nothing (at most once).
        let items = [name.clone(), name.clone()];
        let mut asked = 0;
        let done = store
            .apply_each(&items, now, |s, _, n| {
                asked += 1;
                let mut ids = Ids(0);
                let mut ctx = Ctx {
                    now,
                    ids: &mut ids,
                    policy: &policy,
                };
                crate::core::apply(
                    s,
                    Event::ReminderDue {
                        domain: n.clone(),
                        expires,
                        offset: 90,
                    },
                    &mut ctx,
                )
                .ok()
            })
            .expect("apply_each");
        assert_eq!(asked, 3, "the clashing item is decided again");
        assert_eq!(done.len(), 2);
        assert!(done[1].1.is_noop(), "{:?}", done[1].1);
        assert_eq!(
            store.reminder_marks(&name, expires).expect("marks").len(),
            1
        );
        let notices = store.notices_after(0, usize::MAX).expect("notices");
        assert_eq!(notices.len(), 1, "{notices:?}");
    }
}
