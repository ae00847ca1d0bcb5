//! Receiving an image into the inactive slot: begin or resume a transfer, write and make its
//! progress durable, verify the complete image and stage it for the next boot, or abort.

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use super::meta::{SlotMeta, StagingMeta, write_meta};
use super::{MAX_IMAGE_SIZE, PERSIST_EVERY, Slots, read_file, remove_if_exists};
use crate::firmware::error::{Error, Result};
use crate::firmware::image::{self, HEADER_LEN, Header, MODEL};
use crate::storage::{self, failpoint};

impl Slots {
    /// Starts (or resumes) receiving an image of `image_size` bytes whose SHA-256 is
    /// `image_sha256` into the inactive slot. Returns the offset to send from: the durable
    /// progress of an unfinished transfer of the same image, otherwise 0 (any other transfer is
    /// discarded, and the inactive slot's old image with it).
    pub fn begin(&mut self, image_sha256: [u8; 32], image_size: u64) -> Result<u64> {
        if image_size < HEADER_LEN as u64 {
            return Err(Error::Truncated {
                expected: HEADER_LEN as u64,
                actual: image_size,
            });
        }
        if image_size > MAX_IMAGE_SIZE {
            return Err(Error::TooLarge {
                size: image_size,
                max: MAX_IMAGE_SIZE,
            });
        }
        self.settle_before_install()?;
        let target = self.meta.active.other();
        let sha_hex = hex::encode(image_sha256);
        let same = self
            .meta
            .staging
            .as_ref()
            .is_some_and(|s| s.image_sha256 == sha_hex && s.size == image_size);
        if same && self.file.is_some() {
            // The link dropped but the charger kept running: keep what arrived.
            self.sync()?;
        }
        if let Some(s) = self.meta.staging.clone().filter(|_| same) {
            self.file = None;
            if let Some(file) = open_partial(&self.partial_path(target), s.offset)? {
                self.file = Some(file);
                self.received = s.offset;
                tracing::info!(slot = %target, offset = s.offset, size = image_size,
                    "resuming firmware transfer");
                return Ok(s.offset);
            }
            tracing::warn!(slot = %target, offset = s.offset,
                "partial image shorter than its recorded progress; restarting the transfer");
        }
        self.file = None;
        let partial = self.partial_path(target);
        remove_if_exists(&partial)?;
        self.meta.staging = Some(StagingMeta {
            slot: target,
            image_sha256: sha_hex,
            size: image_size,
            offset: 0,
        });
        if self.meta.pending == Some(target) {
            self.meta.pending = None;
        }
        *self.meta.slot_mut(target) = SlotMeta::default();
        write_meta(&self.dir, &self.meta)?;
        remove_if_exists(&self.image_path(target))?;
        let file = open_partial(&partial, 0)?.ok_or_else(|| Error::Io {
            path: partial.clone(),
            error: io::Error::other("partial image vanished while it was created"),
        })?;
        self.file = Some(file);
        self.received = 0;
        tracing::info!(slot = %target, size = image_size, "starting firmware transfer");
        Ok(0)
    }

    /// Writes `data` at `offset` of the staged image. Bytes below the current offset were
    /// already received and are skipped (a retransmission); an offset above it is a gap and an
    /// error. Returns the new offset.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<u64> {
        let (target, size, durable) = match &self.meta.staging {
            Some(s) => (s.slot, s.size, s.offset),
            None => return Err(Error::NoStaging),
        };
        if offset > self.received {
            return Err(Error::Gap {
                offset,
                expected: self.received,
            });
        }
        let len = data.len() as u64;
        if offset.saturating_add(len) > size {
            return Err(Error::Overflow { offset, len, size });
        }
        let skip = self.received - offset;
        if skip >= len {
            return Ok(self.received);
        }
        if self.file.is_none() {
            // After a failed write: continue from the durable offset.
            let path = self.partial_path(target);
            self.file = open_partial(&path, durable)?;
            self.received = durable;
            if self.file.is_none() {
                return Err(Error::Io {
                    path,
                    error: io::Error::other("partial image lost; begin the transfer again"),
                });
            }
            if offset > self.received {
                return Err(Error::Gap {
                    offset,
                    expected: self.received,
                });
            }
        }
        let skip = (self.received - offset) as usize;
        let path = self.partial_path(target);
        let result = match self.file.as_mut() {
            Some(f) => failpoint::writable()
                .and_then(|()| f.write_all(&data[skip..]))
                .and_then(|()| failpoint::check("firmware.chunk.after_write")),
            None => Err(io::Error::other("partial image not open")),
        };
        if let Err(source) = result {
            self.file = None;
            self.received = durable;
            return Err(Error::Io {
                path,
                error: source,
            });
        }
        self.received = offset + len;
        if self.received - durable >= PERSIST_EVERY || self.received == size {
            self.sync()?;
        }
        Ok(self.received)
    }

    /// Makes the transfer progress durable now: fsyncs the received bytes, then records the
    /// offset in the metadata.
    pub fn sync(&mut self) -> Result<()> {
        let Some(staging) = self.meta.staging.as_ref() else {
            return Ok(());
        };
        if staging.offset == self.received {
            return Ok(());
        }
        let path = self.partial_path(staging.slot);
        if let Some(f) = self.file.as_mut()
            && let Err(source) = f
                .sync_data()
                .and_then(|()| failpoint::check("firmware.chunk.after_sync"))
        {
            self.file = None;
            self.received = staging.offset;
            return Err(Error::Io {
                path,
                error: source,
            });
        }
        if let Some(s) = self.meta.staging.as_mut() {
            s.offset = self.received;
        }
        write_meta(&self.dir, &self.meta)?;
        tracing::debug!(offset = self.received, "firmware transfer progress saved");
        Ok(())
    }

    /// Verifies the completely received image and marks the inactive slot to boot next. On any
    /// failure the staged image is discarded and the active slot stays as it was.
    pub fn finish(&mut self, trusted: &[VerifyingKey]) -> Result<Header> {
        let (target, size, expected_sha) = match &self.meta.staging {
            Some(s) => (s.slot, s.size, s.image_sha256.clone()),
            None => return Err(Error::NoStaging),
        };
        if self.received < size {
            return Err(Error::Incomplete {
                received: self.received,
                size,
            });
        }
        self.sync()?;
        self.file = None;
        let partial = self.partial_path(target);
        let image = match read_file(&partial) {
            Ok(image) => image,
            Err(e) => {
                self.discard_after(&e);
                return Err(e);
            }
        };
        let actual_sha = hex::encode(Sha256::digest(&image));
        let checked = if actual_sha != expected_sha {
            Err(Error::StagedHashMismatch {
                expected: expected_sha.clone(),
                actual: actual_sha,
            })
        } else {
            check_image(&image, trusted)
        };
        let header = match checked {
            Ok(h) => h,
            Err(e) => {
                self.discard_after(&e);
                return Err(e);
            }
        };
        let img = self.image_path(target);
        fs::rename(&partial, &img).map_err(Error::io(&img))?;
        failpoint::check("firmware.finish.renamed").map_err(Error::io(&img))?;
        storage::sync_dir(&self.dir).map_err(Error::io(&self.dir))?;
        self.meta.staging = None;
        *self.meta.slot_mut(target) = SlotMeta {
            version: Some(header.firmware_version.clone()),
            image_sha256: Some(expected_sha),
        };
        self.meta.pending = Some(target);
        write_meta(&self.dir, &self.meta)?;
        self.received = 0;
        tracing::info!(slot = %target, version = %header.firmware_version,
            "firmware image verified; it boots at the next power-on");
        Ok(header)
    }

    /// Cancels the transfer in progress (the inactive slot is left empty).
    pub fn abort(&mut self) -> Result<()> {
        let Some(target) = self.meta.staging.as_ref().map(|s| s.slot) else {
            return Ok(());
        };
        self.file = None;
        self.meta.staging = None;
        self.received = 0;
        write_meta(&self.dir, &self.meta)?;
        remove_if_exists(&self.partial_path(target))?;
        tracing::info!(slot = %target, "firmware transfer cancelled");
        Ok(())
    }

    fn discard_after(&mut self, cause: &Error) {
        tracing::warn!(error = %cause, "staged firmware image rejected; discarding it");
        if let Err(e) = self.abort() {
            tracing::error!(error = %e, "could not discard the rejected staged image");
        }
    }

    /// Installs a whole image at once into the inactive slot (OCPP UpdateFirmware downloads the
    /// file first). The image is verified before anything is written; it boots at the next
    /// power-on. A transfer in progress is cancelled.
    pub fn install_image(&mut self, image: &[u8], trusted: &[VerifyingKey]) -> Result<Header> {
        let header = check_image(image, trusted)?;
        self.settle_before_install()?;
        let target = self.meta.active.other();
        self.abort()?;
        if self.meta.pending == Some(target) {
            self.meta.pending = None;
        }
        *self.meta.slot_mut(target) = SlotMeta::default();
        write_meta(&self.dir, &self.meta)?;
        let img = self.image_path(target);
        storage::write_doc("firmware.image", &img, image).map_err(Error::io(&img))?;
        *self.meta.slot_mut(target) = SlotMeta {
            version: Some(header.firmware_version.clone()),
            image_sha256: Some(hex::encode(Sha256::digest(image))),
        };
        self.meta.pending = Some(target);
        write_meta(&self.dir, &self.meta)?;
        tracing::info!(slot = %target, version = %header.firmware_version,
            "firmware image installed; it boots at the next power-on");
        Ok(header)
    }
}

/// Verifies an image for this charger: format, size, hash, trusted signature, then the model.
fn check_image(image: &[u8], trusted: &[VerifyingKey]) -> Result<Header> {
    if image.len() as u64 > MAX_IMAGE_SIZE {
        return Err(Error::TooLarge {
            size: image.len() as u64,
            max: MAX_IMAGE_SIZE,
        });
    }
    let header = image::verify(image, trusted)?;
    if header.model != MODEL {
        return Err(Error::WrongModel {
            found: header.model,
            expected: MODEL.to_owned(),
        });
    }
    Ok(header)
}

/// Opens the partial file for appending at `offset`, cutting off anything beyond it (bytes
/// written after the last durable offset may be torn). `None` when the file is missing or
/// shorter than `offset`.
fn open_partial(path: &Path, offset: u64) -> Result<Option<File>> {
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(offset == 0)
        .truncate(false)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path)(e)),
    };
    let len = file.metadata().map_err(Error::io(path))?.len();
    if len < offset {
        return Ok(None);
    }
    if len > offset {
        file.set_len(offset).map_err(Error::io(path))?;
        file.sync_data().map_err(Error::io(path))?;
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(Error::io(path))?;
    Ok(Some(file))
}
