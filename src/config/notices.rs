//! `[notices]`: the notice engine (issue 10). Every key optional; see systemd/regmail.toml.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Reader;

/// `[notices]` settings.
#[derive(Debug, Clone)]
pub struct NoticesConfig {
    /// From of notice e-mails (default: `notices@<message_id_host>`).
    pub from: String,
    /// Host part of notice Message-IDs (default: `[registrar] message_id_host`).
    pub message_id_host: String,
    /// Base URL under which regmail's API is reachable from recipients' mail clients, for the
    /// one-click unsubscribe links (`<public_url>/unsubscribe/<token>`).
    pub public_url: String,
    /// A directory overriding the shipped notice templates (`en/`, `ru/`).
    pub templates_dir: Option<PathBuf>,
    /// The hosting company's operators (e-mail addresses) for operator notices.
    pub operators: Vec<String>,
    /// Language of operator notices.
    pub operator_language: String,
    /// Webhook retry schedule: the wait before each retry (Svix's by default).
    pub webhook_schedule: Vec<Duration>,
    /// Total time allowed for one webhook attempt (success is a 2xx within it).
    pub webhook_timeout: Duration,
    /// An endpoint failing this long without a success is disabled.
    pub webhook_disable_after: Duration,
    /// E-mail retry schedule for transient failures.
    pub email_schedule: Vec<Duration>,
}

fn secs(d: &[u64]) -> Vec<Duration> {
    d.iter().map(|s| Duration::from_secs(*s)).collect()
}

impl NoticesConfig {
    /// Svix's schedule, also the issue's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    pub fn default_webhook_schedule() -> Vec<Duration> {
        secs(&[5, 300, 1800, 7200, 18000, 36000, 36000])
    }
}

fn list(r: &mut Reader, n: &toml::Table, key: &str) -> Option<Vec<String>> {
    match n.get(key)? {
        toml::Value::Array(a) => {
            let mut out = Vec::new();
            for v in a {
                match v.as_str() {
                    Some(s) => out.push(s.to_owned()),
                    None => r.problem(
                        &format!("notices.{key}"),
                        "must be a list of strings".into(),
                    ),
                }
            }
            Some(out)
        }
        _ => {
            r.problem(
                &format!("notices.{key}"),
                "must be a list of strings".into(),
            );
            None
        }
    }
}

fn durations(r: &mut Reader, n: &toml::Table, key: &str, default: Vec<Duration>) -> Vec<Duration> {
    match list(r, n, key) {
        None => default,
        Some(v) if v.is_empty() => {
            r.problem(&format!("notices.{key}"), "must not be empty".into());
            default
        }
        Some(v) => {
            let mut out = Vec::new();
            for s in v {
                match s
                    .parse::<jiff::SignedDuration>()
                    .ok()
                    .and_then(|d| Duration::try_from(d).ok())
                {
                    Some(d) => out.push(d),
                    None => r.problem(
                        &format!("notices.{key}"),
                        format!("{s:?} is not a duration such as \"5m\" or \"100ms\""),
                    ),
                }
            }
            out
        }
    }
}

pub(super) fn read(
    r: &mut Reader,
    root: &toml::Table,
    base: &Path,
    listen: std::net::SocketAddr,
    host: &str,
) -> NoticesConfig {
    let n = r.section(
        root,
        "notices",
        &[
            "from",
            "message_id_host",
            "public_url",
            "templates_dir",
            "operators",
            "operator_language",
            "webhook_schedule",
            "webhook_timeout",
            "webhook_disable_after",
            "email_schedule",
        ],
    );
    let operators = list(r, &n, "operators").unwrap_or_default();
    for o in &operators {
        if !o.contains('@') || o.contains(char::is_whitespace) {
            r.problem(
                "notices.operators",
                format!("{o:?} is not an e-mail address"),
            );
        }
    }
    let webhook_schedule = durations(
        r,
        &n,
        "webhook_schedule",
        NoticesConfig::default_webhook_schedule(),
    );
    let email_schedule = durations(r, &n, "email_schedule", secs(&[60, 300, 1800, 7200, 21600]));
    let mut dur = |key: &str, default: u64| {
        r.duration(&n, "notices", key)
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(Duration::from_secs(default))
    };
    let webhook_timeout = dur("webhook_timeout", 15);
    let webhook_disable_after = dur("webhook_disable_after", 5 * 86400);
    let message_id_host = r
        .string(&n, "notices", "message_id_host")
        .unwrap_or_else(|| host.to_owned());
    let operator_language = r
        .string(&n, "notices", "operator_language")
        .unwrap_or_else(|| "en".into());
    if !matches!(operator_language.as_str(), "en" | "ru") {
        r.problem(
            "notices.operator_language",
            "must be \"en\" or \"ru\"".into(),
        );
    }
    let public_url = r
        .string(&n, "notices", "public_url")
        .unwrap_or_else(|| format!("http://{listen}"));
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        r.problem(
            "notices.public_url",
            "must be an http:// or https:// URL".into(),
        );
    }
    NoticesConfig {
        from: r
            .string(&n, "notices", "from")
            .unwrap_or_else(|| format!("notices@{message_id_host}")),
        message_id_host,
        public_url: public_url.trim_end_matches('/').to_owned(),
        templates_dir: r.path(&n, "notices", "templates_dir", base),
        operators,
        operator_language,
        webhook_schedule,
        webhook_timeout,
        webhook_disable_after,
        email_schedule,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_documented_example_parses_and_bad_values_name_their_key() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/regmail.toml"))
                .unwrap();
        let start = text.find("[notices]").unwrap();
        let c = Config::from_toml_str(&text[start..], None).unwrap();
        assert_eq!(c.notices.webhook_schedule.len(), 7);
        assert_eq!(c.notices.operators, ["ops@hosting.example.ru"]);
        let e = Config::from_toml_str(
            "[notices]\nwebhook_schedule = [\"soon\"]\noperators = [\"nobody\"]\n",
            None,
        )
        .unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["notices.operators", "notices.webhook_schedule"]);
    }
}
