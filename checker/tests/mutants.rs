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
    file: &'static str,
    /// Must occur exactly once in `file`, or the mutant is stale.
    from: &'static str,
    to: &'static str,
    /// Each of these checks must fail against the mutant.
    breaks: &'static [&'static str],
}

const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "exit-code-dropped",
        step: "01-uts",
        file: "src/container.rs",
        from: "Ok(WaitStatus::Exited(_, code)) => return Ok(code),",
        to: "Ok(WaitStatus::Exited(_, _)) => return Ok(0),",
        breaks: &["exit-status"],
    },
    Mutant {
        name: "signal-number-as-status",
        step: "01-uts",
        file: "src/container.rs",
        from: "return Ok(128 + signal as i32)",
        to: "return Ok(signal as i32)",
        breaks: &["killed-by-signal"],
    },
    Mutant {
        name: "not-found-is-126",
        step: "01-uts",
        file: "src/container.rs",
        from: "Errno::ENOENT | Errno::ENOTDIR => (EXIT_NOT_FOUND,",
        to: "Errno::ENOENT | Errno::ENOTDIR => (EXIT_CANNOT_EXECUTE,",
        breaks: &["command-not-found"],
    },
    Mutant {
        name: "clap-error-as-is",
        step: "01-uts",
        file: "src/container.rs",
        from: "eprintln!(\"{PROGRAM}: {message} (see '{PROGRAM} --help')\");",
        to: "eprintln!(\"{rendered}{message}\");",
        breaks: &["bad-input"],
    },
    Mutant {
        name: "stdin-from-dev-null",
        step: "01-uts",
        file: "src/container.rs",
        from: "let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);",
        to: "let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);\n    unsafe { libc::close(0); libc::open(c\"/dev/null\".as_ptr(), libc::O_RDONLY) };",
        breaks: &["stdio-pass-through", "shell-on-stdin", "terminal"],
    },
    Mutant {
        name: "signals-not-forwarded",
        step: "01-uts",
        file: "src/container.rs",
        from: "unsafe { libc::kill(pid, signal) };",
        to: "let _ = signal;",
        breaks: &["signals-forwarded"],
    },
    Mutant {
        name: "no-parent-death-signal",
        step: "01-uts",
        file: "src/container.rs",
        from: "let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);",
        to: "",
        breaks: &["dies-with-runtime"],
    },
    Mutant {
        name: "eperm-unexplained",
        step: "01-uts",
        file: "src/container.rs",
        from: "\"creating namespaces needs root (CAP_SYS_ADMIN); run it with sudo\"",
        to: "\"failed\"",
        breaks: &["needs-root"],
    },
    Mutant {
        // The hostname is set without a UTS namespace of its own: the host
        // is renamed (the check puts its name back).
        name: "uts-flag-dropped",
        step: "01-uts",
        file: "src/uts.rs",
        from: "    CloneFlags::CLONE_NEWUTS\n",
        to: "    CloneFlags::empty()\n",
        breaks: &["host-hostname-untouched"],
    },
    Mutant {
        name: "mounts-left-shared",
        step: "03-mount-proc",
        file: "src/mounts.rs",
        from: "mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)",
        to: "Ok::<(), nix::Error>(())",
        breaks: &["no-propagation-to-host"],
    },
    Mutant {
        name: "setgroups-not-denied",
        step: "05-userns-mapping",
        file: "src/userns.rs",
        from: "write_proc_file(child, \"setgroups\", \"deny\")?;",
        to: "",
        breaks: &["maps-root-to-caller", "root-inside"],
    },
    Mutant {
        name: "child-left-waiting",
        step: "05-userns-mapping",
        file: "src/main.rs",
        from: "container::kill_and_reap(child);",
        to: "let _ = container::wait_for_exit(child);",
        breaks: &["setup-failure-cleans-up"],
    },
    Mutant {
        name: "forbidden-userns-unexplained",
        step: "05-userns-mapping",
        file: "src/userns.rs",
        from: "Some(why) => anyhow::anyhow!(\"{why} ({err:#})\"),",
        to: "Some(_) => err,",
        breaks: &["forbidden-userns-explained"],
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
    fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet", "--offline", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
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
    let path = crate_dir.join(mutant.file);
    let source = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if source.matches(mutant.from).count() != 1 {
        bail!("`{}` is not exactly once in solutions/{}/{}: update the mutant", mutant.from, mutant.step, mutant.file);
    }
    fs::write(&path, source.replacen(mutant.from, mutant.to, 1))?;
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
                for name in mutant.breaks {
                    let check = checks::all().into_iter().find(|c| c.name == *name).ok_or(format!("no check {name}"))?;
                    super::must_fail(&check, &target)?;
                }
                Ok(())
            })
        })
        .collect()
}
