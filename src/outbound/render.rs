//! Renders a request into the exact e-mail R01 wants: one text/plain part in KOI8-R or
//! windows-1251, `Content-Transfer-Encoding: 8bit`, CRLF line ends, lines under 998 octets
//! (RFC 5322 §2.1.1), and the registrar's authorization block and templates in the body.
//! The same bytes go to every transport; the Date is the request's creation time and the
//! Message-ID was fixed when it was queued, so a resend is byte-for-byte the same message.

use lettre::Address;
use minijinja::Value;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::charset::Charset;
use super::profile::{Profile, TemplateKind};
use crate::core::{Client, Domain, Registrant, Request, RequestKind};

/// What every request carries besides its data: addresses and the authorization block.
#[derive(Clone)]
pub struct RequestSettings {
    /// Where requests go (R01's gateway address).
    pub gateway: Address,
    /// Our callback mailbox: the From of every request; R01 answers there.
    pub callback: Address,
    /// Gets a copy of every request (envelope recipient only).
    pub bcc: Option<Address>,
    /// Partner agreement number, e.g. `RP/01/00`.
    pub agreement: String,
    /// The e-mail interface password.
    pub password: SecretString,
    /// `pay-type`, when not the registrar's default.
    pub pay_type: Option<String>,
    /// The charset requests are written in.
    pub charset: Charset,
    /// The envelope sender template, `{token}` for the request's token (VERP, issue 9 part
    /// A): a real bounce of this request comes back to its own address.
    pub envelope: String,
}

impl std::fmt::Debug for RequestSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSettings")
            .field("gateway", &self.gateway)
            .field("callback", &self.callback)
            .field("bcc", &self.bcc)
            .field("agreement", &self.agreement)
            .field("password", &"********")
            .field("charset", &self.charset)
            .finish()
    }
}

/// The mask that replaces the password in every copy kept or shown.
pub const PASSWORD_MASK: &str = "********";

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct RenderedRequest {
    /// The Subject (ASCII).
    pub subject: String,
    /// Envelope sender: the request's own address (VERP, `[outbound] envelope_sender`).
    pub from: Address,
    /// Envelope recipients: the gateway, then the BCC address if any.
    pub recipients: Vec<Address>,
    /// The whole message as sent (headers and 8-bit body, CRLF).
    pub bytes: Vec<u8>,
    /// Headers and decoded body with the password masked: what the action log keeps.
    pub copy: String,
}

/// Why a request could not be rendered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot render request: {0}")]
pub struct RenderError(pub String);

fn yes_no(b: bool) -> u8 {
    u8::from(b)
}

/// The template context of the client (R01 field values; dates as DD.MM.YYYY).
fn client_ctx(c: &Client, handle: Option<&str>) -> serde_json::Value {
    let handle = handle
        .map(str::to_owned)
        .or_else(|| c.handle.as_ref().map(|h| h.to_string()));
    match &c.registrant {
        Registrant::Person(p) => json!({
            "type": "person", "handle": handle, "fio_ru": p.fio_ru, "fio_en": p.fio_en,
            "passport": p.passport, "birth_date": p.birth_date.strftime("%d.%m.%Y").to_string(),
            "postal_addr": p.postal_addr, "phone": p.phone, "fax": p.fax, "email": p.email,
            "is_protected": yes_no(p.is_protected), "is_resident": yes_no(p.is_resident), "inn": p.inn,
        }),
        Registrant::Organization(o) => json!({
            "type": "organization", "handle": handle, "org_name_ru": o.org_name_ru,
            "org_name_en": o.org_name_en, "inn": o.inn, "kpp": o.kpp, "ogrn": o.ogrn,
            "legal_addr": o.legal_addr, "postal_addr": o.postal_addr, "phone": o.phone, "fax": o.fax,
            "email": o.email, "director_name": o.director_name, "bank": o.bank,
            "ras_schet": o.ras_schet, "kor_schet": o.kor_schet, "bik": o.bik,
            "is_resident": yes_no(o.is_resident),
        }),
    }
}

fn context(
    settings: &RequestSettings,
    password: &str,
    req: &Request,
    client: &Client,
    domain: Option<&Domain>,
) -> Value {
    let action = match req.kind {
        RequestKind::DomainRenewal => "PROLONG",
        _ => "NEW",
    };
    let domain_ctx = domain.map(|d| {
        json!({
            "name": d.name.as_str(),
            "name_unicode": d.name.to_unicode(),
            "years": req.years.unwrap_or(d.years),
            "nameservers": d.nameservers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "description": d.description,
        })
    });
    let ctx = json!({
        "auth": { "action": action, "pay_type": settings.pay_type, "agreement": settings.agreement, "password": password },
        "request": { "id": req.id.to_string(), "token": req.id.token(), "kind": req.kind.as_str() },
        "client": client_ctx(client, req.handle.as_ref().map(|h| h.as_str())),
        "domain": domain_ctx,
    });
    Value::from(minijinja::value::Serde(&ctx))
}

fn template_kind(req: &Request, client: &Client) -> TemplateKind {
    match (req.kind, &client.registrant) {
        (RequestKind::ClientRegistration, Registrant::Person(_)) => TemplateKind::ClientPerson,
        (RequestKind::ClientRegistration, Registrant::Organization(_)) => {
            TemplateKind::ClientOrganization
        }
        (RequestKind::DomainRegistration, _) => TemplateKind::DomainRegistration,
        (RequestKind::DomainRenewal, _) => TemplateKind::DomainRenewal,
    }
}

/// Normalises rendered text to lines (template output may hold LF or CRLF).
fn lines(text: &str) -> Vec<&str> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

/// Renders `req` (with its client and, for domain requests, its domain).
pub fn render(
    profile: &Profile,
    settings: &RequestSettings,
    req: &Request,
    client: &Client,
    domain: Option<&Domain>,
) -> Result<RenderedRequest, RenderError> {
    if req.kind != RequestKind::ClientRegistration && domain.is_none() {
        return Err(RenderError(format!("request {} names no domain", req.id)));
    }
    let kind = template_kind(req, client);
    let real = context(
        settings,
        settings.password.expose_secret(),
        req,
        client,
        domain,
    );
    let masked = context(settings, PASSWORD_MASK, req, client, domain);
    let body = profile.render_body(kind, &real).map_err(RenderError)?;
    let body_masked = profile.render_body(kind, &masked).map_err(RenderError)?;
    let subject_base = profile
        .render_subject(req.kind, &masked)
        .map_err(RenderError)?;
    let subject = format!("{} [RM-{}]", subject_base.trim(), req.id.token());
    if !subject.is_ascii() || subject.chars().any(char::is_control) || subject.len() > 900 {
        return Err(RenderError(format!(
            "subject {subject:?} must be one line of ASCII"
        )));
    }

    let date = req.created.to_zoned(jiff::tz::TimeZone::UTC);
    let date =
        jiff::fmt::rfc2822::to_string(&date).map_err(|e| RenderError(format!("date: {e}")))?;
    let charset = settings.charset;
    // RFC 5322 header fields; every value is ASCII without CR/LF (addresses were parsed by
    // lettre, the subject was checked above, the Message-ID was made by us).
    let headers = [
        format!("Date: {date}"),
        format!("From: {}", settings.callback),
        format!("To: {}", settings.gateway),
        format!("Subject: {subject}"),
        format!("Message-ID: {}", req.message_id),
        "MIME-Version: 1.0".to_owned(),
        format!("Content-Type: text/plain; charset={}", charset.label()),
        "Content-Transfer-Encoding: 8bit".to_owned(),
        format!("X-Regmail-Request: {}", req.id),
    ];
    if headers.iter().any(|h| h.contains(['\r', '\n'])) {
        return Err(RenderError("a header value holds a line break".into()));
    }
    let mut bytes = Vec::new();
    for h in &headers {
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    for (n, line) in lines(&body).into_iter().enumerate() {
        if line.contains('\0') {
            return Err(RenderError(format!("body line {} holds a NUL", n + 1)));
        }
        let encoded = charset.encode(line).map_err(|c| {
            RenderError(format!(
                "body line {} holds {c:?}, which {} cannot hold",
                n + 1,
                charset.label()
            ))
        })?;
        if encoded.len() > 996 {
            return Err(RenderError(format!(
                "body line {} is {} octets; the limit is 998 with CRLF",
                n + 1,
                encoded.len()
            )));
        }
        bytes.extend_from_slice(&encoded);
        bytes.extend_from_slice(b"\r\n");
    }
    let mut copy = headers.join("\n");
    copy.push_str("\n\n");
    copy.push_str(
        &settings
            .charset
            .transliterate(&lines(&body_masked).join("\n")),
    );
    copy.push('\n');
    let mut recipients = vec![settings.gateway.clone()];
    recipients.extend(settings.bcc.clone());
    Ok(RenderedRequest {
        subject,
        from: crate::trust::envelope_sender(&settings.envelope, &req.id.token())
            .parse::<Address>()
            .unwrap_or_else(|_| settings.callback.clone()),
        recipients,
        bytes,
        copy,
    })
}

/// The first registrant field whose text the charset cannot hold: `(field path, character)`.
/// The API calls this when a client is accepted, so the problem is a 422 then, not a failure
/// at send time.
pub fn unencodable_registrant_field(charset: Charset, r: &Registrant) -> Option<(String, char)> {
    let mut fields: Vec<(String, &str)> = Vec::new();
    fn many<'a>(fields: &mut Vec<(String, &'a str)>, name: &str, lines: &'a [String]) {
        for (i, l) in lines.iter().enumerate() {
            fields.push((format!("registrant.{name}[{i}]"), l.as_str()));
        }
    }
    match r {
        Registrant::Person(p) => {
            many(&mut fields, "passport", &p.passport);
            many(&mut fields, "postal_addr", &p.postal_addr);
            fields.push(("registrant.fio_ru".into(), &p.fio_ru));
            fields.push(("registrant.fio_en".into(), &p.fio_en));
            fields.push(("registrant.email".into(), &p.email));
        }
        Registrant::Organization(o) => {
            many(&mut fields, "legal_addr", &o.legal_addr);
            many(&mut fields, "postal_addr", &o.postal_addr);
            fields.push(("registrant.org_name_ru".into(), &o.org_name_ru));
            fields.push(("registrant.org_name_en".into(), &o.org_name_en));
            fields.push(("registrant.email".into(), &o.email));
            for (name, v) in [("director_name", &o.director_name), ("bank", &o.bank)] {
                if let Some(v) = v {
                    fields.push((format!("registrant.{name}"), v));
                }
            }
        }
    }
    fields
        .into_iter()
        .find_map(|(f, text)| charset.first_unencodable(text).map(|c| (f, c)))
}

/// The first description line the charset cannot hold.
pub fn unencodable_description(charset: Charset, description: &[String]) -> Option<(String, char)> {
    description.iter().enumerate().find_map(|(i, l)| {
        charset
            .first_unencodable(l)
            .map(|c| (format!("description[{i}]"), c))
    })
}
