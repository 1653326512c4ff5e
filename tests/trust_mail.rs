//! Trust through the real Postfix and Dovecot (issue 9 part A): with `authentication = "dkim"`
//! an unsigned reply from the registrar's own address, delivered by Postfix, moves nothing and
//! is quarantined; the same reply signed with the registrar's test key (pinned in
//! `[[inbound.dkim_keys]]`) moves its request. And a request that Postfix accepts and then
//! bounces (`bounce.test`, see scripts/mailstack.sh) comes back to its own envelope address
//! (VERP) and fails exactly that request.
//!
//! Uses the gateway mailbox of the shared stack: hold /tmp/regmail-mailstack.lock when running.

mod common;
mod support_imap;
mod support_mail;

use std::time::Duration;

use common::intake::TestKey;
use serde_json::Value;
use support_imap::{
    GATEWAY, ImapConfig, ImapDaemon, ROBOT, Reply, exclusive, reset_gateway, smtp_send,
};

const APPLY: Duration = Duration::from_secs(20);

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn with_dkim_required_an_unsigned_reply_is_quarantined_and_a_signed_one_applies() {
    let _g = exclusive();
    reset_gateway();
    let key = TestKey::new();
    let d = ImapDaemon::start(ImapConfig {
        registrar_extra: "authentication = \"dkim\"\n".into(),
        inbound_extra: format!(
            "\n[[inbound.dkim_keys]]\ndomain = \"registrar.test\"\nselector = \"mail\"\nrecord = \"{}\"\n",
            key.record
        ),
        ..ImapConfig::default()
    });
    let req = d.imported_with_order("c-dkim", "GW_77_1-GPT", "dkim-signed.ru");
    assert_eq!(req["kind"], "domain-registration", "{req}");
    let rid = s(&req["id"]).to_owned();

    // 1. Unsigned, from the registrar's own address, through Postfix on port 25.
    let unsigned = Reply::domain_registered(&req, "dkim-signed.ru", "24.11.2027");
    smtp_send(ROBOT, GATEWAY, &unsigned.bytes());
    let rec = d.wait_settled(&unsigned.message_id, APPLY);
    assert_eq!(rec["state"], "Quarantined", "{rec}");
    assert!(
        s(&rec["reason"]).contains("not authenticated") && s(&rec["reason"]).contains("\"dkim\""),
        "{rec}"
    );
    assert_eq!(
        d.request(&rid)["state"],
        "Sent",
        "an unsigned reply moved the request"
    );
    assert_eq!(
        d.get_ok("/v1/domains/dkim-signed.ru")["status"],
        "Registering"
    );

    // 2. The same reply signed with the registrar's key (a new Message-ID).
    let mut signed = Reply::domain_registered(&req, "dkim-signed.ru", "24.11.2027");
    signed.message_id = support_imap::registrar_message_id("signed");
    let raw = key.sign("registrar.test", "mail", &signed.bytes(), false);
    smtp_send(ROBOT, GATEWAY, &raw);
    d.wait_request(&rid, "Completed", APPLY);
    let dom = d.get_ok("/v1/domains/dkim-signed.ru");
    assert_eq!(dom["status"], "Registered", "{dom}");
    assert_eq!(dom["expires"], "2027-11-24", "{dom}");
    let done = d.log_of(&rid, "request.completed");
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(
        s(&done[0]["evidence"]["auth"]).contains("dkim=pass header.d=registrar.test"),
        "the log names the evidence: {}",
        done[0]
    );
    // The quarantined copy is still there for an operator, untouched.
    assert_eq!(d.inbox_by_mid(&unsigned.message_id)["state"], "Quarantined");
}

#[test]
fn a_request_postfix_bounces_comes_back_to_its_verp_address_and_fails_exactly_it() {
    let _g = exclusive();
    reset_gateway();
    let bounce_to = support_imap::stack()
        .var("MAILSTACK_BOUNCE_ADDRESS")
        .to_owned();
    let d = ImapDaemon::start(ImapConfig {
        smtp: true,
        gateway: Some(bounce_to.clone()),
        ..ImapConfig::default()
    });
    d.post_2xx("/v1/clients", &common::imported("c-verp", "GW_78_1-GPT"));
    let order = |domain: &str| -> Value {
        d.post_2xx("/v1/domains", &common::order(domain, "c-verp", true));
        d.get_ok(&format!("/v1/domains/{domain}"))["open_request"].clone()
    };
    let (a, b) = (order("verp-bounced.ru"), order("verp-other.ru"));
    let (ida, idb) = (s(&a["id"]).to_owned(), s(&b["id"]).to_owned());
    assert!(!ida.is_empty() && !idb.is_empty(), "{a} {b}");
    // Both go out; Postfix accepts both for bounce.test, then bounces both, each to its own
    // envelope address gateway+<token>@gateway.test.
    let ra = d.wait_request(&ida, "Rejected", Duration::from_secs(40));
    assert!(s(&ra["last_error"]).contains("bounced"), "{ra}");
    let rb = d.wait_request(&idb, "Rejected", Duration::from_secs(40));
    assert!(s(&rb["last_error"]).contains("bounced"), "{rb}");
    // Each bounce failed its own request, proven by its VERP address.
    for (id, r) in [(&ida, &a), (&idb, &b)] {
        let failed = d.log_of(id, "request.rejected");
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0]["evidence"]["rule"], "bounce", "{}", failed[0]);
        let bounces: Vec<Value> = d
            .inbox(None)
            .into_iter()
            .filter(|m| {
                (m["request"] == r["id"] || m["request"] == r["token"]) && m["state"] == "Applied"
            })
            .collect();
        assert_eq!(bounces.len(), 1, "{r}\n{:#?}", d.inbox(None));
        assert!(
            s(&bounces[0]["from"]).starts_with("mailer-daemon@"),
            "{}",
            bounces[0]
        );
    }
    for dom in ["verp-bounced.ru", "verp-other.ru"] {
        let v = d.get_ok(&format!("/v1/domains/{dom}"));
        assert_eq!(v["status"], "Error", "{v}");
    }
}
