use chargectl::cli::{
    self, Cli, ExitCode,
    args::{Command, ConfigCommand},
};
use clap::{CommandFactory, Parser};

fn main() {
    let cli = Cli::parse();
    let env = cli::Env::sample(&cli.global);
    let _guard = match (&cli.global.log_file, &cli.command) {
        (Some(file), _) => {
            let dir = file.parent().map(|p| p.to_path_buf()).unwrap_or_default();
            let prefix = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("chargectl");
            chargectl::logging::init_file(&dir, prefix)
        }
        (None, None) => chargectl::logging::init_file(&env.paths.log_dir, "chargectl"),
        // The dry run's live summary owns the terminal: chargectl's own warnings go to the log.
        (None, Some(Command::DryRun(_))) if env.stderr_tty => {
            chargectl::logging::init_file(&env.paths.log_dir, "chargectl")
        }
        (None, Some(_)) => chargectl::logging::init_stderr(cli.global.verbose),
    };
    let code = run(cli, &env);
    std::process::exit(code.code());
}

fn run(cli: Cli, env: &cli::Env) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chargectl: cannot start the async runtime: {e}");
            return ExitCode::Failure;
        }
    };
    let result = runtime.block_on(dispatch(cli, env));
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(error) => {
            if cli::output::is_broken_pipe(&error) {
                return ExitCode::Ok;
            }
            let code = cli::exit::code_for(&error);
            if env.json {
                let _ = cli::output::print_json(&cli::output::json_error(
                    code.kind(),
                    &format!("{error:#}"),
                ));
            }
            eprintln!("chargectl: {error:#}");
            code
        }
    }
}

async fn dispatch(cli: Cli, env: &cli::Env) -> anyhow::Result<ExitCode> {
    use cli::commands;
    match cli.command {
        Some(Command::Completions { shell }) => {
            commands::completions::run(shell).map(|_| ExitCode::Ok)
        }
        Some(Command::Ports { all }) => commands::ports::run(all, env).await,
        Some(Command::Info { port }) => commands::info::run(&port, env).await,
        Some(Command::Config(ConfigCommand::Get { keys, port })) => {
            commands::config::get(keys, &port, env).await
        }
        Some(Command::Config(ConfigCommand::Set { assignments, port })) => {
            commands::config::set(assignments, &port, env).await
        }
        Some(Command::Logs {
            port,
            level,
            follow,
            output,
        }) => commands::logs::run(&port, &level, follow, output.as_deref(), env).await,
        Some(Command::Reboot { port }) => commands::reboot::run(&port, env).await,
        Some(Command::Flash {
            image,
            port,
            no_compress,
            no_reboot,
            confirm_timeout,
        }) => {
            let reboot = (!no_reboot).then(|| std::time::Duration::from_secs_f64(confirm_timeout));
            commands::flash::run(&image, &port, no_compress, reboot, env).await
        }
        Some(Command::Firmware(cmd)) => commands::firmware::run(cmd, env).await,
        Some(Command::Csms { listen, summary }) => commands::csms::run(listen, summary, env).await,
        Some(Command::Emulate(args)) => commands::emulate::run(args, env).await,
        Some(Command::DryRun(args)) => commands::dry_run::run(args, env).await,
        Some(Command::Provision {
            profile,
            port,
            set,
            dry_run,
        }) => commands::provision::run(&profile, &port, &set, dry_run, env).await,
        None => {
            let keymap = cli.global.keymap.clone();
            open_tui(keymap.as_deref(), env).await
        }
    }
}

/// `chargectl` alone: the TUI on a terminal, a usage error naming the subcommands otherwise.
async fn open_tui(keymap: Option<&str>, env: &cli::Env) -> anyhow::Result<ExitCode> {
    use chargectl::tui;
    if !(env.stdin_tty && env.stdout_tty) {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_string())
            .collect();
        anyhow::bail!(cli::Failure::new(
            ExitCode::Usage,
            anyhow::anyhow!(
                "the TUI needs a terminal on stdin and stdout; without one use a subcommand: {} (see --help)",
                names.join(", ")
            )
        ));
    }
    let bad_input = |e: anyhow::Error| anyhow::Error::new(cli::Failure::new(ExitCode::BadInput, e));
    let mut opts = tui::TuiOptions::load(&env.paths.config_dir, keymap, env.color)
        .map_err(|e| bad_input(e.into()))?;
    opts.report_dir = Some(env.paths.data_dir.join("reports"));
    let keys_dir = env.paths.config_dir.join("trusted-keys");
    let trusted_keys = tui::live::read_trusted_keys(&keys_dir).map_err(bad_input)?;
    let backend = tui::live::LiveBackend::new(tui::live::LiveOptions {
        trusted_keys,
        ..tui::live::LiveOptions::new(env.paths.clone())
    });
    tracing::info!("starting the TUI");
    let result = tui::run(opts, backend.clone()).await;
    // An emulator started from the TUI saves its state and removes its service port.
    if tokio::time::timeout(std::time::Duration::from_secs(10), backend.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the session did not close within 10 s");
    }
    // What the TUI had to say on leaving (where a dry run's report went), on the restored terminal.
    for line in result?.exit_lines {
        eprintln!("{line}");
    }
    Ok(ExitCode::Ok)
}
