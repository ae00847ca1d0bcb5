//! The charger's flash as two firmware slots, A and B, kept in a directory.
//!
//! Files in the directory:
//!
//! | file | content |
//! | --- | --- |
//! | `slots.json` | metadata: active slot, slot to boot next, each slot's version and image SHA-256, the transfer in progress |
//! | `A.img`, `B.img` | the verified image held by each slot (the factory image of slot A has no file) |
//! | `A.img.partial`, `B.img.partial` | the image being received into the inactive slot |
//!
//! Invariants:
//! - only the inactive slot is ever written; the active slot's file and metadata entry are left
//!   alone until [`Slots::boot`] switches;
//! - every metadata change is one atomic replace of `slots.json` (write, fsync, rename, fsync the
//!   directory), so a power cut leaves either the old or the new metadata;
//! - an image becomes bootable only after it verified completely (size, SHA-256 of the whole
//!   image as announced by the transfer, payload SHA-256, trusted ed25519 signature, model); a
//!   failed or interrupted transfer leaves the charger booting the slot it booted before;
//! - transfer progress is made durable (image data fsynced, then the offset recorded) at least
//!   every [`PERSIST_EVERY`] bytes, so a power cut loses at most that much of the transfer, and
//!   [`Slots::begin`] with the same image SHA-256 resumes from the recorded offset;
//! - a new image boots **on trial** (as MCUboot's test swap and RAUC's mark-good): the charger
//!   confirms it with [`Slots::confirm`] once it has booted and its service link or its OCPP
//!   connection is up. Every power-on of an unconfirmed image counts as a failed trial boot (it
//!   crashed, hung or lost power before it could confirm); after [`MAX_TRIAL_BOOTS`] failed
//!   trial boots the next power-on goes back to the slot that ran before and records the
//!   rollback ([`Slots::boot_state`]) until the next install. Starting a new transfer or an
//!   install confirms a trial image first: the host or CSMS that sends it reached the charger.

use super::error::{Error, Result};
use super::image::{self, HEADER_LEN, Header, MODEL};
use crate::storage::{self, failpoint};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// Largest image a slot holds (header included).
pub const MAX_IMAGE_SIZE: u64 = 32 * 1024 * 1024;
/// Transfer progress is made durable at least this often (bytes).
pub const PERSIST_EVERY: u64 = 64 * 1024;
/// Power-ons of a new image that may end without its confirmation before the charger goes
/// back to the previous image: the fourth power-on after an install without a confirmation
/// boots the old slot.
pub const MAX_TRIAL_BOOTS: u32 = 3;
/// Metadata file name inside the slot directory.
pub const METADATA_FILE: &str = "slots.json";
const METADATA_FORMAT: u32 = 1;

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SlotName {
    A,
    B,
}

impl SlotName {
    /// The other slot.
    pub fn other(self) -> SlotName {
        match self {
            SlotName::A => SlotName::B,
            SlotName::B => SlotName::A,
        }
    }

    pub fn as_char(self) -> char {
        match self {
            SlotName::A => 'A',
            SlotName::B => 'B',
        }
    }
}

impl std::fmt::Display for SlotName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// No image.
    Empty,
    /// An image is being received: `received` of `size` bytes so far.
    Staging { received: u64, size: u64 },
    /// A verified image that becomes active at the next power-on.
    Verified,
    /// The image that was active before the last switch (kept, not booted).
    Previous,
    /// The running image.
    Active,
}

impl SlotState {
    /// Short name for JSON output.
    pub fn as_str(&self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::Staging { .. } => "staging",
            SlotState::Verified => "verified",
            SlotState::Previous => "previous",
            SlotState::Active => "active",
        }
    }
}

/// A slot as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub name: SlotName,
    /// Firmware version of the image the slot holds (none while empty or staging).
    pub version: Option<String>,
    pub state: SlotState,
}

/// Whether the running image is confirmed (see [`Slots::boot_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootState {
    /// A confirmed image.
    Normal,
    /// A new image not yet confirmed; `boots` power-ons of it so far (1 on its first boot).
    Trial { version: String, boots: u32 },
    /// The new image `failed_version` never confirmed in [`MAX_TRIAL_BOOTS`] boots; the
    /// previous image runs again.
    RolledBack { failed_version: String, boots: u32 },
}

/// What [`Slots::boot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// A verified slot became active.
    Switched {
        from: SlotName,
        to: SlotName,
        version: String,
    },
    /// Nothing pending: the same slot boots again.
    Unchanged { slot: SlotName, version: String },
    /// A pending slot no longer matched its recorded SHA-256 (storage corruption): it was
    /// dropped and the old slot booted.
    Rejected {
        slot: SlotName,
        kept: SlotName,
        reason: String,
    },
    /// The image on trial failed [`MAX_TRIAL_BOOTS`] boots: the previous slot runs again.
    RolledBack {
        from: SlotName,
        to: SlotName,
        failed_version: String,
        version: String,
    },
}

/// The transfer in progress, as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingInfo {
    pub slot: SlotName,
    pub image_sha256: [u8; 32],
    pub size: u64,
    /// Bytes received so far (in memory; the durable figure may be up to [`PERSIST_EVERY`] less).
    pub received: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct SlotMeta {
    version: Option<String>,
    /// SHA-256 of the whole image file (hex), none for the factory image.
    image_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StagingMeta {
    slot: SlotName,
    image_sha256: String,
    size: u64,
    /// Bytes of the partial file known to be durable.
    offset: u64,
}

/// The active slot runs a new image on trial.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct TrialMeta {
    /// The slot to go back to.
    previous: SlotName,
    /// Power-ons of the trial image so far.
    boots: u32,
}

/// The last rollback, kept until the next install.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct RollbackMeta {
    failed_version: String,
    boots: u32,
    /// The charger reported it (FirmwareStatusNotification).
    #[serde(default)]
    reported: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: u32,
    active: SlotName,
    /// Slot to make active at the next boot.
    pending: Option<SlotName>,
    #[serde(rename = "A")]
    a: SlotMeta,
    #[serde(rename = "B")]
    b: SlotMeta,
    staging: Option<StagingMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trial: Option<TrialMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollback: Option<RollbackMeta>,
}

impl Meta {
    fn slot(&self, name: SlotName) -> &SlotMeta {
        match name {
            SlotName::A => &self.a,
            SlotName::B => &self.b,
        }
    }

    fn slot_mut(&mut self, name: SlotName) -> &mut SlotMeta {
        match name {
            SlotName::A => &mut self.a,
            SlotName::B => &mut self.b,
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.format != METADATA_FORMAT {
            return Err(format!(
                "format {} (this build reads {METADATA_FORMAT})",
                self.format
            ));
        }
        match &self.slot(self.active).version {
            Some(v) => image::validate_version(v).map_err(|e| format!("active slot: {e}"))?,
            None => return Err(format!("active slot {} has no version", self.active)),
        }
        if let Some(p) = self.pending {
            if p == self.active {
                return Err(format!("pending slot {p} is the active slot"));
            }
            if self.slot(p).version.is_none() || self.slot(p).image_sha256.is_none() {
                return Err(format!("pending slot {p} holds no verified image"));
            }
        }
        if let Some(s) = &self.staging {
            if s.slot == self.active {
                return Err(format!("staging targets the active slot {}", s.slot));
            }
            if s.offset > s.size {
                return Err(format!(
                    "staging offset {} beyond its size {}",
                    s.offset, s.size
                ));
            }
            parse_sha(&s.image_sha256).ok_or("staging image_sha256 is not 64 hex digits")?;
            if self.pending == Some(s.slot) {
                return Err(format!("slot {} is both pending and staging", s.slot));
            }
        }
        if let Some(t) = &self.trial {
            if t.previous == self.active {
                return Err(format!(
                    "trial falls back to the active slot {}",
                    t.previous
                ));
            }
            if self.slot(t.previous).version.is_none() {
                return Err(format!(
                    "trial falls back to slot {}, which holds no image",
                    t.previous
                ));
            }
        }
        Ok(())
    }
}

/// The two slots of one charger. One owner at a time (the emulated charger's firmware task).
#[derive(Debug)]
pub struct Slots {
    dir: PathBuf,
    meta: Meta,
    /// The open partial file while a transfer is in progress, positioned at `received`.
    file: Option<File>,
    /// Bytes of the staged image received so far (`meta.staging.offset` is the durable part).
    received: u64,
}

impl Slots {
    /// Opens the slot directory, creating it on first use with slot A active holding
    /// `factory_version`.
    pub fn open(dir: &Path, factory_version: &str) -> Result<Slots> {
        let path = dir.join(METADATA_FILE);
        let meta = match storage::read_optional(&path).map_err(Error::io(&path))? {
            Some(bytes) => {
                let meta: Meta =
                    serde_json::from_slice(&bytes).map_err(|e| Error::SlotMetadata {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                meta.check().map_err(|reason| Error::SlotMetadata {
                    path: path.clone(),
                    reason,
                })?;
                meta
            }
            None => {
                image::validate_version(factory_version)?;
                fs::create_dir_all(dir).map_err(Error::io(dir))?;
                let meta = Meta {
                    format: METADATA_FORMAT,
                    active: SlotName::A,
                    pending: None,
                    a: SlotMeta {
                        version: Some(factory_version.to_owned()),
                        image_sha256: None,
                    },
                    b: SlotMeta::default(),
                    staging: None,
                    trial: None,
                    rollback: None,
                };
                write_meta(dir, &meta)?;
                tracing::info!(dir = %dir.display(), version = factory_version,
                    "initialised firmware slots, slot A active");
                meta
            }
        };
        let received = meta.staging.as_ref().map_or(0, |s| s.offset);
        Ok(Slots {
            dir: dir.to_path_buf(),
            meta,
            file: None,
            received,
        })
    }

    /// The slot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn active(&self) -> SlotInfo {
        self.info(self.meta.active)
    }

    pub fn inactive(&self) -> SlotInfo {
        self.info(self.meta.active.other())
    }

    /// Both slots, A first.
    pub fn all(&self) -> [SlotInfo; 2] {
        [self.info(SlotName::A), self.info(SlotName::B)]
    }

    /// Version of the running firmware.
    pub fn active_version(&self) -> String {
        self.meta
            .slot(self.meta.active)
            .version
            .clone()
            .unwrap_or_default()
    }

    /// The slot that becomes active at the next boot, if a verified image waits.
    pub fn pending(&self) -> Option<SlotInfo> {
        self.meta.pending.map(|p| self.info(p))
    }

    /// Whether the running image is confirmed, on trial, or what a rollback left.
    pub fn boot_state(&self) -> BootState {
        if let Some(t) = &self.meta.trial {
            return BootState::Trial {
                version: self.active_version(),
                boots: t.boots,
            };
        }
        match &self.meta.rollback {
            Some(r) => BootState::RolledBack {
                failed_version: r.failed_version.clone(),
                boots: r.boots,
            },
            None => BootState::Normal,
        }
    }

    /// Confirms the image on trial: it stays active from now on. Returns its version, or
    /// `None` when nothing was on trial.
    pub fn confirm(&mut self) -> Result<Option<String>> {
        if self.meta.trial.is_none() {
            return Ok(None);
        }
        let mut next = self.meta.clone();
        next.trial = None;
        write_meta_as("firmware.confirm", &self.dir, &next)?;
        self.meta = next;
        let version = self.active_version();
        tracing::info!(slot = %self.meta.active, %version, "firmware image confirmed");
        Ok(Some(version))
    }

    /// A rollback the charger has not reported yet (its failed version); marks it reported.
    pub fn take_unreported_rollback(&mut self) -> Result<Option<String>> {
        let Some(r) = self.meta.rollback.as_ref().filter(|r| !r.reported) else {
            return Ok(None);
        };
        let failed = r.failed_version.clone();
        let mut next = self.meta.clone();
        if let Some(r) = next.rollback.as_mut() {
            r.reported = true;
        }
        write_meta(&self.dir, &next)?;
        self.meta = next;
        Ok(Some(failed))
    }

    /// A new image arrives from a host or CSMS that reached the charger: an image on trial is
    /// confirmed first (writing the inactive slot would destroy its fallback), and a recorded
    /// rollback is forgotten.
    fn settle_before_install(&mut self) -> Result<()> {
        self.confirm()?;
        if self.meta.rollback.is_some() {
            self.meta.rollback = None;
            write_meta(&self.dir, &self.meta)?;
        }
        Ok(())
    }

    /// The transfer in progress.
    pub fn staging(&self) -> Option<StagingInfo> {
        let s = self.meta.staging.as_ref()?;
        Some(StagingInfo {
            slot: s.slot,
            image_sha256: parse_sha(&s.image_sha256)?,
            size: s.size,
            received: self.received,
        })
    }

    /// Path of the image file a slot holds (it may not exist: empty slot, factory image).
    pub fn image_path(&self, slot: SlotName) -> PathBuf {
        self.dir.join(format!("{slot}.img"))
    }

    fn partial_path(&self, slot: SlotName) -> PathBuf {
        self.dir.join(format!("{slot}.img.partial"))
    }

    fn info(&self, name: SlotName) -> SlotInfo {
        let m = self.meta.slot(name);
        let state = if name == self.meta.active {
            SlotState::Active
        } else if let Some(s) = self.meta.staging.as_ref().filter(|s| s.slot == name) {
            SlotState::Staging {
                received: self.received,
                size: s.size,
            }
        } else if self.meta.pending == Some(name) {
            SlotState::Verified
        } else if m.version.is_some() {
            SlotState::Previous
        } else {
            SlotState::Empty
        };
        SlotInfo {
            name,
            version: if matches!(state, SlotState::Staging { .. }) {
                None
            } else {
                m.version.clone()
            },
            state,
        }
    }

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

    /// Power-on: a slot holding a verified image becomes active (after its file is checked
    /// against the recorded SHA-256 once more); otherwise the active slot boots again.
    pub fn boot(&mut self) -> Result<BootOutcome> {
        let from = self.meta.active;
        if let Some(t) = self.meta.trial.clone() {
            // The previous power-on of the trial image ended without its confirmation.
            return self.trial_boot(t);
        }
        let Some(to) = self.meta.pending else {
            return Ok(BootOutcome::Unchanged {
                slot: from,
                version: self.active_version(),
            });
        };
        failpoint::check("firmware.switch.before").map_err(Error::io(&self.dir))?;
        let recorded = self.meta.slot(to).image_sha256.clone().unwrap_or_default();
        let img = self.image_path(to);
        let problem = match storage::read_optional(&img) {
            Ok(Some(bytes)) => {
                let actual = hex::encode(Sha256::digest(&bytes));
                (actual != recorded)
                    .then(|| format!("{} hashes to {actual}, recorded {recorded}", img.display()))
            }
            Ok(None) => Some(format!("{} is missing", img.display())),
            Err(e) => Some(format!("{}: {e}", img.display())),
        };
        if let Some(reason) = problem {
            self.meta.pending = None;
            *self.meta.slot_mut(to) = SlotMeta::default();
            write_meta(&self.dir, &self.meta)?;
            tracing::error!(slot = %to, %reason, "pending firmware slot is corrupt; booting the old slot");
            return Ok(BootOutcome::Rejected {
                slot: to,
                kept: from,
                reason,
            });
        }
        let mut next = self.meta.clone();
        next.active = to;
        next.pending = None;
        next.trial = Some(TrialMeta {
            previous: from,
            boots: 1,
        });
        next.rollback = None;
        write_meta_as("firmware.switch", &self.dir, &next)?;
        self.meta = next;
        let version = self.active_version();
        tracing::info!(%from, %to, %version, "booted into the new firmware slot, on trial");
        Ok(BootOutcome::Switched { from, to, version })
    }

    /// Power-on while the active image is on trial: one more trial boot, or back to the
    /// previous slot after [`MAX_TRIAL_BOOTS`].
    fn trial_boot(&mut self, t: TrialMeta) -> Result<BootOutcome> {
        let failed = self.meta.active;
        let failed_version = self.active_version();
        let mut next = self.meta.clone();
        if t.boots < MAX_TRIAL_BOOTS {
            next.trial = Some(TrialMeta {
                boots: t.boots + 1,
                ..t
            });
            write_meta(&self.dir, &next)?;
            self.meta = next;
            tracing::warn!(slot = %failed, version = %failed_version, boots = t.boots + 1,
                "firmware image still not confirmed; trial boot again");
            return Ok(BootOutcome::Unchanged {
                slot: failed,
                version: failed_version,
            });
        }
        next.active = t.previous;
        next.pending = None;
        next.trial = None;
        next.rollback = Some(RollbackMeta {
            failed_version: failed_version.clone(),
            boots: t.boots,
            reported: false,
        });
        write_meta_as("firmware.revert", &self.dir, &next)?;
        self.meta = next;
        let version = self.active_version();
        tracing::error!(%failed, %failed_version, to = %t.previous, %version,
            "firmware image failed {} trial boots; back to the previous slot", t.boots);
        Ok(BootOutcome::RolledBack {
            from: failed,
            to: t.previous,
            failed_version,
            version,
        })
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

fn write_meta(dir: &Path, meta: &Meta) -> Result<()> {
    write_meta_as("slots", dir, meta)
}

/// Replaces the metadata as the named document `doc` (its failpoints, see
/// [`crate::storage::failpoint`]).
fn write_meta_as(doc: &str, dir: &Path, meta: &Meta) -> Result<()> {
    let path = dir.join(METADATA_FILE);
    let mut bytes = serde_json::to_vec_pretty(meta).map_err(|e| Error::SlotMetadata {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    storage::write_doc(doc, &path, &bytes).map_err(Error::io(&path))
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

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(Error::io(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(Error::io(path))?;
    Ok(bytes)
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path)(e)),
    }
}

fn parse_sha(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
