//! Keys, the mouse and pastes: routed to the popup, the focused shell,
//! the focused pane or the app's own actions.

use crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Position;

use super::{App, Focus, Popup, Prompt, PromptKind};
use super::{DEFAULT_COMMAND, DEFAULT_LINGER};
use crate::agent::state::LingerRequest;
use crate::tui::action::Effect;
use crate::tui::keys::KeyAction;
use crate::tui::layout::{neighbour, PaneId, Split, Toward};
use crate::tui::panes::{Pane, PaneAction, PaneKind};
use crate::tui::popups::PopupAction;
use crate::tui::{list, ui};

impl App {
    /// Handles a key press.
    pub fn on_key(&mut self, key: KeyEvent) {
        self.dirty = true;
        // A message stays until the next key: then it has been read.
        self.status = None;
        if self.popup.is_some() {
            self.on_popup_key(key);
            return;
        }
        if self.interacting {
            if self.keymap.is_leave(&key) {
                self.interacting = false;
                let back: Vec<String> = [KeyAction::Open, KeyAction::Interact]
                    .into_iter()
                    .filter_map(|a| self.keymap.key_for(a))
                    .collect();
                if back.is_empty() {
                    self.info("left interaction mode");
                } else {
                    self.info(format!(
                        "left interaction mode; {} goes back in",
                        back.join(" or ")
                    ));
                }
                return;
            }
            if let Focus::Pane(id) = self.focus {
                if let Some(Pane {
                    kind: PaneKind::Shell(s),
                    ..
                }) = self.panes.get_mut(&id)
                {
                    if let Some(bytes) = s.key_input(&key) {
                        self.effects.push(Effect::ShellInput(id, bytes));
                    }
                    return;
                }
            }
            self.interacting = false;
        }
        // The focused pane's own keys first (the tunnels table's Esc, X).
        if self.pane_key(&key) {
            return;
        }
        let Some(action) = self.keymap.action(&key) else {
            self.on_unbound_key(&key);
            return;
        };
        self.on_action(action);
    }

    /// A key the keymap does not bind: `Ctrl-C` quits (asking first as the
    /// quit key does), `Esc` in the list clears its filter.
    fn on_unbound_key(&mut self, key: &KeyEvent) {
        if self.keymap.is_ctrl_c(key) {
            self.on_action(KeyAction::Quit);
        } else if key.code == KeyCode::Esc
            && key.modifiers.is_empty()
            && self.focus == Focus::List
            && !self.filter.is_empty()
        {
            self.filter.clear();
            self.selected = 0;
            self.info("filter cleared");
        }
    }

    /// A key the keymap knows: the app's own actions, or the focused pane's.
    fn on_action(&mut self, action: KeyAction) {
        let page = usize::from(self.size.height.saturating_sub(4)).max(1);
        match action {
            KeyAction::Up => self.scroll(1, true),
            KeyAction::Down => self.scroll(1, false),
            KeyAction::PageUp => self.scroll(page, true),
            KeyAction::PageDown => self.scroll(page, false),
            KeyAction::Open | KeyAction::Interact => match self.focus {
                Focus::List => {
                    if let Some(row) = self.context().cloned() {
                        self.open_log(&row);
                    }
                }
                Focus::Pane(id) => {
                    self.pane_action(id, action);
                }
            },
            KeyAction::Shell => self.open_shell(),
            KeyAction::Command => {
                if let Some(row) = self.require_ssh() {
                    self.popup = Some(Popup::prompt(
                        PromptKind::Command(row.exec.id),
                        DEFAULT_COMMAND,
                    ));
                }
            }
            KeyAction::Tunnel => self.tunnel_prompt(),
            KeyAction::Tunnels => self.open_tunnels(),
            KeyAction::Linger => {
                if let Some(row) = self.require_ssh() {
                    self.popup = Some(Popup::prompt(
                        PromptKind::Linger {
                            exec_id: row.exec.id.clone(),
                            label: row.label(),
                        },
                        DEFAULT_LINGER,
                    ));
                }
            }
            KeyAction::Leave => {}
            KeyAction::FocusNext | KeyAction::FocusPrev => {
                let mut order: Vec<Focus> = vec![Focus::List];
                order.extend(self.tiling.order().into_iter().map(Focus::Pane));
                if let Some(z) = self.zoomed {
                    order = vec![Focus::List, Focus::Pane(z)];
                }
                let pos = order.iter().position(|f| *f == self.focus).unwrap_or(0);
                let n = order.len();
                let next = if action == KeyAction::FocusNext {
                    (pos + 1) % n
                } else {
                    (pos + n - 1) % n
                };
                self.focus = order[next];
            }
            KeyAction::FocusLeft
            | KeyAction::FocusRight
            | KeyAction::FocusUp
            | KeyAction::FocusDown => {
                let toward = match action {
                    KeyAction::FocusLeft => Toward::Left,
                    KeyAction::FocusRight => Toward::Right,
                    KeyAction::FocusUp => Toward::Up,
                    _ => Toward::Down,
                };
                match self.focus {
                    Focus::List => {
                        if toward == Toward::Right {
                            if let Some(first) = self.tiling.order().first() {
                                self.focus = Focus::Pane(*first);
                            }
                        }
                    }
                    Focus::Pane(id) => match neighbour(&self.pane_rects(), id, toward) {
                        Some(n) => self.focus = Focus::Pane(n),
                        None if toward == Toward::Left => self.focus = Focus::List,
                        None => {}
                    },
                }
            }
            KeyAction::SplitSide => {
                self.next_split = Split::Horizontal;
                self.info("the next pane opens side by side");
            }
            KeyAction::SplitStack => {
                self.next_split = Split::Vertical;
                self.info("the next pane opens below");
            }
            KeyAction::Zoom => {
                if let Focus::Pane(id) = self.focus {
                    self.zoomed = if self.zoomed == Some(id) {
                        None
                    } else {
                        Some(id)
                    };
                    self.sync_sizes();
                }
            }
            KeyAction::Close => self.close_focused(),
            KeyAction::Copy => match self.context().cloned() {
                Some(row) => match self.ssh_command_line(&row) {
                    Some(line) => {
                        self.effects.push(Effect::Copy(line.clone()));
                        self.info(format!("copied: {line}"));
                    }
                    None => self.error(format!("{} has no SSH address yet", row.label())),
                },
                None => self.error("no execution selected"),
            },
            KeyAction::Filter => match self.focus {
                Focus::Pane(id)
                    if self
                        .panes
                        .get(&id)
                        .is_some_and(|p| p.kind.view().searchable()) =>
                {
                    self.popup = Some(Popup::prompt(PromptKind::Search(id), ""));
                }
                _ => {
                    let filter = self.filter.clone();
                    self.popup = Some(Popup::prompt(PromptKind::Filter, &filter));
                    self.filter_before = filter;
                }
            },
            KeyAction::Help => self.popup = Some(Popup::Help),
            KeyAction::Quit => {
                if self.has_sessions() {
                    self.popup = Some(Popup::ConfirmQuit);
                } else {
                    self.quit = true;
                }
            }
            KeyAction::Follow | KeyAction::Rerun => {
                if let Focus::Pane(id) = self.focus {
                    self.pane_action(id, action);
                }
            }
        }
    }

    /// Hands an action to pane `id` and carries out what it asks.
    fn pane_action(&mut self, id: PaneId, action: KeyAction) -> PaneAction {
        let cx = self.pane_cx(id);
        let Some(pane) = self.panes.get_mut(&id) else {
            return PaneAction::Ignored;
        };
        let asked = pane.kind.view_mut().on_action(action, &cx);
        match &asked {
            PaneAction::Ignored | PaneAction::Done => {}
            PaneAction::Interact => {
                // The key bar says how to leave, once.
                self.interacting = true;
            }
            PaneAction::Rerun(command) => {
                if let Some(exec_id) = pane.exec_id.clone() {
                    self.effects.push(Effect::RunCommand {
                        pane: id,
                        exec_id,
                        command: command.clone(),
                    });
                }
            }
            PaneAction::Leave | PaneAction::ClearFailedTunnels => self.pane_asked(id, &asked),
            PaneAction::StopTunnel(index) => {
                if let Some(row) = self.tunnels.get(*index).cloned() {
                    self.tunnels.retain(|t| t.id != row.id);
                    self.effects.push(Effect::StopTunnel(row.id));
                    self.info(format!("stopped tunnel {}", row.spec_text()));
                }
            }
        }
        asked
    }

    /// `x`: closes the focused pane, unless the pane takes the key itself.
    fn close_focused(&mut self) {
        let Focus::Pane(id) = self.focus else { return };
        // A pane may take `x` for itself (the tunnels table stops a tunnel).
        if self.pane_action(id, KeyAction::Close) == PaneAction::Ignored {
            self.close_pane(id);
        }
    }

    /// Moves the list's selection, or scrolls the focused pane, `n` rows.
    fn scroll(&mut self, n: usize, up: bool) {
        match self.focus {
            Focus::List => {
                let len = self.visible().len();
                self.selected = if up {
                    self.selected.saturating_sub(n)
                } else {
                    (self.selected + n).min(len.saturating_sub(1))
                };
            }
            Focus::Pane(id) => {
                let cx = self.pane_cx(id);
                if let Some(pane) = self.panes.get_mut(&id) {
                    pane.kind.view_mut().scroll(n, up, &cx);
                }
            }
        }
    }

    /// A key while a popup is open: the popup handles it; the app does what it asks.
    fn on_popup_key(&mut self, key: KeyEvent) {
        let Some(mut popup) = self.popup.take() else {
            return;
        };
        // Ctrl-C cancels a prompt, as Esc does.
        let asked = if matches!(popup, Popup::Prompt(_)) && self.keymap.is_ctrl_c(&key) {
            PopupAction::Close
        } else {
            popup.on_key(key, &self.history)
        };
        match asked {
            PopupAction::Stay => self.popup = Some(popup),
            PopupAction::Close => {
                // A cancelled filter prompt puts the filter back as it was.
                if let Popup::Prompt(p) = &popup {
                    if p.kind == PromptKind::Filter {
                        self.filter = std::mem::take(&mut self.filter_before);
                        self.selected = 0;
                    }
                }
            }
            PopupAction::Quit => self.quit = true,
            PopupAction::Submit => {
                if let Popup::Prompt(prompt) = popup {
                    self.submit(*prompt);
                }
            }
            PopupAction::PickPort { exec_id, port } => {
                self.start_tunnel(exec_id, &port.to_string())
            }
            PopupAction::Filter(text) => {
                self.filter = text;
                self.selected = 0;
                self.popup = Some(popup);
            }
        }
    }

    /// `Enter` in a prompt: acts on its text.
    fn submit(&mut self, prompt: Prompt) {
        let text = prompt.text();
        match prompt.kind {
            PromptKind::Filter => {
                self.filter = text;
                self.selected = 0;
            }
            PromptKind::Search(id) => {
                let cx = self.pane_cx(id);
                let Some(view) = self.panes.get_mut(&id).map(|p| p.kind.view_mut()) else {
                    return;
                };
                if !view.searchable() {
                    return;
                }
                // An empty search repeats the last one, as in less.
                let term = if text.is_empty() {
                    match view.last_search() {
                        Some(last) => last,
                        None => return,
                    }
                } else {
                    text
                };
                if let Err(e) = view.search(&term, &cx) {
                    self.error(e);
                }
            }
            PromptKind::Command(exec_id) => self.run_command(exec_id, text),
            PromptKind::Tunnel { exec_id, .. } => self.start_tunnel(exec_id, text.trim()),
            PromptKind::Linger { exec_id, label } => match LingerRequest::parse(&text) {
                Ok(request) => {
                    self.info(format!("{label}: asking its agent to {}", text.trim()));
                    self.effects.push(Effect::Linger {
                        exec_id,
                        label,
                        request,
                    });
                }
                Err(e) => self.error(e),
            },
        }
    }

    /// Pasted text: to the shell when interacting, else to an open prompt.
    pub fn on_paste(&mut self, text: &str) {
        self.dirty = true;
        if let Some(Popup::Prompt(p)) = self.popup.as_mut() {
            p.paste(text);
            return;
        }
        if !self.interacting {
            return;
        }
        if let Focus::Pane(id) = self.focus {
            if let Some(Pane {
                kind: PaneKind::Shell(s),
                ..
            }) = self.panes.get(&id)
            {
                let bytes = s.paste_input(text);
                self.effects.push(Effect::ShellInput(id, bytes));
            }
        }
    }

    /// Mouse: a click focuses, the wheel scrolls what is under it.
    pub fn on_mouse(&mut self, event: MouseEvent) {
        let at = Position::new(event.column, event.row);
        let areas = ui::areas(self.size);
        let target = if areas.list.contains(at) {
            Some(Focus::List)
        } else {
            self.pane_rects()
                .into_iter()
                .find(|(_, r)| r.contains(at))
                .map(|(id, _)| Focus::Pane(id))
        };
        let Some(target) = target else { return };
        match event.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if target != self.focus {
                    self.interacting = false;
                }
                self.focus = target;
                if target == Focus::List {
                    let row = list::row_at(self, areas.list, event.row);
                    if row < self.visible().len() {
                        self.selected = row;
                    }
                }
                self.dirty = true;
            }
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let previous = self.focus;
                self.focus = target;
                self.scroll(3, event.kind == MouseEventKind::ScrollUp);
                self.focus = previous;
                self.dirty = true;
            }
            _ => {}
        }
    }
}
