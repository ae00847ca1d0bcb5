//! `chargectl ports`: serial ports with their USB identity, likely chargers marked.

use crate::cli::{Env, ExitCode, Failure, output};
use crate::link::ports::{PortKind, PortLister, SystemPorts};
use std::io::Write;

pub async fn run(all: bool, env: &Env) -> anyhow::Result<ExitCode> {
    let ports = SystemPorts
        .list()
        .map_err(|e| anyhow::Error::new(Failure::new(ExitCode::Failure, e)))?;
    let shown: Vec<_> = ports
        .into_iter()
        .filter(|p| all || p.kind == PortKind::Usb)
        .collect();
    if env.json {
        output::print_json(&shown)?;
        return Ok(ExitCode::Ok);
    }
    if shown.is_empty() {
        eprintln!(
            "no {}serial ports found{}",
            if all { "" } else { "USB " },
            if all { "" } else { " (--all lists every port)" }
        );
        return Ok(ExitCode::Ok);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<22} {:<9} {:<20} {:<28} SERIAL",
        "PORT", "VID:PID", "BRIDGE", "PRODUCT"
    )?;
    for p in &shown {
        let id = match (p.vid, p.pid) {
            (Some(v), Some(d)) => format!("{v:04x}:{d:04x}"),
            _ => "-".into(),
        };
        let mark = if p.likely_charger { "  <- charger" } else { "" };
        writeln!(
            out,
            "{:<22} {:<9} {:<20} {:<28} {}{mark}",
            p.name,
            id,
            p.bridge.unwrap_or("-"),
            p.product.as_deref().unwrap_or("-"),
            p.serial_number.as_deref().unwrap_or("-"),
        )?;
    }
    out.flush()?;
    Ok(ExitCode::Ok)
}
