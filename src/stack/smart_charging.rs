//! Smart Charging (OCPP 1.6 §3.13, §5.16 SetChargingProfile, §5.5 ClearChargingProfile, §5.7
//! GetCompositeSchedule): the installed charging profiles, persisted in the state directory, and
//! the composite schedule that decides the current offered to the EV.
//!
//! Charger limitations (release notes, Smart Charging profile):
//! - only `A` is allowed as chargingRateUnit: a profile in `W` is Rejected, and so is a
//!   GetCompositeSchedule asking for `W`. Converting amperes to watts would need a supply voltage
//!   and a phase count per period that the charger would have to assume, so it answers Rejected
//!   rather than report numbers it does not control (ChargingScheduleAllowedChargingRateUnit is
//!   `Current`, OCPP 1.6 errata §3.88);
//! - startSchedule is required on Recurring profiles;
//! - ConnectorSwitch3to1PhaseSupported is not a configuration key; numberPhases (1 to 3) is
//!   accepted and carried into the composite schedule and [`ChargingProfileStore::limit_at`].
//!
//! How the composite is computed (§3.13.2 "Stacking charging profiles", §3.13.3 "Combining
//! charging profile purposes"): at each moment the TxProfile with the highest stackLevel that is
//! valid and has a period running at that moment applies; without one, the TxDefaultProfile the
//! same way (one installed on connector 0 applies to every connector; at equal stackLevel the one
//! on the connector wins). The result is then capped by the valid ChargePointMaxProfile with the
//! highest stackLevel. The window is cut at every moment any profile can change (validFrom,
//! validTo, every period start, every schedule end, every recurrence), each piece is evaluated,
//! and adjacent pieces with the same limit, phases and minimum rate are merged.
//!
//! Schedule anchors: Absolute starts at startSchedule (or, when absent, validFrom, else the moment
//! the profile was installed); Recurring repeats every 24 h (Daily) or 7 days (Weekly) counted from
//! startSchedule (OCPP 1.6 errata §3.79) and applies from startSchedule on; Relative starts with
//! the transaction, or, with no transaction, at `now` (the schedule a transaction starting now
//! would get). A schedule with a duration stops applying at its end, letting a lower stack level
//! (or nothing) apply; a profile stops applying exactly at validTo.
//!
//! The charger has one connector; the composite for connector 0 (the whole charge point) is the
//! composite of that connector.
//!
//! Files: this one keeps the installed profiles and answers SetChargingProfile and
//! ClearChargingProfile; `validate.rs` checks a profile against the charger's limits;
//! `composite.rs` computes the composite schedule and the limit offered now.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::messages::{
    ChargingProfile, ChargingProfileKindType, ChargingProfilePurposeType, ChargingProfileStatus,
    ChargingRateUnitType, ClearChargingProfileRequest, ClearChargingProfileResponse,
    ClearChargingProfileStatus, Decimal1, SetChargingProfileRequest, SetChargingProfileResponse,
    Timestamp,
};
use crate::storage;

/// File in the state directory holding the installed profiles.
pub const FILE_NAME: &str = "charging_profiles.json";
/// Connectors of the charger (ids 1..=CONNECTORS; 0 is the charge point as a whole).
pub const CONNECTORS: u32 = 1;
/// Longest composite computed, in seconds (366 days). A longer request is answered for this long
/// and the schedule's `duration` says so; it bounds the work a single request can cause.
pub const MAX_COMPOSITE_S: u32 = 366 * 24 * 3600;
/// Phases assumed where a period does not say (OCPP 1.6 ChargingSchedulePeriod: default 3).
pub const DEFAULT_PHASES: u32 = 3;

const DAY_S: i64 = 24 * 3600;
const WEEK_S: i64 = 7 * DAY_S;

/// Limits from configuration (ChargeProfileMaxStackLevel, ChargingScheduleMaxPeriods,
/// MaxChargingProfilesInstalled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_stack_level: u32,
    pub max_periods: usize,
    pub max_profiles: usize,
}

impl Default for Limits {
    /// The configuration defaults: stack levels 0..=8, 24 periods, 10 profiles.
    fn default() -> Self {
        Limits {
            max_stack_level: 8,
            max_periods: 24,
            max_profiles: 10,
        }
    }
}

/// The transaction running on a connector, as SetChargingProfile needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveTransaction {
    pub connector_id: u32,
    /// The id from StartTransaction.conf (as the charge point core keeps it); None while it is
    /// not known yet, when a TxProfile naming a transactionId is rejected.
    pub transaction_id: Option<i64>,
    pub started: DateTime<Utc>,
}

/// What SetChargingProfile checks a profile against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetContext {
    pub limits: Limits,
    /// The running transaction, if any (the charger runs at most one).
    pub transaction: Option<ActiveTransaction>,
    pub now: DateTime<Utc>,
}

/// The transaction a composite is computed for (Relative profiles start with it; TxProfiles
/// apply only while there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxContext {
    pub started: DateTime<Utc>,
}

impl From<ActiveTransaction> for TxContext {
    fn from(tx: ActiveTransaction) -> Self {
        TxContext {
            started: tx.started,
        }
    }
}

/// Why a SetChargingProfile was rejected. Nothing was installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("connector {connector_id} does not exist (0 or 1)")]
    UnknownConnector { connector_id: u32 },
    #[error("profile {profile_id}: chargingRateUnit {unit} is not supported, only A")]
    UnitNotSupported {
        profile_id: i32,
        unit: ChargingRateUnitType,
    },
    #[error("profile {profile_id}: a Recurring profile needs startSchedule")]
    RecurringWithoutStartSchedule { profile_id: i32 },
    #[error("profile {profile_id}: a Recurring profile needs recurrencyKind")]
    RecurringWithoutKind { profile_id: i32 },
    #[error("profile {profile_id}: ChargePointMaxProfile only on connector 0, not {connector_id}")]
    MaxProfileNotOnConnectorZero { profile_id: i32, connector_id: u32 },
    #[error("profile {profile_id}: a TxProfile needs a connector above 0")]
    TxProfileOnConnectorZero { profile_id: i32 },
    #[error("profile {profile_id}: TxProfile but no transaction on connector {connector_id}")]
    NoTransaction { profile_id: i32, connector_id: u32 },
    #[error(
        "profile {profile_id}: transactionId {requested} does not match the running transaction ({running})"
    )]
    TransactionMismatch {
        profile_id: i32,
        requested: i32,
        running: String,
    },
    #[error(
        "profile {profile_id}: stackLevel {stack_level} above ChargeProfileMaxStackLevel {max}"
    )]
    StackLevelTooHigh {
        profile_id: i32,
        stack_level: u32,
        max: u32,
    },
    #[error("profile {profile_id}: {count} periods, more than ChargingScheduleMaxPeriods {max}")]
    TooManyPeriods {
        profile_id: i32,
        count: usize,
        max: usize,
    },
    #[error(
        "profile {profile_id}: would be profile {count}, more than MaxChargingProfilesInstalled {max}"
    )]
    TooManyProfiles {
        profile_id: i32,
        count: usize,
        max: usize,
    },
    #[error("profile {profile_id}: the first period starts at {start_period} s, not 0")]
    FirstPeriodNotZero { profile_id: i32, start_period: u32 },
    #[error(
        "profile {profile_id}: period {index} starts at {start_period} s, not after the previous one ({previous} s)"
    )]
    PeriodsNotIncreasing {
        profile_id: i32,
        index: usize,
        start_period: u32,
        previous: u32,
    },
    #[error("profile {profile_id}: period {index} has a negative limit {limit}")]
    NegativeLimit {
        profile_id: i32,
        index: usize,
        limit: Decimal1,
    },
    #[error("profile {profile_id}: period {index} has numberPhases {phases}, expected 1 to 3")]
    BadNumberPhases {
        profile_id: i32,
        index: usize,
        phases: u32,
    },
    #[error("profile {profile_id}: negative minChargingRate {rate}")]
    NegativeMinChargingRate { profile_id: i32, rate: Decimal1 },
    #[error("profile {profile_id}: validFrom {valid_from} is not before validTo {valid_to}")]
    EmptyValidity {
        profile_id: i32,
        valid_from: Timestamp,
        valid_to: Timestamp,
    },
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl Rejection {
    /// The SetChargingProfile.conf status: the charger supports Smart Charging, so every refusal
    /// is `Rejected`.
    pub fn status(&self) -> ChargingProfileStatus {
        ChargingProfileStatus::Rejected
    }
}

/// The profiles file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line} column {column}: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// A GetCompositeSchedule the charger cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompositeError {
    #[error("connector {connector_id} does not exist (0 or 1)")]
    UnknownConnector { connector_id: u32 },
    #[error("chargingRateUnit {unit} is not supported, only A")]
    UnitNotSupported { unit: ChargingRateUnitType },
}

/// A profile as installed: the connector it was set on, when, and the profile as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstalledProfile {
    pub connector_id: u32,
    pub installed_at: DateTime<Utc>,
    pub profile: ChargingProfile,
}

impl InstalledProfile {
    fn purpose(&self) -> ChargingProfilePurposeType {
        self.profile.charging_profile_purpose
    }

    fn id(&self) -> i32 {
        self.profile.charging_profile_id
    }
}

/// The installed charging profiles, persisted in the state directory.
#[derive(Debug)]
pub struct ChargingProfileStore {
    path: PathBuf,
    profiles: Vec<InstalledProfile>,
}

impl ChargingProfileStore {
    /// Opens the profiles kept in `state_dir` (none when there is no file yet).
    pub fn open(state_dir: &Path) -> Result<ChargingProfileStore, StoreError> {
        let path = state_dir.join(FILE_NAME);
        let bytes = storage::read_optional(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let profiles = match bytes {
            None => Vec::new(),
            Some(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?,
        };
        Ok(ChargingProfileStore { path, profiles })
    }

    /// Like [`ChargingProfileStore::open`], but an unreadable file gives no profiles (the problem is
    /// logged): the charger then charges without limits until the CSMS sets profiles again.
    pub fn open_or_empty(state_dir: &Path) -> ChargingProfileStore {
        match ChargingProfileStore::open(state_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "charging profiles unreadable, starting without");
                ChargingProfileStore {
                    path: state_dir.join(FILE_NAME),
                    profiles: Vec::new(),
                }
            }
        }
    }

    /// The installed profiles, in installation order.
    pub fn profiles(&self) -> &[InstalledProfile] {
        &self.profiles
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Installs `profile` on `connector_id` (SetChargingProfile). A profile with the same
    /// chargingProfileId, or the same purpose and stackLevel on the same connector, is replaced
    /// (OCPP 1.6 §5.16). Profiles whose validTo has passed can never apply again; they are
    /// dropped here so they do not count against MaxChargingProfilesInstalled. On `Err` nothing
    /// changed.
    pub fn set(
        &mut self,
        connector_id: u32,
        profile: ChargingProfile,
        ctx: &SetContext,
    ) -> Result<(), Rejection> {
        let mut next = self.kept_beside(connector_id, &profile, ctx)?;
        let profile_id = profile.charging_profile_id;
        next.push(InstalledProfile {
            connector_id,
            installed_at: ctx.now,
            profile,
        });
        self.commit(next)?;
        tracing::info!(profile_id, connector_id, "charging profile installed");
        Ok(())
    }

    /// Whether [`ChargingProfileStore::set`] would install `profile` in `ctx`, without installing it
    /// (a RemoteStartTransaction's TxProfile is checked before the request is answered).
    pub fn check(
        &self,
        connector_id: u32,
        profile: &ChargingProfile,
        ctx: &SetContext,
    ) -> Result<(), Rejection> {
        self.kept_beside(connector_id, profile, ctx).map(|_| ())
    }

    /// The profiles that stay installed beside `profile` once it is set; `Err` when the
    /// profile is refused.
    fn kept_beside(
        &self,
        connector_id: u32,
        profile: &ChargingProfile,
        ctx: &SetContext,
    ) -> Result<Vec<InstalledProfile>, Rejection> {
        validate(connector_id, profile, ctx)?;
        let profile_id = profile.charging_profile_id;
        let kept: Vec<InstalledProfile> = self
            .profiles
            .iter()
            .filter(|p| {
                p.profile.valid_to.is_none_or(|v| v.as_datetime() > ctx.now)
                    && !(p.id() == profile_id
                        || (p.connector_id == connector_id
                            && p.purpose() == profile.charging_profile_purpose
                            && p.profile.stack_level == profile.stack_level))
            })
            .cloned()
            .collect();
        if kept.len() + 1 > ctx.limits.max_profiles {
            return Err(Rejection::TooManyProfiles {
                profile_id,
                count: kept.len() + 1,
                max: ctx.limits.max_profiles,
            });
        }
        Ok(kept)
    }

    /// SetChargingProfile.conf for a request (a rejection is logged with its reason).
    pub fn handle_set(
        &mut self,
        req: &SetChargingProfileRequest,
        ctx: &SetContext,
    ) -> SetChargingProfileResponse {
        let status = match self.set(req.connector_id, req.cs_charging_profiles.clone(), ctx) {
            Ok(()) => ChargingProfileStatus::Accepted,
            Err(e) => {
                tracing::warn!(reason = %e, "SetChargingProfile rejected");
                e.status()
            }
        };
        SetChargingProfileResponse { status }
    }

    /// ClearChargingProfile: with `id`, the profile with that id (the other criteria are then
    /// ignored, OCPP 1.6 §5.5); otherwise every profile matching all given criteria (none given
    /// clears all). Connector 0 matches the profiles installed on connector 0. `Ok(false)` when
    /// nothing matched (status Unknown). On `Err` nothing changed.
    pub fn clear(
        &mut self,
        id: Option<i32>,
        connector_id: Option<u32>,
        purpose: Option<ChargingProfilePurposeType>,
        stack_level: Option<u32>,
    ) -> Result<bool, StoreError> {
        let matches = |p: &InstalledProfile| match id {
            Some(id) => p.id() == id,
            None => {
                connector_id.is_none_or(|c| p.connector_id == c)
                    && purpose.is_none_or(|u| p.purpose() == u)
                    && stack_level.is_none_or(|s| p.profile.stack_level == s)
            }
        };
        self.remove_where(matches)
    }

    /// ClearChargingProfile.conf for a request. A failed write leaves the profiles installed and
    /// answers Unknown (logged).
    pub fn handle_clear(
        &mut self,
        req: &ClearChargingProfileRequest,
    ) -> ClearChargingProfileResponse {
        let status = match self.clear(
            req.id,
            req.connector_id,
            req.charging_profile_purpose,
            req.stack_level,
        ) {
            Ok(true) => ClearChargingProfileStatus::Accepted,
            Ok(false) => ClearChargingProfileStatus::Unknown,
            Err(e) => {
                tracing::warn!(error = %e, "ClearChargingProfile could not be saved");
                ClearChargingProfileStatus::Unknown
            }
        };
        ClearChargingProfileResponse { status }
    }

    /// Removes the TxProfiles of `connector_id` (at the end of its transaction). Returns whether
    /// any was removed.
    pub fn clear_tx_profiles(&mut self, connector_id: u32) -> Result<bool, StoreError> {
        self.remove_where(|p| {
            p.connector_id == connector_id && p.purpose() == ChargingProfilePurposeType::TxProfile
        })
    }

    fn remove_where(
        &mut self,
        pred: impl Fn(&InstalledProfile) -> bool,
    ) -> Result<bool, StoreError> {
        let next: Vec<InstalledProfile> =
            self.profiles.iter().filter(|p| !pred(p)).cloned().collect();
        if next.len() == self.profiles.len() {
            return Ok(false);
        }
        self.commit(next)?;
        Ok(true)
    }

    fn commit(&mut self, next: Vec<InstalledProfile>) -> Result<(), StoreError> {
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| io(std::io::Error::other(e)))?;
        storage::write_doc("charging_profiles", &self.path, &bytes).map_err(io)?;
        self.profiles = next;
        Ok(())
    }
}

mod composite;
mod validate;

pub use composite::{CompositePeriod, CompositeSchedule};
use validate::validate;

#[cfg(test)]
mod tests;
