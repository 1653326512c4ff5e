//! Identifier newtypes, validated once at the edge: a value of one of these types that exists is
//! valid (DESIGN.md §8).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why an identifier was refused; the message says what is wrong with the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(pub String);

/// A fully qualified domain name in lower-case ASCII (IDN labels in punycode, RFC 3492/5891).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    /// Parses a name as a panel or operator types it: Unicode (`пример.рф`) or ASCII, any case,
    /// an optional trailing dot. Applies UTS #46 mapping, then the RFC 1035/1123 host rules:
    /// at least two labels, labels of 1..=63 octets of letters, digits and inner hyphens, the
    /// whole name at most 253 octets, and a top-level label that is not all digits.
    pub fn parse(input: &str) -> Result<Self, InvalidId> {
        let trimmed = input.trim();
        let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(InvalidId("domain name is empty".into()));
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidId(format!(
                "domain name {trimmed:?} contains white space or control characters"
            )));
        }
        let ascii = idna::domain_to_ascii_strict(trimmed)
            .map_err(|_| InvalidId(format!("{trimmed:?} is not a valid domain name (IDNA)")))?;
        Self::check_ascii(&ascii)?;
        Ok(DomainName(ascii))
    }

    fn check_ascii(ascii: &str) -> Result<(), InvalidId> {
        if ascii.len() > 253 {
            return Err(InvalidId(format!(
                "domain name is {} octets long; the limit is 253",
                ascii.len()
            )));
        }
        let labels: Vec<&str> = ascii.split('.').collect();
        if labels.len() < 2 {
            return Err(InvalidId(format!(
                "{ascii:?} has no top-level domain (expected e.g. example.ru)"
            )));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(InvalidId(format!(
                    "label {label:?} of {ascii:?} must be 1 to 63 characters"
                )));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(InvalidId(format!(
                    "label {label:?} of {ascii:?} may hold only letters, digits and hyphens"
                )));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(InvalidId(format!(
                    "label {label:?} of {ascii:?} may not begin or end with a hyphen"
                )));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(InvalidId(format!(
                "{ascii:?} has an all-numeric top-level domain"
            )));
        }
        Ok(())
    }

    /// The ASCII (punycode) form, as sent to the registrar and used as a key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Unicode form for people (`xn--e1afmkfd.xn--p1ai` is shown as `пример.рф`).
    pub fn to_unicode(&self) -> String {
        let (unicode, result) = idna::domain_to_unicode(&self.0);
        if result.is_ok() {
            unicode
        } else {
            self.0.clone()
        }
    }

    /// The top-level label (`ru`, `xn--p1ai`).
    pub fn tld(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or(&self.0)
    }

    /// True when `self` is `parent` or lies below it (`ns1.example.ru` under `example.ru`).
    pub fn is_within(&self, parent: &DomainName) -> bool {
        self.0 == parent.0 || self.0.ends_with(&format!(".{}", parent.0))
    }
}

impl TryFrom<String> for DomainName {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        DomainName::parse(&value)
    }
}

impl From<DomainName> for String {
    fn from(value: DomainName) -> Self {
        value.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a token of 1..=`max` characters drawn from ASCII letters, digits and `extra`.
fn check_token(what: &str, value: &str, max: usize, extra: &[u8]) -> Result<(), InvalidId> {
    if value.is_empty() || value.len() > max {
        return Err(InvalidId(format!("{what} must be 1 to {max} characters")));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || (c.is_ascii() && extra.contains(&(*c as u8)))))
    {
        let allowed: String = extra.iter().map(|b| *b as char).collect();
        return Err(InvalidId(format!(
            "{what} {value:?} contains {bad:?}; allowed are ASCII letters, digits and {allowed:?}"
        )));
    }
    Ok(())
}

/// The panel's own identifier of a customer (its billing system's key), 1..=64 characters of
/// ASCII letters, digits and `._:-`. Chosen by the panel so that a repeated create is detectable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

impl ClientId {
    /// Validates a client id.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        check_token("client id", value, 64, b"._:-")?;
        Ok(ClientId(value.to_owned()))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ClientId::parse(&value)
    }
}
impl From<ClientId> for String {
    fn from(value: ClientId) -> Self {
        value.0
    }
}
impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registrar contact handle (R01 `nic_hdl`, e.g. `MYCOMPANY_7_3-GPT`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Handle(String);

impl Handle {
    /// Validates a handle: 1..=64 ASCII letters, digits, `_` and `-`.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        check_token("handle", value, 64, b"_-")?;
        Ok(Handle(value.to_owned()))
    }
    /// The handle as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Handle {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Handle::parse(&value)
    }
}
impl From<Handle> for String {
    fn from(value: Handle) -> Self {
        value.0
    }
}
impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One registrar request (one e-mail). A UUID v7, so keys sort in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub Uuid);

impl RequestId {
    /// Parses the text form (any UUID notation).
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        Uuid::parse_str(value.trim())
            .map(RequestId)
            .map_err(|_| InvalidId(format!("{value:?} is not a request id (a UUID)")))
    }
    /// The short token that goes into a request's Subject (`[RM-<token>]`): the UUID's 32 hex
    /// digits, so it maps back to exactly one request.
    pub fn token(&self) -> String {
        self.0.simple().to_string()
    }
    /// Big-endian bytes, the store key.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A name server of a domain: its host name and, for a server inside the domain itself, the glue
/// addresses the registry needs (R01 writes them as `ns1.example.ru [192.0.2.1]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nameserver {
    /// Host name of the server.
    pub host: DomainName,
    /// Glue addresses; required exactly when `host` lies inside the domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
}

impl Nameserver {
    /// Parses `host`, `host 192.0.2.1`, `host [192.0.2.1, 2001:db8::1]`.
    pub fn parse(input: &str) -> Result<Self, InvalidId> {
        let cleaned: String = input
            .chars()
            .map(|c| if matches!(c, '[' | ']' | ',') { ' ' } else { c })
            .collect();
        let mut words = cleaned.split_whitespace();
        let host = words
            .next()
            .ok_or_else(|| InvalidId("name server is empty".into()))?;
        let host = DomainName::parse(host)?;
        let mut addresses = Vec::new();
        for word in words {
            let ip: IpAddr = word
                .parse()
                .map_err(|_| InvalidId(format!("{word:?} is not an IP address")))?;
            addresses.push(ip);
        }
        Ok(Nameserver { host, addresses })
    }
}

impl fmt::Display for Nameserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.host.as_str())?;
        if !self.addresses.is_empty() {
            let addrs: Vec<String> = self.addresses.iter().map(|a| a.to_string()).collect();
            write!(f, " [{}]", addrs.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idn_domain_is_stored_as_punycode_and_shown_in_unicode() {
        let d = DomainName::parse("Пример.РФ.").unwrap();
        assert_eq!(d.as_str(), "xn--e1afmkfd.xn--p1ai");
        assert_eq!(d.to_unicode(), "пример.рф");
        assert_eq!(d.tld(), "xn--p1ai");
    }

    #[test]
    fn bad_domain_names_are_refused() {
        for bad in [
            "",
            "ru",
            "-a.ru",
            "a-.ru",
            "a..ru",
            "a b.ru",
            "a_b.ru",
            "example.123",
            &format!("{}.ru", "a".repeat(64)),
            "exa\nmple.ru",
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn nameserver_with_glue_parses() {
        let ns = Nameserver::parse("ns1.example.ru [192.0.2.1, 2001:db8::1]").unwrap();
        assert_eq!(ns.host.as_str(), "ns1.example.ru");
        assert_eq!(ns.addresses.len(), 2);
        assert_eq!(ns.to_string(), "ns1.example.ru [192.0.2.1, 2001:db8::1]");
        assert!(Nameserver::parse("ns1.example.ru 999.1.1.1").is_err());
    }

    #[test]
    fn client_ids_and_handles_are_checked() {
        assert!(ClientId::parse("cust 42").is_err());
        assert!(ClientId::parse("cust/42").is_err());
        assert!(ClientId::parse("cust-42.a:b_c").is_ok());
        assert!(Handle::parse("MYCO_7_3-ORG-GPT").is_ok());
        assert!(Handle::parse("bad handle").is_err());
    }
}
