//! End-to-end tests of the console: the real `porthole` binary runs
//! `--demo` inside a private tmux server and is driven with `send-keys`,
//! its screen read with `capture-pane`.
//!
//! The demo's training run listens on 127.0.0.1:5678 and 127.0.0.1:6006
//! of this machine, so demo scenarios must not overlap: they run in one
//! test function, behind a process-wide lock for any added later.
//!
//! Skipped with a printed reason when tmux or python3 is missing, unless
//! `PORTHOLE_REQUIRE_PEERS=1`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{free_port, port_accepts as accepts, require_peer};

/// Longest single wait.
const WAIT: Duration = Duration::from_secs(30);
/// The passphrase of the encrypted porthole key the console starts with.
const PASSPHRASE: &str = "e2e correct horse";
/// The whole scenario's bound.
const SCENARIO: Duration = Duration::from_secs(180);
/// Demo scenarios bind fixed ports: one at a time.
static DEMO: Mutex<()> = Mutex::new(());

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    tmux: PathBuf,
    socket: String,
    started: Instant,
}

impl Tmux {
    /// Starts a detached session of `width` x `height` running `argv`.
    fn start(tmux: PathBuf, width: u16, height: u16, argv: &[String]) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "porthole-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let t = Tmux {
            tmux,
            socket,
            started: Instant::now(),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let mut args: Vec<&str> = vec!["new-session", "-d", "-x", &w, "-y", &h, "--"];
        args.extend(argv.iter().map(String::as_str));
        let out = t.run(&args);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.tmux);
        // No user configuration: a known key table and defaults.
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let out = common::run_with_timeout(self.command().args(args), Duration::from_secs(10));
        if !out.status.success() {
            eprintln!(
                "tmux {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out
    }

    /// Sends tmux key names (`Enter`, `C-]`, `BSpace`, `j`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        self.run(&args);
        // Let the console read each burst as it comes.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Types text literally.
    fn text(&self, text: &str) {
        self.run(&["send-keys", "-t", "0", "-l", text]);
        std::thread::sleep(Duration::from_millis(150));
    }

    /// The visible screen.
    fn capture(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "0"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A format variable of the pane (`#{alternate_on}`).
    fn display(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "0", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until `pred` holds on the screen; fails with the last screen.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            assert!(
                self.started.elapsed() < SCENARIO,
                "the scenario took longer than {SCENARIO:?}, waiting for {what}; screen:\n{screen}"
            );
            if Instant::now() >= deadline {
                panic!("timed out after {WAIT:?} waiting for {what}; last screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_text(&self, needle: &str) -> String {
        self.wait_for(&format!("`{needle}`"), |s| s.contains(needle))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ =
            common::run_with_timeout(self.command().arg("kill-server"), Duration::from_secs(10));
    }
}

/// `GET /` on 127.0.0.1:`port`; the whole answer.
fn http_get(port: u16) -> std::io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Single-quotes for sh.
fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Whether `stty -a` output shows the flag set (`icanon`, not `-icanon`).
fn flag_on(stty: &str, flag: &str) -> bool {
    stty.split_whitespace()
        .any(|w| w.trim_end_matches(';') == flag)
}

/// The text inside the heavy border of the focused pane, its rows joined
/// (long lines wrap inside a pane, cutting words between rows).
fn pane_text(screen: &str) -> String {
    screen
        .lines()
        .filter_map(|l| {
            let start = l.find('┃')? + '┃'.len_utf8();
            let end = l.rfind('┃')?;
            (end > start).then(|| l[start..end].trim_end().to_string())
        })
        .collect()
}

/// Whether one screen row holds all of `needles`.
fn same_row(screen: &str, needles: &[&str]) -> bool {
    screen
        .lines()
        .any(|l| needles.iter().all(|n| l.contains(n)))
}

#[test]
fn demo_shell_command_tunnel_split_and_quit() {
    let Some(tmux) = require_peer("tmux") else {
        return;
    };
    if require_peer("python3").is_none() {
        return;
    }
    let Some(keygen) = require_peer("ssh-keygen") else {
        return;
    };
    let _one_demo = DEMO.lock().unwrap_or_else(|e| e.into_inner());

    // The demo binds 5678 and 6006 here: another demo (another test run)
    // must be gone first, or the tunnel would reach its server instead.
    let busy = |p: u16| accepts(p);
    let deadline = Instant::now() + WAIT;
    while (busy(5678) || busy(6006)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        !busy(6006) && !busy(5678),
        "127.0.0.1:5678 or 127.0.0.1:6006 is in use on this machine (another demo?); \
         the demo training run needs both"
    );

    let dir = common::temp_dir();
    let config = dir.path().join("config");
    let data = dir.path().join("data");
    let xdg = dir.path().join("xdg");
    for d in [&config, &data, &xdg] {
        std::fs::create_dir_all(d).expect("create temp dirs");
    }
    let stty_file = dir.path().join("stty.txt");
    // A remapped key: quit is ctrl-q (and `q` does nothing).
    std::fs::write(config.join("config.toml"), "[keys]\nquit = \"ctrl-q\"\n")
        .expect("write config.toml");

    // porthole's key, encrypted: the console asks for its passphrase on the
    // plain terminal before it opens, and every session it opens uses it.
    let keygen = std::process::Command::new(&keygen)
        .args(["-q", "-t", "ed25519", "-N", PASSPHRASE, "-C", "e2e", "-f"])
        .arg(config.join("id_ed25519"))
        .status()
        .expect("run ssh-keygen");
    assert!(keygen.success(), "ssh-keygen failed");

    // A plain interactive shell in the pane, with porthole's directories in
    // the temp dir and no Valohai credentials or SSH agent from outside.
    let argv: Vec<String> = [
        "env",
        "-u",
        "VALOHAI_TOKEN",
        "-u",
        "VALOHAI_HOST",
        "-u",
        "VALOHAI_PROJECT",
        "-u",
        "VALOHAI_CONFIG_DIR",
        "-u",
        "SSH_AUTH_SOCK",
        &format!("PORTHOLE_CONFIG_DIR={}", config.display()),
        &format!("PORTHOLE_DATA_DIR={}", data.display()),
        &format!("XDG_CONFIG_HOME={}", xdg.display()),
        &format!("HOME={}", xdg.display()),
        "PS1=e2e$ ",
        "bash",
        "--norc",
        "--noprofile",
        "-i",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = Tmux::start(tmux, 200, 60, &argv);
    t.wait_text("e2e$");

    // porthole runs in the foreground; `stty -a` runs right after it exits,
    // before the shell's line editor touches the terminal.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_porthole"));
    t.text(&format!(
        "{} --demo; stty -a > {}",
        sh_quote(&bin),
        sh_quote(&stty_file)
    ));
    t.keys(&["Enter"]);
    t.wait_text("Passphrase for ");
    t.text(PASSPHRASE);
    t.keys(&["Enter"]);

    // The list: newest first, the training run last, ready once announced.
    let screen = t.wait_for("`demo: training run` ready", |s| {
        same_row(s, &["ready", "demo: training run"])
    });
    assert!(screen.contains("executions · local"), "{screen}");
    // The key bar names the remapped key.
    assert!(
        screen.contains("? help · ctrl-q quit"),
        "the key bar does not say `ctrl-q quit`:\n{screen}"
    );
    t.wait_for("all three demo executions", |s| {
        s.contains("demo: quick run") && s.contains("demo: failing run")
    });
    let rows: Vec<usize> = ["demo: quick run", "demo: failing run", "demo: training run"]
        .iter()
        .map(|n| screen_row(&t.capture(), n))
        .collect();
    assert!(
        rows[0] < rows[1] && rows[1] < rows[2],
        "newest first: {rows:?}"
    );

    // Select the training run (third row) and open its log.
    t.keys(&["j"]);
    t.keys(&["j"]);
    t.keys(&["Enter"]);
    let screen = t.wait_text("#1 demo: training run · log");
    let screen = if screen.contains("tensorboard listening on 127.0.0.1:6006") {
        screen
    } else {
        t.wait_for("the demo's TensorBoard to listen", |s| {
            s.contains("tensorboard listening on 127.0.0.1:6006") || s.contains("cannot listen")
        })
    };
    assert!(
        !screen.contains("cannot listen"),
        "the demo could not bind its ports:\n{screen}"
    );
    t.wait_text("SSH ready at 127.0.0.1:");

    // `s`: a shell, in interaction mode. Type once it is connected.
    t.keys(&["s"]);
    t.wait_text("#1 demo: training run · shell");
    t.wait_for("the shell to connect", |s| {
        same_row(s, &["connected", "demo: training run"])
    });
    t.wait_for("a shell prompt", |s| {
        s.lines().any(|l| {
            l.split('┃')
                .map(|cell| cell.trim_end_matches([' ', '█']))
                .any(|cell| cell.ends_with('#') || cell.ends_with('$'))
        })
    });
    t.text("echo porthole-$((6*7))");
    t.keys(&["Enter"]);
    t.wait_text("porthole-42");

    // Back to the console; `c` + Enter runs the prefilled `ps aux`.
    t.keys(&["C-]"]);
    t.wait_text("left interaction mode");
    t.keys(&["c"]);
    let screen = t.wait_text("run a command");
    assert!(
        screen.lines().any(|l| l.contains("│ps aux ")),
        "the prompt is prefilled with `ps aux`:\n{screen}"
    );
    t.keys(&["Enter"]);
    t.wait_text("#1 demo: training run · command · ps aux");
    t.wait_text("exit 0 · ");
    t.keys(&["z"]);
    // ps aux on a busy machine is longer than the pane: `/` finds the
    // demo's process in the output and brings it into view. Its line wraps,
    // so the pane's rows are read joined back together.
    t.keys(&["/"]);
    t.wait_text("search upwards");
    t.text("train.py");
    t.keys(&["Enter"]);
    let found = t.wait_for("`train.py` in the ps aux output", |s| {
        pane_text(s).contains("train.py")
    });
    assert!(
        !found.contains("not found in the output"),
        "the search failed:\n{found}"
    );

    // `t`: the demo holds 5678 on this machine, so the prompt proposes a
    // free local port for it, written out (`5679:5678`); replace that with
    // LOCAL:6006, then fetch through the tunnel from outside the console.
    let local = free_port();
    t.keys(&["t"]);
    let screen = t.wait_text("new tunnel");
    assert!(
        screen
            .lines()
            .any(|l| l.contains(":5678 ") && !l.contains("│5678 ")),
        "the prompt does not propose a free local port for the busy 5678:\n{screen}"
    );
    t.keys(&["BSpace"; 12]);
    t.text(&format!("{local}:6006"));
    t.keys(&["Enter"]);
    let deadline = Instant::now() + WAIT;
    let mut last;
    let page = loop {
        match http_get(local) {
            Ok(answer) if answer.contains("TensorBoard") => break answer,
            Ok(answer) => last = answer,
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            panic!(
                "no TensorBoard page through 127.0.0.1:{local} within {WAIT:?}: {last}\nscreen:\n{}",
                t.capture()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    t.wait_text(&format!("tunnel 127.0.0.1:{local} -> localhost:6006 is up"));

    // Two executions side by side: focus the list, select the failing run,
    // `|`, Enter.
    for _ in 0..6 {
        if t.capture().starts_with("┏ executions") {
            break;
        }
        t.keys(&["Tab"]);
    }
    let screen = t.capture();
    assert!(
        screen.starts_with("┏ executions"),
        "Tab did not focus the list:\n{screen}"
    );
    t.keys(&["k"]);
    t.keys(&["|"]);
    t.wait_text("the next pane opens side by side");
    t.keys(&["Enter"]);
    let screen = t.wait_text("#2 demo: failing");
    assert!(
        same_row(&screen, &["#1 demo: training run · ", "#2 demo: failing"]),
        "the panes of #1 and #2 are not side by side:\n{screen}"
    );

    // `q` is not the quit key here: nothing happens.
    t.keys(&["q"]);
    std::thread::sleep(Duration::from_millis(300));
    let screen = t.capture();
    assert!(
        !screen.contains("quit?") && screen.contains("executions · local"),
        "`q` acted although quit is ctrl-q:\n{screen}"
    );
    // `ctrl-q` asks first (a shell and a tunnel are open); `y` quits.
    t.keys(&["C-q"]);
    let screen = t.wait_text("quit?");
    assert!(
        screen.contains("1 shell(s) and 1 tunnel(s) are open"),
        "{screen}"
    );
    t.keys(&["y"]);
    let deadline = Instant::now() + WAIT;
    while !stty_file.exists() || std::fs::metadata(&stty_file).map_or(0, |m| m.len()) == 0 {
        assert!(
            Instant::now() < deadline,
            "porthole did not exit within {WAIT:?} after `ctrl-q` `y`; screen:\n{}",
            t.capture()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));

    // The terminal is back: cooked mode, main screen, the shell's prompt.
    let stty = std::fs::read_to_string(&stty_file).expect("stty output");
    for flag in ["icanon", "echo", "icrnl", "opost", "isig"] {
        assert!(
            flag_on(&stty, flag),
            "`{flag}` is off after quitting (terminal left raw):\n{stty}"
        );
    }
    let screen = t.wait_text("e2e$");
    assert_eq!(
        t.display("#{alternate_on}"),
        "0",
        "the alternate screen is still on:\n{screen}"
    );
    assert_eq!(t.display("#{pane_current_command}"), "bash");
    assert!(
        !screen.contains("executions · local") && !screen.contains('┏'),
        "the console's screen is left over:\n{screen}"
    );
    assert!(screen.contains("--demo; stty -a"), "{screen}");
    assert!(
        screen.contains("Passphrase for ") && !screen.contains(PASSPHRASE),
        "the passphrase prompt is left on the main screen, without the passphrase:\n{screen}"
    );
    // Typing shows up (echo) and runs on Enter (canonical mode).
    t.text("echo cooked-$((40+2))");
    t.keys(&["Enter"]);
    t.wait_text("cooked-42");

    // The tunnel closed with the console.
    let deadline = Instant::now() + WAIT;
    while accepts(local) {
        assert!(
            Instant::now() < deadline,
            "127.0.0.1:{local} still accepts after quitting"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The row of the first line holding `needle` (fails when absent).
fn screen_row(screen: &str, needle: &str) -> usize {
    screen
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not on screen:\n{screen}"))
}

/// SIGTERM and SIGHUP to the console restore the terminal too, and stop
/// the demo executions of its in-process control plane.
#[test]
fn termination_signals_restore_the_terminal() {
    let Some(tmux) = require_peer("tmux") else {
        return;
    };
    if require_peer("python3").is_none() {
        return;
    }
    let _one_demo = DEMO.lock().unwrap_or_else(|e| e.into_inner());
    for (name, signal) in [
        ("TERM", nix::sys::signal::Signal::SIGTERM),
        ("HUP", nix::sys::signal::Signal::SIGHUP),
    ] {
        let deadline = Instant::now() + WAIT;
        while (accepts(5678) || accepts(6006)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        let dir = common::temp_dir();
        let stty_file = dir.path().join("stty.txt");
        let argv: Vec<String> = [
            "env".to_string(),
            "-u".into(),
            "VALOHAI_TOKEN".into(),
            "-u".into(),
            "SSH_AUTH_SOCK".into(),
            format!(
                "PORTHOLE_CONFIG_DIR={}",
                dir.path().join("config").display()
            ),
            format!("PORTHOLE_DATA_DIR={}", dir.path().join("data").display()),
            format!("XDG_CONFIG_HOME={}", dir.path().join("xdg").display()),
            "PS1=e2e$ ".into(),
            "bash".into(),
            "--norc".into(),
            "--noprofile".into(),
            "-i".into(),
        ]
        .to_vec();
        let t = Tmux::start(tmux.clone(), 120, 40, &argv);
        t.wait_text("e2e$");
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_porthole"));
        t.text(&format!(
            "{} --demo; stty -a > {}",
            sh_quote(&bin),
            sh_quote(&stty_file)
        ));
        t.keys(&["Enter"]);
        t.wait_text("demo: train");

        // The console is the pane shell's child.
        let shell: u32 = t.display("#{pane_pid}").trim().parse().expect("pane pid");
        let console = common::descendants(shell)
            .into_iter()
            .find(|p| common::cmdline(*p).is_some_and(|c| c.contains("--demo")))
            .expect("the console's process");
        common::signal(console, signal);

        let deadline = Instant::now() + WAIT;
        while std::fs::metadata(&stty_file).map_or(0, |m| m.len()) == 0 {
            assert!(
                Instant::now() < deadline,
                "porthole did not exit on SIG{name}; screen:\n{}",
                t.capture()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let stty = std::fs::read_to_string(&stty_file).expect("stty output");
        for flag in ["icanon", "echo", "isig"] {
            assert!(
                flag_on(&stty, flag),
                "`{flag}` is off after SIG{name}:\n{stty}"
            );
        }
        assert_eq!(
            t.display("#{alternate_on}"),
            "0",
            "alternate screen left on after SIG{name}"
        );
        // The demo's training run went with the console.
        let deadline = Instant::now() + WAIT;
        while accepts(6006) {
            assert!(
                Instant::now() < deadline,
                "the demo outlived the console (SIG{name})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
