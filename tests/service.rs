//! Runs as a service (issue 3): systemd notification and watchdog through a fake NOTIFY_SOCKET,
//! SIGTERM during a burst of orders, SIGHUP with a broken rules file, the unit file checked by
//! `systemd-analyze`, /metrics checked against the state, and the install layout.

mod common;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BIN, Options, agent, free_port, random_token, wait_exit, write_config};
use serde_json::{Value, json};

fn person(id: &str) -> Value {
    json!({"id": id, "registrant": {"type": "person", "fio_ru": "Иванов Иван", "fio_en": "Ivan Ivanov",
        "passport": ["4500 123456"], "birth_date": "1980-01-31", "postal_addr": ["Москва"],
        "phone": "+7 495 1234567", "email": "ivan@example.ru"}})
}

fn imported(id: &str) -> Value {
    let mut v = person(id);
    v["handle"] = json!(format!("IMP_{}_1-GPT", id.replace('-', "")));
    v
}

struct Proc {
    child: std::process::Child,
    base: String,
    auth: String,
    log: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(dir: &Path, config: &Path, port: u16, env: &[(&str, &str)]) -> Proc {
        let log = dir.join("daemon.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let err = out.try_clone().expect("log");
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir)
            .arg("--config")
            .arg(config)
            .arg("serve");
        for k in [
            "REGMAIL_API_TOKEN",
            "REGMAIL_CONFIG",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "RUST_LOG",
            "JOURNAL_STREAM",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn regmail");
        let token = std::fs::read_to_string(dir.join("api-token"))
            .expect("token")
            .trim()
            .to_owned();
        let p = Proc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            auth: format!("Bearer {token}"),
            log,
        };
        let a = agent(Duration::from_secs(2));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if a.get(&format!("{}/healthz", p.base))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                return p;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "regmail did not start:\n{}",
            std::fs::read_to_string(&p.log).unwrap_or_default()
        );
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let a = agent(Duration::from_secs(10));
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => a.get(&url).header("Authorization", &self.auth).call(),
            (_, Some(b)) => a
                .post(&url)
                .header("Authorization", &self.auth)
                .send_json(b),
            (_, None) => a
                .post(&url)
                .header("Authorization", &self.auth)
                .send_empty(),
        };
        match resp {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    fn text(&self, path: &str) -> String {
        let a = agent(Duration::from_secs(10));
        let mut r = a.get(&format!("{}{path}", self.base)).call().expect("GET");
        r.body_mut().read_to_string().expect("body")
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} failed");
    }
}

fn setup(opts: &Options, extra: &str) -> (tempfile::TempDir, std::path::PathBuf, u16) {
    let dir = tempfile::Builder::new()
        .prefix("regmail-svc-")
        .tempdir()
        .expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), port, opts);
    std::fs::write(dir.path().join("api-token"), random_token()).expect("token");
    if !extra.is_empty() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&config)
            .expect("config");
        f.write_all(extra.as_bytes()).expect("append");
    }
    (dir, config, port)
}

#[test]
fn notify_socket_sees_ready_status_and_watchdog_until_a_worker_hangs() {
    let (dir, config, port) = setup(&Options::default(), "");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let messages: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (messages, done) = (messages.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    messages.lock().expect("lock").push((Instant::now(), text));
                }
            }
        })
    };
    let started = Instant::now();
    // WATCHDOG_USEC=2 s: pings every second while healthy. The scheduler stops beating 3 s in
    // (fault injection, as a hung worker); its allowance is 10 s, so pings stop by ~13 s.
    let p = Proc::start(
        dir.path(),
        &config,
        port,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().expect("utf-8 path")),
            ("WATCHDOG_USEC", "2000000"),
            ("REGMAIL_TEST_FREEZE_WORKER", "scheduler:3"),
        ],
    );
    std::thread::sleep(Duration::from_secs(18));
    done.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let msgs = messages.lock().expect("lock").clone();
    let ready_at = msgs
        .iter()
        .find(|(_, m)| m.contains("READY=1"))
        .map(|(t, _)| *t)
        .expect("READY=1 was sent");
    assert!(ready_at >= started, "READY=1 before start?");
    assert!(
        msgs.iter().any(|(_, m)| m.starts_with("STATUS=")
            && m.contains("outbox")
            && m.contains("unmatched")),
        "STATUS= lines with queue depths: {msgs:?}"
    );
    let pings: Vec<f64> = msgs
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| t.duration_since(started).as_secs_f64())
        .collect();
    assert!(
        pings.iter().filter(|t| **t < 8.0).count() >= 3,
        "WATCHDOG=1 pings while healthy: {pings:?}"
    );
    let last = pings.iter().copied().fold(0.0, f64::max);
    assert!(
        last < 15.0,
        "WATCHDOG=1 kept coming after the scheduler hung (last at {last:.1} s): {pings:?}"
    );
    let log = std::fs::read_to_string(&p.log).unwrap_or_default();
    assert!(
        log.contains("stuck") && log.contains("scheduler"),
        "the daemon log names the stuck worker:\n{log}"
    );
    println!(
        "READY=1 after {:.2} s; WATCHDOG=1 at {pings:?}; none after {last:.1} s",
        ready_at.duration_since(started).as_secs_f64()
    );
}

#[test]
fn sigterm_during_a_burst_exits_zero_in_time_and_keeps_every_acknowledged_order() {
    let (dir, config, port) = setup(&Options::default(), "");
    let mut p = Proc::start(dir.path(), &config, port, &[]);
    assert_eq!(
        p.call("POST", "/v1/clients", Some(&imported("burst-client")))
            .0,
        201
    );
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let n = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (acked, n, stop, base, auth) = (
            acked.clone(),
            n.clone(),
            stop.clone(),
            p.base.clone(),
            p.auth.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let a = agent(Duration::from_secs(5));
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("burst-{t}-{i}.ru");
                i += 1;
                let body = json!({"domain": name, "client_id": "burst-client", "order_id": format!("o-{t}-{i}"), "paid": true});
                match a.post(&format!("{base}/v1/domains")).header("Authorization", &auth).send_json(&body) {
                    Ok(r) if r.status() == 202 => {
                        acked.lock().expect("lock").push(name);
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }));
    }
    while n.load(Ordering::Relaxed) < 40 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    p.signal("-TERM");
    let status = wait_exit(&mut p.child, Duration::from_secs(12))
        .expect("regmail did not stop within the 10 s bound");
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        std::fs::read_to_string(&p.log).unwrap_or_default()
    );
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    let log = std::fs::read_to_string(&p.log).unwrap_or_default();
    assert!(log.contains("store flushed"), "{log}");
    let acked = acked.lock().expect("lock").clone();
    let q = Proc::start(dir.path(), &config, port, &[]);
    for name in &acked {
        let (status, d) = q.call("GET", &format!("/v1/domains/{name}"), None);
        assert_eq!(status, 200, "acknowledged order {name} lost after SIGTERM");
        assert_eq!(d["client_id"], "burst-client");
    }
    println!(
        "SIGTERM with {} acknowledged orders: exit 0 in {took:?}, all present after restart",
        acked.len()
    );
    drop(q);
}

#[test]
fn sighup_with_a_broken_rules_file_keeps_the_old_rules() {
    let dir0 = tempfile::tempdir().expect("tempdir");
    let rules = dir0.path().join("replies.toml");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/request-templates/r01/replies.toml"
        ),
        &rules,
    )
    .expect("copy rules");
    let extra = format!(
        "\n[registrar]\nrules = \"{}\"\nsenders = [\"robot@registrar.test\"]\n",
        rules.display()
    );
    let (dir, config, port) = setup(&Options::default(), &extra);
    let p = Proc::start(dir.path(), &config, port, &[]);
    let reply = b"From: robot@registrar.test\r\nTo: regmail@sandbox.invalid\r\nSubject: status\r\nMessage-ID: <t1@registrar.test>\r\n\r\nYour request was accepted and queued as task 4711.\r\n";
    let test = |p: &Proc| -> Value {
        let a = agent(Duration::from_secs(5));
        let mut r = a
            .post(&format!("{}/v1/rules/test", p.base))
            .header("Authorization", &p.auth)
            .send(&reply[..])
            .expect("rules test");
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json")
    };
    let before = test(&p);
    assert_eq!(before["event"], "acknowledged", "{before}");
    let good_rule = before["rule"].clone();
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"broken\"\nevent = \"completed\"\nbody = '(unclosed'\n",
    )
    .expect("break rules");
    p.signal("-HUP");
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        if log.contains("reload refused") {
            assert!(log.contains("line 4"), "the error names the line: {log}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no refusal logged:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = test(&p);
    assert_eq!(
        after["rule"], good_rule,
        "the old rules stay in force: {after}"
    );
    let (status, v) = p.call("POST", "/v1/reload", None);
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["field"], "rules");
    // A good file is taken.
    std::fs::write(&rules, "[[rule]]\nname = \"only-ack\"\nevent = \"acknowledged\"\nbody = '(?i)task\\s+(?P<task_id>\\d+)'\n").expect("rules");
    let (status, v) = p.call("POST", "/v1/reload", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(test(&p)["rule"], "only-ack");
}

#[test]
fn systemd_analyze_verifies_the_unit_and_rates_its_exposure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/regmail.service"
    ))
    .expect("unit");
    // Verify against the binary just built (verify checks that ExecStart exists).
    let path = dir.path().join("regmail.service");
    std::fs::write(&path, unit.replace("/usr/bin/regmail", BIN)).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    println!("{}", line.trim());
    assert!(score <= 2.0, "exposure {score} is above 2.0");
}

#[test]
fn metrics_reflect_the_state() {
    let (dir, config, port) = setup(
        &Options::default(),
        "\n[registrar]\nsenders = [\"robot@registrar.test\"]\n",
    );
    let p = Proc::start(dir.path(), &config, port, &[]);
    assert_eq!(
        p.call("POST", "/v1/clients", Some(&imported("m-client"))).0,
        201
    );
    for i in 0..3 {
        let body = json!({"domain": format!("metric-{i}.ru"), "client_id": "m-client", "order_id": format!("m{i}"), "paid": i > 0});
        assert_eq!(p.call("POST", "/v1/domains", Some(&body)).0, 202);
    }
    // One registered by the operator.
    let (s, _) = p.call(
        "POST",
        "/v1/domains/metric-1.ru/resolve",
        Some(&json!({"outcome": "registered", "note": "t"})),
    );
    assert_eq!(s, 200);
    // One reply that no rule matches: the unmatched queue.
    let inbox = dir.path().join("var/inbox/new");
    std::fs::create_dir_all(&inbox).expect("inbox");
    std::fs::write(inbox.join("x.eml"), b"From: robot@registrar.test\r\nTo: a@b.c\r\nSubject: hello\r\nMessage-ID: <u1@registrar.test>\r\n\r\nSomething nobody wrote a rule for.\r\n").expect("reply");
    // And an acknowledgement of metric-2's request, tied by its token.
    let (_, d2) = p.call("GET", "/v1/domains/metric-2.ru", None);
    let token = d2["open_request"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    std::fs::write(inbox.join("y.eml"), format!("From: robot@registrar.test\r\nTo: a@b.c\r\nSubject: Re: [RM-{token}]\r\nMessage-ID: <u2@registrar.test>\r\n\r\nYour request was accepted and queued as task 99.\r\n")).expect("reply");
    let start = Instant::now();
    let mut m = String::new();
    while start.elapsed() < Duration::from_secs(15) {
        m = p.text("/metrics");
        if m.contains("regmail_unmatched_replies 1")
            && m.contains("regmail_reply_latency_seconds_count 1")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for expected in [
        "regmail_domains{status=\"Registered\"} 1",
        "regmail_domains{status=\"AwaitingPayment\"} 1",
        "regmail_domains{status=\"Registering\"} 1",
        "regmail_requests{state=\"Acknowledged\"} 1",
        "regmail_outbox_depth 0",
        "regmail_unmatched_replies 1",
        "regmail_transport_sent_total 2",
        "regmail_reply_latency_seconds_count 1",
        "regmail_worker_up{worker=\"outbox\"} 1",
    ] {
        assert!(
            m.contains(expected),
            "{expected} missing from /metrics:\n{m}"
        );
    }
    assert!(m.contains("# TYPE regmail_reply_latency_seconds histogram"));
    let (s, v) = p.call("GET", "/readyz", None);
    assert_eq!(s, 200, "{v}");
}

#[test]
fn install_script_lays_out_the_debian_paths() {
    let stage = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh"))
        .env("DESTDIR", stage.path())
        .env("REGMAIL_BIN", BIN)
        .output()
        .expect("install.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/bin/regmail",
        "lib/systemd/system/regmail.service",
        "etc/regmail/regmail.toml",
        "usr/share/regmail/request-templates/r01/profile.toml",
        "usr/share/regmail/request-templates/r01/replies.toml",
        "usr/share/man/man1/regmail.1.gz",
        "usr/share/bash-completion/completions/regmail",
    ] {
        let path = stage.path().join(f);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} missing or empty");
    }
    let completion = std::fs::read_to_string(
        stage
            .path()
            .join("usr/share/bash-completion/completions/regmail"),
    )
    .expect("completion");
    assert!(completion.contains("check-config") && completion.contains("resolve"));
}
