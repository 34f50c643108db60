//! Layer 08, control groups: limits on what the container may use
//! (cgroups(7)). Namespaces decide what a process can see; cgroups decide
//! how much it can take.
//!
//! A cgroup is a directory in a special filesystem: make one, write limits
//! into its files, write a PID into its cgroup.procs, and that process and
//! its future children are held to them. Two versions are in use:
//!
//! - v2 (unified, Ubuntu 22.04+, Debian 11+): one tree at /sys/fs/cgroup,
//!   files memory.max, pids.max, cpu.max; a controller must be enabled in
//!   the parent's cgroup.subtree_control before its files appear.
//! - v1 (legacy, or "hybrid" with an empty v2 tree at .../unified): one tree
//!   per controller, /sys/fs/cgroup/memory, /pids, /cpu, with files
//!   memory.limit_in_bytes, pids.max, cpu.cfs_quota_us and cpu.cfs_period_us.
//!
//! The container gets a cgroup (08: `ctlab-<runtime PID>`) in each tree it needs; the
//! runtime removes it when the container is gone.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
use nix::unistd::Pid;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The CFS scheduling period a cpu quota is a share of: 100 ms.
const CPU_PERIOD_US: u64 = 100_000;

/// What the command line asked for; None means no limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

/// clap's check of `--memory`: a size like 64M or 1G (k, m, g: powers of
/// 1024; a plain number is bytes), at least 6M like docker asks.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.strip_suffix('b').unwrap_or(&lower) {
        s if s.ends_with('k') => (&s[..s.len() - 1], 1 << 10),
        s if s.ends_with('m') => (&s[..s.len() - 1], 1 << 20),
        s if s.ends_with('g') => (&s[..s.len() - 1], 1 << 30),
        s => (s, 1),
    };
    let number: u64 = digits.parse().map_err(|_| "write a size like 64M or 1G (k, m, g; a plain number is bytes)".to_string())?;
    let bytes = number.checked_mul(unit).ok_or("that size is too large")?;
    if bytes < 6 << 20 {
        return Err("the smallest memory limit is 6M: a container needs a few megabytes to start at all".into());
    }
    Ok(bytes)
}

/// clap's check of `--pids`: at least 1.
pub fn parse_pids(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("give a whole number of processes, at least 1".into()),
    }
}

/// clap's check of `--cpus`: from 0.01 to the number of CPUs here.
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    match text.parse::<f64>() {
        Ok(cpus) if (0.01..=available).contains(&cpus) => Ok(cpus),
        _ => Err(format!("give a number of CPUs from 0.01 to {available}, e.g. 0.5")),
    }
}

/// Which cgroup filesystem the host uses, found as youki does: by the type
/// of the filesystem mounted at /sys/fs/cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

pub fn detect_version() -> Result<Version> {
    let root = statfs(CGROUP_ROOT).with_context(|| format!("statfs {CGROUP_ROOT}: is a cgroup filesystem mounted?"))?;
    match root.filesystem_type() {
        CGROUP2_SUPER_MAGIC => Ok(Version::V2),
        // A tmpfs holding one mount per controller: v1, or hybrid if an
        // (empty) v2 tree is at unified/; the limits live in the v1 trees.
        TMPFS_MAGIC => Ok(Version::V1),
        _ => bail!("{CGROUP_ROOT} is neither cgroup2 nor a tmpfs of v1 hierarchies: mount cgroups there"),
    }
}

/// The container's cgroup: one directory (v2) or one per controller (v1).
/// Dropping the one `create` made removes the directories.
pub struct Cgroup {
    directories: Vec<PathBuf>,
    /// False for one `find` found: exec joins it, and it stays.
    remove_on_drop: bool,
}

impl Cgroup {
    /// Makes the cgroup `name` and writes the limits, before the child exists.
    pub fn create(name: &str, limits: &Limits) -> Result<Cgroup> {
        let mut cgroup = Cgroup { directories: Vec::new(), remove_on_drop: true };
        match detect_version()? {
            Version::V2 => cgroup.create_v2(name, limits)?,
            Version::V1 => cgroup.create_v1(name, limits)?,
        }
        Ok(cgroup)
    }

    /// The cgroup `name` as it is now (for `exec`, which joins it, and
    /// `prune`, which removes it): the directories that exist.
    pub fn find(name: &str) -> Result<Cgroup> {
        let candidates = match detect_version()? {
            Version::V2 => vec![Path::new(CGROUP_ROOT).join(name)],
            Version::V1 => ["memory", "pids", "cpu"].iter().filter_map(|c| v1_hierarchy(c).ok()).map(|h| h.join(name)).collect(),
        };
        let mut directories = Vec::new();
        for directory in candidates {
            if directory.is_dir() && !directories.contains(&directory) {
                directories.push(directory);
            }
        }
        Ok(Cgroup { directories, remove_on_drop: false })
    }

    /// Removes the directories (once no process is left in them).
    pub fn remove(mut self) {
        self.remove_on_drop = true;
    }

    fn create_v2(&mut self, name: &str, limits: &Limits) -> Result<()> {
        // A cgroup only has the files of the controllers its parent enabled
        // for its children ("on the way down"). The root may hold processes
        // and still enable them: it is exempt from the no-internal-processes
        // rule that forbids both in any other cgroup.
        enable_controllers(Path::new(CGROUP_ROOT), &["memory", "pids", "cpu"])?;
        let directory = Path::new(CGROUP_ROOT).join(name);
        self.make(&directory)?;
        write_limits_v2(&directory, limits)
    }

    fn create_v1(&mut self, name: &str, limits: &Limits) -> Result<()> {
        let [memory, pids, cpu] = ["memory", "pids", "cpu"].map(|c| v1_hierarchy(c).map(|h| h.join(name)));
        let (memory, pids, cpu) = (memory?, pids?, cpu?);
        for directory in [&memory, &pids, &cpu] {
            // Two controllers may share one hierarchy: one directory then.
            if !self.directories.contains(directory) {
                self.make(directory)?;
            }
        }
        write_limits_v1(&memory, &pids, &cpu, limits)
    }

    fn make(&mut self, directory: &Path) -> Result<()> {
        fs::create_dir(directory).with_context(|| format!("creating the cgroup {}", directory.display()))?;
        self.directories.push(directory.to_path_buf());
        Ok(())
    }

    /// Moves the (waiting) child into the cgroup: it and everything it
    /// starts from now on are held to the limits.
    pub fn add(&self, child: Pid) -> Result<()> {
        for directory in &self.directories {
            write(&directory.join("cgroup.procs"), &child.to_string())?;
        }
        Ok(())
    }
}

impl Drop for Cgroup {
    /// rmdir works once no process is left in the cgroup; the kernel may
    /// still be finishing the container's last ones, so try for a moment.
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for directory in self.directories.iter().rev() {
            while fs::remove_dir(directory).is_err() && directory.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Writes v2's limit files: memory.max (and no swap), pids.max, cpu.max.
fn write_limits_v2(directory: &Path, limits: &Limits) -> Result<()> {
    if let Some(bytes) = limits.memory_bytes {
        write(&directory.join("memory.max"), &bytes.to_string())?;
        // Without this the hog swaps instead of being killed, where there is swap.
        if directory.join("memory.swap.max").exists() {
            write(&directory.join("memory.swap.max"), "0")?;
        }
    }
    if let Some(pids) = limits.pids {
        write(&directory.join("pids.max"), &pids.to_string())?;
    }
    if let Some(cpus) = limits.cpus {
        write(&directory.join("cpu.max"), &format!("{} {CPU_PERIOD_US}", cpu_quota_us(cpus)))?;
    }
    Ok(())
}

/// Writes v1's limit files, each in its controller's directory.
fn write_limits_v1(memory: &Path, pids: &Path, cpu: &Path, limits: &Limits) -> Result<()> {
    if let Some(bytes) = limits.memory_bytes {
        write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
        // Memory + swap, where the kernel accounts swap: no swapping past it.
        if memory.join("memory.memsw.limit_in_bytes").exists() {
            write(&memory.join("memory.memsw.limit_in_bytes"), &bytes.to_string())?;
        }
    }
    if let Some(max) = limits.pids {
        write(&pids.join("pids.max"), &max.to_string())?;
    }
    if let Some(cpus) = limits.cpus {
        write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
        write(&cpu.join("cpu.cfs_quota_us"), &cpu_quota_us(cpus).to_string())?;
    }
    Ok(())
}

/// Runtime per period: 0.5 CPUs is 50 ms of every 100 ms.
fn cpu_quota_us(cpus: f64) -> u64 {
    (cpus * CPU_PERIOD_US as f64).round() as u64
}

/// Writes "+memory +pids ..." into `parent`'s cgroup.subtree_control, for
/// the controllers its own cgroup.controllers offers.
fn enable_controllers(parent: &Path, wanted: &[&str]) -> Result<()> {
    let available = fs::read_to_string(parent.join("cgroup.controllers")).context("reading cgroup.controllers")?;
    let missing: Vec<&&str> = wanted.iter().filter(|c| !available.split_whitespace().any(|a| a == **c)).collect();
    if !missing.is_empty() {
        bail!("cgroup v2 here offers no {missing:?} controller (cgroup.controllers: {:?})", available.trim());
    }
    let enable: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
    let control = parent.join("cgroup.subtree_control");
    match fs::write(&control, enable.join(" ")) {
        // Only the real root may hold processes and enable controllers
        // for its children; inside a container's cgroup namespace,
        // /sys/fs/cgroup is not the real root.
        Err(err) if err.raw_os_error() == Some(libc::EBUSY) => bail!(
            "cannot enable controllers in {}: it holds processes and is not the real root cgroup (inside a container?), which cgroup v2 forbids; run on the host, or move those processes into a child cgroup first",
            control.display()
        ),
        result => result.with_context(|| format!("writing {:?} to {}", enable.join(" "), control.display())),
    }
}

/// Where a v1 controller's hierarchy is mounted (/sys/fs/cgroup/memory...),
/// from /proc/self/mountinfo: controllers may share one ("cpu,cpuacct").
fn v1_hierarchy(controller: &str) -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    mounts
        .lines()
        .filter_map(|line| line.split_once(" - "))
        .find(|(_, fs)| {
            let mut fields = fs.split_whitespace();
            fields.next() == Some("cgroup") && fields.nth(1).is_some_and(|opts| opts.split(',').any(|o| o == controller))
        })
        .and_then(|(mount, _)| mount.split_whitespace().nth(4).map(PathBuf::from))
        .with_context(|| format!("no cgroup v1 hierarchy has the {controller} controller mounted"))
}

/// Writes a cgroup file, which must exist: without O_CREAT a misspelt name
/// or a controller that is not enabled reads ENOENT, not EACCES.
fn write(file: &Path, value: &str) -> Result<()> {
    let open = fs::OpenOptions::new().write(true).open(file);
    open.and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
        .with_context(|| format!("writing {value:?} to {}", file.display()))
}
