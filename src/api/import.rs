//! `POST /v1/import`: a hosting company's existing portfolio (issue 13). The body is JSON
//! lines, one object a line: `{"client": <the body of POST /v1/clients, with its "handle">}`
//! or `{"domain": {"domain", "client_id", "expires", "order_id", "description",
//! "nameservers", "auto_renew"}}`. Every row is validated on its own; valid rows are written
//! in chunks (one transaction per chunk), rejected rows are reported with their
//! line number, field and reason. The chunks share one flush, made before the answer (a crash
//! before it leaves some chunks written and nothing acknowledged; importing the file again
//! counts them unchanged). Importing the same rows again changes nothing: a client or
//! domain already held with the same data counts as unchanged. One `import` entry in the
//! action log records what an import changed (none when it changed nothing).

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, Shared, blocking, input, today};
use crate::core::import::{ImportVerdict, ImportedDomain, import_domain};
use crate::core::{
    self, Actor, Client, ClientId, Ctx, Domain, DomainName, Event, Evidence, LogDraft, NewClient,
    Request, RequestId, StateView, Transition, ViewError,
};
use crate::idsource::UuidIds;
use crate::store::Store;

/// Largest import body: the CLI sends a big file in parts well under this.
pub const MAX_IMPORT_BYTES: usize = 32 << 20;
/// Rows written per transaction. sled 0.34 keeps every page version a transaction replaces
/// until the transaction ends (its commit holds one epoch guard for all of its writes), so the
/// memory an import takes grows with this: 2,000 rows (12,000 keys) a transaction peaked about
/// 50 MB higher than 1,000 at 100k domains, for no faster an import. Below 1,000 the peak
/// falls further but the store grows on disk (500 rows: about 15% more bytes a domain).
const CHUNK: usize = 1000;

/// One parsed row.
enum Row {
    Client(Box<NewClient>),
    Domain(Box<ImportedDomain>),
}

/// A rejected row.
struct Rejected {
    line: usize,
    field: String,
    reason: String,
}

/// Counts of one import.
#[derive(Default)]
struct Report {
    imported: u64,
    unchanged: u64,
    clients: u64,
    domains: u64,
    rejected: Vec<Rejected>,
}

/// `POST /v1/import`.
pub async fn import(State(state): Shared, body: Body) -> Result<Json<Value>, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_IMPORT_BYTES)
        .await
        .map_err(|_| ApiError {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            field: "body".into(),
            message: format!(
                "an import body may hold at most {MAX_IMPORT_BYTES} bytes; send a large file in \
                 parts (regmail import does)"
            ),
        })?;
    blocking(move || run(&state, &bytes, crate::clock::now())).await
}

/// Parses, validates and writes an import body; the answer counts the rows.
fn run(state: &AppState, body: &[u8], now: Timestamp) -> Result<Json<Value>, ApiError> {
    let mut report = Report::default();
    let mut rows: Vec<(usize, Row)> = Vec::new();
    let today = today();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let number = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_row(state, line, today) {
            Ok(row) => rows.push((number, row)),
            Err((field, reason)) => report.rejected.push(Rejected {
                line: number,
                field,
                reason,
            }),
        }
    }
    // One flush for the whole body, at the end of the batch (`Store::batch`): the answer below
    // comes only after it, so nothing acknowledged is lost (ARCHITECTURE: crash safety).
    state
        .store
        .batch(|| write_rows(state, &rows, now, &mut report))
        .map_err(ApiError::from_store)??;
    // The parsed rows and chunks of a large body are freed now (mimalloc hands the pages back
    // to the kernel by itself after its purge delay: src/main.rs).
    drop(rows);
    report.rejected.sort_by_key(|r| r.line);
    let rejections: Vec<Value> = report
        .rejected
        .iter()
        .map(|r| json!({"line": r.line, "field": r.field, "reason": r.reason}))
        .collect();
    Ok(Json(json!({
        "imported": report.imported,
        "unchanged": report.unchanged,
        "rejected": report.rejected.len(),
        "rejections": rejections,
    })))
}

/// Writes the valid rows in chunks of [`CHUNK`] (one transaction each), then the import's
/// entry in the action log; inside the caller's [`Store::batch`], so without a flush.
fn write_rows(
    state: &AppState,
    rows: &[(usize, Row)],
    now: Timestamp,
    report: &mut Report,
) -> Result<(), ApiError> {
    for chunk in rows.chunks(CHUNK) {
        let mut ids = UuidIds;
        let built = state
            .store
            .apply_built(
                |store| {
                    Ok::<_, ApiError>(build_chunk(
                        store,
                        chunk,
                        now,
                        &state.policy,
                        &mut ids,
                        report,
                    ))
                },
                now,
            )
            .map_err(|e| ApiError::from_apply(e, "body"))?;
        built?;
    }
    if report.imported > 0 {
        let draft = LogDraft {
            at: now,
            actor: Actor::Api,
            action: "import".into(),
            message: format!(
                "portfolio import: {} clients and {} domains imported, {} rows unchanged, {} rejected",
                report.clients,
                report.domains,
                report.unchanged,
                report.rejected.len()
            ),
            domain: None,
            client: None,
            request: None,
            status_before: None,
            status_after: None,
            evidence: Evidence::default(),
        };
        let t = Transition {
            log: vec![draft],
            ..Transition::default()
        };
        state
            .store
            .apply_built(|_| Ok::<_, ApiError>(t), now)
            .map_err(|e| ApiError::from_apply(e, "body"))??;
    }
    Ok(())
}

/// Parses one line into a row, or names the field at fault (prefixed with the row's kind).
fn parse_row(
    state: &AppState,
    line: &[u8],
    today: jiff::civil::Date,
) -> Result<Row, (String, String)> {
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| ("line".to_owned(), format!("not a JSON object: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(("line".into(), "not a JSON object".into()));
    };
    let kind = match (obj.get("client"), obj.get("domain"), obj.len()) {
        (Some(c), None, 1) => ("client", c),
        (None, Some(d), 1) => ("domain", d),
        _ => {
            return Err((
                "line".into(),
                "a line holds exactly one of {\"client\": {...}} or {\"domain\": {...}}".into(),
            ));
        }
    };
    let prefixed = |e: ApiError| (format!("{}.{}", kind.0, e.field), e.message);
    match kind {
        ("client", body) => {
            let new = input::new_client(body, today).map_err(prefixed)?;
            if new.existing_handle.is_none() {
                return Err((
                    "client.handle".into(),
                    "is required in an import: an imported client is registered at the registrar already".into(),
                ));
            }
            super::check_charset(state, &new.registrant).map_err(prefixed)?;
            Ok(Row::Client(Box::new(new)))
        }
        (_, body) => Ok(Row::Domain(Box::new(
            parse_domain(state, body).map_err(prefixed)?,
        ))),
    }
}

/// Validates a domain row with the rules of an order (names, glue, description), plus expiry.
fn parse_domain(state: &AppState, body: &Value) -> Result<ImportedDomain, ApiError> {
    let o = input::Obj::root(body)?;
    o.only(&[
        "domain",
        "client_id",
        "expires",
        "order_id",
        "description",
        "nameservers",
        "auto_renew",
    ])?;
    let expires_text = o.text("expires", 10)?;
    let expires = input::parse_date(&expires_text).ok_or_else(|| {
        ApiError::invalid(
            "expires",
            format!("{expires_text:?} is not a date YYYY-MM-DD"),
        )
    })?;
    let mut as_order = body.clone();
    if let Some(m) = as_order.as_object_mut() {
        m.remove("expires");
        m.insert("paid".into(), Value::Bool(true));
    }
    let order = input::domain_order(&as_order)?;
    if let Some((field, c)) =
        crate::outbound::render::unencodable_description(state.charset, &order.description)
    {
        return Err(super::charset_error(state, field, c));
    }
    Ok(ImportedDomain {
        name: order.name,
        client_id: order.client_id,
        expires,
        order_id: order.order_id,
        description: order.description,
        nameservers: order.nameservers,
        auto_renew: order.auto_renew,
    })
}

/// The clients and domains a chunk writes, read against the store and the chunk's own rows
/// (a domain may name a client imported a few lines before it).
struct Overlay<'a> {
    store: &'a Store,
    clients: HashMap<ClientId, Client>,
    domains: HashMap<DomainName, Domain>,
}

impl Overlay<'_> {
    /// The client as the chunk sees it, read from the store once per chunk (a client's ten
    /// or thousand domain rows do not decode its record each time).
    fn client_cached(&mut self, id: &ClientId) -> Result<Option<Client>, ViewError> {
        if let Some(c) = self.clients.get(id) {
            return Ok(Some(c.clone()));
        }
        let c = StateView::client(self.store, id)?;
        if let Some(c) = &c {
            self.clients.insert(id.clone(), c.clone());
        }
        Ok(c)
    }
}

impl StateView for Overlay<'_> {
    fn client(&self, id: &ClientId) -> Result<Option<Client>, ViewError> {
        match self.clients.get(id) {
            Some(c) => Ok(Some(c.clone())),
            None => StateView::client(self.store, id),
        }
    }
    fn domain(&self, name: &DomainName) -> Result<Option<Domain>, ViewError> {
        match self.domains.get(name) {
            Some(d) => Ok(Some(d.clone())),
            None => StateView::domain(self.store, name),
        }
    }
    fn request(&self, id: RequestId) -> Result<Option<Request>, ViewError> {
        StateView::request(self.store, id)
    }
    fn domains_of_client(&self, id: &ClientId) -> Result<Vec<Domain>, ViewError> {
        StateView::domains_of_client(self.store, id)
    }
    fn handle_counter(&self) -> Result<u64, ViewError> {
        StateView::handle_counter(self.store)
    }
    fn reminder_marks(
        &self,
        domain: &DomainName,
        expires: jiff::civil::Date,
    ) -> Result<Vec<(u16, core::lifecycle::ReminderOutcome)>, ViewError> {
        StateView::reminder_marks(self.store, domain, expires)
    }
}

/// Decides every row of a chunk against the store (read under its writer lock) and returns
/// what to write.
fn build_chunk(
    store: &Store,
    chunk: &[(usize, Row)],
    now: Timestamp,
    policy: &core::Policy,
    ids: &mut UuidIds,
    report: &mut Report,
) -> Transition {
    let mut view = Overlay {
        store,
        clients: HashMap::new(),
        domains: HashMap::new(),
    };
    let mut out = Transition::default();
    let mut reject = |line: usize, field: String, reason: String| {
        report.rejected.push(Rejected {
            line,
            field,
            reason,
        })
    };
    let mut imported = (0u64, 0u64, 0u64);
    for (line, row) in chunk {
        match row {
            Row::Client(new) => {
                let mut ctx = Ctx {
                    now,
                    ids: &mut *ids,
                    policy,
                };
                match core::apply(&view, Event::CreateClient((**new).clone()), &mut ctx) {
                    Ok(t) if t.is_noop() => imported.2 += 1,
                    Ok(t) => {
                        for c in &t.clients {
                            view.clients.insert(c.id.clone(), c.clone());
                        }
                        out.clients.extend(t.clients);
                        out.log.extend(t.log);
                        imported.0 += 1;
                    }
                    Err(e) => reject(*line, "client.id".into(), e.to_string()),
                }
            }
            Row::Domain(row) => {
                let existing = view.domain(&row.name);
                let client = view.client_cached(&row.client_id);
                let (existing, client) = match (existing, client) {
                    (Ok(d), Ok(c)) => (d, c),
                    (Err(e), _) | (_, Err(e)) => {
                        reject(*line, "domain".into(), format!("store unreadable: {}", e.0));
                        continue;
                    }
                };
                match import_domain(existing.as_ref(), client.as_ref(), row, now) {
                    Ok(ImportVerdict::New(d)) => {
                        view.domains.insert(d.name.clone(), (*d).clone());
                        out.domains.push(*d);
                        imported.1 += 1;
                    }
                    Ok(ImportVerdict::Unchanged) => imported.2 += 1,
                    Err(e) => reject(*line, format!("domain.{}", e.field), e.reason),
                }
            }
        }
    }
    report.clients += imported.0;
    report.domains += imported.1;
    report.imported += imported.0 + imported.1;
    report.unchanged += imported.2;
    out
}
