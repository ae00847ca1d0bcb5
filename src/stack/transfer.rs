//! File transfers of the Firmware Management profile: the firmware download behind
//! `UpdateFirmware` and the diagnostics upload behind `GetDiagnostics`.
//!
//! What the charger supports (seed, "OCPP Firmware Management profile"):
//! - HTTP and HTTPS only. "FTP(s) is not supported": an `ftp://` or `ftps://` location (or any
//!   other scheme) fails at once with [`TransferError::UnsupportedScheme`], without retries.
//! - "Diagnostics upload uses http(s) and form upload": [`upload_diagnostics`] POSTs a
//!   `multipart/form-data` body with one file field named `file`.
//! - "Diagnostics log must be enabled by Zaptec on individual device": the emulated charger has
//!   its diagnostics log enabled, so [`collect_diagnostics`] always has the charger's log to give.
//!
//! Retries follow OCPP: `retries` more tries after the first failure, `retry_interval` apart
//! (slept with `tokio::time::sleep`, so tests on tokio's paused clock skip the wait). Every try
//! is reported on the `progress` channel as a [`TransferEvent`]. A download interrupted mid-body
//! is resumed with an HTTP `Range` request when the server advertised `Accept-Ranges: bytes` and
//! a validator (a strong `ETag` or `Last-Modified`, sent back as `If-Range`); otherwise the next
//! try starts from the beginning.
//!
//! Credentials in a location (`https://user:password@host/...`) are sent as HTTP Basic
//! authentication and never shown: every error, event and log line names the location with its
//! user information replaced by `<redacted>`.
//!
//! HTTPS checks the server certificate against the Mozilla roots (plus any extra roots in
//! [`TransferOptions`]). Firmware images are signed as well (see [`crate::firmware::verify`]),
//! so a downloaded image is verified before it is installed whatever the transport.

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_RANGE, ETAG, HeaderMap, IF_RANGE, LAST_MODIFIED, RANGE,
};
use reqwest::{Client, StatusCode, Url};
use serde::Serialize;
use std::time::Duration;
use tokio::sync::mpsc;

use super::logbook::LogRecord;

/// Progress of one transfer, sent on the `progress` channel. Attempts count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransferEvent {
    /// A download try started.
    Downloading { attempt: u32 },
    /// An upload try started.
    Uploading { attempt: u32 },
    /// A try failed; `error` is the [`TransferError`] text (credentials redacted). Another try
    /// follows unless this was the last one or the error is not worth retrying.
    Failed { attempt: u32, error: String },
    /// The transfer succeeded: bytes received (download) or sent as the file (upload).
    Done { bytes: u64 },
}

/// Why a transfer failed. URLs in messages have their credentials redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error(
        "unsupported protocol '{scheme}' in '{url}': the charger transfers files over http:// and https:// only{}",
        if matches!(.scheme.as_str(), "ftp" | "ftps") { " (FTP and FTPS are not supported)" } else { "" }
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("invalid location '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{method} {url} answered HTTP status {status}{}", reason_suffix(*.status))]
    Status {
        method: &'static str,
        url: String,
        status: u16,
    },
    #[error("{url} is larger than the limit of {max_bytes} bytes{}", .announced.map(|n| format!(" (the server announced {n} bytes)")).unwrap_or_default())]
    TooLarge {
        url: String,
        max_bytes: u64,
        announced: Option<u64>,
    },
    #[error("transfer with {url} interrupted after {received} bytes: {reason}")]
    Interrupted {
        url: String,
        received: u64,
        reason: String,
    },
    #[error("{url} sent nothing for {} s", .waited.as_secs_f64())]
    Stalled { url: String, waited: Duration },
    #[error("{url} answered with a bad partial response: {reason}")]
    BadRange { url: String, reason: String },
    #[error("giving up on {url} after {attempts} attempts; last error: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: Box<TransferError>,
    },
}

fn reason_suffix(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

impl TransferError {
    /// Whether another try could succeed. A bad location or a file over the size limit will not
    /// change by trying again; network failures and HTTP error statuses might.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransferError::UnsupportedScheme { .. }
            | TransferError::InvalidUrl { .. }
            | TransferError::Setup(_)
            | TransferError::TooLarge { .. } => false,
            TransferError::GaveUp { .. } => false,
            TransferError::Connect { .. }
            | TransferError::Status { .. }
            | TransferError::Interrupted { .. }
            | TransferError::Stalled { .. }
            | TransferError::BadRange { .. } => true,
        }
    }

    /// The HTTP status of the (last) failed try, if the server answered with one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            TransferError::Status { status, .. } => Some(*status),
            TransferError::GaveUp { last, .. } => last.http_status(),
            _ => None,
        }
    }

    /// The error of the last try (itself unless this is [`TransferError::GaveUp`]).
    pub fn last(&self) -> &TransferError {
        match self {
            TransferError::GaveUp { last, .. } => last.last(),
            other => other,
        }
    }
}

/// Client settings. [`Default`] is what [`download`] and [`upload_diagnostics`] use.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Longest wait for a connection and the response headers, and between two pieces of a
    /// download body. `None` waits for ever (tests on a paused clock use that, since a pending
    /// timer there fires as soon as the runtime waits on I/O).
    pub idle_timeout: Option<Duration>,
    /// Longest time for a whole upload request (sending the form and reading the answer).
    pub upload_timeout: Option<Duration>,
    /// Extra trusted root certificates for HTTPS (DER), on top of the Mozilla roots.
    pub extra_roots_der: Vec<Vec<u8>>,
    /// Most redirects followed per try.
    pub max_redirects: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(60)),
            upload_timeout: Some(Duration::from_secs(300)),
            extra_roots_der: Vec::new(),
            max_redirects: 10,
        }
    }
}

const USER_AGENT: &str = concat!("chargectl/", env!("CARGO_PKG_VERSION"));

/// Content type of the diagnostics file part.
pub const DIAGNOSTICS_CONTENT_TYPE: &str = "text/plain";

/// Name of the form field carrying the diagnostics file.
pub const DIAGNOSTICS_FIELD: &str = "file";

/// Downloads `location` (http:// or https://) into memory with the default
/// [`TransferOptions`]. See [`download_with`].
pub async fn download(
    location: &str,
    retries: u32,
    retry_interval: Duration,
    max_bytes: u64,
    progress: mpsc::Sender<TransferEvent>,
) -> Result<Vec<u8>, TransferError> {
    download_with(
        &TransferOptions::default(),
        location,
        retries,
        retry_interval,
        max_bytes,
        progress,
    )
    .await
}

/// Downloads `location` into memory, at most `max_bytes` bytes, trying `1 + retries` times
/// with `retry_interval` between tries. Reports `Downloading`, `Failed` and `Done` on
/// `progress` (a closed channel is ignored; the events are awaited, so keep the receiver
/// drained). Unsupported schemes, invalid URLs and files over `max_bytes` fail without retries.
pub async fn download_with(
    options: &TransferOptions,
    location: &str,
    retries: u32,
    retry_interval: Duration,
    max_bytes: u64,
    progress: mpsc::Sender<TransferEvent>,
) -> Result<Vec<u8>, TransferError> {
    let shown = redact_location(location);
    let url = parse_location(location, &shown)?;
    let client = build_client(options)?;
    let attempts = retries.saturating_add(1);
    let mut partial = Partial::default();
    for attempt in 1..=attempts {
        emit(&progress, TransferEvent::Downloading { attempt }).await;
        tracing::info!(url = %shown, attempt, attempts, resume_from = partial.data.len(), "download try");
        match download_once(&client, options, &url, &shown, max_bytes, &mut partial).await {
            Ok(data) => {
                tracing::info!(url = %shown, bytes = data.len(), "download done");
                emit(
                    &progress,
                    TransferEvent::Done {
                        bytes: data.len() as u64,
                    },
                )
                .await;
                return Ok(data);
            }
            Err(e) => {
                if let Some(stop) = after_failure(
                    &progress,
                    &shown,
                    attempt,
                    attempts,
                    retry_interval,
                    e,
                    "download",
                )
                .await
                {
                    return Err(stop);
                }
            }
        }
    }
    // `attempts` is at least 1, so the loop always returns.
    Err(TransferError::Setup("no download attempt was made".into()))
}

/// Uploads `body` as the file `file_name` in a `multipart/form-data` POST to `location` with
/// the default [`TransferOptions`]. See [`upload_diagnostics_with`].
pub async fn upload_diagnostics(
    location: &str,
    file_name: &str,
    body: Vec<u8>,
    retries: u32,
    retry_interval: Duration,
    progress: mpsc::Sender<TransferEvent>,
) -> Result<(), TransferError> {
    upload_diagnostics_with(
        &TransferOptions::default(),
        location,
        file_name,
        body,
        retries,
        retry_interval,
        progress,
    )
    .await
}

/// Uploads `body` as a form with one field named `file` (filename `file_name`, content type
/// `text/plain`) POSTed to `location`, trying `1 + retries` times with `retry_interval` between
/// tries. Any 2xx answer is success. Reports `Uploading`, `Failed` and `Done` on `progress`.
pub async fn upload_diagnostics_with(
    options: &TransferOptions,
    location: &str,
    file_name: &str,
    body: Vec<u8>,
    retries: u32,
    retry_interval: Duration,
    progress: mpsc::Sender<TransferEvent>,
) -> Result<(), TransferError> {
    let shown = redact_location(location);
    let url = parse_location(location, &shown)?;
    let client = build_client(options)?;
    let attempts = retries.saturating_add(1);
    for attempt in 1..=attempts {
        emit(&progress, TransferEvent::Uploading { attempt }).await;
        tracing::info!(url = %shown, attempt, attempts, bytes = body.len(), file = file_name, "upload try");
        match upload_once(&client, options, &url, &shown, file_name, &body).await {
            Ok(()) => {
                tracing::info!(url = %shown, bytes = body.len(), "upload done");
                emit(
                    &progress,
                    TransferEvent::Done {
                        bytes: body.len() as u64,
                    },
                )
                .await;
                return Ok(());
            }
            Err(e) => {
                if let Some(stop) = after_failure(
                    &progress,
                    &shown,
                    attempt,
                    attempts,
                    retry_interval,
                    e,
                    "upload",
                )
                .await
                {
                    return Err(stop);
                }
            }
        }
    }
    Err(TransferError::Setup("no upload attempt was made".into()))
}

fn give_up(url: String, attempts: u32, last: TransferError) -> TransferError {
    if attempts <= 1 {
        last
    } else {
        TransferError::GaveUp {
            url,
            attempts,
            last: Box::new(last),
        }
    }
}

async fn emit(progress: &mpsc::Sender<TransferEvent>, event: TransferEvent) {
    // A receiver that went away only means nobody watches the progress.
    let _ = progress.send(event).await;
}

/// The location with any user information (`user:password@`) replaced by `<redacted>`, for
/// messages and logs. Works on text that does not parse as a URL too.
pub fn redact_location(location: &str) -> String {
    let location = location.trim();
    let Some(scheme_end) = location.find("://") else {
        return location.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &location[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    match authority.rfind('@') {
        Some(at) => format!(
            "{}<redacted>{}",
            &location[..authority_start],
            &location[authority_start + at..]
        ),
        None => location.to_string(),
    }
}

fn parse_location(location: &str, shown: &str) -> Result<Url, TransferError> {
    let trimmed = location.trim();
    let url = Url::parse(trimmed).map_err(|e| {
        // A scheme we do not support is the clearer message, even if the rest is malformed.
        match scheme_of(trimmed) {
            Some(scheme) if !matches!(scheme.as_str(), "http" | "https") => {
                TransferError::UnsupportedScheme {
                    url: shown.to_string(),
                    scheme,
                }
            }
            _ => TransferError::InvalidUrl {
                url: shown.to_string(),
                reason: e.to_string(),
            },
        }
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(TransferError::UnsupportedScheme {
                url: shown.to_string(),
                scheme: other.to_string(),
            });
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TransferError::InvalidUrl {
            url: shown.to_string(),
            reason: "no host".into(),
        });
    }
    Ok(url)
}

fn scheme_of(text: &str) -> Option<String> {
    let colon = text.find(':')?;
    let scheme = &text[..colon];
    let valid = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

fn build_client(options: &TransferOptions) -> Result<Client, TransferError> {
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        // One transfer, one connection: no idle pool (whose timers would also move a paused
        // test clock).
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::limited(options.max_redirects))
        .https_only(false);
    for der in &options.extra_roots_der {
        let cert = reqwest::Certificate::from_der(der)
            .map_err(|e| TransferError::Setup(format!("bad extra root certificate: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| TransferError::Setup(error_chain(&e)))
}

/// An error and its causes as one line, without the URL reqwest may attach (the caller names
/// the redacted location itself).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn reqwest_reason(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

async fn with_timeout<T>(
    limit: Option<Duration>,
    shown: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, TransferError> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| TransferError::Stalled {
                url: shown.to_string(),
                waited: limit,
            }),
        None => Ok(fut.await),
    }
}

/// What a download has so far, for resuming after an interruption.
#[derive(Default)]
struct Partial {
    data: Vec<u8>,
    /// `If-Range` value: a strong ETag or the Last-Modified date of the response `data` came
    /// from; `None` when the server did not offer byte ranges with a validator.
    validator: Option<String>,
}

impl Partial {
    fn reset(&mut self) {
        self.data.clear();
        self.validator = None;
    }
}

fn resume_validator(headers: &HeaderMap) -> Option<String> {
    let ranges = headers
        .get(ACCEPT_RANGES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|u| u.trim().eq_ignore_ascii_case("bytes")));
    if !ranges {
        return None;
    }
    let etag = headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.starts_with("W/"));
    let modified = headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    etag.or(modified).map(str::to_string)
}

/// `Content-Range: bytes <start>-<end>/<total|*>` → (start, end, total).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.trim().split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some((start, end, total))
}

async fn download_once(
    client: &Client,
    options: &TransferOptions,
    url: &Url,
    shown: &str,
    max_bytes: u64,
    partial: &mut Partial,
) -> Result<Vec<u8>, TransferError> {
    let mut request = client.get(url.clone());
    let resume_from = match &partial.validator {
        Some(validator) if !partial.data.is_empty() => {
            request = request
                .header(RANGE, format!("bytes={}-", partial.data.len()))
                .header(IF_RANGE, validator.as_str());
            Some(partial.data.len() as u64)
        }
        _ => {
            partial.reset();
            None
        }
    };
    let response = with_timeout(options.idle_timeout, shown, request.send())
        .await?
        .map_err(|e| TransferError::Connect {
            url: shown.to_string(),
            reason: reqwest_reason(e),
        })?;
    let status = response.status();
    // The total length the finished body must have, when the server says.
    let expected_total = if status == StatusCode::PARTIAL_CONTENT {
        let Some(from) = resume_from else {
            partial.reset();
            return Err(TransferError::BadRange {
                url: shown.to_string(),
                reason: "206 Partial Content to a request without Range".into(),
            });
        };
        let header = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some((start, _end, total)) = parse_content_range(header) else {
            partial.reset();
            return Err(TransferError::BadRange {
                url: shown.to_string(),
                reason: format!("unreadable Content-Range '{header}'"),
            });
        };
        if start != from {
            partial.reset();
            return Err(TransferError::BadRange {
                url: shown.to_string(),
                reason: format!("asked for bytes from {from}, got bytes from {start}"),
            });
        }
        tracing::debug!(url = %shown, from, "download resumed");
        total
    } else if status.is_success() {
        // A full answer: either the first try, or the server ignored Range / If-Range failed.
        partial.reset();
        partial.validator = resume_validator(response.headers());
        response.content_length()
    } else {
        return Err(TransferError::Status {
            method: "GET",
            url: shown.to_string(),
            status: status.as_u16(),
        });
    };
    if let Some(total) = expected_total
        && total > max_bytes
    {
        partial.reset();
        return Err(TransferError::TooLarge {
            url: shown.to_string(),
            max_bytes,
            announced: Some(total),
        });
    }
    let mut response = response;
    loop {
        let chunk = with_timeout(options.idle_timeout, shown, response.chunk()).await;
        let chunk = match chunk {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => {
                return Err(TransferError::Interrupted {
                    url: shown.to_string(),
                    received: partial.data.len() as u64,
                    reason: reqwest_reason(e),
                });
            }
            Err(stalled) => return Err(stalled),
        };
        let Some(chunk) = chunk else { break };
        if partial.data.len() as u64 + chunk.len() as u64 > max_bytes {
            partial.reset();
            return Err(TransferError::TooLarge {
                url: shown.to_string(),
                max_bytes,
                announced: None,
            });
        }
        partial.data.extend_from_slice(&chunk);
    }
    if let Some(total) = expected_total
        && partial.data.len() as u64 != total
    {
        return Err(TransferError::Interrupted {
            url: shown.to_string(),
            received: partial.data.len() as u64,
            reason: format!("expected {total} bytes"),
        });
    }
    let data = std::mem::take(&mut partial.data);
    partial.reset();
    Ok(data)
}

async fn upload_once(
    client: &Client,
    options: &TransferOptions,
    url: &Url,
    shown: &str,
    file_name: &str,
    body: &[u8],
) -> Result<(), TransferError> {
    let part = reqwest::multipart::Part::bytes(body.to_vec())
        .file_name(file_name.to_string())
        .mime_str(DIAGNOSTICS_CONTENT_TYPE)
        .map_err(|e| TransferError::Setup(error_chain(&e)))?;
    let form = reqwest::multipart::Form::new().part(DIAGNOSTICS_FIELD, part);
    let response = with_timeout(
        options.upload_timeout,
        shown,
        client.post(url.clone()).multipart(form).send(),
    )
    .await?
    .map_err(|e| TransferError::Connect {
        url: shown.to_string(),
        reason: reqwest_reason(e),
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(TransferError::Status {
            method: "POST",
            url: shown.to_string(),
            status: status.as_u16(),
        });
    }
    Ok(())
}

/// The diagnostics file name for `identity` at `at`: `diagnostics-<identity>-<yyyymmddThhmmss>.log`,
/// with characters outside `A-Z a-z 0-9 . _ -` in the identity replaced by `_`.
pub fn diagnostics_file_name(identity: &str, at: DateTime<Utc>) -> String {
    let mut id: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        id.push_str("unknown");
    }
    format!("diagnostics-{id}-{}.log", at.format("%Y%m%dT%H%M%S"))
}

/// The charger's diagnostics file: its log records timed within `start..=stop` (either bound
/// may be absent), one per line as `<RFC 3339 time> <LEVEL> <target>: <message>`, after a header
/// line naming the charger `identity` (its serial number) and the window. Line breaks inside a
/// message are written as `\n` and `\r` so each record stays on one line.
///
/// The file name is [`diagnostics_file_name`] at the end of the window: `stop` if given, else
/// the newest record included, else `start`, else the newest record held (the Unix epoch for
/// an empty log). Callers that want the current time in the name use [`diagnostics_file_name`].
///
/// The seed notes that the diagnostics log "must be enabled by Zaptec" per charger; the
/// emulated charger has it enabled, so this always returns the log held.
pub fn collect_diagnostics(
    records: &[LogRecord],
    start: Option<DateTime<Utc>>,
    stop: Option<DateTime<Utc>>,
    identity: &str,
) -> (String, Vec<u8>) {
    let selected: Vec<&LogRecord> = records
        .iter()
        .filter(|r| start.is_none_or(|s| r.time >= s) && stop.is_none_or(|s| r.time <= s))
        .collect();
    let bound = |t: Option<DateTime<Utc>>, open: &str| {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_else(|| open.to_string())
    };
    let mut text = format!(
        "# Diagnostics log of charger {identity}: {} records from {} to {}\n",
        selected.len(),
        bound(start, "the oldest record held"),
        bound(stop, "the newest record"),
    );
    for r in &selected {
        text.push_str(&r.time.to_rfc3339_opts(SecondsFormat::Millis, true));
        text.push(' ');
        text.push_str(&format!("{:<5}", r.level.as_str().to_ascii_uppercase()));
        text.push(' ');
        text.push_str(&one_line(&r.target));
        text.push_str(": ");
        text.push_str(&one_line(&r.message));
        text.push('\n');
    }
    let named_at = stop
        .or_else(|| selected.iter().map(|r| r.time).max())
        .or(start)
        .or_else(|| records.iter().map(|r| r.time).max())
        .unwrap_or(DateTime::UNIX_EPOCH);
    (diagnostics_file_name(identity, named_at), text.into_bytes())
}

fn one_line(text: &str) -> String {
    text.replace('\r', "\\r").replace('\n', "\\n")
}

/// Reports a failed try; returns the error to give up with, or waits `retry_interval` and
/// returns None so the caller tries again.
async fn after_failure(
    progress: &mpsc::Sender<TransferEvent>,
    shown: &str,
    attempt: u32,
    attempts: u32,
    retry_interval: Duration,
    e: TransferError,
    what: &str,
) -> Option<TransferError> {
    tracing::warn!(url = %shown, attempt, error = %e, "{what} try failed");
    emit(
        progress,
        TransferEvent::Failed {
            attempt,
            error: e.to_string(),
        },
    )
    .await;
    if !e.is_retryable() {
        return Some(e);
    }
    if attempt == attempts {
        return Some(give_up(shown.to_string(), attempts, e));
    }
    tokio::time::sleep(retry_interval).await;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::logbook::Level;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, s)
            .single()
            .expect("valid test time")
    }

    fn rec(seq: u64, time: DateTime<Utc>, level: Level, target: &str, msg: &str) -> LogRecord {
        LogRecord {
            seq,
            time,
            level,
            target: target.into(),
            message: msg.into(),
        }
    }

    fn sample() -> Vec<LogRecord> {
        vec![
            rec(1, at(8, 0, 0), Level::Info, "ocpp", "booting"),
            rec(2, at(8, 5, 0), Level::Warn, "meter", "phase L2 low"),
            rec(3, at(8, 10, 0), Level::Error, "ocpp", "connection lost"),
            rec(4, at(8, 15, 30), Level::Debug, "link", "ping"),
        ]
    }

    fn lines(body: &[u8]) -> Vec<String> {
        String::from_utf8(body.to_vec())
            .expect("utf-8")
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn whole_log_without_bounds() {
        let (name, body) = collect_diagnostics(&sample(), None, None, "ZAP000123");
        assert_eq!(name, "diagnostics-ZAP000123-20261126T081530.log");
        let l = lines(&body);
        assert_eq!(l.len(), 5);
        assert!(l[0].starts_with("# Diagnostics log of charger ZAP000123: 4 records"));
        assert_eq!(l[1], "2026-11-26T08:00:00.000Z INFO  ocpp: booting");
        assert_eq!(l[2], "2026-11-26T08:05:00.000Z WARN  meter: phase L2 low");
        assert_eq!(l[3], "2026-11-26T08:10:00.000Z ERROR ocpp: connection lost");
        assert_eq!(l[4], "2026-11-26T08:15:30.000Z DEBUG link: ping");
    }

    #[test]
    fn window_is_inclusive_and_names_the_file_after_stop() {
        let (name, body) =
            collect_diagnostics(&sample(), Some(at(8, 5, 0)), Some(at(8, 10, 0)), "ZAP1");
        assert_eq!(name, "diagnostics-ZAP1-20261126T081000.log");
        let l = lines(&body);
        assert_eq!(l.len(), 3, "{l:?}");
        assert!(
            l[0].contains("2 records from 2026-11-26T08:05:00.000Z to 2026-11-26T08:10:00.000Z")
        );
        assert!(l[1].ends_with("meter: phase L2 low"));
        assert!(l[2].ends_with("ocpp: connection lost"));
    }

    #[test]
    fn open_ended_windows() {
        let (_, body) = collect_diagnostics(&sample(), Some(at(8, 6, 0)), None, "Z");
        assert_eq!(lines(&body).len(), 3);
        let (name, body) = collect_diagnostics(&sample(), None, Some(at(8, 4, 59)), "Z");
        assert_eq!(lines(&body).len(), 2);
        assert_eq!(name, "diagnostics-Z-20261126T080459.log");
    }

    #[test]
    fn empty_window_still_has_the_header() {
        let (name, body) =
            collect_diagnostics(&sample(), Some(at(9, 0, 0)), Some(at(8, 0, 0)), "Z");
        let l = lines(&body);
        assert_eq!(l.len(), 1);
        assert!(l[0].contains("charger Z: 0 records"));
        assert_eq!(name, "diagnostics-Z-20261126T080000.log");
        let (name, body) = collect_diagnostics(&[], None, None, "Z");
        assert_eq!(lines(&body).len(), 1);
        assert_eq!(name, "diagnostics-Z-19700101T000000.log");
        let (name, _) = collect_diagnostics(&sample(), Some(at(9, 0, 0)), None, "Z");
        assert_eq!(name, "diagnostics-Z-20261126T090000.log");
    }

    #[test]
    fn messages_stay_on_one_line_and_identity_is_file_safe() {
        let records = vec![rec(1, at(8, 0, 0), Level::Info, "ocpp", "a\nb\r\nc")];
        let (name, body) = collect_diagnostics(&records, None, None, "cp/01 x");
        assert_eq!(name, "diagnostics-cp_01_x-20261126T080000.log");
        let l = lines(&body);
        assert_eq!(l.len(), 2);
        assert_eq!(l[1], "2026-11-26T08:00:00.000Z INFO  ocpp: a\\nb\\r\\nc");
        assert_eq!(
            diagnostics_file_name("", at(1, 2, 3)),
            "diagnostics-unknown-20261126T010203.log"
        );
    }

    #[test]
    fn locations_are_redacted() {
        assert_eq!(
            redact_location("https://user:pa55@host:8080/up?x=1"),
            "https://<redacted>@host:8080/up?x=1"
        );
        assert_eq!(redact_location("http://host/a@b"), "http://host/a@b");
        assert_eq!(
            redact_location("ftp://u:p@w@host/x"),
            "ftp://<redacted>@host/x"
        );
        assert_eq!(redact_location("not a url"), "not a url");
    }

    #[test]
    fn schemes_and_urls_are_checked() {
        for (loc, scheme) in [
            ("ftp://host/fw.bin", "ftp"),
            ("FTPS://user:secret@host/fw.bin", "ftps"),
            ("file:///etc/passwd", "file"),
            ("gopher://x", "gopher"),
        ] {
            let shown = redact_location(loc);
            let err = parse_location(loc, &shown).expect_err(loc);
            assert_eq!(
                err,
                TransferError::UnsupportedScheme {
                    url: shown.clone(),
                    scheme: scheme.into()
                }
            );
            assert!(!err.to_string().contains("secret"), "{err}");
            assert!(!err.is_retryable());
        }
        assert!(
            parse_location("ftp://h/x", "ftp://h/x")
                .expect_err("ftp")
                .to_string()
                .contains("FTP and FTPS are not supported")
        );
        assert!(matches!(
            parse_location("http://", "http://"),
            Err(TransferError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_location("no scheme", "no scheme"),
            Err(TransferError::InvalidUrl { .. })
        ));
        assert!(parse_location(" http://127.0.0.1:1/x ", "").is_ok());
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, 199, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes 9-5/20"), None);
        assert_eq!(parse_content_range("bytes 0-20/20"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range(""), None);
    }

    #[test]
    fn errors_name_url_and_status() {
        let e = give_up(
            "http://h/fw".into(),
            3,
            TransferError::Status {
                method: "GET",
                url: "http://h/fw".into(),
                status: 404,
            },
        );
        assert_eq!(
            e.to_string(),
            "giving up on http://h/fw after 3 attempts; last error: GET http://h/fw answered HTTP status 404 (Not Found)"
        );
        assert_eq!(e.http_status(), Some(404));
        assert!(!e.is_retryable());
    }
}
