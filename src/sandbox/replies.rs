//! The sandbox's reply e-mails: their wording and their bytes.
//!
//! The wording is chosen so that the reply rules regmail ships (`request-templates/r01/
//! replies.toml`) recognise every reply with the right captures; the unit tests below run each
//! wording through regmail's own parser and rules to prove it. Each reply is bilingual (R01
//! writes Russian; the English line carries the error code), one text/plain part, 8bit, in
//! KOI8-R by default.

use jiff::Timestamp;
use jiff::civil::Date;

use super::config::ReplyCharset;
use super::request::Refusal;

/// What went wrong with one object, in R01's style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Short code, e.g. `WRONG_BIRTH_DATE` (for logs).
    pub code: &'static str,
    /// The English line the reply carries (what regmail's rule captures as the reason).
    pub line: String,
    /// The same in Russian.
    pub ru: String,
}

/// The final answer about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A person or organization was created with this handle.
    Contact {
        /// The nic_hdl.
        handle: String,
        /// An organization (else a person).
        organization: bool,
    },
    /// A domain was registered and delegated.
    Registered {
        /// Punycode.
        domain: String,
        /// Unicode form.
        unicode: String,
        /// Paid till.
        expires: Date,
    },
    /// A domain was prolonged.
    Prolonged {
        /// Punycode.
        domain: String,
        /// Unicode form.
        unicode: String,
        /// Paid till.
        expires: Date,
    },
    /// The object was refused.
    Failed(Failure),
}

impl Outcome {
    /// A short description for the log line.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Contact {
                handle,
                organization,
            } => format!(
                "{} {handle} created",
                if *organization {
                    "organization"
                } else {
                    "person"
                }
            ),
            Outcome::Registered {
                domain, expires, ..
            } => format!("{domain} registered till {expires}"),
            Outcome::Prolonged {
                domain, expires, ..
            } => format!("{domain} prolonged till {expires}"),
            Outcome::Failed(f) => format!("failed: {}", f.line),
        }
    }
}

/// What a reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    /// "Queued as task N".
    Ack {
        /// The task.
        task: u64,
    },
    /// The final answer about one object of task N.
    Final {
        /// The task.
        task: u64,
        /// The answer.
        outcome: Outcome,
    },
    /// The e-mail as a whole was refused; no task.
    Refusal(Refusal),
}

impl ReplyKind {
    /// For logs: `ack`, `completion`, `error`, `refusal`.
    pub fn name(&self) -> &'static str {
        match self {
            ReplyKind::Ack { .. } => "ack",
            ReplyKind::Final {
                outcome: Outcome::Failed(_),
                ..
            } => "error",
            ReplyKind::Final { .. } => "completion",
            ReplyKind::Refusal(_) => "refusal",
        }
    }
}

fn dmy(d: Date) -> String {
    d.strftime("%d.%m.%Y").to_string()
}

fn shown(ascii: &str, unicode: &str) -> String {
    if ascii == unicode {
        ascii.to_owned()
    } else {
        format!("{unicode} ({ascii})")
    }
}

const FOOTER: &str = "-- \nregmail sandbox: a simulation of the R01 registrar for rehearsals.";

/// The reply text (Unicode, LF line ends).
pub fn text(kind: &ReplyKind) -> String {
    let main = match kind {
        ReplyKind::Ack { task } => format!(
            "Ваша заявка принята и поставлена в очередь на обработку.\n\
             Номер задачи: {task}\n\
             \n\
             Your request has been accepted and queued as task {task}."
        ),
        ReplyKind::Final { task, outcome } => match outcome {
            Outcome::Contact {
                handle,
                organization,
            } => {
                let (ru, en) = if *organization {
                    ("Организация зарегистрирована", "organization registered")
                } else {
                    ("Персона зарегистрирована", "person registered")
                };
                format!(
                    "Задача {task} выполнена.\n\
                     {ru}, nic_hdl: {handle}\n\
                     \n\
                     Task {task} completed: {en}, nic_hdl: {handle}"
                )
            }
            Outcome::Registered {
                domain,
                unicode,
                expires,
            } => format!(
                "Задача {task} выполнена.\n\
                 Домен {} зарегистрирован и делегирован. Срок регистрации до {}.\n\
                 \n\
                 Task {task} completed: domain {domain} has been registered and delegated, paid till {}.",
                shown(domain, unicode),
                dmy(*expires),
                dmy(*expires)
            ),
            Outcome::Prolonged {
                domain,
                unicode,
                expires,
            } => format!(
                "Задача {task} выполнена.\n\
                 Домен {} продлен до {}.\n\
                 \n\
                 Task {task} completed: domain {domain} has been prolonged till {}.",
                shown(domain, unicode),
                dmy(*expires),
                dmy(*expires)
            ),
            Outcome::Failed(f) => format!(
                "Задача {task} не выполнена.\n\
                 {}\n\
                 {}\n\
                 \n\
                 Task {task} failed.",
                f.line, f.ru
            ),
        },
        ReplyKind::Refusal(r) => format!(
            "Заявка не принята к обработке.\n\
             Error: {}: {}\n\
             Ошибка: {}\n\
             \n\
             Request refused.",
            r.code, r.en, r.ru
        ),
    };
    format!("{main}\n\n{FOOTER}\n")
}

/// The Subject of a reply that does not thread.
pub fn own_subject(kind: &ReplyKind) -> String {
    match kind {
        ReplyKind::Ack { task } => format!("R01: task {task} queued"),
        ReplyKind::Final {
            task,
            outcome: Outcome::Failed(_),
        } => format!("R01: task {task} failed"),
        ReplyKind::Final { task, .. } => format!("R01: task {task} completed"),
        ReplyKind::Refusal(_) => "R01: request refused".into(),
    }
}

/// How replies look.
#[derive(Debug, Clone)]
pub struct Style {
    /// From address.
    pub from: String,
    /// Its display name (ASCII).
    pub from_name: String,
    /// `Re:` subjects and In-Reply-To/References.
    pub threading: bool,
    /// Body charset.
    pub charset: ReplyCharset,
    /// `Auto-Submitted: auto-replied`.
    pub auto_submitted: bool,
}

/// A reply to send.
#[derive(Debug, Clone)]
pub struct Letter {
    /// Recipient.
    pub to: String,
    /// What it says.
    pub kind: ReplyKind,
    /// The request's Message-ID.
    pub in_reply_to: Option<String>,
    /// The request's Subject.
    pub original_subject: Option<String>,
    /// The request text to quote below the reply (password masked).
    pub quote: Option<String>,
}

/// A built message.
#[derive(Debug, Clone)]
pub struct Built {
    /// Subject.
    pub subject: String,
    /// Message-ID (with brackets).
    pub message_id: String,
    /// The whole message, CRLF.
    pub bytes: Vec<u8>,
}

fn header_safe(s: &str) -> bool {
    s.is_ascii() && !s.contains(['\r', '\n'])
}

/// Builds the e-mail: RFC 5322 header fields, one text/plain 8bit part.
pub fn build(style: &Style, letter: &Letter, now: Timestamp) -> Built {
    let host = style
        .from
        .rsplit_once('@')
        .map_or("sandbox.invalid", |(_, d)| d);
    let message_id = format!("<{}@{host}>", uuid::Uuid::new_v4().simple());
    let subject = match (&letter.original_subject, style.threading) {
        (Some(s), true) if header_safe(s) => {
            if s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) {
                s.clone()
            } else {
                format!("Re: {s}")
            }
        }
        _ => own_subject(&letter.kind),
    };
    let date =
        jiff::fmt::rfc2822::to_string(&now.to_zoned(jiff::tz::TimeZone::UTC)).unwrap_or_default();
    let mut headers = vec![
        format!("Date: {date}"),
        format!("From: {} <{}>", style.from_name, style.from),
        format!("To: <{}>", letter.to),
        format!("Subject: {subject}"),
        format!("Message-ID: {message_id}"),
    ];
    if style.threading
        && let Some(id) = letter.in_reply_to.as_deref().filter(|i| header_safe(i))
    {
        headers.push(format!("In-Reply-To: {id}"));
        headers.push(format!("References: {id}"));
    }
    headers.push("MIME-Version: 1.0".into());
    headers.push(format!(
        "Content-Type: text/plain; charset={}",
        style.charset.label()
    ));
    headers.push("Content-Transfer-Encoding: 8bit".into());
    if style.auto_submitted {
        headers.push("Auto-Submitted: auto-replied".into());
    }
    headers.push("X-Mailer: regmail sandbox".into());
    let mut body = text(&letter.kind);
    if let Some(q) = &letter.quote {
        body.push_str("\n-----Original Message-----\n");
        body.push_str(q);
    }
    let mut bytes = Vec::with_capacity(body.len() + 512);
    for h in &headers {
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    for line in body.trim_end_matches('\n').split('\n') {
        let (enc, _, _) = style.charset.encoding().encode(line);
        // RFC 5322 §2.1.1: at most 998 octets per line.
        for chunk in enc.chunks(990) {
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        if enc.is_empty() {
            bytes.extend_from_slice(b"\r\n");
        }
    }
    Built {
        subject,
        message_id,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    //! Every wording the sandbox sends, through regmail's own parser, classifier and shipped
    //! rules: the intended rule matches, with the intended captures.

    use super::*;
    use crate::core::{DomainName, Handle};
    use crate::inbound::classify::{ClassifyContext, Decision, classify, decide};
    use crate::inbound::parse::{ParseLimits, parse};
    use crate::inbound::rules::{ReplyEvent, RuleMatch, Rules};

    fn rules() -> Rules {
        Rules::parse(include_str!("../../request-templates/r01/replies.toml")).unwrap()
    }

    fn style(threading: bool, charset: ReplyCharset) -> Style {
        Style {
            from: "robot@registrar.test".into(),
            from_name: "R01 registrar sandbox".into(),
            threading,
            charset,
            auto_submitted: true,
        }
    }

    fn letter(kind: ReplyKind, quote: bool) -> Letter {
        Letter {
            to: "gateway@gateway.test".into(),
            kind,
            in_reply_to: Some("<0190c0de000070008000000000000001@gateway.test>".into()),
            original_subject: Some(
                "NEW DOMAIN example.ru [RM-0190c0de000070008000000000000001]".into(),
            ),
            quote: quote.then(|| {
                "action: NEW\nagreement: RP/01/00\npassword: ********\n\n#[DOMAIN TEMPLATE]#\ndomain: quoted.ru\nadmin-o: X_1_1-GPT\n#[TEMPLATES END]#\n".into()
            }),
        }
    }

    /// Builds the reply, parses it as regmail's intake does and runs the rules.
    fn judged(kind: ReplyKind) -> Vec<RuleMatch> {
        let rules = rules();
        let ctx = ClassifyContext::new(
            "gateway@gateway.test",
            "gateway.test",
            &["robot@registrar.test".to_owned()],
        );
        let mut out = Vec::new();
        for threading in [true, false] {
            for charset in [
                ReplyCharset::Koi8R,
                ReplyCharset::Windows1251,
                ReplyCharset::Utf8,
            ] {
                for quote in [false, true] {
                    let b = build(
                        &style(threading, charset),
                        &letter(kind.clone(), quote),
                        Timestamp::now(),
                    );
                    let mail = parse(&b.bytes, &ParseLimits::default(), encoding_rs::KOI8_R)
                        .unwrap_or_else(|q| panic!("quarantined: {q:?}"));
                    assert_eq!(mail.in_reply_to.is_empty(), !threading);
                    let m = rules
                        .first_match(&mail.subject, &mail.reply_text)
                        .unwrap_or_else(|| panic!("no rule matches:\n{}", mail.reply_text));
                    let class = classify(&mail, &ctx);
                    assert_eq!(decide(&class, true), Decision::RegistrarReply, "{class:?}");
                    out.push(m);
                }
            }
        }
        out
    }

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn the_acknowledgement_matches_queued_task_with_the_task_id() {
        for m in judged(ReplyKind::Ack { task: 1042 }) {
            assert_eq!(m.rule, "queued-task");
            assert_eq!(m.event, ReplyEvent::Acknowledged);
            assert_eq!(m.captures.task_id.as_deref(), Some("1042"));
        }
    }

    #[test]
    fn contact_completions_match_client_registered_with_the_handle() {
        for organization in [false, true] {
            let handle = if organization {
                "E2E_7_3-ORG-GPT"
            } else {
                "E2E_7_3-GPT"
            };
            for m in judged(ReplyKind::Final {
                task: 1043,
                outcome: Outcome::Contact {
                    handle: handle.into(),
                    organization,
                },
            }) {
                assert_eq!(m.rule, "client-registered");
                assert_eq!(m.event, ReplyEvent::Completed);
                assert_eq!(m.captures.handle, Some(Handle::parse(handle).unwrap()));
                assert_eq!(m.captures.task_id.as_deref(), Some("1043"));
            }
        }
    }

    #[test]
    fn domain_completions_match_domain_registered_with_domain_and_expiry() {
        for (ascii, unicode) in [
            ("example.ru", "example.ru"),
            ("xn--e1afmkfd.xn--p1ai", "пример.рф"),
        ] {
            for m in judged(ReplyKind::Final {
                task: 1044,
                outcome: Outcome::Registered {
                    domain: ascii.into(),
                    unicode: unicode.into(),
                    expires: date("2027-11-23"),
                },
            }) {
                assert_eq!(m.rule, "domain-registered");
                assert_eq!(m.event, ReplyEvent::Completed);
                assert_eq!(m.captures.domain, Some(DomainName::parse(ascii).unwrap()));
                assert_eq!(m.captures.expires, Some(date("2027-11-23")));
            }
        }
    }

    #[test]
    fn renewals_match_domain_prolonged_with_domain_and_expiry() {
        for m in judged(ReplyKind::Final {
            task: 1045,
            outcome: Outcome::Prolonged {
                domain: "xn--e1afmkfd.xn--p1ai".into(),
                unicode: "пример.рф".into(),
                expires: date("2028-02-29"),
            },
        }) {
            assert_eq!(m.rule, "domain-prolonged");
            assert_eq!(
                m.captures.domain,
                Some(DomainName::parse("пример.рф").unwrap())
            );
            assert_eq!(m.captures.expires, Some(date("2028-02-29")));
        }
    }

    fn failure(code: &'static str, line: &str) -> ReplyKind {
        ReplyKind::Final {
            task: 1046,
            outcome: Outcome::Failed(Failure {
                code,
                line: line.into(),
                ru: "Ошибка обработки объекта.".into(),
            }),
        }
    }

    #[test]
    fn errors_match_the_intended_error_rules_with_the_reason() {
        let cases = [
            (
                "WRONG_BIRTH_DATE: birth date 01.01.1900 of person E2E_1_3-GPT is wrong",
                "error-wrong-birth-date",
                "WRONG_BIRTH_DATE: birth date 01.01.1900 of person E2E_1_3-GPT is wrong",
            ),
            (
                "DADMIN_EXIST: contact E2E_1_3-GPT already exists",
                "error-dadmin-exist",
                "DADMIN_EXIST: contact E2E_1_3-GPT already exists",
            ),
            (
                "PASSPORT not filled. You should fill all the necessary parameters to proceed.",
                "error-not-filled",
                "PASSPORT not filled. You should fill all the necessary parameters to proceed.",
            ),
            (
                "Domain taken.ru is already registered.",
                "error-domain-exists",
                "Domain taken.ru is already registered.",
            ),
            (
                "Error: DOMAIN_NOT_FOUND: domain gone.com is not registered at R01",
                "error-line",
                "DOMAIN_NOT_FOUND: domain gone.com is not registered at R01",
            ),
            (
                "Error: REGISTRY_ERROR: the registry did not confirm the operation (simulated fault); send the request again",
                "error-line",
                "REGISTRY_ERROR: the registry did not confirm the operation (simulated fault); send the request again",
            ),
        ];
        for (line, rule, reason) in cases {
            for m in judged(failure("X", line)) {
                assert_eq!(m.rule, rule, "{line}");
                assert_eq!(m.event, ReplyEvent::Rejected);
                assert_eq!(m.captures.reason.as_deref(), Some(reason));
            }
        }
        for m in judged(failure(
            "DADMIN_EXIST",
            "DADMIN_EXIST: contact E2E_1_3-GPT already exists",
        )) {
            assert_eq!(
                m.captures.handle,
                Some(Handle::parse("E2E_1_3-GPT").unwrap())
            );
        }
        for m in judged(failure(
            "DOMAIN_EXISTS",
            "Domain taken.ru is already registered.",
        )) {
            assert_eq!(
                m.captures.domain,
                Some(DomainName::parse("taken.ru").unwrap())
            );
        }
    }

    #[test]
    fn refusals_match_error_line_with_code_and_reason() {
        for m in judged(ReplyKind::Refusal(Refusal {
            code: "AUTH_FAILED",
            en: "wrong password for agreement RP/01/00".into(),
            ru: "неверный пароль".into(),
        })) {
            assert_eq!(m.rule, "error-line");
            assert_eq!(
                m.captures.reason.as_deref(),
                Some("AUTH_FAILED: wrong password for agreement RP/01/00")
            );
        }
    }

    #[test]
    fn threading_sets_re_subject_and_in_reply_to_and_none_without() {
        let l = letter(ReplyKind::Ack { task: 1 }, false);
        let b = build(&style(true, ReplyCharset::Koi8R), &l, Timestamp::now());
        let head = String::from_utf8_lossy(&b.bytes);
        assert!(
            head.contains("Subject: Re: NEW DOMAIN example.ru [RM-"),
            "{head}"
        );
        assert!(head.contains("In-Reply-To: <0190c0de"), "{head}");
        let b = build(&style(false, ReplyCharset::Koi8R), &l, Timestamp::now());
        let head = String::from_utf8_lossy(&b.bytes);
        assert!(head.contains("Subject: R01: task 1 queued"), "{head}");
        assert!(
            !head.contains("In-Reply-To") && !head.contains("[RM-"),
            "{head}"
        );
        assert!(head.contains("Content-Transfer-Encoding: 8bit\r\n"));
    }
}
