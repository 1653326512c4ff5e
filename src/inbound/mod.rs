//! Replies in: parsing, classification and the reply rules (DESIGN.md section 5).
//!
//! The pure part of reply handling, in the order a message goes through it:
//!
//! 1. [`parse::parse`]: raw bytes to a [`parse::ParsedMail`] (or a [`parse::Quarantine`]).
//! 2. [`classify::classify`]: our own mail looping back, a bounce, an auto-reply, or a candidate
//!    registrar reply; the auto-reply signal is reported, not acted on.
//! 3. [`rules::Rules::first_match`] on the subject and [`parse::ParsedMail::reply_text`], for
//!    the classes where [`classify::Class::rules_apply`] says so.
//! 4. [`classify::decide`]: the class and whether a rule matched give the [`classify::Decision`]
//!    (a rule match wins over an `Auto-Submitted` header; only the registrar's addresses may
//!    move state).
//!
//! Correlation to a request and the status change come after this and live elsewhere.

pub mod auth;
pub mod bounce;
pub mod classify;
pub mod correlate;
pub mod imap;
mod imap_batch;
pub mod intake;
pub mod parse;
pub mod rules;
pub mod source;

pub use classify::{BounceInfo, Class, ClassifyContext, Decision, classify, decide};
pub use parse::{ParseLimits, ParsedMail, Quarantine, parse};
pub use rules::{
    Captures, Evaluation, RejectedCapture, ReplyEvent, RuleMatch, Rules, RulesError, RulesErrorKind,
};
