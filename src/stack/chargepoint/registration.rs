//! The link to the CSMS: connecting (endpoint from the configuration, SecurityProfile changes
//! and their fallback, A05.FR.06-08), what the connection task reports, and the registration on
//! the CSMS (BootNotification with its retries, heartbeats).

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

use super::actor::{ChargePoint, secs};
use super::outbox::Purpose;
use super::{ConnectError, ConnectionState, Event, Registration};
use crate::stack::config::{IntKey, TextKey, keys};
use crate::stack::connection::{self, ConnCtl, ConnEvent};
use crate::stack::messages::{self, CiString20, CiString25, CiString50};
use crate::stack::rpc::CallError;
use crate::stack::transport::Endpoint;

/// The connection to the CSMS and the registration on it.
#[derive(Debug)]
pub(super) struct Link {
    pub online: bool,
    pub online_since: Option<DateTime<Utc>>,
    pub registration: Registration,
    pub boot_retry_at: Option<Instant>,
    pub heartbeat_at: Option<Instant>,
    /// SecurityProfile change waiting for the first successful connection (A05.FR.06-08).
    pub security_change: Option<(u8, u8)>,
    /// A configuration change from the CSMS needs a new connection: made once the answer to
    /// the change is queued, so the CSMS receives it before the connection closes.
    pub reconnect_after_reply: bool,
    /// What the connection is doing and how the last attempt failed, for [`super::Snapshot`].
    pub report: ConnectionReport,
}

/// The connection as a snapshot reports it: its state, the URL, and the last failed attempt.
#[derive(Debug, Default)]
pub(super) struct ConnectionReport {
    /// `None` before the first attempt of this boot.
    pub state: Option<ConnectionState>,
    pub url: Option<String>,
    /// Attempts failed in a row since the last successful connection.
    pub failed_attempts: u32,
    pub last_error: Option<ConnectError>,
}

impl Link {
    /// Online and accepted: what may be sent besides BootNotification.
    pub fn accepted(&self) -> bool {
        self.online && self.registration == Registration::Accepted
    }
}

impl ChargePoint {
    // ----- connection ---------------------------------------------------------------------

    fn endpoint(&self) -> Endpoint {
        let password_bytes = self
            .config
            .basic_auth_password()
            .map(|p| crate::stack::secret::SecretBytes::new(p.expose()));
        Endpoint {
            csms_url: self.config.text(TextKey::CSMS_URL),
            charge_point_id: self.config.text(TextKey::CHARGE_POINT_ID),
            security_profile: self.config.security_profile(),
            basic_password_bytes: password_bytes,
        }
    }

    pub fn ping_interval(&self) -> Duration {
        secs(self.config.int(IntKey::WEB_SOCKET_PING_INTERVAL))
    }

    pub async fn set_ping_interval(&mut self) {
        let _ = self
            .conn_ctl
            .send(ConnCtl::SetPingInterval(self.ping_interval()))
            .await;
    }

    pub async fn connect_now(&mut self) {
        let endpoint = self.endpoint();
        let url = endpoint.url().ok();
        self.link.report.state = Some(ConnectionState::Connecting);
        self.link.report.url = url.clone();
        self.emit(Event::Connection {
            state: ConnectionState::Connecting,
            url: url.clone(),
            detail: Some(format!("security profile {}", endpoint.security_profile)),
            failure: None,
            http_status: None,
        });
        self.log.info(
            "ocpp",
            format!(
                "connecting to {} (security profile {})",
                url.as_deref().unwrap_or("<invalid URL>"),
                endpoint.security_profile
            ),
        );
        let _ = self
            .conn_ctl
            .send(ConnCtl::Connect {
                endpoint: Box::new(endpoint),
                ping_interval: self.ping_interval(),
            })
            .await;
    }

    pub async fn on_conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Connected { url } => {
                self.link.online = true;
                self.link.online_since = Some(self.now());
                self.link.report.state = Some(ConnectionState::Connected);
                self.link.report.url = Some(url.clone());
                self.link.report.failed_attempts = 0;
                self.log.info("ocpp", format!("connected to {url}"));
                self.emit(Event::Connection {
                    state: ConnectionState::Connected,
                    url: Some(url),
                    detail: None,
                    failure: None,
                    http_status: None,
                });
                if let Some((old, new)) = self.link.security_change.take() {
                    self.log.info(
                        "security",
                        format!("connected with security profile {new} (was {old})"),
                    );
                }
                match self.link.registration {
                    Registration::Accepted => {
                        self.report_offline_changes();
                        self.schedule_heartbeat();
                    }
                    _ => {
                        self.link.boot_retry_at = None;
                        self.enqueue_boot();
                    }
                }
            }
            ConnEvent::ConnectFailed(failed) => {
                let connection::FailedAttempt {
                    error,
                    kind,
                    http_status,
                    auth_failure,
                    retry_in,
                    attempt,
                } = *failed;
                self.log.warn(
                    "ocpp",
                    format!(
                        "connection attempt {attempt} failed: {error}; retrying in {:.1} s",
                        retry_in.as_secs_f64()
                    ),
                );
                self.link.report.state = Some(ConnectionState::Failed);
                self.link.report.failed_attempts =
                    self.link.report.failed_attempts.saturating_add(1);
                self.link.report.last_error = Some(ConnectError {
                    failure: kind,
                    http_status,
                    detail: error.clone(),
                    at: self.now(),
                });
                self.emit(Event::Connection {
                    state: ConnectionState::Failed,
                    url: None,
                    detail: Some(error),
                    failure: Some(kind),
                    http_status,
                });
                if let Some((old, new)) = self.link.security_change
                    // A05.FR.08: fall back to the previous profile when the new one fails.
                    && (auth_failure || attempt >= 3)
                {
                    self.link.security_change = None;
                    match self.config.revert_security_profile(old) {
                        Ok(()) => {
                            self.log.warn(
                                "security",
                                format!(
                                    "security profile {new} failed to connect; falling back to {old}"
                                ),
                            );
                            self.connect_now().await;
                        }
                        Err(e) => self.log.error(
                            "security",
                            format!("cannot restore security profile {old}: {e}"),
                        ),
                    }
                }
            }
            ConnEvent::Text(text) => self.on_text(text).await,
            ConnEvent::Disconnected { reason } => {
                self.link.online = false;
                self.link.online_since = None;
                self.link.heartbeat_at = None;
                self.link.report.state = Some(ConnectionState::Disconnected);
                if let Some(f) = self.outbox.in_flight.take() {
                    self.log.debug(
                        "ocpp",
                        format!("{} {} lost with the connection", f.action, f.id),
                    );
                    // A transaction message stays first in the journal and goes again after the
                    // reconnect; a BootNotification is queued again on connect.
                    if let Purpose::Authorize(tag) = f.purpose {
                        self.on_authorize_result(&tag, None);
                    }
                }
                self.outbox.drop_on_disconnect();
                self.log.warn("ocpp", format!("disconnected: {reason}"));
                self.emit(Event::Connection {
                    state: ConnectionState::Disconnected,
                    url: None,
                    detail: Some(reason),
                    failure: None,
                    http_status: None,
                });
            }
        }
    }

    // ----- registration -------------------------------------------------------------------

    fn boot_request(&self) -> messages::BootNotificationRequest {
        let id = &self.opts.identity;
        messages::BootNotificationRequest {
            charge_point_vendor: CiString20::truncated(&id.vendor),
            charge_point_model: CiString20::truncated(&id.model),
            charge_point_serial_number: Some(CiString25::truncated(&id.serial_number)),
            charge_box_serial_number: Some(CiString25::truncated(&id.serial_number)),
            firmware_version: Some(CiString50::truncated(&id.firmware_version)),
            iccid: None,
            imsi: None,
            meter_type: None,
            meter_serial_number: None,
        }
    }

    /// Queues BootNotification first, unless one is queued or in flight already.
    pub fn enqueue_boot(&mut self) {
        if !self.outbox.has(&Purpose::Boot) {
            let req = self.boot_request();
            self.outbox.push_front(req, Purpose::Boot);
        }
    }

    /// BootNotification asked for by TriggerMessage: queued behind what waits.
    pub fn enqueue_boot_triggered(&mut self) {
        let req = self.boot_request();
        self.outbox.push(req, Purpose::Boot);
    }

    pub fn on_boot_result(
        &mut self,
        result: Result<messages::BootNotificationResponse, CallError>,
    ) {
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.log
                    .warn("ocpp", format!("invalid BootNotification answer: {e}"));
                self.retry_boot(None);
                return;
            }
        };
        let interval = resp.interval;
        match resp.status {
            messages::RegistrationStatus::Accepted => {
                self.link.registration = Registration::Accepted;
                self.link.boot_retry_at = None;
                if interval > 0 {
                    let _ = self
                        .config
                        .set_internal(keys::HEARTBEAT_INTERVAL, &interval.to_string());
                }
                self.log.info(
                    "ocpp",
                    format!("BootNotification accepted, heartbeat every {interval} s"),
                );
                self.emit(Event::Registration {
                    status: Registration::Accepted,
                });
                self.report_all_connectors();
                self.schedule_heartbeat();
                self.report_pending_install_once();
            }
            messages::RegistrationStatus::Pending => {
                self.link.registration = Registration::Pending;
                self.log.info("ocpp", "BootNotification pending");
                self.emit(Event::Registration {
                    status: Registration::Pending,
                });
                self.retry_boot(Some(interval));
            }
            messages::RegistrationStatus::Rejected => {
                self.link.registration = Registration::Rejected;
                self.log.warn("ocpp", "BootNotification rejected");
                self.emit(Event::Registration {
                    status: Registration::Rejected,
                });
                self.retry_boot(Some(interval));
            }
        }
    }

    pub fn retry_boot(&mut self, interval: Option<u32>) {
        let secs = match interval {
            Some(i) if i > 0 => u64::from(i),
            _ => 30,
        };
        self.link.boot_retry_at = Some(Instant::now() + Duration::from_secs(secs));
        self.enqueue_boot();
    }

    pub fn schedule_heartbeat(&mut self) {
        let interval = self.config.int(IntKey::HEARTBEAT_INTERVAL);
        self.link.heartbeat_at =
            (interval > 0 && self.link.online).then(|| Instant::now() + secs(interval));
    }
}
