//! Secrets (AuthorizationKey, passwords) live in [`Secret`] (text) or [`SecretBytes`] (bytes,
//! such as the HTTP Basic password decoded from an AuthorizationKey), whose `Debug` and `Display`
//! print a placeholder, so a secret can never reach a log line, a trace, an error or `--json`
//! output by accident. Both wipe their memory when dropped.

use std::fmt;
use zeroize::Zeroize;

/// Text that must never be printed. The only way to read it is [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

/// What a secret prints as, everywhere.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (an HTTP Basic header, a file).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Bytes that must never be printed (a password that need not be text). The only way to read
/// them is [`SecretBytes::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(value.into())
    }

    /// The bytes themselves, for the one place that needs them (an HTTP Basic header).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Secret> for SecretBytes {
    fn from(secret: Secret) -> Self {
        Self(secret.expose().as_bytes().to_vec())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("00112233445566778899aabbccddeeff");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(
            format!("{:?}", Some(s.clone())),
            format!("Some({REDACTED})")
        );
        assert_eq!(s.expose(), "00112233445566778899aabbccddeeff");
    }

    #[test]
    fn secret_bytes_print_nothing_of_themselves() {
        let b = SecretBytes::new(b"hunter2\x00\xff".to_vec());
        assert_eq!(format!("{b}"), REDACTED);
        assert_eq!(format!("{b:?}"), REDACTED);
        assert_eq!(
            format!("{:#?}", Some(b.clone())),
            format!("Some(\n    {REDACTED},\n)")
        );
        assert_eq!(b.expose(), b"hunter2\x00\xff");
        assert!(!b.is_empty());
        let from_text = SecretBytes::from(Secret::new("abc"));
        assert_eq!(from_text.expose(), b"abc");
    }

    #[test]
    fn zeroize_wipes_the_bytes() {
        // What Drop does, observed on a value that stays alive.
        let mut b = SecretBytes::new(b"top secret".to_vec());
        b.0.zeroize();
        assert!(b.expose().iter().all(|&x| x == 0) || b.expose().is_empty());
        let mut s = Secret::new("top secret");
        s.0.zeroize();
        assert!(!s.expose().contains("secret"));
    }
}
