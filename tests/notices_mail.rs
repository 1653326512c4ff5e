//! Notice e-mails through the real Postfix (submission, STARTTLS, AUTH) and read back from the
//! real Dovecot over IMAPS (issue 10): a registered domain reaches its owner (Russian) and a
//! subscribed admin (English); an unsubscribed admin gets nothing; the RFC 8058 one-click POST
//! unsubscribes (a GET only shows a page) and the next notice of that category does not come;
//! a mandatory notice still comes, without an unsubscribe link.
//!
//! Touches the shared mail stack: run it under the lock,
//! `flock /tmp/regmail-mailstack.lock cargo test --test notices_mail`.

mod common;
mod support_mail;

use std::time::Duration;

use serde_json::{Value, json};
use support_mail::{MailConfig, MailDaemon, Search, count, postfix_shared, wait_for_mail};

const WAIT: Duration = Duration::from_secs(30);
/// How long a mailbox is watched for a message that must not come (the e-mail channel sends
/// within a second of the notice; the other recipient's copy has arrived by then).
const QUIET: Duration = Duration::from_secs(3);

fn user(id: &str, email: &str, lang: &str, role: &str) -> Value {
    json!({"id": id, "name": format!("User {id}"), "email": email, "language": lang, "role": role})
}

fn register(d: &MailDaemon, domain: &str) {
    d.post_expect(
        "/v1/domains",
        &json!({"domain": domain, "client_id": "acme", "years": 1, "order_id": domain,
                "nameservers": ["ns1.hoster.example", "ns2.hoster.example"], "paid": true}),
        202,
    );
    d.post_expect(
        &format!("/v1/domains/{domain}/resolve"),
        &json!({"outcome": "registered", "expires": "2027-11-23", "note": "checked"}),
        200,
    );
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

#[test]
fn notices_reach_the_right_mailboxes_and_one_click_unsubscribe_works() {
    let _shared = postfix_shared();
    let d = MailDaemon::start(MailConfig {
        extra: "[notices]\nfrom = \"notices@hosting.test\"\nmessage_id_host = \"hosting.test\"\n"
            .into(),
        ..MailConfig::default()
    });
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let d1 = format!("n1-{tag}.ru");
    let d2 = format!("n2-{tag}.ru");
    let mut client = common::person("acme");
    client["contact"] = json!({"name": "Acme", "email": "owner@customer.test"});
    d.post_expect("/v1/clients", &client, 201);
    let base = "/v1/clients/acme/users";
    d.post_expect(
        base,
        &user("boss", "owner@customer.test", "ru", "owner"),
        201,
    );
    d.post_expect(
        base,
        &user("adm", "admin@customer.test", "en", "admin"),
        201,
    );
    // An admin who has not subscribed to anything.
    d.post_expect(
        base,
        &user("quiet", "user@customer.test", "en", "admin"),
        201,
    );
    let (s, v) = d.put(
        "/v1/clients/acme/users/adm/subscriptions",
        &json!({"acting_user": "boss", "subscriptions": {"domains": ["email"]}}),
    );
    assert_eq!(s, 200, "{v}");

    // 1. Registered: the owner in Russian, the subscribed admin in English, nobody else.
    register(&d, &d1);
    let owner = wait_for_mail("owner@customer.test", &Search::subject(&d1), 1, WAIT);
    let admin = wait_for_mail("admin@customer.test", &Search::subject(&d1), 1, WAIT);
    let o = String::from_utf8_lossy(&owner[0].raw).into_owned();
    let a = String::from_utf8_lossy(&admin[0].raw).into_owned();
    assert!(
        o.contains(&format!("Домен {d1} зарегистрирован до 2027-11-23.")),
        "{o}"
    );
    assert!(
        owner[0].header("List-Unsubscribe").is_none(),
        "the owner cannot opt out: {o}"
    );
    assert!(
        a.contains(&format!("The domain {d1} is registered until 2027-11-23.")),
        "{a}"
    );
    assert_eq!(
        admin[0].header("List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
    std::thread::sleep(QUIET);
    assert_eq!(count("user@customer.test", &Search::subject(&d1)), 0);

    // 2. One-click: a GET shows a page and changes nothing; the POST unsubscribes, answering
    // 200 without a redirect and without any token or cookie.
    let lu = admin[0]
        .header("List-Unsubscribe")
        .expect("List-Unsubscribe");
    let url = lu
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    assert!(url.starts_with(&d.base()), "{url}");
    let mut r = agent().get(&url).call().expect("GET the unsubscribe page");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("<form method=post>")
    );
    let subs = d.get_ok("/v1/clients/acme/users/adm/subscriptions");
    assert_eq!(
        subs["subscriptions"],
        json!({"domains": ["email"]}),
        "a GET changed it"
    );
    let mut r = agent()
        .post(&url)
        .content_type("application/x-www-form-urlencoded")
        .send("List-Unsubscribe=One-Click")
        .expect("POST one-click");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{:?}",
        r.body_mut().read_to_string()
    );
    assert!(r.headers().get("location").is_none());
    let subs = d.get_ok("/v1/clients/acme/users/adm/subscriptions");
    assert_eq!(subs["subscriptions"], json!({}), "{subs}");
    assert_eq!(subs["set_by"], "one-click");

    // 3. The next notice of that category does not come to the admin; the owner still hears it.
    register(&d, &d2);
    wait_for_mail("owner@customer.test", &Search::subject(&d2), 1, WAIT);
    std::thread::sleep(QUIET);
    assert_eq!(count("admin@customer.test", &Search::subject(&d2)), 0);

    // 4. A mandatory notice (the domain is about to be deleted) comes whatever the opt-outs,
    // and carries no unsubscribe link.
    d.post_expect(
        "/v1/notices",
        &json!({"client_id": "acme", "type": "domain.deletion_warning",
                "data": {"domain": d2, "date": "2028-01-01"}}),
        201,
    );
    let subject = format!("Domain {d2} will be deleted");
    let m = wait_for_mail("admin@customer.test", &Search::subject(&subject), 1, WAIT);
    assert!(m[0].header("List-Unsubscribe").is_none());
    wait_for_mail("user@customer.test", &Search::subject(&subject), 1, WAIT);
    let o = wait_for_mail("owner@customer.test", &Search::subject(&d2), 2, WAIT);
    assert_eq!(o.len(), 2);
}
