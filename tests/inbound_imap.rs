//! Replies in through a real Dovecot (issue 5): `regmail serve` with `[inbound] source = "imap"`
//! reads the gateway mailbox of `scripts/mailstack.sh` over IMAP (STARTTLS on 143, verified
//! with the test CA); requests go out with the `dir` transport, and the registrar's replies are
//! put into the gateway's INBOX with `doveadm save` (`mailstack.sh inject`) or delivered by
//! Postfix (SMTP to 127.0.0.1:25).
//!
//! The stack is started by the tests themselves (once per binary) and every test fails loudly
//! when it cannot. The gateway mailbox is shared: the tests run one at a time
//! ([`support_imap::exclusive`]) and each empties INBOX and Processed first.

mod common;
mod support_imap;
mod support_mail;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support_imap::{
    GATEWAY, ImapConfig, ImapDaemon, OTHER, PROCESSED, ROBOT, Reply, copy, count, exclusive,
    inject, list, mailstack, reset_gateway, set_uidvalidity, smtp_send, status,
};

/// How long a reply may take to be applied when the daemon polls every 2 s (or IDLEs).
const APPLY: Duration = Duration::from_secs(15);

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn id(r: &Value) -> String {
    s(&r["id"]).to_owned()
}

/// Waits until the gateway's INBOX is empty (everything moved to Processed).
fn wait_inbox_empty(d: &ImapDaemon, timeout: Duration) {
    d.wait_until("the gateway INBOX to be empty", timeout, |_| {
        count("INBOX") == 0
    });
}

/// The actions of the action log entries whose evidence names this Message-ID.
fn actions_for_message(log: &[Value], mid: &str) -> Vec<String> {
    log.iter()
        .filter(|e| e["evidence"]["message_id"] == mid)
        .map(|e| s(&e["action"]).to_owned())
        .collect()
}

// ---- 1. states advance ------------------------------------------------------------------------

/// ack -> Acknowledged with the task id; client completion -> client Registered with its
/// handle; the domain request goes out; its ack and completion -> domain Registered with the
/// expiry from the reply. Every reply ends in Processed, unread (no \Seen: BODY.PEEK), INBOX empty.
#[test]
fn states_advance_through_dovecot() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig::default());

    let client_req = d.person_with_order("c-flow", "flow-one.ru");
    assert_eq!(client_req["kind"], "client-registration");
    let handle = s(&client_req["handle"]).to_owned();
    let mail = d.mail_of(&client_req);
    assert!(
        mail.contains(&format!("Message-ID: {}", s(&client_req["message_id"]))),
        "the request e-mail carries the Message-ID the API shows: {mail}"
    );

    // 1. The acknowledgement, tied by the Subject token.
    let ack = Reply::ack(&client_req, "4101");
    inject(&ack.bytes());
    let r = d.wait_request(&id(&client_req), "Acknowledged", APPLY);
    assert_eq!(r["task_id"], "4101", "{r}");
    let rec = d.wait_settled(&ack.message_id, APPLY);
    assert_eq!(rec["state"], "Applied", "{rec}");
    assert_eq!(rec["rule"], "queued-task-id-first", "{rec}");
    assert_eq!(rec["request"], client_req["id"], "{rec}");
    assert!(s(&rec["reason"]).contains("subject-token"), "{rec}");
    assert!(
        s(&rec["key"]).starts_with("imap/INBOX/"),
        "the key is (mailbox, UIDVALIDITY, UID): {rec}"
    );
    let acked = d.log_of(&id(&client_req), "request.acknowledged");
    assert_eq!(acked.len(), 1, "{acked:?}");
    let ev = &acked[0]["evidence"];
    assert_eq!(ev["message_id"], ack.message_id.as_str(), "{ev}");
    assert_eq!(ev["rule"], "queued-task-id-first", "{ev}");
    assert_eq!(ev["correlation"], "subject-token", "{ev}");
    assert_eq!(ev["task_id"], "4101", "{ev}");

    // 2. The client completion, tied by In-Reply-To only.
    let done = Reply::client_registered(&client_req, "4101", &handle);
    inject(&done.bytes());
    d.wait_request(&id(&client_req), "Completed", APPLY);
    let c = d.get_ok("/v1/clients/c-flow");
    assert_eq!(c["status"], "Registered", "{c}");
    assert_eq!(c["handle"], handle.as_str(), "{c}");
    let rec = d.inbox_by_mid(&done.message_id);
    assert_eq!(rec["state"], "Applied", "{rec}");
    assert_eq!(rec["rule"], "client-registered", "{rec}");
    assert!(s(&rec["reason"]).contains("message-id"), "{rec}");

    // 3. The registered client releases the domain: its request goes out.
    let mut dom_req = Value::Null;
    d.wait_until("the domain request to go out", APPLY, |d| {
        let dom = d.get_ok("/v1/domains/flow-one.ru");
        if dom["open_request"]["state"] == "Sent" {
            dom_req = dom["open_request"].clone();
            true
        } else {
            false
        }
    });
    assert_eq!(dom_req["kind"], "domain-registration");
    let dom_mail = d.mail_of(&dom_req);
    assert!(dom_mail.contains("flow-one.ru"), "{dom_mail}");

    // 4. Its acknowledgement and completion, with the expiry from the reply.
    let dack = Reply::ack(&dom_req, "4102");
    inject(&dack.bytes());
    let r = d.wait_request(&id(&dom_req), "Acknowledged", APPLY);
    assert_eq!(r["task_id"], "4102");
    let dom = d.get_ok("/v1/domains/flow-one.ru");
    assert_eq!(dom["phase"], "QueuedAtRegistrar", "{dom}");
    let ddone = Reply::domain_registered(&dom_req, "flow-one.ru", "24.11.2027");
    inject(&ddone.bytes());
    d.wait_request(&id(&dom_req), "Completed", APPLY);
    let dom = d.get_ok("/v1/domains/flow-one.ru");
    assert_eq!(dom["status"], "Registered", "{dom}");
    assert_eq!(
        dom["expires"], "2027-11-24",
        "the expiry comes from the reply: {dom}"
    );
    let rec = d.inbox_by_mid(&ddone.message_id);
    assert_eq!(rec["rule"], "domain-registered", "{rec}");
    let reg = d.get_ok("/v1/domains/flow-one.ru/log");
    assert!(
        reg["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "domain.registered"
                && e["evidence"]["message_id"] == ddone.message_id.as_str()),
        "domain.registered names the reply as evidence: {reg}"
    );

    // 5. Every reply was moved, unread.
    wait_inbox_empty(&d, APPLY);
    let processed = list(PROCESSED);
    let mids: BTreeSet<String> = processed
        .iter()
        .map(|m| m.message_id.trim_matches(['<', '>']).to_owned())
        .collect();
    for r in [&ack, &done, &dack, &ddone] {
        assert!(
            mids.contains(&r.message_id),
            "{} is not in Processed: {processed:?}",
            r.message_id
        );
    }
    assert_eq!(processed.len(), 4, "{processed:?}");
    for m in &processed {
        assert!(
            !m.flags.contains("\\Seen"),
            "regmail marked {} \\Seen (it must fetch with BODY.PEEK[]): {processed:?}",
            m.message_id
        );
    }
    let all = d.inbox(None);
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|m| m["state"] == "Applied"), "{all:?}");
}

/// A client the registrar completed has no open request any more (src/core/model.rs documents
/// `Client::open_request` as "the client request in flight or last failed").
#[test]
fn registered_client_keeps_no_open_request() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig::default());
    let req = d.person_with_order("c-open", "open-one.ru");
    inject(&Reply::ack(&req, "4201").bytes());
    inject(&Reply::client_registered(&req, "4201", s(&req["handle"])).bytes());
    d.wait_request(&id(&req), "Completed", APPLY);
    let c = d.get_ok("/v1/clients/c-open");
    assert_eq!(c["status"], "Registered", "{c}");
    assert!(
        c["open_request"].is_null(),
        "BUG (src/core/transition.rs complete_owner, ClientRegistration): the completed request \
         stays the client's open_request after the client is Registered (domains clear theirs): {}",
        c["open_request"]
    );
}

// ---- 2. SIGKILL while processing ----------------------------------------------------------------

/// 30 replies for 10 requests (per request: an ack, a second delivery of the same ack with the
/// same Message-ID, and the registrar repeating its ack under a new Message-ID), the daemon
/// SIGKILLed while it works through them, then restarted: every message has exactly one
/// record, settled Applied or Ignored; every request was acknowledged exactly once; INBOX empty.
#[test]
fn sigkill_while_processing_loses_nothing_and_applies_nothing_twice() {
    let _g = exclusive();
    reset_gateway();
    let mut d = ImapDaemon::start(ImapConfig::default());
    let reqs: Vec<Value> = (0..10)
        .map(|i| d.imported_with_order("c-kill", "KILL1-GPT", &format!("kill-{i}.ru")))
        .collect();
    // Stop cleanly, fill INBOX, start again: the daemon finds a batch waiting.
    d.stop();
    let mut expected: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut first_acks = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let ack = Reply::ack(r, &format!("{}", 5000 + i));
        let mut again = ack.clone();
        again.extra_headers = vec![format!(
            "Received: from mx2.registrar.test by mail.gateway.test; second delivery {i}"
        )];
        let mut repeat = Reply::ack(r, &format!("{}", 5000 + i));
        repeat.body = format!("Task {} queued.\n(repeated notice)\n", 5000 + i);
        inject(&ack.bytes());
        inject(&again.bytes());
        inject(&repeat.bytes());
        first_acks.push(ack.message_id.clone());
        expected.insert(ack.message_id.clone(), "Applied");
        expected.insert(repeat.message_id.clone(), "Applied");
    }
    let injected_uids: BTreeSet<u32> = list("INBOX").iter().map(|m| m.uid).collect();
    assert_eq!(injected_uids.len(), 30);
    let uidvalidity = status("INBOX").expect("INBOX").uidvalidity;

    d.restart();
    let t = Instant::now();
    let settled_at_kill = loop {
        let settled = d
            .inbox(None)
            .iter()
            .filter(|m| m["state"] != "Pending")
            .count();
        if settled >= 3 {
            d.kill();
            break settled;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "nothing was processed within 20 s\n{}",
            d.stderr_tail(40)
        );
    };
    let left_in_inbox = count("INBOX");
    eprintln!(
        "SIGKILL after {:?}: {settled_at_kill} of 30 settled, {left_in_inbox} still in INBOX",
        t.elapsed()
    );
    assert!(
        settled_at_kill < 30 && left_in_inbox > 0,
        "the kill came too late to interrupt anything ({settled_at_kill} settled, {left_in_inbox} in INBOX)"
    );

    d.restart();
    d.wait_until(
        "all 30 messages to be settled",
        Duration::from_secs(30),
        |d| {
            let all = d.inbox(None);
            all.len() >= 30 && all.iter().all(|m| m["state"] != "Pending")
        },
    );
    wait_inbox_empty(&d, APPLY);
    std::thread::sleep(Duration::from_millis(500));

    let all = d.inbox(None);
    assert_eq!(all.len(), 30, "one record per message: {all:#?}");
    let keys: BTreeSet<String> = all.iter().map(|m| s(&m["key"]).to_owned()).collect();
    let want_keys: BTreeSet<String> = injected_uids
        .iter()
        .map(|u| format!("imap/INBOX/{uidvalidity}/{u}"))
        .collect();
    assert_eq!(keys, want_keys, "every injected UID has exactly one record");
    let mut per_mid: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for m in &all {
        per_mid
            .entry(s(&m["message_id"]).to_owned())
            .or_default()
            .push(m);
    }
    for (mid, recs) in &per_mid {
        match expected.get(mid) {
            Some(_) if recs.len() == 1 => assert_eq!(recs[0]["state"], "Applied", "{recs:?}"),
            Some(_) => {
                // The ack and its second delivery: one Applied, one Ignored as a second copy.
                let states: BTreeSet<&str> = recs.iter().map(|m| s(&m["state"])).collect();
                assert_eq!(
                    states,
                    BTreeSet::from(["Applied", "Ignored"]),
                    "{mid}: {recs:#?}"
                );
                let ignored = recs.iter().find(|m| m["state"] == "Ignored").unwrap();
                assert!(s(&ignored["reason"]).contains("second copy"), "{ignored}");
            }
            None => panic!("an inbox record for an unknown message {mid}: {recs:?}"),
        }
    }
    assert_eq!(
        all.iter().filter(|m| m["state"] == "Applied").count(),
        20,
        "{all:#?}"
    );
    assert_eq!(all.iter().filter(|m| m["state"] == "Ignored").count(), 10);

    let log = d.full_log();
    for r in &reqs {
        let req = d.request(&id(r));
        assert_eq!(req["state"], "Acknowledged", "{req}");
        let acks: Vec<&Value> = log
            .iter()
            .filter(|e| e["action"] == "request.acknowledged" && e["request"] == r["id"])
            .collect();
        assert_eq!(
            acks.len(),
            1,
            "request {} acknowledged {} times: {acks:#?}",
            r["id"],
            acks.len()
        );
    }
    // No message produced two state changes.
    for mid in per_mid.keys() {
        let acts = actions_for_message(&log, mid);
        for a in ["request.acknowledged", "domain.queued_at_registrar"] {
            assert!(
                acts.iter().filter(|x| *x == a).count() <= 1,
                "message {mid} caused {a} more than once: {acts:?}"
            );
        }
    }
    for mid in &first_acks {
        assert_eq!(
            actions_for_message(&log, mid)
                .iter()
                .filter(|a| *a == "request.acknowledged")
                .count(),
            1,
            "{mid}"
        );
    }
    assert_eq!(count("INBOX"), 0);
    assert_eq!(count(PROCESSED), 30, "{:?}", list(PROCESSED));
}

// ---- 3. Dovecot restarted ----------------------------------------------------------------------

/// Dovecot restarted under a running daemon: it reconnects by itself and a reply injected
/// afterwards is applied.
#[test]
fn dovecot_restart_reconnects_by_itself() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig::default());
    let r1 = d.imported_with_order("c-dc", "DC1-GPT", "dc-one.ru");
    let r2 = d.imported_with_order("c-dc", "DC1-GPT", "dc-two.ru");
    inject(&Reply::ack(&r1, "6001").bytes());
    d.wait_request(&id(&r1), "Acknowledged", APPLY);
    let connected_before = d.log_lines("IMAP connected");

    mailstack(&["restart-dovecot"]);
    let t = Instant::now();
    let ack2 = Reply::ack(&r2, "6002");
    inject(&ack2.bytes());
    let r = d.wait_request(&id(&r2), "Acknowledged", Duration::from_secs(30));
    eprintln!(
        "reply injected after the Dovecot restart applied {:?} later",
        t.elapsed()
    );
    assert_eq!(r["task_id"], "6002");
    assert!(
        d.log_lines("reconnecting") >= 1,
        "the daemon noticed the lost connection\n{}",
        d.stderr_tail(20)
    );
    assert!(
        d.log_lines("IMAP connected") > connected_before,
        "the daemon logged in again\n{}",
        d.stderr_tail(20)
    );
    wait_inbox_empty(&d, APPLY);
    let (st, ready) = d.get("/readyz");
    assert_eq!(st, 200, "{ready}");
}

/// Reads the `retry_in_ms` of every "reconnecting" line of the daemon's log, in order.
fn retry_delays(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("reconnecting"))
        .filter_map(|l| {
            let (_, rest) = l.split_once("retry_in_ms=")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// After a connection was made again and worked, the next outage starts the backoff from its
/// initial delay again (500 ms): a daemon that saw a few outages must not wait ever longer
/// (up to 60 s) to reconnect after each new blip.
#[test]
fn reconnect_backoff_starts_afresh_after_a_good_session() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig::default());
    let r1 = d.imported_with_order("c-bo", "BO1-GPT", "bo-one.ru");
    let r2 = d.imported_with_order("c-bo", "BO1-GPT", "bo-two.ru");
    let r3 = d.imported_with_order("c-bo", "BO1-GPT", "bo-three.ru");
    inject(&Reply::ack(&r1, "6101").bytes());
    d.wait_request(&id(&r1), "Acknowledged", APPLY);

    // Outage 1, then a working session (a reply is applied through it).
    mailstack(&["restart-dovecot"]);
    inject(&Reply::ack(&r2, "6102").bytes());
    d.wait_request(&id(&r2), "Acknowledged", Duration::from_secs(30));
    let after_first = retry_delays(&d.stderr());
    assert!(!after_first.is_empty(), "{}", d.stderr_tail(20));
    // Stay connected a little, then outage 2.
    std::thread::sleep(Duration::from_secs(1));
    mailstack(&["restart-dovecot"]);
    inject(&Reply::ack(&r3, "6103").bytes());
    d.wait_request(&id(&r3), "Acknowledged", Duration::from_secs(60));
    let all = retry_delays(&d.stderr());
    let second = &all[after_first.len()..];
    eprintln!("retry delays, outage 1: {after_first:?}; outage 2: {second:?}");
    assert!(!second.is_empty(), "{}", d.stderr_tail(20));
    assert_eq!(
        second[0], after_first[0],
        "BUG (src/inbound/imap.rs ImapSource::run): the backoff delay is never reset after a \
         successful session, so every outage waits longer than the last (outage 1 began at \
         {} ms, outage 2 at {} ms; it doubles up to 60 s and stays there)",
        after_first[0], second[0]
    );
}

// ---- 4. UIDVALIDITY changed ---------------------------------------------------------------------

/// UIDVALIDITY of INBOX changed under a running daemon, and a processed reply copied back into
/// INBOX (so it is seen again under a new UIDVALIDITY and UID): nothing is applied twice, the
/// change is logged, and a later reply is still applied.
#[test]
fn uidvalidity_change_applies_nothing_twice() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig::default());
    let r1 = d.imported_with_order("c-uv", "UV1-GPT", "uv-one.ru");
    let r2 = d.imported_with_order("c-uv", "UV1-GPT", "uv-two.ru");
    let ack1 = Reply::ack(&r1, "7001");
    inject(&ack1.bytes());
    d.wait_request(&id(&r1), "Acknowledged", APPLY);
    wait_inbox_empty(&d, APPLY);
    let log_before = d.full_log().len();

    let old = status("INBOX").expect("INBOX").uidvalidity;
    let new = if old > 1_000_000 {
        old - 999_999
    } else {
        old + 999_999
    };
    set_uidvalidity("INBOX", new);
    assert_eq!(status("INBOX").unwrap().uidvalidity, new);
    let processed = list(PROCESSED);
    let original = processed
        .iter()
        .find(|m| m.message_id.contains(&ack1.message_id))
        .unwrap_or_else(|| panic!("the ack is not in Processed: {processed:?}"));
    copy(PROCESSED, original.uid, "INBOX");
    assert_eq!(count("INBOX"), 1);

    d.wait_until(
        "the UIDVALIDITY change to be noticed",
        Duration::from_secs(30),
        |d| d.stderr().contains("UIDVALIDITY changed"),
    );
    wait_inbox_empty(&d, Duration::from_secs(30));
    let ack2 = Reply::ack(&r2, "7002");
    inject(&ack2.bytes());
    let r = d.wait_request(&id(&r2), "Acknowledged", Duration::from_secs(30));
    assert_eq!(r["task_id"], "7002");
    wait_inbox_empty(&d, APPLY);

    let line = d
        .stderr()
        .lines()
        .find(|l| l.contains("UIDVALIDITY changed"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains(&old.to_string()) && line.contains(&new.to_string()),
        "the log names both UIDVALIDITY values: {line}"
    );
    assert!(
        d.stderr().contains("stored before (same bytes)"),
        "the copy was recognised by its content\n{}",
        d.stderr_tail(20)
    );
    // The copy changed nothing: one acknowledgement, and nothing from it but the intake's
    // line recording it as ignored (every message that reached the inbox ends with a record).
    let log = d.full_log();
    assert_eq!(d.log_of(&id(&r1), "request.acknowledged").len(), 1);
    let from_ack1 = actions_for_message(&log[log_before..], &ack1.message_id);
    assert!(
        from_ack1.iter().all(|a| a == "mail.ignored"),
        "the copy of an applied reply caused {from_ack1:?}"
    );
    let recs: Vec<Value> = d
        .inbox(None)
        .into_iter()
        .filter(|m| m["message_id"] == ack1.message_id.as_str())
        .collect();
    assert!(
        recs.iter().filter(|m| m["state"] == "Applied").count() == 1,
        "{recs:#?}"
    );
    assert!(
        recs.iter()
            .all(|m| m["state"] == "Applied" || m["state"] == "Ignored"),
        "{recs:#?}"
    );
    let rec2 = d.inbox_by_mid(&ack2.message_id);
    assert!(
        s(&rec2["key"]).starts_with(&format!("imap/INBOX/{new}/")),
        "the new reply is keyed under the new UIDVALIDITY: {rec2}"
    );
    assert_eq!(count(PROCESSED), 3, "{:?}", list(PROCESSED));
}

/// A UIDVALIDITY change is reported once, not at every poll while no new message arrives.
#[test]
fn uidvalidity_change_is_reported_once() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig::default());
    let r1 = d.imported_with_order("c-uw", "UW1-GPT", "uw-one.ru");
    inject(&Reply::ack(&r1, "7101").bytes());
    d.wait_request(&id(&r1), "Acknowledged", APPLY);
    wait_inbox_empty(&d, APPLY);
    let old = status("INBOX").expect("INBOX").uidvalidity;
    set_uidvalidity("INBOX", old.wrapping_add(424_242));
    d.wait_until(
        "the UIDVALIDITY change to be noticed",
        Duration::from_secs(30),
        |d| d.stderr().contains("UIDVALIDITY changed"),
    );
    // Three more poll intervals (2 s) with an empty INBOX.
    std::thread::sleep(Duration::from_secs(7));
    let n = d.log_lines("UIDVALIDITY changed");
    assert_eq!(
        n,
        1,
        "BUG (src/inbound/imap.rs session_loop): the new UIDVALIDITY is saved only when a \
         message is processed under it, so with an empty mailbox the change is \"detected\" \
         and logged again at every poll ({n} warnings in ~7 s at poll_interval 2s), and every \
         sweep re-reads from UID 1\n{}",
        d.stderr_tail(12)
    );
}

// ---- IDLE and the safety-net poll ------------------------------------------------------------

/// While IDLE, the daemon still sweeps the mailbox every `poll_interval` (the safety net) and
/// re-issues IDLE before 29 minutes, also when the server sends keepalives during IDLE.
/// Dovecot sends `* OK Still here` every 2 minutes (imap_idle_notify_interval), so with Dovecot
/// and any poll_interval over 2 minutes the sweep would never come; shown here in seconds with
/// a fake server that sends the keepalive every 500 ms and a poll_interval of 2 s.
#[test]
fn idle_keepalives_do_not_suppress_the_poll_sweep() {
    // `quiet` never sends a keepalive: the control that shows the fake server and the counting
    // work. `chatty` sends one every 500 ms.
    let quiet = support_imap::FakeImap::start(Duration::from_secs(3600));
    let chatty = support_imap::FakeImap::start(Duration::from_millis(500));
    let start = |fake: &support_imap::FakeImap| {
        let d = ImapDaemon::start(ImapConfig {
            plain_port: Some(fake.port),
            poll_interval: "2s".into(),
            ..ImapConfig::default()
        });
        d.wait_until("the daemon to IDLE on the fake server", APPLY, |_| {
            fake.commands().iter().any(|(_, c)| c == "IDLE")
        });
        d
    };
    let dq = start(&quiet);
    let dc = start(&chatty);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(7));
    let sweeps = |fake: &support_imap::FakeImap| -> Vec<Duration> {
        fake.commands()
            .iter()
            .filter(|(t, c)| *t > t0 && c.to_ascii_uppercase().starts_with("SELECT"))
            .map(|(t, _)| *t - t0)
            .collect()
    };
    let (q, c) = (sweeps(&quiet), sweeps(&chatty));
    eprintln!(
        "sweeps (SELECT) within 7 s at poll_interval 2s: no keepalives {q:?}; keepalive every 500 ms {c:?}"
    );
    assert!(
        q.len() >= 2,
        "control: without keepalives the daemon sweeps every 2 s: {q:?}\n{}",
        dq.stderr_tail(10)
    );
    assert!(
        c.len() >= 2,
        "BUG (src/inbound/imap.rs session_loop, IDLE branch): the IDLE wait uses async-imap's \
         wait_with_timeout(poll_interval), whose timeout restarts at every server response, \
         including the `* OK Still here` keepalives; so while the server sends keepalives more \
         often than poll_interval, the safety-net sweep never runs and IDLE is never re-issued \
         (expected a sweep about every 2 s as without keepalives ({} sweeps), saw {} in 7 s)\n{}",
        q.len(),
        c.len(),
        dc.stderr_tail(10)
    );
}

// ---- 5. IDLE latency -----------------------------------------------------------------------

/// With IDLE and a poll interval of 300 s, a reply delivered by SMTP is applied within a few
/// seconds: measured from the start of the SMTP session to the state change seen in the API.
#[test]
fn idle_latency_from_smtp_delivery_to_state_change() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig {
        idle: true,
        poll_interval: "300s".into(),
        ..ImapConfig::default()
    });
    let reqs: Vec<Value> = (0..5)
        .map(|i| d.imported_with_order("c-idle", "IDLE1-GPT", &format!("idle-{i}.ru")))
        .collect();
    d.wait_until("the IMAP connection", APPLY, |d| {
        d.stderr().contains("IMAP connected")
    });
    let mut samples = Vec::new();
    let mut dovecot = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        // Let the daemon settle into IDLE after the previous message. A second, independent
        // IDLE client on the same INBOX measures when Dovecot itself tells IDLE clients.
        std::thread::sleep(Duration::from_millis(700));
        let (tx, rx) = std::sync::mpsc::channel();
        let watcher = std::thread::spawn(move || {
            support_imap::PlainImap::connect(GATEWAY).idle_once(
                "INBOX",
                tx,
                Duration::from_secs(20),
            )
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the watching IDLE client is ready");
        let ack = Reply::ack(r, &format!("{}", 8000 + i));
        let t0 = Instant::now();
        smtp_send(ROBOT, GATEWAY, &ack.bytes());
        let accepted = t0.elapsed();
        loop {
            if d.request(&id(r))["state"] == "Acknowledged" {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "sample {i}: not applied within 30 s (IDLE did not wake the daemon)\n{}",
                d.stderr_tail(20)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let total = t0.elapsed();
        let woke = watcher
            .join()
            .expect("the watching IDLE client")
            .map(|w| w.saturating_duration_since(t0));
        eprintln!(
            "IDLE sample {i}: {:.0} ms from SMTP connect to Acknowledged (Postfix accepted after {:.0} ms; an independent IDLE client was told after {})",
            total.as_secs_f64() * 1000.0,
            accepted.as_secs_f64() * 1000.0,
            woke.map_or("-".to_owned(), |w| format!(
                "{:.0} ms",
                w.as_secs_f64() * 1000.0
            ))
        );
        samples.push(total);
        if let Some(w) = woke {
            dovecot.push(w);
        }
    }
    let mut sorted = samples.clone();
    sorted.sort();
    dovecot.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "IDLE latency, SMTP delivery to status change, 5 samples: median {:.0} ms, min {:.0} ms, max {:.0} ms (poll_interval 300 s); Dovecot's own IDLE notice to an independent client: median {:.0} ms",
        ms(sorted[2]),
        ms(sorted[0]),
        ms(sorted[4]),
        dovecot.get(dovecot.len() / 2).map_or(f64::NAN, |d| ms(*d))
    );
    assert!(
        sorted[4] < Duration::from_secs(5),
        "every sample under 5 s: {samples:?}"
    );
    wait_inbox_empty(&d, APPLY);
}

// ---- 6. oversized ----------------------------------------------------------------------------

/// A 50 KB reply over `max_message_bytes = 20000` is quarantined with a reason naming its
/// size, only its header is fetched and kept, and the daemon stays ready and applies the
/// next reply.
#[test]
fn oversized_reply_is_quarantined_without_being_fetched() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig {
        max_message_bytes: Some(20_000),
        ..ImapConfig::default()
    });
    let r1 = d.imported_with_order("c-big", "BIG1-GPT", "big-one.ru");
    let r2 = d.imported_with_order("c-big", "BIG1-GPT", "big-two.ru");
    let mut big = Reply::ack(&r1, "9001");
    let filler: String = (0..700)
        .map(|i| {
            format!(
                "filler line {i:04} FILLER-MARK xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
            )
        })
        .collect();
    big.body = format!("Task 9001 queued.\n\n{filler}");
    let raw = big.bytes();
    assert!(raw.len() > 50_000, "{}", raw.len());
    inject(&raw);
    let small = Reply::ack(&r2, "9002");
    inject(&small.bytes());

    // The record of a quarantined message names no Message-ID (only the header was fetched
    // and it is not parsed): find it by its state.
    let mut rec = Value::Null;
    d.wait_until(
        "the oversized message to be quarantined",
        APPLY,
        |d| match d.inbox(Some("Quarantined")).into_iter().next() {
            Some(m) => {
                rec = m;
                true
            }
            None => false,
        },
    );
    let reason = s(&rec["reason"]);
    assert!(
        reason.contains("20000") && reason.contains(&format!("{}", raw.len())),
        "the reason names the size and the limit: {reason} (message of {} octets)",
        raw.len()
    );
    assert!(
        rec["size"].as_u64().unwrap() < 20_000,
        "only the header was fetched and stored: {rec}"
    );
    let shown = d.get_ok(&format!(
        "/v1/inbox/message?key={}&raw=1",
        common::enc(s(&rec["key"]))
    ));
    let kept = String::from_utf8_lossy(
        &regmail::redact::base64_decode(s(&shown["raw_base64"]).as_bytes())
            .expect("raw_base64 is base64"),
    )
    .into_owned();
    assert!(
        kept.contains(&big.message_id) && !kept.contains("FILLER-MARK"),
        "the stored copy is the header only: {} octets",
        kept.len()
    );
    let r = d.request(&id(&r1));
    assert_eq!(
        r["state"], "Sent",
        "a quarantined reply changes nothing: {r}"
    );
    assert!(d.log_of(&id(&r1), "request.acknowledged").is_empty());

    let r = d.wait_request(&id(&r2), "Acknowledged", APPLY);
    assert_eq!(r["task_id"], "9002");
    wait_inbox_empty(&d, APPLY);
    let (st, ready) = d.get("/readyz");
    assert_eq!(st, 200, "the daemon stays ready: {ready}");
    let q = d.full_log();
    assert!(
        q.iter().any(|e| e["action"] == "mail.quarantined"),
        "the quarantine is in the action log"
    );
}

// ---- 7. forged sender, unmatched queue ---------------------------------------------------------

/// A reply whose display name is the robot's address but whose address is another changes
/// nothing and is Ignored with a reason; a registrar reply in unknown wording waits in the
/// unmatched queue, and an operator's assignment applies it.
#[test]
fn forged_sender_is_ignored_and_unmatched_wording_can_be_assigned() {
    let _g = exclusive();
    reset_gateway();
    let d = ImapDaemon::start(ImapConfig::default());
    let r1 = d.imported_with_order("c-fx", "FX1-GPT", "fx-one.ru");
    let r2 = d.imported_with_order("c-fx", "FX1-GPT", "fx-two.ru");

    let mut forged = Reply::ack(&r1, "9101");
    forged.from = format!("\"{ROBOT}\" <{OTHER}>");
    inject(&forged.bytes());
    let rec = d.wait_settled(&forged.message_id, APPLY);
    assert_eq!(rec["state"], "Ignored", "{rec}");
    assert_eq!(rec["from"], OTHER, "{rec}");
    assert!(
        s(&rec["reason"]).contains("not one of the registrar's addresses"),
        "{rec}"
    );
    let r = d.request(&id(&r1));
    assert_eq!(r["state"], "Sent", "a forged reply changes nothing: {r}");
    assert!(r["task_id"].is_null(), "{r}");
    let log = d.full_log();
    assert_eq!(
        actions_for_message(&log, &forged.message_id),
        ["mail.ignored"],
        "the forged reply is logged, nothing else"
    );

    let odd = Reply::to_request(
        &r2,
        "Dear partner,\n\nyour letter reached our operators; they will write to you later.\n",
    );
    inject(&odd.bytes());
    let rec = d.wait_settled(&odd.message_id, APPLY);
    assert_eq!(rec["state"], "Unmatched", "{rec}");
    let queue = d.inbox(Some("Unmatched"));
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["message_id"], odd.message_id.as_str());
    assert_eq!(d.request(&id(&r2))["state"], "Sent");

    let assigned = d.post_expect(
        "/v1/inbox/assign",
        &json!({
            "key": rec["key"],
            "request_id": r2["id"],
            "event": "acknowledged",
            "task_id": "77",
            "note": "read it"
        }),
        200,
    );
    assert_eq!(assigned["message"]["state"], "Applied", "{assigned}");
    let r = d.request(&id(&r2));
    assert_eq!(r["state"], "Acknowledged", "{r}");
    assert_eq!(r["task_id"], "77", "{r}");
    let acks = d.log_of(&id(&r2), "request.acknowledged");
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["evidence"]["correlation"], "operator", "{acks:?}");
    assert_eq!(acks[0]["evidence"]["note"], "read it", "{acks:?}");
    assert!(d.inbox(Some("Unmatched")).is_empty());
    // A second assignment of the same message is refused.
    let (st, _) = d.post(
        "/v1/inbox/assign",
        &json!({
            "key": rec["key"],
            "request_id": r2["id"],
            "event": "acknowledged",
            "task_id": "78",
            "note": "again"
        }),
    );
    assert_eq!(st, 409);
    assert_eq!(d.request(&id(&r2))["task_id"], "77");
    wait_inbox_empty(&d, APPLY);
}

// ---- Batched intake: a crash at each step of a batch (issue 13) -------------------------------

/// The acknowledgement of request `r` as registrar task `task`, delivered twice (the second
/// copy with one more Received line, as a second MX would hand it over).
fn ack_delivered_twice(r: &Value, task: usize, i: usize) -> [Vec<u8>; 2] {
    let ack = Reply::ack(r, &task.to_string());
    let mut again = ack.clone();
    again.extra_headers = vec![format!(
        "Received: from mx2.registrar.test by mail.gateway.test; second delivery {i}"
    )];
    [ack.bytes(), again.bytes()]
}

/// After a crash and a restart, the two deliveries of each of `reqs`' acknowledgements: one
/// record per message (one Applied, one Ignored), every request Acknowledged exactly once in
/// the log, INBOX empty and every message in the processed mailbox.
fn each_acknowledged_once(d: &ImapDaemon, reqs: &[Value], step: &str) {
    let n = reqs.len();
    wait_inbox_empty(d, APPLY);
    let all = d.inbox(None);
    assert_eq!(all.len(), 2 * n, "{step}: one record per message: {all:#?}");
    assert_eq!(
        all.iter().filter(|m| m["state"] == "Applied").count(),
        n,
        "{step}: {all:#?}"
    );
    assert_eq!(
        all.iter().filter(|m| m["state"] == "Ignored").count(),
        n,
        "{step}: {all:#?}"
    );
    let log = d.full_log();
    for r in reqs {
        assert_eq!(d.request(&id(r))["state"], "Acknowledged", "{step}");
        let acks = log
            .iter()
            .filter(|e| e["action"] == "request.acknowledged" && e["request"] == r["id"])
            .count();
        assert_eq!(
            acks, 1,
            "{step}: request {} acknowledged {acks} times",
            r["id"]
        );
    }
    assert_eq!(count("INBOX"), 0, "{step}");
    assert_eq!(
        count(PROCESSED) as usize,
        2 * n,
        "{step}: {:?}",
        list(PROCESSED)
    );
}

/// Eight replies (four acks, each delivered twice) reach a daemon that polls, so one sweep takes
/// them as one batch; the daemon dies (`REGMAIL_CRASH_AT`, an abort like SIGKILL) after the
/// batch's FETCH, after its first message was settled but before the flush, after the flush
/// but before the MOVE, and after the MOVE but before the position is saved. Restarted, every
/// message has exactly one record, every request was acknowledged exactly once, INBOX is empty.
#[test]
fn a_crash_at_each_step_of_a_batch_loses_nothing_and_applies_nothing_twice() {
    let _g = exclusive();
    for step in ["fetched", "settled-one", "flushed", "moved"] {
        reset_gateway();
        let mut d = ImapDaemon::start(ImapConfig {
            idle: false,
            poll_interval: "3s".into(),
            ..ImapConfig::default()
        });
        let reqs: Vec<Value> = (0..4)
            .map(|i| {
                d.imported_with_order(
                    &format!("c-{}", step.replace('-', "")),
                    "CRASH1-GPT",
                    &format!("crash-{step}-{i}.ru"),
                )
            })
            .collect();
        d.stop();
        d.env = vec![("REGMAIL_CRASH_AT".into(), step.into())];
        d.restart();
        for (i, r) in reqs.iter().enumerate() {
            for m in ack_delivered_twice(r, 7000 + i, i) {
                inject(&m);
            }
        }
        assert!(
            d.exited_within(Duration::from_secs(20)),
            "{step}: the daemon did not die at its crash point\n{}",
            d.stderr_tail(30)
        );
        d.env.clear();
        d.restart();
        d.wait_until(
            &format!("{step}: all 8 messages settled"),
            Duration::from_secs(30),
            |d| {
                let all = d.inbox(None);
                all.len() >= 8 && all.iter().all(|m| m["state"] != "Pending")
            },
        );
        each_acknowledged_once(&d, &reqs, step);
        d.stop();
    }
}

/// The batches overlap (the session moves batch 1 while batch 2 is settled): 70 replies (35
/// acks, each delivered twice) wait in INBOX, so the first sweep takes a batch of 64 and one of
/// 6, and the daemon dies right after the first MOVE, while the second batch is being settled
/// and before it is flushed. Restarted, every message has exactly one record, every request was
/// acknowledged exactly once, INBOX is empty.
#[test]
fn a_crash_while_the_next_batch_settles_loses_nothing_and_applies_nothing_twice() {
    let _g = exclusive();
    reset_gateway();
    let mut d = ImapDaemon::start(ImapConfig {
        idle: false,
        poll_interval: "3s".into(),
        ..ImapConfig::default()
    });
    let reqs: Vec<Value> = (0..35)
        .map(|i| d.imported_with_order("c-pipeline", "PIPE1-GPT", &format!("pipe-{i}.ru")))
        .collect();
    d.stop();
    let mut raw = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        raw.extend(ack_delivered_twice(r, 8000 + i, i));
    }
    let mut c = support_imap::PlainImap::connect(support_imap::GATEWAY);
    c.append_all("INBOX", &raw);
    c.logout();
    assert_eq!(count("INBOX"), 70);
    d.env = vec![("REGMAIL_CRASH_AT".into(), "moved".into())];
    d.restart();
    assert!(
        d.exited_within(Duration::from_secs(30)),
        "the daemon did not die at its crash point\n{}",
        d.stderr_tail(30)
    );
    d.env.clear();
    d.restart();
    d.wait_until("all 70 messages settled", Duration::from_secs(60), |d| {
        let all = d.inbox(None);
        all.len() >= 70 && all.iter().all(|m| m["state"] != "Pending")
    });
    each_acknowledged_once(&d, &reqs, "pipelined");
    d.stop();
}
