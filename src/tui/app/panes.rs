//! Opening and closing panes, and what opens with them (a shell's
//! session, a log's follow, a command's run, a tunnel).

use crossterm::event::KeyEvent;

use super::{App, ExecRow, Focus, Popup, PromptKind, SshState, TunnelRow};
use crate::ssh::tunnel::{TunnelSpec, TunnelState, LOOPBACK};
use crate::tui::action::Effect;
use crate::tui::executions::{ended_notice, gone_text, ready_notice};
use crate::tui::layout::PaneId;
use crate::tui::panes::{CommandPane, LogPane, Pane, PaneAction, PaneKind, ShellPane, TunnelsPane};
use crate::tui::popups::prompt::DEFAULT_TUNNEL_PORT;
use crate::tui::tunnels::{free_port_near, tunnel_prefill, with_local_port};

impl App {
    /// Tiles a new pane beside the focused one and focuses it.
    fn add_pane(&mut self, exec: Option<&ExecRow>, kind: PaneKind) -> PaneId {
        let id = self.next_id;
        self.next_id += 1;
        let beside = match self.focus {
            Focus::Pane(p) => Some(p),
            Focus::List => None,
        };
        self.tiling.insert(id, beside, self.next_split);
        self.panes.insert(
            id,
            Pane {
                id,
                exec_id: exec.map(|r| r.exec.id.clone()),
                exec_label: exec.map_or_else(String::new, ExecRow::label),
                kind,
            },
        );
        self.zoomed = None;
        self.focus = Focus::Pane(id);
        self.sync_sizes();
        id
    }

    /// Closes a pane and ends what it held (a log's follow, a session).
    pub(super) fn close_pane(&mut self, id: PaneId) {
        let Some(pane) = self.panes.remove(&id) else {
            return;
        };
        self.tiling.remove(id);
        if self.zoomed == Some(id) {
            self.zoomed = None;
        }
        // A log is followed once per execution, however many panes show it.
        if let PaneKind::Log(_) = pane.kind {
            let exec = pane.exec_id.clone().unwrap_or_default();
            let still = self.panes.values().any(|p| {
                matches!(p.kind, PaneKind::Log(_)) && p.exec_id.as_deref() == Some(exec.as_str())
            });
            if !still {
                self.effects.push(Effect::UnfollowLog(exec));
            }
        }
        if pane.kind.view().owns_session() {
            self.effects.push(Effect::ClosePane(id));
        }
        self.interacting = false;
        self.focus = self
            .tiling
            .order()
            .last()
            .map_or(Focus::List, |p| Focus::Pane(*p));
        self.sync_sizes();
    }

    /// Focuses the execution's log pane, opening it first if needed.
    pub(super) fn open_log(&mut self, row: &ExecRow) {
        if let Some(id) = self.panes.values().find_map(|p| {
            (matches!(p.kind, PaneKind::Log(_)) && p.exec_id.as_deref() == Some(&row.exec.id))
                .then_some(p.id)
        }) {
            self.focus = Focus::Pane(id);
            return;
        }
        let mut pane = LogPane::new(self.scrollback);
        pane.notice = if self.ssh_state(row) == SshState::Gone {
            Some(ended_notice(&row.exec, row.linger))
        } else {
            row.endpoint
                .as_ref()
                .map(|ep| ready_notice(ep, &self.keymap))
        };
        self.add_pane(Some(row), PaneKind::Log(pane));
        self.effects.push(Effect::FollowLog(row.exec.id.clone()));
    }

    /// The execution keys act on, if it can take an SSH connection; else
    /// says why not.
    pub(super) fn require_ssh(&mut self) -> Option<ExecRow> {
        let Some(row) = self.context().cloned() else {
            self.error("no execution selected");
            return None;
        };
        if self.ssh_state(&row) == SshState::Gone {
            self.error(gone_text(&row));
            return None;
        }
        if row.endpoint.is_none() {
            self.error(format!(
                "{} has not announced an SSH address yet; its log says when it does",
                row.label()
            ));
            return None;
        }
        Some(row)
    }

    /// Opens a shell pane for the execution keys act on, in interaction mode.
    pub(super) fn open_shell(&mut self) {
        let Some(row) = self.require_ssh() else {
            return;
        };
        let id = self.add_pane(Some(&row), PaneKind::Shell(ShellPane::new(24, 80)));
        // add_pane sized the screen; tell the runtime the real size.
        let (rows, cols) = match self.panes.get(&id).map(|p| &p.kind) {
            Some(PaneKind::Shell(s)) => s.parser.screen().size(),
            _ => (24, 80),
        };
        self.effects
            .retain(|e| !matches!(e, Effect::ShellResize(p, _, _) if *p == id));
        self.effects.push(Effect::OpenShell {
            pane: id,
            exec_id: row.exec.id.clone(),
            rows,
            cols,
        });
        // The key bar says how to leave interaction mode.
        self.interacting = true;
    }

    /// `T`: opens the tunnels table and focuses it; closes it when it is
    /// focused (focus goes back to the list); focuses it when it is open
    /// elsewhere.
    pub(super) fn open_tunnels(&mut self) {
        match self
            .panes
            .values()
            .find_map(|p| matches!(p.kind, PaneKind::Tunnels(_)).then_some(p.id))
        {
            Some(id) if self.focus == Focus::Pane(id) => {
                self.close_pane(id);
                self.focus = Focus::List;
            }
            Some(id) => self.focus = Focus::Pane(id),
            None => {
                self.add_pane(None, PaneKind::Tunnels(TunnelsPane::default()));
            }
        }
    }

    /// Offers a key to the focused pane before the keymap (`Esc` and `X`
    /// in the tunnels table); whether it took it.
    pub(super) fn pane_key(&mut self, key: &KeyEvent) -> bool {
        let Focus::Pane(id) = self.focus else {
            return false;
        };
        let cx = self.pane_cx(id);
        let Some(pane) = self.panes.get_mut(&id) else {
            return false;
        };
        let asked = pane.kind.view_mut().on_key(key, &cx);
        match asked {
            PaneAction::Ignored => false,
            PaneAction::Done => true,
            other => {
                self.pane_asked(id, &other);
                true
            }
        }
    }

    /// Carries out what a pane's own key asked (the tunnels table's).
    pub(super) fn pane_asked(&mut self, id: PaneId, asked: &PaneAction) {
        match asked {
            PaneAction::Leave => {
                self.close_pane(id);
                self.focus = Focus::List;
            }
            PaneAction::ClearFailedTunnels => {
                let before = self.tunnels.len();
                self.tunnels.retain(|t| !t.failed());
                let cleared = before - self.tunnels.len();
                let cx = self.pane_cx(id);
                if let Some(pane) = self.panes.get_mut(&id) {
                    // Keeps the selection on a row.
                    pane.kind.view_mut().scroll(0, false, &cx);
                }
                if cleared == 0 {
                    self.info("no failed tunnels to clear");
                } else {
                    self.info(format!("cleared {cleared} failed tunnel(s)"));
                }
            }
            _ => {}
        }
    }

    /// `t`: the tunnel prompt for the execution keys act on, prefilled with
    /// debugpy's port, or a free local port for it when that one is busy
    /// here; the agent is asked which ports listen.
    pub(super) fn tunnel_prompt(&mut self) {
        let Some(row) = self.require_ssh() else {
            return;
        };
        self.effects.push(Effect::FetchPorts(row.exec.id.clone()));
        let prefill = tunnel_prefill(DEFAULT_TUNNEL_PORT, self.port_free);
        if prefill != DEFAULT_TUNNEL_PORT.to_string() {
            self.info(format!(
                "local port {DEFAULT_TUNNEL_PORT} is in use on this machine; proposing {prefill}"
            ));
        }
        self.popup = Some(Popup::prompt(
            PromptKind::Tunnel {
                exec_id: row.exec.id,
                ports: Vec::new(),
            },
            &prefill,
        ));
    }

    /// Parses a tunnel spec and asks the runtime to open it.
    pub(super) fn start_tunnel(&mut self, exec_id: String, text: &str) {
        let spec: TunnelSpec = match text.parse() {
            Ok(s) => s,
            Err(e) => {
                self.error(e);
                return;
            }
        };
        let Some(row) = self.row(&exec_id).cloned() else {
            return;
        };
        // A busy local port: the prompt comes back with a free one written
        // out, rather than a tunnel that fails.
        let loopback = spec.bind.is_none_or(|b| b == LOOPBACK);
        if loopback && spec.local_port != 0 && !(self.port_free)(spec.local_port) {
            let offer = with_local_port(
                &spec,
                free_port_near(spec.local_port, self.port_free).unwrap_or(0),
            );
            self.error(format!(
                "local port {} is in use on this machine; Enter opens {offer} instead",
                spec.local_port
            ));
            self.effects.push(Effect::FetchPorts(exec_id.clone()));
            self.popup = Some(Popup::prompt(
                PromptKind::Tunnel {
                    exec_id,
                    ports: Vec::new(),
                },
                &offer,
            ));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.tunnels.push(TunnelRow {
            id,
            exec_label: row.label(),
            exec_id: exec_id.clone(),
            spec: spec.clone(),
            tunnel: None,
            state: TunnelState::Listening,
            last_error: None,
        });
        self.effects.push(Effect::OpenTunnel { id, exec_id, spec });
        self.info(format!(
            "opening tunnel {text} for {}; T lists tunnels",
            row.label()
        ));
    }

    /// Opens a command pane and asks the runtime to run the command.
    pub(super) fn run_command(&mut self, exec_id: String, command: String) {
        let Some(row) = self.row(&exec_id).cloned() else {
            return;
        };
        if !command.trim().is_empty() {
            self.history.retain(|h| h != &command);
            self.history.push(command.clone());
        }
        let id = self.add_pane(
            Some(&row),
            PaneKind::Command(CommandPane::new(command.clone())),
        );
        self.effects.push(Effect::RunCommand {
            pane: id,
            exec_id,
            command,
        });
    }

    /// The `ssh` command that reaches the execution as the console does.
    pub(super) fn ssh_command_line(&self, row: &ExecRow) -> Option<String> {
        let ep = row.endpoint.as_ref()?;
        let user = ep
            .user
            .as_deref()
            .unwrap_or(crate::ssh::target::DEFAULT_USER);
        Some(format!(
            "ssh -i {} -p {} {user}@{} -t /bin/bash",
            self.key_path, ep.port, ep.host
        ))
    }
}
