//! Logging set-up: journald under systemd, plain text on stderr otherwise.

/// Sets up logging: `RUST_LOG` wins over the configured filter.
pub fn init_tracing(filter: &str) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // async-imap traces every command it writes, LOGIN and its password included: never below
    // debug for it, whatever the filter says (rule 5: no secret in any log).
    let filter = match "async_imap=debug".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    // sled traces every key and batch it writes (stored messages, with whatever secret a reply
    // quoted), hyper traces raw request bytes: never below debug for them either.
    // (Only when something asks for trace: a directive would otherwise raise them to debug.)
    let filter = if filter.max_level_hint() == Some(tracing_subscriber::filter::LevelFilter::TRACE)
    {
        ["sled=debug", "hyper=debug", "hyper_util=debug"]
            .iter()
            .filter_map(|d| d.parse().ok())
            .fold(filter, |f, d| f.add_directive(d))
    } else {
        filter
    };
    use std::io::IsTerminal;
    // Under systemd (JOURNAL_STREAM set, systemd.exec(5)) log with native journald fields;
    // otherwise plain text on stderr. Never both.
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_syslog_identifier("regmail".into()))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
