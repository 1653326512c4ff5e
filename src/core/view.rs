//! How the core reads state ([`StateView`]) and what it returns ([`Transition`]); plus
//! [`MemState`], an in-memory state for tests and previews.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::ids::{ClientId, DomainName, RequestId};
use super::log::{LogDraft, LogEntry};
use super::model::{Client, Domain, Request};

/// A failure to read state (the store's I/O error, as text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading state failed: {0}")]
pub struct ViewError(pub String);

/// Read access to the current state. The store implements it over sled; tests use [`MemState`].
pub trait StateView {
    /// A client by id.
    fn client(&self, id: &ClientId) -> Result<Option<Client>, ViewError>;
    /// A domain by name.
    fn domain(&self, name: &DomainName) -> Result<Option<Domain>, ViewError>;
    /// A request by id.
    fn request(&self, id: RequestId) -> Result<Option<Request>, ViewError>;
    /// Every domain of a client.
    fn domains_of_client(&self, id: &ClientId) -> Result<Vec<Domain>, ViewError>;
    /// The last handle counter value used (0 when none).
    fn handle_counter(&self) -> Result<u64, ViewError>;
}

/// A side effect the shell carries out in the same store transaction as the state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Put the request in the outbox.
    Send(RequestId),
    /// Take the request out of the outbox (sent, answered or withdrawn).
    Unsend(RequestId),
    /// Arm (or re-arm) the request's reply deadline.
    ArmDeadline(RequestId, Timestamp),
    /// Disarm the request's reply deadline.
    DisarmDeadline(RequestId),
    /// Write a notice (and its fan-out) with this change (DESIGN.md §10).
    Notify(super::notice::NoticeDraft),
}

/// The result of one event: every entity that changed (its new value), the log entries, the
/// effects. The store writes all of it in one transaction (DESIGN.md §3, the outbox pattern).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transition {
    /// Clients, new values.
    pub clients: Vec<Client>,
    /// Domains, new values.
    pub domains: Vec<Domain>,
    /// Requests, new values.
    pub requests: Vec<Request>,
    /// Log entries, in order.
    pub log: Vec<LogDraft>,
    /// Effects, in order.
    pub effects: Vec<Effect>,
    /// The new handle counter, when a handle was allocated.
    pub handle_counter: Option<u64>,
}

impl Transition {
    /// True when the event changed nothing and logged nothing (a replay of something done).
    pub fn is_noop(&self) -> bool {
        self.clients.is_empty()
            && self.domains.is_empty()
            && self.requests.is_empty()
            && self.log.is_empty()
            && self.effects.is_empty()
            && self.handle_counter.is_none()
    }
}

/// State held in memory: the reference model for property tests, and a scratch state for
/// previews. Applies transitions exactly as the store does, minus the durability.
#[derive(Debug, Clone, Default)]
pub struct MemState {
    /// Clients by id.
    pub clients: BTreeMap<ClientId, Client>,
    /// Domains by name.
    pub domains: BTreeMap<DomainName, Domain>,
    /// Requests by id.
    pub requests: BTreeMap<RequestId, Request>,
    /// The action log.
    pub log: Vec<LogEntry>,
    /// Requests waiting in the outbox.
    pub outbox: BTreeSet<RequestId>,
    /// Armed deadlines.
    pub deadlines: BTreeMap<RequestId, Timestamp>,
    /// Last handle counter.
    pub counter: u64,
    /// Notices written, in order.
    pub notices: Vec<super::notice::NoticeDraft>,
}

impl MemState {
    /// Writes a transition.
    pub fn commit(&mut self, t: &Transition) {
        for c in &t.clients {
            self.clients.insert(c.id.clone(), c.clone());
        }
        for d in &t.domains {
            self.domains.insert(d.name.clone(), d.clone());
        }
        for r in &t.requests {
            self.requests.insert(r.id, r.clone());
        }
        for entry in &t.log {
            let seq = self.log.len() as u64 + 1;
            self.log.push(LogEntry {
                seq,
                entry: entry.clone(),
                by: None,
            });
        }
        for e in &t.effects {
            match e {
                Effect::Send(id) => {
                    self.outbox.insert(*id);
                }
                Effect::Unsend(id) => {
                    self.outbox.remove(id);
                }
                Effect::ArmDeadline(id, at) => {
                    self.deadlines.insert(*id, *at);
                }
                Effect::DisarmDeadline(id) => {
                    self.deadlines.remove(id);
                }
                Effect::Notify(n) => self.notices.push(n.clone()),
            }
        }
        if let Some(c) = t.handle_counter {
            self.counter = c;
        }
    }
}

impl StateView for MemState {
    fn client(&self, id: &ClientId) -> Result<Option<Client>, ViewError> {
        Ok(self.clients.get(id).cloned())
    }
    fn domain(&self, name: &DomainName) -> Result<Option<Domain>, ViewError> {
        Ok(self.domains.get(name).cloned())
    }
    fn request(&self, id: RequestId) -> Result<Option<Request>, ViewError> {
        Ok(self.requests.get(&id).cloned())
    }
    fn domains_of_client(&self, id: &ClientId) -> Result<Vec<Domain>, ViewError> {
        Ok(self
            .domains
            .values()
            .filter(|d| &d.client_id == id)
            .cloned()
            .collect())
    }
    fn handle_counter(&self) -> Result<u64, ViewError> {
        Ok(self.counter)
    }
}
