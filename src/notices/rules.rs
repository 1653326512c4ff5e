//! Who may change whose subscriptions, and who hears a notice (the fan-out). Pure functions of
//! their arguments, so property tests can run them on random sequences (issue 10 §1, §4;
//! Selectel's roles, research/anchors-notifications.md §2.1).

use std::collections::BTreeSet;

use super::catalogue::{Audience, Category, NoticeType};
use super::model::{Channel, Endpoint, Language, Operator, Role, Subscriptions, User};

/// A refused change: the field at fault and why (the API answers 403 with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The field (`acting_user`, `subscriptions.<category>`).
    pub field: String,
    /// Why.
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks that `actor` may set `target`'s subscriptions to `new`. Rules: an owner or admin may
/// change anyone of the account, anyone may change their own; the owner hears every category
/// on every channel, so a change that leaves anything out is refused; a subscriber may hold
/// only the categories its role allows.
pub fn check_subscription_change(
    actor: &User,
    target: &User,
    new: &Subscriptions,
) -> Result<(), Refusal> {
    if actor.client != target.client {
        return Err(refuse(
            "acting_user",
            format!("{} is not a user of this account", actor.id),
        ));
    }
    if actor.id != target.id && actor.role == Role::Subscriber {
        return Err(refuse(
            "acting_user",
            format!(
                "{} is a subscriber: only the owner and user administrators change other users' subscriptions",
                actor.id
            ),
        ));
    }
    if target.role == Role::Owner {
        for c in Category::ALL {
            let chans = new.get(&c);
            if Channel::USER
                .iter()
                .any(|ch| !chans.is_some_and(|s| s.contains(ch)))
            {
                return Err(refuse(
                    format!("subscriptions.{}", c.as_str()),
                    "the owner hears every category on every channel and cannot be unsubscribed",
                ));
            }
        }
    }
    for (c, chans) in new {
        if !chans.is_empty() && !target.role.allows(*c) {
            return Err(refuse(
                format!("subscriptions.{}", c.as_str()),
                format!(
                    "a {} may be subscribed only to documents and balance",
                    target.role.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// Whom a delivery goes to, before it gets an id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// The channel.
    pub channel: Channel,
    /// `user:<client>/<user>`, `operator:<email>` or `endpoint:<id>`.
    pub recipient: String,
    /// E-mail address or URL.
    pub address: String,
    /// Language of the text.
    pub language: Language,
    /// The category the recipient may opt out of (None: mandatory, owner, operator, webhook).
    pub unsubscribe: Option<Category>,
    /// False when the endpoint is disabled: the delivery is kept as Held.
    pub active: bool,
}

/// The fan-out of one notice of type `nt`: the users of its client (by role, subscription and
/// the mandatory flag), the operators (operator types), and every endpoint whose filter takes
/// the type. One target per (recipient, channel), sorted, no duplicates.
pub fn fanout(
    nt: &NoticeType,
    users: &[User],
    operators: &[Operator],
    endpoints: &[Endpoint],
) -> Vec<Target> {
    let mut out = BTreeSet::new();
    match nt.audience {
        Audience::Customer => {
            for u in users {
                let subs = u.effective();
                let chans: BTreeSet<Channel> = if nt.mandatory && u.role.allows(nt.category) {
                    // Mandatory: ignores the opt-outs, on the user's primary channel at least.
                    let mut c = subs.get(&nt.category).cloned().unwrap_or_default();
                    c.insert(Channel::Email);
                    c
                } else {
                    subs.get(&nt.category).cloned().unwrap_or_default()
                };
                for ch in chans {
                    out.insert(Target {
                        channel: ch,
                        recipient: format!("user:{}/{}", u.client, u.id),
                        address: u.email.clone(),
                        language: u.language,
                        unsubscribe: (!nt.mandatory && u.role != Role::Owner)
                            .then_some(nt.category),
                        active: true,
                    });
                }
            }
        }
        Audience::Operators => {
            for o in operators {
                out.insert(Target {
                    channel: Channel::Email,
                    recipient: format!("operator:{}", o.email),
                    address: o.email.clone(),
                    language: o.language,
                    unsubscribe: None,
                    active: true,
                });
            }
        }
    }
    for e in endpoints.iter().filter(|e| e.wants(nt.name)) {
        out.insert(Target {
            channel: Channel::Webhook,
            recipient: format!("endpoint:{}", e.id),
            address: e.url.clone(),
            language: Language::En,
            unsubscribe: None,
            active: e.enabled,
        });
    }
    out.into_iter().collect()
}
