//! The entities the core moves through their states: clients, domains and requests.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::ids::{ClientId, DomainName, Handle, Nameserver, RequestId};

/// A natural person as R01's `#[PERSON TEMPLATE]#` needs it (r01-email-interface.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Full name in Russian (`fiorus`).
    pub fio_ru: String,
    /// Full name in Latin letters (`fioeng`).
    pub fio_en: String,
    /// Passport: series and number, issued by, date; one line each (multi-line `passport`).
    pub passport: Vec<String>,
    /// Date of birth (`birth_date`, sent as DD.MM.YYYY).
    pub birth_date: Date,
    /// Postal address lines (`postal_addr`).
    pub postal_addr: Vec<String>,
    /// Phone, international form (`+7 495 1234567`).
    pub phone: String,
    /// Fax, optional.
    pub fax: Option<String>,
    /// E-mail shown to the registry (`e_mail`).
    pub email: String,
    /// Hide the person's data in whois (`isprotected`).
    pub is_protected: bool,
    /// Russian resident (`isresident`).
    pub is_resident: bool,
    /// Taxpayer number, optional for persons.
    pub inn: Option<String>,
}

/// A legal entity as R01's `#[ORGANIZATION TEMPLATE]#` needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Name in Russian (`orgname_ru`).
    pub org_name_ru: String,
    /// Name in Latin letters (`orgname_en`).
    pub org_name_en: String,
    /// Taxpayer number (`inn`).
    pub inn: String,
    /// Tax registration reason code (`kpp`).
    pub kpp: Option<String>,
    /// State registration number (`ogrn`).
    pub ogrn: Option<String>,
    /// Legal address lines (`legal_addr`).
    pub legal_addr: Vec<String>,
    /// Postal address lines (`postal_addr`).
    pub postal_addr: Vec<String>,
    /// Phone, international form.
    pub phone: String,
    /// Fax, optional.
    pub fax: Option<String>,
    /// E-mail shown to the registry.
    pub email: String,
    /// Director's full name.
    pub director_name: Option<String>,
    /// Bank name.
    pub bank: Option<String>,
    /// Settlement account (`ras_schet`).
    pub ras_schet: Option<String>,
    /// Correspondent account (`kor_schet`).
    pub kor_schet: Option<String>,
    /// Bank identification code (`bik`).
    pub bik: Option<String>,
    /// Russian resident (`isresident`).
    pub is_resident: bool,
}

/// Who holds the domains: a person or an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Registrant {
    /// A natural person.
    Person(Person),
    /// A legal entity.
    Organization(Organization),
}

/// Whom the hosting company notifies about this client (not sent to the registrar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Display name.
    pub name: String,
    /// E-mail for notices.
    pub email: String,
    /// Phone for notices.
    pub phone: Option<String>,
}

/// Where a client stands at the registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientStatus {
    /// Known to us only; nothing sent yet.
    Unregistered,
    /// A client request is on its way or awaiting the registrar.
    Registering,
    /// The registrar knows it under `handle`.
    Registered,
    /// The registrar refused it, or it never answered; the log says why.
    Error,
}

/// A customer of the hosting company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// The panel's id.
    pub id: ClientId,
    /// Registry data.
    pub registrant: Registrant,
    /// Notice contact.
    pub contact: Contact,
    /// Status at the registrar.
    pub status: ClientStatus,
    /// Registrar handle once Registered (or imported).
    pub handle: Option<Handle>,
    /// The client request in flight or last failed.
    pub open_request: Option<RequestId>,
    /// Why it is in Error.
    pub last_error: Option<String>,
    /// When it was created.
    pub created: Timestamp,
    /// When it last changed.
    pub updated: Timestamp,
}

/// A domain's status as a panel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DomainStatus {
    /// Ordered but not paid: nothing is sent.
    AwaitingPayment,
    /// Paid; the client and/or domain request is under way.
    Registering,
    /// Registered at the registrar; `expires` is set.
    Registered,
    /// A renewal request is under way.
    Renewing,
    /// Refused, failed or unanswered; the log says why; an operator can retry or resolve.
    Error,
    /// Cancelled before it reached the registrar; the name may be ordered again.
    Cancelled,
    /// The expiry date passed without a renewal: the registrar parked the name (phase
    /// `Parked`) and it can still be renewed until `grace_ends` (DESIGN.md §9).
    Expired,
    /// Grace ended without a renewal (or the registrar said so): the name is gone and may be
    /// ordered again as a new order (DESIGN.md §9).
    Deleted,
}

impl DomainStatus {
    /// Every status, for listings and metrics.
    pub const ALL: [DomainStatus; 8] = [
        DomainStatus::AwaitingPayment,
        DomainStatus::Registering,
        DomainStatus::Registered,
        DomainStatus::Renewing,
        DomainStatus::Error,
        DomainStatus::Cancelled,
        DomainStatus::Expired,
        DomainStatus::Deleted,
    ];
    /// The name used in the API and the store index.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainStatus::AwaitingPayment => "AwaitingPayment",
            DomainStatus::Registering => "Registering",
            DomainStatus::Registered => "Registered",
            DomainStatus::Renewing => "Renewing",
            DomainStatus::Error => "Error",
            DomainStatus::Cancelled => "Cancelled",
            DomainStatus::Expired => "Expired",
            DomainStatus::Deleted => "Deleted",
        }
    }
    /// Parses the API name, case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value))
    }
}

/// The finer step within a domain's status, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for the panel to mark the order paid.
    WaitingForPayment,
    /// Waiting for the client to be registered first.
    WaitingForClient,
    /// The request is in the outbox.
    RequestQueued,
    /// The request was handed to the mail server; waiting for the registrar.
    RequestSent,
    /// The mail link broke after the data was sent: it may or may not have gone.
    SendUnknown,
    /// The registrar queued it as a task.
    QueuedAtRegistrar,
    /// Nothing pending.
    Done,
    /// The registrar refused the request.
    RegistrarRejected,
    /// The mail server refused the request permanently.
    SendFailed,
    /// The client's registration failed, so this domain cannot proceed.
    ClientFailed,
    /// No reply within the deadline.
    NoReply,
    /// Settled by an operator.
    SettledByOperator,
    /// Cancelled.
    Cancelled,
    /// An authenticated registrar reply contradicts the outcome already applied (a rejection
    /// after a completion, another expiry date): an operator must look (`last_error` says
    /// what) and settle it with `resolve` (issue 9 part A, item 3).
    Conflict,
    /// Expired and parked by the registrar: the site has stopped; renewable until the
    /// domain's `grace_ends` (DESIGN.md §9).
    Parked,
    /// Deleted at the registrar after grace (or on its notice).
    Deleted,
}

/// What a request asks of the registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestKind {
    /// Create a person or organization (action NEW).
    ClientRegistration,
    /// Register a domain (action NEW).
    DomainRegistration,
    /// Renew a domain (action PROLONG).
    DomainRenewal,
}

impl RequestKind {
    /// The name used in the API, rules files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::ClientRegistration => "client-registration",
            RequestKind::DomainRegistration => "domain-registration",
            RequestKind::DomainRenewal => "domain-renewal",
        }
    }
}

/// Where one request e-mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestState {
    /// In the outbox, to be sent.
    Queued,
    /// Accepted by the mail server.
    Sent,
    /// The link broke before the reply to DATA: it may or may not have gone (DESIGN.md inv. 3).
    SendUnknown,
    /// The registrar queued it as a task.
    Acknowledged,
    /// The registrar did it (or an operator settled it as done).
    Completed,
    /// The registrar or the mail server refused it (or an operator settled it as failed).
    Rejected,
    /// No reply within the deadline.
    TimedOut,
    /// Withdrawn before it was sent.
    Cancelled,
}

impl RequestState {
    /// Every state, for listings and metrics.
    pub const ALL: [RequestState; 8] = [
        RequestState::Queued,
        RequestState::Sent,
        RequestState::SendUnknown,
        RequestState::Acknowledged,
        RequestState::Completed,
        RequestState::Rejected,
        RequestState::TimedOut,
        RequestState::Cancelled,
    ];
    /// The name used in the API and the store index.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Queued => "Queued",
            RequestState::Sent => "Sent",
            RequestState::SendUnknown => "SendUnknown",
            RequestState::Acknowledged => "Acknowledged",
            RequestState::Completed => "Completed",
            RequestState::Rejected => "Rejected",
            RequestState::TimedOut => "TimedOut",
            RequestState::Cancelled => "Cancelled",
        }
    }
    /// True once nothing more is expected from the registrar for this request.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            RequestState::Completed | RequestState::Rejected | RequestState::Cancelled
        )
    }
}

/// A domain order and its life at the registrar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The name (punycode).
    pub name: DomainName,
    /// Its holder.
    pub client_id: ClientId,
    /// Years ordered for the registration.
    pub years: u8,
    /// Name servers (empty: registered without delegation).
    pub nameservers: Vec<Nameserver>,
    /// The panel's order id.
    pub order_id: String,
    /// Description lines (`descr`).
    pub description: Vec<String>,
    /// Paid: only a paid order is sent to the registrar.
    pub paid: bool,
    /// Renew automatically before expiry.
    pub auto_renew: bool,
    /// Expiry date at the registrar, once Registered.
    pub expires: Option<Date>,
    /// While Expired: the last day a renewal is still accepted (DESIGN.md §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ends: Option<Date>,
    /// Once Deleted: the day it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_on: Option<Date>,
    /// Status as the panel sees it.
    pub status: DomainStatus,
    /// The finer step.
    pub phase: Phase,
    /// The request in flight or last failed.
    pub open_request: Option<RequestId>,
    /// Why it is in Error.
    pub last_error: Option<String>,
    /// When it was ordered.
    pub created: Timestamp,
    /// When it last changed.
    pub updated: Timestamp,
}

/// One request e-mail to the registrar and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Its id; also the Subject token.
    pub id: RequestId,
    /// What it asks.
    pub kind: RequestKind,
    /// The client it is for (a domain request's holder).
    pub client_id: ClientId,
    /// The domain, for domain requests.
    pub domain: Option<DomainName>,
    /// Years, for registrations and renewals.
    pub years: Option<u8>,
    /// The handle this request creates (client registrations; we choose handles at R01).
    pub handle: Option<Handle>,
    /// Where it stands.
    pub state: RequestState,
    /// Message-ID, fixed when queued so every resend is the same message (DESIGN.md inv. 3).
    pub message_id: String,
    /// How many times it was handed to the mail server.
    pub attempts: u32,
    /// The registrar's task id, learned from its acknowledgement.
    pub task_id: Option<String>,
    /// The last failure, in the words of whoever failed it.
    pub last_error: Option<String>,
    /// When silence turns it into TimedOut.
    pub reply_deadline: Option<Timestamp>,
    /// The request this one retries.
    pub retry_of: Option<RequestId>,
    /// When it was queued.
    pub created: Timestamp,
    /// When it last changed.
    pub updated: Timestamp,
}
