//! `porthole`: the console and its headless commands.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
use porthole::cli::Cli;
use porthole::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    porthole::ssh::shell::install_panic_hook();
    let Some(command) = cli.command else {
        // The console lands in a later release.
        let _ = Cli::command().print_help();
        println!();
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("porthole: cannot start the async runtime: {e}");
            return ExitCode::from(255);
        }
    };
    let result = runtime.block_on(commands::run(command));
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("porthole: {e:#}");
            ExitCode::from(u8::try_from(commands::FAILURE).unwrap_or(255))
        }
    }
}
