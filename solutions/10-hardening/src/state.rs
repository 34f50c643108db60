//! What the engine remembers between commands: one directory per container,
//! under /run/mini-docker as root (a tmpfs on most systems: it is gone
//! after a reboot, like the containers), or, rootless, under
//! $XDG_RUNTIME_DIR/mini-docker (or /tmp/mini-docker-UID without it).
//!
//! ```text
//! /run/mini-docker/
//!   .lock            flock(2)ed while addresses are handed out
//!   web/
//!     config         key=value lines, replaced whole by rename(2)
//!     upper/ work/   the overlay's writable layer (see overlay.rs)
//!     rootfs/        where the overlay is mounted, inside the container
//!     log            its output, with -d
//! ```
//!
//! Processes are remembered as PID plus start time (/proc/PID/stat field
//! 22): a PID alone may belong to someone else after the container died.

use std::fs::{self, File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

const ROOT_STATE_DIR: &str = "/run/mini-docker";

/// The directory holding every container's state.
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (and makes, the first time) this user's state directory.
    pub fn open() -> Result<Store> {
        let root = state_root();
        match fs::DirBuilder::new().recursive(true).mode(0o700).create(&root) {
            Ok(()) => {}
            Err(err) => return Err(err).with_context(|| format!("creating the state directory {}", root.display())),
        }
        let owner = fs::metadata(&root).with_context(|| format!("reading {}", root.display()))?.uid();
        if owner != nix::unistd::geteuid().as_raw() {
            bail!("the state directory {} belongs to uid {owner}, not you: set XDG_RUNTIME_DIR to a directory of yours", root.display());
        }
        Ok(Store { root })
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Claims `name` by making its directory: mkdir(2) is atomic, so of two
    /// runs racing for one name exactly one wins.
    pub fn reserve(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir(name);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "the name {name:?} is already in use by a container: remove it (mini-docker rm {name}, or prune), or pick another --name"
            ),
            Err(err) => Err(err).with_context(|| format!("creating {}", dir.display())),
        }
    }

    /// The container called `name`, or a clear error if there is none.
    pub fn load(&self, name: &str) -> Result<Record> {
        let text = match fs::read_to_string(self.dir(name).join("config")) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                bail!("no such container: {name:?} (mini-docker ps -a lists them)")
            }
            Err(err) => return Err(err).with_context(|| format!("reading the state of {name}")),
        };
        Ok(Record::parse(&text))
    }

    /// Every container with a record of its own name, oldest first.
    pub fn all(&self) -> Vec<Record> {
        let names = fs::read_dir(&self.root).map(|entries| entries.flatten().map(|e| e.file_name()).collect()).unwrap_or_else(|_| Vec::new());
        let loaded = names.iter().filter_map(|n| self.load(&n.to_string_lossy()).ok().filter(|r| *n == *r.name));
        let mut records: Vec<Record> = loaded.collect();
        records.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        records
    }

    /// Names of directories without a valid record: a run that died
    /// between mkdir and its first save, or a damaged record.
    pub fn unrecorded(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.root) else { return Vec::new() };
        let names = entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned());
        names.filter(|name| self.load(name).map_or(true, |r| r.name != *name)).collect()
    }

    /// Holds the engine-wide lock until dropped (for handing out addresses).
    pub fn lock(&self) -> Result<Flock<File>> {
        let path = self.root.join(".lock");
        let file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).with_context(|| format!("opening {}", path.display()))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno).with_context(|| format!("locking {}", path.display()))
    }

    /// Deletes a container's directory and everything in it.
    pub fn remove(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            bail!("refusing to remove {name:?}: not a container's directory");
        }
        remove_tree(&self.dir(name)).with_context(|| format!("removing the state of {name}"))
    }
}

/// Where this user's containers live.
fn state_root() -> PathBuf {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return PathBuf::from(ROOT_STATE_DIR);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join("mini-docker"),
        _ => PathBuf::from(format!("/tmp/mini-docker-{euid}")),
    }
}

/// `rm -rf`, also through directories without permissions (overlay's
/// work/work is mode 000; a rootless owner must chmod it to empty it).
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up(path);
            fs::remove_dir_all(path)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

fn open_up(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&entry.path());
        }
    }
}

/// A process, told apart from a later one that reuses its PID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    start_time: u64,
}

impl Process {
    pub fn current() -> Result<Process> {
        Process::of(std::process::id() as i32).context("reading this process's start time in /proc/self/stat: is /proc mounted?")
    }

    /// The process `pid` as it is now, if there is one.
    pub fn of(pid: i32) -> Option<Process> {
        let (_, start_time) = stat(pid)?;
        Some(Process { pid, start_time })
    }

    /// Still the same process, and not a zombie waiting to be reaped.
    pub fn is_alive(&self) -> bool {
        matches!(stat(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }
}

/// (state letter, start time) from /proc/PID/stat. The command name in
/// parentheses may hold spaces: the fields start after the last ')'.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some((fields.first()?.chars().next()?, fields.get(19)?.parse().ok()?))
}

/// What `ps` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The runtime is setting it up.
    Starting,
    Running,
    Exited(i32),
    /// Gone without a recorded end: its runtime was killed. `prune` tidies.
    Dead,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Status::Starting => write!(f, "starting"),
            Status::Running => write!(f, "running"),
            Status::Exited(code) => write!(f, "exited ({code})"),
            Status::Dead => write!(f, "dead"),
        }
    }
}

/// One container's record: the `config` file.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub name: String,
    pub hostname: String,
    /// The command line, for display.
    pub command: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// The mini-docker process that runs it (the supervisor, with -d).
    pub runtime: Option<Process>,
    /// Its PID 1, as the host sees it.
    pub container: Option<Process>,
    pub ip: Option<Ipv4Addr>,
    /// The host end of its veth.
    pub veth: Option<String>,
    /// Its cgroup's name (none rootless).
    pub cgroup: Option<String>,
    pub exit_code: Option<i32>,
    /// Started with -d: its output is in `log`.
    pub detached: bool,
}

impl Record {
    pub fn status(&self) -> Status {
        if let Some(code) = self.exit_code {
            return Status::Exited(code);
        }
        if self.container.is_some_and(|c| c.is_alive()) {
            return Status::Running;
        }
        if self.container.is_none() && self.runtime.is_some_and(|r| r.is_alive()) {
            return Status::Starting;
        }
        Status::Dead
    }

    /// Whether its resources (address, cgroup) may still be in use.
    pub fn is_active(&self) -> bool {
        matches!(self.status(), Status::Starting | Status::Running) || self.runtime.is_some_and(|r| r.is_alive())
    }

    /// Replaces `config` in `dir` whole: written aside, then renamed over
    /// it, so a reader sees the old record or the new one, never half.
    pub fn save(&self, dir: &Path) -> Result<()> {
        // STUDENT 09: write self.to_text() to a temporary file in dir, then rename(2) it over dir/config: readers must never see half a record.
        let temporary = dir.join(format!(".config.{}", std::process::id()));
        fs::write(&temporary, self.to_text()).with_context(|| format!("writing {}", temporary.display()))?;
        fs::rename(&temporary, dir.join("config")).with_context(|| format!("saving the state in {}", dir.display()))
        // STUDENT END
    }

    fn to_text(&self) -> String {
        let process = |p: &Option<Process>| p.map(|p| format!("{} {}", p.pid, p.start_time));
        let fields = [
            ("name", Some(self.name.clone())),
            ("hostname", Some(self.hostname.clone())),
            ("command", Some(self.command.replace('\n', " "))),
            ("created", Some(self.created.to_string())),
            ("runtime", process(&self.runtime)),
            ("container", process(&self.container)),
            ("ip", self.ip.map(|ip| ip.to_string())),
            ("veth", self.veth.clone()),
            ("cgroup", self.cgroup.clone()),
            ("exit", self.exit_code.map(|c| c.to_string())),
            ("detached", Some(self.detached.to_string())),
        ];
        fields.iter().filter_map(|(key, value)| value.as_ref().map(|v| format!("{key}={v}\n"))).collect()
    }

    fn parse(text: &str) -> Record {
        let mut record = Record::default();
        let process = |v: &str| {
            let (pid, start) = v.split_once(' ')?;
            Some(Process { pid: pid.parse().ok()?, start_time: start.parse().ok()? })
        };
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            match key {
                "name" => record.name = value.into(),
                "hostname" => record.hostname = value.into(),
                "command" => record.command = value.into(),
                "created" => record.created = value.parse().unwrap_or_default(),
                "runtime" => record.runtime = process(value),
                "container" => record.container = process(value),
                "ip" => record.ip = value.parse().ok(),
                "veth" => record.veth = Some(value.into()),
                "cgroup" => record.cgroup = Some(value.into()),
                "exit" => record.exit_code = value.parse().ok(),
                "detached" => record.detached = value == "true",
                _ => {}
            }
        }
        record
    }
}
