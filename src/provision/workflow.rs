//! Applying a resolved provisioning profile to a charger: read what it holds, plan the change of
//! every key (unchanged keys marked, secrets never read back or shown), then check each key with
//! the charger's rules (a dry run) or write them one at a time in [`write_order`], collecting the
//! charger's answer per key. Progress goes to a callback as [`Step`]s; nothing is printed, so
//! `chargectl provision` and the TUI's configuration screen run the same workflow.

use std::future::Future;

use super::{AssignedValue, Assignment};
use crate::link;
use crate::stack::config::{ChangeOutcome, Channel, Configuration};

/// Keys written only after every other key has been answered: raising the security profile
/// before the AuthorizationKey (or the CSMS URL) is in place would cut the charger off its CSMS.
pub const WRITTEN_LAST: &[&str] = &["SecurityProfile"];

/// `keys` in the order they must be written: as given, with the [`WRITTEN_LAST`] keys moved to
/// the end (in their own order).
pub fn write_order(keys: Vec<Assignment>) -> Vec<Assignment> {
    let (last, mut first): (Vec<Assignment>, Vec<Assignment>) = keys
        .into_iter()
        .partition(|a| WRITTEN_LAST.contains(&a.key.as_str()));
    first.extend(last);
    first
}

/// One key as the charger holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentValue {
    pub key: String,
    /// `None` when the key has no value or is write-only (secrets are never read back).
    pub value: Option<String>,
}

/// A charger's configuration as the workflow reaches it: over the service link
/// ([`link::Client`]), or anything else that reads and writes keys with the charger's rules.
pub trait ConfigTarget: Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Every key the charger has, with its current value.
    fn read_config(&self) -> impl Future<Output = Result<Vec<CurrentValue>, Self::Error>> + Send;

    /// Writes one key; the outcome is the charger's, as for OCPP ChangeConfiguration.
    fn write_key(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<ChangeOutcome, Self::Error>> + Send;
}

impl ConfigTarget for link::Client {
    type Error = link::Error;

    async fn read_config(&self) -> Result<Vec<CurrentValue>, link::Error> {
        let read = self.config_get(Vec::new()).await?;
        Ok(read
            .entries
            .into_iter()
            .map(|e| CurrentValue {
                value: if e.write_only { None } else { e.value },
                key: e.key,
            })
            .collect())
    }

    async fn write_key(&self, key: &str, value: &str) -> Result<ChangeOutcome, link::Error> {
        let answers = self
            .config_set(vec![(key.to_string(), value.to_string())])
            .await?;
        Ok(answers
            .into_iter()
            .next()
            .map(|(_, o)| match o {
                link::SetOutcome::Accepted => ChangeOutcome::Accepted,
                link::SetOutcome::RebootRequired => ChangeOutcome::RebootRequired,
                link::SetOutcome::Rejected(r) => ChangeOutcome::Rejected(r),
                link::SetOutcome::NotSupported => ChangeOutcome::NotSupported,
            })
            .unwrap_or_else(|| ChangeOutcome::Rejected("no answer".into())))
    }
}

/// One key of a provisioning profile against the charger's current value.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyChange {
    pub key: String,
    /// The charger's value now: `None` when unset, unknown to it, or write-only.
    pub current: Option<String>,
    pub value: AssignedValue,
}

impl KeyChange {
    /// The charger already holds this value. Never true for a secret: it cannot be read back.
    pub fn unchanged(&self) -> bool {
        matches!(&self.value, AssignedValue::Plain(v) if self.current.as_deref() == Some(v.as_str()))
    }
}

/// Every key a provisioning profile sets, in write order, against what the charger holds.
#[derive(Debug, Clone)]
pub struct Plan {
    pub keys: Vec<KeyChange>,
    /// The charger's whole configuration as read, for checking values with its rules.
    current: Vec<CurrentValue>,
}

impl Plan {
    /// Plans `assignments` against `current` (empty when no charger is connected).
    pub fn new(assignments: Vec<Assignment>, current: Vec<CurrentValue>) -> Plan {
        let keys = write_order(assignments)
            .into_iter()
            .map(|a| KeyChange {
                current: current
                    .iter()
                    .find(|c| c.key == a.key)
                    .and_then(|c| c.value.clone()),
                key: a.key,
                value: a.value,
            })
            .collect();
        Plan { keys, current }
    }

    /// The keys that change: plain values the charger already holds are left out, secrets are
    /// always kept (their current value cannot be read back).
    pub fn changes(&self) -> impl Iterator<Item = &KeyChange> {
        self.keys.iter().filter(|k| !k.unchanged())
    }

    /// The charger's rules applied to every key in order, on a scratch copy of its configuration:
    /// what writing would answer, with nothing written.
    pub fn check(&self) -> Vec<ChangeOutcome> {
        let mut scratch = Configuration::in_memory();
        for c in &self.current {
            if let Some(v) = &c.value {
                // Keys this build does not know keep their place in the plan; the check below
                // reports them as not supported.
                let _ = scratch.set_internal(&c.key, v);
            }
        }
        self.keys
            .iter()
            .map(|k| scratch.change(&k.key, k.value.expose(), Channel::Service))
            .collect()
    }
}

/// Reads the charger's configuration and plans `assignments` against it.
pub async fn read_plan<T: ConfigTarget>(
    target: &T,
    assignments: Vec<Assignment>,
) -> Result<Plan, T::Error> {
    let current = target.read_config().await?;
    Ok(Plan::new(assignments, current))
}

/// Whether [`apply`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Check every key with the charger's rules; write nothing.
    DryRun,
    Write,
}

/// What the workflow is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step<'a> {
    /// The charger's configuration was read.
    Read { keys: usize },
    /// This key is being checked (dry run) or written; `index` counts from 0.
    Key {
        key: &'a str,
        index: usize,
        total: usize,
    },
    /// The charger's answer for the key (in a dry run: what its rules would answer).
    Answered {
        key: &'a str,
        outcome: &'a ChangeOutcome,
    },
}

/// The outcome for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyReport {
    pub change: KeyChange,
    pub outcome: ChangeOutcome,
}

impl KeyReport {
    /// The key was written in a [`Mode::Write`] run: keys the charger already held are not.
    pub fn written(&self, mode: Mode) -> bool {
        mode == Mode::Write && !self.change.unchanged()
    }

    /// The charger took the value (now, or after a reboot).
    pub fn applied(&self) -> bool {
        matches!(
            self.outcome,
            ChangeOutcome::Accepted | ChangeOutcome::RebootRequired
        )
    }
}

/// What [`apply`] did, key by key in write order.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub mode: Mode,
    pub keys: Vec<KeyReport>,
}

impl Report {
    /// The keys the charger refused (or, in a dry run, would refuse).
    pub fn refused(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys.iter().filter(|k| !k.applied())
    }

    /// Some written key takes effect only after a reboot.
    pub fn needs_reboot(&self) -> bool {
        self.keys
            .iter()
            .any(|k| k.outcome == ChangeOutcome::RebootRequired)
    }
}

/// Applies resolved assignments to a charger: reads its configuration, then checks (dry run) or
/// writes every key in write order, so the report lists the whole provisioning profile. Keys
/// the charger already holds are not written (their outcome is Accepted; secrets, which cannot
/// be read back, are always written). A link failure stops the workflow with its error.
pub async fn apply<T: ConfigTarget>(
    target: &T,
    assignments: Vec<Assignment>,
    mode: Mode,
    mut progress: impl FnMut(Step<'_>) + Send,
) -> Result<Report, T::Error> {
    let plan = read_plan(target, assignments).await?;
    progress(Step::Read {
        keys: plan.current.len(),
    });
    let outcomes = match mode {
        Mode::DryRun => {
            let outcomes = plan.check();
            let total = plan.keys.len();
            for (index, (k, outcome)) in plan.keys.iter().zip(&outcomes).enumerate() {
                progress(Step::Key {
                    key: &k.key,
                    index,
                    total,
                });
                progress(Step::Answered {
                    key: &k.key,
                    outcome,
                });
            }
            outcomes
        }
        Mode::Write => {
            let mut outcomes = Vec::with_capacity(plan.keys.len());
            let total = plan.keys.len();
            for (index, k) in plan.keys.iter().enumerate() {
                // What the charger holds already is not written again, so a second run of the
                // same profile changes nothing.
                if k.unchanged() {
                    outcomes.push(ChangeOutcome::Accepted);
                    continue;
                }
                progress(Step::Key {
                    key: &k.key,
                    index,
                    total,
                });
                let outcome = target.write_key(&k.key, k.value.expose()).await?;
                progress(Step::Answered {
                    key: &k.key,
                    outcome: &outcome,
                });
                outcomes.push(outcome);
            }
            outcomes
        }
    };
    Ok(Report {
        mode,
        keys: plan
            .keys
            .into_iter()
            .zip(outcomes)
            .map(|(change, outcome)| KeyReport { change, outcome })
            .collect(),
    })
}

/// A write stopped by a link failure: the keys answered before it, and those not written.
#[derive(Debug, thiserror::Error)]
#[error("writing {}: {error}", unwritten.first().map(String::as_str).unwrap_or("the configuration"))]
pub struct Interrupted<E: std::error::Error> {
    pub written: Vec<(String, ChangeOutcome)>,
    /// The key that failed first, then the keys after it.
    pub unwritten: Vec<String>,
    pub error: E,
}

/// Writes `keys` one at a time in [`write_order`] and collects the charger's answer to each
/// (the TUI's apply of pending edits, a provisioning profile's keys among them).
pub async fn write_keys<T: ConfigTarget>(
    target: &T,
    keys: Vec<Assignment>,
    mut progress: impl FnMut(Step<'_>) + Send,
) -> Result<Vec<(String, ChangeOutcome)>, Interrupted<T::Error>> {
    let keys = write_order(keys);
    let total = keys.len();
    let mut written = Vec::with_capacity(total);
    for (index, a) in keys.iter().enumerate() {
        progress(Step::Key {
            key: &a.key,
            index,
            total,
        });
        match target.write_key(&a.key, a.value.expose()).await {
            Ok(outcome) => {
                progress(Step::Answered {
                    key: &a.key,
                    outcome: &outcome,
                });
                written.push((a.key.clone(), outcome));
            }
            Err(error) => {
                return Err(Interrupted {
                    written,
                    unwritten: keys[index..].iter().map(|a| a.key.clone()).collect(),
                    error,
                });
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::secret::Secret;
    use std::sync::Mutex;

    const KEY_HEX: &str = "00112233445566778899aabbccddeeff";

    /// A charger's configuration in memory, with the charger's rules, recording every write.
    struct FakeCharger {
        config: Mutex<Configuration>,
        writes: Mutex<Vec<String>>,
        /// Writing this key fails like a pulled cable.
        fail_on: Option<&'static str>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the link is gone")]
    struct Gone;

    impl FakeCharger {
        fn new(values: &[(&str, &str)]) -> FakeCharger {
            let mut config = Configuration::in_memory();
            for (k, v) in values {
                config.set_internal(k, v).unwrap();
            }
            FakeCharger {
                config: Mutex::new(config),
                writes: Mutex::default(),
                fail_on: None,
            }
        }
    }

    impl ConfigTarget for FakeCharger {
        type Error = Gone;

        async fn read_config(&self) -> Result<Vec<CurrentValue>, Gone> {
            let config = self.config.lock().unwrap();
            let (entries, _) = config.get(&[], Channel::Service);
            Ok(entries
                .into_iter()
                .map(|e| CurrentValue {
                    key: e.key,
                    value: e.value,
                })
                .collect())
        }

        async fn write_key(&self, key: &str, value: &str) -> Result<ChangeOutcome, Gone> {
            if self.fail_on == Some(key) {
                return Err(Gone);
            }
            self.writes.lock().unwrap().push(key.to_string());
            Ok(self
                .config
                .lock()
                .unwrap()
                .change(key, value, Channel::Service))
        }
    }

    fn plain(key: &str, value: &str) -> Assignment {
        Assignment {
            key: key.into(),
            value: AssignedValue::Plain(value.into()),
        }
    }

    fn secret(key: &str) -> Assignment {
        Assignment {
            key: key.into(),
            value: AssignedValue::Secret(Secret::new(KEY_HEX)),
        }
    }

    #[test]
    fn changes_leave_out_unchanged_keys_and_keep_secrets_secret() {
        let assignments = vec![
            plain("HeartbeatInterval", "300"),
            plain("MeterValueSampleInterval", "60"),
            secret("AuthorizationKey"),
            plain("NewKey", "x"),
        ];
        let current = vec![
            CurrentValue {
                key: "HeartbeatInterval".into(),
                value: Some("300".into()),
            },
            CurrentValue {
                key: "MeterValueSampleInterval".into(),
                value: Some("0".into()),
            },
            CurrentValue {
                key: "AuthorizationKey".into(),
                value: None,
            },
        ];
        let plan = Plan::new(assignments, current);
        assert_eq!(plan.keys.len(), 4, "the plan keeps every key");
        let keys: Vec<&str> = plan.changes().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["MeterValueSampleInterval", "AuthorizationKey", "NewKey"]
        );
        let changes: Vec<&KeyChange> = plan.changes().collect();
        assert_eq!(changes[0].current.as_deref(), Some("0"));
        assert_eq!(changes[1].current, None);
        assert!(!changes[1].unchanged());
        assert_eq!(changes[2].current, None);
        let shown = format!("{plan:?}");
        assert!(!shown.contains(KEY_HEX), "{shown}");
    }

    #[test]
    fn security_profile_is_written_after_the_keys_it_needs() {
        let ordered = write_order(vec![
            plain("SecurityProfile", "1"),
            plain("HeartbeatInterval", "300"),
            secret("AuthorizationKey"),
        ]);
        let keys: Vec<&str> = ordered.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["HeartbeatInterval", "AuthorizationKey", "SecurityProfile"]
        );
    }

    #[tokio::test]
    async fn a_dry_run_checks_every_key_and_writes_nothing() {
        let charger = FakeCharger::new(&[("HeartbeatInterval", "300")]);
        let mut steps = Vec::new();
        let report = apply(
            &charger,
            vec![
                plain("HeartbeatInterval", "300"),
                plain("SecurityProfile", "1"),
                secret("AuthorizationKey"),
                plain("MeterValueSampleInterval", "-5"),
            ],
            Mode::DryRun,
            |s| steps.push(format!("{s:?}")),
        )
        .await
        .unwrap();
        assert!(charger.writes.lock().unwrap().is_empty());
        let keys: Vec<(&str, bool, bool)> = report
            .keys
            .iter()
            .map(|k| (k.change.key.as_str(), k.change.unchanged(), k.applied()))
            .collect();
        assert_eq!(
            keys,
            [
                ("HeartbeatInterval", true, true),
                ("AuthorizationKey", false, true),
                ("MeterValueSampleInterval", false, false),
                ("SecurityProfile", false, true),
            ]
        );
        let refused: Vec<&str> = report.refused().map(|k| k.change.key.as_str()).collect();
        assert_eq!(refused, ["MeterValueSampleInterval"]);
        assert_eq!(steps.len(), 1 + 2 * 4, "{steps:#?}");
        assert!(steps.iter().all(|s| !s.contains(KEY_HEX)), "{steps:#?}");
    }

    #[tokio::test]
    async fn writing_follows_the_order_and_a_failure_names_what_was_not_written() {
        let charger = FakeCharger::new(&[]);
        let report = apply(
            &charger,
            vec![
                plain("SecurityProfile", "1"),
                secret("AuthorizationKey"),
                plain("HeartbeatInterval", "120"),
            ],
            Mode::Write,
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(
            *charger.writes.lock().unwrap(),
            ["AuthorizationKey", "HeartbeatInterval", "SecurityProfile"]
        );
        assert_eq!(report.refused().count(), 0, "{report:?}");
        assert!(!report.needs_reboot(), "{report:?}");
        let report = apply(
            &charger,
            vec![plain("ChargePointId", "GARAGE-7")],
            Mode::Write,
            |_| {},
        )
        .await
        .unwrap();
        assert!(report.needs_reboot(), "{report:?}");

        let failing = FakeCharger {
            fail_on: Some("HeartbeatInterval"),
            ..FakeCharger::new(&[])
        };
        let err = write_keys(
            &failing,
            vec![
                plain("SecurityProfile", "0"),
                plain("MeterValueSampleInterval", "30"),
                plain("HeartbeatInterval", "120"),
                plain("ConnectionTimeOut", "30"),
            ],
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.written,
            [(
                "MeterValueSampleInterval".to_string(),
                ChangeOutcome::Accepted
            )]
        );
        assert_eq!(
            err.unwritten,
            ["HeartbeatInterval", "ConnectionTimeOut", "SecurityProfile"]
        );
        assert_eq!(
            err.to_string(),
            "writing HeartbeatInterval: the link is gone"
        );
    }
}
