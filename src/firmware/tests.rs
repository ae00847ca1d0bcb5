use super::image::{OFF_BUILD_TIME, OFF_KEY_ID, OFF_MODEL, OFF_RESERVED, OFF_VERSION};
use super::slots::{MAX_TRIAL_BOOTS, METADATA_FILE, PERSIST_EVERY};
use super::*;
use sha2::{Digest, Sha256};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn image(len: usize, version: &str, k: &SigningKey) -> Vec<u8> {
    pack_with(
        &payload(len),
        &PackOptions {
            version,
            model: MODEL,
            build_time: 1_764_000_000,
        },
        k,
    )
    .unwrap()
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

// ---- image format ----

#[test]
fn pack_then_verify_round_trips_every_field() {
    let k = key(1);
    let img = image(1000, "2.4.1-rc.1", &k);
    assert_eq!(img.len(), HEADER_LEN + 1000);
    assert_eq!(&img[..8], b"CHGCTLFW");
    let h = verify(&img, &[key(9).verifying_key(), k.verifying_key()]).unwrap();
    assert_eq!(h.format_version, 1);
    assert_eq!(h.firmware_version, "2.4.1-rc.1");
    assert_eq!(h.payload_size, 1000);
    assert_eq!(h.payload_sha256, sha(&payload(1000)));
    assert_eq!(h.model, "Zaptec Go");
    assert_eq!(h.build_time, 1_764_000_000);
    assert_eq!(h.key_id_hex(), keys::fingerprint(&k.verifying_key()));
    assert_eq!(parse_header(&img[..HEADER_LEN]).unwrap(), h);
}

#[test]
fn pack_stamps_the_current_time_and_model() {
    let img = pack(b"fw", "1.0.0", &key(1)).unwrap();
    let h = parse_header(&img).unwrap();
    assert!(h.build_time > 1_700_000_000);
    assert_eq!(h.model, MODEL);
}

#[test]
fn flipped_payload_byte_is_a_hash_mismatch() {
    let k = key(1);
    let mut img = image(500, "1.0.0", &k);
    img[HEADER_LEN + 100] ^= 0x01;
    let err = verify(&img, &[k.verifying_key()]).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
}

#[test]
fn flipped_signed_header_byte_is_a_bad_signature() {
    let k = key(1);
    let mut img = image(500, "1.0.0", &k);
    img[OFF_BUILD_TIME] ^= 0x01;
    let err = verify(&img, &[k.verifying_key()]).unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err}");
    // A version changed to another valid version: still caught by the signature.
    let mut img = image(500, "1.0.0", &k);
    img[OFF_VERSION] = b'9';
    assert!(matches!(
        verify(&img, &[k.verifying_key()]).unwrap_err(),
        Error::BadSignature { .. }
    ));
    // The signature itself altered.
    let mut img = image(500, "1.0.0", &k);
    img[HEADER_LEN - 1] ^= 0x80;
    assert!(matches!(
        verify(&img, &[k.verifying_key()]).unwrap_err(),
        Error::BadSignature { .. }
    ));
}

#[test]
fn altered_key_id_cannot_pass() {
    let k = key(1);
    let mut img = image(64, "1.0.0", &k);
    img[OFF_KEY_ID] ^= 0xff;
    let err = verify(&img, &[k.verifying_key()]).unwrap_err();
    assert!(matches!(err, Error::UntrustedKey { .. }), "{err}");
}

#[test]
fn image_from_another_key_is_untrusted() {
    let img = image(64, "1.0.0", &key(1));
    let err = verify(&img, &[key(2).verifying_key()]).unwrap_err();
    assert!(matches!(err, Error::UntrustedKey { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&keys::fingerprint(&key(1).verifying_key()))
    );
    assert!(matches!(
        verify(&img, &[]).unwrap_err(),
        Error::NoTrustedKeys
    ));
}

#[test]
fn truncated_and_oversized_images_are_refused() {
    let k = key(1);
    let img = image(300, "1.0.0", &k);
    let err = verify(&img[..img.len() - 1], &[k.verifying_key()]).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { expected, actual } if expected == 556 && actual == 555),
        "{err}"
    );
    let err = verify(&img[..100], &[k.verifying_key()]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                expected: 256,
                actual: 100
            }
        ),
        "{err}"
    );
    assert!(matches!(
        parse_header(b"CHG").unwrap_err(),
        Error::Truncated { .. }
    ));
    let mut long = img.clone();
    long.push(0);
    let err = verify(&long, &[k.verifying_key()]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SizeMismatch {
                expected: 556,
                actual: 557
            }
        ),
        "{err}"
    );
}

#[test]
fn header_structure_errors_name_the_field() {
    let k = key(1);
    let img = image(10, "1.0.0", &k);
    let mut bad = img.clone();
    bad[0] = b'X';
    assert!(matches!(
        parse_header(&bad).unwrap_err(),
        Error::BadMagic { .. }
    ));
    assert!(matches!(
        parse_header(b"PK\x03\x04").unwrap_err(),
        Error::BadMagic { .. }
    ));
    let mut bad = img.clone();
    bad[8] = 2;
    assert!(matches!(
        parse_header(&bad).unwrap_err(),
        Error::UnsupportedFormat(2)
    ));
    let mut bad = img.clone();
    bad[11] = 0;
    assert!(matches!(
        parse_header(&bad).unwrap_err(),
        Error::BadHeaderLength { found: 0, .. }
    ));
    let mut bad = img.clone();
    bad[OFF_RESERVED + 3] = 7;
    let err = parse_header(&bad).unwrap_err();
    assert!(
        matches!(err, Error::ReservedNotZero { offset, byte: 7 } if offset == OFF_RESERVED + 3)
    );
    let mut bad = img.clone();
    bad[OFF_VERSION + 20] = b'x';
    let err = parse_header(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadPadding {
                field: "firmware_version",
                ..
            }
        ),
        "{err}"
    );
    let mut bad = img.clone();
    bad[OFF_VERSION + 1] = 0x07;
    assert!(matches!(
        parse_header(&bad).unwrap_err(),
        Error::BadVersion { .. }
    ));
    let mut bad = img.clone();
    bad[OFF_MODEL] = 0xff;
    assert!(matches!(
        parse_header(&bad).unwrap_err(),
        Error::BadModel { .. }
    ));
}

#[test]
fn version_rule_accepts_semver_like_and_rejects_the_rest() {
    for good in [
        "0.0.0",
        "1.2.3",
        "2.10.0-rc.1",
        "3.0.0-beta_2+build.7",
        "999999999.0.1",
    ] {
        validate_version(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "",
        "1",
        "1.2",
        "1.2.3.4",
        "v1.2.3",
        "1.02.3",
        "1..3",
        "1.2.3-",
        "1.2.3-a b",
        "1.2.3-ä",
        "1.2.3\n",
        "1234567890.0.0",
        "1.2.3-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let err = validate_version(bad).unwrap_err();
        assert!(matches!(err, Error::BadVersion { .. }), "{bad:?}: {err}");
    }
    let err = validate_version("1.x.3").unwrap_err().to_string();
    assert!(err.contains("MINOR") && err.contains("\"x\""), "{err}");
    assert!(matches!(
        pack(b"x", "1.2", &key(1)).unwrap_err(),
        Error::BadVersion { .. }
    ));
    assert!(matches!(
        pack(b"", "1.2.0", &key(1)).unwrap_err(),
        Error::EmptyPayload
    ));
}

#[test]
fn inspect_reports_each_check_separately() {
    let k = key(1);
    let img = image(200, "1.0.0", &k);
    let i = inspect(&img, &[k.verifying_key()]).unwrap();
    assert!(i.verified());
    assert_eq!(
        i.signature,
        SignatureStatus::Trusted {
            fingerprint: keys::fingerprint(&k.verifying_key())
        }
    );
    let i = inspect(&img, &[]).unwrap();
    assert!(i.intact() && !i.verified());
    assert_eq!(i.signature, SignatureStatus::NoKeysGiven);
    assert_eq!(
        inspect(&img, &[key(3).verifying_key()]).unwrap().signature,
        SignatureStatus::Untrusted
    );
    let mut bad = img.clone();
    bad[HEADER_LEN] ^= 1;
    let i = inspect(&bad, &[k.verifying_key()]).unwrap();
    assert!(i.size_ok && !i.sha_ok && !i.verified());
    // The header is intact, so its signature still verifies: inspect says which part is wrong.
    assert!(matches!(i.signature, SignatureStatus::Trusted { .. }));
    let i = inspect(&img[..300], &[k.verifying_key()]).unwrap();
    assert!(!i.size_ok && !i.sha_ok && i.payload_len == 44);
    let mut bad = img.clone();
    bad[OFF_BUILD_TIME + 1] ^= 1;
    assert_eq!(
        inspect(&bad, &[k.verifying_key()]).unwrap().signature,
        SignatureStatus::Invalid
    );
}

// ---- keys ----

#[test]
fn key_files_round_trip_and_secret_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("release");
    let (secret, public) = keys::write_keypair(&name, false).unwrap();
    assert_eq!(public, dir.path().join("release.pub"));
    let sk = keys::read_signing_key(&secret).unwrap();
    let vk = keys::read_verifying_key(&public).unwrap();
    assert_eq!(sk.verifying_key(), vk);
    assert_eq!(keys::read_verifying_key(&secret).unwrap(), vk);
    assert_eq!(keys::fingerprint(&vk).len(), 16);
    let text = std::fs::read_to_string(&public).unwrap();
    assert!(text.starts_with("chargectl-ed25519-public "));
    assert_eq!(keys::parse_verifying_key(&text).unwrap(), vk);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let err = keys::write_keypair(&name, false).unwrap_err();
    assert!(matches!(err, Error::KeyExists { .. }), "{err}");
    assert_eq!(
        keys::read_signing_key(&secret).unwrap().to_bytes(),
        sk.to_bytes()
    );
    keys::write_keypair(&name, true).unwrap();
    assert_ne!(
        keys::read_signing_key(&secret).unwrap().to_bytes(),
        sk.to_bytes()
    );
}

#[test]
fn generated_keys_differ() {
    assert_ne!(keys::generate().to_bytes(), keys::generate().to_bytes());
}

#[test]
fn malformed_key_files_name_path_and_line_without_leaking_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("k");
    let (secret, public) = keys::write_keypair(&name, false).unwrap();
    let secret_text = std::fs::read_to_string(&secret).unwrap();
    let secret_b64 = secret_text.split(' ').nth(1).unwrap().trim().to_owned();

    let err = keys::read_signing_key(&public).unwrap_err().to_string();
    assert!(err.contains(":1:") && err.contains("public key"), "{err}");
    let err = keys::read_verifying_key(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));

    let cases: [(&str, String, &str); 6] = [
        ("empty", String::new(), ":1: empty"),
        ("type", "ssh-ed25519 AAAA\n".into(), "unknown key type"),
        ("nospace", "chargectl-ed25519-secret\n".into(), "no space"),
        (
            "b64",
            format!("chargectl-ed25519-secret {}!\n", &secret_b64[..10]),
            "not valid base64",
        ),
        (
            "len",
            "chargectl-ed25519-secret AAAA\n".into(),
            "3 bytes, expected 32",
        ),
        ("extra", format!("{secret_text}more\n"), ":2:"),
    ];
    for (file, text, expect) in cases {
        let p = dir.path().join(file);
        std::fs::write(&p, &text).unwrap();
        let err = keys::read_signing_key(&p).unwrap_err();
        assert!(matches!(err, Error::KeyFile { .. }), "{file}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(expect), "{file}: {msg}");
        assert!(msg.contains(&p.display().to_string()), "{file}: {msg}");
        assert!(
            !msg.contains(&secret_b64[..10]),
            "{file} leaks key material: {msg}"
        );
    }
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'A'; 5000]).unwrap();
    let err = keys::read_verifying_key(&big).unwrap_err().to_string();
    assert!(err.contains("not a key file"), "{err}");
}

// ---- slots ----

fn trusted() -> Vec<VerifyingKey> {
    vec![key(1).verifying_key()]
}

fn send(slots: &mut Slots, img: &[u8], from: u64, chunk: usize) -> u64 {
    let mut off = from;
    while (off as usize) < img.len() {
        let end = (off as usize + chunk).min(img.len());
        off = slots.write(off, &img[off as usize..end]).unwrap();
    }
    off
}

#[test]
fn first_open_makes_slot_a_active_with_the_factory_version() {
    let dir = tempfile::tempdir().unwrap();
    let slots = Slots::open(&dir.path().join("slots"), "1.0.0").unwrap();
    assert_eq!(slots.active().name, SlotName::A);
    assert_eq!(slots.active().state, SlotState::Active);
    assert_eq!(slots.active_version(), "1.0.0");
    assert_eq!(slots.inactive().state, SlotState::Empty);
    assert!(dir.path().join("slots").join(METADATA_FILE).exists());
    // The factory version only applies on first open.
    let slots = Slots::open(&dir.path().join("slots"), "9.9.9").unwrap();
    assert_eq!(slots.active_version(), "1.0.0");
    assert!(matches!(
        Slots::open(&dir.path().join("other"), "factory").unwrap_err(),
        Error::BadVersion { .. }
    ));
}

#[test]
fn full_transfer_then_boot_switches_slots_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    let img = image(200_000, "2.0.0", &key(1));
    assert_eq!(slots.begin(sha(&img), img.len() as u64).unwrap(), 0);
    assert_eq!(send(&mut slots, &img, 0, 4096), img.len() as u64);
    // Not switched before finish, nor by a boot before finish.
    assert_eq!(slots.active_version(), "1.0.0");
    let h = slots.finish(&trusted()).unwrap();
    assert_eq!(h.firmware_version, "2.0.0");
    assert_eq!(slots.inactive().state, SlotState::Verified);
    assert_eq!(slots.active_version(), "1.0.0");
    assert_eq!(std::fs::read(slots.image_path(SlotName::B)).unwrap(), img);
    assert!(!dir.path().join("B.img.partial").exists());
    drop(slots);

    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert_eq!(slots.pending().map(|s| s.name), Some(SlotName::B));
    assert_eq!(
        slots.boot().unwrap(),
        BootOutcome::Switched {
            from: SlotName::A,
            to: SlotName::B,
            version: "2.0.0".into()
        }
    );
    assert_eq!(slots.active().name, SlotName::B);
    assert_eq!(slots.inactive().state, SlotState::Previous);
    assert_eq!(
        slots.boot().unwrap(),
        BootOutcome::Unchanged {
            slot: SlotName::B,
            version: "2.0.0".into()
        }
    );
    drop(slots);
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert_eq!(slots.active_version(), "2.0.0");

    // The next image goes to A, never to the active B.
    let img3 = image(1000, "3.0.0", &key(1));
    slots.begin(sha(&img3), img3.len() as u64).unwrap();
    assert_eq!(slots.staging().unwrap().slot, SlotName::A);
    assert_eq!(
        slots.inactive().state,
        SlotState::Staging {
            received: 0,
            size: 1256
        }
    );
    send(&mut slots, &img3, 0, 100);
    slots.finish(&trusted()).unwrap();
    assert_eq!(std::fs::read(slots.image_path(SlotName::B)).unwrap(), img);
    assert!(matches!(
        slots.boot().unwrap(),
        BootOutcome::Switched {
            to: SlotName::A,
            ..
        }
    ));
    assert_eq!(slots.active_version(), "3.0.0");
}

#[test]
fn boot_without_a_verified_finish_does_not_switch() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    let img = image(10_000, "2.0.0", &key(1));
    slots.begin(sha(&img), img.len() as u64).unwrap();
    send(&mut slots, &img, 0, 1024);
    assert_eq!(
        slots.boot().unwrap(),
        BootOutcome::Unchanged {
            slot: SlotName::A,
            version: "1.0.0".into()
        }
    );
    assert_eq!(slots.active().name, SlotName::A);
}

#[test]
fn killed_transfer_resumes_from_the_durable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(300_000, "2.0.0", &key(1));
    let written = 200_000u64;
    {
        let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
        slots.begin(sha(&img), img.len() as u64).unwrap();
        let mut off = 0u64;
        while off < written {
            off = slots
                .write(off, &img[off as usize..off as usize + 5000])
                .unwrap();
        }
        // Dropped without finish or sync: a power cut.
    }
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert_eq!(slots.active_version(), "1.0.0");
    let resume = slots.begin(sha(&img), img.len() as u64).unwrap();
    assert!(resume > 0, "progress was persisted");
    assert!(
        resume <= written && written - resume < PERSIST_EVERY + 5000,
        "{resume}"
    );
    // The partial file was cut back to the durable offset.
    assert_eq!(
        std::fs::metadata(dir.path().join("B.img.partial"))
            .unwrap()
            .len(),
        resume
    );
    send(&mut slots, &img, resume, 7000);
    slots.finish(&trusted()).unwrap();
    assert!(matches!(
        slots.boot().unwrap(),
        BootOutcome::Switched { .. }
    ));
    assert_eq!(std::fs::read(dir.path().join("B.img")).unwrap(), img);
}

#[test]
fn explicit_sync_makes_progress_durable() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(5000, "2.0.0", &key(1));
    {
        let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
        slots.begin(sha(&img), img.len() as u64).unwrap();
        slots.write(0, &img[..3000]).unwrap();
        slots.sync().unwrap();
    }
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert_eq!(slots.begin(sha(&img), img.len() as u64).unwrap(), 3000);
}

#[test]
fn another_image_restarts_the_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    let a = image(100_000, "2.0.0", &key(1));
    let b = image(100_000, "2.0.1", &key(1));
    slots.begin(sha(&a), a.len() as u64).unwrap();
    send(&mut slots, &a, 0, 70_000);
    slots.sync().unwrap();
    assert_eq!(slots.begin(sha(&b), b.len() as u64).unwrap(), 0);
    assert_eq!(
        std::fs::metadata(dir.path().join("B.img.partial"))
            .unwrap()
            .len(),
        0
    );
    // Same image again: resumes at its own durable offset (0 after the restart).
    assert_eq!(slots.begin(sha(&b), b.len() as u64).unwrap(), 0);
}

#[test]
fn duplicate_writes_are_ignored_and_gaps_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    let img = image(3000, "2.0.0", &key(1));
    slots.begin(sha(&img), img.len() as u64).unwrap();
    assert_eq!(slots.write(0, &img[..1000]).unwrap(), 1000);
    // Retransmission of the same chunk, and of an overlapping one.
    assert_eq!(slots.write(0, &img[..1000]).unwrap(), 1000);
    assert_eq!(slots.write(500, &img[500..1500]).unwrap(), 1500);
    let err = slots.write(2000, &img[2000..2100]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Gap {
                offset: 2000,
                expected: 1500
            }
        ),
        "{err}"
    );
    let err = slots.write(1500, &[0u8; 5000]).unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
    send(&mut slots, &img, 1500, 256);
    slots.finish(&trusted()).unwrap();
    assert_eq!(std::fs::read(dir.path().join("B.img")).unwrap(), img);
}

#[test]
fn write_and_finish_need_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert!(matches!(
        slots.write(0, b"x").unwrap_err(),
        Error::NoStaging
    ));
    assert!(matches!(
        slots.finish(&trusted()).unwrap_err(),
        Error::NoStaging
    ));
    let img = image(3000, "2.0.0", &key(1));
    slots.begin(sha(&img), img.len() as u64).unwrap();
    slots.write(0, &img[..10]).unwrap();
    assert!(matches!(
        slots.finish(&trusted()).unwrap_err(),
        Error::Incomplete {
            received: 10,
            size: 3256
        }
    ));
    assert!(matches!(
        slots.begin(sha(&img), 10).unwrap_err(),
        Error::Truncated { .. }
    ));
    assert!(matches!(
        slots
            .begin(sha(&img), slots::MAX_IMAGE_SIZE + 1)
            .unwrap_err(),
        Error::TooLarge { .. }
    ));
}

#[test]
fn failed_finish_leaves_the_active_slot_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    let before = std::fs::read(dir.path().join(METADATA_FILE)).unwrap();

    // Signed by an untrusted key.
    let img = image(2000, "6.6.6", &key(2));
    slots.begin(sha(&img), img.len() as u64).unwrap();
    send(&mut slots, &img, 0, 512);
    let err = slots.finish(&trusted()).unwrap_err();
    assert!(matches!(err, Error::UntrustedKey { .. }), "{err}");
    assert_eq!(slots.active_version(), "1.0.0");
    assert_eq!(slots.inactive().state, SlotState::Empty);
    assert!(slots.staging().is_none());
    assert!(!dir.path().join("B.img.partial").exists());
    assert!(matches!(
        slots.boot().unwrap(),
        BootOutcome::Unchanged { .. }
    ));
    assert_eq!(
        std::fs::read(dir.path().join(METADATA_FILE)).unwrap(),
        before
    );

    // Bytes differ from what the transfer announced.
    let img = image(2000, "2.0.0", &key(1));
    let mut other = img.clone();
    other[HEADER_LEN + 5] ^= 1;
    slots.begin(sha(&img), img.len() as u64).unwrap();
    send(&mut slots, &other, 0, 512);
    let err = slots.finish(&trusted()).unwrap_err();
    assert!(matches!(err, Error::StagedHashMismatch { .. }), "{err}");

    // Announced hash matches but the payload does not match the header.
    slots.begin(sha(&other), other.len() as u64).unwrap();
    send(&mut slots, &other, 0, 512);
    assert!(matches!(
        slots.finish(&trusted()).unwrap_err(),
        Error::HashMismatch { .. }
    ));

    // Another model.
    let foreign = pack_with(
        &payload(100),
        &PackOptions {
            version: "2.0.0",
            model: "Other Charger",
            build_time: 0,
        },
        &key(1),
    )
    .unwrap();
    slots.begin(sha(&foreign), foreign.len() as u64).unwrap();
    send(&mut slots, &foreign, 0, 512);
    assert!(matches!(
        slots.finish(&trusted()).unwrap_err(),
        Error::WrongModel { .. }
    ));

    assert_eq!(
        slots.boot().unwrap(),
        BootOutcome::Unchanged {
            slot: SlotName::A,
            version: "1.0.0".into()
        }
    );
    drop(slots);
    let slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert_eq!(slots.active_version(), "1.0.0");
    assert!(slots.pending().is_none());
}

#[test]
fn install_image_verifies_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    let bad = image(1000, "2.0.0", &key(2));
    assert!(matches!(
        slots.install_image(&bad, &trusted()).unwrap_err(),
        Error::UntrustedKey { .. }
    ));
    assert!(!dir.path().join("B.img").exists());
    assert_eq!(slots.inactive().state, SlotState::Empty);

    let good = image(1000, "2.0.0", &key(1));
    let h = slots.install_image(&good, &trusted()).unwrap();
    assert_eq!(h.firmware_version, "2.0.0");
    assert_eq!(slots.inactive().state, SlotState::Verified);
    assert_eq!(slots.inactive().version.as_deref(), Some("2.0.0"));
    assert_eq!(slots.active_version(), "1.0.0");
    assert!(
        matches!(slots.boot().unwrap(), BootOutcome::Switched { version, .. } if version == "2.0.0")
    );
}

#[test]
fn corrupt_pending_image_is_rejected_at_boot() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    slots
        .install_image(&image(1000, "2.0.0", &key(1)), &trusted())
        .unwrap();
    let p = dir.path().join("B.img");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[HEADER_LEN + 3] ^= 0xff;
    std::fs::write(&p, bytes).unwrap();
    let out = slots.boot().unwrap();
    assert!(
        matches!(
            out,
            BootOutcome::Rejected {
                slot: SlotName::B,
                kept: SlotName::A,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(slots.active_version(), "1.0.0");
    assert!(matches!(
        slots.boot().unwrap(),
        BootOutcome::Unchanged { .. }
    ));
}

#[test]
fn metadata_survives_reopen_and_corruption_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    slots
        .install_image(&image(100, "2.0.0", &key(1)), &trusted())
        .unwrap();
    slots.boot().unwrap();
    drop(slots);
    let slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert_eq!(slots.active().name, SlotName::B);
    assert_eq!(slots.all()[0].state, SlotState::Previous);
    assert_eq!(slots.all()[0].version.as_deref(), Some("1.0.0"));
    drop(slots);

    let meta = dir.path().join(METADATA_FILE);
    std::fs::write(&meta, b"{ not json").unwrap();
    let err = Slots::open(dir.path(), "1.0.0").unwrap_err();
    assert!(matches!(err, Error::SlotMetadata { .. }), "{err}");
    assert!(err.to_string().contains("slots.json"), "{err}");
    std::fs::write(
        &meta,
        br#"{"format":1,"active":"A","pending":"A","A":{"version":"1.0.0","image_sha256":null},"B":{"version":null,"image_sha256":null},"staging":null}"#,
    )
    .unwrap();
    let err = Slots::open(dir.path(), "1.0.0").unwrap_err().to_string();
    assert!(err.contains("pending slot A is the active slot"), "{err}");
}

#[test]
fn begin_again_without_power_loss_resumes_at_everything_received() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    let img = image(10_000, "2.0.0", &key(1));
    slots.begin(sha(&img), img.len() as u64).unwrap();
    slots.write(0, &img[..7777]).unwrap();
    assert_eq!(slots.begin(sha(&img), img.len() as u64).unwrap(), 7777);
    send(&mut slots, &img, 7777, 1000);
    slots.finish(&trusted()).unwrap();
}

/// Cuts the power after every chunk of a transfer (as MCUboot's simulator interrupts every
/// flash operation): the old slot must still boot, and the transfer must resume and complete.
#[test]
fn power_cut_after_any_chunk_keeps_the_old_slot_and_resumes() {
    let img = image(5 * PERSIST_EVERY as usize + 1234, "2.0.0", &key(1));
    let chunk = 16 * 1024;
    let chunks = img.len().div_ceil(chunk);
    for cut in 0..=chunks {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
            slots.begin(sha(&img), img.len() as u64).unwrap();
            for i in 0..cut {
                let end = ((i + 1) * chunk).min(img.len());
                slots
                    .write((i * chunk) as u64, &img[i * chunk..end])
                    .unwrap();
            }
        }
        let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
        assert_eq!(
            slots.boot().unwrap(),
            BootOutcome::Unchanged {
                slot: SlotName::A,
                version: "1.0.0".into()
            },
            "cut after chunk {cut}"
        );
        let resume = slots.begin(sha(&img), img.len() as u64).unwrap();
        let sent = (cut * chunk).min(img.len()) as u64;
        assert!(
            resume <= sent && sent - resume <= PERSIST_EVERY,
            "cut {cut}: resume {resume}"
        );
        send(&mut slots, &img, resume, 10_000);
        slots.finish(&trusted()).unwrap();
        assert!(
            matches!(slots.boot().unwrap(), BootOutcome::Switched { .. }),
            "cut {cut}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("B.img")).unwrap(),
            img,
            "cut {cut}"
        );
    }
}

// ----- trial boot ----------------------------------------------------------------------------

/// Slots in `dir` with "2.0.0" installed in B, not yet booted.
fn installed(dir: &std::path::Path) -> Slots {
    let mut slots = Slots::open(dir, "1.0.0").unwrap();
    slots
        .install_image(&image(2000, "2.0.0", &key(1)), &trusted())
        .unwrap();
    slots
}

#[test]
fn a_new_image_boots_on_trial_until_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = installed(dir.path());
    assert_eq!(slots.boot_state(), BootState::Normal);
    assert!(matches!(
        slots.boot().unwrap(),
        BootOutcome::Switched { .. }
    ));
    assert_eq!(
        slots.boot_state(),
        BootState::Trial {
            version: "2.0.0".into(),
            boots: 1
        }
    );
    drop(slots);
    // The trial survives a reopen (a power cut before the confirmation counts as a failed boot).
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert!(matches!(
        slots.boot_state(),
        BootState::Trial { boots: 1, .. }
    ));
    assert_eq!(slots.confirm().unwrap(), Some("2.0.0".into()));
    assert_eq!(
        slots.confirm().unwrap(),
        None,
        "confirming twice changes nothing"
    );
    drop(slots);
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert_eq!(slots.boot_state(), BootState::Normal);
    for _ in 0..5 {
        assert!(matches!(
            slots.boot().unwrap(),
            BootOutcome::Unchanged {
                slot: SlotName::B,
                ..
            }
        ));
    }
    assert_eq!(slots.active_version(), "2.0.0");
}

#[test]
fn three_failed_trial_boots_roll_back_to_the_previous_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = installed(dir.path());
    slots.boot().unwrap();
    for boots in 2..=MAX_TRIAL_BOOTS {
        assert!(matches!(
            slots.boot().unwrap(),
            BootOutcome::Unchanged {
                slot: SlotName::B,
                ..
            }
        ));
        assert!(matches!(slots.boot_state(), BootState::Trial { boots: b, .. } if b == boots));
    }
    assert_eq!(
        slots.boot().unwrap(),
        BootOutcome::RolledBack {
            from: SlotName::B,
            to: SlotName::A,
            failed_version: "2.0.0".into(),
            version: "1.0.0".into()
        }
    );
    assert_eq!(slots.active_version(), "1.0.0");
    let rolled = BootState::RolledBack {
        failed_version: "2.0.0".into(),
        boots: MAX_TRIAL_BOOTS,
    };
    assert_eq!(slots.boot_state(), rolled);
    assert!(
        slots.pending().is_none(),
        "the failed image is not booted again"
    );
    drop(slots);
    let mut slots = Slots::open(dir.path(), "1.0.0").unwrap();
    assert_eq!(slots.boot_state(), rolled, "the rollback is remembered");
    assert!(matches!(
        slots.boot().unwrap(),
        BootOutcome::Unchanged {
            slot: SlotName::A,
            ..
        }
    ));
    assert_eq!(
        slots.take_unreported_rollback().unwrap(),
        Some("2.0.0".into())
    );
    assert_eq!(
        slots.take_unreported_rollback().unwrap(),
        None,
        "reported once"
    );
    // The next install forgets it.
    slots
        .install_image(&image(1000, "2.0.1", &key(1)), &trusted())
        .unwrap();
    assert_eq!(slots.boot_state(), BootState::Normal);
}

#[test]
fn a_new_transfer_confirms_the_image_on_trial_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut slots = installed(dir.path());
    slots.boot().unwrap();
    let img = image(1000, "3.0.0", &key(1));
    slots.begin(sha(&img), img.len() as u64).unwrap();
    assert_eq!(slots.boot_state(), BootState::Normal);
    assert_eq!(slots.staging().unwrap().slot, SlotName::A);
}
