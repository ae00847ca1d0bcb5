//! The real `chargectl emulate --headless --json` binary as a child process: hardware actions
//! written to its stdin, its JSON Lines events and stderr collected, its exit watched. Used by
//! the power-loss, disk-trouble and trial-boot suites, which need a process that can die.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_chargectl");

/// A running emulated charger process.
pub struct ChargerProc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    /// Every JSON line it printed on stdout.
    pub events: Arc<Mutex<Vec<Value>>>,
    /// Everything it printed on stderr.
    pub stderr: Arc<Mutex<String>>,
    /// Its exit status, once it exited.
    pub exit: Option<std::process::ExitStatus>,
}

impl ChargerProc {
    /// Starts `chargectl emulate --headless --json` against `csms_url` with the state in `dir`,
    /// more arguments from `extra` and environment variables from `env`.
    pub fn spawn(
        dir: &Path,
        csms_url: &str,
        id: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> ChargerProc {
        Self::spawn_as(dir, csms_url, id, extra, env, None)
    }

    /// [`ChargerProc::spawn`] as another user (`uid` doubles as the group id); only root can.
    pub fn spawn_as(
        dir: &Path,
        csms_url: &str,
        id: &str,
        extra: &[&str],
        env: &[(&str, String)],
        uid: Option<u32>,
    ) -> ChargerProc {
        let mut cmd = Command::new(BIN);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid).env("HOME", dir);
        }
        cmd.arg("emulate")
            .arg("--headless")
            .arg("--json")
            .arg("--csms")
            .arg(csms_url)
            .arg("--id")
            .arg(id)
            .arg("--state-dir")
            .arg(dir)
            .args(extra)
            .env_remove("CHARGECTL_FAILPOINT")
            .env_remove("CHARGECTL_FAILPOINT_LOG")
            .env("CHARGECTL_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("chargectl starts");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let e = events.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    e.lock().unwrap().push(v);
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let s = stderr.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                s.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        ChargerProc {
            child,
            stdin,
            events,
            stderr,
            exit: None,
        }
    }

    /// Writes one action line; a dead process is not an error here (the caller watches exits).
    pub async fn act(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let ok = stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_ok()
                && stdin.flush().await.is_ok();
            if !ok {
                self.stdin = None;
            }
        }
    }

    /// Writes one action line that the charger acknowledges on stdout (`storage_fault`,
    /// `fail_boots`) and waits until it has taken it, so what the test does next meets it.
    pub async fn act_taken(&mut self, line: &str) {
        let action = serde_json::from_str::<Value>(line).expect("an action line")["action"]
            .as_str()
            .expect("an action name")
            .to_string();
        let seen = |events: &[Value]| {
            events
                .iter()
                .filter(|v| v["type"] == "action" && v["data"]["action"] == action.as_str())
                .count()
        };
        let before = seen(&self.events.lock().unwrap());
        self.act(line).await;
        let events = self.events.clone();
        let taken = async {
            while seen(&events.lock().unwrap()) == before {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), taken)
            .await
            .unwrap_or_else(|_| panic!("the charger takes {line}"));
    }

    /// Whether the process has exited (and records how).
    pub fn exited(&mut self) -> bool {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit.is_some()
    }

    /// Runs `fut` unless the process exits first: `None` when it exited.
    pub async fn until<T>(&mut self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        if self.exit.is_some() {
            return None;
        }
        tokio::select! {
            r = fut => Some(r),
            status = self.child.wait() => {
                self.exit = status.ok();
                None
            }
        }
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        if self.exit.is_none()
            && let Ok(Ok(status)) = tokio::time::timeout(limit, self.child.wait()).await
        {
            self.exit = Some(status);
        }
        self.exit
    }

    /// Cuts the power (SIGKILL) if it is still running, and reaps it.
    pub async fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.start_kill();
            self.exit = self.child.wait().await.ok();
        }
    }

    /// Asks it to stop cleanly (SIGTERM) and waits up to `limit`; kills it after that.
    pub async fn stop(&mut self, limit: Duration) {
        if self.exit.is_none() {
            if let Some(pid) = self.child.id() {
                // SAFETY: sending a signal to our own child by its pid has no memory effects.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
            if self.wait_exit(limit).await.is_none() {
                self.kill().await;
            }
        }
    }

    /// The log records it printed (`{"type":"log","data":{...}}`), as data objects.
    pub fn logs(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "log")
            .map(|v| v["data"].clone())
            .collect()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}
