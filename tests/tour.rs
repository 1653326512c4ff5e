//! README.md's "A first tour": the ```sh block, taken from the README text itself, runs as one
//! script in a fresh directory (`cargo run --release --` is the binary under test; the port is
//! a free one instead of 7465, given through REGMAIL_CONFIG). The order must really complete:
//! the sandbox answers in the background, and the `render` step shows the open client request.

mod common;
mod support_readme;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support_readme::{REPO, sh_block_text};

#[test]
fn readme_tour_completes_the_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let port = common::free_port();
    std::fs::create_dir_all(root.join("fixtures/sandbox")).expect("fixtures");
    std::fs::copy(
        format!("{REPO}/fixtures/sandbox/local.toml"),
        root.join("fixtures/sandbox/local.toml"),
    )
    .expect("sandbox config");
    std::fs::write(
        root.join("port.toml"),
        format!("[api]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("port.toml");
    let stubs = root.join(".stubs");
    std::fs::create_dir_all(&stubs).expect("stubs");
    std::fs::write(
        stubs.join("cargo"),
        format!(
            "#!/bin/sh\n[ \"$1\" = run ] || exit 2\nshift\n[ \"$1\" = --release ] && shift\n[ \"$1\" = -- ] && shift\nexec {} \"$@\"\n",
            common::BIN
        ),
    )
    .expect("cargo stub");
    std::fs::set_permissions(stubs.join("cargo"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let script = sh_block_text("A first tour").replace("7465", &port.to_string());
    assert!(script.contains("sandbox --sandbox-config"), "{script}");
    std::fs::write(root.join("tour.sh"), format!("set -e\n{script}")).expect("script");
    let out = std::fs::File::create(root.join("tour.out")).expect("out");
    let mut child = Command::new("bash")
        .arg(root.join("tour.sh"))
        .current_dir(root)
        .env(
            "PATH",
            format!(
                "{}:{}",
                stubs.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("REGMAIL_CONFIG", root.join("port.toml"))
        .env_remove("REGMAIL_API_TOKEN")
        .env_remove("REGMAIL_API")
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("bash");
    let pgid = child.id();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(90) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The background serve and sandbox: end the whole process group.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(root.join("tour.out")).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the tour did not finish in 90 s:\n{text}"));
    assert!(status.success(), "the tour failed ({status}):\n{text}");
    assert!(
        !text.contains("\"error\""),
        "an API call was refused:\n{text}"
    );
    assert!(text.contains("\"id\":\"org-7\""), "{text}");
    // render: the client's open request while the domain waits for its client.
    assert!(
        text.contains("action: NEW"),
        "render printed no request:\n{text}"
    );
    assert!(text.contains("waits for its client cust-42"), "{text}");
    // list and log, after the sandbox answered every step.
    let list_line = text
        .lines()
        .skip_while(|l| !l.starts_with("DOMAIN "))
        .find(|l| l.starts_with("пример.рф "))
        .unwrap_or_else(|| panic!("no list line:\n{text}"));
    assert!(list_line.contains("Registered"), "{list_line}");
    assert!(
        text.contains("domain.registered") || text.contains("-> Registered"),
        "{text}"
    );
    assert!(
        text.contains(" by "),
        "the log shows no rule/match:\n{text}"
    );
}

/// README.md's first command, `cargo run --release -- demo`: regmail and the sandbox in one
/// process tour an order to Registered and a renewal, then keep the API up (until Ctrl-C).
#[test]
fn readme_demo_tours_to_the_end() {
    use std::io::{BufRead, BufReader};
    let readme = std::fs::read_to_string(format!("{REPO}/README.md")).expect("README");
    assert!(
        readme.contains("cargo run --release -- demo"),
        "the README's first command changed: update this test"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(common::BIN)
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .env_remove("RUST_LOG")
        .env_remove("REGMAIL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn regmail demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut out = String::new();
    while Instant::now() < deadline && !out.contains("keeps running on") {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.contains("keeps running on"),
        "the demo never reached its end:\n{out}"
    );
    assert!(!out.contains("The tour failed"), "{out}");
    assert!(out.contains("Tour done in"), "{out}");
    assert!(
        out.contains("is Registered again"),
        "the renewal did not complete:\n{out}"
    );
}
