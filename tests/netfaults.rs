//! Network faults during transactions: emulated chargers reach the sandbox CSMS through a
//! loopback proxy that, from a seed, drops connections at message boundaries, cuts frames in
//! half, stalls and delays frames, and refuses reconnects for a while. Over at least 100 injected
//! outages every transaction message (StartTransaction, MeterValues with a transaction id,
//! StopTransaction) reaches the CSMS in order and exactly once, apart from resends of a message
//! whose answer was lost (which OCPP allows, and which are counted), and the chargers never stop
//! reconnecting.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod common;
#[path = "common/faultproxy.rs"]
mod faultproxy;

use chargectl::csms::{EventKind, Policy, RegistrationStatus, SandboxOptions};
use chargectl::emulator::SimHardware;
use chargectl::stack::chargepoint::{self, ConnectionState, Direction, Event, Handle, Identity};
use chargectl::stack::clock::{SharedClock, TokioClock};
use chargectl::stack::config::{ChangeOutcome, Channel, Configuration};
use chargectl::stack::connection::Backoff;
use chargectl::stack::hardware::HwEvent;
use chargectl::stack::logbook::LogBook;
use chargectl::stack::rpc::Frame;
use faultproxy::{FaultProxy, Faults, Stats};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const CHARGERS: usize = 4;
const MIN_OUTAGES: u64 = 100;
/// Faults stop once this many outages were injected, or after `FAULT_TIME`.
const TARGET_OUTAGES: u64 = 130;
const FAULT_TIME: Duration = Duration::from_secs(80);
const DRAIN_TIME: Duration = Duration::from_secs(40);

/// The seed of the fault sequence; `CHARGECTL_NETFAULT_SEED` replays another one.
fn seed() -> u64 {
    std::env::var("CHARGECTL_NETFAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0c99_2026)
}

fn faults(seed: u64) -> Faults {
    let ms = Duration::from_millis;
    Faults {
        seed,
        drop: 0.08,
        cut: 0.06,
        stall: 0.02,
        stall_for: (ms(300), ms(3500)),
        delay: 0.10,
        delay_for: (ms(1), ms(40)),
        refuse: 0.4,
        refuse_for: (ms(100), ms(1200)),
    }
}

fn is_tx(action: &str, payload: &Value) -> bool {
    match action {
        "StartTransaction" | "StopTransaction" => true,
        "MeterValues" => payload.get("transactionId").is_some(),
        _ => false,
    }
}

/// A charger under test and what it reported.
struct Charger {
    id: String,
    handle: Handle,
    hw: Arc<SimHardware>,
    /// Every transaction message it sent (resends included), in order.
    sent: Arc<Mutex<Vec<(String, Value)>>>,
    online: Arc<AtomicBool>,
    failed_attempts: Arc<AtomicU64>,
    disconnects: Arc<AtomicU64>,
    lagged: Arc<AtomicBool>,
    sessions: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start_charger(url: &str, id: &str) -> Charger {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut config = Configuration::open(dir.path()).unwrap();
        config.set_internal("CsmsUrl", url).unwrap();
        config.set_internal("ChargePointId", id).unwrap();
        for (key, value) in [
            ("FreeCharging", "true"),
            ("MeterValueSampleInterval", "1"),
            ("WebSocketPingInterval", "1"),
        ] {
            let outcome = config.change(key, value, Channel::Service);
            assert!(
                matches!(
                    outcome,
                    ChangeOutcome::Accepted | ChangeOutcome::RebootRequired
                ),
                "{key} = {value}: {outcome:?}"
            );
        }
    }
    let clock: SharedClock = Arc::new(TokioClock::new());
    let hw = Arc::new(SimHardware::open(Some(dir.path())));
    let identity = Identity {
        vendor: "Zaptec".into(),
        model: "Go".into(),
        serial_number: format!("NF-{id}"),
        firmware_version: "2.1.0".into(),
    };
    let opts = chargepoint::Options {
        identity: identity.clone(),
        state_dir: dir.path().to_path_buf(),
        clock: clock.clone(),
        logbook: LogBook::new(1000, clock),
        connect_timeout: Duration::from_secs(2),
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(300),
        },
        firmware: None,
        event_capacity: chargepoint::EVENTS_SINGLE,
        journal: Default::default(),
        probe: None,
        trace: None,
    };
    let (handle, task) = chargepoint::spawn(opts, hw.clone(), move |_| identity.clone());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let online = Arc::new(AtomicBool::new(false));
    let failed_attempts = Arc::new(AtomicU64::new(0));
    let disconnects = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicBool::new(false));
    let mut events = handle.subscribe_from_start();
    let (s, o, f, d, l) = (
        sent.clone(),
        online.clone(),
        failed_attempts.clone(),
        disconnects.clone(),
        lagged.clone(),
    );
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Message {
                    direction: Direction::Sent,
                    frame,
                }) => {
                    if frame[0] == 2 {
                        let action = frame[2].as_str().unwrap_or_default().to_string();
                        if is_tx(&action, &frame[3]) {
                            s.lock().unwrap().push((action, frame[3].clone()));
                        }
                    }
                }
                Ok(Event::Connection { state, .. }) => match state {
                    ConnectionState::Connected => o.store(true, Ordering::SeqCst),
                    ConnectionState::Disconnected => {
                        o.store(false, Ordering::SeqCst);
                        d.fetch_add(1, Ordering::SeqCst);
                    }
                    ConnectionState::Failed => {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                },
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    l.store(true, Ordering::SeqCst)
                }
                Err(_) => return,
            }
        }
    });
    Charger {
        id: id.to_string(),
        handle,
        hw,
        sent,
        online,
        failed_attempts,
        disconnects,
        lagged,
        sessions: Arc::new(AtomicU64::new(0)),
        task,
        _dir: dir,
    }
}

/// Plugs in (free charging starts a transaction), charges for a while, unplugs; repeats until
/// `stop`, and always ends unplugged.
async fn sessions(
    handle: Handle,
    hw: Arc<SimHardware>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        hw.set_plugged(true);
        handle.hardware(HwEvent::Plug).await;
        hw.set_ev_demand(16.0);
        handle.hardware(HwEvent::EvDemand { amps: 16.0 }).await;
        count.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2600)).await;
        hw.set_ev_demand(0.0);
        handle.hardware(HwEvent::EvDemand { amps: 0.0 }).await;
        hw.set_plugged(false);
        handle.hardware(HwEvent::Unplug).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// `list` without consecutive repeats, and how many repeats there were.
fn collapse(list: &[(String, Value)]) -> (Vec<(String, Value)>, usize) {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut repeats = 0;
    for item in list {
        if out.last() == Some(item) {
            repeats += 1;
        } else {
            out.push(item.clone());
        }
    }
    (out, repeats)
}

/// The transaction messages the CSMS received from `cp_id`, in order.
fn received(csms: &chargectl::csms::SandboxHandle, cp_id: &str) -> Vec<(String, Value)> {
    csms.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Received {
                cp_id: c,
                frame: Frame::Call {
                    action, payload, ..
                },
                ..
            } if c == cp_id && is_tx(&action, &payload) => Some((action, payload)),
            _ => None,
        })
        .collect()
}

/// Whether everything `c` sent reached the CSMS: the received sequence (repeats collapsed)
/// equals the sent one, and it ends with the StopTransaction of its last session.
fn drained(csms: &chargectl::csms::SandboxHandle, c: &Charger) -> bool {
    let (got, _) = collapse(&received(csms, &c.id));
    let (sent, _) = collapse(&c.sent.lock().unwrap());
    let stops = got.iter().filter(|(a, _)| a == "StopTransaction").count() as u64;
    got == sent && stops == c.sessions.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_messages_survive_a_hundred_outages_in_order_and_once() {
    let seed = seed();
    let csms = common::sandbox(SandboxOptions {
        policy: Policy {
            boot_status: RegistrationStatus::Accepted,
            heartbeat_interval: 2,
            ..Policy::default()
        },
        ..SandboxOptions::default()
    })
    .await;
    let proxy = FaultProxy::start(csms.local_addr(), faults(seed)).await;
    let mut chargers = Vec::new();
    for i in 0..CHARGERS {
        chargers.push(start_charger(&proxy.url(), &format!("CPNET{i}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drivers: Vec<_> = chargers
        .iter()
        .map(|c| {
            tokio::spawn(sessions(
                c.handle.clone(),
                c.hw.clone(),
                c.sessions.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    while Stats::get(&proxy.stats().outages) < TARGET_OUTAGES && started.elapsed() < FAULT_TIME {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for d in drivers {
        d.await.unwrap();
    }
    let stats = proxy.stats();
    let outages = Stats::get(&stats.outages);
    proxy.set_faults(false);

    // With the faults gone every charger reconnects by itself and delivers what it queued.
    let deadline = Instant::now() + DRAIN_TIME;
    while !chargers.iter().all(|c| drained(&csms, c)) {
        assert!(
            Instant::now() < deadline,
            "not everything was delivered within {DRAIN_TIME:?} after the faults stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut duplicates = 0;
    let mut transactions = 0;
    for c in &chargers {
        let raw = received(&csms, &c.id);
        let (got, repeats) = collapse(&raw);
        duplicates += repeats;
        let (sent, _) = collapse(&c.sent.lock().unwrap());
        assert_eq!(
            got, sent,
            "{}: what arrived differs from what was sent",
            c.id
        );
        // Exactly once: nothing arrives twice except as an immediate resend.
        for (i, m) in got.iter().enumerate() {
            assert!(
                !got[..i].contains(m),
                "{}: {} arrived again later: {}",
                c.id,
                m.0,
                m.1
            );
        }
        // In order: Start, MeterValues of that transaction, Stop; one per session.
        let sessions = c.sessions.load(Ordering::SeqCst) as usize;
        let mut current: Option<i64> = None;
        let mut started_tx = 0;
        let mut last_meter: Option<String> = None;
        for (action, payload) in &got {
            match action.as_str() {
                "StartTransaction" => {
                    assert!(
                        current.is_none(),
                        "{}: a Start while a transaction runs",
                        c.id
                    );
                    current = Some(-1);
                    started_tx += 1;
                    last_meter = None;
                }
                "MeterValues" | "StopTransaction" => {
                    let id = payload["transactionId"].as_i64().expect("a transaction id");
                    match current {
                        Some(-1) => current = Some(id),
                        Some(known) => assert_eq!(known, id, "{}: transaction id changed", c.id),
                        None => panic!("{}: {action} outside a transaction", c.id),
                    }
                    if action == "MeterValues" {
                        let stamp = payload["meterValue"][0]["timestamp"]
                            .as_str()
                            .unwrap()
                            .to_string();
                        assert!(
                            last_meter.as_ref().is_none_or(|l| *l < stamp),
                            "{}: meter values out of order",
                            c.id
                        );
                        last_meter = Some(stamp);
                    } else {
                        current = None;
                    }
                }
                _ => unreachable!(),
            }
        }
        assert!(
            current.is_none(),
            "{}: the last transaction was not stopped",
            c.id
        );
        assert_eq!(
            started_tx, sessions,
            "{}: one transaction per session",
            c.id
        );
        transactions += started_tx;
        assert!(
            !c.lagged.load(Ordering::SeqCst),
            "{}: events were lost to the test",
            c.id
        );
        assert!(
            c.online.load(Ordering::SeqCst),
            "{}: online at the end",
            c.id
        );
        let snapshot = c.handle.snapshot().await.expect("running");
        assert!(snapshot.online, "{}: the charger says it is online", c.id);
    }
    let refused = Stats::get(&stats.refused);
    let failed: u64 = chargers
        .iter()
        .map(|c| c.failed_attempts.load(Ordering::SeqCst))
        .sum();
    let disconnects: u64 = chargers
        .iter()
        .map(|c| c.disconnects.load(Ordering::SeqCst))
        .sum();
    println!(
        "network faults (seed {seed:#x}): {outages} outages injected ({} cutting a frame), {} stalls, \
         {} delays, {refused} reconnects refused; the chargers saw {disconnects} disconnects and \
         {failed} failed connection attempts; {transactions} transactions, {} transaction messages \
         delivered, {duplicates} duplicates (resends of a message whose answer was lost)",
        Stats::get(&stats.cuts),
        Stats::get(&stats.stalls),
        Stats::get(&stats.delays),
        chargers
            .iter()
            .map(|c| collapse(&received(&csms, &c.id)).0.len())
            .sum::<usize>(),
    );
    assert!(outages >= MIN_OUTAGES, "only {outages} outages injected");
    assert!(
        refused > 0 && failed >= refused,
        "refused reconnects were retried"
    );
    for c in chargers {
        c.handle.shutdown().await;
        c.task.await.unwrap().unwrap();
    }
    csms.shutdown().await;
}
