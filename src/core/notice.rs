//! Notices the core asks for (DESIGN.md §10): a state change that has a notice type returns an
//! [`Effect::Notify`](super::Effect::Notify) with a [`NoticeDraft`], and the store writes the
//! notice (and its fan-out) in the same transaction as the change. The core knows only the
//! type's name and its data; categories, recipients and channels are the shell's
//! (`src/notices/catalogue.rs`).
//!
//! To add a notice the core emits (the lifecycle issue's reminders, expired, deleted): add its
//! name below, a line in `src/notices/catalogue.rs`, its templates in `notice-templates/`, and
//! return the draft from [`domain_notice`] (or push `Effect::Notify` where the event is applied).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{ClientId, DomainName};
use super::model::{Domain, DomainStatus, Phase};

/// Names of the notice types the core emits (dotted, as in webhooks: `domain.registered`).
pub mod types {
    /// A domain was registered (by the registrar, or settled by hand).
    pub const DOMAIN_REGISTERED: &str = "domain.registered";
    /// A registration ended in Error.
    pub const DOMAIN_REGISTRATION_FAILED: &str = "domain.registration_failed";
    /// A renewal moved the expiry date.
    pub const DOMAIN_RENEWED: &str = "domain.renewed";
    /// A renewal ended in Error.
    pub const DOMAIN_RENEWAL_FAILED: &str = "domain.renewal_failed";
    /// To the operators: a registrar reply contradicts the outcome already applied (issue 9,
    /// item 3); the domain is in phase Conflict until someone resolves it.
    pub const OPERATOR_DOMAIN_CONFLICT: &str = "operator.domain_conflict";
    /// A reminder of the domain's expiry (90/60/30/15/1 days before, DESIGN.md §9).
    pub const DOMAIN_EXPIRY_REMINDER: &str = "domain.expiry_reminder";
    /// Mandatory: the domain expired and is parked; the site has stopped; N days to renew.
    pub const DOMAIN_EXPIRED: &str = "domain.expired";
    /// Mandatory, final: the domain was deleted.
    pub const DOMAIN_DELETED: &str = "domain.deleted";
    /// Every type the core can emit (the catalogue must know each).
    pub const CORE: [&str; 8] = [
        DOMAIN_REGISTERED,
        DOMAIN_REGISTRATION_FAILED,
        DOMAIN_RENEWED,
        DOMAIN_RENEWAL_FAILED,
        OPERATOR_DOMAIN_CONFLICT,
        DOMAIN_EXPIRY_REMINDER,
        DOMAIN_EXPIRED,
        DOMAIN_DELETED,
    ];
}

/// A notice to write with the transition: its type, whom it concerns, and the template data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeDraft {
    /// The type's dotted name (see [`types`]).
    pub kind: String,
    /// The client whose users hear it (None: operators only).
    pub client: Option<ClientId>,
    /// The domain it is about, if any.
    pub domain: Option<DomainName>,
    /// Template data (`domain`, `expires`, `reason`, ...).
    pub data: BTreeMap<String, String>,
}

/// The notice a domain's change from `before` to `after` calls for, if any. The rule is a pure
/// function of the two values, so the core's tests can check it against every transition.
pub fn domain_notice(before: Option<&Domain>, after: &Domain) -> Option<NoticeDraft> {
    use DomainStatus::*;
    // A contradiction raised on the domain: the operators hear it, once, when it appears.
    if after.phase == Phase::Conflict && before.is_none_or(|d| d.phase != Phase::Conflict) {
        let mut data = BTreeMap::new();
        data.insert("domain".to_owned(), after.name.to_unicode());
        data.insert(
            "reason".to_owned(),
            after
                .last_error
                .clone()
                .unwrap_or_else(|| "see the action log".into()),
        );
        return Some(NoticeDraft {
            kind: types::OPERATOR_DOMAIN_CONFLICT.to_owned(),
            client: None,
            domain: Some(after.name.clone()),
            data,
        });
    }
    let was = before.map(|d| d.status);
    let kind = match (was, after.status) {
        (Some(Renewing), Registered) if before.and_then(|d| d.expires) != after.expires => {
            types::DOMAIN_RENEWED
        }
        (Some(Registered | Renewing), Registered) => return None,
        (_, Registered) => types::DOMAIN_REGISTERED,
        (Some(Renewing), Error) => types::DOMAIN_RENEWAL_FAILED,
        (Some(AwaitingPayment | Registering), Error) => types::DOMAIN_REGISTRATION_FAILED,
        _ => return None,
    };
    let mut data = BTreeMap::new();
    data.insert("domain".to_owned(), after.name.to_unicode());
    if let Some(e) = after.expires {
        data.insert("expires".to_owned(), e.to_string());
    }
    if after.status == Error {
        data.insert(
            "reason".to_owned(),
            after
                .last_error
                .clone()
                .unwrap_or_else(|| "see the action log".into()),
        );
    }
    Some(NoticeDraft {
        kind: kind.to_owned(),
        client: Some(after.client_id.clone()),
        domain: Some(after.name.clone()),
        data,
    })
}
