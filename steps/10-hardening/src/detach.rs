//! `run -d`: the container outlives the command that started it.
//!
//! Docker has a daemon for that. Here the `run` process forks a
//! supervisor, the container's runtime from then on: in a session of its
//! own (setsid(2)), so the terminal's hangup does not reach it, with its
//! output, and so the container's, going to the container's `log` file.
//! `run` waits only until the supervisor says the command has started (or
//! why it has not), prints the name and returns.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::OwnedFd;

use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult};

use crate::state::Store;

/// Forks the supervisor, which runs `supervise` with the write end of a
/// pipe; returns once that pipe says the container started (exit 0, the
/// name printed) or failed (its error).
pub fn detach(name: &str, supervise: impl FnOnce(OwnedFd) -> Result<i32>) -> Result<i32> {
    let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
    // SAFETY: mini-docker is single-threaded; the child goes on normally.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(reader);
            std::process::exit(become_supervisor(name, writer, supervise));
        }
        ForkResult::Parent { .. } => {
            drop(writer);
            let mut answer = String::new();
            std::fs::File::from(reader).read_to_string(&mut answer).context("waiting for the container to start")?;
            match answer.strip_prefix("started") {
                Some(_) => {
                    println!("{name}");
                    Ok(0)
                }
                None if answer.is_empty() => bail!("the supervisor of {name} died before the container started"),
                None => bail!("{answer}"),
            }
        }
    }
}

/// In the forked child: detach from the terminal, send output to the log,
/// then run the container. Errors before it started go to `run` through
/// `writer` (supervise does that too); later ones go to the log.
fn become_supervisor(name: &str, writer: OwnedFd, supervise: impl FnOnce(OwnedFd) -> Result<i32>) -> i32 {
    if let Err(err) = setsid().context("setsid").and_then(|_| redirect_output(name)) {
        let _ = nix::unistd::write(&writer, format!("{err:#}").as_bytes());
        let _ = Store::open().and_then(|store| store.remove(name));
        return crate::container::EXIT_RUNTIME_ERROR;
    }
    supervise(writer).unwrap_or_else(crate::container::report_runtime_error)
}

/// With -d, a failure before the container started is `run`'s to print.
pub fn tell_run(ready: Option<OwnedFd>, err: &anyhow::Error) {
    if let Some(ready) = ready {
        let _ = nix::unistd::write(&ready, format!("{err:#}").as_bytes());
    }
}

/// stdin from /dev/null, stdout and stderr appended to the container's log.
fn redirect_output(name: &str) -> Result<()> {
    let log_path = Store::open()?.dir(name).join("log");
    let log = OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("opening {}", log_path.display()))?;
    let null = OpenOptions::new().read(true).open("/dev/null").context("opening /dev/null")?;
    dup2_stdin(&null).context("dup2")?;
    dup2_stdout(&log).context("dup2")?;
    dup2_stderr(&log).context("dup2")?;
    Ok(())
}

/// In the supervisor, once the gate is open: waits until the child has
/// exec()ed COMMAND (its end of `setup_errors` closes, empty) or failed to
/// set up (its error arrives), and tells `run`. True if it started.
pub fn report_ready(ready: OwnedFd, setup_errors: OwnedFd) -> bool {
    let mut error = String::new();
    let _ = std::fs::File::from(setup_errors).read_to_string(&mut error);
    let message = if error.is_empty() { "started".to_string() } else { error.clone() };
    let _ = nix::unistd::write(&ready, message.as_bytes());
    error.is_empty()
}
