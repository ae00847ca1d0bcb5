//! `chargectl dry-run`: the commissioning dry run. The emulated charger is configured from the
//! profile exactly as `provision` would configure the real one, plays a scenario against the
//! CSMS, and the findings end in a report (`--report FILE.md|.html|.json`, repeatable). On a
//! terminal a live summary runs on stderr; with `--json` progress, steps and findings are JSON
//! Lines on stdout, followed by the report object.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::args::DryRunArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::dryrun::ReportFormat as Format;
use crate::dryrun::report::EndedBy;
use crate::dryrun::{Expectations, Plan, Report, Scenario, Severity, Update};

/// The format of each `--report` file, from its extension; anything else is a usage error
/// before the run starts.
fn report_formats(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, Format)>> {
    paths
        .iter()
        .map(|p| match Format::for_path(p) {
            Some(format) => Ok((p.clone(), format)),
            None => Err(Failure::new(
                ExitCode::Usage,
                anyhow::anyhow!("--report {}: {}", p.display(), Format::EXTENSIONS),
            )
            .into()),
        })
        .collect()
}

pub async fn run(args: DryRunArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let reports = report_formats(&args.reports)?;
    let scenario = match &args.scenario {
        Some(path) => Scenario::load(path).map_err(|e| Failure::new(ExitCode::BadInput, e))?,
        None => Scenario::default_scenario(),
    };
    let (profile_name, assignments, profile_expectations) = match &args.profile {
        Some(name) => {
            let (profile, assignments) = super::provision::load(name, &args.set, env)?;
            let expectations = profile
                .commissioning
                .as_ref()
                .map(Expectations::from)
                .unwrap_or_default();
            (Some(profile.name.clone()), assignments, expectations)
        }
        None => {
            if !args.set.is_empty() {
                return Err(Failure::new(
                    ExitCode::Usage,
                    anyhow::anyhow!("--set needs --profile (it sets the profile's variables)"),
                )
                .into());
            }
            (None, Vec::new(), Expectations::default())
        }
    };
    let expectations = profile_expectations.merged(&scenario.expectations);
    let state_dir = fresh_state_dir()?;
    let plan = Plan {
        csms_url: args.csms.clone(),
        charge_point_id: args.id.clone(),
        profile_name,
        profile: assignments,
        expectations,
        scenario,
        duration: args.duration.map(Duration::from_secs),
        meter_start_wh: args.meter_start_wh.map(|wh| wh as f64),
        state_dir: state_dir.clone(),
    };
    let mut view = LiveView::new(env);
    view.intro(&plan);
    let result = crate::dryrun::run(plan, |u| view.update(u), crate::cli::shutdown_signal()).await;
    let _ = std::fs::remove_dir_all(&state_dir);
    let report = result.map_err(|e| Failure::new(ExitCode::BadInput, e))?;
    view.clear();
    view.error?;
    for (path, format) in &reports {
        write_report(&report, path, *format)?;
    }
    if env.json {
        output::print_json_line("report", serde_json::to_value(&report)?)?;
    } else {
        print_verdict(&report, &reports)?;
    }
    if !report.connection.connected {
        let reason = report
            .connection
            .failure
            .as_ref()
            .map(|f| f.describe())
            .unwrap_or_else(|| "no connection attempt finished".into());
        return Err(Failure::new(
            ExitCode::Unreachable,
            anyhow::anyhow!(
                "the charger never reached the CSMS at {}: {reason} ({})",
                report.csms_url,
                report
                    .connection
                    .failure_detail
                    .as_deref()
                    .unwrap_or("no detail")
            ),
        )
        .into());
    }
    Ok(if report.counts.blocking > 0 {
        ExitCode::Blocking
    } else if report.ended_by == EndedBy::Interrupted {
        ExitCode::Interrupted
    } else {
        ExitCode::Ok
    })
}

/// A new private directory for the emulated charger's state, removed after the run.
fn fresh_state_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "chargectl-dry-run-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

fn write_report(report: &Report, path: &Path, format: Format) -> anyhow::Result<()> {
    let text = report.render(format);
    std::fs::write(path, text)
        .map_err(|e| anyhow::anyhow!("writing the report {}: {e}", path.display()))
}

fn print_verdict(report: &Report, reports: &[(PathBuf, Format)]) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    writeln!(err)?;
    writeln!(err, "{}", report.verdict_line())?;
    for line in report.verdict_lines() {
        writeln!(err, "  {line}")?;
    }
    for (path, _) in reports {
        writeln!(err, "report: {}", path.display())?;
    }
    err.flush()
}

/// What the user sees while the run goes: a redrawn status line on a terminal, plain lines
/// otherwise, JSON Lines with `--json`.
struct LiveView {
    json: bool,
    tty: bool,
    status_shown: bool,
    last_json_progress: Option<Instant>,
    /// The first output error (a closed pipe), returned after the run.
    error: std::io::Result<()>,
}

impl LiveView {
    fn new(env: &Env) -> LiveView {
        LiveView {
            json: env.json,
            tty: env.stderr_tty && !env.json,
            status_shown: false,
            last_json_progress: None,
            error: Ok(()),
        }
    }

    fn intro(&mut self, plan: &Plan) {
        if self.json {
            return;
        }
        let csms = plan
            .csms_url
            .clone()
            .or_else(|| {
                plan.profile
                    .iter()
                    .find(|a| a.key == "CsmsUrl")
                    .map(|a| a.value.expose().to_string())
            })
            .unwrap_or_else(|| "the sandbox CSMS".into());
        eprintln!(
            "dry run against {csms}: scenario {} ({} steps); Ctrl-C ends it early, the report is still written",
            plan.scenario.name,
            plan.scenario.steps.len()
        );
    }

    fn update(&mut self, update: Update) {
        // The live trace is for the TUI; the terminal and the JSON stream keep to progress,
        // steps and findings.
        if self.error.is_err() || matches!(update, Update::Frame(_)) {
            return;
        }
        let result = if self.json {
            self.json_line(update)
        } else {
            self.human(update)
        };
        if let Err(e) = result {
            self.error = Err(e);
        }
    }

    fn json_line(&mut self, update: Update) -> std::io::Result<()> {
        if let Update::Progress(_) = &update {
            // Progress every 5 s is plenty for a script.
            if self
                .last_json_progress
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
            {
                return Ok(());
            }
            self.last_json_progress = Some(Instant::now());
        }
        let v = serde_json::to_value(&update).unwrap_or_default();
        output::print_json(&v)
    }

    fn human(&mut self, update: Update) -> std::io::Result<()> {
        let mut err = std::io::stderr().lock();
        match update {
            Update::Progress(p) => {
                if !self.tty {
                    return Ok(());
                }
                let line = format!(
                    "[{}] {} · {} · {} messages · {} blocking, {} warning{}, {} info{}",
                    clock(p.elapsed_s),
                    p.connection,
                    p.registration.as_deref().unwrap_or("not registered"),
                    p.messages,
                    p.blocking,
                    p.warning,
                    if p.warning == 1 { "" } else { "s" },
                    p.info,
                    p.step.map(|s| format!(" · step {s}")).unwrap_or_default()
                );
                write!(err, "\r\x1b[2K{line}")?;
                self.status_shown = true;
            }
            Update::Step(s) => {
                if self.tty {
                    return Ok(());
                }
                writeln!(
                    err,
                    "[{}] step {}/{}: {}",
                    clock(s.elapsed_s),
                    s.index,
                    s.total,
                    s.action
                )?;
            }
            Update::Finding(f) => {
                if self.status_shown {
                    write!(err, "\r\x1b[2K")?;
                    self.status_shown = false;
                }
                let marker = match f.severity {
                    Severity::Blocking => "BLOCKING",
                    Severity::Warning => "warning ",
                    Severity::Info => "info    ",
                };
                writeln!(err, "{marker} {}: {}", f.area.title(), f.title)?;
            }
            Update::Frame(_) => {}
        }
        err.flush()
    }

    /// Clears the status line before the verdict.
    fn clear(&mut self) {
        if self.status_shown {
            eprint!("\r\x1b[2K");
            self.status_shown = false;
        }
    }
}

/// `mm:ss` (or `h:mm:ss`).
fn clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_formats_follow_the_extension() {
        let ok = report_formats(&[
            PathBuf::from("a.md"),
            PathBuf::from("b.HTML"),
            PathBuf::from("c.json"),
        ])
        .unwrap();
        assert_eq!(
            ok.iter().map(|(_, f)| *f).collect::<Vec<_>>(),
            [Format::Markdown, Format::Html, Format::Json]
        );
        let e = report_formats(&[PathBuf::from("a.pdf")]).unwrap_err();
        assert_eq!(crate::cli::exit::code_for(&e), ExitCode::Usage);
        assert!(e.to_string().contains("a.pdf"));
        assert!(report_formats(&[PathBuf::from("noext")]).is_err());
    }

    #[test]
    fn clock_shows_minutes_and_hours() {
        assert_eq!(clock(75.0), "01:15");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}
