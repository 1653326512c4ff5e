//! Keep what the charset holds: with `charset = "windows-1251"`, « » — № are in the charset and
//! go out as they are; only what it cannot carry is transliterated (README, "Characters").
//! Requests go through the `dir` transport, the bytes as they would be mailed.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Options, order, organization};
use serde_json::json;

fn sent_request(d: &Daemon) -> Vec<u8> {
    let dir = d.dir().join("outbox-mail");
    let start = Instant::now();
    loop {
        // Only a finished request: the dir transport writes `.<token>.eml.tmp` first, then
        // renames it to `<token>.eml` (and notices go to `notices/`).
        if let Some(f) = std::fs::read_dir(&dir).ok().and_then(|mut rd| {
            rd.find_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().to_string_lossy().into_owned();
                (name.ends_with(".eml") && !name.starts_with('.')).then_some(e)
            })
        }) {
            return std::fs::read(f.path()).expect("read the request");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no request in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn windows_1251_keeps_guillemets_dashes_and_numero() {
    let d = Daemon::start_with(Options {
        extra_config: "[registrar]\ncharset = \"windows-1251\"\n".into(),
        ..Options::default()
    });
    let mut org = organization("romashka");
    org["registrant"]["org_name_ru"] = json!("ООО «Ромашка» — филиал №2");
    org["registrant"]["postal_addr"] = json!(["101000, Москва, а/я 1 ‒ 3"]);
    d.post_expect("/v1/clients", &org, 201);
    d.post_expect("/v1/domains", &order("romashka.ru", "romashka", true), 202);
    let raw = sent_request(&d);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("charset=windows-1251"), "{text}");
    let body_at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a body");
    let (body, _, bad) = encoding_rs::WINDOWS_1251.decode(&raw[body_at + 4..]);
    assert!(!bad, "the body is not windows-1251");
    assert!(
        body.contains("ООО «Ромашка» — филиал №2"),
        "« » — № were not kept:\n{body}"
    );
    // U+2012 (figure dash) is not in windows-1251: the documented rule turns it into '-'.
    assert!(body.contains("а/я 1 - 3"), "{body}");
}
