//! The trust corpus (issue 9 part A) through the real intake: forged From with and without
//! Authentication-Results, foreign and forged authserv-ids, failing and missing DKIM, forged
//! bounces of every shape and weakly correlated replies must end as fixtures/hostile/trust/
//! manifest.toml says with NO state moved; the positive cases (a DKIM-signed reply, our MX's
//! dmarc=pass, a real bounce to the VERP address, a contradiction, the duplicate rule) must
//! move exactly what the manifest says.

mod common;

use std::path::Path;

use common::intake::{IntakeWorld, TestKey};
use regmail::core::{Phase, RequestId, RequestState};
use regmail::store::inbox::InboxState;
use regmail::trust::{AuthLevel, DkimKey, TrustConfig};
use toml::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hostile/trust");

fn rid(s: &str) -> RequestId {
    RequestId::parse(s).expect("id")
}

fn d1() -> RequestId {
    rid("0190c0de-0000-7000-8000-0000000000d1")
}
fn d2() -> RequestId {
    rid("0190c0de-0000-7000-8000-0000000000d2")
}
fn c1() -> RequestId {
    rid("0190c0de-0000-7000-8000-0000000000c1")
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Everything the test can see move: every request, domain and client, as JSON.
fn snapshot(w: &IntakeWorld) -> String {
    let mut out = String::new();
    for id in [d1(), d2(), c1()] {
        out.push_str(&serde_json::to_string(&w.request(id)).expect("json"));
    }
    for d in ["trust-one.ru", "trust-two.ru", "waiting-for-c-new.ru"] {
        out.push_str(&serde_json::to_string(&w.domain(d)).expect("json"));
    }
    out
}

/// The corpus file with its placeholders filled in, CRLF line ends.
fn load(file: &str, w: &IntakeWorld) -> Vec<u8> {
    let text = std::fs::read_to_string(Path::new(DIR).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let handle = w
        .request(c1())
        .handle
        .map(|h| h.to_string())
        .unwrap_or_default();
    text.replace("{{TOKEN_D1}}", &d1().token())
        .replace("{{TOKEN_D2}}", &d2().token())
        .replace("{{TOKEN_C1}}", &c1().token())
        .replace("{{HANDLE_C1}}", &handle)
        .replace('\n', "\r\n")
        .into_bytes()
}

fn replace_once(raw: &[u8], from: &str, to: &str, file: &str) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).expect("utf8");
    assert!(text.contains(from), "{file}: cannot tamper, no {from:?}");
    text.replacen(from, to, 1).into_bytes()
}

fn tamper(raw: Vec<u8>, how: &str, file: &str) -> Vec<u8> {
    match how {
        "signature" => {
            // Flip one character of b= (the signature value).
            let text = String::from_utf8(raw).expect("utf8");
            let at = text.find(" b=").expect("b=") + 3;
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            bytes
        }
        "body" => replace_once(&raw, "12.03.2028", "12.03.2035", file),
        "subject" => replace_once(
            &raw,
            "Subject: Re: NEW domain trust-one.ru",
            "Subject: Re: NEW domain trust-one.ru [urgent]",
            file,
        ),
        "second-from" => {
            let mut out = b"From: R01 Robot <robot@registrar.test>\r\n".to_vec();
            out.extend_from_slice(&raw);
            out
        }
        "append" => {
            let mut out = raw;
            out.extend_from_slice(b"Domain trust-one.ru registered till 12.03.2035.\r\n");
            out
        }
        other => panic!("{file}: unknown tamper {other}"),
    }
}

#[test]
fn every_trust_fixture_ends_as_the_manifest_says_and_hostile_mail_moves_nothing() {
    let manifest: Value = toml::from_str(
        &std::fs::read_to_string(Path::new(DIR).join("manifest.toml")).expect("manifest"),
    )
    .expect("manifest toml");
    let ctx = &manifest["context"];
    let registrar = TestKey::new();
    let attacker = TestKey::new();
    let strings = |k: &str| -> Vec<String> {
        ctx[k]
            .as_array()
            .expect(k)
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let base = TrustConfig {
        authentication: AuthLevel::parse(s(ctx, "authentication").expect("level")).expect("lvl"),
        authserv_ids: strings("authserv_ids"),
        bounce_hosts: strings("bounce_hosts"),
        dkim_keys: vec![
            DkimKey {
                domain: "registrar.test".into(),
                selector: "s1".into(),
                record: registrar.record.clone(),
            },
            DkimKey {
                domain: "attacker.test".into(),
                selector: "s1".into(),
                record: attacker.record.clone(),
            },
        ],
        envelope_sender: None,
    };

    let fixtures = manifest["fixture"].as_array().expect("fixtures");
    let (mut hostile, mut positive) = (0, 0);
    let mut table = Vec::new();
    for f in fixtures {
        let file = s(f, "file").expect("file");
        let mut trust = base.clone();
        if let Some(level) = s(f, "authentication") {
            trust.authentication = AuthLevel::parse(level).expect("level");
        }
        let mut w = IntakeWorld::new(trust);
        w.holder();
        w.sent_domain_request("trust-one.ru", d1());
        w.sent_domain_request("trust-two.ru", d2());
        w.sent_client_request("c-new", c1());
        if s(f, "setup") == Some("complete-d1") {
            w.apply(regmail::core::Event::RecordOutcome {
                request: d1(),
                outcome: regmail::core::ReplyOutcome::Completed {
                    handle: None,
                    expires: Some("2028-03-12".parse().expect("date")),
                },
                note: "set-up".into(),
            });
        }
        if let Some(before) = s(f, "before") {
            let mid = s(f, "before_message_id").expect("before_message_id");
            let raw = load(before, &w);
            let text = String::from_utf8(raw).expect("utf8");
            let old = text
                .lines()
                .find(|l| l.starts_with("Message-ID:"))
                .expect("Message-ID")
                .to_owned();
            let raw = text.replacen(&old, &format!("Message-ID: {mid}"), 1);
            let first = w.feed(&format!("before-{file}"), raw.as_bytes());
            assert_eq!(
                first.state,
                InboxState::Quarantined,
                "{file}: forged first copy"
            );
        }

        let mut raw = load(file, &w);
        if let Some(who) = s(f, "sign") {
            let key = match who {
                "registrar" => &registrar,
                "attacker" => &attacker,
                other => panic!("{file}: unknown key {other}"),
            };
            raw = key.sign(
                s(f, "sign_domain").unwrap_or("registrar.test"),
                s(f, "sign_selector").unwrap_or("s1"),
                &raw,
                f.get("body_length")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            );
        }
        if let Some(how) = s(f, "tamper") {
            raw = tamper(raw, how, file);
        }

        let before = snapshot(&w);
        let log_before = w.store.log_seq().expect("seq");
        let done = w.feed(file, &raw);
        let reason = done.reason.clone().unwrap_or_default();
        let want_end = match s(f, "end").expect("end") {
            "quarantined" => InboxState::Quarantined,
            "unmatched" => InboxState::Unmatched,
            "ignored" => InboxState::Ignored,
            "applied" => InboxState::Applied,
            other => panic!("{file}: unknown end {other}"),
        };
        assert_eq!(done.state, want_end, "{file}: {reason}");
        let want_reason = s(f, "reason").unwrap_or("");
        assert!(
            reason.contains(want_reason),
            "{file}: reason {reason:?} does not say {want_reason:?}"
        );
        let moves = s(f, "moves").unwrap_or("none");
        if moves == "none" {
            hostile += 1;
            assert_eq!(snapshot(&w), before, "{file}: state moved ({reason})");
            // Only the intake's own mail.* line was logged: no request, domain or client entry.
            let entries = w.store.log_since(log_before, 100).expect("log");
            assert!(
                entries.iter().all(|e| e.entry.action.starts_with("mail.")),
                "{file}: {:?}",
                entries.iter().map(|e| &e.entry.action).collect::<Vec<_>>()
            );
        } else {
            positive += 1;
            let (who, what) = moves.split_once(':').expect("moves");
            assert_eq!(who, "d1", "{file}");
            let d = w.domain("trust-one.ru");
            if what == "Conflict" {
                assert_eq!(d.phase, Phase::Conflict, "{file}: {d:?}");
                assert!(
                    d.last_error.as_deref().unwrap_or("").contains("conflict"),
                    "{file}: {d:?}"
                );
                // Nothing applied is undone.
                assert_eq!(w.request(d1()).state, RequestState::Completed, "{file}");
                assert_eq!(w.store.counts().expect("counts").conflicts, 1, "{file}");
            } else {
                let state = w.request(d1()).state;
                assert_eq!(state.as_str(), what, "{file}: {reason}");
            }
            // The others never move.
            assert_eq!(w.request(d2()).state, RequestState::Sent, "{file}");
            assert_eq!(w.request(c1()).state, RequestState::Sent, "{file}");
            if f.get("again").and_then(Value::as_bool) == Some(true) {
                let mut copy = b"X-Redelivered: yes\r\n".to_vec();
                copy.extend_from_slice(&raw);
                let third = w.feed(&format!("again-{file}"), &copy);
                assert_eq!(third.state, InboxState::Ignored, "{file}: third copy");
                assert!(
                    third
                        .reason
                        .as_deref()
                        .unwrap_or("")
                        .contains("second copy"),
                    "{file}: {:?}",
                    third.reason
                );
            }
        }
        table.push(format!("{:<48} {:<12} {reason}", file, done.state.as_str()));
    }
    println!("{}", table.join("\n"));
    println!("{hostile} hostile messages moved nothing; {positive} positive cases moved state");
    assert!(hostile >= 25, "the corpus has {hostile} hostile messages");
    assert!(positive >= 3);
}

/// The daemon's maildir: `var/inbox` beside its configuration (the embedded default).
fn drop_mail(d: &common::Daemon, name: &str, raw: &[u8]) {
    let new = d.dir().join("var/inbox/new");
    std::fs::create_dir_all(&new).expect("maildir");
    let tmp = d.dir().join(format!("var/inbox/{name}.tmp"));
    std::fs::write(&tmp, raw).expect("write");
    std::fs::rename(&tmp, new.join(name)).expect("rename");
}

/// The one inbox record with this Message-ID, once it is settled.
fn settled(d: &common::Daemon, mid: &str) -> serde_json::Value {
    let mut found = serde_json::Value::Null;
    d.wait_for(&format!("message {mid} to be settled"), |d| {
        let all = d.get_ok("/v1/inbox?limit=1000");
        match all["messages"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["message_id"] == mid).cloned())
        {
            Some(m) if m["state"] != "Pending" => {
                found = m;
                true
            }
            _ => false,
        }
    });
    found
}

/// Issue 12 item 3 and issue 9 part A through the daemon's API: an operator assigns a
/// quarantined (unauthenticated) and an ignored (stranger's) message, with a required note,
/// recorded as the operator's decision; a signed contradiction puts the domain in Conflict,
/// visible in its view and in /metrics.
#[test]
fn an_operator_assigns_quarantined_and_ignored_mail_and_a_conflict_is_visible() {
    use common::{Daemon, Options, imported, order};
    use serde_json::json;
    let key = TestKey::new();
    let d = Daemon::start_with(Options {
        extra_config: format!(
            "\n[registrar]\nsenders = [\"robot@registrar.test\"]\nauthentication = \"dkim\"\n\n[[inbound.dkim_keys]]\ndomain = \"registrar.test\"\nselector = \"s1\"\nrecord = \"{}\"\n",
            key.record
        ),
        ..Options::default()
    });
    assert_eq!(
        d.post("/v1/clients", &imported("c-op", "GW_9_1-GPT")).0,
        201
    );
    let mut reqs = Vec::new();
    for name in ["assign-one.ru", "assign-two.ru"] {
        assert_eq!(d.post("/v1/domains", &order(name, "c-op", true)).0, 202);
        let mut r = serde_json::Value::Null;
        d.wait_for("the request to go out", |d| {
            r = d.get_ok(&format!("/v1/domains/{name}"))["open_request"].clone();
            r["state"] == "Sent"
        });
        reqs.push(r);
    }
    let mid_host = "sandbox.invalid";
    let reply = |n: &str, from: &str, req: &serde_json::Value, body: &str| -> Vec<u8> {
        format!(
            "From: {from}\r\nTo: regmail@sandbox.invalid\r\nSubject: Re: domain\r\nMessage-ID: <{n}@registrar.test>\r\nIn-Reply-To: <{}@{mid_host}>\r\n\r\n{body}\r\n",
            req["token"].as_str().unwrap_or_default()
        )
        .into_bytes()
    };

    // 1. Unsigned, from the registrar's address: quarantined, nothing moves.
    drop_mail(
        &d,
        "q1",
        &reply(
            "q1",
            "robot@registrar.test",
            &reqs[0],
            "Domain assign-one.ru registered till 12.03.2028.",
        ),
    );
    let q = settled(&d, "q1@registrar.test");
    assert_eq!(q["state"], "Quarantined", "{q}");
    assert_eq!(
        d.get_ok("/v1/domains/assign-one.ru")["status"],
        "Registering"
    );
    // The note is required.
    let (st, body) = d.post(
        "/v1/inbox/assign",
        &json!({"key": q["key"], "request_id": reqs[0]["id"]}),
    );
    assert_eq!(
        (st, body["error"]["field"].as_str()),
        (422, Some("note")),
        "{body}"
    );
    let (st, body) = d.post(
        "/v1/inbox/assign",
        &json!({"key": q["key"], "request_id": reqs[0]["id"], "note": "confirmed by phone"}),
    );
    assert_eq!(st, 200, "{body}");
    let dom = d.get_ok("/v1/domains/assign-one.ru");
    assert_eq!(
        (dom["status"].as_str(), dom["expires"].as_str()),
        (Some("Registered"), Some("2028-03-12")),
        "{dom}"
    );
    let id0 = reqs[0]["id"].as_str().unwrap_or_default();
    let log = d.get_ok(&format!("/v1/requests/{id0}/log?limit=100"));
    let done = log["entries"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["action"] == "request.completed")
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(done["actor"], "operator", "{done}");
    let note = done["evidence"]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("operator's decision")
            && note.contains("confirmed by phone")
            && note.contains("Quarantined"),
        "{done}"
    );

    // 2. A stranger's message: ignored; assigned with the operator's own reading.
    drop_mail(
        &d,
        "i1",
        &reply(
            "i1",
            "eve@attacker.test",
            &reqs[1],
            "Domain assign-two.ru: refused.",
        ),
    );
    let i = settled(&d, "i1@registrar.test");
    assert_eq!(i["state"], "Ignored", "{i}");
    let (st, body) = d.post(
        "/v1/inbox/assign",
        &json!({"key": i["key"], "request_id": reqs[1]["id"], "note": "forwarded by the registrar's support"}),
    );
    assert_eq!(
        (st, body["error"]["field"].as_str()),
        (422, Some("event")),
        "no rule may move state for a stranger: {body}"
    );
    let (st, body) = d.post(
        "/v1/inbox/assign",
        &json!({"key": i["key"], "request_id": reqs[1]["id"], "event": "rejected", "reason": "refused", "note": "forwarded by the registrar's support"}),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(d.get_ok("/v1/domains/assign-two.ru")["status"], "Error");

    // 3. A signed refusal of the completed assign-one.ru: a visible conflict, nothing undone.
    let raw = reply(
        "c1",
        "robot@registrar.test",
        &reqs[0],
        "Domain assign-one.ru already registered by another registrant.",
    );
    drop_mail(&d, "c1", &key.sign("registrar.test", "s1", &raw, false));
    let c = settled(&d, "c1@registrar.test");
    assert_eq!(c["state"], "Applied", "{c}");
    let dom = d.get_ok("/v1/domains/assign-one.ru");
    assert_eq!(
        (dom["status"].as_str(), dom["phase"].as_str()),
        (Some("Registered"), Some("Conflict")),
        "{dom}"
    );
    assert!(
        dom["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("conflict"),
        "{dom}"
    );
    let (_, metrics) = d.raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        metrics.contains("regmail_domains_in_conflict 1"),
        "{metrics}"
    );
    // ... and the operators are told, once, in the same transaction as the conflict.
    let notices = d.get_ok("/v1/notices?type=operator.domain_conflict");
    let list = notices["notices"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{notices}");
    assert_eq!(list[0]["domain"], "assign-one.ru", "{notices}");
}
