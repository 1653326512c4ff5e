//! The simulated registrar: takes one request e-mail, judges it the way R01 would, changes its
//! registry, and plans the replies (what, to whom, how long after). Pure apart from the random
//! draws, which come from a generator seeded by the configuration, so a run is repeatable.

use std::time::Duration;

use jiff::Span;
use jiff::civil::Date;
use secrecy::ExposeSecret;

use super::config::{DropWhat, SandboxConfig};
use super::registry::{DomainRecord, HandleRecord, Registry};
use super::replies::{Failure, Letter, Outcome, ReplyKind};
use super::request::{Action, Expect, Template, TemplateKind, check, envelope};
use crate::core::DomainName;

/// SplitMix64 (Steele, Lea, Flood 2014): small, seedable, good enough for fault rates.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A reply planned for sending.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The letter.
    pub letter: Letter,
    /// How long after the request was handled it goes out.
    pub after: Duration,
    /// A second copy of the reply before it.
    pub duplicate: bool,
}

/// The result of handling one request e-mail.
#[derive(Debug, Clone)]
pub struct Handled {
    /// One line for the log.
    pub summary: String,
    /// Replies in the order they go out.
    pub replies: Vec<Planned>,
}

/// The registrar.
pub struct Registrar {
    /// Its registry (saved by the caller after each request).
    pub registry: Registry,
    config: SandboxConfig,
    rng: Rng,
}

const RENEW_WINDOW_TLDS: [&str; 3] = ["ru", "su", "xn--p1ai"];

fn fail(code: &'static str, line: impl Into<String>, ru: impl Into<String>) -> Failure {
    Failure {
        code,
        line: line.into(),
        ru: ru.into(),
    }
}

/// R01's wording for a missing required field.
fn not_filled(field: &str) -> Failure {
    let upper = field.to_ascii_uppercase();
    fail(
        "NOT_FILLED",
        format!("{upper} not filled. You should fill all the necessary parameters to proceed."),
        format!("Поле {upper} не заполнено."),
    )
}

fn parse_dmy(s: &str) -> Option<Date> {
    let mut it = s.trim().split('.');
    let d: i8 = it.next()?.parse().ok()?;
    let m: i8 = it.next()?.parse().ok()?;
    let y: i16 = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Date::new(y, m, d).ok()
}

fn dmy(d: Date) -> String {
    d.strftime("%d.%m.%Y").to_string()
}

fn valid_handle(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn years(t: &Template, field: &str, default: u8) -> Result<u8, Failure> {
    match t.one(field) {
        None => Ok(default),
        Some(v) => match v.parse::<u8>() {
            Ok(n) if (1..=10).contains(&n) => Ok(n),
            _ => Err(fail(
                "WRONG_YEARS",
                format!(
                    "Error: WRONG_YEARS: {} must be 1 to 10, not {v:?}",
                    field.to_ascii_uppercase()
                ),
                format!("Неверный срок: {v}"),
            )),
        },
    }
}

impl Registrar {
    /// A registrar with its registry.
    pub fn new(config: SandboxConfig, registry: Registry) -> Registrar {
        let rng = Rng::new(config.seed);
        Registrar {
            registry,
            config,
            rng,
        }
    }

    /// Handles one request e-mail received `today`.
    pub fn handle(&mut self, raw: &[u8], today: Date) -> Handled {
        let env = envelope(raw);
        let c = &mut self.registry.counters;
        c.requests += 1;
        if let Some(id) = &env.message_id {
            let n = self.registry.message_ids.entry(id.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                c.repeated_message_ids += 1;
            }
        }
        let mid = env
            .message_id
            .clone()
            .unwrap_or_else(|| "(no Message-ID)".into());
        let Some(to) = env.from.clone() else {
            self.registry.counters.refused += 1;
            return Handled {
                summary: format!("request {mid}: no From address; nothing to answer"),
                replies: Vec::new(),
            };
        };
        let expect = Expect {
            contacts: &self.config.contacts,
            agreement: &self.config.agreement,
            password: self.config.password.expose_secret(),
        };
        let letter = |kind: ReplyKind, quote: Option<String>| Letter {
            to: to.clone(),
            kind,
            in_reply_to: env.message_id.clone(),
            original_subject: env.subject.clone(),
            quote,
        };
        let req = match check(&env, &expect) {
            Ok(r) => r,
            Err(refusal) => {
                self.registry.counters.refused += 1;
                let summary = format!(
                    "request {mid} from {to}: refused {}: {}",
                    refusal.code, refusal.en
                );
                let replies = vec![Planned {
                    letter: letter(ReplyKind::Refusal(refusal), None),
                    after: self.config.ack_delay,
                    duplicate: false,
                }];
                return self.finish(summary, replies);
            }
        };
        let quote = self.config.quote_request.then(|| {
            req.text
                .lines()
                .map(|l| {
                    if l.trim_start().to_ascii_lowercase().starts_with("password:") {
                        "password: ********"
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
        let task = self.registry.next_task;
        self.registry.next_task += 1;
        let mut finals = Vec::new();
        let mut drop_ack = false;
        let mut described = Vec::new();
        for t in &req.templates {
            let drop = self.drop_for(t);
            let outcome = match self.object(req.action, t, today) {
                Ok(o) => {
                    self.registry.counters.completed += 1;
                    o
                }
                Err(f) => {
                    self.registry.counters.failed += 1;
                    Outcome::Failed(f)
                }
            };
            let mut d = outcome.describe();
            if matches!(drop, Some(DropWhat::All | DropWhat::Ack)) {
                drop_ack = true;
            }
            if matches!(drop, Some(DropWhat::All | DropWhat::Final)) {
                self.registry.counters.dropped += 1;
                d.push_str(" (reply dropped)");
            } else {
                finals.push(letter(ReplyKind::Final { task, outcome }, quote.clone()));
            }
            described.push(d);
        }
        let (ack_at, final_at) = if self.config.out_of_order {
            (
                self.config.ack_delay + self.config.delay,
                self.config.ack_delay,
            )
        } else {
            (
                self.config.ack_delay,
                self.config.ack_delay + self.config.delay,
            )
        };
        let mut replies = Vec::new();
        if drop_ack {
            self.registry.counters.dropped += 1;
            described.push("acknowledgement dropped".into());
        } else {
            replies.push(Planned {
                letter: letter(ReplyKind::Ack { task }, quote.clone()),
                after: ack_at,
                duplicate: false,
            });
        }
        replies.extend(finals.into_iter().map(|l| Planned {
            letter: l,
            after: final_at,
            duplicate: false,
        }));
        replies.sort_by_key(|p| p.after);
        let summary = format!(
            "request {mid} from {to}: action {} ({}), queued as task {task}: {}",
            req.action.as_str(),
            req.charset,
            described.join("; ")
        );
        self.finish(summary, replies)
    }

    /// Adds duplicates and counts the replies.
    fn finish(&mut self, summary: String, replies: Vec<Planned>) -> Handled {
        let mut out = Vec::with_capacity(replies.len() * 2);
        for p in replies {
            let dup = self.rng.unit() < self.config.duplicate_rate;
            if dup {
                out.push(Planned {
                    duplicate: true,
                    ..p.clone()
                });
            }
            out.push(p);
        }
        self.registry.counters.replies += out.len() as u64;
        Handled {
            summary,
            replies: out,
        }
    }

    fn drop_for(&self, t: &Template) -> Option<DropWhat> {
        self.config.drops.iter().find_map(|rule| {
            let hit = match t.kind {
                TemplateKind::Domain => t.one("domain").is_some_and(|d| {
                    let ascii = DomainName::parse(d)
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_else(|_| d.to_ascii_lowercase());
                    let unicode = DomainName::parse(d)
                        .map(|n| n.to_unicode())
                        .unwrap_or_else(|_| d.to_owned());
                    rule.matches_domain(&ascii, &unicode)
                }),
                _ => t.one("nic_hdl").is_some_and(|h| rule.matches_handle(h)),
            };
            hit.then_some(rule.replies)
        })
    }

    /// The simulated back-end fault of `error_rate` (drawn for every object, so runs repeat).
    fn fault(&mut self) -> Result<(), Failure> {
        if self.rng.unit() < self.config.error_rate {
            return Err(fail(
                "REGISTRY_ERROR",
                "Error: REGISTRY_ERROR: the registry did not confirm the operation (simulated fault); send the request again",
                "Ошибка реестра, повторите заявку позже.",
            ));
        }
        Ok(())
    }

    fn object(&mut self, action: Action, t: &Template, today: Date) -> Result<Outcome, Failure> {
        match (action, t.kind) {
            (Action::New, TemplateKind::Person | TemplateKind::Organization) => {
                self.contact(t, today)
            }
            (Action::New, TemplateKind::Domain) => self.register(t, today),
            (Action::Prolong, _) => self.prolong(t, today),
        }
    }

    fn contact(&mut self, t: &Template, today: Date) -> Result<Outcome, Failure> {
        let organization = t.kind == TemplateKind::Organization;
        let required: &[&str] = if organization {
            &[
                "nic_hdl",
                "orgname_ru",
                "orgname_en",
                "inn",
                "legal_addr",
                "postal_addr",
                "phone",
                "e_mail",
            ]
        } else {
            &[
                "nic_hdl",
                "fiorus",
                "fioeng",
                "passport",
                "birth_date",
                "postal_addr",
                "phone",
                "e_mail",
            ]
        };
        if let Some(missing) = required.iter().find(|f| t.many(f).is_empty()) {
            return Err(not_filled(missing));
        }
        let handle = t.one("nic_hdl").unwrap_or_default().to_owned();
        if !valid_handle(&handle) {
            return Err(fail(
                "WRONG_NIC_HDL",
                format!(
                    "Error: WRONG_NIC_HDL: {handle:?} is not a valid handle (letters, digits, _ and -)"
                ),
                "Неверный идентификатор контакта (nic_hdl).",
            ));
        }
        let name = if organization {
            let inn = t.one("inn").unwrap_or_default();
            if !(inn.len() == 10 || inn.len() == 12) || !inn.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail(
                    "WRONG_INN",
                    format!(
                        "Error: WRONG_INN: INN {inn:?} of organization {handle} must be 10 or 12 digits"
                    ),
                    "Неверный ИНН организации.",
                ));
            }
            t.one("orgname_en").unwrap_or_default().to_owned()
        } else {
            let fioeng = t.one("fioeng").unwrap_or_default();
            let raw = t.one("birth_date").unwrap_or_default();
            let date = parse_dmy(raw);
            let wrong = fioeng.to_ascii_uppercase().contains("BADDATE")
                || match date {
                    None => true,
                    Some(d) => d >= today || d <= Date::constant(1900, 1, 1),
                };
            if wrong {
                return Err(fail(
                    "WRONG_BIRTH_DATE",
                    format!(
                        "WRONG_BIRTH_DATE: birth date {raw} of person {handle} is wrong (DD.MM.YYYY, a real date in the past)"
                    ),
                    "Неверная дата рождения (birth_date).",
                ));
            }
            fioeng.to_owned()
        };
        if !t.one("e_mail").unwrap_or_default().contains('@') {
            return Err(fail(
                "WRONG_EMAIL",
                format!("Error: WRONG_EMAIL: e-mail address of {handle} is not valid"),
                "Неверный адрес электронной почты.",
            ));
        }
        if self.registry.has_handle(&handle) {
            return Err(fail(
                "DADMIN_EXIST",
                format!("DADMIN_EXIST: contact {handle} already exists"),
                format!("Контакт {handle} уже существует."),
            ));
        }
        self.fault()?;
        self.registry.handles.insert(
            handle.to_ascii_uppercase(),
            HandleRecord {
                kind: if organization {
                    "organization"
                } else {
                    "person"
                }
                .into(),
                name,
                created: Some(today),
            },
        );
        Ok(Outcome::Contact {
            handle,
            organization,
        })
    }

    fn domain_name(t: &Template) -> Result<DomainName, Failure> {
        let raw = t.one("domain").ok_or_else(|| not_filled("domain"))?;
        DomainName::parse(raw).map_err(|e| {
            fail(
                "WRONG_DOMAIN_NAME",
                format!("Error: WRONG_DOMAIN_NAME: {raw:?} is not a valid domain name ({e})"),
                "Неверное имя домена.",
            )
        })
    }

    fn register(&mut self, t: &Template, today: Date) -> Result<Outcome, Failure> {
        let name = Self::domain_name(t)?;
        let admin = t.one("admin-o").ok_or_else(|| not_filled("admin-o"))?;
        for ns in t.many("nserver") {
            let host = ns.split_whitespace().next().unwrap_or_default();
            if DomainName::parse(host).is_err() {
                return Err(fail(
                    "WRONG_NSERVER",
                    format!(
                        "Error: WRONG_NSERVER: name server {ns:?} of {} is not valid",
                        name.as_str()
                    ),
                    "Неверный DNS-сервер.",
                ));
            }
        }
        let years = years(t, "years", self.config.expiry_years_default)?;
        if !self.registry.has_handle(admin) {
            return Err(fail(
                "ADMIN_NOT_FOUND",
                format!(
                    "Error: ADMIN_NOT_FOUND: contact {admin} (admin-o of {}) does not exist",
                    name.as_str()
                ),
                format!("Контакт {admin} не найден."),
            ));
        }
        if self.registry.domain(name.as_str()).is_some() {
            return Err(fail(
                "DOMAIN_EXISTS",
                format!("Domain {} is already registered.", name.as_str()),
                format!("Домен {} уже зарегистрирован.", name.to_unicode()),
            ));
        }
        self.fault()?;
        let expires = match self.config.first_term_days {
            Some(days) => today.saturating_add(Span::new().days(i64::from(days))),
            None => today.saturating_add(Span::new().years(i64::from(years))),
        };
        self.registry.domains.insert(
            name.as_str().to_owned(),
            DomainRecord {
                admin: admin.to_ascii_uppercase(),
                expires,
                nservers: t.many("nserver").into_iter().map(str::to_owned).collect(),
                created: Some(today),
            },
        );
        Ok(Outcome::Registered {
            domain: name.as_str().to_owned(),
            unicode: name.to_unicode(),
            expires,
        })
    }

    fn prolong(&mut self, t: &Template, today: Date) -> Result<Outcome, Failure> {
        let name = Self::domain_name(t)?;
        if t.one("prolong").is_none() {
            return Err(not_filled("prolong"));
        }
        let years = years(t, "prolong", 1)?;
        let Some(rec) = self.registry.domain(name.as_str()).cloned() else {
            return Err(fail(
                "DOMAIN_NOT_FOUND",
                format!(
                    "Error: DOMAIN_NOT_FOUND: domain {} is not registered at R01",
                    name.as_str()
                ),
                format!("Домен {} не найден в реестре.", name.to_unicode()),
            ));
        };
        if RENEW_WINDOW_TLDS.contains(&name.tld()) {
            let earliest = rec
                .expires
                .saturating_sub(Span::new().days(i64::from(self.config.renew_window_days)));
            if today < earliest {
                return Err(fail(
                    "PROLONG_TOO_EARLY",
                    format!(
                        "Error: PROLONG_TOO_EARLY: domain {} expires on {} and can be prolonged from {} on",
                        name.as_str(),
                        dmy(rec.expires),
                        dmy(earliest)
                    ),
                    "Продление возможно не ранее чем за 60 дней до окончания срока регистрации.",
                ));
            }
        }
        self.fault()?;
        let expires = rec
            .expires
            .saturating_add(Span::new().years(i64::from(years)));
        if let Some(r) = self.registry.domains.get_mut(name.as_str()) {
            r.expires = expires;
        }
        Ok(Outcome::Prolonged {
            domain: name.as_str().to_owned(),
            unicode: name.to_unicode(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CONFIG: &str = r#"
        source = "dir"
        dir = "outbox"
        reply = "maildir"
        maildir = "inbox"
        from = "robot@registrar.test"
        contacts = ["gateway@gateway.test"]
        agreement = "RP/01/00"
        password = "pw"
        registry = "registry.json"
        delay = "1s"
    "#;

    fn registrar(extra: &str) -> Registrar {
        let c =
            SandboxConfig::from_toml_str(&format!("{CONFIG}\n{extra}"), Path::new(".")).unwrap();
        Registrar::new(c, Registry::default())
    }

    fn today() -> Date {
        Date::constant(2026, 11, 23)
    }

    fn request(body: &str) -> Vec<u8> {
        let mut raw = b"From: gateway@gateway.test\r\nSubject: NEW [RM-1]\r\nMessage-ID: <1@gateway.test>\r\nContent-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
        raw.extend_from_slice(
            &encoding_rs::KOI8_R
                .encode(&format!(
                    "action: NEW\nagreement: RP/01/00\npassword: pw\n\n{body}#[TEMPLATES END]#\n"
                ))
                .0,
        );
        raw
    }

    fn person(handle: &str, fioeng: &str, birth: &str) -> String {
        format!(
            "#[PERSON TEMPLATE]#\nnic_hdl: {handle}\nfiorus: Иванов Иван\nfioeng: {fioeng}\npassport: 4500 123456\npassport: выдан ОВД\nbirth_date: {birth}\npostal_addr: Москва\nphone: +7 495 1234567\ne_mail: i@example.ru\n"
        )
    }

    fn domain(name: &str, admin: &str) -> String {
        format!(
            "#[DOMAIN TEMPLATE]#\ndomain: {name}\nnserver: ns1.example.ru\nadmin-o: {admin}\nyears: 2\n"
        )
    }

    fn outcomes(h: &Handled) -> Vec<ReplyKind> {
        h.replies.iter().map(|p| p.letter.kind.clone()).collect()
    }

    #[test]
    fn a_person_and_its_domain_in_one_request_are_acknowledged_then_completed() {
        let mut r = registrar("");
        let h = r.handle(
            &request(&format!(
                "{}{}",
                person("A_1_1-GPT", "Ivan Ivanov", "31.01.1980"),
                domain("пример.рф", "A_1_1-GPT")
            )),
            today(),
        );
        let k = outcomes(&h);
        assert_eq!(k[0], ReplyKind::Ack { task: 1001 });
        assert_eq!(h.replies[0].after, Duration::ZERO);
        assert_eq!(h.replies[1].after, Duration::from_secs(1));
        assert!(
            matches!(&k[1], ReplyKind::Final { outcome: Outcome::Contact { handle, organization: false }, .. } if handle == "A_1_1-GPT")
        );
        assert!(
            matches!(&k[2], ReplyKind::Final { outcome: Outcome::Registered { domain, expires, .. }, .. }
            if domain == "xn--e1afmkfd.xn--p1ai" && *expires == Date::constant(2028, 11, 23))
        );
        assert!(r.registry.has_handle("a_1_1-gpt"));
        assert!(h.summary.contains("task 1001"), "{}", h.summary);
    }

    fn failure_code(k: &ReplyKind) -> &'static str {
        match k {
            ReplyKind::Final {
                outcome: Outcome::Failed(f),
                ..
            } => f.code,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn object_errors_come_after_an_acknowledgement() {
        let mut r = registrar("");
        for (body, code) in [
            (
                person("B_1_1-GPT", "Bad BADDATE", "31.01.1980"),
                "WRONG_BIRTH_DATE",
            ),
            (
                person("B_1_1-GPT", "Ivan", "01.01.1900"),
                "WRONG_BIRTH_DATE",
            ),
            (
                person("B_1_1-GPT", "Ivan", "31.02.1980"),
                "WRONG_BIRTH_DATE",
            ),
            (
                person("B_1_1-GPT", "Ivan", "01.01.2030"),
                "WRONG_BIRTH_DATE",
            ),
            (
                person("B_1_1-GPT", "Ivan", "31.01.1980")
                    .replace("passport: 4500 123456\npassport: выдан ОВД\n", ""),
                "NOT_FILLED",
            ),
            (domain("free.ru", "NOBODY_1_1-GPT"), "ADMIN_NOT_FOUND"),
            (domain("bad_name.ru", "NOBODY_1_1-GPT"), "WRONG_DOMAIN_NAME"),
        ] {
            let h = r.handle(&request(&body), today());
            let k = outcomes(&h);
            assert!(matches!(k[0], ReplyKind::Ack { .. }), "{k:?}");
            assert_eq!(failure_code(&k[1]), code, "{body}");
        }
        // The same handle twice: DADMIN_EXIST; a domain twice: taken.
        let ok = person("C_1_1-GPT", "Ivan", "31.01.1980");
        r.handle(&request(&ok), today());
        assert_eq!(
            failure_code(&outcomes(&r.handle(&request(&ok), today()))[1]),
            "DADMIN_EXIST"
        );
        r.handle(&request(&domain("taken.ru", "C_1_1-GPT")), today());
        assert_eq!(
            failure_code(
                &outcomes(&r.handle(&request(&domain("taken.ru", "C_1_1-GPT")), today()))[1]
            ),
            "DOMAIN_EXISTS"
        );
        assert!(r.registry.counters.failed >= 9);
    }

    fn prolong(name: &str) -> Vec<u8> {
        let mut raw = request("");
        let text = format!(
            "action: PROLONG\nagreement: RP/01/00\npassword: pw\n\n#[DOMAIN TEMPLATE]#\ndomain: {name}\nprolong: 1\n#[TEMPLATES END]#\n"
        );
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        raw.truncate(at);
        raw.extend_from_slice(text.as_bytes());
        raw
    }

    #[test]
    fn prolong_needs_an_existing_domain_and_the_renewal_window() {
        let mut r = registrar("first_term_days = 30");
        r.handle(
            &request(&person("D_1_1-GPT", "Ivan", "31.01.1980")),
            today(),
        );
        r.handle(&request(&domain("short.ru", "D_1_1-GPT")), today());
        assert_eq!(
            r.registry.domain("short.ru").unwrap().expires,
            Date::constant(2026, 12, 23)
        );
        let k = outcomes(&r.handle(&prolong("short.ru"), today()));
        assert!(
            matches!(&k[1], ReplyKind::Final { outcome: Outcome::Prolonged { expires, .. }, .. } if *expires == Date::constant(2027, 12, 23))
        );
        assert_eq!(
            failure_code(&outcomes(&r.handle(&prolong("short.ru"), today()))[1]),
            "PROLONG_TOO_EARLY"
        );
        assert_eq!(
            failure_code(&outcomes(&r.handle(&prolong("unknown.com"), today()))[1]),
            "DOMAIN_NOT_FOUND"
        );
    }

    #[test]
    fn faults_are_repeatable_and_drops_duplicates_and_order_apply() {
        let run = |extra: &str| {
            let mut r = registrar(extra);
            (0..20)
                .map(|i| {
                    outcomes(&r.handle(
                        &request(&person(&format!("E_{i}_1-GPT"), "Ivan", "31.01.1980")),
                        today(),
                    ))
                    .len()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            run("error_rate = 0.5\nduplicate_rate = 0.5\nseed = 7"),
            run("error_rate = 0.5\nduplicate_rate = 0.5\nseed = 7")
        );

        let mut r = registrar("duplicate_rate = 1.0\nout_of_order = true");
        let h = r.handle(
            &request(&person("F_1_1-GPT", "Ivan", "31.01.1980")),
            today(),
        );
        let k = outcomes(&h);
        assert_eq!(k.len(), 4, "{k:?}");
        assert!(matches!(k[0], ReplyKind::Final { .. }) && matches!(k[1], ReplyKind::Final { .. }));
        assert!(matches!(k[2], ReplyKind::Ack { .. }) && matches!(k[3], ReplyKind::Ack { .. }));
        assert!(h.replies[0].duplicate && !h.replies[1].duplicate);

        let mut r = registrar(
            "[[drop]]\ndomain = '^silent'\n[[drop]]\nhandle = 'G_2'\nreplies = \"final\"",
        );
        r.handle(
            &request(&person("G_1_1-GPT", "Ivan", "31.01.1980")),
            today(),
        );
        assert!(
            r.handle(&request(&domain("silent.ru", "G_1_1-GPT")), today())
                .replies
                .is_empty()
        );
        assert!(
            r.registry.domain("silent.ru").is_some(),
            "the work is done, only the mail is lost"
        );
        let k = outcomes(&r.handle(
            &request(&person("G_2_1-GPT", "Ivan", "31.01.1980")),
            today(),
        ));
        assert_eq!(k.len(), 1);
        assert!(matches!(k[0], ReplyKind::Ack { .. }));
    }

    #[test]
    fn refusals_get_one_reply_and_no_task() {
        let mut r = registrar("");
        let mut raw = request(&person("H_1_1-GPT", "Ivan", "31.01.1980"));
        let s = String::from_utf8_lossy(&raw).replace("password: pw", "password: s3cr3t-guess");
        raw = s.into_bytes();
        let h = r.handle(&raw, today());
        assert_eq!(h.replies.len(), 1);
        assert!(
            matches!(&h.replies[0].letter.kind, ReplyKind::Refusal(x) if x.code == "AUTH_FAILED")
        );
        assert_eq!(r.registry.next_task, 1001);
        assert_eq!(r.registry.counters.refused, 1);
        assert!(
            !h.summary.contains("s3cr3t"),
            "no password in logs: {}",
            h.summary
        );
    }
}
