//! A scripted HTTP/1.1 server on 127.0.0.1 (plain or TLS) for firmware download and diagnostics
//! upload tests. Written over `tokio::net::TcpListener` so a test can script each answer: a
//! whole body, a body cut short, a 404 or 500, a stall, byte ranges. Every request is recorded.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the server answers one request.
pub enum Reply {
    /// A complete answer with Content-Length.
    Full { status: u16, body: Vec<u8> },
    /// Announces `body.len()` bytes but sends only the first `send`, then closes.
    Cut { body: Vec<u8>, send: usize },
    /// A 200 without Content-Length whose body ends when the connection closes.
    CloseDelimited { body: Vec<u8> },
    /// Headers and the first `send` bytes, then silence for `hold` before closing.
    Stall {
        body: Vec<u8>,
        send: usize,
        hold: Duration,
    },
    /// Another reply with these response headers added.
    WithHeaders {
        headers: Vec<(&'static str, String)>,
        reply: Box<Reply>,
    },
}

impl Reply {
    pub fn with_headers(self, headers: Vec<(&'static str, String)>) -> Reply {
        Reply::WithHeaders {
            headers,
            reply: Box::new(self),
        }
    }
}

/// 200 with this body.
pub fn ok(body: &[u8]) -> Reply {
    Reply::Full {
        status: 200,
        body: body.to_vec(),
    }
}

/// This status with a short text body.
pub fn status(code: u16) -> Reply {
    Reply::Full {
        status: code,
        body: format!("status {code}\n").into_bytes(),
    }
}

type Handler = Arc<dyn Fn(usize, &Request) -> Reply + Send + Sync>;

pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves plain HTTP; `handler` gets the request's index (from 0) and the request.
    pub async fn start(
        handler: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Self::start_with(None, Arc::new(handler)).await
    }

    /// Serves HTTPS when `tls` is given.
    pub async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>, handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
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

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn head(status: u16, headers: &[(&'static str, String)], length: Option<usize>) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} Test\r\nConnection: close\r\n");
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
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
    let mut reply = handler(index, &request);
    let mut headers = Vec::new();
    while let Reply::WithHeaders {
        headers: more,
        reply: inner,
    } = reply
    {
        headers.extend(more);
        reply = *inner;
    }
    let _ = match reply {
        Reply::Full { status, body } => {
            let mut out = head(status, &headers, Some(body.len()));
            out.extend_from_slice(&body);
            stream.write_all(&out).await
        }
        Reply::Cut { body, send } => {
            let mut out = head(200, &headers, Some(body.len()));
            out.extend_from_slice(&body[..send]);
            stream.write_all(&out).await
        }
        Reply::CloseDelimited { body } => {
            let mut out = head(200, &headers, None);
            out.extend_from_slice(&body);
            stream.write_all(&out).await
        }
        Reply::Stall { body, send, hold } => {
            let mut out = head(200, &headers, Some(body.len()));
            out.extend_from_slice(&body[..send]);
            let written = stream.write_all(&out).await;
            let _ = stream.flush().await;
            tokio::time::sleep(hold).await;
            written
        }
        Reply::WithHeaders { .. } => Ok(()),
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
pub struct FormPart {
    pub name: Option<String>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

fn disposition_param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts of a multipart/form-data request body; panics when the body is not one.
pub fn parse_multipart(request: &Request) -> Vec<FormPart> {
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
