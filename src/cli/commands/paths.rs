//! `chargectl paths`: where chargectl keeps its configuration, data and logs.

use serde_json::json;
use std::io::Write;

use crate::cli::{Env, ExitCode, output};

pub fn run(env: &Env) -> anyhow::Result<ExitCode> {
    let p = &env.paths;
    let rows = [
        ("config", p.config_dir.clone()),
        ("profiles", p.profiles_dir()),
        ("data", p.data_dir.clone()),
        ("sessions", p.sessions_dir()),
        ("log", p.log_dir.clone()),
        ("cache", p.cache_dir.clone()),
    ];
    if env.json {
        let mut doc = serde_json::Map::new();
        for (name, path) in &rows {
            doc.insert(format!("{name}_dir"), json!(path.display().to_string()));
        }
        output::print_json(&doc)?;
        return Ok(ExitCode::Ok);
    }
    let mut out = std::io::stdout().lock();
    for (name, path) in &rows {
        writeln!(out, "{name:<10}{}", path.display())?;
    }
    out.flush()?;
    Ok(ExitCode::Ok)
}
