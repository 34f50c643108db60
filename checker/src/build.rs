//! Building steps with cargo, the way the student would.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::steps::workspace_root;

/// `cargo build --release` of the given packages, output shown.
pub fn build_release(packages: &[String]) -> Result<()> {
    let mut command = cargo();
    command.current_dir(workspace_root()).args(["build", "--release", "--quiet"]);
    for package in packages {
        command.args(["--package", package]);
    }
    let status = command.status().context("running cargo (is it on PATH?)")?;
    if !status.success() {
        bail!("cargo build of {} failed: fix the compiler errors above", packages.join(", "));
    }
    Ok(())
}

/// The cargo that runs us, if any (CARGO is set by `cargo run`/`cargo test`).
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `sudo` is there to run the containers as root.
pub fn have_sudo() -> bool {
    Command::new("sh").args(["-c", "command -v sudo"]).output().is_ok_and(|o| o.status.success())
}
