//! The WebSocket server: one accept task, one task per charge point connection (the actor that
//! owns the socket), and a cloneable [`SandboxHandle`] to call charge points, change the policy,
//! observe and stop.

use super::events::{BasicAuthSeen, CsmsEvent, Direction, EventKind, EventLog, WaitTimeout};
use super::policy::{self, Policy, Reply, TransactionIds};
use crate::stack::rpc::{self, ErrorCode, Frame};
use crate::stack::secret::Secret;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{self, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;

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

    pub fn set_policy(&self, policy: Policy) {
        self.update_policy(|p| *p = policy);
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(handle_socket(tcp, peer, shared.clone(), tls.clone(), cancel.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        tracing::warn!(
                            error = %e,
                            connected = shared.counters.connected.load(Ordering::Relaxed),
                            "sandbox CSMS is out of file descriptors: the open-file limit \
                             (ulimit -n) is too low for this many charge points"
                        );
                    } else {
                        tracing::warn!(error = %e, "sandbox CSMS accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    tracing::info!("sandbox CSMS stopped");
}

async fn handle_socket(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    // Each branch is boxed: a task's allocation is its future's size, and inline the TLS
    // branch (the rustls handshake and the TLS session) would make every plain connection pay
    // for it too (about 13 KiB instead of 2).
    match tls {
        None => Box::pin(serve(tcp, peer, false, shared, cancel)).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(shared.handshake_timeout, Box::pin(acceptor.accept(tcp)));
            let stream = tokio::select! {
                _ = cancel.cancelled() => return,
                r = handshake => r,
            };
            match stream {
                Ok(Ok(stream)) => Box::pin(serve(stream, peer, true, shared, cancel)).await,
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// What the HTTP upgrade request carried.
struct Handshake {
    cp_id: String,
    path: String,
    subprotocol: Option<String>,
    offered: Vec<String>,
    basic_auth: Option<BasicAuthSeen>,
}

// The error type is tungstenite's handshake `Callback` contract.
#[allow(clippy::result_large_err)]
/// Decides the upgrade: answers the subprotocol, checks credentials. On refusal, records the
/// event and returns the HTTP error response.
fn check_request(
    shared: &Shared,
    peer: SocketAddr,
    request: &Request,
    mut response: Response,
) -> Result<(Handshake, Response), ErrorResponse> {
    let path = request.uri().path().to_string();
    let cp_id = path
        .rsplit('/')
        .find(|s| !s.is_empty())
        .map(percent_decode)
        .unwrap_or_default();
    let refuse = |status: StatusCode, reason: String, cp_id: &str| {
        Counters::add(&shared.counters.refused);
        shared.log.push(EventKind::Refused {
            cp_id: cp_id.to_string(),
            status: status.as_u16(),
            reason: reason.clone(),
            peer,
        });
        tracing::info!(%peer, cp_id, status = status.as_u16(), reason, "handshake refused");
        let mut builder = http::Response::builder().status(status);
        if status == StatusCode::UNAUTHORIZED {
            builder = builder.header("WWW-Authenticate", "Basic realm=\"OCPP\"");
        }
        let mut fallback = ErrorResponse::new(Some(reason.clone()));
        *fallback.status_mut() = status;
        builder.body(Some(reason)).unwrap_or(fallback)
    };
    if cp_id.is_empty() {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no charge point id in the path {path:?}"),
            "",
        ));
    }
    let offered: Vec<String> = request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let subprotocol = offered
        .iter()
        .find(|p| p.eq_ignore_ascii_case(SUBPROTOCOL))
        .cloned();
    if let Some(p) = &subprotocol
        && let Ok(value) = HeaderValue::from_str(p)
    {
        response
            .headers_mut()
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let credentials = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let basic_auth = credentials.as_ref().map(|(user, password)| BasicAuthSeen {
        user: user.clone(),
        password_ok: shared.passwords.get(&cp_id).map(|expected| {
            constant_time_eq(expected.expose().as_bytes(), password.expose().as_bytes())
        }),
    });
    if shared.require_basic_auth {
        match &basic_auth {
            None => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "HTTP Basic credentials required".into(),
                    &cp_id,
                ));
            }
            Some(seen) if seen.password_ok == Some(false) => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    format!("wrong password for user {:?}", seen.user),
                    &cp_id,
                ));
            }
            Some(_) => {}
        }
    }
    Ok((
        Handshake {
            cp_id,
            path,
            subprotocol,
            offered,
            basic_auth,
        },
        response,
    ))
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(header: &str) -> Option<(String, Secret)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    // The password may be arbitrary bytes (OCPP AuthorizationKey as bytes); compare it as text
    // after a lossless-enough conversion.
    let text = String::from_utf8_lossy(&decoded);
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), Secret::new(password)))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = segment.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// The callback's error type is tungstenite's `ErrorResponse`.
#[allow(clippy::result_large_err)]
async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut handshake = None;
    let callback = |request: &Request, response: Response| {
        let (seen, response) = check_request(&shared, peer, request, response)?;
        handshake = Some(seen);
        Ok(response)
    };
    let accept = tokio::time::timeout(
        shared.handshake_timeout,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(websocket_config())),
    );
    let ws = tokio::select! {
        _ = cancel.cancelled() => return,
        r = accept => r,
    };
    let mut ws = match ws {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "WebSocket handshake timed out");
            return;
        }
    };
    let Some(handshake) = handshake else {
        return;
    };
    let cp_id = handshake.cp_id.clone();
    let (tx, rx) = mpsc::channel(64);
    let generation = shared.next_generation.fetch_add(1, Ordering::SeqCst);
    let replaced = shared
        .conns()
        .insert(cp_id.clone(), Connection { generation, tx });
    if let Some(old) = replaced {
        // The old connection's command channel closes with it; it then closes its socket.
        drop(old);
        tracing::info!(cp_id, "a new connection replaces the previous one");
    }
    if handshake.subprotocol.is_none() {
        tracing::warn!(cp_id, offered = ?handshake.offered, "charge point did not offer subprotocol ocpp1.6");
    }
    tracing::info!(cp_id, %peer, tls, "charge point connected");
    Counters::add(&shared.counters.connections);
    Counters::add(&shared.counters.connected);
    shared.log.push(EventKind::Connected {
        cp_id: cp_id.clone(),
        path: handshake.path,
        subprotocol: handshake.subprotocol,
        offered_subprotocols: handshake.offered,
        basic_auth: handshake.basic_auth,
        tls,
        peer,
    });
    let reason = Session {
        cp_id: cp_id.clone(),
        shared: shared.clone(),
        pending: HashMap::new(),
        policy: (u64::MAX, Arc::default()),
    }
    .run(&mut ws, rx, &cancel)
    .await;
    {
        let mut conns = shared.conns();
        if conns
            .get(&cp_id)
            .is_some_and(|c| c.generation == generation)
        {
            conns.remove(&cp_id);
        }
    }
    tracing::info!(cp_id, reason, "charge point disconnected");
    shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
    shared.log.push(EventKind::Disconnected { cp_id, reason });
}

/// One charge point connection.
struct Session {
    cp_id: String,
    shared: Arc<Shared>,
    /// Sandbox CALLs awaiting the charge point's answer: id → (action, reply).
    pending: HashMap<String, (String, oneshot::Sender<Result<Value, rpc::CallError>>)>,
    /// The policy last used and its version.
    policy: (u64, Arc<Policy>),
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

type DelayedAnswer = (Frame, Option<String>);

/// Delayed answers come back to the session through a channel, so the read loop never sleeps.
/// The channel is made on the first delayed answer: most connections never need one.
#[derive(Default)]
struct Later {
    tx: Option<mpsc::UnboundedSender<DelayedAnswer>>,
    rx: Option<mpsc::UnboundedReceiver<DelayedAnswer>>,
}

impl Later {
    fn sender(&mut self) -> mpsc::UnboundedSender<DelayedAnswer> {
        if let Some(tx) = &self.tx {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.rx = Some(rx);
        self.tx.insert(tx).clone()
    }

    async fn recv(&mut self) -> Option<DelayedAnswer> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }
}

impl Session {
    /// Serves until the connection ends; returns why it ended.
    async fn run<S>(
        mut self,
        ws: &mut Ws<S>,
        mut commands: mpsc::Receiver<Command>,
        cancel: &CancellationToken,
    ) -> String
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut later = Later::default();
        // The charge point's close frame, reported when the stream ends.
        let mut closed_by_peer: Option<String> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    close(ws, CloseCode::Away, "sandbox CSMS shutting down").await;
                    return "sandbox CSMS shutting down".into();
                }
                command = commands.recv() => match command {
                    Some(Command::Call(call)) => {
                        let OutgoingCall { action, payload, reply } = *call;
                        let id = self.shared.message_id();
                        let frame = Frame::Call { id: id.clone(), action: action.clone(), payload };
                        self.pending.retain(|_, (_, r)| !r.is_closed());
                        self.pending.insert(id, (action.clone(), reply));
                        if let Err(e) = self.send(ws, frame, Some(action)).await {
                            return format!("send failed: {e}");
                        }
                    }
                    Some(Command::Close) => {
                        close(ws, CloseCode::Normal, "closed by the sandbox CSMS").await;
                        return "closed by the sandbox CSMS".into();
                    }
                    None => {
                        close(ws, CloseCode::Normal, "replaced by a newer connection").await;
                        return "replaced by a newer connection".into();
                    }
                },
                Some((frame, action)) = later.recv() => {
                    if let Err(e) = self.send(ws, frame, action).await {
                        return format!("send failed: {e}");
                    }
                }
                message = ws.next() => match message {
                    None => {
                        return closed_by_peer
                            .unwrap_or_else(|| "connection closed without a close frame".into());
                    }
                    Some(Err(e)) => return format!("connection error: {e}"),
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = self.on_text(ws, text.as_str(), &mut later).await {
                            return format!("send failed: {e}");
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        let error = rpc::CallError::new(
                            ErrorCode::FormationViolation,
                            format!("binary message of {} bytes; OCPP-J uses text messages", bytes.len()),
                        );
                        Counters::add(&self.shared.counters.invalid);
                        self.shared.record_frame(|| EventKind::Invalid {
                            cp_id: self.cp_id.clone(),
                            text: String::from_utf8_lossy(&bytes).into_owned(),
                            error,
                        });
                    }
                    Some(Ok(Message::Close(frame))) => {
                        tracing::debug!(cp_id = self.cp_id, ?frame, "close from charge point");
                        closed_by_peer = Some(match frame {
                            Some(f) if f.reason.is_empty() => {
                                format!("closed by the charge point (code {})", u16::from(f.code))
                            }
                            Some(f) => format!(
                                "closed by the charge point (code {}: {})",
                                u16::from(f.code),
                                f.reason
                            ),
                            None => "closed by the charge point".into(),
                        });
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    async fn on_text<S>(
        &mut self,
        ws: &mut Ws<S>,
        text: &str,
        later: &mut Later,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let frame = match Frame::parse(text) {
            Ok(frame) => frame,
            Err(bad) => {
                tracing::info!(cp_id = self.cp_id, error = %bad, "invalid OCPP-J message");
                Counters::add(&self.shared.counters.invalid);
                self.shared.record_frame(|| EventKind::Invalid {
                    cp_id: self.cp_id.clone(),
                    text: text.to_string(),
                    error: bad.error.clone(),
                });
                if let Some(reply) = bad.reply() {
                    Counters::add(&self.shared.counters.call_errors_sent);
                    self.send(ws, reply, None).await?;
                }
                return Ok(());
            }
        };
        Counters::add(&self.shared.counters.frames_received);
        match frame {
            Frame::Call {
                ref id,
                ref action,
                ref payload,
            } => {
                let (id, action) = (id.clone(), action.clone());
                let reply = {
                    let policy = self.shared.current_policy(&mut self.policy);
                    policy::reply(
                        &policy,
                        self.shared.as_ref(),
                        chrono::Utc::now(),
                        &action,
                        payload,
                    )
                };
                self.shared.record_frame(|| EventKind::Received {
                    cp_id: self.cp_id.clone(),
                    frame,
                    action: Some(action.clone()),
                });
                match reply {
                    Reply::Silence => {
                        tracing::info!(cp_id = self.cp_id, action, id, "not answering (policy)");
                    }
                    Reply::Answer { delay, result } => {
                        let counters = &self.shared.counters;
                        match &result {
                            Err(_) => Counters::add(&counters.call_errors_sent),
                            Ok(answer) if action == "BootNotification" => {
                                if answer["status"] == "Accepted" {
                                    Counters::add(&counters.boots_accepted);
                                } else {
                                    Counters::add(&counters.boots_not_accepted);
                                }
                            }
                            Ok(_) => {}
                        }
                        let answer = match result {
                            Ok(payload) => Frame::CallResult { id, payload },
                            Err(error) => Frame::CallError { id, error },
                        };
                        if delay.is_zero() {
                            self.send(ws, answer, Some(action)).await?;
                        } else {
                            let later = later.sender();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                // The session may be gone by now; then the answer is moot.
                                let _ = later.send((answer, Some(action)));
                            });
                        }
                    }
                }
            }
            Frame::CallResult {
                ref id,
                ref payload,
            } => {
                let pending = self.pending.remove(id);
                let action = pending.as_ref().map(|(a, _)| a.clone());
                if pending.is_none() {
                    tracing::warn!(cp_id = self.cp_id, id, "CALLRESULT for no pending CALL");
                }
                let payload = payload.clone();
                self.shared.record_frame(|| EventKind::Received {
                    cp_id: self.cp_id.clone(),
                    frame,
                    action,
                });
                if let Some((_, reply)) = pending {
                    // The caller may have timed out.
                    let _ = reply.send(Ok(payload));
                }
            }
            Frame::CallError { ref id, ref error } => {
                let pending = self.pending.remove(id);
                let action = pending.as_ref().map(|(a, _)| a.clone());
                let error = error.clone();
                self.shared.record_frame(|| EventKind::Received {
                    cp_id: self.cp_id.clone(),
                    frame,
                    action,
                });
                if let Some((_, reply)) = pending {
                    let _ = reply.send(Err(error));
                }
            }
        }
        Ok(())
    }

    async fn send<S>(
        &self,
        ws: &mut Ws<S>,
        frame: Frame,
        action: Option<String>,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        ws.send(Message::text(frame.to_text())).await?;
        Counters::add(&self.shared.counters.frames_sent);
        self.shared.record_frame(|| EventKind::Sent {
            cp_id: self.cp_id.clone(),
            frame,
            action,
        });
        Ok(())
    }
}

async fn close<S>(ws: &mut Ws<S>, code: CloseCode, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let closing = async {
        ws.send(Message::Close(Some(frame))).await?;
        // Wait for the peer's close so the close handshake completes, briefly.
        while let Some(msg) = ws.next().await {
            msg?;
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), closing).await {
        tracing::debug!(error = %e, "closing the WebSocket");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
