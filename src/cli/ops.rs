//! The operator's commands for the API calls that had none: pay, renew, record an outcome,
//! show and update a client.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::{ApiClient, enc, print_domain, print_json, s};

/// `regmail client ...`.
#[derive(Debug, Subcommand)]
pub enum ClientAction {
    /// Show a client: status, handle, registrant and contact data, open request.
    Show {
        /// The client id.
        id: String,
    },
    /// Correct a client's data while it is Unregistered or in Error (PUT /v1/clients/{id}).
    Update {
        /// The client id.
        id: String,
        /// A JSON file with the whole new body ({"registrant": {...}, "contact": {...}});
        /// `-` reads standard input.
        #[arg(long, conflicts_with = "set")]
        file: Option<PathBuf>,
        /// Change one registrant field and keep the rest, e.g. `--set phone="+7 495 1234567"`;
        /// repeatable. A list field (passport, postal_addr) takes lines separated by `|`.
        #[arg(long, value_name = "FIELD=VALUE")]
        set: Vec<String>,
    },
}

/// `regmail pay DOMAIN`.
pub(super) fn pay(
    c: &ApiClient,
    out: &mut impl Write,
    json: bool,
    domain: &str,
) -> anyhow::Result<()> {
    let v = c.post(&format!("/v1/domains/{}/payment", enc(domain)), &json!({}))?;
    shown(out, json, &v)
}

/// `regmail renew DOMAIN --years N`.
pub(super) fn renew(
    c: &ApiClient,
    out: &mut impl Write,
    json: bool,
    domain: &str,
    years: u8,
) -> anyhow::Result<()> {
    let v = c.post(
        &format!("/v1/domains/{}/renew", enc(domain)),
        &json!({ "years": years }),
    )?;
    shown(out, json, &v)
}

fn shown(out: &mut impl Write, json: bool, v: &Value) -> anyhow::Result<()> {
    if json {
        print_json(out, v)
    } else {
        print_domain(out, v)
    }
}

/// The fields of `regmail outcome`.
pub(super) struct OutcomeArgs {
    pub request: String,
    pub event: String,
    pub handle: Option<String>,
    pub expires: Option<String>,
    pub task_id: Option<String>,
    pub reason: Option<String>,
    pub note: String,
}

/// `regmail outcome REQUEST --event completed ...`: a registrar answer learned elsewhere.
pub(super) fn outcome(
    c: &ApiClient,
    out: &mut impl Write,
    json: bool,
    a: OutcomeArgs,
) -> anyhow::Result<()> {
    let mut body = json!({ "event": a.event, "note": a.note });
    for (k, v) in [
        ("handle", a.handle),
        ("expires", a.expires),
        ("task_id", a.task_id),
        ("reason", a.reason),
    ] {
        if let Some(x) = v {
            body[k] = json!(x);
        }
    }
    let v = c.post(&format!("/v1/requests/{}/outcome", enc(&a.request)), &body)?;
    if json {
        return print_json(out, &v);
    }
    writeln!(
        out,
        "request {} ({} {}) is now {}",
        s(&v, "id"),
        s(&v, "kind"),
        [s(&v, "domain"), s(&v, "client_id")].join(" ").trim(),
        s(&v, "state")
    )?;
    Ok(())
}

/// `regmail client show|update`.
pub(super) fn client(
    c: &ApiClient,
    out: &mut impl Write,
    json: bool,
    action: ClientAction,
) -> anyhow::Result<()> {
    let v = match action {
        ClientAction::Show { id } => c.get(&format!("/v1/clients/{}", enc(&id)))?,
        ClientAction::Update { id, file, set } => {
            let body = match file {
                Some(f) => {
                    let text = if f.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&f)
                            .with_context(|| format!("cannot read {}", f.display()))?
                    };
                    serde_json::from_str::<Value>(&text)
                        .with_context(|| format!("{} is not JSON", f.display()))?
                }
                None if set.is_empty() => bail!("give --file BODY.json or --set FIELD=VALUE"),
                None => {
                    let now = c.get(&format!("/v1/clients/{}", enc(&id)))?;
                    let mut body = json!({ "registrant": now["registrant"].clone() });
                    if !now["contact"].is_null() {
                        body["contact"] = now["contact"].clone();
                    }
                    for kv in &set {
                        let Some((k, val)) = kv.split_once('=') else {
                            bail!("--set {kv:?}: write FIELD=VALUE, e.g. phone=\"+7 495 1234567\"");
                        };
                        let reg = &mut body["registrant"];
                        reg[k] = if reg.get(k).is_some_and(Value::is_array) {
                            json!(val.split('|').map(str::trim).collect::<Vec<_>>())
                        } else {
                            json!(val)
                        };
                    }
                    body
                }
            };
            c.put(&format!("/v1/clients/{}", enc(&id)), &body)?
        }
    };
    if json {
        return print_json(out, &v);
    }
    print_client(out, &v)
}

fn print_client(out: &mut impl Write, v: &Value) -> anyhow::Result<()> {
    writeln!(out, "client:   {}", s(v, "id"))?;
    writeln!(out, "status:   {}", s(v, "status"))?;
    writeln!(out, "handle:   {}", s(v, "handle"))?;
    let req = s(v, "open_request");
    if !req.is_empty() {
        writeln!(out, "request:  {req}")?;
    }
    let err = s(v, "last_error");
    if !err.is_empty() {
        writeln!(out, "error:    {err}")?;
    }
    for (title, obj) in [("registrant", &v["registrant"]), ("contact", &v["contact"])] {
        let Some(map) = obj.as_object() else { continue };
        writeln!(out, "{title}:")?;
        for (k, val) in map {
            let shown = match val {
                Value::Array(xs) => xs
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" | "),
                Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            writeln!(out, "  {k:<12} {shown}")?;
        }
    }
    Ok(())
}

/// The request `regmail render --domain D` shows: the domain's open request; while the domain
/// waits for its client, the client's open request (the one that goes out first); else the
/// domain's latest request. Says on stderr which one it took when it is not the domain's own.
pub(super) fn request_of_domain(c: &ApiClient, domain: &str) -> anyhow::Result<String> {
    let d = c.get(&format!("/v1/domains/{}", enc(domain)))?;
    if let Some(id) = d["open_request"]["id"].as_str() {
        return Ok(id.to_owned());
    }
    let client = s(&d, "client_id");
    if !client.is_empty() {
        let cv = c.get(&format!("/v1/clients/{}", enc(&client)))?;
        if let Some(id) = cv["open_request"].as_str() {
            eprintln!(
                "{domain} waits for its client {client}: showing the client's open request {id}"
            );
            return Ok(id.to_owned());
        }
    }
    let log = c.get(&format!("/v1/domains/{}/log?limit=1000", enc(domain)))?;
    let last = super::items(&log, "entries")
        .iter()
        .rev()
        .find_map(|e| e["request"].as_str().map(str::to_owned));
    match last {
        Some(id) => {
            eprintln!("{domain} has no open request: showing its latest request {id}");
            Ok(id)
        }
        None => {
            bail!("{domain} has no request yet (an unpaid order waits for `regmail pay {domain}`)")
        }
    }
}
