//! E-mail templates of notices: one file per type and language, `<lang>/<type>.txt`, whose
//! first line is `Subject: ...`, then an empty line, then the body (minijinja, UTF-8);
//! `<lang>/_footer.txt` is appended to every body (the unsubscribe line). Shipped inside the
//! binary; a directory (`[notices] templates_dir`) overrides any file by name. Loading checks
//! every catalogued type has both languages and that its templates use only the type's
//! declared fields (plus the standard ones), so a panel notice that passes the field check
//! always renders; a broken template is refused with its file and line.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};

use super::catalogue::{CATALOGUE, NoticeType};
use super::model::Language;

/// Variables every template may use besides the type's fields.
pub const STANDARD: &[&str] = &[
    "user_name",
    "client",
    "notice_id",
    "category",
    "unsubscribe_url",
    "expires",
    "domain",
];

const EMBEDDED: &[(&str, &str)] = &[
    (
        "en/_footer.txt",
        include_str!("../../notice-templates/en/_footer.txt"),
    ),
    (
        "en/account.agreement_changed.txt",
        include_str!("../../notice-templates/en/account.agreement_changed.txt"),
    ),
    (
        "en/account.deleted.txt",
        include_str!("../../notice-templates/en/account.deleted.txt"),
    ),
    (
        "en/account.password_changed.txt",
        include_str!("../../notice-templates/en/account.password_changed.txt"),
    ),
    (
        "en/account.profile_changed.txt",
        include_str!("../../notice-templates/en/account.profile_changed.txt"),
    ),
    (
        "en/balance.blocking_postponed.txt",
        include_str!("../../notice-templates/en/balance.blocking_postponed.txt"),
    ),
    (
        "en/balance.disconnected.txt",
        include_str!("../../notice-templates/en/balance.disconnected.txt"),
    ),
    (
        "en/balance.funds_shortage.txt",
        include_str!("../../notice-templates/en/balance.funds_shortage.txt"),
    ),
    (
        "en/balance.topup_failed.txt",
        include_str!("../../notice-templates/en/balance.topup_failed.txt"),
    ),
    (
        "en/documents.invoice.txt",
        include_str!("../../notice-templates/en/documents.invoice.txt"),
    ),
    (
        "en/documents.payment_received.txt",
        include_str!("../../notice-templates/en/documents.payment_received.txt"),
    ),
    (
        "en/documents.report.txt",
        include_str!("../../notice-templates/en/documents.report.txt"),
    ),
    (
        "en/domain.deletion_warning.txt",
        include_str!("../../notice-templates/en/domain.deletion_warning.txt"),
    ),
    (
        "en/domain.registered.txt",
        include_str!("../../notice-templates/en/domain.registered.txt"),
    ),
    (
        "en/domain.registrant_changed.txt",
        include_str!("../../notice-templates/en/domain.registrant_changed.txt"),
    ),
    (
        "en/domain.registration_failed.txt",
        include_str!("../../notice-templates/en/domain.registration_failed.txt"),
    ),
    (
        "en/domain.renewal_failed.txt",
        include_str!("../../notice-templates/en/domain.renewal_failed.txt"),
    ),
    (
        "en/domain.renewed.txt",
        include_str!("../../notice-templates/en/domain.renewed.txt"),
    ),
    (
        "en/domain.expiry_reminder.txt",
        include_str!("../../notice-templates/en/domain.expiry_reminder.txt"),
    ),
    (
        "en/domain.expired.txt",
        include_str!("../../notice-templates/en/domain.expired.txt"),
    ),
    (
        "en/domain.deleted.txt",
        include_str!("../../notice-templates/en/domain.deleted.txt"),
    ),
    (
        "en/maintenance.outage.txt",
        include_str!("../../notice-templates/en/maintenance.outage.txt"),
    ),
    (
        "en/maintenance.planned.txt",
        include_str!("../../notice-templates/en/maintenance.planned.txt"),
    ),
    (
        "en/operator.domain_conflict.txt",
        include_str!("../../notice-templates/en/operator.domain_conflict.txt"),
    ),
    (
        "en/operator.webhook_disabled.txt",
        include_str!("../../notice-templates/en/operator.webhook_disabled.txt"),
    ),
    (
        "en/services.disk_quota.txt",
        include_str!("../../notice-templates/en/services.disk_quota.txt"),
    ),
    (
        "en/services.order_created.txt",
        include_str!("../../notice-templates/en/services.order_created.txt"),
    ),
    (
        "en/services.settings_changed.txt",
        include_str!("../../notice-templates/en/services.settings_changed.txt"),
    ),
    (
        "en/services.status_changed.txt",
        include_str!("../../notice-templates/en/services.status_changed.txt"),
    ),
    (
        "ru/_footer.txt",
        include_str!("../../notice-templates/ru/_footer.txt"),
    ),
    (
        "ru/account.agreement_changed.txt",
        include_str!("../../notice-templates/ru/account.agreement_changed.txt"),
    ),
    (
        "ru/account.deleted.txt",
        include_str!("../../notice-templates/ru/account.deleted.txt"),
    ),
    (
        "ru/account.password_changed.txt",
        include_str!("../../notice-templates/ru/account.password_changed.txt"),
    ),
    (
        "ru/account.profile_changed.txt",
        include_str!("../../notice-templates/ru/account.profile_changed.txt"),
    ),
    (
        "ru/balance.blocking_postponed.txt",
        include_str!("../../notice-templates/ru/balance.blocking_postponed.txt"),
    ),
    (
        "ru/balance.disconnected.txt",
        include_str!("../../notice-templates/ru/balance.disconnected.txt"),
    ),
    (
        "ru/balance.funds_shortage.txt",
        include_str!("../../notice-templates/ru/balance.funds_shortage.txt"),
    ),
    (
        "ru/balance.topup_failed.txt",
        include_str!("../../notice-templates/ru/balance.topup_failed.txt"),
    ),
    (
        "ru/documents.invoice.txt",
        include_str!("../../notice-templates/ru/documents.invoice.txt"),
    ),
    (
        "ru/documents.payment_received.txt",
        include_str!("../../notice-templates/ru/documents.payment_received.txt"),
    ),
    (
        "ru/documents.report.txt",
        include_str!("../../notice-templates/ru/documents.report.txt"),
    ),
    (
        "ru/domain.deletion_warning.txt",
        include_str!("../../notice-templates/ru/domain.deletion_warning.txt"),
    ),
    (
        "ru/domain.registered.txt",
        include_str!("../../notice-templates/ru/domain.registered.txt"),
    ),
    (
        "ru/domain.registrant_changed.txt",
        include_str!("../../notice-templates/ru/domain.registrant_changed.txt"),
    ),
    (
        "ru/domain.registration_failed.txt",
        include_str!("../../notice-templates/ru/domain.registration_failed.txt"),
    ),
    (
        "ru/domain.renewal_failed.txt",
        include_str!("../../notice-templates/ru/domain.renewal_failed.txt"),
    ),
    (
        "ru/domain.renewed.txt",
        include_str!("../../notice-templates/ru/domain.renewed.txt"),
    ),
    (
        "ru/domain.expiry_reminder.txt",
        include_str!("../../notice-templates/ru/domain.expiry_reminder.txt"),
    ),
    (
        "ru/domain.expired.txt",
        include_str!("../../notice-templates/ru/domain.expired.txt"),
    ),
    (
        "ru/domain.deleted.txt",
        include_str!("../../notice-templates/ru/domain.deleted.txt"),
    ),
    (
        "ru/maintenance.outage.txt",
        include_str!("../../notice-templates/ru/maintenance.outage.txt"),
    ),
    (
        "ru/maintenance.planned.txt",
        include_str!("../../notice-templates/ru/maintenance.planned.txt"),
    ),
    (
        "ru/operator.domain_conflict.txt",
        include_str!("../../notice-templates/ru/operator.domain_conflict.txt"),
    ),
    (
        "ru/operator.webhook_disabled.txt",
        include_str!("../../notice-templates/ru/operator.webhook_disabled.txt"),
    ),
    (
        "ru/services.disk_quota.txt",
        include_str!("../../notice-templates/ru/services.disk_quota.txt"),
    ),
    (
        "ru/services.order_created.txt",
        include_str!("../../notice-templates/ru/services.order_created.txt"),
    ),
    (
        "ru/services.settings_changed.txt",
        include_str!("../../notice-templates/ru/services.settings_changed.txt"),
    ),
    (
        "ru/services.status_changed.txt",
        include_str!("../../notice-templates/ru/services.status_changed.txt"),
    ),
];

/// A template that does not load: where and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct TemplateError {
    /// File (and line, when known).
    pub location: String,
    /// Why.
    pub reason: String,
}

/// The loaded, checked templates.
pub struct Templates {
    env: Environment<'static>,
    /// Where they came from ("embedded" or the directory).
    pub source: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("source", &self.source)
            .finish()
    }
}

fn split_subject(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("Subject:")?;
    let (subject, body) = rest.split_once('\n')?;
    let body = body
        .strip_prefix('\n')
        .or_else(|| body.strip_prefix("\r\n"))?;
    Some((subject.trim(), body))
}

impl Templates {
    /// The shipped templates, overridden file by file from `dir` when given.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut files: BTreeMap<String, String> = EMBEDDED
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        let source = match dir {
            None => "embedded".to_owned(),
            Some(dir) => {
                for lang in ["en", "ru"] {
                    let sub = dir.join(lang);
                    let Ok(entries) = std::fs::read_dir(&sub) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if !name.ends_with(".txt") {
                            continue;
                        }
                        let text =
                            std::fs::read_to_string(e.path()).map_err(|err| TemplateError {
                                location: e.path().display().to_string(),
                                reason: err.to_string(),
                            })?;
                        files.insert(format!("{lang}/{name}"), text);
                    }
                }
                dir.display().to_string()
            }
        };
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let at = |name: &str, e: &minijinja::Error| TemplateError {
            location: match e.line() {
                Some(l) => format!("{source}/{name}, line {l}"),
                None => format!("{source}/{name}"),
            },
            reason: e.to_string(),
        };
        for (name, text) in &files {
            if name.ends_with("/_footer.txt") {
                env.add_template_owned(name.clone(), text.clone())
                    .map_err(|e| at(name, &e))?;
                continue;
            }
            let (subject, body) = split_subject(text).ok_or_else(|| TemplateError {
                location: format!("{source}/{name}, line 1"),
                reason: "must begin with \"Subject: ...\" and an empty line".into(),
            })?;
            env.add_template_owned(format!("{name}#subject"), subject.to_owned())
                .map_err(|e| at(name, &e))?;
            // The body starts on line 3 of the file; pad so errors name the file's line.
            env.add_template_owned(format!("{name}#body"), format!("\n\n{body}"))
                .map_err(|e| at(name, &e))?;
        }
        let t = Templates { env, source };
        t.check()?;
        Ok(t)
    }

    fn check(&self) -> Result<(), TemplateError> {
        for lang in ["en", "ru"] {
            if self
                .env
                .get_template(&format!("{lang}/_footer.txt"))
                .is_err()
            {
                return Err(TemplateError {
                    location: format!("{}/{lang}/_footer.txt", self.source),
                    reason: "missing".into(),
                });
            }
            for nt in CATALOGUE {
                let name = format!("{lang}/{}.txt", nt.name);
                for part in ["subject", "body"] {
                    let tpl = self
                        .env
                        .get_template(&format!("{name}#{part}"))
                        .map_err(|_| TemplateError {
                            location: format!("{}/{name}", self.source),
                            reason: format!(
                                "missing: every notice type needs a template per language ({})",
                                nt.name
                            ),
                        })?;
                    for var in tpl.undeclared_variables(false) {
                        if !nt.fields.contains(&var.as_str()) && !STANDARD.contains(&var.as_str()) {
                            return Err(TemplateError {
                                location: format!("{}/{name}", self.source),
                                reason: format!(
                                    "uses {var:?}, which is not a field of {} (fields: {}; always there: {})",
                                    nt.name,
                                    nt.fields.join(", "),
                                    STANDARD.join(", ")
                                ),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Renders (subject, body) of `nt` in `lang` with `vars` (the notice's data plus the
    /// standard variables). The footer is appended to the body.
    pub fn render(
        &self,
        nt: &NoticeType,
        lang: Language,
        vars: &BTreeMap<String, String>,
    ) -> Result<(String, String), String> {
        let name = format!("{}/{}.txt", lang.as_str(), nt.name);
        let get = |n: &str| self.env.get_template(n).map_err(|e| e.to_string());
        let subject = get(&format!("{name}#subject"))?
            .render(vars)
            .map_err(|e| e.to_string())?;
        let body = get(&format!("{name}#body"))?
            .render(vars)
            .map_err(|e| e.to_string())?;
        let footer = get(&format!("{}/_footer.txt", lang.as_str()))?
            .render(vars)
            .map_err(|e| e.to_string())?;
        let subject = subject.replace(['\r', '\n'], " ");
        Ok((subject, format!("{}\n{}", body.trim(), footer.trim_end())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notices::catalogue::lookup;

    #[test]
    fn shipped_templates_load_and_render() {
        let t = Templates::load(None).unwrap();
        let nt = lookup("domain.registered").unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("domain".to_owned(), "пример.рф".to_owned());
        vars.insert("user_name".to_owned(), "Иван".to_owned());
        let (s, b) = t.render(nt, Language::Ru, &vars).unwrap();
        assert_eq!(s, "Домен пример.рф зарегистрирован");
        assert!(b.contains("Здравствуйте, Иван."), "{b}");
        assert!(!b.contains("Отписаться"), "{b}");
        vars.insert("unsubscribe_url".to_owned(), "http://x/u".to_owned());
        vars.insert("category".to_owned(), "domains".to_owned());
        let (_, b) = t.render(nt, Language::En, &vars).unwrap();
        assert!(b.contains("Unsubscribe: http://x/u"), "{b}");
    }

    #[test]
    fn a_broken_or_overreaching_template_is_refused_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("en")).unwrap();
        let f = dir.path().join("en/domain.renewed.txt");
        std::fs::write(&f, "Subject: x\n\nline one\n{% if %}\n").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err();
        assert!(e.location.ends_with("en/domain.renewed.txt, line 4"), "{e}");
        std::fs::write(&f, "Subject: x\n\n{{ password }}\n").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err();
        assert!(e.reason.contains("\"password\""), "{e}");
    }
}
