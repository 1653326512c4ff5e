//! The browser harness (tests/common/browser.rs) proves its own checks: on a small site served
//! here on 127.0.0.1, each check must FIND the fault it exists for (an axe violation, a console
//! error, a resource from another origin, horizontal scrolling), pass a clean page, write the
//! screenshots, and drive a page by keyboard only and with JavaScript off. Without this, a
//! green journey could mean a check that never fires.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::browser::{Browser, screenshot_dir};

/// A tiny HTTP/1.1 server for fixed pages; stops when dropped.
struct Site {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Site {
    fn start() -> Site {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                        let mut buf = [0u8; 8192];
                        let n = s.read(&mut buf).unwrap_or(0);
                        let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let path = req.split_whitespace().nth(1).unwrap_or("/").to_owned();
                        let (status, ctype, body) = page(&path, port);
                        let head = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(head.as_bytes());
                        let _ = s.write_all(body.as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Site {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const HEAD: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Test page</title>\
<link rel=\"icon\" href=\"/favicon.ico\"><link rel=\"stylesheet\" href=\"/app.css\"></head>";

fn page(path: &str, port: u16) -> (&'static str, &'static str, String) {
    let html = "text/html; charset=utf-8";
    match path {
        "/app.css" => (
            "200 OK",
            "text/css",
            "body{font-family:sans-serif;color:#111;background:#fff;margin:1rem}\
             .faint{color:#333}\
             @media (prefers-color-scheme: dark){body{color:#eee;background:#111}a{color:#9cf}.faint{color:#222}}"
                .into(),
        ),
        "/favicon.ico" => ("204 No Content", "image/x-icon", String::new()),
        "/good" => (
            "200 OK",
            html,
            format!(
                "{HEAD}<body><header><nav aria-label=\"Main\"><a id=\"home\" href=\"/good\">Home</a> \
                 <a id=\"other\" href=\"/form\">Form</a></nav></header><main id=\"main\"><h1>A clean page</h1>\
                 <p>Пример: пример.рф (xn--e1afmkfd.xn--p1ai)</p></main></body></html>"
            ),
        ),
        "/form" => (
            "200 OK",
            html,
            format!(
                "{HEAD}<body><main id=\"main\"><h1>Form</h1><form id=\"f\" method=\"get\" action=\"/done\">\
                 <label for=\"name\">Name</label> <input id=\"name\" name=\"name\">\
                 <label for=\"pick\">Pick</label> <select id=\"pick\" name=\"pick\">\
                 <option value=\"\">any</option><option value=\"a\">Alpha</option><option value=\"b\">Beta</option></select>\
                 <button id=\"go\" type=\"submit\">Go</button></form>\
                 <p id=\"js\">JavaScript is off</p><script src=\"/form.js\"></script></main></body></html>"
            ),
        ),
        "/form.js" => (
            "200 OK",
            "text/javascript",
            "document.getElementById('js').textContent = 'JavaScript is on';".into(),
        ),
        p if p.starts_with("/done") => (
            "200 OK",
            html,
            format!(
                "{HEAD}<body><main id=\"main\"><h1>Done</h1><p id=\"query\">{}</p></main></body></html>",
                p.split_once('?').map(|(_, q)| q).unwrap_or("")
            ),
        ),
        "/bad" => (
            "200 OK",
            html,
            format!(
                "{HEAD}<body><main id=\"main\"><h1>A bad page</h1>\
                 <img src=\"/pixel.png\">\
                 <div style=\"width:2000px\">too wide</div>\
                 <p class=\"faint\">hard to read in the dark</p>\
                 <img alt=\"from elsewhere\" src=\"http://localhost:{port}/pixel.png\">\
                 <script src=\"/throws.js\"></script></main></body></html>"
            ),
        ),
        "/throws.js" => (
            "200 OK",
            "text/javascript",
            "throw new Error('boom from the test page');".into(),
        ),
        "/pixel.png" => ("404 Not Found", "text/plain", "none".into()),
        _ => ("404 Not Found", "text/plain", "not found".into()),
    }
}

/// Every check fires on a page built to fail it, and passes a clean page.
#[test]
fn the_page_checks_find_what_they_exist_for_and_pass_a_clean_page() {
    let site = Site::start();
    let b = Browser::start();

    b.goto(&site.url("/good"));
    assert_eq!(b.text("h1"), "A clean page");
    let clean = b.page_problems("harness-good");
    assert!(clean.is_empty(), "a clean page has problems: {clean:#?}");
    for w in ["390", "1280", "1280-dark"] {
        let shot = screenshot_dir().join(format!("harness-good-{w}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is no PNG",
            shot.display()
        );
        assert!(bytes.len() > 1000, "{} is tiny", shot.display());
    }

    b.goto(&site.url("/bad"));
    let bad = b.page_problems("harness-bad");
    let has = |what: &str| bad.iter().any(|p| p.contains(what));
    assert!(
        has("axe (light): image-alt"),
        "no axe image-alt in {bad:#?}"
    );
    assert!(
        has("axe (dark): color-contrast") && !has("axe (light): color-contrast"),
        "the dark scheme's contrast fault is not found (or found in the light one): {bad:#?}"
    );
    assert!(
        has("horizontal scrolling at 390 px") && has("horizontal scrolling at 1280 px"),
        "no overflow at both widths in {bad:#?}"
    );
    assert!(
        has(&format!(
            "loaded from another origin: http://localhost:{}/pixel.png",
            site.port
        )),
        "no foreign resource in {bad:#?}"
    );
    assert!(
        has("refers to another origin: img[src]: http://localhost:"),
        "no foreign reference in {bad:#?}"
    );
    assert!(
        has("console error:") && has("boom from the test page"),
        "no console error in {bad:#?}"
    );
}

/// Keyboard only: Tab to a field, type, pick an option with the arrow keys, Tab to the button,
/// Enter; the form arrives as typed.
#[test]
fn a_form_is_driven_by_keyboard_only() {
    let site = Site::start();
    let b = Browser::start();
    b.goto(&site.url("/form"));
    assert_eq!(b.text("#js"), "JavaScript is on");
    b.key_fill("#name", "Пётр");
    b.key_select("#pick", "b");
    b.key_to_page("#go");
    assert_eq!(b.text("h1"), "Done");
    assert_eq!(
        b.text("#query"),
        "name=%D0%9F%D1%91%D1%82%D1%80&pick=b",
        "the form did not carry what was typed"
    );
    b.assert_no_console_errors("after the keyboard run");
}

/// With JavaScript off the page's script does not run, forms still submit, and the checks that
/// need no JavaScript (overflow, screenshots, console, markup origins) still run.
#[test]
fn javascript_off_runs_no_script_and_forms_still_work() {
    let site = Site::start();
    let b = Browser::start_without_javascript();
    b.goto(&site.url("/form"));
    assert_eq!(b.text("#js"), "JavaScript is off");
    b.fill("#name", "anna");
    b.select("#pick", "a");
    b.click_to_page("#go");
    assert_eq!(b.text("#query"), "name=anna&pick=a");
    b.goto(&site.url("/bad"));
    let bad = b.page_problems("harness-bad");
    assert!(
        bad.iter()
            .any(|p| p.contains("horizontal scrolling at 390 px")),
        "{bad:#?}"
    );
    assert!(
        !bad.iter().any(|p| p.contains("boom from the test page")),
        "a script ran with JavaScript off: {bad:#?}"
    );
    assert!(screenshot_dir().join("nojs-harness-bad-390.png").exists());
}
