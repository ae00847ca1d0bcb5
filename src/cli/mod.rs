//! Non-interactive commands: each a thin call into the library.

pub mod args;
pub mod commands;
pub mod exit;
pub mod manpages;
pub mod output;

pub use args::Cli;
pub use exit::{ExitCode, Failure};

use std::io::IsTerminal;

/// The environment, sampled once in `main` and passed down (no `is_terminal()` deep in the code).
#[derive(Debug, Clone)]
pub struct Env {
    pub json: bool,
    pub stdin_tty: bool,
    pub stdout_tty: bool,
    pub stderr_tty: bool,
    /// Colour allowed on stdout (a terminal and `NO_COLOR` unset).
    pub color: bool,
    /// Prompts allowed.
    pub interactive: bool,
    pub paths: crate::paths::Paths,
}

impl Env {
    pub fn sample(global: &args::GlobalArgs) -> Env {
        let stdin_tty = std::io::stdin().is_terminal();
        let stdout_tty = std::io::stdout().is_terminal();
        let stderr_tty = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Env {
            json: global.json,
            stdin_tty,
            stdout_tty,
            stderr_tty,
            color: stdout_tty && !no_color,
            interactive: stdin_tty && stdout_tty && !global.non_interactive && !global.json,
            paths: crate::paths::Paths::resolve(),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
