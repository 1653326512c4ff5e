//! A real headless Chromium for the operator web page's journeys (issue 14), driven over
//! WebDriver: Debian's `chromium` and `chromium-driver` (installed by scripts/test-deps.sh),
//! `chromedriver` started on a free 127.0.0.1 port, a fantoccini client on it.
//!
//! Nothing here skips: a test that cannot start the browser FAILS, with the driver's log.
//!
//! The page checks every journey runs on every page ([`Browser::check_page`]):
//! - axe-core (tests/browser-deps, pinned) finds no WCAG 2.0/2.1 A or AA violation, in the light
//!   and in the dark colour scheme (`prefers-color-scheme` emulated);
//! - the browser's console logged no error (chromedriver's `goog:loggingPrefs` browser log: page
//!   errors, failed loads, Content-Security-Policy refusals);
//! - every resource the page loaded came from the page's own origin;
//! - no horizontal scrolling at 390 px (phone, mobile emulation) and 1280 px;
//! - a full-page screenshot at both widths (and 1280 px dark) under `target/ui-screenshots/`.
//!
//! With JavaScript off ([`BrowserOptions::javascript`] = false, Chrome's content setting
//! `profile.managed_default_content_settings.javascript = 2`) the page cannot run scripts, and
//! neither can WebDriver's "execute script"; the checks then use the DevTools protocol only
//! (layout metrics, screenshots, the console log) and leave axe to the runs with JavaScript.
//!
//! chromedriver is started in a process group of its own; dropping the [`Browser`] closes the
//! session (chromedriver ends Chromium) and then kills that group, so no Chromium outlives a test.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The widths every page is checked and photographed at: a phone and a laptop.
pub const WIDTHS: [u32; 2] = [390, 1280];

/// The axe-core rule tags that make up WCAG 2.0 and 2.1, levels A and AA.
pub const AXE_TAGS: [&str; 4] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/// Where scripts/test-deps.sh installs axe-core (`npm ci`, pinned by package-lock.json).
pub const AXE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/browser-deps/node_modules/axe-core/axe.min.js"
);

/// How long [`Browser::find`] waits for an element to appear.
const FIND_TIMEOUT: Duration = Duration::from_secs(10);

/// How many Tab presses [`Browser::tab_to`] tries before it gives up.
const MAX_TABS: usize = 120;

/// The Chromium flags for a headless browser run as root on a machine with no network: no
/// sandbox (root), no GPU, /tmp instead of a small /dev/shm, and none of the background
/// connections a closed network refuses (see /work/.library/env/machines/rust.md).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--lang=en-US",
    "--window-size=1280,900",
];

/// How a browser is started.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// False: JavaScript is switched off for every page (Chrome's content setting).
    pub javascript: bool,
    /// Prefix of the screenshot file names (e.g. `"nojs-"`); empty for the main run.
    pub shot_prefix: String,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            javascript: true,
            shot_prefix: String::new(),
        }
    }
}

/// One browser: chromedriver + one Chromium session.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    session: String,
    driver: Child,
    driver_log: PathBuf,
    profile: tempfile::TempDir,
    opts: BrowserOptions,
    /// The pages checked so far, with the screenshots written (for the test's own summary).
    pub checked: std::sync::Mutex<Vec<String>>,
}

/// The first of `candidates` that exists.
fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The Chromium binary itself (Debian's /usr/bin/chromium is a wrapper script around it).
pub fn chromium_binary() -> PathBuf {
    first_existing(&["/usr/lib/chromium/chromium", "/usr/bin/chromium"]).unwrap_or_else(|| {
        panic!(
            "no Chromium (/usr/lib/chromium/chromium or /usr/bin/chromium): run scripts/test-deps.sh \
             (it installs Debian's chromium and chromium-driver)"
        )
    })
}

/// The chromedriver binary.
pub fn chromedriver_binary() -> PathBuf {
    first_existing(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]).unwrap_or_else(
        || {
            panic!(
                "no chromedriver (/usr/bin/chromedriver): run scripts/test-deps.sh (it installs \
                 Debian's chromium-driver)"
            )
        },
    )
}

/// The axe-core source, read once.
pub fn axe_source() -> &'static str {
    static AXE: OnceLock<String> = OnceLock::new();
    AXE.get_or_init(|| {
        std::fs::read_to_string(AXE_PATH).unwrap_or_else(|e| {
            panic!("cannot read {AXE_PATH}: {e}; run scripts/test-deps.sh (npm ci of axe-core)")
        })
    })
}

/// `target/ui-screenshots` (beside the test binaries' `target/tmp`), created.
pub fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .map(|p| p.join("ui-screenshots"))
        .unwrap_or_else(|| tmp.join("ui-screenshots"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A WebDriver command chromedriver has beside the W3C ones.
#[derive(Debug)]
struct ChromeCmd {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for ChromeCmd {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// `console-api`, `javascript`, `network`, `security`, ...
    pub source: String,
    /// The message as Chromium wrote it.
    pub message: String,
}

impl Browser {
    /// A browser with JavaScript on.
    pub fn start() -> Browser {
        Browser::start_with(BrowserOptions::default())
    }

    /// A browser with JavaScript off (screenshots prefixed `nojs-`).
    pub fn start_without_javascript() -> Browser {
        Browser::start_with(BrowserOptions {
            javascript: false,
            shot_prefix: "nojs-".into(),
        })
    }

    /// Starts chromedriver and a Chromium session; panics (with the driver's log) when either
    /// does not come up.
    pub fn start_with(opts: BrowserOptions) -> Browser {
        let chromium = chromium_binary();
        let driver_bin = chromedriver_binary();
        let profile = tempfile::Builder::new()
            .prefix("regmail-chromium-")
            .tempdir()
            .expect("tempdir for the Chromium profile");
        let driver_log = profile.path().join("chromedriver.log");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime for fantoccini");
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = super::free_port();
            let log = File::create(&driver_log).expect("chromedriver log file");
            let log2 = log.try_clone().expect("clone log handle");
            let mut cmd = Command::new(&driver_bin);
            cmd.arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .arg("--allowed-origins=http://127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2));
            {
                use std::os::unix::process::CommandExt;
                // Its own process group, so that Drop can end chromedriver AND its Chromium.
                cmd.process_group(0);
            }
            let mut driver = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run scripts/test-deps.sh",
                    driver_bin.display()
                )
            });
            if let Err(why) = wait_driver(&mut driver, port) {
                kill_group(&mut driver);
                last_err = format!("chromedriver did not come up: {why}");
                if std::fs::read_to_string(&driver_log)
                    .unwrap_or_default()
                    .contains("bind")
                {
                    continue;
                }
                break;
            }
            let caps = capabilities(&chromium, profile.path(), &opts);
            let connected = rt.block_on(async {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await
            });
            match connected {
                Ok(client) => {
                    let session = rt
                        .block_on(client.session_id())
                        .ok()
                        .flatten()
                        .expect("a WebDriver session id");
                    let b = Browser {
                        rt,
                        client: Some(client),
                        session,
                        driver,
                        driver_log,
                        profile,
                        opts,
                        checked: std::sync::Mutex::default(),
                    };
                    b.cdp(
                        "Emulation.setDeviceMetricsOverride",
                        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
                    );
                    return b;
                }
                Err(e) => {
                    kill_group(&mut driver);
                    last_err = format!("Chromium did not start a session: {e}");
                    break;
                }
            }
        }
        panic!(
            "cannot start headless Chromium ({}) through {}: {last_err}\n--- chromedriver log ---\n{}",
            chromium.display(),
            driver_bin.display(),
            std::fs::read_to_string(&driver_log).unwrap_or_default()
        );
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser is closed")
    }

    /// True when pages run JavaScript.
    pub fn javascript(&self) -> bool {
        self.opts.javascript
    }

    /// The WebDriver session id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Panics with `what`, the error, the page's URL and the chromedriver log's tail.
    fn fail(&self, what: &str, e: impl std::fmt::Display) -> ! {
        let url = self
            .rt
            .block_on(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_default();
        let log = std::fs::read_to_string(&self.driver_log).unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        panic!("browser: {what}: {e}\n(at {url})\n--- chromedriver log (tail) ---\n{tail}");
    }

    /// Runs a DevTools protocol command in the page (chromedriver's `goog/cdp/execute`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        let c = ChromeCmd {
            path: "goog/cdp/execute",
            body: json!({"cmd": cmd, "params": params}),
        };
        self.rt
            .block_on(self.client().issue_cmd(c))
            .unwrap_or_else(|e| self.fail(&format!("DevTools {cmd}"), e))
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| self.fail(&format!("open {url}"), e));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.rt
            .block_on(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| self.fail("current url", e))
    }

    /// The current URL's path and query (`/ui/domains?status=Error`).
    pub fn path(&self) -> String {
        let u = self
            .rt
            .block_on(self.client().current_url())
            .unwrap_or_else(|e| self.fail("current url", e));
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> String {
        self.rt
            .block_on(self.client().source())
            .unwrap_or_else(|e| self.fail("page source", e))
    }

    /// The page's `<title>`.
    pub fn title(&self) -> String {
        self.rt
            .block_on(self.client().title())
            .unwrap_or_else(|e| self.fail("title", e))
    }

    /// The element `css`, waiting up to 10 s for it; panics with the page's text otherwise.
    pub fn find(&self, css: &str) -> Element {
        let start = Instant::now();
        loop {
            match self.rt.block_on(self.client().find(Locator::Css(css))) {
                Ok(e) => return e,
                Err(e) if is_no_such_element(&e) && start.elapsed() < FIND_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    let body = self.body_text();
                    self.fail(
                        &format!("no element {css:?} on the page (its text: {body:?})"),
                        e,
                    )
                }
            }
        }
    }

    /// The element `css` if it is on the page now (no waiting).
    pub fn try_find(&self, css: &str) -> Option<Element> {
        match self.rt.block_on(self.client().find(Locator::Css(css))) {
            Ok(e) => Some(e),
            Err(e) if is_no_such_element(&e) => None,
            Err(e) => self.fail(&format!("find {css:?}"), e),
        }
    }

    /// Every element matching `css` now.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.rt
            .block_on(self.client().find_all(Locator::Css(css)))
            .unwrap_or_else(|e| self.fail(&format!("find all {css:?}"), e))
    }

    /// True when `css` matches something now.
    pub fn exists(&self, css: &str) -> bool {
        self.try_find(css).is_some()
    }

    /// The visible text of `css` (waits for it).
    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.text_of(&e)
    }

    /// The visible text of an element.
    pub fn text_of(&self, e: &Element) -> String {
        self.rt
            .block_on(e.text())
            .unwrap_or_else(|err| self.fail("element text", err))
    }

    /// The body's visible text ("" when there is no body).
    pub fn body_text(&self) -> String {
        match self.rt.block_on(self.client().find(Locator::Css("body"))) {
            Ok(b) => self.rt.block_on(b.text()).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The attribute `name` of `css` (waits for the element).
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let e = self.find(css);
        self.attr_of(&e, name)
    }

    /// The attribute `name` of an element.
    pub fn attr_of(&self, e: &Element, name: &str) -> Option<String> {
        self.rt
            .block_on(e.attr(name))
            .unwrap_or_else(|err| self.fail(&format!("attribute {name}"), err))
    }

    /// The DOM property `name` of `css` (e.g. `value`, `href` resolved).
    pub fn prop(&self, css: &str, name: &str) -> Option<String> {
        let e = self.find(css);
        self.rt
            .block_on(e.prop(name))
            .unwrap_or_else(|err| self.fail(&format!("property {name} of {css}"), err))
    }

    /// Clicks `css` with the mouse (WebDriver's element click waits for a navigation it starts).
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.rt
            .block_on(e.click())
            .unwrap_or_else(|err| self.fail(&format!("click {css:?}"), err));
    }

    /// Clicks an element.
    pub fn click_el(&self, e: &Element) {
        self.rt
            .block_on(e.clone().click())
            .unwrap_or_else(|err| self.fail("click", err));
    }

    /// Replaces the value of the field `css` with `text` (typed).
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.rt
            .block_on(e.clear())
            .unwrap_or_else(|err| self.fail(&format!("clear {css:?}"), err));
        if !text.is_empty() {
            self.rt
                .block_on(e.send_keys(text))
                .unwrap_or_else(|err| self.fail(&format!("type into {css:?}"), err));
        }
    }

    /// Picks the option with value `value` of the `<select>` `css` (by clicking it).
    pub fn select(&self, css: &str, value: &str) {
        let opt = self.find(&format!("{css} option[value=\"{value}\"]"));
        self.rt
            .block_on(opt.click())
            .unwrap_or_else(|err| self.fail(&format!("select {value:?} in {css:?}"), err));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its
    /// value; a returned Promise is awaited. Needs JavaScript.
    pub fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        assert!(
            self.opts.javascript,
            "exec() needs JavaScript; this browser runs with it off"
        );
        self.rt
            .block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| self.fail("execute script", e))
    }

    /// The `<html>` element of the document shown now (to tell when a new one replaced it).
    pub fn document(&self) -> Element {
        self.find("html")
    }

    /// Waits up to 10 s until the document `old` was replaced by a new one (a link followed,
    /// a form submitted); works with JavaScript off (WebDriver says the old element is stale).
    pub fn wait_new_document(&self, old: &Element, after: &str) {
        let start = Instant::now();
        loop {
            match self.rt.block_on(old.tag_name()) {
                Err(CmdError::Standard(w))
                    if w.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    break;
                }
                // While the old document is being replaced, chromedriver may say so this way.
                Err(e)
                    if e.to_string().contains("does not belong to the document")
                        || e.to_string().contains("No node with given id") =>
                {
                    break;
                }
                Err(e) => self.fail(&format!("waiting for the page after {after}"), e),
                Ok(_) => {}
            }
            if start.elapsed() > FIND_TIMEOUT {
                self.fail(
                    &format!("no new page within {FIND_TIMEOUT:?} after {after}"),
                    format!("the page still says {:?}", self.body_text()),
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        // The new document: wait until it has loaded.
        let start = Instant::now();
        while self.try_find("body").is_none() && start.elapsed() < FIND_TIMEOUT {
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Clicks `css` and waits for the page it leads to.
    pub fn click_to_page(&self, css: &str) {
        let old = self.document();
        self.click(css);
        self.wait_new_document(&old, &format!("a click on {css}"));
    }

    /// Tabs to `css`, presses Enter, and waits for the page it leads to.
    pub fn key_to_page(&self, css: &str) {
        let old = self.document();
        self.key_activate(css);
        self.wait_new_document(&old, &format!("Enter on {css}"));
    }

    // ---- keyboard ---------------------------------------------------------------------------

    /// Presses and releases each of `keys` in turn, sent to whatever has the focus (W3C
    /// actions: nothing is clicked, the focus is not moved by WebDriver).
    pub fn press(&self, keys: &[char]) {
        let mut ka = KeyActions::new("keyboard".into());
        for &k in keys {
            ka = ka
                .then(KeyAction::Down { value: k })
                .then(KeyAction::Up { value: k });
        }
        self.rt
            .block_on(self.client().perform_actions(ka))
            .unwrap_or_else(|e| self.fail(&format!("press {keys:?}"), e));
        self.rt
            .block_on(self.client().release_actions())
            .unwrap_or_else(|e| self.fail("release keys", e));
    }

    /// Types `text` into whatever has the focus, key by key.
    pub fn type_text(&self, text: &str) {
        let keys: Vec<char> = text.chars().collect();
        self.press(&keys);
    }

    /// Presses Tab.
    pub fn tab(&self) {
        self.press(&[Key::Tab.into()]);
    }

    /// Presses Enter.
    pub fn enter(&self) {
        self.press(&[Key::Enter.into()]);
    }

    /// Presses Space.
    pub fn space(&self) {
        self.press(&[Key::Space.into()]);
    }

    /// The element that has the focus now.
    pub fn focused(&self) -> Option<Element> {
        self.rt.block_on(self.client().active_element()).ok()
    }

    /// True when `css` exists and has the focus.
    pub fn has_focus(&self, css: &str) -> bool {
        let (Some(target), Some(active)) = (self.try_find(css), self.focused()) else {
            return false;
        };
        target.element_id() == active.element_id()
    }

    /// Presses Tab until `css` has the focus; panics, naming where the focus went, when it
    /// never does. Returns the number of presses. With JavaScript on it first counts the
    /// tabbable elements between the focus and the target (document order, no positive
    /// tabindex) and presses Tab that many times in one go; the real focus then decides: when
    /// it is not on the target, it goes on one Tab at a time (at most 120).
    pub fn tab_to(&self, css: &str) -> usize {
        let target = self.find(css);
        let mut presses = 0;
        if self.opts.javascript {
            let n = self.exec(
                "const target = arguments[0]; \
                 const all = Array.from(document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]')) \
                   .filter(e => !e.disabled && e.tabIndex >= 0 && e.type !== 'hidden' && e.getClientRects().length > 0 \
                     && (e.tagName !== 'SUMMARY' || e.parentElement.tagName === 'DETAILS') \
                     && !e.closest('details:not([open]) > :not(summary)')); \
                 const to = all.indexOf(target); \
                 const from = all.indexOf(document.activeElement); \
                 return to > from ? to - from : 0;",
                vec![serde_json::to_value(&target).unwrap_or(Value::Null)],
            );
            let n = n.as_u64().unwrap_or(0) as usize;
            if n > 0 {
                let tab: char = Key::Tab.into();
                self.press(&vec![tab; n]);
                presses = n;
            }
        }
        let mut seen = Vec::new();
        for n in presses..=MAX_TABS {
            if let Some(active) = self.focused()
                && active.element_id() == target.element_id()
            {
                return n;
            }
            if seen.len() < 12 {
                let label = self
                    .focused()
                    .map(|a| self.describe(&a))
                    .unwrap_or_else(|| "(nothing)".into());
                seen.push(label);
            }
            self.tab();
        }
        self.fail(
            &format!("Tab never reached {css:?} in {MAX_TABS} presses"),
            format!("the focus went through {seen:?}"),
        )
    }

    /// Tabs to `css` and presses Enter (a link, a button).
    pub fn key_activate(&self, css: &str) {
        self.tab_to(css);
        self.enter();
    }

    /// Tabs to the field `css`, selects its content and types `text` over it.
    pub fn key_fill(&self, css: &str, text: &str) {
        self.tab_to(css);
        let ctrl: char = Key::Control.into();
        let mut ka = KeyActions::new("keyboard".into());
        ka = ka
            .then(KeyAction::Down { value: ctrl })
            .then(KeyAction::Down { value: 'a' })
            .then(KeyAction::Up { value: 'a' })
            .then(KeyAction::Up { value: ctrl })
            .then(KeyAction::Down {
                value: Key::Backspace.into(),
            })
            .then(KeyAction::Up {
                value: Key::Backspace.into(),
            });
        self.rt
            .block_on(self.client().perform_actions(ka))
            .unwrap_or_else(|e| self.fail("select all + delete", e));
        self.rt
            .block_on(self.client().release_actions())
            .unwrap_or_else(|e| self.fail("release keys", e));
        self.type_text(text);
    }

    /// Tabs to the `<select>` `css` and moves with the arrow keys to the option `value`.
    pub fn key_select(&self, css: &str, value: &str) {
        self.tab_to(css);
        let options = self.find_all(&format!("{css} option"));
        let values: Vec<String> = options
            .iter()
            .map(|o| self.attr_of(o, "value").unwrap_or_default())
            .collect();
        let want = values
            .iter()
            .position(|v| v == value)
            .unwrap_or_else(|| panic!("no option {value:?} in {css} (it has {values:?})"));
        let home: char = Key::Home.into();
        self.press(&[home]);
        let down: char = Key::Down.into();
        self.press(&vec![down; want]);
        let sel = self.find(css);
        let now = self
            .rt
            .block_on(sel.prop("value"))
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(now, value, "the arrow keys did not pick {value:?} in {css}");
    }

    /// A short description of an element, for failure messages.
    pub fn describe(&self, e: &Element) -> String {
        let html = self.rt.block_on(e.html(false)).unwrap_or_default();
        let open = html.split('>').next().unwrap_or_default();
        format!("{open}>")
    }

    // ---- page checks ------------------------------------------------------------------------

    /// The console log since the last call (chromedriver drains it).
    pub fn console_log(&self) -> Vec<LogEntry> {
        let c = ChromeCmd {
            path: "se/log",
            body: json!({"type": "browser"}),
        };
        let v = self
            .rt
            .block_on(self.client().issue_cmd(c))
            .unwrap_or_else(|e| self.fail("read the browser log", e));
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| LogEntry {
                        level: e["level"].as_str().unwrap_or_default().to_owned(),
                        source: e["source"].as_str().unwrap_or_default().to_owned(),
                        message: e["message"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The console errors (level SEVERE) since the last read of the log.
    pub fn console_errors(&self) -> Vec<String> {
        self.console_log()
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| format!("[{}] {}", e.source, e.message))
            .collect()
    }

    /// axe-core's WCAG 2.x A/AA violations on the page as it is now, one line per violation
    /// and node (rule id, impact, help, the element). Needs JavaScript.
    pub fn axe_violations(&self) -> Vec<String> {
        self.axe_run("{type: 'tag', values: arguments[0]}")
    }

    /// axe-core's colour-contrast rule alone (for the dark scheme: the rest does not depend on
    /// the colours).
    pub fn axe_contrast_violations(&self) -> Vec<String> {
        self.axe_run("{type: 'rule', values: ['color-contrast']}")
    }

    fn axe_run(&self, run_only: &str) -> Vec<String> {
        let present = self.exec("return typeof window.axe === 'object';", vec![]);
        if present != Value::Bool(true) {
            self.exec(axe_source(), vec![]);
        }
        let tags: Vec<Value> = AXE_TAGS.iter().map(|t| json!(t)).collect();
        let script = "return window.axe.run(document, {runOnly: RUN_ONLY, \
             resultTypes: ['violations']}).then(r => r.violations.map(v => ({id: v.id, \
             impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' \
             + (n.failureSummary || '').replace(/\\s+/g, ' ') + ' :: ' + n.html.slice(0, 200))}))) \
             .catch(e => ({error: String(e)}));"
            .replace("RUN_ONLY", run_only);
        let v = self.exec(&script, vec![Value::Array(tags)]);
        if let Some(err) = v.get("error") {
            return vec![format!("axe-core failed to run: {err}")];
        }
        let mut out = Vec::new();
        for viol in v.as_array().cloned().unwrap_or_default() {
            for node in viol["nodes"].as_array().cloned().unwrap_or_default() {
                out.push(format!(
                    "{} ({}): {} -- {}",
                    viol["id"].as_str().unwrap_or_default(),
                    viol["impact"].as_str().unwrap_or_default(),
                    viol["help"].as_str().unwrap_or_default(),
                    node.as_str().unwrap_or_default()
                ));
            }
        }
        out
    }

    /// Every resource the page loaded (and the page itself) that is not from its origin.
    /// Needs JavaScript (the Resource Timing API).
    pub fn foreign_resources(&self) -> Vec<String> {
        let v = self.exec(
            "const o = location.origin; \
             const all = performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')); \
             return all.map(e => e.name).filter(n => !(n === o || n.startsWith(o + '/')));",
            vec![],
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The foreign origins in the page's markup: `src`, `href` of stylesheets/scripts/icons,
    /// `action` of forms (works with JavaScript off: read from the DOM by WebDriver).
    pub fn foreign_references(&self, origin: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (css, attr) in [
            ("script[src]", "src"),
            ("img[src]", "src"),
            ("iframe[src]", "src"),
            ("link[href]", "href"),
            ("form[action]", "action"),
        ] {
            for e in self.find_all(css) {
                // The `src`/`href` DOM properties are absolute URLs.
                let url = self
                    .rt
                    .block_on(e.prop(attr))
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if !(url.is_empty() || url == origin || url.starts_with(&format!("{origin}/"))) {
                    out.push(format!("{css}: {url}"));
                }
            }
        }
        out
    }

    /// Sets the viewport: `width` x 900, a phone (mobile emulation) below 600 px.
    pub fn set_width(&self, width: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
    }

    /// `(content width, viewport width)` in CSS pixels, from the layout (no JavaScript).
    pub fn layout_widths(&self) -> (f64, f64) {
        let m = self.cdp("Page.getLayoutMetrics", json!({}));
        let content = m["cssContentSize"]["width"].as_f64().unwrap_or(0.0);
        let viewport = m["cssLayoutViewport"]["clientWidth"]
            .as_f64()
            .unwrap_or(0.0);
        (content, viewport)
    }

    /// Emulates `prefers-color-scheme: dark` (true) or the default light scheme.
    pub fn set_dark(&self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": value}]}),
        );
    }

    /// Writes a full-page PNG screenshot to `target/ui-screenshots/<file>`; returns its path.
    pub fn screenshot(&self, file: &str) -> PathBuf {
        let v = self.cdp(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = v["data"].as_str().unwrap_or_default();
        let bytes = decode_base64(data)
            .unwrap_or_else(|| panic!("the screenshot is not base64 ({} chars)", data.len()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the screenshot is not a PNG"
        );
        let path = screenshot_dir().join(file);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The checks of every page (module doc): axe (light and dark), console errors, foreign
    /// resources, horizontal scrolling at 390 and 1280 px, screenshots
    /// `<prefix><page>-<width>.png` (+ `<prefix><page>-1280-dark.png`). Panics listing every
    /// problem found. The viewport is left at 1280 px, light.
    pub fn check_page(&self, page: &str) {
        let problems = self.page_problems(page);
        if !problems.is_empty() {
            panic!(
                "page {page:?} ({}) has {} problem(s):\n  {}",
                self.url(),
                problems.len(),
                problems.join("\n  ")
            );
        }
    }

    /// What [`Browser::check_page`] would complain about (it also writes the screenshots).
    pub fn page_problems(&self, page: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let origin = {
            let u = self
                .rt
                .block_on(self.client().current_url())
                .unwrap_or_else(|e| self.fail("current url", e));
            u.origin().ascii_serialization()
        };
        if self.opts.javascript {
            for v in self.axe_violations() {
                problems.push(format!("axe (light): {v}"));
            }
            for r in self.foreign_resources() {
                problems.push(format!("loaded from another origin: {r}"));
            }
        }
        for r in self.foreign_references(&origin) {
            problems.push(format!("refers to another origin: {r}"));
        }
        let prefix = self.opts.shot_prefix.clone();
        for w in WIDTHS {
            self.set_width(w);
            let (content, viewport) = self.layout_widths();
            if content > viewport + 0.5 {
                problems.push(format!(
                    "horizontal scrolling at {w} px: the page is {content} px wide in a {viewport} px viewport"
                ));
            }
            if self.opts.javascript {
                let sw = self.exec(
                    "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
                    vec![],
                );
                let (s, c) = (sw[0].as_f64().unwrap_or(0.0), sw[1].as_f64().unwrap_or(0.0));
                if s > c {
                    problems.push(format!(
                        "horizontal scrolling at {w} px: scrollWidth {s} > clientWidth {c}"
                    ));
                }
            }
            self.screenshot(&format!("{prefix}{page}-{w}.png"));
        }
        // Dark scheme at 1280 px: axe's colour contrast again, and a screenshot (the pages
        // look the same without JavaScript, so that run leaves the dark one out).
        if self.opts.javascript {
            self.set_dark(true);
            for v in self.axe_contrast_violations() {
                problems.push(format!("axe (dark): {v}"));
            }
            self.screenshot(&format!("{prefix}{page}-1280-dark.png"));
            self.set_dark(false);
        }
        for e in self.console_errors() {
            problems.push(format!("console error: {e}"));
        }
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(page.to_owned());
        problems
    }

    /// For a page the server answered with an error status on purpose (a refused form: 422,
    /// 403, ...): Chromium logs the document's own status as a console error. This reads the
    /// log, panics unless that entry for the current URL and `status` is there (so the status
    /// is checked too), and returns every OTHER error.
    pub fn take_document_status(&self, status: u16) -> Vec<String> {
        let url = self.url();
        let expected = format!(
            "{url} - Failed to load resource: the server responded with a status of {status}"
        );
        let errors = self.console_errors();
        let (ours, others): (Vec<String>, Vec<String>) =
            errors.into_iter().partition(|e| e.contains(&expected));
        assert!(
            !ours.is_empty(),
            "the page {url} should have answered {status}; the console says {others:?}"
        );
        others
    }

    /// Panics when the console logged an error since the last check.
    pub fn assert_no_console_errors(&self, when: &str) {
        let errs = self.console_errors();
        assert!(
            errs.is_empty(),
            "console errors {when} (at {}):\n  {}",
            self.url(),
            errs.join("\n  ")
        );
    }

    /// The chromedriver log so far.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.driver_log).unwrap_or_default()
    }

    /// The Chromium profile directory (fresh for each browser).
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), c.close()).await });
        }
        kill_group(&mut self.driver);
    }
}

/// The capabilities of a session: Chromium's binary, flags and profile, JavaScript on or off,
/// the browser log at every level.
fn capabilities(
    chromium: &Path,
    profile: &Path,
    opts: &BrowserOptions,
) -> serde_json::Map<String, Value> {
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| (*s).to_owned()).collect();
    args.push(format!(
        "--user-data-dir={}",
        profile.join("data").display()
    ));
    let mut prefs = json!({
        "credentials_enable_service": false,
        "profile.password_manager_enabled": false,
        "intl.accept_languages": "en-US,en",
    });
    if !opts.javascript {
        prefs["profile.managed_default_content_settings.javascript"] = json!(2);
    }
    let caps = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": args,
            "prefs": prefs,
        },
        "goog:loggingPrefs": {"browser": "ALL"},
        "timeouts": {"pageLoad": 20000, "script": 20000, "implicit": 0},
    });
    match caps {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object"),
    }
}

/// Waits up to 20 s for chromedriver's `/status` to say ready.
fn wait_driver(driver: &mut Child, port: u16) -> Result<(), String> {
    let agent = super::agent(Duration::from_secs(2));
    let start = Instant::now();
    let url = format!("http://127.0.0.1:{port}/status");
    loop {
        if let Some(status) = driver.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("it exited with {status}"));
        }
        if let Ok(mut r) = agent.get(&url).call()
            && r.status().as_u16() == 200
        {
            let body = r.body_mut().read_to_string().unwrap_or_default();
            if body.contains("\"ready\":true") || body.contains("\"ready\": true") {
                return Ok(());
            }
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err("GET /status did not say ready within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// SIGKILLs the process group `child` leads (chromedriver and the Chromium it started) and
/// reaps the child.
fn kill_group(child: &mut Child) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on the process group this harness created for the child (process_group(0)).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn is_no_such_element(e: &CmdError) -> bool {
    matches!(e, CmdError::Standard(w) if w.error == fantoccini::error::ErrorStatus::NoSuchElement)
}

/// Standard base64 (RFC 4648 §4) decoding, for the screenshots DevTools returns.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        let mut n = 0u32;
        for &b in &chunk[..4 - pad] {
            n = n << 6 | val(b)?;
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

// ---- a daemon with the operator web page ------------------------------------------------------

/// The shipped R01 reply rules, copied into each [`UiSite`] so a test may add a rule and reload.
pub const SHIPPED_RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/request-templates/r01/replies.toml"
);

/// The registrar's sender address of a harness daemon (the embedded default, no
/// authentication): mail from it moves state when a rule or an operator says so.
pub const REGISTRAR_SENDER: &str = "robot@sandbox.invalid";

/// The right-hand side of the daemon's Message-IDs (the embedded default).
pub const MESSAGE_ID_HOST: &str = "sandbox.invalid";

/// A real `regmail serve` with the operator web page on: an operator `anna` and a viewer
/// `victor` (token files 0600), its own copy of the reply rules, the `dir` outbound transport
/// and the embedded maildir source (`var/inbox` beside the configuration).
pub struct UiSite {
    /// The daemon (the harness's [`super::Daemon`]).
    pub daemon: super::Daemon,
    /// anna's token (role operator).
    pub operator_token: String,
    /// victor's token (role viewer).
    pub viewer_token: String,
    /// The reply rules file the daemon reads (`[registrar] rules`).
    pub rules_path: PathBuf,
    files: tempfile::TempDir,
}

impl UiSite {
    /// Starts the daemon.
    pub fn start() -> UiSite {
        let files = tempfile::Builder::new()
            .prefix("regmail-ui-")
            .tempdir()
            .expect("tempdir");
        let operator_token = super::random_token();
        let viewer_token = super::random_token();
        let anna = files.path().join("anna-token");
        let victor = files.path().join("victor-token");
        super::write_secret(&anna, &format!("{operator_token}\n"));
        super::write_secret(&victor, &format!("{viewer_token}\n"));
        let rules_path = files.path().join("replies.toml");
        std::fs::copy(SHIPPED_RULES, &rules_path).expect("copy the shipped reply rules");
        let extra_config = format!(
            "\n[registrar]\nrules = \"{}\"\n\n[ui]\nlogin_per_ip_per_minute = 1000\nlogin_global_per_minute = 1000\n\n[[ui.operators]]\nname = \"anna\"\nrole = \"operator\"\ntoken_file = \"{}\"\n\n[[ui.operators]]\nname = \"victor\"\nrole = \"viewer\"\ntoken_file = \"{}\"\n",
            rules_path.display(),
            anna.display(),
            victor.display()
        );
        let daemon = super::Daemon::start_with(super::Options {
            extra_config,
            ..super::Options::default()
        });
        UiSite {
            daemon,
            operator_token,
            viewer_token,
            rules_path,
            files,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.daemon.base())
    }

    /// The directory of the token and rules files.
    pub fn files(&self) -> &Path {
        self.files.path()
    }

    /// Delivers a raw message into the daemon's maildir (`var/inbox/new`, written to `tmp`
    /// first as a delivery agent does).
    pub fn drop_mail(&self, name: &str, raw: &[u8]) {
        let base = self.daemon.dir().join("var/inbox");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(base.join(sub)).expect("maildir");
        }
        let tmp = base.join("tmp").join(name);
        std::fs::write(&tmp, raw).expect("write the message");
        std::fs::rename(&tmp, base.join("new").join(name)).expect("deliver the message");
    }

    /// A reply from the registrar to request `req` (its JSON): threaded by In-Reply-To on the
    /// request's Message-ID, UTF-8 text, CRLF line ends.
    pub fn reply_to(&self, req: &Value, id: &str, subject: &str, body: &str) -> Vec<u8> {
        let mid = req["message_id"].as_str().unwrap_or_default();
        let mid = mid.trim_start_matches('<').trim_end_matches('>');
        let subject = encode_word(subject);
        format!(
            "From: {REGISTRAR_SENDER}\r\nTo: regmail@{MESSAGE_ID_HOST}\r\nSubject: {subject}\r\nMessage-ID: <{id}@registrar.test>\r\nIn-Reply-To: <{mid}>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0300\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
            body.replace('\n', "\r\n")
        )
        .into_bytes()
    }

    /// The inbox record with Message-ID `<id@registrar.test>` once the intake settled it.
    pub fn settled_message(&self, id: &str) -> Value {
        let mid = format!("{id}@registrar.test");
        let mut found = Value::Null;
        self.daemon
            .wait_for(&format!("message {mid} to be settled"), |d| {
                let all = d.get_ok("/v1/inbox?limit=1000");
                match all["messages"]
                    .as_array()
                    .and_then(|a| a.iter().find(|m| m["message_id"] == mid.as_str()).cloned())
                {
                    Some(m) if m["state"] != "Pending" => {
                        found = m;
                        true
                    }
                    _ => false,
                }
            });
        found
    }
}

/// RFC 2047 B encoded-word for a non-ASCII header value (ASCII stays as is).
pub fn encode_word(s: &str) -> String {
    if s.is_ascii() {
        s.to_owned()
    } else {
        format!("=?utf-8?B?{}?=", super::base64(s.as_bytes()))
    }
}

impl Browser {
    /// Logs in at `/ui/login` with the mouse (fills `#token`, clicks `#login-submit`) and
    /// waits for the page after it (`#whoami`).
    pub fn login(&self, site: &UiSite, token: &str) {
        if !self.path().starts_with("/ui/login") {
            self.goto(&site.url("/ui/login"));
        }
        self.fill("#token", token);
        self.click_to_page("#login-submit");
        self.find("#whoami");
    }

    /// Logs in by keyboard only: Tab to `#token`, type, Tab to `#login-submit`, Enter.
    pub fn login_by_keyboard(&self, site: &UiSite, token: &str) {
        if !self.path().starts_with("/ui/login") {
            self.goto(&site.url("/ui/login"));
        }
        self.key_fill("#token", token);
        self.key_to_page("#login-submit");
        self.find("#whoami");
    }

    /// Forgets every cookie (the session) of the daemon's origin.
    pub fn forget_cookies(&self) {
        self.rt
            .block_on(self.client().delete_all_cookies())
            .unwrap_or_else(|e| self.fail("delete cookies", e));
    }
}

// ---- browsers shared by the tests of one test binary -------------------------------------------

/// Idle browsers, by JavaScript on (true) or off, for [`shared`].
static POOL: std::sync::Mutex<Vec<Browser>> = std::sync::Mutex::new(Vec::new());

/// Process groups and profiles of the pooled browsers, ended by an `atexit` hook: the test
/// harness exits the process without dropping statics, and no Chromium may outlive it.
static LIVE: std::sync::Mutex<Vec<(i32, PathBuf)>> = std::sync::Mutex::new(Vec::new());

extern "C" fn end_shared_browsers() {
    let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    for (pgid, profile) in live.iter() {
        // SAFETY: kill(2) on a process group this harness created (chromedriver's, pgid > 0).
        unsafe {
            libc::kill(-*pgid, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(profile);
    }
}

/// A browser from the pool of this test binary (started when none is idle); it goes back to
/// the pool when dropped, on a blank page with its console log drained, or is closed when the
/// test panicked. Tests share browsers this way because starting Chromium costs more than
/// most journeys; chromedriver and Chromium end with the test process.
pub fn shared(javascript: bool) -> SharedBrowser {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" function with atexit(3).
        unsafe {
            libc::atexit(end_shared_browsers);
        }
    });
    let idle = {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        pool.iter()
            .position(|b| b.opts.javascript == javascript)
            .map(|i| pool.swap_remove(i))
    };
    let b = idle.unwrap_or_else(|| {
        let b = if javascript {
            Browser::start()
        } else {
            Browser::start_without_javascript()
        };
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((b.driver.id() as i32, b.profile.path().to_owned()));
        b
    });
    SharedBrowser { b: Some(b) }
}

/// A pooled browser (see [`shared`]); derefs to [`Browser`].
pub struct SharedBrowser {
    b: Option<Browser>,
}

impl std::ops::Deref for SharedBrowser {
    type Target = Browser;
    fn deref(&self) -> &Browser {
        self.b.as_ref().expect("a browser")
    }
}

impl Drop for SharedBrowser {
    fn drop(&mut self) {
        let Some(b) = self.b.take() else { return };
        let pgid = b.driver.id() as i32;
        let forget = || {
            LIVE.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(g, _)| *g != pgid);
        };
        if std::thread::panicking() {
            forget();
            drop(b); // closes the session, kills the group
            return;
        }
        let reset = b.client.as_ref().is_some_and(|c| {
            b.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), c.goto("about:blank"))
                    .await
                    .is_ok_and(|r| r.is_ok())
            })
        });
        if reset {
            let _ = b.console_log();
            POOL.lock().unwrap_or_else(|p| p.into_inner()).push(b);
        } else {
            forget();
            drop(b);
        }
    }
}
