//! Ties a registrar reply to the request it answers (DESIGN.md §5), strongest signal first:
//! our Message-ID in In-Reply-To/References (RFC 5322 §3.6.4); our token `[RM-<hex>]` in the
//! Subject; the registrar's task id learned from its acknowledgement; the domain name or the
//! handle together with the request kinds the rule allows, when exactly one open request fits.
//! Anything weaker or ambiguous is not guessed: the caller puts the reply in the unmatched queue.

use crate::core::{DomainName, Handle, RequestId, RequestKind, RequestState};
use crate::store::{Store, StoreError};

/// Which signal tied a reply to its request (goes into the action log as evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Our Message-ID in In-Reply-To or References.
    MessageId,
    /// Our token in the Subject.
    SubjectToken,
    /// The registrar's task id.
    TaskId,
    /// The only open request for the domain.
    Domain,
    /// The only open client request for the handle.
    Handle,
    /// An operator assigned it.
    Operator,
}

impl Signal {
    /// The name in logs, manifests and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::MessageId => "message-id",
            Signal::SubjectToken => "subject-token",
            Signal::TaskId => "task-id",
            Signal::Domain => "domain",
            Signal::Handle => "handle",
            Signal::Operator => "operator",
        }
    }
}

/// What a reply offers for correlation.
#[derive(Debug, Clone, Default)]
pub struct ReplyFacts<'a> {
    /// In-Reply-To ids (without angle brackets).
    pub in_reply_to: &'a [String],
    /// References ids (without angle brackets).
    pub references: &'a [String],
    /// The decoded subject.
    pub subject: &'a str,
    /// Task id captured by the rule.
    pub task_id: Option<&'a str>,
    /// Domain captured by the rule.
    pub domain: Option<&'a DomainName>,
    /// Handle captured by the rule.
    pub handle: Option<&'a Handle>,
    /// Request kinds the rule may answer (empty: any).
    pub kinds: &'a [RequestKind],
}

/// The result of correlation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correlation {
    /// Tied to one request.
    Found {
        /// The request.
        request: RequestId,
        /// By which signal.
        signal: Signal,
    },
    /// No signal, or no request fits, or several do: the reason says which.
    Unmatched(String),
}

/// Our token from an id `<hex32@host>` (the angle brackets already removed).
pub fn token_from_message_id(id: &str, host: &str) -> Option<RequestId> {
    let (local, domain) = id.trim_matches(['<', '>']).rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(host) || local.len() != 32 {
        return None;
    }
    RequestId::parse(local).ok()
}

/// Our token from a Subject: `[RM-<32 hex digits>]`, anywhere (replies prefix "Re:" etc.).
pub fn token_from_subject(subject: &str) -> Option<RequestId> {
    let upper = subject.to_ascii_uppercase();
    let mut from = 0;
    while let Some(pos) = upper[from..].find("[RM-") {
        let start = from + pos + 4;
        let hex = subject.get(start..start + 32)?;
        if subject.get(start + 32..start + 33) == Some("]")
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return RequestId::parse(hex).ok();
        }
        from = start;
    }
    None
}

fn open(state: RequestState) -> bool {
    !state.is_settled()
}

/// Correlates a reply. Requests found through our own ids must exist; the rule's kinds must
/// allow the request's kind.
pub fn correlate(
    store: &Store,
    facts: &ReplyFacts<'_>,
    message_id_host: &str,
) -> Result<Correlation, StoreError> {
    let kind_ok = |k: RequestKind| facts.kinds.is_empty() || facts.kinds.contains(&k);
    let check = |id: RequestId, signal: Signal| -> Result<Option<Correlation>, StoreError> {
        match store.request(id)? {
            Some(r) if kind_ok(r.kind) => Ok(Some(Correlation::Found {
                request: id,
                signal,
            })),
            Some(r) => Ok(Some(Correlation::Unmatched(format!(
                "{} points at request {id}, a {} request, which the matched rule does not answer",
                signal.as_str(),
                r.kind.as_str()
            )))),
            None => Ok(None),
        }
    };
    for id in facts.in_reply_to.iter().chain(facts.references) {
        if let Some(rid) = token_from_message_id(id, message_id_host)
            && let Some(c) = check(rid, Signal::MessageId)?
        {
            return Ok(c);
        }
    }
    if let Some(rid) = token_from_subject(facts.subject)
        && let Some(c) = check(rid, Signal::SubjectToken)?
    {
        return Ok(c);
    }
    if let Some(task) = facts.task_id
        && let Some(rid) = store.request_by_task(task)?
        && let Some(c) = check(rid, Signal::TaskId)?
    {
        return Ok(c);
    }
    if let Some(domain) = facts.domain {
        let fits: Vec<RequestId> = match store.domain(domain)? {
            Some(d) => match d.open_request {
                Some(id) => match store.request(id)? {
                    Some(r) if open(r.state) && kind_ok(r.kind) => vec![id],
                    _ => vec![],
                },
                None => vec![],
            },
            None => vec![],
        };
        return Ok(match fits.as_slice() {
            [one] => Correlation::Found {
                request: *one,
                signal: Signal::Domain,
            },
            _ => Correlation::Unmatched(format!(
                "no open request of a fitting kind for domain {domain}"
            )),
        });
    }
    if let Some(handle) = facts.handle {
        let mut fits = Vec::new();
        for state in RequestState::ALL.into_iter().filter(|s| open(*s)) {
            for r in store.requests_in_state(state, usize::MAX)? {
                if r.kind == RequestKind::ClientRegistration
                    && kind_ok(r.kind)
                    && r.handle.as_ref() == Some(handle)
                {
                    fits.push(r.id);
                }
            }
        }
        return Ok(match fits.as_slice() {
            [one] => Correlation::Found {
                request: *one,
                signal: Signal::Handle,
            },
            [] => Correlation::Unmatched(format!("no open client request for handle {handle}")),
            _ => Correlation::Unmatched(format!(
                "{} open client requests for handle {handle}",
                fits.len()
            )),
        });
    }
    Ok(Correlation::Unmatched("the reply names none of our requests (no Message-ID, token, known task id, domain or handle)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_subjects_and_message_ids() {
        let id = "0190c0de000070008000000000000001";
        let rid = token_from_subject(&format!("Re: NEW CLIENT X [RM-{id}] done")).unwrap();
        assert_eq!(rid.token(), id);
        assert_eq!(
            token_from_subject(&format!("[rm-{id}]")).map(|r| r.token()),
            Some(id.to_owned())
        );
        assert!(token_from_subject("[RM-0190c0de]").is_none());
        assert!(token_from_subject("[RM-zz90c0de000070008000000000000001]").is_none());
        assert_eq!(
            token_from_message_id(&format!("{id}@gateway.test"), "gateway.test").map(|r| r.token()),
            Some(id.to_owned())
        );
        assert!(token_from_message_id(&format!("{id}@other.test"), "gateway.test").is_none());
    }
}
