//! The `porthole-status@porthole` document and the listening-port scan it
//! carries, so the console can offer one-key tunnels to a debugger port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use super::state::{AgentState, CommandInfo};

/// Subsystem that answers the status document.
pub const STATUS_SUBSYSTEM: &str = "porthole-status@porthole";
/// Subsystem that takes one linger request line on stdin.
pub const LINGER_SUBSYSTEM: &str = "porthole-linger@porthole";

/// A TCP socket in LISTEN state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listening {
    /// Bound address (`0.0.0.0` or `::` for every interface).
    pub address: IpAddr,
    /// Bound port.
    pub port: u16,
    /// The name (`comm`) of the process holding the socket, when it could
    /// be found (`null` otherwise).
    pub process: Option<String>,
}

/// The linger as reported.
#[derive(Debug, Serialize)]
pub struct LingerInfo {
    /// Configured linger in seconds, after the command ends.
    pub secs: Option<u64>,
    /// When the agent stops (RFC 3339), once the command has ended.
    pub deadline: Option<String>,
    /// Seconds left until then, once the command has ended.
    pub remaining_secs: Option<u64>,
}

/// The whole status document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Always `porthole-agent`.
    pub agent: &'static str,
    /// The agent's version.
    pub version: &'static str,
    /// The agent's process id.
    pub pid: u32,
    /// Seconds since the agent started.
    pub uptime_secs: u64,
    /// The SSH port.
    pub ssh_port: u16,
    /// The wrapped command, if any.
    pub command: Option<CommandInfo>,
    /// The linger, if a command is wrapped.
    pub linger: Option<LingerInfo>,
    /// Listening TCP ports, the agent's own SSH port excluded.
    pub listening: Vec<Listening>,
}

/// Builds the status document now.
pub fn snapshot(state: &AgentState) -> Status {
    let life = state.lifecycle();
    let linger = life.command.as_ref().map(|_| LingerInfo {
        secs: Some(life.linger.as_secs()),
        deadline: life.deadline.map(|(_, wall)| {
            // Before 1970 cannot happen for a deadline in the future.
            let wall = wall.max(UNIX_EPOCH);
            humantime::format_rfc3339_seconds(wall).to_string()
        }),
        remaining_secs: life.deadline.map(|(at, _)| {
            // Rounded up: "0" only once it is over.
            let left = at.saturating_duration_since(std::time::Instant::now());
            left.as_secs() + u64::from(left.subsec_nanos() > 0)
        }),
    });
    let sockets: Vec<(Listening, u64)> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| listen_sockets(&text))
        .filter(|(l, _)| l.port != state.ssh_port())
        .collect();
    let owners = socket_owners(
        &sockets
            .iter()
            .map(|(_, i)| *i)
            .filter(|i| *i != 0)
            .collect(),
    );
    let mut listening: Vec<Listening> = sockets
        .into_iter()
        .map(|(mut l, inode)| {
            l.process = owners.get(&inode).cloned();
            l
        })
        .collect();
    listening.sort();
    listening.dedup_by(|a, b| a.address == b.address && a.port == b.port);
    Status {
        agent: "porthole-agent",
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uptime_secs: state.uptime().as_secs(),
        ssh_port: state.ssh_port(),
        command: life.command,
        linger,
        listening,
    }
}

/// TCP state code of LISTEN in /proc/net/tcp.
const TCP_LISTEN: &str = "0A";

/// Parses /proc/net/tcp or tcp6 text into its LISTEN sockets. Lines that do
/// not parse are skipped: the kernel's format is stable, but a scan must
/// never fail the status request.
pub fn parse_proc_net_tcp(text: &str) -> Vec<Listening> {
    listen_sockets(text).into_iter().map(|(l, _)| l).collect()
}

/// The LISTEN sockets of /proc/net/tcp text with their inodes (0 when the
/// line has none).
fn listen_sockets(text: &str) -> Vec<(Listening, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != TCP_LISTEN {
                return None;
            }
            // After st: tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode.
            let inode = fields.nth(5).and_then(|i| i.parse().ok()).unwrap_or(0);
            let (addr, port) = local.split_once(':')?;
            Some((
                Listening {
                    address: parse_hex_addr(addr)?,
                    port: u16::from_str_radix(port, 16).ok()?,
                    process: None,
                },
                inode,
            ))
        })
        .collect()
}

/// At most this many processes are looked at for socket owners.
const MAX_PROCESSES: usize = 4096;
/// At most this many open files, in all, are looked at.
const MAX_FDS: usize = 200_000;

/// The name (`comm`) of the process holding each socket inode, found in
/// the `socket:[INODE]` links of /proc/*/fd. Best effort and bounded:
/// processes of other users cannot be read, and the scan stops once every
/// inode is named or the bounds are reached.
pub fn socket_owners(
    inodes: &std::collections::HashSet<u64>,
) -> std::collections::HashMap<u64, String> {
    let mut found = std::collections::HashMap::new();
    if inodes.is_empty() {
        return found;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    let mut fds_seen = 0usize;
    for entry in procs.flatten().take(MAX_PROCESSES * 2) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut comm: Option<String> = None;
        for fd in fds.flatten() {
            fds_seen += 1;
            if fds_seen > MAX_FDS {
                return found;
            }
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if !inodes.contains(&inode) || found.contains_key(&inode) {
                continue;
            }
            if comm.is_none() {
                comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .ok()
                    .map(|c| c.trim_end().to_string());
            }
            if let Some(c) = &comm {
                found.insert(inode, c.clone());
            }
        }
        if found.len() == inodes.len() {
            break;
        }
    }
    found
}

/// The kernel prints each 32-bit word of the address as a host-order
/// integer, so the word's native bytes are the address bytes.
fn parse_hex_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, out) in bytes.chunks_mut(4).enumerate() {
                out.copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000:162E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   garbage
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1A0A 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 0000000000000000FFFF00000100007F:2382 00000000000000000000000000000000:0000 0A 00000000:00000000
";

    #[test]
    fn listening_ipv4_sockets_are_found() {
        let l = parse_proc_net_tcp(TCP);
        assert_eq!(
            l,
            vec![
                Listening {
                    address: "127.0.0.1".parse().expect("ip"),
                    port: 8080,
                    process: None,
                },
                Listening {
                    address: "0.0.0.0".parse().expect("ip"),
                    port: 5678,
                    process: None,
                },
            ]
        );
    }

    #[test]
    fn listening_ipv6_sockets_are_found() {
        let l = parse_proc_net_tcp(TCP6);
        assert_eq!(
            l[0],
            Listening {
                address: "::1".parse().expect("ip"),
                port: 6666,
                process: None,
            }
        );
        assert_eq!(
            l[1],
            Listening {
                address: "127.0.0.1".parse().expect("ip"),
                port: 9090,
                process: None,
            }
        );
    }

    #[test]
    fn inodes_are_found() {
        let sockets = listen_sockets(TCP);
        assert_eq!(sockets.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [1, 2]);
        // tcp6 text without the inode column: 0, not a failure.
        assert!(listen_sockets(TCP6).iter().all(|(_, i)| *i == 0));
    }

    #[test]
    fn the_process_holding_a_listener_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let text = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let inode = listen_sockets(&text)
            .into_iter()
            .find(|(l, _)| l.port == port)
            .map(|(_, i)| i)
            .expect("our listener is in /proc/net/tcp");
        let owners = socket_owners(&[inode].into_iter().collect());
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(
            owners.get(&inode).map(String::as_str),
            Some(comm.trim_end())
        );
        drop(listener);
    }
}
