//! `porthole`: the console and its headless commands.

use std::process::ExitCode;

use clap::Parser as _;
use porthole::cli::{Cli, Command};
use porthole::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    porthole::ssh::shell::install_panic_hook();
    let runtime = match runtime_for(cli.command.as_ref()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("porthole: cannot start the async runtime: {e}");
            return ExitCode::from(255);
        }
    };
    let result = match cli.command {
        Some(command) => runtime.block_on(commands::run(command)),
        None => runtime
            .block_on(console(cli.source, cli.demo, cli.identity))
            .map(|()| 0),
    };
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("porthole: {e:#}");
            ExitCode::from(u8::try_from(commands::FAILURE).unwrap_or(255))
        }
    }
}

/// The async runtime a command runs on.
///
/// `shell`, `exec` and `tunnel` run on one thread. A connection's
/// encryption is one task either way, and keeping the channels' copy loops
/// on the same thread saves the cross-thread wake-ups between them. On a
/// 2-core machine that was worth about a quarter of a tunnel's throughput
/// (see `benches/tunnel_throughput.rs`). The console and the control plane
/// keep a pool of threads: the screen must stay responsive while a pane
/// floods, and a control plane serves many clients at once.
fn runtime_for(command: Option<&Command>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match command {
        Some(Command::Shell { .. } | Command::Exec { .. } | Command::Tunnel { .. }) => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// The console, with its own log in the data directory: nothing may write
/// to the screen while the TUI owns it.
async fn console(
    source: porthole::cli::SourceArgs,
    demo: bool,
    identity: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let paths = porthole::config::Paths::discover()?;
    std::fs::create_dir_all(&paths.data_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.data_dir.join("porthole.log"))?;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTHOLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    porthole::tui::run(paths, source, demo, identity).await
}
