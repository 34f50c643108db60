//! `cargo test`: the workshop's gate, like rustlings' `dev check`.
//!
//! - `solution::NN::CHECK`: every reference solution passes all its checks;
//! - `skeleton::NN`: every generated skeleton builds and fails its own;
//! - `control::NN::CHECK`: every isolation check fails against the step
//!   before (the layer is what makes it pass);
//! - `mutant::NAME`: a solution broken on purpose fails the check that
//!   guards what was broken;
//! - `generator::steps-match-solutions`: steps/ is what the generator writes.
//!
//! Containers need root. Run as a user, it builds first, then re-runs
//! itself with sudo; with neither root nor sudo it stops and says so.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use checker::build::{build_release, have_sudo, is_root};
use checker::checks::{self, Check, Kind};
use checker::generate;
use checker::host::{adopt_orphans, reap_orphans, shield_host_mounts};
use checker::run::{remove_scratch_binaries, As, Target};
use checker::steps::{existing, release_dir, workspace_root};
use libtest_mimic::{Arguments, Failed, Trial};

mod mutants;

const BUILT: &str = "CTLAB_TESTS_BUILT";

fn main() {
    let mut args = Arguments::from_args();
    // One at a time: checks compare the host's mounts and hostname before
    // and after, which a parallel run would disturb.
    args.test_threads = Some(1);
    if !args.list && std::env::var_os(BUILT).is_none() {
        if let Err(err) = build_everything() {
            eprintln!("building the workshop failed: {err:#}");
            std::process::exit(101);
        }
        if !is_root() {
            rerun_as_root();
        }
    }
    if !args.list {
        if let Err(err) = shield_host_mounts() {
            eprintln!("{err:#}");
            std::process::exit(101);
        }
    }
    adopt_orphans();
    let trials: Vec<Trial> = [generator_trials(), copies_trials(), cli_trials(), solution_trials(), skeleton_trials(), control_trials(), mutants::trials(), cleanup_trials(), doctor_trials()]
        .into_iter()
        .flatten()
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    remove_scratch_binaries();
    conclusion.exit();
}

fn build_everything() -> anyhow::Result<()> {
    let packages: Vec<String> = existing().flat_map(|s| [s.solution_package(), s.skeleton_package()]).collect();
    build_release(&packages)?;
    checker::build::build_escape_kit()?;
    mutants::build_all()
}

/// The tests start containers: they need root, and never pretend otherwise.
fn rerun_as_root() -> ! {
    if !have_sudo() {
        eprintln!("These tests start containers and need root: run them as root, or install sudo. Nothing was tested.");
        std::process::exit(1);
    }
    eprintln!("These tests start containers and need root: re-running them with sudo.");
    let me = std::env::current_exe().expect("the test binary knows its path");
    let err = Command::new("sudo").arg("--").arg("env").arg(format!("{BUILT}=1")).arg(me).args(std::env::args_os().skip(1)).exec();
    eprintln!("could not run sudo: {err}");
    std::process::exit(1);
}

fn generator_trials() -> Vec<Trial> {
    vec![Trial::test("generator::steps-match-solutions", || {
        let mut stale = Vec::new();
        for step in existing() {
            for (file, why) in generate::stale_files(step)? {
                stale.push(format!("steps/{}/{}: {why}", step.name, file.display()));
            }
        }
        if stale.is_empty() { Ok(()) } else { Err(format!("run scripts/gen-steps: {}", stale.join(", ")).into()) }
    })]
}

/// Each step carries its own copy of the earlier layers' modules, so that
/// `diff -r` between neighbours reads like the chapter. A fix must reach
/// every copy: a module must be the same file in every step that has it,
/// but where a chapter changes it on purpose (listed here).
fn copies_trials() -> Vec<Trial> {
    const CHANGED_BY: &[(&str, &str)] = &[
        ("src/container.rs", "05-userns-mapping"),
        // mini-docker finds cgroups again (exec, prune) and makes a bridge.
        ("src/cgroups.rs", "09-mini-docker"),
        ("src/netlink.rs", "09-mini-docker"),
        // exec hardens what it runs, and may share the host's user namespace.
        ("src/exec.rs", "10-hardening"),
    ];
    vec![Trial::test("solutions::layer-modules-agree", || {
        let mut drift = Vec::new();
        let steps: Vec<_> = existing().collect();
        for pair in steps.windows(2) {
            let (before, after) = (pair[0].solution_dir(), pair[1].solution_dir());
            let Ok(entries) = std::fs::read_dir(before.join("src")) else { continue };
            for entry in entries.flatten() {
                let file = format!("src/{}", entry.file_name().to_string_lossy());
                let (old, new) = (std::fs::read(before.join(&file)).ok(), std::fs::read(after.join(&file)).ok());
                let intended = CHANGED_BY.contains(&(file.as_str(), pair[1].name)) || file == "src/main.rs";
                if new.is_some() && old != new && !intended {
                    drift.push(format!("{file}: {} -> {}", pair[0].name, pair[1].name));
                }
            }
        }
        if drift.is_empty() { Ok(()) } else { Err(format!("copies differ (apply the fix to every step): {drift:?}").into()) }
    })]
}

/// `cargo lab`'s own commands, run as the student would.
fn cli_trials() -> Vec<Trial> {
    let cases: [(&str, &[&str], &[&str]); 4] = [
        ("list-shows-every-step", &["list"], &["01-uts", "05-userns-mapping", "09-mini-docker", "10-hardening"]),
        ("hint-lists-the-todos", &["hint", "01"], &["steps/01-uts/src/uts.rs:", "sethostname"]),
        ("diff-shows-the-new-layer", &["diff", "02"], &["+++ ", "pid.rs", "CLONE_NEWPID"]),
        ("gen-steps-check-passes", &["gen-steps", "--check"], &[]),
    ];
    cases
        .into_iter()
        .map(|(name, args, wanted)| {
            Trial::test(format!("cli::{name}"), move || {
                let out = Command::new(release_dir().join("checker")).args(args).output().map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stdout);
                let missing: Vec<&&str> = wanted.iter().filter(|w| !text.contains(**w)).collect();
                if out.status.success() && missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("cargo lab {}: {}, missing {missing:?} in:\n{text}", args.join(" "), out.status).into())
                }
            })
        })
        .collect()
}

/// scripts/cleanup removes what a crashed run leaves: one of each kind,
/// made here, must be gone after it.
fn cleanup_trials() -> Vec<Trial> {
    vec![Trial::test("cleanup::removes-leftovers", || {
        let veth = "ctlabtest0";
        let cgroups: Vec<PathBuf> = ["pids", "memory"].iter().map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/ctlab-999999"))).collect();
        let scratch = PathBuf::from("/tmp/ctlab-leftover-999999");
        let made = Command::new("ip").args(["link", "add", veth, "type", "veth", "peer", "name", "ctlabtest1"]).status().map_err(|e| e.to_string())?;
        if !made.success() {
            return Err("could not make a veth to clean up".into());
        }
        let cgroups: Vec<PathBuf> = cgroups.into_iter().filter(|c| c.parent().is_some_and(|p| p.is_dir()) && std::fs::create_dir(c).is_ok()).collect();
        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        let out = Command::new(workspace_root().join("scripts/cleanup")).output().map_err(|e| e.to_string())?;
        let mut left: Vec<String> = cgroups.iter().chain([&scratch]).filter(|p| p.exists()).map(|p| p.display().to_string()).collect();
        if std::path::Path::new("/sys/class/net").join(veth).exists() {
            left.push(veth.into());
        }
        if out.status.success() && left.is_empty() {
            Ok(())
        } else {
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            Err(format!("scripts/cleanup ({}) left {left:?}; it said:\n{said}", out.status).into())
        }
    })]
}

fn solution_trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    for step in existing() {
        let target = Target::new(release_dir().join(step.solution_binary()), step.number);
        for (check, target) in checks::plan(&target) {
            let who = if target.who == As::Nobody { "rootless::" } else { "" };
            let name = format!("solution::{}::{who}{}", step.name, check.name);
            let not_tried = checks::not_tried_here(&check).is_some();
            trials.push(Trial::test(name, move || must_pass(&check, &target)).with_ignored_flag(not_tried));
        }
    }
    trials
}

fn skeleton_trials() -> Vec<Trial> {
    existing()
        .map(|step| {
            let target = Target::new(release_dir().join(step.skeleton_binary()), step.number);
            Trial::test(format!("skeleton::{}::fails-its-own-checks", step.name), move || {
                let own = checks::introduced_by(target.step);
                let failing = own.iter().filter(|c| run(c, &target).is_err()).count();
                if failing > 0 {
                    Ok(())
                } else {
                    Err("the skeleton passes every check of its own layer: its todo!()s hide nothing".into())
                }
            })
        })
        .collect()
}

/// Each isolation check of layer N must fail against the step before N,
/// which has everything but that layer.
fn control_trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    for step in existing() {
        let (binary, label) = match step.previous() {
            Some(previous) => (release_dir().join(previous.solution_binary()), previous.name.to_string()),
            None => (controls_dir().join("no-isolation"), "no-isolation".to_string()),
        };
        let target = Target::new(binary, step.number);
        for check in checks::introduced_by(step.number).into_iter().filter(|c| c.kind == Kind::Isolation) {
            let target = target.clone();
            let name = format!("control::{}::{}-fails-on-{label}", step.name, check.name);
            trials.push(Trial::test(name, move || must_fail(&check, &target).map(drop)));
        }
    }
    trials
}

fn controls_dir() -> PathBuf {
    workspace_root().join("checker/controls")
}

pub fn run(check: &Check, target: &Target) -> checks::Outcome {
    // A mutant (or a broken solution) may rename the host: put it back.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let outcome = (check.run)(target);
    if std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default() != hostname {
        let _ = nix::unistd::sethostname(hostname.trim());
    }
    reap_orphans();
    outcome
}

pub fn must_pass(check: &Check, target: &Target) -> Result<(), Failed> {
    run(check, target).map_err(|f| {
        format!("\n  ran:      {}\n  expected: {}\n  saw:      {}\n  hint:     {}", f.ran, f.expected, f.saw, f.hint).into()
    })
}

pub fn must_fail(check: &Check, target: &Target) -> Result<checks::Failure, Failed> {
    match run(check, target) {
        Err(failure) => Ok(failure),
        Ok(()) => Err(format!("`{}` passed against {}: it cannot tell the layer is missing", check.name, show(&target.binary)).into()),
    }
}

fn show(path: &Path) -> String {
    path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string()
}

/// The doctor's diagnoses, each with its condition faked where it can be
/// without touching the host: a throwaway user or mount namespace, a PATH,
/// another user. (A synced folder cannot be faked here.)
fn doctor_trials() -> Vec<Trial> {
    let doctor = || release_dir().join("checker").display().to_string();
    let root = workspace_root().display().to_string();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("reports-every-topic", doctor() + " doctor", vec!["kernel", "namespaces", "root", "user namespaces", "cgroups", "tools", "rootfs", "container", "synced folder"]),
        ("user-namespaces-disabled", format!("unshare --user --map-root-user sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && {} doctor'", doctor()), vec!["✗ user namespaces", "max_user_namespaces is 0", "sysctl -w user.max_user_namespaces"]),
        ("rootfs-missing", format!("unshare --mount sh -c 'mount -t tmpfs none {root}/rootfs && {} doctor'", doctor()), vec!["✗ rootfs", "not built", "scripts/build-rootfs"]),
        ("rootfs-stale", format!("unshare --mount sh -c 'mount -t tmpfs none {root}/rootfs && printf \"layout: 0\\nbusybox: BusyBox v0\\n\" > {root}/rootfs/.built-from && {} doctor'", doctor()), vec!["✗ rootfs", "stale", "BusyBox v0"]),
        ("tools-missing", format!("env PATH=/nonexistent-ctlab {} doctor", doctor()), vec!["✗ tools", "not found: ip, busybox", "apt-get install iproute2"]),
        ("not-root", format!("setpriv --reuid 65534 --regid 65534 --clear-groups {} doctor", doctor()), vec!["not root"]),
        ("wsl", format!("unshare --mount sh -c 'echo Linux version 5.15.90.1-microsoft-standard-WSL2 > /tmp/ctlab-fake-version && mount --bind /tmp/ctlab-fake-version /proc/version && {} doctor; rm -f /tmp/ctlab-fake-version'", doctor()), vec!["! container", "WSL"]),
        ("failed-checks-name-the-machine", format!("env PATH=/nonexistent-ctlab {} run-checks 01 {}", doctor(), release_dir().join("01-uts").display()), vec!["The machine may be the cause", "not found: ip"]),
    ];
    cases
        .into_iter()
        .map(|(name, script, wanted)| {
            Trial::test(format!("doctor::{name}"), move || {
                let out = Command::new("sh").args(["-c", &script]).output().map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stdout);
                let missing: Vec<&&str> = wanted.iter().filter(|w| !text.contains(**w)).collect();
                if missing.is_empty() { Ok(()) } else { Err(format!("{script}: missing {missing:?} in:\n{text}{}", String::from_utf8_lossy(&out.stderr)).into()) }
            })
        })
        .collect()
}
