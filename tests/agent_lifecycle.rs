//! The agent's life: the wrapped command's output and exit code, the
//! linger, start-up without keys, key sources, and no orphans when a
//! client disappears.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn wrapped_command_output_passes_through_and_exit_code_propagates() {
    let Some(_) = require_peer("ssh-keygen") else {
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = Agent::with_key(
        &key,
        &[
            "--",
            "sh",
            "-c",
            "echo wrapped-out; echo wrapped-err >&2; exit 7",
        ],
    );
    let status = agent.wait_exit(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(7),
        "exit: {status:?}\n{}",
        agent.dump()
    );
    // The reader threads may lag the exit a little.
    assert!(
        agent.wait_stdout("wrapped-out\n", DEADLINE),
        "{}",
        agent.dump()
    );
    assert!(
        agent.wait_stderr("wrapped-err\n", DEADLINE),
        "{}",
        agent.dump()
    );
    assert!(
        !agent.stdout_text().contains("wrapped-err"),
        "{}",
        agent.dump()
    );
    assert!(
        !agent.stderr_text().contains("wrapped-out"),
        "{}",
        agent.dump()
    );
    // The announcement comes before the command's output.
    let out = agent.stdout_text();
    let ann = out.find("::ssh::").expect("announcement");
    let wrapped = out.find("wrapped-out").expect("output");
    assert!(ann < wrapped, "{}", agent.dump());
}

#[test]
fn wrapped_command_killed_by_a_signal_exits_128_plus_n() {
    let Some(_) = require_peer("ssh-keygen") else {
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = Agent::with_key(&key, &["--", "sh", "-c", "kill -KILL $$"]);
    let status = agent.wait_exit(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(128 + 9),
        "exit: {status:?}\n{}",
        agent.dump()
    );
}

#[test]
fn wrapped_command_gets_stop_signals_forwarded() {
    let Some(_) = require_peer("ssh-keygen") else {
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = Agent::with_key(
        &key,
        &[
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo trap-ready; while :; do sleep 0.1; done",
        ],
    );
    assert!(
        agent.wait_stdout("trap-ready", DEADLINE),
        "{}",
        agent.dump()
    );
    signal(agent.pid(), nix::sys::signal::Signal::SIGTERM);
    let status = agent.wait_exit(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(42),
        "exit: {status:?}\n{}",
        agent.dump()
    );
    assert!(agent.wait_stdout("got-term", DEADLINE), "{}", agent.dump());
}

#[test]
fn linger_keeps_ssh_up_after_the_command_and_then_exits() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let linger = Duration::from_secs(5);
    let mut agent = Agent::with_key(&key, &["--linger", "5s", "--", "sh", "-c", "exit 0"]);
    // The agent says when it will stop once the command has ended.
    assert!(
        agent.wait_stderr("porthole-agent: ", DEADLINE),
        "no linger notice\n{}",
        agent.dump()
    );
    let ended = Instant::now();
    assert!(
        agent.try_exit().is_none(),
        "exited before the linger\n{}",
        agent.dump()
    );
    let out = run_with_timeout(agent.ssh(&p.ssh, &key).arg("echo alive"), T);
    assert_eq!(
        stdout_of(&out),
        "alive\n",
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    assert!(out.status.success(), "{}", show(&out));

    let status = agent.wait_exit(linger + Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the agent did not exit by itself after the linger (exit: {status:?}, {:?} after the \
         command ended)\n{}",
        ended.elapsed(),
        agent.dump()
    );
}

#[test]
fn linger_keeps_the_commands_exit_code() {
    let Some(_) = require_peer("ssh-keygen") else {
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = Agent::with_key(&key, &["--linger", "1s", "--", "sh", "-c", "exit 5"]);
    let status = agent.wait_exit(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(5),
        "exit: {status:?}\n{}",
        agent.dump()
    );
}

#[test]
fn without_any_authorized_key_the_agent_refuses_to_start() {
    let spec = AgentSpec::new().args(["--", "sh", "-c", "echo must-not-run"]);
    let out = run_agent_to_exit(&spec, DEADLINE);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr_of(&out);
    assert!(err.contains("no authorized keys"), "{}", show(&out));
    assert!(err.contains("porthole-agent: "), "{}", show(&out));
    let o = stdout_of(&out);
    assert!(
        !o.contains("::ssh::"),
        "announced without keys: {}",
        show(&out)
    );
    assert!(
        !o.contains("must-not-run"),
        "ran the command: {}",
        show(&out)
    );
}

#[test]
fn a_keys_file_with_only_garbage_counts_as_no_keys() {
    let dir = temp_dir();
    let file = dir.path().join("authorized_keys");
    std::fs::write(&file, "this is not a key\nssh-ed25519 !!!notbase64\n").expect("write");
    let spec = AgentSpec::new().arg("--authorized-keys").arg(&file);
    let out = run_agent_to_exit(&spec, DEADLINE);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr_of(&out).contains("no authorized keys"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_missing_keys_file_is_a_start_error() {
    let dir = temp_dir();
    let spec = AgentSpec::new()
        .arg("--authorized-keys")
        .arg(dir.path().join("does-not-exist"));
    let out = run_agent_to_exit(&spec, DEADLINE);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(!stdout_of(&out).contains("::ssh::"), "{}", show(&out));
}

#[test]
fn keys_file_with_garbage_lines_still_accepts_the_good_key() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let file = dir.path().join("authorized_keys");
    std::fs::write(
        &file,
        format!(
            "# a comment\n\nnot a key at all\nssh-ed25519 !!!notbase64 broken\n{}\n\
             ssh-rsa AAAA truncated\n",
            key.public_line()
        ),
    )
    .expect("write");
    let agent = AgentSpec::new().arg("--authorized-keys").arg(&file).spawn();
    let out = run_with_timeout(agent.ssh(&p.ssh, &key).arg("echo from-file"), T);
    assert_eq!(
        stdout_of(&out),
        "from-file\n",
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    assert!(
        agent.stderr_text().contains("porthole-agent: "),
        "skipped lines should be reported\n{}",
        agent.dump()
    );
}

#[test]
fn keys_from_the_environment_are_accepted() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let other = KeyPair::generate(dir.path(), KeyKind::Ecdsa);
    let agent = AgentSpec::new()
        .env(
            "PORTHOLE_AUTHORIZED_KEYS",
            format!("{}\n{}\n", key.public_line(), other.public_line()),
        )
        .spawn();
    for k in [&key, &other] {
        let out = run_with_timeout(agent.ssh(&p.ssh, k).arg("echo from-env"), T);
        assert_eq!(
            stdout_of(&out),
            "from-env\n",
            "{}\n{}",
            show(&out),
            agent.dump()
        );
    }
}

#[test]
fn listen_and_advertise_from_the_environment() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = None;
    for _ in 0..5 {
        let port = free_port();
        let spec = AgentSpec::new()
            .no_default_listen()
            .authorize(&key)
            .env("PORTHOLE_LISTEN", format!("127.0.0.1:{port}"))
            .env("PORTHOLE_ADVERTISE_ADDRESS", "porthole.example");
        // The port may have been taken between free_port and the bind.
        let probe = std::panic::catch_unwind(|| spec.clone().spawn());
        if let Ok(a) = probe {
            assert_eq!(a.port(), port, "{}", a.dump());
            agent = Some(a);
            break;
        }
    }
    let agent = agent.expect("the agent started on a chosen port");
    assert_eq!(agent.address(), "porthole.example", "{}", agent.dump());
    let out = run_with_timeout(agent.ssh(&p.ssh, &key).arg("echo env-listen"), T);
    assert_eq!(stdout_of(&out), "env-listen\n", "{}", show(&out));
}

/// Processes whose command line is exactly `sleep N`.
fn sleepers(n: u32) -> Vec<u32> {
    let want = format!("sleep {n}");
    pids_matching(&want)
        .into_iter()
        .filter(|&p| cmdline(p).as_deref() == Some(want.as_str()))
        .collect()
}

fn kill_all(pids: &[u32]) {
    for &p in pids {
        signal(p, nix::sys::signal::Signal::SIGKILL);
    }
}

fn no_orphans_after(kill_client: impl FnOnce(&mut ChildGuard), tty: bool) {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    // Unique durations, so that other runs' sleeps are not counted.
    let a = 400_000 + (std::process::id() % 50_000) * 2 + u32::from(tty) * 100_000;
    let b = a + 1;
    let mut cmd = agent.ssh(&p.ssh, &key);
    if tty {
        cmd.arg("-tt");
    }
    cmd.arg(format!("sleep {a} & sleep {b}"));
    let mut client = ChildGuard::spawn(&mut cmd);
    let started = wait_until(deadline_in(DEADLINE), || {
        !sleepers(a).is_empty() && !sleepers(b).is_empty()
    });
    if !started {
        kill_all(&sleepers(a));
        kill_all(&sleepers(b));
        panic!(
            "the remote sleeps did not start\n{}\n{}",
            client.dump(),
            agent.dump()
        );
    }
    kill_client(&mut client);
    let gone = wait_until(deadline_in(DEADLINE), || {
        sleepers(a).is_empty() && sleepers(b).is_empty()
    });
    let left: Vec<u32> = sleepers(a).into_iter().chain(sleepers(b)).collect();
    kill_all(&left);
    assert!(
        gone,
        "processes of a closed connection survived: {left:?}\n{}",
        agent.dump()
    );
}

#[test]
fn killing_the_client_kills_the_sessions_processes() {
    no_orphans_after(
        |c| {
            signal(c.pid(), nix::sys::signal::Signal::SIGKILL);
            assert!(c.wait_exit(DEADLINE).is_some());
        },
        false,
    );
}

#[test]
fn killing_a_pty_client_kills_the_sessions_processes() {
    no_orphans_after(
        |c| {
            signal(c.pid(), nix::sys::signal::Signal::SIGKILL);
            assert!(c.wait_exit(DEADLINE).is_some());
        },
        true,
    );
}

#[test]
fn stopping_the_agent_kills_session_processes() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let mut agent = Agent::with_key(&key, &[]);
    let n = 600_000 + std::process::id() % 50_000;
    let mut cmd = agent.ssh(&p.ssh, &key);
    cmd.arg(format!("sleep {n}"));
    let _client = ChildGuard::spawn(&mut cmd);
    assert!(
        wait_until(deadline_in(DEADLINE), || !sleepers(n).is_empty()),
        "{}",
        agent.dump()
    );
    signal(agent.pid(), nix::sys::signal::Signal::SIGTERM);
    let status = agent.wait_exit(DEADLINE);
    assert!(
        status.is_some(),
        "the agent ignored SIGTERM\n{}",
        agent.dump()
    );
    let gone = wait_until(deadline_in(DEADLINE), || sleepers(n).is_empty());
    let left = sleepers(n);
    kill_all(&left);
    assert!(gone, "session processes outlived the agent: {left:?}");
}
