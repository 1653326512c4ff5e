//! What kind of mail a parsed message is, before any reply rule or correlation.
//!
//! The classes, checked in this order: our own request looping back; a bounce (an RFC 3464
//! delivery report, or the usual non-standard forms); an auto-reply (RFC 3834 and its common
//! cousins); anything else is a candidate registrar reply. Only the registrar's configured
//! addresses may move state, compared on the address, never the display name.
//!
//! Registrar robots may mark their own answers `Auto-Submitted: auto-generated`, so an
//! auto-reply signal does not discard a mail: [`Class::AutoReply`] keeps `from_registrar`, the
//! caller runs the reply rules when [`Class::rules_apply`] says so, and [`decide`] lets a rule
//! match win over the signal.

use std::sync::LazyLock;

use regex::Regex;

use super::parse::ParsedMail;

/// What the classifier needs to know about us and the registrar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyContext {
    /// Our callback address: the From of our requests and where replies come (lower-case).
    pub callback_address: String,
    /// The host part of our Message-IDs (`<token@host>`), lower-case.
    pub message_id_host: String,
    /// The registrar's sender addresses (`[registrar] senders`), lower-case.
    pub registrar_senders: Vec<String>,
    /// What replies and bounces must prove (issue 9 part A); the default asks nothing.
    pub trust: crate::trust::TrustConfig,
    /// The envelope sender template of our requests (`...+{token}@...`), where real bounces
    /// come back.
    pub envelope_template: String,
}

impl ClassifyContext {
    /// Builds a context; addresses and host are compared case-insensitively, so they are
    /// lower-cased here.
    pub fn new(
        callback_address: &str,
        message_id_host: &str,
        registrar_senders: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Self {
        let trust = crate::trust::TrustConfig::default();
        ClassifyContext {
            envelope_template: crate::trust::envelope_template(&trust, callback_address.trim())
                .to_lowercase(),
            trust,
            callback_address: callback_address.trim().to_lowercase(),
            message_id_host: message_id_host.trim().to_lowercase(),
            registrar_senders: registrar_senders
                .into_iter()
                .map(|s| s.as_ref().trim().to_lowercase())
                .collect(),
        }
    }

    /// The same context with what replies and bounces must prove (issue 9 part A).
    pub fn with_trust(mut self, trust: crate::trust::TrustConfig) -> Self {
        self.envelope_template =
            crate::trust::envelope_template(&trust, &self.callback_address).to_lowercase();
        self.trust = trust;
        self
    }

    /// True when `address` (an addr-spec) is one of the registrar's senders.
    pub fn is_registrar(&self, address: &str) -> bool {
        let address = address.trim().to_lowercase();
        self.registrar_senders.contains(&address)
    }

    /// True when `message_id` (without angle brackets) is one of ours: it ends with `@<host>`.
    pub fn is_our_message_id(&self, message_id: &str) -> bool {
        let id = message_id.trim().to_lowercase();
        id.rsplit_once('@')
            .is_some_and(|(local, host)| !local.is_empty() && host == self.message_id_host)
    }
}

/// What a bounce tells about the message it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BounceInfo {
    /// The Message-ID of the returned message (ours, when it is one of our requests).
    pub original_message_id: Option<String>,
    /// The recipient that failed.
    pub recipient: Option<String>,
    /// The enhanced status code (RFC 3463), e.g. `5.1.1`.
    pub status: Option<String>,
    /// The remote server's words.
    pub diagnostic: Option<String>,
    /// The RFC 3464 action (`failed`, `delayed`, ...); for a non-standard bounce `failed`, or
    /// `delayed` when its subject says so.
    pub action: Option<String>,
    /// True for an RFC 3464 report, false for a non-standard bounce recognised by its sender
    /// or subject.
    pub standard: bool,
}

impl BounceInfo {
    /// True when the report says delivery failed (action `failed`, or no action given); a
    /// `delayed`, `delivered`, `relayed` or `expanded` report fails nothing.
    pub fn is_failure(&self) -> bool {
        self.action.as_deref().is_none_or(|a| a == "failed")
    }
}

/// The class of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Our own request came back: From is our callback address and the Message-ID is ours.
    OwnLoop,
    /// A delivery report or bounce.
    Bounce(BounceInfo),
    /// Marked as automatic (RFC 3834 `Auto-Submitted` other than `no`, `X-Autoreply`,
    /// `X-Autorespond`, `Precedence: bulk|junk|auto_reply`, a vacation subject). A registrar
    /// robot's real answer can look like this: run the rules when `from_registrar`.
    AutoReply {
        /// Which signal, as `Header: value` or `Subject: ...`.
        signal: String,
        /// From one of the registrar's addresses.
        from_registrar: bool,
    },
    /// Anything else: possibly a registrar reply.
    Candidate {
        /// From one of the registrar's addresses (and no other author).
        from_registrar: bool,
    },
}

impl Class {
    /// True when the reply rules should be run on this message (candidates and auto-replies;
    /// for mail not from the registrar the result is for the log only).
    pub fn rules_apply(&self) -> bool {
        matches!(self, Class::AutoReply { .. } | Class::Candidate { .. })
    }

    /// True when the message comes from one of the registrar's addresses.
    pub fn from_registrar(&self) -> bool {
        matches!(
            self,
            Class::AutoReply {
                from_registrar: true,
                ..
            } | Class::Candidate {
                from_registrar: true
            }
        )
    }

    /// The auto-reply signal, if any.
    pub fn auto_reply_signal(&self) -> Option<&str> {
        match self {
            Class::AutoReply { signal, .. } => Some(signal),
            _ => None,
        }
    }
}

/// What to do with a message, once the class and the rule result are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Our own request looped back: logged, changes nothing.
    OwnLoop,
    /// A failed delivery of one of our messages: fails the request it returns.
    Bounce,
    /// A delivery report that is not a failure (delayed, delivered, relayed): logged only.
    DeliveryNotice,
    /// An auto-reply that no rule matched (out of office, "we got your mail"): logged only.
    AutoReply,
    /// A registrar reply that matched a rule: correlate and apply its event.
    RegistrarReply,
    /// From the registrar but no rule matched: the unmatched queue, for an operator.
    Unmatched,
    /// Not from the registrar's addresses: logged and kept, never moves state.
    NotFromRegistrar,
}

impl Decision {
    /// The name used in logs, the manifest of fixtures and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::OwnLoop => "own-loop",
            Decision::Bounce => "bounce",
            Decision::DeliveryNotice => "delivery-notice",
            Decision::AutoReply => "auto-reply",
            Decision::RegistrarReply => "registrar-reply",
            Decision::Unmatched => "unmatched",
            Decision::NotFromRegistrar => "not-from-registrar",
        }
    }

    /// True when the message may change a request (after correlation).
    pub fn may_move_state(self) -> bool {
        matches!(self, Decision::Bounce | Decision::RegistrarReply)
    }
}

/// Combines the class with the rule result: a mail from the registrar that matches a rule is a
/// registrar reply even with an auto-reply header; without a match it is an auto-reply if it
/// carries the signal, else unmatched. Mail from anyone else never becomes a registrar reply.
pub fn decide(class: &Class, rule_matched: bool) -> Decision {
    match class {
        Class::OwnLoop => Decision::OwnLoop,
        Class::Bounce(info) if info.is_failure() => Decision::Bounce,
        Class::Bounce(_) => Decision::DeliveryNotice,
        Class::AutoReply {
            from_registrar: true,
            ..
        } if rule_matched => Decision::RegistrarReply,
        Class::AutoReply { .. } => Decision::AutoReply,
        Class::Candidate {
            from_registrar: true,
        } if rule_matched => Decision::RegistrarReply,
        Class::Candidate {
            from_registrar: true,
        } => Decision::Unmatched,
        Class::Candidate {
            from_registrar: false,
        } => Decision::NotFromRegistrar,
    }
}

/// Classifies a parsed message. Pure; see the module documentation for the order of checks.
pub fn classify(mail: &ParsedMail, ctx: &ClassifyContext) -> Class {
    if mail.from == ctx.callback_address
        && mail
            .message_id
            .as_deref()
            .is_some_and(|id| ctx.is_our_message_id(id))
    {
        return Class::OwnLoop;
    }
    if let Some(info) = bounce(mail, ctx) {
        return Class::Bounce(info);
    }
    let from_registrar = mail.other_from.is_empty() && ctx.is_registrar(&mail.from);
    match auto_reply_signal(mail) {
        Some(signal) => Class::AutoReply {
            signal,
            from_registrar,
        },
        None => Class::Candidate { from_registrar },
    }
}

static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)undelivered mail|undeliverable|delivery status notification|mail delivery failed|returned mail|failure notice|delivery failure|message not delivered|delivery has failed|delayed mail|недоставленное|не доставлено|не может быть доставлено",
    )
    .expect("constant regex")
});

static DELAY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\(delay\)|delayed mail|still being retried|warning: message|задерж")
        .expect("constant regex")
});

static QUOTED_MESSAGE_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[ \t>]*message-id:[ \t]*<([^<>\s]+)>").expect("constant regex")
});

static RECIPIENT_PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // Postfix: "<rcpt@example>: host ... said: 550 ..."; Exim: "RCPT TO:<rcpt@example>:"
        r"<([^<>\s@]+@[^<>\s]+)>\s*:",
        // Gmail: "wasn't delivered to rcpt@example because"
        r"(?i)delivered to\s+<?([^<>\s@]+@[^<>\s,;]+)",
        // Exim: the failed address alone on an indented line.
        r"(?m)^[ \t]+([^<>\s@]+@[^<>\s]+)[ \t]*$",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("constant regex"))
    .collect()
});

static SMTP_REPLY_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)\b[45]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\b)?[^\n]*").expect("constant regex")
});

static ENHANCED_STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([245]\.\d{1,3}\.\d{1,3})\b").expect("constant regex"));

static VACATION_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:auto(?:matic)?[ -]?(?:reply|response|answer)|auto:|autoreply|out of (?:the )?office|vacation|away from|автоответ|автоматический ответ|нет на месте|в отпуске|вне офиса|отсутству)",
    )
    .expect("constant regex")
});

/// Recognises a bounce: an RFC 3464 report (multipart/report with a delivery-status part, RFC
/// 6522), or a non-standard one from MAILER-DAEMON or postmaster, or with a bounce subject.
fn bounce(mail: &ParsedMail, ctx: &ClassifyContext) -> Option<BounceInfo> {
    let local = mail.from.split('@').next().unwrap_or_default();
    let daemon_sender = matches!(local, "mailer-daemon" | "postmaster" | "mail-daemon");
    let bounce_subject = BOUNCE_SUBJECT.is_match(&mail.subject);
    let report = mail.delivery_status.as_ref();
    if report.is_none() && !daemon_sender && !bounce_subject {
        return None;
    }

    let original_message_id = original_message_id(mail, ctx);
    if let Some(report) = report {
        let recipient = report
            .recipients
            .iter()
            .find(|r| r.action.as_deref() == Some("failed"))
            .or_else(|| report.recipients.first());
        return Some(BounceInfo {
            original_message_id,
            recipient: recipient.and_then(|r| {
                r.final_recipient
                    .clone()
                    .or_else(|| r.original_recipient.clone())
            }),
            status: recipient.and_then(|r| r.status.clone()),
            diagnostic: recipient.and_then(|r| r.diagnostic_code.clone()),
            action: recipient.and_then(|r| r.action.clone()),
            standard: true,
        });
    }

    let text = &mail.body;
    let recipient = RECIPIENT_PATTERNS.iter().find_map(|re| {
        re.captures(text)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().trim_end_matches(['.', ',']).to_lowercase())
    });
    let diagnostic = SMTP_REPLY_LINE
        .find(text)
        .map(|m| m.as_str().trim().to_string());
    let status = diagnostic
        .as_deref()
        .and_then(|d| ENHANCED_STATUS.captures(d))
        .or_else(|| ENHANCED_STATUS.captures(text))
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_string());
    let action = if DELAY_SUBJECT.is_match(&mail.subject) {
        "delayed"
    } else {
        "failed"
    };
    Some(BounceInfo {
        original_message_id,
        recipient,
        status,
        diagnostic,
        action: Some(action.to_string()),
        standard: false,
    })
}

/// The returned message's id: from the returned part, else from quoted `Message-ID:` lines in
/// the text; one of ours is preferred over any other.
fn original_message_id(mail: &ParsedMail, ctx: &ClassifyContext) -> Option<String> {
    let mut candidates: Vec<String> = mail.returned_message_id.iter().cloned().collect();
    candidates.extend(
        QUOTED_MESSAGE_ID
            .captures_iter(&mail.body)
            .filter_map(|c| c.get(1).map(|m| m.as_str().to_string())),
    );
    candidates
        .iter()
        .find(|id| ctx.is_our_message_id(id))
        .or_else(|| candidates.first())
        .cloned()
}

/// The first auto-reply signal present (RFC 3834 §5 and the common non-standard headers).
fn auto_reply_signal(mail: &ParsedMail) -> Option<String> {
    let h = &mail.headers;
    if let Some(v) = &h.auto_submitted {
        let keyword = v
            .split([';', '(', ' ', '\t'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !keyword.is_empty() && keyword != "no" {
            return Some(format!("Auto-Submitted: {v}"));
        }
    }
    if let Some(v) = &h.x_autoreply
        && !v.eq_ignore_ascii_case("no")
    {
        return Some(format!("X-Autoreply: {v}"));
    }
    if let Some(v) = &h.x_autorespond
        && !v.eq_ignore_ascii_case("no")
    {
        return Some(format!("X-Autorespond: {v}"));
    }
    if let Some(v) = &h.precedence {
        let p = v.trim().to_ascii_lowercase();
        if matches!(p.as_str(), "bulk" | "junk" | "auto_reply" | "auto-reply") {
            return Some(format!("Precedence: {v}"));
        }
    }
    if VACATION_SUBJECT.is_match(&mail.subject) {
        return Some(format!("Subject: {}", mail.subject));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::parse::{ClassHeaders, DeliveryStatus, RecipientStatus};
    use super::*;

    fn ctx() -> ClassifyContext {
        ClassifyContext::new(
            "Gateway@Gateway.test",
            "Gateway.TEST",
            ["robot@registrar.test", "NoReply@registrar.test"],
        )
    }

    fn mail(from: &str) -> ParsedMail {
        ParsedMail {
            message_id: Some("x1@registrar.test".into()),
            in_reply_to: vec![],
            references: vec![],
            from: from.into(),
            from_name: None,
            other_from: vec![],
            to: vec!["gateway@gateway.test".into()],
            subject: "Re: request".into(),
            date: None,
            body: "text".into(),
            reply_text: "text".into(),
            headers: ClassHeaders::default(),
            delivery_status: None,
            returned_message_id: None,
            notes: vec![],
        }
    }

    #[test]
    fn registrar_address_is_compared_case_insensitively() {
        assert_eq!(
            classify(&mail("noreply@registrar.test"), &ctx()),
            Class::Candidate {
                from_registrar: true
            }
        );
        assert!(ctx().is_registrar("ROBOT@Registrar.Test"));
    }

    #[test]
    fn a_second_author_is_not_the_registrar() {
        let mut m = mail("robot@registrar.test");
        m.other_from = vec!["evil@attacker.test".into()];
        assert!(!classify(&m, &ctx()).from_registrar());
    }

    #[test]
    fn own_request_looping_back_is_recognised() {
        let mut m = mail("gateway@gateway.test");
        m.message_id = Some("0190c0de000070008000000000000001@gateway.test".into());
        assert_eq!(classify(&m, &ctx()), Class::OwnLoop);
        // Our address with a foreign Message-ID is not a loop.
        m.message_id = Some("abc@elsewhere.test".into());
        assert_eq!(
            classify(&m, &ctx()),
            Class::Candidate {
                from_registrar: false
            }
        );
    }

    #[test]
    fn our_message_id_needs_the_exact_host() {
        let c = ctx();
        assert!(c.is_our_message_id("tok@GATEWAY.test"));
        assert!(!c.is_our_message_id("tok@evil-gateway.test"));
        assert!(!c.is_our_message_id("@gateway.test"));
        assert!(!c.is_our_message_id("gateway.test"));
    }

    #[test]
    fn rfc3464_report_is_a_bounce() {
        let mut m = mail("mailer-daemon@gateway.test");
        m.returned_message_id = Some("tok@gateway.test".into());
        m.delivery_status = Some(DeliveryStatus {
            reporting_mta: None,
            recipients: vec![RecipientStatus {
                final_recipient: Some("requests@registrar.test".into()),
                action: Some("failed".into()),
                status: Some("5.1.1".into()),
                diagnostic_code: Some("550 5.1.1 unknown".into()),
                ..RecipientStatus::default()
            }],
        });
        let Class::Bounce(info) = classify(&m, &ctx()) else {
            panic!("not a bounce");
        };
        assert!(info.standard && info.is_failure());
        assert_eq!(
            info.original_message_id.as_deref(),
            Some("tok@gateway.test")
        );
        assert_eq!(info.status.as_deref(), Some("5.1.1"));
        assert_eq!(decide(&Class::Bounce(info), false), Decision::Bounce);
    }

    #[test]
    fn delayed_report_is_only_a_notice() {
        let mut m = mail("mailer-daemon@gateway.test");
        m.delivery_status = Some(DeliveryStatus {
            reporting_mta: None,
            recipients: vec![RecipientStatus {
                action: Some("delayed".into()),
                ..RecipientStatus::default()
            }],
        });
        let class = classify(&m, &ctx());
        assert_eq!(decide(&class, false), Decision::DeliveryNotice);
    }

    #[test]
    fn non_standard_bounce_finds_our_quoted_message_id() {
        let mut m = mail("someone@mx.test");
        m.subject = "Mail delivery failed: returning message to sender".into();
        m.body = "  requests@registrar.test\n    550 5.7.1 Rejected\n\n\
                  Message-Id: <other@mx.test>\n> Message-ID: <tok@gateway.test>"
            .into();
        let Class::Bounce(info) = classify(&m, &ctx()) else {
            panic!("not a bounce");
        };
        assert!(!info.standard);
        assert_eq!(
            info.original_message_id.as_deref(),
            Some("tok@gateway.test")
        );
        assert_eq!(info.recipient.as_deref(), Some("requests@registrar.test"));
        assert_eq!(info.status.as_deref(), Some("5.7.1"));
        assert_eq!(info.diagnostic.as_deref(), Some("550 5.7.1 Rejected"));
    }

    #[test]
    fn auto_submitted_from_registrar_still_runs_rules_and_a_match_wins() {
        let mut m = mail("robot@registrar.test");
        m.headers.auto_submitted = Some("auto-generated".into());
        let class = classify(&m, &ctx());
        assert_eq!(
            class.auto_reply_signal(),
            Some("Auto-Submitted: auto-generated")
        );
        assert!(class.rules_apply());
        assert_eq!(decide(&class, true), Decision::RegistrarReply);
        assert_eq!(decide(&class, false), Decision::AutoReply);
    }

    #[test]
    fn auto_submitted_no_is_not_a_signal() {
        let mut m = mail("robot@registrar.test");
        m.headers.auto_submitted = Some("no".into());
        assert_eq!(decide(&classify(&m, &ctx()), false), Decision::Unmatched);
    }

    #[test]
    fn other_auto_reply_signals_are_seen() {
        type Set = fn(&mut ParsedMail);
        let cases: [(Set, &str); 4] = [
            (
                |m| m.headers.x_autoreply = Some("yes".into()),
                "X-Autoreply",
            ),
            (
                |m| m.headers.x_autorespond = Some("1".into()),
                "X-Autorespond",
            ),
            (|m| m.headers.precedence = Some("Bulk".into()), "Precedence"),
            (|m| m.subject = "Автоответ: Re: заявка".into(), "Subject"),
        ];
        for (set, want) in cases {
            let mut m = mail("person@elsewhere.test");
            set(&mut m);
            let class = classify(&m, &ctx());
            let signal = class.auto_reply_signal().unwrap_or_default().to_string();
            assert!(signal.starts_with(want), "{signal}");
            // A matching rule does not make a stranger's auto-reply a registrar reply.
            assert_eq!(decide(&class, true), Decision::AutoReply);
        }
    }

    #[test]
    fn stranger_matching_a_rule_is_still_not_from_the_registrar() {
        let class = classify(&mail("robot@registrar-test.example"), &ctx());
        assert_eq!(decide(&class, true), Decision::NotFromRegistrar);
        assert!(!Decision::NotFromRegistrar.may_move_state());
    }
}
