//! The reseller reports (issue 11 part 3): expiring within N days, expired (in grace), deleted.
//!
//! In process, on a seeded store: each report lists each domain on the right days with the
//! issue's columns in order (JSON and CSV); RFC 4180 quoting and the formula guard; the
//! reports read only the matching part of one index (a store full of other domains). The daily
//! report e-mail with a `dir` transport and a pinned clock: once a day, across restarts, a
//! failed send goes again with the same Message-ID and bytes, an unsent day is superseded.
//! Through the real binary: the routes (JSON, CSV by `Accept`, bad input named) and
//! `regmail report`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::seed;
use jiff::Timestamp;
use jiff::civil::{Date, date};
use mail_parser::MimeHeaders;
use regmail::core::DomainStatus::{self, *};
use regmail::outbound::Transport;
use regmail::reports::mail::{MailState, ReportMail, ReportMailer, Tick};
use regmail::reports::{self, Cell, Kind};
use regmail::store::Store;
use serde_json::{Value, json};

fn days(d: Date, n: i64) -> Date {
    d.checked_add(jiff::Span::new().days(n)).expect("date")
}

fn open(dir: &Path) -> Store {
    Store::open(&dir.join("store"), 16 << 20).expect("open store")
}

/// The portfolio of the tests, around `today`.
fn portfolio(store: &Store, today: Date) {
    let d = |name: &str, st: DomainStatus, exp: Option<i64>| {
        seed::domain(name, "one", st, exp.map(|n| days(today, n)), None, None)
    };
    seed::write(
        store,
        vec![seed::client(
            "one",
            "Customer One",
            "one@customer.test",
            Some("8 900 0000001"),
        )],
        vec![
            d("d30.ru", Registered, Some(30)),
            d("d31.ru", Registered, Some(31)),
            d("d15.ru", Registered, Some(15)),
            d("d1.ru", Registered, Some(1)),
            d("d0.ru", Renewing, Some(0)),
            d("err.ru", Error, Some(5)),
            d("past.ru", Registered, Some(-1)),
            d("cxl.ru", Cancelled, None),
            seed::domain(
                "gone.ru",
                "one",
                Expired,
                Some(days(today, -3)),
                Some(days(today, 7)),
                None,
            ),
            seed::domain(
                "old.ru",
                "one",
                Deleted,
                Some(days(today, -20)),
                None,
                Some(days(today, -10)),
            ),
        ],
    );
}

fn domains_of(r: &reports::Report) -> Vec<String> {
    let i = r
        .kind
        .columns()
        .iter()
        .position(|c| c.key == "domain")
        .expect("domain column");
    r.rows.iter().map(|row| row[i].text()).collect()
}

#[test]
fn each_report_lists_each_domain_on_the_right_days_with_the_columns_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let today = date(2027, 3, 1);
    portfolio(&store, today);

    let keys = |k: Kind| -> Vec<&str> { k.columns().iter().map(|c| c.key).collect() };
    // The columns first, in its order; ours after them.
    assert_eq!(
        keys(Kind::Expiring { within: 30 }),
        [
            "order_id",
            "description",
            "expiry_date",
            "days_left",
            "customer_name",
            "email",
            "phone",
            "status",
            "domain",
            "domain_unicode"
        ]
    );
    assert_eq!(
        keys(Kind::Expired),
        [
            "order_id",
            "description",
            "expiry_date",
            "customer_name",
            "email",
            "phone",
            "grace_ends",
            "domain",
            "domain_unicode"
        ]
    );
    assert_eq!(
        keys(Kind::Deleted),
        [
            "order_id",
            "description",
            "expiry_date",
            "deletion_date",
            "customer_name",
            "email",
            "phone",
            "domain",
            "domain_unicode"
        ]
    );

    // Expiring: live domains with 0..=N days left, earliest first; a Renewing one and one in
    // Error (a failed renewal) count; Expired, Deleted, Cancelled and past expiries do not.
    let r30 = reports::expiring(&store, today, 30).unwrap();
    assert_eq!(
        domains_of(&r30),
        ["d0.ru", "d1.ru", "err.ru", "d15.ru", "d30.ru"]
    );
    let r15 = reports::expiring(&store, today, 15).unwrap();
    assert_eq!(domains_of(&r15), ["d0.ru", "d1.ru", "err.ru", "d15.ru"]);
    let r1 = reports::expiring(&store, today, 1).unwrap();
    assert_eq!(domains_of(&r1), ["d0.ru", "d1.ru"]);
    let row = &r30.rows[3];
    assert_eq!(
        row,
        &vec![
            Cell::Text("order-d15.ru".into()),
            Cell::Text("site d15.ru".into()),
            Cell::Date(Some(date(2027, 3, 16))),
            Cell::Int(15),
            Cell::Text("Customer One".into()),
            Cell::Text("one@customer.test".into()),
            Cell::Text("8 900 0000001".into()),
            Cell::Text("Registered".into()),
            Cell::Text("d15.ru".into()),
            Cell::Text("d15.ru".into()),
        ]
    );
    assert_eq!(r30.rows[0][3], Cell::Int(0), "expiring today: 0 days left");
    assert_eq!(r30.rows[0][7], Cell::Text("Renewing".into()));

    // Sixteen days later the same domains move through the windows.
    let later = days(today, 16);
    assert_eq!(
        domains_of(&reports::expiring(&store, later, 15).unwrap()),
        ["d30.ru", "d31.ru"]
    );
    let r = reports::expiring(&store, later, 30).unwrap();
    assert_eq!(r.rows[0][3], Cell::Int(14));
    assert_eq!(r.rows[1][3], Cell::Int(15));

    // Expired (in grace) with the grace end after the named columns; deleted with its date.
    let ex = reports::expired(&store, today).unwrap();
    assert_eq!(
        ex.rows,
        vec![vec![
            Cell::Text("order-gone.ru".into()),
            Cell::Text("site gone.ru".into()),
            Cell::Date(Some(date(2027, 2, 26))),
            Cell::Text("Customer One".into()),
            Cell::Text("one@customer.test".into()),
            Cell::Text("8 900 0000001".into()),
            Cell::Date(Some(date(2027, 3, 8))),
            Cell::Text("gone.ru".into()),
            Cell::Text("gone.ru".into()),
        ]]
    );
    let del = reports::deleted(&store, today).unwrap();
    assert_eq!(
        del.rows,
        vec![vec![
            Cell::Text("order-old.ru".into()),
            Cell::Text("site old.ru".into()),
            Cell::Date(Some(date(2027, 2, 9))),
            Cell::Date(Some(date(2027, 2, 19))),
            Cell::Text("Customer One".into()),
            Cell::Text("one@customer.test".into()),
            Cell::Text("8 900 0000001".into()),
            Cell::Text("old.ru".into()),
            Cell::Text("old.ru".into()),
        ]]
    );

    // JSON: the column order in `columns`, each row an object of those keys.
    let j = r30.to_json();
    assert_eq!(j["report"], "expiring");
    assert_eq!(j["within_days"], 30);
    assert_eq!(j["date"], "2027-03-01");
    assert_eq!(j["count"], 5);
    assert_eq!(j["columns"][3], "days_left");
    assert_eq!(
        j["rows"][3],
        json!({"order_id": "order-d15.ru", "description": "site d15.ru",
               "expiry_date": "2027-03-16", "days_left": 15, "customer_name": "Customer One",
               "email": "one@customer.test", "phone": "8 900 0000001", "status": "Registered",
               "domain": "d15.ru", "domain_unicode": "d15.ru"})
    );
    let jd = del.to_json();
    assert_eq!(jd["rows"][0]["deletion_date"], "2027-02-19");
    assert!(jd.get("within_days").is_none());

    // CSV: header row of the headings, one CRLF-ended record per row, same order.
    let csv = reports::csv::render(&r15);
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0],
        "Order ID,Description,Expiry date,Days left,Customer name,E-mail,Phone,Status,Domain,Domain (Unicode)"
    );
    assert_eq!(
        lines[4],
        "order-d15.ru,site d15.ru,2027-03-16,15,Customer One,one@customer.test,8 900 0000001,Registered,d15.ru,d15.ru"
    );
    assert_eq!(lines.len(), 5);
    assert!(csv.ends_with("\r\n"));
    let ex_csv = reports::csv::render(&ex);
    assert!(
        ex_csv.starts_with(
            "Order ID,Description,Expiry date,Customer name,E-mail,Phone,Grace ends,Domain,Domain (Unicode)\r\n"
        ),
        "{ex_csv}"
    );
    let del_csv = reports::csv::render(&del);
    assert!(
        del_csv.starts_with(
            "Order ID,Description,Expiry date,Deletion date,Customer name,E-mail,Phone,Domain,Domain (Unicode)\r\n"
        ),
        "{del_csv}"
    );
}

#[test]
fn csv_quotes_per_rfc_4180_and_guards_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let today = date(2027, 3, 1);
    let mut d = seed::domain(
        "пример.рф",
        "evil",
        Registered,
        Some(days(today, 10)),
        None,
        None,
    );
    d.order_id = "-1".into();
    d.description = vec!["Shop, \"best\" prices".into(), "line two".into()];
    seed::write(
        &store,
        vec![seed::client(
            "evil",
            "=HYPERLINK(\"http://evil.test\",\"x\")",
            "@evil.test",
            Some("+7 495 1234567"),
        )],
        vec![d],
    );
    let r = reports::expiring(&store, today, 30).unwrap();
    let csv = reports::csv::render(&r);
    let record = csv
        .split_once("\r\n")
        .map(|(_, rest)| rest)
        .expect("a record after the header");
    assert_eq!(
        record,
        "'-1,\"Shop, \"\"best\"\" prices\nline two\",2027-03-11,10,\"'=HYPERLINK(\"\"http://evil.test\"\",\"\"x\"\")\",'@evil.test,'+7 495 1234567,Registered,xn--e1afmkfd.xn--p1ai,пример.рф\r\n"
    );
    // JSON carries the data as it is.
    let j = r.to_json();
    assert_eq!(
        j["rows"][0]["customer_name"],
        "=HYPERLINK(\"http://evil.test\",\"x\")"
    );
    assert_eq!(
        j["rows"][0]["description"],
        "Shop, \"best\" prices\nline two"
    );
    assert_eq!(j["rows"][0]["domain_unicode"], "пример.рф");
}

#[test]
fn reports_read_only_the_matching_part_of_one_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let today = date(2027, 3, 1);
    // 3000 domains that match no report (expiring next year), then a few that do.
    let far: Vec<_> = (0..3000)
        .map(|i| {
            seed::domain(
                &format!("far{i}.ru"),
                "one",
                Registered,
                Some(days(today, 300 + i64::from(i % 60))),
                None,
                None,
            )
        })
        .collect();
    seed::write(
        &store,
        vec![seed::client("one", "One", "one@customer.test", None)],
        far,
    );
    portfolio(&store, today);
    let r = reports::expiring(&store, today, 30).unwrap();
    assert_eq!(r.rows.len(), 5);
    // The range today..=today+30 of the expiry index holds these five only.
    assert_eq!(r.keys_read, 5, "read more than the matching index range");
    let ex = reports::expired(&store, today).unwrap();
    assert_eq!((ex.rows.len(), ex.keys_read), (1, 1));
    let del = reports::deleted(&store, today).unwrap();
    assert_eq!((del.rows.len(), del.keys_read), (1, 1));
    // A year ahead reads the whole far range, as it should.
    let year = reports::expiring(&store, today, 366).unwrap();
    assert_eq!(year.keys_read, 3000 + 6);
}

#[test]
fn within_is_a_whole_number_of_days_from_1_to_366() {
    assert_eq!(reports::parse_within("30"), Ok(30));
    assert_eq!(reports::parse_within("366"), Ok(366));
    for bad in ["0", "367", "-1", "abc", "", "1.5", "30d"] {
        let e = reports::parse_within(bad).unwrap_err();
        assert!(e.contains("1 to 366"), "{bad}: {e}");
    }
}

// ---- the daily e-mail, in process with a pinned clock --------------------------------------

fn mail_config() -> regmail::config::ReportsConfig {
    regmail::config::Config::from_toml_str(
        "[notices]\nfrom = \"reports@hosting.test\"\nmessage_id_host = \"hosting.test\"\n\
         [reports]\nrecipients = [\"ops@hosting.test\"]\ndaily_at = \"07:00\"\ntimezone = \"Europe/Moscow\"\n",
        None,
    )
    .expect("config")
    .reports
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn tick(rt: &tokio::runtime::Runtime, m: &mut ReportMailer, now: &str) -> Tick {
    rt.block_on(m.tick(at(now)))
}

fn eml(dir: &Path, day: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("report-{day}.eml"))).unwrap_or_default()
}

#[test]
fn the_daily_report_goes_once_a_day_across_restarts_and_again_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let today = date(2027, 3, 1);
    let mut store = std::sync::Arc::new(open(dir.path()));
    portfolio(&store, today);
    let mailer = |store: &std::sync::Arc<Store>, t: Transport| ReportMailer {
        store: store.clone(),
        config: mail_config(),
        transport: t,
        retry: vec![Duration::from_secs(60), Duration::from_secs(300)],
    };
    // A sendmail that cannot run: a transient failure, as when the mail server is down.
    let broken = || Transport::Sendmail(dir.path().join("no-such-sendmail"));
    let mut m = mailer(&store, broken());

    // 07:00 in Moscow is 04:00 UTC: nothing before.
    assert_eq!(tick(&rt, &mut m, "2027-03-01T03:59:59Z"), Tick::Idle);
    assert_eq!(
        tick(&rt, &mut m, "2027-03-01T04:00:00Z"),
        Tick::Attempted {
            day: "2027-03-01".into(),
            state: MailState::Pending
        }
    );
    let first: ReportMail = store.report_mail("2027-03-01").unwrap().expect("record");
    assert_eq!(first.message_id, "<report-2027-03-01@hosting.test>");
    assert_eq!(first.attempts, 1);
    assert_eq!(first.next_at, Some(at("2027-03-01T04:01:00Z")));

    // The mail server is back; the retry waits for its time, then sends the stored message.
    m.transport = Transport::Dir(out.clone());
    assert_eq!(tick(&rt, &mut m, "2027-03-01T04:00:30Z"), Tick::Idle);
    assert!(eml(&out, "2027-03-01").is_empty());
    // A domain changes meanwhile: the retry still sends the report as first made.
    seed::write(
        &store,
        vec![],
        vec![seed::domain(
            "late.ru",
            "one",
            Registered,
            Some(days(today, 2)),
            None,
            None,
        )],
    );
    assert_eq!(
        tick(&rt, &mut m, "2027-03-01T04:01:00Z"),
        Tick::Attempted {
            day: "2027-03-01".into(),
            state: MailState::Sent
        }
    );
    let sent = eml(&out, "2027-03-01");
    assert_eq!(
        String::from_utf8_lossy(&sent),
        first.message,
        "a resend is the same message"
    );
    assert!(!String::from_utf8_lossy(&sent).contains("late.ru"));

    // Once a day: later the same day, a new mailer (a restart), a reopened store: nothing.
    assert_eq!(tick(&rt, &mut m, "2027-03-01T20:00:00Z"), Tick::Idle);
    drop(m);
    let mut m = mailer(&store, Transport::Dir(out.clone()));
    assert_eq!(tick(&rt, &mut m, "2027-03-01T20:59:59Z"), Tick::Idle);
    drop(m);
    store = std::sync::Arc::new({
        let s = std::sync::Arc::try_unwrap(store).ok().expect("sole owner");
        drop(s);
        open(dir.path())
    });
    let mut m = mailer(&store, Transport::Dir(out.clone()));
    assert_eq!(tick(&rt, &mut m, "2027-03-01T23:00:00Z"), Tick::Idle);
    let files = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(files, 1);

    // The next day (in Moscow) brings the next report, with the days counted from that day.
    assert_eq!(tick(&rt, &mut m, "2027-03-02T03:00:00Z"), Tick::Idle);
    assert_eq!(
        tick(&rt, &mut m, "2027-03-02T04:00:00Z"),
        Tick::Attempted {
            day: "2027-03-02".into(),
            state: MailState::Sent
        }
    );
    let second = eml(&out, "2027-03-02");
    let msg = mail_parser::MessageParser::default()
        .parse(&second)
        .expect("parse the report e-mail");
    assert_eq!(
        msg.message_id(),
        Some("report-2027-03-02@hosting.test"),
        "a Message-ID fixed by the day"
    );
    let names: Vec<String> = msg
        .attachments()
        .map(|a| a.attachment_name().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "expiring-30-2027-03-02.csv",
            "expiring-15-2027-03-02.csv",
            "expiring-1-2027-03-02.csv",
            "expired-2027-03-02.csv",
            "deleted-2027-03-02.csv"
        ]
    );
    let day2 = date(2027, 3, 2);
    for (a, kind) in msg.attachments().zip([
        Kind::Expiring { within: 30 },
        Kind::Expiring { within: 15 },
        Kind::Expiring { within: 1 },
        Kind::Expired,
        Kind::Deleted,
    ]) {
        let want = reports::csv::render(&reports::make(&store, kind, day2).unwrap());
        assert_eq!(String::from_utf8_lossy(a.contents()), want, "{kind:?}");
        assert!(a.is_content_type("text", "csv"));
    }
    // Day 2: d1.ru has 0 days left, late.ru 1; d0.ru's expiry has passed.
    let one_day = reports::make(&store, Kind::Expiring { within: 1 }, day2).unwrap();
    assert_eq!(domains_of(&one_day), ["d1.ru", "late.ru"]);

    // A day whose report never went is superseded by the next day's, not sent late.
    drop(m);
    let mut m = mailer(&store, broken());
    assert_eq!(
        tick(&rt, &mut m, "2027-03-03T04:00:00Z"),
        Tick::Attempted {
            day: "2027-03-03".into(),
            state: MailState::Pending
        }
    );
    m.transport = Transport::Dir(out.clone());
    assert_eq!(
        tick(&rt, &mut m, "2027-03-04T04:00:00Z"),
        Tick::Attempted {
            day: "2027-03-04".into(),
            state: MailState::Sent
        }
    );
    let day3: ReportMail = store.report_mail("2027-03-03").unwrap().expect("record");
    assert_eq!(day3.state, MailState::Superseded);
    assert!(eml(&out, "2027-03-03").is_empty());
    let actions: Vec<String> = store
        .log_since(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.entry.action)
        .filter(|a| a.starts_with("report."))
        .collect();
    assert_eq!(
        actions,
        [
            "report.retry",
            "report.sent",
            "report.sent",
            "report.retry",
            "report.superseded",
            "report.sent"
        ]
    );
}

// ---- through the real binary -----------------------------------------------------------------

fn utc_today() -> Date {
    Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date()
}

/// A daemon whose store holds the portfolio around today's date (seeded while it is stopped).
fn daemon_with_portfolio() -> common::Daemon {
    let mut d = common::Daemon::start();
    d.stop();
    {
        let store = Store::open(&d.store_path(), 16 << 20).expect("open the daemon's store");
        portfolio(&store, utc_today());
        store.flush().unwrap();
    }
    d.restart();
    d
}

#[test]
fn the_routes_answer_json_or_csv_and_refuse_bad_input_naming_the_field() {
    let d = daemon_with_portfolio();
    let today = utc_today();

    let v = d.get_ok("/v1/reports/expiring?within=30");
    assert_eq!(v["report"], "expiring");
    assert_eq!(v["date"], today.to_string());
    let names: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["domain"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["d0.ru", "d1.ru", "err.ru", "d15.ru", "d30.ru"]);
    assert_eq!(v["rows"][3]["days_left"], 15);
    assert_eq!(v["rows"][3]["customer_name"], "Customer One");
    let v = d.get_ok("/v1/reports/expiring");
    assert_eq!(v["within_days"], 30, "30 days by default");
    let v = d.get_ok("/v1/reports/expiring?within=1");
    assert_eq!(v["count"], 2);
    let v = d.get_ok("/v1/reports/expired");
    assert_eq!(v["rows"][0]["domain"], "gone.ru");
    assert_eq!(v["rows"][0]["grace_ends"], days(today, 7).to_string());
    let v = d.get_ok("/v1/reports/deleted");
    assert_eq!(v["rows"][0]["deletion_date"], days(today, -10).to_string());

    // CSV when Accept asks for it.
    let r = d.call(
        "GET",
        "/v1/reports/expiring?within=15",
        &[("Accept", "text/csv")],
        common::Body::None,
        true,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.header("content-disposition"),
        Some(format!("attachment; filename=\"expiring-15-{today}.csv\"").as_str())
    );
    assert!(
        r.text
            .starts_with("Order ID,Description,Expiry date,Days left,Customer name,E-mail,Phone,"),
        "{}",
        r.text
    );
    assert_eq!(r.text.matches("\r\n").count(), 5, "{}", r.text);
    let csv_15 = r.text.clone();
    for path in ["/v1/reports/expired", "/v1/reports/deleted"] {
        let r = d.call(
            "GET",
            path,
            &[("Accept", "application/json;q=0.5, text/csv")],
            common::Body::None,
            true,
        );
        assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
        assert_eq!(r.text.matches("\r\n").count(), 2, "{path}: {}", r.text);
    }
    let r = d.call(
        "GET",
        "/v1/reports/expired",
        &[("Accept", "*/*")],
        common::Body::None,
        true,
    );
    assert_eq!(r.json()["report"], "expired", "JSON by default");

    // Bad input: 400 naming `within`; unknown parameters named; nothing without the token.
    for bad in ["0", "367", "abc", "", "1.5", "-3"] {
        let (s, v) = d.get(&format!("/v1/reports/expiring?within={}", common::enc(bad)));
        assert_eq!(s, 400, "within={bad}: {v}");
        assert_eq!(v["error"]["field"], "within", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("1 to 366"),
            "{v}"
        );
    }
    let (s, v) = d.get("/v1/reports/expiring?within=3&days=4");
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["field"], "days");
    let (s, v) = d.get("/v1/reports/expired?within=3");
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["field"], "within");
    let r = d.call("GET", "/v1/reports/deleted", &[], common::Body::None, false);
    assert_eq!(r.status, 401);

    // The CLI: a table, the same CSV, JSON; a bad --within named.
    let out = d.cli(&["report", "expiring", "--within", "30"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("expiring within 30 days"),
        "{}",
        out.stdout
    );
    for col in [
        "ORDER",
        "DESCR",
        "EXPIRES",
        "DAYS LEFT",
        "CUSTOMER",
        "E-MAIL",
        "PHONE",
        "STATUS",
        "DOMAIN",
    ] {
        assert!(lines[1].contains(col), "{col}: {}", out.stdout);
    }
    assert!(
        lines[1].find("ORDER") < lines[1].find("DESCR")
            && lines[1].find("EXPIRES") < lines[1].find("DAYS LEFT")
            && lines[1].find("CUSTOMER") < lines[1].find("PHONE"),
        "{}",
        lines[1]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("d15.ru") && l.contains("Customer One")),
        "{}",
        out.stdout
    );
    let out = d.cli(&["report", "expiring", "--within", "15", "--csv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, csv_15, "the CLI prints the daemon's CSV as is");
    let out = d.cli(&["--json", "report", "deleted"]);
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["rows"][0]["domain"], "old.ru");
    let out = d.cli(&["report", "expired"]);
    assert!(out.stdout.contains("gone.ru"), "{}", out.stdout);
    let out = d.cli(&["report", "expiring", "--within", "400"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("within"), "{}", out.stderr);
}
