//! The behavioural checks, one module per layer. A step is checked against
//! every check of its own layer and of all the layers before it.

mod cgroups;
mod contract;
mod engine;
mod hardening;
mod ipc;
mod mounts;
mod net;
mod pid;
mod rootfs;
mod userns;
mod uts;

use crate::run::{Output, Target};

/// What a check proves about the runtime.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Something the layer isolates: the step before it must fail this
    /// check, or the check proves nothing.
    Isolation,
    /// The binary contract or a promise to leave the host as it was.
    Contract,
    /// A break-out attempt (layer 10): blocked by the runtime, and in the
    /// same check shown to escape a deliberately unhardened control, so it
    /// carries its own proof that it can fail.
    Escape,
}

#[derive(Clone)]
pub struct Check {
    pub name: &'static str,
    /// The step whose layer this check is about.
    pub layer: u8,
    pub kind: Kind,
    /// What passing proves, in one line.
    pub proves: &'static str,
    /// The steps it applies to, from `layer` on (most apply to all).
    pub applies: fn(u8) -> bool,
    /// Whether it also runs started by an unprivileged user (steps 05+).
    pub rootless: bool,
    pub run: fn(&Target) -> Outcome,
}

/// What the student sees when a check fails.
#[derive(Debug, Clone)]
pub struct Failure {
    pub ran: String,
    pub expected: String,
    pub saw: String,
    pub hint: String,
}

pub type Outcome = Result<(), Failure>;

pub fn all() -> Vec<Check> {
    [contract::checks(), uts::checks(), pid::checks(), mounts::checks(), ipc::checks(), userns::checks(), rootfs::checks(), net::checks(), cgroups::checks(), engine::checks(), hardening::checks()].concat()
}

pub use hardening::{kit_path, not_tried_here};

/// Everything step `step` must pass: its layer's checks and every earlier one's.
pub fn for_step(step: u8) -> Vec<Check> {
    all().into_iter().filter(|c| c.layer <= step && (c.applies)(step)).collect()
}

/// Each check of a step with the target it runs against: all of them as
/// root, and from step 05 on the rootless ones again as uid 65534.
pub fn plan(target: &Target) -> Vec<(Check, Target)> {
    let checks = for_step(target.step);
    let rootless = checks.iter().filter(|c| c.rootless && target.supports_rootless());
    let rootless: Vec<(Check, Target)> = rootless.map(|c| (c.clone(), target.rootless())).collect();
    checks.into_iter().map(|c| (c, target.clone())).chain(rootless).collect()
}

/// The checks a step's own layer adds.
pub fn introduced_by(step: u8) -> Vec<Check> {
    for_step(step).into_iter().filter(|c| c.layer == step).collect()
}

fn every_step(_: u8) -> bool {
    true
}

/// For options mini-docker (09) does not have, or names it gives otherwise.
fn before_engine(step: u8) -> bool {
    step < 9
}

/// Passes if `ok`, else fails saying what `out` shows.
fn expect(ok: bool, out: &Output, expected: impl Into<String>, hint: &str) -> Outcome {
    if ok { Ok(()) } else { Err(Failure::of(out, expected, hint)) }
}

/// A failure that is not about one run's output.
fn fail(ran: &str, expected: &str, saw: impl Into<String>, hint: &str) -> Outcome {
    Err(Failure::new(ran, expected, saw, hint))
}

impl Failure {
    fn new(ran: &str, expected: &str, saw: impl Into<String>, hint: &str) -> Self {
        Failure { ran: ran.to_string(), expected: expected.to_string(), saw: saw.into(), hint: hint.to_string() }
    }

    /// `out` was not what was expected.
    fn of(out: &Output, expected: impl Into<String>, hint: &str) -> Self {
        Failure { ran: out.ran.clone(), expected: expected.into(), saw: out.summary(), hint: hint.to_string() }
    }
}

/// The run succeeded (exit 0) and printed exactly `want` on stdout.
fn expect_stdout(out: &Output, want: &str, hint: &str) -> Outcome {
    expect(out.status == Some(0) && out.stdout_trimmed() == want, out, format!("exit 0, stdout {want:?}"), hint)
}

/// `/proc/self/ns/<kind>` inside differs from the checker's own: the
/// container is in a namespace of its own.
fn in_new_namespace(target: &Target, kind: &str, hint: &str) -> Outcome {
    let link = format!("/proc/self/ns/{kind}");
    let host = std::fs::read_link(&link).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
    let out = target.run(&["readlink", &link]);
    let inside = out.stdout_trimmed();
    let ok = out.status == Some(0) && inside.starts_with(kind) && inside != host;
    expect(ok, &out, format!("its own {kind} namespace, not the host's {host}"), hint)
}
