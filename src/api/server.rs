//! The API's own accept loop (instead of `axum::serve`, which has no connection cap and no
//! timeouts): idle or slow clients cannot starve the API, the inbox reader or the watchdog.
//!
//! - At most `max_connections` connections are open, and never more than the descriptor limit
//!   leaves room for ([`connection_cap`]): the store, the reply source, the outbox and the
//!   blocking threads keep [`RESERVED_DESCRIPTORS`].
//! - At the cap, a new connection is admitted only if it shows a whole request header within
//!   [`ADMISSION_WINDOW`] (a real client sends it at once; an idle or slow one cannot); it then
//!   closes the oldest connection that has no request in progress (an idle keep-alive or a
//!   client still trickling its header in) and takes its place. Connections waiting for
//!   admission are bounded too, so the descriptors never run out.
//! - A request's header must arrive within `header_read_timeout` (hyper's timer), and a
//!   connection with no traffic and no request in progress is closed after `idle_timeout`.
//! - `accept` errors (EMFILE, ENFILE, ECONNABORTED) pause the loop briefly instead of spinning.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt;

/// Descriptors kept free for everything but API connections (sled's files, the reply source,
/// SMTP, the blocking pool, logs).
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// How the API treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections accepted past the cap at once, each waiting (at most a second) for an
    /// evicted one to close; with the cap, within the descriptors left ([`connection_cap`]).
    pub max_waiting: usize,
    /// A request's header must be in within this.
    pub header_read_timeout: Duration,
    /// No traffic and no request in progress for this long closes the connection.
    pub idle_timeout: Duration,
}

/// The connection cap and the number that may wait past it: together never more than
/// `nofile` minus [`RESERVED_DESCRIPTORS`]. The cap is the configured one, but at most three
/// quarters of that room (and at least 16); the rest may wait.
pub fn connection_cap(configured: usize, nofile: u64) -> (usize, usize) {
    let room = usize::try_from(nofile.saturating_sub(RESERVED_DESCRIPTORS))
        .unwrap_or(usize::MAX)
        .max(32);
    let cap = configured.min(room / 4 * 3).max(16);
    (cap, room.saturating_sub(cap).max(16))
}

struct Conn {
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    /// By id, which grows with time: the first entries are the oldest.
    conns: BTreeMap<u64, Conn>,
    /// Connections accepted past the cap with their request header in, waiting for a slot.
    waiting: usize,
    /// Connections accepted past the cap that have not shown a request header yet, oldest
    /// first; a newer one pushes out the oldest when there are too many.
    unproven: BTreeMap<u64, Arc<Notify>>,
}

impl Registry {
    /// Tells the oldest connection without a request in progress to close; false if none.
    fn evict_oldest_idle(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                if let Some(c) = self.conns.remove(&id) {
                    c.close.notify_one();
                }
                true
            }
            None => false,
        }
    }
}

/// The listen backlog: a burst of connections waits in the kernel instead of having its SYNs
/// dropped (a dropped SYN costs a client a one-second retransmission; listen(2), capped by
/// net.core.somaxconn).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the API's listening socket with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `stop` turns true; connections in progress then get a
/// graceful shutdown.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let (stream, _peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin (the cap should prevent it).
                tracing::warn!(error = %e, "api: accept failed; pausing 50 ms");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Past the cap, a new connection must show a whole request header within
        // ADMISSION_WINDOW (a real client sends it at once; an idle or slow one cannot); then
        // the oldest idle connection makes room for it. Those still silent wait in a bounded
        // queue where each newcomer pushes out the oldest, so a flood of silent connections
        // holds few descriptors and cannot keep a real request out; those with a header in
        // wait (bounded too) for a slot.
        // A hard bound on the sockets held, whatever state they are in (a connection told to
        // close holds its descriptor until its task has run).
        if open.load(Ordering::Acquire) >= limits.max_connections + limits.max_waiting {
            drop(stream);
            continue;
        }
        let held = OpenGuard::new(open.clone());
        let permit = slots.clone().try_acquire_owned().ok();
        let complete = permit.is_none() && header_in_buffer(&stream);
        let mut kick = None;
        if permit.is_none() {
            let half = (limits.max_waiting / 2).max(1);
            let room = registry
                .lock()
                .map(|mut r| {
                    if complete {
                        let ok = r.waiting < half;
                        if ok {
                            r.waiting += 1;
                        }
                        return ok;
                    }
                    if r.unproven.len() >= half
                        && let Some((_, oldest)) = r.unproven.pop_first()
                    {
                        oldest.notify_one();
                    }
                    r.next += 1;
                    let id = r.next;
                    let k = Arc::new(Notify::new());
                    r.unproven.insert(id, k.clone());
                    kick = Some((id, k));
                    true
                })
                .unwrap_or(false);
            if !room {
                drop(stream);
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let busy = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        let router = router.clone();
        let registry = registry.clone();
        let stop = stop.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            let _held = held;
            let permit = match permit {
                Some(p) => p,
                None => {
                    let got = admit(&stream, kick, &registry, &slots, limits).await;
                    match got {
                        Some(p) => p,
                        None => return,
                    }
                }
            };
            let id = match registry.lock() {
                Ok(mut r) => {
                    r.next += 1;
                    let id = r.next;
                    r.conns.insert(
                        id,
                        Conn {
                            busy: busy.clone(),
                            close: close.clone(),
                        },
                    );
                    id
                }
                Err(_) => return,
            };
            serve_one(stream, router, limits, busy, close, stop).await;
            if let Ok(mut r) = registry.lock() {
                r.conns.remove(&id);
            }
            drop(permit);
        });
    }
}

/// True when a whole request header (or 8 KiB) already waits in the socket's receive buffer:
/// recv(2) with MSG_PEEK | MSG_DONTWAIT, which neither consumes nor blocks.
fn header_in_buffer(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 8192];
    // SAFETY: recv into a local buffer of the length given, on a socket we own.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    n == buf.len() || buf[..n].windows(4).any(|w| w == b"\r\n\r\n")
}

/// How long a connection accepted past the cap has to show a whole request header.
pub const ADMISSION_WINDOW: Duration = Duration::from_millis(100);

/// Admission past the cap: waits (at most [`ADMISSION_WINDOW`]) for a whole request header in
/// the socket's receive buffer (peeked, not read), then closes the oldest idle connection and
/// takes its slot (at most a second: busy connections finish their request first).
async fn admit(
    stream: &TcpStream,
    kick: Option<(u64, Arc<Notify>)>,
    registry: &Mutex<Registry>,
    slots: &Arc<Semaphore>,
    limits: ServerLimits,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Some((id, kick)) = kick {
        // Not proven yet: wait for the header, unless pushed out or out of time.
        let mut buf = vec![0u8; 8192];
        let header = tokio::select! {
            h = tokio::time::timeout(ADMISSION_WINDOW, async {
                loop {
                    stream.readable().await.ok()?;
                    let n = stream.peek(&mut buf).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    if n == buf.len() || buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        return Some(());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }) => matches!(h, Ok(Some(()))),
            _ = kick.notified() => false,
        };
        let proven = registry
            .lock()
            .map(|mut r| {
                let was_queued = r.unproven.remove(&id).is_some();
                let ok = header && was_queued;
                if ok {
                    r.waiting += 1;
                }
                ok
            })
            .unwrap_or(false);
        if !proven {
            return None;
        }
    }
    let permit = admit_proven(registry, slots, limits).await;
    if let Ok(mut r) = registry.lock() {
        r.waiting = r.waiting.saturating_sub(1);
    }
    permit
}

/// A connection with its request header in: the oldest idle connection makes room.
async fn admit_proven(
    registry: &Mutex<Registry>,
    slots: &Arc<Semaphore>,
    limits: ServerLimits,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let evicted = registry
        .lock()
        .map(|mut r| r.evict_oldest_idle())
        .unwrap_or(false);
    if evicted {
        static EVICTIONS: AtomicUsize = AtomicUsize::new(0);
        let n = EVICTIONS.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n.is_power_of_two() {
            tracing::warn!(
                cap = limits.max_connections,
                evictions = n,
                "api: connection cap reached; closing the oldest idle connections for requests"
            );
        }
    }
    tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

async fn serve_one(
    stream: TcpStream,
    router: Router,
    limits: ServerLimits,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    // The client's address rides with each request (the web page's login limit is per address).
    let peer = stream.peer_addr().ok();
    let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout, busy.clone()));
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let router = router.clone();
        let busy = busy.clone();
        if let Some(p) = peer {
            req.extensions_mut().insert(axum::extract::ConnectInfo(p));
        }
        async move {
            busy.fetch_add(1, Ordering::AcqRel);
            let _done = BusyGuard(busy);
            router.oneshot(req).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = close.notified() => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Counts an accepted socket until its task ends.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        OpenGuard(count)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that fails with `TimedOut` when it has seen no traffic for `idle` while no
/// request is in progress.
struct IdleIo {
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    busy: Arc<AtomicUsize>,
}

impl IdleIo {
    fn new(inner: TcpStream, idle: Duration, busy: Arc<AtomicUsize>) -> Self {
        IdleIo {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            busy,
        }
    }

    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }

    /// On Pending from the socket: Ready(Err) once the idle deadline has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.busy.load(Ordering::Acquire) > 0 {
            self.touch();
            return false;
        }
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "api connection idle too long")
}

impl AsyncRead for IdleIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                self.touch();
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_below_the_descriptor_limit() {
        assert_eq!(connection_cap(512, 1024), (512, 384));
        assert_eq!(connection_cap(5000, 1024), (672, 224));
        assert_eq!(connection_cap(5000, 100), (24, 16));
        assert_eq!(connection_cap(512, 524_288).0, 512);
        for nofile in [256u64, 1024, 4096, 65536] {
            let (cap, wait) = connection_cap(100_000, nofile);
            assert!(
                (cap + wait) as u64 <= nofile - RESERVED_DESCRIPTORS,
                "{nofile}"
            );
        }
    }
}
