// Chapter 10-hardening: fill in the todo!()s (`cargo lab hint 10` lists them),
// then `cargo lab check 10`. Generated from solutions/10-hardening by
// scripts/gen-steps: maintainers edit the solution, never this file.

// Until you write them, the todo!()s leave imports and arguments unused.
#![allow(unused)]

//! 10-hardening: mini-docker, made hard to break out of.
//!
//! Chapter 09's engine, unchanged but for one layer (hardening.rs): the
//! container keeps only docker's default capabilities, cannot gain more
//! through exec(), makes its system calls through a seccomp filter and sees
//! the kernel's sensitive files masked or read-only. `--privileged`,
//! `--cap-add`, `--cap-drop` and `--security-opt seccomp=unconfined` relax
//! it, with docker's meanings. `exec` gives a new process what the
//! container's PID 1 has.

mod bridge;
mod cgroups;
mod container;
mod engine;
mod detach;
mod exec;
mod hardening;
mod ipc;
mod mounts;
// Chapter 07's point-to-point Plan::new and connect_to_host are not used:
// a bridge replaces them (bridge.rs); clone_flag, Cidr, Plan and
// configure_inside are.
#[allow(dead_code)]
mod net;
mod netlink;
mod overlay;
mod pid;
mod rootfs;
mod state;
mod userns;
mod uts;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use bridge::Network;
use state::{Process, Record, Store};

/// A small container engine: run commands in containers built from a
/// directory, and manage them afterwards.
#[derive(Parser)]
#[command(name = "mini-docker", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run COMMAND in a new container whose root is a copy-on-write view of ROOTFS
    Run(RunOptions),
    /// List running containers (-a: all)
    Ps {
        /// Also the stopped ones
        #[arg(short, long)]
        all: bool,
    },
    /// Run COMMAND inside a running container
    Exec {
        name: String,
        #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Stop running containers: SIGTERM, then SIGKILL after the timeout
    Stop {
        /// Seconds to wait before SIGKILL
        #[arg(short = 't', long = "time", value_name = "SECONDS", default_value_t = 10)]
        seconds: u64,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove stopped containers (-f: stop them first)
    Rm {
        /// Stop it first (SIGKILL) if it runs
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print the output of a container started with -d
    Logs { name: String },
    /// Remove everything stopped or dead containers left: state, cgroups, veths; and the bridge if no container is left
    Prune,
}

#[derive(Args)]
pub struct RunOptions {
    /// The container's name [default: generated]
    #[arg(long, value_parser = engine::parse_name)]
    name: Option<String>,

    /// Hostname inside [default: the name]
    #[arg(long, value_parser = uts::parse_hostname)]
    hostname: Option<String>,

    /// Memory limit, e.g. 64M or 1G (OOM-killed past it)
    #[arg(short, long, value_name = "SIZE", value_parser = cgroups::parse_memory)]
    memory: Option<u64>,

    /// Most processes the container may have at once
    #[arg(long, value_name = "N", value_parser = cgroups::parse_pids)]
    pids_limit: Option<u64>,

    /// CPU time, in CPUs: 0.5 is half of one CPU
    #[arg(long, value_name = "FLOAT", value_parser = cgroups::parse_cpus)]
    cpus: Option<f64>,

    /// bridge: a veth on minidocker0 with NAT; none: only lo
    #[arg(long, value_enum, default_value_t = Network::Bridge)]
    network: Network,

    /// Set an environment variable inside (repeatable)
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = engine::parse_env)]
    env: Vec<(String, String)>,

    /// Bind-mount a host path (repeatable)
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]", value_parser = overlay::parse_volume)]
    volume: Vec<overlay::Volume>,

    /// Every capability, no seccomp filter, nothing masked; as root, no user namespace either: root inside is root on the host
    #[arg(long)]
    privileged: bool,

    /// Add a capability to the default set (e.g. NET_ADMIN; ALL: every one)
    #[arg(long = "cap-add", value_name = "CAP", value_parser = hardening::parse_capability)]
    cap_add: Vec<hardening::CapabilityName>,

    /// Drop a capability from the default set (e.g. NET_RAW; ALL: every one)
    #[arg(long = "cap-drop", value_name = "CAP", value_parser = hardening::parse_capability)]
    cap_drop: Vec<hardening::CapabilityName>,

    /// seccomp=unconfined: no seccomp filter
    #[arg(long = "security-opt", value_name = "OPTION", value_parser = hardening::parse_security_opt)]
    security_opt: Vec<hardening::SecurityOpt>,

    /// Run in the background: print the name and return; output goes to `mini-docker logs NAME`
    #[arg(short, long)]
    detach: bool,

    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,

    /// The directory to use, read-only, as the container's root filesystem
    #[arg(value_name = "ROOTFS", value_parser = rootfs::parse_rootfs)]
    rootfs: PathBuf,

    /// The command to run inside, with its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn main() {
    let code = match Cli::try_parse() {
        Ok(cli) => dispatch(cli.command).unwrap_or_else(container::report_runtime_error),
        Err(err) => container::report_usage_error(err),
    };
    std::process::exit(code);
}

fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Run(options) => run(&options),
        Command::Ps { all } => engine::ps(&Store::open()?, all),
        Command::Exec { name, command } => exec::exec(&Store::open()?, &name, &command),
        Command::Stop { seconds, names } => engine::stop(&Store::open()?, &names, seconds),
        Command::Rm { force, names } => engine::rm(&Store::open()?, &names, force),
        Command::Logs { name } => engine::logs(&Store::open()?, &name),
        Command::Prune => engine::prune(&Store::open()?),
    }
}

/// `mini-docker run`: checks what it can before anything exists, claims
/// the name, then starts the container in the foreground or detached.
fn run(options: &RunOptions) -> Result<i32> {
    bridge::require_root(options.network)?;
    let limits = cgroups::Limits { memory_bytes: options.memory, pids: options.pids_limit, cpus: options.cpus };
    engine::require_root_for_limits(&limits)?;
    let store = Store::open()?;
    let name = match &options.name {
        Some(name) => {
            store.reserve(name)?;
            name.clone()
        }
        None => engine::reserve_generated_name(&store)?,
    };
    // A record from the first moment, so prune can tell a run in progress
    // (its runtime alive) from one killed before it got further.
    let record = match first_record(options, &name).and_then(|record| record.save(&store.dir(&name)).map(|()| record)) {
        Ok(record) => record,
        Err(err) => {
            let _ = store.remove(&name);
            return Err(err);
        }
    };
    if options.detach {
        return detach::detach(&name, |ready| start_and_wait(options, &store, record.clone(), &limits, Some(ready)));
    }
    start_and_wait(options, &store, record, &limits, None)
}

/// All that is known before anything is made, the cgroup's name included
/// (as root there will be one; prune removes it if it was made): one save
/// now, one more once the container runs.
fn first_record(options: &RunOptions, name: &str) -> Result<Record> {
    Ok(Record {
        name: name.to_string(),
        hostname: options.hostname.clone().unwrap_or_else(|| engine::hostname_for(name)),
        command: engine::display_command(&options.command),
        created: engine::now(),
        runtime: Some(Process::current()?),
        detached: options.detach,
        cgroup: nix::unistd::geteuid().is_root().then(|| engine::cgroup_name(name)),
        ..Record::default()
    })
}

/// Starts the container, waits for it, records how it ended and cleans up.
/// `ready` (with -d) hears "" once COMMAND runs, or why it could not start.
fn start_and_wait(options: &RunOptions, store: &Store, record: Record, limits: &cgroups::Limits, ready: Option<OwnedFd>) -> Result<i32> {
    let name = &record.name.clone();
    let dir = store.dir(name);
    let started = start(options, store, record, limits);
    let (mut record, cgroup, child, setup_errors) = match started {
        Ok(started) => started,
        Err(err) => {
            let _ = store.remove(name);
            detach::tell_run(ready, &err);
            return Err(err);
        }
    };
    // With -d: tell the waiting `run` whether COMMAND started.
    let failed_to_start = ready.is_some_and(|ready| !detach::report_ready(ready, setup_errors));
    let code = container::wait_for_exit(child);
    record.exit_code = Some(*code.as_ref().unwrap_or(&container::EXIT_RUNTIME_ERROR));
    drop(cgroup); // removes its directories, now that nothing runs in it
    if options.rm || failed_to_start {
        store.remove(name)?;
    } else {
        record.save(&dir)?;
    }
    code
}

/// Everything up to the gate opening: the record, the layer, an address,
/// the cgroup, the child in its namespaces, set up from both sides.
/// Also returns a pipe that reads the child's set-up error, or nothing
/// once it has exec()ed COMMAND.
fn start(options: &RunOptions, store: &Store, mut record: Record, limits: &cgroups::Limits) -> Result<(Record, Option<cgroups::Cgroup>, Pid, OwnedFd)> {
    let name = &record.name.clone();
    let dir = store.dir(name);
    let hostname = record.hostname.clone();
    if options.detach {
        // The supervisor is the runtime from now on.
        record.runtime = Some(Process::current()?);
        record.save(&dir)?;
    }
    let profile = hardening::Profile::new(options.privileged, &options.cap_add, &options.cap_drop, options.security_opt.contains(&hardening::SecurityOpt::SeccompUnconfined));
    let layer = overlay::Layer::new(&options.rootfs, &dir);
    layer.prepare()?;
    let plan = reserve_address(options.network, store, &dir, &mut record)?;
    container::forward_signals_to_container()?;
    let cgroup = engine::create_cgroup(name, limits)?;
    let gate = container::SetupGate::new()?;
    let (setup_errors, error_writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
    let inside = Inside { hostname: &hostname, env: &options.env, volumes: &options.volume, layer: &layer, plan: plan.as_ref(), profile: &profile };
    let child = container::spawn(namespaces(&profile), &options.command, || {
        let prepared = profile.prepare()?;
        gate.wait_for_parent()?;
        let result = set_up_inside(&inside, &prepared).map_err(userns::explain_if_forbidden);
        if let Err(err) = &result {
            let _ = nix::unistd::write(&error_writer, format!("{err:#}").as_bytes());
        }
        result
    })
    .map_err(userns::explain_if_forbidden)?;
    drop(error_writer); // the child's copy closes when it exec()s or exits
    let outside = set_up_outside(child, plan.as_ref(), cgroup.as_ref(), &profile);
    let recorded = outside.and_then(|()| {
        record.container = Process::of(child.as_raw());
        record.save(&dir)
    });
    if let Err(err) = recorded.and_then(|()| gate.open()) {
        container::kill_and_reap(child);
        return Err(userns::explain_if_forbidden(err));
    }
    Ok((record, cgroup, child, setup_errors))
}

/// With --network bridge: an address no other container has, saved in the
/// record while the store is locked, so a concurrent run cannot pick it.
fn reserve_address(network: Network, store: &Store, dir: &Path, record: &mut Record) -> Result<Option<net::Plan>> {
    if network == Network::None {
        return Ok(None);
    }
    let _lock = store.lock()?;
    let plan = bridge::plan(store)?;
    record.ip = Some(plan.container.address);
    record.veth = Some(plan.host_interface.clone());
    record.save(dir).context("saving the container's address")?;
    Ok(Some(plan))
}

/// The namespaces the child is born into: all of them, but the user
/// namespace for --privileged as root.
fn namespaces(profile: &hardening::Profile) -> CloneFlags {
    let all = userns::clone_flag() | uts::clone_flag() | pid::clone_flag() | mounts::clone_flag() | ipc::clone_flag() | net::clone_flag();
    if profile.user_namespace { all } else { all - userns::clone_flag() }
}

/// Runs in the runtime, outside, while the child waits at the gate.
fn set_up_outside(child: Pid, plan: Option<&net::Plan>, cgroup: Option<&cgroups::Cgroup>, profile: &hardening::Profile) -> Result<()> {
    if profile.user_namespace {
        userns::map_root_to_caller(child)?;
    }
    if let Some(plan) = plan {
        bridge::connect(child, plan)?;
    }
    // Before the gate opens: the command must never run outside its limits.
    cgroup.map_or(Ok(()), |cgroup| cgroup.add(child))
}

/// What the child needs to set itself up.
struct Inside<'a> {
    hostname: &'a str,
    env: &'a [(String, String)],
    volumes: &'a [overlay::Volume],
    layer: &'a overlay::Layer,
    plan: Option<&'a net::Plan>,
    profile: &'a hardening::Profile,
}

/// Runs in the child, inside the new namespaces, just before exec().
/// `prepared`: the profile, made ready before the gate opened.
fn set_up_inside(inside: &Inside, prepared: &hardening::Prepared) -> Result<()> {
    mounts::make_mounts_private()?; // first, before any mount can leak to the host
    uts::set_hostname(inside.hostname)?;
    match inside.plan {
        Some(plan) => bridge::configure_inside(plan)?,
        None => bridge::loopback_only()?,
    }
    inside.layer.mount()?;
    overlay::mount_volumes(&inside.layer.merged, inside.volumes)?;
    rootfs::enter(&inside.layer.merged)?;
    ipc::mount_mqueue()?;
    engine::replace_environment(inside.hostname, inside.env);
    todo!("with a locked-down profile, mask the kernel's files (hardening::mask_kernel_files); then, last of all, hardening::apply the prepared profile.")
}

/// Used by exec: the container must still be running.
pub fn require_running(record: &Record) -> Result<Process> {
    match (record.status(), record.container) {
        (state::Status::Running, Some(process)) => Ok(process),
        (status, _) => bail!("container {:?} is not running ({status})", record.name),
    }
}
