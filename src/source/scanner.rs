//! Finds an execution's SSH endpoint in its status events and log lines:
//! Valohai's `::ssh::{json}` form (with porthole's optional `host_key`) and
//! the human `ssh -i <path> HOST -p PORT ...` form, in any order of
//! options, with ANSI colours, CRLF, or split across events.

use std::net::IpAddr;

/// Where an execution's SSH server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The login name, when the line names one.
    pub user: Option<String>,
    /// The host key fingerprint, when announced (`SHA256:...`).
    pub host_key: Option<String>,
}

/// Longest previous event kept for joining with the next one.
const MAX_PREVIOUS: usize = 4 * 1024;

/// Reads a log event by event; the latest announcement wins (an agent that
/// restarted after a crash announces again).
#[derive(Debug, Default, Clone)]
pub struct Scanner {
    previous: String,
    latest: Option<Endpoint>,
}

impl Scanner {
    /// A scanner that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event's text (one or more lines). Returns the endpoint if
    /// this text completed an announcement different from the latest one.
    ///
    /// A line is read on its own first; only when it holds no announcement
    /// is it read again joined to the previous line, which is how a line
    /// split across two events is recognised.
    pub fn feed(&mut self, text: &str) -> Option<Endpoint> {
        let mut found = None;
        for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
            let hit = scan_line(line).or_else(|| {
                (!self.previous.is_empty())
                    .then(|| scan_line(&format!("{}{line}", self.previous)))
                    .flatten()
            });
            self.previous.clear();
            if line.len() <= MAX_PREVIOUS {
                self.previous.push_str(line);
            }
            if let Some(mut e) = hit {
                // The human line that follows the status line repeats the
                // address without the key: keep the key already announced.
                if let Some(prev) = self.latest.as_ref() {
                    if e.host_key.is_none() && prev.host == e.host && prev.port == e.port {
                        e.host_key = prev.host_key.clone();
                        e.user = e.user.or_else(|| prev.user.clone());
                    }
                }
                if self.latest.as_ref() != Some(&e) {
                    self.latest = Some(e.clone());
                    found = Some(e);
                }
            }
        }
        found
    }

    /// The most recent announcement seen.
    pub fn latest(&self) -> Option<&Endpoint> {
        self.latest.as_ref()
    }
}

/// Removes ANSI escape sequences (CSI, OSC, two-byte escapes) and carriage
/// returns.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                Some('[') => {
                    chars.next();
                    // Parameters and intermediates, then one final byte.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    chars.next();
                    // Until BEL or ST (ESC \).
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Finds an endpoint in one line, if it announces one.
pub fn scan_line(raw: &str) -> Option<Endpoint> {
    let line = strip_ansi(raw);
    if let Some(pos) = line.find(crate::announce::STATUS_PREFIX) {
        return scan_status(&line[pos + crate::announce::STATUS_PREFIX.len()..]);
    }
    scan_ssh_command(&line)
}

fn scan_status(rest: &str) -> Option<Endpoint> {
    let mut stream =
        serde_json::Deserializer::from_str(rest.trim_start()).into_iter::<serde_json::Value>();
    let value = stream.next()?.ok()?;
    let address = value.get("address")?.as_str()?.trim();
    let port = match value.get("port")? {
        serde_json::Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let host = clean_host(address)?;
    if port == 0 {
        return None;
    }
    let host_key = value
        .get("host_key")
        .and_then(|k| k.as_str())
        .map(str::trim)
        .filter(|k| k.starts_with("SHA256:"))
        .map(str::to_string);
    Some(Endpoint {
        host,
        port,
        user: None,
        host_key,
    })
}

/// `ssh` options that take a value (from OpenSSH's getopt string).
const WITH_VALUE: &str = "BbcDEeFIiJLlmOoPpQRSWw";

fn scan_ssh_command(line: &str) -> Option<Endpoint> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let start = tokens
        .iter()
        .position(|t| *t == "ssh" || t.ends_with("/ssh"))?;
    let mut port: Option<u16> = None;
    let mut user: Option<String> = None;
    let mut dest: Option<&str> = None;
    let mut saw_option = false;
    let mut i = start + 1;
    while i < tokens.len() {
        let t = tokens[i];
        if let Some(flags) = t.strip_prefix('-').filter(|f| !f.is_empty()) {
            saw_option = true;
            // Bundled flags like `-tt` or `-p2222`: the first flag that takes
            // a value consumes the rest of the token, or the next token.
            for (j, f) in flags.char_indices() {
                if WITH_VALUE.contains(f) {
                    let inline = &flags[j + f.len_utf8()..];
                    let value = if inline.is_empty() {
                        i += 1;
                        tokens.get(i).copied()
                    } else {
                        Some(inline)
                    };
                    match f {
                        'p' => port = value.and_then(|v| v.parse().ok()),
                        'l' => user = value.map(str::to_string),
                        _ => {}
                    }
                    break;
                }
            }
        } else if dest.is_none() {
            dest = Some(t);
        } else {
            break; // The remote command begins.
        }
        i += 1;
    }
    let dest = dest?;
    let (dest_user, host, dest_port) = split_destination(dest)?;
    // Prose mentions ssh too ("use the ssh key"): a command line has an
    // option, a user@ or an IP address.
    if !saw_option && dest_user.is_none() && host.parse::<IpAddr>().is_err() {
        return None;
    }
    // Announcements always name the port (execution ports are above 1023);
    // requiring it keeps half a line from passing for a whole one.
    let port = port.or(dest_port).filter(|p| *p != 0)?;
    Some(Endpoint {
        host,
        port,
        user: dest_user.or(user),
        host_key: None,
    })
}

/// `user@host`, `host`, `[v6]`, `ssh://user@host:port`.
fn split_destination(dest: &str) -> Option<(Option<String>, String, Option<u16>)> {
    let (uri, dest) = match dest.strip_prefix("ssh://") {
        Some(rest) => (true, rest.trim_end_matches('/')),
        None => (false, dest),
    };
    let (user, hostpart) = match dest.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
        Some(_) => return None,
        None => (None, dest),
    };
    let (host, port) = if uri {
        if let Some(v6) = hostpart.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':').and_then(|p| p.parse().ok()))
        } else if let Some((h, p)) = hostpart.rsplit_once(':') {
            (h, Some(p.parse().ok()?))
        } else {
            (hostpart, None)
        }
    } else {
        (hostpart.trim_start_matches('[').trim_end_matches(']'), None)
    };
    Some((user, clean_host(host)?, port))
}

/// Accepts IP addresses and host names; rejects placeholders and junk.
fn clean_host(host: &str) -> Option<String> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    if host.parse::<IpAddr>().is_ok() {
        return Some(host.to_string());
    }
    let valid = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
    });
    valid.then(|| host.to_string())
}

/// What porthole-agent said of its linger in the log (its lines on
/// stderr, written by `agent::wrapped`): how long its SSH server stays up
/// after the command, or that it has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linger {
    /// The command has ended; SSH stays up until then.
    Until(std::time::SystemTime),
    /// The agent has stopped: linger over, released, or signalled.
    Over,
}

/// Reads one log line of the agent's about its linger, if it is one.
pub fn scan_linger(raw: &str) -> Option<Linger> {
    let line = strip_ansi(raw);
    let rest = line.trim().strip_prefix("porthole-agent: ")?;
    let until = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| Linger::Until(t.into()))
    };
    if let Some(at) = rest.strip_prefix("linger now ends at ") {
        return until(at);
    }
    if rest.starts_with("the command exited with code ") && rest.contains("; SSH stays up for ") {
        let (_, after) = rest.split_once("(until ")?;
        let (at, _) = after.split_once(')')?;
        return until(at);
    }
    let stopped = rest == "linger released, stopping"
        || rest == "linger over, stopping"
        || rest.ends_with(" received during the linger, stopping");
    stopped.then_some(Linger::Over)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            user: None,
            host_key: None,
        }
    }

    #[test]
    fn status_form_with_and_without_host_key() {
        assert_eq!(
            scan_line(r#"::ssh::{"port": 2222, "address": "127.0.0.1"}"#),
            Some(ep("127.0.0.1", 2222))
        );
        let e = scan_line(
            r#"::ssh::{"address":"10.0.0.5","port":2222,"host_key":"SHA256:abc/+9"} trailing"#,
        )
        .expect("found");
        assert_eq!(e.host_key.as_deref(), Some("SHA256:abc/+9"));
        assert_eq!(
            scan_line(r#"::ssh::{"address":"10.0.0.5","port":"2200"}"#),
            Some(ep("10.0.0.5", 2200))
        );
        assert_eq!(
            scan_line(r#"::ssh::{"address":"::1","port":22}"#),
            Some(ep("::1", 22))
        );
        assert_eq!(scan_line(r#"::ssh::{"address":"10.0.0.5"}"#), None);
        assert_eq!(
            scan_line(r#"::ssh::{"address":"10.0.0.5","port":99999}"#),
            None
        );
    }

    #[test]
    fn human_forms() {
        assert_eq!(
            scan_line("$ ssh -i <path-to-private-key> 52.214.159.193 -p 2222 -t /bin/bash"),
            Some(ep("52.214.159.193", 2222))
        );
        assert_eq!(
            scan_line("   $ ssh -i <path-to-private-key> 127.0.0.1 -p 2222 -t /bin/bash"),
            Some(ep("127.0.0.1", 2222))
        );
        let e = scan_line("connect with: ssh -p 2200 me@gpu-7.example.com").expect("found");
        assert_eq!(
            (e.host.as_str(), e.port, e.user.as_deref()),
            ("gpu-7.example.com", 2200, Some("me"))
        );
        assert_eq!(scan_line("ssh -p2222 [fe80::1]"), Some(ep("fe80::1", 2222)));
        assert_eq!(
            scan_line("ssh -tt -p 2222 2001:db8::7 ps aux"),
            Some(ep("2001:db8::7", 2222))
        );
        assert_eq!(
            scan_line("ssh ssh://root@h.example:2022"),
            Some(Endpoint {
                user: Some("root".into()),
                ..ep("h.example", 2022)
            })
        );
        assert_eq!(
            scan_line("\u{1b}[32m$ ssh -i k 10.1.2.3 -p 2222\u{1b}[0m\r"),
            Some(ep("10.1.2.3", 2222))
        );
        assert_eq!(scan_line("use the ssh key you made"), None);
        assert_eq!(scan_line("ssh -i <path>"), None);
    }

    #[test]
    fn split_events_and_latest_wins() {
        let mut s = Scanner::new();
        assert_eq!(s.feed("::ssh::{\"address\": \"10.0.0.1\","), None);
        assert_eq!(s.feed(" \"port\": 2222}\n"), Some(ep("10.0.0.1", 2222)));
        assert_eq!(
            s.feed("$ ssh -i <path-to-private-key> 10.0.0.9 -p 22"),
            Some(ep("10.0.0.9", 22))
        );
        assert_eq!(s.feed("22 -t /bin/bash"), Some(ep("10.0.0.9", 2222)));
        assert_eq!(s.feed("epoch 1 loss 0.3"), None);
        s.feed("::ssh::{\"address\": \"10.0.0.2\", \"port\": 2223}");
        assert_eq!(s.latest(), Some(&ep("10.0.0.2", 2223)));
        // The agent's human line after its status line keeps the host key.
        let mut s = Scanner::new();
        s.feed(r#"::ssh::{"address":"10.0.0.5","port":2222,"host_key":"SHA256:k"}"#);
        s.feed("$ ssh -i <path-to-private-key> 10.0.0.5 -p 2222 -t /bin/bash");
        assert_eq!(
            s.latest().and_then(|e| e.host_key.as_deref()),
            Some("SHA256:k")
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn host() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
                any::<[u16; 8]>().prop_map(|w| std::net::Ipv6Addr::from(w).to_string()),
                "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,8}){0,3}",
            ]
        }

        proptest! {
            #[test]
            fn arbitrary_text_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let text = String::from_utf8_lossy(&bytes);
                let _ = scan_line(&text);
                let mut s = Scanner::new();
                for chunk in text.split_inclusive(['\n', '{']) {
                    let _ = s.feed(chunk);
                }
            }

            #[test]
            fn status_lines_parse_back(h in host(), port in 1u16.., key in "[A-Za-z0-9+/]{43}", colour in any::<bool>()) {
                let json = serde_json::json!({"address": h, "port": port, "host_key": format!("SHA256:{key}")});
                let mut line = format!("::ssh::{json}");
                if colour { line = format!("\u{1b}[1;32m{line}\u{1b}[0m\r"); }
                let e = scan_line(&line).expect("parses");
                prop_assert_eq!(e.host, h);
                prop_assert_eq!(e.port, port);
                prop_assert_eq!(e.host_key, Some(format!("SHA256:{key}")));
            }

            #[test]
            fn human_lines_parse_back(h in host(), port in 1u16.., split in 0usize..60) {
                let line = format!("$ ssh -i <path-to-private-key> {h} -p {port} -t /bin/bash");
                let e = scan_line(&line).expect("parses");
                prop_assert_eq!(&e.host, &h);
                prop_assert_eq!(e.port, port);
                // Split across two events, the second completing the line.
                let cut = line.char_indices().map(|(i, _)| i).nth(split).unwrap_or(line.len());
                let mut s = Scanner::new();
                let _ = s.feed(&line[..cut]);
                let _ = s.feed(&format!("{}\n", &line[cut..]));
                prop_assert_eq!(s.latest().map(|e| (e.host.clone(), e.port)), Some((h, port)));
            }
        }
    }

    #[test]
    fn the_agents_linger_lines() {
        let at = |s: &str| {
            Some(Linger::Until(
                chrono::DateTime::parse_from_rfc3339(s)
                    .expect("time")
                    .into(),
            ))
        };
        assert_eq!(
            scan_linger(
                "porthole-agent: the command exited with code 2; SSH stays up for 10m \
                 (until 2026-12-02T02:20:00Z). `echo release | ssh -s ... porthole-linger@porthole` \
                 ends it sooner, `extend 1h` keeps it longer."
            ),
            at("2026-12-02T02:20:00Z")
        );
        assert_eq!(
            scan_linger("\x1b[2mporthole-agent: linger now ends at 2026-12-02T03:20:00Z\x1b[0m\r"),
            at("2026-12-02T03:20:00Z")
        );
        for over in [
            "porthole-agent: linger released, stopping",
            "porthole-agent: linger over, stopping",
            "porthole-agent: SIGTERM received during the linger, stopping",
        ] {
            assert_eq!(scan_linger(over), Some(Linger::Over), "{over}");
        }
        for other in [
            "linger over, stopping",
            "porthole-agent: linger now ends at soon",
            "echo porthole-agent: the command exited with code 0; SSH stays up for 1m (until x)",
            "",
        ] {
            assert_eq!(scan_linger(other), None, "{other}");
        }
    }
}
