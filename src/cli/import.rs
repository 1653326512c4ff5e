//! `regmail import FILE`: sends a portfolio to the running daemon's `POST /v1/import` in parts
//! and prints the rows it rejected with their line numbers in FILE (issue 13).
//!
//! FILE is JSON lines (the API's format) or CSV (RFC 4180: a header row, `"` quoting, quoted
//! cells may span lines), chosen by the `.csv` extension or `--format`. A CSV file holds one
//! kind of row, told by its header:
//! - domains: a `domain` column, and `client_id`, `expires`, `order_id`, `description`,
//!   `nameservers`, `auto_renew`; `nameservers` are separated by `,` `;` or line ends,
//!   `auto_renew` is true/false/yes/no/1/0 (empty: false);
//! - clients: the fields of the `POST /v1/clients` body as dotted paths (`id`, `handle`,
//!   `registrant.type`, `registrant.fio_ru`, `contact.email`, ...); `registrant.is_*` cells are
//!   true/false. Empty cells are left out.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::ApiClient;

/// Rows sent per request: well under the API's import body limit.
const PART_ROWS: usize = 5000;

/// One row to send, with the line of FILE it starts on.
struct Line {
    number: usize,
    json: String,
}

/// Runs `regmail import`. Returns the exit code: 0 when every row was imported or unchanged,
/// 1 when some row was rejected.
pub fn run(
    json_out: bool,
    client: &ApiClient,
    file: &Path,
    format: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} (UTF-8 text expected)", file.display()))?;
    let csv = match format {
        Some("csv") => true,
        Some("jsonl") => false,
        Some(other) => bail!("--format {other:?}: expected csv or jsonl"),
        None => file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    };
    let lines = if csv {
        csv_rows(&text)?
    } else {
        jsonl_rows(&text)
    };
    let (mut imported, mut unchanged) = (0u64, 0u64);
    let mut rejections: Vec<Value> = Vec::new();
    for part in lines.chunks(PART_ROWS) {
        let mut body = String::new();
        for l in part {
            body.push_str(&l.json);
            body.push('\n');
        }
        let v = client.post_raw("/v1/import", body.into_bytes())?;
        imported += v["imported"].as_u64().unwrap_or(0);
        unchanged += v["unchanged"].as_u64().unwrap_or(0);
        for r in v["rejections"].as_array().into_iter().flatten() {
            // The API numbers the lines of the part it got: map back to FILE's lines.
            let idx = r["line"].as_u64().unwrap_or(1).saturating_sub(1) as usize;
            let number = part.get(idx).map_or(0, |l| l.number);
            rejections.push(json!({"line": number, "field": r["field"], "reason": r["reason"]}));
        }
    }
    let summary = json!({
        "imported": imported,
        "unchanged": unchanged,
        "rejected": rejections.len(),
        "rejections": rejections,
    });
    if json_out {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        writeln!(
            out,
            "imported {imported}, unchanged {unchanged}, rejected {}",
            rejections.len()
        )?;
        for r in &rejections {
            writeln!(
                out,
                "line {}: {}: {}",
                r["line"],
                r["field"].as_str().unwrap_or_default(),
                r["reason"].as_str().unwrap_or_default()
            )?;
        }
    }
    Ok(if rejections.is_empty() { 0 } else { 1 })
}

/// JSON lines: every non-blank line as it is.
fn jsonl_rows(text: &str) -> Vec<Line> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Line {
            number: i + 1,
            json: l.trim().to_owned(),
        })
        .collect()
}

/// CSV: each record after the header as a JSON line.
fn csv_rows(text: &str) -> anyhow::Result<Vec<Line>> {
    let records = parse_csv(text)?;
    let Some((_, header)) = records.first() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    let domains = header.iter().any(|h| h == "domain");
    let mut out = Vec::new();
    for (number, cells) in records.iter().skip(1) {
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let mut obj = Map::new();
        for (name, cell) in header.iter().zip(cells) {
            let cell = cell.trim();
            if cell.is_empty() || name.is_empty() {
                continue;
            }
            let value = cell_value(name, cell, domains);
            insert_path(&mut obj, name, value);
        }
        let row = if domains {
            json!({ "domain": obj })
        } else {
            json!({ "client": obj })
        };
        out.push(Line {
            number: *number,
            json: row.to_string(),
        });
    }
    Ok(out)
}

/// A cell's JSON value: lists and flags are converted, everything else is a string (the API
/// validates it and names the field if it is wrong).
fn cell_value(name: &str, cell: &str, domains: bool) -> Value {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let flag = if domains {
        leaf == "auto_renew"
    } else {
        leaf.starts_with("is_")
    };
    if flag {
        return match cell.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "y" => Value::Bool(true),
            "false" | "no" | "0" | "n" => Value::Bool(false),
            _ => Value::String(cell.to_owned()),
        };
    }
    if domains && leaf == "nameservers" {
        return Value::Array(
            cell.split([',', ';', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        );
    }
    Value::String(cell.to_owned())
}

/// Puts `value` at a dotted path (`registrant.fio_ru`) in `obj`.
fn insert_path(obj: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            obj.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = obj
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !inner.is_object() {
                *inner = Value::Object(Map::new());
            }
            if let Value::Object(m) = inner {
                insert_path(m, rest, value);
            }
        }
    }
}

/// RFC 4180 records with the line each starts on. Quoted cells may hold `,`, `""` and line
/// ends; CRLF and LF both end a record.
fn parse_csv(text: &str) -> anyhow::Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut cells: Vec<String> = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    cell.push('\n');
                }
                '\r' => {}
                _ => cell.push(c),
            }
            continue;
        }
        match c {
            '"' if cell.is_empty() => quoted = true,
            ',' => cells.push(std::mem::take(&mut cell)),
            '\r' => {}
            '\n' => {
                cells.push(std::mem::take(&mut cell));
                records.push((start, std::mem::take(&mut cells)));
                line += 1;
                start = line;
            }
            _ => cell.push(c),
        }
    }
    if quoted {
        bail!("line {start}: a quoted cell is not closed");
    }
    if !cell.is_empty() || !cells.is_empty() {
        cells.push(cell);
        records.push((start, cells));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_domains_become_json_lines_with_their_file_lines() {
        let text = "domain,client_id,expires,order_id,description,nameservers,auto_renew\n\
                    a.ru,c1,2027-01-02,o1,\"two\nlines\",\"ns1.h.ru, ns2.h.ru\",yes\n\
                    b.ru,c1,2027-01-03,o2,,,\n";
        let rows = csv_rows(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].number, 2);
        assert_eq!(rows[1].number, 4, "the quoted cell spans line 3");
        let v: Value = serde_json::from_str(&rows[0].json).unwrap();
        assert_eq!(v["domain"]["nameservers"], json!(["ns1.h.ru", "ns2.h.ru"]));
        assert_eq!(v["domain"]["auto_renew"], json!(true));
        assert_eq!(v["domain"]["description"], json!("two\nlines"));
        let v: Value = serde_json::from_str(&rows[1].json).unwrap();
        assert!(v["domain"].get("description").is_none());
    }

    #[test]
    fn csv_clients_nest_dotted_columns() {
        let text = "id,handle,registrant.type,registrant.fio_ru,registrant.is_protected\r\n\
                    c1,AB1-GPT,person,\"Иванов, Иван\",false\r\n";
        let rows = csv_rows(text).unwrap();
        let v: Value = serde_json::from_str(&rows[0].json).unwrap();
        assert_eq!(v["client"]["registrant"]["fio_ru"], json!("Иванов, Иван"));
        assert_eq!(v["client"]["registrant"]["is_protected"], json!(false));
        assert_eq!(v["client"]["handle"], json!("AB1-GPT"));
    }

    #[test]
    fn an_open_quote_is_an_error_with_its_line() {
        let e = parse_csv("a,b\n\"x,y\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
