//! The single definition of the command line. `--help`, the man pages and the shell completions
//! are all generated from these types.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  chargectl                                      open the TUI (on a terminal)
  chargectl emulate --headless --json            an emulated charger on the sandbox CSMS
  chargectl emulate --csms ws://127.0.0.1:9000 --id CP1 --headless --json
  chargectl csms --listen 127.0.0.1:9000         the sandbox CSMS on its own
  chargectl config get HeartbeatInterval --port /dev/ttyUSB0
  chargectl config set HeartbeatInterval=300 --port /dev/ttyUSB0 --json
  chargectl flash image.bin --port /dev/ttyUSB0

Exit codes are listed in chargectl(1) under EXIT STATUS.";

/// A terminal tool for EV charger installers, support staff and provisioning scripts.
#[derive(Debug, Parser)]
#[command(name = "chargectl", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Print machine-readable JSON on stdout (one document, or JSON Lines for streams).
    #[arg(long, global = true)]
    pub json: bool,
    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Write chargectl's own diagnostics to this file instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Never prompt; fail and name the flag that supplies a missing value.
    #[arg(long, global = true)]
    pub non_interactive: bool,
    /// Key bindings for the TUI: a preset name (default, vim) or a file.
    #[arg(long, global = true, value_name = "NAME", env = "CHARGECTL_KEYMAP")]
    pub keymap: Option<String>,
}

/// How to reach a charger's service port.
#[derive(Debug, Args, Clone)]
pub struct PortArgs {
    /// Serial device path, or tcp://HOST:PORT for serial over TCP (as ser2net provides).
    #[arg(short, long, env = "CHARGECTL_PORT", value_name = "PORT")]
    pub port: String,
    /// Line rate of the serial port.
    #[arg(long, env = "CHARGECTL_BAUD", default_value_t = 115_200, value_parser = baud_rate())]
    pub baud: u32,
    /// Seconds to wait for the charger to answer a request.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS", value_parser = seconds(0.001, 3600.0))]
    pub timeout: f64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List serial ports, marking likely chargers.
    Ports {
        /// Show every port, not only USB ones.
        #[arg(long)]
        all: bool,
    },
    /// Show the charger's identity, firmware, slots and uptime.
    Info {
        #[command(flatten)]
        port: PortArgs,
    },
    /// Read or write configuration keys over the service port.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply a provisioning profile to a charger.
    Provision {
        /// Profile file (TOML), or the name of a shipped profile.
        profile: String,
        #[command(flatten)]
        port: PortArgs,
        /// Set a profile variable (repeatable), such as CHARGE_POINT_ID=CP1.
        #[arg(long = "set", value_name = "VAR=VALUE")]
        set: Vec<String>,
        /// Show what would change without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Flash a signed firmware image and reboot into it.
    ///
    /// The charger boots a new image on trial and confirms it once it is up; after its trial
    /// boots fail it goes back to the previous image. After the reboot, flash waits (at most
    /// --confirm-timeout) for the charger to come back and reads its boot state: a confirmed
    /// image ends with status 0; a rollback ends with status 8 (rolled_back) and names the
    /// version that runs again; no answer in time ends with status 3 (unreachable), an image
    /// still on trial at the end of the wait with status 1. With --json, lines of type "boot"
    /// show the wait and the result line's "boot" object gives the outcome ("confirmed",
    /// "rolled_back", "kept_previous", "unconfirmed" or "not_rebooted").
    Flash {
        /// Signed image made with `chargectl firmware pack`.
        image: PathBuf,
        #[command(flatten)]
        port: PortArgs,
        /// Send the image uncompressed even when compression would help.
        #[arg(long)]
        no_compress: bool,
        /// Leave the charger on its current firmware after the transfer (no reboot).
        #[arg(long)]
        no_reboot: bool,
        /// Seconds to wait after the reboot for the charger to come back and confirm the new
        /// image (or report that it went back to the previous one).
        #[arg(long, default_value_t = 120.0, value_name = "SECONDS", value_parser = seconds(1.0, 3600.0))]
        confirm_timeout: f64,
    },
    /// Show the charger's log.
    Logs {
        #[command(flatten)]
        port: PortArgs,
        /// Lowest level to show: trace, debug, info, warn or error.
        #[arg(long, default_value = "info")]
        level: String,
        /// Keep streaming new lines until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Also write the lines to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Reboot the charger.
    Reboot {
        #[command(flatten)]
        port: PortArgs,
    },
    /// Run the charger's complete OCPP stack locally with simulated hardware.
    Emulate(EmulateArgs),
    /// Commissioning dry run: the emulated charger against a CSMS, and a report of everything
    /// that would not work on the real charger.
    #[command(after_long_help = DRY_RUN_AFTER_HELP)]
    DryRun(DryRunArgs),
    /// Run the sandbox CSMS on its own.
    Csms {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
        listen: String,
        /// Print a summary once a second (connections, boots, messages) instead of one line per
        /// event; frames are counted, not recorded. For load tests with thousands of charge
        /// points.
        #[arg(long)]
        summary: bool,
    },
    /// Build and check signed firmware images.
    #[command(subcommand)]
    Firmware(FirmwareCommand),
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Read all keys, or the named ones.
    Get {
        /// Key names; none means every key.
        keys: Vec<String>,
        #[command(flatten)]
        port: PortArgs,
    },
    /// Write keys, each as KEY=VALUE.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
        #[command(flatten)]
        port: PortArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Make a signing key pair: NAME (secret, mode 0600) and NAME.pub.
    Keygen {
        #[arg(short, long, value_name = "NAME")]
        output: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Pack a payload into a signed image.
    Pack {
        /// Secret key made with `firmware keygen`.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Firmware version written into the header, such as 2.4.1.
        #[arg(long, value_name = "V")]
        version: String,
        /// The firmware payload.
        payload: PathBuf,
        #[arg(short, long, value_name = "IMAGE")]
        output: PathBuf,
    },
    /// Show an image's header and check it.
    Inspect {
        image: PathBuf,
        /// Also verify the signature against this public key (repeatable).
        #[arg(long = "trust-key", value_name = "PUBKEY")]
        trust_keys: Vec<PathBuf>,
    },
}

/// How the HTTP Basic password is made from the AuthorizationKey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum BasicAuthPassword {
    /// The key's decoded bytes (what the OCPP compliance tests expect).
    #[default]
    Bytes,
    /// The key's hex text, for CSMSs that expect it.
    Hex,
}

#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// CSMS URL (ws:// or wss://); the charge point id is appended as the last path segment.
    /// Without it the sandbox CSMS starts on a free loopback port.
    #[arg(long, value_name = "URL")]
    pub csms: Option<String>,
    /// Charge point id (default: the one stored in the state directory, else CHARGECTL-EMU-1).
    #[arg(long)]
    pub id: Option<String>,
    /// Provisioning profile to apply before connecting (dry run of `provision`).
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Set a profile variable (repeatable).
    #[arg(long = "set", value_name = "VAR=VALUE")]
    pub set: Vec<String>,
    /// Directory holding the emulated charger's state (default: in the data directory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Expose the service port as a pseudo-terminal and make PATH a symlink to it.
    #[arg(long, value_name = "PATH")]
    pub serial_link: Option<PathBuf>,
    /// Throttle the emulated service port to this line rate (bits per second, 10 bits a byte).
    #[arg(long, value_name = "N", value_parser = baud_rate())]
    pub serial_baud: Option<u32>,
    /// Fraction of bytes the emulated service port drops (fault injection), such as 0.001.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = fraction)]
    pub serial_drop_rate: f64,
    /// Fraction of bytes the emulated service port corrupts (fault injection), such as 0.001.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = fraction)]
    pub serial_flip_rate: f64,
    /// Number of emulated chargers. Above 1 this runs a fleet: N complete charge points in one
    /// process, each with its own state directory under --state-dir, ids from --id-template, a
    /// live summary instead of per-charger events.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_COUNT))]
    pub count: u32,
    /// Fleet: charge point ids, with {n} the number from 1 to N, optionally zero-padded
    /// ({n:04}); default: the --id followed by -{n}, else CHARGECTL-EMU-{n}.
    #[arg(long, value_name = "TEMPLATE")]
    pub id_template: Option<String>,
    /// Fleet: start this many charge points per second (default: all at once, a boot storm).
    #[arg(long, value_name = "PER_SECOND", value_parser = positive_rate)]
    pub ramp: Option<f64>,
    /// Fleet: start random charging sessions at this rate per second across the fleet (plug,
    /// card, charge at a random demand for 30 s to 5 min, unplug).
    #[arg(long, value_name = "RATE", value_parser = positive_rate)]
    pub sessions: Option<f64>,
    /// Fleet: seed of the random sessions, to repeat a run (default: a random seed, shown).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Fleet: run only the K-th of M slices of the ids 1 to N (K from 1 to M), so M processes,
    /// on one host or many, share one fleet without a coordinator.
    #[arg(long, value_name = "K/M", value_parser = shard)]
    pub shard: Option<crate::emulator::fleet::Shard>,
    /// Fleet: stream every event of this one charge point (id) as well as the summary.
    #[arg(long, value_name = "CP_ID")]
    pub trace: Option<String>,
    /// Run without the TUI: hardware actions as JSON Lines on stdin, events on stdout.
    #[arg(long)]
    pub headless: bool,
    /// SecurityProfile to start with (0 or 1), stored in the charger's configuration.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub security_profile: Option<u8>,
    /// AuthorizationKey as hex (16 to 20 bytes), stored write-only in the configuration.
    #[arg(
        long,
        value_name = "HEX",
        env = "CHARGECTL_AUTHORIZATION_KEY",
        hide_env_values = true
    )]
    pub authorization_key: Option<String>,
    /// How the HTTP Basic password is made from the AuthorizationKey (stored in the charger's
    /// configuration; default: bytes).
    #[arg(long, value_enum)]
    pub basic_auth_password: Option<BasicAuthPassword>,
    /// Public key trusted for firmware images (repeatable).
    #[arg(long = "trust-key", value_name = "PUBKEY")]
    pub trust_keys: Vec<PathBuf>,
    /// Set the meter's energy register to N Wh before boot (kept in the state directory), to
    /// match a charger that has been in service.
    #[arg(long, value_name = "N")]
    pub meter_start_wh: Option<u64>,
}

/// `dry-run`'s extra help: exit codes, scenario format, report shape (also in its man page).
const DRY_RUN_AFTER_HELP: &str = "\
Exit status: 0 nothing blocking was found; 7 something blocking was found; 3 the charger never
reached the CSMS (the reason is printed: DNS, TCP refused, timeout, TLS, the HTTP status of a
refused upgrade such as 401 or 404, no ocpp1.6 subprotocol); 2 bad command line (a --report
extension other than .md, .html or .json); 6 a bad profile or scenario file (file:line:column);
130 interrupted (Ctrl-C) without a blocking finding. Once the run has started the reports are
written whatever the outcome.

Scenario (TOML, --scenario FILE): a timeline of steps, each run `after` a delay once the
previous one is done:

  [commissioning]                       optional, merged with the profile's [commissioning]
  accepted_id_tags = [\"04A2B3C4D5\"]     cards the CSMS must accept
  remote_start = true                   the CSMS must start a session remotely

  [[step]]
  after = \"5s\"                          seconds, or text such as \"1m30s\", \"500ms\"
  action = \"plug\"

Actions: boot (timeout), plug, unplug, card (id_tag), ev_demand (amps), fault (error_code,
info), clear_fault, csms_outage (duration: network lost without a close frame, then back),
power_cut (duration: no clean shutdown, then boot on the same state), reboot,
wait_remote_start (timeout), wait (duration). Without --scenario the built-in default runs:
boot, a card session with an outage during charging, a remote start if the CSMS sends one.

Report (--report FILE, repeatable; .md, .html or .json; with --json the same object ends
stdout as {\"type\": \"report\", \"data\": ...}), format_version 1:

  format_version, tool {name, version}, charge_point_id, csms_url, sandbox, profile,
  scenario {name, source, steps, steps_done}, expectations {accepted_id_tags, remote_start},
  started_at, duration_s, ended_by (completed | interrupted | unreachable),
  connection {connected, connections, disconnections_by_csms, registration,
              failure {kind: dns | tcp_refused | timeout | tls | http_status (+status) |
                       no_subprotocol | bad_url | other}, failure_detail},
  messages {sent, received}, counts {blocking, warning, info},
  findings [{rule, subject, severity (blocking | warning | info),
             area (connection | authorization | transactions | smart_charging | firmware |
                   diagnostics | configuration),
             title, count, request {elapsed_s, time, message_id, action, direction, excerpt},
             detail, charger, release_note {line, text}, advice}],
  verdicts [{area, verdict (ok | warning | blocking | not_exercised), summary}],
  verdict (ok | warning | blocking)

--json streams JSON Lines: {\"type\": \"progress\"}, {\"type\": \"step\"}, {\"type\": \"finding\"},
then {\"type\": \"report\"}. New fields and types may appear; ignore the ones you do not know.";

#[derive(Debug, Args)]
pub struct DryRunArgs {
    /// CSMS URL (ws:// or wss://); the charge point id is appended as the last path segment.
    /// Without it (and without one in the profile) the sandbox CSMS runs in-process.
    #[arg(long, value_name = "URL")]
    pub csms: Option<String>,
    /// Charge point id (default: the profile's, else CHARGECTL-DRYRUN-1).
    #[arg(long)]
    pub id: Option<String>,
    /// Provisioning profile: the emulated charger is configured exactly as `provision` would
    /// configure the real one; its [commissioning] table says what the site expects.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Set a profile variable (repeatable), such as CHARGE_POINT_ID=CP1.
    #[arg(long = "set", value_name = "VAR=VALUE")]
    pub set: Vec<String>,
    /// Scenario file (TOML timeline); default: the built-in scenario.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Watch at least this long, even after the scenario is over.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Write the report here (repeatable); the format follows the extension: .md, .html, .json.
    #[arg(long = "report", value_name = "FILE")]
    pub reports: Vec<PathBuf>,
    /// Start the meter's energy register at N Wh, to match a charger in service.
    #[arg(long, value_name = "N")]
    pub meter_start_wh: Option<u64>,
}

// ----- value parsers: every numeric flag is range-checked here, with a clear error ----------

/// The most emulated chargers in one fleet (all its shards together).
pub const MAX_COUNT: i64 = 1_000_000;

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("'{s}' is not a positive number (per second)")),
    }
}

fn shard(s: &str) -> Result<crate::emulator::fleet::Shard, String> {
    s.parse()
}

/// Serial line rates accepted (bits per second).
pub const BAUD_RATES: std::ops::RangeInclusive<i64> = 50..=12_000_000;

fn baud_rate() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(BAUD_RATES)
}

/// A parser for a duration in seconds (a decimal number such as `5` or `0.5`) within
/// `min..=max`, for every flag that takes seconds. Rejects what `Duration::from_secs_f64` would
/// panic on (NaN, infinity, negative, huge) with a message naming the range.
pub fn seconds(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |text: &str| {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not a number of seconds"))?;
        if !value.is_finite() || value < min || value > max {
            return Err(format!(
                "{text} seconds is out of range: expected {min} to {max} seconds"
            ));
        }
        Ok(value)
    }
}

/// A fraction from 0 to 1 (`0.001` is one in a thousand).
pub fn fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!(
            "{text} is out of range: expected a fraction from 0 to 1"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chargectl").chain(args.iter().copied()))
    }

    #[test]
    fn seconds_accepts_the_range_and_rejects_what_would_panic() {
        let p = seconds(0.001, 3600.0);
        assert_eq!(p("5"), Ok(5.0));
        assert_eq!(p(" 0.5 "), Ok(0.5));
        assert_eq!(p("3600"), Ok(3600.0));
        for bad in ["1e300", "inf", "NaN", "-1", "0", "3600.5", "five", ""] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("seconds"), "{bad}: {e}");
        }
        assert!(p("1e300").unwrap_err().contains("0.001 to 3600"));
    }

    #[test]
    fn every_numeric_flag_is_range_checked() {
        for args in [
            &["info", "--port", "x", "--timeout", "1e300"][..],
            &["info", "--port", "x", "--timeout=-5"],
            &["flash", "img", "--port", "x", "--confirm-timeout", "0"],
            &["flash", "img", "--port", "x", "--confirm-timeout", "1e300"],
            &["info", "--port", "x", "--baud", "0"],
            &["info", "--port", "x", "--baud", "99999999999"],
            &["emulate", "--serial-baud", "1"],
            &["emulate", "--serial-drop-rate", "1.5"],
            &["emulate", "--serial-flip-rate", "NaN"],
            &["emulate", "--count", "0"],
            &["emulate", "--security-profile", "2"],
        ] {
            let e = parse(args).map(|_| ()).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}: {e}"
            );
        }
        assert!(parse(&["info", "--port", "x", "--timeout", "0.25"]).is_ok());
        assert!(parse(&["emulate", "--serial-drop-rate", "0.001", "--count", "1"]).is_ok());
    }
}
