//! Batched reply intake over IMAP (issue 13). A sweep takes the new messages in batches of at
//! most [`BATCH`]: one `UID FETCH` of the batch's bodies (sizes were checked first: a message
//! over the limit has only its header fetched, to be quarantined), every message stored raw,
//! judged and settled with the store's writes flushed once for the batch, then one `UID MOVE`
//! of the set (RFC 6851; or `UID COPY` + `\Deleted` + `UID EXPUNGE`, RFC 4315), then the
//! position saved. The batches overlap: while one is stored and settled, the session moves the
//! one before it and fetches the one after it (see [`ImapSource::sweep_batches`]).
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

    /// Fetches one batch: the bodies of the messages within the size limit in one command, the
    /// header alone of those over it (RFC822.SIZE first: an oversized message is not fetched
    /// whole).
    async fn fetch_batch(
        &self,
        session: &mut Session,
        batch: &[(u32, u32)],
    ) -> Result<HashMap<u32, Vec<u8>>, String> {
        let limit = self.settings.max_message_bytes;
        let (whole, big): (Vec<_>, Vec<_>) = batch.iter().partition(|(_, size)| *size <= limit);
        let whole: Vec<u32> = whole.iter().map(|(u, _)| *u).collect();
        let big: Vec<u32> = big.iter().map(|(u, _)| *u).collect();
        let mut bodies = self.fetch_set(session, &whole, "(UID BODY.PEEK[])").await?;
        bodies.extend(
            self.fetch_set(session, &big, "(UID BODY.PEEK[HEADER])")
                .await?,
        );
        Ok(bodies)
    }

    /// Moves a batch that is settled and flushed, then saves the position after it.
    async fn finish_batch(
        &self,
        session: &mut Session,
        uidvalidity: u32,
        done: &[u32],
        can_move: bool,
        uidplus: bool,
    ) -> Result<(), String> {
        let Some(last) = done.last() else {
            return Ok(());
        };
        self.move_set(session, done, can_move, uidplus).await?;
        crash_point("moved");
        self.store
            .set_imap_position(&self.settings.mailbox, uidvalidity, *last)
            .map_err(|e| e.to_string())
    }

    /// Processes the messages `sizes` (UID, RFC822.SIZE; in UID order) in batches.
    ///
    /// Pipelined: while batch k is stored and settled (a blocking task), the IMAP session moves
    /// batch k-1 (settled and flushed before) and saves its position, then fetches batch k+1.
    /// Each batch keeps its own order (fetch, store and settle, one flush, MOVE, position), so
    /// the crash analysis above holds batch by batch; the session's commands stay sequential.
    pub(super) async fn sweep_batches(
        &self,
        session: &mut Session,
        uidvalidity: u32,
        sizes: &[(u32, u32)],
        can_move: bool,
        uidplus: bool,
    ) -> Result<(), String> {
        let s = &self.settings;
        let batches: Vec<&[(u32, u32)]> = sizes.chunks(BATCH).collect();
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let mut bodies = self.fetch_batch(session, first).await?;
        // A batch settled and flushed, not yet moved.
        let mut unmoved: Vec<u32> = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let t0 = std::time::Instant::now();
            crash_point("fetched");
            let mut items = Vec::new();
            for (uid, size) in batch.iter() {
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
            let work = tokio::task::spawn_blocking(move || {
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
            });
            // Meanwhile, on the session: the previous batch out of the way, the next one in.
            let previous = std::mem::take(&mut unmoved);
            let next = batches.get(i + 1).copied();
            let io = async {
                let t = std::time::Instant::now();
                self.finish_batch(session, uidvalidity, &previous, can_move, uidplus)
                    .await?;
                let moved = t.elapsed();
                let fetched = match next {
                    Some(b) => self.fetch_batch(session, b).await?,
                    None => HashMap::new(),
                };
                Ok::<_, String>((fetched, moved, t.elapsed() - moved))
            };
            let (work, io) = tokio::join!(work, io);
            let (done, failure) = work.map_err(|e| format!("processing task failed: {e}"))??;
            crash_point("flushed");
            let settled = t0.elapsed();
            tracing::debug!(
                messages = done.len(),
                wall_us = settled.as_micros() as u64,
                "IMAP batch stored and settled (one flush)"
            );
            match (io, failure) {
                (Ok((fetched, moved, fetch)), None) => {
                    tracing::debug!(
                        previous = previous.len(),
                        move_us = moved.as_micros() as u64,
                        next_fetch_us = fetch.as_micros() as u64,
                        "IMAP: previous batch moved, next fetched"
                    );
                    bodies = fetched;
                    unmoved = done;
                }
                (Ok(_), Some(e)) => {
                    // What was settled before the failure is moved now; the rest stays.
                    self.finish_batch(session, uidvalidity, &done, can_move, uidplus)
                        .await?;
                    return Err(e);
                }
                // The session failed: this batch is settled and flushed, and is found settled
                // (and moved) by the next sweep; nothing is applied twice.
                (Err(e), _) => return Err(e),
            }
        }
        let t = std::time::Instant::now();
        self.finish_batch(session, uidvalidity, &unmoved, can_move, uidplus)
            .await?;
        tracing::debug!(
            messages = unmoved.len(),
            move_us = t.elapsed().as_micros() as u64,
            "IMAP: last batch moved"
        );
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
