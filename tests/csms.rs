//! The sandbox CSMS over real WebSockets on 127.0.0.1, and `chargectl csms` as a process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use chargectl::csms::{
    AuthorizationStatus, CallError, Direction, EventKind, IdTagInfo, RegistrationStatus, Sandbox,
    SandboxHandle, SandboxOptions,
};
use chargectl::stack::rpc::{ErrorCode, Frame};
use chargectl::stack::secret::Secret;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

#[path = "common/raw_fleet.rs"]
mod raw_fleet;

const WAIT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A scripted charge point.
struct Cp {
    ws: Ws,
    next: u32,
}

struct ConnectOpts<'a> {
    subprotocol: bool,
    basic: Option<(&'a str, &'a str)>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ConnectOpts<'_> {
    fn default() -> Self {
        Self {
            subprotocol: true,
            basic: None,
            tls: None,
        }
    }
}

async fn connect_with(
    url: &str,
    opts: ConnectOpts<'_>,
) -> Result<(Cp, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if opts.subprotocol {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("ocpp1.6"),
        );
    }
    if let Some((user, password)) = opts.basic {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
    }
    let connector = opts.tls.map(Connector::Rustls);
    let (ws, response) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector),
    )
    .await
    .expect("connect timed out")?;
    Ok((Cp { ws, next: 1 }, response))
}

async fn connect(url: &str) -> Cp {
    connect_with(url, ConnectOpts::default()).await.unwrap().0
}

impl Cp {
    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).await.unwrap();
    }

    /// Next text message as JSON.
    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no message in time")
                .expect("connection ended")
                .expect("connection error");
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    /// Sends a CALL and returns the reply frame.
    async fn call(&mut self, action: &str, payload: Value) -> Value {
        let id = format!("cp-{}", self.next);
        self.next += 1;
        self.send_text(&json!([2, id, action, payload]).to_string())
            .await;
        let reply = self.recv().await;
        assert_eq!(reply[1], json!(id), "reply {reply} answers another call");
        reply
    }

    async fn boot(&mut self) -> Value {
        self.call(
            "BootNotification",
            json!({"chargePointVendor": "Zaptec", "chargePointModel": "Go"}),
        )
        .await
    }
}

async fn sandbox(opts: SandboxOptions) -> SandboxHandle {
    Sandbox::start(opts).await.unwrap()
}

#[tokio::test]
async fn boot_is_accepted_on_any_path_with_the_subprotocol() {
    let csms = sandbox(SandboxOptions::default()).await;
    let (mut cp, response) = connect_with(
        &format!("{}/ocpp/site-7/ZAP%20001", csms.url()),
        ConnectOpts::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "ocpp1.6"
    );
    let reply = cp.boot().await;
    assert_eq!(reply[0], json!(3));
    assert_eq!(reply[2]["status"], json!("Accepted"));
    assert_eq!(reply[2]["interval"], json!(300));
    assert!(reply[2]["currentTime"].as_str().unwrap().ends_with('Z'));

    let connected = csms.wait_for_connection("ZAP 001", WAIT).await.unwrap();
    match connected.kind {
        EventKind::Connected {
            path,
            subprotocol,
            basic_auth,
            tls,
            ..
        } => {
            assert_eq!(path, "/ocpp/site-7/ZAP%20001");
            assert_eq!(subprotocol.as_deref(), Some("ocpp1.6"));
            assert_eq!(basic_auth, None);
            assert!(!tls);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Exactly once, in order.
    let frames = csms.frames("ZAP 001");
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(
        matches!(&frames[0], (Direction::Received, Frame::Call { action, .. }) if action == "BootNotification")
    );
    assert!(matches!(&frames[1], (Direction::Sent, Frame::CallResult { id, .. }) if id == "cp-1"));
    assert_eq!(csms.connected(), vec!["ZAP 001".to_string()]);
    csms.shutdown().await;
}

#[tokio::test]
async fn a_missing_subprotocol_is_recorded() {
    let csms = sandbox(SandboxOptions::default()).await;
    let (mut cp, response) = connect_with(
        &format!("{}/CP2", csms.url()),
        ConnectOpts {
            subprotocol: false,
            ..ConnectOpts::default()
        },
    )
    .await
    .unwrap();
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
    cp.boot().await;
    let event = csms.wait_for_connection("CP2", WAIT).await.unwrap();
    assert!(matches!(
        event.kind,
        EventKind::Connected { subprotocol: None, ref offered_subprotocols, .. } if offered_subprotocols.is_empty()
    ));
    csms.shutdown().await;
}

#[tokio::test]
async fn basic_auth_is_recorded_without_the_password() {
    let mut passwords = HashMap::new();
    passwords.insert("CP1".to_string(), Secret::new("right-password"));
    let csms = sandbox(SandboxOptions {
        passwords,
        ..SandboxOptions::default()
    })
    .await;
    for (id, password, ok) in [
        ("CP1", "right-password", Some(true)),
        ("CP1", "wrong-password", Some(false)),
        ("CP9", "anything", None),
    ] {
        let cursor = csms.cursor();
        let (mut cp, _) = connect_with(
            &format!("{}/{id}", csms.url()),
            ConnectOpts {
                basic: Some((id, password)),
                ..ConnectOpts::default()
            },
        )
        .await
        .unwrap();
        cp.boot().await;
        let event = csms
            .wait_for_from(
                cursor,
                |e| matches!(e.kind, EventKind::Connected { .. }),
                WAIT,
            )
            .await
            .unwrap();
        match &event.kind {
            EventKind::Connected { basic_auth, .. } => {
                let seen = basic_auth.as_ref().unwrap();
                assert_eq!((seen.user.as_str(), seen.password_ok), (id, ok));
            }
            other => panic!("unexpected {other:?}"),
        }
        let debug = format!("{:?}", csms.events());
        assert!(!debug.contains(password), "password leaked into events");
        assert!(!event.to_json().to_string().contains(password));
    }
    csms.shutdown().await;
}

#[tokio::test]
async fn required_basic_auth_answers_401() {
    let mut passwords = HashMap::new();
    passwords.insert("CP1".to_string(), Secret::new("right-password"));
    let csms = sandbox(SandboxOptions {
        passwords,
        require_basic_auth: true,
        ..SandboxOptions::default()
    })
    .await;
    let url = format!("{}/CP1", csms.url());
    for basic in [None, Some(("CP1", "wrong-password"))] {
        let refused = connect_with(
            &url,
            ConnectOpts {
                basic,
                ..ConnectOpts::default()
            },
        )
        .await;
        match refused {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401);
                assert!(response.headers().get("WWW-Authenticate").is_some());
            }
            Err(other) => panic!("expected HTTP 401, got {other}"),
            Ok(_) => panic!("expected HTTP 401, the handshake succeeded"),
        }
    }
    let refusals = csms
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Refused { status: 401, .. }))
        .count();
    assert_eq!(refusals, 2);
    let (mut cp, _) = connect_with(
        &url,
        ConnectOpts {
            basic: Some(("CP1", "right-password")),
            ..ConnectOpts::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(cp.boot().await[2]["status"], json!("Accepted"));
    csms.shutdown().await;
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_der = certified.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
    let csms = sandbox(SandboxOptions {
        tls: Some(Arc::new(server)),
        ..SandboxOptions::default()
    })
    .await;
    assert!(csms.url().starts_with("wss://127.0.0.1:"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (mut cp, _) = connect_with(
        &format!("{}/CPTLS", csms.url()),
        ConnectOpts {
            tls: Some(Arc::new(client)),
            ..ConnectOpts::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(cp.boot().await[2]["status"], json!("Accepted"));
    let event = csms.wait_for_connection("CPTLS", WAIT).await.unwrap();
    assert!(matches!(event.kind, EventKind::Connected { tls: true, .. }));
    cp.ws
        .close(Some(tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    let gone = csms
        .wait_for(|e| matches!(e.kind, EventKind::Disconnected { .. }), WAIT)
        .await
        .unwrap();
    assert!(
        matches!(&gone.kind, EventKind::Disconnected { reason, .. } if reason == "closed by the charge point (code 1000: bye)"),
        "{gone:?}"
    );
    csms.shutdown().await;
}

#[tokio::test]
async fn calls_the_charge_point_and_times_out_without_an_answer() {
    let csms = sandbox(SandboxOptions::default()).await;
    let mut cp = connect(&format!("{}/CP1", csms.url())).await;
    cp.boot().await;
    assert_eq!(
        csms.call("NOPE", "Reset", json!({"type": "Soft"})).await,
        Err(CallError::NotConnected {
            cp_id: "NOPE".into()
        })
    );

    let handle = csms.clone();
    let call = tokio::spawn(async move {
        handle
            .call(
                "CP1",
                "ChangeConfiguration",
                json!({"key": "HeartbeatInterval", "value": "60"}),
            )
            .await
    });
    let request = cp.recv().await;
    assert_eq!(request[0], json!(2));
    assert_eq!(request[2], json!("ChangeConfiguration"));
    assert_eq!(request[3]["key"], json!("HeartbeatInterval"));
    cp.send_text(&json!([3, request[1], {"status": "Accepted"}]).to_string())
        .await;
    assert_eq!(call.await.unwrap(), Ok(json!({"status": "Accepted"})));

    // A CALLERROR answer.
    let handle = csms.clone();
    let call =
        tokio::spawn(async move { handle.call("CP1", "Reset", json!({"type": "Hard"})).await });
    let request = cp.recv().await;
    cp.send_text(&json!([4, request[1], "NotSupported", "no", {}]).to_string())
        .await;
    match call.await.unwrap() {
        Err(CallError::Rejected { error, action, .. }) => {
            assert_eq!(
                (error.code, action.as_str()),
                (ErrorCode::NotSupported, "Reset")
            )
        }
        other => panic!("unexpected {other:?}"),
    }

    // No answer: the call times out, and the late answer is logged but harmless.
    let result = csms
        .call_with_timeout(
            "CP1",
            "TriggerMessage",
            json!({"requestedMessage": "Heartbeat"}),
            Duration::from_millis(300),
        )
        .await;
    assert!(
        matches!(result, Err(CallError::Timeout { ref action, .. }) if action == "TriggerMessage"),
        "{result:?}"
    );
    let request = cp.recv().await;
    cp.send_text(&json!([3, request[1], {"status": "Accepted"}]).to_string())
        .await;
    let late = csms
        .wait_for(
            |e| {
                matches!(&e.kind, EventKind::Received { frame: Frame::CallResult { .. }, action: Some(a), .. } if a == "TriggerMessage")
            },
            WAIT,
        )
        .await;
    assert!(late.is_ok());
    // Still serving.
    assert_eq!(cp.call("Heartbeat", json!({})).await[0], json!(3));
    csms.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_a_restart_takes_the_same_port() {
    let csms = sandbox(SandboxOptions {
        first_transaction_id: 100,
        ..SandboxOptions::default()
    })
    .await;
    let addr = csms.local_addr();
    let mut cp = connect(&format!("{}/CP1", csms.url())).await;
    cp.boot().await;
    let start = json!({"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"});
    assert_eq!(
        cp.call("StartTransaction", start.clone()).await[2]["transactionId"],
        json!(100)
    );
    csms.shutdown().await;
    // The charge point sees a close frame (1001) and then the end of the stream.
    let mut saw_close = false;
    while let Ok(Some(msg)) = tokio::time::timeout(WAIT, cp.ws.next()).await {
        match msg {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode::Away);
                saw_close = true;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(saw_close);
    assert!(
        csms.wait_for(|e| matches!(e.kind, EventKind::Disconnected { .. }), WAIT)
            .await
            .is_ok()
    );

    let again = sandbox(SandboxOptions {
        listen: addr,
        first_transaction_id: csms.peek_transaction_id(),
        ..SandboxOptions::default()
    })
    .await;
    assert_eq!(again.local_addr(), addr);
    let mut cp = connect(&format!("{}/CP1", again.url())).await;
    cp.boot().await;
    assert_eq!(
        cp.call("StartTransaction", start).await[2]["transactionId"],
        json!(101)
    );
    again.shutdown().await;
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let csms = sandbox(SandboxOptions::default()).await;
    let err = Sandbox::start(SandboxOptions {
        listen: csms.local_addr(),
        ..SandboxOptions::default()
    })
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("already in use"), "{err}");
    csms.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_get_a_callerror_and_the_server_keeps_serving() {
    let csms = sandbox(SandboxOptions::default()).await;
    let mut cp = connect(&format!("{}/CP1", csms.url())).await;
    cp.send_text("this is not json").await;
    let reply = cp.recv().await;
    assert_eq!(reply[0], json!(4));
    assert_eq!(reply[1], json!("-1"));
    assert_eq!(reply[2], json!("FormationViolation"));

    cp.send_text(r#"[2,"m1","Heartbeat"]"#).await;
    let reply = cp.recv().await;
    assert_eq!(
        (&reply[1], &reply[2]),
        (&json!("m1"), &json!("ProtocolError"))
    );

    let reply = cp.call("FlyToTheMoon", json!({})).await;
    assert_eq!(reply[2], json!("NotImplemented"));
    // A security whitepaper action is recognised but not supported (OCPP-J 4.2.3).
    let reply = cp.call("SignCertificate", json!({"csr": "x"})).await;
    assert_eq!(reply[2], json!("NotSupported"));

    let reply = cp
        .call("BootNotification", json!({"chargePointVendor": "Zaptec"}))
        .await;
    assert_eq!(reply[2], json!("OccurenceConstraintViolation"));
    assert!(reply[3].as_str().unwrap().contains("chargePointModel"));

    assert_eq!(cp.boot().await[2]["status"], json!("Accepted"));
    let invalid = csms
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Invalid { .. }))
        .count();
    assert_eq!(invalid, 2);
    csms.shutdown().await;
}

#[tokio::test]
async fn the_policy_scripts_answers() {
    let csms = sandbox(SandboxOptions::default()).await;
    csms.update_policy(|p| {
        p.boot_status = RegistrationStatus::Pending;
        p.heartbeat_interval = 5;
        p.unanswered.insert("Heartbeat".into());
        p.call_errors.insert(
            "MeterValues".into(),
            (ErrorCode::InternalError, "database down".into()),
        );
        p.id_tags.insert(
            "BAD".into(),
            IdTagInfo::with_status(AuthorizationStatus::Invalid),
        );
        p.delays
            .insert("DataTransfer".into(), Duration::from_millis(50));
    });
    let mut cp = connect(&format!("{}/CP1", csms.url())).await;
    let boot = cp.boot().await;
    assert_eq!(
        (&boot[2]["status"], &boot[2]["interval"]),
        (&json!("Pending"), &json!(5))
    );

    // Heartbeat is never answered: the next reply is the Authorize one.
    cp.send_text(r#"[2,"hb","Heartbeat",{}]"#).await;
    let reply = cp.call("Authorize", json!({"idTag": "BAD"})).await;
    assert_eq!(reply[2]["idTagInfo"]["status"], json!("Invalid"));
    let reply = cp.call("Authorize", json!({"idTag": "GOOD"})).await;
    assert_eq!(reply[2]["idTagInfo"]["status"], json!("Accepted"));

    let reply = cp
        .call("MeterValues", json!({"connectorId": 1, "meterValue": []}))
        .await;
    assert_eq!((&reply[0], &reply[2]), (&json!(4), &json!("InternalError")));

    let reply = cp
        .call("DataTransfer", json!({"vendorId": "com.zaptec"}))
        .await;
    assert_eq!(reply[2]["status"], json!("UnknownVendorId"));

    // Back to normal.
    csms.update_policy(|p| p.unanswered.clear());
    assert_eq!(cp.call("Heartbeat", json!({})).await[0], json!(3));
    assert_eq!(csms.calls_from("CP1", "Heartbeat").len(), 2);
    csms.shutdown().await;
}

#[tokio::test]
async fn a_new_connection_with_the_same_id_replaces_the_old_one() {
    let csms = sandbox(SandboxOptions::default()).await;
    let mut first = connect(&format!("{}/CP1", csms.url())).await;
    first.boot().await;
    let mut second = connect(&format!("{}/CP1", csms.url())).await;
    second.boot().await;
    csms.wait_for(
        |e| matches!(&e.kind, EventKind::Disconnected { reason, .. } if reason.contains("replaced")),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(csms.connected(), vec!["CP1".to_string()]);
    // Calls go to the new connection.
    let handle = csms.clone();
    let call = tokio::spawn(async move { handle.call("CP1", "ClearCache", json!({})).await });
    let request = second.recv().await;
    second
        .send_text(&json!([3, request[1], {"status": "Accepted"}]).to_string())
        .await;
    assert_eq!(call.await.unwrap(), Ok(json!({"status": "Accepted"})));
    drop(first);
    csms.shutdown().await;
}

mod binary {
    use super::*;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::Command;

    /// Kills the child if the test fails half-way.
    struct Child(tokio::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.start_kill();
        }
    }

    type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

    /// `chargectl csms --listen 127.0.0.1:0 --json ARGS` and its stdout.
    fn csms_json(args: &[&str]) -> (Child, Lines) {
        let mut child = Child(
            Command::new(env!("CARGO_BIN_EXE_chargectl"))
                .args(["csms", "--listen", "127.0.0.1:0", "--json"])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        (child, BufReader::new(stdout).lines())
    }

    async fn next_json(lines: &mut Lines) -> Value {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("no output in time")
            .unwrap()
            .expect("stdout ended");
        serde_json::from_str(&line).unwrap()
    }

    #[tokio::test]
    async fn csms_command_prints_json_lines() {
        let (mut child, mut lines) = csms_json(&[]);
        let mut next = async || next_json(&mut lines).await;
        let listening = next().await;
        assert_eq!(listening["type"], json!("listening"));
        let url = listening["data"]["url"].as_str().unwrap().to_string();

        let mut cp = connect(&format!("{url}/CP-BIN")).await;
        cp.boot().await;
        cp.call("Heartbeat", json!({})).await;

        let connected = next().await;
        assert_eq!(connected["type"], json!("connected"));
        assert_eq!(connected["data"]["cp_id"], json!("CP-BIN"));
        assert_eq!(connected["data"]["subprotocol"], json!("ocpp1.6"));
        let expected = [
            ("received", "Call", "BootNotification"),
            ("sent", "CallResult", "BootNotification"),
            ("received", "Call", "Heartbeat"),
            ("sent", "CallResult", "Heartbeat"),
        ];
        for (direction, kind, action) in expected {
            let line = next().await;
            assert_eq!(line["type"], json!("message"), "{line}");
            assert_eq!(line["data"]["direction"], json!(direction), "{line}");
            assert_eq!(line["data"]["message_type"], json!(kind), "{line}");
            assert_eq!(line["data"]["action"], json!(action), "{line}");
        }
        drop(cp);
        let disconnected = next().await;
        assert_eq!(disconnected["type"], json!("disconnected"));
        child.0.kill().await.unwrap();
    }

    #[tokio::test]
    async fn csms_command_summary_counts_instead_of_printing_frames() {
        let (mut child, mut lines) = csms_json(&["--summary"]);
        let mut next = async || next_json(&mut lines).await;
        let listening = next().await;
        assert_eq!(listening["type"], json!("listening"));
        assert!(listening["data"]["max_charge_points"].as_u64().unwrap() > 0);
        let url = listening["data"]["url"].as_str().unwrap().to_string();
        let mut cps = Vec::new();
        for n in 0..3 {
            let mut cp = connect(&format!("{url}/SUM{n}")).await;
            assert_eq!(cp.boot().await[2]["status"], json!("Accepted"));
            cps.push(cp);
        }
        // Only summaries follow, once a second, until they count all three.
        let summary = loop {
            let line = next().await;
            assert_eq!(line["type"], json!("summary"), "{line}");
            if line["data"]["booted"] == json!(3) {
                break line;
            }
        };
        assert_eq!(summary["data"]["connected"], json!(3));
        assert_eq!(summary["data"]["messages_received"], json!(3));
        assert_eq!(summary["data"]["messages_sent"], json!(3));
        child.0.kill().await.unwrap();
    }

    #[tokio::test]
    async fn csms_command_on_a_busy_address_exits_3() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap().to_string();
        let output = tokio::time::timeout(
            WAIT,
            Command::new(env!("CARGO_BIN_EXE_chargectl"))
                .args(["csms", "--listen", &addr])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(output.status.code(), Some(3));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("already in use"), "{stderr}");
    }
}

/// The third-party peers in tests/interop (installed by tests/interop/setup.sh), driven by a
/// tiny scripted charge point, so they are known to work before the emulator meets them.
mod peers {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::Command;

    fn interop_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
    }

    fn python() -> Option<PathBuf> {
        let venv = std::env::var_os("CHARGECTL_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
        let python = venv.join("bin/python");
        if python.exists() {
            Some(python)
        } else {
            eprintln!(
                "skipped: no Python venv at {} (run tests/interop/setup.sh)",
                venv.display()
            );
            None
        }
    }

    fn node() -> Option<PathBuf> {
        if !interop_dir().join("node_modules/ocpp-rpc").exists() {
            eprintln!("skipped: ocpp-rpc is not installed (run tests/interop/setup.sh)");
            return None;
        }
        Some(PathBuf::from("node"))
    }

    /// Starts a peer on a free port; returns it with its URL.
    async fn start_peer(
        program: &Path,
        script: &str,
        scenario: &str,
        report: &Path,
    ) -> (tokio::process::Child, String) {
        let mut child = Command::new(program)
            .arg(interop_dir().join(script))
            .args(["--port", "0", "--timeout", "30", "--scenario"])
            .arg(interop_dir().join("scenarios").join(scenario))
            .arg("--report")
            .arg(report)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("peer did not start in time")
            .unwrap()
            .expect("peer printed nothing");
        let listening: Value = serde_json::from_str(&line).unwrap();
        let port = listening["listening"].as_u64().unwrap();
        (child, format!("ws://127.0.0.1:{port}"))
    }

    /// Sends every charge point message the sandbox answers, checks each is answered with a
    /// CALLRESULT, then serves the peer's CALLs until it closes the connection.
    async fn play_charge_point(cp: &mut Cp) {
        let now = "2026-03-01T10:00:00Z";
        let calls = [
            (
                "BootNotification",
                json!({"chargePointVendor": "Zaptec", "chargePointModel": "Go", "firmwareVersion": "1.2.3"}),
            ),
            (
                "StatusNotification",
                json!({"connectorId": 0, "errorCode": "NoError", "status": "Available"}),
            ),
            ("Heartbeat", json!({})),
            ("Authorize", json!({"idTag": "TAG1"})),
            (
                "StartTransaction",
                json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": now}),
            ),
            (
                "MeterValues",
                json!({"connectorId": 1, "transactionId": 1, "meterValue": [{"timestamp": now, "sampledValue": [{"value": "10", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}),
            ),
            (
                "StopTransaction",
                json!({"meterStop": 10, "timestamp": now, "transactionId": 1, "idTag": "TAG1", "reason": "Local"}),
            ),
            ("DataTransfer", json!({"vendorId": "com.zaptec"})),
            ("FirmwareStatusNotification", json!({"status": "Idle"})),
            ("DiagnosticsStatusNotification", json!({"status": "Idle"})),
        ];
        let mut pending_calls = Vec::new();
        for (action, payload) in calls {
            let id = format!("cp-{}", cp.next);
            cp.next += 1;
            cp.send_text(&json!([2, id, action, payload]).to_string())
                .await;
            // The peer may send its own CALLs as soon as the boot is answered.
            loop {
                let msg = cp.recv().await;
                if msg[0] == json!(2) {
                    pending_calls.push(msg);
                    continue;
                }
                assert_eq!(msg[1], json!(id));
                assert_eq!(msg[0], json!(3), "{action} answered {msg}");
                break;
            }
        }
        let mut heartbeat_interval = "300".to_string();
        loop {
            let msg = match pending_calls.pop() {
                Some(m) => m,
                None => match tokio::time::timeout(WAIT, cp.ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(t.as_str()).unwrap(),
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
                    Ok(Some(Ok(_))) => continue,
                    Err(_) => panic!("the peer neither called nor closed"),
                },
            };
            if msg[0] != json!(2) {
                continue;
            }
            let id = msg[1].clone();
            let reply = match msg[2].as_str().unwrap() {
                "ChangeConfiguration" => {
                    heartbeat_interval = msg[3]["value"].as_str().unwrap().to_string();
                    cp.send_text(&json!([3, id, {"status": "Accepted"}]).to_string())
                        .await;
                    json!([2, "cp-status", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}])
                }
                "GetConfiguration" => {
                    json!([3, id, {"configurationKey": [{"key": "HeartbeatInterval", "readonly": false, "value": heartbeat_interval}]}])
                }
                "Reset" => json!([4, id, "NotSupported", "no reset here", {}]),
                other => json!([4, id, "NotImplemented", other, {}]),
            };
            cp.send_text(&reply.to_string()).await;
        }
    }

    async fn smoke(program: PathBuf, script: &str) {
        let dir = tempfile::tempdir().unwrap();
        let report_path = dir.path().join("report.json");
        let (mut child, url) = start_peer(&program, script, "smoke.json", &report_path).await;
        let mut cp = connect(&format!("{url}/ocpp/SMOKE-1")).await;
        play_charge_point(&mut cp).await;
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("peer did not stop")
            .unwrap();
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
        assert!(status.success(), "{script} failed: {report:#}");
        assert_eq!(report["ok"], json!(true));
        assert_eq!(report["charge_point"], json!("SMOKE-1"));
        assert_eq!(report["subprotocol"], json!("ocpp1.6"));
        assert_eq!(report["steps"].as_array().unwrap().len(), 4);
        let messages = report["messages"].as_array().unwrap();
        let boot_answer = messages
            .iter()
            .find(|m| m["direction"] == "sent" && m["action"] == "BootNotification")
            .unwrap();
        assert_eq!(boot_answer["payload"]["status"], json!("Accepted"));
        let tx = messages
            .iter()
            .find(|m| m["direction"] == "sent" && m["action"] == "StartTransaction")
            .unwrap();
        assert_eq!(tx["payload"]["transactionId"], json!(1));
    }

    /// Validation stays on: a schema-invalid StatusNotification fails the run.
    async fn rejects_invalid(program: PathBuf, script: &str) {
        let dir = tempfile::tempdir().unwrap();
        let report_path = dir.path().join("report.json");
        let (mut child, url) =
            start_peer(&program, script, "invalid_status.json", &report_path).await;
        let mut cp = connect(&format!("{url}/BAD-1")).await;
        assert_eq!(cp.boot().await[0], json!(3));
        cp.send_text(
            r#"[2,"bad-1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Charging2"}]"#,
        )
        .await;
        let reply = tokio::time::timeout(WAIT, cp.ws.next()).await;
        cp.send_text(r#"[2,"hb-1","Heartbeat",{}]"#).await;
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("peer did not stop")
            .unwrap();
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
        let reply = match reply {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
            other => panic!("no answer to the invalid StatusNotification: {other:?}; {report:#}"),
        };
        assert_eq!(
            reply[0],
            json!(4),
            "{script} accepted an invalid status: {reply}"
        );
        assert_eq!(status.code(), Some(1), "{report:#}");
        assert_eq!(report["ok"], json!(false));
        assert!(!report["validation_errors"].as_array().unwrap().is_empty());
        assert_eq!(report["steps"][0]["ok"], json!(true));
    }

    #[tokio::test]
    async fn python_ocpp_peer_runs_a_scenario() {
        if let Some(python) = python() {
            smoke(python, "ocpp_csms.py").await;
        }
    }

    #[tokio::test]
    async fn python_ocpp_peer_rejects_invalid_messages() {
        if let Some(python) = python() {
            rejects_invalid(python, "ocpp_csms.py").await;
        }
    }

    #[tokio::test]
    async fn ocpp_rpc_peer_runs_a_scenario() {
        if let Some(node) = node() {
            smoke(node, "ocpp_rpc_csms.js").await;
        }
    }

    #[tokio::test]
    async fn ocpp_rpc_peer_rejects_invalid_messages() {
        if let Some(node) = node() {
            rejects_invalid(node, "ocpp_rpc_csms.js").await;
        }
    }
}

#[test]
fn human_lines_show_time_id_direction_action_and_payload() {
    use chargectl::cli::commands::csms::human_line;
    use chargectl::csms::CsmsEvent;
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00.250Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let received = CsmsEvent {
        at,
        kind: EventKind::Received {
            cp_id: "CP1".into(),
            frame: Frame::Call {
                id: "1".into(),
                action: "Heartbeat".into(),
                payload: json!({}),
            },
            action: Some("Heartbeat".into()),
        },
    };
    assert_eq!(
        human_line(&received),
        "10:00:00.250  CP1  <-  Heartbeat  {}"
    );
    let sent = CsmsEvent {
        at,
        kind: EventKind::Sent {
            cp_id: "CP1".into(),
            frame: Frame::CallResult {
                id: "1".into(),
                payload: json!({"currentTime": "2026-03-01T10:00:00.250Z"}),
            },
            action: Some("Heartbeat".into()),
        },
    };
    assert_eq!(
        human_line(&sent),
        r#"10:00:00.250  CP1  ->  Heartbeat result  {"currentTime":"2026-03-01T10:00:00.250Z"}"#
    );
}

#[tokio::test]
async fn disconnect_closes_one_charge_point() {
    let csms = sandbox(SandboxOptions::default()).await;
    let mut one = connect(&format!("{}/CP1", csms.url())).await;
    let mut two = connect(&format!("{}/CP2", csms.url())).await;
    one.boot().await;
    two.boot().await;
    assert!(!csms.disconnect("NOPE").await);
    assert!(csms.disconnect("CP1").await);
    let mut code = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(WAIT, one.ws.next()).await {
        if let Message::Close(Some(frame)) = msg {
            code = Some(frame.code);
        }
    }
    assert_eq!(code, Some(CloseCode::Normal));
    csms.wait_for(
        |e| matches!(&e.kind, EventKind::Disconnected { cp_id, .. } if cp_id == "CP1"),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(csms.connected(), vec!["CP2".to_string()]);
    assert_eq!(two.call("Heartbeat", json!({})).await[0], json!(3));
    csms.shutdown().await;
}

/// A boot storm: 500 raw charge points connect at once, each boots, reports its status, sends a
/// Heartbeat and a short transaction. Every one is Accepted and counted; with frames only
/// counted, the event log holds the connections and no frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_storm_of_500_charge_points_is_accepted_and_counted() {
    const N: usize = 500;
    chargectl::csms::raise_open_file_limit();
    let csms = sandbox(SandboxOptions {
        record_frames: false,
        first_transaction_id: 1000,
        ..SandboxOptions::default()
    })
    .await;
    let plan = raw_fleet::FleetPlan {
        url: csms.url(),
        count: N,
        id_prefix: "STORM".into(),
        transaction: true,
        timeout: Duration::from_secs(60),
    };
    let (outcomes, cps) = raw_fleet::boot_storm(&plan).await;
    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.error.clone()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(outcomes.iter().all(|o| o.boot_status == "Accepted"));
    assert!(outcomes.iter().all(|o| o.results == 5));
    assert_eq!(cps.len(), N);

    // A frame is counted once its write returns, which can be just after the charge point
    // has read it: wait (bounded) for the last counts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while csms.stats().frames_sent < 5 * N as u64 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = csms.stats();
    assert_eq!(stats.connected, N as u64);
    assert_eq!(stats.connections, N as u64);
    assert_eq!(stats.boots_accepted, N as u64);
    assert_eq!(stats.boots_not_accepted, 0);
    assert_eq!(stats.frames_received, 5 * N as u64);
    assert_eq!(stats.frames_sent, 5 * N as u64);
    assert_eq!((stats.invalid, stats.call_errors_sent), (0, 0));
    // Every StartTransaction got its own id.
    assert_eq!(csms.peek_transaction_id(), 1000 + N as i64);
    let mut connected: Vec<String> = csms.connected();
    connected.dedup();
    assert_eq!(connected.len(), N);
    // Connections are recorded, frames are not.
    let events = csms.events();
    let connects = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Connected { .. }))
        .count();
    assert_eq!(connects, N);
    assert!(events.iter().all(|e| e.frame().is_none()));

    drop(cps);
    tokio::time::timeout(WAIT, csms.shutdown())
        .await
        .expect("the sandbox stops with every connection closed");
}
