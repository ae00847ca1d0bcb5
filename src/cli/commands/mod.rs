//! One file per subcommand.

pub mod bundle;
pub mod completions;
pub mod config;
pub mod csms;
pub mod dry_run;
pub mod emulate;
pub mod firmware;
pub mod flash;
pub mod info;
pub mod logs;
pub mod paths;
pub mod ports;
pub mod profile;
pub mod provision;
pub mod reboot;
