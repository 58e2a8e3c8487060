//! A TCP proxy between the client and the broker that cuts every
//! connection on demand (refusing new ones until restored), or by itself
//! once the client has sent a given number of bytes more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A proxy to one server. Dropping it stops accepting.
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    /// `true` while connections are cut and refused.
    cut: watch::Sender<bool>,
    /// Bytes the client sent so far.
    sent: AtomicU64,
    /// Cut once `sent` reaches this (`u64::MAX`: never).
    cut_at: AtomicU64,
    /// How many cuts happened.
    cuts: watch::Sender<u64>,
}

impl Shared {
    fn cut(&self) {
        if !self.cut.send_replace(true) {
            self.cuts.send_modify(|n| *n += 1);
        }
    }
}

impl CutProxy {
    /// A proxy on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            target,
            cut: watch::channel(false).0,
            sent: AtomicU64::new(0),
            cut_at: AtomicU64::new(u64::MAX),
            cuts: watch::channel(0).0,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Self { addr, shared, accept }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection now and refuses new ones.
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.shared.cut_at.store(u64::MAX, Ordering::SeqCst);
        self.shared.cut.send_replace(false);
    }

    /// Cuts once the client has sent `bytes` more bytes (mid-frame,
    /// likely).
    pub fn cut_after_client_bytes(&self, bytes: u64) {
        let now = self.shared.sent.load(Ordering::SeqCst);
        self.shared.cut_at.store(now + bytes, Ordering::SeqCst);
    }

    /// Waits until connections were cut `n` times in all.
    pub async fn until_cuts(&self, n: u64) {
        let mut cuts = self.shared.cuts.subscribe();
        let _ = cuts.wait_for(|cuts| *cuts >= n).await;
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if *shared.cut.borrow() {
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(shared.target).await else {
            continue;
        };
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::spawn(pump(client_read, server_write, Arc::clone(&shared), true));
        tokio::spawn(pump(server_read, client_write, Arc::clone(&shared), false));
    }
}

/// Copies `from` to `to` until either closes or a cut; counts and checks
/// the client's bytes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
    from_client: bool,
) {
    let mut cut = shared.cut.subscribe();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if *cut.borrow_and_update() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = cut.changed() => return,
        };
        let Ok(n) = read else { return };
        if n == 0 {
            return;
        }
        let mut chunk = &buffer[..n];
        if from_client {
            let before = shared.sent.fetch_add(n as u64, Ordering::SeqCst);
            let limit = shared.cut_at.load(Ordering::SeqCst);
            if before + n as u64 >= limit {
                // Forward up to the limit, then cut.
                let keep = usize::try_from(limit.saturating_sub(before)).unwrap_or(n).min(n);
                chunk = &buffer[..keep];
                let _ = to.write_all(chunk).await;
                shared.cut();
                return;
            }
        }
        if *cut.borrow() || to.write_all(chunk).await.is_err() {
            return;
        }
    }
}
