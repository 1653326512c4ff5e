//! Form bodies and query strings (`application/x-www-form-urlencoded`, WHATWG URL §5): read
//! strictly, every field named in errors.

use jiff::civil::Date;

/// A form's fields in order (a name may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

/// A field that cannot be used: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field.
    pub field: String,
    /// Why.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(part: &[u8], what: &str) -> Result<String, FieldError> {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        match part[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = part.get(i + 1).copied().and_then(hex);
                let lo = part.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    // WHATWG: a stray % stays as it is.
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FieldError::new(what, "is not valid UTF-8"))
}

impl Fields {
    /// Parses `a=1&b=2` (a body or a query string).
    pub fn parse(input: &[u8]) -> Result<Fields, FieldError> {
        let mut v = Vec::new();
        for pair in input.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (k, val) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let name = decode(k, "form")?;
            let value = decode(val, &name)?;
            v.push((name, value));
        }
        Ok(Fields(v))
    }

    /// Refuses a field not in `allowed` (a typo in a hand-made URL says so).
    pub fn only(&self, allowed: &[&str]) -> Result<(), FieldError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(FieldError::new(k.clone(), "unknown field")),
            None => Ok(()),
        }
    }

    /// The first value of `name`, trimmed; None when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value of `name` as given (not trimmed), or "".
    pub fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required text of at most `max` characters.
    pub fn text(&self, name: &str, max: usize) -> Result<String, FieldError> {
        match self.get(name) {
            None => Err(FieldError::new(name, "is required")),
            Some(v) if v.chars().count() > max => Err(FieldError::new(
                name,
                format!("is longer than {max} characters"),
            )),
            Some(v) => Ok(v.to_owned()),
        }
    }

    /// An optional text of at most `max` characters.
    pub fn opt_text(&self, name: &str, max: usize) -> Result<Option<String>, FieldError> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.text(name, max).map(Some),
        }
    }

    /// An optional date, `YYYY-MM-DD` (as `<input type=date>` sends) or `DD.MM.YYYY`.
    pub fn opt_date(&self, name: &str) -> Result<Option<Date>, FieldError> {
        let Some(s) = self.get(name) else {
            return Ok(None);
        };
        parse_date(s)
            .map(Some)
            .ok_or_else(|| FieldError::new(name, format!("{s:?}: expected a date YYYY-MM-DD")))
    }

    /// A whole number in `min..=max` (default when absent).
    pub fn number(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, FieldError> {
        match self.get(name) {
            None => Ok(default),
            Some(s) => match s.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(FieldError::new(
                    name,
                    format!("{s:?}: expected a whole number from {min} to {max}"),
                )),
            },
        }
    }
}

/// `YYYY-MM-DD` or `DD.MM.YYYY`.
pub fn parse_date(s: &str) -> Option<Date> {
    if let Ok(d) = s.parse::<Date>() {
        return Some(d);
    }
    let mut it = s.split('.');
    let (d, m, y) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()
}

/// Percent-encodes a query value (everything but unreserved characters, RFC 3986 §2.3).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_repeats() {
        let f = Fields::parse(b"a=1+2&b=%D0%BF&a=x&c").unwrap();
        assert_eq!(f.get("a"), Some("1 2"));
        assert_eq!(f.get("b"), Some("п"));
        assert_eq!(f.all("a"), ["1 2", "x"]);
        assert_eq!(f.get("c"), None);
        assert!(f.only(&["a", "b"]).is_err());
        assert!(Fields::parse(b"a=%FF").is_err());
        assert_eq!(Fields::parse(b"a=100%").unwrap().get("a"), Some("100%"));
        assert_eq!(
            enc("пример.рф x"),
            "%D0%BF%D1%80%D0%B8%D0%BC%D0%B5%D1%80.%D1%80%D1%84%20x"
        );
        assert_eq!(parse_date("31.01.2027"), Date::new(2027, 1, 31).ok());
    }
}
