//! Support bundles: a charger's state packed for a colleague, as a `.tar.gz` with a manifest
//! (size and SHA-256 of every file). Built from a connected charger ([`Snapshot::read`]) or,
//! when it is no longer attached, from the recorded serial sessions ([`Snapshot::from_records`]).
//! Secrets never reach a part: write-only values are `<redacted>`, URL passwords `***`, and
//! every part is scrubbed once more before it is packed ([`scrub`]).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::link::recorder::{redact_url, session_files, shown_value};
use crate::link::{self, Client, LogEvent};
use crate::stack::logbook::Level;
use crate::stack::secret::REDACTED;

/// Most bytes of chargectl's own log packed (its newest lines).
pub const OWN_LOG_BYTES: usize = 512 * 1024;
/// Most session records of the charger packed (the newest).
pub const SESSIONS: usize = 20;

/// Where a bundle's charger state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Port,
    Records,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Port => "port",
            Source::Records => "records",
        }
    }
}

/// The parts of a bundle, before packing: (path inside the bundle, bytes).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub serial_number: String,
    pub source: Source,
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Link(#[from] link::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no recorded session{} in {dir}", serial.as_ref().map(|s| format!(" of charger {s}")).unwrap_or_default())]
    NoRecords {
        dir: PathBuf,
        serial: Option<String>,
    },
}

fn json_bytes(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

impl Snapshot {
    /// Reads everything from the connected charger: identity, every key, its OCPP state and
    /// trace, its log since boot; adds its recorded sessions and chargectl's own log.
    pub async fn read(
        client: &Client,
        sessions_dir: &Path,
        log_dir: &Path,
    ) -> Result<Snapshot, Error> {
        let identity = client.identify().await?;
        let config = client.config_get(Vec::new()).await?;
        let status = client.ocpp_status().await?;
        let trace = client.ocpp_trace().await?;
        let mut logs = client.logs(Level::Trace, false).await?;
        let mut log_lines = Vec::new();
        while let Some(ev) = logs.next().await {
            let line = match ev {
                LogEvent::Record(r) => json!({
                    "seq": r.seq, "time": crate::stack::chargepoint::fmt_time(r.time),
                    "level": r.level.as_str(), "target": r.target, "message": r.message,
                }),
                LogEvent::Dropped(n) => json!({ "dropped": n }),
            };
            log_lines.extend_from_slice(line.to_string().as_bytes());
            log_lines.push(b'\n');
        }
        let entries: Vec<Value> = config
            .entries
            .iter()
            .map(|e| {
                json!({
                    "key": e.key,
                    "value": if e.write_only { Some(REDACTED.to_string()) }
                             else { e.value.as_deref().map(|v| shown_value(&e.key, v)) },
                    "readonly": e.readonly, "write_only": e.write_only,
                    "type": e.value_type, "reboot_required": e.reboot_required,
                })
            })
            .collect();
        let status = status.map(|s| {
            let mut v = json!(s);
            if let Some(url) = s.csms_url.as_deref() {
                v["csms_url"] = json!(redact_url(url));
            }
            v
        });
        let mut files = vec![
            ("identity.json".to_string(), json_bytes(&json!(identity))),
            (
                "configuration.json".to_string(),
                json_bytes(&json!({"entries": entries})),
            ),
            (
                "ocpp.json".to_string(),
                json_bytes(&json!({
                    "status": status,
                    "note": if status.is_none() { Some("this firmware does not report its OCPP state") } else { None },
                })),
            ),
            ("charger-log.jsonl".to_string(), log_lines),
        ];
        let trace_lines: Vec<u8> = match &trace {
            Some(t) => t
                .iter()
                .flat_map(|e| {
                    let mut l = json!({
                        "time": chrono::DateTime::from_timestamp_millis(e.at_ms)
                            .map(crate::stack::chargepoint::fmt_time),
                        "direction": e.direction, "frame": serde_json::from_str::<Value>(&e.frame)
                            .unwrap_or_else(|_| json!(e.frame)),
                    })
                    .to_string()
                    .into_bytes();
                    l.push(b'\n');
                    l
                })
                .collect(),
            None => b"{\"note\":\"this firmware keeps no OCPP trace it can send\"}\n".to_vec(),
        };
        files.push(("ocpp-trace.jsonl".to_string(), trace_lines));
        add_sessions(&mut files, sessions_dir, &identity.serial_number);
        add_own_log(&mut files, log_dir);
        Ok(Snapshot {
            serial_number: identity.serial_number,
            source: Source::Port,
            files,
        })
    }

    /// Builds the charger's state from its recorded sessions: the newest identity, the newest
    /// full configuration read with the changes made after it, the last OCPP state reported, the
    /// log records the sessions received. `serial`: which charger (default: the one of the
    /// newest session).
    pub fn from_records(
        sessions_dir: &Path,
        log_dir: &Path,
        serial: Option<&str>,
    ) -> Result<Snapshot, Error> {
        let mut files = session_files(sessions_dir);
        let serial_of = |p: &Path| -> Option<String> {
            let text = std::fs::read_to_string(p).ok()?;
            let first: Value = serde_json::from_str(text.lines().next()?).ok()?;
            first["serial_number"].as_str().map(str::to_string)
        };
        let serial = match serial {
            Some(s) => s.to_string(),
            None => files
                .iter()
                .rev()
                .find_map(|(p, _)| serial_of(p))
                .ok_or_else(|| Error::NoRecords {
                    dir: sessions_dir.to_path_buf(),
                    serial: None,
                })?,
        };
        files.retain(|(p, _)| serial_of(p).as_deref() == Some(serial.as_str()));
        if files.is_empty() {
            return Err(Error::NoRecords {
                dir: sessions_dir.to_path_buf(),
                serial: Some(serial),
            });
        }
        let mut identity = Value::Null;
        let mut config: Vec<Value> = Vec::new();
        let mut status = Value::Null;
        let mut logs = Vec::new();
        for (path, _) in &files {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                match v["type"].as_str() {
                    Some("identity") => identity = v["identity"].clone(),
                    Some("config_read") if v["entries"].as_array().is_some_and(|e| e.len() > 1) => {
                        config = v["entries"].as_array().cloned().unwrap_or_default();
                    }
                    Some("config")
                        if v["outcome"]["status"] == "accepted"
                            || v["outcome"]["status"] == "reboot_required" =>
                    {
                        if let Some(e) = config.iter_mut().find(|e| e["key"] == v["key"]) {
                            e["value"] = v["new"].clone();
                        }
                    }
                    Some("ocpp_status") => status = v["status"].clone(),
                    Some("log") => {
                        logs.extend_from_slice(line.as_bytes());
                        logs.push(b'\n');
                    }
                    _ => {}
                }
            }
        }
        let newest = files
            .last()
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_default();
        let mut parts = vec![
            ("identity.json".to_string(), json_bytes(&identity)),
            (
                "configuration.json".to_string(),
                json_bytes(&json!({"entries": config, "as_of": newest})),
            ),
            (
                "ocpp.json".to_string(),
                json_bytes(&json!({"status": status})),
            ),
            ("charger-log.jsonl".to_string(), logs),
        ];
        add_sessions(&mut parts, sessions_dir, &serial);
        add_own_log(&mut parts, log_dir);
        Ok(Snapshot {
            serial_number: serial,
            source: Source::Records,
            files: parts,
        })
    }

    /// Packs the parts, scrubbed, with `manifest.json` into a `.tar.gz` at `out` (written to a
    /// temporary file first, then renamed). Returns the manifest.
    pub fn write(mut self, out: &Path) -> Result<Value, Error> {
        let io = |source: std::io::Error| Error::Io {
            path: out.to_path_buf(),
            source,
        };
        let now = chrono::Utc::now();
        let safe: String = self
            .serial_number
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let root = format!("chargectl-bundle-{safe}-{}", now.format("%Y%m%dT%H%M%SZ"));
        for (_, bytes) in &mut self.files {
            *bytes = scrub(bytes);
        }
        let listed: Vec<Value> = self
            .files
            .iter()
            .map(|(path, bytes)| {
                json!({"path": path, "size": bytes.len(),
                       "sha256": hex(&Sha256::digest(bytes))})
            })
            .collect();
        let manifest = json!({
            "format_version": 1,
            "created_at": crate::stack::chargepoint::fmt_time(now),
            "tool": {"name": "chargectl", "version": env!("CARGO_PKG_VERSION")},
            "source": self.source.as_str(),
            "serial_number": self.serial_number,
            "files": listed,
        });
        let mut tmp_name = out.as_os_str().to_owned();
        tmp_name.push(format!(".partial-{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let written = (|| -> std::io::Result<()> {
            let file = std::fs::File::create(&tmp)?;
            let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            let mut tar = tar::Builder::new(gz);
            let mut add = |path: &str, bytes: &[u8]| -> std::io::Result<()> {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(now.timestamp().max(0) as u64);
                header.set_cksum();
                tar.append_data(&mut header, format!("{root}/{path}"), bytes)
            };
            add("manifest.json", &json_bytes(&manifest))?;
            for (path, bytes) in &self.files {
                add(path, bytes)?;
            }
            let gz = tar.into_inner()?;
            let mut file = gz.finish()?;
            file.flush()?;
            file.sync_all()?;
            std::fs::rename(&tmp, out)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(manifest)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The newest recorded sessions of this charger, as `sessions/<file name>`.
fn add_sessions(files: &mut Vec<(String, Vec<u8>)>, dir: &Path, serial: &str) {
    let mut found: Vec<(String, Vec<u8>)> = session_files(dir)
        .into_iter()
        .filter_map(|(path, _)| {
            let bytes = std::fs::read(&path).ok()?;
            let first: Value = serde_json::from_slice(bytes.split(|b| *b == b'\n').next()?).ok()?;
            if first["serial_number"] != serial {
                return None;
            }
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((format!("sessions/{name}"), bytes))
        })
        .collect();
    let skip = found.len().saturating_sub(SESSIONS);
    files.extend(found.drain(skip..));
}

/// chargectl's own newest log lines ([`OWN_LOG_BYTES`] at most), from its log directory.
fn add_own_log(files: &mut Vec<(String, Vec<u8>)>, dir: &Path) {
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            if !meta.is_file() {
                return None;
            }
            Some((meta.modified().ok()?, e.path()))
        })
        .collect();
    logs.sort();
    let mut out: Vec<u8> = Vec::new();
    for (_, path) in logs.iter().rev() {
        if out.len() >= OWN_LOG_BYTES {
            break;
        }
        if let Ok(bytes) = std::fs::read(path) {
            let room = OWN_LOG_BYTES - out.len();
            let tail = &bytes[bytes.len().saturating_sub(room)..];
            let mut part = format!("==> {} <==\n", path.display()).into_bytes();
            part.extend_from_slice(tail);
            part.push(b'\n');
            part.extend_from_slice(&out);
            out = part;
        }
    }
    if out.is_empty() {
        out = b"(no log files of chargectl in the log directory)\n".to_vec();
    }
    files.push(("chargectl-log.txt".to_string(), out));
}

/// A last pass over a part: `Authorization: Basic ...` headers and passwords in URLs are
/// replaced. Everything that produced the parts already kept secrets out; this catches a
/// secret that a log message quoted.
pub fn scrub(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut line = line.to_string();
        for marker in ["Basic ", "basic "] {
            let mut from = 0;
            while let Some(i) = line[from..].find(marker) {
                let start = from + i + marker.len();
                let end = line[start..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)))
                    .map_or(line.len(), |e| start + e);
                if end > start + 3 {
                    line.replace_range(start..end, REDACTED);
                }
                from = start.min(line.len());
            }
        }
        let mut from = 0;
        while let Some(i) = line[from..].find("://") {
            let start = from + i + 3;
            let end = line[start..]
                .find(|c: char| c.is_whitespace() || "/\"'".contains(c))
                .map_or(line.len(), |e| start + e);
            if let Some(at) = line[start..end].rfind('@') {
                line.replace_range(start..start + at, "***");
                from = start + 4;
            } else {
                from = end;
            }
        }
        out.push_str(&line);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_basic_credentials_and_url_passwords() {
        let text = b"GET /ocpp/CP1 Authorization: Basic Q1AxOnNlY3JldA==\nurl wss://cp:hunter2@h/ocpp ok\n";
        let out = String::from_utf8(scrub(text)).unwrap();
        assert!(!out.contains("Q1AxOnNlY3JldA"), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("wss://***@h/ocpp ok"), "{out}");
    }
}
