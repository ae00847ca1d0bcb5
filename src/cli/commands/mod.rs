//! One file per subcommand.

pub mod completions;
pub mod firmware;
pub mod csms;
