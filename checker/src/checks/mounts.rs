//! Layer 03: a mount table of its own with a fresh /proc, and no mount ever
//! reaching the host.

use super::{every_step, expect, fail, in_new_namespace, Check, Kind, Outcome};
use crate::run::{host, Output, Target};

pub fn checks() -> Vec<Check> {
    let check = |name, kind, proves, run| Check { name, layer: 3, kind, proves, applies: every_step, rootless: true, run };
    vec![
        check("mount-namespace", Kind::Isolation, "the container is in a mount namespace of its own", mount_namespace),
        check("proc-lists-only-container", Kind::Isolation, "/proc inside lists only the container's processes", proc_lists_only_container),
        check("ps-lists-only-container", Kind::Isolation, "`ps` inside lists only the container's processes", ps_lists_only_container),
        check("orphans-adopted-by-pid-1", Kind::Isolation, "an orphan inside gets the command (PID 1) as its parent", orphans_adopted),
        check("host-mounts-unchanged", Kind::Contract, "the host's mount table is the same after a run", host_mounts_unchanged),
        check("no-propagation-to-host", Kind::Contract, "on a host whose / is shared, no mount reaches the host", no_propagation_to_host),
    ]
}

fn mount_namespace(t: &Target) -> Outcome {
    in_new_namespace(t, "mnt", "add CloneFlags::CLONE_NEWNS to the clone() flags")
}

const FRESH_PROC_HINT: &str = "mount a new proc on /proc inside the container: procfs shows the PID namespace of whoever mounts it";

fn proc_lists_only_container(t: &Target) -> Outcome {
    // `; true` keeps sh alive as PID 1 while ls runs as PID 2.
    let out = t.run(&["sh", "-c", "ls /proc; true"]);
    let pids: Vec<u32> = out.stdout.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let ok = out.status == Some(0) && pids.contains(&1) && pids.len() <= 3 && pids.iter().all(|&p| p < 10);
    expect(ok, &out, "only PIDs 1 and 2 (sh and ls) under /proc", FRESH_PROC_HINT)
}

fn ps_lists_only_container(t: &Target) -> Outcome {
    let out = t.run(&["sh", "-c", "ps -o pid,comm; true"]);
    let rows = ps_rows(&out);
    let ok = out.status == Some(0) && rows.len() == 2 && rows.iter().any(|r| r[0] == "1");
    expect(ok, &out, "two processes, PIDs 1 (sh) and 2 (ps)", FRESH_PROC_HINT)
}

fn orphans_adopted(t: &Target) -> Outcome {
    // The subshell starts sleep in the background and exits at once,
    // orphaning it; the kernel re-parents it to PID 1 of its namespace.
    let script = "(sleep 1003 &); sleep 0.3; ps -o pid,ppid,comm; true";
    let out = t.run(&["sh", "-c", script]);
    let rows = ps_rows(&out);
    let ok = rows.iter().any(|r| r.len() == 3 && r[2] == "sleep" && r[1] == "1");
    expect(ok, &out, "`ps` shows sleep with PPID 1", FRESH_PROC_HINT)
}

/// `ps` output without its header, split into columns.
fn ps_rows(out: &Output) -> Vec<Vec<&str>> {
    out.stdout.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()).filter(|r| !r.is_empty()).collect()
}

fn host_mounts_unchanged(t: &Target) -> Outcome {
    let before = mount_table();
    let out = t.run(&["true"]);
    let after = mount_table();
    let added: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
    let hint = "make / private (MS_REC | MS_PRIVATE) first thing in the child, before any mount";
    let mut out = out;
    if !added.is_empty() {
        out.stdout.push_str(&format!("[checker: new on the host: {added:?}]"));
    }
    expect(out.status == Some(0) && before == after, &out, "the host's /proc/self/mountinfo unchanged", hint)
}

fn mount_table() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// systemd makes `/` shared, and a new mount namespace copies that: a
/// mount inside would then show up on the host. Recreate such a host in a
/// scratch mount namespace (the real host is not touched) and look.
fn no_propagation_to_host(t: &Target) -> Outcome {
    let runtime = match t.shell_command(&["true"]) {
        Ok(command) => command,
        Err(err) => return fail("unshare", "it starts", format!("{err:#}"), ""),
    };
    // A leaked proc covers the scratch host's /proc, where /proc/self then
    // names no process: say so rather than show an empty list.
    let script = format!(
        "mount --make-rshared / && cat /proc/self/mountinfo && echo ==== && {runtime} && echo ==== && \
         {{ cat /proc/self/mountinfo 2>/dev/null || echo 'a mount over /proc itself'; }}"
    );
    let out = host("unshare", &["--mount", "--propagation", "unchanged", "sh", "-c", &script]);
    let parts: Vec<&str> = out.stdout.split("====\n").collect();
    let [before, _, after] = parts[..] else {
        return fail(&out.ran, "the scratch host's mount table before and after", out.summary(), "");
    };
    let leaked: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
    if out.status == Some(0) && leaked.is_empty() {
        return Ok(());
    }
    let saw = format!("{}; reached the host: {leaked:?}", out.status.map_or("did not finish".into(), |c| format!("exit {c}")));
    let hint = "mount(None, \"/\", None, MS_REC | MS_PRIVATE, None) in the child before mounting anything";
    let ran = format!("unshare --mount --propagation unchanged sh -c 'mount --make-rshared /; {} true'", t.program());
    fail(&ran, "no new mount on the host", saw, hint)
}
