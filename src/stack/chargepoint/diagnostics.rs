//! Diagnostics (the FirmwareManagement profile's GetDiagnostics): the charger's log in the asked
//! window, uploaded with an HTTP(S) form POST by a background task that reports Uploading and
//! the outcome on the actor's internal channel.

use std::time::Duration;
use tokio::sync::mpsc;

use super::actor::{ChargePoint, Internal};
use super::outbox::Purpose;
use crate::stack::messages::{self, CiString255, DiagnosticsStatus};
use crate::stack::transfer::{self, TransferEvent};

#[derive(Debug, Default)]
pub(super) struct Diagnostics {
    /// Status as last reported, until a final one (for TriggerMessage).
    pub status: Option<DiagnosticsStatus>,
}

impl ChargePoint {
    pub fn get_diagnostics(
        &mut self,
        req: messages::GetDiagnosticsRequest,
    ) -> messages::GetDiagnosticsResponse {
        let start = req.start_time.as_ref().map(|t| t.as_datetime());
        let stop = req.stop_time.as_ref().map(|t| t.as_datetime());
        let records = self.log.history();
        let (file_name, body) =
            transfer::collect_diagnostics(&records, start, stop, &self.opts.identity.serial_number);
        let location = req.location;
        let retries = req.retries.unwrap_or(0);
        let interval = Duration::from_secs(u64::from(req.retry_interval.unwrap_or(30)));
        let tx = self.internal_tx();
        let name = file_name.clone();
        self.log.info(
            "diagnostics",
            format!(
                "uploading {} ({} bytes) to {}",
                file_name,
                body.len(),
                transfer::redact_location(&location)
            ),
        );
        tokio::spawn(async move {
            let (ptx, mut prx) = mpsc::channel(16);
            let relay = tx.clone();
            let forward = tokio::spawn(async move {
                let mut announced = false;
                while let Some(ev) = prx.recv().await {
                    if let TransferEvent::Uploading { .. } = ev
                        && !announced
                    {
                        announced = true;
                        let _ = relay
                            .send(Internal::DiagnosticsStatus(DiagnosticsStatus::Uploading))
                            .await;
                    }
                }
            });
            let result =
                transfer::upload_diagnostics(&location, &name, body, retries, interval, ptx).await;
            let _ = forward.await;
            let status = match result {
                Ok(()) => DiagnosticsStatus::Uploaded,
                Err(e) => {
                    tracing::warn!("diagnostics upload failed: {e}");
                    DiagnosticsStatus::UploadFailed
                }
            };
            let _ = tx.send(Internal::DiagnosticsStatus(status)).await;
        });
        messages::GetDiagnosticsResponse {
            file_name: Some(CiString255::truncated(&file_name)),
        }
    }

    pub fn report_diagnostics(&mut self, status: DiagnosticsStatus) {
        self.diagnostics.status = Some(status);
        self.log
            .info("diagnostics", format!("diagnostics {status}"));
        self.outbox.push(
            messages::DiagnosticsStatusNotificationRequest { status },
            Purpose::Other,
        );
        if status != DiagnosticsStatus::Uploading {
            // After the final report the state is Idle again (TriggerMessage).
            self.diagnostics.status = None;
        }
    }
}
