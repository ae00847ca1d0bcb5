//! Named failpoints: places in the persistence code where a test can cut the power.
//!
//! A failpoint is a name such as `journal.append.after_write` placed at one step of a durable
//! write. It does nothing unless the environment arms it, once per process, when the first
//! point is reached:
//!
//! ```text
//! CHARGECTL_FAILPOINT=journal.append.after_write:3          abort at the 3rd hit (as kill -9)
//! CHARGECTL_FAILPOINT=config.write.tmp_written:1:enospc     the 1st hit fails with ENOSPC
//! CHARGECTL_FAILPOINT_LOG=/tmp/hits                         append every hit's name to a file
//! ```
//!
//! The action is `abort` (the default: `std::process::abort`, so nothing is flushed, no
//! destructor runs and the kernel keeps only what was already written, as after `kill -9`),
//! `enospc`, `erofs` or `eio` (that one hit returns the error, as a full, read-only or failing
//! disk would). `CHARGECTL_FAILPOINT_LOG` is how a test learns which points a workload passes and
//! how often. Unarmed, a point costs one atomic load.
//!
//! Besides named points, [`set_disk_fault`] makes every write in the state directory fail from
//! now on (a full or read-only disk) until it is cleared; the emulator exposes it as a simulated
//! hardware fault.
//!
//! Every point, in the order a write passes them:
//!
//! | point | where |
//! | --- | --- |
//! | `journal.append.before_write` | a transaction journal record, nothing written yet |
//! | `journal.append.after_write` | the record written, not yet fsynced |
//! | `journal.append.after_fsync` | the record durable, the caller not yet told |
//! | `journal.compact.write.*` | the compacted journal, replaced as a document (below) |
//! | `<doc>.write.before` | a document replace, nothing written yet |
//! | `<doc>.write.tmp_written` | the temporary file written, not yet fsynced |
//! | `<doc>.write.tmp_synced` | the temporary file durable, not yet renamed |
//! | `<doc>.write.renamed` | renamed over the old document, directory not yet fsynced |
//! | `<doc>.remove.before` | a document about to be deleted |
//! | `firmware.chunk.after_write` | a received firmware chunk written to the staging slot |
//! | `firmware.chunk.after_sync` | staged bytes fsynced, their offset not yet recorded |
//! | `firmware.finish.renamed` | a verified staged image renamed into its slot, not yet marked bootable |
//! | `firmware.switch.before` | power-on with a verified slot pending, before the switch |
//!
//! Documents (`<doc>`): `config`, `secrets`, `local_list`, `auth_cache`, `charging_profiles`,
//! `reservation`, `availability`, `transaction`, `firmware_update`, `meter`, `slots` (slot
//! metadata), `firmware.image` (a whole image installed at once), `firmware.switch` (the metadata
//! write that switches the active slot), `firmware.confirm` (a trial image confirmed) and
//! `firmware.revert` (a failed trial image abandoned).

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Environment variable arming one failpoint: `NAME:HIT[:ACTION]`.
pub const ENV: &str = "CHARGECTL_FAILPOINT";
/// Environment variable naming a file that receives the name of every point reached.
pub const LOG_ENV: &str = "CHARGECTL_FAILPOINT_LOG";

/// What an armed point does when its hit comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `std::process::abort`: the process dies where it stands.
    Abort,
    /// The write fails with this disk error, once.
    Fail(DiskFault),
}

/// A disk error the storage layer can be made to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// No space left on device (ENOSPC).
    Full,
    /// Read-only file system (EROFS).
    ReadOnly,
    /// Input/output error (EIO).
    Io,
}

impl DiskFault {
    /// The error a write gets.
    pub fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            DiskFault::Full => libc::ENOSPC,
            DiskFault::ReadOnly => libc::EROFS,
            DiskFault::Io => libc::EIO,
        })
    }

    /// The spelling in [`ENV`] and in the emulator's `storage_fault` action.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFault::Full => "full",
            DiskFault::ReadOnly => "read_only",
            DiskFault::Io => "io",
        }
    }

    /// Parses `full`/`enospc`, `read_only`/`erofs` or `io`/`eio`.
    pub fn parse(text: &str) -> Option<DiskFault> {
        match text {
            "full" | "enospc" => Some(DiskFault::Full),
            "read_only" | "erofs" => Some(DiskFault::ReadOnly),
            "io" | "eio" => Some(DiskFault::Io),
            _ => None,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            DiskFault::Full => 1,
            DiskFault::ReadOnly => 2,
            DiskFault::Io => 3,
        }
    }

    fn from_u8(v: u8) -> Option<DiskFault> {
        match v {
            1 => Some(DiskFault::Full),
            2 => Some(DiskFault::ReadOnly),
            3 => Some(DiskFault::Io),
            _ => None,
        }
    }
}

/// A parsed `NAME:HIT[:ACTION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    /// 1 for the first time the point is reached.
    pub hit: u64,
    pub action: Action,
}

impl Spec {
    /// Parses the value of [`ENV`]; the error names what is wrong.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let mut parts = text.trim().split(':');
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(format!("{ENV}={text:?}: expected NAME:HIT[:ACTION]"));
        }
        let hit = match parts.next() {
            None => 1,
            Some(n) => n
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{ENV}={text:?}: HIT must be a whole number from 1"))?,
        };
        let action = match parts.next().map(str::trim) {
            None | Some("abort") => Action::Abort,
            Some(other) => Action::Fail(DiskFault::parse(other).ok_or_else(|| {
                format!("{ENV}={text:?}: ACTION must be abort, enospc, erofs or eio")
            })?),
        };
        if parts.next().is_some() {
            return Err(format!("{ENV}={text:?}: expected NAME:HIT[:ACTION]"));
        }
        Ok(Spec {
            name: name.to_string(),
            hit,
            action,
        })
    }
}

struct Armed {
    spec: Option<Spec>,
    hits: AtomicU64,
    log: Option<Mutex<File>>,
}

/// `None` when neither variable is set (the common case).
fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty());
            let log = std::env::var_os(LOG_ENV).filter(|s| !s.is_empty());
            if spec.is_none() && log.is_none() {
                return None;
            }
            let spec = spec.and_then(|s| match Spec::parse(&s) {
                Ok(spec) => Some(spec),
                Err(e) => {
                    tracing::error!("{e}; no failpoint armed");
                    None
                }
            });
            let log = log.and_then(|path| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| tracing::error!("{LOG_ENV}: {}: {e}", path.to_string_lossy()))
                    .ok()
                    .map(Mutex::new)
            });
            Some(Armed {
                spec,
                hits: AtomicU64::new(0),
                log,
            })
        })
        .as_ref()
}

/// Passes the point `name`: aborts the process, or returns an injected disk error, when the
/// environment armed this point for this hit.
#[inline]
pub fn check(name: &str) -> io::Result<()> {
    match armed() {
        None => Ok(()),
        Some(a) => reached(a, name),
    }
}

/// Passes a point where no error can be returned: only the abort action applies.
#[inline]
pub fn hit(name: &str) {
    let _ = check(name);
}

#[cold]
fn reached(armed: &Armed, name: &str) -> io::Result<()> {
    if let Some(log) = &armed.log {
        let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(format!("{name}\n").as_bytes());
    }
    let Some(spec) = armed.spec.as_ref().filter(|s| s.name == name) else {
        return Ok(());
    };
    let n = armed.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if n != spec.hit {
        return Ok(());
    }
    match spec.action {
        Action::Abort => {
            // Said on stderr, which is unbuffered; a test reads it to tell this abort from a crash.
            let _ = io::stderr().write_all(format!("failpoint {name}:{n}: abort\n").as_bytes());
            std::process::abort()
        }
        Action::Fail(fault) => {
            tracing::warn!("failpoint {name}:{n}: {}", fault.as_str());
            Err(fault.error())
        }
    }
}

static DISK_FAULT: AtomicU8 = AtomicU8::new(0);

/// Makes every later write in the state directory fail with `fault` (`None` heals the disk).
/// Process-wide: meant for one emulated charger per process (`chargectl emulate`).
pub fn set_disk_fault(fault: Option<DiskFault>) {
    DISK_FAULT.store(fault.map_or(0, DiskFault::to_u8), Ordering::SeqCst);
}

/// The disk fault in force, if any.
pub fn disk_fault() -> Option<DiskFault> {
    DiskFault::from_u8(DISK_FAULT.load(Ordering::Relaxed))
}

/// `Err` when a disk fault is in force: the storage layer calls it before writing.
#[inline]
pub fn writable() -> io::Result<()> {
    match disk_fault() {
        None => Ok(()),
        Some(f) => Err(f.error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_clear_errors() {
        assert_eq!(
            Spec::parse("journal.append.after_write:3").unwrap(),
            Spec {
                name: "journal.append.after_write".into(),
                hit: 3,
                action: Action::Abort
            }
        );
        assert_eq!(
            Spec::parse("config.write.before:1:enospc").unwrap().action,
            Action::Fail(DiskFault::Full)
        );
        assert_eq!(Spec::parse("x").unwrap().hit, 1);
        assert!(Spec::parse("x:0").unwrap_err().contains("HIT"));
        assert!(Spec::parse("x:y").unwrap_err().contains("HIT"));
        assert!(Spec::parse("x:1:boom").unwrap_err().contains("ACTION"));
        assert!(Spec::parse(":1").unwrap_err().contains("NAME"));
        assert!(Spec::parse("x:1:abort:2").is_err());
    }

    #[test]
    fn disk_faults_map_to_their_errno() {
        assert_eq!(DiskFault::Full.error().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(
            DiskFault::ReadOnly.error().raw_os_error(),
            Some(libc::EROFS)
        );
        for f in [DiskFault::Full, DiskFault::ReadOnly, DiskFault::Io] {
            assert_eq!(DiskFault::parse(f.as_str()), Some(f));
            assert_eq!(DiskFault::from_u8(f.to_u8()), Some(f));
        }
    }
}
