//! Opening a port: a serial device path or `tcp://HOST:PORT`, with errors that say what to do.

use super::error::{Error, Result};
use std::path::Path;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_serial::{SerialPort, SerialPortBuilderExt};

/// Anything the link can run over.
pub trait LinkIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> LinkIo for T {}

/// A boxed line.
pub type BoxIo = Box<dyn LinkIo>;

/// Opens `port` (a device path or `tcp://HOST:PORT`) at `baud`, exclusively.
pub async fn open(port: &str, baud: u32) -> Result<BoxIo> {
    if let Some(addr) = port.strip_prefix("tcp://") {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| Error::Open {
                port: port.to_string(),
                message: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        return Ok(Box::new(stream));
    }
    if !Path::new(port).exists() {
        return Err(Error::NoSuchPort {
            port: port.to_string(),
        });
    }
    match tokio_serial::new(port, baud).open_native_async() {
        Ok(stream) => {
            // Stale bytes from before we opened are not ours.
            let _ = stream.clear(tokio_serial::ClearBuffer::All);
            Ok(Box::new(stream))
        }
        Err(e) => Err(classify(port, &e)),
    }
}

fn classify(port: &str, e: &tokio_serial::Error) -> Error {
    let message = e.to_string();
    let lower = message.to_ascii_lowercase();
    match e.kind() {
        tokio_serial::ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
            return Error::PermissionDenied {
                port: port.to_string(),
                group: serial_group(Path::new(port)),
            };
        }
        tokio_serial::ErrorKind::Io(std::io::ErrorKind::NotFound) => {
            return Error::NoSuchPort {
                port: port.to_string(),
            };
        }
        _ => {}
    }
    if lower.contains("permission denied") {
        Error::PermissionDenied {
            port: port.to_string(),
            group: serial_group(Path::new(port)),
        }
    } else if lower.contains("busy") || lower.contains("lock") {
        Error::Busy {
            port: port.to_string(),
        }
    } else if lower.contains("no such file") {
        Error::NoSuchPort {
            port: port.to_string(),
        }
    } else {
        Error::Open {
            port: port.to_string(),
            message,
        }
    }
}

/// The group that owns serial devices: the device's own group when it can be read, otherwise
/// `dialout` (Debian, Ubuntu) or `uucp` (Arch, Fedora) as found in /etc/group.
pub fn serial_group(path: &Path) -> String {
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    group_for(path, &groups)
}

fn group_for(path: &Path, groups: &str) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let gid = meta.gid().to_string();
            for line in groups.lines() {
                let mut f = line.split(':');
                if let (Some(name), Some(_), Some(g)) = (f.next(), f.next(), f.next())
                    && g == gid
                    && gid != "0"
                {
                    return name.to_string();
                }
            }
        }
    }
    let has = |g: &str| groups.lines().any(|l| l.starts_with(&format!("{g}:")));
    if has("dialout") {
        "dialout".into()
    } else if has("uucp") {
        "uucp".into()
    } else {
        "dialout".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_falls_back_to_the_distribution_name() {
        let nowhere = Path::new("/nonexistent/ttyUSB9");
        assert_eq!(group_for(nowhere, "root:x:0:\nuucp:x:14:\n"), "uucp");
        assert_eq!(group_for(nowhere, "root:x:0:\ndialout:x:20:\n"), "dialout");
    }

    #[tokio::test]
    async fn missing_port_is_named() {
        let err = open("/dev/ttyUSB9-does-not-exist", 115_200)
            .await
            .err()
            .expect("fails");
        assert_eq!(err.to_string(), "no such port /dev/ttyUSB9-does-not-exist");
    }
}
