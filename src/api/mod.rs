//! The HTTP API for control panels and the operator CLI (axum, JSON, bearer token).
//! Routes are listed in [`router`]; README.md has curl examples.

pub mod error;
pub mod import;
pub mod inbound;
pub mod input;
pub mod lifecycle;
pub mod notices;
pub mod ops;
pub mod reports;
pub mod server;
pub mod strict_json;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::core::{
    Actor, ClientId, Ctx, DomainName, DomainStatus, Event, Policy, RequestId, RequestState,
    Resolution,
};
use crate::idsource::UuidIds;
use crate::outbound::Charset;
use crate::outbound::worker::{OutboundSetup, render_request};
use crate::store::{Applied, Idempotent, LogScope, Store};
use error::ApiError;
use tokio::sync::Notify;

/// What every handler shares.
pub struct AppState {
    /// The store.
    pub store: Arc<Store>,
    /// Registrar rules for the core.
    pub policy: Policy,
    /// SHA-256 of the bearer token (the token itself is not kept here).
    token_hash: [u8; 32],
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// The request charset: text a client or order carries must fit it (checked on accept).
    pub charset: Charset,
    /// Woken after a request is queued, so the outbox worker sends it at once.
    pub outbox_wake: Arc<Notify>,
    /// Profile and settings, for previews (`/render`); None where no outbound is set up.
    pub outbound: Option<Arc<RwLock<Arc<OutboundSetup>>>>,
    /// The reply intake, for the unmatched queue and `rules test`.
    pub intake: Option<Arc<crate::inbound::intake::Intake>>,
    /// What `POST /v1/reload` reloads.
    pub reloadable: Option<crate::reload::Reloadable>,
    /// Worker liveness and counters (for /readyz and /metrics).
    pub health: Arc<crate::health::Health>,
    /// The reply source's health, when one runs.
    pub source_health: Option<Arc<crate::inbound::source::SourceHealth>>,
    /// How often the reply source should succeed (readiness allows three misses).
    pub source_poll: std::time::Duration,
    /// Masks the configured secrets in every view of stored mail.
    pub redactor: Arc<crate::redact::Redactor>,
    /// The notice engine's templates, channel wake-ups and counters (None: not running).
    pub notices: Option<crate::notices::NoticeHub>,
    /// The time zone of the reports' "today" (`[reports] timezone`, src/api/reports.rs).
    pub report_tz: jiff::tz::TimeZone,
}

impl AppState {
    /// Builds the state; the token is hashed at once.
    pub fn new(
        store: Arc<Store>,
        policy: Policy,
        token: &SecretString,
        max_body_bytes: usize,
    ) -> Self {
        AppState {
            store,
            policy,
            token_hash: Sha256::digest(token.expose_secret().as_bytes()).into(),
            max_body_bytes,
            charset: Charset::Koi8R,
            outbox_wake: Arc::new(Notify::new()),
            outbound: None,
            intake: None,
            reloadable: None,
            health: Arc::default(),
            source_health: None,
            source_poll: std::time::Duration::from_secs(60),
            redactor: Arc::new(crate::redact::Redactor::new([token.expose_secret()])),
            notices: None,
            report_tz: jiff::tz::TimeZone::UTC,
        }
    }
}

impl AppState {
    /// The borrowed parts the shared operations take (src/operations.rs).
    pub fn ops(&self) -> crate::operations::Ops<'_> {
        crate::operations::Ops {
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

    /// The owned parts, for another driver built beside the API (the web page).
    pub fn shared(&self) -> crate::operations::Shared {
        crate::operations::Shared {
            store: self.store.clone(),
            policy: self.policy.clone(),
            outbox_wake: self.outbox_wake.clone(),
            notices: self.notices.clone(),
            intake: self.intake.clone(),
            reloadable: self.reloadable.clone(),
            redactor: self.redactor.clone(),
            charset: self.charset,
            health: self.health.clone(),
        }
    }
}

type Shared = State<Arc<AppState>>;

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/clients", post(create_client))
        .route("/clients/{id}", get(get_client).put(update_client))
        .route("/clients/{id}/log", get(client_log))
        .route("/domains", post(order_domain).get(list_domains))
        .route("/domains/{domain}", get(get_domain))
        .route("/domains/{domain}/payment", post(mark_paid))
        .route("/domains/{domain}/renew", post(renew))
        .route("/domains/{domain}/resolve", post(resolve))
        .route("/domains/{domain}/cancel", post(cancel))
        .route("/domains/{domain}/log", get(domain_log))
        .route("/log", get(global_log))
        .route("/requests", get(list_requests))
        .route("/requests/{id}", get(get_request))
        .route("/requests/{id}/log", get(request_log))
        .route("/requests/{id}/retry", post(retry))
        .route("/requests/{id}/outcome", post(record_outcome))
        .route("/requests/{id}/render", get(render_preview))
        .route("/stats", get(stats))
        .route("/inbox", get(inbound::list))
        .route("/inbox/message", get(inbound::show))
        .route("/inbox/assign", post(inbound::assign))
        .route("/inbox/dismiss", post(inbound::dismiss))
        .route("/rules/test", post(inbound::test))
        .route("/reload", post(inbound::reload))
        .route("/import", post(import::import))
        .merge(notices::routes())
        .merge(reports::routes())
        .merge(lifecycle::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/v1", v1)
        .merge(notices::public_routes())
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                field: "method".into(),
                message: "this endpoint does not take that method; see README.md for the API"
                    .into(),
            }
        })
        .fallback(|| async {
            ApiError::not_found("path", "no such endpoint; see README.md for the API")
        })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal("a handler panicked").into_response()
        }))
        // The span names the path only: a query string may carry a token (never logged).
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<Body>| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                },
            ),
        )
        .with_state(state)
}

/// `Authorization: Bearer <token>` (RFC 6750 §2.1), compared by hash so timing says nothing.
async fn require_token(State(state): Shared, req: HttpRequest, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t)
        .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
    if presented != Some(state.token_hash) {
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            field: "Authorization".into(),
            message: "send the API token as \"Authorization: Bearer <token>\"".into(),
        }
        .into_response();
    }
    next.run(req).await
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?
}

/// The daemon's "now" for handlers.
fn now() -> jiff::Timestamp {
    crate::clock::now()
}

/// Applies an event now, as the daemon does (src/operations.rs, shared with the web page).
fn apply_now(state: &AppState, event: Event, field: &str) -> Result<Applied, ApiError> {
    Ok(crate::operations::apply_now(state.ops(), event, field)?)
}

/// Wakes the outbox worker when the transition queued a request (and the notice channels when
/// it wrote a notice).
fn wake_outbox(state: &AppState, t: &crate::core::Transition) {
    crate::operations::wake(state.ops(), t);
}

/// Reads a JSON body within the size limit (413 past it, 400 if it is not JSON). The
/// Content-Type is not insisted on: `curl -d` sends a form type with a JSON body.
async fn read_json(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "body_too_large",
        field: "body".into(),
        message: format!("the body is larger than {} bytes", state.max_body_bytes),
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > state.max_body_bytes
    {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    strict_json::parse(&bytes).map_err(|e| match e {
        strict_json::StrictError::Duplicate(path) => ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "duplicate_key",
            field: path.clone(),
            message: format!("the key {path:?} is given twice; give it once"),
        },
        strict_json::StrictError::Syntax(e) => {
            ApiError::malformed(format!("the body is not valid JSON: {e}"))
        }
    })
}

fn today() -> jiff::civil::Date {
    crate::core::today(crate::clock::now())
}

/// A path parameter; one that is not valid UTF-8 is refused with error JSON naming it.
fn param(p: Result<Path<String>, PathRejection>, field: &str) -> Result<String, ApiError> {
    match p {
        Ok(Path(v)) => Ok(v),
        Err(e) => Err(ApiError::invalid(field, format!("cannot be read: {e}"))),
    }
}

fn parse_domain_path(s: &str) -> Result<DomainName, ApiError> {
    input::domain_name("domain", s)
}

fn parse_client_path(s: &str) -> Result<ClientId, ApiError> {
    ClientId::parse(s).map_err(|e| ApiError::invalid("id", e.0))
}

fn parse_request_path(s: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(s).map_err(|e| ApiError::invalid("request_id", e.0))
}

/// The domain's current view (with its open request).
fn domain_view(store: &Store, name: &DomainName) -> Result<Value, ApiError> {
    let d = store
        .domain(name)
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found("domain", format!("domain {name} has no order")))?;
    let open = match d.open_request {
        Some(id) => store.request(id).map_err(ApiError::from_store)?,
        None => None,
    };
    Ok(views::domain(&d, open.as_ref()))
}

async fn create_client(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = read_json(&state, &headers, body).await?;
    let new = input::new_client(&v, today())?;
    check_charset(&state, &new.registrant)?;
    blocking(move || {
        let id = new.id.clone();
        let applied = apply_now(&state, Event::CreateClient(new), "id")?;
        let c = state
            .store
            .client(&id)
            .map_err(ApiError::from_store)?
            .ok_or_else(|| ApiError::internal("client vanished"))?;
        let status = if applied.transition.is_noop() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((status, Json(views::client(&c))).into_response())
    })
    .await
}

async fn get_client(
    State(state): Shared,
    path_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = param(path_id, "id")?;
    let id = parse_client_path(&id)?;
    blocking(move || {
        let c = state
            .store
            .client(&id)
            .map_err(ApiError::from_store)?
            .ok_or_else(|| ApiError::not_found("id", format!("client {id} does not exist")))?;
        Ok(Json(views::client(&c)))
    })
    .await
}

async fn update_client(
    State(state): Shared,
    path_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = param(path_id, "id")?;
    let id = parse_client_path(&id)?;
    let v = read_json(&state, &headers, body).await?;
    let o = input::Obj::root(&v)?;
    o.only(&["registrant", "contact"])?;
    let (registrant, contact) = input::registrant_and_contact(&o, today())?;
    check_charset(&state, &registrant)?;
    blocking(move || {
        apply_now(
            &state,
            Event::UpdateClient {
                id: id.clone(),
                registrant,
                contact,
            },
            "id",
        )?;
        let c = state
            .store
            .client(&id)
            .map_err(ApiError::from_store)?
            .ok_or_else(|| ApiError::internal("client vanished"))?;
        Ok(Json(views::client(&c)))
    })
    .await
}

/// The idempotency key of a request, if the panel sent one (1..=255 visible ASCII characters).
fn idempotency_key(headers: &HeaderMap, route: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v.to_str().unwrap_or_default().trim();
    if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(format!("{route}\0{k}")))
}

/// The view of `domain` as transition `t` wrote it, when `t` wrote the domain and (if it has
/// one) its open request; None when the store must be read.
fn transition_view(t: &crate::core::Transition, domain: &DomainName) -> Option<Value> {
    let d = t.domains.iter().find(|d| d.name == *domain)?;
    let open = match d.open_request {
        Some(id) => Some(t.requests.iter().find(|r| r.id == id)?),
        None => None,
    };
    Some(views::domain(d, open))
}

/// Applies `event` honouring an `Idempotency-Key`: the first answer is stored with the event
/// in one transaction; the same key and body replays it; the same key and another body is 409.
fn apply_keyed(
    state: &AppState,
    key: Option<String>,
    body: &Value,
    event: Event,
    domain: DomainName,
) -> Result<Response, ApiError> {
    // The answer is the domain as the transition left it (no second read of the store) when
    // the transition carries it and its open request; otherwise it is read back.
    let answer = |store: &Store, t: &crate::core::Transition| -> Result<Value, ApiError> {
        match transition_view(t, &domain) {
            Some(v) => Ok(v),
            None => domain_view(store, &domain),
        }
    };
    let Some(key) = key else {
        let applied = apply_now(state, event, "domain")?;
        let body = answer(&state.store, &applied.transition)?;
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    };
    let hash = hex(&Sha256::digest(body.to_string().as_bytes()));
    let mut ids = UuidIds;
    let mut ctx = Ctx {
        now: crate::clock::now(),
        ids: &mut ids,
        policy: &state.policy,
    };
    let outcome = state
        .store
        .apply_idempotent(&key, &hash, event, &mut ctx, |t| {
            let d = t.domains.iter().find(|d| d.name == domain);
            let open = d
                .and_then(|d| d.open_request)
                .and_then(|id| t.requests.iter().find(|r| r.id == id));
            match d {
                Some(d) => (202, views::domain(d, open)),
                None => (202, Value::Null),
            }
        })
        .map_err(|e| ApiError::from_apply(e, "domain"))?;
    match outcome {
        Idempotent::Applied(a) => {
            wake_outbox(state, &a.transition);
            let body = answer(&state.store, &a.transition)?;
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Idempotent::Replay(first) => {
            let status = StatusCode::from_u16(first.status).unwrap_or(StatusCode::ACCEPTED);
            let mut resp = (status, Json(first.body)).into_response();
            resp.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
            Ok(resp)
        }
        Idempotent::Mismatch => Err(ApiError::conflict(
            "Idempotency-Key",
            "this key was used with a different body",
        )),
    }
}

/// R01 takes only KOI8-R or windows-1251: text that cannot be written in the configured charset
/// (after the documented transliteration) is refused when accepted, not at send time.
fn check_charset(state: &AppState, r: &crate::core::Registrant) -> Result<(), ApiError> {
    match crate::outbound::render::unencodable_registrant_field(state.charset, r) {
        Some((field, c)) => Err(charset_error(state, field, c)),
        None => Ok(()),
    }
}

fn charset_error(state: &AppState, field: String, c: char) -> ApiError {
    ApiError::invalid(
        field,
        format!(
            "holds {c:?} (U+{:04X}), which {} cannot carry; the registrar accepts only that charset",
            c as u32,
            state.charset.label()
        ),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn order_domain(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, "POST /v1/domains")?;
    let v = read_json(&state, &headers, body).await?;
    let order = input::domain_order(&v)?;
    order
        .name
        .check_tld_rules(&state.policy.tld_rules)
        .map_err(|e| ApiError::invalid("domain", e.0))?;
    if let Some((field, c)) =
        crate::outbound::render::unencodable_description(state.charset, &order.description)
    {
        return Err(charset_error(&state, field, c));
    }
    let name = order.name.clone();
    blocking(move || apply_keyed(&state, key, &v, Event::OrderDomain(order), name)).await
}

async fn get_domain(
    State(state): Shared,
    path_domain: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let domain = param(path_domain, "domain")?;
    let name = parse_domain_path(&domain)?;
    blocking(move || domain_view(&state.store, &name).map(Json)).await
}

async fn mark_paid(
    State(state): Shared,
    path_domain: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let domain = param(path_domain, "domain")?;
    let name = parse_domain_path(&domain)?;
    let v = read_json(&state, &headers, body).await?;
    input::Obj::root(&v)?.only(&[])?;
    blocking(move || {
        apply_now(
            &state,
            Event::MarkPaid {
                domain: name.clone(),
            },
            "domain",
        )?;
        domain_view(&state.store, &name).map(Json)
    })
    .await
}

async fn renew(
    State(state): Shared,
    path_domain: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let domain = param(path_domain, "domain")?;
    let name = parse_domain_path(&domain)?;
    let key = idempotency_key(&headers, &format!("POST /v1/domains/{name}/renew"))?;
    let v = read_json(&state, &headers, body).await?;
    let o = input::Obj::root(&v)?;
    o.only(&["years"])?;
    let years = o.number("years", 1, 10, Some(1))? as u8;
    let event = Event::Renew {
        domain: name.clone(),
        years,
        actor: Actor::Api,
    };
    blocking(move || apply_keyed(&state, key, &v, event, name)).await
}

async fn resolve(
    State(state): Shared,
    path_domain: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let domain = param(path_domain, "domain")?;
    let name = parse_domain_path(&domain)?;
    let v = read_json(&state, &headers, body).await?;
    let o = input::Obj::root(&v)?;
    o.only(&["outcome", "expires", "note"])?;
    let expires = o.opt_date("expires")?;
    let outcome = match o.text("outcome", 16)?.as_str() {
        "registered" => Resolution::Registered { expires },
        "error" => {
            if expires.is_some() {
                return Err(ApiError::invalid(
                    "expires",
                    "only goes with outcome \"registered\"",
                ));
            }
            Resolution::Error
        }
        other => {
            return Err(ApiError::invalid(
                "outcome",
                format!("{other:?}: expected \"registered\" or \"error\""),
            ));
        }
    };
    let note = o.text("note", 1000)?;
    blocking(move || {
        apply_now(
            &state,
            Event::Resolve {
                domain: name.clone(),
                outcome,
                note,
            },
            "domain",
        )?;
        domain_view(&state.store, &name).map(Json)
    })
    .await
}

async fn cancel(
    State(state): Shared,
    path_domain: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let domain = param(path_domain, "domain")?;
    let name = parse_domain_path(&domain)?;
    let v = read_json(&state, &headers, body).await?;
    let o = input::Obj::root(&v)?;
    o.only(&["note"])?;
    let note = o.opt_text("note", 1000)?;
    blocking(move || {
        apply_now(
            &state,
            Event::Cancel {
                domain: name.clone(),
                note,
            },
            "domain",
        )?;
        domain_view(&state.store, &name).map(Json)
    })
    .await
}

async fn retry(
    State(state): Shared,
    path_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = param(path_id, "request_id")?;
    let id = parse_request_path(&id)?;
    blocking(move || {
        let new = crate::operations::retry(state.ops(), id)?;
        let body = json!({
            "retried": id,
            "new_request": new.as_ref().map(views::request),
        });
        Ok((StatusCode::ACCEPTED, Json(body)).into_response())
    })
    .await
}

/// `POST /v1/requests/{id}/outcome`: the operator records what the registrar answered.
async fn record_outcome(
    State(state): Shared,
    path_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = param(path_id, "request_id")?;
    let id = parse_request_path(&id)?;
    let v = read_json(&state, &headers, body).await?;
    let outcome = input::reply_outcome(&v)?;
    let note = input::Obj::root(&v)?.text("note", 1000)?;
    blocking(move || {
        apply_now(
            &state,
            Event::RecordOutcome {
                request: id,
                outcome,
                note,
            },
            "request_id",
        )?;
        let r = state
            .store
            .request(id)
            .map_err(ApiError::from_store)?
            .ok_or_else(|| ApiError::internal("request vanished"))?;
        Ok(Json(views::request(&r)))
    })
    .await
}

/// `GET /v1/requests/{id}/render`: the request e-mail as it would be sent now, password masked.
async fn render_preview(
    State(state): Shared,
    path_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = param(path_id, "request_id")?;
    let id = parse_request_path(&id)?;
    let setup = match &state.outbound {
        Some(s) => match s.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        },
        None => {
            return Err(ApiError::conflict(
                "request_id",
                "no registrar profile is loaded",
            ));
        }
    };
    blocking(move || {
        if state
            .store
            .request(id)
            .map_err(ApiError::from_store)?
            .is_none()
        {
            return Err(ApiError::not_found(
                "request_id",
                format!("request {id} does not exist"),
            ));
        }
        let m = render_request(&state.store, &setup, id)
            .map_err(|e| ApiError::conflict("request_id", e))?;
        Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            m.copy,
        )
            .into_response())
    })
    .await
}

async fn get_request(
    State(state): Shared,
    path_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = param(path_id, "request_id")?;
    let id = parse_request_path(&id)?;
    blocking(move || {
        let r = state
            .store
            .request(id)
            .map_err(ApiError::from_store)?
            .ok_or_else(|| {
                ApiError::not_found("request_id", format!("request {id} does not exist"))
            })?;
        Ok(Json(views::request(&r)))
    })
    .await
}

/// Page parameters of log and list queries.
struct Page {
    since: u64,
    limit: usize,
}

fn page(q: &HashMap<String, String>, allowed: &[&str]) -> Result<Page, ApiError> {
    for k in q.keys() {
        if !allowed.contains(&k.as_str()) && k != "since" && k != "limit" {
            return Err(ApiError::invalid(k.clone(), "unknown query parameter"));
        }
    }
    let num = |k: &str, default: u64, max: u64| -> Result<u64, ApiError> {
        match q.get(k) {
            None => Ok(default),
            Some(s) => match s.parse::<u64>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ApiError::invalid(
                    k,
                    format!("{s:?}: expected a whole number up to {max}"),
                )),
            },
        }
    };
    Ok(Page {
        since: num("since", 0, u64::MAX)?,
        limit: num("limit", 100, 1000)?.max(1) as usize,
    })
}

async fn scoped_log(
    state: Arc<AppState>,
    scope: LogScope,
    q: HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let p = page(&q, &[])?;
    blocking(move || {
        let entries = state
            .store
            .log_of(&scope, p.since, p.limit)
            .map_err(ApiError::from_store)?;
        Ok(Json(views::log_page(&entries, p.since)))
    })
    .await
}

async fn domain_log(
    State(state): Shared,
    path_domain: Result<Path<String>, PathRejection>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let domain = param(path_domain, "domain")?;
    let name = parse_domain_path(&domain)?;
    scoped_log(state, LogScope::Domain(name), q).await
}

async fn client_log(
    State(state): Shared,
    path_id: Result<Path<String>, PathRejection>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = param(path_id, "id")?;
    let id = parse_client_path(&id)?;
    scoped_log(state, LogScope::Client(id), q).await
}

async fn request_log(
    State(state): Shared,
    path_id: Result<Path<String>, PathRejection>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = param(path_id, "request_id")?;
    let id = parse_request_path(&id)?;
    scoped_log(state, LogScope::Request(id), q).await
}

async fn global_log(
    State(state): Shared,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let p = page(&q, &[])?;
    blocking(move || {
        let entries = state
            .store
            .log_since(p.since, p.limit)
            .map_err(ApiError::from_store)?;
        Ok(Json(views::log_page(&entries, p.since)))
    })
    .await
}

async fn list_domains(
    State(state): Shared,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let p = page(&q, &["status", "client"])?;
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(DomainStatus::parse(s).ok_or_else(|| {
            let all: Vec<&str> = DomainStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid(
                "status",
                format!("{s:?}: expected one of {}", all.join(", ")),
            )
        })?),
    };
    let client = match q.get("client") {
        None => None,
        Some(c) => Some(ClientId::parse(c).map_err(|e| ApiError::invalid("client", e.0))?),
    };
    blocking(move || {
        let domains = state
            .store
            .list_domains(status, client.as_ref(), p.limit)
            .map_err(ApiError::from_store)?;
        let items: Vec<Value> = domains.iter().map(|d| views::domain(d, None)).collect();
        Ok(Json(json!({ "domains": items })))
    })
    .await
}

async fn list_requests(
    State(state): Shared,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let p = page(&q, &["state"])?;
    let s = q
        .get("state")
        .ok_or_else(|| ApiError::invalid("state", "is required, e.g. ?state=TimedOut"))?;
    let st = RequestState::ALL
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            let all: Vec<&str> = RequestState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid(
                "state",
                format!("{s:?}: expected one of {}", all.join(", ")),
            )
        })?;
    blocking(move || {
        let reqs = state
            .store
            .requests_in_state(st, p.limit)
            .map_err(ApiError::from_store)?;
        let items: Vec<Value> = reqs.iter().map(views::request).collect();
        Ok(Json(json!({ "requests": items })))
    })
    .await
}

async fn stats(State(state): Shared) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let c = state.store.counts().map_err(ApiError::from_store)?;
        Ok(Json(serde_json::to_value(c).unwrap_or(Value::Null)))
    })
    .await
}
