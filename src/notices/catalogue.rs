//! The catalogue of notice types (issue 10 §2): each type is in exactly one category, is
//! mandatory or not, says who hears it (a client's users, or the hosting company's operators)
//! and which data fields its templates need. Categories are Selectel's five plus `domains`
//! (research/anchors-notifications.md §2.1).
//!
//! Adding a type is one line in [`CATALOGUE`] plus its templates in `notice-templates/en/` and
//! `notice-templates/ru/` (a test checks every type has both and that the templates use only
//! the declared fields). An operator notice: `op("domain.conflict", Domains, &["domain",
//! "reason"], "...")`.

use serde::{Deserialize, Serialize};

/// A notice category: what a user subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Profile and agreement changes, account deletion.
    Account,
    /// Invoices, reporting documents, payment data.
    Documents,
    /// Funds shortage, disconnection for non-payment, blocking postponed, top-up problems.
    Balance,
    /// Planned work, outages.
    Maintenance,
    /// Service status, new orders, settings changed.
    Services,
    /// Domains: registered, registration failed, renewed, renewal failed, registrant changed,
    /// expiry reminders, expired (parked), deleted.
    Domains,
}

impl Category {
    /// Every category, in display order.
    pub const ALL: [Category; 6] = [
        Category::Account,
        Category::Documents,
        Category::Balance,
        Category::Maintenance,
        Category::Services,
        Category::Domains,
    ];
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Account => "account",
            Category::Documents => "documents",
            Category::Balance => "balance",
            Category::Maintenance => "maintenance",
            Category::Services => "services",
            Category::Domains => "domains",
        }
    }
    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Who hears a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// The users of the client the notice names (by role and subscription).
    Customer,
    /// The hosting company's operators (`[notices] operators`).
    Operators,
}

/// One notice type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NoticeType {
    /// Dotted name, also the webhook event type (`domain.registered`).
    pub name: &'static str,
    /// Its category.
    pub category: Category,
    /// Delivered whatever the opt-outs (never carries List-Unsubscribe).
    pub mandatory: bool,
    /// Who hears it.
    pub audience: Audience,
    /// Data fields its templates need (a panel notice lacking one is a 422 naming it).
    pub fields: &'static [&'static str],
    /// What it is, for the documentation and `regmail notice-types`.
    pub about: &'static str,
}

use Category::*;

const fn t(
    name: &'static str,
    category: Category,
    fields: &'static [&'static str],
    about: &'static str,
) -> NoticeType {
    NoticeType {
        name,
        category,
        mandatory: false,
        audience: Audience::Customer,
        fields,
        about,
    }
}

const fn mandatory(
    name: &'static str,
    category: Category,
    fields: &'static [&'static str],
    about: &'static str,
) -> NoticeType {
    NoticeType {
        name,
        category,
        mandatory: true,
        audience: Audience::Customer,
        fields,
        about,
    }
}

const fn op(
    name: &'static str,
    category: Category,
    fields: &'static [&'static str],
    about: &'static str,
) -> NoticeType {
    NoticeType {
        name,
        category,
        mandatory: true,
        audience: Audience::Operators,
        fields,
        about,
    }
}

/// Every notice type. Customer types go to a client's users; operator types to the operators.
pub const CATALOGUE: &[NoticeType] = &[
    // account
    t(
        "account.profile_changed",
        Account,
        &[],
        "the account's profile was changed",
    ),
    t(
        "account.password_changed",
        Account,
        &[],
        "the account's password was changed",
    ),
    t(
        "account.agreement_changed",
        Account,
        &["text"],
        "the agreement's terms changed",
    ),
    mandatory("account.deleted", Account, &[], "the account was deleted"),
    // documents
    t(
        "documents.invoice",
        Documents,
        &["number", "amount"],
        "an invoice was issued",
    ),
    t(
        "documents.report",
        Documents,
        &["period"],
        "reporting documents are ready",
    ),
    t(
        "documents.payment_received",
        Documents,
        &["amount"],
        "a payment was received",
    ),
    // balance
    t(
        "balance.funds_shortage",
        Balance,
        &["balance"],
        "the balance is running out",
    ),
    mandatory(
        "balance.disconnected",
        Balance,
        &["service"],
        "a service was disconnected for non-payment",
    ),
    t(
        "balance.blocking_postponed",
        Balance,
        &["until"],
        "blocking was postponed",
    ),
    t(
        "balance.topup_failed",
        Balance,
        &["reason"],
        "a top-up failed",
    ),
    // maintenance
    t(
        "maintenance.planned",
        Maintenance,
        &["start", "end", "text"],
        "planned work",
    ),
    t("maintenance.outage", Maintenance, &["text"], "an outage"),
    // services
    t(
        "services.status_changed",
        Services,
        &["service", "status"],
        "a service changed status",
    ),
    t(
        "services.order_created",
        Services,
        &["service"],
        "a new order",
    ),
    t(
        "services.settings_changed",
        Services,
        &["service"],
        "a service's settings changed",
    ),
    t(
        "services.disk_quota",
        Services,
        &["service", "used"],
        "disk quota nearly used up",
    ),
    // domains (the core emits the first four; see core::notice::types)
    t(
        "domain.registered",
        Domains,
        &["domain"],
        "a domain was registered",
    ),
    t(
        "domain.registration_failed",
        Domains,
        &["domain", "reason"],
        "a domain registration failed",
    ),
    t(
        "domain.renewed",
        Domains,
        &["domain", "expires"],
        "a domain was renewed",
    ),
    t(
        "domain.renewal_failed",
        Domains,
        &["domain", "reason"],
        "a domain renewal failed",
    ),
    t(
        "domain.registrant_changed",
        Domains,
        &["domain"],
        "a domain's registrant changed",
    ),
    mandatory(
        "domain.deletion_warning",
        Domains,
        &["domain", "date"],
        "a domain is about to be deleted",
    ),
    // the domain's life after registration (issue 11; emitted by core::lifecycle)
    t(
        "domain.expiry_reminder",
        Domains,
        &["domain", "expires", "days_left"],
        "a domain expires soon (90, 60, 30, 15 and 1 days before, by default)",
    ),
    mandatory(
        "domain.expired",
        Domains,
        &["domain", "expires", "grace_ends", "days_left"],
        "a domain expired and is parked: the site has stopped; days left to renew",
    ),
    mandatory(
        "domain.deleted",
        Domains,
        &["domain", "deleted_on"],
        "a domain was deleted after its grace ended (the final notice)",
    ),
    // operators (the hosting company's staff)
    op(
        "operator.domain_conflict",
        Domains,
        &["domain", "reason"],
        "a registrar reply contradicts what was applied to a domain",
    ),
    op(
        "operator.webhook_disabled",
        Services,
        &["url", "reason"],
        "a webhook endpoint was disabled",
    ),
];

/// The type named `name`.
pub fn lookup(name: &str) -> Option<&'static NoticeType> {
    CATALOGUE.iter().find(|t| t.name == name)
}

/// Whether an endpoint's event filter (`domain.*`, `*`, or an exact name) takes `name`.
pub fn filter_matches(filter: &str, name: &str) -> bool {
    if filter == "*" {
        return true;
    }
    match filter.strip_suffix(".*") {
        Some(prefix) => name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => filter == name,
    }
}

/// Whether a filter is well formed (`*`, `prefix.*`, or a catalogue name).
pub fn filter_valid(filter: &str) -> bool {
    filter == "*"
        || lookup(filter).is_some()
        || filter.strip_suffix(".*").is_some_and(|p| {
            CATALOGUE
                .iter()
                .any(|t| filter_matches(&format!("{p}.*"), t.name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_types_are_catalogued() {
        for name in crate::core::notice::types::CORE {
            assert!(lookup(name).is_some(), "{name} is not in the catalogue");
        }
    }

    #[test]
    fn names_are_unique_and_dotted() {
        for (i, a) in CATALOGUE.iter().enumerate() {
            assert!(a.name.contains('.'), "{}", a.name);
            assert!(
                CATALOGUE[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn filters() {
        assert!(filter_matches("domain.*", "domain.registered"));
        assert!(!filter_matches("domain.*", "domains.x"));
        assert!(filter_matches("*", "balance.topup_failed"));
        assert!(filter_matches("domain.renewed", "domain.renewed"));
        assert!(!filter_matches("domain.renewed", "domain.registered"));
        assert!(filter_valid("domain.*"));
        assert!(!filter_valid("nothing.*"));
        assert!(!filter_valid("domain.unknown"));
    }
}
