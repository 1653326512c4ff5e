//! `regmail log`: the action log as a table that fits the terminal (short local times, Unicode
//! domain names, the reply rule and how each reply was matched, as the demo shows them), and
//! `--follow`, which keeps tailing across a daemon restart.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use super::table::{Table, local_time};
use super::{ApiClient, enc, items, s};

/// What to show.
pub(super) struct LogArgs {
    pub domain: Option<String>,
    pub client: Option<String>,
    pub request: Option<String>,
    pub since: u64,
    pub follow: bool,
    pub json: bool,
}

const HEAD: [&str; 8] = [
    "SEQ", "TIME", "ACTOR", "ACTION", "ON", "CHANGE", "RULE", "MESSAGE",
];

/// One log entry as table cells.
fn row(e: &Value) -> Vec<String> {
    let on = if !s(e, "domain").is_empty() {
        let d = s(e, "domain");
        crate::core::DomainName::parse(&d)
            .map(|n| n.to_unicode())
            .unwrap_or(d)
    } else if !s(e, "client").is_empty() {
        format!("client {}", s(e, "client"))
    } else if !s(e, "request").is_empty() {
        let r = s(e, "request");
        format!("request {}", r.get(..8).unwrap_or(&r))
    } else {
        String::new()
    };
    let change = match (s(e, "status_before"), s(e, "status_after")) {
        (b, a) if a.is_empty() || a == b => String::new(),
        (b, a) if b.is_empty() => format!("-> {a}"),
        (b, a) => format!("{b} -> {a}"),
    };
    let ev = &e["evidence"];
    let rule = match (s(ev, "rule"), s(ev, "correlation")) {
        (r, c) if r.is_empty() && c.is_empty() => String::new(),
        (r, c) if c.is_empty() => r,
        (r, c) if r.is_empty() => format!("by {c}"),
        (r, c) => format!("{r} by {c}"),
    };
    vec![
        s(e, "seq"),
        local_time(&s(e, "at")),
        s(e, "actor"),
        s(e, "action"),
        on,
        change,
        rule,
        s(e, "message"),
    ]
}

/// A connection failure (the daemon is down or restarting), as opposed to an answer.
fn unreachable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ureq::Error>().is_some()
}

/// Runs `regmail log`.
pub(super) fn run(client: &ApiClient, out: &mut impl Write, a: LogArgs) -> anyhow::Result<()> {
    let base = match (&a.domain, &a.client, &a.request) {
        (Some(d), _, _) => format!("/v1/domains/{}/log", enc(d)),
        (None, Some(c), _) => format!("/v1/clients/{}/log", enc(c)),
        (None, None, Some(r)) => format!("/v1/requests/{}/log", enc(r)),
        (None, None, None) => "/v1/log".to_owned(),
    };
    let mut table = Table::new(&HEAD, super::table::width()).keep(0).keep(1);
    let mut printed_head = false;
    let mut since = a.since;
    let mut down_since: Option<std::time::Instant> = None;
    loop {
        let sep = if base.contains('?') { '&' } else { '?' };
        let page = client.get(&format!("{base}{sep}since={since}&limit=1000"));
        let v = match page {
            Ok(v) => {
                if down_since.take().is_some() {
                    eprintln!("regmail: the daemon is back; following from entry {since}");
                }
                v
            }
            Err(e) if a.follow && unreachable(&e) => {
                // A restart: keep the place and try again (systemd restarts within seconds).
                if down_since.is_none() {
                    eprintln!("regmail: the daemon does not answer ({e:#}); waiting for it");
                    down_since = Some(std::time::Instant::now());
                }
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(e) => return Err(hint(client, &a, e)),
        };
        let entries = items(&v, "entries");
        if a.json {
            for e in &entries {
                writeln!(out, "{e}")?;
            }
        } else {
            let rows: Vec<Vec<String>> = entries.iter().map(row).collect();
            if !printed_head && (!rows.is_empty() || !a.follow) {
                table.fit(&rows);
                writeln!(out, "{}", table.head_line())?;
                printed_head = true;
                if rows.is_empty() {
                    writeln!(out, "(none)")?;
                }
            }
            for r in &rows {
                writeln!(out, "{}", table.line(r))?;
            }
        }
        out.flush()?;
        since = v.get("next").and_then(Value::as_u64).unwrap_or(since);
        if !a.follow {
            if entries.len() < 1000 {
                break;
            }
            continue;
        }
        if entries.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

/// `regmail log X` where X is a client id: say to use `--client`.
fn hint(client: &ApiClient, a: &LogArgs, e: anyhow::Error) -> anyhow::Error {
    if let Some(d) = &a.domain
        && client.get(&format!("/v1/clients/{}", enc(d))).is_ok()
    {
        return anyhow::anyhow!(
            "{d:?} is a client id, not a domain: run `regmail log --client {d}` ({e:#})"
        );
    }
    if let Some(d) = &a.domain
        && !d.contains('.')
    {
        return anyhow::anyhow!(
            "{e:#}; for a client's log run `regmail log --client {d}`, for a request's `regmail log --request {d}`"
        );
    }
    e
}
