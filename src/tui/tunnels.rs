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
