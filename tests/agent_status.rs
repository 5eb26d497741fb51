//! The porthole subsystems: `porthole-status@porthole` (what runs, what
//! listens) and `porthole-linger@porthole` (extend or release the linger).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use common::*;

const T: Duration = Duration::from_secs(30);
const STATUS: &str = "porthole-status@porthole";
const LINGER: &str = "porthole-linger@porthole";

fn subsystem(ssh: &Path, agent: &Agent, key: &KeyPair, name: &str, input: Option<&str>) -> Output {
    let mut cmd = agent.ssh(ssh, key);
    cmd.arg("-s").arg(name);
    run_with_input(&mut cmd, input.map(str::as_bytes), T)
}

fn status(ssh: &Path, agent: &Agent, key: &KeyPair) -> Value {
    let out = subsystem(ssh, agent, key, STATUS, None);
    assert!(out.status.success(), "{}\n{}", show(&out), agent.dump());
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {}\n{}", show(&out), agent.dump()))
}

fn listening_has(doc: &Value, port: u16) -> bool {
    doc["listening"].as_array().is_some_and(|l| {
        l.iter()
            .any(|e| e["port"].as_u64() == Some(u64::from(port)))
    })
}

#[test]
fn status_reports_the_agent_the_command_and_listening_ports() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    // A debugger-like port that the status must find.
    let app = TcpListener::bind("127.0.0.1:0").expect("bind");
    let app_port = app.local_addr().expect("addr").port();
    let agent = Agent::with_key(&key, &["--linger", "10m", "--", "sleep", "30"]);
    let doc = status(&p.ssh, &agent, &key);

    assert_eq!(doc["agent"], "porthole-agent", "{doc:#}");
    let version = doc["version"].as_str().unwrap_or_default();
    assert!(!version.is_empty(), "{doc:#}");
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "{doc:#}");
    assert_eq!(doc["pid"].as_u64(), Some(u64::from(agent.pid())), "{doc:#}");
    assert!(doc["uptime_secs"].as_u64().is_some(), "{doc:#}");
    assert_eq!(
        doc["ssh_port"].as_u64(),
        Some(u64::from(agent.port())),
        "{doc:#}"
    );

    let cmd = &doc["command"];
    assert_eq!(cmd["argv"], serde_json::json!(["sleep", "30"]), "{doc:#}");
    assert_eq!(cmd["running"], Value::Bool(true), "{doc:#}");
    assert!(cmd["exit_code"].is_null(), "{doc:#}");
    let cmd_pid = cmd["pid"].as_u64().expect("command pid") as u32;
    assert_eq!(
        cmdline(cmd_pid).as_deref(),
        Some("sleep 30"),
        "the reported pid is not the wrapped command: {doc:#}"
    );

    assert_eq!(doc["linger"]["secs"].as_u64(), Some(600), "{doc:#}");
    assert!(
        doc["linger"]["deadline"].is_null(),
        "no deadline while the command runs: {doc:#}"
    );

    let listening = doc["listening"].as_array().expect("listening array");
    assert!(
        listening.iter().any(|l| {
            l["address"] == "127.0.0.1" && l["port"].as_u64() == Some(u64::from(app_port))
        }),
        "our listener 127.0.0.1:{app_port} is missing: {doc:#}"
    );
    assert!(
        !listening_has(&doc, agent.port()),
        "the agent's own SSH port must be excluded: {doc:#}"
    );
    drop(app);
}

/// Each listening port names the process holding it (`comm`), here a
/// listener the wrapped command opened; the test's own listener names the
/// test binary.
#[test]
fn status_names_the_process_of_each_listener() {
    let Some(p) = require_ssh_peers() else { return };
    let Some(python) = find_executable("python3") else {
        eprintln!("skipped: python3 is not installed");
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let port = free_port();
    let script = format!(
        "import socket, time\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n\
         time.sleep(30)\n"
    );
    let python = python.to_string_lossy().into_owned();
    let agent = Agent::with_key(&key, &["--", &python, "-c", &script]);
    let mine = TcpListener::bind("127.0.0.1:0").expect("bind");
    let my_port = mine.local_addr().expect("addr").port();

    let mut doc = Value::Null;
    let listening = wait_until(deadline_in(DEADLINE), || {
        doc = status(&p.ssh, &agent, &key);
        listening_has(&doc, port)
    });
    assert!(listening, "the command's listener never showed: {doc:#}");
    let process_of = |port: u16| -> Value {
        doc["listening"]
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|e| e["port"].as_u64() == Some(u64::from(port)))
            })
            .map(|e| e["process"].clone())
            .unwrap_or_default()
    };
    let cmd_pid = doc["command"]["pid"].as_u64().expect("command pid");
    let comm = std::fs::read_to_string(format!("/proc/{cmd_pid}/comm")).expect("comm");
    assert_eq!(process_of(port), Value::from(comm.trim_end()), "{doc:#}");
    let own = std::fs::read_to_string("/proc/self/comm").expect("comm");
    assert_eq!(process_of(my_port), Value::from(own.trim_end()), "{doc:#}");
    drop(mine);
}

#[test]
fn status_without_a_wrapped_command_has_null_command() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let doc = status(&p.ssh, &agent, &key);
    assert!(doc["command"].is_null(), "{doc:#}");
    assert_eq!(doc["agent"], "porthole-agent", "{doc:#}");
}

#[test]
fn status_sees_a_listener_come_and_go() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let app = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = app.local_addr().expect("addr").port();
    let doc = status(&p.ssh, &agent, &key);
    assert!(listening_has(&doc, port), "{doc:#}");
    drop(app);
    let doc = status(&p.ssh, &agent, &key);
    assert!(
        !listening_has(&doc, port),
        "a closed listener is still listed: {doc:#}"
    );
}

#[test]
fn status_after_the_command_ended_shows_exit_code_and_deadline() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &["--linger", "1h", "--", "sh", "-c", "exit 3"]);
    let mut doc = Value::Null;
    let ended = wait_until(deadline_in(DEADLINE), || {
        doc = status(&p.ssh, &agent, &key);
        doc["command"]["running"] == Value::Bool(false)
    });
    assert!(
        ended,
        "the command never showed as ended: {doc:#}\n{}",
        agent.dump()
    );
    assert_eq!(doc["command"]["exit_code"].as_i64(), Some(3), "{doc:#}");
    let deadline = doc["linger"]["deadline"].as_str().unwrap_or_default();
    // RFC 3339: 2026-11-28T10:19:00Z and the like.
    assert!(
        deadline.len() >= 20 && deadline.as_bytes()[4] == b'-' && deadline.contains('T'),
        "not an RFC 3339 deadline: {doc:#}"
    );
}

#[test]
fn linger_release_makes_the_agent_exit_promptly() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = Agent::with_key(&key, &["--linger", "1h", "--", "true"]);
    // Wait until the command has ended and the linger has begun.
    let ended = wait_until(deadline_in(DEADLINE), || {
        status(&p.ssh, &agent, &key)["command"]["running"] == Value::Bool(false)
    });
    assert!(ended, "{}", agent.dump());
    assert!(agent.try_exit().is_none(), "{}", agent.dump());

    let out = subsystem(&p.ssh, &agent, &key, LINGER, Some("release\n"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    let _: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {}", show(&out)));
    let status = agent.wait_exit(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the agent did not exit after `release` (exit {status:?})\n{}",
        agent.dump()
    );
}

#[test]
fn linger_extend_moves_the_deadline() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = Agent::with_key(&key, &["--linger", "3s", "--", "true"]);
    let out = subsystem(&p.ssh, &agent, &key, LINGER, Some("extend 1h\n"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {}", show(&out)));
    assert!(answer.is_object(), "{answer:#}");
    // The answer says how long is left now, not the old 3 s.
    let left = answer["linger"]["remaining_secs"].as_u64();
    assert!(
        left.is_some_and(|s| (3590..=3600).contains(&s)),
        "{answer:#}"
    );
    // Well past the original 3 s linger the agent still serves.
    let doc = status(&p.ssh, &agent, &key);
    assert!(doc["linger"].is_object(), "{doc:#}");
    let still_up = !wait_until(deadline_in(Duration::from_secs(8)), || {
        agent.try_exit().is_some()
    });
    assert!(
        still_up,
        "`extend 1h` did not keep the agent up\n{}",
        agent.dump()
    );
    let out = run_with_timeout(agent.ssh(&p.ssh, &key).arg("echo extended"), T);
    assert_eq!(stdout_of(&out), "extended\n", "{}", show(&out));
}

#[test]
fn linger_bad_request_answers_on_stderr_with_status_2() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = Agent::with_key(&key, &["--linger", "1h", "--", "sleep", "30"]);
    for bad in ["bogus\n", "extend forever\n", "extend\n"] {
        let out = subsystem(&p.ssh, &agent, &key, LINGER, Some(bad));
        assert_eq!(
            out.status.code(),
            Some(2),
            "request {bad:?}: {}\n{}",
            show(&out),
            agent.dump()
        );
        assert!(
            !stderr_of(&out).trim().is_empty(),
            "request {bad:?} got no explanation: {}",
            show(&out)
        );
    }
    assert!(agent.try_exit().is_none(), "{}", agent.dump());
}

#[test]
fn pty_sessions_are_told_a_minute_before_the_linger_ends() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    // The command ends after 2 s; the notice is due 1 s after that.
    let agent = Agent::with_key(&key, &["--linger", "61s", "--", "sleep", "2"]);
    let mut cmd = agent.ssh(&p.ssh, &key);
    cmd.arg("-tt").arg("sleep 6");
    let out = run_with_timeout(&mut cmd, T);
    let text = stdout_of(&out);
    assert!(
        text.contains("*** porthole-agent: this SSH server stops in 1m"),
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    assert!(text.contains("porthole linger EXEC extend 1h"), "{text}");
    // Commands without a PTY are not written into.
    let out = run_with_timeout(agent.ssh(&p.ssh, &key).arg("echo plain"), T);
    assert_eq!(stdout_of(&out), "plain\n", "{}", show(&out));
}
