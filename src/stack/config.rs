//! The charger's configuration keys: one registry of every key, typed values, validation and
//! atomic persistence.
//!
//! Both the OCPP `ChangeConfiguration` handler and the serial service port's `config set` call
//! [`Configuration::change`]; the [`Channel`] argument is the only difference between them. Key
//! names from a request are found without regard to case (OCPP's CiString50) and answered with
//! the registry's spelling. The program reads values through typed handles generated from the
//! registry (`config.int(IntKey::MESSAGE_TIMEOUT)`), so a misspelt key does not compile.
//!
//! Files: `registry.rs` declares every key once, `rules.rs` checks values with rules of their
//! own, this file holds the values, their persistence and the change rules.
//!
//! # What is in the registry
//!
//! Every OCPP 1.6 Core key (with the errata v4.0 additions `MessageTimeout` and
//! `StopTransactionMaxMeterValues`), the optional Core keys the release notes list as supported,
//! the keys of the Firmware Management, Local Auth List Management, Reservation and Smart
//! Charging profiles, the Security whitepaper keys `SecurityProfile` and `AuthorizationKey`, the
//! vendor keys `FreeCharging`, `FreeChargingIdTag` and `LockCablePermanently`, and three keys
//! only the service port sees (`CsmsUrl`, `ChargePointId`, `BasicAuthPassword`). Keys the
//! release notes name as not supported (`BlinkRepeat`, `MaxEnergyOnInvalidId`,
//! `ConnectorSwitch3to1PhaseSupported`, the OCMF signature keys, the certificate keys,
//! `CpoName`) are absent, so they answer `NotSupported` / `unknownKey`.
//!
//! # Defaults
//!
//! Each [`KeySpec::default`] is the value at first boot. The choices worth knowing:
//! HeartbeatInterval 86400 (BootNotification.conf's interval replaces it at once),
//! MeterValueSampleInterval 60, ClockAlignedDataInterval 0 (off), MessageTimeout 30,
//! ConnectionTimeOut 30, TransactionMessageAttempts 3, TransactionMessageRetryInterval 60,
//! WebSocketPingInterval 30, ResetRetries 2, LightIntensity 100, MinimumStatusDuration 0,
//! AuthorizeRemoteTxRequests false, LocalAuthorizeOffline true, LocalPreAuthorize false,
//! AuthorizationCacheEnabled true, LocalAuthListEnabled true, MeterValues*Data
//! `Energy.Active.Import.Register`, StopTxn*Data empty (no meter values in StopTransaction),
//! NumberOfConnectors 1, ConnectorPhaseRotation `0.RST,1.RST`, every *DataMaxLength 6 (the
//! number of supported measurands), ConnectorPhaseRotationMaxLength 2, GetConfigurationMaxKeys
//! 64, StopTransactionMaxMeterValues 100, ChargeProfileMaxStackLevel 8,
//! ChargingScheduleMaxPeriods 24, MaxChargingProfilesInstalled 10,
//! ReserveConnectorZeroSupported false (one connector: reserving connector 0 adds nothing),
//! FreeChargingIdTag `FreeCharging`, ChargePointId `ZAP000001`, CsmsUrl empty (not configured),
//! BasicAuthPassword `bytes`, SecurityProfile 0 with no AuthorizationKey.
//!
//! Integer ranges beyond the OCPP minimum: MinimumStatusDuration and WebSocketPingInterval
//! 0..=86400, ConnectionTimeOut and MessageTimeout 1..=3600, TransactionMessageRetryInterval
//! 1..=86400, ResetRetries and TransactionMessageAttempts 0..=100; HeartbeatInterval,
//! MeterValueSampleInterval and ClockAlignedDataInterval 0..=4294967 (release notes: one gives
//! 0 to 4294967 for sampled meter values and heartbeats, the other 0 to UINT32_T for every meter
//! value interval; the emulated charger keeps to the lower bound for all three).
//!
//! # Reboot-required keys
//!
//! The stack reads every OCPP key when it needs it (the heartbeat timer, the meter sampler and
//! the authorization path consult the current value), so no OCPP key needs a reboot, including
//! `LocalAuthListEnabled` (the local list is kept whether enabled or not; the flag only decides
//! whether it is consulted). `SecurityProfile` is applied by reconnecting, not rebooting.
//! The three service-port keys `CsmsUrl`, `ChargePointId` and `BasicAuthPassword` define the
//! connection itself: the charger reads them when it boots, so changing them answers
//! `RebootRequired` and the installer reboots the charger (`chargectl reboot`).
//!
//! # Read-only keys
//!
//! Read-only keys are facts of this firmware build (list sizes, supported profiles, number of
//! connectors) and are not stored, so an upgraded build never runs with the limits of an older
//! one. A read-only key changed with [`Configuration::set_internal`] (an emulated charger with
//! two connectors) is stored under `overrides` and survives a restart.
//!
//! # Security rules
//!
//! `SecurityProfile` accepts 0 or 1 (the release notes). Over OCPP it only goes up (whitepaper
//! A05.FR.01) and 1 needs an `AuthorizationKey` (A05.FR.02). Over the service port an installer
//! with the charger in hand may also lower it (moving a charger to another CSMS); 1 still needs
//! a key. `AuthorizationKey` is write-only: 16 to 20 bytes written as 32 to 40 hex digits; it
//! never appears in [`Entry`], `Debug`, errors or logs, and lives in its own file with mode
//! 0600. Over the service port an empty value removes the key, allowed only at profile 0.
//!
//! # Persistence
//!
//! `<state_dir>/config.json`: `{"version": 1, "values": {"Key": "value", ...}, "overrides":
//! {...}}` (every writable key; read-only keys only where set_internal changed them) written with
//! [`storage::write_atomic`]. `<state_dir>/secrets.json`: `{"version": 1, "AuthorizationKey":
//! "..."}` written with [`storage::write_atomic_private`]. A value for a key this build does not
//! know is ignored; a key missing from the file gets its default; a stored value that fails
//! validation is an [`Error`] naming the file and key. A failed write leaves memory unchanged.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::stack::secret::{REDACTED, Secret};
use crate::storage;

/// Version of `config.json` and `secrets.json` this build writes and reads.
pub const FILE_VERSION: u32 = 1;
/// File name of the configuration document inside the state directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the secrets document (mode 0600) inside the state directory.
pub const SECRETS_FILE: &str = "secrets.json";

/// The measurands this charger can sample (release notes, OCPP Core limitations).
pub const SUPPORTED_MEASURANDS: [&str; 6] = [
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Import.Register",
    "Energy.Active.Import.Interval",
    "Temperature",
    "Voltage",
];

/// Phase rotations allowed in `ConnectorPhaseRotation` (OCPP 1.6 §9.1.7).
pub const PHASE_ROTATIONS: [&str; 8] = [
    "NotApplicable",
    "Unknown",
    "RST",
    "RTS",
    "SRT",
    "STR",
    "TRS",
    "TSR",
];

use keys::*;

/// Errors of the configuration store. None of them ever carries the AuthorizationKey.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid configuration document: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("{} has version {found}; this build reads version {FILE_VERSION}", .path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("{}: key {key}: {reason}", .path.display())]
    StoredValue {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("unknown configuration key {0}")]
    UnknownKey(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

mod registry;
mod rules;

pub use registry::*;
use registry::{REGISTRY, Rule, index_of};
use rules::*;
pub use rules::{check_value_length, check_ws_url};

/// Answer to a change request, as ChangeConfiguration.conf reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    Accepted,
    RebootRequired,
    /// Why the change was refused; never contains a secret value.
    Rejected(String),
    NotSupported,
}

/// One key as GetConfiguration (or `config get`) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub key: String,
    pub readonly: bool,
    /// `None` for write-only keys.
    pub value: Option<String>,
    pub value_type: String,
    pub reboot_required: bool,
    pub write_only: bool,
}

/// The HTTP Basic password derived from AuthorizationKey; prints as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicPassword(Vec<u8>);

impl BasicPassword {
    /// The password bytes, for the one place that builds the Authorization header.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for BasicPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[derive(Serialize, Deserialize)]
struct ConfigFile {
    version: u32,
    /// Every writable key (not AuthorizationKey, which lives in `secrets.json`).
    values: BTreeMap<String, String>,
    /// Read-only keys changed with `set_internal`, only where they differ from the firmware.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    overrides: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    version: u32,
    #[serde(
        rename = "AuthorizationKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    authorization_key: Option<String>,
}

/// The charger's configuration: values of every key, and where they are stored.
#[derive(Clone)]
pub struct Configuration {
    /// Canonical value per registry entry (same index); empty for AuthorizationKey. A value
    /// still at its default borrows the registry's text, so a charger allocates only for the
    /// keys it changed (a fleet holds thousands of configurations).
    values: Box<[Cow<'static, str>]>,
    authorization_key: Option<Secret>,
    state_dir: Option<PathBuf>,
}

impl fmt::Debug for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (spec, value) in REGISTRY.iter().zip(&self.values) {
            if spec.is_secret() {
                let shown = if self.authorization_key.is_some() {
                    REDACTED
                } else {
                    "<unset>"
                };
                map.entry(&spec.name, &shown);
            } else {
                map.entry(&spec.name, value);
            }
        }
        map.entry(&"state_dir", &self.state_dir);
        map.finish()
    }
}

impl Default for Configuration {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl Configuration {
    /// Defaults only, never written anywhere (tests, one-shot tools).
    pub fn in_memory() -> Configuration {
        Configuration {
            values: REGISTRY
                .iter()
                .map(|s| Cow::Borrowed(if s.is_secret() { "" } else { s.default }))
                .collect(),
            authorization_key: None,
            state_dir: None,
        }
    }

    /// Loads `config.json` and `secrets.json` from `state_dir`, or starts from defaults when
    /// they do not exist. Nothing is written until the first change.
    pub fn open(state_dir: &Path) -> Result<Configuration> {
        let mut cfg = Configuration::in_memory();
        let config_path = state_dir.join(CONFIG_FILE);
        if let Some(bytes) = storage::read_optional(&config_path).map_err(|source| Error::Read {
            path: config_path.clone(),
            source,
        })? {
            cfg.load_values(&config_path, &bytes)?;
        }
        let secrets_path = state_dir.join(SECRETS_FILE);
        if let Some(bytes) =
            storage::read_optional(&secrets_path).map_err(|source| Error::Read {
                path: secrets_path.clone(),
                source,
            })?
        {
            cfg.load_secrets(&secrets_path, &bytes)?;
        }
        if cfg.security_profile() >= 1 && cfg.authorization_key.is_none() {
            tracing::warn!(
                profile = cfg.security_profile(),
                "SecurityProfile needs an AuthorizationKey but none is stored"
            );
        }
        cfg.state_dir = Some(state_dir.to_path_buf());
        Ok(cfg)
    }

    fn load_values(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let doc: ConfigFile = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        if doc.version != FILE_VERSION {
            return Err(Error::Version {
                path: path.to_path_buf(),
                found: doc.version,
            });
        }
        // Lists are validated against read-only limits (MaxLength keys, NumberOfConnectors), so
        // the overrides of those are applied first.
        for (map, read_only) in [(&doc.overrides, true), (&doc.values, false)] {
            for (name, value) in map {
                let Some(i) = index_of(name) else {
                    tracing::debug!(key = %name, file = %path.display(), "ignoring stored value of a key this build does not have");
                    continue;
                };
                let spec = &REGISTRY[i];
                if spec.is_secret() || (spec.access == Access::ReadOnly) != read_only {
                    // Read-only keys under "values" were written by an older layout; the
                    // firmware's own value wins.
                    continue;
                }
                let canonical =
                    self.validate(spec, value)
                        .map_err(|reason| Error::StoredValue {
                            path: path.to_path_buf(),
                            key: name.clone(),
                            reason,
                        })?;
                self.values[i] = borrow_default(i, canonical);
            }
        }
        Ok(())
    }

    fn load_secrets(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        // serde_json's messages may quote the offending text, so only its position is reported.
        let doc: SecretsFile = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            problem: format!(
                "malformed or unexpected content at line {} column {}",
                e.line(),
                e.column()
            ),
        })?;
        if doc.version != FILE_VERSION {
            return Err(Error::Version {
                path: path.to_path_buf(),
                found: doc.version,
            });
        }
        if let Some(k) = doc.authorization_key {
            check_authorization_key(&k).map_err(|reason| Error::StoredValue {
                path: path.to_path_buf(),
                key: AUTHORIZATION_KEY.to_string(),
                reason,
            })?;
            self.authorization_key = Some(Secret::new(k));
        }
        Ok(())
    }

    /// GetConfiguration: the named keys (all visible keys in registry order when `keys` is
    /// empty) and the names this channel does not know. Duplicate names are answered once.
    pub fn get(&self, keys: &[String], channel: Channel) -> (Vec<Entry>, Vec<String>) {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        if keys.is_empty() {
            for (i, spec) in REGISTRY.iter().enumerate() {
                if visible(spec, channel) {
                    known.push(self.entry(i));
                }
            }
            return (known, unknown);
        }
        // Names are compared without regard to case, so `heartbeatinterval` and
        // `HeartbeatInterval` are the same key, answered once under its canonical name.
        let mut seen = Vec::new();
        for (n, name) in keys.iter().enumerate() {
            if keys[..n].iter().any(|k| k.eq_ignore_ascii_case(name)) {
                continue;
            }
            match index_of(name) {
                Some(i) if visible(&REGISTRY[i], channel) => {
                    if !seen.contains(&i) {
                        seen.push(i);
                        known.push(self.entry(i));
                    }
                }
                _ => unknown.push(name.clone()),
            }
        }
        (known, unknown)
    }

    fn entry(&self, i: usize) -> Entry {
        let spec = &REGISTRY[i];
        let (readonly, value) = if spec.is_secret() {
            (false, None)
        } else if spec.name == UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT && self.cable_locked() {
            // Release notes / errata v4.0: a fixed-cable charger reports false, read-only.
            (true, Some("false".to_string()))
        } else {
            (
                spec.access == Access::ReadOnly,
                Some(self.values[i].to_string()),
            )
        };
        Entry {
            key: spec.name.to_string(),
            readonly,
            value,
            value_type: spec.value_type.as_str().to_string(),
            reboot_required: spec.reboot_required,
            write_only: spec.access == Access::WriteOnly,
        }
    }

    fn cable_locked(&self) -> bool {
        self.raw(Key::LockCablePermanently) == "true"
    }

    fn raw(&self, key: Key) -> &str {
        &self.values[key as usize]
    }

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

    /// Stores `canonical` at registry index `i`: file first, memory only when the write worked.
    fn commit(&mut self, i: usize, canonical: String) -> Result<()> {
        if self.values[i] == canonical {
            return Ok(());
        }
        if let Some(dir) = &self.state_dir {
            let mut doc = ConfigFile {
                version: FILE_VERSION,
                values: BTreeMap::new(),
                overrides: BTreeMap::new(),
            };
            for (j, (spec, value)) in REGISTRY.iter().zip(self.values.iter()).enumerate() {
                let value: &str = if j == i { &canonical } else { value };
                if spec.is_secret() {
                    continue;
                }
                if spec.access != Access::ReadOnly {
                    doc.values.insert(spec.name.to_string(), value.to_string());
                } else if value != spec.default {
                    doc.overrides
                        .insert(spec.name.to_string(), value.to_string());
                }
            }
            let path = dir.join(CONFIG_FILE);
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Write {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            storage::write_doc("config", &path, &bytes)
                .map_err(|source| Error::Write { path, source })?;
        }
        self.values[i] = borrow_default(i, canonical);
        Ok(())
    }

    fn commit_secret(&mut self, key: Option<Secret>) -> Result<()> {
        if let Some(dir) = &self.state_dir {
            let doc = SecretsFile {
                version: FILE_VERSION,
                authorization_key: key.as_ref().map(|k| k.expose().to_string()),
            };
            let path = dir.join(SECRETS_FILE);
            // Serialising a struct of strings cannot fail; map it anyway, without the content.
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|_| Error::Write {
                path: path.clone(),
                source: std::io::Error::other("cannot encode secrets document"),
            })?;
            storage::write_doc_private("secrets", &path, &bytes)
                .map_err(|source| Error::Write { path, source })?;
        }
        self.authorization_key = key;
        Ok(())
    }

    /// Checks `value` against the key's type and rules; returns the canonical form to store.
    /// The reason never contains the value of a secret key.
    fn validate(&self, spec: &KeySpec, value: &str) -> std::result::Result<String, String> {
        let canonical = match spec.value_type {
            ValueType::Boolean => {
                if value.eq_ignore_ascii_case("true") {
                    "true".to_string()
                } else if value.eq_ignore_ascii_case("false") {
                    "false".to_string()
                } else {
                    return Err(format!("{value:?} is not a boolean (true or false)"));
                }
            }
            ValueType::Integer { min, max } => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not an integer in {min}..={max}"))?;
                if n < min || n > max {
                    return Err(format!("{n} is outside {min}..={max}"));
                }
                n.to_string()
            }
            ValueType::List => {
                let items = split_list(value)?;
                items.join(",")
            }
            ValueType::Text => value.to_string(),
        };
        match spec.rule {
            Rule::Plain | Rule::SecurityProfile => {}
            Rule::OnlyTrue => {
                if canonical != "true" {
                    return Err("only true is accepted".to_string());
                }
            }
            Rule::Measurands { max_length_key } => {
                let items = split_list(&canonical)?;
                for (n, m) in items.iter().enumerate() {
                    if !SUPPORTED_MEASURANDS.contains(m) {
                        return Err(format!(
                            "entry {} {m:?} is not a supported measurand ({})",
                            n + 1,
                            SUPPORTED_MEASURANDS.join(", ")
                        ));
                    }
                    if items[..n].contains(m) {
                        return Err(format!("entry {} {m:?} is listed twice", n + 1));
                    }
                }
                let max = self.int(max_length_key);
                if items.len() as i64 > max {
                    return Err(format!(
                        "{} entries, at most {max} allowed ({})",
                        items.len(),
                        max_length_key.name()
                    ));
                }
            }
            Rule::PhaseRotation => self.check_phase_rotation(&canonical)?,
            Rule::IdToken => {
                if canonical.is_empty() || canonical.chars().count() > 20 {
                    return Err("must be 1 to 20 characters (an OCPP IdToken)".to_string());
                }
            }
            Rule::AuthorizationKey => check_authorization_key(&canonical)?,
            Rule::WebSocketUrl => check_ws_url(&canonical)?,
            Rule::ChargePointId => check_charge_point_id(&canonical)?,
            Rule::OneOf(words) => {
                if !words.contains(&canonical.as_str()) {
                    return Err(format!("{canonical:?} is not one of {}", words.join(", ")));
                }
            }
        }
        Ok(canonical)
    }

    fn check_phase_rotation(&self, value: &str) -> std::result::Result<(), String> {
        let items = split_list(value)?;
        if items.is_empty() {
            return Err("needs at least one <connectorId>.<rotation> entry".to_string());
        }
        let connectors = self.int(IntKey::NUMBER_OF_CONNECTORS);
        let max = self.int(IntKey::CONNECTOR_PHASE_ROTATION_MAX_LENGTH);
        if items.len() as i64 > max {
            return Err(format!(
                "{} entries, at most {max} allowed ({CONNECTOR_PHASE_ROTATION_MAX_LENGTH})",
                items.len()
            ));
        }
        let mut seen = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let entry = n + 1;
            let Some((id, rotation)) = item.split_once('.') else {
                return Err(format!(
                    "entry {entry} {item:?} is not <connectorId>.<rotation>"
                ));
            };
            let id: i64 = id
                .parse()
                .map_err(|_| format!("entry {entry} {item:?}: connector id is not a number"))?;
            if id < 0 || id > connectors {
                return Err(format!(
                    "entry {entry} {item:?}: connector id outside 0..={connectors}"
                ));
            }
            if !PHASE_ROTATIONS.contains(&rotation) {
                return Err(format!(
                    "entry {entry} {item:?}: rotation must be one of {}",
                    PHASE_ROTATIONS.join(", ")
                ));
            }
            if seen.contains(&id) {
                return Err(format!("entry {entry}: connector {id} is listed twice"));
            }
            seen.push(id);
        }
        Ok(())
    }

    /// Value of a boolean key. UnlockConnectorOnEVSideDisconnect reads false while
    /// LockCablePermanently is true.
    pub fn bool(&self, key: BoolKey) -> bool {
        if key == BoolKey::UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT && self.cable_locked() {
            return false;
        }
        self.raw(key.0) == "true"
    }

    /// Value of an integer key (stored values are validated, so they always parse).
    pub fn int(&self, key: IntKey) -> i64 {
        self.raw(key.0).parse().unwrap_or_default()
    }

    /// Entries of a list key (empty for an empty value).
    pub fn list(&self, key: ListKey) -> Vec<String> {
        let raw = self.raw(key.0);
        if raw.is_empty() {
            Vec::new()
        } else {
            raw.split(',').map(str::to_string).collect()
        }
    }

    /// The value of any key as stored text; empty for AuthorizationKey (use
    /// [`Self::authorization_key`]).
    pub fn text(&self, key: impl Into<Key>) -> String {
        self.raw(key.into()).to_string()
    }

    /// The AuthorizationKey as the hex text it was set with.
    pub fn authorization_key(&self) -> Option<Secret> {
        self.authorization_key.clone()
    }

    /// The HTTP Basic password per `BasicAuthPassword`: `bytes` gives the key's decoded bytes
    /// (what the OCPP compliance test expects), `hex` the bytes of its hex text.
    pub fn basic_auth_password(&self) -> Option<BasicPassword> {
        let key = self.authorization_key.as_ref()?;
        if self.raw(Key::BasicAuthPassword) == "hex" {
            return Some(BasicPassword(key.expose().as_bytes().to_vec()));
        }
        // The key was validated as hex when stored; a decode failure cannot happen, but is
        // answered with "no password" rather than a panic.
        hex::decode(key.expose()).ok().map(BasicPassword)
    }

    /// The current SecurityProfile (0 or 1).
    pub fn security_profile(&self) -> u8 {
        u8::try_from(self.int(IntKey::SECURITY_PROFILE)).unwrap_or(0)
    }

    /// The state directory this configuration is stored in, if any.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }
}

/// `canonical` as stored at registry index `i`: the registry's own text when it is the default.
fn borrow_default(i: usize, canonical: String) -> Cow<'static, str> {
    match REGISTRY[i].default {
        d if d == canonical => Cow::Borrowed(d),
        _ => Cow::Owned(canonical),
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

fn visible(spec: &KeySpec, channel: Channel) -> bool {
    channel == Channel::Service || spec.visibility == Visibility::Ocpp
}

#[cfg(test)]
mod tests;
