//! A scriptable raw CSMS for dry-run tests: a bare WebSocket server on 127.0.0.1 that answers
//! each charge point CALL with whatever a closure returns (or not at all), and can refuse the
//! upgrade with an HTTP status or leave out the `ocpp1.6` subprotocol. It serves connections
//! until dropped.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

/// How the server answers one CALL: `Some(payload)` for a CALLRESULT, `None` for silence.
pub type Answer = dyn Fn(&str, &Value) -> Option<Value> + Send + Sync;

/// How the handshake goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Upgrade {
    /// Accept with subprotocol ocpp1.6.
    Ocpp16,
    /// Accept, but agree to no subprotocol.
    NoSubprotocol,
    /// Refuse with this HTTP status.
    Refuse(u16),
}

pub struct ScriptedCsms {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedCsms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CSMS answer in UTC: the current time and an Accepted registration.
pub fn plain_answer(action: &str, _payload: &Value) -> Option<Value> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Some(match action {
        "BootNotification" => json!({"status": "Accepted", "currentTime": now, "interval": 300}),
        "Heartbeat" => json!({"currentTime": now}),
        "Authorize" => json!({"idTagInfo": {"status": "Accepted"}}),
        "StartTransaction" => json!({"transactionId": 1, "idTagInfo": {"status": "Accepted"}}),
        _ => json!({}),
    })
}

impl ScriptedCsms {
    pub async fn start(upgrade: Upgrade, answer: Arc<Answer>) -> ScriptedCsms {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("ws://{}", listener.local_addr().expect("local address"));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    // The error type is tungstenite's; its size is not ours to choose.
                    #[allow(clippy::result_large_err)]
                    let callback = move |_req: &Request, mut resp: Response| {
                        match upgrade {
                            Upgrade::Refuse(status) => {
                                let mut err = ErrorResponse::new(Some("refused".to_string()));
                                *err.status_mut() =
                                    StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                                return Err(err);
                            }
                            Upgrade::Ocpp16 => {
                                resp.headers_mut().insert(
                                    "sec-websocket-protocol",
                                    HeaderValue::from_static("ocpp1.6"),
                                );
                            }
                            Upgrade::NoSubprotocol => {}
                        }
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        let Message::Text(text) = msg else { continue };
                        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                            continue;
                        };
                        if frame[0] != 2 {
                            continue;
                        }
                        let action = frame[2].as_str().unwrap_or_default();
                        if let Some(payload) = answer(action, &frame[3]) {
                            let reply = json!([3, frame[1], payload]).to_string();
                            if ws.send(Message::Text(reply.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        ScriptedCsms { url, task }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }
}
