//! `regmail serve`: opens the store, serves the API, runs the outbox worker, the reply intake
//! and the scheduler; reloads templates and reply rules on SIGHUP (a broken reload is refused
//! and the old settings stay); stops cleanly on SIGTERM or SIGINT (flushing the store).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};

use crate::api::{self, AppState};
use crate::config::{Config, SourceConfig};
use crate::health::Health;
use crate::inbound::classify::ClassifyContext;
use crate::inbound::imap::{ImapSettings, ImapSource};
use crate::inbound::intake::Intake;
use crate::inbound::parse::ParseLimits;
use crate::inbound::source::{MaildirSource, Processor, SourceHealth};
use crate::outbound::worker::{Backoff, OutboxWorker};
use crate::reload::Reloadable;
use crate::scheduler;
use crate::store::Store;

fn duration(d: jiff::SignedDuration, default: Duration) -> Duration {
    Duration::try_from(d).unwrap_or(default)
}

/// Runs the daemon until a stop signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // The same checks as `regmail check-config`: refuse with every error, log every warning.
    let preflight = crate::preflight::check(&config);
    for w in preflight.warnings() {
        tracing::warn!(target: "regmail::preflight", key = %w.key, "configuration: {}", w.message);
    }
    if !preflight.ok() {
        let errors: Vec<String> = preflight
            .errors()
            .map(|e| format!("  {}: {}", e.key, e.message))
            .collect();
        anyhow::bail!(
            "the configuration cannot be used (regmail check-config says the same):\n{}",
            errors.join("\n")
        );
    }
    // Room for the API's connection cap below the descriptor limit (crate::api::server).
    let nofile = crate::files::raise_nofile_limit();
    let (max_connections, max_waiting) =
        api::server::connection_cap(config.api.max_connections, nofile);
    let api_limits = api::server::ServerLimits {
        max_connections,
        max_waiting,
        header_read_timeout: duration(config.api.header_read_timeout, Duration::from_secs(10)),
        idle_timeout: duration(config.api.idle_timeout, Duration::from_secs(60)),
    };
    let path = config.store.path.clone();
    let cache = config.store.cache_capacity_mb << 20;
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the store directory {}", parent.display()))?;
    }
    let store = tokio::task::spawn_blocking(move || Store::open(&path, cache)).await??;
    // A store or outbox made before the umask was set (an older version, a copy by hand) is
    // made private too: sled's files included.
    crate::files::make_private(&config.store.path)
        .with_context(|| format!("cannot make {} private", config.store.path.display()))?;
    if let crate::config::TransportConfig::Dir(d) = &config.outbound.transport {
        // The outbox worker reports a directory it cannot use; here only a warning.
        if let Err(e) = crate::files::make_private(d) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot make the outbox directory private");
        }
    }
    let store = Arc::new(store);
    let token = config.load_token().map_err(anyhow::Error::msg)?;
    let setup = config.outbound_setup().map_err(anyhow::Error::msg)?;
    let rules = config.load_rules().map_err(anyhow::Error::msg)?;
    let transport = config.transport().map_err(anyhow::Error::msg)?;
    let policy = config.policy(&setup.profile);
    let charset = setup.settings.charset;
    let callback = setup.settings.callback.to_string();
    let hub = crate::notices::NoticeHub::new(
        crate::notices::templates::Templates::load(config.notices.templates_dir.as_deref())
            .map_err(|e| anyhow::anyhow!("notice templates: {e}"))?,
    );
    store.set_operators(notice_operators(&config));
    let reloadable = Reloadable {
        config_path: config.source.clone(),
        rules: Arc::new(RwLock::new(Arc::new(rules))),
        outbound: Arc::new(RwLock::new(Arc::new(setup))),
        notice_templates: Some(hub.templates.clone()),
    };
    let listener = api::server::bind(config.api.listen)
        .with_context(|| format!("cannot listen on {} (api.listen)", config.api.listen))?;

    let wake = Arc::new(Notify::new());
    let health = Arc::new(Health::default());
    // One redactor for every view of stored mail and for what the action log keeps of it.
    let redactor = Arc::new(crate::redact::Redactor::new(
        config
            .secrets()
            .iter()
            .map(|s| s.expose_secret().to_owned()),
    ));
    let intake = Arc::new(Intake {
        store: store.clone(),
        rules: reloadable.rules.clone(),
        policy: policy.clone(),
        classify: ClassifyContext::new(
            &callback,
            &config.registrar.message_id_host,
            &config.registrar.senders,
        )
        .with_trust(config.trust.clone()),
        limits: ParseLimits {
            max_size: config.inbound.max_message_bytes as usize,
            max_depth: config.inbound.max_nesting,
            max_headers: config.inbound.max_header_fields,
            max_header_bytes: config.inbound.max_header_bytes,
            ..ParseLimits::default()
        },
        fallback: charset.encoding(),
        outbox_wake: Some(wake.clone()),
        health: Some(health.clone()),
        redactor: redactor.clone(),
    });
    // Messages stored before a crash but not processed yet come first.
    let pending = {
        let i = intake.clone();
        tokio::task::spawn_blocking(move || i.process_pending())
            .await?
            .map_err(anyhow::Error::msg)?
    };
    if pending > 0 {
        tracing::info!(pending, "processed messages left from before the restart");
    }

    // Allowances: each worker's longest legitimate pause, with margin.
    let smtp_timeout = duration(config.smtp.timeout, Duration::from_secs(30));
    let intake_poll = match &config.inbound.source {
        SourceConfig::Maildir(_) => duration(config.inbound.poll_interval, Duration::from_secs(1)),
        SourceConfig::Imap => duration(config.imap.poll_interval, Duration::from_secs(60)),
    };
    let imap_timeout = duration(config.imap.command_timeout, Duration::from_secs(60));
    let api_beat = health.worker("api", Duration::from_secs(30));
    let outbox_beat = health.worker("outbox", smtp_timeout * 8 + Duration::from_secs(10));
    let intake_beat = health.worker(
        "intake",
        intake_poll + imap_timeout * 4 + Duration::from_secs(10),
    );
    let scheduler_beat = health.worker("scheduler", Duration::from_secs(10));
    let source_health = Arc::new(SourceHealth::new(health.clone(), intake_beat));
    let mut app = AppState::new(
        store.clone(),
        policy.clone(),
        &token,
        config.api.max_body_bytes,
    );
    app.charset = charset;
    app.outbox_wake = wake.clone();
    app.outbound = Some(reloadable.outbound.clone());
    app.intake = Some(intake.clone());
    app.reloadable = Some(reloadable.clone());
    app.health = health.clone();
    app.source_health = Some(source_health.clone());
    app.source_poll = intake_poll;
    app.redactor = redactor;
    app.notices = Some(hub.clone());
    app.report_tz = config.reports.timezone.clone();
    let state = Arc::new(app);
    drop(token);

    let (stop_tx, stop_rx) = watch::channel(false);
    let sched = tokio::spawn(scheduler::run(
        store.clone(),
        policy.clone(),
        Duration::from_secs(1),
        config.auto_renew,
        scheduler_beat,
        stop_rx.clone(),
    ));
    let retention = tokio::spawn(scheduler::run_retention(
        store.clone(),
        policy.clone(),
        config.inbound.keep_raw_days,
        stop_rx.clone(),
    ));
    let backoff = Backoff {
        initial: duration(config.outbound.retry_initial, Duration::from_secs(5)),
        max: duration(config.outbound.retry_max, Duration::from_secs(600)),
    };
    let transport_name = transport.name();
    let worker = OutboxWorker::new(
        store.clone(),
        reloadable.outbound.clone(),
        transport,
        policy,
        wake,
        backoff,
    )
    .with_health(health.clone(), outbox_beat);
    let outbox = tokio::spawn(worker.run(stop_rx.clone()));
    let notice_email = tokio::spawn(
        crate::channels::email::EmailChannel {
            store: store.clone(),
            hub: hub.clone(),
            transport: notice_transport(&config)?,
            config: config.notices.clone(),
            beat: Some(health.worker("notice-email", smtp_timeout * 8 + Duration::from_secs(10))),
        }
        .run(stop_rx.clone()),
    );
    let notice_webhook = tokio::spawn(
        crate::channels::webhook::WebhookChannel::new(
            store.clone(),
            hub.clone(),
            config.notices.clone(),
            Some(health.worker(
                "notice-webhook",
                config.notices.webhook_timeout * 40 + Duration::from_secs(10),
            )),
        )
        .run(stop_rx.clone()),
    );
    // The daily report e-mail, when `[reports] recipients` names someone (src/reports/mail.rs).
    let reports = if config.reports.recipients.is_empty() {
        None
    } else {
        let mailer = crate::reports::mail::ReportMailer {
            store: store.clone(),
            config: config.reports.clone(),
            transport: crate::reports::mail::transport(&config).map_err(anyhow::Error::msg)?,
            retry: config.notices.email_schedule.clone(),
        };
        Some(tokio::spawn(scheduler::run_reports(
            mailer,
            Duration::from_secs(1),
            stop_rx.clone(),
        )))
    };
    let processor: Arc<dyn Processor> = intake.clone();
    let source_name;
    let source = match &config.inbound.source {
        SourceConfig::Maildir(dir) => {
            source_name = format!("maildir {}", dir.display());
            let src = MaildirSource {
                dir: dir.clone(),
                store: store.clone(),
                processor,
                max_message_bytes: config.inbound.max_message_bytes,
                poll_interval: duration(config.inbound.poll_interval, Duration::from_secs(1)),
                health: source_health.clone(),
            };
            tokio::spawn(src.run(stop_rx.clone()))
        }
        SourceConfig::Imap => {
            let im = &config.imap;
            let password = match &im.password_file {
                Some(p) => crate::config::read_secret_file(p, "imap.password_file")
                    .map_err(anyhow::Error::msg)?,
                None => {
                    anyhow::bail!("imap.password_file is required with inbound.source = \"imap\"")
                }
            };
            source_name = format!("imap {}:{}/{}", im.host, im.port, im.mailbox);
            let src = ImapSource {
                settings: ImapSettings {
                    host: im.host.clone(),
                    port: im.port,
                    tls: im.tls,
                    tls_server_name: im.tls_server_name.clone(),
                    ca_file: im.ca_file.clone(),
                    username: im.username.clone().unwrap_or_else(|| callback.clone()),
                    password,
                    mailbox: im.mailbox.clone(),
                    processed_mailbox: im.processed_mailbox.clone(),
                    idle: im.idle,
                    poll_interval: duration(im.poll_interval, Duration::from_secs(60)),
                    command_timeout: duration(im.command_timeout, Duration::from_secs(60)),
                    max_message_bytes: u32::try_from(config.inbound.max_message_bytes)
                        .unwrap_or(u32::MAX),
                },
                store: store.clone(),
                processor,
                health: source_health.clone(),
            };
            tokio::spawn(src.run(stop_rx.clone()))
        }
    };
    tracing::info!(
        listen = %config.api.listen,
        store = %config.store.path.display(),
        transport = transport_name,
        source = %source_name,
        descriptors = nofile,
        max_connections = api_limits.max_connections,
        config = %config.source.as_ref().map_or_else(|| "embedded defaults".to_owned(), |p| p.display().to_string()),
        "regmail is serving"
    );
    let server = tokio::spawn(api::server::serve(
        listener,
        api::router(state),
        api_limits,
        stop_rx.clone(),
    ));
    let pinger = tokio::spawn(api_pinger(config.api.listen, api_beat, stop_rx.clone()));
    // systemd: READY=1 now that the store is open and the API listens (sd_notify(3)).
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let notifier = tokio::spawn(notify_loop(store.clone(), health.clone(), stop_rx.clone()));

    let signal = wait_for_stop_signal(&reloadable).await?;
    tracing::info!(signal, "stopping");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = sched.await;
    let _ = retention.await;
    if let Some(r) = reports {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    let _ = pinger.await;
    let _ = notifier.await;
    // The workers finish the message in hand; a bound keeps shutdown bounded.
    for (name, task) in [
        ("outbox worker", outbox),
        ("reply source", source),
        ("notice e-mail", notice_email),
        ("notice webhooks", notice_webhook),
    ] {
        if tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
        {
            tracing::warn!(
                worker = name,
                "did not stop in time; its message stays queued and is redone at the next start"
            );
        }
    }
    let flush_store = store.clone();
    tokio::task::spawn_blocking(move || flush_store.flush()).await??;
    tracing::info!("stopped; store flushed");
    Ok(())
}

/// The notice e-mails' transport: the requests' one, except that the `dir` transport writes
/// notices into its `notices/` subdirectory, apart from the requests a registrar (or the
/// sandbox) reads.
fn notice_transport(config: &Config) -> anyhow::Result<crate::outbound::Transport> {
    Ok(match config.transport().map_err(anyhow::Error::msg)? {
        crate::outbound::Transport::Dir(d) => crate::outbound::Transport::Dir(d.join("notices")),
        t => t,
    })
}

/// The operators of `[notices] operators`, for operator notices.
fn notice_operators(config: &Config) -> Vec<crate::notices::model::Operator> {
    let language = crate::notices::model::Language::parse(&config.notices.operator_language)
        .unwrap_or(crate::notices::model::Language::En);
    config
        .notices
        .operators
        .iter()
        .map(|e| crate::notices::model::Operator {
            email: e.clone(),
            language,
        })
        .collect()
}

/// Proves the API serves: a real HTTP request to /healthz every 5 s; each answer is a beat.
async fn api_pinger(
    listen: std::net::SocketAddr,
    beat: Arc<crate::health::Worker>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    loop {
        let probe = async {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).await.ok()?;
            buf.starts_with(b"HTTP/1.1 200").then_some(())
        };
        if let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(5), probe).await {
            beat.beat();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Tells systemd how things stand: STATUS= with the queue depths every few seconds, and
/// WATCHDOG=1 only while every worker is alive (a stuck one gets the daemon restarted).
async fn notify_loop(store: Arc<Store>, health: Arc<Health>, mut stop: watch::Receiver<bool>) {
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 2).min(Duration::from_secs(5))
    });
    let mut was_stuck = false;
    loop {
        let stuck = health.stuck(jiff::Timestamp::now());
        if stuck.is_empty() {
            if watchdog.is_some() {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            if was_stuck {
                tracing::info!("every worker is alive again");
            }
            was_stuck = false;
        } else if !was_stuck {
            tracing::error!(stuck = %stuck.join(", "), "a worker is stuck; WATCHDOG=1 is withheld so systemd restarts regmail");
            was_stuck = true;
        }
        let s = store.clone();
        if let Ok(Ok(c)) = tokio::task::spawn_blocking(move || s.counts()).await {
            let status = format!(
                "outbox {}, awaiting reply {}, unmatched {}",
                c.outbox, c.awaiting_reply, c.unmatched
            );
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Waits for SIGTERM or SIGINT; reloads on SIGHUP meanwhile.
async fn wait_for_stop_signal(reloadable: &Reloadable) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => {
                let r = reloadable.clone();
                match tokio::task::spawn_blocking(move || r.reload()).await {
                    Ok(Ok(msg)) => tracing::info!(%msg, "SIGHUP"),
                    Ok(Err(e)) => tracing::error!(error = %e, "SIGHUP: reload refused; the old templates and rules stay in force"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload task failed"),
                }
            }
        }
    }
}
