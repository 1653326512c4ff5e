//! Value encoding: a format byte, then JSON. The byte lets a later release read an older store
//! (DESIGN.md §8, "store keys and values are versioned").

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// The current value format: JSON.
const FORMAT_V1: u8 = 1;

/// Encodes a value for the store.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serializing our own plain data types to a Vec cannot fail (no maps with non-string keys).
    if let Err(e) = serde_json::to_writer(&mut out, value) {
        tracing::error!(error = %e, "serializing a store value failed");
    }
    out
}

/// Decodes a store value written by [`encode`].
pub fn decode<T: DeserializeOwned>(key: &str, raw: &[u8]) -> Result<T, StoreError> {
    match raw.split_first() {
        Some((&FORMAT_V1, json)) => serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
            key: key.to_owned(),
            reason: e.to_string(),
        }),
        Some((other, _)) => Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("unknown value format {other} (written by a newer regmail?)"),
        }),
        None => Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: "empty value".into(),
        }),
    }
}
