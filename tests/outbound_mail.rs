//! Requests out, through the real binary and a real mail stack (issue 4): `regmail serve` sends
//! through Postfix (submission, STARTTLS verified with the test CA, AUTH) and the tests read what
//! Dovecot delivered over IMAPS.
//!
//! The stack is started by the tests themselves (`scripts/mailstack.sh up`, once per binary);
//! when it cannot start, every test fails loudly. Messages are told apart by the request token
//! in their Subject (or their Message-ID), so no mailbox is ever wiped. Tests that need Postfix
//! running hold a shared lock; the fault tests that stop Postfix hold it exclusively and start
//! Postfix again whatever happens.
//!
//! Expected request texts are in `tests/snapshots/` with the run-specific values as
//! placeholders; `REGMAIL_UPDATE_SNAPSHOTS=1` rewrites them (review the diff before keeping it).

mod common;
mod support_mail;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support_mail::{
    AGREEMENT, CALLBACK, COPIES, FakeScript, FakeSmtp, Mail, MailConfig, MailDaemon, NOBODY, Out,
    PostfixDown, REGISTRAR_PASSWORD, REPO, ROBOT, Search, count, fetch, postfix_exclusive,
    postfix_shared, settled_count, wait_for_mail,
};

const SEND_TIMEOUT: Duration = Duration::from_secs(20);
const MAIL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to keep watching a mailbox after the first copy arrived, for "exactly one" checks
/// (longer than the retry cap of 2 s, so a resend would have come).
const GRACE: Duration = Duration::from_millis(2500);

// ---- test data --------------------------------------------------------------------------------

fn person(id: &str) -> Value {
    json!({
        "id": id,
        "registrant": {
            "type": "person",
            "fio_ru": "Петров Пётр Петрович",
            "fio_en": "Petr P Petrov",
            "passport": ["4510 654321", "выдан ОВД района Хамовники г. Москвы", "15.03.2005"],
            "birth_date": "1979-12-24",
            "postal_addr": ["119021, Москва", "ул. Льва Толстого, д. 16, кв. 5"],
            "phone": "+7 495 7397000",
            "fax": "+7 495 7397001",
            "email": "petrov@example.com",
            "is_protected": false,
            "inn": "771234567890"
        }
    })
}

fn organization(id: &str) -> Value {
    json!({
        "id": id,
        "registrant": {
            "type": "organization",
            "org_name_ru": "ООО \"Ромашка\"",
            "org_name_en": "Romashka LLC",
            "inn": "7701234567",
            "kpp": "770101001",
            "ogrn": "1027700132195",
            "legal_addr": ["101000, Москва", "ул. Мясницкая, д. 1"],
            "postal_addr": ["101000, Москва, а/я 1"],
            "phone": "+7 495 7654321",
            "fax": "+7 495 7654322",
            "email": "office@romashka.example",
            "director_name": "Сидоров Сидор Сидорович",
            "bank": "ПАО Сбербанк",
            "ras_schet": "40702810900000000001",
            "kor_schet": "30101810400000000225",
            "bik": "044525225"
        },
        "contact": {"name": "Petr Petrov", "email": "petr@romashka.example"}
    })
}

/// A client the registrar already knows: orders for it are one domain request each.
fn imported(id: &str, handle: &str) -> Value {
    let mut v = person(id);
    v["handle"] = json!(handle);
    v
}

/// The order of the snapshots: two years, a name server inside the zone (with glue), a
/// description in Russian.
fn snapshot_order(client: &str) -> Value {
    json!({
        "domain": "snapshot-test.ru",
        "client_id": client,
        "years": 2,
        "nameservers": ["ns1.hoster.example", "ns2.snapshot-test.ru [192.0.2.53]"],
        "order_id": "ord-snapshot-1",
        "description": ["Тестовый сайт", "test site"],
        "paid": true
    })
}

fn order(domain: &str, client: &str) -> Value {
    json!({
        "domain": domain,
        "client_id": client,
        "years": 1,
        "nameservers": ["ns1.hoster.example", "ns2.hoster.example"],
        "order_id": format!("ord-{domain}"),
        "paid": true
    })
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_owned()
}

fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

// ---- soft checks: every problem of a flow is reported, not only the first ---------------------

struct Checks {
    what: String,
    failures: Vec<String>,
}

impl Checks {
    fn new(what: &str) -> Checks {
        Checks {
            what: what.into(),
            failures: Vec::new(),
        }
    }
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(msg());
        }
    }
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, actual: T, expected: T) {
        if actual != expected {
            self.failures
                .push(format!("{what}: got {actual:?}, expected {expected:?}"));
        }
    }
    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} problem(s):\n- {}",
            self.what,
            self.failures.len(),
            self.failures.join("\n- ")
        );
    }
}

// ---- snapshots --------------------------------------------------------------------------------

fn snapshot(name: &str, actual: &str) -> Result<(), String> {
    let path = Path::new(REPO)
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("REGMAIL_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "snapshot {} cannot be read ({e}); run with REGMAIL_UPDATE_SNAPSHOTS=1 to write it, then review it",
            path.display()
        )
    })?;
    if expected == actual {
        return Ok(());
    }
    let (e, a): (Vec<&str>, Vec<&str>) =
        (expected.split('\n').collect(), actual.split('\n').collect());
    let mut diff = String::new();
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            diff += &format!(
                "  line {}: expected {:?}\n          actual   {:?}\n",
                i + 1,
                x.copied().unwrap_or("<none>"),
                y.copied().unwrap_or("<none>")
            );
        }
    }
    Err(format!(
        "the request differs from snapshot {}:\n{diff}--- actual ---\n{actual}--- end ---",
        path.display()
    ))
}

// ---- checking one request e-mail ------------------------------------------------------------

/// Line checks on the bytes as sent: CRLF line ends only, every line under 998 octets
/// (RFC 5322 §2.1.1).
fn check_lines(c: &mut Checks, what: &str, sent: &[u8]) {
    let mut rest = sent;
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (rest, &rest[rest.len()..]),
        };
        c.check(!line.contains(&b'\n') && !line.contains(&b'\r'), || {
            format!(
                "{what}: line {n} holds a bare CR or LF: {:?}",
                String::from_utf8_lossy(line)
            )
        });
        c.check(line.len() < 998, || {
            format!("{what}: line {n} is {} octets long", line.len())
        });
        c.check(!line.contains(&0), || format!("{what}: line {n} holds NUL"));
        rest = next;
    }
    c.check(sent.ends_with(b"\r\n"), || {
        format!("{what}: the message does not end with CRLF")
    });
}

/// What a delivered request e-mail must be. Returns the decoded body (LF line ends).
struct Expect<'a> {
    /// The request as the API shows it.
    req: &'a Value,
    /// MIME charset label.
    charset: &'a str,
    /// Snapshot name.
    snapshot: &'a str,
    /// The handle to replace by {HANDLE}.
    handle: Option<&'a str>,
    /// The mailbox it was sent to (envelope), checked against Delivered-To.
    to_mailbox: &'a str,
}

/// Checks one message (delivered or written by the dir transport) against the request and the
/// snapshot; returns the decoded body with LF line ends.
fn check_message(c: &mut Checks, mail: &Mail, e: &Expect<'_>) -> String {
    let what = format!("{} request {}", e.snapshot, s(&e.req["id"]));
    let token = s(&e.req["token"]);
    let id = s(&e.req["id"]);
    let message_id = s(&e.req["message_id"]);

    if !mail.trace.is_empty() {
        c.eq(
            &format!("{what}: Delivered-To"),
            mail.trace_field("Delivered-To"),
            vec![e.to_mailbox],
        );
    }
    c.eq(
        &format!("{what}: From"),
        mail.header("From"),
        Some(CALLBACK),
    );
    c.eq(&format!("{what}: To"), mail.header("To"), Some(ROBOT));
    c.check(
        mail.all("Bcc").is_empty() && mail.all("Cc").is_empty(),
        || {
            format!(
                "{what}: a Bcc or Cc header field is in the message: {:?}",
                mail.headers
            )
        },
    );
    c.eq(
        &format!("{what}: Message-ID (= the request's message_id)"),
        mail.header("Message-ID"),
        Some(message_id.as_str()),
    );
    c.eq(
        &format!("{what}: MIME-Version"),
        mail.header("MIME-Version"),
        Some("1.0"),
    );
    c.eq(
        &format!("{what}: Content-Type"),
        mail.header("Content-Type").map(str::to_owned),
        Some(format!("text/plain; charset={}", e.charset)),
    );
    c.eq(
        &format!("{what}: Content-Transfer-Encoding"),
        mail.header("Content-Transfer-Encoding"),
        Some("8bit"),
    );
    // The token in the Subject is the request's id.
    let subject = mail.header("Subject").unwrap_or_default().to_owned();
    let re = regex::Regex::new(r" \[RM-([0-9a-f]{32})\]$").expect("regex");
    match re.captures(&subject) {
        Some(cap) => {
            c.eq(&format!("{what}: Subject token"), &cap[1], token.as_str());
            c.eq(
                &format!("{what}: Subject token = request id"),
                cap[1].to_owned(),
                id.replace('-', ""),
            );
        }
        None => c.check(false, || {
            format!("{what}: Subject {subject:?} has no [RM-<32 hex>] token at its end")
        }),
    }
    // Date: the request's creation time (fixed when queued, so a resend is the same message).
    match mail
        .header("Date")
        .map(jiff::fmt::rfc2822::parse)
        .transpose()
    {
        Ok(Some(date)) => {
            let created: jiff::Timestamp = s(&e.req["created"]).parse().expect("created");
            c.eq(
                &format!("{what}: Date (= request created, to the second)"),
                date.timestamp().as_second(),
                created.as_second(),
            );
        }
        other => c.check(false, || format!("{what}: Date is not RFC 2822: {other:?}")),
    }
    check_lines(c, &what, &mail.sent);

    // The body: raw 8-bit bytes of the charset (no base64, no quoted-printable), decoding
    // exactly to the expected text (compared with the snapshot below).
    let enc = encoding_rs::Encoding::for_label(e.charset.as_bytes()).expect("charset label");
    let body = match enc.decode_without_bom_handling_and_without_replacement(&mail.body) {
        Some(t) => t.into_owned(),
        None => {
            c.check(false, || {
                format!("{what}: the body is not valid {}", e.charset)
            });
            String::from_utf8_lossy(&mail.body).into_owned()
        }
    };
    c.check(
        body.is_ascii() || mail.body.iter().any(|b| *b >= 0x80),
        || {
            format!(
                "{what}: non-ASCII text without 8-bit octets: not raw {}",
                e.charset
            )
        },
    );
    let mut body_lf = body.replace("\r\n", "\n");
    // SMTP delivery adds an empty line after the terminator (a bug shown on its own by
    // `smtp_delivery_ends_with_the_terminator_line`); the snapshots hold the request as
    // rendered, so that one extra line is not counted again here.
    if !mail.trace.is_empty() && body_lf.ends_with("#[TEMPLATES END]#\n\n") {
        body_lf.pop();
    }

    // Blocks in order: the authorization block, a blank line, the template, the terminator last.
    let lines: Vec<&str> = body_lf.trim_end_matches('\n').split('\n').collect();
    let auth_end = lines.iter().position(|l| l.is_empty()).unwrap_or(0);
    let auth_keys: Vec<&str> = lines[..auth_end]
        .iter()
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    c.check(
        auth_keys == ["action", "agreement", "password"]
            || auth_keys == ["action", "pay-type", "agreement", "password"],
        || format!("{what}: authorization block keys {auth_keys:?}"),
    );
    c.check(
        lines.contains(&format!("agreement: {AGREEMENT}").as_str())
            && lines.contains(&format!("password: {REGISTRAR_PASSWORD}").as_str()),
        || format!("{what}: the authorization block lacks the agreement or the real password"),
    );
    let header_line = lines.get(auth_end + 1).copied().unwrap_or_default();
    c.check(
        [
            "#[PERSON TEMPLATE]#",
            "#[ORGANIZATION TEMPLATE]#",
            "#[DOMAIN TEMPLATE]#",
        ]
        .contains(&header_line),
        || format!("{what}: the line after the authorization block is {header_line:?}"),
    );
    c.eq(
        &format!("{what}: last line"),
        lines.last().copied(),
        Some("#[TEMPLATES END]#"),
    );

    // Snapshot of our header fields and the decoded body, run-specific values as placeholders.
    let head_end = mail
        .sent
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&mail.sent[..head_end]).replace("\r\n", "\n");
    let mut text = String::new();
    for l in head.split('\n') {
        if l.starts_with("Date: ") {
            text += "Date: {DATE}\n";
        } else {
            text += l;
            text.push('\n');
        }
    }
    text.push('\n');
    text += &body_lf;
    let mut text = text
        .replace(&id, "{REQUEST_ID}")
        .replace(&token, "{TOKEN}")
        .replace(&format!("charset={}", e.charset), "charset={CHARSET}");
    if let Some(h) = e.handle {
        text = text.replace(h, "{HANDLE}");
    }
    if let Err(diff) = snapshot(e.snapshot, &text) {
        c.check(false, || format!("{what}: {diff}"));
    }
    body_lf
}

/// Waits for request `id` to be Sent, then for its e-mail in robot's INBOX (found by the token in
/// the Subject) and its BCC copy in copies' INBOX (found by Message-ID), and checks both.
/// Returns the request and the decoded body.
fn check_delivered(
    c: &mut Checks,
    d: &MailDaemon,
    id: &str,
    charset: &str,
    snapshot: &str,
    handle: Option<&str>,
) -> (Value, String) {
    let req = d.wait_request(id, &["Sent"], SEND_TIMEOUT);
    let token = s(&req["token"]);
    let mid = s(&req["message_id"]);
    let mails = wait_for_mail(ROBOT, &Search::subject(&token), 1, MAIL_TIMEOUT);
    c.eq(
        &format!("{snapshot}: copies in {ROBOT}'s INBOX"),
        mails.len(),
        1,
    );
    let e = Expect {
        req: &req,
        charset,
        snapshot,
        handle,
        to_mailbox: ROBOT,
    };
    let body = check_message(c, &mails[0], &e);
    let bcc = wait_for_mail(COPIES, &Search::message_id(&mid), 1, MAIL_TIMEOUT);
    c.eq(
        &format!("{snapshot}: BCC copies in {COPIES}'s INBOX"),
        bcc.len(),
        1,
    );
    c.eq(
        &format!("{snapshot}: BCC copy Delivered-To"),
        bcc[0].trace_field("Delivered-To"),
        vec![COPIES],
    );
    c.check(bcc[0].sent == mails[0].sent, || {
        format!("{snapshot}: the BCC copy differs from the registrar's copy")
    });
    (req, body)
}

// ---- 1, 2: the request flows in both charsets ------------------------------------------------

/// A person client and a paid order: the client request; the client recorded as registered: the
/// domain request; the domain resolved as registered expiring within 60 days: the renewal.
fn person_domain_and_renewal(charset: Option<&str>) {
    let _postfix = postfix_shared();
    let cs = charset.unwrap_or("koi8-r");
    let d = MailDaemon::start(MailConfig {
        charset: charset.map(str::to_owned),
        ..MailConfig::default()
    });
    let mut c = Checks::new(&format!("person, domain and renewal requests in {cs}"));

    d.post_expect("/v1/clients", &person("snap-person"), 201);
    let dom = d.post_expect("/v1/domains", &snapshot_order("snap-person"), 202);
    c.eq(
        "domain phase before the client is registered",
        s(&dom["phase"]),
        "WaitingForClient".into(),
    );
    let client = d.get_ok("/v1/clients/snap-person");
    let cid = s(&client["open_request"]);
    // The handle is chosen when the request is queued (we choose handles at R01).
    let handle = s(&d.request(&cid)["handle"]);
    c.check(
        regex::Regex::new(r"^REGMAIL_1_[0-9]-GPT$")
            .expect("regex")
            .is_match(&handle),
        || format!("person handle {handle:?} is not PREFIX_<counter>_<digit>-GPT"),
    );
    check_delivered(&mut c, &d, &cid, cs, "person-client", Some(&handle));

    // The registrar registered the client: the domain request goes out.
    let done = d.post_expect(
        &format!("/v1/requests/{cid}/outcome"),
        &json!({"event": "completed", "handle": handle, "note": "test"}),
        200,
    );
    c.eq(
        "client request after the outcome",
        s(&done["state"]),
        "Completed".into(),
    );
    c.eq(
        "client status",
        s(&d.get_ok("/v1/clients/snap-person")["status"]),
        "Registered".into(),
    );
    let dom = d.get_ok("/v1/domains/snapshot-test.ru");
    let did = s(&dom["open_request"]["id"]);
    let (dreq, body) = check_delivered(&mut c, &d, &did, cs, "domain-registration", Some(&handle));
    c.eq(
        "domain request kind",
        s(&dreq["kind"]),
        "domain-registration".into(),
    );
    c.check(body.contains(&format!("\nadmin-o: {handle}\n")), || {
        format!("the domain request's admin-o is not {handle}:\n{body}")
    });
    let dom = d.get_ok("/v1/domains/snapshot-test.ru");
    c.eq("domain status", s(&dom["status"]), "Registering".into());
    c.eq("domain phase", s(&dom["phase"]), "RequestSent".into());

    // Registered, expiring within 60 days: a renewal is allowed and goes out as PROLONG.
    let expires = today()
        .checked_add(jiff::Span::new().days(30))
        .expect("date");
    let (st, v) = d.post(
        "/v1/domains/snapshot-test.ru/resolve",
        &json!({"outcome": "registered", "expires": expires.to_string(), "note": "test"}),
    );
    c.eq("resolve status", st, 200);
    c.eq(
        "domain status after resolve",
        s(&v["status"]),
        "Registered".into(),
    );
    let v = d.post_expect(
        "/v1/domains/snapshot-test.ru/renew",
        &json!({"years": 1}),
        202,
    );
    c.eq(
        "domain status after renew",
        s(&v["status"]),
        "Renewing".into(),
    );
    let rid = s(&v["open_request"]["id"]);
    let (rreq, _) = check_delivered(&mut c, &d, &rid, cs, "domain-renewal", Some(&handle));
    c.eq("renewal kind", s(&rreq["kind"]), "domain-renewal".into());

    c.finish();
    d.assert_no_secrets();
}

/// An organization client and a paid order: the ORGANIZATION request.
fn organization_client(charset: Option<&str>) {
    let _postfix = postfix_shared();
    let cs = charset.unwrap_or("koi8-r");
    let d = MailDaemon::start(MailConfig {
        charset: charset.map(str::to_owned),
        ..MailConfig::default()
    });
    let mut c = Checks::new(&format!("organization request in {cs}"));
    d.post_expect("/v1/clients", &organization("snap-org"), 201);
    d.post_expect("/v1/domains", &order("snapshot-org.ru", "snap-org"), 202);
    let cid = s(&d.get_ok("/v1/clients/snap-org")["open_request"]);
    let req = d.request(&cid);
    let handle = s(&req["handle"]);
    c.check(
        regex::Regex::new(r"^REGMAIL_1_[0-9]-ORG-GPT$")
            .expect("regex")
            .is_match(&handle),
        || format!("organization handle {handle:?} is not PREFIX_<counter>_<digit>-ORG-GPT"),
    );
    check_delivered(&mut c, &d, &cid, cs, "organization-client", Some(&handle));
    c.finish();
    d.assert_no_secrets();
}

#[test]
fn koi8r_person_client_domain_and_renewal_requests() {
    person_domain_and_renewal(None);
}

#[test]
fn koi8r_organization_client_request() {
    organization_client(None);
}

#[test]
fn windows1251_person_client_domain_and_renewal_requests() {
    person_domain_and_renewal(Some("windows-1251"));
}

#[test]
fn windows1251_organization_client_request() {
    organization_client(Some("windows-1251"));
}

/// lettre's `message()` always appends CRLF "." CRLF, so a message that already ends in CRLF
/// (as every rendered request does) reaches the server with one more, empty, line.
#[test]
fn smtp_delivery_ends_with_the_terminator_line() {
    let _postfix = postfix_shared();
    let d = MailDaemon::start(MailConfig::default());
    d.post_expect("/v1/clients", &imported("term", "TERM_1_1-GPT"), 201);
    let dom = d.post_expect("/v1/domains", &order("terminator-test.ru", "term"), 202);
    let id = s(&dom["open_request"]["id"]);
    let req = d.wait_request(&id, &["Sent"], SEND_TIMEOUT);
    // The request as rendered (password masked, LF): an ASCII-only domain request, so its bytes
    // as rendered are this text with the password and CRLF put back.
    let copy = d.get_text(&format!("/v1/requests/{id}/render"));
    let rendered = copy
        .replace(
            "password: ********",
            &format!("password: {REGISTRAR_PASSWORD}"),
        )
        .replace('\n', "\r\n");
    let mail = &wait_for_mail(ROBOT, &Search::subject(&s(&req["token"])), 1, MAIL_TIMEOUT)[0];
    let tail =
        String::from_utf8_lossy(&mail.sent[mail.sent.len().saturating_sub(40)..]).into_owned();
    assert!(
        rendered.ends_with("#[TEMPLATES END]#\r\n"),
        "the rendered request does not end with the terminator line: {copy:?}"
    );
    assert!(
        mail.sent.ends_with(b"\r\n#[TEMPLATES END]#\r\n"),
        "the delivered request does not end with the line #[TEMPLATES END]#: it ends {tail:?}; \
         the rendered request ends {:?} (delivered = rendered + {:?})",
        &rendered[rendered.len().saturating_sub(20)..],
        String::from_utf8_lossy(
            mail.sent
                .strip_prefix(rendered.as_bytes())
                .unwrap_or(&b"(not a prefix)"[..])
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&mail.sent),
        rendered,
        "the delivered message is not the rendered request byte for byte"
    );
    d.assert_no_secrets();
}

// ---- 3: typographic characters and characters the charset cannot hold ------------------------

#[test]
fn typographic_characters_are_transliterated_and_unencodable_ones_refused() {
    let _postfix = postfix_shared();
    let d = MailDaemon::start(MailConfig::default());
    let mut c = Checks::new("typographic characters in koi8-r");

    // « » — № (KOI8-R has none of them): accepted, sent as " " - N (charset.rs, documented rule).
    let mut typo = person("typo");
    typo["registrant"]["postal_addr"] = json!(["«Дом книги» — №7, Новый Арбат", "Москва"]);
    typo["registrant"]["passport"] = json!(["4510 654321", "выдан ОВД «Арбат» №2"]);
    d.post_expect("/v1/clients", &typo, 201);
    d.post_expect("/v1/domains", &order("typo-test.ru", "typo"), 202);
    let stored = d.get_ok("/v1/clients/typo");
    c.eq(
        "stored address keeps the original characters",
        s(&stored["registrant"]["postal_addr"][0]),
        "«Дом книги» — №7, Новый Арбат".into(),
    );
    let id = s(&stored["open_request"]);
    let req = d.wait_request(&id, &["Sent"], SEND_TIMEOUT);
    let mail = &wait_for_mail(ROBOT, &Search::subject(&s(&req["token"])), 1, MAIL_TIMEOUT)[0];
    let (body, _, bad) = encoding_rs::KOI8_R.decode(&mail.body);
    c.check(!bad, || "the body is not valid KOI8-R".into());
    let body = body.replace("\r\n", "\n");
    c.check(
        body.contains("\npostal_addr: \"Дом книги\" - N7, Новый Арбат\npostal_addr: Москва\n"),
        || format!("the address is not transliterated as documented:\n{body}"),
    );
    c.check(
        body.contains("\npassport: выдан ОВД \"Арбат\" N2\n"),
        || format!("the passport line is not transliterated as documented:\n{body}"),
    );
    c.check(!body.contains(['«', '»', '—', '№']), || {
        format!("typographic characters survived:\n{body}")
    });

    // Characters KOI8-R cannot hold, even after transliteration: 422 naming the field, nothing kept.
    for (i, (field, value, expect_field)) in [
        (
            "postal_addr",
            json!(["東京都 日本橋 1-1"]),
            "registrant.postal_addr[0]",
        ),
        (
            "postal_addr",
            json!(["Москва", "Price: 10 €"]),
            "registrant.postal_addr[1]",
        ),
        ("fio_ru", json!("Иванов Иван 日"), "registrant.fio_ru"),
        (
            "passport",
            json!(["4510 654321", "выдан ОВД ✓"]),
            "registrant.passport[1]",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bad-{i}");
        let mut b = person(&id);
        b["registrant"][field] = value.clone();
        let (st, v) = d.post("/v1/clients", &b);
        c.eq(&format!("{field}={value}: status"), st, 422);
        c.eq(
            &format!("{field}={value}: error field"),
            v["error"]["field"].as_str().map(str::to_owned),
            Some(expect_field.to_owned()),
        );
        let (st, _) = d.get(&format!("/v1/clients/{id}"));
        c.eq(&format!("{field}={value}: client kept"), st, 404);
    }
    // An organization's name, and a description of an order, the same way.
    let mut org = organization("bad-org");
    org["registrant"]["org_name_ru"] = json!("ООО «Ромашка» ™");
    let (st, v) = d.post("/v1/clients", &org);
    c.eq("org_name_ru with ™: status", st, 422);
    c.eq(
        "org_name_ru with ™: field",
        v["error"]["field"].as_str(),
        Some("registrant.org_name_ru"),
    );
    d.post_expect("/v1/clients", &imported("desc", "DESC_1_1-GPT"), 201);
    let mut o = order("desc-test.ru", "desc");
    o["description"] = json!(["ok", "日本"]);
    let (st, v) = d.post("/v1/domains", &o);
    c.eq("description with 日: status", st, 422);
    c.eq(
        "description with 日: field",
        v["error"]["field"].as_str(),
        Some("description[1]"),
    );
    let (st, _) = d.get("/v1/domains/desc-test.ru");
    c.eq("description with 日: order kept", st, 404);
    // Correcting an unregistered client with such text is refused too.
    d.post_expect("/v1/clients", &person("later"), 201);
    let mut upd = person("later");
    upd.as_object_mut().expect("object").remove("id");
    upd["registrant"]["postal_addr"] = json!(["日"]);
    let (st, v) = d.put("/v1/clients/later", &upd);
    c.eq("update with 日: status", st, 422);
    c.eq(
        "update with 日: field",
        v["error"]["field"].as_str(),
        Some("registrant.postal_addr[0]"),
    );

    // Nothing was queued but the one good client request.
    let stats = d.stats();
    let total: u64 = stats["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|p| p[1].as_u64().unwrap_or(0))
        .sum();
    c.eq("requests in the store", total, 1);
    c.eq("outbox", stats["outbox"].as_u64(), Some(0));
    c.finish();
    d.assert_no_secrets();
}

/// The e-mail address is written into the request (`e_mail:`) but is not charset-checked when
/// the client is accepted: a domain part in a script KOI8-R lacks (IDN, so it passes the
/// address check) is accepted with 201, and the request then fails to render at send time,
/// forever (deferred again and again, never an error).
#[test]
fn unencodable_email_is_refused_when_the_client_is_accepted() {
    let _postfix = postfix_shared();
    let d = MailDaemon::start(MailConfig::default());
    let mut b = person("idn-mail");
    b["registrant"]["email"] = json!("petrov@例え.jp");
    let (st, v) = d.post("/v1/clients", &b);
    if st == 201 {
        // Show what happens then: the order's client request can never be sent.
        d.post_expect("/v1/domains", &order("idn-mail-test.ru", "idn-mail"), 202);
        let id = s(&d.get_ok("/v1/clients/idn-mail")["open_request"]);
        std::thread::sleep(Duration::from_millis(2000));
        let r = d.request(&id);
        let deferred = d.log_of(&id, "request.send_deferred");
        panic!(
            "a client whose e-mail KOI8-R cannot hold was accepted (201), expected 422 naming \
             registrant.email; its request is {} after 2 s with {} request.send_deferred \
             entries, the last: {}",
            r["state"],
            deferred.len(),
            deferred
                .last()
                .map_or(Value::Null, |e| e["message"].clone())
        );
    }
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["field"], "registrant.email", "{v}");
}

// ---- 4: header injection ----------------------------------------------------------------------

#[test]
fn line_breaks_in_any_field_are_refused_and_nothing_is_sent() {
    let _postfix = postfix_shared();
    let d = MailDaemon::start(MailConfig::default());
    let mut c = Checks::new("CR/LF in fields");
    let evil = "\r\nBcc: victim@example.com\r\nSubject: injected";

    let mut clients: Vec<(Value, &str)> = Vec::new();
    let with = |path: &[&str], v: Value| {
        let mut b = person("inj");
        let mut t = &mut b;
        for p in &path[..path.len() - 1] {
            t = &mut t[*p];
        }
        t[path[path.len() - 1]] = v;
        b
    };
    clients.push((with(&["id"], json!(format!("inj{evil}"))), "id"));
    clients.push((
        with(&["registrant", "fio_ru"], json!(format!("Петров{evil}"))),
        "registrant.fio_ru",
    ));
    clients.push((
        with(&["registrant", "fio_en"], json!(format!("Petrov{evil}"))),
        "registrant.fio_en",
    ));
    clients.push((
        with(
            &["registrant", "email"],
            json!(format!("petrov@example.com{evil}")),
        ),
        "registrant.email",
    ));
    clients.push((
        with(&["registrant", "phone"], json!("+7 495\r\n7397000")),
        "registrant.phone",
    ));
    clients.push((
        with(
            &["registrant", "passport"],
            json!(["4510 654321", "выдан\r\n#[DOMAIN TEMPLATE]#"]),
        ),
        "registrant.passport[1]",
    ));
    clients.push((
        with(
            &["registrant", "postal_addr"],
            json!(["Москва\rBcc: x@example.com"]),
        ),
        "registrant.postal_addr[0]",
    ));
    clients.push((
        with(
            &["contact"],
            json!({"name": format!("Petr{evil}"), "email": "p@example.com"}),
        ),
        "contact.name",
    ));
    clients.push((with(&["handle"], json!("INJ_1_1\r\n-GPT")), "handle"));
    for (key, field) in [
        ("org_name_ru", "registrant.org_name_ru"),
        ("org_name_en", "registrant.org_name_en"),
        ("director_name", "registrant.director_name"),
        ("bank", "registrant.bank"),
    ] {
        let mut o = organization("inj-org");
        o["registrant"][key] = json!(format!("Ромашка{evil}"));
        clients.push((o, field));
    }
    for (body, field) in &clients {
        let (st, v) = d.post("/v1/clients", body);
        c.eq(&format!("client with CR/LF in {field}: status"), st, 422);
        c.eq(
            &format!("client with CR/LF in {field}: error field"),
            v["error"]["field"].as_str(),
            Some(*field),
        );
    }

    // Orders for a registered client (one that would send at once).
    d.post_expect("/v1/clients", &imported("inj-ok", "INJ_1_1-GPT"), 201);
    let mut orders: Vec<(Value, &str)> = Vec::new();
    let mut o = order("inj-test.ru", "inj-ok");
    o["domain"] = json!(format!("inj-test.ru{evil}"));
    orders.push((o, "domain"));
    let mut o = order("inj-test.ru", "inj-ok");
    o["order_id"] = json!(format!("ord-1{evil}"));
    orders.push((o, "order_id"));
    let mut o = order("inj-test.ru", "inj-ok");
    o["description"] = json!(["fine", format!("site{evil}")]);
    orders.push((o, "description[1]"));
    let mut o = order("inj-test.ru", "inj-ok");
    o["nameservers"] = json!([format!("ns1.hoster.example{evil}"), "ns2.hoster.example"]);
    orders.push((o, "nameservers[0]"));
    let mut o = order("inj-test.ru", "inj-ok");
    o["client_id"] = json!(format!("inj-ok{evil}"));
    orders.push((o, "client_id"));
    for (body, field) in &orders {
        let (st, v) = d.post("/v1/domains", body);
        c.eq(&format!("order with CR/LF in {field}: status"), st, 422);
        c.eq(
            &format!("order with CR/LF in {field}: error field"),
            v["error"]["field"].as_str(),
            Some(*field),
        );
    }

    // Nothing queued, nothing sent.
    std::thread::sleep(Duration::from_millis(300));
    let stats = d.stats();
    let total: u64 = stats["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|p| p[1].as_u64().unwrap_or(0))
        .sum();
    c.eq("requests in the store", total, 0);
    c.eq("outbox", stats["outbox"].as_u64(), Some(0));
    let queued = d
        .full_log()
        .into_iter()
        .filter(|e| e["action"] == "request.queued")
        .count();
    c.eq("request.queued log entries", queued, 0);
    let (st, _) = d.get("/v1/domains/inj-test.ru");
    c.eq("no order kept", st, 404);

    // A multi-line field given as ONE string is split at its line ends by design (input.rs):
    // each part must become its own `postal_addr:` line, so nothing can start a header or a
    // template line of its own.
    let mut b = person("inj-lines");
    b["registrant"]["postal_addr"] =
        json!("119021, Москва\r\n#[DOMAIN TEMPLATE]#\nBcc: x@example.com");
    let (st, v) = d.post("/v1/clients", &b);
    if st == 201 {
        d.post_expect("/v1/domains", &order("inj-lines-test.ru", "inj-lines"), 202);
        let id = s(&d.get_ok("/v1/clients/inj-lines")["open_request"]);
        let req = d.wait_request(&id, &["Sent"], SEND_TIMEOUT);
        let mail = &wait_for_mail(ROBOT, &Search::subject(&s(&req["token"])), 1, MAIL_TIMEOUT)[0];
        c.check(mail.all("Bcc").is_empty(), || {
            "a Bcc field was injected".into()
        });
        let (body, _, _) = encoding_rs::KOI8_R.decode(&mail.body);
        let body = body.replace("\r\n", "\n");
        c.check(
            body.contains("\npostal_addr: 119021, Москва\npostal_addr: #[DOMAIN TEMPLATE]#\npostal_addr: Bcc: x@example.com\n"),
            || format!("the lines of a multi-line string were not each prefixed:\n{body}"),
        );
        c.eq(
            "template header lines",
            body.lines().filter(|l| l.starts_with("#[")).count(),
            2,
        );
    } else {
        c.eq("multi-line string: status when refused", st, 422);
        c.check(
            v["error"]["field"]
                .as_str()
                .is_some_and(|f| f.contains("postal_addr")),
            || format!("multi-line string refused without naming postal_addr: {v}"),
        );
    }
    c.finish();
    d.assert_no_secrets();
}

// ---- 5: faults --------------------------------------------------------------------------------

fn deferred_times(d: &MailDaemon, id: &str) -> Vec<jiff::Timestamp> {
    d.log_of(id, "request.send_deferred")
        .iter()
        .map(|e| s(&e["at"]).parse().expect("at"))
        .collect()
}

/// (a) Postfix stopped: the order is accepted, the request stays Queued and is retried with
/// backoff (logged); once Postfix is back it goes out, exactly once, with its Message-ID.
#[test]
fn postfix_down_request_waits_then_goes_out_exactly_once() {
    let _exclusive = postfix_exclusive();
    let d = MailDaemon::start(MailConfig::default());
    let mut c = Checks::new("Postfix down");
    d.post_expect("/v1/clients", &imported("down", "DOWN_1_1-GPT"), 201);
    let mut postfix = PostfixDown::stop();

    let dom = d.post_expect("/v1/domains", &order("postfix-down-test.ru", "down"), 202);
    let id = s(&dom["open_request"]["id"]);
    let mid = s(&dom["open_request"]["message_id"]);
    d.wait_until(
        "3 request.send_deferred entries",
        Duration::from_secs(15),
        |d| deferred_times(d, &id).len() >= 3,
    );
    let r = d.request(&id);
    c.eq(
        "state while Postfix is down",
        s(&r["state"]),
        "Queued".into(),
    );
    c.eq(
        "attempts while Postfix is down",
        r["attempts"].as_u64(),
        Some(0),
    );
    c.eq(
        "message_id while Postfix is down",
        s(&r["message_id"]),
        mid.clone(),
    );
    c.eq(
        "domain phase while Postfix is down",
        s(&d.get_ok("/v1/domains/postfix-down-test.ru")["phase"]),
        "RequestQueued".into(),
    );
    let entries = d.log_of(&id, "request.send_deferred");
    for (i, e) in entries.iter().enumerate() {
        c.check(
            s(&e["message"]).contains(&format!("attempt {}", i + 1)),
            || format!("deferral {} does not name its attempt: {e}", i + 1),
        );
        c.check(e["evidence"]["error"].is_string(), || {
            format!("deferral {} has no error evidence: {e}", i + 1)
        });
    }
    // Exponential backoff: 0.5 s, 1 s, 2 s (±20 %), capped at 2 s.
    let t = deferred_times(&d, &id);
    let gaps: Vec<f64> = t
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    c.check(gaps.len() >= 2 && gaps[1] > gaps[0] * 1.2, || {
        format!("retry delays do not grow: {gaps:?}")
    });
    c.check(gaps.iter().all(|g| *g < 2.0 * 1.2 + 0.5), || {
        format!("a retry delay exceeds retry_max: {gaps:?}")
    });

    postfix.start();
    let r = d.wait_request(&id, &["Sent"], SEND_TIMEOUT);
    c.eq(
        "message_id after Postfix is back",
        s(&r["message_id"]),
        mid.clone(),
    );
    c.eq("attempts after sending", r["attempts"].as_u64(), Some(1));
    let n = settled_count(ROBOT, &Search::message_id(&mid), MAIL_TIMEOUT, GRACE);
    c.eq("copies in robot's INBOX", n, 1);
    let m = fetch(ROBOT, &Search::message_id(&mid));
    c.eq(
        "Message-ID of the delivered copy",
        m.first()
            .and_then(|m| m.header("Message-ID"))
            .map(str::to_owned),
        Some(mid.clone()),
    );
    c.eq(
        "request.sent entries",
        d.log_of(&id, "request.sent").len(),
        1,
    );
    c.finish();
    d.assert_no_secrets();
}

/// (b) 550 at RCPT: the request is Rejected, the client (and its waiting domain) in Error with
/// the server's reply in last_error and in the log; nothing is delivered, not even the BCC copy.
#[test]
fn permanent_550_rejects_the_request_and_errors_the_client() {
    let _postfix = postfix_shared();
    let d = MailDaemon::start(MailConfig {
        gateway: NOBODY.into(),
        ..MailConfig::default()
    });
    let mut c = Checks::new("550 at RCPT");
    d.post_expect("/v1/clients", &person("rcpt550"), 201);
    d.post_expect("/v1/domains", &order("rcpt-550-test.ru", "rcpt550"), 202);
    let id = s(&d.get_ok("/v1/clients/rcpt550")["open_request"]);
    let r = d.wait_request(&id, &["Rejected", "Sent", "SendUnknown"], SEND_TIMEOUT);
    c.eq("request state", s(&r["state"]), "Rejected".into());
    let err = r["last_error"].as_str().unwrap_or_default().to_owned();
    c.check(err.contains("550"), || {
        format!("request last_error lacks 550: {err:?}")
    });
    let client = d.get_ok("/v1/clients/rcpt550");
    c.eq("client status", s(&client["status"]), "Error".into());
    let cerr = client["last_error"].as_str().unwrap_or_default().to_owned();
    c.check(cerr.contains("550") && cerr.contains(NOBODY), || {
        format!("client last_error lacks the server's reply: {cerr:?}")
    });
    let dom = d.get_ok("/v1/domains/rcpt-550-test.ru");
    c.eq("domain status", s(&dom["status"]), "Error".into());
    c.eq("domain phase", s(&dom["phase"]), "ClientFailed".into());
    c.check(
        dom["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("550")),
        || format!("domain last_error lacks 550: {}", dom["last_error"]),
    );
    let failed = d.log_of(&id, "request.send_failed");
    c.eq("request.send_failed entries", failed.len(), 1);
    if let Some(e) = failed.first() {
        c.check(s(&e["message"]).contains("550"), || {
            format!("send_failed message lacks 550: {e}")
        });
        c.check(
            e["evidence"]["server_reply"]
                .as_str()
                .is_some_and(|t| t.contains("550")),
            || format!("send_failed evidence lacks the server reply: {e}"),
        );
        c.check(
            e["evidence"]["message_copy"]
                .as_str()
                .is_some_and(|t| t.contains("password: ********")),
            || format!("send_failed evidence lacks the masked copy: {e}"),
        );
    }
    c.check(
        d.full_log().iter().any(|e| {
            e["action"] == "client.error"
                && e["message"].as_str().is_some_and(|m| m.contains("550"))
        }),
        || "no client.error log entry with the 550 reply".into(),
    );
    c.eq(
        "request.send_deferred entries (a 5xx is not retried)",
        d.log_of(&id, "request.send_deferred").len(),
        0,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mid = s(&r["message_id"]);
    c.eq(
        "copies at the BCC address",
        count(COPIES, &Search::message_id(&mid)),
        0,
    );
    c.eq("attempts", d.request(&id)["attempts"].as_u64(), Some(1));
    c.finish();
    d.assert_no_secrets();
}

/// (c) SIGKILL between the commit and the send: the request is in the outbox when the daemon
/// dies; after a restart exactly one copy arrives, with the Message-ID shown before the kill.
#[test]
fn sigkill_between_commit_and_send_delivers_exactly_one_copy() {
    let _exclusive = postfix_exclusive();
    let mut d = MailDaemon::start(MailConfig::default());
    d.post_expect("/v1/clients", &imported("kill", "KILL_1_1-GPT"), 201);
    let mut postfix = PostfixDown::stop();
    let dom = d.post_expect("/v1/domains", &order("sigkill-test.ru", "kill"), 202);
    let id = s(&dom["open_request"]["id"]);
    let mid = s(&dom["open_request"]["message_id"]);
    d.wait_until("a send attempt", Duration::from_secs(10), |d| {
        !deferred_times(d, &id).is_empty()
    });
    assert_eq!(d.request(&id)["state"], "Queued");
    assert_eq!(d.stats()["outbox"], 1);
    d.kill();
    postfix.start();
    d.restart();
    let r = d.wait_request(&id, &["Sent"], SEND_TIMEOUT);
    assert_eq!(
        s(&r["message_id"]),
        mid,
        "the Message-ID changed across the restart"
    );
    let n = settled_count(
        ROBOT,
        &Search::subject(&s(&r["token"])),
        MAIL_TIMEOUT,
        GRACE,
    );
    assert_eq!(n, 1, "copies in robot's INBOX after the restart");
    let m = fetch(ROBOT, &Search::subject(&s(&r["token"])));
    assert_eq!(m[0].header("Message-ID"), Some(mid.as_str()));
    assert_eq!(d.log_of(&id, "request.sent").len(), 1);
    d.assert_no_secrets();
}

/// (d) The link breaks after the message data was sent: SendUnknown (request and domain phase),
/// no automatic resend; an operator retry queues a new request.
#[test]
fn link_lost_after_data_is_send_unknown_and_retry_resends_the_same_request() {
    let fake = FakeSmtp::start();
    let d = MailDaemon::start(MailConfig {
        out: Out::Fake(fake.port),
        ..MailConfig::default()
    });
    let mut c = Checks::new("SendUnknown");
    d.post_expect("/v1/clients", &imported("unknown", "UNK_1_1-GPT"), 201);
    let dom = d.post_expect(
        "/v1/domains",
        &order("send-unknown-test.ru", "unknown"),
        202,
    );
    let id = s(&dom["open_request"]["id"]);
    let mid = s(&dom["open_request"]["message_id"]);
    let r = d.wait_request(&id, &["SendUnknown", "Sent", "Rejected"], SEND_TIMEOUT);
    c.eq("request state", s(&r["state"]), "SendUnknown".into());
    c.eq("attempts", r["attempts"].as_u64(), Some(1));
    c.check(r["last_error"].is_string(), || {
        format!("no last_error: {r}")
    });
    let dom = d.get_ok("/v1/domains/send-unknown-test.ru");
    c.eq("domain status", s(&dom["status"]), "Registering".into());
    c.eq("domain phase", s(&dom["phase"]), "SendUnknown".into());
    c.eq(
        "open request state",
        s(&dom["open_request"]["state"]),
        "SendUnknown".into(),
    );
    let listed: Vec<String> = d.get_ok("/v1/requests?state=SendUnknown")["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| s(&r["id"]))
        .collect();
    c.eq(
        "GET /v1/requests?state=SendUnknown",
        listed,
        vec![id.clone()],
    );
    let e = d.log_of(&id, "request.send_unknown");
    c.eq("request.send_unknown entries", e.len(), 1);
    c.check(
        e.first()
            .and_then(|e| e["evidence"]["message_copy"].as_str())
            .is_some_and(|t| t.contains("password: ********")),
        || format!("send_unknown evidence lacks the masked copy: {e:?}"),
    );
    // The server did get the whole message.
    let got = fake.received();
    c.eq("messages the server received", got.len(), 1);
    if let Some(m) = got.first() {
        let t = String::from_utf8_lossy(m);
        c.check(t.contains(&format!("Message-ID: {mid}\r\n")), || {
            format!("the message the server got lacks Message-ID {mid}")
        });
        c.check(
            t.contains(&format!("password: {REGISTRAR_PASSWORD}\r\n")),
            || "the message the server got lacks the password".into(),
        );
    }
    // No automatic resend of a message that may have gone.
    std::thread::sleep(Duration::from_millis(2500));
    c.eq("messages after 2.5 s", fake.received().len(), 1);
    c.eq(
        "state after 2.5 s",
        s(&d.request(&id)["state"]),
        "SendUnknown".into(),
    );

    // The operator retries: the same request is queued again (the same e-mail, the same
    // Message-ID, since the first copy may have arrived) and sent again.
    let (st, v) = d.post(&format!("/v1/requests/{id}/retry"), &json!({}));
    c.eq("retry status", st, 202);
    let new = v["new_request"].clone();
    c.check(new.is_object(), || {
        format!("retry answered no request: {v}")
    });
    let new_id = new["id"].as_str().unwrap_or_default().to_owned();
    c.eq("retried request id", new_id.as_str(), id.as_str());
    c.eq("retried request state", s(&new["state"]), "Queued".into());
    c.eq(
        "domain's open request after retry",
        d.get_ok("/v1/domains/send-unknown-test.ru")["open_request"]["id"]
            .as_str()
            .map(str::to_owned),
        Some(new_id.clone()),
    );
    if !new_id.is_empty() {
        let r2 = d.wait_request(&new_id, &["SendUnknown", "Sent", "Rejected"], SEND_TIMEOUT);
        c.eq(
            "retried request state",
            s(&r2["state"]),
            "SendUnknown".into(),
        );
        c.eq(
            "messages the server received after the retry",
            fake.received().len(),
            2,
        );
    }
    c.finish();
    d.assert_no_secrets();
}

/// Issue 4: "a connection lost after the message data was sent but before the server's reply
/// marks the request SendUnknown, and the resend reuses the Message-ID" (so the registrar and
/// our correlation can recognise the same message). ARCHITECTURE.md instead gives every retry a
/// new Message-ID.
#[test]
fn resend_after_send_unknown_reuses_the_message_id() {
    let fake = FakeSmtp::start();
    let d = MailDaemon::start(MailConfig {
        out: Out::Fake(fake.port),
        ..MailConfig::default()
    });
    d.post_expect("/v1/clients", &imported("unknown2", "UNK_2_1-GPT"), 201);
    let dom = d.post_expect(
        "/v1/domains",
        &order("send-unknown-2-test.ru", "unknown2"),
        202,
    );
    let id = s(&dom["open_request"]["id"]);
    let mid = s(&dom["open_request"]["message_id"]);
    d.wait_request(&id, &["SendUnknown"], SEND_TIMEOUT);
    let v = d.post_expect(&format!("/v1/requests/{id}/retry"), &json!({}), 202);
    let new_id = s(&v["new_request"]["id"]);
    d.wait_request(&new_id, &["SendUnknown"], SEND_TIMEOUT);
    let got = fake.received();
    let ids: Vec<String> = got
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_owned))
        })
        .collect();
    assert_eq!(
        ids,
        vec![mid.clone(), mid.clone()],
        "the resend of a SendUnknown request carries another Message-ID (new request {new_id}: {})",
        v["new_request"]["message_id"]
    );
}

/// A 4xx answer to the end of the data: nothing was accepted, so the request stays Queued and
/// goes again after the backoff, as the very same message (same bytes, same Message-ID).
#[test]
fn transient_4xx_after_data_is_retried_as_the_identical_message() {
    let fake = FakeSmtp::start_with(FakeScript {
        eight_bit_mime: true,
        after_data: vec![
            Some("451 4.3.0 Temporary lookup failure".into()),
            Some("250 2.0.0 Ok: queued as FAKE1".into()),
        ],
    });
    let d = MailDaemon::start(MailConfig {
        out: Out::Fake(fake.port),
        ..MailConfig::default()
    });
    d.post_expect("/v1/clients", &imported("t451", "T451_1_1-GPT"), 201);
    let dom = d.post_expect("/v1/domains", &order("transient-451-test.ru", "t451"), 202);
    let id = s(&dom["open_request"]["id"]);
    let mid = s(&dom["open_request"]["message_id"]);
    let r = d.wait_request(&id, &["Sent", "Rejected", "SendUnknown"], SEND_TIMEOUT);
    assert_eq!(r["state"], "Sent", "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    let deferred = d.log_of(&id, "request.send_deferred");
    assert_eq!(deferred.len(), 1, "{deferred:?}");
    assert!(
        s(&deferred[0]["message"]).contains("451"),
        "the deferral does not carry the server's 451: {}",
        deferred[0]
    );
    let got = fake.received();
    assert_eq!(
        got.len(),
        2,
        "the server should have seen the message twice"
    );
    assert_eq!(
        String::from_utf8_lossy(&got[0]),
        String::from_utf8_lossy(&got[1]),
        "the resend is not the same message byte for byte"
    );
    assert!(String::from_utf8_lossy(&got[1]).contains(&format!("Message-ID: {mid}\r\n")));
    let sent = d.log_of(&id, "request.sent");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]["evidence"]["server_reply"]
            .as_str()
            .is_some_and(|t| t.contains("queued as FAKE1")),
        "request.sent lacks the server's reply: {}",
        sent[0]
    );
    d.assert_no_secrets();
}

/// R01's requests are 8-bit: a server that does not offer 8BITMIME gets nothing (no downgrade
/// to quoted-printable or base64); the request waits, and the log says why.
#[test]
fn server_without_8bitmime_gets_no_message() {
    let fake = FakeSmtp::start_with(FakeScript {
        eight_bit_mime: false,
        after_data: vec![Some("250 2.0.0 Ok".into())],
    });
    let d = MailDaemon::start(MailConfig {
        out: Out::Fake(fake.port),
        ..MailConfig::default()
    });
    d.post_expect("/v1/clients", &imported("no8bit", "NO8_1_1-GPT"), 201);
    let dom = d.post_expect("/v1/domains", &order("no-8bitmime-test.ru", "no8bit"), 202);
    let id = s(&dom["open_request"]["id"]);
    d.wait_until(
        "2 request.send_deferred entries",
        Duration::from_secs(10),
        |d| deferred_times(d, &id).len() >= 2,
    );
    let r = d.request(&id);
    assert_eq!(r["state"], "Queued", "{r}");
    for e in d.log_of(&id, "request.send_deferred") {
        assert!(s(&e["message"]).contains("8BITMIME"), "{e}");
    }
    assert!(fake.received().is_empty(), "the server got a message");
    let cmds = fake.commands.lock().expect("commands").clone();
    assert!(
        !cmds
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("MAIL")),
        "a transaction was started: {cmds:?}"
    );
}

// ---- 6: secrets -------------------------------------------------------------------------------

#[test]
fn secrets_appear_nowhere_but_in_the_sent_request() {
    let _postfix = postfix_shared();
    let d = MailDaemon::start(MailConfig {
        log_filter: "debug".into(),
        ..MailConfig::default()
    });
    let mut c = Checks::new("secrets");
    d.post_expect("/v1/clients", &person("sec"), 201);
    d.post_expect("/v1/domains", &order("secrets-test.ru", "sec"), 202);
    let cid = s(&d.get_ok("/v1/clients/sec")["open_request"]);
    let creq = d.wait_request(&cid, &["Sent"], SEND_TIMEOUT);
    let handle = s(&creq["handle"]);
    // The password does go to the registrar: it is what R01 needs.
    let mail = &wait_for_mail(ROBOT, &Search::subject(&s(&creq["token"])), 1, MAIL_TIMEOUT)[0];
    c.check(
        String::from_utf8_lossy(&mail.body)
            .contains(&format!("\r\npassword: {REGISTRAR_PASSWORD}\r\n")),
        || "the sent request lacks the real password".into(),
    );
    d.post_expect(
        &format!("/v1/requests/{cid}/outcome"),
        &json!({"event": "completed", "handle": handle, "note": "test"}),
        200,
    );
    let did = s(&d.get_ok("/v1/domains/secrets-test.ru")["open_request"]["id"]);
    d.wait_request(&did, &["Sent"], SEND_TIMEOUT);

    // Previews: API and CLI, by request and by domain; all masked.
    for id in [&cid, &did] {
        let t = d.get_text(&format!("/v1/requests/{id}/render"));
        c.check(t.contains("\npassword: ********\n"), || {
            format!("GET /v1/requests/{id}/render does not mask the password:\n{t}")
        });
        let out = d.cli(&["render", "--request", id]);
        c.eq(&format!("regmail render --request {id}: exit"), out.code, 0);
        c.check(out.stdout.contains("\npassword: ********\n"), || {
            format!(
                "regmail render --request {id} does not show the mask:\n{}",
                out.stdout
            )
        });
        for text in [&out.stdout, &out.stderr] {
            c.check(!text.contains(REGISTRAR_PASSWORD), || {
                format!("regmail render --request {id} shows the password")
            });
        }
    }
    let out = d.cli(&["render", "--domain", "secrets-test.ru"]);
    c.eq("regmail render --domain: exit", out.code, 0);
    c.check(
        out.stdout.contains("\npassword: ********\n") && !out.stdout.contains(REGISTRAR_PASSWORD),
        || {
            format!(
                "regmail render --domain output:\n{}{}",
                out.stdout, out.stderr
            )
        },
    );
    let out = d.cli(&["--json", "log"]);
    c.check(
        !out.stdout.contains(REGISTRAR_PASSWORD) && !out.stderr.contains(REGISTRAR_PASSWORD),
        || "regmail log shows the password".into(),
    );
    // Every logged copy of a request is masked.
    let copies: Vec<String> = d
        .full_log()
        .iter()
        .filter_map(|e| e["evidence"]["message_copy"].as_str().map(str::to_owned))
        .collect();
    c.eq("logged request copies", copies.len(), 2);
    c.check(
        copies.iter().all(|t| t.contains("\npassword: ********\n")),
        || format!("a logged copy is not masked: {copies:?}"),
    );
    // The debug log really ran (so the search below searched something).
    let log = d.stderr();
    c.check(log.contains("DEBUG"), || {
        "no DEBUG line in the daemon's stderr".into()
    });
    c.check(log.contains("request sent"), || {
        "no \"request sent\" line in stderr".into()
    });
    for leak in d.secret_leaks() {
        c.check(false, || leak);
    }
    c.finish();
}

// ---- 7: the dir transport ---------------------------------------------------------------------

#[test]
fn dir_transport_writes_the_same_message_format() {
    let d = MailDaemon::start(MailConfig {
        out: Out::Dir,
        ..MailConfig::default()
    });
    let mut c = Checks::new("dir transport");
    d.post_expect("/v1/clients", &person("snap-person"), 201);
    d.post_expect("/v1/domains", &snapshot_order("snap-person"), 202);
    let id = s(&d.get_ok("/v1/clients/snap-person")["open_request"]);
    let req = d.wait_request(&id, &["Sent"], SEND_TIMEOUT);
    let path = d.outbox_dir().join(format!("{}.eml", s(&req["token"])));
    let raw = support_mail::read_bytes(&path);
    let mail = Mail::parse(raw);
    c.check(mail.trace.is_empty(), || {
        format!("trace fields in a written file: {:?}", mail.trace)
    });
    c.check(mail.sent.ends_with(b"\r\n#[TEMPLATES END]#\r\n"), || {
        format!(
            "the .eml does not end with the terminator line: {:?}",
            String::from_utf8_lossy(&mail.sent[mail.sent.len().saturating_sub(30)..])
        )
    });
    let handle = s(&req["handle"]);
    check_message(
        &mut c,
        &mail,
        &Expect {
            req: &req,
            charset: "koi8-r",
            snapshot: "person-client",
            handle: Some(&handle),
            to_mailbox: ROBOT,
        },
    );
    let names: Vec<String> = std::fs::read_dir(d.outbox_dir())
        .expect("outbox dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    c.eq("files in the outbox directory", names.len(), 1);
    c.finish();

    // pay_type and windows-1251 through the same transport: the optional pay-type line sits
    // between action and agreement.
    let d = MailDaemon::start(MailConfig {
        out: Out::Dir,
        charset: Some("windows-1251".into()),
        pay_type: Some("real,bonus".into()),
        ..MailConfig::default()
    });
    d.post_expect("/v1/clients", &imported("pay", "PAY_1_1-GPT"), 201);
    let dom = d.post_expect("/v1/domains", &order("pay-type-test.ru", "pay"), 202);
    let req = d.wait_request(&s(&dom["open_request"]["id"]), &["Sent"], SEND_TIMEOUT);
    let mail = Mail::parse(support_mail::read_bytes(
        &d.outbox_dir().join(format!("{}.eml", s(&req["token"]))),
    ));
    assert_eq!(
        mail.header("Content-Type"),
        Some("text/plain; charset=windows-1251")
    );
    let (body, _, bad) = encoding_rs::WINDOWS_1251.decode(&mail.body);
    assert!(!bad);
    let head: Vec<&str> = body.split("\r\n").take(5).collect();
    assert_eq!(
        head,
        [
            "action: NEW",
            "pay-type: real,bonus",
            &format!("agreement: {AGREEMENT}"),
            &format!("password: {REGISTRAR_PASSWORD}"),
            ""
        ]
    );
}
