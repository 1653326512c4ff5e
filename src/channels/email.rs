//! The e-mail channel: renders each due e-mail delivery from the templates in the recipient's
//! language and hands it to the configured transport (smtp, sendmail, dir) with the notices'
//! own From. Transient failures retry on `[notices] email_schedule`; a permanent refusal fails
//! the delivery. The Message-ID is fixed by the delivery id, so a resend is the same message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{after_failure, elapsed_ms, first_bytes, unix_ms};
use crate::config::NoticesConfig;
use crate::notices::NoticeHub;
use crate::notices::catalogue;
use crate::notices::model::{Attempt, Channel, Delivery, DeliveryState};
use crate::notices::render::{Envelope, email};
use crate::notices::unsubscribe;
use crate::outbound::render::RenderedRequest;
use crate::outbound::transport::{SendOutcome, Transport};
use crate::store::notices::attempt_update;
use crate::store::{Extra, Store};

/// The e-mail channel worker.
pub struct EmailChannel {
    /// The store.
    pub store: Arc<Store>,
    /// Templates, wake-up, counters.
    pub hub: NoticeHub,
    /// Where mail goes (its own connection, separate from the request outbox's).
    pub transport: Transport,
    /// `[notices]`.
    pub config: NoticesConfig,
    /// Liveness beat.
    pub beat: Option<Arc<crate::health::Worker>>,
}

enum Prepared {
    Mail(Box<RenderedRequest>),
    Refused(String),
}

impl EmailChannel {
    /// Runs until `stop`.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Some(b) = &self.beat {
                b.beat();
            }
            let sent = self.sweep().await;
            if *stop.borrow() {
                break;
            }
            if sent == 0 {
                let wait = self.next_wait().await;
                tokio::select! {
                    _ = self.hub.wake_email.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        self.transport.close().await;
    }

    async fn next_wait(&self) -> Duration {
        let s = self.store.clone();
        let next = tokio::task::spawn_blocking(move || s.next_due(Channel::Email))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        match next {
            Some(at) => {
                let ms = at.as_millisecond() - crate::clock::now().as_millisecond();
                Duration::from_millis(ms.clamp(0, 1000) as u64)
            }
            None => Duration::from_secs(1),
        }
    }

    /// Sends every due e-mail delivery; returns how many were attempted.
    pub async fn sweep(&mut self) -> usize {
        let s = self.store.clone();
        let due = match tokio::task::spawn_blocking(move || {
            s.due_deliveries(Channel::Email, crate::clock::now(), 256)
        })
        .await
        {
            Ok(Ok(d)) => d,
            _ => return 0,
        };
        let n = due.len();
        for id in due {
            self.deliver(id).await;
        }
        n
    }

    async fn deliver(&mut self, id: u64) {
        let s = self.store.clone();
        let Ok(Ok(Some(d))) = tokio::task::spawn_blocking(move || s.delivery(id)).await else {
            return;
        };
        if d.state != DeliveryState::Queued {
            return;
        }
        let prepared = self.prepare(&d).await;
        let start = std::time::Instant::now();
        let now = crate::clock::now();
        let (attempt_ok, outcome) = match prepared {
            Prepared::Refused(why) => (false, SendOutcome::Permanent(why)),
            Prepared::Mail(m) => {
                let out = self.transport.send(&m, &format!("notice-{id}")).await;
                (matches!(out, SendOutcome::Sent(_)), out)
            }
        };
        let latency = elapsed_ms(start);
        self.hub.email.record(attempt_ok, latency, unix_ms(now));
        let (text, permanent) = match &outcome {
            SendOutcome::Sent(t) => (t.clone(), false),
            SendOutcome::Transient(t) | SendOutcome::Unknown(t) => (t.clone(), false),
            SendOutcome::Permanent(t) => (t.clone(), true),
        };
        let attempt = Attempt {
            at: now,
            status: None,
            latency_ms: latency,
            answer: first_bytes(text.as_bytes(), 200),
            ok: attempt_ok,
        };
        let mut new = d.clone();
        if attempt_ok {
            new.attempts.push(attempt);
            new.state = DeliveryState::Sent;
            new.next_at = None;
        } else if permanent {
            new.attempts.push(attempt);
            new.state = DeliveryState::Failed;
            new.next_at = None;
        } else {
            new = after_failure(new, attempt, &self.config.email_schedule, None, now);
        }
        tracing::info!(delivery = id, notice = d.notice, state = new.state.as_str(), detail = %text, "notice e-mail");
        let s = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || {
            s.commit_extra(now, |s| {
                Ok::<_, crate::store::ApplyError>((
                    Extra {
                        notices: attempt_update(s, &d, &new)?,
                        ..Extra::default()
                    },
                    (),
                ))
            })
        })
        .await;
    }

    async fn prepare(&self, d: &Delivery) -> Prepared {
        let s = self.store.clone();
        let nid = d.notice;
        let recipient = d.recipient.clone();
        let want_key = d.unsubscribe.is_some();
        let looked = tokio::task::spawn_blocking(move || {
            let n = s.notice(nid)?;
            let user = match recipient
                .strip_prefix("user:")
                .and_then(|r| r.split_once('/'))
            {
                Some((c, u)) => s.user(c, u)?,
                None => None,
            };
            let key = if want_key {
                Some(
                    s.unsubscribe_key()
                        .map_err(|e| crate::store::StoreError::Corrupt {
                            key: "unsubscribe key".into(),
                            reason: e.to_string(),
                        })?,
                )
            } else {
                None
            };
            Ok::<_, crate::store::StoreError>((n, user, key))
        })
        .await;
        let Ok(Ok((Some(n), user, key))) = looked else {
            return Prepared::Refused("the notice cannot be read".into());
        };
        let Some(nt) = catalogue::lookup(&n.kind) else {
            return Prepared::Refused(format!("{} is not in the catalogue", n.kind));
        };
        let mut vars: BTreeMap<String, String> = n.data.clone();
        vars.insert("notice_id".into(), n.id.to_string());
        vars.insert("category".into(), nt.category.as_str().into());
        if let Some(c) = &n.client {
            vars.insert("client".into(), c.clone());
        }
        if let Some(u) = &user {
            vars.insert("user_name".into(), u.name.clone());
        }
        let url = match (d.unsubscribe, &user, &key) {
            (Some(cat), Some(u), Some(k)) => Some(format!(
                "{}/unsubscribe/{}",
                self.config.public_url,
                unsubscribe::token(k, &u.client, &u.id, cat)
            )),
            _ => None,
        };
        if let Some(u) = &url {
            vars.insert("unsubscribe_url".into(), u.clone());
        }
        let Some(templates) = self.hub.templates() else {
            return Prepared::Refused("templates unavailable".into());
        };
        let (subject, body) = match templates.render(nt, d.language, &vars) {
            Ok(x) => x,
            Err(e) => return Prepared::Refused(format!("rendering failed: {e}")),
        };
        let from: lettre::Address = match self.config.from.parse() {
            Ok(a) => a,
            Err(e) => return Prepared::Refused(format!("[notices] from: {e}")),
        };
        let to: lettre::Address = match d.address.parse() {
            Ok(a) => a,
            Err(e) => return Prepared::Refused(format!("recipient {:?}: {e}", d.address)),
        };
        let env = Envelope {
            from: &self.config.from,
            to: &d.address,
            delivery: d.id,
            notice: n.id,
            kind: nt.name,
            host: &self.config.message_id_host,
            date: d.created,
            unsubscribe_url: url.as_deref(),
        };
        let bytes = email(&env, &subject, &body);
        Prepared::Mail(Box::new(RenderedRequest {
            subject,
            from,
            recipients: vec![to],
            bytes,
            copy: String::new(),
        }))
    }
}
