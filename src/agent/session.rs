//! One SSH session channel: a shell, a command or a porthole subsystem.
//!
//! Each channel runs in its own task that owns the channel's message
//! stream, so requests, input and the process's end are handled in order
//! and one busy channel never waits on another.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId, ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use super::groups::{kill_tree, Groups};
use super::passwd::Account;
use super::state::{AgentState, LingerRequest};
use super::status::{self, LINGER_SUBSYSTEM, STATUS_SUBSYSTEM};

/// After the process exits, how long its output may keep flowing (from
/// children that still hold the pipe) before the tree is killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Exit status of a failed spawn, as a shell reports "command not found".
const SPAWN_FAILED: u32 = 127;

/// Everything a session needs from its connection.
#[derive(Clone)]
pub struct SessionContext {
    /// The agent's shared state (status and linger).
    pub state: Arc<AgentState>,
    /// The account sessions run as.
    pub account: Arc<Account>,
    /// The connection's process groups.
    pub groups: Groups,
    /// The connection's handle, for exit-signal.
    pub handle: Handle,
    /// Client address, for SSH_CONNECTION.
    pub peer: Option<SocketAddr>,
    /// Server address, for SSH_CONNECTION.
    pub local: Option<SocketAddr>,
}

/// A pty request remembered until the shell or command starts.
struct PtyRequest {
    term: String,
    cols: u16,
    rows: u16,
}

/// How a process ended, as SSH reports it.
enum Exit {
    Status(u32),
    Signal(Sig, bool),
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Status(code as u32),
            (None, Some(sig)) => Exit::Signal(ssh_signal(sig), status.core_dumped()),
            (None, None) => Exit::Status(1),
        }
    }
}

fn ssh_signal(sig: i32) -> Sig {
    use nix::sys::signal::Signal as S;
    match S::try_from(sig) {
        Ok(S::SIGABRT) => Sig::ABRT,
        Ok(S::SIGALRM) => Sig::ALRM,
        Ok(S::SIGFPE) => Sig::FPE,
        Ok(S::SIGHUP) => Sig::HUP,
        Ok(S::SIGILL) => Sig::ILL,
        Ok(S::SIGINT) => Sig::INT,
        Ok(S::SIGKILL) => Sig::KILL,
        Ok(S::SIGPIPE) => Sig::PIPE,
        Ok(S::SIGQUIT) => Sig::QUIT,
        Ok(S::SIGSEGV) => Sig::SEGV,
        Ok(S::SIGTERM) => Sig::TERM,
        Ok(S::SIGUSR1) => Sig::USR1,
        Ok(other) => Sig::Custom(other.as_str().trim_start_matches("SIG").to_string()),
        Err(_) => Sig::Custom(sig.to_string()),
    }
}

fn unix_signal(sig: &Sig) -> Option<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal as S;
    Some(match sig {
        Sig::ABRT => S::SIGABRT,
        Sig::ALRM => S::SIGALRM,
        Sig::FPE => S::SIGFPE,
        Sig::HUP => S::SIGHUP,
        Sig::ILL => S::SIGILL,
        Sig::INT => S::SIGINT,
        Sig::KILL => S::SIGKILL,
        Sig::PIPE => S::SIGPIPE,
        Sig::QUIT => S::SIGQUIT,
        Sig::SEGV => S::SIGSEGV,
        Sig::TERM => S::SIGTERM,
        Sig::USR1 => S::SIGUSR1,
        Sig::Custom(name) => format!("SIG{name}").parse().ok()?,
    })
}

/// Where the client's input goes.
enum Input {
    Pty(pty_process::OwnedWritePty),
    Pipe(Option<ChildStdin>),
}

/// A running process: its input, its group and the task that waits for its
/// end and for its output to drain.
struct Running {
    input: Input,
    pgid: i32,
    done: JoinHandle<Exit>,
}

/// Runs one session channel until it closes.
pub async fn run(channel: Channel<Msg>, ctx: SessionContext) {
    let id = channel.id();
    let (mut rx, tx) = channel.split();
    let mut pty: Option<PtyRequest> = None;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut running: Option<Running> = None;
    let mut linger_input: Option<Vec<u8>> = None;
    // Subscribed when a PTY session starts: a person reads it.
    let mut notices: Option<tokio::sync::broadcast::Receiver<String>> = None;

    loop {
        let msg = match running.as_mut() {
            Some(r) => tokio::select! {
                msg = rx.wait() => msg,
                exit = &mut r.done => {
                    let exit = exit.unwrap_or(Exit::Status(1));
                    finish(&tx, &ctx.handle, id, exit).await;
                    break;
                }
                Some(notice) = next_notice(&mut notices) => {
                    let text = format!("\r\n*** {notice} ***\r\n");
                    let _ = tx.data_bytes(Bytes::from(text)).await;
                    continue;
                }
            },
            None => rx.wait().await,
        };
        let Some(msg) = msg else { break };
        match msg {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            } => {
                pty = Some(PtyRequest {
                    term,
                    cols: clamp(col_width),
                    rows: clamp(row_height),
                });
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => {
                env.push((variable_name, variable_value));
            }
            ChannelMsg::RequestShell { .. } | ChannelMsg::Exec { .. } if running.is_none() => {
                let command = match msg {
                    ChannelMsg::Exec { command, .. } => {
                        Some(String::from_utf8_lossy(&command).into_owned())
                    }
                    _ => None,
                };
                match start(&ctx, &tx, pty.as_ref(), &env, command.as_deref()) {
                    Ok(r) => {
                        if pty.is_some() {
                            notices = Some(ctx.state.notices());
                        }
                        ctx.groups.register(id, r.pgid);
                        running = Some(r);
                    }
                    Err(e) => {
                        let msg = format!(
                            "porthole-agent: cannot start {}: {e}\r\n",
                            ctx.account.shell.display()
                        );
                        let _ = tx.extended_data_bytes(1, Bytes::from(msg)).await;
                        finish(&tx, &ctx.handle, id, Exit::Status(SPAWN_FAILED)).await;
                        break;
                    }
                }
            }
            ChannelMsg::RequestSubsystem { name, .. } if running.is_none() => {
                if name == STATUS_SUBSYSTEM {
                    let doc = serde_json::to_string_pretty(&status::snapshot(&ctx.state))
                        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                    let _ = tx.data_bytes(Bytes::from(doc + "\n")).await;
                    finish(&tx, &ctx.handle, id, Exit::Status(0)).await;
                    break;
                } else if name == LINGER_SUBSYSTEM {
                    linger_input = Some(Vec::new());
                } else {
                    // The handler already answered "failure"; the client closes.
                }
            }
            ChannelMsg::Data { data } => {
                if let Some(buf) = linger_input.as_mut() {
                    buf.extend_from_slice(&data);
                    if buf.contains(&b'\n') || buf.len() > 4096 {
                        answer_linger(&ctx, &tx, id, buf).await;
                        break;
                    }
                } else if let Some(r) = running.as_mut() {
                    write_input(&mut r.input, &data).await;
                }
            }
            ChannelMsg::Eof => {
                if let Some(buf) = linger_input.as_mut() {
                    answer_linger(&ctx, &tx, id, buf).await;
                    break;
                }
                if let Some(r) = running.as_mut() {
                    // Closing stdin is how EOF reaches a piped command; a
                    // terminal has no such thing, so a pty ignores it.
                    if let Input::Pipe(stdin) = &mut r.input {
                        *stdin = None;
                    }
                }
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                if let Some(Running {
                    input: Input::Pty(w),
                    ..
                }) = running.as_ref()
                {
                    let _ = w.resize(pty_process::Size::new(clamp(row_height), clamp(col_width)));
                }
            }
            ChannelMsg::Signal { signal } => {
                if let (Some(r), Some(sig)) = (running.as_ref(), unix_signal(&signal)) {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(r.pgid), sig);
                }
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    ctx.groups.kill(id);
}

/// The next notice for a PTY session; pending forever without one.
async fn next_notice(
    notices: &mut Option<tokio::sync::broadcast::Receiver<String>>,
) -> Option<String> {
    let Some(rx) = notices.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(notice) => return Some(notice),
            // Missed some: the latest still says what matters.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return std::future::pending().await
            }
        }
    }
}

fn clamp(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

async fn write_input(input: &mut Input, data: &[u8]) {
    match input {
        Input::Pty(w) => {
            let _ = w.write_all(data).await;
        }
        Input::Pipe(stdin) => {
            if let Some(s) = stdin.as_mut() {
                if s.write_all(data).await.is_err() {
                    // The command stopped reading: drop further input.
                    *stdin = None;
                }
            }
        }
    }
}

async fn answer_linger(
    ctx: &SessionContext,
    tx: &russh::ChannelWriteHalf<Msg>,
    id: ChannelId,
    buf: &[u8],
) {
    let line = String::from_utf8_lossy(buf);
    let line = line.lines().next().unwrap_or("");
    let outcome = LingerRequest::parse(line).and_then(|req| ctx.state.apply(req));
    match outcome {
        Ok(()) => {
            let snap = status::snapshot(&ctx.state);
            let doc =
                serde_json::json!({ "ok": true, "linger": snap.linger, "command": snap.command });
            let _ = tx.data_bytes(Bytes::from(format!("{doc}\n"))).await;
            finish(tx, &ctx.handle, id, Exit::Status(0)).await;
        }
        Err(e) => {
            let _ = tx
                .extended_data_bytes(1, Bytes::from(format!("porthole-agent: {e}\n")))
                .await;
            finish(tx, &ctx.handle, id, Exit::Status(2)).await;
        }
    }
}

/// Reports how the process ended, then ends the channel.
async fn finish(tx: &russh::ChannelWriteHalf<Msg>, handle: &Handle, id: ChannelId, exit: Exit) {
    match exit {
        Exit::Status(code) => {
            let _ = tx.exit_status(code).await;
        }
        Exit::Signal(sig, core) => {
            let _ = handle
                .exit_signal_request(id, sig, core, String::new(), String::new())
                .await;
        }
    }
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// The environment of a session: the agent's own (so an image's PATH and
/// CUDA variables survive), the usual SSH variables, then the client's.
fn environment(
    ctx: &SessionContext,
    pty: Option<&PtyRequest>,
    requested: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    // A session without a pty has no terminal type to inherit.
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != "PORTHOLE_AUTHORIZED_KEYS" && (pty.is_some() || k != "TERM"))
        .collect();
    let account = &ctx.account;
    let mut set = |k: &str, v: OsString| {
        env.retain(|(key, _)| key != k);
        env.push((k.into(), v));
    };
    set("USER", account.name.clone().into());
    set("LOGNAME", account.name.clone().into());
    set("HOME", account.home.clone().into());
    set("SHELL", account.shell.clone().into());
    if let (Some(peer), Some(local)) = (ctx.peer, ctx.local) {
        set(
            "SSH_CONNECTION",
            format!(
                "{} {} {} {}",
                peer.ip(),
                peer.port(),
                local.ip(),
                local.port()
            )
            .into(),
        );
        set(
            "SSH_CLIENT",
            format!("{} {} {}", peer.ip(), peer.port(), local.port()).into(),
        );
    }
    if let Some(p) = pty {
        set("TERM", p.term.clone().into());
    }
    for (k, v) in requested {
        set(k, v.into());
    }
    env
}

/// Starts the shell (or `shell -c command`) on a pty or on pipes.
fn start(
    ctx: &SessionContext,
    tx: &russh::ChannelWriteHalf<Msg>,
    pty: Option<&PtyRequest>,
    env: &[(String, String)],
    command: Option<&str>,
) -> anyhow::Result<Running> {
    let shell = &ctx.account.shell;
    let args: Vec<&str> = command.map(|c| vec!["-c", c]).unwrap_or_default();
    let env = environment(ctx, pty, env);
    let cwd = std::env::current_dir().unwrap_or_else(|_| ctx.account.home.clone());

    if let Some(p) = pty {
        let (pty_master, pts) = pty_process::open()?;
        pty_master.resize(pty_process::Size::new(p.rows, p.cols))?;
        let child = pty_process::Command::new(shell)
            .args(&args)
            .env_clear()
            .envs(env)
            .current_dir(&cwd)
            .spawn(pts)?;
        let pgid = child_pid(&child)?;
        let (read, write) = pty_master.into_split();
        let out = tokio::spawn(pump(read, tx.make_writer()));
        let done = tokio::spawn(wait_and_drain(child, pgid, vec![out]));
        return Ok(Running {
            input: Input::Pty(write),
            pgid,
            done,
        });
    }

    let mut cmd = tokio::process::Command::new(shell);
    cmd.args(&args)
        .env_clear()
        .envs(env)
        .current_dir(&cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; a new session makes the command
    // a group leader (so its tree can be killed) without a controlling tty.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let pgid = child_pid(&child)?;
    let stdin = child.stdin.take();
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, tx.make_writer())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, tx.make_writer_ext(Some(1)))));
    }
    let done = tokio::spawn(wait_and_drain(child, pgid, pumps));
    Ok(Running {
        input: Input::Pipe(stdin),
        pgid,
        done,
    })
}

fn child_pid(child: &Child) -> anyhow::Result<i32> {
    child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| anyhow::anyhow!("the process exited before it could be tracked"))
}

/// Copies process output to the channel. A pty reports EIO once the last
/// process holding it is gone: that is its end of file.
async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Waits for the process, then for its output to drain; background
/// children still writing after a grace period are killed so the channel
/// can end (their buffered output is still delivered).
async fn wait_and_drain(mut child: Child, pgid: i32, pumps: Vec<JoinHandle<()>>) -> Exit {
    let status = child.wait().await;
    let mut drained = tokio::spawn(async move {
        for p in pumps {
            let _ = p.await;
        }
    });
    if tokio::time::timeout(DRAIN_GRACE, &mut drained)
        .await
        .is_err()
    {
        kill_tree(pgid);
        let _ = drained.await;
    }
    match status {
        Ok(s) => Exit::from(s),
        Err(_) => Exit::Status(1),
    }
}
