//! `chargectl logs [--follow] [--level L] [--output FILE]`.

use super::info::{bad_input, connect, fail};
use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, output};
use crate::link::LogEvent;
use crate::stack::logbook::{Level, LogRecord};
use serde_json::json;
use std::io::Write;
use std::path::Path;

fn text_line(r: &LogRecord) -> String {
    format!(
        "{} {:<5} {}: {}",
        r.time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        r.level.as_str().to_ascii_uppercase(),
        r.target,
        r.message
    )
}

pub async fn run(
    port: &PortArgs,
    level: &str,
    follow: bool,
    output_file: Option<&Path>,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    let min: Level = level.parse().map_err(bad_input)?;
    let mut file = match output_file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| bad_input(format!("cannot open {} for writing: {e}", p.display())))?,
        ),
        None => None,
    };
    let client = connect(port, env).await?;
    let mut stream = client.logs(min, follow).await.map_err(fail)?;
    let mut dropped_total = 0u64;
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = tokio::signal::ctrl_c() => {
                if dropped_total > 0 {
                    eprintln!("chargectl: {dropped_total} lines were dropped");
                }
                return Ok(ExitCode::Interrupted);
            }
        };
        let Some(event) = event else { break };
        let (json_line, text) = match &event {
            LogEvent::Record(r) => (json!({ "type": "log", "data": r }), text_line(r)),
            LogEvent::Dropped(n) => {
                dropped_total += n;
                (
                    json!({ "type": "dropped", "data": { "count": n } }),
                    format!("-- {n} lines dropped --"),
                )
            }
        };
        if env.json {
            output::print_json(&json_line)?;
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()?;
        }
        if let Some(f) = file.as_mut() {
            writeln!(f, "{json_line}")?;
        }
    }
    if follow {
        // The stream only ends on its own when the link is gone for good.
        return Err(fail(crate::link::Error::Disconnected {
            port: port.port.clone(),
            reason: "log stream ended".into(),
        }));
    }
    Ok(ExitCode::Ok)
}
