//! `chargectl reboot`.

use super::info::{connect, fail};
use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, output};
use serde_json::json;

pub async fn run(port: &PortArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let client = connect(port, env).await?;
    let serial = client.hello().serial_number;
    client.reboot().await.map_err(fail)?;
    if env.json {
        output::print_json(&json!({ "rebooting": true, "serial_number": serial }))?;
    } else {
        eprintln!("charger {serial} is rebooting");
    }
    Ok(ExitCode::Ok)
}
