//! The tunnels the console has opened, as the tunnels table lists them.

use std::net::SocketAddr;
use std::sync::Arc;

use super::action::TunnelId;
use crate::ssh::tunnel::{Tunnel, TunnelSpec, TunnelState};

/// A tunnel in the tunnels list.
#[derive(Debug, Clone)]
pub struct TunnelRow {
    /// Its id.
    pub id: TunnelId,
    /// The execution's label.
    pub exec_label: String,
    /// The execution.
    pub exec_id: String,
    /// What was asked.
    pub spec: TunnelSpec,
    /// The bound tunnel, once listening.
    pub tunnel: Option<Arc<Tunnel>>,
    /// Its state.
    pub state: TunnelState,
    /// The last failed local connection.
    pub last_error: Option<String>,
}

impl TunnelRow {
    /// The local address, once bound.
    pub fn local(&self) -> Option<SocketAddr> {
        self.tunnel.as_ref().map(|t| t.local)
    }
}

impl TunnelRow {
    /// `5678` / `8080:localhost:6006` as typed.
    pub fn spec_text(&self) -> String {
        format!("{}:{}", self.spec.remote_host, self.spec.remote_port)
    }
}

impl TunnelRow {
    /// `L` for a local (`-L`) tunnel; reverse (`-R`) tunnels will say `R`.
    pub fn dir(&self) -> &'static str {
        "L"
    }

    /// Where it listens: the bound address, else the one asked for
    /// (`127.0.0.1:any` when any free port will do).
    pub fn local_text(&self) -> String {
        if let Some(a) = self.local() {
            return a.to_string();
        }
        let bind = self.spec.bind.unwrap_or(crate::ssh::tunnel::LOOPBACK);
        match self.spec.local_port {
            0 => format!("{}:any", SocketAddr::new(bind, 0).ip()),
            p => SocketAddr::new(bind, p).to_string(),
        }
    }

    /// Its state in words, with the last failed connection when there is
    /// one: the table's STATUS cell.
    pub fn status_text(&self) -> String {
        match &self.last_error {
            Some(e) if !matches!(self.state, TunnelState::Failed(_)) => {
                format!("{} · last connection: {e}", self.state)
            }
            _ => self.state.to_string(),
        }
    }

    /// Whether it has failed for good (cleared with the table's `X`).
    pub fn failed(&self) -> bool {
        matches!(self.state, TunnelState::Failed(_))
    }
}

/// Whether `port` on 127.0.0.1 can be listened on now.
pub fn local_port_free(port: u16) -> bool {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// How many ports above a busy one are tried for a free one.
const FREE_PORT_SEARCH: u16 = 100;

/// A free local port for a tunnel to `remote`, `wanted` being busy: the
/// first free one above it, if any close by.
pub fn free_port_near(wanted: u16, free: impl Fn(u16) -> bool) -> Option<u16> {
    (1..=FREE_PORT_SEARCH)
        .filter_map(|d| wanted.checked_add(d))
        .find(|p| free(*p))
}

/// The tunnel prompt's prefill for `remote`: `5678` when that local port
/// is free, else `5679:5678` with the free local port written out, else
/// `:5678` (any free port).
pub fn tunnel_prefill(remote: u16, free: impl Fn(u16) -> bool) -> String {
    if free(remote) {
        return remote.to_string();
    }
    match free_port_near(remote, free) {
        Some(p) => format!("{p}:{remote}"),
        None => format!(":{remote}"),
    }
}

/// A spec like `spec` with local port `local` instead: `5679:5678`,
/// `5679:host:6006`, `BIND:5679:host:6006`; `:5678` for 0 (any).
pub fn with_local_port(spec: &TunnelSpec, local: u16) -> String {
    // Nothing before the colon: any free port.
    let local = if local == 0 {
        String::new()
    } else {
        local.to_string()
    };
    let host = if spec.remote_host.contains(':') {
        format!("[{}]", spec.remote_host)
    } else {
        spec.remote_host.clone()
    };
    let target = if spec.remote_host == crate::ssh::tunnel::DEFAULT_REMOTE_HOST {
        spec.remote_port.to_string()
    } else {
        format!("{host}:{}", spec.remote_port)
    };
    match spec.bind {
        Some(b) => {
            let b = if b.is_ipv6() {
                format!("[{b}]")
            } else {
                b.to_string()
            };
            format!("{b}:{local}:{host}:{}", spec.remote_port)
        }
        None => format!("{local}:{target}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefill_is_the_port_when_free_else_a_free_one_written_out() {
        assert_eq!(tunnel_prefill(5678, |_| true), "5678");
        assert_eq!(tunnel_prefill(5678, |p| p != 5678), "5679:5678");
        assert_eq!(tunnel_prefill(5678, |p| p > 5680), "5681:5678");
        assert_eq!(tunnel_prefill(5678, |_| false), ":5678");
        assert_eq!(tunnel_prefill(65535, |p| p != 65535), ":65535");
    }

    #[test]
    fn a_spec_takes_another_local_port() {
        let s = |t: &str| t.parse::<TunnelSpec>().expect("spec");
        assert_eq!(with_local_port(&s("5678"), 5679), "5679:5678");
        assert_eq!(with_local_port(&s("8080:gpu:6006"), 8081), "8081:gpu:6006");
        assert_eq!(
            with_local_port(&s("0.0.0.0:8080:localhost:6006"), 8081),
            "0.0.0.0:8081:localhost:6006"
        );
        // What it writes parses back to the same tunnel, moved.
        let moved = s(&with_local_port(&s("[::1]:8080:[fe80::1]:6006"), 8081));
        assert_eq!(moved.local_port, 8081);
        assert_eq!(moved.remote_host, "fe80::1");
    }
}
