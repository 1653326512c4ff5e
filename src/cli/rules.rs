//! `regmail rules test FILE.eml --rules RULES.toml`: tries a rules file that is not loaded yet
//! (the one being edited) on a saved message, here in the CLI process, with the same parser,
//! classification and rule evaluation the intake uses. No daemon is needed; which request the
//! reply would answer is the daemon's to say (`regmail rules test FILE.eml` after a reload).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::config::Config;
use crate::inbound::classify::{ClassifyContext, classify};
use crate::inbound::parse::{ParseLimits, parse};
use crate::inbound::rules::Rules;

/// What the rules file makes of the message, as JSON (the same field names as
/// `POST /v1/rules/test`).
pub(super) fn evaluate(config: &Config, rules_file: &Path, raw: &[u8]) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(rules_file)
        .with_context(|| format!("cannot read the rules file {}", rules_file.display()))?;
    // A broken file: its line and the reason, as `reload` would refuse it.
    let rules =
        Rules::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", rules_file.display()))?;
    let charset = config
        .registrar
        .charset
        .as_deref()
        .and_then(crate::outbound::Charset::parse)
        .unwrap_or(crate::outbound::Charset::Koi8R);
    let limits = ParseLimits {
        max_size: config.inbound.max_message_bytes as usize,
        max_depth: config.inbound.max_nesting,
        ..ParseLimits::default()
    };
    let mail = match parse(raw, &limits, charset.encoding()) {
        Ok(m) => m,
        Err(q) => {
            return Ok(json!({
                "rules_file": rules_file.display().to_string(),
                "outcome": "Quarantined",
                "reason": q.reason,
            }));
        }
    };
    let ctx = ClassifyContext::new(
        &config.registrar.callback,
        &config.registrar.message_id_host,
        &config.registrar.senders,
    );
    let class = classify(&mail, &ctx);
    let evaluation = rules.evaluate(&mail.subject, &mail.reply_text);
    let m = evaluation.matched.as_ref();
    let reason = if !class.from_registrar() {
        format!(
            "sender {:?} is not one of the registrar's addresses ([registrar] senders): the daemon would keep it as Ignored",
            mail.from
        )
    } else if m.is_none() {
        "no rule in this file matches: the daemon would keep it as Unmatched".to_owned()
    } else {
        String::new()
    };
    Ok(json!({
        "rules_file": rules_file.display().to_string(),
        "rules": rules.len(),
        "outcome": if m.is_some() { "Matched" } else { "Unmatched" },
        "reason": reason,
        "rule": m.map(|r| &r.rule),
        "event": m.map(|r| r.event.as_str()),
        "kinds": m.map(|r| r.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
        "captures": m.map(|r| json!({
            "domain": r.captures.domain.as_ref().map(|d| d.as_str()),
            "handle": r.captures.handle,
            "task_id": r.captures.task_id,
            "expires": r.captures.expires,
            "reason": r.captures.reason,
        })),
        "rejected_captures": evaluation.rejected.iter().map(|c| json!({"rule": c.rule, "capture": c.capture, "value": c.value, "reason": c.reason})).collect::<Vec<_>>(),
        "from_registrar": class.from_registrar(),
        "from": mail.from,
        "subject": mail.subject,
    }))
}

/// Prints the evaluation for people.
pub(super) fn print(out: &mut impl Write, v: &Value) -> anyhow::Result<()> {
    use super::s;
    for k in [
        "rules_file",
        "outcome",
        "reason",
        "rule",
        "event",
        "kinds",
        "from",
        "subject",
    ] {
        let val = s(v, k);
        if !val.is_empty() {
            writeln!(out, "{k:<12} {val}")?;
        }
    }
    if let Some(c) = v.get("captures").filter(|c| !c.is_null()) {
        writeln!(out, "captures     {c}")?;
    }
    for r in super::items(v, "rejected_captures") {
        writeln!(
            out,
            "skipped      rule {} capture {} = {:?}: {}",
            s(&r, "rule"),
            s(&r, "capture"),
            s(&r, "value"),
            s(&r, "reason")
        )?;
    }
    writeln!(
        out,
        "request      (not looked up with --rules; after `regmail reload`, `regmail rules test FILE` names it)"
    )?;
    Ok(())
}
