//! End to end: the real binary in a real pseudo-terminal (80x24), its screen read back through
//! a terminal emulator. An emulated charger is started from the connect screen, a key changed
//! and applied in the TUI, and the change read back with the CLI over the emulator's service
//! port while the TUI keeps running; a dry run is started, stopped and its report saved.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chargectl");
const ROWS: NonZeroU16 = NonZeroU16::new(24).unwrap();
const COLS: NonZeroU16 = NonZeroU16::new(80).unwrap();
/// Generous: the emulator boots, the sandbox accepts it, the link handshakes.
const WAIT: Duration = Duration::from_secs(30);

struct Screen {
    parser: vt100::Parser,
    /// The child closed its side of the terminal.
    closed: bool,
}

/// The binary running in a pseudo-terminal.
struct Tui {
    screen: Arc<(Mutex<Screen>, Condvar)>,
    writer: Box<dyn Write + Send>,
    exited: mpsc::Receiver<std::io::Result<portable_pty::ExitStatus>>,
    killer: Box<dyn portable_pty::ChildKiller + Send + Sync>,
}

impl Tui {
    fn spawn(args: &[&str], data: &Path, config: &Path) -> Tui {
        let pty = native_pty_system();
        let pair = pty
            .openpty(PtySize {
                rows: ROWS.get(),
                cols: COLS.get(),
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("openpty");
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.env("CHARGECTL_DATA_DIR", data);
        cmd.env("CHARGECTL_CONFIG_DIR", config);
        cmd.env("NO_COLOR", "1");
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("CHARGECTL_PORT");
        cmd.cwd(data);
        let mut child = pair.slave.spawn_command(cmd).expect("spawn chargectl");
        drop(pair.slave);
        let killer = child.clone_killer();
        let (tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let screen = Arc::new((
            Mutex::new(Screen {
                parser: vt100::Parser::new(ROWS, COLS, 0),
                closed: false,
            }),
            Condvar::new(),
        ));
        let s = screen.clone();
        std::thread::spawn(move || {
            // Keeps the master open for as long as the child may write.
            let _master = pair.master;
            let mut buf = [0u8; 8192];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (lock, cv) = &*s;
                lock.lock().unwrap().parser.process(&buf[..n]);
                cv.notify_all();
            }
            let (lock, cv) = &*s;
            lock.lock().unwrap().closed = true;
            cv.notify_all();
        });
        Tui {
            screen,
            writer,
            exited,
            killer,
        }
    }

    fn contents(&self) -> String {
        self.screen.0.lock().unwrap().parser.screen().contents()
    }

    /// Waits until the screen satisfies `pred`; panics with the screen on timeout.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let (lock, cv) = &*self.screen;
        let mut guard = lock.lock().unwrap();
        loop {
            let text = guard.parser.screen().contents();
            if pred(&text) {
                return text;
            }
            let now = Instant::now();
            if now >= deadline || guard.closed {
                panic!(
                    "timed out waiting for {what}{}; screen:\n{text}",
                    if guard.closed {
                        " (terminal closed)"
                    } else {
                        ""
                    }
                );
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    fn wait_text(&self, needle: &str) -> String {
        self.wait_for(&format!("'{needle}'"), |s| s.contains(needle))
    }

    fn keys(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to the TUI");
        self.writer.flush().expect("flush to the TUI");
    }

    fn wait_exit(&mut self) -> portable_pty::ExitStatus {
        match self.exited.recv_timeout(WAIT) {
            Ok(status) => status.expect("wait for chargectl"),
            Err(_) => {
                let screen = self.contents();
                let _ = self.killer.kill();
                panic!("chargectl did not exit; screen:\n{screen}");
            }
        }
    }

    /// Waits until the child's side of the terminal is closed and all output is parsed.
    fn wait_closed(&self) {
        let deadline = Instant::now() + WAIT;
        let (lock, cv) = &*self.screen;
        let mut guard = lock.lock().unwrap();
        while !guard.closed {
            let now = Instant::now();
            assert!(now < deadline, "the terminal was not closed");
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        if self.exited.try_recv().is_err() {
            let _ = self.killer.kill();
        }
    }
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let config = root.path().join("config");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&config).unwrap();
    (root, data, config)
}

/// The line of the screen holding `needle`, without the box borders.
fn boxed_line(screen: &str, needle: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .map(|l| l.trim().trim_matches('│').trim().to_string())
}

#[test]
fn emulated_charger_configured_in_the_tui_is_seen_by_the_cli() {
    let (_root, data, config) = dirs();
    let mut tui = Tui::spawn(&[], &data, &config);

    // Connect screen: start an emulated charger on the in-process sandbox CSMS.
    tui.wait_text("Start an emulated charger on the sandbox CSMS");
    tui.keys(b"s");
    let screen = tui.wait_text("Service port (for --port)");
    assert!(screen.contains("emulated"), "dashboard:\n{screen}");

    // The dashboard names the service port other tools can open.
    let expected = data
        .join("emulator")
        .join("CHARGECTL-EMU-1")
        .join("service-port");
    let shown = boxed_line(&screen, "service-port").expect("service port path on screen");
    assert_eq!(Path::new(&shown), expected, "dashboard:\n{screen}");
    assert!(expected.exists(), "{} missing", expected.display());

    // Configuration screen: filter to HeartbeatInterval, edit, apply.
    tui.keys(b"3");
    tui.wait_for("the configuration", |s| {
        s.contains("HeartbeatInterval") && s.contains("keys")
    });
    tui.keys(b"/HeartbeatInterval\r");
    tui.wait_text("filter 'HeartbeatInterval'");
    tui.keys(b"\r");
    tui.wait_text("HeartbeatInterval =");
    tui.keys(&[0x7f; 12]);
    tui.keys(b"123\r");
    tui.wait_text("→ 123");
    tui.keys(&[0x13]); // ctrl-s: apply
    tui.wait_text("1 accepted");

    // While the TUI keeps running, the CLI reads the key over the service port.
    let out = std::process::Command::new(BIN)
        .args(["config", "get", "HeartbeatInterval", "--port"])
        .arg(&expected)
        .arg("--json")
        .env("CHARGECTL_DATA_DIR", &data)
        .env("CHARGECTL_CONFIG_DIR", &config)
        .env_remove("CHARGECTL_PORT")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run chargectl config get");
    assert!(
        out.status.success(),
        "config get failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(doc["entries"][0]["key"], "HeartbeatInterval", "{doc}");
    assert_eq!(doc["entries"][0]["value"], "123", "{doc}");

    // The TUI is still connected and answers keys.
    tui.keys(b"2");
    let screen = tui.wait_text("Service port (for --port)");
    assert!(!screen.contains("lost"), "dashboard:\n{screen}");

    // Quit: exit 0, terminal restored (main screen back, cursor shown), service port removed.
    tui.keys(b"q");
    let status = tui.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    tui.wait_closed();
    {
        let guard = tui.screen.0.lock().unwrap();
        let screen = guard.parser.screen();
        assert!(!screen.alternate_screen(), "still on the alternate screen");
        assert!(!screen.hide_cursor(), "cursor left hidden");
    }
    assert!(
        !expected.exists(),
        "service port link left behind at {}",
        expected.display()
    );
    // The emulator saved the change in its state directory.
    let saved = std::fs::read(data.join("emulator/CHARGECTL-EMU-1/config.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&saved).expect("config.json");
    assert_eq!(saved["values"]["HeartbeatInterval"], "123", "{saved}");
}

#[test]
fn a_dry_run_started_in_the_tui_shows_its_trace_and_saves_its_report() {
    let (_root, data, config) = dirs();
    let mut tui = Tui::spawn(&[], &data, &config);
    tui.wait_text("Start an emulated charger on the sandbox CSMS");
    tui.keys(b"7");
    tui.wait_text("Commissioning dry run");
    // No profile, no URL: the sandbox CSMS in-process.
    tui.keys(b"s");
    let screen = tui.wait_for("the boot in the trace and the progress", |s| {
        s.contains("→ BootNotification") && s.contains("Accepted")
    });
    assert!(screen.contains("the sandbox CSMS"), "{screen}");
    // Stop early: the report is still made.
    tui.keys(b"x");
    let screen = tui.wait_text("Verdict");
    assert!(screen.contains("stopped early"), "{screen}");
    tui.keys(b"w");
    tui.wait_text("Save report to");
    let out = data.join("tui-report.json");
    tui.keys(&[0x15]); // ctrl-u: clear the suggested name
    tui.keys(out.to_str().unwrap().as_bytes());
    tui.keys(b"\r");
    tui.wait_text("report written to");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the report file")).expect("JSON");
    assert_eq!(report["format_version"], 1, "{report}");
    assert_eq!(report["ended_by"], "interrupted", "{report}");
    assert_eq!(report["sandbox"], true, "{report}");
    tui.keys(b"q");
    let status = tui.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn quitting_during_a_dry_run_writes_its_report_and_names_it_on_exit() {
    let (_root, data, config) = dirs();
    let mut tui = Tui::spawn(&[], &data, &config);
    tui.wait_text("Start an emulated charger on the sandbox CSMS");
    tui.keys(b"7");
    tui.wait_text("Commissioning dry run");
    tui.keys(b"s");
    tui.wait_for("the boot in the trace", |s| {
        s.contains("→ BootNotification")
    });
    // q in the middle of the run: it ends as Ctrl-C ends `chargectl dry-run`.
    tui.keys(b"q");
    let status = tui.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    tui.wait_closed();
    let reports = data.join("reports");
    let files: Vec<PathBuf> = std::fs::read_dir(&reports)
        .expect("the reports directory")
        .map(|e| e.unwrap().path())
        .collect();
    let [report] = files.as_slice() else {
        panic!("one report expected in {}: {files:?}", reports.display());
    };
    let md = std::fs::read_to_string(report).unwrap();
    assert!(md.starts_with("# Commissioning dry run: "), "{md}");
    assert!(md.contains("interrupted"), "ended like Ctrl-C:\n{md}");
    // The exit message names the file (the terminal is 80 columns wide, so compare unwrapped).
    let screen: String = tui.contents().lines().map(str::trim_end).collect();
    let named = format!("dry run report written to {}", report.display());
    assert!(screen.contains(&named), "{named}\nnot in:\n{screen}");
}

#[test]
fn a_fleet_started_from_the_emulator_screen_boots_and_stops() {
    let (_root, data, config) = dirs();
    let mut tui = Tui::spawn(&[], &data, &config);
    tui.wait_text("Start an emulated charger on the sandbox CSMS");
    tui.keys(b"6n");
    tui.wait_text("Fleet: count=10");
    tui.keys(&[0x15]); // ctrl-u
    tui.keys(b"count=5 template=PTY-{n} ramp=0 sessions=0");
    tui.keys(b"\r");
    let screen = tui.wait_text("5 booted of 5");
    assert!(screen.contains("Emulated fleet"), "{screen}");
    tui.keys(b"x");
    tui.wait_text("stopped");
    for n in 1..=5 {
        let dir = data
            .join("emulator")
            .join("tui-fleet")
            .join(format!("PTY-{n}"));
        assert!(dir.is_dir(), "{} missing", dir.display());
    }
    tui.keys(b"q");
    let status = tui.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn bad_keymap_fails_before_the_tui_starts() {
    let (_root, data, config) = dirs();
    std::fs::write(
        config.join("keymap.toml"),
        "[global]\n\"q\" = \"no-such-action\"\n",
    )
    .unwrap();
    let mut tui = Tui::spawn(&[], &data, &config);
    let status = tui.wait_exit();
    tui.wait_closed();
    let text = tui.contents();
    assert_eq!(status.exit_code(), 6, "screen:\n{text}");
    assert!(text.contains("keymap.toml:2:"), "screen:\n{text}");
    let guard = tui.screen.0.lock().unwrap();
    assert!(!guard.parser.screen().alternate_screen());
}

#[test]
fn without_a_terminal_chargectl_names_the_subcommands() {
    let (_root, data, config) = dirs();
    let out = std::process::Command::new(BIN)
        .env("CHARGECTL_DATA_DIR", &data)
        .env("CHARGECTL_CONFIG_DIR", &config)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run chargectl");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
    for sub in ["ports", "config", "flash", "emulate"] {
        assert!(err.contains(sub), "missing {sub}: {err}");
    }
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
