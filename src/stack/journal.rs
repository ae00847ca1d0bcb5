//! The transaction message queue: StartTransaction, MeterValues with a transactionId and
//! StopTransaction, journaled on disk so that nothing is lost through a CSMS outage or a power
//! loss (`kill -9`), and delivered in order.
//!
//! File format (`txqueue.journal` in the state directory): one record per line,
//! `<crc32 as 8 hex digits> <json>\n`, appended and fsynced before the call that produced it
//! returns. Records: `push` (a message), `done` (its answer arrived), `txid` (the CSMS's
//! transactionId for a transaction the charger numbered locally). A torn last line (power lost
//! mid-write) fails its CRC and is cut off at open; everything before it is intact. When most
//! records are obsolete the journal is compacted into a new file that replaces the old one
//! atomically.
//!
//! Durability ([`Durability`]): one charger fsyncs each record before the call that appended it
//! returns. A fleet of charge points in one process shares a [`Committer`] instead (group
//! commit): a record is written at once and made durable with the others of the same short
//! window by one flush; [`Journal::sync`] waits for that flush, and the charge point calls it
//! before it sends anything, so a record is still durable before the message built from it
//! (or any later message) leaves. A journal in group mode does not keep its file open between
//! appends (a fleet of 10,000 would otherwise hold 10,000 descriptors).
//!
//! When a record cannot be written (a full, read-only or failing disk) the change is still made
//! in memory, so the charger goes on charging and delivering, and the method returns the error:
//! the change is then not durable. The file may end in a torn record, so no further record is
//! appended to it: the next write replaces the whole journal with what memory holds (a
//! compaction), which makes every change since the failure durable at once.
//!
//! Failpoints (see [`crate::storage::failpoint`]): `journal.append.before_write`,
//! `journal.append.after_write` (written, not fsynced), `journal.append.after_fsync`, and the
//! compaction's `journal.compact.write.*`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::storage::{self, failpoint};

mod commit;
pub use commit::{CommitStats, Committer, Ticket, WINDOW};

/// How a journal's records become durable.
#[derive(Debug, Clone, Default)]
pub enum Durability {
    /// fsync each record before the call that appended it returns (one charger).
    #[default]
    PerRecord,
    /// Records are made durable by a committer shared with other journals (a fleet); wait for
    /// it with [`Journal::sync`].
    Group(Committer),
}

pub const FILE_NAME: &str = "txqueue.journal";

/// One queued transaction message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the queue, increasing, never reused.
    pub seq: u64,
    pub action: String,
    pub payload: Value,
    /// The charger's own number for the transaction this message belongs to. Its
    /// `transactionId` field is filled in from the CSMS's id when the message is sent.
    pub local_tx: u64,
    /// Delivery attempts that ended in a CALLERROR or a timeout (not persisted).
    #[serde(skip)]
    pub attempts: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Push {
        seq: u64,
        action: String,
        payload: Value,
        local_tx: u64,
    },
    Done {
        seq: u64,
    },
    Txid {
        local_tx: u64,
        transaction_id: i64,
    },
    /// Next local transaction number, so numbers are never reused after compaction.
    NextLocal {
        next: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("transaction journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The journal. With [`Durability::PerRecord`] all mutations are durable when they return
/// `Ok`; with [`Durability::Group`] when [`Journal::sync`] returns `Ok` after them.
pub struct Journal {
    path: PathBuf,
    file: Option<File>,
    durability: Durability,
    /// The commit that makes the last group-mode append durable, until [`Journal::sync`].
    unsynced: Option<Ticket>,
    /// The last state document change of this task a commit was asked for (group mode).
    documents_requested: u64,
    queue: VecDeque<Entry>,
    txids: BTreeMap<u64, i64>,
    next_seq: u64,
    next_local: u64,
    /// Records in the file that no longer matter (for compaction).
    obsolete: usize,
    /// Bytes cut from a torn tail at open, for diagnostics.
    pub recovered_torn_bytes: usize,
    /// A write failed: memory holds changes the file lacks, and the file may end in a torn
    /// record. The next write is a compaction.
    unsaved: bool,
}

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

impl Journal {
    /// Opens (or creates) the journal in `dir`, replaying it; each record fsynced on append.
    pub fn open(dir: &Path) -> Result<Journal> {
        Self::open_with(dir, Durability::PerRecord)
    }

    /// Opens (or creates) the journal in `dir`, replaying it, with the given durability.
    pub fn open_with(dir: &Path, durability: Durability) -> Result<Journal> {
        let path = dir.join(FILE_NAME);
        let io_err = |source| Error::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut j = Journal {
            path: path.clone(),
            file: None,
            durability,
            unsynced: None,
            documents_requested: 0,
            queue: VecDeque::new(),
            txids: BTreeMap::new(),
            next_seq: 1,
            next_local: 1,
            obsolete: 0,
            recovered_torn_bytes: 0,
            unsaved: false,
        };
        let mut good_len: u64 = 0;
        let mut total_len: u64 = 0;
        if let Ok(f) = File::open(&path) {
            let mut reader = BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(io_err)?;
                if n == 0 {
                    break;
                }
                total_len += n as u64;
                match decode_line(&line) {
                    Some(record) if line.ends_with(b"\n") => {
                        j.apply(record);
                        good_len = total_len;
                    }
                    _ => break,
                }
            }
            let file_len = std::fs::metadata(&path).map_err(io_err)?.len();
            if file_len > good_len {
                j.recovered_torn_bytes = (file_len - good_len) as usize;
                tracing::warn!(
                    "transaction journal: cut {} bytes of a torn record at the end",
                    j.recovered_torn_bytes
                );
                let cut = failpoint::writable()
                    .and_then(|()| OpenOptions::new().write(true).open(&path))
                    .and_then(|f| {
                        f.set_len(good_len)?;
                        f.sync_all()
                    });
                if let Err(e) = cut {
                    tracing::error!("transaction journal: cannot cut the torn record: {e}");
                    j.unsaved = true;
                }
            }
        }
        if let Durability::PerRecord = j.durability {
            // A read-only or full disk does not stop the charger: the journal runs from memory
            // and rewrites itself once the disk takes writes again.
            match failpoint::writable()
                .and_then(|()| OpenOptions::new().create(true).append(true).open(&path))
            {
                Ok(file) => j.file = Some(file),
                Err(e) => {
                    tracing::error!(
                        "transaction journal {}: cannot open for writing: {e}",
                        path.display()
                    );
                    j.unsaved = true;
                }
            }
        }
        if !j.unsaved && j.obsolete > 256 && j.obsolete > j.queue.len() * 4 {
            // Not durable yet is not fatal: the next write tries again.
            if let Err(e) = j.compact() {
                tracing::error!("{e}");
            }
        }
        Ok(j)
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Push {
                seq,
                action,
                payload,
                local_tx,
            } => {
                self.next_seq = self.next_seq.max(seq + 1);
                self.next_local = self.next_local.max(local_tx + 1);
                self.queue.push_back(Entry {
                    seq,
                    action,
                    payload,
                    local_tx,
                    attempts: 0,
                });
            }
            Record::Done { seq } => {
                if let Some(i) = self.queue.iter().position(|e| e.seq == seq) {
                    self.queue.remove(i);
                }
                self.obsolete += 2;
            }
            Record::Txid {
                local_tx,
                transaction_id,
            } => {
                self.txids.insert(local_tx, transaction_id);
            }
            Record::NextLocal { next } => {
                self.next_local = self.next_local.max(next);
                self.obsolete += 1;
            }
        }
    }

    /// Makes `record` durable; memory already holds its effect. After a failed write the whole
    /// journal is rewritten instead.
    fn append(&mut self, record: &Record) -> Result<()> {
        if self.unsaved {
            return self.compact();
        }
        let result = self.append_line(&encode_line(record));
        if result.is_err() {
            self.unsaved = true;
        }
        result
    }

    fn append_line(&mut self, line: &[u8]) -> Result<()> {
        let path = &self.path;
        let io_err = |source| Error::Io {
            path: path.clone(),
            source,
        };
        if let Durability::Group(committer) = &self.durability {
            failpoint::check("journal.append.before_write").map_err(io_err)?;
            if let Some(fault) = failpoint::disk_fault() {
                return Err(io_err(fault.error()));
            }
            // Written now (a killed process loses nothing the kernel has), durable with the
            // next group commit.
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(&io_err)?;
            file.write_all(line).map_err(&io_err)?;
            self.unsynced = Some(committer.appended(path));
            return Ok(());
        }
        let file = match self.file.as_mut() {
            Some(f) => f,
            None => {
                return Err(io_err(io::Error::other("journal is closed")));
            }
        };
        failpoint::check("journal.append.before_write").map_err(io_err)?;
        if let Some(fault) = failpoint::disk_fault() {
            if fault == failpoint::DiskFault::Full {
                // A full disk may take part of a record before it refuses the rest.
                let _ = file.write_all(&line[..line.len() / 2]);
            }
            return Err(io_err(fault.error()));
        }
        file.write_all(line).map_err(&io_err)?;
        failpoint::check("journal.append.after_write").map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        failpoint::check("journal.append.after_fsync").map_err(io_err)
    }

    /// Waits until every record appended so far is durable (group mode: the commit covering
    /// the last one; per-record mode: they already are).
    ///
    /// In group mode this also covers the state documents the current task wrote into the
    /// committer's batch ([`Committer::documents`]): they are renamed into place, durably, by the
    /// same commit.
    pub async fn sync(&mut self) -> Result<()> {
        let Durability::Group(committer) = &self.durability else {
            return Ok(());
        };
        let documents = storage::last_batched();
        if documents > self.documents_requested {
            self.documents_requested = documents;
            // Tickets only grow: this one covers the last record appended too.
            self.unsynced = Some(committer.request());
        }
        let Some(ticket) = self.unsynced else {
            return Ok(());
        };
        let outcome = committer.durable(ticket).await;
        self.unsynced = None;
        outcome.map_err(|why| Error::Io {
            path: self.path.clone(),
            source: io::Error::other(why),
        })
    }

    /// Whether records appended in group mode still wait for their commit.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced.is_some()
    }

    /// Whether memory holds changes that are not yet durable (a write failed; the next one
    /// rewrites the journal).
    pub fn unsaved(&self) -> bool {
        self.unsaved
    }

    /// The number [`Journal::new_local_tx`] handed out last (also when it returned an error).
    pub fn newest_local_tx(&self) -> u64 {
        self.next_local.saturating_sub(1)
    }

    /// Allocates the charger's number for a new transaction (durable when this returns `Ok`;
    /// on `Err` the number is allocated in memory only, see [`Journal::newest_local_tx`]).
    pub fn new_local_tx(&mut self) -> Result<u64> {
        let id = self.next_local;
        self.next_local = id + 1;
        self.append(&Record::NextLocal { next: id + 1 })?;
        Ok(id)
    }

    /// Queues a message (durable when this returns `Ok`; on `Err` it is queued in memory only,
    /// and delivered all the same).
    pub fn push(&mut self, action: &str, payload: Value, local_tx: u64) -> Result<u64> {
        let seq = self.next_seq;
        let record = Record::Push {
            seq,
            action: action.to_string(),
            payload: payload.clone(),
            local_tx,
        };
        self.next_seq += 1;
        self.queue.push_back(Entry {
            seq,
            action: action.to_string(),
            payload,
            local_tx,
            attempts: 0,
        });
        self.append(&record)?;
        Ok(seq)
    }

    /// The oldest undelivered message.
    pub fn front(&self) -> Option<&Entry> {
        self.queue.front()
    }

    pub fn front_mut(&mut self) -> Option<&mut Entry> {
        self.queue.front_mut()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.queue.iter()
    }

    /// Marks a message delivered (its answer arrived) or abandoned.
    pub fn complete(&mut self, seq: u64) -> Result<()> {
        if let Some(i) = self.queue.iter().position(|e| e.seq == seq) {
            self.queue.remove(i);
        }
        self.append(&Record::Done { seq })?;
        self.obsolete += 2;
        if self.obsolete > 1024 && self.obsolete > self.queue.len() * 4 {
            self.compact()?;
        }
        Ok(())
    }

    /// Records the CSMS's transactionId for a local transaction number.
    pub fn set_transaction_id(&mut self, local_tx: u64, transaction_id: i64) -> Result<()> {
        self.txids.insert(local_tx, transaction_id);
        self.append(&Record::Txid {
            local_tx,
            transaction_id,
        })
    }

    pub fn transaction_id(&self, local_tx: u64) -> Option<i64> {
        self.txids.get(&local_tx).copied()
    }

    /// Rewrites the journal with only what still matters, atomically.
    pub fn compact(&mut self) -> Result<()> {
        // Keep ids only for transactions that still have queued messages, plus the newest few.
        let live: std::collections::BTreeSet<u64> = self.queue.iter().map(|e| e.local_tx).collect();
        let newest: Vec<u64> = self.txids.keys().rev().take(8).copied().collect();
        self.txids
            .retain(|local, _| live.contains(local) || newest.contains(local));
        let mut bytes = Vec::new();
        bytes.extend(encode_line(&Record::NextLocal {
            next: self.next_local,
        }));
        for (local_tx, transaction_id) in &self.txids {
            bytes.extend(encode_line(&Record::Txid {
                local_tx: *local_tx,
                transaction_id: *transaction_id,
            }));
        }
        for e in &self.queue {
            bytes.extend(encode_line(&Record::Push {
                seq: e.seq,
                action: e.action.clone(),
                payload: e.payload.clone(),
                local_tx: e.local_tx,
            }));
        }
        let path = self.path.clone();
        self.file = None;
        match storage::write_doc_now("journal.compact", &path, &bytes) {
            Ok(()) => {
                self.obsolete = 0;
                if std::mem::take(&mut self.unsaved) {
                    tracing::info!("transaction journal: durable again");
                }
                if let Durability::Group(_) = self.durability {
                    // The new file is durable already and holds every record written before it.
                    self.unsynced = None;
                    return Ok(());
                }
                match OpenOptions::new().append(true).open(&path) {
                    Ok(file) => {
                        self.file = Some(file);
                        Ok(())
                    }
                    Err(source) => {
                        self.unsaved = true;
                        Err(Error::Io { path, source })
                    }
                }
            }
            Err(source) => {
                // The next write tries the whole journal again.
                self.unsaved = true;
                Err(Error::Io { path, source })
            }
        }
    }
}

fn encode_line(record: &Record) -> Vec<u8> {
    let json = serde_json::to_string(record).unwrap_or_default();
    let crc = CRC.checksum(json.as_bytes());
    format!("{crc:08x} {json}\n").into_bytes()
}

fn decode_line(line: &[u8]) -> Option<Record> {
    let line = line.strip_suffix(b"\n")?;
    if line.len() < 10 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let body = &line[9..];
    if CRC.checksum(body) != crc {
        return None;
    }
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn survives_reopen_in_order_with_transaction_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let tx = j.new_local_tx().unwrap();
        let a = j
            .push("StartTransaction", json!({"meterStart": 0}), tx)
            .unwrap();
        let b = j.push("MeterValues", json!({"n": 1}), tx).unwrap();
        j.push("StopTransaction", json!({"meterStop": 5}), tx)
            .unwrap();
        j.complete(a).unwrap();
        j.set_transaction_id(tx, 42).unwrap();
        drop(j);
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j.front().unwrap().seq, b);
        assert_eq!(j.transaction_id(tx), Some(42));
        let tx2 = j.new_local_tx().unwrap();
        assert!(tx2 > tx, "local numbers are never reused");
        j.complete(b).unwrap();
        assert_eq!(j.front().unwrap().action, "StopTransaction");
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.push("StartTransaction", json!({}), 1).unwrap();
        j.push("MeterValues", json!({}), 1).unwrap();
        drop(j);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let full = bytes.len();
        bytes.extend_from_slice(b"0badc0de {\"op\":\"push\",\"se");
        std::fs::write(&path, &bytes).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.len(), 2);
        assert!(j.recovered_torn_bytes > 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, full);
        // A flipped byte inside a record ends the replay there.
        let mut bytes = std::fs::read(&path).unwrap();
        let last_line_start = bytes[..bytes.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        bytes[last_line_start + 12] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.len(), 1);
    }

    #[tokio::test]
    async fn group_commit_covers_many_journals_with_few_flushes_and_keeps_no_file_open() {
        let root = tempfile::tempdir().unwrap();
        let committer = Committer::start(root.path(), WINDOW);
        let mut journals: Vec<Journal> = (0..20)
            .map(|i| {
                Journal::open_with(
                    &root.path().join(format!("cp{i}")),
                    Durability::Group(committer.clone()),
                )
                .unwrap()
            })
            .collect();
        for (i, j) in journals.iter_mut().enumerate() {
            assert!(j.file.is_none(), "no descriptor held between appends");
            let tx = j.new_local_tx().unwrap();
            j.push("StartTransaction", json!({"i": i}), tx).unwrap();
            assert!(j.has_unsynced());
        }
        for j in &mut journals {
            j.sync().await.unwrap();
            assert!(!j.has_unsynced());
        }
        let stats = committer.stats();
        assert_eq!(stats.records, 40);
        assert!(stats.commits < 40, "{stats:?}");
        drop(journals);
        for i in 0..20 {
            let j = Journal::open(&root.path().join(format!("cp{i}"))).unwrap();
            assert_eq!(j.front().unwrap().payload, json!({"i": i}));
        }
    }

    #[test]
    fn compaction_keeps_queue_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let tx = j.new_local_tx().unwrap();
        for i in 0..600 {
            let s = j.push("MeterValues", json!({"i": i}), tx).unwrap();
            if i < 590 {
                j.complete(s).unwrap();
            }
        }
        j.set_transaction_id(tx, 7).unwrap();
        j.compact().unwrap();
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(size < 4096, "compacted journal is small: {size}");
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.len(), 10);
        assert_eq!(j.front().unwrap().payload, json!({"i": 590}));
        assert_eq!(j.transaction_id(tx), Some(7));
    }
}
