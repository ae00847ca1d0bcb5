//! Crash-safe files in the charger's state directory.
//!
//! Every document is replaced atomically: write a temporary file beside it, fsync it, rename it
//! over the old one, fsync the directory. A reader (or a restart after `kill -9`) sees either the
//! old document or the new one, never a torn mix.
//!
//! Many chargers in one process (a fleet) would pay two fsyncs and a new file per document per
//! charger. There the writes of a task (a charge point's actor) or of a thread (the preparation
//! of state directories) can be given to a [`Batch`] instead, the way a fleet's journals share
//! a group commit: the document is replaced at once, atomically, without waiting for the disk
//! (a killed process loses nothing the kernel has, and a restart reads the old or the new
//! version), and [`Batch::commit`] makes every change of the batch durable together with one
//! `syncfs`. Whoever groups writes must wait for the commit before acting on them where it
//! matters (a charge point does, before it sends any frame). A document is replaced through its
//! swap file `<name>.swap`; on Linux the two trade places (`renameat2` with `RENAME_EXCHANGE`),
//! so the next replacement rewrites the old version's file instead of creating one: creating
//! and deleting files cost ext4 more CPU than anything else a fleet did.

use std::cell::{Cell, RefCell};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod failpoint;

/// Document changes made durable together (see the module documentation). Shared by the tasks
/// or threads whose writes it takes; each change is numbered, and [`Batch::commit`] returns the
/// number of the last change it made durable.
#[derive(Debug, Default)]
pub struct Batch {
    /// The last change's number, and the files changed since the last commit (needed where
    /// there is no `syncfs`).
    pending: Mutex<(u64, Vec<PathBuf>)>,
    /// Held by a running commit, so that commits settle in order.
    committing: Mutex<()>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    fn push(&self, path: &Path) -> u64 {
        let mut p = lock(&self.pending);
        p.0 += 1;
        if !cfg!(target_os = "linux") {
            p.1.push(path.to_path_buf());
        }
        p.0
    }

    /// The number of the last change taken so far (0: none).
    pub fn last(&self) -> u64 {
        lock(&self.pending).0
    }

    /// Makes every change taken so far durable, on the filesystem holding `root` (every
    /// document of the batch must be on it). Returns the number of the last change it covered.
    /// A blocking call.
    pub fn commit(&self, root: &Path) -> io::Result<u64> {
        let _order = lock(&self.committing);
        let (last, files) = {
            let mut p = lock(&self.pending);
            (p.0, std::mem::take(&mut p.1))
        };
        sync_filesystem(root, &files)?;
        Ok(last)
    }
}

/// Where a batch writes the next version of `path` before it takes its place.
fn swap_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".swap");
    PathBuf::from(name)
}

/// Puts `from` in the place of `to` atomically. On Linux, when `to` exists, the two trade
/// places (the old version stays as `from`, whose file the next replacement rewrites instead
/// of creating a new one); otherwise a plain rename.
pub fn swap_into_place(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
        };
        let (f, t) = (c(from)?, c(to)?);
        // SAFETY: both paths are NUL-terminated strings that live across the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // ENOENT: `to` does not exist yet; EINVAL: the filesystem cannot exchange.
        if !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) {
            return Err(e);
        }
    }
    fs::rename(from, to)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes what the batch changed durable: one `syncfs` of the filesystem holding `root`.
#[cfg(target_os = "linux")]
fn sync_filesystem(root: &Path, _files: &[PathBuf]) -> io::Result<()> {
    syncfs(root)
}

/// Makes what the batch changed durable: each file that still exists, then their directories.
#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_root: &Path, files: &[PathBuf]) -> io::Result<()> {
    let mut dirs: Vec<&Path> = Vec::new();
    for f in files {
        match File::open(f) {
            Ok(file) => file.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let dir = parent_dir(f);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs.iter().try_for_each(|d| sync_dir(d))
}

/// Flushes every file of the filesystem holding `root` to the disk in one call (`syncfs(2)`).
#[cfg(target_os = "linux")]
pub fn syncfs(root: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(root)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    // SAFETY: syncfs takes a file descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("syncfs {}: {e}", root.display()),
        ));
    }
    Ok(())
}

/// A batch taking the writes of a task or thread, and the last change they gave it.
struct Scope {
    batch: Arc<Batch>,
    last: Cell<u64>,
}

impl Scope {
    fn new(batch: Arc<Batch>) -> Scope {
        Scope {
            batch,
            last: Cell::new(0),
        }
    }

    fn give(&self, path: &Path) {
        self.last.set(self.batch.push(path));
    }
}

tokio::task_local! {
    /// The batch taking the document writes of the current task.
    static TASK_BATCH: Scope;
}

thread_local! {
    /// The batch taking the document writes of the current thread, outside any batched task.
    static THREAD_BATCH: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `f` with the document writes of this task taken by `batch`.
pub async fn batched<F: std::future::Future>(batch: Arc<Batch>, f: F) -> F::Output {
    TASK_BATCH.scope(Scope::new(batch), f).await
}

/// Runs `f` (blocking code) with the document writes of this thread taken by `batch`.
pub fn batched_blocking<T>(batch: Arc<Batch>, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Scope>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            THREAD_BATCH.with(|b| *b.borrow_mut() = previous);
        }
    }
    let _reset = Reset(THREAD_BATCH.with(|b| b.borrow_mut().replace(Scope::new(batch))));
    f()
}

/// The number of the last document change the current task (or thread) gave its batch (0:
/// none, or no batch); it is durable once the batch's commit returns this number or a later one.
pub fn last_batched() -> u64 {
    with_scope(|s| s.map_or(0, |s| s.last.get()))
}

/// Calls `f` with the batch scope of this task, else of this thread, if any.
fn with_scope<R>(f: impl FnOnce(Option<&Scope>) -> R) -> R {
    if TASK_BATCH.try_with(|_| ()).is_ok() {
        return TASK_BATCH.with(|s| f(Some(s)));
    }
    THREAD_BATCH.with(|b| f(b.borrow().as_ref()))
}

/// Writes `bytes` to `path` atomically (write, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(None, path, bytes, false)
}

/// Like [`write_atomic`] but the file is created readable by its owner only (mode 0600).
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(None, path, bytes, true)
}

/// [`write_atomic`] of a named document of the charger's state, passing the failpoints
/// `<doc>.write.before`, `.tmp_written`, `.tmp_synced` and `.renamed` (see [`failpoint`]).
pub fn write_doc(doc: &str, path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(Some(doc), path, bytes, false)
}

/// [`write_atomic_private`] of a named document (see [`write_doc`]).
pub fn write_doc_private(doc: &str, path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(Some(doc), path, bytes, true)
}

/// [`write_doc`], durable when it returns even where a [`Batch`] takes the other writes (a
/// document that is appended to afterwards, such as a compacted journal, cannot wait for a
/// batch's rename).
pub fn write_doc_now(doc: &str, path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_now(Some(doc), path, bytes, false)
}

/// Deletes a named document durably (the directory is fsynced); a missing file is not an
/// error. Passes the failpoint `<doc>.remove.before`.
pub fn remove_doc(doc: &str, path: &Path) -> io::Result<()> {
    failpoint::check(&format!("{doc}.remove.before"))?;
    failpoint::writable()?;
    let batched = with_scope(|scope| scope.is_some());
    match fs::remove_file(path) {
        Ok(()) if batched => {
            with_scope(|scope| {
                if let Some(s) = scope {
                    s.give(path);
                }
            });
            Ok(())
        }
        Ok(()) => sync_dir(parent_dir(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn replace(doc: Option<&str>, path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    with_scope(|scope| match scope {
        Some(scope) => replace_batched(scope, doc, path, bytes, private),
        None => replace_now(doc, path, bytes, private),
    })
}

fn replace_batched(
    scope: &Scope,
    doc: Option<&str>,
    path: &Path,
    bytes: &[u8],
    private: bool,
) -> io::Result<()> {
    if let Some(doc) = doc {
        failpoint::check(&format!("{doc}.write.before"))?;
    }
    failpoint::writable()?;
    let swap = swap_path(path);
    let written = match create_file(&swap, private) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(parent_dir(path)).and_then(|()| create_file(&swap, private))
        }
        other => other,
    }
    .and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        // A full disk must not fill up further with half-written files.
        let _ = fs::remove_file(&swap);
        return Err(e);
    }
    swap_into_place(&swap, path)?;
    if private {
        // The swap file now holds the previous version: a secret replaced must not linger.
        let _ = OpenOptions::new().write(true).truncate(true).open(&swap);
    }
    scope.give(path);
    Ok(())
}

fn create_file(path: &Path, private: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    opts.open(path)
}

fn replace_now(doc: Option<&str>, path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    let point = |phase: &str| match doc {
        Some(doc) => failpoint::check(&format!("{doc}.write.{phase}")),
        None => Ok(()),
    };
    point("before")?;
    failpoint::writable()?;
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = create_file(&tmp, private)?;
        f.write_all(bytes)?;
        point("tmp_written")?;
        f.sync_all()?;
        point("tmp_synced")?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // A full disk must not fill up further with half-written temporary files.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    point("renamed")?;
    sync_dir(dir)
}

/// Reads a file, `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// fsyncs a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    let _ = dir;
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/config.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(read_optional(&dir.path().join("nope")).unwrap(), None);
    }

    #[test]
    fn a_batch_replaces_documents_at_once_and_makes_them_durable_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("sub/b.json");
        write_atomic(&a, b"old").unwrap();
        let batch = Arc::new(Batch::new());
        batched_blocking(batch.clone(), || {
            write_doc("a", &a, b"new").unwrap();
            assert_eq!(fs::read(&a).unwrap(), b"new", "replaced at once");
            write_doc("a", &a, b"newer").unwrap();
            write_atomic(&b, b"b").unwrap();
            remove_doc("b", &b).unwrap();
            remove_doc("b", &b).unwrap();
            assert_eq!(last_batched(), 4, "removing what is gone changes nothing");
        });
        // Outside the scope, writes are durable when they return again.
        assert_eq!(last_batched(), 0);
        assert_eq!(batch.last(), 4);
        assert_eq!(fs::read(&a).unwrap(), b"newer");
        assert!(!b.exists());
        assert_eq!(batch.commit(dir.path()).unwrap(), 4);
        let temporary = |d: &Path| -> Vec<_> {
            fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.contains(".tmp"))
                .collect()
        };
        assert!(
            temporary(dir.path()).is_empty(),
            "{:?}",
            temporary(dir.path())
        );
        // The next replacement goes through the swap file, which holds the old version's file:
        // no file is made or deleted.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::MetadataExt;
            let swap = dir.path().join("a.json.swap");
            assert_eq!(
                fs::read(&swap).unwrap(),
                b"new",
                "the versions traded places"
            );
            let before = fs::metadata(&swap).unwrap().ino();
            batched_blocking(batch.clone(), || write_doc("a", &a, b"third").unwrap());
            assert_eq!(fs::read(&a).unwrap(), b"third");
            assert_eq!(fs::metadata(&a).unwrap().ino(), before);
        }
    }

    #[tokio::test]
    async fn a_task_scope_counts_its_own_changes() {
        let dir = tempfile::tempdir().unwrap();
        let batch = Arc::new(Batch::new());
        let p = dir.path().join("doc");
        let (b1, p1) = (batch.clone(), p.clone());
        let first = tokio::spawn(batched(b1, async move {
            write_doc("doc", &p1, b"1").unwrap();
            tokio::task::yield_now().await;
            last_batched()
        }));
        let second = tokio::spawn(batched(batch.clone(), async move {
            tokio::task::yield_now().await;
            last_batched()
        }));
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(
            second.await.unwrap(),
            0,
            "another task's changes are not its own"
        );
        assert_eq!(fs::read(&p).unwrap(), b"1");
        assert_eq!(batch.commit(dir.path()).unwrap(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        write_atomic_private(&p, b"s").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let batched_key = dir.path().join("batched_key");
        let batch = Arc::new(Batch::new());
        batched_blocking(batch.clone(), || {
            write_doc_private("key", &batched_key, b"s").unwrap()
        });
        batched_blocking(batch.clone(), || {
            write_doc_private("key", &batched_key, b"t").unwrap()
        });
        batch.commit(dir.path()).unwrap();
        assert_eq!(fs::read(&batched_key).unwrap(), b"t");
        assert_eq!(
            fs::metadata(&batched_key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let swap = dir.path().join("batched_key.swap");
        if let Ok(old) = fs::read(&swap) {
            assert!(old.is_empty(), "the replaced secret lingers: {old:?}");
        }
    }
}
