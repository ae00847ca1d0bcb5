//! The WebSocket server: one accept task, one task per charge point connection (the actor that
//! owns the socket), and a cloneable [`SandboxHandle`] to call charge points, change the policy,
//! observe and stop.
//!
//! Files: this one starts the sandbox and holds its handle and shared state; `handshake.rs`
//! decides the HTTP upgrade (charge point id, subprotocol, Basic credentials); `session.rs`
//! accepts connections and runs the task of each charge point.

use super::events::{CsmsEvent, Direction, EventKind, EventLog, WaitTimeout};
use super::policy::{Policy, TransactionIds};
use crate::stack::rpc::{self, Frame};
use crate::stack::secret::Secret;
use serde_json::Value;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

mod handshake;
mod session;

#[cfg(test)]
use handshake::{constant_time_eq, parse_basic, percent_decode};
use session::accept_loop;
#[cfg(test)]
use session::{Ws, handle_socket, serve};

/// The only subprotocol the sandbox speaks (the stack's).
pub use crate::stack::transport::SUBPROTOCOL;

/// Pending connections the kernel queues for the accept loop; Linux caps it at
/// `net.core.somaxconn`. Large, so a boot storm of thousands of charge points is queued rather
/// than dropped (a dropped SYN costs the charge point a one-second retransmit).
pub const LISTEN_BACKLOG: u32 = 65_535;

/// WebSocket settings per connection: the stack's limits for every OCPP-J connection (messages
/// and frames of at most [`crate::stack::transport::MAX_MESSAGE_SIZE`]), a 4 KiB read buffer (it
/// grows for a larger message and is zero-filled up to this size on every read, so the default
/// 128 KiB would cost 128 KiB of resident memory per charge point), frames written at once.
/// tungstenite has no permessage-deflate, so compression is never negotiated.
fn websocket_config() -> WebSocketConfig {
    crate::stack::transport::websocket_config()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// How to run the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Address to listen on; port 0 picks a free port. Pass a stopped sandbox's
    /// [`SandboxHandle::local_addr`] to restart on the same port.
    pub listen: SocketAddr,
    /// Serve `wss://` with this TLS configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse (HTTP 401) handshakes without HTTP Basic credentials, or whose password differs
    /// from the one in `passwords` for that charge point.
    pub require_basic_auth: bool,
    /// Expected HTTP Basic password per charge point id.
    pub passwords: HashMap<String, Secret>,
    /// Initial behaviour; change it later with [`SandboxHandle::update_policy`].
    pub policy: Policy,
    /// First StartTransaction id this instance hands out (a restarted sandbox can continue).
    pub first_transaction_id: i64,
    /// How long [`SandboxHandle::call`] waits for the charge point's answer.
    pub call_timeout: Duration,
    /// Limit for the TLS and WebSocket handshakes of one connection.
    pub handshake_timeout: Duration,
    /// Events kept in the in-memory log (oldest dropped first).
    pub log_capacity: usize,
    /// Events buffered per broadcast subscriber before it lags.
    pub broadcast_capacity: usize,
    /// Record every frame as an event (the default). Off for load tests: frames are only
    /// counted ([`SandboxHandle::stats`]); connections and refusals are still recorded.
    pub record_frames: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            require_basic_auth: false,
            passwords: HashMap::new(),
            policy: Policy::default(),
            first_transaction_id: 1,
            call_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            log_capacity: 100_000,
            broadcast_capacity: 4096,
            record_frames: true,
        }
    }
}

/// The sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on {addr}: the address is already in use")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A CALL from the sandbox to a charge point failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("charge point {cp_id:?} is not connected")]
    NotConnected { cp_id: String },
    #[error("{action} to {cp_id:?}: no answer within {after:?}")]
    Timeout {
        cp_id: String,
        action: String,
        after: Duration,
    },
    #[error("{action} to {cp_id:?}: the connection closed before the answer")]
    Disconnected { cp_id: String, action: String },
    #[error("{action} to {cp_id:?}: the charge point answered CALLERROR {error}")]
    Rejected {
        cp_id: String,
        action: String,
        error: rpc::CallError,
    },
}

/// What the sandbox has done since it started, counted whether or not frames are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxStats {
    /// Charge points connected now.
    pub connected: u64,
    /// WebSocket handshakes accepted in total.
    pub connections: u64,
    /// Handshakes turned away (HTTP 401, 404).
    pub refused: u64,
    /// OCPP-J frames received (CALLs, CALLRESULTs, CALLERRORs).
    pub frames_received: u64,
    /// OCPP-J frames sent.
    pub frames_sent: u64,
    /// Text or binary messages that were not valid OCPP-J frames.
    pub invalid: u64,
    /// BootNotifications answered Accepted.
    pub boots_accepted: u64,
    /// BootNotifications answered Pending or Rejected.
    pub boots_not_accepted: u64,
    /// CALLERRORs sent in answer to charge point CALLs (broken frames included).
    pub call_errors_sent: u64,
}

/// The counters behind [`SandboxStats`]; relaxed atomics, read as a snapshot.
#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    connections: AtomicU64,
    refused: AtomicU64,
    frames_received: AtomicU64,
    frames_sent: AtomicU64,
    invalid: AtomicU64,
    boots_accepted: AtomicU64,
    boots_not_accepted: AtomicU64,
    call_errors_sent: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> SandboxStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SandboxStats {
            connected: get(&self.connected),
            connections: get(&self.connections),
            refused: get(&self.refused),
            frames_received: get(&self.frames_received),
            frames_sent: get(&self.frames_sent),
            invalid: get(&self.invalid),
            boots_accepted: get(&self.boots_accepted),
            boots_not_accepted: get(&self.boots_not_accepted),
            call_errors_sent: get(&self.call_errors_sent),
        }
    }
}

/// Starts sandboxes.
pub struct Sandbox;

impl Sandbox {
    /// Binds the listener (with `SO_REUSEADDR`, so a stopped sandbox's port can be taken again
    /// at once) and starts serving.
    pub async fn start(opts: SandboxOptions) -> Result<SandboxHandle, SandboxError> {
        let listener = bind(opts.listen)?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| SandboxError::Listen {
                addr: opts.listen,
                source,
            })?;
        let shared = Arc::new(Shared::new(&opts));
        let cancel = CancellationToken::new();
        let tls = opts.tls.map(tokio_rustls::TlsAcceptor::from);
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let task = tokio::spawn(accept_loop(listener, shared.clone(), tls, cancel.clone()));
        tracing::info!(%local_addr, scheme, "sandbox CSMS listening");
        Ok(SandboxHandle {
            shared,
            local_addr,
            scheme,
            call_timeout: opts.call_timeout,
            stop: Arc::new(StopOnDrop {
                cancel,
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, SandboxError> {
    let fail = |source: io::Error| {
        if source.kind() == io::ErrorKind::AddrInUse {
            SandboxError::AddrInUse { addr }
        } else {
            SandboxError::Listen { addr, source }
        }
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(LISTEN_BACKLOG).map_err(fail)
}

/// Controls a running sandbox. Clones share it; it stops when [`SandboxHandle::shutdown`] is
/// called or the last clone is dropped.
#[derive(Clone)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    scheme: &'static str,
    call_timeout: Duration,
    stop: Arc<StopOnDrop>,
}

struct StopOnDrop {
    cancel: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl SandboxHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://ADDR` (or `wss://`); charge points append `/<id>`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// Closes the listener and every connection (WebSocket close 1001), and returns once they are
    /// all gone. Calling it again does nothing.
    pub async fn shutdown(&self) {
        self.stop.cancel.cancel();
        let task = self
            .stop
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "sandbox CSMS accept task ended abnormally");
        }
    }

    /// Counts of what the sandbox has done so far.
    pub fn stats(&self) -> SandboxStats {
        self.shared.counters.snapshot()
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        Policy::clone(&self.shared.policy())
    }

    /// Changes the policy in place; later CALLs see the change.
    pub fn update_policy(&self, change: impl FnOnce(&mut Policy)) {
        let mut current = self.shared.policy_mut();
        change(Arc::make_mut(&mut current));
        // Published while the write lock is held, so a reader that sees the new version
        // reads the new policy.
        self.shared.policy_version.fetch_add(1, Ordering::Release);
    }

    /// The id the next StartTransaction will get (hand it to a restarted sandbox).
    pub fn peek_transaction_id(&self) -> i64 {
        self.shared.next_transaction.load(Ordering::SeqCst)
    }

    /// Charge point ids connected now.
    pub fn connected(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.conns().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Sends a CALL to a charge point and waits (up to the configured call timeout) for its
    /// CALLRESULT payload.
    pub async fn call(
        &self,
        cp_id: &str,
        action: &str,
        payload: Value,
    ) -> Result<Value, CallError> {
        self.call_with_timeout(cp_id, action, payload, self.call_timeout)
            .await
    }

    pub async fn call_with_timeout(
        &self,
        cp_id: &str,
        action: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let tx = self
            .shared
            .conns()
            .get(cp_id)
            .map(|c| c.tx.clone())
            .ok_or_else(|| CallError::NotConnected {
                cp_id: cp_id.to_string(),
            })?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let command = Command::Call(Box::new(OutgoingCall {
            action: action.to_string(),
            payload,
            reply: reply_tx,
        }));
        let disconnected = || CallError::Disconnected {
            cp_id: cp_id.to_string(),
            action: action.to_string(),
        };
        tx.send(command).await.map_err(|_| disconnected())?;
        match tokio::time::timeout(timeout, reply_rx).await {
            Err(_) => Err(CallError::Timeout {
                cp_id: cp_id.to_string(),
                action: action.to_string(),
                after: timeout,
            }),
            Ok(Err(_)) => Err(disconnected()),
            Ok(Ok(Ok(payload))) => Ok(payload),
            Ok(Ok(Err(error))) => Err(CallError::Rejected {
                cp_id: cp_id.to_string(),
                action: action.to_string(),
                error,
            }),
        }
    }

    /// Closes one charge point's connection (WebSocket close 1000); returns whether it was
    /// connected.
    pub async fn disconnect(&self, cp_id: &str) -> bool {
        let tx = self.shared.conns().get(cp_id).map(|c| c.tx.clone());
        match tx {
            Some(tx) => tx.send(Command::Close).await.is_ok(),
            None => false,
        }
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CsmsEvent> {
        self.shared.log.subscribe()
    }

    /// Every event still in the in-memory log, oldest first.
    pub fn events(&self) -> Vec<CsmsEvent> {
        self.shared.log.events()
    }

    /// Every frame exchanged with one charge point, in order, with its direction.
    pub fn frames(&self, cp_id: &str) -> Vec<(Direction, Frame)> {
        self.shared
            .log
            .events()
            .iter()
            .filter(|e| e.cp_id() == cp_id)
            .filter_map(|e| e.frame().map(|(d, f)| (d, f.clone())))
            .collect()
    }

    /// The CALL payloads one charge point sent with this action, in order.
    pub fn calls_from(&self, cp_id: &str, action: &str) -> Vec<Value> {
        self.frames(cp_id)
            .into_iter()
            .filter_map(|(d, f)| match f {
                Frame::Call {
                    action: a, payload, ..
                } if d == Direction::Received && a == action => Some(payload),
                _ => None,
            })
            .collect()
    }

    /// Position of the next event; see [`SandboxHandle::wait_for_from`].
    pub fn cursor(&self) -> usize {
        self.shared.log.cursor()
    }

    /// The first logged event (past or future) matching `pred`, waiting up to `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&CsmsEvent) -> bool,
        timeout: Duration,
    ) -> Result<CsmsEvent, WaitTimeout> {
        self.shared.log.wait_for_from(0, pred, timeout).await
    }

    /// The first event at or after `cursor` matching `pred`.
    pub async fn wait_for_from(
        &self,
        cursor: usize,
        pred: impl Fn(&CsmsEvent) -> bool,
        timeout: Duration,
    ) -> Result<CsmsEvent, WaitTimeout> {
        self.shared.log.wait_for_from(cursor, pred, timeout).await
    }

    /// Waits for a CALL with this action from this charge point (past or future).
    pub async fn wait_for_call(
        &self,
        cp_id: &str,
        action: &str,
        timeout: Duration,
    ) -> Result<CsmsEvent, WaitTimeout> {
        self.wait_for(|e| e.is_call_from(cp_id, action), timeout)
            .await
    }

    /// Waits until this charge point is connected (past or future connection).
    pub async fn wait_for_connection(
        &self,
        cp_id: &str,
        timeout: Duration,
    ) -> Result<CsmsEvent, WaitTimeout> {
        self.wait_for(
            |e| matches!(&e.kind, EventKind::Connected { cp_id: c, .. } if c == cp_id),
            timeout,
        )
        .await
    }
}

struct Shared {
    log: EventLog,
    /// The policy in force. Sessions keep a clone of the `Arc` and take the lock again only
    /// when `policy_version` has moved, so answering a CALL takes no shared lock.
    policy: RwLock<Arc<Policy>>,
    policy_version: AtomicU64,
    next_transaction: AtomicI64,
    next_message: AtomicU64,
    next_generation: AtomicU64,
    connections: Mutex<HashMap<String, Connection>>,
    passwords: HashMap<String, Secret>,
    require_basic_auth: bool,
    handshake_timeout: Duration,
    record_frames: bool,
    counters: Counters,
}

struct Connection {
    generation: u64,
    tx: mpsc::Sender<Command>,
}

enum Command {
    /// Boxed: the channel of every connection reserves a block of slots up front.
    Call(Box<OutgoingCall>),
    Close,
}

struct OutgoingCall {
    action: String,
    payload: Value,
    reply: oneshot::Sender<Result<Value, rpc::CallError>>,
}

impl Shared {
    fn new(opts: &SandboxOptions) -> Self {
        Self {
            log: EventLog::new(opts.log_capacity, opts.broadcast_capacity),
            policy: RwLock::new(Arc::new(opts.policy.clone())),
            policy_version: AtomicU64::new(0),
            next_transaction: AtomicI64::new(opts.first_transaction_id),
            next_message: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            passwords: opts.passwords.clone(),
            require_basic_auth: opts.require_basic_auth,
            handshake_timeout: opts.handshake_timeout,
            record_frames: opts.record_frames,
            counters: Counters::default(),
        }
    }

    /// Records a frame event unless frames are only counted.
    fn record_frame(&self, kind: impl FnOnce() -> EventKind) {
        if self.record_frames {
            self.log.push(kind());
        }
    }

    // The guarded data stays consistent if a holder panics (plain inserts and reads), so
    // poisoned locks are used as they are.
    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn policy_mut(&self) -> std::sync::RwLockWriteGuard<'_, Arc<Policy>> {
        self.policy.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy for a CALL: `cached` unless the policy changed since it was taken.
    fn current_policy(&self, cached: &mut (u64, Arc<Policy>)) -> Arc<Policy> {
        let version = self.policy_version.load(Ordering::Acquire);
        if cached.0 != version {
            *cached = (version, self.policy());
        }
        cached.1.clone()
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn message_id(&self) -> String {
        format!("csms-{}", self.next_message.fetch_add(1, Ordering::SeqCst))
    }
}

impl TransactionIds for Shared {
    fn next_transaction_id(&self) -> i64 {
        self.next_transaction.fetch_add(1, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Message;

    #[test]
    fn parses_basic_credentials() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("CP1:s3cret:with:colons")
        );
        let (user, password) = parse_basic(&header).unwrap_or_default();
        assert_eq!(user, "CP1");
        assert_eq!(password.expose(), "s3cret:with:colons");
        assert!(parse_basic("Bearer abc").is_none());
        assert!(parse_basic("Basic !!!").is_none());
    }

    #[test]
    fn decodes_percent_escapes_in_ids() {
        assert_eq!(percent_decode("CP%201"), "CP 1");
        assert_eq!(percent_decode("CP%2"), "CP%2");
        assert_eq!(percent_decode("plain"), "plain");
    }

    /// Runs one session over an in-memory stream, so the paused clock drives the delays.
    async fn session(policy: Policy) -> (Arc<Shared>, Ws<tokio::io::DuplexStream>) {
        let shared = Arc::new(Shared::new(&SandboxOptions {
            policy,
            ..SandboxOptions::default()
        }));
        let (server_end, client_end) = tokio::io::duplex(64 * 1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        tokio::spawn(serve(
            server_end,
            peer,
            false,
            shared.clone(),
            CancellationToken::new(),
        ));
        let (client, _) = tokio_tungstenite::client_async("ws://sandbox/CP1", client_end)
            .await
            .unwrap();
        (shared, client)
    }

    async fn next_frame(ws: &mut Ws<tokio::io::DuplexStream>) -> Frame {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Frame::parse(t.as_str()).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_answers_do_not_hold_up_others() {
        let mut policy = Policy::default();
        policy
            .delays
            .insert("DataTransfer".into(), Duration::from_secs(30));
        let (shared, mut ws) = session(policy).await;
        let started = tokio::time::Instant::now();
        ws.send(Message::text(r#"[2,"dt","DataTransfer",{"vendorId":"x"}]"#))
            .await
            .unwrap();
        ws.send(Message::text(r#"[2,"hb","Heartbeat",{}]"#))
            .await
            .unwrap();
        let first = next_frame(&mut ws).await;
        assert_eq!(first.id(), "hb");
        assert!(started.elapsed() < Duration::from_secs(30));
        let second = next_frame(&mut ws).await;
        assert_eq!(second.id(), "dt");
        assert!(started.elapsed() >= Duration::from_secs(30));
        // The log holds each frame once, in the order it went over the wire.
        let ids: Vec<String> = shared
            .log
            .events()
            .iter()
            .filter_map(|e| e.frame().map(|(d, f)| format!("{}:{}", d.as_str(), f.id())))
            .collect();
        assert_eq!(ids, ["received:dt", "received:hb", "sent:hb", "sent:dt"]);
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_actions_stay_unanswered() {
        let mut policy = Policy::default();
        policy.unanswered.insert("StatusNotification".into());
        let (_shared, mut ws) = session(policy).await;
        ws.send(Message::text(
            r#"[2,"sn","StatusNotification",{"connectorId":0,"errorCode":"NoError","status":"Available"}]"#,
        ))
        .await
        .unwrap();
        let silence = tokio::time::timeout(Duration::from_secs(3600), next_frame(&mut ws)).await;
        assert!(silence.is_err(), "answered: {silence:?}");
    }

    /// Every connection's task is allocated at the size of its future: keep it small.
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let shared = Arc::new(Shared::new(&SandboxOptions::default()));
        let task = handle_socket(tcp, addr, shared, None, CancellationToken::new());
        // About 1.4 KiB unoptimised (13 KiB with the TLS branch inline); release is smaller.
        assert!(
            std::mem::size_of_val(&task) < 2048,
            "{}",
            std::mem::size_of_val(&task)
        );
    }

    #[test]
    fn compares_passwords_fully() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
