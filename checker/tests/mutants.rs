//! Solutions broken on purpose, one behaviour each: the check that guards
//! that behaviour must fail against the broken build. This is how a check
//! proves it is not a no-op for the promises no earlier step can break
//! (exit codes, signals, no mount leaking to the host...).

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use checker::checks;
use checker::run::Target;
use checker::steps::{workspace_root, Step};
use libtest_mimic::Trial;

struct Mutant {
    name: &'static str,
    step: &'static str,
    edits: &'static [Edit],
    /// Each of these checks must fail against the mutant.
    breaks: &'static [&'static str],
    /// What the checker's hint must then say, for a classic mistake.
    diagnosis: Option<&'static str>,
}

struct Edit {
    file: &'static str,
    /// Must occur exactly once in `file`, or the mutant is stale.
    from: &'static str,
    to: &'static str,
}

const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "exit-code-dropped",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "Ok(WaitStatus::Exited(_, code)) => return Ok(code),", to: "Ok(WaitStatus::Exited(_, _)) => return Ok(0)," }],
        breaks: &["exit-status"],
        diagnosis: None,
    },
    Mutant {
        name: "signal-number-as-status",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "return Ok(128 + signal as i32)", to: "return Ok(signal as i32)" }],
        breaks: &["killed-by-signal"],
        diagnosis: None,
    },
    Mutant {
        name: "not-found-is-126",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "Errno::ENOENT | Errno::ENOTDIR => (EXIT_NOT_FOUND,", to: "Errno::ENOENT | Errno::ENOTDIR => (EXIT_CANNOT_EXECUTE," }],
        breaks: &["command-not-found"],
        diagnosis: None,
    },
    Mutant {
        name: "cannot-execute-is-127",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "_ => (EXIT_CANNOT_EXECUTE, format!(", to: "_ => (EXIT_NOT_FOUND, format!(" }],
        breaks: &["cannot-execute"],
        diagnosis: None,
    },
    Mutant {
        // The runtime mounts in its own (the host's) namespace, not the child's.
        name: "parent-mounts-on-host",
        step: "03-mount-proc",
        edits: &[Edit {
            file: "src/main.rs",
            from: "    container::forward_signals_to_container()?;",
            to: "    container::forward_signals_to_container()?;\n    let _ = nix::mount::mount(Some(\"tmpfs\"), \"/mnt\", Some(\"tmpfs\"), nix::mount::MsFlags::empty(), None::<&str>);",
        }],
        breaks: &["host-mounts-unchanged"],
        diagnosis: None,
    },
    Mutant {
        name: "clap-error-as-is",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "eprintln!(\"{PROGRAM}: {message} (see '{PROGRAM} --help')\");", to: "eprintln!(\"{rendered}{message}\");" }],
        breaks: &["bad-input"],
        diagnosis: None,
    },
    Mutant {
        name: "stdin-from-dev-null",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);", to: "let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    unsafe { libc::close(0); libc::open(c\"/dev/null\".as_ptr(), libc::O_RDONLY) };" }],
        breaks: &["stdio-pass-through", "shell-on-stdin", "terminal"],
        diagnosis: None,
    },
    Mutant {
        name: "signals-not-forwarded",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "unsafe { libc::kill(pid, signal) };", to: "let _ = signal;" }],
        breaks: &["signals-forwarded"],
        diagnosis: None,
    },
    Mutant {
        name: "no-parent-death-signal",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);", to: "" }],
        breaks: &["dies-with-runtime"],
        diagnosis: None,
    },
    Mutant {
        name: "eperm-unexplained",
        step: "01-uts",
        edits: &[Edit { file: "src/container.rs", from: "\"creating namespaces needs root (CAP_SYS_ADMIN); run it with sudo\"", to: "\"failed\"" }],
        breaks: &["needs-root"],
        diagnosis: None,
    },
    Mutant {
        // The hostname is set without a UTS namespace of its own: the host
        // is renamed (the check puts its name back).
        name: "uts-flag-dropped",
        step: "01-uts",
        edits: &[Edit { file: "src/uts.rs", from: "    CloneFlags::CLONE_NEWUTS
", to: "    CloneFlags::empty()
" }],
        breaks: &["host-hostname-untouched"],
        diagnosis: None,
    },
    Mutant {
        name: "mounts-left-shared",
        step: "03-mount-proc",
        edits: &[Edit { file: "src/mounts.rs", from: "mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)", to: "Ok::<(), nix::Error>(())" }],
        breaks: &["no-propagation-to-host"],
        diagnosis: None,
    },
    Mutant {
        name: "setgroups-not-denied",
        step: "05-userns-mapping",
        edits: &[Edit { file: "src/userns.rs", from: "write_proc_file(child, \"setgroups\", \"deny\")?;", to: "" }],
        breaks: &["maps-root-to-caller", "root-inside"],
        diagnosis: Some("setgroups first"),
    },
    Mutant {
        name: "child-left-waiting",
        step: "05-userns-mapping",
        edits: &[Edit { file: "src/main.rs", from: "container::kill_and_reap(child);", to: "let _ = container::wait_for_exit(child);" }],
        breaks: &["setup-failure-cleans-up"],
        diagnosis: None,
    },
    Mutant {
        name: "forbidden-userns-unexplained",
        step: "05-userns-mapping",
        edits: &[Edit { file: "src/userns.rs", from: "Some(why) if denied => anyhow::anyhow!(\"{why} ({text})\"),", to: "Some(_) if denied => err," }],
        breaks: &["forbidden-userns-explained"],
        diagnosis: None,
    },
    Mutant {
        // With a user namespace the kernel turns a shared mount's copies into
        // slaves, so pivot_root works on a shared / anyway (05+): the EINVAL
        // students meet comes from running as real root with no user
        // namespace and no MS_PRIVATE.
        name: "no-userns-mounts-left-shared",
        step: "06-pivot-root",
        edits: &[
            Edit { file: "src/main.rs", from: "    userns::clone_flag() | ", to: "    " },
            Edit { file: "src/main.rs", from: "    userns::map_root_to_caller(child)\n", to: "    let _ = child;\n    Ok(())\n" },
            Edit {
                file: "src/mounts.rs",
                from: "mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)",
                to: "Ok::<(), nix::Error>(())",
            },
        ],
        breaks: &["no-propagation-to-host"],
        diagnosis: Some("make / private"),
    },
    Mutant {
        name: "rootfs-not-bind-mounted",
        step: "06-pivot-root",
        edits: &[Edit {
            file: "src/rootfs.rs",
            from: "mount(Some(root), root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)",
            to: "Ok::<(), nix::Error>(())",
        }],
        breaks: &["own-root-filesystem"],
        diagnosis: Some("bind-mount the rootfs onto itself"),
    },
    Mutant {
        name: "proc-mounted-after-detach",
        step: "06-pivot-root",
        edits: &[
            Edit { file: "src/rootfs.rs", from: "    mounts::mount_proc(&root.join(\"proc\"))?;\n", to: "" },
            Edit { file: "src/main.rs", from: "    rootfs::enter(&cli.rootfs)?;\n", to: "    rootfs::enter(&cli.rootfs)?;\n    mounts::mount_proc(std::path::Path::new(\"/proc\"))?;\n" },
        ],
        breaks: &["own-root-filesystem"],
        diagnosis: Some("fully visible"),
    },
    Mutant {
        name: "old-root-kept",
        step: "06-pivot-root",
        edits: &[Edit { file: "src/rootfs.rs", from: "umount2(\".\", MntFlags::MNT_DETACH).context(\"detaching the old root\")?;", to: "" }],
        breaks: &["old-root-detached"],
        diagnosis: None,
    },
    Mutant {
        name: "host-end-name-fixed",
        step: "07-netns-veth",
        edits: &[Edit { file: "src/net.rs", from: "host_interface: format!(\"ctlab{runtime}\")", to: "host_interface: \"ctlab0\".to_string()" }],
        breaks: &["two-at-once"],
        diagnosis: None,
    },
    Mutant {
        name: "network-address-accepted",
        step: "07-netns-veth",
        edits: &[Edit { file: "src/net.rs", from: "if address == cidr.network() || address == cidr.broadcast() {", to: "if false {" }],
        breaks: &["bad-ip-refused"],
        diagnosis: None,
    },
    Mutant {
        // The command starts before it is in its cgroup: a fork loop races
        // ahead of pids.max.
        name: "cgroup-joined-too-late",
        step: "08-cgroups",
        edits: &[
            Edit { file: "src/main.rs", from: "    // Before the gate opens: the command must never run outside its limits.\n    cgroup.add(child)\n", to: "    let _ = cgroup;\n    Ok(())\n" },
            Edit { file: "src/main.rs", from: "    container::wait_for_exit(child)\n", to: "    cgroup.add(child)?;\n    container::wait_for_exit(child)\n" },
        ],
        breaks: &["fork-loop-capped"],
        diagnosis: None,
    },
    Mutant {
        name: "cgroup-left-behind",
        step: "08-cgroups",
        edits: &[Edit { file: "src/cgroups.rs", from: "            while fs::remove_dir(directory).is_err()", to: "            while false && fs::remove_dir(directory).is_err()" }],
        breaks: &["cgroup-removed"],
        diagnosis: None,
    },
    Mutant {
        name: "cpu-quota-in-ms",
        step: "08-cgroups",
        edits: &[Edit { file: "src/cgroups.rs", from: "(cpus * CPU_PERIOD_US as f64).round() as u64", to: "(cpus * 1000.0).round() as u64" }],
        breaks: &["limits-written"],
        diagnosis: None,
    },
    Mutant {
        name: "limits-unchecked",
        step: "08-cgroups",
        edits: &[Edit { file: "src/cgroups.rs", from: "Ok(n) if n >= 1 => Ok(n),", to: "Ok(n) => Ok(n)," }],
        breaks: &["bad-limits-refused"],
        diagnosis: None,
    },
    Mutant {
        name: "child-does-not-wait",
        step: "05-userns-mapping",
        edits: &[Edit {
            file: "src/container.rs",
            from: "        nix::unistd::close(self.write_end.as_raw_fd()).context(\"closing the gate's write end\")?;",
            to: "        return Ok(());",
        }],
        breaks: &["child-waits-for-maps"],
        diagnosis: None,
    },
    Mutant {
        // exec runs COMMAND itself: setns(pid) only moves children.
        name: "exec-without-fork",
        step: "09-mini-docker",
        edits: &[Edit {
            file: "src/exec.rs",
            from: "ForkResult::Parent { child } => container::wait_for_exit(child),",
            to: "ForkResult::Parent { child } => { let _ = container::wait_for_exit(child); Ok(run_inside(command, &environment)) }",
        }],
        breaks: &["exec-joins-container"],
        diagnosis: None,
    },
    Mutant {
        name: "ipam-ignores-taken",
        step: "09-mini-docker",
        edits: &[Edit { file: "src/bridge.rs", from: ".find(|a| !taken.contains(a))", to: ".find(|_| !taken.is_empty() || true)" }],
        breaks: &["bridge-pings", "twenty-at-once"],
        diagnosis: None,
    },
    Mutant {
        name: "no-masquerade",
        step: "09-mini-docker",
        edits: &[Edit { file: "src/bridge.rs", from: "oifname != \\\"minidocker0\\\" masquerade", to: "oifname != \\\"minidocker0\\\" accept" }],
        breaks: &["nat-to-outside"],
        diagnosis: None,
    },
    Mutant {
        name: "stop-ignores-timeout",
        step: "09-mini-docker",
        edits: &[Edit { file: "src/engine.rs", from: "if !wait_until(timeout, || !container.is_alive()) {", to: "if !wait_until(timeout * 20, || !container.is_alive()) {" }],
        breaks: &["stop-then-rm"],
        diagnosis: None,
    },
    Mutant {
        name: "prune-keeps-cgroups",
        step: "09-mini-docker",
        edits: &[Edit { file: "src/engine.rs", from: "Cgroup::find(cgroup)?.remove();", to: "let _ = Cgroup::find(cgroup)?;" }],
        breaks: &["killed-runtime-pruned"],
        diagnosis: None,
    },
    Mutant {
        name: "capabilities-kept",
        step: "10-hardening",
        edits: &[Edit { file: "src/hardening.rs", from: "    drop_capabilities(&prepared.profile.capabilities)?;", to: "    let _ = &prepared.profile.capabilities;" }],
        breaks: &["capabilities-dropped", "exec-is-hardened"],
        diagnosis: None,
    },
    Mutant {
        // Capabilities stop most calls anyway; only a user namespace needs none.
        name: "no-seccomp-filter",
        step: "10-hardening",
        edits: &[Edit { file: "src/hardening.rs", from: "    for filter in &prepared.filters {", to: "    for filter in prepared.filters.iter().take(0) {" }],
        breaks: &["seccomp-and-no-new-privs", "escape-new-userns"],
        diagnosis: None,
    },
    Mutant {
        name: "proc-sys-writable",
        step: "10-hardening",
        edits: &[Edit { file: "src/hardening.rs", from: "\"/proc/irq\", \"/proc/sys\", ", to: "\"/proc/irq\", \"/proc/sys-not\", " }],
        breaks: &["kernel-files-masked", "escape-write-sysctl"],
        diagnosis: None,
    },
    Mutant {
        name: "nothing-masked",
        step: "10-hardening",
        edits: &[Edit { file: "src/hardening.rs", from: "    MASKED_PATHS.iter().try_for_each(|path| mask(Path::new(path)))?;", to: "" }],
        breaks: &["kernel-files-masked"],
        diagnosis: None,
    },
    Mutant {
        // seccomp still denies setns: only the descriptor check sees the leak.
        name: "inherited-fds-kept",
        step: "10-hardening",
        edits: &[Edit { file: "src/hardening.rs", from: "    close_inherited_files()?;", to: "" }],
        breaks: &["inherited-fds-closed"],
        diagnosis: None,
    },
    Mutant {
        name: "exec-not-hardened",
        step: "10-hardening",
        edits: &[Edit { file: "src/exec.rs", from: "if let Err(err) = profile.prepare().and_then(|prepared| crate::hardening::apply(&prepared)) {", to: "if let Err(err) = (Profile { capabilities: caps::all(), seccomp: false, locked_down: false, user_namespace: true }).prepare().and_then(|prepared| crate::hardening::apply(&prepared)) {" }],
        breaks: &["exec-is-hardened"],
        diagnosis: None,
    },
    Mutant {
        name: "cap-drop-ignored",
        step: "10-hardening",
        edits: &[Edit { file: "src/hardening.rs", from: "CapabilityName::One(cap) => _ = capabilities.remove(cap),", to: "CapabilityName::One(_) => {}" }],
        breaks: &["relaxing-options", "escape-raw-socket"],
        diagnosis: None,
    },
    Mutant {
        name: "clone3-denied-with-eperm",
        step: "10-hardening",
        edits: &[Edit { file: "src/hardening.rs", from: "SeccompAction::Errno(libc::ENOSYS as u32), arch)", to: "SeccompAction::Errno(libc::EPERM as u32), arch)" }],
        breaks: &["threads-still-start"],
        diagnosis: None,
    },
    Mutant {
        // Remounting read-only without proc's flags works on a proc the
        // container mounted itself, and quietly drops them.
        name: "proc-sys-loses-noexec",
        step: "10-hardening",
        edits: &[Edit { file: "src/overlay.rs", from: "(FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),", to: "" }],
        breaks: &["kernel-files-masked"],
        diagnosis: None,
    },
    Mutant {
        name: "privileged-keeps-user-namespace",
        step: "10-hardening",
        edits: &[Edit { file: "src/hardening.rs", from: "user_namespace: !as_root };", to: "user_namespace: !as_root || true };" }],
        breaks: &["relaxing-options"],
        diagnosis: None,
    },
];

fn mutants_dir() -> PathBuf {
    workspace_root().join("target/mutants")
}

fn binary(mutant: &Mutant) -> PathBuf {
    mutants_dir().join("target/release").join(package(mutant))
}

fn package(mutant: &Mutant) -> String {
    format!("mutant-{}", mutant.name)
}

/// Why a mutant could not be made, kept for its trial to report.
fn problem_file(mutant: &Mutant) -> PathBuf {
    mutants_dir().join(format!("{}.problem", mutant.name))
}

/// Writes every mutant as a crate of one scratch workspace and builds them
/// all with one cargo call (dependencies compile once).
pub fn build_all() -> Result<()> {
    let dir = mutants_dir();
    let _ = fs::remove_dir_all(dir.join("crates"));
    fs::create_dir_all(dir.join("crates"))?;
    let mut names: Vec<&str> = MUTANTS.iter().map(|m| m.name).collect();
    names.sort_unstable();
    if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("two mutants are named {}: each builds its own binary", twice[0]);
    }
    let mut members = Vec::new();
    for mutant in MUTANTS {
        let _ = fs::remove_file(problem_file(mutant));
        match write_mutant(mutant) {
            Ok(()) => members.push(format!("\"crates/{}\"", mutant.name)),
            Err(err) => fs::write(problem_file(mutant), format!("{err:#}"))?,
        }
    }
    let root_manifest = fs::read_to_string(workspace_root().join("Cargo.toml"))?;
    let manifest: String = root_manifest
        .lines()
        .map(|l| if l.starts_with("members") { format!("members = [{}]", members.join(", ")) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(dir.join("Cargo.toml"), manifest)?;
    // A mutant's default --rootfs is ../../rootfs from its crate, as for a
    // solution: make that the real one.
    let link = dir.join("rootfs");
    if fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(workspace_root().join("rootfs"), &link)?;
    }
    fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet", "--offline", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        // A mutant's dead code warns; that is the point of it.
        .env("RUSTFLAGS", "--cap-lints=allow")
        .status()
        .context("running cargo for the mutants")?;
    if !status.success() {
        bail!("a mutant does not compile: fix its `to` text in checker/tests/mutants.rs");
    }
    Ok(())
}

fn write_mutant(mutant: &Mutant) -> Result<()> {
    let step = Step::find(mutant.step).context("no such step")?;
    let crate_dir = mutants_dir().join("crates").join(mutant.name);
    copy_tree(&step.solution_dir(), &crate_dir)?;
    for edit in mutant.edits {
        let path = crate_dir.join(edit.file);
        let source = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        if source.matches(edit.from).count() != 1 {
            bail!("`{}` is not exactly once in solutions/{}/{}: update the mutant", edit.from, mutant.step, edit.file);
        }
        fs::write(&path, source.replacen(edit.from, edit.to, 1))?;
    }
    let manifest = fs::read_to_string(crate_dir.join("Cargo.toml"))?
        .replace(&format!("name = \"{}\"", step.solution_package()), &format!("name = \"{}\"", package(mutant)))
        .replace(&format!("name = \"{}\"", step.solution_binary()), &format!("name = \"{}\"", package(mutant)));
    fs::write(crate_dir.join("Cargo.toml"), manifest)?;
    Ok(())
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

pub fn trials() -> Vec<Trial> {
    MUTANTS
        .iter()
        .filter(|m| Step::find(m.step).is_some_and(|s| s.exists()))
        .map(|mutant| {
            let name = format!("mutant::{}::{}", mutant.step, mutant.name);
            Trial::test(name, move || {
                if let Ok(problem) = fs::read_to_string(problem_file(mutant)) {
                    return Err(problem.into());
                }
                let step = Step::find(mutant.step).map_or(0, |s| s.number);
                let target = Target::new(binary(mutant), step);
                // Without a diagnosis to prove why it fails, it must still run
                // containers, or it could fail for another reason.
                if mutant.diagnosis.is_none() {
                    let basic = checks::all().into_iter().find(|c| c.name == "runs-the-command").ok_or("no basic check")?;
                    super::must_pass(&basic, &target).map_err(|f| format!("the mutant does not even run a container: {}", f.message().unwrap_or("")))?;
                }
                for name in mutant.breaks {
                    let check = checks::all().into_iter().find(|c| c.name == *name).ok_or(format!("no check {name}"))?;
                    let failure = super::must_fail(&check, &target)?;
                    let hint = checker::report::diagnose(&failure.saw).unwrap_or(failure.hint);
                    if let Some(want) = mutant.diagnosis.filter(|want| !hint.contains(want)) {
                        return Err(format!("`{name}` failed, but its hint does not name the mistake ({want:?}): {hint}").into());
                    }
                }
                Ok(())
            })
        })
        .collect()
}
