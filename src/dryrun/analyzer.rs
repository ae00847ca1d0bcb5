//! The analyzer: a pure state machine fed timestamped [`Observation`]s (what the charge point
//! reports: connection changes, every frame sent and received, registration, connector status;
//! and what the scenario does) and a [`Context`] (the configuration the charger runs with, what
//! the commissioning expects). It produces [`Finding`]s. No I/O, no clock: time arrives with each
//! observation, so unit tests feed synthetic frames.
//!
//! Files: this one follows the connection, the connector and the frames in both directions and
//! pairs each CALL with its answer; `calls.rs` reads the CSMS's CALLs and the charger's answers
//! to them; `answers.rs` reads the CSMS's answers to the charger's CALLs; `checks.rs` checks
//! values inside CSMS payloads (profiles, locations, timestamps).

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use super::findings::{
    ConnectFailure, Finding, Request, Rule, SUSPENDED_SWITCHES_PER_HOUR, Severity,
};
use super::scenario::Expectations;
use crate::stack::chargepoint::Event;

/// When something was observed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamp {
    /// Since the dry run started.
    pub elapsed: Duration,
    /// UTC wall-clock time.
    pub time: DateTime<Utc>,
}

/// Something the scenario did, so the analyzer can tell the CSMS's doing from the run's own.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// The EV changed its demand (a following status change is the EV's doing).
    EvDemand,
    /// The network goes away / comes back.
    OutageStarted,
    OutageEnded,
    /// Power goes away / comes back.
    PowerCutStarted,
    PowerCutEnded,
    /// The charger restarts cleanly.
    RebootStarted,
    /// A `wait_remote_start` step ended.
    RemoteStartWait {
        received: bool,
        waited: Duration,
    },
    /// The run is ending: what follows is the run's own shutdown.
    Finishing,
}

/// One thing observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Connecting,
    Connected,
    ConnectFailed {
        failure: ConnectFailure,
        detail: String,
    },
    Disconnected {
        reason: String,
    },
    /// A frame the charger sent (secrets already redacted by the stack).
    Sent(Value),
    /// A frame the charger received.
    Received(Value),
    Registration(String),
    Status {
        connector_id: u32,
        status: String,
        error_code: String,
    },
    Rebooting,
    Scenario(Mark),
}

impl Observation {
    /// Reads a charge point [`Event`] through its JSON form (`{"type": ..., "data": {...}}`),
    /// which is the stable contract of the event stream; events it does not know are skipped.
    pub fn from_event(event: &Event) -> Option<Observation> {
        Observation::from_event_json(&serde_json::to_value(event).ok()?)
    }

    pub fn from_event_json(v: &Value) -> Option<Observation> {
        let data = &v["data"];
        let text =
            |key: &str| super::findings::scrub_userinfo(data[key].as_str().unwrap_or_default());
        match v["type"].as_str()? {
            "connection" => match data["state"].as_str()? {
                "connecting" => Some(Observation::Connecting),
                "connected" => Some(Observation::Connected),
                "failed" => Some(Observation::ConnectFailed {
                    failure: connect_failure(&data["failure"], &data["http_status"]),
                    detail: text("detail"),
                }),
                "disconnected" => Some(Observation::Disconnected {
                    reason: text("detail"),
                }),
                _ => None,
            },
            "message" => {
                let frame = data["frame"].clone();
                match data["direction"].as_str()? {
                    "sent" => Some(Observation::Sent(frame)),
                    "received" => Some(Observation::Received(frame)),
                    _ => None,
                }
            }
            "registration" => Some(Observation::Registration(text("status"))),
            "status" => Some(Observation::Status {
                connector_id: data["connector_id"].as_u64().unwrap_or(0) as u32,
                status: text("status"),
                error_code: text("error_code"),
            }),
            "rebooting" => Some(Observation::Rebooting),
            _ => None,
        }
    }
}

/// The emulated charger's upper bound of ClockAlignedDataInterval, the lower of the two the
/// release notes give.
const CLOCK_ALIGNED_EMULATED_MAX: u64 = 4_294_967;

/// Why a connection attempt failed, from the kind the stack reports with the event
/// (`failure`, and `http_status` for a refused upgrade). The report groups the kinds an operator
/// acts on the same way: both timeouts are one, a network error or a broken upgrade is "other".
pub fn connect_failure(kind: &Value, http_status: &Value) -> ConnectFailure {
    use crate::stack::transport::ConnectFailure as Kind;
    let Ok(kind) = serde_json::from_value::<Kind>(kind.clone()) else {
        return ConnectFailure::Other;
    };
    match kind {
        Kind::BadUrl => ConnectFailure::BadUrl,
        Kind::Dns => ConnectFailure::Dns,
        Kind::TcpRefused => ConnectFailure::TcpRefused,
        Kind::TcpTimeout | Kind::HandshakeTimeout => ConnectFailure::Timeout,
        Kind::Tls => ConnectFailure::Tls,
        Kind::HttpStatus => match http_status.as_u64().and_then(|s| u16::try_from(s).ok()) {
            Some(status) => ConnectFailure::HttpStatus { status },
            None => ConnectFailure::Other,
        },
        Kind::Subprotocol => ConnectFailure::NoSubprotocol,
        Kind::Network | Kind::Handshake => ConnectFailure::Other,
    }
}

/// What the run knows before it starts.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The charger's configuration when the run started (key → value; write-only keys absent).
    pub configuration: BTreeMap<String, String>,
    pub expectations: Expectations,
}

/// Counters for the live summary and the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub connected: bool,
    pub ever_connected: bool,
    /// Last BootNotification status answered (None: no answer yet).
    pub registration: Option<String>,
    pub connections: u32,
    pub disconnections_by_csms: u32,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub blocking: usize,
    pub warnings: usize,
    pub info: usize,
    /// The last connection failure, when the charger is not connected.
    pub last_failure: Option<ConnectFailure>,
    pub last_failure_detail: Option<String>,
}

/// A CALL waiting for its answer.
#[derive(Debug, Clone)]
struct Pending {
    at: Stamp,
    action: String,
    frame: Value,
}

/// Statuses that mean "not charging although a session runs".
const SUSPENDED: [&str; 2] = ["SuspendedEV", "SuspendedEVSE"];
/// A status change this soon after the EV changed its demand is the EV's doing.
const EV_CAUSE_WINDOW: Duration = Duration::from_secs(5);
/// The known issue: a close within this long after the charger's last message, unanswered.
const ACK_WINDOW: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
/// Keys whose values the release notes do not state and a CSMS may size its requests by.
const ASSUMED_KEYS: [&str; 5] = [
    "GetConfigurationMaxKeys",
    "ChargeProfileMaxStackLevel",
    "ChargingScheduleMaxPeriods",
    "MaxChargingProfilesInstalled",
    "ReserveConnectorZeroSupported",
];
const MEASURAND_KEYS: [&str; 4] = [
    "MeterValuesSampledData",
    "MeterValuesAlignedData",
    "StopTxnSampledData",
    "StopTxnAlignedData",
];
/// Reasons the charger gives for disconnects it made itself.
const OWN_REASONS: [&str; 3] = [
    "disconnected",
    "reconnecting with new settings",
    "network lost",
];

/// The state machine.
#[derive(Debug)]
pub struct Analyzer {
    ctx: Context,
    /// The configuration as it is now (the CSMS may change it).
    config: BTreeMap<String, String>,
    findings: Vec<Finding>,
    index: HashMap<(String, Option<String>), usize>,
    /// Findings already handed out by [`Analyzer::take_new`].
    handed_out: usize,
    csms_calls: HashMap<String, Pending>,
    cp_calls: HashMap<String, Pending>,
    stats: Stats,
    /// A disconnect now is the run's own doing (outage, power cut, reboot, end of run).
    own_disconnect: bool,
    /// The charger's last frame and its action.
    last_cp_frame: Option<(Stamp, Value, Option<String>)>,
    last_csms_frame_at: Option<Duration>,
    pending_since: Option<Stamp>,
    local_list: BTreeSet<String>,
    profiles_installed: BTreeSet<i64>,
    connector_status: Option<String>,
    ev_demand_at: Option<Duration>,
    /// Switches between charging and suspended in the last hour.
    switches: VecDeque<Duration>,
    max_switches_per_hour: usize,
    switch_count: u64,
    /// Whether any BootNotification of the run was Accepted.
    ever_accepted: bool,
    last_smart_request: Option<Request>,
    exercised: BTreeSet<super::findings::Area>,
}

impl Analyzer {
    pub fn new(ctx: Context) -> Analyzer {
        Analyzer {
            config: ctx.configuration.clone(),
            ctx,
            findings: Vec::new(),
            index: HashMap::new(),
            handed_out: 0,
            csms_calls: HashMap::new(),
            cp_calls: HashMap::new(),
            stats: Stats::default(),
            own_disconnect: false,
            last_cp_frame: None,
            last_csms_frame_at: None,
            pending_since: None,
            local_list: BTreeSet::new(),
            profiles_installed: BTreeSet::new(),
            connector_status: None,
            ev_demand_at: None,
            switches: VecDeque::new(),
            max_switches_per_hour: 0,
            switch_count: 0,
            ever_accepted: false,
            last_smart_request: None,
            exercised: BTreeSet::new(),
        }
    }

    /// Every finding so far, in the order first seen.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Findings made since the last call (for a live view).
    pub fn take_new(&mut self) -> Vec<Finding> {
        let new = self.findings[self.handed_out..].to_vec();
        self.handed_out = self.findings.len();
        new
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.blocking = self.count(Severity::Blocking);
        s.warnings = self.count(Severity::Warning);
        s.info = self.count(Severity::Info);
        s
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Areas the CSMS's traffic touched (an area without traffic is "not exercised").
    pub fn exercised(&self) -> &BTreeSet<super::findings::Area> {
        &self.exercised
    }

    /// Feeds one observation.
    pub fn observe(&mut self, at: Stamp, obs: Observation) {
        self.tick(at);
        match obs {
            Observation::Connecting => {}
            Observation::Connected => {
                self.stats.connected = true;
                self.stats.ever_connected = true;
                self.stats.connections += 1;
                self.stats.last_failure = None;
                self.stats.last_failure_detail = None;
                self.own_disconnect = false;
                self.exercised.insert(super::findings::Area::Connection);
            }
            Observation::ConnectFailed { failure, detail } => {
                self.stats.last_failure = Some(failure);
                self.stats.last_failure_detail = Some(detail);
            }
            Observation::Disconnected { reason } => self.on_disconnected(at, &reason),
            Observation::Rebooting => {
                self.own_disconnect = true;
                self.lost_connection();
                self.stats.registration = None;
            }
            Observation::Sent(frame) => self.on_sent(at, frame),
            Observation::Received(frame) => self.on_received(at, frame),
            Observation::Registration(_) => {}
            Observation::Status {
                connector_id,
                status,
                ..
            } => {
                if connector_id == 1 {
                    self.on_connector_status(at, status);
                }
            }
            Observation::Scenario(mark) => self.on_mark(at, mark),
        }
    }

    /// Lets time pass: CALLs unanswered past MessageTimeout become findings.
    pub fn tick(&mut self, now: Stamp) {
        if !self.stats.connected {
            return;
        }
        let timeout = Duration::from_secs(self.message_timeout());
        let mut late: Vec<(String, Pending)> = self
            .cp_calls
            .iter()
            .filter(|(_, p)| now.elapsed.saturating_sub(p.at.elapsed) > timeout)
            .map(|(id, p)| (id.clone(), p.clone()))
            .collect();
        late.sort_by_key(|(_, p)| p.at.elapsed);
        for (id, p) in late {
            self.cp_calls.remove(&id);
            let request = self.request(p.at, "sent", Some(&p.action), &p.frame);
            self.record(
                Rule::UnansweredCall {
                    action: p.action.clone(),
                    timeout_s: timeout.as_secs(),
                },
                Some(request),
                None,
            );
        }
    }

    /// Ends the run: findings about the whole run (never connected, never accepted, how often
    /// smart charging switched the charger) are made now.
    pub fn finish(&mut self, at: Stamp) {
        self.tick(at);
        if !self.stats.ever_connected {
            let failure = self
                .stats
                .last_failure
                .clone()
                .unwrap_or(ConnectFailure::Other);
            let detail = self
                .stats
                .last_failure_detail
                .clone()
                .unwrap_or_else(|| "no connection attempt finished".into());
            self.record(Rule::Unreachable { failure, detail }, None, None);
        } else if let Some(status) = match self.stats.registration.as_deref() {
            Some("Accepted") => None,
            Some(other) => Some(other.to_string()),
            // A restart still under way at the end says nothing about the CSMS.
            None if self.ever_accepted => None,
            None => Some("never answered".to_string()),
        } {
            let detail = self.pending_since.map(|p| {
                format!(
                    "Pending since {:.0} s into the run",
                    p.elapsed.as_secs_f64()
                )
            });
            self.record(Rule::BootNotAccepted { status }, None, detail);
        }
        if self.max_switches_per_hour > 0 {
            let detail = format!(
                "{} switches between charging and suspended in the busiest hour, {} in the whole run",
                self.max_switches_per_hour, self.switch_count
            );
            let rule = Rule::SuspendedSwitching {
                per_hour: self.max_switches_per_hour,
            };
            match self.index.get(&(rule.id().to_string(), None)).copied() {
                Some(i) => {
                    let f = &mut self.findings[i];
                    f.title = rule.title();
                    f.severity = rule.severity();
                    f.detail = Some(detail);
                }
                None => {
                    let request = self.last_smart_request.clone();
                    self.record(rule, request, Some(detail));
                }
            }
            if let Some(i) = self
                .index
                .get(&("frequent_suspended_switching".to_string(), None))
            {
                self.findings[*i].count = self.switch_count;
            }
        }
    }

    // ----- connection ----------------------------------------------------------------------

    fn lost_connection(&mut self) {
        self.stats.connected = false;
        self.cp_calls.clear();
        self.csms_calls.clear();
    }

    fn on_disconnected(&mut self, at: Stamp, reason: &str) {
        let in_flight: Option<Pending> = self
            .cp_calls
            .values()
            .min_by(|a, b| a.at.elapsed.cmp(&b.at.elapsed))
            .cloned();
        let was_connected = self.stats.connected;
        self.lost_connection();
        let own = self.own_disconnect || OWN_REASONS.contains(&reason);
        if own || !was_connected {
            return;
        }
        self.stats.disconnections_by_csms += 1;
        self.record(
            Rule::CsmsClosedConnection,
            None,
            Some(format!("last reason: {reason}")),
        );
        // The known issue: the CSMS closes without acknowledging the charger's last message
        // within 1 s (a CALL still unanswered, or an answer it closed right after).
        let unacked = if let Some(p) = in_flight {
            Some((p.at, p.frame, Some(p.action)))
        } else {
            match &self.last_cp_frame {
                Some((sent_at, frame, action))
                    if at.elapsed.saturating_sub(sent_at.elapsed) <= ACK_WINDOW
                        && self.last_csms_frame_at.is_none_or(|r| r <= sent_at.elapsed) =>
                {
                    Some((*sent_at, frame.clone(), action.clone()))
                }
                _ => None,
            }
        };
        if let Some((sent_at, frame, action)) = unacked {
            let request = self.request(sent_at, "sent", action.as_deref(), &frame);
            self.record(
                Rule::CloseWithoutAck,
                Some(request),
                Some(format!(
                    "closed {:.1} s after the charger's message: {reason}",
                    at.elapsed.saturating_sub(sent_at.elapsed).as_secs_f64()
                )),
            );
        }
    }

    fn on_mark(&mut self, at: Stamp, mark: Mark) {
        match mark {
            Mark::EvDemand => self.ev_demand_at = Some(at.elapsed),
            Mark::OutageStarted | Mark::Finishing => self.own_disconnect = true,
            Mark::RebootStarted => {
                // The charger registers again after the restart.
                self.own_disconnect = true;
                self.stats.registration = None;
            }
            Mark::PowerCutStarted => {
                self.own_disconnect = true;
                self.stats.registration = None;
                self.lost_connection();
            }
            Mark::OutageEnded | Mark::PowerCutEnded => {}
            Mark::RemoteStartWait { received, waited } => {
                let expected = self.ctx.expectations.remote_start;
                if !received && expected != Some(false) {
                    self.record(
                        Rule::NoRemoteStart {
                            waited_s: waited.as_secs(),
                            expected: expected == Some(true),
                        },
                        None,
                        None,
                    );
                }
            }
        }
    }

    fn on_connector_status(&mut self, at: Stamp, status: String) {
        let previous = self.connector_status.replace(status.clone());
        let Some(previous) = previous else { return };
        let charging_edge = (previous == "Charging" && SUSPENDED.contains(&status.as_str()))
            || (SUSPENDED.contains(&previous.as_str()) && status == "Charging");
        if !charging_edge || self.last_smart_request.is_none() {
            return;
        }
        if self
            .ev_demand_at
            .is_some_and(|t| at.elapsed.saturating_sub(t) <= EV_CAUSE_WINDOW)
        {
            return;
        }
        self.switches.push_back(at.elapsed);
        while self
            .switches
            .front()
            .is_some_and(|t| at.elapsed.saturating_sub(*t) >= HOUR)
        {
            self.switches.pop_front();
        }
        self.switch_count += 1;
        let in_hour = self.switches.len();
        self.max_switches_per_hour = self.max_switches_per_hour.max(in_hour);
        let rule = Rule::SuspendedSwitching { per_hour: in_hour };
        let key = (rule.id().to_string(), None);
        if !self.index.contains_key(&key) && in_hour >= SUSPENDED_SWITCHES_PER_HOUR {
            let request = self.last_smart_request.clone();
            self.record(rule, request, None);
        }
        if let Some(i) = self.index.get(&key).copied() {
            self.findings[i].count = self.switch_count;
        }
    }

    // ----- frames ----------------------------------------------------------------------------

    fn on_sent(&mut self, at: Stamp, frame: Value) {
        self.stats.frames_sent += 1;
        let id = frame[1].as_str().unwrap_or_default().to_string();
        let mut action = None;
        match frame[0].as_u64() {
            Some(2) => {
                let name = frame[2].as_str().unwrap_or_default().to_string();
                self.exercised
                    .insert(super::findings::Area::of_action(&name));
                action = Some(name.clone());
                self.cp_calls.insert(
                    id,
                    Pending {
                        at,
                        action: name,
                        frame: frame.clone(),
                    },
                );
            }
            Some(3) | Some(4) => {
                if let Some(call) = self.csms_calls.remove(&id) {
                    self.on_charger_answer(&call, &frame);
                    action = Some(call.action);
                }
            }
            _ => {}
        }
        self.last_cp_frame = Some((at, frame, action));
    }

    fn on_received(&mut self, at: Stamp, frame: Value) {
        self.stats.frames_received += 1;
        self.last_csms_frame_at = Some(at.elapsed);
        let id = frame[1].as_str().unwrap_or_default().to_string();
        match frame[0].as_u64() {
            Some(2) => {
                let action = frame[2].as_str().unwrap_or_default().to_string();
                let call = Pending {
                    at,
                    action: action.clone(),
                    frame: frame.clone(),
                };
                self.on_csms_call(&call);
                self.check_timestamps(at, &action, &frame, &frame[3], "received");
                self.csms_calls.insert(id, call);
            }
            Some(3) => {
                if let Some(call) = self.cp_calls.remove(&id) {
                    self.check_timestamps(at, &call.action, &frame, &frame[2], "received");
                    self.on_csms_answer(at, &call, &frame, Ok(&frame[2]));
                }
            }
            Some(4) => {
                if let Some(call) = self.cp_calls.remove(&id) {
                    let code = frame[2].as_str().unwrap_or("?").to_string();
                    self.on_csms_answer(at, &call, &frame, Err(code));
                }
            }
            _ => {}
        }
    }

    fn assume(&mut self, call: &Pending, key: &str, why: &str) {
        let emulated = self
            .config
            .get(key)
            .cloned()
            .unwrap_or_else(|| "(not set)".into());
        let req = self.request(call.at, "received", Some(&call.action), &call.frame);
        self.record(
            Rule::Assumption {
                key: key.to_string(),
                emulated,
                why: format!("The CSMS relies on it: {why}."),
            },
            Some(req),
            None,
        );
    }

    // ----- helpers ---------------------------------------------------------------------------

    fn message_timeout(&self) -> u64 {
        self.int("MessageTimeout").unwrap_or(30).clamp(1, 3600)
    }

    fn int(&self, key: &str) -> Option<u64> {
        self.config.get(key).and_then(|v| v.trim().parse().ok())
    }

    fn flag(&self, key: &str) -> bool {
        self.config
            .get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn request(&self, at: Stamp, direction: &str, action: Option<&str>, frame: &Value) -> Request {
        Request::new(at.elapsed, at.time, direction, action, frame)
    }

    /// Adds a finding, or counts one more of an existing one (same rule and subject).
    fn record(&mut self, rule: Rule, request: Option<Request>, detail: Option<String>) {
        let key = (rule.id().to_string(), rule.subject());
        if let Some(i) = self.index.get(&key).copied() {
            self.findings[i].count += 1;
            return;
        }
        self.index.insert(key, self.findings.len());
        self.findings.push(rule.finding(request, detail));
    }
}

mod answers;
mod calls;
mod checks;

#[cfg(test)]
mod tests;
