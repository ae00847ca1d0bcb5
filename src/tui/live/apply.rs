//! The configuration screen's work on a charger: reading its configuration, writing pending
//! edits, and loading a provisioning profile as pending edits. The rules (write order, what
//! counts as a change, secrets never read back) are [`crate::provision`]'s; this file turns its
//! results into messages.

use std::path::PathBuf;

use super::EnvLookup;
use super::link::tui_entry;
use super::session::Gate;
use crate::link::Client;
use crate::provision::{self, AssignedValue, Assignment, Plan};
use crate::stack::config::ChangeOutcome;
use crate::tui::msg::{ApplyOutcome, ChangeValue, ConfigChange, Msg, ProvisioningChange};

pub(super) async fn read_config(client: Client, gate: Gate, request: u64) {
    let msg = match client.config_get(Vec::new()).await {
        Ok(read) => Msg::ConfigRead {
            request,
            entries: read.entries.into_iter().map(tui_entry).collect(),
        },
        Err(e) => Msg::Error {
            context: "reading the configuration".into(),
            message: e.to_string(),
        },
    };
    gate.send(msg).await;
}

/// Writes the pending edits in the library's write order (SecurityProfile last). When the link
/// fails part way, the keys not written are rejected with the reason.
pub(super) async fn apply(client: Client, gate: Gate, changes: Vec<ConfigChange>) {
    let keys = changes
        .into_iter()
        .map(|c| Assignment {
            key: c.key,
            value: match c.value {
                ChangeValue::Plain(v) => AssignedValue::Plain(v),
                ChangeValue::Secret(s) => AssignedValue::Secret(s),
            },
        })
        .collect();
    let results = match provision::write_keys(&client, keys, |_| {}).await {
        Ok(written) => written,
        Err(stopped) => {
            let reason = stopped.error.to_string();
            let mut results = stopped.written;
            results.extend(
                stopped
                    .unwritten
                    .into_iter()
                    .map(|k| (k, ChangeOutcome::Rejected(reason.clone()))),
            );
            results
        }
    };
    let results = results
        .into_iter()
        .map(|(k, o)| (k, tui_outcome(o)))
        .collect();
    gate.send(Msg::ConfigApplied(results)).await;
}

/// Loads a provisioning profile (variables and secrets from the environment) and reports the
/// keys it would change against the connected charger, or against nothing when none is.
pub(super) async fn load_provisioning_profile(
    client: Option<Client>,
    gate: Gate,
    env: EnvLookup,
    path: PathBuf,
) {
    let context = format!("loading profile {}", path.display());
    let p = path.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        provision::ProvisioningProfile::load(&p)?.resolve_from_env(&*env)
    })
    .await;
    let assignments = match resolved {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            gate.send(Msg::Error {
                context,
                message: e.to_string(),
            })
            .await;
            return;
        }
        Err(e) => {
            gate.send(Msg::Error {
                context,
                message: e.to_string(),
            })
            .await;
            return;
        }
    };
    let plan = match &client {
        Some(client) => match provision::read_plan(client, assignments).await {
            Ok(plan) => plan,
            Err(e) => {
                gate.send(Msg::Error {
                    context,
                    message: format!("reading the charger's configuration: {e}"),
                })
                .await;
                return;
            }
        },
        None => Plan::new(assignments, Vec::new()),
    };
    gate.send(Msg::ProfileLoaded {
        path,
        changes: provisioning_changes(&plan),
    })
    .await;
}

/// The keys a plan changes, as the configuration screen lists them: secrets as [`ChangeValue::Secret`],
/// write-only current values never shown.
fn provisioning_changes(plan: &Plan) -> Vec<ProvisioningChange> {
    plan.changes()
        .map(|c| ProvisioningChange {
            key: c.key.clone(),
            old: c.current.clone(),
            new: match &c.value {
                AssignedValue::Plain(v) => ChangeValue::Plain(v.clone()),
                AssignedValue::Secret(s) => ChangeValue::Secret(s.clone()),
            },
        })
        .collect()
}

fn tui_outcome(o: ChangeOutcome) -> ApplyOutcome {
    match o {
        ChangeOutcome::Accepted => ApplyOutcome::Accepted,
        ChangeOutcome::RebootRequired => ApplyOutcome::RebootRequired,
        ChangeOutcome::Rejected(r) => ApplyOutcome::Rejected(r),
        ChangeOutcome::NotSupported => ApplyOutcome::NotSupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::CurrentValue;
    use crate::stack::secret::Secret;

    fn entry(key: &str, value: Option<&str>, write_only: bool) -> CurrentValue {
        CurrentValue {
            key: key.into(),
            // What the link client reports: write-only keys come without a value.
            value: if write_only {
                None
            } else {
                value.map(str::to_string)
            },
        }
    }

    #[test]
    fn profile_changes_leave_out_unchanged_keys_and_keep_secrets_secret() {
        let assignments = vec![
            Assignment {
                key: "HeartbeatInterval".into(),
                value: AssignedValue::Plain("300".into()),
            },
            Assignment {
                key: "MeterValueSampleInterval".into(),
                value: AssignedValue::Plain("60".into()),
            },
            Assignment {
                key: "AuthorizationKey".into(),
                value: AssignedValue::Secret(Secret::new("00112233445566778899aabbccddeeff")),
            },
            Assignment {
                key: "NewKey".into(),
                value: AssignedValue::Plain("x".into()),
            },
        ];
        let current = vec![
            entry("HeartbeatInterval", Some("300"), false),
            entry("MeterValueSampleInterval", Some("0"), false),
            entry("AuthorizationKey", Some("leaked?"), true),
        ];
        let changes = provisioning_changes(&Plan::new(assignments, current));
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["MeterValueSampleInterval", "AuthorizationKey", "NewKey"]
        );
        assert_eq!(changes[0].old.as_deref(), Some("0"));
        assert_eq!(changes[0].new, ChangeValue::Plain("60".into()));
        assert_eq!(changes[1].old, None, "write-only values are never shown");
        assert!(matches!(changes[1].new, ChangeValue::Secret(_)));
        assert_eq!(changes[2].old, None);
        let shown = format!("{changes:?}");
        assert!(
            !shown.contains("00112233445566778899aabbccddeeff"),
            "{shown}"
        );
    }
}
