//! Choosing the execution source (Valohai or the local control plane) and
//! resolving `EXEC` arguments to SSH targets through it.

use anyhow::{bail, Context as _};

use super::watch::Watch;
use crate::cli::SourceArgs;
use crate::config::Paths;
use crate::control;
use crate::source::credentials::{self, Credentials, Overrides, Token};
use crate::source::scanner::{Endpoint, Scanner};
use crate::source::valohai::ExecutionFilter;
use crate::source::{ApiClient, ApiError, Execution};
use crate::ssh::Target;

/// The project id the local control plane serves.
pub const LOCAL_PROJECT: &str = "local";

/// How much of a log's end is searched for an SSH address the status
/// events do not have.
pub const ENDPOINT_TAIL: u64 = 1_000;

/// Which source to use, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// The local control plane (started on demand).
    Local,
    /// Valohai, with the token from flags, environment or `vh login`.
    Valohai,
}

/// A connected source.
pub struct Source {
    /// The API client.
    pub client: ApiClient,
    /// Whether it is the local control plane.
    pub local: bool,
}

/// Valohai credentials from flags, environment, porthole's config or vh's.
pub fn valohai_credentials(
    args: &SourceArgs,
    paths: &Paths,
) -> anyhow::Result<Option<Credentials>> {
    let cwd = std::env::current_dir().unwrap_or_default();
    credentials::discover(
        &Overrides {
            token: args.token.clone(),
            host: args.host.clone(),
            project: args.project.clone(),
        },
        &paths.config_file(),
        credentials::vh_config_path().as_deref(),
        &cwd,
    )
}

/// Opens the configured source: Valohai when credentials exist (or when
/// asked for), else the local control plane, started if it is not running.
pub async fn open(args: &SourceArgs, paths: &Paths) -> anyhow::Result<Source> {
    let creds = match args.source {
        Some(SourceKind::Local) => None,
        Some(SourceKind::Valohai) => Some(valohai_credentials(args, paths)?.context(
            "no Valohai token: set VALOHAI_TOKEN, pass --token, or log in with `vh login`",
        )?),
        None => valohai_credentials(args, paths)?,
    };
    if let Some(creds) = creds {
        return Ok(Source {
            client: ApiClient::new(&creds)?,
            local: false,
        });
    }
    let endpoint = control::ensure_running(paths).await?;
    Ok(Source {
        client: local_client(&endpoint)?,
        local: true,
    })
}

/// An API client for a local control plane.
pub fn local_client(endpoint: &control::Endpoint) -> anyhow::Result<ApiClient> {
    Ok(ApiClient::new(&Credentials {
        host: endpoint.url.clone(),
        token: Token::new(endpoint.token.clone()),
        project: Some(LOCAL_PROJECT.to_string()),
        origin: "the local control plane".into(),
    })?)
}

impl Source {
    /// Finds an execution by counter (`12` or `#12`), `latest`, or id.
    pub async fn execution(&self, exec: &str) -> anyhow::Result<Execution> {
        let exec = exec.trim();
        let counter = exec.strip_prefix('#').unwrap_or(exec);
        if counter.eq_ignore_ascii_case("latest") {
            return self.newest().await?.context(
                "there are no executions yet; start one with `porthole run -- CMD`, or see \
                 `porthole list`",
            );
        }
        if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(self.client.execution(exec).await?);
        }
        let project = self.client.project.as_deref().with_context(|| {
            format!(
                "execution #{counter}: a counter needs a project; set VALOHAI_PROJECT, pass \
                 --project, or link this directory with `vh project link`"
            )
        })?;
        match self.client.execution(&format!("{project}:{counter}")).await {
            Ok(e) => Ok(e),
            Err(ApiError::NotFound { .. }) => {
                let newest = self.newest().await.ok().flatten();
                match newest {
                    Some(n) => bail!(
                        "no execution #{counter} (newest is #{}; see porthole list)",
                        n.counter
                    ),
                    None => bail!(
                        "no execution #{counter}: there are none yet (start one with \
                         `porthole run -- CMD`)"
                    ),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The newest execution, if any.
    async fn newest(&self) -> Result<Option<Execution>, ApiError> {
        let filter = ExecutionFilter {
            limit: Some(1),
            ..Default::default()
        };
        Ok(self.client.executions(&filter).await?.into_iter().next())
    }

    /// The latest SSH announcement of an execution: status events first,
    /// then the log's last [`ENDPOINT_TAIL`] lines (other platforms print
    /// the human form there), never the whole log.
    pub async fn endpoint(&self, execution: &Execution) -> anyhow::Result<Option<Endpoint>> {
        let mut scanner = Scanner::new();
        let status = self.client.status_events(&execution.id).await?;
        for e in &status.status_events {
            scanner.feed(&e.message);
        }
        if scanner.latest().is_none() {
            let log = self.client.events(&execution.id, ENDPOINT_TAIL).await?;
            for e in &log.events {
                scanner.feed(&e.message);
            }
        }
        Ok(scanner.latest().cloned())
    }
}

/// What an `EXEC` argument resolved to.
pub struct Resolved {
    /// Where to connect.
    pub target: Target,
    /// The announced host key, to pin.
    pub host_key: Option<String>,
    /// The execution, when `EXEC` named one, to say why a connection ends.
    pub watch: Option<Watch>,
}

/// Resolves `EXEC`: a direct target `[user@]host:port`, else an execution
/// counter or id (neither has a colon) looked up through the source.
pub async fn resolve(
    exec: &str,
    user: Option<&str>,
    args: &SourceArgs,
    paths: &Paths,
) -> anyhow::Result<Resolved> {
    if let Ok(mut target) = exec.parse::<Target>() {
        if let Some(u) = user {
            target.user = u.to_string();
        }
        return Ok(Resolved {
            target,
            host_key: None,
            watch: None,
        });
    }
    let source = open(args, paths).await?;
    let execution = source.execution(exec).await?;
    let Some(endpoint) = source.endpoint(&execution).await? else {
        bail!(
            "execution #{} ({}) has not announced an SSH address yet; watch it with `porthole logs {} --follow`",
            execution.counter,
            execution.status,
            execution.counter
        );
    };
    let user = user
        .map(str::to_string)
        .or(endpoint.user.clone())
        .unwrap_or_else(|| crate::ssh::target::DEFAULT_USER.to_string());
    Ok(Resolved {
        target: Target {
            user,
            host: endpoint.host,
            port: endpoint.port,
        },
        host_key: endpoint.host_key,
        watch: Some(Watch::new(source.client.clone(), &execution)),
    })
}
