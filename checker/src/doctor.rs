//! `cargo lab doctor`: what this machine offers the workshop, and the fix
//! for what it lacks. The checker also prints its problems when a check
//! fails, since a refused namespace or a missing tool looks like a bug in
//! the student's code.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::steps::workspace_root;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Ok,
    /// Works, but something will bite (a chapter, speed, a caveat).
    Warning,
    /// Some checks cannot pass until it is fixed.
    Problem,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub level: Level,
    pub topic: &'static str,
    pub what: String,
    /// What to do about it (for warnings and problems).
    pub fix: String,
}

fn ok(topic: &'static str, what: impl Into<String>) -> Finding {
    Finding { level: Level::Ok, topic, what: what.into(), fix: String::new() }
}

fn warning(topic: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { level: Level::Warning, topic, what: what.into(), fix: fix.into() }
}

fn problem(topic: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { level: Level::Problem, topic, what: what.into(), fix: fix.into() }
}

/// Everything the doctor looks at, in the order it prints it.
pub fn examine() -> Vec<Finding> {
    [kernel(), namespaces(), privileges(), user_namespaces(), cgroups(), tools(), rootfs(), container(), synced_folder()].concat()
}

/// Prints the findings, each problem and warning with its fix.
pub fn print(findings: &[Finding]) {
    for finding in findings {
        let mark = match finding.level {
            Level::Ok => "✓",
            Level::Warning => "!",
            Level::Problem => "✗",
        };
        println!("  {mark} {:<16} {}", finding.topic, finding.what);
        if !finding.fix.is_empty() {
            println!("  {:18} fix: {}", "", finding.fix);
        }
    }
}

/// Only what is wrong, for the end of a failed check run.
pub fn problems(findings: &[Finding]) -> Vec<Finding> {
    findings.iter().filter(|f| f.level == Level::Problem).cloned().collect()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn kernel() -> Vec<Finding> {
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version < (5, 11) {
        let fix = "use a newer kernel (Ubuntu 22.04+ or Debian 12), e.g. the Vagrantfile's VM";
        return vec![warning("kernel", format!("Linux {release}: older than 5.11, where overlayfs in a user namespace (09) arrived"), fix)];
    }
    vec![ok("kernel", format!("Linux {release}"))]
}

/// One line per namespace the chapters use: /proc/self/ns/<kind> exists
/// when the kernel was built with it.
fn namespaces() -> Vec<Finding> {
    let kinds = [("uts", "01"), ("pid", "02"), ("mnt", "03"), ("ipc", "04"), ("user", "05"), ("net", "07"), ("cgroup", "08")];
    let missing: Vec<String> = kinds.iter().filter(|(k, _)| !Path::new(&format!("/proc/self/ns/{k}")).exists()).map(|(k, s)| format!("{k} (chapter {s})")).collect();
    if missing.is_empty() {
        return vec![ok("namespaces", "uts, pid, mnt, ipc, user, net, cgroup: all available")];
    }
    vec![problem("namespaces", format!("this kernel has no {}", missing.join(", ")), "use a kernel built with CONFIG_NAMESPACES and each *_NS option (any distribution kernel has them)")]
}

fn privileges() -> Vec<Finding> {
    if nix::unistd::geteuid().is_root() {
        return vec![ok("root", "running as root")];
    }
    let sudo = Command::new("sudo").args(["-n", "true"]).stdin(Stdio::null()).stderr(Stdio::null()).status();
    match sudo {
        Ok(status) if status.success() => vec![ok("root", "not root; sudo works without a password (cargo lab check uses it)")],
        Ok(_) => vec![warning("root", "not root; sudo will ask for your password", "cargo lab check re-runs itself with sudo: type your password when asked (or run it as root)")],
        Err(_) => vec![problem("root", "not root, and there is no sudo", "the checks run containers as root: install sudo (apt-get install sudo) or run as root")],
    }
}

/// The three settings that can forbid unprivileged user namespaces, then a
/// real attempt by an unprivileged user.
fn user_namespaces() -> Vec<Finding> {
    let mut findings = Vec::new();
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        findings.push(problem("user namespaces", "disabled: user.max_user_namespaces is 0", "sudo sysctl -w user.max_user_namespaces=15000"));
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        findings.push(problem("user namespaces", "unprivileged users may not create them: kernel.unprivileged_userns_clone is 0", "sudo sysctl -w kernel.unprivileged_userns_clone=1"));
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        let fix = "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (scripts/setup does it), or an AppArmor profile with \"userns,\" for the workshop's binaries";
        findings.push(problem("user namespaces", "AppArmor forbids them to unprivileged programs (Ubuntu 23.10+)", fix));
    }
    match unprivileged_unshare() {
        Some(true) if findings.is_empty() => findings.push(ok("user namespaces", "an unprivileged user can create one (rootless chapters 05, 06, 09)")),
        Some(false) if findings.is_empty() => findings.push(problem("user namespaces", "an unprivileged user cannot create one, for a reason none of the three settings gives", "see user_namespaces(7); inside a container, the container's seccomp profile may forbid unshare")),
        _ => {}
    }
    findings
}

/// `unshare --user true` as uid 65534 (as ourselves when not root); None if
/// the tools to try are missing.
fn unprivileged_unshare() -> Option<bool> {
    let mut command = if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--", "unshare", "--user", "true"]);
        c
    } else {
        let mut c = Command::new("unshare");
        c.args(["--user", "true"]);
        c
    };
    command.stdout(Stdio::null()).stderr(Stdio::null()).status().ok().map(|s| s.success())
}

fn cgroups() -> Vec<Finding> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
    match statfs("/sys/fs/cgroup").map(|s| s.filesystem_type()) {
        Ok(CGROUP2_SUPER_MAGIC) => cgroup_v2(),
        Ok(TMPFS_MAGIC) => cgroup_v1(),
        _ => vec![problem("cgroups", "no cgroup filesystem at /sys/fs/cgroup", "mount cgroup2 there: sudo mount -t cgroup2 none /sys/fs/cgroup")],
    }
}

fn cgroup_v2() -> Vec<Finding> {
    let available = read("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    let enabled = read("/sys/fs/cgroup/cgroup.subtree_control").unwrap_or_default();
    let missing: Vec<&str> = ["memory", "pids", "cpu"].into_iter().filter(|c| !available.split_whitespace().any(|a| a == *c)).collect();
    let what = format!("cgroup v2; controllers offered: {available:?}; enabled for children: {enabled:?}");
    if !missing.is_empty() {
        return vec![problem("cgroups", format!("{what}; missing {missing:?}"), "chapter 08 needs memory, pids and cpu: inside a container, give it a cgroup namespace with them delegated, or use the VM")];
    }
    vec![ok("cgroups", what), delegation()]
}

/// Whether this (unprivileged) user owns a cgroup of its own, as systemd
/// gives a user session: then its processes could be limited without root.
fn delegation() -> Finding {
    use std::os::unix::fs::MetadataExt;
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return ok("delegation", "root: every cgroup is writable");
    }
    let own = read("/proc/self/cgroup").and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::").map(String::from))).unwrap_or_default();
    let dir = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
    let owner = std::fs::metadata(&dir).map(|m| m.uid()).ok();
    if owner == Some(euid.as_raw()) {
        let controllers = read(&dir.join("cgroup.controllers").display().to_string()).unwrap_or_default();
        return ok("delegation", format!("{} is yours, with controllers {controllers:?} (mini-docker still asks root for limits)", dir.display()));
    }
    ok("delegation", format!("nothing delegated to uid {euid} ({} is not yours): limits need root, as the checks run them", dir.display()))
}

fn cgroup_v1() -> Vec<Finding> {
    let hybrid = Path::new("/sys/fs/cgroup/unified").is_dir();
    let missing: Vec<&str> = ["memory", "pids", "cpu"].into_iter().filter(|c| !Path::new("/sys/fs/cgroup").join(c).is_dir()).collect();
    let what = if hybrid { "cgroup v1 (hybrid: an empty v2 tree at unified/)" } else { "cgroup v1" };
    if !missing.is_empty() {
        return vec![problem("cgroups", format!("{what}; no hierarchy for {missing:?}"), "mount the missing v1 controllers, or boot with systemd.unified_cgroup_hierarchy=1 for v2")];
    }
    vec![ok("cgroups", format!("{what}; memory, pids and cpu hierarchies mounted (chapter 08 writes v1's files here)"))]
}

/// The programs the chapters and the checks call, with their package.
fn tools() -> Vec<Finding> {
    let wanted = [
        ("ip", "iproute2"),
        ("busybox", "busybox-static"),
        ("nft", "nftables"),
        ("setpriv", "util-linux"),
        ("unshare", "util-linux"),
        ("script", "bsdutils"),
        ("strace", "strace"),
        ("ping", "iputils-ping"),
    ];
    let missing: Vec<(&str, &str)> = wanted.into_iter().filter(|(tool, _)| !on_path(tool)).collect();
    if missing.is_empty() {
        return vec![ok("tools", "ip, busybox, nft, setpriv, unshare, script, strace, ping")];
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    let names: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
    vec![problem("tools", format!("not found: {}", names.join(", ")), format!("sudo apt-get install {} (scripts/setup installs them all)", packages.join(" ")))]
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

fn rootfs() -> Vec<Finding> {
    let script = workspace_root().join("scripts/build-rootfs");
    let out = Command::new(&script).arg("--check").stdin(Stdio::null()).output();
    let said = out.as_ref().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    match out {
        Ok(o) if o.status.success() => vec![ok("rootfs", said)],
        Ok(_) if said.starts_with("rootfs is") => vec![problem("rootfs", said, "sudo scripts/build-rootfs (chapters 06 to 09 run in it)")],
        Ok(o) => vec![problem("rootfs", format!("scripts/build-rootfs --check: {}", String::from_utf8_lossy(&o.stderr).trim()), "sudo scripts/setup")],
        Err(err) => vec![problem("rootfs", format!("cannot run {}: {err}", script.display()), "run cargo lab from a clone of the repository")],
    }
}

/// Already inside a container or WSL: what that breaks.
fn container() -> Vec<Finding> {
    let version = read("/proc/version").unwrap_or_default().to_lowercase();
    if version.contains("microsoft") {
        let fix = "WSL 2 works for chapters 01-07 if its kernel has the namespaces; cgroups (08) depend on the distribution's systemd setup: prefer the Vagrant VM";
        return vec![warning("container", "running under WSL (Windows Subsystem for Linux)", fix)];
    }
    let cgroup = read("/proc/1/cgroup").unwrap_or_default();
    let files = ["/.dockerenv", "/run/.containerenv"].into_iter().find(|f| Path::new(f).exists()).map(String::from);
    let marker = files.or_else(|| ["docker", "kubepods", "lxc"].into_iter().find(|m| cgroup.contains(m)).map(|m| format!("\"{m}\" in /proc/1/cgroup")));
    if let Some(marker) = marker {
        let fix = "run the workshop in a VM (vagrant up); a container needs --privileged, a cgroup namespace with controllers delegated, and no seccomp filter on unshare/mount";
        return vec![warning("container", format!("inside a container, it seems ({marker}): nested namespaces, mounts and cgroups may be refused"), fix)];
    }
    vec![ok("container", "not inside a container or WSL")]
}

/// The repository on a shared folder (VirtualBox, 9p, virtiofs, NFS, SMB).
fn synced_folder() -> Vec<Finding> {
    let Ok(stat) = nix::sys::statfs::statfs(workspace_root()) else { return Vec::new() };
    let magic = stat.filesystem_type().0 as u64;
    let shared = match magic {
        0x786f_4256 => "VirtualBox shared folder (vboxsf)",
        0x0102_1997 => "9p shared folder",
        0x6573_5546 => "FUSE (virtiofs or sshfs)",
        0x6969 => "NFS",
        0xfe53_4d42 | 0x517b | 0xff53_4d42 => "SMB/CIFS",
        _ => return vec![ok("synced folder", "the repository is on a local filesystem")],
    };
    let target = crate::steps::release_dir();
    let target_shared = nix::sys::statfs::statfs(&target).is_ok_and(|s| s.filesystem_type().0 as u64 == magic);
    let fix = if target_shared {
        "build on the VM's own disk: the Vagrantfile bind-mounts ~/.ctlab-target over target/ (vagrant reload), or export CARGO_TARGET_DIR=~/ctlab-target; edits from the host may reach file watchers late: rebuild by hand"
    } else {
        "edits made on the host may reach file watchers (cargo watch, rust-analyzer) in the VM late or not at all: rebuild by hand"
    };
    vec![warning("synced folder", format!("the repository is on a {shared}"), fix)]
}
