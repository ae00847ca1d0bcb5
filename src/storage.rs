//! Crash-safe files in the charger's state directory.
//!
//! Every document is replaced atomically: write a temporary file beside it, fsync it, rename it
//! over the old one, fsync the directory. A reader (or a restart after `kill -9`) sees either the
//! old document or the new one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub mod failpoint;

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

/// Deletes a named document durably (the directory is fsynced); a missing file is not an
/// error. Passes the failpoint `<doc>.remove.before`.
pub fn remove_doc(doc: &str, path: &Path) -> io::Result<()> {
    failpoint::check(&format!("{doc}.remove.before"))?;
    failpoint::writable()?;
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent_dir(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn replace(doc: Option<&str>, path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
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
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = opts.open(&tmp)?;
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
    }
}
