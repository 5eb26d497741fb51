//! The russh server side: authentication, and routing of channel requests
//! to session tasks and forwards.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{cipher, compression, Channel, ChannelId, MethodKind, MethodSet, Preferred};

use super::admission::Ticket;
use super::forward::{self, ForwardPolicy};
use super::groups::Groups;
use super::keys::AuthorizedKeys;
use super::logsafe::Untrusted;
use super::passwd::Account;
use super::session::{self, SessionContext};
use super::state::AgentState;
use super::status::{LINGER_SUBSYSTEM, STATUS_SUBSYSTEM};

/// OpenSSH's default `MaxAuthTries` (the first `none` probe is free, as
/// there; see vendor/russh/PORTHOLE-PATCHES.md).
const MAX_AUTH_ATTEMPTS: usize = 6;
/// What a rejected key costs the client: no more than sshd charges (0.1 s
/// a key here, `benches/agent_flood.rs`). Keys cannot be guessed, so a
/// longer wait only slows the owner whose ssh-agent holds several keys.
const AUTH_REJECTION_TIME: Duration = Duration::from_millis(100);
/// The largest packet an unauthenticated client may send (RFC 4253's
/// minimum). A larger one closes the connection before any buffer is
/// allocated for it.
const MAX_PRE_AUTH_PACKET: usize = 35_000;
/// How often a quiet connection is probed; three missed answers drop it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;

/// Client key algorithms accepted: no `ssh-rsa` (SHA-1) signatures.
const KEY_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// AEAD ciphers first: they are the fast ones on loopback and WAN alike.
const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

/// The server configuration: public keys only, modern algorithms, no
/// compression, keepalives instead of an inactivity timeout.
pub fn config(host_key: PrivateKey) -> russh::server::Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed(concat!(
            "SSH-2.0-porthole-agent_",
            env!("CARGO_PKG_VERSION")
        ))),
        methods,
        auth_rejection_time: AUTH_REJECTION_TIME,
        // OpenSSH probes with "none" first: answering it at once costs nothing.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        maximum_pre_auth_packet_len: MAX_PRE_AUTH_PACKET,
        preferred: Preferred {
            key: Cow::Borrowed(KEY_ALGORITHMS),
            cipher: Cow::Borrowed(CIPHERS),
            compression: Cow::Borrowed(&[compression::NONE]),
            ..Preferred::default()
        },
        ..Default::default()
    }
}

/// What every connection shares.
pub struct Shared {
    /// Keys allowed to log in.
    pub authorized: AuthorizedKeys,
    /// Where `-L` may go.
    pub policy: ForwardPolicy,
    /// The account sessions run as.
    pub account: Arc<Account>,
    /// Status and linger.
    pub state: Arc<AgentState>,
}

/// The handler of one connection.
pub struct Connection {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    groups: Groups,
    /// Its place among the unauthenticated connections.
    ticket: Ticket,
}

impl Connection {
    /// A handler for a client at `peer` that connected to `local`.
    pub fn new(
        shared: Arc<Shared>,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        groups: Groups,
        ticket: Ticket,
    ) -> Self {
        Connection {
            shared,
            peer,
            local,
            groups,
            ticket,
        }
    }

    fn is_authorized(&self, key: &russh::keys::PublicKey, algorithm: &Algorithm) -> bool {
        // An RSA key signing with SHA-1 (`ssh-rsa`) is refused even if listed.
        !matches!(algorithm, Algorithm::Rsa { hash: None })
            && self.shared.authorized.contains(key.key_data())
    }
}

impl Drop for Connection {
    /// The connection is gone: nothing it started may outlive it.
    fn drop(&mut self) {
        self.groups.kill_all();
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.is_authorized(offer.public_key, offer.algorithm) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.is_authorized(key.public_key, key.algorithm) {
            tracing::info!(
                "accepted {} key {} for {} from {:?}",
                key.algorithm,
                key.public_key.fingerprint(HashAlg::Sha256),
                Untrusted(user),
                self.peer
            );
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.ticket.authenticated();
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ctx = SessionContext {
            state: self.shared.state.clone(),
            account: self.shared.account.clone(),
            groups: self.groups.clone(),
            handle: session.handle(),
            peer: self.peer,
            local: self.local,
        };
        reply.accept().await;
        tokio::spawn(session::run(channel, ctx));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Connecting may take seconds: never inside the session's loop.
        tokio::spawn(forward::serve(
            channel,
            reply,
            self.shared.policy.clone(),
            host_to_connect.to_string(),
            port_to_connect,
        ));
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Also here, not only in the session task: that task may be blocked
        // writing to a process that stopped reading its input.
        self.groups.kill(channel);
        Ok(())
    }

    // The session task does the work for the requests below; the handler
    // only answers them, since russh leaves the reply to the handler.

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == STATUS_SUBSYSTEM || name == LINGER_SUBSYSTEM {
            session.channel_success(channel)
        } else {
            tracing::info!("refused subsystem {}", Untrusted(name));
            session.channel_failure(channel)
        }
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}
