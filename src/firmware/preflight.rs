//! The check an image file passes before it goes to a charger: read the file, parse its header,
//! check the payload against the header and the signature against the trusted keys given, and
//! say what was found. `chargectl flash` and the TUI's firmware screen both call [`check_file`];
//! the charger checks the signature again when the image arrives (it holds its own keys).
//!
//! A file whose header cannot be read is an error ([`PreflightError`]); a file whose header reads
//! but whose payload or signature does not match is a [`CheckedImage`] with a [`Verdict`] saying
//! what is wrong, so a screen can still show the version and the key it names.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::Error;
use super::image::{HEADER_LEN, Header, Inspection, SignatureStatus, inspect, verify};
use super::keys;
use ed25519_dalek::VerifyingKey;

/// Why an image file cannot be sent at all. Each message names the file.
///
/// The underlying error is part of the message, not a separate `source`, so a `{:#}` chain
/// prints it once.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("cannot read image {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("image {} is empty", path.display())]
    Empty { path: PathBuf },
    /// The header is not a chargectl image header (magic, format, fields), or the file ends
    /// before the payload the header announces.
    #[error("{}: {error}", path.display())]
    Format { path: PathBuf, error: Error },
    /// The payload does not match the header: [`Error::SizeMismatch`] or [`Error::HashMismatch`].
    #[error("{}: {error}", path.display())]
    Damaged { path: PathBuf, error: Error },
}

impl PreflightError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PreflightError::Read { path, .. }
            | PreflightError::Empty { path }
            | PreflightError::Format { path, .. }
            | PreflightError::Damaged { path, .. } => path,
        }
    }
}

/// What the check found, first problem first: a damaged payload hides the signature's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The payload's length is not the one the header announces (a truncated or padded file).
    WrongSize { payload: u64, announced: u64 },
    /// The payload does not hash to the header's SHA-256.
    WrongHash,
    /// The trusted key the header names does not verify the signature: the image was altered
    /// after signing.
    BadSignature { key_id: String },
    /// Signed by a key that is not among the trusted ones.
    UnknownKey { key_id: String },
    /// No trusted keys were given, so the signature was not checked.
    Unchecked { key_id: String },
    /// Verified with the trusted key of this fingerprint.
    Trusted { fingerprint: String },
}

impl Verdict {
    /// The payload matches its header (the signature may not have been checked).
    pub fn intact(&self) -> bool {
        !matches!(self, Verdict::WrongSize { .. } | Verdict::WrongHash)
    }
}

/// An image file read into memory and checked.
#[derive(Debug, Clone)]
pub struct CheckedImage {
    pub path: PathBuf,
    /// The whole file: header and payload, as sent to the charger.
    pub bytes: Vec<u8>,
    pub inspection: Inspection,
}

impl CheckedImage {
    pub fn header(&self) -> &Header {
        &self.inspection.header
    }

    /// The outcome of the checks, first problem first.
    pub fn verdict(&self) -> Verdict {
        let i = &self.inspection;
        if !i.size_ok {
            return Verdict::WrongSize {
                payload: i.payload_len,
                announced: i.header.payload_size,
            };
        }
        if !i.sha_ok {
            return Verdict::WrongHash;
        }
        let key_id = i.header.key_id_hex();
        match &i.signature {
            SignatureStatus::Trusted { fingerprint } => Verdict::Trusted {
                fingerprint: fingerprint.clone(),
            },
            SignatureStatus::Untrusted => Verdict::UnknownKey { key_id },
            SignatureStatus::NoKeysGiven => Verdict::Unchecked { key_id },
            SignatureStatus::Invalid => Verdict::BadSignature { key_id },
        }
    }

    /// Fails when the payload does not match the header, so the file is refused before the
    /// charger is touched: [`PreflightError::Damaged`] for a payload longer than announced or
    /// hashing wrong, [`PreflightError::Format`] for a truncated one.
    pub fn ensure_intact(&self) -> Result<(), PreflightError> {
        if self.inspection.intact() {
            return Ok(());
        }
        // The typed error with both sizes or both hashes; only computed for a damaged file.
        let path = self.path.clone();
        match verify(&self.bytes, &[]) {
            Ok(_) | Err(Error::NoTrustedKeys) => Ok(()),
            Err(error @ (Error::SizeMismatch { .. } | Error::HashMismatch { .. })) => {
                Err(PreflightError::Damaged { path, error })
            }
            Err(error) => Err(PreflightError::Format { path, error }),
        }
    }

    /// The first bytes of the image, sent ahead so the charger can refuse it early.
    pub fn header_bytes(&self) -> &[u8] {
        &self.bytes[..self.bytes.len().min(HEADER_LEN)]
    }

    /// SHA-256 of the whole file as lowercase hex, for comparing with a published checksum.
    pub fn file_sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }

    /// The header's build time, when it is a representable date.
    pub fn built(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp(self.header().build_time, 0)
    }
}

/// Reads `path` and checks it against `trusted` (empty: the signature is left to the charger).
/// Blocking: reads the whole file and hashes it (up to a slot's 32 MiB).
pub fn check_file(path: &Path, trusted: &[VerifyingKey]) -> Result<CheckedImage, PreflightError> {
    let bytes = std::fs::read(path).map_err(|error| PreflightError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    if bytes.is_empty() {
        return Err(PreflightError::Empty {
            path: path.to_path_buf(),
        });
    }
    let inspection = inspect(&bytes, trusted).map_err(|error| PreflightError::Format {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(CheckedImage {
        path: path.to_path_buf(),
        bytes,
        inspection,
    })
}

/// Reads every `*.pub` key in `dir`, in file name order; a missing directory means none.
pub fn read_trusted_keys(dir: &Path) -> Result<Vec<VerifyingKey>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    paths.iter().map(|p| keys::read_verifying_key(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn verdicts_follow_the_keys_given_and_the_first_problem() {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::generate();
        let other = keys::generate();
        let image = crate::firmware::pack(b"payload bytes", "2.2.0", &key).unwrap();
        let path = write(dir.path(), "fw.bin", &image);

        let checked = check_file(&path, &[]).unwrap();
        assert_eq!(checked.header().firmware_version, "2.2.0");
        assert_eq!(checked.header_bytes(), &image[..HEADER_LEN]);
        assert_eq!(
            checked.file_sha256_hex(),
            hex::encode(Sha256::digest(&image))
        );
        assert_eq!(
            checked.verdict(),
            Verdict::Unchecked {
                key_id: keys::fingerprint(&key.verifying_key())
            }
        );
        assert!(checked.ensure_intact().is_ok());
        let trusted = check_file(&path, &[key.verifying_key()]).unwrap();
        assert!(matches!(trusted.verdict(), Verdict::Trusted { .. }));
        let foreign = check_file(&path, &[other.verifying_key()]).unwrap();
        assert!(matches!(foreign.verdict(), Verdict::UnknownKey { .. }));

        let mut altered = image.clone();
        altered[OFF_SIGNATURE_BYTE] ^= 0x01;
        let path = write(dir.path(), "sig.bin", &altered);
        let checked = check_file(&path, &[key.verifying_key()]).unwrap();
        assert!(matches!(checked.verdict(), Verdict::BadSignature { .. }));
        assert!(checked.verdict().intact());

        let mut damaged = image.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 0xFF;
        }
        let path = write(dir.path(), "hash.bin", &damaged);
        let checked = check_file(&path, &[key.verifying_key()]).unwrap();
        assert_eq!(checked.verdict(), Verdict::WrongHash);
        let err = checked.ensure_intact().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: payload SHA-256 mismatch", path.display())),
            "{err}"
        );

        let path = write(dir.path(), "short.bin", &image[..image.len() - 3]);
        let checked = check_file(&path, &[]).unwrap();
        assert_eq!(
            checked.verdict(),
            Verdict::WrongSize {
                payload: 10,
                announced: 13
            }
        );
        let err = checked.ensure_intact().unwrap_err();
        assert!(matches!(err, PreflightError::Format { .. }), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut padded = image.clone();
        padded.push(0);
        let path = write(dir.path(), "long.bin", &padded);
        let err = check_file(&path, &[]).unwrap().ensure_intact().unwrap_err();
        assert!(matches!(err, PreflightError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("image size mismatch"), "{err}");
    }

    /// A byte inside the signature field.
    const OFF_SIGNATURE_BYTE: usize = 200;

    #[test]
    fn unreadable_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.bin");
        let err = check_file(&missing, &[]).unwrap_err();
        assert!(matches!(err, PreflightError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read image {}: ", missing.display())),
            "{err}"
        );
        let empty = write(dir.path(), "empty.bin", b"");
        assert_eq!(
            check_file(&empty, &[]).unwrap_err().to_string(),
            format!("image {} is empty", empty.display())
        );
        let text = write(dir.path(), "text.bin", b"not an image");
        let err = check_file(&text, &[]).unwrap_err();
        assert!(matches!(err, PreflightError::Format { .. }), "{err}");
        assert_eq!(err.path(), text.as_path());
    }

    #[test]
    fn trusted_keys_are_read_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_trusted_keys(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
        let key = keys::generate();
        keys::write_keypair_from(&dir.path().join("release"), &key, false).unwrap();
        let found = read_trusted_keys(dir.path()).unwrap();
        assert_eq!(found, vec![key.verifying_key()]);
        std::fs::write(dir.path().join("broken.pub"), "garbage").unwrap();
        let err = read_trusted_keys(dir.path()).unwrap_err().to_string();
        assert!(err.contains("broken.pub"), "{err}");
    }
}
