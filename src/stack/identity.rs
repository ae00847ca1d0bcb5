//! Who a charger is: the one definition of its identity, sent in BootNotification, reported over
//! the service port and shown by the TUI.

use serde::{Deserialize, Serialize};

/// Who the charger is, as sent in BootNotification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub vendor: String,
    pub model: String,
    pub serial_number: String,
    pub firmware_version: String,
}
