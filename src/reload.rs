//! What SIGHUP (or `POST /v1/reload`) re-reads: the configuration's templates and reply rules.

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::inbound::rules::Rules;
use crate::outbound::worker::OutboundSetup;

/// What SIGHUP (or `POST /v1/reload`) replaces.
#[derive(Clone)]
pub struct Reloadable {
    /// The configuration file to re-read (None: embedded defaults).
    pub config_path: Option<std::path::PathBuf>,
    /// Reply rules.
    pub rules: Arc<RwLock<Arc<Rules>>>,
    /// Registrar profile and request settings.
    pub outbound: Arc<RwLock<Arc<OutboundSetup>>>,
    /// Notice e-mail templates (`[notices] templates_dir`), when the notice engine runs.
    pub notice_templates: Option<Arc<RwLock<Arc<crate::notices::templates::Templates>>>>,
}

impl Reloadable {
    /// Re-reads the configuration, the templates and the rules. All or nothing: on any error the
    /// old settings stay in force and the error is returned (with the file and line).
    pub fn reload(&self) -> Result<String, String> {
        let config = Config::load(self.config_path.as_deref()).map_err(|e| e.to_string())?;
        let rules = config.load_rules()?;
        let setup = config.outbound_setup()?;
        let notice_templates =
            crate::notices::templates::Templates::load(config.notices.templates_dir.as_deref())
                .map_err(|e| format!("notice templates: {e}"))?;
        let notice_source = notice_templates.source.clone();
        let n = rules.len();
        let profile = setup.profile.source.clone();
        if let Ok(mut g) = self.rules.write() {
            *g = Arc::new(rules);
        }
        if let Ok(mut g) = self.outbound.write() {
            *g = Arc::new(setup);
        }
        if let Some(t) = &self.notice_templates
            && let Ok(mut g) = t.write()
        {
            *g = Arc::new(notice_templates);
        }
        Ok(format!(
            "reloaded: {n} reply rules, templates from {profile}, notice templates from {notice_source}"
        ))
    }
}
