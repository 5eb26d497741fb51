//! The console: executions list, live logs, and tiled panes of shells,
//! commands and tunnels. `app` holds the shared state and routes keys and
//! messages; each kind of pane (`panes`) and popup (`popups`) handles its
//! own keys and draws itself; `ui` lays the screen out; `runtime` does the
//! I/O; this module runs the loop between them and owns the terminal.

pub mod action;
pub mod app;
pub mod executions;
pub mod hints;
pub mod keys;
pub mod layout;
pub mod list;
pub mod panes;
pub mod popups;
pub mod runtime;
pub mod tunnels;
pub mod ui;
pub mod widgets;

use std::collections::HashMap;
use std::io::Stdout;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream, KeyEventKind,
};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use futures::StreamExt as _;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::cli::SourceArgs;
use crate::config::Paths;
use crate::control;
use crate::source::ApiClient;
use crate::ssh::identity::AuthOptions;
use app::App;
use keys::{KeyAction, KeyList, Keymap};
use runtime::{Context, Runtime};

/// Log pane scrollback when the config says nothing.
pub const DEFAULT_SCROLLBACK: usize = 10_000;
/// Most task messages applied between two frames, so input stays
/// responsive while a shell floods output.
const MAX_MESSAGES_PER_FRAME: usize = 64;

/// The `[console]` and `[keys]` sections of the config file.
#[derive(Debug, Default, Deserialize)]
pub struct ConsoleConfig {
    #[serde(default)]
    console: ConsoleSection,
    #[serde(default)]
    keys: HashMap<KeyAction, KeyList>,
}

#[derive(Debug, Default, Deserialize)]
struct ConsoleSection {
    scrollback: Option<usize>,
}

/// Reads the console settings from the config file (absent is fine).
pub fn load_config(paths: &Paths) -> anyhow::Result<(Keymap, usize)> {
    let path = paths.config_file();
    let config: ConsoleConfig = match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConsoleConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let keymap = Keymap::with_overrides(&config.keys)
        .map_err(|e| anyhow::anyhow!("{}: [keys]: {e}", path.display()))?;
    Ok((
        keymap,
        config.console.scrollback.unwrap_or(DEFAULT_SCROLLBACK),
    ))
}

/// Restores the terminal on every way out: drop (normal return, error,
/// unwinding) and the panic hook.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

fn restore_terminal() {
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let guard = TerminalGuard {
            terminal: Terminal::new(CrosstermBackend::new(std::io::stdout()))
                .context("cannot open the terminal")?,
        };
        crossterm::execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        )
        .context("cannot set up the terminal")?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Where the console's executions come from.
pub struct Opened {
    /// API clients with their names, in list order.
    sources: Vec<(String, ApiClient)>,
    /// An in-process control plane, stopped when the console ends.
    control: Option<tokio::task::JoinHandle<()>>,
}

/// Opens every configured source: Valohai when credentials are found (and
/// no `--demo`), plus the local control plane when one is running. With
/// neither, or with `--demo`, a control plane inside this process with the
/// demo executions started if none is running.
pub async fn open_source(paths: &Paths, args: &SourceArgs, demo: bool) -> anyhow::Result<Opened> {
    use crate::commands::source::{local_client, valohai_credentials, SourceKind};
    let mut sources = Vec::new();
    if !demo && args.source != Some(SourceKind::Local) {
        match valohai_credentials(args, paths)? {
            Some(creds) => sources.push(("valohai".to_string(), ApiClient::new(&creds)?)),
            None if args.source == Some(SourceKind::Valohai) => anyhow::bail!(
                "no Valohai token: set VALOHAI_TOKEN, pass --token, or log in with `vh login`"
            ),
            None => {}
        }
    }
    let running = control::discover(paths).await;
    if !sources.is_empty() && !demo {
        if let Some(endpoint) = running.filter(|_| args.source.is_none()) {
            sources.push(("local".to_string(), local_client(&endpoint)?));
        }
        return Ok(Opened {
            sources,
            control: None,
        });
    }
    let (endpoint, task) = match running {
        Some(ep) => (ep, None),
        None => {
            let (ep, task) = control::start_in_process(paths).await?;
            (ep, Some(task))
        }
    };
    let client = local_client(&endpoint)?;
    let public = ensure_key(paths)?;
    let existing = client.executions(&Default::default()).await?;
    let demo_running = existing.iter().any(|e| {
        !e.status().is_finished() && e.title.as_deref().is_some_and(|t| t.starts_with("demo:"))
    });
    if (demo || existing.is_empty()) && !demo_running {
        let dir = control::demo::assets_dir(paths)?;
        for mut create in control::demo::demo_executions(&dir) {
            create.debug_key = Some(public.clone());
            client.create(&create).await?;
        }
    }
    sources.push(("local".to_string(), client));
    Ok(Opened {
        sources,
        control: task,
    })
}

/// The default key's public line, creating the key if there is none.
fn ensure_key(paths: &Paths) -> anyhow::Result<String> {
    let key = paths.default_key();
    if key.exists() {
        let pub_path = key.with_extension("pub");
        return Ok(std::fs::read_to_string(&pub_path)
            .with_context(|| format!("cannot read {}", pub_path.display()))?
            .trim()
            .to_string());
    }
    crate::commands::keygen::create(&key, false)
}

/// Runs the console until the user quits or a signal arrives.
pub async fn run(
    paths: Paths,
    args: SourceArgs,
    demo: bool,
    identity: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (keymap, scrollback) = load_config(&paths)?;
    // Everything that can fail with a plain message happens before the
    // terminal switches to raw mode.
    let mut auth = AuthOptions {
        key_file: identity,
        default_key: Some(paths.default_key()),
        openssh_keys: AuthOptions::openssh_defaults(),
        use_agent: true,
        ask_passphrase: Some(crate::commands::prompt::terminal_secret()),
        ..AuthOptions::default()
    };
    // The key's passphrase is asked now, on the plain terminal; once the
    // console owns the screen nothing may prompt on it, so later keys that
    // need a passphrase are skipped (with the reason in the pane).
    // First, so that a bad key stops here before any source (or the demo)
    // is started.
    auth.preload()?;
    auth.ask_passphrase = None;
    let opened = open_source(&paths, &args, demo).await?;
    let ctx = Context {
        sources: opened.sources.iter().map(|(_, c)| c.clone()).collect(),
        auth,
        known_hosts: paths.known_hosts(),
        timeout: Duration::from_secs(15),
        log_tail: scrollback,
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;

    let mut guard = TerminalGuard::enter()?;
    let (tx, mut rx) = mpsc::channel(1024);
    let mut rt = Runtime::new(tx, ctx);
    rt.start();
    let mut app = App::new(
        keymap,
        scrollback,
        &opened
            .sources
            .iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>(),
        &paths.default_key().display().to_string(),
    );
    let size = guard.terminal.size()?;
    app.resize(size.width, size.height);
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));

    let result: anyhow::Result<()> = async {
        loop {
            if app.dirty {
                guard.terminal.draw(|f| ui::draw(f, &app))?;
                app.dirty = false;
            }
            tokio::select! {
                biased;
                event = events.next() => match event {
                    Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => app.on_key(key),
                    Some(Ok(Event::Mouse(m))) => app.on_mouse(m),
                    Some(Ok(Event::Paste(text))) => app.on_paste(&text),
                    Some(Ok(Event::Resize(w, h))) => app.resize(w, h),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                    None => return Ok(()),
                },
                msg = rx.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    app.update(msg);
                    for _ in 0..MAX_MESSAGES_PER_FRAME {
                        match rx.try_recv() {
                            Ok(msg) => app.update(msg),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    // Running commands show a clock; ages and lingers redraw
                    // only when their text changes, so idle stays idle.
                    if app.panes.values().any(|p| matches!(&p.kind, panes::PaneKind::Command(c) if c.running())) {
                        app.dirty = true;
                    }
                    app.tick(std::time::SystemTime::now());
                }
                _ = sigterm.recv() => return Ok(()),
                _ = sighup.recv() => return Ok(()),
            }
            for effect in app.take_effects() {
                rt.perform(effect);
            }
            if app.quit {
                return Ok(());
            }
        }
    }
    .await;
    rt.shutdown();
    drop(guard);
    // An in-process control plane stops its executions when its task is
    // dropped; wait for that rather than letting process exit race it.
    if let Some(task) = opened.control {
        task.abort();
        let _ = task.await;
    }
    result
}
