//! One inbound e-mail, from raw bytes to the fields the classifier and the reply rules read.
//!
//! Built on mail-parser (RFC 5322 messages, RFC 2045-2049 MIME, RFC 2047 encoded words) with the
//! corrections registrar mail needs (see ../shared/dependency-notes.md): a text part with no
//! charset label and 8-bit bytes is re-decoded with the registrar's charset instead of the lossy
//! UTF-8 mail-parser returns, an unencoded 8-bit Subject likewise, HTML-only mail is reduced to
//! text, and an RFC 3464 delivery report is read field by field.
//!
//! Work is bounded: the size is checked before anything is parsed, the number of MIME containers
//! is counted before mail-parser builds its tree, and the nesting depth is checked before the
//! tree is walked. Anything outside the limits, or not an e-mail at all, is a [`Quarantine`] with
//! its reason (DESIGN.md §4 invariant 6); nothing here panics on any input.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use encoding_rs::Encoding;
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{
    Address, ContentType, Encoding as TransferEncoding, Header, HeaderValue, Message,
    MessageParser, MessagePart, MimeHeaders, PartType,
};

/// Bounds on the work one message may cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest message accepted, in octets (checked before parsing; the IMAP intake checks
    /// RFC822.SIZE against the same number before fetching).
    pub max_size: usize,
    /// Deepest MIME nesting accepted: each multipart or message/rfc822 container is one level.
    pub max_depth: usize,
    /// Most multipart or message/* containers accepted in the whole message.
    pub max_containers: usize,
    /// Most header fields in the top header section.
    pub max_headers: usize,
    /// Most lines that could delimit a MIME part (`--` then a boundary, RFC 2046 §5.1.1);
    /// mail-parser builds a part for each, so 300,000 tiny parts in one multipart would cost
    /// hundreds of MB before any other limit looks.
    pub max_parts: usize,
    /// Largest top header section, in octets.
    pub max_header_bytes: usize,
}

impl Default for ParseLimits {
    /// 1 MiB, 8 levels, 64 containers, 500 header fields in 256 KiB: generous for registrar
    /// replies and bounces, which are a few kilobytes, at most four levels deep and carry a few
    /// dozen header fields (Received lines included).
    fn default() -> Self {
        ParseLimits {
            max_size: 1024 * 1024,
            max_depth: 8,
            max_containers: 64,
            max_headers: 500,
            max_parts: 1000,
            max_header_bytes: 256 * 1024,
        }
    }
}

/// Why a message was set aside instead of being processed; the raw mail is kept by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quarantined: {reason}")]
pub struct Quarantine {
    /// What is wrong with the message, for the operator.
    pub reason: String,
}

impl Quarantine {
    fn new(reason: impl Into<String>) -> Self {
        Quarantine {
            reason: reason.into(),
        }
    }
}

/// The header fields the classifier reads (RFC 3834 auto-reply markers, bounce markers), each
/// unfolded and trimmed, as found in the top-level header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassHeaders {
    /// `Auto-Submitted` (RFC 3834 §5).
    pub auto_submitted: Option<String>,
    /// `X-Autoreply` (non-standard, common).
    pub x_autoreply: Option<String>,
    /// `X-Autorespond` (non-standard, common).
    pub x_autorespond: Option<String>,
    /// `Precedence` (non-standard: bulk, junk, list, auto_reply).
    pub precedence: Option<String>,
    /// The top part's media type, lower-case `type/subtype` (RFC 2045 §5).
    pub content_type: Option<String>,
    /// The `report-type` parameter of a top-level multipart/report (RFC 6522).
    pub report_type: Option<String>,
    /// `Return-Path` without angle brackets, lower-case; `Some("")` is the null reverse path
    /// `<>` that bounces carry (RFC 5321 §4.5.5).
    pub return_path: Option<String>,
}

/// The fields of one recipient in a message/delivery-status part (RFC 3464 §2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientStatus {
    /// `Final-Recipient`, the address only (the `rfc822;` type is dropped), lower-case.
    pub final_recipient: Option<String>,
    /// `Original-Recipient`, the address only, lower-case.
    pub original_recipient: Option<String>,
    /// `Action`, lower-case: failed, delayed, delivered, relayed or expanded.
    pub action: Option<String>,
    /// `Status`, the enhanced status code (RFC 3463), e.g. `5.1.1`.
    pub status: Option<String>,
    /// `Diagnostic-Code` without its type (`smtp;`), e.g. `550 5.1.1 User unknown`.
    pub diagnostic_code: Option<String>,
    /// `Remote-MTA` without its type.
    pub remote_mta: Option<String>,
}

/// A machine-readable delivery report (RFC 3464), from a message/delivery-status or
/// message/global-delivery-status (RFC 6533) part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStatus {
    /// `Reporting-MTA` without its type.
    pub reporting_mta: Option<String>,
    /// One entry per recipient block.
    pub recipients: Vec<RecipientStatus>,
}

/// What [`parse`] extracts from one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMail {
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    /// `In-Reply-To` ids without angle brackets (RFC 5322 §3.6.4).
    pub in_reply_to: Vec<String>,
    /// `References` ids without angle brackets.
    pub references: Vec<String>,
    /// The first `From` address: the addr-spec only, lower-case. Never the display name.
    pub from: String,
    /// The display name of that address, decoded; for people, never for decisions.
    pub from_name: Option<String>,
    /// Further `From` addresses (RFC 5322 allows several authors); lower-case.
    pub other_from: Vec<String>,
    /// `To` addresses, lower-case.
    pub to: Vec<String>,
    /// The decoded Subject (RFC 2047 encoded words, or raw 8-bit text in the fallback charset).
    pub subject: String,
    /// `Date`, if present and valid.
    pub date: Option<jiff::Timestamp>,
    /// The body text: text/plain preferred, HTML reduced to text, decoded, LF line ends, no
    /// trailing white space on any line. Attachments, returned messages and reports are not in it.
    pub body: String,
    /// The body without quoted text (`>` lines, an attribution line before them, and everything
    /// after an "Original Message" separator): what the reply rules read.
    pub reply_text: String,
    /// Header fields the classifier reads.
    pub headers: ClassHeaders,
    /// The RFC 3464 delivery report, when the message carries one.
    pub delivery_status: Option<DeliveryStatus>,
    /// The Message-ID of a returned message (message/rfc822 or text/rfc822-headers part), as
    /// bounces and some forwards carry, without angle brackets.
    pub returned_message_id: Option<String>,
    /// What was repaired on the way (a missing charset label, an 8-bit Subject), for the log.
    pub notes: Vec<String>,
}

/// Parses one raw message (RFC 5322 octets, CRLF or LF line ends).
///
/// `fallback` is the registrar's charset (KOI8-R for R01), used for text parts that carry no
/// usable charset label and are not valid UTF-8, and for an unencoded 8-bit Subject.
/// Never panics; every refusal is a [`Quarantine`] with its reason.
pub fn parse(
    raw: &[u8],
    limits: &ParseLimits,
    fallback: &'static Encoding,
) -> Result<ParsedMail, Quarantine> {
    if raw.len() > limits.max_size {
        return Err(Quarantine::new(format!(
            "message is {} octets; the limit is {}",
            raw.len(),
            limits.max_size
        )));
    }
    if let Some(problem) = header_section_problem(raw, limits) {
        return Err(Quarantine::new(problem));
    }
    let delimiters = count_delimiter_lines(raw, limits.max_parts);
    if delimiters > limits.max_parts {
        return Err(Quarantine::new(format!(
            "MIME structure too large: more than {} part delimiter lines; the limit is {}",
            limits.max_parts, limits.max_parts
        )));
    }
    let containers = count_containers(raw);
    if containers > limits.max_containers {
        return Err(Quarantine::new(format!(
            "MIME structure too large: {containers} multipart or message containers; the limit is {}",
            limits.max_containers
        )));
    }
    // mail-parser promises not to panic; this turns a broken promise into a quarantine rather
    // than a dead intake task.
    catch_unwind(AssertUnwindSafe(|| parse_checked(raw, limits, fallback))).unwrap_or_else(|_| {
        Err(Quarantine::new(
            "the MIME parser failed on this message (internal panic caught)",
        ))
    })
}

fn parse_checked(
    raw: &[u8],
    limits: &ParseLimits,
    fallback: &'static Encoding,
) -> Result<ParsedMail, Quarantine> {
    if !starts_with_header_field(raw) {
        return Err(Quarantine::new(
            "not an e-mail message: it does not start with a header field",
        ));
    }
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| Quarantine::new("not an e-mail message: no header fields"))?;
    let root = msg
        .parts
        .first()
        .ok_or_else(|| Quarantine::new("not an e-mail message: no parts"))?;
    if root.headers.is_empty() {
        return Err(Quarantine::new("not an e-mail message: no header fields"));
    }

    let depth = nesting_depth(&msg, limits.max_depth)?;
    if depth > limits.max_depth {
        return Err(Quarantine::new(format!(
            "MIME nesting is deeper than {} levels",
            limits.max_depth
        )));
    }

    let mut notes = Vec::new();

    let from_list = header_addresses(root, "From");
    let mut from_iter = from_list.into_iter();
    let (from_name, from) = match from_iter.next() {
        Some((name, addr)) if !addr.is_empty() => (name, addr),
        _ => return Err(Quarantine::new("no From address")),
    };
    let other_from: Vec<String> = from_iter
        .map(|(_, a)| a)
        .filter(|a| !a.is_empty())
        .collect();
    let to = header_addresses(root, "To")
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| !a.is_empty())
        .collect();

    let from_name = from_name.map(|name| redecode_display_name(&msg, root, name, fallback));
    let subject = decode_subject(&msg, root, fallback, &mut notes);

    let mut body_parts = Vec::new();
    collect_text(
        &msg,
        0,
        0,
        limits.max_depth,
        fallback,
        &mut body_parts,
        &mut notes,
    );
    let body = normalize_text(&body_parts.join("\n"));
    let reply_text = strip_quoted(&body);

    let (delivery_status, returned_message_id) = report_parts(&msg);

    Ok(ParsedMail {
        message_id: msg.message_id().map(clean_id).filter(|s| !s.is_empty()),
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        from,
        from_name,
        other_from,
        to,
        subject,
        date: msg.date().and_then(to_timestamp),
        body,
        reply_text,
        headers: class_headers(&msg, root),
        delivery_status,
        returned_message_id,
        notes,
    })
}

/// True when the first line is a header field: a name of printable ASCII other than `:`
/// (RFC 5322 §2.2 ftext), then a colon (white space before it is obsolete syntax, §4.5.2).
fn starts_with_header_field(raw: &[u8]) -> bool {
    let name_len = raw
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && b != b':')
        .count();
    let colon = raw[name_len..]
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map(|i| name_len + i);
    (1..=998).contains(&name_len) && colon.is_some_and(|i| raw.get(i) == Some(&b':'))
}

/// Counts header fields that open a container (`Content-Type: multipart/...` or `message/...`)
/// without parsing, so a hostile message cannot make the parser build a huge tree.
/// Lines that start with `--` and a non-blank character (a possible boundary delimiter),
/// counted up to `stop` + 1.
fn count_delimiter_lines(raw: &[u8], stop: usize) -> usize {
    let mut count = 0;
    let mut start = 0;
    while start < raw.len() && count <= stop {
        if raw[start..].starts_with(b"--")
            && raw.get(start + 2).is_some_and(|c| !c.is_ascii_whitespace())
        {
            count += 1;
        }
        match raw[start..].iter().position(|&c| c == b'\n') {
            Some(p) => start += p + 1,
            None => break,
        }
    }
    count
}

fn count_containers(raw: &[u8]) -> usize {
    const NAME: &[u8] = b"content-type";
    let mut count = 0;
    let mut at_line_start = true;
    let mut i = 0;
    while i < raw.len() {
        if at_line_start
            && raw.len() - i > NAME.len()
            && raw[i..i + NAME.len()].eq_ignore_ascii_case(NAME)
        {
            let mut j = i + NAME.len();
            while j < raw.len() && matches!(raw[j], b' ' | b'\t') {
                j += 1;
            }
            if j < raw.len() && raw[j] == b':' {
                j += 1;
                while j < raw.len() && matches!(raw[j], b' ' | b'\t' | b'\r' | b'\n') {
                    j += 1;
                }
                let rest = &raw[j..raw.len().min(j + 10)];
                let starts =
                    |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
                if starts(b"multipart/") || starts(b"message/") {
                    count += 1;
                }
            }
        }
        at_line_start = raw[i] == b'\n';
        i += 1;
    }
    count
}

/// The deepest container nesting of the message, stopping as soon as `max` is exceeded (so a
/// cyclic or absurd tree costs at most `max` levels of recursion).
fn nesting_depth(msg: &Message<'_>, max: usize) -> Result<usize, Quarantine> {
    let mut budget = 10_000usize;
    fn walk(
        msg: &Message<'_>,
        id: usize,
        depth: usize,
        max: usize,
        budget: &mut usize,
    ) -> Result<usize, Quarantine> {
        *budget = budget.saturating_sub(1);
        if *budget == 0 {
            return Err(Quarantine::new("MIME structure has too many parts"));
        }
        let Some(part) = msg.parts.get(id) else {
            return Ok(depth);
        };
        match &part.body {
            PartType::Multipart(children) => {
                let inner = depth + 1;
                if inner > max {
                    return Ok(inner);
                }
                let mut deepest = inner;
                for &child in children {
                    let child = child as usize;
                    if child == id {
                        continue;
                    }
                    deepest = deepest.max(walk(msg, child, inner, max, budget)?);
                    if deepest > max {
                        break;
                    }
                }
                Ok(deepest)
            }
            PartType::Message(nested) => {
                let inner = depth + 1;
                if inner > max {
                    return Ok(inner);
                }
                walk(nested, 0, inner, max, budget)
            }
            _ => Ok(depth),
        }
    }
    walk(msg, 0, 0, max, &mut budget)
}

/// The addresses of a top-level header as (display name, lower-case addr-spec).
fn header_addresses(root: &MessagePart<'_>, name: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for header in root.headers.iter().filter(|h| is_named(h, name)) {
        let Some(address) = header.value.as_address() else {
            continue;
        };
        let addrs: Vec<&mail_parser::Addr<'_>> = match address {
            Address::List(list) => list.iter().collect(),
            Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).collect(),
        };
        for addr in addrs {
            let spec = addr
                .address
                .as_deref()
                .map(|a| {
                    a.trim()
                        .trim_matches(|c| c == '<' || c == '>')
                        .to_lowercase()
                })
                .unwrap_or_default();
            if spec.chars().any(char::is_whitespace) {
                continue;
            }
            let display = addr
                .name
                .as_deref()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty());
            out.push((display, spec));
        }
    }
    out
}

fn is_named(header: &Header<'_>, name: &str) -> bool {
    header.name.as_str().eq_ignore_ascii_case(name)
}

/// The raw value bytes of the first top-level header called `name`.
fn raw_header<'a>(msg: &'a Message<'_>, root: &MessagePart<'_>, name: &str) -> Option<&'a [u8]> {
    let header = root.headers.iter().find(|h| is_named(h, name))?;
    msg.raw_message
        .get(header.offset_start as usize..header.offset_end as usize)
}

/// A raw header value as text: unfolded (RFC 5322 §2.2.3), trimmed.
fn raw_header_text(msg: &Message<'_>, root: &MessagePart<'_>, name: &str) -> Option<String> {
    raw_header(msg, root, name).map(|bytes| unfold(&String::from_utf8_lossy(bytes)))
}

fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The decoded Subject. mail-parser decodes RFC 2047 words; a Subject sent as raw 8-bit text in
/// the registrar's charset (no encoded words, not UTF-8) is re-decoded with `fallback`.
fn decode_subject(
    msg: &Message<'_>,
    root: &MessagePart<'_>,
    fallback: &'static Encoding,
    notes: &mut Vec<String>,
) -> String {
    let parsed = root
        .headers
        .iter()
        .find(|h| is_named(h, "Subject"))
        .and_then(|h| h.value.as_text())
        .map(unfold)
        .unwrap_or_default();
    if !parsed.contains('\u{FFFD}') {
        return parsed;
    }
    match raw_header(msg, root, "Subject") {
        Some(bytes) if std::str::from_utf8(bytes).is_err() && !contains(bytes, b"=?") => {
            let (text, _) = fallback.decode_without_bom_handling(bytes);
            notes.push(format!(
                "Subject carried raw 8-bit text; decoded as {}",
                fallback.name()
            ));
            unfold(&text)
        }
        _ => parsed,
    }
}

/// A From display name sent as raw 8-bit text: re-read the field in the fallback charset.
fn redecode_display_name(
    msg: &Message<'_>,
    root: &MessagePart<'_>,
    name: String,
    fallback: &'static Encoding,
) -> String {
    if !name.contains('\u{FFFD}') {
        return name;
    }
    let Some(bytes) = raw_header(msg, root, "From") else {
        return name;
    };
    if std::str::from_utf8(bytes).is_ok() {
        return name;
    }
    let (text, _) = fallback.decode_without_bom_handling(bytes);
    let synthetic = format!("From:{}\r\n\r\n", unfold(&text));
    MessageParser::default()
        .parse_headers(synthetic.as_bytes())
        .and_then(|m| {
            m.parts
                .first()
                .map(|r| header_addresses(r, "From"))
                .and_then(|list| list.into_iter().next())
                .and_then(|(n, _)| n)
        })
        .unwrap_or(name)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn class_headers(msg: &Message<'_>, root: &MessagePart<'_>) -> ClassHeaders {
    let content_type = root.content_type();
    ClassHeaders {
        auto_submitted: raw_header_text(msg, root, "Auto-Submitted"),
        x_autoreply: raw_header_text(msg, root, "X-Autoreply"),
        x_autorespond: raw_header_text(msg, root, "X-Autorespond"),
        precedence: raw_header_text(msg, root, "Precedence"),
        content_type: content_type.map(media_type),
        report_type: content_type
            .filter(|ct| media_type(ct) == "multipart/report")
            .and_then(|ct| ct.attribute("report-type"))
            .map(|v| v.trim().to_ascii_lowercase()),
        return_path: raw_header_text(msg, root, "Return-Path").map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
                .to_lowercase()
        }),
    }
}

/// Lower-case `type/subtype` of a Content-Type.
fn media_type(ct: &ContentType<'_>) -> String {
    match ct.subtype() {
        Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
        None => ct.ctype().to_ascii_lowercase(),
    }
}

fn part_media_type(part: &MessagePart<'_>) -> Option<String> {
    part.content_type().map(media_type)
}

/// A part is an attachment when its disposition says so (RFC 2183) or when it carries a file
/// name (`filename` or the older Content-Type `name`): a request file attached without a
/// disposition must not be read as the reply's words.
fn is_attachment(part: &MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|cd| cd.is_attachment() || cd.has_attribute("filename"))
        || part
            .content_type()
            .is_some_and(|ct| ct.has_attribute("name"))
}

/// Collects the readable text of part `id` of `msg` into `out` (RFC 2046 §5.1): in
/// multipart/alternative the text/plain alternative wins and HTML is used only when there is no
/// plain text; in other multiparts every inline text part counts; attachments, returned
/// messages (message/*) and machine-readable report parts are left out.
fn collect_text(
    msg: &Message<'_>,
    id: usize,
    depth: usize,
    max_depth: usize,
    fallback: &'static Encoding,
    out: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    if depth > max_depth {
        return;
    }
    let Some(part) = msg.parts.get(id) else {
        return;
    };
    let mtype = part_media_type(part);
    match &part.body {
        PartType::Multipart(children) => {
            let children: Vec<usize> = children
                .iter()
                .map(|&c| c as usize)
                .filter(|&c| c != id)
                .collect();
            match mtype.as_deref() {
                Some("multipart/alternative") => {
                    let pick = |want: fn(&MessagePart<'_>) -> bool| {
                        children
                            .iter()
                            .copied()
                            .find(|&c| msg.parts.get(c).is_some_and(want))
                    };
                    let chosen = pick(|p| {
                        matches!(p.body, PartType::Text(_))
                            && matches!(part_media_type(p).as_deref(), None | Some("text/plain"))
                    })
                    .or_else(|| pick(|p| matches!(p.body, PartType::Multipart(_))))
                    .or_else(|| pick(|p| matches!(p.body, PartType::Html(_))));
                    if let Some(c) = chosen {
                        collect_text(msg, c, depth + 1, max_depth, fallback, out, notes);
                    }
                }
                Some("multipart/report") => {
                    // RFC 6522: the first part is the human-readable notice; the rest is machine
                    // data and the returned message, read by `report_parts`.
                    if let Some(&c) = children.first() {
                        collect_text(msg, c, depth + 1, max_depth, fallback, out, notes);
                    }
                }
                _ => {
                    let has_plain = children.iter().any(|&c| {
                        msg.parts.get(c).is_some_and(|p| {
                            matches!(p.body, PartType::Text(_)) && !is_attachment(p)
                        })
                    });
                    for c in children {
                        let Some(child) = msg.parts.get(c) else {
                            continue;
                        };
                        if matches!(child.body, PartType::Html(_)) && has_plain {
                            continue;
                        }
                        collect_text(msg, c, depth + 1, max_depth, fallback, out, notes);
                    }
                }
            }
        }
        PartType::Text(text) => {
            if is_attachment(part) && id != 0 {
                return;
            }
            match mtype.as_deref() {
                None | Some("text/plain") | Some("text") => {}
                // text/rfc822-headers, text/calendar, text/csv...: not the reply's words.
                Some(_) => return,
            }
            out.push(redecode_if_unlabelled(msg, part, text, fallback, notes).into_owned());
        }
        PartType::Html(html) => {
            if is_attachment(part) && id != 0 {
                return;
            }
            let html = redecode_if_unlabelled(msg, part, html, fallback, notes);
            out.push(html_to_text(&html));
        }
        PartType::Message(_) | PartType::Binary(_) | PartType::InlineBinary(_) => {}
    }
}

/// Charset labels that promise ASCII; 8-bit bytes under them are mislabelled registrar text.
fn is_ascii_label(label: &str) -> bool {
    matches!(
        label.trim().to_ascii_lowercase().as_str(),
        "us-ascii" | "ascii" | "us_ascii" | "ansi_x3.4-1968" | "iso646-us" | "646"
    )
}

/// mail-parser turns an unlabelled (or ASCII-labelled, or unknown-labelled) 8-bit part into
/// lossy UTF-8 or windows-1252. If the transfer-decoded bytes are not UTF-8, decode them with
/// the registrar's charset instead.
fn redecode_if_unlabelled<'t>(
    msg: &Message<'_>,
    part: &MessagePart<'_>,
    text: &'t str,
    fallback: &'static Encoding,
    notes: &mut Vec<String>,
) -> Cow<'t, str> {
    let label = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::to_string);
    let unusable = match &label {
        None => true,
        Some(l) => is_ascii_label(l) || Encoding::for_label(l.trim().as_bytes()).is_none(),
    };
    if !unusable {
        return Cow::Borrowed(text);
    }
    let Some(raw) = msg
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)
    else {
        return Cow::Borrowed(text);
    };
    let bytes: Cow<'_, [u8]> = match part.encoding {
        TransferEncoding::None => Cow::Borrowed(raw),
        TransferEncoding::QuotedPrintable => match quoted_printable_decode(raw) {
            Some(b) => Cow::Owned(b),
            None => return Cow::Borrowed(text),
        },
        TransferEncoding::Base64 => match base64_decode(raw) {
            Some(b) => Cow::Owned(b),
            None => return Cow::Borrowed(text),
        },
    };
    if bytes.is_ascii() || std::str::from_utf8(&bytes).is_ok() {
        return Cow::Borrowed(text);
    }
    let (decoded, _) = fallback.decode_without_bom_handling(&bytes);
    notes.push(match label {
        None => format!(
            "a text part had no charset label and 8-bit bytes; decoded as {}",
            fallback.name()
        ),
        Some(l) => format!(
            "a text part labelled charset={l:?} had 8-bit bytes; decoded as {}",
            fallback.name()
        ),
    });
    Cow::Owned(decoded.into_owned())
}

/// Reads the report parts of the top-level message: the first message/delivery-status (RFC
/// 3464) and the Message-ID of the first returned message or header block.
fn report_parts(msg: &Message<'_>) -> (Option<DeliveryStatus>, Option<String>) {
    let mut status = None;
    let mut returned = None;
    for part in &msg.parts {
        let mtype = part_media_type(part);
        match (mtype.as_deref(), &part.body) {
            (Some("message/delivery-status") | Some("message/global-delivery-status"), body)
                if status.is_none() =>
            {
                let text = match body {
                    PartType::Text(t) | PartType::Html(t) => t.to_string(),
                    PartType::Binary(b) | PartType::InlineBinary(b) => {
                        String::from_utf8_lossy(b).into_owned()
                    }
                    _ => continue,
                };
                status = Some(parse_delivery_status(&text));
            }
            (_, PartType::Message(nested)) if returned.is_none() => {
                returned = nested
                    .parts
                    .first()
                    .and_then(|root| {
                        root.headers
                            .iter()
                            .find(|h| is_named(h, "Message-ID"))
                            .and_then(|h| h.value.as_text())
                    })
                    .map(clean_id)
                    .filter(|id| !id.is_empty());
            }
            (Some("text/rfc822-headers") | Some("message/rfc822-headers"), body)
                if returned.is_none() =>
            {
                let bytes: &[u8] = match body {
                    PartType::Text(t) | PartType::Html(t) => t.as_bytes(),
                    PartType::Binary(b) | PartType::InlineBinary(b) => b,
                    _ => continue,
                };
                returned = MessageParser::default()
                    .parse_headers(bytes)
                    .and_then(|m| m.message_id().map(clean_id))
                    .filter(|id| !id.is_empty());
            }
            _ => {}
        }
    }
    (status, returned)
}

/// Parses the body of a message/delivery-status part (RFC 3464 §2.1): header-style fields in
/// blocks separated by blank lines; the first block is per message, each further block per
/// recipient.
pub fn parse_delivery_status(text: &str) -> DeliveryStatus {
    let text = normalize_text(text);
    let mut blocks: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }

    let field = |block: &[(String, String)], name: &str| {
        block
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| strip_comment(v))
            .filter(|v| !v.is_empty())
    };
    let typed = |v: String| match v.split_once(';') {
        Some((_, rest)) => rest.trim().to_string(),
        None => v,
    };
    let address = |v: String| {
        typed(v)
            .trim_matches(|c| c == '<' || c == '>')
            .to_lowercase()
    };

    let mut report = DeliveryStatus::default();
    let mut iter = blocks.into_iter();
    let first = iter.next().unwrap_or_default();
    let per_message_only = !first
        .iter()
        .any(|(n, _)| n == "final-recipient" || n == "action");
    report.reporting_mta = field(&first, "reporting-mta").map(typed);
    let recipient_blocks: Vec<Vec<(String, String)>> = if per_message_only {
        iter.collect()
    } else {
        std::iter::once(first).chain(iter).collect()
    };
    for block in recipient_blocks {
        let rs = RecipientStatus {
            final_recipient: field(&block, "final-recipient").map(address),
            original_recipient: field(&block, "original-recipient").map(address),
            action: field(&block, "action").map(|v| v.to_ascii_lowercase()),
            status: field(&block, "status")
                .and_then(|v| v.split_whitespace().next().map(str::to_string)),
            diagnostic_code: field(&block, "diagnostic-code").map(typed),
            remote_mta: field(&block, "remote-mta").map(typed),
        };
        if rs != RecipientStatus::default() {
            report.recipients.push(rs);
        }
    }
    report
}

/// Drops an RFC 5322 comment at the end of a field value (`failed (permanent)` -> `failed`).
fn strip_comment(value: &str) -> String {
    let v = value.trim();
    if v.ends_with(')')
        && let Some(open) = v.rfind('(')
        && open > 0
    {
        return v[..open].trim().to_string();
    }
    v.to_string()
}

fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    const MAX_IDS: usize = 100;
    let ids: Vec<String> = match value {
        HeaderValue::Text(t) => vec![clean_id(t)],
        HeaderValue::TextList(list) => list.iter().map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    };
    ids.into_iter()
        .filter(|id| !id.is_empty() && !id.chars().any(char::is_whitespace))
        .take(MAX_IDS)
        .collect()
}

fn to_timestamp(dt: &mail_parser::DateTime) -> Option<jiff::Timestamp> {
    let civil = jiff::civil::DateTime::new(
        i16::try_from(dt.year).ok()?,
        i8::try_from(dt.month).ok()?,
        i8::try_from(dt.day).ok()?,
        i8::try_from(dt.hour).ok()?,
        i8::try_from(dt.minute).ok()?,
        i8::try_from(dt.second.min(59)).ok()?,
        0,
    )
    .ok()?;
    let seconds = i32::from(dt.tz_hour) * 3600 + i32::from(dt.tz_minute) * 60;
    let seconds = if dt.tz_before_gmt { -seconds } else { seconds };
    let offset = jiff::tz::Offset::from_seconds(seconds).ok()?;
    offset.to_timestamp(civil).ok()
}

/// Normalises text for matching: CRLF and lone CR become LF, trailing white space is removed
/// from every line, NUL and other C0 controls except tab are dropped, leading and trailing
/// blank lines are removed.
pub fn normalize_text(text: &str) -> String {
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(unified.len());
    for line in unified.split('\n') {
        let line: String = line
            .chars()
            .filter(|&c| c == '\t' || !c.is_control())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim_matches('\n').to_string()
}

/// Removes quoted text from a normalised body so that reply rules see only the new words: lines
/// starting with `>`, an attribution line ("... wrote:", "... писал(а):") just before them, and
/// everything from an "Original Message" separator on (Outlook and Thunderbird quote without
/// `>`). A forwarded message ("Forwarded message") is kept: there the content is below.
pub fn strip_quoted(body: &str) -> String {
    let lines: Vec<&str> = body.lines().collect();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if is_original_separator(t) {
            break;
        }
        if t.starts_with('>') {
            continue;
        }
        if is_attribution(t) {
            let next = lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.is_empty());
            if next.is_none_or(|l| l.starts_with('>')) {
                continue;
            }
        }
        kept.push(line);
    }
    normalize_text(&kept.join("\n"))
}

fn is_original_separator(line: &str) -> bool {
    let l = line.to_lowercase();
    let core = l.trim_matches(|c: char| c == '-' || c == '_' || c == '=' || c.is_whitespace());
    let dashed = l.starts_with("--") || l.starts_with("__");
    dashed
        && matches!(
            core,
            "original message"
                | "исходное сообщение"
                | "оригинальное сообщение"
                | "message d'origine"
                | "ursprüngliche nachricht"
        )
}

fn is_attribution(line: &str) -> bool {
    let l = line.to_lowercase();
    [
        "wrote:",
        "writes:",
        "писал:",
        "писал(а):",
        "написал:",
        "написал(а):",
        "пишет:",
    ]
    .iter()
    .any(|s| l.ends_with(s))
}

/// Reduces HTML to text: drops tags, comments, `<head>`, `<style>` and `<script>`; decodes the
/// common character references (HTML 5 named ones for markup, spaces, quotes, dashes, and any
/// numeric one); collapses white space as a browser does; breaks lines at `<br>`, `<p>`,
/// `<div>`, `<tr>`, `<li>`, headings and tables; separates table cells with a space; prefixes
/// `<blockquote>` lines with `> ` so that quoted text stays recognisable.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut line = String::new();
    let mut quote_depth = 0usize;
    let mut skip_until: Option<&'static str> = None;
    let mut pending_space = false;
    let mut rest = html;

    fn flush(out: &mut String, line: &mut String, quote_depth: usize) {
        let text = line.trim();
        if quote_depth > 0 {
            out.push_str(&"> ".repeat(quote_depth));
        }
        out.push_str(text);
        out.push('\n');
        line.clear();
    }

    while !rest.is_empty() {
        if let Some(end_tag) = skip_until {
            match find_ci(rest, end_tag) {
                Some(pos) => {
                    rest = &rest[pos..];
                    skip_until = None;
                }
                None => break,
            }
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = match after.find("-->") {
                Some(pos) => &after[pos + 3..],
                None => "",
            };
            continue;
        }
        if rest.starts_with('<') {
            let end = rest.find('>').unwrap_or(rest.len());
            let tag = &rest[1..end];
            rest = rest.get(end + 1..).unwrap_or("");
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            match name.as_str() {
                "head" | "style" | "script" | "title" if !closing => {
                    skip_until = Some(match name.as_str() {
                        "head" => "</head",
                        "style" => "</style",
                        "script" => "</script",
                        _ => "</title",
                    });
                }
                "br" => {
                    flush(&mut out, &mut line, quote_depth);
                    pending_space = false;
                }
                "blockquote" => {
                    if !line.trim().is_empty() {
                        flush(&mut out, &mut line, quote_depth);
                    }
                    quote_depth = if closing {
                        quote_depth.saturating_sub(1)
                    } else {
                        (quote_depth + 1).min(16)
                    };
                    pending_space = false;
                }
                "p" | "div" | "tr" | "li" | "ul" | "ol" | "table" | "h1" | "h2" | "h3" | "h4"
                | "h5" | "h6" | "pre" | "hr" | "dt" | "dd" | "body" => {
                    if !line.trim().is_empty() {
                        flush(&mut out, &mut line, quote_depth);
                    }
                    pending_space = false;
                }
                "td" | "th" => pending_space = !line.is_empty(),
                _ => {}
            }
            continue;
        }
        let next = rest.find('<').unwrap_or(rest.len());
        let chunk = &rest[..next];
        rest = &rest[next..];
        for c in decode_entities(chunk).chars() {
            if c.is_whitespace() && c != '\u{a0}' {
                pending_space = !line.is_empty();
            } else {
                if pending_space {
                    line.push(' ');
                    pending_space = false;
                }
                line.push(if c == '\u{a0}' { ' ' } else { c });
            }
        }
    }
    if !line.trim().is_empty() {
        flush(&mut out, &mut line, quote_depth);
    }
    // Collapse runs of blank lines left by nested block tags.
    let mut collapsed = String::with_capacity(out.len());
    let mut blank = 0;
    for l in out.lines() {
        if l.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        collapsed.push_str(l);
        collapsed.push('\n');
    }
    normalize_text(&collapsed)
}

/// Case-insensitive ASCII search.
fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let h = haystack.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Decodes HTML character references: numeric ones and the named ones registrar mail uses.
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let end = rest
            .char_indices()
            .take(12)
            .find(|&(_, c)| c == ';')
            .map(|(i, _)| i);
        let decoded = end.and_then(|end| entity(&rest[1..end]).map(|c| (c, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return Some(char::from_u32(code).unwrap_or('\u{FFFD}'));
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "laquo" => '«',
        "raquo" => '»',
        "ldquo" => '“',
        "rdquo" => '”',
        "lsquo" => '‘',
        "rsquo" => '’',
        "bdquo" => '„',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "numero" => '№',
        "middot" => '·',
        "bull" => '•',
        "times" => '×',
        "euro" => '€',
        "shy" => '\u{ad}',
        _ => return None,
    })
}

/// The header fields a person reading a stored message needs (API `GET /v1/inbox/message`, CLI
/// `regmail message`), in this order.
pub const VIEW_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Authentication-Results",
    "Auto-Submitted",
    "Content-Type",
];

/// A stored message as a person reads it: the headers that matter and the body text, with the
/// charset and transfer encoding undone. Not redacted: the caller passes both through
/// `crate::redact::Redactor` before showing them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageView {
    /// `(name, value)` for each of [`VIEW_HEADERS`] present, in that order (a field given several
    /// times appears several times); values unfolded, encoded-words decoded.
    pub headers: Vec<(String, String)>,
    /// The decoded body text (as [`ParsedMail::body`]); for a message that cannot be parsed, its
    /// bytes read as UTF-8 or, failing that, in `fallback`.
    pub text: String,
}

/// Decodes a stored message for display. Never fails: what cannot be parsed is shown as text.
pub fn view(raw: &[u8], limits: &ParseLimits, fallback: &'static Encoding) -> MessageView {
    let parsed = parse(raw, limits, fallback);
    let headers = if header_section_ok(raw, limits) {
        catch_unwind(AssertUnwindSafe(|| view_headers(raw, fallback))).unwrap_or_default()
    } else {
        Vec::new()
    };
    let text = match parsed {
        Ok(p) => p.body,
        Err(_) => match std::str::from_utf8(raw) {
            Ok(s) => s.replace("\r\n", "\n"),
            Err(_) => fallback
                .decode_without_bom_handling(raw)
                .0
                .replace("\r\n", "\n"),
        },
    };
    MessageView { headers, text }
}

fn view_headers(raw: &[u8], fallback: &'static Encoding) -> Vec<(String, String)> {
    let Some(msg) = MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    let Some(root) = msg.parts.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in VIEW_HEADERS {
        for h in root.headers.iter().filter(|h| is_named(h, name)) {
            let Some(bytes) = msg
                .raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
            else {
                continue;
            };
            let value = match &h.value {
                HeaderValue::Text(t) if !t.contains('\u{FFFD}') => unfold(t),
                HeaderValue::Address(_) => {
                    let list: Vec<String> = header_addresses(root, name)
                        .into_iter()
                        .map(|(n, a)| match n {
                            Some(n) => format!("{} <{a}>", redecode_8bit(&n, bytes, fallback)),
                            None => a,
                        })
                        .collect();
                    if list.is_empty() {
                        unfold(&decode_8bit(bytes, fallback))
                    } else {
                        list.join(", ")
                    }
                }
                _ => unfold(&decode_8bit(bytes, fallback)),
            };
            out.push((name.to_string(), value));
        }
    }
    out
}

fn decode_8bit(bytes: &[u8], fallback: &'static Encoding) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => fallback.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

fn redecode_8bit(name: &str, raw_field: &[u8], fallback: &'static Encoding) -> String {
    if name.contains('\u{FFFD}') && std::str::from_utf8(raw_field).is_err() {
        let text = decode_8bit(raw_field, fallback);
        let text = text.trim();
        // The display name is what comes before the angle-bracketed address.
        return text
            .split('<')
            .next()
            .unwrap_or(text)
            .trim()
            .trim_matches('"')
            .to_owned();
    }
    name.to_owned()
}

/// Header-section limits (RFC 5322 puts no bound on the number of fields; a message with
/// thousands of them, or one huge field, would make the parser allocate per field): the top
/// header section, up to its first empty line, may hold at most `max_headers` fields and
/// `max_header_bytes` octets.
fn header_section_ok(raw: &[u8], limits: &ParseLimits) -> bool {
    header_section_problem(raw, limits).is_none()
}

fn header_section_problem(raw: &[u8], limits: &ParseLimits) -> Option<String> {
    let mut fields = 0usize;
    let mut pos = 0usize;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(raw.len(), |p| pos + p + 1);
        let line = &raw[pos..end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            fields += 1;
            if fields > limits.max_headers {
                return Some(format!(
                    "more than {} header fields; the limit is {}",
                    limits.max_headers, limits.max_headers
                ));
            }
        }
        pos = end;
        if pos > limits.max_header_bytes {
            return Some(format!(
                "the header section is larger than {} octets",
                limits.max_header_bytes
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{KOI8_R, WINDOWS_1251};
    use proptest::prelude::*;

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn limits() -> ParseLimits {
        ParseLimits::default()
    }

    #[test]
    fn plain_message_fields_are_extracted() {
        let raw = crlf(
            "From: \"R01 Robot\" <Robot@Registrar.TEST>\n\
             To: gateway@gateway.test\n\
             Subject: =?koi8-r?B?8MnT2M3P?= test\n\
             Message-ID: <abc@registrar.test>\n\
             In-Reply-To: <tok@gateway.test>\n\
             References: <r1@gateway.test>\n <tok@gateway.test>\n\
             Date: Sun, 15 Nov 2026 10:00:00 +0300\n\
             \n\
             Hello   \n\
             world\n",
        );
        let m = parse(&raw, &limits(), KOI8_R).unwrap();
        assert_eq!(m.from, "robot@registrar.test");
        assert_eq!(m.from_name.as_deref(), Some("R01 Robot"));
        assert_eq!(m.to, vec!["gateway@gateway.test"]);
        assert_eq!(m.subject, "Письмо test");
        assert_eq!(m.message_id.as_deref(), Some("abc@registrar.test"));
        assert_eq!(m.in_reply_to, vec!["tok@gateway.test"]);
        assert_eq!(m.references, vec!["r1@gateway.test", "tok@gateway.test"]);
        assert_eq!(m.body, "Hello\nworld");
        assert_eq!(
            m.date.map(|d| d.to_string()).as_deref(),
            Some("2026-11-15T07:00:00Z")
        );
    }

    #[test]
    fn display_name_never_becomes_the_address() {
        let raw = crlf("From: \"robot@registrar.test\" <evil@attacker.test>\n\nx\n");
        let m = parse(&raw, &limits(), KOI8_R).unwrap();
        assert_eq!(m.from, "evil@attacker.test");
        assert_eq!(m.from_name.as_deref(), Some("robot@registrar.test"));
    }

    #[test]
    fn unlabelled_8bit_koi8r_body_is_redecoded_with_the_fallback() {
        let (body, _, _) = KOI8_R.encode("Домен продлен до 12.03.2028");
        let mut raw = crlf("From: robot@registrar.test\nSubject: x\n\n");
        raw.extend_from_slice(&body);
        let m = parse(&raw, &limits(), KOI8_R).unwrap();
        assert_eq!(m.body, "Домен продлен до 12.03.2028");
        assert!(m.notes.iter().any(|n| n.contains("no charset label")));
    }

    #[test]
    fn ascii_labelled_8bit_body_is_redecoded_with_the_fallback() {
        let (body, _, _) = WINDOWS_1251.encode("Ошибка: тест");
        let mut raw = crlf(
            "From: robot@registrar.test\nContent-Type: text/plain; charset=us-ascii\n\
             Content-Transfer-Encoding: 8bit\n\n",
        );
        raw.extend_from_slice(&body);
        let m = parse(&raw, &limits(), WINDOWS_1251).unwrap();
        assert_eq!(m.body, "Ошибка: тест");
    }

    #[test]
    fn labelled_windows_1251_body_is_decoded() {
        let (body, _, _) = WINDOWS_1251.encode("Клиент зарегистрирован");
        let mut raw = crlf(
            "From: robot@registrar.test\nContent-Type: text/plain; charset=windows-1251\n\
             Content-Transfer-Encoding: 8bit\n\n",
        );
        raw.extend_from_slice(&body);
        // The fallback is not used when the label is right.
        let m = parse(&raw, &limits(), KOI8_R).unwrap();
        assert_eq!(m.body, "Клиент зарегистрирован");
        assert!(m.notes.is_empty());
    }

    #[test]
    fn raw_8bit_subject_is_decoded_with_the_fallback() {
        let (subj, _, _) = KOI8_R.encode("Автоответ");
        let mut raw = b"From: robot@registrar.test\r\nSubject: ".to_vec();
        raw.extend_from_slice(&subj);
        raw.extend_from_slice(b"\r\n\r\nx\r\n");
        let m = parse(&raw, &limits(), KOI8_R).unwrap();
        assert_eq!(m.subject, "Автоответ");
    }

    #[test]
    fn raw_8bit_display_name_is_decoded_with_the_fallback() {
        let (name, _, _) = WINDOWS_1251.encode("Робот R01");
        let mut raw = b"From: ".to_vec();
        raw.extend_from_slice(&name);
        raw.extend_from_slice(b" <robot@registrar.test>\r\n\r\nx\r\n");
        let m = parse(&raw, &limits(), WINDOWS_1251).unwrap();
        assert_eq!(m.from, "robot@registrar.test");
        assert_eq!(m.from_name.as_deref(), Some("Робот R01"));
    }

    #[test]
    fn alternative_prefers_plain_text() {
        let raw = crlf(
            "From: robot@registrar.test\nMIME-Version: 1.0\n\
             Content-Type: multipart/alternative; boundary=\"b\"\n\n\
             --b\nContent-Type: text/html; charset=utf-8\n\n<p>HTML version</p>\n\
             --b\nContent-Type: text/plain; charset=utf-8\n\nPlain version\n\
             --b--\n",
        );
        let m = parse(&raw, &limits(), KOI8_R).unwrap();
        assert_eq!(m.body, "Plain version");
    }

    #[test]
    fn html_only_is_reduced_to_text() {
        let html = "<html><head><title>t</title><style>p{}</style></head><body>\
                    <p>Domain &laquo;x.ru&raquo;&nbsp;registered<br>till 01.02.2027</p>\
                    <table><tr><td>Task</td><td>42</td></tr></table>\
                    <!-- comment --><script>alert(1)</script>&#1044;&#x41f; &amp; &unknown;</body></html>";
        assert_eq!(
            html_to_text(html),
            "Domain «x.ru» registered\ntill 01.02.2027\nTask 42\nДП & &unknown;"
        );
    }

    #[test]
    fn html_blockquote_is_marked_as_quoted() {
        let text = html_to_text("<div>New</div><blockquote><p>Old line</p></blockquote>After");
        assert_eq!(text, "New\n> Old line\nAfter");
        assert_eq!(strip_quoted(&text), "New\nAfter");
    }

    #[test]
    fn quoted_text_is_stripped_for_rules() {
        let body = "Заявка принята.\n\nOn Mon, gateway@gateway.test wrote:\n> domain registered\n> x\nTail\n\
                    -----Original Message-----\nDomain x.ru registered till 01.01.2099";
        assert_eq!(strip_quoted(body), "Заявка принята.\n\nTail");
        // A forward keeps its content.
        let fwd = "---------- Forwarded message ----------\nDomain x.ru registered";
        assert_eq!(strip_quoted(fwd), fwd);
    }

    #[test]
    fn delivery_status_fields_are_read() {
        let ds = parse_delivery_status(
            "Reporting-MTA: dns; mx.gateway.test\r\nArrival-Date: x\r\n\r\n\
             Final-Recipient: rfc822; Requests@Registrar.test\r\nAction: failed\r\n\
             Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <requests@registrar.test>:\r\n\
             \x20 Recipient address rejected\r\n",
        );
        assert_eq!(ds.reporting_mta.as_deref(), Some("mx.gateway.test"));
        let r = &ds.recipients[0];
        assert_eq!(
            r.final_recipient.as_deref(),
            Some("requests@registrar.test")
        );
        assert_eq!(r.action.as_deref(), Some("failed"));
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            r.diagnostic_code.as_deref(),
            Some("550 5.1.1 <requests@registrar.test>: Recipient address rejected")
        );
    }

    #[test]
    fn oversized_message_is_quarantined_before_parsing() {
        let raw = vec![b'a'; 2048];
        let small = ParseLimits {
            max_size: 1024,
            ..ParseLimits::default()
        };
        let q = parse(&raw, &small, KOI8_R).unwrap_err();
        assert!(q.reason.contains("limit is 1024"), "{}", q.reason);
    }

    fn nested(levels: usize) -> Vec<u8> {
        let mut s = String::from("From: robot@registrar.test\nMIME-Version: 1.0\n");
        for i in 0..levels {
            s.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
            ));
        }
        s.push_str("Content-Type: text/plain\n\ndeep\n");
        for i in (0..levels).rev() {
            s.push_str(&format!("--b{i}--\n"));
        }
        crlf(&s)
    }

    #[test]
    fn absurd_nesting_is_quarantined() {
        assert_eq!(parse(&nested(3), &limits(), KOI8_R).unwrap().body, "deep");
        let q = parse(&nested(12), &limits(), KOI8_R).unwrap_err();
        assert!(q.reason.contains("nesting"), "{}", q.reason);
        let q = parse(&nested(200), &limits(), KOI8_R).unwrap_err();
        assert!(q.reason.contains("containers"), "{}", q.reason);
    }

    #[test]
    fn no_headers_or_no_from_is_quarantined() {
        for raw in [
            &b"just some words\r\nno headers here\r\n"[..],
            b"",
            b":x\r\n\r\n",
        ] {
            let q = parse(raw, &limits(), KOI8_R).unwrap_err();
            assert!(
                q.reason.starts_with("not an e-mail message"),
                "{}",
                q.reason
            );
        }
        let q = parse(&crlf("Subject: hi\n\nbody\n"), &limits(), KOI8_R).unwrap_err();
        assert_eq!(q.reason, "no From address");
        // Obsolete white space before the colon is still a header field (RFC 5322 §4.5).
        assert!(parse(b"From : robot@registrar.test\r\n\r\nx", &limits(), KOI8_R).is_ok());
    }

    #[test]
    fn bounce_report_parts_are_read() {
        let raw = crlf(
            "From: MAILER-DAEMON@gateway.test\nReturn-Path: <>\nMIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\n\n\
             --r\nContent-Type: text/plain\n\nI'm sorry.\n\
             --r\nContent-Type: message/delivery-status\n\n\
             Reporting-MTA: dns; gateway.test\n\nFinal-Recipient: rfc822; a@b.test\nAction: failed\nStatus: 5.0.0\n\
             --r\nContent-Type: text/rfc822-headers\n\nMessage-ID: <orig@gateway.test>\nSubject: x\n\
             --r--\n",
        );
        let m = parse(&raw, &limits(), KOI8_R).unwrap();
        assert_eq!(m.body, "I'm sorry.");
        assert_eq!(m.headers.return_path.as_deref(), Some(""));
        assert_eq!(m.headers.content_type.as_deref(), Some("multipart/report"));
        assert_eq!(m.headers.report_type.as_deref(), Some("delivery-status"));
        assert_eq!(m.returned_message_id.as_deref(), Some("orig@gateway.test"));
        let ds = m.delivery_status.unwrap();
        assert_eq!(
            ds.recipients[0].final_recipient.as_deref(),
            Some("a@b.test")
        );
    }

    #[test]
    fn attachments_are_not_body_text() {
        let raw = crlf(
            "From: robot@registrar.test\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"m\"\n\n\
             --m\nContent-Type: text/plain; charset=utf-8\n\nReply\n\
             --m\nContent-Type: text/plain; name=req.txt\nContent-Disposition: attachment; filename=req.txt\n\n\
             Attached request\n\
             --m\nContent-Type: text/plain; name=\"request.txt\"\n\nNamed, no disposition\n--m--\n",
        );
        assert_eq!(parse(&raw, &limits(), KOI8_R).unwrap().body, "Reply");
    }

    #[test]
    fn container_count_sees_folded_and_spaced_headers() {
        let raw = b"Content-Type :\r\n multipart/mixed\r\ncontent-type: MESSAGE/rfc822\r\nX: content-type: multipart/x\r\n";
        assert_eq!(count_containers(raw), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse(&raw, &limits(), KOI8_R);
        }

        #[test]
        fn mutated_messages_never_panic(
            seed in 0usize..4,
            edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..32),
            cut in any::<u16>(),
        ) {
            let bases = [
                nested(5),
                crlf("From: robot@registrar.test\nMIME-Version: 1.0\n\
                      Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\n\n\
                      --r\nContent-Type: text/plain\n\nsorry\n\
                      --r\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b\n\
                      --r\nContent-Type: message/rfc822\n\nMessage-ID: <o@g>\nFrom: g@g\n\nbody\n--r--\n"),
                crlf("From: a@b\nContent-Type: text/html; charset=koi8-r\nContent-Transfer-Encoding: base64\n\n\
                      PGI+0MnT2M3PPC9iPjxicj4mYW1wOyYj\n"),
                crlf("From: a@b\nSubject: =?utf-8?Q?=D0=9F?=\nContent-Type: multipart/alternative; boundary=x\n\n\
                      --x\nContent-Type: text/plain; charset=\"us-ascii\"\nContent-Transfer-Encoding: quoted-printable\n\n\
                      =F0=D2=C9=D7=C5=D4=\n--x\nContent-Type: text/html\n\n<p>hi</p>\n--x--\n"),
            ];
            let mut raw = bases[seed].clone();
            for (pos, byte) in edits {
                let len = raw.len();
                if len > 0 {
                    raw[pos as usize % len] = byte;
                }
            }
            let keep = (cut as usize) % (raw.len() + 1);
            raw.truncate(keep.max(raw.len() / 2));
            match parse(&raw, &limits(), KOI8_R) {
                Ok(m) => prop_assert!(!m.from.is_empty()),
                Err(q) => prop_assert!(!q.reason.is_empty()),
            }
        }
    }

    #[test]
    fn many_tiny_parts_are_quarantined_before_parsing() {
        let mut raw = crlf("From: a@b.example\nContent-Type: multipart/mixed; boundary=\"p\"\n\n");
        for _ in 0..1500 {
            raw.extend_from_slice(b"--p\r\n\r\nx\r\n");
        }
        raw.extend_from_slice(b"--p--\r\n");
        let q = parse(&raw, &limits(), KOI8_R).unwrap_err();
        assert!(q.reason.contains("part delimiter"), "{}", q.reason);
        // A signature separator ("-- ") is not a delimiter.
        assert_eq!(count_delimiter_lines(b"-- \r\nme\r\n--b\r\n", 10), 1);
    }
}
