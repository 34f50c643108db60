//! The workshop's checker: the step table, the skeleton generator, the
//! behavioural checks and the code that runs them. `cargo lab ...` (the
//! binary) and `cargo test` (tests/workshop.rs) share all of it.

pub mod build;
pub mod checks;
pub mod doctor;
pub mod generate;
pub mod host;
pub mod report;
pub mod run;
pub mod steps;
