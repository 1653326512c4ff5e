//! What a reply must prove before it may move state (issue 9 part A): the authentication level
//! the registrar's replies must pass, the Authentication-Results ids of our own MX, the DKIM keys
//! pinned for the registrar, and the per-request envelope sender (VERP) that bounces must come
//! back to. A shared shell piece: `config` fills it, `inbound` judges by it, `outbound` uses
//! the envelope sender; it imports none of them.

/// The level a registrar reply must pass to move state (`[registrar] authentication`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthLevel {
    /// Any mail from a configured sender address moves state (embedded defaults, sandbox).
    #[default]
    None,
    /// SPF pass for a domain aligned with From, reported by our MX (or anything stronger).
    Spf,
    /// A valid DKIM signature of a domain aligned with From (RFC 6376), checked by regmail
    /// with a pinned key or reported by our MX.
    Dkim,
    /// DMARC pass (RFC 7489) reported by our MX, or an aligned DKIM pass checked by regmail.
    Dmarc,
}

impl AuthLevel {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthLevel::None => "none",
            AuthLevel::Spf => "spf",
            AuthLevel::Dkim => "dkim",
            AuthLevel::Dmarc => "dmarc",
        }
    }

    /// Parses the configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            AuthLevel::None,
            AuthLevel::Spf,
            AuthLevel::Dkim,
            AuthLevel::Dmarc,
        ]
        .into_iter()
        .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// One DKIM public key pinned in the configuration (`[[inbound.dkim_keys]]`): regmail never
/// asks DNS; a signature whose `s=`/`d=` pair is not pinned verifies as "no key".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    /// The signing domain (`d=`), lower-case.
    pub domain: String,
    /// The selector (`s=`), lower-case.
    pub selector: String,
    /// The TXT record as published at `<selector>._domainkey.<domain>`, e.g.
    /// `v=DKIM1; k=ed25519; p=...` (RFC 6376 §3.6.1, RFC 8463).
    pub record: String,
}

/// Everything the intake needs to decide whether a reply or a bounce proves itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustConfig {
    /// `[registrar] authentication`.
    pub authentication: AuthLevel,
    /// `[inbound] authserv_ids`: the authserv-ids (RFC 8601 §2.5) our own MX writes into
    /// Authentication-Results; lower-case. Empty: no such header is trusted.
    pub authserv_ids: Vec<String>,
    /// `[[inbound.dkim_keys]]`.
    pub dkim_keys: Vec<DkimKey>,
    /// `[outbound] envelope_sender`: the envelope sender of every request with `{token}` for
    /// the request's token, e.g. `gateway+{token}@gateway.test`; None: derived from the
    /// callback address (`local+{token}@domain`).
    pub envelope_sender: Option<String>,
    /// `[inbound] bounce_hosts`: the hosts whose MAILER-DAEMON is our own MTA (RFC 3464
    /// Reporting-MTA and the From domain of its bounces); lower-case. Empty: the callback
    /// address's domain and the `[smtp] hello_name`/`host`, filled in by the config.
    pub bounce_hosts: Vec<String>,
}

/// The envelope sender template: the configured one, or `local+{token}@domain` of `callback`.
pub fn envelope_template(cfg: &TrustConfig, callback: &str) -> String {
    match &cfg.envelope_sender {
        Some(t) => t.clone(),
        None => match callback.rsplit_once('@') {
            Some((local, domain)) => format!("{local}+{{token}}@{domain}"),
            None => format!("{callback}+{{token}}"),
        },
    }
}

/// The envelope sender of one request: the template with `{token}` replaced.
pub fn envelope_sender(template: &str, token: &str) -> String {
    template.replace("{token}", token)
}

/// The token in `address` when it is an envelope sender made from `template` (compared
/// case-insensitively; the token is 32 hex digits, as our request tokens are).
pub fn token_from_envelope(template: &str, address: &str) -> Option<String> {
    let (prefix, suffix) = template.split_once("{token}")?;
    let a = address.trim().trim_matches(['<', '>']).to_ascii_lowercase();
    let (p, s) = (prefix.to_ascii_lowercase(), suffix.to_ascii_lowercase());
    if a.len() < p.len() + s.len() || !a.starts_with(&p) || !a.ends_with(&s) {
        return None;
    }
    let token = &a[p.len()..a.len() - s.len()];
    (token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())).then(|| token.to_owned())
}

/// Problems with a trust configuration, as `(key, message)`.
pub fn check(cfg: &TrustConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(t) = &cfg.envelope_sender {
        let ok = t.matches("{token}").count() == 1
            && t.replace("{token}", "0123456789abcdef0123456789abcdef")
                .parse::<lettre::Address>()
                .is_ok();
        if !ok {
            out.push((
                "outbound.envelope_sender".into(),
                format!(
                    "{t:?}: must be an e-mail address with {{token}} once, e.g. \"gateway+{{token}}@gateway.test\""
                ),
            ));
        }
    }
    for (i, k) in cfg.dkim_keys.iter().enumerate() {
        use mail_auth::common::parse::TxtRecordParser;
        let parses = mail_auth::common::verify::DomainKey::parse(k.record.as_bytes()).is_ok();
        if k.domain.is_empty() || k.selector.is_empty() || !parses {
            out.push((
                format!("inbound.dkim_keys[{i}]"),
                "needs domain, selector and record: the TXT record as published, \"v=DKIM1; k=...; p=...\", which must parse as a DKIM key"
                    .into(),
            ));
        }
    }
    if cfg.authentication == AuthLevel::Spf && cfg.authserv_ids.is_empty() {
        out.push((
            "registrar.authentication".into(),
            "\"spf\" needs the Authentication-Results of our MX: set inbound.authserv_ids".into(),
        ));
    }
    if cfg.authentication >= AuthLevel::Dkim
        && cfg.authserv_ids.is_empty()
        && cfg.dkim_keys.is_empty()
    {
        out.push((
            "registrar.authentication".into(),
            format!(
                "{:?} needs evidence: pin the registrar's DKIM key ([[inbound.dkim_keys]]) or set inbound.authserv_ids",
                cfg.authentication.as_str()
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_addresses_carry_exactly_one_request_token() {
        let cfg = TrustConfig::default();
        let t = envelope_template(&cfg, "gateway@gateway.test");
        assert_eq!(t, "gateway+{token}@gateway.test");
        let tok = "0190c0de000070008000000000000001";
        let a = envelope_sender(&t, tok);
        assert_eq!(a, format!("gateway+{tok}@gateway.test"));
        assert_eq!(token_from_envelope(&t, &a).as_deref(), Some(tok));
        assert_eq!(
            token_from_envelope(
                &t,
                &format!("<GATEWAY+{}@Gateway.Test>", tok.to_uppercase())
            )
            .as_deref(),
            Some(tok),
            "compared case-insensitively"
        );
        for bad in [
            "gateway@gateway.test".to_owned(),
            format!("gateway+{}@gateway.test", &tok[..31]),
            format!("gateway+{tok}x@gateway.test"),
            format!("other+{tok}@gateway.test"),
            format!("gateway+{tok}@gateway.test.evil"),
            format!("gateway+{}@gateway.test", "z".repeat(32)),
        ] {
            assert_eq!(token_from_envelope(&t, &bad), None, "{bad}");
        }
    }

    #[test]
    fn a_level_without_evidence_and_a_broken_template_or_key_are_problems() {
        let mut cfg = TrustConfig {
            authentication: AuthLevel::Dkim,
            ..TrustConfig::default()
        };
        assert_eq!(check(&cfg)[0].0, "registrar.authentication");
        cfg.dkim_keys.push(DkimKey {
            domain: "r01.ru".into(),
            selector: "mail".into(),
            record: "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into(),
        });
        assert!(check(&cfg).is_empty(), "{:?}", check(&cfg));
        cfg.dkim_keys[0].record = "v=DKIM1; p=!!".into();
        cfg.envelope_sender = Some("regmail@x.test".into());
        let keys: Vec<String> = check(&cfg).into_iter().map(|p| p.0).collect();
        assert_eq!(keys, ["outbound.envelope_sender", "inbound.dkim_keys[0]"]);
        assert_eq!(AuthLevel::parse(" DMARC "), Some(AuthLevel::Dmarc));
        assert_eq!(AuthLevel::parse("strong"), None);
    }
}
