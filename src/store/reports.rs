//! Reads for the reseller reports (issue 11 part 3, DESIGN.md §9): ranges of the expiry index
//! (`de\0YYYY-MM-DD\0<domain>`) and the status index (`ds\0<status>\0<domain>`), never a scan
//! of every domain; and the daily report e-mail's outbox records (`R<YYYY-MM-DD>` in the
//! notices tree, beside the notice deliveries they resemble).

use jiff::civil::Date;
use serde::de::DeserializeOwned;

use super::codec::decode;
use super::{Store, StoreError, key_join};
use crate::core::{Domain, DomainStatus};

/// Domains read through an index, with how many index keys the read touched (so a test can
/// prove a report read only the matching part of the index, not every domain).
#[derive(Debug, Clone, Default)]
pub struct IndexRead {
    /// The domains, in index order.
    pub domains: Vec<Domain>,
    /// Index keys read.
    pub keys_read: u64,
}

/// The key of the daily report e-mail's outbox record for `day` (`YYYY-MM-DD`).
pub fn report_mail_key(day: &str) -> Vec<u8> {
    let mut k = b"R".to_vec();
    k.extend_from_slice(day.as_bytes());
    k
}

impl Store {
    /// Domains whose expiry date is in `from..=to`, earliest first (then by name): one range
    /// read of the expiry index.
    pub fn domains_expiring_between(&self, from: Date, to: Date) -> Result<IndexRead, StoreError> {
        let day = |d: Date| d.strftime("%Y-%m-%d").to_string();
        let start = key_join(&[b"de", day(from).as_bytes(), b""]);
        // After the date comes `\0<name>`: `\x01` sorts after every name of the last day.
        let mut end = key_join(&[b"de", day(to).as_bytes()]);
        end.push(1);
        let mut out = IndexRead::default();
        if from > to {
            return Ok(out);
        }
        for k in self.index.range(start..end).keys() {
            let k = k?;
            out.keys_read += 1;
            // `de \0 date \0 name`: the name is what follows the second NUL.
            let name = k.splitn(3, |b| *b == 0).nth(2).unwrap_or_default();
            if let Some(raw) = self.domains.get(name)? {
                out.domains
                    .push(decode(&String::from_utf8_lossy(name), &raw)?);
            }
        }
        Ok(out)
    }

    /// Domains in `status`, in name order: one prefix read of the status index.
    pub fn domains_with_status(&self, status: DomainStatus) -> Result<IndexRead, StoreError> {
        let prefix = key_join(&[b"ds", status.as_str().as_bytes(), b""]);
        let mut out = IndexRead::default();
        for k in self.index.scan_prefix(&prefix).keys() {
            let k = k?;
            out.keys_read += 1;
            let name = &k[prefix.len()..];
            if let Some(raw) = self.domains.get(name)? {
                out.domains
                    .push(decode(&String::from_utf8_lossy(name), &raw)?);
            }
        }
        Ok(out)
    }

    /// The daily report e-mail's outbox record for `day`, if one was written.
    pub fn report_mail<T: DeserializeOwned>(&self, day: &str) -> Result<Option<T>, StoreError> {
        match self.notices.get(report_mail_key(day))? {
            Some(raw) => Ok(Some(decode(&format!("report mail {day}"), &raw)?)),
            None => Ok(None),
        }
    }

    /// Every daily report e-mail's outbox record, oldest day first.
    pub fn report_mails<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for kv in self.notices.scan_prefix(b"R") {
            let (k, v) = kv?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }
}
