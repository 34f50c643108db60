//! Printing check results so that a failure teaches: what ran, what was
//! expected, what was seen, and a hint (sharpened when the output shows a
//! classic mistake).

use std::io::IsTerminal;

use crate::checks::{Check, Failure, Outcome};

pub fn passed(check: &Check) {
    println!("  {} {:<28} {}", paint("✓", GREEN), check.name, check.proves);
}

pub fn failed(check: &Check, failure: &Failure) {
    println!("  {} {:<28} {}", paint("✗", RED), check.name, check.proves);
    println!("      ran:      {}", failure.ran);
    println!("      expected: {}", failure.expected);
    println!("      saw:      {}", failure.saw);
    println!("      hint:     {}", diagnose(&failure.saw).unwrap_or_else(|| failure.hint.clone()));
}

/// A check this machine cannot run, and why; neither passed nor failed.
pub fn not_tried(check: &Check, why: &str) {
    println!("  {} {:<28} {}", paint("–", YELLOW), check.name, check.proves);
    println!("      not tried here: {why}");
}

/// Prints one result. A failure that only repeats the last one (the same
/// todo!() reached again) is one line.
pub fn outcome(check: &Check, outcome: &Outcome, last_failure: &mut Option<String>) {
    match outcome {
        Ok(()) => passed(check),
        Err(failure) => {
            // The same todo!() reached, or the same early error, again.
            let key = failure.saw.split_once("not yet implemented: ").map_or(failure.saw.clone(), |(_, t)| t.to_string());
            if last_failure.as_ref() == Some(&key) {
                let same = if failure.saw.contains("not yet implemented") { "the same todo!()" } else { "the same failure as above" };
                println!("  {} {:<28} {}  ({same})", paint("✗", RED), check.name, check.proves);
            } else {
                failed(check, failure);
            }
            *last_failure = Some(key);
        }
    }
}

/// Recognises output that points at one known cause.
pub fn diagnose(saw: &str) -> Option<String> {
    if let Some((_, todo)) = saw.split_once("not yet implemented: ") {
        return Some(format!("your code reached a todo!() still to write: {todo}"));
    }
    if saw.contains("panicked") {
        return Some("the runtime panicked: return an error instead (one line on stderr, exit 125)".into());
    }
    KNOWN_MISTAKES.iter().find(|(pattern, _)| pattern.iter().all(|p| saw.contains(p))).map(|(_, why)| why.to_string())
}

/// (every text the output contains, what it means). Later chapters add theirs.
const KNOWN_MISTAKES: &[(&[&str], &str)] = &[
    (
        &["waitpid", "No child processes"],
        "waitpid() cannot see the child (ECHILD): clone() needs SIGCHLD as the child's exit signal, Some(Signal::SIGCHLD as i32)",
    ),
    (
        &["pivot_root", "Invalid argument"],
        "pivot_root said EINVAL: the new root must be a mount point (bind-mount the rootfs onto itself) and no mount involved may be shared: make / private (MS_REC | MS_PRIVATE) first",
    ),
    (
        &["pivot_root", "busy"],
        "pivot_root said EBUSY: the new root is not a mount point of its own; bind-mount the rootfs onto itself first",
    ),
    (
        &["mounting a new proc", "Operation not permitted"],
        "in a user namespace the kernel mounts a new proc only while a fully visible one is mounted: mount proc before detaching the old root",
    ),
    (
        &["gid_map", "Operation not permitted"],
        "an unprivileged process may write gid_map only after \"deny\" is in /proc/PID/setgroups: write setgroups first (user_namespaces(7))",
    ),
    (
        &["uid_map", "Operation not permitted"],
        "uid_map is written once, from the parent, mapping only the caller's own uid (\"0 UID 1\") unless it has CAP_SETUID outside",
    ),
    (
        &["clone", "Operation not permitted"],
        "clone() said EPERM: before chapter 05 creating namespaces needs root; from 05 on a host setting may forbid user namespaces (chapter 05 names them)",
    ),
];

const GREEN: &str = "32";
const RED: &str = "31";
const YELLOW: &str = "33";

fn paint(text: &str, color: &str) -> String {
    if std::io::stdout().is_terminal() { format!("\x1b[{color}m{text}\x1b[0m") } else { text.to_string() }
}
