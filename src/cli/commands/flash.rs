//! `chargectl flash IMAGE`: check the image, stream it with progress, have the charger verify
//! it, reboot into it and wait until the charger has confirmed the new image (or gone back to
//! the previous one after failed trial boots).

use super::info::{connect, fail};
use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::firmware::PreflightError;
use crate::link::codec::{BootState, Identity};
use crate::link::{Client, FlashOptions, FlashPhase, FlashProgress};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(
    image_path: &Path,
    port: &PortArgs,
    no_compress: bool,
    reboot: Option<Duration>,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    // Check locally first: a damaged or foreign file fails here, before the charger is touched.
    // The signature is the charger's to check (it holds the trusted keys).
    let image = crate::firmware::check_file(image_path, &[]).map_err(preflight_failure)?;
    image.ensure_intact().map_err(preflight_failure)?;
    let fw = image.header();
    if !env.json {
        eprintln!(
            "image {}: firmware {} for {}, {} bytes",
            image_path.display(),
            fw.firmware_version,
            fw.model,
            image.bytes.len()
        );
    }
    let client = connect(port).await?;
    let before = client.identify().await.map_err(fail)?;
    let opts = FlashOptions {
        compress: !no_compress,
        ..FlashOptions::default()
    };
    let (tx, mut rx) = watch::channel(FlashProgress::default());
    let json = env.json;
    let bar = (!json && env.stderr_tty).then(|| {
        let bar = indicatif::ProgressBar::new(image.bytes.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let bar2 = bar.clone();
    let reporter = tokio::spawn(async move {
        let mut last_json = tokio::time::Instant::now() - Duration::from_secs(1);
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            if let Some(b) = &bar2 {
                b.set_position(p.done);
                match p.phase {
                    FlashPhase::Verifying => b.set_message("verifying on the charger"),
                    _ if p.retransmits > 0 => {
                        b.set_message(format!("chunk {} B, {} resent", p.chunk, p.retransmits))
                    }
                    _ => {}
                }
            }
            if json
                && (last_json.elapsed() >= Duration::from_millis(250)
                    || p.phase != FlashPhase::Sending)
            {
                last_json = tokio::time::Instant::now();
                if output::print_json_line("progress", json!(p)).is_err() {
                    return;
                }
            }
        }
    });
    let result = tokio::select! {
        r = client.flash(&image.bytes, image.header_bytes(), &opts, &tx) => r,
        _ = tokio::signal::ctrl_c() => {
            if let Some(b) = &bar { b.abandon_with_message("interrupted; run flash again to resume"); }
            return Ok(ExitCode::Interrupted);
        }
    };
    drop(tx);
    let _ = reporter.await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(b) = &bar {
                b.abandon();
            }
            return Err(fail(e));
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if !json {
        let resumed = if report.resumed_from > 0 {
            format!(", resumed at byte {}", report.resumed_from)
        } else {
            String::new()
        };
        eprintln!(
            "sent {} bytes ({} on the wire{resumed}) in {:.1} s; the charger verified version {}",
            report.total, report.wire_bytes, report.elapsed_secs, report.version
        );
    }
    let Some(confirm_within) = reboot else {
        if json {
            output::print_json_line(
                "result",
                json!({ "before": before, "flash": report, "after": null,
                        "boot": { "outcome": "not_rebooted" } }),
            )?;
        } else {
            eprintln!(
                "staged; the charger keeps running {} until it reboots",
                before.firmware_version
            );
        }
        return Ok(ExitCode::Ok);
    };
    client.reboot().await.map_err(fail)?;
    if !json {
        eprintln!(
            "rebooting into {}; waiting up to {:.0} s for the charger to confirm it ...",
            report.version,
            confirm_within.as_secs_f64()
        );
    }
    let waited = tokio::time::Instant::now();
    let boot = tokio::select! {
        b = await_boot(&client, confirm_within, json) => b,
        _ = tokio::signal::ctrl_c() => return Ok(ExitCode::Interrupted),
    };
    let waited_secs = waited.elapsed().as_secs_f64();
    let (outcome, after, failure) = judge(&boot, &report.version, confirm_within);
    if json {
        output::print_json_line(
            "result",
            json!({
                "before": before,
                "flash": report,
                "after": after,
                "boot": {
                    "outcome": outcome,
                    "version": report.version,
                    "running": after.map(|id| id.firmware_version.clone()),
                    "boot_state": after.map(|id| id.boot_state),
                    "waited_secs": waited_secs,
                },
            }),
        )?;
    }
    if let Some(f) = failure {
        return Err(anyhow::Error::new(f));
    }
    if !json && let Some(id) = after {
        eprintln!(
            "charger {} confirmed {} and runs it from slot {} ({:.1} s after the reboot)",
            id.serial_number, id.firmware_version, id.active_slot, waited_secs
        );
    }
    Ok(ExitCode::Ok)
}

/// How the wait for the charger after the reboot ended.
enum Boot {
    /// The charger answered with a boot state other than `Trial`.
    Settled(Identity),
    /// Still on trial when the wait ran out.
    OnTrial(Identity),
    /// Never answered within the wait; the last error.
    NoAnswer(crate::link::Error),
}

/// Pause between two reads of the boot state while the image is on trial.
const TRIAL_POLL: Duration = Duration::from_millis(500);
/// Pause before looking for the charger again after a failed attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Finds the charger again after its reboot and reads its boot state until it has settled
/// (confirmed or rolled back) or `limit` has passed. Shows the wait: a line on stderr per state
/// change, or with `--json` a line of type "boot".
async fn await_boot(client: &Client, limit: Duration, json: bool) -> Boot {
    let started = tokio::time::Instant::now();
    let deadline = started + limit;
    let mut shown: Option<&'static str> = None;
    let mut show = |state: &'static str, detail: String| {
        if shown == Some(state) {
            return;
        }
        shown = Some(state);
        if json {
            let _ = output::print_json_line(
                "boot",
                json!({ "state": state, "detail": detail,
                        "waited_secs": started.elapsed().as_secs_f64() }),
            );
        } else {
            eprintln!("{detail}");
        }
    };
    let mut connected = false;
    let mut last_err = crate::link::Error::Timeout {
        what: "the charger after its reboot".into(),
        secs: limit.as_secs_f64(),
    };
    let mut trial: Option<Identity> = None;
    loop {
        if !connected {
            match tokio::time::timeout_at(deadline, client.reconnect()).await {
                Ok(Ok(_)) => connected = true,
                Ok(Err(e)) => {
                    show(
                        "rebooting",
                        format!("waiting for the charger to come back ({e})"),
                    );
                    last_err = e;
                }
                Err(_) => break,
            }
        }
        if connected {
            match tokio::time::timeout_at(deadline, client.identify()).await {
                Ok(Ok(id)) if id.boot_state == BootState::Trial => {
                    show(
                        "trial",
                        format!(
                            "firmware {} is on trial; waiting for the charger to confirm it",
                            id.firmware_version
                        ),
                    );
                    trial = Some(id);
                }
                Ok(Ok(id)) => return Boot::Settled(id),
                Ok(Err(e)) => {
                    connected = !e.is_unreachable();
                    last_err = e;
                }
                Err(_) => break,
            }
        }
        let pause = if trial.is_some() {
            TRIAL_POLL
        } else {
            RECONNECT_PAUSE
        };
        if tokio::time::Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    match trial {
        Some(id) => Boot::OnTrial(id),
        None => Boot::NoAnswer(last_err),
    }
}

/// The outcome's name for `--json`, the charger as it runs now, and the failure to end with.
fn judge<'a>(
    boot: &'a Boot,
    version: &str,
    limit: Duration,
) -> (&'static str, Option<&'a Identity>, Option<Failure>) {
    match boot {
        Boot::Settled(id) if id.boot_state == BootState::Reverted => (
            "rolled_back",
            Some(id),
            Some(Failure::new(
                ExitCode::RolledBack,
                anyhow::anyhow!(
                    "firmware {version} did not come up: its trial boots failed and the charger went back to {} (slot {}), which runs again",
                    id.firmware_version,
                    id.active_slot
                ),
            )),
        ),
        Boot::Settled(id) if id.firmware_version != version => (
            "kept_previous",
            Some(id),
            Some(Failure::new(
                ExitCode::Verification,
                anyhow::anyhow!(
                    "after the reboot the charger runs {} (slot {}), not {version}: it kept the previous image",
                    id.firmware_version,
                    id.active_slot
                ),
            )),
        ),
        Boot::Settled(id) => ("confirmed", Some(id), None),
        Boot::OnTrial(id) => (
            "unconfirmed",
            Some(id),
            Some(Failure::new(
                ExitCode::Failure,
                anyhow::anyhow!(
                    "firmware {version} runs on trial but the charger had not confirmed it after {:.0} s; \
                     it goes back to the previous image if it does not come up (see `chargectl info`)",
                    limit.as_secs_f64()
                ),
            )),
        ),
        Boot::NoAnswer(e) => (
            "unconfirmed",
            None,
            Some(Failure::new(
                ExitCode::Unreachable,
                anyhow::anyhow!(
                    "the charger did not answer within {:.0} s of its reboot into {version} ({e}); \
                     run `chargectl info` to see which image it runs",
                    limit.as_secs_f64()
                ),
            )),
        ),
    }
}

/// A file that fails the pre-flash check: a damaged payload is a verification failure, anything
/// else (unreadable, empty, not an image) is bad input.
fn preflight_failure(e: PreflightError) -> anyhow::Error {
    let code = match e {
        PreflightError::Damaged { .. } => ExitCode::Verification,
        PreflightError::Read { .. }
        | PreflightError::Empty { .. }
        | PreflightError::Format { .. } => ExitCode::BadInput,
    };
    Failure::new(code, e).into()
}
