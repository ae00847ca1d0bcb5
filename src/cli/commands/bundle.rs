//! `chargectl bundle`: placeholder until the support bundle lands.
use crate::cli::args::BundleArgs;
use crate::cli::{Env, ExitCode};

pub async fn run(_args: &BundleArgs, _env: &Env) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
