//! Provisioning: configuring a charger for one CSMS operator or site from a provisioning profile.
//!
//! - [`profile`]: the profile file (`profiles/*.toml`): OCPP endpoint, security profile,
//!   configuration keys, `${VARIABLES}` and secrets from the environment or a prompt. Parsed
//!   into a [`Profile`] (always named `provision::ProvisioningProfile` outside this module, never a bare
//!   `Profile`), then resolved into [`Assignment`]s.
//! - [`workflow`]: the workflow that applies resolved assignments to a charger through a
//!   [`ConfigTarget`] (the serial link client): read, plan ([`Plan`]: unchanged keys marked,
//!   secrets never shown), check or write in [`write_order`], a [`Report`] per key. Progress is
//!   reported as [`Step`]s, never printed.
//!
//! - [`charger`]: one charger from start to online: identity (`${SERIAL}`, `${MODEL}`,
//!   `${FIRMWARE}`), apply, reboot when a written key needs it, then [`online`]: the wait until
//!   the charger reports being connected to its CSMS and Accepted.
//!
//! - [`bundle`]: a support bundle of one charger (from its port or its recorded sessions).
//!
//! `chargectl provision`, `chargectl emulate --profile` and the TUI's configuration screen all
//! run these; none of them repeats a rule.

pub mod bundle;
pub mod charger;
pub mod online;
pub mod profile;
pub mod workflow;

pub use online::{Online, OnlineReport, StatusSource, wait_online};
pub use profile::{
    AssignedValue, Assignment, BUILTIN_VARIABLES, Builtins, Commissioning, Error, Prompt,
    ProvisioningProfile, Result, SHIPPED, SecretShown, SecretSource, Shown, Variable,
};
pub use workflow::{
    ConfigTarget, CurrentValue, Interrupted, KeyChange, KeyReport, Mode, Plan, Report, Step,
    WRITTEN_LAST, apply, read_plan, write_keys, write_order,
};
