//! Finding a Valohai token without asking: flags, environment, porthole's
//! config file, then the official CLI's `config.json` (`vh login`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// Valohai's public installation.
pub const DEFAULT_HOST: &str = "https://app.valohai.com/";

/// An API token that never shows up in Debug output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Token(token.into())
    }

    /// The secret itself, for the Authorization header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// What the API client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Base URL of the installation (`https://app.valohai.com/`).
    pub host: String,
    /// The token.
    pub token: Token,
    /// Project to list, when known.
    pub project: Option<String>,
    /// Where the credentials were found, for messages.
    pub origin: String,
}

/// Explicit values from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--token`.
    pub token: Option<String>,
    /// `--host`.
    pub host: Option<String>,
    /// `--project`.
    pub project: Option<String>,
}

/// porthole's own config file section.
#[derive(Debug, Default, Deserialize)]
struct PortholeConfig {
    #[serde(default)]
    valohai: Option<ValohaiSection>,
}

#[derive(Debug, Default, Deserialize)]
struct ValohaiSection {
    host: Option<String>,
    token: Option<String>,
    project: Option<String>,
}

/// The official CLI's config.json.
#[derive(Debug, Default, Deserialize)]
struct VhConfig {
    host: Option<String>,
    token: Option<String>,
    #[serde(default)]
    links: std::collections::HashMap<String, VhLink>,
}

#[derive(Debug, Deserialize)]
struct VhLink {
    id: String,
}

/// Where `vh login` keeps its config on this system.
pub fn vh_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VALOHAI_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("valohai-cli").join("config.json"))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Finds credentials in the documented order; `Ok(None)` when there are
/// none anywhere (then porthole uses the local control plane).
pub fn discover(
    overrides: &Overrides,
    porthole_config: &Path,
    vh_config: Option<&Path>,
    cwd: &Path,
) -> anyhow::Result<Option<Credentials>> {
    let env = |k: &str| non_empty(std::env::var(k).ok());
    let project = non_empty(overrides.project.clone()).or_else(|| env("VALOHAI_PROJECT"));
    let mut host = non_empty(overrides.host.clone()).or_else(|| env("VALOHAI_HOST"));

    if let Some(token) = non_empty(overrides.token.clone()) {
        return Ok(Some(make(host, token, project, "--token")));
    }
    if let Some(token) = env("VALOHAI_TOKEN") {
        return Ok(Some(make(host, token, project, "VALOHAI_TOKEN")));
    }
    if porthole_config.exists() {
        let text = std::fs::read_to_string(porthole_config)
            .with_context(|| format!("cannot read {}", porthole_config.display()))?;
        let config: PortholeConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", porthole_config.display()))?;
        if let Some(v) = config.valohai {
            if let Some(token) = non_empty(v.token) {
                host = host.or(non_empty(v.host));
                let project = project.or(non_empty(v.project));
                return Ok(Some(make(
                    host,
                    token,
                    project,
                    &porthole_config.display().to_string(),
                )));
            }
        }
    }
    if let Some(path) = vh_config.filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: VhConfig = serde_json::from_str(&text)
            .with_context(|| format!("{} is not the valohai-cli config format", path.display()))?;
        if let Some(token) = non_empty(config.token) {
            host = host.or(non_empty(config.host));
            // `vh` links directories to projects: the nearest linked ancestor wins.
            let linked = cwd.ancestors().find_map(|dir| {
                config
                    .links
                    .get(dir.to_string_lossy().as_ref())
                    .map(|l| l.id.clone())
            });
            let project = project.or(linked);
            return Ok(Some(make(
                host,
                token,
                project,
                &path.display().to_string(),
            )));
        }
    }
    Ok(None)
}

fn make(host: Option<String>, token: String, project: Option<String>, origin: &str) -> Credentials {
    let mut host = host.unwrap_or_else(|| DEFAULT_HOST.to_string());
    if !host.ends_with('/') {
        host.push('/');
    }
    Credentials {
        host,
        token: Token::new(token),
        project,
        origin: origin.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> bool {
        std::env::var_os("VALOHAI_TOKEN").is_none() && std::env::var_os("VALOHAI_HOST").is_none()
    }

    #[test]
    fn flags_win_and_the_token_is_never_debug_printed() {
        let c = discover(
            &Overrides {
                token: Some("sekrit".into()),
                host: Some("https://vh.example".into()),
                project: None,
            },
            Path::new("/nonexistent"),
            None,
            Path::new("/"),
        )
        .expect("ok")
        .expect("found");
        assert_eq!(c.host, "https://vh.example/");
        assert!(!format!("{c:?}").contains("sekrit"));
    }

    #[test]
    fn vh_login_config_is_read_with_its_project_link() {
        if !no_env() {
            return; // A developer's real VALOHAI_TOKEN would win, correctly.
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let vh = dir.path().join("config.json");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("src")).expect("mkdir");
        std::fs::write(
            &vh,
            serde_json::json!({"host": "https://app.valohai.com/", "token": "t0k", "user": {"id": 1},
                "verify_ssl": true, "links": {repo.to_string_lossy(): {"id": "proj-1", "name": "x"}}})
            .to_string(),
        )
        .expect("write");
        let c = discover(
            &Overrides::default(),
            Path::new("/nonexistent"),
            Some(&vh),
            &repo.join("src"),
        )
        .expect("ok")
        .expect("found");
        assert_eq!(c.token.expose(), "t0k");
        assert_eq!(c.project.as_deref(), Some("proj-1"));

        // After `vh logout` the token is null: nothing found.
        std::fs::write(
            &vh,
            r#"{"host": null, "token": null, "user": null, "links": {}}"#,
        )
        .expect("write");
        let none = discover(
            &Overrides::default(),
            Path::new("/nonexistent"),
            Some(&vh),
            &repo,
        )
        .expect("ok");
        assert!(none.is_none());

        std::fs::write(&vh, "{not json").expect("write");
        assert!(discover(
            &Overrides::default(),
            Path::new("/nonexistent"),
            Some(&vh),
            &repo
        )
        .is_err());
    }
}
