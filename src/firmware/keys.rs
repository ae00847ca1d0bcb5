//! Signing keys and their files.
//!
//! A key file is one line of text: a type word, one space, the 32 key bytes in standard base64
//! (with padding), and an optional newline:
//!
//! ```text
//! chargectl-ed25519-secret <base64 of the 32-byte ed25519 seed>
//! chargectl-ed25519-public <base64 of the 32-byte ed25519 public key>
//! ```
//!
//! The secret file is written mode 0600; the public file (`NAME.pub`) is world readable. Errors
//! name the file and the line, never the key material.

use super::error::{Error, Result, with_dir};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::Rng as _;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// First word of a secret key file.
pub const SECRET_TAG: &str = "chargectl-ed25519-secret";
/// First word of a public key file.
pub const PUBLIC_TAG: &str = "chargectl-ed25519-public";

/// A fresh signing key from the operating system's random source.
pub fn generate() -> SigningKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rng().fill(&mut seed[..]);
    SigningKey::from_bytes(&seed)
}

/// The 8-byte key id written into image headers: the first 8 bytes of SHA-256(public key).
pub fn key_id(key: &VerifyingKey) -> [u8; 8] {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// The key id as 16 lowercase hex digits, as shown by `firmware inspect`.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(key_id(key))
}

/// Where the public half of the key pair `name` goes: `name` with `.pub` appended.
pub fn public_path(name: &Path) -> PathBuf {
    let mut s = name.as_os_str().to_os_string();
    s.push(".pub");
    PathBuf::from(s)
}

/// Generates a key pair and writes the secret to `name` (mode 0600) and the public key to
/// `name.pub`. Refuses to replace either file unless `force`. Returns (secret, public) paths.
pub fn write_keypair(name: &Path, force: bool) -> Result<(PathBuf, PathBuf)> {
    let key = generate();
    write_keypair_from(name, &key, force)?;
    Ok((name.to_path_buf(), public_path(name)))
}

/// Writes an existing key pair, as [`write_keypair`] does.
pub fn write_keypair_from(name: &Path, key: &SigningKey, force: bool) -> Result<()> {
    let public = public_path(name);
    if !force {
        for path in [name, public.as_path()] {
            if path.symlink_metadata().is_ok() {
                return Err(Error::KeyExists {
                    path: path.to_path_buf(),
                });
            }
        }
    }
    let secret_text = Zeroizing::new(format!(
        "{SECRET_TAG} {}\n",
        STANDARD.encode(key.to_bytes())
    ));
    let public_text = format!(
        "{PUBLIC_TAG} {}\n",
        STANDARD.encode(key.verifying_key().as_bytes())
    );
    // The secret first: a failure then leaves no public key that has no secret.
    crate::storage::write_atomic_private(&with_dir(name), secret_text.as_bytes())
        .map_err(Error::io(name))?;
    crate::storage::write_atomic(&with_dir(&public), public_text.as_bytes())
        .map_err(Error::io(&public))?;
    tracing::info!(secret = %name.display(), public = %public.display(),
        fingerprint = %fingerprint(&key.verifying_key()), "wrote firmware signing key pair");
    Ok(())
}

/// Reads a secret key file.
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let text = read_text(path)?;
    let bytes = decode(path, &text, SECRET_TAG, PUBLIC_TAG)?;
    warn_if_shared(path);
    Ok(SigningKey::from_bytes(&bytes))
}

/// Reads a public key file. A secret key file is accepted too (its public half is used), so a
/// signer can check its own images.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let text = read_text(path)?;
    if text.starts_with(SECRET_TAG) {
        let bytes = decode(path, &text, SECRET_TAG, PUBLIC_TAG)?;
        return Ok(SigningKey::from_bytes(&bytes).verifying_key());
    }
    let bytes = decode(path, &text, PUBLIC_TAG, SECRET_TAG)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| Error::KeyFile {
        path: path.to_path_buf(),
        line: 1,
        reason: "the 32 bytes are not a valid ed25519 public key".into(),
    })
}

/// Parses key file text (public so the serial service and tests can read keys from memory).
pub fn parse_verifying_key(text: &str) -> Result<VerifyingKey> {
    let path = Path::new("<text>");
    let bytes = decode(path, text, PUBLIC_TAG, SECRET_TAG)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| Error::KeyFile {
        path: path.to_path_buf(),
        line: 1,
        reason: "the 32 bytes are not a valid ed25519 public key".into(),
    })
}

/// The text of a public key file for `key`.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_TAG} {}\n", STANDARD.encode(key.as_bytes()))
}

/// Longest key file accepted; a key line is about 70 bytes.
const MAX_KEY_FILE: u64 = 4096;

fn read_text(path: &Path) -> Result<Zeroizing<String>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::io(path))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(Error::KeyFile {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("larger than {MAX_KEY_FILE} bytes; not a key file"),
        });
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Err(Error::KeyFile {
                path: path.to_path_buf(),
                line,
                reason: format!("not UTF-8 text (byte {})", e.valid_up_to()),
            })
        }
    }
}

fn decode(path: &Path, text: &str, tag: &str, other_tag: &str) -> Result<Zeroizing<[u8; 32]>> {
    let err = |line: usize, reason: String| Error::KeyFile {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let kind = |t: &str| if t == SECRET_TAG { "secret" } else { "public" };
    let body = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if body.is_empty() {
        return Err(err(1, format!("empty; expected \"{tag} <base64>\"")));
    }
    if body.contains('\n') {
        return Err(err(
            2,
            "unexpected extra line; a key file holds exactly one line".into(),
        ));
    }
    let (word, b64) = match body.split_once(' ') {
        Some(parts) => parts,
        None => {
            return Err(err(
                1,
                format!("expected \"{tag} <base64>\": no space after the type word"),
            ));
        }
    };
    if word == other_tag {
        return Err(err(
            1,
            format!(
                "this is a {} key, a {} key is needed here",
                kind(other_tag),
                kind(tag)
            ),
        ));
    }
    if word != tag {
        let shown: String = word.chars().take(40).collect();
        return Err(err(
            1,
            format!("unknown key type {shown:?}, expected \"{tag}\""),
        ));
    }
    let decoded = Zeroizing::new(STANDARD.decode(b64.trim_end()).map_err(|e| {
        err(
            1,
            format!(
                "the key is not valid base64 (column {}): {}",
                word.len() + 2,
                describe_base64_error(&e)
            ),
        )
    })?);
    if decoded.len() != 32 {
        return Err(err(
            1,
            format!("the key decodes to {} bytes, expected 32", decoded.len()),
        ));
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&decoded);
    Ok(out)
}

/// Describes a base64 error by position only (the message must not echo key material).
fn describe_base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("invalid character at offset {offset}")
        }
        base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("invalid last symbol at offset {offset}")
        }
        base64::DecodeError::InvalidPadding => "invalid padding".into(),
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                "secret key file is readable by other users");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}
