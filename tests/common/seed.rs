//! Seeds a store directly (no daemon, no registrar): clients with a notice contact, and
//! domains in any status with any dates, written through the store's own write path
//! (`Store::apply_built`), so the indexes (`ds` status, `de` expiry, `dc` client) are kept
//! exactly as the daemon keeps them. For the reports' tests, which need Expired and Deleted
//! domains on chosen days.

use jiff::Timestamp;
use jiff::civil::Date;
use regmail::core::DomainStatus::{Cancelled, Deleted, Error, Expired, Registered, Renewing};
use regmail::core::{
    Client, ClientId, ClientStatus, Contact, Domain, DomainName, DomainStatus, Handle, Person,
    Phase, Registrant, Transition,
};
use regmail::store::Store;

/// A fixed time for `created`/`updated`.
pub fn t0() -> Timestamp {
    "2026-12-01T09:00:00Z".parse().expect("t0")
}

/// A Registered client `id` whose notice contact is `name`, `email`, `phone`.
pub fn client(id: &str, name: &str, email: &str, phone: Option<&str>) -> Client {
    Client {
        id: ClientId::parse(id).expect("client id"),
        registrant: Registrant::Person(Person {
            fio_ru: "Иванов Иван".into(),
            fio_en: "Ivan Ivanov".into(),
            passport: vec!["4500 123456".into()],
            birth_date: jiff::civil::date(1980, 1, 31),
            postal_addr: vec!["Moscow".into()],
            phone: "+7 495 1234567".into(),
            fax: None,
            email: "registrant@example.ru".into(),
            is_protected: true,
            is_resident: true,
            inn: None,
        }),
        contact: Contact {
            name: name.into(),
            email: email.into(),
            phone: phone.map(str::to_owned),
        },
        status: ClientStatus::Registered,
        handle: Some(Handle::parse("C_1_1-GPT").expect("handle")),
        open_request: None,
        last_error: None,
        created: t0(),
        updated: t0(),
    }
}

/// A domain of `client` in `status` expiring on `expires` (phase and dates to match: Expired
/// is Parked until `grace_ends`, Deleted has `deleted_on`).
pub fn domain(
    name: &str,
    client: &str,
    status: DomainStatus,
    expires: Option<Date>,
    grace_ends: Option<Date>,
    deleted_on: Option<Date>,
) -> Domain {
    Domain {
        name: DomainName::parse(name).expect("domain name"),
        client_id: ClientId::parse(client).expect("client id"),
        years: 1,
        nameservers: vec![],
        order_id: format!("order-{name}"),
        description: vec![format!("site {name}")],
        paid: true,
        auto_renew: false,
        expires,
        grace_ends,
        deleted_on,
        status,
        phase: match status {
            DomainStatus::Expired => Phase::Parked,
            DomainStatus::Deleted => Phase::Deleted,
            DomainStatus::Cancelled => Phase::Cancelled,
            _ => Phase::Done,
        },
        open_request: None,
        last_error: None,
        created: t0(),
        updated: t0(),
    }
}

/// Writes clients and domains in one transaction through the store's write path.
pub fn write(store: &Store, clients: Vec<Client>, domains: Vec<Domain>) {
    store
        .apply_built(
            |_| {
                Ok::<_, ()>(Transition {
                    clients,
                    domains,
                    ..Transition::default()
                })
            },
            t0(),
        )
        .expect("store write")
        .expect("built");
}

/// `d` plus `n` days.
pub fn days(d: Date, n: i64) -> Date {
    d.checked_add(jiff::Span::new().days(n)).expect("date")
}

/// The reports' test portfolio around `today`: client `one` ("Customer One") with live
/// domains expiring in 30, 31, 15, 1 and 0 (Renewing) days, one in Error expiring in 5, one
/// Registered whose expiry passed yesterday, a Cancelled one, `gone.ru` Expired 3 days ago
/// (grace until today+7) and `old.ru` Deleted 10 days ago (expired 20 days ago).
pub fn portfolio(store: &Store, today: Date) {
    let d = |name: &str, st: DomainStatus, exp: Option<i64>| {
        domain(name, "one", st, exp.map(|n| days(today, n)), None, None)
    };
    write(
        store,
        vec![client(
            "one",
            "Customer One",
            "one@customer.test",
            Some("8 900 0000001"),
        )],
        vec![
            d("d30.ru", Registered, Some(30)),
            d("d31.ru", Registered, Some(31)),
            d("d15.ru", Registered, Some(15)),
            d("d1.ru", Registered, Some(1)),
            d("d0.ru", Renewing, Some(0)),
            d("err.ru", Error, Some(5)),
            d("past.ru", Registered, Some(-1)),
            d("cxl.ru", Cancelled, None),
            domain(
                "gone.ru",
                "one",
                Expired,
                Some(days(today, -3)),
                Some(days(today, 7)),
                None,
            ),
            domain(
                "old.ru",
                "one",
                Deleted,
                Some(days(today, -20)),
                None,
                Some(days(today, -10)),
            ),
        ],
    );
}
