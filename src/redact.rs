//! Secret redaction for every view of stored mail (API, CLI, later the web page).
//!
//! Replies quote our requests, password line included, in whatever form the registrar's mailer
//! chose: `>` or `|` quoting, `password :` with odd spacing, KOI8-R, windows-1251 or UTF-8, and
//! any transfer encoding (base64, quoted-printable, RFC 2047 encoded-words). A [`Redactor`]
//! holds the configured secrets (registrar password, SMTP and IMAP passwords, the API token,
//! webhook secrets) and removes them from decoded text ([`Redactor::text`]) and from the raw
//! bytes ([`Redactor::raw`]) in every form they could take there. Pure: no I/O, no clock.

use std::borrow::Cow;

/// What a removed secret is replaced with.
pub const MASK: &str = "********";

/// The shortest secret looked for: shorter ones would mask ordinary words (and cannot be a
/// real password of the registrar, whose minimum is longer).
pub const MIN_SECRET_LEN: usize = 4;

/// Removes configured secrets from mail shown to anyone.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Each secret in every byte form it can take in a decoded stream (UTF-8, KOI8-R,
    /// windows-1251), longest first.
    forms: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    /// A redactor for `secrets` (empty and very short ones are skipped, see
    /// [`MIN_SECRET_LEN`]).
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Redactor {
        let mut forms: Vec<Vec<u8>> = Vec::new();
        for s in secrets {
            let s = s.as_ref().trim();
            if s.chars().count() < MIN_SECRET_LEN {
                continue;
            }
            forms.push(s.as_bytes().to_vec());
            for enc in [encoding_rs::KOI8_R, encoding_rs::WINDOWS_1251] {
                let (b, _, unmappable) = enc.encode(s);
                if !unmappable {
                    forms.push(b.into_owned());
                }
            }
        }
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        forms.dedup();
        Redactor { forms }
    }

    /// Decoded text with every secret and every `password:` value masked.
    pub fn text(&self, text: &str) -> String {
        let out = self.raw(text.as_bytes());
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Raw message bytes with every secret masked in every encoding it could appear in:
    /// base64 runs are decoded, masked and re-encoded; RFC 2047 encoded-words holding a secret
    /// are replaced; quoted-printable escapes and soft line breaks (RFC 2045 §6.7) are seen
    /// through; plain bytes in UTF-8, KOI8-R and windows-1251; and the value of every
    /// `password:` line (any quoting, any spacing) whatever it is.
    pub fn raw(&self, raw: &[u8]) -> Vec<u8> {
        let a = self.base64_runs(raw);
        let b = self.encoded_words(&a);
        let c = self.qp_aware(&b);
        mask_password_lines(&c)
    }

    /// True when `bytes` hold a secret in a plain form (no decoding).
    pub fn contains_plain(&self, bytes: &[u8]) -> bool {
        self.forms.iter().any(|f| find(bytes, f, 0).is_some())
    }

    /// Masks secrets (and password lines) in decoded bytes; true when something changed.
    fn decoded(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let masked = mask_password_lines(&self.qp_aware(bytes));
        (masked != bytes).then_some(masked)
    }

    /// Base64 runs: consecutive lines of only base64 characters (RFC 4648 §4), at least 8 of
    /// them in all. Each run is decoded; when the decoded bytes hold a secret, the run is
    /// re-encoded from the masked bytes with the same line width and line ending.
    fn base64_runs<'a>(&self, raw: &'a [u8]) -> Cow<'a, [u8]> {
        if self.forms.is_empty() {
            return Cow::Borrowed(raw);
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut changed = false;
        let mut pos = 0;
        while pos < raw.len() {
            let (s, e, next) = line_at(raw, pos);
            if !is_base64_line(&raw[s..e]) {
                out.extend_from_slice(&raw[s..next]);
                pos = next;
                continue;
            }
            // Only the run's lines are collected (memory stays proportional to the run).
            let mut lines = Vec::new();
            let mut p = pos;
            while p < raw.len() {
                let l = line_at(raw, p);
                if !is_base64_line(&raw[l.0..l.1]) {
                    break;
                }
                lines.push(l);
                p = l.2;
            }
            pos = p;
            let (i, j) = (0, lines.len());
            let run_start = lines[i].0;
            let run_end = lines[j - 1].2;
            let mut replaced = false;
            // A plain word line may sit just before the data: try the run from its first few
            // lines.
            for skip in 0..(j - i).min(3) {
                let first = i + skip;
                let text: Vec<u8> = lines[first..j]
                    .iter()
                    .flat_map(|l| raw[l.0..l.1].iter().copied())
                    .collect();
                if text.len() < 8 {
                    break;
                }
                let Some(masked) = base64_decode(&text).and_then(|d| self.decoded(&d)) else {
                    continue;
                };
                out.extend_from_slice(&raw[run_start..lines[first].0]);
                let width = lines[first].1 - lines[first].0;
                let eol = &raw[lines[first].1..lines[first].2];
                let eol: &[u8] = if eol.is_empty() { b"\r\n" } else { eol };
                let enc = base64_encode(&masked);
                for (k, chunk) in enc.chunks(width.max(4)).enumerate() {
                    if k > 0 {
                        out.extend_from_slice(eol);
                    }
                    out.extend_from_slice(chunk);
                }
                // Keep what followed the run's last line.
                out.extend_from_slice(&raw[lines[j - 1].1..run_end]);
                replaced = true;
                changed = true;
                break;
            }
            if !replaced {
                out.extend_from_slice(&raw[run_start..run_end]);
            }
        }
        if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(raw)
        }
    }

    /// RFC 2047 encoded-words (`=?charset?B|Q?text?=`) whose decoded bytes hold a secret or a
    /// password line are replaced by the mask.
    fn encoded_words<'a>(&self, raw: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Option<Vec<u8>> = None;
        let mut last = 0;
        let mut pos = 0;
        while let Some(start) = find(raw, b"=?", pos) {
            let Some((end, decoded)) = parse_encoded_word(raw, start) else {
                pos = start + 2;
                continue;
            };
            if self.decoded(&decoded).is_some() {
                let o = out.get_or_insert_with(Vec::new);
                o.extend_from_slice(&raw[last..start]);
                o.extend_from_slice(MASK.as_bytes());
                last = end;
            }
            pos = end;
        }
        match out {
            Some(mut o) => {
                o.extend_from_slice(&raw[last..]);
                Cow::Owned(o)
            }
            None => Cow::Borrowed(raw),
        }
    }

    /// Plain and quoted-printable forms: the bytes are read as quoted-printable (an `=XX`
    /// escape is one byte, `=` before a line end is nothing), each secret is looked for in that
    /// stream, and the original bytes it came from are replaced by the mask. Plain text reads
    /// as itself, so this covers unencoded secrets too.
    fn qp_aware<'a>(&self, raw: &'a [u8]) -> Cow<'a, [u8]> {
        if self.forms.is_empty() {
            return Cow::Borrowed(raw);
        }
        if !raw.contains(&b'=') {
            return self.plain(raw);
        }
        // decoded[i] came from raw[origin[i]..]; u32 offsets keep the map at 4 octets per
        // octet (messages are far below 4 GiB).
        let mut decoded = Vec::with_capacity(raw.len());
        let mut origin: Vec<u32> = Vec::with_capacity(raw.len() + 1);
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'=' {
                if let (Some(h), Some(l)) = (
                    raw.get(i + 1).and_then(|c| hex_val(*c)),
                    raw.get(i + 2).and_then(|c| hex_val(*c)),
                ) {
                    decoded.push(h << 4 | l);
                    origin.push(i as u32);
                    i += 3;
                    continue;
                }
                // Soft line break: "=" then optional white space then CRLF or LF.
                let mut k = i + 1;
                while k < raw.len() && (raw[k] == b' ' || raw[k] == b'\t') {
                    k += 1;
                }
                if raw.get(k) == Some(&b'\r') && raw.get(k + 1) == Some(&b'\n') {
                    i = k + 2;
                    continue;
                }
                if raw.get(k) == Some(&b'\n') {
                    i = k + 1;
                    continue;
                }
            }
            decoded.push(raw[i]);
            origin.push(i as u32);
            i += 1;
        }
        origin.push(raw.len() as u32);
        // Matches in the decoded stream, as spans of the raw bytes.
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for form in &self.forms {
            let mut from = 0;
            while let Some(at) = find(&decoded, form, from) {
                let end = at + form.len();
                let last = origin[end - 1] as usize;
                spans.push((origin[at] as usize, last + raw_len_at(raw, last)));
                from = end;
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(raw);
        }
        drop(origin);
        drop(decoded);
        splice_mask(raw, spans)
    }

    /// Plain forms only (no quoted-printable in sight).
    fn plain<'a>(&self, raw: &'a [u8]) -> Cow<'a, [u8]> {
        let mut spans = Vec::new();
        for form in &self.forms {
            let mut from = 0;
            while let Some(at) = find(raw, form, from) {
                spans.push((at, at + form.len()));
                from = at + form.len();
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(raw);
        }
        splice_mask(raw, spans)
    }
}

/// `raw` with each span (possibly overlapping) replaced by the mask.
fn splice_mask(raw: &[u8], mut spans: Vec<(usize, usize)>) -> Cow<'_, [u8]> {
    spans.sort_unstable();
    let mut out = Vec::with_capacity(raw.len());
    let mut last = 0;
    for (s, e) in spans {
        if s < last {
            // Overlaps a span already masked: extend it.
            last = last.max(e);
            continue;
        }
        out.extend_from_slice(&raw[last..s]);
        out.extend_from_slice(MASK.as_bytes());
        last = e;
    }
    out.extend_from_slice(&raw[last..]);
    Cow::Owned(out)
}

/// The length of the raw unit at `i`: 3 for a `=XX` escape, else 1.
fn raw_len_at(raw: &[u8], i: usize) -> usize {
    if raw[i] == b'='
        && raw.get(i + 1).and_then(|c| hex_val(*c)).is_some()
        && raw.get(i + 2).and_then(|c| hex_val(*c)).is_some()
    {
        3
    } else {
        1
    }
}

/// Masks the value of every line that reads `password: value` after any quoting: leading
/// white space, `>` and `|` in any mix, the key in any case (English or Russian "пароль" in
/// UTF-8), white space around `:` or `=`. R01's request carries `password: <value>`.
pub fn mask_password_lines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    while pos < raw.len() {
        let (s, e, next) = line_at(raw, pos);
        pos = next;
        let line = &raw[s..e];
        match password_value_start(line) {
            Some(v) if line[v..].iter().any(|c| !c.is_ascii_whitespace()) => {
                out.extend_from_slice(&line[..v]);
                out.extend_from_slice(MASK.as_bytes());
            }
            _ => out.extend_from_slice(line),
        }
        out.extend_from_slice(&raw[e..next]);
    }
    out
}

/// Where the value of a password line starts, if `line` is one.
fn password_value_start(line: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < line.len() && matches!(line[i], b' ' | b'\t' | b'>' | b'|') {
        i += 1;
    }
    let rest = &line[i..];
    let key_len = if rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"password") {
        8
    } else if rest.starts_with("пароль".as_bytes()) || rest.starts_with("Пароль".as_bytes())
    {
        "пароль".len()
    } else {
        return None;
    };
    let mut k = i + key_len;
    while k < line.len() && matches!(line[k], b' ' | b'\t') {
        k += 1;
    }
    if !matches!(line.get(k), Some(b':' | b'=')) {
        return None;
    }
    k += 1;
    while k < line.len() && matches!(line[k], b' ' | b'\t') {
        k += 1;
    }
    Some(k)
}

/// The line starting at `pos`: (start, end without the line ending, start of the next line).
fn line_at(raw: &[u8], pos: usize) -> (usize, usize, usize) {
    match raw[pos..].iter().position(|&c| c == b'\n') {
        Some(p) => {
            let nl = pos + p;
            let e = if nl > pos && raw[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            (pos, e, nl + 1)
        }
        None => (pos, raw.len(), raw.len()),
    }
}

fn is_base64_line(line: &[u8]) -> bool {
    let body = line.trim_ascii_end();
    let unpadded = body.strip_suffix(b"==").or_else(|| body.strip_suffix(b"="));
    let core = unpadded.unwrap_or(body);
    body.len() >= 4
        && core
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() || from > hay.len() - needle.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63]);
        out.push(B64[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63]
        } else {
            b'='
        });
    }
    out
}

/// Lenient base64 decoding: white space skipped, padding ends the data; None on any other
/// character.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut n = 0;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    Some(out)
}

/// An encoded-word at `start` (`=?charset?enc?text?=`, RFC 2047 §2): its end and the bytes it
/// decodes to (in its own charset).
fn parse_encoded_word(raw: &[u8], start: usize) -> Option<(usize, Vec<u8>)> {
    let rest = raw.get(start + 2..)?;
    let limit = rest.len().min(1000);
    let rest = &rest[..limit];
    let q1 = rest.iter().position(|&c| c == b'?')?;
    let enc = *rest.get(q1 + 1)?;
    if rest.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let text_len = find(&rest[text_start..], b"?=", 0)?;
    let text = &rest[text_start..text_start + text_len];
    if text.iter().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    let decoded = match enc.to_ascii_uppercase() {
        b'B' => base64_decode(text)?,
        b'Q' => {
            let mut v = Vec::with_capacity(text.len());
            let mut i = 0;
            while i < text.len() {
                match text[i] {
                    b'_' => v.push(b' '),
                    b'=' if i + 2 < text.len() + 1 => {
                        let h = text.get(i + 1).and_then(|c| hex_val(*c));
                        let l = text.get(i + 2).and_then(|c| hex_val(*c));
                        match (h, l) {
                            (Some(h), Some(l)) => {
                                v.push(h << 4 | l);
                                i += 2;
                            }
                            _ => v.push(b'='),
                        }
                    }
                    c => v.push(c),
                }
                i += 1;
            }
            v
        }
        _ => return None,
    };
    Some((start + 2 + text_start + text_len + 2, decoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PW: &str = "Zx9-qW7_pL3";

    fn r() -> Redactor {
        Redactor::new([PW, "парольСекрет1", "tok-0123456789abcdef"])
    }

    fn qp(bytes: &[u8], width: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut col = 0;
        for &b in bytes {
            let piece = if b.is_ascii_alphanumeric() || b == b' ' {
                vec![b]
            } else {
                format!("={b:02X}").into_bytes()
            };
            if col + piece.len() > width {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            col += piece.len();
            out.extend_from_slice(&piece);
        }
        out
    }

    fn leaks(out: &[u8], secret: &str) -> bool {
        let forms: Vec<Vec<u8>> = std::iter::once(secret.as_bytes().to_vec())
            .chain(
                [encoding_rs::KOI8_R, encoding_rs::WINDOWS_1251]
                    .iter()
                    .map(|e| e.encode(secret).0.into_owned()),
            )
            .collect();
        forms.iter().any(|f| find(out, f, 0).is_some())
            || base64_runs_hold(out, secret)
            || find(&qp_decode_all(out), secret.as_bytes(), 0).is_some()
    }

    fn base64_runs_hold(out: &[u8], secret: &str) -> bool {
        let joined: Vec<u8> = out
            .split(|&c| c == b'\n')
            .filter(|l| is_base64_line(l.trim_ascii_end()))
            .flat_map(|l| l.trim_ascii_end().to_vec())
            .collect();
        base64_decode(&joined)
            .map(|d| String::from_utf8_lossy(&d).contains(secret))
            .unwrap_or(false)
    }

    fn qp_decode_all(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' && i + 2 < b.len() {
                if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                if b[i + 1] == b'\r' && b[i + 2] == b'\n' {
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    #[test]
    fn plain_and_quoted_lines() {
        for line in [
            format!("> password: {PW}"),
            format!("| password : {PW}"),
            format!(">> >   PASSWORD   =   {PW}"),
            format!("the password was {PW}, they said"),
            format!("Пароль: {PW}"),
        ] {
            let out = r().text(&line);
            assert!(!out.contains(PW), "{line:?} -> {out:?}");
            assert!(out.contains(MASK), "{out:?}");
        }
    }

    #[test]
    fn password_line_of_an_unknown_value_is_masked() {
        let out = r().text("> password: some-older-password\nnext line\n");
        assert_eq!(out, format!("> password: {MASK}\nnext line\n"));
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        let t = "Subject: hi\r\n\r\nDomain example.ru registered.\r\npassword:\r\n=3D ok\r\n";
        assert_eq!(r().raw(t.as_bytes()), t.as_bytes());
    }

    #[test]
    fn base64_body_is_reencoded_masked() {
        let body = format!("request\r\npassword: {PW}\r\nmore text after it\r\n");
        let enc = base64_encode(body.as_bytes());
        let mut raw = b"Content-Transfer-Encoding: base64\r\n\r\n".to_vec();
        for c in enc.chunks(76) {
            raw.extend_from_slice(c);
            raw.extend_from_slice(b"\r\n");
        }
        let out = r().raw(&raw);
        assert!(!leaks(&out, PW));
        let dec = base64_decode(&out[37..]).expect("still base64");
        assert!(String::from_utf8_lossy(&dec).contains("more text after it"));
    }

    #[test]
    fn quoted_printable_across_soft_breaks_and_charsets() {
        let secret = "парольСекрет1";
        for enc in [
            encoding_rs::KOI8_R,
            encoding_rs::WINDOWS_1251,
            encoding_rs::UTF_8,
        ] {
            let (bytes, _, _) = enc.encode(secret);
            let body = [b"x: ".as_slice(), &bytes, b" end"].concat();
            for width in [5, 9, 76] {
                let out = r().raw(&qp(&body, width));
                assert!(!leaks(&out, secret), "{} width {width}", enc.name());
            }
            // 8bit, unencoded.
            assert!(!leaks(&r().raw(&body), secret));
        }
    }

    #[test]
    fn encoded_words_in_headers() {
        let b = String::from_utf8(base64_encode(format!("pw {PW}").as_bytes())).unwrap();
        let raw = format!("Subject: =?utf-8?B?{b}?= and =?koi8-r?Q?a_{PW}?=\r\n\r\nbody\r\n");
        let out = r().raw(raw.as_bytes());
        let s = String::from_utf8_lossy(&out);
        assert!(!s.contains(PW) && !s.contains(&b), "{s}");
        assert!(s.ends_with("\r\n\r\nbody\r\n"));
    }

    #[test]
    fn short_secrets_are_ignored() {
        let r = Redactor::new(["", "ab", "  "]);
        assert_eq!(r.text("ab ab"), "ab ab");
    }

    proptest! {
        #[test]
        fn never_leaks_whatever_surrounds_it(
            pre in "[ -~\n]{0,80}",
            post in "[ -~\n]{0,80}",
            enc in 0usize..4,
            width in 4usize..80,
        ) {
            let body = format!("{pre}{PW}{post}");
            let raw = match enc {
                0 => body.clone().into_bytes(),
                1 => qp(body.as_bytes(), width),
                2 => {
                    let e = base64_encode(body.as_bytes());
                    e.chunks(width.max(8) / 4 * 4).flat_map(|c| [c, b"\r\n"].concat()).collect()
                }
                _ => format!("> password: {PW}\r\n{pre}").into_bytes(),
            };
            let out = r().raw(&raw);
            prop_assert!(!leaks(&out, PW), "{:?}", String::from_utf8_lossy(&out));
        }

        #[test]
        fn idempotent(s in "[ -~\n]{0,200}") {
            let once = r().text(&s);
            prop_assert_eq!(r().text(&once), once.clone());
        }
    }
}
