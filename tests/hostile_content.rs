//! Hostile content through the real intake (issue 9 part B): the corpus in
//! `fixtures/hostile/content/` (secrets quoted in every quoting, charset and transfer encoding,
//! header and MIME bombs, an oversized message, junk, a reused Maildir file name) is delivered
//! into the running daemon's Maildir one by one. Each must end as its manifest says, no view
//! (API, CLI, raw or decoded) may show the registrar password, and no domain or request may
//! move. The daemon runs with umask 000 and log level trace; the shared harness scans every
//! answer, CLI output and log line for the secrets (tests/common).
//!
//! Also here: strict input (duplicate JSON keys, TLD rules, invisible characters) and secret
//! files that others can read.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hostile/content");

fn manifest() -> toml::Table {
    toml::from_str(&std::fs::read_to_string(Path::new(DIR).join("manifest.toml")).unwrap())
        .expect("manifest")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Independent of regmail's own code: does mail-parser find the secret in the fixture's
/// decoded headers or parts? (So a "secret" fixture really carries it.)
fn fixture_holds(raw: &[u8], secret: &str) -> bool {
    use mail_parser::{HeaderValue, MessageParser, PartType};
    fn walk(m: &mail_parser::Message<'_>, secret: &str) -> bool {
        for part in &m.parts {
            for h in &part.headers {
                let found = match &h.value {
                    HeaderValue::Text(t) => t.contains(secret),
                    HeaderValue::Address(a) => a
                        .iter()
                        .any(|x| x.name.as_deref().is_some_and(|n| n.contains(secret))),
                    _ => false,
                };
                if found {
                    return true;
                }
            }
            let found = match &part.body {
                PartType::Text(t) | PartType::Html(t) => t.contains(secret),
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    b.windows(secret.len()).any(|w| w == secret.as_bytes())
                }
                PartType::Message(inner) => walk(inner, secret),
                PartType::Multipart(_) => false,
            };
            if found {
                return true;
            }
        }
        false
    }
    MessageParser::default()
        .parse(raw)
        .is_some_and(|m| walk(&m, secret))
}

/// Delivers `bytes` into the daemon's Maildir as `name` (tmp/ then rename into new/).
fn deliver(d: &Daemon, name: &str, bytes: &[u8]) {
    let md = d.dir().join("var/inbox");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let tmp = md.join("tmp").join(name);
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, md.join("new").join(name)).unwrap();
}

fn record(d: &Daemon, key: &str) -> Option<Value> {
    d.get_ok("/v1/inbox?limit=10000")["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == key)
        .cloned()
}

fn modes_under(dir: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        out.push((e.path(), meta.permissions().mode() & 0o777, meta.is_dir()));
        if meta.is_dir() {
            modes_under(&e.path(), out);
        }
    }
}

#[test]
fn hostile_content_ends_as_expected_and_never_shows_a_secret() {
    let m = manifest();
    let secret = m["secret"].as_str().unwrap();
    assert_eq!(
        secret, REGISTRAR_SECRET,
        "the corpus quotes the harness's password"
    );
    let d = Daemon::start_with(Options {
        extra_config: "\n[inbound]\nmax_message_bytes = 150000\nmax_header_fields = 200\nmax_header_bytes = 32768\npoll_interval = \"50ms\"\n".into(),
        log_filter: Some("trace".into()),
        umask: Some(0),
        ..Options::default()
    });
    // State that must not move: a client and a paid order whose request was sent.
    d.post_expect("/v1/clients", &person("hc1"), 201);
    d.post_expect(
        "/v1/domains",
        &order("hostile-example.ru", "hc1", true),
        202,
    );
    d.settle();
    let sent = d.sent_mail();
    assert!(
        sent.iter().any(|(_, m)| m.contains(secret)),
        "the request really carries the registrar password (so the scan has something to find)"
    );
    let domains_before = d.get_ok("/v1/domains?limit=1000");
    let requests_before = d.get_ok("/v1/requests?state=Sent&limit=1000");
    let domain_before = d.get_ok("/v1/domains/hostile-example.ru");
    let seq_before = d.stats()["log_seq"].as_u64().unwrap();

    let mut keys = Vec::new();
    for entry in m["message"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let raw = std::fs::read(Path::new(DIR).join(file)).unwrap();
        let is_secret = entry.get("secret").and_then(|v| v.as_bool()) == Some(true);
        // Where the secret sits in the text or headers (not in an attachment or a returned
        // part, which the decoded view leaves out), the mask shows where it stood.
        let in_text = is_secret && !["08-", "09-", "20-"].iter().any(|p| file.starts_with(p));
        if in_text {
            assert!(
                fixture_holds(&raw, secret),
                "{file} does not carry the secret"
            );
        }
        let name = entry
            .get("maildir_name")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}.hostile", file.trim_end_matches(".eml")));
        let base = format!("maildir/{name}");
        let key = if keys.contains(&base) {
            format!("{base}~2")
        } else {
            base.clone()
        };
        deliver(&d, &name, &raw);
        let mut rec = Value::Null;
        d.wait_for(&format!("{file} to be settled"), |d| {
            match record(d, &key) {
                Some(r) if r["state"] != "Pending" => {
                    rec = r;
                    true
                }
                _ => false,
            }
        });
        let expect = entry["expect"].as_str().unwrap();
        if expect != "*" {
            assert_eq!(rec["state"], expect, "{file}: {rec}");
        }
        if let Some(reason) = entry.get("reason").and_then(|v| v.as_str()) {
            assert!(
                s(&rec["reason"]).contains(reason),
                "{file}: the reason names the problem ({reason:?}): {rec}"
            );
        }
        let q = enc(&key);
        let view = d.get_ok(&format!("/v1/inbox/message?key={q}"));
        assert!(
            view.get("raw_base64").is_none() && view.get("raw").is_none(),
            "{file}: no raw bytes unless asked for: {view}"
        );
        assert!(view["headers"].is_array(), "{file}: {view}");
        let with_raw = d.get_ok(&format!("/v1/inbox/message?key={q}&raw=1"));
        let shown = regmail::redact::base64_decode(s(&with_raw["raw_base64"]).as_bytes())
            .expect("raw_base64 is base64");
        // Where the secret sits in the text or headers (not in an attachment or a returned
        // part, which the decoded view leaves out), the mask shows where it stood.
        let in_text = is_secret && !["08-", "09-", "20-"].iter().any(|p| file.starts_with(p));
        if in_text {
            assert!(
                s(&view["text"]).contains("********")
                    || view["headers"].to_string().contains("********"),
                "{file}: the secret was masked where it stood: {view}"
            );
        }
        if is_secret {
            assert_ne!(shown, raw, "{file}: the raw bytes are shown masked");
        } else if !file.contains("oversized") {
            assert_eq!(
                shown, raw,
                "{file}: without secrets the raw bytes are exact"
            );
        }
        let cli = d.cli(&["message", &key]);
        assert_eq!(cli.code, 0, "{file}: {}", cli.stderr);
        let cli_raw = d.cli(&["message", &key, "--raw"]);
        assert_eq!(cli_raw.code, 0, "{file}: {}", cli_raw.stderr);
        // Charset and transfer encoding undone (issue 12: they printed as U+FFFD).
        for (f, words) in [
            ("03-", "Ваш запрос не принят"),
            ("04-", "Ошибка в заявке"),
            ("05-", "Заявка отклонена"),
            ("10-", "устарел"),
        ] {
            if file.starts_with(f) {
                assert!(
                    s(&view["text"]).contains(words) && cli.stdout.contains(words),
                    "{file}: decoded text in the API and the CLI:\n{}\n{}",
                    view["text"],
                    cli.stdout
                );
                assert!(!cli.stdout.contains('\u{FFFD}'), "{}", cli.stdout);
            }
        }
        keys.push(key);
    }
    assert!(keys.len() >= 15, "the corpus has at least 15 messages");

    // A reused file name never overwrote the earlier message.
    let first = record(&d, "maildir/1700000000.M1P1.hostile").expect("first");
    let second = record(&d, "maildir/1700000000.M1P1.hostile~2").expect("second");
    assert_ne!(first["sha256"], second["sha256"]);
    let processed: Vec<_> = std::fs::read_dir(d.dir().join("var/inbox/.Processed/cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("1700000000.M1P1.hostile"))
        .collect();
    assert_eq!(processed.len(), 2, "both files kept: {processed:?}");

    // Nothing moved.
    assert_eq!(d.get_ok("/v1/domains?limit=1000"), domains_before);
    assert_eq!(
        d.get_ok("/v1/requests?state=Sent&limit=1000"),
        requests_before
    );
    assert_eq!(d.get_ok("/v1/domains/hostile-example.ru"), domain_before);
    let log = d.full_log();
    let after: Vec<&Value> = log
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() > seq_before)
        .collect();
    assert!(
        after.iter().all(|e| s(&e["action"]).starts_with("mail.")),
        "only mail.* entries after the corpus: {after:?}"
    );

    // Files private although the daemon was started with umask 000.
    let mut modes = Vec::new();
    modes_under(&d.store_path(), &mut modes);
    modes_under(&d.outbox_dir(), &mut modes);
    assert!(modes.len() > 3, "{modes:?}");
    for (p, mode, is_dir) in &modes {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", p.display());
    }
    // A token in a URL is never logged, at any level (the request span carries the path).
    let token = d.token.clone();
    let r = d.call(
        "GET",
        &format!("/v1/inbox?token={token}"),
        &[],
        Body::None,
        true,
    );
    assert_eq!(r.status, 422, "{}", r.text);
    let r = d.call(
        "GET",
        &format!("/v1/stats?access_token={token}"),
        &[],
        Body::None,
        false,
    );
    assert_eq!(r.status, 401, "{}", r.text);
    // Verbose logging was really on, and the harness scans every line of it at drop.
    assert!(
        d.stderr().contains("tower_http::trace") && d.stderr().contains("DEBUG sled"),
        "verbose logging (filter trace) was on: {}",
        d.stderr().chars().take(3000).collect::<String>()
    );
    let leaks = d.secret_leaks();
    assert!(leaks.is_empty(), "{leaks:#?}");
}

#[test]
fn input_that_looks_right_but_is_not_is_refused_and_changes_nothing() {
    let d = Daemon::start();
    d.post_expect("/v1/clients", &person("in1"), 201);
    // Duplicate keys: a 400 naming the key (serde_json alone would keep the last one).
    let body = br#"{"domain":"dup.ru","client_id":"in1","order_id":"o1","paid":false,"paid":true,"nameservers":["ns1.hoster.example","ns2.hoster.example"]}"#;
    let r = d.call("POST", "/v1/domains", &[], Body::Raw(body), true);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["field"], "paid", "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "duplicate_key", "{}", r.text);
    let nested = br#"{"id":"in2","registrant":{"type":"person","email":"a@b.example","email":"c@d.example"}}"#;
    let r = d.call("POST", "/v1/clients", &[], Body::Raw(nested), true);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["field"], "registrant.email", "{}", r.text);
    // Domain names: TLD rules from the profile, mixed scripts, invisible characters.
    for (name, words) in [
        ("пример.ru", "Latin"),
        ("example.рф", "Cyrillic"),
        ("\u{0435}x\u{0430}mple.com", "mixes"),
        ("exam\u{200B}ple.ru", "invisible"),
        ("example.ru\u{FEFF}", "invisible"),
    ] {
        let (st, v) = d.post("/v1/domains", &order(name, "in1", false));
        assert_eq!(st, 422, "{name:?}: {v}");
        assert_eq!(v["error"]["field"], "domain", "{name:?}: {v}");
        assert!(s(&v["error"]["message"]).contains(words), "{name:?}: {v}");
    }
    let (st, v) = d.get(&format!("/v1/domains/{}", enc("exam\u{200B}ple.ru")));
    assert_eq!(
        st, 422,
        "a lookup does not silently drop U+200B either: {v}"
    );
    // Names that follow the rules still go through.
    d.post_expect("/v1/domains", &order("пример-1.рф", "in1", false), 202);
    d.post_expect("/v1/domains", &order("example-1.su", "in1", false), 202);
    let listed = d.get_ok("/v1/domains?limit=1000");
    assert_eq!(
        listed["domains"].as_array().map(Vec::len),
        Some(2),
        "only the valid orders exist: {listed}"
    );
    let (st, _) = d.get("/v1/clients/in2");
    assert_eq!(st, 404, "the client with a duplicate key was not created");
}

#[test]
fn secret_files_others_can_read_are_refused_by_check_config_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), port, &Options::default());
    let pw = dir.path().join("world-readable-password");
    std::fs::write(&pw, "Leaky-Secret-123\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[registrar]\npassword_file = \"{}\"\n",
        pw.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    // No systemd credential beside it: a credential would win over password_file (README,
    // Deploy), and this test is about the file.
    std::fs::remove_dir_all(dir.path().join("credentials")).unwrap();
    std::fs::write(
        dir.path().join("api-token"),
        format!("{}\n", random_token()),
    )
    .unwrap();
    let out = run_cli(&cfg, &["check-config"]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("registrar.password_file")
            && all.contains("0644")
            && all.contains("chmod 600"),
        "{all}"
    );
    assert!(!all.contains("Leaky-Secret-123"), "{all}");
    let log = dir.path().join("serve.log");
    let mut child = spawn_serve(&cfg, &log);
    let status = wait_exit(&mut child, std::time::Duration::from_secs(10));
    let _ = child.kill();
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve refuses to start: {}",
        read(&log)
    );
    assert!(
        read(&log).contains("registrar.password_file"),
        "{}",
        read(&log)
    );
    // Made private, it is accepted.
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_cli(&cfg, &["check-config"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}
