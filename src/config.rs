//! Configuration: one TOML file (example: `systemd/regmail.toml`), every key optional with an
//! embedded default, so `regmail serve` runs with no file at all. Loading collects every
//! problem (with its key) instead of stopping at the first, for `regmail check-config`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use secrecy::SecretString;

use crate::core::{Policy, ReplyDeadlines};

pub mod notices;
pub mod reports;
pub use notices::NoticesConfig;
pub use reports::ReportsConfig;

/// The environment variable that carries the API token (wins over `[api] token_file`).
pub const TOKEN_ENV: &str = "REGMAIL_API_TOKEN";
/// The systemd credential name for the API token (`LoadCredential=api-token:...`).
pub const TOKEN_CREDENTIAL: &str = "api-token";

/// One problem in the configuration, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `api.listen`.
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The configuration could not be used; every problem found is listed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} configuration problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<Problem>);

/// `[store]`: the sled database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the sled database.
    pub path: PathBuf,
    /// Page cache size in MiB (sled's default of 1 GiB is far more than regmail needs).
    pub cache_capacity_mb: u64,
}

/// Where the API token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The `REGMAIL_API_TOKEN` environment variable.
    Env,
    /// A file holding the token (trailing white space ignored).
    File(PathBuf),
    /// No token configured: `serve` creates one in this file (mode 0600) on first start.
    Generated(PathBuf),
}

/// `[api]`: the HTTP API for panels and the CLI.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Listen address (default 127.0.0.1:7465: only this machine).
    pub listen: SocketAddr,
    /// Where the bearer token comes from.
    pub token: TokenSource,
    /// Largest request body accepted; larger is 413.
    pub max_body_bytes: usize,
    /// Most API connections open at once (default 512); never more than the descriptor limit
    /// leaves room for (src/api/server.rs). Past it, the oldest idle connection is closed.
    pub max_connections: usize,
    /// A client must send a request's whole header within this (default 10 s).
    pub header_read_timeout: SignedDuration,
    /// A connection with no traffic and no request in progress is closed after this
    /// (default 60 s).
    pub idle_timeout: SignedDuration,
}

/// `[registrar]`: the registrar, its profile, and everything HSPcomplete's R01 plug-in had.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Profile name (`r01`, shipped inside the binary).
    pub profile: String,
    /// A profile directory to use instead of the shipped one.
    pub templates_dir: Option<PathBuf>,
    /// Where requests go (the registrar's gateway address).
    pub gateway: String,
    /// Our mailbox: From of every request; the registrar answers there.
    pub callback: String,
    /// Gets a copy of every request.
    pub bcc: Option<String>,
    /// Partner agreement number.
    pub agreement: String,
    /// File holding the e-mail interface password (None: the sandbox's default).
    pub password_file: Option<PathBuf>,
    /// `pay-type` of the authorization block (None: the registrar's default, `real`).
    pub pay_type: Option<String>,
    /// Charset override (`koi8-r` or `windows-1251`); None: the profile's.
    pub charset: Option<String>,
    /// Subject overrides per request kind (minijinja, one ASCII line).
    pub subjects: Vec<(crate::core::RequestKind, String)>,
    /// Right-hand side of our Message-IDs (default: the callback address's domain).
    pub message_id_host: String,
    /// Handle prefix (`PREFIX_7_3-GPT`).
    pub handle_prefix: String,
    /// Handle suffix for persons (None: the profile's).
    pub person_handle_suffix: Option<String>,
    /// Handle suffix for organizations (None: the profile's).
    pub org_handle_suffix: Option<String>,
    /// The registrar's sender addresses: only mail from these may move state.
    pub senders: Vec<String>,
    /// Reply rules file (None: the profile's `replies.toml`).
    pub rules: Option<PathBuf>,
}

/// Where replies are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    /// A Maildir directory (the embedded default).
    Maildir(PathBuf),
    /// IMAP with the `[imap]` settings.
    Imap,
}

/// `[inbound]`: the reply source and parsing limits.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// The source.
    pub source: SourceConfig,
    /// Larger messages are quarantined (checked with RFC822.SIZE before fetching).
    pub max_message_bytes: u64,
    /// Deeper MIME nesting is quarantined.
    pub max_nesting: usize,
    /// How often the Maildir is read.
    pub poll_interval: SignedDuration,
    /// Raw bytes of settled messages older than this many days are deleted by the scheduler
    /// (default 90; 0 keeps them forever); the record and the decision stay.
    pub keep_raw_days: u32,
    /// Most header fields in a message's top header section (default 500).
    pub max_header_fields: usize,
    /// Largest top header section, in octets (default 256 KiB).
    pub max_header_bytes: usize,
}

/// `[imap]`: the callback mailbox.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// Host.
    pub host: String,
    /// Port (default 143 for starttls and none, 993 for tls).
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub tls: crate::tls::TlsMode,
    /// Certificate name to expect.
    pub tls_server_name: Option<String>,
    /// Extra trusted CA.
    pub ca_file: Option<PathBuf>,
    /// Login (default: the callback address).
    pub username: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Mailbox to read.
    pub mailbox: String,
    /// Where processed messages go.
    pub processed_mailbox: String,
    /// Use IDLE.
    pub idle: bool,
    /// Poll sweep interval.
    pub poll_interval: SignedDuration,
    /// Deadline per command.
    pub command_timeout: SignedDuration,
}

/// Which transport carries requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportConfig {
    /// Write .eml files into a directory (the embedded default).
    Dir(PathBuf),
    /// Pipe to the local sendmail binary.
    Sendmail(PathBuf),
    /// SMTP with the `[smtp]` settings.
    Smtp,
}

/// `[outbound]`: the transport and the retry timing.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// The transport.
    pub transport: TransportConfig,
    /// First retry delay after a transient failure.
    pub retry_initial: SignedDuration,
    /// Longest retry delay.
    pub retry_max: SignedDuration,
}

/// `[smtp]`: the submission server.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Host.
    pub host: String,
    /// Port (default 587 for starttls, 465 for tls, 25 for none).
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub tls: crate::tls::TlsMode,
    /// Certificate name to expect (default: host).
    pub tls_server_name: Option<String>,
    /// Extra trusted CA, PEM.
    pub ca_file: Option<PathBuf>,
    /// AUTH user.
    pub username: Option<String>,
    /// File holding the AUTH password.
    pub password_file: Option<PathBuf>,
    /// Deadline per connect and per command.
    pub timeout: SignedDuration,
    /// EHLO name (default: the callback address's domain).
    pub hello_name: Option<String>,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[store]`.
    pub store: StoreConfig,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[registrar]`.
    pub registrar: RegistrarConfig,
    /// `[outbound]`.
    pub outbound: OutboundConfig,
    /// `[smtp]`.
    pub smtp: SmtpConfig,
    /// `[inbound]`.
    pub inbound: InboundConfig,
    /// `[imap]`.
    pub imap: ImapConfig,
    /// `[deadlines]`: how long to wait for the registrar's final answer.
    pub deadlines: ReplyDeadlines,
    /// `[renewal]`: automatic renewal of domains marked auto-renew (None: off).
    pub auto_renew: Option<AutoRenew>,
    /// `[log] filter`: a `RUST_LOG`-style filter (`RUST_LOG` wins when set).
    pub log_filter: String,
    /// `[notices]`: users' and operators' notices, e-mail and webhooks.
    pub notices: NoticesConfig,
    /// `[reports]`: the daily reseller report e-mail (src/config/reports.rs).
    pub reports: ReportsConfig,
    /// Where the file was read from (None: embedded defaults).
    pub source: Option<PathBuf>,
    /// What a reply or bounce must prove (`[registrar] authentication`, `[inbound]
    /// authserv_ids`, `[[inbound.dkim_keys]]`, `bounce_hosts`, `[outbound] envelope_sender`).
    pub trust: crate::trust::TrustConfig,
}

impl Config {
    /// Loads a file; `None` means the embedded defaults (everything under `./var`, the API on
    /// 127.0.0.1:7465).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::from_toml_str("", None),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError(vec![Problem {
                        key: "(file)".into(),
                        message: format!("cannot read {}: {e}", p.display()),
                    }])
                })?;
                Config::from_toml_str(&text, Some(p))
            }
        }
    }

    /// Parses configuration text, collecting every problem.
    pub fn from_toml_str(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
        let root: toml::Table = toml::from_str(text).map_err(|e| {
            ConfigError(vec![Problem {
                key: "(syntax)".into(),
                message: e.to_string().trim().replace('\n', " "),
            }])
        })?;
        let base = source
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut r = Reader {
            problems: Vec::new(),
        };
        let known = [
            "store",
            "api",
            "registrar",
            "outbound",
            "smtp",
            "inbound",
            "imap",
            "deadlines",
            "renewal",
            "log",
            "notices",
            "reports",
        ];
        for key in root.keys() {
            if !known.contains(&key.as_str()) {
                r.problem(
                    key,
                    format!("unknown section; known are {}", known.join(", ")),
                );
            }
        }

        let store = r.section(&root, "store", &["path", "cache_capacity_mb"]);
        let store = StoreConfig {
            path: r
                .path(&store, "store", "path", &base)
                .unwrap_or_else(|| PathBuf::from("var/store")),
            cache_capacity_mb: r
                .int(&store, "store", "cache_capacity_mb", 1, 65536)
                .unwrap_or(64),
        };

        let api = r.section(
            &root,
            "api",
            &[
                "listen",
                "token_file",
                "max_body_bytes",
                "max_connections",
                "header_read_timeout",
                "idle_timeout",
            ],
        );
        let listen = match r.string(&api, "api", "listen") {
            Some(s) => match s.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    r.problem(
                        "api.listen",
                        format!("{s:?} is not an address:port such as 127.0.0.1:7465"),
                    );
                    default_listen()
                }
            },
            None => default_listen(),
        };
        // The unit's credential wins over a file path: under DynamicUser the service cannot
        // read a root-only /etc/regmail/api-token, while the CLI (run by root) can.
        let token_file = r.path(&api, "api", "token_file", &base);
        let token = if std::env::var_os(TOKEN_ENV).is_some() {
            TokenSource::Env
        } else if let Some(p) = credential(TOKEN_CREDENTIAL) {
            TokenSource::File(p)
        } else if let Some(p) = token_file {
            TokenSource::File(p)
        } else if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            TokenSource::File(PathBuf::from(dir).join(TOKEN_CREDENTIAL))
        } else {
            let dir = store
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            TokenSource::Generated(dir.join("api-token"))
        };
        let api = ApiConfig {
            listen,
            token,
            max_body_bytes: r
                .int(&api, "api", "max_body_bytes", 1024, 16 << 20)
                .unwrap_or(64 * 1024) as usize,
            max_connections: r
                .int(&api, "api", "max_connections", 1, 1 << 20)
                .unwrap_or(512) as usize,
            header_read_timeout: r
                .duration(&api, "api", "header_read_timeout")
                .unwrap_or(SignedDuration::from_secs(10)),
            idle_timeout: r
                .duration(&api, "api", "idle_timeout")
                .unwrap_or(SignedDuration::from_secs(60)),
        };

        let reg = r.section(
            &root,
            "registrar",
            &[
                "profile",
                "templates_dir",
                "gateway",
                "callback",
                "bcc",
                "agreement",
                "password_file",
                "pay_type",
                "charset",
                "subjects",
                "message_id_host",
                "handle_prefix",
                "person_handle_suffix",
                "org_handle_suffix",
                "senders",
                "rules",
                "authentication",
            ],
        );
        let callback = r
            .string(&reg, "registrar", "callback")
            .unwrap_or_else(|| "regmail@sandbox.invalid".into());
        let mut subjects = Vec::new();
        match reg.get("subjects") {
            None => {}
            Some(toml::Value::Table(t)) => {
                for (k, v) in t {
                    let kind = [
                        crate::core::RequestKind::ClientRegistration,
                        crate::core::RequestKind::DomainRegistration,
                        crate::core::RequestKind::DomainRenewal,
                    ]
                    .into_iter()
                    .find(|kind| kind.as_str() == k);
                    match (kind, v) {
                        (Some(kind), toml::Value::String(s)) => subjects.push((kind, s.clone())),
                        (None, _) => r.problem(&format!("registrar.subjects.{k}"), "unknown request kind; known are client-registration, domain-registration, domain-renewal".into()),
                        (_, other) => r.problem(&format!("registrar.subjects.{k}"), format!("must be a string, not {}", other.type_str())),
                    }
                }
            }
            Some(_) => r.problem("registrar.subjects", "must be a table".into()),
        }
        let registrar = RegistrarConfig {
            profile: r
                .string(&reg, "registrar", "profile")
                .unwrap_or_else(|| "r01".into()),
            templates_dir: r.path(&reg, "registrar", "templates_dir", &base),
            gateway: r
                .string(&reg, "registrar", "gateway")
                .unwrap_or_else(|| "registrar@sandbox.invalid".into()),
            message_id_host: r
                .string(&reg, "registrar", "message_id_host")
                .unwrap_or_else(|| {
                    callback
                        .rsplit_once('@')
                        .map_or("regmail.invalid", |(_, d)| d)
                        .to_owned()
                }),
            callback,
            bcc: r.string(&reg, "registrar", "bcc"),
            agreement: r
                .string(&reg, "registrar", "agreement")
                .unwrap_or_else(|| "RP/00/SANDBOX".into()),
            password_file: credential("registrar-password").or(r.path(
                &reg,
                "registrar",
                "password_file",
                &base,
            )),
            pay_type: r.string(&reg, "registrar", "pay_type"),
            charset: r.string(&reg, "registrar", "charset"),
            subjects,
            handle_prefix: r
                .string(&reg, "registrar", "handle_prefix")
                .unwrap_or_else(|| "REGMAIL".into()),
            person_handle_suffix: r.string(&reg, "registrar", "person_handle_suffix"),
            org_handle_suffix: r.string(&reg, "registrar", "org_handle_suffix"),
            senders: match reg.get("senders") {
                None => vec!["robot@sandbox.invalid".to_owned()],
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| match v {
                        toml::Value::String(s) => Some(s.to_ascii_lowercase()),
                        _ => None,
                    })
                    .collect(),
                Some(_) => {
                    r.problem(
                        "registrar.senders",
                        "must be an array of e-mail addresses".into(),
                    );
                    Vec::new()
                }
            },
            rules: r.path(&reg, "registrar", "rules", &base),
        };
        if registrar.profile != "r01" && registrar.templates_dir.is_none() {
            r.problem("registrar.profile", format!("{:?}: the shipped profile is \"r01\"; for another, set registrar.templates_dir", registrar.profile));
        }
        for (key, addr) in [
            ("registrar.gateway", Some(&registrar.gateway)),
            ("registrar.callback", Some(&registrar.callback)),
            ("registrar.bcc", registrar.bcc.as_ref()),
        ] {
            if let Some(a) = addr
                && a.parse::<lettre::Address>().is_err()
            {
                r.problem(key, format!("{a:?} is not an e-mail address"));
            }
        }
        if let Some(c) = &registrar.charset
            && crate::outbound::Charset::parse(c).is_none()
        {
            r.problem(
                "registrar.charset",
                format!("{c:?}: R01 accepts \"koi8-r\" or \"windows-1251\""),
            );
        }
        if let Some(p) = &registrar.pay_type
            && !["real", "bonus", "real,bonus", "bonus,real"].contains(&p.as_str())
        {
            r.problem(
                "registrar.pay_type",
                format!("{p:?}: expected real, bonus, \"real,bonus\" or \"bonus,real\""),
            );
        }
        if registrar.agreement.is_empty() || registrar.agreement.chars().any(|c| c.is_control()) {
            r.problem(
                "registrar.agreement",
                "must be one non-empty line, e.g. \"RP/01/00\"".into(),
            );
        }
        let host_ok = crate::core::DomainName::parse(&registrar.message_id_host).is_ok();
        if !host_ok {
            r.problem(
                "registrar.message_id_host",
                format!("{:?} is not a domain name", registrar.message_id_host),
            );
        }
        let handle_ok = registrar
            .handle_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !registrar.handle_prefix.is_empty()
            && registrar.handle_prefix.len() <= 40;
        if !handle_ok {
            r.problem(
                "registrar.handle_prefix",
                format!(
                    "{:?}: use 1 to 40 ASCII letters, digits, '_' or '-'",
                    registrar.handle_prefix
                ),
            );
        }

        let ob = r.section(
            &root,
            "outbound",
            &[
                "transport",
                "dir",
                "sendmail",
                "retry_initial",
                "retry_max",
                "envelope_sender",
            ],
        );
        let transport = match r.string(&ob, "outbound", "transport").as_deref() {
            None | Some("dir") => TransportConfig::Dir(
                r.path(&ob, "outbound", "dir", &base)
                    .unwrap_or_else(|| PathBuf::from("var/outbox-mail")),
            ),
            Some("sendmail") => TransportConfig::Sendmail(
                r.path(&ob, "outbound", "sendmail", &base)
                    .unwrap_or_else(|| PathBuf::from("/usr/sbin/sendmail")),
            ),
            Some("smtp") => TransportConfig::Smtp,
            Some(other) => {
                r.problem(
                    "outbound.transport",
                    format!("{other:?}: expected \"smtp\", \"sendmail\" or \"dir\""),
                );
                TransportConfig::Smtp
            }
        };
        let outbound = OutboundConfig {
            transport,
            retry_initial: r
                .duration(&ob, "outbound", "retry_initial")
                .unwrap_or(SignedDuration::from_secs(5)),
            retry_max: r
                .duration(&ob, "outbound", "retry_max")
                .unwrap_or(SignedDuration::from_mins(10)),
        };
        let real_registrar = !matches!(outbound.transport, TransportConfig::Dir(_));
        if real_registrar {
            for (key, missing) in [
                ("registrar.gateway", !reg.contains_key("gateway")),
                ("registrar.callback", !reg.contains_key("callback")),
                ("registrar.agreement", !reg.contains_key("agreement")),
                ("registrar.password_file", registrar.password_file.is_none()),
            ] {
                if missing {
                    r.problem(key, "is required when requests really go out (outbound.transport is smtp or sendmail)".into());
                }
            }
        }

        let sm = r.section(
            &root,
            "smtp",
            &[
                "host",
                "port",
                "tls",
                "tls_server_name",
                "ca_file",
                "username",
                "password_file",
                "timeout",
                "hello_name",
            ],
        );
        use crate::tls::TlsMode;
        let tls = match r.string(&sm, "smtp", "tls").as_deref() {
            None | Some("starttls") => TlsMode::StartTls,
            Some("tls") => TlsMode::Tls,
            Some("none") => TlsMode::None,
            Some(other) => {
                r.problem(
                    "smtp.tls",
                    format!("{other:?}: expected \"none\", \"starttls\" or \"tls\""),
                );
                TlsMode::StartTls
            }
        };
        let default_port = match tls {
            TlsMode::None => 25,
            TlsMode::StartTls => 587,
            TlsMode::Tls => 465,
        };
        let smtp = SmtpConfig {
            host: r
                .string(&sm, "smtp", "host")
                .unwrap_or_else(|| "127.0.0.1".into()),
            port: r
                .int(&sm, "smtp", "port", 1, 65535)
                .map_or(default_port, |p| p as u16),
            tls,
            tls_server_name: r.string(&sm, "smtp", "tls_server_name"),
            ca_file: r.path(&sm, "smtp", "ca_file", &base),
            username: r.string(&sm, "smtp", "username"),
            password_file: credential("smtp-password").or(r.path(
                &sm,
                "smtp",
                "password_file",
                &base,
            )),
            timeout: r
                .duration(&sm, "smtp", "timeout")
                .unwrap_or(SignedDuration::from_secs(30)),
            hello_name: r.string(&sm, "smtp", "hello_name"),
        };
        if smtp.username.is_some() != smtp.password_file.is_some() {
            r.problem(
                "smtp.password_file",
                "smtp.username and smtp.password_file go together".into(),
            );
        }
        if let Some(ca) = &smtp.ca_file
            && !ca.exists()
        {
            r.problem("smtp.ca_file", format!("{} does not exist", ca.display()));
        }

        let ib = r.section(
            &root,
            "inbound",
            &[
                "source",
                "maildir",
                "max_message_bytes",
                "max_nesting",
                "poll_interval",
                "keep_raw_days",
                "authserv_ids",
                "dkim_keys",
                "bounce_hosts",
                "max_header_fields",
                "max_header_bytes",
            ],
        );
        let reply_source = match r.string(&ib, "inbound", "source").as_deref() {
            None | Some("maildir") => SourceConfig::Maildir(
                r.path(&ib, "inbound", "maildir", &base)
                    .unwrap_or_else(|| PathBuf::from("var/inbox")),
            ),
            Some("imap") => SourceConfig::Imap,
            Some(other) => {
                r.problem(
                    "inbound.source",
                    format!("{other:?}: expected \"imap\" or \"maildir\""),
                );
                SourceConfig::Imap
            }
        };
        let inbound = InboundConfig {
            source: reply_source,
            max_message_bytes: r
                .int(&ib, "inbound", "max_message_bytes", 1024, 1 << 30)
                .unwrap_or(10 << 20),
            max_nesting: r.int(&ib, "inbound", "max_nesting", 1, 100).unwrap_or(20) as usize,
            keep_raw_days: r
                .int(&ib, "inbound", "keep_raw_days", 0, 100_000)
                .unwrap_or(90) as u32,
            max_header_fields: r
                .int(&ib, "inbound", "max_header_fields", 10, 100_000)
                .unwrap_or(500) as usize,
            max_header_bytes: r
                .int(&ib, "inbound", "max_header_bytes", 1024, 64 << 20)
                .unwrap_or(256 << 10) as usize,
            poll_interval: r
                .duration(&ib, "inbound", "poll_interval")
                .unwrap_or(SignedDuration::from_secs(1)),
        };
        let im = r.section(
            &root,
            "imap",
            &[
                "host",
                "port",
                "tls",
                "tls_server_name",
                "ca_file",
                "username",
                "password_file",
                "mailbox",
                "processed_mailbox",
                "idle",
                "poll_interval",
                "command_timeout",
            ],
        );
        let imap_tls = match r.string(&im, "imap", "tls").as_deref() {
            None | Some("starttls") => crate::tls::TlsMode::StartTls,
            Some("tls") => crate::tls::TlsMode::Tls,
            Some("none") => crate::tls::TlsMode::None,
            Some(other) => {
                r.problem(
                    "imap.tls",
                    format!("{other:?}: expected \"none\", \"starttls\" or \"tls\""),
                );
                crate::tls::TlsMode::StartTls
            }
        };
        let idle = match im.get("idle") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                r.problem(
                    "imap.idle",
                    format!("must be true or false, not {}", other.type_str()),
                );
                true
            }
        };
        let imap = ImapConfig {
            host: r
                .string(&im, "imap", "host")
                .unwrap_or_else(|| "127.0.0.1".into()),
            port: r.int(&im, "imap", "port", 1, 65535).map_or(
                if imap_tls == crate::tls::TlsMode::Tls {
                    993
                } else {
                    143
                },
                |p| p as u16,
            ),
            tls: imap_tls,
            tls_server_name: r.string(&im, "imap", "tls_server_name"),
            ca_file: r.path(&im, "imap", "ca_file", &base),
            username: r.string(&im, "imap", "username"),
            password_file: credential("imap-password").or(r.path(
                &im,
                "imap",
                "password_file",
                &base,
            )),
            mailbox: r
                .string(&im, "imap", "mailbox")
                .unwrap_or_else(|| "INBOX".into()),
            processed_mailbox: r
                .string(&im, "imap", "processed_mailbox")
                .unwrap_or_else(|| "Processed".into()),
            idle,
            poll_interval: r
                .duration(&im, "imap", "poll_interval")
                .unwrap_or(SignedDuration::from_secs(60)),
            command_timeout: r
                .duration(&im, "imap", "command_timeout")
                .unwrap_or(SignedDuration::from_secs(60)),
        };
        if inbound.source == SourceConfig::Imap && imap.password_file.is_none() {
            r.problem(
                "imap.password_file",
                "is required with inbound.source = \"imap\"".into(),
            );
        }
        if let Some(ca) = &imap.ca_file
            && !ca.exists()
        {
            r.problem("imap.ca_file", format!("{} does not exist", ca.display()));
        }

        let dl = r.section(
            &root,
            "deadlines",
            &["client_reply", "domain_reply", "renewal_reply"],
        );
        let three_days = SignedDuration::from_hours(72);
        let deadlines = ReplyDeadlines {
            client: r
                .duration(&dl, "deadlines", "client_reply")
                .unwrap_or(three_days),
            domain: r
                .duration(&dl, "deadlines", "domain_reply")
                .unwrap_or(three_days),
            renewal: r
                .duration(&dl, "deadlines", "renewal_reply")
                .unwrap_or(three_days),
        };

        let rn = r.section(&root, "renewal", &["auto", "days_before", "years"]);
        let auto = match rn.get("auto") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                r.problem(
                    "renewal.auto",
                    format!("must be true or false, not {}", other.type_str()),
                );
                true
            }
        };
        let auto_renew = auto.then(|| AutoRenew {
            days_before: r
                .int(&rn, "renewal", "days_before", 1, 365)
                .map_or(59, |n| n as i64),
            years: r.int(&rn, "renewal", "years", 1, 10).map_or(1, |n| n as u8),
        });

        let log = r.section(&root, "log", &["filter"]);
        let log_filter = r
            .string(&log, "log", "filter")
            .unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            r.problem(
                "log.filter",
                format!("{log_filter:?} is not a valid filter (e.g. \"info,regmail=debug\")"),
            );
        }

        let trust = read_trust(&mut r, &reg, &ib, &ob, &registrar.callback, &smtp);
        let notices = notices::read(&mut r, &root, &base, api.listen, &registrar.message_id_host);
        let reports = reports::read(&mut r, &root, &notices);

        if !r.problems.is_empty() {
            return Err(ConfigError(r.problems));
        }
        Ok(Config {
            trust,
            notices,
            reports,
            store,
            api,
            registrar,
            outbound,
            smtp,
            inbound,
            imap,
            deadlines,
            auto_renew,
            log_filter,
            source: source.map(Path::to_path_buf),
        })
    }

    /// The registrar rules for the core (handle suffixes default to the profile's).
    pub fn policy(&self, profile: &crate::outbound::Profile) -> Policy {
        Policy {
            message_id_host: self.registrar.message_id_host.clone(),
            deadlines: self.deadlines.clone(),
            handle_prefix: self.registrar.handle_prefix.clone(),
            person_handle_suffix: self
                .registrar
                .person_handle_suffix
                .clone()
                .unwrap_or_else(|| profile.handles.person_suffix.clone()),
            org_handle_suffix: self
                .registrar
                .org_handle_suffix
                .clone()
                .unwrap_or_else(|| profile.handles.org_suffix.clone()),
            tld_rules: profile.tld_rules.clone(),
            ..Policy::default()
        }
    }

    /// Loads the registrar profile (shipped or `templates_dir`) with the configured overrides,
    /// and the request settings (addresses, agreement, password).
    pub fn outbound_setup(&self) -> Result<crate::outbound::worker::OutboundSetup, String> {
        use crate::outbound::{Charset, Profile, RequestSettings};
        let reg = &self.registrar;
        let mut profile = match &reg.templates_dir {
            Some(dir) => Profile::load_dir(dir),
            None => Profile::embedded_r01(),
        }
        .map_err(|e| e.to_string())?;
        for (kind, subject) in &reg.subjects {
            profile
                .set_subject(*kind, subject)
                .map_err(|e| e.to_string())?;
        }
        let charset = match &reg.charset {
            Some(c) => Charset::parse(c)
                .ok_or_else(|| format!("registrar.charset {c:?} is not koi8-r or windows-1251"))?,
            None => profile.charset,
        };
        let password = match &reg.password_file {
            Some(p) => read_secret_file(p, "registrar.password_file")?,
            None => SecretString::from("sandbox".to_owned()),
        };
        let addr = |key: &str, v: &str| {
            v.parse::<lettre::Address>()
                .map_err(|_| format!("{key}: {v:?} is not an e-mail address"))
        };
        let settings = RequestSettings {
            gateway: addr("registrar.gateway", &reg.gateway)?,
            callback: addr("registrar.callback", &reg.callback)?,
            bcc: reg
                .bcc
                .as_deref()
                .map(|b| addr("registrar.bcc", b))
                .transpose()?,
            agreement: reg.agreement.clone(),
            password,
            pay_type: reg.pay_type.clone(),
            charset,
            envelope: crate::trust::envelope_template(&self.trust, &reg.callback),
        };
        Ok(crate::outbound::worker::OutboundSetup { profile, settings })
    }

    /// Where the reply rules come from: `[registrar] rules`, else the profile directory's
    /// `replies.toml`, else the shipped R01 rules inside the binary.
    pub fn rules_source(&self) -> Option<PathBuf> {
        self.registrar.rules.clone().or_else(|| {
            self.registrar
                .templates_dir
                .as_ref()
                .map(|d| d.join("replies.toml"))
        })
    }

    /// Loads the reply rules; a broken file is an error naming its line and the reason.
    pub fn load_rules(&self) -> Result<crate::inbound::rules::Rules, String> {
        use crate::inbound::rules::Rules;
        match self.rules_source() {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("reply rules {}: {e}", path.display()))?;
                Rules::parse(&text).map_err(|e| format!("reply rules {}: {e}", path.display()))
            }
            None => Rules::parse(include_str!("../request-templates/r01/replies.toml"))
                .map_err(|e| format!("shipped reply rules: {e}")),
        }
    }

    /// Builds the configured transport.
    pub fn transport(&self) -> Result<crate::outbound::Transport, String> {
        use crate::outbound::Transport;
        use crate::outbound::smtp::{SmtpSender, SmtpSettings};
        Ok(match &self.outbound.transport {
            TransportConfig::Dir(d) => Transport::Dir(d.clone()),
            TransportConfig::Sendmail(b) => Transport::Sendmail(b.clone()),
            TransportConfig::Smtp => {
                let s = &self.smtp;
                let password = s
                    .password_file
                    .as_ref()
                    .map(|p| read_secret_file(p, "smtp.password_file"))
                    .transpose()?;
                let hello = s
                    .hello_name
                    .clone()
                    .unwrap_or_else(|| self.registrar.message_id_host.clone());
                Transport::Smtp(Box::new(SmtpSender::new(SmtpSettings {
                    host: s.host.clone(),
                    port: s.port,
                    tls: s.tls,
                    tls_server_name: s.tls_server_name.clone(),
                    ca_file: s.ca_file.clone(),
                    username: s.username.clone(),
                    password,
                    timeout: std::time::Duration::try_from(s.timeout)
                        .unwrap_or(std::time::Duration::from_secs(30)),
                    hello_name: hello,
                })))
            }
        })
    }

    /// Every configured secret, for the redactor of stored-mail views (crate::redact): the
    /// API token, the registrar, SMTP and IMAP passwords. Files that cannot be read are
    /// skipped here (the component that uses them reports it).
    pub fn secrets(&self) -> Vec<SecretString> {
        let mut out = Vec::new();
        if let Ok(t) = self.load_token() {
            out.push(t);
        }
        for (p, key) in [
            (&self.registrar.password_file, "registrar.password_file"),
            (&self.smtp.password_file, "smtp.password_file"),
            (&self.imap.password_file, "imap.password_file"),
        ] {
            if let Some(p) = p
                && let Ok(s) = read_secret_file(p, key)
            {
                out.push(s);
            }
        }
        out
    }

    /// Reads the API token from its source. A generated token is created when missing.
    pub fn load_token(&self) -> Result<SecretString, String> {
        match &self.api.token {
            TokenSource::Env => {
                let v = std::env::var(TOKEN_ENV)
                    .map_err(|_| format!("{TOKEN_ENV} is not valid UTF-8"))?;
                check_token(v.trim(), TOKEN_ENV)
            }
            TokenSource::File(p) => read_token_file(p),
            TokenSource::Generated(p) => {
                if p.exists() {
                    return read_token_file(p);
                }
                let token = format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                );
                write_private(p, &token).map_err(|e| {
                    format!("cannot create the API token file {}: {e}", p.display())
                })?;
                Ok(SecretString::from(token))
            }
        }
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>` when systemd handed that credential over
/// (`LoadCredential=<name>:...`). It wins over the file path in the configuration: the unit's
/// dynamic user cannot read the root-only original.
pub fn credential(name: &str) -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| PathBuf::from(d).join(name))
        .filter(|p| p.exists())
}

/// Reads the trust keys (issue 9 part A; see `crate::trust`).
fn read_trust(
    r: &mut Reader,
    reg: &toml::Table,
    ib: &toml::Table,
    ob: &toml::Table,
    callback: &str,
    smtp: &SmtpConfig,
) -> crate::trust::TrustConfig {
    use crate::trust::{AuthLevel, DkimKey, TrustConfig};
    let authentication = match r.string(reg, "registrar", "authentication") {
        None => AuthLevel::None,
        Some(s) => AuthLevel::parse(&s).unwrap_or_else(|| {
            r.problem(
                "registrar.authentication",
                format!("{s:?}: expected \"none\", \"spf\", \"dkim\" or \"dmarc\""),
            );
            AuthLevel::None
        }),
    };
    let mut strings = |key: &str| -> Vec<String> {
        match ib.get(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) if items.iter().all(toml::Value::is_str) => items
                .iter()
                .filter_map(|v| v.as_str().map(|s| s.trim().to_ascii_lowercase()))
                .collect(),
            Some(_) => {
                r.problem(
                    &format!("inbound.{key}"),
                    "must be an array of strings".into(),
                );
                Vec::new()
            }
        }
    };
    let authserv_ids = strings("authserv_ids");
    let mut bounce_hosts = strings("bounce_hosts");
    if bounce_hosts.is_empty() {
        bounce_hosts.extend(
            callback
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase()),
        );
        bounce_hosts.extend(smtp.hello_name.as_ref().map(|h| h.to_ascii_lowercase()));
        if smtp.host.parse::<std::net::IpAddr>().is_err() {
            bounce_hosts.push(smtp.host.to_ascii_lowercase());
        }
    }
    let mut dkim_keys = Vec::new();
    match ib.get("dkim_keys") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let field = |k: &str| {
                    item.get(k)
                        .and_then(toml::Value::as_str)
                        .map(|s| s.trim().to_owned())
                        .unwrap_or_default()
                };
                if let Some(t) = item.as_table()
                    && let Some(k) = t
                        .keys()
                        .find(|k| !["domain", "selector", "record"].contains(&k.as_str()))
                {
                    r.problem(
                        &format!("inbound.dkim_keys[{i}].{k}"),
                        "unknown key; known are domain, selector, record".into(),
                    );
                }
                dkim_keys.push(DkimKey {
                    domain: field("domain").to_ascii_lowercase(),
                    selector: field("selector").to_ascii_lowercase(),
                    record: field("record"),
                });
            }
        }
        Some(_) => r.problem(
            "inbound.dkim_keys",
            "must be an array of tables ([[inbound.dkim_keys]])".into(),
        ),
    }
    let cfg = TrustConfig {
        authentication,
        authserv_ids,
        dkim_keys,
        envelope_sender: r.string(ob, "outbound", "envelope_sender"),
        bounce_hosts,
    };
    for (key, message) in crate::trust::check(&cfg) {
        r.problem(&key, message);
    }
    cfg
}

/// The loud warning for a configuration that mails a real registrar but lets any mail with the
/// registrar's From move state (`[registrar] authentication = "none"`); None when the sandbox
/// defaults are in use or authentication is required. `check-config` prints it and `serve`
/// logs it at start (issue 9 part A; issue 12's warnings framework can list it).
pub fn authentication_warning(config: &Config) -> Option<String> {
    let real = !matches!(config.outbound.transport, TransportConfig::Dir(_));
    (real && config.trust.authentication == crate::trust::AuthLevel::None).then(|| {
        "registrar.authentication is \"none\" while requests really go out: any e-mail that \
         shows the registrar's From address can move a domain's state. Set \
         registrar.authentication = \"dkim\" (pin the registrar's key in [[inbound.dkim_keys]]) \
         or \"dmarc\" with inbound.authserv_ids of your MX"
            .to_owned()
    })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7465))
}

fn check_token(token: &str, source: &str) -> Result<SecretString, String> {
    if token.len() < 16 {
        return Err(format!(
            "the API token from {source} is shorter than 16 characters"
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("the API token from {source} contains white space"));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Reads a secret from a file (trailing white space dropped; the content is never shown).
/// A file that others can read (mode o+r) or write is refused: the secret is already out.
pub fn read_secret_file(path: &Path, key: &str) -> Result<SecretString, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o006 != 0 {
            return Err(format!(
                "{key}: {} can be read or written by others (mode {mode:04o}); make it private: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let t = text.trim_end_matches(['\r', '\n']);
    if t.is_empty() || t.contains(['\r', '\n']) {
        return Err(format!(
            "{key}: {} must hold the secret alone, on one line",
            path.display()
        ));
    }
    Ok(SecretString::from(t.to_owned()))
}

/// Reads a token file (the content is never shown in an error).
pub fn read_token_file(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the API token file {}: {e}", path.display()))?;
    check_token(text.trim(), &path.display().to_string())
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Walks the TOML tables and records problems.
struct Reader {
    problems: Vec<Problem>,
}

impl Reader {
    fn problem(&mut self, key: &str, message: String) {
        self.problems.push(Problem {
            key: key.to_owned(),
            message,
        });
    }

    fn section(&mut self, root: &toml::Table, name: &str, keys: &[&str]) -> toml::Table {
        match root.get(name) {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => {
                for k in t.keys() {
                    if !keys.contains(&k.as_str()) {
                        self.problem(
                            &format!("{name}.{k}"),
                            format!("unknown key; known are {}", keys.join(", ")),
                        );
                    }
                }
                t.clone()
            }
            Some(_) => {
                self.problem(name, "must be a table ([section])".into());
                toml::Table::new()
            }
        }
    }

    fn string(&mut self, t: &toml::Table, section: &str, key: &str) -> Option<String> {
        match t.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    &format!("{section}.{key}"),
                    format!("must be a string, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn path(&mut self, t: &toml::Table, section: &str, key: &str, base: &Path) -> Option<PathBuf> {
        let s = self.string(t, section, key)?;
        if s.is_empty() {
            self.problem(&format!("{section}.{key}"), "must not be empty".into());
            return None;
        }
        let p = PathBuf::from(s);
        Some(if p.is_relative() { base.join(p) } else { p })
    }

    fn int(
        &mut self,
        t: &toml::Table,
        section: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<u64> {
        match t.get(key)? {
            toml::Value::Integer(n) if (min..=max).contains(n) => u64::try_from(*n).ok(),
            toml::Value::Integer(n) => {
                self.problem(
                    &format!("{section}.{key}"),
                    format!("{n} is out of range {min}..={max}"),
                );
                None
            }
            other => {
                self.problem(
                    &format!("{section}.{key}"),
                    format!("must be an integer, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn duration(&mut self, t: &toml::Table, section: &str, key: &str) -> Option<SignedDuration> {
        let s = self.string(t, section, key)?;
        match s.parse::<SignedDuration>() {
            Ok(d) if d.is_positive() => Some(d),
            _ => {
                self.problem(
                    &format!("{section}.{key}"),
                    format!("{s:?} is not a positive duration such as \"72h\" or \"30m\""),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load() {
        let c = Config::from_toml_str("", None).unwrap();
        assert_eq!(c.api.listen, default_listen());
        assert_eq!(c.store.cache_capacity_mb, 64);
    }

    #[test]
    fn trust_keys_are_read_and_a_real_registrar_without_authentication_warns() {
        let c = Config::from_toml_str("", None).unwrap();
        assert_eq!(c.trust.authentication, crate::trust::AuthLevel::None);
        assert_eq!(
            authentication_warning(&c),
            None,
            "the sandbox defaults keep quiet"
        );
        let text = r#"
            [registrar]
            callback = "gw@hosting.test"
            authentication = "dkim"
            [outbound]
            envelope_sender = "bounces+{token}@hosting.test"
            [inbound]
            authserv_ids = ["MX.Hosting.Test"]
            [[inbound.dkim_keys]]
            domain = "R01.ru"
            selector = "mail"
            record = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        "#;
        let c = Config::from_toml_str(text, None).unwrap();
        assert_eq!(c.trust.authentication, crate::trust::AuthLevel::Dkim);
        assert_eq!(c.trust.authserv_ids, ["mx.hosting.test"]);
        assert_eq!(c.trust.dkim_keys[0].domain, "r01.ru");
        assert_eq!(
            c.trust.bounce_hosts[0], "hosting.test",
            "default: the callback domain"
        );
        assert_eq!(
            c.trust.envelope_sender.as_deref(),
            Some("bounces+{token}@hosting.test")
        );
        let bad = Config::from_toml_str(
            "[registrar]\nauthentication = \"maybe\"\n[inbound]\nauthserv_ids = \"mx\"\n[[inbound.dkim_keys]]\ndomain = \"x\"\nkey = \"y\"\n",
            None,
        )
        .unwrap_err();
        let keys: Vec<&str> = bad.0.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "registrar.authentication",
            "inbound.authserv_ids",
            "inbound.dkim_keys[0].key",
            "inbound.dkim_keys[0]",
        ] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        let mut real = Config::from_toml_str("", None).unwrap();
        real.outbound.transport = TransportConfig::Smtp;
        let w = authentication_warning(&real).unwrap_or_default();
        assert!(
            w.contains("registrar.authentication") && w.contains("\"none\""),
            "{w}"
        );
        real.trust.authentication = crate::trust::AuthLevel::Dmarc;
        assert_eq!(authentication_warning(&real), None);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            [api]
            listen = "nowhere"
            colour = "blue"
            [store]
            cache_capacity_mb = "big"
            [deadlines]
            client_reply = "soon"
            [registrar]
            handle_prefix = "has space"
            [extra]
        "#;
        let err = Config::from_toml_str(text, None).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "api.listen",
            "api.colour",
            "store.cache_capacity_mb",
            "deadlines.client_reply",
            "registrar.handle_prefix",
            "extra",
        ] {
            assert!(keys.contains(&k), "{k} not reported in {keys:?}");
        }
    }

    #[test]
    fn a_secret_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        std::fs::write(&p, "hunter2-secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&p, "registrar.password_file").unwrap_err();
        assert!(
            e.contains("registrar.password_file") && e.contains("0644"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_secret_file(&p, "k").is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_secret_file(&p, "k").is_ok());
    }

    #[test]
    fn durations_parse() {
        let c = Config::from_toml_str("[deadlines]\nclient_reply = \"30m\"\n", None).unwrap();
        assert_eq!(c.deadlines.client, SignedDuration::from_mins(30));
    }
}

/// When auto-renewal asks for a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRenew {
    /// Ask this many days before expiry. R01 refuses .RU/.SU/.РФ renewals earlier than 60 days
    /// before the end of the term and runs its own auto-renewal at 55, so the default is 59.
    pub days_before: i64,
    /// Years per renewal.
    pub years: u8,
}
