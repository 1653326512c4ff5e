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

/// Which letters a top-level domain allows in its labels (the registry's rules, carried by
/// the registrar profile: `[tld.<name>] letters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelLetters {
    /// ASCII letters a-z only (.RU, .SU: "Latin letters, digits and hyphen").
    Latin,
    /// Russian Cyrillic letters only (.РФ: "Cyrillic letters, digits and hyphen").
    Cyrillic,
}

/// One TLD's rule for the labels below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TldRule {
    /// The top-level label in Unicode, lower-case (`ru`, `su`, `рф`).
    pub tld: String,
    /// The letters its labels may hold (digits and hyphen always allowed).
    pub letters: LabelLetters,
}

/// Characters that do not show (UAX #44 Default_Ignorable_Code_Point and bidi controls):
/// UTS #46 maps some of them to nothing, so `exam\u{200B}ple.ru` would silently become
/// `example.ru`. They are refused instead.
pub fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// The script of a letter, coarsely (Latin, Cyrillic, Greek, or the 128-code-point block for
/// anything else); None for digits, hyphens and other non-letters.
fn script_of(c: char) -> Option<u32> {
    if !c.is_alphabetic() {
        return None;
    }
    Some(match c as u32 {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => 1,
        0x400..=0x52F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => 2,
        0x370..=0x3FF | 0x1F00..=0x1FFF => 3,
        other => 0x1000 + (other >> 7),
    })
}

impl DomainName {
    /// Parses a name given as input for a new order or a lookup, more strictly than
    /// [`DomainName::parse`] (which also reads stored names): invisible characters are refused
    /// rather than removed, and no label may mix scripts (`ехаmple` with Cyrillic `е`, `х`,
    /// `а` is a homograph of `example`).
    pub fn parse_input(input: &str) -> Result<Self, InvalidId> {
        if let Some(c) = input.chars().find(|c| is_invisible(*c)) {
            return Err(InvalidId(format!(
                "domain name {:?} contains the invisible character U+{:04X}; type the name without it",
                input.trim(),
                c as u32
            )));
        }
        let name = DomainName::parse(input)?;
        for label in name.to_unicode().split('.') {
            let mut scripts = label.chars().filter_map(script_of);
            if let Some(first) = scripts.next()
                && scripts.any(|s| s != first)
            {
                return Err(InvalidId(format!(
                    "label {label:?} of {:?} mixes letters of different scripts",
                    name.to_unicode()
                )));
            }
        }
        Ok(name)
    }

    /// Checks the name against its TLD's rule in `rules` (no rule for the TLD: nothing to
    /// check). Pure.
    pub fn check_tld_rules(&self, rules: &[TldRule]) -> Result<(), InvalidId> {
        let unicode = self.to_unicode();
        let tld = unicode.rsplit('.').next().unwrap_or(&unicode);
        let Some(rule) = rules.iter().find(|r| r.tld.to_lowercase() == tld) else {
            return Ok(());
        };
        let labels: Vec<&str> = unicode.split('.').collect();
        for label in &labels[..labels.len() - 1] {
            let bad = label.chars().find(|&c| {
                let letter_ok = match rule.letters {
                    LabelLetters::Latin => c.is_ascii_lowercase(),
                    LabelLetters::Cyrillic => matches!(c, 'а'..='я' | 'ё'),
                };
                !(letter_ok || c.is_ascii_digit() || c == '-')
            });
            if let Some(c) = bad {
                let allowed = match rule.letters {
                    LabelLetters::Latin => "Latin letters a-z",
                    LabelLetters::Cyrillic => "Cyrillic letters",
                };
                return Err(InvalidId(format!(
                    "{unicode:?}: names under .{tld} may hold only {allowed}, digits and hyphens; {c:?} is not allowed"
                )));
            }
        }
        Ok(())
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

#[cfg(test)]
mod input_rule_tests {
    use super::*;

    fn r01() -> Vec<TldRule> {
        vec![
            TldRule {
                tld: "ru".into(),
                letters: LabelLetters::Latin,
            },
            TldRule {
                tld: "su".into(),
                letters: LabelLetters::Latin,
            },
            TldRule {
                tld: "рф".into(),
                letters: LabelLetters::Cyrillic,
            },
        ]
    }

    fn check(s: &str) -> Result<DomainName, InvalidId> {
        let d = DomainName::parse_input(s)?;
        d.check_tld_rules(&r01())?;
        Ok(d)
    }

    #[test]
    fn invisible_characters_are_refused_not_removed() {
        for s in [
            "exam\u{200B}ple.ru",
            "example.ru\u{FEFF}",
            "ex\u{00AD}ample.ru",
            "при\u{200D}мер.рф",
        ] {
            let e = check(s).unwrap_err();
            assert!(e.0.contains("invisible"), "{s:?}: {e}");
        }
        assert!(
            DomainName::parse("exam\u{200B}ple.ru").is_ok(),
            "the lenient parse maps it away"
        );
    }

    #[test]
    fn mixed_scripts_in_a_label_are_refused_anywhere() {
        // Cyrillic е, х, а in a Latin word.
        let e = check("\u{0435}x\u{0430}mple.com").unwrap_err();
        assert!(e.0.contains("mixes"), "{e}");
        let e = check("paypal\u{0430}.com").unwrap_err();
        assert!(e.0.contains("mixes"), "{e}");
        // One script per label is fine, even when labels differ (no rule for .com).
        assert!(check("пример.example.com").is_ok());
    }

    #[test]
    fn tld_rules_from_the_profile() {
        assert!(check("example-1.ru").is_ok());
        assert!(check("EXAMPLE.SU").is_ok());
        assert!(check("пример-1.рф").is_ok());
        assert!(
            check("xn--e1afmkfd.xn--p1ai").is_ok(),
            "punycode of пример.рф"
        );
        let e = check("пример.ru").unwrap_err();
        assert!(e.0.contains(".ru") && e.0.contains("Latin"), "{e}");
        let e = check("example.рф").unwrap_err();
        assert!(e.0.contains("Cyrillic"), "{e}");
        let e = check("exämple.ru").unwrap_err();
        assert!(e.0.contains("Latin"), "{e}");
        // No rule for the TLD: only the general checks.
        assert!(check("exämple.de").is_ok());
    }
}
