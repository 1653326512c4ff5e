//! Durable order intake over the API, against a baseline of raw sled insert + flush of the same
//! records, in the same run (issue 2; 16 connections and group commit: issue 13, goals 0.3x
//! with one connection and 1.0x with 16). Run: `cargo bench --bench intake` (N from
//! `REGMAIL_BENCH_N`, default 400; `REGMAIL_BENCH_BIN` runs another build of the daemon, to
//! compare two builds in one machine state). Both figures are orders per second; the ratio
//! says what the API, the state machine, the indexes, the action log and the outbox cost over
//! bare durability.

/// The daemon's allocator (src/main.rs), so the bare-sled baseline is not handicapped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Daemon {
    child: Child,
    base: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let token = "bench-token-0123456789abcdef0123456789";
    std::fs::write(dir.path().join("token"), token).expect("token file");
    // The `dir` transport writes into the run's own (temporary) directory: left at its default
    // (`var/outbox-mail` under the working directory), every run added its .eml files to one
    // directory in the checkout that only grew (33,000 files after a few runs).
    let config = format!(
        "[store]\npath = \"store\"\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"token\"\n[log]\nfilter = \"warn\"\n[outbound]\ndir = \"outbox-mail\"\n"
    );
    let cfg = dir.path().join("regmail.toml");
    std::fs::write(&cfg, config).expect("config");
    // REGMAIL_BENCH_BIN runs another build of the daemon (to compare two builds on one
    // machine state); the default is the one cargo built with this bench.
    let bin = std::env::var_os("REGMAIL_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_regmail").into());
    let child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env_remove("REGMAIL_API_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start regmail");
    let d = Daemon {
        child,
        base: format!("http://127.0.0.1:{port}"),
        token: token.into(),
        _dir: dir,
    };
    let agent = agent();
    for _ in 0..200 {
        if agent.get(&format!("{}/healthz", d.base)).call().is_ok() {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("regmail did not start");
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn order(i: usize) -> Value {
    json!({
        "domain": format!("bench-{i}.ru"),
        "client_id": "bench-client",
        "years": 1,
        "nameservers": ["ns1.hosting.ru", "ns2.hosting.ru"],
        "order_id": format!("order-{i}"),
        "paid": true,
    })
}

/// Orders per second through the API (each acknowledged only after the store flushed).
fn api_rate(n: usize, threads: usize) -> f64 {
    let d = start_daemon();
    let auth = format!("Bearer {}", d.token);
    let client = json!({"id":"bench-client","handle":"BENCH_1_1-GPT","registrant":{"type":"person",
        "fio_ru":"Иванов Иван","fio_en":"Ivan Ivanov","passport":["4500 123456"],"birth_date":"1980-01-31",
        "postal_addr":["Moscow"],"phone":"+7 495 1234567","email":"ivan@example.ru"}});
    let resp = agent()
        .post(&format!("{}/v1/clients", d.base))
        .header("Authorization", &auth)
        .send_json(&client)
        .expect("client");
    assert_eq!(resp.status(), 201);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (base, auth) = (d.base.clone(), auth.clone());
            s.spawn(move || {
                let a = agent();
                for i in (t..n).step_by(threads) {
                    let r = a
                        .post(&format!("{base}/v1/domains"))
                        .header("Authorization", &auth)
                        .send_json(order(i))
                        .expect("order");
                    assert_eq!(r.status(), 202, "order {i}");
                }
            });
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

/// Baseline: the same order records inserted into a bare sled tree, flushed after each one.
fn sled_rate(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .cache_capacity(64 << 20)
        .open()
        .expect("sled");
    let tree = db.open_tree("orders").expect("tree");
    let start = Instant::now();
    for i in 0..n {
        let rec = serde_json::to_vec(&order(i)).expect("json");
        tree.insert(format!("bench-{i}.ru").as_bytes(), rec)
            .expect("insert");
        db.flush().expect("flush");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("REGMAIL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    // Interleave to share the machine's drift between both sides; keep the median of 3.
    let mut api1 = Vec::new();
    let mut api4 = Vec::new();
    let mut api16 = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..3 {
        raw.push(sled_rate(n));
        api1.push(api_rate(n, 1));
        api4.push(api_rate(n, 4));
        api16.push(api_rate(n, 16));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (raw, api1, api4, api16) = (
        med(&mut raw),
        med(&mut api1),
        med(&mut api4),
        med(&mut api16),
    );
    println!("durable order intake, {n} orders, median of 3 runs");
    println!("  baseline raw sled insert+flush : {raw:>8.0} records/s");
    println!(
        "  API, 1 client connection       : {api1:>8.0} orders/s  (ratio to baseline {:.2})",
        api1 / raw
    );
    println!(
        "  API, 4 client connections      : {api4:>8.0} orders/s  (ratio to baseline {:.2})",
        api4 / raw
    );
    println!(
        "  API, 16 client connections     : {api16:>8.0} orders/s  (ratio to baseline {:.2})",
        api16 / raw
    );
}
