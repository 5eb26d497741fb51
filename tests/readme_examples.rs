//! The README's session against a local execution runs as written: each
//! `$ porthole ...` line of its `console` example is run by `sh` with the
//! freshly built binaries first on `PATH`, in a fresh data directory, and
//! what the README shows after it must come out, in order (ids, ports,
//! ages and fingerprints differ from run to run, so numbers and such are
//! compared by shape; other lines may come in between).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{porthole_in, ServeGuard};

/// The README's example session: (command, the output it shows).
fn example_session() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("Example against a local execution:")
        .expect("the README has its example session");
    let block = readme[start..]
        .split("```console\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the example is a console block");
    let mut session: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ ") {
            // `$ ssh ...` in the log is output, not a command to run.
            Some(cmd) if cmd.starts_with("porthole ") => {
                session.push((cmd.to_string(), Vec::new()))
            }
            _ => match session.last_mut() {
                Some((_, out)) => out.push(line.to_string()),
                None => panic!("output before any command: {line}"),
            },
        }
    }
    assert!(
        session.len() >= 4,
        "the example has its commands: {session:?}"
    );
    session
}

/// A line reduced to its shape: ids, fingerprints and numbers are
/// placeholders, runs of spaces one space.
fn shape(line: &str) -> String {
    static PATTERNS: std::sync::LazyLock<[(regex::Regex, &str); 4]> =
        std::sync::LazyLock::new(|| {
            let re = |p: &str| regex::Regex::new(p).expect("a valid pattern");
            [
                (re(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"), "<id>"),
                (re(r"SHA256:[A-Za-z0-9+/]+"), "<fp>"),
                (re(r"[0-9]+"), "N"),
                (re(r"\s+"), " "),
            ]
        });
    let mut out = line.trim().to_string();
    for (re, with) in PATTERNS.iter() {
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

/// Whether `want` comes out of `got` in order (other lines may come in
/// between); on failure, the first line that did not.
fn in_order(want: &[String], got: &str) -> Result<(), String> {
    let mut got = got.lines().map(shape);
    for w in want {
        let w = shape(w);
        if !got.any(|g| g == w) {
            return Err(w);
        }
    }
    Ok(())
}

fn sh(dir: &Path, line: &str) -> String {
    let template = porthole_in(dir);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_porthole"))
        .parent()
        .expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("{line} 2>&1")).env("PATH", path);
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("sh runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_readme_session_runs_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _serve = ServeGuard(dir.path().join("data"));
    let session = example_session();
    for (cmd, want) in &session {
        // `run` starts an execution: once. The others read, and a user
        // typing them would give the execution a moment (the announcement,
        // the first output); each gets up to 15 s to show what the README
        // shows.
        let attempts = if cmd.starts_with("porthole run") {
            1
        } else {
            30
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = (String::new(), String::new());
        for _ in 0..attempts {
            let got = sh(dir.path(), cmd);
            match in_order(want, &got) {
                Ok(()) => {
                    last.1.clear();
                    break;
                }
                Err(line) => last = (got, line),
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            last.1.is_empty(),
            "`{cmd}` did not show `{}` as the README says; it printed:\n{}",
            last.1,
            last.0
        );
    }
    let stopped = sh(dir.path(), "porthole stop 1");
    assert!(stopped.contains("stopping"), "{stopped}");
}

#[test]
fn shapes_keep_words_and_hide_what_varies() {
    assert_eq!(
        shape("execution #1 started (3827d849-d258-4a87-b489-14b678f71f4b)"),
        "execution #N started (<id>)"
    );
    assert_eq!(
        shape("1  started   3s  127.0.0.1:36409  sh -c echo hi; sleep 300"),
        "N started Ns N.N.N.N:N sh -c echo hi; sleep N"
    );
    assert_eq!(
        shape(r#"::ssh::{"port":1,"host_key":"SHA256:Hf0c+T4/mm"}"#),
        r#"::ssh::{"port":N,"host_key":"<fp>"}"#
    );
    assert!(in_order(&["a".into(), "c".into()], "a\nb\nc\n").is_ok());
    assert_eq!(
        in_order(&["c".into(), "a".into()], "a\nb\nc\n"),
        Err("a".into())
    );
}
