//! Configuration on the actor: GetConfiguration and ChangeConfiguration from the CSMS, `config
//! get`/`config set` from the service port (the same rules, see [`crate::stack::config`]), and
//! what a changed key sets in motion (timers, reconnects, SecurityProfile fallback).

use super::actor::ChargePoint;
use crate::stack::config::{ChangeOutcome, Channel, IntKey, Key};
use crate::stack::messages::{self, CiString50, CiString500, ConfigurationStatus, KeyValue};
use crate::stack::rpc::{CallError, ErrorCode};
use crate::stack::secret::REDACTED;

impl ChargePoint {
    pub fn get_configuration(
        &mut self,
        req: messages::GetConfigurationRequest,
    ) -> Result<messages::GetConfigurationResponse, CallError> {
        let keys: Vec<String> = req
            .key
            .unwrap_or_default()
            .into_iter()
            .map(CiString50::into_string)
            .collect();
        let max = self.config.int(IntKey::GET_CONFIGURATION_MAX_KEYS).max(1) as usize;
        if keys.len() > max {
            return Err(CallError::new(
                ErrorCode::OccurenceConstraintViolation,
                format!("at most {max} keys per request (GetConfigurationMaxKeys)"),
            ));
        }
        let (entries, unknown) = self.config.get(&keys, Channel::Ocpp);
        let known: Vec<KeyValue> = entries
            .into_iter()
            .map(|e| KeyValue {
                key: CiString50::truncated(&e.key),
                readonly: e.readonly,
                value: e.value.as_deref().map(CiString500::truncated),
            })
            .collect();
        let unknown: Vec<CiString50> = unknown.iter().map(|k| CiString50::truncated(k)).collect();
        Ok(messages::GetConfigurationResponse {
            configuration_key: (!known.is_empty()).then_some(known),
            unknown_key: (!unknown.is_empty()).then_some(unknown),
        })
    }

    pub async fn change_configuration(
        &mut self,
        req: messages::ChangeConfigurationRequest,
    ) -> messages::ChangeConfigurationResponse {
        let outcome = self
            .change_config(req.key.as_str(), req.value.as_str(), Channel::Ocpp)
            .await;
        let status = match outcome {
            ChangeOutcome::Accepted => ConfigurationStatus::Accepted,
            ChangeOutcome::RebootRequired => ConfigurationStatus::RebootRequired,
            ChangeOutcome::Rejected(_) => ConfigurationStatus::Rejected,
            ChangeOutcome::NotSupported => ConfigurationStatus::NotSupported,
        };
        messages::ChangeConfigurationResponse { status }
    }

    /// Changes a key (its name in any case) and applies what the change sets in motion.
    pub async fn change_config(
        &mut self,
        key: &str,
        value: &str,
        channel: Channel,
    ) -> ChangeOutcome {
        let old_profile = self.config.security_profile();
        let outcome = self.config.change(key, value, channel);
        let known = Key::find(key);
        let name = known.map_or(key, |k| k.name());
        let shown = if known.is_some_and(|k| k.spec().is_secret()) {
            REDACTED
        } else {
            value
        };
        self.log.info(
            "config",
            format!("{name} = {shown}: {}", describe_outcome(&outcome)),
        );
        match &outcome {
            ChangeOutcome::Accepted | ChangeOutcome::RebootRequired => {
                self.stored("the configuration", Ok::<(), String>(()));
            }
            ChangeOutcome::Rejected(reason) if reason.starts_with("cannot write") => {
                self.stored("the configuration", Err(reason.clone()));
            }
            _ => {}
        }
        if matches!(
            outcome,
            ChangeOutcome::Accepted | ChangeOutcome::RebootRequired
        ) && let Some(key) = known
        {
            self.apply_config_change(key, old_profile, channel).await;
        }
        outcome
    }

    /// A change that reconnects made over OCPP waits for its answer to be queued first (the
    /// CSMS gets its CALLRESULT on the old connection, see `reconnect_after_reply`).
    async fn apply_config_change(&mut self, key: Key, old_profile: u8, channel: Channel) {
        match key {
            Key::HeartbeatInterval => self.schedule_heartbeat(),
            Key::MeterValueSampleInterval => self.schedule_sampling(),
            Key::FreeCharging => self.cancel_reservation_for_free_charging(),
            Key::ClockAlignedDataInterval => self.schedule_aligned(),
            Key::WebSocketPingInterval => self.set_ping_interval().await,
            Key::SecurityProfile => {
                let new = self.config.security_profile();
                if new != old_profile {
                    self.link.security_change = Some((old_profile, new));
                    self.log.info(
                        "security",
                        format!("security profile {old_profile} -> {new}: reconnecting"),
                    );
                    self.reconnect_after(channel).await;
                }
            }
            // CsmsUrl, ChargePointId and BasicAuthPassword answer RebootRequired: they take
            // effect at the next boot, so a provisioning run does not reconnect per key.
            Key::AuthorizationKey if self.config.security_profile() >= 1 => {
                self.reconnect_after(channel).await;
            }
            _ => {}
        }
    }

    /// Reconnects now, or for a change the CSMS made, once its answer is on its way.
    async fn reconnect_after(&mut self, channel: Channel) {
        if channel == Channel::Ocpp {
            self.link.reconnect_after_reply = true;
        } else {
            self.connect_now().await;
        }
    }
}

fn describe_outcome(o: &ChangeOutcome) -> String {
    match o {
        ChangeOutcome::Accepted => "accepted".into(),
        ChangeOutcome::RebootRequired => "accepted, reboot required".into(),
        ChangeOutcome::Rejected(why) => format!("rejected ({why})"),
        ChangeOutcome::NotSupported => "not supported".into(),
    }
}
