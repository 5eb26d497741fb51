//! Where porthole keeps its files.
//!
//! `PORTHOLE_CONFIG_DIR` and `PORTHOLE_DATA_DIR` override the platform
//! directories (XDG on Linux), for containers and for tests that must not
//! touch a developer's real files.

use std::path::PathBuf;

use anyhow::Context as _;

/// porthole's directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Configuration and the default key (`~/.config/porthole`).
    pub config_dir: PathBuf,
    /// Known hosts, logs, local executions (`~/.local/share/porthole`).
    pub data_dir: PathBuf,
}

impl Paths {
    /// The directories for this user.
    pub fn discover() -> anyhow::Result<Self> {
        let dirs = directories::ProjectDirs::from("", "", "porthole");
        let pick = |var: &str, default: Option<PathBuf>| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or(default)
                .with_context(|| format!("no home directory found; set {var}"))
        };
        Ok(Paths {
            config_dir: pick(
                "PORTHOLE_CONFIG_DIR",
                dirs.as_ref().map(|d| d.config_dir().to_path_buf()),
            )?,
            data_dir: pick(
                "PORTHOLE_DATA_DIR",
                dirs.as_ref().map(|d| d.data_dir().to_path_buf()),
            )?,
        })
    }

    /// The default debug key made by `porthole keygen`.
    pub fn default_key(&self) -> PathBuf {
        self.config_dir.join("id_ed25519")
    }

    /// porthole's TOML configuration.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// porthole's own known-hosts file.
    pub fn known_hosts(&self) -> PathBuf {
        self.data_dir.join("known_hosts")
    }
}
