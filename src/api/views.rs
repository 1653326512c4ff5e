//! The JSON shapes the API answers with.

use serde_json::{Value, json};

use crate::core::{Client, Domain, LogEntry, Request};

/// A domain, with both forms of its name and its open request.
pub fn domain(d: &Domain, open: Option<&Request>) -> Value {
    json!({
        "domain": d.name.as_str(),
        "domain_unicode": d.name.to_unicode(),
        "client_id": d.client_id,
        "status": d.status.as_str(),
        "phase": d.phase,
        "years": d.years,
        "nameservers": d.nameservers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "order_id": d.order_id,
        "description": d.description,
        "paid": d.paid,
        "auto_renew": d.auto_renew,
        "expires": d.expires,
        "grace_ends": d.grace_ends,
        "deleted_on": d.deleted_on,
        "last_error": d.last_error,
        "open_request": open.map(request),
        "created": d.created,
        "updated": d.updated,
    })
}

/// A request.
pub fn request(r: &Request) -> Value {
    json!({
        "id": r.id,
        "token": r.id.token(),
        "kind": r.kind.as_str(),
        "client_id": r.client_id,
        "domain": r.domain.as_ref().map(|d| d.as_str()),
        "years": r.years,
        "handle": r.handle,
        "state": r.state.as_str(),
        "message_id": r.message_id,
        "attempts": r.attempts,
        "task_id": r.task_id,
        "last_error": r.last_error,
        "reply_deadline": r.reply_deadline,
        "retry_of": r.retry_of,
        "created": r.created,
        "updated": r.updated,
    })
}

/// A client.
pub fn client(c: &Client) -> Value {
    json!({
        "id": c.id,
        "status": format!("{:?}", c.status),
        "handle": c.handle,
        "registrant": c.registrant,
        "contact": c.contact,
        "open_request": c.open_request,
        "last_error": c.last_error,
        "created": c.created,
        "updated": c.updated,
    })
}

/// A page of log entries and where to continue.
pub fn log_page(entries: &[LogEntry], since: u64) -> Value {
    let next = entries.last().map_or(since, |e| e.seq);
    json!({ "entries": entries, "next": next })
}
