//! README.md's "Deploy on Debian with systemd" section, followed literally: every command of its
//! ```sh block, taken from the README text, runs in a throwaway root (paths such as /etc/regmail
//! moved under it); `systemctl enable --now regmail` is simulated as far as a test can without
//! booting systemd (credentials directory, DynamicUser as uid 65534, StateDirectory, UMask).
//! No mail is exchanged: the filled-in configuration points SMTP at a server that is never
//! used here and IMAP at a closed port, so the shared mail stack is not touched.

mod common;
mod support_readme;

use std::path::Path;

use support_readme::{DYNAMIC_UID, Root, mode, sh_block};

/// The operator's edit of the R01 example (what `sudoedit` does in the README).
fn operator_edit(root: &Path, port: u16) -> String {
    let r = root.display();
    format!(
        r#"s/CHANGE-ME-gateway@r01.invalid/requests@registrar.test/
s/CHANGE-ME-domains@hosting.invalid/gateway@gateway.test/g
s/CHANGE-ME-robot@r01.invalid/robot@registrar.test/
s/CHANGE-ME-agreement/RP\/01\/00/
s/CHANGEME/HOSTING/
s/CHANGE-ME-smtp.hosting.invalid/127.0.0.1/
s/CHANGE-ME-imap.hosting.invalid/127.0.0.1/
s/CHANGE-ME-mx.hosting.invalid/mail.gateway.test/
s/^port = 143/port = 1/
s/127.0.0.1:7465/127.0.0.1:{port}/
s#"/etc/regmail#"{r}/etc/regmail#g
s#"/var/lib/regmail#"{r}/var/lib/regmail#g
"#
    )
}

#[test]
fn readme_deploy_section_works_in_a_throwaway_root() {
    let port = common::free_port();
    let probe = Root::new("");
    let mut root = Root::new(&operator_edit(probe.path(), port));
    drop(probe);
    // The edit script needs the real root's path: rewrite it now that we know it.
    std::fs::write(
        root.stubs.join("edit.sed"),
        operator_edit(root.path(), port),
    )
    .expect("edit.sed");
    let stdin = "r01-interface-secret\nsmtp-secret-1\nimap-secret-1\n";
    let lines = sh_block("Deploy on Debian with systemd");
    assert!(lines.len() >= 8, "{lines:?}");
    let etc = root.path().join("etc/regmail");
    let mut started = false;
    for line in &lines {
        if line.contains("systemctl enable --now regmail")
            || line.contains("systemctl start regmail")
        {
            if let Err(e) = root.start_unit() {
                panic!("{line}: the unit would not start: {e}");
            }
            root.wait_healthy(&format!("http://127.0.0.1:{port}"));
            started = true;
            continue;
        }
        let out = root.run(line, stdin);
        assert_eq!(
            out.code,
            0,
            "README command failed: {line}\nstdout:\n{}\nstderr:\n{}\nunit log:\n{}",
            out.stdout,
            out.stderr,
            root.unit_log()
        );
        if line.contains("check-config") {
            // Every placeholder filled in: no error, no sandbox default left, and replies must
            // pass DMARC at our MX (the example's `authentication`), so no warning about it.
            assert!(out.stdout.contains("configuration OK"), "{}", out.stdout);
            assert!(
                !out.stdout.contains("warning: registrar.authentication"),
                "{}",
                out.stdout
            );
            assert!(!out.stdout.contains("CHANGE-ME"), "{}", out.stdout);
            assert!(!out.stdout.contains("error:"), "{}", out.stdout);
            assert!(!out.stdout.contains("warning: outbound"), "{}", out.stdout);
            assert!(
                !out.stdout.contains("warning: registrar.senders"),
                "{}",
                out.stdout
            );
        }
        if line.contains(" list") {
            assert!(out.stdout.starts_with("DOMAIN"), "{}", out.stdout);
        }
    }
    assert!(started, "the README never starts the unit: {lines:?}");

    // The secrets: root's, mode 0600, and never printed.
    for f in [
        "api-token",
        "registrar-password",
        "smtp-password",
        "imap-password",
    ] {
        let p = etc.join(f);
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert_eq!(
        std::fs::read_to_string(etc.join("registrar-password")).unwrap(),
        "r01-interface-secret\n"
    );
    // The drop-in opens the allow-list for the mail servers and hands over their passwords.
    let dropin = std::fs::read_to_string(
        root.path()
            .join("etc/systemd/system/regmail.service.d/mail.conf"),
    )
    .expect("the drop-in");
    assert!(dropin.contains("IPAddressAllow=127.0.0.1"), "{dropin}");
    assert!(dropin.contains("LoadCredential=smtp-password:"), "{dropin}");
    assert!(dropin.contains("LoadCredential=imap-password:"), "{dropin}");
    // The daemon runs as the unit's user, reading its secrets from the credentials directory
    // although /etc/regmail/api-token (named by token_file) is root's alone.
    assert_eq!(root.unit_uid(), Some(DYNAMIC_UID));
    let log = root.unit_log();
    assert!(log.contains("regmail is serving"), "{log}");
    assert!(!log.contains("r01-interface-secret"), "{log}");
    assert!(
        !log.contains("smtp-secret-1") && !log.contains("imap-secret-1"),
        "{log}"
    );
    // The store belongs to the unit's user and is private.
    let store = root.path().join("var/lib/regmail/store");
    assert!(store.exists(), "{log}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&store).unwrap().uid(), DYNAMIC_UID);
    assert_eq!(mode(&root.path().join("var/lib/regmail")), 0o700);
}

/// The trap the issue names: the shipped example's `token_file` used to win over the unit's
/// credential, so the dynamic user could not read its token. The credential wins now.
#[test]
fn unit_credential_wins_over_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("api-token"), "c".repeat(32)).unwrap();
    let cfg = dir.path().join("regmail.toml");
    std::fs::write(
        &cfg,
        "[api]\ntoken_file = \"/nonexistent/api-token\"\n[registrar]\nsenders = [\"r@x.ru\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .env_remove("REGMAIL_API_TOKEN")
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("api.token_file"), "{text}");
}
