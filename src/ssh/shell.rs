//! An interactive session in the current terminal, as `ssh -t` gives:
//! raw mode, window-size changes forwarded, the remote exit code returned,
//! and the terminal restored on every way out.

use std::io::IsTerminal as _;

use russh::ChannelMsg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use super::client::{Session, SshError};
use super::exec::{signal_name, RemoteExit};

/// Puts the terminal in raw mode and restores it when dropped, which also
/// happens on early returns and unwinding panics.
pub struct RawMode {
    active: bool,
}

impl RawMode {
    /// Enables raw mode when stdin is a terminal.
    pub fn enable() -> std::io::Result<Self> {
        let active = std::io::stdin().is_terminal();
        if active {
            crossterm::terminal::enable_raw_mode()?;
        }
        Ok(RawMode { active })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.active {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// Restores the terminal before the default panic message, so a panic
/// never leaves the user's terminal in raw mode.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::terminal::disable_raw_mode();
        previous(info);
    }));
}

fn terminal_size() -> (u32, u32) {
    crossterm::terminal::size()
        .map(|(c, r)| (u32::from(c), u32::from(r)))
        .unwrap_or((80, 24))
}

/// Runs a shell (or `command`) on a PTY, wired to this terminal.
pub async fn interactive(session: &Session, command: Option<&str>) -> Result<RemoteExit, SshError> {
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
    let (cols, rows) = terminal_size();
    let channel = session.handle.channel_open_session().await?;
    channel
        .request_pty(true, &term, cols, rows, 0, 0, &[])
        .await?;
    match command {
        Some(c) => channel.exec(true, c.as_bytes()).await?,
        None => channel.request_shell(true).await?,
    }
    let (mut rx, tx) = channel.split();

    let mut winch = signal(SignalKind::window_change()).map_err(russh::Error::from)?;
    let mut term_sig = signal(SignalKind::terminate()).map_err(russh::Error::from)?;
    let mut hup = signal(SignalKind::hangup()).map_err(russh::Error::from)?;
    let _raw = RawMode::enable().map_err(russh::Error::from)?;

    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    let mut exit = RemoteExit::Unknown;
    loop {
        tokio::select! {
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    let _ = stdout.write_all(&data).await;
                    let _ = stdout.flush().await;
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let _ = stderr.write_all(&data).await;
                    let _ = stderr.flush().await;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => exit = RemoteExit::Code(exit_status),
                Some(ChannelMsg::ExitSignal { signal_name: s, .. }) => exit = RemoteExit::Signal(signal_name(&s)),
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
            n = stdin.read(&mut buf), if stdin_open => match n {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = tx.eof().await;
                }
                Ok(n) => {
                    if tx.data_bytes(bytes::Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            },
            _ = winch.recv() => {
                let (cols, rows) = terminal_size();
                let _ = tx.window_change(cols, rows, 0, 0).await;
            }
            _ = term_sig.recv() => break,
            _ = hup.recv() => break,
        }
    }
    Ok(exit)
}
