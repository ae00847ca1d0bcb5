//! Log subscriptions on the tool side: decoding log events and turning stream-number gaps into
//! "N lines dropped".

use super::super::codec::{Dec, evt};
use super::super::error::{Error, Result};
use crate::stack::logbook::{Level, LogRecord};
use tokio::sync::mpsc;

/// One item of a log stream.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    Record(LogRecord),
    /// This many lines were lost (on the charger or on the line) before the next record.
    Dropped(u64),
}

/// A decoded log event, numbered within its subscription.
pub(crate) enum LogItem {
    Record(u32, LogRecord),
    Dropped(u32, u64),
    /// The subscription was renewed after a reconnect: numbering restarts.
    Reset,
}

/// Records of a log subscription, with losses reported as [`LogEvent::Dropped`].
pub struct LogStream {
    pub(super) rx: mpsc::Receiver<LogItem>,
    pub(super) follow: bool,
    pub(super) history_last: u32,
    pub(super) expected: u32,
    pub(super) stash: Option<LogRecord>,
}

impl LogStream {
    /// The next record or loss marker; `None` at the end of the history (without follow) or
    /// when the link closed.
    pub async fn next(&mut self) -> Option<LogEvent> {
        if let Some(r) = self.stash.take() {
            return Some(LogEvent::Record(r));
        }
        loop {
            let item = if self.follow {
                self.rx.recv().await
            } else {
                self.rx.try_recv().ok()
            };
            match item {
                None => {
                    let missing = self
                        .history_last
                        .wrapping_add(1)
                        .wrapping_sub(self.expected);
                    if !self.follow && missing > 0 && missing < u32::MAX / 2 {
                        self.expected = self.history_last.wrapping_add(1);
                        return Some(LogEvent::Dropped(missing as u64));
                    }
                    return None;
                }
                Some(LogItem::Reset) => self.expected = 1,
                Some(LogItem::Record(seq, rec)) => {
                    let gap = seq.wrapping_sub(self.expected);
                    self.expected = seq.wrapping_add(1);
                    if gap > 0 && gap < u32::MAX / 2 {
                        self.stash = Some(rec);
                        return Some(LogEvent::Dropped(gap as u64));
                    }
                    return Some(LogEvent::Record(rec));
                }
                Some(LogItem::Dropped(seq, n)) => {
                    let gap = seq.wrapping_sub(self.expected);
                    self.expected = seq.wrapping_add(1);
                    let gap = if gap < u32::MAX / 2 { gap as u64 } else { 0 };
                    return Some(LogEvent::Dropped(gap + n));
                }
            }
        }
    }
}

/// Decodes the body of a log EVT frame.
pub(crate) fn decode_log_event(body: &[u8]) -> Result<LogItem> {
    let mut d = Dec::new(body);
    match d.u8("event kind")? {
        evt::RECORD => {
            let stream_seq = d.u32("stream sequence")?;
            let seq = d.u64("log sequence")?;
            let ms = d.i64("log time")?;
            let at = d.position();
            let level = Level::from_u8(d.u8("log level")?).ok_or(Error::Malformed {
                what: "log level",
                offset: at,
            })?;
            let target = d.str("log target")?;
            let message = d.str("log message")?;
            let time = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            Ok(LogItem::Record(
                stream_seq,
                LogRecord {
                    seq,
                    time,
                    level,
                    target,
                    message,
                },
            ))
        }
        evt::DROPPED => Ok(LogItem::Dropped(d.u32("stream sequence")?, d.u64("count")?)),
        _ => Err(Error::Malformed {
            what: "event kind",
            offset: 0,
        }),
    }
}
