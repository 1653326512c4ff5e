//! CSV per RFC 4180: a header row, CRLF line ends (§2.1), a field enclosed in double quotes
//! when it holds a comma, a double quote, CR or LF, and a double quote inside doubled (§2.5–7).
//! Served as `text/csv; charset=utf-8` (RFC 4180 §3, RFC 7111).
//!
//! CSV formula injection (OWASP, "CSV Injection"): a spreadsheet runs a cell that starts with
//! `=`, `+`, `-` or `@` (and, per OWASP, a tab or CR) as a formula. Customer names, e-mails,
//! phones, order ids and descriptions come from outside, so such a text cell gets a leading
//! `'`, which spreadsheets take as "this is text". A phone in international form (`+7 495 …`)
//! is shown as `'+7 495 …` for that reason. Numbers (days left) and dates are ours and never
//! start with one of those characters; JSON is never altered.

use std::borrow::Cow;

use super::{Cell, Report};

/// The line end of RFC 4180 §2.1.
pub const CRLF: &str = "\r\n";

/// The Content-Type of a CSV answer or attachment.
pub const CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// A text cell made safe for spreadsheets: a leading `'` when it starts with `=`, `+`, `-`,
/// `@`, a tab or a CR.
pub fn guard(s: &str) -> Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

/// One field, quoted when RFC 4180 §2.6 asks for it (comma, double quote, CR or LF), with
/// inner double quotes doubled (§2.7).
pub fn field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

fn cell(c: &Cell) -> String {
    match c {
        Cell::Text(s) => field(&guard(s)).into_owned(),
        other => field(&other.text()).into_owned(),
    }
}

/// The whole report as CSV: the header row (the columns' headings), then one record per row.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let head: Vec<String> = report
        .kind
        .columns()
        .iter()
        .map(|c| field(c.head).into_owned())
        .collect();
    out.push_str(&head.join(","));
    out.push_str(CRLF);
    for row in &report.rows {
        let cells: Vec<String> = row.iter().map(cell).collect();
        out.push_str(&cells.join(","));
        out.push_str(CRLF);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_rfc_4180_asks() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(field(""), "");
        assert_eq!(field("Иванов"), "Иванов");
    }

    #[test]
    fn formula_starts_get_a_quote() {
        for s in ["=1+1", "+7 495 1234567", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(guard(s), format!("'{s}"));
        }
        for s in ["a=b", "7", "", "'already"] {
            assert_eq!(guard(s), s);
        }
        // Guarded first, then quoted: the quote sits inside the field.
        assert_eq!(
            cell(&Cell::Text("=HYPERLINK(\"http://x\",\"y\")".into())),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(cell(&Cell::Int(3)), "3");
        assert_eq!(cell(&Cell::Date(None)), "");
    }
}
