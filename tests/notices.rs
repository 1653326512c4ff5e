//! Notices through the real binary (issue 10): account users, roles and subscriptions over the
//! API; panel notices with Idempotency-Key; bad bodies refused with the field named and the
//! store unchanged; the fan-out of a registered domain into e-mails (the `dir` transport here;
//! tests/notices_mail.rs goes through the real Postfix and Dovecot); webhooks to a real HTTP
//! receiver on 127.0.0.1 that verifies every signature with the `standardwebhooks` package from
//! PyPI: retries on a scaled schedule with the same webhook-id, Retry-After, 410, replay, and a
//! SIGKILL during a delivery.

mod common;
mod support_webhooks;

use std::time::{Duration, Instant};

use common::{Body, Daemon, Options};
use serde_json::{Value, json};
use support_webhooks::Receiver;

const SCHEDULE: &str = "[notices]\nwebhook_schedule = [\"300ms\", \"600ms\", \"900ms\", \"1200ms\"]\nwebhook_timeout = \"10s\"\noperators = [\"ops@hosting.test\"]\nfrom = \"notices@hosting.test\"\n";

fn daemon() -> Daemon {
    Daemon::start_with(Options {
        extra_config: SCHEDULE.into(),
        ..Options::default()
    })
}

fn user(id: &str, email: &str, lang: &str, role: &str) -> Value {
    json!({"id": id, "name": format!("User {id}"), "email": email, "language": lang, "role": role})
}

/// A client with an owner (ru), an admin (en) and a subscriber.
fn account(d: &Daemon, client: &str) {
    d.post_expect("/v1/clients", &common::person(client), 201);
    let base = format!("/v1/clients/{client}/users");
    d.post_expect(
        &base,
        &user("boss", "owner@customer.test", "ru", "owner"),
        201,
    );
    d.post_expect(
        &base,
        &user("adm", "admin@customer.test", "en", "admin"),
        201,
    );
    d.post_expect(
        &base,
        &user("sub", "user@customer.test", "en", "subscriber"),
        201,
    );
}

fn register(d: &Daemon, domain: &str, client: &str) {
    d.post_expect("/v1/domains", &common::order(domain, client, true), 202);
    d.post_expect(
        &format!("/v1/domains/{domain}/resolve"),
        &json!({"outcome": "registered", "expires": "2027-11-23", "note": "checked"}),
        200,
    );
}

fn notices_of(d: &Daemon, query: &str) -> Vec<Value> {
    d.get_ok(&format!("/v1/notices?{query}"))["notices"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn notice(d: &Daemon, id: u64) -> Value {
    d.get_ok(&format!("/v1/notices/{id}"))
}

/// Polls the API until `cond` holds (up to `timeout`).
fn wait_api(d: &Daemon, what: &str, timeout: Duration, mut cond: impl FnMut(&Daemon) -> bool) {
    let start = Instant::now();
    while !cond(d) {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}\n--- daemon stderr ---\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn roles_decide_who_may_subscribe_whom() {
    let d = daemon();
    account(&d, "acme");
    let subs = |u: &str| format!("/v1/clients/acme/users/{u}/subscriptions");
    // An admin subscribes the subscriber to balance: allowed.
    let (s, v) = d.put(
        &subs("sub"),
        &json!({"acting_user": "adm", "subscriptions": {"balance": ["email"]}}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subscriptions"], json!({"balance": ["email"]}));
    assert_eq!(v["set_by"], "adm");
    let before = d.get_ok("/v1/clients/acme/users");
    // Refused changes, each a 403 naming the field, each changing nothing.
    for (path, body, field) in [
        // a subscriber may not change another user
        (
            subs("adm"),
            json!({"acting_user": "sub", "subscriptions": {}}),
            "acting_user",
        ),
        // a subscriber may hold only documents and balance
        (
            subs("sub"),
            json!({"acting_user": "adm", "subscriptions": {"domains": ["email"]}}),
            "subscriptions.domains",
        ),
        // the owner cannot be unsubscribed from anything
        (
            subs("boss"),
            json!({"acting_user": "adm", "subscriptions": {"domains": ["email"]}}),
            "subscriptions.account",
        ),
        // an actor from nowhere
        (
            subs("sub"),
            json!({"acting_user": "ghost", "subscriptions": {}}),
            "acting_user",
        ),
    ] {
        let (s, v) = d.put(&path, &body);
        assert_eq!(s, 403, "{path} {body}: {v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    assert_eq!(d.get_ok("/v1/clients/acme/users"), before);
    // Exactly one owner; a second is a conflict.
    let (s, v) = d.post(
        "/v1/clients/acme/users",
        &user("boss2", "x@customer.test", "en", "owner"),
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (409, Some("role")),
        "{v}"
    );
    // The owner's subscriptions show every category.
    let v = d.get_ok(&subs("boss"));
    assert_eq!(v["subscriptions"].as_object().unwrap().len(), 6, "{v}");
    // A client without an owner gets one from its contact.
    d.post_expect("/v1/clients", &common::person("solo"), 201);
    d.post_expect(
        "/v1/clients/solo/users",
        &user("a", "admin@customer.test", "en", "admin"),
        201,
    );
    let users = d.get_ok("/v1/clients/solo/users");
    let owner: Vec<&Value> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "owner")
        .collect();
    assert_eq!(owner.len(), 1, "{users}");
    assert_eq!(owner[0]["email"], "ivanov@example.com");
    // DELETE of a user; the owner cannot be deleted.
    let r = d.call(
        "DELETE",
        "/v1/clients/acme/users/sub",
        &[],
        Body::None,
        true,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = d.call(
        "DELETE",
        "/v1/clients/acme/users/boss",
        &[],
        Body::None,
        true,
    );
    assert_eq!(r.status, 409, "{}", r.text);
}

#[test]
fn panel_notice_is_idempotent_and_bad_bodies_change_nothing() {
    let d = daemon();
    account(&d, "acme");
    let body = json!({"client_id": "acme", "type": "balance.funds_shortage", "data": {"balance": "10 RUB"}});
    let key = [("Idempotency-Key", "panel-77")];
    let r1 = d.call("POST", "/v1/notices", &key, Body::Json(&body), true);
    assert_eq!(r1.status, 201, "{}", r1.text);
    let r2 = d.call("POST", "/v1/notices", &key, Body::Json(&body), true);
    assert_eq!(r2.status, 200, "{}", r2.text);
    assert_eq!(r1.json()["id"], r2.json()["id"]);
    assert_eq!(notices_of(&d, "type=balance.funds_shortage").len(), 1);
    let other = json!({"client_id": "acme", "type": "balance.funds_shortage", "data": {"balance": "5 RUB"}});
    let r3 = d.call("POST", "/v1/notices", &key, Body::Json(&other), true);
    assert_eq!(r3.status, 409, "{}", r3.text);
    assert_eq!(r3.json()["error"]["field"], "Idempotency-Key");

    let snapshot = |d: &Daemon| {
        (
            d.get_ok("/v1/clients/acme/users"),
            d.get_ok("/v1/notices"),
            d.get_ok("/v1/webhooks"),
            d.get_ok("/v1/deliveries"),
        )
    };
    // Let the e-mail go first, so only the refused bodies could change anything below.
    wait_api(&d, "the notice e-mail sent", Duration::from_secs(10), |d| {
        d.get_ok("/v1/deliveries?state=Queued")["deliveries"] == json!([])
    });
    let before = snapshot(&d);
    let bad: Vec<(&str, &str, Value, &str)> = vec![
        // notices
        (
            "POST",
            "/v1/notices",
            json!({"client_id": "acme", "type": "no.such", "data": {}}),
            "type",
        ),
        (
            "POST",
            "/v1/notices",
            json!({"client_id": "acme", "type": "balance.funds_shortage", "data": {}}),
            "data.balance",
        ),
        (
            "POST",
            "/v1/notices",
            json!({"type": "balance.funds_shortage", "data": {"balance": "1"}}),
            "client_id",
        ),
        (
            "POST",
            "/v1/notices",
            json!({"client_id": "nobody", "type": "balance.funds_shortage", "data": {"balance": "1"}}),
            "client_id",
        ),
        (
            "POST",
            "/v1/notices",
            json!({"client_id": "acme", "type": "balance.funds_shortage", "data": {"balance": ["x"]}}),
            "data.balance",
        ),
        (
            "POST",
            "/v1/notices",
            json!({"client_id": "acme", "type": "domain.registered", "data": {"domain": "-bad-.ru"}}),
            "data.domain",
        ),
        (
            "POST",
            "/v1/notices",
            json!({"client_id": "acme", "type": "balance.funds_shortage", "data": {"balance": "1"}, "extra": 1}),
            "extra",
        ),
        // users
        (
            "POST",
            "/v1/clients/acme/users",
            json!({"id": "u 1", "name": "x", "email": "a@b.test", "language": "en", "role": "admin"}),
            "id",
        ),
        (
            "POST",
            "/v1/clients/acme/users",
            json!({"id": "u1", "name": "x", "email": "not-an-address", "language": "en", "role": "admin"}),
            "email",
        ),
        (
            "POST",
            "/v1/clients/acme/users",
            json!({"id": "u1", "name": "x", "email": "a@b.test", "language": "de", "role": "admin"}),
            "language",
        ),
        (
            "POST",
            "/v1/clients/acme/users",
            json!({"id": "u1", "name": "x", "email": "a@b.test", "language": "en", "role": "root"}),
            "role",
        ),
        (
            "POST",
            "/v1/clients/acme/users",
            json!({"id": "u1", "email": "a@b.test", "language": "en", "role": "admin"}),
            "name",
        ),
        // endpoints
        (
            "POST",
            "/v1/webhooks",
            json!({"url": "ftp://example.test/x", "events": ["domain.*"]}),
            "url",
        ),
        (
            "POST",
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/x", "events": ["nothing.*"]}),
            "events[0]",
        ),
        (
            "POST",
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/x", "events": ["*"], "secret": "whsec_short"}),
            "secret",
        ),
        (
            "POST",
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/x", "events": []}),
            "events",
        ),
    ];
    assert!(bad.len() >= 15);
    for (method, path, body, field) in &bad {
        let r = d.call(method, path, &[], Body::Json(body), true);
        assert!(
            (400..500).contains(&r.status),
            "{path} {body}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(
            r.json()["error"]["field"],
            *field,
            "{path} {body}: {}",
            r.text
        );
    }
    assert_eq!(snapshot(&d), before, "a refused body changed the store");
}

#[test]
fn a_registered_domain_is_mailed_to_exactly_the_users_the_rules_select() {
    let d = daemon();
    account(&d, "acme");
    // The admin hears domains; the subscriber cannot.
    d.put(
        "/v1/clients/acme/users/adm/subscriptions",
        &json!({"acting_user": "boss", "subscriptions": {"domains": ["email"]}}),
    );
    register(&d, "notice-test.ru", "acme");
    let ns = notices_of(&d, "domain=notice-test.ru&type=domain.registered");
    assert_eq!(ns.len(), 1, "{ns:?}");
    let id = ns[0]["id"].as_u64().unwrap();
    let n = notice(&d, id);
    let mut to: Vec<&str> = n["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["address"].as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, ["admin@customer.test", "owner@customer.test"], "{n}");
    wait_api(&d, "both e-mails sent", Duration::from_secs(10), |d| {
        notice(d, id)["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["state"] == "Sent")
    });
    let files: Vec<String> = std::fs::read_dir(d.outbox_dir().join("notices"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("notice-"))
        .map(|e| common::read(&e.path()))
        .collect();
    assert_eq!(files.len(), 2);
    let owner = files.iter().find(|m| m.contains("To: owner@")).unwrap();
    let admin = files.iter().find(|m| m.contains("To: admin@")).unwrap();
    assert!(
        owner.contains("Домен notice-test.ru зарегистрирован"),
        "{owner}"
    );
    assert!(
        !owner.contains("List-Unsubscribe"),
        "the owner cannot opt out: {owner}"
    );
    assert!(
        admin.contains("The domain notice-test.ru is registered until 2027-11-23."),
        "{admin}"
    );
    assert!(admin.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
    // The operators' view: the CLI lists notices, users and their subscriptions, deliveries.
    let out = d.cli(&["notices", "--domain", "notice-test.ru"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("domain.registered"), "{}", out.stdout);
    let out = d.cli(&["users", "acme"]);
    assert!(out.stdout.contains("adm   admin"), "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("adm") && l.ends_with("domains")),
        "{}",
        out.stdout
    );
    let out = d.cli(&["--json", "deliveries", "--failed"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()["deliveries"],
        json!([])
    );
    let out = d.cli(&["notice", &id.to_string()]);
    assert!(
        out.stdout.contains("owner@customer.test") && out.stdout.contains("Sent"),
        "{}",
        out.stdout
    );
    // The pull feed has it under the same id.
    let ev = d.get_ok(&format!("/v1/events?after={}", id - 1));
    assert_eq!(ev["events"][0]["id"], id.to_string());
    assert_eq!(ev["events"][0]["type"], "domain.registered");
}

/// An endpoint for `rx` with a generated secret, which the receiver then verifies with.
fn endpoint(d: &Daemon, rx: &mut Receiver, events: Value) -> String {
    let v = d.post_expect(
        "/v1/webhooks",
        &json!({"url": rx.url(), "events": events}),
        201,
    );
    rx.secret = v["secret"].as_str().unwrap().into();
    v["id"].as_str().unwrap().into()
}

fn deliveries_of(d: &Daemon, notice_id: u64) -> Vec<Value> {
    notice(d, notice_id)["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn webhook_delivery(d: &Daemon, notice_id: u64) -> Value {
    deliveries_of(d, notice_id)
        .into_iter()
        .find(|x| x["channel"] == "webhook")
        .unwrap_or_else(|| panic!("notice {notice_id} has no webhook delivery"))
}

fn post_notice(d: &Daemon, kind: &str, data: Value) -> u64 {
    let v = d.post_expect(
        "/v1/notices",
        &json!({"client_id": "acme", "type": kind, "data": data}),
        201,
    );
    v["id"].as_u64().unwrap()
}

/// Whether a receiver record carries webhook-id `id`.
fn is_id(x: &Value, id: u64) -> bool {
    x["id"].as_str().and_then(|s| s.parse::<u64>().ok()) == Some(id)
}

fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn webhooks_are_verified_retried_disabled_and_replayed() {
    let d = daemon();
    account(&d, "acme");
    // The secret is generated and shown once; the receiver verifies with it.
    let mut rx = Receiver::new();
    let ep = endpoint(&d, &mut rx, json!(["domain.*", "operator.*"]));
    assert!(
        !d.get_ok("/v1/webhooks").to_string().contains(&rx.secret),
        "the secret is shown only once"
    );

    // 1. Receiver up: a registration arrives, signed so that standardwebhooks accepts it.
    rx.answer(200, 0.0, None);
    rx.start();
    register(&d, "hook-test.ru", "acme");
    let id = notices_of(&d, "type=domain.registered")[0]["id"]
        .as_u64()
        .unwrap();
    let recs = rx.wait_for("the registration", Duration::from_secs(10), |r| {
        r.iter().any(|x| x["event"] == "done")
    });
    assert_eq!(recs[0]["id"], id.to_string());
    assert_eq!(recs[0]["verified"], true, "{recs:?}");
    assert_eq!(recs[0]["type"], "domain.registered");
    assert_eq!(recs[0]["data"]["domain"], "hook-test.ru");

    // 2. Receiver down: retries on the scaled schedule, then it arrives with the same id.
    rx.stop();
    let id2 = post_notice(
        &d,
        "domain.renewed",
        json!({"domain": "hook-test.ru", "expires": "2028-11-23"}),
    );
    wait_api(&d, "three failed attempts", Duration::from_secs(10), |d| {
        webhook_delivery(d, id2)["attempts"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    });
    let w = webhook_delivery(&d, id2);
    let at: Vec<jiff::Timestamp> = w["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| ts(&a["at"]))
        .collect();
    assert!(
        at[1].duration_since(at[0]) >= jiff::SignedDuration::from_millis(300),
        "{w}"
    );
    assert!(
        at[2].duration_since(at[1]) >= jiff::SignedDuration::from_millis(600),
        "{w}"
    );
    assert_eq!(w["state"], "Queued");
    rx.start();
    let recs = rx.wait_for(
        "the renewal after the outage",
        Duration::from_secs(10),
        |r| r.iter().any(|x| x["event"] == "done" && is_id(x, id2)),
    );
    assert!(recs.iter().all(|x| x["verified"] == true), "{recs:?}");
    wait_api(&d, "the delivery Sent", Duration::from_secs(5), |d| {
        webhook_delivery(d, id2)["state"] == "Sent"
    });

    // 3. Retry-After on 503 is honoured (2 s, longer than the schedule's 300 ms).
    rx.answer(503, 0.0, Some(2));
    let id3 = post_notice(
        &d,
        "domain.registrant_changed",
        json!({"domain": "hook-test.ru"}),
    );
    wait_api(&d, "a 503", Duration::from_secs(5), |d| {
        !webhook_delivery(d, id3)["attempts"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    rx.answer(200, 0.0, None);
    wait_api(
        &d,
        "the retry after Retry-After",
        Duration::from_secs(10),
        |d| webhook_delivery(d, id3)["state"] == "Sent",
    );
    let w = webhook_delivery(&d, id3);
    let a = w["attempts"].as_array().unwrap();
    assert_eq!(a[0]["status"], 503);
    assert!(
        ts(&a[1]["at"]).duration_since(ts(&a[0]["at"])) >= jiff::SignedDuration::from_secs(2),
        "{w}"
    );

    // 4. 410 Gone disables the endpoint; its deliveries are held; the operators hear of it.
    rx.answer(410, 0.0, None);
    let id4 = post_notice(
        &d,
        "domain.registrant_changed",
        json!({"domain": "gone.ru"}),
    );
    wait_api(&d, "the endpoint disabled", Duration::from_secs(10), |d| {
        d.get_ok(&format!("/v1/webhooks/{ep}"))["enabled"] == false
    });
    assert_eq!(webhook_delivery(&d, id4)["state"], "Held");
    wait_api(&d, "the operators' notice", Duration::from_secs(5), |d| {
        !notices_of(d, "type=operator.webhook_disabled").is_empty()
    });
    let op = &notices_of(&d, "type=operator.webhook_disabled")[0];
    let opn = notice(&d, op["id"].as_u64().unwrap());
    assert!(opn.to_string().contains("ops@hosting.test"), "{opn}");
    let id5 = post_notice(
        &d,
        "domain.registrant_changed",
        json!({"domain": "later.ru"}),
    );
    wait_api(&d, "held while disabled", Duration::from_secs(5), |d| {
        webhook_delivery(d, id5)["state"] == "Held"
    });
    assert!(
        webhook_delivery(&d, id5)["attempts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Replay refused while disabled.
    let wd = webhook_delivery(&d, id5)["id"].as_u64().unwrap();
    let (s, _) = d.post(&format!("/v1/deliveries/{wd}/replay"), &json!({}));
    assert_eq!(s, 409);

    // 5. Enabled again: replay everything since the start, then one delivery once more.
    rx.answer(200, 0.0, None);
    d.post_expect(&format!("/v1/webhooks/{ep}/enable"), &json!({}), 200);
    let v = d.post_expect(
        &format!("/v1/webhooks/{ep}/replay"),
        &json!({"since": "2000-01-01T00:00:00Z"}),
        200,
    );
    assert!(v["count"].as_u64().unwrap() >= 2, "{v}");
    for n in [id4, id5] {
        rx.wait_for("the replayed notice", Duration::from_secs(10), |r| {
            r.iter()
                .any(|x| x["event"] == "done" && x["status"] == 200 && is_id(x, n))
        });
    }
    let first = webhook_delivery(&d, id)["id"].as_u64().unwrap();
    let before = rx.done().iter().filter(|x| is_id(x, id)).count();
    d.post_expect(&format!("/v1/deliveries/{first}/replay"), &json!({}), 200);
    rx.wait_for("the single replay", Duration::from_secs(10), |r| {
        r.iter()
            .filter(|x| x["event"] == "done" && is_id(x, id))
            .count()
            > before
    });
    // A secret rotation: both keys sign for a while, so the receiver's old secret still works.
    let v = d.post_expect(&format!("/v1/webhooks/{ep}/rotate"), &json!({}), 200);
    assert_ne!(v["secret"], rx.secret.as_str());
    let id6 = post_notice(
        &d,
        "domain.registrant_changed",
        json!({"domain": "rotated.ru"}),
    );
    let recs = rx.wait_for(
        "the notice after the rotation",
        Duration::from_secs(10),
        |r| r.iter().any(|x| x["event"] == "done" && is_id(x, id6)),
    );
    let last = recs.iter().rfind(|x| is_id(x, id6)).unwrap();
    assert_eq!(last["signatures"], 2, "{last}");
    // Every request the receiver got carried a valid signature.
    let all = rx.records();
    assert!(all.iter().all(|x| x["verified"] == true), "{all:?}");
    // The delivery log keeps every attempt with its status, latency and answer.
    let log = d.get_ok(&format!("/v1/webhooks/{ep}/deliveries"));
    assert!(log.to_string().contains("\"answer\":\"not now\""), "{log}");
}

#[test]
fn sigkill_during_a_webhook_delivery_loses_nothing_and_repeats_the_id() {
    let mut d = daemon();
    account(&d, "acme");
    let mut rx = Receiver::new();
    endpoint(&d, &mut rx, json!(["balance.*"]));
    rx.answer(200, 3.0, None);
    rx.start();
    let id = post_notice(
        &d,
        "balance.topup_failed",
        json!({"reason": "card declined"}),
    );
    rx.wait_for("the delivery in flight", Duration::from_secs(10), |r| {
        r.iter().any(|x| x["event"] == "start")
    });
    d.kill();
    rx.answer(200, 0.0, None);
    d.restart();
    wait_api(
        &d,
        "the delivery done after the restart",
        Duration::from_secs(15),
        |d| webhook_delivery(d, id)["state"] == "Sent",
    );
    let starts: Vec<Value> = rx
        .records()
        .into_iter()
        .filter(|x| x["event"] == "start")
        .collect();
    assert!(starts.len() >= 2, "{starts:?}");
    assert!(
        starts.iter().all(|x| is_id(x, id) && x["verified"] == true),
        "{starts:?}"
    );
}

/// An endpoint that has not succeeded for `webhook_disable_after` (5 days by default; 1 s
/// here) is disabled, its delivery kept (Held), and the operators get a notice.
#[test]
fn an_endpoint_failing_too_long_is_disabled_and_the_operators_hear_of_it() {
    let d = Daemon::start_with(Options {
        extra_config: format!("{SCHEDULE}webhook_disable_after = \"1s\"\n"),
        ..Options::default()
    });
    account(&d, "acme");
    let mut rx = Receiver::new();
    let ep = endpoint(&d, &mut rx, json!(["balance.*"]));
    // The receiver never starts: every attempt is refused.
    let id = post_notice(&d, "balance.topup_failed", json!({"reason": "declined"}));
    wait_api(&d, "the endpoint disabled", Duration::from_secs(15), |d| {
        d.get_ok(&format!("/v1/webhooks/{ep}"))["enabled"] == false
    });
    let e = d.get_ok(&format!("/v1/webhooks/{ep}"));
    assert!(
        e["disabled_reason"]
            .as_str()
            .unwrap()
            .starts_with("no success since"),
        "{e}"
    );
    let w = webhook_delivery(&d, id);
    assert_eq!(w["state"], "Held", "{w}");
    assert!(w["attempts"].as_array().unwrap().len() >= 2, "{w}");
    wait_api(&d, "the operators' notice", Duration::from_secs(5), |d| {
        notices_of(d, "type=operator.webhook_disabled").len() == 1
    });
}

/// A bounce of a notice e-mail (the intake already recognises bounces) is recorded on the
/// delivery it returns.
#[test]
fn a_bounced_notice_email_is_recorded_on_its_delivery() {
    let d = daemon();
    account(&d, "acme");
    let id = post_notice(&d, "balance.topup_failed", json!({"reason": "declined"}));
    wait_api(&d, "the e-mail sent", Duration::from_secs(10), |d| {
        deliveries_of(d, id)[0]["state"] == "Sent"
    });
    let del = deliveries_of(&d, id)[0]["id"].as_u64().unwrap();
    // An RFC 3464 report written by our own MTA (the callback's domain is a bounce host by
    // default): a notice carries no VERP address, so that is what proves this bounce.
    let dsn = |del: u64, from: &str, mta: &str| {
        format!(
            "Return-Path: <>\r\nFrom: MAILER-DAEMON@{from}\r\nTo: notices@hosting.test\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-{del}-{mta}>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"R\"\r\n\r\n--R\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {mta}\r\n\r\nFinal-Recipient: rfc822; owner@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--R\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <notice-{del}@localhost>\r\nSubject: A top-up failed\r\n\r\n--R--\r\n"
        )
    };
    // First a forged one, from a foreign host: it records nothing.
    let forged = dsn(del, "mx.customer.test", "mx.customer.test");
    let bounce = dsn(del, "mail.sandbox.invalid", "mail.sandbox.invalid");
    let inbox = d.dir().join("var/inbox");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(inbox.join(sub)).unwrap();
    }
    std::fs::write(inbox.join("tmp/b0.eml"), forged).unwrap();
    std::fs::rename(inbox.join("tmp/b0.eml"), inbox.join("new/b0.eml")).unwrap();
    wait_api(
        &d,
        "the forged bounce settled",
        Duration::from_secs(10),
        |d| {
            d.get_ok("/v1/inbox?state=Quarantined")["messages"]
                .as_array()
                .is_some_and(|m| !m.is_empty())
        },
    );
    assert_eq!(
        deliveries_of(&d, id)[0]["state"],
        "Sent",
        "a forged bounce records nothing"
    );
    std::fs::write(inbox.join("tmp/b1.eml"), bounce).unwrap();
    std::fs::rename(inbox.join("tmp/b1.eml"), inbox.join("new/b1.eml")).unwrap();
    wait_api(&d, "the bounce recorded", Duration::from_secs(10), |d| {
        deliveries_of(d, id)[0]["state"] == "Bounced"
    });
    let dl = &deliveries_of(&d, id)[0];
    assert!(dl["bounce"].as_str().unwrap().contains("550"), "{dl}");
}

/// Notice templates are overridable by a directory and reloaded with `POST /v1/reload`; a broken
/// one is refused with its file and line, and the old templates stay in force.
#[test]
fn notice_templates_reload_from_a_directory_and_a_broken_one_is_refused() {
    let tdir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tdir.path().join("ru")).unwrap();
    let file = tdir.path().join("ru/balance.topup_failed.txt");
    std::fs::write(
        &file,
        "Subject: Платёж не прошёл\n\nверсия-1 {{ reason }}\n",
    )
    .unwrap();
    let d = Daemon::start_with(Options {
        extra_config: format!("{SCHEDULE}templates_dir = \"{}\"\n", tdir.path().display()),
        ..Options::default()
    });
    account(&d, "acme");
    let sent = |d: &Daemon, id: u64| {
        wait_api(d, "the e-mail sent", Duration::from_secs(10), |d| {
            deliveries_of(d, id)[0]["state"] == "Sent"
        });
        let del = deliveries_of(d, id)[0]["id"].as_u64().unwrap();
        common::read(&d.outbox_dir().join(format!("notices/notice-{del}.eml")))
    };
    let m = sent(
        &d,
        post_notice(&d, "balance.topup_failed", json!({"reason": "x"})),
    );
    assert!(m.contains("версия-1 x"), "{m}");
    std::fs::write(
        &file,
        "Subject: Платёж не прошёл\n\nверсия-2 {{ reason }}\n",
    )
    .unwrap();
    d.post_expect("/v1/reload", &json!({}), 200);
    let m = sent(
        &d,
        post_notice(&d, "balance.topup_failed", json!({"reason": "y"})),
    );
    assert!(m.contains("версия-2 y"), "the reload did not take: {m}");
    std::fs::write(&file, "Subject: x\n\nline\n{% if %}\n").unwrap();
    let (s, v) = d.post("/v1/reload", &json!({}));
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ru/balance.topup_failed.txt, line 4"),
        "{v}"
    );
    let m = sent(
        &d,
        post_notice(&d, "balance.topup_failed", json!({"reason": "z"})),
    );
    assert!(
        m.contains("версия-2 z"),
        "the old templates stay in force: {m}"
    );
}

/// The RFC 8058 one-click link from a notice e-mail (the `dir` transport here; the same through
/// Postfix and Dovecot in tests/notices_mail.rs): a GET only shows a page; the POST, without the
/// API token, unsubscribes with a 200 and no redirect; the next notice of that category is not
/// sent to that user; a mandatory one still is.
#[test]
fn one_click_unsubscribe_stops_the_category_but_not_mandatory_notices() {
    let d = daemon();
    account(&d, "acme");
    d.put(
        "/v1/clients/acme/users/adm/subscriptions",
        &json!({"acting_user": "adm", "subscriptions": {"domains": ["email"]}}),
    );
    let mail_to = |d: &Daemon, id: u64, who: &str| -> Option<String> {
        wait_api(d, "the e-mails sent", Duration::from_secs(10), |d| {
            deliveries_of(d, id).iter().all(|x| x["state"] == "Sent")
        });
        deliveries_of(d, id)
            .iter()
            .find(|x| x["address"] == who)
            .map(|x| {
                common::read(
                    &d.outbox_dir()
                        .join(format!("notices/notice-{}.eml", x["id"])),
                )
            })
    };
    let id = post_notice(&d, "domain.registrant_changed", json!({"domain": "a.ru"}));
    let m = mail_to(&d, id, "admin@customer.test").expect("the admin's e-mail");
    let url = m
        .lines()
        .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
        .and_then(|l| l.strip_suffix('>'))
        .expect("List-Unsubscribe")
        .to_owned();
    let path = url
        .strip_prefix(&d.base())
        .expect("served by regmail itself");
    let r = d.call("GET", path, &[], Body::None, false);
    assert_eq!(r.status, 200);
    assert!(r.text.contains("<form method=post>"), "{}", r.text);
    assert_eq!(
        d.get_ok("/v1/clients/acme/users/adm/subscriptions")["subscriptions"],
        json!({"domains": ["email"]}),
        "a GET changed the subscription"
    );
    let r = d.call(
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Body::Raw(b"List-Unsubscribe=One-Click"),
        false,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("location").is_none());
    assert_eq!(
        d.get_ok("/v1/clients/acme/users/adm/subscriptions")["subscriptions"],
        json!({})
    );
    // A forged token is refused.
    let r = d.call("POST", &format!("{path}x"), &[], Body::None, false);
    assert_eq!(r.status, 404, "{}", r.text);
    let id = post_notice(&d, "domain.registrant_changed", json!({"domain": "b.ru"}));
    assert!(mail_to(&d, id, "admin@customer.test").is_none());
    assert!(mail_to(&d, id, "owner@customer.test").is_some());
    let id = post_notice(
        &d,
        "domain.deletion_warning",
        json!({"domain": "b.ru", "date": "2028-01-01"}),
    );
    let m = mail_to(&d, id, "admin@customer.test").expect("the mandatory notice");
    assert!(!m.contains("List-Unsubscribe"), "{m}");
}
