//! Finding the charger again after its port went away: a task that tries the same path first,
//! then every listed port whose charger has the same serial number, and reports back to the
//! actor. Listing ports may block (sysfs), so it runs on the blocking pool.

use super::super::codec::DeviceHello;
use super::super::error::{Error, Result};
use super::super::frame::Stats;
use super::super::ports::{self, PortLister};
use super::LinkEvent;
use super::io::{Conn, Greeting, handshake};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio::time::{Duration, Instant};

/// HELLO attempts per port while looking for the charger again.
const HELLO_ATTEMPTS: u32 = 3;
/// Pause between two rounds over the candidate ports.
const ROUND_PAUSE: Duration = Duration::from_millis(200);

/// Everything the search needs, owned, so it runs as its own task.
pub(super) struct Search {
    pub port: String,
    pub baud: u32,
    pub session: u64,
    /// Serial number of the charger to find; empty accepts any.
    pub serial: String,
    pub hello_timeout: Duration,
    pub lister: Arc<dyn PortLister>,
    pub give_up_after: Duration,
    pub stats: Arc<Mutex<Stats>>,
    pub events: broadcast::Sender<LinkEvent>,
}

/// A charger found again: the port it answered on, the open connection and its HELLO.
pub(super) struct Found {
    pub port: String,
    pub conn: Conn,
    pub hello: DeviceHello,
}

impl Search {
    /// Closes the old connection, then runs until the charger answers or the time is up
    /// (then the last error).
    pub async fn run(self, old: Option<Conn>) -> Result<Found> {
        if let Some(c) = old {
            c.close().await;
        }
        let deadline = Instant::now() + self.give_up_after;
        loop {
            let last_err = match self.try_port(&self.port).await {
                Ok((conn, hello)) => {
                    return Ok(Found {
                        port: self.port.clone(),
                        conn,
                        hello,
                    });
                }
                Err(e) => e,
            };
            if !self.port.starts_with("tcp://") {
                let lister = self.lister.clone();
                let listed = tokio::task::spawn_blocking(move || lister.list()).await;
                if let Ok(Ok(list)) = listed {
                    for p in ports::candidates(&list) {
                        if p.name == self.port {
                            continue;
                        }
                        if let Ok((conn, hello)) = self.try_port(&p.name).await {
                            return Ok(Found {
                                port: p.name.clone(),
                                conn,
                                hello,
                            });
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(last_err);
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }

    async fn try_port(&self, port: &str) -> Result<(Conn, DeviceHello)> {
        let (conn, hello) = handshake(Greeting {
            port,
            baud: self.baud,
            session: self.session,
            attempts: HELLO_ATTEMPTS,
            hello_timeout: self.hello_timeout,
            stats: &self.stats,
            events: &self.events,
        })
        .await?;
        if !self.serial.is_empty() && hello.serial_number != self.serial {
            return Err(Error::WrongCharger {
                port: port.to_string(),
                expected: self.serial.clone(),
                found: hello.serial_number,
            });
        }
        Ok((conn, hello))
    }
}
