//! A loopback TCP proxy between charge points and a CSMS that injects network faults from a
//! seed: it passes the WebSocket handshake, then forwards frame by frame and, per frame, may
//! delay it, stall its direction for a while, drop the connection at that message boundary, or
//! forward half of the frame and then drop the connection; after a drop it may refuse
//! reconnects for a while. Faults can be switched off to let everything drain.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often each fault happens, per forwarded frame, and how long the slow ones last.
#[derive(Debug, Clone)]
pub struct Faults {
    pub seed: u64,
    /// Drop the connection before a frame.
    pub drop: f64,
    /// Forward half of a frame, then drop the connection.
    pub cut: f64,
    /// Hold a frame (and everything behind it in that direction) for `stall_for`.
    pub stall: f64,
    pub stall_for: (Duration, Duration),
    /// Hold a frame for `delay_for`.
    pub delay: f64,
    pub delay_for: (Duration, Duration),
    /// After a drop, refuse new connections for `refuse_for`, with this probability.
    pub refuse: f64,
    pub refuse_for: (Duration, Duration),
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    /// Connections dropped by the proxy (at a frame boundary or in the middle of a frame).
    pub outages: AtomicU64,
    pub cuts: AtomicU64,
    pub stalls: AtomicU64,
    pub delays: AtomicU64,
    /// Connection attempts refused while a refusal window was open.
    pub refused: AtomicU64,
    /// Frames forwarded.
    pub frames: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

struct Shared {
    faults: Faults,
    upstream: SocketAddr,
    enabled: AtomicBool,
    stats: Stats,
    refuse_until: std::sync::Mutex<Option<Instant>>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

enum Action {
    Pass,
    Delay(Duration),
    Stall(Duration),
    Drop,
    Cut,
}

fn between(rng: &mut StdRng, (low, high): (Duration, Duration)) -> Duration {
    if high <= low {
        return low;
    }
    low + (high - low).mul_f64(rng.random::<f64>())
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            faults,
            upstream,
            enabled: AtomicBool::new(true),
            stats: Stats::default(),
            refuse_until: std::sync::Mutex::new(None),
        });
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                n += 1;
                tokio::spawn(serve(tcp, accept_shared.clone(), n));
            }
        });
        FaultProxy { addr, shared, task }
    }

    /// `ws://` URL of the proxy, to use as the charge point's CSMS URL.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Switches faults on or off (off: everything passes, no refusals).
    pub fn set_faults(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::SeqCst);
        if !on {
            *self
                .shared
                .refuse_until
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn on(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    fn decide(&self, rng: &mut StdRng) -> Action {
        let f = &self.faults;
        // Draw every time, so a run's fault sequence depends only on the seed and the frames.
        let roll: f64 = rng.random();
        let stall_for = between(rng, f.stall_for);
        let delay_for = between(rng, f.delay_for);
        if !self.on() {
            return Action::Pass;
        }
        let mut edge = f.drop;
        if roll < edge {
            return Action::Drop;
        }
        edge += f.cut;
        if roll < edge {
            return Action::Cut;
        }
        edge += f.stall;
        if roll < edge {
            return Action::Stall(stall_for);
        }
        edge += f.delay;
        if roll < edge {
            return Action::Delay(delay_for);
        }
        Action::Pass
    }

    fn outage(&self, rng: &mut StdRng) {
        self.stats.outages.fetch_add(1, Ordering::SeqCst);
        let roll: f64 = rng.random();
        let window = between(rng, self.faults.refuse_for);
        if self.on() && roll < self.faults.refuse {
            *self.refuse_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + window);
        }
    }

    fn refusing(&self) -> bool {
        self.on()
            && self
                .refuse_until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|t| Instant::now() < t)
    }
}

async fn serve(client: TcpStream, shared: Arc<Shared>, n: u64) {
    if shared.refusing() {
        shared.stats.refused.fetch_add(1, Ordering::SeqCst);
        // Reset the connection: the charge point sees its connection attempt fail.
        let _ = client.set_zero_linger();
        drop(client);
        return;
    }
    let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    shared.stats.connections.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let kill = CancellationToken::new();
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let seed = shared.faults.seed;
    let to_csms = pump(
        cr,
        uw,
        StdRng::seed_from_u64(seed ^ (n << 1)),
        kill.clone(),
        shared.clone(),
    );
    let to_cp = pump(
        ur,
        cw,
        StdRng::seed_from_u64(seed ^ ((n << 1) | 1)),
        kill.clone(),
        shared.clone(),
    );
    tokio::join!(to_csms, to_cp);
}

/// The length of the WebSocket frame at the start of `b`, once its header is complete.
fn frame_len(b: &[u8]) -> Option<usize> {
    if b.len() < 2 {
        return None;
    }
    let mask = if b[1] & 0x80 != 0 { 4 } else { 0 };
    let (header, len) = match b[1] & 0x7f {
        126 => (4, u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize),
        127 => {
            let bytes: [u8; 8] = b.get(2..10)?.try_into().ok()?;
            (10, u64::from_be_bytes(bytes) as usize)
        }
        n => (2, n as usize),
    };
    Some(header + mask + len)
}

/// Forwards one direction: the HTTP handshake as it is, then frame by frame with faults.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut rng: StdRng,
    kill: CancellationToken,
    shared: Arc<Shared>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    // The handshake: up to the end of the HTTP header.
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let header: Vec<u8> = buf.drain(..end + 4).collect();
            if to.write_all(&header).await.is_err() {
                kill.cancel();
                return;
            }
            break;
        }
        let n = tokio::select! {
            _ = kill.cancelled() => return,
            r = from.read(&mut chunk) => r.unwrap_or(0),
        };
        if n == 0 {
            kill.cancel();
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // Frames: read ahead into a queue, so a stalled direction still notices its peer leaving.
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let reader = async {
        loop {
            while let Some(len) = frame_len(&buf).filter(|&len| buf.len() >= len) {
                let frame: Vec<u8> = buf.drain(..len).collect();
                if tx.send(frame).is_err() {
                    return;
                }
            }
            let n = tokio::select! {
                _ = kill.cancelled() => return,
                r = from.read(&mut chunk) => r.unwrap_or(0),
            };
            if n == 0 {
                kill.cancel();
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let writer = async {
        loop {
            let frame = tokio::select! {
                _ = kill.cancelled() => return,
                f = rx.recv() => match f { Some(f) => f, None => return },
            };
            let action = shared.decide(&mut rng);
            let hold = match action {
                Action::Delay(d) => {
                    shared.stats.delays.fetch_add(1, Ordering::SeqCst);
                    Some(d)
                }
                Action::Stall(d) => {
                    shared.stats.stalls.fetch_add(1, Ordering::SeqCst);
                    Some(d)
                }
                Action::Drop => {
                    shared.outage(&mut rng);
                    kill.cancel();
                    return;
                }
                Action::Cut => {
                    shared.stats.cuts.fetch_add(1, Ordering::SeqCst);
                    let _ = to.write_all(&frame[..frame.len() / 2]).await;
                    let _ = to.flush().await;
                    shared.outage(&mut rng);
                    kill.cancel();
                    return;
                }
                Action::Pass => None,
            };
            if let Some(d) = hold {
                tokio::select! {
                    _ = kill.cancelled() => return,
                    _ = tokio::time::sleep(d) => {}
                }
            }
            if to.write_all(&frame).await.is_err() {
                kill.cancel();
                return;
            }
            shared.stats.frames.fetch_add(1, Ordering::SeqCst);
        }
    };
    tokio::join!(reader, writer);
}
