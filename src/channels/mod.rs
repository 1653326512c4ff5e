//! Notice channel drivers (DESIGN.md §10): each takes due deliveries of its channel from the
//! store's queue, carries them out and records every attempt. The drivers do not import each
//! other (nor the api, inbound, outbound worker or scheduler); they share the pure pieces in
//! `src/notices/` and the store.

pub mod email;
pub mod webhook;

use std::time::Duration;

use jiff::Timestamp;

use crate::notices::model::{Attempt, Delivery, DeliveryState};

/// The delivery after a failed attempt: Queued again after the schedule's next wait (at
/// least `at_least`), or Failed once the schedule is used up.
pub fn after_failure(
    mut d: Delivery,
    attempt: Attempt,
    schedule: &[Duration],
    at_least: Option<Duration>,
    now: Timestamp,
) -> Delivery {
    d.attempts.push(attempt);
    let failures = d.attempts.iter().rev().take_while(|a| !a.ok).count();
    match schedule.get(failures.saturating_sub(1)) {
        Some(wait) => {
            let wait = at_least.map_or(*wait, |m| m.max(*wait));
            d.state = DeliveryState::Queued;
            d.next_at = Some(
                now.checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
                    .unwrap_or(now),
            );
        }
        None => {
            d.state = DeliveryState::Failed;
            d.next_at = None;
        }
    }
    d
}

/// The first `n` bytes of an answer, as text.
pub fn first_bytes(b: &[u8], n: usize) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(n)]).into_owned();
    s.retain(|c| c != '\0');
    s
}

/// Milliseconds since `start`.
pub fn elapsed_ms(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Unix milliseconds of `t` (0 before 1970).
pub fn unix_ms(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}
