//! Why a connection to the CSMS failed, as a typed kind, against real loopback servers: an
//! unresolvable host, an unused port, a full listen queue, a listener that never answers, HTTP
//! 401 and 404 to the upgrade, a WebSocket server without the `ocpp1.6` subprotocol, a "TLS"
//! server answering garbage, a server that does not speak HTTP, and a bad URL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use chargectl::stack::connection::{self, Backoff, ConnCtl, ConnEvent, FailedAttempt};
use chargectl::stack::secret::SecretBytes;
use chargectl::stack::transport::{self, ConnectFailure, Endpoint};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(2);

fn endpoint(url: &str) -> Endpoint {
    Endpoint {
        csms_url: url.to_string(),
        charge_point_id: "CP1".to_string(),
        security_profile: 0,
        basic_password_bytes: None,
    }
}

/// The failure of one connection attempt to `url`: kind, message, HTTP status.
async fn failure(url: &str) -> (ConnectFailure, String, Option<u16>) {
    match transport::connect(&endpoint(url), TIMEOUT).await {
        Ok(_) => panic!("{url}: the connection succeeded"),
        Err(e) => (e.kind(), e.to_string(), e.http_status()),
    }
}

/// A server that answers every connection with `reply` after reading the request.
async fn answering(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(reply).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_bad_url_is_reported_as_such() {
    for url in ["http://127.0.0.1:9", "ws://", "ftp://x", "ws://exa mple/"] {
        let (kind, text, _) = failure(url).await;
        assert_eq!(kind, ConnectFailure::BadUrl, "{url}: {text}");
    }
    let (kind, text, _) = failure("ws://user:hunter2@127.0.0.1:bad/").await;
    assert_eq!(kind, ConnectFailure::BadUrl, "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn an_unresolvable_host_is_a_dns_failure() {
    let (kind, text, _) = failure("ws://no-such-csms.invalid:9000/ocpp").await;
    assert_eq!(kind, ConnectFailure::Dns, "{text}");
    assert!(text.contains("no-such-csms.invalid"), "{text}");
}

#[tokio::test]
async fn an_unused_port_is_tcp_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (kind, text, _) = failure(&format!("ws://{addr}/ocpp")).await;
    assert_eq!(kind, ConnectFailure::TcpRefused, "{text}");
}

#[tokio::test]
async fn a_full_listen_queue_is_a_tcp_timeout() {
    // A listen queue of one, filled by connections nobody accepts: further SYNs are dropped, so
    // the TCP handshake itself never completes.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("filling the listen queue: {e}"),
            Err(_) => break,
        }
        assert!(fillers.len() < 64, "the listen queue never filled up");
    }
    let (kind, text, _) = failure(&format!("ws://{addr}/ocpp")).await;
    assert_eq!(kind, ConnectFailure::TcpTimeout, "{text}");
    drop(listener);
}

#[tokio::test]
async fn a_listener_that_never_answers_is_a_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            conns.push(tcp);
        }
    });
    let (kind, text, _) = failure(&format!("ws://{addr}/ocpp")).await;
    assert_eq!(kind, ConnectFailure::HandshakeTimeout, "{text}");
    assert!(text.contains("WebSocket"), "{text}");
    held.abort();
}

#[tokio::test]
async fn http_401_and_404_to_the_upgrade_carry_their_status() {
    let unauthorized = answering(
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"OCPP\"\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let (kind, text, status) = failure(&format!("ws://{unauthorized}/ocpp")).await;
    assert_eq!(
        (kind, status),
        (ConnectFailure::HttpStatus, Some(401)),
        "{text}"
    );
    assert!(
        text.contains("401") && text.contains("AuthorizationKey"),
        "{text}"
    );
    let not_found = answering(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
    let (kind, text, status) = failure(&format!("ws://{not_found}/ocpp")).await;
    assert_eq!(
        (kind, status),
        (ConnectFailure::HttpStatus, Some(404)),
        "{text}"
    );
    assert!(
        text.contains("404") && text.contains("charge point id"),
        "{text}"
    );
}

#[tokio::test]
async fn a_websocket_server_without_the_subprotocol_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                // A plain WebSocket server: it ignores the offered subprotocol.
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    use futures_util::StreamExt;
                    while ws.next().await.is_some() {}
                }
            });
        }
    });
    let (kind, text, _) = failure(&format!("ws://{addr}/ocpp")).await;
    assert_eq!(kind, ConnectFailure::Subprotocol, "{text}");
}

#[tokio::test]
async fn garbage_instead_of_tls_is_a_tls_failure() {
    let addr = answering(b"this is not a TLS server hello, not even close\r\n\r\n").await;
    let (kind, text, _) = failure(&format!("wss://{addr}/ocpp")).await;
    assert_eq!(kind, ConnectFailure::Tls, "{text}");
}

#[tokio::test]
async fn a_server_that_does_not_speak_http_is_a_handshake_failure() {
    let addr = answering(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let (kind, text, _) = failure(&format!("ws://{addr}/ocpp")).await;
    assert_eq!(kind, ConnectFailure::Handshake, "{text}");
}

#[tokio::test]
async fn the_connection_task_reports_the_kind_of_each_failed_attempt() {
    let addr = answering(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").await;
    let (ctl_tx, ctl_rx) = mpsc::channel(8);
    let (ev_tx, mut ev_rx) = mpsc::channel(8);
    let (_out_tx, out_rx) = mpsc::channel(8);
    let task = tokio::spawn(connection::run(
        ctl_rx,
        ev_tx,
        out_rx,
        Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
        },
        TIMEOUT,
    ));
    let mut ep = endpoint(&format!("ws://{addr}/ocpp"));
    ep.security_profile = 1;
    ep.basic_password_bytes = Some(SecretBytes::new(b"0123456789abcdef".to_vec()));
    ctl_tx
        .send(ConnCtl::Connect {
            endpoint: Box::new(ep),
            ping_interval: Duration::ZERO,
        })
        .await
        .unwrap();
    for attempt in 1..=2 {
        let ev = tokio::time::timeout(Duration::from_secs(10), ev_rx.recv())
            .await
            .expect("an event in time")
            .expect("the task runs");
        match ev {
            ConnEvent::ConnectFailed(failed) => {
                let FailedAttempt {
                    error,
                    kind,
                    http_status,
                    auth_failure,
                    attempt: n,
                    ..
                } = *failed;
                assert_eq!(n, attempt);
                assert_eq!(kind, ConnectFailure::HttpStatus);
                assert_eq!(http_status, Some(401));
                assert!(auth_failure);
                assert!(!error.contains("0123456789abcdef"), "{error}");
                assert_eq!(serde_json::to_value(kind).unwrap(), "http_status");
            }
            other => panic!("expected a failed attempt, got {other:?}"),
        }
    }
    drop(ctl_tx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task ends when its control channel closes")
        .unwrap();
}

#[tokio::test]
async fn the_charge_points_connection_event_carries_the_kind_and_the_http_status() {
    use chargectl::emulator::{BootSettings, Emulator};
    use chargectl::stack::chargepoint::{ConnectionState, Event};
    let refused = answering(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
    let unused = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    for (addr, kind, status) in [
        (refused, "http_status", Some(404u16)),
        (unused, "tcp_refused", None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let settings = BootSettings {
            csms_url: Some(format!("ws://{addr}/ocpp")),
            charge_point_id: Some("CP1".into()),
            ..BootSettings::default()
        };
        let emu = Emulator::start(dir.path(), &settings).await.unwrap();
        let mut events = emu.handle.subscribe_from_start();
        let failed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let ev = events.recv().await.expect("events flow");
                if let Event::Connection {
                    state: ConnectionState::Failed,
                    ..
                } = &ev
                {
                    return ev;
                }
            }
        })
        .await
        .expect("a failed attempt in time");
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(v["data"]["state"], "failed", "{v}");
        assert_eq!(v["data"]["failure"], kind, "{v}");
        assert_eq!(
            v["data"]["http_status"].as_u64(),
            status.map(u64::from),
            "{v}"
        );
        assert_eq!(
            v["data"].get("http_status").is_some(),
            status.is_some(),
            "http_status only for a refused upgrade: {v}"
        );
        assert!(v["data"]["detail"].is_string(), "the text stays: {v}");
        emu.shutdown().await.unwrap();
    }
}
