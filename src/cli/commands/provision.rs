//! `chargectl provision PROFILE --port P [--set VAR=VALUE]... [--dry-run]`: applies a
//! provisioning profile to a charger over its service port.
//!
//! The keys are written one at a time in the profile's order (the AuthorizationKey before
//! SecurityProfile), and the charger applies its own rules to each (the same as OCPP
//! ChangeConfiguration). `--dry-run` shows the changes and checks each value with the charger's
//! rules without writing anything.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::json;

use super::info::{connect, fail};
use crate::cli::args::PortArgs;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::link::SetOutcome;
use crate::provision::{AssignedValue, Assignment, Profile};
use crate::stack::config::{ChangeOutcome, Channel, Configuration};

/// Resolves a profile for this environment: variables from `--set`, secrets from the
/// environment or (on a terminal) a prompt without echo.
pub fn load(name: &str, set: &[String], env: &Env) -> anyhow::Result<(Profile, Vec<Assignment>)> {
    let profile = Profile::find(name, &env.paths.config_dir.join("profiles"))
        .map_err(|e| Failure::new(ExitCode::BadInput, e))?;
    let mut vars = BTreeMap::new();
    for s in set {
        let (k, v) = super::config::parse_assignment(s)
            .map_err(|e| Failure::new(ExitCode::Usage, anyhow::anyhow!("--set: {e}")))?;
        vars.insert(k, v);
    }
    let getenv = |name: &str| std::env::var(name).ok();
    let ask = |what: &str| rpassword::prompt_password(format!("{what}: ")).ok();
    let prompt: Option<crate::provision::Prompt<'_>> =
        if env.interactive { Some(&ask) } else { None };
    let assignments = profile
        .resolve(&vars, &getenv, prompt)
        .map_err(|e| match e {
            crate::provision::Error::MissingVariable { .. }
            | crate::provision::Error::MissingSecret { .. } => Failure::new(ExitCode::Usage, e),
            other => Failure::new(ExitCode::BadInput, other),
        })?;
    Ok((profile, assignments))
}

/// Checks every assignment with the charger's own rules, in order, on a scratch copy of the
/// configuration holding `current` values.
pub fn check(
    assignments: &[Assignment],
    current: &[(String, Option<String>)],
) -> Vec<(String, ChangeOutcome)> {
    let mut scratch = Configuration::in_memory();
    for (k, v) in current {
        if let Some(v) = v {
            let _ = scratch.set_internal(k, v);
        }
    }
    assignments
        .iter()
        .map(|a| {
            (
                a.key.clone(),
                scratch.change(&a.key, a.value.expose(), Channel::Service),
            )
        })
        .collect()
}

pub async fn run(
    name: &str,
    port: &PortArgs,
    set: &[String],
    dry_run: bool,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    let (profile, assignments) = load(name, set, env)?;
    let client = connect(port).await?;
    let current = client.config_get(Vec::new()).await.map_err(fail)?;
    let current_of = |key: &str| {
        current
            .entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| if e.write_only { None } else { e.value.clone() })
            .unwrap_or(None)
    };
    let snapshot: Vec<(String, Option<String>)> = current
        .entries
        .iter()
        .map(|e| {
            (
                e.key.clone(),
                if e.write_only { None } else { e.value.clone() },
            )
        })
        .collect();
    let mut results: Vec<(String, String, String, String)> = Vec::new(); // key, old, new, outcome
    let mut refused = Vec::new();
    if dry_run {
        for (a, (_, outcome)) in assignments.iter().zip(check(&assignments, &snapshot)) {
            let text = describe_local(&outcome);
            if matches!(
                outcome,
                ChangeOutcome::Rejected(_) | ChangeOutcome::NotSupported
            ) {
                refused.push(format!("{} ({text})", a.key));
            }
            results.push((
                a.key.clone(),
                shown_old(&a.value, current_of(&a.key)),
                a.value.shown(),
                text,
            ));
        }
    } else {
        for a in &assignments {
            let outcome = client
                .config_set(vec![(a.key.clone(), a.value.expose().to_string())])
                .await
                .map_err(fail)?
                .into_iter()
                .next()
                .map(|(_, o)| o)
                .unwrap_or(SetOutcome::Rejected("no answer".into()));
            let text = describe_remote(&outcome);
            if !outcome.is_applied() {
                refused.push(format!("{} ({text})", a.key));
            }
            results.push((
                a.key.clone(),
                shown_old(&a.value, current_of(&a.key)),
                a.value.shown(),
                text,
            ));
        }
    }
    if env.json {
        let items: Vec<_> = results
            .iter()
            .map(|(k, old, new, outcome)| json!({"key": k, "old": old, "new": new, "outcome": outcome}))
            .collect();
        output::print_json(&json!({
            "profile": profile.name,
            "dry_run": dry_run,
            "changes": items,
        }))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{} profile {}{}",
            if dry_run { "would apply" } else { "applied" },
            profile.name,
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

fn describe_local(o: &ChangeOutcome) -> String {
    match o {
        ChangeOutcome::Accepted => "ok".into(),
        ChangeOutcome::RebootRequired => "ok, takes effect after a reboot".into(),
        ChangeOutcome::Rejected(r) => format!("would be rejected: {r}"),
        ChangeOutcome::NotSupported => "not supported by this charger".into(),
    }
}

fn describe_remote(o: &SetOutcome) -> String {
    match o {
        SetOutcome::Accepted => "accepted".into(),
        SetOutcome::RebootRequired => "accepted, takes effect after a reboot".into(),
        SetOutcome::Rejected(r) => format!("rejected: {r}"),
        SetOutcome::NotSupported => "not supported by this charger".into(),
    }
}
