//! Firmware download and diagnostics upload against a real HTTP/1.1 server on 127.0.0.1.
//!
//! The server is hand-written over `tokio::net::TcpListener` so a test can script each answer:
//! cut a body halfway, answer 404 or 500, stall, serve byte ranges. Retry waits run on tokio's
//! paused clock with the client's own timeouts switched off (a pending timeout would fire as
//! soon as the paused runtime waits on I/O); the timeout itself is tested on the real clock with
//! a short limit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/http_server.rs"]
mod http_server;

use base64::Engine;
use chargectl::stack::transfer::{
    self, TransferError, TransferEvent, TransferOptions, download, download_with,
    upload_diagnostics, upload_diagnostics_with,
};
use http_server::{Reply, Server, ok, parse_multipart, status};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
                body: served.clone(),
                send: half,
            }
            .with_headers(validators),
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
                    body: served[from..].to_vec(),
                }
                .with_headers(headers)
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
                body: served.clone(),
                send: 1000,
            }
            .with_headers(headers)
        } else {
            // The file changed (If-Range failed): the whole new body with 200.
            Reply::Full {
                status: 200,
                body: served.clone(),
            }
            .with_headers(headers)
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
