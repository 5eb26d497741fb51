//! The account sessions run as, read from /etc/passwd directly.
//!
//! The static agent build cannot load glibc's NSS modules, so `getpwuid`
//! is not an option; containers keep their users in /etc/passwd anyway.

use std::path::{Path, PathBuf};

/// The agent's own account, as sessions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name, or the numeric uid when /etc/passwd has no entry.
    pub name: String,
    /// Home directory.
    pub home: PathBuf,
    /// The shell used for interactive sessions and `-c` commands.
    pub shell: PathBuf,
}

/// One parsed /etc/passwd line.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    name: &'a str,
    uid: u32,
    home: &'a str,
    shell: &'a str,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() < 7 {
        return None;
    }
    Some(Entry {
        name: fields[0],
        uid: fields[2].parse().ok()?,
        home: fields[5],
        shell: fields[6],
    })
}

/// A shell that can actually run an interactive session (not `nologin`,
/// `false`, or a path that does not exist).
fn usable_shell(path: &str) -> bool {
    !path.is_empty()
        && !path.ends_with("/nologin")
        && !path.ends_with("/false")
        && Path::new(path).is_file()
}

/// Resolves the account for `uid` from the text of a passwd file, with the
/// documented fallbacks: passwd shell, `$SHELL`, `/bin/bash`, `/bin/sh`.
pub fn resolve(passwd: &str, uid: u32, env_shell: Option<&str>, env_home: Option<&str>) -> Account {
    let entry = passwd.lines().filter_map(parse_line).find(|e| e.uid == uid);
    let shell = entry
        .as_ref()
        .map(|e| e.shell)
        .into_iter()
        .chain(env_shell)
        .chain(["/bin/bash", "/bin/sh"])
        .find(|s| usable_shell(s))
        .unwrap_or("/bin/sh");
    let home = entry
        .as_ref()
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .or(env_home)
        .unwrap_or("/");
    Account {
        name: entry.map_or_else(|| uid.to_string(), |e| e.name.to_string()),
        home: PathBuf::from(home),
        shell: PathBuf::from(shell),
    }
}

/// The account of the running process.
pub fn current() -> Account {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    resolve(
        &passwd,
        nix::unistd::getuid().as_raw(),
        std::env::var("SHELL").ok().as_deref(),
        std::env::var("HOME").ok().as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          broken line\n\
                          svc:x:999:999::/srv:/usr/sbin/nologin\n";

    #[test]
    fn finds_the_entry_by_uid() {
        let a = resolve(PASSWD, 0, None, None);
        assert_eq!(a.name, "root");
        assert_eq!(a.home, PathBuf::from("/root"));
        assert_eq!(a.shell, PathBuf::from("/bin/sh"));
    }

    #[test]
    fn nologin_falls_back_to_a_real_shell() {
        let a = resolve(PASSWD, 999, Some("/nonexistent/shell"), None);
        assert_eq!(a.name, "svc");
        assert!(a.shell == Path::new("/bin/bash") || a.shell == Path::new("/bin/sh"));
    }

    #[test]
    fn unknown_uid_uses_the_environment() {
        let a = resolve(PASSWD, 4242, Some("/bin/sh"), Some("/tmp"));
        assert_eq!(a.name, "4242");
        assert_eq!(a.home, PathBuf::from("/tmp"));
        assert_eq!(a.shell, PathBuf::from("/bin/sh"));
    }
}
