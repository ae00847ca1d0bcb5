//! The local authorization list (OCPP 1.6 §3.5, Local Auth List Management profile): the
//! identifiers the CSMS sends with SendLocalList, their idTagInfo and the list version, persisted
//! in the state directory so the list survives a restart.
//!
//! The charger holds at most 1024 entries and accepts at most 255 in one SendLocalList (release
//! notes, Local Auth List Management profile). Decisions where the specification leaves room:
//!
//! - **More entries in one request than SendLocalListMaxLength** → status `Failed`, nothing
//!   changed. The SendLocalList.req schema sets no `maxItems`, so such a payload is syntactically
//!   valid and meets every occurrence constraint of the schema; OCPP-J §4.2.3 reserves
//!   `OccurenceConstraintViolation` for payloads that violate those. The 1.6 UpdateStatus
//!   enumeration defines `Failed` as "Failed to update the Local Authorization List", which is
//!   what happened.
//! - **Version handling**: the 1.6 UpdateStatus enumeration defines `VersionMismatch` as "Version
//!   number in the request for a differential update is less or equal then version number of
//!   current list". The version compared is the one GetLocalListVersion reports, so a CSMS sees
//!   the same number the charger checks against. A Full update sets the version to its
//!   listVersion; a Full update with entries needs a listVersion of at least 1 (version 0 means
//!   "the list is empty", OCPP 1.6 §6.29 GetLocalListVersion.conf), otherwise `Failed`.
//! - **GetLocalListVersion**: 0 when the list is empty (OCPP 1.6: "a version number of 0 (zero)
//!   SHALL be used to indicate that the local authorization list is empty"), -1 while
//!   LocalAuthListEnabled is false ("-1 SHALL be used to indicate that the Charge Point does not
//!   support Local Authorization Lists"), consistent with SendLocalList answering `NotSupported`
//!   while it is disabled. The list itself is kept while disabled.
//! - Identifiers compare case-insensitively (IdToken is a CiString20Type); the spelling the CSMS
//!   sent is kept.
//! - Every change is all or nothing: when an entry is invalid, the list would exceed
//!   LocalAuthListMaxLength, or the file cannot be written, the request answers `Failed` and the
//!   list in memory and on disk is unchanged.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::auth::{LocalList, TagInfo};
use super::messages::{
    GetLocalListVersionResponse, IdTagInfo, IdToken, SendLocalListRequest, SendLocalListResponse,
    UpdateStatus, UpdateType,
};
use crate::storage;

/// File in the state directory holding the list.
pub const FILE_NAME: &str = "local_list.json";

/// Sizes from configuration (LocalAuthListMaxLength, SendLocalListMaxLength).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLimits {
    /// LocalAuthListMaxLength: entries the list may hold.
    pub max_length: usize,
    /// SendLocalListMaxLength: entries one SendLocalList may carry.
    pub send_max_length: usize,
}

impl Default for ListLimits {
    /// The charger's values: 1024 entries, 255 per SendLocalList.
    fn default() -> Self {
        ListLimits {
            max_length: 1024,
            send_max_length: 255,
        }
    }
}

/// Why a SendLocalList was not applied. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum ListRefusal {
    #[error("the local authorization list is disabled (LocalAuthListEnabled is false)")]
    Disabled,
    #[error(
        "differential update with listVersion {requested} is not above the current version {current}"
    )]
    VersionMismatch { requested: i32, current: i32 },
    #[error("{count} entries in one SendLocalList, more than SendLocalListMaxLength {max}")]
    TooManyInRequest { count: usize, max: usize },
    #[error("the list would hold {count} entries, more than LocalAuthListMaxLength {max}")]
    ListFull { count: usize, max: usize },
    #[error("full update with entries needs a listVersion of at least 1, got {version}")]
    BadVersion { version: i32 },
    #[error("entry {index} (idTag {id_tag:?}) of a Full update has no idTagInfo")]
    MissingInfo { index: usize, id_tag: String },
    #[error("writing {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ListRefusal {
    /// The SendLocalList.conf status for this refusal.
    pub fn status(&self) -> UpdateStatus {
        match self {
            ListRefusal::Disabled => UpdateStatus::NotSupported,
            ListRefusal::VersionMismatch { .. } => UpdateStatus::VersionMismatch,
            _ => UpdateStatus::Failed,
        }
    }
}

/// The list file could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ListFileError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line} column {column}: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    id_tag: String,
    info: TagInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListFile {
    version: i32,
    entries: Vec<Entry>,
}

/// The local authorization list held by the charger.
#[derive(Debug)]
pub struct LocalAuthList {
    path: PathBuf,
    limits: ListLimits,
    version: i32,
    entries: BTreeMap<IdToken, TagInfo>,
}

impl LocalAuthList {
    /// Opens the list kept in `state_dir` (empty, version 0, when there is no file yet).
    pub fn open(state_dir: &Path, limits: ListLimits) -> Result<LocalAuthList, ListFileError> {
        let path = state_dir.join(FILE_NAME);
        let bytes = storage::read_optional(&path).map_err(|source| ListFileError::Io {
            path: path.clone(),
            source,
        })?;
        let file: ListFile = match bytes {
            None => ListFile::default(),
            Some(b) => serde_json::from_slice(&b).map_err(|e| ListFileError::Corrupt {
                path: path.clone(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?,
        };
        let mut entries = BTreeMap::new();
        for (n, e) in file.entries.into_iter().enumerate() {
            let tag = IdToken::new(e.id_tag).map_err(|err| ListFileError::Corrupt {
                path: path.clone(),
                line: 0,
                column: 0,
                message: format!("entry {n}: {err}"),
            })?;
            entries.insert(tag, e.info);
        }
        Ok(LocalAuthList {
            path,
            limits,
            version: file.version,
            entries,
        })
    }

    /// Like [`LocalAuthList::open`], but a missing or unreadable file gives an empty list (the
    /// problem is logged); the CSMS then sees version 0 and sends a Full update.
    pub fn open_or_empty(state_dir: &Path, limits: ListLimits) -> LocalAuthList {
        match LocalAuthList::open(state_dir, limits) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "local authorization list unreadable, starting empty");
                LocalAuthList {
                    path: state_dir.join(FILE_NAME),
                    limits,
                    version: 0,
                    entries: BTreeMap::new(),
                }
            }
        }
    }

    pub fn limits(&self) -> ListLimits {
        self.limits
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in identifier order (case-insensitive), as sent by the CSMS.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &TagInfo)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The version as GetLocalListVersion reports it: -1 while disabled, 0 when the list is
    /// empty, otherwise the listVersion of the last accepted update.
    pub fn version(&self, enabled: bool) -> i32 {
        if !enabled {
            -1
        } else {
            self.effective_version()
        }
    }

    /// GetLocalListVersion.conf.
    pub fn version_response(&self, enabled: bool) -> GetLocalListVersionResponse {
        GetLocalListVersionResponse {
            list_version: self.version(enabled),
        }
    }

    fn effective_version(&self) -> i32 {
        if self.entries.is_empty() {
            0
        } else {
            self.version
        }
    }

    /// Applies a SendLocalList (see the module documentation for every rule). On `Err` nothing
    /// changed, in memory or on disk.
    pub fn send_local_list(
        &mut self,
        req: &SendLocalListRequest,
        enabled: bool,
    ) -> Result<(), ListRefusal> {
        if !enabled {
            return Err(ListRefusal::Disabled);
        }
        let items = req.local_authorization_list.as_deref().unwrap_or(&[]);
        if items.len() > self.limits.send_max_length {
            return Err(ListRefusal::TooManyInRequest {
                count: items.len(),
                max: self.limits.send_max_length,
            });
        }
        let mut next = match req.update_type {
            UpdateType::Full => {
                if !items.is_empty() && req.list_version < 1 {
                    return Err(ListRefusal::BadVersion {
                        version: req.list_version,
                    });
                }
                let mut next = BTreeMap::new();
                for (index, item) in items.iter().enumerate() {
                    let Some(info) = &item.id_tag_info else {
                        return Err(ListRefusal::MissingInfo {
                            index,
                            id_tag: item.id_tag.to_string(),
                        });
                    };
                    // Remove first so a later spelling replaces an earlier one.
                    next.remove(&item.id_tag);
                    next.insert(item.id_tag.clone(), tag_info(info));
                }
                next
            }
            UpdateType::Differential => {
                let current = self.effective_version();
                if req.list_version <= current {
                    return Err(ListRefusal::VersionMismatch {
                        requested: req.list_version,
                        current,
                    });
                }
                let mut next = self.entries.clone();
                for item in items {
                    next.remove(&item.id_tag);
                    if let Some(info) = &item.id_tag_info {
                        next.insert(item.id_tag.clone(), tag_info(info));
                    }
                }
                next
            }
        };
        if next.len() > self.limits.max_length {
            return Err(ListRefusal::ListFull {
                count: next.len(),
                max: self.limits.max_length,
            });
        }
        let version = req.list_version;
        self.save(version, &next)?;
        std::mem::swap(&mut self.entries, &mut next);
        self.version = version;
        tracing::info!(
            update = %req.update_type,
            version,
            entries = self.entries.len(),
            "local authorization list updated"
        );
        Ok(())
    }

    /// SendLocalList.conf for a request (the refusal, if any, is logged).
    pub fn handle(&mut self, req: &SendLocalListRequest, enabled: bool) -> SendLocalListResponse {
        let status = match self.send_local_list(req, enabled) {
            Ok(()) => UpdateStatus::Accepted,
            Err(e) => {
                tracing::warn!(reason = %e, "SendLocalList refused");
                e.status()
            }
        };
        SendLocalListResponse { status }
    }

    fn save(&self, version: i32, entries: &BTreeMap<IdToken, TagInfo>) -> Result<(), ListRefusal> {
        let file = ListFile {
            version,
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    id_tag: k.as_str().to_string(),
                    info: v.clone(),
                })
                .collect(),
        };
        let storage_err = |source| ListRefusal::Storage {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| storage_err(std::io::Error::other(e)))?;
        storage::write_doc("local_list", &self.path, &bytes).map_err(storage_err)
    }
}

impl LocalList for LocalAuthList {
    /// The entry for `id_tag` (case-insensitive) as stored; expiry is judged by the caller with
    /// [`TagInfo::is_valid_at`] / [`TagInfo::effective_status`].
    fn lookup(&self, id_tag: &str) -> Option<TagInfo> {
        let key = IdToken::new(id_tag).ok()?;
        self.entries.get(&key).cloned()
    }
}

/// The charger's view of an OCPP idTagInfo.
pub fn tag_info(info: &IdTagInfo) -> TagInfo {
    TagInfo {
        status: info.status.as_str().to_string(),
        expiry_date: info.expiry_date.map(|t| t.as_datetime()),
        parent_id_tag: info.parent_id_tag.as_ref().map(|p| p.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::auth::parse_time;
    use crate::stack::messages::{AuthorizationData, AuthorizationStatus, Timestamp};

    fn data(tag: &str, status: Option<AuthorizationStatus>) -> AuthorizationData {
        AuthorizationData {
            id_tag: IdToken::new(tag).unwrap(),
            id_tag_info: status.map(IdTagInfo::with_status),
        }
    }

    fn req(kind: UpdateType, version: i32, items: Vec<AuthorizationData>) -> SendLocalListRequest {
        SendLocalListRequest {
            list_version: version,
            local_authorization_list: Some(items),
            update_type: kind,
        }
    }

    fn many(n: usize, prefix: &str) -> Vec<AuthorizationData> {
        (0..n)
            .map(|i| data(&format!("{prefix}{i}"), Some(AuthorizationStatus::Accepted)))
            .collect()
    }

    use AuthorizationStatus::{Accepted, Blocked};
    use UpdateType::{Differential, Full};

    #[test]
    fn full_then_differential_add_update_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        assert_eq!(l.version(true), 0);
        let full = req(
            Full,
            3,
            vec![data("A", Some(Accepted)), data("B", Some(Accepted))],
        );
        l.send_local_list(&full, true).unwrap();
        assert_eq!((l.version(true), l.len()), (3, 2));

        let diff = req(
            Differential,
            4,
            vec![
                data("b", Some(Blocked)),  // update, case-insensitive
                data("C", Some(Accepted)), // add
                data("A", None),           // remove
            ],
        );
        assert_eq!(l.handle(&diff, true).status, UpdateStatus::Accepted);
        assert_eq!(l.version(true), 4);
        assert_eq!(l.lookup("A"), None);
        assert_eq!(l.lookup("B").unwrap().status, "Blocked");
        assert_eq!(l.lookup("c").unwrap().status, "Accepted");

        // A Full update replaces everything.
        l.send_local_list(&req(Full, 5, vec![data("Z", Some(Accepted))]), true)
            .unwrap();
        assert_eq!(l.len(), 1);
        assert!(l.lookup("B").is_none());
    }

    #[test]
    fn differential_version_not_above_current_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        l.send_local_list(&req(Full, 7, many(2, "T")), true)
            .unwrap();
        for v in [7, 6, -1] {
            let r = req(Differential, v, vec![data("X", Some(Accepted))]);
            let err = l.send_local_list(&r, true).unwrap_err();
            assert_eq!(err.status(), UpdateStatus::VersionMismatch, "version {v}");
        }
        assert!(l.lookup("X").is_none());
        assert_eq!(l.version(true), 7);
        l.send_local_list(&req(Differential, 8, vec![data("X", Some(Accepted))]), true)
            .unwrap();
        assert_eq!(l.version(true), 8);
    }

    #[test]
    fn version_is_zero_when_empty_and_minus_one_when_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        l.send_local_list(&req(Full, 2, many(1, "T")), true)
            .unwrap();
        assert_eq!(l.version(false), -1);
        assert_eq!(l.version_response(true).list_version, 2);
        l.send_local_list(&req(Differential, 3, vec![data("T0", None)]), true)
            .unwrap();
        assert_eq!(l.version(true), 0);
        // A Full update with entries needs a positive version.
        let err = l
            .send_local_list(&req(Full, 0, many(1, "T")), true)
            .unwrap_err();
        assert_eq!(err.status(), UpdateStatus::Failed);
        // An empty Full update clears the list.
        l.send_local_list(&req(Full, 0, vec![]), true).unwrap();
        assert!(l.is_empty());
    }

    #[test]
    fn send_max_length_accepted_one_more_failed() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        l.send_local_list(&req(Full, 1, many(255, "T")), true)
            .unwrap();
        assert_eq!(l.len(), 255);
        let err = l
            .send_local_list(&req(Full, 2, many(256, "U")), true)
            .unwrap_err();
        assert!(matches!(
            err,
            ListRefusal::TooManyInRequest {
                count: 256,
                max: 255
            }
        ));
        assert_eq!(err.status(), UpdateStatus::Failed);
        assert_eq!((l.len(), l.version(true)), (255, 1));
        assert!(l.lookup("U0").is_none());
    }

    #[test]
    fn total_beyond_max_length_fails_with_nothing_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        let mut v = 1;
        for p in ["A", "B", "C", "D"] {
            let kind = if v == 1 { Full } else { Differential };
            l.send_local_list(&req(kind, v, many(255, p)), true)
                .unwrap();
            v += 1;
        }
        assert_eq!(l.len(), 1020);
        l.send_local_list(&req(Differential, v, many(4, "E")), true)
            .unwrap();
        assert_eq!(l.len(), 1024);
        let err = l
            .send_local_list(&req(Differential, v + 1, many(1, "F")), true)
            .unwrap_err();
        assert!(matches!(
            err,
            ListRefusal::ListFull {
                count: 1025,
                max: 1024
            }
        ));
        assert_eq!(err.status(), UpdateStatus::Failed);
        assert_eq!((l.len(), l.version(true)), (1024, v));
        // Updating existing entries does not grow the list.
        l.send_local_list(
            &req(Differential, v + 1, vec![data("A0", Some(Blocked))]),
            true,
        )
        .unwrap();
        let reopened = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        assert_eq!((reopened.len(), reopened.version(true)), (1024, v + 1));
    }

    #[test]
    fn persists_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        let mut info = IdTagInfo::with_status(Accepted);
        info.expiry_date = Some(Timestamp::parse("2026-12-01T00:00:00Z").unwrap());
        info.parent_id_tag = Some(IdToken::new("GROUP").unwrap());
        let r = req(
            Full,
            9,
            vec![AuthorizationData {
                id_tag: IdToken::new("Card-1").unwrap(),
                id_tag_info: Some(info),
            }],
        );
        l.send_local_list(&r, true).unwrap();
        let back = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        assert_eq!(back.version(true), 9);
        let got = back.lookup("CARD-1").unwrap();
        assert_eq!(got.parent_id_tag.as_deref(), Some("GROUP"));
        assert_eq!(got.expiry_date, parse_time("2026-12-01T00:00:00Z"));
        assert_eq!(back.entries().next().map(|(k, _)| k), Some("Card-1"));
    }

    #[test]
    fn disabled_is_not_supported_and_keeps_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        l.send_local_list(&req(Full, 1, many(3, "T")), true)
            .unwrap();
        let r = l.handle(&req(Full, 2, many(1, "X")), false);
        assert_eq!(r.status, UpdateStatus::NotSupported);
        assert_eq!((l.len(), l.version(true)), (3, 1));
    }

    #[test]
    fn full_entry_without_info_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        let err = l
            .send_local_list(
                &req(Full, 1, vec![data("A", Some(Accepted)), data("B", None)]),
                true,
            )
            .unwrap_err();
        assert!(err.to_string().contains("\"B\""), "{err}");
        assert!(l.is_empty());
    }

    #[test]
    fn failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        l.send_local_list(&req(Full, 1, many(2, "T")), true)
            .unwrap();
        // A directory where the file's temporary sibling must go makes the write fail.
        l.path = dir.path().join("missing-parent-is-a-file").join(FILE_NAME);
        std::fs::write(dir.path().join("missing-parent-is-a-file"), b"x").unwrap();
        let err = l
            .send_local_list(&req(Full, 2, many(1, "X")), true)
            .unwrap_err();
        assert_eq!(err.status(), UpdateStatus::Failed);
        assert!(matches!(err, ListRefusal::Storage { .. }));
        assert_eq!((l.len(), l.version(true)), (2, 1));
        assert!(l.lookup("X").is_none());
    }

    #[test]
    fn expiry_is_judged_through_tag_info() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap();
        let mut info = IdTagInfo::with_status(Accepted);
        info.expiry_date = Some(Timestamp::parse("2026-06-01T00:00:00Z").unwrap());
        let r = req(
            Full,
            1,
            vec![AuthorizationData {
                id_tag: IdToken::new("E").unwrap(),
                id_tag_info: Some(info),
            }],
        );
        l.send_local_list(&r, true).unwrap();
        let t = l.lookup("E").unwrap();
        assert!(t.is_valid_at(parse_time("2026-05-31T23:59:59Z").unwrap()));
        assert!(!t.is_valid_at(parse_time("2026-06-01T00:00:00Z").unwrap()));
        assert_eq!(
            t.effective_status(parse_time("2026-07-01T00:00:00Z").unwrap()),
            "Expired"
        );
    }

    #[test]
    fn corrupt_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\n\"version\": 1,\n oops}").unwrap();
        let err = LocalAuthList::open(dir.path(), ListLimits::default()).unwrap_err();
        assert!(
            matches!(err, ListFileError::Corrupt { line: 3, .. }),
            "{err}"
        );
        let l = LocalAuthList::open_or_empty(dir.path(), ListLimits::default());
        assert_eq!(l.version(true), 0);
    }
}
