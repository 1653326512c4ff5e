//! A portfolio of 10k, 100k and 1M domains (issue 13): each size is imported into a fresh
//! daemon through `POST /v1/import` (one client for ten domains), then the daemon is restarted
//! and measured. Per size it prints the import rate (and, as the baseline in the same run, the
//! rate of inserting the same domain records into a bare sled tree with one flush per 2,000,
//! as the import's chunks do), the store's size on disk per domain (against the bare tree's),
//! RSS after start and under load, the time from start to a 200 on /healthz, p50/p99 of
//! `GET /v1/domains/{d}`, one filtered list page, the reseller reports (`/v1/reports/expiring`
//! for the domains expiring in the portfolio's first three days, `expired`, `deleted`) and a
//! `/metrics` scrape.
//!
//! Run: `cargo bench --bench scale` (sizes from `REGMAIL_SCALE_SIZES`, comma separated,
//! default `10000,100000`; add 1000000 for the million; `REGMAIL_SCALE_SECONDS` bounds one
//! size's import, default 1200, after which that size stops and is reported as unfinished).
//! `REGMAIL_BENCH_BIN` runs another build of the daemon (to compare two builds in one session).
//!
//! The bench binary uses the daemon's allocator (mimalloc), so the bare-sled baseline is not
//! handicapped by glibc's malloc.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const TOKEN: &str = "bench-token-0123456789abcdef0123456789";
const PART: usize = 5000;

struct Daemon {
    child: Option<Child>,
    base: String,
    dir: PathBuf,
    cfg: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Daemon {
    fn new(dir: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        std::fs::write(dir.join("token"), TOKEN).expect("token file");
        // `REGMAIL_SCALE_CACHE_MB` sets `[store] cache_capacity_mb` (the daemon's default if unset).
        let cache = std::env::var("REGMAIL_SCALE_CACHE_MB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|mb| format!("cache_capacity_mb = {mb}\n"))
            .unwrap_or_default();
        let cfg = dir.join("regmail.toml");
        std::fs::write(
            &cfg,
            format!(
                "[store]\npath = \"store\"\n{cache}[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"token\"\n[log]\nfilter = \"warn\"\n"
            ),
        )
        .expect("config");
        Daemon {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            dir: dir.to_owned(),
            cfg,
        }
    }

    /// Starts the daemon; returns the time until /healthz answered 200.
    fn start(&mut self) -> Duration {
        let t = Instant::now();
        let bin = std::env::var_os("REGMAIL_BENCH_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_regmail").into());
        let child = Command::new(bin)
            .current_dir(&self.dir)
            .arg("--config")
            .arg(&self.cfg)
            .arg("serve")
            .env_remove("REGMAIL_API_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start regmail");
        self.child = Some(child);
        let a = agent();
        loop {
            if a.get(&format!("{}/healthz", self.base))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "regmail did not start"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let mut c = c;
            let _ = c.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn rss_mb(&self) -> f64 {
        let Some(c) = &self.child else { return 0.0 };
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                n += dir_bytes(&e.path());
            } else {
                n += m.len();
            }
        }
    }
    n
}

fn client_line(c: usize) -> String {
    json!({"client": {"id": format!("c{c}"), "handle": format!("C{c}-GPT"), "registrant": {"type": "person",
        "fio_ru": "Иванов Иван Иванович", "fio_en": "Ivan I Ivanov", "passport": ["4500 123456 выдан ОВД Москвы 01.02.2003"],
        "birth_date": "1980-01-31", "postal_addr": ["101000, Москва, ул. Ленина, д. 1, кв. 2"], "phone": "+7 495 1234567",
        "email": format!("owner{c}@example.ru")}}})
    .to_string()
}

/// The first expiry of the portfolio: 90 days after the run date, past the auto-renewal
/// window (`[renewal] days_before`, 59 by default). With fixed dates the figures depended on
/// the calendar: run in December 2026, a twelfth of the domains (83,000 of a million, all
/// auto-renew) expired in January 2027 and the daemon, as it should, asked for their renewal
/// during the import, so the import rate measured the renewals too. The renewal pass is the
/// lifecycle bench's subject; here the expiries spread over the 1,000 days after this one.
fn first_expiry() -> jiff::civil::Date {
    static FIRST: std::sync::OnceLock<jiff::civil::Date> = std::sync::OnceLock::new();
    *FIRST.get_or_init(|| {
        let today = jiff::Zoned::now()
            .with_time_zone(jiff::tz::TimeZone::UTC)
            .date();
        today
            .checked_add(jiff::Span::new().days(90))
            .expect("a date")
    })
}

fn domain_record(i: usize) -> serde_json::Value {
    let expires = first_expiry()
        .checked_add(jiff::Span::new().days((i * 7919 % 1000) as i64))
        .expect("a date");
    json!({"domain": format!("portfolio-{i}.ru"), "client_id": format!("c{}", i / 10),
        "expires": expires.to_string(),
        "order_id": format!("whmcs-{i}"), "description": ["hosting plan"],
        "nameservers": ["ns1.hosting.ru", "ns2.hosting.ru"], "auto_renew": i.is_multiple_of(2)})
}

/// Baseline: the same domain records into a bare sled tree, one flush per 2,000.
fn sled_baseline(n: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .cache_capacity(64 << 20)
        .open()
        .expect("sled");
    let tree = db.open_tree("domains").expect("tree");
    let t = Instant::now();
    for i in 0..n {
        let rec = serde_json::to_vec(&domain_record(i)).expect("json");
        tree.insert(format!("portfolio-{i}.ru").as_bytes(), rec)
            .expect("insert");
        if i % 2000 == 1999 {
            db.flush().expect("flush");
        }
    }
    db.flush().expect("flush");
    let rate = n as f64 / t.elapsed().as_secs_f64();
    drop(tree);
    drop(db);
    (rate, dir_bytes(dir.path()))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn timed_get(a: &ureq::Agent, url: &str) -> f64 {
    let t = Instant::now();
    let mut r = a
        .get(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .expect("GET");
    assert_eq!(r.status(), 200, "{url}");
    let _ = r.body_mut().read_to_vec();
    t.elapsed().as_secs_f64() * 1000.0
}

struct Row {
    n: usize,
    import_rate: f64,
    base_rate: f64,
    disk_per_domain: f64,
    base_per_domain: f64,
    rss_start: f64,
    rss_load: f64,
    ready_ms: f64,
    p50: f64,
    p99: f64,
    list_ms: f64,
    client_list_ms: f64,
    report_ms: f64,
    gone_ms: f64,
    metrics_ms: f64,
    done: bool,
}

fn run(n: usize, budget: Duration) -> Row {
    let tmp = tempfile::Builder::new()
        .prefix("regmail-scale-")
        .tempdir()
        .expect("temp dir");
    let mut d = Daemon::new(tmp.path());
    d.start();
    let a = agent();
    let url = format!("{}/v1/import", d.base);
    let auth = format!("Bearer {TOKEN}");
    let clients = n.div_ceil(10);
    let mut rss_load: f64 = 0.0;
    let mut done = true;
    let t = Instant::now();
    let post = |body: String| {
        let mut r = a
            .post(&url)
            .header("Authorization", &auth)
            .send(body.as_bytes())
            .expect("import");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.body_mut().read_json().expect("answer");
        assert_eq!(v["rejected"], 0, "{v}");
    };
    let mut body = String::new();
    let mut rows = 0;
    for c in 0..clients {
        body.push_str(&client_line(c));
        body.push('\n');
        rows += 1;
        if rows == PART {
            post(std::mem::take(&mut body));
            rows = 0;
        }
    }
    if rows > 0 {
        post(std::mem::take(&mut body));
        rows = 0;
    }
    let clients_done = t.elapsed();
    let t = Instant::now();
    let mut imported = 0;
    for i in 0..n {
        body.push_str(&json!({"domain": domain_record(i)}).to_string());
        body.push('\n');
        rows += 1;
        if rows == PART || i == n - 1 {
            post(std::mem::take(&mut body));
            imported = i + 1;
            rows = 0;
            rss_load = rss_load.max(d.rss_mb());
            if t.elapsed() > budget {
                done = false;
                break;
            }
        }
    }
    let import_rate = imported as f64 / t.elapsed().as_secs_f64();
    eprintln!(
        "  {n}: {clients} clients in {:.1}s, {imported} domains in {:.1}s",
        clients_done.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    d.stop();
    let disk = dir_bytes(&tmp.path().join("store"));
    let (base_rate, base_disk) = sled_baseline(imported.min(n));
    let ready = d.start();
    let rss_start = d.rss_mb();
    let a = agent();
    let mut reads = Vec::new();
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % imported.max(1) as u64) as usize;
        reads.push(timed_get(
            &a,
            &format!("{}/v1/domains/portfolio-{i}.ru", d.base),
        ));
    }
    rss_load = rss_load.max(d.rss_mb());
    let mut lists: Vec<f64> = (0..20)
        .map(|_| {
            timed_get(
                &a,
                &format!("{}/v1/domains?status=Registered&limit=100", d.base),
            )
        })
        .collect();
    let mut clists: Vec<f64> = (0..20)
        .map(|k| {
            timed_get(
                &a,
                &format!(
                    "{}/v1/domains?client=c{}&limit=100",
                    d.base,
                    k * 7 % clients
                ),
            )
        })
        .collect();
    // The reseller reports (issue 11): domains expiring within 92 days (the first three days
    // of the portfolio's expiries: 0.3% of the domains), and the expired and deleted ones.
    let mut reports: Vec<f64> = (0..10)
        .map(|_| timed_get(&a, &format!("{}/v1/reports/expiring?within=92", d.base)))
        .collect();
    let mut gone: Vec<f64> = (0..10)
        .flat_map(|_| {
            [
                timed_get(&a, &format!("{}/v1/reports/expired", d.base)),
                timed_get(&a, &format!("{}/v1/reports/deleted", d.base)),
            ]
        })
        .collect();
    let mut scrapes: Vec<f64> = (0..20)
        .map(|_| timed_get(&a, &format!("{}/metrics", d.base)))
        .collect();
    rss_load = rss_load.max(d.rss_mb());
    d.stop();
    Row {
        n,
        import_rate,
        base_rate,
        disk_per_domain: disk as f64 / imported.max(1) as f64,
        base_per_domain: base_disk as f64 / imported.max(1) as f64,
        rss_start,
        rss_load,
        ready_ms: ready.as_secs_f64() * 1000.0,
        p50: pct(&mut reads, 0.5),
        p99: pct(&mut reads, 0.99),
        list_ms: pct(&mut lists, 0.5),
        client_list_ms: pct(&mut clists, 0.5),
        report_ms: pct(&mut reports, 0.5),
        gone_ms: pct(&mut gone, 0.5),
        metrics_ms: pct(&mut scrapes, 0.5),
        done,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("REGMAIL_SCALE_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let budget = Duration::from_secs(
        std::env::var("REGMAIL_SCALE_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1200),
    );
    let mut rows = Vec::new();
    for n in sizes {
        let r = run(n, budget);
        print_rows(std::slice::from_ref(&r));
        rows.push(r);
    }
    println!(
        "\nportfolio scale (goals at 1M: <= 2048 B/domain, RSS < 200 MB, ready < 2000 ms, p99 read < 5 ms, list and scrape < 50 ms)"
    );
    print_rows(&rows);
}

fn print_rows(rows: &[Row]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:>9} {:>10} {:>10} {:>6} {:>8} {:>8} {:>6} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "domains",
        "import/s",
        "sled/s",
        "ratio",
        "B/dom",
        "sledB/d",
        "ratio",
        "RSS0MB",
        "RSSldMB",
        "ready_ms",
        "p50_ms",
        "p99_ms",
        "list_ms",
        "cli_ms",
        "rep_ms",
        "gone_ms",
        "metr_ms"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>9} {:>10.0} {:>10.0} {:>6.2} {:>8.0} {:>8.0} {:>6.2} {:>7.1} {:>7.1} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>8.2}{}",
            r.n,
            r.import_rate,
            r.base_rate,
            r.import_rate / r.base_rate,
            r.disk_per_domain,
            r.base_per_domain,
            r.disk_per_domain / r.base_per_domain,
            r.rss_start,
            r.rss_load,
            r.ready_ms,
            r.p50,
            r.p99,
            r.list_ms,
            r.client_list_ms,
            r.report_ms,
            r.gone_ms,
            r.metrics_ms,
            if r.done {
                ""
            } else {
                "  (import stopped at the time budget)"
            }
        );
    }
}
