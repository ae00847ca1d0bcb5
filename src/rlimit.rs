//! The process's open-file limit: every charge point connection holds one file descriptor, so a
//! sandbox CSMS serving thousands of charge points, or a fleet of thousands of emulated charge
//! points, needs the soft limit raised to the hard limit.

/// The open-file limit (`RLIMIT_NOFILE`) in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub soft: u64,
    pub hard: u64,
}

impl OpenFileLimit {
    /// About how many charge points can be connected at once: one descriptor each, less a
    /// few for the listener, the runtime and log files.
    pub fn charge_points(&self) -> u64 {
        self.soft.saturating_sub(RESERVED_DESCRIPTORS)
    }
}

/// The open-file limit cannot hold what a run needs.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "{what} needs about {needed} open files but the limit is {soft} (hard limit {hard}); raise the hard limit (ulimit -Hn, LimitNOFILE= in a systemd unit) or split the run over several processes"
)]
pub struct TooLow {
    pub what: String,
    pub needed: u64,
    pub soft: u64,
    pub hard: u64,
}

impl OpenFileLimit {
    /// Checks that `needed` descriptors (plus [`RESERVED_DESCRIPTORS`]) fit under the soft limit;
    /// `what` names the run in the error (`a fleet of 10000 charge points`).
    pub fn check(&self, needed: u64, what: &str) -> Result<(), TooLow> {
        let total = needed.saturating_add(RESERVED_DESCRIPTORS);
        if total <= self.soft {
            Ok(())
        } else {
            Err(TooLow {
                what: what.to_string(),
                needed: total,
                soft: self.soft,
                hard: self.hard,
            })
        }
    }
}

/// Descriptors kept aside for everything that is not a charge point connection.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The soft limit asked for when the hard limit is unlimited (Linux's default `nr_open`).
#[cfg(unix)]
const UNLIMITED_TARGET: libc::rlim_t = 1 << 20;

/// Raises the soft open-file limit to the hard limit and returns the limit now in force;
/// `None` where the platform has no such limit or it cannot be read.
#[cfg(unix)]
pub fn raise_open_file_limit() -> Option<OpenFileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid pointer it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    // An unlimited hard limit still stops at the kernel's per-process maximum.
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        UNLIMITED_TARGET
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the valid `rlimit` it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                "cannot raise the open-file limit"
            );
        }
    }
    // `rlim_t` is 64 bits on Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    Some(OpenFileLimit {
        soft: limit.rlim_cur as u64,
        hard: limit.rlim_max as u64,
    })
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() -> Option<OpenFileLimit> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_limit() {
        let limit = raise_open_file_limit().unwrap();
        assert!(
            limit.soft == limit.hard || limit.soft == 1 << 20,
            "{limit:?}"
        );
        // Raising again changes nothing.
        assert_eq!(raise_open_file_limit(), Some(limit));
        assert_eq!(
            limit.charge_points(),
            limit.soft.saturating_sub(RESERVED_DESCRIPTORS)
        );
    }

    #[test]
    fn a_run_that_does_not_fit_names_the_numbers() {
        let limit = OpenFileLimit {
            soft: 1024,
            hard: 4096,
        };
        assert!(limit.check(900, "x").is_ok());
        let e = limit
            .check(20_000, "a fleet of 10000 charge points")
            .unwrap_err();
        assert_eq!((e.needed, e.soft, e.hard), (20_064, 1024, 4096));
        let text = e.to_string();
        for part in ["a fleet of 10000 charge points", "20064", "1024", "4096"] {
            assert!(text.contains(part), "{text}");
        }
    }
}
