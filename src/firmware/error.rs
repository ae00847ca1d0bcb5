//! The one error type of the firmware domain: image format, signatures, key files and slots.

use std::path::PathBuf;

/// Everything that can go wrong with an image, a key file or the slots. Each variant names the
/// field, the offset, the file or the line at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "not a chargectl firmware image: the first 8 bytes are {found:02x?}, expected \"CHGCTLFW\""
    )]
    BadMagic { found: [u8; 8] },
    #[error("unsupported image format version {0} (this build reads format {supported})", supported = crate::firmware::FORMAT_VERSION)]
    UnsupportedFormat(u16),
    #[error(
        "image header length field is {found} bytes, format {format} headers are {expected} bytes"
    )]
    BadHeaderLength {
        format: u16,
        found: u16,
        expected: u16,
    },
    #[error("image is truncated: expected {expected} bytes, found {actual}")]
    Truncated { expected: u64, actual: u64 },
    #[error(
        "image size mismatch: the header announces {expected} bytes (header + payload), the image has {actual}"
    )]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("payload SHA-256 mismatch: the header says {expected}, the payload hashes to {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error(
        "signature does not verify with key {key_id} (header or payload altered after signing)"
    )]
    BadSignature { key_id: String },
    #[error("image is signed by key {key_id}, which is not among the trusted keys")]
    UntrustedKey { key_id: String },
    #[error("no trusted public key given: the signature cannot be checked")]
    NoTrustedKeys,
    #[error("bad firmware version {version:?}: {reason}")]
    BadVersion { version: String, reason: String },
    #[error("bad model string at header offset {offset}: {reason}")]
    BadModel { offset: usize, reason: String },
    #[error("image is for model {found:?}, this charger is a {expected:?}")]
    WrongModel { found: String, expected: String },
    #[error(
        "header field {field} at offset {offset}: byte {byte:#04x} after the zero padding started"
    )]
    BadPadding {
        field: &'static str,
        offset: usize,
        byte: u8,
    },
    #[error("reserved header byte at offset {offset} is {byte:#04x}, must be zero in format 1")]
    ReservedNotZero { offset: usize, byte: u8 },
    #[error("the payload is empty")]
    EmptyPayload,
    #[error("image of {size} bytes is larger than a slot ({max} bytes)")]
    TooLarge { size: u64, max: u64 },

    #[error("{path}:{line}: {reason}")]
    KeyFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path} already exists (use --force to overwrite)")]
    KeyExists { path: PathBuf },

    #[error("slot metadata {path} is corrupt: {reason}")]
    SlotMetadata { path: PathBuf, reason: String },
    #[error("no image transfer in progress (call begin first)")]
    NoStaging,
    #[error("write at offset {offset} leaves a gap: the staged image has {expected} bytes so far")]
    Gap { offset: u64, expected: u64 },
    #[error("write of {len} bytes at offset {offset} runs past the announced image size {size}")]
    Overflow { offset: u64, len: u64, size: u64 },
    #[error("staged image incomplete: {received} of {size} bytes received")]
    Incomplete { received: u64, size: u64 },
    #[error("staged image SHA-256 is {actual}, the transfer announced {expected}")]
    StagedHashMismatch { expected: String, actual: String },

    /// The I/O error is part of the message (not a separate `source`), so a `{:#}` chain
    /// prints it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |error| Error::Io { path, error }
    }

    /// The class of failure, so that a caller (CLI, serial service, OCPP) can answer without
    /// matching every variant.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadMagic { .. }
            | Error::UnsupportedFormat(_)
            | Error::BadHeaderLength { .. }
            | Error::Truncated { .. }
            | Error::SizeMismatch { .. }
            | Error::HashMismatch { .. }
            | Error::BadSignature { .. }
            | Error::UntrustedKey { .. }
            | Error::NoTrustedKeys
            | Error::BadModel { .. }
            | Error::WrongModel { .. }
            | Error::BadPadding { .. }
            | Error::ReservedNotZero { .. }
            | Error::TooLarge { .. }
            | Error::StagedHashMismatch { .. }
            | Error::Incomplete { .. } => ErrorKind::Verification,
            Error::BadVersion { .. }
            | Error::EmptyPayload
            | Error::KeyFile { .. }
            | Error::KeyExists { .. } => ErrorKind::BadInput,
            Error::NoStaging | Error::Gap { .. } | Error::Overflow { .. } => ErrorKind::Protocol,
            Error::SlotMetadata { .. } | Error::Io { .. } => ErrorKind::Storage,
        }
    }
}

/// Coarse class of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The image is malformed, altered, or not signed by a trusted key.
    Verification,
    /// A value or file the user gave is malformed (version string, key file).
    BadInput,
    /// The transfer was driven out of order (write before begin, gap, overflow).
    Protocol,
    /// The slot storage failed (disk error, corrupt metadata).
    Storage,
}

/// `path` made usable for [`crate::storage`]: a bare file name gets a `./` prefix, so
/// its directory is `.` rather than the empty path (which cannot be opened for fsync).
pub(crate) fn with_dir(path: &std::path::Path) -> PathBuf {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => std::path::Path::new(".").join(path),
        _ => path.to_path_buf(),
    }
}

/// Result with the firmware [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
