//! The only code that touches the terminal: reads input, carries out effects through the
//! [`Backend`], draws frames when something changed and a frame is due. Every task it starts
//! (effects, and the backend's own from [`Backend::start`]) lives in one `JoinSet`; a panic in
//! any of them ends the TUI with an error instead of drawing over a broken state.

use anyhow::Context as _;
use crossterm::event::Event;
use futures_util::{Stream, StreamExt};
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::backend::{Backend, Events};
use super::keymap::{Keymap, KeymapError};
use super::msg::{Effect, Msg};
use super::settings::{Settings, SettingsError};
use super::state::State;
use super::theme::Theme;
use super::update::update;
use super::view::view;

/// Messages taken from the backend channel per loop turn, so input stays responsive.
const BATCH: usize = 512;

/// Everything the TUI needs, resolved before the terminal is touched.
#[derive(Debug, Clone)]
pub struct TuiOptions {
    pub keymap: Keymap,
    /// Colours allowed (false under `NO_COLOR`).
    pub color: bool,
    pub log_buffer_lines: usize,
    /// Period of [`Msg::Tick`].
    pub tick: Duration,
    /// Shortest time between two frames.
    pub frame: Duration,
    /// Where dry run reports go when nobody chose a file (`reports` in the data directory);
    /// None: the current directory.
    pub report_dir: Option<PathBuf>,
}

/// A settings or keymap file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Keymap(#[from] KeymapError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

impl TuiOptions {
    /// Loads `config.toml` and the keymap (`--keymap` choice, then `keymap.toml`) from
    /// `config_dir`. Call before the TUI starts so errors print as `path:line:column: message`.
    pub fn load(
        config_dir: &Path,
        keymap_choice: Option<&str>,
        color: bool,
    ) -> Result<TuiOptions, OptionsError> {
        let settings = Settings::load(&config_dir.join("config.toml"))?;
        let keymap = Keymap::load(keymap_choice, Some(&config_dir.join("keymap.toml")))?;
        Ok(TuiOptions {
            keymap,
            color,
            log_buffer_lines: settings.log_buffer_lines,
            ..TuiOptions::with_keymap(Keymap::default_preset(), color)
        })
    }

    /// Defaults around a given keymap.
    pub fn with_keymap(keymap: Keymap, color: bool) -> TuiOptions {
        TuiOptions {
            keymap,
            color,
            log_buffer_lines: super::state::DEFAULT_LOG_BUFFER_LINES,
            tick: Duration::from_millis(250),
            frame: Duration::from_millis(16),
            report_dir: None,
        }
    }
}

/// Runs the TUI on the real terminal until the user quits; returns the final state, whose
/// `exit_lines` are for the terminal once it is restored.
///
/// Enters raw mode and the alternate screen with `ratatui::try_init` (whose panic hook restores
/// the terminal before the panic is reported) and restores it on every exit path. A signal
/// (SIGINT, SIGTERM, SIGHUP) is a quit like Ctrl-C: a dry run still writes its report first; a
/// second signal quits at once.
pub async fn run(opts: TuiOptions, backend: impl Backend) -> anyhow::Result<State> {
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            // Raw mode may already be on when entering the alternate screen failed.
            let _ = ratatui::try_restore();
            return Err(e).context("setting up the terminal");
        }
    };
    let input = crossterm::event::EventStream::new();
    let signals = futures_util::stream::unfold((), |()| async {
        let signal = termination().await;
        tracing::info!(signal, "quitting on signal");
        Some(((), ()))
    });
    let result = run_loop(&mut terminal, input, Box::pin(signals), backend, opts).await;
    let restored = ratatui::try_restore().context("restoring the terminal");
    let state = result?;
    restored?;
    Ok(state)
}

/// Resolves when the process is asked to stop from outside (SIGINT, SIGTERM, SIGHUP), so the
/// terminal is restored instead of left in raw mode.
async fn termination() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let wait = |kind: SignalKind| async move {
            match signal(kind) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!("cannot listen for a signal: {e}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = wait(SignalKind::interrupt()) => "SIGINT",
            _ = wait(SignalKind::terminate()) => "SIGTERM",
            _ = wait(SignalKind::hangup()) => "SIGHUP",
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "ctrl-c",
            Err(_) => std::future::pending().await,
        }
    }
}

/// The event loop over any ratatui backend and input stream; returns the final state.
/// Ends when the user quits or the input stream ends; a panicked backend task is an error.
pub async fn run_with<B, S>(
    terminal: &mut Terminal<B>,
    input: S,
    backend: impl Backend,
    opts: TuiOptions,
) -> anyhow::Result<State>
where
    B: ratatui::backend::Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    S: Stream<Item = std::io::Result<Event>> + Unpin,
{
    run_loop(
        terminal,
        input,
        futures_util::stream::pending(),
        backend,
        opts,
    )
    .await
}

/// [`run_with`] with a stream of outside requests to quit (signals), each handled like Ctrl-C.
async fn run_loop<B, S, Q>(
    terminal: &mut Terminal<B>,
    mut input: S,
    mut quit_requests: Q,
    mut backend: impl Backend,
    opts: TuiOptions,
) -> anyhow::Result<State>
where
    B: ratatui::backend::Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    S: Stream<Item = std::io::Result<Event>> + Unpin,
    Q: Stream<Item = ()> + Unpin,
{
    let (events, mut rx) = Events::channel(4096);
    let mut state = State::new(opts.keymap, Theme::new(opts.color), opts.log_buffer_lines);
    state.report_dir = opts.report_dir;
    if let Ok(size) = terminal.size() {
        state.size = (size.width, size.height);
    }
    let mut tasks: JoinSet<()> = JoinSet::new();
    if let Some(task) = backend.start() {
        tasks.spawn(task);
    }
    let mut tick = tokio::time::interval(opts.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut next_frame = Instant::now();
    let mut msgs: Vec<Msg> = Vec::new();

    perform(
        &mut state,
        vec![Effect::ListPorts],
        &mut backend,
        &events,
        &mut tasks,
    );
    state.connect.listing = true;

    loop {
        if dirty && Instant::now() >= next_frame {
            terminal
                .draw(|f| view(&state, f))
                .context("drawing the screen")?;
            dirty = false;
            next_frame = Instant::now() + opts.frame;
        }
        tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(Event::Key(k))) => msgs.push(Msg::Key(k)),
                Some(Ok(Event::Resize(w, h))) => {
                    terminal.autoresize().context("resizing")?;
                    msgs.push(Msg::Resize(w, h));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading terminal input"),
                None => {
                    tracing::info!("terminal input ended");
                    break;
                }
            },
            Some(msg) = rx.recv() => {
                msgs.push(msg);
                while msgs.len() < BATCH {
                    match rx.try_recv() {
                        Ok(m) => msgs.push(m),
                        Err(_) => break,
                    }
                }
            }
            Some(()) = quit_requests.next() => msgs.push(Msg::Key(
                crossterm::event::KeyEvent::new(
                    crossterm::event::KeyCode::Char('c'),
                    crossterm::event::KeyModifiers::CONTROL,
                ),
            )),
            _ = tick.tick() => msgs.push(Msg::Tick(Instant::now().into_std())),
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tasks.abort_all();
                    anyhow::bail!("a background task panicked; see the log file");
                }
            }
            _ = tokio::time::sleep_until(next_frame), if dirty => {}
        }
        for msg in msgs.drain(..) {
            let effects = update(&mut state, msg);
            dirty = true;
            perform(&mut state, effects, &mut backend, &events, &mut tasks);
        }
        if state.quit {
            break;
        }
    }
    tasks.abort_all();
    Ok(state)
}

fn perform(
    state: &mut State,
    effects: Vec<Effect>,
    backend: &mut impl Backend,
    events: &Events,
    tasks: &mut JoinSet<()>,
) {
    for effect in effects {
        tracing::debug!(effect = effect_name(&effect), "effect");
        match effect {
            Effect::Quit => state.quit = true,
            Effect::ExportLogs { path, lines } => {
                let events = events.clone();
                tasks.spawn(async move {
                    let count = lines.len();
                    let write_path = path.clone();
                    let written = tokio::task::spawn_blocking(move || {
                        let mut text = lines.join("\n");
                        text.push('\n');
                        crate::storage::write_atomic(&write_path, text.as_bytes())
                    })
                    .await;
                    let msg = match written {
                        Ok(Ok(())) => Msg::LogsExported { path, lines: count },
                        Ok(Err(e)) => Msg::Error {
                            context: format!("exporting logs to {}", path.display()),
                            message: e.to_string(),
                        },
                        Err(e) => Msg::Error {
                            context: format!("exporting logs to {}", path.display()),
                            message: e.to_string(),
                        },
                    };
                    events.send(msg).await;
                });
            }
            Effect::SaveReport { path, report } => {
                let events = events.clone();
                tasks.spawn(async move {
                    let msg = match save_report(path.clone(), report).await {
                        Ok(()) => Msg::ReportSaved { path },
                        Err(message) => Msg::ReportNotSaved { path, message },
                    };
                    events.send(msg).await;
                });
            }
            other => {
                if let Some(task) = backend.perform(other, events) {
                    tasks.spawn(task);
                }
            }
        }
    }
}

/// Writes a dry run report in the format `path`'s extension names, atomically.
async fn save_report(path: PathBuf, report: Box<crate::dryrun::Report>) -> Result<(), String> {
    let format = crate::dryrun::ReportFormat::for_path(&path)
        .ok_or_else(|| crate::dryrun::ReportFormat::EXTENSIONS.to_string())?;
    tokio::task::spawn_blocking(move || {
        crate::storage::write_atomic(&path, report.render(format).as_bytes())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Effect names for diagnostics (values, possibly secret, are left out).
fn effect_name(effect: &Effect) -> &'static str {
    match effect {
        Effect::ListPorts => "list-ports",
        Effect::Connect { .. } => "connect",
        Effect::StartEmulator { .. } => "start-emulator",
        Effect::Disconnect => "disconnect",
        Effect::ReadConfig { .. } => "read-config",
        Effect::ApplyConfig { .. } => "apply-config",
        Effect::LoadProfile { .. } => "load-profile",
        Effect::InspectImage { .. } => "inspect-image",
        Effect::StartFlash { .. } => "start-flash",
        Effect::Reboot => "reboot",
        Effect::ExportLogs { .. } => "export-logs",
        Effect::Hardware(_) => "hardware",
        Effect::StartDryRun { .. } => "start-dry-run",
        Effect::StopDryRun { .. } => "stop-dry-run",
        Effect::StartFleet { .. } => "start-fleet",
        Effect::StopFleet { .. } => "stop-fleet",
        Effect::SaveReport { .. } => "save-report",
        Effect::Quit => "quit",
    }
}
