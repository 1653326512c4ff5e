//! `regmail check-config` runs every check `serve` runs: each broken configuration the issue
//! names is refused by both, with the same key, and the sandbox defaults are warnings with the
//! key and what to set (which `serve` logs at start).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{CliOutput, run_cli, spawn_serve, wait_exit};

/// A directory with `regmail.toml` = `text` (paths inside are relative to it).
fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let path = dir.path().join("regmail.toml");
    std::fs::write(
        &path,
        format!("[store]\npath = \"store\"\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"api-token\"\n{text}"),
    )
    .expect("config");
    std::fs::write(dir.path().join("api-token"), common::random_token()).expect("token");
    (dir, path)
}

fn check(path: &Path) -> CliOutput {
    run_cli(path, &["check-config"])
}

/// `serve` on the same file: it must refuse, naming the same key.
fn serve_refuses(dir: &Path, path: &Path, key: &str) {
    let log = dir.join("serve.log");
    let mut child = spawn_serve(path, &log);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve started although check-config found an error in {key}:\n{text}");
    }
    assert!(!status.unwrap().success(), "{text}");
    assert!(
        text.contains(key),
        "serve's refusal does not name {key}:\n{text}"
    );
}

#[test]
fn broken_regex_in_the_rules_file_is_an_error_for_both() {
    let (dir, path) = config("[registrar]\nrules = \"replies.toml\"\n");
    std::fs::write(
        dir.path().join("replies.toml"),
        "[[rule]]\nname = \"broken\"\nevent = \"completed\"\nbody = '(?P<domain>unclosed'\n",
    )
    .expect("rules");
    let out = check(&path);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("error: registrar.rules:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("line 4"), "{}", out.stdout);
    assert!(!out.stdout.contains("configuration OK"), "{}", out.stdout);
    serve_refuses(dir.path(), &path, "registrar.rules");
}

#[test]
fn imap_source_without_its_password_file_is_an_error_for_both() {
    let (dir, path) = config(
        "[inbound]\nsource = \"imap\"\n[imap]\nhost = \"127.0.0.1\"\nport = 1\npassword_file = \"imap-password\"\n",
    );
    let out = check(&path);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("error: imap.password_file:"),
        "{}",
        out.stdout
    );
    serve_refuses(dir.path(), &path, "imap.password_file");
}

#[test]
fn a_ca_file_that_is_no_certificate_is_an_error_for_both() {
    let (dir, path) = config(
        "[registrar]\ngateway = \"r@registrar.test\"\ncallback = \"g@gateway.test\"\nagreement = \"RP/01/00\"\npassword_file = \"pw\"\n[outbound]\ntransport = \"smtp\"\n[smtp]\nhost = \"127.0.0.1\"\nca_file = \"ca.pem\"\n",
    );
    common::write_secret(&dir.path().join("pw"), "secret\n");
    std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").expect("ca");
    let out = check(&path);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("error: smtp.ca_file:"),
        "{}",
        out.stdout
    );
    serve_refuses(dir.path(), &path, "smtp.ca_file");
}

#[test]
fn sandbox_defaults_are_warnings_with_the_key_and_what_to_set() {
    // An [smtp] section but no [outbound] transport, and no senders: nothing would be mailed
    // and every real reply would be ignored.
    let (dir, path) = config("[smtp]\nhost = \"smtp.hosting.example\"\nport = 587\n");
    let out = check(&path);
    assert_eq!(out.code, 0, "{out:?}");
    for (key, hint) in [
        ("outbound.transport", "set outbound.transport = \"smtp\""),
        ("registrar.senders", "set senders = ["),
        ("registrar.gateway", "set it to R01's request address"),
        (
            "registrar.agreement",
            "set your R01 partner agreement number",
        ),
        ("registrar.password_file", "registrar.password_file"),
        ("registrar.authentication", "registrar.authentication"),
    ] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("warning: {key}:")))
            .unwrap_or_else(|| panic!("no warning for {key}:\n{}", out.stdout));
        assert!(line.contains(hint), "{line}");
    }
    assert!(
        out.stdout
            .contains("although an [smtp] section is configured"),
        "{}",
        out.stdout
    );
    // serve logs the same warnings at start.
    let log = dir.path().join("serve.log");
    let mut child = spawn_serve(&path, &log);
    let started = std::time::Instant::now();
    let mut text = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("regmail is serving") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    for key in [
        "outbound.transport",
        "registrar.senders",
        "registrar.agreement",
    ] {
        assert!(
            text.contains(&format!("key={key}")),
            "serve did not log the {key} warning:\n{text}"
        );
    }
}

#[test]
fn a_complete_configuration_has_no_sandbox_warning() {
    let (dir, path) = config(
        "[registrar]\ngateway = \"requests@registrar.test\"\ncallback = \"gateway@gateway.test\"\nsenders = [\"robot@registrar.test\"]\nagreement = \"RP/01/00\"\npassword_file = \"pw\"\n[outbound]\ntransport = \"smtp\"\n[smtp]\nhost = \"127.0.0.1\"\n",
    );
    common::write_secret(&dir.path().join("pw"), "secret\n");
    let out = check(&path);
    assert_eq!(out.code, 0, "{out:?}");
    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    // Only the reply-authentication warning remains: this configuration does not set it.
    assert_eq!(warnings.len(), 1, "{}", out.stdout);
    assert!(warnings[0].starts_with("warning: registrar.authentication"));
}
