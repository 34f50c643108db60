//! Layer 06: the container's own root filesystem (pivot_root(2)).
//!
//! Until now the container saw the host's files. Here its mount namespace
//! gets a new root: the rootfs directory, bind-mounted onto itself so that
//! it is a mount point (pivot_root needs one), with a fresh /proc, a
//! minimal /dev and, where the kernel allows, a read-only /sys. Then
//! pivot_root swaps it in as "/" and the old root is detached: no host path
//! is left to reach, unlike chroot(2), which only changes where path
//! lookups start.

use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::mounts;

/// The repository's rootfs/, built by scripts/build-rootfs: two levels up
/// from this crate (solutions/NN or steps/NN).
pub fn default_rootfs() -> &'static str {
    static DEFAULT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let repository = crate_dir.parent().and_then(Path::parent).unwrap_or(crate_dir);
        repository.join("rootfs").display().to_string()
    });
    &DEFAULT
}

/// The host devices a container needs, bind-mounted from the host's /dev:
/// in a user namespace mknod(2) is not allowed.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// clap's check of --rootfs: a directory with the mount points we need.
/// Done before anything is created, so a bad path leaves nothing behind.
pub fn parse_rootfs(dir: &str) -> Result<PathBuf, String> {
    let build = if dir == default_rootfs() { "; build it with scripts/build-rootfs" } else { "" };
    let root = Path::new(dir).canonicalize().map_err(|err| format!("{err}{build}{}", unreadable(&err)))?;
    if !root.is_dir() {
        return Err("not a directory: give the rootfs directory".into());
    }
    for mount_point in ["proc", "dev"] {
        match std::fs::metadata(root.join(mount_point)) {
            Ok(meta) if meta.is_dir() => {}
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => return Err(format!("{err}{}", unreadable(&err))),
            _ => return Err(format!("it has no {mount_point}/ directory to mount on: mkdir {}/{mount_point}", root.display())),
        }
    }
    Ok(root)
}

/// The fix for a rootfs this user may not look into.
fn unreadable(err: &std::io::Error) -> &'static str {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        "; whoever runs the container must be able to reach it: chmod o+rx the rootfs and o+x every directory above it"
    } else {
        ""
    }
}

/// In the child, with mounts private: makes `root` the container's "/".
pub fn enter(root: &Path) -> Result<()> {
    bind_onto_itself(root)?;
    // Before the old root goes: in a user namespace the kernel mounts a new
    // proc only while a fully visible one is still in the mount namespace.
    mounts::mount_proc(&root.join("proc"))?;
    mount_minimal_dev(&root.join("dev"))?;
    mount_sys_read_only(&root.join("sys"))?;
    pivot_into(root)
}

/// A directory is not a mount point; bound onto itself, it is one.
fn bind_onto_itself(root: &Path) -> Result<()> {
    mount(Some(root), root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .with_context(|| format!("bind-mounting {} onto itself", root.display()))
}

/// A small tmpfs on /dev holding only the devices a program expects.
fn mount_minimal_dev(dev: &Path) -> Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), dev, Some("tmpfs"), flags, Some("mode=755,size=64k"))
        .with_context(|| format!("mounting a tmpfs on {}", dev.display()))?;
    for name in DEVICES {
        let target = dev.join(name);
        File::create(&target).with_context(|| format!("creating {}", target.display()))?;
        let source = Path::new("/dev").join(name);
        mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .with_context(|| format!("bind-mounting {} into the container", source.display()))?;
    }
    for dir in ["shm", "mqueue", "pts"] {
        std::fs::create_dir(dev.join(dir)).with_context(|| format!("creating /dev/{dir}"))?;
    }
    for (link, to) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
        symlink(to, dev.join(link)).with_context(|| format!("linking /dev/{link}"))?;
    }
    Ok(())
}

/// sysfs shows the network devices of the mounter's network namespace, so
/// the kernel lets a user namespace mount it only if it owns that network
/// namespace too: from chapter 07 on. Until then /sys stays empty.
fn mount_sys_read_only(sys: &Path) -> Result<()> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(Some("sysfs"), sys, Some("sysfs"), flags, None::<&str>) {
        Ok(()) | Err(Errno::EPERM) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(errno).with_context(|| format!("mounting sysfs on {}", sys.display())),
    }
}

/// Makes `root` the root of this mount namespace and detaches the old one.
fn pivot_into(root: &Path) -> Result<()> {
    nix::unistd::chdir(root).with_context(|| format!("chdir {}", root.display()))?;
    // pivot_root(".", ".") puts the new root at "/" and stacks the old root
    // on top of it; "." then names the old root, which the lazy unmount
    // detaches (pivot_root(2), NOTES). No put_old directory is needed.
    nix::unistd::pivot_root(".", ".").map_err(explain_pivot_error)?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    nix::unistd::chdir("/").context("chdir /")
}

fn explain_pivot_error(errno: Errno) -> anyhow::Error {
    let fix = match errno {
        Errno::EINVAL => "the new root must be a mount point (bind it onto itself) and no mount involved may be shared (make / private first)",
        Errno::EBUSY => "the new root is not a mount point of its own: bind-mount it onto itself first",
        _ => "see pivot_root(2), ERRORS",
    };
    anyhow::anyhow!("pivot_root: {} — {fix}", errno.desc())
}
