//! The agent as a container's PID 1.
//!
//! With the agent as the image's `ENTRYPOINT`, it is PID 1: every process
//! orphaned in the container (a background job of a closed shell, a
//! worker whose parent died) is re-parented to it and stays a zombie until
//! PID 1 reaps it. The agent cannot simply `waitpid(-1)`: that would steal
//! the exit statuses that tokio waits for on behalf of the wrapped command
//! and the sessions. So, as tini does, PID 1 splits in two before anything
//! else starts: the child runs the agent, and PID 1 only forwards signals
//! to it, reaps every orphan, and exits with the agent's exit status.

use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};

/// Signals PID 1 passes on to the agent (stop requests and the user's).
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Set to any value to keep the agent as PID 1 without the reaper (for a
/// container that already runs an init such as `docker run --init`).
pub const NO_INIT_ENV: &str = "PORTHOLE_NO_INIT";

/// When this process is PID 1, forks: the child returns and goes on as the
/// agent; PID 1 reaps and forwards signals until the agent exits, then
/// exits with its status. Anywhere else, returns at once.
///
/// Must run before any thread is started (before the async runtime).
pub fn split_if_pid1() {
    if getpid().as_raw() != 1 || std::env::var_os(NO_INIT_ENV).is_some() {
        return;
    }
    let mut watched = SigSet::empty();
    for s in FORWARDED {
        watched.add(s);
    }
    watched.add(Signal::SIGCHLD);
    // Blocked before the fork, so a signal arriving in between waits for
    // `sigwait` instead of being lost (PID 1 ignores unhandled signals).
    let mut before = SigSet::empty();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched), Some(&mut before)) {
        say!("porthole-agent: running as PID 1 without a reaper ({e}); orphaned processes will stay zombies");
        return;
    }
    // SAFETY: no other thread exists yet (see the doc comment), so the
    // child may go on running arbitrary code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
        }
        Ok(ForkResult::Parent { child }) => reap(child, &watched),
        Err(e) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
            say!("porthole-agent: running as PID 1 without a reaper ({e}); orphaned processes will stay zombies");
        }
    }
}

/// PID 1's loop: never returns.
fn reap(agent: Pid, watched: &SigSet) -> ! {
    loop {
        match watched.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap_all(agent) {
                    std::process::exit(code);
                }
            }
            Ok(signal) => {
                let _ = kill(agent, signal);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every exited child; the agent's exit code once it is among them.
fn reap_all(agent: Pid) -> Option<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == agent => return Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == agent => {
                return Some(128 + signal as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
