//! The headless commands over the local control plane, end to end with
//! the real binaries: `porthole run`, then `exec`, `list`, `logs`, `stop`
//! find the execution through the source and pin its announced host key.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn porthole(dir: &Path) -> Command {
    common::porthole_in(dir)
}

#[test]
fn run_then_exec_finds_the_execution_through_its_log() {
    let Some(_) = common::require_peer("python3") else {
        return;
    };
    let dir = common::temp_dir();
    let _serve = common::ServeGuard(dir.path().join("data"));

    let out = common::run_with_timeout(
        porthole(dir.path()).args([
            "run",
            "--title",
            "e2e",
            "--",
            "python3",
            "-c",
            "import time; print('training', flush=True); time.sleep(60)",
        ]),
        LIMIT,
    );
    assert!(out.status.success(), "{}", common::show(&out));
    assert!(
        common::stdout_of(&out).contains("execution #1 started"),
        "{}",
        common::show(&out)
    );
    assert!(
        dir.path().join("config/id_ed25519").exists(),
        "run creates the default key"
    );

    // The address shows up in the log a moment after the start.
    let mut listed = String::new();
    let found = common::wait_until(common::deadline_in(Duration::from_secs(20)), || {
        let out = common::run_with_timeout(porthole(dir.path()).args(["list", "--json"]), LIMIT);
        listed = common::stdout_of(&out);
        listed.contains("\"host_key\": \"SHA256:")
    });
    assert!(found, "list shows the announced address and key: {listed}");

    let out = common::run_with_timeout(
        porthole(dir.path()).args(["exec", "1", "--", "echo", "ok"]),
        LIMIT,
    );
    assert_eq!(common::stdout_of(&out), "ok\n", "{}", common::show(&out));
    assert_eq!(out.status.code(), Some(0));
    // `#1` and `latest` name it too.
    for name in ["#1", "latest"] {
        let out = common::run_with_timeout(
            porthole(dir.path()).args(["exec", name, "--", "echo", "ok"]),
            LIMIT,
        );
        assert_eq!(
            common::stdout_of(&out),
            "ok\n",
            "{name}: {}",
            common::show(&out)
        );
    }
    let out = common::run_with_timeout(
        porthole(dir.path()).args(["exec", "1", "--", "exit 3"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(3), "{}", common::show(&out));
    assert!(
        !dir.path().join("data/known_hosts").exists(),
        "the announced key was pinned, nothing was trusted on first use"
    );

    let out = common::run_with_timeout(porthole(dir.path()).args(["logs", "1"]), LIMIT);
    assert!(
        common::stdout_of(&out).contains("training"),
        "{}",
        common::show(&out)
    );
    assert!(
        common::stderr_of(&out).contains("::ssh::"),
        "status events go to stderr: {}",
        common::show(&out)
    );

    let out = common::run_with_timeout(porthole(dir.path()).args(["stop", "1"]), LIMIT);
    assert!(out.status.success(), "{}", common::show(&out));
    let stopped = common::wait_until(common::deadline_in(Duration::from_secs(20)), || {
        let out = common::run_with_timeout(porthole(dir.path()).args(["list", "--json"]), LIMIT);
        common::stdout_of(&out).contains("\"status\": \"stopped\"")
    });
    assert!(stopped, "the execution is stopped");

    let out = common::run_with_timeout(
        porthole(dir.path()).args(["exec", "42", "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(
        common::stderr_of(&out).contains("no execution #42 (newest is #1; see porthole list)"),
        "{}",
        common::show(&out)
    );
    // Stopping it again says it had already finished.
    let out = common::run_with_timeout(porthole(dir.path()).args(["stop", "#1"]), LIMIT);
    assert!(out.status.success(), "{}", common::show(&out));
    assert_eq!(
        common::stdout_of(&out),
        "execution #1 had already finished: stopped\n",
        "{}",
        common::show(&out)
    );
}

#[test]
fn linger_extend_and_release_reach_the_agent_of_an_execution() {
    let Some(_) = common::require_peer("sh") else {
        return;
    };
    let dir = common::temp_dir();
    let _serve = common::ServeGuard(dir.path().join("data"));
    let out = common::run_with_timeout(
        porthole(dir.path()).args(["run", "--linger", "10m", "--", "sh", "-c", "exit 3"]),
        LIMIT,
    );
    assert!(out.status.success(), "{}", common::show(&out));
    // Starting the control plane in the background is said once.
    let started = common::stderr_of(&out);
    assert!(
        started.contains("started the local control plane (pid ")
            && started.contains("stop it with `porthole serve --stop`"),
        "{}",
        common::show(&out)
    );
    // The command ends at once; the agent lingers.
    let mut answer = None;
    let found = common::wait_until(common::deadline_in(Duration::from_secs(20)), || {
        let out = common::run_with_timeout(
            porthole(dir.path()).args(["linger", "1", "extend", "1h"]),
            LIMIT,
        );
        let ok = out.status.success() && common::stdout_of(&out).contains("until");
        answer = Some(out);
        ok
    });
    let out = answer.expect("tried");
    assert!(found, "{}", common::show(&out));
    let text = common::stdout_of(&out);
    assert!(
        text.starts_with("execution #1: SSH stays up until ") && text.contains("left)"),
        "{text}"
    );
    assert!(
        text.contains("(1h left)") || text.contains("(59m"),
        "{text}"
    );

    let bad = common::run_with_timeout(
        porthole(dir.path()).args(["linger", "1", "extend", "soon"]),
        LIMIT,
    );
    assert_eq!(bad.status.code(), Some(2), "{}", common::show(&bad));
    assert!(
        common::stderr_of(&bad).contains("`soon` is not a duration"),
        "{}",
        common::show(&bad)
    );

    let out =
        common::run_with_timeout(porthole(dir.path()).args(["linger", "1", "release"]), LIMIT);
    assert!(out.status.success(), "{}", common::show(&out));
    assert!(
        common::stdout_of(&out).contains("linger released"),
        "{}",
        common::show(&out)
    );

    // The background control plane: where it runs, then stopped.
    let out = common::run_with_timeout(porthole(dir.path()).args(["serve", "--status"]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", common::show(&out));
    assert!(
        common::stdout_of(&out).contains("the local control plane runs at http://127.0.0.1:"),
        "{}",
        common::show(&out)
    );
    let out = common::run_with_timeout(porthole(dir.path()).args(["serve", "--stop"]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", common::show(&out));
    assert!(
        common::stdout_of(&out).contains("stopped the local control plane (pid "),
        "{}",
        common::show(&out)
    );
    let out = common::run_with_timeout(porthole(dir.path()).args(["serve", "--status"]), LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", common::show(&out));
    assert!(
        common::stdout_of(&out).contains("no local control plane runs for"),
        "{}",
        common::show(&out)
    );
}

#[test]
fn usage_errors_exit_2_and_say_what_is_valid() {
    let dir = common::temp_dir();
    let out = common::run_with_timeout(
        porthole(dir.path()).args(["list", "--status", "bogus"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::show(&out));
    let err = common::stderr_of(&out);
    assert!(
        err.contains("bogus") && err.contains("incomplete") && err.contains("stopped"),
        "{}",
        common::show(&out)
    );
    let out = common::run_with_timeout(
        porthole(dir.path()).args(["run", "--linger", "5x", "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::show(&out));
    assert!(
        common::stderr_of(&out).contains("not a duration"),
        "{}",
        common::show(&out)
    );
}

#[test]
fn sessions_and_tunnels_say_when_their_execution_was_stopped() {
    let dir = common::temp_dir();
    let _serve = common::ServeGuard(dir.path().join("data"));
    let out = common::run_with_timeout(
        porthole(dir.path()).args(["run", "--", "sleep", "120"]),
        LIMIT,
    );
    assert!(out.status.success(), "{}", common::show(&out));
    let announced = common::wait_until(common::deadline_in(Duration::from_secs(20)), || {
        let out = common::run_with_timeout(porthole(dir.path()).args(["list", "--json"]), LIMIT);
        common::stdout_of(&out).contains("\"host_key\": \"SHA256:")
    });
    assert!(announced, "no SSH address announced");

    let spawn = |args: &[&str]| {
        let mut child = porthole(dir.path())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn porthole");
        let out = common::SharedBuf::default();
        let err = common::SharedBuf::default();
        common::drain_into(child.stdout.take().expect("piped"), out.clone());
        common::drain_into(child.stderr.take().expect("piped"), err.clone());
        (child, out, err)
    };
    let (mut exec, exec_out, exec_err) = spawn(&["exec", "1", "--", "echo started; sleep 60"]);
    let (mut tunnel, tunnel_out, _tunnel_err) = spawn(&["tunnel", "1", ":9"]);
    assert!(
        exec_out.wait_for("started", Duration::from_secs(20)),
        "{}",
        exec_err.text()
    );
    assert!(
        tunnel_out.wait_for(": up", Duration::from_secs(20)),
        "{}",
        tunnel_out.text()
    );

    let out = common::run_with_timeout(porthole(dir.path()).args(["stop", "1"]), LIMIT);
    assert!(out.status.success(), "{}", common::show(&out));

    let status = common::wait_child(&mut exec, Duration::from_secs(30));
    assert!(status.is_some_and(|s| !s.success()), "exec: {status:?}");
    assert!(
        exec_err.wait_for(
            "Connection to 127.0.0.1 closed: execution #1 was stopped.",
            Duration::from_secs(5)
        ),
        "{}",
        exec_err.text()
    );
    let status = common::wait_child(&mut tunnel, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.code() == Some(255)),
        "tunnel: {status:?}\n{}",
        tunnel_out.text()
    );
    assert!(
        tunnel_out
            .text()
            .contains("execution #1 was stopped; stopping"),
        "{}",
        tunnel_out.text()
    );

    // And afterwards, no connection attempt ends in "connection refused".
    let out = common::run_with_timeout(
        porthole(dir.path()).args(["exec", "1", "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(255), "{}", common::show(&out));
    assert!(
        common::stderr_of(&out).contains("execution #1 was stopped; its SSH server has gone"),
        "{}",
        common::show(&out)
    );
}
