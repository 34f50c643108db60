//! The engine's side of a container: names, environment, and the commands
//! that find a container again after `run`: ps, stop, rm, logs, prune.

use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroups::{Cgroup, Limits};
use crate::state::{Record, Status, Store};

/// clap's check of --name: docker's rule, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// and at most 64 characters.
pub fn parse_name(name: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && name.len() <= 64 && name.chars().all(allowed) {
        Ok(name.to_string())
    } else {
        Err("use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit".into())
    }
}

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nifty", "proud", "quiet", "sharp", "tidy", "witty",
];
const NOUNS: [&str; 16] = [
    "babbage", "curie", "dijkstra", "euler", "fermat", "gauss", "hopper", "knuth", "lamport", "lovelace", "noether", "pike", "ritchie", "shannon", "thompson", "turing",
];

/// Claims a docker-style name like `keen_turing` (with a number added
/// once the plain ones are taken).
pub fn reserve_generated_name(store: &Store) -> Result<String> {
    for attempt in 0..1000u32 {
        let random = random_u32()?;
        let adjective = ADJECTIVES[(random % 16) as usize];
        let noun = NOUNS[(random / 16 % 16) as usize];
        let name = if attempt < 20 { format!("{adjective}_{noun}") } else { format!("{adjective}_{noun}{}", random % 1000) };
        if !store.dir(&name).exists() && store.reserve(&name).is_ok() {
            return Ok(name);
        }
    }
    bail!("could not find a free name: pass --name")
}

fn random_u32() -> Result<u32> {
    let mut bytes = [0u8; 4];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).context("reading /dev/urandom")?;
    Ok(u32::from_ne_bytes(bytes))
}

/// A name is a fine hostname once '_' (not allowed there) becomes '-'.
pub fn hostname_for(name: &str) -> String {
    name.replace('_', "-")
}

/// The command line as `ps` shows it.
pub fn display_command(command: &[OsString]) -> String {
    let words: Vec<String> = command
        .iter()
        .map(|arg| {
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains(char::is_whitespace) { format!("{arg:?}") } else { arg.into_owned() }
        })
        .collect();
    words.join(" ")
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// clap's check of -e: KEY=VALUE, KEY not empty.
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains(char::is_whitespace) => Ok((key.to_string(), value.to_string())),
        _ => Err("write it as KEY=VALUE, e.g. -e GREETING=hello".into()),
    }
}

/// In the child, just before exec(): the container's environment, not the
/// host's (docker's defaults, then each -e).
pub fn replace_environment(hostname: &str, env: &[(String, String)]) {
    let term = std::env::var_os("TERM");
    for (key, _) in std::env::vars_os() {
        std::env::remove_var(key);
    }
    std::env::set_var("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    std::env::set_var("HOSTNAME", hostname);
    std::env::set_var("HOME", "/root");
    if let Some(term) = term {
        std::env::set_var("TERM", term);
    }
    for (key, value) in env {
        std::env::set_var(key, value);
    }
}

pub fn cgroup_name(container: &str) -> String {
    format!("mini-docker-{container}")
}

/// A cgroup for the container, as root (even without limits: exec joins
/// it, and it counts what the container uses). Rootless: none.
pub fn create_cgroup(name: &str, limits: &Limits) -> Result<Option<Cgroup>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match Cgroup::create(&cgroup_name(name), limits) {
        Err(err) if err.root_cause().to_string().contains("File exists") => {
            bail!("the cgroup {} of an earlier container is still there: run mini-docker prune", cgroup_name(name))
        }
        result => result.map(Some),
    }
}

/// Limits live in the host's cgroup tree, which only root may write to
/// here: refuse rather than run without the limits asked for.
pub fn require_root_for_limits(limits: &Limits) -> Result<()> {
    let asked = limits.memory_bytes.is_some() || limits.pids.is_some() || limits.cpus.is_some();
    if asked && !nix::unistd::geteuid().is_root() {
        bail!("--memory, --pids-limit and --cpus need root: cgroups belong to the host and nothing here is delegated to you; run with sudo, or without limits");
    }
    Ok(())
}

/// `ps [-a]`.
pub fn ps(store: &Store, all: bool) -> Result<i32> {
    let mut rows = vec![["NAME".to_string(), "PID".into(), "STATUS".into(), "IP".into(), "COMMAND".into()]];
    for record in store.all() {
        let status = record.status();
        if !all && !matches!(status, Status::Running | Status::Starting) {
            continue;
        }
        let pid = match (status, record.container) {
            (Status::Running, Some(process)) => process.pid.to_string(),
            _ => "-".into(),
        };
        let ip = record.ip.map_or("-".into(), |ip| ip.to_string());
        rows.push([record.name.clone(), pid, status.to_string(), ip, record.command.clone()]);
    }
    let widths: Vec<usize> = (0..4).map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0)).collect();
    let mut out = std::io::stdout().lock();
    for row in &rows {
        let padded: Vec<String> = (0..4).map(|c| format!("{:<width$}", row[c], width = widths[c])).collect();
        let _ = writeln!(out, "{}   {}", padded.join("   "), row[4]);
    }
    Ok(0)
}

/// `stop [-t SECONDS] NAME...`: SIGTERM, SIGKILL after the timeout, then
/// waits for its runtime to clean up (or cleans up for a dead one).
pub fn stop(store: &Store, names: &[String], seconds: u64) -> Result<i32> {
    for name in names {
        stop_one(store, name, Duration::from_secs(seconds))?;
        println!("{name}");
    }
    Ok(0)
}

fn stop_one(store: &Store, name: &str, timeout: Duration) -> Result<()> {
    let record = store.load(name)?;
    if let (Status::Running, Some(container)) = (record.status(), record.container) {
        let pid = Pid::from_raw(container.pid);
        // A PID 1 gets only the signals it has a handler for: a `sleep`
        // ignores SIGTERM and waits for the SIGKILL, as in docker.
        let _ = kill(pid, Signal::SIGTERM);
        if !wait_until(timeout, || !container.is_alive()) {
            let _ = kill(pid, Signal::SIGKILL);
            wait_until(Duration::from_secs(5), || !container.is_alive());
        }
    }
    // Its runtime records the exit and removes the cgroup; give it time.
    if let Some(runtime) = record.runtime {
        wait_until(Duration::from_secs(5), || !runtime.is_alive());
    }
    let record = store.load(name)?;
    if record.status() == Status::Dead {
        clean_up_after(&record)?;
    }
    Ok(())
}

/// Polls `done` every 10 ms until it is true (true) or time is up (false).
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// What a container whose runtime died may have left on the host: its
/// cgroup (empty now) and, rarely, the host end of its veth.
fn clean_up_after(record: &Record) -> Result<()> {
    if let Some(cgroup) = &record.cgroup {
        Cgroup::find(cgroup)?.remove();
    }
    if let Some(veth) = &record.veth {
        crate::bridge::remove_host_end(veth)?;
    }
    Ok(())
}

/// `rm [-f] NAME...`.
pub fn rm(store: &Store, names: &[String], force: bool) -> Result<i32> {
    for name in names {
        let record = store.load(name)?;
        if record.is_active() {
            if !force {
                bail!("container {name:?} is running: stop it first (mini-docker stop {name}), or use rm -f");
            }
            stop_one(store, name, Duration::ZERO)?;
        }
        clean_up_after(&record)?;
        store.remove(name)?;
        println!("{name}");
    }
    Ok(0)
}

/// `logs NAME`: what a detached container wrote, stdout and stderr.
pub fn logs(store: &Store, name: &str) -> Result<i32> {
    let record = store.load(name)?;
    if !record.detached {
        bail!("{name} ran in the foreground, so its output went to the terminal; only containers started with -d have logs");
    }
    let log = std::fs::read(store.dir(name).join("log")).with_context(|| format!("reading the log of {name}"))?;
    std::io::stdout().write_all(&log).context("writing to stdout")?;
    Ok(0)
}

/// `prune`: removes every container that is not running (state, layer,
/// cgroup, veth), and with none left at all, the bridge and NAT table too.
pub fn prune(store: &Store) -> Result<i32> {
    let _lock = store.lock()?; // no run may hand out an address meanwhile
    for record in store.all().iter().filter(|r| !r.is_active()) {
        clean_up_after(record)?;
        store.remove(&record.name)?;
        println!("{}", record.name);
    }
    // A run killed between claiming its name and saving its record: its
    // directory has no record. Give a run in progress a minute to save one.
    for name in store.unrecorded() {
        let age = std::fs::metadata(store.dir(&name)).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if age.is_some_and(|age| age > Duration::from_secs(60)) {
            store.remove(&name)?;
        }
    }
    if store.all().is_empty() && nix::unistd::geteuid().is_root() {
        crate::bridge::remove_network()?;
    }
    Ok(0)
}
