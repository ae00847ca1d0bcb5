//! `slots.json`, the slots' metadata: its shape, the consistency check it passes when read,
//! and its atomic replace (write, fsync, rename, fsync the directory).

use serde::{Deserialize, Serialize};
use std::path::Path;

use super::{METADATA_FILE, METADATA_FORMAT, SlotName};
use crate::firmware::error::{Error, Result};
use crate::firmware::image;
use crate::storage;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct SlotMeta {
    pub(super) version: Option<String>,
    /// SHA-256 of the whole image file (hex), none for the factory image.
    pub(super) image_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct StagingMeta {
    pub(super) slot: SlotName,
    pub(super) image_sha256: String,
    pub(super) size: u64,
    /// Bytes of the partial file known to be durable.
    pub(super) offset: u64,
}

/// The active slot runs a new image on trial.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct TrialMeta {
    /// The slot to go back to.
    pub(super) previous: SlotName,
    /// Power-ons of the trial image so far.
    pub(super) boots: u32,
}

/// The last rollback, kept until the next install.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct RollbackMeta {
    pub(super) failed_version: String,
    pub(super) boots: u32,
    /// The charger reported it (FirmwareStatusNotification).
    #[serde(default)]
    pub(super) reported: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(super) struct Meta {
    pub(super) format: u32,
    pub(super) active: SlotName,
    /// Slot to make active at the next boot.
    pub(super) pending: Option<SlotName>,
    #[serde(rename = "A")]
    pub(super) a: SlotMeta,
    #[serde(rename = "B")]
    pub(super) b: SlotMeta,
    pub(super) staging: Option<StagingMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) trial: Option<TrialMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rollback: Option<RollbackMeta>,
}

impl Meta {
    pub(super) fn slot(&self, name: SlotName) -> &SlotMeta {
        match name {
            SlotName::A => &self.a,
            SlotName::B => &self.b,
        }
    }

    pub(super) fn slot_mut(&mut self, name: SlotName) -> &mut SlotMeta {
        match name {
            SlotName::A => &mut self.a,
            SlotName::B => &mut self.b,
        }
    }

    pub(super) fn check(&self) -> std::result::Result<(), String> {
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

pub(super) fn write_meta(dir: &Path, meta: &Meta) -> Result<()> {
    write_meta_as("slots", dir, meta)
}

/// Replaces the metadata as the named document `doc` (its failpoints, see
/// [`crate::storage::failpoint`]).
pub(super) fn write_meta_as(doc: &str, dir: &Path, meta: &Meta) -> Result<()> {
    let path = dir.join(METADATA_FILE);
    let mut bytes = serde_json::to_vec_pretty(meta).map_err(|e| Error::SlotMetadata {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    storage::write_doc(doc, &path, &bytes).map_err(Error::io(&path))
}

pub(super) fn parse_sha(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
