//! Signed firmware images and the charger's A/B slots.
//!
//! # Image format (version 1)
//!
//! An image is a fixed 256-byte header followed by the payload. Integers are little-endian;
//! text fields are UTF-8 (printable ASCII in practice), zero padded, and every byte after the
//! first zero of a field must be zero.
//!
//! | offset | size | field | meaning |
//! | ---: | ---: | --- | --- |
//! | 0 | 8 | magic | `CHGCTLFW` |
//! | 8 | 2 | format_version | `1` |
//! | 10 | 2 | header_len | `256`; the payload starts here |
//! | 12 | 4 | flags | reserved, zero |
//! | 16 | 32 | firmware_version | `MAJOR.MINOR.PATCH[-suffix]`, such as `2.4.1` or `2.5.0-rc.1` |
//! | 48 | 8 | payload_size | payload length in bytes (u64) |
//! | 56 | 32 | payload_sha256 | SHA-256 of the payload |
//! | 88 | 32 | model | compatible charger model, `Zaptec Go` |
//! | 120 | 8 | build_time | seconds since 1970-01-01 UTC (i64) |
//! | 128 | 8 | key_id | first 8 bytes of SHA-256 of the signer's ed25519 public key |
//! | 136 | 56 | reserved | zero |
//! | 192 | 64 | signature | ed25519 signature of bytes 0..192 |
//! | 256 | payload_size | payload | the firmware |
//!
//! The signature covers the header up to the signature; the header carries the payload's
//! SHA-256, so the signature binds the payload without hashing it twice. A verifier checks, in
//! order: magic, format version, header length, reserved bytes, version and model text, image
//! length (`256 + payload_size`), payload SHA-256, then the signature against each trusted key.
//! A later format may grow the header: it changes `format_version` and `header_len`, and a reader
//! refuses a format it does not know.
//!
//! Key files: see [`keys`]. Slots: see [`slots`]. The check an image file passes before it is
//! sent to a charger (read, parse, verify, describe): see [`preflight`]. The same description,
//! for users, is in chargectl-firmware(5).

mod error;
pub mod image;
pub mod keys;
pub mod preflight;
pub mod slots;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::{Error, ErrorKind, Result};
pub use image::{
    FORMAT_VERSION, HEADER_LEN, Header, Inspection, MAGIC, MODEL, PackOptions, SIGNED_LEN,
    SignatureStatus, inspect, pack, pack_with, parse_header, validate_version, verify,
};
pub use preflight::{CheckedImage, PreflightError, Verdict, check_file};
pub use slots::{BootOutcome, BootState, SlotInfo, SlotName, SlotState, Slots, StagingInfo};

#[cfg(test)]
mod tests;
