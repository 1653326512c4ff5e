//! Tables for people: columns fit the terminal (width from `$COLUMNS`, else the terminal
//! itself; unlimited when stdout is not a terminal), long cells are cut with an ellipsis, and
//! widths count what a terminal shows (Cyrillic one column, CJK two, combining marks none).
//! Every operator command's table goes through here.

use std::io::Write;

/// The width to fit: `$COLUMNS` when set to a number, else the terminal's width when stdout is
/// a terminal, else None (no limit: a pipe gets whole values).
pub fn width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    terminal_width()
}

#[cfg(unix)]
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own; fd 1 may be anything,
    // and a failure (not a terminal) only returns -1.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

#[cfg(not(unix))]
fn terminal_width() -> Option<usize> {
    None
}

/// Columns a character takes on a terminal (a compact version of Unicode's East Asian Width:
/// wide and fullwidth ranges take two, combining marks and zero-width characters none).
pub fn char_width(c: char) -> usize {
    let u = c as u32;
    match u {
        0x0300..=0x036F | 0x200B..=0x200F | 0x20D0..=0x20FF | 0xFE00..=0xFE0F => 0,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// Columns a string takes.
pub fn text_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// Cuts `s` to at most `max` columns, ending with `…` when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if text_width(s) <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if w + cw > max - 1 {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

/// Control characters (a newline in a registrar's reason) would break the layout.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A table: a header, rows, and column widths fitted to a width.
#[derive(Debug, Clone)]
pub struct Table {
    head: Vec<String>,
    /// Columns that may not shrink below their natural width (e.g. a sequence number).
    keep: Vec<bool>,
    widths: Vec<usize>,
    limit: Option<usize>,
}

/// Space between columns.
const GAP: usize = 2;

impl Table {
    /// A table with these column heads, fitted to `limit` columns (None: no limit).
    pub fn new(head: &[&str], limit: Option<usize>) -> Table {
        Table {
            head: head.iter().map(|h| h.to_string()).collect(),
            keep: vec![false; head.len()],
            widths: head.iter().map(|h| text_width(h)).collect(),
            limit,
        }
    }

    /// Marks column `i` as one that keeps its full width while others shrink.
    pub fn keep(mut self, i: usize) -> Table {
        if let Some(k) = self.keep.get_mut(i) {
            *k = true;
        }
        self
    }

    /// Fits the widths to `rows` (natural widths, then the widest columns shrink until the
    /// line fits the limit; a column never gets narrower than 3 or its head's width).
    pub fn fit(&mut self, rows: &[Vec<String>]) {
        for r in rows {
            for (i, c) in r.iter().enumerate() {
                if let Some(w) = self.widths.get_mut(i) {
                    *w = (*w).max(text_width(&clean(c)));
                }
            }
        }
        let Some(limit) = self.limit else { return };
        let gaps = GAP * self.widths.len().saturating_sub(1);
        let floor: Vec<usize> = self
            .head
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if self.keep[i] {
                    self.widths[i]
                } else {
                    text_width(h).clamp(3, 8)
                }
            })
            .collect();
        while self.widths.iter().sum::<usize>() + gaps > limit {
            let widest = (0..self.widths.len())
                .filter(|&i| self.widths[i] > floor[i])
                .max_by_key(|&i| self.widths[i]);
            match widest {
                Some(i) => self.widths[i] -= 1,
                None => break,
            }
        }
    }

    /// One line: cells cut to their column, padded, and the whole cut to the limit.
    pub fn line(&self, cells: &[String]) -> String {
        let n = self.widths.len();
        let mut out = String::new();
        for (i, w) in self.widths.iter().enumerate() {
            let cell = clean(cells.get(i).map_or("", String::as_str));
            let cell = truncate(&cell, *w);
            out.push_str(&cell);
            if i + 1 < n {
                out.push_str(&" ".repeat(w - text_width(&cell) + GAP));
            }
        }
        let out = out.trim_end().to_owned();
        match self.limit {
            Some(l) => truncate(&out, l),
            None => out,
        }
    }

    /// The header line.
    pub fn head_line(&self) -> String {
        self.line(&self.head)
    }

    /// Writes the header and the rows (or `(none)`), fitting first.
    pub fn print(mut self, out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
        self.fit(rows);
        writeln!(out, "{}", self.head_line())?;
        for r in rows {
            writeln!(out, "{}", self.line(r))?;
        }
        if rows.is_empty() {
            writeln!(out, "(none)")?;
        }
        Ok(())
    }
}

/// A timestamp (RFC 3339) as short local time: `MM-DD HH:MM:SS` in the system's time zone
/// (`TZ` honoured); anything else is shown as it is.
pub fn local_time(at: &str) -> String {
    match at.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => at.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_display_columns() {
        assert_eq!(truncate("пример.рф", 20), "пример.рф");
        assert_eq!(truncate("пример.рф", 5), "прим…");
        assert_eq!(text_width("日本"), 4);
        assert_eq!(truncate("日本語テキスト", 5), "日本…");
        assert!(text_width(&truncate("日本語テキスト", 5)) <= 5);
    }

    #[test]
    fn lines_fit_the_width() {
        let rows = vec![
            vec![
                "очень-длинное-имя-домена-для-проверки.рф".to_owned(),
                "Registered".to_owned(),
                "a very long error message ".repeat(10),
            ],
            vec!["x.ru".into(), "Error".into(), "short".into()],
        ];
        for w in [40, 80, 120] {
            let mut out = Vec::new();
            Table::new(&["DOMAIN", "STATUS", "LAST ERROR"], Some(w))
                .print(&mut out, &rows)
                .unwrap();
            let text = String::from_utf8(out).unwrap();
            for l in text.lines() {
                assert!(text_width(l) <= w, "{w}: {l:?}");
            }
            assert!(text.contains('…'), "{text}");
            assert!(text.contains("Registered"), "{text}");
        }
    }

    #[test]
    fn no_limit_keeps_whole_values() {
        let rows = vec![vec!["a".repeat(300)]];
        let mut out = Vec::new();
        Table::new(&["A"], None).print(&mut out, &rows).unwrap();
        assert!(String::from_utf8(out).unwrap().contains(&"a".repeat(300)));
    }
}
