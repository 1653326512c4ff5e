//! The API's own accept loop (instead of `axum::serve`, which has no connection cap and no
//! timeouts): idle or slow clients cannot starve the API, the inbox reader or the watchdog.
//!
//! - At most `max_connections` connections are open, and never more than the descriptor limit
//!   leaves room for ([`connection_cap`]): the store, the reply source, the outbox and the
//!   blocking threads keep [`RESERVED_DESCRIPTORS`].
//! - At the cap, a new connection closes the oldest one that has no request in progress (an
//!   idle keep-alive or a client still trickling its header in), so a real client always
//!   gets in; when every connection is busy with a request, the new one is closed at once.
//! - A request's header must arrive within `header_read_timeout` (hyper's timer), and a
//!   connection with no traffic and no request in progress is closed after `idle_timeout`.
//! - `accept` errors (EMFILE, ENFILE, ECONNABORTED) pause the loop briefly instead of spinning.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
    /// A request's header must be in within this.
    pub header_read_timeout: Duration,
    /// No traffic and no request in progress for this long closes the connection.
    pub idle_timeout: Duration,
}

/// The connection cap: the configured one, but never more than `nofile` minus
/// [`RESERVED_DESCRIPTORS`] (and at least 16).
pub fn connection_cap(configured: usize, nofile: u64) -> usize {
    let room = nofile.saturating_sub(RESERVED_DESCRIPTORS).max(16);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

struct Conn {
    opened: Instant,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    conns: HashMap<u64, Conn>,
}

impl Registry {
    /// Tells the oldest connection without a request in progress to close; false if none.
    fn evict_oldest_idle(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| c.opened)
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
    let mut evictions: u64 = 0;
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
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let evicted = registry
                    .lock()
                    .map(|mut r| r.evict_oldest_idle())
                    .unwrap_or(false);
                if !evicted {
                    // Every connection is serving a request: this one waits for none of them.
                    drop(stream);
                    continue;
                }
                evictions += 1;
                if evictions == 1 || evictions.is_power_of_two() {
                    tracing::warn!(
                        cap = limits.max_connections,
                        evictions,
                        "api: connection cap reached; closing the oldest idle connections"
                    );
                }
                match tokio::time::timeout(
                    Duration::from_millis(500),
                    slots.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let busy = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        let id = match registry.lock() {
            Ok(mut r) => {
                r.next += 1;
                let id = r.next;
                r.conns.insert(
                    id,
                    Conn {
                        opened: Instant::now(),
                        busy: busy.clone(),
                        close: close.clone(),
                    },
                );
                id
            }
            Err(_) => continue,
        };
        let router = router.clone();
        let registry = registry.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_one(stream, router, limits, busy, close, stop).await;
            if let Ok(mut r) = registry.lock() {
                r.conns.remove(&id);
            }
            drop(permit);
        });
    }
}

async fn serve_one(
    stream: TcpStream,
    router: Router,
    limits: ServerLimits,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout, busy.clone()));
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        let busy = busy.clone();
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
        assert_eq!(connection_cap(512, 1024), 512);
        assert_eq!(connection_cap(5000, 1024), 896);
        assert_eq!(connection_cap(5000, 100), 16);
        assert_eq!(connection_cap(512, 524_288), 512);
    }
}
