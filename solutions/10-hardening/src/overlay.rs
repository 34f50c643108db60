//! The container's files: the ROOTFS it was given, never written, under a
//! writable layer of its own (overlayfs), plus the host directories asked
//! for with -v.
//!
//! overlayfs (see the kernel's Documentation/filesystems/overlayfs.rst)
//! shows a read-only "lower" directory with a writable "upper" one on top:
//! a write copies the file up first, a delete leaves a "whiteout" in upper
//! (a 0:0 character device) that hides the lower file. ROOTFS stays byte
//! for byte the same, and many containers can share it. This is what
//! docker's image layers are, with one lower layer instead of many.
//!
//! Both mounts are made inside the container's mount namespace, so they
//! vanish with it: there is nothing to unmount afterwards, even if the
//! runtime is killed.

use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

/// The container's root: ROOTFS below, the container's own layer on top.
pub struct Layer {
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    /// Where the union appears: the root the container pivots into.
    pub merged: PathBuf,
}

impl Layer {
    /// The layer of the container whose state is in `state_dir`.
    pub fn new(rootfs: &Path, state_dir: &Path) -> Layer {
        Layer {
            lower: rootfs.to_path_buf(),
            upper: state_dir.join("upper"),
            work: state_dir.join("work"),
            merged: state_dir.join("rootfs"),
        }
    }

    /// In the parent, before the child exists: the empty directories.
    pub fn prepare(&self) -> Result<()> {
        for dir in [&self.upper, &self.work, &self.merged] {
            fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// In the child, with mounts private: `mount -t overlay overlay -o
    /// lowerdir=ROOTFS,upperdir=..,workdir=.. MERGED`. workdir is overlay's
    /// scratch space for atomic copy-ups; it must be on upper's filesystem.
    pub fn mount(&self) -> Result<()> {
        // STUDENT 09: mount an "overlay" filesystem on self.merged with the options "lowerdir=LOWER,upperdir=UPPER,workdir=WORK,userxattr" (nix::mount::mount, no flags); refuse paths containing ',' or ':' first.
        let paths = [&self.lower, &self.upper, &self.work];
        if let Some(bad) = paths.iter().find(|p| p.to_string_lossy().contains([',', ':'])) {
            bail!("{} has a ',' or ':' in its path, which overlay's options cannot hold: move it", bad.display());
        }
        // userxattr: in a user namespace overlay may not write its trusted.*
        // attributes (opaque directories, redirects); user.* it may.
        let options = format!("lowerdir={},upperdir={},workdir={},userxattr", self.lower.display(), self.upper.display(), self.work.display());
        mount(Some("overlay"), &self.merged, Some("overlay"), MsFlags::empty(), Some(options.as_str())).map_err(|errno| {
            let why = match errno {
                Errno::EPERM => " — overlayfs in a user namespace needs Linux 5.11 or later",
                Errno::EINVAL => " — is the state directory on an overlay itself (e.g. inside a container)? Its upper and work directories cannot be",
                _ => "",
            };
            anyhow::anyhow!("mounting the overlay on {}: {}{why}", self.merged.display(), errno.desc())
        })
        // STUDENT END
    }
}

/// `-v HOST:CONTAINER[:ro]`: a host directory or file bind-mounted in.
#[derive(Clone, Debug)]
pub struct Volume {
    pub source: PathBuf,
    /// Absolute, inside the container.
    pub target: PathBuf,
    pub read_only: bool,
}

/// clap's check of -v: HOST must exist; CONTAINER must be absolute.
pub fn parse_volume(text: &str) -> Result<Volume, String> {
    let mut parts = text.split(':');
    let (Some(host), Some(target), mode, None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("write it as HOST:CONTAINER or HOST:CONTAINER:ro".into());
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => return Err(format!("{other:?} is not a mode: use ro or rw")),
    };
    if host.is_empty() || target.is_empty() {
        return Err("write it as HOST:CONTAINER or HOST:CONTAINER:ro".into());
    }
    let source = Path::new(host).canonicalize().map_err(|err| format!("the host path {host:?}: {err}"))?;
    let target = PathBuf::from(target);
    let plain = target.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !target.is_absolute() || !plain || target == Path::new("/") {
        return Err(format!("the container path {:?} must be absolute, not /, without . or ..", target.display()));
    }
    Ok(Volume { source, target, read_only })
}

/// In the child, after the overlay is mounted on `root`: bind-mounts each
/// volume at its place under `root` (made in the container's own layer).
pub fn mount_volumes(root: &Path, volumes: &[Volume]) -> Result<()> {
    for volume in volumes {
        let target = root.join(volume.target.strip_prefix("/").unwrap_or(&volume.target));
        make_mount_point(&volume.source, &target)?;
        mount(Some(&volume.source), &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .with_context(|| format!("bind-mounting {} on {}", volume.source.display(), volume.target.display()))?;
        if volume.read_only {
            remount_read_only(&volume.source, &target).with_context(|| format!("making {} read-only", volume.target.display()))?;
        }
    }
    Ok(())
}

/// A bind mount needs a directory for a directory, a file for a file.
fn make_mount_point(source: &Path, target: &Path) -> Result<()> {
    if source.is_dir() {
        return fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()));
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if !target.exists() {
        fs::File::create(target).with_context(|| format!("creating {}", target.display()))?;
    }
    Ok(())
}

/// A bind mount takes its source's flags; MS_RDONLY needs a remount, and in
/// a user namespace that remount must keep the flags it inherited
/// (nosuid, nodev, noexec and the atime ones are locked), or the kernel says EPERM.
pub fn remount_read_only(source: &Path, target: &Path) -> Result<()> {
    let inherited = statvfs(source).map(|s| s.flags()).unwrap_or(FsFlags::empty());
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let pairs = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    for (has, keep) in pairs {
        if inherited.contains(has) {
            flags |= keep;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)?;
    Ok(())
}
