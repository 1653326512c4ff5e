//! `regmail lifecycle preview --days N` (issue 11 part 4): what the lifecycle pass will do and
//! send in the next N days, per domain and recipient (`GET /v1/lifecycle/preview`).

use std::io::Write;

use clap::Subcommand;

use super::{ApiClient, items, print_json, s, table};

/// `regmail lifecycle ...`.
#[derive(Debug, Subcommand)]
pub enum LifecycleAction {
    /// Everything the scheduler will do and send in the next N days: reminders (and the ones
    /// it will skip), expiries, deletions, automatic renewals, with each notice's recipients.
    Preview {
        /// How many days ahead (0..=400).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

pub(super) fn run(
    action: LifecycleAction,
    client: &ApiClient,
    json_out: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let LifecycleAction::Preview { days } = action;
    let v = client.get(&format!("/v1/lifecycle/preview?days={days}"))?;
    if json_out {
        return print_json(out, &v);
    }
    let mut rows = Vec::new();
    for it in items(&v, "items") {
        let recipients: Vec<String> = items(&it, "recipients")
            .iter()
            .map(|r| format!("{} ({})", s(r, "address"), s(r, "channel")))
            .collect();
        rows.push(vec![
            s(&it, "date"),
            s(&it, "domain"),
            s(&it, "action"),
            s(&it, "notice"),
            recipients.join(", "),
            s(&it, "detail"),
        ]);
    }
    table(
        out,
        &["DATE", "DOMAIN", "ACTION", "NOTICE", "RECIPIENTS", "DETAIL"],
        &rows,
    )
}
