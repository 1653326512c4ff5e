//! Operator commands of the notice engine (issue 10 §8): notices and deliveries, users and
//! their subscriptions, webhook endpoints, replay. Each prints a table, or JSON with `--json`.

use std::io::Write;

use clap::Subcommand;
use serde_json::{Value, json};

use super::{ApiClient, enc, items, print_json, s, table};

/// Notice commands (flattened into `regmail`'s subcommands).
#[derive(Debug, Subcommand)]
pub enum NoticeCommand {
    /// Notices, newest first (filter by client, domain, type, user).
    Notices {
        /// Only this client's.
        #[arg(long)]
        client: Option<String>,
        /// Only about this domain.
        #[arg(long)]
        domain: Option<String>,
        /// Only of this type (e.g. domain.registered).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only those delivered to this user id.
        #[arg(long)]
        user: Option<String>,
    },
    /// One notice with its deliveries and their attempts.
    Notice {
        /// The notice id.
        id: u64,
    },
    /// Deliveries, newest first.
    Deliveries {
        /// Only Failed ones.
        #[arg(long)]
        failed: bool,
        /// Only in this state (Queued, Sent, Failed, Held, Bounced).
        #[arg(long)]
        state: Option<String>,
        /// Only on this channel (email, webhook).
        #[arg(long)]
        channel: Option<String>,
        /// Only to this client's users.
        #[arg(long)]
        client: Option<String>,
    },
    /// A client's users and what they hear.
    Users {
        /// The client id.
        client: String,
    },
    /// Send a panel notice (`POST /v1/notices`).
    Notify {
        /// The client.
        #[arg(long)]
        client: Option<String>,
        /// The notice type.
        #[arg(long = "type")]
        kind: String,
        /// Data fields, `key=value`, repeated.
        #[arg(long = "data")]
        data: Vec<String>,
    },
    /// Webhook endpoints; `--add URL --events 'domain.*'` adds one (its secret is shown once).
    Webhooks {
        /// Add an endpoint with this URL.
        #[arg(long)]
        add: Option<String>,
        /// Event filters for --add (repeat; `*`, `domain.*`, a type).
        #[arg(long)]
        events: Vec<String>,
        /// Enable this endpoint.
        #[arg(long)]
        enable: Option<String>,
        /// Disable this endpoint.
        #[arg(long)]
        disable: Option<String>,
    },
    /// Replay one delivery, or (`--endpoint ID --since TIME`) everything for an endpoint.
    Replay {
        /// A delivery id.
        delivery: Option<u64>,
        /// An endpoint id.
        #[arg(long)]
        endpoint: Option<String>,
        /// With --endpoint: from this time on (RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

fn query(pairs: &[(&str, Option<&String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn delivery_rows(v: &[Value]) -> Vec<Vec<String>> {
    v.iter()
        .map(|d| {
            let attempts = items(d, "attempts");
            let last = attempts.last();
            vec![
                s(d, "id"),
                s(d, "notice_id"),
                s(d, "channel"),
                s(d, "address"),
                s(d, "state"),
                attempts.len().to_string(),
                last.map(|a| s(a, "answer")).unwrap_or_default(),
            ]
        })
        .collect()
}

const DELIVERY_HEAD: [&str; 7] = [
    "ID",
    "NOTICE",
    "CHANNEL",
    "TO",
    "STATE",
    "ATTEMPTS",
    "LAST ANSWER",
];

/// Runs one notice command.
pub(super) fn run(
    cmd: NoticeCommand,
    client: &ApiClient,
    json_out: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let v = match &cmd {
        NoticeCommand::Notices {
            client: c,
            domain,
            kind,
            user,
        } => client.get(&format!(
            "/v1/notices{}",
            query(&[
                ("client", c.as_ref()),
                ("domain", domain.as_ref()),
                ("type", kind.as_ref()),
                ("user", user.as_ref()),
            ])
        ))?,
        NoticeCommand::Notice { id } => client.get(&format!("/v1/notices/{id}"))?,
        NoticeCommand::Deliveries {
            failed,
            state,
            channel,
            client: c,
        } => {
            let failed_s = "Failed".to_owned();
            let st = if *failed {
                Some(&failed_s)
            } else {
                state.as_ref()
            };
            client.get(&format!(
                "/v1/deliveries{}",
                query(&[
                    ("state", st),
                    ("channel", channel.as_ref()),
                    ("client", c.as_ref()),
                ])
            ))?
        }
        NoticeCommand::Users { client: c } => {
            client.get(&format!("/v1/clients/{}/users", enc(c)))?
        }
        NoticeCommand::Notify {
            client: c,
            kind,
            data,
        } => {
            let mut d = serde_json::Map::new();
            for kv in data {
                let Some((k, v)) = kv.split_once('=') else {
                    anyhow::bail!("--data {kv:?}: write key=value");
                };
                d.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            client.post(
                "/v1/notices",
                &json!({"client_id": c, "type": kind, "data": d}),
            )?
        }
        NoticeCommand::Webhooks {
            add,
            events,
            enable,
            disable,
        } => {
            if let Some(url) = add {
                client.post("/v1/webhooks", &json!({"url": url, "events": events}))?
            } else if let Some(id) = enable {
                client.post(&format!("/v1/webhooks/{}/enable", enc(id)), &json!({}))?
            } else if let Some(id) = disable {
                client.post(&format!("/v1/webhooks/{}/disable", enc(id)), &json!({}))?
            } else {
                client.get("/v1/webhooks")?
            }
        }
        NoticeCommand::Replay {
            delivery,
            endpoint,
            since,
        } => match (delivery, endpoint, since) {
            (Some(id), None, None) => {
                client.post(&format!("/v1/deliveries/{id}/replay"), &json!({}))?
            }
            (None, Some(ep), Some(t)) => client.post(
                &format!("/v1/webhooks/{}/replay", enc(ep)),
                &json!({"since": t}),
            )?,
            _ => anyhow::bail!("give a delivery id, or --endpoint ID --since TIME"),
        },
    };
    if json_out {
        return print_json(out, &v);
    }
    match cmd {
        NoticeCommand::Notices { .. } => {
            let rows: Vec<Vec<String>> = items(&v, "notices")
                .iter()
                .map(|n| {
                    vec![
                        s(n, "id"),
                        s(n, "type"),
                        s(n, "client_id"),
                        s(n, "domain"),
                        items(n, "delivery_ids").len().to_string(),
                        s(n, "created"),
                    ]
                })
                .collect();
            table(
                out,
                &["ID", "TYPE", "CLIENT", "DOMAIN", "DELIVERIES", "CREATED"],
                &rows,
            )
        }
        NoticeCommand::Notice { .. } => {
            writeln!(
                out,
                "notice {}: {} ({}{}) client {} domain {}",
                s(&v, "id"),
                s(&v, "type"),
                s(&v, "category"),
                if v["mandatory"] == true {
                    ", mandatory"
                } else {
                    ""
                },
                s(&v, "client_id"),
                s(&v, "domain")
            )?;
            table(
                out,
                &DELIVERY_HEAD,
                &delivery_rows(&items(&v, "deliveries")),
            )
        }
        NoticeCommand::Deliveries { .. } => table(
            out,
            &DELIVERY_HEAD,
            &delivery_rows(&items(&v, "deliveries")),
        ),
        NoticeCommand::Users { .. } => {
            let rows: Vec<Vec<String>> = items(&v, "users")
                .iter()
                .map(|u| {
                    let subs = u["subscriptions"]
                        .as_object()
                        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
                        .unwrap_or_default();
                    vec![
                        s(u, "id"),
                        s(u, "role"),
                        s(u, "email"),
                        s(u, "language"),
                        subs,
                    ]
                })
                .collect();
            table(
                out,
                &["USER", "ROLE", "EMAIL", "LANG", "SUBSCRIBED (email)"],
                &rows,
            )
        }
        NoticeCommand::Webhooks { .. } if v.get("webhooks").is_some() => {
            let rows: Vec<Vec<String>> = items(&v, "webhooks")
                .iter()
                .map(|e| {
                    vec![
                        s(e, "id"),
                        s(e, "url"),
                        items(e, "events")
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect::<Vec<_>>()
                            .join(","),
                        s(e, "enabled"),
                        s(e, "disabled_reason"),
                    ]
                })
                .collect();
            table(
                out,
                &["ID", "URL", "EVENTS", "ENABLED", "WHY DISABLED"],
                &rows,
            )
        }
        _ => print_json(out, &v),
    }
}
