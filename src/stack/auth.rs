//! Authorization data held by the charger: the authorization cache (idTagInfo learnt from the
//! CSMS, AuthorizationCacheEnabled, ClearCache) and the seam to the local authorization list.
//!
//! OCPP 1.6 §3.5: the local list takes precedence over the cache; an entry is usable only while
//! its status is Accepted and it has not expired.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::storage;

/// What the charger knows about an idTag (OCPP IdTagInfo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagInfo {
    /// Accepted, Blocked, Expired, Invalid or ConcurrentTx.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id_tag: Option<String>,
}

impl TagInfo {
    pub fn accepted() -> TagInfo {
        TagInfo {
            status: "Accepted".into(),
            expiry_date: None,
            parent_id_tag: None,
        }
    }

    /// Accepted and not expired at `now`.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.status == "Accepted" && self.expiry_date.is_none_or(|d| d > now)
    }

    /// The status as seen at `now` (an expired Accepted entry reads as Expired).
    pub fn effective_status(&self, now: DateTime<Utc>) -> String {
        if self.status == "Accepted" && self.expiry_date.is_some_and(|d| d <= now) {
            "Expired".into()
        } else {
            self.status.clone()
        }
    }
}

/// Parses an OCPP timestamp (RFC 3339; no offset means UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// The local authorization list as the authorization logic sees it (the list itself, with
/// SendLocalList and versions, lives in its own module).
pub trait LocalList {
    fn lookup(&self, id_tag: &str) -> Option<TagInfo>;
}

/// No local list entries.
pub struct EmptyList;

impl LocalList for EmptyList {
    fn lookup(&self, _id_tag: &str) -> Option<TagInfo> {
        None
    }
}

const CACHE_FILE: &str = "authcache.json";
/// Entries kept; the oldest learnt entry goes first when full.
pub const CACHE_CAPACITY: usize = 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    /// idTag → (insertion counter, info)
    entries: BTreeMap<String, (u64, TagInfo)>,
    counter: u64,
}

/// The authorization cache, persisted in the state directory.
pub struct AuthCache {
    path: PathBuf,
    data: CacheFile,
}

impl AuthCache {
    pub fn open(dir: &Path) -> AuthCache {
        let path = dir.join(CACHE_FILE);
        let data = storage::read_optional(&path)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        AuthCache { path, data }
    }

    pub fn get(&self, id_tag: &str) -> Option<&TagInfo> {
        self.data.entries.get(id_tag).map(|(_, i)| i)
    }

    pub fn len(&self) -> usize {
        self.data.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.entries.is_empty()
    }

    /// Learns (or updates) an entry from an idTagInfo the CSMS sent.
    pub fn update(&mut self, id_tag: &str, info: TagInfo) -> std::io::Result<()> {
        self.data.counter += 1;
        let n = self.data.counter;
        self.data.entries.insert(id_tag.to_string(), (n, info));
        while self.data.entries.len() > CACHE_CAPACITY {
            let Some(oldest) = self
                .data
                .entries
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.data.entries.remove(&oldest);
        }
        self.save()
    }

    pub fn clear(&mut self) -> std::io::Result<()> {
        self.data.entries.clear();
        self.save()
    }

    fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&self.data).map_err(std::io::Error::other)?;
        storage::write_doc("auth_cache", &self.path, &bytes)
    }
}

/// Where a local authorization decision came from.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalDecision {
    /// Found in the local list or the cache (which one, and what it says).
    Known { source: &'static str, info: TagInfo },
    /// Neither knows the tag.
    Unknown,
}

/// Looks the tag up in the local list first, then (when enabled) the cache.
pub fn lookup_local(
    id_tag: &str,
    list: Option<&dyn LocalList>,
    cache: Option<&AuthCache>,
) -> LocalDecision {
    if let Some(info) = list.and_then(|l| l.lookup(id_tag)) {
        return LocalDecision::Known {
            source: "local list",
            info,
        };
    }
    if let Some(info) = cache.and_then(|c| c.get(id_tag)) {
        return LocalDecision::Known {
            source: "cache",
            info: info.clone(),
        };
    }
    LocalDecision::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_persists_clears_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = AuthCache::open(dir.path());
        let now = parse_time("2026-01-01T00:00:00Z").unwrap();
        c.update(
            "A",
            TagInfo {
                status: "Accepted".into(),
                expiry_date: parse_time("2026-01-02T00:00:00Z"),
                parent_id_tag: Some("P".into()),
            },
        )
        .unwrap();
        let c2 = AuthCache::open(dir.path());
        let info = c2.get("A").unwrap();
        assert!(info.is_valid_at(now));
        assert!(!info.is_valid_at(parse_time("2026-01-03T00:00:00Z").unwrap()));
        assert_eq!(
            info.effective_status(parse_time("2026-01-03T00:00:00Z").unwrap()),
            "Expired"
        );
        c.clear().unwrap();
        assert!(AuthCache::open(dir.path()).is_empty());
    }

    #[test]
    fn local_list_wins_over_cache() {
        struct One;
        impl LocalList for One {
            fn lookup(&self, id: &str) -> Option<TagInfo> {
                (id == "A").then(|| TagInfo {
                    status: "Blocked".into(),
                    expiry_date: None,
                    parent_id_tag: None,
                })
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut c = AuthCache::open(dir.path());
        c.update("A", TagInfo::accepted()).unwrap();
        match lookup_local("A", Some(&One), Some(&c)) {
            LocalDecision::Known { source, info } => {
                assert_eq!((source, info.status.as_str()), ("local list", "Blocked"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            lookup_local("B", Some(&One), Some(&c)),
            LocalDecision::Unknown
        );
        assert!(matches!(
            lookup_local("A", None, Some(&c)),
            LocalDecision::Known {
                source: "cache",
                ..
            }
        ));
    }

    #[test]
    fn timestamps_without_offset_are_utc() {
        assert_eq!(
            parse_time("2026-05-01T12:00:00").unwrap(),
            parse_time("2026-05-01T12:00:00Z").unwrap()
        );
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = AuthCache::open(dir.path());
        c.path = dir.path().join("x.json");
        for i in 0..(CACHE_CAPACITY + 5) {
            c.data.counter += 1;
            let n = c.data.counter;
            c.data
                .entries
                .insert(format!("T{i}"), (n, TagInfo::accepted()));
        }
        c.update("last", TagInfo::accepted()).unwrap();
        assert_eq!(c.len(), CACHE_CAPACITY);
        assert!(c.get("last").is_some());
        assert!(c.get("T0").is_none());
    }
}
