//! porthole: a terminal console for debugging live machine-learning
//! executions over SSH, and `porthole-agent`, the companion SSH server that
//! runs inside the execution's container.
//!
//! The crate is one package with two binaries; the modules here are the
//! rooms both binaries share.

pub mod agent;
pub mod announce;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod proctree;
pub mod source;
pub mod ssh;
pub mod tui;
