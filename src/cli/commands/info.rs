//! `chargectl info`: the charger's identity, firmware, slots and uptime. Also holds the
//! connection and error-mapping helpers the other serial commands share.

use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::link::{self, Client, ClientOptions};
use serde_json::json;
use std::time::Duration;

/// Maps a link error to the exit code its class calls for.
pub(crate) fn fail(e: link::Error) -> anyhow::Error {
    let code = match &e {
        link::Error::Refused { .. } => ExitCode::Refused,
        link::Error::FlashRejected { .. } => ExitCode::Verification,
        link::Error::InvalidInput(_) => ExitCode::BadInput,
        e if e.is_unreachable() => ExitCode::Unreachable,
        _ => ExitCode::Failure,
    };
    anyhow::Error::new(Failure::new(code, e))
}

/// A usage-class failure with a message.
pub(crate) fn bad_input(message: String) -> anyhow::Error {
    anyhow::Error::new(Failure::new(ExitCode::BadInput, anyhow::anyhow!(message)))
}

/// Opens the port named on the command line, greets the charger, and records the session in the
/// sessions directory (a record that cannot be written is a warning, never a failure).
pub(crate) async fn connect(port: &PortArgs, env: &Env) -> anyhow::Result<Client> {
    if !port.timeout.is_finite() || port.timeout <= 0.0 {
        return Err(anyhow::Error::new(Failure::new(
            ExitCode::Usage,
            anyhow::anyhow!(
                "--timeout must be a positive number of seconds, got {}",
                port.timeout
            ),
        )));
    }
    let opts = ClientOptions {
        timeout: Duration::from_secs_f64(port.timeout),
        ..ClientOptions::default()
    };
    let client = Client::connect(&port.port, port.baud, opts)
        .await
        .map_err(fail)?;
    match link::Recorder::open(
        &env.paths.sessions_dir(),
        &port.port,
        &client.hello(),
        &link::RecorderOptions::default(),
    ) {
        Ok(recorder) => {
            client.record_to(recorder);
        }
        Err(e) => tracing::warn!(
            "cannot record this session in {}: {e}",
            env.paths.sessions_dir().display()
        ),
    }
    Ok(client)
}

pub async fn run(port: &PortArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let client = connect(port, env).await?;
    let id = client.identify().await.map_err(fail)?;
    // A charger whose firmware cannot report its OCPP state answers None: shown as such.
    let ocpp = client.ocpp_status().await.map_err(fail)?;
    if env.json {
        output::print_json(&json!({ "port": port.port, "identity": id, "ocpp": ocpp }))?;
        return Ok(ExitCode::Ok);
    }
    let boot = match id.boot_state {
        link::BootState::Normal => "normal",
        link::BootState::Trial => "trial (not yet confirmed)",
        link::BootState::Reverted => "reverted to the previous image",
    };
    let inactive = id.inactive_version.as_deref().unwrap_or("(empty)");
    let up = id.uptime_secs;
    let text = format!(
        "vendor            {}\nmodel             {}\nserial number     {}\nfirmware          {}\n\
         active slot       {} ({boot})\ninactive slot     {} {inactive}\nuptime            {}d {:02}:{:02}:{:02}\n",
        id.vendor,
        id.model,
        id.serial_number,
        id.firmware_version,
        id.active_slot,
        id.inactive_slot,
        up / 86_400,
        up / 3600 % 24,
        up / 60 % 60,
        up % 60
    );
    let mut text = text;
    text.push_str(&ocpp_lines(ocpp.as_ref()));
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::Ok)
}

/// The charger's OCPP state as `info` prints it.
fn ocpp_lines(ocpp: Option<&link::OcppStatus>) -> String {
    let Some(s) = ocpp else {
        return "OCPP              (this firmware does not report its OCPP state)\n".into();
    };
    let mut text = format!(
        "CSMS              {}\nconnection        {}\nregistration      {}\n",
        s.csms_url.as_deref().unwrap_or("-"),
        crate::provision::online::describe(s),
        s.registration.as_str(),
    );
    if let Some(e) = &s.last_error {
        let at = chrono::DateTime::from_timestamp_millis(e.at_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "?".into());
        text.push_str(&format!(
            "last error        {at}: {}\n",
            crate::provision::online::reason(e)
        ));
    }
    text
}
