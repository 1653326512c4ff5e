//! The daily report e-mail through the real binary, the real Postfix (submission, STARTTLS,
//! AUTH) and the real Dovecot (issue 11 part 3): with the test clock (`REGMAIL_TEST_CLOCK`,
//! `[lifecycle] test_clock`), the reseller's mailbox `ops@hosting.test` gets the day's report
//! at `daily_at` in `[reports] timezone` with its five CSV attachments, exactly once that day
//! though the daemon restarts; two days later (the daemon down in between) it gets that day's
//! report, with the days left counted from that day.
//!
//! Touches the shared mail stack: run it under the lock,
//! `flock /tmp/regmail-mailstack.lock cargo test --test reports_mail`.

mod common;
mod support_mail;

use std::time::Duration;

use common::seed;
use jiff::civil::Date;
use mail_parser::MimeHeaders;
use regmail::store::Store;
use support_mail::{MailConfig, MailDaemon, Search, count, delete, postfix_shared, wait_for_mail};

const OPS: &str = "ops@hosting.test";
const WAIT: Duration = Duration::from_secs(30);
/// How long the mailbox is watched for a copy that must not come (the mailer looks every
/// second; a send reaches Dovecot within a second or two).
const QUIET: Duration = Duration::from_secs(4);

/// The test clock at `at` (real speed: the day does not run away during the test).
fn clock(at: &str) -> Vec<(String, String)> {
    vec![(
        "REGMAIL_TEST_CLOCK".to_owned(),
        format!("start={at},speed=1"),
    )]
}

/// The report e-mails of `day` in the reseller's mailbox.
fn of_day(day: Date) -> Search {
    Search::subject(&format!("regmail reports {day}"))
}

/// The CSV attachments of a report e-mail: (file name, text).
fn attachments(raw: &[u8]) -> Vec<(String, String)> {
    let msg = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("parse the report e-mail");
    msg.attachments()
        .map(|a| {
            (
                a.attachment_name().unwrap_or_default().to_owned(),
                String::from_utf8_lossy(a.contents()).into_owned(),
            )
        })
        .collect()
}

/// The CSV record of `domain` in `csv`, split into fields (no field of the portfolio needs
/// quoting).
fn record<'a>(csv: &'a str, domain: &str) -> Option<Vec<&'a str>> {
    csv.split("\r\n")
        .find(|l| l.split(',').any(|f| f == domain))
        .map(|l| l.split(',').collect())
}

#[test]
fn the_daily_report_arrives_once_a_day_with_its_csv_attachments() {
    let _shared = postfix_shared();
    // A day of its own for every run (the mailbox outlives the test): 2031-01-01 + 0..4000.
    let offset = i64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 15
        + i64::from(uuid::Uuid::new_v4().as_bytes()[1] % 15);
    let day1 = seed::days(jiff::civil::date(2031, 1, 1), offset);
    let day2 = seed::days(day1, 1);
    let day3 = seed::days(day1, 2);
    for d in [day1, day2, day3] {
        delete(OPS, &of_day(d));
    }
    // 07:00 in Moscow is 04:00 UTC.
    let utc = |d: Date, hm: &str| format!("{d}T{hm}:00Z");
    let mut d = MailDaemon::start(MailConfig {
        extra: format!(
            "[notices]\nfrom = \"notices@hosting.test\"\nmessage_id_host = \"hosting.test\"\n\n\
             [reports]\nrecipients = [\"{OPS}\"]\ndaily_at = \"07:00\"\ntimezone = \"Europe/Moscow\"\n\n\
             [lifecycle]\ntest_clock = true\n"
        ),
        // Before 07:00 on day 1: no report yet.
        env: clock(&utc(day1, "03:00")),
        ..MailConfig::default()
    });
    assert!(d.stderr().contains("TEST CLOCK"), "{}", d.stderr());
    // The portfolio around day 1, written while the daemon is down.
    d.kill();
    {
        let store = Store::open(&d.dir().join("store"), 16 << 20).expect("open the store");
        seed::portfolio(&store, day1);
        store.flush().expect("flush");
    }
    assert_eq!(count(OPS, &of_day(day1)), 0);

    // 07:00:05 on day 1: the day's report arrives, once.
    d.config.env = clock(&utc(day1, "04:00"));
    d.restart();
    let got = wait_for_mail(OPS, &of_day(day1), 1, WAIT);
    let mail = &got[0];
    assert_eq!(
        mail.header("Message-ID"),
        Some(format!("<report-{day1}@hosting.test>").as_str())
    );
    assert!(
        mail.header("Content-Type")
            .is_some_and(|c| c.starts_with("multipart/mixed;")),
        "{:?}",
        mail.header("Content-Type")
    );
    let files = attachments(&mail.raw);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("expiring-30-{day1}.csv"),
            format!("expiring-15-{day1}.csv"),
            format!("expiring-1-{day1}.csv"),
            format!("expired-{day1}.csv"),
            format!("deleted-{day1}.csv"),
        ]
    );
    let (exp30, exp15, exp1, expired, deleted) = (
        &files[0].1,
        &files[1].1,
        &files[2].1,
        &files[3].1,
        &files[4].1,
    );
    assert!(
        exp30.starts_with("Order ID,Description,Expiry date,Days left,Customer name,E-mail,Phone,"),
        "{exp30}"
    );
    // The columns, in order: order id, description, expiry date, days left, customer
    // name, e-mail, phone.
    assert_eq!(
        record(exp30, "d15.ru").expect("d15.ru in 30 days")[..7],
        [
            "order-d15.ru",
            "site d15.ru",
            &seed::days(day1, 15).to_string(),
            "15",
            "Customer One",
            "one@customer.test",
            "8 900 0000001"
        ]
    );
    assert!(record(exp30, "d30.ru").is_some(), "{exp30}");
    assert!(record(exp30, "d31.ru").is_none(), "{exp30}");
    assert!(record(exp15, "d15.ru").is_some() && record(exp15, "d30.ru").is_none());
    assert!(record(exp1, "d1.ru").is_some() && record(exp1, "d15.ru").is_none());
    assert_eq!(
        record(expired, "gone.ru").expect("gone.ru expired")[..6],
        [
            "order-gone.ru",
            "site gone.ru",
            &seed::days(day1, -3).to_string(),
            "Customer One",
            "one@customer.test",
            "8 900 0000001"
        ]
    );
    assert_eq!(
        record(deleted, "old.ru").expect("old.ru deleted")[..4],
        [
            "order-old.ru",
            "site old.ru",
            &seed::days(day1, -20).to_string(),
            &seed::days(day1, -10).to_string()
        ]
    );

    // Later the same day, after a restart: no second copy.
    d.kill();
    d.config.env = clock(&utc(day1, "15:00"));
    d.restart();
    std::thread::sleep(QUIET);
    assert_eq!(count(OPS, &of_day(day1)), 1, "once a day, across restarts");
    let sent: Vec<String> = d
        .full_log()
        .into_iter()
        .filter(|e| e["action"] == "report.sent")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains(OPS), "{sent:?}");

    // Two days later (down on day 2): day 3's report, days counted from day 3.
    d.kill();
    d.config.env = clock(&utc(day3, "04:00"));
    d.restart();
    let got = wait_for_mail(OPS, &of_day(day3), 1, WAIT);
    let files = attachments(&got[0].raw);
    assert_eq!(files.len(), 5);
    assert_eq!(files[0].0, format!("expiring-30-{day3}.csv"));
    assert_eq!(
        record(&files[0].1, "d15.ru").expect("d15.ru on day 3")[3],
        "13"
    );
    assert!(
        record(&files[0].1, "d31.ru").is_some(),
        "d31.ru has 29 days left on day 3"
    );
    std::thread::sleep(QUIET);
    assert_eq!(count(OPS, &of_day(day3)), 1);
    assert_eq!(
        count(OPS, &of_day(day2)),
        0,
        "a missed day is not caught up"
    );
    assert_eq!(count(OPS, &of_day(day1)), 1);
    d.assert_no_secrets();
}
