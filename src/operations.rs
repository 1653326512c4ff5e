//! What the `/v1` handlers and the `/ui` pages both do: apply an event and wake the workers,
//! retry a request, assign or dismiss an unmatched message, test the reply rules, reload, show
//! a stored message with its secrets masked. The drivers (`api`, `ui`) call these and never
//! each other (DESIGN.md §11); the HTTP shape of an answer stays in the driver.

use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use tokio::sync::Notify;

use crate::core::{
    CoreError, Ctx, Event, Evidence, Handle, Policy, ReplyOutcome, Request, RequestId,
    RequestState, Transition,
};
use crate::idsource::UuidIds;
use crate::inbound::intake::{Intake, Verdict, verdict};
use crate::store::inbox::{InboxMessage, InboxState};
use crate::store::{Applied, ApplyError, Store, StoreError};

/// What kind of refusal an operation gave (each driver maps it to its own answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpErrorKind {
    /// A field's value is not acceptable (the API's 422).
    Invalid,
    /// The thing named does not exist (404).
    NotFound,
    /// It exists but is not in a state that allows this (409).
    Conflict,
    /// The store or a worker failed; the message is for the daemon's log only (500).
    Internal,
}

/// A refused or failed operation: the field at fault and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// What kind.
    pub kind: OpErrorKind,
    /// The field (form field, JSON path, path parameter) at fault.
    pub field: String,
    /// What is wrong and what to do (for `Internal`: the detail for the log).
    pub message: String,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl OpError {
    /// A field's value is not acceptable.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(OpErrorKind::Invalid, field, message)
    }
    /// The thing named does not exist.
    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(OpErrorKind::NotFound, field, message)
    }
    /// Not allowed in the current state.
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(OpErrorKind::Conflict, field, message)
    }
    /// An internal failure (the message goes to the log, not to the user).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(OpErrorKind::Internal, "", message)
    }
    fn new(kind: OpErrorKind, field: impl Into<String>, message: impl Into<String>) -> Self {
        OpError {
            kind,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Maps a core refusal; `field` names what the caller identified the entity by.
    pub fn from_core(e: CoreError, field: &str) -> Self {
        let msg = e.to_string();
        match e {
            // On /v1/clients/{id} the client is the resource (404); in an order it is a field.
            CoreError::UnknownClient(_) if field == "id" => Self::not_found("id", msg),
            CoreError::UnknownClient(_) => Self::invalid("client_id", msg),
            CoreError::UnknownDomain(_) => Self::not_found("domain", msg),
            CoreError::UnknownRequest(_) => Self::not_found("request_id", msg),
            CoreError::ClientExists(_) => Self::conflict("id", msg),
            CoreError::DomainActive { .. } => Self::conflict("domain", msg),
            CoreError::TooEarlyToRenew { .. } => Self::conflict("domain", msg),
            CoreError::Illegal(_) => Self::conflict(field, msg),
            CoreError::View(v) => Self::internal(v.to_string()),
        }
    }

    /// Maps a store failure.
    pub fn from_store(e: StoreError) -> Self {
        Self::internal(e.to_string())
    }

    /// Maps a refused event.
    pub fn from_apply(e: ApplyError, field: &str) -> Self {
        match e {
            ApplyError::Core(c) => Self::from_core(c, field),
            ApplyError::Store(s) => Self::from_store(s),
        }
    }
}

/// The daemon's shared parts, owned (for a driver that keeps its own state, e.g. the UI).
#[derive(Clone)]
pub struct Shared {
    /// The store.
    pub store: Arc<Store>,
    /// Registrar rules for the core.
    pub policy: Policy,
    /// Woken after a request is queued.
    pub outbox_wake: Arc<Notify>,
    /// The notice engine (None: not running).
    pub notices: Option<crate::notices::NoticeHub>,
    /// The reply intake (None: not running).
    pub intake: Option<Arc<Intake>>,
    /// What a reload re-reads.
    pub reloadable: Option<crate::reload::Reloadable>,
    /// Masks the configured secrets in every view of stored mail.
    pub redactor: Arc<crate::redact::Redactor>,
    /// The request charset (the fallback for undeclared replies).
    pub charset: crate::outbound::Charset,
    /// Worker liveness and counters.
    pub health: Arc<crate::health::Health>,
}

impl Shared {
    /// The borrowed view the operations take.
    pub fn ops(&self) -> Ops<'_> {
        Ops {
            store: &self.store,
            policy: &self.policy,
            outbox_wake: &self.outbox_wake,
            notices: self.notices.as_ref(),
            intake: self.intake.as_deref(),
            reloadable: self.reloadable.as_ref(),
            redactor: &self.redactor,
            charset: self.charset,
        }
    }
}

/// What every operation needs, borrowed from the driver's state.
#[derive(Clone, Copy)]
pub struct Ops<'a> {
    /// The store.
    pub store: &'a Store,
    /// Registrar rules for the core.
    pub policy: &'a Policy,
    /// Woken after a request is queued, so the outbox worker sends it at once.
    pub outbox_wake: &'a Notify,
    /// The notice engine's wake-ups (None: not running).
    pub notices: Option<&'a crate::notices::NoticeHub>,
    /// The reply intake (None: not running).
    pub intake: Option<&'a Intake>,
    /// What a reload re-reads (None: nothing).
    pub reloadable: Option<&'a crate::reload::Reloadable>,
    /// Masks the configured secrets.
    pub redactor: &'a crate::redact::Redactor,
    /// The request charset.
    pub charset: crate::outbound::Charset,
}

/// Applies an event now, as the daemon does, and wakes the workers it gave work to.
pub fn apply_now(ops: Ops<'_>, event: Event, field: &str) -> Result<Applied, OpError> {
    let mut ids = UuidIds;
    let mut ctx = Ctx {
        now: Timestamp::now(),
        ids: &mut ids,
        policy: ops.policy,
    };
    let applied = ops
        .store
        .apply(event, &mut ctx)
        .map_err(|e| OpError::from_apply(e, field))?;
    wake(ops, &applied.transition);
    Ok(applied)
}

/// Wakes the outbox worker when the transition queued a request (and the notice channels when
/// it wrote a notice).
pub fn wake(ops: Ops<'_>, t: &Transition) {
    if let Some(h) = ops.notices
        && t.effects
            .iter()
            .any(|e| matches!(e, crate::core::Effect::Notify(_)))
    {
        h.wake();
    }
    if t.effects
        .iter()
        .any(|e| matches!(e, crate::core::Effect::Send(_)))
    {
        ops.outbox_wake.notify_one();
    }
}

/// Sends a failed, refused or unanswered request again. Returns the request that will go out:
/// a new one, or (for SendUnknown) the same one queued again with its Message-ID.
pub fn retry(ops: Ops<'_>, id: RequestId) -> Result<Option<Request>, OpError> {
    let applied = apply_now(ops, Event::Retry { request: id }, "request_id")?;
    Ok(applied
        .transition
        .requests
        .iter()
        .find(|r| r.retry_of == Some(id))
        // A SendUnknown request is queued again as itself (the same Message-ID).
        .or_else(|| {
            applied
                .transition
                .requests
                .iter()
                .find(|r| r.id == id && r.state == RequestState::Queued)
        })
        .cloned())
}

/// What the registrar said, from an operator's words: `event` is `acknowledged` (with an
/// optional task id), `completed` (optional handle and expiry) or `rejected` (reason required).
pub fn reply_outcome(
    event: &str,
    task_id: Option<String>,
    handle: Option<String>,
    expires: Option<Date>,
    reason: Option<String>,
) -> Result<ReplyOutcome, OpError> {
    let unwanted = |k: &str, present: bool| -> Result<(), OpError> {
        if present {
            Err(OpError::invalid(
                k,
                format!("does not go with event {event:?}"),
            ))
        } else {
            Ok(())
        }
    };
    match event {
        "acknowledged" => {
            unwanted("handle", handle.is_some())?;
            unwanted("expires", expires.is_some())?;
            unwanted("reason", reason.is_some())?;
            if task_id.as_ref().is_some_and(|t| t.chars().count() > 64) {
                return Err(OpError::invalid("task_id", "is longer than 64 characters"));
            }
            Ok(ReplyOutcome::Acknowledged { task_id })
        }
        "completed" => {
            unwanted("task_id", task_id.is_some())?;
            unwanted("reason", reason.is_some())?;
            let handle = match handle {
                Some(h) => Some(Handle::parse(&h).map_err(|e| OpError::invalid("handle", e.0))?),
                None => None,
            };
            Ok(ReplyOutcome::Completed { handle, expires })
        }
        "rejected" => {
            unwanted("task_id", task_id.is_some())?;
            unwanted("handle", handle.is_some())?;
            unwanted("expires", expires.is_some())?;
            match reason {
                Some(r) if !r.trim().is_empty() && r.chars().count() <= 1000 => {
                    Ok(ReplyOutcome::Rejected { reason: r })
                }
                Some(r) if !r.trim().is_empty() => {
                    Err(OpError::invalid("reason", "is longer than 1000 characters"))
                }
                _ => Err(OpError::invalid("reason", "is required")),
            }
        }
        other => Err(OpError::invalid(
            "event",
            format!("{other:?}: expected acknowledged, completed or rejected"),
        )),
    }
}

/// The reply intake, or a refusal naming it.
pub fn intake<'a>(ops: Ops<'a>) -> Result<&'a Intake, OpError> {
    ops.intake
        .ok_or_else(|| OpError::conflict("inbox", "the reply intake is not running"))
}

/// A stored message's record.
pub fn find_message(ops: Ops<'_>, key: &str) -> Result<InboxMessage, OpError> {
    ops.store
        .inbox_message(key)
        .map_err(OpError::from_store)?
        .ok_or_else(|| OpError::not_found("key", format!("no stored message {key:?}")))
}

/// Ties an unmatched, ignored or quarantined message to a request. Without `outcome`, the
/// reply rules must recognise the wording; with it, the operator says what the registrar meant.
/// Ignored and Quarantined messages are recorded as the operator's decision (issue 12 item 3).
pub fn assign(
    ops: Ops<'_>,
    key: &str,
    request: RequestId,
    outcome: Option<ReplyOutcome>,
    note: &str,
) -> Result<InboxMessage, OpError> {
    let intake = intake(ops)?;
    let (rec, verdict) = assign_verdict(ops, key, request, outcome, note)?;
    let done = intake.settle(&rec, verdict).map_err(OpError::internal)?;
    if done.state != InboxState::Applied {
        return Err(OpError::conflict(
            "request_id",
            done.reason.unwrap_or_default(),
        ));
    }
    Ok(done)
}

/// What [`assign`] would do, without doing it: the message's record and the verdict that
/// would be settled (its `event` is what the core will be given). For a preview.
pub fn assign_verdict(
    ops: Ops<'_>,
    key: &str,
    request: RequestId,
    outcome: Option<ReplyOutcome>,
    note: &str,
) -> Result<(InboxMessage, Verdict), OpError> {
    let intake = intake(ops)?;
    let rec = find_message(ops, key)?;
    if !matches!(
        rec.state,
        InboxState::Unmatched | InboxState::Ignored | InboxState::Quarantined
    ) {
        return Err(OpError::conflict(
            "key",
            format!(
                "message {key} is {}, not Unmatched, Ignored or Quarantined",
                rec.state.as_str()
            ),
        ));
    }
    let vouched = rec.state != InboxState::Unmatched;
    if ops
        .store
        .request(request)
        .map_err(OpError::from_store)?
        .is_none()
    {
        return Err(OpError::invalid(
            "request_id",
            format!("request {request} does not exist"),
        ));
    }
    let raw = ops
        .store
        .raw_message(key)
        .map_err(OpError::from_store)?
        .unwrap_or_default();
    let mut verdict: Verdict = intake
        .judge(&raw, Some(request))
        .map_err(OpError::internal)?;
    let message_id = verdict.mail.as_ref().and_then(|m| m.message_id.clone());
    match outcome {
        Some(outcome) => {
            verdict.state = InboxState::Applied;
            verdict.reason = format!("assigned by operator: {note}");
            verdict.request = Some((request, crate::inbound::correlate::Signal::Operator));
            verdict.event = Some(Event::Reply {
                request,
                outcome,
                evidence: Evidence {
                    message_id,
                    rule: Some("operator".into()),
                    correlation: Some("operator".into()),
                    note: Some(note.to_owned()),
                    ..Evidence::default()
                },
            });
        }
        None if verdict.event.is_some() => {
            verdict.reason = format!("{}; assigned by operator: {note}", verdict.reason);
        }
        None => {
            return Err(OpError::invalid(
                "event",
                "no reply rule recognises this message; say what it means with event (acknowledged, completed or rejected)",
            ));
        }
    }
    if vouched
        && let Some(Event::Reply {
            request, outcome, ..
        }) = verdict.event.take()
    {
        verdict.event = Some(Event::RecordOutcome {
            request,
            outcome,
            note: format!(
                "operator's decision: message {key} (was {}: {}) assigned: {note}",
                rec.state.as_str(),
                rec.reason.as_deref().unwrap_or("")
            ),
        });
    }
    Ok((rec, verdict))
}

/// Sets an unmatched message aside with the operator's reason.
pub fn dismiss(ops: Ops<'_>, key: &str, note: &str) -> Result<InboxMessage, OpError> {
    let intake = intake(ops)?;
    let rec = find_message(ops, key)?;
    if rec.state != InboxState::Unmatched {
        return Err(OpError::conflict(
            "key",
            format!("message {key} is {}, not Unmatched", rec.state.as_str()),
        ));
    }
    intake
        .settle(
            &rec,
            verdict(
                InboxState::Dismissed,
                format!("dismissed by operator: {note}"),
                None,
            ),
        )
        .map_err(OpError::internal)
}

/// One capture a rule found but refused (a bad date, a domain we do not know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedCapture {
    /// The rule.
    pub rule: String,
    /// The capture's name.
    pub capture: String,
    /// The value.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// What the intake would do with a message (`rules test`). Nothing is changed to find out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesTest {
    /// The inbox state it would get (Applied, Unmatched, Ignored, Quarantined...).
    pub outcome: String,
    /// The classification decision, if it got that far.
    pub decision: Option<String>,
    /// Why, in a sentence.
    pub reason: String,
    /// The rule that matched.
    pub rule: Option<String>,
    /// The rule's event.
    pub event: Option<String>,
    /// The captures: domain, handle, task id, expiry, reason (when the rule matched).
    pub captures: Option<Vec<(String, Option<String>)>>,
    /// Captures that were found but refused (None: the message could not be read).
    pub rejected_captures: Option<Vec<RejectedCapture>>,
    /// The request it correlates to.
    pub request: Option<RequestId>,
    /// How it correlated.
    pub correlation: Option<String>,
    /// The sender.
    pub from: Option<String>,
    /// The decoded subject.
    pub subject: Option<String>,
}

/// Runs the intake's judgement on `raw` without storing anything.
pub fn test_rules(ops: Ops<'_>, raw: &[u8]) -> Result<RulesTest, OpError> {
    let intake = intake(ops)?;
    let v = intake.judge(raw, None).map_err(OpError::internal)?;
    let evaluation = v.mail.as_ref().map(|m| {
        let rules = match intake.rules.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        rules.evaluate(&m.subject, &m.reply_text)
    });
    Ok(RulesTest {
        outcome: v.state.as_str().to_owned(),
        decision: v.decision.map(|d| d.as_str().to_owned()),
        reason: v.reason.clone(),
        rule: v.rule.as_ref().map(|r| r.rule.clone()),
        event: v.rule.as_ref().map(|r| r.event.as_str().to_owned()),
        captures: v.rule.as_ref().map(|r| {
            vec![
                (
                    "domain".to_owned(),
                    r.captures.domain.as_ref().map(|d| d.as_str().to_owned()),
                ),
                (
                    "handle".to_owned(),
                    r.captures.handle.as_ref().map(|h| h.as_str().to_owned()),
                ),
                ("task_id".to_owned(), r.captures.task_id.clone()),
                (
                    "expires".to_owned(),
                    r.captures.expires.map(|d| d.to_string()),
                ),
                ("reason".to_owned(), r.captures.reason.clone()),
            ]
        }),
        rejected_captures: evaluation.map(|e| {
            e.rejected
                .iter()
                .map(|c| RejectedCapture {
                    rule: c.rule.clone(),
                    capture: c.capture.clone(),
                    value: c.value.clone(),
                    reason: c.reason.clone(),
                })
                .collect()
        }),
        request: v.request.map(|(r, _)| r),
        correlation: v.request.map(|(_, s)| s.as_str().to_owned()),
        from: v.mail.as_ref().map(|m| m.from.clone()),
        subject: v.mail.as_ref().map(|m| m.subject.clone()),
    })
}

/// One reply rule as loaded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Its name.
    pub name: String,
    /// The event it produces.
    pub event: String,
    /// The request kinds it answers (empty: any).
    pub kinds: Vec<String>,
    /// Its line in the rules file.
    pub line: usize,
}

/// The reply rules in force, in the order they are tried.
pub fn rules(ops: Ops<'_>) -> Result<Vec<RuleInfo>, OpError> {
    let intake = intake(ops)?;
    let rules = match intake.rules.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    Ok(rules
        .rules()
        .iter()
        .map(|r| RuleInfo {
            name: r.name().to_owned(),
            event: r.event().as_str().to_owned(),
            kinds: r.kinds().iter().map(|k| k.as_str().to_owned()).collect(),
            line: r.line(),
        })
        .collect())
}

/// Re-reads the configuration's templates and reply rules (as SIGHUP does). A broken file is
/// refused with its line and reason and the old settings stay.
pub fn reload(ops: Ops<'_>) -> Result<String, OpError> {
    let r = ops
        .reloadable
        .ok_or_else(|| OpError::conflict("reload", "nothing to reload"))?;
    r.reload().map_err(|e| {
        OpError::invalid(
            "rules",
            format!("reload refused, the old settings stay: {e}"),
        )
    })
}

/// A message record as shown: its subject, sender, reason and Message-ID come from the
/// message, so they are masked like the message itself.
pub fn masked_record(ops: Ops<'_>, m: &InboxMessage) -> InboxMessage {
    let mask = |v: &Option<String>| v.as_ref().map(|t| ops.redactor.text(t));
    InboxMessage {
        subject: mask(&m.subject),
        from: mask(&m.from),
        reason: mask(&m.reason),
        message_id: mask(&m.message_id),
        ..m.clone()
    }
}

/// A stored message decoded for people: the headers that matter and the body text, every
/// configured secret masked. Never fails: what cannot be parsed is shown as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShownMessage {
    /// `(name, value)` of the headers that matter, masked.
    pub headers: Vec<(String, String)>,
    /// The decoded body, masked.
    pub text: String,
}

/// Decodes and masks `raw` (a stored message) for display.
pub fn shown_message(ops: Ops<'_>, raw: &[u8]) -> ShownMessage {
    let (limits, fallback) = match ops.intake {
        Some(i) => (i.limits, i.fallback),
        None => (
            crate::inbound::parse::ParseLimits::default(),
            ops.charset.encoding(),
        ),
    };
    let view = crate::inbound::parse::view(raw, &limits, fallback);
    ShownMessage {
        headers: view
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), ops.redactor.text(v)))
            .collect(),
        text: ops.redactor.text(&view.text),
    }
}

/// The raw bytes of a stored message with every configured secret masked (in every encoding).
pub fn masked_raw(ops: Ops<'_>, raw: &[u8]) -> Vec<u8> {
    ops.redactor.raw(raw)
}

/// Queues again now every delivery to webhook endpoint `id` created at or after `since` that is
/// not queued already (a replay), keeping their ids and attempts. Returns the ids and how many
/// were queued. A disabled endpoint is refused: enable it first.
pub fn replay_endpoint(
    ops: Ops<'_>,
    id: &str,
    since: Timestamp,
    now: Timestamp,
) -> Result<(Vec<u64>, usize), OpError> {
    use crate::notices::model::DeliveryState;
    let e = ops
        .store
        .endpoint(id)
        .map_err(OpError::from_store)?
        .ok_or_else(|| OpError::not_found("id", format!("no webhook endpoint {id}")))?;
    if !e.enabled {
        return Err(OpError::conflict(
            "id",
            format!("endpoint {id} is disabled; enable it first"),
        ));
    }
    let who = format!("endpoint:{id}");
    let ids: Vec<u64> = ops
        .store
        .all_deliveries()
        .map_err(OpError::from_store)?
        .into_iter()
        .filter(|d| d.recipient == who && d.created >= since && d.state != DeliveryState::Queued)
        .map(|d| d.id)
        .collect();
    let n = ops
        .store
        .commit_extra::<usize, ApplyError>(now, |s| {
            let mut writes = Vec::new();
            let mut n = 0;
            for id in &ids {
                let Some(d) = s.delivery(*id)? else { continue };
                let mut new = d.clone();
                new.state = DeliveryState::Queued;
                new.next_at = Some(now);
                writes.extend(crate::store::notices::delivery_update(&d, &new));
                n += 1;
            }
            Ok((
                crate::store::Extra {
                    notices: writes,
                    ..crate::store::Extra::default()
                },
                n,
            ))
        })
        .map_err(|e| OpError::from_apply(e, "id"))?;
    if let Some(h) = ops.notices {
        h.wake();
    }
    Ok((ids, n))
}
