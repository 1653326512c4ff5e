//! One-click unsubscribe tokens (RFC 8058 §3.1: the URI carries an opaque, hard-to-forge token,
//! since the POST carries no cookies or authorization). A token is the base64url of
//! `client NUL user NUL category` and the first 16 bytes of its HMAC-SHA256 under the
//! install's key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::catalogue::Category;

fn mac(key: &[u8], payload: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(payload);
            m.finalize().into_bytes()[..16].to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The token for `user` of `client` and `category`.
pub fn token(key: &[u8], client: &str, user: &str, category: Category) -> String {
    let payload = format!("{client}\0{user}\0{}", category.as_str());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac(key, payload.as_bytes()))
    )
}

/// What a valid token names: (client, user, category).
pub fn verify(key: &[u8], token: &str) -> Option<(String, String, Category)> {
    let (p, m) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(p).ok()?;
    let given = URL_SAFE_NO_PAD.decode(m).ok()?;
    let want = mac(key, &payload);
    // Constant-time enough for 16 bytes: compare every byte.
    if given.len() != want.len() || given.iter().zip(&want).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0
    {
        return None;
    }
    let text = String::from_utf8(payload).ok()?;
    let mut parts = text.split('\0');
    let (c, u, cat) = (parts.next()?, parts.next()?, parts.next()?);
    Some((c.to_owned(), u.to_owned(), Category::parse(cat)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_resist_forgery() {
        let t = token(b"k1", "c1", "u1", Category::Domains);
        assert_eq!(
            verify(b"k1", &t),
            Some(("c1".into(), "u1".into(), Category::Domains))
        );
        assert_eq!(verify(b"k2", &t), None);
        let forged = token(b"k1", "c1", "u2", Category::Domains);
        let (p, _) = forged.split_once('.').unwrap();
        let (_, m) = t.split_once('.').unwrap();
        assert_eq!(verify(b"k1", &format!("{p}.{m}")), None);
    }
}
