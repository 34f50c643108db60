//! Layer 05: root inside, the caller outside; rootless; the parent and the
//! child in step; a host that forbids user namespaces says so.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{every_step, expect, expect_stdout, fail, in_new_namespace, Check, Kind, Outcome};
use crate::host::{cmdline_of_runtime, processes_running};
use crate::run::{host, As, Target};
use crate::steps::workspace_root;

pub fn checks() -> Vec<Check> {
    let check = |name, kind, proves, rootless, run| Check { name, layer: 5, kind, proves, applies: every_step, rootless, run };
    vec![
        check("user-namespace", Kind::Isolation, "the container is in a user namespace of its own", true, user_namespace),
        check("root-inside", Kind::Isolation, "started by uid 65534 (root from 07 on), `id -u` inside prints 0", false, root_inside),
        check("maps-root-to-caller", Kind::Isolation, "uid_map and gid_map inside read `0 UID 1` for the caller's UID", false, maps_root_to_caller),
        check("child-waits-for-maps", Kind::Isolation, "the command runs only after the maps are written, however late", false, child_waits_for_maps),
        // mini-docker writes to its overlay's upper layer: its own checks.
        Check { applies: super::before_engine, ..check("files-owned-by-caller", Kind::Isolation, "a file root makes inside belongs to the caller outside", false, files_owned_by_caller) },
        check("forbidden-userns-explained", Kind::Contract, "where user namespaces are disabled, it says which setting and how to allow it", false, forbidden_userns_explained),
        check("setup-failure-cleans-up", Kind::Contract, "if the parent's set-up fails, it exits 125 at once, the child killed", true, setup_failure_cleans_up),
    ]
}

fn user_namespace(t: &Target) -> Outcome {
    in_new_namespace(t, "user", "add CloneFlags::CLONE_NEWUSER to the clone() flags")
}

fn root_inside(t: &Target) -> Outcome {
    let out = t.run_as(&["id", "-u"], t.caller().0);
    expect_stdout(&out, "0", "write uid_map (\"0 <caller's uid> 1\") from the parent before the child goes on")
}

/// Rootless, also as uid 1234: 65534 is the kernel's overflow id too, which
/// a child that maps itself before the parent could show by accident.
fn maps_root_to_caller(t: &Target) -> Outcome {
    let callers = if t.supports_rootless() { vec![t.caller(), (As::Uid(1234), 1234)] } else { vec![t.caller()] };
    for (who, uid) in callers {
        let out = t.run_as(&["cat", "/proc/self/uid_map", "/proc/self/gid_map"], who);
        let lines: Vec<String> = out.stdout.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        let want = format!("0 {uid} 1");
        let ok = out.status == Some(0) && lines == [want.clone(), want.clone()];
        let hint = "the parent writes \"deny\" to /proc/PID/setgroups, then \"0 UID 1\" to uid_map and \"0 GID 1\" to gid_map";
        expect(ok, &out, format!("two lines, `{want}` (uid_map) and `{want}` (gid_map)"), hint)?;
    }
    Ok(())
}

/// strace holds every write(2) of the runtime's parent for 0.2 s: the maps
/// come late. A child that did not wait at the gate runs `id -u` unmapped,
/// as 65534, instead of 0. (The parent writes nothing before clone.)
fn child_waits_for_maps(t: &Target) -> Outcome {
    let who = t.caller().0;
    let runtime = match t.shell_command_as(&["id", "-u"], who) {
        Ok(command) => command,
        Err(err) => return fail("strace", "it starts", format!("{err:#}"), ""),
    };
    let script = format!("exec strace -qq -o /dev/null -e trace=write -e inject=write:delay_enter=200000 {runtime}");
    let out = host("sh", &["-c", &script]);
    let out = crate::run::Output { ran: format!("strace -e inject=write:delay_enter=200000 {} id -u", t.describe(&[], who).trim_end()), ..out };
    if out.stderr.contains("strace: not found") || out.stderr.contains("strace: No such file") {
        return fail(&out.ran, "strace", "no strace here", "install strace (scripts/setup does)");
    }
    let hint = "the child must block reading the gate until the parent has written the maps, then go on";
    expect(out.status == Some(0) && out.stdout_trimmed() == "0", &out, "`0` even when the maps come late", hint)
}

/// Before chapter 06 the container sees the host's files, so the check uses
/// a scratch directory in the host's /tmp; from 06 on it uses the rootfs's
/// /tmp, which is the repo's rootfs/tmp seen from outside.
fn files_owned_by_caller(t: &Target) -> Outcome {
    let (inside, outside) = if t.step >= 6 {
        let name = format!("ctlab-check-{}", std::process::id());
        (format!("/tmp/{name}"), workspace_root().join("rootfs/tmp").join(name))
    } else {
        let dir = PathBuf::from(format!("/tmp/ctlab-check-files-{}", std::process::id()));
        if let Err(err) = make_world_writable(&dir) {
            return fail("mkdir /tmp/ctlab-check-files-*", "a scratch directory", err.to_string(), "");
        }
        let file = dir.join("made-inside");
        (file.display().to_string(), file)
    };
    let script = format!("touch {inside} && ls -ln {inside}");
    let (who, uid) = t.caller();
    let out = t.run_as(&["sh", "-c", &script], who);
    let owner = std::fs::metadata(&outside).map(|m| (m.uid(), m.gid()));
    let _ = std::fs::remove_file(&outside);
    if t.step < 6 {
        let _ = outside.parent().map(std::fs::remove_dir);
    }
    let columns: Vec<&str> = out.stdout.split_whitespace().collect();
    let inside_owner = columns.get(2..4).map(|c| c.join(" "));
    let ok = out.status == Some(0) && inside_owner.as_deref() == Some("0 0") && owner.as_ref().ok() == Some(&(uid, uid));
    let mut out = out;
    out.stdout.push_str(&format!("[checker: outside, {} belongs to {:?}]", outside.display(), owner.ok()));
    expect(ok, &out, format!("owned by 0 0 inside (ls -ln), by {uid} {uid} outside"), "root inside is the caller outside: that is what the maps say")
}

fn make_world_writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))
}

/// user.max_user_namespaces is a limit of each user namespace: set to 0
/// inside a throwaway one, it forbids the runtime's without touching the host.
fn forbidden_userns_explained(t: &Target) -> Outcome {
    // mini-docker's bridge would fail first: in this user namespace "root"
    // cannot touch the host's network.
    let args: &[&str] = if t.is_engine() { &["--network", "none", "true"] } else { &["true"] };
    let runtime = match t.shell_command(args) {
        Ok(command) => command,
        Err(err) => return fail("unshare", "it starts", format!("{err:#}"), ""),
    };
    let script = format!("echo 0 > /proc/sys/user/max_user_namespaces && {runtime}");
    let out = host("unshare", &["--user", "--map-root-user", "sh", "-c", &script]);
    let out = crate::run::Output { ran: format!("unshare --user --map-root-user sh -c 'echo 0 > /proc/sys/user/max_user_namespaces; {} true'", t.program()), ..out };
    let line = out.stderr.trim();
    let ok = out.status == Some(125) && super::contract::one_line(&out.stderr) && line.contains("max_user_namespaces") && line.contains("sysctl");
    let hint = "when clone() fails, read /proc/sys/user/max_user_namespaces (and kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns) and say which forbids it, with the sysctl that allows it";
    expect(ok, &out, "exit 125, one line naming user.max_user_namespaces and the sysctl to allow it", hint)
}

/// With /proc hidden from the runtime it cannot write the child's maps:
/// it must kill the waiting child and exit, not wait for it forever.
fn setup_failure_cleans_up(t: &Target) -> Outcome {
    let args = ["sleep", "1005"];
    let runtime = match t.shell_command(&args) {
        Ok(command) => command,
        Err(err) => return fail("unshare", "it starts", format!("{err:#}"), ""),
    };
    let script = format!("mount -t tmpfs none /proc && exec {runtime}");
    let out = host("unshare", &["--mount", "sh", "-c", &script]);
    let out = crate::run::Output { ran: format!("unshare --mount sh -c 'mount -t tmpfs none /proc; exec {}'", t.describe(&args, t.who)), ..out };
    let copy_of_runtime: Vec<String> = cmdline_of_runtime(t, &args);
    let words: Vec<&str> = copy_of_runtime.iter().map(String::as_str).collect();
    let left = processes_running(&words);
    for pid in &left {
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let ok = !out.hung && out.status == Some(125) && super::contract::one_line(&out.stderr) && left.is_empty();
    let hint = "when set_up_outside fails, kill and reap the child (it is blocked reading the pipe), then return the error";
    expect(ok, &out, "exit 125 at once with one line, no container process left", hint)
}
