//! Performs the app's effects in tokio tasks and reports back with
//! messages. Every network wait happens here, never in the UI loop.

mod sessions;
mod sources;

use sessions::{ask_linger, fetch_ports, run_command, run_shell, run_tunnel};
use sources::{follow_log, poll_list};

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::action::{Effect, Msg, TunnelId};
use super::layout::PaneId;
use crate::source::scanner::Endpoint;
use crate::source::ApiClient;
use crate::ssh::identity::AuthOptions;
use crate::ssh::trust::HostTrust;
use crate::ssh::{self, ConnectOptions, Target};

/// How often the list refreshes.
const LIST_POLL: Duration = Duration::from_secs(2);
/// How often a watched log is polled.
const LOG_POLL: Duration = Duration::from_secs(1);
/// Events read from the end of a running execution's log to learn of its
/// linger: once the command has ended, the agent's lines are the last.
const LINGER_TAIL: u64 = 20;
/// Running executions whose log ends are read per list poll.
const MAX_TAIL_SCANS: usize = 20;
/// How long a host-key question waits for the user.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the runtime needs to reach executions.
#[derive(Clone)]
pub struct Context {
    /// The sources' API clients, in list order.
    pub sources: Vec<ApiClient>,
    /// Keys for SSH.
    pub auth: AuthOptions,
    /// porthole's known-hosts file (for endpoints without an announced key).
    pub known_hosts: std::path::PathBuf,
    /// Connect timeout.
    pub timeout: Duration,
    /// How many of a log's last lines a log pane fetches first, and keeps
    /// at most (its scrollback).
    pub log_tail: usize,
}

enum ShellInput {
    Data(Vec<u8>),
    Resize(u16, u16),
}

/// The running tasks.
pub struct Runtime {
    tx: mpsc::Sender<Msg>,
    ctx: Arc<Context>,
    endpoints: Arc<Mutex<HashMap<String, Endpoint>>>,
    /// Which source each execution came from.
    owners: Arc<Mutex<HashMap<String, usize>>>,
    pollers: Vec<JoinHandle<()>>,
    logs: HashMap<String, JoinHandle<()>>,
    shells: HashMap<PaneId, (mpsc::UnboundedSender<ShellInput>, JoinHandle<()>)>,
    commands: HashMap<PaneId, JoinHandle<()>>,
    tunnels: HashMap<TunnelId, JoinHandle<()>>,
}

impl Runtime {
    /// A runtime reporting to `tx`.
    pub fn new(tx: mpsc::Sender<Msg>, ctx: Context) -> Self {
        Runtime {
            tx,
            ctx: Arc::new(ctx),
            endpoints: Arc::default(),
            owners: Arc::default(),
            pollers: Vec::new(),
            logs: HashMap::new(),
            shells: HashMap::new(),
            commands: HashMap::new(),
            tunnels: HashMap::new(),
        }
    }

    /// Starts one list poller per source.
    pub fn start(&mut self) {
        for (index, client) in self.ctx.sources.iter().enumerate() {
            self.pollers.push(tokio::spawn(poll_list(
                index,
                client.clone(),
                self.tx.clone(),
                self.endpoints.clone(),
                self.owners.clone(),
            )));
        }
    }

    /// Stops everything (sessions and tunnels close with their tasks).
    pub fn shutdown(&mut self) {
        let all = self
            .pollers
            .drain(..)
            .chain(self.logs.drain().map(|(_, t)| t))
            .chain(self.shells.drain().map(|(_, (_, t))| t))
            .chain(self.commands.drain().map(|(_, t)| t))
            .chain(self.tunnels.drain().map(|(_, t)| t));
        for task in all {
            task.abort();
        }
    }

    fn connect_options(&self, endpoint: &Endpoint) -> ConnectOptions {
        let trust = match &endpoint.host_key {
            Some(fp) => HostTrust::Pinned(fp.clone()),
            // No announced key (a platform's own sshd): porthole's known
            // hosts, and a question in the console for a new or changed key.
            None => HostTrust::KnownHosts {
                path: self.ctx.known_hosts.clone(),
                accept_new: false,
                accept_changed: false,
                ask: Some(self.ask()),
            },
        };
        ConnectOptions {
            trust,
            auth: self.ctx.auth.clone(),
            timeout: self.ctx.timeout,
        }
    }

    fn target(&self, exec_id: &str) -> Result<(Target, ConnectOptions), String> {
        let endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ep = endpoints
            .get(exec_id)
            .cloned()
            .ok_or_else(|| "the execution has not announced an SSH address yet".to_string())?;
        drop(endpoints);
        let user = ep
            .user
            .clone()
            .unwrap_or_else(|| ssh::target::DEFAULT_USER.to_string());
        let opts = self.connect_options(&ep);
        Ok((
            Target {
                user,
                host: ep.host,
                port: ep.port,
            },
            opts,
        ))
    }

    /// A trust question asked through the console. It runs on a blocking
    /// thread (the trust check is synchronous) and waits for the answer.
    fn ask(&self) -> crate::ssh::trust::Ask {
        let tx = self.tx.clone();
        Arc::new(move |text: &str| {
            let (reply, answer) = std::sync::mpsc::channel();
            let question = super::action::Question {
                text: text.to_string(),
                reply,
            };
            tx.blocking_send(Msg::Ask(question)).ok()?;
            // Unanswered for long, the connection gives up: that is a no.
            answer.recv_timeout(QUESTION_TIMEOUT).ok()
        })
    }

    /// Performs one effect.
    pub fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::FollowLog(exec_id) => {
                let owner = self
                    .owners
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&exec_id)
                    .copied();
                let client = owner.and_then(|i| self.ctx.sources.get(i)).cloned();
                if let (false, Some(client)) = (self.logs.contains_key(&exec_id), client) {
                    let task = tokio::spawn(follow_log(
                        client,
                        self.ctx.log_tail as u64,
                        exec_id.clone(),
                        self.tx.clone(),
                        self.endpoints.clone(),
                    ));
                    self.logs.insert(exec_id, task);
                }
            }
            Effect::UnfollowLog(exec_id) => {
                if let Some(t) = self.logs.remove(&exec_id) {
                    t.abort();
                }
            }
            Effect::OpenShell {
                pane,
                exec_id,
                rows,
                cols,
            } => {
                let (input_tx, input_rx) = mpsc::unbounded_channel();
                let tx = self.tx.clone();
                let task = match self.target(&exec_id) {
                    Ok((target, opts)) => {
                        tokio::spawn(run_shell(pane, target, opts, rows, cols, input_rx, tx))
                    }
                    Err(e) => tokio::spawn(async move {
                        let _ = tx.send(Msg::ShellFailed(pane, e)).await;
                    }),
                };
                self.shells.insert(pane, (input_tx, task));
            }
            Effect::ShellInput(pane, bytes) => {
                if let Some((input, _)) = self.shells.get(&pane) {
                    let _ = input.send(ShellInput::Data(bytes));
                }
            }
            Effect::ShellResize(pane, rows, cols) => {
                if let Some((input, _)) = self.shells.get(&pane) {
                    let _ = input.send(ShellInput::Resize(rows, cols));
                }
            }
            Effect::ClosePane(pane) => {
                if let Some((_, t)) = self.shells.remove(&pane) {
                    t.abort();
                }
                if let Some(t) = self.commands.remove(&pane) {
                    t.abort();
                }
            }
            Effect::RunCommand {
                pane,
                exec_id,
                command,
            } => {
                let tx = self.tx.clone();
                let task = match self.target(&exec_id) {
                    Ok((target, opts)) => {
                        tokio::spawn(run_command(pane, target, opts, command, tx))
                    }
                    Err(e) => tokio::spawn(async move {
                        let _ = tx.send(Msg::CommandFailed(pane, e)).await;
                    }),
                };
                if let Some(old) = self.commands.insert(pane, task) {
                    old.abort();
                }
            }
            Effect::OpenTunnel { id, exec_id, spec } => {
                let tx = self.tx.clone();
                let task = match self.target(&exec_id) {
                    Ok((target, opts)) => tokio::spawn(run_tunnel(id, target, opts, spec, tx)),
                    Err(e) => tokio::spawn(async move {
                        let _ = tx.send(Msg::TunnelFailed(id, e)).await;
                    }),
                };
                self.tunnels.insert(id, task);
            }
            Effect::StopTunnel(id) => {
                if let Some(t) = self.tunnels.remove(&id) {
                    t.abort();
                }
            }
            Effect::FetchPorts(exec_id) => {
                if let Ok((target, opts)) = self.target(&exec_id) {
                    tokio::spawn(fetch_ports(exec_id, target, opts, self.tx.clone()));
                }
            }
            Effect::Linger {
                exec_id,
                label,
                request,
            } => {
                let tx = self.tx.clone();
                let target = self.target(&exec_id);
                tokio::spawn(async move {
                    let answer = match target {
                        Ok((target, opts)) => ask_linger(&label, target, opts, request).await,
                        Err(e) => Err(format!("{label}: {e}")),
                    };
                    let _ = tx.send(Msg::Said(answer)).await;
                });
            }
            Effect::Copy(text) => {
                // OSC 52: the terminal (also over SSH or tmux) sets the clipboard.
                let b64 = base64::engine::general_purpose::STANDARD.encode(text);
                let mut out = std::io::stdout();
                let _ = write!(out, "\x1b]52;c;{b64}\x07");
                let _ = out.flush();
            }
        }
    }
}
