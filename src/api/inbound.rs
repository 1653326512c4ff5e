//! API for the reply side: the inbox and its unmatched queue (list, show, assign, dismiss),
//! `rules test` and reload.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, Shared, blocking, input, read_json};
use crate::core::{Event, Evidence, RequestId};
use crate::inbound::intake::{Intake, Verdict, verdict};
use crate::store::inbox::{InboxMessage, InboxState};

fn intake(state: &AppState) -> Result<Arc<Intake>, ApiError> {
    state
        .intake
        .clone()
        .ok_or_else(|| ApiError::conflict("inbox", "the reply intake is not running"))
}

fn parse_state(s: &str) -> Result<InboxState, ApiError> {
    [
        InboxState::Pending,
        InboxState::Applied,
        InboxState::Ignored,
        InboxState::Unmatched,
        InboxState::Quarantined,
        InboxState::Dismissed,
    ]
    .into_iter()
    .find(|x| x.as_str().eq_ignore_ascii_case(s))
    .ok_or_else(|| {
        ApiError::invalid(
            "state",
            format!(
                "{s:?}: expected Pending, Applied, Ignored, Unmatched, Quarantined or Dismissed"
            ),
        )
    })
}

/// `GET /v1/inbox?state=Unmatched`: message records (all when no state is given).
pub async fn list(
    State(state): Shared,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    for k in q.keys() {
        if k != "state" && k != "limit" {
            return Err(ApiError::invalid(k.clone(), "unknown query parameter"));
        }
    }
    let filter = q.get("state").map(|s| parse_state(s)).transpose()?;
    let limit = match q.get("limit") {
        None => 1000,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "expected 1 to 10000"))?,
    };
    blocking(move || {
        let items = match filter {
            Some(s @ (InboxState::Pending | InboxState::Unmatched)) => {
                state.store.inbox_in_state(s, limit)
            }
            Some(s) => state
                .store
                .inbox_all(usize::MAX)
                .map(|v| v.into_iter().filter(|m| m.state == s).take(limit).collect()),
            None => state.store.inbox_all(limit),
        }
        .map_err(ApiError::from_store)?;
        let items: Vec<Value> = items.iter().map(|m| shown_record(&state, m)).collect();
        Ok(Json(json!({ "messages": items })))
    })
    .await
}

fn find(state: &AppState, key: &str) -> Result<InboxMessage, ApiError> {
    state
        .store
        .inbox_message(key)
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found("key", format!("no stored message {key:?}")))
}

/// `GET /v1/inbox/message?key=K[&raw=1]`: one record, the headers that matter and the decoded
/// body text, every configured secret masked (crate::redact). The raw bytes come only when
/// asked for with `raw=1`, as `raw_base64`, and are masked too, in every encoding.
pub async fn show(
    State(state): Shared,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    for k in q.keys() {
        if k != "key" && k != "raw" {
            return Err(ApiError::invalid(k.clone(), "unknown query parameter"));
        }
    }
    let key = q
        .get("key")
        .cloned()
        .ok_or_else(|| ApiError::invalid("key", "is required"))?;
    let want_raw = match q.get("raw").map(String::as_str) {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(_) => return Err(ApiError::invalid("raw", "expected 1 or 0")),
    };
    blocking(move || {
        let m = find(&state, &key)?;
        let raw = state
            .store
            .raw_message(&key)
            .map_err(ApiError::from_store)?
            .unwrap_or_default();
        Ok(Json(view_json(&state, &m, &raw, want_raw)))
    })
    .await
}

/// A message record as shown: its subject, sender and reason come from the message, so they
/// are masked like the message itself.
fn shown_record(state: &AppState, m: &InboxMessage) -> Value {
    let mut record = serde_json::to_value(m).unwrap_or(Value::Null);
    for f in ["subject", "from", "reason", "message_id"] {
        if let Some(t) = record[f].as_str() {
            record[f] = Value::String(state.redactor.text(t));
        }
    }
    record
}

/// The answer of [`show`]: decoded and masked; `raw_base64` only when `want_raw`.
fn view_json(state: &AppState, m: &InboxMessage, raw: &[u8], want_raw: bool) -> Value {
    let (limits, fallback) = match &state.intake {
        Some(i) => (i.limits, i.fallback),
        None => (
            crate::inbound::parse::ParseLimits::default(),
            state.charset.encoding(),
        ),
    };
    let red = &state.redactor;
    let view = crate::inbound::parse::view(raw, &limits, fallback);
    let headers: Vec<[String; 2]> = view
        .headers
        .iter()
        .map(|(n, v)| [n.clone(), red.text(v)])
        .collect();
    let record = shown_record(state, m);
    let mut out = json!({ "message": record, "headers": headers, "text": red.text(&view.text) });
    if want_raw {
        let masked = red.raw(raw);
        out["raw_base64"] = Value::String(
            String::from_utf8(crate::redact::base64_encode(&masked)).unwrap_or_default(),
        );
    }
    out
}

/// `POST /v1/inbox/assign {key, request_id, event?, task_id?, handle?, expires?, reason?, note}`:
/// ties an unmatched, ignored or quarantined message to a request (the latter two are recorded
/// as the operator's decision, actor operator). Without `event`, the reply rules must recognise the
/// wording; with it, the operator says what the registrar meant.
pub async fn assign(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let v = read_json(&state, &headers, body).await?;
    let o = input::Obj::root(&v)?;
    o.only(&[
        "key",
        "request_id",
        "event",
        "task_id",
        "handle",
        "expires",
        "reason",
        "note",
    ])?;
    let key = o.text("key", 500)?;
    let request = RequestId::parse(&o.text("request_id", 64)?)
        .map_err(|e| ApiError::invalid("request_id", e.0))?;
    let note = o.text("note", 1000)?;
    let outcome = match o.opt_text("event", 16)? {
        Some(_) => {
            let mut sub = v.clone();
            if let Some(m) = sub.as_object_mut() {
                m.remove("key");
                m.remove("request_id");
            }
            Some(input::reply_outcome(&sub)?)
        }
        None => None,
    };
    let intake = intake(&state)?;
    blocking(move || {
        let rec = find(&state, &key)?;
        // Unmatched, and also Ignored or Quarantined (issue 12 item 3: an operator may vouch
        // for a message the trust checks refused; the action log shows it as the operator's).
        if !matches!(rec.state, InboxState::Unmatched | InboxState::Ignored | InboxState::Quarantined) {
            return Err(ApiError::conflict("key", format!("message {key} is {}, not Unmatched, Ignored or Quarantined", rec.state.as_str())));
        }
        let vouched = rec.state != InboxState::Unmatched;
        if state.store.request(request).map_err(ApiError::from_store)?.is_none() {
            return Err(ApiError::invalid("request_id", format!("request {request} does not exist")));
        }
        let raw = state.store.raw_message(&key).map_err(ApiError::from_store)?.unwrap_or_default();
        let mut verdict: Verdict = intake.judge(&raw, Some(request)).map_err(ApiError::internal)?;
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
                        note: Some(note.clone()),
                        ..Evidence::default()
                    },
                });
            }
            None if verdict.event.is_some() => {
                verdict.reason = format!("{}; assigned by operator: {note}", verdict.reason);
            }
            None => {
                return Err(ApiError::invalid("event", "no reply rule recognises this message; say what it means with event (acknowledged, completed or rejected)"));
            }
        }
        if vouched && let Some(Event::Reply { request, outcome, .. }) = verdict.event.take() {
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
        let done = intake.settle(&rec, verdict).map_err(ApiError::internal)?;
        if done.state != InboxState::Applied {
            return Err(ApiError::conflict("request_id", done.reason.unwrap_or_default()));
        }
        Ok(Json(json!({ "message": done })))
    })
    .await
}

/// `POST /v1/inbox/dismiss {key, note}`: sets an unmatched message aside.
pub async fn dismiss(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let v = read_json(&state, &headers, body).await?;
    let o = input::Obj::root(&v)?;
    o.only(&["key", "note"])?;
    let key = o.text("key", 500)?;
    let note = o.text("note", 1000)?;
    let intake = intake(&state)?;
    blocking(move || {
        let rec = find(&state, &key)?;
        if rec.state != InboxState::Unmatched {
            return Err(ApiError::conflict(
                "key",
                format!("message {key} is {}, not Unmatched", rec.state.as_str()),
            ));
        }
        let done = intake
            .settle(
                &rec,
                verdict(
                    InboxState::Dismissed,
                    format!("dismissed by operator: {note}"),
                    None,
                ),
            )
            .map_err(ApiError::internal)?;
        Ok(Json(json!({ "message": done })))
    })
    .await
}

/// `POST /v1/rules/test` with a raw message as the body: what the intake would do with it
/// (classification, the rule, its captures, the request it correlates to). Changes nothing.
pub async fn test(State(state): Shared, body: Body) -> Result<Json<Value>, ApiError> {
    let raw = axum::body::to_bytes(body, 8 << 20)
        .await
        .map_err(|_| ApiError::invalid("body", "the message is larger than 8 MiB"))?;
    let intake = intake(&state)?;
    blocking(move || {
        let v = intake.judge(&raw, None).map_err(ApiError::internal)?;
        let evaluation = v.mail.as_ref().map(|m| {
            let rules = match intake.rules.read() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            };
            rules.evaluate(&m.subject, &m.reply_text)
        });
        Ok(Json(json!({
            "outcome": v.state.as_str(),
            "decision": v.decision.map(|d| d.as_str()),
            "reason": v.reason,
            "rule": v.rule.as_ref().map(|r| &r.rule),
            "event": v.rule.as_ref().map(|r| r.event.as_str()),
            "captures": v.rule.as_ref().map(|r| json!({
                "domain": r.captures.domain.as_ref().map(|d| d.as_str()),
                "handle": r.captures.handle,
                "task_id": r.captures.task_id,
                "expires": r.captures.expires,
                "reason": r.captures.reason,
            })),
            "rejected_captures": evaluation.map(|e| e.rejected.iter().map(|c| json!({"rule": c.rule, "capture": c.capture, "value": c.value, "reason": c.reason})).collect::<Vec<_>>()),
            "request": v.request.map(|(r, _)| r),
            "correlation": v.request.map(|(_, s)| s.as_str()),
            "from": v.mail.as_ref().map(|m| &m.from),
            "subject": v.mail.as_ref().map(|m| &m.subject),
        })))
    })
    .await
}

/// `POST /v1/reload`: re-reads the configuration's templates and reply rules (as SIGHUP does);
/// a broken file is refused with its line and reason and the old settings stay.
pub async fn reload(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let r = state
        .reloadable
        .clone()
        .ok_or_else(|| ApiError::conflict("reload", "nothing to reload"))?;
    blocking(move || match r.reload() {
        Ok(msg) => Ok(Json(json!({ "reloaded": true, "message": msg }))),
        Err(e) => Err(ApiError::invalid(
            "rules",
            format!("reload refused, the old settings stay: {e}"),
        )),
    })
    .await
}

#[cfg(test)]
mod tests {
    fn mask_passwords(text: &str) -> String {
        crate::redact::Redactor::default().text(text)
    }

    #[test]
    fn quoted_password_lines_are_masked() {
        let text = "Ошибка\n> action: NEW\n> password: s3cret-R01\n  PASSWORD:x\npasswords: fine";
        let masked = mask_passwords(text);
        assert!(!masked.contains("s3cret-R01"), "{masked}");
        assert!(!masked.contains("PASSWORD:x"), "{masked}");
        assert!(masked.contains("> password: ********"));
        assert!(masked.contains("passwords: fine"));
    }
}
