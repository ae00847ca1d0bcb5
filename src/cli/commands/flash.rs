//! `chargectl flash IMAGE`: check the image, stream it with progress, have the charger verify
//! it, reboot into it and read the new version back.

use super::info::{connect, fail};
use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::firmware::PreflightError;
use crate::link::{FlashOptions, FlashPhase, FlashProgress};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(
    image_path: &Path,
    port: &PortArgs,
    no_compress: bool,
    no_reboot: bool,
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
    let client = connect(port, env).await?;
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
    let mut after = None;
    if !no_reboot {
        client.reboot().await.map_err(fail)?;
        if !json {
            eprintln!("rebooting into {} ...", report.version);
        }
        client.reconnect().await.map_err(fail)?;
        let id = client.identify().await.map_err(fail)?;
        if id.firmware_version != report.version {
            return Err(anyhow::Error::new(Failure::new(
                ExitCode::Verification,
                anyhow::anyhow!(
                    "after the reboot the charger runs {} (slot {}), not {}: it kept the previous image",
                    id.firmware_version,
                    id.active_slot,
                    report.version
                ),
            )));
        }
        after = Some(id);
    }
    if json {
        output::print_json_line(
            "result",
            json!({ "before": before, "flash": report, "after": after }),
        )?;
    } else if let Some(id) = &after {
        eprintln!(
            "charger {} now runs {} from slot {}",
            id.serial_number, id.firmware_version, id.active_slot
        );
    } else {
        eprintln!(
            "staged; the charger keeps running {} until it reboots",
            before.firmware_version
        );
    }
    Ok(ExitCode::Ok)
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
