//! Templates and assets, inside the binary (`ui/templates/`, `ui/assets/`), rendered with
//! minijinja: HTML auto-escaping on (every value from a registrar or a panel is text, never
//! markup), undefined values refused.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Value, json};

use super::{Operator, UiState};

const TEMPLATES: &[(&str, &str)] = &[
    (
        "layout.html",
        include_str!("../../ui/templates/layout.html"),
    ),
    (
        "macros.html",
        include_str!("../../ui/templates/macros.html"),
    ),
    ("login.html", include_str!("../../ui/templates/login.html")),
    ("error.html", include_str!("../../ui/templates/error.html")),
    (
        "dashboard.html",
        include_str!("../../ui/templates/dashboard.html"),
    ),
    (
        "domains.html",
        include_str!("../../ui/templates/domains.html"),
    ),
    ("bulk.html", include_str!("../../ui/templates/bulk.html")),
    (
        "domain.html",
        include_str!("../../ui/templates/domain.html"),
    ),
    (
        "requests.html",
        include_str!("../../ui/templates/requests.html"),
    ),
    (
        "request.html",
        include_str!("../../ui/templates/request.html"),
    ),
    (
        "unmatched.html",
        include_str!("../../ui/templates/unmatched.html"),
    ),
    (
        "message.html",
        include_str!("../../ui/templates/message.html"),
    ),
    (
        "assign.html",
        include_str!("../../ui/templates/assign.html"),
    ),
    ("rules.html", include_str!("../../ui/templates/rules.html")),
    (
        "notices.html",
        include_str!("../../ui/templates/notices.html"),
    ),
    (
        "webhooks.html",
        include_str!("../../ui/templates/webhooks.html"),
    ),
    ("about.html", include_str!("../../ui/templates/about.html")),
    (
        "reports.html",
        include_str!("../../ui/templates/reports.html"),
    ),
];

const CSS: &str = include_str!("../../ui/assets/app.css");
const JS: &str = include_str!("../../ui/assets/app.js");
const FAVICON: &str = include_str!("../../ui/assets/favicon.svg");

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Loads every template (a syntax error is a bug caught by the tests).
    pub fn new() -> Result<Templates, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .map_err(|e| format!("ui template {name}: {e}"))?;
        }
        Ok(Templates { env })
    }

    fn render(&self, name: &str, ctx: &Value) -> Result<String, String> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| format!("ui template {name}: {e}"))?;
        t.render(minijinja::value::Serde(ctx)).map_err(|e| {
            let mut msg = format!("ui template {name}: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        })
    }
}

/// Renders page `name` with `ctx` (an object) for `who`, with `status`.
pub fn page(
    state: &UiState,
    who: Option<&Operator>,
    status: StatusCode,
    name: &str,
    mut ctx: Value,
) -> Response {
    if let Some(o) = ctx.as_object_mut() {
        o.insert(
            "who".into(),
            match who {
                Some(w) => json!({ "name": w.name, "role": w.role.as_str(),
                    "may_act": w.role == crate::config::ui::UiRole::Operator }),
                None => Value::Null,
            },
        );
        o.entry("flash").or_insert(Value::Null);
        o.entry("error").or_insert(Value::Null);
        o.entry("refresh").or_insert(Value::Null);
    }
    match state.templates.render(name, &ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "ui: a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "internal error; the daemon's log has the details",
            )
                .into_response()
        }
    }
}

/// An error page: `message` in `p#error`.
pub fn error_page(
    state: &UiState,
    who: Option<&Operator>,
    status: StatusCode,
    message: &str,
) -> Response {
    page(
        state,
        who,
        status,
        "error.html",
        json!({
            "title": status.canonical_reason().unwrap_or("Error"),
            "error": message,
        }),
    )
}

/// `GET /ui/assets/app.css`.
pub async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// `GET /ui/assets/app.js`: the dashboard's refresh (paused while the tab is hidden).
pub async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// `GET /ui/assets/favicon.svg` (linked from every page, so the browser asks nothing else).
pub async fn favicon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles() {
        super::Templates::new().unwrap();
    }
}
