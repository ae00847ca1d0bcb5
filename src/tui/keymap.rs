//! Key bindings: TOML files with one table per context, keyed by key.
//!
//! Layers merge key by key: the embedded default, then a preset or file chosen with
//! `--keymap`, then the user's `keymap.toml` in the config directory. A screen's table wins over
//! `[global]`. The value `"none"` unbinds a key. `ctrl-c` always quits and cannot be rebound.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

use super::action::Action;

/// The embedded default preset.
pub const DEFAULT_PRESET: &str = include_str!("../../keymaps/default.toml");
/// The embedded vim-style preset (a layer over the default).
pub const VIM_PRESET: &str = include_str!("../../keymaps/vim.toml");

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Context {
    Global,
    Connect,
    Dashboard,
    Config,
    Firmware,
    Logs,
    Emulator,
    DryRun,
}

impl Context {
    pub const ALL: [Context; 8] = [
        Context::Global,
        Context::Connect,
        Context::Dashboard,
        Context::Config,
        Context::Firmware,
        Context::Logs,
        Context::Emulator,
        Context::DryRun,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Context::Global => "global",
            Context::Connect => "connect",
            Context::Dashboard => "dashboard",
            Context::Config => "config",
            Context::Firmware => "firmware",
            Context::Logs => "logs",
            Context::Emulator => "emulator",
            Context::DryRun => "dry-run",
        }
    }

    fn from_name(s: &str) -> Option<Context> {
        Context::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// One key press: a code and its modifiers, normalised so that `shift-a` and `A` are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    code: KeyCodeOrd,
    mods: u8,
}

/// `KeyCode` subset with an order, so bindings sort stably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyCodeOrd {
    Char(char),
    F(u8),
    Named(Named),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Named {
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Insert,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
}

const NAMED: &[(&str, Named)] = &[
    ("enter", Named::Enter),
    ("esc", Named::Esc),
    ("tab", Named::Tab),
    ("backtab", Named::BackTab),
    ("backspace", Named::Backspace),
    ("delete", Named::Delete),
    ("insert", Named::Insert),
    ("up", Named::Up),
    ("down", Named::Down),
    ("left", Named::Left),
    ("right", Named::Right),
    ("home", Named::Home),
    ("end", Named::End),
    ("pageup", Named::PageUp),
    ("pagedown", Named::PageDown),
];

const CTRL: u8 = 1;
const ALT: u8 = 2;
const SHIFT: u8 = 4;

impl Key {
    /// `ctrl-c`, the chord that always quits.
    pub const CTRL_C: Key = Key {
        code: KeyCodeOrd::Char('c'),
        mods: CTRL,
    };

    /// The key of a crossterm event; `None` for releases and keys we do not bind.
    pub fn from_event(ev: &KeyEvent) -> Option<Key> {
        if ev.kind == KeyEventKind::Release {
            return None;
        }
        let mut mods = 0;
        if ev.modifiers.contains(KeyModifiers::CONTROL) {
            mods |= CTRL;
        }
        if ev.modifiers.contains(KeyModifiers::ALT) {
            mods |= ALT;
        }
        if ev.modifiers.contains(KeyModifiers::SHIFT) {
            mods |= SHIFT;
        }
        let code = match ev.code {
            KeyCode::Char(c) => {
                // An uppercase letter means itself; shift is already in the character.
                mods &= !SHIFT;
                let c = if mods & CTRL != 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                };
                KeyCodeOrd::Char(c)
            }
            KeyCode::F(n) => KeyCodeOrd::F(n),
            KeyCode::BackTab => {
                mods &= !SHIFT;
                KeyCodeOrd::Named(Named::BackTab)
            }
            other => KeyCodeOrd::Named(match other {
                KeyCode::Enter => Named::Enter,
                KeyCode::Esc => Named::Esc,
                KeyCode::Tab => Named::Tab,
                KeyCode::Backspace => Named::Backspace,
                KeyCode::Delete => Named::Delete,
                KeyCode::Insert => Named::Insert,
                KeyCode::Up => Named::Up,
                KeyCode::Down => Named::Down,
                KeyCode::Left => Named::Left,
                KeyCode::Right => Named::Right,
                KeyCode::Home => Named::Home,
                KeyCode::End => Named::End,
                KeyCode::PageUp => Named::PageUp,
                KeyCode::PageDown => Named::PageDown,
                _ => return None,
            }),
        };
        Some(Key { code, mods })
    }

    /// Parses one key as written in a keymap file (`ctrl-s`, `G`, `pageup`, `space`, `f5`).
    pub fn parse(text: &str) -> Result<Key, String> {
        let mut rest = text;
        let mut mods = 0;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.len() > 5 && lower.starts_with("ctrl-") {
                mods |= CTRL;
                rest = &rest[5..];
            } else if rest.len() > 4 && lower.starts_with("alt-") {
                mods |= ALT;
                rest = &rest[4..];
            } else if rest.len() > 6 && lower.starts_with("shift-") {
                mods |= SHIFT;
                rest = &rest[6..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (None, _) => return Err(format!("empty key in '{text}'")),
            (Some(c), None) => {
                if mods & SHIFT != 0 {
                    mods &= !SHIFT;
                    KeyCodeOrd::Char(c.to_ascii_uppercase())
                } else if mods & CTRL != 0 {
                    KeyCodeOrd::Char(c.to_ascii_lowercase())
                } else {
                    KeyCodeOrd::Char(c)
                }
            }
            _ => {
                let lower = rest.to_ascii_lowercase();
                if lower == "space" {
                    KeyCodeOrd::Char(' ')
                } else if lower == "tab" && mods & SHIFT != 0 {
                    mods &= !SHIFT;
                    KeyCodeOrd::Named(Named::BackTab)
                } else if let Some(n) = lower
                    .strip_prefix('f')
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|n| (1..=24).contains(n))
                {
                    KeyCodeOrd::F(n)
                } else if let Some((_, named)) = NAMED.iter().find(|(name, _)| *name == lower) {
                    KeyCodeOrd::Named(*named)
                } else {
                    return Err(format!(
                        "unknown key '{rest}' (expected a character, space, enter, esc, tab, \
                         backspace, delete, insert, up, down, left, right, home, end, pageup, \
                         pagedown or f1..f24, with ctrl-, alt-, shift- prefixes)"
                    ));
                }
            }
        };
        Ok(Key { code, mods })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods & CTRL != 0 {
            f.write_str("ctrl-")?;
        }
        if self.mods & ALT != 0 {
            f.write_str("alt-")?;
        }
        if self.mods & SHIFT != 0 {
            f.write_str("shift-")?;
        }
        match self.code {
            KeyCodeOrd::Char(' ') => f.write_str("space"),
            KeyCodeOrd::Char(c) => write!(f, "{c}"),
            KeyCodeOrd::F(n) => write!(f, "f{n}"),
            KeyCodeOrd::Named(Named::BackTab) => f.write_str("shift-tab"),
            KeyCodeOrd::Named(n) => {
                let name = NAMED
                    .iter()
                    .find(|(_, named)| *named == n)
                    .map(|(s, _)| *s)
                    .unwrap_or("?");
                f.write_str(name)
            }
        }
    }
}

/// A sequence of keys, such as `g g`.
pub type KeySeq = Vec<Key>;

/// Formats a key sequence the way keymap files spell it.
pub fn seq_to_string(seq: &[Key]) -> String {
    seq.iter().map(Key::to_string).collect::<Vec<_>>().join(" ")
}

fn parse_seq(text: &str) -> Result<KeySeq, String> {
    // A lone space is the space key; otherwise spaces separate the keys of a sequence.
    if text == " " {
        return Ok(vec![Key {
            code: KeyCodeOrd::Char(' '),
            mods: 0,
        }]);
    }
    let seq = text
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(Key::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if seq.is_empty() {
        return Err("empty key sequence".to_string());
    }
    Ok(seq)
}

/// A keymap file that cannot be used; its message starts with `path:line:column:`.
#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: cannot read the keymap: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown keymap '{0}': expected a preset (default, vim) or the path of a file")]
    UnknownPreset(String),
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// What a key means in a context, after looking at pending keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Action(Action),
    /// The keys so far start a longer binding: wait for the next key.
    Pending,
    Unbound,
}

/// The merged bindings of every context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keymap {
    bindings: HashMap<Context, BTreeMap<KeySeq, Action>>,
}

type RawFile = BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<String>>>;

impl Keymap {
    /// The embedded default preset alone.
    pub fn default_preset() -> Keymap {
        let mut map = Keymap::default();
        // The embedded presets are checked by tests; a failure here would be a build defect, so
        // fall back to an empty map rather than panic (ctrl-c still quits).
        if let Err(e) = map.apply_layer(Path::new("keymaps/default.toml"), DEFAULT_PRESET) {
            tracing::error!("embedded default keymap is invalid: {e}");
        }
        map
    }

    /// Builds the keymap from the default, an optional `--keymap` choice (preset name or file),
    /// and the user's override file if it exists.
    pub fn load(choice: Option<&str>, user_file: Option<&Path>) -> Result<Keymap, KeymapError> {
        let mut map = Keymap::default();
        map.apply_layer(Path::new("keymaps/default.toml"), DEFAULT_PRESET)?;
        match choice {
            None | Some("default") => {}
            Some("vim") => map.apply_layer(Path::new("keymaps/vim.toml"), VIM_PRESET)?,
            Some(other) => {
                let path = Path::new(other);
                if !path.exists() {
                    return Err(KeymapError::UnknownPreset(other.to_string()));
                }
                let text = std::fs::read_to_string(path).map_err(|source| KeymapError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                map.apply_layer(path, &text)?;
            }
        }
        if let Some(path) = user_file {
            match std::fs::read_to_string(path) {
                Ok(text) => map.apply_layer(path, &text)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(KeymapError::Read {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
        Ok(map)
    }

    /// Merges one TOML layer over this keymap, key by key.
    pub fn apply_layer(&mut self, path: &Path, text: &str) -> Result<(), KeymapError> {
        let err = |offset: usize, message: String| {
            let (line, column) = line_column(text, offset);
            KeymapError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            err(offset, e.message().trim().to_string())
        })?;
        let mut staged: Vec<(Context, KeySeq, Option<Action>)> = Vec::new();
        for (ctx_name, table) in &raw {
            let ctx = Context::from_name(ctx_name.get_ref()).ok_or_else(|| {
                err(
                    ctx_name.span().start,
                    format!(
                        "unknown context [{}] (expected one of: {})",
                        ctx_name.get_ref(),
                        Context::ALL.map(Context::name).join(", ")
                    ),
                )
            })?;
            for (key_text, action_text) in table {
                let seq =
                    parse_seq(key_text.get_ref()).map_err(|m| err(key_text.span().start, m))?;
                let action = match action_text.get_ref().as_str() {
                    "none" => None,
                    name => Some(Action::from_name(name).ok_or_else(|| {
                        err(
                            action_text.span().start,
                            format!(
                                "unknown action '{name}' (see the help overlay, `?`, for the list)"
                            ),
                        )
                    })?),
                };
                if seq == [Key::CTRL_C] && action != Some(Action::Quit) {
                    return Err(err(
                        key_text.span().start,
                        "ctrl-c always quits and cannot be rebound or unbound".to_string(),
                    ));
                }
                staged.push((ctx, seq, action));
            }
        }
        for (ctx, seq, action) in staged {
            let table = self.bindings.entry(ctx).or_default();
            match action {
                Some(a) => {
                    table.insert(seq, a);
                }
                None => {
                    table.remove(&seq);
                }
            }
        }
        Ok(())
    }

    /// What the pending keys plus `key` mean in `ctx` (the screen's table first, then global).
    pub fn lookup(&self, ctx: Context, pending: &[Key], key: Key) -> Lookup {
        if pending.is_empty() && key == Key::CTRL_C {
            return Lookup::Action(Action::Quit);
        }
        let mut seq: KeySeq = pending.to_vec();
        seq.push(key);
        let mut pending_found = false;
        for c in [ctx, Context::Global] {
            if let Some(table) = self.bindings.get(&c) {
                if let Some(a) = table.get(&seq) {
                    return Lookup::Action(*a);
                }
                if table
                    .range(seq.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.len() > seq.len() && k.starts_with(&seq))
                {
                    pending_found = true;
                }
            }
            if c == Context::Global {
                break;
            }
        }
        if pending_found {
            Lookup::Pending
        } else {
            Lookup::Unbound
        }
    }

    /// Every binding as (context, keys, action), sorted by context, action, then keys: the
    /// order of the help overlay.
    pub fn entries(&self) -> Vec<(Context, KeySeq, Action)> {
        let mut out: Vec<(Context, KeySeq, Action)> = self
            .bindings
            .iter()
            .flat_map(|(c, t)| t.iter().map(move |(k, a)| (*c, k.clone(), *a)))
            .collect();
        out.sort_by(|a, b| (a.0, a.2, &a.1).cmp(&(b.0, b.2, &b.1)));
        out
    }

    /// The first keys bound to `action` in `ctx` or global, for hints in the status bar.
    pub fn keys_for(&self, ctx: Context, action: Action) -> Option<String> {
        for c in [ctx, Context::Global] {
            if let Some((k, _)) = self
                .bindings
                .get(&c)
                .and_then(|t| t.iter().find(|(_, a)| **a == action))
            {
                return Some(seq_to_string(k));
            }
        }
        None
    }

    /// Bindings of one context (without global).
    pub fn context(&self, ctx: Context) -> impl Iterator<Item = (&KeySeq, &Action)> {
        self.bindings.get(&ctx).into_iter().flat_map(|t| t.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_keys() {
        for s in [
            "ctrl-s",
            "G",
            "g",
            "space",
            "pageup",
            "f5",
            "alt-x",
            "shift-tab",
            "?",
            "/",
            "-",
        ] {
            assert_eq!(key(s).to_string(), s, "{s}");
        }
        assert_eq!(key("shift-a"), key("A"));
        assert_eq!(key("shift-tab"), key("backtab"));
        assert_eq!(key("ctrl-S"), key("ctrl-s"));
        assert!(Key::parse("ctrl-").is_err());
        assert!(
            Key::parse("hyper")
                .unwrap_err()
                .contains("unknown key 'hyper'")
        );
    }

    #[test]
    fn event_shift_letter_matches_uppercase_binding() {
        let ev = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&ev), Some(key("G")));
        let ev = KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&ev), Some(key("shift-tab")));
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
