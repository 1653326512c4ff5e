//! An API that holds (issue 9 part B, item 6), against the real binary: with `ulimit -n 1024`
//! (the child's soft and hard RLIMIT_NOFILE set before exec), 1,100 idle connections and 3,000
//! slow ones (a request header trickled in a byte at a time) kept open and reopened whenever
//! the daemon drops them, a normal request still answers in under a second, the inbox reader
//! keeps reading, and the systemd watchdog (a fake NOTIFY_SOCKET) keeps being fed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const IDLE: usize = 1100;
const SLOW: usize = 3000;

/// Raises this test process's own descriptor limit (it holds 4,100 sockets).
fn raise_own_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        assert!(
            lim.rlim_max >= 8192,
            "this test needs a hard descriptor limit of at least 8192 (has {})",
            lim.rlim_max
        );
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

enum Kind {
    Idle,
    Slow(usize),
}

struct Slot {
    kind: Kind,
    conn: Option<TcpStream>,
}

/// Keeps the flood up: every round, each slot is checked, fed a byte (slow ones) or reopened
/// when the daemon closed it. Counts reopenings.
fn flood(addr: SocketAddr, stop: Arc<AtomicBool>, reopened: Arc<AtomicUsize>, up: Arc<AtomicBool>) {
    const HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut slots: Vec<Slot> = (0..IDLE)
        .map(|_| Slot {
            kind: Kind::Idle,
            conn: None,
        })
        .chain((0..SLOW).map(|_| Slot {
            kind: Kind::Slow(0),
            conn: None,
        }))
        .collect();
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let round = Instant::now();
        for slot in &mut slots {
            let alive = match (&mut slot.conn, &mut slot.kind) {
                (None, _) => false,
                (Some(c), Kind::Idle) => {
                    let mut b = [0u8; 64];
                    // Open and silent: the read would block. Closed: Ok(0) or an error.
                    matches!(c.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                }
                (Some(c), Kind::Slow(pos)) => {
                    let byte = HEADER[*pos % HEADER.len()];
                    *pos += 1;
                    c.write(&[byte]).is_ok()
                }
            };
            if !alive {
                if slot.conn.take().is_some() {
                    reopened.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    let _ = c.set_nonblocking(true);
                    slot.conn = Some(c);
                    if let Kind::Slow(pos) = &mut slot.kind {
                        *pos = 0;
                    }
                }
            }
        }
        if first {
            up.store(true, Ordering::Relaxed);
            first = false;
        }
        if let Some(rest) = Duration::from_secs(1).checked_sub(round.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

#[test]
fn idle_and_slow_clients_starve_neither_the_api_nor_the_inbox_nor_the_watchdog() {
    raise_own_nofile();
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let pings: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (pings, done) = (pings.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf)
                    && String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1")
                {
                    pings.lock().unwrap().push(Instant::now());
                }
            }
        })
    };
    let d = Daemon::start_with(Options {
        nofile: Some(1024),
        env: vec![
            (
                "NOTIFY_SOCKET".into(),
                sock_path.to_str().unwrap().to_owned(),
            ),
            ("WATCHDOG_USEC".into(), "2000000".into()),
        ],
        extra_config: "\n[inbound]\npoll_interval = \"100ms\"\n".into(),
        ..Options::default()
    });
    let log = d.stderr();
    assert!(
        log.contains("descriptors=1024") && log.contains("max_connections=512"),
        "the daemon sees the limit and caps below it:\n{log}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicUsize::new(0));
    let up = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (stop, reopened, up) = (stop.clone(), reopened.clone(), up.clone());
        let addr = d.addr();
        std::thread::spawn(move || flood(addr, stop, reopened, up))
    };
    while !up.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let flood_start = Instant::now();

    // Normal requests during 12 s of flood.
    let mut worst = Duration::ZERO;
    let mut answered = 0;
    let mut delivered = false;
    while flood_start.elapsed() < Duration::from_secs(12) {
        let t = Instant::now();
        let stats = d.get_ok("/v1/stats");
        let took = t.elapsed();
        worst = worst.max(took);
        assert!(
            took < Duration::from_secs(1),
            "GET /v1/stats took {took:?} under the flood ({stats})"
        );
        answered += 1;
        if !delivered && flood_start.elapsed() > Duration::from_secs(3) {
            let md = d.dir().join("var/inbox");
            for sub in ["tmp", "new", "cur"] {
                std::fs::create_dir_all(md.join(sub)).unwrap();
            }
            std::fs::write(
                md.join("tmp/flood.1"),
                "From: robot@sandbox.invalid\r\nTo: regmail@sandbox.invalid\r\nSubject: during the flood\r\nMessage-ID: <flood-1@sandbox.invalid>\r\n\r\nhello\r\n",
            )
            .unwrap();
            std::fs::rename(md.join("tmp/flood.1"), md.join("new/flood.1")).unwrap();
            delivered = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let inbox_ok = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = d.get_ok("/v1/inbox?limit=100");
            if v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["key"] == "maildir/flood.1" && m["state"] != "Pending")
            {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let flood_secs = flood_start.elapsed().as_secs_f64();
    let churn = reopened.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    assert!(inbox_ok, "the inbox reader kept reading under the flood");
    let during: Vec<f64> = pings
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t >= flood_start)
        .map(|t| t.duration_since(flood_start).as_secs_f64())
        .collect();
    assert!(
        during.len() >= 8,
        "WATCHDOG=1 every second or so during the flood: {during:?}"
    );
    let gaps = during.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(gaps < 2.0, "no watchdog gap of WATCHDOG_USEC: {during:?}");
    let log = d.stderr();
    assert!(
        !log.contains("Too many open files") && !log.contains("stuck"),
        "no descriptor exhaustion, no stuck worker:\n{log}"
    );
    println!(
        "flood {flood_secs:.1} s: {IDLE} idle + {SLOW} slow connections, {churn} reopened after the daemon closed them; {answered} normal requests, worst {worst:?}; {} WATCHDOG=1 pings, largest gap {gaps:.2} s; inbox message settled",
        during.len()
    );
}
