//! Where chargectl keeps its files, resolved once and passed down.
//!
//! `CHARGECTL_CONFIG_DIR` and `CHARGECTL_DATA_DIR` override the platform directories (this makes
//! tests hermetic).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    /// User configuration: `config.toml`, `keymap.toml`.
    pub config_dir: PathBuf,
    /// Emulator state, records of serial sessions.
    pub data_dir: PathBuf,
    /// chargectl's own diagnostics log files.
    pub log_dir: PathBuf,
    /// Downloads.
    pub cache_dir: PathBuf,
}

impl Paths {
    /// Resolves the directories from the environment and the platform conventions.
    pub fn resolve() -> Paths {
        let dirs = directories::ProjectDirs::from("", "", "chargectl");
        let fallback = std::env::temp_dir().join("chargectl");
        let config_dir = std::env::var_os("CHARGECTL_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs.as_ref().map(|d| d.config_dir().to_path_buf()))
            .unwrap_or_else(|| fallback.join("config"));
        let data_dir = std::env::var_os("CHARGECTL_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs.as_ref().map(|d| d.data_local_dir().to_path_buf()))
            .unwrap_or_else(|| fallback.join("data"));
        let log_dir = if std::env::var_os("CHARGECTL_DATA_DIR").is_some() {
            data_dir.join("log")
        } else {
            dirs.as_ref()
                .and_then(|d| d.state_dir().map(Path::to_path_buf))
                .unwrap_or_else(|| data_dir.join("log"))
        };
        let cache_dir = dirs
            .as_ref()
            .map(|d| d.cache_dir().to_path_buf())
            .unwrap_or_else(|| fallback.join("cache"));
        Paths {
            config_dir,
            data_dir,
            log_dir,
            cache_dir,
        }
    }

    /// Records of serial sessions (one JSON Lines file per session, rotated).
    pub fn sessions_dir(&self) -> PathBuf {
        self.data_dir.join("sessions")
    }

    /// The user's provisioning profiles (`NAME.toml`, found by name).
    pub fn profiles_dir(&self) -> PathBuf {
        self.config_dir.join("profiles")
    }

    /// Default state directory of an emulated charger with this charge point id.
    pub fn emulator_state_dir(&self, charge_point_id: &str) -> PathBuf {
        let safe: String = charge_point_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.data_dir.join("emulator").join(safe)
    }
}
