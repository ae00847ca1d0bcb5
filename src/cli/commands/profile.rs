//! `chargectl profile check FILE` and `chargectl profile show FILE [--set VAR=VALUE]...`: a
//! provisioning profile validated against the key registry, or printed resolved, without a
//! charger.

use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::cli::{Env, ExitCode, Failure, output};
use crate::provision::{self, Builtins};

/// Reads the profile named on the command line: a file, or a name in the profiles directory
/// or among the shipped ones. The text is returned when it came from a file.
fn find(
    name: &str,
    env: &Env,
) -> Result<(provision::ProvisioningProfile, Option<String>), provision::Error> {
    let profile = provision::ProvisioningProfile::find(name, &env.paths.profiles_dir())?;
    let text = std::fs::read_to_string(&profile.path).ok();
    Ok((profile, text))
}

/// An error of the profile file as JSON: its position when it has one.
fn error_json(e: &provision::Error) -> serde_json::Value {
    match e {
        provision::Error::At {
            path,
            line,
            column,
            message,
        } => json!({"file": path.display().to_string(), "line": line, "column": column,
                    "message": message, "text": e.to_string()}),
        other => json!({"message": other.to_string(), "text": other.to_string()}),
    }
}

pub fn check(name: &str, env: &Env) -> anyhow::Result<ExitCode> {
    let (profile, errors) = match find(name, env) {
        Ok((profile, text)) => {
            let errors = text.map(|t| profile.check_values(&t)).unwrap_or_default();
            (Some(profile), errors)
        }
        Err(e @ provision::Error::Read { .. }) => {
            return Err(Failure::new(ExitCode::BadInput, e).into());
        }
        Err(e) => (None, vec![e]),
    };
    if env.json {
        let mut doc = json!({
            "profile": name,
            "valid": errors.is_empty(),
            "errors": errors.iter().map(error_json).collect::<Vec<_>>(),
        });
        if let Some(p) = &profile {
            doc["name"] = json!(p.name);
            doc["file"] = json!(p.path.display().to_string());
            doc["keys"] = json!(p.templates().map(|(k, _)| k).collect::<Vec<_>>());
            doc["variables"] = json!(
                p.variables
                    .iter()
                    .map(|v| json!({
                        "name": v.name, "description": v.description, "default": v.default,
                    }))
                    .collect::<Vec<_>>()
            );
            doc["builtins"] = json!(p.builtins_used());
            doc["secrets"] = json!(
                p.secrets
                    .iter()
                    .map(|s| json!({
                        "key": s.key, "env": s.env,
                    }))
                    .collect::<Vec<_>>()
            );
        }
        output::print_json(&doc)?;
    } else if errors.is_empty()
        && let Some(p) = &profile
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}: ok ({} keys, {} secret{})",
            p.path.display(),
            p.templates().count(),
            p.secrets.len(),
            if p.secrets.len() == 1 { "" } else { "s" }
        )?;
        for v in &p.variables {
            let default = v
                .default
                .as_deref()
                .map(|d| format!(" (default {d})"))
                .unwrap_or_default();
            writeln!(out, "  variable ${{{}}}{default}", v.name)?;
        }
        for b in p.builtins_used() {
            writeln!(out, "  variable ${{{b}}} (from the charger)")?;
        }
        for s in &p.secrets {
            writeln!(out, "  secret {} from ${}", s.key, s.env)?;
        }
        out.flush()?;
    } else {
        for e in &errors {
            eprintln!("{e}");
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::Ok)
    } else {
        // Under --json the document above already says what is wrong.
        Ok(ExitCode::BadInput)
    }
}

pub fn show(name: &str, set: &[String], env: &Env) -> anyhow::Result<ExitCode> {
    let (profile, _) = find(name, env).map_err(|e| Failure::new(ExitCode::BadInput, e))?;
    let mut vars = BTreeMap::new();
    for s in set {
        let (k, v) = super::config::parse_assignment(s)
            .map_err(|e| Failure::new(ExitCode::Usage, anyhow::anyhow!("--set: {e}")))?;
        vars.insert(k, v);
    }
    let getenv = |name: &str| std::env::var(name).ok();
    let shown = profile
        .preview(&Builtins::default(), &vars, &getenv)
        .map_err(|e| Failure::new(ExitCode::Usage, e))?;
    if env.json {
        output::print_json(&json!({
            "profile": profile.name,
            "file": display_path(&profile.path),
            "description": profile.description,
            "keys": shown,
        }))?;
        return Ok(ExitCode::Ok);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "profile {} ({})",
        profile.name,
        display_path(&profile.path)
    )?;
    if let Some(d) = &profile.description {
        writeln!(out, "  {d}")?;
    }
    let width = shown.iter().map(|k| k.key.len()).max().unwrap_or(0);
    for k in &shown {
        let note = match (&k.secret, k.unresolved.is_empty()) {
            (Some(s), _) if s.present => format!("  (from ${})", s.env),
            (Some(s), _) => format!("  (not set: export {})", s.env),
            (None, false) => format!(
                "  ({})",
                k.unresolved
                    .iter()
                    .map(|n| if provision::BUILTIN_VARIABLES.contains(&n.as_str()) {
                        format!("${{{n}}} from the charger")
                    } else {
                        format!("${{{n}}} has no value: --set {n}=VALUE")
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            (None, true) => String::new(),
        };
        writeln!(out, "  {:<width$}  {}{note}", k.key, k.value)?;
    }
    out.flush()?;
    Ok(ExitCode::Ok)
}

fn display_path(p: &Path) -> String {
    p.display().to_string()
}
