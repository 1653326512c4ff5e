//! The webhook channel, per the Standard Webhooks specification
//! (research/anchors-notifications.md §1.1): a POST of the notice as JSON with `webhook-id`
//! (the notice id: the same on every retry and replay, and in `GET /v1/events`),
//! `webhook-timestamp` and `webhook-signature` (`v1,` + HMAC-SHA256, one per secret during a
//! rotation). Success is a 2xx within `[notices] webhook_timeout` (15 s); redirects are not
//! followed (3xx is a failure); `410 Gone` disables the endpoint; `Retry-After` on 429/503 is
//! honoured; other failures retry on `[notices] webhook_schedule`, then the delivery is Failed.
//! An endpoint that has not succeeded for `webhook_disable_after` (5 days) is disabled and the
//! operators get a notice. Deliveries for a disabled endpoint are Held, for a later replay.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use super::{after_failure, elapsed_ms, first_bytes, unix_ms};
use crate::config::NoticesConfig;
use crate::core::NoticeDraft;
use crate::notices::NoticeHub;
use crate::notices::model::{Attempt, Channel, Delivery, DeliveryState, Endpoint};
use crate::notices::render::webhook_body as body;
use crate::notices::sign::signature;
use crate::store::notices::{attempt_update, endpoint_write};
use crate::store::{Extra, Store};

/// How many webhook POSTs run at once.
const PARALLEL: usize = 8;

/// The webhook channel worker.
pub struct WebhookChannel {
    /// The store.
    pub store: Arc<Store>,
    /// Wake-up, counters.
    pub hub: NoticeHub,
    /// `[notices]`.
    pub config: NoticesConfig,
    /// Liveness beat.
    pub beat: Option<Arc<crate::health::Worker>>,
    /// The HTTP client (its connections are reused across sweeps).
    agent: ureq::Agent,
}

impl WebhookChannel {
    /// A worker with its HTTP client (no redirects, `webhook_timeout` in all).
    pub fn new(
        store: Arc<Store>,
        hub: NoticeHub,
        config: NoticesConfig,
        beat: Option<Arc<crate::health::Worker>>,
    ) -> Self {
        let agent = agent(config.webhook_timeout);
        WebhookChannel {
            store,
            hub,
            config,
            beat,
            agent,
        }
    }
}

/// A URL as logged: without its query and fragment, which may carry a panel's token.
fn log_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// What one POST came to.
struct Answer {
    status: Option<u16>,
    retry_after: Option<Duration>,
    text: String,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent("regmail-webhooks")
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, headers: &[(&str, String)], body: &[u8]) -> Answer {
    let mut req = agent.post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    match req.send(body) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut buf = Vec::new();
            let _ = resp.body_mut().as_reader().take(200).read_to_end(&mut buf);
            Answer {
                status: Some(status),
                retry_after,
                text: first_bytes(&buf, 200),
            }
        }
        Err(e) => Answer {
            status: None,
            retry_after: None,
            text: first_bytes(e.to_string().as_bytes(), 200),
        },
    }
}

impl WebhookChannel {
    /// Runs until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        loop {
            if let Some(b) = &me.beat {
                b.beat();
            }
            let n = me.clone().sweep().await;
            if *stop.borrow() {
                break;
            }
            if n == 0 {
                let s = me.store.clone();
                let next = tokio::task::spawn_blocking(move || s.next_due(Channel::Webhook))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten();
                let wait = next.map_or(Duration::from_secs(1), |at| {
                    let ms = at.as_millisecond() - crate::clock::now().as_millisecond();
                    Duration::from_millis(ms.clamp(0, 1000) as u64)
                });
                tokio::select! {
                    _ = me.hub.wake_webhook.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            if *stop.borrow() {
                break;
            }
        }
    }

    /// Posts every due webhook delivery (up to [`PARALLEL`] at once); returns how many.
    pub async fn sweep(self: Arc<Self>) -> usize {
        let s = self.store.clone();
        let due = match tokio::task::spawn_blocking(move || {
            s.due_deliveries(Channel::Webhook, crate::clock::now(), 256)
        })
        .await
        {
            Ok(Ok(d)) => d,
            _ => return 0,
        };
        let n = due.len();
        // Up to PARALLEL posts in flight; a slow receiver holds one slot, not the batch.
        let mut set = tokio::task::JoinSet::new();
        for id in due {
            if set.len() >= PARALLEL {
                set.join_next().await;
            }
            let me = self.clone();
            let agent = self.agent.clone();
            set.spawn_blocking(move || me.deliver(&agent, id));
        }
        while set.join_next().await.is_some() {}
        n
    }

    /// One attempt of delivery `id` (blocking).
    fn deliver(&self, agent: &ureq::Agent, id: u64) {
        let Ok(Some(d)) = self.store.delivery(id) else {
            return;
        };
        if d.state != DeliveryState::Queued {
            return;
        }
        let now = crate::clock::now();
        let ep_id = d.recipient.strip_prefix("endpoint:").unwrap_or("");
        let (n, ep) = match (self.store.notice(d.notice), self.store.endpoint(ep_id)) {
            (Ok(Some(n)), Ok(Some(ep))) => (n, ep),
            _ => {
                let mut new = d.clone();
                new.state = DeliveryState::Failed;
                new.next_at = None;
                self.save(&d, &new, None, now);
                return;
            }
        };
        if !ep.enabled {
            let mut new = d.clone();
            new.state = DeliveryState::Held;
            new.next_at = None;
            self.save(&d, &new, None, now);
            return;
        }
        let body = body(&n);
        let ts = now.as_second();
        let secrets: Vec<String> = match ep.rotate_until {
            Some(until) if until > now => ep.secrets.clone(),
            _ => ep.secrets.iter().take(1).cloned().collect(),
        };
        let msg_id = n.id.to_string();
        let headers = [
            ("webhook-id", msg_id.clone()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", signature(&secrets, &msg_id, ts, &body)),
        ];
        let start = std::time::Instant::now();
        let a = post(agent, &d.address, &headers, &body);
        let latency = elapsed_ms(start);
        let ok = a.status.is_some_and(|s| (200..300).contains(&s));
        self.hub.webhook.record(ok, latency, unix_ms(now));
        let attempt = Attempt {
            at: now,
            status: a.status,
            latency_ms: latency,
            answer: a.text.clone(),
            ok,
        };
        tracing::info!(delivery = id, notice = n.id, url = %log_url(&d.address), status = ?a.status, latency_ms = latency, "webhook attempt");
        let mut ep_new = ep.clone();
        let mut new = d.clone();
        let mut disabled_why = None;
        if ok {
            new.attempts.push(attempt);
            new.state = DeliveryState::Sent;
            new.next_at = None;
            ep_new.failing_since = None;
        } else if a.status == Some(410) {
            // 410 Gone: the receiver says the endpoint is no more (Standard Webhooks).
            new.attempts.push(attempt);
            new.state = DeliveryState::Held;
            new.next_at = None;
            disabled_why = Some("the endpoint answered 410 Gone".to_owned());
        } else {
            let since = *ep_new.failing_since.get_or_insert(now);
            let honour = match a.status {
                Some(429 | 503) => a.retry_after,
                _ => None,
            };
            new = after_failure(new, attempt, &self.config.webhook_schedule, honour, now);
            let limit = jiff::SignedDuration::try_from(self.config.webhook_disable_after)
                .unwrap_or(jiff::SignedDuration::from_hours(120));
            if now.duration_since(since) >= limit {
                disabled_why = Some(format!("no success since {since}"));
                if new.state == DeliveryState::Queued {
                    new.state = DeliveryState::Held;
                    new.next_at = None;
                }
            }
        }
        if let Some(why) = &disabled_why {
            ep_new.enabled = false;
            ep_new.disabled_reason = Some(why.clone());
        }
        let ep_change = (ep_new != ep).then_some(ep_new);
        self.save(&d, &new, ep_change, now);
        if let Some(why) = disabled_why {
            tracing::warn!(endpoint = %ep.id, url = %log_url(&ep.url), reason = %why, "webhook endpoint disabled");
            let mut data = BTreeMap::new();
            data.insert("url".to_owned(), ep.url.clone());
            data.insert("reason".to_owned(), why);
            let draft = NoticeDraft {
                kind: "operator.webhook_disabled".into(),
                client: None,
                domain: None,
                data,
            };
            if self.store.post_notice(draft, None, now).is_ok() {
                self.hub.wake();
            }
        }
    }

    /// Records an attempt. `ep` is the endpoint as this attempt would leave it; only what the
    /// attempt decides (its failing-since mark, a disablement) is merged into the endpoint as it
    /// is now, under the writer lock: another POST to the same endpoint, or an operator who
    /// enabled, disabled or rotated it meanwhile, is not overwritten by a stale copy.
    fn save(&self, old: &Delivery, new: &Delivery, ep: Option<Endpoint>, now: Timestamp) {
        let r = self.store.commit_extra(now, |s| {
            let merged = match &ep {
                Some(e) => s.endpoint(&e.id)?.and_then(|current| {
                    let merged = merge_attempt(&current, e);
                    (merged != current).then_some(merged)
                }),
                None => None,
            };
            Ok::<_, crate::store::ApplyError>((
                Extra {
                    notices: attempt_update(s, old, new)?,
                    users: merged.iter().map(endpoint_write).collect(),
                    ..Extra::default()
                },
                (),
            ))
        });
        if let Err(e) = r {
            tracing::error!(delivery = old.id, error = %e, "recording a webhook attempt failed");
        }
    }
}

/// `current` with what one attempt decided (`decided`: the endpoint as the attempt would leave
/// it): a success clears the failing-since mark; a failure keeps the earliest mark; a
/// disablement disables. Nothing else of `current` changes.
fn merge_attempt(current: &Endpoint, decided: &Endpoint) -> Endpoint {
    let mut out = current.clone();
    out.failing_since = decided
        .failing_since
        .map(|t| current.failing_since.map_or(t, |c| c.min(t)));
    if !decided.enabled && decided.disabled_reason.is_some() {
        out.enabled = false;
        out.disabled_reason = decided.disabled_reason.clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(enabled: bool, failing: Option<&str>) -> Endpoint {
        Endpoint {
            id: "w1".into(),
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["*".into()],
            secrets: vec!["whsec_a".into()],
            rotate_until: None,
            enabled,
            disabled_reason: None,
            failing_since: failing.map(|t| t.parse().unwrap()),
            created: "2026-12-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn an_attempt_merges_only_what_it_decided_into_the_current_endpoint() {
        // An operator disabled the endpoint while a POST was under way; the POST succeeded:
        // the failing mark goes, the operator's disablement stays.
        let current = endpoint(false, Some("2026-12-01T10:00:00Z"));
        let decided = endpoint(true, None);
        let m = merge_attempt(&current, &decided);
        assert!(!m.enabled);
        assert_eq!(m.failing_since, None);
        // Two failures in flight: the earliest mark wins, whichever is saved last.
        let current = endpoint(true, Some("2026-12-01T10:00:00Z"));
        let decided = endpoint(true, Some("2026-12-01T11:00:00Z"));
        assert_eq!(
            merge_attempt(&current, &decided).failing_since,
            current.failing_since
        );
        // A rotation saved meanwhile survives an attempt's save.
        let mut current = endpoint(true, None);
        current.secrets.push("whsec_b".into());
        let m = merge_attempt(&current, &endpoint(true, Some("2026-12-01T11:00:00Z")));
        assert_eq!(m.secrets.len(), 2);
        // A disablement (410, five days of failures) disables.
        let mut decided = endpoint(false, Some("2026-12-01T11:00:00Z"));
        decided.disabled_reason = Some("the endpoint answered 410 Gone".into());
        let m = merge_attempt(&endpoint(true, None), &decided);
        assert!(!m.enabled);
        assert_eq!(
            m.disabled_reason.as_deref(),
            Some("the endpoint answered 410 Gone")
        );
    }
}
