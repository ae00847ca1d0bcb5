//! The link actor: owns the connection, matches answers to requests by id, retransmits on
//! silence, routes firmware acknowledgements and log events, and reconnects as a state of its
//! own (a [`Search`] task reports back) so that commands are served meanwhile.

use super::super::codec::{DeviceHello, PROTO_SELECTIVE, Request, Resend};
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

/// Request retransmission, in one place.
mod retry {
    use tokio::time::Duration;

    /// Shortest pause before a request is sent again.
    pub const MIN: Duration = Duration::from_millis(30);
    /// Longest pause between two retransmissions of a request.
    pub const MAX: Duration = Duration::from_secs(2);
    /// Added to the measured round trip (timer granularity, the charger's own work).
    pub const SLACK: Duration = Duration::from_millis(10);
    /// The pause grows by this factor (in tenths) with each retransmission ...
    pub const GROWTH_TENTHS: u32 = 15;
    /// ... but stays short enough that at least this many attempts fit in one timeout, so a
    /// lossy line gets enough tries before the deadline.
    pub const ATTEMPTS_PER_TIMEOUT: u32 = 16;
    /// A request whose charger keeps sending (so the line is alive but noisy) is retried
    /// until this many timeouts have passed; a silent charger fails it after one.
    pub const TIMEOUTS_WHILE_ALIVE: u32 = 4;
}
/// Requests accepted while reconnecting; they are sent once the charger is found again. More
/// are refused with [`Error::Reconnecting`].
pub(super) const QUEUE_WHILE_RECONNECTING: usize = 64;

/// Most parts one answer may have (the whole configuration is a few dozen); a charger that
/// sends more fails the request instead of filling memory.
const MAX_ANSWER_PARTS: usize = 1024;

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
    /// The request body (sent again inside a RESEND) and its encoded REQ frame.
    body: Vec<u8>,
    frame: Vec<u8>,
    parts: BTreeMap<u16, (u8, Vec<u8>)>,
    last: Option<u16>,
    interval: Duration,
    /// Longest pause between retransmissions of this request.
    interval_cap: Duration,
    retry_at: Instant,
    sent_at: Instant,
    /// Sent more than once: its round trip says nothing (Karn).
    retransmitted: bool,
    /// First sent.
    since: Instant,
    /// Fails at `deadline` unless the charger was heard within the timeout, and at `hard` in
    /// any case.
    deadline: Instant,
    hard: Instant,
    timeout: Duration,
    reply: Option<oneshot::Sender<Result<Parts>>>,
}

impl Pending {
    /// When it fails, given when the charger was last heard.
    fn expires(&self, heard: Instant) -> Instant {
        self.deadline.max(later(heard, self.timeout)).min(self.hard)
    }

    /// Parts missing below the highest received one, and the first part of an open tail.
    fn missing(&self) -> (Vec<u16>, Option<u16>) {
        let top = self.last.or_else(|| self.parts.keys().next_back().copied());
        let Some(top) = top else {
            return (Vec::new(), Some(0));
        };
        let below = (0..top).filter(|p| !self.parts.contains_key(p)).collect();
        let from = match self.last {
            Some(_) => None,
            None => top.checked_add(1),
        };
        (below, from)
    }
}

/// Round trips of requests answered at the first try (smoothed, RFC 6298 weights).
#[derive(Default)]
struct RequestRtt {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RequestRtt {
    fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(s) => {
                self.rttvar = (self.rttvar * 3 + s.abs_diff(rtt)) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
    }
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
    rtt: RequestRtt,
    /// When the charger was last heard (a frame, or any bytes at all), and the decoder's
    /// counters then.
    heard: Instant,
    heard_mark: u64,
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
            rtt: RequestRtt::default(),
            heard: Instant::now(),
            heard_mark: 0,
        }
    }

    /// The service protocol spoken on the current connection.
    fn proto(&self) -> u8 {
        self.hello.lock().map(|h| h.proto).unwrap_or(1)
    }

    /// Notes that bytes arrived since the last look at the decoder's counters.
    fn listen(&mut self, now: Instant) {
        let mark = self
            .stats
            .lock()
            .map(|s| {
                s.frames_ok
                    + s.crc_errors
                    + s.cobs_errors
                    + s.bad_header
                    + s.oversize
                    + s.garbage_bytes
            })
            .unwrap_or(0);
        if mark != self.heard_mark {
            self.heard_mark = mark;
            self.heard = now;
        }
    }

    /// The first pause before a request of `len` encoded bytes is sent again: the measured
    /// round trip plus the time the request takes on the line, within bounds.
    fn first_interval(&self, len: usize) -> Duration {
        let Some(srtt) = self.rtt.srtt else {
            return self.set.retry;
        };
        let on_line =
            Duration::from_micros(len as u64 * 10 * 1_000_000 / self.set.baud.max(1) as u64);
        (srtt + self.rtt.rttvar * 4 + retry::SLACK + on_line)
            .clamp(retry::MIN, self.set.retry.max(retry::MIN))
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        loop {
            let next_timer = match self.link {
                Link::Up(_) => self
                    .pending
                    .values()
                    .map(|p| p.retry_at.min(p.expires(self.heard)))
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
        let frame = Frame::new(Kind::Req, channel::CONTROL, id, body.clone()).encode();
        let now = Instant::now();
        let interval = self.first_interval(frame.len());
        let interval_cap = (timeout / retry::ATTEMPTS_PER_TIMEOUT)
            .min(retry::MAX)
            .max(interval);
        self.pending.insert(
            id,
            Pending {
                body,
                frame: frame.clone(),
                parts: BTreeMap::new(),
                last: None,
                interval,
                interval_cap,
                retry_at: now + interval,
                sent_at: now,
                retransmitted: false,
                since: now,
                deadline: later(now, timeout),
                hard: later(now, alive_budget(timeout)),
                timeout,
                reply: Some(reply),
            },
        );
        self.send(frame).await;
    }

    fn frame(&mut self, f: Frame) {
        self.heard = Instant::now();
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
        let now = Instant::now();
        if p.parts.is_empty() && !p.retransmitted {
            self.rtt.sample(now - p.sent_at);
        }
        p.parts.insert(part, (st, d.rest().to_vec()));
        if f.flags & flags::MORE == 0 {
            p.last = Some(part);
        }
        p.retry_at = now + p.interval;
        p.deadline = p.deadline.max(later(now, p.timeout / 2));
        let outcome = if p.parts.len() > MAX_ANSWER_PARTS {
            Some(Err(Error::Protocol {
                what: "request",
                detail: format!("more than {MAX_ANSWER_PARTS} parts in one answer"),
            }))
        } else if p
            .last
            .is_some_and(|last| p.parts.len() == last as usize + 1)
        {
            Some(Ok(std::mem::take(&mut p.parts).into_values().collect()))
        } else {
            None
        };
        if let Some(outcome) = outcome
            && let Some(mut p) = self.pending.remove(&f.id)
            && let Some(reply) = p.reply.take()
        {
            let _ = reply.send(outcome);
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
        self.listen(now);
        let selective = self.proto() >= PROTO_SELECTIVE;
        let heard = self.heard;
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        for (id, p) in self.pending.iter_mut() {
            if now >= p.expires(heard) {
                expired.push(*id);
            } else if now >= p.retry_at {
                p.interval = (p.interval * retry::GROWTH_TENTHS / 10).min(p.interval_cap);
                p.retry_at = now + p.interval;
                p.sent_at = now;
                p.retransmitted = true;
                if p.parts.is_empty() || !selective {
                    resend.push(p.frame.clone());
                } else {
                    // Only the parts still missing; the charger replays them from its cache.
                    let (parts, from) = p.missing();
                    let body = Resend {
                        parts,
                        from,
                        request: &p.body,
                    }
                    .encode();
                    let frame = Frame::new(Kind::Req, channel::CONTROL, *id, body)
                        .with_flags(flags::RESEND)
                        .encode();
                    resend.push(frame);
                }
            }
        }
        for id in expired {
            if let Some(mut p) = self.pending.remove(&id)
                && let Some(reply) = p.reply.take()
            {
                let _ = reply.send(Err(Error::Timeout {
                    what: "the charger".into(),
                    secs: (now - p.since).as_secs_f64().max(p.timeout.as_secs_f64()),
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
        let old = match std::mem::replace(
            &mut self.link,
            Link::Down {
                reason: String::new(),
            },
        ) {
            Link::Up(conn) => Some(conn),
            _ => None,
        };
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
            search: tokio::spawn(search.run(old)),
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
                    p.sent_at = now;
                    p.retransmitted = true;
                    p.deadline = p.deadline.max(later(now, p.timeout));
                    p.hard = p.hard.max(later(now, alive_budget(p.timeout)));
                    frames.push(p.frame.clone());
                }
                self.heard = now;
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

/// `now + d`, saturating far in the future instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// How long a request may be retried while the charger keeps sending.
fn alive_budget(timeout: Duration) -> Duration {
    timeout
        .checked_mul(retry::TIMEOUTS_WHILE_ALIVE)
        .unwrap_or(Duration::MAX)
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
