//! Standard Webhooks v1 signatures (research/anchors-notifications.md §1.1): the signed content
//! is `{webhook-id}.{webhook-timestamp}.{body}`, the key the base64-decoded part of the
//! `whsec_` secret, the signature `v1,` + base64(HMAC-SHA256). Several secrets (a rotation)
//! give several space-separated signatures.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secret's prefix.
pub const PREFIX: &str = "whsec_";

/// Decodes a `whsec_` secret into its key; None when it is not `whsec_` + base64 of 24..=64
/// bytes (the specification's bounds).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(PREFIX)?;
    let key = STANDARD.decode(b64).ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// A new secret from 32 random bytes.
pub fn new_secret(random: [u8; 32]) -> String {
    format!("{PREFIX}{}", STANDARD.encode(random))
}

/// The `webhook-signature` header value for `id`, `timestamp` (Unix seconds) and the exact
/// body bytes, one `v1,` signature per secret. A secret that does not decode is skipped (the
/// API refuses those when the endpoint is created).
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut sigs = Vec::new();
    for s in secrets {
        let Some(key) = secret_key(s) else { continue };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
            continue;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        sigs.push(format!(
            "v1,{}",
            STANDARD.encode(mac.finalize().into_bytes())
        ));
    }
    sigs.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published vectors (research/anchors-notifications.md §1.1).
    #[test]
    fn standard_webhooks_test_vectors() {
        let s = signature(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(s, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let s = signature(
            &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into()],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(s, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn rotation_signs_with_both_keys() {
        let a = new_secret([1; 32]);
        let b = new_secret([2; 32]);
        let both = signature(&[a.clone(), b.clone()], "1", 5, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&[a], "1", 5, b"{}"));
        assert_eq!(parts[1], signature(&[b], "1", 5, b"{}"));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(secret_key("nope").is_none());
        assert!(secret_key("whsec_!!!").is_none());
        assert!(secret_key("whsec_AAAA").is_none()); // 3 bytes: too short
        assert!(secret_key(&new_secret([7; 32])).is_some());
    }
}
