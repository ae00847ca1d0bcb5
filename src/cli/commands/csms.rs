//! `chargectl csms --listen ADDR`: the sandbox CSMS on its own, one line per event on stdout
//! until Ctrl-C (exit 130). A busy or unusable address exits 3 (unreachable).

use crate::cli::{Env, ExitCode, Failure, output};
use crate::csms::{CsmsEvent, EventKind, Sandbox, SandboxError, SandboxOptions};
use crate::stack::rpc::Frame;
use anyhow::Context as _;
use serde_json::json;
use std::io::Write as _;
use std::net::SocketAddr;
use tokio::sync::broadcast::error::RecvError;

pub async fn run(listen: String, env: &Env) -> anyhow::Result<ExitCode> {
    let addr = resolve(&listen).await?;
    let options = SandboxOptions {
        listen: addr,
        // Output comes from the broadcast; a long-running server keeps only a short history.
        log_capacity: 1024,
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options).await.map_err(|e| match e {
        SandboxError::AddrInUse { .. } | SandboxError::Listen { .. } => {
            anyhow::Error::new(Failure::new(ExitCode::Unreachable, e))
        }
    })?;
    let mut events = sandbox.subscribe();
    let url = sandbox.url();
    if env.json {
        output::print_json_line(
            "listening",
            json!({ "url": url, "addr": sandbox.local_addr().to_string() }),
        )?;
    }
    eprintln!(
        "sandbox CSMS listening on {url} (charge points connect to {url}/<id>); Ctrl-C stops"
    );
    let stop = crate::cli::shutdown_signal();
    tokio::pin!(stop);
    let outcome = loop {
        tokio::select! {
            _ = &mut stop => break Ok(ExitCode::Interrupted),
            event = events.recv() => match event {
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
