//! The reseller reports (issue 11 part 3, DESIGN.md §9): domains expiring within N days,
//! expired (in grace), and deleted, with the columns the reseller programs regmail replaces
//! give (research/anchors-domain-lifecycle.md: LogicBoxes' expiry reports), in this order:
//!
//! - expiring: order id, description, expiry date, days left, customer name, e-mail, phone;
//! - expired: order id, description, expiry date, customer name, e-mail, phone;
//! - deleted: order id, description, expiry date, deletion date, customer name, e-mail, phone.
//!
//! Extra columns come AFTER the named ones, so a reseller's spreadsheet that reads the named
//! columns by position keeps working: the expiring report adds the domain's `status`, the
//! expired report its `grace_ends` (the last day a renewal is accepted), and every report ends
//! with the domain (`domain`, ASCII/punycode, and `domain_unicode`). The customer is the
//! client's notice contact (`contact.name`, `contact.email`, `contact.phone`).
//!
//! Each report is a read of one index range (the expiry index for expiring, the status index
//! for expired and deleted), never a scan of every domain; [`Report::keys_read`] says how many
//! index keys it touched. "Today" and "days left" are arguments: the callers take them from
//! the clock in `[reports] timezone`. Rendered as JSON ([`Report::to_json`]) or CSV
//! ([`csv::render`]); the daily e-mail is [`mail`].

pub mod csv;
pub mod mail;

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use crate::config::reports::MAX_WITHIN;
use crate::core::{Client, ClientId, Domain, DomainStatus};
use crate::store::{Store, StoreError};

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Domains whose expiry date is within `within` days of today (0..=within days left).
    Expiring {
        /// Days ahead, 1..=366.
        within: i64,
    },
    /// Expired domains, parked, still renewable until their grace ends.
    Expired,
    /// Deleted domains (grace ended, or the registrar said so).
    Deleted,
}

impl Kind {
    /// The report's name in routes, file names and JSON (`expiring`, `expired`, `deleted`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Expiring { .. } => "expiring",
            Kind::Expired => "expired",
            Kind::Deleted => "deleted",
        }
    }

    /// A file name for the CSV of this report on `date`, e.g. `expiring-30-2026-12-02.csv`.
    pub fn file_name(self, date: Date) -> String {
        match self {
            Kind::Expiring { within } => format!("expiring-{within}-{date}.csv"),
            other => format!("{}-{date}.csv", other.name()),
        }
    }

    /// A title for people, e.g. "Domains expiring within 30 days".
    pub fn title(self) -> String {
        match self {
            Kind::Expiring { within: 1 } => "Domains expiring within 1 day".into(),
            Kind::Expiring { within } => format!("Domains expiring within {within} days"),
            Kind::Expired => "Expired domains (in grace, still renewable)".into(),
            Kind::Deleted => "Deleted domains".into(),
        }
    }

    /// The columns, in order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Kind::Expiring { .. } => EXPIRING,
            Kind::Expired => EXPIRED,
            Kind::Deleted => DELETED,
        }
    }
}

/// One column: its JSON key and its CSV heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The key in JSON rows and in the `columns` list.
    pub key: &'static str,
    /// The CSV header cell.
    pub head: &'static str,
}

const fn col(key: &'static str, head: &'static str) -> Column {
    Column { key, head }
}

const ORDER: Column = col("order_id", "Order ID");
const DESCR: Column = col("description", "Description");
const EXPIRY: Column = col("expiry_date", "Expiry date");
const NAME: Column = col("customer_name", "Customer name");
const EMAIL: Column = col("email", "E-mail");
const PHONE: Column = col("phone", "Phone");
const DOMAIN: Column = col("domain", "Domain");
const DOMAIN_U: Column = col("domain_unicode", "Domain (Unicode)");

/// The expiring report's columns: the seven, then status and the domain.
pub const EXPIRING: &[Column] = &[
    ORDER,
    DESCR,
    EXPIRY,
    col("days_left", "Days left"),
    NAME,
    EMAIL,
    PHONE,
    col("status", "Status"),
    DOMAIN,
    DOMAIN_U,
];
/// The expired report's columns: the six, then the grace end and the domain.
pub const EXPIRED: &[Column] = &[
    ORDER,
    DESCR,
    EXPIRY,
    NAME,
    EMAIL,
    PHONE,
    col("grace_ends", "Grace ends"),
    DOMAIN,
    DOMAIN_U,
];
/// The deleted report's columns: the seven, then the domain.
pub const DELETED: &[Column] = &[
    ORDER,
    DESCR,
    EXPIRY,
    col("deletion_date", "Deletion date"),
    NAME,
    EMAIL,
    PHONE,
    DOMAIN,
    DOMAIN_U,
];

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Text (may be empty).
    Text(String),
    /// A date, or none.
    Date(Option<Date>),
    /// A whole number (days left).
    Int(i64),
}

impl Cell {
    /// The cell as JSON: a string, a `YYYY-MM-DD` string or null, a number.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Date(Some(d)) => Value::String(d.to_string()),
            Cell::Date(None) => Value::Null,
            Cell::Int(n) => json!(n),
        }
    }

    /// The cell as text (dates `YYYY-MM-DD`, none as empty).
    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Date(Some(d)) => d.to_string(),
            Cell::Date(None) => String::new(),
            Cell::Int(n) => n.to_string(),
        }
    }
}

/// A report as of one day.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which report.
    pub kind: Kind,
    /// The day it is as of ("today" in `[reports] timezone`).
    pub date: Date,
    /// Rows, each with one cell per column of [`Kind::columns`], in order.
    pub rows: Vec<Vec<Cell>>,
    /// How many index keys the report read (the matching part of one index; for tests).
    pub keys_read: u64,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Today's date at `now` in `tz` (the reports' "today").
pub fn today(now: Timestamp, tz: &TimeZone) -> Date {
    now.to_zoned(tz.clone()).date()
}

/// Parses a `within` value: a whole number of days, 1..=366. The error says what is wanted.
pub fn parse_within(s: &str) -> Result<i64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_WITHIN).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?}: expected a whole number of days from 1 to {MAX_WITHIN}, e.g. 30"
        )),
    }
}

/// Reads the clients of `domains` once each.
fn clients_of(store: &Store, domains: &[Domain]) -> Result<BTreeMap<ClientId, Client>, StoreError> {
    let mut out = BTreeMap::new();
    for d in domains {
        if !out.contains_key(&d.client_id)
            && let Some(c) = store.client(&d.client_id)?
        {
            out.insert(d.client_id.clone(), c);
        }
    }
    Ok(out)
}

/// The customer cells (name, e-mail, phone) of a domain's client; empty if it is unknown.
fn customer(clients: &BTreeMap<ClientId, Client>, d: &Domain) -> [Cell; 3] {
    match clients.get(&d.client_id) {
        Some(c) => [
            Cell::Text(c.contact.name.clone()),
            Cell::Text(c.contact.email.clone()),
            Cell::Text(c.contact.phone.clone().unwrap_or_default()),
        ],
        None => [
            Cell::Text(String::new()),
            Cell::Text(String::new()),
            Cell::Text(String::new()),
        ],
    }
}

fn order(d: &Domain) -> [Cell; 2] {
    [
        Cell::Text(d.order_id.clone()),
        // R01's `descr` is several lines; one cell keeps them, line by line.
        Cell::Text(d.description.join("\n")),
    ]
}

fn names(d: &Domain) -> [Cell; 2] {
    [
        Cell::Text(d.name.as_str().to_owned()),
        Cell::Text(d.name.to_unicode()),
    ]
}

/// Statuses that a domain with an expiry date in the future can have and that are NOT live
/// registrations: they are left out of the expiring report.
fn not_live(s: DomainStatus) -> bool {
    matches!(
        s,
        DomainStatus::Expired | DomainStatus::Deleted | DomainStatus::Cancelled
    )
}

/// Domains whose expiry date is `today..=today+within`, earliest first, with the days left.
/// Every live status counts (Registered, Renewing, and Error after a failed renewal: the
/// reseller must see those most of all); the `status` column tells them apart.
pub fn expiring(store: &Store, today: Date, within: i64) -> Result<Report, ReportError> {
    let within = within.clamp(1, MAX_WITHIN);
    let until = today
        .checked_add(jiff::Span::new().days(within))
        .unwrap_or(Date::MAX);
    let read = store.domains_expiring_between(today, until)?;
    let domains: Vec<Domain> = read
        .domains
        .into_iter()
        .filter(|d| !not_live(d.status))
        .collect();
    let clients = clients_of(store, &domains)?;
    let rows = domains
        .iter()
        .filter_map(|d| {
            let expires = d.expires?;
            let days = today.until(expires).map(|s| s.get_days()).unwrap_or(0);
            let [order_id, descr] = order(d);
            let [name, email, phone] = customer(&clients, d);
            let [ascii, unicode] = names(d);
            Some(vec![
                order_id,
                descr,
                Cell::Date(Some(expires)),
                Cell::Int(i64::from(days)),
                name,
                email,
                phone,
                Cell::Text(d.status.as_str().to_owned()),
                ascii,
                unicode,
            ])
        })
        .collect();
    Ok(Report {
        kind: Kind::Expiring { within },
        date: today,
        rows,
        keys_read: read.keys_read,
    })
}

/// Expired domains (status Expired: parked, renewable until `grace_ends`), by expiry date.
pub fn expired(store: &Store, today: Date) -> Result<Report, ReportError> {
    let read = store.domains_with_status(DomainStatus::Expired)?;
    let mut domains = read.domains;
    domains.sort_by(|a, b| (a.expires, &a.name).cmp(&(b.expires, &b.name)));
    let clients = clients_of(store, &domains)?;
    let rows = domains
        .iter()
        .map(|d| {
            let [order_id, descr] = order(d);
            let [name, email, phone] = customer(&clients, d);
            let [ascii, unicode] = names(d);
            vec![
                order_id,
                descr,
                Cell::Date(d.expires),
                name,
                email,
                phone,
                Cell::Date(d.grace_ends),
                ascii,
                unicode,
            ]
        })
        .collect();
    Ok(Report {
        kind: Kind::Expired,
        date: today,
        rows,
        keys_read: read.keys_read,
    })
}

/// Deleted domains (status Deleted), by deletion date.
pub fn deleted(store: &Store, today: Date) -> Result<Report, ReportError> {
    let read = store.domains_with_status(DomainStatus::Deleted)?;
    let mut domains = read.domains;
    domains.sort_by(|a, b| (a.deleted_on, &a.name).cmp(&(b.deleted_on, &b.name)));
    let clients = clients_of(store, &domains)?;
    let rows = domains
        .iter()
        .map(|d| {
            let [order_id, descr] = order(d);
            let [name, email, phone] = customer(&clients, d);
            let [ascii, unicode] = names(d);
            vec![
                order_id,
                descr,
                Cell::Date(d.expires),
                Cell::Date(d.deleted_on),
                name,
                email,
                phone,
                ascii,
                unicode,
            ]
        })
        .collect();
    Ok(Report {
        kind: Kind::Deleted,
        date: today,
        rows,
        keys_read: read.keys_read,
    })
}

/// Makes the report of `kind` as of `today`.
pub fn make(store: &Store, kind: Kind, today: Date) -> Result<Report, ReportError> {
    match kind {
        Kind::Expiring { within } => expiring(store, today, within),
        Kind::Expired => expired(store, today),
        Kind::Deleted => deleted(store, today),
    }
}

impl Report {
    /// The report as JSON: `{"report", "date", "within_days" (expiring only), "columns" (the
    /// keys in order), "count", "rows": [{key: value, ...}]}`. A JSON object does not keep
    /// its keys' order, so `columns` carries it.
    pub fn to_json(&self) -> Value {
        let columns = self.kind.columns();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let m: Map<String, Value> = columns
                    .iter()
                    .zip(r)
                    .map(|(c, cell)| (c.key.to_owned(), cell.to_json()))
                    .collect();
                Value::Object(m)
            })
            .collect();
        let mut v = json!({
            "report": self.kind.name(),
            "date": self.date.to_string(),
            "columns": columns.iter().map(|c| c.key).collect::<Vec<_>>(),
            "count": self.rows.len(),
            "rows": rows,
        });
        if let Kind::Expiring { within } = self.kind {
            v["within_days"] = json!(within);
        }
        v
    }
}
