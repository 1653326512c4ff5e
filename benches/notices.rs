//! Notices fanned out and delivered per second (issue 10), each against a baseline in the same
//! run:
//!
//! - e-mail: N panel notices (`documents.invoice`, one owner each time, so one e-mail per notice)
//!   through `POST /v1/notices`, sent by regmail's e-mail channel to Postfix on 127.0.0.1:25;
//!   timed from the first POST until every delivery is Sent (accepted by Postfix). Baseline:
//!   Postfix's `smtp-source` sending N messages of the same size to the same mailbox (one
//!   connection per message, and `-d`: one connection for all, as regmail keeps one).
//! - webhooks: N panel notices to one endpoint, the real receiver of the tests
//!   (tests/support_webhooks/receiver.py, verifying each signature with `standardwebhooks`);
//!   timed from the first POST until the receiver has answered N deliveries. Baseline: a plain
//!   HTTP client (ureq, 8 threads, as the channel's 8 parallel posts) posting the same signed
//!   bodies to the same receiver.
//!
//! Run as root, holding the mail-stack lock:
//! `flock /tmp/regmail-mailstack.lock cargo bench --bench notices`. N from `REGMAIL_BENCH_N`
//! (default 200); three runs of each, interleaved; medians and ratios are printed.
//! `REGMAIL_BENCH_ONLY=webhooks` runs the webhook half alone (no mail stack, no lock needed).

#![cfg_attr(test, allow(dead_code))]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support_mail/mod.rs"]
mod support_mail;
#[path = "../tests/support_webhooks/mod.rs"]
mod support_webhooks;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Daemon, Options};
use serde_json::{Value, json};
use support_mail::{MailConfig, MailDaemon, Out, Search};
use support_webhooks::Receiver;

const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";
const OWNER: &str = "owner@customer.test";
const RUNS: usize = 3;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn post_all<F: Fn(&str, &Value) -> (u16, Value) + Sync>(n: usize, tag: &str, post: F) {
    std::thread::scope(|s| {
        for t in 0..4 {
            let post = &post;
            s.spawn(move || {
                for k in (t..n).step_by(4) {
                    let body = json!({"client_id": "bench", "type": "documents.invoice",
                        "data": {"number": format!("{tag}-{k}"), "amount": "1000 RUB"}});
                    let (st, v) = post("/v1/notices", &body);
                    assert_eq!(st, 201, "{v}");
                }
            });
        }
    });
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sent_count(get: impl Fn(&str) -> Value) -> usize {
    get("/v1/deliveries?state=Sent&limit=100000")["deliveries"]
        .as_array()
        .map_or(0, Vec::len)
}

/// regmail's e-mail channel: notices per second accepted by Postfix, and one message's size.
fn email_run(n: usize, tag: &str) -> (f64, usize) {
    let d = MailDaemon::start(MailConfig {
        out: Out::Relay25,
        bcc: None,
        log_filter: "warn".into(),
        extra: "[notices]\nfrom = \"notices@hosting.test\"\n".into(),
        ..MailConfig::default()
    });
    let mut c = common::person("bench");
    c["contact"] = json!({"name": "Bench", "email": OWNER});
    d.post_expect("/v1/clients", &c, 201);
    d.post_expect(
        "/v1/clients/bench/users",
        &json!({"id": "o", "name": "Owner", "email": OWNER, "language": "en", "role": "owner"}),
        201,
    );
    let start = Instant::now();
    post_all(n, tag, |p, b| d.post(p, b));
    wait("every e-mail Sent", Duration::from_secs(300), || {
        sent_count(|p| d.get_ok(p)) >= n
    });
    let elapsed = start.elapsed();
    let one = support_mail::wait_for_mail(
        OWNER,
        &Search::subject(&format!("Invoice {tag}-0")),
        1,
        Duration::from_secs(60),
    );
    (n as f64 / elapsed.as_secs_f64(), one[0].sent.len())
}

fn smtp_source(n: usize, payload: usize, subject: &str, same_connection: bool) -> f64 {
    let s = support_mail::stack();
    let server = format!(
        "{}:{}",
        s.var("MAILSTACK_HOST"),
        s.var("MAILSTACK_SMTP_PORT")
    );
    let mut cmd = Command::new(SMTP_SOURCE);
    cmd.arg("-c");
    if same_connection {
        cmd.arg("-d");
    }
    cmd.args(["-l", &payload.to_string(), "-m", &n.to_string(), "-s", "1"])
        .args([
            "-S",
            subject,
            "-f",
            "notices@hosting.test",
            "-t",
            OWNER,
            &server,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {SMTP_SOURCE}: {e}"));
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    n as f64 / elapsed.as_secs_f64()
}

/// regmail's webhook channel: notices per second answered by the receiver.
fn webhook_run(n: usize, tag: &str) -> (f64, Vec<u8>, String) {
    let d = Daemon::start_with(Options {
        extra_config: "\n[notices]\nwebhook_timeout = \"15s\"\n".into(),
        ..Options::default()
    });
    let mut c = common::person("bench");
    c["contact"] = json!({"name": "Bench", "email": OWNER});
    d.post_expect("/v1/clients", &c, 201);
    let mut rx = Receiver::new();
    let v = d.post_expect(
        "/v1/webhooks",
        &json!({"url": rx.url(), "events": ["documents.*"]}),
        201,
    );
    rx.secret = v["secret"].as_str().unwrap_or_default().to_owned();
    rx.answer(200, 0.0, None);
    rx.start();
    let start = Instant::now();
    post_all(n, tag, |p, b| d.post(p, b));
    wait("every webhook answered", Duration::from_secs(300), || {
        rx.done().len() >= n
    });
    let elapsed = start.elapsed();
    assert!(rx.done().iter().all(|r| r["verified"] == true));
    // One body as sent, for the baseline (the pull feed gives the same JSON).
    let ev = d.get_ok("/v1/events?after=0&limit=1");
    let mut e = ev["events"][0].clone();
    if let Some(m) = e.as_object_mut() {
        m.remove("id");
    }
    (
        n as f64 / elapsed.as_secs_f64(),
        serde_json::to_vec(&e).unwrap_or_default(),
        rx.secret.clone(),
    )
}

/// The baseline: a plain client posting `n` signed copies of `body` from 8 threads.
fn plain_http(n: usize, body: &[u8], secret: &str) -> f64 {
    let mut rx = Receiver::new();
    rx.secret = secret.to_owned();
    rx.answer(200, 0.0, None);
    rx.start();
    let url = rx.url();
    let body = Arc::new(body.to_vec());
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8 {
            let body = body.clone();
            let url = url.clone();
            s.spawn(move || {
                let agent = common::agent(Duration::from_secs(15));
                for k in (t..n).step_by(8) {
                    let id = format!("{}", 1_000_000 + k);
                    let ts = jiff::Timestamp::now().as_second();
                    let sig =
                        regmail::notices::sign::signature(&[secret.to_owned()], &id, ts, &body);
                    let r = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("webhook-id", &id)
                        .header("webhook-timestamp", ts.to_string())
                        .header("webhook-signature", &sig)
                        .send(&body[..])
                        .expect("POST");
                    assert_eq!(r.status().as_u16(), 200);
                }
            });
        }
    });
    let elapsed = start.elapsed();
    // Its log line is written just after the answer.
    rx.wait_for("the receiver's log", Duration::from_secs(10), |r| {
        r.iter().filter(|x| x["event"] == "done").count() >= n
    });
    assert!(rx.done().iter().all(|r| r["verified"] == true));
    n as f64 / elapsed.as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("REGMAIL_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mail = std::env::var("REGMAIL_BENCH_ONLY").as_deref() != Ok("webhooks");
    let (mut re, mut ss, mut sd, mut rw, mut pw) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..RUNS {
        let tag = format!("nb{id}{run}");
        let (rate, size, s, d) = if mail {
            let (rate, size) = email_run(n, &tag);
            // smtp-source adds about 200 octets of headers of its own; -l makes up the rest.
            let payload = size.saturating_sub(200);
            let s = smtp_source(n, payload, &format!("ns-{id}-{run}"), false);
            let d = smtp_source(n, payload, &format!("nd-{id}-{run}"), true);
            (rate, size, s, d)
        } else {
            (f64::NAN, 0, f64::NAN, f64::NAN)
        };
        let (w, body, secret) = webhook_run(n, &tag);
        let p = plain_http(n, &body, &secret);
        println!(
            "run {}: e-mail: regmail {rate:8.1} notices/s ({size} octets) | smtp-source {s:8.1} msg/s | smtp-source -d {d:8.1} msg/s || webhooks: regmail {w:8.1} notices/s | plain HTTP client {p:8.1} posts/s",
            run + 1
        );
        re.push(rate);
        ss.push(s);
        sd.push(d);
        rw.push(w);
        pw.push(p);
    }
    let (re, ss, sd, rw, pw) = (
        median(&re),
        median(&ss),
        median(&sd),
        median(&rw),
        median(&pw),
    );
    println!("medians over {RUNS} runs of {n}:");
    println!(
        "  e-mail:   regmail {re:.1} notices/s; smtp-source {ss:.1} msg/s (ratio {:.2}); smtp-source -d {sd:.1} msg/s (ratio {:.2})",
        re / ss,
        re / sd
    );
    println!(
        "  webhooks: regmail {rw:.1} notices/s; plain HTTP client {pw:.1} posts/s (ratio {:.2})",
        rw / pw
    );
    if mail {
        let deleted = support_mail::delete(OWNER, &Search::All);
        println!("(expunged {deleted} bench messages from {OWNER})");
    }
}
