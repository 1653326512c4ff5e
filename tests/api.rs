//! The HTTP API over real HTTP against the real `regmail serve` binary (see tests/common).

mod common;

use common::*;
use serde_json::{Value, json};

// ---- helpers ----------------------------------------------------------------------------------

/// Asserts an error answer: the status, the stable shape `{"error":{code,field,message}}`, and
/// the field at fault.
#[track_caller]
fn assert_error(what: &str, got: (u16, Value), status: u16, field: &str) {
    let (s, v) = got;
    assert_eq!(s, status, "{what}: status; answer {v}");
    let e = &v["error"];
    assert_eq!(e["field"], json!(field), "{what}: field; answer {v}");
    assert!(
        e["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{what}: no error code in {v}"
    );
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no error message in {v}"
    );
}

/// The status and phase of a domain.
fn status_of(d: &Daemon, domain: &str) -> (String, String) {
    let v = d.get_ok(&format!("/v1/domains/{}", enc(domain)));
    (
        v["status"].as_str().unwrap_or_default().to_owned(),
        v["phase"].as_str().unwrap_or_default().to_owned(),
    )
}

fn client(d: &Daemon, id: &str) -> Value {
    d.get_ok(&format!("/v1/clients/{id}"))
}

fn domain(d: &Daemon, name: &str) -> Value {
    d.get_ok(&format!("/v1/domains/{}", enc(name)))
}

fn request(d: &Daemon, id: &str) -> Value {
    d.get_ok(&format!("/v1/requests/{id}"))
}

fn entries(v: &Value) -> Vec<Value> {
    v["entries"].as_array().cloned().unwrap_or_default()
}

fn domain_log(d: &Daemon, name: &str) -> Vec<Value> {
    entries(&d.get_ok(&format!("/v1/domains/{}/log?limit=1000", enc(name))))
}

fn outcome(d: &Daemon, request_id: &str, body: Value) -> Value {
    d.post_expect(&format!("/v1/requests/{request_id}/outcome"), &body, 200)
}

fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// Checks that the domain's `domain.*` log entries form an unbroken chain of status changes:
/// each entry's `status_before` is the previous entry's `status_after` (the first has none),
/// every entry names its actor, and the chain ends in the domain's current `status/phase`.
/// Returns the `status_after` values in order.
#[track_caller]
fn assert_status_chain(d: &Daemon, name: &str) -> Vec<String> {
    let v = domain(d, name);
    let now = format!(
        "{}/{}",
        v["status"].as_str().unwrap(),
        v["phase"].as_str().unwrap()
    );
    let ascii = v["domain"].as_str().unwrap().to_owned();
    let mut prev: Option<String> = None;
    let mut afters = Vec::new();
    for e in domain_log(d, name) {
        if !e["action"]
            .as_str()
            .unwrap_or_default()
            .starts_with("domain.")
        {
            continue;
        }
        assert_eq!(e["domain"], json!(ascii), "entry in the wrong log: {e}");
        assert!(
            ["api", "operator", "registrar", "outbox", "scheduler"]
                .contains(&e["actor"].as_str().unwrap_or_default()),
            "entry without a known actor: {e}"
        );
        let before = e["status_before"].as_str().map(str::to_owned);
        assert_eq!(
            before, prev,
            "status change not continuous: {e} does not follow {prev:?}"
        );
        let after = e["status_after"]
            .as_str()
            .unwrap_or_else(|| panic!("domain entry without status_after: {e}"))
            .to_owned();
        afters.push(after.clone());
        prev = Some(after);
    }
    assert_eq!(
        prev.as_deref(),
        Some(now.as_str()),
        "the log of {name} does not end in its current status"
    );
    afters
}

/// Creates `id` as an imported (Registered) client.
fn imported_client(d: &Daemon, id: &str) {
    d.post_expect("/v1/clients", &imported(id, &format!("H{id}_1_1-GPT")), 201);
}

/// The id of the domain's open request.
fn open_request(d: &Daemon, name: &str) -> String {
    let v = domain(d, name);
    v["open_request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no open request: {v}"))
        .to_owned()
}

// ---- auth -------------------------------------------------------------------------------------

#[test]
fn healthz_needs_no_token_but_the_api_refuses_a_missing_or_wrong_one() {
    let d = Daemon::start();
    let r = d.call("GET", "/healthz", &[], Body::None, false);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "ok");

    let wrong = format!("Bearer {}", random_token());
    let bare = d.token.clone();
    let endpoints = [
        ("GET", "/v1/stats"),
        ("GET", "/v1/log"),
        ("GET", "/v1/domains"),
        ("GET", "/v1/domains/example.ru"),
        ("POST", "/v1/clients"),
        ("POST", "/v1/domains"),
        ("POST", "/v1/domains/example.ru/payment"),
    ];
    let body = person("sneaky");
    for (method, path) in endpoints {
        for (label, headers) in [
            ("no token", vec![]),
            ("wrong token", vec![("Authorization", wrong.as_str())]),
            (
                "token without Bearer",
                vec![("Authorization", bare.as_str())],
            ),
        ] {
            let r = d.call(method, path, &headers, Body::Json(&body), false);
            assert_error(
                &format!("{method} {path} with {label}"),
                (r.status, r.json()),
                401,
                "Authorization",
            );
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer")),
                "401 without WWW-Authenticate: Bearer: {r:?}"
            );
        }
    }
    // The refused create changed nothing.
    assert_error(
        "client created without a token",
        d.get("/v1/clients/sneaky"),
        404,
        "id",
    );
    assert_eq!(d.stats()["log_seq"], 0);
    // The right token works, and the token never reaches the daemon's log (DESIGN.md inv. 7).
    d.get_ok("/v1/stats");
    assert!(
        !d.stderr().contains(&d.token),
        "the API token is in the log"
    );
}

/// RFC 9110 §11.1: the authentication scheme is a case-insensitive token, so "bearer <token>"
/// is the same credential as "Bearer <token>".
#[test]
fn auth_scheme_is_case_insensitive() {
    let d = Daemon::start();
    for scheme in ["bearer", "BEARER"] {
        let h = format!("{scheme} {}", d.token);
        let r = d.call(
            "GET",
            "/v1/stats",
            &[("Authorization", h.as_str())],
            Body::None,
            false,
        );
        assert_eq!(r.status, 200, "scheme {scheme:?} refused: {r:?}");
    }
}

// ---- clients ----------------------------------------------------------------------------------

#[test]
fn clients_are_created_once_and_the_same_id_with_other_data_conflicts() {
    let d = Daemon::start();
    let first = d.post_expect("/v1/clients", &person("alice"), 201);
    assert_eq!(first["id"], "alice");
    assert_eq!(first["status"], "Unregistered");
    assert_eq!(first["handle"], Value::Null);
    assert_eq!(first["registrant"]["type"], "person");
    assert_eq!(first["registrant"]["fio_en"], "Ivan I Ivanov");
    // Without a contact the registrant's data is the contact.
    assert_eq!(first["contact"]["email"], "ivanov@example.com");

    // The same body again is the same client: 200 and the very same record.
    let again = d.post_expect("/v1/clients", &person("alice"), 200);
    assert_eq!(again, first);
    let seq = d.stats()["log_seq"].clone();

    // The same id with other data is a conflict, and the first data stays.
    let mut other = person("alice");
    other["registrant"]["phone"] = json!("+7 812 7654321");
    assert_error(
        "same id, other body",
        d.post("/v1/clients", &other),
        409,
        "id",
    );
    assert_eq!(client(&d, "alice"), first);
    assert_eq!(d.stats()["log_seq"], seq);

    // An organization.
    let org = d.post_expect("/v1/clients", &organization("romashka"), 201);
    assert_eq!(org["registrant"]["type"], "organization");
    assert_eq!(org["registrant"]["inn"], "7701234567");
    assert_eq!(org["contact"]["name"], "Petr Petrov");
    assert_eq!(org["status"], "Unregistered");

    // An import with a handle the registrar already knows starts Registered.
    let bob = d.post_expect("/v1/clients", &imported("bob", "BOB_7_3-GPT"), 201);
    assert_eq!(bob["status"], "Registered");
    assert_eq!(bob["handle"], "BOB_7_3-GPT");
    assert_eq!(client(&d, "bob"), bob);
    d.post_expect("/v1/clients", &imported("bob", "BOB_7_3-GPT"), 200);
    assert_error(
        "import under another handle",
        d.post("/v1/clients", &imported("bob", "BOB_8_3-GPT")),
        409,
        "id",
    );

    assert_error("unknown client", d.get("/v1/clients/nobody"), 404, "id");

    let log = entries(&d.get_ok("/v1/clients/alice/log"));
    let actions: Vec<&str> = log.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["client.created"], "{log:?}");
    let log = entries(&d.get_ok("/v1/clients/bob/log"));
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "client.imported");
    assert_eq!(log[0]["status_after"], "Registered");
}

// ---- orders -----------------------------------------------------------------------------------

/// The request's message in the outbox directory carries its Message-ID and token.
#[track_caller]
fn assert_mail_of(d: &Daemon, r: &Value, subject_part: &str) {
    let mail = d.mail_of(r);
    let mid = r["message_id"].as_str().unwrap();
    assert!(
        mail.lines().any(|l| l == format!("Message-ID: {mid}")),
        "no Message-ID {mid} in {mail}"
    );
    let subject = mail
        .lines()
        .find(|l| l.starts_with("Subject:"))
        .unwrap_or_else(|| panic!("no Subject in {mail}"));
    assert!(
        subject.contains(r["token"].as_str().unwrap()),
        "no token in {subject}"
    );
    assert!(
        subject.contains(subject_part),
        "{subject} lacks {subject_part:?}"
    );
}

/// The total number of requests, whatever their state.
fn request_total(d: &Daemon) -> u64 {
    d.stats()["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum()
}

#[test]
fn unpaid_order_sends_nothing_until_payment_queues_the_client_request() {
    let d = Daemon::start();
    d.post_expect("/v1/clients", &person("c1"), 201);
    let v = d.post_expect("/v1/domains", &order("shop.ru", "c1", false), 202);
    assert_eq!(v["domain"], "shop.ru");
    assert_eq!(v["status"], "AwaitingPayment");
    assert_eq!(v["phase"], "WaitingForPayment");
    assert_eq!(v["paid"], false);
    assert_eq!(v["open_request"], Value::Null);
    assert_eq!(v["order_id"], "ord-shop.ru");
    assert_eq!(
        v["nameservers"],
        json!(["ns1.hoster.example", "ns2.hoster.example"])
    );

    let stats = d.stats();
    assert_eq!(stats["outbox"], 0, "{stats}");
    assert_eq!(request_total(&d), 0, "{stats}");
    assert_eq!(count(&stats, "domains", "AwaitingPayment"), 1);
    assert!(d.requests_in("Queued").is_empty());
    assert_eq!(client(&d, "c1")["status"], "Unregistered");
    assert!(d.sent_mail().is_empty());

    // Payment: the client is unknown to the registrar, so its registration goes first.
    let v = d.post_expect("/v1/domains/shop.ru/payment", &json!({}), 200);
    assert_eq!(v["status"], "Registering");
    assert_eq!(v["phase"], "WaitingForClient");
    assert_eq!(v["paid"], true);
    let c = client(&d, "c1");
    assert_eq!(c["status"], "Registering");
    let rid = c["open_request"]
        .as_str()
        .expect("client request")
        .to_owned();
    let r = request(&d, &rid);
    assert_eq!(r["kind"], "client-registration");
    assert_eq!(r["client_id"], "c1");
    assert_eq!(r["domain"], Value::Null);
    let handle = r["handle"].as_str().unwrap().to_owned();
    assert!(handle.ends_with("-GPT"), "{r}");
    assert_eq!(request_total(&d), 1);
    // It was queued (the log says so) and the outbox worker sends it.
    let log = entries(&d.get_ok(&format!("/v1/requests/{rid}/log")));
    assert_eq!(log[0]["action"], "request.queued", "{log:?}");
    assert_eq!(log[0]["status_after"], "Queued");
    let r = d.wait_request(&rid, "Sent");
    assert_eq!(r["attempts"], 1);
    assert!(r["reply_deadline"].is_string());
    assert_mail_of(&d, &r, &handle);
    assert_eq!(d.sent_mail().len(), 1);
    let stats = d.stats();
    assert_eq!(stats["outbox"], 0);
    assert_eq!(stats["awaiting_reply"], 1);
    assert_eq!(count(&stats, "domains", "AwaitingPayment"), 0);
    assert_eq!(count(&stats, "domains", "Registering"), 1);
    assert_eq!(status_of(&d, "shop.ru").1, "WaitingForClient");

    // Paying again is a replay: nothing changes.
    let v2 = d.post_expect("/v1/domains/shop.ru/payment", &json!({}), 200);
    assert_eq!(v2, domain(&d, "shop.ru"));
    assert_eq!(d.stats(), stats);
    assert_eq!(d.sent_mail().len(), 1);
}

#[test]
fn paid_order_for_a_registered_client_queues_the_domain_request_at_once() {
    let d = Daemon::start();
    imported_client(&d, "imp");
    let mut body = order("fast.ru", "imp", true);
    body["years"] = json!(3);
    let v = d.post_expect("/v1/domains", &body, 202);
    assert_eq!(v["status"], "Registering");
    // The outbox worker may already have sent it by the time the answer is read.
    assert!(
        ["RequestQueued", "RequestSent"].contains(&v["phase"].as_str().unwrap()),
        "{v}"
    );
    let r = &v["open_request"];
    assert_eq!(r["kind"], "domain-registration");
    assert!(
        ["Queued", "Sent"].contains(&r["state"].as_str().unwrap()),
        "{r}"
    );
    assert_eq!(r["domain"], "fast.ru");
    assert_eq!(r["years"], 3);
    assert_eq!(r["client_id"], "imp");
    assert_eq!(request_total(&d), 1);
    let rid = r["id"].as_str().unwrap();
    let r = d.wait_request(rid, "Sent");
    assert_mail_of(&d, &r, "fast.ru");
    assert_eq!(status_of(&d, "fast.ru").1, "RequestSent");
    // The client needed no registration.
    assert_eq!(client(&d, "imp")["status"], "Registered");
    let stats = d.stats();
    assert_eq!(stats["outbox"], 0);
    assert_eq!(stats["awaiting_reply"], 1);
}

#[test]
fn idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let d = Daemon::start();
    imported_client(&d, "idem");
    let body = order("idem.ru", "idem", false);
    let raw = serde_json::to_vec(&body).unwrap();
    let key = [("Idempotency-Key", "order-4711")];

    let first = d.call("POST", "/v1/domains", &key, Body::Raw(&raw), true);
    assert_eq!(first.status, 202, "{first:?}");
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(first.json()["status"], "AwaitingPayment");
    let stats = d.stats();

    let second = d.call("POST", "/v1/domains", &key, Body::Raw(&raw), true);
    assert_eq!(second.status, 202, "{second:?}");
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        second.text, first.text,
        "the replay differs from the first answer"
    );
    assert_eq!(d.stats(), stats, "a replay changed the store");

    // The same body with its keys in another order and other white space is the same body.
    let reordered = r#"{ "paid": false, "order_id": "ord-idem.ru",
        "nameservers": ["ns1.hoster.example", "ns2.hoster.example"],
        "years": 1, "client_id": "idem", "domain": "idem.ru" }"#;
    let third = d.call(
        "POST",
        "/v1/domains",
        &key,
        Body::Raw(reordered.as_bytes()),
        true,
    );
    assert_eq!(third.status, 202, "{third:?}");
    assert_eq!(third.text, first.text);

    // Same key, other body.
    let mut other = body.clone();
    other["order_id"] = json!("another-order");
    let r = d.call("POST", "/v1/domains", &key, Body::Json(&other), true);
    assert_error(
        "same key, other body",
        (r.status, r.json()),
        409,
        "Idempotency-Key",
    );
    // A second active order for the same domain, without a key or with a new key.
    assert_error(
        "second order without key",
        d.post("/v1/domains", &body),
        409,
        "domain",
    );
    let r = d.call(
        "POST",
        "/v1/domains",
        &[("Idempotency-Key", "order-4712")],
        Body::Json(&body),
        true,
    );
    assert_error(
        "second order with a new key",
        (r.status, r.json()),
        409,
        "domain",
    );
    assert_eq!(d.stats(), stats, "a refused order changed the store");

    // The replay is the FIRST answer even after the domain moved on, and queues nothing.
    d.post_expect("/v1/domains/idem.ru/payment", &json!({}), 200);
    d.settle();
    let later = d.call("POST", "/v1/domains", &key, Body::Raw(&raw), true);
    assert_eq!(later.status, 202);
    assert_eq!(later.text, first.text);
    assert_eq!(status_of(&d, "idem.ru").1, "RequestSent");
    assert_eq!(request_total(&d), 1, "the replay queued again");
    assert_eq!(d.stats()["outbox"], 0, "the replay queued again");
}

#[test]
fn idn_order_is_stored_in_punycode_and_found_by_either_form() {
    let d = Daemon::start();
    imported_client(&d, "idn");
    let v = d.post_expect("/v1/domains", &order("пример.рф", "idn", true), 202);
    assert_eq!(v["domain"], "xn--e1afmkfd.xn--p1ai");
    assert_eq!(v["domain_unicode"], "пример.рф");
    assert_eq!(v["open_request"]["domain"], "xn--e1afmkfd.xn--p1ai");
    for form in [
        "пример.рф",
        "xn--e1afmkfd.xn--p1ai",
        "ПРИМЕР.РФ",
        "XN--E1AFMKFD.XN--P1AI.",
    ] {
        let got = domain(&d, form);
        assert_eq!(got["domain"], "xn--e1afmkfd.xn--p1ai", "by {form}");
        assert_eq!(got["created"], v["created"], "by {form}");
    }
    // The other form of the same name is the same domain.
    assert_error(
        "punycode order of an ordered IDN",
        d.post("/v1/domains", &order("xn--e1afmkfd.xn--p1ai", "idn", true)),
        409,
        "domain",
    );
    d.settle();
    let list = d.get_ok("/v1/domains");
    assert_eq!(list["domains"][0]["domain"], "xn--e1afmkfd.xn--p1ai");
    assert_eq!(list["domains"][0]["domain_unicode"], "пример.рф");
    assert_eq!(
        domain_log(&d, "пример.рф"),
        domain_log(&d, "xn--e1afmkfd.xn--p1ai")
    );
    assert!(!domain_log(&d, "пример.рф").is_empty());
    let out = d.cli(&["status", "пример.рф"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("пример.рф (xn--e1afmkfd.xn--p1ai)"),
        "{out:?}"
    );
}

// ---- the whole flow, driven by the operator endpoint -------------------------------------------

#[test]
fn client_then_domain_registration_then_renewal_through_recorded_outcomes() {
    let d = Daemon::start();
    d.post_expect("/v1/clients", &person("flow"), 201);
    d.post_expect("/v1/domains", &order("flow.ru", "flow", true), 202);
    let creq = client(&d, "flow")["open_request"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_request(&creq, "Sent");

    // The registrar queues the client request.
    let r = outcome(
        &d,
        &creq,
        json!({"event":"acknowledged","task_id":"123","note":"seen in the R01 panel"}),
    );
    assert_eq!(r["state"], "Acknowledged");
    assert_eq!(r["task_id"], "123");
    assert!(r["reply_deadline"].is_string(), "{r}");
    let stats = d.stats();
    assert_eq!(stats["outbox"], 0);
    assert_eq!(stats["awaiting_reply"], 1);
    assert_eq!(status_of(&d, "flow.ru").1, "WaitingForClient");

    // The registrar registers the client: the waiting domain's request is queued.
    let r = outcome(
        &d,
        &creq,
        json!({"event":"completed","handle":"FLOW_1_1-GPT","note":"mail from R01"}),
    );
    assert_eq!(r["state"], "Completed");
    assert_eq!(r["reply_deadline"], Value::Null);
    let c = client(&d, "flow");
    assert_eq!(c["status"], "Registered");
    assert_eq!(c["handle"], "FLOW_1_1-GPT");
    let dv = domain(&d, "flow.ru");
    assert_eq!(dv["status"], "Registering");
    assert_eq!(dv["open_request"]["kind"], "domain-registration");
    let dreq = dv["open_request"]["id"].as_str().unwrap().to_owned();
    let r = d.wait_request(&dreq, "Sent");
    assert_mail_of(&d, &r, "flow.ru");
    assert_eq!(status_of(&d, "flow.ru").1, "RequestSent");
    assert_eq!(d.stats()["awaiting_reply"], 1);

    // The domain request: acknowledged, then completed.
    outcome(
        &d,
        &dreq,
        json!({"event":"acknowledged","task_id":"124","note":"n"}),
    );
    assert_eq!(
        status_of(&d, "flow.ru"),
        ("Registering".into(), "QueuedAtRegistrar".into())
    );
    outcome(
        &d,
        &dreq,
        json!({"event":"completed","expires":"2027-11-23","note":"registered and delegated"}),
    );
    let dv = domain(&d, "flow.ru");
    assert_eq!(dv["status"], "Registered");
    assert_eq!(dv["phase"], "Done");
    assert_eq!(dv["expires"], "2027-11-23");
    assert_eq!(dv["open_request"], Value::Null);
    assert_eq!(request(&d, &dreq)["state"], "Completed");
    assert_eq!(d.stats()["awaiting_reply"], 0);

    // A repeated answer is logged only.
    let seq = d.stats()["log_seq"].as_u64().unwrap();
    let r = outcome(
        &d,
        &dreq,
        json!({"event":"completed","expires":"2027-11-23","note":"duplicate"}),
    );
    assert_eq!(r["state"], "Completed");
    assert_eq!(domain(&d, "flow.ru")["expires"], "2027-11-23");
    let log = entries(&d.get_ok(&format!("/v1/log?since={seq}")));
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["action"], "reply.ignored");

    // .ru cannot be renewed a year before expiry.
    let before = d.stats();
    assert_error(
        "renewal a year early",
        d.post("/v1/domains/flow.ru/renew", &json!({"years": 1})),
        409,
        "domain",
    );
    assert_eq!(d.stats(), before);
    assert_eq!(status_of(&d, "flow.ru").0, "Registered");

    // Expiry near (an operator corrects it): renewal goes out and completes with a new expiry.
    let near = today().checked_add(jiff::Span::new().days(30)).unwrap();
    let v = d.post_expect(
        "/v1/domains/flow.ru/resolve",
        &json!({"outcome":"registered","expires": near.to_string(),"note":"expiry checked at R01"}),
        200,
    );
    assert_eq!(v["expires"], json!(near.to_string()));
    let v = d.post_expect("/v1/domains/flow.ru/renew", &json!({"years": 1}), 202);
    assert_eq!(v["status"], "Renewing");
    assert_eq!(v["open_request"]["kind"], "domain-renewal");
    assert_eq!(v["open_request"]["years"], 1);
    let rreq = v["open_request"]["id"].as_str().unwrap().to_owned();
    let r = d.wait_request(&rreq, "Sent");
    assert_mail_of(&d, &r, "flow.ru");
    outcome(&d, &rreq, json!({"event":"acknowledged","note":"queued"}));
    outcome(&d, &rreq, json!({"event":"completed","note":"prolonged"}));
    let dv = domain(&d, "flow.ru");
    assert_eq!(dv["status"], "Registered");
    let expected = near.checked_add(jiff::Span::new().years(1)).unwrap();
    assert_eq!(dv["expires"], json!(expected.to_string()));

    // A TLD without R01's window renews at any time.
    d.post_expect("/v1/domains", &order("flow.com", "flow", true), 202);
    let req = open_request(&d, "flow.com");
    d.wait_request(&req, "Sent");
    outcome(
        &d,
        &req,
        json!({"event":"completed","expires":"2030-05-05","note":"done"}),
    );
    let v = d.post_expect("/v1/domains/flow.com/renew", &json!({"years": 2}), 202);
    assert_eq!(v["status"], "Renewing");
    assert_eq!(v["open_request"]["years"], 2);
    let req = v["open_request"]["id"].as_str().unwrap().to_owned();
    d.wait_request(&req, "Sent");
    outcome(
        &d,
        &req,
        json!({"event":"completed","expires":"2032-05-05","note":"done"}),
    );
    assert_eq!(domain(&d, "flow.com")["expires"], "2032-05-05");

    let afters = assert_status_chain(&d, "flow.ru");
    assert_eq!(
        afters,
        [
            "Registering/WaitingForClient",
            "Registering/RequestQueued",
            "Registering/RequestSent",
            "Registering/QueuedAtRegistrar",
            "Registered/Done",
            "Registered/SettledByOperator",
            "Renewing/RequestQueued",
            "Renewing/RequestSent",
            "Renewing/QueuedAtRegistrar",
            "Registered/Done",
        ]
    );
    assert_status_chain(&d, "flow.com");
    let stats = d.stats();
    assert_eq!(stats["outbox"], 0);
    assert_eq!(stats["awaiting_reply"], 0);
    // One message per request: client, domain, renewal, domain, renewal.
    assert_eq!(d.sent_mail().len(), 5);
}

#[test]
fn rejected_client_fails_its_waiting_domains_and_a_retry_after_a_fix_requeues() {
    let d = Daemon::start();
    d.post_expect("/v1/clients", &person("rej"), 201);
    d.post_expect("/v1/domains", &order("rej.ru", "rej", true), 202);
    d.post_expect("/v1/domains", &order("rej2.ru", "rej", true), 202);
    let old = client(&d, "rej")["open_request"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_req = d.wait_request(&old, "Sent");

    let reason = "passport data do not match the registry";
    let r = outcome(
        &d,
        &old,
        json!({"event":"rejected","reason": reason,"note":"R01 mail 2026-11-23"}),
    );
    assert_eq!(r["state"], "Rejected");
    assert_eq!(r["last_error"], reason);
    let c = client(&d, "rej");
    assert_eq!(c["status"], "Error");
    assert!(c["last_error"].as_str().unwrap().contains(reason), "{c}");
    for name in ["rej.ru", "rej2.ru"] {
        let v = domain(&d, name);
        assert_eq!(v["status"], "Error", "{v}");
        assert_eq!(v["phase"], "ClientFailed", "{v}");
        assert!(v["last_error"].as_str().unwrap().contains(reason), "{v}");
        let log = domain_log(&d, name);
        let err = log
            .iter()
            .find(|e| e["action"] == "domain.error")
            .unwrap_or_else(|| panic!("no domain.error in {log:?}"));
        assert!(err["message"].as_str().unwrap().contains(reason), "{err}");
        assert_eq!(err["status_after"], "Error/ClientFailed");
        assert_eq!(err["actor"], "operator");
        assert_eq!(err["evidence"]["note"], "R01 mail 2026-11-23");
    }
    assert_eq!(count(&d.stats(), "domains", "Error"), 2);

    // The operator fixes the data...
    let mut fixed = person("rej");
    fixed["registrant"]["passport"] = json!(["4500 654321", "выдан ОВД Арбат", "02.03.2004"]);
    let body = json!({"registrant": fixed["registrant"]});
    let c = d.put("/v1/clients/rej", &body);
    assert_eq!(c.0, 200, "{:?}", c.1);
    assert_eq!(c.1["registrant"]["passport"][0], "4500 654321");
    assert_eq!(c.1["status"], "Error");

    // ...and retries: a new request under the same handle, the domains wait again.
    let v = d.post_expect(&format!("/v1/requests/{old}/retry"), &json!({}), 202);
    assert_eq!(v["retried"], json!(old));
    let new = &v["new_request"];
    assert_eq!(new["state"], "Queued");
    assert_eq!(new["retry_of"], json!(old));
    assert_eq!(new["kind"], "client-registration");
    assert_eq!(new["handle"], old_req["handle"]);
    assert_ne!(new["id"], json!(old));
    let new_id = new["id"].as_str().unwrap().to_owned();
    let c = client(&d, "rej");
    assert_eq!(c["status"], "Registering");
    assert_eq!(c["open_request"], new["id"]);
    assert_eq!(c["last_error"], Value::Null);
    for name in ["rej.ru", "rej2.ru"] {
        let v = domain(&d, name);
        assert_eq!(v["status"], "Registering", "{v}");
        assert_eq!(v["phase"], "WaitingForClient", "{v}");
        assert_eq!(v["last_error"], Value::Null, "{v}");
        assert_status_chain(&d, name);
    }
    assert_eq!(request(&d, &old)["state"], "Rejected");
    // The retry is a new e-mail with the same handle and a new Message-ID.
    let sent = d.wait_request(&new_id, "Sent");
    assert_ne!(sent["message_id"], old_req["message_id"]);
    assert_mail_of(&d, &sent, old_req["handle"].as_str().unwrap());

    // Now the data can no longer be changed, and a request in flight cannot be retried.
    assert_error(
        "update of a Registering client",
        d.put("/v1/clients/rej", &body),
        409,
        "id",
    );
    assert_error(
        "retry of a request in flight",
        d.post(&format!("/v1/requests/{new_id}/retry"), &json!({})),
        409,
        "request_id",
    );
    // The retried request completes: both domains get their own request.
    outcome(&d, &new_id, json!({"event":"completed","note":"ok"}));
    assert_eq!(client(&d, "rej")["handle"], old_req["handle"]);
    d.settle();
    let mut doms: Vec<String> = d
        .requests_in("Sent")
        .iter()
        .filter_map(|r| r["domain"].as_str().map(str::to_owned))
        .collect();
    doms.sort();
    assert_eq!(doms, ["rej.ru", "rej2.ru"]);

    // A refused domain request: Error with the reason; a retry sends it again.
    let dreq = open_request(&d, "rej.ru");
    outcome(
        &d,
        &dreq,
        json!({"event":"rejected","reason":"name is reserved","note":"n"}),
    );
    let v = domain(&d, "rej.ru");
    assert_eq!(v["status"], "Error");
    assert_eq!(v["phase"], "RegistrarRejected");
    assert!(
        v["last_error"]
            .as_str()
            .unwrap()
            .contains("name is reserved"),
        "{v}"
    );
    assert_eq!(
        status_of(&d, "rej2.ru").1,
        "RequestSent",
        "the sibling was touched"
    );
    let retried = d.post_expect(&format!("/v1/requests/{dreq}/retry"), &json!({}), 202);
    assert_eq!(retried["new_request"]["kind"], "domain-registration");
    assert_eq!(retried["new_request"]["domain"], "rej.ru");
    d.settle();
    let v = domain(&d, "rej.ru");
    assert_eq!(v["status"], "Registering");
    assert_eq!(v["phase"], "RequestSent");
    assert_eq!(v["open_request"]["id"], retried["new_request"]["id"]);
    assert_ne!(v["open_request"]["id"], json!(dreq));
    assert_eq!(v["last_error"], Value::Null);
    assert_status_chain(&d, "rej.ru");
}

#[test]
fn operator_resolves_domains_as_registered_or_as_error() {
    let d = Daemon::start();
    imported_client(&d, "res");
    d.post_expect("/v1/domains", &order("res1.ru", "res", true), 202);
    d.post_expect("/v1/domains", &order("res2.ru", "res", true), 202);
    let (r1, r2) = (open_request(&d, "res1.ru"), open_request(&d, "res2.ru"));
    d.settle();
    assert_eq!(d.stats()["awaiting_reply"], 2);

    // Once the request went out, cancel is refused: the operator must resolve.
    assert_error(
        "cancel after sending",
        d.post("/v1/domains/res1.ru/cancel", &json!({})),
        409,
        "domain",
    );
    assert_eq!(
        status_of(&d, "res1.ru"),
        ("Registering".into(), "RequestSent".into())
    );

    let v = d.post_expect(
        "/v1/domains/res1.ru/resolve",
        &json!({"outcome":"registered","expires":"2027-01-01","note":"checked at R01"}),
        200,
    );
    assert_eq!(v["status"], "Registered");
    assert_eq!(v["phase"], "SettledByOperator");
    assert_eq!(v["expires"], "2027-01-01");
    assert_eq!(v["open_request"], Value::Null);
    assert_eq!(request(&d, &r1)["state"], "Completed");
    assert_eq!(
        d.stats()["awaiting_reply"],
        1,
        "the settled request still waits"
    );
    let log = domain_log(&d, "res1.ru");
    let e = log.last().unwrap();
    assert_eq!(e["action"], "domain.resolved");
    assert_eq!(e["actor"], "operator");
    assert_eq!(e["evidence"]["note"], "checked at R01");
    assert_eq!(e["status_before"], "Registering/RequestSent");
    assert_eq!(e["status_after"], "Registered/SettledByOperator");

    let v = d.post_expect(
        "/v1/domains/res2.ru/resolve",
        &json!({"outcome":"error","note":"registry refused by phone"}),
        200,
    );
    assert_eq!(v["status"], "Error");
    assert_eq!(v["last_error"], "registry refused by phone");
    assert_eq!(request(&d, &r2)["state"], "Rejected");
    let stats = d.stats();
    assert_eq!(stats["outbox"], 0);
    assert_eq!(stats["awaiting_reply"], 0);
    assert_eq!(count(&stats, "domains", "Registered"), 1);
    assert_eq!(count(&stats, "domains", "Error"), 1);

    // An Error domain can be settled as registered later; a renewal settled without a date
    // extends the old expiry by the renewal's years.
    let soon = today().checked_add(jiff::Span::new().days(10)).unwrap();
    d.post_expect(
        "/v1/domains/res2.ru/resolve",
        &json!({"outcome":"registered","expires": soon.to_string(),"note":"it was registered after all"}),
        200,
    );
    d.post_expect("/v1/domains/res2.ru/renew", &json!({"years": 2}), 202);
    d.settle();
    let v = d.post_expect(
        "/v1/domains/res2.ru/resolve",
        &json!({"outcome":"registered","note":"prolonged, seen in the panel"}),
        200,
    );
    let want = soon.checked_add(jiff::Span::new().years(2)).unwrap();
    assert_eq!(v["expires"], json!(want.to_string()));
    assert_eq!(v["status"], "Registered");
    assert_status_chain(&d, "res1.ru");
    assert_status_chain(&d, "res2.ru");
}

#[test]
fn cancel_withdraws_unpaid_and_queued_orders_and_the_name_can_be_ordered_again() {
    // The mail server is "down": requests stay Queued, so they can still be withdrawn.
    let d = Daemon::start_with(Options::held());
    d.post_expect("/v1/clients", &person("can"), 201);
    imported_client(&d, "can2");

    // Unpaid.
    d.post_expect("/v1/domains", &order("unpaid.ru", "can", false), 202);
    let v = d.post_expect(
        "/v1/domains/unpaid.ru/cancel",
        &json!({"note":"customer changed their mind"}),
        200,
    );
    assert_eq!(v["status"], "Cancelled");
    assert_eq!(v["phase"], "Cancelled");
    let log = domain_log(&d, "unpaid.ru");
    let e = log.last().unwrap();
    assert_eq!(e["action"], "domain.cancelled");
    assert_eq!(e["status_before"], "AwaitingPayment/WaitingForPayment");
    assert_eq!(e["status_after"], "Cancelled/Cancelled");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("customer changed their mind")
    );
    assert_error(
        "payment of a cancelled order",
        d.post("/v1/domains/unpaid.ru/payment", &json!({})),
        409,
        "domain",
    );
    assert_eq!(client(&d, "can")["status"], "Unregistered");
    // Ordered again: a fresh order.
    let v = d.post_expect("/v1/domains", &order("unpaid.ru", "can", false), 202);
    assert_eq!(v["status"], "AwaitingPayment");
    assert_status_chain(&d, "unpaid.ru");

    // Queued (the request never left): the request is withdrawn from the outbox.
    let v = d.post_expect("/v1/domains", &order("queued.ru", "can2", true), 202);
    assert_eq!(v["phase"], "RequestQueued");
    let req = v["open_request"]["id"].as_str().unwrap().to_owned();
    assert_eq!(d.stats()["outbox"], 1);
    let v = d.post_expect("/v1/domains/queued.ru/cancel", &json!({}), 200);
    assert_eq!(v["status"], "Cancelled");
    assert_eq!(v["open_request"], Value::Null);
    assert_eq!(request(&d, &req)["state"], "Cancelled");
    let stats = d.stats();
    assert_eq!(stats["outbox"], 0);
    assert_eq!(count(&stats, "requests", "Cancelled"), 1);
    assert_eq!(count(&stats, "domains", "Cancelled"), 1);
    assert!(d.requests_in("Queued").is_empty());
    let v = d.post_expect("/v1/domains", &order("queued.ru", "can2", true), 202);
    assert_eq!(v["phase"], "RequestQueued");
    assert_ne!(v["open_request"]["id"], json!(req));
    assert_eq!(d.stats()["outbox"], 1);

    // Waiting for its client: cancelled, it stays cancelled when the client is registered.
    d.post_expect("/v1/domains", &order("wait.ru", "can", true), 202);
    let creq = client(&d, "can")["open_request"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(status_of(&d, "wait.ru").1, "WaitingForClient");
    d.post_expect("/v1/domains/wait.ru/cancel", &json!({}), 200);
    outcome(&d, &creq, json!({"event":"completed","note":"n"}));
    assert_eq!(client(&d, "can")["status"], "Registered");
    assert_eq!(
        status_of(&d, "wait.ru"),
        ("Cancelled".into(), "Cancelled".into())
    );
    let queued = d.requests_in("Queued");
    assert!(
        queued.iter().all(|r| r["domain"] != "wait.ru"),
        "a cancelled order was queued: {queued:?}"
    );

    // A registered domain cannot be cancelled.
    d.post_expect(
        "/v1/domains/queued.ru/resolve",
        &json!({"outcome":"registered","note":"done"}),
        200,
    );
    assert_error(
        "cancel of a registered domain",
        d.post("/v1/domains/queued.ru/cancel", &json!({})),
        409,
        "domain",
    );
    assert_eq!(status_of(&d, "queued.ru").0, "Registered");
    assert_status_chain(&d, "queued.ru");
    assert_status_chain(&d, "wait.ru");
    // Nothing ever reached the (blocked) outbox directory.
    assert!(d.sent_mail().is_empty());
}

#[test]
fn unanswered_request_times_out_into_error_and_can_be_retried() {
    let mut opts = Options::short_deadlines("1s");
    opts.outbound = Outbound::Held;
    let d = Daemon::start_with(opts);
    d.post_expect("/v1/clients", &person("slow"), 201);
    d.post_expect("/v1/domains", &order("slow.ru", "slow", true), 202);
    let creq = client(&d, "slow")["open_request"]
        .as_str()
        .unwrap()
        .to_owned();
    // The registrar acknowledged it (seen by other means) and then fell silent.
    outcome(&d, &creq, json!({"event":"acknowledged","note":"queued"}));
    d.wait_request(&creq, "TimedOut");
    let c = client(&d, "slow");
    assert_eq!(c["status"], "Error");
    let v = domain(&d, "slow.ru");
    assert_eq!(v["status"], "Error");
    assert_eq!(v["phase"], "ClientFailed");
    assert!(
        v["last_error"].as_str().unwrap().contains("no reply"),
        "{v}"
    );
    let log = entries(&d.get_ok(&format!("/v1/requests/{creq}/log")));
    let e = log
        .iter()
        .find(|e| e["action"] == "request.timed_out")
        .unwrap_or_else(|| panic!("{log:?}"));
    assert_eq!(e["actor"], "scheduler");
    assert_eq!(e["status_before"], "Acknowledged");
    assert_eq!(d.requests_in("TimedOut").len(), 1);
    assert_eq!(d.stats()["awaiting_reply"], 0);
    let v = d.post_expect(&format!("/v1/requests/{creq}/retry"), &json!({}), 202);
    assert_eq!(v["new_request"]["state"], "Queued");
    assert_eq!(
        status_of(&d, "slow.ru"),
        ("Registering".into(), "WaitingForClient".into())
    );
    assert_status_chain(&d, "slow.ru");
}

// ---- logs and the CLI -------------------------------------------------------------------------

#[test]
fn every_status_change_is_logged_and_the_global_log_pages_with_since() {
    let d = Daemon::start();
    d.post_expect("/v1/clients", &person("log"), 201);
    d.post_expect("/v1/domains", &order("log.ru", "log", false), 202);
    d.post_expect("/v1/domains/log.ru/payment", &json!({}), 200);
    let creq = client(&d, "log")["open_request"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_request(&creq, "Sent");
    outcome(&d, &creq, json!({"event":"completed","note":"n"}));
    let dreq = open_request(&d, "log.ru");
    d.wait_request(&dreq, "Sent");
    outcome(
        &d,
        &dreq,
        json!({"event":"acknowledged","task_id":"9","note":"n"}),
    );
    outcome(
        &d,
        &dreq,
        json!({"event":"completed","expires":"2027-11-23","note":"n"}),
    );

    let afters = assert_status_chain(&d, "log.ru");
    assert_eq!(
        afters,
        [
            "AwaitingPayment/WaitingForPayment",
            "Registering/WaitingForClient",
            "Registering/RequestQueued",
            "Registering/RequestSent",
            "Registering/QueuedAtRegistrar",
            "Registered/Done",
        ]
    );
    let dlog = domain_log(&d, "log.ru");
    let actors: Vec<(&str, &str)> = dlog
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("domain."))
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actors,
        [
            ("domain.ordered", "api"),
            ("domain.paid", "api"),
            ("domain.request_queued", "operator"),
            ("domain.request_sent", "outbox"),
            ("domain.queued_at_registrar", "operator"),
            ("domain.registered", "operator"),
        ]
    );
    // The request's log holds its own state changes.
    let rlog = entries(&d.get_ok(&format!("/v1/requests/{dreq}/log")));
    let states: Vec<(&str, &str)> = rlog
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("request."))
        .map(|e| {
            (
                e["status_before"].as_str().unwrap_or("-"),
                e["status_after"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("-", "Queued"),
            ("Queued", "Sent"),
            ("Sent", "Acknowledged"),
            ("Acknowledged", "Completed")
        ]
    );
    // The client's log.
    let clog = entries(&d.get_ok("/v1/clients/log/log"));
    let cst: Vec<&str> = clog
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("client."))
        .map(|e| e["status_after"].as_str().unwrap())
        .collect();
    assert_eq!(cst, ["Unregistered", "Registering", "Registered"]);

    // The global log: sequence numbers 1..=log_seq without gaps.
    let all = d.full_log();
    let last = d.stats()["log_seq"].as_u64().unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    assert!(last >= 12, "too few entries: {last}");

    // since=N returns only what came after N; `next` continues.
    let n = last / 2;
    let page = d.get_ok(&format!("/v1/log?since={n}"));
    let got: Vec<u64> = entries(&page)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (n + 1..=last).collect::<Vec<_>>());
    assert_eq!(page["next"], last);
    let tail = d.get_ok(&format!("/v1/log?since={last}"));
    assert!(entries(&tail).is_empty());
    assert_eq!(tail["next"], last, "an empty page must say where to go on");

    // Paging 3 at a time visits every entry once, in order, identical to the full read.
    let mut paged = Vec::new();
    let mut since = 0;
    loop {
        let p = d.get_ok(&format!("/v1/log?since={since}&limit=3"));
        let e = entries(&p);
        assert!(e.len() <= 3);
        if e.is_empty() {
            break;
        }
        since = p["next"].as_u64().unwrap();
        assert_eq!(e.last().unwrap()["seq"].as_u64().unwrap(), since);
        paged.extend(e);
    }
    assert_eq!(paged, all);

    // A scoped log pages the same way.
    let first = d.get_ok("/v1/domains/log.ru/log?limit=2");
    let cont = d.get_ok(&format!(
        "/v1/domains/log.ru/log?since={}",
        first["next"].as_u64().unwrap()
    ));
    let mut joined = entries(&first);
    joined.extend(entries(&cont));
    assert_eq!(joined, dlog);

    // The new entries after a further change are exactly the ones after `last`.
    d.post_expect(
        "/v1/domains/log.ru/resolve",
        &json!({"outcome":"registered","expires":"2028-01-01","note":"fix"}),
        200,
    );
    let newer = entries(&d.get_ok(&format!("/v1/log?since={last}")));
    assert!(!newer.is_empty());
    assert!(newer.iter().all(|e| e["seq"].as_u64().unwrap() > last));
    assert!(newer.iter().any(|e| e["action"] == "domain.resolved"));
}

#[test]
fn cli_shows_status_lists_and_logs_from_the_running_daemon() {
    let d = Daemon::start();
    d.post_expect("/v1/clients", &person("cli"), 201);
    d.post_expect("/v1/domains", &order("cli.ru", "cli", false), 202);
    d.post_expect("/v1/domains/cli.ru/payment", &json!({}), 200);
    d.post_expect("/v1/domains", &order("other.ru", "cli", false), 202);
    d.settle();

    let out = d.cli(&["status", "cli.ru"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("domain:   cli.ru"), "{out:?}");
    assert!(
        out.stdout
            .contains("status:   Registering / WaitingForClient"),
        "{out:?}"
    );
    assert!(out.stdout.contains("client:   cli"), "{out:?}");

    let out = d.cli(&["--json", "status", "cli.ru"]);
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("status --json is JSON");
    assert_eq!(v, domain(&d, "cli.ru"));

    let out = d.cli(&["list", "--status", "Registering"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("DOMAIN"), "{out:?}");
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(lines[1].starts_with("cli.ru"), "{out:?}");
    assert!(lines[1].contains("WaitingForClient"), "{out:?}");
    assert!(!out.stdout.contains("other.ru"), "{out:?}");

    let out = d.cli(&["--json", "list", "--status", "AwaitingPayment"]);
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("list --json is JSON");
    let names: Vec<&str> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other.ru"]);

    let out = d.cli(&["log", "cli.ru"]);
    assert_eq!(out.code, 0, "{out:?}");
    let api_log = domain_log(&d, "cli.ru");
    // A header line, then one line per entry.
    assert!(out.stdout.starts_with("SEQ "), "{out:?}");
    assert_eq!(out.stdout.lines().count(), api_log.len() + 1, "{out:?}");
    assert!(out.stdout.contains("domain.ordered"), "{out:?}");
    assert!(
        out.stdout
            .contains("AwaitingPayment/WaitingForPayment -> Registering/WaitingForClient"),
        "{out:?}"
    );

    let out = d.cli(&["--json", "log", "cli.ru"]);
    assert_eq!(out.code, 0, "{out:?}");
    let parsed: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each log --json line is JSON"))
        .collect();
    assert_eq!(parsed, api_log);

    let out = d.cli(&["log"]);
    assert_eq!(out.code, 0, "{out:?}");
    let all = d.full_log();
    assert_eq!(out.stdout.lines().count(), all.len() + 1, "{out:?}");
    for (line, e) in out.stdout.lines().skip(1).zip(&all) {
        assert!(
            line.trim_start()
                .starts_with(&e["seq"].as_u64().unwrap().to_string()),
            "{line} / {e}"
        );
        assert!(line.contains(e["action"].as_str().unwrap()), "{line} / {e}");
    }
    assert!(out.stdout.contains("client.created"), "{out:?}");
    assert!(out.stdout.contains("request.sent"), "{out:?}");

    let out = d.cli(&["--json", "log", "--since", "2"]);
    assert_eq!(out.code, 0, "{out:?}");
    let parsed: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed, all[2..].to_vec());

    // Errors name the field and exit non-zero.
    let out = d.cli(&["status", "nothing.ru"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("404") && out.stderr.contains("domain"),
        "{out:?}"
    );
    let out = d.cli(&["list", "--status", "Nope"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("status"), "{out:?}");
}

// ---- bad input --------------------------------------------------------------------------------

enum In {
    None,
    Json(Value),
    Raw(Vec<u8>),
    /// A whole HTTP request written on a raw TCP connection.
    Http(Vec<u8>),
}

struct Case {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    auth: bool,
    body: In,
    status: u16,
    field: &'static str,
}

fn case(
    name: impl Into<String>,
    method: &'static str,
    path: impl Into<String>,
    body: In,
    status: u16,
    field: &'static str,
) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        headers: Vec::new(),
        auth: true,
        body,
        status,
        field,
    }
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn reg_with(mut v: Value, key: &str, value: Value) -> Value {
    v["registrant"][key] = value;
    v
}

/// Every bad input gets a 4xx naming its field, and changes nothing in the store.
#[test]
fn bad_inputs_are_refused_with_their_field_and_change_nothing() {
    let d = Daemon::start();
    imported_client(&d, "vc");
    d.post_expect("/v1/clients", &person("vp"), 201);
    d.post_expect("/v1/domains", &order("valid.ru", "vc", true), 202);
    let q = open_request(&d, "valid.ru");
    d.wait_request(&q, "Sent");
    d.post_expect("/v1/domains", &order("done.ru", "vc", true), 202);
    d.wait_request(&open_request(&d, "done.ru"), "Sent");
    d.post_expect(
        "/v1/domains/done.ru/resolve",
        &json!({"outcome":"registered","expires":"2027-11-23","note":"ok"}),
        200,
    );
    // Nothing may change in the background while the cases run.
    d.settle();

    let o = || order("new.ru", "vc", true);
    let p = || person("newp");
    let org = || organization("neworg");
    let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    let too_long_name = format!(
        "{}.{}.{}.{}.ru",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(63)
    );
    let big_len = 64 * 1024 + 1;
    let auth = d.auth_line();
    let mut chunked = format!(
        "POST /v1/domains HTTP/1.1\r\nHost: t\r\n{auth}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..66 {
        chunked.extend_from_slice(b"3E8\r\n");
        chunked.extend_from_slice(&[b' '; 1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let outcome_path = format!("/v1/requests/{q}/outcome");

    let mut cases = vec![
        // Orders: the domain.
        case("empty domain", "POST", "/v1/domains", In::Json(with(o(), "domain", json!(""))), 422, "domain"),
        case("leading hyphen", "POST", "/v1/domains", In::Json(with(o(), "domain", json!("-a.ru"))), 422, "domain"),
        case("empty label", "POST", "/v1/domains", In::Json(with(o(), "domain", json!("a..ru"))), 422, "domain"),
        case("64-octet label", "POST", "/v1/domains", In::Json(with(o(), "domain", json!(format!("{}.ru", "a".repeat(64))))), 422, "domain"),
        case("name over 253 octets", "POST", "/v1/domains", In::Json(with(o(), "domain", json!(too_long_name))), 422, "domain"),
        case("space in domain", "POST", "/v1/domains", In::Json(with(o(), "domain", json!("my shop.ru"))), 422, "domain"),
        case("single label", "POST", "/v1/domains", In::Json(with(o(), "domain", json!("localhost"))), 422, "domain"),
        case("underscore in domain", "POST", "/v1/domains", In::Json(with(o(), "domain", json!("my_shop.ru"))), 422, "domain"),
        case("numeric domain", "POST", "/v1/domains", In::Json(with(o(), "domain", json!(42))), 422, "domain"),
        case("missing domain", "POST", "/v1/domains", In::Json(without(o(), "domain")), 422, "domain"),
        // The client.
        case("unknown client_id", "POST", "/v1/domains", In::Json(with(o(), "client_id", json!("nobody"))), 422, "client_id"),
        case("malformed client_id", "POST", "/v1/domains", In::Json(with(o(), "client_id", json!("bad id!"))), 422, "client_id"),
        // Years.
        case("years 0", "POST", "/v1/domains", In::Json(with(o(), "years", json!(0))), 422, "years"),
        case("years 11", "POST", "/v1/domains", In::Json(with(o(), "years", json!(11))), 422, "years"),
        case("years \"two\"", "POST", "/v1/domains", In::Json(with(o(), "years", json!("two"))), 422, "years"),
        case("years 1.5", "POST", "/v1/domains", In::Json(with(o(), "years", json!(1.5))), 422, "years"),
        case("years -1", "POST", "/v1/domains", In::Json(with(o(), "years", json!(-1))), 422, "years"),
        // Name servers.
        case("one name server", "POST", "/v1/domains", In::Json(with(o(), "nameservers", json!(["ns1.hoster.example"]))), 422, "nameservers"),
        case("in-zone NS without glue", "POST", "/v1/domains", In::Json(with(o(), "nameservers", json!(["ns1.new.ru", "ns2.hoster.example"]))), 422, "nameservers[0]"),
        case("out-of-zone NS with glue", "POST", "/v1/domains", In::Json(with(o(), "nameservers", json!(["ns1.hoster.example [192.0.2.1]", "ns2.hoster.example"]))), 422, "nameservers[0]"),
        case("duplicate NS", "POST", "/v1/domains", In::Json(with(o(), "nameservers", json!(["ns1.hoster.example", "NS1.hoster.example."]))), 422, "nameservers[1]"),
        case("bad glue IP", "POST", "/v1/domains", In::Json(with(o(), "nameservers", json!(["ns1.new.ru [192.0.2.1]", "ns2.new.ru [999.1.1.1]"]))), 422, "nameservers[1]"),
        case("NS not a string", "POST", "/v1/domains", In::Json(with(o(), "nameservers", json!([1, 2]))), 422, "nameservers[0]"),
        case("NS bad host", "POST", "/v1/domains", In::Json(with(o(), "nameservers", json!(["ns1.hoster.example", "-ns2.hoster.example"]))), 422, "nameservers[1]"),
        case("14 name servers", "POST", "/v1/domains", In::Json(with(o(), "nameservers", json!((1..=14).map(|i| format!("ns{i}.hoster.example")).collect::<Vec<_>>()))), 422, "nameservers"),
        // Other order fields.
        case("unknown field", "POST", "/v1/domains", In::Json(with(o(), "colour", json!("red"))), 422, "colour"),
        case("paid \"yes\"", "POST", "/v1/domains", In::Json(with(o(), "paid", json!("yes"))), 422, "paid"),
        case("auto_renew 1", "POST", "/v1/domains", In::Json(with(o(), "auto_renew", json!(1))), 422, "auto_renew"),
        case("missing order_id", "POST", "/v1/domains", In::Json(without(o(), "order_id")), 422, "order_id"),
        case("CR/LF in order_id", "POST", "/v1/domains", In::Json(with(o(), "order_id", json!("42\r\nBcc: victim@example.com"))), 422, "order_id"),
        case("NUL in order_id", "POST", "/v1/domains", In::Json(with(o(), "order_id", json!("42\u{0}"))), 422, "order_id"),
        case("order_id too long", "POST", "/v1/domains", In::Json(with(o(), "order_id", json!("x".repeat(129)))), 422, "order_id"),
        case("control char in description", "POST", "/v1/domains", In::Json(with(o(), "description", json!(["ok", "bell\u{7}"]))), 422, "description[1]"),
        case("second active order", "POST", "/v1/domains", In::Json(order("valid.ru", "vc", true)), 409, "domain"),
        // The body as a whole.
        case("body is an array", "POST", "/v1/domains", In::Json(json!([o()])), 422, "body"),
        case("malformed JSON", "POST", "/v1/domains", In::Raw(br#"{"domain": "new.ru","#.to_vec()), 400, "body"),
        case("trailing garbage", "POST", "/v1/domains", In::Raw(format!("{} x", o()).into_bytes()), 400, "body"),
        case("not UTF-8", "POST", "/v1/domains", In::Raw(b"{\"domain\": \"\xff\xfe.ru\"}".to_vec()), 400, "body"),
        case("nesting 3000 deep", "POST", "/v1/domains", In::Raw(deep.into_bytes()), 400, "body"),
        case("over the size limit (Content-Length)", "POST", "/v1/domains", In::Http(format!("POST /v1/domains HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {big_len}\r\nConnection: close\r\n\r\n").into_bytes()), 413, "body"),
        case("over the size limit (chunked)", "POST", "/v1/domains", In::Http(chunked), 413, "body"),
        // Clients.
        case("birth_date in the future", "POST", "/v1/clients", In::Json(reg_with(p(), "birth_date", json!("2999-01-01"))), 422, "registrant.birth_date"),
        case("birth_date malformed", "POST", "/v1/clients", In::Json(reg_with(p(), "birth_date", json!("31/01/1980"))), 422, "registrant.birth_date"),
        case("birth_date Feb 30", "POST", "/v1/clients", In::Json(reg_with(p(), "birth_date", json!("30.02.1980"))), 422, "registrant.birth_date"),
        case("birth_date missing", "POST", "/v1/clients", In::Json(reg_with(p(), "birth_date", Value::Null)), 422, "registrant.birth_date"),
        case("phone without +", "POST", "/v1/clients", In::Json(reg_with(p(), "phone", json!("84951234567"))), 422, "registrant.phone"),
        case("phone with letters", "POST", "/v1/clients", In::Json(reg_with(p(), "phone", json!("+7 495 CALL-ME"))), 422, "registrant.phone"),
        case("e-mail without @", "POST", "/v1/clients", In::Json(reg_with(p(), "email", json!("ivanov.example.com"))), 422, "registrant.email"),
        case("e-mail with a bad domain", "POST", "/v1/clients", In::Json(reg_with(p(), "email", json!("ivanov@-bad-.ru"))), 422, "registrant.email"),
        case("empty passport", "POST", "/v1/clients", In::Json(reg_with(p(), "passport", json!([]))), 422, "registrant.passport"),
        case("organization field on a person", "POST", "/v1/clients", In::Json(reg_with(p(), "org_name_ru", json!("ООО"))), 422, "registrant.org_name_ru"),
        case("organization inn of 5 digits", "POST", "/v1/clients", In::Json(reg_with(org(), "inn", json!("12345"))), 422, "registrant.inn"),
        case("organization inn with letters", "POST", "/v1/clients", In::Json(reg_with(org(), "inn", json!("77012345ab"))), 422, "registrant.inn"),
        case("organization without inn", "POST", "/v1/clients", In::Json(reg_with(org(), "inn", Value::Null)), 422, "registrant.inn"),
        case("kpp of 8 digits", "POST", "/v1/clients", In::Json(reg_with(org(), "kpp", json!("77010100"))), 422, "registrant.kpp"),
        case("name KOI8-R cannot carry", "POST", "/v1/clients", In::Json(reg_with(p(), "fio_ru", json!("Иванов 😀"))), 422, "registrant.fio_ru"),
        case("address KOI8-R cannot carry", "POST", "/v1/clients", In::Json(reg_with(p(), "postal_addr", json!(["Москва", "Zürich"]))), 422, "registrant.postal_addr[1]"),
        case("description KOI8-R cannot carry", "POST", "/v1/domains", In::Json(with(o(), "description", json!(["日本"]))), 422, "description[0]"),
        case("registrant.type unknown", "POST", "/v1/clients", In::Json(reg_with(p(), "type", json!("robot"))), 422, "registrant.type"),
        case("registrant missing", "POST", "/v1/clients", In::Json(without(p(), "registrant")), 422, "registrant"),
        case("registrant a string", "POST", "/v1/clients", In::Json(with(p(), "registrant", json!("me"))), 422, "registrant"),
        case("bad contact e-mail", "POST", "/v1/clients", In::Json(with(org(), "contact", json!({"name":"x","email":"x@"}))), 422, "contact.email"),
        case("client id with a space", "POST", "/v1/clients", In::Json(with(p(), "id", json!("new p"))), 422, "id"),
        case("bad handle", "POST", "/v1/clients", In::Json(with(p(), "handle", json!("NO SPACES"))), 422, "handle"),
        case("existing id, other data", "POST", "/v1/clients", In::Json(reg_with(person("vp"), "fio_en", json!("Someone Else"))), 409, "id"),
        case("update of a Registered client", "PUT", "/v1/clients/vc", In::Json(json!({"registrant": person("vc")["registrant"]})), 409, "id"),
        case("update with an id field", "PUT", "/v1/clients/vp", In::Json(person("vp")), 422, "id"),
        // Queries.
        case("status filter Nope", "GET", "/v1/domains?status=Nope", In::None, 422, "status"),
        case("client filter malformed", "GET", "/v1/domains?client=a%20b", In::None, 422, "client"),
        case("unknown query parameter", "GET", "/v1/domains?colour=red", In::None, 422, "colour"),
        case("since -1", "GET", "/v1/log?since=-1", In::None, 422, "since"),
        case("since abc", "GET", "/v1/log?since=abc", In::None, 422, "since"),
        case("since in a scoped log", "GET", "/v1/domains/valid.ru/log?since=1.5", In::None, 422, "since"),
        case("limit 1001", "GET", "/v1/log?limit=1001", In::None, 422, "limit"),
        case("request state Lost", "GET", "/v1/requests?state=Lost", In::None, 422, "state"),
        case("request state missing", "GET", "/v1/requests", In::None, 422, "state"),
        // Path parameters.
        case("request id not a UUID (retry)", "POST", "/v1/requests/not-a-uuid/retry", In::Json(json!({})), 422, "request_id"),
        case("request id not a UUID (get)", "GET", "/v1/requests/12345", In::None, 422, "request_id"),
        case("request id not a UUID (outcome)", "POST", "/v1/requests/zz/outcome", In::Json(json!({"event":"acknowledged","note":"n"})), 422, "request_id"),
        case("unknown request", "POST", "/v1/requests/0192f000-0000-7000-8000-000000000000/retry", In::Json(json!({})), 404, "request_id"),
        case("retry of a request in flight", "POST", format!("/v1/requests/{q}/retry"), In::Json(json!({})), 409, "request_id"),
        case("bad domain in path", "GET", "/v1/domains/-a.ru", In::None, 422, "domain"),
        case("unknown domain", "GET", "/v1/domains/nothing.ru", In::None, 404, "domain"),
        case("bad client id in path", "GET", "/v1/clients/a%20b", In::None, 422, "id"),
        // Operations.
        case("resolve with outcome maybe", "POST", "/v1/domains/valid.ru/resolve", In::Json(json!({"outcome":"maybe","note":"x"})), 422, "outcome"),
        case("resolve without note", "POST", "/v1/domains/valid.ru/resolve", In::Json(json!({"outcome":"error"})), 422, "note"),
        case("resolve error with expires", "POST", "/v1/domains/valid.ru/resolve", In::Json(json!({"outcome":"error","expires":"2027-01-01","note":"x"})), 422, "expires"),
        case("resolve with month 13", "POST", "/v1/domains/valid.ru/resolve", In::Json(json!({"outcome":"registered","expires":"2027-13-01","note":"x"})), 422, "expires"),
        case("resolve of an unknown domain", "POST", "/v1/domains/nothing.ru/resolve", In::Json(json!({"outcome":"error","note":"x"})), 404, "domain"),
        case("outcome event exploded", "POST", outcome_path.clone(), In::Json(json!({"event":"exploded","note":"x"})), 422, "event"),
        case("outcome completed with reason", "POST", outcome_path.clone(), In::Json(json!({"event":"completed","reason":"x","note":"x"})), 422, "reason"),
        case("outcome with a bad handle", "POST", outcome_path.clone(), In::Json(json!({"event":"completed","handle":"a b","note":"x"})), 422, "handle"),
        case("outcome rejected without reason", "POST", outcome_path.clone(), In::Json(json!({"event":"rejected","note":"x"})), 422, "reason"),
        case("outcome without note", "POST", outcome_path.clone(), In::Json(json!({"event":"acknowledged"})), 422, "note"),
        case("renew years 0", "POST", "/v1/domains/done.ru/renew", In::Json(json!({"years": 0})), 422, "years"),
        case("renew too early", "POST", "/v1/domains/done.ru/renew", In::Json(json!({"years": 1})), 409, "domain"),
        case("renew while Registering", "POST", "/v1/domains/valid.ru/renew", In::Json(json!({})), 409, "domain"),
        case("payment of an unknown domain", "POST", "/v1/domains/nothing.ru/payment", In::Json(json!({})), 404, "domain"),
        case("payment with a field", "POST", "/v1/domains/valid.ru/payment", In::Json(json!({"amount": 100})), 422, "amount"),
        case("cancel of a Registered domain", "POST", "/v1/domains/done.ru/cancel", In::Json(json!({})), 409, "domain"),
        case("cancel note too long", "POST", "/v1/domains/valid.ru/cancel", In::Json(json!({"note": "x".repeat(1001)})), 422, "note"),
    ];
    let mut keyed = case(
        "Idempotency-Key with a space",
        "POST",
        "/v1/domains",
        In::Json(o()),
        422,
        "Idempotency-Key",
    );
    keyed.headers.push(("Idempotency-Key", "a b".into()));
    cases.push(keyed);
    let mut keyed = case(
        "Idempotency-Key of 256 characters",
        "POST",
        "/v1/domains",
        In::Json(o()),
        422,
        "Idempotency-Key",
    );
    keyed.headers.push(("Idempotency-Key", "k".repeat(256)));
    cases.push(keyed);
    let mut noauth = case(
        "valid order without a token",
        "POST",
        "/v1/domains",
        In::Json(o()),
        401,
        "Authorization",
    );
    noauth.auth = false;
    cases.push(noauth);

    assert!(cases.len() >= 20);
    let snapshot = |d: &Daemon| (d.stats(), d.full_log());
    let mut failures = Vec::new();
    for c in &cases {
        let before = snapshot(&d);
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, v) = match &c.body {
            In::None => {
                let r = d.call(c.method, &c.path, &headers, Body::None, c.auth);
                (r.status, r.json())
            }
            In::Json(b) => {
                let r = d.call(c.method, &c.path, &headers, Body::Json(b), c.auth);
                (r.status, r.json())
            }
            In::Raw(b) => {
                let r = d.call(c.method, &c.path, &headers, Body::Raw(b), c.auth);
                (r.status, r.json())
            }
            In::Http(raw) => {
                let (s, text) = d.raw(raw);
                (
                    s,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
        };
        let field = v["error"]["field"].as_str();
        if !(400..500).contains(&status) || status != c.status || field != Some(c.field) {
            failures.push(format!(
                "{}: {} {} -> {status} {v}; expected {} with field {:?}",
                c.name, c.method, c.path, c.status, c.field
            ));
        }
        if v["error"]["message"].as_str().is_none_or(str::is_empty) {
            failures.push(format!("{}: no error message in {v}", c.name));
        }
        let after = snapshot(&d);
        if after != before {
            failures.push(format!(
                "{}: the store changed: {:?} -> {:?}",
                c.name, before.0, after.0
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were mishandled:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing above crashed the daemon.
    let r = d.call("GET", "/healthz", &[], Body::None, false);
    assert_eq!(r.status, 200);
    let mut d = d;
    assert!(d.is_running(), "the daemon died");
    // The valid order still goes through afterwards.
    d.post_expect("/v1/domains", &o(), 202);
}

/// Percent-encoded bytes that are not UTF-8 in a path parameter are a bad domain / id / request
/// id like any other: error JSON naming the parameter, not a bare text answer.
#[test]
fn non_utf8_path_parameters_get_error_json_naming_the_parameter() {
    let d = Daemon::start();
    let mut failures = Vec::new();
    for (method, path, field) in [
        ("GET", "/v1/domains/%FF.ru", "domain"),
        ("POST", "/v1/domains/%FF.ru/payment", "domain"),
        ("GET", "/v1/clients/%FF", "id"),
        ("GET", "/v1/requests/%FF", "request_id"),
    ] {
        let r = d.call(method, path, &[], Body::Json(&json!({})), true);
        let v = r.json();
        if !(r.status == 422 || r.status == 400) || v["error"]["field"] != json!(field) {
            failures.push(format!(
                "{method} {path} -> {} {:?} (content-type {:?}); expected 4xx error JSON with field {field:?}",
                r.status,
                r.text,
                r.header("content-type")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `PUT /v1/clients/{id}` of a client that does not exist is a 404 naming the path parameter
/// `id`, as `GET /v1/clients/{id}` answers; the body of a PUT has no `client_id` field.
#[test]
fn update_of_an_unknown_client_is_404_naming_id() {
    let d = Daemon::start();
    let body = json!({"registrant": person("x")["registrant"]});
    assert_error(
        "GET of an unknown client",
        d.get("/v1/clients/nobody"),
        404,
        "id",
    );
    assert_error(
        "PUT of an unknown client",
        d.put("/v1/clients/nobody", &body),
        404,
        "id",
    );
    assert_eq!(d.stats()["log_seq"], 0);
}

/// RFC 9112 §9.6: a server that will close the connection after its answer says so with
/// `Connection: close`. An answer given before the request body was read (here a 401) must
/// either leave the kept-alive connection usable or announce the close; a silent close makes a
/// panel's pooled HTTP client fail its next request with "peer disconnected".
#[test]
fn early_error_answers_leave_the_connection_usable_or_say_close() {
    use std::io::{Read, Write};
    let d = Daemon::start();
    let body = format!("{{\"id\":\"{}\"}}", "y".repeat(3000));
    let mut s = std::net::TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // Headers first; the body follows once the answer is in, as a slow client would send it.
    write!(
        s,
        "POST /v1/clients HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    if head.contains("connection: close") {
        return;
    }
    // Not announced as closing: the connection must take the body and a next request, also
    // from a client that is a little slow to send its body.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let next = s
        .write_all(body.as_bytes())
        .and_then(|()| s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"))
        .and_then(|()| s.read(&mut buf));
    match next {
        Ok(n) if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") => {}
        other => panic!(
            "the 401 did not say `Connection: close`, yet the connection is gone: {other:?}\n{head}"
        ),
    }
}

/// A wrong method on a known path is a 4xx like the others: error JSON, not an empty body.
#[test]
fn wrong_method_gets_error_json() {
    let d = Daemon::start();
    for (method, path) in [("PUT", "/v1/domains"), ("GET", "/v1/domains/a.ru/payment")] {
        let r = d.call(method, path, &[], Body::Json(&json!({})), true);
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
        let v = r.json();
        assert!(
            v["error"]["field"].is_string() && v["error"]["message"].is_string(),
            "{method} {path} -> 405 with body {:?} (content-type {:?}); expected error JSON",
            r.text,
            r.header("content-type")
        );
    }
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "id",
    "registrant",
    "contact",
    "handle",
    "type",
    "fio_ru",
    "fio_en",
    "passport",
    "birth_date",
    "postal_addr",
    "phone",
    "email",
    "inn",
    "org_name_ru",
    "org_name_en",
    "legal_addr",
    "domain",
    "client_id",
    "years",
    "nameservers",
    "order_id",
    "description",
    "paid",
    "auto_renew",
    "outcome",
    "expires",
    "note",
    "event",
    "task_id",
    "reason",
    "x",
];

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    let strings = [
        "",
        " ",
        "пример.рф",
        "a.ru",
        "ns1.a.ru [192.0.2.1]",
        "person",
        "organization",
        "registered",
        "error",
        "completed",
        "rejected",
        "acknowledged",
        "1980-01-31",
        "31.12.9999",
        "+7 495 1234567",
        "a@b.ru",
        "\r\n",
        "\u{0}",
        "\u{202e}",
        "😀",
        "vc",
        "REGMAIL_1_1-GPT",
    ];
    match rng.below(if depth > 2 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 1),
        2 => json!(*rng.pick(&[0i64, 1, -1, 10, 11, 255, 256, i64::MAX, i64::MIN])),
        3 => json!(*rng.pick(&[0.5f64, 1e300, -0.0])),
        4 | 5 => {
            let s = *rng.pick(&strings);
            if rng.below(8) == 0 {
                json!(s.repeat(2000))
            } else {
                json!(s)
            }
        }
        6 => Value::Array(
            (0..rng.below(15))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => random_object(rng, depth + 1),
    }
}

fn random_object(rng: &mut Rng, depth: u32) -> Value {
    let mut m = serde_json::Map::new();
    for _ in 0..rng.below(8) {
        m.insert(rng.pick(KEYS).to_string(), random_value(rng, depth));
    }
    Value::Object(m)
}

/// Mutates a valid body: replaces, removes or adds a field, at the top or in `registrant`.
fn mutate(rng: &mut Rng, mut v: Value) -> Value {
    for _ in 0..1 + rng.below(3) {
        let target = if v.get("registrant").is_some() && rng.below(2) == 0 {
            &mut v["registrant"]
        } else {
            &mut v
        };
        let Some(obj) = target.as_object_mut() else {
            break;
        };
        let keys: Vec<String> = obj.keys().cloned().collect();
        match rng.below(3) {
            0 if !keys.is_empty() => {
                obj.remove(&keys[rng.below(keys.len())]);
            }
            1 if !keys.is_empty() => {
                let k = keys[rng.below(keys.len())].clone();
                obj.insert(k, random_value(rng, 1));
            }
            _ => {
                obj.insert(rng.pick(KEYS).to_string(), random_value(rng, 1));
            }
        }
    }
    v
}

/// Hundreds of random and mutated bodies on every writing endpoint: no answer is a 5xx, every
/// 4xx names a field and changes nothing, and the daemon keeps running.
#[test]
fn random_bodies_never_crash_the_daemon_or_slip_past_validation() {
    let mut d = Daemon::start();
    imported_client(&d, "vc");
    d.post_expect("/v1/clients", &person("vp"), 201);
    d.post_expect("/v1/domains", &order("a.ru", "vc", true), 202);
    let q = open_request(&d, "a.ru");
    d.settle();
    let endpoints: Vec<(&str, String, Value)> = vec![
        ("POST", "/v1/clients".into(), person("fz")),
        ("POST", "/v1/clients".into(), organization("fzo")),
        (
            "PUT",
            "/v1/clients/vp".into(),
            json!({"registrant": person("vp")["registrant"]}),
        ),
        ("POST", "/v1/domains".into(), order("fz.ru", "vc", false)),
        ("POST", "/v1/domains/a.ru/payment".into(), json!({})),
        ("POST", "/v1/domains/a.ru/renew".into(), json!({"years": 1})),
        (
            "POST",
            "/v1/domains/a.ru/resolve".into(),
            json!({"outcome":"error","note":"n"}),
        ),
        (
            "POST",
            "/v1/domains/a.ru/cancel".into(),
            json!({"note":"n"}),
        ),
        (
            "POST",
            format!("/v1/requests/{q}/outcome"),
            json!({"event":"acknowledged","note":"n"}),
        ),
        ("POST", format!("/v1/requests/{q}/retry"), json!({})),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut stats = d.stats();
    let mut problems = Vec::new();
    for i in 0..400 {
        let (method, path, valid) = &endpoints[rng.below(endpoints.len())];
        let (body, raw): (Value, Option<Vec<u8>>) = match rng.below(10) {
            0 => {
                let n = rng.below(300);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                (Value::Null, Some(bytes))
            }
            1..=3 => (random_object(&mut rng, 0), None),
            _ => (mutate(&mut rng, valid.clone()), None),
        };
        let r = match &raw {
            Some(b) => d.call(method, path, &[], Body::Raw(b), true),
            None => d.call(method, path, &[], Body::Json(&body), true),
        };
        let v = r.json();
        let shown = raw
            .as_ref()
            .map_or_else(|| body.to_string(), |b| format!("{b:?}"));
        if r.status >= 500 {
            problems.push(format!("#{i} {method} {path} {shown} -> {} {v}", r.status));
        }
        if r.status < 400 {
            // Let the outbox worker send what the accepted body queued.
            d.settle();
        }
        let now = d.stats();
        if (400..500).contains(&r.status) {
            if v["error"]["field"].as_str().is_none_or(str::is_empty) {
                problems.push(format!(
                    "#{i} {method} {path} {shown} -> {} without a field: {v}",
                    r.status
                ));
            }
            if now != stats {
                problems.push(format!(
                    "#{i} {method} {path} {shown} -> {} but the store changed",
                    r.status
                ));
            }
        }
        stats = now;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let r = d.call("GET", "/healthz", &[], Body::None, false);
    assert_eq!(r.status, 200);
    assert!(d.is_running(), "the daemon died");
    assert!(!d.stderr().contains("panicked"), "a handler panicked");
    // The store is still consistent: the outbox holds exactly the Queued requests.
    let s = d.stats();
    assert_eq!(
        s["outbox"].as_u64().unwrap(),
        count(&s, "requests", "Queued")
    );
    assert_eq!(d.full_log().len() as u64, s["log_seq"].as_u64().unwrap());
}

/// Text the registrar's charset cannot carry is refused when accepted, not at send time (the
/// API's own rule, `check_charset`). A registrant e-mail with an internationalized domain
/// (`ivan@müller.de`) is rendered into the request as it is, so either it is refused with
/// `registrant.email`, or the request it leads to must actually go out.
#[test]
fn registrant_email_the_charset_cannot_carry_is_refused_or_sent() {
    let d = Daemon::start();
    let mut body = person("idnmail");
    body["registrant"]["email"] = json!("ivan@müller.de");
    let (status, v) = d.post("/v1/clients", &body);
    if status == 422 {
        assert_eq!(v["error"]["field"], "registrant.email", "{v}");
        return;
    }
    assert_eq!(status, 201, "{v}");
    d.post_expect("/v1/domains", &order("idnmail.ru", "idnmail", true), 202);
    let rid = client(&d, "idnmail")["open_request"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = std::time::Instant::now();
    while request(&d, &rid)["state"] == "Queued" && start.elapsed().as_secs() < 3 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = request(&d, &rid);
    let log = entries(&d.get_ok(&format!("/v1/requests/{rid}/log")));
    assert_eq!(
        r["state"], "Sent",
        "the accepted client's request cannot be sent: {log:?}"
    );
}
