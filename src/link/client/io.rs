//! The port's two I/O tasks (a reader that decodes frames, a writer that batches them) and the
//! HELLO handshake that opens a connection.

use super::super::codec::{DeviceHello, HostHello, PROTO_MAX, PROTO_MIN};
use super::super::error::{Error, Result};
use super::super::frame::{Decoded, Decoder, Frame, Kind, Stats, channel};
use super::super::transport::{self, BoxIo};
use super::LinkEvent;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// Frames and text decoded from the port, queued for the actor.
const INCOMING_QUEUE: usize = 4096;
/// Encoded writes queued for the writer task.
const OUTGOING_QUEUE: usize = 256;
/// Bytes asked of the port in one read.
const READ_BUFFER: usize = 16 * 1024;
/// Queued writes are coalesced into one `write` of at most this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// What the reader task found on the line.
pub(super) enum Incoming {
    Frame(Frame),
    Text(String),
    Closed(String),
}

/// One open port: its decoded input and a queue for encoded output. Dropping it stops both
/// tasks (and so closes the port).
pub(super) struct Conn {
    pub incoming: mpsc::Receiver<Incoming>,
    pub out: mpsc::Sender<Vec<u8>>,
    tasks: [JoinHandle<()>; 2],
}

impl Conn {
    /// Stops both tasks and waits until they are gone, so the port is closed on return.
    pub async fn close(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in &mut self.tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the reader and writer tasks of `io`; the reader keeps `stats` current.
pub(super) fn start_conn(io: BoxIo, stats: Arc<Mutex<Stats>>) -> Conn {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(OUTGOING_QUEUE);
    let in_tx2 = in_tx.clone();
    let reader = tokio::spawn(async move {
        let mut dec = Decoder::new();
        let mut buf = vec![0u8; READ_BUFFER];
        let mut out = Vec::new();
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => {
                    let _ = in_tx.send(Incoming::Closed("end of file".into())).await;
                    return;
                }
                Ok(n) => {
                    dec.push(&buf[..n], &mut out);
                    if let Ok(mut s) = stats.lock() {
                        *s = dec.stats();
                    }
                    for d in out.drain(..) {
                        let item = match d {
                            Decoded::Frame(f) => Incoming::Frame(f),
                            Decoded::Text(t) => Incoming::Text(t),
                        };
                        if in_tx.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = in_tx.send(Incoming::Closed(e.to_string())).await;
                    return;
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while let Some(first) = out_rx.recv().await {
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BATCH {
                match out_rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            let res = match wr.write_all(&batch).await {
                Ok(()) => wr.flush().await,
                Err(e) => Err(e),
            };
            batch.clear();
            if let Err(e) = res {
                let _ = in_tx2.send(Incoming::Closed(e.to_string())).await;
                return;
            }
        }
    });
    Conn {
        incoming: in_rx,
        out: out_tx,
        tasks: [reader, writer],
    }
}

/// A port still held for a moment (a connection just closed by this or another process) is
/// tried again for this long before "in use" is reported.
const BUSY_GRACE: Duration = Duration::from_secs(1);
const BUSY_RETRY: Duration = Duration::from_millis(50);

async fn open(port: &str, baud: u32) -> Result<BoxIo> {
    let until = Instant::now() + BUSY_GRACE;
    loop {
        match transport::open(port, baud).await {
            Err(Error::Busy { .. }) if Instant::now() < until => {
                tokio::time::sleep(BUSY_RETRY).await;
            }
            other => return other,
        }
    }
}

/// Two delimiters (ending any partial frame on the charger) and a HELLO.
fn hello_frame(session: u64, id: u16) -> Vec<u8> {
    let body = HostHello {
        proto_min: PROTO_MIN,
        proto_max: PROTO_MAX,
        session,
    }
    .encode();
    let mut out = vec![0u8, 0u8];
    Frame::new(Kind::Hello, channel::CONTROL, id, body).encode_into(&mut out);
    out
}

/// How to greet a charger.
pub(super) struct Greeting<'a> {
    pub port: &'a str,
    pub baud: u32,
    pub session: u64,
    /// HELLO attempts; the wait for an answer grows with each.
    pub attempts: u32,
    pub hello_timeout: Duration,
    pub stats: &'a Arc<Mutex<Stats>>,
    pub events: &'a broadcast::Sender<LinkEvent>,
}

/// Opens the port and says HELLO until the charger answers. On failure the port is closed
/// again before this returns.
pub(super) async fn handshake(g: Greeting<'_>) -> Result<(Conn, DeviceHello)> {
    let io = open(g.port, g.baud).await?;
    let mut conn = start_conn(io, g.stats.clone());
    match greet(&mut conn, &g).await {
        Ok(hello) => Ok((conn, hello)),
        Err(e) => {
            conn.close().await;
            Err(e)
        }
    }
}

async fn greet(conn: &mut Conn, g: &Greeting<'_>) -> Result<DeviceHello> {
    let port = g.port;
    let attempts = g.attempts.max(1);
    for attempt in 1..=attempts {
        let id = 0xFF00 | attempt as u16;
        conn.out
            .send(hello_frame(g.session, id))
            .await
            .map_err(|_| Error::Disconnected {
                port: port.to_string(),
                reason: "writer stopped".into(),
            })?;
        let until = Instant::now() + g.hello_timeout * attempt;
        loop {
            match tokio::time::timeout_at(until, conn.incoming.recv()).await {
                Err(_) => break,
                Ok(None) | Ok(Some(Incoming::Closed(_))) => {
                    return Err(Error::Disconnected {
                        port: port.to_string(),
                        reason: "the port closed during HELLO".into(),
                    });
                }
                Ok(Some(Incoming::Text(t))) => {
                    let _ = g.events.send(LinkEvent::Console(t));
                }
                Ok(Some(Incoming::Frame(f))) if f.kind == Kind::Hello => {
                    let hello = DeviceHello::decode(&f.body)?;
                    if !(PROTO_MIN..=PROTO_MAX).contains(&hello.proto) {
                        return Err(Error::Incompatible {
                            port: port.to_string(),
                            device: hello.proto,
                            min: PROTO_MIN,
                            max: PROTO_MAX,
                        });
                    }
                    return Ok(hello);
                }
                Ok(Some(Incoming::Frame(_))) => {}
            }
        }
    }
    Err(Error::NoAnswer {
        port: port.to_string(),
        attempts,
    })
}
