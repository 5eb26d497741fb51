//! `porthole`: the console. The TUI and the headless commands land in later
//! releases; today the binary describes itself.

use clap::Parser;

/// A terminal console for debugging live machine-learning executions over
/// SSH. The console, `shell`, `exec`, `tunnel` and the execution sources are
/// on the way; `porthole-agent` (the companion SSH server) is usable today.
#[derive(Debug, Parser)]
#[command(name = "porthole", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let _ = cmd.print_help();
    println!();
}
