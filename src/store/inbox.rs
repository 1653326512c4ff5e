//! Inbound messages in the store: the raw bytes are kept durably BEFORE processing (so a crash
//! loses nothing), each message has a record saying what became of it, and content hashes make
//! a message fetched twice (a UIDVALIDITY change, a restart before the move) a no-op.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::codec::{decode, encode};
use super::{Store, StoreError, be_u64, key_join};
use crate::core::RequestId;

/// What became of an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxState {
    /// Stored, not processed yet.
    Pending,
    /// It moved a request (or was logged against one as a duplicate or late reply).
    Applied,
    /// Kept and logged, but it cannot move state (not from the registrar, an auto-reply, our own
    /// mail looping back, a rule of event "ignore").
    Ignored,
    /// From the registrar, but no rule or no single request fits: waits for an operator.
    Unmatched,
    /// Unreadable or hostile (too large, nested too deep, no headers).
    Quarantined,
    /// An operator set an unmatched message aside.
    Dismissed,
}

impl InboxState {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxState::Pending => "Pending",
            InboxState::Applied => "Applied",
            InboxState::Ignored => "Ignored",
            InboxState::Unmatched => "Unmatched",
            InboxState::Quarantined => "Quarantined",
            InboxState::Dismissed => "Dismissed",
        }
    }
}

/// The record of one inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    /// Where it came from: `imap/<mailbox>/<uidvalidity>/<uid>` or `maildir/<file name>`.
    pub key: String,
    /// When it was stored.
    pub received: Timestamp,
    /// Size in octets.
    pub size: u64,
    /// SHA-256 of the raw bytes, hex.
    pub sha256: String,
    /// What became of it.
    pub state: InboxState,
    /// Why (for every state but Pending).
    pub reason: Option<String>,
    /// Its Message-ID.
    pub message_id: Option<String>,
    /// Sender address.
    pub from: Option<String>,
    /// Decoded subject.
    pub subject: Option<String>,
    /// The request it was tied to.
    pub request: Option<RequestId>,
    /// The rule that matched.
    pub rule: Option<String>,
    /// When it was settled.
    pub settled: Option<Timestamp>,
    /// When its raw bytes were deleted by the retention policy (`[inbound] keep_raw_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_removed: Option<Timestamp>,
}

/// The result of storing a fetched message.
#[derive(Debug, Clone)]
pub enum Received {
    /// First time: stored as Pending.
    New(Box<InboxMessage>),
    /// The same bytes were stored before under this key (fetched again): nothing to do.
    Known(String),
}

/// Index key: content hash -> inbox key.
pub fn hash_key(sha: &str) -> Vec<u8> {
    key_join(&[b"mh", sha.as_bytes()])
}
/// Index key: Message-ID -> inbox key of the first message that carried it.
pub fn message_id_key(mid: &str) -> Vec<u8> {
    key_join(&[b"mi", mid.as_bytes()])
}
/// Index key: inbox messages in a state (Pending, Unmatched).
pub fn inbox_state_key(state: InboxState, key: &str) -> Vec<u8> {
    key_join(&[b"is", state.as_str().as_bytes(), key.as_bytes()])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Stores a fetched message durably (raw bytes and a Pending record, one transaction, then a
    /// flush) unless the same bytes were stored before.
    pub fn receive(&self, key: &str, raw: &[u8], now: Timestamp) -> Result<Received, StoreError> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let sha = hex(&Sha256::digest(raw));
        if let Some(existing) = self.index.get(hash_key(&sha))? {
            return Ok(Received::Known(
                String::from_utf8_lossy(&existing).into_owned(),
            ));
        }
        let rec = InboxMessage {
            key: key.to_owned(),
            received: now,
            size: raw.len() as u64,
            sha256: sha.clone(),
            state: InboxState::Pending,
            reason: None,
            message_id: None,
            from: None,
            subject: None,
            request: None,
            rule: None,
            settled: None,
            raw_removed: None,
        };
        let result: Result<(), TransactionError<String>> = (&self.inbox, &self.raw, &self.index)
            .transaction(|(inbox, raw_tree, index)| {
                inbox.insert(key.as_bytes(), encode(&rec))?;
                raw_tree.insert(key.as_bytes(), raw)?;
                index.insert(hash_key(&sha), key.as_bytes())?;
                index.insert(inbox_state_key(InboxState::Pending, key), &[])?;
                Ok(())
            });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(reason)) => {
                return Err(StoreError::Corrupt {
                    key: key.to_owned(),
                    reason,
                });
            }
            Err(TransactionError::Storage(e)) => return Err(StoreError::Sled(e)),
        }
        drop(_guard);
        self.note_commit();
        self.durable()?;
        Ok(Received::New(Box::new(rec)))
    }

    /// One message's record.
    pub fn inbox_message(&self, key: &str) -> Result<Option<InboxMessage>, StoreError> {
        match self.inbox.get(key.as_bytes())? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// One message's raw bytes.
    pub fn raw_message(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.raw.get(key.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Messages in `state` (Pending or Unmatched are indexed), oldest key first.
    pub fn inbox_in_state(
        &self,
        state: InboxState,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, StoreError> {
        let prefix = key_join(&[b"is", state.as_str().as_bytes(), b""]);
        let mut out = Vec::new();
        for k in self.index.scan_prefix(&prefix).keys() {
            let k = k?;
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(m) = self.inbox_message(&key)? {
                out.push(m);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Messages whose raw bytes the retention policy may delete: received before `before`,
    /// settled, in a final state (not Pending, not Unmatched: those still wait for the intake
    /// or an operator) and raw bytes still kept. At most `limit`.
    pub fn raw_expired(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, StoreError> {
        let mut out = Vec::new();
        for item in self.inbox.iter() {
            let (k, v) = item?;
            let m: InboxMessage = decode(&String::from_utf8_lossy(&k), &v)?;
            if m.received < before
                && m.settled.is_some()
                && m.raw_removed.is_none()
                && !matches!(m.state, InboxState::Pending | InboxState::Unmatched)
                && self.raw.contains_key(&k)?
            {
                out.push(m);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Deletes one message's raw bytes (after the decision was logged).
    pub fn remove_raw(&self, key: &str) -> Result<(), StoreError> {
        self.raw.remove(key.as_bytes())?;
        Ok(())
    }

    /// Every message record (newest last), at most `limit`.
    pub fn inbox_all(&self, limit: usize) -> Result<Vec<InboxMessage>, StoreError> {
        let mut out = Vec::new();
        for item in self.inbox.iter().take(limit) {
            let (k, v) = item?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    /// The inbox key of the first message that carried this Message-ID.
    pub fn message_id_seen(&self, message_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .index
            .get(message_id_key(message_id))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The request that a registrar task id belongs to.
    pub fn request_by_task(&self, task: &str) -> Result<Option<RequestId>, StoreError> {
        match self.index.get(super::task_index_key(task))? {
            Some(v) => Ok(uuid::Uuid::from_slice(&v).ok().map(RequestId)),
            None => Ok(None),
        }
    }

    /// The saved IMAP position of a mailbox: (UIDVALIDITY, highest UID stored).
    pub fn imap_position(&self, mailbox: &str) -> Result<Option<(u32, u32)>, StoreError> {
        let k = key_join(&[b"imap", mailbox.as_bytes()]);
        Ok(self.meta.get(k)?.map(|v| {
            let n = be_u64(&v);
            ((n >> 32) as u32, n as u32)
        }))
    }

    /// Saves the IMAP position of a mailbox (RFC 3501 §2.3.1.1: a UID is meaningful only with
    /// its UIDVALIDITY).
    pub fn set_imap_position(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        uid: u32,
    ) -> Result<(), StoreError> {
        let k = key_join(&[b"imap", mailbox.as_bytes()]);
        let n = (u64::from(uidvalidity) << 32) | u64::from(uid);
        self.meta.insert(k, &n.to_be_bytes())?;
        self.note_commit();
        self.durable()?;
        Ok(())
    }
}
