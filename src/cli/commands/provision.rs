//! `chargectl provision PROFILE --port P [--set VAR=VALUE]... [--dry-run]`: applies a
//! provisioning profile to a charger over its service port.
//!
//! The workflow is the library's ([`crate::provision::apply`]): the keys are written one at a
//! time in the provisioning profile's order (the AuthorizationKey before SecurityProfile), and
//! the charger applies its own rules to each (the same as OCPP ChangeConfiguration).
//! `--dry-run` shows the changes and checks each value with the charger's rules without writing
//! anything. This file resolves the provisioning profile for the command line (`--set`, a
//! prompt on a terminal) and prints the report.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::json;

use super::info::{connect, fail};
use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::provision::{self, AssignedValue, Assignment, Mode, Step};
use crate::stack::config::ChangeOutcome;

/// Resolves a provisioning profile for this environment: variables from `--set`, secrets from the
/// environment or (on a terminal) a prompt without echo.
pub fn load(
    name: &str,
    set: &[String],
    env: &Env,
) -> anyhow::Result<(provision::Profile, Vec<Assignment>)> {
    let provisioning_profile =
        provision::Profile::find(name, &env.paths.config_dir.join("profiles"))
            .map_err(|e| Failure::new(ExitCode::BadInput, e))?;
    let mut vars = BTreeMap::new();
    for s in set {
        let (k, v) = super::config::parse_assignment(s)
            .map_err(|e| Failure::new(ExitCode::Usage, anyhow::anyhow!("--set: {e}")))?;
        vars.insert(k, v);
    }
    let getenv = |name: &str| std::env::var(name).ok();
    let ask = |what: &str| rpassword::prompt_password(format!("{what}: ")).ok();
    let prompt: Option<provision::Prompt<'_>> = if env.interactive { Some(&ask) } else { None };
    let assignments = provisioning_profile
        .resolve(&vars, &getenv, prompt)
        .map_err(|e| match e {
            provision::Error::MissingVariable { .. } | provision::Error::MissingSecret { .. } => {
                Failure::new(ExitCode::Usage, e)
            }
            other => Failure::new(ExitCode::BadInput, other),
        })?;
    Ok((provisioning_profile, assignments))
}

pub async fn run(
    name: &str,
    port: &PortArgs,
    set: &[String],
    dry_run: bool,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    let (provisioning_profile, assignments) = load(name, set, env)?;
    let client = connect(port).await?;
    let mode = if dry_run { Mode::DryRun } else { Mode::Write };
    let report = provision::apply(&client, assignments, mode, |step| {
        if let Step::Answered { key, outcome } = step {
            tracing::debug!(key, ?outcome, "provisioned key");
        }
    })
    .await
    .map_err(fail)?;
    // key, old, new, outcome
    let results: Vec<(String, String, String, String)> = report
        .keys
        .iter()
        .map(|k| {
            (
                k.change.key.clone(),
                shown_old(&k.change.value, k.change.current.clone()),
                k.change.value.shown(),
                describe(&k.outcome, mode),
            )
        })
        .collect();
    let refused: Vec<String> = report
        .refused()
        .map(|k| format!("{} ({})", k.change.key, describe(&k.outcome, mode)))
        .collect();
    if env.json {
        let items: Vec<_> = results
            .iter()
            .map(|(k, old, new, outcome)| json!({"key": k, "old": old, "new": new, "outcome": outcome}))
            .collect();
        output::print_json(&json!({
            "profile": provisioning_profile.name,
            "dry_run": dry_run,
            "changes": items,
        }))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{} profile {}{}",
            if dry_run { "would apply" } else { "applied" },
            provisioning_profile.name,
            if dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        )?;
        for (k, old, new, outcome) in &results {
            let change = if old == new {
                format!("{new} (unchanged)")
            } else {
                format!("{old} -> {new}")
            };
            writeln!(out, "  {k}: {change}  [{outcome}]")?;
        }
        out.flush()?;
    }
    if refused.is_empty() {
        Ok(ExitCode::Ok)
    } else {
        Err(Failure::new(
            ExitCode::Refused,
            anyhow::anyhow!(
                "the charger {} {}",
                if dry_run { "would refuse" } else { "refused" },
                refused.join("; ")
            ),
        )
        .into())
    }
}

fn shown_old(new: &AssignedValue, old: Option<String>) -> String {
    match new {
        AssignedValue::Secret(_) => "<write-only>".to_string(),
        AssignedValue::Plain(_) => old.unwrap_or_else(|| "(unset)".into()),
    }
}

/// The outcome in words: what the charger's rules would answer (dry run), or what it answered.
fn describe(o: &ChangeOutcome, mode: Mode) -> String {
    match (mode, o) {
        (Mode::DryRun, ChangeOutcome::Accepted) => "ok".into(),
        (Mode::DryRun, ChangeOutcome::RebootRequired) => "ok, takes effect after a reboot".into(),
        (Mode::DryRun, ChangeOutcome::Rejected(r)) => format!("would be rejected: {r}"),
        (Mode::Write, ChangeOutcome::Accepted) => "accepted".into(),
        (Mode::Write, ChangeOutcome::RebootRequired) => {
            "accepted, takes effect after a reboot".into()
        }
        (Mode::Write, ChangeOutcome::Rejected(r)) => format!("rejected: {r}"),
        (_, ChangeOutcome::NotSupported) => "not supported by this charger".into(),
    }
}
