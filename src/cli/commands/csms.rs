//! `chargectl csms --listen ADDR [--summary]`: the sandbox CSMS on its own, one line per event
//! (or with `--summary`, one line per second of counts) on stdout until Ctrl-C (exit 130). A busy
//! or unusable address exits 3 (unreachable).

use crate::cli::{Env, ExitCode, Failure, output};
use crate::csms::{
    CsmsEvent, EventKind, Sandbox, SandboxError, SandboxHandle, SandboxOptions, SandboxStats,
};
use crate::stack::rpc::Frame;
use anyhow::Context as _;
use serde_json::{Value, json};
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// A load test of this many charge points is what the open-file limit is checked against.
const LOAD_TEST_CHARGE_POINTS: u64 = 10_000;

pub async fn run(listen: String, summary: bool, env: &Env) -> anyhow::Result<ExitCode> {
    let addr = resolve(&listen).await?;
    // One descriptor per charge point: take all the process may have.
    let limit = crate::csms::raise_open_file_limit();
    let options = SandboxOptions {
        listen: addr,
        // Output comes from the broadcast; a long-running server keeps only a short history.
        log_capacity: 1024,
        record_frames: !summary,
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options).await.map_err(|e| match e {
        SandboxError::AddrInUse { .. } | SandboxError::Listen { .. } => {
            anyhow::Error::new(Failure::new(ExitCode::Unreachable, e))
        }
    })?;
    let mut events = sandbox.subscribe();
    let url = sandbox.url();
    let capacity = limit.map(|l| l.charge_points());
    if env.json {
        output::print_json_line(
            "listening",
            json!({
                "url": url,
                "addr": sandbox.local_addr().to_string(),
                "max_charge_points": capacity,
            }),
        )?;
    }
    eprintln!(
        "sandbox CSMS listening on {url} (charge points connect to {url}/<id>); Ctrl-C stops"
    );
    match limit {
        Some(l) if l.charge_points() < LOAD_TEST_CHARGE_POINTS => eprintln!(
            "chargectl: the open-file limit is {} (hard limit {}), enough for about {} charge \
             points at once; raise the hard limit (ulimit -Hn, LimitNOFILE=) for more",
            l.soft,
            l.hard,
            l.charge_points()
        ),
        _ => {}
    }
    let stop = crate::cli::shutdown_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            _ = &mut stop => break Ok(ExitCode::Interrupted),
            _ = tick.tick(), if summary => {
                if let Err(e) = print_summary(&sandbox, env) {
                    break Err(anyhow::Error::new(e).context("writing to stdout"));
                }
            }
            event = events.recv(), if !summary => match event {
                Ok(event) => {
                    if let Err(e) = print_event(&event, env) {
                        break Err(anyhow::Error::new(e).context("writing to stdout"));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    eprintln!("chargectl: output fell behind, {n} events not shown");
                }
                Err(RecvError::Closed) => break Ok(ExitCode::Ok),
            },
        }
    };
    sandbox.shutdown().await;
    outcome
}

fn print_summary(sandbox: &SandboxHandle, env: &Env) -> std::io::Result<()> {
    let stats = sandbox.stats();
    if env.json {
        return output::print_json(&json!({"type": "summary", "data": summary_json(&stats)}));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", summary_line(&stats))?;
    out.flush()
}

/// The `data` of a `{"type":"summary"}` record.
pub fn summary_json(stats: &SandboxStats) -> Value {
    json!({
        "time": crate::stack::messages::Timestamp::new(chrono::Utc::now()).to_string(),
        "connected": stats.connected,
        "connections": stats.connections,
        "refused": stats.refused,
        "booted": stats.boots_accepted,
        "boots_not_accepted": stats.boots_not_accepted,
        "messages_received": stats.frames_received,
        "messages_sent": stats.frames_sent,
        "invalid": stats.invalid,
        "call_errors_sent": stats.call_errors_sent,
    })
}

/// `HH:MM:SS  connected N (T in total)  booted B  messages R in / S out  invalid I  errors E`.
pub fn summary_line(stats: &SandboxStats) -> String {
    format!(
        "{}  connected {} ({} in total, {} refused)  booted {} ({} not accepted)  messages {} in / {} out  invalid {}  CALLERRORs sent {}",
        chrono::Utc::now().format("%H:%M:%S"),
        stats.connected,
        stats.connections,
        stats.refused,
        stats.boots_accepted,
        stats.boots_not_accepted,
        stats.frames_received,
        stats.frames_sent,
        stats.invalid,
        stats.call_errors_sent,
    )
}

/// `HOST:PORT` → the first address it resolves to.
async fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut addrs = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("--listen {listen:?}: expected HOST:PORT such as 127.0.0.1:9000"))
        .map_err(|e| Failure::new(ExitCode::Usage, e))?;
    addrs.next().ok_or_else(|| {
        Failure::new(
            ExitCode::Usage,
            anyhow::anyhow!("--listen {listen:?}: the host resolves to no address"),
        )
        .into()
    })
}

fn print_event(event: &CsmsEvent, env: &Env) -> std::io::Result<()> {
    if env.json {
        return output::print_json(&event.to_json());
    }
    let line = human_line(event);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// `HH:MM:SS.mmm  CP-ID  <-  Action  payload` (`<-` from the charge point, `->` to it).
pub fn human_line(event: &CsmsEvent) -> String {
    let time = event.at.format("%H:%M:%S%.3f");
    let cp = event.cp_id();
    match &event.kind {
        EventKind::Connected {
            path,
            subprotocol,
            basic_auth,
            tls,
            peer,
            ..
        } => {
            let auth = match basic_auth {
                None => "no basic auth".to_string(),
                Some(b) => match b.password_ok {
                    None => format!("basic auth user {:?}", b.user),
                    Some(true) => format!("basic auth user {:?}, password ok", b.user),
                    Some(false) => format!("basic auth user {:?}, WRONG password", b.user),
                },
            };
            format!(
                "{time}  {cp}  connected from {peer} path {path} subprotocol {} {} {auth}",
                subprotocol.as_deref().unwrap_or("NONE"),
                if *tls { "wss" } else { "ws" },
            )
        }
        EventKind::Refused {
            status,
            reason,
            peer,
            ..
        } => {
            format!("{time}  {cp}  refused {peer}: HTTP {status} {reason}")
        }
        EventKind::Disconnected { reason, .. } => format!("{time}  {cp}  disconnected: {reason}"),
        EventKind::Received { frame, action, .. } | EventKind::Sent { frame, action, .. } => {
            let arrow = if matches!(event.kind, EventKind::Received { .. }) {
                "<-"
            } else {
                "->"
            };
            let action = action.as_deref().unwrap_or("?");
            match &crate::stack::rpc::redact(frame) {
                Frame::Call { payload, .. } => {
                    format!("{time}  {cp}  {arrow}  {action}  {payload}")
                }
                Frame::CallResult { payload, .. } => {
                    format!("{time}  {cp}  {arrow}  {action} result  {payload}")
                }
                Frame::CallError { error, .. } => {
                    format!("{time}  {cp}  {arrow}  {action} CALLERROR  {error}")
                }
            }
        }
        EventKind::Invalid { text, error, .. } => {
            format!("{time}  {cp}  <-  INVALID ({error})  {text}")
        }
    }
}
