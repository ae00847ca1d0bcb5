//! Fleet emulation at scale: N complete charge points in one process against the sandbox CSMS,
//! and the same load from the Python `ocpp` package's ChargePoint as a fleet.
//!
//! `cargo bench --bench fleet` runs N = 1,000 and 10,000 (`FLEET_BENCH_N=500,2000` picks
//! others), each with no ramp (every charge point at once, a boot storm) and at a ramp of 500
//! per second, then prints the ratios to the Python fleet (`FLEET_BENCH_PYTHON=0` skips it;
//! it needs the venv of `tests/interop/setup.sh`). Every charge point boots, then runs one short
//! session (plug, card, Authorize, StartTransaction, 2 s of charging, unplug,
//! StopTransaction, with their StatusNotifications). Per run:
//!
//! - **all booted**: from the first charge point's start until every one was booted;
//! - **boot p50 / p99**: per charge point, from its start (its slot in the ramp) until its
//!   BootNotification was accepted: TCP connect, WebSocket handshake and the BootNotification
//!   round trip;
//! - **RSS/CP**: the fleet process's resident memory (VmRSS) after the sessions, minus that of
//!   the same run with N = 1, divided by N;
//! - **CPU/msg**: the fleet process's CPU time (user + system, getrusage) from its start to the
//!   end of the sessions, divided by the OCPP messages it sent and received;
//! - **errors**: failed connects, lost connections, CALLERRORs, timeouts, boots not accepted,
//!   charge points not booted or sessions not completed.
//!
//! Each run uses its own processes: this one orchestrates, a child runs the sandbox CSMS
//! (frames counted, not recorded), another the fleet. The chargectl fleet's state directories
//! (under `target/fleet-bench`, removed at the end) come from a first, unmeasured run, as a site
//! in service whose chargers reboot after a power cut; that run's time to prepare them is
//! printed too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on what it sets up

use chargectl::csms::{Sandbox, SandboxOptions};
use chargectl::emulator::fleet::{Fleet, FleetOptions, IdTemplate, SessionSpec};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const ROLE: &str = "FLEET_BENCH_ROLE";
/// The ramp of the ramped runs (charge points per second).
const RAMP: f64 = 500.0;
/// Charging time of each session.
const SESSION: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(300);

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("csms") => csms_role(),
        Ok("fleet") => fleet_role(),
        _ => orchestrate(),
    }
}

fn sizes() -> Vec<u64> {
    std::env::var("FLEET_BENCH_N")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Runs one fleet (`impl_` rust or python) of `n` against a fresh CSMS process; its JSON report.
fn run(impl_: &str, n: u64, ramp: Option<f64>, dir: &Path) -> Value {
    let mut csms = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "csms")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut csms_out = BufReader::new(csms.stdout.take().unwrap());
    let mut line = String::new();
    csms_out.read_line(&mut line).unwrap();
    let url = serde_json::from_str::<Value>(&line).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let ramp_arg = ramp.map(|r| r.to_string()).unwrap_or_default();
    let out = match impl_ {
        "rust" => Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "fleet")
            .env("FLEET_BENCH_COUNT", n.to_string())
            .env("FLEET_BENCH_RAMP", &ramp_arg)
            .env("FLEET_BENCH_URL", &url)
            .env("FLEET_BENCH_DIR", dir)
            .stderr(Stdio::inherit())
            .output()
            .unwrap(),
        _ => {
            let mut cmd = Command::new(root().join(".venv/bin/python"));
            cmd.arg(root().join("benches/fleet_ocpp.py"))
                .args(["--url", &url, "--count", &n.to_string()])
                .args(["--session", &SESSION.as_secs_f64().to_string()]);
            if let Some(r) = ramp {
                cmd.args(["--ramp", &r.to_string()]);
            }
            cmd.stderr(Stdio::inherit()).output().unwrap()
        }
    };
    drop(csms.stdin.take());
    let _ = csms.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .next_back()
        .unwrap_or_else(|| json!({"failed": text.to_string()}))
}

fn python_available() -> bool {
    std::env::var("FLEET_BENCH_PYTHON").as_deref() != Ok("0")
        && root().join(".venv/bin/python").exists()
}

fn orchestrate() {
    let base = root().join("target/fleet-bench");
    let python = python_available();
    if !python {
        println!(
            "(the Python fleet is skipped: run tests/interop/setup.sh for its venv, or unset FLEET_BENCH_PYTHON=0)"
        );
    }
    println!(
        "{:<7} {:>6} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "fleet",
        "N",
        "ramp",
        "all booted",
        "boot p50",
        "boot p99",
        "RSS/CP",
        "CPU/msg",
        "messages",
        "errors"
    );
    println!(
        "{:<7} {:>6} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "", "", "/s", "(s)", "(ms)", "(ms)", "(KiB)", "(µs)", "", ""
    );
    let mut rows: Vec<(String, u64, Option<f64>, Value)> = Vec::new();
    for n in sizes() {
        let dir = base.join(format!("n{n}"));
        let one = base.join("n1");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&one);
        // The site is commissioned once: state directories made, configuration written.
        let started = std::time::Instant::now();
        let first = run("rust", n, None, &dir);
        run("rust", 1, None, &one);
        println!(
            "(first boot of {n} on empty state directories: {:.1} s including their preparation of {:.1} s, {} errors {})",
            started.elapsed().as_secs_f64(),
            first["prepare_s"].as_f64().unwrap_or(f64::NAN),
            first["errors"],
            first["error_kinds"]
        );
        for impl_ in ["rust", "python"] {
            if impl_ == "python" && !python {
                continue;
            }
            let baseline = run(impl_, 1, None, &one);
            for ramp in [None, Some(RAMP)] {
                let mut r = run(impl_, n, ramp, &dir);
                let rss = r["rss_kib"].as_f64().unwrap_or(f64::NAN);
                let rss1 = baseline["rss_kib"].as_f64().unwrap_or(f64::NAN);
                r["rss_per_cp_kib"] = json!((rss - rss1) / n as f64);
                let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                println!(
                    "{:<7} {:>6} {:>5} {:>10.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>7}",
                    impl_,
                    n,
                    ramp.map(|r| format!("{r:.0}"))
                        .unwrap_or_else(|| "none".into()),
                    f("all_booted_s"),
                    f("boot_p50_ms"),
                    f("boot_p99_ms"),
                    f("rss_per_cp_kib"),
                    f("cpu_per_msg_us"),
                    r["messages"].as_u64().unwrap_or(0),
                    r["errors"]
                        .as_u64()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| format!("{r}")),
                );
                rows.push((impl_.to_string(), n, ramp, r));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&one);
    }
    let _ = std::fs::remove_dir_all(&base);
    if python {
        println!("\nratios, Python ocpp fleet / chargectl fleet (above 1: chargectl is better):");
        for (impl_, n, ramp, py) in &rows {
            if impl_ != "python" {
                continue;
            }
            let Some((_, _, _, rs)) = rows
                .iter()
                .find(|(i, m, r, _)| i == "rust" && m == n && r == ramp)
            else {
                continue;
            };
            let ratio =
                |k: &str| py[k].as_f64().unwrap_or(f64::NAN) / rs[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "N {:>6} ramp {:>4}: all booted {:.1}x, boot p99 {:.1}x, RSS/CP {:.1}x, CPU/msg {:.1}x",
                n,
                ramp.map(|r| format!("{r:.0}"))
                    .unwrap_or_else(|| "none".into()),
                ratio("all_booted_s"),
                ratio("boot_p99_ms"),
                ratio("rss_per_cp_kib"),
                ratio("cpu_per_msg_us"),
            );
        }
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
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        chargectl::rlimit::raise_open_file_limit();
        let sandbox = Sandbox::start(SandboxOptions {
            record_frames: false,
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        println!("{}", json!({"url": sandbox.url()}));
        std::io::stdout().flush().unwrap();
        // Until the orchestrator closes stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await;
        sandbox.shutdown().await;
    });
}

fn fleet_role() {
    let n: u64 = std::env::var("FLEET_BENCH_COUNT").unwrap().parse().unwrap();
    let ramp: Option<f64> = std::env::var("FLEET_BENCH_RAMP")
        .ok()
        .and_then(|r| r.parse().ok());
    let url = std::env::var("FLEET_BENCH_URL").unwrap();
    let dir = PathBuf::from(std::env::var("FLEET_BENCH_DIR").unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let limit = chargectl::rlimit::raise_open_file_limit().unwrap();
        limit.check(n, "the fleet").unwrap();
        let cpu0 = cpu_time();
        let template = IdTemplate::parse("BENCH-{n:05}").unwrap();
        let mut opts = FleetOptions::new(&dir, &url, n, template);
        opts.ramp = ramp;
        let prepare = std::time::Instant::now();
        let fleet = Fleet::start(opts).await.unwrap();
        // Fleet::start returns once the state directories are prepared and the start begins.
        let prepare_s = prepare.elapsed().as_secs_f64();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut summary = fleet.summary();
        while summary.booted < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            summary = fleet.summary();
        }
        let booted = summary.clone();
        for i in 0..fleet.ids().len() {
            let spec = SessionSpec {
                id_tag: format!("B{i:07}"),
                amps: 16.0,
                length: SESSION,
            };
            fleet.start_session(i, spec).await;
        }
        // Sessions done, then quiet: every StopTransaction delivered and answered.
        let mut last = 0;
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            summary = fleet.summary();
            let msgs = summary.messages.sent + summary.messages.received;
            if msgs != last {
                last = msgs;
                quiet_since = tokio::time::Instant::now();
            }
            let done = summary.sessions.completed >= n
                && quiet_since.elapsed() > Duration::from_millis(1500);
            if done || tokio::time::Instant::now() > deadline {
                break;
            }
        }
        let cpu = cpu_time() - cpu0;
        let rss = vm_rss_kib();
        let messages = summary.messages.sent + summary.messages.received;
        let commits = fleet.commit_stats();
        let errors = summary.errors
            + n.saturating_sub(booted.booted)
            + n.saturating_sub(summary.sessions.completed);
        let report = json!({
            "n": n,
            "all_booted_s": booted.all_booted_s.unwrap_or(f64::NAN),
            "boot_p50_ms": booted.boot_ms.p50,
            "boot_p90_ms": booted.boot_ms.p90,
            "boot_p99_ms": booted.boot_ms.p99,
            "boot_max_ms": booted.boot_ms.max,
            "call_p99_ms": summary.call_ms.p99,
            "rss_kib": rss,
            "cpu_s": cpu.as_secs_f64(),
            "messages": messages,
            "cpu_per_msg_us": cpu.as_secs_f64() * 1e6 / messages.max(1) as f64,
            "errors": errors,
            "error_kinds": summary.error_kinds,
            "journal_commits": commits.commits,
            "journal_records": commits.records,
            "prepare_s": prepare_s,
            "not_booted": n.saturating_sub(booted.booted),
            "sessions_not_completed": n.saturating_sub(summary.sessions.completed),
        });
        fleet.shutdown().await.unwrap();
        println!("{report}");
    });
}
