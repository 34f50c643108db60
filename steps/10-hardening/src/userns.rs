//! Layer 05, the user namespace: root inside, the caller outside
//! (user_namespaces(7)).
//!
//! A user namespace has its own user and group IDs and its own
//! capabilities. The child starts in it as "nobody" (the kernel shows
//! unmapped IDs as /proc/sys/kernel/overflowuid, 65534) with every
//! capability, but only over what the new namespace owns. The parent then
//! writes the maps that say "0 inside is me outside". Since the kernel
//! creates the user namespace first and makes it the owner of the other
//! new namespaces, an unprivileged caller may create them all: rootless.

use std::fs::OpenOptions;
use std::io::Write;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// The clone(2) flag that puts the child in a new user namespace.
pub fn clone_flag() -> CloneFlags {
    CloneFlags::CLONE_NEWUSER
}

/// From the parent, while the child waits: maps uid and gid 0 inside the
/// child's namespace to the caller's outside. setgroups must be denied
/// first, or an unprivileged caller may not write gid_map (EPERM): a process
/// that could drop groups with setgroups(2) could escape a "deny by group"
/// permission (CVE-2014-8989).
pub fn map_root_to_caller(child: Pid) -> Result<()> {
    write_proc_file(child, "setgroups", "deny")?;
    write_proc_file(child, "uid_map", &format!("0 {} 1\n", nix::unistd::geteuid()))?;
    write_proc_file(child, "gid_map", &format!("0 {} 1\n", nix::unistd::getegid()))
}

/// Writes `content` to /proc/PID/NAME in one write(2): a map file takes
/// exactly one write, ever.
fn write_proc_file(child: Pid, name: &str, content: &str) -> Result<()> {
    let path = format!("/proc/{child}/{name}");
    let mut file = OpenOptions::new().write(true).open(&path).with_context(|| format!("opening {path}"))?;
    file.write_all(content.as_bytes()).with_context(|| format!("writing {:?} to {path}", content.trim_end()))
}

/// If the host forbids unprivileged user namespaces, names the setting and
/// how to allow it, in front of the error it caused.
pub fn explain_if_forbidden(err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    let denied = ["Operation not permitted", "Permission denied", "No space left on device"].iter().any(|e| text.contains(e));
    match host_restriction() {
        Some(why) if denied => anyhow::anyhow!("{why} ({text})"),
        _ => err,
    }
}

/// The three settings that can forbid user namespaces, checked in order.
fn host_restriction() -> Option<String> {
    let setting = |path: &str| std::fs::read_to_string(path).ok().map(|v| v.trim().to_string());
    let unprivileged = !nix::unistd::geteuid().is_root();
    if setting("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled here: user.max_user_namespaces is 0; allow them with `sudo sysctl -w user.max_user_namespaces=15000`".into());
    }
    if unprivileged && setting("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("this kernel forbids user namespaces to unprivileged users (kernel.unprivileged_userns_clone=0); allow them with `sudo sysctl -w kernel.unprivileged_userns_clone=1`, or run with sudo".into());
    }
    if unprivileged && setting("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some("AppArmor forbids user namespaces to unprivileged programs (kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10+); allow them with `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for this binary, or run with sudo".into());
    }
    None
}
