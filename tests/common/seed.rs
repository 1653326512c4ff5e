//! Seeds a store directly (no daemon, no registrar): clients with a notice contact, and
//! domains in any status with any dates, written through the store's own write path
//! (`Store::apply_built`), so the indexes (`ds` status, `de` expiry, `dc` client) are kept
//! exactly as the daemon keeps them. For the reports' tests, which need Expired and Deleted
//! domains on chosen days.

use jiff::Timestamp;
use jiff::civil::Date;
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
