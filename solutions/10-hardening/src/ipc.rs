//! Layer 04, the IPC namespace: private System V IPC objects and POSIX
//! message queues (ipc_namespaces(7)).
//!
//! Queues, semaphores and shared memory segments are found by a number or a
//! name, and any process that knows it (and has the permission) can use
//! them. In a new IPC namespace the tables start empty. POSIX queues are
//! listed by the mqueue filesystem, which shows the namespace of whoever
//! mounted it: mount a new one, or `ls /dev/mqueue` still shows the host's.

use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;

/// Where POSIX message queues are conventionally listed (mq_overview(7)).
const MQUEUE_DIR: &str = "/dev/mqueue";

/// The clone(2) flag that gives the child its own IPC namespace.
pub fn clone_flag() -> CloneFlags {
    // STUDENT 04: return the CloneFlags bit for a new IPC namespace (see clone(2), "CLONE_NEWIPC").
    CloneFlags::CLONE_NEWIPC
    // STUDENT END
}

/// Mounts an mqueue filesystem for the container's IPC namespace on
/// /dev/mqueue, so listing it shows the container's queues, not the host's.
/// A host without that directory gets none (mkdir there would create it on
/// the host's /dev, which is shared).
pub fn mount_mqueue() -> Result<()> {
    // STUDENT 04: if MQUEUE_DIR is a directory, mount an "mqueue" filesystem (source and fstype "mqueue") on it with MS_NOSUID | MS_NODEV | MS_NOEXEC.
    if !Path::new(MQUEUE_DIR).is_dir() {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("mqueue"), MQUEUE_DIR, Some("mqueue"), flags, None::<&str>)
        .with_context(|| format!("mounting a new mqueue on {MQUEUE_DIR}"))
    // STUDENT END
}
