//! A domain's life after registration through the real binary on the test clock, with notice
//! e-mails through the real Postfix and read back from the real Dovecot (issue 11).
//!
//! Two domains expire 100 days after day 0. The daemon is restarted on a frozen test clock set
//! to each day that matters (and once on a fast clock), so the lifecycle pass runs at start-up:
//! the first domain gets exactly five reminder e-mails (90, 60, 30, 15, 1 days before), then
//! the parked notice, then the deletion notice, with the API's status matching at each step;
//! the second, renewed 20 days before expiry, gets no 15- and 1-day reminders of its old
//! expiry; a restart in the middle of a day sends nothing twice.
//!
//! Touches the shared mail stack: run it under the lock,
//! `flock /tmp/regmail-mailstack.lock cargo test --test lifecycle_mail`.

mod common;
mod support_mail;

use std::time::{Duration, Instant};

use jiff::civil::Date;
use serde_json::{Value, json};
use support_mail::{MailConfig, MailDaemon, Search, count, postfix_shared, wait_for_mail};

const WAIT: Duration = Duration::from_secs(30);
/// How long a mailbox is watched for a message that must not come.
const QUIET: Duration = Duration::from_millis(1500);
const OWNER: &str = "owner@customer.test";

/// Day 0 of the rehearsal.
fn day0() -> Date {
    jiff::civil::date(2031, 3, 1)
}

fn day(n: i64) -> Date {
    day0().checked_add(jiff::Span::new().days(n)).unwrap()
}

/// `REGMAIL_TEST_CLOCK` for 09:00 UTC on day `n`, at `speed`.
fn clock(n: i64, speed: f64) -> Vec<(String, String)> {
    vec![(
        "REGMAIL_TEST_CLOCK".into(),
        format!("start={}T09:00:00Z,speed={speed}", day(n)),
    )]
}

/// Restarts the daemon on the test clock at day `n` (frozen).
fn restart_on(d: &mut MailDaemon, n: i64) {
    d.kill();
    d.config.env = clock(n, 0.0);
    d.restart();
}

fn reminders(domain: &str) -> Search {
    Search::subject(&format!("Domain {domain} expires on"))
}

fn status(d: &MailDaemon, domain: &str) -> Value {
    d.get_ok(&format!("/v1/domains/{domain}"))
}

/// Waits until the domain's API view has `status`.
fn wait_status(d: &MailDaemon, domain: &str, want: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let v = status(d, domain);
        if v["status"] == want {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "{domain} is {} after {timeout:?}, expected {want}:\n{v:#}\n--- daemon ---\n{}",
            v["status"],
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the `n`-th reminder of each domain, then checks no more came (the day's pass
/// ran) and that the latest says how many days are left.
fn expect_reminders(want: &[(&str, usize, u32)]) {
    for (domain, n, _) in want {
        wait_for_mail(OWNER, &reminders(domain), *n, WAIT);
    }
    std::thread::sleep(QUIET);
    for (domain, n, days_left) in want {
        let mails = support_mail::fetch(OWNER, &reminders(domain));
        assert_eq!(
            mails.len(),
            *n,
            "{domain}: {} reminder(s), expected {n}",
            mails.len()
        );
        let last = mails
            .iter()
            .find(|m| {
                m.header("Subject")
                    .is_some_and(|s| s.contains(&format!("({days_left} days left)")))
            })
            .unwrap_or_else(|| {
                panic!(
                    "no reminder of {domain} says {days_left} days left: {:?}",
                    mails
                        .iter()
                        .map(|m| m.header("Subject"))
                        .collect::<Vec<_>>()
                )
            });
        assert!(
            last.header("List-Unsubscribe").is_none(),
            "the owner's copy has no unsubscribe link"
        );
    }
}

fn register(d: &MailDaemon, domain: &str, expires: Date) {
    d.post_expect(
        "/v1/domains",
        &json!({"domain": domain, "client_id": "lc", "years": 1, "order_id": format!("order-{domain}"),
                "nameservers": ["ns1.hoster.example", "ns2.hoster.example"], "paid": true}),
        202,
    );
    d.post_expect(
        &format!("/v1/domains/{domain}/resolve"),
        &json!({"outcome": "registered", "expires": expires.to_string(), "note": "registered at R01"}),
        200,
    );
}

#[test]
fn a_year_of_two_domains_on_the_test_clock_through_postfix_and_dovecot() {
    let _shared = postfix_shared();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let a = format!("a-{tag}.ru");
    let b = format!("b-{tag}.ru");
    let expires = day(100);
    let mut d = MailDaemon::start(MailConfig {
        extra: "[notices]\nfrom = \"notices@hosting.test\"\nmessage_id_host = \"hosting.test\"\n\n\
                [lifecycle]\ntest_clock = true\npass_interval = \"200ms\"\n"
            .into(),
        env: clock(0, 0.0),
        ..MailConfig::default()
    });
    // The clock shouts.
    let health = d.get_ok("/healthz");
    assert_eq!(health["test_clock"]["speed"], 0.0, "{health}");
    assert!(d.get_text("/metrics").contains("regmail_test_clock 1"));
    assert!(d.stderr().contains("TEST CLOCK"));

    let mut client = common::person("lc");
    client["contact"] = json!({"name": "LC", "email": OWNER});
    d.post_expect("/v1/clients", &client, 201);
    d.post_expect(
        "/v1/clients/lc/users",
        &json!({"id": "boss", "name": "Boss", "email": OWNER, "language": "en", "role": "owner"}),
        201,
    );
    register(&d, &a, expires);
    register(&d, &b, expires);
    assert_eq!(status(&d, &a)["status"], "Registered");

    // The preview on day 0 for 100 days: both domains' 90, 60, 30, 15 and 1-day reminders,
    // each to the owner's address.
    let p = d.get_ok("/v1/lifecycle/preview?days=100");
    let items = p["items"].as_array().unwrap();
    let of_a: Vec<&Value> = items
        .iter()
        .filter(|i| i["domain"] == a.as_str() && i["action"] == "reminder")
        .collect();
    let dates: Vec<&str> = of_a.iter().map(|i| i["date"].as_str().unwrap()).collect();
    let want: Vec<String> = [10, 40, 70, 85, 99]
        .iter()
        .map(|n| day(*n).to_string())
        .collect();
    assert_eq!(dates, want, "{p:#}");
    assert_eq!(of_a[0]["recipients"][0]["address"], OWNER);
    assert_eq!(of_a[0]["notice"], "domain.expiry_reminder");
    // The CLI shows the same, as a table (wide enough for the addresses).
    let cli = common::run_cli_env(
        &d.config_path,
        &["lifecycle", "preview", "--days", "100"],
        &[("COLUMNS", "250")],
    );
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    let line = cli
        .stdout
        .lines()
        .find(|l| l.contains(&day(10).to_string()) && l.contains(a.as_str()))
        .unwrap_or_else(|| panic!("no day-10 line for {a}:\n{}", cli.stdout));
    assert!(line.contains("reminder") && line.contains(OWNER), "{line}");
    // Nothing was written by the preview.
    assert_eq!(count(OWNER, &reminders(&a)), 0);

    // 90, 60 and 30 days before: one reminder each, to each domain.
    for (n, k, left) in [(10, 1, 90), (40, 2, 60), (70, 3, 30)] {
        restart_on(&mut d, n);
        expect_reminders(&[(&a, k, left), (&b, k, left)]);
        assert_eq!(status(&d, &a)["status"], "Registered");
    }

    // Day 80: the second domain is renewed (the registrar completes it); its expiry moves a year.
    restart_on(&mut d, 80);
    let r = d.post_expect(&format!("/v1/domains/{b}/renew"), &json!({"years": 1}), 202);
    assert_eq!(r["status"], "Renewing", "{r}");
    let request = r["open_request"]["id"].as_str().unwrap().to_owned();
    d.post_expect(
        &format!("/v1/requests/{request}/outcome"),
        &json!({"event": "completed", "note": "R01 panel shows it prolonged"}),
        200,
    );
    let v = status(&d, &b);
    assert_eq!(v["status"], "Registered");
    let next_year = day(100).checked_add(jiff::Span::new().years(1)).unwrap();
    assert_eq!(v["expires"], next_year.to_string());
    let p = d.get_ok("/v1/lifecycle/preview?days=30");
    let next: Vec<(String, String)> = p["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["domain"].as_str().unwrap().into(),
                i["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(next.contains(&(a.clone(), "reminder".into())), "{p:#}");
    assert!(!next.iter().any(|(dn, _)| dn == &b), "{p:#}");

    // 15 days before: the first domain's reminder; nothing for the renewed one. Then a
    // restart on the same day sends nothing twice.
    restart_on(&mut d, 85);
    expect_reminders(&[(&a, 4, 15)]);
    restart_on(&mut d, 85);
    std::thread::sleep(QUIET);
    assert_eq!(count(OWNER, &reminders(&a)), 4);
    assert_eq!(count(OWNER, &reminders(&b)), 3);

    // 1 day before.
    restart_on(&mut d, 99);
    expect_reminders(&[(&a, 5, 1)]);
    assert_eq!(count(OWNER, &reminders(&b)), 3);

    // The day after expiry: parked, with the mandatory notice; R01 (.RU) gives 30 days.
    restart_on(&mut d, 101);
    let v = wait_status(&d, &a, "Expired", WAIT);
    assert_eq!(v["phase"], "Parked");
    assert_eq!(v["grace_ends"], day(130).to_string());
    let parked = wait_for_mail(
        OWNER,
        &Search::subject(&format!("Domain {a} expired")),
        1,
        WAIT,
    );
    assert_eq!(parked.len(), 1);
    let body = String::from_utf8_lossy(&parked[0].raw).into_owned();
    assert!(
        body.contains("has stopped working") && body.contains(&day(130).to_string()),
        "{body}"
    );
    let subject = parked[0].header("Subject").unwrap_or_default();
    assert!(subject.contains("30 days to renew"), "{subject}");
    let listed = d.get_ok("/v1/domains?status=Expired");
    assert!(
        listed["domains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["domain"] == a.as_str())
    );

    // Then on a fast clock (ten days a second): grace ends, the name is deleted.
    d.kill();
    d.config.env = clock(101, 864_000.0);
    d.restart();
    let v = wait_status(&d, &a, "Deleted", Duration::from_secs(20));
    assert_eq!(v["deleted_on"], day(131).to_string());
    assert_eq!(v["phase"], "Deleted");
    let gone = wait_for_mail(
        OWNER,
        &Search::subject(&format!("Domain {a} has been deleted")),
        1,
        WAIT,
    );
    assert_eq!(gone.len(), 1);
    // Exactly five reminders of the first, three of the second, one of each final notice.
    std::thread::sleep(QUIET);
    assert_eq!(count(OWNER, &reminders(&a)), 5);
    assert_eq!(count(OWNER, &reminders(&b)), 3);
    assert_eq!(
        count(OWNER, &Search::subject(&format!("Domain {a} expired"))),
        1
    );
    assert_eq!(status(&d, &b)["status"], "Registered");
    // The action log tells it: five reminders sent, expired, deleted.
    let log = d.get_ok(&format!("/v1/domains/{a}/log?limit=1000"));
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "domain.reminder_sent")
            .count(),
        5,
        "{actions:?}"
    );
    assert!(actions.contains(&"domain.expired") && actions.contains(&"domain.deleted"));
    // A Deleted name may be ordered again.
    d.post_expect(
        "/v1/domains",
        &json!({"domain": a, "client_id": "lc", "years": 1, "order_id": "again", "paid": false}),
        202,
    );
    assert_eq!(status(&d, &a)["status"], "AwaitingPayment");
}
