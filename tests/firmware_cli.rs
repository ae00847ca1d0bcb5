//! `chargectl firmware keygen | pack | inspect` through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::path::Path;
use std::process::{Command, Output};

fn chargectl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chargectl"))
        .args(args)
        .current_dir(dir)
        .env("CHARGECTL_DATA_DIR", dir.join("data"))
        .env("CHARGECTL_CONFIG_DIR", dir.join("config"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1")
        .output()
        .expect("run chargectl")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn keygen(dir: &Path, name: &str) {
    let out = chargectl(dir, &["firmware", "keygen", "-o", name]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
}

fn pack(dir: &Path, key: &str, version: &str, image: &str) {
    std::fs::write(
        dir.join("payload.bin"),
        (0..50_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let out = chargectl(
        dir,
        &[
            "firmware",
            "pack",
            "--key",
            key,
            "--version",
            version,
            "payload.bin",
            "-o",
            image,
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
}

#[test]
fn keygen_writes_a_private_secret_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = chargectl(
        dir.path(),
        &["--json", "firmware", "keygen", "-o", "release"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["public_key"], "release.pub");
    assert_eq!(doc["fingerprint"].as_str().unwrap().len(), 16);
    let secret = std::fs::read_to_string(dir.path().join("release")).unwrap();
    assert!(secret.starts_with("chargectl-ed25519-secret "));
    let secret_b64 = secret.split(' ').nth(1).unwrap().trim();
    assert!(!text(&out.stdout).contains(secret_b64), "secret printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("release"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let out = chargectl(dir.path(), &["firmware", "keygen", "-o", "release"]);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("release")).unwrap(),
        secret
    );

    let out = chargectl(
        dir.path(),
        &["firmware", "keygen", "-o", "release", "--force"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_ne!(
        std::fs::read_to_string(dir.path().join("release")).unwrap(),
        secret
    );
}

#[test]
fn pack_then_inspect_json_reports_the_header_and_a_trusted_signature() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "k");
    pack(dir.path(), "k", "2.4.1", "fw.img");
    let out = chargectl(
        dir.path(),
        &[
            "firmware",
            "inspect",
            "fw.img",
            "--trust-key",
            "k.pub",
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["firmware_version"], "2.4.1");
    assert_eq!(doc["model"], "Zaptec Go");
    assert_eq!(doc["payload_size"], 50_000);
    assert_eq!(doc["image_size"], 50_256);
    assert_eq!(doc["payload_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(doc["size_ok"], true);
    assert_eq!(doc["sha_ok"], true);
    assert_eq!(doc["signature"]["status"], "trusted");
    assert_eq!(doc["signature"]["fingerprint"], doc["key_id"]);
    assert_eq!(doc["verified"], true);

    // Without keys: intact, signature unchecked, exit 0.
    let out = chargectl(dir.path(), &["firmware", "inspect", "fw.img"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let human = text(&out.stdout);
    assert!(
        human.contains("2.4.1") && human.contains("not checked"),
        "{human}"
    );
}

#[test]
fn inspect_with_the_wrong_key_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "signer");
    keygen(dir.path(), "other");
    pack(dir.path(), "signer", "1.0.0", "fw.img");
    let out = chargectl(
        dir.path(),
        &[
            "--json",
            "firmware",
            "inspect",
            "fw.img",
            "--trust-key",
            "other.pub",
        ],
    );
    assert_eq!(code(&out), 5, "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["signature"]["status"], "untrusted");
    assert_eq!(doc["verified"], false);

    let out = chargectl(
        dir.path(),
        &["firmware", "inspect", "fw.img", "--trust-key", "other.pub"],
    );
    assert_eq!(code(&out), 5);
    assert!(
        text(&out.stderr).contains("not among the trusted keys"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn altered_or_foreign_images_exit_5() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "k");
    pack(dir.path(), "k", "1.0.0", "fw.img");
    let mut bytes = std::fs::read(dir.path().join("fw.img")).unwrap();
    bytes[300] ^= 1;
    std::fs::write(dir.path().join("bad.img"), &bytes).unwrap();
    let out = chargectl(
        dir.path(),
        &["firmware", "inspect", "bad.img", "--trust-key", "k.pub"],
    );
    assert_eq!(code(&out), 5);
    assert!(
        text(&out.stdout).contains("MISMATCH"),
        "{}",
        text(&out.stdout)
    );

    std::fs::write(dir.path().join("junk.img"), b"PK\x03\x04 not an image").unwrap();
    let out = chargectl(dir.path(), &["--json", "firmware", "inspect", "junk.img"]);
    assert_eq!(code(&out), 5);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["type"], "error");
    assert!(
        doc["data"]["message"]
            .as_str()
            .unwrap()
            .contains("CHGCTLFW")
    );
}

#[test]
fn bad_version_and_malformed_key_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "k");
    std::fs::write(dir.path().join("payload.bin"), b"firmware").unwrap();
    let out = chargectl(
        dir.path(),
        &[
            "firmware",
            "pack",
            "--key",
            "k",
            "--version",
            "2.4",
            "payload.bin",
            "-o",
            "fw.img",
        ],
    );
    assert_eq!(code(&out), 6);
    assert!(
        text(&out.stderr).contains("MAJOR.MINOR.PATCH"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("fw.img").exists());

    std::fs::write(dir.path().join("bad.key"), "chargectl-ed25519-secret !!!\n").unwrap();
    let out = chargectl(
        dir.path(),
        &[
            "firmware",
            "pack",
            "--key",
            "bad.key",
            "--version",
            "2.4.0",
            "payload.bin",
            "-o",
            "fw.img",
        ],
    );
    assert_eq!(code(&out), 6);
    assert!(
        text(&out.stderr).contains("bad.key:1:"),
        "{}",
        text(&out.stderr)
    );

    // A public key where the secret is needed.
    let out = chargectl(
        dir.path(),
        &[
            "firmware",
            "pack",
            "--key",
            "k.pub",
            "--version",
            "2.4.0",
            "payload.bin",
            "-o",
            "fw.img",
        ],
    );
    assert_eq!(code(&out), 6);

    // Missing payload: an I/O failure.
    let out = chargectl(
        dir.path(),
        &[
            "firmware",
            "pack",
            "--key",
            "k",
            "--version",
            "2.4.0",
            "missing.bin",
            "-o",
            "fw.img",
        ],
    );
    assert_eq!(code(&out), 1);
}

#[test]
fn source_date_epoch_makes_pack_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "k");
    std::fs::write(dir.path().join("payload.bin"), b"firmware").unwrap();
    let run = |out: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_chargectl"))
            .args([
                "firmware",
                "pack",
                "--key",
                "k",
                "--version",
                "3.0.0",
                "payload.bin",
                "-o",
                out,
            ])
            .current_dir(dir.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", text(&o.stderr));
        std::fs::read(dir.path().join(out)).unwrap()
    };
    assert_eq!(run("a.img"), run("b.img"));
}
