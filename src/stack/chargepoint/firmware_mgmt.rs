//! The Firmware Management profile: UpdateFirmware (download at retrieveDate with retries,
//! signature check, install only when no transaction runs, reboot into the new slot, Installed
//! after the reboot) and GetDiagnostics (the charger's log in the asked window, uploaded with an
//! HTTP(S) form POST). Transfers run in background tasks that report back through the core's
//! internal channel, so the charger keeps answering the CSMS meanwhile.

use super::*;
use crate::stack::transfer::{self, TransferEvent};

/// Where the charger's firmware goes and which keys it trusts.
#[derive(Clone)]
pub struct FirmwareTarget {
    pub slots: Arc<std::sync::Mutex<crate::firmware::Slots>>,
    pub trusted_keys: Arc<Vec<crate::firmware::VerifyingKey>>,
}

/// Largest firmware image the charger downloads.
const MAX_DOWNLOAD: u64 = crate::firmware::slots::MAX_IMAGE_SIZE;

/// An UpdateFirmware whose image is installed and waits for the reboot to report Installed.
pub(super) const PENDING_INSTALL_FILE: &str = "firmware_update.json";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PendingInstall {
    pub version: String,
}

/// Results of background work, delivered to the core's loop.
#[derive(Debug)]
pub(super) enum Internal {
    FirmwareStatus(&'static str),
    FirmwareDownloaded(Vec<u8>),
    DiagnosticsStatus(&'static str),
}

impl Core {
    pub(super) fn update_firmware(&mut self, req: &messages::UpdateFirmwareRequest) {
        let location = req.location.clone();
        let retries = req.retries.unwrap_or(0);
        let interval = Duration::from_secs(req.retry_interval.unwrap_or(30) as u64);
        let wait = (req.retrieve_date.as_datetime() - self.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let tx = self.internal_tx.clone();
        self.log.info(
            "firmware",
            format!(
                "firmware update from {} in {} s ({} retries every {} s)",
                transfer::redact_location(&location),
                wait.as_secs(),
                retries,
                interval.as_secs()
            ),
        );
        self.firmware_task = Some(tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let (ptx, mut prx) = mpsc::channel(16);
            let relay = tx.clone();
            let forward = tokio::spawn(async move {
                let mut announced = false;
                while let Some(ev) = prx.recv().await {
                    if matches!(ev, TransferEvent::Downloading { .. }) && !announced {
                        announced = true;
                        let _ = relay.send(Internal::FirmwareStatus("Downloading")).await;
                    }
                }
            });
            let result = transfer::download(&location, retries, interval, MAX_DOWNLOAD, ptx).await;
            let _ = forward.await;
            match result {
                Ok(bytes) => {
                    let _ = tx.send(Internal::FirmwareDownloaded(bytes)).await;
                }
                Err(e) => {
                    tracing::warn!("firmware download failed: {e}");
                    let _ = tx.send(Internal::FirmwareStatus("DownloadFailed")).await;
                }
            }
        }));
    }

    pub(super) fn get_diagnostics(
        &mut self,
        req: &messages::GetDiagnosticsRequest,
    ) -> Option<String> {
        let start = req.start_time.as_ref().map(|t| t.as_datetime());
        let stop = req.stop_time.as_ref().map(|t| t.as_datetime());
        let records = self.log.history();
        let (file_name, body) =
            transfer::collect_diagnostics(&records, start, stop, &self.opts.identity.serial_number);
        let location = req.location.clone();
        let retries = req.retries.unwrap_or(0);
        let interval = Duration::from_secs(req.retry_interval.unwrap_or(30) as u64);
        let tx = self.internal_tx.clone();
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
        self.diagnostics_task = Some(tokio::spawn(async move {
            let (ptx, mut prx) = mpsc::channel(16);
            let relay = tx.clone();
            let forward = tokio::spawn(async move {
                let mut announced = false;
                while let Some(ev) = prx.recv().await {
                    if let TransferEvent::Uploading { .. } = ev
                        && !announced
                    {
                        announced = true;
                        let _ = relay.send(Internal::DiagnosticsStatus("Uploading")).await;
                    }
                }
            });
            let result =
                transfer::upload_diagnostics(&location, &name, body, retries, interval, ptx).await;
            let _ = forward.await;
            let status = match result {
                Ok(()) => "Uploaded",
                Err(e) => {
                    tracing::warn!("diagnostics upload failed: {e}");
                    "UploadFailed"
                }
            };
            let _ = tx.send(Internal::DiagnosticsStatus(status)).await;
        }));
        Some(file_name)
    }

    pub(super) fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::FirmwareStatus(status) => self.report_firmware(status),
            Internal::DiagnosticsStatus(status) => {
                self.transfer_status.diagnostics = Some(status);
                self.log
                    .info("diagnostics", format!("diagnostics {status}"));
                self.enqueue(
                    "DiagnosticsStatusNotification",
                    json!({ "status": status }),
                    Purpose::Other,
                );
                if status != "Uploading" {
                    // After the final report the state is Idle again (TriggerMessage).
                    self.transfer_status.diagnostics = None;
                }
            }
            Internal::FirmwareDownloaded(image) => {
                self.report_firmware("Downloaded");
                self.downloaded_image = Some(image);
                self.try_install();
            }
        }
    }

    fn report_firmware(&mut self, status: &'static str) {
        self.transfer_status.firmware = Some(status);
        self.log.info("firmware", format!("firmware {status}"));
        self.enqueue(
            "FirmwareStatusNotification",
            json!({ "status": status }),
            Purpose::Other,
        );
        if matches!(
            status,
            "DownloadFailed" | "InstallationFailed" | "Installed"
        ) {
            self.transfer_status.firmware = None;
        }
    }

    /// Installs a downloaded image once no transaction runs, then reboots into it.
    pub(super) fn try_install(&mut self) {
        if self.downloaded_image.is_none() || self.tx.is_some() {
            return;
        }
        let Some(image) = self.downloaded_image.take() else {
            return;
        };
        let Some(target) = self.opts.firmware.clone() else {
            self.log.error(
                "firmware",
                "this charger has no firmware slots to install into",
            );
            self.report_firmware("InstallationFailed");
            return;
        };
        self.report_firmware("Installing");
        let result = {
            let mut slots = target.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.install_image(&image, &target.trusted_keys)
        };
        match result {
            Ok(header) => {
                self.log.info(
                    "firmware",
                    format!(
                        "firmware {} verified and written to the inactive slot; rebooting",
                        header.firmware_version
                    ),
                );
                let pending = PendingInstall {
                    version: header.firmware_version,
                };
                if let Ok(bytes) = serde_json::to_vec(&pending)
                    && let Err(e) = storage::write_atomic(
                        &self.opts.state_dir.join(PENDING_INSTALL_FILE),
                        &bytes,
                    )
                {
                    self.log
                        .error("firmware", format!("cannot record the install: {e}"));
                }
                // Downloaded and Installing go out before the reboot.
                self.defer_reboot(RebootKind::Service);
            }
            Err(e) => {
                self.log
                    .error("firmware", format!("firmware image refused: {e}"));
                self.report_firmware("InstallationFailed");
            }
        }
    }

    /// After a reboot into new firmware: report Installed (or InstallationFailed when the
    /// slot did not switch).
    pub(super) fn report_pending_install(&mut self) {
        let path = self.opts.state_dir.join(PENDING_INSTALL_FILE);
        let Some(pending) = storage::read_optional(&path)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<PendingInstall>(&b).ok())
        else {
            return;
        };
        if pending.version == self.opts.identity.firmware_version {
            self.report_firmware("Installed");
        } else {
            self.log.error(
                "firmware",
                format!(
                    "firmware {} did not boot; still running {}",
                    pending.version, self.opts.identity.firmware_version
                ),
            );
            self.report_firmware("InstallationFailed");
        }
        let _ = std::fs::remove_file(&path);
    }
}
