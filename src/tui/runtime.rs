//! Performs the app's effects in tokio tasks and reports back with
//! messages. Every network wait happens here, never in the UI loop.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use russh::ChannelMsg;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::action::{Effect, Msg, TunnelId};
use super::layout::PaneId;
use crate::source::follow::{LogFollower, Next};
use crate::source::scanner::{scan_linger, Endpoint, Linger, Scanner};
use crate::source::valohai::ExecutionFilter;
use crate::source::{ApiClient, Stream};
use crate::ssh::exec::{signal_name, RemoteExit};
use crate::ssh::identity::AuthOptions;
use crate::ssh::trust::HostTrust;
use crate::ssh::tunnel;
use crate::ssh::{self, ConnectOptions, Session, Target};

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

async fn poll_list(
    source: usize,
    client: ApiClient,
    tx: mpsc::Sender<Msg>,
    endpoints: Arc<Mutex<HashMap<String, Endpoint>>>,
    owners: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut backoff = LIST_POLL;
    // What was last said of each linger, so that a poll says only news.
    let mut lingers: HashMap<String, Linger> = HashMap::new();
    loop {
        let filter = ExecutionFilter {
            limit: Some(200),
            ..Default::default()
        };
        match client.executions(&filter).await {
            Ok(list) => {
                backoff = LIST_POLL;
                {
                    let mut map = owners.lock().unwrap_or_else(PoisonError::into_inner);
                    for e in &list {
                        map.insert(e.id.clone(), source);
                    }
                }
                // Announcements of running executions (and of finished ones
                // not scanned yet: a lingering agent still answers).
                let mut scans = Vec::new();
                // Running ones with an agent: the end of their log says
                // whether the command has ended and the agent lingers.
                let mut tails = Vec::new();
                for e in &list {
                    let known = endpoints
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains_key(&e.id);
                    if !e.status().is_finished() || !known {
                        scans.push(e.id.clone());
                    }
                    if known && !e.status().is_finished() {
                        tails.push(e.id.clone());
                    }
                }
                if tx.send(Msg::Executions(source, Ok(list))).await.is_err() {
                    return;
                }
                for id in scans.into_iter().take(50) {
                    if let Ok(status) = client.status_events(&id).await {
                        let mut scanner = Scanner::new();
                        for ev in &status.status_events {
                            scanner.feed(&ev.message);
                        }
                        if let Some(ep) = scanner.latest().cloned() {
                            publish(&endpoints, &tx, &id, ep).await;
                        }
                    }
                }
                for id in tails.into_iter().take(MAX_TAIL_SCANS) {
                    let Ok(page) = client.events(&id, LINGER_TAIL).await else {
                        continue;
                    };
                    let Some(linger) = page
                        .events
                        .iter()
                        .rev()
                        .find_map(|e| scan_linger(&e.message))
                    else {
                        continue;
                    };
                    if lingers.get(&id) != Some(&linger) {
                        lingers.insert(id.clone(), linger);
                        let _ = tx
                            .send(Msg::Linger {
                                exec_id: id,
                                linger,
                            })
                            .await;
                    }
                }
            }
            Err(e) => {
                let retry = e.is_retryable();
                if tx
                    .send(Msg::Executions(source, Err(e.to_string())))
                    .await
                    .is_err()
                {
                    return;
                }
                backoff = if retry {
                    (backoff * 2).min(MAX_BACKOFF)
                } else {
                    MAX_BACKOFF
                };
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn publish(
    endpoints: &Mutex<HashMap<String, Endpoint>>,
    tx: &mpsc::Sender<Msg>,
    id: &str,
    ep: Endpoint,
) {
    let changed = {
        let mut map = endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = map.get(id) != Some(&ep);
        map.insert(id.to_string(), ep.clone());
        changed
    };
    if changed {
        let _ = tx
            .send(Msg::Endpoint {
                exec_id: id.to_string(),
                endpoint: ep,
            })
            .await;
    }
}

/// Feeds a log pane: the log's tail first (as much as the pane keeps),
/// shown at once, then every new line. A burst larger than the pane
/// skips ahead (a notice says how much): memory follows the scrollback,
/// not the log.
async fn follow_log(
    client: ApiClient,
    keep: u64,
    exec_id: String,
    tx: mpsc::Sender<Msg>,
    endpoints: Arc<Mutex<HashMap<String, Endpoint>>>,
) {
    let keep = keep.max(1);
    let mut follower = LogFollower::tail(keep).with_max_gap(keep);
    let mut skipped = 0;
    let mut scanner = Scanner::new();
    let mut limit = follower.first_limit();
    let mut backoff = LOG_POLL;
    loop {
        match client.events(&exec_id, limit).await {
            Ok(page) => {
                backoff = LOG_POLL;
                let (mut fresh, next) = follower.accept(limit, &page);
                if follower.skipped() > skipped {
                    // Said in the log itself, where the lines are missing.
                    fresh.insert(
                        0,
                        crate::source::LogEvent {
                            time: crate::source::model::now_iso(),
                            stream: Stream::Status,
                            message: format!(
                                "porthole: {} lines skipped here (more than this pane keeps arrived at once; `porthole logs` has them all)",
                                follower.skipped() - skipped
                            ),
                        },
                    );
                    skipped = follower.skipped();
                }
                let mut linger = None;
                for e in &fresh {
                    if let Some(ep) = scanner.feed(&e.message) {
                        publish(&endpoints, &tx, &exec_id, ep).await;
                    }
                    linger = scan_linger(&e.message).or(linger);
                }
                if let Some(linger) = linger {
                    let exec_id = exec_id.clone();
                    let _ = tx.send(Msg::Linger { exec_id, linger }).await;
                }
                if !fresh.is_empty()
                    && tx
                        .send(Msg::Log {
                            exec_id: exec_id.clone(),
                            events: fresh,
                        })
                        .await
                        .is_err()
                {
                    return;
                }
                match next {
                    Next::FetchNow(l) => {
                        limit = l;
                        continue;
                    }
                    Next::Wait(l) => limit = l,
                }
            }
            Err(e) => {
                if tx
                    .send(Msg::LogError {
                        exec_id: exec_id.clone(),
                        error: e.to_string(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Connects, with errors worded for the console (which has no trust flags).
async fn connect(target: &Target, opts: &ConnectOptions) -> Result<Session, String> {
    ssh::connect(target, opts).await.map_err(|e| match e {
        ssh::SshError::HostKey(crate::ssh::trust::TrustError::Unknown { host, presented }) => {
            format!(
            "the host key of {host} ({presented}) is not known and this execution announced none; \
             check it and record it once with `porthole shell` in a terminal (it asks), then retry"
        )
        }
        other => other.to_string(),
    })
}

async fn run_shell(
    pane: PaneId,
    target: Target,
    opts: ConnectOptions,
    rows: u16,
    cols: u16,
    mut input: mpsc::UnboundedReceiver<ShellInput>,
    tx: mpsc::Sender<Msg>,
) {
    let result: Result<i32, String> = async {
        let session = connect(&target, &opts).await?;
        let channel = session.handle.channel_open_session().await.map_err(|e| e.to_string())?;
        channel
            .request_pty(true, "xterm-256color", u32::from(cols), u32::from(rows), 0, 0, &[])
            .await
            .map_err(|e| e.to_string())?;
        channel.request_shell(true).await.map_err(|e| e.to_string())?;
        let _ = tx.send(Msg::ShellConnected(pane)).await;
        let (mut rx, chan_tx) = channel.split();
        let mut exit = RemoteExit::Unknown;
        loop {
            tokio::select! {
                msg = rx.wait() => match msg {
                    // Awaiting the send is the backpressure: a flood of output
                    // waits for the UI instead of piling up in memory.
                    Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                        if tx.send(Msg::ShellOutput(pane, data)).await.is_err() {
                            break;
                        }
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => exit = RemoteExit::Code(exit_status),
                    Some(ChannelMsg::ExitSignal { signal_name: s, .. }) => exit = RemoteExit::Signal(signal_name(&s)),
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
                cmd = input.recv() => match cmd {
                    Some(ShellInput::Data(bytes)) => {
                        if chan_tx.data_bytes(Bytes::from(bytes)).await.is_err() {
                            break;
                        }
                    }
                    Some(ShellInput::Resize(r, c)) => {
                        let _ = chan_tx.window_change(u32::from(c), u32::from(r), 0, 0).await;
                    }
                    None => break,
                },
            }
        }
        drop(session);
        Ok(exit.code())
    }
    .await;
    let msg = match result {
        Ok(code) => Msg::ShellEnded(pane, code),
        Err(e) => Msg::ShellFailed(pane, e),
    };
    let _ = tx.send(msg).await;
}

async fn run_command(
    pane: PaneId,
    target: Target,
    opts: ConnectOptions,
    command: String,
    tx: mpsc::Sender<Msg>,
) {
    let result: Result<i32, String> = async {
        let session = connect(&target, &opts).await?;
        let channel = session
            .handle
            .channel_open_session()
            .await
            .map_err(|e| e.to_string())?;
        channel
            .exec(true, command.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let (mut rx, chan_tx) = channel.split();
        let _ = chan_tx.eof().await;
        let mut exit = RemoteExit::Unknown;
        while let Some(msg) = rx.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    let _ = tx
                        .send(Msg::CommandOutput(pane, Stream::Stdout, data))
                        .await;
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    let _ = tx
                        .send(Msg::CommandOutput(pane, Stream::Stderr, data))
                        .await;
                }
                ChannelMsg::ExitStatus { exit_status } => exit = RemoteExit::Code(exit_status),
                ChannelMsg::ExitSignal { signal_name: s, .. } => {
                    exit = RemoteExit::Signal(signal_name(&s))
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(exit.code())
    }
    .await;
    let msg = match result {
        Ok(code) => Msg::CommandDone(pane, code),
        Err(e) => Msg::CommandFailed(pane, e),
    };
    let _ = tx.send(msg).await;
}

async fn run_tunnel(
    id: TunnelId,
    target: Target,
    opts: ConnectOptions,
    spec: tunnel::TunnelSpec,
    tx: mpsc::Sender<Msg>,
) {
    let bound = match tunnel::bind_all(std::slice::from_ref(&spec), tunnel::LOOPBACK).await {
        Ok(b) => b,
        Err(e) => {
            let _ = tx.send(Msg::TunnelFailed(id, e.to_string())).await;
            return;
        }
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (tunnels, _set) = match tunnel::serve(target, opts, bound, events_tx).await {
        Ok(t) => t,
        Err(e) => {
            let _ = tx.send(Msg::TunnelFailed(id, e.to_string())).await;
            return;
        }
    };
    if let Some(t) = tunnels.first() {
        let _ = tx.send(Msg::TunnelUp(id, t.clone())).await;
    }
    // `_set` lives as long as this task: aborting it stops the tunnel.
    while let Some(event) = events.recv().await {
        if tx.send(Msg::Tunnel(id, event)).await.is_err() {
            return;
        }
    }
}

async fn ask_linger(
    label: &str,
    target: Target,
    opts: ConnectOptions,
    request: crate::agent::state::LingerRequest,
) -> Result<String, String> {
    let session = connect(&target, &opts)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    crate::commands::linger::ask(&session, label, request)
        .await
        .map_err(|e| format!("{label}: {e:#}"))?
}

async fn fetch_ports(exec_id: String, target: Target, opts: ConnectOptions, tx: mpsc::Sender<Msg>) {
    let Ok(session) = connect(&target, &opts).await else {
        return;
    };
    let Ok(ports) = listening_ports(&session).await else {
        return;
    };
    let _ = tx.send(Msg::AgentPorts { exec_id, ports }).await;
}

/// Listening ports from the agent's status subsystem (plain sshd has none).
async fn listening_ports(session: &Session) -> Result<Vec<u16>, russh::Error> {
    let mut channel = session.handle.channel_open_session().await?;
    channel
        .request_subsystem(true, "porthole-status@porthole")
        .await?;
    let mut body = Vec::new();
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => body.extend_from_slice(&data),
            ChannelMsg::Close | ChannelMsg::Eof | ChannelMsg::Failure => break,
            _ => {}
        }
    }
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut ports: Vec<u16> = doc["listening"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["port"].as_u64().and_then(|p| u16::try_from(p).ok()))
                .collect()
        })
        .unwrap_or_default();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}
