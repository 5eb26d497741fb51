//! `porthole exec` against `porthole-agent` and against OpenSSH `sshd`:
//! output, exit codes (0, 3, a signal), stdout/stderr kept apart, stdin
//! forwarded, and `--tty`.

mod common;

use common::porthole_cli::{Outcome, Porthole, Server};

/// Runs `porthole exec [extra] TARGET CONNECT... -- COMMAND`.
fn exec(p: &Porthole, target: &str, connect: &[&str], extra: &[&str], command: &str) -> Outcome {
    let mut args = vec!["exec"];
    args.extend_from_slice(extra);
    args.push(target);
    args.extend_from_slice(connect);
    args.extend_from_slice(&["--", command]);
    p.run(&args)
}

/// The same checks against any server.
fn check_exec(p: &Porthole, target: &str, connect: &[&str]) {
    let o = exec(
        p,
        target,
        connect,
        &[],
        "echo out-$((40+2)); echo err-$((50+5)) >&2",
    );
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(
        o.stdout,
        "out-42\n",
        "stdout holds only stdout\n{}",
        o.describe()
    );
    assert_eq!(
        o.stderr,
        "err-55\n",
        "stderr holds only stderr\n{}",
        o.describe()
    );

    let o = exec(p, target, connect, &[], "echo before; exit 3");
    assert_eq!(o.code(), 3, "the remote exit code\n{}", o.describe());
    assert_eq!(o.stdout, "before\n", "{}", o.describe());

    let o = exec(
        p,
        target,
        connect,
        &[],
        "echo dying >&2; kill -TERM $$; echo survived",
    );
    assert_eq!(
        o.code(),
        128 + 15,
        "killed by SIGTERM means 143\n{}",
        o.describe()
    );
    assert!(!o.stdout.contains("survived"), "{}", o.describe());
    assert!(o.stderr.contains("dying"), "{}", o.describe());

    // stdin is not a terminal here: it goes to the command, then EOF.
    let mut args = vec!["exec", target];
    args.extend_from_slice(connect);
    args.extend_from_slice(&["--", "tr a-z A-Z; echo end"]);
    let o = p.run_with_input(&args, b"hello stdin\n");
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.stdout, "HELLO STDIN\nend\n", "{}", o.describe());

    // --tty: the command runs on a PTY.
    let o = exec(
        p,
        target,
        connect,
        &["-t"],
        "test -t 0 && test -t 1 && echo tty-$((6*7))",
    );
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert!(o.stdout.contains("tty-42"), "{}", o.describe());
}

#[test]
fn exec_against_porthole_agent() {
    let p = Porthole::new();
    let Some(server) = Server::agent(&p) else {
        return;
    };
    check_exec(&p, &server.target, &server.connect_args());
}

#[test]
fn exec_against_openssh_sshd() {
    let p = Porthole::new();
    let Some(server) = Server::sshd(&p) else {
        return;
    };
    check_exec(&p, &server.target, &server.connect_args());
}
