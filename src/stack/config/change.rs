//! Changing a key: the access, channel, length and security rules of ChangeConfiguration and
//! `config set` decided in one place ([`Configuration::change`] and its dry run
//! [`Configuration::check_change`]), and the internal setters that bypass them.

use super::registry::keys::{
    AUTHORIZATION_KEY, LOCK_CABLE_PERMANENTLY, SECURITY_PROFILE,
    UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT,
};
use super::registry::{Access, Channel, Key, KeySpec, REGISTRY, Rule, index_of};
use super::rules::{check_authorization_key, check_value_length};
use super::{ChangeOutcome, Configuration, Error, Result, visible};
use crate::stack::secret::Secret;

impl Configuration {
    /// ChangeConfiguration / `config set`: validates `value`, stores it atomically and answers.
    /// A failed write answers `Rejected` with the reason and leaves the value unchanged.
    pub fn change(&mut self, key: &str, value: &str, channel: Channel) -> ChangeOutcome {
        let planned = match self.plan(key, value, channel) {
            Ok(planned) => planned,
            Err(outcome) => {
                if let ChangeOutcome::Rejected(reason) = &outcome {
                    tracing::info!(key, ?channel, reason = %reason, "configuration change rejected");
                }
                return outcome;
            }
        };
        let (index, result) = match planned {
            Planned::Value(i, canonical) => (i, self.commit(i, canonical)),
            Planned::Secret(i, secret) => (i, self.commit_secret(secret)),
        };
        let spec = &REGISTRY[index];
        match result {
            Ok(()) => {
                if spec.is_secret() {
                    tracing::info!(key, ?channel, "configuration key changed (value withheld)");
                } else {
                    tracing::info!(key = spec.name, value = %self.values[index], ?channel, "configuration key changed");
                }
                outcome_for(spec)
            }
            Err(e) => {
                tracing::warn!(key, ?channel, error = %e, "configuration change not stored");
                ChangeOutcome::Rejected(e.to_string())
            }
        }
    }

    /// What [`Self::change`] would answer, without changing or writing anything (provisioning
    /// dry runs, form validation). A write failure cannot be predicted and is not reported.
    pub fn check_change(&self, key: &str, value: &str, channel: Channel) -> ChangeOutcome {
        match self.plan(key, value, channel) {
            Ok(Planned::Value(i, _) | Planned::Secret(i, _)) => outcome_for(&REGISTRY[i]),
            Err(outcome) => outcome,
        }
    }

    /// Every rule of a change, applied to the current values: the one place that decides.
    fn plan(
        &self,
        key: &str,
        value: &str,
        channel: Channel,
    ) -> std::result::Result<Planned, ChangeOutcome> {
        let Some(i) = index_of(key) else {
            return Err(ChangeOutcome::NotSupported);
        };
        let spec = &REGISTRY[i];
        if !visible(spec, channel) {
            return Err(ChangeOutcome::NotSupported);
        }
        let name = spec.name;
        let reject = |reason: String| ChangeOutcome::Rejected(format!("{name}: {reason}"));
        if spec.access == Access::ReadOnly {
            return Err(reject("read-only".to_string()));
        }
        if spec.name == UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT && self.cable_locked() {
            return Err(reject(format!(
                "read-only while {LOCK_CABLE_PERMANENTLY} is true"
            )));
        }
        check_value_length(value).map_err(reject)?;
        match spec.rule {
            Rule::AuthorizationKey => {
                if value.is_empty() && channel == Channel::Service {
                    let profile = self.security_profile();
                    if profile != 0 {
                        return Err(reject(format!(
                            "cannot be removed while {SECURITY_PROFILE} is {profile}"
                        )));
                    }
                    return Ok(Planned::Secret(i, None));
                }
                check_authorization_key(value).map_err(reject)?;
                Ok(Planned::Secret(i, Some(Secret::new(value))))
            }
            Rule::SecurityProfile => {
                let canonical = self.validate(spec, value).map_err(reject)?;
                let new: i64 = canonical.parse().unwrap_or(0);
                let current = i64::from(self.security_profile());
                if channel == Channel::Ocpp && new <= current {
                    return Err(reject(format!(
                        "can only be raised over OCPP (current {current}, requested {new})"
                    )));
                }
                if new >= 1 && self.authorization_key.is_none() {
                    return Err(reject(format!(
                        "profile {new} needs an {AUTHORIZATION_KEY}; set one first"
                    )));
                }
                Ok(Planned::Value(i, canonical))
            }
            _ => {
                let canonical = self.validate(spec, value).map_err(reject)?;
                Ok(Planned::Value(i, canonical))
            }
        }
    }

    /// Sets a key bypassing access and channel rules (boot-time values, the interval from
    /// BootNotification.conf, emulator settings). The value must still be valid for the key.
    pub fn set_internal(&mut self, key: &str, value: &str) -> Result<()> {
        let i = index_of(key).ok_or_else(|| Error::UnknownKey(key.to_string()))?;
        let spec = &REGISTRY[i];
        if spec.is_secret() {
            check_authorization_key(value).map_err(|reason| Error::Invalid {
                key: key.to_string(),
                reason,
            })?;
            return self.commit_secret(Some(Secret::new(value)));
        }
        let canonical = self
            .validate(spec, value)
            .map_err(|reason| Error::Invalid {
                key: key.to_string(),
                reason,
            })?;
        self.commit(i, canonical)
    }

    /// Falls back to the previous SecurityProfile after a failed reconnect with the new one
    /// (whitepaper A05.FR.08). Bypasses the only-upward rule.
    pub fn revert_security_profile(&mut self, old: u8) -> Result<()> {
        let i = Key::SecurityProfile as usize;
        let canonical = self
            .validate(&REGISTRY[i], &old.to_string())
            .map_err(|reason| Error::Invalid {
                key: SECURITY_PROFILE.to_string(),
                reason,
            })?;
        tracing::warn!(profile = old, "security profile reverted");
        self.commit(i, canonical)
    }
}

/// A validated change, ready to be stored.
enum Planned {
    Value(usize, String),
    Secret(usize, Option<Secret>),
}

fn outcome_for(spec: &KeySpec) -> ChangeOutcome {
    if spec.reboot_required {
        ChangeOutcome::RebootRequired
    } else {
        ChangeOutcome::Accepted
    }
}
