//! `cargo lab`: the workshop's runner. Students use `check`, `list`, `hint`
//! and `diff`; maintainers use `gen-steps`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use checker::build::{build_escape_kit, build_release, have_sudo, is_root};
use checker::host::{adopt_orphans, reap_orphans, shield_host_mounts, tidy_engine};
use checker::run::{remove_scratch_binaries, As, Target, NOBODY};
use checker::steps::{existing, release_dir, workspace_root, Step, STEPS};
use checker::{checks, doctor, generate, report};

#[derive(Parser)]
#[command(name = "cargo lab", bin_name = "cargo lab", about = "Build a container runtime one kernel layer at a time: check your steps")]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Build your step (as you) and run its checks (as root, with sudo if needed)
    Check {
        /// A step ("01", "3", "03-mount-proc") or "all"
        step: String,
        /// Check the reference solution instead of your code
        #[arg(long)]
        solution: bool,
    },
    /// Every step, and whether your code passes its checks
    List,
    /// What this machine offers the workshop (kernel, namespaces, root, cgroups, tools, rootfs), with fixes
    Doctor,
    /// What to write in a step: the todo!()s and where they are
    Hint { step: String },
    /// What a step adds over the one before, from the reference solutions
    Diff { step: String },
    /// Maintainers: write steps/ from solutions/ (--check: only compare)
    GenSteps {
        #[arg(long)]
        check: bool,
    },
    /// Runs the checks of STEP against BINARY (what `check` runs as root)
    #[command(hide = true)]
    RunChecks { step: String, binary: PathBuf },
    /// Builds chapter 10's escape kit (what `check 10` does first)
    #[command(hide = true)]
    BuildEscapeKit,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Action::List | Action::Doctor | Action::Hint { .. } | Action::Diff { .. }) {
        // Die quietly on a closed pipe (`cargo lab diff 03 | head`), like
        // other tools. Not while checking: writing to a runtime that already
        // exited must be an error, not the checker's death.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match dispatch(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("cargo lab: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(action: Action) -> Result<bool> {
    match action {
        Action::Check { step, solution } => check(&step, solution),
        Action::List => list().map(|()| true),
        Action::Hint { step } => hint(find(&step)?).map(|()| true),
        Action::Diff { step } => diff(find(&step)?),
        Action::GenSteps { check } => gen_steps(check),
        Action::RunChecks { step, binary } => Ok(run_checks(find(&step)?, &binary)),
        Action::Doctor => Ok(run_doctor()),
        Action::BuildEscapeKit => build_escape_kit().map(|()| true),
    }
}

fn find(key: &str) -> Result<&'static Step> {
    let step = Step::find(key).with_context(|| format!("no step {key:?}; `cargo lab list` shows them"))?;
    if !step.exists() {
        bail!("chapter {} is not written yet", step.name);
    }
    Ok(step)
}

fn check(key: &str, solution: bool) -> Result<bool> {
    let steps: Vec<&Step> = if key == "all" { existing().collect() } else { vec![find(key)?] };
    let mut all_passed = true;
    for step in steps {
        let passed = check_one(step, solution)?;
        if !solution {
            record_progress(step, passed)?;
        }
        all_passed &= passed;
    }
    Ok(all_passed)
}

fn check_one(step: &Step, solution: bool) -> Result<bool> {
    let (package, binary) = if solution {
        (step.solution_package(), step.solution_binary().to_string())
    } else {
        (step.skeleton_package(), step.skeleton_binary())
    };
    println!("Building {package} (cargo build --release --package {package})");
    build_release(std::slice::from_ref(&package))?;
    if step.needs_escape_kit() {
        println!("Building the escape kit (checker/escapes, linked statically)");
        build_escape_kit()?;
    }
    let binary = release_dir().join(binary);
    if is_root() {
        return Ok(run_checks(step, &binary));
    }
    if !have_sudo() {
        bail!("the checks start containers, which needs root here: run as root, or install sudo");
    }
    println!("Containers need root: running the checks with sudo (it may ask for your password).");
    let me = std::env::current_exe().context("finding the checker's own binary")?;
    let status = Command::new("sudo")
        .arg("--")
        .arg(me)
        .args(["run-checks", step.name])
        .arg(&binary)
        .status()
        .context("running sudo")?;
    Ok(status.success())
}

/// Runs every check of the step, prints each result, returns whether all passed.
fn run_checks(step: &Step, binary: &Path) -> bool {
    if let Err(err) = shield_host_mounts() {
        eprintln!("cargo lab: {err:#}");
        return false;
    }
    let plan = checks::plan(&Target::new(binary, step.number));
    let layers = if step.number == 1 { "layer 01".to_string() } else { format!("layers 01 to {:02}", step.number) };
    println!("Checking {} ({} checks, {layers})", binary.display(), plan.len());
    let hostname = host_hostname();
    let mut failures = 0;
    let mut last_failure = None;
    let mut rootless_started = false;
    let mut escapes = EscapeTally::default();
    adopt_orphans();
    for (check, target) in &plan {
        if target.who == As::Nobody && !rootless_started {
            println!("Started by an unprivileged user (uid {NOBODY}), rootless:");
            rootless_started = true;
        }
        if let Some(why) = checks::not_tried_here(check) {
            report::not_tried(check, why);
            escapes.not_tried.push(check.name);
            continue;
        }
        let outcome = (check.run)(target);
        tidy_engine(target);
        reap_orphans();
        if host_hostname() != hostname {
            // A runtime renamed the host: put its name back for the next check.
            let _ = nix::unistd::sethostname(&hostname);
        }
        report::outcome(check, &outcome, &mut last_failure);
        failures += usize::from(outcome.is_err());
        escapes.count(check, &outcome);
    }
    remove_scratch_binaries();
    escapes.report();
    if failures > 0 {
        explain_environment();
    }
    let tried = plan.len() - escapes.not_tried.len();
    let not_tried = match escapes.not_tried.len() {
        0 => String::new(),
        n => format!(" ({n} not tried here)"),
    };
    if failures == 0 {
        println!("All {tried} checks of {} pass{not_tried}.", step.name);
    } else {
        println!("{failures} of {tried} checks of {} fail{not_tried}. The chapter: steps/{}/README.md", step.name, step.name);
    }
    failures == 0
}

/// What the escape suite (chapter 10) tried, for its summary line.
#[derive(Default)]
struct EscapeTally {
    tried: usize,
    blocked: usize,
    not_tried: Vec<&'static str>,
}

impl EscapeTally {
    fn count(&mut self, check: &checks::Check, outcome: &checks::Outcome) {
        if check.kind == checks::Kind::Escape {
            self.tried += 1;
            self.blocked += usize::from(outcome.is_ok());
        }
    }

    fn report(&self) {
        if self.tried == 0 {
            return;
        }
        let all = if self.blocked == self.tried { "all blocked, and each escaped its unhardened control".to_string() } else { format!("{} blocked with a control that escaped, {} not", self.blocked, self.tried - self.blocked) };
        println!("Escape suite: {} escapes tried, {all}.", self.tried);
        if !self.not_tried.is_empty() {
            println!("  Not tried on this machine: {}.", self.not_tried.join(", "));
        }
    }
}

/// `cargo lab doctor`: false if the machine has a problem.
fn run_doctor() -> bool {
    println!("This machine, for the workshop:");
    let findings = doctor::examine();
    doctor::print(&findings);
    let problems = doctor::problems(&findings).len();
    if problems > 0 {
        println!("{problems} problem(s): some checks cannot pass until they are fixed.");
    }
    problems == 0
}

/// After failed checks: what in the machine, not the code, may be the cause.
fn explain_environment() {
    let problems = doctor::problems(&doctor::examine());
    if !problems.is_empty() {
        println!("The machine may be the cause (cargo lab doctor says):");
        doctor::print(&problems);
    }
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

fn progress_file() -> PathBuf {
    workspace_root().join(".progress")
}

fn record_progress(step: &Step, passed: bool) -> Result<()> {
    let old = std::fs::read_to_string(progress_file()).unwrap_or_default();
    let mut lines: Vec<String> = old.lines().filter(|l| l.split_whitespace().next() != Some(step.name)).map(String::from).collect();
    lines.push(format!("{} {}", step.name, if passed { "passed" } else { "failed" }));
    lines.sort();
    std::fs::write(progress_file(), lines.join("\n") + "\n").context("writing .progress")
}

fn list() -> Result<()> {
    let progress = std::fs::read_to_string(progress_file()).unwrap_or_default();
    for step in STEPS {
        let state = progress.lines().find_map(|l| l.strip_prefix(step.name)).map(str::trim);
        let mark = match (step.exists(), state) {
            (false, _) => " ",
            (true, Some("passed")) => "✓",
            (true, Some(_)) => "✗",
            (true, None) => "·",
        };
        let later = if step.exists() { "" } else { "  (not written yet)" };
        println!("{mark:>3}  {:<20} {}{later}", step.name, step.adds);
    }
    println!("\n✓ passes its checks  ✗ failed its last check  · not checked yet");
    Ok(())
}

fn hint(step: &Step) -> Result<()> {
    println!("Chapter {}: steps/{}/README.md explains it. What to write:\n", step.name, step.name);
    for hint in generate::hints(step)? {
        println!("  {}:{}\n      {}\n", hint.file, hint.line, hint.text);
    }
    println!("Then: cargo lab check {:02}", step.number);
    Ok(())
}

fn diff(step: &Step) -> Result<bool> {
    println!("What {} adds, in the reference solution (spoilers!):\n", step.name);
    // The first step is compared with an empty folder: all of it is new.
    let empty = std::env::temp_dir().join(format!("ctlab-empty-{}", std::process::id()));
    let before = match step.previous() {
        Some(previous) => previous.solution_dir(),
        None => {
            println!("{} is the first step: all of it is new.", step.name);
            std::fs::create_dir_all(&empty).context("creating an empty folder to compare with")?;
            empty.clone()
        }
    };
    let status = Command::new("diff")
        .args(["-ruN", "--exclude=target", "--exclude=README.md"])
        .arg(before)
        .arg(step.solution_dir())
        .status()
        .context("running diff");
    let _ = std::fs::remove_dir(&empty);
    let status = status?;
    // diff exits 1 when the trees differ, which is the point here.
    Ok(status.code().is_some_and(|c| c <= 1))
}

fn gen_steps(check_only: bool) -> Result<bool> {
    let mut up_to_date = true;
    for step in existing() {
        if check_only {
            for (file, why) in generate::stale_files(step)? {
                println!("steps/{}/{}: {why}", step.name, file.display());
                up_to_date = false;
            }
        } else {
            for file in generate::write_skeleton(step)? {
                println!("wrote steps/{}/{}", step.name, file.display());
            }
        }
    }
    if check_only && !up_to_date {
        println!("steps/ is not what the generator writes: run scripts/gen-steps and commit the result");
    }
    Ok(up_to_date)
}
