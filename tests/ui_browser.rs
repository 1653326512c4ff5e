//! The operator web page (issue 14) as a hostmaster uses it: journeys in a real headless
//! Chromium (tests/common/browser.rs) against the real `regmail serve`, with a store seeded
//! through the API and registrar replies delivered into its maildir.
//!
//! Every journey runs three times on one daemon: with the mouse, by keyboard only (Tab, Enter,
//! typed text and arrow keys; nothing is clicked) and with JavaScript off (a second browser).
//! Each run uses its own names (a tag in every domain) so the runs do not see each other's
//! work. Every page a journey reaches is checked once per browser (axe-core WCAG A/AA in light
//! and dark, no console error, nothing from another origin, no horizontal scrolling at 390 and
//! 1280 px) and photographed into target/ui-screenshots/. The element ids and form fields are
//! those of /work/agents/ui-contract.md (the UI server's contract).

mod common;

use std::time::Instant;

use common::browser::{Browser, UiSite, shared};
use common::{Daemon, enc, imported, order};
use serde_json::{Value, json};

/// How a journey drives the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Clicks and typing, JavaScript on.
    Mouse,
    /// Tab, Enter, arrow keys and typing only; JavaScript on.
    Keyboard,
    /// Clicks and typing in a browser with JavaScript off.
    NoJs,
}

impl Mode {
    /// The tag in this run's names.
    fn tag(self) -> &'static str {
        match self {
            Mode::Mouse => "m",
            Mode::Keyboard => "k",
            Mode::NoJs => "n",
        }
    }
}

/// One run of a journey: the browser, the daemon, the mode.
struct Run<'a> {
    b: &'a Browser,
    site: &'a UiSite,
    mode: Mode,
}

impl Run<'_> {
    fn d(&self) -> &Daemon {
        &self.site.daemon
    }

    fn tag(&self) -> &'static str {
        self.mode.tag()
    }

    /// Opens a page by its URL (typing an address is allowed in every mode).
    fn open(&self, path: &str) {
        self.b.goto(&self.site.url(path));
    }

    /// Follows a link or presses a button, and waits for the page it leads to.
    fn press(&self, css: &str) {
        match self.mode {
            Mode::Keyboard => self.b.key_to_page(css),
            _ => self.b.click_to_page(css),
        }
    }

    /// Types into a field (replacing what it holds).
    fn fill(&self, css: &str, text: &str) {
        match self.mode {
            Mode::Keyboard => self.b.key_fill(css, text),
            _ => self.b.fill(css, text),
        }
    }

    /// Picks an option of a `<select>`.
    fn choose(&self, css: &str, value: &str) {
        match self.mode {
            Mode::Keyboard => self.b.key_select(css, value),
            _ => self.b.select(css, value),
        }
    }

    /// The page checks, once per page name and browser (the keyboard run shares the mouse
    /// run's browser and pages).
    fn check(&self, page: &str) {
        if self.mode == Mode::Keyboard {
            return;
        }
        let done = self
            .b
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|p| p == page);
        if !done {
            self.b.check_page(page);
        }
    }

    /// The checks of a page the server answered with `status` on purpose (a refused form);
    /// in every mode the console must hold that status for the page and nothing else.
    fn check_refused(&self, page: &str, status: u16) {
        let others = self.b.take_document_status(status);
        assert!(others.is_empty(), "console errors on {page}: {others:#?}");
        self.check(page);
    }

    /// Opens /ui, is sent to the login form, logs in as anna (operator), lands on the page.
    fn login(&self) {
        self.open("/ui");
        let at = self.b.path();
        assert!(
            at.starts_with("/ui/login"),
            "without a session /ui should lead to the login form, not {at}"
        );
        self.check("login");
        match self.mode {
            Mode::Keyboard => self
                .b
                .login_by_keyboard(self.site, &self.site.operator_token),
            _ => self.b.login(self.site, &self.site.operator_token),
        }
        assert_eq!(
            self.b.text("#whoami"),
            "anna (operator)",
            "after the login at {}",
            self.b.path()
        );
    }

    /// Logs out with the header's form.
    fn logout(&self) {
        self.press("#logout-submit");
        let at = self.b.path();
        assert!(at.starts_with("/ui/login"), "logout led to {at}");
    }
}

/// Runs `journey` with the mouse, by keyboard only (same browser, logged out in between) and
/// with JavaScript off (a second browser), on one daemon.
fn in_every_mode(name: &str, journey: impl Fn(&Run)) {
    let started = Instant::now();
    let site = UiSite::start();
    {
        let b = shared(true);
        for mode in [Mode::Mouse, Mode::Keyboard] {
            let t = Instant::now();
            // A fresh session each run: no cookie of the run before.
            b.goto(&site.url("/ui/login"));
            b.forget_cookies();
            let run = Run {
                b: &b,
                site: &site,
                mode,
            };
            journey(&run);
            b.assert_no_console_errors(&format!("in {name} ({mode:?})"));
            eprintln!("{name} ({mode:?}): {:.1} s", t.elapsed().as_secs_f64());
        }
    }
    {
        let t = Instant::now();
        let b = shared(false);
        b.goto(&site.url("/ui/login"));
        b.forget_cookies();
        let run = Run {
            b: &b,
            site: &site,
            mode: Mode::NoJs,
        };
        journey(&run);
        b.assert_no_console_errors(&format!("in {name} (NoJs)"));
        eprintln!("{name} (NoJs): {:.1} s", t.elapsed().as_secs_f64());
    }
    let leaks = site.daemon.secret_leaks();
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
    eprintln!(
        "{name}: all three runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---- seeding through the API --------------------------------------------------------------------

/// A client the registrar knows already (imported with a handle), so orders go straight to
/// domain requests.
fn client(d: &Daemon, id: &str) {
    let n: u32 = id.bytes().map(u32::from).sum();
    let handle = format!("UIB_{n}_{}-GPT", id.len());
    let (s, v) = d.post("/v1/clients", &imported(id, &handle));
    assert_eq!(s, 201, "client {id}: {v}");
}

/// Orders `domain` for `client` (paid) and waits for its request to be Sent; returns it.
fn ordered(d: &Daemon, domain: &str, client: &str) -> Value {
    let (s, v) = d.post("/v1/domains", &order(domain, client, true));
    assert_eq!(s, 202, "order {domain}: {v}");
    let mut r = Value::Null;
    d.wait_for(&format!("the request for {domain} to be Sent"), |d| {
        r = d.get_ok(&format!("/v1/domains/{}", enc(domain)))["open_request"].clone();
        r["state"] == "Sent"
    });
    r
}

/// Records the registrar's answer for request `r` through the API.
fn outcome(d: &Daemon, r: &Value, body: Value) {
    let id = r["id"].as_str().unwrap_or_default();
    let (s, v) = d.post(&format!("/v1/requests/{id}/outcome"), &body);
    assert_eq!(s, 200, "outcome {body} for {id}: {v}");
}

/// An ordered domain the registrar refused: status Error.
fn error_domain(d: &Daemon, domain: &str, client: &str, reason: &str) -> Value {
    let r = ordered(d, domain, client);
    outcome(
        d,
        &r,
        json!({"event": "rejected", "reason": reason, "note": "seeded by the browser test"}),
    );
    assert_eq!(dom(d, domain)["status"], "Error");
    r
}

/// An ordered domain the registrar registered.
fn registered_domain(d: &Daemon, domain: &str, client: &str, expires: &str) {
    let r = ordered(d, domain, client);
    outcome(
        d,
        &r,
        json!({"event": "completed", "expires": expires, "note": "seeded by the browser test"}),
    );
    assert_eq!(dom(d, domain)["status"], "Registered");
}

/// `GET /v1/domains/<name>`.
fn dom(d: &Daemon, domain: &str) -> Value {
    d.get_ok(&format!("/v1/domains/{}", enc(domain)))
}

/// The count of `name` in a `/v1/stats` list (0 when the list leaves it out).
fn stat(stats: &Value, list: &str, name: &str) -> u64 {
    stats[list]
        .as_array()
        .and_then(|a| a.iter().find(|p| p[0] == name).and_then(|p| p[1].as_u64()))
        .unwrap_or(0)
}

/// The first number in a text ("3 domains" -> 3).
fn number(text: &str) -> u64 {
    let digits: String = text
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number in {text:?}"))
}

/// A wording no shipped rule knows (checked by the tester journey): the domain is done.
fn new_wording(domain: &str, tag: &str) -> String {
    format!("Операция {tag}-7 над доменом {domain} проведена успешно.")
}

/// The `[[rule]]` that reads [`new_wording`] for run `tag`.
fn new_rule(tag: &str) -> String {
    format!(
        "\n[[rule]]\nname = \"ui-wording-{tag}\"\nevent = \"completed\"\nkinds = [\"domain-registration\"]\nnote = \"added by the browser test\"\nbody = '(?i)операция {tag}-7 над доменом (?P<domain>\\S+?)\\.? проведена успешно'\n"
    )
}

/// Delivers a reply with `body` to request `r` and waits until the intake has settled it.
fn deliver(site: &UiSite, r: &Value, id: &str, subject: &str, body: &str) -> Value {
    site.drop_mail(id, &site.reply_to(r, id, subject, body));
    site.settled_message(id)
}

// ---- the journeys -------------------------------------------------------------------------------

const STATUSES: [&str; 8] = [
    "AwaitingPayment",
    "Registering",
    "Registered",
    "Renewing",
    "Error",
    "Cancelled",
    "Expired",
    "Deleted",
];

const STATES: [&str; 8] = [
    "Queued",
    "Sent",
    "SendUnknown",
    "Acknowledged",
    "Completed",
    "Rejected",
    "TimedOut",
    "Cancelled",
];

/// Log in and see counts equal to the store: every count on the dashboard equals
/// `GET /v1/stats`, and a count's link opens a list with that many domains.
#[test]
fn log_in_and_the_dashboard_counts_equal_the_store() {
    in_every_mode("counts", |run| {
        let d = run.d();
        let t = run.tag();
        let c = format!("c-count-{t}");
        client(d, &c);
        registered_domain(d, &format!("count-ok-{t}.ru"), &c, "2027-12-01");
        error_domain(d, &format!("count-err-{t}.ru"), &c, "name is reserved");
        ordered(d, &format!("count-wait-{t}.ru"), &c);
        d.settle();

        run.login();
        assert_eq!(
            run.b.path(),
            "/ui",
            "the login should land on the dashboard"
        );
        run.check("dashboard");
        let stats = d.stats();
        for s in STATUSES {
            let shown = number(&run.b.text(&format!("#count-domains-{s}")));
            assert_eq!(shown, stat(&stats, "domains", s), "domains {s}: {stats}");
        }
        for s in STATES {
            let shown = number(&run.b.text(&format!("#count-requests-{s}")));
            assert_eq!(shown, stat(&stats, "requests", s), "requests {s}: {stats}");
        }
        assert_eq!(
            number(&run.b.text("#count-unmatched")),
            stats["unmatched"].as_u64().unwrap_or(u64::MAX)
        );
        assert_eq!(
            number(&run.b.text("#outbox-depth")),
            stats["outbox"].as_u64().unwrap_or(u64::MAX)
        );
        // A count is a link to the list it counts.
        let registered = stat(&stats, "domains", "Registered");
        assert!(registered >= 1);
        run.press("#count-domains-Registered");
        assert_eq!(run.b.path(), "/ui/domains?status=Registered");
        assert_eq!(number(&run.b.text("#match-count")), registered);
        assert_eq!(
            run.b.find_all("table#domains tr[data-domain]").len() as u64,
            registered
        );
        run.check("domains-filtered");
        run.logout();
    });
}

/// Triage an Error domain from the dashboard to its timeline and retry it: the timeline shows
/// the registrar's reason; Retry puts the domain back to Registering with a new request, and
/// the action log names the operator.
#[test]
fn triage_an_error_domain_from_the_dashboard_to_its_timeline_and_retry_it() {
    in_every_mode("triage", |run| {
        let d = run.d();
        let t = run.tag();
        let c = format!("c-triage-{t}");
        client(d, &c);
        let name = format!("triage-{t}.ru");
        let reason = format!("Domain {name} is reserved by the registry ({t})");
        let old = error_domain(d, &name, &c, &reason);

        run.login();
        run.check("dashboard");
        run.press("#count-domains-Error");
        assert_eq!(run.b.path(), "/ui/domains?status=Error");
        run.check("domains-error");
        let row = format!("table#domains tr[data-domain=\"{name}\"]");
        assert_eq!(run.b.text(&format!("{row} td.status")), "Error");
        run.press(&format!("{row} a.domain-link"));
        assert_eq!(run.b.path(), format!("/ui/domains/{name}"));
        run.check("domain-error");
        assert_eq!(run.b.text("h1"), name);
        assert_eq!(run.b.text("#domain-status"), "Error");
        let timeline = run.b.text("ol#timeline");
        assert!(
            timeline.contains(&reason),
            "the timeline does not show the registrar's reason {reason:?}: {timeline}"
        );

        run.press("#retry-submit");
        run.b.find("#flash");
        assert_eq!(run.b.text("#domain-status"), "Registering");
        run.check("domain-retried");
        let v = dom(d, &name);
        assert_eq!(v["status"], "Registering", "{v}");
        let new = &v["open_request"];
        assert_ne!(new["id"], old["id"], "the retry is a new request: {v}");
        let log = d.get_ok(&format!("/v1/domains/{}/log?limit=1000", enc(&name)));
        let by_anna = log["entries"]
            .as_array()
            .map(|a| a.iter().any(|e| e["by"] == "operator:anna"))
            .unwrap_or(false);
        assert!(by_anna, "no action by operator:anna in {log}");
        run.logout();
    });
}

/// Assign an unmatched reply so its domain becomes Registered: the message shows its decoded
/// text and the request as a candidate; the preview says what will happen; after the
/// confirmation the domain is Registered and the message has left the queue.
#[test]
fn assign_an_unmatched_reply_and_its_domain_becomes_registered() {
    in_every_mode("assign", |run| {
        let d = run.d();
        let site = run.site;
        let t = run.tag();
        let c = format!("c-assign-{t}");
        client(d, &c);
        let name = format!("assign-{t}.ru");
        let r = ordered(d, &name, &c);
        let body = new_wording(&name, &format!("a{t}"));
        let m = deliver(site, &r, &format!("assign-{t}"), "Заявка обработана", &body);
        assert_eq!(m["state"], "Unmatched", "{m}");
        let key = m["key"].as_str().unwrap_or_default().to_owned();
        let rid = r["id"].as_str().unwrap_or_default().to_owned();

        run.login();
        run.press("#nav-unmatched");
        assert!(
            run.b.path().starts_with("/ui/unmatched"),
            "{}",
            run.b.path()
        );
        run.check("unmatched");
        let row = format!("table#unmatched tr[data-key=\"{key}\"]");
        assert_eq!(
            run.b.text(&format!("{row} td.subject")),
            "Заявка обработана"
        );
        run.press(&format!("{row} a.message-link"));
        run.check("unmatched-message");
        assert!(
            run.b.text("#msg-text").contains(&body),
            "the decoded text is not shown"
        );
        assert!(
            run.b
                .exists(&format!("ul#candidates li[data-request=\"{rid}\"]")),
            "request {rid} is not among the candidates: {}",
            run.b.text("ul#candidates")
        );
        run.fill("#assign-request", &rid);
        run.choose("#assign-event", "completed");
        run.fill("#assign-note", "checked at the registrar's panel");
        run.press("#assign-preview-submit");
        let preview = run.b.text("#assign-preview");
        assert!(
            preview.contains(&name),
            "the preview does not name {name}: {preview}"
        );
        run.check("assign-preview");
        assert_eq!(
            dom(d, &name)["status"],
            "Registering",
            "the preview changed something"
        );
        run.press("#assign-confirm-submit");
        run.b.find("#flash");
        assert!(
            run.b.path().starts_with("/ui/unmatched"),
            "{}",
            run.b.path()
        );
        assert!(
            !run.b.exists(&row),
            "the assigned message is still in the queue"
        );
        assert_eq!(dom(d, &name)["status"], "Registered");
        run.logout();
    });
}

/// Dismissing without a reason is refused (the message stays); with a reason it leaves the queue.
#[test]
fn dismissing_without_a_reason_is_refused() {
    in_every_mode("dismiss", |run| {
        let d = run.d();
        let site = run.site;
        let t = run.tag();
        let c = format!("c-dismiss-{t}");
        client(d, &c);
        let name = format!("dismiss-{t}.ru");
        let r = ordered(d, &name, &c);
        let m = deliver(
            site,
            &r,
            &format!("dismiss-{t}"),
            "Newsletter",
            "Our office is closed on Monday.",
        );
        assert_eq!(m["state"], "Unmatched", "{m}");
        let key = m["key"].as_str().unwrap_or_default().to_owned();
        let state_of = |d: &Daemon| -> Value {
            d.get_ok("/v1/inbox?limit=1000")["messages"]
                .as_array()
                .and_then(|a| a.iter().find(|m| m["key"] == key.as_str()).cloned())
                .map(|m| m["state"].clone())
                .unwrap_or(Value::Null)
        };

        run.login();
        run.open(&format!("/ui/unmatched/message?key={}", enc(&key)));
        run.check("unmatched-message");
        run.press("#dismiss-submit");
        let err = run.b.text("#error");
        assert!(
            err.contains("reason"),
            "the refusal does not name the field: {err:?}"
        );
        run.check_refused("dismiss-refused", 422);
        assert_eq!(
            state_of(d),
            "Unmatched",
            "a refused dismissal changed the message"
        );
        run.fill("#dismiss-reason", "a newsletter, not a reply");
        run.press("#dismiss-submit");
        run.b.find("#flash");
        assert!(
            run.b.path().starts_with("/ui/unmatched"),
            "{}",
            run.b.path()
        );
        let now = state_of(d);
        assert!(
            now != "Unmatched" && !now.is_null(),
            "the dismissed message is {now}"
        );
        run.logout();
    });
}

/// A new wording: the tester finds no rule; the rules file gains one; a broken file is refused
/// on reload with its error and the old rules stay; after a good reload the tester shows the
/// new rule and its captures.
#[test]
fn a_new_wording_gets_a_rule_that_the_tester_shows_after_a_reload() {
    in_every_mode("wording", |run| {
        let site = run.site;
        let t = run.tag();
        let name = format!("wording-{t}.ru");
        let text = new_wording(&name, t);
        let rule = format!("ui-wording-{t}");

        run.login();
        run.press("#nav-rules");
        assert!(run.b.path().starts_with("/ui/rules"), "{}", run.b.path());
        run.check("rules");
        run.fill("#test-message", &text);
        run.press("#test-submit");
        run.check("rules-tested");
        let found = run.b.text("#test-rule");
        assert!(
            found.contains("no rule"),
            "the tester should find no rule yet: {found:?}"
        );

        // A broken file: refused with its error, the rules in force stay listed.
        let good = std::fs::read_to_string(&site.rules_path).expect("rules file");
        std::fs::write(
            &site.rules_path,
            format!("{good}\n[[rule]]\nname = \"broken-{t}\"\nevent = \"completed\"\nbody = '(unclosed'\n"),
        )
        .expect("write rules");
        run.press("#reload-submit");
        let err = run.b.text("#error");
        assert!(
            err.contains(&format!("broken-{t}"))
                || err.contains("regex")
                || err.contains("unclosed"),
            "the reload error does not say what is wrong: {err:?}"
        );
        run.check_refused("rules-reload-refused", 422);
        assert!(
            run.b
                .exists("table#rules tr[data-rule=\"domain-registered\"]")
                || !run.b.find_all("table#rules tr[data-rule]").is_empty(),
            "the old rules are not listed after a refused reload"
        );

        std::fs::write(&site.rules_path, format!("{good}{}", new_rule(t))).expect("write rules");
        run.press("#reload-submit");
        let flash = run.b.text("#flash");
        assert!(flash.to_lowercase().contains("reloaded"), "{flash:?}");
        assert!(
            run.b
                .exists(&format!("table#rules tr[data-rule=\"{rule}\"]")),
            "the new rule is not listed"
        );
        run.fill("#test-message", &text);
        run.press("#test-submit");
        let found = run.b.text("#test-rule");
        assert!(
            found.contains(&rule),
            "the tester shows {found:?}, not {rule}"
        );
        assert_eq!(run.b.text("#test-event"), "completed");
        let captures = run.b.text("#test-captures");
        assert!(
            captures.contains(&name),
            "captures {captures:?} miss {name}"
        );
        run.logout();
    });
}

/// Bulk retry of three Error domains: the filtered list offers it, the confirmation says 3,
/// and after it the three are Registering with new requests.
#[test]
fn bulk_retry_of_three_error_domains() {
    in_every_mode("bulk", |run| {
        let d = run.d();
        let t = run.tag();
        let c = format!("c-bulk-{t}");
        client(d, &c);
        let names: Vec<String> = (1..=3).map(|i| format!("bulk{i}-{t}.ru")).collect();
        let mut old = Vec::new();
        for n in &names {
            old.push(error_domain(d, n, &c, "registry maintenance")["id"].clone());
        }
        // Another client's Error domain stays out of the filter.
        let other = format!("c-bulk-other-{t}");
        client(d, &other);
        error_domain(d, &format!("bulk-other-{t}.ru"), &other, "name is reserved");

        run.login();
        run.press("#nav-domains");
        run.check("domains");
        run.choose("#f-status", "Error");
        run.fill("#f-client", &c);
        run.press("#filter-submit");
        let path = run.b.path();
        assert!(
            path.contains("status=Error") && path.contains(&format!("client={c}")),
            "the filter is not in the URL: {path}"
        );
        assert_eq!(number(&run.b.text("#match-count")), 3);
        run.press("#bulk-retry-submit");
        run.check("bulk-retry-confirm");
        assert_eq!(run.b.text("#bulk-count"), "3");
        let listed = run.b.text("#bulk-list");
        for n in &names {
            assert!(listed.contains(n.as_str()), "{n} not in {listed:?}");
        }
        assert!(!listed.contains(&format!("bulk-other-{t}.ru")));
        run.press("#bulk-retry-confirm-submit");
        let flash = run.b.text("#flash");
        assert!(flash.contains("Retried 3"), "{flash:?}");
        for (n, o) in names.iter().zip(&old) {
            let v = dom(d, n);
            assert_eq!(v["status"], "Registering", "{v}");
            assert_ne!(v["open_request"]["id"], *o, "{n} has no new request");
        }
        assert_eq!(dom(d, &format!("bulk-other-{t}.ru"))["status"], "Error");
        run.logout();
    });
}

/// A permalink to a filtered list: the URL of a filtered list, opened after logging out and in
/// again, shows the same rows.
#[test]
fn a_permalink_to_a_filtered_list_shows_the_same_rows() {
    in_every_mode("permalink", |run| {
        let d = run.d();
        let t = run.tag();
        let c = format!("c-perm-{t}");
        client(d, &c);
        registered_domain(d, &format!("perm-a-{t}.ru"), &c, "2027-05-01");
        registered_domain(d, &format!("perm-b-{t}.ru"), &c, "2028-05-01");
        error_domain(d, &format!("perm-c-{t}.ru"), &c, "name is reserved");

        run.login();
        run.press("#nav-domains");
        run.choose("#f-status", "Registered");
        run.fill("#f-q", "perm-");
        run.fill("#f-client", &c);
        run.press("#filter-submit");
        let link = run.b.path();
        let rows = |b: &Browser| -> Vec<String> {
            b.find_all("table#domains tr[data-domain]")
                .iter()
                .map(|e| b.attr_of(e, "data-domain").unwrap_or_default())
                .collect()
        };
        let before = rows(run.b);
        assert_eq!(
            before,
            [format!("perm-a-{t}.ru"), format!("perm-b-{t}.ru")],
            "the filtered list at {link}"
        );
        run.logout();
        run.open(&link);
        assert!(
            run.b.path().starts_with("/ui/login"),
            "a permalink without a session should ask to log in"
        );
        match run.mode {
            Mode::Keyboard => run.b.login_by_keyboard(run.site, &run.site.operator_token),
            _ => run.b.login(run.site, &run.site.operator_token),
        }
        assert_eq!(
            run.b.path(),
            link,
            "the login did not return to the permalink"
        );
        assert_eq!(rows(run.b), before);
        run.logout();
    });
}

/// Russian data shown right: a .рф domain in Unicode beside its punycode, a Cyrillic reason in
/// the timeline, and a KOI8-R reply decoded in the unmatched queue.
#[test]
fn russian_data_is_shown_right() {
    in_every_mode("russian", |run| {
        let d = run.d();
        let site = run.site;
        let t = run.tag();
        let label = match run.mode {
            Mode::Mouse => "мышь",
            Mode::Keyboard => "клавиши",
            Mode::NoJs => "безскриптов",
        };
        let c = format!("c-ru-{t}");
        client(d, &c);
        let name = format!("окно-{label}.рф");
        let puny = idna::domain_to_ascii(&name).expect("punycode");
        registered_domain(d, &name, &c, "2027-10-10");
        let bad = format!("сайт-{label}.рф");
        let reason = "Домен зарезервирован реестром «Координационный центр» — №42";
        error_domain(d, &bad, &c, reason);
        let wait = format!("письмо-{label}.рф");
        let r = ordered(d, &wait, &c);
        let id = format!("koi8-{t}");
        let mid = r["message_id"].as_str().unwrap_or_default().to_owned();
        let mid = mid.trim_start_matches('<').trim_end_matches('>');
        let text = format!("Уважаемый партнёр! По домену {wait} требуется проверка документов.");
        let (koi, _, _) = encoding_rs::KOI8_R.encode(&text);
        let mut raw = format!(
            "From: robot@sandbox.invalid\r\nTo: regmail@sandbox.invalid\r\nSubject: =?koi8-r?B?{}?=\r\nMessage-ID: <{id}@registrar.test>\r\nIn-Reply-To: <{mid}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
            common::base64(&encoding_rs::KOI8_R.encode("Проверка документов").0)
        )
        .into_bytes();
        raw.extend_from_slice(&koi);
        raw.extend_from_slice(b"\r\n");
        site.drop_mail(&id, &raw);
        let m = site.settled_message(&id);
        assert_eq!(m["state"], "Unmatched", "{m}");

        run.login();
        run.press("#nav-domains");
        run.fill("#f-q", "окно");
        run.press("#filter-submit");
        run.check("domains-russian");
        let row = format!("table#domains tr[data-domain=\"{puny}\"]");
        assert_eq!(run.b.text(&format!("{row} td.name-unicode")), name);
        assert_eq!(run.b.text(&format!("{row} td.name-punycode")), puny);
        // The punycode filter finds the same row.
        run.fill("#f-q", &puny);
        run.press("#filter-submit");
        assert!(run.b.exists(&row), "the punycode filter misses {name}");

        run.open(&format!("/ui/domains/{puny}"));
        assert_eq!(run.b.text("h1"), name);
        assert_eq!(run.b.text("#domain-punycode"), puny);
        run.open(&format!("/ui/domains/{}", enc(&bad)));
        run.check("domain-russian");
        assert_eq!(run.b.text("h1"), bad);
        let timeline = run.b.text("ol#timeline");
        assert!(timeline.contains(reason), "{timeline}");

        run.press("#nav-unmatched");
        let key = m["key"].as_str().unwrap_or_default();
        let row = format!("table#unmatched tr[data-key=\"{key}\"]");
        assert_eq!(
            run.b.text(&format!("{row} td.subject")),
            "Проверка документов"
        );
        run.press(&format!("{row} a.message-link"));
        assert!(run.b.text("#msg-text").contains(&text));
        run.logout();
    });
}

/// Every page of the operator web page passes the checks, with JavaScript on and off, from a
/// store holding something of everything (so the screenshots show real rows).
#[test]
fn every_page_passes_the_checks_with_and_without_javascript() {
    let started = Instant::now();
    let site = UiSite::start();
    let d = &site.daemon;
    client(d, "c-all");
    registered_domain(d, "all-ok.ru", "c-all", "2027-01-15");
    registered_domain(d, "пример.рф", "c-all", "2026-12-20");
    error_domain(
        d,
        "all-err.ru",
        "c-all",
        "Domain all-err.ru is reserved <script>alert(1)</script>",
    );
    let waiting = ordered(d, "all-wait.ru", "c-all");
    let m = deliver(
        &site,
        &waiting,
        "all-unmatched",
        "Заявка <b>обработана</b>",
        "<script>document.title='pwned'</script> Операция выполнена.",
    );
    let key = m["key"].as_str().unwrap_or_default().to_owned();
    let rid = waiting["id"].as_str().unwrap_or_default().to_owned();
    d.settle();

    let pages: Vec<(String, String)> = vec![
        ("dashboard".into(), "/ui".into()),
        ("domains".into(), "/ui/domains".into()),
        ("domains-error".into(), "/ui/domains?status=Error".into()),
        ("domain".into(), "/ui/domains/all-err.ru".into()),
        (
            "domain-idn".into(),
            format!("/ui/domains/{}", enc("пример.рф")),
        ),
        (
            "bulk-retry-confirm".into(),
            "/ui/domains/bulk-retry?status=Error".into(),
        ),
        ("requests".into(), "/ui/requests".into()),
        ("requests-sent".into(), "/ui/requests?state=Sent".into()),
        ("request".into(), format!("/ui/requests/{rid}")),
        ("unmatched".into(), "/ui/unmatched".into()),
        (
            "unmatched-message".into(),
            format!("/ui/unmatched/message?key={}", enc(&key)),
        ),
        ("rules".into(), "/ui/rules".into()),
        (
            "rules-from-message".into(),
            format!("/ui/rules?key={}", enc(&key)),
        ),
        ("notices".into(), "/ui/notices".into()),
        ("webhooks".into(), "/ui/webhooks".into()),
        ("about".into(), "/ui/about".into()),
        ("reports".into(), "/ui/reports".into()),
        (
            "reports-expired".into(),
            "/ui/reports?report=expired".into(),
        ),
    ];
    for javascript in [true, false] {
        let b = shared(javascript);
        b.goto(&site.url("/ui/login"));
        b.forget_cookies();
        b.check_page("login");
        b.login(&site, &site.operator_token);
        let mut problems = Vec::new();
        for (name, path) in &pages {
            b.goto(&site.url(path));
            let at = b.path();
            if at.starts_with("/ui/login") {
                problems.push(format!("{name}: {path} sent back to the login form"));
                continue;
            }
            // Hostile content stays text.
            assert_ne!(b.title(), "pwned", "a reply's script ran on {path}");
            for p in b.page_problems(name) {
                problems.push(format!("{name} ({path}): {p}"));
            }
        }
        assert!(
            problems.is_empty(),
            "JavaScript {}: {} problem(s):\n  {}",
            if javascript { "on" } else { "off" },
            problems.len(),
            problems.join("\n  ")
        );
    }
    eprintln!(
        "every page: {} pages checked twice in {:.1} s",
        pages.len() + 1,
        started.elapsed().as_secs_f64()
    );
}

/// A viewer reads the pages but cannot act: no Retry button, and the POST it would send answers
/// 403 with the error shown and changes nothing; the rules tester, which changes nothing, works
/// for a viewer.
#[test]
fn a_viewer_reads_the_pages_but_cannot_act() {
    let site = UiSite::start();
    let d = &site.daemon;
    client(d, "c-view");
    error_domain(d, "view-err.ru", "c-view", "name is reserved");
    let log_before = d.full_log().len();
    let b = shared(true);
    b.goto(&site.url("/ui/login"));
    b.forget_cookies();
    b.login(&site, &site.viewer_token);
    assert_eq!(b.text("#whoami"), "victor (viewer)");
    b.goto(&site.url("/ui/domains/view-err.ru"));
    assert_eq!(b.text("#domain-status"), "Error");
    assert!(
        !b.exists("#retry-submit"),
        "a viewer is offered the Retry button"
    );
    // The same POST the operator's button sends, from the viewer's page and session.
    let old = b.document();
    b.exec(
        "const f = document.createElement('form'); f.method = 'post'; \
         f.action = '/ui/domains/view-err.ru/retry'; document.body.appendChild(f); f.submit();",
        vec![],
    );
    b.wait_new_document(&old, "the viewer's POST");
    let others = b.take_document_status(403);
    assert!(others.is_empty(), "console errors: {others:#?}");
    assert!(b.exists("#error"), "the 403 page shows no error");
    b.check_page("forbidden");
    assert_eq!(dom(d, "view-err.ru")["status"], "Error");
    let log = d.full_log();
    assert!(
        log[log_before..].iter().all(|e| !e["action"]
            .as_str()
            .unwrap_or_default()
            .starts_with("request.")
            && !e["action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("domain.")),
        "a viewer's POST changed something: {:#?}",
        &log[log_before..]
    );
    b.goto(&site.url("/ui/rules"));
    b.fill("#test-message", &new_wording("view-err.ru", "v"));
    b.click_to_page("#test-submit");
    assert!(b.text("#test-rule").contains("no rule"));
    b.assert_no_console_errors("in the viewer's run");
}
