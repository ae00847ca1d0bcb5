//! `chargectl config get|set`.

use super::info::{bad_input, connect, fail};
use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::link::SetOutcome;
use serde_json::json;
use std::io::Write;

pub async fn get(keys: Vec<String>, port: &PortArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let client = connect(port, env).await?;
    let read = client.config_get(keys).await.map_err(fail)?;
    if env.json {
        output::print_json(&read)?;
    } else {
        let mut out = std::io::stdout().lock();
        for e in &read.entries {
            let value = if e.write_only {
                "<write-only>".to_string()
            } else {
                e.value.clone().unwrap_or_default()
            };
            let mut notes = Vec::new();
            if e.readonly {
                notes.push("read-only");
            }
            if e.reboot_required {
                notes.push("reboot required");
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", notes.join(", "))
            };
            writeln!(out, "{} = {value}{notes}", e.key)?;
        }
        out.flush()?;
    }
    if read.unknown.is_empty() {
        Ok(ExitCode::Ok)
    } else {
        eprintln!("chargectl: unknown keys: {}", read.unknown.join(", "));
        Ok(ExitCode::Refused)
    }
}

/// Splits `KEY=VALUE`; the value may contain `=`.
pub fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

pub async fn set(assignments: Vec<String>, port: &PortArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let pairs = assignments
        .iter()
        .map(|a| parse_assignment(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad_input)?;
    let client = connect(port, env).await?;
    let results = client.config_set(pairs).await.map_err(fail)?;
    // Values are never echoed: one of them may be the AuthorizationKey.
    let describe = |o: &SetOutcome| match o {
        SetOutcome::Accepted => "accepted".to_string(),
        SetOutcome::RebootRequired => "accepted, takes effect after a reboot".to_string(),
        SetOutcome::Rejected(r) => format!("rejected: {r}"),
        SetOutcome::NotSupported => "not supported (unknown key)".to_string(),
    };
    if env.json {
        let items: Vec<_> = results
            .iter()
            .map(|(k, o)| json!({ "key": k, "outcome": o }))
            .collect();
        output::print_json(&json!({ "results": items }))?;
    } else {
        let mut out = std::io::stdout().lock();
        for (k, o) in &results {
            writeln!(out, "{k}: {}", describe(o))?;
        }
        out.flush()?;
    }
    let refused: Vec<String> = results
        .iter()
        .filter(|(_, o)| !o.is_applied())
        .map(|(k, o)| format!("{k} ({})", describe(o)))
        .collect();
    if refused.is_empty() {
        Ok(ExitCode::Ok)
    } else {
        Err(anyhow::Error::new(Failure::new(
            ExitCode::Refused,
            anyhow::anyhow!("the charger refused {}", refused.join("; ")),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_assignment("CentralSystemUrl=ws://h/ocpp?a=b"),
            Ok(("CentralSystemUrl".into(), "ws://h/ocpp?a=b".into()))
        );
        assert_eq!(parse_assignment("K="), Ok(("K".into(), "".into())));
        assert_eq!(
            parse_assignment("=v"),
            Err("expected KEY=VALUE, got '=v'".into())
        );
        assert!(parse_assignment("novalue").is_err());
    }
}
