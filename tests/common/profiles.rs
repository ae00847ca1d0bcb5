//! A scripted HTTP/1.1 server on 127.0.0.1 for the Firmware Management scenarios: each request
//! is recorded and answered as the test's handler says (a whole body, or a body cut short).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

pub enum Reply {
    /// A complete answer with Content-Length.
    Full { status: u16, body: Vec<u8> },
    /// Announces `body.len()` bytes but sends only the first `send`, then closes.
    Cut { body: Vec<u8>, send: usize },
}

type Handler = Arc<dyn Fn(usize, &Request) -> Reply + Send + Sync>;

pub struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(
        handler: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let handler: Handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve_one(tcp, handler.clone(), recorded.clone()));
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

async fn serve_one(mut stream: TcpStream, handler: Handler, recorded: Arc<Mutex<Vec<Request>>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let index = {
        let mut all = recorded.lock().expect("requests");
        all.push(request.clone());
        all.len() - 1
    };
    let (status, length, body) = match handler(index, &request) {
        Reply::Full { status, body } => (status, body.len(), body),
        Reply::Cut { body, send } => (200, body.len(), body[..send].to_vec()),
    };
    let mut out =
        format!("HTTP/1.1 {status} Test\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n")
            .into_bytes();
    out.extend_from_slice(&body);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
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
            let part = &body[w[0] + delimiter.len() + 2..w[1] - 2];
            let split = part
                .windows(4)
                .position(|x| x == b"\r\n\r\n")
                .expect("part headers");
            let head = String::from_utf8(part[..split].to_vec()).expect("utf-8 part headers");
            let mut result = FormPart {
                name: None,
                filename: None,
                data: part[split + 4..].to_vec(),
            };
            for line in head.split("\r\n") {
                if let Some((n, v)) = line.split_once(':')
                    && n.trim().eq_ignore_ascii_case("content-disposition")
                {
                    result.name = disposition_param(v, "name");
                    result.filename = disposition_param(v, "filename");
                }
            }
            result
        })
        .collect()
}
