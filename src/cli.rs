//! The `porthole` command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::ssh::tunnel::TunnelSpec;

/// A terminal console for debugging live machine-learning executions over
/// SSH: shells, commands and tunnels into a running execution.
#[derive(Debug, Parser)]
#[command(name = "porthole", version)]
pub struct Cli {
    /// What to do; the console (coming) when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The headless commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Interactive shell in this terminal, as `ssh -t` gives.
    Shell {
        /// `[user@]host:port`.
        target: String,
        /// How to connect.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Run one command; porthole exits with its exit code.
    Exec {
        /// `[user@]host:port`.
        target: String,
        /// Ask for a PTY (for full-screen programs).
        #[arg(short = 't', long)]
        tty: bool,
        /// How to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Local forwards until Ctrl-C; they reconnect on their own.
    Tunnel {
        /// `[user@]host:port`.
        target: String,
        /// REMOTE | LOCAL:REMOTE | LOCAL:HOST:REMOTE | :REMOTE (any free local port).
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<TunnelSpec>,
        /// Local address to bind.
        #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
        bind: IpAddr,
        /// How to connect.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Create porthole's default ed25519 key and print its public line.
    Keygen {
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
    },
}

/// Options shared by every command that connects.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Private key to use (OpenSSH or PEM); only this key is offered.
    #[arg(short = 'i', long = "identity", value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// Login name (default: from the target, else root).
    #[arg(long)]
    pub user: Option<String>,
    /// Require exactly this host key (`SHA256:...`).
    #[arg(long, value_name = "SHA256:...")]
    pub fingerprint: Option<String>,
    /// Trust an unknown host key without asking (records it).
    #[arg(long)]
    pub accept_new: bool,
    /// Replace a changed host key without asking. Only when you know why it changed.
    #[arg(long)]
    pub accept_changed: bool,
    /// Limit for connecting and for the key exchange.
    #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
}
