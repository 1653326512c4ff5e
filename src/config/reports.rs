//! `[reports]`: the daily reseller report e-mail (issue 11 part 3): who gets it, at which
//! local time, in which time zone, and which expiring windows it carries. The reports
//! themselves are always available over the API and the CLI; with no `recipients` no e-mail
//! is sent.

use jiff::civil::Time;
use jiff::tz::TimeZone;

use super::Reader;

/// `[reports]`.
#[derive(Debug, Clone)]
pub struct ReportsConfig {
    /// Who gets the daily report e-mail (empty: no e-mail).
    pub recipients: Vec<String>,
    /// Local time of day the e-mail goes out (`daily_at = "07:00"`).
    pub daily_at: Time,
    /// The time zone of `daily_at` and of the reports' "today" (`timezone =
    /// "Europe/Moscow"`, an IANA name; default UTC).
    pub timezone: TimeZone,
    /// The time zone's name as configured, for logs and the e-mail.
    pub timezone_name: String,
    /// The expiring windows the e-mail carries, in days (default 30, 15, 1).
    pub expiring_within: Vec<i64>,
    /// From of the e-mail (default: `[notices] from`).
    pub from: String,
    /// Host part of the e-mail's Message-ID (default: `[notices] message_id_host`).
    pub message_id_host: String,
}

/// The largest `within` a report accepts, in days (a year and a day).
pub const MAX_WITHIN: i64 = 366;

pub(super) fn read(
    r: &mut Reader,
    root: &toml::Table,
    notices: &super::NoticesConfig,
) -> ReportsConfig {
    let t = r.section(
        root,
        "reports",
        &[
            "recipients",
            "daily_at",
            "timezone",
            "expiring_within",
            "from",
            "message_id_host",
        ],
    );
    let mut recipients = Vec::new();
    match t.get("recipients") {
        None => {}
        Some(toml::Value::Array(a)) => {
            for v in a {
                match v.as_str() {
                    Some(s) if s.parse::<lettre::Address>().is_ok() => {
                        recipients.push(s.to_owned())
                    }
                    Some(s) => r.problem(
                        "reports.recipients",
                        format!("{s:?} is not an e-mail address"),
                    ),
                    None => r.problem(
                        "reports.recipients",
                        "must be a list of e-mail addresses".into(),
                    ),
                }
            }
        }
        Some(_) => r.problem(
            "reports.recipients",
            "must be a list of e-mail addresses".into(),
        ),
    }
    let daily_at = match r.string(&t, "reports", "daily_at") {
        None => Time::constant(7, 0, 0, 0),
        Some(s) => match s.parse::<Time>() {
            Ok(at) => at,
            Err(_) => {
                r.problem(
                    "reports.daily_at",
                    format!("{s:?} is not a time of day such as \"07:00\""),
                );
                Time::constant(7, 0, 0, 0)
            }
        },
    };
    let timezone_name = r
        .string(&t, "reports", "timezone")
        .unwrap_or_else(|| "UTC".into());
    let timezone = match TimeZone::get(&timezone_name) {
        Ok(tz) => tz,
        Err(e) => {
            r.problem(
                "reports.timezone",
                format!("{timezone_name:?} is not a time zone (an IANA name such as \"Europe/Moscow\", or \"UTC\"): {e}"),
            );
            TimeZone::UTC
        }
    };
    let mut expiring_within = Vec::new();
    match t.get("expiring_within") {
        None => expiring_within = vec![30, 15, 1],
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            for v in a {
                match v.as_integer() {
                    Some(n) if (1..=MAX_WITHIN).contains(&n) => expiring_within.push(n),
                    _ => r.problem(
                        "reports.expiring_within",
                        format!("{v} is not a number of days 1..={MAX_WITHIN}"),
                    ),
                }
            }
        }
        Some(_) => r.problem(
            "reports.expiring_within",
            format!("must be a non-empty list of days 1..={MAX_WITHIN}, e.g. [30, 15, 1]"),
        ),
    }
    let from = r
        .string(&t, "reports", "from")
        .unwrap_or_else(|| notices.from.clone());
    if from.parse::<lettre::Address>().is_err() {
        r.problem("reports.from", format!("{from:?} is not an e-mail address"));
    }
    let message_id_host = r
        .string(&t, "reports", "message_id_host")
        .unwrap_or_else(|| notices.message_id_host.clone());
    if crate::core::DomainName::parse(&message_id_host).is_err() {
        r.problem(
            "reports.message_id_host",
            format!("{message_id_host:?} is not a domain name"),
        );
    }
    ReportsConfig {
        recipients,
        daily_at,
        timezone,
        timezone_name,
        expiring_within,
        from,
        message_id_host,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_reports_section_parses_and_bad_values_name_their_key() {
        let c = Config::from_toml_str(
            "[reports]\nrecipients = [\"ops@hosting.test\"]\ndaily_at = \"07:30\"\ntimezone = \"Europe/Moscow\"\nexpiring_within = [30, 1]\n",
            None,
        )
        .unwrap();
        assert_eq!(c.reports.recipients, ["ops@hosting.test"]);
        assert_eq!(c.reports.daily_at, jiff::civil::time(7, 30, 0, 0));
        assert_eq!(c.reports.timezone_name, "Europe/Moscow");
        assert_eq!(c.reports.expiring_within, [30, 1]);
        let d = Config::from_toml_str("", None).unwrap();
        assert!(d.reports.recipients.is_empty());
        assert_eq!(d.reports.expiring_within, [30, 15, 1]);
        let e = Config::from_toml_str(
            "[reports]\nrecipients = [\"nobody\"]\ndaily_at = \"25:99\"\ntimezone = \"Mars/Olympus\"\nexpiring_within = [0]\nwhen = 1\n",
            None,
        )
        .unwrap_err();
        let mut keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "reports.daily_at",
                "reports.expiring_within",
                "reports.recipients",
                "reports.timezone",
                "reports.when"
            ]
        );
    }
}
