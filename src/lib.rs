//! chargectl: a terminal tool for EV charger installers, support staff and provisioning scripts.
//!
//! The library holds every capability; the binary is a thin shell over it.
//!
//! | module | what lives there |
//! | --- | --- |
//! | [`stack`] | the charger stack: OCPP-J RPC, configuration keys, connectors, transactions, ... |
//! | [`link`] | the serial service protocol: framing, charger-side service, tool-side client, ports |
//! | [`firmware`] | the signed firmware image format and the charger's A/B slots |
//! | [`emulator`] | simulated hardware wired to the stack, a CSMS and a pseudo-terminal service port |
//! | [`csms`] | the sandbox CSMS |
//! | [`dryrun`] | commissioning dry runs: scenarios, findings, reports |
//! | [`rlimit`] | the open-file limit, raised for thousands of connections |
//! | [`storage`] | crash-safe files: atomic replace, private files, directory fsync |
//! | [`sync`] | locks that survive a panicked holder |
//! | [`tui`] | ratatui screens as thin views over application state |
//! | [`cli`] | clap commands for non-interactive use |

pub mod cli;
pub mod csms;
pub mod dryrun;
pub mod emulator;
pub mod firmware;
pub mod link;
pub mod logging;
pub mod paths;
pub mod provision;
pub mod rlimit;
pub mod stack;
pub mod storage;
pub mod sync;
pub mod tui;
