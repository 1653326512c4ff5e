//! The operator web page in process (issue 14): a seeded sled store (through the core and the
//! real intake, [`super::intake::IntakeWorld`]), the `/v1` and `/ui` routers merged as the
//! daemon merges them, called with `tower::ServiceExt::oneshot`; a pinned clock for sessions;
//! operator token files and a rules file in a temporary directory (for reload).

use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use jiff::Timestamp;
use regmail::api::AppState;
use regmail::config::ui::{UiConfig, UiOperator, UiRole};
use regmail::core::{DomainName, Event, Policy, ReplyOutcome, RequestId, Resolution};
use regmail::inbound::classify::ClassifyContext;
use regmail::inbound::intake::Intake;
use regmail::inbound::parse::ParseLimits;
use regmail::reload::Reloadable;
use regmail::store::inbox::InboxState;
use regmail::trust::TrustConfig;
use secrecy::SecretString;
use tower::ServiceExt;

use super::intake::{CALLBACK, IntakeWorld, REGISTRAR};

/// The operator's token (role operator).
pub const ANNA: &str = "anna-token-0123456789abcdef";
/// The viewer's token.
pub const VIC: &str = "vic-token-0123456789abcdef";
/// The panel's API token.
pub const API_TOKEN: &str = "api-token-0123456789abcdef";

/// Request ids of the seeded world.
pub fn rid(n: u32) -> RequestId {
    RequestId::parse(&format!("0190c0de-0000-7000-8000-{n:012x}")).expect("id")
}

/// A seeded store with the API and the page over it.
pub struct UiWorld {
    /// The store and the intake that seeded it.
    pub w: IntakeWorld,
    /// `/v1` and `/ui`, merged.
    pub router: Router,
    /// The page's clock (sessions): set it to move time.
    pub clock: Arc<Mutex<Timestamp>>,
    /// Token files, the rules file, the configuration file.
    pub dir: tempfile::TempDir,
    /// Keys of the seeded unmatched messages: the hostile one, the one to dismiss.
    pub hostile_key: String,
    /// See `hostile_key`.
    pub dull_key: String,
}

/// One answer.
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body text.
    pub body: String,
}

impl Answer {
    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn hostile_mail() -> String {
    "From: R01 Robot <robot@registrar.test>\r\nTo: gateway@gateway.test\r\n\
     Subject: <script>alert('subject')</script> about xn--e1afmkfd.xn--p1ai\r\n\
     Message-ID: <hostile-1@registrar.test>\r\nDate: Mon, 01 Feb 2027 09:00:00 +0000\r\n\
     MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
     Content-Transfer-Encoding: 8bit\r\n\r\n\
     <script>alert('body')</script><img src=x onerror=alert(1)> something odd happened to пример.рф\r\n"
        .to_owned()
}

fn dull_mail() -> String {
    "From: R01 Robot <robot@registrar.test>\r\nTo: gateway@gateway.test\r\n\
     Subject: Our office moves\r\nMessage-ID: <dull-1@registrar.test>\r\n\
     Date: Mon, 01 Feb 2027 09:30:00 +0000\r\nMIME-Version: 1.0\r\n\
     Content-Type: text/plain; charset=utf-8\r\n\r\nDear partner, our office moves next week.\r\n"
        .to_owned()
}

fn write_private(path: &std::path::Path, text: &str) {
    super::write_secret(path, text);
}

impl UiWorld {
    /// The seeded world: a registered holder; `err-one.ru`, `err-two.ru`, `err-three.ru` in
    /// Error; `xn--e1afmkfd.xn--p1ai` (пример.рф) waiting for the registrar; `noted.ru` resolved
    /// (Registered) with a hostile note; two unmatched replies (one with `<script>` in subject and body).
    pub fn new() -> UiWorld {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = IntakeWorld::new(TrustConfig::default());
        w.holder();
        w.sent_domain_request("xn--e1afmkfd.xn--p1ai", rid(1));
        for (i, name) in ["err-one.ru", "err-two.ru", "err-three.ru", "noted.ru"]
            .iter()
            .enumerate()
        {
            let id = rid(10 + i as u32);
            w.sent_domain_request(name, id);
            w.apply(Event::RecordOutcome {
                request: id,
                outcome: ReplyOutcome::Rejected {
                    reason: "DOMAIN_TAKEN <b>bold</b>".into(),
                },
                note: "seeded".into(),
            });
        }
        w.apply(Event::Resolve {
            domain: DomainName::parse("noted.ru").expect("name"),
            // Expires in 20 days of the real clock (the page's "today"): in the expiring reports.
            outcome: Resolution::Registered {
                expires: Some(
                    Timestamp::now()
                        .to_zoned(jiff::tz::TimeZone::UTC)
                        .date()
                        .checked_add(jiff::Span::new().days(20))
                        .expect("date"),
                ),
            },
            note: "<script>alert('note')</script>".into(),
        });
        let hostile = w.feed("hostile", hostile_mail().as_bytes());
        assert_eq!(hostile.state, InboxState::Unmatched, "seed: {hostile:?}");
        let dull = w.feed("dull", dull_mail().as_bytes());
        assert_eq!(dull.state, InboxState::Unmatched, "seed: {dull:?}");

        // Rules file and configuration for reload.
        let rules_path = dir.path().join("replies.toml");
        std::fs::write(
            &rules_path,
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/request-templates/r01/replies.toml"
            ))
            .expect("rules"),
        )
        .expect("write rules");
        let config_path = dir.path().join("regmail.toml");
        std::fs::write(
            &config_path,
            format!("[registrar]\nrules = \"{}\"\n", rules_path.display()),
        )
        .expect("write config");
        let config = regmail::config::Config::load(Some(&config_path)).expect("config");
        let reloadable = Reloadable {
            config_path: Some(config_path),
            rules: Arc::new(RwLock::new(Arc::new(config.load_rules().expect("rules")))),
            outbound: Arc::new(RwLock::new(Arc::new(
                config.outbound_setup().expect("outbound"),
            ))),
            notice_templates: None,
        };
        let policy = Policy {
            message_id_host: "gateway.test".into(),
            handle_prefix: "GW".into(),
            ..Policy::default()
        };
        let intake = Arc::new(Intake {
            store: w.store.clone(),
            rules: reloadable.rules.clone(),
            policy: policy.clone(),
            classify: ClassifyContext::new(CALLBACK, "gateway.test", [REGISTRAR])
                .with_trust(TrustConfig::default()),
            limits: ParseLimits::default(),
            fallback: encoding_rs::KOI8_R,
            outbox_wake: None,
            health: None,
            redactor: Arc::default(),
        });
        let mut app = AppState::new(
            w.store.clone(),
            policy,
            &SecretString::from(API_TOKEN.to_owned()),
            64 * 1024,
        );
        app.intake = Some(intake);
        app.reloadable = Some(reloadable);

        let anna = dir.path().join("anna-token");
        let vic = dir.path().join("vic-token");
        write_private(&anna, &format!("{ANNA}\n"));
        write_private(&vic, &format!("{VIC}\n"));
        let ui_config = UiConfig {
            operators: vec![
                UiOperator {
                    name: "anna".into(),
                    role: UiRole::Operator,
                    token_file: anna,
                },
                UiOperator {
                    name: "vic".into(),
                    role: UiRole::Viewer,
                    token_file: vic,
                },
            ],
            ..UiConfig::default()
        };
        let clock = Arc::new(Mutex::new(Timestamp::now()));
        let c2 = clock.clone();
        let ui = regmail::ui::UiState::new(
            app.shared(),
            ui_config,
            vec![("Store".into(), "seeded test store".into())],
        )
        .expect("ui state")
        .with_clock(Arc::new(move || *c2.lock().expect("clock")));
        let router = regmail::api::router(Arc::new(app)).merge(regmail::ui::router(Arc::new(ui)));
        UiWorld {
            w,
            router,
            clock,
            dir,
            hostile_key: hostile.key,
            dull_key: dull.key,
        }
    }

    /// Sends one request through the merged router.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut b = Request::builder().method(method).uri(path);
        b = b.header("host", "127.0.0.1:7465");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Body::from(body.to_owned())).expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// GET with a session cookie.
    pub async fn get(&self, cookie: &str, path: &str) -> Answer {
        self.call(Method::GET, path, &[("cookie", cookie)], "")
            .await
    }

    /// A same-origin form POST with a session cookie.
    pub async fn post(&self, cookie: &str, path: &str, form: &str) -> Answer {
        self.call(
            Method::POST,
            path,
            &[
                ("cookie", cookie),
                ("content-type", "application/x-www-form-urlencoded"),
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:7465"),
            ],
            form,
        )
        .await
    }

    /// Logs in with `token`; the `Cookie` header value of the session.
    pub async fn login(&self, token: &str) -> String {
        let a = self
            .call(
                Method::POST,
                "/ui/login",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("sec-fetch-site", "same-origin"),
                ],
                &format!("token={token}"),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "login: {}", a.body);
        let set = a.header("set-cookie");
        set.split(';').next().expect("cookie").to_owned()
    }

    /// The state digest of the store (every tree but the sessions).
    pub fn digest(&self) -> [u8; 32] {
        self.w.store.state_digest().expect("digest")
    }

    /// Moves the page's clock.
    pub fn advance(&self, d: jiff::SignedDuration) {
        let mut t = self.clock.lock().expect("clock");
        *t = t.checked_add(d).expect("time");
    }
}
