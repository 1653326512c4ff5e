//! Durability: the real daemon is SIGKILLed right after it acknowledged orders, while other
//! requests are in flight, and restarted on the same store. Everything it acknowledged must be
//! there, whole (DESIGN.md §4 inv. 1: no lost order).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// An order the daemon answered 202 to.
#[derive(Debug, Clone)]
struct Acked {
    domain: String,
    client: String,
    /// `created` from the 202 answer: the record after a restart must be this one.
    created: String,
}

/// A client of the API that reports transport failures instead of panicking (the daemon is
/// killed under it).
struct Loose {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Loose {
    fn new(d: &Daemon) -> Loose {
        Loose {
            agent: agent(Duration::from_secs(20)),
            base: d.base(),
            auth: format!("Bearer {}", d.token),
        }
    }

    fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let mut r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .send_json(body)
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().map_err(|e| e.to_string())?;
        Ok((status, v))
    }

    /// Creates a client and a paid order for it; `Ok(Some)` once the order is acknowledged.
    fn place(&self, client: &str, domain: &str) -> Result<Acked, String> {
        let (s, v) = self.post("/v1/clients", &person(client))?;
        if s != 201 {
            return Err(format!("client {client}: {s} {v}"));
        }
        let (s, v) = self.post("/v1/domains", &order(domain, client, true))?;
        if s != 202 {
            return Err(format!("order {domain}: {s} {v}"));
        }
        Ok(Acked {
            domain: domain.to_owned(),
            client: client.to_owned(),
            created: v["created"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

fn entries_of(d: &Daemon, path: &str) -> Vec<Value> {
    d.get_ok(path)["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Checks the restarted store once the outbox worker has sent what was queued: every
/// acknowledged order whole, the log before the kill intact, no half-applied event anywhere,
/// and exactly one message per committed request (the transactional outbox).
fn verify(d: &Daemon, acked: &[Acked], fresh: &[Acked], log_before: &[Value], round: usize) {
    d.settle();
    let log = d.full_log();
    let stats = d.stats();
    let last = stats["log_seq"].as_u64().unwrap();
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "round {round}: log sequence has gaps"
    );
    assert!(
        log.len() >= log_before.len(),
        "round {round}: the log shrank from {} to {} entries",
        log_before.len(),
        log.len()
    );
    assert_eq!(
        &log[..log_before.len()],
        log_before,
        "round {round}: log entries read before the kill changed or vanished"
    );

    let list = d.get_ok("/v1/domains?limit=1000");
    let domains: HashMap<String, Value> = list["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["domain"].as_str().unwrap().to_owned(), v.clone()))
        .collect();
    for a in acked {
        let v = domains.get(&a.domain).unwrap_or_else(|| {
            panic!(
                "round {round}: acknowledged order {} is lost ({} of {} orders present)",
                a.domain,
                acked
                    .iter()
                    .filter(|x| domains.contains_key(&x.domain))
                    .count(),
                acked.len()
            )
        });
        assert_eq!(v["client_id"], json!(a.client), "round {round}: {v}");
        assert_eq!(v["created"], json!(a.created), "round {round}: {v}");
        assert_eq!(v["status"], "Registering", "round {round}: {v}");
        assert_eq!(v["phase"], "WaitingForClient", "round {round}: {v}");
    }
    // The orders of this round in detail: client, its request, log entries.
    for a in fresh {
        let c = d.get_ok(&format!("/v1/clients/{}", a.client));
        assert_eq!(c["status"], "Registering", "round {round}: {c}");
        let rid = c["open_request"].as_str().expect("open request");
        let r = d.get_ok(&format!("/v1/requests/{rid}"));
        assert_eq!(r["state"], "Sent", "round {round}: {r}");
        assert_eq!(r["kind"], "client-registration");
        assert_eq!(r["client_id"], json!(a.client));
        let dl = entries_of(d, &format!("/v1/domains/{}/log", a.domain));
        let actions: Vec<&str> = dl.iter().filter_map(|e| e["action"].as_str()).collect();
        assert_eq!(actions, ["domain.ordered"], "round {round}: {dl:?}");
        let cl = entries_of(d, &format!("/v1/clients/{}/log", a.client));
        let actions: Vec<&str> = cl
            .iter()
            .filter_map(|e| e["action"].as_str())
            .filter(|a| a.starts_with("client."))
            .collect();
        assert_eq!(
            actions,
            ["client.created", "client.registering"],
            "round {round}: {cl:?}"
        );
        let rl = entries_of(d, &format!("/v1/requests/{rid}/log"));
        let states: Vec<&str> = rl
            .iter()
            .filter(|e| e["action"].as_str().unwrap().starts_with("request."))
            .filter_map(|e| e["status_after"].as_str())
            .collect();
        assert_eq!(states, ["Queued", "Sent"], "round {round}: {rl:?}");
    }
    // Atomicity over the whole store, acknowledged or not: every order has its client in
    // Registering with exactly one request, sent.
    assert_eq!(stats["outbox"], 0);
    assert_eq!(
        count(&stats, "domains", "Registering"),
        domains.len() as u64
    );
    let sent = d.requests_in("Sent");
    let total: u64 = stats["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(
        total,
        sent.len() as u64,
        "round {round}: requests not Sent: {stats}"
    );
    assert_eq!(
        sent.len(),
        domains.len(),
        "round {round}: {} orders but {} requests",
        domains.len(),
        sent.len()
    );
    let by_client: HashMap<&str, &Value> = sent
        .iter()
        .map(|r| (r["client_id"].as_str().unwrap(), r))
        .collect();
    let mut handles = HashSet::new();
    for v in domains.values() {
        let cid = v["client_id"].as_str().unwrap();
        let r = by_client
            .get(cid)
            .unwrap_or_else(|| panic!("round {round}: order {v} has no client request"));
        let c = d.get_ok(&format!("/v1/clients/{cid}"));
        assert_eq!(c["open_request"], r["id"], "round {round}: {c}");
        assert!(
            handles.insert(r["handle"].as_str().unwrap().to_owned()),
            "round {round}: handle {} allocated twice",
            r["handle"]
        );
    }
    // One message per committed request, none for anything that was not committed, each with
    // its request's Message-ID (a resend after the kill rewrote the same message).
    let mail: HashMap<String, String> = d.sent_mail().into_iter().collect();
    let tokens: HashSet<&str> = sent.iter().map(|r| r["token"].as_str().unwrap()).collect();
    let files: HashSet<&str> = mail.keys().map(String::as_str).collect();
    assert_eq!(
        files, tokens,
        "round {round}: messages in the outbox directory and committed requests differ"
    );
    for r in &sent {
        let m = &mail[r["token"].as_str().unwrap()];
        let mid = r["message_id"].as_str().unwrap();
        assert!(
            m.lines().any(|l| l == format!("Message-ID: {mid}")),
            "round {round}: message of {} lacks its Message-ID {mid}",
            r["id"]
        );
    }
}

/// Kill at many moments: right after the Nth order of a round was acknowledged, with a second
/// thread placing orders at the same time. Every acknowledged order survives every kill.
#[test]
fn acknowledged_orders_survive_sigkill_at_any_moment() {
    // Orders the main thread places per round before the kill.
    const PLAN: [usize; 10] = [1, 3, 2, 5, 1, 4, 2, 1, 3, 2];
    let mut d = Daemon::start();
    let mut acked: Vec<Acked> = Vec::new();
    let mut total_kills = 0;
    let mut bg_total = 0;
    for (round, &n) in PLAN.iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let bg = {
            let api = Loose::new(&d);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut done = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    match api.place(&format!("bg{round}-{i}"), &format!("bg{round}-{i}.ru")) {
                        Ok(a) => done.push(a),
                        Err(_) => break, // the daemon is gone
                    }
                    i += 1;
                }
                done
            })
        };
        let mut fresh = Vec::new();
        let mut log_before = Vec::new();
        for i in 0..n {
            if i == n - 1 {
                // Read the log while the other thread is writing, just before the last order.
                log_before = d.full_log();
            }
            let client = format!("m{round}-{i}");
            let name = format!("m{round}-{i}.ru");
            d.post_expect("/v1/clients", &person(&client), 201);
            let v = d.post_expect("/v1/domains", &order(&name, &client, true), 202);
            fresh.push(Acked {
                domain: name,
                client,
                created: v["created"].as_str().unwrap().to_owned(),
            });
        }
        // As soon as the last 202 arrived.
        d.kill();
        total_kills += 1;
        stop.store(true, Ordering::SeqCst);
        let bg_done = bg.join().expect("background thread");
        bg_total += bg_done.len();
        fresh.extend(bg_done);
        acked.extend(fresh.iter().cloned());
        d.restart();
        verify(&d, &acked, &fresh, &log_before, round);
    }
    assert_eq!(total_kills, PLAN.len());
    assert!(
        bg_total > 0,
        "the second thread never got an order in: nothing was in flight at the kills"
    );
    assert!(
        acked.len() >= PLAN.iter().sum::<usize>(),
        "fewer orders than planned"
    );
    // After all the kills the daemon still takes orders, with fresh handles.
    let client = "after";
    d.post_expect("/v1/clients", &person(client), 201);
    d.post_expect("/v1/domains", &order("after.ru", client, true), 202);
    verify(&d, &acked, &[], &[], PLAN.len());
    assert!(!d.stderr().contains("panicked"), "{}", d.stderr());
}

/// A state change after the order (a client registered by the operator, its domain request
/// queued and sent) is all there after a kill.
#[test]
fn state_changes_after_the_order_survive_sigkill_too() {
    let mut d = Daemon::start();
    d.post_expect("/v1/clients", &person("k"), 201);
    d.post_expect("/v1/domains", &order("k.ru", "k", true), 202);
    let creq = d.get_ok("/v1/clients/k")["open_request"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_request(&creq, "Sent");
    d.post_expect(
        &format!("/v1/requests/{creq}/outcome"),
        &json!({"event":"completed","handle":"K_1_1-GPT","note":"n"}),
        200,
    );
    d.settle();
    let before_domain = d.get_ok("/v1/domains/k.ru");
    assert_eq!(before_domain["phase"], "RequestSent");
    let before_log = d.full_log();
    let before_stats = d.stats();
    let before_mail = d.sent_mail();
    assert_eq!(before_mail.len(), 2);
    d.kill();
    d.restart();
    assert_eq!(d.get_ok("/v1/domains/k.ru"), before_domain);
    assert_eq!(d.full_log(), before_log);
    assert_eq!(d.stats(), before_stats);
    assert_eq!(d.sent_mail(), before_mail, "something was sent twice");
    assert_eq!(d.get_ok("/v1/clients/k")["handle"], "K_1_1-GPT");
    let sent = d.requests_in("Sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["kind"], "domain-registration");
    assert_eq!(sent[0]["id"], before_domain["open_request"]["id"]);
}

/// SIGTERM stops the daemon cleanly (exit 0, store flushed); a restart finds everything.
#[test]
fn sigterm_stops_cleanly_and_a_restart_finds_everything() {
    let mut d = Daemon::start();
    d.post_expect("/v1/clients", &person("t"), 201);
    d.post_expect("/v1/domains", &order("t.ru", "t", false), 202);
    let log = d.full_log();
    let dom = d.get_ok("/v1/domains/t.ru");
    let status = d.stop();
    assert!(status.success(), "SIGTERM exit: {status}\n{}", d.stderr());
    let err = d.stderr();
    assert!(err.contains("stopping"), "{err}");
    assert!(err.contains("store flushed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    d.restart();
    assert_eq!(d.full_log(), log);
    assert_eq!(d.get_ok("/v1/domains/t.ru"), dom);
}

/// sled allows one process per store: a second daemon on the same store fails at once with a
/// message that says so, without a panic, and the first one keeps serving.
#[test]
fn a_second_daemon_on_the_same_store_fails_at_once_saying_locked() {
    let mut d = Daemon::start();
    d.post_expect("/v1/clients", &person("first"), 201);
    let port = free_port();
    let cfg = write_config_named(d.dir(), "second.toml", port, &Options::default());
    let log = d.dir().join("second.log");
    let started = std::time::Instant::now();
    let mut second = spawn_serve(&cfg, &log);
    let status = match wait_exit(&mut second, Duration::from_secs(10)) {
        Some(s) => s,
        None => {
            let _ = second.kill();
            let _ = second.wait();
            panic!(
                "the second daemon is still running after 10 s\n{}",
                read(&log)
            );
        }
    };
    let err = read(&log);
    assert!(
        !status.success(),
        "the second daemon exited with {status}: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the second daemon took {:?} to give up",
        started.elapsed()
    );
    assert!(err.contains("locked"), "no 'locked' in: {err}");
    assert!(
        !err.contains("panicked"),
        "the second daemon panicked: {err}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the second daemon left a listener on {port}"
    );
    // The first daemon is unharmed.
    assert!(d.is_running());
    assert_eq!(d.get_ok("/v1/clients/first")["id"], "first");
    d.post_expect("/v1/clients", &person("second"), 201);
}
