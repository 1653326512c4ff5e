//! Report routes (issue 11 parts 3 and 5): `GET /v1/reports/expiring?within=30`,
//! `GET /v1/reports/expired`, `GET /v1/reports/deleted`. JSON by default; CSV (RFC 4180,
//! `text/csv; charset=utf-8`) when the request's `Accept` prefers `text/csv` (RFC 9110
//! §12.5.1). The reports themselves are in `src/reports/`; "today" is the clock's date in
//! `[reports] timezone`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::error::ApiError;
use super::notices::only_params;
use super::{AppState, blocking};
use crate::reports::{self, Kind};

type Shared = State<Arc<AppState>>;

/// The token-protected routes, nested under `/v1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/reports/expiring", get(expiring))
        .route("/reports/expired", get(expired))
        .route("/reports/deleted", get(deleted))
}

/// True when `Accept` asks for CSV: `text/csv` is listed with a q above 0 and at least the q
/// of `application/json` (a bare `*/*` or no `Accept` keeps JSON, the default).
pub fn wants_csv(headers: &HeaderMap) -> bool {
    let mut csv = 0.0f32;
    let mut json = 0.0f32;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "text/csv" => csv = csv.max(q),
                "application/json" => json = json.max(q),
                _ => {}
            }
        }
    }
    csv > 0.0 && csv >= json
}

fn bad_query(field: &str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_query",
        field: field.into(),
        message,
    }
}

async fn answer(state: Arc<AppState>, kind: Kind, csv: bool) -> Result<Response, ApiError> {
    let today = reports::today(super::now(), &state.report_tz);
    let report = blocking(move || {
        reports::make(&state.store, kind, today).map_err(|e| match e {
            reports::ReportError::Store(e) => ApiError::from_store(e),
        })
    })
    .await?;
    if !csv {
        return Ok(Json(report.to_json()).into_response());
    }
    let mut resp = reports::csv::render(&report).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reports::csv::CONTENT_TYPE),
    );
    // RFC 6266: a browser saves it under a useful name; the name is ASCII we made.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        kind.file_name(today)
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(resp)
}

async fn expiring(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    only_params(&q, &["within"])?;
    let within = match q.get("within") {
        None => 30,
        Some(s) => reports::parse_within(s).map_err(|m| bad_query("within", m))?,
    };
    answer(state, Kind::Expiring { within }, wants_csv(&headers)).await
}

async fn expired(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    only_params(&q, &[])?;
    answer(state, Kind::Expired, wants_csv(&headers)).await
}

async fn deleted(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    only_params(&q, &[])?;
    answer(state, Kind::Deleted, wants_csv(&headers)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn csv_only_when_asked_for() {
        assert!(!wants_csv(&HeaderMap::new()));
        assert!(!wants_csv(&accept("*/*")));
        assert!(!wants_csv(&accept("application/json")));
        assert!(wants_csv(&accept("text/csv")));
        assert!(wants_csv(&accept("Text/CSV; charset=utf-8")));
        assert!(wants_csv(&accept("application/json;q=0.5, text/csv")));
        assert!(!wants_csv(&accept("application/json, text/csv;q=0.5")));
        assert!(!wants_csv(&accept("text/csv;q=0")));
    }
}
