//! Direct targets: `[user@]host:port`.

use std::fmt;
use std::str::FromStr;

/// The SSH user when none is given: execution containers run as root.
pub const DEFAULT_USER: &str = "root";

/// Where to connect and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Login name.
    pub user: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Why a target did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a target: {reason} (expected [user@]host:port, e.g. root@10.0.0.5:2222)")]
pub struct TargetError {
    input: String,
    reason: &'static str,
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| TargetError {
            input: s.to_string(),
            reason,
        };
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (u.to_string(), r),
            Some(_) => return Err(err("empty user")),
            None => (DEFAULT_USER.to_string(), s),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| err("unclosed `[`"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| err("missing :port"))?;
            (host, port)
        } else {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("missing :port"))?;
            if host.contains(':') {
                return Err(err("IPv6 addresses need brackets, as in [::1]:2222"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(err("empty host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| err("bad port"))?;
        Ok(Target {
            user,
            host: host.to_string(),
            port,
        })
    }
}

impl Target {
    /// `host:port` in the form a socket address lookup takes.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.host_port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t: Target = "10.0.0.5:2222".parse().expect("valid");
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("root", "10.0.0.5", 2222)
        );
        let t: Target = "me@[::1]:22".parse().expect("valid");
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("me", "::1", 22)
        );
        assert_eq!(t.to_string(), "me@[::1]:22");
        let t: Target = "a@b@host.example:80".parse().expect("valid");
        assert_eq!(t.user, "a@b");
    }

    #[test]
    fn bad_targets_say_why() {
        for bad in [
            "host",
            "host:",
            "host:99999",
            "@h:1",
            "::1:22",
            "[::1:22",
            ":22",
            "h:0",
        ] {
            let e = bad.parse::<Target>().expect_err(bad);
            assert!(e.to_string().contains("expected [user@]host:port"), "{e}");
        }
    }
}
