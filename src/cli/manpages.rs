//! Man pages generated from the clap definition, plus our own sections (EXIT STATUS from the
//! exit-code enum, ENVIRONMENT, FILES). `tests/manpages.rs` keeps `man/` in step with the code;
//! `CHARGECTL_BLESS=1 cargo test --test manpages` rewrites the files.

use clap::CommandFactory;

use super::exit::ExitCode;

/// Every generated page as (file name, roff text).
pub fn render_all() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let cmd = super::Cli::command();
    let mut pages = Vec::new();
    let mut main = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut main)?;
    main.extend_from_slice(extra_sections().as_bytes());
    pages.push(("chargectl.1".to_string(), main));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("chargectl-{}", sub.get_name());
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub.clone().name(name.clone())).render(&mut buf)?;
        pages.push((format!("{name}.1"), buf));
    }
    Ok(pages)
}

fn extra_sections() -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for code in ExitCode::ALL {
        s.push_str(&format!(
            ".TP\n\\fB{}\\fR ({})\n{}\n",
            code.code(),
            code.kind(),
            code.description()
        ));
    }
    s.push_str(
        ".SH ENVIRONMENT\n\
.TP\n\\fBCHARGECTL_PORT\\fR\nDefault for \\fB--port\\fR.\n\
.TP\n\\fBCHARGECTL_BAUD\\fR\nDefault for \\fB--baud\\fR.\n\
.TP\n\\fBCHARGECTL_KEYMAP\\fR\nDefault for \\fB--keymap\\fR.\n\
.TP\n\\fBCHARGECTL_AUTHORIZATION_KEY\\fR\nDefault for \\fBemulate --authorization-key\\fR (keeps the key out of the process list).\n\
.TP\n\\fBCHARGECTL_CONFIG_DIR\\fR, \\fBCHARGECTL_DATA_DIR\\fR\nOverride the configuration and data directories.\n\
.TP\n\\fBCHARGECTL_LOG\\fR\nFilter for chargectl's own diagnostics (tracing EnvFilter syntax).\n\
.TP\n\\fBNO_COLOR\\fR\nNo colour in output or in the TUI.\n\
.SH FILES\n\
.TP\n\\fI$XDG_CONFIG_HOME/chargectl/config.toml\\fR\nUser configuration.\n\
.TP\n\\fI$XDG_CONFIG_HOME/chargectl/keymap.toml\\fR\nKey bindings that override the chosen preset, one binding at a time.\n\
.TP\n\\fI$XDG_DATA_HOME/chargectl/emulator/<id>/\\fR\nState of an emulated charger: configuration, transaction journal, meter, firmware slots.\n\
.SH \"SEE ALSO\"\n\\fBchargectl-serial\\fR(7), \\fBchargectl-firmware\\fR(5)\n",
    );
    s
}
