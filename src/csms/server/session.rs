//! Connections: the accept loop, the TLS handshake, and one task per charge point that owns
//! its WebSocket, answers its CALLs by the policy, and carries the sandbox's own CALLs to it.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::handshake::check_request;
use super::{Command, Connection, Counters, OutgoingCall, Shared, websocket_config};
use crate::csms::events::EventKind;
use crate::csms::policy::{self, Policy, Reply};
use crate::stack::rpc::{self, ErrorCode, Frame};

pub(super) async fn accept_loop(
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

pub(super) async fn handle_socket(
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

// The callback's error type is tungstenite's `ErrorResponse`.
#[allow(clippy::result_large_err)]
pub(super) async fn serve<S>(
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
pub(super) struct Session {
    cp_id: String,
    shared: Arc<Shared>,
    /// Sandbox CALLs awaiting the charge point's answer: id → (action, reply).
    pending: HashMap<String, (String, oneshot::Sender<Result<Value, rpc::CallError>>)>,
    /// The policy last used and its version.
    policy: (u64, Arc<Policy>),
}

pub(super) type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

pub(super) type DelayedAnswer = (Frame, Option<String>);

/// Delayed answers come back to the session through a channel, so the read loop never sleeps.
/// The channel is made on the first delayed answer: most connections never need one.
#[derive(Default)]
pub(super) struct Later {
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

pub(super) async fn close<S>(ws: &mut Ws<S>, code: CloseCode, reason: &'static str)
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
