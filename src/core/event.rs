//! What can happen to the system: the inputs of [`super::apply`].

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::ids::{ClientId, DomainName, Handle, Nameserver, RequestId};
use super::log::{Actor, Evidence};
use super::model::{Contact, Registrant};

/// A new client from the panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewClient {
    /// The panel's id.
    pub id: ClientId,
    /// Registry data.
    pub registrant: Registrant,
    /// Notice contact.
    pub contact: Contact,
    /// Set to import a client the registrar already knows: it starts Registered with this handle.
    pub existing_handle: Option<Handle>,
}

/// A domain order from the panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainOrder {
    /// The name.
    pub name: DomainName,
    /// Its holder, who must exist.
    pub client_id: ClientId,
    /// Years, 1..=10.
    pub years: u8,
    /// Name servers.
    pub nameservers: Vec<Nameserver>,
    /// The panel's order id.
    pub order_id: String,
    /// Description lines.
    pub description: Vec<String>,
    /// Paid already.
    pub paid: bool,
    /// Renew automatically.
    pub auto_renew: bool,
}

/// How an operator settles a domain by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// It is registered (the operator checked at the registrar); expiry if known.
    Registered {
        /// Expiry date; default: today + years for a registration, old expiry + years for a renewal.
        expires: Option<Date>,
    },
    /// It failed.
    Error,
}

/// What a registrar reply means for the request it answers (after rules and correlation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyOutcome {
    /// Queued at the registrar as a task.
    Acknowledged {
        /// The registrar's task id, if the reply carries one.
        task_id: Option<String>,
    },
    /// Done.
    Completed {
        /// The client handle the registrar confirms (client registrations).
        handle: Option<Handle>,
        /// The new expiry date (registrations and renewals).
        expires: Option<Date>,
    },
    /// Refused.
    Rejected {
        /// The registrar's reason, in its words.
        reason: String,
    },
}

/// What a registrar notice says about a domain (a reply rule's `expired` or `deleted` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrarNotice {
    /// The registration ended: the registrar parked the name.
    Expired,
    /// The registrar deleted the name.
    Deleted,
}

/// An input to the core. Each variant names its source in [`Event::actor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Panel: create (or import) a client.
    CreateClient(NewClient),
    /// Panel or operator: correct a client's data while it is Unregistered or in Error.
    UpdateClient {
        /// Which client.
        id: ClientId,
        /// New registry data.
        registrant: Registrant,
        /// New notice contact.
        contact: Contact,
    },
    /// Panel: order a domain.
    OrderDomain(DomainOrder),
    /// Panel: the order was paid.
    MarkPaid {
        /// Which domain.
        domain: DomainName,
    },
    /// Panel or scheduler: renew for `years`.
    Renew {
        /// Which domain.
        domain: DomainName,
        /// Years, 1..=10.
        years: u8,
        /// Who asked (panel or the auto-renew scheduler).
        actor: Actor,
    },
    /// Panel or operator: withdraw an order that has not reached the registrar.
    Cancel {
        /// Which domain.
        domain: DomainName,
        /// Why.
        note: Option<String>,
    },
    /// Operator: settle a domain by hand without mailing the registrar.
    Resolve {
        /// Which domain.
        domain: DomainName,
        /// Registered or Error.
        outcome: Resolution,
        /// The operator's note (required: the log must say why).
        note: String,
    },
    /// Operator: send a failed, refused or unanswered request again (as a new request).
    Retry {
        /// Which request.
        request: RequestId,
    },
    /// Outbox: the mail server accepted the message.
    Sent {
        /// Which request.
        request: RequestId,
        /// The server's reply, e.g. `250 2.0.0 Ok: queued as 4XyZ`.
        detail: String,
        /// The message as sent (headers and decoded body, password masked), for the log.
        copy: Option<String>,
    },
    /// Outbox: the link broke after the data was sent.
    SendUnknown {
        /// Which request.
        request: RequestId,
        /// What broke.
        detail: String,
        /// The message as sent, password masked.
        copy: Option<String>,
    },
    /// Outbox: the mail server refused the message permanently (5xx).
    SendFailed {
        /// Which request.
        request: RequestId,
        /// The server's reply.
        reason: String,
        /// The message as attempted, password masked.
        copy: Option<String>,
    },
    /// Outbox: a transient failure (server down, 4xx, a template problem); the request stays
    /// queued and is tried again at `retry_at`. Logged only.
    SendDeferred {
        /// Which request.
        request: RequestId,
        /// What failed.
        reason: String,
        /// How many attempts failed so far.
        attempt: u32,
        /// When the next attempt is due.
        retry_at: jiff::Timestamp,
    },
    /// Intake: a registrar reply, matched and correlated.
    Reply {
        /// Which request it answers.
        request: RequestId,
        /// What it says.
        outcome: ReplyOutcome,
        /// Which message, which rule, which signal.
        evidence: Evidence,
    },
    /// Operator: record a registrar answer learned by other means (the registrar's web panel,
    /// a phone call) as if the reply had arrived; the note says where it came from.
    RecordOutcome {
        /// Which request it answers.
        request: RequestId,
        /// What the registrar said.
        outcome: ReplyOutcome,
        /// The operator's note.
        note: String,
    },
    /// Scheduler: the reply deadline passed.
    DeadlinePassed {
        /// Which request.
        request: RequestId,
    },
    /// Scheduler: a reminder of the domain's expiry series is due (DESIGN.md §9).
    ReminderDue {
        /// Which domain.
        domain: DomainName,
        /// The expiry date of the series.
        expires: Date,
        /// Days before expiry.
        offset: u16,
    },
    /// Scheduler: the domain's expiry date passed.
    ExpiryReached {
        /// Which domain.
        domain: DomainName,
    },
    /// Scheduler: the domain's grace ended.
    GraceEnded {
        /// Which domain.
        domain: DomainName,
    },
    /// Intake: a registrar notice about a domain (a reply rule's `expired` or `deleted`).
    Registrar {
        /// Which domain.
        domain: DomainName,
        /// What it says.
        notice: RegistrarNotice,
        /// Which message, which rule.
        evidence: Evidence,
    },
}

impl Event {
    /// Who causes this event, for the action log.
    pub fn actor(&self) -> Actor {
        match self {
            Event::CreateClient(_)
            | Event::UpdateClient { .. }
            | Event::OrderDomain(_)
            | Event::MarkPaid { .. }
            | Event::Cancel { .. } => Actor::Api,
            Event::Renew { actor, .. } => *actor,
            Event::Resolve { .. } | Event::Retry { .. } | Event::RecordOutcome { .. } => {
                Actor::Operator
            }
            Event::Sent { .. }
            | Event::SendUnknown { .. }
            | Event::SendFailed { .. }
            | Event::SendDeferred { .. } => Actor::Outbox,
            Event::Reply { .. } | Event::Registrar { .. } => Actor::Registrar,
            Event::DeadlinePassed { .. }
            | Event::ReminderDue { .. }
            | Event::ExpiryReached { .. }
            | Event::GraceEnded { .. } => Actor::Scheduler,
        }
    }
}
