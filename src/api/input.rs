//! Reading API request bodies field by field, so that every refusal names its field. Text is
//! checked for length and control characters (a CR or LF in a single-line field could inject
//! headers or template lines).

use jiff::civil::Date;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::core::{
    ClientId, Contact, DomainName, DomainOrder, Handle, Nameserver, NewClient, Organization,
    Person, Registrant, ReplyOutcome,
};

/// A JSON object being read, with its path for error messages.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// The body, which must be a JSON object.
    pub fn root(v: &'a Value) -> Result<Obj<'a>, ApiError> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                path: String::new(),
            }),
            _ => Err(ApiError::invalid("body", "the body must be a JSON object")),
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Refuses keys other than `allowed` (a typo must not be silently ignored).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for k in self.map.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::invalid(
                    self.field(k),
                    format!("unknown field; expected one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// A nested object.
    pub fn obj(&self, key: &str) -> Result<Option<Obj<'a>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                path: self.field(key),
            })),
            Some(_) => Err(ApiError::invalid(self.field(key), "must be an object")),
        }
    }

    /// A required single-line string of 1..=`max` characters.
    pub fn text(&self, key: &str, max: usize) -> Result<String, ApiError> {
        self.opt_text(key, max)?
            .ok_or_else(|| ApiError::invalid(self.field(key), "is required"))
    }

    /// An optional single-line string of 1..=`max` characters.
    pub fn opt_text(&self, key: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => check_line(&self.field(key), s, max).map(Some),
            Some(other) => Err(ApiError::invalid(
                self.field(key),
                format!("must be a string, not {}", type_name(other)),
            )),
        }
    }

    /// Lines: a string (split at line ends) or an array of strings; at most `max_lines`.
    pub fn lines(
        &self,
        key: &str,
        max_lines: usize,
        max_len: usize,
    ) -> Result<Vec<String>, ApiError> {
        let field = self.field(key);
        let raw: Vec<String> = match self.get(key) {
            None => Vec::new(),
            Some(Value::String(s)) => s.lines().map(str::to_owned).collect(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            return Err(ApiError::invalid(
                                format!("{field}[{i}]"),
                                format!("must be a string, not {}", type_name(other)),
                            ));
                        }
                    }
                }
                out
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    field,
                    format!(
                        "must be a string or an array of strings, not {}",
                        type_name(other)
                    ),
                ));
            }
        };
        if raw.len() > max_lines {
            return Err(ApiError::invalid(
                field,
                format!("has {} lines; at most {max_lines}", raw.len()),
            ));
        }
        raw.iter()
            .enumerate()
            .map(|(i, l)| check_line(&format!("{field}[{i}]"), l, max_len))
            .collect()
    }

    /// Required lines (at least one).
    pub fn req_lines(
        &self,
        key: &str,
        max_lines: usize,
        max_len: usize,
    ) -> Result<Vec<String>, ApiError> {
        let lines = self.lines(key, max_lines, max_len)?;
        if lines.is_empty() {
            return Err(ApiError::invalid(self.field(key), "is required"));
        }
        Ok(lines)
    }

    /// A boolean, `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ApiError::invalid(
                self.field(key),
                format!("must be true or false, not {}", type_name(other)),
            )),
        }
    }

    /// A whole number in `min..=max`, `default` when absent.
    pub fn number(
        &self,
        key: &str,
        min: u64,
        max: u64,
        default: Option<u64>,
    ) -> Result<u64, ApiError> {
        match self.get(key) {
            None => default.ok_or_else(|| ApiError::invalid(self.field(key), "is required")),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(ApiError::invalid(
                    self.field(key),
                    format!("{n} is out of range; expected a whole number from {min} to {max}"),
                )),
            },
            Some(other) => Err(ApiError::invalid(
                self.field(key),
                format!("must be a number, not {}", type_name(other)),
            )),
        }
    }

    /// An optional date, `YYYY-MM-DD` or R01's `DD.MM.YYYY`.
    pub fn opt_date(&self, key: &str) -> Result<Option<Date>, ApiError> {
        match self.opt_text(key, 10)? {
            None => Ok(None),
            Some(s) => parse_date(&s).map(Some).ok_or_else(|| {
                ApiError::invalid(
                    self.field(key),
                    format!("{s:?} is not a date (YYYY-MM-DD or DD.MM.YYYY)"),
                )
            }),
        }
    }

    /// A string that must be made of `digits` ASCII digits (one of the lengths given).
    fn digits(
        &self,
        key: &str,
        lengths: &[usize],
        required: bool,
    ) -> Result<Option<String>, ApiError> {
        let v = if required {
            Some(self.text(key, 32)?)
        } else {
            self.opt_text(key, 32)?
        };
        if let Some(s) = &v
            && !(s.bytes().all(|b| b.is_ascii_digit()) && lengths.contains(&s.len()))
        {
            let lens: Vec<String> = lengths.iter().map(ToString::to_string).collect();
            return Err(ApiError::invalid(
                self.field(key),
                format!("must be {} digits", lens.join(" or ")),
            ));
        }
        Ok(v)
    }

    fn phone(&self, key: &str, required: bool) -> Result<Option<String>, ApiError> {
        let v = if required {
            Some(self.text(key, 32)?)
        } else {
            self.opt_text(key, 32)?
        };
        if let Some(s) = &v {
            let digits = s.bytes().filter(u8::is_ascii_digit).count();
            let ok = s.starts_with('+')
                && s[1..].bytes().all(|b| b.is_ascii_digit() || b == b' ')
                && (7..=15).contains(&digits);
            if !ok {
                return Err(ApiError::invalid(
                    self.field(key),
                    format!(
                        "{s:?} is not a phone number in international form, e.g. \"+7 495 1234567\""
                    ),
                ));
            }
        }
        Ok(v)
    }

    fn email(&self, key: &str) -> Result<String, ApiError> {
        let s = self.text(key, 254)?;
        let valid = match s.rsplit_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && local
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"@".contains(&b))
                    && DomainName::parse(domain).is_ok()
            }
            None => false,
        };
        if !valid {
            return Err(ApiError::invalid(
                self.field(key),
                format!("{s:?} is not an e-mail address"),
            ));
        }
        Ok(s)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_line(field: &str, s: &str, max: usize) -> Result<String, ApiError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must be a single line without control characters (CR, LF, TAB, ...)",
        ));
    }
    Ok(t.to_owned())
}

/// Parses `YYYY-MM-DD` or `DD.MM.YYYY`.
pub fn parse_date(s: &str) -> Option<Date> {
    if let Ok(d) = s.parse::<Date>() {
        return Some(d);
    }
    let mut parts = s.split('.');
    let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || d.len() != 2 || m.len() != 2 || y.len() != 4 {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()
}

/// Reads `POST /v1/clients`.
pub fn new_client(body: &Value, today: Date) -> Result<NewClient, ApiError> {
    let o = Obj::root(body)?;
    o.only(&["id", "registrant", "contact", "handle"])?;
    let id_text = o.text("id", 64)?;
    let id = ClientId::parse(&id_text).map_err(|e| ApiError::invalid("id", e.0))?;
    let (registrant, contact) = registrant_and_contact(&o, today)?;
    let existing_handle = match o.opt_text("handle", 64)? {
        Some(h) => Some(Handle::parse(&h).map_err(|e| ApiError::invalid("handle", e.0))?),
        None => None,
    };
    Ok(NewClient {
        id,
        registrant,
        contact,
        existing_handle,
    })
}

/// Reads the `registrant` and `contact` objects of a client body.
pub fn registrant_and_contact(o: &Obj<'_>, today: Date) -> Result<(Registrant, Contact), ApiError> {
    let reg = o
        .obj("registrant")?
        .ok_or_else(|| ApiError::invalid("registrant", "is required"))?;
    let kind = reg.text("type", 16)?;
    let registrant = match kind.as_str() {
        "person" => {
            reg.only(&[
                "type",
                "fio_ru",
                "fio_en",
                "passport",
                "birth_date",
                "postal_addr",
                "phone",
                "fax",
                "email",
                "is_protected",
                "is_resident",
                "inn",
            ])?;
            let birth_date = reg
                .opt_date("birth_date")?
                .ok_or_else(|| ApiError::invalid("registrant.birth_date", "is required"))?;
            if birth_date >= today || birth_date.year() < 1900 {
                return Err(ApiError::invalid(
                    "registrant.birth_date",
                    format!("{birth_date} is not a plausible date of birth"),
                ));
            }
            Registrant::Person(Person {
                fio_ru: reg.text("fio_ru", 200)?,
                fio_en: reg.text("fio_en", 200)?,
                passport: reg.req_lines("passport", 5, 200)?,
                birth_date,
                postal_addr: reg.req_lines("postal_addr", 5, 200)?,
                phone: reg.phone("phone", true)?.unwrap_or_default(),
                fax: reg.phone("fax", false)?,
                email: reg.email("email")?,
                is_protected: reg.flag("is_protected", true)?,
                is_resident: reg.flag("is_resident", true)?,
                inn: reg.digits("inn", &[12], false)?,
            })
        }
        "organization" => {
            reg.only(&[
                "type",
                "org_name_ru",
                "org_name_en",
                "inn",
                "kpp",
                "ogrn",
                "legal_addr",
                "postal_addr",
                "phone",
                "fax",
                "email",
                "director_name",
                "bank",
                "ras_schet",
                "kor_schet",
                "bik",
                "is_resident",
            ])?;
            Registrant::Organization(Organization {
                org_name_ru: reg.text("org_name_ru", 300)?,
                org_name_en: reg.text("org_name_en", 300)?,
                inn: reg.digits("inn", &[10, 12], true)?.unwrap_or_default(),
                kpp: reg.digits("kpp", &[9], false)?,
                ogrn: reg.digits("ogrn", &[13, 15], false)?,
                legal_addr: reg.req_lines("legal_addr", 5, 200)?,
                postal_addr: reg.req_lines("postal_addr", 5, 200)?,
                phone: reg.phone("phone", true)?.unwrap_or_default(),
                fax: reg.phone("fax", false)?,
                email: reg.email("email")?,
                director_name: reg.opt_text("director_name", 200)?,
                bank: reg.opt_text("bank", 300)?,
                ras_schet: reg.digits("ras_schet", &[20], false)?,
                kor_schet: reg.digits("kor_schet", &[20], false)?,
                bik: reg.digits("bik", &[9], false)?,
                is_resident: reg.flag("is_resident", true)?,
            })
        }
        other => {
            return Err(ApiError::invalid(
                "registrant.type",
                format!("{other:?}: expected \"person\" or \"organization\""),
            ));
        }
    };
    let contact = match o.obj("contact")? {
        Some(c) => {
            c.only(&["name", "email", "phone"])?;
            Contact {
                name: c.text("name", 200)?,
                email: c.email("email")?,
                phone: c.phone("phone", false)?,
            }
        }
        None => match &registrant {
            Registrant::Person(p) => Contact {
                name: p.fio_en.clone(),
                email: p.email.clone(),
                phone: Some(p.phone.clone()),
            },
            Registrant::Organization(org) => Contact {
                name: org.org_name_en.clone(),
                email: org.email.clone(),
                phone: Some(org.phone.clone()),
            },
        },
    };
    Ok((registrant, contact))
}

/// Parses a domain given in a path or body.
pub fn domain_name(field: &str, s: &str) -> Result<DomainName, ApiError> {
    DomainName::parse_input(s).map_err(|e| ApiError::invalid(field, e.0))
}

/// Reads `POST /v1/domains`.
pub fn domain_order(body: &Value) -> Result<DomainOrder, ApiError> {
    let o = Obj::root(body)?;
    o.only(&[
        "domain",
        "client_id",
        "years",
        "nameservers",
        "order_id",
        "description",
        "paid",
        "auto_renew",
    ])?;
    let name = domain_name("domain", &o.text("domain", 300)?)?;
    let client_id = ClientId::parse(&o.text("client_id", 64)?)
        .map_err(|e| ApiError::invalid("client_id", e.0))?;
    let years = o.number("years", 1, 10, Some(1))? as u8;
    let ns_lines = o.lines("nameservers", 13, 300)?;
    let mut nameservers: Vec<Nameserver> = Vec::new();
    for (i, line) in ns_lines.iter().enumerate() {
        let field = format!("nameservers[{i}]");
        let ns = Nameserver::parse(line).map_err(|e| ApiError::invalid(&field, e.0))?;
        // Glue (RFC 1034 §4.2.1): addresses are needed exactly for servers inside the zone.
        let inside = ns.host.is_within(&name);
        if inside && ns.addresses.is_empty() {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{} lies inside {name}, so its IP address (glue) is required, e.g. \"{} [192.0.2.1]\"",
                    ns.host, ns.host
                ),
            ));
        }
        if !inside && !ns.addresses.is_empty() {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{} lies outside {name}; give its name only, without addresses",
                    ns.host
                ),
            ));
        }
        if nameservers.iter().any(|n| n.host == ns.host) {
            return Err(ApiError::invalid(
                field,
                format!("{} is listed twice", ns.host),
            ));
        }
        nameservers.push(ns);
    }
    if nameservers.len() == 1 {
        return Err(ApiError::invalid(
            "nameservers",
            "give at least two name servers, or none to register without delegation",
        ));
    }
    Ok(DomainOrder {
        name,
        client_id,
        years,
        nameservers,
        order_id: o.text("order_id", 128)?,
        description: o.lines("description", 10, 200)?,
        paid: o.flag("paid", false)?,
        auto_renew: o.flag("auto_renew", false)?,
    })
}

/// Reads `POST /v1/requests/{id}/outcome`: `{event: acknowledged|completed|rejected, task_id?,
/// handle?, expires?, reason?, note}`.
pub fn reply_outcome(body: &Value) -> Result<ReplyOutcome, ApiError> {
    let o = Obj::root(body)?;
    o.only(&["event", "task_id", "handle", "expires", "reason", "note"])?;
    let event = o.text("event", 16)?;
    let allowed: &[&str] = match event.as_str() {
        "acknowledged" => &["task_id"],
        "completed" => &["handle", "expires"],
        "rejected" => &["reason"],
        other => {
            return Err(ApiError::invalid(
                "event",
                format!("{other:?}: expected acknowledged, completed or rejected"),
            ));
        }
    };
    for k in ["task_id", "handle", "expires", "reason"] {
        if o.get(k).is_some() && !allowed.contains(&k) {
            return Err(ApiError::invalid(
                k,
                format!("does not go with event {event:?}"),
            ));
        }
    }
    Ok(match event.as_str() {
        "acknowledged" => ReplyOutcome::Acknowledged {
            task_id: o.opt_text("task_id", 64)?,
        },
        "completed" => ReplyOutcome::Completed {
            handle: match o.opt_text("handle", 64)? {
                Some(h) => Some(Handle::parse(&h).map_err(|e| ApiError::invalid("handle", e.0))?),
                None => None,
            },
            expires: o.opt_date("expires")?,
        },
        _ => ReplyOutcome::Rejected {
            reason: o.text("reason", 1000)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_both_forms() {
        assert_eq!(parse_date("31.01.1980"), Date::new(1980, 1, 31).ok());
        assert_eq!(parse_date("1980-01-31"), Date::new(1980, 1, 31).ok());
        assert_eq!(parse_date("31.02.1980"), None);
        assert_eq!(parse_date("1.1.1980"), None);
    }

    #[test]
    fn glue_rules_for_nameservers() {
        let v = serde_json::json!({"domain":"example.ru","client_id":"c1","order_id":"o1",
            "nameservers":["ns1.example.ru","ns2.host.ru"]});
        let e = domain_order(&v).err().unwrap();
        assert_eq!(e.field, "nameservers[0]");
    }
}
