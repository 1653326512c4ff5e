//! `GET /v1/lifecycle/preview?days=N` (issue 11 part 4): everything the lifecycle pass will do
//! and send in the next N days, per domain and recipient, computed by the same functions that
//! will act (`crate::lifecycle::preview`). Nothing is written.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, Shared, blocking};

/// The lifecycle routes (under `/v1`, behind the token).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/lifecycle/preview", get(preview))
}

/// `GET /v1/lifecycle/preview?days=N` (default 30, at most 400).
async fn preview(
    State(state): Shared,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    for k in q.keys() {
        if k != "days" {
            return Err(ApiError::invalid(k.clone(), "unknown query parameter"));
        }
    }
    let max = crate::lifecycle::preview::MAX_DAYS;
    let days = match q.get("days") {
        None => 30,
        Some(d) => d.parse::<u32>().ok().filter(|d| *d <= max).ok_or_else(|| {
            ApiError::invalid(
                "days",
                format!("{d:?}: expected a whole number of days, 0..={max}"),
            )
        })?,
    };
    let now = crate::clock::now();
    blocking(move || {
        let items = crate::lifecycle::preview(&state.store, &state.policy, now, days)
            .map_err(ApiError::from_store)?;
        Ok(Json(json!({
            "from": crate::core::today(now).to_string(),
            "days": days,
            "items": items,
        })))
    })
    .await
}
