//! The SSH client core: connecting with verified host keys and the user's
//! keys, and the sessions porthole runs over it (shells, commands, tunnels).

pub mod client;
pub mod exec;
pub mod identity;
pub mod shell;
pub mod target;
pub mod trust;
pub mod tunnel;

pub use client::{connect, ConnectOptions, Session, SshError};
pub use target::Target;
