//! Does a bounce prove itself? (issue 9 part A, item 4.)
//!
//! Every request goes out with its own envelope sender (VERP: `callback+<token>@domain`, see
//! `crate::trust`), so a real bounce of request T comes back *to* T's address. A bounce counts
//! only when all of these hold; otherwise it changes nothing:
//!
//! 1. it was delivered for a request's envelope address: the topmost `Delivered-To` (or
//!    `X-Original-To`) field, which our own delivery agent prepends, names it. A bounce to the
//!    plain callback address proves nothing (anyone can write to it);
//! 2. it comes from a mail system, not a person: the null reverse-path (`Return-Path: <>`,
//!    RFC 5321 §4.5.5) or a MAILER-DAEMON/postmaster sender;
//! 3. it is a delivery status notification (RFC 3464: multipart/report with a
//!    message/delivery-status part, RFC 6522) from our own MTA: its Reporting-MTA, or the From
//!    domain of its MAILER-DAEMON, is one of `[inbound] bounce_hosts` (a foreign host's report
//!    changes nothing);
//! 4. the returned message, when it names one of our requests, names the same request.

use super::auth::Field;
use super::classify::BounceInfo;
use super::correlate::token_from_message_id;
use super::parse::ParsedMail;
use crate::trust::{TrustConfig, token_from_envelope};

/// The request token a bounce proves it belongs to, or why it proves nothing.
pub fn prove(
    fields: &[Field],
    mail: &ParsedMail,
    info: &BounceInfo,
    envelope_template: &str,
    message_id_host: &str,
    cfg: &TrustConfig,
) -> Result<String, String> {
    let delivered = fields
        .iter()
        .find(|f| f.name == "delivered-to" || f.name == "x-original-to")
        .map(|f| f.value.trim().trim_matches(['<', '>']).to_ascii_lowercase());
    let Some(delivered) = delivered else {
        return Err("a bounce with no Delivered-To: it did not arrive for a request's envelope sender (VERP), so it proves nothing".into());
    };
    let Some(token) = token_from_envelope(envelope_template, &delivered) else {
        return Err(format!(
            "a bounce delivered to {delivered}, not to a request's envelope sender ({envelope_template}): it proves nothing"
        ));
    };
    from_our_mta(fields, mail, cfg)?;
    if let Some(returned) = info
        .original_message_id
        .as_deref()
        .and_then(|id| token_from_message_id(id, message_id_host))
        && returned.token() != token
    {
        return Err(format!(
            "the bounce came to the envelope address of request {token} but returns request {}: it proves nothing",
            returned.token()
        ));
    }
    Ok(token)
}

/// Whether a bounce was written by our own mail system: a null reverse-path or a MAILER-DAEMON
/// sender (RFC 5321 §4.5.5), an RFC 3464 delivery-status report, and a Reporting-MTA (or the
/// MAILER-DAEMON's domain) in `inbound.bounce_hosts`. `prove` adds the VERP address of the
/// request; a bounce of a notice e-mail (which carries no VERP address) needs this alone.
pub fn from_our_mta(fields: &[Field], mail: &ParsedMail, cfg: &TrustConfig) -> Result<(), String> {
    // The topmost Return-Path is the one our delivery agent wrote (RFC 5321 §4.4).
    let return_path = fields.iter().find(|f| f.name == "return-path").map(|f| {
        f.value
            .trim()
            .trim_matches(['<', '>'])
            .trim()
            .to_ascii_lowercase()
    });
    let null_path = return_path.as_deref() == Some("");
    let from_local = mail.from.split('@').next().unwrap_or_default();
    let daemon = matches!(from_local, "mailer-daemon" | "postmaster" | "mail-daemon");
    if !null_path && !daemon {
        return Err(format!(
            "a \"bounce\" from an ordinary sender ({}, Return-Path {:?}): only the mail system's null reverse-path or MAILER-DAEMON counts",
            mail.from,
            return_path.as_deref().unwrap_or("missing")
        ));
    }
    let Some(report) = &mail.delivery_status else {
        return Err(
            "a bounce without an RFC 3464 delivery-status report: it proves nothing".into(),
        );
    };
    let ours = |host: &str| {
        let h = host
            .trim()
            .trim_start_matches("dns;")
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        !h.is_empty()
            && cfg
                .bounce_hosts
                .iter()
                .any(|b| h == *b || h.ends_with(&format!(".{b}")))
    };
    let from_domain = mail
        .from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default();
    let reporting_ours = report.reporting_mta.as_deref().is_some_and(ours);
    if !(reporting_ours || (daemon && ours(from_domain))) {
        return Err(format!(
            "a bounce reported by a foreign host (Reporting-MTA {:?}, From {}), not our MTA (inbound.bounce_hosts): it changes nothing",
            report.reporting_mta.as_deref().unwrap_or("missing"),
            mail.from
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::auth::header_fields;
    use super::super::classify::{Class, ClassifyContext, classify};
    use super::super::parse::{ParseLimits, parse};
    use super::*;

    const TOKEN: &str = "0190c0de000070008000000000000001";

    fn dsn(
        delivered_to: &str,
        return_path: &str,
        from: &str,
        reporting: &str,
        returned: &str,
    ) -> String {
        format!(
            "Return-Path: <{return_path}>\r\nDelivered-To: {delivered_to}\r\nFrom: {from}\r\nTo: {delivered_to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@mail.gateway.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {reporting}\r\n\r\nFinal-Recipient: rfc822; requests@bounce.test\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: X-Postfix; unknown\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{returned}@gateway.test>\r\nSubject: request\r\n\r\n--B--\r\n"
        )
    }

    fn run(raw: &str) -> Result<String, String> {
        let ctx = ClassifyContext::new(
            "gateway@gateway.test",
            "gateway.test",
            ["robot@registrar.test"],
        );
        let cfg = TrustConfig {
            bounce_hosts: vec!["gateway.test".into()],
            ..TrustConfig::default()
        };
        let mail = parse(raw.as_bytes(), &ParseLimits::default(), encoding_rs::KOI8_R).unwrap();
        let Class::Bounce(info) = classify(&mail, &ctx) else {
            return Err("not classified as a bounce".into());
        };
        prove(
            &header_fields(raw.as_bytes()),
            &mail,
            &info,
            &ctx.envelope_template,
            "gateway.test",
            &cfg,
        )
    }

    #[test]
    fn our_mtas_report_to_the_verp_address_proves_its_request() {
        let verp = format!("gateway+{TOKEN}@gateway.test");
        let raw = dsn(
            &verp,
            "",
            "MAILER-DAEMON@mail.gateway.test (Mail Delivery System)",
            "mail.gateway.test",
            TOKEN,
        );
        assert_eq!(run(&raw), Ok(TOKEN.to_owned()));
    }

    #[test]
    fn bounces_that_do_not_prove_themselves_are_refused() {
        let verp = format!("gateway+{TOKEN}@gateway.test");
        let other = "0190c0de000070008000000000000002";
        let daemon = "MAILER-DAEMON@mail.gateway.test";
        let cases = [
            (
                dsn(
                    "gateway@gateway.test",
                    "",
                    daemon,
                    "mail.gateway.test",
                    TOKEN,
                ),
                "not to a request's envelope sender",
            ),
            (
                dsn(
                    &format!("gateway+{}@gateway.test", &TOKEN[..30]),
                    "",
                    daemon,
                    "mail.gateway.test",
                    TOKEN,
                ),
                "not to a request's envelope sender",
            ),
            (
                dsn(
                    &verp,
                    "eve@attacker.test",
                    "eve@attacker.test",
                    "mail.gateway.test",
                    TOKEN,
                ),
                "ordinary sender",
            ),
            (
                dsn(
                    &verp,
                    "",
                    "MAILER-DAEMON@mx.attacker.test",
                    "mx.attacker.test",
                    TOKEN,
                ),
                "foreign host",
            ),
            (
                dsn(&verp, "", daemon, "mail.gateway.test", other),
                "returns request",
            ),
        ];
        for (raw, want) in cases {
            let got = run(&raw);
            assert!(
                got.as_ref().is_err_and(|e| e.contains(want)),
                "{want}: {got:?}"
            );
        }
        // No RFC 3464 structure: a subject and a quoted Message-ID only.
        let raw = format!(
            "Return-Path: <>\r\nDelivered-To: {verp}\r\nFrom: {daemon}\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nMessage-ID: <{TOKEN}@gateway.test>\r\n550 5.1.1 unknown\r\n"
        );
        let got = run(&raw);
        assert!(
            got.as_ref().is_err_and(|e| e.contains("RFC 3464")),
            "{got:?}"
        );
        // A Delivered-To the sender wrote below ours does not count: the topmost does.
        let raw = format!(
            "Delivered-To: gateway@gateway.test\r\n{}",
            dsn(&verp, "", daemon, "mail.gateway.test", TOKEN)
        );
        assert!(run(&raw).is_err());
    }
}
