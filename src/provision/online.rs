//! Waiting until a provisioned charger is online: connected to its CSMS and its BootNotification
//! Accepted, as the charger itself reports over its service link (OCPP_STATUS). The result is
//! one [`Online`] outcome: accepted, pending, rejected, not reached (with the reason as the
//! charger saw it), or a firmware that cannot report its OCPP state.

use std::future::Future;
use std::time::Duration;

use crate::link::ocpp_state::{ConnectError, Connection, Registration};
use crate::link::{self, OcppStatus};

/// How the wait for online ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Online {
    /// Connected and BootNotification Accepted.
    Accepted,
    /// Connected, but the CSMS left the registration Pending until the wait ended.
    Pending,
    /// The CSMS answered BootNotification with Rejected.
    Rejected,
    /// The charger did not reach its CSMS: the last failed attempt as it saw it (`None` when
    /// no attempt failed, such as a connection that got no BootNotification answer).
    NotReached(Option<ConnectError>),
    /// The charger's firmware cannot report its OCPP state over the service link.
    Unsupported,
}

impl Online {
    /// The result's name in `--json` (`online`, `pending`, `rejected`, `not_reached`,
    /// `unsupported`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Online::Accepted => "online",
            Online::Pending => "pending",
            Online::Rejected => "rejected",
            Online::NotReached(_) => "not_reached",
            Online::Unsupported => "unsupported",
        }
    }
}

/// What [`wait_online`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineReport {
    pub outcome: Online,
    /// The charger's last report.
    pub last: Option<OcppStatus>,
    /// How long the wait took.
    pub waited: Duration,
}

/// A charger that reports its OCPP state: the serial link client, or a fake in tests.
pub trait StatusSource: Sync {
    type Error: std::error::Error + Send + Sync + 'static;
    /// `Ok(None)`: the charger does not know the request.
    fn ocpp_status(&self) -> impl Future<Output = Result<Option<OcppStatus>, Self::Error>> + Send;
}

impl StatusSource for link::Client {
    type Error = link::Error;
    async fn ocpp_status(&self) -> Result<Option<OcppStatus>, link::Error> {
        link::Client::ocpp_status(self).await
    }
}

/// Failures that another attempt will not change: the CSMS refused the upgrade with a client
/// error (401/403: credentials, 404: id or path), did not speak ocpp1.6, or the URL is bad.
pub fn is_definitive(e: &ConnectError) -> bool {
    match e.failure.as_str() {
        "http_status" => e.http_status.is_some_and(|s| (400..500).contains(&s)),
        "subprotocol" | "bad_url" => true,
        _ => false,
    }
}

/// Attempts in a row that must fail definitively before the wait ends early (the first may be
/// the SecurityProfile fallback's, A05.FR.08).
pub const DEFINITIVE_ATTEMPTS: u32 = 2;

/// Polls the charger every `poll` until it is online, the CSMS rejected it, its attempts fail
/// definitively ([`is_definitive`], [`DEFINITIVE_ATTEMPTS`] in a row), or `limit` passes.
/// `progress` sees every report that differs from the one before. Link errors while polling
/// (a charger busy rebooting) are retried until `limit`; only when no report ever arrived is
/// the last one returned.
pub async fn wait_online<S: StatusSource>(
    source: &S,
    limit: Duration,
    poll: Duration,
    mut progress: impl FnMut(&OcppStatus) + Send,
) -> Result<OnlineReport, S::Error> {
    let start = tokio::time::Instant::now();
    let deadline = start + limit;
    let mut last: Option<OcppStatus> = None;
    let mut link_error = None;
    loop {
        match source.ocpp_status().await {
            Ok(None) => {
                return Ok(OnlineReport {
                    outcome: Online::Unsupported,
                    last,
                    waited: start.elapsed(),
                });
            }
            Ok(Some(status)) => {
                if last.as_ref() != Some(&status) {
                    progress(&status);
                }
                let outcome = if status.is_online() {
                    Some(Online::Accepted)
                } else if status.registration == Registration::Rejected {
                    Some(Online::Rejected)
                } else if status.connection == Connection::Failed
                    && status.failed_attempts >= DEFINITIVE_ATTEMPTS
                    && status.last_error.as_ref().is_some_and(is_definitive)
                {
                    Some(Online::NotReached(status.last_error.clone()))
                } else {
                    None
                };
                last = Some(status);
                if let Some(outcome) = outcome {
                    return Ok(OnlineReport {
                        outcome,
                        last,
                        waited: start.elapsed(),
                    });
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "no OCPP status from the charger yet");
                link_error = Some(e);
            }
        }
        if tokio::time::Instant::now() + poll > deadline {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    let Some(status) = last else {
        if let Some(e) = link_error {
            return Err(e);
        }
        return Ok(OnlineReport {
            outcome: Online::NotReached(None),
            last: None,
            waited: start.elapsed(),
        });
    };
    let outcome = match (status.connection, status.registration) {
        (Connection::Connected, Registration::Pending) => Online::Pending,
        _ => Online::NotReached(status.last_error.clone()),
    };
    Ok(OnlineReport {
        outcome,
        last: Some(status),
        waited: start.elapsed(),
    })
}

/// What the charger is doing, in a few words, for a progress line.
pub fn describe(status: &OcppStatus) -> String {
    match (status.connection, status.registration) {
        (Connection::Connected, Registration::Accepted) => "online, Accepted".into(),
        (Connection::Connected, Registration::Pending) => "connected, registration Pending".into(),
        (Connection::Connected, Registration::Rejected) => {
            "connected, registration Rejected".into()
        }
        (Connection::Connected, Registration::Unknown) => {
            "connected, waiting for the BootNotification answer".into()
        }
        (Connection::Connecting, _) => match &status.csms_url {
            Some(url) if url.starts_with("wss://") => format!("connecting (TLS) to {url}"),
            Some(url) => format!("connecting to {url}"),
            None => "connecting".into(),
        },
        (Connection::Failed, _) => match &status.last_error {
            Some(e) => format!("attempt {} failed: {}", status.failed_attempts, reason(e)),
            None => "connection attempt failed".into(),
        },
        (Connection::Disconnected, _) => "disconnected, reconnecting".into(),
        (Connection::Idle, _) => "starting".into(),
    }
}

/// The reason of a failed attempt in words, with what an HTTP status usually means.
pub fn reason(e: &ConnectError) -> String {
    let what = match e.failure.as_str() {
        "dns" => "DNS: the CSMS host name does not resolve".to_string(),
        "tcp_refused" => "TCP connection refused (nothing listens on the CSMS port)".to_string(),
        "tcp_timeout" => "no TCP connection in time".to_string(),
        "network" => "network error".to_string(),
        "tls" => "TLS handshake failed".to_string(),
        "handshake_timeout" => "no answer to the handshake in time".to_string(),
        "http_status" => match e.http_status {
            Some(s @ (401 | 403)) => {
                format!("HTTP {s}: wrong AuthorizationKey or charge point id")
            }
            Some(404) => "HTTP 404: unknown charge point id or wrong CSMS path".to_string(),
            Some(s) => format!("HTTP {s} on the WebSocket upgrade"),
            None => "the WebSocket upgrade was refused".to_string(),
        },
        "subprotocol" => "the CSMS did not agree to subprotocol ocpp1.6".to_string(),
        "handshake" => "the WebSocket upgrade failed".to_string(),
        "bad_url" => "the CSMS URL is not usable".to_string(),
        other => other.to_string(),
    };
    format!("{what} ({})", e.detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, thiserror::Error)]
    #[error("no answer")]
    struct NoAnswer;

    /// Answers the scripted reports in turn, then the last one forever.
    struct Script(Mutex<Vec<Option<OcppStatus>>>);

    impl StatusSource for Script {
        type Error = NoAnswer;
        async fn ocpp_status(&self) -> Result<Option<OcppStatus>, NoAnswer> {
            let mut s = self.0.lock().unwrap();
            if s.len() > 1 {
                Ok(s.remove(0))
            } else {
                Ok(s[0].clone())
            }
        }
    }

    fn status(connection: Connection, registration: Registration) -> OcppStatus {
        OcppStatus {
            connection,
            registration,
            csms_url: Some("ws://127.0.0.1:1/ocpp/CP".into()),
            failed_attempts: 0,
            last_error: None,
            online_since_ms: None,
        }
    }

    fn failed(attempts: u32, failure: &str, http: Option<u16>) -> OcppStatus {
        OcppStatus {
            failed_attempts: attempts,
            last_error: Some(ConnectError {
                failure: failure.into(),
                http_status: http,
                detail: "detail".into(),
                at_ms: 0,
            }),
            ..status(Connection::Failed, Registration::Unknown)
        }
    }

    async fn run(script: Vec<Option<OcppStatus>>, limit: u64) -> (OnlineReport, usize) {
        let source = Script(Mutex::new(script));
        let mut seen = 0;
        let report = wait_online(
            &source,
            Duration::from_secs(limit),
            Duration::from_millis(500),
            |_| seen += 1,
        )
        .await
        .unwrap();
        (report, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn ends_when_accepted_and_reports_each_change_once() {
        let (r, seen) = run(
            vec![
                Some(status(Connection::Connecting, Registration::Unknown)),
                Some(status(Connection::Connecting, Registration::Unknown)),
                Some(status(Connection::Connected, Registration::Unknown)),
                Some(status(Connection::Connected, Registration::Accepted)),
            ],
            120,
        )
        .await;
        assert_eq!(r.outcome, Online::Accepted);
        assert_eq!(seen, 3);
        assert_eq!(r.waited, Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_upgrade_ends_early_a_refused_tcp_connection_waits_it_out() {
        let (r, _) = run(
            vec![
                Some(failed(1, "http_status", Some(401))),
                Some(failed(2, "http_status", Some(401))),
            ],
            120,
        )
        .await;
        let Online::NotReached(Some(e)) = &r.outcome else {
            panic!("{r:?}")
        };
        assert_eq!(e.http_status, Some(401));
        assert!(
            reason(e).contains("wrong AuthorizationKey"),
            "{}",
            reason(e)
        );
        assert!(r.waited < Duration::from_secs(2), "{r:?}");

        let (r, _) = run(vec![Some(failed(9, "tcp_refused", None))], 10).await;
        assert!(matches!(&r.outcome, Online::NotReached(Some(e)) if e.failure == "tcp_refused"));
        assert!(r.waited >= Duration::from_secs(9), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn pending_rejected_and_old_firmware_have_their_own_outcomes() {
        let (r, _) = run(
            vec![Some(status(Connection::Connected, Registration::Pending))],
            5,
        )
        .await;
        assert_eq!(r.outcome, Online::Pending);
        let (r, _) = run(
            vec![Some(status(Connection::Connected, Registration::Rejected))],
            5,
        )
        .await;
        assert_eq!(r.outcome, Online::Rejected);
        assert_eq!(r.waited, Duration::ZERO);
        let (r, _) = run(vec![None], 5).await;
        assert_eq!(r.outcome, Online::Unsupported);
    }
}
