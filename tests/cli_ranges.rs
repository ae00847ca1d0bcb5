//! Numeric flags out of range get a usage error naming the flag and the range, never a panic
//! (`chargectl info --timeout 1e300` once panicked in `Duration::from_secs_f64`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::process::Command;

fn chargectl(args: &[&str]) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chargectl"))
        .args(args)
        .env("CHARGECTL_DATA_DIR", home.path().join("data"))
        .env("CHARGECTL_CONFIG_DIR", home.path().join("config"))
        .env_remove("CHARGECTL_PORT")
        .env_remove("CHARGECTL_BAUD")
        .output()
        .expect("chargectl runs");
    (
        out.status.code().expect("an exit code, not a signal"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn out_of_range_numbers_are_usage_errors_naming_the_flag() {
    for (args, flag, hint) in [
        (
            &["info", "--port", "/dev/null", "--timeout", "1e300"][..],
            "--timeout",
            "0.001 to 3600 seconds",
        ),
        (
            &["info", "--port", "/dev/null", "--timeout", "NaN"],
            "--timeout",
            "seconds",
        ),
        (
            &["config", "get", "--port", "/dev/null", "--timeout=-1"],
            "--timeout",
            "seconds",
        ),
        (
            &["logs", "--port", "/dev/null", "--baud", "0"],
            "--baud",
            "50..=12000000",
        ),
        (
            &["emulate", "--headless", "--serial-drop-rate", "2"],
            "--serial-drop-rate",
            "from 0 to 1",
        ),
        (
            &["emulate", "--headless", "--count", "0"],
            "--count",
            "1..=10000",
        ),
        (
            &["emulate", "--headless", "--security-profile", "7"],
            "--security-profile",
            "0..=1",
        ),
    ] {
        let (code, stderr) = chargectl(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} names {flag}: {stderr}");
        assert!(
            stderr.contains(hint),
            "{args:?} gives the range {hint}: {stderr}"
        );
    }
}
