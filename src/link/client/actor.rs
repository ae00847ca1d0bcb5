//! The link actor: owns the connection, matches answers to requests by id, retransmits on
//! silence, routes firmware acknowledgements and log events, and reconnects as a state of its
//! own (a [`Search`] task reports back) so that commands are served meanwhile.

use super::super::codec::{DeviceHello, Request};
use super::super::error::{Error, Result};
use super::super::frame::{Frame, Kind, Stats, channel, flags};
use super::super::ports::PortLister;
use super::LinkEvent;
use super::io::{Conn, Incoming};
use super::logs::{LogItem, decode_log_event};
use super::reconnect::{Found, Search};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// Longest pause between two retransmissions of a request.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Requests accepted while reconnecting; they are sent once the charger is found again. More
/// are refused with [`Error::Reconnecting`].
pub(super) const QUEUE_WHILE_RECONNECTING: usize = 64;

/// Response parts in order: (status, payload).
pub(super) type Parts = Vec<(u8, Vec<u8>)>;

/// What a [`super::Client`] asks of the actor.
pub(super) enum Cmd {
    Request {
        body: Vec<u8>,
        timeout: Duration,
        reply: oneshot::Sender<Result<Parts>>,
    },
    /// Encoded frames to write as they are (firmware DATA).
    Send(Vec<u8>),
    /// Routes ACK and NAK frames of a firmware transfer to `tx` (`None` stops routing).
    Transfer {
        id: u16,
        tx: Option<mpsc::UnboundedSender<Frame>>,
    },
    /// Delivers log events to `tx`; `resubscribe` is sent again after a reconnect.
    Logs {
        tx: mpsc::Sender<LogItem>,
        resubscribe: Vec<u8>,
    },
    Reconnect {
        reply: oneshot::Sender<Result<DeviceHello>>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
}

struct Pending {
    frame: Vec<u8>,
    parts: BTreeMap<u16, (u8, Vec<u8>)>,
    last: Option<u16>,
    interval: Duration,
    retry_at: Instant,
    deadline: Instant,
    timeout: Duration,
    reply: Option<oneshot::Sender<Result<Parts>>>,
}

/// The state of the line.
enum Link {
    Up(Conn),
    /// A search for the charger runs; answers are queued or refused meanwhile.
    Reconnecting {
        search: JoinHandle<Result<Found>>,
        waiters: Vec<oneshot::Sender<Result<DeviceHello>>>,
    },
    /// The charger could not be found again; requests fail at once until a reconnect.
    Down {
        reason: String,
    },
}

/// What woke the actor on the line's side.
enum LineWake {
    Incoming(Option<Incoming>),
    Searched(Result<Found>),
}

/// Fixed settings of the actor.
pub(super) struct Settings {
    pub port: String,
    pub baud: u32,
    pub session: u64,
    pub serial: String,
    pub retry: Duration,
    pub hello_timeout: Duration,
    pub reconnect_timeout: Duration,
    pub lister: Arc<dyn PortLister>,
}

pub(super) struct Actor {
    set: Settings,
    link: Link,
    next_id: u16,
    pending: HashMap<u16, Pending>,
    transfers: HashMap<u16, mpsc::UnboundedSender<Frame>>,
    logs: Option<(mpsc::Sender<LogItem>, Vec<u8>)>,
    events: broadcast::Sender<LinkEvent>,
    hello: Arc<Mutex<DeviceHello>>,
    stats: Arc<Mutex<Stats>>,
}

impl Actor {
    pub fn new(
        set: Settings,
        conn: Conn,
        events: broadcast::Sender<LinkEvent>,
        hello: Arc<Mutex<DeviceHello>>,
        stats: Arc<Mutex<Stats>>,
    ) -> Actor {
        Actor {
            set,
            link: Link::Up(conn),
            next_id: rand::random::<u16>() & 0x7FFF,
            pending: HashMap::new(),
            transfers: HashMap::new(),
            logs: None,
            events,
            hello,
            stats,
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        loop {
            let next_timer = match self.link {
                Link::Up(_) => self
                    .pending
                    .values()
                    .map(|p| p.retry_at.min(p.deadline))
                    .min(),
                _ => None,
            };
            let line = async {
                match &mut self.link {
                    Link::Up(c) => LineWake::Incoming(c.incoming.recv().await),
                    Link::Reconnecting { search, .. } => {
                        LineWake::Searched(search.await.unwrap_or_else(|e| {
                            Err(Error::Disconnected {
                                port: self.set.port.clone(),
                                reason: format!("the search for the charger failed: {e}"),
                            })
                        }))
                    }
                    Link::Down { .. } => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(c) => self.command(c).await,
                },
                wake = line => match wake {
                    LineWake::Incoming(Some(Incoming::Frame(f))) => self.frame(f),
                    LineWake::Incoming(Some(Incoming::Text(t))) => {
                        let _ = self.events.send(LinkEvent::Console(t));
                    }
                    LineWake::Incoming(Some(Incoming::Closed(reason))) => self.lost(reason),
                    LineWake::Incoming(None) => self.lost("reader stopped".into()),
                    LineWake::Searched(result) => self.searched(result).await,
                },
                _ = sleep_opt(next_timer) => self.timers().await,
            }
        }
        match &self.link {
            Link::Up(c) => {
                // Best effort: stop a log subscription before going away.
                let mut out = Vec::new();
                Frame::new(
                    Kind::Req,
                    channel::CONTROL,
                    self.next_id,
                    Request::LogUnsubscribe.encode(),
                )
                .encode_into(&mut out);
                let _ = c.out.try_send(out);
            }
            Link::Reconnecting { search, .. } => search.abort(),
            Link::Down { .. } => {}
        }
    }

    fn alloc_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1) & 0x7FFF;
            if !self.pending.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    async fn send(&mut self, bytes: Vec<u8>) {
        if let Link::Up(c) = &self.link {
            let _ = c.out.send(bytes).await;
        }
    }

    async fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Request {
                body,
                timeout,
                reply,
            } => self.request(body, timeout, reply).await,
            Cmd::Send(bytes) => self.send(bytes).await,
            Cmd::Transfer { id, tx } => match tx {
                Some(tx) => {
                    self.transfers.insert(id, tx);
                }
                None => {
                    self.transfers.remove(&id);
                }
            },
            Cmd::Logs { tx, resubscribe } => self.logs = Some((tx, resubscribe)),
            Cmd::Reconnect { reply } => match &mut self.link {
                Link::Reconnecting { waiters, .. } => waiters.push(reply),
                _ => self.start_search(vec![reply]),
            },
            Cmd::Stats { reply } => {
                let s = self.stats.lock().map(|s| *s).unwrap_or_default();
                let _ = reply.send(s);
            }
        }
    }

    async fn request(
        &mut self,
        body: Vec<u8>,
        timeout: Duration,
        reply: oneshot::Sender<Result<Parts>>,
    ) {
        match &self.link {
            Link::Down { reason } => {
                let _ = reply.send(Err(Error::Disconnected {
                    port: self.set.port.clone(),
                    reason: reason.clone(),
                }));
                return;
            }
            Link::Reconnecting { .. } if self.pending.len() >= QUEUE_WHILE_RECONNECTING => {
                let _ = reply.send(Err(Error::Reconnecting {
                    port: self.set.port.clone(),
                }));
                return;
            }
            _ => {}
        }
        let id = self.alloc_id();
        let frame = Frame::new(Kind::Req, channel::CONTROL, id, body).encode();
        let now = Instant::now();
        self.pending.insert(
            id,
            Pending {
                frame: frame.clone(),
                parts: BTreeMap::new(),
                last: None,
                interval: self.set.retry,
                retry_at: now + self.set.retry,
                deadline: now + timeout,
                timeout,
                reply: Some(reply),
            },
        );
        self.send(frame).await;
    }

    fn frame(&mut self, f: Frame) {
        match (f.kind, f.channel) {
            (Kind::Rsp, _) => self.response(f),
            (Kind::Evt, channel::LOG) => self.log_event(f),
            (Kind::Ack | Kind::Nak, _) => {
                if let Some(tx) = self.transfers.get(&f.id) {
                    let _ = tx.send(f);
                }
            }
            _ => {}
        }
    }

    fn response(&mut self, f: Frame) {
        let Some(p) = self.pending.get_mut(&f.id) else {
            return;
        };
        let mut d = super::super::codec::Dec::new(&f.body);
        let (Ok(part), Ok(st)) = (d.u16("part"), d.u8("status")) else {
            return;
        };
        p.parts.insert(part, (st, d.rest().to_vec()));
        if f.flags & flags::MORE == 0 {
            p.last = Some(part);
        }
        let now = Instant::now();
        p.retry_at = now + p.interval;
        p.deadline = p.deadline.max(now + p.timeout / 2);
        if let Some(last) = p.last
            && p.parts.len() == last as usize + 1
            && let Some(mut p) = self.pending.remove(&f.id)
        {
            let parts = std::mem::take(&mut p.parts).into_values().collect();
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Ok(parts));
            }
        }
    }

    fn log_event(&mut self, f: Frame) {
        let Some((tx, _)) = &self.logs else { return };
        match decode_log_event(&f.body) {
            Ok(item) => match tx.try_send(item) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.logs = None;
                    let id = self.alloc_id();
                    let bytes = Frame::new(
                        Kind::Req,
                        channel::CONTROL,
                        id,
                        Request::LogUnsubscribe.encode(),
                    )
                    .encode();
                    if let Link::Up(c) = &self.link {
                        let _ = c.out.try_send(bytes);
                    }
                }
            },
            Err(e) => tracing::debug!(target: "link", error = %e, "bad log event"),
        }
    }

    async fn timers(&mut self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        for (id, p) in self.pending.iter_mut() {
            if now >= p.deadline {
                expired.push(*id);
            } else if now >= p.retry_at {
                p.interval = (p.interval * 2).min(RETRY_MAX);
                p.retry_at = now + p.interval;
                resend.push(p.frame.clone());
            }
        }
        for id in expired {
            if let Some(mut p) = self.pending.remove(&id)
                && let Some(reply) = p.reply.take()
            {
                let _ = reply.send(Err(Error::Timeout {
                    what: "the charger".into(),
                    secs: p.timeout.as_secs_f64(),
                }));
            }
        }
        for f in resend {
            self.send(f).await;
        }
    }

    /// The port failed or closed: look for the charger again.
    fn lost(&mut self, reason: String) {
        tracing::debug!(target: "link", port = %self.set.port, %reason, "link lost");
        let _ = self.events.send(LinkEvent::Disconnected {
            reason: reason.clone(),
        });
        self.start_search(Vec::new());
    }

    /// Closes the port (dropping the connection) and starts looking for the charger.
    fn start_search(&mut self, waiters: Vec<oneshot::Sender<Result<DeviceHello>>>) {
        let search = Search {
            port: self.set.port.clone(),
            baud: self.set.baud,
            session: self.set.session,
            serial: self.set.serial.clone(),
            hello_timeout: self.set.hello_timeout,
            lister: self.set.lister.clone(),
            give_up_after: self.set.reconnect_timeout,
            stats: self.stats.clone(),
            events: self.events.clone(),
        };
        self.link = Link::Reconnecting {
            search: tokio::spawn(search.run()),
            waiters,
        };
    }

    /// The search ended: back up (pending requests sent again, logs subscribed again), or
    /// down (everything waiting fails).
    async fn searched(&mut self, result: Result<Found>) {
        let waiters = match std::mem::replace(
            &mut self.link,
            Link::Down {
                reason: String::new(),
            },
        ) {
            Link::Reconnecting { waiters, .. } => waiters,
            other => {
                self.link = other;
                Vec::new()
            }
        };
        match result {
            Ok(Found { port, conn, hello }) => {
                if port != self.set.port {
                    tracing::info!(target: "link", from = %self.set.port, to = %port, "charger re-enumerated");
                    self.set.port = port.clone();
                }
                self.link = Link::Up(conn);
                if let Ok(mut h) = self.hello.lock() {
                    *h = hello.clone();
                }
                let _ = self.events.send(LinkEvent::Reconnected { port });
                let now = Instant::now();
                let mut frames = Vec::new();
                for p in self.pending.values_mut() {
                    p.interval = self.set.retry;
                    p.retry_at = now + p.interval;
                    p.deadline = p.deadline.max(now + p.timeout);
                    frames.push(p.frame.clone());
                }
                for f in frames {
                    self.send(f).await;
                }
                if let Some((tx, body)) = &self.logs {
                    let _ = tx.try_send(LogItem::Reset);
                    let body = body.clone();
                    let id = self.alloc_id();
                    self.send(Frame::new(Kind::Req, channel::CONTROL, id, body).encode())
                        .await;
                }
                for w in waiters {
                    let _ = w.send(Ok(hello.clone()));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for (_, mut p) in self.pending.drain() {
                    if let Some(reply) = p.reply.take() {
                        let _ = reply.send(Err(Error::Disconnected {
                            port: self.set.port.clone(),
                            reason: reason.clone(),
                        }));
                    }
                }
                self.transfers.clear();
                self.logs = None;
                let mut first = Some(e);
                for w in waiters {
                    let err = first.take().unwrap_or_else(|| Error::Disconnected {
                        port: self.set.port.clone(),
                        reason: reason.clone(),
                    });
                    let _ = w.send(Err(err));
                }
                self.link = Link::Down { reason };
            }
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
