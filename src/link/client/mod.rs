//! The tool side of the service link: an actor owns the port and serves a cloneable
//! [`Client`] handle. Requests are matched by id and retransmitted on silence; log records,
//! console text and connection changes flow as events; a lost port is reopened, by path or by
//! the charger's serial number when it re-enumerates elsewhere.
//!
//! - this file: the handle and its requests;
//! - `actor`: the task that owns the line, with reconnecting as one of its states;
//! - `io`: the reader and writer tasks of an open port, and the HELLO handshake;
//! - `reconnect`: the search for the charger after the port went away;
//! - `logs`: log subscriptions; `flash` and `window`: firmware transfer.

mod actor;
mod flash;
mod io;
mod logs;
mod reconnect;
mod window;

pub use flash::{FlashOptions, FlashPhase, FlashProgress, FlashReport};
pub use logs::{LogEvent, LogStream};

pub(crate) use logs::decode_log_event;

use super::codec::{ConfigRead, Dec, DeviceHello, Identity, Request, SetOutcome, status};
use super::error::{Error, Result};
use super::frame::Stats;
use super::ports::{PortLister, SystemPorts};
use crate::stack::logbook::Level;
use actor::{Actor, Cmd, Parts, Settings};
use futures_util::StreamExt;
use io::{Greeting, handshake};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Duration;

/// Commands queued for the actor.
const COMMAND_QUEUE: usize = 256;
/// Console and connection events kept for slow subscribers.
const EVENT_QUEUE: usize = 256;
/// Configuration writes in flight at once.
const CONFIG_SET_PIPELINE: usize = 8;
/// Log items buffered for a subscriber before the charger's own drop counting takes over.
const LOG_QUEUE: usize = 8192;

/// Tool-side tuning.
#[derive(Clone)]
pub struct ClientOptions {
    /// Longest wait for one answer, retransmissions included.
    pub timeout: Duration,
    /// Silence after which a request is sent again (doubles each time, up to 2 s).
    pub retry: Duration,
    /// HELLO attempts before "does not answer".
    pub hello_attempts: u32,
    /// Wait for the first HELLO answer (grows with each attempt).
    pub hello_timeout: Duration,
    /// How long to look for the charger again after the port went away.
    pub reconnect_timeout: Duration,
    /// Where to look for the charger when its port path disappears.
    pub lister: Arc<dyn PortLister>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(5),
            retry: Duration::from_millis(300),
            hello_attempts: 7,
            hello_timeout: Duration::from_millis(200),
            reconnect_timeout: Duration::from_secs(15),
            lister: Arc::new(SystemPorts),
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("hello_attempts", &self.hello_attempts)
            .field("reconnect_timeout", &self.reconnect_timeout)
            .finish()
    }
}

/// Something that happened on the link, for a console pane or a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Printable bytes that were not frames (boot banner, console output).
    Console(String),
    Disconnected {
        reason: String,
    },
    Reconnected {
        port: String,
    },
}

/// Handle to the link actor. Cheap to clone; the actor stops when the last handle is dropped.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Cmd>,
    hello: Arc<Mutex<DeviceHello>>,
    events: broadcast::Sender<LinkEvent>,
    timeout: Duration,
    /// The rate the port was opened at.
    baud: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("hello", &self.hello())
            .finish()
    }
}

impl Client {
    /// Opens `port` (device path or `tcp://HOST:PORT`) and greets the charger.
    pub async fn connect(port: &str, baud: u32, opts: ClientOptions) -> Result<Client> {
        let session = rand::random::<u64>() | 1;
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let (conn, hello) = handshake(Greeting {
            port,
            baud,
            session,
            attempts: opts.hello_attempts,
            hello_timeout: opts.hello_timeout,
            stats: &stats,
            events: &events,
        })
        .await?;
        tracing::debug!(target: "link", port, serial = %hello.serial_number, "connected");
        let serial = hello.serial_number.clone();
        let hello = Arc::new(Mutex::new(hello));
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let settings = Settings {
            port: port.to_string(),
            baud,
            session,
            serial,
            retry: opts.retry,
            hello_timeout: opts.hello_timeout,
            reconnect_timeout: opts.reconnect_timeout,
            lister: opts.lister.clone(),
        };
        let actor = Actor::new(settings, conn, events.clone(), hello.clone(), stats);
        tokio::spawn(actor.run(rx));
        Ok(Client {
            tx,
            hello,
            events,
            timeout: opts.timeout,
            baud,
        })
    }

    /// What the charger said in its last HELLO.
    pub fn hello(&self) -> DeviceHello {
        self.hello
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Console text and connection changes.
    pub fn events(&self) -> broadcast::Receiver<LinkEvent> {
        self.events.subscribe()
    }

    /// Frame counters of the current connection.
    pub async fn stats(&self) -> Result<Stats> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Stats { reply }).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    async fn cmd(&self, c: Cmd) -> Result<()> {
        self.tx.send(c).await.map_err(|_| Error::Closed)
    }

    async fn request_with(&self, req: &Request, timeout: Duration) -> Result<Parts> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Request {
            body: req.encode(),
            timeout,
            reply,
        })
        .await?;
        let parts = rx.await.map_err(|_| Error::Closed)??;
        match parts.first() {
            Some((status::OK, _)) => Ok(parts),
            Some((status::REFUSED, p)) => Err(Error::Refused {
                reason: Dec::new(p).str("reason").unwrap_or_default(),
            }),
            Some((other, p)) => Err(Error::Protocol {
                what: "request",
                detail: format!(
                    "status {other}: {}",
                    Dec::new(p).str("reason").unwrap_or_default()
                ),
            }),
            None => Err(Error::Protocol {
                what: "request",
                detail: "empty answer".into(),
            }),
        }
    }

    async fn request(&self, req: &Request) -> Result<Parts> {
        self.request_with(req, self.timeout).await
    }

    /// Identity, firmware, slots and uptime.
    pub async fn identify(&self) -> Result<Identity> {
        let parts = self.request(&Request::Identify).await?;
        Identity::decode(&mut Dec::new(&parts[0].1))
    }

    /// Every key (empty `keys`) or the named ones, in one round trip.
    pub async fn config_get(&self, keys: Vec<String>) -> Result<ConfigRead> {
        let parts = self.request(&Request::ConfigGet { keys }).await?;
        let mut read = ConfigRead::default();
        for (_, p) in &parts {
            read.decode_part(p)?;
        }
        Ok(read)
    }

    /// Writes keys (pipelined; each applied exactly once) and returns each outcome in order.
    pub async fn config_set(
        &self,
        pairs: Vec<(String, String)>,
    ) -> Result<Vec<(String, SetOutcome)>> {
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &pairs {
            if !seen.insert(k.as_str()) {
                return Err(Error::InvalidInput(format!("key {k} is given twice")));
            }
        }
        let results: Vec<Result<(String, SetOutcome)>> = futures_util::stream::iter(pairs)
            .map(|(key, value)| async move {
                let parts = self
                    .request(&Request::ConfigSet {
                        key: key.clone(),
                        value,
                    })
                    .await?;
                let outcome = SetOutcome::decode(&mut Dec::new(&parts[0].1))?;
                Ok((key, outcome))
            })
            .buffered(CONFIG_SET_PIPELINE)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Log records at `min_level` or above: the history since boot, then (with `follow`) new
    /// ones as they come, across reconnects.
    pub async fn logs(&self, min_level: Level, follow: bool) -> Result<LogStream> {
        let (tx, rx) = mpsc::channel(LOG_QUEUE);
        let resubscribe = Request::LogSubscribe {
            min_level: min_level.as_u8(),
            history: false,
            follow: true,
        }
        .encode();
        self.cmd(Cmd::Logs { tx, resubscribe }).await?;
        let parts = self
            .request(&Request::LogSubscribe {
                min_level: min_level.as_u8(),
                history: true,
                follow,
            })
            .await?;
        let history_last = Dec::new(&parts[0].1).u32("history count")?;
        Ok(LogStream {
            rx,
            follow,
            history_last,
            expected: 1,
            stash: None,
        })
    }

    /// Asks the charger to reboot (it answers before going down).
    pub async fn reboot(&self) -> Result<()> {
        self.request(&Request::Reboot).await.map(|_| ())
    }

    /// Closes the port and greets the charger again (after a reboot), by path or, when the
    /// path is gone, by serial number among the listed ports.
    pub async fn reconnect(&self) -> Result<DeviceHello> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Reconnect { reply }).await?;
        rx.await.map_err(|_| Error::Closed)?
    }
}
