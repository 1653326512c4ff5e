//! The operator's CLI against a real daemon: the commands that cover the API (pay, renew,
//! outcome, client show/update), tables that fit 80 and 120 columns, the log's rule and match
//! columns, `log --follow` across a restart, a closed pipe, errors that say what to do, and
//! `rules test --rules` on a rules file that is not loaded.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Daemon, order, person};
use serde_json::json;

fn width(line: &str) -> usize {
    // The test's data is Latin and Cyrillic (one column each) plus the ellipsis.
    line.chars().count()
}

/// Drops a registrar reply into the daemon's Maildir (the embedded default source).
fn reply(d: &Daemon, name: &str, subject: &str, body: &str) {
    let inbox = d.dir().join("var/inbox/new");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let raw = format!(
        "From: robot@sandbox.invalid\r\nTo: regmail@sandbox.invalid\r\nSubject: {subject}\r\nMessage-ID: <{name}@sandbox.invalid>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    );
    std::fs::write(inbox.join(format!("{name}.eml")), raw).expect("reply");
}

#[test]
fn cli_covers_pay_renew_outcome_and_client() {
    let d = Daemon::start();
    d.post_expect("/v1/clients", &person("cust-7"), 201);
    d.post_expect("/v1/domains", &order("covered.ru", "cust-7", false), 202);

    // client show / update (Unregistered: its data may be corrected).
    let out = d.cli(&["client", "show", "cust-7"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("Иванов Иван Иванович"),
        "{}",
        out.stdout
    );
    let out = d.cli(&[
        "client",
        "update",
        "cust-7",
        "--set",
        "phone=+7 812 7654321",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        d.get_ok("/v1/clients/cust-7")["registrant"]["phone"],
        json!("+7 812 7654321")
    );
    assert!(out.stdout.contains("+7 812 7654321"), "{}", out.stdout);

    // pay: the client request goes out.
    let out = d.cli(&["pay", "covered.ru"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Registering"), "{}", out.stdout);

    // outcome: the client's request completed (learned in the partner panel).
    let req = d.get_ok("/v1/clients/cust-7")["open_request"]
        .as_str()
        .expect("client request")
        .to_owned();
    let out = d.cli(&[
        "outcome",
        &req,
        "--event",
        "completed",
        "--handle",
        "REGMAIL_1_1-GPT",
        "--note",
        "seen in the R01 panel",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Completed"), "{}", out.stdout);
    // The domain request follows; complete it with an expiry inside R01's renewal window.
    let domain_req = {
        let start = Instant::now();
        loop {
            let v = d.get_ok("/v1/domains/covered.ru");
            if let Some(id) = v["open_request"]["id"].as_str() {
                break id.to_owned();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let soon = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(30))
        .expect("date")
        .to_string();
    let out = d.cli(&[
        "outcome",
        &domain_req,
        "--event",
        "completed",
        "--expires",
        &soon,
        "--note",
        "panel",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        d.get_ok("/v1/domains/covered.ru")["status"],
        json!("Registered")
    );
    // renew: a PROLONG request.
    let out = d.cli(&["renew", "covered.ru", "--years", "1"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Renewing"), "{}", out.stdout);
    // A bad outcome names the field.
    let out = d.cli(&[
        "outcome",
        &domain_req,
        "--event",
        "rejected",
        "--handle",
        "X_1_1-GPT",
        "--note",
        "x",
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("handle"), "{}", out.stderr);
}

#[test]
fn tables_fit_80_and_120_columns() {
    let d = Daemon::start();
    let p = person("client-with-a-rather-long-identifier-0001");
    d.post_expect("/v1/clients", &p, 201);
    for name in [
        "очень-длинное-имя-домена-для-проверки-ширины.рф",
        "another-quite-long-domain-name-for-width.ru",
        "x.ru",
    ] {
        d.post_expect(
            "/v1/domains",
            &order(name, "client-with-a-rather-long-identifier-0001", true),
            202,
        );
    }
    // A reply a rule matches (tied by the subject token), and one no rule matches.
    let token = d.get_ok("/v1/clients/client-with-a-rather-long-identifier-0001")["open_request"]
        .as_str()
        .map(|id| d.get_ok(&format!("/v1/requests/{id}"))["token"].clone())
        .and_then(|t| t.as_str().map(str::to_owned))
        .expect("token");
    reply(
        &d,
        "ack1",
        &format!("Re: [RM-{token}]"),
        "Your request was accepted and queued as task 4242.",
    );
    reply(
        &d,
        "odd1",
        "Something entirely different, with a very long subject line that goes on and on",
        "A wording nobody wrote a rule for.",
    );
    d.wait_for("the reply is applied", |d| {
        d.full_log()
            .iter()
            .any(|e| e["evidence"]["rule"].is_string())
    });
    let entry = d
        .full_log()
        .into_iter()
        .find(|e| e["evidence"]["rule"].is_string())
        .expect("a rule entry");
    let rule = entry["evidence"]["rule"].as_str().unwrap().to_owned();
    let corr = entry["evidence"]["correlation"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    for cols in [80usize, 120] {
        let c = cols.to_string();
        for args in [
            vec!["list"],
            vec!["log"],
            vec![
                "log",
                "--client",
                "client-with-a-rather-long-identifier-0001",
            ],
            vec!["inbox", "--state", "all"],
        ] {
            let out = d.cli_env(&args, &[("COLUMNS", &c)]);
            assert_eq!(out.code, 0, "{args:?}: {out:?}");
            assert!(out.stdout.lines().count() >= 2, "{args:?}: {}", out.stdout);
            for l in out.stdout.lines() {
                assert!(
                    width(l) <= cols,
                    "{args:?} at {cols} columns: a line of {}:\n{l}",
                    width(l)
                );
            }
        }
        let out = d.cli_env(&["log"], &[("COLUMNS", &c)]);
        let head = out.stdout.lines().next().unwrap_or_default().to_owned();
        assert!(head.contains("RULE") && head.contains("TIME"), "{head}");
        // Cut cells end with an ellipsis; the IDN is shown in Unicode.
        assert!(out.stdout.contains('…'), "{}", out.stdout);
        let list = d.cli_env(&["list"], &[("COLUMNS", &c)]);
        assert!(list.stdout.contains("очень-"), "{}", list.stdout);
    }
    // Wide enough, the rule and how the reply was matched are there in full.
    let out = d.cli_env(&["log"], &[("COLUMNS", "400")]);
    assert!(
        out.stdout.contains(&format!("{rule} by {corr}")),
        "{rule} by {corr}:\n{}",
        out.stdout
    );
    // Short local timestamps (MM-DD HH:MM:SS), not RFC 3339.
    let first = out.stdout.lines().nth(1).unwrap_or_default();
    let time: String = first
        .split_whitespace()
        .skip(1)
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "99-99 99:99:99", "{first}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let d = Daemon::start();
    for i in 0..5 {
        d.post_expect("/v1/clients", &person(&format!("pipe-{i}")), 201);
    }
    // The reader is gone before the first write: every write is EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(d.dir().join("regmail.toml"))
        .arg("log")
        .env_remove("REGMAIL_API_TOKEN")
        .env_remove("COLUMNS")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "stderr: {err}");
    assert_eq!(out.status.code(), Some(0));
    // The README's own example: `regmail log | head`.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{BIN} --config {} log --json | head -c 1 >/dev/null; sleep 0.2",
            d.dir().join("regmail.toml").display()
        ))
        .env_remove("REGMAIL_API_TOKEN")
        .output()
        .expect("bash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("Broken pipe") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn errors_say_what_to_do() {
    let d = Daemon::start();
    d.post_expect("/v1/clients", &person("cust-42"), 201);
    let cfg = d.dir().join("regmail.toml");
    let cfg = cfg.to_str().unwrap();
    // --api without a scheme.
    let addr = d.addr().to_string();
    let out = d.cli(&["--api", &addr, "list"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(&format!("http://{addr}")),
        "{}",
        out.stderr
    );
    // A refused token: which one and where it came from.
    let out = Command::new(BIN)
        .args(["--config", cfg, "list"])
        .env("REGMAIL_API_TOKEN", "not-the-daemons-token-at-all")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("refused the API token from the environment variable REGMAIL_API_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("not-the-daemons-token-at-all"), "{err}");
    // The log of a client id.
    let out = d.cli(&["log", "cust-42"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("regmail log --client cust-42"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn log_follow_survives_a_daemon_restart() {
    let mut d = Daemon::start();
    d.post_expect("/v1/clients", &person("before-restart"), 201);
    let mut follow = Command::new(BIN)
        .arg("--config")
        .arg(d.dir().join("regmail.toml"))
        .args(["log", "--follow", "--json"])
        .env_remove("REGMAIL_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("follow");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let wait_line = |what: &str| -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200))
                && l.contains(what)
            {
                return true;
            }
        }
        false
    };
    assert!(wait_line("before-restart"));
    d.stop();
    std::thread::sleep(Duration::from_millis(1200));
    d.restart();
    d.post_expect("/v1/clients", &person("after-restart"), 201);
    let seen = wait_line("after-restart");
    let still_running = follow.try_wait().expect("try_wait").is_none();
    let _ = follow.kill();
    let out = follow.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(still_running, "log --follow ended at the restart: {err}");
    assert!(seen, "no entry after the restart; stderr: {err}");
    assert!(err.contains("waiting for it"), "{err}");
}

#[test]
fn rules_test_uses_the_given_rules_file() {
    let d = Daemon::start();
    let dir = d.dir();
    let eml = dir.join("new-wording.eml");
    std::fs::write(
        &eml,
        "From: robot@sandbox.invalid\r\nTo: regmail@sandbox.invalid\r\nSubject: Zayavka prinyata\r\nMessage-ID: <nw1@sandbox.invalid>\r\n\r\nZayavka 777 prinyata k ispolneniyu.\r\n",
    )
    .expect("eml");
    let rules = dir.join("replies-new.toml");
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/request-templates/r01/replies.toml"
    ))
    .expect("shipped rules");
    std::fs::write(
        &rules,
        format!(
            "{shipped}\n[[rule]]\nname = \"accepted-translit\"\nevent = \"acknowledged\"\nbody = 'Zayavka (?P<task_id>\\d+) prinyata'\n"
        ),
    )
    .expect("rules");
    let eml_s = eml.to_str().unwrap();
    // The loaded rules do not know the wording.
    let out = d.cli(&["rules", "test", eml_s]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("accepted-translit"), "{}", out.stdout);
    // The edited file does, before it is loaded.
    let out = d.cli(&["rules", "test", eml_s, "--rules", rules.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("accepted-translit"), "{}", out.stdout);
    assert!(out.stdout.contains("777"), "{}", out.stdout);
    // The daemon still has the old rules (nothing was loaded).
    let out = d.cli(&["rules", "test", eml_s]);
    assert!(!out.stdout.contains("accepted-translit"), "{}", out.stdout);
    // A broken file: its line and the reason.
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"x\"\nevent = \"acknowledged\"\nbody = '(unclosed'\n",
    )
    .expect("rules");
    let out = d.cli(&["rules", "test", eml_s, "--rules", rules.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("line 4"), "{}", out.stderr);
}
