//! `chargectl firmware keygen | pack | inspect`: build and check signed images.

use crate::cli::args::FirmwareCommand;
use crate::cli::{Env, ExitCode, Failure, output};
use crate::firmware::{
    self, ErrorKind, Inspection, PackOptions, SignatureStatus, VerifyingKey, keys,
};
use anyhow::Context as _;
use serde_json::json;
use std::io::Write as _;
use std::path::Path;

pub async fn run(cmd: FirmwareCommand, env: &Env) -> anyhow::Result<ExitCode> {
    match cmd {
        FirmwareCommand::Keygen { output, force } => keygen(&output, force, env),
        FirmwareCommand::Pack {
            key,
            version,
            payload,
            output,
        } => pack(&key, &version, &payload, &output, env).await,
        FirmwareCommand::Inspect { image, trust_keys } => inspect(&image, &trust_keys, env).await,
    }
}

/// Maps a library error to the exit code of its class.
fn fail(error: firmware::Error, verification_is_bad_input: bool) -> anyhow::Error {
    let code = match error.kind() {
        ErrorKind::Verification if verification_is_bad_input => ExitCode::BadInput,
        ErrorKind::Verification => ExitCode::Verification,
        ErrorKind::BadInput => ExitCode::BadInput,
        ErrorKind::Protocol | ErrorKind::Storage => ExitCode::Failure,
    };
    Failure::new(code, error).into()
}

fn keygen(name: &Path, force: bool, env: &Env) -> anyhow::Result<ExitCode> {
    let (secret, public) = keys::write_keypair(name, force).map_err(|e| match e {
        firmware::Error::KeyExists { .. } => Failure::new(ExitCode::Failure, e).into(),
        other => fail(other, true),
    })?;
    let vk = keys::read_verifying_key(&public).map_err(|e| fail(e, true))?;
    let fingerprint = keys::fingerprint(&vk);
    if env.json {
        output::print_json(&json!({
            "secret_key": secret.display().to_string(),
            "public_key": public.display().to_string(),
            "fingerprint": fingerprint,
        }))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "secret key  {} (keep it private)", secret.display())?;
        writeln!(out, "public key  {}", public.display())?;
        writeln!(out, "fingerprint {fingerprint}")?;
    }
    Ok(ExitCode::Ok)
}

async fn pack(
    key_path: &Path,
    version: &str,
    payload_path: &Path,
    output_path: &Path,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    firmware::validate_version(version).map_err(|e| fail(e, true))?;
    let key = keys::read_signing_key(key_path).map_err(|e| match e {
        firmware::Error::Io { .. } => Failure::new(ExitCode::Failure, e).into(),
        other => fail(other, true),
    })?;
    let payload = tokio::fs::read(payload_path)
        .await
        .with_context(|| format!("reading payload {}", payload_path.display()))?;
    let build_time = build_time()?;
    let image = firmware::pack_with(
        &payload,
        &PackOptions {
            version,
            model: firmware::MODEL,
            build_time,
        },
        &key,
    )
    .map_err(|e| fail(e, true))?;
    let header = firmware::parse_header(&image).map_err(|e| fail(e, false))?;
    let out = match output_path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new(".").join(output_path),
        _ => output_path.to_path_buf(),
    };
    let bytes = image.clone();
    tokio::task::spawn_blocking(move || crate::storage::write_atomic(&out, &bytes))
        .await
        .context("writing the image")?
        .with_context(|| format!("writing image {}", output_path.display()))?;
    if env.json {
        output::print_json(&json!({
            "image": output_path.display().to_string(),
            "image_size": image.len(),
            "firmware_version": header.firmware_version,
            "model": header.model,
            "payload_size": header.payload_size,
            "payload_sha256": header.payload_sha256_hex(),
            "build_time": header.build_time,
            "key_id": header.key_id_hex(),
        }))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "wrote {} ({} bytes): firmware {} for {}, signed by key {}",
            output_path.display(),
            image.len(),
            header.firmware_version,
            header.model,
            header.key_id_hex()
        )?;
        writeln!(out, "payload sha256 {}", header.payload_sha256_hex())?;
    }
    Ok(ExitCode::Ok)
}

/// Build time for the header: `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
fn build_time() -> anyhow::Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text.trim().parse::<i64>().map_err(|_| {
            Failure::new(
                ExitCode::BadInput,
                anyhow::anyhow!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds"),
            )
            .into()
        }),
        Err(_) => Ok(chrono::Utc::now().timestamp()),
    }
}

async fn inspect(
    image_path: &Path,
    trust_keys: &[std::path::PathBuf],
    env: &Env,
) -> anyhow::Result<ExitCode> {
    let mut trusted: Vec<VerifyingKey> = Vec::with_capacity(trust_keys.len());
    for path in trust_keys {
        let key = keys::read_verifying_key(path).map_err(|e| match e {
            firmware::Error::Io { .. } => Failure::new(ExitCode::Failure, e).into(),
            other => fail(other, true),
        })?;
        trusted.push(key);
    }
    let image = tokio::fs::read(image_path)
        .await
        .with_context(|| format!("reading image {}", image_path.display()))?;
    let inspection = firmware::inspect(&image, &trusted)
        .with_context(|| format!("{} is not a valid firmware image", image_path.display()))
        .map_err(|e| anyhow::Error::from(Failure::new(ExitCode::Verification, e)))?;
    let ok = if trusted.is_empty() {
        inspection.intact()
    } else {
        inspection.verified()
    };
    if env.json {
        output::print_json(&inspection_json(image_path, image.len(), &inspection, ok))?;
    } else {
        print_inspection(image_path, image.len(), &inspection, ok)?;
    }
    if !ok {
        tracing::debug!(image = %image_path.display(), "firmware image does not verify");
        if !env.json {
            eprintln!(
                "chargectl: {}: {}",
                image_path.display(),
                problem(&inspection)
            );
        }
        return Ok(ExitCode::Verification);
    }
    Ok(ExitCode::Ok)
}

/// The first problem of an image that does not verify, in words.
fn problem(i: &Inspection) -> String {
    if !i.size_ok {
        return format!(
            "payload is {} bytes, the header announces {}",
            i.payload_len, i.header.payload_size
        );
    }
    if !i.sha_ok {
        return "payload SHA-256 does not match the header".into();
    }
    match &i.signature {
        SignatureStatus::Invalid => format!(
            "signature does not verify with key {} (image altered after signing)",
            i.header.key_id_hex()
        ),
        SignatureStatus::Untrusted => format!(
            "signed by key {}, which is not among the trusted keys",
            i.header.key_id_hex()
        ),
        SignatureStatus::NoKeysGiven | SignatureStatus::Trusted { .. } => "verified".into(),
    }
}

fn inspection_json(path: &Path, image_size: usize, i: &Inspection, ok: bool) -> serde_json::Value {
    let h = &i.header;
    let fingerprint = match &i.signature {
        SignatureStatus::Trusted { fingerprint } => Some(fingerprint.clone()),
        _ => None,
    };
    json!({
        "image": path.display().to_string(),
        "image_size": image_size,
        "format_version": h.format_version,
        "firmware_version": h.firmware_version,
        "model": h.model,
        "payload_size": h.payload_size,
        "payload_sha256": h.payload_sha256_hex(),
        "build_time": h.build_time,
        "build_time_utc": build_time_text(h.build_time),
        "key_id": h.key_id_hex(),
        "size_ok": i.size_ok,
        "sha_ok": i.sha_ok,
        "signature": {
            "status": i.signature.as_str(),
            "fingerprint": fingerprint,
        },
        "verified": ok,
    })
}

fn build_time_text(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn print_inspection(
    path: &Path,
    image_size: usize,
    i: &Inspection,
    ok: bool,
) -> std::io::Result<()> {
    let h = &i.header;
    let mark = |good: bool| if good { "ok" } else { "MISMATCH" };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "image           {} ({image_size} bytes)",
        path.display()
    )?;
    writeln!(out, "format          {}", h.format_version)?;
    writeln!(out, "firmware        {}", h.firmware_version)?;
    writeln!(out, "model           {}", h.model)?;
    writeln!(
        out,
        "built           {}",
        build_time_text(h.build_time).unwrap_or_else(|| h.build_time.to_string())
    )?;
    writeln!(
        out,
        "payload size    {} bytes ({})",
        h.payload_size,
        mark(i.size_ok)
    )?;
    writeln!(
        out,
        "payload sha256  {} ({})",
        h.payload_sha256_hex(),
        if i.size_ok {
            mark(i.sha_ok)
        } else {
            "not checked"
        }
    )?;
    writeln!(out, "signed by key   {}", h.key_id_hex())?;
    let signature = match &i.signature {
        SignatureStatus::Trusted { fingerprint } => format!("trusted (key {fingerprint})"),
        SignatureStatus::Untrusted => "NOT TRUSTED: key not among --trust-key".into(),
        SignatureStatus::NoKeysGiven => "not checked (give --trust-key PUBKEY)".into(),
        SignatureStatus::Invalid => "INVALID: altered after signing".into(),
    };
    writeln!(out, "signature       {signature}")?;
    writeln!(out, "result          {}", if ok { "ok" } else { "FAILED" })?;
    Ok(())
}
