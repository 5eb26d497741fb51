//! Which keys prove who we are: `-i KEY`, an ssh-agent, porthole's default
//! key. Private keys are only read, never logged or copied.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::client::{Handle, Handler};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};

/// Asks for a secret without echo (`None` when no terminal can be asked).
pub type AskSecret = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where keys come from, in the order they are offered: `-i KEY` alone;
/// else the ssh-agent's keys, porthole's default key, then OpenSSH's
/// default identities.
#[derive(Clone, Default)]
pub struct AuthOptions {
    /// `-i KEY`: only this key is offered.
    pub key_file: Option<PathBuf>,
    /// porthole's default key (offered when present and no `-i`).
    pub default_key: Option<PathBuf>,
    /// OpenSSH's default identities (`~/.ssh/id_ed25519` and friends),
    /// offered last, as `ssh` does. One that cannot be used (encrypted with
    /// no one to ask, too open, unreadable) is skipped, and the error says
    /// why.
    pub openssh_keys: Vec<PathBuf>,
    /// Whether to use the agent at `SSH_AUTH_SOCK` (when no `-i`).
    pub use_agent: bool,
    /// Who to ask for passphrases.
    pub ask_passphrase: Option<AskSecret>,
    /// Keys already read, shared by every clone of these options, so a
    /// passphrase is asked once per run and reconnects never ask again.
    /// Held in memory only.
    pub(crate) loaded: Arc<Mutex<HashMap<PathBuf, Arc<PrivateKey>>>>,
}

impl AuthOptions {
    /// OpenSSH's default identity files that exist in `~/.ssh`.
    pub fn openssh_defaults() -> Vec<PathBuf> {
        let Some(dirs) = directories::BaseDirs::new() else {
            return Vec::new();
        };
        let ssh = dirs.home_dir().join(".ssh");
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|name| ssh.join(name))
            .filter(|p| p.is_file())
            .collect()
    }

    /// Reads the key this run will need now, asking for its passphrase
    /// before anything else happens (and before a console takes over the
    /// terminal): the `-i` key, else porthole's default key if it exists.
    pub fn preload(&mut self) -> Result<(), AuthError> {
        let path = match (&self.key_file, &self.default_key) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) if p.exists() => p.clone(),
            _ => return Ok(()),
        };
        self.key(&path).map(|_| ())
    }

    /// The key in `path`, read once.
    fn key(&self, path: &Path) -> Result<Arc<PrivateKey>, AuthError> {
        if let Some(key) = self.cache().get(path) {
            return Ok(key.clone());
        }
        let key = Arc::new(load_key_file(path, self.ask_passphrase.as_ref())?);
        self.cache().insert(path.to_path_buf(), key.clone());
        Ok(key)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<PrivateKey>>> {
        // A panic elsewhere cannot leave a half-written map behind: insert
        // is the only change.
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("key_file", &self.key_file)
            .field("default_key", &self.default_key)
            .field("openssh_keys", &self.openssh_keys)
            .field("use_agent", &self.use_agent)
            .finish_non_exhaustive()
    }
}

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Like OpenSSH: a private key others can read is not used.
    #[error(
        "permissions {mode:04o} for {path} are too open: a private key must not be readable by \
         others; run `chmod 600 {path}`"
    )]
    LoosePermissions {
        /// The key file.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// The key is encrypted and no terminal can ask for its passphrase.
    #[error("{path} is encrypted and there is no terminal to ask for its passphrase")]
    NeedsPassphrase {
        /// The key file.
        path: String,
    },
    /// The passphrase did not decrypt the key.
    #[error("wrong passphrase for {path}")]
    BadPassphrase {
        /// The key file.
        path: String,
    },
    /// The public half was given where the private key belongs.
    #[error("{path} is the public half of a key; pass the private key{hint}")]
    PublicHalf {
        /// The file given.
        path: String,
        /// ` PATH` when the private key is beside it, else empty.
        hint: String,
    },
    /// Not a key file porthole can read.
    #[error("cannot read private key {path}: {reason}")]
    Unreadable {
        /// The key file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Every offered key was refused (or there was none to offer).
    #[error("the server accepted none of the keys offered ({tried}); {hint}")]
    NoAcceptedKey {
        /// What was offered.
        tried: String,
        /// What to do: the public line to authorize, when a key file was
        /// offered.
        hint: String,
    },
    /// The connection failed during authentication.
    #[error("authentication failed: {0}")]
    Protocol(#[from] russh::Error),
}

/// How many passphrases are asked before giving up, as OpenSSH.
const PASSPHRASE_TRIES: usize = 3;

/// Whether `path` holds an OpenSSH public key line (the `.pub` half).
fn is_public_key_file(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 512];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let text = String::from_utf8_lossy(&head[..n]);
    let first = text.lines().next().unwrap_or("").trim();
    first
        .split_whitespace()
        .nth(1)
        .is_some_and(|b64| b64.starts_with("AAAA"))
        && ["ssh-", "ecdsa-", "sk-"]
            .iter()
            .any(|p| first.starts_with(p))
}

/// Reads a private key file, refusing loose permissions and asking for a
/// passphrase when the key is encrypted.
pub fn load_key_file(path: &Path, ask: Option<&AskSecret>) -> Result<PrivateKey, AuthError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| AuthError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    // Before the permission check: a .pub file is 0644 on purpose, and
    // "chmod 600" would be the wrong advice.
    if is_public_key_file(path) {
        let private = path.with_extension("");
        let hint = if path.extension().is_some_and(|e| e == "pub") && private.is_file() {
            format!(" {}", private.display())
        } else {
            String::new()
        };
        return Err(AuthError::PublicHalf { path: shown, hint });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AuthError::LoosePermissions { path: shown, mode });
    }
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let Some(ask) = ask else {
                return Err(AuthError::NeedsPassphrase { path: shown });
            };
            // Three tries, as OpenSSH gives, with its wording.
            let mut prompt = format!("Passphrase for {shown}: ");
            for _ in 0..PASSPHRASE_TRIES {
                let Some(passphrase) = ask(&prompt) else {
                    return Err(AuthError::NeedsPassphrase { path: shown });
                };
                if let Ok(key) = russh::keys::load_secret_key(path, Some(&passphrase)) {
                    return Ok(key);
                }
                prompt = format!("Bad passphrase, try again for {shown}: ");
            }
            Err(AuthError::BadPassphrase { path: shown })
        }
        Err(e) => Err(AuthError::Unreadable {
            path: shown,
            reason: e.to_string(),
        }),
    }
}

/// Authenticates `user` on a connected session with the configured keys.
pub async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    opts: &AuthOptions,
) -> Result<(), AuthError> {
    let rsa_hash = handle.best_supported_rsa_hash().await?.flatten();
    let mut tried = Vec::new();

    // The first key file offered: the one to authorize if none gets in.
    let mut first_file: Option<Arc<PrivateKey>> = None;

    if let Some(path) = &opts.key_file {
        let key = opts.key(path)?;
        tried.push(path.display().to_string());
        if try_key(handle, user, key.clone(), rsa_hash).await? {
            return Ok(());
        }
        return Err(no_key(tried, Some(&key)));
    }

    if opts.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for identity in identities {
                    let AgentIdentity::PublicKey { key, comment } = identity else {
                        continue;
                    };
                    tried.push(format!(
                        "agent key {}",
                        if comment.is_empty() {
                            "(no comment)"
                        } else {
                            &comment
                        }
                    ));
                    let hash = if key.algorithm().is_rsa() {
                        rsa_hash
                    } else {
                        None
                    };
                    match handle
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                    {
                        Ok(result) if result.success() => return Ok(()),
                        Ok(_) => {}
                        Err(e) => tracing::info!("agent could not sign: {e}"),
                    }
                }
            }
            Err(e) => tracing::info!("ssh-agent unavailable: {e}"),
        }
    }

    if let Some(path) = opts.default_key.as_ref().filter(|p| p.exists()) {
        let key = opts.key(path)?;
        tried.push(path.display().to_string());
        first_file.get_or_insert_with(|| key.clone());
        if try_key(handle, user, key, rsa_hash).await? {
            return Ok(());
        }
    }

    for path in &opts.openssh_keys {
        if opts.default_key.as_ref() == Some(path) {
            continue;
        }
        match opts.key(path) {
            Ok(key) => {
                tried.push(path.display().to_string());
                first_file.get_or_insert_with(|| key.clone());
                if try_key(handle, user, key, rsa_hash).await? {
                    return Ok(());
                }
            }
            Err(e) => {
                tracing::info!("skipping {}: {e}", path.display());
                tried.push(format!("{} skipped: {}", path.display(), skip_reason(&e)));
            }
        }
    }
    Err(no_key(tried, first_file.as_deref()))
}

async fn try_key<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    key: Arc<PrivateKey>,
    rsa_hash: Option<russh::keys::HashAlg>,
) -> Result<bool, AuthError> {
    let hash = if key.algorithm().is_rsa() {
        rsa_hash
    } else {
        None
    };
    let result = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
        .await?;
    Ok(result.success())
}

/// Why an OpenSSH default identity was not offered, in a few words.
fn skip_reason(e: &AuthError) -> String {
    match e {
        AuthError::NeedsPassphrase { .. } => {
            "encrypted and no terminal to ask (load it into ssh-agent or pass -i)".to_string()
        }
        AuthError::LoosePermissions { mode, .. } => format!("permissions {mode:04o} are too open"),
        AuthError::BadPassphrase { .. } => "wrong passphrase".to_string(),
        other => other.to_string(),
    }
}

fn no_key(tried: Vec<String>, offered: Option<&PrivateKey>) -> AuthError {
    let tried = if tried.is_empty() {
        "none".to_string()
    } else {
        tried.join(", ")
    };
    let line = offered.and_then(|k| k.public_key().to_openssh().ok());
    let hint = match line {
        Some(line) => format!(
            "to let this key in, add its public line to the agent (porthole-agent \
             --authorized-key, PORTHOLE_AUTHORIZED_KEYS, or the platform's SSH key field):\n  {line}"
        ),
        None => "pass -i KEY, load the key into ssh-agent, or create porthole's key with \
                 `porthole keygen`"
            .to_string(),
    };
    AuthError::NoAcceptedKey { tried, hint }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::LineEnding;
    use russh::keys::Algorithm;

    #[test]
    fn loose_permissions_are_refused_like_openssh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key");
        key.write_openssh_file(&path, LineEnding::LF)
            .expect("written");
        load_key_file(&path, None).expect("0600 is fine");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_key_file(&path, None).expect_err("0644 refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn the_public_half_is_named_as_such_not_chmod() {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("id_ed25519");
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key");
        key.write_openssh_file(&private, LineEnding::LF)
            .expect("written");
        let public = dir.path().join("id_ed25519.pub");
        std::fs::write(&public, key.public_key().to_openssh().expect("encoded")).expect("pub");
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_key_file(&public, None).expect_err("a public key loaded as private");
        let text = err.to_string();
        assert!(text.contains("is the public half"), "{text}");
        assert!(
            text.ends_with(&format!("pass the private key {}", private.display())),
            "{text}"
        );
        assert!(!text.contains("chmod"), "{text}");
    }

    #[test]
    fn encrypted_keys_need_the_right_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .expect("key")
            .encrypt(&mut rand::rng(), "s3cret")
            .expect("encrypted");
        key.write_openssh_file(&path, LineEnding::LF)
            .expect("written");
        assert!(matches!(
            load_key_file(&path, None),
            Err(AuthError::NeedsPassphrase { .. })
        ));
        let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = asked.clone();
        let wrong: AskSecret = Arc::new(move |prompt| {
            log.lock().expect("log").push(prompt.to_string());
            Some("nope".into())
        });
        assert!(matches!(
            load_key_file(&path, Some(&wrong)),
            Err(AuthError::BadPassphrase { .. })
        ));
        let prompts = asked.lock().expect("log").clone();
        assert_eq!(prompts.len(), 3, "three tries, as OpenSSH: {prompts:?}");
        assert!(
            prompts[1].starts_with("Bad passphrase, try again for "),
            "{prompts:?}"
        );
        // A mistake, then the right one, in the same load.
        let tries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = tries.clone();
        let second_right: AskSecret = Arc::new(move |_| {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some(if n == 0 { "typo" } else { "s3cret" }.into())
        });
        load_key_file(&path, Some(&second_right)).expect("decrypted on the second try");
        let right: AskSecret = Arc::new(|_| Some("s3cret".into()));
        load_key_file(&path, Some(&right)).expect("decrypted");
    }
}
