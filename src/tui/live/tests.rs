//! The live backend against the real emulator on pseudo-terminals and the sandbox CSMS.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::link::ports::FixedPorts;
use crate::tui::msg::{
    ApplyOutcome, ChangeValue, ConfigChange, CsmsTarget, HardwareAction, OcppFrame, ValueType,
};

const STEP: Duration = Duration::from_secs(20);

/// The next message that `pick` accepts; others are skipped. Bounded.
async fn next_where<T>(
    rx: &mut mpsc::Receiver<Msg>,
    what: &str,
    mut pick: impl FnMut(Msg) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => {
                if let Some(t) = pick(m) {
                    return t;
                }
            }
            Ok(None) => panic!("channel closed waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn run(backend: &mut LiveBackend, effect: Effect, events: &Events) {
    if let Some(task) = backend.perform(effect, events) {
        tokio::spawn(task);
    }
}

fn test_paths(root: &Path) -> Paths {
    Paths {
        config_dir: root.join("config"),
        data_dir: root.join("data"),
        log_dir: root.join("log"),
        cache_dir: root.join("cache"),
    }
}

#[tokio::test]
async fn emulator_session_configures_and_goes_quiet_after_disconnect() {
    let root = tempfile::tempdir().unwrap();
    let paths = test_paths(root.path());
    let state_dir = paths.emulator_state_dir(EMULATOR_ID);
    let vars: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let lookup = vars.clone();
    let mut backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        env: Arc::new(move |name| lookup.lock().unwrap().get(name).cloned()),
        ..LiveOptions::new(paths)
    });
    let (events, mut rx) = Events::channel(4096);

    run(
        &mut backend,
        Effect::StartEmulator {
            csms: CsmsTarget::Sandbox,
        },
        &events,
    );
    let identity = next_where(&mut rx, "Connected", |m| match m {
        Msg::Connected(i) => Some(i),
        _ => None,
    })
    .await;
    assert!(identity.emulated);
    assert_eq!(identity.identity.vendor, "Zaptec");
    assert!(state_dir.join(SERVICE_PORT_NAME).exists());

    run(&mut backend, Effect::ReadConfig { request: 7 }, &events);
    let entries = next_where(&mut rx, "ConfigRead", |m| match m {
        Msg::ConfigRead { request, entries } => Some((request, entries)),
        _ => None,
    })
    .await;
    assert_eq!(entries.0, 7);
    let auth = entries.1.iter().find(|e| e.key == "AuthorizationKey");
    assert!(auth.is_some_and(|e| e.write_only && e.value.is_none()));
    assert!(
        entries
            .1
            .iter()
            .any(|e| e.key == "HeartbeatInterval" && e.value_type == ValueType::Integer)
    );

    run(
        &mut backend,
        Effect::ApplyConfig {
            changes: vec![
                ConfigChange {
                    key: "SecurityProfile".into(),
                    value: ChangeValue::Plain("0".into()),
                },
                ConfigChange {
                    key: "MeterValueSampleInterval".into(),
                    value: ChangeValue::Plain("77".into()),
                },
                ConfigChange {
                    key: "NoSuchKey".into(),
                    value: ChangeValue::Plain("1".into()),
                },
                ConfigChange {
                    key: "HeartbeatInterval2".into(),
                    value: ChangeValue::Plain("x".into()),
                },
            ],
        },
        &events,
    );
    let applied = next_where(&mut rx, "ConfigApplied", |m| match m {
        Msg::ConfigApplied(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(applied.len(), 4);
    assert_eq!(
        applied.last().map(|(k, _)| k.as_str()),
        Some("SecurityProfile"),
        "{applied:?}"
    );
    assert_eq!(
        applied[0],
        (
            "MeterValueSampleInterval".to_string(),
            ApplyOutcome::Accepted
        )
    );
    assert_eq!(
        applied[1],
        ("NoSuchKey".to_string(), ApplyOutcome::NotSupported)
    );

    run(
        &mut backend,
        Effect::Hardware(HardwareAction::Plug),
        &events,
    );
    next_where(&mut rx, "Preparing status", |m| match m {
        Msg::Status(s) if s.connector == "Preparing" => {
            assert_eq!(
                s.service_port.as_deref(),
                Some(state_dir.join(SERVICE_PORT_NAME).to_str().unwrap())
            );
            Some(())
        }
        _ => None,
    })
    .await;
    next_where(&mut rx, "a StatusNotification in the trace", |m| match m {
        Msg::Trace {
            frame: OcppFrame::Call { action, .. },
            ..
        } if action == "StatusNotification" => Some(()),
        _ => None,
    })
    .await;

    // A profile: variables from the environment, then defaults; unchanged keys left out.
    let profile = root.path().join("site.toml");
    std::fs::write(
        &profile,
        "name = \"site\"\n[variables]\nSAMPLE = { default = \"45\" }\n\
         HB = { description = \"heartbeat\" }\n[config]\n\
         MeterValueSampleInterval = \"${SAMPLE}\"\nHeartbeatInterval = \"${HB}\"\n\
         ConnectionTimeOut = \"${HB}\"\n",
    )
    .unwrap();
    let current = entries
        .1
        .iter()
        .find(|e| e.key == "ConnectionTimeOut")
        .and_then(|e| e.value.clone())
        .unwrap();
    vars.lock().unwrap().insert("HB".into(), current);
    run(
        &mut backend,
        Effect::LoadProfile {
            path: profile.clone(),
        },
        &events,
    );
    let changes = next_where(&mut rx, "ProfileLoaded", |m| match m {
        Msg::ProfileLoaded { changes, .. } => Some(changes),
        Msg::Error { context, message } => panic!("{context}: {message}"),
        _ => None,
    })
    .await;
    let summary: Vec<(&str, Option<&str>, String)> = changes
        .iter()
        .map(|c| (c.key.as_str(), c.old.as_deref(), c.new.display()))
        .collect();
    assert!(
        summary.contains(&("MeterValueSampleInterval", Some("77"), "45".to_string())),
        "{summary:?}"
    );
    assert!(
        summary.iter().all(|(k, _, _)| *k != "ConnectionTimeOut"),
        "unchanged key listed: {summary:?}"
    );
    std::fs::write(
        &profile,
        "name = \"site\"\n[config]\nHeartbeatInterval = [\n",
    )
    .unwrap();
    run(&mut backend, Effect::LoadProfile { path: profile }, &events);
    let (context, message) = next_where(&mut rx, "a profile error", |m| match m {
        Msg::Error { context, message } => Some((context, message)),
        _ => None,
    })
    .await;
    assert!(context.contains("site.toml"), "{context}");
    assert!(message.contains("site.toml:"), "{message}");

    // Nothing of this session reaches the TUI once it is disconnected.
    while rx.try_recv().is_ok() {}
    run(&mut backend, Effect::Disconnect, &events);
    backend.shutdown().await;
    let late: Vec<Msg> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(late.is_empty(), "messages after disconnect: {late:?}");
    assert!(!state_dir.join(SERVICE_PORT_NAME).exists());
    assert!(!state_dir.join(TUI_PORT_NAME).exists());

    run(&mut backend, Effect::ReadConfig { request: 8 }, &events);
    let err = next_where(&mut rx, "an error", |m| match m {
        Msg::Error { message, .. } => Some(message),
        _ => None,
    })
    .await;
    assert!(err.contains("no charger"), "{err}");

    // The same emulator starts again from its saved state.
    run(
        &mut backend,
        Effect::StartEmulator {
            csms: CsmsTarget::Sandbox,
        },
        &events,
    );
    let again = next_where(&mut rx, "Connected again", |m| match m {
        Msg::Connected(i) => Some(i),
        _ => None,
    })
    .await;
    assert_eq!(
        again.identity.serial_number,
        identity.identity.serial_number
    );
    run(&mut backend, Effect::ReadConfig { request: 9 }, &events);
    let entries = next_where(&mut rx, "ConfigRead", |m| match m {
        Msg::ConfigRead {
            request: 9,
            entries,
        } => Some(entries),
        _ => None,
    })
    .await;
    let mv = entries.iter().find(|e| e.key == "MeterValueSampleInterval");
    assert_eq!(mv.and_then(|e| e.value.as_deref()), Some("77"));
    backend.shutdown().await;
}

#[tokio::test]
async fn a_lost_link_is_reported_and_the_charger_found_again() {
    let root = tempfile::tempdir().unwrap();
    let mut backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        ..LiveOptions::new(test_paths(root.path()))
    });
    let (events, mut rx) = Events::channel(4096);
    run(
        &mut backend,
        Effect::StartEmulator {
            csms: CsmsTarget::Sandbox,
        },
        &events,
    );
    let first = next_where(&mut rx, "Connected", |m| match m {
        Msg::Connected(i) => Some(i),
        _ => None,
    })
    .await;
    // Pull the cable: a new pseudo-terminal behind the same path.
    backend
        .visit(|session| {
            let session = session.expect("a session");
            let emu = session.emulated.as_mut().expect("emulated");
            emu.tui_port.replug().expect("replug");
        })
        .await;
    let reason = next_where(&mut rx, "LinkLost", |m| match m {
        Msg::LinkLost { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("looking for the charger"), "{reason}");
    let again = next_where(&mut rx, "Connected again", |m| match m {
        Msg::Connected(i) => Some(i),
        _ => None,
    })
    .await;
    assert_eq!(again.identity.serial_number, first.identity.serial_number);
    // The log subscription survives the reconnect.
    backend
        .visit(|session| {
            if let Some(emu) = session.and_then(|s| s.emulated.as_ref()) {
                emu.emulator.logbook.info("test", "after the replug");
            }
        })
        .await;
    next_where(&mut rx, "the log line", |m| match m {
        Msg::Log(r) if r.message == "after the replug" => Some(()),
        _ => None,
    })
    .await;
    backend.shutdown().await;
}

#[tokio::test]
async fn a_port_that_does_not_exist_is_reported_as_link_lost() {
    let root = tempfile::tempdir().unwrap();
    let mut backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        ..LiveOptions::new(test_paths(root.path()))
    });
    let (events, mut rx) = Events::channel(64);
    let missing = root.path().join("ttyUSB-missing").display().to_string();
    run(
        &mut backend,
        Effect::Connect {
            port: missing.clone(),
        },
        &events,
    );
    let reason = next_where(&mut rx, "LinkLost", |m| match m {
        Msg::LinkLost { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains(&missing), "{reason}");
    run(&mut backend, Effect::ListPorts, &events);
    let ports = next_where(&mut rx, "PortsListed", |m| match m {
        Msg::PortsListed(p) => Some(p),
        _ => None,
    })
    .await;
    assert!(ports.is_empty());
    backend.shutdown().await;
}

#[tokio::test]
async fn a_switch_of_charger_drops_what_the_old_one_would_still_report() {
    let root = tempfile::tempdir().unwrap();
    let mut backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        ..LiveOptions::new(test_paths(root.path()))
    });
    let (events, mut rx) = Events::channel(4096);
    let missing = root.path().join("ttyUSB-missing").display().to_string();
    // The port is asked for, then the emulator before the port could fail: only the emulator's
    // messages reach the TUI.
    run(
        &mut backend,
        Effect::Connect {
            port: missing.clone(),
        },
        &events,
    );
    run(
        &mut backend,
        Effect::StartEmulator {
            csms: CsmsTarget::Sandbox,
        },
        &events,
    );
    let identity = next_where(&mut rx, "Connected", |m| match m {
        Msg::Connected(i) => Some(i),
        Msg::LinkLost { reason } => panic!("the abandoned port reported: {reason}"),
        _ => None,
    })
    .await;
    assert!(identity.emulated);
    backend.shutdown().await;
}

#[tokio::test]
async fn a_panicked_session_task_closes_the_session_and_ends_the_tui() {
    use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    let root = tempfile::tempdir().unwrap();
    let paths = test_paths(root.path());
    let service_port = paths
        .emulator_state_dir(EMULATOR_ID)
        .join(SERVICE_PORT_NAME);
    let backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        ..LiveOptions::new(paths)
    });
    let (tx, keys) = mpsc::unbounded_channel::<std::io::Result<TermEvent>>();
    let input = Box::pin(futures_util::stream::unfold(keys, |mut keys| async move {
        keys.recv().await.map(|e| (e, keys))
    }));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let opts = crate::tui::TuiOptions::with_keymap(crate::tui::Keymap::default_preset(), false);
    let probe = backend.clone();
    let port_link = service_port.clone();
    let script = async move {
        // "s" on the connect screen starts the emulator on the sandbox CSMS.
        let s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE);
        tx.send(Ok(TermEvent::Key(s))).unwrap();
        let deadline = tokio::time::Instant::now() + STEP;
        while probe.visit(|s| s.is_some()).await != Some(true) {
            assert!(tokio::time::Instant::now() < deadline, "no session");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(port_link.exists());
        probe
            .visit(|s| {
                if let Some(s) = s {
                    s.spawn(async { panic!("a bug in a session task") });
                }
            })
            .await;
        tx
    };
    let run = crate::tui::run_with(&mut terminal, input, backend.clone(), opts);
    let (result, _keys) = tokio::time::timeout(STEP, async { tokio::join!(run, script) })
        .await
        .expect("the TUI ends");
    let err = result.unwrap_err().to_string();
    assert!(err.contains("panicked"), "{err}");
    assert!(
        !service_port.exists(),
        "the session was not closed: {}",
        service_port.display()
    );
    // The manager has ended; closing again returns at once.
    backend.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_from_a_profile_streams_its_trace_and_ends_with_a_report_when_stopped() {
    let root = tempfile::tempdir().unwrap();
    let paths = test_paths(root.path());
    std::fs::create_dir_all(paths.config_dir.join("profiles")).unwrap();
    std::fs::write(
        paths.config_dir.join("profiles/site-b.toml"),
        "name = \"site-b\"\n[variables]\nCHARGE_POINT_ID = { description = \"Charge point id\" }\n\
         [ocpp]\ncharge_point_id = \"${CHARGE_POINT_ID}\"\n\
         [commissioning]\naccepted_id_tags = [\"CARD-7\"]\n",
    )
    .unwrap();
    let vars: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let lookup = vars.clone();
    let mut backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        env: Arc::new(move |name| lookup.lock().unwrap().get(name).cloned()),
        ..LiveOptions::new(paths)
    });
    let (events, mut rx) = Events::channel(4096);
    let start = |run: u64, profile: &str| Effect::StartDryRun {
        run,
        profile: Some(profile.into()),
        csms_url: None,
    };

    // A profile that is not there, and one whose variable the environment lacks.
    run(&mut backend, start(1, "no-such-profile"), &events);
    let why = next_where(&mut rx, "the failure", |m| match m {
        Msg::DryRunFailed { run: 1, message } => Some(message),
        _ => None,
    })
    .await;
    assert!(why.contains("no such profile"), "{why}");
    run(&mut backend, start(2, "site-b"), &events);
    let why = next_where(&mut rx, "the failure", |m| match m {
        Msg::DryRunFailed { run: 2, message } => Some(message),
        _ => None,
    })
    .await;
    assert!(why.contains("CHARGE_POINT_ID"), "{why}");

    // With the variable set, the run boots against the sandbox CSMS.
    vars.lock()
        .unwrap()
        .insert("CHARGE_POINT_ID".into(), "TUI-DRY-1".into());
    run(&mut backend, start(3, "site-b"), &events);
    let boot = next_where(&mut rx, "the BootNotification frame", |m| match m {
        Msg::DryRun {
            run: 3,
            update: crate::dryrun::Update::Frame(f),
        } => OcppFrame::from_wire(&f.frame),
        _ => None,
    })
    .await;
    assert!(
        matches!(&boot, OcppFrame::Call { action, .. } if action == "BootNotification"),
        "{boot:?}"
    );
    next_where(&mut rx, "progress", |m| match m {
        Msg::DryRun {
            run: 3,
            update: crate::dryrun::Update::Progress(p),
        } if p.registration.as_deref() == Some("Accepted") => Some(()),
        _ => None,
    })
    .await;
    // A stop for another run does nothing; this one's ends it with its report.
    run(&mut backend, Effect::StopDryRun { run: 2 }, &events);
    run(&mut backend, Effect::StopDryRun { run: 3 }, &events);
    let report = next_where(&mut rx, "the report", |m| match m {
        Msg::DryRunFinished { run: 3, report } => Some(report),
        _ => None,
    })
    .await;
    assert_eq!(report.ended_by, crate::dryrun::EndedBy::Interrupted);
    assert!(report.sandbox);
    assert_eq!(report.charge_point_id, "TUI-DRY-1");
    assert_eq!(report.profile.as_deref(), Some("site-b"));
    assert_eq!(report.expectations.accepted_id_tags, ["CARD-7"]);
    assert!(report.messages.sent >= 1, "{:?}", report.messages);
    // The run's state directory is gone.
    let prefix = format!("chargectl-tui-dry-run-{}-", std::process::id());
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "state left behind: {left:?}");
}

#[tokio::test]
async fn a_fleet_from_the_form_boots_on_the_sandbox_reports_and_stops_with_its_state_saved() {
    let root = tempfile::tempdir().unwrap();
    let paths = test_paths(root.path());
    let fleet_dir = paths.emulator_state_dir("tui-fleet");
    let mut backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        ..LiveOptions::new(paths)
    });
    let (events, mut rx) = Events::channel(4096);
    let spec =
        crate::tui::update::fleet::parse_form("count=3 template=T-{n:02} sessions=0").unwrap();
    run(&mut backend, Effect::StartFleet { run: 1, spec }, &events);
    let summary = next_where(&mut rx, "all three booted", |m| match m {
        Msg::Fleet(s) if s.booted == 3 => Some(s),
        Msg::FleetEnded { error, .. } => panic!("the fleet ended: {error:?}"),
        _ => None,
    })
    .await;
    assert_eq!(summary.count, 3);
    assert_eq!(summary.errors, 0, "{summary:?}");
    // A stop for another fleet is ignored; this one's stop ends it cleanly.
    run(&mut backend, Effect::StopFleet { run: 9 }, &events);
    run(&mut backend, Effect::StopFleet { run: 1 }, &events);
    let error = next_where(&mut rx, "FleetEnded", |m| match m {
        Msg::FleetEnded { run, error } => Some((run, error)),
        _ => None,
    })
    .await;
    assert_eq!(error, (1, None));
    for id in ["T-01", "T-02", "T-03"] {
        assert!(
            fleet_dir.join(id).is_dir(),
            "{id}'s state in {}",
            fleet_dir.display()
        );
    }
    backend.shutdown().await;
}

/// Answers every connection on loopback with an HTTP 401, as a CSMS does for a wrong
/// AuthorizationKey; stops with the test's runtime.
async fn refusing_csms() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_charger_on_a_port_is_asked_for_its_ocpp_state_and_the_answer_reaches_the_state() {
    use crate::link::ocpp_state::{Connection, Registration};
    use crate::tui::msg::OcppReport;
    let root = tempfile::tempdir().unwrap();
    let csms = refusing_csms().await;
    let settings = crate::emulator::BootSettings {
        csms_url: Some(format!("ws://{csms}/ocpp")),
        charge_point_id: Some("CP-401".into()),
        ..crate::emulator::BootSettings::default()
    };
    // A charger of its own on a pseudo-terminal, opened like hardware on a serial port.
    let emu = crate::emulator::Emulator::start(&root.path().join("emu"), &settings)
        .await
        .unwrap();
    let port = root.path().join("ttyEMU0");
    emu.attach_service_port(&port, crate::link::pty::LineShaper::default())
        .unwrap();
    let mut backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        ..LiveOptions::new(test_paths(root.path()))
    });
    let mut state = crate::tui::State::new(
        crate::tui::Keymap::load(None, None).unwrap(),
        crate::tui::Theme::new(false),
        100,
    );
    let (events, mut rx) = Events::channel(4096);
    run(
        &mut backend,
        Effect::Connect {
            port: port.display().to_string(),
        },
        &events,
    );
    // Asked right after connecting, then again until the refused attempt is reported.
    let first = next_where(&mut rx, "the first OCPP state", |m| match m {
        Msg::Ocpp(r) => Some(r),
        _ => None,
    })
    .await;
    crate::tui::update(&mut state, Msg::Ocpp(first));
    let refused = next_where(&mut rx, "the refused attempt", |m| match m {
        Msg::Ocpp(OcppReport::Reported(s))
            if s.last_error.as_ref().and_then(|e| e.http_status) == Some(401) =>
        {
            Some(s)
        }
        _ => None,
    })
    .await;
    crate::tui::update(&mut state, Msg::Ocpp(OcppReport::Reported(refused)));
    let Some(OcppReport::Reported(s)) = &state.ocpp else {
        panic!("no OCPP state in the TUI's state: {:?}", state.ocpp);
    };
    assert_ne!(s.connection, Connection::Connected);
    assert_eq!(s.registration, Registration::Unknown);
    assert!(s.failed_attempts >= 1, "{s:?}");
    assert_eq!(
        s.csms_url.as_deref(),
        Some(format!("ws://{csms}/ocpp/CP-401").as_str())
    );
    let e = s.last_error.as_ref().unwrap();
    assert_eq!(e.failure, "http_status");
    assert!(e.at_ms > 0);
    backend.shutdown().await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_emulated_charger_reports_its_ocpp_state_from_its_events() {
    use crate::tui::msg::OcppReport;
    let root = tempfile::tempdir().unwrap();
    let mut backend = LiveBackend::new(LiveOptions {
        lister: Arc::new(FixedPorts::default()),
        ..LiveOptions::new(test_paths(root.path()))
    });
    let (events, mut rx) = Events::channel(4096);
    run(
        &mut backend,
        Effect::StartEmulator {
            csms: CsmsTarget::Sandbox,
        },
        &events,
    );
    let online = next_where(&mut rx, "online and Accepted", |m| match m {
        Msg::Ocpp(OcppReport::Reported(s)) if s.is_online() => Some(s),
        _ => None,
    })
    .await;
    assert!(
        online
            .csms_url
            .is_some_and(|u| u.starts_with("ws://127.0.0.1:"))
    );
    assert!(online.online_since_ms.is_some());
    backend.shutdown().await;
}
