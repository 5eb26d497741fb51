//! `porthole-agent`: see `porthole::agent`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use porthole::agent::{self, cli::AgentArgs};

/// Exit code when the agent cannot start (bad keys, port in use).
const START_FAILED: u8 = 2;

fn main() -> ExitCode {
    let args = AgentArgs::parse();
    // The agent's own log goes to stderr, which lands in the platform's log;
    // quiet unless asked, so the step's output stays readable.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTHOLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // Before any thread exists: as a container's PID 1, the agent leaves
    // PID 1 to a reaper (see `agent::init`).
    agent::init::split_if_pid1();
    // One worker thread. The agent shares the container with the training
    // job, and one core carries shells and tunnels at about 1 GB/s.
    // Keeping a connection's tasks on one thread also saves the
    // cross-thread wake-ups between its encryption and its channels: on 2
    // cores that made tunnels 15-25% faster than two workers
    // (benches/tunnel_throughput.rs).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "porthole-agent: cannot start the async runtime: {e}"
            );
            return ExitCode::from(START_FAILED);
        }
    };
    let result = runtime.block_on(agent::run(args));
    // Sessions and forwards still running must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "porthole-agent: {e:#}");
            ExitCode::from(START_FAILED)
        }
    }
}
