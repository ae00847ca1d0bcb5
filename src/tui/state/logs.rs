//! The Logs screen's ring buffer of charger log lines and the emulator screen's OCPP trace:
//! bounded, with an index of the lines a filter shows so a frame costs the screen's height.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::stack::logbook::{Level, LogRecord};
use crate::tui::msg::{Direction, OcppFrame};

/// Most OCPP messages the trace keeps.
pub const TRACE_CAPACITY: usize = 50_000;

/// A charger log record as the buffer keeps it: the subsystem name is shared between lines and
/// the message holds no spare capacity (100,000 of these are kept by default).
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub level: Level,
    pub target: Arc<str>,
    pub message: Box<str>,
}

/// One line of the log buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum LogLine {
    Record(LogEntry),
    /// The producer lost this many lines here.
    Dropped(u64),
}

impl LogLine {
    pub fn passes(&self, min: Level) -> bool {
        match self {
            LogLine::Record(r) => r.level >= min,
            LogLine::Dropped(_) => true,
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            LogLine::Record(r) => format!(
                "{} {:<5} {:<8} {}",
                r.time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                r.level.as_str().to_uppercase(),
                r.target,
                r.message
            ),
            LogLine::Dropped(n) => format!("--- {n} lines dropped ---"),
        }
    }

    pub fn contains(&self, needle_lower: &str) -> bool {
        match self {
            LogLine::Record(r) => {
                contains_ci(&r.message, needle_lower) || contains_ci(&r.target, needle_lower)
            }
            LogLine::Dropped(_) => false,
        }
    }
}

/// Case-insensitive substring test; `needle_lower` is already lowercase.
pub fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    if needle_lower.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle_lower.is_ascii() {
        let h = hay.as_bytes();
        let n = needle_lower.as_bytes();
        return h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(needle_lower)
}

/// Bounded ring of log lines with an index of the lines passing the level filter, so a frame
/// costs the height of the screen, not the size of the buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBuffer {
    lines: VecDeque<LogLine>,
    /// Absolute number of `lines[0]`.
    first: u64,
    capacity: usize,
    min_level: Level,
    /// Absolute numbers of lines passing the filter, ascending.
    shown: VecDeque<u64>,
    /// Lines the producer lost, in total.
    pub dropped_total: u64,
    /// Shared subsystem names (bounded, so odd input cannot grow it without end).
    targets: HashMap<Box<str>, Arc<str>>,
}

/// Most distinct subsystem names shared; others are stored per line.
const MAX_SHARED_TARGETS: usize = 256;

impl LogBuffer {
    pub fn new(capacity: usize) -> LogBuffer {
        LogBuffer {
            lines: VecDeque::new(),
            first: 0,
            capacity: capacity.max(1),
            min_level: Level::Trace,
            shown: VecDeque::new(),
            dropped_total: 0,
            targets: HashMap::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn min_level(&self) -> Level {
        self.min_level
    }

    /// Appends a charger record; returns whether it passes the filter.
    pub fn push_record(&mut self, r: LogRecord) -> bool {
        let target = match self.targets.get(r.target.as_str()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = Arc::from(r.target.as_str());
                if self.targets.len() < MAX_SHARED_TARGETS {
                    self.targets.insert(r.target.into_boxed_str(), t.clone());
                }
                t
            }
        };
        self.push(LogLine::Record(LogEntry {
            seq: r.seq,
            time: r.time,
            level: r.level,
            target,
            message: r.message.into_boxed_str(),
        }))
    }

    /// Appends a line; returns whether it passes the filter.
    pub fn push(&mut self, line: LogLine) -> bool {
        if let LogLine::Dropped(n) = line {
            self.dropped_total += n;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
            if self.shown.front() == Some(&self.first) {
                self.shown.pop_front();
            }
            self.first += 1;
        }
        let abs = self.first + self.lines.len() as u64;
        let passes = line.passes(self.min_level);
        if passes {
            self.shown.push_back(abs);
        }
        self.lines.push_back(line);
        passes
    }

    pub fn set_min_level(&mut self, level: Level) {
        self.min_level = level;
        self.shown = self
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.passes(level))
            .map(|(i, _)| self.first + i as u64)
            .collect();
    }

    /// Number of lines passing the filter.
    pub fn shown_len(&self) -> usize {
        self.shown.len()
    }

    /// Absolute number of the `i`-th line passing the filter.
    pub fn shown_abs(&self, i: usize) -> Option<u64> {
        self.shown.get(i).copied()
    }

    /// Position of the last line passing the filter at or before absolute number `abs`
    /// (0 if there is none).
    pub fn shown_pos(&self, abs: u64) -> usize {
        self.shown.partition_point(|x| *x <= abs).saturating_sub(1)
    }

    /// The `i`-th line passing the filter (0 = oldest).
    pub fn shown(&self, i: usize) -> Option<&LogLine> {
        let abs = *self.shown.get(i)?;
        self.lines.get((abs - self.first) as usize)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &LogLine> {
        self.lines.iter()
    }

    /// Approximate heap bytes held (lines, strings, index).
    pub fn heap_bytes(&self) -> usize {
        let lines = self.lines.capacity() * std::mem::size_of::<LogLine>();
        let index = self.shown.capacity() * std::mem::size_of::<u64>();
        let strings: usize = self
            .lines
            .iter()
            .map(|l| match l {
                LogLine::Record(r) => r.message.len(),
                LogLine::Dropped(_) => 0,
            })
            .sum();
        let targets: usize = self.targets.keys().map(|k| 2 * k.len() + 16).sum();
        lines + index + strings + targets
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogState {
    pub buffer: LogBuffer,
    /// Following the newest line; when false the view stays where it is.
    pub follow: bool,
    /// Absolute number of the bottom line of the view when not following (stable while the
    /// ring turns over).
    pub bottom: u64,
    pub search: String,
}

impl LogState {
    pub fn new(capacity: usize) -> LogState {
        LogState {
            buffer: LogBuffer::new(capacity),
            follow: true,
            bottom: 0,
            search: String::new(),
        }
    }

    /// Position (among the lines passing the filter) of the line at the bottom of the view.
    pub fn view_bottom(&self) -> Option<usize> {
        let n = self.buffer.shown_len();
        if n == 0 {
            return None;
        }
        if self.follow {
            return Some(n - 1);
        }
        Some(self.buffer.shown_pos(self.bottom))
    }
}

/// One OCPP message of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEntry {
    pub direction: Direction,
    pub time: DateTime<Utc>,
    pub frame: OcppFrame,
    /// The action (for a CALLRESULT/CALLERROR, the action of its CALL).
    pub action: String,
    /// Absolute index of the paired message.
    pub pair: Option<u64>,
    /// Time from CALL to its answer (on both entries of a pair).
    pub latency: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraceState {
    pub entries: VecDeque<TraceEntry>,
    pub first: u64,
    pub capacity: usize,
    /// CALLs waiting for an answer: (direction of the CALL, id) → absolute index.
    pub open_calls: HashMap<(bool, String), u64>,
    /// Text the action must contain (set with [`TraceState::set_filter`]).
    filter: String,
    /// Absolute indices of entries passing the filter, ascending.
    shown: VecDeque<u64>,
    /// Absolute index of the selected entry; `None` follows the newest.
    pub selected: Option<u64>,
}

impl Default for TraceState {
    fn default() -> Self {
        TraceState::with_capacity(TRACE_CAPACITY)
    }
}

impl TraceState {
    pub fn with_capacity(capacity: usize) -> TraceState {
        TraceState {
            entries: VecDeque::new(),
            first: 0,
            capacity: capacity.max(1),
            open_calls: HashMap::new(),
            filter: String::new(),
            shown: VecDeque::new(),
            selected: None,
        }
    }

    pub fn get(&self, abs: u64) -> Option<&TraceEntry> {
        abs.checked_sub(self.first)
            .and_then(|i| self.entries.get(i as usize))
    }

    fn get_mut(&mut self, abs: u64) -> Option<&mut TraceEntry> {
        abs.checked_sub(self.first)
            .and_then(|i| self.entries.get_mut(i as usize))
    }

    /// Adds a frame, pairing an answer with its CALL by id.
    pub fn push(&mut self, direction: Direction, time: DateTime<Utc>, frame: OcppFrame) {
        if self.entries.len() == self.capacity {
            if let Some(old) = self.entries.pop_front()
                && let OcppFrame::Call { id, .. } = &old.frame
            {
                let key = (old.direction == Direction::Sent, id.clone());
                if self.open_calls.get(&key) == Some(&self.first) {
                    self.open_calls.remove(&key);
                }
            }
            if self.shown.front() == Some(&self.first) {
                self.shown.pop_front();
            }
            self.first += 1;
        }
        let abs = self.first + self.entries.len() as u64;
        let mut entry = TraceEntry {
            direction,
            time,
            action: String::new(),
            frame,
            pair: None,
            latency: None,
        };
        match &entry.frame {
            OcppFrame::Call { id, action, .. } => {
                entry.action = action.clone();
                self.open_calls
                    .insert((direction == Direction::Sent, id.clone()), abs);
            }
            OcppFrame::CallResult { id, .. } | OcppFrame::CallError { id, .. } => {
                // An answer travels the other way from its CALL.
                let key = (direction != Direction::Sent, id.clone());
                if let Some(call_abs) = self.open_calls.remove(&key) {
                    let latency = self
                        .get(call_abs)
                        .and_then(|c| (time - c.time).to_std().ok());
                    if let Some(call) = self.get_mut(call_abs) {
                        call.pair = Some(abs);
                        call.latency = latency;
                        entry.action = call.action.clone();
                    }
                    entry.pair = Some(call_abs);
                    entry.latency = latency;
                }
            }
        }
        if contains_ci(&entry.action, &self.filter) {
            self.shown.push_back(abs);
        }
        self.entries.push_back(entry);
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Shows only entries whose action contains `filter` (case-insensitive).
    pub fn set_filter(&mut self, filter: &str) {
        self.filter = filter.to_lowercase();
        let first = self.first;
        self.shown = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| contains_ci(&e.action, &self.filter))
            .map(|(i, _)| first + i as u64)
            .collect();
    }

    /// Absolute indices of entries whose action matches the filter.
    pub fn visible(&self) -> Vec<u64> {
        self.shown.iter().copied().collect()
    }

    /// Number of entries passing the filter.
    pub fn shown_len(&self) -> usize {
        self.shown.len()
    }

    /// Absolute index of the `i`-th entry passing the filter.
    pub fn shown_abs(&self, i: usize) -> Option<u64> {
        self.shown.get(i).copied()
    }

    /// Position among the entries passing the filter of absolute index `abs`, if shown.
    pub fn shown_position(&self, abs: u64) -> Option<usize> {
        let i = self.shown.partition_point(|x| *x < abs);
        (self.shown.get(i) == Some(&abs)).then_some(i)
    }
}
