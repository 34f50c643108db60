//! Layer 02: the command is PID 1 of a PID namespace, and when it exits the
//! whole container ends.

use std::time::Duration;

use super::{every_step, expect, expect_stdout, in_new_namespace, Check, Kind, Outcome};
use crate::host::{processes_running, sleeper};
use crate::run::{poll, Target};

pub fn checks() -> Vec<Check> {
    let check = |name, proves, run| Check { name, layer: 2, kind: Kind::Isolation, proves, applies: every_step, rootless: true, run };
    vec![
        check("pid-namespace", "the container is in a PID namespace of its own", pid_namespace),
        check("command-is-pid-1", "`echo $$` inside prints 1", command_is_pid_1),
        check("exit-ends-container", "when COMMAND exits, the runtime returns and its children are gone", exit_ends_container),
    ]
}

fn pid_namespace(t: &Target) -> Outcome {
    in_new_namespace(t, "pid", "add CloneFlags::CLONE_NEWPID to the clone() flags")
}

fn command_is_pid_1(t: &Target) -> Outcome {
    let out = t.run(&["sh", "-c", "echo $$"]);
    expect_stdout(&out, "1", "clone() with CLONE_NEWPID: the child is the first process of the new namespace")
}

fn exit_ends_container(t: &Target) -> Outcome {
    let sleeper = sleeper(1002);
    let left_behind = [sleeper[0].as_str(), sleeper[1].as_str()];
    // The pause lets the background sleep exec before sh exits.
    let script = format!("sleep {} & sleep 0.3; echo started", sleeper[1]);
    let out = t.run(&["sh", "-c", &script]);
    let survivors = poll(Duration::from_secs(2), || {
        let alive = processes_running(&left_behind);
        alive.is_empty().then_some(())
    });
    let leftovers = processes_running(&left_behind);
    for pid in &leftovers {
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let ok = !out.hung && out.status == Some(0) && survivors.is_some();
    let mut out = out;
    if !leftovers.is_empty() {
        out.stderr.push_str(&format!("[checker: its background sleep still ran on the host as PID {leftovers:?}]"));
    }
    expect(ok, &out, "exit 0 at once, and no background sleep left on the host", "in a PID namespace the kernel kills the rest when PID 1 exits")
}
