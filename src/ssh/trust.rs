//! Host-key trust: a pinned fingerprint, else porthole's own known-hosts
//! file, keyed by address *and* port because execution addresses are
//! reused across runs. A changed key is never accepted silently.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::{HashAlg, PublicKey};

/// Asks the user a yes/no question (a terminal prompt in the CLI, a dialog
/// in the console); `None` when nobody can be asked.
pub type Ask = Arc<dyn Fn(&str) -> Option<bool> + Send + Sync>;

/// How a server's host key is judged.
#[derive(Clone)]
pub enum HostTrust {
    /// Exactly this fingerprint (`SHA256:<base64>`), from `--fingerprint`
    /// or the agent's announcement.
    Pinned(String),
    /// porthole's known-hosts file.
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// Trust an unknown host without asking (`--accept-new`).
        accept_new: bool,
        /// Replace a changed key without asking (`--accept-changed`).
        accept_changed: bool,
        /// Who to ask otherwise.
        ask: Option<Ask>,
    },
}

impl std::fmt::Debug for HostTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostTrust::Pinned(fp) => write!(f, "Pinned({fp})"),
            HostTrust::KnownHosts {
                path,
                accept_new,
                accept_changed,
                ask,
            } => f
                .debug_struct("KnownHosts")
                .field("path", path)
                .field("accept_new", accept_new)
                .field("accept_changed", accept_changed)
                .field("interactive", &ask.is_some())
                .finish(),
        }
    }
}

/// Why a host key was not trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The pinned fingerprint differs from the presented one.
    #[error(
        "host key mismatch for {host}: expected {expected}, the server presented {presented}; \
         refusing to connect"
    )]
    PinMismatch {
        /// `[host]:port`.
        host: String,
        /// The pin.
        expected: String,
        /// What the server showed.
        presented: String,
    },
    /// Not in known hosts, and nobody may or can accept it.
    #[error(
        "the host key of {host} is not known ({presented}); pin it with --fingerprint, \
         or pass --accept-new to trust it on first use"
    )]
    Unknown {
        /// `[host]:port`.
        host: String,
        /// What the server showed.
        presented: String,
    },
    /// Known hosts holds another key for this address.
    #[error(
        "THE HOST KEY OF {host} HAS CHANGED: {known} records {recorded}, the server presented \
         {presented}. An execution restarted at the same address explains this; so does an \
         attacker. Refusing; pass --accept-changed to replace the recorded key"
    )]
    Changed {
        /// `[host]:port`.
        host: String,
        /// The known-hosts file.
        known: String,
        /// The recorded fingerprint.
        recorded: String,
        /// What the server showed.
        presented: String,
    },
    /// The user said no.
    #[error("the host key of {host} ({presented}) was not accepted")]
    Declined {
        /// `[host]:port`.
        host: String,
        /// What the server showed.
        presented: String,
    },
    /// The known-hosts file could not be read or written.
    #[error("known hosts file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// `SHA256:<base64>` as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn host_pattern(host: &str, port: u16) -> String {
    format!("[{host}]:{port}")
}

impl HostTrust {
    /// Judges `key` presented by `host:port`, recording it when accepted.
    pub fn verify(&self, host: &str, port: u16, key: &PublicKey) -> Result<(), TrustError> {
        let presented = fingerprint(key);
        let pattern = host_pattern(host, port);
        match self {
            HostTrust::Pinned(expected) => {
                if normalize(expected) == normalize(&presented) {
                    Ok(())
                } else {
                    Err(TrustError::PinMismatch {
                        host: pattern,
                        expected: expected.clone(),
                        presented,
                    })
                }
            }
            HostTrust::KnownHosts {
                path,
                accept_new,
                accept_changed,
                ask,
            } => {
                let store = KnownHosts::new(path);
                let recorded = store.lookup(&pattern).map_err(|source| TrustError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                if recorded.iter().any(|k| k.key_data() == key.key_data()) {
                    return Ok(());
                }
                if let Some(old) = recorded.first() {
                    let changed = TrustError::Changed {
                        host: pattern.clone(),
                        known: path.display().to_string(),
                        recorded: fingerprint(old),
                        presented: presented.clone(),
                    };
                    if !*accept_changed {
                        let question = format!("{changed}.\nReplace the recorded key and connect?");
                        if ask.as_ref().and_then(|ask| ask(&question)) != Some(true) {
                            return Err(changed);
                        }
                    }
                } else if !*accept_new {
                    let question = format!(
                        "The host key of {pattern} is not known yet.\n  {presented}\nTrust it and connect?"
                    );
                    match ask.as_ref().and_then(|ask| ask(&question)) {
                        Some(true) => {}
                        Some(false) => {
                            return Err(TrustError::Declined {
                                host: pattern,
                                presented,
                            })
                        }
                        None => {
                            return Err(TrustError::Unknown {
                                host: pattern,
                                presented,
                            })
                        }
                    }
                }
                store
                    .record(&pattern, key)
                    .map_err(|source| TrustError::Io {
                        path: path.display().to_string(),
                        source,
                    })
            }
        }
    }
}

/// Fingerprints compare without base64 padding.
fn normalize(fp: &str) -> &str {
    fp.trim().trim_end_matches('=')
}

/// porthole's known-hosts file: OpenSSH's line format, one `[host]:port`
/// pattern per line, rewritten atomically with mode 0600.
pub struct KnownHosts<'a> {
    path: &'a Path,
}

impl<'a> KnownHosts<'a> {
    /// The store at `path` (created on first record).
    pub fn new(path: &'a Path) -> Self {
        KnownHosts { path }
    }

    fn read(&self) -> std::io::Result<String> {
        match std::fs::read_to_string(self.path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// The keys recorded for `pattern`. Lines that do not parse are ignored.
    pub fn lookup(&self, pattern: &str) -> std::io::Result<Vec<PublicKey>> {
        Ok(self
            .read()?
            .lines()
            .filter_map(|line| {
                let (hosts, key) = line.trim().split_once(' ')?;
                hosts
                    .split(',')
                    .any(|h| h == pattern)
                    .then(|| PublicKey::from_openssh(key.trim()).ok())
                    .flatten()
            })
            .collect())
    }

    /// Records `key` as the only key of `pattern`.
    pub fn record(&self, pattern: &str, key: &PublicKey) -> std::io::Result<()> {
        let mut kept: Vec<String> = self
            .read()?
            .lines()
            .filter(|line| {
                line.split_once(' ')
                    .is_none_or(|(hosts, _)| !hosts.split(',').any(|h| h == pattern))
            })
            .map(str::to_string)
            .collect();
        let openssh = key
            .to_openssh()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        kept.push(format!("{pattern} {openssh}"));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        for line in &kept {
            writeln!(tmp, "{line}")?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::{Algorithm, PrivateKey};

    fn key() -> PublicKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .expect("key")
            .public_key()
            .clone()
    }

    fn store(dir: &Path, accept_new: bool, accept_changed: bool) -> HostTrust {
        HostTrust::KnownHosts {
            path: dir.join("known_hosts"),
            accept_new,
            accept_changed,
            ask: None,
        }
    }

    #[test]
    fn pin_must_match_exactly() {
        let k = key();
        assert!(HostTrust::Pinned(fingerprint(&k))
            .verify("h", 1, &k)
            .is_ok());
        let err = HostTrust::Pinned(fingerprint(&key()))
            .verify("h", 1, &k)
            .expect_err("mismatch");
        assert!(matches!(err, TrustError::PinMismatch { .. }));
        assert!(err.to_string().contains(&fingerprint(&k)), "{err}");
    }

    #[test]
    fn unknown_needs_consent_and_changed_needs_the_explicit_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (key(), key());
        let err = store(dir.path(), false, false)
            .verify("10.0.0.5", 2222, &a)
            .expect_err("unknown");
        assert!(matches!(err, TrustError::Unknown { .. }), "{err}");
        store(dir.path(), true, false)
            .verify("10.0.0.5", 2222, &a)
            .expect("accept-new records");
        store(dir.path(), false, false)
            .verify("10.0.0.5", 2222, &a)
            .expect("now known");
        // Same address, other port: another host.
        assert!(store(dir.path(), false, false)
            .verify("10.0.0.5", 2223, &a)
            .is_err());
        let err = store(dir.path(), true, false)
            .verify("10.0.0.5", 2222, &b)
            .expect_err("changed");
        assert!(matches!(err, TrustError::Changed { .. }), "{err}");
        store(dir.path(), false, true)
            .verify("10.0.0.5", 2222, &b)
            .expect("explicitly replaced");
        store(dir.path(), false, false)
            .verify("10.0.0.5", 2222, &b)
            .expect("b is now the key");
        assert!(store(dir.path(), false, false)
            .verify("10.0.0.5", 2222, &a)
            .is_err());
        let text = std::fs::read_to_string(dir.path().join("known_hosts")).expect("file");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn the_asker_decides_when_there_is_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let no: Ask = Arc::new(|_| Some(false));
        let yes: Ask = Arc::new(|_| Some(true));
        let with = |ask: &Ask| HostTrust::KnownHosts {
            path: dir.path().join("known_hosts"),
            accept_new: false,
            accept_changed: false,
            ask: Some(ask.clone()),
        };
        let k = key();
        assert!(matches!(
            with(&no).verify("h", 1, &k),
            Err(TrustError::Declined { .. })
        ));
        with(&yes).verify("h", 1, &k).expect("accepted");
        with(&no)
            .verify("h", 1, &k)
            .expect("known now, no question");
    }
}
