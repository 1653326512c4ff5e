//! The pages (GET): they read the store and render; none of them changes anything.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::{Value, json};

use super::form::{FieldError, Fields, enc};
use super::render::{error_page, page};
use super::{Operator, Ui, UiState, blocking, shown_error, status_of};
use crate::core::{
    ClientId, Domain, DomainName, DomainStatus, LogEntry, Request, RequestId, RequestState,
};
use crate::operations::{self, OpError};
use crate::store::LogScope;
use crate::store::inbox::{InboxMessage, InboxState};

/// Rows per page of the domain list.
pub const PAGE_SIZE: usize = 50;

/// A time for people: `2027-02-01 10:00:00 UTC`.
pub fn ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How long ago: `5 min`, `3 h 2 min`, `4 d 6 h`.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let s = (now.as_second() - then.as_second()).max(0);
    let (d, h, m) = (s / 86400, (s % 86400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{s} s")
    }
}

fn st(e: crate::store::StoreError) -> OpError {
    OpError::from_store(e)
}

fn field_err(e: FieldError) -> OpError {
    OpError::invalid(e.field, e.message)
}

/// Runs `f` on a blocking thread and turns a refusal into an error page.
pub(super) async fn run(
    state: &Arc<UiState>,
    op: Option<&Operator>,
    f: impl FnOnce(&UiState) -> Result<Response, OpError> + Send + 'static,
) -> Response {
    let s = state.clone();
    match blocking(op, move || f(&s)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => error_page(state, op, status_of(&e), &shown_error(&e)),
        Err(r) => r,
    }
}

fn query(q: &Option<String>) -> Result<Fields, OpError> {
    Fields::parse(q.as_deref().unwrap_or("").as_bytes()).map_err(field_err)
}

/// What `?done=` says after an action.
fn flash(f: &Fields) -> Value {
    let Some(done) = f.get("done") else {
        return Value::Null;
    };
    let text = match done {
        "retried" => "Retried: the request is queued.".to_owned(),
        "renewed" => "Renewal ordered.".to_owned(),
        "resolved" => "Resolved by hand.".to_owned(),
        "cancelled" => "Cancelled.".to_owned(),
        "outcome" => "Outcome recorded.".to_owned(),
        "assigned" => "Assigned: the reply was applied to its request.".to_owned(),
        "dismissed" => "Dismissed.".to_owned(),
        "reloaded" => "Reloaded: the new rules and templates are in force.".to_owned(),
        other => match (
            other.strip_prefix("bulk-retried-"),
            other.strip_prefix("replayed-"),
        ) {
            (Some(n), _) if n.parse::<u64>().is_ok() => format!("Retried {n} domains."),
            (_, Some(n)) if n.parse::<u64>().is_ok() => {
                format!("Replayed {n} deliveries: they are queued again.")
            }
            _ => return Value::Null,
        },
    };
    Value::String(text)
}

// ---- login

/// `GET /ui/login`.
pub async fn login_form(State(state): Ui, RawQuery(q): RawQuery) -> Response {
    let f = Fields::parse(q.as_deref().unwrap_or("").as_bytes()).unwrap_or_default();
    let next = f
        .get("next")
        .filter(|n| n.starts_with("/ui") && !n.starts_with("//"))
        .unwrap_or("/ui");
    page(
        &state,
        None,
        StatusCode::OK,
        "login.html",
        json!({ "title": "Log in", "next": next }),
    )
}

// ---- dashboard

/// `GET /ui`: counts by status and state, what needs a human, the workers' last successes.
pub async fn dashboard(State(state): Ui, Extension(op): Extension<Operator>) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let now = s.now();
        let store = &s.shared.store;
        let c = store.counts().map_err(st)?;
        let count_of = |list: &[(String, u64)], name: &str| {
            list.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
        };
        let domains: Vec<Value> = DomainStatus::ALL
            .iter()
            .map(|d| json!({ "name": d.as_str(), "count": count_of(&c.domains, d.as_str()) }))
            .collect();
        let requests: Vec<Value> = RequestState::ALL
            .iter()
            .map(|r| json!({ "name": r.as_str(), "count": count_of(&c.requests, r.as_str()) }))
            .collect();
        // Needs attention, by reason: how many and the oldest.
        let mut attention = Vec::new();
        let errors = store
            .list_domains(Some(DomainStatus::Error), None, 100_000)
            .map_err(st)?;
        attention.push(json!({
            "reason": "domain-error", "label": "Domains in Error",
            "count": errors.len(),
            "oldest": errors.iter().map(|d| d.updated).min().map(|t| age(now, t)),
            "href": "/ui/domains?status=Error",
        }));
        attention.push(json!({
            "reason": "domain-conflict", "label": "Domains with conflicting replies",
            "count": c.conflicts, "oldest": Value::Null,
            "href": "/ui/domains?status=Registered&q=",
        }));
        for (state_, reason, label) in [
            (
                RequestState::SendUnknown,
                "request-sendunknown",
                "Requests that may not have gone out",
            ),
            (
                RequestState::TimedOut,
                "request-timedout",
                "Requests without a reply in time",
            ),
        ] {
            let rs = store.requests_in_state(state_, 100_000).map_err(st)?;
            attention.push(json!({
                "reason": reason, "label": label, "count": rs.len(),
                "oldest": rs.iter().map(|r| r.updated).min().map(|t| age(now, t)),
                "href": format!("/ui/requests?state={}", state_.as_str()),
            }));
        }
        let unmatched = store
            .inbox_in_state(InboxState::Unmatched, 100_000)
            .map_err(st)?;
        attention.push(json!({
            "reason": "unmatched", "label": "Replies no rule or request matched",
            "count": unmatched.len(),
            "oldest": unmatched.iter().map(|m| m.received).min().map(|t| age(now, t)),
            "href": "/ui/unmatched",
        }));
        let day = crate::core::today(now);
        let mut expiring = Vec::new();
        // One range of the expiry index, today..=today+30 (as the expiring report reads it),
        // not every expiry since the index began.
        let soon = store
            .domains_expiring_between(
                day,
                day.checked_add(jiff::Span::new().days(30)).unwrap_or(day),
            )
            .map_err(st)?
            .domains;
        for days in [30i64, 15, 1] {
            let until = day.checked_add(jiff::Span::new().days(days)).unwrap_or(day);
            let n = soon
                .iter()
                .filter(|d| {
                    matches!(d.status, DomainStatus::Registered | DomainStatus::Renewing)
                        && d.expires.is_some_and(|e| e >= day && e <= until)
                })
                .count();
            let before = until
                .checked_add(jiff::Span::new().days(1))
                .unwrap_or(until);
            expiring.push(json!({
                "days": days, "count": n,
                "href": format!("/ui/domains?status=Registered&expires_before={before}"),
            }));
        }
        let ms = |v: i64| {
            (v > 0)
                .then(|| Timestamp::from_millisecond(v).ok().map(ts))
                .flatten()
        };
        let h = &s.shared.health;
        let rules = operations::rules(s.shared.ops()).unwrap_or_default();
        page(
            s,
            Some(&o),
            StatusCode::OK,
            "dashboard.html",
            json!({
                "title": "Dashboard",
                "refresh": 20,
                "now": ts(now),
                "domains": domains,
                "requests": requests,
                "attention": attention,
                "unmatched": c.unmatched,
                "outbox": c.outbox,
                "awaiting_reply": c.awaiting_reply,
                "last_smtp": ms(h.transport_last_ok_ms.load(Ordering::Relaxed)),
                "last_imap": ms(h.source_last_ok_ms.load(Ordering::Relaxed)),
                "rules_version": rules_version(&rules),
                "expiring": expiring,
            }),
        )
        .pipe(Ok)
    })
    .await
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

/// "12 rules, a1b2c3d4": the count and a fingerprint of the names and lines in force.
fn rules_version(rules: &[operations::RuleInfo]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for r in rules {
        h.update(r.name.as_bytes());
        h.update([0]);
        h.update(r.line.to_be_bytes());
    }
    let d = h.finalize();
    format!(
        "{} rules, {:02x}{:02x}{:02x}{:02x}",
        rules.len(),
        d[0],
        d[1],
        d[2],
        d[3]
    )
}

// ---- domains

/// The domain list's filters, as in the query string.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    status: Option<DomainStatus>,
    client: Option<ClientId>,
    q: Option<String>,
    expires_before: Option<Date>,
    page: usize,
}

impl Filter {
    fn read(f: &Fields, extra: &[&str]) -> Result<Filter, OpError> {
        let mut allowed = vec!["status", "client", "q", "expires_before", "page", "done"];
        allowed.extend_from_slice(extra);
        f.only(&allowed).map_err(field_err)?;
        let status = match f.get("status") {
            None => None,
            Some(s) => Some(DomainStatus::parse(s).ok_or_else(|| {
                let all: Vec<&str> = DomainStatus::ALL.iter().map(|s| s.as_str()).collect();
                OpError::invalid(
                    "status",
                    format!("{s:?}: expected one of {}", all.join(", ")),
                )
            })?),
        };
        let client = match f.get("client") {
            None => None,
            Some(c) => Some(ClientId::parse(c).map_err(|e| OpError::invalid("client", e.0))?),
        };
        let q = f
            .opt_text("q", 300)
            .map_err(field_err)?
            .map(|s| s.to_lowercase());
        let expires_before = f.opt_date("expires_before").map_err(field_err)?;
        let page = f.number("page", 1, 1_000_000, 1).map_err(field_err)? as usize;
        Ok(Filter {
            status,
            client,
            q,
            expires_before,
            page,
        })
    }

    /// The filter as query pairs (without the page).
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(s) = self.status {
            v.push(("status", s.as_str().to_owned()));
        }
        if let Some(c) = &self.client {
            v.push(("client", c.as_str().to_owned()));
        }
        if let Some(q) = &self.q {
            v.push(("q", q.clone()));
        }
        if let Some(d) = self.expires_before {
            v.push(("expires_before", d.to_string()));
        }
        v
    }

    fn query(&self, page: Option<usize>) -> String {
        let mut parts: Vec<String> = self
            .pairs()
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        if let Some(p) = page {
            parts.push(format!("page={p}"));
        }
        parts.join("&")
    }

    fn matches(&self, d: &Domain) -> bool {
        if self.status.is_some_and(|s| d.status != s) {
            return false;
        }
        if self.client.as_ref().is_some_and(|c| &d.client_id != c) {
            return false;
        }
        if let Some(before) = self.expires_before
            && d.expires.is_none_or(|e| e >= before)
        {
            return false;
        }
        if let Some(q) = &self.q {
            let ascii = d.name.as_str().to_lowercase();
            let uni = d.name.to_unicode().to_lowercase();
            if !ascii.contains(q.as_str()) && !uni.contains(q.as_str()) {
                return false;
            }
        }
        true
    }

    /// Every domain the filter selects, in name (or expiry) order.
    pub fn select(&self, s: &UiState) -> Result<Vec<Domain>, OpError> {
        let store = &s.shared.store;
        let base = match self.expires_before {
            Some(d) => store.domains_expiring_by(d).map_err(st)?,
            None => store
                .list_domains(self.status, self.client.as_ref(), usize::MAX)
                .map_err(st)?,
        };
        Ok(base.into_iter().filter(|d| self.matches(d)).collect())
    }
}

fn domain_row(d: &Domain) -> Value {
    json!({
        "name": d.name.as_str(),
        "unicode": d.name.to_unicode(),
        "href": format!("/ui/domains/{}", enc(d.name.as_str())),
        "status": d.status.as_str(),
        "phase": format!("{:?}", d.phase),
        "expires": d.expires.map(|e| e.to_string()),
        "client": d.client_id.as_str(),
    })
}

/// `GET /ui/domains?status=&client=&q=&expires_before=&page=`.
pub async fn domains(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        let filter = Filter::read(&f, &[])?;
        let all = filter.select(s)?;
        let total = all.len();
        let errors = all
            .iter()
            .filter(|d| d.status == DomainStatus::Error)
            .count();
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let p = filter.page.min(pages);
        let rows: Vec<Value> = all
            .iter()
            .skip((p - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(domain_row)
            .collect();
        let statuses: Vec<&str> = DomainStatus::ALL.iter().map(|s| s.as_str()).collect();
        Ok(page(
            s,
            Some(&o),
            StatusCode::OK,
            "domains.html",
            json!({
                "title": "Domains",
                "flash": flash(&f),
                "statuses": statuses,
                "f": {
                    "status": filter.status.map(|s| s.as_str()).unwrap_or(""),
                    "client": filter.client.as_ref().map(|c| c.as_str()).unwrap_or(""),
                    "q": filter.q.clone().unwrap_or_default(),
                    "expires_before": filter.expires_before.map(|d| d.to_string()).unwrap_or_default(),
                },
                "hidden": filter.pairs().iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                "total": total,
                "errors": errors,
                "rows": rows,
                "page": p,
                "pages": pages,
                "prev": (p > 1).then(|| format!("/ui/domains?{}", filter.query(Some(p - 1)))),
                "next": (p < pages).then(|| format!("/ui/domains?{}", filter.query(Some(p + 1)))),
            }),
        ))
    })
    .await
}

/// `GET /ui/domains/bulk-retry?<filters>`: how many Error domains a bulk retry would touch,
/// and the form that does it.
pub async fn bulk_confirm(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        let filter = Filter::read(&f, &[])?;
        let targets: Vec<Value> = filter
            .select(s)?
            .iter()
            .filter(|d| d.status == DomainStatus::Error)
            .map(domain_row)
            .collect();
        Ok(page(
            s,
            Some(&o),
            StatusCode::OK,
            "bulk.html",
            json!({
                "title": "Retry domains in Error",
                "count": targets.len(),
                "targets": targets,
                "back": format!("/ui/domains?{}", filter.query(None)),
            }),
        ))
    })
    .await
}

/// One step of a timeline.
fn log_step(e: &LogEntry) -> Value {
    let ev = &e.entry.evidence;
    let mut evidence = Vec::new();
    let mut add = |label: &str, v: &Option<String>| {
        if let Some(v) = v {
            evidence.push(json!({ "label": label, "text": v }));
        }
    };
    add("Request as sent", &ev.message_copy);
    add("Rule", &ev.rule);
    add("Correlation", &ev.correlation);
    add("Task id", &ev.task_id);
    add("Message-ID", &ev.message_id);
    add("Mail server's answer", &ev.server_reply);
    add("Error", &ev.error);
    add("Authentication", &ev.auth);
    add("Note", &ev.note);
    json!({
        "kind": "log",
        "at": ts(e.entry.at),
        "iso": e.entry.at.to_string(),
        "sort": e.entry.at.as_millisecond(),
        "seq": e.seq,
        "actor": e.by.clone().unwrap_or_else(|| e.entry.actor.as_str().to_owned()),
        "action": e.entry.action,
        "text": e.entry.message,
        "status": match (&e.entry.status_before, &e.entry.status_after) {
            (Some(a), Some(b)) => Some(format!("{a} → {b}")),
            (None, Some(b)) => Some(format!("→ {b}")),
            _ => None,
        },
        "request": e.entry.request.or(ev.request_id).map(|r| r.to_string()),
        "evidence": evidence,
    })
}

fn reply_step(s: &UiState, m: &InboxMessage) -> Value {
    let ops = s.shared.ops();
    let m = operations::masked_record(ops, m);
    let text = match s.shared.store.raw_message(&m.key) {
        Ok(Some(raw)) => operations::shown_message(ops, &raw).text,
        Ok(None) => "(the raw message was removed after its retention period)".to_owned(),
        Err(e) => {
            tracing::error!(error = %e, "ui: reading a stored message failed");
            "(the message could not be read)".to_owned()
        }
    };
    let mut evidence = vec![json!({ "label": "Decoded reply", "text": text })];
    if let Some(r) = &m.rule {
        evidence.push(json!({ "label": "Rule", "text": r }));
    }
    if let Some(r) = &m.reason {
        evidence.push(json!({ "label": "Why", "text": r }));
    }
    json!({
        "kind": "reply",
        "at": ts(m.received),
        "iso": m.received.to_string(),
        "sort": m.received.as_millisecond(),
        "seq": 0,
        "actor": "registrar",
        "action": format!("reply.{}", m.state.as_str().to_lowercase()),
        "text": format!("Reply from {}: {}", m.from.clone().unwrap_or_default(), m.subject.clone().unwrap_or_default()),
        "status": Value::Null,
        "request": m.request.map(|r| r.to_string()),
        "href": format!("/ui/unmatched/message?key={}", enc(&m.key)),
        "evidence": evidence,
    })
}

fn request_step(r: &Request) -> Value {
    json!({
        "kind": "request",
        "at": ts(r.created),
        "iso": r.created.to_string(),
        "sort": r.created.as_millisecond(),
        "seq": 0,
        "actor": "regmail",
        "action": format!("request.{}", r.kind.as_str()),
        "text": format!("Request {} ({}), now {}, {} attempt(s)", r.id, r.kind.as_str(), r.state.as_str(), r.attempts),
        "status": Value::Null,
        "request": r.id.to_string(),
        "href": format!("/ui/requests/{}", r.id),
        "evidence": [{ "label": "Message-ID", "text": r.message_id }],
    })
}

/// Stored messages tied to any of `ids`.
fn replies_of(s: &UiState, ids: &HashSet<RequestId>) -> Result<Vec<InboxMessage>, OpError> {
    Ok(s.shared
        .store
        .inbox_all(usize::MAX)
        .map_err(st)?
        .into_iter()
        .filter(|m| m.request.is_some_and(|r| ids.contains(&r)))
        .collect())
}

fn parse_domain(s: &str) -> Result<DomainName, OpError> {
    DomainName::parse_input(s).map_err(|e| OpError::invalid("domain", e.0))
}

/// `GET /ui/domains/{name}`: the domain and its whole history.
pub async fn domain(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        let name = parse_domain(&name)?;
        domain_page(s, &o, &name, flash(&f), Value::Null, StatusCode::OK)
    })
    .await
}

/// The domain page, with a flash or an error (a refused action re-renders it).
pub(super) fn domain_page(
    s: &UiState,
    o: &Operator,
    name: &DomainName,
    flash: Value,
    error: Value,
    status: StatusCode,
) -> Result<Response, OpError> {
    let store = &s.shared.store;
    let d = store
        .domain(name)
        .map_err(st)?
        .ok_or_else(|| OpError::not_found("domain", format!("domain {name} has no order")))?;
    let client = store.client(&d.client_id).map_err(st)?;
    let log = store
        .log_of(&LogScope::Domain(name.clone()), 0, 10_000)
        .map_err(st)?;
    let mut ids: HashSet<RequestId> = log
        .iter()
        .filter_map(|e| e.entry.request.or(e.entry.evidence.request_id))
        .collect();
    if let Some(r) = d.open_request {
        ids.insert(r);
    }
    let mut requests = Vec::new();
    for id in &ids {
        if let Some(r) = store.request(*id).map_err(st)? {
            requests.push(r);
        }
    }
    let replies = replies_of(s, &ids)?;
    let mut steps: Vec<Value> = log.iter().map(log_step).collect();
    steps.extend(requests.iter().map(request_step));
    steps.extend(replies.iter().map(|m| reply_step(s, m)));
    steps.sort_by_key(|v| {
        (
            v["sort"].as_i64().unwrap_or(0),
            v["seq"].as_u64().unwrap_or(0),
        )
    });
    let open = match d.open_request {
        Some(id) => store.request(id).map_err(st)?,
        None => None,
    };
    let retryable = d.status == DomainStatus::Error
        || open.as_ref().is_some_and(|r| {
            matches!(
                r.state,
                RequestState::SendUnknown | RequestState::TimedOut | RequestState::Rejected
            )
        });
    Ok(page(
        s,
        Some(o),
        status,
        "domain.html",
        json!({
            "title": d.name.to_unicode(),
            "flash": flash,
            "error": error,
            "d": {
                "name": d.name.as_str(),
                "unicode": d.name.to_unicode(),
                "path": enc(d.name.as_str()),
                "status": d.status.as_str(),
                "phase": format!("{:?}", d.phase),
                "expires": d.expires.map(|e| e.to_string()),
                "grace_ends": d.grace_ends.map(|e| e.to_string()),
                "deleted_on": d.deleted_on.map(|e| e.to_string()),
                "client": d.client_id.as_str(),
                "handle": client.as_ref().and_then(|c| c.handle.as_ref()).map(|h| h.as_str().to_owned()),
                "last_error": d.last_error,
                "years": d.years,
                "auto_renew": d.auto_renew,
                "paid": d.paid,
                "order_id": d.order_id,
                "open_request": open.as_ref().map(|r| json!({
                    "id": r.id.to_string(), "state": r.state.as_str(), "kind": r.kind.as_str(),
                })),
            },
            "retryable": retryable,
            "timeline": steps,
        }),
    ))
}

// ---- requests

fn parse_state(s: &str) -> Result<RequestState, OpError> {
    RequestState::ALL
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            let all: Vec<&str> = RequestState::ALL.iter().map(|s| s.as_str()).collect();
            OpError::invalid(
                "state",
                format!("{s:?}: expected one of {}", all.join(", ")),
            )
        })
}

fn request_row(now: Timestamp, r: &Request) -> Value {
    json!({
        "id": r.id.to_string(),
        "href": format!("/ui/requests/{}", r.id),
        "state": r.state.as_str(),
        "kind": r.kind.as_str(),
        "domain": r.domain.as_ref().map(|d| d.to_unicode()),
        "client": r.client_id.as_str(),
        "age": age(now, r.created),
        "attempts": r.attempts,
    })
}

/// `GET /ui/requests?state=`.
pub async fn requests(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        f.only(&["state"]).map_err(field_err)?;
        let now = s.now();
        let chosen = f.get("state").map(parse_state).transpose()?;
        let states: Vec<RequestState> = match chosen {
            Some(x) => vec![x],
            None => RequestState::ALL.to_vec(),
        };
        let mut rows = Vec::new();
        for x in states {
            for r in s.shared.store.requests_in_state(x, 200).map_err(st)? {
                rows.push(request_row(now, &r));
            }
        }
        let all: Vec<&str> = RequestState::ALL.iter().map(|s| s.as_str()).collect();
        Ok(page(
            s,
            Some(&o),
            StatusCode::OK,
            "requests.html",
            json!({
                "title": match chosen { Some(x) => format!("Requests: {}", x.as_str()), None => "Requests".to_owned() },
                "states": all,
                "chosen": chosen.map(|x| x.as_str()).unwrap_or(""),
                "rows": rows,
            }),
        ))
    })
    .await
}

/// `GET /ui/requests/{id}`.
pub async fn request(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        let id = RequestId::parse(&id).map_err(|e| OpError::invalid("request_id", e.0))?;
        request_page(s, &o, id, flash(&f), Value::Null, StatusCode::OK)
    })
    .await
}

/// The request page (a refused action re-renders it with the error).
pub(super) fn request_page(
    s: &UiState,
    o: &Operator,
    id: RequestId,
    flash: Value,
    error: Value,
    status: StatusCode,
) -> Result<Response, OpError> {
    let now = s.now();
    let store = &s.shared.store;
    let r = store
        .request(id)
        .map_err(st)?
        .ok_or_else(|| OpError::not_found("request_id", format!("request {id} does not exist")))?;
    let log = store
        .log_of(&LogScope::Request(id), 0, 10_000)
        .map_err(st)?;
    let copy = log
        .iter()
        .rev()
        .find_map(|e| e.entry.evidence.message_copy.clone());
    let replies: Vec<Value> = replies_of(s, &HashSet::from([id]))?
        .iter()
        .map(|m| reply_step(s, m))
        .collect();
    Ok(page(
        s,
        Some(o),
        status,
        "request.html",
        json!({
            "title": format!("Request {}", r.id),
            "flash": flash,
            "error": error,
            "r": {
                "id": r.id.to_string(),
                "state": r.state.as_str(),
                "kind": r.kind.as_str(),
                "domain": r.domain.as_ref().map(|d| d.to_unicode()),
                "domain_href": r.domain.as_ref().map(|d| format!("/ui/domains/{}", enc(d.as_str()))),
                "client": r.client_id.as_str(),
                "attempts": r.attempts,
                "message_id": r.message_id,
                "deadline": r.reply_deadline.map(ts),
                "age": age(now, r.created),
                "created": ts(r.created),
                "task_id": r.task_id,
                "last_error": r.last_error,
                "retry_of": r.retry_of.map(|x| x.to_string()),
                "send_unknown": r.state == RequestState::SendUnknown,
                "retryable": matches!(r.state, RequestState::SendUnknown | RequestState::TimedOut | RequestState::Rejected),
                "settled": r.state.is_settled(),
            },
            "copy": copy,
            "log": log.iter().map(log_step).collect::<Vec<_>>(),
            "replies": replies,
        }),
    ))
}

// ---- unmatched

/// `GET /ui/unmatched`.
pub async fn unmatched(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        f.only(&["done"]).map_err(field_err)?;
        let ops = s.shared.ops();
        let now = s.now();
        let rows: Vec<Value> = s
            .shared
            .store
            .inbox_in_state(InboxState::Unmatched, 10_000)
            .map_err(st)?
            .iter()
            .map(|m| {
                let m = operations::masked_record(ops, m);
                json!({
                    "key": m.key,
                    "href": format!("/ui/unmatched/message?key={}", enc(&m.key)),
                    "from": m.from,
                    "subject": m.subject,
                    "reason": m.reason,
                    "received": ts(m.received),
                    "age": age(now, m.received),
                })
            })
            .collect();
        Ok(page(
            s,
            Some(&o),
            StatusCode::OK,
            "unmatched.html",
            json!({ "title": "Unmatched replies", "flash": flash(&f), "rows": rows }),
        ))
    })
    .await
}

/// Open requests that this message may answer: the one it correlated to, then those whose
/// domain the message names, then the other open ones (suggestions only).
fn candidates(s: &UiState, m: &InboxMessage, text: &str) -> Result<Vec<Value>, OpError> {
    let store = &s.shared.store;
    let hay = format!("{}\n{}", m.subject.clone().unwrap_or_default(), text).to_lowercase();
    let mut open = Vec::new();
    for x in [
        RequestState::Sent,
        RequestState::Acknowledged,
        RequestState::SendUnknown,
        RequestState::TimedOut,
    ] {
        open.extend(store.requests_in_state(x, 10_000).map_err(st)?);
    }
    let score = |r: &Request| -> u8 {
        if m.request == Some(r.id) {
            return 0;
        }
        if hay.contains(&r.id.token().to_lowercase()) {
            return 1;
        }
        match &r.domain {
            Some(d)
                if hay.contains(&d.as_str().to_lowercase())
                    || hay.contains(&d.to_unicode().to_lowercase()) =>
            {
                2
            }
            _ => 3,
        }
    };
    let mut ranked: Vec<(u8, Request)> = open.into_iter().map(|r| (score(&r), r)).collect();
    ranked.sort_by_key(|(sc, r)| (*sc, r.created));
    Ok(ranked
        .into_iter()
        .take(10)
        .map(|(sc, r)| {
            json!({
                "id": r.id.to_string(),
                "href": format!("/ui/requests/{}", r.id),
                "kind": r.kind.as_str(),
                "state": r.state.as_str(),
                "domain": r.domain.as_ref().map(|d| d.to_unicode()),
                "why": match sc { 0 => "the message's own correlation", 1 => "its subject token is in the message", 2 => "its domain is named in the message", _ => "open request" },
            })
        })
        .collect())
}

/// `GET /ui/unmatched/message?key=`.
pub async fn message(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        f.only(&["key"]).map_err(field_err)?;
        let key = f.text("key", 500).map_err(field_err)?;
        message_page(s, &o, &key, Value::Null, StatusCode::OK, &Fields::default())
    })
    .await
}

/// The message page (a refused dismiss or assign re-renders it with the error and the
/// operator's input).
pub(super) fn message_page(
    s: &UiState,
    o: &Operator,
    key: &str,
    error: Value,
    status: StatusCode,
    input: &Fields,
) -> Result<Response, OpError> {
    let ops = s.shared.ops();
    let rec = operations::find_message(ops, key)?;
    let m = operations::masked_record(ops, &rec);
    let raw = s.shared.store.raw_message(key).map_err(st)?;
    let shown = raw
        .as_deref()
        .map(|r| operations::shown_message(ops, r))
        .unwrap_or_default();
    let cands = candidates(s, &m, &shown.text)?;
    let first = cands
        .first()
        .and_then(|c| c["id"].as_str())
        .unwrap_or("")
        .to_owned();
    Ok(page(
        s,
        Some(o),
        status,
        "message.html",
        json!({
            "title": "Message",
            "error": error,
            "m": {
                "key": m.key,
                "state": m.state.as_str(),
                "from": m.from,
                "subject": m.subject,
                "reason": m.reason,
                "received": ts(m.received),
                "rule": m.rule,
                "assignable": matches!(m.state, InboxState::Unmatched | InboxState::Ignored | InboxState::Quarantined),
                "dismissable": m.state == InboxState::Unmatched,
                "raw_removed": raw.is_none(),
            },
            "headers": shown.headers.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
            "text": shown.text,
            "candidates": cands,
            "rule_href": format!("/ui/rules?key={}", enc(key)),
            "input": {
                "request_id": input.get("request_id").unwrap_or(&first),
                "event": input.get("event").unwrap_or(""),
                "note": input.raw("note"),
                "reason": input.raw("reason"),
            },
        }),
    ))
}

/// The assign form's fields, read and checked.
pub(super) struct AssignInput {
    pub key: String,
    pub request: RequestId,
    pub outcome: Option<crate::core::ReplyOutcome>,
    pub note: String,
}

pub(super) fn read_assign(f: &Fields) -> Result<AssignInput, OpError> {
    f.only(&[
        "key",
        "request_id",
        "event",
        "task_id",
        "handle",
        "expires",
        "reason",
        "note",
    ])
    .map_err(field_err)?;
    let key = f.text("key", 500).map_err(field_err)?;
    let request = RequestId::parse(&f.text("request_id", 64).map_err(field_err)?)
        .map_err(|e| OpError::invalid("request_id", e.0))?;
    let outcome = match f.get("event") {
        None => None,
        Some(ev) => Some(operations::reply_outcome(
            ev,
            f.opt_text("task_id", 64).map_err(field_err)?,
            f.opt_text("handle", 64).map_err(field_err)?,
            f.opt_date("expires").map_err(field_err)?,
            f.opt_text("reason", 1000).map_err(field_err)?,
        )?),
    };
    let note = f.text("note", 1000).map_err(field_err)?;
    Ok(AssignInput {
        key,
        request,
        outcome,
        note,
    })
}

fn describe_event(e: &crate::core::Event) -> String {
    use crate::core::{Event, ReplyOutcome};
    let (request, outcome, how) = match e {
        Event::Reply {
            request, outcome, ..
        } => (request, outcome, "as the registrar's reply"),
        Event::RecordOutcome {
            request, outcome, ..
        } => (request, outcome, "as the operator's decision"),
        other => return format!("{other:?}"),
    };
    let what = match outcome {
        ReplyOutcome::Acknowledged { task_id } => format!(
            "acknowledged (queued at the registrar{})",
            task_id
                .as_ref()
                .map(|t| format!(" as task {t}"))
                .unwrap_or_default()
        ),
        ReplyOutcome::Completed { handle, expires } => format!(
            "completed{}{}",
            handle
                .as_ref()
                .map(|h| format!(", handle {}", h.as_str()))
                .unwrap_or_default(),
            expires
                .map(|d| format!(", expires {d}"))
                .unwrap_or_default()
        ),
        ReplyOutcome::Rejected { reason } => format!("rejected: {reason}"),
    };
    format!("Request {request} is {what}, {how}.")
}

fn effect_of(e: &crate::core::Event, r: &Request) -> String {
    use crate::core::{Event, ReplyOutcome, RequestKind};
    let outcome = match e {
        Event::Reply { outcome, .. } | Event::RecordOutcome { outcome, .. } => outcome,
        _ => return String::new(),
    };
    let subject = match (&r.kind, &r.domain) {
        (RequestKind::ClientRegistration, _) => format!("client {}", r.client_id.as_str()),
        (_, Some(d)) => format!("domain {}", d.to_unicode()),
        (_, None) => "its subject".to_owned(),
    };
    match (outcome, r.kind) {
        (ReplyOutcome::Acknowledged { .. }, _) => {
            format!(
                "The request becomes Acknowledged; {subject} keeps waiting for the final answer."
            )
        }
        (ReplyOutcome::Completed { .. }, RequestKind::ClientRegistration) => {
            format!(
                "The request becomes Completed; {subject} becomes Registered and its waiting domains go ahead."
            )
        }
        (ReplyOutcome::Completed { .. }, _) => {
            format!("The request becomes Completed; {subject} becomes Registered.")
        }
        (ReplyOutcome::Rejected { .. }, _) => {
            format!("The request becomes Rejected; {subject} goes to Error.")
        }
    }
}

/// `GET /ui/unmatched/assign?...`: what assigning would do (nothing is changed), and the form
/// that does it.
pub async fn assign_preview(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        let input = match read_assign(&f) {
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
        let ops = s.shared.ops();
        let result = operations::assign_verdict(
            ops,
            &input.key,
            input.request,
            input.outcome.clone(),
            &input.note,
        );
        let (_, verdict) = match result {
            Ok(v) => v,
            Err(e) => {
                return message_page(
                    s,
                    &o,
                    &input.key,
                    Value::String(shown_error(&e)),
                    status_of(&e),
                    &f,
                );
            }
        };
        let r = s
            .shared
            .store
            .request(input.request)
            .map_err(st)?
            .ok_or_else(|| OpError::invalid("request_id", "no such request"))?;
        let (what, effect) = match &verdict.event {
            Some(e) => (describe_event(e), effect_of(e, &r)),
            None => ("Nothing would change.".to_owned(), String::new()),
        };
        let hidden: Vec<Value> =
            f.0.iter()
                .map(|(k, v)| json!({ "name": k, "value": v }))
                .collect();
        Ok(page(
            s,
            Some(&o),
            StatusCode::OK,
            "assign.html",
            json!({
                "title": "Assign a reply",
                "key": input.key,
                "back": format!("/ui/unmatched/message?key={}", enc(&input.key)),
                "request": {
                    "id": r.id.to_string(), "kind": r.kind.as_str(), "state": r.state.as_str(),
                    "domain": r.domain.as_ref().map(|d| d.to_unicode()),
                    "href": format!("/ui/requests/{}", r.id),
                },
                "what": what,
                "effect": effect,
                "rule": verdict.rule.as_ref().map(|m| m.rule.clone()),
                "note": input.note,
                "hidden": hidden,
            }),
        ))
    })
    .await
}

// ---- rules

/// A pasted text as a message: a whole e-mail when it starts with a header line, else the body
/// of a message with `subject` (UTF-8).
pub fn pasted_message(text: &str, subject: &str) -> Vec<u8> {
    let first = text.lines().next().unwrap_or("");
    let looks_like_header = first.split_once(':').is_some_and(|(name, _)| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if looks_like_header {
        return text
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .into_bytes();
    }
    let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
    let encoded = if subject.is_ascii() {
        subject
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            String::from_utf8(crate::redact::base64_encode(subject.as_bytes())).unwrap_or_default()
        )
    };
    format!(
        "From: pasted@rules-tester.invalid\r\nSubject: {encoded}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}",
        text.replace("\r\n", "\n").replace('\n', "\r\n")
    )
    .into_bytes()
}

/// A TOML `[[rule]]` to copy: the message's subject and first lines as (escaped) literal
/// patterns, for the operator to trim.
fn rule_snippet(subject: &str, text: &str) -> String {
    let lit = |s: &str| regex::escape(s.trim()).replace('\'', ".");
    let body_line = text
        .lines()
        .map(str::trim)
        .find(|l| l.chars().count() >= 8)
        .unwrap_or("")
        .chars()
        .take(80)
        .collect::<String>();
    let mut out = String::from(
        "[[rule]]\nname    = \"new-wording\"          # unique\nevent   = \"completed\"            # acknowledged | completed | rejected | ignore\n",
    );
    if !subject.trim().is_empty() {
        out.push_str(&format!("subject = '(?i){}'\n", lit(subject)));
    }
    if !body_line.is_empty() {
        out.push_str(&format!("body    = '(?i){}'\n", lit(&body_line)));
    }
    out.push_str("# capture values with named groups: (?P<domain>...), (?P<handle>...), (?P<task_id>...), (?P<expires>...), (?P<reason>...)\n");
    out
}

fn test_view(t: &operations::RulesTest) -> Value {
    json!({
        "outcome": t.outcome,
        "decision": t.decision,
        "reason": t.reason,
        "rule": t.rule,
        "event": t.event,
        "captures": t.captures.as_ref().map(|c| c.iter().filter(|(_, v)| v.is_some()).map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()),
        "rejected": t.rejected_captures.as_ref().map(|v| v.iter().map(|c| json!({"rule": c.rule, "capture": c.capture, "value": c.value, "reason": c.reason})).collect::<Vec<_>>()).unwrap_or_default(),
        "request": t.request.map(|r| r.to_string()),
        "request_href": t.request.map(|r| format!("/ui/requests/{r}")),
        "correlation": t.correlation,
        "from": t.from,
        "subject": t.subject,
    })
}

/// The rules page: the rules with their hits, the tester (with `test` when one ran), the
/// reload form.
#[allow(clippy::too_many_arguments)] // one page, several optional parts
pub(super) fn rules_page(
    s: &UiState,
    o: &Operator,
    test: Option<Value>,
    input: Value,
    snippet: Option<String>,
    flash: Value,
    error: Value,
    status: StatusCode,
) -> Result<Response, OpError> {
    let ops = s.shared.ops();
    let rules = operations::rules(ops)?;
    let inbox = s.shared.store.inbox_all(usize::MAX).map_err(st)?;
    let mut hits: BTreeMap<String, (u64, Timestamp)> = BTreeMap::new();
    for m in &inbox {
        if let Some(r) = &m.rule {
            let e = hits.entry(r.clone()).or_insert((0, m.received));
            e.0 += 1;
            e.1 = e.1.max(m.received);
        }
    }
    let stored: Vec<Value> = inbox
        .iter()
        .rev()
        .take(200)
        .map(|m| {
            let m = operations::masked_record(ops, m);
            json!({
                "key": m.key,
                "label": format!("{} · {} · {}", ts(m.received), m.state.as_str(), m.subject.clone().unwrap_or_default()),
            })
        })
        .collect();
    let rows: Vec<Value> = rules
        .iter()
        .map(|r| {
            let h = hits.get(&r.name);
            json!({
                "name": r.name,
                "event": r.event,
                "kinds": if r.kinds.is_empty() { "any".to_owned() } else { r.kinds.join(", ") },
                "line": r.line,
                "hits": h.map_or(0, |h| h.0),
                "last_hit": h.map(|h| ts(h.1)),
            })
        })
        .collect();
    Ok(page(
        s,
        Some(o),
        status,
        "rules.html",
        json!({
            "title": "Reply rules",
            "flash": flash,
            "error": error,
            "rules": rows,
            "version": rules_version(&rules),
            "stored": stored,
            "test": test,
            "input": input,
            "snippet": snippet,
        }),
    ))
}

/// `GET /ui/rules[?key=K]`: with a key, the stored message is tested at once (read only).
pub async fn rules(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        f.only(&["key", "done"]).map_err(field_err)?;
        let ops = s.shared.ops();
        let (test, snippet) = match f.get("key") {
            Some(key) => {
                let rec = operations::find_message(ops, key)?;
                let raw = s
                    .shared
                    .store
                    .raw_message(key)
                    .map_err(st)?
                    .ok_or_else(|| {
                        OpError::conflict(
                            "key",
                            "the raw message was removed after its retention period",
                        )
                    })?;
                let t = operations::test_rules(ops, &raw)?;
                let shown = operations::shown_message(ops, &raw);
                let subject = operations::masked_record(ops, &rec)
                    .subject
                    .unwrap_or_default();
                let snippet = (rec.state == InboxState::Unmatched || t.rule.is_none())
                    .then(|| rule_snippet(&subject, &shown.text));
                (Some(test_view(&t)), snippet)
            }
            None => (None, None),
        };
        rules_page(
            s,
            &o,
            test,
            json!({ "key": f.get("key").unwrap_or(""), "message": "", "subject": "" }),
            snippet,
            flash(&f),
            Value::Null,
            StatusCode::OK,
        )
    })
    .await
}

/// `POST /ui/rules/test` (message + subject, or key): the tester. Changes nothing, so viewers
/// may use it too.
pub async fn rules_test(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    body: Body,
) -> Response {
    let f = match super::read_form(body, 8 << 20).await {
        Ok(f) => f,
        Err(e) => {
            return error_page(
                &state,
                Some(&op),
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{}: {}", e.field, e.message),
            );
        }
    };
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        f.only(&["message", "subject", "key"]).map_err(field_err)?;
        let ops = s.shared.ops();
        let message = f.raw("message");
        let (raw, input) = if !message.trim().is_empty() {
            (
                pasted_message(message, f.raw("subject")),
                json!({ "key": "", "message": message, "subject": f.raw("subject") }),
            )
        } else if let Some(key) = f.get("key") {
            let raw = s
                .shared
                .store
                .raw_message(key)
                .map_err(st)?
                .ok_or_else(|| OpError::not_found("key", format!("no stored message {key:?}")))?;
            (raw, json!({ "key": key, "message": "", "subject": "" }))
        } else {
            return rules_page(
                s,
                &o,
                None,
                json!({ "key": "", "message": "", "subject": "" }),
                None,
                Value::Null,
                Value::String("message: paste a message or pick a stored one".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        };
        let t = operations::test_rules(ops, &raw)?;
        rules_page(
            s,
            &o,
            Some(test_view(&t)),
            input,
            None,
            Value::Null,
            Value::Null,
            StatusCode::OK,
        )
    })
    .await
}

// ---- notices, webhooks, about

/// `GET /ui/notices`: the latest notices and deliveries.
pub async fn notices(State(state): Ui, Extension(op): Extension<Operator>) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let store = &s.shared.store;
        let notices = store.notices_after(0, usize::MAX).map_err(st)?;
        let rows: Vec<Value> = notices
            .iter()
            .rev()
            .take(100)
            .map(|n| {
                json!({
                    "id": n.id, "kind": n.kind, "domain": n.domain, "client": n.client,
                    "created": ts(n.created),
                })
            })
            .collect();
        let deliveries: Vec<Value> = store
            .all_deliveries()
            .map_err(st)?
            .iter()
            .rev()
            .take(100)
            .map(|d| {
                let last = d.attempts.last();
                json!({
                    "id": d.id, "notice": d.notice, "channel": format!("{:?}", d.channel),
                    "recipient": d.recipient,
                    "state": format!("{:?}", d.state),
                    "attempts": d.attempts.len(),
                    "last_error": last.filter(|a| !a.ok).map(|a| a.answer.clone()).or_else(|| d.bounce.clone()),
                })
            })
            .collect();
        Ok(page(
            s,
            Some(&o),
            StatusCode::OK,
            "notices.html",
            json!({ "title": "Notices", "notices": rows, "deliveries": deliveries }),
        ))
    })
    .await
}

/// `GET /ui/webhooks`: the endpoints, their state and failures (never their secrets).
pub async fn webhooks(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        f.only(&["done"]).map_err(field_err)?;
        let store = &s.shared.store;
        let deliveries = store.all_deliveries().map_err(st)?;
        let rows: Vec<Value> = store
            .endpoints()
            .map_err(st)?
            .iter()
            .map(|e| {
                let target = format!("endpoint:{}", e.id);
                let mine: Vec<_> = deliveries
                    .iter()
                    .filter(|d| d.recipient == target)
                    .collect();
                let failed = mine
                    .iter()
                    .filter(|d| format!("{:?}", d.state) == "Failed")
                    .count();
                let last_error = mine
                    .iter()
                    .flat_map(|d| d.attempts.iter())
                    .filter(|a| !a.ok)
                    .max_by_key(|a| a.at)
                    .map(|a| format!("{}: {}", ts(a.at), a.answer));
                json!({
                    "id": e.id,
                    "url": e.url,
                    "events": e.events.join(", "),
                    "enabled": e.enabled,
                    "disabled_reason": e.disabled_reason,
                    "failing_since": e.failing_since.map(ts),
                    "deliveries": mine.len(),
                    "failed": failed,
                    "last_error": last_error,
                })
            })
            .collect();
        Ok(page(
            s,
            Some(&o),
            StatusCode::OK,
            "webhooks.html",
            json!({ "title": "Webhook endpoints", "flash": flash(&f), "endpoints": rows }),
        ))
    })
    .await
}

/// `GET /ui/about`: version and a configuration summary without secrets.
pub async fn about(State(state): Ui, Extension(op): Extension<Operator>) -> Response {
    let items: Vec<Value> = state
        .about
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    let operators: Vec<Value> = state
        .logins
        .iter()
        .map(|l| json!({ "name": l.name, "role": l.role.as_str() }))
        .collect();
    page(
        &state,
        Some(&op),
        StatusCode::OK,
        "about.html",
        json!({
            "title": "About",
            "version": env!("CARGO_PKG_VERSION"),
            "items": items,
            "operators": operators,
            "session_ends": ts(op.ends),
            "idle_minutes": state.config.session_idle.as_secs() / 60,
            "max_hours": state.config.session_max.as_secs() / 3600,
        }),
    )
}

// ---- reports

fn report_kind(f: &Fields) -> Result<crate::reports::Kind, OpError> {
    use crate::reports::Kind;
    f.only(&["report", "within"]).map_err(field_err)?;
    match f.get("report").unwrap_or("expiring") {
        "expiring" => Ok(Kind::Expiring {
            within: match f.get("within") {
                None => 30,
                Some(w) => {
                    crate::reports::parse_within(w).map_err(|m| OpError::invalid("within", m))?
                }
            },
        }),
        "expired" => Ok(Kind::Expired),
        "deleted" => Ok(Kind::Deleted),
        other => Err(OpError::invalid(
            "report",
            format!("{other:?}: expected expiring, expired or deleted"),
        )),
    }
}

fn make_report(s: &UiState, kind: crate::reports::Kind) -> Result<crate::reports::Report, OpError> {
    let today = crate::reports::today(s.now(), &s.report_tz);
    crate::reports::make(&s.shared.store, kind, today).map_err(|e| match e {
        crate::reports::ReportError::Store(e) => OpError::from_store(e),
    })
}

fn report_query(kind: crate::reports::Kind) -> String {
    match kind {
        crate::reports::Kind::Expiring { within } => format!("report=expiring&within={within}"),
        other => format!("report={}", other.name()),
    }
}

/// `GET /ui/reports?report=expiring|expired|deleted&within=30`: the reseller reports (the same
/// as `/v1/reports/*` and `regmail report`), with a CSV download.
pub async fn reports(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    let o = op.clone();
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        let kind = report_kind(&f)?;
        let report = make_report(s, kind)?;
        let columns: Vec<&str> = kind.columns().iter().map(|c| c.head).collect();
        let rows: Vec<Vec<String>> = report
            .rows
            .iter()
            .map(|r| r.iter().map(|c| c.text()).collect())
            .collect();
        let tabs: Vec<Value> = [
            ("expiring-30", "report=expiring&within=30", "Expiring in 30 days"),
            ("expiring-15", "report=expiring&within=15", "15 days"),
            ("expiring-1", "report=expiring&within=1", "1 day"),
            ("expired", "report=expired", "Expired"),
            ("deleted", "report=deleted", "Deleted"),
        ]
        .iter()
        .map(|(id, q, label)| json!({ "id": id, "href": format!("/ui/reports?{q}"), "label": label, "current": *q == report_query(kind) }))
        .collect();
        Ok(page(
            s,
            Some(&o),
            StatusCode::OK,
            "reports.html",
            json!({
                "title": "Reports",
                "heading": kind.title(),
                "date": report.date.to_string(),
                "tabs": tabs,
                "columns": columns,
                "rows": rows,
                "count": report.rows.len(),
                "csv": format!("/ui/reports/download?{}", report_query(kind)),
            }),
        ))
    })
    .await
}

/// `GET /ui/reports/download?...`: the report as CSV (RFC 4180), as an attachment.
pub async fn report_csv(
    State(state): Ui,
    Extension(op): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Response {
    run(&state, Some(&op), move |s| {
        let f = query(&q)?;
        let kind = report_kind(&f)?;
        let report = make_report(s, kind)?;
        let mut r =
            axum::response::IntoResponse::into_response(crate::reports::csv::render(&report));
        let h = r.headers_mut();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(crate::reports::csv::CONTENT_TYPE),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
            "attachment; filename=\"{}\"",
            kind.file_name(report.date)
        )) {
            h.insert(axum::http::header::CONTENT_DISPOSITION, v);
        }
        Ok(r)
    })
    .await
}

/// Any other `/ui` path.
pub async fn not_found(State(state): Ui, op: Option<Extension<Operator>>) -> Response {
    error_page(
        &state,
        op.as_ref().map(|e| &e.0),
        StatusCode::NOT_FOUND,
        "There is no such page.",
    )
}
