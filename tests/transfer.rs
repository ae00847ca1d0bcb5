//! Firmware download and diagnostics upload against a real HTTP/1.1 server on 127.0.0.1.
//!
//! The server is hand-written over `tokio::net::TcpListener` so a test can script each answer:
//! cut a body halfway, answer 404 or 500, stall, serve byte ranges. Retry waits run on tokio's
//! paused clock with the client's own timeouts switched off (a pending timeout would fire as
//! soon as the paused runtime waits on I/O); the timeout itself is tested on the real clock with
//! a short limit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use base64::Engine;
use chargectl::stack::transfer::{
    self, TransferError, TransferEvent, TransferOptions, download, download_with,
    upload_diagnostics, upload_diagnostics_with,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    /// A complete answer with Content-Length.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Announces `body.len()` bytes but sends only the first `send`, then closes.
    Cut {
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        send: usize,
    },
    /// A 200 without Content-Length whose body ends when the connection closes.
    CloseDelimited { body: Vec<u8> },
    /// Headers and the first `send` bytes, then silence for `hold` before closing.
    Stall {
        body: Vec<u8>,
        send: usize,
        hold: Duration,
    },
}

fn ok(body: &[u8]) -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![],
        body: body.to_vec(),
    }
}

fn status(code: u16) -> Reply {
    Reply::Full {
        status: code,
        headers: vec![],
        body: format!("status {code}\n").into_bytes(),
    }
}

type Handler = Arc<dyn Fn(usize, &Request) -> Reply + Send + Sync>;

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(handler: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Server {
        Self::start_with(None, Arc::new(handler)).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>, handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve_one(stream, handler, recorded).await;
                            }
                        }
                        None => serve_one(tcp, handler, recorded).await,
                    }
                });
            }
        });
        Server {
            addr,
            requests,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: Handler,
    recorded: Arc<Mutex<Vec<Request>>>,
) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let index = {
        let mut all = recorded.lock().expect("requests");
        all.push(request.clone());
        all.len() - 1
    };
    let reply = handler(index, &request);
    let head = |status: u16, headers: &[(&'static str, String)], length: Option<usize>| {
        let mut head = format!("HTTP/1.1 {status} Test\r\nConnection: close\r\n");
        if let Some(length) = length {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    };
    let _ = match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut out = head(status, &headers, Some(body.len()));
            out.extend_from_slice(&body);
            stream.write_all(&out).await
        }
        Reply::Cut {
            headers,
            body,
            send,
        } => {
            let mut out = head(200, &headers, Some(body.len()));
            out.extend_from_slice(&body[..send]);
            stream.write_all(&out).await
        }
        Reply::CloseDelimited { body } => {
            let mut out = head(200, &[], None);
            out.extend_from_slice(&body);
            stream.write_all(&out).await
        }
        Reply::Stall { body, send, hold } => {
            let mut out = head(200, &[], Some(body.len()));
            out.extend_from_slice(&body[..send]);
            let written = stream.write_all(&out).await;
            let _ = stream.flush().await;
            tokio::time::sleep(hold).await;
            written
        }
    };
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
        "the client should send a Content-Length, not a chunked body"
    );
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// One part of a multipart/form-data body.
#[derive(Debug)]
struct FormPart {
    name: Option<String>,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn disposition_param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn parse_multipart(request: &Request) -> Vec<FormPart> {
    let content_type = request.header("content-type").expect("content-type");
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let body = &request.body;
    let mut starts = Vec::new();
    let mut i = 0;
    while i + delimiter.len() <= body.len() {
        if body[i..].starts_with(&delimiter) {
            starts.push(i);
            i += delimiter.len();
        } else {
            i += 1;
        }
    }
    assert!(starts.len() >= 2, "no complete part in the form");
    let last = *starts.last().expect("closing delimiter");
    assert!(
        body[last + delimiter.len()..].starts_with(b"--"),
        "the form must end with the closing delimiter"
    );
    starts
        .windows(2)
        .map(|w| {
            // Part = after "--boundary\r\n" up to the "\r\n" before the next delimiter.
            let part = &body[w[0] + delimiter.len() + 2..w[1] - 2];
            let split = part
                .windows(4)
                .position(|x| x == b"\r\n\r\n")
                .expect("part headers");
            let head = String::from_utf8(part[..split].to_vec()).expect("utf-8 part headers");
            let mut result = FormPart {
                name: None,
                filename: None,
                content_type: None,
                data: part[split + 4..].to_vec(),
            };
            for line in head.split("\r\n") {
                let Some((n, v)) = line.split_once(':') else {
                    continue;
                };
                match n.trim().to_ascii_lowercase().as_str() {
                    "content-disposition" => {
                        assert!(v.trim().starts_with("form-data"), "{v}");
                        result.name = disposition_param(v, "name");
                        result.filename = disposition_param(v, "filename");
                    }
                    "content-type" => result.content_type = Some(v.trim().to_string()),
                    _ => {}
                }
            }
            result
        })
        .collect()
}

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Paused-clock settings: no client timers racing the loopback I/O.
fn untimed() -> TransferOptions {
    TransferOptions {
        idle_timeout: None,
        upload_timeout: None,
        ..TransferOptions::default()
    }
}

fn events(rx: &mut mpsc::Receiver<TransferEvent>) -> Vec<TransferEvent> {
    let mut all = Vec::new();
    while let Ok(e) = rx.try_recv() {
        all.push(e);
    }
    all
}

fn failed_attempts(events: &[TransferEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            TransferEvent::Failed { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn download_succeeds() {
    let body = image(200_000);
    let served = body.clone();
    let server = Server::start(move |_, _| ok(&served)).await;
    let (tx, mut rx) = mpsc::channel(16);
    let got = download(
        &server.url("/fw/2.5.0.bin"),
        3,
        Duration::from_secs(1),
        1 << 20,
        tx,
    )
    .await
    .expect("download");
    assert_eq!(got, body);
    assert_eq!(
        events(&mut rx),
        vec![
            TransferEvent::Downloading { attempt: 1 },
            TransferEvent::Done { bytes: 200_000 }
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/fw/2.5.0.bin");
    assert!(requests[0].header("range").is_none());
}

#[tokio::test(start_paused = true)]
async fn interrupted_download_is_retried_from_the_start() {
    let body = image(64 * 1024);
    let served = body.clone();
    let server = Server::start(move |i, _| {
        if i == 0 {
            Reply::Cut {
                headers: vec![],
                body: served.clone(),
                send: served.len() / 2,
            }
        } else {
            ok(&served)
        }
    })
    .await;
    let (tx, mut rx) = mpsc::channel(16);
    let started = Instant::now();
    let got = download_with(
        &untimed(),
        &server.url("/fw.bin"),
        2,
        Duration::from_secs(30),
        1 << 20,
        tx,
    )
    .await
    .expect("download after one interruption");
    assert_eq!(got, body);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "one retry interval between the tries, waited {waited:?}"
    );
    let ev = events(&mut rx);
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert_eq!(ev[0], TransferEvent::Downloading { attempt: 1 });
    match &ev[1] {
        TransferEvent::Failed { attempt: 1, error } => {
            assert!(error.contains("interrupted after"), "{error}");
            assert!(error.contains(&server.url("/fw.bin")), "{error}");
        }
        other => panic!("expected the first try to fail, got {other:?}"),
    }
    assert_eq!(ev[2], TransferEvent::Downloading { attempt: 2 });
    assert_eq!(
        ev[3],
        TransferEvent::Done {
            bytes: body.len() as u64
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].header("range").is_none(),
        "no Range without Accept-Ranges from the server"
    );
}

#[tokio::test(start_paused = true)]
async fn interrupted_download_resumes_with_a_range_request() {
    let body = image(50_000);
    let half = body.len() / 2;
    let served = body.clone();
    let server = Server::start(move |i, req| {
        let validators = vec![
            ("Accept-Ranges", "bytes".to_string()),
            ("ETag", "\"fw-v1\"".to_string()),
        ];
        match (i, req.header("range")) {
            (0, _) => Reply::Cut {
                headers: validators,
                body: served.clone(),
                send: half,
            },
            (_, Some(range)) => {
                let from: usize = range
                    .strip_prefix("bytes=")
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|n| n.parse().ok())
                    .expect("open range");
                let mut headers = validators;
                headers.push((
                    "Content-Range",
                    format!("bytes {from}-{}/{}", served.len() - 1, served.len()),
                ));
                Reply::Full {
                    status: 206,
                    headers,
                    body: served[from..].to_vec(),
                }
            }
            (_, None) => ok(&served),
        }
    })
    .await;
    let (tx, mut rx) = mpsc::channel(16);
    let got = download_with(
        &untimed(),
        &server.url("/fw.bin"),
        1,
        Duration::from_secs(5),
        1 << 20,
        tx,
    )
    .await
    .expect("resumed download");
    assert_eq!(got, body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].header("range"),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(requests[1].header("if-range"), Some("\"fw-v1\""));
    assert_eq!(
        events(&mut rx).last(),
        Some(&TransferEvent::Done {
            bytes: body.len() as u64
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_that_ignores_the_range_gets_a_fresh_start() {
    let body = image(30_000);
    let served = body.clone();
    let server = Server::start(move |i, _| {
        let headers = vec![
            ("Accept-Ranges", "bytes".to_string()),
            ("Last-Modified", "Wed, 25 Nov 2026 10:00:00 GMT".to_string()),
        ];
        if i == 0 {
            Reply::Cut {
                headers,
                body: served.clone(),
                send: 1000,
            }
        } else {
            // The file changed (If-Range failed): the whole new body with 200.
            Reply::Full {
                status: 200,
                headers,
                body: served.clone(),
            }
        }
    })
    .await;
    let (tx, _rx) = mpsc::channel(16);
    let got = download_with(
        &untimed(),
        &server.url("/fw.bin"),
        1,
        Duration::from_secs(5),
        1 << 20,
        tx,
    )
    .await
    .expect("download");
    assert_eq!(got, body, "the partial first try must not be kept");
    let requests = server.requests();
    assert_eq!(requests[1].header("range"), Some("bytes=1000-"));
    assert_eq!(
        requests[1].header("if-range"),
        Some("Wed, 25 Nov 2026 10:00:00 GMT")
    );
}

#[tokio::test(start_paused = true)]
async fn not_found_is_retried_then_fails_with_the_status() {
    let server = Server::start(|_, _| status(404)).await;
    let url = server.url("/missing.bin");
    let (tx, mut rx) = mpsc::channel(16);
    let started = Instant::now();
    let err = download_with(&untimed(), &url, 2, Duration::from_secs(10), 1 << 20, tx)
        .await
        .expect_err("404 must fail");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(21),
        "two retry intervals, waited {waited:?}"
    );
    assert_eq!(server.requests().len(), 3, "first try plus two retries");
    assert_eq!(err.http_status(), Some(404));
    let text = err.to_string();
    assert!(text.contains("404"), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("3 attempts"), "{text}");
    let ev = events(&mut rx);
    assert_eq!(failed_attempts(&ev), vec![1, 2, 3]);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, TransferEvent::Downloading { .. }))
            .count(),
        3
    );
    assert!(!ev.iter().any(|e| matches!(e, TransferEvent::Done { .. })));
}

#[tokio::test(start_paused = true)]
async fn size_cap_is_enforced_without_retries() {
    // Announced by Content-Length: refused before reading the body.
    let big = image(10_000);
    let served = big.clone();
    let server = Server::start(move |_, _| ok(&served)).await;
    let (tx, mut rx) = mpsc::channel(16);
    let err = download_with(
        &untimed(),
        &server.url("/big.bin"),
        3,
        Duration::from_secs(10),
        5_000,
        tx,
    )
    .await
    .expect_err("over the cap");
    assert!(
        matches!(
            err,
            TransferError::TooLarge {
                max_bytes: 5_000,
                announced: Some(10_000),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("5000 bytes"), "{err}");
    assert_eq!(
        server.requests().len(),
        1,
        "a file too large is not retried"
    );
    assert_eq!(failed_attempts(&events(&mut rx)), vec![1]);

    // No length announced: stopped while streaming.
    let served = big.clone();
    let server = Server::start(move |_, _| Reply::CloseDelimited {
        body: served.clone(),
    })
    .await;
    let (tx, _rx) = mpsc::channel(16);
    let err = download_with(
        &untimed(),
        &server.url("/big.bin"),
        3,
        Duration::from_secs(10),
        5_000,
        tx,
    )
    .await
    .expect_err("over the cap");
    assert!(
        matches!(
            err,
            TransferError::TooLarge {
                max_bytes: 5_000,
                announced: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 1);

    // Exactly at the cap is fine.
    let served = big.clone();
    let server = Server::start(move |_, _| Reply::CloseDelimited {
        body: served.clone(),
    })
    .await;
    let (tx, _rx) = mpsc::channel(16);
    let got = download_with(
        &untimed(),
        &server.url("/exact.bin"),
        0,
        Duration::ZERO,
        10_000,
        tx,
    )
    .await
    .expect("exactly max_bytes");
    assert_eq!(got, big);
}

#[tokio::test(start_paused = true)]
async fn ftp_fails_immediately() {
    let started = Instant::now();
    for location in [
        "ftp://127.0.0.1:21/fw.bin",
        "ftps://user:hunter2@127.0.0.1/fw.bin",
    ] {
        let (tx, mut rx) = mpsc::channel(16);
        let err = download(location, 5, Duration::from_secs(60), 1 << 20, tx)
            .await
            .expect_err("ftp is not supported");
        assert!(
            matches!(err, TransferError::UnsupportedScheme { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("FTP and FTPS are not supported"), "{text}");
        assert!(!text.contains("hunter2"), "credentials leaked: {text}");
        assert!(events(&mut rx).is_empty());

        let (tx, _rx) = mpsc::channel(16);
        let err = upload_diagnostics(
            location,
            "d.log",
            b"x".to_vec(),
            5,
            Duration::from_secs(60),
            tx,
        )
        .await
        .expect_err("ftp upload is not supported");
        assert!(
            matches!(err, TransferError::UnsupportedScheme { .. }),
            "{err:?}"
        );
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "no retry waits");
}

#[tokio::test]
async fn upload_sends_one_file_field() {
    let server = Server::start(|_, _| status(200)).await;
    let records = vec![chargectl::stack::logbook::LogRecord {
        seq: 1,
        time: chrono::DateTime::UNIX_EPOCH,
        level: chargectl::stack::logbook::Level::Info,
        target: "ocpp".into(),
        message: "booting".into(),
    }];
    let (name, body) = transfer::collect_diagnostics(&records, None, None, "ZAP000042");
    let location = format!("http://installer:s3cret@{}/upload/diag", server.addr);
    let (tx, mut rx) = mpsc::channel(16);
    upload_diagnostics(
        &location,
        &name,
        body.clone(),
        1,
        Duration::from_secs(1),
        tx,
    )
    .await
    .expect("upload");
    assert_eq!(
        events(&mut rx),
        vec![
            TransferEvent::Uploading { attempt: 1 },
            TransferEvent::Done {
                bytes: body.len() as u64
            }
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/upload/diag");
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("installer:s3cret")
    );
    assert_eq!(
        request.header("authorization"),
        Some(expected_auth.as_str())
    );
    let parts = parse_multipart(request);
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(parts[0].name.as_deref(), Some("file"));
    assert_eq!(
        parts[0].filename.as_deref(),
        Some("diagnostics-ZAP000042-19700101T000000.log")
    );
    assert_eq!(parts[0].content_type.as_deref(), Some("text/plain"));
    assert_eq!(parts[0].data, body);
}

#[tokio::test(start_paused = true)]
async fn upload_is_retried_after_a_server_error() {
    let server = Server::start(|i, _| if i == 0 { status(500) } else { status(201) }).await;
    let location = format!("http://u:topsecret@{}/up", server.addr);
    let body = b"line one\nline two\n".to_vec();
    let (tx, mut rx) = mpsc::channel(16);
    let started = Instant::now();
    upload_diagnostics_with(
        &untimed(),
        &location,
        "diagnostics-Z-20261126T080000.log",
        body.clone(),
        3,
        Duration::from_secs(15),
        tx,
    )
    .await
    .expect("second try succeeds");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(16),
        "{waited:?}"
    );
    let ev = events(&mut rx);
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert_eq!(ev[0], TransferEvent::Uploading { attempt: 1 });
    match &ev[1] {
        TransferEvent::Failed { attempt: 1, error } => {
            assert!(error.contains("500"), "{error}");
            assert!(error.contains("POST"), "{error}");
            assert!(!error.contains("topsecret"), "credentials leaked: {error}");
            assert!(error.contains("<redacted>"), "{error}");
        }
        other => panic!("expected a failed first try, got {other:?}"),
    }
    assert_eq!(ev[2], TransferEvent::Uploading { attempt: 2 });
    assert_eq!(
        ev[3],
        TransferEvent::Done {
            bytes: body.len() as u64
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        let parts = parse_multipart(request);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].name.as_deref(), Some("file"));
        assert_eq!(parts[0].data, body, "each try sends the whole file");
    }
}

#[tokio::test(start_paused = true)]
async fn upload_gives_up_after_the_last_retry() {
    let server = Server::start(|_, _| status(503)).await;
    let (tx, mut rx) = mpsc::channel(16);
    let err = upload_diagnostics_with(
        &untimed(),
        &server.url("/up"),
        "d.log",
        b"x".to_vec(),
        1,
        Duration::from_secs(5),
        tx,
    )
    .await
    .expect_err("always 503");
    assert_eq!(err.http_status(), Some(503));
    assert!(err.to_string().contains("2 attempts"), "{err}");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(failed_attempts(&events(&mut rx)), vec![1, 2]);
}

#[tokio::test]
async fn unreachable_server_is_a_connect_error() {
    // Bind then drop, so nothing listens on the port.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let (tx, mut rx) = mpsc::channel(16);
    let err = download(
        &format!("http://{addr}/fw.bin"),
        1,
        Duration::from_millis(10),
        1024,
        tx,
    )
    .await
    .expect_err("nothing listens");
    assert!(
        matches!(err.last(), TransferError::Connect { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert_eq!(failed_attempts(&events(&mut rx)), vec![1, 2]);
}

#[tokio::test]
async fn a_stalled_download_times_out() {
    let body = image(10_000);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::Stall {
        body: served.clone(),
        send: 4_000,
        hold: Duration::from_secs(3),
    })
    .await;
    let options = TransferOptions {
        idle_timeout: Some(Duration::from_millis(300)),
        ..TransferOptions::default()
    };
    let (tx, _rx) = mpsc::channel(16);
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        download_with(
            &options,
            &server.url("/slow.bin"),
            0,
            Duration::ZERO,
            1 << 20,
            tx,
        ),
    )
    .await
    .expect("the idle timeout ends the try")
    .expect_err("stalled");
    assert!(matches!(err, TransferError::Stalled { .. }), "{err:?}");
    assert!(err.to_string().contains("sent nothing for 0.3 s"), "{err}");
}

#[tokio::test]
async fn https_download_checks_the_certificate() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate");
    let cert_der = certified.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .expect("server config");
    let body = image(20_000);
    let served = body.clone();
    let server = Server::start_with(
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        Arc::new(move |_, _| ok(&served)),
    )
    .await;
    let url = format!("https://{}/fw.bin", server.addr);

    // Not trusted: every try fails in the TLS handshake.
    let (tx, _rx) = mpsc::channel(16);
    let err = download(&url, 0, Duration::ZERO, 1 << 20, tx)
        .await
        .expect_err("self-signed certificate is not trusted");
    assert!(matches!(err, TransferError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");

    // Trusted as an extra root.
    let options = TransferOptions {
        extra_roots_der: vec![cert_der.to_vec()],
        ..TransferOptions::default()
    };
    let (tx, _rx) = mpsc::channel(16);
    let got = download_with(&options, &url, 0, Duration::ZERO, 1 << 20, tx)
        .await
        .expect("https download");
    assert_eq!(got, body);
}

/// The charge point runs its end-to-end tests on the paused clock with the default options: a
/// transfer over loopback must not see its idle timeout fire while the server is answering.
#[tokio::test(start_paused = true)]
async fn default_timeouts_hold_on_a_paused_clock_over_loopback() {
    let body = image(200_000);
    let served = body.clone();
    let server = Server::start(move |_, _| ok(&served)).await;
    let started = Instant::now();
    for _ in 0..10 {
        let (tx, _rx) = mpsc::channel(16);
        let got = download(&server.url("/fw.bin"), 0, Duration::ZERO, 1 << 20, tx)
            .await
            .expect("download");
        assert_eq!(got, body);
        let (tx, _rx) = mpsc::channel(16);
        upload_diagnostics(
            &server.url("/up"),
            "d.log",
            body.clone(),
            0,
            Duration::ZERO,
            tx,
        )
        .await
        .expect("upload");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the paused clock jumped to a client timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 20);
}
