//! Smart charging on the actor: the installed charging profiles (SetChargingProfile,
//! ClearChargingProfile, GetCompositeSchedule, the TxProfile of a RemoteStartTransaction), the
//! current offered to the EV (the hardware maximum limited by the composite schedule), and when
//! to look at the limit again. The schedule arithmetic lives in
//! [`crate::stack::smart_charging`].

use std::path::Path;
use tokio::time::Instant;

use super::actor::{ChargePoint, secs};
use crate::stack::config::IntKey;
use crate::stack::messages::{self, ChargingProfile, Decimal1};
use crate::stack::smart_charging::{
    ActiveTransaction, ChargingProfileStore, Limits, SetContext, TxContext,
};

/// Maximum current the charger's hardware can offer, per phase.
const HARDWARE_MAX_AMPS: f64 = 32.0;

/// The connector charging profiles apply to.
const SOCKET: u32 = 1;

#[derive(Debug)]
pub(super) struct ChargingProfiles {
    store: ChargingProfileStore,
    /// When the charging limit must be looked at again (next schedule period boundary).
    pub check_at: Option<Instant>,
}

impl ChargingProfiles {
    pub fn open(dir: &Path) -> ChargingProfiles {
        ChargingProfiles {
            store: ChargingProfileStore::open_or_empty(dir),
            check_at: None,
        }
    }
}

impl ChargePoint {
    /// Transaction context for smart charging (Relative profiles start with the transaction).
    fn smart_tx(&self) -> Option<TxContext> {
        self.transactions.active.as_ref().map(|t| TxContext {
            started: t.started_at,
        })
    }

    fn smart_context(&self) -> SetContext {
        SetContext {
            limits: Limits {
                max_stack_level: self
                    .config
                    .int(IntKey::CHARGE_PROFILE_MAX_STACK_LEVEL)
                    .max(0) as u32,
                max_periods: self
                    .config
                    .int(IntKey::CHARGING_SCHEDULE_MAX_PERIODS)
                    .max(0) as usize,
                max_profiles: self
                    .config
                    .int(IntKey::MAX_CHARGING_PROFILES_INSTALLED)
                    .max(0) as usize,
            },
            transaction: self
                .transactions
                .active
                .as_ref()
                .map(|t| ActiveTransaction {
                    connector_id: SOCKET,
                    transaction_id: t.transaction_id,
                    started: t.started_at,
                }),
            now: self.now(),
        }
    }

    /// The current the EV may draw now: the hardware maximum, limited by the composite
    /// charging schedule; 0 without a running (authorized) transaction.
    fn offered_limit(&self) -> f64 {
        match &self.transactions.active {
            Some(tx) if !tx.deauthorized => {
                let limit = self
                    .charging_profiles
                    .store
                    .limit_at(SOCKET, self.now(), self.smart_tx())
                    .map(|(amps, _phases)| amps);
                limit.map_or(HARDWARE_MAX_AMPS, |l| l.clamp(0.0, HARDWARE_MAX_AMPS))
            }
            _ => 0.0,
        }
    }

    pub fn apply_offered_current(&mut self) {
        let amps = self.offered_limit();
        let before = self.hw.meter().offered_a;
        self.hw.set_offered_current(amps);
        if (before - amps).abs() > f64::EPSILON {
            self.log.info(
                "smart",
                format!("offered current {before:.1} A -> {amps:.1} A"),
            );
        }
        // Look again at the next period boundary of the schedule (at most an hour ahead).
        self.charging_profiles.check_at = None;
        if self.transactions.active.is_some() {
            let now = self.now();
            let store = &self.charging_profiles.store;
            if let Ok(c) = store.composite(SOCKET, now, 3600, self.smart_tx(), now) {
                if let Some(next) = c.periods.iter().map(|p| p.start_period).find(|s| *s > 0) {
                    self.charging_profiles.check_at = Some(Instant::now() + secs(next.into()));
                } else if c.is_limited() || !store.is_empty() {
                    self.charging_profiles.check_at = Some(Instant::now() + secs(3600));
                }
            }
        }
        self.refresh_status();
    }

    /// The transaction ended: no current, and its TxProfiles are gone.
    pub fn end_charging(&mut self) {
        self.hw.set_offered_current(0.0);
        self.charging_profiles.check_at = None;
        if let Err(e) = self.charging_profiles.store.clear_tx_profiles(SOCKET) {
            self.log
                .error("smart", format!("cannot clear the TxProfile: {e}"));
        }
    }

    /// Whether the chargingProfile of a RemoteStartTransaction could become the TxProfile of
    /// the transaction it starts: a TxProfile that SetChargingProfile would accept during that
    /// transaction (only A, startSchedule on recurring schedules, the configured limits, no
    /// transactionId of its own since the transaction has none yet).
    pub fn check_remote_start_profile(&self, profile: &ChargingProfile) -> Result<(), String> {
        if profile.charging_profile_purpose != messages::ChargingProfilePurposeType::TxProfile {
            return Err(format!(
                "profile {}: chargingProfilePurpose {}, a RemoteStartTransaction carries a TxProfile",
                profile.charging_profile_id, profile.charging_profile_purpose
            ));
        }
        let now = self.now();
        let ctx = SetContext {
            transaction: Some(ActiveTransaction {
                connector_id: SOCKET,
                transaction_id: None,
                started: now,
            }),
            ..self.smart_context()
        };
        self.charging_profiles
            .store
            .check(SOCKET, profile, &ctx)
            .map_err(|e| e.to_string())
    }

    /// The chargingProfile of a RemoteStartTransaction becomes the transaction's TxProfile.
    pub fn install_remote_start_profile(&mut self, profile: ChargingProfile) {
        let ctx = self.smart_context();
        match self.charging_profiles.store.set(SOCKET, profile, &ctx) {
            Ok(()) => self
                .log
                .info("smart", "TxProfile from RemoteStartTransaction installed"),
            Err(e) => self.log.warn(
                "smart",
                format!("TxProfile from RemoteStartTransaction refused: {e}"),
            ),
        }
    }

    pub fn set_charging_profile(
        &mut self,
        req: messages::SetChargingProfileRequest,
    ) -> messages::SetChargingProfileResponse {
        let ctx = self.smart_context();
        let resp = self.charging_profiles.store.handle_set(&req, &ctx);
        self.log.info(
            "smart",
            format!(
                "SetChargingProfile {} on connector {}: {}",
                req.cs_charging_profiles.charging_profile_id, req.connector_id, resp.status
            ),
        );
        self.apply_offered_current();
        resp
    }

    pub fn clear_charging_profile(
        &mut self,
        req: messages::ClearChargingProfileRequest,
    ) -> messages::ClearChargingProfileResponse {
        let resp = self.charging_profiles.store.handle_clear(&req);
        self.apply_offered_current();
        resp
    }

    pub fn composite_schedule(
        &mut self,
        req: messages::GetCompositeScheduleRequest,
    ) -> messages::GetCompositeScheduleResponse {
        let unlimited =
            Decimal1::new(HARDWARE_MAX_AMPS).unwrap_or_else(|_| Decimal1::from_tenths(320));
        self.charging_profiles
            .store
            .handle_composite(&req, self.smart_tx(), self.now(), unlimited)
    }
}
