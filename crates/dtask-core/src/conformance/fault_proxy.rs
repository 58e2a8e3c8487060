//! [`FaultProxy`]: a TCP proxy that injects faults between a client and a
//! real server, for the fault tests of every backend ("prove it with
//! faults injected at the exact moment").
//!
//! It forwards bytes both ways until told to cut every connection (and
//! refuse new ones until restored), and can cut by itself at an exact
//! moment: once the client has sent a number of bytes more (mid-frame,
//! likely); right after an AMQP 0-9-1 broker confirms a publish, before
//! the client's next frame reaches the broker; or on the answer to a
//! request it recognises, which then never reaches the client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest pattern [`FaultProxy::cut_after_request_with`] finds across
/// two reads.
pub const PATTERN_OVERLAP: usize = 256;

/// A proxy to one server. Dropping it stops it and cuts its connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    /// `true` while connections are cut and refused; every pump watches it.
    cut: watch::Sender<bool>,
    /// How many cuts happened (by hand or by a trigger).
    cuts: watch::Sender<u64>,
    /// Bytes the clients sent so far, and the count at which the proxy
    /// cuts (`u64::MAX`: never); see [`FaultProxy::cut_after_client_bytes`].
    sent: AtomicU64,
    cut_at: AtomicU64,
    /// Set by [`FaultProxy::cut_after_next_confirm`]; taken by the pump
    /// that sees the confirmation.
    cut_after_confirm: AtomicBool,
    /// Set by [`FaultProxy::cut_after_request_with`]: the bytes a request
    /// holds, and how long the outage after it lasts.
    cut_after_request: Mutex<Option<(Vec<u8>, Duration)>>,
}

impl FaultProxy {
    /// A proxy on a free loopback port, forwarding to `target`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test cannot go on).
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            target,
            cut: watch::channel(false).0,
            cuts: watch::channel(0).0,
            sent: AtomicU64::new(0),
            cut_at: AtomicU64::new(u64::MAX),
            cut_after_confirm: AtomicBool::new(false),
            cut_after_request: Mutex::new(None),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Self { addr, shared, accept }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection now and refuses new ones until
    /// [`restore`](Self::restore).
    pub fn cut(&self) {
        self.shared.cut_now();
    }

    /// Accepts and forwards connections again after a cut (and disarms a
    /// [`cut_after_client_bytes`](Self::cut_after_client_bytes)).
    pub fn restore(&self) {
        self.shared.cut_at.store(u64::MAX, Ordering::SeqCst);
        self.shared.cut.send_replace(false);
    }

    /// An action that cuts now and restores after `outage` (for a
    /// tripwire to fire).
    pub fn cut_for(&self, outage: Duration) -> impl Fn() + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || Arc::clone(&shared).cut_for(outage)
    }

    /// How many times connections were cut.
    pub fn cuts(&self) -> u64 {
        *self.shared.cuts.borrow()
    }

    /// Waits until connections were cut `n` times (a trigger fires when
    /// the bytes it waits for pass, which a test may learn of sooner by
    /// another path).
    pub async fn until_cuts(&self, n: u64) {
        let mut cuts = self.shared.cuts.subscribe();
        let _ = cuts.wait_for(|cuts| *cuts >= n).await;
    }

    /// Arms a one-shot trigger: once the clients have sent `bytes` bytes
    /// more, the proxy forwards up to that byte and cuts every connection
    /// (mid-frame, likely), until [`restore`](Self::restore).
    pub fn cut_after_client_bytes(&self, bytes: u64) {
        let now = self.shared.sent.load(Ordering::SeqCst);
        self.shared.cut_at.store(now.saturating_add(bytes), Ordering::SeqCst);
    }

    /// Arms a one-shot trigger for an AMQP 0-9-1 connection: when the
    /// broker next confirms a publish (a `basic.ack` frame from the
    /// broker), the proxy stops forwarding what the client sends, hands the
    /// confirmation to the client, and cuts every connection. Whatever the
    /// client does on hearing the confirmation (typically acknowledging
    /// the delivery it was dead-lettering) never reaches the broker.
    pub fn cut_after_next_confirm(&self) {
        self.shared.cut_after_confirm.store(true, Ordering::SeqCst);
    }

    /// Arms a one-shot trigger: the next bytes from a client that hold
    /// `pattern` (at most [`PATTERN_OVERLAP`] bytes long, found across
    /// reads) reach the server, but its answer does not reach the client:
    /// the proxy stops forwarding answers and cuts every connection, then
    /// restores after `outage`. The client sees a request that may or may
    /// not have been applied (it was).
    pub fn cut_after_request_with(&self, pattern: &[u8], outage: Duration) {
        *self.shared.armed_request() = Some((pattern.to_vec(), outage));
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("cuts", &self.cuts())
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cut_now();
    }
}

impl Shared {
    fn armed_request(&self) -> std::sync::MutexGuard<'_, Option<(Vec<u8>, Duration)>> {
        self.cut_after_request.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `request` trips the armed [`FaultProxy::cut_after_request_with`]
    /// trigger (disarming it): the outage to cut for.
    fn request_trips(&self, request: &[u8]) -> Option<Duration> {
        let mut armed = self.armed_request();
        let holds = armed
            .as_ref()
            .is_some_and(|(pattern, _)| request.windows(pattern.len()).any(|w| w == pattern.as_slice()));
        if holds {
            armed.take().map(|(_, outage)| outage)
        } else {
            None
        }
    }

    /// Counts `n` bytes a client just read; when they reach the armed byte
    /// count, how many of them go to the server before the cut.
    fn client_bytes_reach_cut(&self, n: usize) -> Option<usize> {
        let before = self.sent.fetch_add(n as u64, Ordering::SeqCst);
        let limit = self.cut_at.load(Ordering::SeqCst);
        (before.saturating_add(n as u64) >= limit)
            .then(|| usize::try_from(limit.saturating_sub(before)).map_or(n, |room| room.min(n)))
    }

    fn cut_now(&self) {
        self.cuts.send_modify(|cuts| *cuts += 1);
        self.cut.send_replace(true);
    }

    /// Cuts now and restores after `outage` (the outage's length is what
    /// a test asks for: nothing else ends it).
    fn cut_for(self: Arc<Self>, outage: Duration) {
        self.cut_now();
        tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            self.cut.send_replace(false);
        });
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *shared.cut.borrow() {
            drop(client); // refused while cut
            continue;
        }
        let Ok(server) = TcpStream::connect(shared.target).await else {
            continue;
        };
        tokio::spawn(connection(client, server, Arc::clone(&shared)));
    }
}

/// Forwards one connection both ways until either side closes or the
/// proxy cuts.
async fn connection(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // Set before a confirmation reaches the client: nothing more goes to
    // the broker.
    let frozen = Arc::new(AtomicBool::new(false));
    // Set once a request went to the server whose answer must be lost: the
    // outage that follows.
    let deaf: Arc<Mutex<Option<Duration>>> = Arc::default();
    let upstream = {
        let (frozen, deaf, shared) = (Arc::clone(&frozen), Arc::clone(&deaf), Arc::clone(&shared));
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            // The end of what came before, so that a pattern split between
            // two reads is found.
            let mut seen = Vec::new();
            loop {
                let n = match from_client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                seen.extend_from_slice(&buf[..n]);
                if let Some(outage) = shared.request_trips(&seen) {
                    *deaf.lock().unwrap_or_else(PoisonError::into_inner) = Some(outage);
                }
                seen.drain(..seen.len().saturating_sub(PATTERN_OVERLAP));
                let cut_after = shared.client_bytes_reach_cut(n);
                // Checked before each forward: a cut stops every byte
                // after it at once, not when the pump is next polled.
                if *shared.cut.borrow()
                    || frozen.load(Ordering::SeqCst)
                    || to_server.write_all(&buf[..cut_after.unwrap_or(n)]).await.is_err()
                {
                    return;
                }
                if cut_after.is_some() {
                    shared.cut_now();
                    return;
                }
            }
        }
    };
    let downstream = {
        let shared = Arc::clone(&shared);
        let frozen = Arc::clone(&frozen);
        async move {
            let mut frames = AmqpFrames::default();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from_server.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                if *shared.cut.borrow() {
                    return;
                }
                let lost = deaf.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(outage) = lost {
                    // The answer goes nowhere, and the connection with it.
                    Arc::clone(&shared).cut_for(outage);
                    return;
                }
                let confirms = frames.feed(chunk);
                if let Some(&end) = confirms.first()
                    && shared.cut_after_confirm.swap(false, Ordering::SeqCst)
                {
                    frozen.store(true, Ordering::SeqCst);
                    let _ = to_client.write_all(&chunk[..end]).await;
                    let _ = to_client.flush().await;
                    shared.cut_now();
                    return;
                }
                if to_client.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    };
    let mut cut = shared.cut.subscribe();
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}
/// Follows the frames of an AMQP 0-9-1 byte stream from the broker to find
/// where a `basic.ack` (a publisher confirmation) ends.
#[derive(Default)]
struct AmqpFrames {
    /// Bytes of a frame not complete yet.
    pending: Vec<u8>,
}

impl AmqpFrames {
    /// Frame type of a method frame.
    const METHOD: u8 = 1;
    /// `basic` class id and its `ack` method id.
    const BASIC_ACK: (u16, u16) = (60, 80);

    /// Reads `chunk`; returns the offsets in it just past each
    /// `basic.ack` frame it completes.
    fn feed(&mut self, chunk: &[u8]) -> Vec<usize> {
        let already = self.pending.len();
        self.pending.extend_from_slice(chunk);
        let mut ends = Vec::new();
        let mut at = 0;
        while self.pending.len() >= at + 7 {
            let header = &self.pending[at..at + 7];
            let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
            let end = at + 7 + size + 1;
            if self.pending.len() < end {
                break;
            }
            let payload = &self.pending[at + 7..at + 7 + size];
            let method = (payload.len() >= 4).then(|| {
                (
                    u16::from_be_bytes([payload[0], payload[1]]),
                    u16::from_be_bytes([payload[2], payload[3]]),
                )
            });
            if header[0] == Self::METHOD && method == Some(Self::BASIC_ACK) {
                ends.push(end - already);
            }
            at = end;
        }
        self.pending.drain(..at);
        ends
    }
}

#[cfg(test)]
mod tests {
    use super::AmqpFrames;

    fn frame(kind: u8, class: u16, method: u16) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&class.to_be_bytes());
        payload.extend_from_slice(&method.to_be_bytes());
        payload.extend_from_slice(&[0; 9]);
        let mut frame = vec![kind, 0, 1];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(0xCE);
        frame
    }

    #[test]
    fn a_confirmation_is_found_across_chunks() {
        let deliver = frame(1, 60, 60);
        let ack = frame(1, 60, 80);
        let mut stream = deliver.clone();
        stream.extend_from_slice(&ack);
        stream.extend_from_slice(&deliver);
        stream.extend_from_slice(&ack);
        let mut frames = AmqpFrames::default();
        let split = deliver.len() + 3;
        assert!(frames.feed(&stream[..split]).is_empty());
        let ends = frames.feed(&stream[split..]);
        let first = deliver.len() + ack.len();
        let second = first + deliver.len() + ack.len();
        assert_eq!(ends, [first - split, second - split]);
    }
}
