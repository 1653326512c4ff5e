//! `regmail report expiring --within 30 [--csv]`, `regmail report expired [--csv]`,
//! `regmail report deleted [--csv]` (issue 11 part 3): the reseller reports from the running
//! daemon (`GET /v1/reports/...`), as a table, as JSON with `--json`, or as the daemon's CSV
//! (RFC 4180, exactly as served) with `--csv`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::{ApiClient, items, print_json, s, table};

/// Which report.
#[derive(Debug, Subcommand)]
pub enum ReportKind {
    /// Domains expiring within N days: order id, description, expiry date, days left,
    /// customer name, e-mail, phone (then status and domain).
    Expiring {
        /// Days ahead (1..=366).
        #[arg(long, default_value_t = 30)]
        within: u32,
        /// Print CSV (RFC 4180, UTF-8, CRLF) instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Expired domains, still renewable: order id, description, expiry date, customer name,
    /// e-mail, phone (then grace end and domain).
    Expired {
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Deleted domains: order id, description, expiry date, deletion date, customer name,
    /// e-mail, phone (then domain).
    Deleted {
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

/// Runs `regmail report ...`.
pub fn run(
    kind: ReportKind,
    client: &ApiClient,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (path, csv) = match kind {
        ReportKind::Expiring { within, csv } => {
            (format!("/v1/reports/expiring?within={within}"), csv)
        }
        ReportKind::Expired { csv } => ("/v1/reports/expired".to_owned(), csv),
        ReportKind::Deleted { csv } => ("/v1/reports/deleted".to_owned(), csv),
    };
    if csv {
        let mut resp = client
            .agent
            .get(&format!("{}{path}", client.base))
            .header("Authorization", &client.auth)
            .header("Accept", "text/csv")
            .call()
            .with_context(|| client.unreachable())?;
        if !resp.status().is_success() {
            client.answer(resp)?;
            anyhow::bail!("the daemon did not send the report");
        }
        let text = resp.body_mut().read_to_string()?;
        out.write_all(text.as_bytes())?;
        return Ok(());
    }
    let v = client.get(&path)?;
    if json {
        return print_json(out, &v);
    }
    print(out, &v)
}

/// The report as a table: the columns the daemon lists, in its order, headed in capitals.
fn print(out: &mut impl Write, v: &Value) -> anyhow::Result<()> {
    let columns: Vec<String> = items(v, "columns")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        // The ASCII name and the Unicode one are the same for most domains: the table shows
        // the Unicode one only (JSON and CSV have both).
        .filter(|c| c != "domain")
        .collect();
    let head: Vec<String> = columns
        .iter()
        .map(|c| match c.as_str() {
            "domain_unicode" => "DOMAIN".to_owned(),
            "order_id" => "ORDER".to_owned(),
            "customer_name" => "CUSTOMER".to_owned(),
            "expiry_date" => "EXPIRES".to_owned(),
            "deletion_date" => "DELETED".to_owned(),
            "description" => "DESCR".to_owned(),
            "email" => "E-MAIL".to_owned(),
            other => other.replace('_', " ").to_uppercase(),
        })
        .collect();
    let rows: Vec<Vec<String>> = items(v, "rows")
        .iter()
        .map(|r| columns.iter().map(|c| s(r, c)).collect())
        .collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let title = match v.get("within_days") {
        Some(w) => format!("{} within {w} days as of {}", s(v, "report"), s(v, "date")),
        None => format!("{} as of {}", s(v, "report"), s(v, "date")),
    };
    writeln!(out, "{title}: {} domain(s)", rows.len())?;
    table(out, &head, &rows)
}
