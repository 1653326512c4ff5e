//! Pre-flight: every check `regmail serve` runs before it starts (the secrets, the registrar
//! profile and templates, the reply rules with their regexes, the transport, the reply source,
//! the certificates, the addresses), plus the warnings that say which settings are still the
//! sandbox's defaults. `regmail check-config` prints the report; `serve` runs the same function,
//! refuses to start on an error and logs the warnings.

use std::path::Path;

use crate::config::{Config, SourceConfig, TokenSource, TransportConfig};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `serve` would refuse to start.
    Error,
    /// `serve` starts, but the setting is the sandbox's default or likely a mistake.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding: the key it concerns and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Dotted key, e.g. `registrar.senders`.
    pub key: String,
    /// What is wrong and what to set.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.severity.as_str(),
            self.key,
            self.message
        )
    }
}

/// Every finding about one configuration.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Errors first, then warnings, each in the order found.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }
    /// True when `serve` would start.
    pub fn ok(&self) -> bool {
        self.errors().next().is_none()
    }
    fn error(&mut self, key: &str, message: String) {
        // The loaders' messages often start with their key already.
        let message = message
            .strip_prefix(&format!("{key}: "))
            .map(str::to_owned)
            .unwrap_or(message);
        self.findings.push(Finding {
            severity: Severity::Error,
            key: key.to_owned(),
            message,
        });
    }
    fn warn(&mut self, key: &str, message: String) {
        if self.findings.iter().any(|f| f.key == key) {
            return;
        }
        self.findings.push(Finding {
            severity: Severity::Warning,
            key: key.to_owned(),
            message,
        });
    }
}

/// Runs every start-up check on a loaded configuration. Nothing is created or changed (a
/// generated API token that does not exist yet is left for `serve` to create).
pub fn check(config: &Config) -> Report {
    let mut r = Report::default();

    // The API token, from the source `serve` would use.
    match &config.api.token {
        TokenSource::Generated(p) if !p.exists() => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty())
                && dir.exists()
                && std::fs::metadata(dir).is_ok_and(|m| m.permissions().readonly())
            {
                r.error(
                    "api.token_file",
                    format!(
                        "no token configured and {} is read-only, so serve cannot create {}; set api.token_file or LoadCredential=api-token",
                        dir.display(),
                        p.display()
                    ),
                );
            }
        }
        source => {
            if let Err(e) = config.load_token() {
                let key = match source {
                    TokenSource::Env => crate::config::TOKEN_ENV,
                    _ => "api.token_file",
                };
                r.error(key, e);
            }
        }
    }

    // The registrar profile, its templates and subjects, the request addresses and password.
    if let Err(e) = config.outbound_setup() {
        let key = error_key(
            &e,
            &[
                "registrar.password_file",
                "registrar.gateway",
                "registrar.callback",
                "registrar.bcc",
                "registrar.charset",
            ],
        )
        .unwrap_or("registrar.templates_dir");
        r.error(key, e);
    }

    // The web page's operator tokens (private files, one line, 16+ characters, each its own).
    for (key, e) in config.ui.check_tokens() {
        r.error(&key, e);
    }

    // The reply rules, every regex compiled.
    if let Err(e) = config.load_rules() {
        r.error("registrar.rules", e);
    }

    // The transport (the SMTP password is read here).
    if let Err(e) = config.transport() {
        r.error(
            error_key(&e, &["smtp.password_file", "smtp.ca_file"]).unwrap_or("outbound.transport"),
            e,
        );
    }
    match &config.outbound.transport {
        TransportConfig::Smtp => {
            if let Some(ca) = &config.smtp.ca_file
                && let Err(e) = check_pem(ca)
            {
                r.error("smtp.ca_file", e);
            }
        }
        TransportConfig::Sendmail(bin) => {
            if !is_executable(bin) {
                r.error(
                    "outbound.sendmail",
                    format!(
                        "{} is not an executable file; install a mail transfer agent or set outbound.transport = \"smtp\"",
                        bin.display()
                    ),
                );
            }
        }
        TransportConfig::Dir(_) => {}
    }

    // The reply source.
    match &config.inbound.source {
        SourceConfig::Imap => {
            match &config.imap.password_file {
                Some(p) => {
                    if let Err(e) = crate::config::read_secret_file(p, "imap.password_file") {
                        r.error("imap.password_file", e);
                    }
                }
                None => r.error(
                    "imap.password_file",
                    "is required with inbound.source = \"imap\" (or LoadCredential=imap-password)"
                        .into(),
                ),
            }
            if let Some(ca) = &config.imap.ca_file
                && let Err(e) = check_pem(ca)
            {
                r.error("imap.ca_file", e);
            }
        }
        SourceConfig::Maildir(_) => {}
    }

    sandbox_warnings(config, &mut r);
    r
}

/// The warnings alone (what `serve` logs at start).
pub fn warnings(config: &Config) -> Vec<Finding> {
    let mut r = Report::default();
    sandbox_warnings(config, &mut r);
    r.findings
}

fn error_key<'a>(message: &str, keys: &[&'a str]) -> Option<&'a str> {
    keys.iter().copied().find(|k| message.starts_with(k))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A CA file must hold at least one PEM certificate (what the TLS set-up will load).
fn check_pem(path: &Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut reader = std::io::Cursor::new(pem);
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut reader) {
        cert.map_err(|e| format!("{}: {e}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(())
}

/// The raw TOML of the configuration file (None: embedded defaults or unreadable).
fn raw_table(config: &Config) -> toml::Table {
    config
        .source
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .unwrap_or_default()
}

fn is_sandbox_address(a: &str) -> bool {
    a.to_ascii_lowercase().ends_with(".invalid")
}

/// Settings that still are the sandbox's: fine for a rehearsal, wrong for R01.
fn sandbox_warnings(config: &Config, r: &mut Report) {
    let raw = raw_table(config);
    let section = |name: &str| raw.get(name).and_then(toml::Value::as_table);
    // The shipped R01 example's placeholders (systemd/regmail-r01.toml).
    for (name, value) in &raw {
        let Some(t) = value.as_table() else { continue };
        for (k, v) in t {
            let texts: Vec<&str> = match v {
                toml::Value::String(x) => vec![x.as_str()],
                toml::Value::Array(xs) => xs.iter().filter_map(toml::Value::as_str).collect(),
                _ => continue,
            };
            if let Some(x) = texts
                .iter()
                .find(|x| x.to_ascii_uppercase().contains("CHANGE-ME") || x.contains("CHANGEME"))
            {
                r.warn(
                    &format!("{name}.{k}"),
                    format!("{x:?} is still the example's placeholder; put in your real value"),
                );
            }
        }
    }
    let reg = &config.registrar;
    for (key, value, what) in [
        (
            "registrar.gateway",
            &reg.gateway,
            "set it to R01's request address",
        ),
        (
            "registrar.callback",
            &reg.callback,
            "set it to your mailbox registered at R01 as a contact of the partner agreement",
        ),
    ] {
        if is_sandbox_address(value) {
            r.warn(
                key,
                format!("{value:?} is a sandbox (.invalid) address; {what}"),
            );
        }
    }
    if reg.senders.is_empty() {
        r.warn(
            "registrar.senders",
            "is empty: every registrar reply will be Ignored; set senders = [\"<R01's sender address>\"]".into(),
        );
    } else if section("registrar").is_none_or(|t| !t.contains_key("senders")) {
        r.warn(
            "registrar.senders",
            format!(
                "not set: only mail from the sandbox's {} may change a status, so every real registrar reply will be Ignored; set senders = [\"<R01's sender address>\"]",
                reg.senders.join(", ")
            ),
        );
    } else if let Some(s) = reg.senders.iter().find(|s| is_sandbox_address(s)) {
        r.warn(
            "registrar.senders",
            format!("{s:?} is a sandbox address; list R01's real sender addresses"),
        );
    }
    if reg.agreement == "RP/00/SANDBOX" {
        r.warn(
            "registrar.agreement",
            "is the sandbox's \"RP/00/SANDBOX\"; set your R01 partner agreement number".into(),
        );
    }
    if reg.password_file.is_none() {
        r.warn(
            "registrar.password_file",
            "not set: requests carry the sandbox's password; set registrar.password_file or LoadCredential=registrar-password:/etc/regmail/registrar-password".into(),
        );
    }
    if let TransportConfig::Dir(dir) = &config.outbound.transport {
        if section("smtp").is_some() {
            r.warn(
                "outbound.transport",
                format!(
                    "is \"dir\" (the default) although an [smtp] section is configured: requests are written to {} and nothing is mailed; set outbound.transport = \"smtp\"",
                    dir.display()
                ),
            );
        } else {
            r.warn(
                "outbound.transport",
                format!(
                    "is \"dir\": requests are written to {} and never mailed (the sandbox's set-up); set outbound.transport = \"smtp\" with an [smtp] section",
                    dir.display()
                ),
            );
        }
    }
    if let SourceConfig::Maildir(dir) = &config.inbound.source
        && section("imap").is_some()
    {
        r.warn(
            "inbound.source",
            format!(
                "is \"maildir\" (the default) although an [imap] section is configured: replies are read from {}, not from IMAP; set inbound.source = \"imap\"",
                dir.display()
            ),
        );
    }
    // Issue 9: only authenticated registrar mail may move state. Loud where requests really go
    // out (crate::config::authentication_warning), a reminder on the sandbox's defaults.
    if config.trust.authentication == crate::trust::AuthLevel::None {
        let message = crate::config::authentication_warning(config).unwrap_or_else(|| {
            "is \"none\": replies are trusted on their From address alone (fine for the sandbox); set registrar.authentication (see README, Deploy)".into()
        });
        r.warn("registrar.authentication", message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(r: &Report, s: Severity) -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.severity == s)
            .map(|f| f.key.clone())
            .collect()
    }

    #[test]
    fn embedded_defaults_have_no_error_but_sandbox_warnings() {
        let c = Config::from_toml_str("", None).unwrap();
        let w: Vec<String> = warnings(&c).into_iter().map(|f| f.key).collect();
        for k in [
            "registrar.gateway",
            "registrar.callback",
            "registrar.senders",
            "registrar.agreement",
            "registrar.password_file",
            "outbound.transport",
            "registrar.authentication",
        ] {
            assert!(w.contains(&k.to_owned()), "{k} missing in {w:?}");
        }
    }

    #[test]
    fn broken_regex_in_rules_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("replies.toml");
        std::fs::write(
            &rules,
            "[[rule]]\nname = \"x\"\nevent = \"completed\"\nkinds = [\"domain-registration\"]\nbody = '(unclosed'\n",
        )
        .unwrap();
        let cfg = dir.path().join("regmail.toml");
        std::fs::write(&cfg, "[registrar]\nrules = \"replies.toml\"\n").unwrap();
        let c = Config::load(Some(&cfg)).unwrap();
        let r = check(&c);
        assert_eq!(keys(&r, Severity::Error), vec!["registrar.rules"], "{r:?}");
    }

    #[test]
    fn dir_transport_beside_smtp_section_warns() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("regmail.toml");
        std::fs::write(
            &cfg,
            "[smtp]\nhost = \"mail.example.ru\"\n[registrar]\nsenders = [\"robot@r01.ru\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&cfg)).unwrap();
        let r = check(&c);
        let f = r
            .warnings()
            .find(|f| f.key == "outbound.transport")
            .unwrap();
        assert!(f.message.contains("[smtp] section"), "{f}");
        assert!(!keys(&r, Severity::Warning).contains(&"registrar.senders".to_owned()));
    }
}
