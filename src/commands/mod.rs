//! The headless commands: each turns its arguments into calls on the SSH
//! core and returns the process exit code.

pub mod executions;
pub mod keygen;
pub mod linger;
pub mod prompt;
pub mod source;
pub mod watch;

use std::io::IsTerminal as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::agent::state::LingerRequest;
use crate::cli::{Command, ConnectArgs, SourceArgs};
use crate::config::Paths;
use crate::ssh::identity::AuthOptions;
use crate::ssh::trust::HostTrust;
use crate::ssh::tunnel::{self, Tunnel, TunnelEvent};
use crate::ssh::{self, ConnectOptions, Target};
use watch::Watch;

/// Exit code for porthole's own failures (connection, trust, keys), as
/// OpenSSH's client uses 255.
pub const FAILURE: i32 = 255;

/// Exit code for a command line that makes no sense, as clap uses.
pub const USAGE: i32 = 2;

/// Runs one headless command.
pub async fn run(command: Command) -> anyhow::Result<i32> {
    let paths = Paths::discover()?;
    match command {
        Command::Keygen { force } => {
            let path = paths.default_key();
            if path.exists() && !force {
                // Asking again for the line to paste is the common case:
                // answer it, and keep the key that is authorized already.
                let public = keygen::public_line(&path)?;
                eprintln!(
                    "porthole: {} exists; kept (--force makes a new one, and the old one then \
                     stops working wherever it was authorized)",
                    path.display()
                );
                println!("{public}");
                return Ok(0);
            }
            let public = keygen::create(&path, force)?;
            eprintln!(
                "porthole: wrote {} and {}.pub",
                path.display(),
                path.display()
            );
            eprintln!("porthole: paste this line into the platform's SSH key field:");
            println!("{public}");
            Ok(0)
        }
        Command::Exec {
            target,
            tty,
            connect,
            source,
            command,
        } => {
            let (target, opts, watch) = prepare(&target, &connect, &source, &paths).await?;
            let session = connect_or_explain(&target, &opts, watch.as_ref()).await?;
            let line = command.join(" ");
            let exit = if tty {
                ssh::shell::interactive(&session, Some(&line)).await?
            } else {
                // Like ssh: our stdin goes to the command unless it is a terminal
                // nobody will type EOF into.
                let stdin = (!std::io::stdin().is_terminal()).then(tokio::io::stdin);
                ssh::exec::run(
                    &session,
                    &line,
                    stdin,
                    tokio::io::stdout(),
                    tokio::io::stderr(),
                )
                .await?
            };
            say_why_it_ended(&target, &exit, watch.as_ref()).await;
            Ok(exit.code())
        }
        Command::Shell {
            target,
            connect,
            source,
        } => {
            let (target, opts, watch) = prepare(&target, &connect, &source, &paths).await?;
            let session = connect_or_explain(&target, &opts, watch.as_ref()).await?;
            let exit = ssh::shell::interactive(&session, None).await?;
            say_why_it_ended(&target, &exit, watch.as_ref()).await;
            Ok(exit.code())
        }
        Command::Tunnel {
            target,
            specs,
            bind,
            connect,
            source,
        } => {
            let (target, opts, watch) = prepare(&target, &connect, &source, &paths).await?;
            run_tunnels(target, opts, &specs, bind, watch).await
        }
        Command::Serve {
            listen,
            stop,
            status,
        } => {
            if stop || status {
                return serve_control(&paths, stop).await;
            }
            crate::control::serve(listen, &paths).await?;
            Ok(0)
        }
        Command::Run {
            title,
            linger,
            command,
        } => executions::run(&paths, title, linger, command).await,
        Command::List {
            json,
            statuses,
            source,
        } => executions::list(&paths, &source, json, statuses).await,
        Command::Logs {
            exec,
            follow,
            tail,
            source,
        } => executions::logs(&paths, &source, &exec, follow, tail).await,
        Command::Stop { exec, source } => executions::stop(&paths, &source, &exec).await,
        Command::Linger {
            target,
            request,
            connect,
            source,
        } => {
            let request = match LingerRequest::parse(&request.join(" ")) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("porthole: {e}");
                    return Ok(USAGE);
                }
            };
            let (resolved, opts, watch) = prepare(&target, &connect, &source, &paths).await?;
            let session = connect_or_explain(&resolved, &opts, watch.as_ref()).await?;
            linger::request(&session, &target, request).await
        }
    }
}

/// `porthole serve --status` (or `--stop`): the background control plane
/// of this data directory.
async fn serve_control(paths: &Paths, stop: bool) -> anyhow::Result<i32> {
    use crate::control::Background;
    match crate::control::background(paths).await {
        Background::None => {
            println!(
                "no local control plane runs for {}",
                paths.data_dir.display()
            );
            Ok(if stop { 0 } else { 1 })
        }
        Background::InProcess(endpoint) => {
            println!(
                "the local control plane at {}api/v0/ runs inside a porthole console; quit \
                 the console to stop it",
                endpoint.url
            );
            Ok(if stop { 1 } else { 0 })
        }
        Background::Serve { endpoint, pid } if stop => {
            crate::control::stop_background(pid, paths).await?;
            println!(
                "stopped the local control plane (pid {pid}) at {}api/v0/",
                endpoint.url
            );
            Ok(0)
        }
        Background::Serve { endpoint, pid } => {
            println!(
                "the local control plane runs at {}api/v0/ (pid {pid}); stop it with \
                 `porthole serve --stop`",
                endpoint.url
            );
            Ok(0)
        }
    }
}

/// Resolves the target (directly or through the source) and the connect
/// options from the flags. A host key announced by the execution is pinned
/// unless `--fingerprint` says otherwise.
async fn prepare(
    exec: &str,
    args: &ConnectArgs,
    source_args: &SourceArgs,
    paths: &Paths,
) -> anyhow::Result<(Target, ConnectOptions, Option<Watch>)> {
    let resolved = source::resolve(exec, args.user.as_deref(), source_args, paths).await?;
    let target = resolved.target;
    let watch = resolved.watch;
    let interactive = std::io::stdin().is_terminal() || std::io::stderr().is_terminal();
    let trust = match args.fingerprint.clone().or(resolved.host_key) {
        Some(fp) => HostTrust::Pinned(fp),
        None => HostTrust::KnownHosts {
            path: paths.known_hosts(),
            accept_new: args.accept_new,
            accept_changed: args.accept_changed,
            ask: interactive.then(prompt::terminal_ask),
        },
    };
    let auth = AuthOptions {
        key_file: args.identity.clone(),
        default_key: Some(paths.default_key()),
        openssh_keys: AuthOptions::openssh_defaults(),
        use_agent: true,
        ask_passphrase: Some(prompt::terminal_secret()),
        ..AuthOptions::default()
    };
    Ok((
        target,
        ConnectOptions {
            trust,
            auth,
            timeout: args.connect_timeout,
        },
        watch,
    ))
}

/// Connects; when that fails and the execution has ended, says so instead
/// of the network's words ("connection refused").
async fn connect_or_explain(
    target: &Target,
    opts: &ConnectOptions,
    watch: Option<&Watch>,
) -> anyhow::Result<ssh::Session> {
    match ssh::connect(target, opts).await {
        Ok(session) => Ok(session),
        Err(e) => match watch {
            Some(w) => match w.ended().await {
                Some(why) => anyhow::bail!("{why}; its SSH server has gone"),
                None => Err(e.into()),
            },
            None => Err(e.into()),
        },
    }
}

/// After a session killed or cut off without an exit status, says what
/// OpenSSH says, and why when the execution has ended.
async fn say_why_it_ended(target: &Target, exit: &ssh::exec::RemoteExit, watch: Option<&Watch>) {
    use ssh::exec::RemoteExit;
    // Stopping an execution kills its processes (TERM, then KILL) or its
    // agent (no exit status at all): either way a signal or silence.
    let (signalled, silent) = match exit {
        RemoteExit::Unknown => (false, true),
        RemoteExit::Signal(sig) => (true, sig == "KILL"),
        // A shell whose child was killed exits with 128+N itself.
        RemoteExit::Code(code) => ((129..=192).contains(code), false),
    };
    if !signalled && !silent {
        return;
    }
    let why = match watch {
        Some(w) => w.ended().await,
        None => None,
    };
    match why {
        Some(why) => eprintln!("Connection to {} closed: {why}.", target.host),
        // A plain kill is the command's own business; a cut-off session
        // is said as OpenSSH says it.
        None if silent => eprintln!("Connection to {} closed.", target.host),
        None => {}
    }
}

async fn run_tunnels(
    target: Target,
    mut opts: ConnectOptions,
    specs: &[tunnel::TunnelSpec],
    bind: std::net::IpAddr,
    watch: Option<Watch>,
) -> anyhow::Result<i32> {
    let bound = tunnel::bind_all(specs, bind).await?;
    // Reconnects must not ask for the passphrase again.
    opts.auth.preload()?;
    for (t, _) in &bound {
        println!("tunnel {t}: listening");
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (tunnels, _set) = tunnel::serve(target, opts, bound, events_tx).await?;
    let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot watch Ctrl-C")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    let code = loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(TunnelEvent::State(state)) => {
                    for t in &tunnels {
                        println!("tunnel {t}: {state}");
                    }
                    if matches!(state, tunnel::TunnelState::Failed(_)) {
                        break FAILURE;
                    }
                    // Between attempts: an execution that has ended will
                    // not come back, so stop trying.
                    if let (tunnel::TunnelState::Reconnecting { .. }, Some(w)) = (&state, &watch) {
                        if let Some(why) = w.ended().await {
                            for t in &tunnels {
                                println!("tunnel {t}: {why}; stopping");
                            }
                            break FAILURE;
                        }
                    }
                }
                Some(TunnelEvent::ConnectionFailed { tunnel, reason }) => {
                    if let Some(t) = tunnels.get(tunnel) {
                        println!("tunnel {t}: {reason}");
                    }
                }
                None => break FAILURE,
            },
            _ = ctrl_c.recv() => break 0,
            _ = term.recv() => break 0,
        }
    };
    for t in &tunnels {
        println!("tunnel {}: {}", t, summary(t));
    }
    Ok(code)
}

fn summary(t: &Arc<Tunnel>) -> String {
    let s = &t.stats;
    format!(
        "{} connections, {} bytes up, {} bytes down",
        s.connections.load(Ordering::Relaxed),
        s.bytes_up.load(Ordering::Relaxed),
        s.bytes_down.load(Ordering::Relaxed)
    )
}
