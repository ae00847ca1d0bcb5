//! Serial port discovery: every port with its USB identity, likely chargers marked. Listing goes
//! through [`PortLister`] so tests can inject ports (pseudo-terminals never appear in an
//! enumeration).

use super::error::{Error, Result};
use serde::Serialize;

/// Kind of bus a port sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    Usb,
    Pci,
    Bluetooth,
    Unknown,
}

/// One serial port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortInfo {
    pub name: String,
    pub kind: PortKind,
    pub vid: Option<u16>,
    pub pid: Option<u16>,
    pub serial_number: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    /// The USB-serial bridge chip, when the VID/PID is a known one.
    pub bridge: Option<&'static str>,
    /// The product or manufacturer string names the charger's vendor, or the bridge is the one
    /// used in its service cable.
    pub likely_charger: bool,
}

/// USB-serial bridges found in service cables: (vid, pid, name).
pub const KNOWN_BRIDGES: &[(u16, u16, &str)] = &[
    (0x0403, 0x6001, "FTDI FT232R"),
    (0x0403, 0x6010, "FTDI FT2232"),
    (0x0403, 0x6014, "FTDI FT232H"),
    (0x0403, 0x6015, "FTDI FT-X"),
    (0x10c4, 0xea60, "Silicon Labs CP210x"),
    (0x1a86, 0x7523, "WCH CH340"),
    (0x1a86, 0x55d4, "WCH CH9102"),
    (0x067b, 0x2303, "Prolific PL2303"),
];

/// Words in a product or manufacturer string that mark the charger itself.
pub const CHARGER_WORDS: &[&str] = &["zaptec", "zaptec go", "charger service"];

impl PortInfo {
    /// A port with no USB identity.
    pub fn plain(name: impl Into<String>) -> PortInfo {
        PortInfo {
            name: name.into(),
            kind: PortKind::Unknown,
            vid: None,
            pid: None,
            serial_number: None,
            manufacturer: None,
            product: None,
            bridge: None,
            likely_charger: false,
        }
    }

    /// Fills `bridge` and `likely_charger` from the USB identity.
    pub fn classify(mut self) -> PortInfo {
        self.bridge = match (self.vid, self.pid) {
            (Some(v), Some(p)) => KNOWN_BRIDGES
                .iter()
                .find(|(bv, bp, _)| *bv == v && *bp == p)
                .map(|(_, _, n)| *n),
            _ => None,
        };
        let names = [self.product.as_deref(), self.manufacturer.as_deref()];
        let named = names.iter().flatten().any(|s| {
            let s = s.to_ascii_lowercase();
            CHARGER_WORDS.iter().any(|w| s.contains(w))
        });
        self.likely_charger = named;
        self
    }
}

/// Lists serial ports.
pub trait PortLister: Send + Sync {
    fn list(&self) -> Result<Vec<PortInfo>>;
}

/// The operating system's ports (sysfs on Linux; no libudev needed).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemPorts;

impl PortLister for SystemPorts {
    fn list(&self) -> Result<Vec<PortInfo>> {
        let ports = tokio_serial::available_ports().map_err(|e| Error::Open {
            port: "(port enumeration)".into(),
            message: e.to_string(),
        })?;
        let mut out: Vec<PortInfo> = ports
            .into_iter()
            .filter(|p| !p.port_name.contains("/tty.")) // macOS: use the cu.* twin
            .map(|p| {
                let mut info = PortInfo::plain(p.port_name);
                match p.port_type {
                    tokio_serial::SerialPortType::UsbPort(u) => {
                        info.kind = PortKind::Usb;
                        info.vid = Some(u.vid);
                        info.pid = Some(u.pid);
                        info.serial_number = u.serial_number;
                        info.manufacturer = u.manufacturer;
                        info.product = u.product;
                    }
                    tokio_serial::SerialPortType::PciPort => info.kind = PortKind::Pci,
                    tokio_serial::SerialPortType::BluetoothPort => info.kind = PortKind::Bluetooth,
                    tokio_serial::SerialPortType::Unknown => {}
                }
                info.classify()
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A fixed list, for tests and for a port given explicitly.
#[derive(Debug, Clone, Default)]
pub struct FixedPorts(pub Vec<PortInfo>);

impl PortLister for FixedPorts {
    fn list(&self) -> Result<Vec<PortInfo>> {
        Ok(self.0.clone())
    }
}

/// Ports worth probing for a charger: named ones first, then known bridges, then other USB.
pub fn candidates(ports: &[PortInfo]) -> Vec<&PortInfo> {
    let mut c: Vec<&PortInfo> = ports
        .iter()
        .filter(|p| p.likely_charger || p.bridge.is_some() || p.kind == PortKind::Usb)
        .collect();
    c.sort_by_key(|p| (!p.likely_charger, p.bridge.is_none()));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb(name: &str, vid: u16, pid: u16, product: Option<&str>) -> PortInfo {
        PortInfo {
            kind: PortKind::Usb,
            vid: Some(vid),
            pid: Some(pid),
            product: product.map(str::to_string),
            ..PortInfo::plain(name)
        }
        .classify()
    }

    #[test]
    fn charger_products_and_bridges_are_recognised() {
        let ports = vec![
            PortInfo::plain("/dev/ttyS0").classify(),
            usb("/dev/ttyUSB0", 0x1a86, 0x7523, Some("USB Serial")),
            usb(
                "/dev/ttyACM0",
                0x1234,
                0x0001,
                Some("Zaptec Go service port"),
            ),
        ];
        assert_eq!(ports[1].bridge, Some("WCH CH340"));
        assert!(!ports[1].likely_charger);
        assert!(ports[2].likely_charger);
        let c = candidates(&ports);
        assert_eq!(
            c.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec!["/dev/ttyACM0", "/dev/ttyUSB0"]
        );
    }
}
