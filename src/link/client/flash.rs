//! Flashing from the tool side: begin (or resume) a transfer, run the sliding window, have the
//! charger verify the staged image.

use super::super::codec::{Dec, FlashStart, Request};
use super::super::error::{Error, Result};
use super::Client;
use super::actor::Cmd;
use super::window::{Window, WindowEnd};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};

/// Times the charger may forget a transfer (it restarted) before the flash gives up.
const MAX_RESTARTS: u32 = 5;
/// Time the charger gets to verify a staged image: a base plus so much per MiB, on top of the
/// request timeout (verification reads the whole slot).
const VERIFY_BASE: Duration = Duration::from_secs(10);
const VERIFY_PER_MIB: Duration = Duration::from_secs(8);

/// Flash tuning.
#[derive(Debug, Clone)]
pub struct FlashOptions {
    /// Compress chunks with deflate when it makes them smaller.
    pub compress: bool,
    /// Chunk size to start with (bytes); it adapts to the error rate.
    pub initial_chunk: u32,
    pub min_chunk: u32,
    /// Chunks in flight at most (also bounded by the charger's window).
    pub window_chunks: u32,
    /// Give up when no byte was acknowledged for this long (reconnects included).
    pub stall_timeout: Duration,
}

impl Default for FlashOptions {
    fn default() -> Self {
        FlashOptions {
            compress: true,
            initial_chunk: 1024,
            min_chunk: 128,
            window_chunks: 8,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// Stage of a flash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashPhase {
    #[default]
    Starting,
    Sending,
    Verifying,
    Done,
}

/// Progress of a flash, published on a `watch` channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FlashProgress {
    pub phase: FlashPhase,
    /// Image bytes the charger has acknowledged (uncompressed).
    pub done: u64,
    pub total: u64,
    /// Where this flash resumed (0 for a fresh transfer).
    pub resumed_from: u64,
    /// Image bytes per second since the transfer started.
    pub rate: f64,
    pub eta_secs: Option<f64>,
    /// Current chunk size.
    pub chunk: u32,
    pub retransmits: u64,
}

/// What a finished flash did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlashReport {
    /// Version the charger reported after verifying the staged image.
    pub version: String,
    pub total: u64,
    pub resumed_from: u64,
    /// Bytes of DATA frames written to the line (compressed, retransmissions included).
    pub wire_bytes: u64,
    pub retransmits: u64,
    pub elapsed_secs: f64,
}

impl Client {
    /// Streams `image` into the charger's inactive slot and has the charger verify it.
    /// `header` goes with the start request so the charger can refuse early. Resumes where an
    /// interrupted flash of the same image stopped. Does not reboot.
    pub async fn flash(
        &self,
        image: &[u8],
        header: &[u8],
        opts: &FlashOptions,
        progress: &watch::Sender<FlashProgress>,
    ) -> Result<FlashReport> {
        let sha: [u8; 32] = Sha256::digest(image).into();
        let size = image.len() as u64;
        let started = Instant::now();
        let mut wire_bytes = 0u64;
        let mut retransmits = 0u64;
        let mut resumed_from = None;
        let mut restarts = 0;
        let transfer = loop {
            let asked = Instant::now();
            let parts = match self
                .request(&Request::FlashBegin {
                    sha256: sha,
                    size,
                    header: header.to_vec(),
                })
                .await
            {
                Ok(p) => p,
                Err(Error::Refused { reason }) => return Err(Error::FlashRejected { reason }),
                Err(e) => return Err(e),
            };
            let mut d = Dec::new(&parts[0].1);
            let start = FlashStart {
                transfer: d.u16("transfer id")?,
                resume_offset: d.u64("resume offset")?,
                window: d.u32("window")?,
                max_chunk: d.u32("max chunk")?,
            };
            let from = *resumed_from.get_or_insert(start.resume_offset);
            let (tx, mut rx) = mpsc::unbounded_channel();
            self.cmd(Cmd::Transfer {
                id: start.transfer,
                tx: Some(tx),
            })
            .await?;
            let proto = self.hello().proto;
            let mut w = Window::new(
                image,
                &start,
                proto,
                asked.elapsed(),
                self.baud,
                opts,
                from,
                started,
            );
            let outcome = w.run(self, &mut rx, progress).await;
            wire_bytes += w.wire_bytes;
            retransmits += w.retransmits;
            let _ = self
                .cmd(Cmd::Transfer {
                    id: start.transfer,
                    tx: None,
                })
                .await;
            match outcome? {
                WindowEnd::Done => break start.transfer,
                WindowEnd::Restart if restarts < MAX_RESTARTS => restarts += 1,
                WindowEnd::Restart => {
                    return Err(Error::Protocol {
                        what: "firmware transfer",
                        detail: "the charger kept forgetting the transfer".into(),
                    });
                }
            }
        };
        progress.send_modify(|p| p.phase = FlashPhase::Verifying);
        let verify_timeout = self.timeout + VERIFY_BASE + VERIFY_PER_MIB * (size >> 20) as u32;
        let version = match self
            .request_with(&Request::FlashFinish { transfer }, verify_timeout)
            .await
        {
            Ok(parts) => Dec::new(&parts[0].1).str("version")?,
            Err(Error::Refused { reason }) => return Err(Error::FlashRejected { reason }),
            Err(e) => return Err(e),
        };
        progress.send_modify(|p| {
            p.phase = FlashPhase::Done;
            p.done = size;
            p.eta_secs = Some(0.0);
        });
        Ok(FlashReport {
            version,
            total: size,
            resumed_from: resumed_from.unwrap_or(0),
            wire_bytes,
            retransmits,
            elapsed_secs: started.elapsed().as_secs_f64(),
        })
    }
}
