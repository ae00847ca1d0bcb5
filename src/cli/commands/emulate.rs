//! `chargectl emulate`: the charger's stack with simulated hardware.

use anyhow::Context;
use std::io::Write;

use crate::cli::args::{BasicAuthPassword, EmulateArgs};
use crate::cli::{Env, ExitCode, Failure};
use crate::emulator::{BootSettings, Emulator, headless};
use crate::stack::secret::Secret;

pub async fn run(args: EmulateArgs, env: &Env) -> anyhow::Result<ExitCode> {
    if args.count > 1 || args.shard.is_some() || args.id_template.is_some() {
        return run_fleet(args, env).await;
    }
    for (flag, given) in [
        ("--ramp", args.ramp.is_some()),
        ("--sessions", args.sessions.is_some()),
        ("--seed", args.seed.is_some()),
        ("--trace", args.trace.is_some()),
    ] {
        if given {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow::anyhow!("{flag} is for fleets: add --count N (more than 1)"),
            )
            .into());
        }
    }
    if !args.headless {
        return Err(Failure::new(
            ExitCode::Usage,
            anyhow::anyhow!(
                "the emulator's TUI is opened with plain `chargectl`; use --headless to run it without a screen"
            ),
        )
        .into());
    }
    if let Some(p) = args.security_profile
        && p > 1
    {
        return Err(Failure::new(
            ExitCode::Usage,
            anyhow::anyhow!("--security-profile {p}: this charger supports only 0 and 1"),
        )
        .into());
    }
    let id = args.id.clone();
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        env.paths
            .emulator_state_dir(id.as_deref().unwrap_or("CHARGECTL-EMU-1"))
    });

    let profile = load_provisioning_profile(&args, env)?;
    let (csms_url, sandbox) = csms_or_sandbox(&args, &profile, true).await?;
    let settings = boot_settings(&args, profile, csms_url.clone(), id)?;
    let emulator = Emulator::start(&state_dir, &settings)
        .await
        .map_err(|e| Failure::new(ExitCode::BadInput, e))?;
    if let Some(link) = &args.serial_link {
        let shaper = crate::link::pty::LineShaper {
            baud: args.serial_baud,
            drop_rate: args.serial_drop_rate,
            flip_rate: args.serial_flip_rate,
            ..Default::default()
        };
        for (name, rate) in [
            ("--serial-drop-rate", shaper.drop_rate),
            ("--serial-flip-rate", shaper.flip_rate),
        ] {
            if !(0.0..1.0).contains(&rate) {
                return Err(Failure::new(
                    ExitCode::Usage,
                    anyhow::anyhow!("{name} {rate}: must be at least 0 and below 1"),
                )
                .into());
            }
        }
        let device = emulator
            .attach_service_port(link, shaper)
            .map_err(|e| Failure::new(ExitCode::Failure, e))?;
        if !env.json {
            eprintln!("service port: {} -> {}", link.display(), device.display());
        }
    }
    if !env.json {
        let mut err = std::io::stderr();
        let _ = writeln!(
            err,
            "emulated charger on {csms_url}{}, state in {}",
            if sandbox.is_some() {
                " (sandbox CSMS)"
            } else {
                ""
            },
            state_dir.display()
        );
        let _ = writeln!(
            err,
            "hardware actions as JSON Lines on stdin, e.g. {{\"action\":\"plug\"}}; Ctrl-C stops"
        );
    }
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let stdout = std::io::stdout();
    let result = headless::run(
        &emulator,
        stdin,
        stdout.lock(),
        env.json,
        crate::cli::shutdown_signal(),
    )
    .await;
    emulator.shutdown().await?;
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    result.context("writing events")?;
    Ok(ExitCode::Ok)
}

/// The provisioning profile's keys, when `--profile` names one.
pub(super) fn load_provisioning_profile(
    args: &EmulateArgs,
    env: &Env,
) -> anyhow::Result<Vec<crate::provision::Assignment>> {
    Ok(match &args.profile {
        Some(name) => super::provision::load(name, &args.set, env)?.1,
        None => Vec::new(),
    })
}

/// The CSMS URL from `--csms` or the profile; without one the sandbox CSMS starts in-process
/// on a free loopback port (`record_frames` off for a fleet: frames are only counted).
pub(super) async fn csms_or_sandbox(
    args: &EmulateArgs,
    profile: &[crate::provision::Assignment],
    record_frames: bool,
) -> anyhow::Result<(String, Option<crate::csms::SandboxHandle>)> {
    let profile_url = profile
        .iter()
        .find(|a| a.key == "CsmsUrl")
        .map(|a| a.value.expose().to_string());
    Ok(match args.csms.clone().or(profile_url) {
        Some(url) => (url, None),
        None => {
            let opts = crate::csms::SandboxOptions {
                record_frames,
                ..crate::csms::SandboxOptions::default()
            };
            let handle = crate::csms::Sandbox::start(opts)
                .await
                .context("starting the sandbox CSMS")?;
            (handle.url(), Some(handle))
        }
    })
}

/// The settings applied before boot, from the flags (trusted keys read from their files).
pub(super) fn boot_settings(
    args: &EmulateArgs,
    profile: Vec<crate::provision::Assignment>,
    csms_url: String,
    id: Option<String>,
) -> anyhow::Result<BootSettings> {
    let mut trusted_keys = Vec::new();
    for path in &args.trust_keys {
        let key = crate::firmware::keys::read_verifying_key(path)
            .map_err(|e| Failure::new(ExitCode::BadInput, anyhow::anyhow!("--trust-key: {e}")))?;
        trusted_keys.push(key);
    }
    Ok(BootSettings {
        trusted_keys,
        profile,
        csms_url: Some(csms_url),
        charge_point_id: id,
        security_profile: args.security_profile,
        authorization_key: args.authorization_key.clone().map(Secret::new),
        meter_start_wh: args.meter_start_wh.map(|wh| wh as f64),
        basic_auth_password: args.basic_auth_password.map(|p| {
            match p {
                BasicAuthPassword::Bytes => "bytes",
                BasicAuthPassword::Hex => "hex",
            }
            .to_string()
        }),
    })
}

// ----- fleets ------------------------------------------------------------------------------

/// `emulate --count N`: a fleet, its live summary, and the one traced charge point.
async fn run_fleet(args: EmulateArgs, env: &Env) -> anyhow::Result<ExitCode> {
    use crate::emulator::fleet::{self, Fleet, FleetOptions, IdTemplate, SessionPlan};
    let usage = |e: anyhow::Error| anyhow::Error::new(Failure::new(ExitCode::Usage, e));
    if args.serial_link.is_some() {
        return Err(usage(anyhow::anyhow!(
            "--serial-link attaches one charger's service port; it is not available with --count"
        )));
    }
    if let Some(p) = args.security_profile
        && p > 1
    {
        return Err(usage(anyhow::anyhow!(
            "--security-profile {p}: this charger supports only 0 and 1"
        )));
    }
    let template_text = match (&args.id_template, &args.id) {
        (Some(t), _) => t.clone(),
        (None, Some(id)) => format!("{}-{{n}}", id.replace('{', "{{").replace('}', "}}")),
        (None, None) => fleet::DEFAULT_TEMPLATE.to_string(),
    };
    let template = IdTemplate::parse(&template_text).map_err(|e| usage(e.into()))?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| env.paths.emulator_state_dir("fleet"));
    let profile = load_provisioning_profile(&args, env)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut opts = FleetOptions::new(&state_dir, "", u64::from(args.count), template);
    opts.shard = args.shard.unwrap_or(fleet::Shard::ALL);
    opts.ramp = args.ramp;
    opts.sessions = args.sessions.map(|rate| SessionPlan::new(rate, seed));
    opts.trace = args.trace.clone();
    let with_sandbox = args.csms.is_none() && !profile.iter().any(|a| a.key == "CsmsUrl");
    let needed = opts.open_files_needed(with_sandbox);
    let what = format!(
        "a fleet of {} charge points{}",
        opts.numbers().count(),
        if with_sandbox {
            " with the sandbox CSMS in the same process"
        } else {
            ""
        }
    );
    match crate::rlimit::raise_open_file_limit() {
        Some(limit) => limit.check(needed, &what).map_err(|e| {
            anyhow::Error::new(Failure::new(ExitCode::Failure, anyhow::Error::new(e)))
        })?,
        None => tracing::debug!("no open-file limit on this platform"),
    }
    let (csms_url, sandbox) = csms_or_sandbox(&args, &profile, false).await?;
    opts.csms_url = csms_url.clone();
    opts.settings = boot_settings(&args, profile, csms_url.clone(), None)?;
    let numbers = opts.numbers();
    if numbers.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "--shard {}: no charge points in this slice of {} (fewer charge points than slices)",
            opts.shard,
            args.count
        )));
    }
    let header = format!(
        "fleet {}..{} ({} of {}, shard {}) on {csms_url}{}, state in {}{}",
        opts.template.id(*numbers.start()),
        opts.template.id(*numbers.end()),
        numbers.clone().count(),
        args.count,
        opts.shard,
        if sandbox.is_some() {
            " (sandbox CSMS)"
        } else {
            ""
        },
        state_dir.display(),
        match &opts.sessions {
            Some(p) => format!("; sessions {}/s, seed {}", p.rate, p.seed),
            None => String::new(),
        }
    );
    if !env.json {
        eprintln!("{header}; Ctrl-C stops");
    }
    let mut fleet = Fleet::start(opts)
        .await
        .map_err(|e| Failure::new(ExitCode::BadInput, e))?;
    let trace = fleet.take_trace();
    let result = fleet_loop(
        &fleet,
        trace,
        args.trace.as_deref(),
        env,
        crate::cli::shutdown_signal(),
    )
    .await;
    let summary = fleet.summary();
    let stopped = fleet.shutdown().await;
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    if env.json {
        crate::cli::output::print_json(&serde_json::json!({"type": "fleet", "data": summary}))?;
    } else {
        eprintln!("{}", fleet_lines(&summary, None).join("\n"));
    }
    result?;
    stopped?;
    Ok(ExitCode::Ok)
}

/// Prints the summary every second (stderr on a terminal: one screen redrawn; with `--json`
/// a `fleet` line on stdout) and the traced charge point's events, until `stop`.
async fn fleet_loop(
    fleet: &crate::emulator::fleet::Fleet,
    mut trace: Option<tokio::sync::broadcast::Receiver<crate::stack::chargepoint::Event>>,
    trace_id: Option<&str>,
    env: &Env,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut previous: Option<crate::emulator::fleet::Summary> = None;
    let mut drawn = 0usize;
    let mut last_line = std::time::Instant::now();
    loop {
        let event = async {
            match trace.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tick.tick() => {
                let summary = fleet.summary();
                if env.json {
                    crate::cli::output::print_json(
                        &serde_json::json!({"type": "fleet", "data": summary}),
                    )?;
                } else if env.stderr_tty {
                    let lines = fleet_lines(&summary, previous.as_ref());
                    let mut err = std::io::stderr().lock();
                    // Redraw in place: up over the previous screen, clear to the end.
                    if drawn > 0 {
                        let _ = write!(err, "\x1b[{drawn}A");
                    }
                    let _ = writeln!(err, "\x1b[J{}", lines.join("\n"));
                    drawn = lines.len();
                } else if last_line.elapsed() >= std::time::Duration::from_secs(5) {
                    last_line = std::time::Instant::now();
                    eprintln!("{}", fleet_line(&summary));
                }
                previous = Some(summary);
            }
            ev = event => match ev {
                Ok(ev) => {
                    let id = trace_id.unwrap_or_default();
                    if env.json {
                        crate::cli::output::print_json(&serde_json::json!(
                            {"type": "trace", "data": {"charge_point": id, "event": ev}}
                        ))?;
                    } else {
                        // The screen is redrawn below what is printed here.
                        drawn = 0;
                        println!("{id} {}", serde_json::to_string(&ev).unwrap_or_default());
                    }
                }
                Err(RecvError::Lagged(n)) => tracing::warn!("trace: {n} events dropped"),
                Err(RecvError::Closed) => trace = None,
            },
        }
    }
}

/// The one-screen view of a fleet summary; `previous` (a second earlier) gives the rates.
pub fn fleet_lines(
    s: &crate::emulator::fleet::Summary,
    previous: Option<&crate::emulator::fleet::Summary>,
) -> Vec<String> {
    let rate = match previous {
        Some(p) if s.elapsed_s > p.elapsed_s => {
            let msgs = (s.messages.sent + s.messages.received)
                .saturating_sub(p.messages.sent + p.messages.received);
            format!("  {:.0}/s", msgs as f64 / (s.elapsed_s - p.elapsed_s))
        }
        _ => String::new(),
    };
    let pct = |p: &crate::emulator::fleet::Percentiles| {
        if p.count == 0 {
            "-".to_string()
        } else {
            format!(
                "p50 {:.1} ms  p90 {:.1}  p99 {:.1}  max {:.1}  ({})",
                p.p50, p.p90, p.p99, p.max, p.count
            )
        }
    };
    let e = &s.error_kinds;
    vec![
        format!(
            "charge points {} started  {} connected  {} booted  {} charging{}   {:.1} s",
            s.started,
            s.connected,
            s.booted,
            s.charging,
            match s.all_booted_s {
                Some(t) => format!("  (all {} booted in {t:.2} s)", s.count),
                None => format!("  (of {})", s.count),
            },
            s.elapsed_s
        ),
        format!(
            "messages      {} sent  {} received{rate}",
            s.messages.sent, s.messages.received
        ),
        format!(
            "sessions      {} started  {} completed",
            s.sessions.started, s.sessions.completed
        ),
        format!(
            "errors        {}  (connect {}, disconnect {}, CALLERROR {}, timeout {}, rejected {})",
            s.errors, e.connect, e.disconnect, e.call_error, e.timeout, e.rejected
        ),
        format!("boot latency  {}", pct(&s.boot_ms)),
        format!("call latency  {}", pct(&s.call_ms)),
    ]
}

/// One line for a log (stderr not a terminal).
fn fleet_line(s: &crate::emulator::fleet::Summary) -> String {
    format!(
        "[{:.0} s] {}/{} connected, {} booted, {} charging, {} messages, {} errors, boot p99 {:.1} ms, call p99 {:.1} ms",
        s.elapsed_s,
        s.connected,
        s.count,
        s.booted,
        s.charging,
        s.messages.sent + s.messages.received,
        s.errors,
        s.boot_ms.p99,
        s.call_ms.p99
    )
}
