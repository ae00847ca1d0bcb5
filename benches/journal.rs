//! Throughput of the transaction message journal.
//!
//! `cargo bench --bench journal` prints two figures:
//!
//! 1. **journal**: `Journal::push` of a MeterValues message (≈ 300 bytes of JSON) followed by
//!    `Journal::complete`, each appended and fsynced (`sync_data`) before it returns, as the
//!    charge point does for every transaction message. Messages per second = pushes per second.
//! 2. **delivery**: one message's whole life on a loopback connection: push (fsync), send it as an
//!    OCPP-J CALL over a WebSocket to the sandbox CSMS on 127.0.0.1, wait for its CALLRESULT,
//!    complete (fsync). One message in flight at a time, as OCPP 1.6 requires.
//!
//! The journal lives in a temporary directory (the file system of `$TMPDIR`), so the figures
//! depend mostly on that disk's fsync latency.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use chargectl::csms::{Sandbox, SandboxOptions};
use chargectl::stack::journal::Journal;
use chargectl::stack::rpc::Frame;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn meter_values(i: u64) -> Value {
    json!({
        "connectorId": 1,
        "transactionId": -1,
        "meterValue": [{
            "timestamp": "2026-11-26T08:00:00.000Z",
            "sampledValue": [
                {"value": format!("{}", 1000 + i), "context": "Sample.Periodic", "format": "Raw",
                 "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
                {"value": "16.0", "context": "Sample.Periodic", "format": "Raw",
                 "measurand": "Current.Import", "location": "Outlet", "unit": "A", "phase": "L1"}
            ]
        }]
    })
}

fn report(name: &str, n: u64, elapsed: Duration, what: &str) {
    let per_sec = n as f64 / elapsed.as_secs_f64();
    let per_msg_us = elapsed.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{name:<10} {n:>6} messages in {:>8.3} s: {per_sec:>9.0} messages/s, {per_msg_us:>8.1} µs each ({what})",
        elapsed.as_secs_f64()
    );
}

fn bench_journal(n: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut journal = Journal::open(dir.path())?;
    let tx = journal.new_local_tx()?;
    // Push only (the queue grows, as during an outage).
    let t = Instant::now();
    for i in 0..n {
        journal.push("MeterValues", meter_values(i), tx)?;
    }
    report("push", n, t.elapsed(), "push with fsync, queue growing");
    // Drain.
    let t = Instant::now();
    while let Some(seq) = journal.front().map(|e| e.seq) {
        journal.complete(seq)?;
    }
    report(
        "complete",
        n,
        t.elapsed(),
        "complete with fsync, including compactions",
    );
    // Steady state: push then complete.
    let t = Instant::now();
    for i in 0..n {
        let seq = journal.push("MeterValues", meter_values(i), tx)?;
        journal.complete(seq)?;
    }
    report(
        "journal",
        n,
        t.elapsed(),
        "push + complete, two fsyncs per message",
    );
    Ok(())
}

async fn bench_delivery(n: u64) -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let mut request = format!("{}/BENCH-1", sandbox.url()).into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp1.6"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let dir = tempfile::tempdir()?;
    let mut journal = Journal::open(dir.path())?;
    let tx = journal.new_local_tx()?;
    journal.set_transaction_id(tx, 1)?;
    let t = Instant::now();
    for i in 0..n {
        let seq = journal.push("MeterValues", meter_values(i), tx)?;
        let entry = journal
            .front()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("queue empty"))?;
        let mut payload = entry.payload;
        payload["transactionId"] = json!(journal.transaction_id(tx).unwrap_or(-1));
        let id = format!("b-{i}");
        let call = Frame::Call {
            id: id.clone(),
            action: entry.action,
            payload,
        };
        ws.send(Message::text(call.to_text())).await?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .map_err(|_| anyhow::anyhow!("no answer to {id} within 10 s"))?
                .ok_or_else(|| anyhow::anyhow!("connection closed"))??;
            if let Message::Text(text) = msg
                && let Ok(Frame::CallResult { id: got, .. }) = Frame::parse(&text)
                && got == id
            {
                break;
            }
        }
        journal.complete(seq)?;
    }
    report(
        "delivery",
        n,
        t.elapsed(),
        "push + CALL to loopback sandbox + CALLRESULT + complete",
    );
    let _ = ws.close(None).await;
    sandbox.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("JOURNAL_BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!("transaction journal benchmark ({n} MeterValues messages per figure)");
    bench_journal(n)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench_delivery(n))?;
    Ok(())
}
