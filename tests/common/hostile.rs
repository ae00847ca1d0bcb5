//! A hostile OCPP-J "CSMS" for tests: a tokio-tungstenite server without any size limit that
//! can send the charge point anything (text that is not JSON, binary frames, invalid UTF-8,
//! fragments, frames of megabytes, raw bytes that break the WebSocket protocol) and reports
//! exactly what comes back, including how the charge point closed the connection.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};

/// Bound on every wait.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct HostileCsms {
    listener: TcpListener,
    addr: SocketAddr,
}

/// What came back from the charge point.
#[derive(Debug, Clone, PartialEq)]
pub enum Back {
    /// A JSON text frame (its own CALLs are answered and not reported).
    Json(Value),
    /// A text frame that is not JSON.
    NotJson(String),
    /// A close frame with this code (None: without a status code).
    Close(Option<u16>),
    /// The connection ended without a close frame (abnormal closure, 1006).
    Ended(String),
}

impl HostileCsms {
    pub async fn bind() -> HostileCsms {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        HostileCsms { listener, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Accepts the next connection, agreeing to ocpp1.6, with no message or frame size limit.
    pub async fn accept(&self) -> Peer {
        let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("the charge point connects in time")
            .expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        #[allow(clippy::result_large_err)] // tungstenite's callback contract
        let callback = |_req: &Request, mut resp: Response| {
            resp.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static("ocpp1.6"),
            );
            Ok(resp)
        };
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let ws = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)),
        )
        .await
        .expect("handshake in time")
        .expect("handshake");
        Peer {
            ws,
            cp_calls: Vec::new(),
        }
    }
}

pub struct Peer {
    pub ws: WebSocketStream<TcpStream>,
    /// Every CALL the charge point sent on this connection: (action, payload).
    pub cp_calls: Vec<(String, Value)>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Peer {
    /// Sends a text frame; false when the connection is gone.
    pub async fn text(&mut self, text: impl Into<String>) -> bool {
        self.ws.send(Message::text(text.into())).await.is_ok()
    }

    /// Sends a binary frame.
    pub async fn binary(&mut self, bytes: Vec<u8>) -> bool {
        self.ws.send(Message::binary(bytes)).await.is_ok()
    }

    /// Sends one frame as it is (any opcode, fragments, invalid UTF-8 in a text frame).
    pub async fn frame(&mut self, opcode: OpCode, payload: Vec<u8>, fin: bool) -> bool {
        self.ws
            .send(Message::Frame(Frame::message(payload, opcode, fin)))
            .await
            .is_ok()
    }

    /// Writes bytes straight onto the TCP stream, under the WebSocket framing.
    pub async fn raw(&mut self, bytes: &[u8]) -> bool {
        let tcp = self.ws.get_mut();
        tcp.write_all(bytes).await.is_ok() && tcp.flush().await.is_ok()
    }

    /// The next thing the charge point sends that is not its own CALL (those are answered like
    /// a plain CSMS: boot accepted).
    pub async fn next_back(&mut self) -> Back {
        loop {
            let msg = match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("the charge point sent nothing within {WAIT:?}"),
                Ok(None) => return Back::Ended("end of stream".into()),
                Ok(Some(Err(e))) => return Back::Ended(e.to_string()),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    let Ok(value) = serde_json::from_str::<Value>(t.as_str()) else {
                        return Back::NotJson(t.as_str().to_string());
                    };
                    if value[0] == json!(2) {
                        self.answer(&value).await;
                        continue;
                    }
                    return Back::Json(value);
                }
                Message::Close(frame) => return Back::Close(frame.map(|f| u16::from(f.code))),
                _ => continue,
            }
        }
    }

    /// Answers a CALL of the charge point like a plain CSMS.
    pub async fn answer(&mut self, frame: &Value) {
        let action = frame[2].as_str().unwrap_or_default().to_string();
        self.cp_calls.push((action.clone(), frame[3].clone()));
        let payload = match action.as_str() {
            "BootNotification" => {
                json!({"status": "Accepted", "currentTime": now(), "interval": 3600})
            }
            "Heartbeat" => json!({"currentTime": now()}),
            "StartTransaction" => json!({"transactionId": 1, "idTagInfo": {"status": "Accepted"}}),
            "Authorize" => json!({"idTagInfo": {"status": "Accepted"}}),
            _ => json!({}),
        };
        let _ = self.text(json!([3, frame[1], payload]).to_string()).await;
    }

    /// Waits for the charge point's CALL `action` (answering every CALL on the way).
    pub async fn wait_call(&mut self, action: &str) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {action} within {WAIT:?}"))
                .unwrap_or_else(|| panic!("connection ended while waiting for {action}"))
                .expect("WebSocket message");
            if let Message::Text(t) = msg {
                let value: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if value[0] == json!(2) {
                    self.answer(&value).await;
                    if value[2] == json!(action) {
                        return value[3].clone();
                    }
                }
            }
        }
    }

    /// Waits until the charge point is registered and has reported both connectors.
    pub async fn booted(&mut self) {
        self.wait_call("BootNotification").await;
        loop {
            let p = self.wait_call("StatusNotification").await;
            if p["connectorId"] == 1 {
                return;
            }
        }
    }

    /// Sends `text` and returns what comes back.
    pub async fn exchange(&mut self, text: impl Into<String>) -> Back {
        assert!(self.text(text).await, "the connection is open");
        self.next_back().await
    }

    /// A plain GetConfiguration is answered with a CALLRESULT.
    pub async fn still_answers(&mut self, id: &str) -> Result<(), String> {
        let call = json!([2, id, "GetConfiguration", {"key": ["HeartbeatInterval"]}]).to_string();
        if !self.text(call).await {
            return Err("the connection is closed".into());
        }
        match self.next_back().await {
            Back::Json(v)
                if v[0] == 3
                    && v[1] == id
                    && v[2]["configurationKey"][0]["key"] == "HeartbeatInterval" =>
            {
                Ok(())
            }
            other => Err(format!("GetConfiguration {id} answered with {other:?}")),
        }
    }

    /// Sends `msgs` while reading what comes back, until the charge point closes the connection
    /// (or it ends); answers nothing. Writes that fail once the charge point has closed are
    /// ignored: what counts is how it closed.
    pub async fn send_and_watch(&mut self, msgs: Vec<Message>) -> Back {
        let (mut sink, mut stream) = (&mut self.ws).split();
        let write = async move {
            for m in msgs {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        };
        let read = async move {
            loop {
                match tokio::time::timeout(WAIT, stream.next()).await {
                    Err(_) => panic!("the charge point did not close within {WAIT:?}"),
                    Ok(None) => return Back::Ended("end of stream".into()),
                    Ok(Some(Err(e))) => return Back::Ended(e.to_string()),
                    Ok(Some(Ok(Message::Close(f)))) => {
                        return Back::Close(f.map(|f| u16::from(f.code)));
                    }
                    Ok(Some(Ok(_))) => continue,
                }
            }
        };
        let ((), back) = tokio::join!(write, read);
        back
    }

    /// Reads until the connection ends; returns the close code the charge point sent, if it
    /// sent a close frame.
    pub async fn until_closed(&mut self) -> Back {
        loop {
            match self.next_back().await {
                Back::Json(_) | Back::NotJson(_) => continue,
                other => return other,
            }
        }
    }
}

/// Close code `code` arrived, possibly after frames the test ignores.
pub fn closed_with(back: &Back, code: u16) -> bool {
    matches!(back, Back::Close(Some(c)) if *c == code)
}

/// A text message split into `parts` fragments, as frames.
pub fn fragments(payload: &[u8], parts: usize) -> Vec<Message> {
    let size = payload.len().div_ceil(parts.max(1)).max(1);
    let chunks: Vec<&[u8]> = payload.chunks(size).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            Message::Frame(Frame::message(chunk.to_vec(), opcode, i == last))
        })
        .collect()
}

/// One frame as it is (any opcode, a fragment, invalid UTF-8 in a text frame).
pub fn raw_frame(opcode: OpCode, payload: &[u8], fin: bool) -> Message {
    Message::Frame(Frame::message(payload.to_vec(), opcode, fin))
}

pub use tungstenite::Message as WsMessage;
pub use tungstenite::protocol::frame::coding::Data as FrameData;
pub use tungstenite::protocol::frame::coding::OpCode as FrameOpCode;
