//! Headless rendering of the console with ratatui's `TestBackend`: the
//! app is fed only through its public API (messages from tasks, key
//! presses) and drawn to a 120x36 buffer, which is compared as text with
//! insta snapshots. Behaviour that is not about pixels (interaction mode,
//! quit confirmation, splits, zoom, close, filter, prompts) is checked with
//! plain assertions on the state and the effects the app asks for.
//!
//! Snapshots are deterministic: executions have no creation time (ages
//! render as `-`), ports are fixed, and the only clock on screen (a command
//! pane's elapsed time) is masked before comparing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::Terminal;

use porthole::source::scanner::Endpoint;
use porthole::source::{Execution, LogEvent, Stream};
use porthole::ssh::tunnel::{Tunnel, TunnelSpec, TunnelStats};
use porthole::tui::action::{Effect, Msg};
use porthole::tui::app::{App, Focus, Popup, PromptKind};
use porthole::tui::keys::Keymap;
use porthole::tui::layout::Split;
use porthole::tui::panes::shell::ShellState;
use porthole::tui::panes::PaneKind;
use porthole::tui::ui;

const WIDTH: u16 = 120;
const HEIGHT: u16 = 36;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn app() -> App {
    let mut app = App::new(
        Keymap::default(),
        1000,
        &["local".to_string()],
        "/home/u/.config/porthole/id_ed25519",
    );
    app.resize(WIDTH, HEIGHT);
    // Every local port is free, whatever runs on this machine.
    app.port_free = |_| true;
    app
}

fn exec(id: &str, counter: u64, status: &str, title: &str) -> Execution {
    Execution {
        id: id.into(),
        counter,
        status: status.into(),
        status_detail: None,
        title: Some(title.into()),
        step: None,
        ctime: None,
        mtime: None,
        end_time: None,
        duration: None,
        url: None,
        urls: None,
        project: None,
        command: None,
    }
}

/// Five executions, newest first, one of each status family.
fn mixed() -> Vec<Execution> {
    vec![
        exec("e5", 5, "started", "train resnet50"),
        exec("e4", 4, "queued", "sweep lr=3e-4"),
        exec("e3", 3, "complete", "preprocess shards"),
        exec("e2", 2, "error", "evaluate checkpoint"),
        exec("e1", 1, "stopped", "baseline"),
    ]
}

fn endpoint() -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: 2222,
        user: None,
        host_key: Some("SHA256:aGVsbG8gcG9ydGhvbGUgdGVzdHMgYXJlIGZpeGVk".into()),
    }
}

/// The app with the mixed list, `e5` announcing its SSH address.
fn app_with_list() -> App {
    let mut app = app();
    app.update(Msg::Executions(0, Ok(mixed())));
    app.update(Msg::Endpoint {
        exec_id: "e5".into(),
        endpoint: endpoint(),
    });
    app
}

fn press(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn ch(app: &mut App, c: char) {
    press(app, KeyCode::Char(c));
}

fn ctrl(app: &mut App, c: char) {
    app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        ch(app, c);
    }
}

fn ev(stream: Stream, message: &str) -> LogEvent {
    LogEvent {
        time: "2024-05-01T12:00:00".into(),
        stream,
        message: message.into(),
    }
}

fn render(app: &App) -> Terminal<TestBackend> {
    let mut terminal =
        Terminal::new(TestBackend::new(app.size.width, app.size.height)).expect("test terminal");
    terminal
        .draw(|f| ui::draw(f, app))
        .expect("draw never fails on a TestBackend");
    terminal
}

/// The screen as text, one row per line, trailing blanks trimmed.
fn screen(app: &App) -> String {
    let terminal = render(app);
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut row = String::new();
        for x in 0..buffer.area.width {
            row.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// The foreground colour of the first cell where `needle` starts on screen.
fn fg_of(app: &App, needle: &str) -> Option<Color> {
    let terminal = render(app);
    let buffer = terminal.backend().buffer();
    for y in 0..buffer.area.height {
        let cells: Vec<&str> = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        let row: String = cells.concat();
        if let Some(byte) = row.find(needle) {
            let x = row[..byte].chars().count() as u16;
            return Some(buffer[(x, y)].fg);
        }
    }
    None
}

/// The first screen row holding `needle`.
fn row_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle))
}

/// Opens the log of the selected execution (from the list) and returns the
/// pane id.
fn open_log(app: &mut App) -> u64 {
    to_list(app);
    press(app, KeyCode::Enter);
    match app.focus {
        Focus::Pane(id) => id,
        Focus::List => panic!("Enter on the list did not open a pane"),
    }
}

/// Moves focus back to the list with Tab, as a user would.
fn to_list(app: &mut App) {
    for _ in 0..=app.panes.len() {
        if app.focus == Focus::List {
            return;
        }
        press(app, KeyCode::Tab);
    }
    assert_eq!(app.focus, Focus::List, "Tab cycles through the list");
}

fn focused(app: &App) -> u64 {
    match app.focus {
        Focus::Pane(id) => id,
        Focus::List => panic!("the list is focused, a pane was expected"),
    }
}

/// Opens a shell on the focused execution; returns its pane id, checking
/// the effect asked of the runtime.
fn open_shell(app: &mut App) -> u64 {
    app.take_effects();
    ch(app, 's');
    let pane = focused(app);
    let effects = app.take_effects();
    let open: Vec<&Effect> = effects
        .iter()
        .filter(|e| matches!(e, Effect::OpenShell { .. }))
        .collect();
    assert_eq!(open.len(), 1, "one OpenShell effect: {effects:?}");
    let Effect::OpenShell {
        pane: p,
        exec_id,
        rows,
        cols,
    } = open[0]
    else {
        unreachable!()
    };
    assert_eq!(*p, pane);
    assert_eq!(exec_id, "e5");
    // The shell starts at the size of the pane's inside, not a default.
    let rect = app
        .pane_rects()
        .into_iter()
        .find(|(id, _)| *id == pane)
        .map(|(_, r)| r)
        .expect("the shell pane is laid out");
    assert_eq!((*rows, *cols), ui::inner_size(rect));
    pane
}

/// Masks the elapsed time of a command pane's footer (`· 0.01s ·`).
fn mask_elapsed(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("exit ") {
            Some(start) => {
                let rest = &line[start..];
                let Some(dot) = rest.find(" · ") else {
                    return line.to_string();
                };
                let after = &rest[dot + " · ".len()..];
                let Some(s_end) = after.find("s ·") else {
                    return line.to_string();
                };
                format!(
                    "{}{} · N.NNs{}",
                    &line[..start],
                    &rest[..dot],
                    &after[s_end + 1..]
                )
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

#[test]
fn list_with_mixed_statuses() {
    let app = app_with_list();
    let text = screen(&app);
    insta::assert_snapshot!("list_mixed_statuses", text);

    // Colours are not in the text snapshot: check the status colours here.
    // (Prefixes: see `list_and_tunnels_are_readable_at_120_columns`.)
    // The selected row (#5) is white on the selection bar: a status colour
    // on it could vanish (blue `complete` on blue).
    assert_eq!(fg_of(&app, "start"), Some(Color::White));
    assert_eq!(fg_of(&app, "queue"), Some(Color::Yellow));
    assert_eq!(fg_of(&app, "compl"), Some(Color::Blue));
    assert_eq!(fg_of(&app, "error"), Some(Color::Red));
    assert_eq!(fg_of(&app, "stopp"), Some(Color::Gray));
    // Off the selection bar, #5 has its colours.
    let mut moved = app_with_list();
    press(&mut moved, KeyCode::Down);
    assert_eq!(fg_of(&moved, "start"), Some(Color::Green));
    assert_eq!(fg_of(&moved, "ready"), Some(Color::Green));
    assert_eq!(fg_of(&moved, "queue"), Some(Color::White));
    // Newest first, ages unknown, the announced one ready, the queued one
    // waiting, the finished ones gone (not "waiting" for ever).
    let lines: Vec<&str> = text.lines().collect();
    let r5 = row_of(&text, "   5  ").expect("row #5");
    let r4 = row_of(&text, "   4  ").expect("row #4");
    let r1 = row_of(&text, "   1  ").expect("row #1");
    assert!(r5 < r1, "newest first");
    assert!(lines[r5].contains("ready"), "{}", lines[r5]);
    assert!(lines[r4].contains("waiting"), "{}", lines[r4]);
    assert!(lines[r1].contains("gone"), "{}", lines[r1]);
}

#[test]
fn log_pane_before_and_after_the_address_appears() {
    let mut app = app();
    app.update(Msg::Executions(0, Ok(mixed())));
    let pane = open_log(&mut app);
    assert!(
        app.take_effects()
            .contains(&Effect::FollowLog("e5".to_string())),
        "Enter asks the runtime to follow the log"
    );
    app.update(Msg::Log {
        exec_id: "e5".into(),
        events: vec![
            ev(Stream::Status, "Execution started"),
            ev(Stream::Stdout, "loading dataset: 50000 images"),
            ev(Stream::Stderr, "warning: cuda not found, using cpu"),
            ev(
                Stream::Stdout,
                "epoch 1/10 loss=2.4312\nepoch 2/10 loss=1.9870",
            ),
        ],
    });
    // A log of another execution does not land in this pane.
    app.update(Msg::Log {
        exec_id: "e4".into(),
        events: vec![ev(Stream::Stdout, "NOT THIS ONE")],
    });
    let before = screen(&app);
    insta::assert_snapshot!("log_before_address", before);
    assert!(!before.contains("NOT THIS ONE"));
    assert!(!before.contains("SSH ready"));
    assert!(
        before.contains("epoch 2/10"),
        "a message with newlines splits"
    );

    // `s` before the announcement is refused in words.
    ch(&mut app, 's');
    assert!(app.take_effects().is_empty());
    let (msg, _) = app.status.clone().expect("a status message");
    assert!(
        msg.contains("has not announced an SSH address yet"),
        "{msg}"
    );

    app.update(Msg::Log {
        exec_id: "e5".into(),
        events: vec![ev(
            Stream::Stdout,
            "porthole-agent: listening on 127.0.0.1:2222",
        )],
    });
    app.update(Msg::Endpoint {
        exec_id: "e5".into(),
        endpoint: endpoint(),
    });
    let after = screen(&app);
    insta::assert_snapshot!("log_after_address", after);
    assert!(after.contains("SSH ready at 127.0.0.1:2222"), "{after}");
    assert_eq!(app.focus, Focus::Pane(pane));
    assert_eq!(
        fg_of(&app, "warning: cuda"),
        Some(Color::LightRed),
        "stderr is told apart"
    );
    assert_eq!(
        fg_of(&app, "Execution started"),
        Some(Color::Cyan),
        "status is told apart"
    );
}

#[test]
fn shell_pane() {
    let mut app = app_with_list();
    let log = open_log(&mut app);
    let shell = open_shell(&mut app);
    assert_ne!(log, shell);
    assert!(app.interacting, "a shell opens in interaction mode");
    let before = screen(&app);
    assert!(before.contains("connecting…"), "{before}");

    app.update(Msg::ShellConnected(shell));
    app.update(Msg::ShellOutput(
        shell,
        Bytes::from_static(b"root@box:~# echo hi\r\nhi\r\n"),
    ));
    app.update(Msg::ShellOutput(shell, Bytes::from_static(b"root@box:~# ")));
    let text = screen(&app);
    insta::assert_snapshot!("shell_pane", text);
    assert!(text.contains("[interacting] #5 train resnet50"), "{text}");
    let list_row = text
        .lines()
        .find(|l| l.contains("│   5 "))
        .expect("the list row");
    assert!(
        list_row.contains("connecte"),
        "a live shell marks the execution connected: {list_row}"
    );

    // Leaving interaction mode: the cursor is hidden, the title says so.
    ctrl(&mut app, ']');
    let left = screen(&app);
    insta::assert_snapshot!("shell_pane_not_interacting", left);
    assert!(!left.contains("[interacting"));
}

#[test]
fn tunnels_table() {
    let mut app = app_with_list();
    app.take_effects();
    ch(&mut app, 't');
    press(&mut app, KeyCode::Enter);
    let effects = app.take_effects();
    let id = effects
        .iter()
        .find_map(|e| match e {
            Effect::OpenTunnel { id, exec_id, spec } => {
                assert_eq!(exec_id, "e5");
                assert_eq!(spec, &"5678".parse::<TunnelSpec>().expect("spec"));
                Some(*id)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no OpenTunnel in {effects:?}"));
    assert_eq!(app.tunnels.len(), 1);

    // A second one that fails, so the table shows both states.
    ch(&mut app, 't');
    for _ in 0..4 {
        press(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "8080:6006");
    press(&mut app, KeyCode::Enter);
    let failed = app.tunnels.last().expect("second tunnel").id;
    assert_ne!(failed, id);

    let spec: TunnelSpec = "5678".parse().expect("spec");
    let stats = TunnelStats::default();
    stats.connections.store(2, Ordering::Relaxed);
    stats.bytes_up.store(512, Ordering::Relaxed);
    stats
        .bytes_down
        .store(3 * 1024 * 1024 / 2, Ordering::Relaxed);
    let tunnel = Tunnel {
        spec,
        local: "127.0.0.1:5678".parse().expect("address"),
        stats: Arc::new(stats),
    };
    app.update(Msg::TunnelUp(id, Arc::new(tunnel)));
    app.update(Msg::TunnelFailed(
        failed,
        "cannot listen on 127.0.0.1:8080: port 8080 is in use".into(),
    ));
    // The failure is said in the status bar at once, port named...
    assert!(
        screen(&app)
            .lines()
            .last()
            .is_some_and(|l| l.contains("port 8080 is in use")),
        "{}",
        screen(&app)
    );
    // ...and stays in place in the tunnels table.
    ch(&mut app, 'T');
    let text = screen(&app);
    insta::assert_snapshot!("tunnels_table", text);
    // One row per tunnel: direction, what it connects, and its state, the
    // failure's reason in the STATUS cell of the same row.
    let lines: Vec<&str> = text.lines().collect();
    let header = row_of(&text, "LOCAL").expect("the table's header");
    for column in ["DIR", "TARGET", "STATUS"] {
        assert!(lines[header].contains(column), "{}", lines[header]);
    }
    let up = row_of(&text, "127.0.0.1:5678").expect("the tunnel that is up");
    assert!(lines[up].contains("L   127.0.0.1:5678"), "{}", lines[up]);
    assert!(lines[up].contains("localhost:5678"), "{}", lines[up]);
    assert!(lines[up].contains(" up "), "{}", lines[up]);
    let failed_row = row_of(&text, "localhost:6006").expect("the tunnel that failed");
    assert_eq!(failed_row, up + 1, "one row per tunnel:\n{text}");
    assert!(
        lines[failed_row].contains("127.0.0.1:8080")
            && lines[failed_row].contains("failed: cannot")
            && lines[failed_row].contains('…'),
        "{}",
        lines[failed_row]
    );
    // Wider, the counters have room too.
    app.resize(200, 50);
    let zoomed = screen(&app);
    let up = row_of(&zoomed, "127.0.0.1:5678").expect("the tunnel that is up");
    assert!(
        zoomed
            .lines()
            .nth(up)
            .is_some_and(|l| l.contains("512 B / 1.5 MiB")),
        "{zoomed}"
    );
    app.resize(WIDTH, HEIGHT);

    // `x` in the tunnels pane stops the selected tunnel, not the pane.
    app.take_effects();
    let pane = focused(&app);
    ch(&mut app, 'x');
    assert_eq!(app.take_effects(), vec![Effect::StopTunnel(id)]);
    assert_eq!(app.tunnels.len(), 1);
    assert!(app.panes.contains_key(&pane));
}

/// A tunnels table with a tunnel up, one failed and one reconnecting after
/// a failed connection, at `width` x `height`.
fn tunnels_at(width: u16, height: u16) -> App {
    let mut app = app_with_list();
    app.resize(width, height);
    for spec in ["5678", "8080:6006", ":8888"] {
        ch(&mut app, 't');
        for _ in 0..4 {
            press(&mut app, KeyCode::Backspace);
        }
        type_text(&mut app, spec);
        press(&mut app, KeyCode::Enter);
    }
    let ids: Vec<u64> = app.tunnels.iter().map(|t| t.id).collect();
    let stats = TunnelStats::default();
    stats.connections.store(2, Ordering::Relaxed);
    stats.bytes_up.store(512, Ordering::Relaxed);
    stats
        .bytes_down
        .store(3 * 1024 * 1024 / 2, Ordering::Relaxed);
    app.update(Msg::TunnelUp(
        ids[0],
        Arc::new(Tunnel {
            spec: "5678".parse().expect("spec"),
            local: "127.0.0.1:5678".parse().expect("address"),
            stats: Arc::new(stats),
        }),
    ));
    app.update(Msg::TunnelFailed(
        ids[1],
        "local port 8080 on 127.0.0.1 is already in use; pick another with LOCAL:REMOTE, \
         or :REMOTE for any free port"
            .into(),
    ));
    app.update(Msg::TunnelUp(
        ids[2],
        Arc::new(Tunnel {
            spec: ":8888".parse().expect("spec"),
            local: "127.0.0.1:40123".parse().expect("address"),
            stats: Arc::default(),
        }),
    ));
    app.update(Msg::Tunnel(
        ids[2],
        porthole::ssh::tunnel::TunnelEvent::ConnectionFailed {
            tunnel: 0,
            reason: "connect failed: Connection refused".into(),
        },
    ));
    app.status = None;
    ch(&mut app, 'T');
    // The failed one selected: its reason in full below the rows.
    ch(&mut app, 'j');
    app
}

#[test]
fn tunnels_table_at_80x24_and_200x50() {
    for (width, height, name) in [
        (80, 24, "tunnels_table_80x24"),
        (200, 50, "tunnels_table_200x50"),
    ] {
        let app = tunnels_at(width, height);
        let text = screen(&app);
        insta::assert_snapshot!(name, text);
        for line in text.lines() {
            assert!(line.chars().count() <= usize::from(width), "{line}");
        }
        // Each tunnel on one row, its state in it.
        let failed = row_of(&text, "127.0.0.1:8080").expect("the failed tunnel");
        assert!(
            text.lines()
                .nth(failed)
                .is_some_and(|l| l.contains("failed: local port")),
            "{text}"
        );
        assert!(
            text.contains("pick another with") && text.contains("for any free port"),
            "the selected tunnel's reason is not said in full:\n{text}"
        );
        let refused = row_of(&text, "127.0.0.1:40123").expect("the third tunnel");
        assert!(
            text.lines()
                .nth(refused)
                .is_some_and(|l| l.contains("up · last")),
            "{text}"
        );
    }
}

#[test]
fn big_t_toggles_the_tunnels_table_and_esc_leaves_it() {
    let mut app = tunnels_at(WIDTH, HEIGHT);
    let pane = focused(&app);
    assert!(matches!(app.panes[&pane].kind, PaneKind::Tunnels(_)));
    // A second T closes it, focus back on the list.
    ch(&mut app, 'T');
    assert!(app.panes.is_empty());
    assert_eq!(app.focus, Focus::List);
    // Esc leaves it the same way.
    ch(&mut app, 'T');
    assert!(!app.panes.is_empty());
    press(&mut app, KeyCode::Esc);
    assert!(app.panes.is_empty());
    assert_eq!(app.focus, Focus::List);
    // Open but not focused, T focuses it rather than closing it.
    let log = open_log(&mut app);
    ch(&mut app, 'T');
    let table = focused(&app);
    press(&mut app, KeyCode::Tab);
    assert_ne!(app.focus, Focus::Pane(table));
    ch(&mut app, 'T');
    assert_eq!(app.focus, Focus::Pane(table));
    assert!(app.panes.contains_key(&log));
    // The key bar names the keys of the table.
    let text = screen(&app);
    let bar = text.lines().last().unwrap_or_default();
    assert!(bar.contains("X clear failed"), "{bar}");
}

#[test]
fn x_in_the_tunnels_table_clears_failed_tunnels() {
    let mut app = tunnels_at(WIDTH, HEIGHT);
    assert_eq!(app.tunnels.len(), 3);
    app.take_effects();
    app.on_key(KeyEvent::new(KeyCode::Char('X'), KeyModifiers::SHIFT));
    assert_eq!(app.tunnels.len(), 2);
    assert!(app.tunnels.iter().all(|t| !t.failed()));
    // Nothing to stop: the failed one holds nothing.
    assert!(app.take_effects().is_empty());
    let text = screen(&app);
    assert!(!text.contains("127.0.0.1:8080"), "{text}");
    assert!(text.contains("cleared 1 failed tunnel"), "{text}");
}

#[test]
fn the_tunnel_prompt_proposes_a_free_local_port_when_the_default_is_busy() {
    let mut app = app_with_list();
    app.port_free = |p| p != 5678;
    app.take_effects();
    ch(&mut app, 't');
    match &app.popup {
        Some(Popup::Prompt(p)) => assert_eq!(p.text(), "5679:5678"),
        _ => panic!("t opens the tunnel prompt"),
    }
    press(&mut app, KeyCode::Enter);
    let effects = app.take_effects();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::OpenTunnel { spec, .. }
            if spec.local_port == 5679 && spec.remote_port == 5678)),
        "{effects:?}"
    );

    // A typed (or F-key) spec whose local port is busy comes back with a
    // free one written out, and nothing starts.
    app.port_free = |p| !(6006..=6007).contains(&p);
    ch(&mut app, 't');
    for _ in 0..9 {
        press(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "6006");
    press(&mut app, KeyCode::Enter);
    assert!(!app
        .take_effects()
        .iter()
        .any(|e| matches!(e, Effect::OpenTunnel { .. })));
    match &app.popup {
        Some(Popup::Prompt(p)) => assert_eq!(p.text(), "6008:6006"),
        _ => panic!("the prompt comes back with a free port"),
    }
    let text = screen(&app);
    assert!(
        text.contains("local port 6006 is in use on this machine; Enter opens 6008:6006"),
        "{text}"
    );
    press(&mut app, KeyCode::Enter);
    assert!(app
        .take_effects()
        .iter()
        .any(|e| matches!(e, Effect::OpenTunnel { spec, .. } if spec.local_port == 6008)));

    // Taken between the prompt and the bind: the error names a free one.
    app.port_free = |p| p != 6008;
    let id = app.tunnels.last().expect("the tunnel").id;
    app.update(Msg::TunnelFailed(
        id,
        "local port 6008 on 127.0.0.1 is already in use".into(),
    ));
    let said = app
        .status
        .as_ref()
        .map(|(m, _)| m.clone())
        .unwrap_or_default();
    assert!(
        said.contains("(6009 is free: t, then `6009:6006`)"),
        "{said}"
    );
}

#[test]
fn offered_ports_name_their_process_and_fit_80_columns() {
    let mut app = app_with_list();
    app.resize(80, 24);
    ch(&mut app, 't');
    let named = |port: u16, name: &str| porthole::tui::action::AgentPort {
        port,
        process: Some(name.into()),
    };
    app.update(Msg::AgentPorts {
        exec_id: "e5".into(),
        ports: vec![named(5678, "python3"), named(6006, "tensorboard")],
    });
    let text = screen(&app);
    assert!(
        text.contains("F1 5678 python3  F2 6006 tensorboard"),
        "{text}"
    );
    app.update(Msg::AgentPorts {
        exec_id: "e5".into(),
        ports: (0..12).map(|i| named(8000 + i, "jupyter-lab")).collect(),
    });
    let text = screen(&app);
    let row = row_of(&text, "listening:").expect("the offered ports");
    let line = text.lines().nth(row).unwrap_or_default();
    assert!(line.contains("F1 8000"), "{line}");
    assert!(line.contains("more · Tab cycles"), "{line}");
    // Inside the prompt's border.
    assert!(line.trim_end().ends_with('│'), "{line}");
}

#[test]
fn help_overlay() {
    let mut app = app_with_list();
    ch(&mut app, '?');
    assert!(matches!(app.popup, Some(Popup::Help)));
    let text = screen(&app);
    insta::assert_snapshot!("help_overlay", text);
    assert!(text.contains("porthole keys"), "{text}");
    assert!(text.contains("ctrl-]"), "{text}");
    // Any key closes it, without acting.
    ch(&mut app, 'q');
    assert!(app.popup.is_none());
    assert!(!app.quit, "the key that closes help does nothing else");
}

#[test]
fn error_state() {
    let mut app = app_with_list();
    let _log = open_log(&mut app);
    let shell = open_shell(&mut app);
    app.update(Msg::ShellFailed(
        shell,
        "127.0.0.1:2222 refused the key /home/u/.config/porthole/id_ed25519 (publickey)".into(),
    ));
    assert!(!app.interacting, "a failed shell leaves interaction mode");
    app.update(Msg::Executions(
        0,
        Err("cannot reach http://127.0.0.1:8740: connection refused".into()),
    ));
    app.update(Msg::LogError {
        exec_id: "e5".into(),
        error: "HTTP 502 Bad Gateway".into(),
    });
    let text = screen(&app);
    insta::assert_snapshot!("error_state", text);
    assert!(text.contains("cannot list local executions"), "{text}");
    assert!(text.contains("http://127.0.0.1:8740"), "{text}");
    assert!(text.contains("cannot open a shell"), "{text}");
    assert!(text.contains("cannot read the log"), "{text}");
    assert_eq!(
        app.status.as_ref().map(|(_, l)| *l),
        Some(porthole::tui::app::Level::Error)
    );

    // The list comes back on the next good poll.
    app.update(Msg::Executions(0, Ok(mixed())));
    assert!(app.source_errors.is_empty());
    assert!(screen(&app).contains("train resnet50"));
}

#[test]
fn command_pane_after_it_ends() {
    let mut app = app_with_list();
    ch(&mut app, 'c');
    press(&mut app, KeyCode::Enter);
    let pane = focused(&app);
    app.update(Msg::CommandOutput(
        pane,
        Stream::Stdout,
        Bytes::from_static(
            b"USER  PID %CPU COMMAND\nroot    1  0.0 porthole-agent\nroot   42 98.0 python3 train.py\n",
        ),
    ));
    app.update(Msg::CommandOutput(
        pane,
        Stream::Stderr,
        Bytes::from_static(b"ps: warning\n"),
    ));
    app.update(Msg::CommandDone(pane, 0));
    let text = mask_elapsed(&screen(&app));
    insta::assert_snapshot!("command_pane_done", text);
    assert!(text.contains("exit 0 · N.NNs · r re-runs"), "{text}");
    assert!(
        text.contains("#5 train resnet50 · command · ps aux"),
        "{text}"
    );
    assert_eq!(app.command_lines(pane, &Stream::Stdout), 3);
    assert_eq!(app.command_lines(pane, &Stream::Stderr), 1);

    // `r` re-runs the same command in the same pane.
    app.take_effects();
    ch(&mut app, 'r');
    assert_eq!(
        app.take_effects(),
        vec![Effect::RunCommand {
            pane,
            exec_id: "e5".into(),
            command: "ps aux".into()
        }]
    );
    assert_eq!(app.command_lines(pane, &Stream::Stdout), 0);
}

#[test]
fn command_output_longer_than_the_pane_pages_without_gaps_and_searches() {
    let mut app = app_with_list();
    ch(&mut app, 'c');
    press(&mut app, KeyCode::Enter);
    let pane = focused(&app);
    // 300 processes; every fifth has a command line that wraps, as on a
    // busy machine. One of them is the run's own.
    let mut out = String::from("USER PID COMMAND\n");
    for pid in 1..=300 {
        let cmd = if pid == 77 {
            format!("python3 -u /tmp/a/long/path/{}/train.py", "x".repeat(150))
        } else if pid % 5 == 0 {
            format!("worker --flag {}", "y".repeat(200))
        } else {
            format!("[kworker/{pid}]")
        };
        out.push_str(&format!("root {pid:5} {cmd}\n"));
    }
    app.update(Msg::CommandOutput(pane, Stream::Stdout, Bytes::from(out)));
    app.update(Msg::CommandDone(pane, 0));
    let text = screen(&app);
    assert!(text.contains("root   300"), "the end shows first:\n{text}");

    // PageUp to the top shows every pid once on the way, none skipped.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let text = screen(&app);
        for pid in 1..=300 {
            if text.contains(&format!("root {pid:5} ")) {
                seen.insert(pid);
            }
        }
        if text.contains("USER PID COMMAND") {
            break;
        }
        press(&mut app, KeyCode::PageUp);
    }
    assert_eq!(
        seen.len(),
        300,
        "missing: {:?}",
        (1..=300).filter(|p| !seen.contains(p)).collect::<Vec<_>>()
    );
    assert!(screen(&app).contains("rows below; End or F follows"));

    // End follows again; `/` finds the run's process and shows it.
    press(&mut app, KeyCode::End);
    assert!(!screen(&app).contains("rows below"));
    ch(&mut app, '/');
    type_text(&mut app, "train.py");
    press(&mut app, KeyCode::Enter);
    let text = screen(&app);
    assert!(text.contains("root    77 python3"), "{text}");
    // An empty search repeats the last one: the next match up, wrapping.
    ch(&mut app, '/');
    press(&mut app, KeyCode::Enter);
    assert!(screen(&app).contains("root    77 python3"));
    assert!(!screen(&app).contains("not found"));
    ch(&mut app, '/');
    type_text(&mut app, "no-such-process");
    press(&mut app, KeyCode::Enter);
    assert!(screen(&app).contains("not found in the output"));
}

// ---------------------------------------------------------------------------
// Behaviour
// ---------------------------------------------------------------------------

#[test]
fn ctrl_bracket_leaves_interaction_mode_and_other_keys_go_to_the_shell() {
    let mut app = app_with_list();
    let _log = open_log(&mut app);
    let shell = open_shell(&mut app);
    app.update(Msg::ShellConnected(shell));
    assert!(app.interacting);

    // In interaction mode, console keys go to the remote.
    ch(&mut app, 'q');
    ctrl(&mut app, 'c');
    assert!(!app.quit);
    assert!(app.popup.is_none());
    assert_eq!(
        app.take_effects(),
        vec![
            Effect::ShellInput(shell, b"q".to_vec()),
            Effect::ShellInput(shell, vec![3]),
        ]
    );

    ctrl(&mut app, ']');
    assert!(!app.interacting);
    assert!(
        app.take_effects().is_empty(),
        "Ctrl-] is not sent to the remote"
    );
    assert_eq!(app.focus, Focus::Pane(shell));

    // Enter (or i) goes back in.
    press(&mut app, KeyCode::Enter);
    assert!(app.interacting);
    ctrl(&mut app, ']');
    ch(&mut app, 'i');
    assert!(app.interacting);
    // Terminals that report Ctrl-] as Ctrl-5 leave too.
    ctrl(&mut app, '5');
    assert!(!app.interacting);
}

#[test]
fn quit_asks_first_when_a_shell_is_live() {
    // Nothing open: q quits at once.
    let mut idle = app_with_list();
    ch(&mut idle, 'q');
    assert!(idle.quit);

    let mut app = app_with_list();
    let _log = open_log(&mut app);
    let shell = open_shell(&mut app);
    app.update(Msg::ShellConnected(shell));
    ctrl(&mut app, ']');
    ch(&mut app, 'q');
    assert!(!app.quit, "a live shell makes q ask first");
    assert!(matches!(app.popup, Some(Popup::ConfirmQuit)));
    let text = screen(&app);
    assert!(
        text.contains("1 shell(s) and 0 tunnel(s) are open"),
        "{text}"
    );

    // Any other key stays.
    ch(&mut app, 'n');
    assert!(app.popup.is_none());
    assert!(!app.quit);

    ch(&mut app, 'q');
    assert!(matches!(app.popup, Some(Popup::ConfirmQuit)));
    ch(&mut app, 'y');
    assert!(app.quit);
}

#[test]
fn split_keys_choose_where_the_next_pane_goes() {
    let mut app = app_with_list();
    assert_eq!(app.next_split, Split::Horizontal);
    let first = open_log(&mut app);

    // `-`: the next pane goes below.
    ch(&mut app, '-');
    assert_eq!(app.next_split, Split::Vertical);
    to_list(&mut app);
    ch(&mut app, 'j');
    let second = open_log(&mut app);
    let rects = app.pane_rects();
    let r1 = rects.iter().find(|(id, _)| *id == first).expect("first").1;
    let r2 = rects
        .iter()
        .find(|(id, _)| *id == second)
        .expect("second")
        .1;
    assert_eq!(r1.x, r2.x, "stacked: same column {r1:?} {r2:?}");
    assert!(r2.y >= r1.y + r1.height, "stacked: below {r1:?} {r2:?}");

    // `|`: the next pane goes beside the last one.
    ch(&mut app, '|');
    assert_eq!(app.next_split, Split::Horizontal);
    to_list(&mut app);
    ch(&mut app, 'j');
    let third = open_log(&mut app);
    let rects = app.pane_rects();
    let r2 = rects
        .iter()
        .find(|(id, _)| *id == second)
        .expect("second")
        .1;
    let r3 = rects.iter().find(|(id, _)| *id == third).expect("third").1;
    assert_eq!(r2.y, r3.y, "side by side: same row {r2:?} {r3:?}");
    assert!(r3.x >= r2.x + r2.width, "side by side: right {r2:?} {r3:?}");

    // Titles name the execution and kind of every pane.
    let text = screen(&app);
    assert!(text.contains("#5 train resnet50 · log"), "{text}");
    assert!(text.contains("#4 sweep lr=3e-4 · log"), "{text}");
    assert!(text.contains("#3 preprocess shards · log"), "{text}");
    let title_row = |needle: &str| row_of(&text, needle).expect(needle);
    assert_eq!(
        title_row("#4 sweep lr=3e-4 · log"),
        title_row("#3 preprocess shards · log"),
        "side by side: titles on one row"
    );
    assert!(title_row("#5 train resnet50 · log") < title_row("#4 sweep lr=3e-4 · log"));
}

#[test]
fn z_zooms_and_x_closes() {
    let mut app = app_with_list();
    let log = open_log(&mut app);
    let shell = open_shell(&mut app);
    ctrl(&mut app, ']');
    assert_eq!(app.pane_rects().len(), 2);

    app.take_effects();
    ch(&mut app, 'z');
    assert_eq!(app.zoomed, Some(shell));
    let full = ui::areas(Rect::new(0, 0, WIDTH, HEIGHT)).panes;
    assert_eq!(app.pane_rects(), vec![(shell, full)]);
    // The zoomed shell's remote side is told its new size.
    let (rows, cols) = ui::inner_size(full);
    assert!(
        app.take_effects()
            .contains(&Effect::ShellResize(shell, rows, cols)),
        "zoom resizes the shell"
    );
    assert!(!screen(&app).contains("· log "), "the log pane is hidden");

    ch(&mut app, 'z');
    assert_eq!(app.zoomed, None);
    assert_eq!(app.pane_rects().len(), 2);

    app.take_effects();
    ch(&mut app, 'x');
    assert!(!app.panes.contains_key(&shell));
    assert_eq!(app.take_effects(), vec![Effect::ClosePane(shell)]);
    assert_eq!(app.focus, Focus::Pane(log));

    ch(&mut app, 'x');
    assert!(app.panes.is_empty());
    assert_eq!(app.take_effects(), vec![Effect::UnfollowLog("e5".into())]);
    assert_eq!(app.focus, Focus::List);
    assert!(screen(&app).contains("Enter  open the selected execution's log"));
}

#[test]
fn slash_filters_the_list() {
    let mut app = app_with_list();
    assert_eq!(app.visible().len(), 5);
    ch(&mut app, '/');
    assert!(matches!(
        &app.popup,
        Some(Popup::Prompt(p)) if p.kind == PromptKind::Filter
    ));
    type_text(&mut app, "resnet");
    // The list narrows as the user types.
    let labels: Vec<String> = app.visible().iter().map(|r| r.label()).collect();
    assert_eq!(labels, vec!["#5 train resnet50".to_string()]);
    press(&mut app, KeyCode::Enter);
    assert!(app.popup.is_none());
    assert_eq!(app.filter, "resnet");
    assert_eq!(app.visible().len(), 1);
    assert!(screen(&app).contains("/resnet"));

    // The filter also matches statuses.
    ch(&mut app, '/');
    press(&mut app, KeyCode::Home);
    for _ in 0.."resnet".len() {
        press(&mut app, KeyCode::Delete);
    }
    type_text(&mut app, "error");
    press(&mut app, KeyCode::Enter);
    let labels: Vec<String> = app.visible().iter().map(|r| r.label()).collect();
    assert_eq!(labels, vec!["#2 evaluate checkpoint".to_string()]);

    // Nothing matches: said in the list.
    ch(&mut app, '/');
    type_text(&mut app, "zzz");
    press(&mut app, KeyCode::Enter);
    assert!(app.visible().is_empty());
    assert!(screen(&app).contains("nothing matches the filter"));
}

#[test]
fn c_prompt_is_prefilled_with_ps_aux() {
    let mut app = app_with_list();
    app.take_effects();
    ch(&mut app, 'c');
    match &app.popup {
        Some(Popup::Prompt(p)) => {
            assert_eq!(p.text(), "ps aux");
            assert_eq!(p.kind, PromptKind::Command("e5".into()));
        }
        _ => panic!("c opens the command prompt"),
    }
    assert!(screen(&app).contains("run a command"));
    press(&mut app, KeyCode::Enter);
    let pane = focused(&app);
    assert_eq!(
        app.take_effects(),
        vec![Effect::RunCommand {
            pane,
            exec_id: "e5".into(),
            command: "ps aux".into()
        }]
    );
    assert!(matches!(
        app.panes.get(&pane).map(|p| &p.kind),
        Some(PaneKind::Command(_))
    ));

    // History: ↑ brings back what ran before.
    ch(&mut app, 'c');
    for _ in 0.."ps aux".len() {
        press(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "nvidia-smi");
    press(&mut app, KeyCode::Enter);
    ch(&mut app, 'c');
    press(&mut app, KeyCode::Up);
    match &app.popup {
        Some(Popup::Prompt(p)) => assert_eq!(p.text(), "nvidia-smi"),
        _ => panic!("prompt"),
    }
    press(&mut app, KeyCode::Up);
    match &app.popup {
        Some(Popup::Prompt(p)) => assert_eq!(p.text(), "ps aux"),
        _ => panic!("prompt"),
    }
    press(&mut app, KeyCode::Esc);
    assert!(app.popup.is_none());

    // An execution without an address: refused in words, no prompt.
    to_list(&mut app);
    ch(&mut app, 'j');
    ch(&mut app, 'c');
    assert!(app.popup.is_none());
    assert!(app
        .status
        .as_ref()
        .is_some_and(|(m, _)| m.contains("#4 sweep lr=3e-4 has not announced")));
}

#[test]
fn t_prompt_is_prefilled_and_offers_listening_ports() {
    let mut app = app_with_list();
    app.take_effects();
    ch(&mut app, 't');
    match &app.popup {
        Some(Popup::Prompt(p)) => assert_eq!(p.text(), "5678"),
        _ => panic!("t opens the tunnel prompt"),
    }
    assert_eq!(app.take_effects(), vec![Effect::FetchPorts("e5".into())]);

    // Ports of another execution are ignored.
    app.update(Msg::AgentPorts {
        exec_id: "e4".into(),
        ports: vec![1.into()],
    });
    app.update(Msg::AgentPorts {
        exec_id: "e5".into(),
        ports: vec![5678.into(), 6006.into()],
    });
    let text = screen(&app);
    assert!(text.contains("F1 5678  F2 6006"), "{text}");

    press(&mut app, KeyCode::F(2));
    assert!(app.popup.is_none());
    let effects = app.take_effects();
    let [Effect::OpenTunnel { exec_id, spec, .. }] = effects.as_slice() else {
        panic!("one OpenTunnel expected: {effects:?}");
    };
    assert_eq!(exec_id, "e5");
    assert_eq!(spec.remote_port, 6006);
    assert_eq!(spec.local_port, 6006);
    assert_eq!(spec.remote_host, "localhost");

    // A bad spec is reported, nothing starts.
    ch(&mut app, 't');
    type_text(&mut app, "x");
    press(&mut app, KeyCode::Enter);
    assert!(!app
        .take_effects()
        .iter()
        .any(|e| matches!(e, Effect::OpenTunnel { .. })));
    assert!(app
        .status
        .as_ref()
        .is_some_and(|(m, _)| m.contains("5678x")));
}

/// At 120 columns the list's STATUS and SSH columns show whole words, and a
/// failed tunnel names the port in use in the tunnels table.
#[test]
fn list_and_tunnels_are_readable_at_120_columns() {
    let mut app = app_with_list();
    let _log = open_log(&mut app);
    let shell = open_shell(&mut app);
    app.update(Msg::ShellConnected(shell));
    let text = screen(&app);
    for word in ["started", "queued", "complete", "stopped", "connected"] {
        assert!(text.contains(word), "`{word}` is cut:\n{text}");
    }
    ctrl(&mut app, ']');
    ch(&mut app, 't');
    press(&mut app, KeyCode::Enter);
    let id = app.tunnels[0].id;
    app.update(Msg::TunnelFailed(
        id,
        "cannot listen on 127.0.0.1:5678: port 5678 is in use".into(),
    ));
    app.status = None;
    ch(&mut app, 'T');
    ch(&mut app, 'z');
    let text = screen(&app);
    // A tunnel's row states it, the reason cut to fit; the selected one's
    // reason in full below the rows.
    let lines: Vec<&str> = text.lines().collect();
    let row = lines
        .iter()
        .position(|l| l.contains("localhost:5678"))
        .expect("tunnel row");
    assert!(
        lines[row].contains("failed: cannot list"),
        "the failure is not said in place:\n{text}"
    );
    assert!(
        text.contains("port 5678 is in use"),
        "the port in use is not named:\n{text}"
    );
}

#[test]
fn an_execution_that_ends_says_so_and_keeps_its_panes() {
    let mut app = app_with_list();
    let log = open_log(&mut app);
    let shell = open_shell(&mut app);
    app.update(Msg::ShellConnected(shell));
    app.update(Msg::ShellOutput(
        shell,
        Bytes::from_static(b"still here\r\n"),
    ));
    let mut list = mixed();
    list[0].status = "complete".into();
    app.update(Msg::Executions(0, Ok(list)));
    match app.panes.get(&shell).map(|p| &p.kind) {
        Some(PaneKind::Shell(s)) => {
            assert_eq!(
                s.state,
                ShellState::Ended("execution #5 ended: complete".into())
            );
            assert!(s.text().contains("still here"));
        }
        _ => panic!("the shell pane stays"),
    }
    match app.panes.get(&log).map(|p| &p.kind) {
        Some(PaneKind::Log(l)) => {
            assert_eq!(l.notice.as_deref(), Some("execution #5 ended: complete"))
        }
        _ => panic!("the log pane stays"),
    }
    let text = screen(&app);
    assert!(text.contains("execution #5 ended: complete"), "{text}");
    assert!(text.contains("still here"), "{text}");
}

#[test]
fn a_host_key_question_is_asked_in_a_popup_and_answered() {
    let mut app = app_with_list();
    let (reply, answer) = std::sync::mpsc::channel();
    app.update(Msg::Ask(porthole::tui::action::Question {
        text:
            "The host key of [10.0.0.5]:2222 is not known yet.\n  SHA256:abc\nTrust it and connect?"
                .into(),
        reply,
    }));
    let text = screen(&app);
    assert!(text.contains("host key"), "{text}");
    assert!(text.contains("SHA256:abc"), "{text}");
    ch(&mut app, 'y');
    assert_eq!(answer.recv().ok(), Some(true));
    assert!(app.popup.is_none());

    let (reply, answer) = std::sync::mpsc::channel();
    app.update(Msg::Ask(porthole::tui::action::Question {
        text: "changed?".into(),
        reply,
    }));
    press(&mut app, KeyCode::Esc);
    assert_eq!(answer.recv().ok(), Some(false), "anything but y refuses");
}

#[test]
fn two_sources_share_the_list_and_one_failing_leaves_the_other() {
    let mut app = App::new(
        Keymap::default(),
        1000,
        &["valohai".to_string(), "local".to_string()],
        "/home/u/.config/porthole/id_ed25519",
    );
    app.resize(WIDTH, HEIGHT);
    let mut remote = mixed();
    remote.truncate(2);
    let mut local = mixed();
    local.truncate(1);
    for e in &mut local {
        e.id = format!("local-{}", e.id);
    }
    app.update(Msg::Executions(1, Ok(local)));
    app.update(Msg::Executions(0, Ok(remote)));
    let text = screen(&app);
    assert!(text.contains("executions · valohai + local"), "{text}");
    let valohai_row = row_of(&text, "[valohai]").expect("a valohai row");
    let local_row = row_of(&text, "[local]").expect("a local row");
    assert!(valohai_row < local_row, "sources in order:\n{text}");
    assert_eq!(app.visible().len(), 3);

    app.update(Msg::Executions(0, Err("valohai.example: HTTP 503".into())));
    let text = screen(&app);
    assert!(text.contains("cannot list valohai executions"), "{text}");
    assert!(
        text.contains("[local]"),
        "the other source stays listed:\n{text}"
    );
}

// ---------------------------------------------------------------------------
// What the console says of SSH: from the status and the agent's linger
// ---------------------------------------------------------------------------

/// A finished, a lingering and a running execution, each with an agent
/// that announced itself; the clock fixed.
fn app_with_ends() -> (App, std::time::SystemTime) {
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let mut app = app();
    app.now = now;
    let mut failed = exec("e7", 7, "error", "train (failed)");
    failed.status_detail = Some("exit code 2".into());
    app.update(Msg::Executions(
        0,
        Ok(vec![
            exec("e9", 9, "started", "train resnet50"),
            exec("e8", 8, "started", "debug the loss"),
            failed,
        ]),
    ));
    for id in ["e9", "e8", "e7"] {
        app.update(Msg::Endpoint {
            exec_id: id.into(),
            endpoint: endpoint(),
        });
    }
    app.update(Msg::Linger {
        exec_id: "e8".into(),
        linger: porthole::source::scanner::Linger::Until(
            now + std::time::Duration::from_secs(9 * 60),
        ),
    });
    (app, now)
}

fn ssh_column(app: &App, counter: &str) -> String {
    let text = screen(app);
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("┃{counter:>4}  ")))
        .unwrap_or_else(|| panic!("no row #{counter} in\n{text}"));
    line.to_string()
}

#[test]
fn the_ssh_column_says_gone_lingering_and_ready() {
    let (mut app, now) = app_with_ends();
    insta::assert_snapshot!("list_finished_lingering_running", screen(&app));
    assert!(ssh_column(&app, "9").contains("ready"));
    assert!(ssh_column(&app, "8").contains("lingering 9m"));
    assert!(ssh_column(&app, "7").contains("gone"));
    assert_eq!(fg_of(&app, "lingering"), Some(Color::Yellow));

    // The linger counts down with the clock, and then it is gone.
    app.dirty = false;
    app.tick(now + std::time::Duration::from_secs(5 * 60));
    assert!(app.dirty, "a changed linger redraws");
    assert!(ssh_column(&app, "8").contains("lingering 4m"));
    app.dirty = false;
    app.tick(now + std::time::Duration::from_secs(5 * 60 + 20));
    assert!(app.dirty, "3m40s left is 3m");
    assert!(ssh_column(&app, "8").contains("lingering 3m"));
    app.dirty = false;
    app.tick(now + std::time::Duration::from_secs(5 * 60 + 21));
    assert!(!app.dirty, "nothing shown changed: no redraw");
    app.tick(now + std::time::Duration::from_secs(9 * 60 - 45));
    assert!(ssh_column(&app, "8").contains("lingering 45s"));
    app.tick(now + std::time::Duration::from_secs(9 * 60));
    assert!(ssh_column(&app, "8").contains("gone"));

    // The agent saying its linger is over is gone at once.
    let (mut app, _) = app_with_ends();
    app.update(Msg::Linger {
        exec_id: "e8".into(),
        linger: porthole::source::scanner::Linger::Over,
    });
    assert!(ssh_column(&app, "8").contains("gone"));
}

#[test]
fn a_finished_execution_opens_no_session_and_says_why() {
    let (mut app, _) = app_with_ends();
    // Select #7 (the third row).
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    app.take_effects();
    for key in ['s', 'c', 't', 'L'] {
        ch(&mut app, key);
        assert_eq!(app.panes.len(), 0, "{key} opened a pane");
        assert!(app.popup.is_none(), "{key} opened a prompt");
        let (text, _) = app.status.clone().expect("a message");
        assert_eq!(text, "#7 is error; its SSH server has gone", "{key}");
    }
    assert!(
        !app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::OpenShell { .. } | Effect::FetchPorts(_))),
        "nothing is asked of the runtime"
    );

    // Its log says how it ended, not "SSH ready".
    press(&mut app, KeyCode::Enter);
    let text = screen(&app);
    assert!(
        text.contains("execution #7 ended: error (exit code 2)"),
        "{text}"
    );
    assert!(!text.contains("SSH ready"), "{text}");
}

#[test]
fn an_unknown_final_status_is_gone_too() {
    let (mut app, _) = app_with_ends();
    let mut archived = exec("e9", 9, "archived", "train resnet50");
    archived.end_time = Some("2026-12-02T01:00:00Z".into());
    app.update(Msg::Executions(
        0,
        Ok(vec![
            archived,
            exec("e8", 8, "started", "debug the loss"),
            exec("e7", 7, "error", "train (failed)"),
        ]),
    ));
    assert!(ssh_column(&app, "9").contains("gone"), "{}", screen(&app));
    ch(&mut app, 's');
    let (text, _) = app.status.clone().expect("a message");
    assert_eq!(text, "#9 is archived; its SSH server has gone");
}

#[test]
fn tunnels_stop_when_their_execution_ends() {
    let (mut app, _) = app_with_ends();
    app.take_effects();
    ch(&mut app, 't');
    press(&mut app, KeyCode::Enter);
    let id = app.tunnels.first().expect("a tunnel").id;
    app.take_effects();
    let mut stopped = exec("e9", 9, "stopped", "train resnet50");
    stopped.status_detail = Some("stopped by request".into());
    app.update(Msg::Executions(
        0,
        Ok(vec![
            stopped,
            exec("e8", 8, "started", "debug the loss"),
            exec("e7", 7, "error", "train (failed)"),
        ]),
    ));
    assert!(
        app.take_effects().contains(&Effect::StopTunnel(id)),
        "the runtime is told to stop it"
    );
    let state = app.tunnels[0].state.to_string();
    assert!(
        state.contains("#9 is stopped; its SSH server has gone"),
        "{state}"
    );
}

#[test]
fn the_linger_key_extends_and_releases() {
    let (mut app, _) = app_with_ends();
    press(&mut app, KeyCode::Down);
    app.take_effects();
    ch(&mut app, 'L');
    assert!(
        matches!(&app.popup, Some(Popup::Prompt(p)) if matches!(&p.kind, PromptKind::Linger { exec_id, .. } if exec_id == "e8")),
        "a linger prompt for #8"
    );
    press(&mut app, KeyCode::Enter);
    let effects = app.take_effects();
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Linger { exec_id, request: porthole::agent::state::LingerRequest::Extend(d), .. }
                if exec_id == "e8" && d.as_secs() == 3600
        )),
        "{effects:?}"
    );
    ch(&mut app, 'L');
    for _ in 0..12 {
        press(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "release");
    press(&mut app, KeyCode::Enter);
    assert!(app.take_effects().iter().any(|e| matches!(
        e,
        Effect::Linger {
            request: porthole::agent::state::LingerRequest::Release,
            ..
        }
    )));
    ch(&mut app, 'L');
    for _ in 0..12 {
        press(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "extend soon");
    press(&mut app, KeyCode::Enter);
    let (text, _) = app.status.clone().expect("a message");
    assert!(text.contains("`soon` is not a duration"), "{text}");
    app.update(Msg::Said(Ok(
        "#8 debug the loss: SSH stays up until 10:00".into()
    )));
    assert_eq!(
        app.status.clone().map(|(t, _)| t).as_deref(),
        Some("#8 debug the loss: SSH stays up until 10:00")
    );
}

// ---------------------------------------------------------------------------
// Keys and hints: named as bound, fitted to the width
// ---------------------------------------------------------------------------

/// The bottom line of the screen: the status line with the key bar.
fn key_bar(app: &App) -> String {
    screen(app).lines().last().unwrap_or_default().to_string()
}

/// The app with the mixed list and `[keys]` overrides from the config.
fn app_with_keys(keys_toml: &str, width: u16, height: u16) -> App {
    use porthole::tui::keys::{KeyAction, KeyList};
    let overrides: std::collections::HashMap<KeyAction, KeyList> =
        toml::from_str(keys_toml).expect("[keys] table");
    let keymap = Keymap::with_overrides(&overrides).expect("valid keys");
    let mut app = App::new(
        keymap,
        1000,
        &["local".to_string()],
        "/home/u/.config/porthole/id_ed25519",
    );
    app.resize(width, height);
    app.update(Msg::Executions(0, Ok(mixed())));
    app.update(Msg::Endpoint {
        exec_id: "e5".into(),
        endpoint: endpoint(),
    });
    app
}

#[test]
fn a_remapped_quit_key_is_shown_and_quits_and_q_does_nothing() {
    let mut app = app_with_keys("quit = \"ctrl-q\"", 80, 24);
    let bar = key_bar(&app);
    assert!(bar.contains("ctrl-q quit"), "{bar}");
    assert!(bar.contains("? help"), "{bar}");
    assert!(
        !bar.contains("q quit ") && !bar.ends_with(" q quit"),
        "{bar}"
    );
    insta::assert_snapshot!("keybar_80x24_remapped", screen(&app));

    // The help names the bound key.
    ch(&mut app, '?');
    let help = screen(&app);
    let quit_row = help
        .lines()
        .find(|l| l.contains("quit (asks"))
        .expect("a quit row in the help");
    assert!(quit_row.contains("ctrl-q"), "{help}");
    ch(&mut app, 'x');
    assert!(app.popup.is_none());

    // `q` is no longer bound: nothing happens.
    ch(&mut app, 'q');
    assert!(!app.quit, "q quit although quit is ctrl-q");
    assert!(app.popup.is_none());

    // With a live shell, ctrl-q asks first; y quits.
    open_log(&mut app);
    let shell = open_shell(&mut app);
    app.update(Msg::ShellConnected(shell));
    ctrl(&mut app, ']');
    ctrl(&mut app, 'q');
    assert!(matches!(app.popup, Some(Popup::ConfirmQuit)));
    ch(&mut app, 'y');
    assert!(app.quit);

    // Nothing open: ctrl-q quits at once.
    let mut idle = app_with_keys("quit = \"ctrl-q\"", 80, 24);
    ctrl(&mut idle, 'q');
    assert!(idle.quit);
}

#[test]
fn unbound_actions_are_left_out_of_hints() {
    let app = app_with_keys("copy = []\nshell = \"S\"", 120, 36);
    let bar = key_bar(&app);
    assert!(!bar.contains("copy ssh"), "{bar}");
    assert!(bar.contains("S shell"), "{bar}");
    let text = screen(&app);
    assert!(text.contains("  S      shell"), "{text}");
}

#[test]
fn the_key_bar_at_80_columns_keeps_help_and_quit() {
    let mut app = app_with_list();
    app.resize(80, 24);
    let bar = key_bar(&app);
    assert!(bar.ends_with("? help · q quit"), "{bar}");
    assert!(bar.contains("Enter log"), "{bar}");
    // The least important go first.
    assert!(!bar.contains("copy ssh"), "{bar}");
    assert!(hints_fit(&bar, 80), "{bar}");

    // A pane's bar, and a long message before it: help and quit stay.
    open_log(&mut app);
    let bar = key_bar(&app);
    assert!(bar.ends_with("? help · q quit"), "{bar}");
    assert!(bar.contains("x close"), "{bar}");
    ch(&mut app, 'y');
    assert!(app.status.is_some());
    let bar = key_bar(&app);
    assert!(bar.starts_with("copied: ssh"), "{bar}");
    assert!(bar.ends_with("? help · q quit"), "{bar}");

    // Interacting: said once.
    let shell = open_shell(&mut app);
    app.update(Msg::ShellConnected(shell));
    let bar = key_bar(&app);
    assert_eq!(bar.matches("interact").count(), 1, "{bar}");
    assert!(bar.contains("ctrl-] back to the console"), "{bar}");
}

fn hints_fit(bar: &str, width: usize) -> bool {
    bar.chars().count() <= width
}

#[test]
fn esc_clears_the_filter_and_the_filter_prompt_shows_its_keys() {
    let mut app = app_with_list();
    ch(&mut app, '/');
    type_text(&mut app, "res");
    let bar = key_bar(&app);
    assert!(bar.contains("Enter apply"), "{bar}");
    assert!(bar.contains("Esc cancel"), "{bar}");
    assert!(!bar.contains("q quit"), "q types into the filter: {bar}");
    insta::assert_snapshot!("filter_typing", screen(&app));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.filter, "res");
    assert_eq!(app.visible().len(), 1);
    let bar = key_bar(&app);
    assert!(bar.contains("Esc clear filter"), "{bar}");

    // Esc in the prompt cancels: the filter is as it was.
    ch(&mut app, '/');
    type_text(&mut app, "zzz");
    assert!(app.visible().is_empty());
    press(&mut app, KeyCode::Esc);
    assert!(app.popup.is_none());
    assert_eq!(app.filter, "res");

    // Esc in the list clears it.
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.filter, "");
    assert_eq!(app.visible().len(), 5);
    assert!(!key_bar(&app).contains("clear filter"));
}

#[test]
fn ctrl_c_asks_to_quit_outside_a_shell_and_goes_to_the_shell_inside() {
    // Nothing open: Ctrl-C quits at once, as q does.
    let mut idle = app_with_list();
    ctrl(&mut idle, 'c');
    assert!(idle.quit);

    let mut app = app_with_list();
    open_log(&mut app);
    let shell = open_shell(&mut app);
    app.update(Msg::ShellConnected(shell));
    app.take_effects();
    // Interacting: Ctrl-C is the shell's.
    ctrl(&mut app, 'c');
    assert!(app.popup.is_none());
    assert!(!app.quit);
    let effects = app.take_effects();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ShellInput(p, b) if *p == shell && b.as_slice() == [3])),
        "{effects:?}"
    );
    // Outside interaction mode: the same confirmation as q.
    ctrl(&mut app, ']');
    ctrl(&mut app, 'c');
    assert!(matches!(app.popup, Some(Popup::ConfirmQuit)));
    ch(&mut app, 'n');
    assert!(!app.quit);
    ctrl(&mut app, 'c');
    ch(&mut app, 'y');
    assert!(app.quit);

    // In a prompt, Ctrl-C cancels it.
    let mut app = app_with_list();
    ch(&mut app, '/');
    ctrl(&mut app, 'c');
    assert!(app.popup.is_none());
    assert!(!app.quit);
}

#[test]
fn a_long_list_keeps_the_selection_in_view_and_says_how_many_more() {
    let mut app = app();
    app.resize(80, 24);
    let many: Vec<Execution> = (1..=30u64)
        .rev()
        .map(|n| {
            exec(
                &format!("e{n}"),
                n,
                "complete",
                &format!("run number {n} with a title long enough to be cut at eighty columns"),
            )
        })
        .collect();
    app.update(Msg::Executions(0, Ok(many)));
    let text = screen(&app);
    assert!(text.contains("↓ 26 more"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("run number 30 with a title") && l.contains("…┃")),
        "a cut title ends with an ellipsis:\n{text}"
    );
    for _ in 0..10 {
        press(&mut app, KeyCode::Down);
    }
    let text = screen(&app);
    insta::assert_snapshot!("list_scrolled_80x24", text);
    let selected = app.visible()[app.selected].exec.counter;
    assert_eq!(selected, 20);
    assert!(
        text.lines().any(|l| l.contains("  20  complete")),
        "the selected row is in view:\n{text}"
    );
    assert!(text.contains("↑ 7 above · ↓ 19 more"), "{text}");
    // The blue `complete` is not drawn on the blue selection bar.
    assert_eq!(fg_of(&app, "  20  "), Some(Color::White));
}
