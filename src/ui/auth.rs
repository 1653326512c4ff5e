//! Who is on the page: operator tokens, the session cookie, the cross-origin check on every
//! POST, the login rate limit.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use jiff::Timestamp;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{UiState, is_write, role_may_post, see_other};
use crate::config::ui::{UiConfig, UiRole};
use crate::store::ui::UiSession;

/// The cookie's name.
pub const COOKIE: &str = "regmail_ui";

/// A configured operator: name, role and the SHA-256 of their token (the token is not kept).
#[derive(Clone)]
pub struct Login {
    /// Name.
    pub name: String,
    /// Role.
    pub role: UiRole,
    hash: [u8; 32],
}

impl Login {
    /// Reads every operator's token file.
    pub fn load(config: &UiConfig) -> Result<Vec<Login>, String> {
        let mut out = Vec::new();
        for (i, o) in config.operators.iter().enumerate() {
            let t = o.load_token(i)?;
            out.push(Login {
                name: o.name.clone(),
                role: o.role,
                hash: Sha256::digest(t.expose_secret().as_bytes()).into(),
            });
        }
        Ok(out)
    }

    /// A login for tests and embedders that hold the token itself.
    pub fn from_token(name: &str, role: UiRole, token: &str) -> Login {
        Login {
            name: name.to_owned(),
            role,
            hash: Sha256::digest(token.as_bytes()).into(),
        }
    }
}

/// The operator a request comes from (a request extension set by [`guard`]).
#[derive(Debug, Clone)]
pub struct Operator {
    /// Name.
    pub name: String,
    /// Role.
    pub role: UiRole,
    /// The session's id (the cookie value; never logged or shown).
    pub session: String,
    /// When the session ends at the latest.
    pub ends: Timestamp,
}

/// The operator whose token this is. Every configured hash is compared, each in constant time,
/// so the time taken says nothing about which one (or how much of one) matched.
pub fn check_token(logins: &[Login], token: &str) -> Option<Login> {
    let presented: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    let mut found = None;
    for l in logins {
        let diff = l
            .hash
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(l.clone());
        }
    }
    found
}

/// A new session id: 256 random bits (two v4 UUIDs, from the OS's generator), hex.
pub fn new_session_id() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// The session cookie's value, if the request carries one.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// True when a state-changing request comes from another site (the Fetch Metadata check of
/// Go 1.25's CrossOriginProtection): `Sec-Fetch-Site` other than `same-origin` or `none` is
/// refused; without it, an `Origin` that is `null` or names another host than `Host` is.
/// Requests with neither (curl, old browsers with SameSite=Strict cookies) pass.
pub fn cross_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin") | Ok("none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match origin_host {
        Some(o) => !o.eq_ignore_ascii_case(host) || host.is_empty(),
        None => true,
    }
}

/// Login attempts in the last minute, per client address and in all.
#[derive(Default)]
pub struct Limiter {
    per_ip: HashMap<IpAddr, VecDeque<i64>>,
    all: VecDeque<i64>,
}

impl Limiter {
    /// Counts an attempt at `now_ms`; false when the address or everyone is over the limit.
    pub fn allow(&mut self, ip: Option<IpAddr>, now_ms: i64, per_ip: u32, global: u32) -> bool {
        let cutoff = now_ms - 60_000;
        let trim = |q: &mut VecDeque<i64>| {
            while q.front().is_some_and(|t| *t <= cutoff) {
                q.pop_front();
            }
        };
        trim(&mut self.all);
        self.per_ip.retain(|_, q| {
            trim(q);
            !q.is_empty()
        });
        if self.all.len() >= global as usize {
            return false;
        }
        if let Some(ip) = ip {
            let q = self.per_ip.entry(ip).or_default();
            if q.len() >= per_ip as usize {
                return false;
            }
            q.push_back(now_ms);
        }
        self.all.push_back(now_ms);
        true
    }
}

/// The client's address, when the server recorded it.
pub fn client_ip(req_ext: &axum::http::Extensions) -> Option<IpAddr> {
    req_ext
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

fn session_alive(state: &UiState, s: &UiSession, now_ms: i64) -> bool {
    let idle = state.config.session_idle.as_millis() as i64;
    let max = state.config.session_max.as_millis() as i64;
    now_ms - s.last_seen_ms < idle
        && now_ms - s.created_ms < max
        && state
            .logins
            .iter()
            .any(|l| l.name == s.operator && l.role.as_str() == s.role)
}

/// Every `/ui` request passes here: POSTs from another site are refused (403, nothing read);
/// pages other than the login and the assets need a live session (else 303 to the login);
/// viewers may not POST (403).
pub async fn guard(
    State(state): State<Arc<UiState>>,
    mut req: HttpRequest,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let write = is_write(req.method());
    if write && cross_origin(req.headers()) {
        tracing::warn!(path = %path, "ui: a cross-site POST was refused");
        return super::render::error_page(
            &state,
            None,
            StatusCode::FORBIDDEN,
            "This form was sent from another site; nothing was changed. Open the page in regmail and send it from there.",
        );
    }
    if path == "/ui/login" || path.starts_with("/ui/assets/") {
        return next.run(req).await;
    }
    let now = state.now();
    let now_ms = now.as_millisecond();
    let id = cookie_value(req.headers());
    let session = match &id {
        Some(id) => {
            let store = state.shared.store.clone();
            let id2 = id.clone();
            match tokio::task::spawn_blocking(move || store.ui_session(&id2)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "ui: reading a session failed");
                    None
                }
                Err(_) => None,
            }
        }
        None => None,
    };
    let (id, session) = match (id, session) {
        (Some(id), Some(s)) if session_alive(&state, &s, now_ms) => (id, s),
        (id, s) => {
            if let (Some(id), Some(_)) = (id, s) {
                // Expired (or its operator was removed): gone for good.
                let store = state.shared.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.remove_ui_session(&id)).await;
            }
            let mut next_path = path.clone();
            if let Some(q) = req.uri().query() {
                next_path.push('?');
                next_path.push_str(q);
            }
            let to = if write || path == "/ui" || path == "/ui/" {
                "/ui/login".to_owned()
            } else {
                format!("/ui/login?next={}", super::form::enc(&next_path))
            };
            return see_other(&to);
        }
    };
    let role = UiRole::parse(&session.role).unwrap_or(UiRole::Viewer);
    let op = Operator {
        name: session.operator.clone(),
        role,
        session: id.clone(),
        ends: Timestamp::from_millisecond(
            (session.last_seen_ms + state.config.session_idle.as_millis() as i64)
                .min(session.created_ms + state.config.session_max.as_millis() as i64),
        )
        .unwrap_or(now),
    };
    if write && !role_may_post(role, &path) {
        return super::render::error_page(
            &state,
            Some(&op),
            StatusCode::FORBIDDEN,
            "Your role is viewer: you can look at everything but not change anything.",
        );
    }
    // Seen again: the idle timeout starts over (written at most once a minute).
    if now_ms - session.last_seen_ms >= 60_000 {
        let store = state.shared.store.clone();
        let s = UiSession {
            last_seen_ms: now_ms,
            ..session
        };
        let _ = tokio::task::spawn_blocking(move || store.put_ui_session(&id, &s)).await;
    }
    req.extensions_mut().insert(op);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn the_cross_origin_table() {
        let host = ("host", "127.0.0.1:7465");
        assert!(!cross_origin(&h(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!cross_origin(&h(&[host, ("sec-fetch-site", "none")])));
        assert!(cross_origin(&h(&[host, ("sec-fetch-site", "same-site")])));
        assert!(cross_origin(&h(&[host, ("sec-fetch-site", "cross-site")])));
        assert!(!cross_origin(&h(&[host])));
        assert!(!cross_origin(&h(&[
            host,
            ("origin", "http://127.0.0.1:7465")
        ])));
        assert!(cross_origin(&h(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(cross_origin(&h(&[host, ("origin", "null")])));
    }

    #[test]
    fn the_limiter_counts_per_address_and_in_all() {
        let mut l = Limiter::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for i in 0..3 {
            assert!(l.allow(Some(a), i, 3, 5));
        }
        assert!(!l.allow(Some(a), 10, 3, 5));
        assert!(l.allow(Some(b), 11, 3, 5));
        assert!(l.allow(Some(b), 12, 3, 5));
        assert!(!l.allow(Some(b), 13, 3, 5), "global limit");
        assert!(l.allow(Some(a), 60_001, 3, 5), "a minute later");
    }

    #[test]
    fn tokens_and_cookies() {
        let logins = [
            Login::from_token("anna", UiRole::Operator, "anna-token-0123456789"),
            Login::from_token("vic", UiRole::Viewer, "vic-token-0123456789"),
        ];
        assert_eq!(
            check_token(&logins, "vic-token-0123456789").map(|l| l.name),
            Some("vic".to_owned())
        );
        assert!(check_token(&logins, "nobody-0123456789").is_none());
        let id = new_session_id();
        assert_eq!(id.len(), 64);
        let headers = h(&[("cookie", &format!("a=b; {COOKIE}={id}"))]);
        assert_eq!(cookie_value(&headers), Some(id.clone()));
        assert_eq!(
            set_cookie(&id, false),
            format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui")
        );
    }
}
