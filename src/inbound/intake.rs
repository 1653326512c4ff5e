//! The intake: turns one stored message into its outcome, in one store transaction with the
//! state change it causes (DESIGN.md inv. 1 and 2): applied to exactly one request, ignored
//! with a reason, quarantined with a reason, or left unmatched for an operator. Never guessed.

use std::sync::{Arc, RwLock};

use jiff::Timestamp;

use super::classify::{Class, ClassifyContext, Decision, classify, decide};
use super::correlate::{Correlation, ReplyFacts, Signal, correlate};
use super::parse::{ParseLimits, ParsedMail, parse};
use super::rules::{RuleMatch, Rules};
use super::source::Processor;
use crate::core::{
    Actor, Ctx, Event, Evidence, LogDraft, Policy, ReplyOutcome, RequestId, RequestState,
};
use crate::idsource::UuidIds;
use crate::store::inbox::{InboxMessage, InboxState, inbox_state_key, message_id_key};
use crate::store::{ApplyError, Extra, Store};

/// Everything the intake needs; shared by the sources.
pub struct Intake {
    /// The store.
    pub store: Arc<Store>,
    /// Reply rules; replaced on reload.
    pub rules: Arc<RwLock<Arc<Rules>>>,
    /// Core policy.
    pub policy: Policy,
    /// Our addresses and the registrar's.
    pub classify: ClassifyContext,
    /// Work bounds.
    pub limits: ParseLimits,
    /// The registrar's charset, for unlabelled 8-bit text.
    pub fallback: &'static encoding_rs::Encoding,
    /// Woken when a reply queued a request (a registered client releases its domains).
    pub outbox_wake: Option<Arc<tokio::sync::Notify>>,
    /// Where the reply-to-status latency is recorded.
    pub health: Option<Arc<crate::health::Health>>,
    /// Masks configured secrets in what the action log keeps of a message (its subject).
    pub redactor: Arc<crate::redact::Redactor>,
}

/// What the intake decided for one message, before it is committed.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Final state.
    pub state: InboxState,
    /// Why.
    pub reason: String,
    /// The decision of classification + rules.
    pub decision: Option<Decision>,
    /// The rule that matched.
    pub rule: Option<RuleMatch>,
    /// The request and how it was found.
    pub request: Option<(RequestId, Signal)>,
    /// The event to apply.
    pub event: Option<Event>,
    /// The parsed message (None when quarantined).
    pub mail: Option<ParsedMail>,
}

/// A verdict with no event.
pub fn verdict(state: InboxState, reason: impl Into<String>, mail: Option<ParsedMail>) -> Verdict {
    Verdict {
        state,
        reason: reason.into(),
        decision: None,
        rule: None,
        request: None,
        event: None,
        mail,
    }
}

impl Intake {
    fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Decides what a raw message means, without committing anything (also used by
    /// `regmail rules test`). `assigned` forces the request (an operator's assignment).
    pub fn judge(&self, raw: &[u8], assigned: Option<RequestId>) -> Result<Verdict, String> {
        let mail = match parse(raw, &self.limits, self.fallback) {
            Ok(m) => m,
            Err(q) => return Ok(verdict(InboxState::Quarantined, q.reason, None)),
        };
        let class = classify(&mail, &self.classify);
        let rules = self.rules();
        let rm = if class.rules_apply() {
            rules.first_match(&mail.subject, &mail.reply_text)
        } else {
            None
        };
        let decision = decide(&class, rm.is_some());
        let mut v = verdict(InboxState::Ignored, String::new(), None);
        v.decision = Some(decision);
        v.rule = rm.clone();
        match decision {
            Decision::OwnLoop => v.reason = "our own request came back (mail loop)".into(),
            Decision::DeliveryNotice => v.reason = "a delivery report that is not a failure".into(),
            Decision::AutoReply => {
                v.reason = format!(
                    "an automatic reply ({}) that no reply rule matches",
                    class.auto_reply_signal().unwrap_or("auto-reply")
                )
            }
            Decision::NotFromRegistrar => {
                v.reason = format!(
                    "sender {:?} is not one of the registrar's addresses ([registrar] senders); kept, changes nothing",
                    mail.from
                )
            }
            Decision::Unmatched => {
                v.state = InboxState::Unmatched;
                v.reason = "from the registrar, but no reply rule matches this wording; add a rule or assign it".into();
            }
            Decision::Bounce => {
                let Class::Bounce(info) = &class else {
                    return Err("a bounce decision without bounce details".into());
                };
                // A bounce moves state only when it proves itself (issue 9 part A, item 4).
                let proven = match assigned {
                    Some(rid) => Ok(rid),
                    None => super::bounce::prove(
                        &super::auth::header_fields(raw),
                        &mail,
                        info,
                        &self.classify.envelope_template,
                        &self.classify.message_id_host,
                        &self.classify.trust,
                    )
                    .and_then(|t| RequestId::parse(&t).map_err(|e| e.0)),
                };
                let target = match proven {
                    Ok(rid) => Some(rid),
                    // A bounce of a notice e-mail (issue 10) carries no VERP address: it is
                    // recorded on its delivery when our own MTA wrote it; it moves no domain.
                    Err(_)
                        if assigned.is_none()
                            && super::bounce::from_our_mta(
                                &super::auth::header_fields(raw),
                                &mail,
                                &self.classify.trust,
                            )
                            .is_ok()
                            && info.original_message_id.as_deref().is_some_and(|id| {
                                let why = info.diagnostic.as_deref().unwrap_or("bounced");
                                self.store
                                    .record_bounce(id, why, crate::clock::now())
                                    .unwrap_or(false)
                            }) =>
                    {
                        v.state = InboxState::Ignored;
                        v.reason = "a bounce of a notice e-mail; recorded on its delivery".into();
                        v.mail = Some(mail);
                        return Ok(v);
                    }
                    Err(why) => {
                        v.state = InboxState::Quarantined;
                        v.reason =
                            format!("{why}; kept, changes nothing (an operator can assign it)");
                        v.mail = Some(mail);
                        return Ok(v);
                    }
                };
                match target {
                    // Only a request that was sent can bounce: anything else is forged or not ours.
                    Some(rid)
                        if self
                            .store
                            .request(rid)
                            .map_err(|e| e.to_string())?
                            .is_some_and(|r| {
                                matches!(
                                    r.state,
                                    RequestState::Sent
                                        | RequestState::SendUnknown
                                        | RequestState::Acknowledged
                                        | RequestState::TimedOut
                                )
                            }) =>
                    {
                        let reason = format!(
                            "bounced by the mail system: {} {}",
                            info.status.as_deref().unwrap_or(""),
                            info.diagnostic.as_deref().unwrap_or("no diagnostic")
                        );
                        let signal = if assigned.is_some() {
                            Signal::Operator
                        } else {
                            Signal::MessageId
                        };
                        v.state = InboxState::Applied;
                        v.reason = reason.trim().to_owned();
                        v.request = Some((rid, signal));
                        v.event = Some(Event::Reply {
                            request: rid,
                            outcome: ReplyOutcome::Rejected {
                                reason: v.reason.clone(),
                            },
                            evidence: Evidence {
                                message_id: mail.message_id.clone(),
                                rule: Some("bounce".into()),
                                correlation: Some(signal.as_str().into()),
                                error: info.diagnostic.clone(),
                                ..Evidence::default()
                            },
                        });
                    }
                    _ => {
                        v.state = InboxState::Unmatched;
                        v.reason = "a bounce of a message that is not one of our requests".into();
                    }
                }
            }
            Decision::RegistrarReply => {
                let Some(m) = rm else {
                    return Err("a registrar reply without a rule".into());
                };
                let notice = m.notice();
                let outcome = m.outcome();
                if outcome.is_none() && notice.is_none() {
                    v.reason = format!("rule {} says to ignore this reply", m.rule);
                    v.mail = Some(mail);
                    return Ok(v);
                }
                // Only an authenticated reply moves state (issue 9 part A, item 1); an
                // operator's assignment is the operator's decision.
                let level = self.classify.trust.authentication;
                let trust = super::auth::assess(raw, &mail.from, &self.classify.trust);
                if assigned.is_none() && !trust.passes(level) {
                    v.state = InboxState::Quarantined;
                    v.reason = format!(
                        "rule {} matched, but the reply is {}; kept, changes nothing (an operator can assign it)",
                        m.rule,
                        trust.why_not(level)
                    );
                    v.mail = Some(mail);
                    return Ok(v);
                }
                let auth = trust.authenticated(level).then(|| trust.evidence());
                if let Some(notice) = notice {
                    // A registrar notice (issue 11): it names a domain and answers no request,
                    // so, like a reply tied only by the domain name, it must be authenticated
                    // (or assigned by an operator).
                    let held = match &m.captures.domain {
                        Some(dn) => self.store.domain(dn).map_err(|e| e.to_string())?,
                        None => None,
                    };
                    match (&m.captures.domain, held) {
                        (Some(dn), Some(_)) if auth.is_some() || assigned.is_some() => {
                            v.state = InboxState::Applied;
                            v.reason = format!(
                                "rule {} matched: the registrar reports {dn} {}",
                                m.rule,
                                m.event.as_str()
                            );
                            v.event = Some(Event::Registrar {
                                domain: dn.clone(),
                                notice,
                                evidence: Evidence {
                                    message_id: mail.message_id.clone(),
                                    rule: Some(m.rule.clone()),
                                    correlation: Some("domain".into()),
                                    auth: auth.clone(),
                                    ..Evidence::default()
                                },
                            });
                        }
                        (Some(dn), Some(_)) => {
                            v.state = InboxState::Unmatched;
                            v.reason = format!(
                                "rule {} matched: a notice that {dn} is {}, but the reply is not authenticated ({}); assign it after checking",
                                m.rule,
                                m.event.as_str(),
                                trust.reasons(level)
                            );
                        }
                        (Some(dn), None) => {
                            v.state = InboxState::Unmatched;
                            v.reason = format!(
                                "rule {} matched: a notice about {dn}, which has no order here",
                                m.rule
                            );
                        }
                        (None, _) => {
                            v.state = InboxState::Unmatched;
                            v.reason = format!("rule {} matched but captured no domain", m.rule);
                        }
                    }
                    v.mail = Some(mail);
                    return Ok(v);
                }
                let Some(outcome) = outcome else {
                    return Err(format!("rule {} has no outcome", m.rule));
                };
                let found = match assigned {
                    Some(rid) => Correlation::Found {
                        request: rid,
                        signal: Signal::Operator,
                    },
                    None => {
                        let facts = ReplyFacts {
                            in_reply_to: &mail.in_reply_to,
                            references: &mail.references,
                            subject: &mail.subject,
                            task_id: m.captures.task_id.as_deref(),
                            domain: m.captures.domain.as_ref(),
                            handle: m.captures.handle.as_ref(),
                            kinds: &m.kinds,
                        };
                        correlate(&self.store, &facts, &self.classify.message_id_host)
                            .map_err(|e| e.to_string())?
                    }
                };
                match found {
                    // Weak correlation (the domain name or handle only) needs an authenticated
                    // reply (issue 9 part A, item 2).
                    Correlation::Found {
                        request,
                        signal: signal @ (Signal::Domain | Signal::Handle),
                    } if auth.is_none() => {
                        v.state = InboxState::Unmatched;
                        v.reason = format!(
                            "rule {} matched; only the {} ties it to request {request}, and a reply that is not authenticated is not tied by that alone ({}); assign it after checking",
                            m.rule,
                            signal.as_str(),
                            trust.reasons(level)
                        );
                    }
                    Correlation::Found { request, signal } => {
                        v.state = InboxState::Applied;
                        v.reason = format!(
                            "rule {} matched; tied to request {request} by {}",
                            m.rule,
                            signal.as_str()
                        );
                        v.request = Some((request, signal));
                        v.event = Some(Event::Reply {
                            request,
                            outcome,
                            evidence: Evidence {
                                message_id: mail.message_id.clone(),
                                rule: Some(m.rule.clone()),
                                correlation: Some(signal.as_str().into()),
                                task_id: m.captures.task_id.clone(),
                                auth: auth.clone(),
                                ..Evidence::default()
                            },
                        });
                    }
                    Correlation::Unmatched(why) => {
                        v.state = InboxState::Unmatched;
                        v.reason = format!("rule {} matched, but {why}", m.rule);
                    }
                }
            }
        }
        v.mail = Some(mail);
        Ok(v)
    }

    /// Commits a verdict for the stored message `rec`: the event (if any), the message's new
    /// record, its index entries and a log line, in one transaction.
    pub fn settle(&self, rec: &InboxMessage, mut v: Verdict) -> Result<InboxMessage, String> {
        let now = crate::clock::now();
        // A second copy of a message (same Message-ID) changes nothing: logged only. Only a
        // copy that moved state counts as the first (the index holds only applied copies), so
        // a forged first copy cannot hide the real reply (issue 12 item 3).
        if let Some(mid) = v.mail.as_ref().and_then(|m| m.message_id.clone())
            && let Some(first) = self
                .store
                .message_id_seen(&mid)
                .map_err(|e| e.to_string())?
            && first != rec.key
            && v.event.is_some()
            && self
                .store
                .inbox_message(&first)
                .map_err(|e| e.to_string())?
                .is_some_and(|f| f.state == InboxState::Applied)
        {
            v.state = InboxState::Ignored;
            v.reason =
                format!("a second copy of message {first} (same Message-ID {mid}); logged only");
            v.event = None;
        }
        let attempt = self.commit(rec, &v, now);
        match attempt {
            Ok(done) => Ok(done),
            Err(ApplyError::Core(e)) => {
                // The reply does not fit the request's state: an operator must look at it.
                let mut v2 = v.clone();
                v2.state = InboxState::Unmatched;
                v2.reason = format!("{}; but it does not fit the request now: {e}", v.reason);
                v2.event = None;
                self.commit(rec, &v2, now).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn commit(
        &self,
        rec: &InboxMessage,
        v: &Verdict,
        now: Timestamp,
    ) -> Result<InboxMessage, ApplyError> {
        let mail = v.mail.as_ref();
        let done = InboxMessage {
            state: v.state,
            reason: Some(v.reason.clone()),
            message_id: mail
                .and_then(|m| m.message_id.clone())
                .or_else(|| rec.message_id.clone()),
            from: mail.map(|m| m.from.clone()).or_else(|| rec.from.clone()),
            subject: mail
                .map(|m| m.subject.clone())
                .or_else(|| rec.subject.clone()),
            request: v.request.map(|(r, _)| r),
            rule: v
                .rule
                .as_ref()
                .map(|r| r.rule.clone())
                .or_else(|| rec.rule.clone()),
            settled: Some(now),
            ..rec.clone()
        };
        let mut ids = UuidIds;
        let mut ctx = Ctx {
            now,
            ids: &mut ids,
            policy: &self.policy,
        };
        let record = done.clone();
        let mut extra = |_: &crate::core::Transition| {
            let mut x = Extra {
                inbox: vec![(
                    record.key.as_bytes().to_vec(),
                    crate::store::encode_value(&record),
                )],
                index_del: vec![
                    inbox_state_key(InboxState::Pending, &record.key),
                    inbox_state_key(InboxState::Unmatched, &record.key),
                ],
                ..Extra::default()
            };
            if record.state == InboxState::Unmatched {
                x.index_put.push((
                    inbox_state_key(InboxState::Unmatched, &record.key),
                    Vec::new(),
                ));
            }
            if let Some(mid) = &record.message_id
                && record.state == InboxState::Applied
            {
                x.index_put
                    .push((message_id_key(mid), record.key.as_bytes().to_vec()));
            }
            if record.state != InboxState::Applied {
                x.log.push(LogDraft {
                    at: now,
                    actor: Actor::Intake,
                    action: format!("mail.{}", record.state.as_str().to_ascii_lowercase()),
                    message: format!(
                        "message {} from {} ({:?}): {}",
                        record.key,
                        record.from.as_deref().unwrap_or("?"),
                        self.redactor.text(record.subject.as_deref().unwrap_or("")),
                        record.reason.as_deref().unwrap_or("")
                    ),
                    domain: None,
                    client: None,
                    request: record.request,
                    status_before: None,
                    status_after: Some(record.state.as_str().to_owned()),
                    evidence: Evidence {
                        message_id: record.message_id.clone(),
                        rule: record.rule.clone(),
                        ..Evidence::default()
                    },
                });
            }
            x
        };
        let applied = self
            .store
            .apply_with(v.event.clone(), &mut ctx, &mut extra)?;
        if let Some(h) = &self.health
            && done.state == InboxState::Applied
        {
            h.observe_latency(
                (now.as_millisecond() - rec.received.as_millisecond()) as f64 / 1000.0,
            );
        }
        if let Some(w) = &self.outbox_wake
            && applied
                .transition
                .effects
                .iter()
                .any(|e| matches!(e, crate::core::Effect::Send(_)))
        {
            w.notify_one();
        }
        Ok(done)
    }
}

impl Processor for Intake {
    fn record_copy(&self, key: &str, first: &str) -> Result<(), String> {
        self.copy_record(key, first)
    }

    fn process(&self, key: &str, quarantine: Option<&str>) -> Result<InboxMessage, String> {
        let rec = self
            .store
            .inbox_message(key)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("message {key} is not stored"))?;
        if rec.state != InboxState::Pending {
            return Ok(rec);
        }
        let v = match quarantine {
            Some(reason) => verdict(InboxState::Quarantined, reason, None),
            None => {
                let raw = self
                    .store
                    .raw_message(key)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("raw bytes of {key} are missing"))?;
                self.judge(&raw, None)?
            }
        };
        let done = self.settle(&rec, v)?;
        let request = done
            .request
            .and_then(|id| self.store.request(id).ok().flatten());
        let request_id = request
            .as_ref()
            .map(|r| r.id.to_string())
            .unwrap_or_default();
        let domain = request
            .as_ref()
            .and_then(|r| r.domain.as_ref())
            .map(|d| d.to_string())
            .unwrap_or_default();
        tracing::info!(
            key,
            state = done.state.as_str(),
            %request_id,
            %domain,
            reason = done.reason.as_deref().unwrap_or(""),
            "message processed"
        );
        Ok(done)
    }
}

impl Intake {
    /// See [`Processor::record_copy`].
    fn copy_record(&self, key: &str, first: &str) -> Result<(), String> {
        if key == first
            || self
                .store
                .inbox_message(key)
                .map_err(|e| e.to_string())?
                .is_some()
        {
            return Ok(());
        }
        let now = crate::clock::now();
        let original = self.store.inbox_message(first).map_err(|e| e.to_string())?;
        let rec = InboxMessage {
            key: key.to_owned(),
            received: now,
            size: original.as_ref().map_or(0, |o| o.size),
            sha256: original
                .as_ref()
                .map(|o| o.sha256.clone())
                .unwrap_or_default(),
            state: InboxState::Ignored,
            reason: Some(format!(
                "the same bytes as message {first}, stored before; not applied again"
            )),
            message_id: original.as_ref().and_then(|o| o.message_id.clone()),
            from: original.as_ref().and_then(|o| o.from.clone()),
            subject: original.as_ref().and_then(|o| o.subject.clone()),
            request: None,
            rule: None,
            settled: Some(now),
            raw_removed: None,
        };
        let mut ids = UuidIds;
        let mut ctx = Ctx {
            now,
            ids: &mut ids,
            policy: &self.policy,
        };
        let record = rec.clone();
        let mut extra = |_: &crate::core::Transition| Extra {
            inbox: vec![(
                record.key.as_bytes().to_vec(),
                crate::store::encode_value(&record),
            )],
            log: vec![LogDraft {
                at: now,
                actor: Actor::Intake,
                action: "mail.ignored".into(),
                message: format!(
                    "message {}: {}",
                    record.key,
                    record.reason.as_deref().unwrap_or("")
                ),
                domain: None,
                client: None,
                request: None,
                status_before: None,
                status_after: Some(InboxState::Ignored.as_str().to_owned()),
                evidence: Evidence {
                    message_id: record.message_id.clone(),
                    ..Evidence::default()
                },
            }],
            ..Extra::default()
        };
        self.store
            .apply_with(None, &mut ctx, &mut extra)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Processes every message stored but not yet processed (after a crash or restart).
    pub fn process_pending(&self) -> Result<usize, String> {
        let pending = self
            .store
            .inbox_in_state(InboxState::Pending, usize::MAX)
            .map_err(|e| e.to_string())?;
        let n = pending.len();
        for m in pending {
            self.process(&m.key, None)?;
        }
        Ok(n)
    }
}
