//! Is a reply really from the registrar? The trust verdict, a pure function of the raw message
//! and [`TrustConfig`] (issue 9 part A).
//!
//! Evidence comes from two places:
//!
//! 1. `Authentication-Results` header fields (RFC 8601) written by our own MX. Only a field whose
//!    authserv-id is listed in `[inbound] authserv_ids` is read; any other is ignored (§5: "a
//!    consumer ... MUST ignore" results it cannot attribute to a trusted ADMD). Since a sender
//!    can put a field with our authserv-id into its own message, below the one our MX adds, only
//!    the topmost field with our id counts, and only when no `Received` field written outside
//!    our ADMD (a `by` host that is not ours) lies above it: anything below such a field was
//!    written before the message reached us. Lower fields with our id are reported as forged.
//! 2. regmail's own DKIM check (RFC 6376, with mail-auth) of signatures whose key is pinned in
//!    `[[inbound.dkim_keys]]`; regmail never asks DNS, an unpinned key verifies as "no key".
//!    A signature counts only when it is aligned with From (RFC 7489 §3.1.1, relaxed: the
//!    signing domain is the From domain or a parent of it), covers From, and has no `l=` body
//!    length (RFC 6376 §8.2: anyone could append text).
//!
//! A message with more than one From field proves nothing (RFC 6376 §8.15: a signature covers
//! the last one, a reader shows the first).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
    common::{parse::TxtRecordParser, verify::DomainKey},
};

use crate::trust::{AuthLevel, TrustConfig};

/// Most header fields read from one message (a header bomb is bounded elsewhere too).
const MAX_FIELDS: usize = 2000;

/// One top-level header field: lower-case name and unfolded value, in message order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name, lower-case.
    pub name: String,
    /// The value, unfolded (RFC 5322 §2.2.3), trimmed.
    pub value: String,
}

/// The top-level header fields of a raw message, in order (at most 2000).
pub fn header_fields(raw: &[u8]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = out.last_mut() {
                last.value.push(' ');
                last.value.push_str(text.trim());
            }
            continue;
        }
        if out.len() >= MAX_FIELDS {
            break;
        }
        match text.split_once(':') {
            Some((name, value)) if !name.is_empty() && !name.contains([' ', '\t']) => {
                out.push(Field {
                    name: name.to_ascii_lowercase(),
                    value: value.trim().to_owned(),
                })
            }
            _ => break,
        }
    }
    for f in &mut out {
        f.value = f.value.trim().to_owned();
    }
    out
}

/// One `method=result` of an Authentication-Results field, with its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// The method (`spf`, `dkim`, `dmarc`, ...), lower-case, without a version.
    pub method: String,
    /// The result (`pass`, `fail`, `none`, ...), lower-case.
    pub result: String,
    /// `ptype.property=value` pairs (`header.d`, `smtp.mailfrom`, `header.from`); the key is
    /// lower-case, the value as written (quotes removed).
    pub props: Vec<(String, String)>,
}

impl MethodResult {
    /// The value of a property.
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One parsed Authentication-Results field (RFC 8601 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    /// The authserv-id, lower-case.
    pub authserv_id: String,
    /// The results (empty for `none`).
    pub results: Vec<MethodResult>,
}

/// Removes RFC 5322 comments (nested parentheses) outside quoted strings.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in value.chars() {
        if escaped {
            if depth == 0 {
                out.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Parses an Authentication-Results value; None when it has no authserv-id.
pub fn parse_auth_results(value: &str) -> Option<AuthResults> {
    let text = strip_comments(value);
    let mut parts = text.split(';');
    let authserv_id = parts
        .next()?
        .split_whitespace()
        .next()?
        .trim_matches('"')
        .to_ascii_lowercase();
    if authserv_id.is_empty() || authserv_id.contains('=') {
        return None;
    }
    let mut results = Vec::new();
    for part in parts {
        let mut tokens = part.split_whitespace();
        let Some(first) = tokens.next() else { continue };
        let Some((method, result)) = first.split_once('=') else {
            continue; // "none", or garbage
        };
        let method = method
            .split('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut props = Vec::new();
        for t in tokens {
            if let Some((k, v)) = t.split_once('=') {
                props.push((k.to_ascii_lowercase(), v.trim_matches('"').to_owned()));
            }
        }
        results.push(MethodResult {
            method,
            result: result.to_ascii_lowercase(),
            props,
        });
    }
    Some(AuthResults {
        authserv_id,
        results,
    })
}

/// The `by` host of a Received field (RFC 5321 §4.4), lower-case.
pub fn received_by(value: &str) -> Option<String> {
    let text = strip_comments(value);
    let mut tokens = text.split_whitespace();
    while let Some(t) = tokens.next() {
        if t.eq_ignore_ascii_case("by") {
            return tokens
                .next()
                .map(|h| h.trim_end_matches([';', '.']).to_ascii_lowercase());
        }
    }
    None
}

/// The domain of an address or a domain, lower-case.
fn domain_of(s: &str) -> String {
    let s = s.trim().trim_matches(['<', '>']);
    s.rsplit_once('@')
        .map_or(s, |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Relaxed alignment (RFC 7489 §3.1.1 without a public suffix list): the authenticated domain is
/// the From domain or a parent domain of it.
pub fn aligned(authenticated: &str, from_domain: &str) -> bool {
    let a = domain_of(authenticated);
    !a.is_empty() && (a == from_domain || from_domain.ends_with(&format!(".{a}")))
}

/// True when `host` is `id` or under it, for one of `ours`.
fn host_is_ours(host: &str, ours: &[&str]) -> bool {
    ours.iter()
        .any(|id| host == *id || host.ends_with(&format!(".{id}")))
}

/// What the evidence says about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessment {
    /// The From domain the evidence must be aligned with.
    pub from_domain: String,
    /// Number of From header fields (exactly one is required).
    pub from_fields: usize,
    /// Aligned SPF pass, as evidence text.
    pub spf: Option<String>,
    /// Aligned DKIM pass (ours or our MX's), as evidence text.
    pub dkim: Option<String>,
    /// DMARC pass from our MX, as evidence text.
    pub dmarc: Option<String>,
    /// Failed or unaligned checks, in words.
    pub failures: Vec<String>,
    /// Authentication-Results fields that were not believed, and why.
    pub ignored: Vec<String>,
}

impl Assessment {
    /// True when the evidence satisfies `level`.
    pub fn passes(&self, level: AuthLevel) -> bool {
        if level == AuthLevel::None {
            return true;
        }
        if self.from_fields != 1 {
            return false;
        }
        match level {
            AuthLevel::None => true,
            AuthLevel::Spf => self.spf.is_some() || self.dkim.is_some() || self.dmarc.is_some(),
            AuthLevel::Dkim => self.dkim.is_some(),
            // An aligned DKIM pass is a DMARC pass (RFC 7489 §4.2).
            AuthLevel::Dmarc => self.dmarc.is_some() || self.dkim.is_some(),
        }
    }

    /// True when the message is authenticated at all: it passes `level`, or, with level
    /// "none", any aligned evidence passes (weak correlation needs this, issue 9 item 2).
    pub fn authenticated(&self, level: AuthLevel) -> bool {
        match level {
            AuthLevel::None => self.passes(AuthLevel::Spf),
            l => self.passes(l),
        }
    }

    /// The evidence that passed, for the log.
    pub fn evidence(&self) -> String {
        let e: Vec<&str> = [&self.dmarc, &self.dkim, &self.spf]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if e.is_empty() {
            "no authentication evidence".into()
        } else {
            e.join("; ")
        }
    }

    /// Why the message does not pass `level`, in words.
    pub fn why_not(&self, level: AuthLevel) -> String {
        format!(
            "not authenticated as registrar.authentication = {:?} requires: {}",
            level.as_str(),
            self.reasons(level)
        )
    }

    /// What is missing or wrong, in words, for `level` (at least "spf": any evidence).
    pub fn reasons(&self, level: AuthLevel) -> String {
        let level = level.max(AuthLevel::Spf);
        let mut why = Vec::new();
        if self.from_fields != 1 {
            why.push(format!(
                "{} From header fields (exactly one is required; RFC 6376 §8.15)",
                self.from_fields
            ));
        }
        why.extend(self.failures.iter().cloned());
        why.extend(self.ignored.iter().cloned());
        if why.is_empty() {
            why.push(match level {
                AuthLevel::Spf => "no aligned SPF, DKIM or DMARC pass".into(),
                AuthLevel::Dkim => format!(
                    "no valid DKIM signature of {} (or a parent domain) with a pinned key",
                    self.from_domain
                ),
                _ => format!(
                    "no DMARC pass and no aligned DKIM signature for {}",
                    self.from_domain
                ),
            });
        }
        why.join("; ")
    }
}

/// Weighs the evidence in `raw` for a message whose From address is `from`.
pub fn assess(raw: &[u8], from: &str, cfg: &TrustConfig) -> Assessment {
    let fields = header_fields(raw);
    let from_domain = domain_of(from);
    let mut a = Assessment {
        from_fields: fields.iter().filter(|f| f.name == "from").count(),
        from_domain: from_domain.clone(),
        ..Assessment::default()
    };
    authentication_results(&fields, &from_domain, cfg, &mut a);
    if fields.iter().any(|f| f.name == "dkim-signature") {
        own_dkim(raw, &from_domain, cfg, &mut a);
    }
    a
}

fn authentication_results(
    fields: &[Field],
    from_domain: &str,
    cfg: &TrustConfig,
    a: &mut Assessment,
) {
    let ours: Vec<&str> = cfg
        .authserv_ids
        .iter()
        .chain(&cfg.bounce_hosts)
        .map(String::as_str)
        .collect();
    let mut foreign_hop_above = false;
    let mut trusted: Option<AuthResults> = None;
    for f in fields {
        if f.name == "received" {
            if let Some(by) = received_by(&f.value)
                && !host_is_ours(&by, &ours)
            {
                foreign_hop_above = true;
            }
            continue;
        }
        if f.name != "authentication-results" {
            continue;
        }
        let Some(ar) = parse_auth_results(&f.value) else {
            a.ignored
                .push("an Authentication-Results field without an authserv-id".into());
            continue;
        };
        if !cfg.authserv_ids.contains(&ar.authserv_id) {
            a.ignored.push(format!(
                "Authentication-Results of {:?}, not one of inbound.authserv_ids: ignored (RFC 8601 §5)",
                ar.authserv_id
            ));
            continue;
        }
        if trusted.is_some() {
            a.ignored.push(format!(
                "a second Authentication-Results of {:?} below our MX's: forged by the sender, ignored (RFC 8601 §5)",
                ar.authserv_id
            ));
            continue;
        }
        if foreign_hop_above {
            a.ignored.push(format!(
                "Authentication-Results of {:?} below a Received field written outside our hosts: forged, ignored (RFC 8601 §5)",
                ar.authserv_id
            ));
            continue;
        }
        trusted = Some(ar);
    }
    let Some(ar) = trusted else { return };
    let id = ar.authserv_id.clone();
    for m in &ar.results {
        let pass = m.result == "pass";
        match m.method.as_str() {
            "spf" => {
                let d = m
                    .prop("smtp.mailfrom")
                    .or_else(|| m.prop("smtp.helo"))
                    .unwrap_or_default();
                if pass && aligned(d, from_domain) {
                    a.spf = Some(format!("{id}: spf=pass smtp.mailfrom={}", domain_of(d)));
                } else {
                    a.failures
                        .push(format!("{id}: spf={} for {:?}", m.result, domain_of(d)));
                }
            }
            "dkim" => {
                let d = m
                    .prop("header.d")
                    .or_else(|| m.prop("header.i"))
                    .unwrap_or_default();
                if pass && aligned(d, from_domain) {
                    a.dkim = Some(format!("{id}: dkim=pass header.d={}", domain_of(d)));
                } else {
                    a.failures
                        .push(format!("{id}: dkim={} for {:?}", m.result, domain_of(d)));
                }
            }
            "dmarc" => {
                let hf = m.prop("header.from").map(domain_of);
                if pass && hf.as_deref().is_none_or(|h| h == from_domain) {
                    a.dmarc = Some(format!("{id}: dmarc=pass header.from={from_domain}"));
                } else {
                    a.failures.push(format!(
                        "{id}: dmarc={} for {:?}",
                        m.result,
                        hf.unwrap_or_default()
                    ));
                }
            }
            _ => {}
        }
    }
}

/// A resolver cache that holds only the pinned keys (named as mail-auth asks for them:
/// `selector._domainkey.domain.`, lower-case) and answers "no key" for anything else, so
/// mail-auth never reaches DNS.
struct PinnedCache(HashMap<Box<str>, Txt>);

impl ResolverCache<Box<str>, Txt> for PinnedCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        Some(self.0.get(name).cloned().unwrap_or_else(|| {
            Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
                "no key pinned for this selector and domain in [[inbound.dkim_keys]]".into(),
            )))
        }))
    }
    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: Box<str>, _: Txt, _: std::time::Instant) {}
}

/// The mail-auth verifier; it has a resolver with no name servers (every key is pinned).
static AUTHENTICATOR: LazyLock<Option<MessageAuthenticator>> = LazyLock::new(|| {
    MessageAuthenticator::new(
        mail_auth::hickory_resolver::config::ResolverConfig::from_name_servers(Vec::new()),
        mail_auth::hickory_resolver::config::ResolverOpts::default(),
    )
    .ok()
});

fn own_dkim(raw: &[u8], from_domain: &str, cfg: &TrustConfig, a: &mut Assessment) {
    let Some(msg) = AuthenticatedMessage::parse(raw) else {
        a.failures
            .push("DKIM: the message cannot be parsed for verification".into());
        return;
    };
    let Some(auth) = AUTHENTICATOR.as_ref() else {
        a.failures.push("DKIM: the verifier is unavailable".into());
        return;
    };
    let mut keys = HashMap::new();
    for k in &cfg.dkim_keys {
        let name = format!("{}._domainkey.{}.", k.selector, k.domain).into_boxed_str();
        let txt = match DomainKey::parse(k.record.as_bytes()) {
            Ok(key) => Txt::DomainKey(Arc::new(key)),
            Err(e) => Txt::Error(e),
        };
        keys.insert(name, txt);
    }
    let cache = PinnedCache(keys);
    let outputs =
        futures::executor::block_on(auth.verify_dkim(Parameters::new(&msg).with_txt_cache(&cache)));
    for out in outputs {
        let Some(sig) = out.signature() else {
            a.failures.push(format!(
                "DKIM: a signature that cannot be used: {}",
                dkim_words(out.result())
            ));
            continue;
        };
        let d = sig.d.to_ascii_lowercase();
        let what = format!("DKIM signature d={d} s={}", sig.s);
        match out.result() {
            DkimResult::Pass => {
                if !aligned(&d, from_domain) {
                    a.failures.push(format!(
                        "{what} is valid but not aligned with From domain {from_domain}"
                    ));
                } else if sig.l > 0 {
                    a.failures.push(format!(
                        "{what} is valid but signs only the first {} octets of the body (l=)",
                        sig.l
                    ));
                } else if !sig.h.iter().any(|h| h.eq_ignore_ascii_case("from")) {
                    a.failures.push(format!("{what} does not sign From"));
                } else if a.dkim.is_none() {
                    a.dkim = Some(format!(
                        "regmail: dkim=pass header.d={d} s={} (pinned key)",
                        sig.s
                    ));
                }
            }
            other => a.failures.push(format!("{what}: {}", dkim_words(other))),
        }
    }
}

fn dkim_words(r: &DkimResult) -> String {
    match r {
        DkimResult::Pass => "pass".into(),
        DkimResult::Neutral(e) => format!("neutral ({e})"),
        DkimResult::Fail(e) => format!("fail ({e})"),
        DkimResult::PermError(e) => format!("permerror ({e})"),
        DkimResult::TempError(e) => format!("temperror ({e})"),
        DkimResult::None => "none".into(),
    }
}

#[cfg(test)]
mod tests {
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::dkim::DkimSigner;

    use super::*;
    use crate::trust::DkimKey;

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// A fresh Ed25519 key: (pkcs8, TXT record).
    fn key() -> (Vec<u8>, String) {
        let pk8 = Ed25519Key::generate_pkcs8().unwrap();
        let k = Ed25519Key::from_pkcs8_der(&pk8).unwrap();
        (
            pk8,
            format!("v=DKIM1; k=ed25519; p={}", b64(&k.public_key())),
        )
    }

    fn sign(pk8: &[u8], domain: &str, raw: &str) -> String {
        let k = Ed25519Key::from_pkcs8_der(pk8).unwrap();
        let sig = DkimSigner::from_key(k)
            .domain(domain)
            .selector("s1")
            .headers(["From", "To", "Subject", "Message-ID"])
            .sign(raw.as_bytes())
            .unwrap();
        format!("{}{raw}", sig.to_header())
    }

    const REPLY: &str = "From: robot@registrar.test\r\nTo: gateway@gateway.test\r\nSubject: done\r\nMessage-ID: <r1@registrar.test>\r\n\r\nDomain example.ru registered.\r\n";

    fn cfg(record: &str) -> TrustConfig {
        TrustConfig {
            authentication: AuthLevel::Dkim,
            authserv_ids: vec!["mx.gateway.test".into()],
            dkim_keys: vec![DkimKey {
                domain: "registrar.test".into(),
                selector: "s1".into(),
                record: record.into(),
            }],
            bounce_hosts: vec!["gateway.test".into()],
            ..TrustConfig::default()
        }
    }

    #[test]
    fn a_signature_with_the_pinned_key_passes_dkim_and_dmarc() {
        let (pk8, rec) = key();
        let raw = sign(&pk8, "registrar.test", REPLY);
        let a = assess(raw.as_bytes(), "robot@registrar.test", &cfg(&rec));
        assert!(a.passes(AuthLevel::Dkim), "{a:?}");
        assert!(a.passes(AuthLevel::Dmarc) && a.passes(AuthLevel::Spf));
        assert!(a.evidence().contains("dkim=pass header.d=registrar.test"));
    }

    #[test]
    fn altered_body_wrong_key_unpinned_and_unaligned_signatures_fail() {
        let (pk8, rec) = key();
        let (other, other_rec) = key();
        let signed = sign(&pk8, "registrar.test", REPLY);
        let altered = signed.replace("registered.", "registered until 2035.");
        let cases: Vec<(String, TrustConfig, &str)> = vec![
            (altered, cfg(&rec), "body hash"),
            (sign(&other, "registrar.test", REPLY), cfg(&rec), "fail"),
            (
                sign(&pk8, "unknown.test", REPLY),
                cfg(&rec),
                "no key pinned",
            ),
            (
                sign(&other, "attacker.test", REPLY),
                TrustConfig {
                    dkim_keys: vec![DkimKey {
                        domain: "attacker.test".into(),
                        selector: "s1".into(),
                        record: other_rec.clone(),
                    }],
                    ..cfg(&rec)
                },
                "not aligned",
            ),
            (REPLY.to_owned(), cfg(&rec), "no valid DKIM signature"),
        ];
        for (raw, c, want) in cases {
            let a = assess(raw.as_bytes(), "robot@registrar.test", &c);
            assert!(!a.passes(AuthLevel::Dkim), "{want}: {a:?}");
            assert!(!a.authenticated(AuthLevel::None), "{want}");
            let why = a.why_not(AuthLevel::Dkim);
            assert!(
                why.to_lowercase().contains(&want.to_lowercase()),
                "{want}: {why}"
            );
        }
        // Level "none" lets anything through, but it is not "authenticated".
        let a = assess(REPLY.as_bytes(), "robot@registrar.test", &cfg(&rec));
        assert!(a.passes(AuthLevel::None) && !a.authenticated(AuthLevel::None));
    }

    #[test]
    fn a_second_from_field_defeats_a_valid_signature() {
        let (pk8, rec) = key();
        let raw = format!(
            "From: robot@registrar.test\r\n{}",
            sign(&pk8, "registrar.test", REPLY)
        );
        let a = assess(raw.as_bytes(), "robot@registrar.test", &cfg(&rec));
        assert_eq!(a.from_fields, 2);
        assert!(!a.passes(AuthLevel::Dkim));
        assert!(a.why_not(AuthLevel::Dkim).contains("2 From header fields"));
    }

    fn with_ar(ars: &[&str]) -> String {
        let mut s = String::new();
        for h in ars {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str(REPLY);
        s
    }

    #[test]
    fn our_mx_dmarc_pass_counts_for_dmarc_but_not_for_dkim() {
        let raw = with_ar(&[
            "Authentication-Results: mx.gateway.test; spf=pass smtp.mailfrom=robot@registrar.test; dmarc=pass (p=reject) header.from=registrar.test",
        ]);
        let a = assess(raw.as_bytes(), "robot@registrar.test", &cfg("p="));
        assert!(
            a.passes(AuthLevel::Dmarc) && a.passes(AuthLevel::Spf),
            "{a:?}"
        );
        assert!(!a.passes(AuthLevel::Dkim));
        let raw = with_ar(&[
            "Authentication-Results: MX.Gateway.Test;\r\n\tdkim=pass (good) header.d=registrar.test header.s=s1",
        ]);
        let a = assess(raw.as_bytes(), "robot@registrar.test", &cfg("p="));
        assert!(a.passes(AuthLevel::Dkim), "folded, mixed case: {a:?}");
    }

    #[test]
    fn foreign_and_forged_authentication_results_are_ignored() {
        let pass = "dmarc=pass header.from=registrar.test; dkim=pass header.d=registrar.test";
        let cases = [
            // Another ADMD's results.
            (vec![format!("Authentication-Results: mx.attacker.test; {pass}")], "not one of inbound.authserv_ids"),
            // Our id, but the sender's copy lies below our MX's own (which says fail).
            (
                vec![
                    "Authentication-Results: mx.gateway.test; dmarc=fail header.from=registrar.test".to_owned(),
                    format!("Authentication-Results: mx.gateway.test; {pass}"),
                ],
                "below our MX's",
            ),
            // Our id below a Received written by a foreign host.
            (
                vec![
                    "Received: from a (a [192.0.2.1]) by mail.gateway.test (Postfix) with ESMTP id 1".to_owned(),
                    "Received: from b by relay.attacker.test with SMTP id 2".to_owned(),
                    format!("Authentication-Results: mx.gateway.test; {pass}"),
                ],
                "written outside our hosts",
            ),
            // A comment must not hide the real authserv-id.
            (vec![format!("Authentication-Results: (mx.gateway.test) mx.attacker.test; {pass}")], "not one of"),
        ];
        for (hs, want) in cases {
            let refs: Vec<&str> = hs.iter().map(String::as_str).collect();
            let raw = with_ar(&refs);
            let a = assess(raw.as_bytes(), "robot@registrar.test", &cfg("p="));
            assert!(!a.passes(AuthLevel::Dmarc), "{want}: {a:?}");
            assert!(!a.passes(AuthLevel::Spf), "{want}");
            assert!(
                a.why_not(AuthLevel::Dmarc).contains(want),
                "{want}: {}",
                a.why_not(AuthLevel::Dmarc)
            );
        }
    }

    #[test]
    fn unaligned_or_failing_mx_results_do_not_pass() {
        for (ar, want) in [
            (
                "spf=pass smtp.mailfrom=bounce@attacker.test",
                "spf=pass for \"attacker.test\"",
            ),
            (
                "dkim=pass header.d=attacker.test",
                "dkim=pass for \"attacker.test\"",
            ),
            (
                "dmarc=pass header.from=attacker.test",
                "dmarc=pass for \"attacker.test\"",
            ),
            ("dkim=fail header.d=registrar.test", "dkim=fail"),
            ("none", "no DMARC pass"),
        ] {
            let raw = with_ar(&[&format!("Authentication-Results: mx.gateway.test; {ar}")]);
            let a = assess(raw.as_bytes(), "robot@registrar.test", &cfg("p="));
            assert!(!a.passes(AuthLevel::Dmarc), "{ar}");
            assert!(
                a.why_not(AuthLevel::Dmarc).contains(want),
                "{ar}: {}",
                a.why_not(AuthLevel::Dmarc)
            );
        }
    }

    #[test]
    fn alignment_is_relaxed_to_parent_domains_only() {
        assert!(aligned("registrar.test", "registrar.test"));
        assert!(aligned("registrar.test", "mail.registrar.test"));
        assert!(!aligned("mail.registrar.test", "registrar.test"));
        assert!(!aligned("evilregistrar.test", "registrar.test"));
        assert!(!aligned("", "registrar.test"));
    }

    #[test]
    fn authentication_results_parse_per_rfc_8601() {
        let ar = parse_auth_results(
            "mx.example.org 1; (comment; with semicolon) spf=pass (sender ok) smtp.mailfrom=\"a@b.test\"; dkim/1=pass reason=\"good sig\" header.d=b.test",
        )
        .unwrap();
        assert_eq!(ar.authserv_id, "mx.example.org");
        assert_eq!(ar.results.len(), 2);
        assert_eq!(ar.results[0].prop("smtp.mailfrom"), Some("a@b.test"));
        assert_eq!(ar.results[1].method, "dkim");
        assert_eq!(ar.results[1].prop("header.d"), Some("b.test"));
        assert!(parse_auth_results("spf=pass").is_none());
        assert_eq!(
            parse_auth_results("mx.example.org; none").unwrap().results,
            vec![]
        );
        assert_eq!(
            received_by("from x (x [1.2.3.4]) by Mail.Gateway.Test (Postfix) with ESMTP; date")
                .as_deref(),
            Some("mail.gateway.test")
        );
    }
}
