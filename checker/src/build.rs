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

/// Chapter 10's escape kit (checker/escapes), linked statically so that it
/// runs inside any root filesystem: glibc's static libraries, no extra Rust
/// target to download. Its own target directory: a `cargo test` running
/// the checks holds the lock on target/release.
pub fn build_escape_kit() -> Result<()> {
    let target_dir = crate::steps::release_dir().parent().map(|t| t.join("escape-kit")).context("no target directory")?;
    let status = cargo()
        .current_dir(workspace_root())
        .args(["build", "--release", "--quiet", "--package", "escapes", "--target", &native_target()])
        .arg("--target-dir")
        .arg(&target_dir)
        // With --target given, RUSTFLAGS reach only the kit, not build scripts.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .context("running cargo (is it on PATH?)")?;
    if !status.success() {
        bail!("cargo build of the escape kit failed; static linking needs glibc's static libraries (libc6-dev)");
    }
    Ok(())
}

/// This machine's target triple (the workshop runs on Linux with glibc).
pub fn native_target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
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
