//! Layer 02, the PID namespace: the command becomes PID 1 (pid_namespaces(7)).
//!
//! A process in a new PID namespace has two PIDs: its number on the host,
//! which the runtime gets back from clone(), and 1 inside. Being PID 1 means
//! what it means for init: orphans are re-parented to it, it gets only the
//! signals it has a handler for, and when it exits the kernel SIGKILLs every
//! other process in the namespace.

use nix::sched::CloneFlags;

/// The clone(2) flag that makes the child the first process (PID 1) of a
/// new PID namespace.
pub fn clone_flag() -> CloneFlags {
    CloneFlags::CLONE_NEWPID
}
