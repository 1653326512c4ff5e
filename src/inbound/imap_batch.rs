//! Batched reply intake over IMAP (issue 13). A sweep takes the new messages in batches of at
//! most [`BATCH`]: one `UID FETCH` of the batch's bodies (sizes were checked first: a message
//! over the limit has only its header fetched, to be quarantined), every message stored raw,
//! judged and settled with the store's writes flushed once for the batch, then one `UID MOVE`
//! of the set (RFC 6851; or `UID COPY` + `\Deleted` + `UID EXPUNGE`, RFC 4315), then the
//! position saved.
//!
//! Crash safety, step by step (tests/inbound_imap.rs kills the daemon at each one):
//! - before the flush, nothing of the batch needs to be durable: the messages are still in the
//!   mailbox and the position was not saved, so the next sweep fetches them again; what sled
//!   did write by itself is found again by key (`Received::Known`, a settled record is not
//!   processed twice, a stored but Pending one is processed at start-up);
//! - after the flush and before the MOVE, the messages are fetched again and found settled:
//!   nothing is applied twice, and they are moved then;
//! - after the MOVE and before the position is saved, the moved messages are simply gone from
//!   the mailbox.

use std::collections::HashMap;

use futures::TryStreamExt;

use super::imap::{ImapSource, Session, with_deadline};
use crate::store::inbox::Received;

/// Most messages fetched, stored and moved together.
pub const BATCH: usize = 64;

/// Where a test asks the daemon to die (`REGMAIL_CRASH_AT`, read once per batch): `fetched`,
/// `settled-one` (after the first message of a batch was settled, before the flush),
/// `flushed`, `moved`. It aborts the process like a SIGKILL: no destructor, no flush.
fn crash_point(step: &str) {
    if std::env::var("REGMAIL_CRASH_AT").is_ok_and(|v| v == step) {
        tracing::error!(step, "REGMAIL_CRASH_AT: aborting the process here");
        std::process::abort();
    }
}

/// A UID set for a command: `5,7,9`.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl ImapSource {
    /// Fetches the bodies of `uids` with `query` in one command: UID to bytes.
    async fn fetch_set(
        &self,
        session: &mut Session,
        uids: &[u32],
        query: &str,
    ) -> Result<HashMap<u32, Vec<u8>>, String> {
        if uids.is_empty() {
            return Ok(HashMap::new());
        }
        let t = self.settings.command_timeout;
        let stream = with_deadline(t, "UID FETCH", session.uid_fetch(uid_set(uids), query)).await?;
        let fetched: Vec<_> = with_deadline(t, "UID FETCH", stream.try_collect::<Vec<_>>()).await?;
        Ok(fetched
            .iter()
            .filter_map(|f| {
                let uid = f.uid?;
                let bytes = f.body().or_else(|| f.header())?;
                Some((uid, bytes.to_vec()))
            })
            .collect())
    }

    /// Processes the messages `sizes` (UID, RFC822.SIZE; in UID order) in batches.
    pub(super) async fn sweep_batches(
        &self,
        session: &mut Session,
        uidvalidity: u32,
        sizes: &[(u32, u32)],
        can_move: bool,
        uidplus: bool,
    ) -> Result<(), String> {
        let s = &self.settings;
        for batch in sizes.chunks(BATCH) {
            let (whole, big): (Vec<_>, Vec<_>) = batch
                .iter()
                .partition(|(_, size)| *size <= s.max_message_bytes);
            let whole: Vec<u32> = whole.iter().map(|(u, _)| *u).collect();
            let big: Vec<u32> = big.iter().map(|(u, _)| *u).collect();
            let mut bodies = self.fetch_set(session, &whole, "(UID BODY.PEEK[])").await?;
            // RFC822.SIZE first: an oversized message is not fetched whole.
            bodies.extend(
                self.fetch_set(session, &big, "(UID BODY.PEEK[HEADER])")
                    .await?,
            );
            crash_point("fetched");
            let mut items = Vec::new();
            for (uid, size) in batch {
                let Some(bytes) = bodies.remove(uid) else {
                    tracing::warn!(uid, "the server returned no body for a message; skipped");
                    continue;
                };
                let key = format!("imap/{}/{uidvalidity}/{uid}", s.mailbox);
                let oversized = (*size > s.max_message_bytes).then(|| {
                    format!(
                        "message of {size} octets is over the limit of {} (only its header was fetched)",
                        s.max_message_bytes
                    )
                });
                items.push((*uid, key, bytes, oversized));
            }
            let store = self.store.clone();
            let processor = self.processor.clone();
            // Stored and settled in order, one flush for the batch; stops at the first failure
            // (the messages before it are done and get moved; the rest wait for the next sweep).
            let (done, failure) = tokio::task::spawn_blocking(move || {
                store
                    .batch(|| {
                        let mut done = Vec::new();
                        for (uid, key, bytes, oversized) in &items {
                            let r = match store
                                .receive(key, bytes, crate::clock::now())
                                .map_err(|e| e.to_string())
                            {
                                Ok(Received::New(_)) => {
                                    processor.process(key, oversized.as_deref()).map(|_| ())
                                }
                                Ok(Received::Known(first)) => {
                                    tracing::info!(key = %key, first = %first, "message stored before (same bytes); not applied again");
                                    processor.record_copy(key, &first)
                                }
                                Err(e) => Err(e),
                            };
                            if let Err(e) = r {
                                return (done, Some(e));
                            }
                            done.push(*uid);
                            if done.len() == 1 {
                                crash_point("settled-one");
                            }
                        }
                        (done, None)
                    })
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("processing task failed: {e}"))??;
            crash_point("flushed");
            if !done.is_empty() {
                self.move_set(session, &done, can_move, uidplus).await?;
                crash_point("moved");
                if let Some(last) = done.last() {
                    self.store
                        .set_imap_position(&s.mailbox, uidvalidity, *last)
                        .map_err(|e| e.to_string())?;
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Moves the settled messages out of the way in one command.
    async fn move_set(
        &self,
        session: &mut Session,
        uids: &[u32],
        can_move: bool,
        uidplus: bool,
    ) -> Result<(), String> {
        let s = &self.settings;
        let t = s.command_timeout;
        let set = uid_set(uids);
        if can_move {
            return with_deadline(t, "UID MOVE", session.uid_mv(&set, &s.processed_mailbox)).await;
        }
        with_deadline(t, "UID COPY", session.uid_copy(&set, &s.processed_mailbox)).await?;
        let st = with_deadline(
            t,
            "UID STORE",
            session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)"),
        )
        .await?;
        let _: Vec<_> = with_deadline(t, "UID STORE", st.try_collect::<Vec<_>>()).await?;
        if uidplus {
            let ex = with_deadline(t, "UID EXPUNGE", session.uid_expunge(&set)).await?;
            let _: Vec<_> = with_deadline(t, "UID EXPUNGE", ex.try_collect::<Vec<_>>()).await?;
        }
        Ok(())
    }
}
