//! The `porthole` command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::commands::source::SourceKind;
use crate::ssh::tunnel::TunnelSpec;

/// A terminal console for debugging live machine-learning executions over
/// SSH: shells, commands and tunnels into a running execution.
#[derive(Debug, Parser)]
#[command(name = "porthole", version)]
pub struct Cli {
    /// What to do; the console when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Open the console on the local control plane with the demo executions.
    #[arg(long)]
    pub demo: bool,
    /// The console's key: only this one is offered (asked for its
    /// passphrase before the console opens, if it has one).
    #[arg(short = 'i', long = "identity", value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// Where the console's executions come from.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// What `list --status` takes: Valohai's statuses, and `incomplete` for
/// every one not finished.
pub const STATUSES: [&str; 10] = [
    "incomplete",
    "created",
    "queued",
    "started",
    "stopping",
    "stopping_hard",
    "complete",
    "error",
    "crashed",
    "stopped",
];

/// A duration as `30m` or `1h30m`, kept as written; a usage error (exit 2)
/// otherwise.
fn parse_duration_arg(s: &str) -> Result<String, String> {
    humantime::parse_duration(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a duration ({e}); try 30m or 1h"))
}

/// The headless commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Interactive shell in this terminal, as `ssh -t` gives.
    Shell {
        /// Execution counter or id, or `[user@]host:port`.
        #[arg(value_name = "EXEC")]
        target: String,
        /// How to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// Where executions come from.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Run one command; porthole exits with its exit code.
    Exec {
        /// Execution counter or id, or `[user@]host:port`.
        #[arg(value_name = "EXEC")]
        target: String,
        /// Ask for a PTY (for full-screen programs).
        #[arg(short = 't', long)]
        tty: bool,
        /// How to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// Where executions come from.
        #[command(flatten)]
        source: SourceArgs,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Local forwards until Ctrl-C; they reconnect on their own.
    Tunnel {
        /// Execution counter or id, or `[user@]host:port`.
        #[arg(value_name = "EXEC")]
        target: String,
        /// REMOTE | LOCAL:REMOTE | LOCAL:HOST:REMOTE | :REMOTE (any free local port)
        /// | BIND:LOCAL:HOST:REMOTE (ssh's -L form).
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<TunnelSpec>,
        /// Local address to bind.
        #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
        bind: IpAddr,
        /// How to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// Where executions come from.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Run the local control plane (executions on this machine, Valohai's API).
    Serve {
        /// Address to listen on (loopback unless you mean it).
        #[arg(long, default_value = "127.0.0.1:8740")]
        listen: std::net::SocketAddr,
        /// Stop the background control plane of this data directory (and
        /// its executions) instead.
        #[arg(long, conflicts_with = "status")]
        stop: bool,
        /// Say whether a control plane runs for this data directory, where
        /// and as which process; exit 1 when none does.
        #[arg(long)]
        status: bool,
    },
    /// Start a local execution under porthole-agent.
    Run {
        /// Title shown in lists.
        #[arg(long)]
        title: Option<String>,
        /// Keep SSH up this long after the command ends (e.g. 30m).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        linger: Option<String>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List executions, newest first.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only these statuses (repeatable; `incomplete` = not finished).
        #[arg(long = "status", value_name = "STATUS", value_parser = STATUSES)]
        statuses: Vec<String>,
        /// Where executions come from.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Print an execution's log.
    Logs {
        /// Execution counter or id.
        #[arg(value_name = "EXEC")]
        exec: String,
        /// Keep printing new lines until the execution ends.
        #[arg(short, long)]
        follow: bool,
        /// Print only the last N lines (then, with --follow, every new one).
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// Where executions come from.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Stop an execution (its whole process tree, for local ones).
    Stop {
        /// Execution counter or id.
        #[arg(value_name = "EXEC")]
        exec: String,
        /// Where executions come from.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Keep an execution's SSH server up longer after its command ended
    /// (`extend 1h`), or let it stop now (`release`).
    Linger {
        /// Execution counter or id, or `[user@]host:port`.
        #[arg(value_name = "EXEC")]
        target: String,
        /// `extend DURATION` (e.g. `extend 1h`: at least that long from
        /// now) or `release`.
        #[arg(required = true, num_args = 1..=2, value_name = "extend DURATION|release")]
        request: Vec<String>,
        /// How to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// Where executions come from.
        #[command(flatten)]
        source: SourceArgs,
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

/// Where executions come from.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// `local` (this machine's control plane) or `valohai`; default: Valohai
    /// when a token is found, else local.
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// Valohai API token (prefer VALOHAI_TOKEN or `vh login`: flags show up in `ps`).
    #[arg(long, hide_env_values = true)]
    pub token: Option<String>,
    /// Valohai installation (default https://app.valohai.com/).
    #[arg(long)]
    pub host: Option<String>,
    /// Valohai project id (default: VALOHAI_PROJECT or the `vh` link of this directory).
    #[arg(long)]
    pub project: Option<String>,
}
