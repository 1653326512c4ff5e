//! Replies per second taken from a real Dovecot, parsed, correlated and committed by
//! `regmail serve`, against a plain IMAP client fetching the same messages from the same server
//! in the same run (issue 5).
//!
//! Run: `cargo bench --bench imap_intake` (as root: it brings up `scripts/mailstack.sh` and uses
//! the gateway@gateway.test mailbox, which it empties; do not run it while
//! `cargo test --test inbound_imap` runs). N from `REGMAIL_BENCH_N` (default 300), 3 runs,
//! interleaved (odd runs measure the plain client first), medians reported.
//!
//! Per run:
//! - regmail: a daemon (release binary, `dir` transport, IMAP source on 143 STARTTLS, IDLE)
//!   gets N open domain requests through the API, is stopped, N acknowledgements ("Task K
//!   queued", the request token in the Subject) are APPENDed to INBOX, and the clock runs from
//!   the daemon's start until `GET /v1/stats` counts N requests Acknowledged: connect, fetch
//!   (RFC822.SIZE, then one BODY.PEEK[] FETCH per batch, issue 13), store, parse, classify, rules,
//!   correlate, commit (one flush per batch), one MOVE per batch. Also shown: the same from the first message stored to
//!   the last settled (the inbox records' own timestamps), without process start and login.
//! - plain: the same N messages APPENDed again; a client logs in (143 STARTTLS, same CA),
//!   SELECTs INBOX and fetches them the way regmail does (UID FETCH sizes, then one
//!   UID FETCH BODY.PEEK[] per message), and, in a second session, all in one
//!   UID FETCH 1:* BODY.PEEK[] (the limit of the server and the link).

#![cfg_attr(test, allow(dead_code))]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support_imap/mod.rs"]
mod support_imap;
#[path = "../tests/support_mail/mod.rs"]
mod support_mail;

use std::time::{Duration, Instant};

use serde_json::Value;
use support_imap::{GATEWAY, ImapConfig, ImapDaemon, PlainImap, Reply, count, reset_gateway};

struct Run {
    regmail_total: f64,
    regmail_steady: f64,
    plain_each: f64,
    plain_bulk: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn acknowledged(stats: &Value) -> u64 {
    stats["requests"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p[0] == "Acknowledged"))
        .and_then(|p| p[1].as_u64())
        .unwrap_or(0)
}

/// A daemon with `n` open domain requests, stopped; and one acknowledgement for each.
fn prepare(run: usize, n: usize) -> (ImapDaemon, Vec<Vec<u8>>) {
    let mut d = ImapDaemon::start(ImapConfig {
        // REGMAIL_BENCH_LOG: another filter (e.g. "warn,regmail::inbound=debug" for the
        // per-batch timings), with REGMAIL_BENCH_SAVE_LOG=DIR to keep each run's daemon log.
        log_filter: std::env::var("REGMAIL_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        command_timeout: "60s".into(),
        ..ImapConfig::default()
    });
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        let r = d.imported_with_order("bench", "BENCH1-GPT", &format!("bench-{run}-{i}.ru"));
        acks.push(Reply::ack(&r, &format!("{}", 100_000 + i)).bytes());
    }
    d.stop();
    (d, acks)
}

fn measure_regmail(d: &mut ImapDaemon, acks: &[Vec<u8>]) -> (Duration, Duration) {
    let n = acks.len();
    reset_gateway();
    let mut c = PlainImap::connect(GATEWAY);
    c.append_all("INBOX", acks);
    c.logout();
    assert_eq!(count("INBOX") as usize, n, "INBOX holds the N replies");
    let t0 = Instant::now();
    d.restart();
    loop {
        if acknowledged(&d.get_ok("/v1/stats")) as usize >= n {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "regmail did not apply {n} replies within 600 s\n{}",
            d.stderr_tail(30)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = t0.elapsed();
    // The records' own timestamps: first stored to last settled.
    let recs = d.inbox(None);
    assert_eq!(recs.len(), n, "one record per reply");
    let ts = |m: &Value, k: &str| -> jiff::Timestamp {
        m[k].as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("record without {k}: {m}"))
    };
    assert!(
        recs.iter().all(|m| m["state"] == "Applied"),
        "every reply applied"
    );
    let first = recs.iter().map(|m| ts(m, "received")).min().unwrap();
    let last = recs.iter().map(|m| ts(m, "settled")).max().unwrap();
    let steady = Duration::try_from(last.duration_since(first)).unwrap_or_default();
    d.stop();
    if let Ok(dir) = std::env::var("REGMAIL_BENCH_SAVE_LOG") {
        let to = std::path::Path::new(&dir).join(format!(
            "{}.log",
            d.dir().file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::copy(d.log_path(), &to);
    }
    (total, steady)
}

fn measure_plain(acks: &[Vec<u8>]) -> (Duration, Duration) {
    let n = acks.len();
    reset_gateway();
    let mut c = PlainImap::connect(GATEWAY);
    c.append_all("INBOX", acks);
    c.logout();
    assert_eq!(count("INBOX") as usize, n);

    let t0 = Instant::now();
    let mut c = PlainImap::connect(GATEWAY);
    let got = c.fetch_each("INBOX");
    c.logout();
    let each = t0.elapsed();
    assert_eq!(got.len(), n, "the plain client fetched every message");
    assert!(
        got.iter()
            .zip(acks)
            .all(|(a, b)| a.len() >= b.len() - 2 && a.ends_with(&b[b.len() - 20..])),
        "the plain client fetched the messages regmail gets"
    );

    let t0 = Instant::now();
    let mut c = PlainImap::connect(GATEWAY);
    let got = c.fetch_bulk("INBOX");
    c.logout();
    let bulk = t0.elapsed();
    assert_eq!(got.len(), n);
    reset_gateway();
    (each, bulk)
}

fn main() {
    let n: usize = std::env::var("REGMAIL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    // The gateway mailbox is shared with tests/inbound_imap.rs and tests/e2e.rs: wait for them.
    let _mailbox = support_imap::exclusive();
    support_imap::stack();
    eprintln!(
        "imap_intake: N = {n} replies, 3 interleaved runs, binary {}",
        common::BIN
    );
    let mut runs = Vec::new();
    for run in 0..3 {
        let (mut d, acks) = prepare(run, n);
        let (regmail, plain) = if run % 2 == 1 {
            let p = measure_plain(&acks);
            (measure_regmail(&mut d, &acks), p)
        } else {
            let r = measure_regmail(&mut d, &acks);
            (r, measure_plain(&acks))
        };
        let r = Run {
            regmail_total: rate(n, regmail.0),
            regmail_steady: rate(n, regmail.1),
            plain_each: rate(n, plain.0),
            plain_bulk: rate(n, plain.1),
        };
        eprintln!(
            "run {}: regmail {:.0} msg/s from start ({:.2} s; {:.0} msg/s first stored to last settled), plain client {:.0} msg/s one FETCH per message ({:.2} s), {:.0} msg/s one FETCH for all ({:.2} s)",
            run + 1,
            r.regmail_total,
            regmail.0.as_secs_f64(),
            r.regmail_steady,
            r.plain_each,
            plain.0.as_secs_f64(),
            r.plain_bulk,
            plain.1.as_secs_f64(),
        );
        runs.push(r);
    }
    let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let (rt, rs, pe, pb) = (
        m(|r| r.regmail_total),
        m(|r| r.regmail_steady),
        m(|r| r.plain_each),
        m(|r| r.plain_bulk),
    );
    println!("imap_intake N={n}, median of 3 interleaved runs:");
    println!("  regmail (start -> all Applied)            {rt:8.0} msg/s");
    println!("  regmail (first stored -> last settled)    {rs:8.0} msg/s");
    println!("  plain client, one UID FETCH per message   {pe:8.0} msg/s");
    println!("  plain client, one UID FETCH 1:*           {pb:8.0} msg/s");
    println!(
        "  ratio regmail/plain: {:.2} (per-message fetch), {:.2} (bulk fetch, the limit); steady-state {:.2} / {:.2}",
        rt / pe,
        rt / pb,
        rs / pe,
        rs / pb
    );
}
