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
use crate::core::RequestId;
use crate::inbound::intake::Intake;
use crate::store::inbox::{InboxMessage, InboxState};

fn intake(state: &AppState) -> Result<Arc<Intake>, ApiError> {
    match &state.intake {
        Some(i) => Ok(i.clone()),
        None => Err(crate::operations::intake(state.ops())
            .err()
            .map(ApiError::from)
            .unwrap_or_else(|| ApiError::internal("the reply intake vanished"))),
    }
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
    Ok(crate::operations::find_message(state.ops(), key)?)
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
    serde_json::to_value(crate::operations::masked_record(state.ops(), m)).unwrap_or(Value::Null)
}

/// The answer of [`show`]: decoded and masked; `raw_base64` only when `want_raw`.
fn view_json(state: &AppState, m: &InboxMessage, raw: &[u8], want_raw: bool) -> Value {
    let view = crate::operations::shown_message(state.ops(), raw);
    let headers: Vec<[String; 2]> = view.headers.into_iter().map(|(n, v)| [n, v]).collect();
    let record = shown_record(state, m);
    let mut out = json!({ "message": record, "headers": headers, "text": view.text });
    if want_raw {
        let masked = crate::operations::masked_raw(state.ops(), raw);
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
    intake(&state)?;
    blocking(move || {
        let done = crate::operations::assign(state.ops(), &key, request, outcome, &note)?;
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
    intake(&state)?;
    blocking(move || {
        let done = crate::operations::dismiss(state.ops(), &key, &note)?;
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
    intake(&state)?;
    blocking(move || {
        let t = crate::operations::test_rules(state.ops(), &raw)?;
        Ok(Json(json!({
            "outcome": t.outcome,
            "decision": t.decision,
            "reason": t.reason,
            "rule": t.rule,
            "event": t.event,
            "captures": t.captures.map(|c| {
                let mut m = serde_json::Map::new();
                for (k, v) in c {
                    m.insert(k, v.map_or(Value::Null, Value::String));
                }
                Value::Object(m)
            }),
            "rejected_captures": t.rejected_captures.map(|v| v.iter().map(|c| json!({"rule": c.rule, "capture": c.capture, "value": c.value, "reason": c.reason})).collect::<Vec<_>>()),
            "request": t.request,
            "correlation": t.correlation,
            "from": t.from,
            "subject": t.subject,
        })))
    })
    .await
}

/// `POST /v1/reload`: re-reads the configuration's templates and reply rules (as SIGHUP does);
/// a broken file is refused with its line and reason and the old settings stay.
pub async fn reload(State(state): Shared) -> Result<Json<Value>, ApiError> {
    if state.reloadable.is_none() {
        return Err(ApiError::conflict("reload", "nothing to reload"));
    }
    blocking(move || {
        let msg = crate::operations::reload(state.ops())?;
        Ok(Json(json!({ "reloaded": true, "message": msg })))
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
