//! The pure core: entities, events, the transition function and the log it writes. No I/O, no
//! clock reads, no randomness (DESIGN.md §3): time, ids and policy are arguments.

pub mod event;
pub mod ids;
pub mod import;
pub mod lifecycle;
pub mod log;
pub mod model;
pub mod notice;
pub mod transition;
pub mod view;

pub use event::{DomainOrder, Event, NewClient, RegistrarNotice, ReplyOutcome, Resolution};
pub use ids::{
    ClientId, DomainName, Handle, InvalidId, LabelLetters, Nameserver, RequestId, TldRule,
};
pub use log::{Actor, Evidence, LogDraft, LogEntry};
pub use model::{
    Client, ClientStatus, Contact, Domain, DomainStatus, Organization, Person, Phase, Registrant,
    Request, RequestKind, RequestState,
};
pub use notice::NoticeDraft;
pub use transition::{CoreError, Ctx, IdSource, Policy, ReplyDeadlines, apply, today};
pub use view::{Effect, MemState, StateView, Transition, ViewError};

#[cfg(test)]
mod tests;
