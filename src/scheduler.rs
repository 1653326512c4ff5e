//! Timers: turns passed reply deadlines into `DeadlinePassed` events (DESIGN.md §2: "no reply
//! within the deadline -> Error"), and runs the lifecycle pass (`crate::lifecycle`: reminders,
//! expiry, deletion, and the renewal of domains marked auto-renew when their expiry comes
//! near, DESIGN.md §2 and §9).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::core::{Actor, Ctx, Event, Policy};
use crate::idsource::UuidIds;
use crate::store::Store;

/// Checks the deadlines once: applies `DeadlinePassed` for each one due. Returns how many fired.
pub fn fire_due_deadlines(store: &Store, policy: &Policy, now: Timestamp) -> usize {
    let due = match store.due_deadlines(now) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "reading reply deadlines failed");
            return 0;
        }
    };
    let mut fired = 0;
    for id in due {
        let mut ids = UuidIds;
        let mut ctx = Ctx {
            now,
            ids: &mut ids,
            policy,
        };
        match store.apply(Event::DeadlinePassed { request: id }, &mut ctx) {
            Ok(_) => {
                fired += 1;
                tracing::info!(request_id = %id, "reply deadline passed");
            }
            Err(e) => {
                tracing::error!(request_id = %id, error = %e, "applying a passed deadline failed")
            }
        }
    }
    fired
}

/// Runs until `stop` turns true, checking deadlines every `tick` and running the lifecycle
/// pass (reminders, expiry, deletion, automatic renewal: `crate::lifecycle`) every
/// `lifecycle_every`. Time comes from `crate::clock` (the real clock, or the test clock).
pub async fn run(
    store: Arc<Store>,
    policy: Policy,
    tick: Duration,
    lifecycle_every: Duration,
    heartbeat: Arc<crate::health::Worker>,
    mut stop: watch::Receiver<bool>,
) {
    let tick = tick.min(lifecycle_every);
    let mut last_pass: Option<std::time::Instant> = None;
    let mut last_shout: Option<std::time::Instant> = None;
    loop {
        heartbeat.beat();
        let pass_now = last_pass.is_none_or(|t| t.elapsed() >= lifecycle_every);
        if pass_now {
            last_pass = Some(std::time::Instant::now());
        }
        // A test clock is announced on the first pass and then once a minute.
        let shout = pass_now && last_shout.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if shout {
            last_shout = Some(std::time::Instant::now());
        }
        let (store2, policy2) = (store.clone(), policy.clone());
        let pass = tokio::task::spawn_blocking(move || {
            let now = crate::clock::now();
            // One flush for the deadlines (group commit, src/store/durable.rs): nobody is told
            // of one before the pass ends, and the outbox flushes before it sends anything.
            if let Err(e) = store2.batch(|| fire_due_deadlines(&store2, &policy2, now)) {
                tracing::error!(error = %e, "flushing the scheduler's writes failed");
            }
            if pass_now {
                if let Some(c) = crate::clock::test_clock()
                    && shout
                {
                    tracing::warn!(now = %now, start = %c.start, speed = c.speed, "TEST CLOCK in use: the lifecycle pass runs on a rehearsal clock");
                }
                if let Err(e) = crate::lifecycle::run_pass(&store2, &policy2, now) {
                    tracing::error!(error = %e, "the lifecycle pass failed");
                }
            }
        });
        let joined = wait_for_pass(pass, &store, &heartbeat).await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "the deadline check failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Waits for a scheduler pass, beating while the store makes progress. A long pass (thousands
/// of renewals falling due at once, or one that waits for the writer lock while a portfolio
/// import writes its chunks) is busy, not hung: it is reported stuck only when a whole
/// allowance passes without a single write committing anywhere in the store (issue 13).
async fn wait_for_pass<T>(
    mut pass: tokio::task::JoinHandle<T>,
    store: &Store,
    heartbeat: &crate::health::Worker,
) -> Result<T, tokio::task::JoinError> {
    let mut seen = store.commits();
    loop {
        tokio::select! {
            done = &mut pass => return done,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                let now = store.commits();
                if now != seen {
                    seen = now;
                    heartbeat.beat();
                }
            }
        }
    }
}

/// The retention policy for raw messages (`[inbound] keep_raw_days`): deletes the raw bytes
/// of settled messages received more than `keep_days` days before `now` (Pending and
/// Unmatched ones are kept: they still wait for someone). For each, the decision and its
/// evidence (key, Message-ID, SHA-256, size, received, state) go to the action log first, in
/// one transaction with the record's `raw_removed`; the bytes are deleted after. `keep_days`
/// 0 keeps everything. Returns how many were deleted.
pub fn sweep_raw(store: &Store, policy: &Policy, now: Timestamp, keep_days: u32) -> usize {
    if keep_days == 0 {
        return 0;
    }
    let Ok(before) = now.checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(keep_days)))
    else {
        return 0;
    };
    let expired = match store.raw_expired(before, 1000) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "reading messages for the retention sweep failed");
            return 0;
        }
    };
    let mut removed = 0;
    for m in expired {
        let mut rec = m.clone();
        rec.raw_removed = Some(now);
        let log = crate::core::LogDraft {
            at: now,
            actor: Actor::Scheduler,
            action: "mail.raw_removed".into(),
            message: format!(
                "message {}: raw bytes ({} octets, SHA-256 {}) deleted: received {}, more than {keep_days} days ago, and settled as {}; the record stays",
                m.key,
                m.size,
                m.sha256,
                m.received,
                m.state.as_str()
            ),
            domain: None,
            client: None,
            request: m.request,
            status_before: Some(m.state.as_str().to_owned()),
            status_after: Some(m.state.as_str().to_owned()),
            evidence: crate::core::Evidence {
                message_id: m.message_id.clone(),
                ..crate::core::Evidence::default()
            },
        };
        let mut extra = |_: &crate::core::Transition| crate::store::Extra {
            inbox: vec![(
                rec.key.as_bytes().to_vec(),
                crate::store::encode_value(&rec),
            )],
            log: vec![log.clone()],
            ..crate::store::Extra::default()
        };
        let mut ids = UuidIds;
        let mut ctx = Ctx {
            now,
            ids: &mut ids,
            policy,
        };
        if let Err(e) = store.apply_with(None, &mut ctx, &mut extra) {
            tracing::error!(key = %m.key, error = %e, "logging a raw-message deletion failed; kept");
            continue;
        }
        match store.remove_raw(&m.key) {
            Ok(()) => removed += 1,
            Err(e) => tracing::error!(key = %m.key, error = %e, "deleting raw bytes failed"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, keep_days, "retention: raw messages deleted");
    }
    removed
}

/// Runs [`sweep_raw`] once an hour (and once at start) until `stop`.
pub async fn run_retention(
    store: Arc<Store>,
    policy: Policy,
    keep_days: u32,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (s, p) = (store.clone(), policy.clone());
        let _ =
            tokio::task::spawn_blocking(move || sweep_raw(&s, &p, crate::clock::now(), keep_days))
                .await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Drives the daily report e-mail (src/reports/mail.rs): one look at the clock every `tick`
/// (the mailer decides whether today's report is due and not sent yet) until `stop`.
pub async fn run_reports(
    mut mailer: crate::reports::mail::ReportMailer,
    tick: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        mailer.tick(crate::clock::now()).await;
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            mailer.close().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        ClientId, Contact, DomainName, DomainOrder, DomainStatus, Handle, IdSource, NewClient,
        Person, Registrant, ReplyOutcome, RequestId,
    };

    struct Ids(u32);
    impl IdSource for Ids {
        fn request_id(&mut self) -> RequestId {
            self.0 += 1;
            RequestId(uuid::Uuid::from_u128(u128::from(self.0)))
        }
    }

    fn apply(store: &Store, ids: &mut Ids, now: Timestamp, e: Event) {
        let policy = Policy::default();
        let mut ctx = Ctx {
            now,
            ids,
            policy: &policy,
        };
        store.apply(e, &mut ctx).expect("apply");
    }

    /// A Registered domain expiring on `expires`, with `auto_renew`.
    fn registered(
        store: &Store,
        ids: &mut Ids,
        now: Timestamp,
        name: &str,
        expires: jiff::civil::Date,
        auto_renew: bool,
    ) {
        apply(
            store,
            ids,
            now,
            Event::OrderDomain(DomainOrder {
                name: DomainName::parse(name).expect("name"),
                client_id: ClientId::parse("c").expect("id"),
                years: 1,
                nameservers: vec![],
                order_id: name.into(),
                description: vec![],
                paid: true,
                auto_renew,
            }),
        );
        let d = store
            .domain(&DomainName::parse(name).expect("name"))
            .expect("read")
            .expect("domain");
        let request = d.open_request.expect("request");
        apply(
            store,
            ids,
            now,
            Event::RecordOutcome {
                request,
                outcome: ReplyOutcome::Completed {
                    handle: None,
                    expires: Some(expires),
                },
                note: "test".into(),
            },
        );
    }

    #[test]
    fn auto_renewal_asks_once_for_marked_domains_inside_the_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s"), 8 << 20).expect("store");
        let mut policy = Policy::default();
        policy.lifecycle.auto_renew = Some(crate::core::lifecycle::AutoRenewRule {
            days_before: 59,
            years: 1,
        });
        store.set_policy(policy.clone());
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().expect("now");
        let mut ids = Ids(0);
        apply(
            &store,
            &mut ids,
            now,
            Event::CreateClient(NewClient {
                id: ClientId::parse("c").expect("id"),
                registrant: Registrant::Person(Person {
                    fio_ru: "Иванов".into(),
                    fio_en: "Ivanov".into(),
                    passport: vec!["1".into()],
                    birth_date: jiff::civil::date(1980, 1, 1),
                    postal_addr: vec!["Москва".into()],
                    phone: "+7 495 1234567".into(),
                    fax: None,
                    email: "a@example.ru".into(),
                    is_protected: true,
                    is_resident: true,
                    inn: None,
                }),
                contact: Contact {
                    name: "I".into(),
                    email: "a@example.ru".into(),
                    phone: None,
                },
                existing_handle: Some(Handle::parse("C_1_1-GPT").expect("handle")),
            }),
        );
        registered(
            &store,
            &mut ids,
            now,
            "soon.ru",
            jiff::civil::date(2027, 1, 10),
            true,
        );
        registered(
            &store,
            &mut ids,
            now,
            "manual.ru",
            jiff::civil::date(2027, 1, 10),
            false,
        );
        registered(
            &store,
            &mut ids,
            now,
            "later.ru",
            jiff::civil::date(2027, 6, 1),
            true,
        );
        let pass = crate::lifecycle::run_pass(&store, &policy, now).expect("pass");
        assert_eq!(pass.renewals, 1, "{pass:?}");
        let status = |n: &str| {
            store
                .domain(&DomainName::parse(n).expect("n"))
                .expect("read")
                .expect("d")
                .status
        };
        assert_eq!(status("soon.ru"), DomainStatus::Renewing);
        assert_eq!(status("manual.ru"), DomainStatus::Registered);
        assert_eq!(status("later.ru"), DomainStatus::Registered);
        // Asked once: the domain is Renewing now, so a second look asks nothing.
        let again = crate::lifecycle::run_pass(&store, &policy, now).expect("pass");
        assert_eq!(again.renewals, 0, "{again:?}");
        assert_eq!(again.events, 0, "{again:?}");
        let log = store
            .log_of(
                &crate::store::LogScope::Domain(DomainName::parse("soon.ru").expect("n")),
                0,
                100,
            )
            .expect("log");
        assert!(
            log.iter()
                .any(|e| e.entry.action == "domain.renewing" && e.entry.actor == Actor::Scheduler)
        );
    }

    #[test]
    fn raw_messages_past_the_retention_are_deleted_with_the_decision_logged() {
        use crate::store::inbox::InboxState;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s"), 1 << 20).expect("open");
        let policy = Policy::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("t0");
        for (key, state) in [
            ("maildir/applied", InboxState::Applied),
            ("maildir/unmatched", InboxState::Unmatched),
        ] {
            store
                .receive(
                    key,
                    format!("Subject: {key}\r\n\r\nbody\r\n").as_bytes(),
                    t0,
                )
                .expect("receive");
            let mut rec = store.inbox_message(key).expect("read").expect("record");
            rec.state = state;
            rec.settled = Some(t0);
            let mut extra = |_: &crate::core::Transition| crate::store::Extra {
                inbox: vec![(key.as_bytes().to_vec(), crate::store::encode_value(&rec))],
                ..crate::store::Extra::default()
            };
            let mut ids = Ids(0);
            let mut ctx = Ctx {
                now: t0,
                ids: &mut ids,
                policy: &policy,
            };
            store
                .apply_with(None, &mut ctx, &mut extra)
                .expect("settle");
        }
        let day = jiff::SignedDuration::from_hours(24);
        // The clock is moved, never waited for.
        assert_eq!(sweep_raw(&store, &policy, t0 + day * 89, 90), 0);
        assert_eq!(
            sweep_raw(&store, &policy, t0 + day * 91, 0),
            0,
            "0 keeps all"
        );
        assert_eq!(sweep_raw(&store, &policy, t0 + day * 91, 90), 1);
        assert!(store.raw_message("maildir/applied").expect("raw").is_none());
        assert!(
            store
                .raw_message("maildir/unmatched")
                .expect("raw")
                .is_some(),
            "an unmatched message waits for an operator: kept"
        );
        let rec = store
            .inbox_message("maildir/applied")
            .expect("read")
            .expect("the record stays");
        assert_eq!(rec.raw_removed, Some(t0 + day * 91));
        let log = store.log_since(0, 100).expect("log");
        let e = log
            .iter()
            .find(|e| e.entry.action == "mail.raw_removed")
            .expect("the decision is logged");
        assert!(e.entry.message.contains(&rec.sha256), "{}", e.entry.message);
        assert!(e.entry.message.contains("90 days"), "{}", e.entry.message);
        assert_eq!(
            sweep_raw(&store, &policy, t0 + day * 200, 90),
            0,
            "done once"
        );
    }
}
