//! `exec NAME COMMAND`: another process inside a running container.
//!
//! The container's namespaces are files, /proc/PID/ns/*; setns(2) moves the
//! caller into the one an open file names (nsenter(1) does this). The user
//! namespace comes first: joining it gives the capabilities that joining
//! the others (which it owns) needs. Joining the mount namespace also
//! moves the root and working directory to the container's "/".
//!
//! A PID namespace is special: setns() puts only the caller's future
//! children in it (a process never changes PID). So exec forks once
//! more: the child is in every namespace and execs COMMAND, the parent
//! waits for it and passes its exit status on.
//!
//! The new process is hardened like the container's PID 1: the same
//! capabilities, no_new_privs and seccomp filter (hardening.rs).

use std::ffi::OsString;
use std::fs::File;

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::unistd::{fork, ForkResult, Pid};

use crate::cgroups::Cgroup;
use crate::container;
use crate::hardening::Profile;
use crate::state::Store;

/// The namespaces to join, in order: user first (see above).
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
];

pub fn exec(store: &Store, name: &str, command: &[OsString]) -> Result<i32> {
    let record = store.load(name)?;
    let container = crate::require_running(&record)?;
    // Its cgroup first: after setns(user) we are no longer root on the host.
    if let Some(cgroup) = &record.cgroup {
        Cgroup::find(cgroup)?.add(Pid::this())?;
    }
    // Opened before any setns: once in its mount namespace, /proc is the
    // container's and the host PID means nothing there.
    let namespaces = open_namespaces(container.pid)?;
    let profile = Profile::of_process(container.pid)?;
    let environment = std::fs::read(format!("/proc/{}/environ", container.pid)).context("reading the container's environment")?;
    if !container.is_alive() {
        anyhow::bail!("container {name:?} stopped meanwhile");
    }
    join(&namespaces)?;
    container::forward_signals_to_container()?;
    // SAFETY: single-threaded; the child only sets up and exec()s.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => std::process::exit(run_inside(command, &environment, &profile)),
        ForkResult::Parent { child } => container::wait_for_exit(child),
    }
}

/// The container's namespaces, but those it shares with us: a
/// --privileged container run as root has no user namespace of its own,
/// and setns(2) into one's own user namespace is EINVAL.
fn open_namespaces(pid: i32) -> Result<Vec<(File, CloneFlags)>> {
    let mut namespaces = Vec::new();
    for (kind, flag) in NAMESPACES {
        let path = format!("/proc/{pid}/ns/{kind}");
        if std::fs::read_link(&path).ok() == std::fs::read_link(format!("/proc/self/ns/{kind}")).ok() {
            continue;
        }
        namespaces.push((File::open(&path).with_context(|| format!("opening {path}"))?, flag));
    }
    Ok(namespaces)
}

/// setns(2) into each namespace, in the order given.
fn join(namespaces: &[(File, CloneFlags)]) -> Result<()> {
    for (file, flag) in namespaces {
        setns(file, *flag).with_context(|| format!("joining the container's {} namespace (setns)", kind(*flag)))?;
    }
    Ok(())
}

fn kind(flag: CloneFlags) -> &'static str {
    NAMESPACES.iter().find(|(_, f)| *f == flag).map_or("?", |(k, _)| k)
}

/// In the forked child, now in the container's PID namespace too: the
/// container's environment, its "/" as working directory, then COMMAND.
fn run_inside(command: &[OsString], environment: &[u8], profile: &Profile) -> i32 {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    for (key, _) in std::env::vars_os() {
        std::env::remove_var(key);
    }
    for entry in environment.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        if let Some((key, value)) = entry.split_once('=') {
            std::env::set_var(key, value);
        }
    }
    if let Err(err) = nix::unistd::chdir("/") {
        return container::report_runtime_error(anyhow::anyhow!("chdir / inside the container: {err}"));
    }
    if let Err(err) = profile.prepare().and_then(|prepared| crate::hardening::apply(&prepared)) {
        return container::report_runtime_error(err);
    }
    container::exec(command)
}
