//! The daily report e-mail (issue 11 part 3): once a day, at `[reports] daily_at` in
//! `[reports] timezone`, the reports go to `[reports] recipients` as CSV attachments of one
//! multipart/mixed message (RFC 2046 §5.1.3; each attachment with `Content-Disposition:
//! attachment; filename=...`, RFC 2183), through the same transports as the notice e-mails
//! (SMTP submission to Postfix, sendmail, or a directory).
//!
//! **Once per day, across restarts.** The day's message is rendered once and written, whole,
//! to an outbox record keyed by the local date (`R<YYYY-MM-DD>` in the notices tree) and made
//! durable BEFORE it is handed to the transport, like a notice delivery. The record then says
//! Sent (or Failed). A crash between the hand-over and that mark leaves the record Pending,
//! so the same bytes with the same `Message-ID: <report-YYYY-MM-DD@host>` go again at the next
//! start: at-least-once, and a receiver can drop the copy by its Message-ID. A day whose
//! record exists is never rendered again. A transient failure retries on `[notices]
//! email_schedule`; a day that passed with its record still Pending is Superseded by the new
//! day's (a report is a snapshot; yesterday's is not sent late). Days the daemon was down at
//! `daily_at` are not caught up: the next report is the next day's. Every outcome is in the
//! action log (`report.sent`, `report.retry`, `report.failed`, `report.superseded`).
//!
//! "Now" is an argument ([`ReportMailer::tick`]): the scheduler passes the daemon's clock.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::{Kind, Report, ReportError};
use crate::config::{Config, ReportsConfig};
use crate::core::{Actor, LogDraft};
use crate::outbound::Transport;
use crate::outbound::render::RenderedRequest;
use crate::outbound::transport::SendOutcome;
use crate::store::reports::report_mail_key;
use crate::store::{ApplyError, Extra, Store, StoreError, encode_value};

/// Where a day's report e-mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailState {
    /// Rendered and stored; to be handed to the transport (again, after a failure or a crash).
    Pending,
    /// Accepted by the transport.
    Sent,
    /// Refused for good, or retries used up.
    Failed,
    /// Still Pending when the next day's report was made: not sent late.
    Superseded,
}

impl MailState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Pending => "Pending",
            MailState::Sent => "Sent",
            MailState::Failed => "Failed",
            MailState::Superseded => "Superseded",
        }
    }
}

/// One attachment's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// File name, e.g. `expiring-30-2026-12-02.csv`.
    pub file: String,
    /// The report's title.
    pub title: String,
    /// Rows (domains) in it.
    pub rows: usize,
}

/// The outbox record of one day's report e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMail {
    /// The local date it is for, `YYYY-MM-DD` (the record's key).
    pub day: String,
    /// Where it stands.
    pub state: MailState,
    /// The Message-ID, fixed by the day.
    pub message_id: String,
    /// Subject.
    pub subject: String,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// The whole message as rendered at first (ASCII: the CSVs are base64), sent as is on
    /// every attempt.
    pub message: String,
    /// The attachments.
    pub parts: Vec<Part>,
    /// Attempts so far.
    pub attempts: u32,
    /// Consecutive failures so far (for the retry schedule).
    pub failures: u32,
    /// When a Pending record may be tried again.
    pub next_at: Option<Timestamp>,
    /// The transport's last words.
    pub last_answer: Option<String>,
    /// When it was rendered.
    pub created: Timestamp,
    /// When it was accepted.
    pub sent: Option<Timestamp>,
}

/// What one [`ReportMailer::tick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do (before `daily_at`, or today's report went already, or waits to retry).
    Idle,
    /// Today's report was handed to the transport; the outcome.
    Attempted {
        /// The day.
        day: String,
        /// The state after the attempt.
        state: MailState,
    },
    /// The store or the report failed (logged; tried again at the next tick).
    Error(String),
}

/// The day whose report is due at `now`: today in `config.timezone` once the local time has
/// reached `daily_at`, else None.
pub fn due_day(now: Timestamp, config: &ReportsConfig) -> Option<Date> {
    let local = now.to_zoned(config.timezone.clone());
    (local.time() >= config.daily_at).then(|| local.date())
}

/// The Message-ID of `day`'s report e-mail.
pub fn message_id(day: &str, host: &str) -> String {
    format!("<report-{day}@{host}>")
}

/// The reports the e-mail carries, as of `day`: the expiring windows of the configuration,
/// then expired, then deleted.
pub fn reports_for(
    store: &Store,
    config: &ReportsConfig,
    day: Date,
) -> Result<Vec<Report>, ReportError> {
    let mut kinds: Vec<Kind> = config
        .expiring_within
        .iter()
        .map(|w| Kind::Expiring { within: *w })
        .collect();
    kinds.push(Kind::Expired);
    kinds.push(Kind::Deleted);
    kinds
        .into_iter()
        .map(|k| super::make(store, k, day))
        .collect()
}

/// Base64 in lines of 76 characters (RFC 2045 §6.8), CRLF.
fn base64_lines(bytes: &[u8]) -> String {
    let b = STANDARD.encode(bytes);
    let mut out = String::with_capacity(b.len() + b.len() / 38 + 2);
    for chunk in b.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

/// Renders the day's e-mail: a text/plain summary, then one text/csv attachment per report.
/// The boundary starts with `=_`, which base64 and the ASCII summary never contain (RFC 2046
/// §5.1.1: it must not occur in the parts).
pub fn render(config: &ReportsConfig, day: Date, reports: &[Report], now: Timestamp) -> ReportMail {
    let day_s = day.to_string();
    let mid = message_id(&day_s, &config.message_id_host);
    let parts: Vec<Part> = reports
        .iter()
        .map(|r| Part {
            file: r.kind.file_name(day),
            title: r.kind.title(),
            rows: r.rows.len(),
        })
        .collect();
    let counts: Vec<String> = reports
        .iter()
        .map(|r| match r.kind {
            Kind::Expiring { within } => format!("{} expiring in {within}d", r.rows.len()),
            k => format!("{} {}", r.rows.len(), k.name()),
        })
        .collect();
    let subject = format!("regmail reports {day_s}: {}", counts.join(", "));
    let boundary = format!("=_regmail-report-{day_s}");
    let date = now
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string();
    let mut m = String::new();
    for h in [
        format!("From: {}", config.from),
        format!("To: {}", config.recipients.join(", ")),
        format!("Subject: {subject}"),
        format!("Date: {date}"),
        format!("Message-ID: {mid}"),
        "MIME-Version: 1.0".to_owned(),
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\""),
        // RFC 3834: machine-made, no auto-replies.
        "Auto-Submitted: auto-generated".to_owned(),
        format!("X-Regmail-Report: {day_s}"),
    ] {
        m.push_str(&h);
        m.push_str("\r\n");
    }
    m.push_str("\r\nThis is a MIME message with the reseller reports as CSV attachments.\r\n");
    // The summary.
    m.push_str(&format!("\r\n--{boundary}\r\n"));
    m.push_str(
        "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
    );
    m.push_str(&format!(
        "regmail reseller reports as of {day_s} ({}).\r\n\r\n",
        config.timezone_name
    ));
    for p in &parts {
        m.push_str(&format!("{}: {} ({})\r\n", p.title, p.rows, p.file));
    }
    m.push_str(
        "\r\nThe attachments are CSV (RFC 4180: UTF-8, CRLF, a header row). A cell that starts\r\n\
         with = + - or @ carries a leading ' so that a spreadsheet shows it as text.\r\n",
    );
    for (r, p) in reports.iter().zip(&parts) {
        m.push_str(&format!("\r\n--{boundary}\r\n"));
        m.push_str(&format!(
            "Content-Type: text/csv; charset=utf-8; header=present; name=\"{}\"\r\n",
            p.file
        ));
        m.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{}\"\r\n",
            p.file
        ));
        m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        m.push_str(&base64_lines(super::csv::render(r).as_bytes()));
    }
    m.push_str(&format!("\r\n--{boundary}--\r\n"));
    ReportMail {
        day: day_s,
        state: MailState::Pending,
        message_id: mid,
        subject,
        from: config.from.clone(),
        recipients: config.recipients.clone(),
        message: m,
        parts,
        attempts: 0,
        failures: 0,
        next_at: None,
        last_answer: None,
        created: now,
        sent: None,
    }
}

fn log(now: Timestamp, action: &str, message: String) -> LogDraft {
    LogDraft {
        at: now,
        actor: Actor::Scheduler,
        action: action.into(),
        message,
        domain: None,
        client: None,
        request: None,
        status_before: None,
        status_after: None,
        evidence: crate::core::Evidence::default(),
    }
}

/// The transport for report e-mails: the requests' one, except that the `dir` transport
/// writes them into its `reports/` subdirectory.
pub fn transport(config: &Config) -> Result<Transport, String> {
    Ok(match config.transport()? {
        Transport::Dir(d) => Transport::Dir(d.join("reports")),
        t => t,
    })
}

/// The daily report e-mail's driver.
pub struct ReportMailer {
    /// The store.
    pub store: Arc<Store>,
    /// `[reports]`.
    pub config: ReportsConfig,
    /// Where the e-mail goes.
    pub transport: Transport,
    /// The wait before each retry after a transient failure (`[notices] email_schedule`).
    pub retry: Vec<Duration>,
}

/// What the blocking half decided: a record to hand to the transport, or nothing.
type Decided = Result<Option<ReportMail>, String>;

impl ReportMailer {
    /// One look at the clock: when today's report is due and not sent, makes it (once: the
    /// record is durable before the send), sends it, and records the outcome.
    pub async fn tick(&mut self, now: Timestamp) -> Tick {
        if self.config.recipients.is_empty() {
            return Tick::Idle;
        }
        let Some(day) = due_day(now, &self.config) else {
            return Tick::Idle;
        };
        let (store, config) = (self.store.clone(), self.config.clone());
        let decided: Decided =
            tokio::task::spawn_blocking(move || prepare(&store, &config, day, now))
                .await
                .unwrap_or_else(|e| Err(format!("report task failed: {e}")));
        let rec = match decided {
            Ok(Some(r)) => r,
            Ok(None) => return Tick::Idle,
            Err(e) => {
                tracing::error!(error = %e, "the daily report could not be made");
                return Tick::Error(e);
            }
        };
        let outcome = self.send(&rec).await;
        let (store, retry) = (self.store.clone(), self.retry.clone());
        let day_s = rec.day.clone();
        let state = tokio::task::spawn_blocking(move || record(&store, rec, outcome, &retry, now))
            .await
            .unwrap_or_else(|e| Err(format!("report task failed: {e}")));
        match state {
            Ok(state) => Tick::Attempted { day: day_s, state },
            Err(e) => {
                tracing::error!(error = %e, "recording the daily report's outcome failed");
                Tick::Error(e)
            }
        }
    }

    async fn send(&mut self, rec: &ReportMail) -> SendOutcome {
        let from = match rec.from.parse::<lettre::Address>() {
            Ok(a) => a,
            Err(e) => return SendOutcome::Permanent(format!("[reports] from: {e}")),
        };
        let mut to = Vec::new();
        for r in &rec.recipients {
            match r.parse::<lettre::Address>() {
                Ok(a) => to.push(a),
                Err(e) => return SendOutcome::Permanent(format!("recipient {r:?}: {e}")),
            }
        }
        let msg = RenderedRequest {
            subject: rec.subject.clone(),
            from,
            recipients: to,
            bytes: rec.message.clone().into_bytes(),
            copy: String::new(),
        };
        self.transport
            .send(&msg, &format!("report-{}", rec.day))
            .await
    }

    /// Closes the transport's connection (on shutdown).
    pub async fn close(&mut self) {
        self.transport.close().await;
    }
}

/// Under the writer lock: today's record if it is to be sent now (made and stored first when
/// there is none); older Pending records are marked Superseded in the same write.
fn prepare(store: &Store, config: &ReportsConfig, day: Date, now: Timestamp) -> Decided {
    let day_s = day.to_string();
    // Cheap look first: most ticks find today's record settled.
    if let Some(r) = store
        .report_mail::<ReportMail>(&day_s)
        .map_err(|e| e.to_string())?
        && (r.state != MailState::Pending || r.next_at.is_some_and(|t| t > now))
    {
        return Ok(None);
    }
    store
        .commit_extra(now, |s| {
            let mut extra = Extra::default();
            let existing = s.report_mail::<ReportMail>(&day_s)?;
            let rec = match existing {
                Some(r) if r.state != MailState::Pending => return Ok((extra, None)),
                Some(r) if r.next_at.is_some_and(|t| t > now) => return Ok((extra, None)),
                Some(r) => r,
                None => {
                    let reports = reports_for(s, config, day).map_err(|e| match e {
                        ReportError::Store(e) => Fail::Store(e),
                    })?;
                    let r = render(config, day, &reports, now);
                    extra.notices.push((report_mail_key(&r.day), Some(encode_value(&r))));
                    r
                }
            };
            for mut old in s.report_mails::<ReportMail>()? {
                if old.state == MailState::Pending && old.day < day_s {
                    old.state = MailState::Superseded;
                    old.next_at = None;
                    extra.log.push(log(
                        now,
                        "report.superseded",
                        format!(
                            "daily report of {} was never accepted ({} attempts, last: {}); the report of {day_s} replaces it",
                            old.day,
                            old.attempts,
                            old.last_answer.as_deref().unwrap_or("none")
                        ),
                    ));
                    extra.notices.push((report_mail_key(&old.day), Some(encode_value(&old))));
                }
            }
            Ok((extra, Some(rec)))
        })
        .map_err(|e: Fail| e.to_string())
}

/// Records an attempt's outcome (and its action-log line) in one write.
fn record(
    store: &Store,
    mut rec: ReportMail,
    outcome: SendOutcome,
    retry: &[Duration],
    now: Timestamp,
) -> Result<MailState, String> {
    rec.attempts += 1;
    let to = rec.recipients.join(", ");
    let parts: Vec<String> = rec
        .parts
        .iter()
        .map(|p| format!("{} ({} rows)", p.file, p.rows))
        .collect();
    let line = match &outcome {
        SendOutcome::Sent(answer) => {
            rec.state = MailState::Sent;
            rec.sent = Some(now);
            rec.next_at = None;
            rec.failures = 0;
            rec.last_answer = Some(answer.clone());
            log(
                now,
                "report.sent",
                format!(
                    "daily report of {} ({}) sent to {to}: {}; {answer}",
                    rec.day,
                    rec.message_id,
                    parts.join(", ")
                ),
            )
        }
        SendOutcome::Permanent(answer) => {
            rec.state = MailState::Failed;
            rec.next_at = None;
            rec.last_answer = Some(answer.clone());
            log(
                now,
                "report.failed",
                format!("daily report of {} to {to} refused: {answer}", rec.day),
            )
        }
        SendOutcome::Transient(answer) | SendOutcome::Unknown(answer) => {
            rec.failures += 1;
            rec.last_answer = Some(answer.clone());
            match retry.get(rec.failures as usize - 1) {
                Some(wait) => {
                    let at = now
                        .checked_add(jiff::SignedDuration::try_from(*wait).unwrap_or_default())
                        .unwrap_or(now);
                    rec.next_at = Some(at);
                    log(
                        now,
                        "report.retry",
                        format!(
                            "daily report of {} to {to} not accepted ({answer}); next try at {at}",
                            rec.day
                        ),
                    )
                }
                None => {
                    rec.state = MailState::Failed;
                    rec.next_at = None;
                    log(
                        now,
                        "report.failed",
                        format!(
                            "daily report of {} to {to} not accepted after {} attempts: {answer}",
                            rec.day, rec.attempts
                        ),
                    )
                }
            }
        }
    };
    let state = rec.state;
    match state {
        MailState::Sent => tracing::info!(day = %rec.day, to = %to, "daily report sent"),
        _ => {
            tracing::warn!(day = %rec.day, state = state.as_str(), answer = ?rec.last_answer, "daily report not sent")
        }
    }
    store
        .commit_extra(now, |_| {
            Ok::<_, ApplyError>((
                Extra {
                    notices: vec![(report_mail_key(&rec.day), Some(encode_value(&rec)))],
                    log: vec![line],
                    ..Extra::default()
                },
                (),
            ))
        })
        .map_err(|e| e.to_string())?;
    Ok(state)
}

/// A failure inside [`prepare`]'s write.
#[derive(Debug, thiserror::Error)]
enum Fail {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}
