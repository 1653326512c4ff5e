//! Tests of the lifecycle rules: unit tests of each behaviour, then property tests over random
//! event sequences with random clock jumps (forward, long gaps, backwards), driving the same
//! [`due_event`] the scheduler uses on a [`MemState`].

use std::collections::BTreeSet;

use jiff::civil::{Date, date};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::core::event::{DomainOrder, NewClient, ReplyOutcome, Resolution};
use crate::core::ids::{ClientId, Handle, Nameserver, RequestId};
use crate::core::model::{Contact, Person, Registrant};
use crate::core::transition::{Ctx, IdSource, apply};
use crate::core::view::{MemState, StateView, Transition};

struct CountingIds(u128);

impl IdSource for CountingIds {
    fn request_id(&mut self) -> RequestId {
        self.0 += 1;
        RequestId(Uuid::from_u128(self.0))
    }
}

fn dn(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

/// Day 0 of every test: 2027-01-01 09:00 UTC.
fn t0() -> Timestamp {
    "2027-01-01T09:00:00Z".parse().unwrap()
}

fn day0() -> Date {
    date(2027, 1, 1)
}

/// A world: the state, the clock, the policy; every transition checked as it happens.
struct World {
    mem: MemState,
    ids: CountingIds,
    policy: Policy,
    now: Timestamp,
    /// (domain, expiry, offset) of every reminder sent so far.
    sent: BTreeSet<(DomainName, Date, u16)>,
    /// Notices of the reminder type written so far.
    reminder_notices: usize,
    /// Every transition with the event's actor.
    history: Vec<(Actor, Date, Transition)>,
}

impl World {
    fn new() -> World {
        let mut w = World {
            mem: MemState::default(),
            ids: CountingIds(0),
            policy: Policy::default(),
            now: t0(),
            sent: BTreeSet::new(),
            reminder_notices: 0,
            history: Vec::new(),
        };
        w.apply(Event::CreateClient(NewClient {
            id: ClientId::parse("c1").unwrap(),
            registrant: Registrant::Person(Person {
                fio_ru: "Иванов Иван".into(),
                fio_en: "Ivanov Ivan".into(),
                passport: vec!["4500 123456".into()],
                birth_date: date(1980, 5, 17),
                postal_addr: vec!["Москва".into()],
                phone: "+7 495 1234567".into(),
                fax: None,
                email: "ivanov@example.com".into(),
                is_protected: true,
                is_resident: true,
                inn: None,
            }),
            contact: Contact {
                name: "Ivan".into(),
                email: "ivan@example.com".into(),
                phone: None,
            },
            existing_handle: Some(Handle::parse("C_1_1-GPT").unwrap()),
        }))
        .unwrap();
        w
    }

    fn today(&self) -> Date {
        self.now.to_zoned(jiff::tz::TimeZone::UTC).date()
    }

    fn jump(&mut self, days: i64) {
        self.now += SignedDuration::from_hours(24 * days);
    }

    fn domain(&self, name: &str) -> Domain {
        self.mem.domains.get(&dn(name)).cloned().unwrap()
    }

    /// Applies an event and checks the transition against the lifecycle's invariants.
    fn apply(&mut self, event: Event) -> Result<Transition, CoreError> {
        let actor = event.actor();
        let is_notice = matches!(event, Event::Registrar { .. });
        let mut ctx = Ctx {
            now: self.now,
            ids: &mut self.ids,
            policy: &self.policy,
        };
        let t = apply(&self.mem, event, &mut ctx)?;
        let today = self.today();
        // Every changed domain's change is in the log, with its new status.
        for d in &t.domains {
            let before = self.mem.domains.get(&d.name);
            if before.map(|b| (b.status, b.phase)) != Some((d.status, d.phase)) {
                let want = format!("{}/{:?}", d.status.as_str(), d.phase);
                assert!(
                    t.log.iter().any(|l| l.domain.as_ref() == Some(&d.name)
                        && l.status_after.as_deref() == Some(want.as_str())),
                    "transition of {} to {want} not logged: {:?}",
                    d.name,
                    t.log
                );
            }
            let was = before.map(|b| b.status);
            // Deleted by the clock only after grace; expired by the clock only after expiry.
            if d.status == DomainStatus::Deleted && was != Some(DomainStatus::Deleted) && !is_notice
            {
                let g = before
                    .and_then(|b| b.grace_ends)
                    .expect("grace_ends before deletion");
                assert!(today > g, "{} deleted on {today}, grace ends {g}", d.name);
            }
            if d.status == DomainStatus::Expired && was != Some(DomainStatus::Expired) && !is_notice
            {
                let e = before.and_then(|b| b.expires).expect("expiry");
                assert!(today > e, "{} expired on {today}, paid through {e}", d.name);
                assert!(d.grace_ends.is_some_and(|g| g >= e));
            }
        }
        // Reminders: each key once; none to a Renewing domain; the latest only; logged.
        let mut sent_here = Vec::new();
        let mut skipped_missed = Vec::new();
        for e in &t.effects {
            match e {
                Effect::Reminder(m) => {
                    let key = (m.domain.clone(), m.expires, m.offset);
                    assert!(
                        !self.mem.reminders.contains_key(&key),
                        "reminder {key:?} handled twice"
                    );
                    assert!(
                        t.log.iter().any(|l| l.domain.as_ref() == Some(&m.domain)
                            && l.action.starts_with("domain.reminder_")
                            && l.message
                                .contains(&format!("({} days before {})", m.offset, m.expires))),
                        "reminder {key:?} not logged"
                    );
                    match &m.outcome {
                        ReminderOutcome::Sent => {
                            let before = self.mem.domains.get(&m.domain).unwrap();
                            assert_ne!(before.status, DomainStatus::Renewing);
                            assert!(self.sent.insert(key.clone()), "{key:?} sent twice");
                            sent_here.push(m.offset);
                        }
                        ReminderOutcome::Skipped { reason } => {
                            if reason.starts_with("missed") {
                                skipped_missed.push(m.offset);
                            }
                        }
                    }
                }
                Effect::Notify(n) if n.kind == types::DOMAIN_EXPIRY_REMINDER => {
                    let d = self.mem.domains.get(n.domain.as_ref().unwrap()).unwrap();
                    assert_ne!(
                        d.status,
                        DomainStatus::Renewing,
                        "reminder to a Renewing domain"
                    );
                    self.reminder_notices += 1;
                }
                _ => {}
            }
        }
        assert!(
            sent_here.len() <= 1,
            "more than one reminder sent at once: {sent_here:?}"
        );
        if let Some(s) = sent_here.first() {
            // Catch-up: the one sent is the latest; every missed one is older.
            assert!(
                skipped_missed.iter().all(|o| o > s),
                "{skipped_missed:?} vs {s}"
            );
        } else {
            assert!(
                skipped_missed.is_empty(),
                "skipped as missed without a send"
            );
        }
        self.mem.commit(&t);
        self.history.push((actor, today, t.clone()));
        Ok(t)
    }

    /// One scheduler pass over every domain (the model of the shell's `run_pass`).
    fn pass(&mut self) {
        let today = self.today();
        let names: Vec<DomainName> = self.mem.domains.keys().cloned().collect();
        for name in names {
            for _ in 0..8 {
                let d = self.mem.domains.get(&name).cloned().unwrap();
                let handled: Vec<u16> = match d.expires {
                    Some(e) => self
                        .mem
                        .reminder_marks(&name, e)
                        .unwrap()
                        .into_iter()
                        .map(|(o, _)| o)
                        .collect(),
                    None => Vec::new(),
                };
                let Some(ev) = due_event(&d, &handled, today, &self.policy) else {
                    // next_due agrees: nothing due today.
                    assert!(next_due(&d, &handled, &self.policy).is_none_or(|at| at > today));
                    break;
                };
                let before = self.mem.reminders.len();
                match self.apply(ev) {
                    Ok(t) if t.is_noop() => panic!("a due event changed nothing for {name}"),
                    Ok(_) => {}
                    Err(e) => panic!("a due event was refused for {name}: {e}"),
                }
                let _ = before;
            }
        }
    }

    /// Orders `name` and settles it Registered through `expires`.
    fn register(&mut self, name: &str, expires: Date, auto_renew: bool) {
        self.apply(Event::OrderDomain(DomainOrder {
            name: dn(name),
            client_id: ClientId::parse("c1").unwrap(),
            years: 1,
            nameservers: vec![Nameserver::parse("ns1.hoster.example").unwrap()],
            order_id: format!("o-{name}"),
            description: vec![],
            paid: true,
            auto_renew,
        }))
        .unwrap();
        self.apply(Event::Resolve {
            domain: dn(name),
            outcome: Resolution::Registered {
                expires: Some(expires),
            },
            note: "registered at the registrar".into(),
        })
        .unwrap();
    }

    fn renew(&mut self, name: &str) -> Result<Transition, CoreError> {
        self.apply(Event::Renew {
            domain: dn(name),
            years: 1,
            actor: Actor::Api,
        })
    }

    fn complete_renewal(&mut self, name: &str) -> Result<Transition, CoreError> {
        let d = self.domain(name);
        let request = d
            .open_request
            .ok_or_else(|| CoreError::Illegal("none".into()))?;
        self.apply(Event::Reply {
            request,
            outcome: ReplyOutcome::Completed {
                handle: None,
                expires: None,
            },
            evidence: Evidence::default(),
        })
    }

    fn notices_of(&self, kind: &str) -> Vec<&NoticeDraft> {
        self.mem.notices.iter().filter(|n| n.kind == kind).collect()
    }
}

fn plus_days(d: Date, n: i64) -> Date {
    d.checked_add(jiff::Span::new().days(n)).unwrap()
}

#[test]
fn a_domain_lives_through_five_reminders_expiry_and_deletion() {
    let mut w = World::new();
    let e = plus_days(day0(), 100);
    w.register("life.com", e, false);
    let mut sent_on = Vec::new();
    for _ in 0..=115 {
        let before = w.reminder_notices;
        w.pass();
        w.pass(); // a second pass the same day does nothing
        if w.reminder_notices > before {
            sent_on.push(w.today());
        }
        w.jump(1);
    }
    let want: Vec<Date> = [90, 60, 30, 15, 1]
        .into_iter()
        .map(|o| plus_days(e, -o))
        .collect();
    assert_eq!(sent_on, want);
    let d = w.domain("life.com");
    assert_eq!(d.status, DomainStatus::Deleted);
    assert_eq!(d.phase, Phase::Deleted);
    let g = plus_days(e, 10);
    assert_eq!(d.grace_ends, Some(g));
    assert_eq!(d.deleted_on, Some(plus_days(g, 1)));
    let kinds: Vec<&str> = w.mem.notices.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == types::DOMAIN_EXPIRY_REMINDER)
            .count(),
        5
    );
    let expired = w.notices_of(types::DOMAIN_EXPIRED);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].data["days_left"], "10");
    assert_eq!(expired[0].data["grace_ends"], g.to_string());
    assert_eq!(w.notices_of(types::DOMAIN_DELETED).len(), 1);
    // Order: five reminders, then the parked notice, then the deletion.
    let tail: Vec<&str> = kinds.iter().rev().take(2).rev().copied().collect();
    assert_eq!(tail, [types::DOMAIN_EXPIRED, types::DOMAIN_DELETED]);
    // The log tells the story.
    let actions: Vec<&str> = w
        .mem
        .log
        .iter()
        .filter(|l| l.entry.domain == Some(dn("life.com")))
        .map(|l| l.entry.action.as_str())
        .collect();
    assert!(actions.contains(&"domain.expired") && actions.contains(&"domain.deleted"));
}

#[test]
fn after_downtime_only_the_latest_missed_reminder_is_sent() {
    let mut w = World::new();
    let e = plus_days(day0(), 100);
    w.register("late.com", e, false);
    w.jump(82); // E - 18: 90, 60 and 30 missed; 15 not due yet
    w.pass();
    assert_eq!(w.reminder_notices, 1);
    let n = w.notices_of(types::DOMAIN_EXPIRY_REMINDER)[0];
    assert_eq!(n.data["offset"], "30");
    assert_eq!(n.data["days_left"], "18");
    let marks = w.mem.reminder_marks(&dn("late.com"), e).unwrap();
    let skipped: Vec<u16> = marks
        .iter()
        .filter(|(_, o)| matches!(o, ReminderOutcome::Skipped { .. }))
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(skipped, [60, 90]);
    // Long downtime across the expiry: no reminder at all, the old ones recorded skipped.
    w.jump(20);
    w.pass();
    assert_eq!(w.reminder_notices, 1);
    assert_eq!(w.domain("late.com").status, DomainStatus::Expired);
    let marks = w.mem.reminder_marks(&dn("late.com"), e).unwrap();
    assert_eq!(marks.len(), 5);
}

#[test]
fn a_renewal_starts_a_new_series_and_renewing_gets_no_reminder() {
    let mut w = World::new();
    let e = plus_days(day0(), 100);
    w.register("moved.ru", e, false);
    w.jump(80); // 20 days before expiry
    w.pass(); // 90, 60, 30: only the 30-day one sent (catch-up)
    assert_eq!(w.reminder_notices, 1);
    w.renew("moved.ru").unwrap();
    w.jump(5); // the 15-day reminder falls while the renewal is under way
    w.pass();
    assert_eq!(w.reminder_notices, 1);
    let marks = w.mem.reminder_marks(&dn("moved.ru"), e).unwrap();
    assert!(marks.iter().any(|(o, out)| *o == 15
        && matches!(out, ReminderOutcome::Skipped { reason } if reason.contains("renewal is under way"))));
    w.complete_renewal("moved.ru").unwrap();
    let new_e = w.domain("moved.ru").expires.unwrap();
    assert_eq!(new_e, e.checked_add(jiff::Span::new().years(1)).unwrap());
    // Through the old expiry: nothing of the old series; the domain stays Registered.
    for _ in 0..30 {
        w.jump(1);
        w.pass();
    }
    assert_eq!(w.reminder_notices, 1);
    assert_eq!(w.domain("moved.ru").status, DomainStatus::Registered);
    assert!(w.sent.iter().all(|(_, ex, _)| *ex == e));
}

#[test]
fn renewal_during_grace_brings_it_back_and_after_grace_is_refused() {
    let mut w = World::new();
    let e = plus_days(day0(), 10);
    w.register("grace.ru", e, false);
    w.jump(11);
    w.pass();
    let d = w.domain("grace.ru");
    assert_eq!((d.status, d.phase), (DomainStatus::Expired, Phase::Parked));
    // R01 (.RU) has 30 days of grace in its profile; the core default is 10.
    w.policy.lifecycle.tld_grace.insert("ru".into(), 30);
    w.jump(-11);
    w.register("grace2.ru", e, false);
    w.jump(11);
    w.pass();
    assert_eq!(w.domain("grace2.ru").grace_ends, Some(plus_days(e, 30)));
    w.renew("grace.ru").unwrap();
    assert_eq!(w.domain("grace.ru").status, DomainStatus::Renewing);
    w.complete_renewal("grace.ru").unwrap();
    let d = w.domain("grace.ru");
    assert_eq!(d.status, DomainStatus::Registered);
    assert_eq!(d.expires, e.checked_add(jiff::Span::new().years(1)).ok());
    assert_eq!(d.grace_ends, None);
    w.jump(31);
    w.pass();
    assert_eq!(w.domain("grace2.ru").status, DomainStatus::Deleted);
    let err = w.renew("grace2.ru").unwrap_err();
    assert!(err.to_string().contains("only a Registered"), "{err}");
}

#[test]
fn registrar_notices_meet_the_same_transitions_and_a_deleted_name_is_ordered_again() {
    let mut w = World::new();
    let e = plus_days(day0(), 200);
    w.register("told.com", e, false);
    let ev = |notice| Event::Registrar {
        domain: dn("told.com"),
        notice,
        evidence: Evidence {
            rule: Some("r01.expired".into()),
            ..Evidence::default()
        },
    };
    w.apply(ev(RegistrarNotice::Expired)).unwrap();
    let d = w.domain("told.com");
    assert_eq!(d.status, DomainStatus::Expired);
    assert_eq!(d.grace_ends, Some(plus_days(day0(), 9)));
    assert_eq!(w.notices_of(types::DOMAIN_EXPIRED).len(), 1);
    // The same notice again: logged only.
    let t = w.apply(ev(RegistrarNotice::Expired)).unwrap();
    assert!(t.domains.is_empty() && t.log.len() == 1);
    w.apply(ev(RegistrarNotice::Deleted)).unwrap();
    let d = w.domain("told.com");
    assert_eq!(
        (d.status, d.deleted_on),
        (DomainStatus::Deleted, Some(day0()))
    );
    assert_eq!(w.notices_of(types::DOMAIN_DELETED).len(), 1);
    let log = w.mem.log.last().unwrap();
    assert_eq!(log.entry.actor, Actor::Registrar);
    assert_eq!(log.entry.evidence.rule.as_deref(), Some("r01.expired"));
    // A Deleted name may be ordered again: a new order, starting over.
    w.register("told.com", plus_days(day0(), 365), false);
    let d = w.domain("told.com");
    assert_eq!(d.status, DomainStatus::Registered);
    assert_eq!((d.grace_ends, d.deleted_on), (None, None));
    // An expiry notice for a name not registered is refused, and changes nothing.
    w.apply(Event::OrderDomain(DomainOrder {
        name: dn("unpaid.com"),
        client_id: ClientId::parse("c1").unwrap(),
        years: 1,
        nameservers: vec![],
        order_id: "o".into(),
        description: vec![],
        paid: false,
        auto_renew: false,
    }))
    .unwrap();
    let err = w
        .apply(Event::Registrar {
            domain: dn("unpaid.com"),
            notice: RegistrarNotice::Expired,
            evidence: Evidence::default(),
        })
        .unwrap_err();
    assert!(matches!(err, CoreError::Illegal(_)));
}

#[test]
fn automatic_renewal_is_due_in_the_window_and_in_grace() {
    let mut w = World::new();
    w.policy.lifecycle.auto_renew = Some(AutoRenewRule {
        days_before: 59,
        years: 1,
    });
    let e = plus_days(day0(), 100);
    w.register("auto.ru", e, true);
    let d = w.domain("auto.ru");
    assert_eq!(auto_renew_date(&d, &w.policy), Some(plus_days(e, -59)));
    w.jump(40); // E - 60: not yet
    w.pass();
    assert_eq!(w.domain("auto.ru").status, DomainStatus::Registered);
    w.jump(1);
    w.pass();
    assert_eq!(w.domain("auto.ru").status, DomainStatus::Renewing);
    let last = w.history.last().unwrap();
    assert_eq!(last.0, Actor::Scheduler);
}

#[test]
fn events_out_of_time_are_refused_and_change_nothing() {
    let mut w = World::new();
    let e = plus_days(day0(), 100);
    w.register("early.com", e, false);
    let err = w
        .apply(Event::ExpiryReached {
            domain: dn("early.com"),
        })
        .unwrap_err();
    assert!(err.to_string().contains("paid through"), "{err}");
    let t = w
        .apply(Event::ReminderDue {
            domain: dn("early.com"),
            expires: e,
            offset: 15,
        })
        .unwrap();
    assert!(t.is_noop(), "a reminder not due yet is a no-op");
    let err = w
        .apply(Event::GraceEnded {
            domain: dn("early.com"),
        })
        .unwrap_err();
    assert!(matches!(err, CoreError::Illegal(_)));
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Move the clock (negative: backwards) and run a pass.
    Jump(i64),
    /// Another pass, same moment.
    Pass,
    /// The panel asks for a renewal of domain i.
    Renew(usize),
    /// The registrar completes domain i's open renewal.
    Complete(usize),
    /// The registrar refuses domain i's open renewal.
    Refuse(usize),
    /// A registrar notice about domain i.
    Notice(usize, bool),
    /// Order domain i again (if Deleted) with an expiry this many days ahead.
    Reorder(usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..20).prop_map(Op::Jump),
        2 => (20i64..400).prop_map(Op::Jump),
        1 => (-40i64..0).prop_map(Op::Jump),
        1 => Just(Op::Pass),
        2 => (0usize..4).prop_map(Op::Renew),
        2 => (0usize..4).prop_map(Op::Complete),
        1 => (0usize..4).prop_map(Op::Refuse),
        1 => (0usize..4, any::<bool>()).prop_map(|(i, b)| Op::Notice(i, b)),
        1 => (0usize..4, 1i64..400).prop_map(|(i, d)| Op::Reorder(i, d)),
    ]
}

const NAMES: [&str; 4] = ["p0.ru", "p1.com", "p2.su", "p3.org"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random lives with random clock jumps. `World::apply` checks on every transition: a
    /// (domain, expiry, offset) reminder at most once; none to a Renewing domain; the catch-up
    /// rule (one sent, the latest; the missed older ones skipped); every change logged; expired
    /// only after expiry and deleted only after grace (unless the registrar says so).
    #[test]
    fn prop_lifecycle_invariants(
        expiries in proptest::collection::vec(1i64..400, 4),
        auto in proptest::collection::vec(any::<bool>(), 4),
        ops in proptest::collection::vec(op(), 1..60),
        auto_renew in any::<bool>(),
    ) {
        let mut w = World::new();
        if auto_renew {
            w.policy.lifecycle.auto_renew = Some(AutoRenewRule { days_before: 30, years: 1 });
        }
        w.policy.lifecycle.tld_grace.insert("ru".into(), 30);
        for (i, name) in NAMES.iter().enumerate() {
            w.register(name, plus_days(day0(), expiries[i]), auto[i]);
        }
        for op in ops {
            match op {
                Op::Jump(d) => { w.jump(d); w.pass(); }
                Op::Pass => w.pass(),
                Op::Renew(i) => { let _ = w.renew(NAMES[i]); }
                Op::Complete(i) => {
                    if w.domain(NAMES[i]).status == DomainStatus::Renewing {
                        w.complete_renewal(NAMES[i]).unwrap();
                    }
                }
                Op::Refuse(i) => {
                    let d = w.domain(NAMES[i]);
                    if d.status == DomainStatus::Renewing {
                        let request = d.open_request.unwrap();
                        w.apply(Event::Reply {
                            request,
                            outcome: ReplyOutcome::Rejected { reason: "no funds".into() },
                            evidence: Evidence::default(),
                        }).unwrap();
                    }
                }
                Op::Notice(i, deleted) => {
                    let notice = if deleted { RegistrarNotice::Deleted } else { RegistrarNotice::Expired };
                    let _ = w.apply(Event::Registrar { domain: dn(NAMES[i]), notice, evidence: Evidence::default() });
                }
                Op::Reorder(i, days) => {
                    if w.domain(NAMES[i]).status == DomainStatus::Deleted {
                        let today = w.today();
                        w.register(NAMES[i], plus_days(today, days), false);
                    }
                }
            }
        }
        // Reminder notices and sent records agree.
        prop_assert_eq!(w.reminder_notices, w.sent.len());
        // Every record the state holds was written once, by a logged transition.
        let marks = w.mem.reminders.len();
        let effects: usize = w.history.iter().map(|(_, _, t)| t.effects.iter().filter(|e| matches!(e, Effect::Reminder(_))).count()).sum();
        prop_assert_eq!(marks, effects);
    }

    /// With a pass every day and no renewal, every offset of a series is sent exactly once, on
    /// its day; then the domain expires, then it is deleted.
    #[test]
    fn prop_daily_passes_send_each_offset_exactly_once(
        ahead in 1i64..200,
        offsets in proptest::collection::btree_set(1u16..120, 1..6),
    ) {
        let mut w = World::new();
        w.policy.lifecycle.reminder_days = offsets.iter().rev().copied().collect();
        let e = plus_days(day0(), ahead);
        w.register("daily.com", e, false);
        for _ in 0..(ahead + 12) {
            w.pass();
            w.jump(1);
        }
        // The ones due on day 0 already collapse into one (catch-up); later ones each come.
        let already = offsets.iter().filter(|o| i64::from(**o) >= ahead).count();
        let later = offsets.len() - already;
        let expect = later + usize::from(already > 0);
        prop_assert_eq!(w.sent.len(), expect);
        prop_assert_eq!(w.domain("daily.com").status, DomainStatus::Deleted);
    }
}
