//! Reads a request e-mail the way R01 documents its e-mail interface ("Request making (filling
//! out) rules", see r01-email-interface.md): From must be a contact address of the agreement;
//! one text/plain part in KOI8-R or windows-1251 with `Content-Transfer-Encoding: 8bit`; the
//! authorization block (`action`, `pay-type`, `agreement`, `password`), then the templates
//! (`#[PERSON TEMPLATE]#`, `#[ORGANIZATION TEMPLATE]#`, `#[DOMAIN TEMPLATE]#`), a contact before
//! the domain that refers to it, closed by `#[TEMPLATES END]#`.
//!
//! Everything here is pure: bytes in, a [`Request`] or a [`Refusal`] out. A refusal concerns the
//! e-mail as a whole (no task is created); problems of one object (a missing field, a bad birth
//! date, a taken domain) are the registrar's business and are judged in `registrar.rs`.

use encoding_rs::{Encoding, KOI8_R, WINDOWS_1251};

/// The header fields the sandbox reads, and the raw body.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// The From address (addr-spec, lower-case).
    pub from: Option<String>,
    /// The Subject as it came (unfolded).
    pub subject: Option<String>,
    /// The Message-ID with its angle brackets.
    pub message_id: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Transfer-Encoding`.
    pub transfer_encoding: Option<String>,
    /// The body octets.
    pub body: Vec<u8>,
}

/// Splits a message into the header fields the sandbox needs and its body (RFC 5322 §2.2:
/// header fields up to the first empty line; continuation lines start with white space).
pub fn envelope(raw: &[u8]) -> Envelope {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    let mut body_start = raw.len();
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = end;
        if line.is_empty() {
            body_start = end;
            break;
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(text.trim());
            }
        } else if let Some((k, v)) = text.split_once(':') {
            fields.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    Envelope {
        from: get("from").and_then(|v| address(&v)),
        subject: get("subject"),
        message_id: get("message-id"),
        content_type: get("content-type"),
        transfer_encoding: get("content-transfer-encoding"),
        body: raw[body_start.min(raw.len())..].to_vec(),
    }
}

/// The addr-spec of a From value: inside the last `<...>`, else the value itself.
fn address(v: &str) -> Option<String> {
    let a = match (v.rfind('<'), v.rfind('>')) {
        (Some(s), Some(e)) if s < e => &v[s + 1..e],
        _ => v,
    };
    let a = a.trim().to_ascii_lowercase();
    (a.contains('@') && !a.contains(char::is_whitespace)).then_some(a)
}

/// Why a request e-mail was refused as a whole: R01-style code, English and Russian text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Code, e.g. `WRONG_CHARSET`.
    pub code: &'static str,
    /// What is wrong, in English.
    pub en: String,
    /// The same in Russian.
    pub ru: String,
}

fn refuse(code: &'static str, en: impl Into<String>, ru: impl Into<String>) -> Refusal {
    Refusal {
        code,
        en: en.into(),
        ru: ru.into(),
    }
}

/// The `action` of the authorization block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// New persons, organizations and domains.
    New,
    /// Renewals of existing domains.
    Prolong,
}

impl Action {
    /// As written in requests.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::New => "NEW",
            Action::Prolong => "PROLONG",
        }
    }
}

/// A template kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// `#[PERSON TEMPLATE]#`.
    Person,
    /// `#[ORGANIZATION TEMPLATE]#`.
    Organization,
    /// `#[DOMAIN TEMPLATE]#`.
    Domain,
}

impl TemplateKind {
    /// For messages.
    pub fn name(self) -> &'static str {
        match self {
            TemplateKind::Person => "person",
            TemplateKind::Organization => "organization",
            TemplateKind::Domain => "domain",
        }
    }
}

/// One template: its fields in order (names lower-case, values trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Which.
    pub kind: TemplateKind,
    /// Line of its header in the body (1-based).
    pub line: usize,
    /// `name: value` pairs; multi-line fields repeat the name.
    pub fields: Vec<(String, String)>,
}

impl Template {
    /// The value of a single-line field (empty values count as missing).
    pub fn one(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a (multi-line) field.
    pub fn many(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The contact handle a person/organization template creates, or a domain template names.
    pub fn handle_field(&self) -> Option<&str> {
        match self.kind {
            TemplateKind::Domain => self.one("admin-o"),
            _ => self.one("nic_hdl"),
        }
    }
}

/// A request that passed the checks of the e-mail as a whole.
#[derive(Debug, Clone)]
pub struct Request {
    /// The action.
    pub action: Action,
    /// `pay-type`, when given.
    pub pay_type: Option<String>,
    /// The templates, in order.
    pub templates: Vec<Template>,
    /// The decoded body.
    pub text: String,
    /// The charset it was written in.
    pub charset: &'static str,
}

/// What a request must match.
pub struct Expect<'a> {
    /// Contact addresses of the agreement (lower-case).
    pub contacts: &'a [String],
    /// The agreement number.
    pub agreement: &'a str,
    /// The e-mail interface password.
    pub password: &'a str,
}

/// Single-line fields: given more than once is a syntax error.
const SINGLE: &[&str] = &[
    "nic_hdl",
    "fiorus",
    "fioeng",
    "birth_date",
    "orgname_ru",
    "orgname_en",
    "inn",
    "kpp",
    "ogrn",
    "domain",
    "admin-o",
    "years",
    "prolong",
    "isprotected",
    "isresident",
];

fn content_type_params(v: &str) -> (String, Vec<(String, String)>) {
    let mut parts = v.split(';');
    let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_ascii_lowercase(),
            ))
        })
        .collect();
    (mime, params)
}

/// Checks the e-mail as a whole and reads its blocks.
pub fn check(env: &Envelope, expect: &Expect<'_>) -> Result<Request, Refusal> {
    let from = env.from.as_deref().unwrap_or_default();
    if !expect.contacts.iter().any(|c| c == from) {
        return Err(refuse(
            "SENDER_NOT_ALLOWED",
            format!(
                "{from} is not a contact address of agreement {}; requests are accepted only from the contact addresses registered on the agreement",
                expect.agreement
            ),
            format!(
                "адрес {from} не зарегистрирован как контактный адрес договора {}",
                expect.agreement
            ),
        ));
    }
    let Some(ct) = env.content_type.as_deref() else {
        return Err(refuse(
            "WRONG_CONTENT_TYPE",
            "the request has no Content-Type; send text/plain; charset=koi8-r or windows-1251",
            "в письме нет заголовка Content-Type",
        ));
    };
    let (mime, params) = content_type_params(ct);
    if mime.starts_with("multipart/") {
        return Err(refuse(
            "WRONG_CONTENT_TYPE",
            format!("the request is {mime}; send a single text/plain part without attachments"),
            "письмо должно состоять из одной текстовой части без вложений",
        ));
    }
    if mime != "text/plain" {
        return Err(refuse(
            "WRONG_CONTENT_TYPE",
            format!("the request is {mime}; send text/plain"),
            "письмо должно быть в формате text/plain",
        ));
    }
    let charset = params
        .iter()
        .find(|(k, _)| k == "charset")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let (encoding, label): (&'static Encoding, &'static str) = match charset {
        "koi8-r" => (KOI8_R, "koi8-r"),
        "windows-1251" => (WINDOWS_1251, "windows-1251"),
        "" => {
            return Err(refuse(
                "WRONG_CHARSET",
                "the request names no charset; only koi8-r and windows-1251 are accepted",
                "не указана кодировка письма; допустимы только koi8-r и windows-1251",
            ));
        }
        other => {
            return Err(refuse(
                "WRONG_CHARSET",
                format!("charset {other} is not accepted; only koi8-r and windows-1251 are"),
                format!(
                    "кодировка {other} не поддерживается; допустимы только koi8-r и windows-1251"
                ),
            ));
        }
    };
    let cte = env
        .transfer_encoding
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if cte != "8bit" {
        let shown = if cte.is_empty() {
            "missing"
        } else {
            cte.as_str()
        };
        return Err(refuse(
            "WRONG_TRANSFER_ENCODING",
            format!("Content-Transfer-Encoding is {shown}; it must be 8bit"),
            "заголовок Content-Transfer-Encoding должен быть 8bit",
        ));
    }
    let (text, had_errors) = encoding.decode_without_bom_handling(&env.body);
    if had_errors {
        return Err(refuse(
            "WRONG_CHARSET",
            format!("the body is not valid {label}"),
            format!("текст письма не в кодировке {label}"),
        ));
    }
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();

    // The authorization block: up to the first template header.
    let mut action = None;
    let mut pay_type = None;
    let mut agreement = None;
    let mut password = None;
    let mut i = 0;
    while i < lines.len() && !lines[i].trim_start().starts_with("#[") {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(refuse(
                "SYNTAX_ERROR",
                format!("line {i} of the authorization block is not \"name: value\""),
                format!("строка {i} блока авторизации не в формате \"имя: значение\""),
            ));
        };
        let v = v.trim().to_owned();
        match k.trim().to_ascii_lowercase().as_str() {
            "action" => action = Some(v),
            "pay-type" => pay_type = Some(v),
            "agreement" => agreement = Some(v),
            "password" => password = Some(v),
            other => {
                return Err(refuse(
                    "SYNTAX_ERROR",
                    format!(
                        "unknown field {other:?} in the authorization block (line {i}); known are action, pay-type, agreement, password"
                    ),
                    format!("неизвестное поле {other:?} в блоке авторизации"),
                ));
            }
        }
    }
    let action = match action.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("NEW") => Action::New,
        Some("PROLONG") => Action::Prolong,
        Some("UPDATE") => {
            return Err(refuse(
                "WRONG_ACTION",
                "action UPDATE is not supported by the sandbox",
                "действие UPDATE не поддерживается",
            ));
        }
        Some(other) => {
            return Err(refuse(
                "WRONG_ACTION",
                format!("action {other:?} is unknown; use NEW or PROLONG"),
                format!("неизвестное действие {other:?}"),
            ));
        }
        None => {
            return Err(refuse(
                "WRONG_ACTION",
                "ACTION not filled: the authorization block names no action",
                "не указано действие (action)",
            ));
        }
    };
    if let Some(p) = &pay_type
        && !["real", "bonus", "real,bonus", "bonus,real"].contains(&p.replace(' ', "").as_str())
    {
        return Err(refuse(
            "WRONG_PAY_TYPE",
            format!("pay-type {p:?} is unknown; use real, bonus, real,bonus or bonus,real"),
            format!("неизвестный способ оплаты {p:?}"),
        ));
    }
    match agreement.as_deref() {
        Some(a) if a == expect.agreement => {}
        Some(a) => {
            return Err(refuse(
                "AUTH_FAILED",
                format!("agreement {a:?} is unknown or does not match the sender"),
                format!("договор {a:?} не найден"),
            ));
        }
        None => {
            return Err(refuse(
                "AUTH_FAILED",
                "AGREEMENT not filled: the authorization block names no agreement",
                "не указан номер договора (agreement)",
            ));
        }
    }
    match password.as_deref() {
        Some(p) if p == expect.password => {}
        Some(_) => {
            return Err(refuse(
                "AUTH_FAILED",
                format!("wrong password for agreement {}", expect.agreement),
                "неверный пароль",
            ));
        }
        None => {
            return Err(refuse(
                "AUTH_FAILED",
                "PASSWORD not filled: the authorization block has no password",
                "не указан пароль (password)",
            ));
        }
    }

    // The template block.
    let mut templates: Vec<Template> = Vec::new();
    let mut ended = false;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() {
            continue;
        }
        if line.starts_with("#[") {
            let kind = match line.to_ascii_uppercase().as_str() {
                "#[PERSON TEMPLATE]#" => TemplateKind::Person,
                "#[ORGANIZATION TEMPLATE]#" => TemplateKind::Organization,
                "#[DOMAIN TEMPLATE]#" => TemplateKind::Domain,
                "#[TEMPLATES END]#" => {
                    ended = true;
                    break;
                }
                _ => {
                    return Err(refuse(
                        "SYNTAX_ERROR",
                        format!("line {i}: unknown template header {line:?}"),
                        format!("строка {i}: неизвестный шаблон {line:?}"),
                    ));
                }
            };
            templates.push(Template {
                kind,
                line: i,
                fields: Vec::new(),
            });
            continue;
        }
        let Some(t) = templates.last_mut() else {
            return Err(refuse(
                "SYNTAX_ERROR",
                format!("line {i}: a field outside of any template"),
                format!("строка {i}: поле вне шаблона"),
            ));
        };
        let Some((k, v)) = line.split_once(':') else {
            return Err(refuse(
                "SYNTAX_ERROR",
                format!("line {i} is not \"name: value\""),
                format!("строка {i} не в формате \"имя: значение\""),
            ));
        };
        t.fields
            .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    if !ended {
        return Err(refuse(
            "SYNTAX_ERROR",
            "the request does not end with #[TEMPLATES END]#",
            "нет строки окончания шаблонов #[TEMPLATES END]#",
        ));
    }
    if templates.is_empty() {
        return Err(refuse(
            "SYNTAX_ERROR",
            "the request holds no template",
            "в заявке нет ни одного шаблона",
        ));
    }
    for t in &templates {
        for name in SINGLE {
            let n = t.fields.iter().filter(|(k, _)| k == name).count();
            if n > 1 {
                return Err(refuse(
                    "SYNTAX_ERROR",
                    format!(
                        "{} is a single-line field but appears {n} times in the {} template at line {}",
                        name.to_ascii_uppercase(),
                        t.kind.name(),
                        t.line
                    ),
                    format!("поле {name} указано {n} раз"),
                ));
            }
        }
        if action == Action::Prolong && t.kind != TemplateKind::Domain {
            return Err(refuse(
                "WRONG_ACTION",
                format!(
                    "action PROLONG takes domain templates only, not the {} template at line {}",
                    t.kind.name(),
                    t.line
                ),
                "для действия PROLONG допустимы только шаблоны доменов",
            ));
        }
    }
    // A contact must come before the domain that refers to it.
    for (n, t) in templates.iter().enumerate() {
        if t.kind != TemplateKind::Domain {
            continue;
        }
        let Some(admin) = t.one("admin-o") else {
            continue;
        };
        let later = templates[n + 1..].iter().find(|c| {
            c.kind != TemplateKind::Domain
                && c.one("nic_hdl")
                    .is_some_and(|h| h.eq_ignore_ascii_case(admin))
        });
        if let Some(c) = later {
            return Err(refuse(
                "WRONG_TEMPLATE_ORDER",
                format!(
                    "the domain template at line {} refers to {admin}, whose {} template comes later (line {}); a contact must come before the domain that refers to it",
                    t.line,
                    c.kind.name(),
                    c.line
                ),
                "шаблон контакта должен стоять перед шаблоном домена, который на него ссылается",
            ));
        }
    }
    Ok(Request {
        action,
        pay_type,
        templates,
        text,
        charset: label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTACT: &str = "gateway@gateway.test";

    fn expect() -> Expect<'static> {
        static CONTACTS: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec![CONTACT.to_owned()]);
        Expect {
            contacts: &CONTACTS,
            agreement: "RP/01/00",
            password: "pw",
        }
    }

    fn mail(headers: &str, body: &str) -> Vec<u8> {
        let mut raw = headers.replace('\n', "\r\n").into_bytes();
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&KOI8_R.encode(&body.replace('\n', "\r\n")).0);
        raw
    }

    const HEAD: &str = "From: Gateway <Gateway@gateway.test>\nTo: robot@registrar.test\nSubject: NEW CLIENT\nMessage-ID: <1@gateway.test>\nContent-Type: text/plain;\n charset=\"KOI8-R\"\nContent-Transfer-Encoding: 8bit\n";

    const BODY: &str = "action: NEW\nagreement: RP/01/00\npassword: pw\n\n#[PERSON TEMPLATE]#\nnic_hdl: H_1_2-GPT\nfiorus: Иванов Иван\npassport: 4500 123456\npassport: выдан ОВД\n#[DOMAIN TEMPLATE]#\ndomain: пример.рф\nadmin-o: H_1_2-GPT\n#[TEMPLATES END]#\n";

    #[test]
    fn a_good_request_is_read_into_templates() {
        let env = envelope(&mail(HEAD, BODY));
        assert_eq!(env.from.as_deref(), Some(CONTACT));
        assert_eq!(env.message_id.as_deref(), Some("<1@gateway.test>"));
        let r = check(&env, &expect()).unwrap();
        assert_eq!(r.action, Action::New);
        assert_eq!(r.templates.len(), 2);
        assert_eq!(r.templates[0].one("fiorus"), Some("Иванов Иван"));
        assert_eq!(
            r.templates[0].many("passport"),
            vec!["4500 123456", "выдан ОВД"]
        );
        assert_eq!(r.templates[1].handle_field(), Some("H_1_2-GPT"));
    }

    fn refusal(head: &str, body: &str) -> Refusal {
        check(&envelope(&mail(head, body)), &expect()).unwrap_err()
    }

    #[test]
    fn what_r01_checks_on_the_whole_mail_is_refused_with_a_code() {
        let cases: Vec<(String, String, &str)> = vec![
            (HEAD.replace("Gateway@gateway.test", "other@gateway.test"), BODY.into(), "SENDER_NOT_ALLOWED"),
            (HEAD.replace("\"KOI8-R\"", "utf-8"), BODY.into(), "WRONG_CHARSET"),
            (HEAD.replace("text/plain;\n charset=\"KOI8-R\"", "text/plain"), BODY.into(), "WRONG_CHARSET"),
            (HEAD.replace("text/plain", "multipart/mixed"), BODY.into(), "WRONG_CONTENT_TYPE"),
            (HEAD.replace("text/plain", "text/html"), BODY.into(), "WRONG_CONTENT_TYPE"),
            (HEAD.replace("8bit", "base64"), BODY.into(), "WRONG_TRANSFER_ENCODING"),
            (HEAD.replace("Content-Transfer-Encoding: 8bit\n", ""), BODY.into(), "WRONG_TRANSFER_ENCODING"),
            (HEAD.into(), BODY.replace("password: pw", "password: nope"), "AUTH_FAILED"),
            (HEAD.into(), BODY.replace("password: pw\n", ""), "AUTH_FAILED"),
            (HEAD.into(), BODY.replace("RP/01/00", "RP/99/99"), "AUTH_FAILED"),
            (HEAD.into(), BODY.replace("action: NEW", "action: DELETE"), "WRONG_ACTION"),
            (HEAD.into(), BODY.replace("action: NEW", "action: PROLONG"), "WRONG_ACTION"),
            (HEAD.into(), BODY.replace("#[TEMPLATES END]#\n", ""), "SYNTAX_ERROR"),
            (HEAD.into(), BODY.replace("#[PERSON TEMPLATE]#", "#[ROBOT TEMPLATE]#"), "SYNTAX_ERROR"),
            (HEAD.into(), BODY.replace("nic_hdl: H_1_2-GPT\n", "nic_hdl: H_1_2-GPT\nnic_hdl: H_2-GPT\n"), "SYNTAX_ERROR"),
            (
                HEAD.into(),
                "action: NEW\nagreement: RP/01/00\npassword: pw\n#[DOMAIN TEMPLATE]#\ndomain: a.ru\nadmin-o: H_1_2-GPT\n#[PERSON TEMPLATE]#\nnic_hdl: H_1_2-GPT\n#[TEMPLATES END]#\n".into(),
                "WRONG_TEMPLATE_ORDER",
            ),
        ];
        for (head, body, code) in cases {
            let r = refusal(&head, &body);
            assert_eq!(r.code, code, "{head}\n{body}\n=> {r:?}");
        }
    }

    #[test]
    fn windows_1251_is_accepted_too() {
        let mut raw = HEAD
            .replace("\"KOI8-R\"", "windows-1251")
            .replace('\n', "\r\n")
            .into_bytes();
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&WINDOWS_1251.encode(BODY).0);
        let r = check(&envelope(&raw), &expect()).unwrap();
        assert_eq!(r.charset, "windows-1251");
        assert_eq!(r.templates[0].one("fiorus"), Some("Иванов Иван"));
    }
}
