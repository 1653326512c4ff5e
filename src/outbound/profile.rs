//! A registrar profile: charset, subjects, handle suffixes and request templates, read from a
//! directory (`request-templates/r01/` ships inside the binary as the default).

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;

use super::charset::Charset;
use crate::core::RequestKind;

/// The files of the shipped R01 profile, embedded so the binary works without them on disk.
const EMBEDDED_R01: &[(&str, &str)] = &[
    (
        "profile.toml",
        include_str!("../../request-templates/r01/profile.toml"),
    ),
    (
        "_auth.txt",
        include_str!("../../request-templates/r01/_auth.txt"),
    ),
    (
        "client-person.txt",
        include_str!("../../request-templates/r01/client-person.txt"),
    ),
    (
        "client-organization.txt",
        include_str!("../../request-templates/r01/client-organization.txt"),
    ),
    (
        "domain.txt",
        include_str!("../../request-templates/r01/domain.txt"),
    ),
    (
        "prolong.txt",
        include_str!("../../request-templates/r01/prolong.txt"),
    ),
];

/// Why a profile could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("registrar profile {location}: {reason}")]
pub struct ProfileError {
    /// Which file.
    pub location: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    charset: String,
    subjects: BTreeMap<String, String>,
    handles: HandleSuffixes,
    templates: BTreeMap<String, String>,
    /// `[tld.<name>] letters = "latin" | "cyrillic"`: the registry's rules for new names.
    #[serde(default)]
    tld: BTreeMap<String, TldFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TldFile {
    letters: crate::core::LabelLetters,
    /// Days after expiry during which the registry still accepts a renewal (the lifecycle's
    /// grace); the configuration's `[lifecycle] grace_days` applies to TLDs without one.
    #[serde(default)]
    grace_days: Option<u16>,
}

/// Handle suffixes the profile proposes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandleSuffixes {
    /// For persons, e.g. `-GPT`.
    pub person_suffix: String,
    /// For organizations, e.g. `-ORG-GPT`.
    pub org_suffix: String,
}

/// Which template renders a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// Client registration, person.
    ClientPerson,
    /// Client registration, organization.
    ClientOrganization,
    /// Domain registration.
    DomainRegistration,
    /// Domain renewal.
    DomainRenewal,
}

impl TemplateKind {
    /// The key in the profile's `[templates]` table.
    pub fn key(self) -> &'static str {
        match self {
            TemplateKind::ClientPerson => "client-person",
            TemplateKind::ClientOrganization => "client-organization",
            TemplateKind::DomainRegistration => "domain-registration",
            TemplateKind::DomainRenewal => "domain-renewal",
        }
    }
    const ALL: [TemplateKind; 4] = [
        TemplateKind::ClientPerson,
        TemplateKind::ClientOrganization,
        TemplateKind::DomainRegistration,
        TemplateKind::DomainRenewal,
    ];
}

/// A loaded profile with its compiled templates.
pub struct Profile {
    /// Profile name (`r01`).
    pub name: String,
    /// Default charset.
    pub charset: Charset,
    /// Handle suffixes.
    pub handles: HandleSuffixes,
    /// Where it came from (a directory, or "embedded").
    pub source: String,
    /// Which letters each TLD allows in new names (`[tld.<name>]`).
    pub tld_rules: Vec<crate::core::TldRule>,
    /// Days of grace after expiry per TLD (`[tld.<name>] grace_days`), keyed by the TLD in
    /// punycode (issue 11: the domain lifecycle).
    pub tld_grace: BTreeMap<String, u16>,
    env: Environment<'static>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("source", &self.source)
            .finish()
    }
}

fn subject_name(kind: RequestKind) -> String {
    format!("subject:{}", kind.as_str())
}

impl Profile {
    /// The shipped R01 profile, from inside the binary.
    pub fn embedded_r01() -> Result<Profile, ProfileError> {
        let files: BTreeMap<String, String> = EMBEDDED_R01
            .iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect();
        Self::from_files(files, "embedded r01".into())
    }

    /// A profile directory (an operator's copy under /etc/regmail, a test's).
    pub fn load_dir(dir: &Path) -> Result<Profile, ProfileError> {
        let mut files = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| ProfileError {
            location: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".txt") || name == "profile.toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| ProfileError {
                location: path.display().to_string(),
                reason: e.to_string(),
            })?;
            files.insert(name, text);
        }
        Self::from_files(files, dir.display().to_string())
    }

    fn from_files(
        files: BTreeMap<String, String>,
        source: String,
    ) -> Result<Profile, ProfileError> {
        let err = |location: &str, reason: String| ProfileError {
            location: format!("{source}/{location}"),
            reason,
        };
        let text = files
            .get("profile.toml")
            .ok_or_else(|| err("profile.toml", "missing".into()))?;
        let pf: ProfileFile = toml::from_str(text)
            .map_err(|e| err("profile.toml", e.to_string().trim().replace('\n', " ")))?;
        let charset = Charset::parse(&pf.charset).ok_or_else(|| {
            err(
                "profile.toml",
                format!(
                    "charset {:?}: R01 accepts koi8-r or windows-1251",
                    pf.charset
                ),
            )
        })?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        for (name, body) in &files {
            if name.ends_with(".txt") {
                env.add_template_owned(name.clone(), body.clone())
                    .map_err(|e| err(name, e.to_string()))?;
            }
        }
        for kind in TemplateKind::ALL {
            let file = pf.templates.get(kind.key()).ok_or_else(|| {
                err(
                    "profile.toml",
                    format!("[templates] has no {:?}", kind.key()),
                )
            })?;
            if !files.contains_key(file) {
                return Err(err(
                    file,
                    format!("named by [templates] {} but not found", kind.key()),
                ));
            }
            env.add_template_owned(
                format!("request:{}", kind.key()),
                format!("{{% include {file:?} %}}"),
            )
            .map_err(|e| err(file, e.to_string()))?;
        }
        for kind in [
            RequestKind::ClientRegistration,
            RequestKind::DomainRegistration,
            RequestKind::DomainRenewal,
        ] {
            let s = pf.subjects.get(kind.as_str()).ok_or_else(|| {
                err(
                    "profile.toml",
                    format!("[subjects] has no {:?}", kind.as_str()),
                )
            })?;
            env.add_template_owned(subject_name(kind), s.clone())
                .map_err(|e| err("profile.toml", format!("subject {}: {e}", kind.as_str())))?;
        }
        let mut tld_grace = BTreeMap::new();
        for (tld, t) in &pf.tld {
            if let Some(days) = t.grace_days {
                let ascii = idna::domain_to_ascii(tld)
                    .map_err(|_| err("profile.toml", format!("[tld.{tld}] is not a valid TLD")))?;
                tld_grace.insert(ascii, days);
            }
        }
        let tld_rules = pf
            .tld
            .into_iter()
            .map(|(tld, t)| crate::core::TldRule {
                tld: tld.to_lowercase(),
                letters: t.letters,
            })
            .collect();
        Ok(Profile {
            name: pf.name,
            charset,
            handles: pf.handles,
            source,
            env,
            tld_rules,
            tld_grace,
        })
    }

    /// Replaces a subject template (from the configuration).
    pub fn set_subject(&mut self, kind: RequestKind, template: &str) -> Result<(), ProfileError> {
        self.env
            .add_template_owned(subject_name(kind), template.to_owned())
            .map_err(|e| ProfileError {
                location: format!("registrar.subjects.{}", kind.as_str()),
                reason: e.to_string(),
            })
    }

    /// Renders the body template of `kind` with `ctx`.
    pub fn render_body(
        &self,
        kind: TemplateKind,
        ctx: &minijinja::Value,
    ) -> Result<String, String> {
        let t = self
            .env
            .get_template(&format!("request:{}", kind.key()))
            .map_err(|e| e.to_string())?;
        t.render(ctx)
            .map_err(|e| format!("template {}: {e:#}", kind.key()))
    }

    /// Renders the subject of `kind` with `ctx`.
    pub fn render_subject(
        &self,
        kind: RequestKind,
        ctx: &minijinja::Value,
    ) -> Result<String, String> {
        let t = self
            .env
            .get_template(&subject_name(kind))
            .map_err(|e| e.to_string())?;
        t.render(ctx)
            .map_err(|e| format!("subject {}: {e:#}", kind.as_str()))
    }
}
