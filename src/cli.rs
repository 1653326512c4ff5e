//! The `regmail` command line: `serve` and `check-config` for the daemon, and the operator's
//! commands, which talk to the running daemon over its API (sled's lock allows one process).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::config::{Config, TOKEN_ENV};

mod import;
mod init;
mod lifecycle;
mod log;
mod notices;
mod ops;
mod report;
mod rules;
pub mod table;

/// Orders domains from e-mail driven registrars (R01.RU) for hosting control panels.
#[derive(Debug, Parser)]
#[command(name = "regmail", version, about)]
pub struct Cli {
    /// Configuration file (default: embedded defaults; see systemd/regmail.toml).
    #[arg(long, global = true, env = "REGMAIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Base URL of the running daemon's API (default: from the configuration's api.listen).
    #[arg(long, global = true, env = "REGMAIL_API")]
    pub api: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve,
    /// Import an existing portfolio (clients with handles, Registered domains) from JSON lines
    /// or CSV; prints the rejected rows with their line numbers; exit 1 if any was rejected.
    Import {
        /// The file (`.csv` is read as CSV, anything else as JSON lines).
        file: PathBuf,
        /// csv or jsonl (default: by the file's extension).
        #[arg(long)]
        format: Option<String>,
    },
    /// Check the configuration: print every problem with its key; exit 1 if there is any.
    CheckConfig,
    /// Show one domain: status, phase, expiry, client, open request.
    Status {
        /// The domain (Unicode or punycode).
        domain: String,
    },
    /// Show the action log: of a domain, a client, a request, or all of it.
    Log {
        /// The domain.
        domain: Option<String>,
        /// A client's log instead.
        #[arg(long, conflicts_with_all = ["domain", "request"])]
        client: Option<String>,
        /// A request's log instead.
        #[arg(long, conflicts_with = "domain")]
        request: Option<String>,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Keep printing new entries as they come.
        #[arg(long, short)]
        follow: bool,
    },
    /// List domains.
    List {
        /// Only this status (AwaitingPayment, Registering, Registered, Renewing, Error, Cancelled,
        /// Expired, Deleted).
        #[arg(long)]
        status: Option<String>,
        /// Only this client's.
        #[arg(long)]
        client: Option<String>,
    },
    /// List requests in a state (e.g. TimedOut, SendUnknown, Rejected).
    Requests {
        /// The state.
        state: String,
    },
    /// Send a Rejected, TimedOut or SendUnknown request again (as a new request).
    Retry {
        /// The request id.
        request: String,
    },
    /// Settle a domain by hand without mailing the registrar (logged as the operator's act).
    Resolve {
        /// The domain.
        domain: String,
        /// registered or error.
        #[arg(long, value_parser = ["registered", "error"])]
        outcome: String,
        /// Expiry date (YYYY-MM-DD), with --outcome registered.
        #[arg(long)]
        expires: Option<String>,
        /// Why (goes into the action log).
        #[arg(long)]
        note: String,
    },
    /// Show a request e-mail as it would be sent now (password masked), without sending it.
    Render {
        /// The request id.
        #[arg(long, conflicts_with = "domain", required_unless_present = "domain")]
        request: Option<String>,
        /// The domain whose open request to show.
        #[arg(long)]
        domain: Option<String>,
    },
    /// List inbound messages (default: the unmatched queue).
    Inbox {
        /// Pending, Applied, Ignored, Unmatched, Quarantined, Dismissed, or all.
        #[arg(long, default_value = "Unmatched")]
        state: String,
    },
    /// Show one inbound message: its record, the headers that matter and the decoded text
    /// (charset and transfer encoding undone, secrets masked).
    Message {
        /// The message key (from `regmail inbox`).
        key: String,
        /// Print the message's exact bytes instead (secrets still masked, in every encoding).
        #[arg(long)]
        raw: bool,
    },
    /// Tie an unmatched, ignored or quarantined message to a request (the operator's decision).
    Assign {
        /// The message key.
        key: String,
        /// The request it answers.
        request: String,
        /// What it means, when no rule recognises it: acknowledged, completed or rejected.
        #[arg(long)]
        event: Option<String>,
        /// With --event completed: the handle.
        #[arg(long)]
        handle: Option<String>,
        /// With --event completed: the expiry date.
        #[arg(long)]
        expires: Option<String>,
        /// With --event acknowledged: the task id.
        #[arg(long)]
        task_id: Option<String>,
        /// With --event rejected: the registrar's reason.
        #[arg(long)]
        reason: Option<String>,
        /// Why (goes into the action log).
        #[arg(long)]
        note: String,
    },
    /// Set an unmatched message aside.
    Dismiss {
        /// The message key.
        key: String,
        /// Why.
        #[arg(long)]
        note: String,
    },
    /// Reply rules: test a message against them.
    Rules {
        /// What to do.
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Reload templates and reply rules in the running daemon (as SIGHUP does).
    Reload,
    /// The domain lifecycle: `preview --days N` shows what the scheduler will do and send.
    Lifecycle {
        /// What to do.
        #[command(subcommand)]
        action: lifecycle::LifecycleAction,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
    /// Run the registrar simulator (for rehearsals and tests; never the real registrar).
    Sandbox {
        /// The sandbox's configuration file (see README.md, "The sandbox").
        #[arg(long = "sandbox-config")]
        sandbox_config: PathBuf,
    },
    /// Run regmail and the sandbox together on embedded defaults, place a sample order and
    /// show its log; the API stays up for the README's curl examples.
    Demo {
        /// Where the demo keeps its store, mail directories and token.
        #[arg(long, default_value = "var/demo")]
        dir: PathBuf,
    },
    /// Notices, deliveries, users, webhooks (src/cli/notices.rs).
    #[command(flatten)]
    Notice(notices::NoticeCommand),
    /// Cancel an order that has not reached the registrar.
    Cancel {
        /// The domain.
        domain: String,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Mark an order paid: its request goes out.
    Pay {
        /// The domain.
        domain: String,
    },
    /// Renew a domain (a PROLONG request; R01 takes it from 60 days before expiry).
    Renew {
        /// The domain.
        domain: String,
        /// Years to add.
        #[arg(long, default_value_t = 1)]
        years: u8,
    },
    /// Record a registrar answer learned elsewhere (the partner panel, a phone call).
    Outcome {
        /// The request id.
        request: String,
        /// acknowledged, completed or rejected.
        #[arg(long, value_parser = ["acknowledged", "completed", "rejected"])]
        event: String,
        /// With completed: the handle (client requests).
        #[arg(long)]
        handle: Option<String>,
        /// With completed: the expiry date, YYYY-MM-DD (domain requests).
        #[arg(long)]
        expires: Option<String>,
        /// With acknowledged: the registrar's task id.
        #[arg(long)]
        task_id: Option<String>,
        /// With rejected: the registrar's reason.
        #[arg(long)]
        reason: Option<String>,
        /// Why (goes into the action log).
        #[arg(long)]
        note: String,
    },
    /// Show or correct a client.
    Client {
        /// What to do.
        #[command(subcommand)]
        action: ops::ClientAction,
    },
    /// Reseller reports: expiring, expired, deleted (src/cli/report.rs).
    Report {
        /// Which report.
        #[command(subcommand)]
        kind: report::ReportKind,
    },
    /// Create the secret files the systemd unit loads as credentials (API token, registrar
    /// password; passwords are read from standard input), mode 0600.
    Init(init::InitArgs),
}

/// `regmail rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesAction {
    /// Show which rule matches a message, its captures, and the request it would correlate to.
    Test {
        /// An .eml file.
        file: PathBuf,
        /// Test this rules file (the one being edited) instead of the daemon's loaded rules;
        /// runs here, without the daemon.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    // One TLS provider for the whole process (dependency-notes: rustls panics at run time if
    // two are compiled in and none was chosen).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Every file regmail writes is private to its user, whatever umask it was started with.
    crate::files::private_umask();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `regmail log | head`: the reader has gone; end quietly.
        Err(e) if broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("regmail: {e:#}");
            1
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::CheckConfig => {
            let out = &mut std::io::stdout();
            let config = match Config::load(cli.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    for p in &e.0 {
                        writeln!(out, "error: {p}")?;
                    }
                    return Ok(1);
                }
            };
            // Past the file's syntax: every check `serve` runs, the same function.
            let report = crate::preflight::check(&config);
            for f in &report.findings {
                writeln!(out, "{f}")?;
            }
            let from = config
                .source
                .as_ref()
                .map_or("embedded defaults".into(), |p| p.display().to_string());
            let warnings = report.warnings().count();
            if report.ok() {
                writeln!(out, "configuration OK ({from}), {warnings} warning(s)")?;
                return Ok(0);
            }
            writeln!(
                out,
                "configuration has {} error(s) ({from}); serve would refuse to start",
                report.errors().count()
            )?;
            return Ok(1);
        }
        Command::Sandbox { sandbox_config } => {
            crate::logging::init_tracing("info");
            crate::sandbox::main(sandbox_config)?;
            return Ok(0);
        }
        Command::Demo { dir } => {
            crate::demo::main(dir)?;
            return Ok(0);
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "regmail", &mut std::io::stdout());
            return Ok(0);
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            return Ok(0);
        }
        Command::Init(a) => {
            init::run(a, cli.config.as_deref(), &mut std::io::stdout())?;
            return Ok(0);
        }
        Command::Rules {
            action:
                RulesAction::Test {
                    file,
                    rules: Some(rules_file),
                },
        } => {
            let config = Config::load(cli.config.as_deref())?;
            let raw =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let v = rules::evaluate(&config, rules_file, &raw)?;
            let out = &mut std::io::stdout();
            if cli.json {
                print_json(out, &v)?;
            } else {
                rules::print(out, &v)?;
            }
            return Ok(0);
        }
        Command::Serve => {
            let config = Config::load(cli.config.as_deref())?;
            crate::logging::init_tracing(&config.log_filter);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(crate::daemon::run(config))?;
            return Ok(0);
        }
        _ => {}
    }
    let client = ApiClient::new(&cli)?;
    let out = &mut std::io::stdout();
    match cli.command {
        Command::Notice(cmd) => notices::run(cmd, &client, cli.json, out)?,
        Command::Report { kind } => report::run(kind, &client, cli.json, out)?,
        Command::Lifecycle { action } => lifecycle::run(action, &client, cli.json, out)?,
        Command::Status { domain } => {
            let v = client.get(&format!("/v1/domains/{}", enc(&domain)))?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                print_domain(out, &v)?;
            }
        }
        Command::List {
            status,
            client: who,
        } => {
            let mut q = Vec::new();
            if let Some(s) = status {
                q.push(format!("status={}", enc(&s)));
            }
            if let Some(c) = who {
                q.push(format!("client={}", enc(&c)));
            }
            q.push("limit=1000".into());
            let v = client.get(&format!("/v1/domains?{}", q.join("&")))?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                let rows: Vec<Vec<String>> = items(&v, "domains")
                    .iter()
                    .map(|d| {
                        vec![
                            s(d, "domain_unicode"),
                            s(d, "status"),
                            s(d, "phase"),
                            s(d, "expires"),
                            s(d, "client_id"),
                            s(d, "last_error"),
                        ]
                    })
                    .collect();
                table(
                    out,
                    &[
                        "DOMAIN",
                        "STATUS",
                        "PHASE",
                        "EXPIRES",
                        "CLIENT",
                        "LAST ERROR",
                    ],
                    &rows,
                )?;
            }
        }
        Command::Requests { state } => {
            let v = client.get(&format!("/v1/requests?state={}&limit=1000", enc(&state)))?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                let rows: Vec<Vec<String>> = items(&v, "requests")
                    .iter()
                    .map(|r| {
                        vec![
                            s(r, "id"),
                            s(r, "kind"),
                            s(r, "domain"),
                            s(r, "client_id"),
                            s(r, "state"),
                            s(r, "last_error"),
                        ]
                    })
                    .collect();
                table(
                    out,
                    &["REQUEST", "KIND", "DOMAIN", "CLIENT", "STATE", "LAST ERROR"],
                    &rows,
                )?;
            }
        }
        Command::Log {
            domain,
            client: who,
            request,
            since,
            follow,
        } => log::run(
            &client,
            out,
            log::LogArgs {
                domain,
                client: who,
                request,
                since,
                follow,
                json: cli.json,
            },
        )?,
        Command::Retry { request } => {
            let v = client.post(&format!("/v1/requests/{}/retry", enc(&request)), &json!({}))?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                let new = v.get("new_request").map(|r| s(r, "id")).unwrap_or_default();
                writeln!(out, "request {request} retried as {new}")?;
            }
        }
        Command::Resolve {
            domain,
            outcome,
            expires,
            note,
        } => {
            let mut body = json!({ "outcome": outcome, "note": note });
            if let Some(e) = expires {
                body["expires"] = json!(e);
            }
            let v = client.post(&format!("/v1/domains/{}/resolve", enc(&domain)), &body)?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                print_domain(out, &v)?;
            }
        }
        Command::Render { request, domain } => {
            let id = match (request, domain) {
                (Some(r), _) => r,
                (None, Some(d)) => ops::request_of_domain(&client, &d)?,
                (None, None) => bail!("give --request or --domain"),
            };
            let text = client.get_text(&format!("/v1/requests/{}/render", enc(&id)))?;
            write!(out, "{text}")?;
        }
        Command::Inbox { state } => {
            let path = if state.eq_ignore_ascii_case("all") {
                "/v1/inbox".to_owned()
            } else {
                format!("/v1/inbox?state={}", enc(&state))
            };
            let v = client.get(&path)?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                let rows: Vec<Vec<String>> = items(&v, "messages")
                    .iter()
                    .map(|m| {
                        vec![
                            s(m, "key"),
                            s(m, "state"),
                            s(m, "from"),
                            s(m, "subject"),
                            s(m, "reason"),
                        ]
                    })
                    .collect();
                table(out, &["KEY", "STATE", "FROM", "SUBJECT", "REASON"], &rows)?;
            }
        }
        Command::Message { key, raw } => {
            let q = if raw { "&raw=1" } else { "" };
            let v = client.get(&format!("/v1/inbox/message?key={}{q}", enc(&key)))?;
            if cli.json {
                print_json(out, &v)?;
            } else if raw {
                let bytes = crate::redact::base64_decode(s(&v, "raw_base64").as_bytes())
                    .ok_or_else(|| {
                        anyhow::anyhow!("the daemon sent raw_base64 that is not base64")
                    })?;
                out.write_all(&bytes)?;
            } else {
                let m = &v["message"];
                for k in ["key", "state", "reason", "request", "rule", "received"] {
                    writeln!(out, "{k:<11} {}", s(m, k))?;
                }
                writeln!(out)?;
                for h in items(&v, "headers") {
                    let name = h.get(0).and_then(Value::as_str).unwrap_or_default();
                    let value = h.get(1).and_then(Value::as_str).unwrap_or_default();
                    writeln!(out, "{name}: {value}")?;
                }
                writeln!(out, "\n{}", s(&v, "text"))?;
            }
        }
        Command::Assign {
            key,
            request,
            event,
            handle,
            expires,
            task_id,
            reason,
            note,
        } => {
            let mut body = json!({ "key": key, "request_id": request, "note": note });
            for (k, val) in [
                ("event", event),
                ("handle", handle),
                ("expires", expires),
                ("task_id", task_id),
                ("reason", reason),
            ] {
                if let Some(x) = val {
                    body[k] = json!(x);
                }
            }
            let v = client.post("/v1/inbox/assign", &body)?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                writeln!(
                    out,
                    "{}: {}",
                    s(&v["message"], "state"),
                    s(&v["message"], "reason")
                )?;
            }
        }
        Command::Dismiss { key, note } => {
            let v = client.post("/v1/inbox/dismiss", &json!({ "key": key, "note": note }))?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                writeln!(
                    out,
                    "{}: {}",
                    s(&v["message"], "state"),
                    s(&v["message"], "reason")
                )?;
            }
        }
        Command::Rules {
            action: RulesAction::Test { file, .. },
        } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let v = client.post_raw("/v1/rules/test", raw)?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                for k in [
                    "outcome",
                    "decision",
                    "reason",
                    "rule",
                    "event",
                    "request",
                    "correlation",
                    "from",
                    "subject",
                ] {
                    writeln!(out, "{k:<12} {}", s(&v, k))?;
                }
                if let Some(c) = v.get("captures").filter(|c| !c.is_null()) {
                    writeln!(out, "captures     {c}")?;
                }
                for r in items(&v, "rejected_captures") {
                    writeln!(
                        out,
                        "skipped      rule {} capture {} = {:?}: {}",
                        s(&r, "rule"),
                        s(&r, "capture"),
                        s(&r, "value"),
                        s(&r, "reason")
                    )?;
                }
            }
        }
        Command::Import { file, format } => {
            return import::run(cli.json, &client, &file, format.as_deref(), out);
        }
        Command::Reload => {
            let v = client.post("/v1/reload", &json!({}))?;
            writeln!(out, "{}", s(&v, "message"))?;
        }
        Command::Cancel { domain, note } => {
            let v = client.post(
                &format!("/v1/domains/{}/cancel", enc(&domain)),
                &json!({ "note": note }),
            )?;
            if cli.json {
                print_json(out, &v)?;
            } else {
                print_domain(out, &v)?;
            }
        }
        Command::Pay { domain } => ops::pay(&client, out, cli.json, &domain)?,
        Command::Renew { domain, years } => ops::renew(&client, out, cli.json, &domain, years)?,
        Command::Outcome {
            request,
            event,
            handle,
            expires,
            task_id,
            reason,
            note,
        } => ops::outcome(
            &client,
            out,
            cli.json,
            ops::OutcomeArgs {
                request,
                event,
                handle,
                expires,
                task_id,
                reason,
                note,
            },
        )?,
        Command::Client { action } => ops::client(&client, out, cli.json, action)?,
        Command::Serve
        | Command::Init(_)
        | Command::CheckConfig
        | Command::Completions { .. }
        | Command::Man
        | Command::Sandbox { .. }
        | Command::Demo { .. } => {}
    }
    Ok(0)
}

/// A small blocking client of the daemon's API.
struct ApiClient {
    base: String,
    auth: String,
    agent: ureq::Agent,
    /// Which token was sent and where it came from (never the token itself).
    token_from: String,
}

impl ApiClient {
    fn new(cli: &Cli) -> anyhow::Result<Self> {
        let config = Config::load(cli.config.as_deref())?;
        let base = match &cli.api {
            Some(u) if !u.starts_with("http://") && !u.starts_with("https://") => {
                bail!("--api {u:?} has no scheme: add http://, e.g. --api http://{u}")
            }
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let mut addr = config.api.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            }
        };
        let token_from = match &config.api.token {
            crate::config::TokenSource::Env => format!("the environment variable {TOKEN_ENV}"),
            crate::config::TokenSource::File(p) => format!("the file {}", p.display()),
            crate::config::TokenSource::Generated(p) => format!(
                "the file {} (the token the daemon generated; the configuration sets none)",
                p.display()
            ),
        };
        let token = match &config.api.token {
            crate::config::TokenSource::Generated(p) if !p.exists() => {
                bail!(
                    "no API token: set {TOKEN_ENV}, or give --config with api.token_file (the daemon's generated token lives in {})",
                    p.display()
                )
            }
            _ => config.load_token().map_err(anyhow::Error::msg)?,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(ApiClient {
            base,
            auth: format!("Bearer {}", token.expose_secret()),
            agent,
            token_from,
        })
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .call()
            .with_context(|| self.unreachable())?;
        self.answer(resp)
    }

    fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let mut resp = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .call()
            .with_context(|| self.unreachable())?;
        if resp.status().is_success() {
            return Ok(resp.body_mut().read_to_string()?);
        }
        self.answer(resp).map(|v| v.to_string())
    }

    fn post_raw(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let resp = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .header("Content-Type", "message/rfc822")
            .send(&body[..])
            .with_context(|| self.unreachable())?;
        self.answer(resp)
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .send_json(body)
            .with_context(|| self.unreachable())?;
        self.answer(resp)
    }

    fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .agent
            .put(&format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .send_json(body)
            .with_context(|| self.unreachable())?;
        self.answer(resp)
    }

    /// What to say when the daemon does not answer at all.
    fn unreachable(&self) -> String {
        format!(
            "cannot reach the daemon at {} (is `regmail serve` running?)",
            self.base
        )
    }

    fn answer(&self, resp: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
        if resp.status() == ureq::http::StatusCode::UNAUTHORIZED {
            bail!(
                "the daemon at {} refused the API token from {}: give the daemon's token (its api.token_file, LoadCredential=api-token, or {TOKEN_ENV}), e.g. `--config /etc/regmail/regmail.toml` or `export {TOKEN_ENV}=$(cat /etc/regmail/api-token)`",
                self.base,
                self.token_from
            );
        }
        Self::answer_body(resp)
    }

    fn answer_body(mut resp: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
        let status = resp.status();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        let err = &v["error"];
        let field = err["field"].as_str().unwrap_or_default();
        let message = err["message"].as_str().unwrap_or("no details");
        if field.is_empty() {
            bail!("{status}: {message}")
        }
        bail!("{status}: {field}: {message}")
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 §2.1: unreserved characters stay).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(x)) => x.clone(),
        Some(other) => other.to_string(),
    }
}

fn items(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn print_json(out: &mut impl Write, v: &Value) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn print_domain(out: &mut impl Write, d: &Value) -> anyhow::Result<()> {
    let name = s(d, "domain");
    let uni = s(d, "domain_unicode");
    let shown = if uni != name {
        format!("{uni} ({name})")
    } else {
        name
    };
    writeln!(out, "domain:   {shown}")?;
    writeln!(out, "status:   {} / {}", s(d, "status"), s(d, "phase"))?;
    writeln!(out, "client:   {}", s(d, "client_id"))?;
    writeln!(
        out,
        "years:    {}   paid: {}   auto-renew: {}",
        s(d, "years"),
        s(d, "paid"),
        s(d, "auto_renew")
    )?;
    writeln!(out, "expires:  {}", s(d, "expires"))?;
    if !s(d, "grace_ends").is_empty() {
        writeln!(out, "grace:    renewable until {}", s(d, "grace_ends"))?;
    }
    if !s(d, "deleted_on").is_empty() {
        writeln!(out, "deleted:  {}", s(d, "deleted_on"))?;
    }
    if let Some(r) = d.get("open_request").filter(|r| !r.is_null()) {
        writeln!(
            out,
            "request:  {} {} {} (attempts {})",
            s(r, "id"),
            s(r, "kind"),
            s(r, "state"),
            s(r, "attempts")
        )?;
    }
    let err = s(d, "last_error");
    if !err.is_empty() {
        writeln!(out, "error:    {err}")?;
    }
    Ok(())
}

/// A table fitted to the terminal (see [`table::Table`]).
fn table(out: &mut impl Write, head: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    table::Table::new(head, table::width()).print(out, rows)?;
    Ok(())
}

/// True when the error is a write to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
