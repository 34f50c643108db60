//! The container's life cycle: clone() a child into new namespaces, let it
//! set itself up and exec() the command, forward signals, wait, and turn
//! the way it ended into an exit status (docker's conventions).

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// The runtime's own failure (docker run exits 125 too).
pub const EXIT_RUNTIME_ERROR: i32 = 125;
/// The command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;

const PROGRAM: &str = env!("CARGO_BIN_NAME");
const CHILD_STACK_SIZE: usize = 1024 * 1024;

/// Starts a child in the namespaces `flags` asks for. The child runs
/// `set_up_inside`, then replaces itself with `command`.
pub fn spawn(
    flags: CloneFlags,
    command: &[OsString],
    mut set_up_inside: impl FnMut() -> Result<()>,
) -> Result<Pid> {
    let mut stack = vec![0u8; CHILD_STACK_SIZE];
    let mut child = || run_child(command, &mut set_up_inside);
    clone_child(flags, &mut stack, &mut child)
}

/// clone(2) without CLONE_VM is a fork that can also create namespaces:
/// the child gets a copy of our memory and starts in `child` on `stack`.
fn clone_child(flags: CloneFlags, stack: &mut [u8], child: &mut dyn FnMut() -> i32) -> Result<Pid> {
    let callback = Box::new(|| child() as isize);
    // SAFETY: the child has a copy of our single-threaded address space and
    // only runs `child`, which ends in exec() or a return.
    unsafe { nix::sched::clone(callback, stack, flags, Some(Signal::SIGCHLD as i32)) }
        .map_err(explain_clone_error)
}

/// Turns clone()'s errno into a cause and a fix.
pub fn explain_clone_error(errno: Errno) -> anyhow::Error {
    let fix = match errno {
        Errno::EPERM => "the kernel refused the new namespaces: with a user namespace an unprivileged user may create them, unless the host forbids it",
        Errno::ENOSPC => "the host's limit on namespaces is reached (see /proc/sys/user/max_*_namespaces)",
        Errno::EINVAL => "the kernel rejected this set of namespace flags",
        _ => "see clone(2), ERRORS",
    };
    anyhow::anyhow!("clone: {} — {fix}", errno.desc())
}

/// The child's whole life. Its return value is its exit status if exec()
/// never happens.
fn run_child(command: &[OsString], set_up_inside: &mut dyn FnMut() -> Result<()>) -> i32 {
    // A panic must not unwind out of clone()'s callback: report it as a
    // runtime error instead (the panic hook has already printed it).
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        die_with_parent();
        match set_up_inside() {
            Ok(()) => exec(command),
            Err(err) => report_runtime_error(err),
        }
    }));
    outcome.unwrap_or(EXIT_RUNTIME_ERROR)
}

/// If the runtime dies (even by SIGKILL) the container dies with it. A
/// runtime that dies before this call is not noticed (getppid() cannot tell
/// inside a PID namespace, where the parent is always 0).
fn die_with_parent() {
    // Best effort: failing here only loses that guarantee.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
}

/// Replaces this process with `command`, searching PATH like a shell does.
/// Returns only on failure, with 127 (not found) or 126 (cannot execute).
pub fn exec(command: &[OsString]) -> i32 {
    let Ok(argv) = command
        .iter()
        .map(|arg| CString::new(arg.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return report_runtime_error(anyhow::anyhow!("an argument contains a NUL byte"));
    };
    let Err(errno) = nix::unistd::execvp(&argv[0], &argv);
    let name = command[0].to_string_lossy();
    let (code, why) = match errno {
        Errno::ENOENT | Errno::ENOTDIR => (EXIT_NOT_FOUND, "command not found; check its name and PATH".to_string()),
        // execvp reports EACCES when a PATH directory is unreadable, even if
        // the command is in none of them.
        Errno::EACCES if !exists_on_path(&name) => (EXIT_NOT_FOUND, "command not found; check its name and PATH".to_string()),
        _ => (EXIT_CANNOT_EXECUTE, format!("{} — is it a program, and executable?", errno.desc())),
    };
    eprintln!("{PROGRAM}: cannot run '{name}': {why}");
    code
}

/// A one-shot "go on" from the runtime to the container, for what only the
/// parent can do while the child waits (write its ID maps, later its
/// network and cgroup). A pipe: the child blocks in read(2) until the parent
/// writes a byte, or sees end-of-file if the parent gave up.
pub struct SetupGate {
    read_end: OwnedFd,
    write_end: OwnedFd,
}

impl SetupGate {
    pub fn new() -> Result<Self> {
        // O_CLOEXEC: the command exec'd later must not inherit either end.
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
        Ok(SetupGate { read_end, write_end })
    }

    /// In the child: blocks until the parent opens the gate.
    pub fn wait_for_parent(&self) -> Result<()> {
        nix::unistd::close(self.write_end.as_raw_fd()).context("closing the gate's write end")?;
        let mut byte = [0u8; 1];
        match nix::unistd::read(&self.read_end, &mut byte).context("waiting for the runtime")? {
            1 => Ok(()),
            _ => anyhow::bail!("the runtime gave up before the container was ready"),
        }
    }

    /// In the parent: lets the child go on.
    pub fn open(&self) -> Result<()> {
        nix::unistd::write(&self.write_end, b"1").context("releasing the container")?;
        Ok(())
    }
}

/// When the parent's part of the set-up fails, the child must not be left
/// waiting at the gate: kill it, and reap it so no zombie stays behind.
pub fn kill_and_reap(child: Pid) {
    let _ = signal::kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
}

/// Whether `name` is a path to a file, or a file in a PATH directory.
fn exists_on_path(name: &str) -> bool {
    if name.contains('/') {
        return std::path::Path::new(name).is_file();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':').any(|dir| std::path::Path::new(dir).join(name).is_file())
}

/// The container's PID, for the signal handler (0 until it exists).
static CONTAINER_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(signal: libc::c_int) {
    let pid = CONTAINER_PID.load(Ordering::Relaxed);
    if pid > 0 {
        // kill(2) is async-signal-safe, so it may be called from a handler.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Signals sent to the runtime (Ctrl-C, `kill`, a closing terminal) are
/// passed on to the container instead of killing the runtime alone.
/// Installed before clone(), so none can kill the runtime and strand the
/// container; one that arrives before the child's PID is stored is dropped.
pub fn forward_signals_to_container() -> Result<()> {
    let action = SigAction::new(SigHandler::Handler(forward_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        // SAFETY: the handler only reads an atomic and calls kill(2).
        unsafe { signal::sigaction(sig, &action) }.with_context(|| format!("sigaction({sig})"))?;
    }
    Ok(())
}

/// Waits for the container to end and returns its exit status the way a
/// shell reports it: the exit code, or 128 + N if signal N killed it.
pub fn wait_for_exit(child: Pid) -> Result<i32> {
    CONTAINER_PID.store(child.as_raw(), Ordering::Relaxed);
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno).context("waitpid"),
        }
    }
}

/// Prints a runtime error as one line and returns docker's code for it.
pub fn report_runtime_error(err: anyhow::Error) -> i32 {
    eprintln!("{PROGRAM}: {err:#}");
    EXIT_RUNTIME_ERROR
}

/// Prints a command-line mistake as one line (clap writes several) and
/// returns 125 like `docker run` does; --help and --version exit 0.
pub fn report_usage_error(err: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        err.exit();
    }
    let rendered = err.render().to_string();
    let first_paragraph = rendered.split("\n\n").next().unwrap_or_default();
    let message = first_paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = message.trim_start_matches("error: ");
    eprintln!("{PROGRAM}: {message} (see '{PROGRAM} --help')");
    EXIT_RUNTIME_ERROR
}
