//! Layer 06: the container's own root filesystem, with nothing of the host
//! left to reach, and a bad rootfs refused without a trace.

use std::path::PathBuf;

use super::{every_step, expect, fail, Check, Kind, Outcome};
use crate::run::Target;
use crate::steps::workspace_root;

pub fn checks() -> Vec<Check> {
    let check = |name, kind, proves, run| Check { name, layer: 6, kind, proves, applies: every_step, rootless: true, run };
    vec![
        check("own-root-filesystem", Kind::Isolation, "/etc/hostname and /etc/os-release inside are the rootfs's", own_root_filesystem),
        check("host-file-unreachable", Kind::Isolation, "a file the host made in /tmp cannot be read inside", host_file_unreachable),
        check("old-root-detached", Kind::Isolation, "/proc/self/mountinfo inside lists only the container's mounts", old_root_detached),
        check("minimal-dev", Kind::Isolation, "/dev holds null, zero, full, random, urandom, tty, and no host disk", minimal_dev),
        check("sys-read-only", Kind::Isolation, "/sys is read-only, or not mounted at all", sys_read_only),
        check("bad-rootfs-refused", Kind::Contract, "a missing, non-directory or incomplete rootfs gives 125 and changes no host mount", bad_rootfs_refused),
    ]
}

fn rootfs() -> PathBuf {
    workspace_root().join("rootfs")
}

fn own_root_filesystem(t: &Target) -> Outcome {
    let want = std::fs::read_to_string(rootfs().join("etc/hostname")).unwrap_or_default();
    let out = t.run(&["cat", "/etc/hostname", "/etc/os-release"]);
    let ok = out.status == Some(0) && out.stdout.starts_with(&want) && out.stdout.contains("ctlab busybox rootfs");
    let hint = "bind-mount the rootfs onto itself, chdir into it, pivot_root(\".\", \".\"), then detach the old root";
    expect(ok, &out, format!("the rootfs's /etc/hostname ({:?}) and its os-release", want.trim()), hint)
}

fn host_file_unreachable(t: &Target) -> Outcome {
    let secret = format!("/tmp/ctlab-check-secret-{}", std::process::id());
    if let Err(err) = std::fs::write(&secret, "host secret\n") {
        return fail(&format!("echo > {secret}"), "a file on the host", err.to_string(), "");
    }
    let out = t.run(&["cat", &secret]);
    let _ = std::fs::remove_file(&secret);
    let ok = out.status == Some(1) && out.stderr.contains("No such file") && !out.stdout.contains("host secret");
    expect(ok, &out, "cat's own error, exit 1: no such file in the container's /tmp", "after pivot_root, umount2(\".\", MNT_DETACH) the old root")
}

fn old_root_detached(t: &Target) -> Outcome {
    let out = t.run(&["cat", "/proc/self/mountinfo"]);
    let mounts: Vec<(&str, &str, &str)> = out.stdout.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let fs_type = l.split_once(" - ")?.1.split_whitespace().next()?;
        Some((*f.get(3)?, *f.get(4)?, fs_type))
    }).collect();
    let container_only = |point: &str| point == "/" || ["/proc", "/dev", "/sys"].iter().any(|p| point == *p || point.starts_with(&format!("{p}/")));
    // A kept old root is stacked on "/" as a second mount there.
    let roots: Vec<(&str, &str)> = mounts.iter().filter(|(_, point, _)| *point == "/").map(|(root, _, fs)| (*root, *fs)).collect();
    // The rootfs bind-mounted (its root is a directory of the host's), or
    // in mini-docker an overlay (a filesystem of its own, rooted at "/").
    let root_is_rootfs = matches!(roots[..], [(root, fs)] if root != "/" || (t.is_engine() && fs == "overlay"));
    let foreign: Vec<String> = mounts.iter().map(|(_, point, _)| point.to_string()).filter(|p| !container_only(p)).collect();
    let ok = out.status == Some(0) && root_is_rootfs && foreign.is_empty();
    let mut out = out;
    if !foreign.is_empty() {
        out.stdout = format!("…mounts from outside: {foreign:?}");
    }
    expect(ok, &out, "one mount on /, the rootfs, and only /proc, /dev and /sys below it", "umount2(\".\", MNT_DETACH) right after pivot_root(\".\", \".\")")
}

fn minimal_dev(t: &Target) -> Outcome {
    let script = "ls /dev; echo x > /dev/null && head -c 5 /dev/zero | wc -c && head -c 5 /dev/urandom | wc -c";
    let out = t.run(&["sh", "-c", script]);
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let allowed = ["null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr", "shm", "mqueue", "pts", "ptmx", "console", "5"];
    let has_all = ["null", "zero", "full", "random", "urandom", "tty"].iter().all(|d| words.contains(d));
    let ok = out.status == Some(0) && has_all && words.iter().all(|w| allowed.contains(w)) && words.ends_with(&["5", "5"]);
    let hint = "mount a tmpfs on /dev, create an empty file per device and bind-mount the host's device onto it (mknod is not allowed in a user namespace)";
    expect(ok, &out, "the six devices (and links, shm, mqueue, pts), working", hint)
}

fn sys_read_only(t: &Target) -> Outcome {
    let out = t.run(&["cat", "/proc/self/mountinfo"]);
    let writable: Vec<&str> = out.stdout.lines().filter(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(4) == Some(&"/sys") && f.get(5).is_some_and(|opts| opts.split(',').any(|o| o == "rw"))
    }).collect();
    let ok = out.status == Some(0) && writable.is_empty();
    expect(ok, &out, "no read-write /sys mount", "mount sysfs with MS_RDONLY (when the kernel permits it at all)")
}

fn bad_rootfs_refused(t: &Target) -> Outcome {
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let scratch = PathBuf::from(format!("/tmp/ctlab-check-rootfs-{}", std::process::id()));
    let _ = std::fs::create_dir_all(scratch.join("dev"));
    let incomplete = scratch.display().to_string();
    for rootfs in ["/ctlab-no-such-dir", "/etc/passwd", &incomplete] {
        let args = ["--rootfs", rootfs, "true"];
        let out = t.run(&args);
        let ok = out.status == Some(125) && super::contract::one_line(&out.stderr);
        let hint = "check --rootfs before cloning (clap's value_parser): exists, is a directory, has proc/ and dev/";
        if let Err(failure) = expect(ok, &out, "exit 125 and one line naming the problem", hint) {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(failure);
        }
    }
    let _ = std::fs::create_dir(scratch.join("proc"));
    let out = t.run(&["--rootfs", &incomplete, "sh", "-c", "true"]);
    let _ = std::fs::remove_dir_all(&scratch);
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let ok = out.status == Some(127) && before == after;
    let ran = format!("{} --rootfs {incomplete} sh -c true (a rootfs with no /bin/sh)", t.program());
    let out = crate::run::Output { ran, ..out };
    expect(ok, &out, "exit 127 (no sh in that rootfs), and the host's mounts unchanged", "every mount is made inside the container's own mount namespace")?;
    Ok(())
}
