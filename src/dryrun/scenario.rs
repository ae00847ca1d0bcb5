//! Dry-run scenarios: a TOML timeline of hardware and network events with relative times.
//!
//! ```toml
//! name = "Site A commissioning"
//! description = "Two sessions, an outage, a power cut"
//!
//! [commissioning]                      # optional, merged with the profile's [commissioning]
//! accepted_id_tags = ["04A2B3C4D5"]    # cards the CSMS must accept
//! remote_start = true                  # the CSMS must start a session remotely
//!
//! [[step]]
//! action = "boot"                      # wait until BootNotification is Accepted
//! timeout = "60s"
//!
//! [[step]]
//! after = "5s"                         # wait this long after the previous step, then act
//! action = "plug"
//!
//! [[step]]
//! after = "2s"
//! action = "card"
//! id_tag = "04A2B3C4D5"                # default: the first accepted id tag, else DRYRUN-CARD
//! ```
//!
//! Every step waits `after` (default 0) once the previous step is done, then runs. Actions:
//!
//! | action | fields | what happens |
//! | --- | --- | --- |
//! | `boot` | `timeout` (60 s) | waits until BootNotification is Accepted, at most `timeout`; a charger that never connected by then ends the run (CSMS unreachable) |
//! | `plug` / `unplug` | | the EV cable is plugged in / pulled out |
//! | `card` | `id_tag` | an RFID card is presented |
//! | `ev_demand` | `amps` (0 to 80) | the EV asks for this current per phase (0: the EV suspends) |
//! | `fault` / `clear_fault` | `error_code`, `info` | a hardware fault (an OCPP ChargePointErrorCode) appears / clears |
//! | `csms_outage` | `duration` | the network is lost (no close frame) and comes back after `duration` |
//! | `power_cut` | `duration` | the charger loses power (no clean shutdown) and boots again on the same state after `duration` |
//! | `reboot` | | the charger restarts cleanly, as from its service port |
//! | `wait_remote_start` | `timeout` (120 s) | waits until the CSMS sends RemoteStartTransaction, at most `timeout` |
//! | `wait` | `duration` | only watches |
//!
//! Durations are seconds (`90`) or text with units `ms`, `s`, `m`, `h` (`"1m30s"`). Errors name
//! `file:line:column`.

use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// The scenario a dry run plays when none is given.
pub const DEFAULT_SCENARIO: &str = include_str!("default-scenario.toml");

/// The card presented by a `card` step without `id_tag` when the commissioning lists none.
pub const DEFAULT_ID_TAG: &str = "DRYRUN-CARD";

/// Longest duration a step may name (a week).
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `path:line:column: message`
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// What the site expects from the CSMS (from the profile's and the scenario's `[commissioning]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expectations {
    /// Cards the CSMS must accept.
    pub accepted_id_tags: Vec<String>,
    /// Whether the CSMS must start sessions remotely (None: not stated).
    pub remote_start: Option<bool>,
}

impl Expectations {
    /// `self` completed by `other`: id tags of both, `other`'s remote_start when it states one.
    pub fn merged(&self, other: &Expectations) -> Expectations {
        let mut tags = self.accepted_id_tags.clone();
        for t in &other.accepted_id_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        Expectations {
            accepted_id_tags: tags,
            remote_start: other.remote_start.or(self.remote_start),
        }
    }
}

impl From<&crate::provision::Commissioning> for Expectations {
    fn from(c: &crate::provision::Commissioning) -> Self {
        Expectations {
            accepted_id_tags: c.accepted_id_tags.clone(),
            remote_start: c.remote_start,
        }
    }
}

/// One event of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Boot {
        timeout: Duration,
    },
    Plug,
    Unplug,
    /// `None`: the first accepted id tag, else [`DEFAULT_ID_TAG`].
    Card {
        id_tag: Option<String>,
    },
    EvDemand {
        amps: f64,
    },
    Fault {
        error_code: String,
        info: Option<String>,
    },
    ClearFault,
    CsmsOutage {
        duration: Duration,
    },
    PowerCut {
        duration: Duration,
    },
    Reboot,
    WaitRemoteStart {
        timeout: Duration,
    },
    Wait {
        duration: Duration,
    },
}

impl Action {
    /// Short text for progress lines (`card DRYRUN-CARD`, `csms_outage 30 s`).
    pub fn describe(&self) -> String {
        let secs = |d: &Duration| format_duration(*d);
        match self {
            Action::Boot { timeout } => format!("boot (up to {})", secs(timeout)),
            Action::Plug => "plug".into(),
            Action::Unplug => "unplug".into(),
            Action::Card { id_tag } => {
                format!("card {}", id_tag.as_deref().unwrap_or("(expected card)"))
            }
            Action::EvDemand { amps } => format!("ev_demand {amps} A"),
            Action::Fault { error_code, .. } => format!("fault {error_code}"),
            Action::ClearFault => "clear_fault".into(),
            Action::CsmsOutage { duration } => format!("csms_outage {}", secs(duration)),
            Action::PowerCut { duration } => format!("power_cut {}", secs(duration)),
            Action::Reboot => "reboot".into(),
            Action::WaitRemoteStart { timeout } => {
                format!("wait_remote_start (up to {})", secs(timeout))
            }
            Action::Wait { duration } => format!("wait {}", secs(duration)),
        }
    }
}

/// One step: wait `after`, then `action`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub after: Duration,
    pub action: Action,
    /// Line of the step in its file (for messages).
    pub line: usize,
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// The file it came from, or `built-in default`.
    pub source: String,
    pub expectations: Expectations,
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    commissioning: Option<RawCommissioning>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommissioning {
    #[serde(default)]
    accepted_id_tags: Vec<Spanned<String>>,
    remote_start: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    action: Spanned<String>,
    after: Option<Spanned<toml::Value>>,
    id_tag: Option<Spanned<String>>,
    amps: Option<Spanned<f64>>,
    error_code: Option<Spanned<String>>,
    info: Option<Spanned<String>>,
    duration: Option<Spanned<toml::Value>>,
    timeout: Option<Spanned<toml::Value>>,
}

const ACTIONS: &str = "boot, plug, unplug, card, ev_demand, fault, clear_fault, csms_outage, power_cut, reboot, wait_remote_start, wait";

impl Scenario {
    /// The built-in default scenario.
    pub fn default_scenario() -> Scenario {
        match Scenario::parse("built-in default", DEFAULT_SCENARIO) {
            Ok(s) => s,
            // The embedded file is checked by a test; an empty timeline still runs.
            Err(_) => Scenario {
                name: "default".into(),
                description: None,
                source: "built-in default".into(),
                expectations: Expectations::default(),
                steps: Vec::new(),
            },
        }
    }

    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&path.display().to_string(), &text)
    }

    /// Parses scenario text; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Scenario, Error> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = span.map_or((1, 1), |s| line_col(text, s.start));
            Error::At {
                path: path.to_string(),
                line,
                column,
                message,
            }
        };
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
        let mut expectations = Expectations::default();
        if let Some(c) = &raw.commissioning {
            for tag in &c.accepted_id_tags {
                check_id_tag(tag.get_ref())
                    .map_err(|m| at(Some(tag.span()), format!("accepted_id_tags: {m}")))?;
                if !expectations.accepted_id_tags.contains(tag.get_ref()) {
                    expectations.accepted_id_tags.push(tag.get_ref().clone());
                }
            }
            expectations.remote_start = c.remote_start;
        }
        let mut steps = Vec::new();
        for spanned in &raw.step {
            let step = spanned.get_ref();
            let step_span = spanned.span();
            let action_name = step.action.get_ref().as_str();
            let after = match &step.after {
                Some(v) => parse_duration(v.get_ref(), true)
                    .map_err(|m| at(Some(v.span()), format!("after: {m}")))?,
                None => Duration::ZERO,
            };
            // Fields each action takes; anything else is a mistake worth naming.
            let allowed: &[&str] = match action_name {
                "boot" | "wait_remote_start" => &["timeout"],
                "card" => &["id_tag"],
                "ev_demand" => &["amps"],
                "fault" => &["error_code", "info"],
                "csms_outage" | "power_cut" | "wait" => &["duration"],
                "plug" | "unplug" | "clear_fault" | "reboot" => &[],
                other => {
                    return Err(at(
                        Some(step.action.span()),
                        format!("unknown action \"{other}\" (expected one of: {ACTIONS})"),
                    ));
                }
            };
            let present: [(&str, Option<std::ops::Range<usize>>); 6] = [
                ("id_tag", step.id_tag.as_ref().map(Spanned::span)),
                ("amps", step.amps.as_ref().map(Spanned::span)),
                ("error_code", step.error_code.as_ref().map(Spanned::span)),
                ("info", step.info.as_ref().map(Spanned::span)),
                ("duration", step.duration.as_ref().map(Spanned::span)),
                ("timeout", step.timeout.as_ref().map(Spanned::span)),
            ];
            for (field, span) in present {
                if let Some(span) = span
                    && !allowed.contains(&field)
                {
                    return Err(at(
                        Some(span),
                        format!("\"{action_name}\" takes no {field}"),
                    ));
                }
            }
            let needs = |field: &str| {
                at(
                    Some(step_span.clone()),
                    format!("\"{action_name}\" needs {field}"),
                )
            };
            let duration_of = |v: &Spanned<toml::Value>, field: &str| {
                parse_duration(v.get_ref(), false)
                    .map_err(|m| at(Some(v.span()), format!("{field}: {m}")))
            };
            let optional_timeout = |default: u64| match &step.timeout {
                Some(v) => duration_of(v, "timeout"),
                None => Ok(Duration::from_secs(default)),
            };
            let action = match action_name {
                "boot" => Action::Boot {
                    timeout: optional_timeout(60)?,
                },
                "wait_remote_start" => Action::WaitRemoteStart {
                    timeout: optional_timeout(120)?,
                },
                "plug" => Action::Plug,
                "unplug" => Action::Unplug,
                "clear_fault" => Action::ClearFault,
                "reboot" => Action::Reboot,
                "card" => {
                    let id_tag = match &step.id_tag {
                        Some(t) => {
                            check_id_tag(t.get_ref())
                                .map_err(|m| at(Some(t.span()), format!("id_tag: {m}")))?;
                            Some(t.get_ref().clone())
                        }
                        None => None,
                    };
                    Action::Card { id_tag }
                }
                "ev_demand" => {
                    let amps = step.amps.as_ref().ok_or_else(|| {
                        at(Some(step_span.clone()), "\"ev_demand\" needs amps".into())
                    })?;
                    let a = *amps.get_ref();
                    if !a.is_finite() || !(0.0..=80.0).contains(&a) {
                        return Err(at(
                            Some(amps.span()),
                            format!("amps must be 0 to 80, got {a}"),
                        ));
                    }
                    Action::EvDemand { amps: a }
                }
                "fault" => {
                    let code = step.error_code.as_ref().ok_or_else(|| {
                        at(Some(step_span.clone()), "\"fault\" needs error_code".into())
                    })?;
                    let c = code.get_ref();
                    if !crate::emulator::headless::is_fault_code(c) {
                        return Err(at(
                            Some(code.span()),
                            format!(
                                "unknown error_code \"{c}\" (an OCPP ChargePointErrorCode such as GroundFailure)"
                            ),
                        ));
                    }
                    if let Some(info) = &step.info
                        && info.get_ref().chars().count() > 50
                    {
                        return Err(at(
                            Some(info.span()),
                            "info must be at most 50 characters".into(),
                        ));
                    }
                    Action::Fault {
                        error_code: c.clone(),
                        info: step.info.as_ref().map(|i| i.get_ref().clone()),
                    }
                }
                "csms_outage" => Action::CsmsOutage {
                    duration: duration_of(
                        step.duration.as_ref().ok_or_else(|| needs("duration"))?,
                        "duration",
                    )?,
                },
                "power_cut" => Action::PowerCut {
                    duration: duration_of(
                        step.duration.as_ref().ok_or_else(|| needs("duration"))?,
                        "duration",
                    )?,
                },
                "wait" => Action::Wait {
                    duration: duration_of(
                        step.duration.as_ref().ok_or_else(|| needs("duration"))?,
                        "duration",
                    )?,
                },
                other => {
                    return Err(at(
                        Some(step.action.span()),
                        format!("unknown action \"{other}\" (expected one of: {ACTIONS})"),
                    ));
                }
            };
            steps.push(Step {
                after,
                action,
                line: line_col(text, step_span.start).0,
            });
        }
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| {
                Path::new(path)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("scenario")
                    .to_string()
            }),
            description: raw.description,
            source: path.to_string(),
            expectations,
            steps,
        })
    }

    /// The least time the timeline takes (waits counted at their full length, except `boot`
    /// and `wait_remote_start`, which may end early).
    pub fn nominal_length(&self) -> Duration {
        self.steps
            .iter()
            .map(|s| {
                s.after
                    + match &s.action {
                        Action::CsmsOutage { duration }
                        | Action::PowerCut { duration }
                        | Action::Wait { duration } => *duration,
                        _ => Duration::ZERO,
                    }
            })
            .sum()
    }
}

fn check_id_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.chars().count() > 20 {
        return Err(format!(
            "\"{tag}\" must be 1 to 20 characters (OCPP IdToken)"
        ));
    }
    Ok(())
}

/// `90`, `"90s"`, `"1m30s"`, `"500ms"`, `"2h"`.
pub fn parse_duration(value: &toml::Value, zero_ok: bool) -> Result<Duration, String> {
    let d = match value {
        toml::Value::Integer(i) if *i >= 0 => Duration::from_secs(*i as u64),
        toml::Value::Integer(i) => return Err(format!("{i} is negative")),
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e9 => {
            Duration::from_secs_f64(*f)
        }
        toml::Value::String(s) => parse_duration_text(s)?,
        other => {
            return Err(format!(
                "expected seconds or a duration such as \"1m30s\", got {other}"
            ));
        }
    };
    if d.is_zero() && !zero_ok {
        return Err("must be more than 0".into());
    }
    if d > MAX_DURATION {
        return Err("must be at most a week".into());
    }
    Ok(d)
}

fn parse_duration_text(s: &str) -> Result<Duration, String> {
    let bad = || format!("\"{s}\" is not a duration (such as 90, \"90s\", \"1m30s\", \"500ms\")");
    let text = s.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" | "" => number,
            "m" | "min" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(bad()),
        };
        if !seconds.is_finite() || seconds > MAX_DURATION.as_secs_f64() {
            return Err("must be at most a week".into());
        }
        total += Duration::from_secs_f64(seconds);
    }
    Ok(total)
}

/// `1 m 30 s`-style text: `90 s`, `2 min`, `1 h 5 min`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{:.1} s", d.as_secs_f64());
    }
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else if s < 7200 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_parses_and_tells_its_story() {
        let s = Scenario::parse("built-in default", DEFAULT_SCENARIO).unwrap();
        assert_eq!(s.name, "default");
        let actions: Vec<String> = s.steps.iter().map(|s| s.action.describe()).collect();
        assert_eq!(actions[0], "boot (up to 60 s)");
        assert!(
            s.steps
                .iter()
                .any(|s| matches!(s.action, Action::CsmsOutage { .. }))
        );
        assert!(
            s.steps
                .iter()
                .any(|s| matches!(s.action, Action::WaitRemoteStart { .. }))
        );
        assert_eq!(Scenario::default_scenario(), s);
    }

    #[test]
    fn parses_every_action_and_duration_form() {
        let text = r#"
name = "all"
[commissioning]
accepted_id_tags = ["A1", "B2"]
remote_start = true

[[step]]
action = "boot"
[[step]]
after = 5
action = "plug"
[[step]]
after = "1m30s"
action = "card"
id_tag = "A1"
[[step]]
action = "ev_demand"
amps = 16
[[step]]
action = "fault"
error_code = "GroundFailure"
info = "RCD"
[[step]]
action = "clear_fault"
[[step]]
action = "csms_outage"
duration = "500ms"
[[step]]
action = "power_cut"
duration = 10
[[step]]
action = "reboot"
[[step]]
action = "wait_remote_start"
timeout = "2m"
[[step]]
action = "unplug"
[[step]]
action = "wait"
duration = "1h"
"#;
        let s = Scenario::parse("all.toml", text).unwrap();
        assert_eq!(s.expectations.accepted_id_tags, ["A1", "B2"]);
        assert_eq!(s.expectations.remote_start, Some(true));
        assert_eq!(
            s.steps[0].action,
            Action::Boot {
                timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(s.steps[1].after, Duration::from_secs(5));
        assert_eq!(s.steps[2].after, Duration::from_secs(90));
        assert_eq!(s.steps[2].line, 12);
        assert_eq!(s.steps[3].action, Action::EvDemand { amps: 16.0 });
        assert_eq!(
            s.steps[6].action,
            Action::CsmsOutage {
                duration: Duration::from_millis(500)
            }
        );
        assert_eq!(
            s.steps[9].action,
            Action::WaitRemoteStart {
                timeout: Duration::from_secs(120)
            }
        );
        assert_eq!(
            s.steps[11].action,
            Action::Wait {
                duration: Duration::from_secs(3600)
            }
        );
        assert_eq!(s.steps.len(), 12);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let cases = [
            (
                "[[step]]\naction = \"fly\"\n",
                "s.toml:2:10: unknown action \"fly\"",
            ),
            (
                "[[step]]\naction = \"plug\"\namps = 3\n",
                "s.toml:3:8: \"plug\" takes no amps",
            ),
            (
                "[[step]]\naction = \"ev_demand\"\namps = 100\n",
                "s.toml:3:8: amps must be 0 to 80",
            ),
            (
                "\n[[step]]\naction = \"csms_outage\"\n",
                "s.toml:2:1: \"csms_outage\" needs duration",
            ),
            (
                "[[step]]\naction = \"wait\"\nduration = \"ten\"\n",
                "s.toml:3:12: duration: \"ten\" is not a duration",
            ),
            (
                "[[step]]\naction = \"plug\"\nafter = \"-3s\"\n",
                "s.toml:3:9: after:",
            ),
            (
                "[[step]]\naction = \"fault\"\nerror_code = \"Oops\"\n",
                "s.toml:3:14: unknown error_code \"Oops\"",
            ),
            (
                "[[step]]\naction = \"card\"\nid_tag = \"123456789012345678901\"\n",
                "s.toml:3:10: id_tag:",
            ),
            (
                "[[step]]\nactoin = \"plug\"\n",
                "s.toml:2:1: unknown field `actoin`",
            ),
            ("[[step]]\naction = \n", "s.toml:2:"),
            (
                "[commissioning]\naccepted_id_tags = [\"\"]\n",
                "s.toml:2:21: accepted_id_tags:",
            ),
        ];
        for (text, expected) in cases {
            let e = Scenario::parse("s.toml", text).unwrap_err().to_string();
            assert!(e.starts_with(expected), "got {e:?}, expected {expected:?}");
        }
    }

    #[test]
    fn expectations_merge_tags_and_let_the_scenario_decide_remote_start() {
        let profile = Expectations {
            accepted_id_tags: vec!["A".into()],
            remote_start: Some(true),
        };
        let scenario = Expectations {
            accepted_id_tags: vec!["B".into(), "A".into()],
            remote_start: None,
        };
        let m = profile.merged(&scenario);
        assert_eq!(m.accepted_id_tags, ["A", "B"]);
        assert_eq!(m.remote_start, Some(true));
        let off = Expectations {
            remote_start: Some(false),
            ..Expectations::default()
        };
        assert_eq!(profile.merged(&off).remote_start, Some(false));
    }

    #[test]
    fn durations_format_for_people() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10 min");
        assert_eq!(format_duration(Duration::from_secs(150)), "2 min 30 s");
        assert_eq!(format_duration(Duration::from_millis(500)), "0.5 s");
    }
}
