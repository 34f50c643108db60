//! 08-cgroups: + memory, pids and cpu limits in a cgroup of its own (v2 or
//! v1). Needs root.
//!
//! The runtime is one process that clone()s one child. The child is born
//! inside the new namespaces, sets them up, then exec()s the command. The
//! parent forwards signals to it, waits for it and returns its exit status.

mod cgroups;
mod container;
mod ipc;
mod mounts;
mod net;
mod netlink;
mod pid;
mod rootfs;
mod userns;
mod uts;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Run COMMAND inside the isolation built so far: new user, UTS, PID, mount, IPC and network
/// namespaces, a root filesystem of its own, a veth to the host, and limits.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Cli {
    /// Hostname inside the container
    #[arg(long, default_value = "container", value_parser = uts::parse_hostname)]
    hostname: String,

    /// The directory to use as the container's root filesystem
    #[arg(long, value_name = "DIR", default_value = rootfs::default_rootfs(), value_parser = rootfs::parse_rootfs)]
    rootfs: PathBuf,

    /// The container's address, e.g. 10.10.0.2/24 [default: a /30 of 10.200.0.0/16 picked by PID]
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = net::parse_cidr)]
    ip: Option<net::Cidr>,

    /// Memory limit, e.g. 64M or 1G (the container is OOM-killed past it)
    #[arg(long, value_name = "SIZE", value_parser = cgroups::parse_memory)]
    memory: Option<u64>,

    /// Most processes the container may have at once
    #[arg(long, value_name = "N", value_parser = cgroups::parse_pids)]
    pids: Option<u64>,

    /// CPU time, in CPUs: 0.5 is half of one CPU
    #[arg(long, value_name = "FLOAT", value_parser = cgroups::parse_cpus)]
    cpus: Option<f64>,

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
    net::require_root()?;
    let plan = net::Plan::new(cli.ip);
    let limits = cgroups::Limits { memory_bytes: cli.memory, pids: cli.pids, cpus: cli.cpus };
    container::forward_signals_to_container()?;
    // Made before the child, removed when `cgroup` goes out of scope.
    let cgroup = cgroups::Cgroup::create(&format!("ctlab-{}", std::process::id()), &limits)?;
    let gate = container::SetupGate::new()?;
    let child = container::spawn(namespaces(), &cli.command, || {
        gate.wait_for_parent()?;
        set_up_inside(cli, &plan).map_err(userns::explain_if_forbidden)
    })
    .map_err(userns::explain_if_forbidden)?;
    if let Err(err) = set_up_outside(child, &plan, &cgroup).and_then(|()| gate.open()) {
        container::kill_and_reap(child);
        return Err(userns::explain_if_forbidden(err));
    }
    container::wait_for_exit(child)
}

/// The namespaces the child is born into.
fn namespaces() -> CloneFlags {
    userns::clone_flag() | uts::clone_flag() | pid::clone_flag() | mounts::clone_flag() | ipc::clone_flag() | net::clone_flag()
}

/// Runs in the runtime, outside, while the child waits at the gate.
fn set_up_outside(child: Pid, plan: &net::Plan, cgroup: &cgroups::Cgroup) -> Result<()> {
    userns::map_root_to_caller(child)?;
    net::connect_to_host(child, plan)?;
    // Before the gate opens: the command must never run outside its limits.
    cgroup.add(child)
}

/// Runs in the child, inside the new namespaces, just before exec().
fn set_up_inside(cli: &Cli, plan: &net::Plan) -> Result<()> {
    mounts::make_mounts_private()?; // first, before any mount can leak to the host
    uts::set_hostname(&cli.hostname)?;
    net::configure_inside(plan)?;
    rootfs::enter(&cli.rootfs)?;
    ipc::mount_mqueue()
}
