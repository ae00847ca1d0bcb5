//! Remote trigger (the RemoteTrigger feature profile): TriggerMessage queues the asked-for
//! message now, built as the charger would send it on its own.

use serde_json::json;

use super::actor::ChargePoint;
use super::connectors::ConnectorId;
use super::metering::meter_value;
use super::outbox::Purpose;
use crate::stack::config::ListKey;
use crate::stack::messages::{self, MessageTrigger, TriggerMessageStatus};

impl ChargePoint {
    pub fn trigger_message(
        &mut self,
        req: messages::TriggerMessageRequest,
    ) -> messages::TriggerMessageResponse {
        let status = match req.connector_id.map(ConnectorId::new) {
            Some(None) => TriggerMessageStatus::Rejected,
            Some(Some(c)) => {
                self.trigger(req.requested_message, Some(c));
                TriggerMessageStatus::Accepted
            }
            None => {
                self.trigger(req.requested_message, None);
                TriggerMessageStatus::Accepted
            }
        };
        messages::TriggerMessageResponse { status }
    }

    fn trigger(&mut self, what: MessageTrigger, connector: Option<ConnectorId>) {
        match what {
            // Sent again with the registration it brings back.
            MessageTrigger::BootNotification => self.enqueue_boot_triggered(),
            MessageTrigger::Heartbeat => self
                .outbox
                .push(messages::HeartbeatRequest {}, Purpose::Heartbeat),
            MessageTrigger::StatusNotification => match connector {
                Some(c) => self.queue_status_now(c),
                None => {
                    for c in ConnectorId::ALL {
                        self.queue_status_now(c);
                    }
                }
            },
            MessageTrigger::MeterValues => {
                self.trigger_meter_values(connector.unwrap_or(ConnectorId::SOCKET))
            }
            MessageTrigger::FirmwareStatusNotification => {
                let status = self
                    .firmware
                    .status
                    .unwrap_or(messages::FirmwareStatus::Idle);
                self.outbox.push(
                    messages::FirmwareStatusNotificationRequest { status },
                    Purpose::Other,
                );
            }
            MessageTrigger::DiagnosticsStatusNotification => {
                let status = self
                    .diagnostics
                    .status
                    .unwrap_or(messages::DiagnosticsStatus::Idle);
                self.outbox.push(
                    messages::DiagnosticsStatusNotificationRequest { status },
                    Purpose::Other,
                );
            }
        }
    }

    fn trigger_meter_values(&mut self, connector: ConnectorId) {
        let reading = self.hw.meter();
        let measurands = self.config.list(ListKey::METER_VALUES_SAMPLED_DATA);
        let now = self.now();
        let tx = self.transactions.active.as_ref();
        let base = tx.map_or(reading.energy_wh, |t| t.last_sample_wh);
        if let Some(mv) = meter_value(&measurands, "Trigger", &reading, now, base) {
            let mut payload = json!({ "connectorId": connector.get(), "meterValue": [mv] });
            if let Some(id) = tx.and_then(|t| t.transaction_id)
                && connector == ConnectorId::SOCKET
            {
                payload["transactionId"] = json!(id);
            }
            self.outbox
                .push_json("MeterValues", payload, Purpose::Other);
        } else {
            // No measurands configured: report the energy register at least.
            let all = ["Energy.Active.Import.Register".to_string()];
            if let Some(mv) = meter_value(&all, "Trigger", &reading, now, base) {
                self.outbox.push_json(
                    "MeterValues",
                    json!({ "connectorId": connector.get(), "meterValue": [mv] }),
                    Purpose::Other,
                );
            }
        }
    }
}
