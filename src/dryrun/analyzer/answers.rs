//! The CSMS's answers to the charger's CALLs: registration, authorization and transaction
//! answers, CALLERRORs, and what each means for the site.

use serde_json::Value;

use super::{Analyzer, Pending, Stamp};
use crate::dryrun::findings::{HEARTBEAT_RANGE, Rule};

impl Analyzer {
    /// The CSMS answered one of the charger's CALLs.
    pub(super) fn on_csms_answer(
        &mut self,
        at: Stamp,
        call: &Pending,
        frame: &Value,
        result: Result<&Value, String>,
    ) {
        let action = call.action.as_str();
        let request = self.request(at, "received", Some(action), frame);
        match result {
            Ok(payload) => match action {
                "BootNotification" => {
                    let status = payload["status"].as_str().unwrap_or("?").to_string();
                    match status.as_str() {
                        "Accepted" => {
                            self.ever_accepted = true;
                            if let Some(since) = self.pending_since.take() {
                                let seconds = at.elapsed.saturating_sub(since.elapsed).as_secs();
                                self.record(
                                    Rule::BootPending { seconds },
                                    Some(request.clone()),
                                    None,
                                );
                            }
                            if let Some(n) = payload["interval"].as_u64()
                                && n > 0
                                && !HEARTBEAT_RANGE.contains(&n)
                            {
                                self.record(
                                    Rule::HeartbeatInterval {
                                        value: n,
                                        source: "BootNotification".into(),
                                    },
                                    Some(request),
                                    None,
                                );
                            }
                        }
                        "Pending" => {
                            self.pending_since.get_or_insert(at);
                        }
                        _ => {}
                    }
                    self.stats.registration = Some(status);
                }
                "Authorize" | "StartTransaction" => {
                    self.exercised
                        .insert(crate::dryrun::findings::Area::Authorization);
                    let status = payload["idTagInfo"]["status"].as_str().unwrap_or("?");
                    if status != "Accepted" {
                        let id_tag = call.frame[3]["idTag"].as_str().unwrap_or("?").to_string();
                        let expected = self.ctx.expectations.accepted_id_tags.contains(&id_tag);
                        self.record(
                            Rule::IdTagNotAccepted {
                                id_tag,
                                status: status.to_string(),
                                expected,
                            },
                            Some(request),
                            Some(format!("answer to {action}")),
                        );
                    }
                }
                _ => {}
            },
            Err(code) => {
                if matches!(
                    action,
                    "StartTransaction" | "StopTransaction" | "MeterValues"
                ) {
                    self.record(
                        Rule::TransactionMessageError {
                            action: action.to_string(),
                            code,
                        },
                        Some(request),
                        None,
                    );
                }
            }
        }
    }
}
