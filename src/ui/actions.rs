//! The actions (POST): each runs as the operator (the action log names them), then answers
//! 303 to the page it came from, or re-renders that page with the refusal naming the field.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::auth::{self, Operator};
use super::form::{FieldError, Fields, enc};
use super::pages::{self, domain_page, message_page, request_page, rules_page, run};
use super::render::{error_page, page};
use super::{Ui, UiState, blocking, read_form, see_other, shown_error, status_of};
use crate::core::{
    Actor, Ctx, DomainName, DomainStatus, Event, Evidence, LogDraft, RequestId, Resolution,
};
use crate::idsource::UuidIds;
use crate::operations::{self, OpError};
use crate::store::ui::UiSession;

/// Largest form accepted (the rules tester has its own, larger limit).
const FORM_LIMIT: usize = 64 * 1024;

fn field_err(e: FieldError) -> OpError {
    OpError::invalid(e.field, e.message)
}

/// Writes one action-log line for an operator action that is not an event (login, logout,
/// reload), in the store's transaction like any other entry.
fn note(s: &UiState, action: &str, message: String) -> Result<(), OpError> {
    let now = s.now();
    let mut ids = UuidIds;
    let mut ctx = Ctx {
        now,
        ids: &mut ids,
        policy: &s.shared.policy,
    };
    let draft = LogDraft {
        at: now,
        actor: Actor::Operator,
        action: action.to_owned(),
        message,
        domain: None,
        client: None,
        request: None,
        status_before: None,
        status_after: None,
        evidence: Evidence::default(),
    };
    let mut extra = |_: &crate::core::Transition| crate::store::Extra {
        log: vec![draft.clone()],
        ..crate::store::Extra::default()
    };
    s.shared
        .store
        .apply_with(None, &mut ctx, &mut extra)
        .map_err(|e| OpError::from_apply(e, "log"))?;
    Ok(())
}

async fn form_or_page(
    state: &Arc<UiState>,
    op: Option<&Operator>,
    body: Body,
) -> Result<Fields, Response> {
    read_form(body, FORM_LIMIT).await.map_err(|e| {
        error_page(
            state,
            op,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{}: {}", e.field, e.message),
        )
    })
}

// ---- login, logout

/// `POST /ui/login` (field `token`, optional `next`): a session and its cookie, or 401 with
/// no cookie. Rate-limited per client address and in all (429).
pub async fn login(State(state): Ui, req: HttpRequest) -> Response {
    let ip = auth::client_ip(req.extensions());
    let now = state.now();
    let allowed = state
        .limiter
        .lock()
        .map(|mut l| {
            l.allow(
                ip,
                now.as_millisecond(),
                state.config.login_per_ip_per_minute,
                state.config.login_global_per_minute,
            )
        })
        .unwrap_or(false);
    if !allowed {
        tracing::warn!(client = ?ip, "ui: too many login attempts");
        let mut r = page(
            &state,
            None,
            StatusCode::TOO_MANY_REQUESTS,
            "login.html",
            json!({ "title": "Log in", "next": "/ui",
                    "error": "Too many login attempts; wait a minute and try again." }),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let f = match form_or_page(&state, None, req.into_body()).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let next = f
        .get("next")
        .filter(|n| n.starts_with("/ui") && !n.starts_with("//") && !n.contains(['\r', '\n']))
        .unwrap_or("/ui")
        .to_owned();
    let Some(login) = f
        .get("token")
        .and_then(|t| auth::check_token(&state.logins, t))
    else {
        tracing::warn!(client = ?ip, "ui: a login with a wrong token was refused");
        return page(
            &state,
            None,
            StatusCode::UNAUTHORIZED,
            "login.html",
            json!({ "title": "Log in", "next": next,
                    "error": "token: this is not an operator token" }),
        );
    };
    let id = auth::new_session_id();
    let session = UiSession {
        operator: login.name.clone(),
        role: login.role.as_str().to_owned(),
        created_ms: now.as_millisecond(),
        last_seen_ms: now.as_millisecond(),
    };
    let s = state.clone();
    let id2 = id.clone();
    let idle = state.config.session_idle.as_millis() as i64;
    let max = state.config.session_max.as_millis() as i64;
    let name = login.name.clone();
    let saved = blocking(None, move || -> Result<(), OpError> {
        let now_ms = s.now().as_millisecond();
        // Expired sessions go as new ones come.
        s.shared
            .store
            .prune_ui_sessions(|x| now_ms - x.last_seen_ms < idle && now_ms - x.created_ms < max)
            .map_err(OpError::from_store)?;
        s.shared
            .store
            .put_ui_session(&id2, &session)
            .map_err(OpError::from_store)?;
        crate::store::ui::as_operator(&name, || {
            note(
                &s,
                "ui.login",
                format!("operator {name} logged in to the web page"),
            )
        })
    })
    .await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error_page(&state, None, status_of(&e), &shown_error(&e)),
        Err(r) => return r,
    }
    tracing::info!(operator = %login.name, "ui: operator logged in");
    let mut r = see_other(&next);
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&id, state.config.cookie_secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /ui/logout`: the session ends on the server and in the browser.
pub async fn logout(State(state): Ui, Extension(op): Extension<Operator>) -> Response {
    let s = state.clone();
    let o = op.clone();
    let _ = blocking(Some(&op), move || {
        if let Err(e) = s.shared.store.remove_ui_session(&o.session) {
            tracing::error!(error = %e, "ui: removing a session failed");
        }
        if let Err(e) = note(&s, "ui.logout", format!("operator {} logged out", o.name)) {
            tracing::error!(error = %e.message, "ui: logging a logout failed");
        }
    })
    .await;
    let mut r = see_other("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie(state.config.cookie_secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---- a domain

fn domain_of(name: &str) -> Result<DomainName, OpError> {
    DomainName::parse_input(name).map_err(|e| OpError::invalid("domain", e.0))
}

/// Runs a domain action; on success 303 to the domain page with `done`, on refusal the page
/// again with the error.
async fn domain_action(
    state: Ui,
    op: Operator,
    name: String,
    body: Body,
    done: &'static str,
    act: impl FnOnce(&UiState, &DomainName, &Fields) -> Result<(), OpError> + Send + 'static,
) -> Response {
    let State(state) = state;
    let f = match form_or_page(&state, Some(&op), body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let name = domain_of(&name)?;
        match act(s, &name, &f) {
            Ok(()) => Ok(see_other(&format!(
                "/ui/domains/{}?done={done}",
                enc(name.as_str())
            ))),
            Err(e) if e.kind == operations::OpErrorKind::Internal => Err(e),
            Err(e) => domain_page(
                s,
                &o,
                &name,
                Value::Null,
                Value::String(shown_error(&e)),
                status_of(&e),
            ),
        }
    })
    .await
}

fn open_request(s: &UiState, name: &DomainName) -> Result<RequestId, OpError> {
    let d = s
        .shared
        .store
        .domain(name)
        .map_err(OpError::from_store)?
        .ok_or_else(|| OpError::not_found("domain", format!("domain {name} has no order")))?;
    d.open_request.ok_or_else(|| {
        OpError::conflict(
            "domain",
            format!(
                "domain {name} has no request to retry ({})",
                d.status.as_str()
            ),
        )
    })
}

/// `POST /ui/domains/{name}/retry`: sends the domain's open request again.
pub async fn domain_retry(
    state: Ui,
    Extension(op): Extension<Operator>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    domain_action(state, op, name, body, "retried", |s, name, f| {
        f.only(&[]).map_err(field_err)?;
        let id = open_request(s, name)?;
        operations::retry(s.shared.ops(), id).map(|_| ())
    })
    .await
}

/// `POST /ui/domains/{name}/renew` (`years`).
pub async fn renew(
    state: Ui,
    Extension(op): Extension<Operator>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    domain_action(state, op, name, body, "renewed", |s, name, f| {
        f.only(&["years"]).map_err(field_err)?;
        let years = f.number("years", 1, 10, 1).map_err(field_err)? as u8;
        operations::apply_now(
            s.shared.ops(),
            Event::Renew {
                domain: name.clone(),
                years,
                actor: Actor::Operator,
            },
            "domain",
        )
        .map(|_| ())
    })
    .await
}

/// `POST /ui/domains/{name}/resolve` (`outcome`, `expires`, `note` required).
pub async fn resolve(
    state: Ui,
    Extension(op): Extension<Operator>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    domain_action(state, op, name, body, "resolved", |s, name, f| {
        f.only(&["outcome", "expires", "note"]).map_err(field_err)?;
        let expires = f.opt_date("expires").map_err(field_err)?;
        let outcome = match f.get("outcome") {
            Some("registered") => Resolution::Registered { expires },
            Some("error") if expires.is_some() => {
                return Err(OpError::invalid(
                    "expires",
                    "only goes with outcome \"registered\"",
                ));
            }
            Some("error") => Resolution::Error,
            Some(other) => {
                return Err(OpError::invalid(
                    "outcome",
                    format!("{other:?}: expected \"registered\" or \"error\""),
                ));
            }
            None => return Err(OpError::invalid("outcome", "is required")),
        };
        let note = f.text("note", 1000).map_err(field_err)?;
        operations::apply_now(
            s.shared.ops(),
            Event::Resolve {
                domain: name.clone(),
                outcome,
                note,
            },
            "domain",
        )
        .map(|_| ())
    })
    .await
}

/// `POST /ui/domains/{name}/cancel` (`note`).
pub async fn cancel(
    state: Ui,
    Extension(op): Extension<Operator>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    domain_action(state, op, name, body, "cancelled", |s, name, f| {
        f.only(&["note"]).map_err(field_err)?;
        let note = f.opt_text("note", 1000).map_err(field_err)?;
        operations::apply_now(
            s.shared.ops(),
            Event::Cancel {
                domain: name.clone(),
                note,
            },
            "domain",
        )
        .map(|_| ())
    })
    .await
}

/// `POST /ui/domains/bulk-retry` (`domain` repeated, `count`): retries each listed domain that
/// is still in Error; the count confirmed must match the list.
pub async fn bulk_retry(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    body: Body,
) -> Response {
    let f = match form_or_page(&state, Some(&op), body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    run(&state, Some(&op), move |s| {
        f.only(&["domain", "count"]).map_err(field_err)?;
        let names = f.all("domain");
        let count = f.number("count", 0, 1_000_000, 0).map_err(field_err)? as usize;
        if names.is_empty() || count != names.len() {
            return Err(OpError::invalid(
                "count",
                format!(
                    "the confirmation was for {count} domains but {} were sent; go back to the list",
                    names.len()
                ),
            ));
        }
        let mut done = 0;
        let mut refused = Vec::new();
        for n in names {
            let name = domain_of(n)?;
            let d = s.shared.store.domain(&name).map_err(OpError::from_store)?;
            match d {
                Some(d) if d.status == DomainStatus::Error => {}
                _ => {
                    refused.push(format!("{}: no longer in Error", name.to_unicode()));
                    continue;
                }
            }
            match open_request(s, &name).and_then(|id| operations::retry(s.shared.ops(), id)) {
                Ok(_) => done += 1,
                Err(e) if e.kind == operations::OpErrorKind::Internal => return Err(e),
                Err(e) => refused.push(format!("{}: {}", name.to_unicode(), e.message)),
            }
        }
        if refused.is_empty() {
            Ok(see_other(&format!(
                "/ui/domains?status=Error&done=bulk-retried-{done}"
            )))
        } else {
            Err(OpError::conflict(
                "domain",
                format!("retried {done}; not retried: {}", refused.join("; ")),
            ))
        }
    })
    .await
}

// ---- a request

fn request_of(id: &str) -> Result<RequestId, OpError> {
    RequestId::parse(id).map_err(|e| OpError::invalid("request_id", e.0))
}

async fn request_action(
    state: Arc<UiState>,
    op: Operator,
    id: String,
    body: Body,
    done: &'static str,
    act: impl FnOnce(&UiState, RequestId, &Fields) -> Result<(), OpError> + Send + 'static,
) -> Response {
    let f = match form_or_page(&state, Some(&op), body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let id = request_of(&id)?;
        match act(s, id, &f) {
            Ok(()) => Ok(see_other(&format!("/ui/requests/{id}?done={done}"))),
            Err(e) if e.kind == operations::OpErrorKind::Internal => Err(e),
            Err(e) => request_page(
                s,
                &o,
                id,
                Value::Null,
                Value::String(shown_error(&e)),
                status_of(&e),
            ),
        }
    })
    .await
}

/// `POST /ui/requests/{id}/retry`: "send again" (SendUnknown: the same Message-ID).
pub async fn request_retry(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    request_action(state, op, id, body, "retried", |s, id, f| {
        f.only(&[]).map_err(field_err)?;
        operations::retry(s.shared.ops(), id).map(|_| ())
    })
    .await
}

/// `POST /ui/requests/{id}/outcome`: what the registrar answered by other means.
pub async fn outcome(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    request_action(state, op, id, body, "outcome", |s, id, f| {
        f.only(&["event", "task_id", "handle", "expires", "reason", "note"])
            .map_err(field_err)?;
        let outcome = operations::reply_outcome(
            f.get("event").unwrap_or(""),
            f.opt_text("task_id", 64).map_err(field_err)?,
            f.opt_text("handle", 64).map_err(field_err)?,
            f.opt_date("expires").map_err(field_err)?,
            f.opt_text("reason", 1000).map_err(field_err)?,
        )?;
        let note = f.text("note", 1000).map_err(field_err)?;
        operations::apply_now(
            s.shared.ops(),
            Event::RecordOutcome {
                request: id,
                outcome,
                note,
            },
            "request_id",
        )
        .map(|_| ())
    })
    .await
}

// ---- unmatched

/// `POST /ui/unmatched/assign`: ties the message to the request (as previewed).
pub async fn assign(State(state): Ui, Extension(op): Extension<Operator>, body: Body) -> Response {
    let f = match form_or_page(&state, Some(&op), body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let input = match pages::read_assign(&f) {
            Ok(i) => i,
            Err(e) => {
                let key = f.get("key").unwrap_or("").to_owned();
                return message_page(
                    s,
                    &o,
                    &key,
                    Value::String(shown_error(&e)),
                    status_of(&e),
                    &f,
                );
            }
        };
        match operations::assign(
            s.shared.ops(),
            &input.key,
            input.request,
            input.outcome,
            &input.note,
        ) {
            Ok(_) => Ok(see_other("/ui/unmatched?done=assigned")),
            Err(e) if e.kind == operations::OpErrorKind::Internal => Err(e),
            Err(e) => message_page(
                s,
                &o,
                &input.key,
                Value::String(shown_error(&e)),
                status_of(&e),
                &f,
            ),
        }
    })
    .await
}

/// `POST /ui/unmatched/dismiss` (`key`, `reason` required).
pub async fn dismiss(State(state): Ui, Extension(op): Extension<Operator>, body: Body) -> Response {
    let f = match form_or_page(&state, Some(&op), body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        f.only(&["key", "reason"]).map_err(field_err)?;
        let key = f.text("key", 500).map_err(field_err)?;
        let result = f
            .text("reason", 1000)
            .map_err(field_err)
            .and_then(|reason| operations::dismiss(s.shared.ops(), &key, &reason));
        match result {
            Ok(_) => Ok(see_other("/ui/unmatched?done=dismissed")),
            Err(e) if e.kind == operations::OpErrorKind::Internal => Err(e),
            Err(e) => message_page(
                s,
                &o,
                &key,
                Value::String(shown_error(&e)),
                status_of(&e),
                &f,
            ),
        }
    })
    .await
}

// ---- rules

/// `POST /ui/rules/reload`: re-reads the rules and templates; a broken file shows its error
/// and the old rules stay (and are listed).
pub async fn reload(State(state): Ui, Extension(op): Extension<Operator>, body: Body) -> Response {
    let f = match form_or_page(&state, Some(&op), body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        f.only(&[]).map_err(field_err)?;
        match operations::reload(s.shared.ops()) {
            Ok(msg) => {
                note(
                    s,
                    "ui.reload",
                    format!("operator {} reloaded: {msg}", o.name),
                )?;
                Ok(see_other("/ui/rules?done=reloaded"))
            }
            Err(e) if e.kind == operations::OpErrorKind::Internal => Err(e),
            Err(e) => rules_page(
                s,
                &o,
                None,
                json!({ "key": "", "message": "", "subject": "" }),
                None,
                Value::Null,
                Value::String(shown_error(&e)),
                status_of(&e),
            ),
        }
    })
    .await
}

// ---- webhooks

/// `POST /ui/webhooks/{id}/replay` (`hours`, 1..=720, default 24): queues again the endpoint's
/// deliveries of the last `hours` (the same as `POST /v1/webhooks/{id}/replay`).
pub async fn replay(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let f = match form_or_page(&state, Some(&op), body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    run(&state, Some(&op), move |s| {
        f.only(&["hours"]).map_err(field_err)?;
        let hours = f.number("hours", 1, 720, 24).map_err(field_err)? as i64;
        let now = jiff::Timestamp::now();
        let since = now
            .checked_sub(jiff::SignedDuration::from_hours(hours))
            .map_err(|e| OpError::invalid("hours", e.to_string()))?;
        let (_, n) = operations::replay_endpoint(s.shared.ops(), &id, since, now)?;
        Ok(see_other(&format!("/ui/webhooks?done=replayed-{n}")))
    })
    .await
}
