//! Connect screen: serial ports (likely chargers first) and the emulator choices.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};

use crate::tui::action::Action;
use crate::tui::keymap::Context;
use crate::tui::state::{ConnectItem, Link, State};

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let [list_area, info_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(area);
    let items: Vec<ListItem> = state
        .connect
        .items()
        .into_iter()
        .map(|item| match item {
            ConnectItem::Port(i) => {
                let Some(p) = state.connect.ports.get(i) else {
                    return ListItem::new("");
                };
                let mut spans = vec![Span::raw(format!("{:<16}", p.path))];
                if let Some(u) = p.usb {
                    spans.push(Span::styled(
                        format!(" {:04x}:{:04x}", u.vid, u.pid),
                        t.dim(),
                    ));
                }
                let desc: Vec<&str> = [p.manufacturer.as_deref(), p.product.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                if !desc.is_empty() {
                    spans.push(Span::raw(format!("  {}", desc.join(" · "))));
                }
                if p.likely_charger {
                    spans.push(Span::styled("  ★ likely charger", t.ok()));
                }
                ListItem::new(Line::from(spans))
            }
            ConnectItem::Sandbox => ListItem::new(Line::from(vec![Span::styled(
                "▶ Start an emulated charger on the sandbox CSMS",
                t.title(),
            )])),
            ConnectItem::CsmsUrl => ListItem::new(Line::from(vec![Span::styled(
                "▶ Start an emulated charger on a CSMS URL…",
                t.title(),
            )])),
        })
        .collect();
    let title = if state.connect.listing {
        " Serial ports (listing…) ".to_string()
    } else if state.connect.ports.is_empty() {
        " Serial ports: none found ".to_string()
    } else {
        format!(" Serial ports ({}) ", state.connect.ports.len())
    };
    let list = List::new(items)
        .block(Block::bordered().title(Span::styled(title, t.title())))
        .highlight_style(t.focused())
        .highlight_symbol(t.focus_marker());
    let mut ls = ListState::default().with_selected(Some(state.connect.selected));
    frame.render_stateful_widget(list, list_area, &mut ls);

    let key = |a| {
        state
            .keymap
            .keys_for(Context::Connect, a)
            .unwrap_or_else(|| "-".into())
    };
    let status = match &state.link {
        Link::Idle => "Not connected.".to_string(),
        Link::Connecting(target) => format!("Connecting to {}…", target.describe()),
        Link::Connected { target, .. } => format!("Connected to {}.", target.describe()),
        Link::Lost { target, reason } => format!(
            "Lost {}: {reason}. {} reconnects.",
            target.describe(),
            key(Action::Reconnect)
        ),
    };
    let help = Line::from(vec![
        Span::styled(key(Action::Select), t.key()),
        Span::raw(" connect  "),
        Span::styled(key(Action::RefreshPorts), t.key()),
        Span::raw(" refresh ports  "),
        Span::styled(key(Action::StartSandbox), t.key()),
        Span::raw(" sandbox  "),
        Span::styled(key(Action::StartCsmsUrl), t.key()),
        Span::raw(" CSMS URL"),
    ]);
    frame.render_widget(
        Paragraph::new(vec![Line::raw(status), help]).block(Block::new().title(" Status ")),
        info_area,
    );
}
