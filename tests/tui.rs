//! TUI behaviour: update per screen, keys through the shipped keymaps, keymap files, views at
//! 80x24 (text snapshots and meaningful styles), and the runtime with a fake backend.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/fake_backend.rs"]
mod fake_backend;

use chargectl::stack::logbook::{Level, LogRecord};
use chargectl::tui::keymap::{Context, Key, Keymap, Lookup};
use chargectl::tui::msg::*;
use chargectl::tui::state::{FlashPhase, LogLine, NoticeKind, PromptKind, Screen, State};
use chargectl::tui::{Action, Theme, TuiOptions, update, view};
use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use fake_backend::FakeBackend;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use std::path::PathBuf;
use std::time::Duration;

// ---------------------------------------------------------------- helpers

fn key_event(s: &str) -> KeyEvent {
    let (mods, rest) = if let Some(r) = s.strip_prefix("ctrl-") {
        (KeyModifiers::CONTROL, r)
    } else {
        (KeyModifiers::NONE, s)
    };
    let code = match rest {
        "enter" => KeyCode::Enter,
        "esc" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "pageup" => KeyCode::PageUp,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "backspace" => KeyCode::Backspace,
        "space" => KeyCode::Char(' '),
        c if c.chars().count() == 1 => KeyCode::Char(c.chars().next().unwrap()),
        other => panic!("test key {other}"),
    };
    let mods = match code {
        KeyCode::Char(c) if c.is_ascii_uppercase() => mods | KeyModifiers::SHIFT,
        _ => mods,
    };
    KeyEvent::new(code, mods)
}

/// Presses keys (space-separated names) and collects every effect.
fn press(state: &mut State, keys: &str) -> Vec<Effect> {
    keys.split(' ')
        .filter(|k| !k.is_empty())
        .flat_map(|k| update(state, Msg::Key(key_event(k))))
        .collect()
}

/// Types literal text into a prompt.
fn type_text(state: &mut State, text: &str) {
    for c in text.chars() {
        update(
            state,
            Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
        );
    }
}

fn new_state(keymap: Keymap) -> State {
    State::new(keymap, Theme::new(true), 1000)
}

fn default_state() -> State {
    new_state(Keymap::load(None, None).unwrap())
}

fn vim_state() -> State {
    new_state(Keymap::load(Some("vim"), None).unwrap())
}

fn identity(version: &str, emulated: bool) -> ChargerInfo {
    ChargerInfo {
        identity: Identity {
            vendor: "Zaptec".into(),
            model: "Go".into(),
            serial_number: "ZAP000123".into(),
            firmware_version: version.into(),
        },
        active_slot: Slot::A,
        inactive_version: Some("2.0.4".into()),
        uptime: Duration::from_secs(3725),
        emulated,
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap()
}

fn record(seq: u64, level: Level, message: &str) -> LogRecord {
    LogRecord {
        seq,
        time: t0() + chrono::Duration::milliseconds(seq as i64 * 10),
        level,
        target: "ocpp".into(),
        message: message.into(),
    }
}

/// A state connected to a charger whose configuration has been read.
fn connected(emulated: bool) -> State {
    let mut s = default_state();
    update(&mut s, Msg::PortsListed(FakeBackend::ports()));
    if emulated {
        press(&mut s, "s");
    } else {
        press(&mut s, "enter");
    }
    let eff = update(&mut s, Msg::Connected(identity("2.1.0", emulated)));
    let Some(Effect::ReadConfig { request }) = eff.first().cloned() else {
        panic!("expected a config read, got {eff:?}");
    };
    update(
        &mut s,
        Msg::ConfigRead {
            request,
            entries: FakeBackend::config(),
        },
    );
    s
}

fn render(state: &State) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| view(state, f)).unwrap();
    terminal
}

fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn find(terminal: &Terminal<TestBackend>, needle: &str) -> Option<(u16, u16)> {
    let text = screen_text(terminal);
    for (y, line) in text.lines().enumerate() {
        // Cells hold one symbol each, so a char index is a column.
        let chars: Vec<char> = line.chars().collect();
        let n: Vec<char> = needle.chars().collect();
        if let Some(x) = chars.windows(n.len()).position(|w| w == n.as_slice()) {
            return Some((x as u16, y as u16));
        }
    }
    None
}

// ---------------------------------------------------------------- keymaps

#[test]
fn shipped_presets_load_and_bind_every_action() {
    for choice in [None, Some("vim")] {
        let map = Keymap::load(choice, None).unwrap();
        let bound: std::collections::HashSet<Action> =
            map.entries().into_iter().map(|(_, _, a)| a).collect();
        for a in Action::ALL {
            assert!(
                bound.contains(a),
                "{choice:?}: {} is not reachable",
                a.name()
            );
        }
    }
}

#[test]
fn no_sequence_starts_with_a_key_bound_alone() {
    for choice in [None, Some("vim")] {
        let map = Keymap::load(choice, None).unwrap();
        for ctx in Context::ALL {
            for (seq, _) in map.context(ctx) {
                if seq.len() > 1 {
                    for c in [ctx, Context::Global] {
                        let alone = map.context(c).any(|(s, _)| s.as_slice() == &seq[..1]);
                        assert!(
                            !alone,
                            "{choice:?} [{}] {:?} shadows a sequence",
                            c.name(),
                            seq
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn user_file_overrides_single_bindings_and_none_unbinds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keymap.toml");
    std::fs::write(
        &file,
        "[logs]\n\"p\" = \"toggle-pause\"\n\"space\" = \"none\"\n",
    )
    .unwrap();
    let map = Keymap::load(None, Some(&file)).unwrap();
    let k = |s| Key::parse(s).unwrap();
    assert_eq!(
        map.lookup(Context::Logs, &[], k("p")),
        Lookup::Action(Action::TogglePause)
    );
    assert_eq!(map.lookup(Context::Logs, &[], k("space")), Lookup::Unbound);
    // Everything else keeps its default.
    assert_eq!(
        map.lookup(Context::Logs, &[], k("/")),
        Lookup::Action(Action::Search)
    );
    assert_eq!(
        map.lookup(Context::Config, &[], k("ctrl-s")),
        Lookup::Action(Action::ApplyPending)
    );
    // A screen table wins over global.
    assert_eq!(
        map.lookup(Context::Config, &[], k("enter")),
        Lookup::Action(Action::EditValue)
    );
    assert_eq!(
        map.lookup(Context::Connect, &[], k("enter")),
        Lookup::Action(Action::Select)
    );
}

#[test]
fn user_file_layers_over_the_chosen_preset() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keymap.toml");
    std::fs::write(&file, "[global]\n\"j\" = \"none\"\n").unwrap();
    let map = Keymap::load(Some("vim"), Some(&file)).unwrap();
    let k = |s| Key::parse(s).unwrap();
    assert_eq!(map.lookup(Context::Logs, &[], k("j")), Lookup::Unbound);
    assert_eq!(
        map.lookup(Context::Logs, &[], k("k")),
        Lookup::Action(Action::Up)
    );
    assert_eq!(map.lookup(Context::Logs, &[], k("g")), Lookup::Pending);
    assert_eq!(
        map.lookup(Context::Logs, &[k("g")], k("g")),
        Lookup::Action(Action::Top)
    );
}

fn load_err(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keymap.toml");
    std::fs::write(&file, text).unwrap();
    let err = Keymap::load(None, Some(&file)).unwrap_err().to_string();
    let prefix = format!("{}:", file.display());
    assert!(err.starts_with(&prefix), "{err}");
    err[prefix.len()..].to_string()
}

#[test]
fn unknown_action_in_keymap_reports_line_and_column() {
    let e = load_err("[logs]\n\"p\" = \"toggle-pause\"\n\"x\" = \"explode\"\n");
    assert!(e.starts_with("3:7: unknown action 'explode'"), "{e}");
}

#[test]
fn unknown_key_name_in_keymap_reports_line_and_column() {
    let e = load_err("[config]\n  \"ctrl-hyper\" = \"quit\"\n");
    assert!(e.starts_with("2:3: unknown key 'hyper'"), "{e}");
}

#[test]
fn unknown_context_in_keymap_reports_line_and_column() {
    let e = load_err("[global]\n\"x\" = \"quit\"\n[editor]\n\"y\" = \"quit\"\n");
    assert!(e.starts_with("3:2: unknown context [editor]"), "{e}");
}

#[test]
fn broken_toml_in_keymap_reports_line_and_column() {
    let e = load_err("[logs]\n\"p\" = toggle-pause\n");
    assert!(e.starts_with("2:7: "), "{e}");
    let e = load_err("[logs]\n\"p\" = \"quit\"\n\"p\" = \"search\"\n");
    assert!(e.starts_with("3:1: "), "{e}");
}

#[test]
fn ctrl_c_cannot_be_rebound_or_unbound() {
    let e = load_err("[global]\n\"ctrl-c\" = \"none\"\n");
    assert!(e.starts_with("2:1: ctrl-c always quits"), "{e}");
    // Even a keymap without it quits on ctrl-c, also inside a text field.
    let mut s = new_state(Keymap::default());
    assert_eq!(press(&mut s, "ctrl-c"), vec![Effect::Quit]);
    let mut s = connected(false);
    press(&mut s, "3 /");
    assert!(s.prompt.is_some());
    assert_eq!(press(&mut s, "ctrl-c"), vec![Effect::Quit]);
    assert!(s.quit);
}

#[test]
fn keymap_choice_may_be_a_file_or_must_name_a_preset() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(&file, "[global]\n\"x\" = \"quit\"\n").unwrap();
    let map = Keymap::load(Some(file.to_str().unwrap()), None).unwrap();
    assert_eq!(
        map.lookup(Context::Logs, &[], Key::parse("x").unwrap()),
        Lookup::Action(Action::Quit)
    );
    let e = Keymap::load(Some("emacs"), None).unwrap_err().to_string();
    assert!(e.contains("unknown keymap 'emacs'"), "{e}");
}

#[test]
fn options_load_reports_bad_config_toml_before_the_tui_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "log_buffer_lines = 250\n").unwrap();
    let opts = TuiOptions::load(dir.path(), None, false).unwrap();
    assert_eq!(opts.log_buffer_lines, 250);
    std::fs::write(dir.path().join("config.toml"), "log_buffer_lines = -1\n").unwrap();
    let e = TuiOptions::load(dir.path(), None, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("config.toml:1:20: log_buffer_lines must be between 1 and 10000000, got -1"),
        "{e}"
    );
}

#[test]
fn help_overlay_lists_every_bound_action_in_stable_order() {
    let mut s = vim_state();
    let rows = chargectl::tui::view::help::help_rows(&s);
    assert_eq!(rows.len(), s.keymap.entries().len());
    for a in Action::ALL {
        assert!(
            rows.iter().any(|r| r[2] == a.name() && r[3] == a.help()),
            "{}",
            a.name()
        );
    }
    assert_eq!(rows, chargectl::tui::view::help::help_rows(&vim_state()));
    assert_eq!(rows[0][0], "global");
    press(&mut s, "?");
    assert_eq!(s.help, Some(0));
    let term = render(&s);
    assert!(find(&term, "Keys 1-").is_some());
    assert!(find(&term, "Quit chargectl").is_some());
    press(&mut s, "j j");
    assert_eq!(s.help, Some(2));
    press(&mut s, "esc");
    assert_eq!(s.help, None);
}

// ---------------------------------------------------------------- connect

#[test]
fn ports_are_listed_likely_chargers_first_and_enter_connects() {
    let mut s = default_state();
    update(&mut s, Msg::PortsListed(FakeBackend::ports()));
    assert_eq!(s.connect.ports[0].path, "/dev/ttyUSB0");
    assert_eq!(
        press(&mut s, "enter"),
        vec![Effect::Connect {
            port: "/dev/ttyUSB0".into()
        }]
    );
    let eff = update(&mut s, Msg::Connected(identity("2.1.0", false)));
    assert_eq!(eff, vec![Effect::ReadConfig { request: 1 }]);
    assert_eq!(s.screen, Screen::Dashboard);
    // Reconnecting to another port drops the old session first.
    press(&mut s, "1 down");
    assert_eq!(
        press(&mut s, "enter"),
        vec![
            Effect::Disconnect,
            Effect::Connect {
                port: "/dev/ttyS0".into()
            }
        ]
    );
    assert!(!s.config.loaded);
}

#[test]
fn csms_url_is_validated_before_the_emulator_starts() {
    let mut s = default_state();
    press(&mut s, "u");
    assert_eq!(s.prompt.as_ref().unwrap().text, "ws://");
    press(&mut s, "ctrl-u");
    type_text(&mut s, "localhost:9000");
    assert_eq!(press(&mut s, "enter"), vec![]);
    let err = s.prompt.as_ref().unwrap().error.clone().unwrap();
    assert!(err.contains("must start with ws://"), "{err}");
    press(&mut s, "ctrl-u");
    type_text(&mut s, "ws://127.0.0.1:notaport/ocpp");
    press(&mut s, "enter");
    assert!(
        s.prompt
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .contains("not a port")
    );
    press(&mut s, "ctrl-u");
    type_text(&mut s, "wss://csms.example.com/ocpp");
    assert_eq!(
        press(&mut s, "enter"),
        vec![Effect::StartEmulator {
            csms: CsmsTarget::Url("wss://csms.example.com/ocpp".into())
        }]
    );
    assert!(s.prompt.is_none());
}

#[test]
fn link_lost_offers_reconnect_to_the_same_target() {
    let mut s = connected(true);
    update(
        &mut s,
        Msg::LinkLost {
            reason: "CSMS closed".into(),
        },
    );
    assert!(s.notice.as_ref().unwrap().text.contains("c reconnects"));
    assert_eq!(s.errors.back().unwrap(), "link lost: CSMS closed");
    assert_eq!(
        press(&mut s, "c"),
        vec![Effect::StartEmulator {
            csms: CsmsTarget::Sandbox
        }]
    );
}

// ---------------------------------------------------------------- config

#[test]
fn stale_config_read_is_dropped() {
    let mut s = connected(false);
    press(&mut s, "3 r");
    assert_eq!(s.config.request, 2);
    update(
        &mut s,
        Msg::ConfigRead {
            request: 1,
            entries: vec![],
        },
    );
    assert_eq!(s.config.entries.len(), FakeBackend::config().len());
    assert!(s.config.reading);
    update(
        &mut s,
        Msg::ConfigRead {
            request: 2,
            entries: vec![],
        },
    );
    assert!(s.config.entries.is_empty());
}

#[test]
fn filter_edit_validate_and_apply_in_one_go() {
    let mut s = connected(false);
    press(&mut s, "3 /");
    type_text(&mut s, "heart");
    assert_eq!(s.config.visible().len(), 1);
    press(&mut s, "enter enter");
    assert!(matches!(&s.prompt.as_ref().unwrap().kind,
        chargectl::tui::state::PromptKind::EditValue { key } if key == "HeartbeatInterval"));
    press(&mut s, "ctrl-u");
    type_text(&mut s, "5 minutes");
    press(&mut s, "enter");
    let err = s.prompt.as_ref().unwrap().error.clone().unwrap();
    assert_eq!(
        err,
        "HeartbeatInterval: expected a whole number, got '5 minutes'"
    );
    press(&mut s, "ctrl-u");
    type_text(&mut s, "300");
    press(&mut s, "enter");
    assert!(s.prompt.is_none());
    // A boolean in another case is normalised.
    press(&mut s, "esc /");
    type_text(&mut s, "freecharging");
    press(&mut s, "enter enter ctrl-u");
    type_text(&mut s, "TRUE");
    press(&mut s, "enter");
    assert_eq!(s.config.pending.len(), 2);
    let eff = press(&mut s, "ctrl-s");
    let Some(Effect::ApplyConfig { changes }) = eff.first() else {
        panic!("{eff:?}")
    };
    let got: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.key.as_str(), c.value.expose()))
        .collect();
    assert_eq!(
        got,
        vec![("FreeCharging", "true"), ("HeartbeatInterval", "300")]
    );
    assert!(s.config.applying);
    update(
        &mut s,
        Msg::ConfigApplied(vec![
            (
                "FreeCharging".into(),
                ApplyOutcome::Rejected("locked by operator".into()),
            ),
            ("HeartbeatInterval".into(), ApplyOutcome::Accepted),
        ]),
    );
    let hb = s
        .config
        .entries
        .iter()
        .find(|e| e.key == "HeartbeatInterval")
        .unwrap();
    assert_eq!(hb.value.as_deref(), Some("300"));
    assert_eq!(s.config.pending.len(), 1);
    assert_eq!(
        s.config.pending["FreeCharging"].outcome,
        Some(ApplyOutcome::Rejected("locked by operator".into()))
    );
    assert!(s.notice.as_ref().unwrap().text.contains("1 refused"));
}

#[test]
fn read_only_keys_cannot_be_edited_and_lists_are_checked() {
    let mut s = connected(false);
    press(&mut s, "3 /");
    type_text(&mut s, "numberof");
    press(&mut s, "enter enter");
    assert!(s.prompt.is_none());
    assert_eq!(
        s.notice.as_ref().unwrap().text,
        "NumberOfConnectors is read-only"
    );
    press(&mut s, "/ ctrl-u");
    type_text(&mut s, "sampleddata");
    press(&mut s, "enter enter ctrl-u");
    type_text(&mut s, "Energy.Active.Import.Register,,Voltage");
    press(&mut s, "enter");
    let err = s.prompt.as_ref().unwrap().error.clone().unwrap();
    assert!(
        err.contains("item 2 of the comma-separated list is empty"),
        "{err}"
    );
}

#[test]
fn write_only_values_travel_as_secrets() {
    let mut s = connected(false);
    press(&mut s, "3 /");
    type_text(&mut s, "authorizationkey");
    press(&mut s, "enter enter");
    assert!(s.prompt.as_ref().unwrap().secret);
    type_text(&mut s, "0123456789abcdef");
    let term = render(&s);
    assert!(
        find(&term, "0123456789").is_none(),
        "secret shown while typing"
    );
    press(&mut s, "enter");
    let p = &s.config.pending["AuthorizationKey"];
    assert!(matches!(p.value, ChangeValue::Secret(_)));
    assert!(!format!("{:?}", s.config.pending).contains("0123456789"));
    let term = render(&s);
    assert!(find(&term, "0123456789").is_none(), "secret on screen");
    let eff = press(&mut s, "ctrl-s");
    let Some(Effect::ApplyConfig { changes }) = eff.first() else {
        panic!()
    };
    assert_eq!(changes[0].value.expose(), "0123456789abcdef");
    assert!(!format!("{eff:?}").contains("0123456789"));
}

#[test]
fn profile_changes_become_pending_changes() {
    let mut s = connected(false);
    press(&mut s, "3 p");
    type_text(&mut s, "site-a.toml");
    assert_eq!(
        press(&mut s, "enter"),
        vec![Effect::LoadProfile {
            path: "site-a.toml".into()
        }]
    );
    update(
        &mut s,
        Msg::ProfileLoaded {
            path: "site-a.toml".into(),
            changes: vec![
                ProvisioningChange {
                    key: "HeartbeatInterval".into(),
                    old: Some("3600".into()),
                    new: ChangeValue::Plain("900".into()),
                },
                ProvisioningChange {
                    key: "FreeCharging".into(),
                    old: Some("false".into()),
                    new: ChangeValue::Plain("false".into()),
                },
            ],
        },
    );
    assert_eq!(s.config.pending.len(), 1);
    assert!(s.config.pending["HeartbeatInterval"].from_profile);
    assert!(
        s.notice
            .as_ref()
            .unwrap()
            .text
            .contains("would change 1 key(s)")
    );
    press(&mut s, "down");
    let sel = s.config.selected_entry().unwrap().key.clone();
    press(&mut s, "d");
    assert!(!s.config.pending.contains_key(&sel) || sel != "HeartbeatInterval");
}

// ---------------------------------------------------------------- firmware

#[test]
fn inspect_flash_reboot_and_show_the_new_version() {
    let mut s = connected(false);
    press(&mut s, "4 o");
    type_text(&mut s, "go-2.2.0.bin");
    let eff = press(&mut s, "enter");
    assert_eq!(
        eff,
        vec![Effect::InspectImage {
            request: 1,
            path: "go-2.2.0.bin".into()
        }]
    );
    let info = ImageInfo {
        path: "go-2.2.0.bin".into(),
        version: "2.2.0".into(),
        size: 2_000_000,
        sha256: "ab".repeat(32),
        built: None,
        signature: SignatureStatus::Valid {
            key_id: "release-1".into(),
        },
    };
    update(
        &mut s,
        Msg::ImageInspected {
            request: 0,
            info: info.clone(),
        },
    );
    assert!(s.firmware.image.is_none(), "stale inspection accepted");
    update(&mut s, Msg::ImageInspected { request: 1, info });
    assert_eq!(press(&mut s, "f"), vec![], "flash needs confirmation");
    assert_eq!(
        press(&mut s, "f"),
        vec![Effect::StartFlash {
            path: "go-2.2.0.bin".into()
        }]
    );
    update(
        &mut s,
        Msg::FlashProgress(FlashProgress {
            done: 500_000,
            total: 2_000_000,
            rate: 51_200.0,
            eta: Some(Duration::from_secs(29)),
        }),
    );
    let term = render(&s);
    assert!(find(&term, "25%").is_some());
    assert!(
        find(&term, "50.0 KiB/s   ETA 0:29").is_some(),
        "{}",
        screen_text(&term)
    );
    update(&mut s, Msg::FlashFinished);
    assert_eq!(s.firmware.phase, FlashPhase::Flashed);
    assert_eq!(press(&mut s, "R R"), vec![Effect::Reboot]);
    update(
        &mut s,
        Msg::LinkLost {
            reason: "reboot".into(),
        },
    );
    assert!(s.errors.is_empty(), "an expected reboot is not an error");
    update(&mut s, Msg::Connected(identity("2.2.0", false)));
    assert_eq!(
        s.firmware.phase,
        FlashPhase::Done {
            version: "2.2.0".into()
        }
    );
    let term = render(&s);
    assert!(
        find(&term, "Now running 2.2.0 (was 2.1.0).").is_some(),
        "{}",
        screen_text(&term)
    );
}

#[test]
fn image_with_bad_signature_is_not_flashed() {
    let mut s = connected(false);
    press(&mut s, "4 o");
    type_text(&mut s, "x.bin");
    press(&mut s, "enter");
    update(
        &mut s,
        Msg::ImageInspected {
            request: 1,
            info: ImageInfo {
                path: "x.bin".into(),
                version: "9.9.9".into(),
                size: 10,
                sha256: "00".repeat(32),
                built: None,
                signature: SignatureStatus::UnknownKey {
                    key_id: "someone".into(),
                },
            },
        },
    );
    assert_eq!(press(&mut s, "f f"), vec![]);
    assert!(s.notice.as_ref().unwrap().text.contains("refuse"));
    let term = render(&s);
    assert!(find(&term, "signed by untrusted key someone").is_some());
}

// ---------------------------------------------------------------- logs

#[test]
fn log_buffer_is_bounded_and_marks_dropped_lines() {
    let mut s = State::new(Keymap::default_preset(), Theme::new(true), 5);
    for i in 1..=4 {
        update(&mut s, Msg::Log(record(i, Level::Info, "x")));
    }
    update(&mut s, Msg::LinesDropped(7));
    for i in 12..=14 {
        update(&mut s, Msg::Log(record(i, Level::Info, "y")));
    }
    let lines: Vec<&LogLine> = s.logs.buffer.iter().collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[1], &LogLine::Dropped(7));
    assert_eq!(s.logs.buffer.dropped_total, 7);
    s.screen = Screen::Logs;
    let term = render(&s);
    assert!(find(&term, "─── 7 lines dropped ───").is_some());
}

#[test]
fn pause_keeps_the_view_while_lines_arrive_and_level_filter_hides() {
    let mut s = default_state();
    press(&mut s, "5");
    for i in 1..=100 {
        let level = if i % 10 == 0 {
            Level::Error
        } else {
            Level::Debug
        };
        update(&mut s, Msg::Log(record(i, level, &format!("line {i}"))));
    }
    press(&mut s, "space");
    assert!(!s.logs.follow);
    let before = s.logs.view_bottom();
    for i in 101..=150 {
        update(
            &mut s,
            Msg::Log(record(i, Level::Debug, &format!("line {i}"))),
        );
    }
    assert_eq!(s.logs.view_bottom(), before);
    let term = render(&s);
    assert!(find(&term, "line 100").is_some());
    assert!(find(&term, "line 101").is_none());
    assert!(find(&term, "PAUSED").is_some());
    press(&mut s, "space");
    let term = render(&s);
    assert!(find(&term, "line 150").is_some());
    // error only
    press(&mut s, "l l l l");
    assert_eq!(s.logs.buffer.min_level(), Level::Error);
    assert_eq!(s.logs.buffer.shown_len(), 10);
    let term = render(&s);
    assert!(find(&term, "line 99").is_none());
    assert!(find(&term, "line 90").is_some());
}

#[test]
fn search_jumps_between_matches_and_scrolling_up_pauses() {
    let mut s = default_state();
    press(&mut s, "5");
    for i in 1..=200 {
        let msg = if i == 42 {
            "BootNotification accepted".to_string()
        } else {
            format!("line {i}")
        };
        update(&mut s, Msg::Log(record(i, Level::Info, &msg)));
    }
    press(&mut s, "/");
    type_text(&mut s, "bootnot");
    press(&mut s, "enter n");
    assert!(!s.logs.follow);
    assert_eq!(s.logs.view_bottom(), Some(41));
    press(&mut s, "n");
    assert!(
        s.notice
            .as_ref()
            .unwrap()
            .text
            .contains("no older line matches")
    );
    press(&mut s, "end up");
    assert!(!s.logs.follow);
    assert_eq!(s.logs.view_bottom(), Some(198));
    press(&mut s, "down");
    assert!(s.logs.follow);
}

#[test]
fn vim_g_g_goes_to_the_top_of_the_log() {
    let mut s = vim_state();
    s.size = (80, 24);
    press(&mut s, "5");
    for i in 1..=100 {
        update(
            &mut s,
            Msg::Log(record(i, Level::Info, &format!("line {i}"))),
        );
    }
    press(&mut s, "g");
    assert_eq!(s.pending_keys.len(), 1);
    assert!(find(&render(&s), "g …").is_some(), "pending key shown");
    press(&mut s, "g");
    assert!(!s.logs.follow);
    assert_eq!(s.logs.view_bottom(), Some(19));
    press(&mut s, "k");
    assert_eq!(s.logs.view_bottom(), Some(18));
    press(&mut s, "G");
    assert!(s.logs.follow);
}

#[test]
fn export_writes_the_buffer_through_an_effect() {
    let mut s = default_state();
    press(&mut s, "5");
    update(&mut s, Msg::Log(record(1, Level::Warn, "hot")));
    press(&mut s, "e ctrl-u");
    type_text(&mut s, "out.txt");
    let eff = press(&mut s, "enter");
    assert_eq!(
        eff,
        vec![Effect::ExportLogs {
            path: PathBuf::from("out.txt"),
            lines: vec!["2026-11-26T08:00:00.010Z WARN  ocpp     hot".into()],
        }]
    );
}

// ---------------------------------------------------------------- emulator

fn call(id: &str, action: &str) -> OcppFrame {
    OcppFrame::Call {
        id: id.into(),
        action: action.into(),
        payload: serde_json::json!({"a": 1}),
    }
}

#[test]
fn trace_pairs_calls_with_answers_and_measures_latency() {
    let mut s = connected(true);
    update(
        &mut s,
        Msg::Trace {
            direction: Direction::Sent,
            time: t0(),
            frame: call("1", "BootNotification"),
        },
    );
    update(
        &mut s,
        Msg::Trace {
            direction: Direction::Received,
            time: t0(),
            frame: call("1", "Reset"),
        },
    );
    update(
        &mut s,
        Msg::Trace {
            direction: Direction::Received,
            time: t0() + chrono::Duration::milliseconds(35),
            frame: OcppFrame::CallResult {
                id: "1".into(),
                payload: serde_json::json!({"status": "Accepted"}),
            },
        },
    );
    let e = &s.trace.entries;
    assert_eq!(e[0].pair, Some(2));
    assert_eq!(e[0].latency, Some(Duration::from_millis(35)));
    assert_eq!(e[2].action, "BootNotification");
    assert_eq!(
        e[1].pair, None,
        "an answer pairs with the CALL going the other way"
    );
    press(&mut s, "6 /");
    type_text(&mut s, "boot");
    press(&mut s, "enter");
    assert_eq!(s.trace.visible(), vec![0, 2]);
    press(&mut s, "up");
    assert_eq!(s.trace.selected, Some(0));
    let term = render(&s);
    assert!(find(&term, "35 ms").is_some());
    press(&mut s, "down");
    assert_eq!(s.trace.selected, Some(2));
    let term = render(&s);
    assert!(
        find(&term, "\"status\": \"Accepted\"").is_some(),
        "{}",
        screen_text(&term)
    );
}

#[test]
fn hardware_controls_need_an_emulator_and_validate_input() {
    let mut s = connected(false);
    assert_eq!(press(&mut s, "6 p"), vec![]);
    assert!(s.notice.as_ref().unwrap().text.contains("emulated"));
    let mut s = connected(true);
    assert_eq!(
        press(&mut s, "6 p"),
        vec![Effect::Hardware(HardwareAction::Plug)]
    );
    press(&mut s, "d ctrl-u");
    type_text(&mut s, "120");
    assert_eq!(press(&mut s, "enter"), vec![]);
    press(&mut s, "ctrl-u");
    type_text(&mut s, "10.5");
    assert_eq!(
        press(&mut s, "enter"),
        vec![Effect::Hardware(HardwareAction::EvDemand { amps: 10.5 })]
    );
    press(&mut s, "f ctrl-u");
    type_text(&mut s, "overvoltage");
    assert_eq!(
        press(&mut s, "enter"),
        vec![Effect::Hardware(HardwareAction::Fault {
            code: "OverVoltage".into()
        })]
    );
    press(&mut s, "c");
    type_text(&mut s, "CARD-0001");
    assert_eq!(
        press(&mut s, "enter"),
        vec![Effect::Hardware(HardwareAction::PresentCard {
            id_tag: "CARD-0001".into()
        })]
    );
}

#[test]
fn notices_expire_with_ticks() {
    let mut s = default_state();
    let now = std::time::Instant::now();
    update(&mut s, Msg::Tick(now));
    update(
        &mut s,
        Msg::Error {
            context: "reading config".into(),
            message: "timeout".into(),
        },
    );
    assert!(s.notice.is_some());
    update(&mut s, Msg::Tick(now + Duration::from_secs(3)));
    assert!(s.notice.is_some());
    update(&mut s, Msg::Tick(now + Duration::from_secs(7)));
    assert!(s.notice.is_none());
    assert_eq!(s.errors.back().unwrap(), "reading config: timeout");
}

// ---------------------------------------------------------------- views

fn dashboard_state() -> State {
    let mut s = connected(true);
    update(
        &mut s,
        Msg::Status(FakeBackend::status("Charging", Some(42), 15.8)),
    );
    s.notice = None;
    s
}

#[test]
fn snapshot_connect() {
    let mut s = default_state();
    update(&mut s, Msg::PortsListed(FakeBackend::ports()));
    insta::assert_snapshot!("connect", render(&s).backend());
}

#[test]
fn snapshot_connect_empty() {
    let s = default_state();
    insta::assert_snapshot!("connect_empty", render(&s).backend());
}

#[test]
fn snapshot_dashboard() {
    insta::assert_snapshot!("dashboard", render(&dashboard_state()).backend());
}

#[test]
fn snapshot_dashboard_link_lost() {
    let mut s = dashboard_state();
    update(
        &mut s,
        Msg::LinkLost {
            reason: "serial port closed".into(),
        },
    );
    insta::assert_snapshot!("dashboard_lost", render(&s).backend());
}

#[test]
fn snapshot_config_with_pending() {
    let mut s = connected(false);
    press(&mut s, "3 down down down down enter ctrl-u");
    type_text(&mut s, "120");
    press(&mut s, "enter");
    s.notice = None;
    insta::assert_snapshot!("config", render(&s).backend());
}

#[test]
fn snapshot_firmware() {
    let mut s = connected(false);
    press(&mut s, "4");
    update(
        &mut s,
        Msg::ImageInspected {
            request: 0,
            info: ImageInfo {
                path: "go-2.2.0.bin".into(),
                version: "2.2.0".into(),
                size: 2_000_000,
                sha256: "ab".repeat(32),
                built: Some(t0()),
                signature: SignatureStatus::Valid {
                    key_id: "release-1".into(),
                },
            },
        },
    );
    update(
        &mut s,
        Msg::FlashProgress(FlashProgress {
            done: 1_000_000,
            total: 2_000_000,
            rate: 102_400.0,
            eta: Some(Duration::from_secs(10)),
        }),
    );
    s.notice = None;
    insta::assert_snapshot!("firmware", render(&s).backend());
}

#[test]
fn snapshot_logs() {
    let mut s = default_state();
    press(&mut s, "5");
    for (i, l) in [Level::Info, Level::Warn, Level::Error, Level::Debug]
        .iter()
        .enumerate()
    {
        update(
            &mut s,
            Msg::Log(record(
                i as u64 + 1,
                *l,
                &format!("Heartbeat {i} sent to CSMS"),
            )),
        );
    }
    update(&mut s, Msg::LinesDropped(12));
    update(
        &mut s,
        Msg::Log(record(20, Level::Info, "StatusNotification Available")),
    );
    press(&mut s, "/");
    type_text(&mut s, "heartbeat");
    press(&mut s, "enter");
    insta::assert_snapshot!("logs", render(&s).backend());
}

#[test]
fn snapshot_emulator() {
    let mut s = dashboard_state();
    press(&mut s, "6");
    update(
        &mut s,
        Msg::Trace {
            direction: Direction::Sent,
            time: t0(),
            frame: call("17", "StatusNotification"),
        },
    );
    update(
        &mut s,
        Msg::Trace {
            direction: Direction::Received,
            time: t0() + chrono::Duration::milliseconds(12),
            frame: OcppFrame::CallResult {
                id: "17".into(),
                payload: serde_json::json!({}),
            },
        },
    );
    update(
        &mut s,
        Msg::Trace {
            direction: Direction::Received,
            time: t0(),
            frame: call("c1", "RemoteStartTransaction"),
        },
    );
    update(
        &mut s,
        Msg::Trace {
            direction: Direction::Sent,
            time: t0() + chrono::Duration::milliseconds(3),
            frame: OcppFrame::CallError {
                id: "c1".into(),
                code: "FormationViolation".into(),
                description: "idTag missing".into(),
                details: serde_json::json!({}),
            },
        },
    );
    insta::assert_snapshot!("emulator", render(&s).backend());
}

#[test]
fn screens_fit_a_narrow_terminal_without_panicking() {
    let mut s = dashboard_state();
    for i in 1..=30 {
        update(
            &mut s,
            Msg::Log(record(
                i,
                Level::Info,
                "a long line of text that will not fit in a narrow terminal at all",
            )),
        );
    }
    for screen in Screen::ALL {
        s.screen = screen;
        for (w, h) in [(20, 5), (40, 10), (80, 24), (1, 1)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal.draw(|f| view(&s, f)).unwrap();
        }
    }
    s.help = Some(0);
    let mut terminal = Terminal::new(TestBackend::new(30, 8)).unwrap();
    terminal.draw(|f| view(&s, f)).unwrap();
}

#[test]
fn log_levels_are_coloured_and_visible_without_colour() {
    let mut s = default_state();
    press(&mut s, "5");
    update(&mut s, Msg::Log(record(1, Level::Error, "boom")));
    update(&mut s, Msg::Log(record(2, Level::Warn, "careful")));
    let term = render(&s);
    let (x, y) = find(&term, "ERROR").unwrap();
    let cell = &term.backend().buffer()[(x, y)];
    assert_eq!(cell.fg, Color::Red);
    let (x, y) = find(&term, "WARN").unwrap();
    assert_eq!(term.backend().buffer()[(x, y)].fg, Color::Yellow);

    s.theme = Theme::new(false);
    let term = render(&s);
    let (x, y) = find(&term, "ERROR").unwrap();
    let cell = &term.backend().buffer()[(x, y)];
    assert_eq!(cell.fg, Color::Reset);
    assert!(cell.modifier.contains(Modifier::BOLD | Modifier::REVERSED));
    let (x, y) = find(&term, "WARN").unwrap();
    assert!(
        term.backend().buffer()[(x, y)]
            .modifier
            .contains(Modifier::BOLD)
    );
    // No cell carries a colour under NO_COLOR.
    for screen in Screen::ALL {
        let mut d = dashboard_state();
        d.theme = Theme::new(false);
        d.screen = screen;
        let term = render(&d);
        for c in term.backend().buffer().content() {
            assert_eq!(
                (c.fg, c.bg),
                (Color::Reset, Color::Reset),
                "{screen:?} {:?}",
                c.symbol()
            );
        }
    }
}

#[test]
fn focused_row_is_marked_with_and_without_colour() {
    for color in [true, false] {
        let mut s = default_state();
        s.theme = Theme::new(color);
        update(&mut s, Msg::PortsListed(FakeBackend::ports()));
        press(&mut s, "down");
        let term = render(&s);
        let (x, y) = find(&term, "> /dev/ttyS0").unwrap();
        let cell = &term.backend().buffer()[(x + 3, y)];
        if color {
            assert_eq!(cell.bg, Color::Blue);
        } else {
            assert!(cell.modifier.contains(Modifier::REVERSED));
        }
        let (_, y0) = find(&term, "/dev/ttyUSB0").unwrap();
        assert!(
            !term.backend().buffer()[(4, y0)]
                .modifier
                .contains(Modifier::REVERSED)
        );
    }
}

#[test]
fn search_matches_are_highlighted() {
    let mut s = default_state();
    press(&mut s, "5 /");
    type_text(&mut s, "needle");
    press(&mut s, "enter");
    update(&mut s, Msg::Log(record(1, Level::Info, "hay NEEDLE hay")));
    let term = render(&s);
    let (x, y) = find(&term, "NEEDLE").unwrap();
    assert_eq!(term.backend().buffer()[(x, y)].bg, Color::Yellow);
    assert_ne!(term.backend().buffer()[(x - 2, y)].bg, Color::Yellow);
}

// ---------------------------------------------------------------- dry run

use chargectl::dryrun::{FrameSeen, Progress, Severity, Update};
use chargectl::tui::state::{CHART_SAMPLES, ChargeHistory, DryRunPhase};

fn progress(elapsed_s: f64, step: &str) -> Progress {
    Progress {
        elapsed_s,
        connection: "connected".into(),
        registration: Some("Accepted".into()),
        messages: 12,
        blocking: 1,
        warning: 0,
        info: 0,
        step: Some(step.into()),
    }
}

fn frame_seen(sent: bool, ms: i64, frame: serde_json::Value) -> Update {
    Update::Frame(FrameSeen {
        direction: if sent {
            chargectl::stack::chargepoint::Direction::Sent
        } else {
            chargectl::stack::chargepoint::Direction::Received
        },
        frame,
        time: t0() + chrono::Duration::milliseconds(ms),
    })
}

/// The dry run screen with profile `site-a` and a CSMS URL chosen, started; the run number.
fn dry_run_started() -> (State, u64) {
    let mut s = default_state();
    press(&mut s, "7 p");
    type_text(&mut s, "site-a");
    press(&mut s, "enter u ctrl-u");
    type_text(&mut s, "ws://csms.example.com/ocpp");
    press(&mut s, "enter");
    let eff = press(&mut s, "s");
    let [Effect::StartDryRun { run, .. }] = eff.as_slice() else {
        panic!("expected StartDryRun, got {eff:?}");
    };
    (s, *run)
}

/// A started dry run that has seen a boot exchange, progress and one finding.
fn dry_run_running() -> (State, u64) {
    let (mut s, run) = dry_run_started();
    for u in [
        frame_seen(
            true,
            0,
            serde_json::json!([2, "a-1", "BootNotification", {}]),
        ),
        frame_seen(
            false,
            40,
            serde_json::json!([3, "a-1", {"status": "Accepted", "interval": 300}]),
        ),
        frame_seen(
            false,
            5_093,
            serde_json::json!([2, "peer-4", "SetChargingProfile", {"connectorId": 1}]),
        ),
        frame_seen(
            true,
            5_100,
            serde_json::json!([3, "peer-4", {"status": "Rejected"}]),
        ),
        Update::Finding(fake_backend::dry_run_findings().remove(0)),
        Update::Progress(progress(35.0, "5/10 csms_outage 30 s")),
    ] {
        update(&mut s, Msg::DryRun { run, update: u });
    }
    s.notice = None;
    (s, run)
}

#[test]
fn a_dry_run_starts_with_the_chosen_profile_and_csms_and_only_once() {
    let (mut s, run) = dry_run_started();
    assert_eq!(s.screen, Screen::DryRun);
    assert_eq!(run, 1);
    assert_eq!(s.dry_run.phase, DryRunPhase::Starting);
    assert_eq!(
        s.dry_run.profile.as_deref(),
        Some("site-a"),
        "the profile is kept for the next run"
    );
    let (_, run2) = {
        let mut again = s.clone();
        update(
            &mut again,
            Msg::DryRunFinished {
                run,
                report: Box::new(fake_backend::dry_run_report()),
            },
        );
        let eff = press(&mut again, "s");
        assert_eq!(
            eff,
            vec![Effect::StartDryRun {
                run: 2,
                profile: Some("site-a".into()),
                csms_url: Some("ws://csms.example.com/ocpp".into()),
            }]
        );
        assert!(again.dry_run.findings.is_empty(), "a new run starts clean");
        assert!(again.dry_run.report.is_none());
        (again, 2)
    };
    assert_eq!(run2, 2);
    // While one runs, start does nothing but say how to stop it.
    assert!(press(&mut s, "s").is_empty());
    assert!(s.notice.as_ref().unwrap().text.contains("x stops it"));
}

#[test]
fn an_empty_csms_url_means_the_profiles_or_the_sandbox_and_a_bad_one_stays_in_the_prompt() {
    let mut s = default_state();
    press(&mut s, "7 u ctrl-u");
    type_text(&mut s, "http://csms.example.com");
    assert!(press(&mut s, "enter").is_empty());
    let prompt = s.prompt.as_ref().expect("the prompt stays open");
    assert!(prompt.error.is_some(), "{prompt:?}");
    press(&mut s, "ctrl-u enter");
    assert!(s.prompt.is_none());
    assert_eq!(s.dry_run.csms_url, None);
    // Without a profile or a URL, the sandbox CSMS.
    assert_eq!(
        press(&mut s, "s"),
        vec![Effect::StartDryRun {
            run: 1,
            profile: None,
            csms_url: None,
        }]
    );
    assert!(s.notice.unwrap().text.contains("the sandbox CSMS"));
}

#[test]
fn dry_run_updates_fill_findings_and_trace_and_a_stale_run_is_ignored() {
    let (mut s, run) = dry_run_running();
    assert_eq!(s.dry_run.phase, DryRunPhase::Running);
    assert_eq!(s.dry_run.findings.len(), 1);
    assert_eq!(s.dry_run.findings[0].severity, Severity::Blocking);
    assert_eq!(s.dry_run.trace.entries.len(), 4);
    let answer = &s.dry_run.trace.entries[1];
    assert_eq!(answer.action, "BootNotification", "paired with its CALL");
    assert_eq!(answer.latency, Some(Duration::from_millis(40)));
    assert_eq!(s.dry_run.progress.as_ref().unwrap().elapsed_s, 35.0);
    // What an older run still reports changes nothing.
    let before = s.dry_run.clone();
    update(
        &mut s,
        Msg::DryRun {
            run: run - 1,
            update: Update::Finding(fake_backend::dry_run_findings().remove(1)),
        },
    );
    update(
        &mut s,
        Msg::DryRunFinished {
            run: run + 7,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    assert_eq!(s.dry_run, before);
    // The findings list is navigable.
    update(
        &mut s,
        Msg::DryRun {
            run,
            update: Update::Finding(fake_backend::dry_run_findings().remove(1)),
        },
    );
    press(&mut s, "down");
    assert_eq!(s.dry_run.selected, 1);
    assert_eq!(
        s.dry_run.selected_finding().unwrap().rule,
        "heartbeat_interval_out_of_range"
    );
    press(&mut s, "down home");
    assert_eq!(s.dry_run.selected, 0);
}

#[test]
fn stopping_a_dry_run_asks_the_backend_and_the_report_ends_it() {
    let (mut s, run) = dry_run_running();
    assert_eq!(press(&mut s, "x"), vec![Effect::StopDryRun { run }]);
    assert_eq!(s.dry_run.phase, DryRunPhase::Stopping);
    assert!(press(&mut s, "x").is_empty(), "asked once");
    // Updates still arrive while it stops.
    update(
        &mut s,
        Msg::DryRun {
            run,
            update: Update::Progress(progress(36.0, "5/10 csms_outage 30 s")),
        },
    );
    assert_eq!(s.dry_run.progress.as_ref().unwrap().elapsed_s, 36.0);
    update(
        &mut s,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    assert_eq!(s.dry_run.phase, DryRunPhase::Finished);
    assert_eq!(s.dry_run.findings.len(), 2, "the report's findings");
    let text = &s.notice.as_ref().unwrap().text;
    assert!(
        text.contains("NOT READY") && text.contains("w saves the report"),
        "{text}"
    );
}

#[test]
fn the_report_is_saved_in_the_format_its_extension_names() {
    let (mut s, run) = dry_run_running();
    update(
        &mut s,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    press(&mut s, "w");
    assert_eq!(s.prompt.as_ref().unwrap().text, "dry-run-DRY-1.md");
    press(&mut s, "ctrl-u");
    type_text(&mut s, "site-a.pdf");
    assert!(press(&mut s, "enter").is_empty());
    assert!(
        s.prompt
            .as_ref()
            .and_then(|p| p.error.as_deref())
            .is_some_and(|e| e.contains(".md, .html or .json"))
    );
    press(&mut s, "ctrl-u");
    type_text(&mut s, "site-a.html");
    let eff = press(&mut s, "enter");
    assert_eq!(
        eff,
        vec![Effect::SaveReport {
            path: "site-a.html".into(),
            report: Box::new(fake_backend::dry_run_report()),
        }]
    );
    update(
        &mut s,
        Msg::ReportSaved {
            path: "site-a.html".into(),
        },
    );
    assert_eq!(s.dry_run.saved, Some(PathBuf::from("site-a.html")));
    press(&mut s, "w");
    assert_eq!(
        s.prompt.as_ref().unwrap().text,
        "site-a.html",
        "offers the last file again"
    );
}

#[test]
fn saving_before_a_report_exists_says_how_to_get_one() {
    let (mut s, _) = dry_run_running();
    assert!(press(&mut s, "w").is_empty());
    assert!(s.prompt.is_none());
    let n = s.notice.unwrap();
    assert_eq!(n.kind, NoticeKind::Error);
    assert!(n.text.contains("no report yet"), "{}", n.text);
}

#[test]
fn vim_keys_save_the_report_with_colon_w() {
    let mut s = vim_state();
    press(&mut s, "7 s");
    let run = s.dry_run.run;
    update(
        &mut s,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    press(&mut s, ": w");
    assert_eq!(
        s.prompt.as_ref().map(|p| p.kind.clone()),
        Some(PromptKind::ReportPath)
    );
}

#[test]
fn a_dry_run_that_cannot_run_says_why() {
    let (mut s, run) = dry_run_started();
    update(
        &mut s,
        Msg::DryRunFailed {
            run,
            message: "site-a.toml:3:1: unknown key".into(),
        },
    );
    assert!(matches!(&s.dry_run.phase, DryRunPhase::Failed(m) if m.contains("3:1")));
    assert!(s.errors.back().unwrap().contains("unknown key"));
    // Another run can start.
    assert_eq!(press(&mut s, "s").len(), 1);
}

fn charging(drawn: f64, offered: f64, energy_wh: f64) -> ChargerStatus {
    ChargerStatus {
        offered_amps: offered,
        energy_wh,
        ..FakeBackend::status("Charging", Some(42), drawn)
    }
}

#[test]
fn the_chart_samples_a_session_from_ticks_and_starts_again_with_the_next() {
    let mut s = connected(true);
    let now = std::time::Instant::now();
    let at = |secs: u64| Msg::Tick(now + Duration::from_secs(secs));
    update(
        &mut s,
        Msg::Status(FakeBackend::status("Available", None, 0.0)),
    );
    update(&mut s, at(0));
    assert!(s.history.samples.is_empty(), "no session yet");
    update(&mut s, Msg::Status(charging(16.0, 16.0, 1000.0)));
    update(&mut s, at(10));
    update(&mut s, Msg::Status(charging(10.0, 10.0, 1100.0)));
    update(&mut s, Msg::Tick(now + Duration::from_millis(10_500)));
    assert_eq!(s.history.samples.len(), 1, "at most one sample a second");
    update(&mut s, at(12));
    let last = s.history.samples.last().unwrap();
    assert_eq!((last.at_s, last.offered_a, last.drawn_a), (2.0, 10.0, 10.0));
    assert_eq!(last.energy_wh, 100.0, "energy of this session");
    // The session ends: its chart stays, ended.
    update(
        &mut s,
        Msg::Status(FakeBackend::status("Finishing", None, 0.0)),
    );
    update(&mut s, at(20));
    assert!(!s.history.active);
    assert_eq!(s.history.samples.len(), 3);
    update(&mut s, at(30));
    assert_eq!(s.history.samples.len(), 3);
    // The next session starts a new chart.
    update(&mut s, Msg::Status(charging(16.0, 16.0, 5000.0)));
    update(&mut s, at(40));
    assert!(s.history.active);
    assert_eq!(s.history.samples.len(), 1);
    assert_eq!(s.history.samples[0].at_s, 0.0);
}

#[test]
fn a_long_session_halves_the_chart_resolution_instead_of_growing() {
    let mut h = ChargeHistory::default();
    let now = std::time::Instant::now();
    let status = charging(16.0, 16.0, 0.0);
    for i in 0..5_000u64 {
        h.observe(&status, now + Duration::from_secs(i));
    }
    assert!(h.samples.len() <= CHART_SAMPLES, "{}", h.samples.len());
    assert!(h.samples.len() > CHART_SAMPLES / 4);
    assert_eq!(h.samples[0].at_s, 0.0, "the start stays");
    assert!(h.span_s() >= 4_900.0, "the whole session is covered");
}

// ---------------------------------------------------------------- runtime

type Input = futures_util::stream::BoxStream<'static, std::io::Result<Event>>;

fn scripted() -> (
    tokio::sync::mpsc::UnboundedSender<std::io::Result<Event>>,
    Input,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    (tx, Box::pin(stream))
}

fn opts() -> TuiOptions {
    TuiOptions::with_keymap(Keymap::default_preset(), true)
}

#[tokio::test(start_paused = true)]
async fn runtime_runs_a_session_against_the_fake_backend() {
    let backend = FakeBackend::new();
    let (tx, input) = scripted();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let script = tokio::spawn(async move {
        let key = |s: &str| Ok(Event::Key(key_event(s)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(key("s")).unwrap(); // sandbox emulator
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(key("6")).unwrap();
        tx.send(key("p")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(key("4")).unwrap();
        tx.send(key("o")).unwrap();
        for c in "image.bin".chars() {
            tx.send(Ok(Event::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            ))))
            .unwrap();
        }
        tx.send(key("enter")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(key("f")).unwrap();
        tx.send(key("f")).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(key("R")).unwrap();
        tx.send(key("R")).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send(Ok(Event::Resize(100, 30))).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(key("q")).unwrap();
        tx
    });
    let state = chargectl::tui::run_with(&mut terminal, input, backend.clone(), opts())
        .await
        .unwrap();
    drop(script.await);
    assert!(state.quit);
    assert_eq!(state.size, (100, 30));
    assert_eq!(
        state.firmware.phase,
        FlashPhase::Done {
            version: "2.2.0".into()
        }
    );
    assert_eq!(
        state.status.as_ref().unwrap().connector,
        "Preparing",
        "plugged in"
    );
    assert_eq!(state.logs.buffer.len(), 3, "boot log of the first connect");
    let performed = backend.performed();
    assert_eq!(performed[0], Effect::ListPorts);
    assert!(performed.contains(&Effect::Hardware(HardwareAction::Plug)));
    assert!(performed.contains(&Effect::StartFlash {
        path: "image.bin".into()
    }));
    assert!(performed.contains(&Effect::Reboot));
    assert!(screen_text(&terminal).contains("Now running 2.2.0 (was 2.1.0)."));
}

#[tokio::test(start_paused = true)]
async fn runtime_exports_logs_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("log.txt");
    let (tx, input) = scripted();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let out2 = out.clone();
    tokio::spawn(async move {
        let key = |s: &str| Ok(Event::Key(key_event(s)));
        tx.send(key("s")).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(key("5")).unwrap();
        tx.send(key("e")).unwrap();
        tx.send(key("ctrl-u")).unwrap();
        for c in out2.to_str().unwrap().chars() {
            tx.send(Ok(Event::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            ))))
            .unwrap();
        }
        tx.send(key("enter")).unwrap();
        // Wait for the file instead of sleeping a guessed time.
        for _ in 0..1000 {
            if out2.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(key("q")).unwrap();
    });
    let state = chargectl::tui::run_with(&mut terminal, input, FakeBackend::new(), opts())
        .await
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains("boot step 3"));
    assert!(state.notice.unwrap().text.starts_with("3 lines written to"));
}

#[tokio::test(start_paused = true)]
async fn runtime_runs_a_dry_run_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site-a.html");
    let (tx, input) = scripted();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let out2 = out.clone();
    tokio::spawn(async move {
        let key = |s: &str| Ok(Event::Key(key_event(s)));
        tx.send(key("7")).unwrap();
        tx.send(key("s")).unwrap();
        // The fake run reports for a second, then its report comes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        tx.send(key("w")).unwrap();
        tx.send(key("ctrl-u")).unwrap();
        for c in out2.to_str().unwrap().chars() {
            tx.send(Ok(Event::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            ))))
            .unwrap();
        }
        tx.send(key("enter")).unwrap();
        for _ in 0..1000 {
            if out2.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(key("q")).unwrap();
    });
    let backend = FakeBackend::new();
    let state = chargectl::tui::run_with(&mut terminal, input, backend.clone(), opts())
        .await
        .unwrap();
    assert!(backend.performed().contains(&Effect::StartDryRun {
        run: 1,
        profile: None,
        csms_url: None
    }));
    assert_eq!(
        state.dry_run.trace.entries.len(),
        1,
        "the frame of the run reached the trace"
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..40]);
    assert!(html.contains("SetChargingProfile carries a charging profile in W"));
    assert_eq!(state.dry_run.saved.as_deref(), Some(out.as_path()));
}

struct PanickingBackend;

impl chargectl::tui::Backend for PanickingBackend {
    fn perform(&mut self, _: Effect, _: &chargectl::tui::Events) -> Option<chargectl::tui::Task> {
        Some(Box::pin(async { panic!("backend bug") }))
    }
}

#[tokio::test(start_paused = true)]
async fn panicked_backend_task_ends_the_tui_with_an_error() {
    let (_tx, input) = scripted();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let err = chargectl::tui::run_with(&mut terminal, input, PanickingBackend, opts())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn ended_input_stream_stops_the_tui() {
    let input = futures_util::stream::iter(Vec::<std::io::Result<Event>>::new());
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let state = chargectl::tui::run_with(&mut terminal, input, FakeBackend::new(), opts())
        .await
        .unwrap();
    assert!(!state.quit);
}

#[test]
fn filtered_indices_survive_the_rings_turning_over() {
    use chargectl::tui::state::{LogBuffer, TraceState};
    let mut tr = TraceState::with_capacity(3);
    tr.set_filter("Heart");
    for i in 0..5 {
        let action = if i % 2 == 0 { "Heartbeat" } else { "Authorize" };
        tr.push(Direction::Sent, t0(), call(&i.to_string(), action));
    }
    // Entries 2, 3, 4 remain; 2 and 4 are heartbeats.
    assert_eq!(tr.visible(), vec![2, 4]);
    assert_eq!(tr.shown_position(4), Some(1));
    assert_eq!(tr.shown_position(3), None);
    tr.set_filter("");
    assert_eq!(tr.visible(), vec![2, 3, 4]);

    let mut buf = LogBuffer::new(4);
    buf.set_min_level(Level::Warn);
    for i in 0..10 {
        let level = if i % 3 == 0 {
            Level::Error
        } else {
            Level::Info
        };
        buf.push_record(record(i, level, &format!("m{i}")));
    }
    // Lines 6..=9 remain; 6 and 9 are errors.
    let shown: Vec<u64> = (0..buf.shown_len())
        .map(|i| match buf.shown(i) {
            Some(LogLine::Record(r)) => r.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(shown, vec![6, 9]);
}

#[test]
fn snapshot_dry_run_idle() {
    let mut s = default_state();
    press(&mut s, "7");
    insta::assert_snapshot!("dry_run_idle", render(&s).backend());
}

#[test]
fn snapshot_dry_run_running() {
    let (s, _) = dry_run_running();
    insta::assert_snapshot!("dry_run_running", render(&s).backend());
}

#[test]
fn snapshot_dry_run_finished() {
    let (mut s, run) = dry_run_running();
    update(
        &mut s,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    s.notice = None;
    insta::assert_snapshot!("dry_run_finished", render(&s).backend());
}

#[test]
fn a_blocking_finding_is_red_and_the_selected_one_stands_out() {
    let (mut s, run) = dry_run_running();
    update(
        &mut s,
        Msg::DryRun {
            run,
            update: Update::Finding(fake_backend::dry_run_findings().remove(1)),
        },
    );
    press(&mut s, "down");
    let term = render(&s);
    let (x, y) = find(&term, "BLOCKING").unwrap();
    assert_eq!(term.backend().buffer()[(x, y)].fg, Color::Red);
    let (x, y) = find(&term, "> warning").unwrap();
    assert_eq!(term.backend().buffer()[(x + 2, y)].bg, Color::Blue);
    let mut plain = s.clone();
    plain.theme = Theme::new(false);
    let term = render(&plain);
    let (x, y) = find(&term, "> warning").unwrap();
    assert!(
        term.backend().buffer()[(x + 2, y)]
            .modifier
            .contains(Modifier::REVERSED),
        "without colour the selected finding is reversed"
    );
}

/// A charging session of 100 s: 16 A offered and 14 A drawn, then a profile limits it to 8 A.
fn dashboard_chart_state() -> State {
    let mut s = dashboard_state();
    let now = std::time::Instant::now();
    for i in 0..=100u64 {
        // The EV takes 14 A of 16; from 60 s a charging profile offers 8 A.
        let (offered, drawn) = if i < 60 { (16.0, 14.0) } else { (8.0, 8.0) };
        let energy = 1234.0 + i as f64 * 10.0;
        update(&mut s, Msg::Status(charging(drawn, offered, energy)));
        update(&mut s, Msg::Tick(now + Duration::from_secs(i)));
    }
    s.notice = None;
    s
}

#[test]
fn snapshot_dashboard_chart() {
    insta::assert_snapshot!(
        "dashboard_chart",
        render(&dashboard_chart_state()).backend()
    );
}

#[test]
fn snapshot_help_overlay() {
    let mut s = default_state();
    press(&mut s, "?");
    insta::assert_snapshot!("help", render(&s).backend());
}

fn fleet_summary(
    elapsed_s: f64,
    booted: u64,
    messages: u64,
) -> chargectl::emulator::fleet::Summary {
    use chargectl::emulator::fleet::{Messages, Percentiles, Summary};
    Summary {
        count: 200,
        started: 200,
        connected: 200,
        booted,
        charging: 37,
        messages: Messages {
            sent: messages,
            received: messages,
        },
        boot_ms: Percentiles {
            count: booted,
            p50: 12.1,
            p90: 31.0,
            p99: 48.2,
            max: 60.3,
        },
        call_ms: Percentiles {
            count: messages,
            p50: 1.2,
            p90: 2.9,
            p99: 7.7,
            max: 20.1,
        },
        elapsed_s,
        all_booted_s: (booted == 200).then_some(1.84),
        ..Summary::default()
    }
}

#[test]
fn fleet_summaries_give_the_message_rate_between_two() {
    let mut s = dashboard_state();
    assert!(s.fleet.is_none());
    update(&mut s, Msg::Fleet(fleet_summary(1.0, 150, 400)));
    assert_eq!(s.fleet.as_ref().unwrap().messages_per_s, 0.0);
    update(&mut s, Msg::Fleet(fleet_summary(2.0, 200, 700)));
    let f = s.fleet.as_ref().unwrap();
    assert_eq!(f.summary.booted, 200);
    assert!(
        (f.messages_per_s - 600.0).abs() < 1e-9,
        "{}",
        f.messages_per_s
    );
}

#[test]
fn snapshot_emulator_fleet() {
    let mut s = dashboard_state();
    press(&mut s, "6");
    update(&mut s, Msg::Fleet(fleet_summary(11.0, 200, 4000)));
    update(&mut s, Msg::Fleet(fleet_summary(12.0, 200, 4210)));
    let terminal = render(&s);
    assert!(
        find(&terminal, "200 booted of 200").is_some(),
        "{}",
        screen_text(&terminal)
    );
    assert!(find(&terminal, "420/s").is_some());
    insta::assert_snapshot!("emulator_fleet", terminal.backend());
}

/// The chart's session with what crowds the dashboard of an emulated charger: its service port
/// and three errors.
fn crowded_dashboard() -> State {
    let mut s = dashboard_chart_state();
    let status = s.status.as_mut().unwrap();
    status.service_port =
        Some("/home/site/.local/share/chargectl/emulator/ZAP000123/service-port".into());
    status.last_errors = vec![
        "GroundFailure at 12:00:01".into(),
        "CALLERROR from the CSMS: NotImplemented for DataTransfer".into(),
    ];
    s.errors.push_back("link lost: cable pulled".into());
    s
}

fn render_at(state: &State, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view(state, f)).unwrap();
    terminal
}

/// Every row of the dashboard's panels, the chart's axis labels, the service port and the newest
/// errors, at `width` x `height`.
fn assert_dashboard_readable(width: u16, height: u16, errors_shown: &[&str]) {
    let term = render_at(&crowded_dashboard(), width, height);
    let text = screen_text(&term);
    let has = |needle: &str| {
        assert!(
            find(&term, needle).is_some(),
            "{width}x{height}: '{needle}' missing or overdrawn:\n{text}"
        )
    };
    // The panels beside and above the chart.
    for row in [
        "Model       Zaptec Go",
        "Serial      ZAP000123",
        "Firmware    2.1.0",
        "Kind        emulated",
        "OCPP        connected",
        "Connector   Charging",
        "Transaction 42",
        "Drawn       8.0 A of 8.0 A offered",
        "Energy      2.234 kWh",
    ] {
        has(row);
    }
    // The chart: titles, both axes' labels of the current chart, the energy scale.
    for label in ["offered 8.0 A", "drawn 8.0 A", "Energy 1.000 kWh in 1:40"] {
        has(label);
    }
    let (x24, y24) = find(&term, "│24 A│").expect("the top of the amp scale");
    let (x0, y0) = find(&term, "│0 A │").expect("the bottom of the amp scale");
    assert_eq!(x24, x0);
    assert!(y0 >= y24 + 2, "at least three rows of plot:\n{text}");
    let (_, ylabels) = find(&term, " 0:00 ").expect("the start of the time axis");
    assert_eq!(ylabels, y0 + 2, "time labels under the axis line:\n{text}");
    assert_eq!(
        text.lines()
            .nth(ylabels as usize)
            .unwrap()
            .matches("1:40")
            .count(),
        2,
        "both charts end their time axis at the session's length:\n{text}"
    );
    has("│1.10│");
    // Below: the service port in its box, then the newest errors.
    has("Service port (for --port)");
    has("│/home/site/.local/share/chargectl/emulator/ZAP000123/service-port");
    for e in errors_shown {
        has(e);
    }
}

#[test]
fn dashboard_chart_and_its_neighbours_are_readable_at_80x24_and_120x40() {
    assert_dashboard_readable(
        80,
        24,
        &[
            "Last errors (2 of 3)",
            "✕ CALLERROR from the CSMS: NotImplemented for DataTransfer",
            "✕ GroundFailure at 12:00:01",
        ],
    );
    assert_dashboard_readable(
        120,
        40,
        &[
            "Last errors ",
            "✕ CALLERROR from the CSMS: NotImplemented for DataTransfer",
            "✕ link lost: cable pulled",
        ],
    );
}

// ---------------------------------------------------------------- quitting during a dry run

/// Where the fake run's report goes by default under `dir`: named after its charge point and
/// its start (2024-10-04T00:00:00Z).
fn default_report(dir: &str) -> PathBuf {
    PathBuf::from(dir).join("dry-run-DRY-1-20241004T000000Z.md")
}

#[test]
fn quitting_during_a_dry_run_writes_its_report_to_the_reports_directory_then_quits() {
    let (mut s, run) = dry_run_running();
    s.report_dir = Some("/data/reports".into());
    assert_eq!(press(&mut s, "q"), vec![Effect::StopDryRun { run }]);
    assert!(!s.quit, "the run ends first");
    assert_eq!(s.dry_run.phase, DryRunPhase::Stopping);
    let text = &s.notice.as_ref().unwrap().text;
    assert!(
        text.contains("its report goes to /data/reports") && text.contains("again quits at once"),
        "{text}"
    );
    let head = screen_text(&render(&s));
    assert!(
        head.contains("report → /data/reports/, then quit"),
        "{head}"
    );
    let eff = update(
        &mut s,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    let path = default_report("/data/reports");
    assert_eq!(
        eff,
        vec![Effect::SaveReport {
            path: path.clone(),
            report: Box::new(fake_backend::dry_run_report()),
        }]
    );
    assert!(!s.quit, "quits once the report is written");
    let eff = update(&mut s, Msg::ReportSaved { path: path.clone() });
    assert_eq!(eff, vec![Effect::Quit]);
    assert!(s.quit);
    assert_eq!(
        s.exit_lines.last().unwrap(),
        &format!("dry run report written to {}", path.display())
    );
    assert!(s.exit_lines[0].contains("NOT READY"), "{:?}", s.exit_lines);
}

#[test]
fn ctrl_c_during_a_dry_run_ends_it_the_same_way_and_twice_quits_at_once() {
    let (mut s, run) = dry_run_running();
    press(&mut s, "w"); // no report yet: a notice, no prompt
    assert_eq!(press(&mut s, "ctrl-c"), vec![Effect::StopDryRun { run }]);
    assert!(!s.quit);
    assert_eq!(press(&mut s, "ctrl-c"), vec![Effect::Quit]);
    assert!(s.quit);
    assert_eq!(
        s.exit_lines,
        vec!["the dry run's report was not written: chargectl quit before it was".to_string()]
    );
}

#[test]
fn the_report_file_chosen_for_a_run_receives_it_when_the_run_ends_or_the_tui_quits() {
    let (mut s, run) = dry_run_running();
    press(&mut s, "o");
    type_text(&mut s, "site-a.pdf");
    press(&mut s, "enter");
    assert!(
        s.prompt
            .as_ref()
            .and_then(|p| p.error.as_deref())
            .is_some_and(|e| e.contains(".md, .html or .json"))
    );
    press(&mut s, "ctrl-u");
    type_text(&mut s, "site-a.html");
    assert!(press(&mut s, "enter").is_empty());
    assert_eq!(s.dry_run.report_path, Some(PathBuf::from("site-a.html")));
    assert!(screen_text(&render(&s)).contains("report → site-a.html"));
    // Without quitting: the report goes there as soon as the run ends.
    let mut ended = s.clone();
    let eff = update(
        &mut ended,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    assert!(
        matches!(eff.as_slice(), [Effect::SaveReport { path, .. }] if path == &PathBuf::from("site-a.html"))
    );
    assert!(!ended.quit);
    // Quitting: the same file, then the TUI quits.
    assert_eq!(press(&mut s, "q"), vec![Effect::StopDryRun { run }]);
    let eff = update(
        &mut s,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    assert!(
        matches!(eff.as_slice(), [Effect::SaveReport { path, .. }] if path == &PathBuf::from("site-a.html"))
    );
    let eff = update(
        &mut s,
        Msg::ReportSaved {
            path: "site-a.html".into(),
        },
    );
    assert_eq!(eff, vec![Effect::Quit]);
    assert_eq!(
        s.exit_lines.last().unwrap(),
        "dry run report written to site-a.html"
    );
}

#[test]
fn a_report_that_cannot_be_written_keeps_the_tui_open_until_quit_again() {
    let (mut s, run) = dry_run_running();
    press(&mut s, "q");
    update(
        &mut s,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    let eff = update(
        &mut s,
        Msg::ReportNotSaved {
            path: default_report(""),
            message: "Permission denied (os error 13)".into(),
        },
    );
    assert!(eff.is_empty());
    assert!(!s.quit, "the report would be lost");
    let n = s.notice.as_ref().unwrap();
    assert_eq!(n.kind, NoticeKind::Error);
    assert!(
        n.text.contains("Permission denied") && n.text.contains("w saves it elsewhere"),
        "{}",
        n.text
    );
    assert_eq!(press(&mut s, "q"), vec![Effect::Quit]);
    assert_eq!(
        s.exit_lines,
        vec!["the dry run's report was not written: chargectl quit before it was".to_string()]
    );
}

#[test]
fn a_finished_report_never_saved_is_written_on_quit_and_a_saved_one_is_not() {
    let (mut s, run) = dry_run_running();
    update(
        &mut s,
        Msg::DryRunFinished {
            run,
            report: Box::new(fake_backend::dry_run_report()),
        },
    );
    let mut saved = s.clone();
    let eff = press(&mut s, "q");
    assert!(
        matches!(eff.as_slice(), [Effect::SaveReport { path, .. }] if path == &default_report("")),
        "{eff:?}"
    );
    update(
        &mut saved,
        Msg::ReportSaved {
            path: "a.md".into(),
        },
    );
    assert_eq!(press(&mut saved, "q"), vec![Effect::Quit]);
    assert!(saved.exit_lines.is_empty());
}

#[tokio::test(start_paused = true)]
async fn runtime_quit_during_a_dry_run_writes_the_report_before_the_tui_ends() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let (tx, input) = scripted();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    tokio::spawn(async move {
        let key = |s: &str| Ok(Event::Key(key_event(s)));
        tx.send(key("7")).unwrap();
        tx.send(key("s")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(key("q")).unwrap();
        // The fake run ends a second after it started; the TUI ends after the report.
        std::future::pending::<()>().await;
    });
    let opts = TuiOptions {
        report_dir: Some(reports.clone()),
        ..opts()
    };
    let state = tokio::time::timeout(
        Duration::from_secs(30),
        chargectl::tui::run_with(&mut terminal, input, FakeBackend::new(), opts),
    )
    .await
    .expect("the TUI ends once the report is written")
    .unwrap();
    assert!(state.quit);
    let path = reports.join("dry-run-DRY-1-20241004T000000Z.md");
    let md = std::fs::read_to_string(&path).unwrap();
    assert!(md.starts_with("# Commissioning dry run: DRY-1"), "{md}");
    assert_eq!(
        state.exit_lines.last().unwrap(),
        &format!("dry run report written to {}", path.display())
    );
}

// ---------------------------------------------------------------- fleet from the emulator screen

#[test]
fn the_fleet_form_checks_each_field_and_starts_the_fleet_emulate_count_would() {
    let mut s = default_state();
    press(&mut s, "6 n");
    let p = s.prompt.as_ref().expect("the fleet form");
    assert_eq!(p.kind, PromptKind::FleetForm);
    assert_eq!(p.text, "count=10 template=TUI-{n:04} ramp=0 sessions=0.2");
    for (text, error) in [
        ("count=0", "column 1: count: expected 1 to 10000, got '0'"),
        (
            "count=5 ramp=fast",
            "column 9: ramp: expected a rate per second",
        ),
        ("count=5 template=SITE-{x}", "column 9: template:"),
        ("count=5 csms=http://x", "column 9: csms:"),
        ("count=5 colour=red", "column 9: unknown field 'colour'"),
        ("template=A-{n}", "count=N is needed"),
    ] {
        press(&mut s, "ctrl-u");
        type_text(&mut s, text);
        assert!(press(&mut s, "enter").is_empty(), "{text}");
        let e = s.prompt.as_ref().and_then(|p| p.error.clone()).unwrap();
        assert!(e.starts_with(error), "{text}: {e}");
    }
    press(&mut s, "ctrl-u");
    type_text(
        &mut s,
        "count=200 template=SITE-{n:04} ramp=50 sessions=0.5 seed=7",
    );
    let eff = press(&mut s, "enter");
    assert_eq!(
        eff,
        vec![Effect::StartFleet {
            run: 1,
            spec: FleetSpec {
                count: 200,
                template: "SITE-{n:04}".into(),
                ramp: Some(50.0),
                sessions: Some(0.5),
                seed: Some(7),
                csms: CsmsTarget::Sandbox,
            },
        }]
    );
    assert!(screen_text(&render(&s)).contains("Starting a fleet of 200 charge points"));
    assert!(press(&mut s, "n").is_empty(), "one fleet at a time");
    assert!(s.prompt.is_none());
    // Its summaries fill the panel, which says how to stop it.
    update(&mut s, Msg::Fleet(fleet_summary(1.0, 150, 400)));
    update(&mut s, Msg::Fleet(fleet_summary(2.0, 200, 700)));
    let text = screen_text(&render(&s));
    for needle in [
        "Emulated fleet, 2 s, all booted in 1.84 s x stops it",
        "200 booted of 200",
        "700 sent  700 received  600/s",
        "p50 12.1 ms  p90 31.0  p99 48.2",
    ] {
        assert!(text.contains(needle), "'{needle}' in:\n{text}");
    }
    assert_eq!(press(&mut s, "x"), vec![Effect::StopFleet { run: 1 }]);
    assert!(screen_text(&render(&s)).contains("stopping…"));
    update(
        &mut s,
        Msg::FleetEnded {
            run: 1,
            error: None,
        },
    );
    assert!(screen_text(&render(&s)).contains("all booted in 1.84 s stopped"));
    // The form offers the last answer again.
    press(&mut s, "n");
    assert_eq!(
        s.prompt.as_ref().unwrap().text,
        "count=200 template=SITE-{n:04} ramp=50 sessions=0.5 seed=7"
    );
}

#[test]
fn a_fleet_that_cannot_start_says_why() {
    let mut s = default_state();
    press(&mut s, "6 n ctrl-u");
    type_text(&mut s, "count=3");
    let eff = press(&mut s, "enter");
    assert!(matches!(
        eff.as_slice(),
        [Effect::StartFleet { run: 1, .. }]
    ));
    update(
        &mut s,
        Msg::FleetEnded {
            run: 1,
            error: Some("the open-file limit is too low".into()),
        },
    );
    let n = s.notice.as_ref().unwrap();
    assert_eq!(n.kind, NoticeKind::Error);
    assert!(
        screen_text(&render(&s)).contains("The fleet did not run: the open-file limit"),
        "{}",
        screen_text(&render(&s))
    );
    // A late message of an older fleet changes nothing.
    update(
        &mut s,
        Msg::FleetEnded {
            run: 0,
            error: None,
        },
    );
    assert!(matches!(
        s.fleet_run.phase,
        chargectl::tui::state::FleetPhase::Ended(Some(_))
    ));
}

// ---------------------------------------------------------------- the charger's OCPP state

fn ocpp_status(
    connection: chargectl::link::ocpp_state::Connection,
    registration: chargectl::link::ocpp_state::Registration,
) -> chargectl::link::OcppStatus {
    chargectl::link::OcppStatus {
        connection,
        registration,
        csms_url: Some("wss://csms.example.net/ocpp/GARAGE7-ZAP000123".into()),
        failed_attempts: 0,
        last_error: None,
        online_since_ms: None,
    }
}

/// A charger on a port (no emulator status) that has reported `report`.
fn dashboard_with_ocpp(report: OcppReport) -> State {
    let mut s = connected(false);
    update(&mut s, Msg::Ocpp(report));
    s.notice = None;
    s
}

/// A wrong AuthorizationKey: three attempts in a row refused with 401, the last at 07:41:02.
fn refused_401() -> chargectl::link::OcppStatus {
    use chargectl::link::ocpp_state::{ConnectError, Connection, Registration};
    chargectl::link::OcppStatus {
        failed_attempts: 3,
        last_error: Some(ConnectError {
            failure: "http_status".into(),
            http_status: Some(401),
            detail: "HTTP error: 401 Unauthorized".into(),
            at_ms: Utc
                .with_ymd_and_hms(2024, 10, 4, 7, 41, 2)
                .unwrap()
                .timestamp_millis(),
        }),
        ..ocpp_status(Connection::Failed, Registration::Unknown)
    }
}

#[test]
fn dashboard_shows_a_charger_connected_and_accepted() {
    use chargectl::link::ocpp_state::{Connection, Registration};
    let s = dashboard_with_ocpp(OcppReport::Reported(ocpp_status(
        Connection::Connected,
        Registration::Accepted,
    )));
    for (w, h) in [(80, 24), (120, 40)] {
        let term = render_at(&s, w, h);
        let text = screen_text(&term);
        let (x, y) = find(&term, "OCPP        connected, Accepted").unwrap_or_else(|| {
            panic!("{w}x{h}:\n{text}");
        });
        assert_eq!(term.backend().buffer()[(x + 12, y)].fg, Color::Green);
        assert!(find(&term, "CSMS        wss://").is_some(), "{text}");
        assert!(find(&term, "No errors.").is_some(), "{text}");
    }
    // Pending and Rejected are told apart from Accepted.
    let pending = dashboard_with_ocpp(OcppReport::Reported(ocpp_status(
        Connection::Connected,
        Registration::Pending,
    )));
    let term = render(&pending);
    let (x, y) = find(&term, "OCPP        connected, Pending").unwrap();
    assert_eq!(term.backend().buffer()[(x + 12, y)].fg, Color::Yellow);
    let rejected = dashboard_with_ocpp(OcppReport::Reported(ocpp_status(
        Connection::Connected,
        Registration::Rejected,
    )));
    let term = render(&rejected);
    let (x, y) = find(&term, "OCPP        connected, Rejected").unwrap();
    assert_eq!(term.backend().buffer()[(x + 12, y)].fg, Color::Red);
}

#[test]
fn dashboard_shows_a_401_with_its_time_and_what_it_usually_means() {
    let s = dashboard_with_ocpp(OcppReport::Reported(refused_401()));
    for (w, h) in [(80, 24), (120, 40)] {
        let term = render_at(&s, w, h);
        let text = screen_text(&term);
        let (x, y) = find(&term, "OCPP        failed (3 in a row)")
            .unwrap_or_else(|| panic!("{w}x{h}:\n{text}"));
        assert_eq!(term.backend().buffer()[(x + 12, y)].fg, Color::Red);
        let (ex, ey) = find(&term, "✕ CSMS connection failed at 07:41:02 UTC: HTTP 401")
            .unwrap_or_else(|| panic!("{w}x{h}:\n{text}"));
        assert_eq!(term.backend().buffer()[(ex, ey)].fg, Color::Red);
        assert!(
            find(&term, "wrong AuthorizationKey").is_some(),
            "{w}x{h}:\n{text}"
        );
    }
    // Connected again later: the error stays, dimmed, as what happened before.
    let mut later = refused_401();
    later.connection = chargectl::link::ocpp_state::Connection::Connected;
    later.registration = chargectl::link::ocpp_state::Registration::Accepted;
    later.failed_attempts = 0;
    let term = render_at(&dashboard_with_ocpp(OcppReport::Reported(later)), 120, 40);
    let text = screen_text(&term);
    assert!(
        find(&term, "OCPP        connected, Accepted").is_some(),
        "{text}"
    );
    assert!(
        find(
            &term,
            "• earlier, CSMS connection failed at 07:41:02 UTC: HTTP 401"
        )
        .is_some(),
        "{text}"
    );
    assert!(!text.contains('✕'), "{text}");
}

#[test]
fn dashboard_says_when_the_firmware_does_not_report_its_ocpp_state() {
    let s = dashboard_with_ocpp(OcppReport::NotReported);
    let term = render_at(&s, 120, 40);
    let text = screen_text(&term);
    assert!(
        find(&term, "OCPP        firmware does not report its OCPP state").is_some(),
        "{text}"
    );
    assert!(find(&term, "CSMS        -").is_some(), "{text}");
    let term = render(&s);
    let text = screen_text(&term);
    assert!(
        find(&term, "OCPP        not reported by firmware").is_some(),
        "{text}"
    );
    // A new charger starts without the old one's state.
    let mut s = s;
    update(&mut s, Msg::LinkLost { reason: "x".into() });
    press(&mut s, "1");
    press(&mut s, "enter");
    assert_eq!(s.ocpp, None);
}

#[test]
fn snapshot_dashboard_ocpp_401() {
    insta::assert_snapshot!(
        "dashboard_ocpp_401",
        render(&dashboard_with_ocpp(OcppReport::Reported(refused_401()))).backend()
    );
}
