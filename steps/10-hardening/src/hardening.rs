//! Layer 10: hardening. The namespaces give the container its own view of
//! the system, but its root still holds capabilities, may make every system
//! call and can read every kernel file it sees. Just before exec() the child
//! gives up what a container has no use for:
//!
//! - capabilities (capabilities(7)): docker's default 14 stay, the rest go
//!   from every set, the bounding set included, so no exec() brings them back;
//! - no_new_privs (prctl(2), PR_SET_NO_NEW_PRIVS): exec() of a setuid binary
//!   or one with file capabilities grants nothing more;
//! - a seccomp filter (seccomp(2)): system calls that manage the kernel
//!   rather than use it fail with EPERM;
//! - masked and read-only kernel files in /proc and /sys, the OCI
//!   runtime-spec's defaults;
//! - file descriptors the runtime was given are closed at exec().
//!
//! `--privileged` turns all of it off and, as root, the user namespace too:
//! root inside is then root on the host, as in docker.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};

/// Docker's default set (moby's oci/caps/defaults.go). What each allows,
/// and why a container keeps it, is in the chapter.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// What the container may do: docker's defaults, relaxed by --privileged,
/// --cap-add/--cap-drop and --security-opt seccomp=unconfined.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Kept in the bounding, effective and permitted sets.
    pub capabilities: CapsHashSet,
    pub seccomp: bool,
    /// no_new_privs and the masked kernel files.
    pub locked_down: bool,
    /// False only for --privileged as root: no user namespace.
    pub user_namespace: bool,
}

/// A --cap-add or --cap-drop argument.
#[derive(Clone, Debug)]
pub enum CapabilityName {
    All,
    One(Capability),
}

/// clap's check of --cap-add/--cap-drop: NET_ADMIN, cap_net_admin or ALL.
pub fn parse_capability(name: &str) -> Result<CapabilityName, String> {
    if name.eq_ignore_ascii_case("ALL") {
        return Ok(CapabilityName::All);
    }
    let canonical = caps::to_canonical(name);
    canonical.parse().map(CapabilityName::One).map_err(|_| format!("unknown capability {canonical}: see capabilities(7) for the names, e.g. NET_ADMIN, SYS_TIME, or ALL"))
}

/// A --security-opt argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityOpt {
    SeccompUnconfined,
}

/// clap's check of --security-opt: mini-docker knows one, as docker names it.
pub fn parse_security_opt(option: &str) -> Result<SecurityOpt, String> {
    match option {
        "seccomp=unconfined" | "seccomp:unconfined" => Ok(SecurityOpt::SeccompUnconfined),
        _ => Err(format!("unsupported security option {option:?}: mini-docker knows seccomp=unconfined")),
    }
}

impl Profile {
    pub fn new(privileged: bool, add: &[CapabilityName], drop: &[CapabilityName], unconfined: bool) -> Profile {
        if privileged {
            let as_root = nix::unistd::geteuid().is_root();
            return Profile { capabilities: caps::all(), seccomp: false, locked_down: false, user_namespace: !as_root };
        }
        let mut capabilities: CapsHashSet = DEFAULT_CAPABILITIES.into_iter().collect();
        for name in drop {
            match name {
                CapabilityName::All => capabilities.clear(),
                CapabilityName::One(cap) => _ = capabilities.remove(cap),
            }
        }
        // Added after dropping, as docker does: --cap-drop ALL --cap-add X keeps X.
        for name in add {
            match name {
                CapabilityName::All => capabilities.extend(caps::all()),
                CapabilityName::One(cap) => _ = capabilities.insert(*cap),
            }
        }
        Profile { capabilities, seccomp: !unconfined, locked_down: true, user_namespace: true }
    }

    /// The profile a running process lives under, from /proc/PID/status:
    /// `exec` gives the new process what the container's PID 1 has.
    pub fn of_process(pid: i32) -> Result<Profile> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default().to_string();
        let bounding = u64::from_str_radix(&field("CapBnd:"), 16).with_context(|| format!("reading CapBnd in {path}"))?;
        let capabilities = caps::all().into_iter().filter(|cap| bounding & cap.bitmask() != 0).collect();
        Ok(Profile { capabilities, seccomp: field("Seccomp:") == "2", locked_down: field("NoNewPrivs:") == "1", user_namespace: true })
    }
}

/// In the child, after pivot_root: hides the kernel files a container must
/// not read and makes read-only those it must not write.
pub fn mask_kernel_files() -> Result<()> {
    todo!("for each path in MASKED_PATHS call mask; for each in READ_ONLY_PATHS call make_read_only.")
}

/// Readable kernel state that leaks the host's secrets or memory
/// (/proc/kcore is the host's RAM; /proc/keys its keyrings).
const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Kernel settings that are the whole host's (a write to
/// /proc/sys/kernel/core_pattern makes the host run a program as root).
const READ_ONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// A file disappears under /dev/null, a directory under an empty
/// read-only tmpfs. Paths this kernel does not have are skipped.
fn mask(path: &Path) -> Result<()> {
    todo!("bind-mount /dev/null over a file; mount a read-only tmpfs over a directory; ignore a path that does not exist.")
}

/// A bind mount onto itself, then remounted read-only.
fn make_read_only(path: &Path) -> Result<()> {
    todo!("bind-mount path onto itself (MS_BIND | MS_REC), then crate::overlay::remount_read_only(path, path); ignore a path that does not exist.")
}

/// A profile made ready to apply: its seccomp filters compiled to BPF.
pub struct Prepared {
    profile: Profile,
    filters: Vec<BpfProgram>,
}

impl Profile {
    /// Does ahead what needs no privilege: the child compiles its filters
    /// while it waits at the gate, as the runtime writes its maps and joins
    /// it to its cgroup. Two CPUs, two things at once.
    pub fn prepare(&self) -> Result<Prepared> {
        let filters = if self.seccomp { compile_seccomp_filters()? } else { Vec::new() };
        Ok(Prepared { profile: self.clone(), filters })
    }
}

/// The last thing before exec(): nothing after this may need a capability
/// or a denied system call.
pub fn apply(prepared: &Prepared) -> Result<()> {
    close_inherited_files()?;
    drop_capabilities(&prepared.profile.capabilities)?;
    if prepared.profile.locked_down {
        nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")?;
    }
    // From here on, every system call of this process and its children
    // goes through the filters.
    for filter in &prepared.filters {
        seccompiler::apply_filter(filter).context("installing a seccomp filter")?;
    }
    Ok(())
}

/// Every descriptor above stderr gets close-on-exec, so a descriptor the
/// runtime inherited (a host directory, a host namespace) does not reach
/// the command: runc's CVE-2024-21626 was one such leak.
fn close_inherited_files() -> Result<()> {
    // SAFETY: close_range only changes flags on this process's descriptors.
    let result = unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    Errno::result(result).map(drop).context("close_range(CLOSE_RANGE_CLOEXEC) (Linux 5.11 or later)")
}

/// Keeps `keep` and nothing else, in every set.
fn drop_capabilities(keep: &CapsHashSet) -> Result<()> {
    todo!("drop from the Bounding set every capability not in keep (this needs CAP_SETPCAP, so do it first); clear Inheritable and Ambient; then set Effective, then Permitted, to what the process has and keep allows.")
}

/// System calls that fail with EPERM, each with what it would let a
/// container do. Docker's default profile denies them too, but ptrace,
/// process_vm_readv/writev and name_to_handle_at, which it allows (ptrace
/// from Linux 4.8, whose seccomp can no longer be bypassed through it):
/// here strace and gdb do not work inside, whatever --cap-add says.
const DENIED: &[(i64, &str)] = &[
    (libc::SYS_mount, "mount filesystems: cover or expose the host's files"),
    (libc::SYS_umount2, "unmount what hides host files"),
    (libc::SYS_pivot_root, "change the root filesystem"),
    (libc::SYS_open_tree, "the new mount API (Linux 5.2): clone a mount"),
    (libc::SYS_move_mount, "the new mount API: attach a mount"),
    (libc::SYS_fsopen, "the new mount API: make a filesystem"),
    (libc::SYS_fsmount, "the new mount API"),
    (libc::SYS_fspick, "the new mount API: reconfigure a mounted filesystem"),
    (libc::SYS_mount_setattr, "the new mount API: change a mount's flags (read-only off)"),
    (libc::SYS_setns, "join another namespace, the host's if a descriptor to it leaks in"),
    (libc::SYS_ptrace, "read and write another process's memory and registers"),
    (libc::SYS_process_vm_readv, "read another process's memory"),
    (libc::SYS_process_vm_writev, "write another process's memory"),
    (libc::SYS_kcmp, "compare kernel objects of two processes (ptrace's family)"),
    (libc::SYS_init_module, "load a kernel module: run code as the kernel"),
    (libc::SYS_finit_module, "load a kernel module from a file"),
    (libc::SYS_delete_module, "unload a kernel module"),
    (libc::SYS_kexec_load, "boot another kernel"),
    (libc::SYS_kexec_file_load, "boot another kernel"),
    (libc::SYS_reboot, "reboot the host (in a PID namespace: end the container)"),
    (libc::SYS_swapon, "give the host a swap device"),
    (libc::SYS_swapoff, "take away the host's swap"),
    (libc::SYS_acct, "turn on the host's process accounting"),
    (libc::SYS_quotactl, "change the host's disk quotas"),
    (libc::SYS_keyctl, "the kernel's keyrings: not namespaced, the host's secrets"),
    (libc::SYS_add_key, "add a key to the kernel's keyrings"),
    (libc::SYS_request_key, "ask the kernel's keyrings for a key"),
    (libc::SYS_bpf, "load eBPF programs into the kernel"),
    (libc::SYS_perf_event_open, "watch the host's processes and the kernel"),
    (libc::SYS_userfaultfd, "stall the kernel on a page fault: a tool of many kernel exploits"),
    (libc::SYS_open_by_handle_at, "open a host file by its handle, past every mount (the 2014 \"shocker\" escape)"),
    (libc::SYS_name_to_handle_at, "get the handles open_by_handle_at takes"),
    (libc::SYS_syslog, "read the kernel's log"),
    (libc::SYS_settimeofday, "set the host's clock (not namespaced)"),
    (libc::SYS_clock_settime, "set the host's clock"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_iopl, "raw I/O port access"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_ioperm, "raw I/O port access"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_uselib, "an obsolete loader call with a history of bugs"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_ustat, "obsolete"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_sysfs, "obsolete"),
];

/// Every filter the container gets, compiled to BPF.
fn compile_seccomp_filters() -> Result<Vec<BpfProgram>> {
    let mut filters = compile_deny_filters()?;
    filters.extend(x32_filter());
    Ok(filters)
}

/// The table of DENIED calls, and clone3.
fn compile_deny_filters() -> Result<Vec<BpfProgram>> {
    todo!("build a seccompiler::SeccompFilter: a rule map from deny_rules(), SeccompAction::Allow when no rule matches, SeccompAction::Errno(EPERM) when one does, and the target architecture (std::env::consts::ARCH); then the same for clone3 alone, with Errno(ENOSYS). Convert each to a BpfProgram (try_into) and return both.")
}

/// Every denied call unconditionally, plus clone(2) and unshare(2) when
/// they ask for a new user namespace (no capability guards that: inside
/// one, a process gets every capability again, over a kernel surface
/// that has had many bugs).
fn deny_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|(call, _)| (*call, vec![])).collect();
    let new_user_namespace = libc::CLONE_NEWUSER as u64;
    for call in [libc::SYS_clone, libc::SYS_unshare] {
        // Argument 0 is the flags for both, on every architecture.
        let condition = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(new_user_namespace), new_user_namespace)?;
        rules.insert(call, vec![SeccompRule::new(vec![condition])?]);
    }
    Ok(rules)
}

/// On x86_64 a second system call table, x32, numbers its calls from
/// 0x40000000 with the same architecture value: a filter on numbers alone
/// would let x32's mount through. This one, written by hand, refuses them
/// all (seccomp(2), "Caveats").
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> Option<BpfProgram> {
    use seccompiler::sock_filter;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let statement = |code: u32, k: u32| sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| sock_filter { code: code as u16, jt, jf, k };
    Some(vec![
        // Load the system call number (struct seccomp_data, offset 0).
        statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // Below the x32 range: jump over the next instruction, to "allow".
        jump(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, X32_SYSCALL_BIT, 0, 1),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ])
}

/// Other architectures have no second table to close.
#[cfg(not(target_arch = "x86_64"))]
fn x32_filter() -> Option<BpfProgram> {
    None
}
