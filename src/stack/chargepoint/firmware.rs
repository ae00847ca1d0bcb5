//! Firmware updates (the FirmwareManagement profile's UpdateFirmware): download at retrieveDate
//! with retries, verification and the slot write off the actor (`spawn_blocking`: an image is
//! up to 32 MiB, hashed and signature-checked), install only when no transaction runs, reboot
//! into the new slot, and Installed reported after the reboot. Results come back on the actor's
//! internal channel, so the charger keeps answering the CSMS meanwhile.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use super::RebootKind;
use super::actor::{ChargePoint, Internal};
use super::outbox::Purpose;
use crate::stack::messages::{self, FirmwareStatus};
use crate::stack::transfer::{self, TransferEvent};
use crate::storage;

/// Where the charger's firmware goes and which keys it trusts.
#[derive(Clone)]
pub struct FirmwareTarget {
    pub slots: Arc<std::sync::Mutex<crate::firmware::Slots>>,
    pub trusted_keys: Arc<Vec<crate::firmware::VerifyingKey>>,
}

/// Largest firmware image the charger downloads.
const MAX_DOWNLOAD: u64 = crate::firmware::slots::MAX_IMAGE_SIZE;

/// An UpdateFirmware whose image is installed and waits for the reboot to report Installed.
const PENDING_INSTALL_FILE: &str = "firmware_update.json";

#[derive(Debug, Serialize, Deserialize)]
struct PendingInstall {
    version: String,
}

#[derive(Debug, Default)]
pub(super) struct FirmwareUpdate {
    /// Status as last reported, until a final one (for TriggerMessage).
    pub status: Option<FirmwareStatus>,
    /// A downloaded image waiting for the running transaction to end.
    downloaded: Option<Vec<u8>>,
    /// Whether this boot already reported a firmware install that completed with it.
    install_reported: bool,
}

impl ChargePoint {
    pub fn update_firmware(
        &mut self,
        req: messages::UpdateFirmwareRequest,
    ) -> messages::UpdateFirmwareResponse {
        let location = req.location;
        let retries = req.retries.unwrap_or(0);
        let interval = Duration::from_secs(u64::from(req.retry_interval.unwrap_or(30)));
        let wait = (req.retrieve_date.as_datetime() - self.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let tx = self.internal_tx();
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
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let (ptx, mut prx) = mpsc::channel(16);
            let relay = tx.clone();
            let forward = tokio::spawn(async move {
                let mut announced = false;
                while let Some(ev) = prx.recv().await {
                    if matches!(ev, TransferEvent::Downloading { .. }) && !announced {
                        announced = true;
                        let _ = relay
                            .send(Internal::FirmwareStatus(FirmwareStatus::Downloading))
                            .await;
                    }
                }
            });
            let result = transfer::download(&location, retries, interval, MAX_DOWNLOAD, ptx).await;
            let _ = forward.await;
            let msg = match result {
                Ok(bytes) => Internal::FirmwareDownloaded(bytes),
                Err(e) => {
                    tracing::warn!("firmware download failed: {e}");
                    Internal::FirmwareStatus(FirmwareStatus::DownloadFailed)
                }
            };
            let _ = tx.send(msg).await;
        });
        messages::UpdateFirmwareResponse {}
    }

    pub fn report_firmware(&mut self, status: FirmwareStatus) {
        self.report_firmware_as(status, Purpose::Other);
    }

    fn report_firmware_as(&mut self, status: FirmwareStatus, purpose: Purpose) {
        self.firmware.status = Some(status);
        self.log.info("firmware", format!("firmware {status}"));
        self.outbox.push(
            messages::FirmwareStatusNotificationRequest { status },
            purpose,
        );
        if matches!(
            status,
            FirmwareStatus::DownloadFailed
                | FirmwareStatus::InstallationFailed
                | FirmwareStatus::Installed
        ) {
            self.firmware.status = None;
        }
    }

    pub fn firmware_downloaded(&mut self, image: Vec<u8>) {
        self.report_firmware(FirmwareStatus::Downloaded);
        self.firmware.downloaded = Some(image);
        self.try_install();
    }

    /// Installs a downloaded image once no transaction runs: verified and written off the
    /// actor, the result comes back as [`Internal::FirmwareInstalled`].
    pub fn try_install(&mut self) {
        if self.transactions.active.is_some() {
            return;
        }
        let Some(image) = self.firmware.downloaded.take() else {
            return;
        };
        let Some(target) = self.opts.firmware.clone() else {
            self.log.error(
                "firmware",
                "this charger has no firmware slots to install into",
            );
            self.report_firmware(FirmwareStatus::InstallationFailed);
            return;
        };
        self.report_firmware(FirmwareStatus::Installing);
        // Recorded before the slot is written: a power cut from here on still ends in Installed
        // (the new slot boots) or InstallationFailed (it never got there) after the restart.
        if let Ok(header) = crate::firmware::parse_header(&image) {
            let pending = PendingInstall {
                version: header.firmware_version,
            };
            if let Ok(bytes) = serde_json::to_vec(&pending) {
                let path = self.opts.state_dir.join(PENDING_INSTALL_FILE);
                let result = storage::write_doc("firmware_update", &path, &bytes);
                self.stored("the firmware install record", result);
            }
        }
        let done = self.internal_tx();
        tokio::task::spawn_blocking(move || {
            let result = crate::sync::lock(&target.slots)
                .install_image(&image, &target.trusted_keys)
                .map(|header| header.firmware_version)
                .map_err(|e| e.to_string());
            let _ = done.blocking_send(Internal::FirmwareInstalled(result));
        });
    }

    /// The install finished: reboot into the new slot, or report the refusal.
    pub fn firmware_installed(&mut self, result: Result<String, String>) {
        match result {
            Ok(version) => {
                self.log.info(
                    "firmware",
                    format!(
                        "firmware {version} verified and written to the inactive slot; rebooting"
                    ),
                );
                // Downloaded and Installing go out before the reboot.
                self.defer_reboot(RebootKind::Service);
            }
            Err(e) => {
                self.log
                    .error("firmware", format!("firmware image refused: {e}"));
                let path = self.opts.state_dir.join(PENDING_INSTALL_FILE);
                let result = storage::remove_doc("firmware_update", &path);
                self.stored("the firmware install record", result);
                self.report_firmware(FirmwareStatus::InstallationFailed);
            }
        }
    }

    /// After the first registration of a boot into new firmware: report Installed (or
    /// InstallationFailed when the slot did not switch).
    pub fn report_pending_install_once(&mut self) {
        if std::mem::replace(&mut self.firmware.install_reported, true) {
            return;
        }
        // A new image that never confirmed its trial boots: the slots went back.
        let rollback = self.opts.firmware.as_ref().and_then(|t| {
            crate::sync::lock(&t.slots)
                .take_unreported_rollback()
                .unwrap_or_else(|e| {
                    self.log.storage_failed("the firmware slots", &e);
                    None
                })
        });
        let path = self.opts.state_dir.join(PENDING_INSTALL_FILE);
        let Some(pending) = storage::read_optional(&path)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<PendingInstall>(&b).ok())
        else {
            if let Some(failed) = rollback {
                self.log.error(
                    "firmware",
                    format!(
                        "firmware {failed} failed its trial boots; running {} again",
                        self.opts.identity.firmware_version
                    ),
                );
                self.report_firmware(FirmwareStatus::InstallationFailed);
            }
            return;
        };
        // The record goes once the CSMS has the report (a power cut before that reports again
        // at the next boot).
        if pending.version == self.opts.identity.firmware_version {
            self.report_firmware_as(FirmwareStatus::Installed, Purpose::InstallReport);
        } else {
            self.log.error(
                "firmware",
                format!(
                    "firmware {} did not boot; still running {}",
                    pending.version, self.opts.identity.firmware_version
                ),
            );
            self.report_firmware_as(FirmwareStatus::InstallationFailed, Purpose::InstallReport);
        }
    }

    /// The CSMS has the report that concludes an install: its record is no longer needed.
    pub fn install_report_delivered(&mut self) {
        let path = self.opts.state_dir.join(PENDING_INSTALL_FILE);
        let result = storage::remove_doc("firmware_update", &path);
        self.stored("the firmware install record", result);
    }
}
