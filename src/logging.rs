//! chargectl's own diagnostics (not the charger's log): `tracing` to stderr in CLI mode, to a
//! file while the TUI owns the terminal. `CHARGECTL_LOG` takes an EnvFilter expression.

use std::path::Path;
use tracing_subscriber::EnvFilter;

/// Keeps the non-blocking file writer alive; drop it last so the final lines are flushed.
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("CHARGECTL_LOG").unwrap_or_else(|_| EnvFilter::new(default))
}

/// CLI mode: warnings (or more with `-v`) to stderr.
pub fn init_stderr(verbosity: u8) -> LogGuard {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    LogGuard(None)
}

/// TUI mode (or `--log-file`): everything goes to a daily-rotated file in `dir`, nothing to the
/// terminal.
pub fn init_file(dir: &Path, file_prefix: &str) -> LogGuard {
    let _ = std::fs::create_dir_all(dir);
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(file_prefix)
        .filename_suffix("log")
        .max_log_files(5)
        .build(dir);
    match appender {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter("info"))
                .with_writer(writer)
                .with_ansi(false)
                .try_init();
            LogGuard(Some(guard))
        }
        Err(_) => LogGuard(None),
    }
}
