//! The notice e-mail as sent: UTF-8 text/plain, 8bit, CRLF (RFC 5322, RFC 2045/2047), a
//! Message-ID fixed by the delivery id (so a resend is the same message and a receiver can drop
//! the copy), `Auto-Submitted: auto-generated` (RFC 3834), and for opt-out categories
//! `List-Unsubscribe` + `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058 §3.1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;

/// What a notice e-mail needs besides its text.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// From (and envelope sender).
    pub from: &'a str,
    /// To.
    pub to: &'a str,
    /// The delivery id (Message-ID local part).
    pub delivery: u64,
    /// The notice id and type (headers for filtering).
    pub notice: u64,
    /// Type name.
    pub kind: &'a str,
    /// Host part of the Message-ID.
    pub host: &'a str,
    /// The Date.
    pub date: Timestamp,
    /// The one-click URL, for opt-out categories only.
    pub unsubscribe_url: Option<&'a str>,
}

/// RFC 2047 encoded-word for a header value that is not plain ASCII.
pub fn encode_header(text: &str) -> String {
    if text.is_ascii() && !text.contains("=?") {
        return text.to_owned();
    }
    // Encoded-words of at most 75 chars (RFC 2047 §2): split the text on char boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if (chunk.len() + c.len_utf8()).div_ceil(3) * 4 > 45 {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// The message's Message-ID.
pub fn message_id(delivery: u64, host: &str) -> String {
    format!("<notice-{delivery}@{host}>")
}

/// The whole message, CRLF line ends, body lines kept under 998 octets.
pub fn email(env: &Envelope<'_>, subject: &str, body: &str) -> Vec<u8> {
    let date = env
        .date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string();
    let mut h = vec![
        format!("From: {}", env.from),
        format!("To: {}", env.to),
        format!("Subject: {}", encode_header(subject)),
        format!("Date: {date}"),
        format!("Message-ID: {}", message_id(env.delivery, env.host)),
        "MIME-Version: 1.0".to_owned(),
        "Content-Type: text/plain; charset=utf-8".to_owned(),
        "Content-Transfer-Encoding: 8bit".to_owned(),
        "Auto-Submitted: auto-generated".to_owned(),
        format!("X-Regmail-Notice: {} {}", env.notice, env.kind),
    ];
    if let Some(url) = env.unsubscribe_url {
        // Unfolded, so a relay cannot break the DKIM signature over it (research §2.8).
        h.push(format!("List-Unsubscribe: <{url}>"));
        h.push("List-Unsubscribe-Post: List-Unsubscribe=One-Click".to_owned());
    }
    let mut out = h.join("\r\n");
    out.push_str("\r\n\r\n");
    for line in body.lines() {
        let mut l = line.trim_end_matches('\r');
        while l.len() > 900 {
            let mut cut = 900;
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push_str(&l[..cut]);
            out.push_str("\r\n");
            l = &l[cut..];
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The exact body of a notice's webhook: `{"type", "timestamp", "data"}` (Standard Webhooks'
/// payload shape). Built from stored data only, so every retry sends the same bytes.
pub fn webhook_body(n: &super::model::Notice) -> Vec<u8> {
    let mut data: serde_json::Map<String, serde_json::Value> = n
        .data
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    data.insert("notice_id".into(), n.id.into());
    if let Some(c) = &n.client {
        data.insert("client_id".into(), c.clone().into());
    }
    if let Some(d) = &n.domain {
        data.insert("domain_ascii".into(), d.clone().into());
    }
    let v = serde_json::json!({
        "type": n.kind,
        "timestamp": n.created.to_string(),
        "data": data,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_unsubscribe() {
        let env = Envelope {
            from: "notices@hosting.test",
            to: "owner@customer.test",
            delivery: 7,
            notice: 3,
            kind: "domain.registered",
            host: "hosting.test",
            date: Timestamp::UNIX_EPOCH,
            unsubscribe_url: Some("https://h/unsubscribe/x.y"),
        };
        let m = String::from_utf8(email(&env, "Домен пример.рф", "Привет\n")).unwrap();
        assert!(m.contains("Message-ID: <notice-7@hosting.test>\r\n"));
        assert!(m.contains("List-Unsubscribe: <https://h/unsubscribe/x.y>\r\n"));
        assert!(m.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(m.contains("Subject: =?UTF-8?B?"));
        assert!(m.ends_with("\r\n\r\nПривет\r\n"));
        let none = Envelope {
            unsubscribe_url: None,
            ..env
        };
        let m = String::from_utf8(email(&none, "s", "b")).unwrap();
        assert!(!m.contains("List-Unsubscribe"));
    }
}
