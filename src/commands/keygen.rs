//! `porthole keygen`: the default debug key.

use std::path::Path;

use anyhow::{bail, Context as _};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

/// Creates an ed25519 key pair at `path` (private 0600, `.pub` beside it)
/// and returns the public line. An existing key is kept unless `force`.
pub fn create(path: &Path, force: bool) -> anyhow::Result<String> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it (the old key then stops working \
             wherever it was authorized)",
            path.display()
        );
    }
    generate(path)
}

/// The public line of the key at `path`, read from its `.pub` file, or
/// derived from the private key when that file is missing.
pub fn public_line(path: &Path) -> anyhow::Result<String> {
    let pub_path = path.with_extension("pub");
    if let Ok(text) = std::fs::read_to_string(&pub_path) {
        if let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Ok(line.to_string());
        }
    }
    let key = russh::keys::load_secret_key(path, None)
        .with_context(|| format!("cannot read the key {}", path.display()))?;
    key.public_key()
        .to_openssh()
        .context("cannot encode the public key")
}

fn generate(path: &Path) -> anyhow::Result<String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .context("cannot generate an ed25519 key")?;
    key.set_comment(format!("porthole {user}@{host}"));
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode the public key")?;

    // Write both through temporary files so an interrupted run leaves
    // either the old pair or the new one, never half a key.
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    key.write_openssh_file(tmp.path(), LineEnding::LF)
        .context("cannot write the private key")?;
    let pub_path = path.with_extension("pub");
    let mut pub_tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut pub_tmp, format!("{public}\n").as_bytes())?;
    set_mode(pub_tmp.path(), 0o644)?;
    set_mode(tmp.path(), 0o600)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .context("cannot save the private key")?;
    pub_tmp
        .persist(&pub_path)
        .map_err(|e| e.error)
        .context("cannot save the public key")?;
    Ok(public)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_writes_a_private_0600_pair_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/id_ed25519");
        let public = create(&path, false).expect("created");
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pub_text = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
        assert_eq!(pub_text.trim(), public);
        russh::keys::load_secret_key(&path, None).expect("loads back");
        let err = create(&path, false).expect_err("refused");
        assert!(err.to_string().contains("--force"), "{err}");
        let again = create(&path, true).expect("forced");
        assert_ne!(again, public);
    }
}
