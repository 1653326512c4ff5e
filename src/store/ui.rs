//! What the operator web page keeps in the store: its sessions (tree `ui_sessions`, keyed by
//! the SHA-256 of the session id, so a copy of the store holds no usable cookie), who is acting
//! (the `by` of the log entries an operator's action writes), and a digest of the state for the
//! "a GET changes nothing" tests.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codec::{decode, encode};
use super::{Store, StoreError};

/// The tree that holds the web page's sessions (left out of [`Store::state_digest`]).
pub const SESSIONS_TREE: &str = "ui_sessions";

/// One signed-in operator's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSession {
    /// The operator's name (`[[ui.operators]] name`).
    pub operator: String,
    /// `operator` or `viewer`.
    pub role: String,
    /// When it began (ms since the epoch).
    pub created_ms: i64,
    /// When it was last used (ms since the epoch).
    pub last_seen_ms: i64,
}

thread_local! {
    static ACTING: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with every log entry it writes (on this thread) marked `by = operator:<name>`, and
/// entries the core would credit to the panel (`api`) credited to the operator. The web page
/// runs each action this way on one blocking thread.
pub fn as_operator<T>(name: &str, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<String>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let old = self.0.take();
            ACTING.with(|a| *a.borrow_mut() = old);
        }
    }
    let old = ACTING.with(|a| a.borrow_mut().replace(format!("operator:{name}")));
    let _reset = Reset(old);
    f()
}

/// Who is acting on this thread (`operator:<name>`), if an operator is.
pub fn acting() -> Option<String> {
    ACTING.with(|a| a.borrow().clone())
}

fn session_key(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

impl Store {
    fn sessions(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(SESSIONS_TREE)?)
    }

    /// The session with id `id` (the cookie's value), if it exists.
    pub fn ui_session(&self, id: &str) -> Result<Option<UiSession>, StoreError> {
        match self.sessions()?.get(session_key(id))? {
            Some(raw) => Ok(Some(decode("ui session", &raw)?)),
            None => Ok(None),
        }
    }

    /// Stores (or refreshes) a session.
    pub fn put_ui_session(&self, id: &str, s: &UiSession) -> Result<(), StoreError> {
        self.sessions()?.insert(session_key(id), encode(s))?;
        Ok(())
    }

    /// Ends a session.
    pub fn remove_ui_session(&self, id: &str) -> Result<(), StoreError> {
        self.sessions()?.remove(session_key(id))?;
        Ok(())
    }

    /// Ends every session `keep` refuses (expired ones, those of removed operators); returns
    /// how many went.
    pub fn prune_ui_sessions(
        &self,
        keep: impl Fn(&UiSession) -> bool,
    ) -> Result<usize, StoreError> {
        let tree = self.sessions()?;
        let mut gone = 0;
        for item in tree.iter() {
            let (k, v) = item?;
            let drop_it = match decode::<UiSession>("ui session", &v) {
                Ok(s) => !keep(&s),
                Err(_) => true,
            };
            if drop_it {
                tree.remove(k)?;
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// SHA-256 over every tree but the web page's sessions, key by key: equal digests mean
    /// equal state (for the tests that a page view changes nothing).
    pub fn state_digest(&self) -> Result<[u8; 32], StoreError> {
        let mut names: Vec<Vec<u8>> = self
            .db
            .tree_names()
            .into_iter()
            .map(|n| n.to_vec())
            .filter(|n| n != SESSIONS_TREE.as_bytes())
            .collect();
        names.sort();
        let mut h = Sha256::new();
        for name in names {
            let tree = self.db.open_tree(&name)?;
            h.update((name.len() as u64).to_be_bytes());
            h.update(&name);
            for item in tree.iter() {
                let (k, v) = item?;
                h.update((k.len() as u64).to_be_bytes());
                h.update(&k);
                h.update((v.len() as u64).to_be_bytes());
                h.update(&v);
            }
        }
        Ok(h.finalize().into())
    }
}
