//! The reply rules: a per-registrar TOML file that says which reply wording means which event
//! and which values it carries (DESIGN.md §5: registrar replies are data, not code).
//!
//! The file format is documented at the top of `request-templates/r01/replies.toml`. In short:
//! an ordered list of `[[rule]]` tables, each with a `name`, the `event` it means, optional
//! `kinds` of request it may answer, and a `subject` and/or `body` regular expression (the
//! Rust `regex` syntax: linear time, no look-around, no back-references). Named groups carry
//! values: `domain`, `handle`, `task_id`, `expires`, `reason`.
//!
//! Loading refuses a broken file with the line and the reason; matching is in file order and
//! the first rule whose patterns all match and whose captures all parse wins.

use std::collections::HashSet;
use std::ops::Range;

use jiff::civil::Date;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use toml::Spanned;

use crate::core::{DomainName, Handle, ReplyOutcome, RequestKind};

/// Largest compiled program one pattern may produce (regex `size_limit`).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Largest lazy-DFA cache one pattern may use (regex `dfa_size_limit`).
pub const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;
/// Deepest group nesting a pattern may have.
pub const REGEX_NEST_LIMIT: u32 = 64;
/// Longest pattern text accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;
/// Most rules one file may hold.
pub const MAX_RULES: usize = 500;
/// Longest `reason` capture kept, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// The capture names the engine understands.
pub const CAPTURE_NAMES: [&str; 5] = ["domain", "handle", "task_id", "expires", "reason"];

/// What a matching reply means for the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyEvent {
    /// The registrar queued the request as a task.
    Acknowledged,
    /// The registrar did it.
    Completed,
    /// The registrar refused it.
    Rejected,
    /// A known message that changes nothing (a newsletter, a balance notice): logged only.
    Ignore,
    /// A registrar notice that a domain expired (it answers no request; the rule must capture
    /// `domain`): the domain goes Expired, parked (DESIGN.md §9).
    Expired,
    /// A registrar notice that a domain was deleted (the rule must capture `domain`).
    Deleted,
}

impl ReplyEvent {
    /// The name used in the rules file and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyEvent::Acknowledged => "acknowledged",
            ReplyEvent::Completed => "completed",
            ReplyEvent::Rejected => "rejected",
            ReplyEvent::Ignore => "ignore",
            ReplyEvent::Expired => "expired",
            ReplyEvent::Deleted => "deleted",
        }
    }

    /// Parses the rules-file name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "acknowledged" => ReplyEvent::Acknowledged,
            "completed" => ReplyEvent::Completed,
            "rejected" => ReplyEvent::Rejected,
            "ignore" => ReplyEvent::Ignore,
            "expired" => ReplyEvent::Expired,
            "deleted" => ReplyEvent::Deleted,
            _ => return None,
        })
    }
}

/// What went wrong while loading a rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RulesErrorKind {
    /// Not valid TOML, or a value of the wrong type.
    Toml,
    /// A key the format does not know (a typo such as `bdoy`).
    UnknownKey,
    /// A regular expression that does not compile or exceeds the size limits.
    BadRegex,
    /// An `event` other than acknowledged, completed, rejected, ignore, expired, deleted; or an
    /// `expired`/`deleted` rule that captures no `domain`.
    BadEvent,
    /// A `kinds` entry that is not a request kind.
    UnknownKind,
    /// Two rules with the same name.
    DuplicateName,
    /// A rule with neither `subject` nor `body`.
    NoPattern,
    /// A named group the engine does not understand.
    UnknownCapture,
    /// An empty name, too many rules, a pattern too long.
    Invalid,
}

/// A rules file was refused; the old rules stay in force. Says the line and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rules file, line {line}: {reason}")]
pub struct RulesError {
    /// 1-based line of the offending value (or of the rule, or 1 when unknown).
    pub line: usize,
    /// The category, for callers that branch on it.
    pub kind: RulesErrorKind,
    /// What is wrong and what to do.
    pub reason: String,
}

/// The values a matching reply carries, parsed into their types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    /// A domain name (IDN accepted in Unicode or punycode; stored as punycode).
    pub domain: Option<DomainName>,
    /// A registrar contact handle.
    pub handle: Option<Handle>,
    /// The registrar's task id.
    pub task_id: Option<String>,
    /// An expiry date (`DD.MM.YYYY` or `YYYY-MM-DD`).
    pub expires: Option<Date>,
    /// The registrar's reason, in its words.
    pub reason: Option<String>,
}

/// A capture whose text did not parse: its rule was skipped. Shown by `regmail rules test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedCapture {
    /// The rule that matched the text.
    pub rule: String,
    /// The capture name.
    pub capture: String,
    /// The captured text.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// The first rule that matched a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// The rule's name (goes into the action log as evidence).
    pub rule: String,
    /// What the reply means.
    pub event: ReplyEvent,
    /// The request kinds the rule may answer; empty means any.
    pub kinds: Vec<RequestKind>,
    /// The values it carries.
    pub captures: Captures,
    /// Earlier rules whose text matched but whose captures did not parse.
    pub rejected_captures: Vec<RejectedCapture>,
}

impl RuleMatch {
    /// True when the rule may answer a request of `kind`.
    pub fn allows_kind(&self, kind: RequestKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    /// The core's view of the reply; `None` for an `ignore` rule. A rejection without a
    /// `reason` capture gives the rule's name as the reason.
    pub fn outcome(&self) -> Option<ReplyOutcome> {
        let c = &self.captures;
        Some(match self.event {
            ReplyEvent::Acknowledged => ReplyOutcome::Acknowledged {
                task_id: c.task_id.clone(),
            },
            ReplyEvent::Completed => ReplyOutcome::Completed {
                handle: c.handle.clone(),
                expires: c.expires,
            },
            ReplyEvent::Rejected => ReplyOutcome::Rejected {
                reason: c
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("refused (rule {})", self.rule)),
            },
            ReplyEvent::Ignore | ReplyEvent::Expired | ReplyEvent::Deleted => return None,
        })
    }

    /// The registrar notice this rule's match means (`expired` or `deleted`), if it is one.
    pub fn notice(&self) -> Option<crate::core::RegistrarNotice> {
        match self.event {
            ReplyEvent::Expired => Some(crate::core::RegistrarNotice::Expired),
            ReplyEvent::Deleted => Some(crate::core::RegistrarNotice::Deleted),
            _ => None,
        }
    }
}

/// The result of running every rule on one reply, for diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// The first rule that matched, if any.
    pub matched: Option<RuleMatch>,
    /// Rules whose text matched but whose captures did not parse (in file order).
    pub rejected: Vec<RejectedCapture>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    name: String,
    kinds: Vec<RequestKind>,
    event: ReplyEvent,
    subject: Option<Regex>,
    body: Option<Regex>,
    line: usize,
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What it means.
    pub fn event(&self) -> ReplyEvent {
        self.event
    }
    /// The request kinds it may answer (empty: any).
    pub fn kinds(&self) -> &[RequestKind] {
        &self.kinds
    }
    /// The line of its `[[rule]]` header in the file.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// A loaded, validated rules file.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    event: Spanned<String>,
    #[serde(default)]
    kinds: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    subject: Option<Spanned<String>>,
    #[serde(default)]
    body: Option<Spanned<String>>,
    /// Free text for operators (where the wording was seen, what it means). Not used.
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn err(text: &str, span: Range<usize>, kind: RulesErrorKind, reason: String) -> RulesError {
    RulesError {
        line: line_of(text, span.start),
        kind,
        reason,
    }
}

fn kind_by_name(name: &str) -> Option<RequestKind> {
    [
        RequestKind::ClientRegistration,
        RequestKind::DomainRegistration,
        RequestKind::DomainRenewal,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
}

fn compile(
    text: &str,
    rule: &str,
    field: &str,
    pattern: &Spanned<String>,
) -> Result<Regex, RulesError> {
    let span = pattern.span();
    let p = pattern.get_ref();
    if p.is_empty() {
        return Err(err(
            text,
            span,
            RulesErrorKind::BadRegex,
            format!("rule {rule:?}: `{field}` is empty; remove it or give a pattern"),
        ));
    }
    if p.len() > MAX_PATTERN_LEN {
        return Err(err(
            text,
            span,
            RulesErrorKind::Invalid,
            format!(
                "rule {rule:?}: `{field}` is {} bytes long; the limit is {MAX_PATTERN_LEN}",
                p.len()
            ),
        ));
    }
    let re = RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| {
            err(
                text,
                span.clone(),
                RulesErrorKind::BadRegex,
                format!("rule {rule:?}: `{field}` is not a valid regular expression: {e}"),
            )
        })?;
    if let Some(unknown) = re
        .capture_names()
        .flatten()
        .find(|n| !CAPTURE_NAMES.contains(n))
    {
        return Err(err(
            text,
            span,
            RulesErrorKind::UnknownCapture,
            format!(
                "rule {rule:?}: `{field}` has a group named {unknown:?}; the engine knows {}",
                CAPTURE_NAMES.join(", ")
            ),
        ));
    }
    Ok(re)
}

impl Rules {
    /// Loads and validates a rules file. Every problem is reported with its line: bad TOML, an
    /// unknown key, a regex that does not compile (with the regex error) or exceeds the size
    /// limits, an unknown event, kind or capture name, a duplicate rule name, a rule with no
    /// pattern.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let kind = if e.message().contains("unknown field") {
                RulesErrorKind::UnknownKey
            } else {
                RulesErrorKind::Toml
            };
            RulesError {
                line: e.span().map_or(1, |s| line_of(text, s.start)),
                kind,
                reason: e.message().trim().to_string(),
            }
        })?;
        if raw.rule.len() > MAX_RULES {
            return Err(RulesError {
                line: 1,
                kind: RulesErrorKind::Invalid,
                reason: format!("{} rules; the limit is {MAX_RULES}", raw.rule.len()),
            });
        }

        let mut names = HashSet::new();
        let mut rules = Vec::with_capacity(raw.rule.len());
        for spanned in raw.rule {
            let rule_span = spanned.span();
            let r = spanned.into_inner();
            let name = r.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(err(
                    text,
                    r.name.span(),
                    RulesErrorKind::Invalid,
                    "a rule's `name` is empty".into(),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(err(
                    text,
                    r.name.span(),
                    RulesErrorKind::DuplicateName,
                    format!("rule name {name:?} is used twice; names must be unique"),
                ));
            }
            let event = ReplyEvent::parse(r.event.get_ref().trim()).ok_or_else(|| {
                err(
                    text,
                    r.event.span(),
                    RulesErrorKind::BadEvent,
                    format!(
                        "rule {name:?}: event {:?} is not one of acknowledged, completed, rejected, ignore, expired, deleted",
                        r.event.get_ref()
                    ),
                )
            })?;
            let mut kinds = Vec::new();
            if let Some(list) = &r.kinds {
                for k in list.get_ref() {
                    let kind = kind_by_name(k.get_ref().trim()).ok_or_else(|| {
                        err(
                            text,
                            k.span(),
                            RulesErrorKind::UnknownKind,
                            format!(
                                "rule {name:?}: kind {:?} is not one of client-registration, domain-registration, domain-renewal",
                                k.get_ref()
                            ),
                        )
                    })?;
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
            }
            if r.subject.is_none() && r.body.is_none() {
                return Err(err(
                    text,
                    rule_span,
                    RulesErrorKind::NoPattern,
                    format!("rule {name:?} has neither `subject` nor `body`; give at least one"),
                ));
            }
            let subject = r
                .subject
                .as_ref()
                .map(|p| compile(text, &name, "subject", p))
                .transpose()?;
            let body = r
                .body
                .as_ref()
                .map(|p| compile(text, &name, "body", p))
                .transpose()?;
            if matches!(event, ReplyEvent::Expired | ReplyEvent::Deleted)
                && ![&subject, &body]
                    .into_iter()
                    .flatten()
                    .any(|re| re.capture_names().flatten().any(|n| n == "domain"))
            {
                return Err(err(
                    text,
                    r.event.span(),
                    RulesErrorKind::BadEvent,
                    format!(
                        "rule {name:?}: event {} names no request, so its `subject` or `body` must capture the domain, e.g. (?P<domain>[a-z0-9.-]+)",
                        event.as_str()
                    ),
                ));
            }
            rules.push(Rule {
                name,
                kinds,
                event,
                subject,
                body,
                line: line_of(text, rule_span.start),
            });
        }
        Ok(Rules { rules })
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the file holds no rule (then every reply is unmatched).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule, in file order, whose patterns all match and whose captures all parse.
    /// `body` should be the reply text without quotes ([`super::parse::ParsedMail::reply_text`]).
    pub fn first_match(&self, subject: &str, body: &str) -> Option<RuleMatch> {
        self.evaluate(subject, body).matched
    }

    /// Like [`Rules::first_match`], and also reports the rules skipped because a capture did
    /// not parse (a bad date, a malformed domain), for `regmail rules test`.
    pub fn evaluate(&self, subject: &str, body: &str) -> Evaluation {
        let mut rejected = Vec::new();
        for rule in &self.rules {
            let mut texts: Vec<(String, String)> = Vec::new();
            let mut matched = true;
            for (re, hay) in [(&rule.subject, subject), (&rule.body, body)] {
                let Some(re) = re else { continue };
                match re.captures(hay) {
                    Some(caps) => {
                        for name in re.capture_names().flatten() {
                            if let Some(m) = caps.name(name) {
                                // A body capture overrides the same name from the subject.
                                texts.retain(|(n, _)| n != name);
                                texts.push((name.to_string(), m.as_str().to_string()));
                            }
                        }
                    }
                    None => {
                        matched = false;
                        break;
                    }
                }
            }
            if !matched {
                continue;
            }
            let mut captures = Captures::default();
            let mut ok = true;
            for (name, value) in texts {
                if let Err(reason) = set_capture(&mut captures, &name, &value) {
                    rejected.push(RejectedCapture {
                        rule: rule.name.clone(),
                        capture: name,
                        value,
                        reason,
                    });
                    ok = false;
                }
            }
            if ok {
                return Evaluation {
                    matched: Some(RuleMatch {
                        rule: rule.name.clone(),
                        event: rule.event,
                        kinds: rule.kinds.clone(),
                        captures,
                        rejected_captures: rejected.clone(),
                    }),
                    rejected,
                };
            }
        }
        Evaluation {
            matched: None,
            rejected,
        }
    }
}

/// Punctuation a loose `\S+` capture may drag along from the prose around it.
fn trim_punctuation(value: &str) -> &str {
    value
        .trim()
        .trim_start_matches(['"', '\'', '«', '(', '[', '<', '“', '„'])
        .trim_end_matches([
            '"', '\'', '»', ')', ']', '>', ',', ';', ':', '.', '!', '?', '“', '”',
        ])
}

fn set_capture(c: &mut Captures, name: &str, value: &str) -> Result<(), String> {
    match name {
        "domain" => {
            let v = trim_punctuation(value);
            c.domain = Some(DomainName::parse(v).map_err(|e| e.to_string())?);
        }
        "handle" => {
            let v = trim_punctuation(value);
            c.handle = Some(Handle::parse(v).map_err(|e| e.to_string())?);
        }
        "task_id" => c.task_id = Some(parse_task_id(value)?),
        "expires" => c.expires = Some(parse_date(value)?),
        "reason" => c.reason = Some(clean_reason(value)?),
        // Unknown names are refused at load time.
        other => return Err(format!("unknown capture {other:?}")),
    }
    Ok(())
}

fn parse_task_id(value: &str) -> Result<String, String> {
    let v = trim_punctuation(value)
        .trim_start_matches(['#', '№'])
        .trim();
    let valid = !v.is_empty()
        && v.len() <= 64
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':'));
    if valid {
        Ok(v.to_string())
    } else {
        Err(format!(
            "task id {value:?} must be 1 to 64 ASCII letters, digits and . _ - / :"
        ))
    }
}

/// Parses `DD.MM.YYYY` (one-digit day and month accepted) or `YYYY-MM-DD` into a real date.
pub fn parse_date(value: &str) -> Result<Date, String> {
    let v = trim_punctuation(value);
    let bad = || format!("{value:?} is not a date (expected DD.MM.YYYY or YYYY-MM-DD)");
    let nums = |parts: Vec<&str>| -> Option<Vec<i16>> {
        parts
            .iter()
            .map(|p| {
                if !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()) {
                    p.parse::<i16>().ok()
                } else {
                    None
                }
            })
            .collect()
    };
    let (y, m, d) = if v.contains('.') {
        let parts: Vec<&str> = v.split('.').collect();
        match (parts.len(), nums(parts.clone())) {
            (3, Some(n)) if parts[2].len() == 4 && parts[0].len() <= 2 && parts[1].len() <= 2 => {
                (n[2], n[1], n[0])
            }
            _ => return Err(bad()),
        }
    } else {
        let parts: Vec<&str> = v.split('-').collect();
        match (parts.len(), nums(parts.clone())) {
            (3, Some(n)) if parts[0].len() == 4 && parts[1].len() == 2 && parts[2].len() == 2 => {
                (n[0], n[1], n[2])
            }
            _ => return Err(bad()),
        }
    };
    let (Ok(m), Ok(d)) = (i8::try_from(m), i8::try_from(d)) else {
        return Err(bad());
    };
    Date::new(y, m, d).map_err(|_| format!("{value:?} is not a real calendar date"))
}

fn clean_reason(value: &str) -> Result<String, String> {
    let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return Err("the reason is empty".into());
    }
    Ok(match collapsed.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHIPPED: &str = include_str!("../../request-templates/r01/replies.toml");
    static SHIPPED_RULES: std::sync::LazyLock<Rules> =
        std::sync::LazyLock::new(|| Rules::parse(SHIPPED).unwrap());

    fn one(rule: &str) -> Result<Rules, RulesError> {
        Rules::parse(rule)
    }

    #[test]
    fn shipped_rules_load() {
        let rules = Rules::parse(SHIPPED).unwrap();
        assert!(rules.len() >= 10);
    }

    #[test]
    fn first_match_is_in_file_order_with_typed_captures() {
        let rules = one(r#"
[[rule]]
name = "registered"
kinds = ["domain-registration"]
event = "completed"
body = '(?i)domain\s+(?P<domain>\S+)\s+registered\s+till\s+(?P<expires>\S+)'

[[rule]]
name = "generic"
event = "rejected"
subject = '(?i)error'
body = '(?P<reason>.+)'
"#)
        .unwrap();
        let m = rules
            .first_match("Re: x", "Domain Пример.РФ registered till 15.11.2027.")
            .unwrap();
        assert_eq!(m.rule, "registered");
        assert_eq!(m.event, ReplyEvent::Completed);
        assert_eq!(m.captures.domain.unwrap().as_str(), "xn--e1afmkfd.xn--p1ai");
        assert_eq!(m.captures.expires, Some(jiff::civil::date(2027, 11, 15)));
        assert!(m.kinds.contains(&RequestKind::DomainRegistration));
        // Both patterns must match.
        assert!(rules.first_match("Re: x", "something else").is_none());
        let m = rules.first_match("ERROR", "bad  thing ").unwrap();
        assert_eq!(m.captures.reason.as_deref(), Some("bad thing"));
        assert_eq!(
            m.outcome(),
            Some(ReplyOutcome::Rejected {
                reason: "bad thing".into()
            })
        );
    }

    #[test]
    fn a_capture_that_does_not_parse_skips_the_rule_and_is_reported() {
        let rules = one(r#"
[[rule]]
name = "dated"
event = "completed"
body = 'till (?P<expires>\S+)'

[[rule]]
name = "undated"
event = "completed"
body = 'till'
"#)
        .unwrap();
        let e = rules.evaluate("", "paid till 31.02.2027");
        let m = e.matched.unwrap();
        assert_eq!(m.rule, "undated");
        assert_eq!(e.rejected.len(), 1);
        assert_eq!(e.rejected[0].rule, "dated");
        assert_eq!(e.rejected[0].capture, "expires");
        assert!(e.rejected[0].reason.contains("not a real calendar date"));
        assert_eq!(m.rejected_captures, e.rejected);
    }

    #[test]
    fn dates_in_both_formats_parse() {
        assert_eq!(parse_date("01.02.2027"), Ok(jiff::civil::date(2027, 2, 1)));
        assert_eq!(parse_date("1.2.2027"), Ok(jiff::civil::date(2027, 2, 1)));
        assert_eq!(parse_date("2027-02-01"), Ok(jiff::civil::date(2027, 2, 1)));
        for bad in [
            "2027-2-1",
            "01.02.27",
            "32.01.2027",
            "2027/02/01",
            "",
            "x.y.z",
            "99999-01-01",
        ] {
            assert!(parse_date(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn task_ids_are_validated() {
        assert_eq!(parse_task_id("№700101").as_deref(), Ok("700101"));
        assert_eq!(parse_task_id("#R-17/2").as_deref(), Ok("R-17/2"));
        assert!(parse_task_id("").is_err());
        assert!(parse_task_id("a b").is_err());
        assert!(parse_task_id(&"9".repeat(65)).is_err());
    }

    fn refused(text: &str) -> RulesError {
        match Rules::parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn expiry_and_deletion_notices_need_a_domain_and_carry_it() {
        let e = refused("[[rule]]\nname = \"a\"\nevent = \"expired\"\nbody = 'expired'\n");
        assert_eq!(e.kind, RulesErrorKind::BadEvent);
        assert!(e.reason.contains("capture the domain"), "{e}");
        let rules = Rules::parse(SHIPPED).unwrap();
        let m = rules
            .first_match(
                "Уведомление",
                "Срок регистрации домена example.ru истёк 01.02.2027.",
            )
            .unwrap();
        assert_eq!(m.event, ReplyEvent::Expired);
        assert_eq!(m.notice(), Some(crate::core::RegistrarNotice::Expired));
        assert_eq!(m.outcome(), None);
        assert_eq!(m.captures.domain.unwrap().as_str(), "example.ru");
        let m = rules
            .first_match("Notice", "Domain example.ru has been deleted.")
            .unwrap();
        assert_eq!(m.notice(), Some(crate::core::RegistrarNotice::Deleted));
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let e = refused("[[rule]]\nname = \"a\"\nevent = \"completed\"\nbody = '(unclosed'\n");
        assert_eq!((e.line, e.kind), (4, RulesErrorKind::BadRegex));
        assert!(
            e.reason.contains("unclosed") || e.reason.contains("regex"),
            "{e}"
        );
        assert!(e.to_string().starts_with("rules file, line 4: "));

        let e = refused("[[rule]]\nname = \"a\"\nevent = \"done\"\nbody = 'x'\n");
        assert_eq!((e.line, e.kind), (3, RulesErrorKind::BadEvent));

        let e = refused("[[rule]]\nname = \"a\"\nevent = \"completed\"\nbdoy = 'x'\n");
        assert_eq!((e.line, e.kind), (4, RulesErrorKind::UnknownKey));
        assert!(e.reason.contains("bdoy"), "{e}");

        let e = refused(
            "[[rule]]\nname = \"a\"\nevent = \"completed\"\nkinds = [\"domain-registration\", \"transfer\"]\nbody = 'x'\n",
        );
        assert_eq!((e.line, e.kind), (4, RulesErrorKind::UnknownKind));

        let e = refused(
            "[[rule]]\nname = \"a\"\nevent = \"completed\"\nbody = 'x'\n\n[[rule]]\nname = \"a\"\nevent = \"completed\"\nbody = 'y'\n",
        );
        assert_eq!((e.line, e.kind), (7, RulesErrorKind::DuplicateName));

        let e = refused("# c\n[[rule]]\nname = \"a\"\nevent = \"completed\"\n");
        assert_eq!(e.kind, RulesErrorKind::NoPattern);
        assert!(e.line == 2 || e.line == 3, "{e}");

        let e = refused("[[rule]]\nname = \"a\"\nevent = \"completed\"\nbody = '(?P<date>x)'\n");
        assert_eq!((e.line, e.kind), (4, RulesErrorKind::UnknownCapture));

        let e = refused("[[rule]]\nname = \"a\"\nevent = \"completed\"\nbody = 'x\n");
        assert_eq!((e.line, e.kind), (4, RulesErrorKind::Toml));

        let e = refused("[[rule]]\nname = \"a\"\nevent = 3\nbody = 'x'\n");
        assert_eq!((e.line, e.kind), (3, RulesErrorKind::Toml));
    }

    #[test]
    fn hostile_patterns_hit_the_size_limit() {
        let e =
            refused("[[rule]]\nname = \"a\"\nevent = \"completed\"\nbody = '(?:\\w{100}){100}'\n");
        assert_eq!((e.line, e.kind), (4, RulesErrorKind::BadRegex));
        let long = format!(
            "[[rule]]\nname = \"a\"\nevent = \"completed\"\nbody = '{}'\n",
            "a".repeat(MAX_PATTERN_LEN + 1)
        );
        assert_eq!(refused(&long).kind, RulesErrorKind::Invalid);
    }

    #[test]
    fn empty_file_has_no_rules() {
        let rules = Rules::parse("# nothing yet\n").unwrap();
        assert!(rules.is_empty());
        assert!(rules.first_match("a", "b").is_none());
    }

    #[test]
    fn shipped_rules_read_the_expected_wordings() {
        let rules = Rules::parse(SHIPPED).unwrap();
        let cases: &[(&str, &str, &str)] = &[
            (
                "Заявка принята в обработку.\nНомер задачи: 700101",
                "queued-task",
                "700101",
            ),
            ("Request queued as task 12345.", "queued-task", "12345"),
            ("Task 700104 queued.", "queued-task-id-first", "700104"),
            (
                "Задача №42 поставлена в очередь",
                "queued-task-id-first",
                "42",
            ),
        ];
        for (body, rule, task) in cases {
            let m = rules.first_match("", body).unwrap();
            assert_eq!(
                (m.rule.as_str(), m.captures.task_id.as_deref()),
                (*rule, Some(*task)),
                "{body}"
            );
            assert_eq!(m.event, ReplyEvent::Acknowledged);
        }
        let m = rules
            .first_match("", "Person GW_1_4821-GPT successfully created")
            .unwrap();
        assert_eq!(m.captures.handle.unwrap().as_str(), "GW_1_4821-GPT");
        let m = rules
            .first_match("", "Организация зарегистрирована.\nnic_hdl: GW_2_5-ORG-GPT")
            .unwrap();
        assert_eq!(m.captures.handle.unwrap().as_str(), "GW_2_5-ORG-GPT");
        let m = rules
            .first_match("", "Domain old-site.ru renewed till 2028-03-12")
            .unwrap();
        assert_eq!(m.rule, "domain-prolonged");
        assert_eq!(m.captures.expires, Some(jiff::civil::date(2028, 3, 12)));
        // "not registered" contains "registered": the error comes first.
        let m = rules
            .first_match("", "Клиент не зарегистрирован, nic_hdl: GW_9-GPT")
            .unwrap();
        assert_eq!(m.event, ReplyEvent::Rejected);
        let m = rules
            .first_match("", "error: something odd happened")
            .unwrap();
        assert_eq!(m.captures.reason.as_deref(), Some("something odd happened"));
        assert!(
            rules
                .first_match("", "Thank you for your letter.")
                .is_none()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        /// Any text through the shipped rules: a match or none, never a panic, and every
        /// typed capture is valid by construction.
        #[test]
        fn shipped_rules_never_panic_on_any_text(subject in ".{0,80}", body in "(?s).{0,600}") {
            let rules = &*SHIPPED_RULES;
            let e = rules.evaluate(&subject, &body);
            if let Some(m) = e.matched {
                prop_assert!(rules.rules().iter().any(|r| r.name() == m.rule));
            }
        }

        /// Any text as a rules file: loaded or refused with a line inside the text.
        #[test]
        fn any_rules_text_is_loaded_or_refused_with_a_line(text in "(?s).{0,400}") {
            if let Err(e) = Rules::parse(&text) {
                prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1, "{e}");
            }
        }
    }
}
