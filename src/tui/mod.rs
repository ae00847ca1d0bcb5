//! The terminal UI: Elm-style [`State`] / [`Msg`] / [`update()`] / [`view()`] / [`Effect`], with a
//! [`runtime`] that alone touches the terminal, and key bindings from TOML [`keymap`]s.
//!
//! Data sources plug in through [`Backend`]: the runtime hands it every [`Effect`] and receives
//! [`Msg`]s through [`Events`].

pub mod action;
pub mod backend;
pub mod keymap;
pub mod live;
pub mod msg;
pub mod runtime;
pub mod settings;
pub mod state;
pub mod theme;
pub mod update;
pub mod view;

pub use action::Action;
pub use backend::{Backend, Events, Task};
pub use keymap::{Keymap, KeymapError};
pub use msg::{Effect, Msg};
pub use runtime::{TuiOptions, run, run_with};
pub use settings::{Settings, SettingsError};
pub use state::State;
pub use theme::Theme;
pub use update::update;
pub use view::view;
