//! Colours, and their replacements when `NO_COLOR` is set: focus and levels stay visible through
//! bold, reverse and text markers.

use ratatui::style::{Color, Modifier, Style};

use crate::stack::logbook::Level;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn new(color: bool) -> Theme {
        Theme { color }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// The focused row of a list or table.
    pub fn focused(&self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    /// Marker drawn in front of the focused row (visible with and without colour).
    pub fn focus_marker(&self) -> &'static str {
        "> "
    }

    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn tab_active(&self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    pub fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn pending(&self) -> Style {
        self.fg(Color::Magenta).add_modifier(Modifier::BOLD)
    }

    /// Search matches in the log.
    pub fn highlight(&self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::Yellow)
                .fg(Color::Black)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::UNDERLINED)
        }
    }

    /// Style of a log level's label.
    pub fn level(&self, level: Level) -> Style {
        if self.color {
            match level {
                Level::Error => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                Level::Warn => Style::new().fg(Color::Yellow),
                Level::Info => Style::new().fg(Color::Green),
                Level::Debug => Style::new().fg(Color::Blue),
                Level::Trace => Style::new().fg(Color::DarkGray),
            }
        } else {
            match level {
                Level::Error => Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
                Level::Warn => Style::new().add_modifier(Modifier::BOLD),
                Level::Info => Style::new(),
                Level::Debug | Level::Trace => Style::new().add_modifier(Modifier::DIM),
            }
        }
    }
}
