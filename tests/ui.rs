//! The operator web page without a browser (issue 14): every page renders from a seeded store,
//! hostile text is shown escaped, the security headers are exact, the auth rules hold, cross-site
//! POSTs change nothing, no GET changes the store, and the actions do what they say and are
//! logged as `operator:<name>`. In process: the `/v1` and `/ui` routers over a real sled store
//! and the real intake (tests/common/ui.rs).

mod common;

use axum::http::{Method, StatusCode};
use common::ui::{ANNA, API_TOKEN, Answer, UiWorld, VIC, rid};
use regmail::core::{DomainName, DomainStatus};
use regmail::store::LogScope;
use regmail::store::inbox::InboxState;
use regmail::ui::form::enc;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[track_caller]
fn assert_headers(what: &str, a: &Answer) {
    assert_eq!(a.header("content-security-policy"), CSP, "{what}: CSP");
    assert_eq!(a.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(a.header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(a.header("cache-control"), "no-store", "{what}");
    assert_eq!(a.header("x-frame-options"), "DENY", "{what}");
}

/// No script but the page's own file, no inline style, no off-origin reference.
#[track_caller]
fn assert_clean_html(what: &str, body: &str) {
    for (i, _) in body.match_indices("<script") {
        assert!(
            body[i..].starts_with("<script src=\"/ui/assets/app.js\" defer></script>"),
            "{what}: an inline or foreign script at {i}"
        );
    }
    assert!(!body.contains("style="), "{what}: an inline style");
    assert!(!body.contains("<style"), "{what}: a style element");
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !body.contains(attr),
            "{what}: a reference to another origin ({attr})"
        );
    }
    let handler = regex::Regex::new(r"<[^>]*\son[a-z]+\s*=").expect("regex");
    assert!(
        !handler.is_match(body),
        "{what}: an event handler attribute"
    );
}

fn status_of(u: &UiWorld, name: &str) -> DomainStatus {
    u.w.store
        .domain(&DomainName::parse(name).expect("name"))
        .expect("read")
        .expect("domain")
        .status
}

/// The text of the element with `id` (up to the next `<`), for counts.
fn text_of<'a>(body: &'a str, id: &str) -> &'a str {
    let start = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id}"));
    let rest = &body[start..];
    let open = rest.find('>').expect("tag end") + 1;
    let close = rest[open..].find('<').expect("text end");
    rest[open..open + close].trim()
}

#[tokio::test]
async fn every_page_renders_escaped_with_the_headers_and_no_get_changes_the_store() {
    let u = UiWorld::new();
    let anna = u.login(ANNA).await;
    let key = enc(&u.hostile_key);
    let pages = [
        "/ui".to_owned(),
        "/ui/".to_owned(),
        "/ui/domains".to_owned(),
        "/ui/domains?status=Error".to_owned(),
        "/ui/domains?q=%D0%BF%D1%80%D0%B8%D0%BC%D0%B5%D1%80".to_owned(),
        "/ui/domains?expires_before=2099-01-01&status=Registered".to_owned(),
        "/ui/domains/err-one.ru".to_owned(),
        "/ui/domains/noted.ru".to_owned(),
        "/ui/domains/xn--e1afmkfd.xn--p1ai".to_owned(),
        format!("/ui/domains/{}", enc("пример.рф")),
        "/ui/domains/bulk-retry?status=Error".to_owned(),
        "/ui/requests".to_owned(),
        "/ui/requests?state=Sent".to_owned(),
        format!("/ui/requests/{}", rid(1)),
        format!("/ui/requests/{}", rid(10)),
        "/ui/unmatched".to_owned(),
        format!("/ui/unmatched/message?key={key}"),
        format!(
            "/ui/unmatched/assign?key={key}&request_id={}&event=completed&note=checked",
            rid(1)
        ),
        "/ui/rules".to_owned(),
        format!("/ui/rules?key={key}"),
        "/ui/notices".to_owned(),
        "/ui/webhooks".to_owned(),
        "/ui/about".to_owned(),
        "/ui/login".to_owned(),
        "/ui/reports".to_owned(),
        "/ui/reports?report=expiring&within=400".replace("400", "366"),
        "/ui/reports?report=expired".to_owned(),
        "/ui/reports?report=deleted".to_owned(),
    ];
    let before = u.digest();
    for p in &pages {
        let a = u.get(&anna, p).await;
        assert_eq!(a.status, StatusCode::OK, "{p}: {}", a.body);
        assert_headers(p, &a);
        assert!(
            a.header("content-type").starts_with("text/html"),
            "{p}: content type"
        );
        assert_eq!(a.body.matches("<h1>").count(), 1, "{p}: one h1");
        assert!(a.body.contains("<main id=\"main\""), "{p}: main landmark");
        assert_clean_html(p, &a.body);
        assert!(!a.body.contains("<script>alert"), "{p}: unescaped script");
        assert!(!a.body.contains("<img src=x"), "{p}: unescaped img");
        assert!(!a.body.contains("<b>bold</b>"), "{p}: unescaped markup");
    }
    // Hostile text is there, escaped: the subject and body of the reply, the operator's note.
    let msg = u
        .get(&anna, &format!("/ui/unmatched/message?key={key}"))
        .await;
    assert!(
        msg.body
            .contains("&lt;script&gt;alert(&#x27;subject&#x27;)&lt;&#x2f;script&gt;"),
        "{}",
        msg.body
    );
    assert!(
        msg.body.contains("&lt;script&gt;alert(&#x27;body&#x27;)"),
        "body escaped"
    );
    assert!(msg.body.contains("пример.рф"), "Russian text shown as is");
    let noted = u.get(&anna, "/ui/domains/noted.ru").await;
    assert!(
        noted.body.contains("&lt;script&gt;alert(&#x27;note&#x27;)"),
        "note escaped"
    );
    let unmatched = u.get(&anna, "/ui/unmatched").await;
    assert!(
        unmatched.body.contains("&lt;script&gt;"),
        "subject in the list escaped"
    );
    // Unicode and punycode side by side.
    let list = u.get(&anna, "/ui/domains").await;
    assert!(list.body.contains("пример.рф") && list.body.contains("xn--e1afmkfd.xn--p1ai"));
    // The dashboard's counts are the store's.
    let dash = u.get(&anna, "/ui").await;
    assert_eq!(text_of(&dash.body, "count-domains-Error"), "3");
    assert_eq!(text_of(&dash.body, "count-domains-Registered"), "1");
    assert_eq!(text_of(&dash.body, "count-domains-Registering"), "1");
    assert_eq!(text_of(&dash.body, "count-unmatched"), "2");
    assert_eq!(text_of(&dash.body, "count-requests-Sent"), "1");
    assert_eq!(text_of(&dash.body, "expiring-30"), "1");
    assert_eq!(text_of(&dash.body, "expiring-15"), "0");
    // Assets.
    for (p, ty) in [
        ("/ui/assets/app.css", "text/css"),
        ("/ui/assets/app.js", "text/javascript"),
        ("/ui/assets/favicon.svg", "image/svg+xml"),
    ] {
        let a = u.get(&anna, p).await;
        assert_eq!(a.status, StatusCode::OK, "{p}");
        assert!(a.header("content-type").starts_with(ty), "{p}");
        assert_headers(p, &a);
    }
    assert!(
        u.get(&anna, "/ui/assets/app.css")
            .await
            .body
            .contains("prefers-color-scheme: dark")
    );
    // The reports: the same rows as the report functions, and a CSV download.
    let r = u.get(&anna, "/ui/reports?report=expiring&within=366").await;
    assert_eq!(
        text_of(&r.body, "report-count"),
        "1",
        "noted.ru expires within a year"
    );
    assert!(r.body.contains("noted.ru"));
    let csv = u
        .get(&anna, "/ui/reports/download?report=expiring&within=366")
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
    assert!(
        csv.header("content-disposition")
            .starts_with("attachment; filename=\"expiring-366-")
    );
    assert!(csv.body.starts_with("Order ID,"), "{}", csv.body);
    assert_headers("csv", &csv);
    // Unknown pages and bad parameters answer with a page, not a crash.
    for (p, status) in [
        ("/ui/nowhere", StatusCode::NOT_FOUND),
        ("/ui/domains/absent.ru", StatusCode::NOT_FOUND),
        ("/ui/domains?status=Bogus", StatusCode::UNPROCESSABLE_ENTITY),
        ("/ui/domains?colour=red", StatusCode::UNPROCESSABLE_ENTITY),
        ("/ui/requests/not-an-id", StatusCode::UNPROCESSABLE_ENTITY),
        ("/ui/unmatched/message?key=nope", StatusCode::NOT_FOUND),
        (
            "/ui/reports?report=someday",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/ui/reports?within=0", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let a = u.get(&anna, p).await;
        assert_eq!(a.status, status, "{p}: {}", a.body);
        assert_headers(p, &a);
        assert!(a.body.contains("id=\"error\""), "{p}: the error is shown");
    }
    assert_eq!(before, u.digest(), "a GET changed the store");
}

#[tokio::test]
async fn auth_sessions_roles_and_the_api_stay_apart() {
    let u = UiWorld::new();
    // No session: the login page, remembering where to go.
    let a = u
        .call(Method::GET, "/ui/domains?status=Error", &[], "")
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        a.header("location"),
        "/ui/login?next=%2Fui%2Fdomains%3Fstatus%3DError"
    );
    assert_headers("redirect", &a);
    // A wrong token: 401, no cookie.
    let a = u
        .call(
            Method::POST,
            "/ui/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "token=not-the-token-0123456789",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.headers.get("set-cookie").is_none(),
        "no cookie for a wrong token"
    );
    assert!(a.body.contains("id=\"error\""));
    // The API token is not an operator token.
    let a = u
        .call(
            Method::POST,
            "/ui/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("token={API_TOKEN}"),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // The right one: the cookie's flags, exactly.
    let a = u
        .call(
            Method::POST,
            "/ui/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("token={ANNA}&next=%2Fui%2Fdomains"),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), "/ui/domains");
    let set = a.header("set-cookie").to_owned();
    let (pair, flags) = set.split_once("; ").expect("flags");
    assert_eq!(flags, "HttpOnly; SameSite=Strict; Path=/ui");
    let anna = pair.to_owned();
    // The login is in the action log, by name; the token and the session id are nowhere in it.
    let log = u.w.store.log_since(0, 10_000).expect("log");
    let login = log
        .iter()
        .rev()
        .find(|e| e.entry.action == "ui.login")
        .expect("ui.login");
    assert_eq!(login.by.as_deref(), Some("operator:anna"));
    let dump = serde_json::to_string(&log).expect("json");
    assert!(!dump.contains(ANNA) && !dump.contains(pair.split('=').nth(1).unwrap_or("x")));

    // The cookie alone on /v1: 401. A bearer token on /ui: not a session.
    let a = u
        .call(Method::GET, "/v1/stats", &[("cookie", &anna)], "")
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {API_TOKEN}");
    let a = u
        .call(Method::GET, "/ui", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let a = u
        .call(Method::GET, "/v1/stats", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(a.status, StatusCode::OK, "the API still works: {}", a.body);

    // A viewer sees everything and changes nothing.
    let vic = u.login(VIC).await;
    assert_eq!(
        u.get(&vic, "/ui/domains/err-one.ru").await.status,
        StatusCode::OK
    );
    let before = u.digest();
    for (path, form) in [
        ("/ui/domains/err-one.ru/retry", ""),
        ("/ui/domains/err-one.ru/resolve", "outcome=error&note=x"),
        ("/ui/domains/bulk-retry", "domain=err-one.ru&count=1"),
        ("/ui/unmatched/dismiss", "key=x&reason=y"),
        ("/ui/rules/reload", ""),
    ] {
        let a = u.post(&vic, path, form).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "viewer POST {path}");
        assert_headers(path, &a);
    }
    assert_eq!(before, u.digest(), "a viewer's POST changed the store");
    let t = u
        .post(
            &vic,
            "/ui/rules/test",
            "message=Request+queued+as+task+700109.&subject=x",
        )
        .await;
    assert_eq!(
        t.status,
        StatusCode::OK,
        "viewers may test rules: {}",
        t.body
    );

    // Idle timeout (30 min by default) with the pinned clock; the absolute one (12 h).
    u.advance(jiff::SignedDuration::from_mins(29));
    assert_eq!(u.get(&anna, "/ui").await.status, StatusCode::OK);
    u.advance(jiff::SignedDuration::from_mins(29));
    assert_eq!(
        u.get(&anna, "/ui").await.status,
        StatusCode::OK,
        "use restarts the idle time"
    );
    u.advance(jiff::SignedDuration::from_mins(31));
    assert_eq!(
        u.get(&anna, "/ui").await.status,
        StatusCode::SEE_OTHER,
        "idle too long"
    );
    let anna = u.login(ANNA).await;
    for _ in 0..25 {
        u.advance(jiff::SignedDuration::from_mins(29));
        if u.get(&anna, "/ui").await.status != StatusCode::OK {
            break;
        }
    }
    assert_eq!(
        u.get(&anna, "/ui").await.status,
        StatusCode::SEE_OTHER,
        "12 h at most"
    );

    // Logout ends the session on the server: the old cookie no longer works.
    let anna = u.login(ANNA).await;
    let a = u.post(&anna, "/ui/logout", "").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.header("set-cookie").contains("Max-Age=0"));
    assert_eq!(u.get(&anna, "/ui").await.status, StatusCode::SEE_OTHER);

    // The login is rate-limited per address: the eleventh attempt in a minute is 429.
    let ip = axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 9], 5000)));
    let mut last = StatusCode::OK;
    for _ in 0..11 {
        let req = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/ui/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .extension(ip)
            .body(axum::body::Body::from("token=wrong-token-0123456789"))
            .expect("request");
        use tower::ServiceExt;
        last = u
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("answer")
            .status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn cross_site_posts_are_refused_and_change_nothing() {
    let u = UiWorld::new();
    let anna = u.login(ANNA).await;
    let before = u.digest();
    for extra in [
        [("sec-fetch-site", "cross-site"), ("x-none", "")],
        [("sec-fetch-site", "same-site"), ("x-none", "")],
        [("origin", "http://evil.example"), ("x-none", "")],
        [("origin", "null"), ("x-none", "")],
        [("origin", "http://127.0.0.1:9999"), ("x-none", "")],
    ] {
        let mut h = vec![
            ("cookie", anna.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        h.extend(extra.iter().filter(|(k, _)| *k != "x-none"));
        let a = u
            .call(Method::POST, "/ui/domains/err-one.ru/retry", &h, "")
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{extra:?}");
        assert_headers("cross-site", &a);
        // Login too (login CSRF).
        let a = u
            .call(Method::POST, "/ui/login", &h, &format!("token={ANNA}"))
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "login {extra:?}");
        assert!(a.headers.get("set-cookie").is_none());
    }
    assert_eq!(before, u.digest(), "a refused POST changed the store");
    assert_eq!(status_of(&u, "err-one.ru"), DomainStatus::Error);
    // The same POST from the page itself works, and the log names the operator.
    let a = u.post(&anna, "/ui/domains/err-one.ru/retry", "").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.header("location"), "/ui/domains/err-one.ru?done=retried");
    assert_eq!(status_of(&u, "err-one.ru"), DomainStatus::Registering);
    let log =
        u.w.store
            .log_of(
                &LogScope::Domain(DomainName::parse("err-one.ru").unwrap()),
                0,
                1000,
            )
            .unwrap();
    let last = log.last().expect("entry");
    assert_eq!(last.by.as_deref(), Some("operator:anna"), "{last:?}");
    let page = u.get(&anna, "/ui/domains/err-one.ru?done=retried").await;
    assert!(page.body.contains("id=\"flash\""));
    assert!(
        page.body.contains("operator:anna"),
        "the timeline names the operator"
    );
    // A POST with no Fetch Metadata and no Origin (curl) is accepted: SameSite=Strict guards it.
    let a = u
        .call(
            Method::POST,
            "/ui/domains/err-two.ru/retry",
            &[("cookie", anna.as_str())],
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn dismiss_needs_a_reason_and_assign_applies_the_reply() {
    let u = UiWorld::new();
    let anna = u.login(ANNA).await;
    // Dismiss without a reason: refused, the field named, nothing changed.
    let before = u.digest();
    let a = u
        .post(
            &anna,
            "/ui/unmatched/dismiss",
            &format!("key={}&reason=+", enc(&u.dull_key)),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("reason: is required"), "{}", a.body);
    assert_eq!(before, u.digest());
    let a = u
        .post(
            &anna,
            "/ui/unmatched/dismiss",
            &format!("key={}&reason=office+news", enc(&u.dull_key)),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let m = u.w.store.inbox_message(&u.dull_key).unwrap().unwrap();
    assert_eq!(m.state, InboxState::Dismissed);

    // Assign: the preview says what will happen and changes nothing; the POST does it.
    let key = enc(&u.hostile_key);
    let before = u.digest();
    let p = u
        .get(
            &anna,
            &format!(
                "/ui/unmatched/assign?key={key}&request_id={}&event=completed&note=checked+at+R01",
                rid(1)
            ),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("id=\"assign-preview\""));
    assert!(p.body.contains("becomes Registered"), "{}", p.body);
    assert_eq!(before, u.digest(), "the preview changed the store");
    // The candidate list offers the request the message names.
    let m = u
        .get(&anna, &format!("/ui/unmatched/message?key={key}"))
        .await;
    assert!(m.body.contains(&format!("data-request=\"{}\"", rid(1))));
    // Without a note: refused.
    let a = u
        .post(
            &anna,
            "/ui/unmatched/assign",
            &format!("key={key}&request_id={}&event=completed&note=", rid(1)),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("note: is required"));
    let a = u
        .post(
            &anna,
            "/ui/unmatched/assign",
            &format!(
                "key={key}&request_id={}&event=completed&note=checked+at+R01",
                rid(1)
            ),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        status_of(&u, "xn--e1afmkfd.xn--p1ai"),
        DomainStatus::Registered
    );
    let log =
        u.w.store
            .log_of(
                &LogScope::Domain(DomainName::parse("xn--e1afmkfd.xn--p1ai").unwrap()),
                0,
                1000,
            )
            .unwrap();
    assert!(log.iter().any(|e| e.by.as_deref() == Some("operator:anna")));
    let dash = u.get(&anna, "/ui").await;
    assert_eq!(text_of(&dash.body, "count-unmatched"), "0");
}

#[tokio::test]
async fn domain_actions_and_the_bulk_retry_with_its_confirmation() {
    let u = UiWorld::new();
    let anna = u.login(ANNA).await;
    // Resolve needs a note.
    let a = u
        .post(
            &anna,
            "/ui/domains/err-three.ru/resolve",
            "outcome=registered&note=",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("note: is required"), "{}", a.body);
    assert_eq!(status_of(&u, "err-three.ru"), DomainStatus::Error);
    // Unknown fields are refused by name.
    let a = u
        .post(
            &anna,
            "/ui/domains/err-three.ru/resolve",
            "outcome=registered&note=x&colour=red",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("colour: unknown field"));

    // Bulk retry: the confirmation counts the Error domains of the filter.
    let c = u.get(&anna, "/ui/domains/bulk-retry?status=Error").await;
    assert_eq!(text_of(&c.body, "bulk-count"), "3");
    // A confirmation for another count is refused and changes nothing.
    let before = u.digest();
    let a = u
        .post(
            &anna,
            "/ui/domains/bulk-retry",
            "domain=err-one.ru&domain=err-two.ru&count=3",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(before, u.digest());
    let a = u
        .post(
            &anna,
            "/ui/domains/bulk-retry",
            "domain=err-one.ru&domain=err-two.ru&domain=err-three.ru&count=3",
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        a.header("location"),
        "/ui/domains?status=Error&done=bulk-retried-3"
    );
    for d in ["err-one.ru", "err-two.ru", "err-three.ru"] {
        assert_eq!(status_of(&u, d), DomainStatus::Registering, "{d}");
    }
    let l = u
        .get(&anna, "/ui/domains?status=Error&done=bulk-retried-3")
        .await;
    assert!(l.body.contains("Retried 3 domains."));
    assert_eq!(text_of(&l.body, "match-count"), "0 domains");

    // Record an outcome on a request; cancel is refused for a domain at the registrar.
    let a = u
        .post(
            &anna,
            &format!("/ui/requests/{}/outcome", rid(1)),
            "event=completed&expires=2028-02-01&note=seen+in+the+R01+panel",
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        status_of(&u, "xn--e1afmkfd.xn--p1ai"),
        DomainStatus::Registered
    );
    let a = u
        .post(&anna, "/ui/domains/noted.ru/cancel", "note=no")
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(a.body.contains("id=\"error\""));
}

#[tokio::test]
async fn the_rules_tester_and_reload_keep_the_old_rules_on_a_broken_file() {
    let u = UiWorld::new();
    let anna = u.login(ANNA).await;
    let t = u
        .post(
            &anna,
            "/ui/rules/test",
            "message=Zzyzx+wording+never+seen&subject=Re%3A+x",
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert_eq!(text_of(&t.body, "test-rule"), "no rule");
    let rules_file = u.dir.path().join("replies.toml");
    let good = std::fs::read_to_string(&rules_file).unwrap();
    // A broken file: the error is shown and the old rules stay (and are listed).
    std::fs::write(
        &rules_file,
        format!("{good}\n[[rule]]\nname = \"broken\"\nevent = \"completed\"\nbody = '(unclosed'\n"),
    )
    .unwrap();
    let r = u.post(&anna, "/ui/rules/reload", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("reload refused"), "{}", r.body);
    assert!(r.body.contains("data-rule="), "the old rules are listed");
    // A new wording: the file gains a rule, reload, the tester finds it.
    std::fs::write(
        &rules_file,
        format!("[[rule]]\nname = \"zzyzx-done\"\nevent = \"completed\"\nbody = '(?i)zzyzx wording'\n\n{good}"),
    )
    .unwrap();
    let r = u.post(&anna, "/ui/rules/reload", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = u
        .post(
            &anna,
            "/ui/rules/test",
            "message=Zzyzx+wording+never+seen&subject=Re%3A+x",
        )
        .await;
    assert_eq!(text_of(&t.body, "test-rule"), "zzyzx-done");
    let log = u.w.store.log_since(0, 10_000).unwrap();
    assert!(
        log.iter()
            .any(|e| e.entry.action == "ui.reload" && e.by.as_deref() == Some("operator:anna"))
    );
    // "Make a rule from this": a stored unmatched message gives a snippet to copy.
    let p = u
        .get(&anna, &format!("/ui/rules?key={}", enc(&u.dull_key)))
        .await;
    assert!(p.body.contains("id=\"rule-snippet\""), "{}", p.body);
    assert!(p.body.contains("Our office moves"));
}

/// One raw HTTP/1.1 exchange with the real daemon: status line and headers, and the body.
fn http(d: &common::Daemon, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(d.addr()).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok();
    s.write_all(request.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

#[test]
fn the_daemon_serves_the_page_and_check_config_refuses_a_bad_token_file() {
    let tokens = tempfile::tempdir().expect("tempdir");
    let anna = tokens.path().join("anna-token");
    common::write_secret(&anna, &format!("{ANNA}\n"));
    let ui = format!(
        "\n[ui]\nlogin_per_ip_per_minute = 100\n\n[[ui.operators]]\nname = \"anna\"\nrole = \"operator\"\ntoken_file = \"{}\"\n",
        anna.display()
    );
    let d = common::Daemon::start_with(common::Options {
        extra_config: ui.clone(),
        ..common::Options::default()
    });
    let host = format!("127.0.0.1:{}", d.addr().port());
    let form = format!("token={ANNA}");
    let (head, _) = http(
        &d,
        &format!(
            "POST /ui/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nSec-Fetch-Site: same-origin\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no cookie in {head}"))
        .to_owned();
    let (head, body) = http(
        &d,
        &format!(
            "GET /ui HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-security-policy: {CSP}").to_ascii_lowercase())
    );
    assert!(body.contains("id=\"count-domains-Error\""), "{body}");
    let (head, _) = http(
        &d,
        &format!(
            "GET /v1/stats HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(
        head.starts_with("HTTP/1.1 401"),
        "the cookie is no API credential: {head}"
    );
    // The API's own 404 still answers for other paths.
    let (head, _) = http(
        &d,
        &format!(
            "GET /nowhere HTTP/1.1\r\nHost: {host}\r\n{}Connection: close\r\n\r\n",
            d.auth_line()
        ),
    );
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // check-config: a token file others can read is refused, naming the key; so is a short one.
    let cfg = tokens.path().join("bad.toml");
    let loose = tokens.path().join("loose-token");
    std::fs::write(&loose, format!("{VIC}\n")).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let short = tokens.path().join("short-token");
    common::write_secret(&short, "short\n");
    std::fs::write(
        &cfg,
        format!(
            "[[ui.operators]]\nname = \"vic\"\nrole = \"viewer\"\ntoken_file = \"{}\"\n\n[[ui.operators]]\nname = \"sam\"\nrole = \"viewer\"\ntoken_file = \"{}\"\n",
            loose.display(),
            short.display()
        ),
    )
    .expect("write config");
    let out = common::run_cli(&cfg, &["check-config"]);
    assert_ne!(out.code, 0, "check-config accepted a readable token file");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("ui.operators[0].token_file"), "{all}");
    assert!(all.contains("ui.operators[1].token_file"), "{all}");
    assert!(!all.contains(VIC), "the token itself is never shown");
}

#[tokio::test]
async fn webhook_endpoints_are_listed_without_secrets_and_replayed() {
    let u = UiWorld::new();
    let anna = u.login(ANNA).await;
    let bearer = format!("Bearer {API_TOKEN}");
    let made = u
        .call(
            Method::POST,
            "/v1/webhooks",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            r#"{"url": "http://127.0.0.1:9/hook", "events": ["*"]}"#,
        )
        .await;
    assert!(made.status.is_success(), "{}", made.body);
    let v: serde_json::Value = serde_json::from_str(&made.body).expect("json");
    let id = v["id"].as_str().expect("id").to_owned();
    let page = u.get(&anna, "/ui/webhooks").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&format!("data-endpoint=\"{id}\"")));
    assert!(
        !page.body.contains("whsec_"),
        "a signing secret on the page"
    );
    let a = u
        .post(&anna, &format!("/ui/webhooks/{id}/replay"), "hours=24")
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.header("location"), "/ui/webhooks?done=replayed-0");
    let a = u
        .post(&anna, "/ui/webhooks/ep_nope/replay", "hours=24")
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = u
        .post(&anna, &format!("/ui/webhooks/{id}/replay"), "hours=9999")
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("hours: "));
}
