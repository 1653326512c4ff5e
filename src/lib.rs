//! regmail: orders domains from e-mail driven registrars (R01.RU first) on behalf of hosting
//! control panels. See ARCHITECTURE.md for the map of the code.

pub mod api;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod daemon;
pub mod demo;
pub mod files;
pub mod health;
pub mod idsource;
pub mod inbound;
pub mod lifecycle;
pub mod logging;
pub mod notices;
pub mod operations;
pub mod outbound;
pub mod preflight;
pub mod redact;
pub mod reload;
pub mod reports;
pub mod sandbox;
pub mod scheduler;
pub mod store;
pub mod tls;
pub mod trust;
pub mod ui;
