//! A fleet of raw OCPP-J charge points for load tests of a central system: bare
//! tokio-tungstenite clients with no charge point stack, all connecting at once (a boot storm
//! after a power cut). Each one boots, reports its connector Available, sends a Heartbeat and,
//! if asked, a short transaction (StartTransaction, StopTransaction), then stays connected until
//! the caller drops it. Used by the sandbox CSMS test and the `csms_load` benchmark.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What every charge point of the fleet does.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// `ws://HOST:PORT`; charge point `n` connects to `<url>/<prefix><n>`.
    pub url: String,
    pub count: usize,
    pub id_prefix: String,
    /// Also run StartTransaction and StopTransaction after the Heartbeat.
    pub transaction: bool,
    /// Bound on each connect and each answer.
    pub timeout: Duration,
}

/// How one charge point fared.
#[derive(Debug, Clone, Default)]
pub struct CpOutcome {
    pub id: String,
    /// From the start of the storm until the WebSocket handshake completed.
    pub connected_after: Duration,
    /// From sending BootNotification to its CALLRESULT.
    pub boot_latency: Duration,
    /// `status` of the BootNotification answer.
    pub boot_status: String,
    /// CALLs answered with a CALLRESULT.
    pub results: u32,
    /// The first thing that went wrong, if any.
    pub error: Option<String>,
}

/// One connected charge point of the fleet.
pub struct RawCp {
    pub id: String,
    ws: Ws,
    next: u64,
}

impl RawCp {
    /// Sends a CALL and waits for the frame answering it; returns `[3, id, payload]` or
    /// `[4, id, code, ...]` as JSON.
    pub async fn call(
        &mut self,
        action: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        self.next += 1;
        let id = format!("{}-{}", self.id, self.next);
        let text = json!([2, id, action, payload]).to_string();
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| format!("{action}: send failed: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("{action}: no answer within {timeout:?}"))?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str())
                        .map_err(|e| format!("{action}: answer is not JSON: {e}"))?;
                    if v[1] == json!(id) {
                        return Ok(v);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("{action}: connection error: {e}")),
                None => return Err(format!("{action}: connection closed")),
            }
        }
    }

    /// A CALL that must get a CALLRESULT; returns its payload.
    pub async fn result(
        &mut self,
        action: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let answer = self.call(action, payload, timeout).await?;
        if answer[0] == json!(3) {
            Ok(answer[2].clone())
        } else {
            Err(format!("{action}: answered {answer}"))
        }
    }
}

/// Small buffers: OCPP messages are a few hundred bytes and there are thousands of clients.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
}

pub async fn connect(url: &str, id: &str) -> Result<RawCp, String> {
    let mut request = format!("{url}/{id}")
        .into_client_request()
        .map_err(|e| format!("bad URL: {e}"))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp1.6"),
    );
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(client_config()), true)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
    Ok(RawCp {
        id: id.to_string(),
        ws,
        next: 0,
    })
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The boot sequence of one charge point; fills `out` as it goes.
async fn boot_one(
    plan: &FleetPlan,
    started: Instant,
    id: String,
    out: &mut CpOutcome,
) -> Result<RawCp, String> {
    out.id = id.clone();
    let mut cp = tokio::time::timeout(plan.timeout, connect(&plan.url, &id))
        .await
        .map_err(|_| format!("connect: no handshake within {:?}", plan.timeout))??;
    out.connected_after = started.elapsed();
    let boot_sent = Instant::now();
    let boot = cp
        .result(
            "BootNotification",
            json!({"chargePointVendor": "Zaptec", "chargePointModel": "Go",
                   "chargePointSerialNumber": id}),
            plan.timeout,
        )
        .await?;
    out.boot_latency = boot_sent.elapsed();
    out.boot_status = boot["status"].as_str().unwrap_or_default().to_string();
    out.results += 1;
    cp.result(
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
        plan.timeout,
    )
    .await?;
    out.results += 1;
    cp.result("Heartbeat", json!({}), plan.timeout).await?;
    out.results += 1;
    if plan.transaction {
        let start = cp
            .result(
                "StartTransaction",
                json!({"connectorId": 1, "idTag": "LOADTEST", "meterStart": 0,
                       "timestamp": now()}),
                plan.timeout,
            )
            .await?;
        out.results += 1;
        let tx = start["transactionId"].clone();
        cp.result(
            "StopTransaction",
            json!({"transactionId": tx, "meterStop": 1200, "timestamp": now(),
                   "idTag": "LOADTEST", "reason": "EVDisconnected"}),
            plan.timeout,
        )
        .await?;
        out.results += 1;
    }
    Ok(cp)
}

/// Starts every charge point at once and returns when each has finished its sequence or
/// failed: the outcomes in id order, and the charge points still connected.
pub async fn boot_storm(plan: &FleetPlan) -> (Vec<CpOutcome>, Vec<RawCp>) {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for n in 0..plan.count {
        let plan = plan.clone();
        tasks.spawn(async move {
            let id = format!("{}{n:05}", plan.id_prefix);
            let mut out = CpOutcome::default();
            match boot_one(&plan, started, id, &mut out).await {
                Ok(cp) => (n, out, Some(cp)),
                Err(e) => {
                    out.error = Some(e);
                    (n, out, None)
                }
            }
        });
    }
    let mut outcomes = vec![CpOutcome::default(); plan.count];
    let mut connected = Vec::with_capacity(plan.count);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((n, out, cp)) => {
                outcomes[n] = out;
                connected.extend(cp);
            }
            Err(e) => eprintln!("raw fleet: a charge point task failed: {e}"),
        }
    }
    (outcomes, connected)
}

/// Every connected charge point sends `rounds` Heartbeats, one after the other, all charge
/// points at once; returns the number answered and the first error.
pub async fn heartbeats(
    cps: Vec<RawCp>,
    rounds: u32,
    timeout: Duration,
) -> (Vec<RawCp>, u64, Option<String>) {
    let mut tasks = JoinSet::new();
    for mut cp in cps {
        tasks.spawn(async move {
            let mut ok = 0u64;
            for _ in 0..rounds {
                if let Err(e) = cp.result("Heartbeat", json!({}), timeout).await {
                    return (cp, ok, Some(e));
                }
                ok += 1;
            }
            (cp, ok, None)
        });
    }
    let mut back = Vec::new();
    let (mut answered, mut first_error) = (0u64, None);
    while let Some(joined) = tasks.join_next().await {
        if let Ok((cp, ok, error)) = joined {
            back.push(cp);
            answered += ok;
            if first_error.is_none() {
                first_error = error;
            }
        }
    }
    (back, answered, first_error)
}

/// The `p`-th percentile (0 to 100) of `values`, by nearest rank.
pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
