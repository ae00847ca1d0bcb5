//! One file per subcommand.

pub mod completions;
pub mod csms;
pub mod firmware;
