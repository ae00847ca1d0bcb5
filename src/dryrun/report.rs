//! The dry-run report and its three renderings: Markdown, HTML (one self-contained file: inline
//! CSS, no scripts, fonts or external references, every text escaped, printable) and JSON.
//!
//! # JSON shape (`format_version` 1)
//!
//! ```text
//! {
//!   "format_version": 1,
//!   "tool": {"name": "chargectl", "version": "0.1.0"},
//!   "charge_point_id": "CP1",
//!   "csms_url": "ws://host:9000/ocpp",        credentials in the URL are removed
//!   "sandbox": false,                          true: the in-process sandbox CSMS
//!   "profile": "site-a" | null,
//!   "scenario": {"name": "default", "source": "built-in default", "steps": 10, "steps_done": 10},
//!   "expectations": {"accepted_id_tags": ["..."], "remote_start": true | false | null},
//!   "started_at": "2026-01-01T00:00:00Z",
//!   "duration_s": 312.5,
//!   "ended_by": "completed" | "interrupted" | "unreachable",
//!   "connection": {"connected": true, "connections": 2, "disconnections_by_csms": 0,
//!                  "registration": "Accepted" | "Pending" | "Rejected" | null,
//!                  "failure": {"kind": "tcp_refused" | "dns" | "timeout" | "tls" | "http_status"
//!                              | "no_subprotocol" | "bad_url" | "other", "status": 401} | null,
//!                  "failure_detail": "..." | null},
//!   "messages": {"sent": 40, "received": 38},
//!   "counts": {"blocking": 1, "warning": 2, "info": 0},
//!   "findings": [{
//!     "rule": "charging_profile_in_watts", "subject": null,
//!     "severity": "blocking" | "warning" | "info",
//!     "area": "connection" | "authorization" | "transactions" | "smart_charging" | "firmware"
//!             | "diagnostics" | "configuration",
//!     "title": "...", "count": 3,
//!     "request": {"elapsed_s": 42.1, "time": "...", "message_id": "...", "action": "...",
//!                 "direction": "received" | "sent", "excerpt": "[2,\"...\",...]"} | null,
//!     "detail": "..." | null,
//!     "charger": "what the real charger does",
//!     "release_note": {"line": 91, "text": "Only 'A' is allowed as ChargingRateUnitType"},
//!     "advice": "what the operator can do instead"
//!   }],
//!   "verdicts": [{"area": "connection", "verdict": "ok" | "warning" | "blocking" | "not_exercised",
//!                 "summary": "..."}],                one per area, in the order above
//!   "verdict": "ok" | "warning" | "blocking"
//! }
//! ```
//!
//! Findings are sorted by severity (blocking first), then area, then time. Fields may be added
//! in later versions; consumers should ignore fields they do not know.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

use super::analyzer::Stats;
use super::findings::{Area, ConnectFailure, Finding, Severity};
use super::scenario::Expectations;

/// Version of the JSON shape this build writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    pub name: String,
    pub source: String,
    pub steps: usize,
    pub steps_done: usize,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The scenario and the duration are over.
    Completed,
    /// Ctrl-C (or SIGTERM).
    Interrupted,
    /// The charger never reached the CSMS within the boot step's timeout.
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSummary {
    /// Whether the charger was connected at least once.
    pub connected: bool,
    pub connections: u32,
    pub disconnections_by_csms: u32,
    pub registration: Option<String>,
    pub failure: Option<ConnectFailure>,
    pub failure_detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    pub sent: u64,
    pub received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub blocking: usize,
    pub warning: usize,
    pub info: usize,
}

/// The verdict for one area, or for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warning,
    Blocking,
    /// The CSMS did nothing in this area during the run.
    NotExercised,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Blocking => "blocking",
            Verdict::NotExercised => "not exercised",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreaVerdict {
    pub area: Area,
    pub verdict: Verdict,
    pub summary: String,
}

/// A rendering of the report, chosen by a file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
    Json,
}

impl ReportFormat {
    /// The format for `path` by its extension (`.md`/`.markdown`, `.html`/`.htm`, `.json`, in
    /// any case); None for any other.
    pub fn for_path(path: &std::path::Path) -> Option<ReportFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Some(ReportFormat::Markdown),
            "html" | "htm" => Some(ReportFormat::Html),
            "json" => Some(ReportFormat::Json),
            _ => None,
        }
    }

    /// What to tell someone who gave another extension.
    pub const EXTENSIONS: &'static str = "the format follows the extension: .md, .html or .json";
}

/// Everything a dry run found. See the module documentation for the JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    pub tool: Tool,
    pub charge_point_id: String,
    pub csms_url: String,
    pub sandbox: bool,
    pub profile: Option<String>,
    pub scenario: ScenarioSummary,
    pub expectations: Expectations,
    pub started_at: DateTime<Utc>,
    pub duration_s: f64,
    pub ended_by: EndedBy,
    pub connection: ConnectionSummary,
    pub messages: MessageCounts,
    pub counts: Counts,
    pub findings: Vec<Finding>,
    pub verdicts: Vec<AreaVerdict>,
    pub verdict: Verdict,
}

/// What the report is built from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub charge_point_id: String,
    pub csms_url: String,
    pub sandbox: bool,
    pub profile: Option<String>,
    pub scenario: ScenarioSummary,
    pub expectations: Expectations,
    pub started_at: DateTime<Utc>,
    pub duration_s: f64,
    pub ended_by: EndedBy,
}

impl Report {
    /// Builds the report: findings sorted, verdicts per area.
    pub fn build(
        inputs: Inputs,
        stats: &Stats,
        findings: &[Finding],
        exercised: &std::collections::BTreeSet<Area>,
    ) -> Report {
        let mut findings = findings.to_vec();
        findings.sort_by(|a, b| {
            a.severity.cmp(&b.severity).then(a.area.cmp(&b.area)).then(
                a.request
                    .as_ref()
                    .map_or(f64::MAX, |r| r.elapsed_s)
                    .total_cmp(&b.request.as_ref().map_or(f64::MAX, |r| r.elapsed_s)),
            )
        });
        let counts = Counts {
            blocking: count(&findings, Severity::Blocking),
            warning: count(&findings, Severity::Warning),
            info: count(&findings, Severity::Info),
        };
        let verdicts = Area::ALL
            .iter()
            .map(|&area| area_verdict(area, &findings, exercised.contains(&area)))
            .collect();
        let verdict = if counts.blocking > 0 {
            Verdict::Blocking
        } else if counts.warning > 0 {
            Verdict::Warning
        } else {
            Verdict::Ok
        };
        Report {
            format_version: FORMAT_VERSION,
            tool: Tool {
                name: "chargectl".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            charge_point_id: inputs.charge_point_id,
            csms_url: without_credentials(&inputs.csms_url),
            sandbox: inputs.sandbox,
            profile: inputs.profile,
            scenario: inputs.scenario,
            expectations: inputs.expectations,
            started_at: inputs.started_at,
            duration_s: inputs.duration_s,
            ended_by: inputs.ended_by,
            connection: ConnectionSummary {
                connected: stats.ever_connected,
                connections: stats.connections,
                disconnections_by_csms: stats.disconnections_by_csms,
                registration: stats.registration.clone(),
                failure: if stats.ever_connected {
                    None
                } else {
                    stats.last_failure.clone()
                },
                failure_detail: if stats.ever_connected {
                    None
                } else {
                    stats.last_failure_detail.clone()
                },
            },
            messages: MessageCounts {
                sent: stats.frames_sent,
                received: stats.frames_received,
            },
            counts,
            findings,
            verdicts,
            verdict,
        }
    }

    /// The report as pretty JSON.
    /// The report in `format`.
    pub fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Markdown => self.to_markdown(),
            ReportFormat::Html => self.to_html(),
            ReportFormat::Json => self.to_json(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// One line per area: `Smart charging: blocking (1 blocking: ...)`.
    pub fn verdict_lines(&self) -> Vec<String> {
        self.verdicts
            .iter()
            .map(|v| format!("{}: {}", v.area.title(), v.summary))
            .collect()
    }

    /// The one-line overall verdict.
    pub fn verdict_line(&self) -> String {
        let c = &self.counts;
        match self.verdict {
            Verdict::Blocking => format!(
                "NOT READY: {} blocking, {} warning{}, {} info",
                c.blocking,
                c.warning,
                plural(c.warning),
                c.info
            ),
            Verdict::Warning => format!(
                "READY WITH WARNINGS: {} warning{}, {} info",
                c.warning,
                plural(c.warning),
                c.info
            ),
            _ => format!("READY: nothing blocking, no warnings, {} info", c.info),
        }
    }

    /// The report in Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Commissioning dry run: {}\n",
            md(&self.charge_point_id)
        );
        let _ = writeln!(s, "**{}**\n", md(&self.verdict_line()));
        let _ = writeln!(s, "| | |\n| --- | --- |");
        for (k, v) in self.facts() {
            let _ = writeln!(s, "| {} | {} |", md(&k), md(&v));
        }
        let _ = writeln!(s);
        if self.findings.is_empty() {
            let _ = writeln!(s, "No findings.\n");
        }
        for (severity, group) in self.by_severity() {
            let _ = writeln!(s, "## {} ({})\n", severity_heading(severity), group.len());
            for f in group {
                let _ = writeln!(s, "### {}\n", md(&capitalize(&f.title)));
                let _ = writeln!(
                    s,
                    "- **Area:** {} · **rule:** `{}`{}",
                    f.area.title(),
                    f.rule,
                    if f.count > 1 {
                        format!(" · **seen:** {} times", f.count)
                    } else {
                        String::new()
                    }
                );
                if let Some(r) = &f.request {
                    let _ = writeln!(
                        s,
                        "- **First seen:** {} ({} s into the run){}{}",
                        r.time.format("%Y-%m-%d %H:%M:%S UTC"),
                        r.elapsed_s,
                        r.action
                            .as_ref()
                            .map(|a| format!(", {} {}", md(a), r.direction))
                            .unwrap_or_default(),
                        r.message_id
                            .as_ref()
                            .map(|i| format!(", message id `{}`", code_span(i)))
                            .unwrap_or_default()
                    );
                }
                if let Some(d) = &f.detail {
                    let _ = writeln!(s, "- **Detail:** {}", md(d));
                }
                let _ = writeln!(s, "- **The real charger:** {}", md(&f.charger));
                let _ = writeln!(
                    s,
                    "- **Release notes (line {}):** “{}”",
                    f.release_note.line,
                    md(&f.release_note.text)
                );
                let _ = writeln!(s, "- **Instead:** {}", md(&f.advice));
                if let Some(r) = &f.request {
                    let mut fence = "```".to_string();
                    while r.excerpt.contains(&fence) {
                        fence.push('`');
                    }
                    let _ = writeln!(s, "\n{fence}json\n{}\n{fence}", r.excerpt);
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s, "## Verdict\n");
        let _ = writeln!(s, "| Area | Verdict |\n| --- | --- |");
        for v in &self.verdicts {
            let _ = writeln!(s, "| {} | {} |", v.area.title(), md(&v.summary));
        }
        s
    }

    /// The report as one self-contained HTML file.
    pub fn to_html(&self) -> String {
        let mut s = String::new();
        let title = format!("Commissioning dry run: {}", self.charge_point_id);
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>\n{}</style>\n</head>\n<body>\n",
            esc(&title),
            CSS
        );
        let _ = writeln!(s, "<h1>{}</h1>", esc(&title));
        let _ = writeln!(
            s,
            "<p class=\"verdict {}\">{}</p>",
            verdict_class(self.verdict),
            esc(&self.verdict_line())
        );
        let _ = writeln!(s, "<table class=\"facts\">");
        for (k, v) in self.facts() {
            let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
        }
        let _ = writeln!(s, "</table>");
        if self.findings.is_empty() {
            let _ = writeln!(s, "<p>No findings.</p>");
        }
        for (severity, group) in self.by_severity() {
            let _ = writeln!(
                s,
                "<h2>{} ({})</h2>",
                esc(severity_heading(severity)),
                group.len()
            );
            for f in group {
                let _ = writeln!(s, "<section class=\"finding {}\">", severity.as_str());
                let _ = writeln!(
                    s,
                    "<h3><span class=\"tag\">{}</span> {}</h3>",
                    esc(severity.as_str()),
                    esc(&capitalize(&f.title))
                );
                let _ = writeln!(s, "<dl>");
                let mut row = |k: &str, v: String| {
                    let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
                };
                row(
                    "Area",
                    format!(
                        "{} (rule <code>{}</code>){}",
                        esc(f.area.title()),
                        esc(&f.rule),
                        if f.count > 1 {
                            format!(", seen {} times", f.count)
                        } else {
                            String::new()
                        }
                    ),
                );
                if let Some(r) = &f.request {
                    row(
                        "First seen",
                        esc(&format!(
                            "{} ({} s into the run){}{}",
                            r.time.format("%Y-%m-%d %H:%M:%S UTC"),
                            r.elapsed_s,
                            r.action
                                .as_ref()
                                .map(|a| format!(", {a} {}", r.direction))
                                .unwrap_or_default(),
                            r.message_id
                                .as_ref()
                                .map(|i| format!(", message id {i}"))
                                .unwrap_or_default()
                        )),
                    );
                }
                if let Some(d) = &f.detail {
                    row("Detail", esc(d));
                }
                row("The real charger", esc(&f.charger));
                row(
                    &format!("Release notes (line {})", f.release_note.line),
                    format!("<q>{}</q>", esc(&f.release_note.text)),
                );
                row("Instead", esc(&f.advice));
                let _ = writeln!(s, "</dl>");
                if let Some(r) = &f.request {
                    let _ = writeln!(s, "<pre>{}</pre>", esc(&r.excerpt));
                }
                let _ = writeln!(s, "</section>");
            }
        }
        let _ = writeln!(s, "<h2>Verdict</h2>\n<table class=\"verdicts\">");
        let _ = writeln!(s, "<tr><th>Area</th><th>Verdict</th></tr>");
        for v in &self.verdicts {
            let _ = writeln!(
                s,
                "<tr class=\"{}\"><td>{}</td><td>{}</td></tr>",
                verdict_class(v.verdict),
                esc(v.area.title()),
                esc(&v.summary)
            );
        }
        let _ = writeln!(s, "</table>\n</body>\n</html>");
        s
    }

    /// The facts table shared by Markdown and HTML.
    /// The findings grouped by severity, most severe first; severities without findings left out.
    fn by_severity(&self) -> Vec<(Severity, Vec<&Finding>)> {
        Severity::ALL
            .into_iter()
            .map(|severity| {
                let group: Vec<&Finding> = self
                    .findings
                    .iter()
                    .filter(|f| f.severity == severity)
                    .collect();
                (severity, group)
            })
            .filter(|(_, group)| !group.is_empty())
            .collect()
    }

    fn facts(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("Charge point id".to_string(), self.charge_point_id.clone()),
            (
                "CSMS".to_string(),
                if self.sandbox {
                    format!("{} (sandbox CSMS)", self.csms_url)
                } else {
                    self.csms_url.clone()
                },
            ),
        ];
        if let Some(p) = &self.profile {
            rows.push(("Profile".into(), p.clone()));
        }
        rows.push((
            "Scenario".into(),
            format!(
                "{} ({}), {} of {} steps",
                self.scenario.name,
                self.scenario.source,
                self.scenario.steps_done,
                self.scenario.steps
            ),
        ));
        rows.push((
            "Started".into(),
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ));
        rows.push((
            "Duration".into(),
            format!(
                "{:.0} s ({})",
                self.duration_s,
                match self.ended_by {
                    EndedBy::Completed => "completed",
                    EndedBy::Interrupted => "interrupted",
                    EndedBy::Unreachable => "stopped: CSMS unreachable",
                }
            ),
        ));
        let c = &self.connection;
        rows.push((
            "Connection".into(),
            if c.connected {
                format!(
                    "connected {} time{}, closed by the CSMS {} time{}, registration {}",
                    c.connections,
                    plural(c.connections as usize),
                    c.disconnections_by_csms,
                    plural(c.disconnections_by_csms as usize),
                    c.registration.as_deref().unwrap_or("never answered")
                )
            } else {
                format!(
                    "never connected: {}",
                    c.failure_detail.as_deref().unwrap_or("no attempt finished")
                )
            },
        ));
        rows.push((
            "Messages".into(),
            format!(
                "{} sent, {} received",
                self.messages.sent, self.messages.received
            ),
        ));
        if !self.expectations.accepted_id_tags.is_empty()
            || self.expectations.remote_start.is_some()
        {
            rows.push((
                "Expected".into(),
                format!(
                    "cards accepted: {}; remote start: {}",
                    if self.expectations.accepted_id_tags.is_empty() {
                        "(none listed)".to_string()
                    } else {
                        self.expectations.accepted_id_tags.join(", ")
                    },
                    match self.expectations.remote_start {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "not stated",
                    }
                ),
            ));
        }
        rows
    }
}

fn count(findings: &[Finding], severity: Severity) -> usize {
    findings.iter().filter(|f| f.severity == severity).count()
}

fn area_verdict(area: Area, findings: &[Finding], exercised: bool) -> AreaVerdict {
    let mine: Vec<&Finding> = findings.iter().filter(|f| f.area == area).collect();
    let worst = mine.iter().map(|f| f.severity).min();
    let verdict = match worst {
        Some(Severity::Blocking) => Verdict::Blocking,
        Some(Severity::Warning) => Verdict::Warning,
        _ if exercised || !mine.is_empty() => Verdict::Ok,
        _ => Verdict::NotExercised,
    };
    let summary = match verdict {
        Verdict::NotExercised => "not exercised (the CSMS did nothing in this area)".to_string(),
        Verdict::Ok if mine.is_empty() => "ok".to_string(),
        _ => {
            let shown: Vec<String> = mine
                .iter()
                .filter(|f| Some(f.severity) == worst || verdict == Verdict::Ok)
                .take(3)
                .map(|f| f.title.clone())
                .collect();
            let more = mine.len().saturating_sub(shown.len());
            format!(
                "{}: {}{}",
                verdict.as_str(),
                shown.join("; "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            )
        }
    };
    AreaVerdict {
        area,
        verdict,
        summary,
    }
}

fn severity_heading(s: Severity) -> &'static str {
    match s {
        Severity::Blocking => "Blocking",
        Severity::Warning => "Warnings",
        Severity::Info => "Information",
    }
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Warning => "warning",
        Verdict::Blocking => "blocking",
        Verdict::NotExercised => "idle",
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Removes `user:password@` from a URL.
pub fn without_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes Markdown inline text (table cells and list items stay on one line).
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn code_span(s: &str) -> String {
    s.replace('`', "'")
}

/// The report's style sheet: readable on screen, printable on paper, no external resources.
const CSS: &str = "body { font-family: system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.3rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #ccc; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin: 0 0 0.5rem 0; }
.tag { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.05em; padding: 0.05rem 0.4rem; border: 1px solid currentColor; border-radius: 3px; margin-right: 0.4rem; vertical-align: middle; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 0.3rem 0.6rem; border-bottom: 1px solid #ddd; }
table.facts th { width: 12rem; color: #555; font-weight: 600; }
.verdict { font-weight: 700; font-size: 1.15rem; padding: 0.6rem 0.8rem; border-radius: 4px; }
.verdict.ok, tr.ok td:last-child { background: #e6f4ea; }
.verdict.warning, tr.warning td:last-child { background: #fff4d6; }
.verdict.blocking, tr.blocking td:last-child { background: #fde2e1; }
tr.idle td:last-child { color: #666; }
section.finding { border-left: 6px solid #999; padding: 0.6rem 1rem; margin: 1rem 0; background: #fafafa; page-break-inside: avoid; break-inside: avoid; }
section.finding.blocking { border-left-color: #c62828; }
section.finding.warning { border-left-color: #e0a000; }
section.finding.info { border-left-color: #5f7f9f; }
dl { display: grid; grid-template-columns: 11rem 1fr; gap: 0.25rem 0.8rem; margin: 0; }
dt { font-weight: 600; color: #444; }
dd { margin: 0; }
q { font-style: italic; }
pre { white-space: pre-wrap; word-break: break-all; background: #f0f0f0; padding: 0.5rem; font-size: 0.85rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
@media print { body { margin: 0; max-width: none; font-size: 10pt; } section.finding { background: none; } .verdict { border: 1px solid #888; } }
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dryrun::findings::{Request, Rule};

    #[test]
    fn the_format_follows_the_extension_in_any_case() {
        use std::path::Path;
        let f = |p: &str| ReportFormat::for_path(Path::new(p));
        assert_eq!(f("site-a.md"), Some(ReportFormat::Markdown));
        assert_eq!(f("dir.v2/site-a.MARKDOWN"), Some(ReportFormat::Markdown));
        assert_eq!(f("a.Html"), Some(ReportFormat::Html));
        assert_eq!(f("a.htm"), Some(ReportFormat::Html));
        assert_eq!(f("a.json"), Some(ReportFormat::Json));
        for bad in ["a.pdf", "a", "md", ".md.txt"] {
            assert_eq!(f(bad), None, "{bad}");
        }
    }
    use std::collections::BTreeSet;
    use std::time::Duration;

    pub(crate) fn sample() -> Report {
        let t = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        let req = Request::new(
            Duration::from_secs(42),
            t,
            "received",
            Some("SetChargingProfile"),
            &serde_json::json!([2, "id<1>", "SetChargingProfile", {"note": "<script>alert(1)</script> & http://evil.example"}]),
        );
        let findings = vec![
            Rule::ResetRequested.finding(None, Some("Soft reset".into())),
            Rule::ChargingRateUnitW {
                action: "SetChargingProfile".into(),
            }
            .finding(Some(req), None),
        ];
        let stats = Stats {
            ever_connected: true,
            connections: 1,
            registration: Some("Accepted".into()),
            frames_sent: 10,
            frames_received: 9,
            ..Stats::default()
        };
        let mut exercised = BTreeSet::new();
        exercised.insert(Area::Connection);
        exercised.insert(Area::SmartCharging);
        Report::build(
            Inputs {
                charge_point_id: "CP<1>".into(),
                csms_url: "ws://user:secret@csms.example.com:9000/ocpp".into(),
                sandbox: false,
                profile: Some("site".into()),
                scenario: ScenarioSummary {
                    name: "default".into(),
                    source: "built-in default".into(),
                    steps: 10,
                    steps_done: 10,
                },
                expectations: Expectations::default(),
                started_at: t,
                duration_s: 300.0,
                ended_by: EndedBy::Completed,
            },
            &stats,
            &findings,
            &exercised,
        )
    }

    #[test]
    fn findings_sort_blocking_first_and_verdicts_cover_every_area() {
        let r = sample();
        assert_eq!(r.findings[0].rule, "charging_profile_in_watts");
        assert_eq!(r.verdict, Verdict::Blocking);
        assert_eq!(r.verdicts.len(), 7);
        let v = |a: Area| r.verdicts.iter().find(|v| v.area == a).unwrap().verdict;
        assert_eq!(v(Area::SmartCharging), Verdict::Blocking);
        assert_eq!(v(Area::Configuration), Verdict::Warning);
        assert_eq!(v(Area::Connection), Verdict::Ok);
        assert_eq!(v(Area::Firmware), Verdict::NotExercised);
        assert_eq!(r.csms_url, "ws://csms.example.com:9000/ocpp");
        assert!(
            r.verdict_line()
                .starts_with("NOT READY: 1 blocking, 1 warning, 0 info")
        );
    }

    #[test]
    fn html_escapes_every_text_and_markdown_keeps_one_line_cells() {
        let r = sample();
        let html = r.to_html();
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("CP&lt;1&gt;"));
        assert!(!html.contains("secret"));
        let md = r.to_markdown();
        assert!(md.contains("CP\\<1\\>"));
        assert!(md.contains("Only 'A' is allowed as ChargingRateUnitType"));
        assert!(md.contains("## Verdict"));
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn credentials_leave_urls() {
        assert_eq!(without_credentials("wss://a:b@h/x@y"), "wss://h/x@y");
        assert_eq!(without_credentials("ws://h:1/p"), "ws://h:1/p");
    }
}
