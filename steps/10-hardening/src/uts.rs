//! Layer 01, the UTS namespace: a private hostname (uts_namespaces(7)).
//!
//! "UTS" is the `struct utsname` that uname(2) returns. The namespace holds
//! its nodename (the hostname) and domainname; a child cloned with
//! CLONE_NEWUTS starts with a copy of its parent's and may change it without
//! the host noticing.

use anyhow::{Context, Result};
use nix::sched::CloneFlags;

/// The clone(2) flag that gives the child its own UTS namespace.
pub fn clone_flag() -> CloneFlags {
    CloneFlags::CLONE_NEWUTS
}

/// Sets the hostname of the UTS namespace this process is in.
pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).with_context(|| format!("sethostname({name:?})"))
}

/// Accepts what a hostname may be: 1 to 64 letters, digits, '-' and '.',
/// not starting with '-' or '.' (HOST_NAME_MAX is 64 on Linux).
pub fn parse_hostname(name: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    let valid = (1..=64).contains(&name.len())
        && name.chars().all(allowed)
        && !name.starts_with(['-', '.']);
    if valid {
        Ok(name.to_string())
    } else {
        Err("use 1 to 64 letters, digits, '-' or '.', starting with a letter or digit".into())
    }
}
