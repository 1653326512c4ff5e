//! The transition function: `apply(state, event, ctx) -> Transition`. No I/O, no clock, no
//! randomness: time, ids and policy come in through [`Ctx`] (DESIGN.md §3).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::{SignedDuration, Span, Timestamp};

use super::event::{DomainOrder, Event, NewClient, ReplyOutcome, Resolution};
use super::ids::{ClientId, DomainName, Handle, RequestId};
use super::log::{Actor, Evidence, LogDraft};
use super::model::{
    Client, ClientStatus, Domain, DomainStatus, Phase, Registrant, Request, RequestKind,
    RequestState,
};
use super::view::{Effect, StateView, Transition, ViewError};

/// Source of fresh request ids (UUID v7 in the daemon, a counter in tests).
pub trait IdSource {
    /// A new, never used request id.
    fn request_id(&mut self) -> RequestId;
}

/// How long to wait for the registrar's final answer, per request kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyDeadlines {
    /// Client registrations.
    pub client: SignedDuration,
    /// Domain registrations.
    pub domain: SignedDuration,
    /// Renewals.
    pub renewal: SignedDuration,
}

/// The registrar-facing rules the core applies; built from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Right-hand side of our Message-IDs (RFC 5322 §3.6.4), normally the callback domain.
    pub message_id_host: String,
    /// Reply deadlines.
    pub deadlines: ReplyDeadlines,
    /// Handle prefix (HSPcomplete's `PREFIX_COUNTER_RANDOM-GPT`).
    pub handle_prefix: String,
    /// Handle suffix for persons, e.g. `-GPT`.
    pub person_handle_suffix: String,
    /// Handle suffix for organizations, e.g. `-ORG-GPT`.
    pub org_handle_suffix: String,
    /// Top-level domains that cannot be renewed earlier than `renew_window_days` before expiry
    /// (R01: .RU, .SU, .РФ, 60 days).
    pub renew_window_tlds: Vec<String>,
    /// See `renew_window_tlds`.
    pub renew_window_days: i32,
    /// Which letters each TLD allows in new names (from the registrar profile); checked when
    /// an order comes in.
    pub tld_rules: Vec<crate::core::TldRule>,
    /// Reminders, grace and automatic renewal after registration (DESIGN.md §9).
    pub lifecycle: super::lifecycle::LifecyclePolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            message_id_host: "regmail.invalid".into(),
            deadlines: ReplyDeadlines {
                client: SignedDuration::from_hours(72),
                domain: SignedDuration::from_hours(72),
                renewal: SignedDuration::from_hours(72),
            },
            handle_prefix: "REGMAIL".into(),
            person_handle_suffix: "-GPT".into(),
            org_handle_suffix: "-ORG-GPT".into(),
            renew_window_tlds: vec!["ru".into(), "su".into(), "xn--p1ai".into()],
            renew_window_days: 60,
            tld_rules: Vec::new(),
            lifecycle: super::lifecycle::LifecyclePolicy::default(),
        }
    }
}

impl Policy {
    fn deadline(&self, kind: RequestKind) -> SignedDuration {
        match kind {
            RequestKind::ClientRegistration => self.deadlines.client,
            RequestKind::DomainRegistration => self.deadlines.domain,
            RequestKind::DomainRenewal => self.deadlines.renewal,
        }
    }

    /// Builds the handle for counter `n`: `PREFIX_n_R-GPT` where R is a digit taken from the
    /// request id (so it is random in the daemon and fixed in tests).
    fn make_handle(&self, n: u64, registrant: &Registrant, id: RequestId) -> Option<Handle> {
        let digit = id.as_bytes()[15] % 10;
        let suffix = match registrant {
            Registrant::Person(_) => &self.person_handle_suffix,
            Registrant::Organization(_) => &self.org_handle_suffix,
        };
        Handle::parse(&format!("{}_{n}_{digit}{suffix}", self.handle_prefix)).ok()
    }
}

/// The inputs besides state and event.
pub struct Ctx<'a> {
    /// The time of the event.
    pub now: Timestamp,
    /// Fresh ids.
    pub ids: &'a mut dyn IdSource,
    /// Registrar rules.
    pub policy: &'a Policy,
}

/// Why an event was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// No such client.
    #[error("client {0} does not exist")]
    UnknownClient(ClientId),
    /// No such domain.
    #[error("domain {0} has no order")]
    UnknownDomain(DomainName),
    /// No such request.
    #[error("request {0} does not exist")]
    UnknownRequest(RequestId),
    /// A client with this id exists with other data.
    #[error("client {0} already exists with different data")]
    ClientExists(ClientId),
    /// The domain already has an active order.
    #[error("domain {domain} already has an active order (status {status})")]
    DomainActive {
        /// The domain.
        domain: DomainName,
        /// Its status.
        status: &'static str,
    },
    /// R01 refuses renewals of .RU/.SU/.РФ earlier than 60 days before expiry.
    #[error("{domain} cannot be renewed before {earliest} (expires {expires})")]
    TooEarlyToRenew {
        /// The domain.
        domain: DomainName,
        /// Expiry.
        expires: Date,
        /// First allowed day.
        earliest: Date,
    },
    /// The event does not fit the current state; the text says why and what to do.
    #[error("{0}")]
    Illegal(String),
    /// Reading state failed.
    #[error(transparent)]
    View(#[from] ViewError),
}

/// Applies one event to the state. Returns every change, log entry and effect it causes, or an
/// error when the event is not legal now (in which case nothing changes).
pub fn apply(
    view: &dyn StateView,
    event: Event,
    ctx: &mut Ctx<'_>,
) -> Result<Transition, CoreError> {
    let mut w = Work {
        view,
        now: ctx.now,
        actor: event.actor(),
        policy: ctx.policy,
        ids: &mut *ctx.ids,
        clients: BTreeMap::new(),
        domains: BTreeMap::new(),
        requests: BTreeMap::new(),
        originals: BTreeMap::new(),
        t: Transition::default(),
    };
    match event {
        Event::CreateClient(new) => w.create_client(new)?,
        Event::UpdateClient {
            id,
            registrant,
            contact,
        } => {
            let mut c = w.client(&id)?;
            if !matches!(c.status, ClientStatus::Unregistered | ClientStatus::Error) {
                return Err(CoreError::Illegal(format!(
                    "client {id} is {:?}; its data can be changed only while Unregistered or in Error",
                    c.status
                )));
            }
            if c.registrant == registrant && c.contact == contact {
                return Ok(w.finish());
            }
            c.registrant = registrant;
            c.contact = contact;
            w.put_client(
                c,
                "client.updated",
                "client data updated".into(),
                Evidence::default(),
            );
        }
        Event::OrderDomain(order) => w.order_domain(order)?,
        Event::MarkPaid { domain } => {
            let d = w.domain(&domain)?;
            match d.status {
                DomainStatus::AwaitingPayment => {
                    let mut d = d;
                    d.paid = true;
                    let d = w.start_registration(d)?;
                    let msg = format!("payment received; {}", describe(&d));
                    w.put_domain(d, "domain.paid", msg, Evidence::default());
                }
                DomainStatus::Cancelled => {
                    return Err(CoreError::Illegal(format!(
                        "the order for {domain} was cancelled; place a new order"
                    )));
                }
                _ => {} // already paid: a replay, nothing to do
            }
        }
        Event::Renew { domain, years, .. } => w.renew(&domain, years)?,
        Event::Cancel { domain, note } => w.cancel(&domain, note)?,
        Event::Resolve {
            domain,
            outcome,
            note,
        } => w.resolve(&domain, outcome, note)?,
        Event::Retry { request } => w.retry(request)?,
        Event::Sent {
            request,
            detail,
            copy,
        } => w.sent(request, detail, copy)?,
        Event::SendDeferred {
            request,
            reason,
            attempt,
            retry_at,
        } => {
            let r = w.request(request)?;
            if r.state != RequestState::Queued {
                return Err(illegal_request_state(&r, "defer"));
            }
            let ev = Evidence {
                error: Some(reason.clone()),
                ..w.ev(&r)
            };
            let msg =
                format!("sending failed (attempt {attempt}): {reason}; next attempt at {retry_at}");
            w.note_request(&r, "request.send_deferred", msg, ev);
        }
        Event::SendUnknown {
            request,
            detail,
            copy,
        } => {
            let mut r = w.request(request)?;
            if r.state != RequestState::Queued {
                return Err(illegal_request_state(&r, "mark as possibly sent"));
            }
            r.state = RequestState::SendUnknown;
            r.attempts += 1;
            r.last_error = Some(detail.clone());
            let deadline = w.now + w.policy.deadline(r.kind);
            r.reply_deadline = Some(deadline);
            w.t.effects.push(Effect::Unsend(r.id));
            w.t.effects.push(Effect::ArmDeadline(r.id, deadline));
            w.set_domain_phase(&r, Phase::SendUnknown, "domain.send_unknown")?;
            let ev = Evidence {
                error: Some(detail),
                message_id: Some(r.message_id.clone()),
                message_copy: copy,
                ..w.ev(&r)
            };
            w.put_request(
                r,
                "request.send_unknown",
                "the mail link broke after the message data was sent: it may or may not have \
                 gone; waiting for a registrar reply, or an operator retry"
                    .into(),
                ev,
            );
        }
        Event::SendFailed {
            request,
            reason,
            copy,
        } => {
            let mut r = w.request(request)?;
            if r.state != RequestState::Queued {
                return Err(illegal_request_state(&r, "fail"));
            }
            r.state = RequestState::Rejected;
            r.attempts += 1;
            r.last_error = Some(reason.clone());
            w.t.effects.push(Effect::Unsend(r.id));
            let ev = Evidence {
                server_reply: Some(reason.clone()),
                message_copy: copy,
                ..w.ev(&r)
            };
            let msg = format!("the mail server refused the request permanently: {reason}");
            w.put_request(r.clone(), "request.send_failed", msg, ev.clone());
            w.fail_owner(
                &r,
                Phase::SendFailed,
                &format!("mail server refused the request: {reason}"),
                ev,
            )?;
        }
        Event::Reply {
            request,
            outcome,
            evidence,
        } => w.reply(request, outcome, evidence)?,
        Event::RecordOutcome {
            request,
            outcome,
            note,
        } => {
            let evidence = Evidence {
                note: Some(note),
                ..Evidence::default()
            };
            w.reply(request, outcome, evidence)?
        }
        Event::ReminderDue {
            domain,
            expires,
            offset,
        } => w.reminder_due(&domain, expires, offset)?,
        Event::ExpiryReached { domain } => w.expiry_reached(&domain)?,
        Event::GraceEnded { domain } => w.grace_ended(&domain)?,
        Event::Registrar {
            domain,
            notice,
            evidence,
        } => w.registrar_notice(&domain, notice, evidence)?,
        Event::DeadlinePassed { request } => {
            let mut r = w.request(request)?;
            let due = r.reply_deadline.is_some_and(|d| d <= w.now);
            let awaiting = matches!(
                r.state,
                RequestState::Sent | RequestState::SendUnknown | RequestState::Acknowledged
            );
            if !due || !awaiting {
                // A stale deadline: the request moved on (disarm what is left), or its deadline
                // was re-armed later (keep the live one armed).
                if !awaiting {
                    w.t.effects.push(Effect::DisarmDeadline(r.id));
                }
                return Ok(w.finish());
            }
            let waited = w.policy.deadline(r.kind);
            let reason = format!(
                "no reply from the registrar within {waited:#} (request was {})",
                r.state.as_str()
            );
            r.state = RequestState::TimedOut;
            r.last_error = Some(reason.clone());
            r.reply_deadline = None;
            w.t.effects.push(Effect::DisarmDeadline(r.id));
            let ev = Evidence {
                error: Some(reason.clone()),
                ..w.ev(&r)
            };
            w.put_request(r.clone(), "request.timed_out", reason.clone(), ev.clone());
            w.fail_owner(&r, Phase::NoReply, &reason, ev)?;
        }
    }
    Ok(w.finish())
}

fn illegal_request_state(r: &Request, what: &str) -> CoreError {
    CoreError::Illegal(format!(
        "cannot {what} request {} in state {}",
        r.id,
        r.state.as_str()
    ))
}

/// The calendar day of `now` in UTC: the day every date rule of the core (expiry, grace,
/// reminders, renewal windows) counts in. The shell uses it too, so all agree on "today".
pub fn today(now: Timestamp) -> Date {
    now.to_zoned(jiff::tz::TimeZone::UTC).date()
}

fn add_years(date: Date, years: u8) -> Option<Date> {
    date.checked_add(Span::new().years(i64::from(years))).ok()
}

/// A short phrase saying where a domain stands, for log messages.
fn describe(d: &Domain) -> String {
    match d.phase {
        Phase::WaitingForPayment => "waiting for payment".into(),
        Phase::WaitingForClient => format!("waiting for client {} to be registered", d.client_id),
        Phase::RequestQueued => "request queued for sending".into(),
        Phase::ClientFailed => format!(
            "client {} is in Error, so the domain cannot proceed",
            d.client_id
        ),
        other => format!("{other:?}"),
    }
}

fn client_status_str(c: &Client) -> String {
    format!("{:?}", c.status)
}

fn domain_status_str(d: &Domain) -> String {
    format!("{}/{:?}", d.status.as_str(), d.phase)
}

/// What a new request is about (see `Work::queue_request`).
struct NewRequest<'a> {
    kind: RequestKind,
    client_id: &'a ClientId,
    domain: Option<&'a DomainName>,
    years: Option<u8>,
    handle: Option<Handle>,
    retry_of: Option<RequestId>,
}

/// The working set of one `apply`: reads fall through an overlay of what this event changed.
pub(super) struct Work<'a> {
    pub(super) view: &'a dyn StateView,
    pub(super) now: Timestamp,
    pub(super) actor: Actor,
    pub(super) policy: &'a Policy,
    ids: &'a mut dyn IdSource,
    clients: BTreeMap<ClientId, Client>,
    domains: BTreeMap<DomainName, Domain>,
    requests: BTreeMap<RequestId, Request>,
    /// Each changed domain as it was before this event (for its notice).
    originals: BTreeMap<DomainName, Option<Domain>>,
    pub(super) t: Transition,
}

impl Work<'_> {
    fn finish(mut self) -> Transition {
        // A change that has a notice type carries its notice (DESIGN.md §10), judged on the
        // domain before the event and after it, whatever steps it went through.
        for d in self.domains.values() {
            let before = match self.originals.get(&d.name) {
                Some(b) => b.clone(),
                None => self.view.domain(&d.name).ok().flatten(),
            };
            if let Some(n) = super::notice::domain_notice(before.as_ref(), d) {
                self.t.effects.push(Effect::Notify(n));
            }
        }
        self.t.clients = self.clients.into_values().collect();
        self.t.domains = self.domains.into_values().collect();
        self.t.requests = self.requests.into_values().collect();
        self.t
    }

    fn find_client(&self, id: &ClientId) -> Result<Option<Client>, CoreError> {
        match self.clients.get(id) {
            Some(c) => Ok(Some(c.clone())),
            None => Ok(self.view.client(id)?),
        }
    }
    fn client(&self, id: &ClientId) -> Result<Client, CoreError> {
        self.find_client(id)?
            .ok_or_else(|| CoreError::UnknownClient(id.clone()))
    }
    fn find_domain(&self, name: &DomainName) -> Result<Option<Domain>, CoreError> {
        match self.domains.get(name) {
            Some(d) => Ok(Some(d.clone())),
            None => Ok(self.view.domain(name)?),
        }
    }
    pub(super) fn domain(&self, name: &DomainName) -> Result<Domain, CoreError> {
        self.find_domain(name)?
            .ok_or_else(|| CoreError::UnknownDomain(name.clone()))
    }
    fn request(&self, id: RequestId) -> Result<Request, CoreError> {
        match self.requests.get(&id) {
            Some(r) => Ok(r.clone()),
            None => self.view.request(id)?.ok_or(CoreError::UnknownRequest(id)),
        }
    }
    /// The client's domains, with this event's changes applied.
    fn domains_of_client(&self, id: &ClientId) -> Result<Vec<Domain>, CoreError> {
        let mut out: Vec<Domain> = self
            .view
            .domains_of_client(id)?
            .into_iter()
            .map(|d| self.domains.get(&d.name).cloned().unwrap_or(d))
            .collect();
        for d in self.domains.values() {
            if &d.client_id == id && !out.iter().any(|o| o.name == d.name) {
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    fn ev(&self, r: &Request) -> Evidence {
        Evidence {
            request_id: Some(r.id),
            ..Evidence::default()
        }
    }

    fn log(&mut self, draft: LogDraft) {
        self.t.log.push(draft);
    }

    fn put_client(&mut self, mut c: Client, action: &str, message: String, evidence: Evidence) {
        let before = self.find_client(&c.id).ok().flatten();
        c.updated = self.now;
        self.log(LogDraft {
            at: self.now,
            actor: self.actor,
            action: action.into(),
            message,
            domain: None,
            client: Some(c.id.clone()),
            request: evidence.request_id.or(c.open_request),
            status_before: before.as_ref().map(client_status_str),
            status_after: Some(client_status_str(&c)),
            evidence,
        });
        self.clients.insert(c.id.clone(), c);
    }

    pub(super) fn put_domain(
        &mut self,
        mut d: Domain,
        action: &str,
        message: String,
        evidence: Evidence,
    ) {
        let before = self.find_domain(&d.name).ok().flatten();
        self.originals
            .entry(d.name.clone())
            .or_insert_with(|| before.clone());
        d.updated = self.now;
        self.log(LogDraft {
            at: self.now,
            actor: self.actor,
            action: action.into(),
            message,
            domain: Some(d.name.clone()),
            client: Some(d.client_id.clone()),
            request: evidence.request_id.or(d.open_request),
            status_before: before.as_ref().map(domain_status_str),
            status_after: Some(domain_status_str(&d)),
            evidence,
        });
        self.domains.insert(d.name.clone(), d);
    }

    fn put_request(&mut self, mut r: Request, action: &str, message: String, evidence: Evidence) {
        let before = self
            .requests
            .get(&r.id)
            .cloned()
            .or_else(|| self.view.request(r.id).ok().flatten());
        r.updated = self.now;
        self.log(LogDraft {
            at: self.now,
            actor: self.actor,
            action: action.into(),
            message,
            domain: r.domain.clone(),
            client: Some(r.client_id.clone()),
            request: Some(r.id),
            status_before: before.map(|b| b.state.as_str().to_owned()),
            status_after: Some(r.state.as_str().to_owned()),
            evidence: Evidence {
                request_id: Some(r.id),
                ..evidence
            },
        });
        self.requests.insert(r.id, r);
    }

    /// A log entry that changes no state (a late or duplicate reply, for instance).
    fn note_request(&mut self, r: &Request, action: &str, message: String, evidence: Evidence) {
        self.log(LogDraft {
            at: self.now,
            actor: self.actor,
            action: action.into(),
            message,
            domain: r.domain.clone(),
            client: Some(r.client_id.clone()),
            request: Some(r.id),
            status_before: None,
            status_after: None,
            evidence: Evidence {
                request_id: Some(r.id),
                ..evidence
            },
        });
    }

    /// Queues a new request e-mail: the request is created Queued and put in the outbox.
    fn queue_request(&mut self, id: RequestId, new: NewRequest<'_>) {
        let NewRequest {
            kind,
            client_id,
            domain,
            years,
            handle,
            retry_of,
        } = new;
        let r = Request {
            id,
            kind,
            client_id: client_id.clone(),
            domain: domain.cloned(),
            years,
            handle,
            state: RequestState::Queued,
            message_id: format!("<{}@{}>", id.token(), self.policy.message_id_host),
            attempts: 0,
            task_id: None,
            last_error: None,
            reply_deadline: None,
            retry_of,
            created: self.now,
            updated: self.now,
        };
        let target = domain.map_or_else(|| format!("client {client_id}"), |d| format!("{d}"));
        let msg = match retry_of {
            Some(old) => format!(
                "{} request for {target} queued (retry of {old})",
                kind.as_str()
            ),
            None => format!("{} request for {target} queued", kind.as_str()),
        };
        let ev = Evidence {
            message_id: Some(r.message_id.clone()),
            ..Evidence::default()
        };
        self.put_request(r, "request.queued", msg, ev);
        self.t.effects.push(Effect::Send(id));
    }

    /// Queues a domain request of `kind` for `d` and makes it the domain's open request
    /// (status Registering or Renewing, phase RequestQueued). Returns the new request's id.
    fn queue_for_domain(
        &mut self,
        d: &mut Domain,
        kind: RequestKind,
        years: Option<u8>,
        retry_of: Option<RequestId>,
    ) -> RequestId {
        let id = self.ids.request_id();
        self.queue_request(
            id,
            NewRequest {
                kind,
                client_id: &d.client_id,
                domain: Some(&d.name),
                years,
                handle: None,
                retry_of,
            },
        );
        d.status = if kind == RequestKind::DomainRenewal {
            DomainStatus::Renewing
        } else {
            DomainStatus::Registering
        };
        d.phase = Phase::RequestQueued;
        d.open_request = Some(id);
        d.last_error = None;
        id
    }

    /// Starts a client's registration: allocates its handle from the durable counter and
    /// queues the client request.
    fn start_client_registration(
        &mut self,
        mut c: Client,
        reuse_handle: Option<Handle>,
        retry_of: Option<RequestId>,
    ) -> Result<(), CoreError> {
        let id = self.ids.request_id();
        let handle = match reuse_handle {
            Some(h) => h,
            None => {
                let n = match self.t.handle_counter {
                    Some(n) => n,
                    None => self.view.handle_counter()?,
                } + 1;
                self.t.handle_counter = Some(n);
                self.policy
                    .make_handle(n, &c.registrant, id)
                    .ok_or_else(|| CoreError::Illegal(format!(
                        "the handle prefix {:?} does not make a valid handle; fix [registrar] handle_prefix",
                        self.policy.handle_prefix
                    )))?
            }
        };
        self.queue_request(
            id,
            NewRequest {
                kind: RequestKind::ClientRegistration,
                client_id: &c.id,
                domain: None,
                years: None,
                handle: Some(handle.clone()),
                retry_of,
            },
        );
        c.status = ClientStatus::Registering;
        c.open_request = Some(id);
        c.last_error = None;
        let msg = format!("registration requested with handle {handle}");
        self.put_client(
            c,
            "client.registering",
            msg,
            Evidence {
                request_id: Some(id),
                ..Evidence::default()
            },
        );
        Ok(())
    }

    /// Moves a paid domain towards registration: queues its request when the client is
    /// Registered, else waits for (or starts) the client's registration.
    fn start_registration(&mut self, mut d: Domain) -> Result<Domain, CoreError> {
        let c = self.client(&d.client_id)?;
        d.status = DomainStatus::Registering;
        d.last_error = None;
        match c.status {
            ClientStatus::Registered => {
                let years = Some(d.years);
                self.queue_for_domain(&mut d, RequestKind::DomainRegistration, years, None);
            }
            ClientStatus::Registering => {
                d.open_request = None;
                d.phase = Phase::WaitingForClient;
            }
            ClientStatus::Unregistered => {
                self.start_client_registration(c, None, None)?;
                d.open_request = None;
                d.phase = Phase::WaitingForClient;
            }
            ClientStatus::Error => {
                d.status = DomainStatus::Error;
                d.phase = Phase::ClientFailed;
                d.open_request = None;
                d.last_error = Some(format!(
                    "client {} is in Error ({}); retry the client's request",
                    c.id,
                    c.last_error.as_deref().unwrap_or("no reason recorded")
                ));
            }
        }
        Ok(d)
    }

    fn create_client(&mut self, new: NewClient) -> Result<(), CoreError> {
        if let Some(existing) = self.find_client(&new.id)? {
            let same_handle =
                new.existing_handle.is_none() || existing.handle == new.existing_handle;
            if existing.registrant == new.registrant
                && existing.contact == new.contact
                && same_handle
            {
                return Ok(()); // the same create again: nothing to do
            }
            return Err(CoreError::ClientExists(new.id));
        }
        let imported = new.existing_handle.is_some();
        let c = Client {
            id: new.id,
            registrant: new.registrant,
            contact: new.contact,
            status: if imported {
                ClientStatus::Registered
            } else {
                ClientStatus::Unregistered
            },
            handle: new.existing_handle,
            open_request: None,
            last_error: None,
            created: self.now,
            updated: self.now,
        };
        let (action, msg) = match &c.handle {
            Some(h) => (
                "client.imported",
                format!("imported as already registered with handle {h}"),
            ),
            None => ("client.created", "created".to_owned()),
        };
        self.put_client(c, action, msg, Evidence::default());
        Ok(())
    }

    fn order_domain(&mut self, o: DomainOrder) -> Result<(), CoreError> {
        if let Some(d) = self.find_domain(&o.name)?
            && d.status != DomainStatus::Cancelled
            && d.status != DomainStatus::Deleted
        {
            return Err(CoreError::DomainActive {
                domain: o.name,
                status: d.status.as_str(),
            });
        }
        self.client(&o.client_id)?;
        let d = Domain {
            name: o.name,
            client_id: o.client_id,
            years: o.years,
            nameservers: o.nameservers,
            order_id: o.order_id,
            description: o.description,
            paid: o.paid,
            auto_renew: o.auto_renew,
            expires: None,
            grace_ends: None,
            deleted_on: None,
            status: DomainStatus::AwaitingPayment,
            phase: Phase::WaitingForPayment,
            open_request: None,
            last_error: None,
            created: self.now,
            updated: self.now,
        };
        let head = format!(
            "ordered for {} year(s) by client {} (order {:?}){}",
            d.years,
            d.client_id,
            d.order_id,
            if d.paid { ", paid" } else { ", not paid yet" }
        );
        let d = if d.paid {
            self.start_registration(d)?
        } else {
            d
        };
        let msg = format!("{head}; {}", describe(&d));
        self.put_domain(d, "domain.ordered", msg, Evidence::default());
        Ok(())
    }

    fn renew(&mut self, name: &DomainName, years: u8) -> Result<(), CoreError> {
        let mut d = self.domain(name)?;
        match d.status {
            DomainStatus::Registered => {}
            // Renewal during grace (DESIGN.md §9): accepted through the last day of grace.
            DomainStatus::Expired => {
                if let Some(g) = d.grace_ends
                    && today(self.now) > g
                {
                    return Err(CoreError::Illegal(format!(
                        "{name} expired and its grace ended on {g}; it is about to be deleted and can no longer be renewed"
                    )));
                }
            }
            _ => {
                return Err(CoreError::Illegal(format!(
                    "{name} is {}; only a Registered domain (or an Expired one during grace) can be renewed",
                    d.status.as_str()
                )));
            }
        }
        if let Some(expires) = d.expires
            && self
                .policy
                .renew_window_tlds
                .iter()
                .any(|t| t == name.tld())
        {
            let earliest = expires
                .checked_sub(Span::new().days(i64::from(self.policy.renew_window_days)))
                .unwrap_or(expires);
            if today(self.now) < earliest {
                return Err(CoreError::TooEarlyToRenew {
                    domain: name.clone(),
                    expires,
                    earliest,
                });
            }
        }
        let id = self.queue_for_domain(&mut d, RequestKind::DomainRenewal, Some(years), None);
        let msg = format!("renewal for {years} year(s) requested");
        self.put_domain(
            d,
            "domain.renewing",
            msg,
            Evidence {
                request_id: Some(id),
                ..Evidence::default()
            },
        );
        Ok(())
    }

    fn cancel(&mut self, name: &DomainName, note: Option<String>) -> Result<(), CoreError> {
        let mut d = self.domain(name)?;
        let open = match d.open_request {
            Some(id) => Some(self.request(id)?),
            None => None,
        };
        let allowed = match d.status {
            DomainStatus::AwaitingPayment => true,
            DomainStatus::Registering => match &open {
                None => true,
                Some(r) => r.state == RequestState::Queued,
            },
            DomainStatus::Error => d.expires.is_none(),
            _ => false,
        };
        if !allowed {
            return Err(CoreError::Illegal(format!(
                "{name} is {}/{:?}: its request has reached the registrar (or it is registered); \
                 use resolve instead of cancel",
                d.status.as_str(),
                d.phase
            )));
        }
        if let Some(mut r) = open {
            if r.state == RequestState::Queued {
                r.state = RequestState::Cancelled;
                self.t.effects.push(Effect::Unsend(r.id));
                self.put_request(
                    r,
                    "request.cancelled",
                    "withdrawn before sending".into(),
                    Evidence::default(),
                );
            } else {
                self.t.effects.push(Effect::DisarmDeadline(r.id));
                if !r.state.is_settled() {
                    // A request left TimedOut (or SendUnknown) by an order cancelled in Error
                    // is closed with it: a late reply to it is then logged only, and cannot
                    // reopen it beside the request of a new order for the same name.
                    r.state = RequestState::Cancelled;
                    r.reply_deadline = None;
                    self.put_request(
                        r,
                        "request.cancelled",
                        "closed with its cancelled order".into(),
                        Evidence::default(),
                    );
                }
            }
        }
        d.status = DomainStatus::Cancelled;
        d.phase = Phase::Cancelled;
        d.open_request = None;
        let ev = Evidence {
            note: note.clone(),
            ..Evidence::default()
        };
        let msg = match note {
            Some(n) => format!("order cancelled: {n}"),
            None => "order cancelled".into(),
        };
        self.put_domain(d, "domain.cancelled", msg, ev);
        Ok(())
    }

    fn resolve(
        &mut self,
        name: &DomainName,
        outcome: Resolution,
        note: String,
    ) -> Result<(), CoreError> {
        let mut d = self.domain(name)?;
        if d.status == DomainStatus::Cancelled {
            return Err(CoreError::Illegal(format!(
                "the order for {name} was cancelled; nothing to resolve"
            )));
        }
        if d.status == DomainStatus::AwaitingPayment {
            return Err(CoreError::Illegal(format!(
                "the order for {name} is not paid; mark it paid (or cancel it) before resolving"
            )));
        }
        let ev = Evidence {
            note: Some(note.clone()),
            ..Evidence::default()
        };
        let mut renewal_years = None;
        if let Some(id) = d.open_request {
            let mut r = self.request(id)?;
            if r.kind == RequestKind::DomainRenewal {
                renewal_years = r.years;
            }
            if !r.state.is_settled() {
                r.state = match outcome {
                    Resolution::Registered { .. } => RequestState::Completed,
                    Resolution::Error => RequestState::Rejected,
                };
                r.last_error = Some(format!("settled by operator: {note}"));
                r.reply_deadline = None;
                self.t.effects.push(Effect::Unsend(r.id));
                self.t.effects.push(Effect::DisarmDeadline(r.id));
                self.put_request(
                    r,
                    "request.settled_by_operator",
                    format!("settled by operator: {note}"),
                    ev.clone(),
                );
            }
        }
        match outcome {
            Resolution::Registered { expires } => {
                // An explicit date wins; a renewal adds its years to the old expiry; a domain
                // that already has an expiry keeps it (never moved back); else today + years.
                let computed = match (renewal_years, d.expires) {
                    (Some(y), Some(old)) => add_years(old, y),
                    (None, Some(old)) => Some(old),
                    _ => add_years(today(self.now), d.years),
                };
                d.expires = expires.or(computed).or(d.expires);
                d.status = DomainStatus::Registered;
                d.grace_ends = None;
                d.deleted_on = None;
                d.last_error = None;
            }
            Resolution::Error => {
                d.status = DomainStatus::Error;
                d.last_error = Some(note.clone());
            }
        }
        d.phase = Phase::SettledByOperator;
        d.open_request = None;
        let msg = format!("resolved by operator: {note}");
        self.put_domain(d, "domain.resolved", msg, ev);
        Ok(())
    }

    fn retry(&mut self, id: RequestId) -> Result<(), CoreError> {
        let old = self.request(id)?;
        if !matches!(
            old.state,
            RequestState::Rejected | RequestState::TimedOut | RequestState::SendUnknown
        ) {
            return Err(CoreError::Illegal(format!(
                "request {id} is {}; only a Rejected, TimedOut or SendUnknown request can be retried",
                old.state.as_str()
            )));
        }
        if old.state == RequestState::SendUnknown {
            return self.requeue_same_message(old);
        }
        if matches!(
            old.state,
            RequestState::SendUnknown | RequestState::TimedOut
        ) {
            // The new request supersedes it: one open request per owner. Should the first
            // e-mail have arrived after all, a completion of it still counts (see `reply`);
            // anything else it gets is logged only.
            let mut superseded = old.clone();
            superseded.state = RequestState::Cancelled;
            superseded.reply_deadline = None;
            superseded.last_error = Some("superseded by an operator retry".into());
            self.t.effects.push(Effect::DisarmDeadline(old.id));
            self.put_request(
                superseded,
                "request.superseded",
                "superseded by an operator retry".into(),
                Evidence::default(),
            );
        }
        match old.kind {
            RequestKind::ClientRegistration => {
                let c = self.client(&old.client_id)?;
                if c.open_request != Some(old.id) || c.status == ClientStatus::Registered {
                    return Err(CoreError::Illegal(format!(
                        "client {} is {:?} and no longer waits on request {id}",
                        c.id, c.status
                    )));
                }
                // The same handle again: the registrar may have created it the first time.
                self.start_client_registration(c, old.handle.clone(), Some(old.id))?;
                self.domains_wait_for_client_again(&old.client_id)?;
            }
            RequestKind::DomainRegistration | RequestKind::DomainRenewal => {
                let dn = old
                    .domain
                    .clone()
                    .ok_or_else(|| CoreError::Illegal(format!("request {id} names no domain")))?;
                let mut d = self.domain(&dn)?;
                if d.open_request != Some(old.id) {
                    return Err(CoreError::Illegal(format!(
                        "{dn} no longer waits on request {id} (it is {})",
                        d.status.as_str()
                    )));
                }
                if old.kind == RequestKind::DomainRegistration {
                    let c = self.client(&d.client_id)?;
                    if c.status != ClientStatus::Registered {
                        return Err(CoreError::Illegal(format!(
                            "client {} is {:?}; retry its registration first",
                            c.id, c.status
                        )));
                    }
                }
                let new_id = self.queue_for_domain(&mut d, old.kind, old.years, Some(old.id));
                let msg =
                    format!("operator retry of request {id}: request queued again as {new_id}");
                self.put_domain(
                    d,
                    "domain.retry",
                    msg,
                    Evidence {
                        request_id: Some(new_id),
                        ..Evidence::default()
                    },
                );
            }
        }
        Ok(())
    }

    fn sent(
        &mut self,
        id: RequestId,
        detail: String,
        copy: Option<String>,
    ) -> Result<(), CoreError> {
        let mut r = self.request(id)?;
        let ev = Evidence {
            message_id: Some(r.message_id.clone()),
            server_reply: Some(detail),
            message_copy: copy,
            ..self.ev(&r)
        };
        if r.state != RequestState::Queued {
            // Withdrawn or answered while the worker was sending: the log must still show that
            // the e-mail went out.
            self.t.effects.push(Effect::Unsend(r.id));
            let msg = format!(
                "the e-mail went out while the request was already {}",
                r.state.as_str()
            );
            self.note_request(&r, "request.sent_late", msg, ev);
            return Ok(());
        }
        r.state = RequestState::Sent;
        r.attempts += 1;
        let deadline = self.now + self.policy.deadline(r.kind);
        r.reply_deadline = Some(deadline);
        self.t.effects.push(Effect::Unsend(r.id));
        self.t.effects.push(Effect::ArmDeadline(r.id, deadline));
        self.set_domain_phase(&r, Phase::RequestSent, "domain.request_sent")?;
        let msg = format!("handed to the mail server; reply expected by {deadline}");
        self.put_request(r, "request.sent", msg, ev);
        Ok(())
    }

    /// Sets the phase of the domain that waits on `r` (if any still does).
    fn set_domain_phase(
        &mut self,
        r: &Request,
        phase: Phase,
        action: &str,
    ) -> Result<(), CoreError> {
        let Some(dn) = &r.domain else { return Ok(()) };
        let mut d = self.domain(dn)?;
        if d.open_request != Some(r.id) || d.phase == phase {
            return Ok(());
        }
        if d.status == DomainStatus::Error && d.phase == Phase::NoReply {
            // A sign of life after the deadline: back to work.
            d.status = if r.kind == RequestKind::DomainRenewal {
                DomainStatus::Renewing
            } else {
                DomainStatus::Registering
            };
            d.last_error = None;
        }
        if !matches!(d.status, DomainStatus::Registering | DomainStatus::Renewing) {
            return Ok(());
        }
        d.phase = phase;
        let msg = match phase {
            Phase::RequestSent => "request e-mail handed to the mail server".to_owned(),
            Phase::SendUnknown => "the request e-mail may or may not have gone out".to_owned(),
            Phase::QueuedAtRegistrar => match &r.task_id {
                Some(t) => format!("queued at the registrar as task {t}"),
                None => "queued at the registrar".to_owned(),
            },
            other => format!("{other:?}"),
        };
        self.put_domain(
            d,
            action,
            msg,
            Evidence {
                request_id: Some(r.id),
                ..Evidence::default()
            },
        );
        Ok(())
    }

    /// Puts whoever waits on the failed request `r` in Error; a failed client takes its waiting
    /// domains with it (DESIGN.md §2).
    fn fail_owner(
        &mut self,
        r: &Request,
        phase: Phase,
        reason: &str,
        ev: Evidence,
    ) -> Result<(), CoreError> {
        match r.kind {
            RequestKind::ClientRegistration => {
                let mut c = self.client(&r.client_id)?;
                if c.open_request != Some(r.id) {
                    return Ok(());
                }
                c.status = ClientStatus::Error;
                c.last_error = Some(reason.to_owned());
                self.put_client(c, "client.error", reason.to_owned(), ev.clone());
                for mut d in self.domains_of_client(&r.client_id)? {
                    if d.status == DomainStatus::Registering && d.phase == Phase::WaitingForClient {
                        d.status = DomainStatus::Error;
                        d.phase = Phase::ClientFailed;
                        let why = format!("client {} failed: {reason}", r.client_id);
                        d.last_error = Some(why.clone());
                        self.put_domain(d, "domain.error", why, ev.clone());
                    }
                }
            }
            RequestKind::DomainRegistration | RequestKind::DomainRenewal => {
                let Some(dn) = &r.domain else { return Ok(()) };
                let mut d = self.domain(dn)?;
                if d.open_request != Some(r.id) {
                    return Ok(());
                }
                d.status = DomainStatus::Error;
                d.phase = phase;
                d.last_error = Some(reason.to_owned());
                self.put_domain(d, "domain.error", reason.to_owned(), ev);
            }
        }
        Ok(())
    }

    fn reply(
        &mut self,
        id: RequestId,
        outcome: ReplyOutcome,
        evidence: Evidence,
    ) -> Result<(), CoreError> {
        let mut r = self.request(id)?;
        if r.state == RequestState::Cancelled
            && let ReplyOutcome::Completed { handle, expires } = &outcome
            && let Some(newer) = self.open_retry_of(&r)?
        {
            // The registrar did what the superseded request asked after all: that is the
            // truth. The retry is withdrawn (if it went out too, the registrar's refusal of the
            // duplicate is then logged only) and the owner completes through the first request.
            let mut n = newer;
            if n.state == RequestState::Queued {
                self.t.effects.push(Effect::Unsend(n.id));
            }
            self.t.effects.push(Effect::DisarmDeadline(n.id));
            n.state = RequestState::Cancelled;
            n.reply_deadline = None;
            n.last_error = Some(format!(
                "request {} it retried was completed after all",
                r.id
            ));
            let msg = format!(
                "withdrawn: request {} it retried was completed after all",
                r.id
            );
            self.put_request(n, "request.superseded", msg, evidence.clone());
            self.point_owner_at(&r)?;
            r.state = RequestState::Completed;
            r.last_error = None;
            self.put_request(
                r.clone(),
                "request.completed",
                "the registrar completed the request (after it had been retried)".into(),
                evidence.clone(),
            );
            return self.complete_owner(&r, handle.clone(), *expires, evidence);
        }
        if r.state.is_settled() {
            if let Some(why) = self.contradiction(&r, &outcome)? {
                return self.raise_conflict(&r, why, evidence);
            }
            let msg = format!(
                "reply logged only: the request is already {}",
                r.state.as_str()
            );
            self.note_request(&r, "reply.ignored", msg, evidence);
            return Ok(());
        }
        let was_queued = r.state == RequestState::Queued;
        if was_queued {
            // The reply proves the e-mail went out (a crash between send and commit).
            self.t.effects.push(Effect::Unsend(r.id));
        }
        match outcome {
            ReplyOutcome::Acknowledged { task_id } => {
                if r.state == RequestState::Acknowledged {
                    let msg = "duplicate acknowledgement logged only".to_owned();
                    self.note_request(&r, "reply.duplicate", msg, evidence);
                    return Ok(());
                }
                r.state = RequestState::Acknowledged;
                if task_id.is_some() {
                    r.task_id = task_id.clone();
                }
                let deadline = self.now + self.policy.deadline(r.kind);
                r.reply_deadline = Some(deadline);
                r.last_error = None;
                self.t.effects.push(Effect::ArmDeadline(r.id, deadline));
                let msg = match &task_id {
                    Some(t) => format!("queued at the registrar as task {t}"),
                    None => "queued at the registrar".into(),
                };
                let ev = Evidence {
                    task_id,
                    ..evidence
                };
                self.put_request(r.clone(), "request.acknowledged", msg, ev);
                self.set_domain_phase(&r, Phase::QueuedAtRegistrar, "domain.queued_at_registrar")?;
                self.revive_client_after_late_ack(&r)?;
            }
            ReplyOutcome::Completed { handle, expires } => {
                r.state = RequestState::Completed;
                r.reply_deadline = None;
                r.last_error = None;
                self.t.effects.push(Effect::DisarmDeadline(r.id));
                self.put_request(
                    r.clone(),
                    "request.completed",
                    "the registrar completed the request".into(),
                    evidence.clone(),
                );
                self.complete_owner(&r, handle, expires, evidence)?;
            }
            ReplyOutcome::Rejected { reason } => {
                r.state = RequestState::Rejected;
                r.reply_deadline = None;
                r.last_error = Some(reason.clone());
                self.t.effects.push(Effect::DisarmDeadline(r.id));
                let ev = Evidence {
                    error: Some(reason.clone()),
                    ..evidence
                };
                let msg = format!("the registrar refused the request: {reason}");
                self.put_request(r.clone(), "request.rejected", msg, ev.clone());
                self.fail_owner(
                    &r,
                    Phase::RegistrarRejected,
                    &format!("registrar: {reason}"),
                    ev,
                )?;
            }
        }
        Ok(())
    }

    /// How a reply contradicts the outcome already applied to a settled request, if it does: a
    /// rejection after a completion, a completion after a rejection, or a completion with
    /// another expiry date than the domain has (issue 9 part A, item 3). A late
    /// acknowledgement, or a repeat of the same outcome, contradicts nothing.
    fn contradiction(
        &mut self,
        r: &Request,
        outcome: &ReplyOutcome,
    ) -> Result<Option<String>, CoreError> {
        Ok(match (r.state, outcome) {
            (RequestState::Completed, ReplyOutcome::Rejected { reason }) => Some(format!(
                "the registrar now refuses request {} that it completed before: {reason}",
                r.id
            )),
            (RequestState::Rejected, ReplyOutcome::Completed { .. }) => Some(format!(
                "the registrar now reports request {} completed after refusing it ({})",
                r.id,
                r.last_error.as_deref().unwrap_or("no reason kept")
            )),
            (
                RequestState::Completed,
                ReplyOutcome::Completed {
                    expires: Some(e), ..
                },
            ) => match &r.domain {
                Some(dn) => {
                    let d = self.domain(dn)?;
                    match d.expires {
                        Some(have) if have != *e => Some(format!(
                            "the registrar now reports expiry {e} for {dn}, but {have} was applied (request {})",
                            r.id
                        )),
                        _ => None,
                    }
                }
                None => None,
            },
            _ => None,
        })
    }

    /// Puts the request's domain in the visible [`Phase::Conflict`] with the reason (its
    /// status stays: nothing is undone until an operator resolves it); a client request's
    /// conflict is logged on the request as `reply.conflict`. Never a silent `reply.ignored`.
    /// The operators hear of it through the notice `operator.domain_conflict`
    /// (`core::notice::domain_notice`, written in the same transaction).
    fn raise_conflict(
        &mut self,
        r: &Request,
        why: String,
        evidence: Evidence,
    ) -> Result<(), CoreError> {
        self.note_request(r, "reply.conflict", why.clone(), evidence.clone());
        if let Some(dn) = &r.domain {
            let mut d = self.domain(dn)?;
            // Only a domain that still stands on a settled outcome (Registered or Error) is put
            // in conflict; one that moved on (a new order after a cancellation, a renewal under
            // way) keeps its phase, and the request's `reply.conflict` line says what came.
            if !matches!(d.status, DomainStatus::Registered | DomainStatus::Error) {
                return Ok(());
            }
            d.phase = Phase::Conflict;
            d.last_error = Some(format!("conflict: {why}"));
            let ev = Evidence {
                request_id: Some(r.id),
                ..evidence
            };
            self.put_domain(d, "domain.conflict", format!("conflict: {why}"), ev);
        }
        Ok(())
    }

    /// Sends a SendUnknown request again as the same message: same request, same Message-ID
    /// (DESIGN.md inv. 3), so a mail system or registrar that saw the first copy can tell.
    fn requeue_same_message(&mut self, mut r: Request) -> Result<(), CoreError> {
        r.state = RequestState::Queued;
        r.reply_deadline = None;
        self.t.effects.push(Effect::DisarmDeadline(r.id));
        self.t.effects.push(Effect::Send(r.id));
        let msg = format!(
            "queued again by an operator: the same e-mail, Message-ID {}",
            r.message_id
        );
        let ev = Evidence {
            message_id: Some(r.message_id.clone()),
            ..Evidence::default()
        };
        self.put_request(r.clone(), "request.requeued", msg, ev);
        if let Some(dn) = &r.domain {
            let mut d = self.domain(dn)?;
            if d.open_request == Some(r.id)
                && matches!(d.status, DomainStatus::Registering | DomainStatus::Renewing)
            {
                d.phase = Phase::RequestQueued;
                let ev = Evidence {
                    request_id: Some(r.id),
                    ..Evidence::default()
                };
                self.put_domain(
                    d,
                    "domain.request_queued",
                    "request queued again (same e-mail)".into(),
                    ev,
                );
            }
        }
        Ok(())
    }

    /// A client put in Error by silence gets back to Registering when the registrar answers
    /// after all, and takes its waiting domains with it (as a domain does in
    /// `set_domain_phase`).
    fn revive_client_after_late_ack(&mut self, r: &Request) -> Result<(), CoreError> {
        if r.kind != RequestKind::ClientRegistration {
            return Ok(());
        }
        let mut c = self.client(&r.client_id)?;
        if c.open_request != Some(r.id) || c.status != ClientStatus::Error {
            return Ok(());
        }
        c.status = ClientStatus::Registering;
        c.last_error = None;
        let ev = Evidence {
            request_id: Some(r.id),
            ..Evidence::default()
        };
        self.put_client(
            c,
            "client.registering",
            "the registrar answered after all".into(),
            ev,
        );
        self.domains_wait_for_client_again(&r.client_id)
    }

    /// The paid domains that failed because their client did go back to waiting for it (the
    /// client is being registered again: an operator retry, or a late answer).
    fn domains_wait_for_client_again(&mut self, client: &ClientId) -> Result<(), CoreError> {
        for mut d in self.domains_of_client(client)? {
            if d.status == DomainStatus::Error && d.phase == Phase::ClientFailed && d.paid {
                d.status = DomainStatus::Registering;
                d.phase = Phase::WaitingForClient;
                d.last_error = None;
                let msg = describe(&d);
                self.put_domain(d, "domain.waiting_for_client", msg, Evidence::default());
            }
        }
        Ok(())
    }

    /// The owner's open request when it is an unsettled retry of `r`.
    fn open_retry_of(&self, r: &Request) -> Result<Option<Request>, CoreError> {
        let open = match r.kind {
            RequestKind::ClientRegistration => self.client(&r.client_id)?.open_request,
            _ => match &r.domain {
                Some(d) => self.domain(d)?.open_request,
                None => None,
            },
        };
        let Some(id) = open else { return Ok(None) };
        let n = self.request(id)?;
        Ok((n.retry_of == Some(r.id) && !n.state.is_settled()).then_some(n))
    }

    /// Makes `r` the owner's open request again (the change is logged by the caller's put).
    fn point_owner_at(&mut self, r: &Request) -> Result<(), CoreError> {
        match r.kind {
            RequestKind::ClientRegistration => {
                let mut c = self.client(&r.client_id)?;
                c.open_request = Some(r.id);
                self.clients.insert(c.id.clone(), c);
            }
            _ => {
                if let Some(dn) = &r.domain {
                    let mut d = self.domain(dn)?;
                    d.open_request = Some(r.id);
                    self.domains.insert(d.name.clone(), d);
                }
            }
        }
        Ok(())
    }

    fn complete_owner(
        &mut self,
        r: &Request,
        handle: Option<Handle>,
        expires: Option<Date>,
        ev: Evidence,
    ) -> Result<(), CoreError> {
        match r.kind {
            RequestKind::ClientRegistration => {
                let mut c = self.client(&r.client_id)?;
                if c.open_request != Some(r.id) || c.status == ClientStatus::Registered {
                    let msg = format!(
                        "client {} no longer waits on this request; completion logged only",
                        c.id
                    );
                    self.note_request(r, "reply.late", msg, ev);
                    return Ok(());
                }
                let Some(h) = handle.or_else(|| r.handle.clone()) else {
                    c.status = ClientStatus::Error;
                    c.last_error =
                        Some("the registrar confirmed the client but no handle is known".into());
                    self.put_client(
                        c,
                        "client.error",
                        "registered without a known handle".into(),
                        ev,
                    );
                    return Ok(());
                };
                c.status = ClientStatus::Registered;
                c.handle = Some(h.clone());
                c.last_error = None;
                // Nothing in flight any more (as a registered domain has none).
                c.open_request = None;
                self.put_client(
                    c,
                    "client.registered",
                    format!("registered at the registrar as {h}"),
                    Evidence {
                        request_id: Some(r.id),
                        ..ev
                    },
                );
                // Release the domains that waited for this client.
                for mut d in self.domains_of_client(&r.client_id)? {
                    let waiting = d.paid
                        && ((d.status == DomainStatus::Registering
                            && d.phase == Phase::WaitingForClient)
                            || (d.status == DomainStatus::Error && d.phase == Phase::ClientFailed));
                    if waiting {
                        let years = Some(d.years);
                        let id = self.queue_for_domain(
                            &mut d,
                            RequestKind::DomainRegistration,
                            years,
                            None,
                        );
                        let msg = format!("client {h} registered; domain request queued");
                        self.put_domain(
                            d,
                            "domain.request_queued",
                            msg,
                            Evidence {
                                request_id: Some(id),
                                ..Evidence::default()
                            },
                        );
                    }
                }
            }
            RequestKind::DomainRegistration | RequestKind::DomainRenewal => {
                let Some(dn) = &r.domain else { return Ok(()) };
                let mut d = self.domain(dn)?;
                if d.open_request != Some(r.id) {
                    let msg =
                        format!("{dn} no longer waits on this request; completion logged only");
                    self.note_request(r, "reply.late", msg, ev);
                    return Ok(());
                }
                let years = r.years.unwrap_or(d.years);
                let fallback = match (r.kind, d.expires) {
                    (RequestKind::DomainRenewal, Some(old)) => add_years(old, years),
                    _ => add_years(today(self.now), years),
                };
                d.expires = expires.or(fallback);
                d.status = DomainStatus::Registered;
                d.grace_ends = None;
                d.phase = Phase::Done;
                d.open_request = None;
                d.last_error = None;
                let until = d
                    .expires
                    .map_or_else(|| "unknown".to_owned(), |e| e.to_string());
                let (action, msg) = if r.kind == RequestKind::DomainRenewal {
                    ("domain.renewed", format!("renewed; expires {until}"))
                } else {
                    ("domain.registered", format!("registered; expires {until}"))
                };
                self.put_domain(d, action, msg, ev);
            }
        }
        Ok(())
    }
}
