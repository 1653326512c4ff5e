//! The portfolio import (issue 13): domains a hosting company already holds at the registrar
//! come in as Registered, with their expiry, without any request to the registrar. Pure: the
//! caller reads what exists and writes what this returns.

use jiff::Timestamp;
use jiff::civil::Date;

use super::{Client, ClientId, Domain, DomainName, DomainStatus, Nameserver, Phase};

/// One domain row of an import: a domain registered elsewhere or earlier, as a panel's
/// export has it (WHMCS, HSPcomplete, a spreadsheet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedDomain {
    /// The name.
    pub name: DomainName,
    /// Its holder, who must exist with a registrar handle.
    pub client_id: ClientId,
    /// Expiry at the registrar.
    pub expires: Date,
    /// The panel's order id.
    pub order_id: String,
    /// Description lines.
    pub description: Vec<String>,
    /// Name servers.
    pub nameservers: Vec<Nameserver>,
    /// Renew automatically.
    pub auto_renew: bool,
}

/// What an import row comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportVerdict {
    /// A new domain record, to be written.
    New(Box<Domain>),
    /// The domain is held already with exactly these data: nothing to write (idempotence).
    Unchanged,
}

/// Why a row is refused: the field (of the row's object) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRejection {
    /// The row field at fault.
    pub field: &'static str,
    /// Why, for the operator.
    pub reason: String,
}

/// Decides one domain row: `existing` is the domain as stored (if any), `client` its holder
/// as stored (if any). A domain regmail holds already is left alone: unchanged when the row
/// says the same, refused when it says something else (an import never overwrites a domain
/// regmail manages; change it through the API).
pub fn import_domain(
    existing: Option<&Domain>,
    client: Option<&Client>,
    row: &ImportedDomain,
    now: Timestamp,
) -> Result<ImportVerdict, ImportRejection> {
    let Some(client) = client else {
        return Err(ImportRejection {
            field: "client_id",
            reason: format!(
                "no client {}; import the client (with its handle) first",
                row.client_id
            ),
        });
    };
    if client.handle.is_none() {
        return Err(ImportRejection {
            field: "client_id",
            reason: format!(
                "client {} has no registrar handle, so it cannot hold a registered domain",
                row.client_id
            ),
        });
    }
    if let Some(d) = existing {
        let same = d.status == DomainStatus::Registered
            && d.client_id == row.client_id
            && d.expires == Some(row.expires)
            && d.order_id == row.order_id
            && d.description == row.description
            && d.nameservers == row.nameservers
            && d.auto_renew == row.auto_renew;
        if same {
            return Ok(ImportVerdict::Unchanged);
        }
        return Err(ImportRejection {
            field: "domain",
            reason: format!(
                "{} is held by regmail already ({}, client {}) with other data; an import does \
                 not overwrite it",
                d.name,
                d.status.as_str(),
                d.client_id
            ),
        });
    }
    Ok(ImportVerdict::New(Box::new(Domain {
        name: row.name.clone(),
        client_id: row.client_id.clone(),
        years: 1,
        nameservers: row.nameservers.clone(),
        order_id: row.order_id.clone(),
        description: row.description.clone(),
        paid: true,
        auto_renew: row.auto_renew,
        expires: Some(row.expires),
        grace_ends: None,
        deleted_on: None,
        status: DomainStatus::Registered,
        phase: Phase::Done,
        open_request: None,
        last_error: None,
        created: now,
        updated: now,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ClientStatus, Contact, Handle, Person, Registrant};

    fn client(handle: Option<&str>) -> Client {
        Client {
            id: ClientId::parse("c1").unwrap(),
            registrant: Registrant::Person(Person {
                fio_ru: "Иванов Иван".into(),
                fio_en: "Ivan Ivanov".into(),
                passport: vec!["4500 123456".into()],
                birth_date: jiff::civil::date(1980, 1, 31),
                postal_addr: vec!["Moscow".into()],
                phone: "+7 495 1234567".into(),
                fax: None,
                email: "ivan@example.ru".into(),
                is_protected: true,
                is_resident: true,
                inn: None,
            }),
            contact: Contact {
                name: "Ivan".into(),
                email: "ivan@example.ru".into(),
                phone: None,
            },
            status: ClientStatus::Registered,
            handle: handle.map(|h| Handle::parse(h).unwrap()),
            open_request: None,
            last_error: None,
            created: Timestamp::UNIX_EPOCH,
            updated: Timestamp::UNIX_EPOCH,
        }
    }

    fn row() -> ImportedDomain {
        ImportedDomain {
            name: DomainName::parse("old.ru").unwrap(),
            client_id: ClientId::parse("c1").unwrap(),
            expires: jiff::civil::date(2027, 5, 1),
            order_id: "whmcs-7".into(),
            description: vec!["moved".into()],
            nameservers: vec![],
            auto_renew: true,
        }
    }

    #[test]
    fn a_new_domain_comes_in_registered_with_its_expiry() {
        let c = client(Some("AB123-GPT"));
        let v = import_domain(None, Some(&c), &row(), Timestamp::UNIX_EPOCH).unwrap();
        let ImportVerdict::New(d) = v else {
            panic!("expected a new domain")
        };
        assert_eq!(d.status, DomainStatus::Registered);
        assert_eq!(d.expires, Some(jiff::civil::date(2027, 5, 1)));
        assert!(d.auto_renew && d.paid && d.open_request.is_none());
    }

    #[test]
    fn the_same_row_again_is_unchanged_and_another_is_refused() {
        let c = client(Some("AB123-GPT"));
        let ImportVerdict::New(d) =
            import_domain(None, Some(&c), &row(), Timestamp::UNIX_EPOCH).unwrap()
        else {
            panic!("expected a new domain")
        };
        assert_eq!(
            import_domain(Some(&d), Some(&c), &row(), Timestamp::UNIX_EPOCH),
            Ok(ImportVerdict::Unchanged)
        );
        let mut other = row();
        other.expires = jiff::civil::date(2028, 5, 1);
        let e = import_domain(Some(&d), Some(&c), &other, Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(e.field, "domain");
    }

    #[test]
    fn a_client_without_handle_or_missing_is_refused() {
        let e = import_domain(None, None, &row(), Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(e.field, "client_id");
        let c = client(None);
        let e = import_domain(None, Some(&c), &row(), Timestamp::UNIX_EPOCH).unwrap_err();
        assert!(e.reason.contains("handle"), "{}", e.reason);
    }
}
