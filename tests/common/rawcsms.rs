//! A raw OCPP-J "CSMS" for tests: a bare tokio-tungstenite server that lets a test send any text
//! (broken frames included) to a charge point, see exactly what comes back, and refuse
//! handshakes that carry HTTP Basic credentials.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

/// Bound on every wait of the raw server.
pub const RAW_WAIT: Duration = Duration::from_secs(60);

pub struct RawCsms {
    listener: TcpListener,
    addr: SocketAddr,
}

/// What the server did with one handshake.
pub enum Handshake {
    Accepted(Box<RawConn>),
    /// Refused with HTTP 401; the Authorization header the charge point sent.
    Refused {
        authorization: Option<String>,
    },
}

/// One accepted charge point connection.
pub struct RawConn {
    ws: WebSocketStream<TcpStream>,
    /// The Authorization header of the handshake.
    pub authorization: Option<String>,
    /// The request path (`/<charge point id>`).
    pub path: String,
    /// Every CALL the charge point sent on this connection: (action, payload).
    pub cp_calls: Vec<(String, Value)>,
}

impl RawCsms {
    pub async fn bind() -> RawCsms {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        RawCsms { listener, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Accepts the next connection (ocpp1.6 agreed).
    pub async fn accept(&self) -> RawConn {
        match self.handshake(false).await {
            Handshake::Accepted(conn) => *conn,
            Handshake::Refused { .. } => unreachable!("refusal was not asked for"),
        }
    }

    /// Accepts the next connection, or refuses it with 401 when `refuse_basic_auth` is set and
    /// it carries an Authorization header.
    pub async fn handshake(&self, refuse_basic_auth: bool) -> Handshake {
        let (tcp, _) = tokio::time::timeout(RAW_WAIT, self.listener.accept())
            .await
            .expect("a charge point connects in time")
            .expect("accept");
        let seen = std::sync::Arc::new(std::sync::Mutex::new((None::<String>, String::new())));
        let seen_cb = seen.clone();
        // The error type is tungstenite's; its size is not ours to choose.
        #[allow(clippy::result_large_err)]
        let callback = move |req: &Request, mut resp: Response| {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let refuse = refuse_basic_auth && auth.is_some();
            *seen_cb.lock().expect("lock") = (auth, req.uri().path().to_string());
            if refuse {
                let mut err = ErrorResponse::new(Some("wrong credentials".to_string()));
                *err.status_mut() = StatusCode::UNAUTHORIZED;
                return Err(err);
            }
            resp.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static("ocpp1.6"),
            );
            Ok(resp)
        };
        let result =
            tokio::time::timeout(RAW_WAIT, tokio_tungstenite::accept_hdr_async(tcp, callback))
                .await
                .expect("handshake in time");
        let (authorization, path) = seen.lock().expect("lock").clone();
        match result {
            Ok(ws) => Handshake::Accepted(Box::new(RawConn {
                ws,
                authorization,
                path,
                cp_calls: Vec::new(),
            })),
            Err(_) => Handshake::Refused { authorization },
        }
    }
}

impl RawConn {
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send to the charge point");
    }

    async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(RAW_WAIT, self.ws.next())
                .await
                .expect("the charge point sends something in time")
                .expect("connection open")
                .expect("WebSocket message");
            match msg {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).expect("the charge point sends JSON");
                }
                Message::Close(_) => panic!("the charge point closed the connection"),
                _ => continue,
            }
        }
    }

    /// Answers a CALL from the charge point like a plain CSMS (Boot accepted).
    async fn answer(&mut self, frame: &Value) {
        let id = frame[1].clone();
        let action = frame[2].as_str().unwrap_or_default().to_string();
        self.cp_calls.push((action.clone(), frame[3].clone()));
        let payload = match action.as_str() {
            "BootNotification" => json!({
                "status": "Accepted",
                "currentTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "interval": 300,
            }),
            "Heartbeat" => json!({
                "currentTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
            _ => json!({}),
        };
        let text = json!([3, id, payload]).to_string();
        self.send_text(&text).await;
    }

    /// The next frame from the charge point that is not its own CALL (those are answered).
    pub async fn next_reply(&mut self) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame[0] == json!(2) {
                self.answer(&frame).await;
                continue;
            }
            return frame;
        }
    }

    /// Waits for the charge point's CALL `action` (answering every CALL on the way) and returns
    /// its payload.
    pub async fn wait_call(&mut self, action: &str) -> Value {
        loop {
            let frame = self.next_json().await;
            assert_ne!(
                frame[0],
                json!(4),
                "unexpected CALLERROR from the charge point: {frame}"
            );
            if frame[0] == json!(2) {
                self.answer(&frame).await;
                if frame[2] == json!(action) {
                    return frame[3].clone();
                }
            }
        }
    }

    /// Sends `text` and returns the charge point's answer.
    pub async fn exchange(&mut self, text: &str) -> Value {
        self.send_text(text).await;
        self.next_reply().await
    }
}
