//! `[ui]` and `[[ui.operators]]`: the operator web page (issue 14). Every key optional; the
//! page is served only when at least one operator is configured and `enabled` is not false.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::Reader;

/// What an operator may do on the web page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiRole {
    /// Sees everything and acts (retry, resolve, assign, dismiss, reload...).
    Operator,
    /// Sees everything; may only test the rules and log out.
    Viewer,
}

impl UiRole {
    /// The name used in the configuration and on the page.
    pub fn as_str(self) -> &'static str {
        match self {
            UiRole::Operator => "operator",
            UiRole::Viewer => "viewer",
        }
    }
    /// Parses the configuration's name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(UiRole::Operator),
            "viewer" => Some(UiRole::Viewer),
            _ => None,
        }
    }
}

/// One `[[ui.operators]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiOperator {
    /// Shown in the action log as `operator:<name>`.
    pub name: String,
    /// What they may do.
    pub role: UiRole,
    /// The file holding their login token (a secret: private, one line, 16+ characters).
    pub token_file: PathBuf,
}

impl UiOperator {
    /// Reads the operator's token (mode checked like every secret file; never shown).
    pub fn load_token(&self, index: usize) -> Result<SecretString, String> {
        let key = format!("ui.operators[{index}].token_file");
        let t = super::read_secret_file(&self.token_file, &key)?;
        let s = t.expose_secret();
        if s.len() < 16 {
            return Err(format!(
                "{key}: the token in {} is shorter than 16 characters",
                self.token_file.display()
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{key}: the token in {} contains white space",
                self.token_file.display()
            ));
        }
        Ok(t)
    }
}

/// `[ui]` settings.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Serve the page (default true; it is served only when operators exist).
    pub enabled: bool,
    /// A session unused this long ends (default 30 min).
    pub session_idle: Duration,
    /// A session ends this long after login, used or not (default 12 h).
    pub session_max: Duration,
    /// Add `Secure` to the session cookie (set it when a TLS proxy fronts regmail).
    pub cookie_secure: bool,
    /// Login attempts allowed per client address per minute (default 10).
    pub login_per_ip_per_minute: u32,
    /// Login attempts allowed in all per minute (default 60).
    pub login_global_per_minute: u32,
    /// The operators.
    pub operators: Vec<UiOperator>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            cookie_secure: false,
            login_per_ip_per_minute: 10,
            login_global_per_minute: 60,
            operators: Vec::new(),
        }
    }
}

impl UiConfig {
    /// Whether the page is served.
    pub fn active(&self) -> bool {
        self.enabled && !self.operators.is_empty()
    }

    /// Reads every operator's token: `(key, problem)` for each file that cannot be used (for
    /// `check-config` and the start of `serve`).
    pub fn check_tokens(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut seen: Vec<[u8; 32]> = Vec::new();
        for (i, o) in self.operators.iter().enumerate() {
            match o.load_token(i) {
                Ok(t) => {
                    use sha2::Digest;
                    let h: [u8; 32] = sha2::Sha256::digest(t.expose_secret().as_bytes()).into();
                    if seen.contains(&h) {
                        out.push((
                            format!("ui.operators[{i}].token_file"),
                            "holds the same token as another operator; give each their own"
                                .to_owned(),
                        ));
                    }
                    seen.push(h);
                }
                Err(e) => out.push((format!("ui.operators[{i}].token_file"), e)),
            }
        }
        out
    }
}

fn flag(r: &mut Reader, t: &toml::Table, key: &str, default: bool) -> bool {
    match t.get(key) {
        None => default,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => {
            r.problem(
                &format!("ui.{key}"),
                format!("must be true or false, not {}", other.type_str()),
            );
            default
        }
    }
}

pub(super) fn read(r: &mut Reader, root: &toml::Table, base: &Path) -> UiConfig {
    let t = r.section(
        root,
        "ui",
        &[
            "enabled",
            "session_idle",
            "session_max",
            "cookie_secure",
            "login_per_ip_per_minute",
            "login_global_per_minute",
            "operators",
        ],
    );
    let d = UiConfig::default();
    let dur = |r: &mut Reader, key: &str, default: Duration| {
        r.duration(&t, "ui", key)
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(default)
    };
    let session_idle = dur(r, "session_idle", d.session_idle);
    let session_max = dur(r, "session_max", d.session_max);
    let mut operators = Vec::new();
    match t.get("operators") {
        None => {}
        Some(toml::Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                let key = format!("ui.operators[{i}]");
                let Some(o) = v.as_table() else {
                    r.problem(&key, "must be a table ([[ui.operators]])".into());
                    continue;
                };
                for k in o.keys() {
                    if !["name", "role", "token_file"].contains(&k.as_str()) {
                        r.problem(
                            &format!("{key}.{k}"),
                            "unknown key; known are name, role, token_file".into(),
                        );
                    }
                }
                let name = r.string(o, &key, "name");
                let role = r.string(o, &key, "role");
                let token_file = r.path(o, &key, "token_file", base);
                let name = match name {
                    Some(n)
                        if !n.is_empty()
                            && n.len() <= 64
                            && n.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
                    {
                        if operators.iter().any(|o: &UiOperator| o.name == n) {
                            r.problem(&format!("{key}.name"), format!("{n:?} is given twice"));
                        }
                        Some(n)
                    }
                    Some(n) => {
                        r.problem(
                            &format!("{key}.name"),
                            format!("{n:?}: use 1 to 64 letters, digits, '.', '_' or '-'"),
                        );
                        None
                    }
                    None => {
                        r.problem(&format!("{key}.name"), "is required".into());
                        None
                    }
                };
                let role = match role.as_deref().map(|s| (s, UiRole::parse(s))) {
                    Some((_, Some(role))) => Some(role),
                    Some((s, None)) => {
                        r.problem(
                            &format!("{key}.role"),
                            format!("{s:?}: expected \"operator\" or \"viewer\""),
                        );
                        None
                    }
                    None => {
                        r.problem(&format!("{key}.role"), "is required".into());
                        None
                    }
                };
                if token_file.is_none() && o.get("token_file").is_none() {
                    r.problem(&format!("{key}.token_file"), "is required".into());
                }
                if let (Some(name), Some(role), Some(token_file)) = (name, role, token_file) {
                    operators.push(UiOperator {
                        name,
                        role,
                        token_file,
                    });
                }
            }
        }
        Some(other) => r.problem(
            "ui.operators",
            format!(
                "must be a list of tables ([[ui.operators]]), not {}",
                other.type_str()
            ),
        ),
    }
    let per_minute = |r: &mut Reader, key: &str, default: u32| {
        r.int(&t, "ui", key, 1, 10_000)
            .map(|n| n as u32)
            .unwrap_or(default)
    };
    let login_per_ip_per_minute = per_minute(r, "login_per_ip_per_minute", 10);
    let login_global_per_minute = per_minute(r, "login_global_per_minute", 60);
    UiConfig {
        enabled: flag(r, &t, "enabled", true),
        session_idle,
        session_max,
        cookie_secure: flag(r, &t, "cookie_secure", false),
        login_per_ip_per_minute,
        login_global_per_minute,
        operators,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn operators_parse_and_bad_ones_name_their_key() {
        let c = Config::from_toml_str(
            "[ui]\nsession_idle = \"10m\"\n[[ui.operators]]\nname = \"anna\"\nrole = \"viewer\"\ntoken_file = \"/x/anna\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.ui.operators.len(), 1);
        assert_eq!(c.ui.operators[0].role.as_str(), "viewer");
        assert_eq!(c.ui.session_idle.as_secs(), 600);
        assert!(c.ui.active());
        let e = Config::from_toml_str("[[ui.operators]]\nname = \"a b\"\nrole = \"boss\"\n", None)
            .unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ui.operators[0].name",
                "ui.operators[0].role",
                "ui.operators[0].token_file"
            ]
        );
    }
}
