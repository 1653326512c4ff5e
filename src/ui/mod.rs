//! The operator web page under `/ui` (issue 14): server-rendered HTML (minijinja, templates and
//! assets inside the binary), plain forms, no script needed. It calls the same functions as the
//! `/v1` handlers ([`crate::operations`]), never the API over HTTP, and never imports `api`.
//!
//! Safety (README "The operator web page"): operators log in with their own token
//! (`[[ui.operators]]`); a server-side session in sled with idle and absolute timeouts; the
//! cookie is `HttpOnly; SameSite=Strict; Path=/ui`; every POST is checked against cross-origin
//! requests (Fetch Metadata, then Origin vs Host); no GET changes state; viewers may not act;
//! every action is logged as `operator:<name>`; the login is rate-limited; `/v1` never reads
//! the cookie. Every response carries a CSP with only 'self' sources and no inline script.

mod actions;
pub mod auth;
pub mod form;
mod pages;
mod render;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;

use crate::config::ui::{UiConfig, UiRole};
use crate::operations::{OpError, OpErrorKind, Shared};

pub use auth::Operator;

/// Where time comes from (tests pin it; the daemon reads the system clock).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every page shares.
pub struct UiState {
    /// The daemon's shared parts (store, intake, reload, wake-ups).
    pub shared: Shared,
    /// The configured operators with their token hashes.
    pub logins: Vec<auth::Login>,
    /// `[ui]` settings.
    pub config: UiConfig,
    /// The configuration summary for the about page (no secrets).
    pub about: Vec<(String, String)>,
    /// The clock.
    pub clock: Clock,
    /// The reports' time zone (`[reports] timezone`): "today" for the reports page.
    pub report_tz: jiff::tz::TimeZone,
    limiter: Mutex<auth::Limiter>,
    templates: render::Templates,
}

impl UiState {
    /// Builds the state, reading every operator's token (the tokens are hashed at once).
    pub fn new(
        shared: Shared,
        config: UiConfig,
        about: Vec<(String, String)>,
    ) -> Result<UiState, String> {
        let logins = auth::Login::load(&config)?;
        Ok(UiState {
            shared,
            logins,
            config,
            about,
            clock: Arc::new(Timestamp::now),
            report_tz: jiff::tz::TimeZone::UTC,
            limiter: Mutex::default(),
            templates: render::Templates::new()?,
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }
}

/// The page's state from the configuration, or None when the page is off (no operators, or
/// `[ui] enabled = false`). Reads every operator's token file.
pub fn build(
    config: &crate::config::Config,
    shared: Shared,
) -> Result<Option<Arc<UiState>>, String> {
    if !config.ui.active() {
        return Ok(None);
    }
    let about = about(config);
    UiState::new(shared, config.ui.clone(), about).map(|mut s| {
        s.report_tz = config.reports.timezone.clone();
        Some(Arc::new(s))
    })
}

/// The configuration summary the about page shows: addresses, paths, names; never a secret.
pub fn about(config: &crate::config::Config) -> Vec<(String, String)> {
    let c = config;
    vec![
        (
            "Configuration file".into(),
            c.source.as_ref().map_or_else(
                || "embedded defaults".to_owned(),
                |p| p.display().to_string(),
            ),
        ),
        ("API and page address".into(), c.api.listen.to_string()),
        ("Store".into(), c.store.path.display().to_string()),
        ("Registrar profile".into(), c.registrar.profile.clone()),
        ("Registrar gateway".into(), c.registrar.gateway.clone()),
        (
            "Our mailbox (callback)".into(),
            c.registrar.callback.clone(),
        ),
        ("Registrar senders".into(), c.registrar.senders.join(", ")),
        (
            "Reply source".into(),
            match &c.inbound.source {
                crate::config::SourceConfig::Maildir(d) => format!("maildir {}", d.display()),
                crate::config::SourceConfig::Imap => {
                    format!("imap {}:{}/{}", c.imap.host, c.imap.port, c.imap.mailbox)
                }
            },
        ),
        (
            "Request transport".into(),
            match &c.outbound.transport {
                crate::config::TransportConfig::Dir(d) => format!("dir {}", d.display()),
                crate::config::TransportConfig::Sendmail(p) => format!("sendmail {}", p.display()),
                crate::config::TransportConfig::Smtp => {
                    format!("smtp {}:{}", c.smtp.host, c.smtp.port)
                }
            },
        ),
    ]
}

type Ui = State<Arc<UiState>>;

/// The page's routes, all under `/ui`, with their own layers (session, cross-origin check,
/// security headers). Merge it beside the API's router.
pub fn router(state: Arc<UiState>) -> Router {
    Router::new()
        .route("/ui", get(pages::dashboard))
        .route("/ui/", get(pages::dashboard))
        .route("/ui/login", get(pages::login_form).post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/assets/app.css", get(render::css))
        .route("/ui/assets/app.js", get(render::js))
        .route("/ui/assets/favicon.svg", get(render::favicon))
        .route("/ui/domains", get(pages::domains))
        .route(
            "/ui/domains/bulk-retry",
            get(pages::bulk_confirm).post(actions::bulk_retry),
        )
        .route("/ui/domains/{name}", get(pages::domain))
        .route("/ui/domains/{name}/retry", post(actions::domain_retry))
        .route("/ui/domains/{name}/renew", post(actions::renew))
        .route("/ui/domains/{name}/resolve", post(actions::resolve))
        .route("/ui/domains/{name}/cancel", post(actions::cancel))
        .route("/ui/requests", get(pages::requests))
        .route("/ui/requests/{id}", get(pages::request))
        .route("/ui/requests/{id}/retry", post(actions::request_retry))
        .route("/ui/requests/{id}/outcome", post(actions::outcome))
        .route("/ui/unmatched", get(pages::unmatched))
        .route("/ui/unmatched/message", get(pages::message))
        .route(
            "/ui/unmatched/assign",
            get(pages::assign_preview).post(actions::assign),
        )
        .route("/ui/unmatched/dismiss", post(actions::dismiss))
        .route("/ui/rules", get(pages::rules))
        .route("/ui/rules/test", post(pages::rules_test))
        .route("/ui/rules/reload", post(actions::reload))
        .route("/ui/notices", get(pages::notices))
        .route("/ui/webhooks", get(pages::webhooks))
        .route("/ui/webhooks/{id}/replay", post(actions::replay))
        .route("/ui/about", get(pages::about))
        .route("/ui/reports", get(pages::reports))
        .route("/ui/reports/download", get(pages::report_csv))
        .route("/ui/{*rest}", axum::routing::any(pages::not_found))
        .layer(middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// The headers every `/ui` answer carries (CSP with only 'self' sources, no inline script or
/// style; no sniffing, no referrer, no caching, no framing).
async fn security_headers(req: HttpRequest, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// Runs blocking store work off the async threads, as the operator (log entries it writes say
/// `operator:<name>`).
async fn blocking<T: Send + 'static>(
    who: Option<&Operator>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    let name = who.map(|o| o.name.clone());
    tokio::task::spawn_blocking(move || match name {
        Some(n) => crate::store::ui::as_operator(&n, f),
        None => f(),
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "ui: a store task failed");
        plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

/// A short plain answer (used before a page can be rendered).
fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The HTTP status for an operation's refusal.
fn status_of(e: &OpError) -> StatusCode {
    match e.kind {
        OpErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        OpErrorKind::NotFound => StatusCode::NOT_FOUND,
        OpErrorKind::Conflict => StatusCode::CONFLICT,
        OpErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The sentence shown for a refusal (internal details go to the log only).
fn shown_error(e: &OpError) -> String {
    if e.kind == OpErrorKind::Internal {
        tracing::error!(error = %e.message, "ui: internal error");
        "internal error; the daemon's log has the details".to_owned()
    } else if e.field.is_empty() {
        e.message.clone()
    } else {
        format!("{}: {}", e.field, e.message)
    }
}

/// 303 See Other to `to` (after a POST, so a reload does not post again).
fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn role_may_post(role: UiRole, path: &str) -> bool {
    role == UiRole::Operator || matches!(path, "/ui/logout" | "/ui/rules/test")
}

/// Reads a form body within `limit` bytes.
async fn read_form(body: Body, limit: usize) -> Result<form::Fields, form::FieldError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        form::FieldError::new("body", format!("the form is larger than {limit} bytes"))
    })?;
    form::Fields::parse(&bytes)
}
