//! One lifecycle pass over a large portfolio (issue 11): 10k, 100k and 1M Registered domains
//! in a fresh store, written through the store's import path (`Store::apply_built` in chunks
//! of 2,000 domains, one client for ten, as `POST /v1/import` does), with expiry dates spread
//! so that about 1% of the domains are due on the day of the pass (each gets its 90-day
//! reminder: a notice, its owner and its e-mail delivery, in the domain's transaction).
//!
//! Per size it prints the pass's time, the due-index keys it read and the domains it found due
//! (it must read only those: keys read <= due + 1), and two baselines measured in the same run
//! on the same store: a raw sled scan of the same due-index range (the floor: reading the keys
//! and nothing else), and a raw scan of the whole domains tree (what a pass without the index
//! would at least cost). The ratios show how the pass grows with the portfolio: it should grow
//! with the due domains, not with the portfolio.
//!
//! Run: `cargo bench --bench lifecycle` (sizes from `REGMAIL_LIFECYCLE_SIZES`, comma
//! separated, default `10000,100000,1000000`; sled page cache from `REGMAIL_LIFECYCLE_CACHE_MB`,
//! default 64, the daemon's default).

/// The daemon's allocator (src/main.rs), so the pass runs here as it runs in the daemon.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::civil::Date;

use regmail::core::{
    Client, ClientId, ClientStatus, Contact, Domain, DomainName, DomainStatus, Handle, Person,
    Phase, Policy, Registrant, Transition,
};
use regmail::store::Store;

const CHUNK: usize = 2000;
const PER_CLIENT: usize = 10;

fn client(i: usize, now: Timestamp) -> Client {
    Client {
        id: ClientId::parse(&format!("c{i}")).expect("client id"),
        registrant: Registrant::Person(Person {
            fio_ru: "Иванов Иван".into(),
            fio_en: "Ivanov Ivan".into(),
            passport: vec!["4500 123456".into()],
            birth_date: jiff::civil::date(1980, 5, 17),
            postal_addr: vec!["Москва".into()],
            phone: "+7 495 1234567".into(),
            fax: None,
            email: format!("c{i}@customer.test"),
            is_protected: true,
            is_resident: true,
            inn: None,
        }),
        contact: Contact {
            name: format!("Client {i}"),
            email: format!("c{i}@customer.test"),
            phone: None,
        },
        status: ClientStatus::Registered,
        handle: Some(Handle::parse(&format!("B_{i}_1-GPT")).expect("handle")),
        open_request: None,
        last_error: None,
        created: now,
        updated: now,
    }
}

fn domain(i: usize, expires: Date, now: Timestamp) -> Domain {
    Domain {
        name: DomainName::parse(&format!("d{i}.example")).expect("name"),
        client_id: ClientId::parse(&format!("c{}", i / PER_CLIENT)).expect("client id"),
        years: 1,
        nameservers: Vec::new(),
        order_id: format!("o{i}"),
        description: Vec::new(),
        paid: true,
        auto_renew: false,
        expires: Some(expires),
        grace_ends: None,
        deleted_on: None,
        status: DomainStatus::Registered,
        phase: Phase::Done,
        open_request: None,
        last_error: None,
        created: now,
        updated: now,
    }
}

fn plus(d: Date, n: i64) -> Date {
    d.checked_add(jiff::Span::new().days(n)).expect("date")
}

struct Row {
    size: usize,
    populate: Duration,
    pass: Duration,
    keys_read: usize,
    due: usize,
    sent: usize,
    raw_index: Duration,
    raw_index_keys: usize,
    raw_domains: Duration,
    pass_cpu: Duration,
}

/// CPU time of this process so far, all threads, user + system (getrusage(2)).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn run(size: usize) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    // The daemon's default page cache (`[store] cache_capacity_mb = 64`) unless
    // `REGMAIL_LIFECYCLE_CACHE_MB` says otherwise (to see how much of the pass is page misses).
    let cache_mb: u64 = std::env::var("REGMAIL_LIFECYCLE_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(64);
    let store = Store::open(&dir.path().join("store"), cache_mb << 20).expect("store");
    let policy = Policy::default();
    store.set_policy(policy.clone());
    let now: Timestamp = "2030-01-01T09:00:00Z".parse().expect("now");
    let today = jiff::civil::date(2030, 1, 1);
    // Expiry 91..=190 days ahead: the first reminder (90 days before) falls on days 1..=100,
    // so about 1% of the portfolio is due on each day. The pass runs on day 1.
    let t = Instant::now();
    let mut i = 0;
    while i < size {
        let end = (i + CHUNK).min(size);
        let mut tr = Transition::default();
        for k in i..end {
            if k % PER_CLIENT == 0 {
                tr.clients.push(client(k / PER_CLIENT, now));
            }
            tr.domains
                .push(domain(k, plus(today, 91 + (k % 100) as i64), now));
        }
        store
            .apply_built(|_| Ok::<Transition, ()>(tr), now)
            .expect("import chunk")
            .expect("built");
        i = end;
    }
    let populate = t.elapsed();
    let day1 = now + jiff::SignedDuration::from_hours(24);

    // Baselines first (same store, same range): the raw due-index range, then the whole
    // domains tree.
    let db = &store;
    let t = Instant::now();
    let raw = db.due_by(plus(today, 1)).expect("raw scan");
    let raw_index = t.elapsed();
    let t = Instant::now();
    let mut n = 0usize;
    for d in db.list_domains(None, None, usize::MAX).expect("list") {
        n += usize::from(d.expires.is_some());
    }
    let raw_domains = t.elapsed();
    assert_eq!(n, size);

    let (t, cpu) = (Instant::now(), cpu_time());
    let report = regmail::lifecycle::run_pass(&store, &policy, day1).expect("pass");
    let pass = t.elapsed();
    let pass_cpu = cpu_time().saturating_sub(cpu);
    assert!(
        report.keys_read <= report.due + 1,
        "the pass read {} keys for {} due domains",
        report.keys_read,
        report.due
    );
    assert_eq!(report.reminders_sent, report.due, "{report:?}");
    // A second pass the same day finds nothing due.
    let again = regmail::lifecycle::run_pass(&store, &policy, day1).expect("pass");
    assert_eq!((again.due, again.events), (0, 0), "{again:?}");
    Row {
        size,
        populate,
        pass,
        keys_read: report.keys_read,
        due: report.due,
        sent: report.reminders_sent,
        raw_index,
        raw_index_keys: raw.keys_read,
        raw_domains,
        pass_cpu,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let sizes: Vec<usize> = std::env::var("REGMAIL_LIFECYCLE_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rows = Vec::new();
    for size in sizes {
        eprintln!("lifecycle bench: {size} domains ...");
        let r = run(size);
        eprintln!(
            "  populated in {:.1} s; pass {:.1} ms",
            r.populate.as_secs_f64(),
            ms(r.pass)
        );
        rows.push(r);
    }
    println!(
        "\n| domains | populate | due | keys read | reminders sent | pass | pass CPU (all threads) | per due domain | raw due-index scan (keys) | pass / raw index scan | raw scan of all domains | pass / all-domains scan |"
    );
    println!(
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &rows {
        println!(
            "| {} | {:.1} s | {} | {} | {} | {:.1} ms | {:.1} ms | {:.0} µs | {:.2} ms ({}) | {:.0}x | {:.1} ms | {:.2}x |",
            r.size,
            r.populate.as_secs_f64(),
            r.due,
            r.keys_read,
            r.sent,
            ms(r.pass),
            ms(r.pass_cpu),
            r.pass.as_secs_f64() * 1e6 / r.due.max(1) as f64,
            ms(r.raw_index),
            r.raw_index_keys,
            ms(r.pass) / ms(r.raw_index).max(1e-6),
            ms(r.raw_domains),
            ms(r.pass) / ms(r.raw_domains).max(1e-6),
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && rows.len() > 1
    {
        println!(
            "\ngrowth {}x domains -> pass {:.1}x (due {:.1}x); goal at 1M: under 2 s",
            last.size / first.size.max(1),
            ms(last.pass) / ms(first.pass).max(1e-6),
            last.due as f64 / first.due.max(1) as f64
        );
    }
}
