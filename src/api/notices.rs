//! Notice routes (issue 10 §7): account users and their subscriptions, panel notices, the
//! notice and delivery listings, webhook endpoints, replay, the pull feed, and the RFC 8058
//! one-click unsubscribe (served without the API token). README.md has curl examples.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::input::Obj;
use super::{AppState, blocking, param, read_json};
use crate::core::{ClientId, NoticeDraft};
use crate::notices::catalogue::{self, Audience, CATALOGUE, Category};
use crate::notices::model::{
    Channel, Delivery, DeliveryState, Endpoint, Language, Notice, Role, Subscriptions, User,
};
use crate::notices::rules::check_subscription_change;
use crate::notices::{render, sign, unsubscribe};
use crate::store::notices::{Posted, delivery_update, endpoint_write, user_key, user_write};
use crate::store::{Extra, Store};

type Shared = State<Arc<AppState>>;

/// The token-protected routes, nested under `/v1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/clients/{id}/users", post(create_user).get(list_users))
        .route(
            "/clients/{id}/users/{user}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route(
            "/clients/{id}/users/{user}/subscriptions",
            get(get_subscriptions).put(put_subscriptions),
        )
        .route("/notices", post(post_notice).get(list_notices))
        .route("/notices/{id}", get(get_notice))
        .route("/notice-types", get(notice_types))
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/{id}/replay", post(replay_delivery))
        .route("/webhooks", post(create_webhook).get(list_webhooks))
        .route("/webhooks/{id}", get(get_webhook))
        .route("/webhooks/{id}/enable", post(enable_webhook))
        .route("/webhooks/{id}/disable", post(disable_webhook))
        .route("/webhooks/{id}/rotate", post(rotate_webhook))
        .route("/webhooks/{id}/deliveries", get(webhook_deliveries))
        .route("/webhooks/{id}/replay", post(replay_webhook))
        .route("/events", get(events))
}

/// The one-click unsubscribe route (no token: RFC 8058 §3.2 forbids authorization).
pub fn public_routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/unsubscribe/{token}",
        get(unsubscribe_page).post(unsubscribe_post),
    )
}

fn forbidden(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        field: field.into(),
        message: message.into(),
    }
}

fn store_err(e: crate::store::StoreError) -> ApiError {
    ApiError::from_store(e)
}

fn apply_err(e: crate::store::ApplyError) -> ApiError {
    ApiError::from_apply(e, "id")
}

fn wake(state: &AppState) {
    if let Some(h) = &state.notices {
        h.wake();
    }
}

// ---- views

fn user_view(u: &User) -> Value {
    json!({
        "client_id": u.client, "id": u.id, "name": u.name, "email": u.email, "phone": u.phone,
        "language": u.language, "role": u.role, "subscriptions": subs_view(&u.effective()),
        "subscriptions_set_by": u.subscriptions_set_by,
        "created": u.created.to_string(), "updated": u.updated.to_string(),
    })
}

fn subs_view(s: &Subscriptions) -> Value {
    let m: serde_json::Map<String, Value> = s
        .iter()
        .map(|(c, chs)| {
            (
                c.as_str().to_owned(),
                chs.iter().map(|ch| ch.as_str()).collect::<Vec<_>>().into(),
            )
        })
        .collect();
    Value::Object(m)
}

fn delivery_view(d: &Delivery) -> Value {
    json!({
        "id": d.id, "notice_id": d.notice, "channel": d.channel, "recipient": d.recipient,
        "address": d.address, "language": d.language, "state": d.state.as_str(),
        "unsubscribe": d.unsubscribe, "next_at": d.next_at.map(|t| t.to_string()),
        "bounce": d.bounce, "created": d.created.to_string(),
        "attempts": d.attempts.iter().map(|a| json!({
            "at": a.at.to_string(), "status": a.status, "latency_ms": a.latency_ms,
            "answer": a.answer, "ok": a.ok,
        })).collect::<Vec<_>>(),
    })
}

fn notice_view(n: &Notice, deliveries: Option<Vec<Value>>) -> Value {
    let mut v = json!({
        "id": n.id, "type": n.kind, "category": n.category, "mandatory": n.mandatory,
        "client_id": n.client, "domain": n.domain, "data": n.data, "source": n.source,
        "created": n.created.to_string(), "delivery_ids": n.deliveries,
    });
    if let Some(d) = deliveries {
        v["deliveries"] = Value::Array(d);
    }
    v
}

fn endpoint_view(e: &Endpoint) -> Value {
    json!({
        "id": e.id, "url": e.url, "events": e.events, "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "failing_since": e.failing_since.map(|t| t.to_string()),
        "rotating_until": e.rotate_until.map(|t| t.to_string()),
        "created": e.created.to_string(),
    })
}

// ---- parsing

fn client_path(s: &str) -> Result<String, ApiError> {
    ClientId::parse(s)
        .map(|c| c.as_str().to_owned())
        .map_err(|e| ApiError::invalid("id", e.0))
}

fn user_id(field: &str, s: &str) -> Result<String, ApiError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ApiError::invalid(
            field,
            "a user id is 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(s.to_owned())
}

fn email(field: &str, s: &str) -> Result<String, ApiError> {
    s.parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| ApiError::invalid(field, format!("{s:?} is not an e-mail address: {e}")))
}

struct UserInput {
    name: String,
    email: String,
    phone: Option<String>,
    language: Language,
    role: Role,
}

fn user_input(o: &Obj<'_>) -> Result<UserInput, ApiError> {
    let name = o.text("name", 200)?;
    let email = email("email", &o.text("email", 254)?)?;
    let phone = o.opt_text("phone", 40)?;
    let lang = o.text("language", 8)?;
    let language = Language::parse(&lang)
        .ok_or_else(|| ApiError::invalid("language", "must be \"ru\" or \"en\""))?;
    let role = o.text("role", 20)?;
    let role = Role::parse(&role).ok_or_else(|| {
        ApiError::invalid("role", "must be \"owner\", \"admin\" or \"subscriber\"")
    })?;
    Ok(UserInput {
        name,
        email,
        phone,
        language,
        role,
    })
}

fn need_client(store: &Store, client: &str) -> Result<(), ApiError> {
    let id = ClientId::parse(client).map_err(|e| ApiError::invalid("id", e.0))?;
    match store.client(&id).map_err(store_err)? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(
            "id",
            format!("client {client} does not exist"),
        )),
    }
}

// ---- users

async fn create_user(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let client = client_path(&param(p, "id")?)?;
    let v = read_json(&state, &headers, body).await?;
    let o = Obj::root(&v)?;
    o.only(&["id", "name", "email", "phone", "language", "role"])?;
    let id = user_id("id", &o.text("id", 64)?)?;
    let input = user_input(&o)?;
    blocking(move || {
        let now = Timestamp::now();
        let (status, u) = state
            .store
            .commit_extra(now, |s| {
                need_client(s, &client).map_err(Fail::Api)?;
                let users = s.users_of(&client)?;
                let mut u = User {
                    client: client.clone(),
                    id: id.clone(),
                    name: input.name.clone(),
                    email: input.email.clone(),
                    phone: input.phone.clone(),
                    language: input.language,
                    role: input.role,
                    subscriptions: Subscriptions::new(),
                    subscriptions_set_by: None,
                    created: now,
                    updated: now,
                };
                if let Some(old) = users.iter().find(|x| x.id == id) {
                    let same = old.name == u.name
                        && old.email == u.email
                        && old.phone == u.phone
                        && old.language == u.language
                        && old.role == u.role;
                    if same {
                        return Ok((Extra::default(), (StatusCode::OK, old.clone())));
                    }
                    return Err(Fail::Api(ApiError::conflict(
                        "id",
                        format!("user {id} exists with other data; PUT changes it"),
                    )));
                }
                let owner = users.iter().find(|x| x.role == Role::Owner);
                let mut writes = Vec::new();
                match (u.role, owner) {
                    (Role::Owner, Some(o)) => {
                        return Err(Fail::Api(ApiError::conflict(
                            "role",
                            format!("client {client} already has its owner ({})", o.id),
                        )));
                    }
                    (Role::Owner, None) => {}
                    (_, Some(_)) => {}
                    (_, None) => {
                        // Exactly one owner per client: made from the client's contact.
                        if let Some(o) = s.owner_from_contact(&client, now)?
                            && o.id != u.id
                        {
                            writes.push(user_write(&o));
                        }
                    }
                }
                if u.role == Role::Owner {
                    u.subscriptions = Subscriptions::new();
                }
                writes.push(user_write(&u));
                Ok((
                    Extra {
                        users: writes,
                        ..Extra::default()
                    },
                    (StatusCode::CREATED, u),
                ))
            })
            .map_err(unfail)?;
        Ok((status, Json(user_view(&u))).into_response())
    })
    .await
}

/// What a decision under the store's writer lock may end in: a refusal to answer, or a
/// store failure.
enum Fail {
    Api(ApiError),
    Store(crate::store::ApplyError),
}

impl From<crate::store::ApplyError> for Fail {
    fn from(e: crate::store::ApplyError) -> Self {
        Fail::Store(e)
    }
}

impl From<crate::store::StoreError> for Fail {
    fn from(e: crate::store::StoreError) -> Self {
        Fail::Store(e.into())
    }
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Fail::Api(e)
    }
}

fn unfail(f: Fail) -> ApiError {
    match f {
        Fail::Api(e) => e,
        Fail::Store(e) => apply_err(e),
    }
}

async fn list_users(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let client = client_path(&param(p, "id")?)?;
    blocking(move || {
        need_client(&state.store, &client)?;
        let users = state.store.users_of(&client).map_err(store_err)?;
        Ok(Json(
            json!({ "users": users.iter().map(user_view).collect::<Vec<_>>() }),
        ))
    })
    .await
}

fn find_user(store: &Store, client: &str, user: &str) -> Result<User, ApiError> {
    need_client(store, client)?;
    store
        .user(client, user)
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found("user", format!("client {client} has no user {user}")))
}

async fn get_user(
    State(state): Shared,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (client, user) = two(p)?;
    blocking(move || Ok(Json(user_view(&find_user(&state.store, &client, &user)?)))).await
}

fn two(p: Result<Path<(String, String)>, PathRejection>) -> Result<(String, String), ApiError> {
    let Path((c, u)) = p.map_err(|e| ApiError::invalid("path", format!("cannot be read: {e}")))?;
    Ok((client_path(&c)?, user_id("user", &u)?))
}

async fn update_user(
    State(state): Shared,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (client, user) = two(p)?;
    let v = read_json(&state, &headers, body).await?;
    let o = Obj::root(&v)?;
    o.only(&["name", "email", "phone", "language", "role"])?;
    let input = user_input(&o)?;
    blocking(move || {
        let now = Timestamp::now();
        let u = state
            .store
            .commit_extra(now, |s| {
                let mut u = find_user(s, &client, &user).map_err(Fail::Api)?;
                if u.role != input.role {
                    if u.role == Role::Owner {
                        return Err(Fail::Api(ApiError::conflict(
                            "role",
                            "a client has exactly one owner; make another user owner... by deleting and recreating, not by demoting the owner",
                        )));
                    }
                    if input.role == Role::Owner {
                        return Err(Fail::Api(ApiError::conflict(
                            "role",
                            format!("client {client} already has its owner"),
                        )));
                    }
                }
                u.name = input.name.clone();
                u.email = input.email.clone();
                u.phone = input.phone.clone();
                u.language = input.language;
                u.role = input.role;
                // A subscriber never holds a category its role forbids.
                let role = u.role;
                u.subscriptions.retain(|c, _| role.allows(*c));
                u.updated = now;
                Ok((
                    Extra {
                        users: vec![user_write(&u)],
                        ..Extra::default()
                    },
                    u,
                ))
            })
            .map_err(unfail)?;
        Ok(Json(user_view(&u)))
    })
    .await
}

async fn delete_user(
    State(state): Shared,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (client, user) = two(p)?;
    blocking(move || {
        state
            .store
            .commit_extra(Timestamp::now(), |s| {
                let u = find_user(s, &client, &user).map_err(Fail::Api)?;
                if u.role == Role::Owner {
                    return Err(Fail::Api(ApiError::conflict(
                        "user",
                        "the owner cannot be deleted while the client exists",
                    )));
                }
                Ok((
                    Extra {
                        users: vec![(user_key(&client, &user), None)],
                        ..Extra::default()
                    },
                    (),
                ))
            })
            .map_err(unfail)?;
        Ok(Json(json!({ "deleted": user })))
    })
    .await
}

async fn get_subscriptions(
    State(state): Shared,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (client, user) = two(p)?;
    blocking(move || {
        let u = find_user(&state.store, &client, &user)?;
        Ok(Json(json!({
            "user": u.id, "role": u.role, "subscriptions": subs_view(&u.effective()),
            "set_by": u.subscriptions_set_by,
        })))
    })
    .await
}

fn parse_subscriptions(v: &Value) -> Result<Subscriptions, ApiError> {
    let Some(Value::Object(subs)) = v.get("subscriptions") else {
        return Err(ApiError::invalid(
            "subscriptions",
            "is required: an object of category -> channels",
        ));
    };
    let mut out = Subscriptions::new();
    for (k, v) in subs {
        let field = format!("subscriptions.{k}");
        let cat = Category::parse(k).ok_or_else(|| {
            ApiError::invalid(
                &field,
                format!(
                    "unknown category; known are {}",
                    Category::ALL.map(|c| c.as_str()).join(", ")
                ),
            )
        })?;
        let Value::Array(list) = v else {
            return Err(ApiError::invalid(&field, "must be a list of channels"));
        };
        let mut chans = BTreeSet::new();
        for ch in list {
            match ch.as_str() {
                Some("email") => {
                    chans.insert(Channel::Email);
                }
                _ => {
                    return Err(ApiError::invalid(
                        &field,
                        format!(
                            "unknown channel {ch}; users subscribe on \"email\" (webhooks are endpoints)"
                        ),
                    ));
                }
            }
        }
        out.insert(cat, chans);
    }
    Ok(out)
}

async fn put_subscriptions(
    State(state): Shared,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (client, user) = two(p)?;
    let v = read_json(&state, &headers, body).await?;
    let o = Obj::root(&v)?;
    o.only(&["acting_user", "subscriptions"])?;
    let actor = user_id("acting_user", &o.text("acting_user", 64)?)?;
    let new = parse_subscriptions(&v)?;
    blocking(move || {
        let now = Timestamp::now();
        let u = state
            .store
            .commit_extra(now, |s| {
                let mut target = find_user(s, &client, &user).map_err(Fail::Api)?;
                let acting = s.user(&client, &actor)?.ok_or_else(|| {
                    Fail::Api(forbidden(
                        "acting_user",
                        format!("{actor} is not a user of client {client}"),
                    ))
                })?;
                check_subscription_change(&acting, &target, &new)
                    .map_err(|r| Fail::Api(forbidden(r.field, r.message)))?;
                target.subscriptions = new.clone();
                target.subscriptions.retain(|_, c| !c.is_empty());
                target.subscriptions_set_by = Some(actor.clone());
                target.updated = now;
                Ok((
                    Extra {
                        users: vec![user_write(&target)],
                        ..Extra::default()
                    },
                    target,
                ))
            })
            .map_err(unfail)?;
        Ok(Json(json!({
            "user": u.id, "role": u.role, "subscriptions": subs_view(&u.effective()),
            "set_by": u.subscriptions_set_by,
        })))
    })
    .await
}

// ---- notices

async fn notice_types() -> Json<Value> {
    Json(json!({ "types": CATALOGUE }))
}

async fn post_notice(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) if !s.trim().is_empty() && s.len() <= 200 => Some(s.trim().to_owned()),
            _ => {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "must be 1 to 200 visible ASCII characters",
                ));
            }
        },
    };
    let v = read_json(&state, &headers, body).await?;
    let o = Obj::root(&v)?;
    o.only(&["client_id", "type", "data"])?;
    let kind = o.text("type", 100)?;
    let nt = catalogue::lookup(&kind).ok_or_else(|| {
        ApiError::invalid(
            "type",
            format!("unknown notice type {kind:?}; GET /v1/notice-types lists them"),
        )
    })?;
    let client = o.opt_text("client_id", 64)?;
    let client = match client {
        Some(c) => Some(ClientId::parse(&c).map_err(|e| ApiError::invalid("client_id", e.0))?),
        None if nt.audience == Audience::Customer => {
            return Err(ApiError::invalid(
                "client_id",
                format!("is required: {kind} goes to a client's users"),
            ));
        }
        None => None,
    };
    let mut data = BTreeMap::new();
    if o.obj("data")?.is_some()
        && let Some(Value::Object(d)) = v.get("data")
    {
        for (k, v) in d {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(ApiError::invalid(
                        format!("data.{k}"),
                        "must be a string, number or boolean",
                    ));
                }
            };
            if s.len() > 2000 {
                return Err(ApiError::invalid(
                    format!("data.{k}"),
                    "is longer than 2000 bytes",
                ));
            }
            data.insert(k.clone(), s);
        }
    }
    for f in nt.fields {
        if !data.contains_key(*f) {
            return Err(ApiError::invalid(
                format!("data.{f}"),
                format!("is required: the {kind} templates use it"),
            ));
        }
    }
    let domain = match data.get("domain") {
        Some(d) => Some(super::input::domain_name("data.domain", d)?),
        None => None,
    };
    let hash = hex(&Sha256::digest(serde_json::to_vec(&v).unwrap_or_default()));
    blocking(move || {
        if let Some(c) = &client
            && state.store.client(c).map_err(store_err)?.is_none()
        {
            return Err(ApiError::invalid(
                "client_id",
                format!("client {c} does not exist"),
            ));
        }
        let draft = NoticeDraft {
            kind: nt.name.to_owned(),
            client,
            domain,
            data,
        };
        let posted = state
            .store
            .post_notice(
                draft,
                key.as_deref().map(|k| (k, hash.as_str())),
                Timestamp::now(),
            )
            .map_err(apply_err)?;
        match posted {
            Posted::New(n) => {
                wake(&state);
                Ok((StatusCode::CREATED, Json(notice_view(&n, None))).into_response())
            }
            Posted::Replay(n) => Ok((StatusCode::OK, Json(notice_view(&n, None))).into_response()),
            Posted::Mismatch => Err(ApiError::conflict(
                "Idempotency-Key",
                "this key was used with another body",
            )),
        }
    })
    .await
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn all_notices(store: &Store) -> Result<Vec<Notice>, ApiError> {
    store.notices_after(0, usize::MAX).map_err(store_err)
}

async fn list_notices(
    State(state): Shared,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_params(&q, &["client", "domain", "type", "user", "limit"])?;
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::invalid("limit", "must be a number"))?,
        None => 100,
    };
    let domain = match q.get("domain") {
        Some(d) => Some(super::input::domain_name("domain", d)?.as_str().to_owned()),
        None => None,
    };
    blocking(move || {
        let mut out: Vec<Value> = Vec::new();
        let user = q.get("user").cloned();
        for n in all_notices(&state.store)?.into_iter().rev() {
            if q.get("client")
                .is_some_and(|c| n.client.as_deref() != Some(c))
                || domain
                    .as_ref()
                    .is_some_and(|d| n.domain.as_ref() != Some(d))
                || q.get("type").is_some_and(|t| &n.kind != t)
            {
                continue;
            }
            if let Some(u) = &user {
                let mut hit = false;
                for id in &n.deliveries {
                    if let Some(d) = state.store.delivery(*id).map_err(store_err)?
                        && d.recipient.ends_with(&format!("/{u}"))
                    {
                        hit = true;
                    }
                }
                if !hit {
                    continue;
                }
            }
            out.push(notice_view(&n, None));
            if out.len() >= limit {
                break;
            }
        }
        Ok(Json(json!({ "notices": out })))
    })
    .await
}

fn num_path(p: Result<Path<String>, PathRejection>, field: &str) -> Result<u64, ApiError> {
    param(p, field)?
        .parse::<u64>()
        .map_err(|_| ApiError::invalid(field, "must be a number"))
}

async fn get_notice(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = num_path(p, "id")?;
    blocking(move || {
        let n = state
            .store
            .notice(id)
            .map_err(store_err)?
            .ok_or_else(|| ApiError::not_found("id", format!("no notice {id}")))?;
        let mut ds = Vec::new();
        for d in &n.deliveries {
            if let Some(d) = state.store.delivery(*d).map_err(store_err)? {
                ds.push(delivery_view(&d));
            }
        }
        Ok(Json(notice_view(&n, Some(ds))))
    })
    .await
}

async fn list_deliveries(
    State(state): Shared,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_params(&q, &["state", "channel", "client", "limit"])?;
    if let Some(s) = q.get("state")
        && !["Queued", "Sent", "Failed", "Held", "Bounced"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "state",
            "one of Queued, Sent, Failed, Held, Bounced",
        ));
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(200usize);
    blocking(move || {
        let mut out = Vec::new();
        for d in state
            .store
            .all_deliveries()
            .map_err(store_err)?
            .into_iter()
            .rev()
        {
            if q.get("state").is_some_and(|s| d.state.as_str() != s)
                || q.get("channel").is_some_and(|c| d.channel.as_str() != c)
                || q.get("client")
                    .is_some_and(|c| !d.recipient.starts_with(&format!("user:{c}/")))
            {
                continue;
            }
            out.push(delivery_view(&d));
            if out.len() >= limit {
                break;
            }
        }
        Ok(Json(json!({ "deliveries": out })))
    })
    .await
}

/// Queues deliveries again now (replay), keeping their ids and attempts.
fn requeue(store: &Store, ids: &[u64], now: Timestamp) -> Result<usize, ApiError> {
    store
        .commit_extra(now, |s| {
            let mut writes = Vec::new();
            let mut n = 0;
            for id in ids {
                let Some(d) = s.delivery(*id)? else { continue };
                let mut new = d.clone();
                new.state = DeliveryState::Queued;
                new.next_at = Some(now);
                writes.extend(delivery_update(&d, &new));
                n += 1;
            }
            Ok((
                Extra {
                    notices: writes,
                    ..Extra::default()
                },
                n,
            ))
        })
        .map_err(apply_err)
}

async fn replay_delivery(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = num_path(p, "id")?;
    blocking(move || {
        let d = state
            .store
            .delivery(id)
            .map_err(store_err)?
            .ok_or_else(|| ApiError::not_found("id", format!("no delivery {id}")))?;
        if let Some(ep) = d.recipient.strip_prefix("endpoint:")
            && !state
                .store
                .endpoint(ep)
                .map_err(store_err)?
                .is_some_and(|e| e.enabled)
        {
            return Err(ApiError::conflict(
                "id",
                format!("endpoint {ep} is disabled; enable it first"),
            ));
        }
        requeue(&state.store, &[id], Timestamp::now())?;
        wake(&state);
        Ok(Json(json!({ "replayed": [id] })))
    })
    .await
}

// ---- webhooks

fn random_secret() -> String {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    b[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    sign::new_secret(b)
}

fn parse_url(s: &str) -> Result<String, ApiError> {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.split("://").nth(1).is_some_and(|r| {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.contains('@')
        })
        && !s.contains(char::is_whitespace)
        && s.parse::<axum::http::Uri>().is_ok();
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ApiError::invalid(
            "url",
            "must be an http:// or https:// URL with a host (no user info)",
        ))
    }
}

async fn create_webhook(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = read_json(&state, &headers, body).await?;
    let o = Obj::root(&v)?;
    o.only(&["url", "events", "secret", "enabled"])?;
    let url = parse_url(&o.text("url", 2000)?)?;
    let events = match v.get("events") {
        Some(Value::Array(a)) if !a.is_empty() => {
            let mut out = Vec::new();
            for (i, e) in a.iter().enumerate() {
                match e.as_str() {
                    Some(s) if catalogue::filter_valid(s) => out.push(s.to_owned()),
                    _ => {
                        return Err(ApiError::invalid(
                            format!("events[{i}]"),
                            "must be \"*\", \"prefix.*\" (e.g. \"domain.*\") or a notice type",
                        ));
                    }
                }
            }
            out
        }
        _ => {
            return Err(ApiError::invalid(
                "events",
                "is required: a non-empty list such as [\"domain.*\"]",
            ));
        }
    };
    let secret = match o.opt_text("secret", 200)? {
        Some(s) => {
            if sign::secret_key(&s).is_none() {
                return Err(ApiError::invalid(
                    "secret",
                    "must be \"whsec_\" + base64 of 24 to 64 random bytes",
                ));
            }
            s
        }
        None => random_secret(),
    };
    let enabled = o.flag("enabled", true)?;
    blocking(move || {
        let now = Timestamp::now();
        let e = Endpoint {
            id: format!("ep_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            url,
            events,
            secrets: vec![secret.clone()],
            rotate_until: None,
            enabled,
            disabled_reason: None,
            failing_since: None,
            created: now,
        };
        let w = endpoint_write(&e);
        state
            .store
            .commit_extra(now, |_| {
                Ok((
                    Extra {
                        users: vec![w],
                        ..Extra::default()
                    },
                    (),
                ))
            })
            .map_err(apply_err)?;
        let mut v = endpoint_view(&e);
        // Shown once, here; never again (rule 4).
        v["secret"] = Value::String(secret);
        Ok((StatusCode::CREATED, Json(v)).into_response())
    })
    .await
}

async fn list_webhooks(State(state): Shared) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let eps = state.store.endpoints().map_err(store_err)?;
        Ok(Json(
            json!({ "webhooks": eps.iter().map(endpoint_view).collect::<Vec<_>>() }),
        ))
    })
    .await
}

fn find_endpoint(store: &Store, id: &str) -> Result<Endpoint, ApiError> {
    store
        .endpoint(id)
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found("id", format!("no webhook endpoint {id}")))
}

async fn get_webhook(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = param(p, "id")?;
    blocking(move || Ok(Json(endpoint_view(&find_endpoint(&state.store, &id)?)))).await
}

async fn set_enabled(state: Arc<AppState>, id: String, on: bool) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let now = Timestamp::now();
        let e = state
            .store
            .commit_extra(now, |s| {
                let mut e = find_endpoint(s, &id).map_err(Fail::Api)?;
                e.enabled = on;
                if on {
                    e.disabled_reason = None;
                    e.failing_since = None;
                } else {
                    e.disabled_reason = Some("disabled by an operator".into());
                }
                Ok((
                    Extra {
                        users: vec![endpoint_write(&e)],
                        ..Extra::default()
                    },
                    e,
                ))
            })
            .map_err(unfail)?;
        wake(&state);
        Ok(Json(endpoint_view(&e)))
    })
    .await
}

async fn enable_webhook(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(state, param(p, "id")?, true).await
}

async fn disable_webhook(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(state, param(p, "id")?, false).await
}

/// A new secret; the old one keeps signing beside it for 24 hours (Standard Webhooks:
/// "sign with both keys during rotation").
async fn rotate_webhook(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = param(p, "id")?;
    let v = read_json(&state, &headers, body).await?;
    let o = Obj::root(&v)?;
    o.only(&["secret"])?;
    let secret = match o.opt_text("secret", 200)? {
        Some(s) if sign::secret_key(&s).is_some() => s,
        Some(_) => {
            return Err(ApiError::invalid(
                "secret",
                "must be \"whsec_\" + base64 of 24 to 64 random bytes",
            ));
        }
        None => random_secret(),
    };
    blocking(move || {
        let now = Timestamp::now();
        let e = state
            .store
            .commit_extra(now, |s| {
                let mut e = find_endpoint(s, &id).map_err(Fail::Api)?;
                e.secrets.truncate(1);
                e.secrets.insert(0, secret.clone());
                e.rotate_until = now.checked_add(jiff::SignedDuration::from_hours(24)).ok();
                Ok((
                    Extra {
                        users: vec![endpoint_write(&e)],
                        ..Extra::default()
                    },
                    e,
                ))
            })
            .map_err(unfail)?;
        let mut v = endpoint_view(&e);
        v["secret"] = Value::String(secret);
        Ok(Json(v))
    })
    .await
}

fn endpoint_deliveries(store: &Store, id: &str) -> Result<Vec<Delivery>, ApiError> {
    let who = format!("endpoint:{id}");
    Ok(store
        .all_deliveries()
        .map_err(store_err)?
        .into_iter()
        .filter(|d| d.recipient == who)
        .collect())
}

async fn webhook_deliveries(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = param(p, "id")?;
    blocking(move || {
        find_endpoint(&state.store, &id)?;
        let ds = endpoint_deliveries(&state.store, &id)?;
        Ok(Json(
            json!({ "deliveries": ds.iter().map(delivery_view).collect::<Vec<_>>() }),
        ))
    })
    .await
}

async fn replay_webhook(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = param(p, "id")?;
    let v = read_json(&state, &headers, body).await?;
    let o = Obj::root(&v)?;
    o.only(&["since"])?;
    let since_s = o.text("since", 64)?;
    let since: Timestamp = since_s.parse().map_err(|_| {
        ApiError::invalid(
            "since",
            "must be an RFC 3339 time, e.g. 2026-12-01T10:00:00Z",
        )
    })?;
    blocking(move || {
        let e = find_endpoint(&state.store, &id)?;
        if !e.enabled {
            return Err(ApiError::conflict(
                "id",
                format!("endpoint {id} is disabled; enable it first"),
            ));
        }
        let ids: Vec<u64> = endpoint_deliveries(&state.store, &id)?
            .into_iter()
            .filter(|d| d.created >= since && d.state != DeliveryState::Queued)
            .map(|d| d.id)
            .collect();
        let n = requeue(&state.store, &ids, Timestamp::now())?;
        wake(&state);
        Ok(Json(json!({ "replayed": ids, "count": n })))
    })
    .await
}

async fn events(
    State(state): Shared,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_params(&q, &["after", "limit"])?;
    let after = match q.get("after") {
        Some(a) => a
            .parse::<u64>()
            .map_err(|_| ApiError::invalid("after", "must be an event id (a number)"))?,
        None => 0,
    };
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be 1 to 1000"))?,
        None => 100,
    };
    blocking(move || {
        let ns = state.store.notices_after(after, limit).map_err(store_err)?;
        let events: Vec<Value> = ns
            .iter()
            .map(|n| {
                let mut v: Value =
                    serde_json::from_slice(&render::webhook_body(n)).unwrap_or(Value::Null);
                v["id"] = Value::String(n.id.to_string());
                v
            })
            .collect();
        let next = ns.last().map_or(after, |n| n.id);
        Ok(Json(json!({ "events": events, "next": next.to_string() })))
    })
    .await
}

// ---- one-click unsubscribe (RFC 8058)

fn token_user(state: &AppState, token: &str) -> Result<(String, String, Category), ApiError> {
    let key = state.store.unsubscribe_key().map_err(apply_err)?;
    unsubscribe::verify(&key, token)
        .ok_or_else(|| ApiError::not_found("token", "this unsubscribe link is not valid"))
}

async fn unsubscribe_page(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = param(p, "token")?;
    blocking(move || {
        let (client, user, cat) = token_user(&state, &token)?;
        let u = find_user(&state.store, &client, &user)?;
        // A GET only shows the page: scanners prefetch links (RFC 8058 §3.2, research §2.8).
        let page = format!(
            "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
             <p>Stop \"{}\" notices to {}?</p>\
             <form method=post><input type=hidden name=List-Unsubscribe value=One-Click>\
             <button>Unsubscribe</button></form>",
            cat.as_str(),
            html_escape(&u.email)
        );
        Ok(Html(page).into_response())
    })
    .await
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn unsubscribe_post(
    State(state): Shared,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = param(p, "token")?;
    blocking(move || {
        let (client, user, cat) = token_user(&state, &token)?;
        let now = Timestamp::now();
        state
            .store
            .commit_extra(now, |s| {
                let mut u = find_user(s, &client, &user).map_err(Fail::Api)?;
                if u.role == Role::Owner {
                    // The owner hears everything; its mail never carries a link.
                    return Ok((Extra::default(), ()));
                }
                if u.subscriptions.remove(&cat).is_none() {
                    return Ok((Extra::default(), ()));
                }
                u.subscriptions_set_by = Some("one-click".into());
                u.updated = now;
                Ok((
                    Extra {
                        users: vec![user_write(&u)],
                        ..Extra::default()
                    },
                    (),
                ))
            })
            .map_err(unfail)?;
        // 200, never a redirect (RFC 8058 §3.2).
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("unsubscribed from \"{}\"\n", cat.as_str()),
        )
            .into_response())
    })
    .await
}

// ---- operators' view: readiness and metrics

/// Readiness problems of the notice channels: a channel whose oldest due delivery has waited
/// more than five minutes is stuck.
pub fn readiness(store: &Store, now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    for ch in [Channel::Email, Channel::Webhook] {
        if let Ok(Some(at)) = store.next_due(ch)
            && now.as_millisecond() - at.as_millisecond() > 300_000
        {
            out.push(format!(
                "notice channel {} is stuck: a delivery has been due since {at}",
                ch.as_str()
            ));
        }
    }
    out
}

/// Prometheus lines for the notice channels: deliveries per channel and state, attempts and
/// their summed latency.
pub fn metrics_text(state: &AppState) -> String {
    use std::fmt::Write;
    use std::sync::atomic::Ordering;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP regmail_notice_deliveries Notice deliveries per channel and state.\n# TYPE regmail_notice_deliveries gauge"
    );
    if let Ok(counts) = state.store.delivery_counts() {
        for ((ch, st), n) in counts {
            let _ = writeln!(
                out,
                "regmail_notice_deliveries{{channel=\"{ch}\",state=\"{st}\"}} {n}"
            );
        }
    }
    if let Some(h) = &state.notices {
        let _ = writeln!(
            out,
            "# HELP regmail_notice_attempts_total Delivery attempts per channel and result.\n# TYPE regmail_notice_attempts_total counter"
        );
        for (ch, s) in [("email", &h.email), ("webhook", &h.webhook)] {
            let _ = writeln!(
                out,
                "regmail_notice_attempts_total{{channel=\"{ch}\",result=\"ok\"}} {}",
                s.sent.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "regmail_notice_attempts_total{{channel=\"{ch}\",result=\"failed\"}} {}",
                s.failed.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP regmail_notice_attempt_latency_ms_total Summed attempt latency per channel, ms.\n# TYPE regmail_notice_attempt_latency_ms_total counter"
        );
        for (ch, s) in [("email", &h.email), ("webhook", &h.webhook)] {
            let _ = writeln!(
                out,
                "regmail_notice_attempt_latency_ms_total{{channel=\"{ch}\"}} {}",
                s.latency_ms.load(Ordering::Relaxed)
            );
        }
    }
    out
}

/// Refuses a query parameter outside `known`, naming it and listing the known ones.
pub(super) fn only_params(q: &BTreeMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(
            k,
            format!("unknown parameter; known: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}
