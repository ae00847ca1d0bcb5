//! TUI settings from `config.toml` in the config directory.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::keymap::line_column;
use super::state::DEFAULT_LOG_BUFFER_LINES;

/// Largest log buffer accepted (about 1.5 GB of typical lines).
pub const MAX_LOG_BUFFER_LINES: usize = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Lines the log screen keeps (`log_buffer_lines`, default 100000).
    pub log_buffer_lines: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            log_buffer_lines: DEFAULT_LOG_BUFFER_LINES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: cannot read the settings: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct Raw {
    log_buffer_lines: Option<toml::Spanned<i64>>,
}

impl Settings {
    /// Reads `path` if it exists; a missing file means defaults. Other keys are left to the
    /// parts of chargectl that own them.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Settings::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(SettingsError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Settings, SettingsError> {
        let err = |offset: usize, message: String| {
            let (line, column) = line_column(text, offset);
            SettingsError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            err(
                e.span().map(|s| s.start).unwrap_or(0),
                e.message().trim().to_string(),
            )
        })?;
        let mut settings = Settings::default();
        if let Some(n) = raw.log_buffer_lines {
            let v = *n.get_ref();
            if v < 1 || v as u64 > MAX_LOG_BUFFER_LINES as u64 {
                return Err(err(
                    n.span().start,
                    format!(
                        "log_buffer_lines must be between 1 and {MAX_LOG_BUFFER_LINES}, got {v}"
                    ),
                ));
            }
            settings.log_buffer_lines = v as usize;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_log_buffer_lines_and_reports_bad_values_with_position() {
        let p = Path::new("config.toml");
        assert_eq!(Settings::parse(p, "").unwrap().log_buffer_lines, 100_000);
        assert_eq!(
            Settings::parse(p, "log_buffer_lines = 500\nother = 1\n")
                .unwrap()
                .log_buffer_lines,
            500
        );
        let e = Settings::parse(p, "\nlog_buffer_lines = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config.toml:2:20: log_buffer_lines must be"),
            "{e}"
        );
        let e = Settings::parse(p, "log_buffer_lines = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config.toml:1:20: "), "{e}");
    }
}
