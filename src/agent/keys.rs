//! Authorized client keys and the host key.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context as _};
use russh::keys::ssh_key::authorized_keys::Entry;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, HashAlg, PrivateKey};

/// The public keys allowed to log in. Comments and options are not part of
/// the comparison: a key matches on its key data alone.
#[derive(Debug, Default)]
pub struct AuthorizedKeys {
    keys: Vec<KeyData>,
}

impl AuthorizedKeys {
    /// Reads keys from authorized_keys text. Lines that do not parse are
    /// skipped and reported in `warnings` (with `origin` and line number):
    /// a typo in one line must not lock everyone out, nor crash the agent.
    pub fn add_text(&mut self, origin: &str, text: &str, warnings: &mut Vec<String>) {
        // A private key where the public half belongs is a mistake worth
        // one clear line, not one "not a public key" per base64 line, and
        // its contents must not be echoed.
        if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
            warnings.push(format!(
                "{origin} holds a private key, not public key lines; skipped: pass the \
                 public half (the .pub file, or `ssh-keygen -y -f KEY`) and keep the \
                 private key off this machine"
            ));
            return;
        }
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match Entry::from_str(line) {
                Ok(entry) => {
                    if !entry.config_opts().is_empty() {
                        warnings.push(format!(
                            "{origin}:{}: key options ({}) are not honoured; the key is accepted without them",
                            index + 1,
                            entry.config_opts().as_str()
                        ));
                    }
                    let data = entry.public_key().key_data().clone();
                    if !self.keys.contains(&data) {
                        self.keys.push(data);
                    }
                }
                Err(e) => warnings.push(format!(
                    "{origin}:{}: not a public key line ({e}); skipped",
                    index + 1
                )),
            }
        }
    }

    /// Reads an authorized_keys file.
    pub fn add_file(&mut self, path: &Path, warnings: &mut Vec<String>) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read authorized keys file {}", path.display()))?;
        self.add_text(&path.display().to_string(), &text, warnings);
        Ok(())
    }

    /// Whether `key` may log in.
    pub fn contains(&self, key: &KeyData) -> bool {
        self.keys.contains(key)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key at all was given.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Loads `--host-key FILE`, or makes a fresh ed25519 key for this run.
pub fn host_key(path: Option<&Path>) -> anyhow::Result<PrivateKey> {
    let Some(path) = path else {
        return PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .context("cannot generate an ed25519 host key");
    };
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => bail!(
            "host key {} is encrypted; porthole-agent needs an unencrypted host key",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot load host key {}", path.display())),
    }
}

/// The fingerprint as `ssh-keygen -l` prints it: `SHA256:<base64>`.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJrd9lod1M7lW12XTlqVq3V8oSSyFFgJh+h513hwM2Cx a@b";

    #[test]
    fn garbage_lines_are_skipped_with_a_warning() {
        let mut keys = AuthorizedKeys::default();
        let mut warnings = Vec::new();
        let text = format!("# comment\n\nnot a key\nssh-ed25519 !!!\n{ED}\n{ED}\n");
        keys.add_text("keys", &text, &mut warnings);
        assert_eq!(keys.len(), 1, "duplicates count once");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("keys:3:"), "{warnings:?}");
    }

    #[test]
    fn a_private_key_is_named_in_one_line_and_not_echoed() {
        let mut keys = AuthorizedKeys::default();
        let mut warnings = Vec::new();
        let text =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n\
                    AAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQ\n-----END OPENSSH PRIVATE KEY-----\n";
        keys.add_text("/root/.ssh/id_ed25519", text, &mut warnings);
        assert!(keys.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("holds a private key"), "{warnings:?}");
        assert!(!warnings[0].contains("b3BlbnNz"), "{warnings:?}");
    }

    #[test]
    fn options_are_reported_not_fatal() {
        let mut keys = AuthorizedKeys::default();
        let mut warnings = Vec::new();
        keys.add_text(
            "env",
            &format!("no-pty,from=\"10.0.0.1\" {ED}"),
            &mut warnings,
        );
        assert_eq!(keys.len(), 1);
        assert!(warnings[0].contains("not honoured"), "{warnings:?}");
    }

    #[test]
    fn fresh_host_key_has_an_openssh_fingerprint() {
        let key = host_key(None).expect("generated");
        let fp = fingerprint(&key);
        assert!(fp.starts_with("SHA256:"), "{fp}");
        assert_eq!(fp.len(), "SHA256:".len() + 43, "{fp}");
    }
}
