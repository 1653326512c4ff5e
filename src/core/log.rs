//! Action-log entries: what happened, to what, by whom, and on what evidence (DESIGN.md inv. 4).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::ids::{ClientId, DomainName, RequestId};

/// Who caused a log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// A control panel through the API.
    Api,
    /// An operator (CLI or API operator endpoints).
    Operator,
    /// A registrar reply.
    Registrar,
    /// The outbox worker (mail server answers).
    Outbox,
    /// The scheduler (deadlines, auto-renewal).
    Scheduler,
    /// The mail intake (messages that were ignored, quarantined or left unmatched).
    Intake,
}

impl Actor {
    /// The name shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Api => "api",
            Actor::Operator => "operator",
            Actor::Registrar => "registrar",
            Actor::Outbox => "outbox",
            Actor::Scheduler => "scheduler",
            Actor::Intake => "intake",
        }
    }
}

/// Why we believe what we logged. Every field is optional; each names its source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The request concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The e-mail's Message-ID (ours when sending, the registrar's when receiving).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The reply rule that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How the reply was tied to the request (message-id, subject-token, task-id, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    /// The registrar's task id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// An error text, in the words of whoever produced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A mail server's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_reply: Option<String>,
    /// An operator's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The exact request e-mail as sent: headers and decoded body, the password masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_copy: Option<String>,
    /// How a reply was authenticated (issue 9 part A): the evidence that passed, e.g.
    /// `regmail: dkim=pass header.d=r01.ru s=mail (pinned key)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

/// A log entry as the core writes it; the store adds the sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDraft {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: Actor,
    /// A stable code, e.g. `domain.ordered`, `request.sent`.
    pub action: String,
    /// What happened, in a sentence for the operator.
    pub message: String,
    /// The domain concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainName>,
    /// The client concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientId>,
    /// The request concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestId>,
    /// Status before (for a status change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_before: Option<String>,
    /// Status after (for a status change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_after: Option<String>,
    /// Evidence.
    #[serde(default)]
    pub evidence: Evidence,
}

/// A stored log entry: a draft with its place in the global sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the global log, from 1, without gaps.
    pub seq: u64,
    /// The entry.
    #[serde(flatten)]
    pub entry: LogDraft,
    /// Who exactly, when an operator acted on the web page: `operator:<name>` (issue 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}
