//! What the notice engine stores: account users with roles and subscriptions, notices, their
//! deliveries (one per recipient and channel) with every attempt, and webhook endpoints.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::catalogue::Category;

/// A user's role in a client account (Selectel's three, research §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Exactly one per client; hears every category; can never be unsubscribed.
    Owner,
    /// User administrator: may subscribe and unsubscribe any user of the account.
    Admin,
    /// May be subscribed only to `documents` and `balance`.
    Subscriber,
}

impl Role {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Subscriber => "subscriber",
        }
    }
    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Owner, Role::Admin, Role::Subscriber]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
    /// Whether a user with this role may hear `category` at all.
    pub fn allows(self, category: Category) -> bool {
        match self {
            Role::Owner | Role::Admin => true,
            Role::Subscriber => matches!(category, Category::Documents | Category::Balance),
        }
    }
}

/// A delivery channel a user can be subscribed on. Webhooks are per endpoint, not per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// E-mail through the configured transport.
    Email,
    /// A signed HTTP POST to a webhook endpoint.
    Webhook,
}

impl Channel {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
    /// Channels a user may subscribe on (the messenger and SMS issues add theirs).
    pub const USER: [Channel; 1] = [Channel::Email];
}

/// Language of a user's notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Russian.
    Ru,
    /// English.
    En,
}

impl Language {
    /// The API name (and the template directory).
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Ru => "ru",
            Language::En => "en",
        }
    }
    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Language> {
        match s {
            "ru" => Some(Language::Ru),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

/// Category -> channels a user hears it on.
pub type Subscriptions = BTreeMap<Category, BTreeSet<Channel>>;

/// A user of a client account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The client (account) id.
    pub client: String,
    /// The user's id, chosen by the panel.
    pub id: String,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Phone (for the SMS channel to come).
    #[serde(default)]
    pub phone: Option<String>,
    /// Language of the notices.
    pub language: Language,
    /// Role.
    pub role: Role,
    /// What the user hears (the owner's is ignored: the owner hears everything).
    #[serde(default)]
    pub subscriptions: Subscriptions,
    /// Who last changed the subscriptions, and when.
    #[serde(default)]
    pub subscriptions_set_by: Option<String>,
    /// When created.
    pub created: Timestamp,
    /// When last changed.
    pub updated: Timestamp,
}

impl User {
    /// What the user hears in effect: the owner every category on every user channel.
    pub fn effective(&self) -> Subscriptions {
        if self.role == Role::Owner {
            Category::ALL
                .into_iter()
                .map(|c| (c, Channel::USER.into_iter().collect()))
                .collect()
        } else {
            self.subscriptions
                .iter()
                .filter(|(c, chs)| self.role.allows(**c) && !chs.is_empty())
                .map(|(c, chs)| (*c, chs.clone()))
                .collect()
        }
    }
}

/// A hosting-company operator (`[notices] operators`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// E-mail address.
    pub email: String,
    /// Language.
    pub language: Language,
}

/// A notice: one thing someone should hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Sequence number: also the webhook-id and the pull feed's cursor.
    pub id: u64,
    /// Type name.
    pub kind: String,
    /// Its category.
    pub category: Category,
    /// Mandatory (ignores opt-outs).
    pub mandatory: bool,
    /// The client it concerns.
    pub client: Option<String>,
    /// The domain it concerns (ASCII form).
    pub domain: Option<String>,
    /// Template data.
    pub data: BTreeMap<String, String>,
    /// `core` (a state change) or `panel` (`POST /v1/notices`).
    pub source: String,
    /// When created.
    pub created: Timestamp,
    /// Its deliveries.
    pub deliveries: Vec<u64>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Queued,
    /// Accepted by the receiver.
    Sent,
    /// Given up (permanent refusal, or the retry schedule ran out).
    Failed,
    /// Its endpoint is disabled: kept, replayable once it is enabled again.
    Held,
    /// The e-mail bounced after it was sent.
    Bounced,
}

impl DeliveryState {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "Queued",
            DeliveryState::Sent => "Sent",
            DeliveryState::Failed => "Failed",
            DeliveryState::Held => "Held",
            DeliveryState::Bounced => "Bounced",
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started.
    pub at: Timestamp,
    /// HTTP status (webhooks), if an answer came.
    pub status: Option<u16>,
    /// How long it took, ms.
    pub latency_ms: u64,
    /// The first bytes of the answer, or the error.
    pub answer: String,
    /// Success.
    pub ok: bool,
}

/// One delivery: a notice to one recipient on one channel, at least once, with a stable id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id.
    pub id: u64,
    /// The notice.
    pub notice: u64,
    /// The channel.
    pub channel: Channel,
    /// Recipient: `user:<client>/<user>`, `operator:<email>` or `endpoint:<id>`.
    pub recipient: String,
    /// The address (e-mail) or URL (webhook).
    pub address: String,
    /// Language of the text.
    pub language: Language,
    /// The category the user can opt out of (None: mandatory or not opt-out-able).
    pub unsubscribe: Option<Category>,
    /// State.
    pub state: DeliveryState,
    /// Every attempt.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due (Queued only).
    pub next_at: Option<Timestamp>,
    /// Set on a bounce of the e-mail.
    #[serde(default)]
    pub bounce: Option<String>,
    /// When created.
    pub created: Timestamp,
}

/// A webhook endpoint of the panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its id (`ep_` + 16 hex).
    pub id: String,
    /// The URL (http or https).
    pub url: String,
    /// Event-type filters (`domain.*`, `*`, exact names).
    pub events: Vec<String>,
    /// Signing secrets, newest first (`whsec_` + base64). Two during a rotation.
    pub secrets: Vec<String>,
    /// When the old secret stops being used for signing.
    #[serde(default)]
    pub rotate_until: Option<Timestamp>,
    /// Enabled.
    pub enabled: bool,
    /// Why it was disabled (410, 5 days of failure, an operator).
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// The first failure since the last success (for the 5-day rule).
    #[serde(default)]
    pub failing_since: Option<Timestamp>,
    /// When created.
    pub created: Timestamp,
}

impl Endpoint {
    /// Whether the endpoint takes notices of type `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.events
            .iter()
            .any(|f| super::catalogue::filter_matches(f, kind))
    }
}
