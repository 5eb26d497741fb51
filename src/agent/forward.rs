//! Local forwarding (`direct-tcpip`, what `ssh -L` asks for) and its policy.
//!
//! By default a client may reach the container itself (loopback and the
//! container's own addresses), which is what debugger and TensorBoard
//! tunnels need; anything else must be allowed with `--permit-open`, so a
//! debug key is not a free pass into the cluster's network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use russh::server::Msg;
use russh::{Channel, ChannelOpenFailure};
use tokio::net::TcpStream;

use super::logsafe::Untrusted;

use russh::server::ChannelOpenHandle as Reply;

/// Copy buffer per direction: large reads fill whole SSH packets.
const COPY_BUFFER: usize = 256 * 1024;

/// How long a forward may take to connect to its target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `--permit-open HOST:PORT` rule; `None` stands for `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitOpen {
    host: Option<String>,
    port: Option<u16>,
}

impl FromStr for PermitOpen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not HOST:PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{s}` has an empty host (use * for any host)"));
        }
        let port = match port {
            "*" => None,
            p => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` in `{s}` is not a port number (or *)"))?,
            ),
        };
        Ok(PermitOpen {
            host: (host != "*").then(|| host.to_ascii_lowercase()),
            port,
        })
    }
}

impl PermitOpen {
    fn matches(&self, host: &str, port: u16) -> bool {
        self.host
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host))
            && self.port.is_none_or(|p| p == port)
    }
}

/// Why a forward was not opened; turned into the SSH channel-open failure.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The target is outside the container and no `--permit-open` allows it.
    #[error(
        "forwarding to {} is not permitted (only the container itself; see --permit-open)",
        Untrusted(.0)
    )]
    Prohibited(String),
    /// The target could not be resolved or connected to.
    #[error("cannot connect to {}: {reason}", Untrusted(target))]
    Unreachable {
        /// The requested `host:port`.
        target: String,
        /// What went wrong, in sshd's words: `Connection refused`.
        reason: String,
    },
}

impl Refusal {
    /// The channel-open failure sent to the client. A failed connect goes
    /// as sshd sends it, code 2 (`SSH_OPEN_CONNECT_FAILED`) with the cause
    /// as the description, so `ssh` prints `open failed: connect failed:
    /// Connection refused`. russh writes a failure's `code()` and
    /// `description()` to the wire, and `Other` is the variant of its API
    /// that carries a description of our own; the code stays the standard
    /// one.
    fn failure(&self) -> ChannelOpenFailure {
        match self {
            Refusal::Prohibited(_) => ChannelOpenFailure::AdministrativelyProhibited,
            Refusal::Unreachable { reason, .. } => ChannelOpenFailure::Other {
                code: ChannelOpenFailure::ConnectFailed.code(),
                reason: reason.clone(),
            },
        }
    }
}

/// A connect or lookup error as sshd words it: `strerror(errno)`
/// (`Connection refused`, `No route to host`), without Rust's
/// ` (os error 111)`.
fn describe(e: &std::io::Error) -> String {
    if let Some(errno) = e.raw_os_error() {
        return nix::errno::Errno::from_raw(errno).desc().to_string();
    }
    let text = e.to_string();
    // tokio's lookup errors: "failed to lookup address information: Name
    // or service not known"; sshd sends the resolver's words alone.
    match text.strip_prefix("failed to lookup address information: ") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// Which targets `direct-tcpip` may reach.
#[derive(Debug, Clone, Default)]
pub struct ForwardPolicy {
    permits: Vec<PermitOpen>,
}

impl ForwardPolicy {
    /// A policy with the extra `--permit-open` rules.
    pub fn new(permits: Vec<PermitOpen>) -> Self {
        ForwardPolicy { permits }
    }

    /// Resolves a requested target to the addresses to connect to, or says
    /// why it is refused. The addresses checked are the ones connected to,
    /// so a name cannot resolve differently between check and use.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let target = format!("{host}:{port}");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = if bare.eq_ignore_ascii_case("localhost") {
            // Resolved here: a static build cannot rely on NSS for /etc/hosts.
            vec![
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
            ]
        } else if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            if !self.permits.iter().any(|p| p.matches(bare, port)) {
                // Only names that a rule names are looked up at all.
                return Err(Refusal::Prohibited(target));
            }
            tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| Refusal::Unreachable {
                    target: target.clone(),
                    reason: describe(&e),
                })?
                .collect()
        };
        if self.permits.iter().any(|p| p.matches(bare, port)) {
            return Ok(addrs);
        }
        let own = own_addresses();
        if addrs.iter().all(|a| is_local(a.ip(), &own)) {
            Ok(addrs)
        } else {
            Err(Refusal::Prohibited(target))
        }
    }
}

fn is_local(ip: IpAddr, own: &[IpAddr]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || own.contains(&ip)
}

/// The addresses of this machine's (container's) interfaces.
pub fn own_addresses() -> Vec<IpAddr> {
    let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    ifaddrs
        .filter_map(|i| i.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// Serves one `direct-tcpip` request: checks the policy and connects
/// before answering the open, as sshd does, so that a target that refuses
/// is reported as the channel's open failure; then accepts the channel and
/// copies bytes both ways until either side ends.
pub async fn serve(
    channel: Channel<Msg>,
    reply: Reply,
    policy: ForwardPolicy,
    host: String,
    port: u32,
) {
    let connected = match u16::try_from(port) {
        Ok(port) => connect(&policy, &host, port).await,
        Err(_) => Err(Refusal::Unreachable {
            target: format!("{host}:{port}"),
            reason: "port out of range".into(),
        }),
    };
    let mut tcp = match connected {
        Ok(tcp) => tcp,
        Err(refusal) => {
            tracing::info!("direct-tcpip refused: {refusal}");
            say!("porthole-agent: {refusal}");
            reply.reject(refusal.failure()).await;
            return;
        }
    };
    reply.accept().await;
    let _ = tcp.set_nodelay(true);
    let mut stream = channel.into_stream();
    if let Err(e) =
        tokio::io::copy_bidirectional_with_sizes(&mut stream, &mut tcp, COPY_BUFFER, COPY_BUFFER)
            .await
    {
        tracing::debug!("forward to {}:{port} ended: {e}", Untrusted(&host));
    }
}

async fn connect(policy: &ForwardPolicy, host: &str, port: u16) -> Result<TcpStream, Refusal> {
    let addrs = policy.resolve(host, port).await?;
    let mut last = String::from("no address");
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => last = describe(&e),
            // What the kernel's own connect timeout would have said.
            Err(_) => last = nix::errno::Errno::ETIMEDOUT.desc().to_string(),
        }
    }
    Err(Refusal::Unreachable {
        target: format!("{host}:{port}"),
        reason: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permit_open_parses_wildcards_and_brackets() {
        let p: PermitOpen = "db.internal:5432".parse().expect("valid");
        assert!(p.matches("DB.internal", 5432));
        assert!(!p.matches("db.internal", 5433));
        let any_port: PermitOpen = "10.1.2.3:*".parse().expect("valid");
        assert!(any_port.matches("10.1.2.3", 1));
        let v6: PermitOpen = "[fd00::1]:80".parse().expect("valid");
        assert!(v6.matches("fd00::1", 80));
        assert!("nohost".parse::<PermitOpen>().is_err());
        assert!("h:http".parse::<PermitOpen>().is_err());
        assert!(":80".parse::<PermitOpen>().is_err());
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_as_sshd_refuses_it() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let refusal = connect(&ForwardPolicy::default(), "127.0.0.1", port)
            .await
            .expect_err("nothing listens there");
        // SSH_OPEN_CONNECT_FAILED with strerror's words, as sshd sends it.
        let failure = refusal.failure();
        assert_eq!(failure.code(), 2);
        assert_eq!(failure.description(), "Connection refused");
        assert_eq!(
            refusal.to_string(),
            format!("cannot connect to 127.0.0.1:{port}: Connection refused")
        );
    }

    #[tokio::test]
    async fn loopback_is_allowed_and_foreign_addresses_are_not() {
        let policy = ForwardPolicy::default();
        assert!(policy.resolve("127.0.0.1", 80).await.is_ok());
        assert!(policy.resolve("localhost", 80).await.is_ok());
        assert!(policy.resolve("::1", 80).await.is_ok());
        assert!(matches!(
            policy.resolve("203.0.113.7", 80).await,
            Err(Refusal::Prohibited(_))
        ));
        assert!(matches!(
            policy.resolve("some.host.invalid", 80).await,
            Err(Refusal::Prohibited(_))
        ));
        let widened = ForwardPolicy::new(vec!["203.0.113.7:80".parse().expect("valid")]);
        assert!(widened.resolve("203.0.113.7", 80).await.is_ok());
        assert!(widened.resolve("203.0.113.7", 81).await.is_err());
    }
}
