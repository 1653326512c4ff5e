//! Tests of the sled store in a temporary directory. The reference is [`MemState`]: every event
//! is also computed on an in-memory twin, the two transitions must be equal (the store reads
//! state as the model does), and after every event, and after a reopen, every read of the
//! store (entities, indexes, log, outbox, deadlines, counter, counts) must agree with the twin.

use std::path::PathBuf;

use jiff::civil::{Date, date};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::core::{
    Actor, ClientStatus, Contact, DomainOrder, Evidence, Handle, IdSource, LogDraft, MemState,
    Nameserver, NewClient, Person, Phase, Policy, Registrant, ReplyOutcome, RequestKind,
    Resolution,
};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Request ids from a counter (deterministic, in creation order).
#[derive(Clone)]
struct CountingIds(u128);

impl IdSource for CountingIds {
    fn request_id(&mut self) -> RequestId {
        self.0 += 1;
        RequestId(Uuid::from_u128(self.0))
    }
}

const CACHE_BYTES: u64 = 4 << 20;

fn t0() -> Timestamp {
    "2025-03-01T09:00:00Z".parse().unwrap()
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn dn(name: &str) -> DomainName {
    DomainName::parse(name).unwrap()
}

fn cid(id: &str) -> ClientId {
    ClientId::parse(id).unwrap()
}

fn person(tag: &str) -> Registrant {
    Registrant::Person(Person {
        fio_ru: format!("Иванов Иван {tag}"),
        fio_en: format!("Ivanov Ivan {tag}"),
        passport: vec!["4500 123456".into(), "ОВД Тверского р-на".into()],
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

fn create(id: &str, import: Option<&str>) -> Event {
    Event::CreateClient(NewClient {
        id: cid(id),
        registrant: person(id),
        contact: Contact {
            name: id.into(),
            email: format!("{id}@example.com"),
            phone: None,
        },
        existing_handle: import.map(|h| Handle::parse(h).unwrap()),
    })
}

fn order(name: &str, client: &str, paid: bool) -> Event {
    Event::OrderDomain(DomainOrder {
        name: dn(name),
        client_id: cid(client),
        years: 1,
        nameservers: vec![Nameserver::parse("ns1.hoster.example").unwrap()],
        order_id: format!("order-{name}"),
        description: vec![],
        paid,
        auto_renew: true,
    })
}

fn sent(request: RequestId) -> Event {
    Event::Sent {
        request,
        detail: "250 2.0.0 Ok".into(),
        copy: Some("Subject: NEW\n\npassword: ********\n".into()),
    }
}

fn reply(request: RequestId, outcome: ReplyOutcome) -> Event {
    Event::Reply {
        request,
        outcome,
        evidence: Evidence {
            rule: Some("r01.test".into()),
            correlation: Some("message-id".into()),
            ..Evidence::default()
        },
    }
}

fn ack(request: RequestId) -> Event {
    reply(
        request,
        ReplyOutcome::Acknowledged {
            task_id: Some("T-1".into()),
        },
    )
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

fn rejected(request: RequestId) -> Event {
    reply(
        request,
        ReplyOutcome::Rejected {
            reason: "refused".into(),
        },
    )
}

/// A store in a temporary directory plus its in-memory twin.
struct Fixture {
    dir: tempfile::TempDir,
    store: Option<Store>,
    twin: MemState,
    ids: CountingIds,
    now: Timestamp,
    policy: Policy,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir.path().join("db"));
        Fixture {
            dir,
            store: Some(store),
            twin: MemState::default(),
            ids: CountingIds(0),
            now: t0(),
            policy: Policy::default(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    /// Closes the store and opens it again from disk.
    fn reopen(&mut self) {
        drop(self.store.take());
        self.store = Some(open_store(&self.path()));
    }

    /// Applies `event` to the store and the twin; the two transitions must be equal.
    fn try_apply(&mut self, event: Event) -> Result<Applied, ApplyError> {
        let mut twin_ids = self.ids.clone();
        let mut twin_ctx = Ctx {
            now: self.now,
            ids: &mut twin_ids,
            policy: &self.policy,
        };
        let expected = core::apply(&self.twin, event.clone(), &mut twin_ctx);
        let mut ctx = Ctx {
            now: self.now,
            ids: &mut self.ids,
            policy: &self.policy,
        };
        let store = self.store.as_ref().expect("store is open");
        let got = store.apply(event.clone(), &mut ctx);
        match (&expected, &got) {
            (Ok(want), Ok(applied)) => {
                assert_eq!(
                    &applied.transition, want,
                    "the store computed another transition than the model for {event:?}"
                );
                self.twin.commit(want);
            }
            (Err(want), Err(ApplyError::Core(e))) => assert_eq!(e, want),
            _ => panic!("store and model disagree on {event:?}: {expected:?} vs {got:?}"),
        }
        got
    }

    #[track_caller]
    fn apply(&mut self, event: Event) -> Applied {
        let shown = format!("{event:?}");
        self.try_apply(event)
            .unwrap_or_else(|e| panic!("{shown} was refused: {e}"))
    }

    /// The single request of `kind` the transition queued.
    #[track_caller]
    fn queued(applied: &Applied, kind: RequestKind) -> RequestId {
        let found: Vec<RequestId> = applied
            .transition
            .requests
            .iter()
            .filter(|r| r.kind == kind && r.state == RequestState::Queued)
            .map(|r| r.id)
            .collect();
        assert_eq!(found.len(), 1, "expected one new {} request", kind.as_str());
        found[0]
    }

    /// Every read of the store agrees with the twin.
    #[track_caller]
    fn assert_matches_twin(&self) {
        assert_store_matches(self.store(), &self.twin);
    }
}

/// Opens the store. Right after a drop in the same process, sled's I/O threads may still hold
/// the lock file for a moment, so a `Locked` answer is retried for up to two seconds.
fn open_store(path: &std::path::Path) -> Store {
    let mut tries = 0;
    loop {
        match Store::open(path, CACHE_BYTES) {
            Ok(s) => return s,
            Err(StoreError::Locked { .. }) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening the store at {} failed: {e}", path.display()),
        }
    }
}

#[track_caller]
fn assert_store_matches(store: &Store, twin: &MemState) {
    // Entities.
    for c in twin.clients.values() {
        assert_eq!(
            store.client(&c.id).unwrap().as_ref(),
            Some(c),
            "client {}",
            c.id
        );
    }
    for r in twin.requests.values() {
        assert_eq!(
            store.request(r.id).unwrap().as_ref(),
            Some(r),
            "request {}",
            r.id
        );
    }
    let all: Vec<Domain> = twin.domains.values().cloned().collect();
    assert_eq!(
        store.list_domains(None, None, usize::MAX).unwrap(),
        all,
        "all domains, in name order"
    );
    // Domain indexes by status, by client, and both.
    let clients: Vec<&ClientId> = twin.clients.keys().collect();
    for status in DomainStatus::ALL {
        let want: Vec<Domain> = all.iter().filter(|d| d.status == status).cloned().collect();
        assert_eq!(
            store.list_domains(Some(status), None, usize::MAX).unwrap(),
            want,
            "status index {status:?}"
        );
        for &c in &clients {
            let want: Vec<Domain> = want.iter().filter(|d| &d.client_id == c).cloned().collect();
            assert_eq!(
                store
                    .list_domains(Some(status), Some(c), usize::MAX)
                    .unwrap(),
                want,
                "status {status:?} and client {c}"
            );
        }
    }
    for &c in &clients {
        let want: Vec<Domain> = all.iter().filter(|d| &d.client_id == c).cloned().collect();
        assert_eq!(
            store.list_domains(None, Some(c), usize::MAX).unwrap(),
            want,
            "client index {c}"
        );
        assert_eq!(
            StateView::domains_of_client(store, c).unwrap(),
            want,
            "domains_of_client {c}"
        );
    }
    // Requests by state, oldest (smallest id) first.
    for state in RequestState::ALL {
        let want: Vec<Request> = twin
            .requests
            .values()
            .filter(|r| r.state == state)
            .cloned()
            .collect();
        assert_eq!(
            store.requests_in_state(state, usize::MAX).unwrap(),
            want,
            "request state index {state:?}"
        );
    }
    // The log: global and per scope, in sequence order.
    assert_eq!(
        store.log_since(0, usize::MAX).unwrap(),
        twin.log,
        "global log"
    );
    assert_eq!(store.log_seq().unwrap(), twin.log.len() as u64, "log_seq");
    for d in twin.domains.keys() {
        let want: Vec<LogEntry> = twin
            .log
            .iter()
            .filter(|e| e.entry.domain.as_ref() == Some(d))
            .cloned()
            .collect();
        let scope = LogScope::Domain(d.clone());
        assert_eq!(
            store.log_of(&scope, 0, usize::MAX).unwrap(),
            want,
            "log of {d}"
        );
    }
    for c in twin.clients.keys() {
        let want: Vec<LogEntry> = twin
            .log
            .iter()
            .filter(|e| e.entry.client.as_ref() == Some(c))
            .cloned()
            .collect();
        let scope = LogScope::Client(c.clone());
        assert_eq!(
            store.log_of(&scope, 0, usize::MAX).unwrap(),
            want,
            "log of {c}"
        );
    }
    for r in twin.requests.keys() {
        let want: Vec<LogEntry> = twin
            .log
            .iter()
            .filter(|e| e.entry.request.or(e.entry.evidence.request_id) == Some(*r))
            .cloned()
            .collect();
        let scope = LogScope::Request(*r);
        assert_eq!(
            store.log_of(&scope, 0, usize::MAX).unwrap(),
            want,
            "log of {r}"
        );
    }
    // Outbox, deadlines, counter.
    let outbox: Vec<RequestId> = twin.outbox.iter().copied().collect();
    assert_eq!(store.outbox(usize::MAX).unwrap(), outbox, "outbox");
    let far = t0() + SignedDuration::from_hours(24 * 365 * 50);
    let armed: Vec<RequestId> = twin.deadlines.keys().copied().collect();
    assert_eq!(store.due_deadlines(far).unwrap(), armed, "armed deadlines");
    for (id, at) in &twin.deadlines {
        assert!(
            store.due_deadlines(*at).unwrap().contains(id),
            "{id} due at {at}"
        );
        let just_before = *at - SignedDuration::from_millis(1);
        assert!(
            !store.due_deadlines(just_before).unwrap().contains(id),
            "{id} not due before {at}"
        );
    }
    assert_eq!(
        StateView::handle_counter(store).unwrap(),
        twin.counter,
        "handle counter"
    );
    // Expiry index: earliest first, then by name.
    let mut expiring: Vec<&Domain> = all.iter().filter(|d| d.expires.is_some()).collect();
    expiring.sort_by(|a, b| (a.expires, &a.name).cmp(&(b.expires, &b.name)));
    let got: Vec<DomainName> = store
        .domains_expiring_by(date(9999, 12, 31))
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    let want: Vec<DomainName> = expiring.iter().map(|d| d.name.clone()).collect();
    assert_eq!(got, want, "expiry index");
    // Counts.
    let counts = store.counts().unwrap();
    for (status, n) in &counts.domains {
        let want = all.iter().filter(|d| d.status.as_str() == status).count() as u64;
        assert_eq!(*n, want, "count of {status} domains");
    }
    for (state, n) in &counts.requests {
        let want = twin
            .requests
            .values()
            .filter(|r| r.state.as_str() == state)
            .count() as u64;
        assert_eq!(*n, want, "count of {state} requests");
    }
    assert_eq!(counts.outbox, twin.outbox.len() as u64);
    assert_eq!(counts.awaiting_reply, twin.deadlines.len() as u64);
    assert_eq!(counts.log_seq, twin.log.len() as u64);
}

/// A day in the life: imported and new clients, waiting domains, an IDN order, replies of every
/// kind, a retry, a SendUnknown, a timeout, a cancel, a resolve and a renewal. Checks the
/// store against the twin after every event.
fn scripted(f: &mut Fixture) {
    f.apply(create("c1", None));
    f.apply(create("c2", Some("MYCO_7_3-GPT")));
    let a = f.apply(order("a.ru", "c1", true));
    let client_req = Fixture::queued(&a, RequestKind::ClientRegistration);
    f.apply(order("b.com", "c1", true));
    f.apply(order("пример.рф", "c2", false));
    let c = f.apply(order("c.su", "c2", true));
    let c_req = Fixture::queued(&c, RequestKind::DomainRegistration);
    f.assert_matches_twin();

    f.apply(sent(client_req));
    f.apply(ack(client_req));
    let released = f.apply(completed(client_req, None));
    let domain_reqs: Vec<RequestId> = released
        .transition
        .requests
        .iter()
        .filter(|r| r.kind == RequestKind::DomainRegistration)
        .map(|r| r.id)
        .collect();
    assert_eq!(domain_reqs.len(), 2);
    let a_req = f.twin.domains[&dn("a.ru")].open_request.unwrap();
    let b_req = f.twin.domains[&dn("b.com")].open_request.unwrap();
    f.assert_matches_twin();

    f.now += hours(1);
    f.apply(sent(c_req));
    f.apply(completed(c_req, Some(date(2027, 5, 1))));
    f.apply(sent(a_req));
    f.apply(rejected(a_req));
    f.apply(Event::Retry { request: a_req });
    f.apply(Event::SendUnknown {
        request: b_req,
        detail: "connection reset".into(),
        copy: None,
    });
    f.apply(Event::Cancel {
        domain: dn("пример.рф"),
        note: None,
    });
    f.assert_matches_twin();

    f.now += hours(80);
    f.apply(Event::DeadlinePassed { request: b_req });
    f.apply(Event::Resolve {
        domain: dn("b.com"),
        outcome: Resolution::Registered { expires: None },
        note: "checked".into(),
    });
    f.apply(Event::Renew {
        domain: dn("b.com"),
        years: 2,
        actor: Actor::Scheduler,
    });
    f.assert_matches_twin();
}

// ---------------------------------------------------------------------------------------------
// Durability and indexes
// ---------------------------------------------------------------------------------------------

#[test]
fn everything_survives_a_reopen() {
    let mut f = Fixture::new();
    scripted(&mut f);
    let before_seq = f.store().log_seq().unwrap();
    f.reopen();
    f.assert_matches_twin();
    assert_eq!(f.store().log_seq().unwrap(), before_seq);

    // Spot checks that the twin is not trivially empty.
    let s = f.store();
    assert_eq!(
        s.domain(&dn("c.su")).unwrap().unwrap().status,
        DomainStatus::Registered
    );
    assert_eq!(
        s.domain(&dn("xn--e1afmkfd.xn--p1ai"))
            .unwrap()
            .unwrap()
            .status,
        DomainStatus::Cancelled
    );
    assert_eq!(
        s.client(&cid("c1")).unwrap().unwrap().status,
        ClientStatus::Registered
    );
    assert_eq!(
        s.outbox(usize::MAX).unwrap().len(),
        2,
        "a.ru retry and b.com renewal"
    );
    assert!(before_seq > 20);
}

#[test]
fn reopened_store_continues_log_and_handle_counter() {
    let mut f = Fixture::new();
    scripted(&mut f);
    let last_seq = f.store().log_seq().unwrap();
    assert_eq!(StateView::handle_counter(f.store()).unwrap(), 1);
    f.reopen();

    f.apply(create("c3", None));
    let applied = f.apply(order("d.ru", "c3", true));
    assert_eq!(
        applied.transition.handle_counter,
        Some(2),
        "counter 1 is never reused"
    );
    assert_eq!(
        applied.log_seqs.first(),
        Some(&(last_seq + 2)),
        "no gap, no reuse"
    );
    let r = Fixture::queued(&applied, RequestKind::ClientRegistration);
    let handle = f.store().request(r).unwrap().unwrap().handle.unwrap();
    assert!(handle.as_str().starts_with("REGMAIL_2_"), "{handle}");
    f.reopen();
    f.assert_matches_twin();
}

#[test]
fn one_event_is_one_transaction() {
    let mut f = Fixture::new();
    f.apply(create("c1", Some("MYCO_1-GPT")));
    let applied = f.apply(order("a.com", "c1", true));
    let t = &applied.transition;
    // The log entries, the entity updates and the outbox entry landed together.
    assert_eq!(applied.log_seqs, [2, 3]);
    let written = f.store().log_since(1, usize::MAX).unwrap();
    assert_eq!(written.len(), t.log.len());
    for ((entry, draft), seq) in written.iter().zip(&t.log).zip(&applied.log_seqs) {
        assert_eq!((&entry.entry, entry.seq), (draft, *seq));
    }
    let id = Fixture::queued(&applied, RequestKind::DomainRegistration);
    f.reopen();
    let s = f.store();
    let d = s.domain(&dn("a.com")).unwrap().unwrap();
    let last = s
        .log_of(&LogScope::Domain(dn("a.com")), 0, usize::MAX)
        .unwrap();
    assert_eq!(
        last.last().unwrap().entry.status_after.as_deref(),
        Some("Registering/RequestQueued"),
        "the log and the entity agree"
    );
    assert_eq!(
        (d.status, d.phase),
        (DomainStatus::Registering, Phase::RequestQueued)
    );
    assert_eq!(d.open_request, Some(id));
    assert_eq!(s.outbox(10).unwrap(), [id]);
    assert_eq!(
        s.requests_in_state(RequestState::Queued, 10).unwrap()[0].id,
        id
    );
}

#[test]
fn refused_or_empty_event_writes_nothing() {
    let mut f = Fixture::new();
    scripted(&mut f);
    let seq = f.store().log_seq().unwrap();
    let counts = serde_json::to_value(f.store().counts().unwrap()).unwrap();

    let err = f.try_apply(order("nobody.ru", "ghost", true)).err();
    assert!(
        matches!(err, Some(ApplyError::Core(CoreError::UnknownClient(_)))),
        "{err:?}"
    );
    let err = f
        .try_apply(Event::Cancel {
            domain: dn("c.su"),
            note: None,
        })
        .err();
    assert!(
        matches!(err, Some(ApplyError::Core(CoreError::Illegal(_)))),
        "{err:?}"
    );
    // A replayed create changes nothing and logs nothing.
    let applied = f.apply(create("c1", None));
    assert!(applied.transition.is_noop());
    assert!(applied.log_seqs.is_empty());

    assert_eq!(f.store().log_seq().unwrap(), seq);
    assert_eq!(
        serde_json::to_value(f.store().counts().unwrap()).unwrap(),
        counts
    );
    f.reopen();
    f.assert_matches_twin();
}

#[test]
fn log_of_pages_in_sequence_order() {
    let mut f = Fixture::new();
    scripted(&mut f);
    let s = f.store();
    for scope in [
        LogScope::Domain(dn("b.com")),
        LogScope::Client(cid("c1")),
        LogScope::Request(f.twin.domains[&dn("a.ru")].open_request.unwrap()),
    ] {
        let all = s.log_of(&scope, 0, usize::MAX).unwrap();
        assert!(all.len() >= 2, "{scope:?}");
        assert!(
            all.windows(2).all(|w| w[0].seq < w[1].seq),
            "{scope:?} in order"
        );
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = s.log_of(&scope, after, 2).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            after = page.last().unwrap().seq;
            paged.extend(page);
        }
        assert_eq!(paged, all, "{scope:?} paged");
    }
    // The global log pages the same way.
    let all = s.log_since(0, usize::MAX).unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=all.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(s.log_since(3, 2).unwrap(), all[3..5]);
}

#[test]
fn indexes_follow_a_reorder_under_another_client() {
    let mut f = Fixture::new();
    f.apply(create("c1", None));
    f.apply(create("c2", None));
    f.apply(order("a.ru", "c1", false));
    f.apply(Event::Cancel {
        domain: dn("a.ru"),
        note: None,
    });
    f.apply(order("a.ru", "c2", false));
    let s = f.store();
    assert!(
        s.list_domains(None, Some(&cid("c1")), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.list_domains(None, Some(&cid("c2")), 10).unwrap().len(), 1);
    assert!(
        s.list_domains(Some(DomainStatus::Cancelled), None, 10)
            .unwrap()
            .is_empty()
    );
    // Both clients' logs keep their part of the story.
    assert_eq!(
        s.log_of(&LogScope::Client(cid("c1")), 0, 100)
            .unwrap()
            .len(),
        3
    );
    f.assert_matches_twin();
}

#[test]
fn list_domains_respects_the_limit() {
    let mut f = Fixture::new();
    f.apply(create("c1", None));
    for name in ["a.ru", "b.ru", "c.ru"] {
        f.apply(order(name, "c1", false));
    }
    let s = f.store();
    let names = |v: Vec<Domain>| v.into_iter().map(|d| d.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_domains(None, None, 2).unwrap()),
        [dn("a.ru"), dn("b.ru")]
    );
    assert_eq!(
        names(
            s.list_domains(Some(DomainStatus::AwaitingPayment), Some(&cid("c1")), 1)
                .unwrap()
        ),
        [dn("a.ru")]
    );
}

#[test]
fn domains_expiring_by_lists_earliest_first() {
    let mut f = Fixture::new();
    f.apply(create("c1", Some("MYCO_1-GPT")));
    for (name, expires) in [
        ("a.com", date(2027, 5, 1)),
        ("b.com", date(2026, 4, 1)),
        ("d.com", date(2030, 1, 1)),
        ("c.com", date(2026, 4, 1)),
    ] {
        let applied = f.apply(order(name, "c1", true));
        let id = Fixture::queued(&applied, RequestKind::DomainRegistration);
        f.apply(sent(id));
        f.apply(completed(id, Some(expires)));
    }
    f.apply(order("unpaid.com", "c1", false));
    let names = |until: Date, f: &Fixture| -> Vec<String> {
        f.store()
            .domains_expiring_by(until)
            .unwrap()
            .into_iter()
            .map(|d| d.name.to_string())
            .collect()
    };
    assert!(names(date(2026, 3, 31), &f).is_empty());
    assert_eq!(names(date(2026, 4, 1), &f), ["b.com", "c.com"], "inclusive");
    assert_eq!(names(date(2027, 5, 1), &f), ["b.com", "c.com", "a.com"]);
    assert_eq!(
        names(date(2099, 1, 1), &f),
        ["b.com", "c.com", "a.com", "d.com"]
    );

    // A renewal moves the domain in the index; the old date is gone.
    let applied = f.apply(Event::Renew {
        domain: dn("b.com"),
        years: 2,
        actor: Actor::Scheduler,
    });
    let id = Fixture::queued(&applied, RequestKind::DomainRenewal);
    f.apply(sent(id));
    f.apply(completed(id, None));
    assert_eq!(names(date(2027, 12, 31), &f), ["c.com", "a.com"]);
    assert_eq!(names(date(2028, 4, 1), &f), ["c.com", "a.com", "b.com"]);
    f.reopen();
    assert_eq!(names(date(2028, 4, 1), &f), ["c.com", "a.com", "b.com"]);
    f.assert_matches_twin();
}

#[test]
fn due_deadlines_lists_requests_due_at_or_before_now() {
    let mut f = Fixture::new();
    f.apply(create("c1", Some("MYCO_1-GPT")));
    let r1 = Fixture::queued(
        &f.apply(order("a.com", "c1", true)),
        RequestKind::DomainRegistration,
    );
    let r2 = Fixture::queued(
        &f.apply(order("b.com", "c1", true)),
        RequestKind::DomainRegistration,
    );
    f.apply(sent(r1));
    f.now += hours(1);
    f.apply(sent(r2));
    let ms = SignedDuration::from_millis(1);
    let due = |f: &Fixture, at: Timestamp| f.store().due_deadlines(at).unwrap();

    assert!(due(&f, t0() + hours(72) - ms).is_empty());
    assert_eq!(due(&f, t0() + hours(72)), [r1]);
    assert_eq!(due(&f, t0() + hours(73)), [r1, r2]);

    // An acknowledgement re-arms r1 later; a completion disarms r2.
    f.now = t0() + hours(2);
    f.apply(ack(r1));
    f.apply(completed(r2, None));
    assert!(due(&f, t0() + hours(73)).is_empty());
    assert_eq!(due(&f, t0() + hours(74)), [r1]);
    f.reopen();
    assert_eq!(due(&f, t0() + hours(74)), [r1]);

    // The scheduler's event times it out and the deadline is gone.
    f.now = t0() + hours(74);
    f.apply(Event::DeadlinePassed { request: r1 });
    assert!(due(&f, t0() + hours(1000)).is_empty());
    assert_eq!(
        f.store().request(r1).unwrap().unwrap().state,
        RequestState::TimedOut
    );
    f.assert_matches_twin();
}

#[test]
fn acknowledged_task_id_is_indexed() {
    let mut f = Fixture::new();
    f.apply(create("c1", Some("MYCO_1-GPT")));
    let r = Fixture::queued(
        &f.apply(order("a.com", "c1", true)),
        RequestKind::DomainRegistration,
    );
    f.apply(sent(r));
    f.apply(ack(r));
    f.reopen();
    let s = f.store();
    let hit = s
        .index
        .get(task_index_key("T-1"))
        .unwrap()
        .map(|v| v.to_vec());
    assert_eq!(hit.as_deref(), Some(&r.as_bytes()[..]));
    assert!(s.index.get(task_index_key("T-2")).unwrap().is_none());
    f.assert_matches_twin();
}

#[test]
fn apply_with_writes_the_event_and_its_extras_in_one_transaction() {
    let mut f = Fixture::new();
    f.apply(create("c1", None));
    let note = LogDraft {
        at: f.now,
        actor: Actor::Registrar,
        action: "inbox.applied".into(),
        message: "reply applied".into(),
        domain: Some(dn("a.ru")),
        client: None,
        request: None,
        status_before: None,
        status_after: None,
        evidence: Evidence::default(),
    };
    let mut ctx = Ctx {
        now: f.now,
        ids: &mut f.ids,
        policy: &f.policy,
    };
    let s = f.store.as_ref().unwrap();
    let extra_note = note.clone();
    let mut extras = move |t: &Transition| Extra {
        idempotency: vec![(b"key-x".to_vec(), encode_value(&t.log.len()))],
        index_put: vec![(b"zz\0test".to_vec(), b"1".to_vec())],
        log: vec![extra_note.clone()],
        ..Extra::default()
    };
    let applied = s
        .apply_with(Some(order("a.ru", "c1", false)), &mut ctx, &mut extras)
        .unwrap();
    // The transition's own entry, then the extra one.
    assert_eq!(applied.log_seqs, [2, 3]);
    let log = s.log_of(&LogScope::Domain(dn("a.ru")), 0, 10).unwrap();
    assert_eq!(
        log.iter()
            .map(|e| e.entry.action.as_str())
            .collect::<Vec<_>>(),
        ["domain.ordered", "inbox.applied"]
    );
    assert!(s.idempotency.get(b"key-x").unwrap().is_some());
    assert!(s.index.get(b"zz\0test").unwrap().is_some());

    // No event, extras only.
    let mut only_log = |_: &Transition| Extra {
        log: vec![note.clone()],
        ..Extra::default()
    };
    let applied = s.apply_with(None, &mut ctx, &mut only_log).unwrap();
    assert_eq!(applied.log_seqs, [4]);

    // A refused event takes its extras down with it.
    let mut refused_extras = |_: &Transition| Extra {
        idempotency: vec![(b"key-y".to_vec(), b"x".to_vec())],
        log: vec![note.clone()],
        ..Extra::default()
    };
    let refused = s.apply_with(
        Some(Event::MarkPaid {
            domain: dn("nothing.ru"),
        }),
        &mut ctx,
        &mut refused_extras,
    );
    assert!(matches!(
        refused,
        Err(ApplyError::Core(CoreError::UnknownDomain(_)))
    ));
    assert!(s.idempotency.get(b"key-y").unwrap().is_none());
    assert_eq!(s.log_seq().unwrap(), 4);

    f.reopen();
    let s = f.store();
    assert_eq!(s.log_seq().unwrap(), 4);
    assert!(s.idempotency.get(b"key-x").unwrap().is_some());
    assert_eq!(s.log_since(0, 10).unwrap()[3].entry.action, "inbox.applied");
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys
// ---------------------------------------------------------------------------------------------

fn answer(t: &Transition) -> (u16, serde_json::Value) {
    (201, json!({ "log_entries": t.log.len() }))
}

#[test]
fn idempotent_apply_replays_the_first_answer() {
    let mut f = Fixture::new();
    let mut ctx = Ctx {
        now: f.now,
        ids: &mut f.ids,
        policy: &f.policy,
    };
    let store = f.store.as_ref().unwrap();
    let first = store
        .apply_idempotent("key-1", "hash-a", create("c1", None), &mut ctx, answer)
        .unwrap();
    assert!(matches!(first, Idempotent::Applied(ref a) if a.log_seqs == [1]));

    // The same key and body: the first answer, and the event is not applied again (here an
    // order that would otherwise be accepted).
    let again = store
        .apply_idempotent(
            "key-1",
            "hash-a",
            order("a.ru", "c1", false),
            &mut ctx,
            |_| panic!("a replay must not build a new answer"),
        )
        .unwrap();
    let Idempotent::Replay(seen) = again else {
        panic!("expected a replay, got {again:?}");
    };
    assert_eq!(
        seen,
        IdempotentAnswer {
            body_hash: "hash-a".into(),
            status: 201,
            body: json!({ "log_entries": 1 }),
        }
    );
    assert!(store.domain(&dn("a.ru")).unwrap().is_none());

    // The same key with another body.
    let other = store
        .apply_idempotent(
            "key-1",
            "hash-b",
            order("a.ru", "c1", false),
            &mut ctx,
            answer,
        )
        .unwrap();
    assert!(matches!(other, Idempotent::Mismatch), "{other:?}");
    assert!(store.domain(&dn("a.ru")).unwrap().is_none());
    assert_eq!(store.log_seq().unwrap(), 1);

    // The key survives a restart.
    f.reopen();
    let mut ctx = Ctx {
        now: f.now,
        ids: &mut f.ids,
        policy: &f.policy,
    };
    let after = f
        .store
        .as_ref()
        .unwrap()
        .apply_idempotent("key-1", "hash-a", create("c1", None), &mut ctx, answer)
        .unwrap();
    assert!(
        matches!(after, Idempotent::Replay(ref s) if s.status == 201),
        "{after:?}"
    );
}

#[test]
fn idempotent_apply_of_a_refused_event_does_not_burn_the_key() {
    let mut f = Fixture::new();
    let mut ctx = Ctx {
        now: f.now,
        ids: &mut f.ids,
        policy: &f.policy,
    };
    let store = f.store.as_ref().unwrap();
    let refused = store.apply_idempotent(
        "key-1",
        "hash-a",
        order("a.ru", "ghost", true),
        &mut ctx,
        answer,
    );
    assert!(
        matches!(refused, Err(ApplyError::Core(CoreError::UnknownClient(_)))),
        "{refused:?}"
    );
    store.apply(create("ghost", None), &mut ctx).unwrap();
    let applied = store
        .apply_idempotent(
            "key-1",
            "hash-a",
            order("a.ru", "ghost", true),
            &mut ctx,
            answer,
        )
        .unwrap();
    assert!(matches!(applied, Idempotent::Applied(_)), "{applied:?}");
}

/// An idempotency key is remembered even when its event changes nothing (the same client
/// created again): reused with another body it is a mismatch. (Was a bug: `apply_locked`
/// returned before the idempotency record was written for a no-op transition.)
#[test]
fn idempotency_key_is_remembered_even_when_the_event_changes_nothing() {
    let mut f = Fixture::new();
    f.apply(create("c1", None));
    let mut ctx = Ctx {
        now: f.now,
        ids: &mut f.ids,
        policy: &f.policy,
    };
    let store = f.store.as_ref().unwrap();
    let mut answered = false;
    let first = store
        .apply_idempotent("key-2", "hash-a", create("c1", None), &mut ctx, |t| {
            answered = true;
            answer(t)
        })
        .unwrap();
    assert!(matches!(first, Idempotent::Applied(ref a) if a.transition.is_noop()));
    let second = store
        .apply_idempotent(
            "key-2",
            "hash-b",
            order("a.ru", "c1", false),
            &mut ctx,
            answer,
        )
        .unwrap();
    assert!(
        answered && matches!(second, Idempotent::Mismatch),
        "key-2 was not remembered after a no-op apply (answer built: {answered}); reusing \
         it with another body gave {second:?} instead of Mismatch"
    );
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

#[test]
fn second_open_of_the_same_path_is_locked() {
    let f = Fixture::new();
    match Store::open(&f.path(), CACHE_BYTES) {
        Err(StoreError::Locked { path }) => {
            assert_eq!(path, f.path().display().to_string());
            let msg = StoreError::Locked { path }.to_string();
            assert!(msg.contains("locked by another process"), "{msg}");
        }
        Err(other) => panic!("expected StoreError::Locked, got {other:?}"),
        Ok(_) => panic!("a second open of a store in use succeeded"),
    }
    // The first handle is unaffected.
    assert_eq!(f.store().log_seq().unwrap(), 0);
}

#[test]
fn corrupt_value_is_reported_as_corrupt() {
    let mut f = Fixture::new();
    f.apply(create("c1", None));
    f.apply(order("a.ru", "c1", false));
    f.apply(order("b.ru", "c1", false));
    let s = f.store();
    // Not JSON; a format byte from the future; nothing at all.
    s.domains.insert("a.ru", &[1u8, b'{', b'x'][..]).unwrap();
    s.clients.insert("c1", &[9u8, b'{', b'}'][..]).unwrap();
    s.requests.insert(&[7u8; 16][..], &[][..]).unwrap();
    s.outbox.insert(&b"short"[..], &[0u8; 8][..]).unwrap();
    s.flush().unwrap();
    f.reopen();
    let s = f.store.as_ref().unwrap();

    match s.domain(&dn("a.ru")) {
        Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "a.ru"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    match s.client(&cid("c1")) {
        Err(StoreError::Corrupt { key, reason }) => {
            assert_eq!(key, "c1");
            assert!(reason.contains("unknown value format 9"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let ghost = RequestId(Uuid::from_bytes([7u8; 16]));
    assert!(matches!(s.request(ghost), Err(StoreError::Corrupt { .. })));
    assert!(matches!(
        s.list_domains(None, None, 10),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(s.outbox(10), Err(StoreError::Corrupt { .. })));
    // The sound neighbour still reads.
    assert!(s.domain(&dn("b.ru")).unwrap().is_some());

    // An event that must read the corrupt value is refused, not a panic, and writes nothing.
    let seq = s.log_seq().unwrap();
    let mut ctx = Ctx {
        now: f.now,
        ids: &mut f.ids,
        policy: &f.policy,
    };
    let refused = s.apply(Event::MarkPaid { domain: dn("a.ru") }, &mut ctx);
    match refused {
        Err(ApplyError::Core(CoreError::View(e))) => {
            assert!(e.0.contains("unreadable"), "{e}");
        }
        Err(ApplyError::Store(StoreError::Corrupt { .. })) => {}
        other => panic!("expected a corrupt-value error, got {other:?}"),
    }
    assert_eq!(s.log_seq().unwrap(), seq);
}

// ---------------------------------------------------------------------------------------------
// Model check: random sequences, store against twin, with a reopen in the middle
// ---------------------------------------------------------------------------------------------

const CLIENTS: [&str; 2] = ["c0", "c1"];
const DOMAINS: [&str; 4] = ["a.ru", "b.com", "пример.рф", "c.su"];

/// Decodes `(kind, a, b)` into an event over a small universe.
fn decode_event(code: (u8, u8, u8), reqs: &[RequestId]) -> Event {
    let (kind, a, b) = code;
    let client = CLIENTS[a as usize % CLIENTS.len()];
    let domain = DOMAINS[b as usize % DOMAINS.len()];
    let request = if reqs.is_empty() {
        RequestId(Uuid::from_u128(u128::MAX))
    } else {
        reqs[b as usize % reqs.len()]
    };
    match kind % 13 {
        0 => create(
            client,
            (b % 3 == 0).then_some(if a % 2 == 0 { "IMP0-GPT" } else { "IMP1-GPT" }),
        ),
        1 | 2 => order(domain, client, a % 3 != 0),
        3 => Event::MarkPaid { domain: dn(domain) },
        4 => sent(request),
        5 => ack(request),
        6 => completed(request, None),
        7 => rejected(request),
        8 => Event::DeadlinePassed { request },
        9 => Event::Retry { request },
        10 => Event::Cancel {
            domain: dn(domain),
            note: None,
        },
        11 => Event::Resolve {
            domain: dn(domain),
            outcome: if a % 2 == 0 {
                Resolution::Registered { expires: None }
            } else {
                Resolution::Error
            },
            note: "operator".into(),
        },
        _ => Event::Renew {
            domain: dn(domain),
            years: 1,
            actor: Actor::Api,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever happens, the store holds what the model holds, before and after a reopen.
    #[test]
    fn prop_store_agrees_with_the_model(
        codes in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 1..30),
        reopen_at in 0usize..30,
    ) {
        let mut f = Fixture::new();
        let mut reqs: Vec<RequestId> = Vec::new();
        for (i, code) in codes.iter().enumerate() {
            if i == reopen_at {
                f.reopen();
            }
            if code.1 % 5 == 0 {
                f.now += hours(73);
            }
            let event = decode_event(*code, &reqs);
            if let Ok(applied) = f.try_apply(event) {
                for r in &applied.transition.requests {
                    if !reqs.contains(&r.id) {
                        reqs.push(r.id);
                    }
                }
            }
        }
        f.assert_matches_twin();
        f.reopen();
        f.assert_matches_twin();
    }
}
