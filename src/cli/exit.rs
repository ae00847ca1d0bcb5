//! Exit codes: one per class of failure, stable, listed in chargectl(1).

/// Every exit code chargectl uses. The numbers never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// An error not covered by another code.
    Failure = 1,
    /// Bad command line, or a missing value in non-interactive mode.
    Usage = 2,
    /// The charger (or CSMS) could not be reached: no such port, port busy, permission denied,
    /// no answer.
    Unreachable = 3,
    /// The charger answered but refused the request (rejected value, read-only key, ...).
    Refused = 4,
    /// A firmware image failed verification (signature, hash, format).
    Verification = 5,
    /// A file the user gave is invalid (profile, keymap, image header): the message names the
    /// line or field.
    BadInput = 6,
    /// A commissioning dry run found something blocking (see its report).
    Blocking = 7,
    /// A flashed image did not come up: the charger went back to the previous image.
    RolledBack = 8,
    /// Interrupted by a signal (Ctrl-C).
    Interrupted = 130,
}

impl ExitCode {
    pub const ALL: [ExitCode; 10] = [
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::Unreachable,
        ExitCode::Refused,
        ExitCode::Verification,
        ExitCode::BadInput,
        ExitCode::Blocking,
        ExitCode::RolledBack,
        ExitCode::Interrupted,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// Short name used in `--json` error objects.
    pub fn kind(self) -> &'static str {
        match self {
            ExitCode::Ok => "ok",
            ExitCode::Failure => "failure",
            ExitCode::Usage => "usage",
            ExitCode::Unreachable => "unreachable",
            ExitCode::Refused => "refused",
            ExitCode::Verification => "verification",
            ExitCode::BadInput => "bad_input",
            ExitCode::Blocking => "blocking",
            ExitCode::RolledBack => "rolled_back",
            ExitCode::Interrupted => "interrupted",
        }
    }

    /// One line for the man page.
    pub fn description(self) -> &'static str {
        match self {
            ExitCode::Ok => "success",
            ExitCode::Failure => "an error not covered by another code",
            ExitCode::Usage => "bad command line, or a missing value in non-interactive mode",
            ExitCode::Unreachable => {
                "the charger or CSMS could not be reached (no such port, busy, permission denied, no answer)"
            }
            ExitCode::Refused => "the charger answered but refused the request",
            ExitCode::Verification => "a firmware image failed verification",
            ExitCode::BadInput => {
                "an input file is invalid (profile, keymap, image); the message names the line or field"
            }
            ExitCode::Blocking => {
                "a commissioning dry run found something blocking (its report says what)"
            }
            ExitCode::RolledBack => {
                "a flashed image did not come up and the charger went back to the previous image (the message names the version that runs again)"
            }
            ExitCode::Interrupted => "interrupted by a signal",
        }
    }
}

/// An error that carries the exit code it should end the process with. Library errors are
/// mapped to it at the command edge.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: ExitCode, error: impl Into<anyhow::Error>) -> Self {
        Self {
            code,
            error: error.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Failure {}

/// Finds the exit code for an error chain: an explicit [`Failure`] anywhere in the chain wins.
pub fn code_for(error: &anyhow::Error) -> ExitCode {
    for cause in error.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
    }
    ExitCode::Failure
}
