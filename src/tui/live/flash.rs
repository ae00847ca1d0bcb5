//! The firmware screen's work: the image check ([`crate::firmware::preflight`], run off the
//! runtime) shown as [`ImageInfo`], and flashing with progress forwarded as messages.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use super::session::Gate;
use crate::firmware::{CheckedImage, PreflightError, Verdict, VerifyingKey};
use crate::link::{self, Client};
use crate::tui::msg::{FlashProgress, ImageInfo, Msg, SignatureStatus};

/// Checks an image against `trusted` and reports what the firmware screen shows.
pub(super) async fn inspect(gate: Gate, request: u64, path: PathBuf, trusted: Vec<VerifyingKey>) {
    let context = format!("inspecting image {}", path.display());
    let p = path.clone();
    let checked =
        tokio::task::spawn_blocking(move || crate::firmware::check_file(&p, &trusted)).await;
    let msg = match checked {
        Ok(Ok(image)) => Msg::ImageInspected {
            request,
            info: image_info(&image),
        },
        Ok(Err(e)) => Msg::Error {
            context,
            message: match e {
                PreflightError::Read { error, .. } => format!("cannot read it: {error}"),
                PreflightError::Format { error, .. } | PreflightError::Damaged { error, .. } => {
                    error.to_string()
                }
                PreflightError::Empty { .. } => "the file is empty".into(),
            },
        },
        Err(e) => Msg::Error {
            context,
            message: e.to_string(),
        },
    };
    gate.send(msg).await;
}

/// What the firmware screen shows of a checked image.
fn image_info(image: &CheckedImage) -> ImageInfo {
    let signature = match image.verdict() {
        Verdict::WrongSize { payload, announced } => SignatureStatus::Invalid(format!(
            "the payload has {payload} bytes, the header says {announced}"
        )),
        Verdict::WrongHash => {
            SignatureStatus::Invalid("the payload does not match the header's SHA-256".into())
        }
        Verdict::BadSignature { key_id } => SignatureStatus::Invalid(format!(
            "the signature does not verify with trusted key {key_id}"
        )),
        Verdict::UnknownKey { key_id } => SignatureStatus::UnknownKey { key_id },
        Verdict::Unchecked { key_id } => SignatureStatus::Unchecked { key_id },
        Verdict::Trusted { fingerprint } => SignatureStatus::Valid {
            key_id: fingerprint,
        },
    };
    ImageInfo {
        path: image.path.clone(),
        version: image.header().firmware_version.clone(),
        size: image.bytes.len() as u64,
        sha256: image.file_sha256_hex(),
        built: image.built(),
        signature,
    }
}

/// Reads an image and checks what can be checked here (header, size, hash) before the charger
/// is touched; the signature is the charger's to check.
fn read_image(path: &std::path::Path) -> Result<CheckedImage, String> {
    let image = crate::firmware::check_file(path, &[]).map_err(|e| match e {
        PreflightError::Format { error, .. } => format!("image {}: {error}", path.display()),
        other => other.to_string(),
    })?;
    if !image.verdict().intact() {
        return Err(format!(
            "image {} is damaged: its payload does not match its header",
            path.display()
        ));
    }
    Ok(image)
}

pub(super) async fn flash(client: Client, gate: Gate, path: PathBuf) {
    let p = path.clone();
    let image = match tokio::task::spawn_blocking(move || read_image(&p)).await {
        Ok(Ok(image)) => image,
        Ok(Err(reason)) => {
            gate.send(Msg::FlashFailed { reason }).await;
            return;
        }
        Err(e) => {
            gate.send(Msg::FlashFailed {
                reason: e.to_string(),
            })
            .await;
            return;
        }
    };
    let (tx, mut rx) = watch::channel(link::FlashProgress::default());
    let g = gate.clone();
    let forward = async move {
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            g.send(Msg::FlashProgress(FlashProgress {
                done: p.done,
                total: p.total,
                rate: p.rate,
                eta: p
                    .eta_secs
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64),
            }))
            .await;
        }
    };
    let send = async {
        let result = client
            .flash(
                &image.bytes,
                image.header_bytes(),
                &link::FlashOptions::default(),
                &tx,
            )
            .await;
        drop(tx);
        result
    };
    // Both in this task: aborting the session's tasks stops the transfer and its progress.
    let (result, ()) = tokio::join!(send, forward);
    let msg = match result {
        Ok(report) => {
            tracing::info!(version = %report.version, bytes = report.total, "flashed");
            Msg::FlashFinished
        }
        Err(e) => Msg::FlashFailed {
            reason: e.to_string(),
        },
    };
    gate.send(msg).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn images_are_marked_unchecked_without_trusted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::firmware::keys::generate();
        let other = crate::firmware::keys::generate();
        let image = crate::firmware::pack(b"payload bytes", "2.2.0", &key).unwrap();
        let path = dir.path().join("fw.bin");
        std::fs::write(&path, &image).unwrap();
        let inspect_image = |path: &std::path::Path, trusted: &[VerifyingKey]| {
            crate::firmware::check_file(path, trusted).map(|i| image_info(&i))
        };

        let info = inspect_image(&path, &[]).unwrap();
        assert_eq!(info.version, "2.2.0");
        assert_eq!(info.size, image.len() as u64);
        assert_eq!(info.sha256, hex::encode(Sha256::digest(&image)));
        assert!(
            matches!(info.signature, SignatureStatus::Unchecked { .. }),
            "{info:?}"
        );
        let info = inspect_image(&path, &[key.verifying_key()]).unwrap();
        assert!(
            matches!(info.signature, SignatureStatus::Valid { .. }),
            "{info:?}"
        );
        let info = inspect_image(&path, &[other.verifying_key()]).unwrap();
        assert!(
            matches!(info.signature, SignatureStatus::UnknownKey { .. }),
            "{info:?}"
        );

        let mut damaged = image.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 0xFF;
        }
        std::fs::write(&path, &damaged).unwrap();
        let info = inspect_image(&path, &[]).unwrap();
        assert!(
            matches!(info.signature, SignatureStatus::Invalid(_)),
            "{info:?}"
        );
        assert!(read_image(&path).unwrap_err().contains("damaged"));
        std::fs::write(&path, b"not an image").unwrap();
        assert!(inspect_image(&path, &[]).is_err());
        assert!(read_image(&path).is_err());
    }
}
