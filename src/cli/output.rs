//! Output conventions: with `--json` stdout carries only JSON (one document, or JSON Lines with a
//! `type` and a `data` object per line); human text and progress go to stderr.

use serde::Serialize;
use serde_json::{Value, json};
use std::io::{self, Write};

/// Prints one JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Prints one JSON Lines record `{"type": kind, "data": data}` on stdout.
pub fn print_json_line(kind: &str, data: Value) -> io::Result<()> {
    print_json(&json!({ "type": kind, "data": data }))
}

/// The error object that ends stdout under `--json` when a command fails.
pub fn json_error(kind: &str, message: &str) -> Value {
    json!({ "type": "error", "data": { "kind": kind, "message": message } })
}

/// True when an I/O error is a closed pipe (`chargectl logs --follow | head`): exit quietly.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
