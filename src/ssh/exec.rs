//! One command on the remote side, its output kept apart by stream and its
//! exit code carried back.

use bytes::Bytes;
use russh::{ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::client::{Session, SshError};

/// How a remote process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteExit {
    /// It exited with a code.
    Code(u32),
    /// It was killed by a signal.
    Signal(String),
    /// The channel closed without saying.
    Unknown,
}

impl RemoteExit {
    /// The local exit code: the remote one, 128+N for signal N, 255 when
    /// the server said nothing (as OpenSSH's client does).
    pub fn code(&self) -> i32 {
        match self {
            RemoteExit::Code(c) => i32::try_from(*c).unwrap_or(255),
            RemoteExit::Signal(name) => 128 + signal_number(name).unwrap_or(127),
            RemoteExit::Unknown => 255,
        }
    }
}

fn signal_number(name: &str) -> Option<i32> {
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// The name of an SSH signal as the protocol spells it.
pub fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name,
    }
    .to_string()
}

/// Runs `command` without a PTY: `stdin` (if any) is sent and then closed,
/// stdout and stderr are written to their own sinks.
pub async fn run<I, O, E>(
    session: &Session,
    command: &str,
    stdin: Option<I>,
    mut stdout: O,
    mut stderr: E,
) -> Result<RemoteExit, SshError>
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let channel = session.handle.channel_open_session().await?;
    channel.exec(true, command.as_bytes()).await?;
    let (mut rx, tx) = channel.split();
    let feeder = match stdin {
        Some(mut input) => {
            let mut writer = tx.make_writer();
            Some(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut input, &mut writer).await;
                // Shutting the writer down sends EOF.
                let _ = writer.shutdown().await;
            }))
        }
        None => {
            tx.eof().await?;
            None
        }
    };
    let mut exit = RemoteExit::Unknown;
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => write(&mut stdout, &data).await,
            ChannelMsg::ExtendedData { data, ext: 1 } => write(&mut stderr, &data).await,
            ChannelMsg::ExitStatus { exit_status } => exit = RemoteExit::Code(exit_status),
            ChannelMsg::ExitSignal {
                signal_name: sig, ..
            } => exit = RemoteExit::Signal(signal_name(&sig)),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if let Some(f) = feeder {
        f.abort();
    }
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
    Ok(exit)
}

async fn write(to: &mut (impl AsyncWrite + Unpin), data: &Bytes) {
    // A closed local pipe (`| head`) must not abort reading the exit code.
    let _ = to.write_all(data).await;
}

/// Sends `input` to the subsystem `name` (then EOF) and collects its
/// answer: (exit, stdout, stderr).
pub async fn subsystem(
    session: &Session,
    name: &str,
    input: &[u8],
) -> Result<(RemoteExit, Vec<u8>, Vec<u8>), SshError> {
    let channel = session.handle.channel_open_session().await?;
    channel.request_subsystem(true, name).await?;
    channel.data(input).await?;
    channel.eof().await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut exit = RemoteExit::Unknown;
    let mut channel = channel;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => exit = RemoteExit::Code(exit_status),
            // A server without the subsystem refuses the request.
            ChannelMsg::Failure => break,
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok((exit, out, err))
}

/// Collects a command's whole output: (exit, stdout, stderr).
pub async fn capture(
    session: &Session,
    command: &str,
) -> Result<(RemoteExit, Vec<u8>, Vec<u8>), SshError> {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let exit = run(
        session,
        command,
        None::<tokio::io::Empty>,
        &mut out,
        &mut err,
    )
    .await?;
    Ok((exit, out, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_openssh() {
        assert_eq!(RemoteExit::Code(3).code(), 3);
        assert_eq!(RemoteExit::Signal("TERM".into()).code(), 143);
        assert_eq!(RemoteExit::Signal("KILL".into()).code(), 137);
        assert_eq!(RemoteExit::Unknown.code(), 255);
    }
}
