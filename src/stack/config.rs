//! The charger's configuration keys: one registry of every key, typed values, validation and
//! atomic persistence.
//!
//! Both the OCPP `ChangeConfiguration` handler and the serial service port's `config set` call
//! [`Configuration::change`]; the [`Channel`] argument is the only difference between them. Key
//! names from a request are found without regard to case (OCPP's CiString50) and answered with
//! the registry's spelling. The program reads values through typed handles generated from the
//! registry (`config.int(IntKey::MESSAGE_TIMEOUT)`), so a misspelt key does not compile.
//!
//! Files: `registry.rs` declares every key once; `rules.rs` validates a value for its key;
//! `change.rs` decides a change request (access, channel, security rules); `store.rs` loads and
//! writes the files; this one holds the values and reads them.
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
//! [`crate::storage::write_atomic`]. `<state_dir>/secrets.json`: `{"version": 1, "AuthorizationKey":
//! "..."}` written with [`crate::storage::write_atomic_private`]. A value for a key this build does not
//! know is ignored; a key missing from the file gets its default; a stored value that fails
//! validation is an [`Error`] naming the file and key. A failed write leaves memory unchanged.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::stack::secret::{REDACTED, Secret};

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

mod change;
mod registry;
mod rules;
mod store;

pub use registry::*;
use registry::{REGISTRY, index_of};
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

fn visible(spec: &KeySpec, channel: Channel) -> bool {
    channel == Channel::Service || spec.visibility == Visibility::Ocpp
}

#[cfg(test)]
mod tests;
