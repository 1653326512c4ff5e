//! The sandbox's registry: which contact handles and domains exist and when each domain
//! expires, plus counters. Kept as a small JSON file, rewritten atomically (temp file + rename)
//! after every request, so that a test can pre-load it (a taken domain, an imported client's
//! handle) and read the counters back.
//!
//! ```json
//! { "handles": { "HOSTER_1_7-GPT": { "kind": "person", "name": "Ivan I Ivanov" } },
//!   "domains": { "taken.ru": { "admin": "HOSTER_1_7-GPT", "expires": "2027-11-23" } } }
//! ```
//! Every key may be left out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// A contact the registry knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleRecord {
    /// `person` or `organization`.
    #[serde(default = "person")]
    pub kind: String,
    /// The Latin name (fioeng / orgname_en).
    #[serde(default)]
    pub name: String,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Date>,
}

fn person() -> String {
    "person".into()
}

/// A domain the registry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// The holder's handle (admin-o).
    #[serde(default)]
    pub admin: String,
    /// Paid till.
    pub expires: Date,
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nservers: Vec<String>,
    /// When it was registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Date>,
}

/// What the sandbox did, for tests and rehearsal reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Request e-mails handled (every one, refused or not).
    #[serde(default)]
    pub requests: u64,
    /// Requests refused as a whole (sender, charset, authorization, syntax): no task.
    #[serde(default)]
    pub refused: u64,
    /// Request e-mails whose Message-ID had been seen before (a request mailed twice).
    #[serde(default)]
    pub repeated_message_ids: u64,
    /// Objects completed (contact created, domain registered or prolonged).
    #[serde(default)]
    pub completed: u64,
    /// Objects that failed with an error.
    #[serde(default)]
    pub failed: u64,
    /// Replies planned (duplicates included, dropped ones not).
    #[serde(default)]
    pub replies: u64,
    /// Replies suppressed by drop rules.
    #[serde(default)]
    pub dropped: u64,
}

/// The registry file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// Format version.
    #[serde(default = "version")]
    pub version: u32,
    /// The next task number.
    #[serde(default = "first_task")]
    pub next_task: u64,
    /// Contacts by handle (upper-case).
    #[serde(default)]
    pub handles: BTreeMap<String, HandleRecord>,
    /// Domains by punycode name (lower-case).
    #[serde(default)]
    pub domains: BTreeMap<String, DomainRecord>,
    /// Counters.
    #[serde(default)]
    pub counters: Counters,
    /// How many times each request Message-ID arrived.
    #[serde(default)]
    pub message_ids: BTreeMap<String, u32>,
}

fn version() -> u32 {
    1
}
fn first_task() -> u64 {
    1001
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            version: 1,
            next_task: first_task(),
            handles: BTreeMap::new(),
            domains: BTreeMap::new(),
            counters: Counters::default(),
            message_ids: BTreeMap::new(),
        }
    }
}

impl Registry {
    /// Loads the file; a missing file is an empty registry.
    pub fn load(path: &Path) -> anyhow::Result<Registry> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let mut r: Registry = serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!("the sandbox registry {} is not valid: {e}", path.display())
                })?;
                // Keys are matched case-insensitively, as the registry would.
                r.handles = std::mem::take(&mut r.handles)
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_uppercase(), v))
                    .collect();
                r.domains = std::mem::take(&mut r.domains)
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                Ok(r)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read the sandbox registry {}: {e}",
                path.display()
            )),
        }
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = PathBuf::from(path);
        tmp.set_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self)?;
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        drop(f);
        std::fs::rename(&tmp, path)
            .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", path.display()))?;
        Ok(())
    }

    /// True when the handle exists.
    pub fn has_handle(&self, handle: &str) -> bool {
        self.handles.contains_key(&handle.to_ascii_uppercase())
    }

    /// The domain's record.
    pub fn domain(&self, name: &str) -> Option<&DomainRecord> {
        self.domains.get(&name.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_loads_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(
            &path,
            r#"{"domains": {"Taken.RU": {"expires": "2027-01-31"}}, "handles": {"x_1_2-gpt": {}}}"#,
        )
        .unwrap();
        let r = Registry::load(&path).unwrap();
        assert!(r.domain("taken.ru").is_some());
        assert!(r.has_handle("X_1_2-GPT"));
        assert_eq!(r.next_task, 1001);
        r.save(&path).unwrap();
        assert_eq!(Registry::load(&path).unwrap(), r);
        assert_eq!(
            Registry::load(&dir.path().join("none.json")).unwrap(),
            Registry::default()
        );
    }
}
