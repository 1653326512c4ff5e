//! Every reply fixture through the real pipeline up to the rules: parse -> classify -> rules
//! (the shipped `request-templates/r01/replies.toml`) -> decide, checked against
//! `fixtures/replies/manifest.toml`. Correlation and status changes are tested elsewhere with
//! the same manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::LazyLock;

use proptest::prelude::*;
use regmail::core::RequestId;
use regmail::inbound::{
    Class, ClassifyContext, ParseLimits, ParsedMail, RuleMatch, Rules, classify, decide, parse,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Manifest {
    context: Context,
    limits: Limits,
    requests: BTreeMap<String, Request>,
    fixture: Vec<Fixture>,
}

#[derive(Debug, Deserialize)]
struct Context {
    callback_address: String,
    message_id_host: String,
    registrar_senders: Vec<String>,
    fallback_charset: String,
    rules: String,
}

#[derive(Debug, Deserialize)]
struct Limits {
    max_size: usize,
    max_depth: usize,
    max_containers: usize,
}

#[derive(Debug, Deserialize)]
struct Request {
    id: String,
    token: String,
    message_id: String,
    kind: String,
    domain: Option<String>,
    handle: Option<String>,
    task_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Bounce {
    original_message_id: String,
    recipient: String,
    status: String,
    action: String,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    file: String,
    description: String,
    classification: String,
    rule: String,
    event: String,
    captures: BTreeMap<String, String>,
    request: String,
    correlation: String,
    subject: Option<String>,
    #[serde(default)]
    body_contains: Vec<String>,
    #[serde(default)]
    body_excludes: Vec<String>,
    #[serde(default)]
    reply_excludes: Vec<String>,
    auto_reply_signal: Option<String>,
    bounce: Option<Bounce>,
    quarantine: Option<String>,
    duplicate_of: Option<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_dir() -> PathBuf {
    root().join("fixtures/replies")
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.toml"))
        .expect("fixtures/replies/manifest.toml is readable");
    toml::from_str(&text).expect("manifest.toml is valid")
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

struct Pipeline {
    ctx: ClassifyContext,
    limits: ParseLimits,
    fallback: &'static encoding_rs::Encoding,
    rules: Rules,
}

impl Pipeline {
    fn new(m: &Manifest) -> Self {
        let rules_text = std::fs::read_to_string(root().join(&m.context.rules))
            .expect("the shipped rules file is readable");
        Pipeline {
            ctx: ClassifyContext::new(
                &m.context.callback_address,
                &m.context.message_id_host,
                &m.context.registrar_senders,
            ),
            limits: ParseLimits {
                max_size: m.limits.max_size,
                max_depth: m.limits.max_depth,
                max_containers: m.limits.max_containers,
                ..ParseLimits::default()
            },
            fallback: encoding_rs::Encoding::for_label(m.context.fallback_charset.as_bytes())
                .expect("a known fallback charset"),
            rules: Rules::parse(&rules_text).unwrap_or_else(|e| panic!("shipped rules: {e}")),
        }
    }
}

/// What the pipeline made of one fixture.
struct Outcome {
    classification: String,
    mail: Option<ParsedMail>,
    class: Option<Class>,
    rule: Option<RuleMatch>,
    quarantine: Option<String>,
}

fn run(p: &Pipeline, raw: &[u8]) -> Outcome {
    match parse(raw, &p.limits, p.fallback) {
        Err(q) => Outcome {
            classification: "quarantine".into(),
            mail: None,
            class: None,
            rule: None,
            quarantine: Some(q.reason),
        },
        Ok(mail) => {
            let class = classify(&mail, &p.ctx);
            let rule = if class.rules_apply() {
                p.rules.first_match(&mail.subject, &mail.reply_text)
            } else {
                None
            };
            let decision = decide(&class, rule.is_some());
            Outcome {
                classification: decision.as_str().into(),
                mail: Some(mail),
                class: Some(class),
                rule,
                quarantine: None,
            }
        }
    }
}

fn captures_of(rule: &RuleMatch) -> BTreeMap<String, String> {
    let c = &rule.captures;
    let mut out = BTreeMap::new();
    if let Some(v) = &c.domain {
        out.insert("domain".into(), v.as_str().to_string());
    }
    if let Some(v) = &c.handle {
        out.insert("handle".into(), v.as_str().to_string());
    }
    if let Some(v) = &c.task_id {
        out.insert("task_id".into(), v.clone());
    }
    if let Some(v) = &c.expires {
        out.insert("expires".into(), v.to_string());
    }
    if let Some(v) = &c.reason {
        out.insert("reason".into(), v.clone());
    }
    out
}

/// The signals in the mail that tie it to `req`, strongest first (DESIGN.md §5).
fn signals(o: &Outcome, req: &Request) -> Vec<&'static str> {
    let mut found = Vec::new();
    let Some(mail) = &o.mail else {
        return found;
    };
    let ours = |id: &String| *id == req.message_id;
    let bounce_id = match &o.class {
        Some(Class::Bounce(info)) => info.original_message_id.as_ref(),
        _ => None,
    };
    let own_id = match &o.class {
        Some(Class::OwnLoop) => mail.message_id.as_ref(),
        _ => None,
    };
    if mail.in_reply_to.iter().any(ours)
        || mail.references.iter().any(ours)
        || bounce_id.is_some_and(ours)
        || own_id.is_some_and(ours)
    {
        found.push("message-id");
    }
    if mail.subject.contains(&format!("[RM-{}]", req.token)) {
        found.push("subject-token");
    }
    if let Some(rule) = &o.rule {
        let c = &rule.captures;
        if c.task_id.is_some() && c.task_id == req.task_id {
            found.push("task-id");
        }
        if c.domain.is_some() && c.domain.as_ref().map(|d| d.as_str()) == req.domain.as_deref() {
            found.push("domain");
        }
        if c.handle.is_some() && c.handle.as_ref().map(|h| h.as_str()) == req.handle.as_deref() {
            found.push("handle");
        }
    }
    found
}

/// Checks one fixture; returns the list of mismatches.
fn check(m: &Manifest, p: &Pipeline, f: &Fixture) -> Vec<String> {
    let mut errs = Vec::new();
    let o = run(p, &read(&f.file));
    fn want_eq(errs: &mut Vec<String>, what: &str, want: &str, got: &str) {
        if want != got {
            errs.push(format!("{what}: expected {want:?}, got {got:?}"));
        }
    }

    want_eq(
        &mut errs,
        "classification",
        &f.classification,
        &o.classification,
    );
    let rule_name = o.rule.as_ref().map_or("none", |r| r.rule.as_str());
    want_eq(&mut errs, "rule", &f.rule, rule_name);
    let event = o.rule.as_ref().map_or("none", |r| r.event.as_str());
    want_eq(&mut errs, "event", &f.event, event);
    let got_caps = o.rule.as_ref().map(captures_of).unwrap_or_default();
    want_eq(
        &mut errs,
        "captures",
        &format!("{:?}", f.captures),
        &format!("{got_caps:?}"),
    );

    if let Some(want) = &f.quarantine {
        let got = o.quarantine.as_deref().unwrap_or("(not quarantined)");
        if !got.contains(want.as_str()) {
            errs.push(format!("quarantine reason {got:?} lacks {want:?}"));
        }
    }
    if let Some(mail) = &o.mail {
        if let Some(want) = &f.subject
            && *want != mail.subject
        {
            errs.push(format!(
                "subject: expected {want:?}, got {:?}",
                mail.subject
            ));
        }
        for s in &f.body_contains {
            if !mail.body.contains(s.as_str()) {
                errs.push(format!("body lacks {s:?}; body is:\n{}", mail.body));
            }
        }
        for s in &f.body_excludes {
            if mail.body.contains(s.as_str()) {
                errs.push(format!("body contains {s:?}"));
            }
        }
        for s in &f.reply_excludes {
            if mail.reply_text.contains(s.as_str()) {
                errs.push(format!("reply text contains {s:?}"));
            }
        }
        if mail.body.contains('\r') || mail.body.lines().any(|l| l.ends_with([' ', '\t'])) {
            errs.push("body is not normalised (CR or trailing white space)".into());
        }
        if mail.body.contains('\u{FFFD}') || mail.subject.contains('\u{FFFD}') {
            errs.push("undecoded bytes (U+FFFD) in subject or body".into());
        }
    }
    let signal = o.class.as_ref().and_then(|c| c.auto_reply_signal());
    match (&f.auto_reply_signal, signal) {
        (Some(want), Some(got)) if got.starts_with(want.as_str()) => {}
        (None, None) => {}
        (want, got) => errs.push(format!("auto-reply signal: expected {want:?}, got {got:?}")),
    }
    match (&f.bounce, &o.class) {
        (Some(want), Some(Class::Bounce(got))) => {
            let pairs = [
                (
                    "original_message_id",
                    &want.original_message_id,
                    &got.original_message_id,
                ),
                ("recipient", &want.recipient, &got.recipient),
                ("status", &want.status, &got.status),
                ("action", &want.action, &got.action),
            ];
            for (what, want, got) in pairs {
                if got.as_deref() != Some(want.as_str()) {
                    errs.push(format!("bounce {what}: expected {want:?}, got {got:?}"));
                }
            }
        }
        (None, Some(Class::Bounce(_))) => errs.push("unexpected bounce".into()),
        (Some(_), _) => errs.push("expected a bounce".into()),
        (None, _) => {}
    }

    // The correlation the manifest names is the strongest signal the mail actually carries.
    if f.request == "none" {
        for (name, req) in &m.requests {
            if !signals(&o, req).is_empty() {
                errs.push(format!("request = \"none\" but the mail points at {name}"));
            }
        }
        want_eq(&mut errs, "correlation", "none", &f.correlation);
    } else {
        match m.requests.get(&f.request) {
            None => errs.push(format!("unknown request {:?}", f.request)),
            Some(req) => {
                let found = signals(&o, req);
                want_eq(
                    &mut errs,
                    "strongest correlation signal",
                    &f.correlation,
                    found.first().copied().unwrap_or("none"),
                );
                if let Some(rule) = &o.rule
                    && !rule.kinds.is_empty()
                    && !rule.kinds.iter().any(|k| k.as_str() == req.kind)
                {
                    errs.push(format!(
                        "rule {} may not answer a {} request",
                        rule.rule, req.kind
                    ));
                }
            }
        }
    }
    errs
}

#[test]
fn every_fixture_has_its_expected_classification_rule_event_and_captures() {
    let m = manifest();
    let p = Pipeline::new(&m);
    let mut failures = Vec::new();
    for f in &m.fixture {
        let errs = check(&m, &p, f);
        if !errs.is_empty() {
            failures.push(format!(
                "{} ({}):\n  - {}",
                f.file,
                f.description,
                errs.join("\n  - ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ from the manifest:\n{}",
        failures.len(),
        m.fixture.len(),
        failures.join("\n")
    );
}

#[test]
fn manifest_and_directory_list_the_same_files() {
    let m = manifest();
    let listed: BTreeSet<String> = m.fixture.iter().map(|f| f.file.clone()).collect();
    assert_eq!(listed.len(), m.fixture.len(), "a file is listed twice");
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/replies exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    assert_eq!(listed, on_disk);
    assert!(m.fixture.len() >= 30, "only {} fixtures", m.fixture.len());
}

#[test]
fn manifest_requests_are_consistent() {
    let m = manifest();
    let kinds = [
        "client-registration",
        "domain-registration",
        "domain-renewal",
    ];
    for (name, r) in &m.requests {
        let id = RequestId::parse(&r.id).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id.token(), r.token, "{name}: token");
        assert_eq!(
            r.message_id,
            format!("{}@{}", r.token, m.context.message_id_host),
            "{name}: message_id"
        );
        assert!(kinds.contains(&r.kind.as_str()), "{name}: kind {}", r.kind);
        if r.kind == "client-registration" {
            assert!(
                r.handle.is_some(),
                "{name}: a client request needs its handle"
            );
        } else {
            assert!(
                r.domain.is_some(),
                "{name}: a domain request needs its domain"
            );
        }
    }
    for f in &m.fixture {
        assert!(
            f.request == "none" || m.requests.contains_key(&f.request),
            "{}: unknown request {}",
            f.file,
            f.request
        );
    }
}

#[test]
fn the_duplicate_carries_the_same_message_id_and_outcome() {
    let m = manifest();
    let p = Pipeline::new(&m);
    let mut seen = 0;
    for f in m.fixture.iter().filter(|f| f.duplicate_of.is_some()) {
        let Some(original) = f.duplicate_of.as_deref() else {
            continue;
        };
        let a = run(&p, &read(original));
        let b = run(&p, &read(&f.file));
        let id = |o: &Outcome| o.mail.as_ref().and_then(|m| m.message_id.clone());
        assert!(id(&a).is_some());
        assert_eq!(id(&a), id(&b), "{}", f.file);
        assert_eq!(a.rule, b.rule, "{}", f.file);
        assert_ne!(
            read(original),
            read(&f.file),
            "a duplicate is a second delivery, not a copy of the file"
        );
        seen += 1;
    }
    assert_eq!(seen, 1);
}

#[test]
fn the_shipped_limits_also_refuse_a_generated_huge_message() {
    let m = manifest();
    let p = Pipeline::new(&m);
    let mut raw = read("01-client-1-ack-koi8r-8bit.eml");
    raw.extend(std::iter::repeat_n(b'x', ParseLimits::default().max_size));
    let q = parse(&raw, &ParseLimits::default(), p.fallback).expect_err("over the default limit");
    assert!(q.reason.contains("limit"), "{}", q.reason);
}

/// The pipeline and the bytes of every fixture but the oversized one, loaded once.
static MUTATION_BASE: LazyLock<(Pipeline, Vec<Vec<u8>>)> = LazyLock::new(|| {
    let m = manifest();
    let bases = m
        .fixture
        .iter()
        .filter(|f| f.classification != "quarantine" || f.file.contains("garbage"))
        .map(|f| read(&f.file))
        .collect();
    (Pipeline::new(&m), bases)
});

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Mutated fixtures (bytes overwritten, inserted, cut) are parsed or quarantined; nothing
    /// panics, and whatever parses can be classified and run through the rules.
    #[test]
    fn mutated_fixtures_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..24),
        cut in any::<prop::sample::Index>(),
    ) {
        let (p, bases) = &*MUTATION_BASE;
        let mut raw = bases[which.index(bases.len())].clone();
        for (at, byte, op) in edits {
            if raw.is_empty() {
                raw.push(byte);
                continue;
            }
            let i = at.index(raw.len());
            match op {
                0 => raw[i] = byte,
                1 => raw.insert(i, byte),
                _ => {
                    raw.remove(i);
                }
            }
        }
        if !raw.is_empty() && cut.index(4) == 0 {
            let keep = cut.index(raw.len());
            raw.truncate(keep);
        }
        let o = run(p, &raw);
        prop_assert!(o.quarantine.is_some() || o.mail.is_some());
    }
}
