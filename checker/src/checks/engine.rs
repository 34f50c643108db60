//! Layer 09, mini-docker: the engine around the runtime. A ROOTFS that is
//! never written, names, ps, exec, stop, rm, logs, -d, --rm, -e, -v, a
//! bridge with NAT, many containers at once, and a host left exactly as it
//! was. These checks speak mini-docker's own command line (`Target::raw`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{expect, fail, Check, Failure, Kind, Outcome};
use crate::run::{host, poll, As, Output, Target};
use crate::steps::workspace_root;

pub fn checks() -> Vec<Check> {
    let check = |name, kind, proves, rootless, run| Check { name, layer: 9, kind, proves, applies: |_| true, rootless, run };
    use Kind::{Contract, Isolation};
    vec![
        check("rootfs-never-written", Isolation, "writes and deletes inside show inside, and leave ROOTFS byte for byte the same", true, rootfs_never_written),
        check("hostname-is-name", Isolation, "--name names the container; the hostname is the name unless --hostname says otherwise", true, hostname_is_name),
        check("detach-ps-logs", Isolation, "-d prints the name and returns; ps lists it running with its host PID; logs has its stdout and stderr; rm -f ends it", true, detach_ps_logs),
        check("exec-joins-container", Isolation, "exec runs in the container's six namespaces and cgroup, with its environment; its exit status comes back", true, exec_joins_container),
        check("stop-then-rm", Isolation, "stop sends SIGTERM, then SIGKILL after -t; ps then says exited; rm removes it; cgroup gone", false, stop_then_rm),
        check("auto-remove", Isolation, "--rm leaves no record; without it ps -a shows the exit status", true, auto_remove),
        check("env-and-volumes", Isolation, "-e sets variables (and the host's do not leak in); -v binds a host path, :ro read-only", false, env_and_volumes),
        check("network-none", Isolation, "--network none gives only lo", true, network_none),
        check("bridge-pings", Isolation, "two containers on the bridge ping each other, and the host pings both", false, bridge_pings),
        check("nat-to-outside", Isolation, "a container reaches a host beyond this one, seen there with this host's address", false, nat_to_outside),
        check("twenty-at-once", Isolation, "20 containers started at once (bridge and none) get distinct names and addresses, and leave nothing", false, twenty_at_once),
        check("limits-need-root", Contract, "rootless, limits and bridge networking are refused with one line, exit 125", true, limits_need_root),
        check("bad-input-refused", Contract, "bad names, sizes, networks, -e, -v, ROOTFS, unknown containers: exit 125, one line, nothing left", false, bad_input_refused),
        check("killed-runtime-pruned", Contract, "after the runtime is SIGKILLed the container is not running, and prune removes what is left", false, killed_runtime_pruned),
        check("nothing-leaks", Contract, "after 40+ mixed runs, interfaces, netns, cgroups, mounts and state are as before", false, nothing_leaks),
    ]
}

/// A container name no other run shares.
fn unique(tag: &str) -> String {
    format!("ctlab-{tag}-{}", std::process::id())
}

fn rootfs() -> String {
    workspace_root().join("rootfs").display().to_string()
}

/// `mini-docker ARGS`, as the check's user.
fn md(t: &Target, args: &[&str]) -> Output {
    t.raw().run(args)
}

/// `run` with `options`, then ROOTFS and `command`.
fn run_args<'a>(options: &[&'a str], rootfs: &'a str, command: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend(options);
    args.push(rootfs);
    args.extend(command);
    args
}

/// The network options for this user: none when rootless.
fn network(t: &Target) -> &'static [&'static str] {
    if t.who == As::Root { &[] } else { &["--network", "none"] }
}

/// Starts `command` detached as `name`; fails the check if it does not.
fn start_detached(t: &Target, name: &str, extra: &[&str], command: &[&str]) -> Result<Output, Failure> {
    let root = rootfs();
    let mut options = vec!["-d", "--name", name];
    options.extend(network(t));
    options.extend(extra);
    let out = md(t, &run_args(&options, &root, command));
    let ok = out.status == Some(0) && out.stdout_trimmed() == name;
    if ok { Ok(out) } else { Err(Failure::of(&out, format!("exit 0 and the name {name:?} on stdout"), "run -d forks a supervisor, which reports once COMMAND runs")) }
}

/// Removes containers a check made, whatever state they are in.
fn remove(t: &Target, names: &[&str]) {
    for name in names {
        let _ = md(t, &["rm", "-f", name]);
    }
}

/// `ps -a`'s row for `name`: NAME, PID, STATUS (maybe two words), IP.
fn ps_row(t: &Target, name: &str) -> Option<(String, String, String)> {
    let out = md(t, &["ps", "-a"]);
    let line = out.stdout.lines().find(|l| l.split_whitespace().next() == Some(name))?.to_string();
    let words: Vec<&str> = line.split_whitespace().collect();
    let status = if words.get(2) == Some(&"exited") { format!("exited {}", words.get(3)?) } else { words.get(2)?.to_string() };
    Some((words.get(1)?.to_string(), status, line))
}

/// Every file under `dir` with its type, mode, owner, size and content
/// hash: equal manifests mean an unchanged tree.
fn manifest(dir: &Path) -> BTreeSet<String> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        if meta.is_file() {
            std::fs::read(&path).unwrap_or_default().hash(&mut hasher);
        }
        found.insert(format!("{} {:o} {}:{} {} {:x}", path.display(), meta.mode(), meta.uid(), meta.gid(), meta.len(), hasher.finish()));
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
        }
    }
    found
}

fn rootfs_never_written(t: &Target) -> Outcome {
    let root = rootfs();
    let before = manifest(Path::new(&root));
    // Writes where this user may: everywhere as root; rootless, the
    // overlay's own root directory (copy-up of root-owned ones is refused).
    let (new, gone) = if t.who == As::Root { ("/etc/ctlab-new", "/etc/hostname") } else { ("/ctlab-new", "/README.md") };
    // As root also a whole directory (overlay then needs userxattr in a user
    // namespace, or it answers EIO); rootless, /home's root-owned files stay.
    let directory = if t.who == As::Root { "rm -rf /home && test ! -e /home && " } else { "" };
    let script = format!("echo written > {new} && cat {new} && rm -f {gone} && test ! -e {gone} && {directory}echo deleted && mkdir -p /ctlab-dir && echo done");
    let out = md(t, &run_args(&[&["--rm"][..], network(t)].concat(), &root, &["sh", "-c", &script]));
    let after = manifest(Path::new(&root));
    let changed: Vec<&String> = before.symmetric_difference(&after).take(3).collect();
    let ok = out.status == Some(0) && out.stdout.contains("written") && out.stdout.contains("deleted") && changed.is_empty();
    let out = Output { stdout: format!("{}[checker: changed in ROOTFS: {changed:?}]", out.stdout), ..out };
    let hint = "mount an overlay with ROOTFS as lowerdir and the container's own upperdir and workdir, and pivot into it";
    expect(ok, &out, "\"written\", \"deleted\", \"done\", and ROOTFS unchanged", hint)
}

fn hostname_is_name(t: &Target) -> Outcome {
    let root = rootfs();
    let name = unique("named");
    let options = [&["--rm", "--name", &name][..], network(t)].concat();
    let out = md(t, &run_args(&options, &root, &["hostname"]));
    expect(out.status == Some(0) && out.stdout_trimmed() == name, &out, format!("the hostname {name:?}"), "default --hostname to the container's name")?;
    let options = [&["--rm", "--name", &name, "--hostname", "elsewhere"][..], network(t)].concat();
    let out = md(t, &run_args(&options, &root, &["hostname"]));
    expect(out.status == Some(0) && out.stdout_trimmed() == "elsewhere", &out, "the hostname \"elsewhere\"", "--hostname wins over the name")
}

fn detach_ps_logs(t: &Target) -> Outcome {
    let name = unique("detached");
    let started = Instant::now();
    let result = detach_ps_logs_of(t, &name, started);
    remove(t, &[&name]);
    result
}

fn detach_ps_logs_of(t: &Target, name: &str, started: Instant) -> Outcome {
    let script = "echo to-stdout; echo to-stderr >&2; exec sleep 1009";
    let out = start_detached(t, name, &[], &["sh", "-c", script])?;
    if started.elapsed() > Duration::from_secs(5) {
        return fail(&out.ran, "run -d to return at once", format!("it took {:?}", started.elapsed()), "the supervisor reports as soon as COMMAND runs");
    }
    let row = ps_row(t, name);
    let pid: Option<i32> = row.as_ref().and_then(|(pid, _, _)| pid.parse().ok());
    let in_container = pid.is_some_and(|pid| {
        let ns = |p: String| std::fs::read_link(p).ok();
        ns(format!("/proc/{pid}/ns/pid")) != ns("/proc/self/ns/pid".into())
    });
    let listed = md(t, &["ps"]);
    let ok = row.as_ref().is_some_and(|(_, status, _)| status == "running") && in_container;
    expect(ok, &listed, format!("a row for {name}: its host PID (in a PID namespace of its own) and \"running\""), "ps reads each record and checks its PID (and start time) is alive")?;
    let logs = poll(Duration::from_secs(5), || {
        let out = md(t, &["logs", name]);
        (out.stdout.contains("to-stdout") && out.stdout.contains("to-stderr")).then_some(out)
    });
    if logs.is_none() {
        return fail(&format!("mini-docker logs {name}"), "to-stdout and to-stderr", md(t, &["logs", name]).summary(), "the supervisor's stdout and stderr go to the container's log file");
    }
    let out = md(t, &["rm", "-f", name]);
    let pid_gone = pid.is_some_and(|pid| poll(Duration::from_secs(5), || (!Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid)).then_some(())).is_some());
    let ok = out.status == Some(0) && pid_gone && ps_row(t, name).is_none();
    expect(ok, &out, "exit 0, its PID 1 gone, no row in ps -a", "rm -f stops a running container (SIGKILL) before removing it")
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

fn exec_joins_container(t: &Target) -> Outcome {
    let name = unique("exec");
    let result = exec_joins(t, &name);
    remove(t, &[&name]);
    result
}

fn exec_joins(t: &Target, name: &str) -> Outcome {
    start_detached(t, name, &["-e", "CTLAB_FROM_RUN=yes"], &["sleep", "1010"])?;
    let pid: i32 = ps_row(t, name).and_then(|(pid, _, _)| pid.parse().ok()).unwrap_or(0);
    let kinds = ["user", "mnt", "pid", "net", "ipc", "uts"];
    let script = format!("for k in {}; do readlink /proc/self/ns/$k; done; echo $CTLAB_FROM_RUN; hostname; cat /proc/self/cgroup", kinds.join(" "));
    let out = md(t, &["exec", name, "sh", "-c", &script]);
    let want: Vec<String> = kinds.iter().map(|k| std::fs::read_link(format!("/proc/{pid}/ns/{k}")).map(|l| l.display().to_string()).unwrap_or_default()).collect();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let joined = lines.len() >= 8 && lines[..6] == want.iter().map(String::as_str).collect::<Vec<_>>()[..];
    let env_and_name = lines.get(6) == Some(&"yes") && lines.get(7) == Some(&name);
    let in_cgroup = t.who != As::Root || out.stdout.contains(&format!("/mini-docker-{name}"));
    let ok = out.status == Some(0) && joined && env_and_name && in_cgroup;
    let hint = "setns() into user first, then mnt, pid, net, ipc, uts (from /proc/PID/ns/*), join the cgroup, and fork: the PID namespace applies to children";
    expect(ok, &out, format!("the namespaces of its PID 1 {want:?}, \"yes\", {name:?}, its cgroup"), hint)?;
    let out = md(t, &["exec", name, "sh", "-c", "exit 7"]);
    expect(out.status == Some(7), &out, "exit 7", "exec waits for its child and returns its exit status")
}

fn stop_then_rm(t: &Target) -> Outcome {
    let (trapping, ignoring) = (unique("stop-term"), unique("stop-kill"));
    let result = stop_then_rm_of(t, &trapping, &ignoring);
    remove(t, &[&trapping, &ignoring]);
    result
}

fn stop_then_rm_of(t: &Target, trapping: &str, ignoring: &str) -> Outcome {
    start_detached(t, trapping, &["--memory", "64M"], &["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"])?;
    start_detached(t, ignoring, &[], &["sleep", "1011"])?;
    let out = md(t, &["rm", trapping]);
    expect(out.status == Some(125) && super::contract::one_line(&out.stderr), &out, "exit 125: it is running", "rm refuses a running container (rm -f stops it)")?;
    let out = md(t, &["stop", "-t", "10", trapping]);
    let status = ps_row(t, trapping).map(|(_, s, _)| s);
    let cgroups_left = cgroup_dirs().into_iter().filter(|d| d.ends_with(format!("mini-docker-{trapping}"))).count();
    let ok = out.status == Some(0) && status.as_deref() == Some("exited (3)") && cgroups_left == 0;
    let out = Output { stdout: format!("{}[checker: ps -a says {status:?}; {cgroups_left} cgroup dirs left]", out.stdout), ..out };
    expect(ok, &out, "exit 0, then ps -a says \"exited (3)\" and its cgroup is gone", "SIGTERM its PID 1, wait for it, and let its runtime record the exit")?;
    let began = Instant::now();
    let out = md(t, &["stop", "-t", "1", ignoring]);
    let took = began.elapsed();
    let status = ps_row(t, ignoring).map(|(_, s, _)| s);
    let ok = out.status == Some(0) && status.as_deref() == Some("exited (137)") && took < Duration::from_secs(8);
    let out = Output { stdout: format!("{}[checker: ps -a says {status:?} after {took:?}]", out.stdout), ..out };
    expect(ok, &out, "\"exited (137)\" soon after the 1 s timeout (sleep ignores SIGTERM as PID 1)", "SIGKILL once -t seconds have passed")?;
    let out = md(t, &["rm", trapping, ignoring]);
    let gone = ps_row(t, trapping).is_none() && ps_row(t, ignoring).is_none() && !state_dir(t).join(trapping).exists();
    expect(out.status == Some(0) && gone, &out, "exit 0, and neither in ps -a nor in the state directory", "rm deletes the container's state directory")
}

fn auto_remove(t: &Target) -> Outcome {
    let root = rootfs();
    let (removed, kept) = (unique("rm"), unique("kept"));
    let out = md(t, &run_args(&[&["--rm", "--name", &removed][..], network(t)].concat(), &root, &["sh", "-c", "exit 4"]));
    let out2 = md(t, &run_args(&[&["--name", &kept][..], network(t)].concat(), &root, &["sh", "-c", "exit 5"]));
    let (gone, status) = (ps_row(t, &removed).is_none() && !state_dir(t).join(&removed).exists(), ps_row(t, &kept).map(|r| r.1));
    remove(t, &[&kept]);
    expect(out.status == Some(4) && gone, &out, "exit 4 and no record left", "with --rm, remove the state directory after the container exits")?;
    expect(out2.status == Some(5) && status.as_deref() == Some("exited (5)"), &out2, "exit 5, then ps -a shows \"exited (5)\"", "save the exit status in the record")
}

fn env_and_volumes(t: &Target) -> Outcome {
    let root = rootfs();
    let dir = PathBuf::from(format!("/tmp/ctlab-check-volume-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("from-host"), "host data\n");
    let (rw, ro) = (format!("{}:/data", dir.display()), format!("{}:/ro:ro", dir.display()));
    let script = "echo \"$GREETING|$SPACED|${CTLAB_HOST_ONLY:-unset}\"; cat /data/from-host; echo inside > /data/from-container; echo x > /ro/denied 2>/dev/null || echo ro-refused";
    let args = run_args(&["--rm", "-e", "GREETING=hello", "-e", "SPACED=a b", "-v", &rw, "-v", &ro], &root, &["sh", "-c", script]);
    let mut command = t.raw().command(&args, t.who).map_err(|e| Failure::new("mini-docker run", "it starts", format!("{e:#}"), ""))?;
    command.env("CTLAB_HOST_ONLY", "leaked");
    let out = crate::run::Running::start(command, t.raw().describe(&args, t.who), b"").map(|r| r.finish(crate::run::TIMEOUT));
    let written = std::fs::read_to_string(dir.join("from-container")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.map_err(|e| Failure::new("mini-docker run", "it starts", format!("{e:#}"), ""))?;
    let ok = out.status == Some(0) && out.stdout == "hello|a b|unset\nhost data\nro-refused\n" && written == "inside\n";
    let out = Output { stdout: format!("{}[checker: the host's file says {written:?}]", out.stdout), ..out };
    expect(ok, &out, "hello|a b|unset, host data, ro-refused, and \"inside\" written through to the host", "set only the container's environment before exec; bind-mount each -v (remount read-only for :ro)")
}

fn network_none(t: &Target) -> Outcome {
    let out = md(t, &run_args(&["--rm", "--network", "none"], &rootfs(), &["ip", "-o", "link"]));
    let names: Vec<&str> = out.stdout.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    expect(out.status == Some(0) && names == ["lo"], &out, "only lo", "with --network none, still a new network namespace, with lo up and no veth")
}

fn bridge_pings(t: &Target) -> Outcome {
    let (a, b) = (unique("ping-a"), unique("ping-b"));
    let result = bridge_pings_of(t, &a, &b);
    remove(t, &[&a, &b]);
    result
}

fn ip_of(t: &Target, name: &str) -> Option<String> {
    ps_row(t, name).and_then(|(_, _, line)| line.split_whitespace().nth(3).map(String::from)).filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

fn bridge_pings_of(t: &Target, a: &str, b: &str) -> Outcome {
    start_detached(t, a, &[], &["sleep", "1012"])?;
    start_detached(t, b, &[], &["sleep", "1012"])?;
    let (Some(ip_a), Some(ip_b)) = (ip_of(t, a), ip_of(t, b)) else {
        return fail("mini-docker ps", "an IP for each container", md(t, &["ps"]).stdout, "record each container's address");
    };
    if ip_a == ip_b {
        return fail("mini-docker ps", "two different addresses", format!("{ip_a} twice"), "hand out addresses under a lock, skipping those of live containers");
    }
    let out = md(t, &["exec", a, "ping", "-c", "1", "-W", "2", &ip_b]);
    expect(out.status == Some(0), &out, format!("{a} pings {b} at {ip_b}"), "plug each veth's host end into the bridge (IFLA_MASTER) and set it up")?;
    for ip in [&ip_a, &ip_b] {
        let out = host("ping", &["-c", "1", "-W", "2", ip]);
        expect(out.status == Some(0), &out, format!("the host pings {ip}"), "the bridge holds the gateway address and is up")?;
    }
    Ok(())
}

/// An "outside" host: a network namespace behind a veth, with no route
/// back to the containers' subnet. A reply can only come if the packets
/// left with this host's address (masquerade).
fn nat_to_outside(t: &Target) -> Outcome {
    // With no container left, prune removes the bridge and its NAT table:
    // the run below must set them up itself.
    let _ = md(t, &["prune"]);
    let netns = format!("ctlab-outside-{}", std::process::id());
    let veth = format!("ctlabo{}", std::process::id() % 100_000);
    let setup = format!(
        "ip netns add {netns} && ip link add {veth} type veth peer name eth0 netns {netns} && ip addr add 198.51.100.1/24 dev {veth} && ip link set {veth} up && \
         ip -n {netns} addr add 198.51.100.2/24 dev eth0 && ip -n {netns} link set eth0 up && ip -n {netns} link set lo up && \
         ip netns exec {netns} nft -f - <<'EOF'\ntable ip seen {{\n chain input {{\n  type filter hook input priority 0;\n  ip saddr 198.51.100.1 icmp type echo-request counter\n  ip saddr 172.16.0.0/12 counter\n }}\n}}\nEOF"
    );
    let prepared = host("sh", &["-c", &setup]);
    let result = if prepared.status == Some(0) { nat_check(t, &netns) } else { fail(&prepared.ran, "the outside namespace", prepared.summary(), "(the checker's own set-up; needs iproute2 and nft)") };
    let _ = host("sh", &["-c", &format!("ip netns del {netns}; ip link del {veth} 2>/dev/null; true")]);
    result
}

fn nat_check(t: &Target, netns: &str) -> Outcome {
    let out = md(t, &run_args(&["--rm"], &rootfs(), &["ping", "-c", "2", "-W", "2", "198.51.100.2"]));
    let counters = host("ip", &["netns", "exec", netns, "nft", "list", "table", "ip", "seen"]);
    let packets: Vec<u64> = counters.stdout.split("packets ").skip(1).filter_map(|s| s.split_whitespace().next()?.parse().ok()).collect();
    let from_host = packets.first().copied().unwrap_or(0);
    let from_containers = packets.get(1).copied().unwrap_or(0);
    let ok = out.status == Some(0) && from_host >= 1 && from_containers == 0;
    let out = Output { stdout: format!("{}[checker: outside saw {from_host} pings from 198.51.100.1 and {from_containers} from 172.16/12]", out.stdout), ..out };
    expect(ok, &out, "replies, and outside sees the pings come from the host's address", "enable net.ipv4.ip_forward and masquerade the bridge's subnet (nft ... masquerade)")
}

/// Runs `count` containers at once; returns their outputs.
fn run_many(t: &Target, count: usize, command: &[&str]) -> Vec<Output> {
    let root = rootfs();
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let network: &[&str] = if i % 2 == 0 { &[] } else { &["--network", "none"] };
            let args: Vec<String> = run_args(&[&["--rm"][..], network].concat(), &root, command).iter().map(|a| a.to_string()).collect();
            let target = t.raw();
            std::thread::spawn(move || target.run(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).collect()
}

fn twenty_at_once(t: &Target) -> Outcome {
    let before = HostState::stable(t);
    let outs = run_many(t, 20, &["sh", "-c", "hostname; ip -4 -o addr show eth0 2>/dev/null | awk '{print $4}'; sleep 1"]);
    let after = HostState::settled(t, &before);
    let mut names = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for out in &outs {
        expect(out.status == Some(0), out, "exit 0 with 19 others starting at once", "claim names with mkdir (atomic) and addresses under a lock")?;
        let mut lines = out.stdout.lines();
        names.insert(lines.next().unwrap_or_default().to_string());
        if let Some(address) = lines.next() {
            addresses.insert(address.to_string());
        }
    }
    if outs.len() != 20 || names.len() != 20 || addresses.len() != 10 {
        return fail("20 × mini-docker run --rm", "20 distinct names, 10 distinct addresses", format!("{} names, {} addresses: {addresses:?}", names.len(), addresses.len()), "generate names that differ, and never hand out an address a live container has");
    }
    before.compare(&after, "20 × mini-docker run --rm at once")
}

fn limits_need_root(t: &Target) -> Outcome {
    if t.who == As::Root {
        return Ok(()); // what this proves is about unprivileged users
    }
    let root = rootfs();
    for options in [&["--rm", "--network", "none", "-m", "64M"][..], &["--rm", "--network", "none", "--pids-limit", "5"], &["--rm"]] {
        let out = md(t, &run_args(options, &root, &["true"]));
        let ok = out.status == Some(125) && super::contract::one_line(&out.stderr) && out.stderr.contains("root");
        expect(ok, &out, "exit 125, one line saying root is needed", "refuse limits and bridge networking rootless rather than run without them")?;
    }
    Ok(())
}

fn bad_input_refused(t: &Target) -> Outcome {
    let root = rootfs();
    let taken = unique("taken");
    start_detached(t, &taken, &[], &["sleep", "1013"])?;
    let before = HostState::stable(t);
    let file = format!("{root}/etc/hostname");
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "/nonexistent-rootfs", "true"],
        vec!["run", &file, "true"],
        vec!["run", "-m", "64X", &root, "true"],
        vec!["run", "--pids-limit", "0", &root, "true"],
        vec!["run", "--cpus", "lots", &root, "true"],
        vec!["run", "--name", &taken, &root, "true"],
        vec!["run", "--name", "bad/name", &root, "true"],
        vec!["run", "--name", "-bad", &root, "true"],
        vec!["run", "--network", "host", &root, "true"],
        vec!["run", "-v", "/nonexistent-ctlab:/x", &root, "true"],
        vec!["run", "-v", "/tmp", &root, "true"],
        vec!["run", "-v", "/tmp:relative", &root, "true"],
        vec!["run", "-e", "NOEQUALS", &root, "true"],
        vec!["run", &root],
        vec!["exec", "ctlab-no-such-container", "true"],
        vec!["stop", "ctlab-no-such-container"],
        vec!["rm", "ctlab-no-such-container"],
        vec!["logs", "ctlab-no-such-container"],
    ];
    for case in &cases {
        let out = md(t, case);
        let ok = out.status == Some(125) && super::contract::one_line(&out.stderr) && out.panic_message().is_none();
        if !ok {
            remove(t, &[&taken]);
            return expect(false, &out, "exit 125 and one line on stderr", "check input before creating anything; name the cause and the fix");
        }
    }
    let still = ps_row(t, &taken).map(|r| r.1);
    let after = HostState::settled(t, &before);
    remove(t, &[&taken]);
    if still.as_deref() != Some("running") {
        return fail("mini-docker run --name <taken> ...", &format!("{taken} still running"), format!("{still:?}"), "a name clash must not touch the container that has the name");
    }
    before.compare(&after, "18 bad command lines")
}

fn killed_runtime_pruned(t: &Target) -> Outcome {
    let before = HostState::stable(t);
    let name = unique("killed");
    start_detached(t, &name, &["--memory", "64M"], &["sleep", "1014"])?;
    let supervisor = supervisor_of(&name);
    if let Some(pid) = supervisor {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let stopped = poll(Duration::from_secs(5), || ps_row(t, &name).filter(|r| r.1 != "running"));
    let listed = md(t, &["ps"]);
    let out = md(t, &["prune"]);
    let after = HostState::settled(t, &before);
    remove(t, &[&name]);
    if supervisor.is_none() || stopped.is_none() || listed.stdout.contains(&name) {
        return fail("mini-docker run -d ...; kill -KILL <its runtime>; mini-docker ps", "the container dies with its runtime and ps no longer lists it", format!("runtime {supervisor:?}, ps -a {stopped:?}, ps {:?}", listed.stdout), "PR_SET_PDEATHSIG in the child; ps checks the recorded PID and start time");
    }
    expect(out.status == Some(0), &out, "exit 0", "prune removes dead containers' state, cgroup and veth")?;
    before.compare(&after, "run -d, SIGKILL its runtime, prune")
}

/// The runtime (supervisor) of a detached container: the parent of its PID 1.
fn supervisor_of(name: &str) -> Option<i32> {
    let config = std::fs::read_to_string(format!("/run/mini-docker/{name}/config")).ok()?;
    let line = config.lines().find_map(|l| l.strip_prefix("runtime="))?;
    line.split_whitespace().next()?.parse().ok()
}

/// ≥ 40 runs of every kind, then the host must be as it was.
fn nothing_leaks(t: &Target) -> Outcome {
    let _ = md(t, &["prune"]);
    let bridge = || Path::new("/sys/class/net/minidocker0").exists();
    let (before, bridge_before) = (HostState::stable(t), bridge());
    let root = rootfs();
    let mut runs = 0;
    let sequential: Vec<Vec<&str>> = vec![
        run_args(&["--rm"], &root, &["true"]),
        run_args(&["--rm", "--network", "none"], &root, &["true"]),
        run_args(&["--rm"], &root, &["sh", "-c", "exit 3"]),
        run_args(&["--rm"], &root, &["ctlab-no-such-command"]),
        run_args(&["--rm", "--memory", "32M"], &root, &["tail", "/dev/zero"]),
        run_args(&["--rm", "--pids-limit", "5", "-v", "/tmp:/host-tmp:ro"], &root, &["sh", "-c", "echo $$"]),
        run_args(&["--rm", "-m", "6x"], &root, &["true"]),
    ];
    for _ in 0..3 {
        for args in &sequential {
            let _ = md(t, args);
            runs += 1;
        }
    }
    for out in run_many(t, 10, &["true"]) {
        runs += usize::from(out.status.is_some());
    }
    for i in 0..3 {
        let name = format!("{}-{i}", unique("leak"));
        if start_detached(t, &name, &[], &["sleep", "1015"]).is_ok() {
            let _ = md(t, &["exec", &name, "true"]);
            let _ = md(t, &["stop", "-t", "0", &name]);
            let _ = md(t, &["rm", &name]);
        }
        runs += 1;
    }
    for i in 0..3 {
        // The foreground runtime SIGKILLed: the container dies with it.
        let name = format!("{}-{i}", unique("sigkill"));
        let args = run_args(&["--rm", "--name", &name], &root, &["sleep", "1016"]);
        if let Ok(mut running) = t.raw().spawn(&args) {
            std::thread::sleep(Duration::from_millis(300));
            unsafe { libc::kill(running.pid(), libc::SIGKILL) };
            let _ = running.wait_for_stdout("never", Duration::from_millis(10));
            let _ = running.finish(Duration::from_secs(5));
        }
        runs += 1;
    }
    for _ in 0..3 {
        let args = run_args(&["--rm"], &root, &["sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done"]);
        if let Ok(mut running) = t.raw().spawn(&args) {
            running.wait_for_stdout("ready", Duration::from_secs(10));
            unsafe { libc::kill(running.pid(), libc::SIGTERM) };
            let _ = running.finish(Duration::from_secs(10));
        }
        runs += 1;
    }
    let pruned = md(t, &["prune"]);
    let after = HostState::settled(t, &before);
    if runs < 40 {
        return fail("the mixed runs", "at least 40 runs", format!("{runs}"), "");
    }
    if bridge() != bridge_before {
        return expect(false, &pruned, "minidocker0 and the NAT table removed, no container being left", "prune removes the bridge once no container is left");
    }
    before.compare(&after, &format!("{runs} mixed runs, then mini-docker prune"))
}

/// What a run may leave on the host.
#[derive(PartialEq, Eq, Debug, Clone)]
struct HostState {
    interfaces: BTreeSet<String>,
    netns: BTreeSet<String>,
    cgroups: BTreeSet<String>,
    mounts: BTreeSet<String>,
    state: BTreeSet<String>,
}

impl HostState {
    /// The state once it stops changing (a veth of an earlier run may still
    /// be on its way out), for a fair "before".
    fn stable(t: &Target) -> HostState {
        let mut last = HostState::now(t);
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            let now = HostState::now(t);
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    fn now(t: &Target) -> HostState {
        let names = |dir: &Path| -> BTreeSet<String> { std::fs::read_dir(dir).map(|e| e.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default() };
        let mountinfo = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
        HostState {
            // The bridge stays between containers, like docker0: only
            // nothing-leaks, which prunes, expects it gone.
            interfaces: names(Path::new("/sys/class/net")).into_iter().filter(|n: &String| n != "minidocker0").collect(),
            netns: names(Path::new("/run/netns")),
            cgroups: cgroup_dirs().iter().map(|p| p.display().to_string()).collect(),
            mounts: mountinfo.lines().filter_map(|l| l.split_whitespace().nth(4).map(String::from)).collect(),
            state: names(&state_dir(t)).into_iter().filter(|n: &String| n != ".lock").collect(),
        }
    }

    /// The state once the last veths are gone (the kernel removes them a
    /// little after their namespace), or as it is after a few seconds.
    fn settled(t: &Target, before: &HostState) -> HostState {
        poll(Duration::from_secs(5), || Some(HostState::now(t)).filter(|now| now == before)).unwrap_or_else(|| HostState::now(t))
    }

    fn compare(&self, after: &HostState, ran: &str) -> Outcome {
        if self == after {
            return Ok(());
        }
        let diff = |a: &BTreeSet<String>, b: &BTreeSet<String>| -> String {
            let added: Vec<&String> = b.difference(a).take(4).collect();
            let removed: Vec<&String> = a.difference(b).take(4).collect();
            format!("+{added:?} -{removed:?}")
        };
        let saw = format!(
            "interfaces {}, netns {}, cgroups {}, mounts {}, state {}",
            diff(&self.interfaces, &after.interfaces),
            diff(&self.netns, &after.netns),
            diff(&self.cgroups, &after.cgroups),
            diff(&self.mounts, &after.mounts),
            diff(&self.state, &after.state)
        );
        fail(ran, "the host's interfaces, network namespaces, cgroups, mounts and state directory as before", saw, "clean up on every path out: exit, failure, signal; prune what a killed runtime left")
    }
}

/// Every mini-docker cgroup directory on the host (v1 and v2).
fn cgroup_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let parents: Vec<PathBuf> = std::fs::read_dir(root).map(|e| e.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let mut found = Vec::new();
    for parent in parents.iter().map(PathBuf::as_path).chain([root]) {
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("mini-docker-") {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Where mini-docker keeps its state for this check's user.
fn state_dir(t: &Target) -> PathBuf {
    match t.who {
        As::Root => PathBuf::from("/run/mini-docker"),
        As::Nobody => PathBuf::from(format!("/tmp/mini-docker-{}", crate::run::NOBODY)),
        As::Uid(uid) => PathBuf::from(format!("/tmp/mini-docker-{uid}")),
    }
}
