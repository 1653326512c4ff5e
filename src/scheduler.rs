//! Timers: turns passed reply deadlines into `DeadlinePassed` events (DESIGN.md §2: "no reply
//! within the deadline -> Error").

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::api::UuidIds;
use crate::core::{Ctx, Event, Policy};
use crate::store::Store;

/// Checks the deadlines once: applies `DeadlinePassed` for each one due. Returns how many fired.
pub fn fire_due_deadlines(store: &Store, policy: &Policy, now: Timestamp) -> usize {
    let due = match store.due_deadlines(now) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "reading reply deadlines failed");
            return 0;
        }
    };
    let mut fired = 0;
    for id in due {
        let mut ids = UuidIds;
        let mut ctx = Ctx {
            now,
            ids: &mut ids,
            policy,
        };
        match store.apply(Event::DeadlinePassed { request: id }, &mut ctx) {
            Ok(_) => {
                fired += 1;
                tracing::info!(request_id = %id, "reply deadline passed");
            }
            Err(e) => {
                tracing::error!(request_id = %id, error = %e, "applying a passed deadline failed")
            }
        }
    }
    fired
}

/// Runs until `stop` turns true, checking deadlines every `tick`.
pub async fn run(
    store: Arc<Store>,
    policy: Policy,
    tick: Duration,
    heartbeat: Arc<crate::health::Worker>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        heartbeat.beat();
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let (store, policy) = (store.clone(), policy.clone());
        let joined = tokio::task::spawn_blocking(move || {
            fire_due_deadlines(&store, &policy, Timestamp::now())
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "the deadline check failed");
        }
    }
}
