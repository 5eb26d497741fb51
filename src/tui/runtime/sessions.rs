//! Tasks that talk to an execution's SSH server: shells, commands,
//! tunnels, linger requests and the agent's listening ports.

use bytes::Bytes;
use russh::ChannelMsg;
use tokio::sync::mpsc;

use crate::source::Stream;
use crate::ssh::exec::{signal_name, RemoteExit};
use crate::ssh::tunnel;
use crate::ssh::{self, ConnectOptions, Session, Target};
use crate::tui::action::{AgentPort, Msg, TunnelId};
use crate::tui::layout::PaneId;

use super::ShellInput;

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

/// Runs a shell pane's session: connects, opens a PTY, and pumps its
/// input and output until either side ends.
pub(super) async fn run_shell(
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

/// Runs a command pane's command and reports its output and exit.
pub(super) async fn run_command(
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

/// Binds and serves a tunnel, reporting its state until the task is aborted.
pub(super) async fn run_tunnel(
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

/// Asks the agent to extend or release its linger; the answer, for the
/// status bar.
pub(super) async fn ask_linger(
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

/// Reports the agent's listening ports, for the tunnel prompt.
pub(super) async fn fetch_ports(
    exec_id: String,
    target: Target,
    opts: ConnectOptions,
    tx: mpsc::Sender<Msg>,
) {
    let Ok(session) = connect(&target, &opts).await else {
        return;
    };
    let Ok(ports) = listening_ports(&session).await else {
        return;
    };
    let _ = tx.send(Msg::AgentPorts { exec_id, ports }).await;
}

/// Listening ports from the agent's status subsystem (plain sshd has none).
async fn listening_ports(session: &Session) -> Result<Vec<AgentPort>, russh::Error> {
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
    Ok(parse_ports(&body))
}

/// The status document's listening ports, each once, named by its process
/// when one of its sockets has a name (older agents give none).
pub(crate) fn parse_ports(body: &[u8]) -> Vec<AgentPort> {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut ports: Vec<AgentPort> = doc["listening"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| {
                    let port = l["port"].as_u64().and_then(|p| u16::try_from(p).ok())?;
                    let process = l["process"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .map(|n| n.chars().filter(|c| !c.is_control()).take(32).collect());
                    Some(AgentPort { port, process })
                })
                .collect()
        })
        .unwrap_or_default();
    // Named first among a port's sockets, so that dedup keeps the name.
    ports.sort_by(|a, b| {
        a.port
            .cmp(&b.port)
            .then(b.process.is_some().cmp(&a.process.is_some()))
    });
    ports.dedup_by_key(|p| p.port);
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_carry_their_process_names() {
        let body = br#"{"listening": [
            {"address": "0.0.0.0", "port": 6006, "process": "tensorboard"},
            {"address": "::", "port": 5678, "process": null},
            {"address": "127.0.0.1", "port": 5678, "process": "python3"},
            {"address": "127.0.0.1", "port": 8080}
        ]}"#;
        let ports = parse_ports(body);
        let named = |port, name: Option<&str>| AgentPort {
            port,
            process: name.map(String::from),
        };
        assert_eq!(
            ports,
            vec![
                named(5678, Some("python3")),
                named(6006, Some("tensorboard")),
                named(8080, None),
            ]
        );
        assert!(parse_ports(b"not json").is_empty());
    }
}
