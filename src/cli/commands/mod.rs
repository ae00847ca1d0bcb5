//! One file per subcommand.

pub mod completions;
