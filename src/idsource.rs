//! The daemon's source of fresh ids for the core (the core itself draws no randomness).

use crate::core::{IdSource, RequestId};

/// Fresh request ids for the daemon: UUID v7 (time-ordered, random tail).
pub struct UuidIds;

impl IdSource for UuidIds {
    fn request_id(&mut self) -> RequestId {
        RequestId(uuid::Uuid::now_v7())
    }
}
