//! The emulated charger's service port: a pseudo-terminal whose slave side appears at a stable
//! path (a symlink), plus a line shaper that throttles to a baud rate and injects byte faults.
//!
//! The charger side holds the master; a keeper fd on the slave stays open so the master never
//! sees EIO while no tool is attached. "Unplugging" drops the master (the tool sees EOF or EIO);
//! [`PtyPort::replug`] makes a fresh pair and atomically re-points the symlink.

use super::error::{Error, Result};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};
use tokio_serial::{SerialPort, SerialStream};

/// Owns the slave keeper and the symlink of an emulated service port.
#[derive(Debug)]
pub struct PtyPort {
    link: PathBuf,
    slave_path: PathBuf,
    _keeper: SerialStream,
}

fn pty_err(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Pty {
        what: what.into(),
        message: e.to_string(),
    }
}

fn new_pair() -> Result<(SerialStream, SerialStream, PathBuf)> {
    // pair() takes no lock on the slave, so the tool can open the slave path exclusively while
    // the keeper is held (set_exclusive(false) would take a shared flock and block it).
    let (master, slave) =
        SerialStream::pair().map_err(|e| pty_err("creating a pseudo-terminal", e))?;
    let name = slave
        .name()
        .ok_or_else(|| pty_err("naming the pseudo-terminal", "no slave path"))?;
    Ok((master, slave, PathBuf::from(name)))
}

/// Points `link` at `target` atomically (a temporary symlink renamed over it).
fn point_link(link: &Path, target: &Path) -> Result<()> {
    let file = link
        .file_name()
        .ok_or_else(|| pty_err(format!("link path {}", link.display()), "has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = link.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| pty_err(format!("creating symlink {}", tmp.display()), e))?;
    std::fs::rename(&tmp, link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        pty_err(format!("renaming symlink onto {}", link.display()), e)
    })
}

/// Creates a pseudo-terminal, makes `link_path` a symlink to its slave, and returns the port
/// (keep it alive) and the master side the charger serves on.
pub fn open(link_path: &Path) -> Result<(PtyPort, SerialStream)> {
    let (master, keeper, slave_path) = new_pair()?;
    point_link(link_path, &slave_path)?;
    tracing::info!(target: "link", link = %link_path.display(), pty = %slave_path.display(), "service port ready");
    Ok((
        PtyPort {
            link: link_path.to_path_buf(),
            slave_path,
            _keeper: keeper,
        },
        master,
    ))
}

impl PtyPort {
    /// The stable path tools open.
    pub fn link_path(&self) -> &Path {
        &self.link
    }

    /// The pseudo-terminal the link currently points to.
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// A simulated unplug and replug: a new pair, the symlink re-pointed atomically. The old
    /// master must be dropped by the caller (the tool then sees EOF/EIO); the new master is
    /// returned.
    pub fn replug(&mut self) -> Result<SerialStream> {
        let (master, keeper, slave_path) = new_pair()?;
        point_link(&self.link, &slave_path)?;
        self._keeper = keeper;
        self.slave_path = slave_path;
        Ok(master)
    }
}

impl Drop for PtyPort {
    fn drop(&mut self) {
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.slave_path) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

/// Line conditions imposed on the charger side of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineShaper {
    /// Throttle to this rate (10 bits per byte); `None` passes bytes at full speed.
    pub baud: Option<u32>,
    /// Fraction of bytes lost, each direction.
    pub drop_rate: f64,
    /// Fraction of bytes corrupted (one bit flipped), each direction.
    pub flip_rate: f64,
    /// Seed of the fault generator (same seed, same faults).
    pub seed: u64,
}

impl Default for LineShaper {
    fn default() -> Self {
        LineShaper {
            baud: None,
            drop_rate: 0.0,
            flip_rate: 0.0,
            seed: 0x5EED,
        }
    }
}

/// Counters of a shaped direction.
#[derive(Debug, Default)]
struct Faults {
    state: u64,
}

impl Faults {
    fn next(&mut self) -> u64 {
        // xorshift64*: fast, reproducible, good enough for fault injection.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < rate
    }
}

impl LineShaper {
    /// True when the shaper changes nothing.
    pub fn is_transparent(&self) -> bool {
        self.baud.is_none() && self.drop_rate <= 0.0 && self.flip_rate <= 0.0
    }

    /// Puts the shaper between `line` (the port) and the returned stream (what the charger
    /// serves on). Two pump tasks run until either side closes; abort the handle to stop early.
    pub fn wrap<T>(self, line: T) -> (DuplexStream, JoinHandle<()>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (inner, outer) = tokio::io::duplex(64 * 1024);
        let (line_rd, line_wr) = tokio::io::split(line);
        let (in_rd, in_wr) = tokio::io::split(outer);
        let shaper = self;
        let handle = tokio::spawn(async move {
            let up = pump(line_rd, in_wr, shaper, shaper.seed ^ 0xA5A5_5A5A);
            let down = pump(in_rd, line_wr, shaper, shaper.seed.rotate_left(17) | 1);
            tokio::select! {
                _ = up => {},
                _ = down => {},
            }
        });
        (inner, handle)
    }
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shaper: LineShaper,
    seed: u64,
) {
    let mut faults = Faults { state: seed | 1 };
    // Throttled: move at most 1 ms worth of bytes per step, rounded up to one byte.
    let slice = match shaper.baud {
        Some(b) => ((b as usize) / 10 / 1000).max(1) * 4,
        None => 16 * 1024,
    };
    let mut buf = vec![0u8; slice];
    let mut out = Vec::with_capacity(slice);
    let mut line_free = Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        out.clear();
        for &b in &buf[..n] {
            if faults.chance(shaper.drop_rate) {
                continue;
            }
            let b = if faults.chance(shaper.flip_rate) {
                b ^ (1 << (faults.next() % 8))
            } else {
                b
            };
            out.push(b);
        }
        if let Some(baud) = shaper.baud {
            // The line is busy for 10 bits per byte, dropped ones included (they were sent).
            let busy = Duration::from_nanos(n as u64 * 10 * 1_000_000_000 / baud.max(1) as u64);
            // A line idle for a while starts afresh; a late wake-up (timers are coarse) keeps
            // the schedule, so the average rate stays exact.
            let now = Instant::now();
            if line_free + Duration::from_millis(20) < now {
                line_free = now;
            }
            line_free += busy;
            tokio::time::sleep_until(line_free).await;
        }
        if to.write_all(&out).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shaper_holds_the_line_rate() {
        let (line, mut tool) = tokio::io::duplex(1 << 20);
        let shaper = LineShaper {
            baud: Some(115_200),
            ..LineShaper::default()
        };
        let (mut charger, _h) = shaper.wrap(line);
        let start = Instant::now();
        let data = vec![0x55u8; 11_520];
        let writer = tokio::spawn(async move {
            tool.write_all(&data).await.expect("write");
            tool
        });
        let mut got = vec![0u8; 11_520];
        charger.read_exact(&mut got).await.expect("read");
        let elapsed = start.elapsed();
        // 11 520 bytes at 11 520 bytes/s is one second of virtual time.
        assert!(elapsed >= Duration::from_millis(990), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(1100), "{elapsed:?}");
        drop(writer);
    }

    #[tokio::test]
    async fn shaper_faults_are_near_the_rate_and_reproducible() {
        async fn run(seed: u64) -> Vec<u8> {
            let (line, mut tool) = tokio::io::duplex(1 << 20);
            let shaper = LineShaper {
                baud: None,
                drop_rate: 0.01,
                flip_rate: 0.01,
                seed,
            };
            let (mut charger, _h) = shaper.wrap(line);
            let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            tool.write_all(&data).await.expect("write");
            drop(tool);
            let mut got = Vec::new();
            let _ = charger.read_to_end(&mut got).await;
            got
        }
        let a = run(1).await;
        let b = run(1).await;
        assert_eq!(a, b);
        let lost = 100_000 - a.len();
        assert!((500..1500).contains(&lost), "lost {lost}");
    }

    #[tokio::test]
    async fn pty_link_points_at_the_slave_and_replug_moves_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("charger");
        let (mut port, master) = open(&link).expect("pty");
        let first = std::fs::read_link(&link).expect("symlink");
        assert_eq!(first, port.slave_path());
        drop(master);
        let _master2 = port.replug().expect("replug");
        let second = std::fs::read_link(&link).expect("symlink");
        assert_ne!(first, second);
        drop(port);
        assert!(std::fs::symlink_metadata(&link).is_err());
    }
}
