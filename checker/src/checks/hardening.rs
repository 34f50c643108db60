//! Layer 10, hardening: what root inside may no longer do (capabilities,
//! no_new_privs, seccomp, masked kernel files, inherited descriptors), the
//! options that relax it, and the escape suite.
//!
//! Each escape is run twice, with the same static program (checker/escapes):
//! in the hardened container, where it must be BLOCKED, and in a
//! deliberately unhardened control, where it must ESCAPE. A control that
//! does not escape means the attempt proves nothing, and the check fails.
//! The control removes the defense that matters: mini-docker's own
//! `--privileged`, `--security-opt seccomp=unconfined` or no limit, or,
//! where a namespace or pivot_root is the defense, a bare chroot(8).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{expect, fail, Check, Failure, Kind, Outcome};
use crate::run::{host, Output, Running, Target, TIMEOUT};
use crate::steps::{release_dir, workspace_root};

pub fn checks() -> Vec<Check> {
    let check = |name, kind, proves, rootless, run| Check { name, layer: 10, kind, proves, applies: |_| true, rootless, run };
    use Kind::{Contract, Escape, Isolation};
    vec![
        check("capabilities-dropped", Isolation, "only docker's 14 default capabilities are left, in every set; inheritable and ambient are empty", true, capabilities_dropped),
        check("seccomp-and-no-new-privs", Isolation, "a seccomp filter is on (Seccomp: 2) and exec() can gain no privileges (NoNewPrivs: 1)", true, seccomp_and_no_new_privs),
        check("kernel-files-masked", Isolation, "/proc/kcore, /proc/keys, /proc/timer_list and /sys/firmware are empty; /proc/sys is read-only", true, kernel_files_masked),
        check("inherited-fds-closed", Isolation, "a descriptor the runtime inherits does not reach the command", true, inherited_fds_closed),
        check("exec-is-hardened", Isolation, "exec gives the new process the container's capabilities, filter and no_new_privs", false, exec_is_hardened),
        check("relaxing-options", Contract, "--cap-add, --cap-drop, --security-opt seccomp=unconfined and --privileged do what docker's do", false, relaxing_options),
        check("threads-still-start", Contract, "a glibc program starts a thread: clone3 gets ENOSYS, so glibc falls back to clone", false, threads_still_start),
        check("bad-security-options", Contract, "an unknown capability or security option: exit 125, one line, nothing left", false, bad_security_options),
        check("escape-chroot-breakout", Escape, "mkdir x; chroot x; cd ../../..; chroot . does not reach the host's files", false, escape_chroot_breakout),
        check("escape-proc-1-root", Escape, "/proc/1/root does not lead to the host's root", false, escape_proc_1_root),
        check("escape-mount-host-disk", Escape, "the host's disk cannot be mknod'ed and mounted", false, escape_mount_host_disk),
        check("escape-write-sysctl", Escape, "/proc/sys/kernel/hostname cannot be written", false, escape_write_sysctl),
        check("escape-setns-leaked-fd", Escape, "a host network namespace descriptor given to the runtime cannot be joined", false, escape_setns_leaked_fd),
        check("escape-cgroup-root", Escape, "the container cannot move itself to the root cgroup, out of its limits", false, escape_cgroup_root),
        check("escape-load-module", Escape, "no kernel module can be loaded", false, escape_load_module),
        check("escape-raw-socket", Escape, "with --cap-drop NET_RAW, no raw socket to sniff with", false, escape_raw_socket),
        check("escape-ptrace-host", Escape, "a host process cannot be ptrace()d", false, escape_ptrace_host),
        check("escape-fork-bomb", Escape, "a fork bomb stops at --pids-limit", false, escape_fork_bomb),
        check("escape-memory-hog", Escape, "a memory hog is OOM-killed at -m", false, escape_memory_hog),
        check("escape-host-time", Escape, "the host's clock cannot be changed", false, escape_host_time),
        check("escape-new-userns", Escape, "no new user namespace (and its fresh capabilities) can be made", false, escape_new_userns),
    ]
}

/// Docker's default set as /proc/PID/status shows it: CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
/// SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPABILITIES: u64 = 0xa804_25fb;

/// Why an escape check is not run on this machine, if it is not.
pub fn not_tried_here(check: &Check) -> Option<&'static str> {
    match check.name {
        "escape-load-module" if !Path::new("/proc/modules").exists() => {
            Some("this kernel cannot load modules at all (no /proc/modules: built without CONFIG_MODULES), so there is nothing to escape to")
        }
        _ => None,
    }
}

fn rootfs() -> String {
    workspace_root().join("rootfs").display().to_string()
}

/// A field of /proc/self/status as printed by `grep` inside.
fn status_field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string())
}

fn hex(value: Option<String>) -> Option<u64> {
    value.and_then(|v| u64::from_str_radix(&v, 16).ok())
}

/// The capability sets of `status`, or what is wrong with them.
fn default_capabilities_only(status: &str) -> Result<(), String> {
    let expected = [("CapBnd:", DEFAULT_CAPABILITIES), ("CapPrm:", DEFAULT_CAPABILITIES), ("CapEff:", DEFAULT_CAPABILITIES), ("CapInh:", 0), ("CapAmb:", 0)];
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(field, want)| hex(status_field(status, field)) != Some(*want))
        .map(|(field, want)| format!("{field} {} (want {want:016x})", status_field(status, field).unwrap_or_default()))
        .collect();
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join(", ")) }
}

const CAPABILITY_HINT: &str = "drop from the bounding set every capability but docker's 14 (caps::drop(None, CapSet::Bounding, cap)), clear inheritable and ambient, then set effective and permitted; last thing before exec";

fn capabilities_dropped(t: &Target) -> Outcome {
    let out = t.run(&["cat", "/proc/self/status"]);
    match default_capabilities_only(&out.stdout) {
        Ok(()) if out.status == Some(0) => Ok(()),
        Ok(()) => expect(false, &out, "exit 0", CAPABILITY_HINT),
        Err(wrong) => fail(&out.ran, &format!("CapBnd, CapPrm and CapEff {DEFAULT_CAPABILITIES:016x}, CapInh and CapAmb 0"), wrong, CAPABILITY_HINT),
    }
}

fn seccomp_and_no_new_privs(t: &Target) -> Outcome {
    let out = t.run(&["cat", "/proc/self/status"]);
    let seccomp = status_field(&out.stdout, "Seccomp:");
    let no_new_privs = status_field(&out.stdout, "NoNewPrivs:");
    let ok = out.status == Some(0) && seccomp.as_deref() == Some("2") && no_new_privs.as_deref() == Some("1");
    let saw = format!("Seccomp: {seccomp:?}, NoNewPrivs: {no_new_privs:?} ({})", out.summary());
    if ok { Ok(()) } else { fail(&out.ran, "Seccomp: 2 and NoNewPrivs: 1", saw, "prctl(PR_SET_NO_NEW_PRIVS) first (a filter needs it without CAP_SYS_ADMIN), then seccompiler::apply_filter, just before exec") }
}

fn kernel_files_masked(t: &Target) -> Outcome {
    // Each masked file that this kernel has must read as empty; the write
    // must fail (it would rename only the container, but it is the same
    // door as kernel.core_pattern, which would not).
    // /proc/sys must also keep proc's nosuid, nodev and noexec.
    let script = "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
                    [ -e $f ] && echo \"$f $(head -c 64 $f | wc -c)\"; done; \
                  echo \"/sys/firmware $(ls -A /sys/firmware 2>/dev/null | wc -l)\"; \
                  if (echo ctlab > /proc/sys/kernel/hostname) 2>/dev/null; then echo 'sysctl written'; else echo 'sysctl refused'; fi; \
                  grep ' /proc/sys ' /proc/self/mountinfo | cut -d' ' -f6";
    let out = t.run(&["sh", "-c", script]);
    let leaks: Vec<&str> = out.stdout.lines().filter(|l| l.split_whitespace().nth(1).is_some_and(|n| n != "0" && n != "refused")).collect();
    let options = out.stdout.lines().last().unwrap_or_default().split(',').collect::<Vec<_>>();
    let flags_kept = ["ro", "nosuid", "nodev", "noexec"].iter().all(|f| options.contains(f));
    let ok = out.status == Some(0) && out.stdout.contains("sysctl refused") && leaks.is_empty() && flags_kept;
    expect(ok, &out, "every masked file empty (\"PATH 0\"), \"sysctl refused\", and /proc/sys mounted ro,nosuid,nodev,noexec", "after pivot_root: bind /dev/null over each masked file, a read-only tmpfs over each masked directory, and bind /proc/sys onto itself, then remount it read-only keeping proc's nosuid, nodev and noexec")
}

fn inherited_fds_closed(t: &Target) -> Outcome {
    let held = match open_inheritable("/") {
        Ok(fd) => fd,
        Err(failure) => return Err(failure),
    };
    let out = run_holding(t, &held, &["sh", "-c", "if [ -e /proc/self/fd/9 ]; then echo 'fd 9 is open'; else echo 'fd 9 is closed'; fi"]);
    expect(out.stdout_trimmed() == "fd 9 is closed", &out, "fd 9 is closed", "mark every descriptor above 2 close-on-exec before exec: close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC)")
}

/// Opens `path` for a child to inherit as descriptor 9.
fn open_inheritable(path: &str) -> Result<OwnedFd, Failure> {
    std::fs::File::open(path).map(OwnedFd::from).map_err(|err| Failure::new(&format!("open {path}"), "it opens", err.to_string(), "the checker's own problem"))
}

/// Runs `args` with this runtime, which inherits `held` as descriptor 9,
/// as if its caller had leaked it.
fn run_holding(t: &Target, held: &OwnedFd, args: &[&str]) -> Output {
    let ran = format!("{} 9</proc/... (a descriptor handed down)", t.describe(args, t.who));
    let command = t.command(args, t.who).map(|c| hand_down(c, held));
    match command.and_then(|c| Running::start(c, ran.clone(), b"")) {
        Ok(running) => running.finish(TIMEOUT),
        Err(err) => Output::failed_to_start(ran, err),
    }
}

/// Makes `held` descriptor 9 of the command (dup2 clears close-on-exec).
fn hand_down(mut command: Command, held: &OwnedFd) -> Command {
    let raw = held.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        command.pre_exec(move || if libc::dup2(raw, 9) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    command
}

fn exec_is_hardened(t: &Target) -> Outcome {
    let engine = t.raw();
    let name = format!("ctlab-hardexec-{}", std::process::id());
    let root = rootfs();
    let started = engine.run(&["run", "-d", "--name", &name, "--network", "none", &root, "sleep", "1021"]);
    if started.status != Some(0) {
        return expect(false, &started, "exit 0", "run -d must work before exec can be checked");
    }
    let out = engine.run(&["exec", &name, "cat", "/proc/self/status"]);
    let _ = engine.run(&["rm", "-f", &name]);
    let caps = default_capabilities_only(&out.stdout);
    let confined = status_field(&out.stdout, "Seccomp:").as_deref() == Some("2") && status_field(&out.stdout, "NoNewPrivs:").as_deref() == Some("1");
    let ok = out.status == Some(0) && caps.is_ok() && confined;
    let saw = format!("{} {}", caps.err().unwrap_or_default(), out.summary());
    if ok { Ok(()) } else { fail(&out.ran, "the default capabilities, Seccomp: 2, NoNewPrivs: 1", saw, "exec's child, after setns, applies the container's profile (read PID 1's from /proc/PID/status) before exec()") }
}

fn relaxing_options(t: &Target) -> Outcome {
    let engine = t.raw();
    let root = rootfs();
    let status = |options: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(options);
        args.extend([root.as_str(), "cat", "/proc/self/status", "/proc/self/uid_map"]);
        engine.run(&args)
    };
    let sys_time: u64 = 1 << 25;
    let net_raw: u64 = 1 << 13;
    let added = status(&["--cap-add", "SYS_TIME", "--cap-drop", "net_raw"]);
    let eff = hex(status_field(&added.stdout, "CapEff:"));
    expect(eff == Some((DEFAULT_CAPABILITIES | sys_time) & !net_raw), &added, format!("CapEff: {:016x}", (DEFAULT_CAPABILITIES | sys_time) & !net_raw), "--cap-add adds to docker's set, --cap-drop removes (names with or without CAP_, any case)")?;
    let dropped = status(&["--cap-drop", "ALL"]);
    expect(hex(status_field(&dropped.stdout, "CapEff:")) == Some(0), &dropped, "CapEff: 0000000000000000", "--cap-drop ALL leaves none")?;
    let unconfined = status(&["--security-opt", "seccomp=unconfined"]);
    let ok = status_field(&unconfined.stdout, "Seccomp:").as_deref() == Some("0")
        && status_field(&unconfined.stdout, "NoNewPrivs:").as_deref() == Some("1")
        && default_capabilities_only(&unconfined.stdout).is_ok();
    expect(ok, &unconfined, "Seccomp: 0, NoNewPrivs: 1, capabilities still docker's", "--security-opt seccomp=unconfined turns off the filter only")?;
    let privileged = status(&["--privileged"]);
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let ok = status_field(&privileged.stdout, "Seccomp:").as_deref() == Some("0")
        && status_field(&privileged.stdout, "NoNewPrivs:").as_deref() == Some("0")
        && status_field(&privileged.stdout, "CapBnd:") == status_field(&own, "CapBnd:")
        && privileged.stdout.split_whitespace().collect::<Vec<_>>().ends_with(&["0", "0", "4294967295"]);
    expect(ok, &privileged, "no filter, NoNewPrivs: 0, the host's bounding set, and the host's uid map (0 0 4294967295): no user namespace", "--privileged as root: every capability, no seccomp, no masks, and no CLONE_NEWUSER")
}

fn threads_still_start(t: &Target) -> Outcome {
    let kit = kit_path();
    let out = run_kit(t, &kit, &[], &strings(&["start-thread"]), None);
    expect(out.status == Some(0) && out.stdout_trimmed() == "a thread started", &out, "exit 0, \"a thread started\"", "deny clone3 with ENOSYS, not EPERM: glibc falls back to clone(2) only on ENOSYS")
}

fn bad_security_options(t: &Target) -> Outcome {
    let engine = t.raw();
    let root = rootfs();
    let before = state_entries();
    for options in [&["--cap-add", "CAP_NOPE"][..], &["--cap-drop", "everything"], &["--security-opt", "apparmor=unconfined"], &["--security-opt", "seccomp=/etc/profile.json"]] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(options);
        args.extend([root.as_str(), "true"]);
        let out = engine.run(&args);
        let ok = out.status == Some(125) && super::contract::one_line(&out.stderr) && out.panic_message().is_none();
        expect(ok, &out, "exit 125 and one line on stderr", "clap value parsers: check the option before anything is created")?;
    }
    let after = state_entries();
    if before == after { Ok(()) } else { fail("the refused command lines above", &format!("/run/mini-docker as before: {before:?}"), format!("{after:?}"), "nothing may be created for a refused command line") }
}

fn state_entries() -> Vec<String> {
    let entries = std::fs::read_dir("/run/mini-docker").into_iter().flatten().flatten();
    let mut names: Vec<String> = entries.map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

// ---- the escape suite --------------------------------------------------

/// Where the unhardened run happens.
enum Control {
    /// mini-docker itself with these options instead of the hardened ones.
    Relaxed(&'static [&'static str]),
    /// The rootfs entered with chroot(8) alone, as root with every
    /// capability, in a private mount namespace (to leave the host's mounts
    /// alone) and a network namespace of its own, the host's /proc bound in.
    Chroot,
}

struct Escape<'a> {
    /// The escape kit's subcommand and its arguments.
    attempt: Vec<String>,
    /// For the control, when they differ.
    control_attempt: Option<Vec<String>>,
    /// mini-docker options of the hardened run (limits, --cap-drop).
    hardened: &'a [&'a str],
    control: Control,
    /// A descriptor handed down as 9, as a leak would.
    held: Option<OwnedFd>,
    /// What should have stopped it, for the hint.
    defense: &'a str,
}

/// The kit, built by `cargo lab check` (as the user) before the checks.
pub fn kit_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CTLAB_ESCAPE_KIT") {
        return PathBuf::from(path);
    }
    release_dir().parent().unwrap_or(Path::new("target")).join("escape-kit").join(crate::build::native_target()).join("release/escape")
}

fn try_escape(t: &Target, escape: Escape) -> Outcome {
    let kit = kit_path();
    if !kit.is_file() {
        return fail("the escape kit", &format!("{} built", kit.display()), "missing", "`cargo lab check 10` builds it first (or: cargo run --release -p checker -- build-escape-kit)");
    }
    let hardened = run_hardened(t, &kit, &escape);
    match verdict(&hardened) {
        Verdict::Blocked => {}
        Verdict::Escaped => return fail(&hardened.ran, "BLOCKED", hardened.summary(), escape.defense),
        Verdict::Other => return expect(false, &hardened, "BLOCKED: ... from the escape kit", "the container must start and run the kit (mounted with -v)"),
    }
    let control = run_control(t, &kit, &escape);
    match verdict(&control) {
        Verdict::Escaped => Ok(()),
        _ => fail(&control.ran, "ESCAPED in the unhardened control", control.summary(), "without a control that escapes, this attempt proves nothing here: see what the control printed"),
    }
}

enum Verdict {
    Escaped,
    Blocked,
    Other,
}

fn verdict(out: &Output) -> Verdict {
    let line = out.stdout_trimmed();
    match (out.status, line) {
        (Some(0), l) if l.starts_with("ESCAPED:") => Verdict::Escaped,
        (Some(1), l) if l.starts_with("BLOCKED:") => Verdict::Blocked,
        // The OOM killer's SIGKILL: the hog never got to say anything.
        (Some(137), "") => Verdict::Blocked,
        _ => Verdict::Other,
    }
}

fn run_hardened(t: &Target, kit: &Path, escape: &Escape) -> Output {
    run_kit(t, kit, escape.hardened, &escape.attempt, escape.held.as_ref())
}

fn run_kit(t: &Target, kit: &Path, options: &[&str], attempt: &[String], held: Option<&OwnedFd>) -> Output {
    let volume = format!("{}:/escape:ro", kit.display());
    let root = rootfs();
    let mut args = vec!["run", "--rm", "--network", "none", "-v", &volume];
    args.extend(options);
    args.extend([root.as_str(), "/escape"]);
    args.extend(attempt.iter().map(String::as_str));
    let engine = t.raw();
    match held {
        Some(fd) => run_holding(&engine, fd, &args),
        None => engine.run(&args),
    }
}

fn run_control(t: &Target, kit: &Path, escape: &Escape) -> Output {
    let attempt = escape.control_attempt.as_ref().unwrap_or(&escape.attempt);
    match escape.control {
        Control::Relaxed(options) => run_kit(t, kit, options, attempt, escape.held.as_ref()),
        Control::Chroot => run_in_chroot(kit, attempt, escape.held.as_ref()),
    }
}

fn run_in_chroot(kit: &Path, attempt: &[String], held: Option<&OwnedFd>) -> Output {
    let script = r#"mount -t tmpfs tmpfs "$0/tmp" && cp "$1" "$0/tmp/escape" && mount --rbind /proc "$0/proc" && shift && exec chroot "$0" /tmp/escape "$@""#;
    let root = rootfs();
    let kit = kit.display().to_string();
    let mut args = vec!["--mount", "--net", "--propagation", "private", "--", "sh", "-c", script, &root, &kit];
    args.extend(attempt.iter().map(String::as_str));
    let ran = format!("unshare {} (a bare chroot: the unhardened control)", crate::run::shell_words(&args));
    let mut command = Command::new("unshare");
    command.args(&args);
    if let Some(fd) = held {
        command = hand_down(command, fd);
    }
    match Running::start(command, ran.clone(), b"") {
        Ok(running) => running.finish(TIMEOUT),
        Err(err) => Output::failed_to_start(ran, err),
    }
}

/// A file on the host only: in the container's root it must not be found.
struct Marker(PathBuf);

impl Marker {
    fn new() -> Marker {
        let path = PathBuf::from(format!("/tmp/ctlab-host-only-{}", std::process::id()));
        let _ = std::fs::write(&path, "on the host\n");
        Marker(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn simple<'a>(attempt: &[&str], hardened: &'a [&'a str], control: Control, defense: &'a str) -> Escape<'a> {
    Escape { attempt: strings(attempt), control_attempt: None, hardened, control, held: None, defense }
}

fn escape_chroot_breakout(t: &Target) -> Outcome {
    let marker = Marker::new();
    try_escape(t, simple(&["chroot-breakout", &marker.path()], &[], Control::Chroot, "pivot_root with the old root detached (chapter 06) leaves nothing above / to walk up to"))
}

fn escape_proc_1_root(t: &Target) -> Outcome {
    let marker = Marker::new();
    // Some hosts' PID 1 refuses even root (a sandbox's init): then the
    // control reads the checker's own root, a host process all the same.
    let host_pid = if std::fs::read_dir("/proc/1/root/").is_ok() { 1 } else { std::process::id() };
    let mut escape = simple(&["proc-root", "1", &marker.path()], &[], Control::Chroot, "a PID namespace (chapter 02) and a /proc of its own (03): PID 1 is the container's");
    escape.control_attempt = Some(strings(&["proc-root", &host_pid.to_string(), &marker.path()]));
    try_escape(t, escape)
}

fn escape_mount_host_disk(t: &Target) -> Outcome {
    let disk = match HostDisk::new() {
        Ok(disk) => disk,
        Err(failure) => return Err(failure),
    };
    let (major, minor) = (disk.major.to_string(), disk.minor.to_string());
    try_escape(t, simple(&["mount-disk", &major, &minor], &[], Control::Relaxed(&["--privileged"]), "in a user namespace mknod(2) of a device and mount(2) of a disk filesystem are refused; the seccomp filter denies mount"))
}

fn escape_write_sysctl(t: &Target) -> Outcome {
    try_escape(t, simple(&["write-sysctl"], &[], Control::Relaxed(&["--privileged"]), "/proc/sys bound onto itself and remounted read-only"))
}

fn escape_setns_leaked_fd(t: &Target) -> Outcome {
    let namespace = std::fs::read_link("/proc/self/ns/net").map(|l| l.display().to_string()).unwrap_or_default();
    let held = open_inheritable("/proc/self/ns/net")?;
    let mut escape = simple(&["setns-fd", "9", &namespace], &[], Control::Chroot, "close_range(3, ~0, CLOSE_RANGE_CLOEXEC) before exec; seccomp denies setns");
    escape.held = Some(held);
    try_escape(t, escape)
}

fn escape_cgroup_root(t: &Target) -> Outcome {
    try_escape(t, simple(&["cgroup-escape"], &["--pids-limit", "50"], Control::Relaxed(&["--privileged", "--pids-limit", "50"]), "no CAP_SYS_ADMIN over the host's cgroups; seccomp denies mount"))
}

fn escape_load_module(t: &Target) -> Outcome {
    try_escape(t, simple(&["load-module"], &[], Control::Relaxed(&["--privileged"]), "CAP_SYS_MODULE is dropped (and only counts in the host's user namespace); seccomp denies init_module"))
}

fn escape_raw_socket(t: &Target) -> Outcome {
    try_escape(t, simple(&["raw-socket"], &["--cap-drop", "NET_RAW"], Control::Relaxed(&[]), "--cap-drop NET_RAW must take CAP_NET_RAW from every set"))
}

fn escape_ptrace_host(t: &Target) -> Outcome {
    let mut sleeper = match Command::new("sleep").arg("1022").spawn() {
        Ok(child) => child,
        Err(err) => return fail("sleep 1022", "a host process to aim at", err.to_string(), "the checker's own problem"),
    };
    let pid = sleeper.id().to_string();
    let outcome = try_escape(t, simple(&["ptrace", &pid], &[], Control::Chroot, "the PID namespace hides host processes; seccomp denies ptrace"));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    outcome
}

fn escape_fork_bomb(t: &Target) -> Outcome {
    try_escape(t, simple(&["fork-bomb", "200"], &["--pids-limit", "64"], Control::Relaxed(&[]), "--pids-limit 64: pids.max in the container's cgroup (chapter 08)"))
}

fn escape_memory_hog(t: &Target) -> Outcome {
    try_escape(t, simple(&["memory-hog", "256"], &["-m", "32M"], Control::Relaxed(&[]), "-m 32M: the memory limit in the container's cgroup (chapter 08), swap included"))
}

fn escape_host_time(t: &Target) -> Outcome {
    try_escape(t, simple(&["set-time"], &[], Control::Relaxed(&["--privileged"]), "CAP_SYS_TIME is dropped, and counts only in the host's user namespace"))
}

fn escape_new_userns(t: &Target) -> Outcome {
    try_escape(t, simple(&["new-userns"], &[], Control::Relaxed(&["--security-opt", "seccomp=unconfined"]), "no capability guards CLONE_NEWUSER: the seccomp filter must deny clone and unshare with it"))
}

/// A small ext2 image on a loop device: the host's disk, as far as the
/// container can tell. Detached and deleted on drop.
struct HostDisk {
    image: PathBuf,
    device: String,
    major: u64,
    minor: u64,
}

impl HostDisk {
    fn new() -> Result<HostDisk, Failure> {
        let image = PathBuf::from(format!("/tmp/ctlab-host-disk-{}.img", std::process::id()));
        let made = std::fs::File::create(&image).and_then(|f| f.set_len(8 << 20));
        if let Err(err) = made {
            return Err(Failure::new("creating a disk image", "an 8 MiB file in /tmp", err.to_string(), "the checker's own problem"));
        }
        let image_arg = image.display().to_string();
        let mkfs = host("mke2fs", &["-F", &image_arg]);
        let attach = if mkfs.status == Some(0) { host("losetup", &["-f", "--show", &image_arg]) } else { mkfs };
        let device = attach.stdout_trimmed().to_string();
        let numbers = std::fs::metadata(&device).map(|m| std::os::unix::fs::MetadataExt::rdev(&m));
        match numbers {
            Ok(rdev) if attach.status == Some(0) => Ok(HostDisk { image, device, major: nix::sys::stat::major(rdev), minor: nix::sys::stat::minor(rdev) }),
            _ => {
                let _ = std::fs::remove_file(&image);
                Err(Failure::of(&attach, "a loop device with an ext2 filesystem", "the host needs loop devices (modprobe loop) and mke2fs (e2fsprogs)"))
            }
        }
    }
}

impl Drop for HostDisk {
    fn drop(&mut self) {
        let _ = host("losetup", &["-d", &self.device]);
        let _ = std::fs::remove_file(&self.image);
    }
}
