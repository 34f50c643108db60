//! Running a runtime the way a user would, and watching it from outside.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::host::{descendants, remove_cgroups_of};

/// The uid/gid checks use for "an unprivileged user" (nobody).
pub const NOBODY: u32 = 65534;

/// How long any one run may take before the checker calls it hung.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Who starts the runtime.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum As {
    Root,
    /// uid/gid 65534 with no supplementary groups, via setpriv(1).
    Nobody,
    /// Another unprivileged uid (and gid), one that is not the kernel's
    /// overflow id: a child that maps itself by accident shows 65534.
    Uid(u32),
}

impl As {
    fn uid(self) -> Option<u32> {
        match self {
            As::Root => None,
            As::Nobody => Some(NOBODY),
            As::Uid(uid) => Some(uid),
        }
    }
}

/// The runtime under test.
#[derive(Clone, Debug)]
pub struct Target {
    pub binary: PathBuf,
    /// The step it implements, so checks can adapt (01 has no /proc of its
    /// own, 06 runs busybox from the rootfs...).
    pub step: u8,
    /// Who starts it: root, or from step 05 on also an unprivileged user.
    pub who: As,
    /// For mini-docker (09): pass the arguments as they are, instead of
    /// turning the earlier chapters' `[OPTIONS] COMMAND` into `run ...`.
    pub raw: bool,
}

impl Target {
    pub fn new(binary: impl Into<PathBuf>, step: u8) -> Self {
        Target { binary: binary.into(), step, who: As::Root, raw: false }
    }

    /// The same runtime, started by an unprivileged user.
    pub fn rootless(&self) -> Self {
        Target { who: As::Nobody, ..self.clone() }
    }

    /// The same runtime, given mini-docker's own command lines.
    pub fn raw(&self) -> Self {
        Target { raw: true, ..self.clone() }
    }

    /// Whether this is mini-docker (09), whose CLI has subcommands.
    pub fn is_engine(&self) -> bool {
        self.step >= 9
    }

    /// The host end of the veth of the container run by `runtime`.
    pub fn host_end(&self, runtime: i32) -> String {
        if self.is_engine() { format!("mdk{runtime}") } else { format!("ctlab{runtime}") }
    }

    /// How the container's cgroup is named: ctlab-<runtime PID> up to 08,
    /// mini-docker-<container name> in 09.
    pub fn cgroup_prefix(&self) -> &'static str {
        if self.is_engine() { "mini-docker-" } else { "ctlab-" }
    }

    /// The earlier chapters' `[OPTIONS] COMMAND` as mini-docker's `run --rm
    /// [OPTIONS] ROOTFS COMMAND` (rootless with --network none): --rootfs
    /// becomes the ROOTFS argument, --pids is --pids-limit.
    pub fn cli_args(&self, args: &[&str], who: As) -> Vec<String> {
        if !self.is_engine() || self.raw {
            return args.iter().map(|a| a.to_string()).collect();
        }
        let mut out: Vec<String> = vec!["run".into(), "--rm".into()];
        if who != As::Root {
            out.extend(["--network".into(), "none".into()]);
        }
        let mut rootfs = crate::steps::workspace_root().join("rootfs").display().to_string();
        let mut rest = args;
        while let Some((option, after)) = rest.split_first().filter(|(a, _)| a.starts_with("--")) {
            let value = after.first().map(|v| v.to_string());
            rest = after;
            match (*option, value) {
                ("--rootfs", Some(dir)) => rootfs = dir,
                ("--pids", Some(n)) => out.extend(["--pids-limit".to_string(), n]),
                ("--hostname" | "--memory" | "--cpus" | "--ip" | "--network", Some(v)) => out.extend([option.to_string(), v]),
                _ => {
                    out.push(option.to_string());
                    continue;
                }
            }
            rest = &rest[1..];
        }
        out.push(rootfs);
        out.extend(rest.iter().map(|a| a.to_string()));
        out
    }

    /// Steps 05 and 06 (and mini-docker) must also work started by an
    /// unprivileged user; 07 and 08 need root for the host's network and
    /// cgroups.
    pub fn supports_rootless(&self) -> bool {
        matches!(self.step, 5 | 6) || self.is_engine()
    }

    /// Who the user-namespace checks start it as, and that user's uid.
    pub fn caller(&self) -> (As, u32) {
        if self.supports_rootless() { (As::Nobody, NOBODY) } else { (As::Root, 0) }
    }

    /// The binary's file name, as error messages print it.
    pub fn program(&self) -> String {
        self.binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// The command line that runs `args` with this runtime.
    pub fn command(&self, args: &[&str], who: As) -> Result<Command> {
        let mut command = match who.uid() {
            None => Command::new(&self.binary),
            Some(uid) => {
                let mut c = Command::new("setpriv");
                let id = uid.to_string();
                c.args(["--reuid", &id, "--regid", &id, "--clear-groups", "--"]);
                c.arg(nobody_can_run(&self.binary)?);
                c
            }
        };
        command.args(self.cli_args(args, who)).env_remove("RUST_BACKTRACE");
        if who != As::Root {
            // mini-docker's rootless state then goes to /tmp/mini-docker-UID,
            // not into root's runtime directory.
            command.env_remove("XDG_RUNTIME_DIR");
        }
        Ok(command)
    }

    /// Runs `args` with empty stdin and waits for the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, self.who, b"")
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run_with(args, self.who, stdin)
    }

    pub fn run_as(&self, args: &[&str], who: As) -> Output {
        self.run_with(args, who, b"")
    }

    fn run_with(&self, args: &[&str], who: As, stdin: &[u8]) -> Output {
        let ran = self.describe(args, who);
        match self.command(args, who).and_then(|c| Running::start(c, ran.clone(), stdin)) {
            Ok(running) => running.finish(TIMEOUT),
            Err(err) => Output::failed_to_start(ran, err),
        }
    }

    pub fn spawn(&self, args: &[&str]) -> Result<Running> {
        Running::start(self.command(args, self.who)?, self.describe(args, self.who), b"")
    }

    /// The command line as a shell would run it, for `sh -c` and script(1).
    pub fn shell_command(&self, args: &[&str]) -> Result<String> {
        self.shell_command_as(args, self.who)
    }

    pub fn shell_command_as(&self, args: &[&str], who: As) -> Result<String> {
        let command = self.command(args, who)?;
        let program = command.get_program().to_string_lossy().into_owned();
        let mut rest: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        if let Some(end_of_setpriv) = rest.iter().position(|a| a == "--") {
            // What env_remove does for a Command (a shell string has no env of
            // its own). After setpriv: a busybox `env` would run busybox's setpriv.
            rest.splice(end_of_setpriv + 1..end_of_setpriv + 1, ["env", "-u", "XDG_RUNTIME_DIR"].map(String::from));
        }
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        Ok(format!("{} {}", shell_words(&[&program]), shell_words(&rest)))
    }

    /// How a check says what it ran: `03-mount-proc sh -c 'echo $$'`.
    pub fn describe(&self, args: &[&str], who: As) -> String {
        let prefix = who.uid().map(|id| format!("setpriv --reuid={id} --regid={id} --clear-groups ")).unwrap_or_default();
        let args = self.cli_args(args, who);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        format!("{prefix}{} {}", self.program(), shell_words(&args))
    }
}

/// Quotes arguments for display the way a shell would need them.
pub fn shell_words(args: &[&str]) -> String {
    let quote = |a: &&str| {
        let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
        if plain { a.to_string() } else { format!("'{}'", a.replace('\'', r"'\''")) }
    };
    args.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// An unprivileged user may not be able to reach a binary in someone's home
/// directory: copy it where anyone can execute it.
fn nobody_can_run(binary: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from(format!("/tmp/ctlab-check-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let copy = dir.join(binary.file_name().context("binary has no name")?);
    // Copied aside, then renamed over: a detached mini-docker may still be
    // running the previous copy, which cannot be written (ETXTBSY).
    let fresh = dir.join(".copying");
    std::fs::copy(binary, &fresh).with_context(|| format!("copying {} for uid {NOBODY}", binary.display()))?;
    std::fs::rename(&fresh, &copy).with_context(|| format!("copying {} for uid {NOBODY}", binary.display()))?;
    Ok(copy)
}

/// Removes what [`nobody_can_run`] made; the checker calls it at the end.
pub fn remove_scratch_binaries() {
    let _ = std::fs::remove_dir_all(format!("/tmp/ctlab-check-bin-{}", std::process::id()));
}

/// How a run ended, and what it printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub ran: String,
    /// The exit status as a shell shows it (128+N for signal N); None if it
    /// never started or hung.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub hung: bool,
}

impl Output {
    pub fn failed_to_start(ran: String, err: anyhow::Error) -> Self {
        Output { ran, status: None, stdout: String::new(), stderr: format!("could not start it: {err:#}"), hung: false }
    }

    /// One line for "saw:".
    pub fn summary(&self) -> String {
        let mut s = match (self.hung, self.status) {
            (true, _) => format!("still running after {}s, killed", TIMEOUT.as_secs()),
            (false, Some(code)) => format!("exit {code}"),
            (false, None) => "did not start".into(),
        };
        let panic = self.panic_message();
        if !self.stdout.trim().is_empty() && !self.stdout.contains("panicked at ") {
            let _ = write!(s, ", stdout {:?}", clip(self.stdout.trim_end()));
        }
        match panic {
            Some(panic) => {
                let _ = write!(s, ", and it panicked: {panic}");
            }
            None if !self.stderr.trim().is_empty() => {
                let _ = write!(s, ", stderr {:?}", clip(self.stderr.trim_end()));
            }
            None => {}
        }
        s
    }

    /// "at src/x.rs:3:5: not yet implemented: ..." if a Rust program
    /// panicked, without the backtrace.
    pub fn panic_message(&self) -> Option<String> {
        // Run on a terminal (script(1)), stderr arrives on stdout, with \r.
        let both = format!("{}{}", self.stderr, self.stdout).replace('\r', "");
        let (_, after) = both.split_once("panicked at ")?;
        let mut lines = after.lines();
        let location = lines.next()?.trim_end_matches(':');
        Some(format!("at {location}: {}", lines.next().unwrap_or_default()))
    }

    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim()
    }
}

fn clip(text: &str) -> String {
    const MAX: usize = 400;
    if text.len() <= MAX {
        return text.to_string();
    }
    let cut = (0..=MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// A runtime started in its own process group, its output being collected.
pub struct Running {
    child: Child,
    ran: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    pub fn start(mut command: Command, ran: String, stdin: &[u8]) -> Result<Running> {
        // Its own process group, so a hung run can be killed whole.
        command.process_group(0).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("running {ran}"))?;
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        if let Some(mut pipe) = child.stdin.take() {
            // Closing it (at the end of this block) is the end of input.
            let _ = pipe.write_all(stdin);
        }
        Ok(Running { child, ran, stdout, stderr })
    }

    /// The runtime's PID on the host.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout_so_far(&self) -> String {
        lossy(&self.stdout)
    }

    /// Waits until stdout contains `text` (true), or the run ends or time
    /// runs out (false).
    pub fn wait_for_stdout(&mut self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stdout_so_far().contains(text) {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return self.stdout_so_far().contains(text);
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits for the runtime to exit (killing its process group if it takes
    /// longer than `timeout`), then for its output pipes to close.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let (status, hung) = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if status.signal() == Some(libc::SIGKILL) {
                        remove_cgroups_of(self.pid());
                    }
                    break (status.code().or(status.signal().map(|s| 128 + s)), false);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => {
                    self.kill_group();
                    let _ = self.child.wait();
                    remove_cgroups_of(self.pid());
                    break (None, true);
                }
            }
        };
        // A process left behind may hold the pipes open: don't wait forever.
        let drained = Instant::now() + Duration::from_secs(2);
        while Instant::now() < drained && (Arc::strong_count(&self.stdout) > 1 || Arc::strong_count(&self.stderr) > 1) {
            thread::sleep(Duration::from_millis(5));
        }
        Output { ran: std::mem::take(&mut self.ran), status, stdout: lossy(&self.stdout), stderr: lossy(&self.stderr), hung }
    }

    /// Kills the runtime and everything in its process group. The runtime
    /// gets no chance to clean up: `finish` sweeps its cgroups.
    pub fn kill_group(&self) {
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
    }

    /// Kills the container (every process below the runtime), as `kill -9`
    /// of its PID 1 would: the runtime cleans up and exits 137.
    pub fn kill_container(&self) {
        for (pid, _) in descendants(self.pid()) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
            let _ = self.child.wait();
            remove_cgroups_of(self.pid());
        }
    }
}

/// Reads a pipe to its end in a thread; the buffer's second reference is
/// dropped when the pipe closes.
fn collect(pipe: Option<impl Read + Send + 'static>) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut pipe) = pipe {
        let shared = Arc::clone(&buffer);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                if let Ok(mut b) = shared.lock() {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        });
    }
    buffer
}

fn lossy(buffer: &Mutex<Vec<u8>>) -> String {
    buffer.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// Runs a host command as the checker itself (root), for setup and probes.
pub fn host(program: &str, args: &[&str]) -> Output {
    let ran = format!("{program} {}", shell_words(args));
    let mut command = Command::new(program);
    command.args(args).env_remove("RUST_BACKTRACE");
    match Running::start(command, ran.clone(), b"") {
        Ok(running) => running.finish(TIMEOUT),
        Err(err) => Output::failed_to_start(ran, err),
    }
}

/// Polls `probe` until it returns Some, for up to `timeout`.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
