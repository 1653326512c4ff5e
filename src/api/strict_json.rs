//! JSON bodies read strictly: a key given twice in one object is refused (RFC 8259 §4 says
//! names "SHOULD be unique" and leaves duplicates to the parser; serde_json keeps the last one
//! silently, so `{"paid": false, "paid": true}` would be read as paid). The duplicate is
//! named by its path, e.g. `registrant.email`.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictError {
    /// The same key twice in one object: its path.
    Duplicate(String),
    /// Not JSON at all.
    Syntax(String),
}

/// Parses `bytes` as JSON, refusing duplicate keys at any depth.
pub fn parse(bytes: &[u8]) -> Result<Value, StrictError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut dup = None;
    let v = Seed {
        path: String::new(),
        dup: &mut dup,
    }
    .deserialize(&mut de);
    if let Some(path) = dup {
        return Err(StrictError::Duplicate(path));
    }
    let v = v.map_err(|e| StrictError::Syntax(e.to_string()))?;
    de.end().map_err(|e| StrictError::Syntax(e.to_string()))?;
    Ok(v)
}

struct Seed<'a> {
    path: String,
    dup: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        let Seed { path, dup } = self;
        loop {
            let p = format!("{path}[{}]", out.len());
            match seq.next_element_seed(Seed {
                path: p,
                dup: &mut *dup,
            })? {
                Some(v) => out.push(v),
                None => break,
            }
            if dup.is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let Seed { path, dup } = self;
        while let Some(key) = map.next_key::<String>()? {
            let p = child(&path, &key);
            if out.contains_key(&key) {
                *dup = Some(p);
                return Err(de::Error::custom("duplicate key"));
            }
            let v = map.next_value_seed(Seed {
                path: p,
                dup: &mut *dup,
            })?;
            if dup.is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_named_by_path() {
        assert_eq!(
            parse(br#"{"paid": false, "paid": true}"#),
            Err(StrictError::Duplicate("paid".into()))
        );
        assert_eq!(
            parse(br#"{"registrant": {"email": "a@b", "email": "c@d"}}"#),
            Err(StrictError::Duplicate("registrant.email".into()))
        );
        assert_eq!(
            parse(br#"{"x": [{"a": 1}, {"a": 1, "a": 2}]}"#),
            Err(StrictError::Duplicate("x[1].a".into()))
        );
    }

    #[test]
    fn ordinary_json_reads_as_serde_json_does() {
        let text = br#"{"a": [1, -2, 3.5, "s", null, true, {"b": {}}], "c": {"a": 1}}"#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
        assert!(matches!(
            parse(b"{\"a\": 1} x"),
            Err(StrictError::Syntax(_))
        ));
        assert!(matches!(parse(b"{"), Err(StrictError::Syntax(_))));
    }
}
