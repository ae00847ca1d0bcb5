//! The real `chargectl` binary run to its end with its own data and config directories under
//! `home`, for tests that include this file with `#[path = "common/cli_run.rs"] mod cli_run;`.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// `chargectl` with its directories under `home` and nothing from the caller's environment
/// that would change what it does.
pub fn command(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chargectl"));
    cmd.env("CHARGECTL_DATA_DIR", home.join("data"))
        .env("CHARGECTL_CONFIG_DIR", home.join("config"))
        .env_remove("RUST_LOG")
        .env_remove("CHARGECTL_PORT")
        .env_remove("CHARGECTL_BAUD")
        .env_remove("CHARGECTL_AUTHORIZATION_KEY")
        .kill_on_drop(true);
    cmd
}

/// How a run ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON document stdout holds, or the one on its first line.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .or_else(|_| serde_json::from_str(self.stdout.lines().next().unwrap_or("")))
            .unwrap_or_else(|e| {
                panic!("stdout does not start with a JSON document ({e}): {self:#?}")
            })
    }

    /// Every non-empty line of stdout as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

impl Run {
    /// Stdout and stderr together.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `chargectl ARGS` with the extra environment `vars`, no stdin, within `limit`.
pub async fn run(home: &Path, args: &[&str], vars: &[(&str, &str)], limit: Duration) -> Run {
    let mut cmd = command(home);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(
        limit,
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("chargectl {args:?} did not finish within {limit:?}"))
    .expect("chargectl runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
