//! `regmail demo`: regmail and the R01 sandbox together in this one process, on the `dir`
//! transport and a Maildir (no mail server needed), with a fresh store under `--dir`. It places
//! a sample client and a domain order over the real HTTP API, marks it paid, prints the action
//! log as the domain goes Registering -> Registered, renews it, and then leaves the API running
//! for the README's curl examples until Ctrl-C.
//!
//! A `--dir` left by an earlier run is started fresh: its store, mail directories and the
//! sandbox registry are deleted; the API token and the registrar password file are kept, so
//! commands copied from an earlier run still work. A directory that was not made by the demo is
//! never touched (the demo refuses it unless it is empty).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::Config;
use crate::core::DomainName;
use crate::sandbox::SandboxConfig;

/// The port the README's examples use.
const DEFAULT_PORT: u16 = 7465;
/// Marks a directory as the demo's own, so a later run may clear it.
const MARKER: &str = ".regmail-demo";
/// The sample domain (an IDN: regmail writes it in punycode to the registrar).
const DOMAIN: &str = "регмейл-демо.рф";
/// The sample client.
const CLIENT: &str = "demo-ivanov";
/// The partner's callback mailbox (From of requests) and the sandbox's robot address.
const CALLBACK: &str = "hostmaster@hosting.example";
const ROBOT: &str = "robot@r01-sandbox.example";
const AGREEMENT: &str = "RP/00/DEMO";

/// Runs the demo under `dir`.
pub fn main(dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    // regmail and the sandbox only speak up when something goes wrong; the tour prints the rest.
    // The sandbox defaults are the point of the demo: no pre-flight warnings about them.
    crate::logging::init_tracing("warn,regmail::preflight=error");
    let dir =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let reused = prepare(&dir)?;
    let token = ensure_secret(&dir.join("api-token"), || {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    })?;
    ensure_secret(&dir.join("registrar-password"), || {
        format!("demo-{}", uuid::Uuid::new_v4().simple())
    })?;
    let port = pick_port();
    let config = Config::from_toml_str(&regmail_toml(&dir, port), None)
        .map_err(|e| anyhow::anyhow!("the demo's regmail configuration: {e}"))?;
    let sandbox = SandboxConfig::from_toml_str(&sandbox_toml(&dir), &dir)
        .map_err(|e| anyhow::anyhow!("the demo's sandbox configuration:\n  {}", e.join("\n  ")))?;

    println!("regmail demo: regmail and the R01 sandbox in one process, no mail server needed");
    println!(
        "  files:  {} ({})",
        dir.display(),
        if reused {
            "an earlier demo's store and mail were cleared; token kept"
        } else {
            "new"
        }
    );
    println!(
        "  mail:   requests are .eml files in {}/outbox, replies a Maildir in {}/inbox",
        dir.display(),
        dir.display()
    );
    if port != DEFAULT_PORT {
        println!(
            "  note:   127.0.0.1:{DEFAULT_PORT} is in use (another regmail?), so the API listens on 127.0.0.1:{port}"
        );
    }
    println!();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let base = format!("http://127.0.0.1:{port}");
    let tour_dir = dir.clone();
    let tour_base = base.clone();
    let result = rt.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut daemon = tokio::spawn(crate::daemon::run(config));
        let sandbox = tokio::spawn(crate::sandbox::run(sandbox, stop_rx));
        let tour = tokio::task::spawn_blocking(move || tour(&tour_base, &token, &tour_dir));
        let tour_result = tokio::select! {
            r = &mut daemon => {
                let _ = stop_tx.send(true);
                let _ = sandbox.await;
                return match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.context("regmail stopped")),
                    Err(e) => Err(anyhow::anyhow!("regmail's task failed: {e}")),
                };
            }
            t = tour => t.map_err(|e| anyhow::anyhow!("the tour's task failed: {e}")).and_then(|r| r),
        };
        match &tour_result {
            Ok(()) => println!(
                "The demo reached this point {:.1} s after it started.",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => println!(
                "\nThe tour failed: {e:#}\nThe API stays up so that you can look (the log: curl {base}/v1/log?since=0)."
            ),
        }
        print_examples(&base, &dir);
        let _ = std::io::stdout().flush();
        let served = daemon.await;
        let _ = stop_tx.send(true);
        let _ = sandbox.await;
        println!("stopped.");
        match served {
            Ok(Ok(())) => tour_result,
            Ok(Err(e)) => Err(e.context("regmail stopped")),
            Err(e) => Err(anyhow::anyhow!("regmail's task failed: {e}")),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

/// Makes `dir` ready. Returns true when an earlier demo's files were cleared.
fn prepare(dir: &Path) -> anyhow::Result<bool> {
    let marker = dir.join(MARKER);
    let mut reused = false;
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !marker.exists() {
            bail!(
                "{} exists and was not made by `regmail demo`; give an empty or new --dir",
                dir.display()
            );
        }
        for sub in ["store", "outbox", "inbox"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("cannot clear {}", p.display()))?;
                reused = true;
            }
        }
        let reg = dir.join("sandbox-registry.json");
        if reg.exists() {
            std::fs::remove_file(&reg)
                .with_context(|| format!("cannot clear {}", reg.display()))?;
        }
    }
    for sub in ["outbox", "inbox"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    std::fs::write(
        &marker,
        "made by `regmail demo`; the demo clears this directory's store and mail at each start\n",
    )
    .with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(reused)
}

/// Reads a secret file, or creates it (mode 0600) with `make()`.
fn ensure_secret(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let t = text.trim();
        if !t.is_empty() {
            return Ok(t.to_owned());
        }
    }
    let value = make();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{value}")?;
    Ok(value)
}

/// 7465 when free, else any free port.
fn pick_port() -> u16 {
    if std::net::TcpListener::bind(("127.0.0.1", DEFAULT_PORT)).is_ok() {
        return DEFAULT_PORT;
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_or(DEFAULT_PORT, |a| a.port())
}

/// A TOML string literal.
fn q(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

fn regmail_toml(dir: &Path, port: u16) -> String {
    format!(
        r#"[store]
path = {store}
cache_capacity_mb = 16

[api]
listen = "127.0.0.1:{port}"
token_file = {token}

[registrar]
gateway = "{ROBOT}"
callback = "{CALLBACK}"
agreement = "{AGREEMENT}"
password_file = {password}
senders = ["{ROBOT}"]
handle_prefix = "DEMO"

[outbound]
transport = "dir"
dir = {outbox}

[inbound]
source = "maildir"
maildir = {inbox}
poll_interval = "100ms"

[log]
filter = "warn"
"#,
        store = q(&dir.join("store")),
        token = q(&dir.join("api-token")),
        password = q(&dir.join("registrar-password")),
        outbox = q(&dir.join("outbox")),
        inbox = q(&dir.join("inbox")),
    )
}

fn sandbox_toml(dir: &Path) -> String {
    format!(
        r#"source = "dir"
dir = {outbox}
poll_interval = "100ms"
reply = "maildir"
maildir = {inbox}
from = "{ROBOT}"
contacts = ["{CALLBACK}"]
agreement = "{AGREEMENT}"
password_file = {password}
delay = "400ms"
registry = {registry}
# A new domain's first term is 45 days, so that the tour can renew the .рф domain at once
# (R01 renews .ru/.su/.рф only in the last 60 days of the term, and so does regmail).
first_term_days = 45
"#,
        outbox = q(&dir.join("outbox")),
        inbox = q(&dir.join("inbox")),
        password = q(&dir.join("registrar-password")),
        registry = q(&dir.join("sandbox-registry.json")),
    )
}

/// A small blocking API client.
struct Api {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

impl Api {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &self.auth)
                .call(),
            (_, b) => {
                let mut rb = self.agent.post(&url).header("Authorization", &self.auth);
                if let Some(k) = key {
                    rb = rb.header("Idempotency-Key", k);
                }
                rb.send_json(b.cloned().unwrap_or_else(|| json!({})))
            }
        };
        let mut resp = resp.with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        match self.call("GET", path, None, None)? {
            (200, v) => Ok(v),
            (s, v) => bail!("GET {path}: {s} {v}"),
        }
    }

    fn post(&self, path: &str, body: &Value, key: Option<&str>) -> anyhow::Result<Value> {
        match self.call("POST", path, Some(body), key)? {
            (200..=299, v) => Ok(v),
            (s, v) => bail!("POST {path}: {s} {v}"),
        }
    }
}

/// Percent-encodes a path segment (RFC 3986 §2.1).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One action-log entry as a line for people.
fn human(e: &Value, t0: jiff::Timestamp) -> String {
    let at = text(e, "at")
        .parse::<jiff::Timestamp>()
        .map(|t| (t.as_millisecond() - t0.as_millisecond()) as f64 / 1000.0)
        .unwrap_or(0.0);
    let what = if !text(e, "domain").is_empty() {
        let d = text(e, "domain");
        DomainName::parse(&d).map(|n| n.to_unicode()).unwrap_or(d)
    } else if !text(e, "client").is_empty() {
        format!("client {}", text(e, "client"))
    } else {
        let r = text(e, "request");
        format!("request {}", r.get(..8).unwrap_or(&r))
    };
    let change = match (text(e, "status_before"), text(e, "status_after")) {
        (b, a) if a.is_empty() || a == b => String::new(),
        (b, a) if b.is_empty() => format!("  [-> {a}]"),
        (b, a) => format!("  [{b} -> {a}]"),
    };
    let ev = &e["evidence"];
    let mut why = String::new();
    if !text(ev, "rule").is_empty() {
        why = format!(
            "  (rule {}, by {})",
            text(ev, "rule"),
            text(ev, "correlation")
        );
    }
    let mut msg = text(e, "message");
    if msg.chars().count() > 90 {
        msg = msg.chars().take(87).collect::<String>() + "...";
    }
    format!(
        "  {at:>6.2}s  {:<9} {:<26} {:<18} {msg}{change}{why}",
        text(e, "actor"),
        text(e, "action"),
        what
    )
}

/// Prints the global log from `since` until an entry `done` accepts appears (or `timeout`);
/// returns that entry. `since` moves on.
fn follow(
    api: &Api,
    since: &mut u64,
    t0: jiff::Timestamp,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let start = Instant::now();
    loop {
        let page = api.get(&format!("/v1/log?since={since}&limit=500"))?;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        let mut hit = None;
        for e in &entries {
            println!("{}", human(e, t0));
            if hit.is_none() && done(e) {
                hit = Some(e.clone());
            }
        }
        let _ = std::io::stdout().flush();
        *since = page["next"].as_u64().unwrap_or(*since);
        if let Some(h) = hit {
            return Ok(h);
        }
        if start.elapsed() > timeout {
            bail!("the awaited log entry did not come within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An entry about the demo domain with one of `actions`.
fn domain_entry(actions: &'static [&'static str]) -> impl Fn(&Value) -> bool {
    let ascii = DomainName::parse(DOMAIN)
        .map(|d| d.as_str().to_owned())
        .unwrap_or_default();
    move |e| text(e, "domain") == ascii && actions.contains(&text(e, "action").as_str())
}

fn count_eml(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                .count()
        })
        .unwrap_or(0)
}

/// The tour over the real HTTP API.
fn tour(base: &str, token: &str, dir: &Path) -> anyhow::Result<()> {
    let api = Api {
        base: base.to_owned(),
        auth: format!("Bearer {token}"),
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into(),
    };
    let ready = Instant::now();
    while api.call("GET", "/healthz", None, None).map(|(s, _)| s).ok() != Some(200) {
        if ready.elapsed() > Duration::from_secs(20) {
            bail!("regmail's API at {base} did not come up within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let t0 = jiff::Timestamp::now();
    let mut since = api.get("/v1/log?since=0&limit=1")?["next"]
        .as_u64()
        .unwrap_or(0);
    let domain = DomainName::parse(DOMAIN)?;
    let path = format!("/v1/domains/{}", enc(domain.as_str()));
    let wait = Duration::from_secs(30);

    println!("1. The panel creates a client (a person); the registrar does not know it yet:");
    api.post(
        "/v1/clients",
        &json!({
            "id": CLIENT,
            "registrant": {
                "type": "person", "fio_ru": "Иванов Иван Иванович", "fio_en": "Ivan I Ivanov",
                "passport": ["4500 123456", "выдан ОВД Тверского р-на г. Москвы 01.02.2003"],
                "birth_date": "1980-01-31",
                "postal_addr": ["101000, Москва, ул. Мясницкая, д. 1, кв. 2"],
                "phone": "+7 495 1234567", "email": "ivanov@example.ru"
            }
        }),
        None,
    )?;
    follow(&api, &mut since, t0, wait, |e| {
        text(e, "action") == "client.created"
    })?;

    println!(
        "\n2. It orders {DOMAIN} ({}), not paid yet:",
        domain.as_str()
    );
    api.post(
        "/v1/domains",
        &json!({
            "domain": DOMAIN, "client_id": CLIENT, "years": 1, "order_id": "1001",
            "nameservers": ["ns1.hosting.example", "ns2.hosting.example"], "paid": false
        }),
        Some("demo-order-1001"),
    )?;
    follow(
        &api,
        &mut since,
        t0,
        wait,
        domain_entry(&["domain.ordered"]),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "   => {}; request e-mails written: {} (nothing goes out before payment)",
        text(&api.get(&path)?, "status"),
        count_eml(&dir.join("outbox")) + count_eml(&dir.join("outbox/done"))
    );

    println!(
        "\n3. The order is paid. The client request goes out first, the domain request once the"
    );
    println!(
        "   sandbox has registered the client (evidence: the reply rule and how it was matched):"
    );
    api.post(&format!("{path}/payment"), &json!({}), None)?;
    let done = follow(
        &api,
        &mut since,
        t0,
        wait,
        domain_entry(&["domain.registered", "domain.error"]),
    )?;
    if text(&done, "action") != "domain.registered" {
        bail!("the registration failed: {}", text(&done, "message"));
    }
    let d = api.get(&path)?;
    let client = api.get(&format!("/v1/clients/{CLIENT}"))?;
    let first_expiry = text(&d, "expires");
    println!(
        "   => {DOMAIN} is {}, expires {first_expiry}; client {CLIENT} is {} as {}",
        text(&d, "status"),
        text(&client, "status"),
        text(&client, "handle")
    );

    println!(
        "\n4. The panel renews it for a year (a PROLONG request). The sandbox gave the new domain a"
    );
    println!(
        "   45-day first term, so it is inside R01's 60-day renewal window for .ru/.su/.рф already:"
    );
    api.post(&format!("{path}/renew"), &json!({"years": 1}), None)?;
    let done = follow(
        &api,
        &mut since,
        t0,
        wait,
        domain_entry(&["domain.renewed", "domain.error"]),
    )?;
    if text(&done, "action") != "domain.renewed" {
        bail!("the renewal failed: {}", text(&done, "message"));
    }
    let d = api.get(&path)?;
    println!(
        "   => {DOMAIN} is {} again; expiry {first_expiry} -> {}",
        text(&d, "status"),
        text(&d, "expires")
    );
    println!(
        "\nTour done in {:.1} s: {} request e-mails went to the sandbox (KOI8-R, 8bit, as R01 wants them).",
        started.elapsed().as_secs_f64(),
        count_eml(&dir.join("outbox/done"))
    );
    Ok(())
}

fn print_examples(base: &str, dir: &Path) {
    let token = dir.join("api-token");
    let puny = DomainName::parse(DOMAIN)
        .map(|d| d.as_str().to_owned())
        .unwrap_or_default();
    let host = base.trim_start_matches("http://");
    let files: PathBuf = dir.to_path_buf();
    println!(
        r#"
The API keeps running on {base} until Ctrl-C. Try, in another terminal:

  export REGMAIL_API_TOKEN=$(cat {token})
  H="Authorization: Bearer $REGMAIL_API_TOKEN"
  # the domain (status, phase, expiry), its action log, the whole log:
  curl -s {host}/v1/domains/{puny} -H "$H"
  curl -s {host}/v1/domains/{puny}/log -H "$H"
  curl -s "{host}/v1/log?since=0" -H "$H"
  # a second order, paid at once:
  curl -s {host}/v1/domains -H "$H" -H 'Idempotency-Key: order-1002' -d '{{
    "domain": "второй-пример.рф", "client_id": "{CLIENT}", "years": 1, "order_id": "1002",
    "nameservers": ["ns1.hosting.example", "ns2.hosting.example"], "paid": true}}'
  # the operator's CLI (it reads REGMAIL_API_TOKEN):
  cargo run -- --api {base} list
  cargo run -- --api {base} log {puny}
  # the requests as the sandbox received them, and its replies as regmail read them:
  ls {files}/outbox/done/ {files}/inbox/.Processed/cur/
"#,
        token = token.display(),
        files = files.display(),
    );
}
