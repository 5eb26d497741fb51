//! Command line and environment of `porthole-agent`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::admission::MaxStartups;
use super::forward::PermitOpen;

/// The companion SSH server for an execution's container.
///
/// Wraps the step's command (after `--`), prints where it listens in a form
/// porthole and people can read from the log, and serves public-key SSH:
/// shells with a PTY, commands, and `-L` forwarding to the container.
#[derive(Debug, Parser)]
#[command(
    name = "porthole-agent",
    version,
    after_help = "Environment: PORTHOLE_AUTHORIZED_KEYS (newline-separated public key lines), \
                  PORTHOLE_LISTEN, PORTHOLE_ADVERTISE_ADDRESS.\n\
                  Subsystems for porthole: porthole-status@porthole, porthole-linger@porthole."
)]
pub struct AgentArgs {
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "PORTHOLE_LISTEN", default_value = "0.0.0.0:2222")]
    pub listen: SocketAddr,

    /// An authorized_keys file (OpenSSH format); may be repeated.
    #[arg(long = "authorized-keys", value_name = "FILE")]
    pub authorized_keys_files: Vec<PathBuf>,

    /// One public key line (`ssh-ed25519 AAAA... comment`); may be repeated.
    #[arg(long = "authorized-key", value_name = "LINE")]
    pub authorized_keys: Vec<String>,

    /// Host private key (OpenSSH format, unencrypted). Without it a fresh
    /// ed25519 key is made for this run.
    #[arg(long, value_name = "FILE")]
    pub host_key: Option<PathBuf>,

    /// Address to announce (default: first non-loopback IPv4 address).
    #[arg(long, env = "PORTHOLE_ADVERTISE_ADDRESS", value_name = "HOST")]
    pub advertise_address: Option<String>,

    /// Keep serving SSH this long after the wrapped command ends (e.g. 30m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub linger: Option<Duration>,

    /// Also allow `-L` forwarding to HOST:PORT (`*` matches any host or port).
    #[arg(long = "permit-open", value_name = "HOST:PORT")]
    pub permit_open: Vec<PermitOpen>,

    /// Close a connection that has not authenticated within this time
    /// (seconds, or a duration such as 2m); 0 means no limit. As sshd's
    /// `LoginGraceTime`.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "120",
        value_parser = parse_grace_time
    )]
    pub login_grace_time: Duration,

    /// Cap on unauthenticated connections, as sshd's `MaxStartups`: `N`, or
    /// `start:rate:full` (from `start` on, drop with a probability rising
    /// from `rate`% to 100% at `full`). The connection dropped is the
    /// oldest of the address holding the most, so a flood from one address
    /// does not lock out the owner.
    #[arg(long, value_name = "START:RATE:FULL", default_value = "10:30:100")]
    pub max_startups: MaxStartups,

    /// Stop, as on SIGTERM, when the process that started the agent is
    /// gone (even killed with SIGKILL). porthole's local control plane
    /// starts its agents with this, so none outlives it.
    #[arg(long)]
    pub exit_with_parent: bool,

    /// The step's command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Seconds (`120`) or a duration (`2m`); `0` turns the limit off.
fn parse_grace_time(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("{s:?} is not a number of seconds nor a duration: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_time_takes_seconds_or_durations() {
        assert_eq!(parse_grace_time("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_grace_time("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_grace_time("0"), Ok(Duration::ZERO));
        assert!(parse_grace_time("soon").is_err());
    }

    #[test]
    fn defaults_are_sshds() {
        let args = AgentArgs::try_parse_from(["porthole-agent"]).expect("parse");
        assert_eq!(args.login_grace_time, Duration::from_secs(120));
        assert_eq!(args.max_startups, MaxStartups::default());
    }
}
