// Chapter 04-ipc: fill in the todo!()s (`cargo lab hint 04` lists them),
// then `cargo lab check 04`. Generated from solutions/04-ipc by
// scripts/gen-steps: maintainers edit the solution, never this file.

// Until you write them, the todo!()s leave imports and arguments unused.
#![allow(unused)]

//! 04-ipc: + private System V IPC and POSIX message queues.
//!
//! The runtime is one process that clone()s one child. The child is born
//! inside the new namespaces, sets them up, then exec()s the command. The
//! parent forwards signals to it, waits for it and returns its exit status.

mod container;
mod ipc;
mod mounts;
mod pid;
mod uts;

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;
use clap::Parser;
use nix::sched::CloneFlags;

/// Run COMMAND inside the isolation built so far: new UTS, PID, mount and IPC namespaces.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Cli {
    /// Hostname inside the container
    #[arg(long, default_value = "container", value_parser = uts::parse_hostname)]
    hostname: String,

    /// The command to run inside, with its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn main() {
    let code = match Cli::try_parse() {
        Ok(cli) => run(&cli).unwrap_or_else(container::report_runtime_error),
        Err(err) => container::report_usage_error(err),
    };
    std::process::exit(code);
}

fn run(cli: &Cli) -> Result<i32> {
    container::forward_signals_to_container()?;
    let child = container::spawn(namespaces(), &cli.command, || set_up_inside(cli))?;
    container::wait_for_exit(child)
}

/// The namespaces the child is born into.
fn namespaces() -> CloneFlags {
    uts::clone_flag() | pid::clone_flag() | mounts::clone_flag() | ipc::clone_flag()
}

/// Runs in the child, inside the new namespaces, just before exec().
fn set_up_inside(cli: &Cli) -> Result<()> {
    mounts::make_mounts_private()?; // first, before any mount can leak to the host
    uts::set_hostname(&cli.hostname)?;
    mounts::mount_proc(Path::new("/proc"))?;
    ipc::mount_mqueue()
}
