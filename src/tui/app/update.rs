//! Task reports ([`Msg`]) applied to the state.

use super::{App, ExecRow, Focus, Popup, SshState};
use crate::source::scanner::Linger;
use crate::source::{Execution, Stream};
use crate::ssh::tunnel::{TunnelEvent, TunnelState};
use crate::tui::action::{Effect, Msg};
use crate::tui::executions::{ended_notice, gone_text, ready_notice};
use crate::tui::layout::PaneId;
use crate::tui::panes::shell::ShellState;
use crate::tui::panes::{CommandPane, Pane, PaneKind, ShellPane};
use crate::tui::tunnels::{free_port_near, with_local_port};

impl App {
    /// Applies a task's report.
    pub fn update(&mut self, msg: Msg) {
        let was_dirty = self.dirty;
        self.dirty = true;
        match msg {
            Msg::Executions(source, Ok(list)) => {
                // A poll that brings nothing new must not cost a redraw:
                // idle CPU stays near zero with many panes open.
                let mine: Vec<&ExecRow> = self
                    .executions
                    .iter()
                    .filter(|r| r.source == source)
                    .collect();
                let same = !self.source_errors.contains_key(&source)
                    && list.len() == mine.len()
                    && list.iter().zip(&mine).all(|(n, o)| {
                        n.id == o.exec.id && n.status == o.exec.status && n.title == o.exec.title
                    });
                if same {
                    self.dirty = was_dirty;
                    return;
                }
                self.source_errors.remove(&source);
                let selected_id = self.visible().get(self.selected).map(|r| r.exec.id.clone());
                let (old, others): (Vec<ExecRow>, Vec<ExecRow>) =
                    std::mem::take(&mut self.executions)
                        .into_iter()
                        .partition(|r| r.source == source);
                let mut fresh = Vec::with_capacity(list.len());
                for exec in list {
                    let previous = old.iter().find(|r| r.exec.id == exec.id);
                    let endpoint = previous.and_then(|r| r.endpoint.clone());
                    let linger = previous.and_then(|r| r.linger);
                    if previous.is_some_and(|r| !r.exec.status().is_finished())
                        && exec.status().is_finished()
                    {
                        self.execution_ended(&exec);
                    }
                    fresh.push(ExecRow {
                        source,
                        exec,
                        endpoint,
                        linger,
                    });
                }
                // Sources in their order, each newest first as it sent them.
                self.executions = others;
                self.executions.extend(fresh);
                self.executions.sort_by_key(|r| r.source);
                if let Some(id) = selected_id {
                    if let Some(pos) = self.visible().iter().position(|r| r.exec.id == id) {
                        self.selected = pos;
                    }
                }
                self.selected = self.selected.min(self.visible().len().saturating_sub(1));
            }
            Msg::Executions(source, Err(e)) => {
                self.source_errors.insert(source, e);
            }
            Msg::Endpoint { exec_id, endpoint } => {
                let notice = ready_notice(&endpoint, &self.keymap);
                if let Some(row) = self.executions.iter_mut().find(|r| r.exec.id == exec_id) {
                    if row.endpoint.as_ref() == Some(&endpoint) {
                        return;
                    }
                    row.endpoint = Some(endpoint);
                }
                let ended = self
                    .row(&exec_id)
                    .is_some_and(|r| self.ssh_state(r) == SshState::Gone);
                if ended {
                    return;
                }
                for p in self.panes.values_mut() {
                    if let (PaneKind::Log(l), Some(id)) = (&mut p.kind, &p.exec_id) {
                        if *id == exec_id {
                            l.notice = Some(notice.clone());
                        }
                    }
                }
            }
            Msg::Log { exec_id, events } => {
                for p in self.panes.values_mut() {
                    if let (PaneKind::Log(l), Some(id)) = (&mut p.kind, &p.exec_id) {
                        if *id == exec_id {
                            l.push(&events);
                        }
                    }
                }
            }
            Msg::LogError { exec_id, error } => {
                for p in self.panes.values_mut() {
                    if let (PaneKind::Log(l), Some(id)) = (&mut p.kind, &p.exec_id) {
                        if *id == exec_id {
                            l.notice = Some(format!("cannot read the log: {error} (retrying)"));
                        }
                    }
                }
            }
            Msg::ShellConnected(id) => self.with_shell(id, |s| s.state = ShellState::Live),
            Msg::ShellOutput(id, bytes) => self.with_shell(id, |s| s.output(&bytes)),
            Msg::ShellEnded(id, code) => {
                self.with_shell(id, |s| {
                    s.state = ShellState::Ended(format!("shell exited with code {code}"))
                });
                if self.focus == Focus::Pane(id) {
                    self.interacting = false;
                }
            }
            Msg::ShellFailed(id, e) => {
                self.with_shell(id, |s| s.state = ShellState::Failed(e.clone()));
                if self.focus == Focus::Pane(id) {
                    self.interacting = false;
                }
                self.error(e);
            }
            Msg::CommandOutput(id, stream, bytes) => {
                self.with_command(id, |c| c.output(stream, &bytes))
            }
            Msg::CommandDone(id, code) => self.with_command(id, |c| c.done(code)),
            Msg::CommandFailed(id, e) => {
                self.with_command(id, |c| c.error = Some(e.clone()));
                self.error(e);
            }
            Msg::TunnelUp(id, tunnel) => {
                let local = tunnel.local;
                if let Some(t) = self.tunnels.iter_mut().find(|t| t.id == id) {
                    t.tunnel = Some(tunnel);
                    t.state = TunnelState::Up;
                    let text = format!("tunnel {} -> {} is up", local, t.spec_text());
                    self.info(text);
                }
            }
            Msg::Tunnel(id, event) => {
                if let Some(t) = self.tunnels.iter_mut().find(|t| t.id == id) {
                    match event {
                        TunnelEvent::State(s) => t.state = s,
                        TunnelEvent::ConnectionFailed { reason, .. } => t.last_error = Some(reason),
                    }
                }
            }
            Msg::TunnelFailed(id, e) => {
                let mut said = e.clone();
                if let Some(t) = self.tunnels.iter_mut().find(|t| t.id == id) {
                    t.state = TunnelState::Failed(e);
                    // Taken since the prompt checked it: name a free one.
                    let port = t.spec.local_port;
                    if port != 0 && t.spec.bind.is_none() && !(self.port_free)(port) {
                        if let Some(free) = free_port_near(port, self.port_free) {
                            said = format!(
                                "{said} ({} is free: t, then `{}`)",
                                free,
                                with_local_port(&t.spec, free)
                            );
                        }
                    }
                }
                self.error(said);
            }
            Msg::Ask(question) => {
                // A question waiting behind another popup answers "no" when
                // dropped; the help or a prompt can be reopened, so ask now.
                self.interacting = false;
                self.popup = Some(Popup::Ask(question));
            }
            Msg::Linger { exec_id, linger } => {
                let Some(row) = self.executions.iter_mut().find(|r| r.exec.id == exec_id) else {
                    return;
                };
                if row.linger == Some(linger) {
                    self.dirty = was_dirty;
                    return;
                }
                row.linger = Some(linger);
                if linger == Linger::Over {
                    if let Some(row) = self.row(&exec_id).cloned() {
                        self.agent_gone(&row);
                    }
                }
            }
            Msg::Said(Ok(text)) => self.info(text),
            Msg::Said(Err(text)) => self.error(text),
            Msg::AgentPorts { exec_id, ports } => {
                if let Some(Popup::Prompt(prompt)) = self.popup.as_mut() {
                    prompt.offer_ports(&exec_id, ports);
                }
            }
        }
    }

    /// An execution the list showed running has finished.
    fn execution_ended(&mut self, exec: &Execution) {
        let row = ExecRow {
            source: 0,
            exec: exec.clone(),
            endpoint: None,
            linger: None,
        };
        self.agent_gone(&row);
    }

    /// The execution has ended or its agent has stopped: its panes say so,
    /// and its tunnels stop rather than retry forever.
    fn agent_gone(&mut self, row: &ExecRow) {
        let exec = &row.exec;
        let note = ended_notice(exec, row.linger);
        for p in self.panes.values_mut() {
            if p.exec_id.as_deref() != Some(exec.id.as_str()) {
                continue;
            }
            p.kind.view_mut().execution_gone(&note);
        }
        let why = gone_text(row);
        let mut stopped = Vec::new();
        for t in self.tunnels.iter_mut().filter(|t| t.exec_id == exec.id) {
            if matches!(t.state, TunnelState::Failed(_)) {
                continue;
            }
            t.state = TunnelState::Failed(why.clone());
            stopped.push(t.id);
        }
        for id in stopped {
            self.effects.push(Effect::StopTunnel(id));
        }
    }

    /// Applies `f` to shell pane `id`, if it is one.
    fn with_shell(&mut self, id: PaneId, f: impl FnOnce(&mut ShellPane)) {
        if let Some(Pane {
            kind: PaneKind::Shell(s),
            ..
        }) = self.panes.get_mut(&id)
        {
            f(s);
        }
    }

    /// Applies `f` to command pane `id`, if it is one.
    fn with_command(&mut self, id: PaneId, f: impl FnOnce(&mut CommandPane)) {
        if let Some(Pane {
            kind: PaneKind::Command(c),
            ..
        }) = self.panes.get_mut(&id)
        {
            f(c);
        }
    }

    /// Counts output lines of a command pane per stream (tests).
    pub fn command_lines(&self, id: PaneId, stream: &Stream) -> usize {
        match self.panes.get(&id).map(|p| &p.kind) {
            Some(PaneKind::Command(c)) => c.lines.iter().filter(|l| &l.stream == stream).count(),
            _ => 0,
        }
    }
}
