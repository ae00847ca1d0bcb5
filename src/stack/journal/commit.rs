//! Group commit: one flush to disk makes the records that many journals appended in the same
//! short window durable together, instead of one fsync per record per charge point.
//!
//! A journal in group mode appends its record to its file (into the page cache, which a killed
//! process does not lose) and takes a ticket: the number of the next commit. The committer task
//! waits for appended records, lets the window pass so that others join, then flushes once:
//! `syncfs(2)` on Linux (every file of the filesystem holding the fleet's state directory in one
//! call), an `fdatasync` of each file appended to elsewhere. Waiters whose ticket that commit
//! covers are then released with its outcome. A record appended while a commit runs gets the
//! next one. Commits run on the blocking pool, never on the runtime's worker threads.
//!
//! The committer also holds a [`storage::Batch`] for the other state documents of the charge
//! points (transaction state, authorization cache, availability, ...): a charge point's task
//! writes them into it (see [`Committer::documents`]), and each commit then makes them durable
//! too (they were replaced at once, atomically, like the journals' appends). A charge point asks
//! for that commit with [`Committer::request`] before it sends anything, as it waits for its
//! journal records.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

use crate::storage;

/// The default window: records appended within it share one flush.
pub const WINDOW: Duration = Duration::from_millis(2);

/// What the committer has made durable so far.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every ticket up to this one is settled.
    settled: u64,
    /// The most recent failed commit and why (tickets it settled get this error).
    failed: Option<(u64, String)>,
}

struct Pending {
    /// The ticket the next commit will settle.
    next: u64,
    /// Files appended to since the last commit started (for platforms without `syncfs`).
    files: Vec<PathBuf>,
    /// Appends waiting for the next commit.
    waiting: usize,
    closed: bool,
}

struct Inner {
    root: PathBuf,
    window: Duration,
    pending: Mutex<Pending>,
    wake: Notify,
    progress: watch::Sender<Progress>,
    /// Commits done and records they covered, for figures.
    stats: Mutex<CommitStats>,
    /// State documents written by the charge points, renamed into place by each commit.
    documents: Arc<storage::Batch>,
}

/// Commits made and records covered, since the committer started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub commits: u64,
    pub records: u64,
}

/// A handle to the shared committer; clones share it. The committer task ends, after a last
/// commit of what is pending, when the last handle is dropped.
#[derive(Clone)]
pub struct Committer {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<Inner>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        crate::sync::lock(&self.inner.pending).closed = true;
        self.inner.wake.notify_one();
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("root", &self.shared.inner.root)
            .field("window", &self.shared.inner.window)
            .finish()
    }
}

/// A record appended and waiting for the commit that makes it durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl Committer {
    /// Starts the committer task for journals under `root` (they must be on `root`'s filesystem:
    /// one `syncfs` covers them all). Needs a tokio runtime.
    pub fn start(root: &Path, window: Duration) -> Committer {
        let (progress, _) = watch::channel(Progress::default());
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            window,
            pending: Mutex::new(Pending {
                next: 1,
                files: Vec::new(),
                waiting: 0,
                closed: false,
            }),
            wake: Notify::new(),
            progress,
            stats: Mutex::new(CommitStats::default()),
            documents: Arc::new(storage::Batch::new()),
        });
        tokio::spawn(run(inner.clone()));
        Committer {
            shared: Arc::new(Shared { inner }),
        }
    }

    /// Registers a record just appended to `file`; the returned ticket is settled by the next
    /// commit.
    pub fn appended(&self, file: &Path) -> Ticket {
        let inner = &self.shared.inner;
        let ticket = {
            let mut p = crate::sync::lock(&inner.pending);
            if !cfg!(target_os = "linux") {
                p.files.push(file.to_path_buf());
            }
            p.waiting += 1;
            Ticket(p.next)
        };
        inner.wake.notify_one();
        ticket
    }

    /// Asks for a commit without a record (for state documents written into
    /// [`Committer::documents`]); the returned ticket is settled by the next commit.
    pub fn request(&self) -> Ticket {
        let inner = &self.shared.inner;
        let ticket = {
            let mut p = crate::sync::lock(&inner.pending);
            p.waiting += 1;
            Ticket(p.next)
        };
        inner.wake.notify_one();
        ticket
    }

    /// The batch taking the state documents of the charge points that share this committer
    /// (see [`storage::batched`]); each commit makes what it holds durable.
    pub fn documents(&self) -> Arc<storage::Batch> {
        self.shared.inner.documents.clone()
    }

    /// Waits until the commit covering `ticket` is done; its error if it failed.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), String> {
        let mut rx = self.shared.inner.progress.subscribe();
        let progress = rx
            .wait_for(|p| p.settled >= ticket.0)
            .await
            .map_err(|_| "the journal committer stopped".to_string())?
            .clone();
        match progress.failed {
            Some((at, why)) if at == ticket.0 => Err(why),
            _ => Ok(()),
        }
    }

    /// Commits made and records covered so far.
    pub fn stats(&self) -> CommitStats {
        *crate::sync::lock(&self.shared.inner.stats)
    }
}

async fn run(inner: Arc<Inner>) {
    loop {
        let (ticket, files, records, closed) = loop {
            {
                let mut p = crate::sync::lock(&inner.pending);
                if p.waiting > 0 || p.closed {
                    break (
                        p.next,
                        std::mem::take(&mut p.files),
                        std::mem::take(&mut p.waiting),
                        p.closed,
                    );
                }
            }
            inner.wake.notified().await;
        };
        if records == 0 && closed {
            return;
        }
        // Let the others of this window append, then close the batch (at once when the last
        // handle is gone).
        if !inner.window.is_zero() && !closed {
            let until = tokio::time::Instant::now() + inner.window;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = inner.wake.notified() => {
                        if crate::sync::lock(&inner.pending).closed {
                            break;
                        }
                    }
                }
            }
        }
        let (files, records, closed) = {
            let mut p = crate::sync::lock(&inner.pending);
            let mut all = files;
            all.append(&mut p.files);
            let records = records + std::mem::take(&mut p.waiting);
            p.next = ticket + 1;
            (all, records, closed || p.closed)
        };
        let root = inner.root.clone();
        let documents = inner.documents.clone();
        let outcome = tokio::task::spawn_blocking(move || flush(&root, &files, &documents))
            .await
            .unwrap_or_else(|e| Err(format!("journal commit failed: {e}")));
        {
            let mut s = crate::sync::lock(&inner.stats);
            s.commits += 1;
            s.records += records as u64;
        }
        inner.progress.send_modify(|p| {
            p.settled = ticket;
            if let Err(why) = outcome {
                tracing::error!(ticket, "journal commit failed: {why}");
                p.failed = Some((ticket, why));
            }
        });
        if closed {
            return;
        }
    }
}

/// Makes everything appended durable, then the state documents of the batch.
fn flush(root: &Path, files: &[PathBuf], documents: &storage::Batch) -> Result<(), String> {
    // On Linux the batch's syncfs covers the journals as well.
    if !cfg!(target_os = "linux") {
        flush_journals(root, files)?;
    }
    documents
        .commit(root)
        .map(|_| ())
        .map_err(|e| format!("state documents: {e}"))
}

/// Makes everything appended durable: one `syncfs` of the filesystem holding `root`.
#[cfg(target_os = "linux")]
fn flush_journals(root: &Path, _files: &[PathBuf]) -> Result<(), String> {
    storage::syncfs(root).map_err(|e| e.to_string())
}

/// Makes everything appended durable: an `fdatasync` of each file appended to.
#[cfg(not(target_os = "linux"))]
fn flush_journals(_root: &Path, files: &[PathBuf]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for f in files {
        if seen.insert(f) {
            std::fs::OpenOptions::new()
                .append(true)
                .open(f)
                .and_then(|file| file.sync_data())
                .map_err(|e| format!("{}: {e}", f.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_of_one_window_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let c = Committer::start(dir.path(), Duration::from_millis(20));
        let tickets: Vec<Ticket> = (0..50)
            .map(|i| c.appended(&dir.path().join(format!("j{i}"))))
            .collect();
        for t in &tickets {
            c.durable(*t).await.unwrap();
        }
        assert_eq!(
            c.stats(),
            CommitStats {
                commits: 1,
                records: 50
            }
        );
        // A later record gets a later commit.
        let t = c.appended(&dir.path().join("j0"));
        assert!(t.0 > tickets[0].0);
        c.durable(t).await.unwrap();
        assert_eq!(c.stats().commits, 2);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_commits_what_is_pending_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let c = Committer::start(dir.path(), Duration::from_secs(3600));
        let t = c.appended(&dir.path().join("j"));
        let mut rx = c.shared.inner.progress.subscribe();
        drop(c);
        let p = rx.wait_for(|p| p.settled >= t.0).await.unwrap().clone();
        assert!(p.failed.is_none());
    }
}
