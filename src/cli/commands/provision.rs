//! `chargectl provision PROFILE --port P... [--all-ports] [--set VAR=VALUE]... [--dry-run]
//! [--no-reboot] [--wait-online SECONDS]`: applies a provisioning profile to chargers over their
//! service ports and waits until each is online at its CSMS.
//!
//! The workflow is the library's ([`crate::provision::charger::provision`]): identity (which
//! fills `${SERIAL}`, `${MODEL}`, `${FIRMWARE}`), the keys that change written one at a time
//! (the AuthorizationKey before SecurityProfile, with the charger's own rules), a reboot when a
//! written key needs one, then the wait for online as the charger reports it. This file resolves
//! the profile for the command line (`--set`, secrets from the environment or one prompt on a
//! terminal), runs the chargers in parallel, and prints: text, a live table for several
//! chargers on a terminal, or JSON (one document for one charger, JSON Lines for several).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::info::connect;
use crate::cli::args::ProvisionArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::link::ports::{PortLister, SystemPorts};
use crate::provision::charger::{self, Progress};
use crate::provision::online::{self, Online};
use crate::provision::{self, AssignedValue, Assignment, Builtins, Mode, Step};
use crate::stack::config::ChangeOutcome;

/// Resolves a provisioning profile for this environment: variables from `--set`, secrets from the
/// environment or (on a terminal) a prompt without echo. Built-in variables (`${SERIAL}`, ...)
/// are an error here: emulators and dry runs have no charger to read them from.
pub fn load(
    name: &str,
    set: &[String],
    env: &Env,
) -> anyhow::Result<(provision::ProvisioningProfile, Vec<Assignment>)> {
    let profile = find(name, env)?;
    let vars = parse_set(set)?;
    let secrets = secrets(&profile, env)?;
    let assignments = profile
        .resolve(&vars, &|n| secrets.get(n).cloned(), None)
        .map_err(resolve_failure)?;
    Ok((profile, assignments))
}

fn find(name: &str, env: &Env) -> anyhow::Result<provision::ProvisioningProfile> {
    provision::ProvisioningProfile::find(name, &env.paths.profiles_dir())
        .map_err(|e| Failure::new(ExitCode::BadInput, e).into())
}

fn parse_set(set: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for s in set {
        let (k, v) = super::config::parse_assignment(s)
            .map_err(|e| Failure::new(ExitCode::Usage, anyhow::anyhow!("--set: {e}")))?;
        vars.insert(k, v);
    }
    Ok(vars)
}

/// Every secret the profile needs, asked once (environment first, then a prompt on a terminal),
/// by environment variable name. Missing ones are left out; resolving names them.
fn secrets(
    profile: &provision::ProvisioningProfile,
    env: &Env,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for s in &profile.secrets {
        let value = std::env::var(&s.env)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| {
                env.interactive
                    .then(|| {
                        rpassword::prompt_password(format!(
                            "{}: ",
                            s.prompt.as_deref().unwrap_or(&s.key)
                        ))
                        .ok()
                    })
                    .flatten()
            });
        if let Some(v) = value {
            out.insert(s.env.clone(), v);
        }
    }
    Ok(out)
}

fn resolve_failure(e: provision::Error) -> anyhow::Error {
    match e {
        provision::Error::MissingVariable { .. }
        | provision::Error::MissingSecret { .. }
        | provision::Error::MissingBuiltin { .. } => Failure::new(ExitCode::Usage, e).into(),
        other => Failure::new(ExitCode::BadInput, other).into(),
    }
}

/// What became of one charger.
struct ChargerResult {
    port: String,
    serial: Option<String>,
    code: ExitCode,
    result: &'static str,
    /// One line for a person.
    summary: String,
    /// The document `--json` prints for it.
    doc: Value,
}

/// A progress line for one charger.
struct Update {
    index: usize,
    serial: Option<String>,
    step: String,
    /// Reboot and wait-for-online steps: shown for one charger even when stderr is not a
    /// terminal (the per-key steps only on a terminal).
    milestone: bool,
}

pub async fn run(args: &ProvisionArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let profile = Arc::new(find(&args.profile, env)?);
    let vars = Arc::new(parse_set(&args.set)?);
    let secrets = Arc::new(secrets(&profile, env)?);
    // Everything but the charger's own values must resolve before any port is opened.
    profile
        .resolve_for(
            &Builtins::of("SERIAL", "MODEL", "FIRMWARE"),
            &vars,
            &|n| secrets.get(n).cloned(),
            None,
        )
        .map_err(resolve_failure)?;
    let ports = ports(args)?;
    let opts = charger::Options {
        mode: if args.dry_run {
            Mode::DryRun
        } else {
            Mode::Write
        },
        reboot: !args.no_reboot,
        wait_online: Duration::from_secs(args.wait_online),
        ..charger::Options::default()
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Update>();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, port) in ports.iter().enumerate() {
        let port_args = args.port_args(port);
        let (profile, vars, secrets, tx) =
            (profile.clone(), vars.clone(), secrets.clone(), tx.clone());
        let port = port.clone();
        let env = env.clone();
        tasks.spawn(async move {
            let result = one(
                index, &port, &port_args, &profile, &vars, &secrets, opts, tx, &env,
            )
            .await;
            (index, result)
        });
    }
    drop(tx);

    let many = ports.len() > 1;
    let mut table = Table::new(&ports, many && !env.json && env.stderr_tty);
    let mut results: Vec<Option<ChargerResult>> = ports.iter().map(|_| None).collect();
    let mut redraw = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            update = rx.recv() => match update {
                Some(u) => {
                    if env.json && many {
                        output::print_json_line("progress", json!({
                            "port": ports[u.index], "serial_number": u.serial, "step": u.step,
                        }))?;
                    } else if !env.json && !many && (u.milestone || env.stderr_tty) {
                        eprintln!("  {}", u.step);
                    }
                    table.update(u);
                }
                None if tasks.is_empty() => break,
                None => {
                    if let Some(Ok((index, r))) = tasks.join_next().await {
                        ended(&mut table, &mut results, index, r, many, env)?;
                    }
                }
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((index, r)) = joined {
                    ended(&mut table, &mut results, index, r, many, env)?;
                }
            }
            _ = redraw.tick() => table.draw(),
        }
        if tasks.is_empty() && rx.is_empty() && results.iter().all(Option::is_some) {
            break;
        }
    }
    table.draw();
    let results: Vec<ChargerResult> = results.into_iter().flatten().collect();
    if !many {
        let Some(r) = results.into_iter().next() else {
            return Err(anyhow::anyhow!("the provisioning task stopped"));
        };
        return finish_one(r, env);
    }
    let failed: Vec<&ChargerResult> = results.iter().filter(|r| r.code != ExitCode::Ok).collect();
    if env.json {
        output::print_json_line(
            "summary",
            json!({
                "total": results.len(),
                "online": results.len() - failed.len(),
                "failed": failed.iter().map(|r| json!({
                    "port": r.port, "serial_number": r.serial, "result": r.result,
                    "exit_code": r.code.code(),
                })).collect::<Vec<_>>(),
            }),
        )?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{} of {} chargers succeeded",
            results.len() - failed.len(),
            results.len()
        )?;
        for r in &failed {
            writeln!(
                out,
                "  failed: {} {}: {}",
                r.port,
                r.serial.as_deref().unwrap_or("(no answer)"),
                r.summary
            )?;
        }
        out.flush()?;
    }
    Ok(if failed.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::SomeFailed
    })
}

/// One charger ended: its line (several chargers) and its row of the table.
fn ended(
    table: &mut Table,
    results: &mut [Option<ChargerResult>],
    index: usize,
    r: ChargerResult,
    many: bool,
    env: &Env,
) -> anyhow::Result<()> {
    if many {
        if env.json {
            output::print_json_line("charger", r.doc.clone())?;
        } else if !table.live {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{} {}: {} ({})",
                r.port,
                r.serial.as_deref().unwrap_or("-"),
                r.result,
                r.summary
            )?;
        }
    }
    table.finish(index, &r);
    if let Some(slot) = results.get_mut(index) {
        *slot = Some(r);
    }
    Ok(())
}

/// The ports to provision: `--port` (repeatable) or `--all-ports`.
fn ports(args: &ProvisionArgs) -> anyhow::Result<Vec<String>> {
    let usage = |m: String| anyhow::Error::new(Failure::new(ExitCode::Usage, anyhow::anyhow!(m)));
    if args.all_ports {
        let found: Vec<String> = SystemPorts
            .list()
            .map_err(|e| Failure::new(ExitCode::Failure, e))?
            .into_iter()
            .filter(|p| p.likely_charger)
            .map(|p| p.name)
            .collect();
        if found.is_empty() {
            return Err(Failure::new(
                ExitCode::Unreachable,
                anyhow::anyhow!(
                    "--all-ports: no port looks like a charger (see chargectl ports --all); name them with --port"
                ),
            )
            .into());
        }
        return Ok(found);
    }
    let mut ports: Vec<String> = Vec::new();
    for p in &args.ports {
        if !ports.contains(p) {
            ports.push(p.clone());
        }
    }
    if ports.is_empty() {
        return Err(usage(
            "no charger: give --port PORT (repeatable), --all-ports, or set CHARGECTL_PORT".into(),
        ));
    }
    Ok(ports)
}

/// Provisions the charger on one port; every failure becomes its result.
#[allow(clippy::too_many_arguments)]
async fn one(
    index: usize,
    port: &str,
    port_args: &crate::cli::args::PortArgs,
    profile: &provision::ProvisioningProfile,
    vars: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
    opts: charger::Options,
    tx: mpsc::UnboundedSender<Update>,
    env: &Env,
) -> ChargerResult {
    let mut serial: Option<String> = None;
    let say = |serial: &Option<String>, step: String, milestone: bool| {
        let _ = tx.send(Update {
            index,
            serial: serial.clone(),
            step,
            milestone,
        });
    };
    say(&serial, format!("opening {port}"), false);
    let client = match connect(port_args, env).await {
        Ok(c) => c,
        Err(e) => return failed(port, None, crate::cli::exit::code_for(&e), &e, opts.mode),
    };
    let outcome = charger::provision(
        &client,
        |b| profile.resolve_for(b, vars, &|n| secrets.get(n).cloned(), None),
        opts,
        |p| {
            let milestone = matches!(
                p,
                Progress::Rebooting | Progress::Rebooted | Progress::Waiting(_)
            );
            let step = match p {
                Progress::Identified(id) => {
                    serial = Some(id.serial_number.clone());
                    format!(
                        "charger {} ({}, firmware {})",
                        id.serial_number, id.model, id.firmware_version
                    )
                }
                Progress::Apply(Step::Read { keys }) => format!("read {keys} keys"),
                Progress::Apply(Step::Key { key, index, total }) => {
                    format!("writing {key} ({}/{total})", index + 1)
                }
                Progress::Apply(Step::Answered { key, outcome }) => {
                    format!("{key}: {}", describe(outcome, opts.mode))
                }
                Progress::Rebooting => "rebooting (a written key needs it)".into(),
                Progress::Rebooted => format!(
                    "rebooted; waiting up to {} s for online",
                    opts.wait_online.as_secs()
                ),
                Progress::Waiting(s) => online::describe(s),
            };
            say(&serial, step, milestone);
        },
    )
    .await;
    match outcome {
        Ok(o) => result_of(port, &profile.name, o, opts),
        Err(charger::Error::Profile(e)) => {
            let e = resolve_failure(e);
            failed(port, serial, crate::cli::exit::code_for(&e), &e, opts.mode)
        }
        Err(charger::Error::Link(e)) => {
            let e = super::info::fail(e);
            failed(port, serial, crate::cli::exit::code_for(&e), &e, opts.mode)
        }
    }
}

fn failed(
    port: &str,
    serial: Option<String>,
    code: ExitCode,
    e: &anyhow::Error,
    mode: Mode,
) -> ChargerResult {
    let message = format!("{e:#}");
    ChargerResult {
        port: port.to_string(),
        serial: serial.clone(),
        code,
        result: code.kind(),
        summary: message.clone(),
        doc: json!({
            "port": port, "dry_run": mode == Mode::DryRun,
            "charger": serial.map(|s| json!({"serial_number": s})),
            "result": code.kind(), "exit_code": code.code(), "error": message,
        }),
    }
}

fn result_of(
    port: &str,
    profile: &str,
    o: charger::Outcome,
    opts: charger::Options,
) -> ChargerResult {
    let mode = opts.mode;
    let changes: Vec<Value> = o
        .report
        .keys
        .iter()
        .map(|k| {
            json!({
                "key": k.change.key,
                "old": shown_old(&k.change.value, k.change.current.clone()),
                "new": k.change.value.shown(),
                "outcome": if mode == Mode::Write && !k.written(mode) {
                    "unchanged, not written".to_string()
                } else {
                    describe(&k.outcome, mode)
                },
                "written": k.written(mode),
            })
        })
        .collect();
    let refused: Vec<String> = o
        .report
        .refused()
        .map(|k| format!("{} ({})", k.change.key, describe(&k.outcome, mode)))
        .collect();
    let (code, result, summary) = if !refused.is_empty() {
        (
            ExitCode::Refused,
            "refused",
            format!(
                "the charger {} {}",
                if mode == Mode::DryRun {
                    "would refuse"
                } else {
                    "refused"
                },
                refused.join("; ")
            ),
        )
    } else if mode == Mode::DryRun {
        (
            ExitCode::Ok,
            "dry_run",
            "nothing written (dry run)".to_string(),
        )
    } else if o.reboot_skipped {
        (
            ExitCode::Ok,
            "written",
            "written; the new settings take effect at the next reboot (--no-reboot)".to_string(),
        )
    } else {
        match &o.online {
            None => (
                ExitCode::Ok,
                "written",
                "written (no wait for online)".to_string(),
            ),
            Some(r) => online_result(r),
        }
    };
    let online = o.online.as_ref().map(|r| {
        let last = r.last.as_ref();
        let err = last.and_then(|s| s.last_error.as_ref());
        let err = match &r.outcome {
            Online::NotReached(e) => e.as_ref().or(err),
            _ => err,
        };
        json!({
            "result": r.outcome.as_str(),
            "connection": last.map(|s| s.connection.as_str()),
            "registration": last.map(|s| s.registration.as_str()),
            "csms_url": last.and_then(|s| s.csms_url.clone()),
            "failure": err.map(|e| e.failure.clone()),
            "http_status": err.and_then(|e| e.http_status),
            "detail": err.map(|e| e.detail.clone()),
            "failed_attempts": last.map(|s| s.failed_attempts),
            "waited_s": (r.waited.as_secs_f64() * 10.0).round() / 10.0,
        })
    });
    let id = &o.identity;
    ChargerResult {
        port: port.to_string(),
        serial: Some(id.serial_number.clone()),
        code,
        result,
        summary: summary.clone(),
        doc: json!({
            "profile": profile,
            "port": port,
            "dry_run": mode == Mode::DryRun,
            "charger": {
                "serial_number": id.serial_number, "model": id.model,
                "firmware_version": id.firmware_version,
            },
            "changes": changes,
            "rebooted": o.rebooted,
            "online": online,
            "result": result,
            "exit_code": code.code(),
            "error": (code != ExitCode::Ok).then_some(summary),
        }),
    }
}

fn online_result(r: &provision::OnlineReport) -> (ExitCode, &'static str, String) {
    let url = r
        .last
        .as_ref()
        .and_then(|s| s.csms_url.clone())
        .unwrap_or_else(|| "its CSMS".into());
    let secs = r.waited.as_secs_f64();
    match &r.outcome {
        Online::Accepted => (
            ExitCode::Ok,
            "online",
            format!("online: connected to {url} and Accepted ({secs:.1} s)"),
        ),
        Online::Pending => (
            ExitCode::Pending,
            "pending",
            format!("connected to {url}, but the registration is still Pending after {secs:.0} s"),
        ),
        Online::Rejected => (
            ExitCode::Rejected,
            "rejected",
            format!("{url} rejected the charger's BootNotification"),
        ),
        Online::NotReached(Some(e)) => (
            ExitCode::NotReached,
            "not_reached",
            format!("the charger did not reach {url}: {}", online::reason(e)),
        ),
        Online::NotReached(None) => (
            ExitCode::NotReached,
            "not_reached",
            format!("the charger was not online at {url} after {secs:.0} s"),
        ),
        Online::Unsupported => (
            ExitCode::Unsupported,
            "unsupported",
            "written, but this charger's firmware cannot report its OCPP state, so chargectl cannot wait for it to be online".to_string(),
        ),
    }
}

/// One charger: its document (`--json`) or its report, and its exit status.
fn finish_one(r: ChargerResult, env: &Env) -> anyhow::Result<ExitCode> {
    if env.json {
        output::print_json(&r.doc)?;
    } else if r.doc.get("changes").is_some() {
        let mut out = std::io::stdout().lock();
        let dry = r.doc["dry_run"].as_bool().unwrap_or(false);
        writeln!(
            out,
            "{} profile {}{}",
            if dry { "would apply" } else { "applied" },
            r.doc["profile"].as_str().unwrap_or(""),
            if dry {
                " (dry run: nothing written)"
            } else {
                ""
            }
        )?;
        for c in r.doc["changes"].as_array().into_iter().flatten() {
            let (old, new) = (
                c["old"].as_str().unwrap_or(""),
                c["new"].as_str().unwrap_or(""),
            );
            let change = if old == new {
                format!("{new} (unchanged)")
            } else {
                format!("{old} -> {new}")
            };
            let outcome = match c["outcome"].as_str().unwrap_or("") {
                "unchanged, not written" => "not written",
                other => other,
            };
            writeln!(
                out,
                "  {}: {change}  [{outcome}]",
                c["key"].as_str().unwrap_or(""),
            )?;
        }
        if r.code == ExitCode::Ok && !dry {
            writeln!(out, "{}", r.summary)?;
        }
        out.flush()?;
    }
    if r.code == ExitCode::Ok {
        Ok(ExitCode::Ok)
    } else {
        Err(Failure::new(r.code, anyhow::anyhow!(r.summary)).into())
    }
}

/// The live table of several chargers on a terminal (stderr): port, serial, step, result.
struct Table {
    live: bool,
    rows: Vec<[String; 4]>,
    drawn: usize,
    dirty: bool,
}

impl Table {
    fn new(ports: &[String], live: bool) -> Table {
        Table {
            live,
            rows: ports
                .iter()
                .map(|p| [p.clone(), "-".into(), "waiting".into(), String::new()])
                .collect(),
            drawn: 0,
            dirty: true,
        }
    }

    fn update(&mut self, u: Update) {
        if let Some(row) = self.rows.get_mut(u.index) {
            if let Some(s) = u.serial {
                row[1] = s;
            }
            row[2] = u.step;
            self.dirty = true;
        }
    }

    fn finish(&mut self, index: usize, r: &ChargerResult) {
        if let Some(row) = self.rows.get_mut(index) {
            if let Some(s) = &r.serial {
                row[1] = s.clone();
            }
            row[2] = r.summary.clone();
            row[3] = r.result.to_string();
            self.dirty = true;
        }
    }

    fn draw(&mut self) {
        if !self.live || !self.dirty {
            return;
        }
        self.dirty = false;
        let width = |i: usize, min: usize| {
            self.rows
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(min)
        };
        let (w0, w1) = (width(0, 4), width(1, 6));
        let mut text = String::new();
        if self.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", self.drawn));
        }
        let mut line = |s: String| {
            text.push_str("\x1b[2K");
            text.push_str(&s);
            text.push('\n');
        };
        line(format!(
            "{:<w0$}  {:<w1$}  {:<12} STEP",
            "PORT", "SERIAL", "RESULT"
        ));
        for r in &self.rows {
            let step: String = r[2].chars().take(100).collect();
            line(format!("{:<w0$}  {:<w1$}  {:<12} {step}", r[0], r[1], r[3]));
        }
        self.drawn = self.rows.len() + 1;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
}

fn shown_old(new: &AssignedValue, old: Option<String>) -> String {
    match new {
        AssignedValue::Secret(_) => "<write-only>".to_string(),
        AssignedValue::Plain(_) => old.unwrap_or_else(|| "(unset)".into()),
    }
}

/// The outcome in words: what the charger's rules would answer (dry run), or what it answered.
fn describe(o: &ChangeOutcome, mode: Mode) -> String {
    match (mode, o) {
        (Mode::DryRun, ChangeOutcome::Accepted) => "ok".into(),
        (Mode::DryRun, ChangeOutcome::RebootRequired) => "ok, takes effect after a reboot".into(),
        (Mode::DryRun, ChangeOutcome::Rejected(r)) => format!("would be rejected: {r}"),
        (Mode::Write, ChangeOutcome::Accepted) => "accepted".into(),
        (Mode::Write, ChangeOutcome::RebootRequired) => {
            "accepted, takes effect after a reboot".into()
        }
        (Mode::Write, ChangeOutcome::Rejected(r)) => format!("rejected: {r}"),
        (_, ChangeOutcome::NotSupported) => "not supported by this charger".into(),
    }
}
