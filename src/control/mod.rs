//! The local control plane: runs executions on this machine under
//! `porthole-agent`, keeps their records and logs under the data
//! directory, and serves them through the subset of Valohai's REST API that
//! porthole's client speaks, so that the same client code path works for
//! Valohai and for local runs.
//!
//! One control plane per data directory: an exclusive lock on
//! `control/lock` keeps a second one (which would hand out the same
//! counters) from starting over the same records. Clients find the running
//! one through `control/endpoint` (its URL) and `control/token`.

pub mod api;
pub mod demo;
pub mod logstore;

pub mod runner;
pub mod store;

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};
use tokio::net::TcpListener;

use crate::config::Paths;
pub use runner::{Control, Options};

/// The default address of `porthole serve`: loopback only, since the API
/// starts processes on this machine.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8740";

/// How long `discover` waits for an answer.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `ensure_running` waits for a control plane it started.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// After a shutdown signal, how long open HTTP requests may still take.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Where a running control plane answers.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL, like `http://127.0.0.1:8740/` (without `api/v0`).
    pub url: String,
    /// The API token (`Authorization: Token <token>`).
    pub token: String,
}

impl std::fmt::Debug for Endpoint {
    // The token stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("token", &"<hidden>")
            .finish()
    }
}

/// `data_dir/control`, where the control plane keeps everything.
pub fn control_dir(paths: &Paths) -> PathBuf {
    paths.data_dir.join("control")
}

/// The file holding the running control plane's URL.
pub fn endpoint_file(paths: &Paths) -> PathBuf {
    control_dir(paths).join("endpoint")
}

/// The file holding the API token.
pub fn token_file(paths: &Paths) -> PathBuf {
    control_dir(paths).join(store::TOKEN_FILE)
}

/// Releases what a serving instance holds, whichever way it ends: a
/// graceful shutdown, an aborted task, or a runtime going away. Executions
/// still running are killed (a graceful shutdown has stopped them already),
/// the store stops writing, the endpoint file goes, then the lock.
struct Guard {
    control: Arc<Control>,
    endpoint_file: PathBuf,
    url: String,
    _lock: Flock<File>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.control.kill_all_now();
        self.control.store.close();
        // Only our own: a newer instance may have replaced it already.
        if std::fs::read_to_string(&self.endpoint_file).is_ok_and(|u| u.trim() == self.url) {
            let _ = std::fs::remove_file(&self.endpoint_file);
        }
    }
}

/// A bound, not yet serving control plane.
struct Instance {
    listener: TcpListener,
    state: api::ApiState,
    endpoint: Endpoint,
    guard: Guard,
}

async fn open(listen: SocketAddr, paths: &Paths, options: &Options) -> anyhow::Result<Instance> {
    let dir = control_dir(paths);
    store::create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = take_lock(&dir, paths)?;
    let token = store::load_or_create_token(&dir)?;
    let store = Arc::new(store::Store::open(&dir)?);
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen} (is another program using that port? try --listen 127.0.0.1:0)")
    })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let base = format!("http://{bound}");
    let url = format!("{base}/");
    let file = endpoint_file(paths);
    store::write_atomically(&file, format!("{url}\n").as_bytes())?;
    let control = Arc::new(Control::new(store, paths.clone(), options));
    let state = api::ApiState {
        control: control.clone(),
        token: token.clone().into(),
        base: base.into(),
        started: crate::source::model::now_iso().into(),
    };
    Ok(Instance {
        listener,
        state,
        endpoint: Endpoint {
            url: url.clone(),
            token,
        },
        guard: Guard {
            control,
            endpoint_file: file,
            url,
            _lock: lock,
        },
    })
}

fn take_lock(dir: &Path, paths: &Paths) -> anyhow::Result<Flock<File>> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let running = std::fs::read_to_string(endpoint_file(paths))
                .map(|u| format!(" at {}", u.trim()))
                .unwrap_or_default();
            anyhow::bail!(
                "another porthole control plane is already running over {}{running}",
                dir.display()
            )
        }
        Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Serves `instance` until `shutdown` completes, then stops every running
/// execution (recording them `stopped`) and closes.
async fn run(instance: Instance, shutdown: impl Future<Output = ()> + Send + 'static) {
    let Instance {
        listener,
        state,
        guard,
        ..
    } = instance;
    let control = state.control.clone();
    let app = api::router(state);
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let graceful = async move {
        shutdown.await;
        // While still answering, so clients see `stopping` then `stopped`.
        control.stop_all().await;
        let _ = stopped_tx.send(());
    };
    use axum::serve::ListenerExt as _;
    // Answers are often written in pieces (a streamed log window): without
    // TCP_NODELAY, Nagle's algorithm and the client's delayed ACK hold the
    // last piece back for ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                eprintln!("porthole control plane: the HTTP server failed: {e}");
            }
        }
        // A client holding a request open must not keep us up for ever.
        () = async {
            if stopped_rx.await.is_ok() {
                tokio::time::sleep(HTTP_DRAIN).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {}
    }
    drop(guard);
}

/// `porthole serve`: serves on `listen` until SIGINT or SIGTERM, then stops
/// the running executions and returns.
pub async fn serve(listen: SocketAddr, paths: &Paths) -> anyhow::Result<()> {
    serve_with(listen, paths, &Options::default()).await
}

/// [`serve`] with explicit options (the agent binary).
pub async fn serve_with(
    listen: SocketAddr,
    paths: &Paths,
    options: &Options,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Watch the signals before announcing, so that a signal sent right
    // after the announcement is not the default (instant) death.
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let instance = open(listen, paths, options).await?;
    // Only `porthole serve` writes its pid: `serve --stop` must never
    // signal a console that runs a control plane inside itself.
    let pid_file = serve_pid_file(paths);
    if let Err(e) =
        store::write_atomically(&pid_file, format!("{}\n", std::process::id()).as_bytes())
    {
        eprintln!(
            "porthole control plane: warning: {e:#}; `porthole serve --stop` will not find it"
        );
    }
    println!("porthole control plane: {}api/v0/", instance.endpoint.url);
    println!("token file: {}", token_file(paths).display());
    let shutdown = async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        eprintln!("porthole control plane: {name} received; stopping running executions");
    };
    run(instance, shutdown).await;
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}

/// The file where `porthole serve` keeps its process id.
pub fn serve_pid_file(paths: &Paths) -> PathBuf {
    control_dir(paths).join("serve.pid")
}

/// The pid of the `porthole serve` of `paths`, if its file names a
/// process that is a `porthole serve`.
pub fn serve_pid(paths: &Paths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(serve_pid_file(paths))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_serve = cmdline.split(|b| *b == 0).any(|arg| arg == b"serve");
    is_serve.then_some(pid)
}

/// What `porthole serve --status` and `--stop` found.
pub enum Background {
    /// None answers for this data directory.
    None,
    /// A `porthole serve` answers.
    Serve {
        /// Where.
        endpoint: Endpoint,
        /// Its process.
        pid: i32,
    },
    /// One answers inside another process (the console's).
    InProcess(Endpoint),
}

/// The control plane of `paths`, as `serve --status` tells it.
pub async fn background(paths: &Paths) -> Background {
    match discover(paths).await {
        None => Background::None,
        Some(endpoint) => match serve_pid(paths) {
            Some(pid) => Background::Serve { endpoint, pid },
            None => Background::InProcess(endpoint),
        },
    }
}

/// Stops the `porthole serve` of `paths` (SIGTERM, which stops its
/// executions too) and waits until it no longer answers.
pub async fn stop_background(pid: i32, paths: &Paths) -> anyhow::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .with_context(|| format!("cannot signal the control plane (pid {pid})"))?;
    let started = Instant::now();
    while discover(paths).await.is_some() || serve_pid(paths) == Some(pid) {
        if started.elapsed() > START_TIMEOUT {
            anyhow::bail!(
                "the control plane (pid {pid}) still runs {} s after SIGTERM",
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Serves on an ephemeral loopback port inside this process (for the TUI),
/// until the returned task is aborted or the runtime ends; either way the
/// running executions are killed and recorded `stopped`.
pub async fn start_in_process(
    paths: &Paths,
) -> anyhow::Result<(Endpoint, tokio::task::JoinHandle<()>)> {
    start_in_process_with(paths, &Options::default()).await
}

/// [`start_in_process`] with explicit options (the agent binary).
pub async fn start_in_process_with(
    paths: &Paths,
    options: &Options,
) -> anyhow::Result<(Endpoint, tokio::task::JoinHandle<()>)> {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let instance = open(listen, paths, options).await?;
    let endpoint = instance.endpoint.clone();
    let task = tokio::spawn(run(instance, std::future::pending()));
    Ok((endpoint, task))
}

/// The control plane running over `paths`, if there is one that answers
/// `GET /api/v0/users/me/` with its token within 2 s.
pub async fn discover(paths: &Paths) -> Option<Endpoint> {
    let url = std::fs::read_to_string(endpoint_file(paths)).ok()?;
    let url = url.trim();
    let url = if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    };
    let token = std::fs::read_to_string(token_file(paths))
        .ok()?
        .trim()
        .to_string();
    // No proxy: the control plane is on this machine, and a proxy from the
    // environment must not see the token.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(DISCOVER_TIMEOUT)
        .build()
        .ok()?;
    let answer = client
        .get(format!("{url}api/v0/users/me/"))
        .header(reqwest::header::AUTHORIZATION, format!("Token {token}"))
        .send()
        .await
        .ok()?;
    answer
        .status()
        .is_success()
        .then_some(Endpoint { url, token })
}

/// The running control plane, starting `porthole serve --listen
/// 127.0.0.1:0` in the background (its own session, logging to
/// `control/serve.log`) when none answers.
pub async fn ensure_running(paths: &Paths) -> anyhow::Result<Endpoint> {
    if let Some(endpoint) = discover(paths).await {
        return Ok(endpoint);
    }
    let dir = control_dir(paths);
    store::create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join("serve.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find porthole's own executable")?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // The data directory may come from the caller's Paths rather than
        // the environment; pass it on so both agree.
        .env("PORTHOLE_DATA_DIR", &paths.data_dir)
        .env("PORTHOLE_CONFIG_DIR", &paths.config_dir);
    // SAFETY: setsid is async-signal-safe and touches no memory of ours;
    // a session of its own keeps the control plane alive, and out of the
    // terminal's signals, after this command exits.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {} serve", exe.display()))?;
    let started = Instant::now();
    loop {
        if let Some(endpoint) = discover(paths).await {
            eprintln!(
                "porthole: started the local control plane (pid {}); stop it with `porthole \
                 serve --stop`",
                child.id()
            );
            // Reap it whenever it ends, so it never lingers as a zombie of ours.
            std::thread::spawn(move || child.wait());
            return Ok(endpoint);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Maybe another one won a race for the lock: ask once more.
            if let Some(endpoint) = discover(paths).await {
                return Ok(endpoint);
            }
            anyhow::bail!(
                "the local control plane exited at start ({status}); see {}",
                log_path.display()
            );
        }
        if started.elapsed() > START_TIMEOUT {
            std::thread::spawn(move || child.wait());
            anyhow::bail!(
                "the local control plane did not answer within {} s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
