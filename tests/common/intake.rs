//! The in-process intake for mail corpora (issue 9): a sled store in a temporary directory, the
//! requests a corpus answers (made through the core, with fixed ids), and the same `Intake`
//! the daemon runs (`store.receive` then `Processor::process`). Plus DKIM test keys: Ed25519
//! keys made at run time, their TXT records for `[[inbound.dkim_keys]]`, and a signer.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use jiff::civil::Date;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use regmail::core::{
    ClientId, Contact, Ctx, Domain, DomainName, DomainOrder, Event, Handle, IdSource, NewClient,
    Person, Policy, Registrant, Request, RequestId,
};
use regmail::inbound::classify::ClassifyContext;
use regmail::inbound::intake::Intake;
use regmail::inbound::parse::ParseLimits;
use regmail::inbound::rules::Rules;
use regmail::inbound::source::Processor;
use regmail::store::Store;
use regmail::store::inbox::{InboxMessage, Received};
use regmail::trust::TrustConfig;

/// Our callback address and Message-ID host in every intake world.
pub const CALLBACK: &str = "gateway@gateway.test";
/// The registrar's sender address.
pub const REGISTRAR: &str = "robot@registrar.test";

/// Hands out queued ids, then fillers.
struct Ids(VecDeque<RequestId>, u32);

impl IdSource for Ids {
    fn request_id(&mut self) -> RequestId {
        self.0.pop_front().unwrap_or_else(|| {
            self.1 += 1;
            RequestId::parse(&format!("0190c0de-ffff-7000-8000-{:012x}", self.1)).expect("id")
        })
    }
}

/// A store with requests and the real intake over it.
pub struct IntakeWorld {
    /// Keeps the store's directory alive.
    _dir: tempfile::TempDir,
    /// The store.
    pub store: Arc<Store>,
    /// The intake the daemon runs.
    pub intake: Intake,
    policy: Policy,
    ids: Ids,
    now: Timestamp,
    seq: u32,
}

/// A person registrant for test clients.
pub fn test_person() -> Registrant {
    Registrant::Person(Person {
        fio_ru: "Иванов Иван".into(),
        fio_en: "Ivan Ivanov".into(),
        passport: vec!["4500 123456".into()],
        birth_date: Date::new(1980, 1, 31).expect("date"),
        postal_addr: vec!["Москва".into()],
        phone: "+7 495 1234567".into(),
        fax: None,
        email: "ivan@example.ru".into(),
        is_protected: true,
        is_resident: true,
        inn: None,
    })
}

fn contact() -> Contact {
    Contact {
        name: "Ivan".into(),
        email: "ivan@example.ru".into(),
        phone: None,
    }
}

impl IntakeWorld {
    /// An empty world whose intake judges with `trust`, the shipped R01 rules and the
    /// default parse limits.
    pub fn new(trust: TrustConfig) -> IntakeWorld {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("store"), 8 << 20).expect("store"));
        let policy = Policy {
            message_id_host: "gateway.test".into(),
            handle_prefix: "GW".into(),
            ..Policy::default()
        };
        let rules = Rules::parse(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/request-templates/r01/replies.toml"
            ))
            .expect("rules"),
        )
        .expect("rules parse");
        let intake = Intake {
            store: store.clone(),
            rules: Arc::new(RwLock::new(Arc::new(rules))),
            policy: policy.clone(),
            classify: ClassifyContext::new(CALLBACK, "gateway.test", [REGISTRAR]).with_trust(trust),
            limits: ParseLimits::default(),
            fallback: encoding_rs::KOI8_R,
            outbox_wake: None,
            health: None,
            redactor: Arc::default(),
        };
        IntakeWorld {
            _dir: dir,
            store,
            intake,
            policy,
            ids: Ids(VecDeque::new(), 0),
            now: "2027-02-01T10:00:00Z".parse().expect("time"),
            seq: 0,
        }
    }

    /// Applies an event through the core and the store (panics on refusal: set-up only).
    pub fn apply(&mut self, e: Event) {
        let mut ctx = Ctx {
            now: self.now,
            ids: &mut self.ids,
            policy: &self.policy,
        };
        if let Err(err) = self.store.apply(e.clone(), &mut ctx) {
            panic!("setting up {e:?}: {err}");
        }
    }

    /// Imports the holder of test domains (already registered at the registrar).
    pub fn holder(&mut self) {
        self.apply(Event::CreateClient(NewClient {
            id: ClientId::parse("holder").expect("id"),
            registrant: test_person(),
            contact: contact(),
            existing_handle: Some(Handle::parse("GW_0_0-GPT").expect("handle")),
        }));
    }

    /// Orders `name` for the holder with request id `id` and marks the request sent.
    pub fn sent_domain_request(&mut self, name: &str, id: RequestId) {
        self.ids.0.push_back(id);
        self.apply(Event::OrderDomain(DomainOrder {
            name: DomainName::parse(name).expect("domain"),
            client_id: ClientId::parse("holder").expect("client"),
            years: 1,
            nameservers: vec![],
            order_id: format!("order-{name}"),
            description: vec![],
            paid: true,
            auto_renew: false,
        }));
        self.sent(id);
    }

    /// Creates client `client` with a registration request `id` (and a paid domain waiting
    /// for it), and marks the request sent.
    pub fn sent_client_request(&mut self, client: &str, id: RequestId) {
        self.apply(Event::CreateClient(NewClient {
            id: ClientId::parse(client).expect("id"),
            registrant: test_person(),
            contact: contact(),
            existing_handle: None,
        }));
        self.ids.0.push_back(id);
        self.apply(Event::OrderDomain(DomainOrder {
            name: DomainName::parse(&format!("waiting-for-{client}.ru")).expect("domain"),
            client_id: ClientId::parse(client).expect("client"),
            years: 1,
            nameservers: vec![],
            order_id: format!("order-{client}"),
            description: vec![],
            paid: true,
            auto_renew: false,
        }));
        self.sent(id);
    }

    /// The outbox handed request `id` to the mail server.
    pub fn sent(&mut self, id: RequestId) {
        self.apply(Event::Sent {
            request: id,
            detail: "250 2.0.0 Ok".into(),
            copy: None,
        });
    }

    /// A request.
    pub fn request(&self, id: RequestId) -> Request {
        self.store.request(id).expect("read").expect("request")
    }

    /// A domain.
    pub fn domain(&self, name: &str) -> Domain {
        self.store
            .domain(&DomainName::parse(name).expect("domain"))
            .expect("read")
            .expect("domain")
    }

    /// Stores `raw` as a new message and runs the intake on it, as the daemon does.
    pub fn feed(&mut self, name: &str, raw: &[u8]) -> InboxMessage {
        self.seq += 1;
        let key = format!("maildir/{:04}-{name}", self.seq);
        let received = self.store.receive(&key, raw, self.now).expect("receive");
        assert!(
            matches!(received, Received::New(_)),
            "{name}: stored before?"
        );
        self.intake
            .process(&key, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

/// Standard base64 (RFC 4648 §4) for DKIM public keys.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A DKIM test key made at run time.
pub struct TestKey {
    /// PKCS#8 DER of the Ed25519 private key.
    pub pkcs8: Vec<u8>,
    /// The TXT record to pin: `v=DKIM1; k=ed25519; p=...` (RFC 8463).
    pub record: String,
}

impl TestKey {
    /// A fresh Ed25519 key.
    pub fn new() -> TestKey {
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("key");
        let k = Ed25519Key::from_pkcs8_der(&pkcs8).expect("key");
        TestKey {
            record: format!("v=DKIM1; k=ed25519; p={}", base64(&k.public_key())),
            pkcs8,
        }
    }

    /// `raw` with a DKIM-Signature of `domain`/`selector` prepended (relaxed/relaxed; From,
    /// To, Subject, Date, Message-ID, In-Reply-To signed; `l=` when `body_length`).
    pub fn sign(&self, domain: &str, selector: &str, raw: &[u8], body_length: bool) -> Vec<u8> {
        let k = Ed25519Key::from_pkcs8_der(&self.pkcs8).expect("key");
        let sig = DkimSigner::from_key(k)
            .domain(domain)
            .selector(selector)
            .headers(["From", "To", "Subject", "Date", "Message-ID", "In-Reply-To"])
            .body_length(body_length)
            .sign(raw)
            .expect("sign");
        let mut out = sig.to_header().into_bytes();
        out.extend_from_slice(raw);
        out
    }
}

impl Default for TestKey {
    fn default() -> Self {
        TestKey::new()
    }
}
