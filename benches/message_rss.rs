//! Peak memory of one hostile message under the size limit (issue 9, item 7). Each case starts
//! a fresh `regmail serve` with the default `[inbound] max_message_bytes` (10 MiB), reads its
//! peak RSS (VmHWM, /proc/<pid>/status) when idle, delivers one message into its Maildir,
//! waits until the intake has settled it, and reads VmHWM again. The figure is the growth of
//! the peak over the idle daemon's, in MB, and its ratio to the message's size: the baseline
//! is the same daemon idle, in the same run.
//!
//! Run: `cargo bench --bench message_rss`. To measure another build (e.g. the code before
//! this change), point `REGMAIL_BIN` at its binary: the same cases run against it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: usize = 10 << 20;

struct Daemon {
    child: Child,
    base: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> String {
    std::env::var("REGMAIL_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_regmail").to_owned())
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let token = "bench-token-0123456789abcdef0123456789";
    std::fs::write(dir.path().join("token"), token).expect("token file");
    let config = format!(
        "[store]\npath = \"store\"\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"token\"\n[outbound]\ntransport = \"dir\"\ndir = \"out\"\n[inbound]\nmax_message_bytes = {LIMIT}\npoll_interval = \"100ms\"\n[log]\nfilter = \"warn\"\n"
    );
    let cfg = dir.path().join("regmail.toml");
    std::fs::write(&cfg, config).expect("config");
    let child = Command::new(bin())
        .current_dir(dir.path())
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env_remove("REGMAIL_API_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start regmail");
    let d = Daemon {
        child,
        base: format!("http://127.0.0.1:{port}"),
        token: token.into(),
        dir,
    };
    for _ in 0..400 {
        if get(&d, "/healthz").is_some() {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("regmail did not start");
}

fn get(d: &Daemon, path: &str) -> Option<serde_json::Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut r = agent
        .get(&format!("{}{path}", d.base))
        .header("Authorization", &format!("Bearer {}", d.token))
        .call()
        .ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    serde_json::from_str(&text)
        .ok()
        .or(Some(serde_json::Value::Null))
}

fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM")
}

fn headers(n: usize) -> String {
    "From: robot@sandbox.invalid\r\nTo: regmail@sandbox.invalid\r\nSubject: bench\r\nMessage-ID: <b@sandbox.invalid>\r\n"
        .to_owned()
        + &"X: y\r\n".repeat(n)
}

/// The cases: each just under the limit.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let room = LIMIT - 4096;
    let mut v = Vec::new();
    // Header bomb: ~1.7 million 6-octet header fields.
    let mut m = headers(room / 6).into_bytes();
    m.extend_from_slice(b"\r\nbody\r\n");
    v.push(("1.7M header fields", m));
    // One huge header field, folded.
    let mut m = headers(0);
    m.push_str("X-Big: ");
    m.push_str(
        &"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n "
            .repeat(room / 74),
    );
    m.push_str("x\r\n\r\nbody\r\n");
    v.push(("one 10 MB header field", m.into_bytes()));
    // Short lines: the text pipeline's worst (a String per line).
    let mut m = headers(0);
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
    m.push_str(&"> a\r\n".repeat(room / 5));
    v.push(("2M quoted short lines", m.into_bytes()));
    // A base64 text body (7.5 MB decoded) in KOI8-R.
    let mut m = headers(0);
    m.push_str(
        "Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = "8sXHydPU0sHDydEgxM/Nxc7BINDSyc3F0i7Sxg0KPiBwYXNzd29yZDogKioqKioqKioNCj4gZG9t\r\n";
    m.push_str(&line.repeat(room / line.len()));
    v.push(("base64 KOI8-R text", m.into_bytes()));
    // Many small MIME parts (each a container check away from quarantine).
    let mut m = headers(0);
    m.push_str("Content-Type: multipart/mixed; boundary=\"p\"\r\n\r\n");
    let part = "--p\r\nContent-Type: text/plain\r\n\r\nx\r\n";
    m.push_str(&part.repeat(room / part.len()));
    m.push_str("--p--\r\n");
    v.push(("300k MIME parts", m.into_bytes()));
    v
}

fn main() {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    println!("binary: {}", bin());
    println!(
        "{:<26} {:>9} {:>10} {:>10} {:>10} {:>7}  end",
        "case", "size MB", "idle MB", "peak MB", "growth MB", "x size"
    );
    for (name, msg) in cases() {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let d = start();
        std::thread::sleep(Duration::from_millis(500));
        let pid = d.child.id();
        let idle = vm_hwm_kb(pid);
        let md = d.dir.path().join("var/inbox");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(md.join(sub)).expect("maildir");
        }
        std::fs::write(md.join("tmp/m"), &msg).expect("write message");
        std::fs::rename(md.join("tmp/m"), md.join("new/m")).expect("deliver");
        let start = Instant::now();
        let end = loop {
            if let Some(v) = get(&d, "/v1/inbox?limit=10")
                && let Some(m) = v["messages"]
                    .as_array()
                    .and_then(|a| a.iter().find(|m| m["key"] == "maildir/m"))
                && m["state"] != "Pending"
            {
                break m["state"].as_str().unwrap_or("?").to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{name}: not settled in 120 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let peak = vm_hwm_kb(pid);
        let mb = |kb: u64| kb as f64 / 1024.0;
        let size = msg.len() as f64 / (1 << 20) as f64;
        println!(
            "{name:<26} {size:>9.1} {:>10.1} {:>10.1} {:>10.1} {:>7.1}  {end} in {:.1} s",
            mb(idle),
            mb(peak),
            mb(peak.saturating_sub(idle)),
            mb(peak.saturating_sub(idle)) / size,
            start.elapsed().as_secs_f64()
        );
    }
}
