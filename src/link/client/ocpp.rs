//! The charger's OCPP state over the link: OCPP_STATUS and OCPP_TRACE. A charger side from
//! before these requests answers BAD_REQUEST, which is reported as `None` (not an error), so a
//! caller can say what that firmware cannot do.

use super::actor::Cmd;
use super::{Client, Parts};
use crate::link::codec::{Dec, Request, status};
use crate::link::error::{Error, Result};
use crate::link::ocpp_state::{self, OcppStatus, TraceEntry};
use tokio::sync::oneshot;

impl Client {
    /// The answer's parts, or `None` when the charger does not know the request.
    async fn optional_request(&self, req: &Request) -> Result<Option<Parts>> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Request {
            body: req.encode(),
            timeout: self.timeout,
            reply,
        })
        .await?;
        let parts = rx.await.map_err(|_| Error::Closed)??;
        match parts.first() {
            Some((status::OK, _)) => Ok(Some(parts)),
            Some((status::BAD_REQUEST, _)) => Ok(None),
            Some((status::REFUSED, p)) => Err(Error::Refused {
                reason: Dec::new(p).str("reason").unwrap_or_default(),
            }),
            Some((other, p)) => Err(Error::Protocol {
                what: "request",
                detail: format!(
                    "status {other}: {}",
                    Dec::new(p).str("reason").unwrap_or_default()
                ),
            }),
            None => Err(Error::Protocol {
                what: "request",
                detail: "empty answer".into(),
            }),
        }
    }

    /// The charger's connection to its CSMS, its registration and its last connection error;
    /// `None` when its firmware cannot report them.
    pub async fn ocpp_status(&self) -> Result<Option<OcppStatus>> {
        match self.optional_request(&Request::OcppStatus).await? {
            Some(parts) => {
                let status = OcppStatus::decode(&parts[0].1)?;
                if let Some(r) = self.recorder.get() {
                    r.ocpp_status(&status);
                }
                Ok(Some(status))
            }
            None => Ok(None),
        }
    }

    /// The recent OCPP frames the charger keeps, oldest first; `None` when its firmware keeps
    /// none it can send.
    pub async fn ocpp_trace(&self) -> Result<Option<Vec<TraceEntry>>> {
        match self.optional_request(&Request::OcppTrace).await? {
            Some(parts) => {
                let mut out = Vec::new();
                for (_, p) in &parts {
                    ocpp_state::decode_trace_part(p, &mut out)?;
                }
                Ok(Some(out))
            }
            None => Ok(None),
        }
    }
}
