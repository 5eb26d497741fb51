//! `porthole-agent`: the companion SSH server for an execution's container.
//!
//! Start-up order matters: keys are checked before anything listens (an
//! agent nobody can log in to is an error, never an open server), the
//! announcement is printed once the port is bound, and only then does the
//! wrapped command start, so its log follows the announcement.

/// A line on the agent's stderr, which is the platform's log. Unlike
/// `eprintln!`, a closed stderr (whoever read the log is gone) is ignored
/// instead of a panic: the agent must still stop its command cleanly.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod admission;
pub mod cli;
pub mod forward;
pub mod groups;
pub mod init;
pub mod keys;
pub mod kill;
pub mod limits;
pub mod logsafe;
pub mod memory;
pub mod passwd;
pub mod server;
pub mod session;
pub mod state;
pub mod status;
pub mod wrapped;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::announce::Announcement;
use admission::{Admission, Admit};
use cli::AgentArgs;
use forward::ForwardPolicy;
use groups::Registry;
use keys::AuthorizedKeys;
use kill::Killable;
use limits::Throttled;
use server::{Connection, Shared};
use state::AgentState;

/// Errors that stop the agent before it serves anything.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No key at all: the agent would be a server nobody can use, or worse.
    #[error(
        "no authorized keys: pass --authorized-keys FILE, --authorized-key LINE or set \
         PORTHOLE_AUTHORIZED_KEYS; refusing to start an SSH server without them"
    )]
    NoAuthorizedKeys,
    /// Anything else that prevents serving (unreadable key file, port in use).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Collects the authorized keys from files, flags and the environment,
/// printing a warning for every line that is skipped.
pub fn authorized_keys(args: &AgentArgs) -> Result<AuthorizedKeys, StartError> {
    let mut keys = AuthorizedKeys::default();
    let mut warnings = Vec::new();
    for file in &args.authorized_keys_files {
        keys.add_file(file, &mut warnings)?;
    }
    for (i, line) in args.authorized_keys.iter().enumerate() {
        keys.add_text(&format!("--authorized-key #{}", i + 1), line, &mut warnings);
    }
    if let Ok(env) = std::env::var("PORTHOLE_AUTHORIZED_KEYS") {
        keys.add_text("PORTHOLE_AUTHORIZED_KEYS", &env, &mut warnings);
    }
    for w in warnings {
        say!("porthole-agent: warning: {w}");
    }
    if keys.is_empty() {
        return Err(StartError::NoAuthorizedKeys);
    }
    Ok(keys)
}

/// The address to announce: the flag, else the listening address when it
/// is a specific one, else the first non-loopback IPv4 address, else
/// 127.0.0.1.
pub fn advertised_address(flag: Option<&str>, listen: SocketAddr) -> String {
    if let Some(a) = flag.filter(|a| !a.trim().is_empty()) {
        return a.trim().to_string();
    }
    if !listen.ip().is_unspecified() {
        return listen.ip().to_string();
    }
    forward::own_addresses()
        .into_iter()
        .find(|ip| matches!(ip, IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_link_local()))
        .map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string())
}

/// Runs the agent; returns the process exit code.
pub async fn run(args: AgentArgs) -> Result<i32, StartError> {
    // Read first: the parent may go while the keys load.
    let parent = args.exit_with_parent.then(nix::unistd::getppid);
    // Before anything is opened: a server holding many connections wants
    // every file descriptor the container allows.
    let max_startups = match limits::raise_nofile_limit() {
        Ok((_, open_files)) => {
            let fitted = args.max_startups.fitted_to(open_files);
            if fitted != args.max_startups {
                say!(
                    "porthole-agent: --max-startups {} lowered to {fitted}: at most half of the \
                     {open_files} open files allowed may go to unauthenticated connections",
                    args.max_startups
                );
            }
            fitted
        }
        Err(e) => {
            say!("porthole-agent: warning: cannot raise the open-file limit: {e}");
            args.max_startups
        }
    };
    let authorized = authorized_keys(&args)?;
    let host_key = keys::host_key(args.host_key.as_deref())?;
    let fingerprint = keys::fingerprint(&host_key);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;

    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let linger = args.linger.unwrap_or(Duration::ZERO);
    let state = Arc::new(AgentState::new(
        bound.port(),
        (!command.is_empty()).then_some(command),
        linger,
    ));
    let registry = Registry::default();
    let shared = Arc::new(Shared {
        authorized,
        policy: ForwardPolicy::new(args.permit_open.clone()),
        account: Arc::new(passwd::current()),
        state: state.clone(),
    });
    let config = Arc::new(server::config(host_key));

    let announcement = Announcement {
        address: advertised_address(args.advertise_address.as_deref(), bound),
        port: bound.port(),
        host_key: Some(fingerprint),
    };
    {
        let mut out = std::io::stdout().lock();
        for line in announcement.lines() {
            writeln!(out, "{line}").context("cannot write the announcement")?;
        }
        out.flush().context("cannot write the announcement")?;
    }

    let admission = Admission::new(max_startups);
    let gate = Gate {
        admission: admission.clone(),
        grace: (!args.login_grace_time.is_zero()).then_some(args.login_grace_time),
    };
    tokio::spawn(accept_loop(
        listener,
        config,
        shared,
        registry.clone(),
        gate,
    ));
    let advised = memory::drop_code_pages();
    tracing::debug!("asked the kernel to drop {advised} bytes of start-up code");
    tokio::spawn(tidy_after_bursts(admission.clone()));

    let code = if args.command.is_empty() {
        wrapped::serve_until_signalled(parent).await?
    } else {
        wrapped::run(&args.command, &state, parent).await?
    };
    registry.kill_everything();
    Ok(code)
}

/// After connections have come and no unauthenticated one is left, gives
/// back the memory the burst left behind (see [`memory::trim`]). Checked
/// every few seconds, so that a flood is tidied up soon after it ends
/// while a quiet agent does nothing at all.
async fn tidy_after_bursts(admission: Admission) {
    let mut tidied_at = admission.admitted();
    let mut every = tokio::time::interval(Duration::from_secs(3));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let admitted = admission.admitted();
        if admitted != tidied_at && admission.pending() == 0 {
            memory::trim();
            tidied_at = admitted;
        }
    }
}

/// What stands between a new TCP connection and an SSH session.
struct Gate {
    admission: Admission,
    /// The login grace time; `None` means no limit.
    grace: Option<Duration>,
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    registry: Registry,
    gate: Gate,
) {
    let next_id = AtomicU64::new(0);
    let mut accept_failures = Throttled::new(limits::LOG_EVERY);
    let mut refusals = Throttled::new(limits::LOG_EVERY);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: close the
                // unauthenticated connection that the start-up cap would
                // drop first, so the owner can still get in, and pause
                // instead of spinning on the error.
                let evicted = gate.admission.evict_one();
                if let Some(n) = accept_failures.hit(Instant::now()) {
                    say!(
                        "porthole-agent: accept failed {n} time(s) since the last report: {e}{}",
                        if evicted {
                            "; closing unauthenticated connections to make room"
                        } else {
                            ""
                        }
                    );
                }
                let pause = if evicted { 10 } else { 250 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        let ticket = match gate.admission.admit(peer.ip()) {
            Admit::Accepted(ticket) => ticket,
            Admit::Refused => {
                drop(stream);
                if let Some(n) = refusals.hit(Instant::now()) {
                    say!(
                        "porthole-agent: refused {n} unauthenticated connection(s) since the last \
                         report, the latest from {} (--max-startups {}; {} pending)",
                        peer.ip(),
                        gate.admission.limits(),
                        gate.admission.pending()
                    );
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let groups = registry.connection(next_id.fetch_add(1, Ordering::Relaxed));
        let switch = ticket.kill_switch();
        let stream = Killable::new(stream, switch.clone());
        let handler = Connection::new(shared.clone(), Some(peer), local, groups, ticket);
        let config = config.clone();
        let grace = gate.grace;
        tokio::spawn(async move {
            let session = async move {
                match russh::server::run_stream(config, stream, handler).await {
                    Ok(session) => session.await,
                    Err(e) => Err(e),
                }
            };
            tokio::pin!(session);
            let grace_over = async {
                match grace {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let result = tokio::select! {
                result = &mut session => result,
                () = grace_over => {
                    if !switch.is_authenticated() {
                        tracing::info!("{peer} did not authenticate within the login grace time");
                        switch.kill();
                    }
                    session.await
                }
            };
            if let Err(e) = result {
                tracing::info!("connection from {peer} ended: {e}");
            }
        });
    }
}
