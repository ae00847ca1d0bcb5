//! All TUI state: plain data built from [`Msg`](super::msg::Msg)s, no handles, no I/O.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keymap::{Context, Key, Keymap};
use super::msg::{
    ApplyOutcome, ChangeValue, ChargerInfo, ChargerStatus, ConfigEntry, Direction, FlashProgress,
    ImageInfo, OcppFrame, PortInfo,
};
use super::theme::Theme;
use crate::stack::logbook::{Level, LogRecord};

/// Default size of the log ring buffer (`log_buffer_lines` in `config.toml`).
pub const DEFAULT_LOG_BUFFER_LINES: usize = 100_000;
/// Most OCPP messages the trace keeps.
pub const TRACE_CAPACITY: usize = 50_000;
/// How long a notice stays in the status bar.
pub const NOTICE_TTL: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Connect,
    Dashboard,
    Config,
    Firmware,
    Logs,
    Emulator,
    DryRun,
}

impl Screen {
    pub const ALL: [Screen; 7] = [
        Screen::Connect,
        Screen::Dashboard,
        Screen::Config,
        Screen::Firmware,
        Screen::Logs,
        Screen::Emulator,
        Screen::DryRun,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Connect => "Connect",
            Screen::Dashboard => "Dashboard",
            Screen::Config => "Config",
            Screen::Firmware => "Firmware",
            Screen::Logs => "Logs",
            Screen::Emulator => "Emulator",
            Screen::DryRun => "Dry run",
        }
    }

    pub fn context(self) -> Context {
        match self {
            Screen::Connect => Context::Connect,
            Screen::Dashboard => Context::Dashboard,
            Screen::Config => Context::Config,
            Screen::Firmware => Context::Firmware,
            Screen::Logs => Context::Logs,
            Screen::Emulator => Context::Emulator,
            Screen::DryRun => Context::DryRun,
        }
    }

    pub fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// What a one-line text input is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    CsmsUrl,
    ConfigFilter,
    EditValue { key: String },
    ProfilePath,
    ImagePath,
    LogSearch,
    ExportPath,
    CardId,
    EvDemand,
    FaultCode,
    TraceFilter,
    DryRunProfile,
    DryRunCsmsUrl,
    ReportPath,
}

impl PromptKind {
    pub fn label(&self) -> String {
        match self {
            PromptKind::CsmsUrl => "CSMS URL".into(),
            PromptKind::ConfigFilter => "Filter keys".into(),
            PromptKind::EditValue { key } => format!("{key} ="),
            PromptKind::ProfilePath => "Profile file".into(),
            PromptKind::ImagePath => "Image file".into(),
            PromptKind::LogSearch => "Search".into(),
            PromptKind::ExportPath => "Export to".into(),
            PromptKind::CardId => "Card id".into(),
            PromptKind::EvDemand => "EV demand (A)".into(),
            PromptKind::FaultCode => "Fault code".into(),
            PromptKind::TraceFilter => "Filter actions".into(),
            PromptKind::DryRunProfile => "Profile (name or file; empty: none)".into(),
            PromptKind::DryRunCsmsUrl => "CSMS URL (empty: the profile's, else the sandbox)".into(),
            PromptKind::ReportPath => "Save report to (.md, .html, .json)".into(),
        }
    }

    /// Filters apply while typing.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            PromptKind::ConfigFilter | PromptKind::LogSearch | PromptKind::TraceFilter
        )
    }
}

/// A one-line text input. `cursor` counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
    pub cursor: usize,
    /// Validation message for the current text.
    pub error: Option<String>,
    /// Mask the text (write-only values).
    pub secret: bool,
}

impl Prompt {
    pub fn new(kind: PromptKind, text: impl Into<String>) -> Prompt {
        let text = text.into();
        Prompt {
            kind,
            cursor: text.chars().count(),
            text,
            error: None,
            secret: false,
        }
    }

    fn byte_at(&self, cursor: usize) -> usize {
        self.text
            .char_indices()
            .nth(cursor)
            .map(|(i, _)| i)
            .unwrap_or(self.text.len())
    }

    pub fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            let at = self.byte_at(self.cursor - 1);
            self.text.remove(at);
            self.cursor -= 1;
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.chars().count());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Info,
    Success,
    Error,
}

/// A line in the status bar that fades after [`NOTICE_TTL`].
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub text: String,
    pub until: Option<Instant>,
}

/// What the TUI is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Port(String),
    Emulator(super::msg::CsmsTarget),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Port(p) => p.clone(),
            Target::Emulator(super::msg::CsmsTarget::Sandbox) => "emulator (sandbox CSMS)".into(),
            Target::Emulator(super::msg::CsmsTarget::Url(u)) => format!("emulator ({u})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Idle,
    Connecting(Target),
    Connected {
        target: Target,
        charger: ChargerInfo,
        since: Option<Instant>,
    },
    Lost {
        target: Target,
        reason: String,
    },
}

impl Link {
    pub fn charger(&self) -> Option<&ChargerInfo> {
        match self {
            Link::Connected { charger, .. } => Some(charger),
            _ => None,
        }
    }

    pub fn target(&self) -> Option<&Target> {
        match self {
            Link::Idle => None,
            Link::Connecting(t)
            | Link::Connected { target: t, .. }
            | Link::Lost { target: t, .. } => Some(t),
        }
    }
}

/// An item of the connect screen's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectItem {
    Port(usize),
    Sandbox,
    CsmsUrl,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectState {
    /// Ports, likely chargers first.
    pub ports: Vec<PortInfo>,
    pub listing: bool,
    pub selected: usize,
}

impl ConnectState {
    pub fn items(&self) -> Vec<ConnectItem> {
        let mut items: Vec<ConnectItem> = (0..self.ports.len()).map(ConnectItem::Port).collect();
        items.push(ConnectItem::Sandbox);
        items.push(ConnectItem::CsmsUrl);
        items
    }
}

/// A pending configuration change, with the charger's last answer if it refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub value: ChangeValue,
    pub from_profile: bool,
    pub outcome: Option<ApplyOutcome>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigState {
    pub entries: Vec<ConfigEntry>,
    pub loaded: bool,
    /// Generation of the read in flight; older answers are dropped.
    pub request: u64,
    pub reading: bool,
    pub filter: String,
    /// Index into the filtered list.
    pub selected: usize,
    pub pending: BTreeMap<String, Pending>,
    pub applying: bool,
    pub profile: Option<PathBuf>,
    /// Keys whose new value needs a reboot to take effect.
    pub reboot_needed: Vec<String>,
}

impl ConfigState {
    /// Indices of entries matching the filter (case-insensitive substring).
    pub fn visible(&self) -> Vec<usize> {
        let needle = self.filter.to_lowercase();
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| needle.is_empty() || e.key.to_lowercase().contains(&needle))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn selected_entry(&self) -> Option<&ConfigEntry> {
        self.visible()
            .get(self.selected)
            .and_then(|i| self.entries.get(*i))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FlashPhase {
    Idle,
    Flashing(FlashProgress),
    /// Written and verified; waiting for a reboot.
    Flashed,
    Rebooting,
    Failed(String),
    /// Rebooted into the new image.
    Done {
        version: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareState {
    pub image_path: Option<PathBuf>,
    pub request: u64,
    pub inspecting: bool,
    pub image: Option<ImageInfo>,
    pub phase: FlashPhase,
    /// Version before the flash, to show the change after the reboot.
    pub previous_version: Option<String>,
}

impl Default for FirmwareState {
    fn default() -> Self {
        FirmwareState {
            image_path: None,
            request: 0,
            inspecting: false,
            image: None,
            phase: FlashPhase::Idle,
            previous_version: None,
        }
    }
}

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

/// Most OCPP messages the dry run's trace keeps.
pub const DRY_RUN_TRACE_CAPACITY: usize = 10_000;

/// Where the dry run is.
#[derive(Debug, Clone, PartialEq)]
pub enum DryRunPhase {
    /// Nothing started yet.
    Idle,
    /// Asked to start; nothing heard yet.
    Starting,
    Running,
    /// Asked to stop; the report follows.
    Stopping,
    /// Ended with a report.
    Finished,
    /// Could not run (a bad profile, ...).
    Failed(String),
}

/// The commissioning dry run screen: what to run, and what the run has seen so far.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRunState {
    /// A profile name (shipped or in the profiles directory) or a file; None: no profile.
    pub profile: Option<String>,
    /// None: the profile's CsmsUrl, else the sandbox CSMS.
    pub csms_url: Option<String>,
    /// Generation of the run: messages of an older one are dropped.
    pub run: u64,
    pub phase: DryRunPhase,
    pub progress: Option<crate::dryrun::Progress>,
    /// Findings as they arrived; replaced by the report's (sorted, counted) at the end.
    pub findings: Vec<crate::dryrun::Finding>,
    /// Index of the selected finding.
    pub selected: usize,
    pub trace: TraceState,
    pub report: Option<crate::dryrun::Report>,
    /// Where the report was last saved.
    pub saved: Option<PathBuf>,
}

impl Default for DryRunState {
    fn default() -> Self {
        DryRunState {
            profile: None,
            csms_url: None,
            run: 0,
            phase: DryRunPhase::Idle,
            progress: None,
            findings: Vec::new(),
            selected: 0,
            trace: TraceState::with_capacity(DRY_RUN_TRACE_CAPACITY),
            report: None,
            saved: None,
        }
    }
}

impl DryRunState {
    pub fn running(&self) -> bool {
        matches!(
            self.phase,
            DryRunPhase::Starting | DryRunPhase::Running | DryRunPhase::Stopping
        )
    }

    pub fn selected_finding(&self) -> Option<&crate::dryrun::Finding> {
        self.findings.get(self.selected)
    }
}

/// Most samples the charging chart keeps; when full, every other one goes and the spacing
/// doubles, so a whole session fits whatever its length.
pub const CHART_SAMPLES: usize = 600;

/// One point of the charging chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChargeSample {
    /// Seconds since the session started.
    pub at_s: f64,
    pub offered_a: f64,
    pub drawn_a: f64,
    /// Energy delivered in this session, Wh.
    pub energy_wh: f64,
}

/// Offered and drawn current and energy over the charging session, sampled on ticks from the
/// latest status. A session runs while the connector charges, is suspended, or has a
/// transaction; the samples of the last one stay until the next begins.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeHistory {
    pub samples: Vec<ChargeSample>,
    /// A session is running.
    pub active: bool,
    started: Option<Instant>,
    start_energy_wh: f64,
    last_sample: Option<Instant>,
    spacing: Duration,
}

impl Default for ChargeHistory {
    fn default() -> Self {
        ChargeHistory {
            samples: Vec::new(),
            active: false,
            started: None,
            start_energy_wh: 0.0,
            last_sample: None,
            spacing: Duration::from_secs(1),
        }
    }
}

impl ChargeHistory {
    /// Whether this status is a charging session.
    pub fn in_session(status: &ChargerStatus) -> bool {
        status.transaction_id.is_some()
            || matches!(
                status.connector.as_str(),
                "Charging" | "SuspendedEV" | "SuspendedEVSE"
            )
    }

    /// Takes a sample of `status` at `now` when one is due.
    pub fn observe(&mut self, status: &ChargerStatus, now: Instant) {
        let session = ChargeHistory::in_session(status);
        if session && !self.active {
            *self = ChargeHistory {
                active: true,
                started: Some(now),
                start_energy_wh: status.energy_wh,
                ..ChargeHistory::default()
            };
        }
        if !session {
            if self.active {
                // The last point shows where the session ended.
                self.push(status, now);
            }
            self.active = false;
            return;
        }
        if self
            .last_sample
            .is_none_or(|t| now.saturating_duration_since(t) >= self.spacing)
        {
            self.push(status, now);
        }
    }

    fn push(&mut self, status: &ChargerStatus, now: Instant) {
        let Some(started) = self.started else {
            return;
        };
        self.samples.push(ChargeSample {
            at_s: now.saturating_duration_since(started).as_secs_f64(),
            offered_a: status.offered_amps,
            drawn_a: status.drawn_amps,
            energy_wh: (status.energy_wh - self.start_energy_wh).max(0.0),
        });
        self.last_sample = Some(now);
        if self.samples.len() > CHART_SAMPLES {
            let kept: Vec<ChargeSample> = self.samples.iter().step_by(2).copied().collect();
            self.samples = kept;
            self.spacing *= 2;
        }
    }

    /// Length of the session so far (or of the last one).
    pub fn span_s(&self) -> f64 {
        self.samples.last().map_or(0.0, |s| s.at_s)
    }
}

/// The whole TUI state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub screen: Screen,
    pub keymap: Keymap,
    pub theme: Theme,
    pub pending_keys: Vec<Key>,
    pub help: Option<usize>,
    pub prompt: Option<Prompt>,
    pub notice: Option<Notice>,
    pub now: Option<Instant>,
    pub size: (u16, u16),
    pub link: Link,
    pub connect: ConnectState,
    pub status: Option<ChargerStatus>,
    pub config: ConfigState,
    pub firmware: FirmwareState,
    pub logs: LogState,
    pub trace: TraceState,
    /// The emulated fleet's summary, when a fleet runs.
    pub fleet: Option<FleetView>,
    /// The charging chart of the dashboard.
    pub history: ChargeHistory,
    pub dry_run: DryRunState,
    /// Recent errors from any source, newest last.
    pub errors: VecDeque<String>,
    /// An action waiting for its key to be pressed again (reboot, flash).
    pub confirm: Option<super::action::Action>,
    pub quit: bool,
}

/// What the emulator screen shows of a fleet: its latest summary and the message rate between
/// the last two.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    pub summary: crate::emulator::fleet::Summary,
    /// OCPP messages per second (sent and received) since the previous summary.
    pub messages_per_s: f64,
}

impl FleetView {
    /// Takes a new summary; the rate comes from the one before.
    pub fn update(&mut self, next: crate::emulator::fleet::Summary) {
        let total = |s: &crate::emulator::fleet::Summary| s.messages.sent + s.messages.received;
        let dt = next.elapsed_s - self.summary.elapsed_s;
        self.messages_per_s = if dt > 0.0 && self.summary.elapsed_s > 0.0 {
            total(&next).saturating_sub(total(&self.summary)) as f64 / dt
        } else {
            0.0
        };
        self.summary = next;
    }
}

impl State {
    pub fn new(keymap: Keymap, theme: Theme, log_buffer_lines: usize) -> State {
        State {
            screen: Screen::Connect,
            keymap,
            theme,
            pending_keys: Vec::new(),
            help: None,
            prompt: None,
            notice: None,
            now: None,
            size: (80, 24),
            link: Link::Idle,
            connect: ConnectState::default(),
            status: None,
            config: ConfigState::default(),
            firmware: FirmwareState::default(),
            logs: LogState::new(log_buffer_lines),
            trace: TraceState::default(),
            fleet: None,
            history: ChargeHistory::default(),
            dry_run: DryRunState::default(),
            errors: VecDeque::new(),
            confirm: None,
            quit: false,
        }
    }

    pub fn is_emulated(&self) -> bool {
        self.link.charger().is_some_and(|c| c.emulated)
            || matches!(self.link.target(), Some(Target::Emulator(_)))
    }
}
