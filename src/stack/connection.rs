//! The connection task: owns the WebSocket, reconnects with exponential backoff and jitter,
//! sends WebSocket pings at WebSocketPingInterval, and relays text frames both ways. The charge
//! point core never touches the socket; it sees [`ConnEvent`]s and sends text through a channel.

use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::transport::{self, Endpoint, Incoming};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// What the core asks of the connection.
#[derive(Debug)]
pub enum ConnCtl {
    /// Connect (or reconnect now) to this endpoint; keep retrying with backoff.
    Connect {
        endpoint: Endpoint,
        ping_interval: Duration,
    },
    /// Change the ping interval of the open connection.
    SetPingInterval(Duration),
    /// Close the connection and stop trying.
    Disconnect,
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
    /// A connection attempt failed; the task retries after `retry_in`.
    ConnectFailed {
        error: String,
        auth_failure: bool,
        retry_in: Duration,
        attempt: u32,
    },
    Text(String),
    Disconnected {
        reason: String,
    },
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

/// Runs until `ctl` closes. `handshake_timeout` bounds each connection attempt.
pub async fn run(
    mut ctl: mpsc::Receiver<ConnCtl>,
    events: mpsc::Sender<ConnEvent>,
    mut outgoing: mpsc::Receiver<String>,
    backoff: Backoff,
    handshake_timeout: Duration,
) {
    let mut target: Option<(Endpoint, Duration)> = None;
    let mut attempt: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    let mut network_up = true;
    loop {
        // Not connected: wait for a target (and a network) or for the retry time.
        let target_now = target.clone().filter(|_| network_up);
        let Some((endpoint, ping)) = target_now else {
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
                Some(ConnCtl::SetPingInterval(_)) | Some(ConnCtl::Disconnect) => continue,
                None => return,
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
                        Some(ConnCtl::Disconnect) => { target = None; retry_at = None; }
                        Some(ConnCtl::Network { up }) => { network_up = up; attempt = 0; retry_at = None; }
                        None => return,
                    }
                    continue;
                }
            }
        }
        // Drop anything queued for a previous connection: the core resends what matters.
        while outgoing.try_recv().is_ok() {}
        attempt += 1;
        let mut socket = match transport::connect(&endpoint, handshake_timeout).await {
            Ok(s) => s,
            Err(e) => {
                let retry_in = backoff.delay(attempt);
                retry_at = Some(Instant::now() + retry_in);
                if events
                    .send(ConnEvent::ConnectFailed {
                        error: e.to_string(),
                        auth_failure: e.is_auth_failure(),
                        retry_in,
                        attempt,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        attempt = 0;
        let url = endpoint.url().unwrap_or_default();
        if events.send(ConnEvent::Connected { url }).await.is_err() {
            return;
        }
        let mut ping_every = ping;
        let mut next_ping = (!ping_every.is_zero()).then(|| Instant::now() + ping_every);
        let (reason, immediate) = loop {
            let ping_at = next_ping;
            tokio::select! {
                // Outgoing first, so that an answer queued before a disconnect still leaves.
                biased;
                out = outgoing.recv() => match out {
                    Some(text) => {
                        if let Err(e) = transport::send_text(&mut socket, text).await {
                            break (format!("send failed: {e}"), false);
                        }
                    }
                    None => { let _ = socket.close(None).await; return; }
                },
                incoming = transport::next_incoming(&mut socket) => match incoming {
                    Incoming::Text(t) => {
                        if events.send(ConnEvent::Text(t)).await.is_err() { return; }
                    }
                    Incoming::Closed(reason) => break (reason, false),
                },
                _ = async { if let Some(at) = ping_at { sleep_until(at).await } else { std::future::pending().await } } => {
                    if let Err(e) = socket.send(Message::Ping(Vec::new().into())).await {
                        break (format!("ping failed: {e}"), false);
                    }
                    next_ping = Some(Instant::now() + ping_every);
                }
                msg = ctl.recv() => match msg {
                    Some(ConnCtl::Connect { endpoint, ping_interval }) => {
                        let _ = socket.close(None).await;
                        target = Some((endpoint, ping_interval));
                        break ("reconnecting with new settings".to_string(), true);
                    }
                    Some(ConnCtl::SetPingInterval(p)) => {
                        ping_every = p;
                        if let Some(t) = target.as_mut() { t.1 = p; }
                        next_ping = (!p.is_zero()).then(|| Instant::now() + p);
                    }
                    Some(ConnCtl::Disconnect) => {
                        let _ = socket.close(None).await;
                        target = None;
                        break ("disconnected".to_string(), true);
                    }
                    Some(ConnCtl::Network { up: false }) => {
                        // The socket is dropped below without a close frame.
                        network_up = false;
                        break ("network lost".to_string(), false);
                    }
                    Some(ConnCtl::Network { up: true }) => {}
                    None => { let _ = socket.close(None).await; return; }
                },
            }
        };
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
