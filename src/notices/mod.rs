//! The notice engine's pure pieces (DESIGN.md §10, issue 10): the catalogue of notice types,
//! users/roles/subscriptions and the fan-out rules, e-mail rendering from templates, webhook
//! signing, one-click unsubscribe tokens. No I/O besides reading a template directory; the
//! channel drivers (e-mail, webhooks) live in `src/channels/`, the storage in
//! `src/store/notices.rs`, the routes in `src/api/notices.rs`.

pub mod catalogue;
pub mod model;
pub mod render;
pub mod rules;
pub mod sign;
pub mod templates;
pub mod unsubscribe;

#[cfg(test)]
mod tests;
