//! The outbox worker: takes queued requests from the store's outbox, renders and sends them,
//! and records what happened as core events. Transient failures are retried with exponential
//! backoff and jitter; the request keeps its Message-ID every time (DESIGN.md inv. 3).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::profile::Profile;
use super::render::{RenderedRequest, RequestSettings, render};
use super::transport::{SendOutcome, Transport};
use crate::core::{Ctx, Event, Policy, RequestId, RequestState};
use crate::idsource::UuidIds;
use crate::store::Store;

/// Retry timing for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delay before attempt `n + 1` after `n` failures: initial·2^(n-1), capped, ±20% jitter so
    /// that many requests deferred together do not all come back at once.
    pub fn delay(&self, failures: u32, jitter_unit: f64) -> Duration {
        let exp = 2f64.powi(failures.saturating_sub(1).min(30) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jitter = 0.8 + 0.4 * jitter_unit.clamp(0.0, 1.0);
        Duration::from_secs_f64((base * jitter).max(0.05))
    }
}

/// The shared, reloadable parts the worker renders with.
pub struct OutboundSetup {
    /// The registrar profile (templates, subjects, charset).
    pub profile: Profile,
    /// Addresses and the authorization block.
    pub settings: RequestSettings,
}

/// The worker's state.
pub struct OutboxWorker {
    /// The store.
    pub store: Arc<Store>,
    /// Profile and settings; replaced on reload.
    pub setup: Arc<RwLock<Arc<OutboundSetup>>>,
    /// Where messages go.
    pub transport: Transport,
    /// Core policy (for events).
    pub policy: Policy,
    /// Woken when new requests are queued.
    pub wake: Arc<Notify>,
    /// Retry timing.
    pub backoff: Backoff,
    /// Failures and next attempt per request (in memory: after a restart every queued request
    /// is tried at once, which is what an operator expects after fixing the cause).
    deferred: HashMap<RequestId, (u32, std::time::Instant)>,
    /// Counters, and this worker's heartbeat (for the watchdog).
    health: Option<(Arc<crate::health::Health>, Arc<crate::health::Worker>)>,
    /// Send results not recorded yet, each with the domain (or client) its request is for
    /// (written by `record`, at the latest when a drain ends).
    results: Vec<(Event, String)>,
}

/// Most send results recorded under one flush.
const RECORD_BATCH: usize = 32;

/// Renders the request `id` as it would be sent now.
pub fn render_request(
    store: &Store,
    setup: &OutboundSetup,
    id: RequestId,
) -> Result<RenderedRequest, String> {
    let r = store
        .request(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("request {id} does not exist"))?;
    let c = store
        .client(&r.client_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("client {} of request {id} does not exist", r.client_id))?;
    let d = match &r.domain {
        Some(name) => Some(
            store
                .domain(name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("domain {name} of request {id} does not exist"))?,
        ),
        None => None,
    };
    render(&setup.profile, &setup.settings, &r, &c, d.as_ref()).map_err(|e| e.to_string())
}

/// Splits send results into runs, in their order, in which no two are about the same domain;
/// each run is written in one transaction. A result about a client's own request (its subject
/// is `client <id>`) may move every domain waiting for that client, so it is written alone.
fn independent(results: Vec<(Event, String)>) -> Vec<Vec<Event>> {
    let mut groups: Vec<Vec<Event>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut current = Vec::new();
    for (event, subject) in results {
        if subject.starts_with("client ") {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            groups.push(vec![event]);
            seen.clear();
            continue;
        }
        if !seen.insert(subject.clone()) {
            groups.push(std::mem::take(&mut current));
            seen.clear();
            seen.insert(subject);
        }
        current.push(event);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

impl OutboxWorker {
    /// A worker.
    pub fn new(
        store: Arc<Store>,
        setup: Arc<RwLock<Arc<OutboundSetup>>>,
        transport: Transport,
        policy: Policy,
        wake: Arc<Notify>,
        backoff: Backoff,
    ) -> Self {
        OutboxWorker {
            store,
            setup,
            transport,
            policy,
            wake,
            backoff,
            deferred: HashMap::new(),
            health: None,
            results: Vec::new(),
        }
    }

    /// Reports results and beats to the daemon's health.
    pub fn with_health(
        mut self,
        health: Arc<crate::health::Health>,
        heartbeat: Arc<crate::health::Worker>,
    ) -> Self {
        self.health = Some((health, heartbeat));
        self
    }

    fn beat(&self) {
        if let Some((_, w)) = &self.health {
            w.beat();
        }
    }

    fn count(&self, ok: bool) {
        if let Some((h, _)) = &self.health {
            h.transport_result(ok);
        }
    }

    fn setup(&self) -> Arc<OutboundSetup> {
        match self.setup.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Queues the record of a send result for the request about `subject` (its domain, or its
    /// client); [`Self::record`] writes them (at most [`RECORD_BATCH`] wait, and none outlives
    /// the drain that sent them).
    async fn apply(&mut self, event: Event, subject: &str) {
        self.results.push((event, subject.to_owned()));
        if self.results.len() >= RECORD_BATCH {
            self.record().await;
        }
    }

    /// Records the queued send results under ONE flush (at most [`RECORD_BATCH`] of them,
    /// and never later than the end of the drain that sent them). A crash before that flush
    /// forgets at most these results; their requests are still Queued and go out again with
    /// the same Message-ID (DESIGN.md inv. 3: outbound is at-least-once; the `dir` transport
    /// rewrites the same file). Results are not left to ride on some later flush: that would
    /// widen the window of a silent resend.
    ///
    /// The results of requests for different domains are independent (each reads and writes
    /// only its request and its domain), so they are written together in one transaction
    /// ([`Store::apply_each`], which equals applying them one by one); a second result about
    /// the same domain starts another transaction, so it reads the first one's writes.
    async fn record(&mut self) {
        if self.results.is_empty() {
            return;
        }
        let results = std::mem::take(&mut self.results);
        let (store, policy) = (self.store.clone(), self.policy.clone());
        let res = tokio::task::spawn_blocking(move || {
            let write = || {
                for group in independent(results) {
                    let mut ids = UuidIds;
                    let mut ctx = Ctx {
                        now: crate::clock::now(),
                        ids: &mut ids,
                        policy: &policy,
                    };
                    let now = ctx.now;
                    let written = store.apply_each(&group, now, |s, _, event| {
                        match crate::core::apply(s, event.clone(), &mut ctx) {
                            Ok(t) => Some(t),
                            Err(e) => {
                                let label = format!("{event:?}").chars().take(60).collect::<String>();
                                tracing::error!(error = %e, event = %label, "recording a send result failed");
                                None
                            }
                        }
                    });
                    if let Err(e) = written {
                        tracing::error!(error = %e, results = group.len(), "recording send results failed");
                    }
                }
            };
            store.batch(write)
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "flushing the send results failed"),
            Err(e) => tracing::error!(error = %e, "the store task failed"),
        }
    }

    /// Sends every queued request that is due. Returns how many were handed to the transport.
    pub async fn drain_once(&mut self) -> usize {
        let ids = match self.store.outbox(500) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                return 0;
            }
        };
        // A request read here may have committed inside a batch (a scheduler pass, an IMAP
        // batch) or an API write that has not flushed yet: nothing goes to the registrar before
        // the write that wants it is on disk, or a crash could forget a request the registrar
        // already has (and the next pass would ask again). `sync_committed` shares the group
        // commit: when the API's own flush already covered the request (the usual case) it
        // returns without touching the disk.
        if !ids.is_empty() {
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.sync_committed()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "flushing the store before sending failed");
                    return 0;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the store task failed");
                    return 0;
                }
            }
        }
        let now = std::time::Instant::now();
        let mut handed = 0;
        for id in ids {
            if self.deferred.get(&id).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            // Every line about this request names it and its domain (or client).
            let subject = match self.store.request(id) {
                Ok(Some(r)) if r.state == RequestState::Queued => r
                    .domain
                    .as_ref()
                    .map_or_else(|| format!("client {}", r.client_id), |d| d.to_string()),
                Ok(_) => {
                    tracing::warn!(request_id = %id, "outbox entry for a request that is not Queued; skipped");
                    continue;
                }
                Err(e) => {
                    tracing::error!(request_id = %id, error = %e, "reading a queued request failed");
                    continue;
                }
            };
            let setup = self.setup();
            let rendered = match render_request(&self.store, &setup, id) {
                Ok(m) => m,
                Err(e) => {
                    self.defer(id, &subject, format!("rendering failed: {e}"))
                        .await;
                    continue;
                }
            };
            handed += 1;
            self.beat();
            let outcome = self.transport.send(&rendered, &id.token()).await;
            self.count(matches!(
                outcome,
                SendOutcome::Sent(_) | SendOutcome::Permanent(_)
            ));
            let copy = Some(rendered.copy.clone());
            match outcome {
                SendOutcome::Sent(detail) => {
                    tracing::info!(request_id = %id, domain = %subject, transport = self.transport.name(), %detail, "request sent");
                    self.deferred.remove(&id);
                    self.apply(
                        Event::Sent {
                            request: id,
                            detail,
                            copy,
                        },
                        &subject,
                    )
                    .await;
                }
                SendOutcome::Permanent(reason) => {
                    tracing::warn!(request_id = %id, domain = %subject, %reason, "request refused permanently");
                    self.deferred.remove(&id);
                    self.apply(
                        Event::SendFailed {
                            request: id,
                            reason,
                            copy,
                        },
                        &subject,
                    )
                    .await;
                }
                SendOutcome::Unknown(detail) => {
                    tracing::warn!(request_id = %id, domain = %subject, %detail, "request may or may not have been sent");
                    self.deferred.remove(&id);
                    self.apply(
                        Event::SendUnknown {
                            request: id,
                            detail,
                            copy,
                        },
                        &subject,
                    )
                    .await;
                }
                SendOutcome::Transient(reason) => {
                    tracing::warn!(request_id = %id, domain = %subject, %reason, "sending failed; will retry");
                    self.defer(id, &subject, reason).await;
                }
            }
        }
        self.record().await;
        handed
    }

    async fn defer(&mut self, id: RequestId, subject: &str, reason: String) {
        let failures = self.deferred.get(&id).map_or(0, |(n, _)| *n) + 1;
        let jitter = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0;
        let delay = self.backoff.delay(failures, jitter);
        self.deferred
            .insert(id, (failures, std::time::Instant::now() + delay));
        let retry_at =
            crate::clock::now() + jiff::SignedDuration::try_from(delay).unwrap_or_default();
        self.apply(
            Event::SendDeferred {
                request: id,
                reason,
                attempt: failures,
                retry_at,
            },
            subject,
        )
        .await;
    }

    /// Runs until `stop` turns true. Finishes the message in hand before stopping.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let wake = self.wake.clone();
        loop {
            if *stop.borrow() {
                break;
            }
            self.beat();
            self.drain_once().await;
            let next_due = self.deferred.values().map(|(_, at)| *at).min();
            let sleep = next_due
                .map(|at| at.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or(Duration::from_secs(5))
                .clamp(Duration::from_millis(20), Duration::from_secs(5));
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        }
        self.transport.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Send results about the same domain never share a transaction (the second must read
    /// the first one's writes); a client's own request is written alone; order is kept.
    #[test]
    fn independent_runs_split_on_a_repeated_domain_and_isolate_clients() {
        let sent = |n: u128| Event::Sent {
            request: RequestId(uuid::Uuid::from_u128(n)),
            detail: String::new(),
            copy: None,
        };
        let id = |e: &Event| match e {
            Event::Sent { request, .. } => request.0.as_u128(),
            _ => 0,
        };
        let results = vec![
            (sent(1), "a.ru".to_owned()),
            (sent(2), "b.ru".to_owned()),
            (sent(3), "a.ru".to_owned()),
            (sent(4), "c.ru".to_owned()),
            (sent(5), "client C1".to_owned()),
            (sent(6), "b.ru".to_owned()),
        ];
        let runs: Vec<Vec<u128>> = independent(results)
            .iter()
            .map(|g| g.iter().map(id).collect())
            .collect();
        assert_eq!(runs, vec![vec![1, 2], vec![3, 4], vec![5], vec![6]]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(2));
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(8));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(60));
        assert!(b.delay(3, 0.0) < b.delay(3, 1.0));
    }
}
