//! The host as the checks see it and leave it: its processes (to find a
//! container's, or what it left behind), and keeping it tidy between
//! checks: orphans reaped, dead runtimes' cgroups removed, the host's
//! mounts shielded from a leaky runtime.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::run::{poll, As, Target, NOBODY};

/// Removes the cgroups (named ctlab-PID, from chapter 08 on) of a runtime
/// that was SIGKILLed and so could not: what scripts/cleanup would do.
pub fn remove_cgroups_of(runtime: i32) {
    for directory in ctlab_cgroups().into_iter().filter(|(pid, _)| *pid == runtime).map(|(_, d)| d) {
        // Its processes are dying: rmdir works once they are gone.
        let _ = poll(Duration::from_secs(2), || (!directory.exists() || std::fs::remove_dir(&directory).is_ok()).then_some(()));
    }
}

/// Removes every ctlab-PID cgroup whose runtime is gone: what a broken
/// runtime (a student's, or a mutant) left. Called after each check.
pub fn remove_orphaned_cgroups() {
    for (pid, _) in ctlab_cgroups() {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_cgroups_of(pid);
        }
    }
}

/// (runtime PID, directory) of every ctlab-PID cgroup, v1 and v2.
fn ctlab_cgroups() -> Vec<(i32, PathBuf)> {
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies = std::fs::read_dir(root).map(|e| e.flatten().map(|e| e.path()).collect()).unwrap_or_else(|_| Vec::new());
    let mut found = Vec::new();
    for parent in hierarchies.iter().map(PathBuf::as_path).chain([root]) {
        let Ok(entries) = std::fs::read_dir(parent) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("ctlab-").and_then(|p| p.parse().ok()) {
                found.push((pid, entry.path()));
            }
        }
    }
    found
}

/// The processes below `pid` on the host, with their command lines.
pub fn descendants(pid: i32) -> Vec<(i32, Vec<String>)> {
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for child in children(parent) {
            found.push((child, cmdline(child)));
            parents.push(child);
        }
    }
    found
}

fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<_>>())
        .collect()
}

pub fn cmdline(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// The command line the runtime (and, until it execs, its child) has when
/// started with `args`.
pub fn cmdline_of_runtime(target: &Target, args: &[&str]) -> Vec<String> {
    target
        .command(args, target.who)
        .map(|c| {
            let skip = if target.who == As::Root { 0 } else { 7 };
            let program = std::iter::once(c.get_program().to_string_lossy().into_owned());
            program.chain(c.get_args().map(|a| a.to_string_lossy().into_owned())).skip(skip).collect()
        })
        .unwrap_or_default()
}

/// Host PIDs whose command line is exactly `argv` (to find leftovers).
pub fn processes_running(argv: &[&str]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&pid| cmdline(pid) == argv)
        .collect()
}

/// A `sleep` whose command line no other run on this machine shares (its
/// length has the checker's PID in it), to find it or its leftovers.
pub fn sleeper(tag: u32) -> [String; 2] {
    ["sleep".to_string(), format!("{tag}{}", std::process::id())]
}

/// Makes this process the reaper of the orphans its runs leave (a killed
/// runtime's container, a background process that outlived its shell), so
/// they do not pile up as zombies where PID 1 does not reap (containers, CI).
pub fn adopt_orphans() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Reaps every exited child and removes what dead runtimes left. Call only between checks, when no [`Running`]
/// is alive: it would take their exit status too.
pub fn reap_orphans() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
    remove_orphaned_cgroups();
}

/// Moves the checker into a mount namespace of its own whose mounts are
/// slaves of the host's. On a host where / is shared (systemd), a student's
/// runtime that forgets MS_PRIVATE would otherwise cover the host's own
/// /proc with its container's, once per check. The shared-host check
/// (no-propagation-to-host) still catches that leak, in a scratch namespace.
/// Call it first thing, while the process has a single thread.
pub fn shield_host_mounts() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS) for the checks")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>).context("making the checks' mounts slaves")
}

/// After each check of mini-docker: removes the containers checks named
/// (ctlab-*) that a failing check left, then prunes, as root and rootless,
/// so one check's leftovers cannot fail the next.
pub fn tidy_engine(target: &Target) {
    if !target.is_engine() {
        return;
    }
    for who in [As::Root, As::Nobody] {
        let engine = Target { who, ..target.raw() };
        let listed = engine.run(&["ps", "-a"]);
        for name in listed.stdout.lines().skip(1).filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with("ctlab-")) {
            let _ = engine.run(&["rm", "-f", name]);
        }
        let _ = engine.run(&["prune"]);
    }
    // A runtime that died between claiming a name and writing its first
    // record (a skeleton at its todo!()) leaves a bare directory, which
    // prune spares for a minute in case a run is in progress. None is now.
    let state_dirs = [PathBuf::from("/run/mini-docker"), PathBuf::from(format!("/tmp/mini-docker-{NOBODY}"))];
    for dir in state_dirs.iter().flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten()) {
        if dir.path().is_dir() && !dir.path().join("config").exists() {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
}
