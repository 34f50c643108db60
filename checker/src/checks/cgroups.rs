//! Layer 08: the container runs inside a cgroup of its own from its first
//! instruction, its limits are written and enforced, and the cgroup is gone
//! afterwards. The checker finds the cgroup from outside, through
//! /proc/PID/cgroup and the host's hierarchies, for v1 and v2 alike.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::{every_step, expect, fail, Check, Failure, Kind, Outcome};
use crate::host::{descendants, sleeper};
use crate::run::{host, poll, Output, Running, Target};

pub fn checks() -> Vec<Check> {
    let check = |name, kind, proves, run| Check { name, layer: 8, kind, proves, applies: every_step, rootless: false, run };
    vec![
        check("cgroup-joined", Kind::Isolation, "COMMAND already runs in a cgroup made for this container", cgroup_joined),
        check("limits-written", Kind::Isolation, "--memory 32M --pids 8 --cpus 0.5 write 32 MiB, 8 and a 50% quota", limits_written),
        check("memory-hog-oom-killed", Kind::Isolation, "under --memory 32M, `tail /dev/zero` is OOM-killed: exit 137", memory_hog_oom_killed),
        check("fork-loop-capped", Kind::Isolation, "under --pids 8, a fork loop never has more than 8 processes", fork_loop_capped),
        check("bad-limits-refused", Kind::Contract, "a bad --memory, --pids or --cpus gives 125 and one line", bad_limits_refused),
        // mini-docker names cgroups after containers: its own checks cover this.
        Check { applies: super::before_engine, ..check("cgroup-removed", Kind::Contract, "the cgroup is gone after exit, a failed start and SIGTERM", cgroup_removed) },
    ]
}

/// True on a cgroup v2 host (cgroup2 mounted at /sys/fs/cgroup).
fn unified() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The lines of /proc/PID/cgroup for the controllers a limit needs: the
/// single `0::` line on v2; the memory, pids and cpu lines on v1.
fn relevant_lines(proc_cgroup: &str) -> Vec<&str> {
    let v2 = unified();
    proc_cgroup
        .lines()
        .filter(|line| {
            let controllers = line.split(':').nth(1).unwrap_or_default();
            if v2 { line.starts_with("0::") } else { controllers.split(',').any(|c| ["memory", "pids", "cpu"].contains(&c)) }
        })
        .collect()
}

fn cgroup_joined(t: &Target) -> Outcome {
    let out = t.run(&["cat", "/proc/self/cgroup"]);
    let lines = relevant_lines(&out.stdout);
    let want = if unified() { 1 } else { 3 };
    let marker = format!("/{}", t.cgroup_prefix());
    let ok = out.status == Some(0) && lines.len() == want && lines.iter().all(|l| l.contains(&marker));
    let hint = "create the cgroup before clone, and write the child's PID to cgroup.procs before opening the gate";
    expect(ok, &out, format!("{want} line(s) for memory/pids/cpu, each in a {marker}… cgroup"), hint)
}

/// The host directory of `controller`'s cgroup for process `pid`.
fn cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    if unified() {
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        return Some(PathBuf::from(format!("/sys/fs/cgroup{path}")));
    }
    let path = text.lines().find_map(|l| {
        let mut fields = l.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == controller).then(|| path.to_string())
    })?;
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut fs_fields = right.split_whitespace();
        let is_it = fs_fields.next() == Some("cgroup") && fs_fields.nth(1)?.split(',').any(|o| o == controller);
        is_it.then(|| left.split_whitespace().nth(4).map(String::from))?
    })?;
    Some(PathBuf::from(format!("{mount}{path}")))
}

fn read(dir: &Option<PathBuf>, file: &str) -> String {
    dir.as_ref().and_then(|d| fs::read_to_string(d.join(file)).ok()).unwrap_or_default().trim().to_string()
}

fn limits_written(t: &Target) -> Outcome {
    let sleeper = sleeper(1007);
    let args = ["--memory", "32M", "--pids", "8", "--cpus", "0.5", &sleeper[0], &sleeper[1]];
    let running = t.spawn(&args).map_err(|err| Failure::new(&t.describe(&args, t.who), "it starts", format!("{err:#}"), ""))?;
    let pid = poll(Duration::from_secs(10), || descendants(running.pid()).into_iter().find(|(_, a)| a[..] == sleeper[..]).map(|(p, _)| p));
    let seen = match pid {
        Some(pid) if unified() => {
            let dir = cgroup_dir(pid, "");
            [read(&dir, "memory.max"), read(&dir, "pids.max"), read(&dir, "cpu.max")]
        }
        Some(pid) => {
            let (memory, pids, cpu) = (cgroup_dir(pid, "memory"), cgroup_dir(pid, "pids"), cgroup_dir(pid, "cpu"));
            let quota = format!("{} {}", read(&cpu, "cpu.cfs_quota_us"), read(&cpu, "cpu.cfs_period_us"));
            [read(&memory, "memory.limit_in_bytes"), read(&pids, "pids.max"), quota]
        }
        None => Default::default(),
    };
    running.kill_container();
    let out = running.finish(Duration::from_secs(5));
    let want = ["33554432", "8", "50000 100000"];
    let files = if unified() { "memory.max, pids.max, cpu.max" } else { "memory.limit_in_bytes, pids.max, cpu.cfs_quota_us + cpu.cfs_period_us" };
    let out = Output { stdout: format!("[checker: {files} of its cgroup: {seen:?}]"), ..out };
    let hint = "write the limits into the cgroup's files before the child joins (cpu: quota = cpus x period, period 100000 us)";
    expect(seen == want, &out, format!("{files} = {want:?}"), hint)
}

fn memory_hog_oom_killed(t: &Target) -> Outcome {
    let out = t.run(&["--memory", "32M", "tail", "/dev/zero"]);
    let hint = "memory.max (v2) or memory.limit_in_bytes (v1) = the size in bytes; on v2 also memory.swap.max = 0";
    expect(out.status == Some(137), &out, "exit 137 (SIGKILL from the OOM killer)", hint)
}

/// strace holds each write(2) of the runtime's parent for 0.1 s, so a
/// runtime that moves the child into its cgroup after letting it go loses
/// the race to the fork loop every time, not once in a while.
fn fork_loop_capped(t: &Target) -> Outcome {
    // The loop runs in a subshell, which dies when a fork fails; the outer
    // shell then counts what is alive with builtins only (no fork needed).
    let script = "(i=0; while [ $i -lt 30 ]; do sleep 2 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo live=$#";
    let runtime = match t.shell_command(&["--pids", "8", "sh", "-c", script]) {
        Ok(command) => command,
        Err(err) => return fail("strace", "it starts", format!("{err:#}"), ""),
    };
    let delayed = format!("exec strace -qq -o /dev/null -e trace=write -e inject=write:delay_enter=100000 {runtime}");
    let out = host("sh", &["-c", &delayed]);
    let out = Output { ran: format!("strace -e inject=write:delay_enter=100000 {} --pids 8 sh -c '<fork loop>'", t.program()), ..out };
    let live: Option<usize> = out.stdout.trim().strip_prefix("live=").and_then(|n| n.parse().ok());
    let ok = out.status == Some(0) && live.is_some_and(|n| (2..=8).contains(&n));
    expect(ok, &out, "exit 0 and live=N with N at most 8 (and some sleeps started)", "pids.max = N in the container's pids cgroup, joined before the gate opens")
}

fn bad_limits_refused(t: &Target) -> Outcome {
    let cases: [&[&str]; 9] = [
        &["--memory", "64X"],
        &["--memory", "0"],
        &["--memory", "-5M"],
        &["--pids", "0"],
        &["--pids", "many"],
        &["--cpus", "0"],
        &["--cpus", "-1"],
        &["--cpus", "half"],
        &["--cpus", "100000"],
    ];
    for case in cases {
        let mut args = case.to_vec();
        args.push("true");
        let out = t.run(&args);
        let ok = out.status == Some(125) && super::contract::one_line(&out.stderr);
        expect(ok, &out, "exit 125 and one line", "check each limit in clap's value_parser")?;
    }
    Ok(())
}

/// Every cgroup directory named `name` on the host.
fn cgroups_named(name: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .map(|entries| entries.flatten().map(|e| e.path().join(name)).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    let top = PathBuf::from("/sys/fs/cgroup").join(name);
    if top.is_dir() {
        found.push(top);
    }
    found
}

fn cgroup_removed(t: &Target) -> Outcome {
    let hint = "remove the cgroup directories (rmdir) when the container is gone, on every path out of the runtime";
    let name = |r: &Running| format!("ctlab-{}", r.pid());
    let gone = |n: &str| poll(Duration::from_secs(3), || cgroups_named(n).is_empty().then_some(())).is_some();
    for args in [&["--pids", "8", "true"][..], &["--pids", "8", "ctlab-no-such-command"][..]] {
        let running = t.spawn(args).map_err(|err| Failure::new(&t.describe(args, t.who), "it starts", format!("{err:#}"), ""))?;
        let cgroup = name(&running);
        let out = running.finish(Duration::from_secs(10));
        let left = cgroups_named(&cgroup);
        expect(gone(&cgroup), &out, format!("no {cgroup} left (found {left:?})"), hint)?;
    }
    let script = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done";
    let args = ["--memory", "64M", "sh", "-c", script];
    let mut running = t.spawn(&args).map_err(|err| Failure::new("sh", "it starts", format!("{err:#}"), ""))?;
    let cgroup = name(&running);
    let existed = running.wait_for_stdout("ready", Duration::from_secs(10)) && !cgroups_named(&cgroup).is_empty();
    unsafe { libc::kill(running.pid(), libc::SIGTERM) };
    let out = running.finish(Duration::from_secs(10));
    let out = Output { ran: format!("{}, then SIGTERM to the runtime", out.ran), ..out };
    if !existed {
        return fail(&out.ran, &format!("{cgroup} while it runs"), out.summary(), "name the cgroup ctlab-<runtime PID>");
    }
    expect(gone(&cgroup), &out, format!("no {cgroup} left after SIGTERM"), hint)
}
