//! `chargectl bundle --port P -o FILE.tar.gz` and `chargectl bundle --from-records -o
//! FILE.tar.gz [--serial S]`: a support bundle of one charger, secrets redacted. The contents
//! are the library's ([`crate::provision::bundle`]); this file picks the source and prints where
//! the bundle went.

use serde_json::json;
use std::io::Write;

use super::info::{connect, fail};
use crate::cli::args::{BundleArgs, PortArgs};
use crate::cli::{Env, ExitCode, Failure, output};
use crate::provision::bundle::{Error, Snapshot};

fn failure(e: Error) -> anyhow::Error {
    match e {
        Error::Link(e) => fail(e),
        e @ Error::NoRecords { .. } => Failure::new(ExitCode::Unreachable, e).into(),
        e @ Error::Io { .. } => Failure::new(ExitCode::Failure, e).into(),
    }
}

pub async fn run(args: &BundleArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let sessions = env.paths.sessions_dir();
    let snapshot = match (&args.port, args.from_records) {
        (_, true) => Snapshot::from_records(&sessions, &env.paths.log_dir, args.serial.as_deref())
            .map_err(failure)?,
        (Some(port), false) => {
            let port = PortArgs {
                port: port.clone(),
                baud: args.baud,
                timeout: args.timeout,
            };
            let client = connect(&port, env).await?;
            let snapshot = Snapshot::read(&client, &sessions, &env.paths.log_dir)
                .await
                .map_err(failure)?;
            if let Some(r) = client.recorder() {
                r.close();
            }
            snapshot
        }
        (None, false) => {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow::anyhow!(
                    "give --port PORT, or --from-records when the charger is not attached"
                ),
            )
            .into());
        }
    };
    let serial = snapshot.serial_number.clone();
    let source = snapshot.source;
    let manifest = snapshot.write(&args.output).map_err(failure)?;
    if env.json {
        output::print_json(&json!({
            "output": args.output.display().to_string(),
            "serial_number": serial,
            "source": source.as_str(),
            "files": manifest["files"],
        }))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "bundle of charger {serial} ({} files, from its {}) written to {}",
            manifest["files"].as_array().map_or(0, Vec::len) + 1,
            if source.as_str() == "port" {
                "port"
            } else {
                "recorded sessions"
            },
            args.output.display()
        )?;
        out.flush()?;
    }
    Ok(ExitCode::Ok)
}
