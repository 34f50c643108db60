//! Layer 03, the mount namespace: a private copy of the mount table
//! (mount_namespaces(7)) with a fresh /proc in it.
//!
//! The child starts with a copy of the host's mounts. Whether a mount made
//! in the copy also appears on the host depends on propagation: on systemd
//! hosts `/` is "shared", so the first thing to do is make every mount
//! private. Then a new procfs can go over /proc: procfs shows the PID
//! namespace of whoever mounts it, so `ps` sees only the container.

use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;

/// The clone(2) flag that gives the child its own copy of the mount table.
pub fn clone_flag() -> CloneFlags {
    // STUDENT 03: return the CloneFlags bit for a new mount namespace (see clone(2); its name is historical: "NEWNS").
    CloneFlags::CLONE_NEWNS
    // STUDENT END
}

/// Stops mount events crossing between the container and the host, in both
/// directions, for every mount under `/` (like `mount --make-rprivate /`).
pub fn make_mounts_private() -> Result<()> {
    // STUDENT 03: remount "/" with MS_REC | MS_PRIVATE (nix::mount::mount with no source, no fstype, no data).
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making / private (mount --make-rprivate /)")
    // STUDENT END
}

/// Mounts a procfs for the container's PID namespace on `target` (/proc).
pub fn mount_proc(target: &Path) -> Result<()> {
    // STUDENT 03: mount a "proc" filesystem (source "proc", fstype "proc") on target, with MS_NOSUID | MS_NODEV | MS_NOEXEC.
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), target, Some("proc"), flags, None::<&str>)
        .with_context(|| format!("mounting a new proc on {}", target.display()))
    // STUDENT END
}
