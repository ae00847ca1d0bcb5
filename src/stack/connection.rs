//! The connection task: owns the WebSocket, reconnects with exponential backoff and jitter,
//! sends WebSocket pings at WebSocketPingInterval and drops a connection that stopped answering
//! them, and relays text frames both ways. The charge point core never touches the socket; it
//! sees [`ConnEvent`]s and sends text through a channel.
//!
//! Closing is always a WebSocket close handshake with a status code: what the core queued goes
//! out first, then the close frame, then the task keeps reading (and discarding) until the
//! CSMS's close or [`transport::CLOSE_LINGER`], so nothing the charger sent is lost to a reset
//! connection.

use futures_util::SinkExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

use super::transport::{self, ConnectFailure, Endpoint, Incoming};

/// Why the charger closes its connection; each reason has its WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// 1000, normal closure (new connection settings, an explicit disconnect).
    Normal,
    /// 1001, going away: the charger shuts down.
    Shutdown,
    /// 1012, service restart: the charger reboots (Reset, firmware install, service port).
    Reboot,
}

impl Closing {
    /// The WebSocket close code (RFC 6455 section 7.4, 1012 from the IANA registry).
    pub fn code(self) -> u16 {
        match self {
            Closing::Normal => 1000,
            Closing::Shutdown => 1001,
            Closing::Reboot => 1012,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Closing::Normal => "closing",
            Closing::Shutdown => "shutting down",
            Closing::Reboot => "rebooting",
        }
    }
}

/// What the core asks of the connection.
#[derive(Debug)]
pub enum ConnCtl {
    /// Connect (or reconnect now) to this endpoint; keep retrying with backoff. (Boxed: the
    /// channel's slots are as large as its largest message, and this one is rare.)
    Connect {
        endpoint: Box<Endpoint>,
        ping_interval: Duration,
    },
    /// Change the ping interval of the open connection.
    SetPingInterval(Duration),
    /// Close the connection (normal closure, 1000) and stop trying.
    Disconnect,
    /// Deliver everything queued on the outgoing channel, close the connection with the code of
    /// `Closing`, wait (bounded) for the CSMS's close, and end the task.
    Close(Closing),
    /// The network went away (`up: false`: drop the connection without a close frame and make
    /// no attempts) or came back (`up: true`: connect at once).
    Network { up: bool },
}

/// What the connection tells the core.
#[derive(Debug)]
pub enum ConnEvent {
    Connected {
        url: String,
    },
    /// A connection attempt failed; the task retries after `retry_in`. (Boxed: the channel's
    /// slots are as large as its largest message.)
    ConnectFailed(Box<FailedAttempt>),
    Text(String),
    Disconnected {
        reason: String,
    },
}

/// A failed connection attempt, as [`ConnEvent::ConnectFailed`] reports it.
#[derive(Debug)]
pub struct FailedAttempt {
    /// What failed, for people (never carries credentials).
    pub error: String,
    /// What failed, for programs.
    pub kind: ConnectFailure,
    /// The HTTP status of a refused WebSocket upgrade.
    pub http_status: Option<u16>,
    pub auth_failure: bool,
    pub retry_in: Duration,
    pub attempt: u32,
}

/// Reconnect backoff: 1 s doubling to 60 s, with up to 25 % random jitter so a fleet that lost
/// its CSMS does not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let jitter = rand::random_range(0.0..0.25);
        base.mul_f64(1.0 + jitter).min(self.max.mul_f64(1.25))
    }
}

/// Bound on one write to the socket; a CSMS that reads nothing for this long is gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection is dropped when nothing (a pong, a frame) was heard from the CSMS for this many
/// ping intervals.
const SILENT_PINGS: u32 = 2;

/// Runs until `ctl` closes. `handshake_timeout` bounds each connection attempt.
pub async fn run(
    mut ctl: mpsc::Receiver<ConnCtl>,
    events: mpsc::Sender<ConnEvent>,
    mut outgoing: mpsc::Receiver<String>,
    backoff: Backoff,
    handshake_timeout: Duration,
) {
    let mut target: Option<(Box<Endpoint>, Duration)> = None;
    let mut attempt: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    let mut network_up = true;
    loop {
        // Not connected: wait for a target (and a network) or for the retry time.
        let Some((endpoint, ping)) = target.clone().filter(|_| network_up) else {
            match ctl.recv().await {
                Some(ConnCtl::Connect {
                    endpoint,
                    ping_interval,
                }) => {
                    target = Some((endpoint, ping_interval));
                    attempt = 0;
                    retry_at = None;
                    continue;
                }
                Some(ConnCtl::Network { up }) => {
                    network_up = up;
                    attempt = 0;
                    retry_at = None;
                    continue;
                }
                Some(ConnCtl::SetPingInterval(_) | ConnCtl::Disconnect) => continue,
                Some(ConnCtl::Close(_)) | None => return,
            }
        };
        if let Some(at) = retry_at {
            tokio::select! {
                _ = sleep_until(at) => { retry_at = None; }
                msg = ctl.recv() => {
                    match msg {
                        Some(ConnCtl::Connect { endpoint, ping_interval }) => {
                            target = Some((endpoint, ping_interval));
                            attempt = 0;
                            retry_at = None;
                        }
                        Some(ConnCtl::SetPingInterval(p)) => {
                            if let Some(t) = target.as_mut() { t.1 = p; }
                        }
                        Some(ConnCtl::Disconnect) => {
                            target = None;
                            retry_at = None;
                        }
                        Some(ConnCtl::Network { up }) => {
                            network_up = up;
                            attempt = 0;
                            retry_at = None;
                        }
                        Some(ConnCtl::Close(_)) | None => return,
                    }
                    continue;
                }
            }
        }
        // Drop anything queued for a previous connection: the core resends what matters.
        while outgoing.try_recv().is_ok() {}
        attempt += 1;
        // Boxed: the task's future would otherwise keep room for the handshake's state (TLS
        // included) for the whole life of the connection.
        let mut socket = match Box::pin(transport::connect(&endpoint, handshake_timeout)).await {
            Ok(s) => s,
            Err(e) => {
                let retry_in = backoff.delay(attempt);
                retry_at = Some(Instant::now() + retry_in);
                if events
                    .send(ConnEvent::ConnectFailed(Box::new(FailedAttempt {
                        error: e.to_string(),
                        kind: e.kind(),
                        http_status: e.http_status(),
                        auth_failure: e.is_auth_failure(),
                        retry_in,
                        attempt,
                    })))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        attempt = 0;
        let url = endpoint
            .url()
            .map(|u| transport::shown_url(&u))
            .unwrap_or_default();
        if events.send(ConnEvent::Connected { url }).await.is_err() {
            return;
        }
        let mut ping_every = ping;
        let mut next_ping = (!ping_every.is_zero()).then(|| Instant::now() + ping_every);
        let mut last_heard = Instant::now();
        let (reason, immediate) = loop {
            let ping_at = next_ping;
            tokio::select! {
                // Outgoing first, so that an answer queued before a disconnect still leaves; then
                // commands, so a close is not starved by a CSMS that floods the connection.
                biased;
                out = outgoing.recv() => match out {
                    Some(text) => {
                        match Box::pin(timeout(SEND_TIMEOUT, transport::send_text(&mut socket, text))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => break (format!("send failed: {e}"), false),
                            Err(_) => break (
                                format!("send failed: the CSMS read nothing for {} s", SEND_TIMEOUT.as_secs()),
                                false,
                            ),
                        }
                    }
                    None => {
                        Box::pin(close(&mut socket, Closing::Shutdown, false)).await;
                        return;
                    }
                },
                msg = ctl.recv() => match msg {
                    Some(ConnCtl::Connect { endpoint, ping_interval }) => {
                        Box::pin(flush_queued(&mut socket, &mut outgoing)).await;
                        Box::pin(close(&mut socket, Closing::Normal, false)).await;
                        target = Some((endpoint, ping_interval));
                        break ("reconnecting with new settings".to_string(), true);
                    }
                    Some(ConnCtl::SetPingInterval(p)) => {
                        ping_every = p;
                        if let Some(t) = target.as_mut() { t.1 = p; }
                        next_ping = (!p.is_zero()).then(|| Instant::now() + p);
                    }
                    Some(ConnCtl::Disconnect) => {
                        Box::pin(flush_queued(&mut socket, &mut outgoing)).await;
                        Box::pin(close(&mut socket, Closing::Normal, false)).await;
                        target = None;
                        break ("disconnected".to_string(), true);
                    }
                    Some(ConnCtl::Network { up: false }) => {
                        // The socket is dropped below without a close frame.
                        network_up = false;
                        break ("network lost".to_string(), false);
                    }
                    Some(ConnCtl::Network { up: true }) => {}
                    Some(ConnCtl::Close(closing)) => {
                        Box::pin(flush_queued(&mut socket, &mut outgoing)).await;
                        Box::pin(close(&mut socket, closing, false)).await;
                        let reason = format!("closed by the charger ({})", closing.code());
                        let _ = events.send(ConnEvent::Disconnected { reason }).await;
                        return;
                    }
                    None => {
                        Box::pin(flush_queued(&mut socket, &mut outgoing)).await;
                        Box::pin(close(&mut socket, Closing::Shutdown, false)).await;
                        return;
                    }
                },
                incoming = transport::next_incoming(&mut socket) => {
                    last_heard = Instant::now();
                    match incoming {
                        Incoming::Text(t) => {
                            if events.send(ConnEvent::Text(t)).await.is_err() {
                                Box::pin(close(&mut socket, Closing::Shutdown, false)).await;
                                return;
                            }
                        }
                        Incoming::Heard => {}
                        Incoming::Closed(reason) => {
                            // tungstenite answered a close frame already; read what is left.
                            Box::pin(transport::close(&mut socket, 1000, "", transport::CLOSE_LINGER, false)).await;
                            break (reason, false);
                        }
                        Incoming::Violation { code, reason } => {
                            tracing::warn!(code, reason, "closing the connection: the CSMS broke a WebSocket rule");
                            Box::pin(transport::close(&mut socket, code, &reason, transport::CLOSE_LINGER, true)).await;
                            break (format!("closed by the charger ({code}): {reason}"), false);
                        }
                    }
                }
                _ = async { if let Some(at) = ping_at { sleep_until(at).await } else { std::future::pending().await } } => {
                    let silent = Instant::now().saturating_duration_since(last_heard);
                    if silent > ping_every * SILENT_PINGS {
                        let reason = format!(
                            "nothing heard from the CSMS for {} s (no answer to pings)",
                            silent.as_secs()
                        );
                        // A dead peer would not read a close frame: drop the connection.
                        break (reason, false);
                    }
                    match Box::pin(timeout(SEND_TIMEOUT, socket.send(Message::Ping(Vec::new().into())))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break (format!("ping failed: {e}"), false),
                        Err(_) => break ("ping failed: the CSMS read nothing".to_string(), false),
                    }
                    next_ping = Some(Instant::now() + ping_every);
                }
            }
        };
        drop(socket);
        if events
            .send(ConnEvent::Disconnected { reason })
            .await
            .is_err()
        {
            return;
        }
        if immediate {
            attempt = 0;
            retry_at = None;
        } else if target.is_some() {
            // A dropped connection is retried promptly, then with backoff.
            attempt = 1;
            retry_at = Some(Instant::now() + backoff.delay(1));
        }
    }
}

/// Bound on delivering what is queued before a close (a CSMS that reads nothing gets the close
/// frame, or nothing, after this).
const FLUSH_BEFORE_CLOSE: Duration = Duration::from_secs(1);

/// Sends what the core has already queued (answers included) before a close, within
/// [`FLUSH_BEFORE_CLOSE`].
async fn flush_queued(socket: &mut transport::Socket, outgoing: &mut mpsc::Receiver<String>) {
    let deadline = Instant::now() + FLUSH_BEFORE_CLOSE;
    let mut queued = false;
    while let Ok(text) = outgoing.try_recv() {
        queued = true;
        match tokio::time::timeout_at(deadline, socket.feed(Message::text(text))).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    if queued {
        let _ = tokio::time::timeout_at(deadline, socket.flush()).await;
    }
}

async fn close(socket: &mut transport::Socket, closing: Closing, raw: bool) {
    let outcome = transport::close(
        socket,
        closing.code(),
        closing.reason(),
        transport::CLOSE_LINGER,
        raw,
    )
    .await;
    tracing::debug!(code = closing.code(), ?outcome, "connection closed");
}

/// How long [`shut_down`] waits for the connection task: delivering what was queued, then the
/// close linger, and a margin.
pub const SHUTDOWN_WAIT: Duration = Duration::from_millis(4500);

/// Ends a charge point's connection task for good: asks it to deliver what is queued on
/// `outgoing` and close with the code of `closing`, then waits for it (at most
/// [`SHUTDOWN_WAIT`]) while draining `events`, so the task never waits on a core that stopped
/// reading. Frames that still arrive are dropped unanswered.
pub async fn shut_down(
    ctl: mpsc::Sender<ConnCtl>,
    outgoing: mpsc::Sender<String>,
    events: &mut mpsc::Receiver<ConnEvent>,
    task: &mut tokio::task::JoinHandle<()>,
    closing: Closing,
) {
    let _ = ctl.send(ConnCtl::Close(closing)).await;
    let wait = async {
        loop {
            tokio::select! {
                _ = &mut *task => return,
                ev = events.recv() => if ev.is_none() {
                    let _ = (&mut *task).await;
                    return;
                },
            }
        }
    };
    if timeout(SHUTDOWN_WAIT, wait).await.is_err() {
        task.abort();
    }
    drop(ctl);
    drop(outgoing);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff::default();
        let d1 = b.delay(1);
        assert!(d1 >= Duration::from_secs(1) && d1 <= Duration::from_millis(1250));
        let d3 = b.delay(3);
        assert!(d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(5));
        let d20 = b.delay(20);
        assert!(d20 >= Duration::from_secs(60) && d20 <= Duration::from_secs(75));
    }
}
