//! Layer 01: the container has its own hostname, and the host keeps its.

use super::{every_step, expect, expect_stdout, in_new_namespace, Check, Kind, Outcome};
use crate::run::Target;

pub fn checks() -> Vec<Check> {
    let check = |name, kind, proves, run| Check { name, layer: 1, kind, proves, applies: every_step, rootless: true, run };
    vec![
        check("uts-namespace", Kind::Isolation, "the container is in a UTS namespace of its own", uts_namespace),
        // mini-docker's default is the container's name: its own checks.
        Check { applies: super::before_engine, ..check("default-hostname", Kind::Isolation, "the hostname inside is \"container\" by default", default_hostname) },
        check("hostname-option", Kind::Isolation, "--hostname sets the hostname inside", hostname_option),
        check("host-hostname-untouched", Kind::Contract, "the host's hostname is the same after a run", host_hostname_untouched),
    ]
}

fn uts_namespace(t: &Target) -> Outcome {
    in_new_namespace(t, "uts", "clone() the child with CloneFlags::CLONE_NEWUTS")
}

fn default_hostname(t: &Target) -> Outcome {
    let out = t.run(&["hostname"]);
    expect_stdout(&out, "container", "in the child, before exec, sethostname() to the --hostname value (default \"container\")")
}

fn hostname_option(t: &Target) -> Outcome {
    let out = t.run(&["--hostname", "ctlab-box-7", "hostname"]);
    expect_stdout(&out, "ctlab-box-7", "use the --hostname value in sethostname()")
}

fn host_hostname_untouched(t: &Target) -> Outcome {
    let before = host_hostname();
    let out = t.run(&["--hostname", "ctlab-elsewhere", "true"]);
    let after = host_hostname();
    if after != before {
        // The runtime renamed the host: put its name back before saying so.
        let _ = nix::unistd::sethostname(&before);
    }
    let expected = format!("the host still called {before:?}, not {after:?}");
    expect(after == before, &out, expected, "sethostname() must run in the child, inside the new UTS namespace")
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}
