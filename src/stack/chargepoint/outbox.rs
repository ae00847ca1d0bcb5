//! The outbox: CALLs the charge point sends. It owns the queue of messages that are not
//! journaled, the one CALL in flight (OCPP 1.6 allows one at a time) with its id and deadline,
//! and a reboot deferred until what is queued is delivered. Journaled transaction messages are
//! picked by [`super::transactions`] before anything queued here.

use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

use super::RebootKind;
use super::registration::Link;
use super::transactions::Transactions;
use crate::stack::messages::Request;
use crate::stack::rpc::{self, Frame};

/// What a CP-initiated CALL is for, so its answer can be handled.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Purpose {
    Boot,
    Heartbeat,
    Status,
    Authorize(String),
    /// A journaled transaction message with this sequence number.
    Tx(u64),
    /// The FirmwareStatusNotification that concludes an install: its record is kept until
    /// the CSMS has it.
    InstallReport,
    Other,
}

#[derive(Debug)]
pub(super) struct Outgoing {
    pub action: &'static str,
    pub payload: Value,
    pub purpose: Purpose,
}

#[derive(Debug)]
pub(super) struct InFlight {
    pub id: String,
    pub action: String,
    pub purpose: Purpose,
    /// When it was sent (its answer's latency is measured from here).
    pub sent: Instant,
    pub deadline: Instant,
}

/// A reboot waiting for queued messages to be delivered.
#[derive(Debug, Clone, Copy)]
struct DeferredReboot {
    kind: RebootKind,
    /// Reboot anyway at this instant.
    deadline: Instant,
}

#[derive(Debug)]
pub(super) struct Outbox {
    queue: VecDeque<Outgoing>,
    pub in_flight: Option<InFlight>,
    /// Unique ids are `<nonce>-<n>`: the nonce differs per boot, so an answer meant for the
    /// previous boot never matches.
    boot_nonce: u64,
    next_id: u64,
    /// A reboot that first lets what is queued go out (a soft reset's StopTransaction, the
    /// firmware status before an install reboot), until a deadline.
    deferred_reboot: Option<DeferredReboot>,
}

impl Outbox {
    pub fn new(boot_nonce: u64) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            in_flight: None,
            boot_nonce,
            next_id: 0,
            deferred_reboot: None,
        }
    }

    /// Queues a typed request behind what waits.
    pub fn push<R: Request>(&mut self, req: R, purpose: Purpose) {
        self.push_json(R::ACTION, rpc::encode_payload(&req), purpose);
    }

    /// Queues a request in front of everything (BootNotification).
    pub fn push_front<R: Request>(&mut self, req: R, purpose: Purpose) {
        self.queue.push_front(Outgoing {
            action: R::ACTION,
            payload: rpc::encode_payload(&req),
            purpose,
        });
    }

    /// Queues a payload built as JSON (MeterValues, whose meter values are JSON throughout).
    pub fn push_json(&mut self, action: &'static str, payload: Value, purpose: Purpose) {
        self.queue.push_back(Outgoing {
            action,
            payload,
            purpose,
        });
    }

    /// Whether a CALL for `purpose` is queued.
    pub fn is_queued(&self, purpose: &Purpose) -> bool {
        self.queue.iter().any(|o| &o.purpose == purpose)
    }

    /// Whether a CALL for `purpose` is queued or in flight.
    pub fn has(&self, purpose: &Purpose) -> bool {
        self.is_queued(purpose)
            || self
                .in_flight
                .as_ref()
                .is_some_and(|f| &f.purpose == purpose)
    }

    /// After the connection is lost: an Authorize falls back to the offline rules, and a
    /// Heartbeat or BootNotification is pointless (BootNotification is queued again on connect).
    pub fn drop_on_disconnect(&mut self) {
        self.queue.retain(|o| {
            !matches!(
                o.purpose,
                Purpose::Authorize(_) | Purpose::Heartbeat | Purpose::Boot
            )
        });
    }

    /// The next queued CALL that may go out: anything once registered, only BootNotification
    /// (and not before its retry time) until then.
    pub fn take_next(&mut self, link: &Link) -> Option<Outgoing> {
        let index = if link.registration == super::Registration::Accepted {
            0
        } else {
            match self.queue.iter().position(|o| o.purpose == Purpose::Boot) {
                Some(i) if link.boot_retry_at.is_none() => i,
                _ => return None,
            }
        };
        self.queue.remove(index)
    }

    /// Makes the CALL frame for `action` and records it as in flight until `timeout`.
    pub fn start_call(
        &mut self,
        action: String,
        payload: Value,
        purpose: Purpose,
        timeout: Duration,
    ) -> Frame {
        self.next_id += 1;
        let id = format!("{:x}-{}", self.boot_nonce, self.next_id);
        self.in_flight = Some(InFlight {
            id: id.clone(),
            action: action.clone(),
            purpose,
            sent: Instant::now(),
            deadline: Instant::now() + timeout,
        });
        Frame::Call {
            id,
            action,
            payload,
        }
    }

    /// The CALL in flight with this id, now answered.
    pub fn finish_call(&mut self, id: &str) -> Option<InFlight> {
        self.in_flight.take_if(|f| f.id == id)
    }

    /// The CALL in flight, when its MessageTimeout passed at `now`.
    pub fn expire_call(&mut self, now: Instant) -> Option<InFlight> {
        self.in_flight.take_if(|f| f.deadline <= now)
    }

    pub fn defer_reboot(&mut self, kind: RebootKind, deadline: Instant) {
        self.deferred_reboot = Some(DeferredReboot { kind, deadline });
    }

    /// The deferred reboot, once it is due: everything delivered, nothing deliverable
    /// (offline, not registered), or its deadline passed.
    pub fn deferred_reboot_due(
        &mut self,
        link: &Link,
        transactions: &Transactions,
    ) -> Option<RebootKind> {
        let d = self.deferred_reboot?;
        let delivered =
            transactions.journal.is_empty() && self.queue.is_empty() && self.in_flight.is_none();
        let due = !link.accepted() || Instant::now() >= d.deadline || delivered;
        if due {
            self.deferred_reboot = None;
            Some(d.kind)
        } else {
            None
        }
    }

    /// The earliest of the in-flight CALL's timeout and the deferred reboot's deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.in_flight.as_ref().map(|f| f.deadline),
            self.deferred_reboot.map(|d| d.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::chargepoint::Registration;
    use crate::stack::messages::HeartbeatRequest;

    fn link(registration: Registration, boot_retry_at: Option<Instant>) -> Link {
        Link {
            online: true,
            online_since: None,
            registration,
            boot_retry_at,
            heartbeat_at: None,
            security_change: None,
            reconnect_after_reply: false,
            report: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn until_accepted_only_boot_notification_goes_out_and_not_before_its_retry() {
        let mut out = Outbox::new(0xab);
        out.push(HeartbeatRequest {}, Purpose::Heartbeat);
        out.push_json("MeterValues", serde_json::json!({}), Purpose::Other);
        assert!(out.take_next(&link(Registration::Pending, None)).is_none());
        out.push(HeartbeatRequest {}, Purpose::Boot);
        let later = Some(Instant::now() + Duration::from_secs(5));
        assert!(out.take_next(&link(Registration::Pending, later)).is_none());
        let boot = out.take_next(&link(Registration::Pending, None)).unwrap();
        assert_eq!(boot.purpose, Purpose::Boot);
        let accepted = link(Registration::Accepted, None);
        assert_eq!(out.take_next(&accepted).unwrap().action, "Heartbeat");
        assert_eq!(out.take_next(&accepted).unwrap().action, "MeterValues");
        assert!(out.take_next(&accepted).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn calls_get_fresh_ids_and_are_answered_or_time_out_once() {
        let mut out = Outbox::new(0xab);
        let frame = out.start_call(
            "Heartbeat".into(),
            serde_json::json!({}),
            Purpose::Heartbeat,
            Duration::from_secs(30),
        );
        let Frame::Call { id, .. } = frame else {
            panic!("not a CALL");
        };
        assert_eq!(id, "ab-1");
        assert!(out.finish_call("ab-2").is_none(), "another id");
        assert!(out.has(&Purpose::Heartbeat));
        assert!(out.expire_call(Instant::now()).is_none(), "not yet");
        let later = Instant::now() + Duration::from_secs(30);
        assert_eq!(out.next_deadline(), Some(later));
        assert_eq!(out.expire_call(later).unwrap().id, "ab-1");
        assert!(
            out.finish_call("ab-1").is_none(),
            "expired calls are not answered"
        );
        let Frame::Call { id, .. } = out.start_call(
            "Heartbeat".into(),
            serde_json::json!({}),
            Purpose::Heartbeat,
            Duration::from_secs(30),
        ) else {
            panic!("not a CALL");
        };
        assert_eq!(id, "ab-2");
    }

    #[test]
    fn a_lost_connection_drops_authorize_heartbeat_and_boot_but_keeps_the_rest() {
        let mut out = Outbox::new(1);
        out.push(HeartbeatRequest {}, Purpose::Heartbeat);
        out.push(HeartbeatRequest {}, Purpose::Boot);
        out.push(HeartbeatRequest {}, Purpose::Authorize("T".into()));
        out.push(HeartbeatRequest {}, Purpose::Status);
        out.drop_on_disconnect();
        assert!(out.is_queued(&Purpose::Status));
        for gone in [
            Purpose::Heartbeat,
            Purpose::Boot,
            Purpose::Authorize("T".into()),
        ] {
            assert!(!out.is_queued(&gone), "{gone:?}");
        }
    }
}
