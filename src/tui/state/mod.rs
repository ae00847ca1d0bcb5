//! All TUI state: plain data built from [`Msg`](super::msg::Msg)s, no handles, no I/O.
//!
//! The screens' own parts live beside: [`logs`] (the charger log ring and the OCPP trace),
//! [`dryrun`] (the commissioning dry run screen) and [`history`] (the dashboard's chart).

mod dryrun;
mod fleet;
mod history;
mod logs;

pub use dryrun::{DRY_RUN_TRACE_CAPACITY, DryRunPhase, DryRunState, default_report_path};
pub use fleet::{FleetPhase, FleetRun};
pub use history::{CHART_SAMPLES, ChargeHistory, ChargeSample};
pub use logs::{
    LogBuffer, LogEntry, LogLine, LogState, TRACE_CAPACITY, TraceEntry, TraceState, contains_ci,
};

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::keymap::{Context, Key, Keymap};
use super::msg::{
    ApplyOutcome, ChangeValue, ChargerInfo, ChargerStatus, ConfigEntry, FlashProgress, ImageInfo,
    PortInfo,
};
use super::theme::Theme;

/// Default size of the log ring buffer (`log_buffer_lines` in `config.toml`).
pub const DEFAULT_LOG_BUFFER_LINES: usize = 100_000;
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
    EditValue {
        key: String,
    },
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
    /// Where the report of the coming (or running) dry run is written when it ends.
    DryRunReportPath,
    /// The fleet form: `count= template= ramp= sessions= [seed=] [csms=]`.
    FleetForm,
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
            PromptKind::FleetForm => "Fleet".into(),
            PromptKind::DryRunReportPath => {
                "Report file when the run ends (.md, .html, .json; empty: none)".into()
            }
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
    /// The charger's OCPP state; None until it was first asked.
    pub ocpp: Option<super::msg::OcppReport>,
    pub config: ConfigState,
    pub firmware: FirmwareState,
    pub logs: LogState,
    pub trace: TraceState,
    /// The emulated fleet's summary, when a fleet runs.
    pub fleet: Option<FleetView>,
    /// The fleet started from the emulator screen's form.
    pub fleet_run: FleetRun,
    /// The charging chart of the dashboard.
    pub history: ChargeHistory,
    pub dry_run: DryRunState,
    /// Recent errors from any source, newest last.
    pub errors: VecDeque<String>,
    /// An action waiting for its key to be pressed again (reboot, flash).
    pub confirm: Option<super::action::Action>,
    pub quit: bool,
    /// Where dry run reports go when nobody chose a file (the data directory's `reports`);
    /// None: the current directory.
    pub report_dir: Option<PathBuf>,
    /// Said on the terminal once the TUI has ended (where a report was written, ...).
    pub exit_lines: Vec<String>,
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
            ocpp: None,
            config: ConfigState::default(),
            firmware: FirmwareState::default(),
            logs: LogState::new(log_buffer_lines),
            trace: TraceState::default(),
            fleet: None,
            fleet_run: FleetRun::default(),
            history: ChargeHistory::default(),
            dry_run: DryRunState::default(),
            errors: VecDeque::new(),
            confirm: None,
            quit: false,
            report_dir: None,
            exit_lines: Vec::new(),
        }
    }

    pub fn is_emulated(&self) -> bool {
        self.link.charger().is_some_and(|c| c.emulated)
            || matches!(self.link.target(), Some(Target::Emulator(_)))
    }
}
