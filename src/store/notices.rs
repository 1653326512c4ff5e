//! The notice engine's part of the store (issue 10). Two trees:
//!
//! - `users`: `u` client NUL user -> [`User`] (with its subscriptions); `w` id -> [`Endpoint`].
//! - `notices`: `n` id -> [`Notice`] (ids grow by one: this is the `GET /v1/events` feed and
//!   the webhook-id); `d` id -> [`Delivery`]; `q` due-ms id -> () for Queued deliveries (the
//!   channel workers' queue); `k` key -> the panel's Idempotency-Key record; `s` name -> the
//!   last notice / delivery id.
//!
//! Every write goes through [`Store::commit_extra`] (the store's apply path: one transaction,
//! then flush) under the writer lock, so the fan-out reads users and endpoints that cannot
//! change before its commit.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::{ApplyError, Extra, Store, StoreError, Transition};
use crate::core::{Ctx, IdSource, NoticeDraft, Policy, RequestId};
use crate::notices::catalogue::{self, Audience};
use crate::notices::model::{
    Channel, Delivery, DeliveryState, Endpoint, Notice, Operator, Role, User,
};
use crate::notices::rules::fanout;

const SEQ_NOTICE: &[u8] = b"snotice";
const SEQ_DELIVERY: &[u8] = b"sdelivery";
const UNSUB_KEY: &[u8] = b"sunsubscribe-key";

/// A write for [`Extra::users`] / [`Extra::notices`] (None: remove).
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// The `users` tree prefix of a client's users (`u<client>\0`).
pub(super) fn users_prefix(client: &str) -> Vec<u8> {
    let mut p = vec![b'u'];
    p.extend_from_slice(client.as_bytes());
    p.push(0);
    p
}

/// Key of a user.
pub fn user_key(client: &str, user: &str) -> Vec<u8> {
    let mut k = users_prefix(client);
    k.extend_from_slice(user.as_bytes());
    k
}
/// Key of an endpoint.
pub fn endpoint_key(id: &str) -> Vec<u8> {
    let mut k = vec![b'w'];
    k.extend_from_slice(id.as_bytes());
    k
}
/// Key of a notice.
pub fn notice_key(id: u64) -> Vec<u8> {
    let mut k = vec![b'n'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}
/// Key of a delivery.
pub fn delivery_key(id: u64) -> Vec<u8> {
    let mut k = vec![b'd'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}
fn channel_byte(ch: Channel) -> u8 {
    match ch {
        Channel::Email => b'e',
        Channel::Webhook => b'w',
    }
}

/// Queue key of a delivery on `ch` due at `at`.
pub fn queue_key(ch: Channel, at: Timestamp, id: u64) -> Vec<u8> {
    let mut k = vec![b'q', channel_byte(ch)];
    k.extend_from_slice(&(at.as_millisecond().max(0) as u64).to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}
fn idem_key(key: &str) -> Vec<u8> {
    let mut k = vec![b'k'];
    k.extend_from_slice(key.as_bytes());
    k
}

/// What a panel's `Idempotency-Key` remembers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdemRecord {
    body_hash: String,
    notice: u64,
}

/// The outcome of posting a panel notice.
#[derive(Debug)]
pub enum Posted {
    /// Written (with its deliveries).
    New(Notice),
    /// The key was seen with the same body: that notice.
    Replay(Notice),
    /// The key was seen with another body.
    Mismatch,
}

/// A fan-out plan: `notices` tree writes, `users` tree writes (an owner made from the
/// client's contact), the notices written.
pub type Plan = (Vec<Write>, Vec<Write>, Vec<Notice>);

struct NoIds;
impl IdSource for NoIds {
    fn request_id(&mut self) -> RequestId {
        RequestId(uuid::Uuid::nil())
    }
}

fn be_u64(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    u64::from_be_bytes(b)
}

impl Store {
    /// Sets the operators who hear operator notices (`[notices] operators`).
    pub fn set_operators(&self, ops: Vec<Operator>) {
        if let Ok(mut g) = self.operators.write() {
            *g = ops;
        }
    }

    /// Runs `decide` under the writer lock and commits the writes it returns through the
    /// store's apply path (one transaction, then flush). What `decide` read stays true until
    /// the commit, since every notice-engine write comes through here. `decide` may refuse with
    /// its own error type (the API's answers), which then changes nothing.
    pub fn commit_extra<T, E: From<ApplyError>>(
        &self,
        now: Timestamp,
        decide: impl FnOnce(&Store) -> Result<(Extra, T), E>,
    ) -> Result<T, E> {
        let out = {
            let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let (extra, out) = decide(self)?;
            let mut extra = Some(extra);
            let mut take = |_: &Transition| extra.take().unwrap_or_default();
            let policy = Policy::default();
            let mut ids = NoIds;
            let mut ctx = Ctx {
                now,
                ids: &mut ids,
                policy: &policy,
            };
            self.apply_locked(None, &mut ctx, Some(&mut take))
                .map_err(E::from)?;
            out
        };
        // Durable before the caller answers (DESIGN.md inv. 1), like every other write: a
        // notice posted and acknowledged must survive a SIGKILL right after.
        self.durable().map_err(|e| E::from(ApplyError::Store(e)))?;
        Ok(out)
    }

    fn seq(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self.notices.get(key)?.map_or(0, |v| be_u64(&v)))
    }

    /// Turns notice drafts into the writes of the notices, their deliveries and queue entries
    /// (the fan-out, issue 10 §4). Called under the writer lock.
    pub(super) fn plan_notices(
        &self,
        drafts: &[&NoticeDraft],
        source: &str,
        now: Timestamp,
    ) -> Result<Plan, StoreError> {
        let mut writes = Vec::new();
        let mut writes_users = Vec::new();
        let mut notices = Vec::new();
        let mut nid = self.seq(SEQ_NOTICE)?;
        let mut did = self.seq(SEQ_DELIVERY)?;
        let endpoints = self.endpoints()?;
        let operators = self.operators.read().map(|g| g.clone()).unwrap_or_default();
        for draft in drafts {
            let Some(nt) = catalogue::lookup(&draft.kind) else {
                // The catalogue test keeps core and catalogue in step; never drop a notice.
                tracing::error!(kind = %draft.kind, "a notice type missing from the catalogue");
                continue;
            };
            nid += 1;
            let client = draft.client.as_ref().map(|c| c.as_str().to_owned());
            let users = match (&client, nt.audience) {
                (Some(c), Audience::Customer) => {
                    let mut users = self.users_of(c)?;
                    if !users.iter().any(|u| u.role == Role::Owner)
                        && let Some(owner) = self.owner_from_contact(c, now)?
                    {
                        writes_users.push(user_write(&owner));
                        users.push(owner);
                    }
                    users
                }
                _ => Vec::new(),
            };
            let targets = fanout(nt, &users, &operators, &endpoints);
            let mut ids = Vec::new();
            for t in targets {
                did += 1;
                let d = Delivery {
                    id: did,
                    notice: nid,
                    channel: t.channel,
                    recipient: t.recipient,
                    address: t.address,
                    language: t.language,
                    unsubscribe: t.unsubscribe,
                    state: if t.active {
                        DeliveryState::Queued
                    } else {
                        DeliveryState::Held
                    },
                    attempts: Vec::new(),
                    next_at: t.active.then_some(now),
                    bounce: None,
                    created: now,
                };
                if t.active {
                    writes.push((queue_key(t.channel, now, did), Some(Vec::new())));
                }
                writes.push((delivery_key(did), Some(encode(&d))));
                ids.push(did);
            }
            let n = Notice {
                id: nid,
                kind: nt.name.to_owned(),
                category: nt.category,
                mandatory: nt.mandatory,
                client,
                domain: draft.domain.as_ref().map(|d| d.as_str().to_owned()),
                data: draft.data.clone(),
                source: source.to_owned(),
                created: now,
                deliveries: ids,
            };
            writes.push((notice_key(nid), Some(encode(&n))));
            notices.push(n);
        }
        writes.push((SEQ_NOTICE.to_vec(), Some(nid.to_be_bytes().to_vec())));
        writes.push((SEQ_DELIVERY.to_vec(), Some(did.to_be_bytes().to_vec())));
        Ok((writes, writes_users, notices))
    }

    /// The owner a client gets from its contact when none was given (issue 10 §1): user id
    /// `owner`, the contact's name and e-mail, Russian. None for an unknown client.
    pub fn owner_from_contact(
        &self,
        client: &str,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let Ok(id) = crate::core::ClientId::parse(client) else {
            return Ok(None);
        };
        let Some(c) = self.client(&id)? else {
            return Ok(None);
        };
        if c.contact.email.is_empty() {
            return Ok(None);
        }
        Ok(Some(User {
            client: client.to_owned(),
            id: "owner".into(),
            name: c.contact.name.clone(),
            email: c.contact.email.clone(),
            phone: c.contact.phone.clone(),
            language: crate::notices::model::Language::Ru,
            role: Role::Owner,
            subscriptions: Default::default(),
            subscriptions_set_by: None,
            created: now,
            updated: now,
        }))
    }

    /// Writes a panel notice (`POST /v1/notices`) with its fan-out, once per Idempotency-Key.
    pub fn post_notice(
        &self,
        draft: NoticeDraft,
        key: Option<(&str, &str)>,
        now: Timestamp,
    ) -> Result<Posted, ApplyError> {
        self.commit_extra(now, |s| {
            if let Some((k, hash)) = key
                && let Some(raw) = s.notices.get(idem_key(k)).map_err(StoreError::from)?
            {
                let rec: IdemRecord = decode(k, &raw)?;
                if rec.body_hash != hash {
                    return Ok((Extra::default(), Posted::Mismatch));
                }
                let n = s.notice(rec.notice)?.ok_or_else(|| StoreError::Corrupt {
                    key: k.to_owned(),
                    reason: "the idempotency record names a missing notice".into(),
                })?;
                return Ok((Extra::default(), Posted::Replay(n)));
            }
            let (mut writes, users, mut notices) = s.plan_notices(&[&draft], "panel", now)?;
            let Some(n) = notices.pop() else {
                return Err(StoreError::Corrupt {
                    key: draft.kind.clone(),
                    reason: "not in the catalogue".into(),
                }
                .into());
            };
            if let Some((k, hash)) = key {
                let rec = IdemRecord {
                    body_hash: hash.to_owned(),
                    notice: n.id,
                };
                writes.push((idem_key(k), Some(encode(&rec))));
            }
            Ok((
                Extra {
                    notices: writes,
                    users,
                    ..Extra::default()
                },
                Posted::New(n),
            ))
        })
    }

    /// Records a bounce of the notice e-mail whose Message-ID is `message_id`
    /// (`<notice-ID@host>`): the delivery becomes Bounced with `reason`. False when the id is
    /// not one of our notice e-mails.
    pub fn record_bounce(
        &self,
        message_id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, ApplyError> {
        let id = message_id
            .trim()
            .trim_start_matches('<')
            .strip_prefix("notice-")
            .and_then(|r| r.split_once('@'))
            .and_then(|(n, _)| n.parse::<u64>().ok());
        let Some(id) = id else { return Ok(false) };
        self.commit_extra(now, |s| {
            let Some(d) = s.delivery(id)? else {
                return Ok((Extra::default(), false));
            };
            if d.channel != Channel::Email || d.state != DeliveryState::Sent {
                return Ok((Extra::default(), false));
            }
            let mut new = d.clone();
            new.state = DeliveryState::Bounced;
            new.bounce = Some(reason.to_owned());
            Ok((
                Extra {
                    notices: delivery_update(&d, &new),
                    ..Extra::default()
                },
                true,
            ))
        })
    }

    /// The per-install key of one-click unsubscribe tokens (created on first use).
    pub fn unsubscribe_key(&self) -> Result<Vec<u8>, ApplyError> {
        if let Some(k) = self.notices.get(UNSUB_KEY).map_err(StoreError::from)? {
            return Ok(k.to_vec());
        }
        let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        self.commit_extra(Timestamp::now(), |s| {
            // Another thread may have made it meanwhile.
            if let Some(k) = s.notices.get(UNSUB_KEY).map_err(StoreError::from)? {
                return Ok((Extra::default(), k.to_vec()));
            }
            Ok((
                Extra {
                    notices: vec![(UNSUB_KEY.to_vec(), Some(key.clone()))],
                    ..Extra::default()
                },
                key,
            ))
        })
    }

    fn scan<T: for<'de> Deserialize<'de>>(
        tree: &sled::Tree,
        prefix: &[u8],
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for kv in tree.scan_prefix(prefix) {
            let (k, v) = kv?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    /// One user.
    pub fn user(&self, client: &str, user: &str) -> Result<Option<User>, StoreError> {
        match self.users.get(user_key(client, user))? {
            Some(v) => Ok(Some(decode(user, &v)?)),
            None => Ok(None),
        }
    }
    /// The users of a client.
    pub fn users_of(&self, client: &str) -> Result<Vec<User>, StoreError> {
        Self::scan(&self.users, &users_prefix(client))
    }
    /// Every user of every client.
    pub fn all_users(&self) -> Result<Vec<User>, StoreError> {
        Self::scan(&self.users, b"u")
    }
    /// Every webhook endpoint.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        Self::scan(&self.users, b"w")
    }
    /// One endpoint.
    pub fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        match self.users.get(endpoint_key(id))? {
            Some(v) => Ok(Some(decode(id, &v)?)),
            None => Ok(None),
        }
    }
    /// One notice.
    pub fn notice(&self, id: u64) -> Result<Option<Notice>, StoreError> {
        match self.notices.get(notice_key(id))? {
            Some(v) => Ok(Some(decode(&format!("notice {id}"), &v)?)),
            None => Ok(None),
        }
    }
    /// Notices with an id above `after`, oldest first (the pull feed).
    pub fn notices_after(&self, after: u64, limit: usize) -> Result<Vec<Notice>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .notices
            .range(notice_key(after.saturating_add(1))..notice_key(u64::MAX))
        {
            let (k, v) = kv?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
    /// One delivery.
    pub fn delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError> {
        match self.notices.get(delivery_key(id))? {
            Some(v) => Ok(Some(decode(&format!("delivery {id}"), &v)?)),
            None => Ok(None),
        }
    }
    /// Every delivery (operators' listings; newest last).
    pub fn all_deliveries(&self) -> Result<Vec<Delivery>, StoreError> {
        Self::scan(&self.notices, b"d")
    }
    /// Queued deliveries on `ch` due at `now`, oldest first.
    pub fn due_deliveries(
        &self,
        ch: Channel,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let end = queue_key(ch, now, u64::MAX);
        let mut out = Vec::new();
        for kv in self.notices.range(vec![b'q', channel_byte(ch)]..end) {
            let (k, _) = kv?;
            if k.len() == 18 {
                out.push(be_u64(&k[10..]));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
    /// When the earliest queued delivery on `ch` is due.
    pub fn next_due(&self, ch: Channel) -> Result<Option<Timestamp>, StoreError> {
        match self.notices.scan_prefix([b'q', channel_byte(ch)]).next() {
            Some(kv) => {
                let (k, _) = kv?;
                Ok(Timestamp::from_millisecond(be_u64(&k[2..10.min(k.len())]) as i64).ok())
            }
            None => Ok(None),
        }
    }

    /// Counts of deliveries per channel and state (metrics, readiness).
    pub fn delivery_counts(&self) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        let mut m = BTreeMap::new();
        for d in self.all_deliveries()? {
            *m.entry((d.channel.as_str().to_owned(), d.state.as_str().to_owned()))
                .or_insert(0) += 1;
        }
        Ok(m)
    }
}

/// The writes that replace delivery `old` by `new` (record and queue entry).
pub fn delivery_update(old: &Delivery, new: &Delivery) -> Vec<Write> {
    let mut w = Vec::new();
    if let (DeliveryState::Queued, Some(at)) = (old.state, old.next_at) {
        w.push((queue_key(old.channel, at, old.id), None));
    }
    if let (DeliveryState::Queued, Some(at)) = (new.state, new.next_at) {
        w.push((queue_key(new.channel, at, new.id), Some(Vec::new())));
    }
    w.push((delivery_key(new.id), Some(encode(new))));
    w
}

/// The writes that record one attempt's outcome (`new`, computed from `old` as it was read
/// before the attempt) against the delivery as it is NOW, read under the writer lock. A
/// replay that came while the attempt was on the wire left the delivery Queued with a new due
/// time: the attempt is recorded, but the delivery stays Queued for the replay, so a replay is
/// never swallowed by an attempt that was already under way (and no queue key is orphaned).
pub fn attempt_update(
    store: &Store,
    old: &Delivery,
    new: &Delivery,
) -> Result<Vec<Write>, StoreError> {
    let Some(current) = store.delivery(old.id)? else {
        return Ok(delivery_update(old, new));
    };
    if current == *old {
        return Ok(delivery_update(old, new));
    }
    let mut merged = new.clone();
    if current.state == DeliveryState::Queued {
        merged.state = DeliveryState::Queued;
        merged.next_at = current.next_at;
    }
    Ok(delivery_update(&current, &merged))
}

/// The write of a user (or its removal).
pub fn user_write(u: &User) -> Write {
    (user_key(&u.client, &u.id), Some(encode(u)))
}

/// The write of an endpoint.
pub fn endpoint_write(e: &Endpoint) -> Write {
    (endpoint_key(&e.id), Some(encode(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notices::model::{Attempt, Channel, Delivery, DeliveryState, Language};

    fn commit(store: &Store, now: Timestamp, writes: Vec<Write>) {
        let r = store.commit_extra(now, |_| {
            Ok::<_, ApplyError>((
                Extra {
                    notices: writes,
                    ..Extra::default()
                },
                (),
            ))
        });
        assert!(r.is_ok(), "{r:?}");
    }

    /// A replay that lands while an attempt is on the wire is not swallowed by the attempt's
    /// outcome: the delivery stays Queued at the replay's time, with the attempt recorded, and
    /// only the replay's queue key is left.
    #[test]
    fn a_replay_during_an_attempt_keeps_the_delivery_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 4 << 20).unwrap();
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-12-01T10:00:05Z".parse().unwrap();
        let queued = Delivery {
            id: 7,
            notice: 1,
            channel: Channel::Webhook,
            recipient: "endpoint:ep_1".into(),
            address: "http://127.0.0.1:9/hook".into(),
            language: Language::En,
            unsubscribe: None,
            state: DeliveryState::Queued,
            attempts: Vec::new(),
            next_at: Some(t0),
            bounce: None,
            created: t0,
        };
        commit(&store, t0, delivery_update(&queued, &queued));
        // The worker read `queued` and is sending; meanwhile an operator replays it.
        let mut replayed = queued.clone();
        replayed.next_at = Some(t1);
        commit(&store, t1, delivery_update(&queued, &replayed));
        // The attempt succeeds and records its outcome, computed from what it read.
        let mut sent = queued.clone();
        sent.attempts.push(Attempt {
            at: t0,
            status: Some(200),
            latency_ms: 3,
            answer: String::new(),
            ok: true,
        });
        sent.state = DeliveryState::Sent;
        sent.next_at = None;
        let writes = attempt_update(&store, &queued, &sent).unwrap();
        commit(&store, t1, writes);
        let now = store.delivery(7).unwrap().unwrap();
        assert_eq!(now.state, DeliveryState::Queued, "the replay was swallowed");
        assert_eq!(now.next_at, Some(t1));
        assert_eq!(now.attempts.len(), 1, "the attempt is recorded");
        let due = store.due_deliveries(Channel::Webhook, t1, 10).unwrap();
        assert_eq!(due, vec![7], "exactly the replay's queue key remains");
        // Without a replay in between, the outcome is recorded as computed.
        let writes = attempt_update(&store, &now, &{
            let mut s = now.clone();
            s.state = DeliveryState::Sent;
            s.next_at = None;
            s
        })
        .unwrap();
        commit(&store, t1, writes);
        assert_eq!(
            store.delivery(7).unwrap().unwrap().state,
            DeliveryState::Sent
        );
        assert!(
            store
                .due_deliveries(Channel::Webhook, t1, 10)
                .unwrap()
                .is_empty()
        );
    }
}
