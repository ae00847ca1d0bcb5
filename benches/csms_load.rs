//! The sandbox CSMS under a boot storm: N raw OCPP-J charge points connect at once, each boots,
//! reports Available, sends a Heartbeat and runs a short transaction (StartTransaction,
//! StopTransaction); then every one sends 10 more Heartbeats.
//!
//! `cargo bench --bench csms_load` runs N = 1,000 and 10,000 (`CSMS_LOAD_N=500,2000` picks
//! others) and prints, per run:
//!
//! - **all connected / all booted**: from the start of the storm until the last WebSocket
//!   handshake completed / the last BootNotification was answered;
//! - **connect p99**, **boot p50 / p99**: per charge point, handshake time from the start of the
//!   storm, and BootNotification round trip;
//! - **RSS/conn**: the CSMS process's resident memory (VmRSS) with all N connected, minus its
//!   resident memory before the first connection, divided by N;
//! - **CPU/msg storm**: the CSMS process's CPU time (user + system, getrusage) during the storm,
//!   TCP accepts and WebSocket handshakes included, divided by the OCPP messages it received and
//!   sent; **CPU/msg steady**: the same for the 10 Heartbeats per charge point (connections
//!   already open);
//! - **errors**: charge points that failed, and boots not Accepted.
//!
//! Each run uses three processes so that one's memory and CPU do not blur another's: this one
//! orchestrates, a child runs the CSMS (and measures itself), a grandchild runs the clients
//! (tokio-tungstenite, no charge point stack). The sandbox counts frames without recording
//! them, as for a load test; `CSMS_LOAD_RECORD=1` records every frame as an event (the
//! default for tests and `chargectl csms`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on what it sets up

#[path = "../tests/common/raw_fleet.rs"]
mod raw_fleet;

use chargectl::csms::{Sandbox, SandboxOptions};
use raw_fleet::{FleetPlan, boot_storm, heartbeats, percentile};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const ROLE: &str = "CSMS_LOAD_ROLE";
const STEADY_ROUNDS: u32 = 10;

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("csms") => csms_role(),
        Ok("clients") => clients_role(),
        _ => orchestrate(),
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("CSMS_LOAD_N")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect()
}

fn orchestrate() {
    println!(
        "{:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "N",
        "connected",
        "booted",
        "conn p99",
        "boot p50",
        "boot p99",
        "RSS/conn",
        "CPU/msg",
        "CPU/msg",
        "errors"
    );
    println!(
        "{:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "", "all (s)", "all (s)", "(ms)", "(ms)", "(ms)", "(KiB)", "storm µs", "steady µs", ""
    );
    for n in sizes() {
        let out = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "csms")
            .env("CSMS_LOAD_COUNT", n.to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("the CSMS process runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(r) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .next_back()
        else {
            println!("{n:>6} failed: {text}");
            continue;
        };
        let ms = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{n:>6} {:>10.2} {:>10.2} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>7}",
            ms("all_connected_ms") / 1000.0,
            ms("all_booted_ms") / 1000.0,
            ms("connect_p99_ms"),
            ms("boot_p50_ms"),
            ms("boot_p99_ms"),
            ms("rss_per_conn_kib"),
            ms("cpu_per_msg_storm_us"),
            ms("cpu_per_msg_steady_us"),
            r["errors"].as_u64().unwrap_or(u64::MAX),
        );
    }
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn csms_role() {
    let n: usize = std::env::var("CSMS_LOAD_COUNT").unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let limit = chargectl::csms::raise_open_file_limit();
        if let Some(limit) = limit
            && (limit.soft as usize) < n + 64
        {
            eprintln!(
                "csms_load: open-file limit {} is too low for {n}",
                limit.soft
            );
        }
        let sandbox = Sandbox::start(SandboxOptions {
            // CSMS_LOAD_RECORD=1 records every frame, as the sandbox does by default.
            record_frames: std::env::var_os("CSMS_LOAD_RECORD").is_some(),
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let rss_before = vm_rss_kib();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "clients")
            .env("CSMS_LOAD_COUNT", n.to_string())
            .env("CSMS_LOAD_URL", sandbox.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut to_child = child.stdin.take().unwrap();
        let mut from_child = BufReader::new(child.stdout.take().unwrap());
        let cpu0 = cpu_time();
        let stats0 = sandbox.stats();
        let mut line = String::new();
        // The blocking read is fine: the sandbox runs on the runtime's worker threads.
        tokio::task::block_in_place(|| from_child.read_line(&mut line)).unwrap();
        let cpu1 = cpu_time();
        let stats1 = sandbox.stats();
        let rss_connected = vm_rss_kib();
        let mut storm: Value = serde_json::from_str(&line).unwrap_or(json!({}));
        writeln!(to_child, "steady").unwrap();
        line.clear();
        tokio::task::block_in_place(|| from_child.read_line(&mut line)).unwrap();
        let cpu2 = cpu_time();
        let stats2 = sandbox.stats();
        let steady: Value = serde_json::from_str(&line).unwrap_or(json!({}));
        writeln!(to_child, "close").unwrap();
        tokio::task::block_in_place(|| child.wait()).unwrap();
        let messages = |a: &chargectl::csms::SandboxStats, b: &chargectl::csms::SandboxStats| {
            (b.frames_received + b.frames_sent) - (a.frames_received + a.frames_sent)
        };
        let storm_msgs = messages(&stats0, &stats1).max(1);
        let steady_msgs = messages(&stats1, &stats2).max(1);
        storm["rss_per_conn_kib"] =
            json!(rss_connected.saturating_sub(rss_before) as f64 / n as f64);
        storm["cpu_per_msg_storm_us"] =
            json!((cpu1 - cpu0).as_secs_f64() * 1e6 / storm_msgs as f64);
        storm["cpu_per_msg_steady_us"] =
            json!((cpu2 - cpu1).as_secs_f64() * 1e6 / steady_msgs as f64);
        storm["boots_accepted"] = json!(stats2.boots_accepted);
        let errors = storm["errors"].as_u64().unwrap_or(0)
            + steady["errors"].as_u64().unwrap_or(0)
            + (n as u64).saturating_sub(stats2.boots_accepted);
        storm["errors"] = json!(errors);
        println!("{storm}");
        sandbox.shutdown().await;
    });
}

fn clients_role() {
    let n: usize = std::env::var("CSMS_LOAD_COUNT").unwrap().parse().unwrap();
    let url = std::env::var("CSMS_LOAD_URL").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        chargectl::csms::raise_open_file_limit();
        let plan = FleetPlan {
            url,
            count: n,
            id_prefix: "LOAD".into(),
            transaction: true,
            timeout: Duration::from_secs(120),
        };
        let (outcomes, cps) = boot_storm(&plan).await;
        let failed: Vec<&str> = outcomes.iter().filter_map(|o| o.error.as_deref()).collect();
        if let Some(first) = failed.first() {
            eprintln!(
                "csms_load: {} charge points failed, first: {first}",
                failed.len()
            );
        }
        let not_accepted = outcomes
            .iter()
            .filter(|o| o.error.is_none() && o.boot_status != "Accepted")
            .count();
        let mut connects: Vec<Duration> = outcomes.iter().map(|o| o.connected_after).collect();
        let mut boots: Vec<Duration> = outcomes.iter().map(|o| o.boot_latency).collect();
        let booted_at: Vec<Duration> = outcomes
            .iter()
            .map(|o| o.connected_after + o.boot_latency)
            .collect();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let report = json!({
            "all_connected_ms": ms(connects.iter().copied().max().unwrap_or_default()),
            "all_booted_ms": ms(booted_at.iter().copied().max().unwrap_or_default()),
            "connect_p99_ms": ms(percentile(&mut connects, 99.0)),
            "boot_p50_ms": ms(percentile(&mut boots, 50.0)),
            "boot_p99_ms": ms(percentile(&mut boots, 99.0)),
            "errors": failed.len() + not_accepted,
        });
        println!("{report}");
        std::io::stdout().flush().unwrap();
        let mut stdin = BufReader::new(std::io::stdin());
        let mut line = String::new();
        tokio::task::block_in_place(|| stdin.read_line(&mut line)).unwrap();
        let (cps, answered, error) = heartbeats(cps, STEADY_ROUNDS, plan.timeout).await;
        if let Some(e) = &error {
            eprintln!("csms_load: steady phase error: {e}");
        }
        let expected = cps.len() as u64 * u64::from(STEADY_ROUNDS);
        println!(
            "{}",
            json!({"answered": answered, "errors": expected.saturating_sub(answered)})
        );
        std::io::stdout().flush().unwrap();
        line.clear();
        tokio::task::block_in_place(|| stdin.read_line(&mut line)).unwrap();
        drop(cps);
    });
}
