//! The tool side's record of every serial session: one JSON Lines file per session in the
//! sessions directory (`chargectl paths`), with the charger's identity, each command, each
//! configuration change with its old and new value and the charger's answer, the log records
//! the session received, and a timestamp on every line. Secrets never reach a record: values
//! of write-only keys (AuthorizationKey) are replaced by `<redacted>`, and passwords in URLs by
//! `***`.
//!
//! Files are capped ([`RecorderOptions::max_file`]: further log records are counted, not
//! written) and rotated: when a new session starts, the oldest files go until the directory
//! holds at most [`RecorderOptions::max_total`] bytes and [`RecorderOptions::max_files`] files.
//!
//! A line is `{"t": "2026-12-06T07:00:00.123Z", "type": ..., ...}`; the types are `open`
//! (port, serial_number, firmware_version, protocol), `identity`, `command` (name, detail),
//! `config_read` (entries [{key, value, readonly, write_only}], unknown), `config` (key, old,
//! new, outcome), `ocpp_status` (status), `log` (seq, time, level, target, message),
//! `truncated`, `close`.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::codec::DeviceHello;
use crate::stack::config;
use crate::stack::logbook::LogRecord;
use crate::stack::secret::REDACTED;

/// Limits of the session records.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// Bytes one session file may reach; log records beyond are counted, not written.
    pub max_file: u64,
    /// Bytes all session files together may hold after rotation.
    pub max_total: u64,
    /// Session files kept after rotation.
    pub max_files: usize,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            max_file: 8 << 20,
            max_total: 64 << 20,
            max_files: 500,
        }
    }
}

struct Inner {
    file: std::fs::File,
    written: u64,
    max_file: u64,
    /// Log records not written because the file reached its cap.
    skipped: u64,
    /// Values seen in configuration reads, for the old value of a change.
    known: HashMap<String, Option<String>>,
}

/// A session being recorded. Cloning shares the file.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish()
    }
}

/// The session files in `dir`, oldest first, with their sizes.
pub fn session_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let meta = e.metadata().ok()?;
            (meta.is_file() && path.extension().is_some_and(|x| x == "jsonl"))
                .then_some((path, meta.len()))
        })
        .collect();
    // Names start with the UTC time, so name order is age order.
    files.sort();
    files
}

/// Deletes the oldest session files until at most `max_total` bytes and `max_files` files remain
/// (room is kept for one more file).
pub fn rotate(dir: &Path, opts: &RecorderOptions) {
    let mut files = session_files(dir);
    let mut total: u64 = files.iter().map(|(_, n)| n).sum();
    while !files.is_empty()
        && (total + opts.max_file > opts.max_total || files.len() >= opts.max_files)
    {
        let (path, size) = files.remove(0);
        if std::fs::remove_file(&path).is_ok() {
            total = total.saturating_sub(size);
        }
    }
}

/// A URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// The value of `key` as a record may show it: redacted for a write-only key, URLs without
/// passwords.
pub fn shown_value(key: &str, value: &str) -> String {
    let write_only = config::spec(key)
        .is_some_and(|s| matches!(s.access, config::Access::WriteOnly))
        || key.eq_ignore_ascii_case("AuthorizationKey");
    if write_only {
        REDACTED.to_string()
    } else if value.contains("://") {
        redact_url(value)
    } else {
        value.to_string()
    }
}

impl Recorder {
    /// Starts the record of a session with the charger that answered `hello` on `port`: rotates
    /// the directory, then creates `<dir>/<UTC time>-<serial>.jsonl`.
    pub fn open(
        dir: &Path,
        port: &str,
        hello: &DeviceHello,
        opts: &RecorderOptions,
    ) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        rotate(dir, opts);
        let serial: String = hello
            .serial_number
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let mut path = dir.join(format!("{stamp}-{serial}.jsonl"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = dir.join(format!("{stamp}-{serial}-{n}.jsonl"));
        }
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let recorder = Recorder {
            inner: Arc::new(Mutex::new(Inner {
                file,
                written: 0,
                max_file: opts.max_file,
                skipped: 0,
                known: HashMap::new(),
            })),
            path: Arc::new(path),
        };
        recorder.line(
            "open",
            json!({
                "port": redact_url(port),
                "serial_number": hello.serial_number,
                "firmware_version": hello.firmware_version,
                "protocol": hello.proto,
                "tool": format!("chargectl {}", env!("CARGO_PKG_VERSION")),
            }),
            true,
        );
        Ok(recorder)
    }

    /// The file this session is recorded in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line; `essential` lines are written past the cap (commands and changes are
    /// few), log records are not.
    fn line(&self, kind: &str, mut data: Value, essential: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !essential && inner.written >= inner.max_file {
            inner.skipped += 1;
            return;
        }
        if let Value::Object(map) = &mut data {
            let t = crate::stack::chargepoint::fmt_time(chrono::Utc::now());
            map.insert("type".into(), json!(kind));
            map.insert("t".into(), json!(t));
        }
        let mut text = data.to_string();
        text.push('\n');
        // A full disk loses the record, never the session.
        if inner.file.write_all(text.as_bytes()).is_ok() {
            inner.written += text.len() as u64;
        }
    }

    /// A command of the session (`identify`, `config_get`, `reboot`, `flash`, ...).
    pub fn command(&self, name: &str, detail: Value) {
        self.line("command", json!({"name": name, "detail": detail}), true);
    }

    /// The charger's identity as it answered.
    pub fn identity(&self, identity: &super::Identity) {
        self.line("identity", json!({ "identity": identity }), true);
    }

    /// Values read, remembered as the old values of later changes.
    pub fn config_read(&self, read: &super::ConfigRead) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for e in &read.entries {
            inner.known.insert(e.key.clone(), e.value.clone());
        }
        drop(inner);
        let entries: Vec<Value> = read
            .entries
            .iter()
            .map(|e| {
                json!({
                    "key": e.key,
                    "value": if e.write_only {
                        Some(REDACTED.to_string())
                    } else {
                        e.value.as_deref().map(|v| shown_value(&e.key, v))
                    },
                    "readonly": e.readonly,
                    "write_only": e.write_only,
                })
            })
            .collect();
        self.line(
            "config_read",
            json!({"entries": entries, "unknown": read.unknown}),
            true,
        );
    }

    /// A configuration change with its old value (as last read in this session, `null` when
    /// not read) and the charger's answer.
    pub fn config_change(&self, key: &str, new: &str, outcome: &super::SetOutcome) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let old = inner.known.get(key).cloned().flatten();
        if outcome.is_applied() {
            inner.known.insert(key.to_string(), Some(new.to_string()));
        }
        drop(inner);
        self.line(
            "config",
            json!({
                "key": key,
                "old": old.map(|o| shown_value(key, &o)),
                "new": shown_value(key, new),
                "outcome": outcome,
            }),
            true,
        );
    }

    /// The charger's OCPP state as it reported it.
    pub fn ocpp_status(&self, status: &super::OcppStatus) {
        let mut v = json!(status);
        if let Some(url) = status.csms_url.as_deref() {
            v["csms_url"] = json!(redact_url(url));
        }
        self.line("ocpp_status", json!({ "status": v }), true);
    }

    /// A log record the session received.
    pub fn log(&self, r: &LogRecord) {
        self.line(
            "log",
            json!({
                "seq": r.seq, "time": crate::stack::chargepoint::fmt_time(r.time),
                "level": r.level.as_str(), "target": r.target, "message": r.message,
            }),
            false,
        );
    }

    /// Ends the record (also done when the last clone is dropped, without the line).
    pub fn close(&self) {
        let skipped = self
            .inner
            .lock()
            .map(|i| i.skipped)
            .unwrap_or_else(|e| e.into_inner().skipped);
        if skipped > 0 {
            self.line(
                "truncated",
                json!({ "log_records_not_written": skipped }),
                true,
            );
        }
        self.line("close", json!({}), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> DeviceHello {
        DeviceHello {
            proto: 2,
            max_body: 1024,
            max_chunk: 1024,
            window: 4096,
            serial_number: "ZAP000123".into(),
            firmware_version: "2.1.0".into(),
        }
    }

    #[test]
    fn records_changes_with_old_values_and_never_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recorder::open(
            dir.path(),
            "/dev/ttyUSB0",
            &hello(),
            &RecorderOptions::default(),
        )
        .unwrap();
        r.config_read(&super::super::ConfigRead {
            entries: vec![super::super::ConfigEntry {
                key: "HeartbeatInterval".into(),
                value: Some("60".into()),
                readonly: false,
                write_only: false,
                value_type: "integer".into(),
                reboot_required: false,
            }],
            unknown: vec![],
        });
        r.config_change(
            "HeartbeatInterval",
            "300",
            &super::super::SetOutcome::Accepted,
        );
        r.config_change(
            "AuthorizationKey",
            "00112233445566778899aabbccddeeff",
            &super::super::SetOutcome::Accepted,
        );
        r.config_change(
            "CsmsUrl",
            "wss://cp:hunter2@csms.example.com/ocpp",
            &super::super::SetOutcome::RebootRequired,
        );
        r.close();
        let text = std::fs::read_to_string(r.path()).unwrap();
        assert!(!text.contains("00112233445566778899"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["type"], "open");
        assert_eq!(lines[0]["serial_number"], "ZAP000123");
        let hb = lines
            .iter()
            .find(|l| l["key"] == "HeartbeatInterval")
            .unwrap();
        assert_eq!(
            (hb["old"].as_str(), hb["new"].as_str()),
            (Some("60"), Some("300"))
        );
        assert!(
            lines
                .iter()
                .all(|l| l["t"].as_str().is_some_and(|t| t.ends_with('Z')))
        );
        assert_eq!(lines.last().unwrap()["type"], "close");
    }

    #[test]
    fn a_full_file_counts_log_records_and_rotation_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RecorderOptions {
            max_file: 600,
            max_total: 2000,
            max_files: 100,
        };
        let record = LogRecord {
            seq: 1,
            time: chrono::Utc::now(),
            level: crate::stack::logbook::Level::Info,
            target: "ocpp".into(),
            message: "x".repeat(100),
        };
        let mut paths = Vec::new();
        for _ in 0..6 {
            let r = Recorder::open(dir.path(), "p", &hello(), &opts).unwrap();
            for _ in 0..20 {
                r.log(&record);
            }
            r.close();
            paths.push(r.path().to_path_buf());
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let text = std::fs::read_to_string(paths.last().unwrap()).unwrap();
        assert!(text.contains("\"log_records_not_written\""), "{text}");
        let kept = session_files(dir.path());
        let total: u64 = kept.iter().map(|(_, n)| n).sum();
        assert!(total <= opts.max_total, "{kept:?}");
        assert!(kept.len() < 6, "{kept:?}");
        assert_eq!(kept.last().map(|(p, _)| p), paths.last());
    }
}
