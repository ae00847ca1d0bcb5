//! `chargectl emulate`: the charger's stack with simulated hardware.

use anyhow::Context;
use std::io::Write;

use crate::cli::args::{BasicAuthPassword, EmulateArgs};
use crate::cli::{Env, ExitCode, Failure};
use crate::emulator::{BootSettings, Emulator, headless};
use crate::stack::secret::Secret;

pub async fn run(args: EmulateArgs, env: &Env) -> anyhow::Result<ExitCode> {
    if !args.headless {
        return Err(Failure::new(
            ExitCode::Usage,
            anyhow::anyhow!(
                "the emulator's TUI is opened with plain `chargectl`; use --headless to run it without a screen"
            ),
        )
        .into());
    }
    if args.count != 1 {
        return Err(Failure::new(
            ExitCode::Usage,
            anyhow::anyhow!(
                "--count other than 1 is not available; start one emulator per charge point id"
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

    let profile = match &args.profile {
        Some(name) => super::provision::load(name, &args.set, env)?.1,
        None => Vec::new(),
    };
    let profile_url = profile
        .iter()
        .find(|a| a.key == "CsmsUrl")
        .map(|a| a.value.expose().to_string());
    // Without --csms (or a profile naming one) the sandbox CSMS runs in-process on a free
    // loopback port.
    let mut sandbox = None;
    let csms_url = match args.csms.clone().or(profile_url) {
        Some(url) => url,
        None => {
            let opts = crate::csms::SandboxOptions::default();
            let handle = crate::csms::Sandbox::start(opts)
                .await
                .context("starting the sandbox CSMS")?;
            let url = handle.url();
            sandbox = Some(handle);
            url
        }
    };
    let mut trusted_keys = Vec::new();
    for path in &args.trust_keys {
        let key = crate::firmware::keys::read_verifying_key(path)
            .map_err(|e| Failure::new(ExitCode::BadInput, anyhow::anyhow!("--trust-key: {e}")))?;
        trusted_keys.push(key);
    }
    let settings = BootSettings {
        trusted_keys,
        profile,
        csms_url: Some(csms_url.clone()),
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
    };
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
