//! Property tests of the role, subscription and fan-out rules over random sequences of user,
//! role and subscription changes (issue 10, "What it must show").

use std::collections::BTreeSet;

use jiff::Timestamp;
use proptest::prelude::*;

use super::catalogue::{Audience, CATALOGUE, Category};
use super::model::{Channel, Endpoint, Language, Operator, Role, Subscriptions, User};
use super::rules::{Target, check_subscription_change, fanout};

#[derive(Debug, Clone)]
enum Op {
    /// `actor` sets `target`'s subscriptions.
    Subscribe(usize, usize, Vec<Category>),
    /// A user's role changes (never to or from owner: the owner is fixed per client).
    Role(usize, bool),
}

fn user(i: usize, role: Role) -> User {
    User {
        client: "c1".into(),
        id: format!("u{i}"),
        name: format!("User {i}"),
        email: format!("u{i}@customer.test"),
        phone: None,
        language: if i.is_multiple_of(2) {
            Language::Ru
        } else {
            Language::En
        },
        role,
        subscriptions: Subscriptions::new(),
        subscriptions_set_by: None,
        created: Timestamp::UNIX_EPOCH,
        updated: Timestamp::UNIX_EPOCH,
    }
}

fn category() -> impl Strategy<Value = Category> {
    (0..Category::ALL.len()).prop_map(|i| Category::ALL[i])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..5usize, 0..5usize, prop::collection::vec(category(), 0..7))
            .prop_map(|(a, t, c)| Op::Subscribe(a, t, c)),
        1 => (1..5usize, any::<bool>()).prop_map(|(u, admin)| Op::Role(u, admin)),
    ]
}

fn subs(cats: &[Category]) -> Subscriptions {
    cats.iter()
        .map(|c| (*c, BTreeSet::from([Channel::Email])))
        .collect()
}

/// The fan-out as the issue states it, written independently of `rules::fanout`.
fn expected(
    nt: &super::catalogue::NoticeType,
    users: &[User],
    eps: &[Endpoint],
) -> BTreeSet<(Channel, String)> {
    let mut out = BTreeSet::new();
    for u in users {
        let hears = match u.role {
            Role::Owner => true,
            _ if nt.mandatory => u.role.allows(nt.category),
            _ => {
                u.role.allows(nt.category)
                    && u.subscriptions
                        .get(&nt.category)
                        .is_some_and(|s| s.contains(&Channel::Email))
            }
        };
        if hears && nt.audience == Audience::Customer {
            out.insert((Channel::Email, u.email.clone()));
        }
    }
    if nt.audience == Audience::Operators {
        out.insert((Channel::Email, "ops@hosting.test".into()));
    }
    for e in eps {
        if e.events.iter().any(|f| {
            f == "*"
                || f.strip_suffix(".*")
                    .is_some_and(|p| nt.name.starts_with(&format!("{p}.")))
        }) {
            out.insert((Channel::Webhook, e.url.clone()));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prop_roles_subscriptions_and_fanout(ops in prop::collection::vec(op(), 1..40)) {
        let mut users: Vec<User> = (0..5)
            .map(|i| user(i, match i { 0 => Role::Owner, 1 | 2 => Role::Admin, _ => Role::Subscriber }))
            .collect();
        let ops_list = vec![Operator { email: "ops@hosting.test".into(), language: Language::En }];
        let eps = vec![Endpoint {
            id: "ep1".into(), url: "http://127.0.0.1:1/hook".into(), events: vec!["domain.*".into()],
            secrets: vec![], rotate_until: None, enabled: true, disabled_reason: None,
            failing_since: None, created: Timestamp::UNIX_EPOCH,
        }];
        for op in ops {
            let before = users.clone();
            match op {
                Op::Subscribe(a, t, cats) => {
                    let new = subs(&cats);
                    match check_subscription_change(&users[a], &users[t], &new) {
                        Ok(()) => {
                            // An allowed change: the actor may act, and nothing forbidden is set.
                            prop_assert!(a == t || users[a].role != Role::Subscriber);
                            users[t].subscriptions = new;
                        }
                        Err(r) => {
                            prop_assert!(r.field == "acting_user" || r.field.starts_with("subscriptions."));
                            // A refused change changes nothing.
                            prop_assert_eq!(&users, &before);
                        }
                    }
                }
                Op::Role(u, admin) => {
                    let role = if admin { Role::Admin } else { Role::Subscriber };
                    users[u].role = role;
                }
            }
            // The owner is never unsubscribed from anything.
            let owner = users[0].effective();
            for c in Category::ALL {
                prop_assert!(owner.get(&c).is_some_and(|s| s.contains(&Channel::Email)));
            }
            // A subscriber never hears a forbidden category.
            for u in users.iter().filter(|u| u.role == Role::Subscriber) {
                for c in u.effective().keys() {
                    prop_assert!(matches!(c, Category::Documents | Category::Balance), "{:?} hears {:?}", u.id, c);
                }
            }
            // Every notice fans out to exactly the pairs the rules select, each once.
            for nt in CATALOGUE {
                let got: Vec<Target> = fanout(nt, &users, &ops_list, &eps);
                let pairs: Vec<(Channel, String)> = got.iter().map(|t| (t.channel, t.address.clone())).collect();
                let set: BTreeSet<_> = pairs.iter().cloned().collect();
                prop_assert_eq!(pairs.len(), set.len(), "a duplicate pair for {}", nt.name);
                prop_assert_eq!(set, expected(nt, &users, &eps), "{}", nt.name);
                for t in &got {
                    // Mandatory notices and the owner's never carry an unsubscribe link.
                    if nt.mandatory || t.recipient == "user:c1/u0" {
                        prop_assert_eq!(t.unsubscribe, None);
                    }
                }
            }
        }
    }
}
