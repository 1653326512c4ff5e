//! The sandbox's configuration: one TOML file (`regmail sandbox --sandbox-config FILE`), or TOML
//! text handed over in-process by `regmail demo`. Relative paths are taken from the file's
//! directory. Every problem is reported with its key; an unknown key is an error, so a typo never
//! silently turns a fault rehearsal into a plain run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use secrecy::SecretString;
use serde::Deserialize;

use crate::inbound::imap::ImapSettings;
use crate::outbound::smtp::SmtpSettings;
use crate::tls::TlsMode;

/// Where the sandbox reads requests from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An IMAP mailbox (the registrar's gateway mailbox).
    Imap(ImapSettings),
    /// A directory of `.eml` files, as regmail's `dir` transport writes them (`<token>.eml`);
    /// each processed file is moved into its `done/` subfolder.
    Dir(PathBuf),
}

/// Where the sandbox's replies go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// SMTP submission (to the address the request came from).
    Smtp(SmtpSettings),
    /// A Maildir: each reply is written into `tmp/`, then renamed into `new/`.
    Maildir(PathBuf),
}

/// Which replies a drop rule suppresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropWhat {
    /// The acknowledgement and the final answer.
    All,
    /// Only the "queued as task N" acknowledgement.
    Ack,
    /// Only the final answer (completion or error).
    Final,
}

/// Suppresses replies for matching objects, to rehearse a registrar that stays silent.
#[derive(Debug, Clone)]
pub struct DropRule {
    /// Matches the domain name (punycode or Unicode form) of a domain or prolong template.
    pub domain: Option<Regex>,
    /// Matches the nic_hdl of a person or organization template.
    pub handle: Option<Regex>,
    /// What is dropped.
    pub replies: DropWhat,
}

impl DropRule {
    /// True when the rule concerns a domain object named `ascii` / `unicode`.
    pub fn matches_domain(&self, ascii: &str, unicode: &str) -> bool {
        self.domain
            .as_ref()
            .is_some_and(|re| re.is_match(ascii) || re.is_match(unicode))
    }

    /// True when the rule concerns a contact with this handle.
    pub fn matches_handle(&self, handle: &str) -> bool {
        self.handle.as_ref().is_some_and(|re| re.is_match(handle))
    }
}

/// The charset replies are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyCharset {
    /// KOI8-R, 8bit.
    Koi8R,
    /// windows-1251, 8bit.
    Windows1251,
    /// UTF-8, 8bit.
    Utf8,
}

impl ReplyCharset {
    /// The MIME label.
    pub fn label(self) -> &'static str {
        match self {
            ReplyCharset::Koi8R => "koi8-r",
            ReplyCharset::Windows1251 => "windows-1251",
            ReplyCharset::Utf8 => "utf-8",
        }
    }

    /// The encoding.
    pub fn encoding(self) -> &'static encoding_rs::Encoding {
        match self {
            ReplyCharset::Koi8R => encoding_rs::KOI8_R,
            ReplyCharset::Windows1251 => encoding_rs::WINDOWS_1251,
            ReplyCharset::Utf8 => encoding_rs::UTF_8,
        }
    }
}

/// The whole sandbox configuration.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where requests come from.
    pub source: Source,
    /// How often the source is looked at.
    pub poll_interval: Duration,
    /// Where replies go.
    pub sink: Sink,
    /// The sandbox's own address: From of every reply (regmail's `[registrar] senders`).
    pub from: String,
    /// Display name of `from`.
    pub from_name: String,
    /// Contact addresses registered on the agreement: only they may send requests (lower-case).
    pub contacts: Vec<String>,
    /// The partner agreement number requests must carry.
    pub agreement: String,
    /// The e-mail interface password requests must carry.
    pub password: SecretString,
    /// Pause before the acknowledgement.
    pub ack_delay: Duration,
    /// Pause between the acknowledgement and the final answers.
    pub delay: Duration,
    /// Share of objects (0.0-1.0) that fail with a registry error although they are valid.
    pub error_rate: f64,
    /// Share of replies (0.0-1.0) that are sent twice.
    pub duplicate_rate: f64,
    /// Seed of the random draws behind `error_rate` and `duplicate_rate`.
    pub seed: u64,
    /// Send the final answers first and the acknowledgement `delay` later.
    pub out_of_order: bool,
    /// Replies say `Re: <subject>` and carry In-Reply-To/References; false: neither.
    pub reply_threading: bool,
    /// Charset of replies.
    pub reply_charset: ReplyCharset,
    /// Quote the request (password masked) below each reply, as some robots do.
    pub quote_request: bool,
    /// Mark replies `Auto-Submitted: auto-replied` (RFC 3834), as a robot would.
    pub auto_submitted: bool,
    /// Replies to suppress.
    pub drops: Vec<DropRule>,
    /// The registry file (JSON): handles and domains that exist, expiry dates, counters.
    pub registry: PathBuf,
    /// Term of a new domain when the request names no `years`.
    pub expiry_years_default: u8,
    /// When set, a new domain expires after this many days whatever the years asked (so that a
    /// rehearsal can renew a .ru domain at once: R01 renews .ru/.su/.рф only in the last
    /// `renew_window_days` of the term).
    pub first_term_days: Option<u32>,
    /// .ru/.su/.рф cannot be prolonged earlier than this many days before expiry.
    pub renew_window_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    source: String,
    dir: Option<String>,
    imap: Option<RawImap>,
    poll_interval: Option<String>,
    reply: String,
    maildir: Option<String>,
    smtp: Option<RawSmtp>,
    from: String,
    from_name: Option<String>,
    contacts: Vec<String>,
    agreement: String,
    password: Option<String>,
    password_file: Option<String>,
    delay: Option<String>,
    ack_delay: Option<String>,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    duplicate_rate: f64,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default)]
    out_of_order: bool,
    #[serde(default = "yes")]
    reply_threading: bool,
    reply_charset: Option<String>,
    #[serde(default)]
    quote_request: bool,
    #[serde(default = "yes")]
    auto_submitted: bool,
    #[serde(default)]
    drop: Vec<RawDrop>,
    registry: String,
    #[serde(default = "default_years")]
    expiry_years_default: u8,
    first_term_days: Option<u32>,
    #[serde(default = "default_window")]
    renew_window_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    #[serde(default = "localhost")]
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    tls_server_name: Option<String>,
    ca_file: Option<String>,
    username: String,
    password: Option<String>,
    password_file: Option<String>,
    mailbox: Option<String>,
    done_mailbox: Option<String>,
    command_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    #[serde(default = "localhost")]
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    tls_server_name: Option<String>,
    ca_file: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    timeout: Option<String>,
    hello_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrop {
    domain: Option<String>,
    handle: Option<String>,
    replies: Option<String>,
}

fn default_seed() -> u64 {
    1
}
fn yes() -> bool {
    true
}
fn default_years() -> u8 {
    1
}
fn default_window() -> u32 {
    60
}
fn localhost() -> String {
    "127.0.0.1".into()
}

/// Collects problems with their keys.
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{key}: {msg}"));
    }

    fn duration(&mut self, key: &str, v: Option<&str>, default: Duration) -> Duration {
        let Some(s) = v else { return default };
        match s.parse::<jiff::SignedDuration>() {
            Ok(d) if !d.is_negative() => Duration::try_from(d).unwrap_or(default),
            _ => {
                self.add(
                    key,
                    format!("{s:?} is not a duration such as \"200ms\" or \"2s\""),
                );
                default
            }
        }
    }

    fn tls(&mut self, key: &str, v: Option<&str>) -> TlsMode {
        match v {
            None | Some("starttls") => TlsMode::StartTls,
            Some("tls") => TlsMode::Tls,
            Some("none") => TlsMode::None,
            Some(other) => {
                self.add(
                    key,
                    format!("{other:?}: expected \"none\", \"starttls\" or \"tls\""),
                );
                TlsMode::StartTls
            }
        }
    }

    fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Option<SecretString> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.add(key, "give password or password_file, not both");
                None
            }
            (Some(p), None) => Some(SecretString::from(p)),
            (None, Some(f)) => match crate::config::read_secret_file(&f, key) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.0.push(e);
                    None
                }
            },
            (None, None) => None,
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_relative() { base.join(p) } else { p }
}

impl SandboxConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<SandboxConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the sandbox configuration {}: {e}",
                path.display()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        SandboxConfig::from_toml_str(&text, base).map_err(|e| {
            anyhow::anyhow!(
                "sandbox configuration {}:\n  {}",
                path.display(),
                e.join("\n  ")
            )
        })
    }

    /// Parses configuration text; relative paths are taken from `base`. Every problem is
    /// returned, each with its key.
    pub fn from_toml_str(text: &str, base: &Path) -> Result<SandboxConfig, Vec<String>> {
        let raw: Raw =
            toml::from_str(text).map_err(|e| vec![e.to_string().trim().replace('\n', " ")])?;
        let mut p = Problems(Vec::new());
        let poll_interval = p.duration(
            "poll_interval",
            raw.poll_interval.as_deref(),
            Duration::from_millis(500),
        );

        let source = match raw.source.as_str() {
            "dir" => match &raw.dir {
                Some(d) => Source::Dir(resolve(base, d)),
                None => {
                    p.add("dir", "is required with source = \"dir\"");
                    Source::Dir(PathBuf::new())
                }
            },
            "imap" => match raw.imap {
                Some(im) => {
                    let tls = p.tls("imap.tls", im.tls.as_deref());
                    let password = p
                        .secret(
                            "imap.password",
                            im.password,
                            im.password_file.as_deref().map(|f| resolve(base, f)),
                        )
                        .unwrap_or_else(|| {
                            p.add(
                                "imap.password_file",
                                "is required (or imap.password, for tests)",
                            );
                            SecretString::from(String::new())
                        });
                    let ca_file = im.ca_file.as_deref().map(|f| resolve(base, f));
                    if let Some(ca) = &ca_file
                        && !ca.exists()
                    {
                        p.add("imap.ca_file", format!("{} does not exist", ca.display()));
                    }
                    Source::Imap(ImapSettings {
                        host: im.host,
                        port: im
                            .port
                            .unwrap_or(if tls == TlsMode::Tls { 993 } else { 143 }),
                        tls,
                        tls_server_name: im.tls_server_name,
                        ca_file,
                        username: im.username,
                        password,
                        mailbox: im.mailbox.unwrap_or_else(|| "INBOX".into()),
                        processed_mailbox: im.done_mailbox.unwrap_or_else(|| "Processed".into()),
                        idle: false,
                        poll_interval,
                        command_timeout: p.duration(
                            "imap.command_timeout",
                            im.command_timeout.as_deref(),
                            Duration::from_secs(30),
                        ),
                        max_message_bytes: 10 << 20,
                    })
                }
                None => {
                    p.add(
                        "imap",
                        "the [imap] section is required with source = \"imap\"",
                    );
                    Source::Dir(PathBuf::new())
                }
            },
            other => {
                p.add("source", format!("{other:?}: expected \"imap\" or \"dir\""));
                Source::Dir(PathBuf::new())
            }
        };

        let from = raw.from.trim().to_ascii_lowercase();
        if from.parse::<lettre::Address>().is_err() {
            p.add("from", format!("{from:?} is not an e-mail address"));
        }
        let sink = match raw.reply.as_str() {
            "maildir" => match &raw.maildir {
                Some(d) => Sink::Maildir(resolve(base, d)),
                None => {
                    p.add("maildir", "is required with reply = \"maildir\"");
                    Sink::Maildir(PathBuf::new())
                }
            },
            "smtp" => match raw.smtp {
                Some(sm) => {
                    let tls = p.tls("smtp.tls", sm.tls.as_deref());
                    let password = p.secret(
                        "smtp.password",
                        sm.password,
                        sm.password_file.as_deref().map(|f| resolve(base, f)),
                    );
                    if sm.username.is_some() != password.is_some() {
                        p.add(
                            "smtp.username",
                            "smtp.username and smtp.password (or password_file) go together",
                        );
                    }
                    let ca_file = sm.ca_file.as_deref().map(|f| resolve(base, f));
                    if let Some(ca) = &ca_file
                        && !ca.exists()
                    {
                        p.add("smtp.ca_file", format!("{} does not exist", ca.display()));
                    }
                    let default_port = match tls {
                        TlsMode::None => 25,
                        TlsMode::StartTls => 587,
                        TlsMode::Tls => 465,
                    };
                    Sink::Smtp(SmtpSettings {
                        host: sm.host,
                        port: sm.port.unwrap_or(default_port),
                        tls,
                        tls_server_name: sm.tls_server_name,
                        ca_file,
                        username: sm.username,
                        password,
                        timeout: p.duration(
                            "smtp.timeout",
                            sm.timeout.as_deref(),
                            Duration::from_secs(30),
                        ),
                        hello_name: sm.hello_name.unwrap_or_else(|| {
                            from.rsplit_once('@')
                                .map_or("sandbox.invalid", |(_, d)| d)
                                .to_owned()
                        }),
                    })
                }
                None => {
                    p.add(
                        "smtp",
                        "the [smtp] section is required with reply = \"smtp\"",
                    );
                    Sink::Maildir(PathBuf::new())
                }
            },
            other => {
                p.add(
                    "reply",
                    format!("{other:?}: expected \"smtp\" or \"maildir\""),
                );
                Sink::Maildir(PathBuf::new())
            }
        };

        let contacts: Vec<String> = raw
            .contacts
            .iter()
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        if contacts.is_empty() {
            p.add(
                "contacts",
                "name at least one contact address (the From of regmail's requests)",
            );
        }
        for c in &contacts {
            if c.parse::<lettre::Address>().is_err() {
                p.add("contacts", format!("{c:?} is not an e-mail address"));
            }
        }
        if raw.agreement.trim().is_empty() {
            p.add("agreement", "must not be empty");
        }
        let password = p
            .secret(
                "password",
                raw.password,
                raw.password_file.as_deref().map(|f| resolve(base, f)),
            )
            .unwrap_or_else(|| {
                p.add("password_file", "is required (or password, for tests)");
                SecretString::from(String::new())
            });
        for (key, v) in [
            ("error_rate", raw.error_rate),
            ("duplicate_rate", raw.duplicate_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                p.add(key, format!("{v} is not between 0.0 and 1.0"));
            }
        }
        let reply_charset = match raw
            .reply_charset
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("koi8-r") => ReplyCharset::Koi8R,
            Some("windows-1251") | Some("cp1251") => ReplyCharset::Windows1251,
            Some("utf-8") => ReplyCharset::Utf8,
            Some(other) => {
                p.add(
                    "reply_charset",
                    format!("{other:?}: expected \"koi8-r\", \"windows-1251\" or \"utf-8\""),
                );
                ReplyCharset::Koi8R
            }
        };
        let mut drops = Vec::new();
        for (i, d) in raw.drop.into_iter().enumerate() {
            let mut re = |key: &str, v: Option<String>| {
                v.and_then(|s| match Regex::new(&s) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        p.add(
                            &format!("drop[{i}].{key}"),
                            format!("not a regular expression: {e}"),
                        );
                        None
                    }
                })
            };
            let domain = re("domain", d.domain);
            let handle = re("handle", d.handle);
            let replies = match d.replies.as_deref() {
                None | Some("all") => DropWhat::All,
                Some("ack") => DropWhat::Ack,
                Some("final") => DropWhat::Final,
                Some(other) => {
                    p.add(
                        &format!("drop[{i}].replies"),
                        format!("{other:?}: expected \"all\", \"ack\" or \"final\""),
                    );
                    DropWhat::All
                }
            };
            if domain.is_none() && handle.is_none() {
                p.add(
                    &format!("drop[{i}]"),
                    "give `domain` or `handle` (a regular expression)",
                );
            }
            drops.push(DropRule {
                domain,
                handle,
                replies,
            });
        }
        if !(1..=10).contains(&raw.expiry_years_default) {
            p.add("expiry_years_default", "must be 1 to 10");
        }
        if raw.first_term_days == Some(0) {
            p.add("first_term_days", "must be at least 1");
        }
        let delay = p.duration("delay", raw.delay.as_deref(), Duration::from_secs(1));
        let ack_delay = p.duration("ack_delay", raw.ack_delay.as_deref(), Duration::ZERO);
        if !p.0.is_empty() {
            return Err(p.0);
        }
        Ok(SandboxConfig {
            source,
            poll_interval,
            sink,
            from,
            from_name: raw
                .from_name
                .unwrap_or_else(|| "R01 registrar sandbox".into()),
            contacts,
            agreement: raw.agreement.trim().to_owned(),
            password,
            ack_delay,
            delay,
            error_rate: raw.error_rate,
            duplicate_rate: raw.duplicate_rate,
            seed: raw.seed,
            out_of_order: raw.out_of_order,
            reply_threading: raw.reply_threading,
            reply_charset,
            quote_request: raw.quote_request,
            auto_submitted: raw.auto_submitted,
            drops,
            registry: resolve(base, &raw.registry),
            expiry_years_default: raw.expiry_years_default,
            first_term_days: raw.first_term_days,
            renew_window_days: raw.renew_window_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        source = "dir"
        dir = "outbox"
        reply = "maildir"
        maildir = "inbox"
        from = "robot@registrar.test"
        contacts = ["Gateway@gateway.test"]
        agreement = "RP/01/00"
        password = "secret"
        registry = "registry.json"
        delay = "200ms"
    "#;

    #[test]
    fn a_minimal_file_loads_with_defaults_and_relative_paths() {
        let c = SandboxConfig::from_toml_str(MINIMAL, Path::new("/etc/sb")).unwrap();
        assert!(matches!(&c.source, Source::Dir(d) if d == Path::new("/etc/sb/outbox")));
        assert!(matches!(&c.sink, Sink::Maildir(d) if d == Path::new("/etc/sb/inbox")));
        assert_eq!(c.contacts, vec!["gateway@gateway.test"]);
        assert_eq!(c.delay, Duration::from_millis(200));
        assert_eq!(c.ack_delay, Duration::ZERO);
        assert!(c.reply_threading);
        assert_eq!(c.registry, Path::new("/etc/sb/registry.json"));
        assert_eq!(c.renew_window_days, 60);
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        let text = r#"
            source = "pigeon"
            reply = "smtp"
            from = "not an address"
            contacts = []
            agreement = ""
            registry = "r.json"
            error_rate = 1.5
            delay = "soon"
            [[drop]]
            domain = "("
        "#;
        let e = SandboxConfig::from_toml_str(text, Path::new(".")).unwrap_err();
        let all = e.join("\n");
        for key in [
            "source:",
            "smtp:",
            "from:",
            "contacts:",
            "agreement:",
            "password_file:",
            "error_rate:",
            "delay:",
            "drop[0].domain:",
        ] {
            assert!(all.contains(key), "{key} not reported in:\n{all}");
        }
    }

    #[test]
    fn the_example_files_load() {
        let local = SandboxConfig::from_toml_str(
            include_str!("../../fixtures/sandbox/local.toml"),
            Path::new("/repo/fixtures/sandbox"),
        )
        .unwrap();
        assert!(matches!(local.source, Source::Dir(_)));
        // The IMAP/SMTP example names secret and CA files relative to itself: with them in
        // place it loads; without them, only those files are missing.
        let text = include_str!("../../fixtures/sandbox/sandbox.toml");
        let dir = tempfile::tempdir().unwrap();
        for f in ["registrar-password", "robot-password"] {
            std::fs::write(dir.path().join(f), "secret\n").unwrap();
            // Secret files must be private (crate::config::read_secret_file).
            crate::files::make_private(&dir.path().join(f)).unwrap();
        }
        match SandboxConfig::from_toml_str(text, dir.path()) {
            Ok(c) => {
                assert!(matches!(c.source, Source::Imap(_)) && matches!(c.sink, Sink::Smtp(_)));
                assert_eq!(c.drops.len(), 1);
            }
            Err(e) => assert!(
                e.iter()
                    .all(|p| p.contains("ca_file") && p.contains("does not exist")),
                "{e:?}"
            ),
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e =
            SandboxConfig::from_toml_str(&format!("{MINIMAL}\nerror_rat = 0.5\n"), Path::new("."))
                .unwrap_err();
        assert!(e.join(" ").contains("error_rat"), "{e:?}");
    }
}
