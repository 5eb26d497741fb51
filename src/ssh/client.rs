//! Connecting: TCP with a timeout, key exchange with host-key trust, then
//! public-key authentication.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{cipher, Preferred};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::identity::{self, AuthError, AuthOptions};
use super::target::Target;
use super::trust::{HostTrust, TrustError};

/// Extra time for the key exchange when the user may be asked about the
/// host key.
const QUESTION_ALLOWANCE: Duration = Duration::from_secs(300);

/// Keepalive probes: three unanswered ones (30 s) mean the peer is gone.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_MAX: usize = 3;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Host-key trust.
    pub trust: HostTrust,
    /// Keys.
    pub auth: AuthOptions,
    /// Limit for TCP connect plus key exchange, and again for authentication.
    pub timeout: Duration,
}

/// Why a connection failed, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The name did not resolve.
    #[error("cannot resolve {target}: {source}")]
    Resolve {
        /// The target.
        target: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// Nothing listens there.
    #[error("connection to {target} refused: nothing listens there (has the execution started?)")]
    Refused {
        /// The target.
        target: String,
    },
    /// No route, host down, and the like.
    #[error("{target} is unreachable: {source}")]
    Unreachable {
        /// The target.
        target: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// A phase took too long.
    #[error("timed out after {secs}s while {phase} {target}")]
    Timeout {
        /// The target.
        target: String,
        /// What was going on.
        phase: &'static str,
        /// The limit.
        secs: u64,
    },
    /// The host key was not trusted.
    #[error(transparent)]
    HostKey(#[from] TrustError),
    /// No key was accepted, or a key could not be used.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The SSH protocol failed.
    #[error("ssh: {0}")]
    Protocol(#[from] russh::Error),
}

/// Receives the server's events for one connection.
pub struct ClientHandler {
    host: String,
    port: u16,
    trust: HostTrust,
    /// Dropped with the handler, which russh drops when the connection ends.
    _alive: watch::Sender<()>,
}

impl client::Handler for ClientHandler {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                russh::keys::PublicKey::from(cert.public_key().clone())
            }
        };
        let (trust, host, port) = (self.trust.clone(), self.host.clone(), self.port);
        // A prompt may wait on the user: keep it off the async workers.
        tokio::task::spawn_blocking(move || trust.verify(&host, port, &key))
            .await
            .map_err(|_| russh::Error::Disconnect)??;
        Ok(true)
    }
}

/// Cipher order: AES-GCM first where the CPU accelerates it (about twice
/// chacha20's throughput here), chacha20-poly1305 first elsewhere.
fn ciphers() -> &'static [cipher::Name] {
    const AES_FIRST: &[cipher::Name] = &[
        cipher::AES_128_GCM,
        cipher::AES_256_GCM,
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_CTR,
    ];
    const CHACHA_FIRST: &[cipher::Name] = &[
        cipher::CHACHA20_POLY1305,
        cipher::AES_128_GCM,
        cipher::AES_256_GCM,
        cipher::AES_256_CTR,
    ];
    #[cfg(target_arch = "x86_64")]
    let aes = std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    let aes = std::arch::is_aarch64_feature_detected!("aes");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let aes = false;
    if aes {
        AES_FIRST
    } else {
        CHACHA_FIRST
    }
}

/// The client configuration: keepalives instead of an inactivity timeout,
/// large windows and packets for tunnel throughput.
pub fn config() -> client::Config {
    client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        preferred: Preferred {
            cipher: Cow::Borrowed(ciphers()),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Preferred::default()
        },
        ..Default::default()
    }
}

/// An authenticated SSH connection.
pub struct Session {
    /// The russh handle: open channels with it.
    pub handle: Handle<ClientHandler>,
    /// Where it is connected.
    pub target: Target,
    alive: watch::Receiver<()>,
}

impl Session {
    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Resolves once the connection has ended (peer gone, keepalives
    /// unanswered, or an error).
    pub async fn closed(&self) {
        let mut alive = self.alive.clone();
        // `changed` fails once the handler's sender is dropped.
        while alive.changed().await.is_ok() {}
    }
}

/// Connects, verifies the host and authenticates.
pub async fn connect(target: &Target, opts: &ConnectOptions) -> Result<Session, SshError> {
    let shown = target.host_port();
    let secs = opts.timeout.as_secs();
    let timeout = |phase| SshError::Timeout {
        target: shown.clone(),
        phase,
        secs,
    };

    let addrs: Vec<std::net::SocketAddr> =
        tokio::time::timeout(opts.timeout, tokio::net::lookup_host(shown.as_str()))
            .await
            .map_err(|_| timeout("resolving"))?
            .map_err(|source| SshError::Resolve {
                target: shown.clone(),
                source,
            })?
            .collect();
    let mut last_err = None;
    let mut stream = None;
    for addr in addrs {
        match tokio::time::timeout(opts.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_err = Some(e),
            Err(_) => return Err(timeout("connecting to")),
        }
    }
    let stream = match (stream, last_err) {
        (Some(s), _) => s,
        (None, Some(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(SshError::Refused { target: shown })
        }
        (None, Some(source)) => {
            return Err(SshError::Unreachable {
                target: shown,
                source,
            })
        }
        (None, None) => {
            return Err(SshError::Resolve {
                target: shown,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            })
        }
    };
    let _ = stream.set_nodelay(true);

    let (alive_tx, alive) = watch::channel(());
    let handler = ClientHandler {
        host: target.host.clone(),
        port: target.port,
        trust: opts.trust.clone(),
        _alive: alive_tx,
    };
    // A trust question may wait on the user: allow for it (the server's own
    // login grace time still bounds the wait).
    let handshake = match &opts.trust {
        HostTrust::KnownHosts { ask: Some(_), .. } => opts.timeout + QUESTION_ALLOWANCE,
        _ => opts.timeout,
    };
    let mut handle = tokio::time::timeout(
        handshake,
        client::connect_stream(Arc::new(config()), stream, handler),
    )
    .await
    .map_err(|_| timeout("exchanging keys with"))??;

    // The passphrase prompt is part of authentication, so no timeout wraps
    // the whole of it: the server's own login grace time bounds it.
    identity::authenticate(&mut handle, &target.user, &opts.auth).await?;
    Ok(Session {
        handle,
        target: target.clone(),
        alive,
    })
}
