//! Requests per second that regmail sends through Postfix, against Postfix's own load generator
//! `smtp-source` sending messages of the same size to the same server and recipient, in the
//! same run (issue 4).
//!
//! Run: `cargo bench --bench smtp_send` (as root: it starts the mail stack with
//! `scripts/mailstack.sh up`). N messages per run from `REGMAIL_BENCH_N` (default 300); three
//! runs of each, interleaved; the medians and their ratio are printed.
//!
//! - regmail: a fresh daemon sending to 127.0.0.1:25 (plain, no AUTH, no BCC) with gateway
//!   robot@registrar.test; an imported (already registered) client, so each order is exactly one
//!   domain request. Timed from the first order to the moment `GET /v1/stats` shows all N
//!   requests Sent (accepted by Postfix); orders are placed from 4 threads.
//! - smtp-source: `smtp-source -c -l SIZE -m N -s 1 -f gateway@gateway.test
//!   -t robot@registrar.test 127.0.0.1:25` (plus `-S subject` to find its messages), where SIZE
//!   makes its messages as large as one regmail request as delivered (headers + body, measured
//!   from the mailbox). It opens one connection per message; the same with `-d` (one connection
//!   for all, as regmail does) is printed too, for reference.
//!
//! Every run waits until all its messages are in robot's INBOX before the next starts; the
//! bench's messages are expunged at the end.

#![cfg_attr(test, allow(dead_code))]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support_mail/mod.rs"]
mod support_mail;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support_mail::{CALLBACK, MailConfig, MailDaemon, Out, ROBOT, Search};

const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";
const RUNS: usize = 3;

struct RegmailRun {
    rate: f64,
    elapsed: Duration,
    intake: Duration,
    sample_token: String,
}

fn wait_delivered(subject: &str, n: usize) {
    let start = Instant::now();
    loop {
        let got = support_mail::count(ROBOT, &Search::subject(subject));
        if got >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "only {got} of {n} messages with {subject:?} reached {ROBOT} within 180 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn regmail_run(n: usize, tag: &str) -> RegmailRun {
    let d = MailDaemon::start(MailConfig {
        out: Out::Relay25,
        bcc: None,
        log_filter: "warn".into(),
        ..MailConfig::default()
    });
    let client = json!({
        "id": "bench", "handle": "BENCH_1_1-GPT",
        "registrant": {"type": "person", "fio_ru": "Петров Пётр Петрович", "fio_en": "Petr P Petrov",
            "passport": ["4510 654321"], "birth_date": "1979-12-24",
            "postal_addr": ["119021, Москва"], "phone": "+7 495 7397000", "email": "petrov@example.com"}
    });
    d.post_expect("/v1/clients", &client, 201);
    let orders: Vec<_> = (0..n)
        .map(|k| {
            json!({"domain": format!("{tag}-{k}.ru"), "client_id": "bench", "years": 1,
                "nameservers": ["ns1.hoster.example", "ns2.hoster.example"],
                "order_id": format!("{tag}-{k}"), "paid": true})
        })
        .collect();
    let threads = 4;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (d, orders) = (&d, &orders);
            s.spawn(move || {
                for o in orders.iter().skip(t).step_by(threads) {
                    d.post_expect("/v1/domains", o, 202);
                }
            });
        }
    });
    let intake = start.elapsed();
    loop {
        let stats = d.stats();
        let sent = common::count(&stats, "requests", "Sent") as usize;
        if sent >= n {
            break;
        }
        for bad in ["Rejected", "SendUnknown"] {
            assert_eq!(
                common::count(&stats, "requests", bad),
                0,
                "a request is {bad}: {stats}\n{}",
                d.stderr()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "only {sent} of {n} requests Sent after 300 s: {stats}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    let sample = d.get_ok("/v1/requests?state=Sent&limit=1");
    let sample_token = sample["requests"][0]["token"]
        .as_str()
        .expect("a Sent request")
        .to_owned();
    wait_delivered(&format!("{tag}-"), n);
    RegmailRun {
        rate: n as f64 / elapsed.as_secs_f64(),
        elapsed,
        intake,
        sample_token,
    }
}

/// Runs smtp-source; returns messages per second.
fn smtp_source(n: usize, payload: usize, subject: &str, same_connection: bool) -> (f64, Duration) {
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
        .args(["-S", subject, "-f", CALLBACK, "-t", ROBOT, &server])
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
        "{SMTP_SOURCE} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    wait_delivered(subject, n);
    (n as f64 / elapsed.as_secs_f64(), elapsed)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("REGMAIL_BENCH_N")
        .ok()
        .map(|s| s.parse().expect("REGMAIL_BENCH_N must be a number"))
        .unwrap_or(300);
    assert!(
        std::path::Path::new(SMTP_SOURCE).exists(),
        "{SMTP_SOURCE} is missing (Debian package postfix)"
    );
    support_mail::stack();
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    println!(
        "smtp_send: N = {n} messages per run, {RUNS} runs of each, interleaved; Postfix 127.0.0.1:25 (plain, no AUTH) -> {ROBOT}"
    );

    let mut reg = Vec::new();
    let mut src = Vec::new();
    let mut src_d = Vec::new();
    let mut payload = 0;
    for run in 0..RUNS {
        let r = regmail_run(n, &format!("rb-{id}-{run}"));
        if run == 0 {
            // Size of one regmail request as sent (delivered bytes without the trace fields).
            let m = support_mail::fetch(ROBOT, &Search::subject(&r.sample_token));
            let size = m
                .first()
                .expect("the sample request in the mailbox")
                .sent
                .len();
            // smtp-source's own header block, then the payload that makes the same total
            // (calibration subjects as long as the runs' ones).
            let cal = format!("sb-{id}-k");
            smtp_source(1, 100, &cal, false);
            let c = support_mail::fetch(ROBOT, &Search::subject(&cal));
            let head = c[0].sent.len() - c[0].body.len();
            // smtp-source ends a last partial line with a CRLF of its own, beyond -l.
            let extra = c[0].body.len().saturating_sub(100);
            payload = size.saturating_sub(head + extra);
            let check = format!("sb-{id}-x");
            smtp_source(1, payload, &check, false);
            let got = support_mail::fetch(ROBOT, &Search::subject(&check))[0]
                .sent
                .len();
            println!(
                "message size: regmail request {size} octets as sent; smtp-source {head} octets of headers + -l {payload} (+{extra}) = {got} octets"
            );
        }
        let (s, se) = smtp_source(n, payload, &format!("sb-{id}-{run}"), false);
        let (sd, sde) = smtp_source(n, payload, &format!("sd-{id}-{run}"), true);
        println!(
            "run {}: regmail {:8.1} msg/s ({n} in {:.3} s; orders placed in {:.3} s) | smtp-source {:8.1} msg/s ({:.3} s) | smtp-source -d {:8.1} msg/s ({:.3} s)",
            run + 1,
            r.rate,
            r.elapsed.as_secs_f64(),
            r.intake.as_secs_f64(),
            s,
            se.as_secs_f64(),
            sd,
            sde.as_secs_f64()
        );
        reg.push(r.rate);
        src.push(s);
        src_d.push(sd);
    }
    let (mr, ms, md) = (median(&reg), median(&src), median(&src_d));
    println!(
        "median: regmail {mr:.1} msg/s, smtp-source {ms:.1} msg/s, ratio regmail/smtp-source {:.3}",
        mr / ms
    );
    println!(
        "        (smtp-source -d, one connection like regmail: {md:.1} msg/s, ratio {:.3})",
        mr / md
    );
    let removed: usize = [
        format!("rb-{id}-"),
        format!("sb-{id}-"),
        format!("sd-{id}-"),
    ]
    .iter()
    .map(|p| support_mail::delete(ROBOT, &Search::subject(p)))
    .sum();
    println!("removed the bench's {removed} messages from {ROBOT}'s INBOX");
}
