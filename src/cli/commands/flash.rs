//! `chargectl flash IMAGE`: check the image, stream it with progress, have the charger verify
//! it, reboot into it and read the new version back.

use super::info::{bad_input, connect, fail};
use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::link::{FlashOptions, FlashPhase, FlashProgress};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

/// Bytes of the image sent ahead with the start request so the charger can refuse early.
const HEADER_BYTES: usize = crate::firmware::HEADER_LEN;

pub async fn run(
    image_path: &Path,
    port: &PortArgs,
    no_compress: bool,
    no_reboot: bool,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    let image = std::fs::read(image_path)
        .map_err(|e| bad_input(format!("cannot read image {}: {e}", image_path.display())))?;
    if image.is_empty() {
        return Err(bad_input(format!(
            "image {} is empty",
            image_path.display()
        )));
    }
    // Check locally first: a damaged or foreign file fails here, before the charger is touched.
    // The signature is the charger's to check (it holds the trusted keys).
    let fw = match crate::firmware::verify(&image, &[]) {
        Err(crate::firmware::Error::NoTrustedKeys) => crate::firmware::parse_header(&image)
            .map_err(|e| bad_input(format!("{}: {e}", image_path.display())))?,
        Ok(h) => h,
        Err(
            e @ (crate::firmware::Error::SizeMismatch { .. }
            | crate::firmware::Error::HashMismatch { .. }),
        ) => {
            return Err(anyhow::Error::new(Failure::new(
                ExitCode::Verification,
                anyhow::anyhow!("{}: {e}", image_path.display()),
            )));
        }
        Err(e) => return Err(bad_input(format!("{}: {e}", image_path.display()))),
    };
    let header = image[..image.len().min(HEADER_BYTES)].to_vec();
    if !env.json {
        eprintln!(
            "image {}: firmware {} for {}, {} bytes",
            image_path.display(),
            fw.firmware_version,
            fw.model,
            image.len()
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
        let bar = indicatif::ProgressBar::new(image.len() as u64);
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
        r = client.flash(&image, &header, &opts, &tx) => r,
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
