//! Timers: turns passed reply deadlines into `DeadlinePassed` events (DESIGN.md §2: "no reply
//! within the deadline -> Error"), and asks for the renewal of domains marked auto-renew when
//! their expiry comes near (DESIGN.md §2, "automatic N days before expiry").

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::config::AutoRenew;
use crate::core::{Actor, CoreError, Ctx, DomainStatus, Event, Policy};
use crate::idsource::UuidIds;
use crate::store::ApplyError;
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

/// Requests the renewal of every Registered domain marked auto-renew whose expiry is within
/// `auto.days_before` days of `now`. A domain already renewing (or in Error after a failed
/// renewal) is not Registered, so nothing is asked twice. Returns how many were requested.
pub fn request_auto_renewals(
    store: &Store,
    policy: &Policy,
    now: Timestamp,
    auto: &AutoRenew,
) -> usize {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let until = today
        .checked_add(jiff::Span::new().days(auto.days_before))
        .unwrap_or(today);
    let due = match store.domains_expiring_by(until) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "reading expiring domains failed");
            return 0;
        }
    };
    let mut asked = 0;
    for d in due
        .into_iter()
        .filter(|d| d.auto_renew && d.status == DomainStatus::Registered)
    {
        let mut ids = UuidIds;
        let mut ctx = Ctx {
            now,
            ids: &mut ids,
            policy,
        };
        let event = Event::Renew {
            domain: d.name.clone(),
            years: auto.years,
            actor: Actor::Scheduler,
        };
        match store.apply(event, &mut ctx) {
            Ok(_) => {
                asked += 1;
                tracing::info!(domain = %d.name, expires = ?d.expires, "auto-renewal requested");
            }
            Err(ApplyError::Core(CoreError::TooEarlyToRenew { earliest, .. })) => {
                tracing::debug!(domain = %d.name, %earliest, "auto-renewal waits for the renewal window");
            }
            Err(e) => tracing::warn!(domain = %d.name, error = %e, "auto-renewal refused"),
        }
    }
    asked
}

/// Runs until `stop` turns true, checking deadlines every `tick`.
pub async fn run(
    store: Arc<Store>,
    policy: Policy,
    tick: Duration,
    auto_renew: Option<AutoRenew>,
    heartbeat: Arc<crate::health::Worker>,
    mut stop: watch::Receiver<bool>,
) {
    // Expiry dates change by the day: a look a minute is plenty.
    let mut last_renewal_check: Option<std::time::Instant> = None;
    loop {
        heartbeat.beat();
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let renew_now = auto_renew
            .filter(|_| last_renewal_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)));
        if renew_now.is_some() {
            last_renewal_check = Some(std::time::Instant::now());
        }
        let (store, policy) = (store.clone(), policy.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let now = Timestamp::now();
            fire_due_deadlines(&store, &policy, now);
            if let Some(auto) = renew_now {
                request_auto_renewals(&store, &policy, now, &auto);
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "the deadline check failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        ClientId, Contact, DomainName, DomainOrder, Handle, IdSource, NewClient, Person,
        Registrant, ReplyOutcome, RequestId,
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
        let auto = AutoRenew {
            days_before: 59,
            years: 1,
        };
        assert_eq!(
            request_auto_renewals(&store, &Policy::default(), now, &auto),
            1
        );
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
        assert_eq!(
            request_auto_renewals(&store, &Policy::default(), now, &auto),
            0
        );
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
}
