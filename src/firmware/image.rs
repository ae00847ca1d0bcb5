//! Packing, parsing and verifying signed images. The layout is documented in the module doc of
//! [`crate::firmware`] and in chargectl-firmware(5).

use super::error::{Error, Result};
use super::keys;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// `b"CHGCTLFW"`, the first 8 bytes of every image.
pub const MAGIC: [u8; 8] = *b"CHGCTLFW";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Length of a format 1 header, signature included. The payload starts here.
pub const HEADER_LEN: usize = 256;
/// Bytes of the header covered by the signature (everything before the signature).
pub const SIGNED_LEN: usize = OFF_SIGNATURE;
/// The model string written by [`pack`]: the charger this tool serves.
pub const MODEL: &str = "Zaptec Go";
/// Room for the firmware version and the model string, zero padded.
pub const VERSION_FIELD_LEN: usize = 32;
pub const MODEL_FIELD_LEN: usize = 32;

pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_FORMAT: usize = 8;
pub(crate) const OFF_HEADER_LEN: usize = 10;
pub(crate) const OFF_FLAGS: usize = 12;
pub(crate) const OFF_VERSION: usize = 16;
pub(crate) const OFF_PAYLOAD_SIZE: usize = 48;
pub(crate) const OFF_PAYLOAD_SHA: usize = 56;
pub(crate) const OFF_MODEL: usize = 88;
pub(crate) const OFF_BUILD_TIME: usize = 120;
pub(crate) const OFF_KEY_ID: usize = 128;
pub(crate) const OFF_RESERVED: usize = 136;
pub(crate) const OFF_SIGNATURE: usize = 192;

/// A parsed image header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format_version: u16,
    /// Firmware version, `MAJOR.MINOR.PATCH[-suffix]`.
    pub firmware_version: String,
    pub payload_size: u64,
    pub payload_sha256: [u8; 32],
    /// Compatible model, such as "Zaptec Go".
    pub model: String,
    /// Build time, seconds since 1970-01-01 UTC.
    pub build_time: i64,
    /// First 8 bytes of the SHA-256 of the signer's public key (see [`keys::key_id`]).
    pub key_id: [u8; 8],
    pub signature: [u8; 64],
}

impl Header {
    /// Total image length the header announces (header + payload).
    pub fn image_len(&self) -> u64 {
        HEADER_LEN as u64 + self.payload_size
    }

    /// The signer's key id as lowercase hex, the same text as [`keys::fingerprint`].
    pub fn key_id_hex(&self) -> String {
        hex::encode(self.key_id)
    }

    pub fn payload_sha256_hex(&self) -> String {
        hex::encode(self.payload_sha256)
    }
}

/// What [`pack_with`] writes into the header besides the payload.
#[derive(Debug, Clone)]
pub struct PackOptions<'a> {
    pub version: &'a str,
    pub model: &'a str,
    /// Seconds since 1970-01-01 UTC.
    pub build_time: i64,
}

/// Packs `payload` into a signed image for [`MODEL`], stamped with the current time.
pub fn pack(payload: &[u8], version: &str, key: &SigningKey) -> Result<Vec<u8>> {
    let build_time = chrono::Utc::now().timestamp();
    pack_with(
        payload,
        &PackOptions {
            version,
            model: MODEL,
            build_time,
        },
        key,
    )
}

/// Packs `payload` with explicit header fields (reproducible builds pass a fixed build time).
pub fn pack_with(payload: &[u8], opts: &PackOptions<'_>, key: &SigningKey) -> Result<Vec<u8>> {
    validate_version(opts.version)?;
    validate_model(opts.model, 0)?;
    if payload.is_empty() {
        return Err(Error::EmptyPayload);
    }
    let size = (HEADER_LEN + payload.len()) as u64;
    if size > super::slots::MAX_IMAGE_SIZE {
        return Err(Error::TooLarge {
            size,
            max: super::slots::MAX_IMAGE_SIZE,
        });
    }
    let mut image = Vec::with_capacity(HEADER_LEN + payload.len());
    image.resize(HEADER_LEN, 0);
    let h = &mut image[..HEADER_LEN];
    h[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&MAGIC);
    h[OFF_FORMAT..OFF_FORMAT + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[OFF_HEADER_LEN..OFF_HEADER_LEN + 2].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    h[OFF_VERSION..OFF_VERSION + opts.version.len()].copy_from_slice(opts.version.as_bytes());
    h[OFF_PAYLOAD_SIZE..OFF_PAYLOAD_SIZE + 8]
        .copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[OFF_PAYLOAD_SHA..OFF_PAYLOAD_SHA + 32].copy_from_slice(&Sha256::digest(payload));
    h[OFF_MODEL..OFF_MODEL + opts.model.len()].copy_from_slice(opts.model.as_bytes());
    h[OFF_BUILD_TIME..OFF_BUILD_TIME + 8].copy_from_slice(&opts.build_time.to_le_bytes());
    h[OFF_KEY_ID..OFF_KEY_ID + 8].copy_from_slice(&keys::key_id(&key.verifying_key()));
    let signature = key.sign(&h[..SIGNED_LEN]);
    h[OFF_SIGNATURE..OFF_SIGNATURE + 64].copy_from_slice(&signature.to_bytes());
    image.extend_from_slice(payload);
    Ok(image)
}

/// Parses and checks the header at the start of `bytes` (only the first [`HEADER_LEN`] bytes
/// are read). Checks magic, format, header length, version, model and padding; not the payload
/// nor the signature.
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    let truncated = || Error::Truncated {
        expected: HEADER_LEN as u64,
        actual: bytes.len() as u64,
    };
    if bytes.len() < MAGIC.len() {
        if MAGIC.starts_with(bytes) {
            return Err(truncated());
        }
        let mut found = [0u8; 8];
        found[..bytes.len()].copy_from_slice(bytes);
        return Err(Error::BadMagic { found });
    }
    let magic: [u8; 8] = array(bytes, OFF_MAGIC);
    if magic != MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    if bytes.len() < OFF_FORMAT + 2 {
        return Err(truncated());
    }
    let format_version = u16::from_le_bytes(array(bytes, OFF_FORMAT));
    if format_version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat(format_version));
    }
    if bytes.len() < HEADER_LEN {
        return Err(truncated());
    }
    let header_len = u16::from_le_bytes(array(bytes, OFF_HEADER_LEN));
    if usize::from(header_len) != HEADER_LEN {
        return Err(Error::BadHeaderLength {
            format: format_version,
            found: header_len,
            expected: HEADER_LEN as u16,
        });
    }
    check_zero(bytes, OFF_FLAGS, OFF_VERSION)?;
    check_zero(bytes, OFF_RESERVED, OFF_SIGNATURE)?;
    let version_field = padded_field(bytes, OFF_VERSION, VERSION_FIELD_LEN, "firmware_version")?;
    let firmware_version = match std::str::from_utf8(version_field) {
        Ok(v) => v.to_owned(),
        Err(e) => {
            return Err(Error::BadVersion {
                version: String::from_utf8_lossy(version_field).into_owned(),
                reason: format!(
                    "not UTF-8 (invalid byte at header offset {})",
                    OFF_VERSION + e.valid_up_to()
                ),
            });
        }
    };
    validate_version(&firmware_version)?;
    let model_field = padded_field(bytes, OFF_MODEL, MODEL_FIELD_LEN, "model")?;
    let model = match std::str::from_utf8(model_field) {
        Ok(m) => m.to_owned(),
        Err(e) => {
            return Err(Error::BadModel {
                offset: OFF_MODEL + e.valid_up_to(),
                reason: "not UTF-8".into(),
            });
        }
    };
    validate_model(&model, OFF_MODEL)?;
    Ok(Header {
        format_version,
        firmware_version,
        payload_size: u64::from_le_bytes(array(bytes, OFF_PAYLOAD_SIZE)),
        payload_sha256: array(bytes, OFF_PAYLOAD_SHA),
        model,
        build_time: i64::from_le_bytes(array(bytes, OFF_BUILD_TIME)),
        key_id: array(bytes, OFF_KEY_ID),
        signature: array(bytes, OFF_SIGNATURE),
    })
}

/// Verifies a whole image: header, size, payload SHA-256, then the signature against `trusted`.
/// Fails with the first problem found, in that order.
pub fn verify(image: &[u8], trusted: &[VerifyingKey]) -> Result<Header> {
    let header = parse_header(image)?;
    check_size(&header, image.len())?;
    check_sha(&header, &image[HEADER_LEN..])?;
    match signature_status(&header, image, trusted) {
        SignatureStatus::Trusted { .. } => Ok(header),
        SignatureStatus::NoKeysGiven => Err(Error::NoTrustedKeys),
        SignatureStatus::Untrusted => Err(Error::UntrustedKey {
            key_id: header.key_id_hex(),
        }),
        SignatureStatus::Invalid => Err(Error::BadSignature {
            key_id: header.key_id_hex(),
        }),
    }
}

/// The signature check's outcome, as [`inspect`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Verified with the trusted key of this fingerprint.
    Trusted { fingerprint: String },
    /// Signed by a key that is not among the trusted ones.
    Untrusted,
    /// No trusted keys given, so the signature was not checked.
    NoKeysGiven,
    /// The trusted key the header names does not verify the signature: the header (or, through
    /// the hash it carries, the payload) was altered after signing.
    Invalid,
}

impl SignatureStatus {
    /// Short name for JSON output: `trusted`, `untrusted`, `unchecked`, `invalid`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignatureStatus::Trusted { .. } => "trusted",
            SignatureStatus::Untrusted => "untrusted",
            SignatureStatus::NoKeysGiven => "unchecked",
            SignatureStatus::Invalid => "invalid",
        }
    }
}

/// Everything known about an image whose header parses, without stopping at the first problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub header: Header,
    /// Bytes actually present after the header.
    pub payload_len: u64,
    /// The payload length equals the header's payload size.
    pub size_ok: bool,
    /// The payload hashes to the header's SHA-256 (false when the size is wrong).
    pub sha_ok: bool,
    pub signature: SignatureStatus,
}

impl Inspection {
    /// Size, hash and a trusted signature all check out.
    pub fn verified(&self) -> bool {
        self.size_ok && self.sha_ok && matches!(self.signature, SignatureStatus::Trusted { .. })
    }

    /// Size and hash check out (the signature may not have been checked).
    pub fn intact(&self) -> bool {
        self.size_ok && self.sha_ok
    }
}

/// Reports on an image: fails only when the header itself cannot be read.
pub fn inspect(image: &[u8], trusted: &[VerifyingKey]) -> Result<Inspection> {
    let header = parse_header(image)?;
    let payload = &image[HEADER_LEN..];
    let size_ok = payload.len() as u64 == header.payload_size;
    let sha_ok = size_ok && check_sha(&header, payload).is_ok();
    let signature = signature_status(&header, image, trusted);
    Ok(Inspection {
        payload_len: payload.len() as u64,
        header,
        size_ok,
        sha_ok,
        signature,
    })
}

/// Checks the firmware version rule: non-empty, at most 32 bytes, `MAJOR.MINOR.PATCH` of
/// decimal numbers without leading zeros, optionally `-suffix` of ASCII letters, digits, `.`,
/// `-`, `_` and `+`.
pub fn validate_version(version: &str) -> Result<()> {
    let bad = |reason: &str| Error::BadVersion {
        version: version.to_owned(),
        reason: reason.to_owned(),
    };
    if version.is_empty() {
        return Err(bad("empty"));
    }
    if version.len() > VERSION_FIELD_LEN {
        return Err(bad(&format!(
            "{} bytes long, at most {VERSION_FIELD_LEN} allowed",
            version.len()
        )));
    }
    if let Some(c) = version.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(bad(&format!("character {c:?} is not printable ASCII")));
    }
    let (core, suffix) = match version.split_once('-') {
        Some((core, suffix)) => (core, Some(suffix)),
        None => (version, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err(bad("expected MAJOR.MINOR.PATCH, such as 2.4.1"));
    }
    for (name, part) in ["MAJOR", "MINOR", "PATCH"].iter().zip(&parts) {
        if part.is_empty() {
            return Err(bad(&format!("{name} is empty")));
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(&format!("{name} {part:?} is not a decimal number")));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(bad(&format!("{name} {part:?} has a leading zero")));
        }
        if part.len() > 9 {
            return Err(bad(&format!("{name} {part:?} is too large")));
        }
    }
    if let Some(suffix) = suffix {
        if suffix.is_empty() {
            return Err(bad("empty suffix after '-'"));
        }
        if let Some(c) = suffix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+')))
        {
            return Err(bad(&format!(
                "character {c:?} not allowed in the suffix (letters, digits, '.', '-', '_', '+')"
            )));
        }
    }
    Ok(())
}

fn validate_model(model: &str, offset: usize) -> Result<()> {
    let bad = |reason: String| Error::BadModel { offset, reason };
    if model.is_empty() {
        return Err(bad("empty".into()));
    }
    if model.len() > MODEL_FIELD_LEN {
        return Err(bad(format!(
            "{} bytes long, at most {MODEL_FIELD_LEN} allowed",
            model.len()
        )));
    }
    if let Some(c) = model.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(bad(format!("character {c:?} is not printable ASCII")));
    }
    Ok(())
}

pub(crate) fn check_size(header: &Header, image_len: usize) -> Result<()> {
    let expected = header.image_len();
    let actual = image_len as u64;
    if actual < expected {
        Err(Error::Truncated { expected, actual })
    } else if actual > expected {
        Err(Error::SizeMismatch { expected, actual })
    } else {
        Ok(())
    }
}

fn check_sha(header: &Header, payload: &[u8]) -> Result<()> {
    let actual: [u8; 32] = Sha256::digest(payload).into();
    if actual != header.payload_sha256 {
        return Err(Error::HashMismatch {
            expected: header.payload_sha256_hex(),
            actual: hex::encode(actual),
        });
    }
    Ok(())
}

/// Checks the header signature. The key id only selects candidates quickly: every trusted key
/// is tried, so a header whose key id field was altered still cannot pass.
fn signature_status(header: &Header, image: &[u8], trusted: &[VerifyingKey]) -> SignatureStatus {
    if trusted.is_empty() {
        return SignatureStatus::NoKeysGiven;
    }
    let signature = Signature::from_bytes(&header.signature);
    let signed = &image[..SIGNED_LEN];
    for key in trusted {
        if key.verify_strict(signed, &signature).is_ok() {
            return SignatureStatus::Trusted {
                fingerprint: keys::fingerprint(key),
            };
        }
    }
    if trusted.iter().any(|k| keys::key_id(k) == header.key_id) {
        SignatureStatus::Invalid
    } else {
        SignatureStatus::Untrusted
    }
}

fn array<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

fn check_zero(bytes: &[u8], from: usize, to: usize) -> Result<()> {
    match bytes[from..to].iter().position(|&b| b != 0) {
        Some(i) => Err(Error::ReservedNotZero {
            offset: from + i,
            byte: bytes[from + i],
        }),
        None => Ok(()),
    }
}

/// The text of a zero-padded field: the bytes before the first zero; every later byte must be
/// zero too.
fn padded_field<'a>(
    bytes: &'a [u8],
    offset: usize,
    len: usize,
    field: &'static str,
) -> Result<&'a [u8]> {
    let raw = &bytes[offset..offset + len];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(len);
    if let Some(i) = raw[end..].iter().position(|&b| b != 0) {
        return Err(Error::BadPadding {
            field,
            offset: offset + end + i,
            byte: raw[end + i],
        });
    }
    Ok(&raw[..end])
}
