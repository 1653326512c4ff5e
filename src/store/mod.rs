//! The durable state in sled. Applying one event is ONE transaction over every tree it touches:
//! entities, indexes, action log, outbox, deadlines (the transactional outbox, DESIGN.md §3),
//! followed by a flush before anyone is told it happened.

mod codec;
mod durable;
pub mod inbox;
pub mod lifecycle;
pub mod notices;
pub mod reports;
pub mod ui;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::TransactionError;

use crate::core::{
    self, Client, ClientId, CoreError, Ctx, Domain, DomainName, DomainStatus, Effect, Event,
    LogEntry, Request, RequestId, RequestState, StateView, Transition, ViewError,
};
use codec::{decode, encode};
use durable::{domain_count_key, request_count_key};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the database.
    #[error(
        "the store at {path} is locked by another process (is regmail already running? the CLI \
         talks to the running daemon over the API instead of opening the store)"
    )]
    Locked {
        /// The store path.
        path: String,
    },
    /// sled failed.
    #[error("store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    /// A value could not be read back.
    #[error("store value under {key} is unreadable: {reason}")]
    Corrupt {
        /// Which key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Why an event was not applied. Nothing changed in either case.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The core refused the event.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an idempotency key remembers: the body's hash and the first answer (RFC draft
/// "The Idempotency-Key HTTP Header Field").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentAnswer {
    /// SHA-256 of the request body, hex.
    pub body_hash: String,
    /// HTTP status of the first answer.
    pub status: u16,
    /// Body of the first answer.
    pub body: serde_json::Value,
}

/// The outcome of an idempotent apply.
#[derive(Debug)]
pub enum Idempotent {
    /// First time: the event was applied.
    Applied(Applied),
    /// The key was seen with the same body: the first answer.
    Replay(IdempotentAnswer),
    /// The key was seen with another body.
    Mismatch,
}

/// A committed transition and where its log entries landed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// What changed.
    pub transition: Transition,
    /// Sequence numbers of the log entries written, in order.
    pub log_seqs: Vec<u64>,
}

/// Which entity's log to read.
#[derive(Debug, Clone)]
pub enum LogScope {
    /// One domain.
    Domain(DomainName),
    /// One client.
    Client(ClientId),
    /// One request.
    Request(RequestId),
}

/// Counts for status lines and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Domains per status.
    pub domains: Vec<(String, u64)>,
    /// Requests per state.
    pub requests: Vec<(String, u64)>,
    /// Requests in the outbox.
    pub outbox: u64,
    /// Armed reply deadlines (requests awaiting the registrar).
    pub awaiting_reply: u64,
    /// Inbound messages waiting for an operator.
    pub unmatched: u64,
    /// Inbound messages stored but not processed yet.
    pub pending_messages: u64,
    /// Last log sequence number.
    pub log_seq: u64,
    /// Domains in the Conflict phase (issue 9 part A).
    pub conflicts: u64,
}

const META_LOG_SEQ: &[u8] = b"log_seq";
const META_HANDLE_COUNTER: &[u8] = b"handle_counter";

/// The sled store. One writer at a time (a mutex); readers go straight to the trees.
pub struct Store {
    db: sled::Db,
    clients: sled::Tree,
    domains: sled::Tree,
    requests: sled::Tree,
    log: sled::Tree,
    log_index: sled::Tree,
    index: sled::Tree,
    outbox: sled::Tree,
    deadlines: sled::Tree,
    idempotency: sled::Tree,
    meta: sled::Tree,
    inbox: sled::Tree,
    raw: sled::Tree,
    /// Account users (`u` keys) and webhook endpoints (`w` keys) (src/store/notices.rs).
    users: sled::Tree,
    /// Notices (the event feed), deliveries, their queue, counters (src/store/notices.rs).
    notices: sled::Tree,
    /// The hosting company's operators, from `[notices] operators` (for the fan-out).
    operators: std::sync::RwLock<Vec<crate::notices::model::Operator>>,
    /// The rules the due-date index follows (lifecycle.rs; the daemon sets its policy).
    policy: std::sync::RwLock<crate::core::Policy>,
    writer: Mutex<()>,
    /// Group commit (durable.rs): writes committed so far, and how many of them are flushed.
    committed: AtomicU64,
    flushed: Mutex<u64>,
}

fn key_join(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

fn domain_status_key(status: DomainStatus, name: &DomainName) -> Vec<u8> {
    key_join(&[b"ds", status.as_str().as_bytes(), name.as_str().as_bytes()])
}
/// Index key: a domain in [`crate::core::Phase::Conflict`] (issue 9 part A), counted in /metrics.
fn domain_conflict_key(name: &DomainName) -> Vec<u8> {
    key_join(&[b"dx", name.as_str().as_bytes()])
}
fn domain_client_key(client: &ClientId, name: &DomainName) -> Vec<u8> {
    key_join(&[b"dc", client.as_str().as_bytes(), name.as_str().as_bytes()])
}
fn domain_expiry_key(d: &Domain) -> Option<Vec<u8>> {
    d.expires.map(|e| {
        key_join(&[
            b"de",
            e.strftime("%Y-%m-%d").to_string().as_bytes(),
            d.name.as_str().as_bytes(),
        ])
    })
}
/// Index key: registrar task id -> request (learned from acknowledgements).
pub fn task_index_key(task: &str) -> Vec<u8> {
    key_join(&[b"rt", task.as_bytes()])
}
fn request_state_key(state: RequestState, id: RequestId) -> Vec<u8> {
    key_join(&[b"rs", state.as_str().as_bytes(), id.as_bytes()])
}
fn log_scope_prefix(scope: &LogScope) -> Vec<u8> {
    let mut k = match scope {
        LogScope::Domain(d) => key_join(&[b"d", d.as_str().as_bytes()]),
        LogScope::Client(c) => key_join(&[b"c", c.as_str().as_bytes()]),
        LogScope::Request(r) => key_join(&[b"r", r.as_bytes()]),
    };
    k.push(0);
    k
}

/// Writes that ride along with an event in its transaction: the idempotency record of an API
/// call, an inbound message's record, index keys, log lines that are not entity changes.
#[derive(Debug, Default)]
pub struct Extra {
    /// `idempotency` tree puts.
    pub idempotency: Vec<(Vec<u8>, Vec<u8>)>,
    /// `inbox` tree puts.
    pub inbox: Vec<(Vec<u8>, Vec<u8>)>,
    /// `index` tree keys to insert (with an empty value or the given one).
    pub index_put: Vec<(Vec<u8>, Vec<u8>)>,
    /// `index` tree keys to remove.
    pub index_del: Vec<Vec<u8>>,
    /// Log entries appended after the transition's own.
    pub log: Vec<crate::core::LogDraft>,
    /// `users` tree writes (None: remove the key).
    pub users: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// `notices` tree writes (None: remove the key).
    pub notices: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Encodes a value in the store's format (for [`Extra`] writes built outside this module).
pub fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    encode(value)
}

/// Builds the extra writes from the transition the event produced.
type ExtraWrite<'a> = &'a mut dyn FnMut(&Transition) -> Extra;

impl Store {
    /// Opens (or creates) the store at `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked {
                        path: path.display().to_string(),
                    }
                }
                _ => StoreError::Sled(e),
            })?;
        let tree = |name: &str| db.open_tree(name);
        Ok(Store {
            clients: tree("clients")?,
            domains: tree("domains")?,
            requests: tree("requests")?,
            log: tree("log")?,
            log_index: tree("log_index")?,
            index: tree("index")?,
            outbox: tree("outbox")?,
            deadlines: tree("deadlines")?,
            idempotency: tree("idempotency")?,
            meta: tree("meta")?,
            inbox: tree("inbox")?,
            raw: tree("raw")?,
            users: tree("users")?,
            notices: tree("notices")?,
            operators: std::sync::RwLock::new(Vec::new()),
            policy: std::sync::RwLock::new(crate::core::Policy::default()),
            db,
            writer: Mutex::new(()),
            committed: AtomicU64::new(0),
            flushed: Mutex::new(0),
        })
        .and_then(|store| {
            store.ensure_counters()?;
            Ok(store)
        })
    }

    /// Applies one event durably: core transition, one sled transaction, flush.
    pub fn apply(&self, event: Event, ctx: &mut Ctx<'_>) -> Result<Applied, ApplyError> {
        let applied = {
            let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            self.apply_locked(Some(event), ctx, None)?
        };
        self.durable()?;
        Ok(applied)
    }

    /// Applies an event (or none) together with `extra` writes, in one transaction. While `f`
    /// runs, no other event is applied, so what it reads stays true until the commit.
    pub fn apply_with(
        &self,
        event: Option<Event>,
        ctx: &mut Ctx<'_>,
        extra: ExtraWrite<'_>,
    ) -> Result<Applied, ApplyError> {
        let applied = {
            let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            self.apply_locked(event, ctx, Some(extra))?
        };
        self.durable()?;
        Ok(applied)
    }

    /// Applies one event under an idempotency key: the same key and body replays the first
    /// answer; the same key and another body is a mismatch; otherwise the event is applied
    /// and `answer` (built from the transition) is stored in the same transaction.
    pub fn apply_idempotent(
        &self,
        key: &str,
        body_hash: &str,
        event: Event,
        ctx: &mut Ctx<'_>,
        answer: impl FnOnce(&Transition) -> (u16, serde_json::Value),
    ) -> Result<Idempotent, ApplyError> {
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(raw) = self
            .idempotency
            .get(key.as_bytes())
            .map_err(StoreError::from)?
        {
            let seen: IdempotentAnswer = decode(key, &raw)?;
            return Ok(if seen.body_hash == body_hash {
                Idempotent::Replay(seen)
            } else {
                Idempotent::Mismatch
            });
        }
        let mut answer = Some(answer);
        let mut remember = |t: &Transition| {
            let (status, body) = match answer.take() {
                Some(f) => f(t),
                None => (500, serde_json::Value::Null),
            };
            let rec = IdempotentAnswer {
                body_hash: body_hash.to_owned(),
                status,
                body,
            };
            Extra {
                idempotency: vec![(key.as_bytes().to_vec(), encode(&rec))],
                ..Extra::default()
            }
        };
        let applied = self.apply_locked(Some(event), ctx, Some(&mut remember))?;
        drop(guard);
        self.durable()?;
        Ok(Idempotent::Applied(applied))
    }

    fn apply_locked(
        &self,
        event: Option<Event>,
        ctx: &mut Ctx<'_>,
        extra: Option<ExtraWrite<'_>>,
    ) -> Result<Applied, ApplyError> {
        let now = ctx.now;
        let t = match event {
            Some(e) => core::apply(self, e, ctx)?,
            None => Transition::default(),
        };
        let extra = extra.map(|f| f(&t)).unwrap_or_default();
        self.write_transition(t, extra, now)
    }

    /// Writes a transition and its extras in one transaction (the caller holds the writer
    /// lock and makes it durable after releasing it).
    fn write_transition(
        &self,
        t: Transition,
        mut extra: Extra,
        now: Timestamp,
    ) -> Result<Applied, ApplyError> {
        // The notices the transition asks for, fanned out, join the same transaction.
        let drafts: Vec<&crate::core::NoticeDraft> = t
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(n) => Some(n),
                _ => None,
            })
            .collect();
        if !drafts.is_empty() {
            let (writes, users, _) = self.plan_notices(&drafts, "core", now)?;
            extra.notices.extend(writes);
            extra.users.extend(users);
        }
        if t.is_noop()
            && extra.users.is_empty()
            && extra.notices.is_empty()
            && extra.idempotency.is_empty()
            && extra.inbox.is_empty()
            && extra.index_put.is_empty()
            && extra.index_del.is_empty()
            && extra.log.is_empty()
        {
            return Ok(Applied {
                transition: t,
                log_seqs: Vec::new(),
            });
        }
        // Index maintenance derived from the transition (registrar task ids) joins the extras.
        let mut index_put = extra.index_put.clone();
        for r in &t.requests {
            if let Some(task) = &r.task_id {
                index_put.push((task_index_key(task), r.id.as_bytes().to_vec()));
            }
        }
        // An operator acting on the web page is named in every entry (store/ui.rs).
        let by = ui::acting();
        let all_log: Vec<crate::core::LogDraft> = t
            .log
            .iter()
            .chain(extra.log.iter())
            .cloned()
            .map(|mut d| {
                if by.is_some() && d.actor == crate::core::Actor::Api {
                    d.actor = crate::core::Actor::Operator;
                }
                d
            })
            .collect();

        // Everything the transaction writes is computed here, outside it, so that the closure
        // (which sled may run more than once) only writes.
        let mut old_domains = Vec::new();
        for d in &t.domains {
            old_domains.push(self.domain(&d.name)?);
        }
        let mut old_requests = Vec::new();
        for r in &t.requests {
            old_requests.push(self.request(r.id)?);
        }
        let counters = self.counter_updates(&t, &old_domains, &old_requests)?;
        // Reminder records and the due-date index (lifecycle.rs), in the same transaction.
        let (lx_del, lx_put) = self.lifecycle_writes(&t, &old_domains)?;
        let first_seq = self.log_seq()? + 1;
        let log_seqs: Vec<u64> = (first_seq..first_seq + all_log.len() as u64).collect();
        let now_ms = now.as_millisecond().to_be_bytes();

        let trees = (
            &self.clients,
            &self.domains,
            &self.requests,
            &self.log,
            &self.log_index,
            &self.index,
            &self.outbox,
            &self.deadlines,
            &self.idempotency,
            &self.meta,
            &self.inbox,
            &self.users,
            &self.notices,
        );
        let result: Result<(), TransactionError<String>> = trees.transaction(
            |(
                clients,
                domains,
                requests,
                log,
                log_index,
                index,
                outbox,
                deadlines,
                idem_tree,
                meta,
                inbox,
                users,
                notices,
            )| {
                for c in &t.clients {
                    clients.insert(c.id.as_str().as_bytes(), encode(c))?;
                }
                for (d, old) in t.domains.iter().zip(&old_domains) {
                    if let Some(old) = old {
                        index.remove(domain_status_key(old.status, &old.name))?;
                        index.remove(domain_client_key(&old.client_id, &old.name))?;
                        if let Some(k) = domain_expiry_key(old) {
                            index.remove(k)?;
                        }
                    }
                    if old
                        .as_ref()
                        .is_some_and(|o| o.phase == crate::core::Phase::Conflict)
                    {
                        index.remove(domain_conflict_key(&d.name))?;
                    }
                    if d.phase == crate::core::Phase::Conflict {
                        index.insert(domain_conflict_key(&d.name), &[])?;
                    }
                    index.insert(domain_status_key(d.status, &d.name), &[])?;
                    index.insert(domain_client_key(&d.client_id, &d.name), &[])?;
                    if let Some(k) = domain_expiry_key(d) {
                        index.insert(k, &[])?;
                    }
                    domains.insert(d.name.as_str().as_bytes(), encode(d))?;
                }
                for (r, old) in t.requests.iter().zip(&old_requests) {
                    if let Some(old) = old {
                        index.remove(request_state_key(old.state, old.id))?;
                    }
                    index.insert(request_state_key(r.state, r.id), &[])?;
                    requests.insert(&r.id.as_bytes()[..], encode(r))?;
                }
                for (draft, seq) in all_log.iter().zip(&log_seqs) {
                    let entry = LogEntry {
                        seq: *seq,
                        entry: draft.clone(),
                        by: by.clone(),
                    };
                    let seq_key = seq.to_be_bytes();
                    log.insert(&seq_key, encode(&entry))?;
                    let mut scopes = Vec::new();
                    if let Some(d) = &draft.domain {
                        scopes.push(LogScope::Domain(d.clone()));
                    }
                    if let Some(c) = &draft.client {
                        scopes.push(LogScope::Client(c.clone()));
                    }
                    if let Some(r) = draft.request.or(draft.evidence.request_id) {
                        scopes.push(LogScope::Request(r));
                    }
                    for scope in scopes {
                        let mut k = log_scope_prefix(&scope);
                        k.extend_from_slice(&seq_key);
                        log_index.insert(k, &[])?;
                    }
                }
                if let Some(last) = log_seqs.last() {
                    meta.insert(META_LOG_SEQ, &last.to_be_bytes())?;
                }
                if let Some(n) = t.handle_counter {
                    meta.insert(META_HANDLE_COUNTER, &n.to_be_bytes())?;
                }
                for (k, n) in &counters {
                    meta.insert(k.as_slice(), &n.to_be_bytes())?;
                }
                for e in &t.effects {
                    match e {
                        Effect::Send(id) => {
                            outbox.insert(&id.as_bytes()[..], &now_ms)?;
                        }
                        Effect::Unsend(id) => {
                            outbox.remove(&id.as_bytes()[..])?;
                        }
                        Effect::ArmDeadline(id, at) => {
                            deadlines
                                .insert(&id.as_bytes()[..], &at.as_millisecond().to_be_bytes())?;
                        }
                        Effect::DisarmDeadline(id) => {
                            deadlines.remove(&id.as_bytes()[..])?;
                        }
                        // Written below from the fan-out plan (`extra.notices`), and with the
                        // due-date index (`lx_put`).
                        Effect::Notify(_) | Effect::Reminder(_) => {}
                    }
                }
                for (k, v) in &extra.idempotency {
                    idem_tree.insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &extra.inbox {
                    inbox.insert(k.as_slice(), v.as_slice())?;
                }
                for k in &extra.index_del {
                    index.remove(k.as_slice())?;
                }
                for k in &lx_del {
                    index.remove(k.as_slice())?;
                }
                for (k, v) in &lx_put {
                    index.insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &index_put {
                    index.insert(k.as_slice(), v.as_slice())?;
                }
                for (tree, writes) in [(users, &extra.users), (notices, &extra.notices)] {
                    for (k, v) in writes {
                        match v {
                            Some(v) => tree.insert(k.as_slice(), v.as_slice())?,
                            None => tree.remove(k.as_slice())?,
                        };
                    }
                }
                Ok(())
            },
        );
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(reason)) => {
                return Err(StoreError::Corrupt {
                    key: "transaction".into(),
                    reason,
                }
                .into());
            }
            Err(TransactionError::Storage(e)) => return Err(StoreError::Sled(e).into()),
        }
        // Made durable by the caller after it releases the writer lock (group commit).
        self.note_commit();
        Ok(Applied {
            transition: t,
            log_seqs,
        })
    }

    fn get<T: for<'de> Deserialize<'de>>(
        tree: &sled::Tree,
        key: &[u8],
        what: &str,
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key)? {
            Some(raw) => Ok(Some(decode(what, &raw)?)),
            None => Ok(None),
        }
    }

    /// A domain by name.
    pub fn domain(&self, name: &DomainName) -> Result<Option<Domain>, StoreError> {
        Self::get(&self.domains, name.as_str().as_bytes(), name.as_str())
    }
    /// A client by id.
    pub fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        Self::get(&self.clients, id.as_str().as_bytes(), id.as_str())
    }
    /// A request by id.
    pub fn request(&self, id: RequestId) -> Result<Option<Request>, StoreError> {
        Self::get(&self.requests, id.as_bytes(), &id.to_string())
    }

    /// The last log sequence number (0 when the log is empty).
    pub fn log_seq(&self) -> Result<u64, StoreError> {
        Ok(self.meta.get(META_LOG_SEQ)?.map_or(0, |v| be_u64(&v)))
    }

    /// Domains, optionally only those with `status` and/or of `client`, in name order.
    pub fn list_domains(
        &self,
        status: Option<DomainStatus>,
        client: Option<&ClientId>,
        limit: usize,
    ) -> Result<Vec<Domain>, StoreError> {
        let names: Box<dyn Iterator<Item = Result<Vec<u8>, StoreError>>> = match (status, client) {
            (Some(s), _) => {
                Box::new(self.index_names(key_join(&[b"ds", s.as_str().as_bytes(), b""])))
            }
            (None, Some(c)) => {
                Box::new(self.index_names(key_join(&[b"dc", c.as_str().as_bytes(), b""])))
            }
            (None, None) => Box::new(
                self.domains
                    .iter()
                    .keys()
                    .map(|k| k.map(|k| k.to_vec()).map_err(StoreError::from)),
            ),
        };
        let mut out = Vec::new();
        for name in names {
            let name = name?;
            let Some(raw) = self.domains.get(&name)? else {
                continue;
            };
            let d: Domain = decode(&String::from_utf8_lossy(&name), &raw)?;
            if client.is_some_and(|c| &d.client_id != c) {
                continue;
            }
            out.push(d);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The last component of every index key under `prefix`.
    fn index_names(
        &self,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        let skip = prefix.len();
        self.index
            .scan_prefix(prefix)
            .keys()
            .map(move |k| Ok(k?[skip..].to_vec()))
    }

    /// Domains whose expiry is on or before `until`, earliest first.
    pub fn domains_expiring_by(&self, until: jiff::civil::Date) -> Result<Vec<Domain>, StoreError> {
        let prefix = key_join(&[b"de", b""]);
        let until = until.strftime("%Y-%m-%d").to_string();
        let mut out = Vec::new();
        for k in self.index.scan_prefix(&prefix).keys() {
            let k = k?;
            let rest = &k[prefix.len()..];
            let (date, name) =
                rest.split_at(rest.iter().position(|b| *b == 0).unwrap_or(rest.len()));
            if date > until.as_bytes() {
                break;
            }
            let name = name.get(1..).unwrap_or_default();
            if let Some(raw) = self.domains.get(name)? {
                out.push(decode(&String::from_utf8_lossy(name), &raw)?);
            }
        }
        Ok(out)
    }

    /// Requests in `state`, oldest first.
    pub fn requests_in_state(
        &self,
        state: RequestState,
        limit: usize,
    ) -> Result<Vec<Request>, StoreError> {
        let mut out = Vec::new();
        for id in self.index_names(key_join(&[b"rs", state.as_str().as_bytes(), b""])) {
            let id = id?;
            if let Some(raw) = self.requests.get(&id)? {
                out.push(decode("request", &raw)?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Log entries with sequence number above `after`, at most `limit`.
    pub fn log_since(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.log.range(start..).take(limit) {
            let (k, v) = item?;
            out.push(decode(&format!("log {}", be_u64(&k)), &v)?);
        }
        Ok(out)
    }

    /// One entity's log entries with sequence number above `after`, at most `limit`.
    pub fn log_of(
        &self,
        scope: &LogScope,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let prefix = log_scope_prefix(scope);
        let mut start = prefix.clone();
        start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        for k in self.log_index.range(start..).keys() {
            let k = k?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(raw) = self.log.get(&k[prefix.len()..])? {
                out.push(decode("log", &raw)?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Requests waiting in the outbox, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<RequestId>, StoreError> {
        let mut out = Vec::new();
        for k in self.outbox.iter().keys().take(limit) {
            out.push(request_id_from_key(&k?)?);
        }
        Ok(out)
    }

    /// Requests whose reply deadline is at or before `now`.
    pub fn due_deadlines(&self, now: Timestamp) -> Result<Vec<RequestId>, StoreError> {
        let now_ms = now.as_millisecond();
        let mut out = Vec::new();
        for item in self.deadlines.iter() {
            let (k, v) = item?;
            if be_u64(&v) as i64 <= now_ms {
                out.push(request_id_from_key(&k)?);
            }
        }
        Ok(out)
    }

    /// Counts per status and queue, for status lines and metrics.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let mut c = Counts::default();
        // Kept per status in `meta` by every write (durable.rs): no scan of the indexes.
        for s in DomainStatus::ALL {
            c.domains
                .push((s.as_str().to_owned(), self.counter(&domain_count_key(s))?));
        }
        for s in RequestState::ALL {
            c.requests
                .push((s.as_str().to_owned(), self.counter(&request_count_key(s))?));
        }
        c.outbox = self.outbox.len() as u64;
        c.awaiting_reply = self.deadlines.len() as u64;
        c.unmatched = self
            .index
            .scan_prefix(inbox::inbox_state_key(inbox::InboxState::Unmatched, ""))
            .count() as u64;
        c.pending_messages = self
            .index
            .scan_prefix(inbox::inbox_state_key(inbox::InboxState::Pending, ""))
            .count() as u64;
        c.conflicts = self.index.scan_prefix(key_join(&[b"dx", b""])).count() as u64;
        c.log_seq = self.log_seq()?;
        Ok(c)
    }

    /// Flushes everything to disk (on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

fn be_u64(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[8 - n..].copy_from_slice(&v[..n]);
    u64::from_be_bytes(b)
}

fn request_id_from_key(k: &[u8]) -> Result<RequestId, StoreError> {
    uuid::Uuid::from_slice(k)
        .map(RequestId)
        .map_err(|e| StoreError::Corrupt {
            key: format!("{k:?}"),
            reason: e.to_string(),
        })
}

impl StateView for Store {
    fn client(&self, id: &ClientId) -> Result<Option<Client>, ViewError> {
        Store::client(self, id).map_err(|e| ViewError(e.to_string()))
    }
    fn domain(&self, name: &DomainName) -> Result<Option<Domain>, ViewError> {
        Store::domain(self, name).map_err(|e| ViewError(e.to_string()))
    }
    fn request(&self, id: RequestId) -> Result<Option<Request>, ViewError> {
        Store::request(self, id).map_err(|e| ViewError(e.to_string()))
    }
    fn domains_of_client(&self, id: &ClientId) -> Result<Vec<Domain>, ViewError> {
        self.list_domains(None, Some(id), usize::MAX)
            .map_err(|e| ViewError(e.to_string()))
    }
    fn reminder_marks(
        &self,
        domain: &DomainName,
        expires: jiff::civil::Date,
    ) -> Result<Vec<(u16, crate::core::lifecycle::ReminderOutcome)>, ViewError> {
        Ok(Store::reminder_marks(self, domain, expires)
            .map_err(|e| ViewError(e.to_string()))?
            .into_iter()
            .map(|m| (m.offset, m.outcome))
            .collect())
    }
    fn handle_counter(&self) -> Result<u64, ViewError> {
        self.meta
            .get(META_HANDLE_COUNTER)
            .map(|v| v.map_or(0, |v| be_u64(&v)))
            .map_err(|e| ViewError(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
