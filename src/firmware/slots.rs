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
//!
//! Files: this one opens the slots, reports their state and boots (trial boots, confirmation,
//! rollback); `transfer.rs` receives, verifies and stages an image; `meta.rs` is the metadata
//! document and its atomic replace.

use super::error::{Error, Result};
use super::image;
use crate::storage::{self, failpoint};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

mod meta;
mod transfer;

use meta::{Meta, RollbackMeta, SlotMeta, TrialMeta, parse_sha, write_meta, write_meta_as};

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
