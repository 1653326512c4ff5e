//! Tests of the pure core: the flow of DESIGN.md §2 as unit tests, one behaviour each, then the
//! invariants of DESIGN.md §4 as property tests over random event sequences on a [`MemState`].
//!
//! Time and ids are pinned: a counter hands out request ids (`Uuid::from_u128(1)`, `2`, ...) and
//! every test starts at [`t0`].

use std::collections::BTreeMap;

use jiff::civil::{Date, date};
use jiff::{SignedDuration, Span, Timestamp};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Request ids from a counter: deterministic, and in creation order like UUID v7.
struct CountingIds(u128);

impl IdSource for CountingIds {
    fn request_id(&mut self) -> RequestId {
        self.0 += 1;
        RequestId(Uuid::from_u128(self.0))
    }
}

/// The fixed start of every test: 2025-03-01 09:00 UTC.
fn t0() -> Timestamp {
    "2025-03-01T09:00:00Z".parse().unwrap()
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn days(d: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * d)
}

fn dn(name: &str) -> DomainName {
    DomainName::parse(name).unwrap()
}

fn cid(id: &str) -> ClientId {
    ClientId::parse(id).unwrap()
}

fn handle(h: &str) -> Handle {
    Handle::parse(h).unwrap()
}

fn person(tag: &str) -> Registrant {
    Registrant::Person(Person {
        fio_ru: format!("Иванов Иван {tag}"),
        fio_en: format!("Ivanov Ivan {tag}"),
        passport: vec![
            "4500 123456".into(),
            "выдан ОВД Тверского р-на г. Москвы".into(),
            "01.01.2010".into(),
        ],
        birth_date: date(1980, 5, 17),
        postal_addr: vec!["101000, Москва, ул. Тверская, 1".into()],
        phone: "+7 495 1234567".into(),
        fax: None,
        email: "ivanov@example.com".into(),
        is_protected: true,
        is_resident: true,
        inn: None,
    })
}

fn organization(tag: &str) -> Registrant {
    Registrant::Organization(Organization {
        org_name_ru: format!("ООО \"Ромашка {tag}\""),
        org_name_en: format!("Romashka {tag} LLC"),
        inn: "7701234567".into(),
        kpp: Some("770101001".into()),
        ogrn: Some("1027700000000".into()),
        legal_addr: vec!["101000, Москва, ул. Тверская, 2".into()],
        postal_addr: vec!["101000, Москва, ул. Тверская, 2".into()],
        phone: "+7 495 7654321".into(),
        fax: None,
        email: "info@romashka.example".into(),
        director_name: Some("Петров Пётр Петрович".into()),
        bank: None,
        ras_schet: None,
        kor_schet: None,
        bik: None,
        is_resident: true,
    })
}

fn contact() -> Contact {
    Contact {
        name: "Ivan".into(),
        email: "ivan@example.com".into(),
        phone: None,
    }
}

fn new_client(id: &str, registrant: Registrant, existing: Option<&str>) -> Event {
    Event::CreateClient(NewClient {
        id: cid(id),
        registrant,
        contact: contact(),
        existing_handle: existing.map(handle),
    })
}

fn order_event(name: &str, client: &str, years: u8, paid: bool) -> Event {
    Event::OrderDomain(DomainOrder {
        name: dn(name),
        client_id: cid(client),
        years,
        nameservers: vec![Nameserver::parse("ns1.hoster.example").unwrap()],
        order_id: format!("order-{name}"),
        description: vec!["test order".into()],
        paid,
        auto_renew: true,
    })
}

fn evidence() -> Evidence {
    Evidence {
        message_id: Some("<reply-1@r01.ru>".into()),
        rule: Some("r01.domain.done".into()),
        correlation: Some("subject-token".into()),
        ..Evidence::default()
    }
}

fn reply(request: RequestId, outcome: ReplyOutcome) -> Event {
    Event::Reply {
        request,
        outcome,
        evidence: evidence(),
    }
}

fn ack(request: RequestId) -> Event {
    reply(request, ReplyOutcome::Acknowledged { task_id: None })
}

fn completed(request: RequestId, expires: Option<Date>) -> Event {
    reply(
        request,
        ReplyOutcome::Completed {
            handle: None,
            expires,
        },
    )
}

fn rejected(request: RequestId, reason: &str) -> Event {
    reply(
        request,
        ReplyOutcome::Rejected {
            reason: reason.into(),
        },
    )
}

/// What the outbox logs as the message it sent (the password masked).
const COPY: &str = "Subject: [RM-x] NEW\n\npassword: ********\n";

fn sent(request: RequestId) -> Event {
    Event::Sent {
        request,
        detail: "250 2.0.0 Ok: queued as 4XyZ".into(),
        copy: Some(COPY.into()),
    }
}

fn deadline(request: RequestId) -> Event {
    Event::DeadlinePassed { request }
}

fn retry(request: RequestId) -> Event {
    Event::Retry { request }
}

fn cancel(name: &str) -> Event {
    Event::Cancel {
        domain: dn(name),
        note: Some("customer changed their mind".into()),
    }
}

fn resolve(name: &str, outcome: Resolution) -> Event {
    Event::Resolve {
        domain: dn(name),
        outcome,
        note: "checked at the registrar's web panel".into(),
    }
}

fn renew(name: &str, years: u8) -> Event {
    Event::Renew {
        domain: dn(name),
        years,
        actor: Actor::Api,
    }
}

/// The single request of `kind` that `t` created (Queued).
#[track_caller]
fn queued(t: &Transition, kind: RequestKind) -> RequestId {
    let found: Vec<&Request> = t
        .requests
        .iter()
        .filter(|r| r.kind == kind && r.state == RequestState::Queued)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one new {} request in {t:#?}",
        kind.as_str()
    );
    found[0].id
}

fn actions(t: &Transition) -> Vec<&str> {
    t.log.iter().map(|e| e.action.as_str()).collect()
}

/// A state, a clock and an id counter; applies events like the store does (commit on Ok only).
struct World {
    s: MemState,
    ids: CountingIds,
    now: Timestamp,
    policy: Policy,
}

impl World {
    fn new() -> Self {
        World {
            s: MemState::default(),
            ids: CountingIds(0),
            now: t0(),
            policy: Policy::default(),
        }
    }

    fn try_apply(&mut self, event: Event) -> Result<Transition, CoreError> {
        let mut ctx = Ctx {
            now: self.now,
            ids: &mut self.ids,
            policy: &self.policy,
        };
        let out = apply(&self.s, event, &mut ctx);
        if let Ok(t) = &out {
            self.s.commit(t);
        }
        out
    }

    #[track_caller]
    fn apply(&mut self, event: Event) -> Transition {
        let shown = format!("{event:?}");
        match self.try_apply(event) {
            Ok(t) => t,
            Err(e) => panic!("{shown} was refused: {e}"),
        }
    }

    /// Applies an event that must be refused, and checks that nothing changed.
    #[track_caller]
    fn refuse(&mut self, event: Event) -> CoreError {
        let shown = format!("{event:?}");
        let before = format!("{:?}", self.s);
        match self.try_apply(event) {
            Ok(t) => panic!("{shown} was accepted: {t:#?}"),
            Err(e) => {
                assert_eq!(
                    before,
                    format!("{:?}", self.s),
                    "a refused event changed state"
                );
                e
            }
        }
    }

    fn advance(&mut self, by: SignedDuration) {
        self.now += by;
    }

    fn client(&self, id: &str) -> &Client {
        &self.s.clients[&cid(id)]
    }

    fn domain(&self, name: &str) -> &Domain {
        &self.s.domains[&dn(name)]
    }

    fn req(&self, id: RequestId) -> &Request {
        &self.s.requests[&id]
    }

    /// An imported (already Registered) client `c1` and a paid order for `name`, whose domain
    /// request is returned (Queued).
    fn domain_request(name: &str, years: u8) -> (World, RequestId) {
        let mut w = World::new();
        w.apply(new_client("c1", person("1"), Some("IMPORTED_1-GPT")));
        let t = w.apply(order_event(name, "c1", years, true));
        let id = queued(&t, RequestKind::DomainRegistration);
        (w, id)
    }

    /// `name` Registered for `years` from [`t0`], expiring on `expires`.
    fn registered(name: &str, years: u8, expires: Date) -> World {
        let (mut w, id) = World::domain_request(name, years);
        w.apply(sent(id));
        w.apply(completed(id, Some(expires)));
        assert_eq!(w.domain(name).status, DomainStatus::Registered);
        w
    }
}

// ---------------------------------------------------------------------------------------------
// Orders and payment
// ---------------------------------------------------------------------------------------------

#[test]
fn unpaid_order_sends_nothing() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 1, false));
    assert!(t.requests.is_empty(), "an unpaid order created a request");
    assert!(t.effects.is_empty(), "an unpaid order asked for effects");
    assert_eq!(t.handle_counter, None, "an unpaid order allocated a handle");
    let d = w.domain("example.ru");
    assert_eq!(d.status, DomainStatus::AwaitingPayment);
    assert_eq!(d.phase, Phase::WaitingForPayment);
    assert_eq!(d.open_request, None);
    assert!(!d.paid);
    assert_eq!(
        w.client("c1").status,
        ClientStatus::Unregistered,
        "an unpaid order must not register the client either"
    );
    assert!(w.s.requests.is_empty() && w.s.outbox.is_empty() && w.s.deadlines.is_empty());
    assert_eq!(actions(&t), ["domain.ordered"]);
}

#[test]
fn paid_order_for_unregistered_client_queues_client_request_first() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 2, true));

    let id = queued(&t, RequestKind::ClientRegistration);
    assert_eq!(
        t.requests.len(),
        1,
        "only the client request, no domain request yet"
    );
    assert_eq!(t.effects, [Effect::Send(id)]);
    assert_eq!(t.handle_counter, Some(1));
    let r = w.req(id);
    assert_eq!(r.client_id, cid("c1"));
    assert_eq!(r.domain, None);
    // Counter 1, random digit from the id's last byte (1), person suffix.
    assert_eq!(r.handle, Some(handle("REGMAIL_1_1-GPT")));
    assert_eq!(r.message_id, format!("<{}@regmail.invalid>", id.token()));
    assert_eq!(r.created, t0());

    let c = w.client("c1");
    assert_eq!(c.status, ClientStatus::Registering);
    assert_eq!(c.open_request, Some(id));
    assert_eq!(
        c.handle, None,
        "the handle is the client's only once confirmed"
    );

    let d = w.domain("example.ru");
    assert_eq!(d.status, DomainStatus::Registering);
    assert_eq!(d.phase, Phase::WaitingForClient);
    assert_eq!(d.open_request, None);
    assert!(d.paid);
    assert!(w.s.outbox.contains(&id));
    assert_eq!(
        actions(&t),
        ["request.queued", "client.registering", "domain.ordered"]
    );
}

#[test]
fn imported_client_goes_straight_to_domain_request() {
    let mut w = World::new();
    let t = w.apply(new_client(
        "c1",
        organization("1"),
        Some("MYCO_7_3-ORG-GPT"),
    ));
    assert_eq!(actions(&t), ["client.imported"]);
    assert_eq!(t.handle_counter, None, "an import does not use the counter");
    let c = w.client("c1");
    assert_eq!(c.status, ClientStatus::Registered);
    assert_eq!(c.handle, Some(handle("MYCO_7_3-ORG-GPT")));

    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let id = queued(&t, RequestKind::DomainRegistration);
    assert_eq!(
        t.requests.len(),
        1,
        "no client request for an imported client"
    );
    assert_eq!(t.effects, [Effect::Send(id)]);
    let r = w.req(id);
    assert_eq!(r.domain, Some(dn("example.ru")));
    assert_eq!(r.years, Some(1));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase, d.open_request),
        (DomainStatus::Registering, Phase::RequestQueued, Some(id))
    );
}

#[test]
fn marking_paid_starts_registration_once() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), Some("IMPORTED_1-GPT")));
    w.apply(order_event("example.ru", "c1", 1, false));
    let t = w.apply(Event::MarkPaid {
        domain: dn("example.ru"),
    });
    let id = queued(&t, RequestKind::DomainRegistration);
    assert_eq!(w.domain("example.ru").open_request, Some(id));
    assert!(w.domain("example.ru").paid);
    assert_eq!(actions(&t), ["request.queued", "domain.paid"]);

    let again = w.apply(Event::MarkPaid {
        domain: dn("example.ru"),
    });
    assert!(
        again.is_noop(),
        "a repeated payment must change nothing: {again:#?}"
    );
    assert_eq!(w.s.requests.len(), 1);
}

#[test]
fn mark_paid_after_cancel_is_refused() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    w.apply(order_event("example.ru", "c1", 1, false));
    w.apply(cancel("example.ru"));
    let e = w.refuse(Event::MarkPaid {
        domain: dn("example.ru"),
    });
    assert!(
        matches!(e, CoreError::Illegal(ref m) if m.contains("cancelled")),
        "{e}"
    );
}

#[test]
fn second_active_order_is_refused() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), Some("IMPORTED_1-GPT")));
    w.apply(new_client("c2", person("2"), None));
    w.apply(order_event("example.ru", "c1", 1, false));
    let e = w.refuse(order_event("example.ru", "c2", 1, true));
    assert_eq!(
        e,
        CoreError::DomainActive {
            domain: dn("example.ru"),
            status: "AwaitingPayment"
        }
    );

    // A cancelled order frees the name: the new order replaces it.
    w.apply(cancel("example.ru"));
    w.advance(hours(1));
    let t = w.apply(order_event("example.ru", "c2", 3, false));
    assert_eq!(
        t.log[0].status_before.as_deref(),
        Some("Cancelled/Cancelled")
    );
    let d = w.domain("example.ru");
    assert_eq!(d.client_id, cid("c2"));
    assert_eq!(d.years, 3);
    assert_eq!(d.created, t0() + hours(1));
    assert_eq!(d.status, DomainStatus::AwaitingPayment);
}

#[test]
fn order_for_registered_domain_is_refused() {
    let mut w = World::registered("example.com", 1, date(2026, 3, 1));
    let e = w.refuse(order_event("example.com", "c1", 1, true));
    assert!(
        matches!(
            e,
            CoreError::DomainActive {
                status: "Registered",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn events_on_unknown_entities_are_refused() {
    let mut w = World::new();
    let e = w.refuse(order_event("example.ru", "nobody", 1, true));
    assert_eq!(e, CoreError::UnknownClient(cid("nobody")));
    let e = w.refuse(Event::MarkPaid {
        domain: dn("example.ru"),
    });
    assert_eq!(e, CoreError::UnknownDomain(dn("example.ru")));
    let ghost = RequestId(Uuid::from_u128(999));
    for ev in [
        sent(ghost),
        ack(ghost),
        deadline(ghost),
        retry(ghost),
        Event::SendFailed {
            request: ghost,
            reason: "550".into(),
            copy: None,
        },
    ] {
        assert_eq!(w.refuse(ev), CoreError::UnknownRequest(ghost));
    }
    assert!(w.s.log.is_empty());
}

#[test]
fn idn_domain_is_keyed_and_logged_in_punycode() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), Some("IMPORTED_1-GPT")));
    let t = w.apply(order_event("Пример.РФ.", "c1", 1, true));
    let id = queued(&t, RequestKind::DomainRegistration);
    let key = dn("xn--e1afmkfd.xn--p1ai");
    assert!(w.s.domains.contains_key(&key));
    assert_eq!(w.req(id).domain, Some(key.clone()));
    assert_eq!(w.s.domains[&key].name.to_unicode(), "пример.рф");
    assert!(t.log.iter().all(|e| e.domain.as_ref() == Some(&key)));
    assert!(
        t.log
            .iter()
            .any(|e| e.message.contains("xn--e1afmkfd.xn--p1ai")),
        "the request log names the domain as sent to the registrar"
    );
    // The same name typed another way is the same order.
    let e = w.refuse(order_event("пример.рф", "c1", 1, true));
    assert!(matches!(e, CoreError::DomainActive { .. }), "{e}");

    // .РФ is inside R01's 60-day renewal window.
    w.apply(sent(id));
    w.apply(completed(id, Some(date(2026, 3, 1))));
    let e = w.refuse(renew("пример.рф", 1));
    assert!(matches!(e, CoreError::TooEarlyToRenew { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

#[test]
fn create_client_twice_is_one_client() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(new_client("c1", person("1"), None));
    assert!(t.is_noop(), "the same create again must change nothing");
    let e = w.refuse(new_client("c1", person("other"), None));
    assert_eq!(e, CoreError::ClientExists(cid("c1")));
    let e = w.refuse(new_client("c1", person("1"), Some("SOME_1-GPT")));
    assert_eq!(e, CoreError::ClientExists(cid("c1")));
}

#[test]
fn client_data_changes_only_while_unregistered_or_in_error() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let update = |tag: &str| Event::UpdateClient {
        id: cid("c1"),
        registrant: person(tag),
        contact: contact(),
    };
    let t = w.apply(update("2"));
    assert_eq!(actions(&t), ["client.updated"]);
    assert!(
        w.apply(update("2")).is_noop(),
        "an update to the same data is a no-op"
    );

    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let creq = queued(&t, RequestKind::ClientRegistration);
    let e = w.refuse(update("3"));
    assert!(matches!(e, CoreError::Illegal(_)), "{e}");

    w.apply(rejected(creq, "bad passport"));
    assert_eq!(w.client("c1").status, ClientStatus::Error);
    w.apply(update("3"));
    assert_eq!(w.client("c1").registrant, person("3"));
}

#[test]
fn client_completion_releases_waiting_domain_requests() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let creq = queued(&t, RequestKind::ClientRegistration);
    let t = w.apply(order_event("example.com", "c1", 2, true));
    assert!(
        t.requests.is_empty(),
        "the second order waits for the same client request"
    );
    w.apply(order_event("unpaid.ru", "c1", 1, false));

    w.apply(sent(creq));
    w.apply(ack(creq));
    assert_eq!(w.client("c1").status, ClientStatus::Registering);
    let t = w.apply(completed(creq, None));

    let c = w.client("c1");
    assert_eq!(c.status, ClientStatus::Registered);
    assert_eq!(
        c.handle,
        w.req(creq).handle,
        "the handle we chose is confirmed when the reply names none"
    );
    let released: Vec<&Request> = t
        .requests
        .iter()
        .filter(|r| r.kind == RequestKind::DomainRegistration)
        .collect();
    assert_eq!(released.len(), 2, "both paid domains get their request");
    for name in ["example.ru", "example.com"] {
        let d = w.domain(name);
        assert_eq!(
            (d.status, d.phase),
            (DomainStatus::Registering, Phase::RequestQueued)
        );
        let r = w.req(d.open_request.expect("open request"));
        assert_eq!(r.domain.as_ref(), Some(&d.name));
        assert_eq!(r.years, Some(d.years));
        assert!(w.s.outbox.contains(&r.id));
    }
    assert_eq!(w.domain("unpaid.ru").status, DomainStatus::AwaitingPayment);
    assert_eq!(w.req(creq).state, RequestState::Completed);
    assert!(!w.s.deadlines.contains_key(&creq));
}

#[test]
fn completion_may_name_another_handle() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let creq = queued(&t, RequestKind::ClientRegistration);
    w.apply(reply(
        creq,
        ReplyOutcome::Completed {
            handle: Some(handle("R01_ASSIGNED-GPT")),
            expires: None,
        },
    ));
    assert_eq!(w.client("c1").handle, Some(handle("R01_ASSIGNED-GPT")));
}

#[test]
fn client_rejection_puts_waiting_domains_in_error() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let creq = queued(&t, RequestKind::ClientRegistration);
    w.apply(order_event("example.com", "c1", 1, true));
    w.apply(order_event("unpaid.ru", "c1", 1, false));
    w.apply(sent(creq));

    let t = w.apply(rejected(creq, "passport number is invalid"));
    let c = w.client("c1");
    assert_eq!(c.status, ClientStatus::Error);
    assert!(
        c.last_error
            .as_deref()
            .unwrap()
            .contains("passport number is invalid")
    );
    for name in ["example.ru", "example.com"] {
        let d = w.domain(name);
        assert_eq!(
            (d.status, d.phase),
            (DomainStatus::Error, Phase::ClientFailed)
        );
        assert!(
            d.last_error
                .as_deref()
                .unwrap()
                .contains("passport number is invalid")
        );
        assert_eq!(d.open_request, None);
    }
    assert_eq!(w.domain("unpaid.ru").status, DomainStatus::AwaitingPayment);
    assert_eq!(w.req(creq).state, RequestState::Rejected);
    assert!(w.s.outbox.is_empty() && w.s.deadlines.is_empty());
    assert!(
        t.requests
            .iter()
            .all(|r| r.kind == RequestKind::ClientRegistration),
        "no domain request for a failed client"
    );
    let errors = t.log.iter().filter(|e| e.action == "domain.error").count();
    assert_eq!(errors, 2);

    // Paying another order now does not send anything either.
    let t = w.apply(Event::MarkPaid {
        domain: dn("unpaid.ru"),
    });
    assert!(t.requests.is_empty());
    assert_eq!(w.domain("unpaid.ru").phase, Phase::ClientFailed);
}

#[test]
fn retry_of_rejected_client_revives_its_domains() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let old = queued(&t, RequestKind::ClientRegistration);
    w.apply(order_event("example.com", "c1", 1, true));
    w.apply(sent(old));
    w.apply(rejected(old, "bad passport"));
    w.apply(Event::UpdateClient {
        id: cid("c1"),
        registrant: person("fixed"),
        contact: contact(),
    });

    let t = w.apply(retry(old));
    let new = queued(&t, RequestKind::ClientRegistration);
    assert_ne!(new, old);
    assert_eq!(
        t.handle_counter, None,
        "a retry reuses the handle, no new counter value"
    );
    assert_eq!(w.req(new).handle, w.req(old).handle);
    assert_eq!(w.req(new).retry_of, Some(old));
    assert_ne!(w.req(new).message_id, w.req(old).message_id);
    let c = w.client("c1");
    assert_eq!(
        (c.status, c.open_request),
        (ClientStatus::Registering, Some(new))
    );
    assert_eq!(c.last_error, None);
    for name in ["example.ru", "example.com"] {
        let d = w.domain(name);
        assert_eq!(
            (d.status, d.phase),
            (DomainStatus::Registering, Phase::WaitingForClient)
        );
        assert_eq!(d.last_error, None);
    }

    // The old request is settled: retrying it again is refused.
    let e = w.refuse(retry(old));
    assert!(matches!(e, CoreError::Illegal(_)), "{e}");

    let t = w.apply(completed(new, None));
    assert_eq!(
        t.requests
            .iter()
            .filter(|r| r.kind == RequestKind::DomainRegistration)
            .count(),
        2
    );
}

#[test]
fn handle_counter_is_never_reused() {
    let mut w = World::new();
    let mut handles = Vec::new();
    for (i, registrant) in [person("a"), organization("b"), person("c")]
        .into_iter()
        .enumerate()
    {
        let id = format!("c{i}");
        w.apply(new_client(&id, registrant, None));
        let t = w.apply(order_event(&format!("d{i}.ru"), &id, 1, true));
        assert_eq!(t.handle_counter, Some(i as u64 + 1));
        let r = queued(&t, RequestKind::ClientRegistration);
        handles.push(w.req(r).handle.clone().unwrap());
    }
    assert_eq!(w.s.counter, 3);
    let texts: Vec<&str> = handles.iter().map(|h| h.as_str()).collect();
    assert!(texts[0].starts_with("REGMAIL_1_") && texts[0].ends_with("-GPT"));
    assert!(texts[1].starts_with("REGMAIL_2_") && texts[1].ends_with("-ORG-GPT"));
    assert!(texts[2].starts_with("REGMAIL_3_"));

    // A refused client retried keeps its handle; the counter does not move.
    let first = w.client("c0").open_request.unwrap();
    w.apply(rejected(first, "no"));
    let t = w.apply(retry(first));
    assert_eq!(t.handle_counter, None);
    // A new client after that gets 4, never 1..3 again.
    w.apply(new_client("c9", person("z"), None));
    let t = w.apply(order_event("d9.ru", "c9", 1, true));
    assert_eq!(t.handle_counter, Some(4));
    let h = w
        .req(queued(&t, RequestKind::ClientRegistration))
        .handle
        .clone()
        .unwrap();
    assert!(h.as_str().starts_with("REGMAIL_4_"), "{h}");
    assert!(!handles.contains(&h));
}

#[test]
fn client_deadline_fails_client_and_waiting_domains() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let creq = queued(&t, RequestKind::ClientRegistration);
    w.apply(sent(creq));
    w.advance(hours(72));
    w.apply(deadline(creq));
    assert_eq!(w.req(creq).state, RequestState::TimedOut);
    assert_eq!(w.client("c1").status, ClientStatus::Error);
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase),
        (DomainStatus::Error, Phase::ClientFailed)
    );
}

#[test]
fn late_client_completion_after_timeout_registers_and_releases_domains() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let creq = queued(&t, RequestKind::ClientRegistration);
    w.apply(sent(creq));
    w.advance(hours(80));
    w.apply(deadline(creq));
    w.advance(hours(5));
    let t = w.apply(completed(creq, None));
    assert_eq!(w.client("c1").status, ClientStatus::Registered);
    let dreq = queued(&t, RequestKind::DomainRegistration);
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase, d.open_request),
        (DomainStatus::Registering, Phase::RequestQueued, Some(dreq))
    );
}

// ---------------------------------------------------------------------------------------------
// Requests: sending, replies, deadlines
// ---------------------------------------------------------------------------------------------

#[test]
fn sent_request_waits_for_the_registrar_with_a_deadline() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    let t = w.apply(sent(id));
    let due = t0() + hours(72);
    assert_eq!(
        t.effects,
        [Effect::Unsend(id), Effect::ArmDeadline(id, due)]
    );
    let r = w.req(id);
    assert_eq!(
        (r.state, r.attempts, r.reply_deadline),
        (RequestState::Sent, 1, Some(due))
    );
    assert_eq!(w.domain("example.ru").phase, Phase::RequestSent);
    assert!(w.s.outbox.is_empty());
    assert_eq!(w.s.deadlines.get(&id), Some(&due));
    let entry = t.log.iter().find(|e| e.action == "request.sent").unwrap();
    assert_eq!(
        entry.evidence.server_reply.as_deref(),
        Some("250 2.0.0 Ok: queued as 4XyZ")
    );
    assert_eq!(entry.status_before.as_deref(), Some("Queued"));
    assert_eq!(entry.status_after.as_deref(), Some("Sent"));
    assert_eq!(
        entry.evidence.message_copy.as_deref(),
        Some(COPY),
        "the log keeps the message as sent"
    );
}

#[test]
fn send_deferred_is_logged_only() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    let t = w.apply(Event::SendDeferred {
        request: id,
        reason: "421 4.3.2 service not available".into(),
        attempt: 2,
        retry_at: t0() + SignedDuration::from_mins(5),
    });
    assert_eq!(actions(&t), ["request.send_deferred"]);
    assert!(t.clients.is_empty() && t.domains.is_empty() && t.requests.is_empty());
    assert!(
        t.effects.is_empty(),
        "a deferred request stays in the outbox"
    );
    assert_eq!(t.log[0].actor, Actor::Outbox);
    assert_eq!(
        t.log[0].evidence.error.as_deref(),
        Some("421 4.3.2 service not available")
    );
    let r = w.req(id);
    assert_eq!((r.state, r.attempts), (RequestState::Queued, 0));
    assert!(w.s.outbox.contains(&id));

    w.apply(sent(id));
    let e = w.refuse(Event::SendDeferred {
        request: id,
        reason: "late".into(),
        attempt: 3,
        retry_at: t0(),
    });
    assert!(matches!(e, CoreError::Illegal(_)), "{e}");
}

#[test]
fn recorded_outcome_acts_as_a_reply_with_the_operator_note() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    let t = w.apply(Event::RecordOutcome {
        request: id,
        outcome: ReplyOutcome::Completed {
            handle: None,
            expires: Some(date(2026, 3, 1)),
        },
        note: "seen in the registrar's web panel".into(),
    });
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.expires),
        (DomainStatus::Registered, Some(date(2026, 3, 1)))
    );
    assert_eq!(w.req(id).state, RequestState::Completed);
    assert!(t.log.iter().all(|e| e.actor == Actor::Operator
        && e.evidence.note.as_deref() == Some("seen in the registrar's web panel")));
    // Recording the same outcome twice is a logged no-op like a duplicate reply.
    let t = w.apply(Event::RecordOutcome {
        request: id,
        outcome: ReplyOutcome::Completed {
            handle: None,
            expires: Some(date(2026, 3, 1)),
        },
        note: "again".into(),
    });
    assert_eq!(actions(&t), ["reply.ignored"]);
    // A contradicting one is a conflict, visible, and nothing is undone.
    let t = w.apply(Event::RecordOutcome {
        request: id,
        outcome: ReplyOutcome::Rejected {
            reason: "changed my mind".into(),
        },
        note: "typo".into(),
    });
    assert_eq!(actions(&t), ["reply.conflict", "domain.conflict"]);
    assert_eq!(w.domain("example.ru").status, DomainStatus::Registered);
}

#[test]
fn conflict_rejection_after_completion_is_raised_not_ignored() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(completed(id, Some(date(2026, 3, 1))));
    let t = w.apply(rejected(id, "domain is not available"));
    assert_eq!(actions(&t), ["reply.conflict", "domain.conflict"]);
    let d = w.domain("example.ru");
    // Nothing applied is undone: the status and the expiry stay; the phase says it.
    assert_eq!(
        (d.status, d.phase, d.expires),
        (
            DomainStatus::Registered,
            Phase::Conflict,
            Some(date(2026, 3, 1))
        )
    );
    let why = d.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("conflict") && why.contains("domain is not available"),
        "{why}"
    );
    assert_eq!(w.req(id).state, RequestState::Completed);
    // A conflict arms and sends nothing; it only tells the operators.
    let kinds: Vec<&str> = t
        .effects
        .iter()
        .map(|e| match e {
            Effect::Notify(n) => n.kind.as_str(),
            _ => "another effect",
        })
        .collect();
    assert_eq!(kinds, ["operator.domain_conflict"]);
    // The operator settles it; the phase leaves Conflict.
    w.apply(resolve(
        "example.ru",
        Resolution::Registered {
            expires: Some(date(2026, 3, 1)),
        },
    ));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase),
        (DomainStatus::Registered, Phase::SettledByOperator)
    );
}

#[test]
fn conflict_on_another_expiry_date() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(completed(id, Some(date(2026, 3, 1))));
    let t = w.apply(completed(id, Some(date(2035, 3, 1))));
    assert_eq!(actions(&t), ["reply.conflict", "domain.conflict"]);
    let d = w.domain("example.ru");
    assert_eq!(
        (d.phase, d.expires),
        (Phase::Conflict, Some(date(2026, 3, 1)))
    );
    assert!(d.last_error.as_deref().unwrap_or("").contains("2035-03-01"));
}

#[test]
fn a_late_contradiction_leaves_a_new_order_for_the_name_alone() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(rejected(id, "wrong data"));
    w.apply(cancel("example.ru"));
    w.apply(order_event("example.ru", "c1", 1, false));
    let before = w.domain("example.ru").clone();
    // The old request is answered after all: its own log says so; the new order is untouched.
    let t = w.apply(completed(id, Some(date(2026, 3, 1))));
    assert_eq!(actions(&t), ["reply.conflict"]);
    let d = w.domain("example.ru");
    assert_eq!((d.status, d.phase), (before.status, before.phase));
    assert_eq!(d.status, DomainStatus::AwaitingPayment);
}

#[test]
fn conflict_completion_after_rejection() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(rejected(id, "wrong data"));
    let t = w.apply(completed(id, Some(date(2026, 3, 1))));
    assert_eq!(actions(&t), ["reply.conflict", "domain.conflict"]);
    let d = w.domain("example.ru");
    assert_eq!((d.status, d.phase), (DomainStatus::Error, Phase::Conflict));
    // A late acknowledgement of a settled request is no contradiction.
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(completed(id, Some(date(2026, 3, 1))));
    let t = w.apply(ack(id));
    assert_eq!(actions(&t), ["reply.ignored"]);
    assert_eq!(w.domain("example.ru").phase, Phase::Done);
}

#[test]
fn message_id_is_fixed_when_queued() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    let mid = w.req(id).message_id.clone();
    assert_eq!(mid, format!("<{}@regmail.invalid>", id.token()));
    w.apply(Event::SendUnknown {
        request: id,
        detail: "connection reset after DATA".into(),
        copy: None,
    });
    w.apply(ack(id));
    assert_eq!(w.req(id).message_id, mid);
}

#[test]
fn acknowledgement_records_task_and_rearms_deadline() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.advance(hours(10));
    let t = w.apply(reply(
        id,
        ReplyOutcome::Acknowledged {
            task_id: Some("T-4242".into()),
        },
    ));
    let due = t0() + hours(10) + hours(72);
    assert!(t.effects.contains(&Effect::ArmDeadline(id, due)));
    let r = w.req(id);
    assert_eq!(r.state, RequestState::Acknowledged);
    assert_eq!(r.task_id.as_deref(), Some("T-4242"));
    assert_eq!(w.s.deadlines.get(&id), Some(&due));
    assert_eq!(w.domain("example.ru").phase, Phase::QueuedAtRegistrar);
    let entry = t
        .log
        .iter()
        .find(|e| e.action == "request.acknowledged")
        .unwrap();
    assert_eq!(entry.evidence.task_id.as_deref(), Some("T-4242"));
    assert_eq!(entry.evidence.rule.as_deref(), Some("r01.domain.done"));
    assert_eq!(entry.evidence.correlation.as_deref(), Some("subject-token"));
    assert_eq!(
        entry.evidence.message_id.as_deref(),
        Some("<reply-1@r01.ru>")
    );
    assert_eq!(entry.actor, Actor::Registrar);
}

#[test]
fn completion_registers_domain_with_expiry() {
    let (mut w, id) = World::domain_request("example.ru", 2);
    w.apply(sent(id));
    w.apply(ack(id));
    let t = w.apply(completed(id, Some(date(2027, 3, 2))));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase, d.open_request),
        (DomainStatus::Registered, Phase::Done, None)
    );
    assert_eq!(d.expires, Some(date(2027, 3, 2)));
    assert_eq!(w.req(id).state, RequestState::Completed);
    assert!(w.s.deadlines.is_empty());
    assert!(actions(&t).contains(&"domain.registered"));
}

#[test]
fn completion_without_date_computes_expiry_from_years() {
    let (mut w, id) = World::domain_request("example.ru", 2);
    w.apply(sent(id));
    w.apply(completed(id, None));
    assert_eq!(w.domain("example.ru").expires, Some(date(2027, 3, 1)));
}

#[test]
fn completion_before_acknowledgement_still_completes() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(completed(id, Some(date(2026, 3, 1))));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.expires),
        (DomainStatus::Registered, Some(date(2026, 3, 1)))
    );
    assert_eq!(w.req(id).state, RequestState::Completed);
    assert!(w.s.deadlines.is_empty());
}

#[test]
fn reply_to_a_queued_request_proves_it_went_out() {
    // A crash between the SMTP answer and the commit of `Sent`: the reply arrives first.
    let (mut w, id) = World::domain_request("example.ru", 1);
    let t = w.apply(ack(id));
    assert!(t.effects.contains(&Effect::Unsend(id)));
    assert!(
        w.s.outbox.is_empty(),
        "an answered request must leave the outbox"
    );
    assert_eq!(w.req(id).state, RequestState::Acknowledged);
    assert!(w.s.deadlines.contains_key(&id));
    // The outbox worker's late `Sent` is logged only.
    let t = w.apply(sent(id));
    assert_eq!(actions(&t), ["request.sent_late"]);
    assert!(t.requests.is_empty() && t.domains.is_empty());
    assert_eq!(w.req(id).state, RequestState::Acknowledged);
}

#[test]
fn duplicate_reply_is_logged_noop() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(ack(id));
    let before = w.s.clone();

    let t = w.apply(ack(id));
    assert_eq!(actions(&t), ["reply.duplicate"]);
    assert!(t.clients.is_empty() && t.domains.is_empty() && t.requests.is_empty());
    assert!(
        t.effects.is_empty(),
        "a duplicate acknowledgement must not re-arm anything"
    );
    assert_eq!(t.log[0].request, Some(id));
    assert_eq!(
        t.log[0].evidence.message_id.as_deref(),
        Some("<reply-1@r01.ru>")
    );
    assert_eq!(w.s.requests, before.requests);
    assert_eq!(w.s.deadlines, before.deadlines);

    w.apply(completed(id, Some(date(2026, 3, 1))));
    let registered = w.s.clone();
    // The same outcome again, or a late acknowledgement, contradicts nothing: logged only.
    // (Contradicting outcomes raise a conflict: see conflict_* below.)
    for again in [
        completed(id, Some(date(2026, 3, 1))),
        completed(id, None),
        ack(id),
    ] {
        let t = w.apply(again);
        assert_eq!(actions(&t), ["reply.ignored"]);
        assert!(t.domains.is_empty() && t.requests.is_empty() && t.effects.is_empty());
    }
    assert_eq!(w.s.domains, registered.domains);
    assert_eq!(w.s.requests, registered.requests);
}

#[test]
fn registrar_rejection_puts_domain_in_error_with_reason() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(rejected(id, "domain is not available"));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase),
        (DomainStatus::Error, Phase::RegistrarRejected)
    );
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("domain is not available")
    );
    assert_eq!(
        d.open_request,
        Some(id),
        "the failed request stays linked for retry"
    );
    assert!(w.s.deadlines.is_empty());
}

#[test]
fn send_unknown_is_a_visible_state() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    let t = w.apply(Event::SendUnknown {
        request: id,
        detail: "connection reset after DATA".into(),
        copy: None,
    });
    let r = w.req(id);
    assert_eq!((r.state, r.attempts), (RequestState::SendUnknown, 1));
    assert_eq!(r.last_error.as_deref(), Some("connection reset after DATA"));
    assert!(w.s.outbox.is_empty(), "not resent blindly");
    assert_eq!(w.s.deadlines.get(&id), Some(&(t0() + hours(72))));
    assert_eq!(w.domain("example.ru").phase, Phase::SendUnknown);
    assert!(actions(&t).contains(&"request.send_unknown"));
    // If the message did go, the registrar's reply settles it.
    w.apply(ack(id));
    assert_eq!(w.domain("example.ru").phase, Phase::QueuedAtRegistrar);
}

#[test]
fn send_failure_puts_domain_in_error_and_retry_requeues() {
    let (mut w, id) = World::domain_request("example.ru", 2);
    w.apply(Event::SendFailed {
        request: id,
        reason: "550 5.7.1 relaying denied".into(),
        copy: None,
    });
    assert_eq!(w.req(id).state, RequestState::Rejected);
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase),
        (DomainStatus::Error, Phase::SendFailed)
    );
    assert!(w.s.outbox.is_empty());

    let t = w.apply(retry(id));
    let new = queued(&t, RequestKind::DomainRegistration);
    let r = w.req(new);
    assert_eq!((r.retry_of, r.years), (Some(id), Some(2)));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase, d.open_request),
        (DomainStatus::Registering, Phase::RequestQueued, Some(new))
    );
    assert_eq!(d.last_error, None);
    assert_eq!(w.s.outbox.iter().copied().collect::<Vec<_>>(), [new]);
}

#[test]
fn send_events_need_a_queued_request() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    for ev in [
        Event::SendUnknown {
            request: id,
            detail: "x".into(),
            copy: None,
        },
        Event::SendFailed {
            request: id,
            reason: "x".into(),
            copy: None,
        },
    ] {
        assert!(matches!(w.refuse(ev), CoreError::Illegal(_)));
    }
}

#[test]
fn retry_is_refused_for_a_live_or_superseded_request() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    assert!(
        matches!(w.refuse(retry(id)), CoreError::Illegal(_)),
        "Queued"
    );
    w.apply(sent(id));
    assert!(matches!(w.refuse(retry(id)), CoreError::Illegal(_)), "Sent");
    w.apply(rejected(id, "no"));
    let t = w.apply(retry(id));
    let new = queued(&t, RequestKind::DomainRegistration);
    w.apply(sent(new));
    w.apply(rejected(new, "no again"));
    let e = w.refuse(retry(id));
    assert!(
        matches!(e, CoreError::Illegal(ref m) if m.contains("no longer waits")),
        "{e}"
    );
    w.apply(retry(new));
}

#[test]
fn deadline_turns_silence_into_timed_out() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.advance(hours(72));
    let t = w.apply(deadline(id));
    let r = w.req(id);
    assert_eq!(r.state, RequestState::TimedOut);
    assert_eq!(r.reply_deadline, None);
    assert!(r.last_error.as_deref().unwrap().contains("no reply"));
    let d = w.domain("example.ru");
    assert_eq!((d.status, d.phase), (DomainStatus::Error, Phase::NoReply));
    assert!(w.s.deadlines.is_empty());
    assert!(actions(&t).contains(&"request.timed_out"));
    assert!(t.log.iter().all(|e| e.actor == Actor::Scheduler));

    // A second firing of the same deadline changes nothing.
    let t = w.apply(deadline(id));
    assert!(t.requests.is_empty() && t.domains.is_empty() && t.log.is_empty());
}

#[test]
fn deadline_of_an_answered_request_is_stale() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.apply(completed(id, None));
    w.advance(hours(100));
    let t = w.apply(deadline(id));
    assert!(t.log.is_empty() && t.requests.is_empty() && t.domains.is_empty());
    assert_eq!(w.domain("example.ru").status, DomainStatus::Registered);
}

/// The scheduler reads `due_deadlines`, then applies `DeadlinePassed`; an acknowledgement
/// committed in between re-arms the deadline. The stale event must leave the live deadline
/// armed, or the request would wait forever. (Was a bug: it pushed `DisarmDeadline`.)
#[test]
fn stale_deadline_event_keeps_the_live_deadline_armed() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.advance(hours(72));
    // The scheduler has read the due list; the registrar's acknowledgement lands first.
    w.apply(ack(id));
    let rearmed = w.now + hours(72);
    w.advance(SignedDuration::from_secs(1));
    w.apply(deadline(id));
    assert_eq!(w.req(id).state, RequestState::Acknowledged);
    assert_eq!(
        w.s.deadlines.get(&id),
        Some(&rearmed),
        "a stale deadline event disarmed the live deadline of an Acknowledged request; it \
         will never time out"
    );
}

#[test]
fn late_completion_after_timeout_registers() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.advance(hours(73));
    w.apply(deadline(id));
    assert_eq!(w.domain("example.ru").status, DomainStatus::Error);
    w.advance(hours(24));
    w.apply(completed(id, Some(date(2026, 3, 1))));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase, d.expires, d.last_error.clone()),
        (
            DomainStatus::Registered,
            Phase::Done,
            Some(date(2026, 3, 1)),
            None
        )
    );
    assert_eq!(w.req(id).state, RequestState::Completed);
}

#[test]
fn late_acknowledgement_after_timeout_revives_the_domain() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    w.advance(hours(73));
    w.apply(deadline(id));
    let t = w.apply(ack(id));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase),
        (DomainStatus::Registering, Phase::QueuedAtRegistrar)
    );
    assert_eq!(d.last_error, None);
    assert_eq!(w.s.deadlines.get(&id), Some(&(w.now + hours(72))));
    let entry = t.log.iter().find(|e| e.action.starts_with("domain."));
    assert_eq!(
        entry.and_then(|e| e.status_before.as_deref()),
        Some("Error/NoReply")
    );
}

/// A retried SendUnknown request is superseded (Cancelled, deadline disarmed): one open request
/// per domain, and nothing left waiting without a deadline. Should the first e-mail have gone
/// after all, its replies are logged only. (Was a bug: the old request stayed SendUnknown
/// forever, with no deadline.)
#[test]
fn retry_of_send_unknown_resends_the_same_message() {
    let (mut w, old) = World::domain_request("example.ru", 1);
    let message_id = w.req(old).message_id.clone();
    w.apply(Event::SendUnknown {
        request: old,
        detail: "connection reset after DATA".into(),
        copy: None,
    });
    let t = w.apply(retry(old));
    assert!(
        actions(&t).contains(&"request.requeued"),
        "{:?}",
        actions(&t)
    );
    // The same request, the same Message-ID, back in the outbox; nothing else is open.
    let r = w.req(old);
    assert_eq!((r.state, r.reply_deadline), (RequestState::Queued, None));
    assert_eq!(r.message_id, message_id);
    assert!(w.s.outbox.contains(&old));
    assert!(!w.s.deadlines.contains_key(&old));
    assert_eq!(w.domain("example.ru").open_request, Some(old));
    assert_eq!(w.domain("example.ru").phase, Phase::RequestQueued);
    let open: Vec<RequestId> =
        w.s.requests
            .values()
            .filter(|r| !r.state.is_settled() && r.state != RequestState::TimedOut)
            .map(|r| r.id)
            .collect();
    assert_eq!(open, [old], "one open request for the domain");
    // A reply to the first copy still counts: it is the same request.
    w.apply(ack(old));
    assert_eq!(w.req(old).state, RequestState::Acknowledged);
}

/// BUG (transition.rs, `Work::retry` + `Work::reply`): retrying a TimedOut request leaves the
/// old request TimedOut (only a SendUnknown one is superseded). A late acknowledgement of the
/// old request then reopens it (Acknowledged, deadline armed) while the domain waits on the
/// retry: two open requests for one domain, both armed. The same holds for a client request.
#[test]
fn late_ack_of_a_superseded_timed_out_request_does_not_reopen_it() {
    let (mut w, first) = World::domain_request("example.ru", 1);
    w.apply(sent(first));
    w.advance(hours(73));
    w.apply(deadline(first));
    let t = w.apply(retry(first));
    let second = queued(&t, RequestKind::DomainRegistration);
    w.apply(ack(first));
    let open: Vec<RequestId> =
        w.s.requests
            .values()
            .filter(|r| !r.state.is_settled() && r.state != RequestState::TimedOut)
            .map(|r| r.id)
            .collect();
    assert_eq!(
        open,
        [second],
        "a late acknowledgement reopened the superseded request {first} (now {}, deadline \
         armed: {}) next to the retry {second}",
        w.req(first).state.as_str(),
        w.s.deadlines.contains_key(&first)
    );
}

/// After a timeout and an operator retry, the registrar's completion of the FIRST request is
/// the truth: the domain is registered through it and the retry is withdrawn.
#[test]
fn completion_of_a_superseded_request_still_registers_the_domain() {
    let (mut w, first) = World::domain_request("example.ru", 1);
    w.apply(sent(first));
    w.advance(hours(73));
    w.apply(deadline(first));
    let t = w.apply(retry(first));
    let second = queued(&t, RequestKind::DomainRegistration);
    w.apply(sent(second));
    let t = w.apply(completed(first, Some(date(2026, 3, 4))));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.expires),
        (DomainStatus::Registered, Some(date(2026, 3, 4))),
        "the registrar registered the domain through the first request, but the completion \
         was only logged ({:?}); the domain still waits on the retry {second}",
        actions(&t)
    );
}

// ---------------------------------------------------------------------------------------------
// Renewals
// ---------------------------------------------------------------------------------------------

#[test]
fn renewal_too_early_for_ru_is_refused() {
    let mut w = World::registered("example.ru", 1, date(2026, 3, 1));
    let e = w.refuse(renew("example.ru", 1));
    assert_eq!(
        e,
        CoreError::TooEarlyToRenew {
            domain: dn("example.ru"),
            expires: date(2026, 3, 1),
            earliest: date(2025, 12, 31),
        }
    );
    // The day before the window opens: still refused; on its first day: accepted.
    w.now = "2025-12-30T23:59:59Z".parse().unwrap();
    assert!(matches!(
        w.refuse(renew("example.ru", 1)),
        CoreError::TooEarlyToRenew { .. }
    ));
    w.now = "2025-12-31T00:00:00Z".parse().unwrap();
    let t = w.apply(renew("example.ru", 1));
    queued(&t, RequestKind::DomainRenewal);
}

#[test]
fn renewal_of_com_has_no_window() {
    let mut w = World::registered("example.com", 1, date(2026, 3, 1));
    let t = w.apply(renew("example.com", 1));
    let id = queued(&t, RequestKind::DomainRenewal);
    let d = w.domain("example.com");
    assert_eq!(
        (d.status, d.phase, d.open_request),
        (DomainStatus::Renewing, Phase::RequestQueued, Some(id))
    );
    assert_eq!(w.req(id).years, Some(1));
}

#[test]
fn renewal_completion_extends_from_old_expiry() {
    let mut w = World::registered("example.ru", 1, date(2026, 3, 1));
    w.now = "2026-02-01T12:00:00Z".parse().unwrap();
    let t = w.apply(renew("example.ru", 2));
    let id = queued(&t, RequestKind::DomainRenewal);
    w.apply(sent(id));
    let t = w.apply(completed(id, None));
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase, d.expires),
        (
            DomainStatus::Registered,
            Phase::Done,
            Some(date(2028, 3, 1))
        )
    );
    assert!(actions(&t).contains(&"domain.renewed"));
}

#[test]
fn only_registered_domain_can_be_renewed() {
    let (mut w, _) = World::domain_request("example.com", 1);
    let e = w.refuse(renew("example.com", 1));
    assert!(matches!(e, CoreError::Illegal(_)), "{e}");
}

#[test]
fn failed_renewal_keeps_expiry_and_can_be_retried() {
    let mut w = World::registered("example.com", 1, date(2026, 3, 1));
    let t = w.apply(renew("example.com", 1));
    let id = queued(&t, RequestKind::DomainRenewal);
    w.apply(sent(id));
    w.apply(rejected(id, "insufficient funds"));
    let d = w.domain("example.com");
    assert_eq!(d.status, DomainStatus::Error);
    assert_eq!(d.expires, Some(date(2026, 3, 1)));
    assert!(matches!(
        w.refuse(cancel("example.com")),
        CoreError::Illegal(_)
    ));
    let t = w.apply(retry(id));
    let new = queued(&t, RequestKind::DomainRenewal);
    assert_eq!(w.domain("example.com").status, DomainStatus::Renewing);
    w.apply(completed(new, None));
    assert_eq!(w.domain("example.com").expires, Some(date(2027, 3, 1)));
}

// ---------------------------------------------------------------------------------------------
// Operator: cancel and resolve
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_before_send_withdraws_request() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    let t = w.apply(cancel("example.ru"));
    assert!(t.effects.contains(&Effect::Unsend(id)));
    assert_eq!(w.req(id).state, RequestState::Cancelled);
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase, d.open_request),
        (DomainStatus::Cancelled, Phase::Cancelled, None)
    );
    assert!(w.s.outbox.is_empty());
    let entry = t
        .log
        .iter()
        .find(|e| e.action == "domain.cancelled")
        .unwrap();
    assert_eq!(
        entry.evidence.note.as_deref(),
        Some("customer changed their mind")
    );
    // The outbox worker had it in hand: the late `Sent` is logged, not applied.
    let t = w.apply(sent(id));
    assert_eq!(actions(&t), ["request.sent_late"]);
    assert_eq!(w.req(id).state, RequestState::Cancelled);
}

/// Found by `prop_at_most_one_open_request_per_owner`: an order cancelled while in Error after
/// silence left its TimedOut request open; after a new order for the name, a late
/// acknowledgement reopened the old request beside the new one.
#[test]
fn cancelling_an_order_closes_its_timed_out_request() {
    let (mut w, first) = World::domain_request("example.ru", 1);
    w.apply(sent(first));
    w.advance(hours(73));
    w.apply(deadline(first));
    assert_eq!(w.domain("example.ru").status, DomainStatus::Error);
    w.apply(cancel("example.ru"));
    assert_eq!(w.req(first).state, RequestState::Cancelled);
    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let second = queued(&t, RequestKind::DomainRegistration);
    let t = w.apply(ack(first));
    assert_eq!(actions(&t), ["reply.ignored"]);
    assert_eq!(w.req(first).state, RequestState::Cancelled);
    assert_eq!(w.domain("example.ru").open_request, Some(second));
}

#[test]
fn cancel_after_send_is_refused() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(sent(id));
    let e = w.refuse(cancel("example.ru"));
    assert!(
        matches!(e, CoreError::Illegal(ref m) if m.contains("resolve")),
        "the refusal points to resolve: {e}"
    );
    w.apply(ack(id));
    assert!(matches!(
        w.refuse(cancel("example.ru")),
        CoreError::Illegal(_)
    ));
    w.apply(completed(id, None));
    assert!(matches!(
        w.refuse(cancel("example.ru")),
        CoreError::Illegal(_)
    ));
}

#[test]
fn cancel_while_waiting_for_client_leaves_client_request() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), None));
    let t = w.apply(order_event("example.ru", "c1", 1, true));
    let creq = queued(&t, RequestKind::ClientRegistration);
    w.apply(cancel("example.ru"));
    assert_eq!(w.domain("example.ru").status, DomainStatus::Cancelled);
    assert_eq!(w.req(creq).state, RequestState::Queued);
    let t = w.apply(completed(creq, None));
    assert!(
        t.requests
            .iter()
            .all(|r| r.kind == RequestKind::ClientRegistration),
        "a cancelled order is not released"
    );
}

#[test]
fn resolve_settles_open_request() {
    let (mut w, id) = World::domain_request("example.ru", 2);
    w.apply(sent(id));
    let t = w.apply(resolve(
        "example.ru",
        Resolution::Registered { expires: None },
    ));
    assert!(t.effects.contains(&Effect::DisarmDeadline(id)));
    let r = w.req(id);
    assert_eq!((r.state, r.reply_deadline), (RequestState::Completed, None));
    assert!(
        r.last_error
            .as_deref()
            .unwrap()
            .contains("checked at the registrar")
    );
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase, d.open_request, d.expires),
        (
            DomainStatus::Registered,
            Phase::SettledByOperator,
            None,
            Some(date(2027, 3, 1))
        )
    );
    assert!(w.s.deadlines.is_empty() && w.s.outbox.is_empty());
    assert!(t.log.iter().all(|e| e.actor == Actor::Operator
        && e.evidence.note.as_deref() == Some("checked at the registrar's web panel")));
}

#[test]
fn resolve_error_settles_queued_request_as_rejected() {
    let (mut w, id) = World::domain_request("example.ru", 1);
    w.apply(resolve("example.ru", Resolution::Error));
    assert_eq!(w.req(id).state, RequestState::Rejected);
    assert!(w.s.outbox.is_empty(), "a settled request must not be sent");
    let d = w.domain("example.ru");
    assert_eq!(
        (d.status, d.phase),
        (DomainStatus::Error, Phase::SettledByOperator)
    );
    // A registrar reply that says it was done after all contradicts that: a conflict.
    let t = w.apply(completed(id, None));
    assert_eq!(actions(&t), ["reply.conflict", "domain.conflict"]);
    assert_eq!(w.domain("example.ru").phase, Phase::Conflict);
}

#[test]
fn resolve_of_renewal_adds_years_to_old_expiry() {
    let mut w = World::registered("example.com", 1, date(2026, 3, 1));
    let t = w.apply(renew("example.com", 3));
    queued(&t, RequestKind::DomainRenewal);
    w.apply(resolve(
        "example.com",
        Resolution::Registered { expires: None },
    ));
    assert_eq!(w.domain("example.com").expires, Some(date(2029, 3, 1)));
}

#[test]
fn resolve_with_explicit_expiry_uses_it() {
    let (mut w, _) = World::domain_request("example.ru", 1);
    w.apply(resolve(
        "example.ru",
        Resolution::Registered {
            expires: Some(date(2030, 1, 15)),
        },
    ));
    assert_eq!(w.domain("example.ru").expires, Some(date(2030, 1, 15)));
}

#[test]
fn resolve_of_cancelled_order_is_refused() {
    let (mut w, _) = World::domain_request("example.ru", 1);
    w.apply(cancel("example.ru"));
    let e = w.refuse(resolve("example.ru", Resolution::Error));
    assert!(matches!(e, CoreError::Illegal(_)), "{e}");
}

/// Resolving a domain that already has an expiry (and no open renewal) as Registered without a
/// date keeps the known expiry. (Was a bug: it became today + years, here 2026 instead of 2030.)
#[test]
fn resolving_registered_domain_without_date_never_moves_expiry_back() {
    let mut w = World::registered("example.com", 1, date(2030, 3, 1));
    w.apply(resolve(
        "example.com",
        Resolution::Registered { expires: None },
    ));
    let expires = w.domain("example.com").expires.unwrap();
    assert!(
        expires >= date(2030, 3, 1),
        "resolve moved the expiry of a registered domain back from 2030-03-01 to {expires}"
    );
}

/// An unpaid order cannot be resolved: resolving it as Registered would let a renewal send a
/// PROLONG for a domain nobody paid for. (Was a bug: resolve accepted AwaitingPayment.)
#[test]
fn resolve_of_unpaid_order_is_refused() {
    let mut w = World::new();
    w.apply(new_client("c1", person("1"), Some("IMPORTED_1-GPT")));
    w.apply(order_event("example.com", "c1", 1, false));
    for outcome in [Resolution::Registered { expires: None }, Resolution::Error] {
        let e = w.refuse(resolve("example.com", outcome));
        assert!(
            matches!(e, CoreError::Illegal(ref m) if m.contains("not paid")),
            "{e}"
        );
    }
    assert!(
        w.refuse(renew("example.com", 1))
            .to_string()
            .contains("AwaitingPayment")
    );
    assert!(w.s.requests.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

const CLIENTS: [&str; 3] = ["c0", "c1", "c2"];
const DOMAINS: [&str; 4] = ["example.ru", "example.com", "пример.рф", "test.org"];

/// One generated input; request references are indexes into the requests created so far.
#[derive(Debug, Clone)]
enum Op {
    CreateClient {
        c: usize,
        org: bool,
        import: bool,
    },
    UpdateClient {
        c: usize,
        org: bool,
    },
    Order {
        d: usize,
        c: usize,
        years: u8,
        paid: bool,
    },
    MarkPaid {
        d: usize,
    },
    Renew {
        d: usize,
        years: u8,
    },
    Cancel {
        d: usize,
    },
    Resolve {
        d: usize,
        ok: bool,
        date: bool,
    },
    Retry {
        r: usize,
    },
    Sent {
        r: usize,
    },
    SendUnknown {
        r: usize,
    },
    SendFailed {
        r: usize,
    },
    SendDeferred {
        r: usize,
    },
    Record {
        r: usize,
        ok: bool,
    },
    Ack {
        r: usize,
        task: bool,
    },
    Complete {
        r: usize,
        handle: bool,
        expires: bool,
    },
    Reject {
        r: usize,
    },
    Deadline {
        r: usize,
        on_time: bool,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS.len();
    let d = 0..DOMAINS.len();
    let dref = 0..4 * DOMAINS.len();
    // Mostly existing requests; 64 and up is an unknown id.
    let r = || prop_oneof![15 => 0..64usize, 1 => 64..70usize];
    prop_oneof![
        3 => (c.clone(), any::<bool>(), prop::bool::weighted(0.4))
            .prop_map(|(c, org, import)| Op::CreateClient { c, org, import }),
        1 => (c.clone(), any::<bool>()).prop_map(|(c, org)| Op::UpdateClient { c, org }),
        4 => (d.clone(), c, 1u8..=3, prop::bool::weighted(0.6))
            .prop_map(|(d, c, years, paid)| Op::Order { d, c, years, paid }),
        // Domain references past DOMAINS pick among the domains the op fits (see domain_ref).
        2 => dref.clone().prop_map(|d| Op::MarkPaid { d }),
        2 => (dref.clone(), 1u8..=2).prop_map(|(d, years)| Op::Renew { d, years }),
        1 => dref.clone().prop_map(|d| Op::Cancel { d }),
        1 => (dref, any::<bool>(), any::<bool>())
            .prop_map(|(d, ok, date)| Op::Resolve { d, ok, date }),
        2 => r().prop_map(|r| Op::Retry { r }),
        5 => r().prop_map(|r| Op::Sent { r }),
        1 => r().prop_map(|r| Op::SendUnknown { r }),
        1 => r().prop_map(|r| Op::SendFailed { r }),
        1 => r().prop_map(|r| Op::SendDeferred { r }),
        1 => (r(), any::<bool>()).prop_map(|(r, ok)| Op::Record { r, ok }),
        3 => (r(), any::<bool>()).prop_map(|(r, task)| Op::Ack { r, task }),
        4 => (r(), any::<bool>(), any::<bool>())
            .prop_map(|(r, handle, expires)| Op::Complete { r, handle, expires }),
        2 => r().prop_map(|r| Op::Reject { r }),
        3 => (r(), prop::bool::weighted(0.7)).prop_map(|(r, on_time)| Op::Deadline { r, on_time }),
    ]
}

/// How far the clock moves before an event: not at all, minutes, past a reply deadline, or
/// into a renewal window.
fn advance_strategy() -> impl Strategy<Value = SignedDuration> {
    prop_oneof![
        6 => Just(SignedDuration::ZERO),
        3 => (1i64..180).prop_map(SignedDuration::from_mins),
        2 => Just(hours(73)),
        1 => (200i64..400).prop_map(days),
    ]
}

/// Up to 40 random steps, after creating (most of) the clients so that orders can go ahead.
fn steps_strategy() -> impl Strategy<Value = Vec<(SignedDuration, Op)>> {
    let setup = prop::collection::vec(
        (any::<bool>(), prop::bool::weighted(0.4)),
        0..=CLIENTS.len(),
    );
    let steps = prop::collection::vec((advance_strategy(), op_strategy()), 1..=40);
    (setup, steps).prop_map(|(setup, steps)| {
        let created = setup
            .into_iter()
            .enumerate()
            .map(|(c, (org, import))| (SignedDuration::ZERO, Op::CreateClient { c, org, import }));
        created.chain(steps).collect()
    })
}

/// 256 cases (about a second in debug); `PROPTEST_CASES` raises it for a deeper search.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // Our files only: no proptest-regressions/ directory.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The invariants of DESIGN.md §4 as the core must keep them; each property test checks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inv {
    UnpaidSendsNothing,
    DomainRequestNeedsRegisteredClient,
    ChangesAreLogged,
    NoIllegalState,
    OneOpenRequestPerOwner,
    WaitingRequestsHaveDeadlines,
    HandlesNeverReused,
    NoticesFollowChanges,
}

fn client_status(c: &Client) -> String {
    format!("{:?}", c.status)
}

fn domain_status(d: &Domain) -> String {
    format!("{}/{:?}", d.status.as_str(), d.phase)
}

fn request_state(r: &Request) -> String {
    r.state.as_str().to_owned()
}

fn is_open(r: &Request) -> bool {
    !r.state.is_settled() && r.state != RequestState::TimedOut
}

fn is_waiting(r: &Request) -> bool {
    matches!(
        r.state,
        RequestState::Sent | RequestState::SendUnknown | RequestState::Acknowledged
    )
}

/// Which requests an op is most likely to be about.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// In the outbox (send outcomes).
    Queued,
    /// Not settled (replies).
    Unsettled,
    /// Waiting for the registrar (deadlines).
    Waiting,
    /// Failed or unsure (operator retries).
    Retryable,
}

impl Pick {
    fn fits(self, state: RequestState) -> bool {
        match self {
            Pick::Queued => state == RequestState::Queued,
            Pick::Unsettled => !state.is_settled(),
            Pick::Waiting => matches!(
                state,
                RequestState::Sent | RequestState::SendUnknown | RequestState::Acknowledged
            ),
            Pick::Retryable => matches!(
                state,
                RequestState::Rejected | RequestState::TimedOut | RequestState::SendUnknown
            ),
        }
    }
}

/// The model run: state, clock, ids, and what the checks need to remember.
struct Harness {
    s: MemState,
    ids: CountingIds,
    now: Timestamp,
    policy: Policy,
    /// Every request created so far, in order (what `Op` indexes refer to).
    reqs: Vec<RequestId>,
    /// Requests created for the current order of each domain (reset by a new order).
    order_reqs: BTreeMap<DomainName, Vec<RequestId>>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            s: MemState::default(),
            ids: CountingIds(0),
            now: t0(),
            policy: Policy::default(),
            reqs: Vec::new(),
            order_reqs: BTreeMap::new(),
        }
    }

    /// The request an op refers to: three times in four one that `pick` makes relevant (so
    /// that events mostly hit requests they can move), else any request, or (64 and up) an
    /// unknown id.
    fn req_ref(&self, r: usize, pick: Pick) -> RequestId {
        if r >= 64 || self.reqs.is_empty() {
            return RequestId(Uuid::from_u128(u128::MAX - r as u128));
        }
        let relevant: Vec<RequestId> = self
            .reqs
            .iter()
            .copied()
            .filter(|id| pick.fits(self.s.requests[id].state))
            .collect();
        if r < 48 && !relevant.is_empty() {
            relevant[r % relevant.len()]
        } else {
            self.reqs[r % self.reqs.len()]
        }
    }

    /// `DOMAINS[d]`, or for `d` past the list one of the ordered domains in one of `statuses`
    /// (any status when empty), if there is one.
    fn domain_ref(&self, d: usize, statuses: &[DomainStatus]) -> DomainName {
        let fitting: Vec<&DomainName> = self
            .s
            .domains
            .values()
            .filter(|x| statuses.is_empty() || statuses.contains(&x.status))
            .map(|x| &x.name)
            .collect();
        match d.checked_sub(DOMAINS.len()) {
            Some(i) if !fitting.is_empty() => fitting[i % fitting.len()].clone(),
            _ => dn(DOMAINS[d % DOMAINS.len()]),
        }
    }

    fn registrant(c: usize, org: bool) -> Registrant {
        if org {
            organization(CLIENTS[c])
        } else {
            person(CLIENTS[c])
        }
    }

    fn event(&self, op: &Op) -> Event {
        let today = self.now.to_zoned(jiff::tz::TimeZone::UTC).date();
        match *op {
            Op::CreateClient { c, org, import } => Event::CreateClient(NewClient {
                id: cid(CLIENTS[c]),
                registrant: Self::registrant(c, org),
                contact: contact(),
                existing_handle: import.then(|| handle(&format!("IMP{c}-GPT"))),
            }),
            Op::UpdateClient { c, org } => Event::UpdateClient {
                id: cid(CLIENTS[c]),
                registrant: Self::registrant(c, org),
                contact: contact(),
            },
            Op::Order { d, c, years, paid } => order_event(DOMAINS[d], CLIENTS[c], years, paid),
            Op::MarkPaid { d } => Event::MarkPaid {
                domain: self.domain_ref(d, &[DomainStatus::AwaitingPayment]),
            },
            Op::Renew { d, years } => Event::Renew {
                domain: self.domain_ref(d, &[DomainStatus::Registered]),
                years,
                actor: Actor::Scheduler,
            },
            Op::Cancel { d } => Event::Cancel {
                domain: self.domain_ref(d, &[]),
                note: None,
            },
            Op::Resolve { d, ok, date } => Event::Resolve {
                domain: self.domain_ref(d, &[]),
                outcome: if ok {
                    Resolution::Registered {
                        expires: date.then(|| today.saturating_add(Span::new().years(2))),
                    }
                } else {
                    Resolution::Error
                },
                note: "operator".into(),
            },
            Op::Retry { r } => retry(self.req_ref(r, Pick::Retryable)),
            Op::Sent { r } => sent(self.req_ref(r, Pick::Queued)),
            Op::SendUnknown { r } => Event::SendUnknown {
                request: self.req_ref(r, Pick::Queued),
                detail: "connection reset after DATA".into(),
                copy: None,
            },
            Op::SendFailed { r } => Event::SendFailed {
                request: self.req_ref(r, Pick::Queued),
                reason: "550 5.7.1 rejected".into(),
                copy: None,
            },
            Op::SendDeferred { r } => Event::SendDeferred {
                request: self.req_ref(r, Pick::Queued),
                reason: "421 4.3.2 try again later".into(),
                attempt: 1,
                retry_at: self.now + SignedDuration::from_mins(5),
            },
            Op::Record { r, ok } => Event::RecordOutcome {
                request: self.req_ref(r, Pick::Unsettled),
                outcome: if ok {
                    ReplyOutcome::Completed {
                        handle: None,
                        expires: None,
                    }
                } else {
                    ReplyOutcome::Rejected {
                        reason: "seen refused in the web panel".into(),
                    }
                },
                note: "operator".into(),
            },
            Op::Ack { r, task } => reply(
                self.req_ref(r, Pick::Unsettled),
                ReplyOutcome::Acknowledged {
                    task_id: task.then(|| format!("T{r}")),
                },
            ),
            Op::Complete {
                r,
                handle: named,
                expires,
            } => {
                let id = self.req_ref(r, Pick::Unsettled);
                let confirmed = self
                    .s
                    .requests
                    .get(&id)
                    .map_or_else(|| "NONE".to_owned(), |q| q.client_id.as_str().to_owned());
                reply(
                    id,
                    ReplyOutcome::Completed {
                        handle: named.then(|| handle(&format!("R01{confirmed}-GPT"))),
                        expires: expires.then(|| today.saturating_add(Span::new().years(1))),
                    },
                )
            }
            Op::Reject { r } => {
                rejected(self.req_ref(r, Pick::Unsettled), "refused by the registry")
            }
            Op::Deadline { r, .. } => deadline(self.req_ref(r, Pick::Waiting)),
        }
    }

    /// Applies one step and runs the chosen checks; `Err` names the broken invariant.
    fn step(&mut self, advance: SignedDuration, op: &Op, checks: &[Inv]) -> Result<(), String> {
        self.now += advance;
        if let Op::Deadline { r, on_time: true } = *op {
            // The scheduler fires when the deadline is due: move the clock there (forward only).
            let id = self.req_ref(r, Pick::Waiting);
            if let Some(at) = self.s.requests.get(&id).and_then(|q| q.reply_deadline) {
                self.now = self.now.max(at);
            }
        }
        let event = self.event(op);
        let mut ctx = Ctx {
            now: self.now,
            ids: &mut self.ids,
            policy: &self.policy,
        };
        // A panic here fails the property too: every event must return Ok or Err.
        let Ok(t) = apply(&self.s, event.clone(), &mut ctx) else {
            return Ok(()); // refused: nothing is committed, so nothing changed
        };
        for inv in checks {
            check_transition(*inv, &self.s, &t)
                .map_err(|m| format!("{inv:?}: {m}\n  event: {event:?}"))?;
        }
        if let Event::OrderDomain(o) = &event {
            self.order_reqs.remove(&o.name);
        }
        for r in &t.requests {
            if !self.s.requests.contains_key(&r.id) {
                self.reqs.push(r.id);
                if let Some(d) = &r.domain {
                    self.order_reqs.entry(d.clone()).or_default().push(r.id);
                }
            }
        }
        self.s.commit(&t);
        for inv in checks {
            check_state(*inv, self).map_err(|m| format!("{inv:?}: {m}\n  event: {event:?}"))?;
        }
        Ok(())
    }
}

fn run(steps: &[(SignedDuration, Op)], checks: &[Inv]) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    for (i, (advance, op)) in steps.iter().enumerate() {
        h.step(*advance, op, checks)
            .map_err(|m| TestCaseError::fail(format!("step {i}: {m}")))?;
    }
    Ok(())
}

/// Checks on a transition against the state it was computed from (before it is committed).
fn check_transition(inv: Inv, before: &MemState, t: &Transition) -> Result<(), String> {
    match inv {
        Inv::NoticesFollowChanges => {
            // The list, stated on (status before, status after), independently of
            // core::notice: every such change carries its notice, and no notice comes alone.
            let mut want = Vec::new();
            for d in &t.domains {
                let old = before.domains.get(&d.name);
                let was = old.map(|o| o.status);
                // Issue 9 item 3: a conflict that appears is told to the operators.
                let conflict_appears =
                    d.phase == Phase::Conflict && old.is_none_or(|o| o.phase != Phase::Conflict);
                let kind = match (was, d.status) {
                    _ if conflict_appears => Some("operator.domain_conflict"),
                    (Some(DomainStatus::Renewing), DomainStatus::Registered)
                        if old.and_then(|o| o.expires) != d.expires =>
                    {
                        Some("domain.renewed")
                    }
                    (Some(DomainStatus::Registered | DomainStatus::Renewing), _)
                        if d.status == DomainStatus::Registered =>
                    {
                        None
                    }
                    (_, DomainStatus::Registered) => Some("domain.registered"),
                    (Some(DomainStatus::Renewing), DomainStatus::Error) => {
                        Some("domain.renewal_failed")
                    }
                    (
                        Some(DomainStatus::Registering | DomainStatus::AwaitingPayment),
                        DomainStatus::Error,
                    ) => Some("domain.registration_failed"),
                    _ => None,
                };
                if let Some(k) = kind {
                    want.push((k.to_owned(), d.name.clone()));
                }
            }
            let mut got: Vec<(String, DomainName)> = t
                .effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Notify(n) => Some((n.kind.clone(), n.domain.clone()?)),
                    _ => None,
                })
                .collect();
            want.sort();
            got.sort();
            if want != got {
                return Err(format!(
                    "notices {got:?}, but the changes call for {want:?}"
                ));
            }
        }
        Inv::UnpaidSendsNothing => {
            for r in t
                .requests
                .iter()
                .filter(|r| !before.requests.contains_key(&r.id))
            {
                let Some(name) = &r.domain else { continue };
                let d = t
                    .domains
                    .iter()
                    .find(|d| &d.name == name)
                    .or_else(|| before.domains.get(name));
                if let Some(d) = d
                    && (!d.paid || d.status == DomainStatus::AwaitingPayment)
                {
                    return Err(format!(
                        "an unpaid order got a request: {} {} for {name} (domain {}, paid = {})",
                        r.kind.as_str(),
                        r.id,
                        domain_status(d),
                        d.paid
                    ));
                }
            }
        }
        Inv::DomainRequestNeedsRegisteredClient => {
            for r in t.requests.iter().filter(|r| {
                r.kind == RequestKind::DomainRegistration && !before.requests.contains_key(&r.id)
            }) {
                let c = t
                    .clients
                    .iter()
                    .find(|c| c.id == r.client_id)
                    .or_else(|| before.clients.get(&r.client_id));
                match c {
                    Some(c) if c.status == ClientStatus::Registered => {}
                    other => {
                        return Err(format!(
                            "domain request {} for {:?} created while client {} is {:?}",
                            r.id,
                            r.domain,
                            r.client_id,
                            other.map(|c| c.status)
                        ));
                    }
                }
            }
        }
        Inv::ChangesAreLogged => {
            for c in &t.clients {
                let entries: Vec<&LogDraft> = t
                    .log
                    .iter()
                    .filter(|e| e.action.starts_with("client.") && e.client.as_ref() == Some(&c.id))
                    .collect();
                let old = before.clients.get(&c.id).map(client_status);
                check_chain(&format!("client {}", c.id), old, client_status(c), &entries)?;
            }
            for d in &t.domains {
                let entries: Vec<&LogDraft> = t
                    .log
                    .iter()
                    .filter(|e| {
                        e.action.starts_with("domain.") && e.domain.as_ref() == Some(&d.name)
                    })
                    .collect();
                let old = before.domains.get(&d.name).map(domain_status);
                check_chain(
                    &format!("domain {}", d.name),
                    old,
                    domain_status(d),
                    &entries,
                )?;
            }
            for r in &t.requests {
                let entries: Vec<&LogDraft> = t
                    .log
                    .iter()
                    .filter(|e| {
                        e.action.starts_with("request.")
                            && e.request == Some(r.id)
                            && e.status_after.is_some()
                    })
                    .collect();
                let old = before.requests.get(&r.id).map(request_state);
                check_chain(
                    &format!("request {}", r.id),
                    old,
                    request_state(r),
                    &entries,
                )?;
            }
            // And the other way round: a logged status change names an entity that changed.
            for e in t.log.iter().filter(|e| e.status_after.is_some()) {
                let found = match e.action.split('.').next() {
                    Some("client") => t.clients.iter().any(|c| Some(&c.id) == e.client.as_ref()),
                    Some("domain") => t.domains.iter().any(|d| Some(&d.name) == e.domain.as_ref()),
                    Some("request") => t.requests.iter().any(|r| Some(r.id) == e.request),
                    _ => false,
                };
                if !found {
                    return Err(format!(
                        "log entry {} claims a status change ({:?} -> {:?}) of an entity the \
                         transition does not change",
                        e.action, e.status_before, e.status_after
                    ));
                }
            }
        }
        Inv::HandlesNeverReused => {
            if let Some(n) = t.handle_counter
                && n <= before.counter
            {
                return Err(format!(
                    "handle counter went from {} to {n}: a handle number is reused",
                    before.counter
                ));
            }
            for r in t.requests.iter().filter(|r| {
                r.kind == RequestKind::ClientRegistration
                    && r.retry_of.is_none()
                    && !before.requests.contains_key(&r.id)
            }) {
                if t.handle_counter.is_none() {
                    return Err(format!(
                        "client request {} got handle {:?} without a new counter value",
                        r.id, r.handle
                    ));
                }
            }
        }
        Inv::NoIllegalState | Inv::OneOpenRequestPerOwner | Inv::WaitingRequestsHaveDeadlines => {}
    }
    Ok(())
}

/// The log entries of one entity in one transition must run from its old status to its new one.
fn check_chain(
    what: &str,
    old: Option<String>,
    new: String,
    entries: &[&LogDraft],
) -> Result<(), String> {
    let changed = old.as_deref() != Some(new.as_str());
    let Some(first) = entries.first() else {
        return if changed {
            Err(format!(
                "{what} changed {old:?} -> {new} with no log entry in the same transition"
            ))
        } else {
            Ok(())
        };
    };
    if first.status_before != old {
        return Err(format!(
            "{what}: first log entry {} says status_before {:?}, the state had {old:?}",
            first.action, first.status_before
        ));
    }
    for pair in entries.windows(2) {
        if pair[0].status_after != pair[1].status_before {
            return Err(format!(
                "{what}: log entries {} -> {} do not chain ({:?} then {:?})",
                pair[0].action, pair[1].action, pair[0].status_after, pair[1].status_before
            ));
        }
    }
    let last = entries.last().unwrap_or(first);
    if last.status_after.as_deref() != Some(new.as_str()) {
        return Err(format!(
            "{what}: last log entry {} says status_after {:?}, the transition sets {new}",
            last.action, last.status_after
        ));
    }
    Ok(())
}

/// Checks on the committed state.
fn check_state(inv: Inv, h: &Harness) -> Result<(), String> {
    let s = &h.s;
    match inv {
        Inv::UnpaidSendsNothing => {
            for d in s.domains.values() {
                let reqs = h.order_reqs.get(&d.name).map_or(&[][..], |v| &v[..]);
                if (d.status == DomainStatus::AwaitingPayment || !d.paid) && !reqs.is_empty() {
                    return Err(format!(
                        "unpaid order {} ({}, paid = {}) has requests {reqs:?}",
                        d.name,
                        domain_status(d),
                        d.paid
                    ));
                }
            }
        }
        Inv::ChangesAreLogged => {
            for (i, e) in s.log.iter().enumerate() {
                if e.seq != i as u64 + 1 {
                    return Err(format!(
                        "log entry {i} has seq {} (expected {})",
                        e.seq,
                        i + 1
                    ));
                }
            }
        }
        Inv::NoIllegalState => check_legal(s)?,
        Inv::OneOpenRequestPerOwner => {
            let mut per_domain: BTreeMap<&DomainName, Vec<RequestId>> = BTreeMap::new();
            let mut per_client: BTreeMap<&ClientId, Vec<RequestId>> = BTreeMap::new();
            for r in s.requests.values().filter(|r| is_open(r)) {
                match (&r.kind, &r.domain) {
                    (RequestKind::ClientRegistration, _) => {
                        per_client.entry(&r.client_id).or_default().push(r.id);
                    }
                    (_, Some(d)) => per_domain.entry(d).or_default().push(r.id),
                    (_, None) => {}
                }
            }
            for (d, ids) in per_domain {
                if ids.len() > 1 {
                    let states: Vec<&str> =
                        ids.iter().map(|id| s.requests[id].state.as_str()).collect();
                    return Err(format!(
                        "domain {d} has {} open requests {ids:?} in states {states:?}",
                        ids.len()
                    ));
                }
            }
            for (c, ids) in per_client {
                if ids.len() > 1 {
                    let states: Vec<&str> =
                        ids.iter().map(|id| s.requests[id].state.as_str()).collect();
                    return Err(format!(
                        "client {c} has {} open client requests {ids:?} in states {states:?}",
                        ids.len()
                    ));
                }
            }
        }
        Inv::WaitingRequestsHaveDeadlines => {
            for r in s.requests.values().filter(|r| is_waiting(r)) {
                match (r.reply_deadline, s.deadlines.get(&r.id)) {
                    (Some(want), Some(armed)) if want == *armed => {}
                    (want, armed) => {
                        return Err(format!(
                            "request {} is {} and waits for the registrar, but its deadline is \
                             {want:?} and the armed one {armed:?}: it can never time out",
                            r.id,
                            r.state.as_str()
                        ));
                    }
                }
            }
        }
        Inv::HandlesNeverReused => {
            let mut owner: BTreeMap<&Handle, &ClientId> = BTreeMap::new();
            for r in s
                .requests
                .values()
                .filter(|r| r.kind == RequestKind::ClientRegistration)
            {
                let Some(hd) = &r.handle else {
                    return Err(format!("client request {} has no handle", r.id));
                };
                if let Some(other) = owner.insert(hd, &r.client_id)
                    && other != &r.client_id
                {
                    return Err(format!(
                        "handle {hd} was given to both client {other} and client {}",
                        r.client_id
                    ));
                }
            }
        }
        Inv::DomainRequestNeedsRegisteredClient | Inv::NoticesFollowChanges => {}
    }
    Ok(())
}

fn check_legal(s: &MemState) -> Result<(), String> {
    for c in s.clients.values() {
        if c.status == ClientStatus::Registered && c.handle.is_none() {
            return Err(format!("client {} is Registered without a handle", c.id));
        }
        if c.status == ClientStatus::Registering {
            let r = c.open_request.and_then(|id| s.requests.get(&id));
            let ok = r.is_some_and(|r| {
                r.kind == RequestKind::ClientRegistration && r.client_id == c.id && is_open(r)
            });
            if !ok {
                return Err(format!(
                    "client {} is Registering but its open request is {:?} ({:?})",
                    c.id,
                    c.open_request,
                    r.map(|r| r.state)
                ));
            }
        }
    }
    for d in s.domains.values() {
        let Some(client) = s.clients.get(&d.client_id) else {
            return Err(format!(
                "domain {} belongs to unknown client {}",
                d.name, d.client_id
            ));
        };
        match d.status {
            DomainStatus::Registered if d.expires.is_none() => {
                return Err(format!("domain {} is Registered without an expiry", d.name));
            }
            DomainStatus::AwaitingPayment
                if d.paid || d.phase != Phase::WaitingForPayment || d.open_request.is_some() =>
            {
                return Err(format!(
                    "domain {} is AwaitingPayment with paid = {}, phase {:?}, open {:?}",
                    d.name, d.paid, d.phase, d.open_request
                ));
            }
            DomainStatus::Registering | DomainStatus::Renewing => match d.open_request {
                Some(id) => {
                    let Some(r) = s.requests.get(&id) else {
                        return Err(format!("domain {} points to missing request {id}", d.name));
                    };
                    let kind = if d.status == DomainStatus::Renewing {
                        RequestKind::DomainRenewal
                    } else {
                        RequestKind::DomainRegistration
                    };
                    if r.domain.as_ref() != Some(&d.name) || r.kind != kind || !is_open(r) {
                        return Err(format!(
                            "domain {} ({}) points to request {id}: {} for {:?} in state {}",
                            d.name,
                            domain_status(d),
                            r.kind.as_str(),
                            r.domain,
                            r.state.as_str()
                        ));
                    }
                }
                None => {
                    if d.status != DomainStatus::Registering
                        || d.phase != Phase::WaitingForClient
                        || client.status != ClientStatus::Registering
                    {
                        return Err(format!(
                            "domain {} is {} with no open request while client {} is {:?}",
                            d.name,
                            domain_status(d),
                            client.id,
                            client.status
                        ));
                    }
                }
            },
            _ => {}
        }
    }
    for r in s.requests.values() {
        if !s.clients.contains_key(&r.client_id) {
            return Err(format!(
                "request {} names unknown client {}",
                r.id, r.client_id
            ));
        }
        let needs_domain = r.kind != RequestKind::ClientRegistration;
        if needs_domain != r.domain.as_ref().is_some_and(|d| s.domains.contains_key(d)) {
            return Err(format!(
                "{} request {} names domain {:?}",
                r.kind.as_str(),
                r.id,
                r.domain
            ));
        }
        let queued = r.state == RequestState::Queued;
        if queued != s.outbox.contains(&r.id) {
            return Err(format!(
                "request {} is {} but {} the outbox",
                r.id,
                r.state.as_str(),
                if queued { "not in" } else { "in" }
            ));
        }
    }
    for id in &s.outbox {
        if !s.requests.contains_key(id) {
            return Err(format!("the outbox holds unknown request {id}"));
        }
    }
    for id in s.deadlines.keys() {
        match s.requests.get(id) {
            Some(r) if is_waiting(r) => {}
            other => {
                return Err(format!(
                    "a deadline is armed for request {id} in state {:?}",
                    other.map(|r| r.state)
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// An AwaitingPayment or unpaid domain never has a request of its current order.
    #[test]
    fn prop_unpaid_order_never_queues_a_request(steps in steps_strategy()) {
        run(&steps, &[Inv::UnpaidSendsNothing])?;
    }

    /// A domain registration request is only ever created for a Registered client.
    #[test]
    fn prop_domain_request_only_for_registered_client(steps in steps_strategy()) {
        run(&steps, &[Inv::DomainRequestNeedsRegisteredClient])?;
    }

    /// Every status change is in the log of the same transition; sequence numbers have no gaps.
    #[test]
    fn prop_every_change_is_logged(steps in steps_strategy()) {
        run(&steps, &[Inv::ChangesAreLogged])?;
    }

    /// Handles, expiries, open requests, outbox and deadlines always agree with the statuses.
    #[test]
    fn prop_no_illegal_state(steps in steps_strategy()) {
        run(&steps, &[Inv::NoIllegalState])?;
    }

    /// At most one open (unsettled, not TimedOut) request per domain and per client.
    #[test]
    fn prop_at_most_one_open_request_per_owner(steps in steps_strategy()) {
        run(&steps, &[Inv::OneOpenRequestPerOwner])?;
    }

    /// Every request waiting for the registrar has its deadline armed, so silence is noticed.
    #[test]
    fn prop_waiting_request_has_armed_deadline(steps in steps_strategy()) {
        run(&steps, &[Inv::WaitingRequestsHaveDeadlines])?;
    }

    /// No state change that has a notice type commits without its notice (and no notice
    /// without its change): domain registered, registration failed, renewed, renewal failed.
    #[test]
    fn prop_changes_carry_their_notices(steps in steps_strategy()) {
        run(&steps, &[Inv::NoticesFollowChanges])?;
    }

    /// The handle counter only grows, and no handle is given to two clients.
    #[test]
    fn prop_handles_are_never_reused(steps in steps_strategy()) {
        run(&steps, &[Inv::HandlesNeverReused])?;
    }
}
