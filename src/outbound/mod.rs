//! Requests out: registrar profiles and templates, R01's encoding rules, the transports (SMTP,
//! sendmail, a directory) and the outbox worker that drains the store's outbox.

pub mod charset;
pub mod profile;
pub mod render;
pub mod smtp;
pub mod transport;
pub mod worker;

pub use charset::Charset;
pub use profile::{Profile, ProfileError};
pub use render::{PASSWORD_MASK, RenderError, RenderedRequest, RequestSettings, render};
pub use transport::{SendOutcome, Transport};
