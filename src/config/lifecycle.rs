//! `[lifecycle]`: the domain's life after registration (issue 11). Every key optional:
//!
//! ```toml
//! [lifecycle]
//! reminder_days = [90, 60, 30, 15, 1]  # expiry reminders, days before expiry
//! grace_days = 10                      # renewal accepted this long after expiry, unless the
//!                                      # registrar profile has a rule for the TLD
//! pass_interval = "60s"                # how often the scheduler looks for due domains
//! test_clock = false                   # allow REGMAIL_TEST_CLOCK (rehearsals only; see clock.rs)
//! ```

use std::time::Duration;

use super::Reader;

/// `[lifecycle]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// Reminder offsets, days before expiry, largest first.
    pub reminder_days: Vec<u16>,
    /// Days of grace after expiry (the profile's per-TLD rules win).
    pub grace_days: u16,
    /// How often the lifecycle pass runs.
    pub pass_interval: Duration,
    /// Whether `REGMAIL_TEST_CLOCK` may be honoured (both are needed; see `crate::clock`).
    pub test_clock: bool,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            reminder_days: crate::core::lifecycle::DEFAULT_REMINDER_DAYS.to_vec(),
            grace_days: crate::core::lifecycle::DEFAULT_GRACE_DAYS,
            pass_interval: Duration::from_secs(60),
            test_clock: false,
        }
    }
}

/// Reads `[lifecycle]`, recording problems with their keys.
pub(super) fn read(r: &mut Reader, root: &toml::Table) -> LifecycleConfig {
    let t = r.section(
        root,
        "lifecycle",
        &["reminder_days", "grace_days", "pass_interval", "test_clock"],
    );
    let mut c = LifecycleConfig::default();
    if let Some(v) = t.get("reminder_days") {
        match v.as_array() {
            Some(a) => {
                let mut days = Vec::new();
                for x in a {
                    match x.as_integer() {
                        Some(n) if (1..=365).contains(&n) => days.push(n as u16),
                        _ => r.problem(
                            "lifecycle.reminder_days",
                            format!("{x} is not a whole number of days in 1..=365"),
                        ),
                    }
                }
                days.sort_unstable_by(|a, b| b.cmp(a));
                let n = days.len();
                days.dedup();
                if days.len() != n {
                    r.problem(
                        "lifecycle.reminder_days",
                        "lists the same offset twice".into(),
                    );
                }
                c.reminder_days = days;
            }
            None => r.problem(
                "lifecycle.reminder_days",
                format!(
                    "must be a list of days such as [90, 60, 30, 15, 1], not {}",
                    v.type_str()
                ),
            ),
        }
    }
    if let Some(n) = r.int(&t, "lifecycle", "grace_days", 0, 365) {
        c.grace_days = n as u16;
    }
    if let Some(d) = r.duration(&t, "lifecycle", "pass_interval") {
        c.pass_interval = d.unsigned_abs();
    }
    match t.get("test_clock") {
        None => {}
        Some(toml::Value::Boolean(b)) => c.test_clock = *b,
        Some(other) => r.problem(
            "lifecycle.test_clock",
            format!("must be true or false, not {}", other.type_str()),
        ),
    }
    c
}
