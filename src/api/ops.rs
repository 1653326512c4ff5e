//! Operations endpoints: `/healthz` (alive), `/readyz` (store readable, mail reachable
//! recently), `/metrics` (Prometheus text format 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::json;

use super::{Shared, blocking};
use crate::core::RequestState;
use crate::health::LATENCY_BUCKETS;

/// `GET /healthz`: the process answers. With a test clock running (`crate::clock`) it says so,
/// loudly, with the clock's time.
pub async fn healthz() -> Json<serde_json::Value> {
    match crate::clock::test_clock() {
        None => Json(json!({"status": "ok"})),
        Some(c) => Json(json!({
            "status": "ok",
            "test_clock": {
                "warning": "TEST CLOCK: this daemon runs on a rehearsal clock, never use it in production",
                "now": crate::clock::now(),
                "start": c.start,
                "speed": c.speed,
            }
        })),
    }
}

/// `GET /readyz`: 200 when the store reads, no worker is stuck, the transport's last attempt
/// did not fail and the reply source succeeded within three poll intervals; else 503 with
/// the reasons.
pub async fn readyz(State(state): Shared) -> Response {
    let st = state.clone();
    let store_ok = blocking(move || {
        st.store
            .counts()
            .map_err(super::error::ApiError::from_store)
    })
    .await
    .is_ok();
    // Heartbeats and the reply source are timed on the real clock; the notice queue on the
    // daemon's clock (the test clock, when one runs).
    let now = Timestamp::now();
    let mut problems = Vec::new();
    if !store_ok {
        problems.push("the store cannot be read".to_owned());
    }
    for w in state.health.stuck(now) {
        problems.push(format!("worker stuck: {w}"));
    }
    problems.extend(super::notices::readiness(&state.store, crate::clock::now()));
    let h = &state.health;
    let last_ok = h.transport_last_ok_ms.load(Ordering::Relaxed);
    let last_err = h.transport_last_error_ms.load(Ordering::Relaxed);
    if last_err > last_ok {
        problems.push("the last attempt to hand a request to the mail server failed".into());
    }
    if let Some(src) = &state.source_health {
        let last = h.source_last_ok_ms.load(Ordering::Relaxed);
        let allowed = (state.source_poll.as_millis() as i64 * 3).max(30_000);
        if now.as_millisecond() - last > allowed {
            let why = src
                .last_error()
                .unwrap_or_else(|| "no successful sweep yet".into());
            problems.push(format!(
                "the reply source has not succeeded recently: {why}"
            ));
        }
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": problems.is_empty(), "problems": problems })),
    )
        .into_response()
}

/// `GET /metrics`: the figures an operator graphs and alerts on.
pub async fn metrics(State(state): Shared) -> Response {
    let st = state.clone();
    let gathered = blocking(move || {
        let counts = st
            .store
            .counts()
            .map_err(super::error::ApiError::from_store)?;
        let mut oldest: Option<Timestamp> = None;
        for s in [
            RequestState::Sent,
            RequestState::SendUnknown,
            RequestState::Acknowledged,
        ] {
            for r in st
                .store
                .requests_in_state(s, usize::MAX)
                .map_err(super::error::ApiError::from_store)?
            {
                oldest = Some(oldest.map_or(r.created, |o| o.min(r.created)));
            }
        }
        Ok((counts, oldest))
    })
    .await;
    let Ok((counts, oldest)) = gathered else {
        return (StatusCode::SERVICE_UNAVAILABLE, "store unreadable\n").into_response();
    };
    let now = crate::clock::now();
    let h = &state.health;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, rows: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "regmail_domains",
        "Domains per status.",
        &counts
            .domains
            .iter()
            .map(|(s, n)| (format!("{{status=\"{s}\"}}"), *n as f64))
            .collect::<Vec<_>>(),
    );
    gauge(
        "regmail_requests",
        "Requests per state.",
        &counts
            .requests
            .iter()
            .map(|(s, n)| (format!("{{state=\"{s}\"}}"), *n as f64))
            .collect::<Vec<_>>(),
    );
    gauge(
        "regmail_domains_in_conflict",
        "Domains whose registrar reply contradicts an applied outcome (phase Conflict).",
        &[(String::new(), counts.conflicts as f64)],
    );
    gauge(
        "regmail_outbox_depth",
        "Requests waiting in the outbox.",
        &[(String::new(), counts.outbox as f64)],
    );
    gauge(
        "regmail_awaiting_reply",
        "Requests waiting for the registrar's answer.",
        &[(String::new(), counts.awaiting_reply as f64)],
    );
    gauge(
        "regmail_unmatched_replies",
        "Replies waiting for an operator.",
        &[(String::new(), counts.unmatched as f64)],
    );
    let age = oldest.map_or(0.0, |o| {
        (now.as_millisecond() - o.as_millisecond()) as f64 / 1000.0
    });
    gauge(
        "regmail_oldest_request_awaiting_reply_seconds",
        "Age of the oldest request awaiting the registrar.",
        &[(String::new(), age)],
    );
    let last_poll = h.source_last_ok_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    gauge(
        "regmail_source_last_success_timestamp_seconds",
        "Last successful IMAP poll or Maildir sweep (Unix time).",
        &[(String::new(), last_poll)],
    );
    let workers: Vec<(String, f64)> = ["api", "outbox", "intake", "scheduler"]
        .iter()
        .map(|w| {
            (
                format!("{{worker=\"{w}\"}}"),
                if h.stuck(Timestamp::now()).iter().any(|s| s.starts_with(w)) {
                    0.0
                } else {
                    1.0
                },
            )
        })
        .collect();
    gauge(
        "regmail_worker_up",
        "1 while the worker makes progress.",
        &workers,
    );
    gauge(
        "regmail_test_clock",
        "1 when the daemon runs on a TEST CLOCK (REGMAIL_TEST_CLOCK; rehearsals only), else 0.",
        &[(
            String::new(),
            if crate::clock::test_clock().is_some() {
                1.0
            } else {
                0.0
            },
        )],
    );
    for (name, help, v) in [
        (
            "regmail_transport_sent_total",
            "Requests handed to the mail server.",
            h.transport_sent.load(Ordering::Relaxed),
        ),
        (
            "regmail_transport_errors_total",
            "Failed attempts to hand a request to the mail server (SMTP errors).",
            h.transport_errors.load(Ordering::Relaxed),
        ),
        (
            "regmail_source_errors_total",
            "Errors reading replies (IMAP errors).",
            h.source_errors.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let name = "regmail_reply_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a reply's arrival to its status change.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0u64;
    for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += h.latency_counts[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
    }
    cumulative += h.latency_counts[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(
        out,
        "{name}_sum {}",
        h.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "{name}_count {cumulative}");
    let st = state.clone();
    if let Ok(text) = tokio::task::spawn_blocking(move || super::notices::metrics_text(&st)).await {
        out.push_str(&text);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
