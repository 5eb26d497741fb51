//! Managed `-L` tunnels that survive a dropped connection: listeners stay
//! bound, the connection comes back with backoff, and new local
//! connections wait (bounded) while it is down.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use russh::ChannelOpenFailure;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::client::{connect, ConnectOptions, Session, SshError};
use super::target::Target;
use crate::agent::logsafe::Untrusted;

/// Remote host when a spec names none: the execution's own loopback.
pub const DEFAULT_REMOTE_HOST: &str = "localhost";
/// How long a new local connection waits for a connection that is down.
pub const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(15);
/// Copy buffer per direction of a forwarded connection.
pub const COPY_BUFFER: usize = 256 * 1024;
/// Reconnect backoff bounds.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One `-L` spec: `REMOTE`, `LOCAL:REMOTE`, `LOCAL:HOST:REMOTE`, `:REMOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Local address to listen on, when the spec names one (ssh's
    /// `BIND:PORT:HOST:PORT`); otherwise the command's `--bind`, and
    /// 127.0.0.1 unless asked.
    pub bind: Option<IpAddr>,
    /// Local port; 0 picks a free one.
    pub local_port: u16,
    /// Host to reach from the remote side.
    pub remote_host: String,
    /// Port to reach from the remote side.
    pub remote_port: u16,
}

impl FromStr for TunnelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let port = |p: &str, what: &str| match p.parse::<u64>() {
            Ok(n) if n > u64::from(u16::MAX) => Err(format!(
                "`{p}` in tunnel spec `{s}` is not a {what} port: ports are 1-65535"
            )),
            Ok(n) => Ok(n as u16),
            Err(_) => Err(format!("`{p}` in tunnel spec `{s}` is not a {what} port")),
        };
        let remote = |p: &str| {
            port(p, "remote").and_then(|v| {
                if v == 0 {
                    Err(format!(
                        "tunnel spec `{s}`: the remote port cannot be 0 (ports are 1-65535)"
                    ))
                } else {
                    Ok(v)
                }
            })
        };
        let local = |p: &str| {
            if p.is_empty() {
                Ok(0)
            } else {
                port(p, "local")
            }
        };
        let host = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_string();
        let bind = |b: &str| -> Result<IpAddr, String> {
            match host(b).as_str() {
                "localhost" => Ok(LOOPBACK),
                "*" => Err(format!(
                    "tunnel spec `{s}`: say 0.0.0.0 (or ::) to listen on every interface"
                )),
                b => b.parse().map_err(|_| {
                    format!("`{b}` in tunnel spec `{s}` is not a local IP address to listen on")
                }),
            }
        };
        let parts = split_spec(s);
        let (bind_addr, local_port, remote_host, remote_port) = match parts.as_slice() {
            [r] => {
                let r = remote(r)?;
                (None, r, DEFAULT_REMOTE_HOST.to_string(), r)
            }
            ["", r] => (None, 0, DEFAULT_REMOTE_HOST.to_string(), remote(r)?),
            [l, r] => (None, local(l)?, DEFAULT_REMOTE_HOST.to_string(), remote(r)?),
            [l, h, r] if !h.is_empty() => (None, local(l)?, host(h), remote(r)?),
            // ssh's own `-L [BIND:]PORT:HOST:HOSTPORT`.
            [b, l, h, r] if !h.is_empty() => (
                (!b.is_empty()).then(|| bind(b)).transpose()?,
                local(l)?,
                host(h),
                remote(r)?,
            ),
            _ => {
                return Err(format!(
                    "`{s}` is not a tunnel spec: use REMOTE, LOCAL:REMOTE, LOCAL:HOST:REMOTE, \
                     :REMOTE or BIND:LOCAL:HOST:REMOTE"
                ))
            }
        };
        Ok(TunnelSpec {
            bind: bind_addr,
            local_port,
            remote_host,
            remote_port,
        })
    }
}

/// Splits a spec at its colons, except inside `[...]` (an IPv6 address).
fn split_spec(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut from = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[from..]);
    parts
}

/// A tunnel's state as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Bound locally, connection not up yet.
    Listening,
    /// Connected: local connections are forwarded.
    Up,
    /// The connection dropped; trying again.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// Why the last one failed.
        reason: String,
    },
    /// Given up for good (host key or key refused).
    Failed(String),
}

impl fmt::Display for TunnelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelState::Listening => write!(f, "listening"),
            TunnelState::Up => write!(f, "up"),
            TunnelState::Reconnecting { attempt, reason } => {
                write!(f, "reconnecting (attempt {attempt}): {reason}")
            }
            TunnelState::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

/// Counters of one tunnel, updated as bytes flow.
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Local connections accepted.
    pub connections: AtomicU64,
    /// Local connections open now.
    pub active: AtomicU64,
    /// Bytes from local clients to the remote side.
    pub bytes_up: AtomicU64,
    /// Bytes from the remote side to local clients.
    pub bytes_down: AtomicU64,
}

/// A bound tunnel.
#[derive(Debug)]
pub struct Tunnel {
    /// What was asked.
    pub spec: TunnelSpec,
    /// Where it listens.
    pub local: SocketAddr,
    /// Its counters.
    pub stats: Arc<TunnelStats>,
}

impl fmt::Display for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}:{}",
            self.local, self.spec.remote_host, self.spec.remote_port
        )
    }
}

/// Something that happened to a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// The shared connection's state changed (applies to every tunnel).
    State(TunnelState),
    /// A local connection could not be forwarded.
    ConnectionFailed {
        /// Index of the tunnel.
        tunnel: usize,
        /// Why.
        reason: String,
    },
}

/// Why tunnels could not start.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The local port is taken.
    #[error("local port {port} on {bind} is already in use; pick another with LOCAL:REMOTE, or :REMOTE for any free port")]
    PortInUse {
        /// The address.
        bind: IpAddr,
        /// The port.
        port: u16,
    },
    /// Two specs want the same local port.
    #[error("local port {port} on {bind} is given twice")]
    GivenTwice {
        /// The address.
        bind: IpAddr,
        /// The port.
        port: u16,
    },
    /// Binding failed otherwise.
    #[error("cannot listen on {bind}:{port}: {source}")]
    Bind {
        /// The address.
        bind: IpAddr,
        /// The port.
        port: u16,
        /// The socket error.
        source: std::io::Error,
    },
    /// The first connection failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
}

/// Binds every spec on `bind` (127.0.0.1 unless asked), before anything
/// else happens, so a taken port is reported first.
pub async fn bind_all(
    specs: &[TunnelSpec],
    bind: IpAddr,
) -> Result<Vec<(Tunnel, TcpListener)>, TunnelError> {
    let default_bind = bind;
    let mut wanted = std::collections::HashSet::new();
    for spec in specs.iter().filter(|s| s.local_port != 0) {
        let bind = spec.bind.unwrap_or(default_bind);
        if !wanted.insert((bind, spec.local_port)) {
            return Err(TunnelError::GivenTwice {
                bind,
                port: spec.local_port,
            });
        }
    }
    let mut out = Vec::new();
    for spec in specs {
        let bind = spec.bind.unwrap_or(default_bind);
        let listener = TcpListener::bind((bind, spec.local_port))
            .await
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AddrInUse {
                    TunnelError::PortInUse {
                        bind,
                        port: spec.local_port,
                    }
                } else {
                    TunnelError::Bind {
                        bind,
                        port: spec.local_port,
                        source,
                    }
                }
            })?;
        let local = listener.local_addr().map_err(|source| TunnelError::Bind {
            bind,
            port: spec.local_port,
            source,
        })?;
        out.push((
            Tunnel {
                spec: spec.clone(),
                local,
                stats: Arc::default(),
            },
            listener,
        ));
    }
    Ok(out)
}

/// The default bind address.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Serves bound tunnels over a self-healing connection until dropped.
/// Events go to `events`; the returned handles stop everything on drop.
pub async fn serve(
    target: Target,
    opts: ConnectOptions,
    bound: Vec<(Tunnel, TcpListener)>,
    events: mpsc::UnboundedSender<TunnelEvent>,
) -> Result<(Vec<Arc<Tunnel>>, TunnelSet), TunnelError> {
    let first = connect(&target, &opts).await?;
    let (current, watcher) = watch::channel(Some(Arc::new(first)));
    let _ = events.send(TunnelEvent::State(TunnelState::Up));
    let mut tasks = vec![tokio::spawn(supervise(
        target,
        opts,
        current,
        events.clone(),
    ))];
    let mut tunnels = Vec::new();
    for (index, (tunnel, listener)) in bound.into_iter().enumerate() {
        let tunnel = Arc::new(tunnel);
        tunnels.push(tunnel.clone());
        tasks.push(tokio::spawn(accept_loop(
            index,
            tunnel,
            listener,
            watcher.clone(),
            events.clone(),
        )));
    }
    Ok((tunnels, TunnelSet { tasks }))
}

/// The tasks behind a set of tunnels; dropping it closes them.
pub struct TunnelSet {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TunnelSet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Permanent failures: retrying cannot help.
fn is_permanent(e: &SshError) -> bool {
    matches!(e, SshError::HostKey(_) | SshError::Auth(_))
}

async fn supervise(
    target: Target,
    opts: ConnectOptions,
    current: watch::Sender<Option<Arc<Session>>>,
    events: mpsc::UnboundedSender<TunnelEvent>,
) {
    loop {
        // Wait for the live connection to end.
        let live = current.borrow().clone();
        if let Some(session) = live {
            session.closed().await;
        }
        current.send_replace(None);
        let mut attempt = 0u32;
        let mut delay = BACKOFF_FIRST;
        let mut reason = "connection lost".to_string();
        loop {
            attempt += 1;
            let _ = events.send(TunnelEvent::State(TunnelState::Reconnecting {
                attempt,
                reason: reason.clone(),
            }));
            tokio::time::sleep(delay).await;
            match connect(&target, &opts).await {
                Ok(session) => {
                    current.send_replace(Some(Arc::new(session)));
                    let _ = events.send(TunnelEvent::State(TunnelState::Up));
                    break;
                }
                Err(e) if is_permanent(&e) => {
                    let _ = events.send(TunnelEvent::State(TunnelState::Failed(e.to_string())));
                    return;
                }
                Err(e) => reason = e.to_string(),
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }
}

async fn accept_loop(
    index: usize,
    tunnel: Arc<Tunnel>,
    listener: TcpListener,
    current: watch::Receiver<Option<Arc<Session>>>,
    events: mpsc::UnboundedSender<TunnelEvent>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("tunnel {tunnel}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        tunnel.stats.connections.fetch_add(1, Ordering::Relaxed);
        let (tunnel, current, events) = (tunnel.clone(), current.clone(), events.clone());
        tokio::spawn(async move {
            tunnel.stats.active.fetch_add(1, Ordering::Relaxed);
            if let Err(reason) = forward(&tunnel, stream, peer, current).await {
                let _ = events.send(TunnelEvent::ConnectionFailed {
                    tunnel: index,
                    reason,
                });
            }
            tunnel.stats.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Forwards one local connection over the current SSH connection.
async fn forward(
    tunnel: &Tunnel,
    stream: TcpStream,
    peer: SocketAddr,
    mut current: watch::Receiver<Option<Arc<Session>>>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let session = tokio::time::timeout(WAIT_FOR_CONNECTION, async {
        loop {
            if let Some(s) = current
                .borrow_and_update()
                .clone()
                .filter(|s| !s.is_closed())
            {
                return Some(s);
            }
            if current.changed().await.is_err() {
                return None;
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| {
        format!(
            "connection from {peer} dropped: the SSH connection did not come back within {}s",
            WAIT_FOR_CONNECTION.as_secs()
        )
    })?;
    let spec = &tunnel.spec;
    let channel = session
        .handle
        .channel_open_direct_tcpip(
            spec.remote_host.clone(),
            u32::from(spec.remote_port),
            peer.ip().to_string(),
            u32::from(peer.port()),
        )
        .await
        .map_err(|e| match e {
            russh::Error::ChannelOpenFailure(reason, description) => {
                format!(
                    "channel open failed: {}",
                    open_failure(&reason, &description)
                )
            }
            e => format!(
                "cannot open a channel to {}:{}: {e}",
                spec.remote_host, spec.remote_port
            ),
        })?;
    let mut remote = channel.into_stream();
    let mut local = Counted {
        inner: stream,
        up: &tunnel.stats.bytes_up,
        down: &tunnel.stats.bytes_down,
    };
    // Reads as large as an SSH packet's payload: tokio's 8 KiB default
    // means eight packets (and eight MACs) where one would do.
    let _ =
        tokio::io::copy_bidirectional_with_sizes(&mut local, &mut remote, COPY_BUFFER, COPY_BUFFER)
            .await;
    Ok(())
}

/// Why the server refused a channel, as OpenSSH's `ssh` says it after
/// `open failed: `: the reason code in words, then the server's own
/// description, as in `connect failed: Connection refused`. The
/// description is the server's text, so it is escaped; it is left out when
/// empty or when it only repeats the reason (russh's defaults do).
pub fn open_failure(reason: &ChannelOpenFailure, description: &str) -> String {
    let words = match reason {
        ChannelOpenFailure::AdministrativelyProhibited => "administratively prohibited".into(),
        ChannelOpenFailure::ConnectFailed => "connect failed".into(),
        ChannelOpenFailure::UnknownChannelType => "unknown channel type".into(),
        ChannelOpenFailure::ResourceShortage => "resource shortage".into(),
        ChannelOpenFailure::Other { code, .. } => format!("unknown reason {code}"),
    };
    let description = description.trim();
    if description.is_empty() || description.eq_ignore_ascii_case(&words) {
        words
    } else {
        format!("{words}: {}", Untrusted(description))
    }
}

/// Counts bytes read (going up) and written (coming down) as they flow.
struct Counted<'a, S> {
    inner: S,
    up: &'a AtomicU64,
    down: &'a AtomicU64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.up.fetch_add(n as u64, Ordering::Relaxed);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.down.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_in_all_four_forms() {
        let s = |l, h: &str, r| TunnelSpec {
            bind: None,
            local_port: l,
            remote_host: h.into(),
            remote_port: r,
        };
        assert_eq!("5678".parse(), Ok(s(5678, "localhost", 5678)));
        assert_eq!("8080:6006".parse(), Ok(s(8080, "localhost", 6006)));
        assert_eq!("8080:10.0.0.2:80".parse(), Ok(s(8080, "10.0.0.2", 80)));
        assert_eq!(":6006".parse(), Ok(s(0, "localhost", 6006)));
        assert_eq!(":db:5432".parse(), Ok(s(0, "db", 5432)));
        for bad in [
            "",
            "x",
            "0",
            "1:2:3:4",
            "70000",
            "1::3",
            "5:0",
            "*:1:h:2",
            "a:b:c:d:e",
        ] {
            assert!(bad.parse::<TunnelSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_take_ssh_forms_and_say_what_is_wrong() {
        let bound = |b: &str, l, h: &str, r| TunnelSpec {
            bind: Some(b.parse().expect("ip")),
            local_port: l,
            remote_host: h.into(),
            remote_port: r,
        };
        assert_eq!(
            "127.0.0.1:8080:localhost:80".parse(),
            Ok(bound("127.0.0.1", 8080, "localhost", 80))
        );
        assert_eq!(
            "[::1]:8080:[fd00::2]:80".parse(),
            Ok(bound("::1", 8080, "fd00::2", 80))
        );
        assert_eq!(
            "localhost:5678:localhost:5678".parse(),
            Ok(bound("127.0.0.1", 5678, "localhost", 5678))
        );
        let no_bind: TunnelSpec = ":8080:db:5432".parse().expect("spec");
        assert_eq!((no_bind.bind, no_bind.local_port), (None, 8080));
        let err = "70000".parse::<TunnelSpec>().expect_err("too big");
        assert!(err.contains("ports are 1-65535"), "{err}");
        let err = "8080:70000".parse::<TunnelSpec>().expect_err("too big");
        assert!(err.contains("`70000`") && err.contains("1-65535"), "{err}");
        let err = "*:1:h:2".parse::<TunnelSpec>().expect_err("star");
        assert!(err.contains("0.0.0.0"), "{err}");
    }

    #[tokio::test]
    async fn a_port_given_twice_says_so() {
        let specs: Vec<TunnelSpec> = ["18080:80", "18080:81"]
            .iter()
            .map(|s| s.parse().expect("spec"))
            .collect();
        let err = bind_all(&specs, LOOPBACK).await.expect_err("twice");
        assert_eq!(
            err.to_string(),
            "local port 18080 on 127.0.0.1 is given twice"
        );
        // Any-free-port specs may repeat.
        let specs: Vec<TunnelSpec> = [":80", ":81"]
            .iter()
            .map(|s| s.parse().expect("spec"))
            .collect();
        assert_eq!(bind_all(&specs, LOOPBACK).await.expect("binds").len(), 2);
    }

    #[test]
    fn open_failures_read_as_openssh_prints_them() {
        use ChannelOpenFailure::*;
        assert_eq!(
            open_failure(&ConnectFailed, "Connection refused"),
            "connect failed: Connection refused"
        );
        // russh's default descriptions only repeat the code.
        assert_eq!(
            open_failure(&ConnectFailed, "Connect failed"),
            "connect failed"
        );
        assert_eq!(
            open_failure(&AdministrativelyProhibited, "Administratively prohibited"),
            "administratively prohibited"
        );
        assert_eq!(
            open_failure(&AdministrativelyProhibited, "open failed"),
            "administratively prohibited: open failed"
        );
        assert_eq!(
            open_failure(&UnknownChannelType, ""),
            "unknown channel type"
        );
        assert_eq!(open_failure(&ResourceShortage, ""), "resource shortage");
        let other = Other {
            code: 77,
            reason: "Unknown code 77".into(),
        };
        assert_eq!(open_failure(&other, ""), "unknown reason 77");
        // The server's text cannot write terminal escapes.
        let shown = open_failure(&ConnectFailed, "x\x1b[2Jy\n");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    #[tokio::test]
    async fn a_taken_port_is_named() {
        let taken = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let spec = TunnelSpec {
            bind: None,
            local_port: port,
            remote_host: "localhost".into(),
            remote_port: 1,
        };
        let err = bind_all(&[spec], LOOPBACK).await.expect_err("in use");
        assert!(
            err.to_string().contains(&format!("local port {port}")),
            "{err}"
        );
    }
}
